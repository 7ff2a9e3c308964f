#!/usr/bin/env python3
"""Exact pair search where most pairs are candidates: peak RSS and time of `find_pairs`
against a baseline tree, on the default CPU path and the forced AVX2 path.

usage: python benchmarks/bench_rescore.py [--sizes 400,2000] [--dims 1280,2048]
         --baseline TREE [--baseline-name REV] [--repeats 3]

Every candidate a search finds is re-scored in float64 (search/threshold.py): the step
size of that re-scoring sets its memory. Generates clustered unit vectors (one cluster:
nearly every pair scores above 0.75, as pictures the model cannot tell apart do), then
runs `find_pairs(threshold=0.75)` in a fresh process per run with each tree's code
(peak RSS by /usr/bin/time -f %M, wall time of the search inside the process), checks
that both trees give the same pairs and scores, and prints the ratios. The AVX2 rows
disable NumPy's AVX-512 kernels and OpenBLAS's (NPY_DISABLE_CPU_FEATURES,
OPENBLAS_CORETYPE=Haswell, FAISS_OPT_LEVEL=avx2).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.results_file import this_command, update_section  # noqa: E402

AVX2 = {"NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",
        "OPENBLAS_CORETYPE": "Haswell", "FAISS_OPT_LEVEL": "avx2"}

CHILD = """
import sys, time, numpy as np
from imgsim_index.search import PairSettings, find_pairs
x = np.load(sys.argv[1])
t = time.perf_counter()
pairs, _ = find_pairs(x, PairSettings(threshold=0.75), method="exact")
print(time.perf_counter() - t)
np.savez(sys.argv[2], i=pairs.i, j=pairs.j, score=pairs.score)
"""


def vectors(n: int, dim: int, path: Path) -> None:
    rng = np.random.default_rng(n * 7 + dim)
    x = rng.normal(size=(1, dim)) + 0.35 * rng.normal(size=(n, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    np.save(path, x.astype(np.float32))


def run(tree: Path, x: Path, out: Path, env: dict[str, str]) -> tuple[float, int]:
    """(search seconds, peak RSS KiB) of one search in a fresh process."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as t:
        got = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", t.name, sys.executable, "-c",
                              CHILD, str(x), str(out)], cwd=tree, check=True, text=True,
                             capture_output=True,
                             env={**os.environ, **env, "PYTHONPATH": str(tree)}).stdout
        return float(got.split()[-1]), int(t.read().split()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="400,2000")
    ap.add_argument("--dims", default="1280,2048")
    ap.add_argument("--baseline", type=Path, required=True)
    ap.add_argument("--baseline-name", default="baseline")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    rows = [f"| vectors | dim | pairs | path | {a.baseline_name}: s, peak MiB | this tree: s, "
            "peak MiB | time ratio | memory ratio |", "|---|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(s) for s in a.sizes.split(",")):
            for dim in (int(d) for d in a.dims.split(",")):
                x = Path(tmp) / f"x{n}_{dim}.npy"
                vectors(n, dim, x)
                for path, env in (("default", {}), ("AVX2", AVX2)):
                    got: dict[str, list[tuple[float, int]]] = {"base": [], "this": []}
                    for _ in range(a.repeats):  # in rounds: each tree once per round
                        for name, tree in (("base", a.baseline), ("this", ROOT)):
                            got[name].append(run(tree, x, Path(tmp) / f"{name}.npz", env))
                    base, this = (np.load(Path(tmp) / f"{k}.npz") for k in ("base", "this"))
                    if any(not np.array_equal(base[k], this[k]) for k in ("i", "j", "score")):
                        sys.exit(f"{n} x {dim}: the trees' pairs differ")
                    (bs, bm), (ts, tm) = ((statistics.median(s for s, _ in got[k]),
                                           max(m for _, m in got[k]) / 1024)
                                          for k in ("base", "this"))
                    rows.append(f"| {n:,} | {dim} | {len(this['i']):,} | {path} | {bs:.2f}, "
                                f"{bm:.0f} | {ts:.2f}, {tm:.0f} | {bs / ts:.1f}x faster | "
                                f"{bm / tm:.1f}x less |")
                    print(rows[-1], flush=True)
    body = ("`find_pairs(threshold=0.75, method='exact')` on one cluster of unit vectors "
            "(nearly every pair a candidate), in a fresh process per run; search seconds "
            f"(median of {a.repeats}) and the process's peak RSS (the largest of the runs; "
            "the vectors themselves are under 20 MiB); both trees give the same pairs and "
            "scores.\n\n" + "\n".join(rows))
    update_section("rescore-memory", "Exact re-scoring of many candidates: memory and time",
                   this_command(), body)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
