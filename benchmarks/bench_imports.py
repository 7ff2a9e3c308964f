#!/usr/bin/env python3
"""A camera stream into one index: many small imports after a large one, before and after.

usage: python benchmarks/bench_imports.py [--n 1000000] [--dim 512] [--batches 40]
         [--batch 1000] [--baseline REV] [--workdir DIR] [--no-write]

Imports --n random unit vectors (`import-vectors`, compacted as by default), then --batches
imports of --batch new vectors each, as a camera's frames arrive; every command is a fresh
CLI process, timed whole, with its peak RSS (VmHWM). The same stream runs on a copy of the
first index with the code of --baseline (`git archive REV | tar -x`) in the same run. Per
code: the imports' total, median and slowest seconds, their peak, how many rewrote the
compacted base (the file's inode changed) and the vector files left. Writes the section
`bench-imports` of RESULTS.md unless --no-write.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.bench_common import fmt_table, run_cli  # noqa: E402
from benchmarks.results_file import cpu_features, this_command, update_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CHUNK = 100_000


def write_batch(out: Path, start: int, n: int, dim: int, seed: int) -> None:
    """n unit vectors (rows start..start+n-1) to out.npy, their paths to out.paths."""
    rng = np.random.default_rng(seed)
    mm = np.lib.format.open_memmap(str(out) + ".npy", mode="w+", dtype=np.float32,
                                   shape=(n, dim))
    for s in range(0, n, CHUNK):
        x = rng.standard_normal((min(CHUNK, n - s), dim)).astype(np.float32)
        mm[s:s + len(x)] = x / np.linalg.norm(x, axis=1, keepdims=True)
    mm.flush()
    del mm
    with open(str(out) + ".paths", "w") as fh:
        fh.writelines(f"/cams/c{k % 10}/f{k:09d}.jpg\n" for k in range(start, start + n))


def stream(idx: Path, work: Path, a: argparse.Namespace, root: Path) -> list[str]:
    """The --batches imports into idx with the code of `root`: one table row."""
    base = idx / "vectors.faiss"
    secs, peaks, rewrites = [], [], 0
    for b in range(a.batches):
        start = a.n + b * a.batch
        write_batch(work / "batch", start, a.batch, a.dim, 1000 + b)
        inode = base.stat().st_ino
        s, gib, _, _ = run_cli(["import-vectors", str(work / "batch.npy"),
                                str(work / "batch.paths"), "--index", str(idx), "-q"],
                               root=root)
        secs.append(s)
        peaks.append(gib)
        rewrites += int(base.stat().st_ino != inode)
    files = len(list((idx / "segments").glob("*.faiss"))) + 1
    return [f"{statistics.median(secs):.2f}", f"{max(secs):.2f}", f"{sum(secs):.1f}",
            f"{max(peaks):.2f}", str(rewrites), str(files)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--baseline", default="HEAD~1", help="a revision to compare with")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-imports-", dir=a.workdir))
    try:
        write_batch(work / "base", 0, a.n, a.dim, 0)
        first = work / "index"
        s, gib, _, _ = run_cli(["import-vectors", str(work / "base.npy"),
                                str(work / "base.paths"), "--index", str(first), "-q"])
        (work / "base.npy").unlink()
        tree = work / "baseline-tree"
        tree.mkdir()
        subprocess.run(f"git -C {ROOT} archive {a.baseline} | tar -x -C {tree}", shell=True,
                       check=True)
        rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", a.baseline],
                             capture_output=True, text=True, check=True).stdout.strip()
        copy = work / "index-baseline"
        shutil.copytree(first, copy)
        rows = [[f"baseline {rev}", *stream(copy, work, a, tree)],
                ["this tree", *stream(first, work, a, ROOT)]]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    header = ["code", "median s", "slowest s", "total s", "peak GiB",
              "imports that rewrote the base", "vector files left"]
    body = (f"{a.n:,} x {a.dim} random unit vectors imported first ({s:.0f} s, peak "
            f"{gib:.2f} GiB, compacted), then {a.batches} imports of {a.batch:,} new vectors "
            f"each, every one a fresh `import-vectors` process (wall of the whole command, "
            f"peak = VmHWM). CPU features: {cpu_features()}.\n\n" + fmt_table(header, rows))
    print(body)
    if not a.no_write:
        update_section("bench-imports", "A camera stream: many small imports after a large "
                       "one", this_command(), body)


if __name__ == "__main__":
    main()
