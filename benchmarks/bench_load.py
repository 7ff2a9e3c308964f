#!/usr/bin/env python3
"""IndexStore.load() on an index of N random unit vectors: this tree against another
checkout (the baseline), same index, same run, alternating.

usage: python benchmarks/bench_load.py --base /path/to/baseline/checkout [--n 100000]
       [--dim 1280] [--repeats 3]

The index is written through IndexStore as a build would (commits of 10k rows,
compacted when due, then one more commit left as a segment), so load reads a
compacted base and a segment. Each timing is a fresh process that opens the
index and times load() alone; results are checked to be identical.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE))
from benchmarks.bench_incremental import fill, unit  # noqa: E402

CHILD = """
import hashlib, sys, time
import numpy as np
from imgsim_index.index.store import IndexStore
s = IndexStore.open_reader(sys.argv[1])
t = time.perf_counter()
got = s.load()
dt = time.perf_counter() - t
h = hashlib.sha256(got.vectors.tobytes())
h.update(repr([tuple(vars(r).values()) for r in got.rows]).encode())
print(dt, h.hexdigest()[:16], len(got.rows))
"""


def timed(tree: str, index: str) -> tuple[float, str]:
    env = {**os.environ, "PYTHONPATH": tree}
    out = subprocess.run([sys.executable, "-c", CHILD, index], env=env, check=True,
                         capture_output=True, text=True).stdout.split()
    return float(out[0]), f"{out[1]} ({out[2]} rows)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="baseline checkout (its root folder)")
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=1280)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    vectors = unit(rng, args.n, args.dim)
    with tempfile.TemporaryDirectory() as tmp:
        index = os.path.join(tmp, "index")
        tail = max(1, args.n // 10)
        fill(index, vectors[:-tail], 0)
        fill(index, vectors[-tail:], args.n - tail)
        results: dict[str, list[float]] = {"baseline": [], "this tree": []}
        digests = set()
        for _ in range(args.repeats):
            for name, tree in (("baseline", args.base), ("this tree", str(HERE))):
                seconds, digest = timed(tree, index)
                results[name].append(seconds)
                digests.add(digest)
        for name, times in results.items():
            print(f"{name:10s} load(): " + ", ".join(f"{t:.2f}" for t in times)
                  + f" s (median {np.median(times):.2f})")
        print("identical results:", len(digests) == 1, sorted(digests))


if __name__ == "__main__":
    main()
