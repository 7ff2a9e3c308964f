#!/usr/bin/env python3
"""What verification holds in memory: peak RSS and wall time of a verified dedupe by the
number of images it describes, against `--verify off` and a baseline tree.

usage: python benchmarks/bench_verify_memory.py [--sizes 500,1000,2000] [--baseline TREE
         --baseline-name REV] [--budget 64M] [--model efficientnet-lite0]

Generates N/2 distinct 640x480 pictures (smooth random colour fields with a number drawn
on, PNG) and a re-encoded JPEG copy of each into a temporary folder (not kept), builds an
index of each size, then times `imgsim-index dedupe --index IDX --threshold 0.97` with
`/usr/bin/time -f %M` (peak RSS of the command's process; the forked verification
workers share its pages): cosine only, verified with this tree (default budget, and
`--memory-budget BUDGET`), and verified with the baseline tree's code where given. At
0.97 each picture's copy is a candidate and a few pictures of similar colours are too:
verification describes every image. The verified reports of this tree and the baseline
must agree (pairs, verdicts, groups); the run stops if they do not.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.results_file import this_command, update_section  # noqa: E402

THRESHOLD = "0.97"


def make_images(folder: Path, n: int) -> None:
    """n/2 pictures and a JPEG copy of each (the same pictures for every size: seeded by
    picture number)."""
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(n // 2):
        rng = np.random.default_rng(k)
        small = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
        img = cv2.resize(small, (640, 480), interpolation=cv2.INTER_CUBIC)
        img = np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)
        cv2.putText(img, str(k), (50, 200), cv2.FONT_HERSHEY_SIMPLEX, 4, (255, 255, 255), 8)
        cv2.imwrite(str(folder / f"p{k:05d}.png"), img)
        cv2.imwrite(str(folder / f"p{k:05d}_copy.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 85])


def run(tree: Path, args: list[str]) -> tuple[float, int, str]:
    """(wall s, peak RSS KiB, stdout) of `python -m imgsim_index ARGS` with tree's code."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    with tempfile.NamedTemporaryFile("r", suffix=".time") as t:
        out = subprocess.run(["/usr/bin/time", "-f", "%e %M", "-o", t.name, sys.executable,
                              "-m", "imgsim_index", *args], env=env, cwd=tree, check=True,
                             capture_output=True, text=True).stdout
        wall, rss = t.read().split()[-2:]
    return float(wall), int(rss), out


def report_of(out: str) -> dict:  # type: ignore[type-arg]
    line = next(x for x in out.splitlines() if x.startswith("Result JSON: "))
    rep = json.loads(Path(line.removeprefix("Result JSON: ")).read_text())
    for key in ("timestamp", "timings_seconds", "index_path"):
        rep.pop(key, None)
    rep.get("verification", {}).pop("seconds", None)
    return dict(rep)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="500,1000,2000")
    ap.add_argument("--baseline", type=Path, default=None)
    ap.add_argument("--baseline-name", default="baseline")
    ap.add_argument("--budget", default="64M")
    ap.add_argument("--model", default="efficientnet-lite0")
    a = ap.parse_args()
    sizes = [int(x) for x in a.sizes.split(",")]
    rows = ["| images | dedupe | peak RSS MiB | wall s | pairs compared |", "|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            folder, index = Path(tmp) / f"img{n}", Path(tmp) / f"idx{n}"
            make_images(folder, n)
            subprocess.run([sys.executable, "-m", "imgsim_index", "build", str(folder),
                            "--index", str(index), "--model", a.model, "-q"], cwd=ROOT,
                           check=True, capture_output=True)
            base = ["dedupe", "--index", str(index), "--model", a.model, "--threshold",
                    THRESHOLD, "--output", str(Path(tmp) / "out"), "-q"]
            runs = [("cosine only (`--verify off`)", ROOT, ["--verify", "off"]),
                    ("verified, this tree", ROOT, []),
                    (f"verified, this tree, `--memory-budget {a.budget}`", ROOT,
                     ["--memory-budget", a.budget])]
            if a.baseline:
                runs.append((f"verified, {a.baseline_name}", a.baseline, []))
            reports = []
            for name, tree, extra in runs:
                wall, rss, out = run(tree, base + extra)
                rep = report_of(out)
                compared = rep["verification"]["compared"] if extra != ["--verify", "off"] else 0
                if extra != ["--verify", "off"]:
                    reports.append(rep)
                rows.append(f"| {n:,} | {name} | {rss / 1024:.0f} | {wall:.1f} | {compared} |")
                print(rows[-1], flush=True)
            if any(r != reports[0] for r in reports[1:]):
                sys.exit(f"{n} images: the verified reports differ")
    body = ("Each picture's JPEG copy and the picture are a candidate pair at 0.97 (and some "
            "pictures of similar colours): verification describes every image. Peak RSS of "
            "the dedupe process (`/usr/bin/time -f %M`); the verified reports of every row "
            "of a size are the same.\n\n" + "\n".join(rows))
    update_section("verify-memory", "Verification memory", this_command(), body)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
