#!/usr/bin/env python3
"""Start-up and no-op costs, as whole processes: `--help`, a full build of N images against
a no-op build of the same folder (same run), and a no-op build of an index of many files.

usage: python benchmarks/bench_startup.py [--n 96] [--big 10000] [--repeat 3]

The many-file index is filled through the store with random vectors (under the identity
a real build wrote), for files that exist on disk, so the no-op build's scan and catalog
lookups are real while no CNN runs for 10,000 images.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.results_file import this_command, update_section  # noqa: E402
from imgsim_index.index.catalog import NewRow  # noqa: E402
from imgsim_index.index.store import IndexStore  # noqa: E402

MODEL = "efficientnet-lite0"  # weights from a pip package: no download


def cpu_flags() -> str:
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                wanted = ["avx2", "avx512f", "avx512_bf16", "amx_bf16"]
                return ", ".join(f for f in wanted if f in flags) or "none of avx2/avx512"
    return "unknown"


def timed(*args: str) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, *args], check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    return time.perf_counter() - t


def photos(folder: Path, n: int, w: int = 1280, h: int = 960) -> None:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:h, 0:w]
    for k in range(n):
        a, b, c = rng.uniform(0.002, 0.02, 3)
        rgb = np.dstack([np.sin(x * a + k) * 120 + 128, np.cos(y * b) * 120 + 128,
                         np.sin((x + y) * c) * 120 + 128]).astype(np.uint8)
        sub = folder / f"d{k % 8}"
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb).save(sub / f"p{k:05d}.jpg", quality=90)


def many_files_index(folder: Path, index: Path, n: int, like: Path) -> None:
    """`n` small files in `folder`, catalogued in `index` with the identity of `like`."""
    identity = IndexStore.read_manifest(str(like))
    for k in range(n):
        sub = folder / f"d{k % 100:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"f{k:06d}.jpg").write_bytes(b"\xff\xd8" + k.to_bytes(4, "little"))
    root = str(folder.resolve())
    rows = []
    for dirpath, _, names in os.walk(root):
        for name in names:
            p = os.path.join(dirpath, name)
            st = os.stat(p)
            rows.append(NewRow(p, root, st.st_size, st.st_mtime_ns, 64, 48))
    rng = np.random.default_rng(1)
    vec = rng.standard_normal((len(rows), int(identity["dim"])), dtype=np.float32)
    vec /= np.linalg.norm(vec, axis=1, keepdims=True)
    store = IndexStore.open_writer(str(index), identity)
    try:
        store.commit(rows, vec)
        if store.needs_compaction():
            store.compact()
    finally:
        store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=96, help="images in the full build")
    ap.add_argument("--big", type=int, default=10_000, help="files in the no-op-only index")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each fast case (median)")
    args = ap.parse_args()
    cli = ["-m", "imgsim_index"]
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        helps = [timed(*cli, "--help") for _ in range(max(5, args.repeat))]
        modules = subprocess.run(
            [sys.executable, "-c", "import sys, runpy; sys.argv=['x','--help']\n"
             "try:\n runpy.run_module('imgsim_index', run_name='__main__')\n"
             "except SystemExit: pass\n"
             "print('MODULES:', ' '.join(m for m in ('numpy','torch','faiss','cv2','PIL') "
             "if m in sys.modules))"],
            capture_output=True, text=True, check=True).stdout.split("MODULES:")[-1].strip()
        photos(t / "photos", args.n)
        full = timed(*cli, "build", str(t / "photos"), "--index", str(t / "idx"),
                     "--model", MODEL, "-q")
        noop = [timed(*cli, "build", str(t / "photos"), "--index", str(t / "idx"), "-q")
                for _ in range(args.repeat)]
        many_files_index(t / "many", t / "big", args.big, t / "idx")
        big = [timed(*cli, "build", str(t / "many"), "--index", str(t / "big"), "-q")
               for _ in range(args.repeat)]
    med = statistics.median
    body = (
        f"CPU flags: {cpu_flags()}. Model {MODEL}; {args.n} JPEGs of 1280x960; "
        f"whole processes (`python -m imgsim_index ...`), median of {args.repeat} "
        f"(--help: of {len(helps)}).\n\n"
        "| case | seconds | against the full build |\n|---|---|---|\n"
        f"| `--help` | {med(helps):.2f} | |\n"
        f"| full build, {args.n} images | {full:.2f} | 1.00 |\n"
        f"| no-op build, same {args.n} images | {med(noop):.2f} | {med(noop) / full:.3f} |\n"
        f"| no-op build, index of {args.big} files | {med(big):.2f} | "
        f"{med(big) / full:.3f} |\n\n"
        f"Modules `--help` imports among numpy, torch, faiss, cv2, PIL: {modules or 'none'}.\n"
    )
    print(body)
    update_section("startup", "Start-up and no-op runs", this_command(), body)


if __name__ == "__main__":
    main()
