"""Helpers shared by the benchmarks: seeded vectors with planted near-duplicates, one
subprocess per measured method (so peak memory is that method's own), and pair comparison."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


# Runs a CLI command in a fresh interpreter and writes its peak RSS (VmHWM) to stderr last
PEAK_WRAPPER = """
import atexit, sys
def peak():
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                sys.stderr.write("PEAK_KIB " + line.split()[1] + "\\n")
atexit.register(peak)
import os
if os.environ.get("BENCH_IVF_ABOVE"):  # smoke runs: an IVF below its size (not in the baseline)
    from imgsim_index.index import ivf
    ivf.IVF_ABOVE = int(os.environ["BENCH_IVF_ABOVE"])
"""
CLI_WRAPPER = PEAK_WRAPPER + """
from imgsim_index.cli import main
sys.argv = ["imgsim-index", *sys.argv[1:]]
main()
"""


def run_cli(args: list[str], env: dict[str, str] | None = None, root: Path = ROOT
            ) -> tuple[float, float, str, str]:
    """(seconds, peak GiB, stdout, stderr) of one CLI command of the tree `root` in a fresh
    interpreter."""
    import time

    e = {**os.environ, "PYTHONPATH": str(root), **(env or {})}
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CLI_WRAPPER, *args], capture_output=True,
                          text=True, env=e, cwd=str(root))
    seconds = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"imgsim-index {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    peak = [line for line in proc.stderr.splitlines() if line.startswith("PEAK_KIB ")]
    return seconds, int(peak[-1].split()[1]) / 2**20, proc.stdout, proc.stderr


def planted_vectors(n: int, dim: int, seed: int, low: float, share: float = 0.01,
                    clusters: int = 0, chunk: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """Random unit vectors (float32, generated in chunks) and about `share` x n planted
    near-duplicate pairs whose cosine is uniform in [low, 1): a copy b = t a + sqrt(1-t^2) u
    with u orthogonal to a. A tenth of the copies get a second copy (groups of three).
    Random pairs at dim >= 512 score below ~0.3 (~0.5 within a cluster), so the pairs
    above `low` are the planted ones and some (source, second copy) pairs.
    Returns (vectors, planted (k, 2) int64 rows)."""
    rng = np.random.default_rng(seed)
    x = np.empty((n, dim), np.float32)
    if clusters:  # centres of Zipf-like sizes; same-centre vectors score about 0.5
        centres = rng.standard_normal((clusters, dim), dtype=np.float32)
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
        weights = 1.0 / np.arange(1, clusters + 1) ** 0.7
        of = rng.choice(clusters, size=n, p=weights / weights.sum())
    for s in range(0, n, chunk):
        block = rng.standard_normal((min(n, s + chunk) - s, dim), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        if clusters:
            block += centres[of[s:s + len(block)]]
            block /= np.linalg.norm(block, axis=1, keepdims=True)
        x[s:s + len(block)] = block
    k = int(share * n)
    slots = rng.permutation(n)[: 2 * k + k // 10]
    sources = list(slots[:k]) + list(slots[k:2 * k][: k // 10])
    copies = list(slots[k:2 * k]) + list(slots[2 * k:])
    planted = []
    for a, b in zip(sources, copies, strict=True):
        t = rng.uniform(low, 1.0)
        va = x[a].astype(np.float64)
        u = rng.standard_normal(dim)
        u -= (u @ va) * va
        u /= np.linalg.norm(u)
        x[b] = (t * va + np.sqrt(1 - t * t) * u).astype(np.float32)
        planted.append((min(a, b), max(a, b)))
    return x, np.asarray(planted, np.int64).reshape(-1, 2)


def proc_status_mib(field: str) -> float:
    """A memory field of /proc/self/status (VmHWM, VmRSS, ...) in MiB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mib() -> float:
    """This process's peak resident memory so far: VmHWM, which starts afresh at exec.
    (ru_maxrss would carry over the forking parent's size at the fork.)"""
    return proc_status_mib("VmHWM")


def current_rss_mib() -> float:
    return proc_status_mib("VmRSS")


@dataclass
class ChildResult:
    method: str
    seconds: float
    peak_rss_mib: float  # the child's whole peak
    loaded_rss_mib: float  # its resident memory after loading the inputs
    info: dict[str, Any]

    @property
    def extra_mib(self) -> float:
        """Peak memory above what the loaded inputs already took."""
        return max(0.0, self.peak_rss_mib - self.loaded_rss_mib)


def run_child(script: str, args: list[str]) -> ChildResult:
    """Run `script --child ...` in a fresh interpreter; it prints one JSON line last."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run([sys.executable, script, *args], capture_output=True, text=True,
                          env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{script} {' '.join(args)} failed:\n{proc.stderr[-4000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return ChildResult(out.pop("method"), out.pop("seconds"), out.pop("peak_rss_mib"),
                       out.pop("loaded_rss_mib"), out)


def pair_keys(i: np.ndarray, j: np.ndarray, n: int) -> np.ndarray:
    return np.asarray(i, np.int64) * n + np.asarray(j, np.int64)


def fmt_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[k]) for r in rows)) for k, h in enumerate(header)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"
            for r in rows]
    return "\n".join([line, sep, *body])


def write_random_index(index: str, n: int, identity: dict[str, Any], seed: int = 0) -> None:
    """`n` random unit vectors written through IndexStore under `identity` (a real model's,
    so commands that embed a query accept the index), in commits of 20k, compacted when due.
    Rows are named /data/img000000000.jpg ...: the files do not exist."""
    from imgsim_index.index.catalog import NewRow
    from imgsim_index.index.store import IndexStore

    rng = np.random.default_rng(seed)
    store = IndexStore.open_writer(index, identity)
    try:
        for s in range(0, n, 20_000):
            m = min(20_000, n - s)
            x = rng.standard_normal((m, int(identity["dim"])), dtype=np.float32)
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            store.commit([NewRow(f"/data/img{k:09d}.jpg", "/data", 1000 + k, k, 224, 224)
                          for k in range(s, s + m)], x)
        if store.needs_compaction():
            store.compact()
    finally:
        store.close()


def photos(folder: Path, n: int, w: int = 1280, h: int = 960) -> None:
    """`n` generated w x h JPEGs (smooth colour waves, quality 90) in 8 subfolders of `folder`."""
    from PIL import Image

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:h, 0:w]
    for k in range(n):
        a, b, c = rng.uniform(0.002, 0.02, 3)
        rgb = np.dstack([np.sin(x * a + k) * 120 + 128, np.cos(y * b) * 120 + 128,
                         np.sin((x + y) * c) * 120 + 128]).astype(np.uint8)
        sub = folder / f"d{k % 8}"
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb).save(sub / f"p{k:05d}.jpg", quality=90)
