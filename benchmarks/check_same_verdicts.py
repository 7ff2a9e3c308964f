#!/usr/bin/env python3
"""Same verdicts before and after a change: dedupe reports of a base revision and of this tree.

usage: python benchmarks/check_same_verdicts.py [--base REV] [--evalset-cache DIR] [--keep DIR]

In one run: generates the evaluation set (../shared/eval/make_evalset.py) and the generated
hard edits (benchmarks/hard_edits.py: its labelled pairs as PNG files) into a temporary folder,
extracts REV (default main) with `git archive REV | tar -x`, and runs
`imgsim-index dedupe FOLDER --index ... --model efficientnet-lite0 --output ...` on each set
with the base tree's code and with this tree's (each a subprocess run in its tree with
PYTHONPATH set to it). The two report.json files of each set are then compared: the same
similar pairs with the same scores, the same match, evidence and verification numbers per
pair, the same near misses, groups, removable lists and counts. Timestamps, timings and the
paths of the index and output folders are left out. Prints a summary and exits 1 on any
difference (the first ones are listed).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EVALSET = ROOT.parent / "shared" / "eval" / "make_evalset.py"
MODEL = "efficientnet-lite0"
# what differs between two runs of the same code: when, how long, and where the output went
VOLATILE = {"timestamp", "timings", "timings_seconds", "seconds", "index_path", "output",
            "report_dir", "created_at"}
SHOWN = 20  # differences listed per set


def make_hard_edits(out: Path) -> None:
    """The labelled pairs of benchmarks/hard_edits.py as PNG files in `out`."""
    sys.path.insert(0, str(ROOT))
    from PIL import Image

    from benchmarks.hard_edits import pairs

    out.mkdir(parents=True, exist_ok=True)
    for n, (name, cls, a, b, _) in enumerate(pairs()):
        for side, im in (("a", a), ("b", b)):
            Image.fromarray(im).save(out / f"{n:03d}_{name}_{cls}_{side}.png", compress_level=1)


def dedupe(tree: Path, folder: Path, work: Path) -> dict[str, Any]:
    """report.json of `imgsim-index dedupe FOLDER` run with `tree`'s code."""
    env = {**os.environ, "PYTHONPATH": str(tree)}  # and cwd=tree: -m puts the cwd first
    index, output = work / "index", work / "results"
    cmd = [sys.executable, "-m", "imgsim_index", "dedupe", str(folder), "--index", str(index),
           "--model", MODEL, "--output", str(output), "--verify-workers", "0", "-q"]
    done = subprocess.run(cmd, env=env, cwd=tree, capture_output=True, text=True)
    if done.returncode not in (0, 1):  # 1: duplicates found (the CLI's exit code for it)
        raise SystemExit(f"dedupe failed in {tree} ({done.returncode}):\n{done.stderr[-2000:]}")
    reports = sorted(output.glob("*/report.json"))
    if len(reports) != 1:
        raise SystemExit(f"expected one report.json under {output}, found {len(reports)}")
    return dict(json.loads(reports[0].read_text()))


def stable(x: Any) -> Any:
    """The report without what differs between two runs of the same code."""
    if isinstance(x, dict):
        return {k: stable(v) for k, v in x.items() if k not in VOLATILE}
    if isinstance(x, list):
        return [stable(v) for v in x]
    return x


def differences(a: Any, b: Any, where: str = "") -> list[str]:
    """Paths (and the two values) where two JSON values differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{where}.{k}: only in {'base' if k in a else 'tree'}" for k in
               sorted(a.keys() ^ b.keys())]
        for k in sorted(a.keys() & b.keys()):
            out += differences(a[k], b[k], f"{where}.{k}")
        return out
    if isinstance(a, list) and isinstance(b, list):
        out = [f"{where}: {len(a)} items in base, {len(b)} in tree"] if len(a) != len(b) else []
        for k, (x, y) in enumerate(zip(a, b, strict=False)):
            out += differences(x, y, f"{where}[{k}]")
        return out
    return [] if a == b else [f"{where}: base {a!r}, tree {b!r}"]


def summary(report: dict[str, Any]) -> str:
    matches: dict[str, int] = {}
    for row in report.get("similar_pairs", []) + report.get("near_misses", []):
        matches[str(row.get("match"))] = matches.get(str(row.get("match")), 0) + 1
    return (f"{report['number_of_similar_pairs']} similar pairs, "
            f"{len(report.get('near_misses', []))} near misses, "
            f"{len(report.get('groups', []))} groups, {report['photos_to_remove']} to remove; "
            f"verdicts {dict(sorted(matches.items()))}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", default="main", help="revision to compare with (default: main)")
    ap.add_argument("--evalset-cache", help="make_evalset.py's --cache (its sources)")
    ap.add_argument("--keep", help="work in this folder and keep it (default: a temporary one)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="same-verdicts-") as tmp:
        work = Path(args.keep or tmp)
        work.mkdir(parents=True, exist_ok=True)
        base = work / "base"
        base.mkdir()
        archive = subprocess.run(["git", "archive", args.base], cwd=ROOT, check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(base)], input=archive, check=True)
        rev = subprocess.run(["git", "rev-parse", "--short", args.base], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout.strip()
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, check=True,
                              capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "imgsim_index"], cwd=ROOT,
                               check=True, capture_output=True, text=True).stdout.strip()
        print(f"base {args.base} ({rev}) against this tree ({head}"
              f"{', with uncommitted changes' if dirty else ''})")
        cache = ["--cache", args.evalset_cache] if args.evalset_cache else []
        subprocess.run([sys.executable, str(EVALSET), str(work / "evalset"), *cache],
                       check=True, stdout=subprocess.DEVNULL)
        make_hard_edits(work / "hard_edits")
        sets = {"evaluation set": work / "evalset" / "images", "hard edits": work / "hard_edits"}
        failed = False
        for name, folder in sets.items():
            got = {side: dedupe(tree, folder, work / side / name.replace(" ", "_"))
                   for side, tree in (("base", base), ("tree", ROOT))}
            diff = differences(stable(got["base"]), stable(got["tree"]))
            print(f"{name}: base: {summary(got['base'])}")
            print(f"{name}: tree: {summary(got['tree'])}")
            if diff:
                failed = True
                print(f"{name}: DIFFERENT ({len(diff)} differences)")
                for line in diff[:SHOWN]:
                    print(f"  {line}")
            else:
                print(f"{name}: same report (pairs, scores, verdicts, evidence, numbers, groups, "
                      "removable)")
    print("DIFFERENT" if failed else "SAME: every report matches the base")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
