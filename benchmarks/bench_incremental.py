#!/usr/bin/env python3
"""Adding 1% new vectors to an index of N, against rebuilding the same index, same run.

usage: python benchmarks/bench_incremental.py [--n 100000] [--dim 2048] [--add-share 0.01]

Synthetic unit vectors skip the CNN, so this measures the store alone: the
cost of `add` must follow k (the new images), not N (the index).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.results_file import update_section  # noqa: E402
from imgsim_index.index.catalog import NewRow  # noqa: E402
from imgsim_index.index.store import IndexStore  # noqa: E402

IDENTITY = {"model": "synthetic", "dim": 0, "weights_id": "none", "preprocessing": {}}


def unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def rows(start: int, n: int) -> list[NewRow]:
    return [NewRow(f"/data/img{k:09d}.jpg", "/data", 1000 + k, k, 224, 224)
            for k in range(start, start + n)]


def fill(index: str, vectors: np.ndarray, start: int, chunk: int = 10_000) -> float:
    """Commit `vectors` in checkpoints (as a build does), compacting when due. Seconds."""
    t = time.perf_counter()
    store = IndexStore.open_writer(index, {**IDENTITY, "dim": vectors.shape[1]})
    try:
        for s in range(0, len(vectors), chunk):
            part = vectors[s:s + chunk]
            store.commit(rows(start + s, len(part)), part)
        if store.needs_compaction():
            store.compact()
    finally:
        store.close()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--add-share", type=float, default=0.01)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    k = max(1, int(a.n * a.add_share))
    base, new = unit(rng, a.n, a.dim), unit(rng, k, a.dim)
    work = tempfile.mkdtemp(prefix="imgsim-bench-inc-")
    try:
        adds, rebuilds = [], []
        for r in range(a.repeats):
            idx = os.path.join(work, f"idx{r}")
            fill(idx, base, 0)
            adds.append(fill(idx, new, a.n))  # the measured add: k new vectors
            with IndexStore.open_reader(idx) as store:
                loaded = store.load()
            assert len(loaded.rows) == a.n + k
            np.testing.assert_array_equal(loaded.vectors[a.n:], new)
            fresh = os.path.join(work, f"fresh{r}")
            rebuilds.append(fill(fresh, np.concatenate([base, new]), 0))
            shutil.rmtree(idx)
            shutil.rmtree(fresh)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    add_s, rebuild_s = float(np.median(adds)), float(np.median(rebuilds))
    lines = [
        f"Index of N = {a.n:,} vectors (dim {a.dim}, float32), adding k = {k:,} "
        f"({a.add_share:.0%}); median of {a.repeats} runs.",
        "",
        "| operation | seconds |",
        "|---|---|",
        f"| add k to the index of N (one new segment, no rewrite) | {add_s:.3f} |",
        f"| rebuild the index of N + k from scratch | {rebuild_s:.3f} |",
        "",
        f"Rebuild / add: **{rebuild_s / add_s:.1f}x** (k / (N + k) = "
        f"{k / (a.n + k):.4f}, so a cost proportional to k would give about "
        f"{(a.n + k) / k:.0f}x).",
    ]
    print("\n".join(lines))
    update_section("incremental", "Incremental add vs full rebuild",
                   f"python benchmarks/bench_incremental.py --n {a.n} --dim {a.dim}",
                   "\n".join(lines))


if __name__ == "__main__":
    main()
