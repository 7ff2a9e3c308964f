#!/usr/bin/env python3
"""Pictures the embedding cannot tell apart: what verifying them costs with the limit of
other shots per image (`--max-other-shots`, default 32), without it, and with a baseline
tree.

usage: python benchmarks/bench_lookalike_walk.py [--sizes 400,2000] [--unlimited-up-to 400]
         [--baseline TREE --baseline-name REV [--baseline-has-limit]] [--budget 8G]
         [--model efficientnet-lite0]

Generates N/2 smooth random colour fields with a number drawn on (640x480 PNG) and a
re-encoded JPEG copy of each (bench_verify_memory.make_images; not kept), builds an index
of each size, then times `imgsim-index dedupe --index IDX` at the model's default
threshold with `/usr/bin/time -f %M`. At Lite0's 0.75 nearly every pair of these
pictures is a candidate. Prints per run: candidate pairs, pairs compared, pairs left not
verified at the limit, planted copies found (a picture and its JPEG in one group), wall
time and peak RSS; and with `--memory-budget BUDGET`, whose half holds every described
image (the default 512 MiB holds about 300: a walk through more compares in parts and
describes images again in each round). Runs without the limit (this tree with
`--max-other-shots 0`, and the baseline) only up to --unlimited-up-to images: they compare
almost every pair.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.bench_verify_memory import make_images, report_of, run  # noqa: E402
from benchmarks.results_file import this_command, update_section  # noqa: E402


def copies_found(rep: dict) -> int:  # type: ignore[type-arg]
    """Planted pairs (pNNNNN.png, pNNNNN_copy.jpg) whose two files share a group."""
    found = 0
    for g in rep["groups"]:
        names = {Path(m["path"]).name for m in g["members"]}
        found += sum(n.replace(".png", "_copy.jpg") in names
                     for n in names if n.endswith(".png"))
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="400,2000")
    ap.add_argument("--unlimited-up-to", type=int, default=400)
    ap.add_argument("--baseline", type=Path, default=None)
    ap.add_argument("--baseline-name", default="baseline")
    ap.add_argument("--baseline-has-limit", action="store_true",
                    help="the baseline has --max-other-shots: run it at every size")
    ap.add_argument("--model", default="efficientnet-lite0")
    ap.add_argument("--budget", default="8G",
                    help="a --memory-budget whose half holds every described image ('' to skip)")
    a = ap.parse_args()
    rows = ["| images | dedupe | candidate pairs | compared | not verified at the limit "
            "| copies found | wall s | peak RSS MiB |", "|---|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(x) for x in a.sizes.split(",")):
            folder, index = Path(tmp) / f"img{n}", Path(tmp) / f"idx{n}"
            make_images(folder, n)
            run(ROOT, ["build", str(folder), "--index", str(index), "--model", a.model, "-q"])
            base = ["dedupe", "--index", str(index), "--output", str(Path(tmp) / "out"), "-q"]
            runs = [("this tree (limit 32)", ROOT, [])]
            if a.budget:  # verification holds half of it: every image at once, no parts
                runs.append((f"this tree (limit 32), `--memory-budget {a.budget}`", ROOT,
                             ["--memory-budget", a.budget]))
            if a.baseline and a.baseline_has_limit:  # the same walk: at every size
                runs.insert(0, (f"{a.baseline_name} (limit 32)", a.baseline, []))
            if n <= a.unlimited_up_to:
                runs.append(("this tree, `--max-other-shots 0`", ROOT,
                             ["--max-other-shots", "0"]))
                if a.baseline and not a.baseline_has_limit:
                    runs.append((a.baseline_name, a.baseline, []))
            for name, tree, extra in runs:
                wall, rss, out = run(tree, base + extra)
                rep = report_of(out)
                v = rep["verification"]
                candidates = rep["number_of_similar_pairs"] + rep["number_of_near_misses"]
                rows.append(f"| {n:,} | {name} | {candidates:,} | {v['compared']:,} | "
                            f"{v.get('skipped_per_image', 0):,} | {copies_found(rep)} of "
                            f"{n // 2} | {wall:.1f} | {rss / 1024:.0f} |")
                print(rows[-1], flush=True)
    body = ("N/2 smooth random colour fields and a JPEG copy of each, `dedupe --index` at "
            "the model's default threshold; peak RSS of the dedupe process "
            "(`/usr/bin/time -f %M`).\n\n" + "\n".join(rows))
    update_section("lookalike-walk", "Verification of pictures the model cannot tell apart",
                   this_command(), body)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
