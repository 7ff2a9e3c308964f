#!/usr/bin/env python3
"""SIGKILL a real `imgsim-index build` at random moments, resume, and check the index.

usage: stress_kill.py IMAGES_DIR WORK_DIR [--iterations 100] [--seed 0]

Each iteration starts a build of IMAGES_DIR into a fresh index with small
checkpoints, kills it with SIGKILL at a seeded random moment after it opened
the index, then checks that
  * the index is consistent (every embedded row has exactly one sound vector;
    orphan vector files from the interrupted commit are allowed and are removed
    by the next writer),
  * the resumed build embeds exactly the images that were not committed,
  * the result is complete, verifies clean, and equals a reference build
    (same paths, vectors within 1e-5).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from imgsim_index.index.check import verify_index  # noqa: E402
from imgsim_index.index.store import IndexStore  # noqa: E402

ARGS = ("--checkpoint-every", "4", "--batch-size", "4", "--workers", "1")


def build_cmd(images: Path, index: Path) -> list[str]:
    return [sys.executable, "-m", "imgsim_index", "build", str(images), "--index", str(index),
            "--model", "efficientnet-lite0", *ARGS, "-q"]


def resume(images: Path, index: Path, model: object) -> tuple[int, int]:
    """The next build, in this process (the model is loaded once): (embedded, unchanged)."""
    from imgsim_index.embed.embedder import EmbedSettings
    from imgsim_index.pipeline.build import BuildSettings, build_index

    settings = BuildSettings(checkpoint_images=4, embed=EmbedSettings(batch_size=4, workers=1))
    r = build_index([str(images)], str(index), settings, model=model)  # type: ignore[arg-type]
    return r.embedded, r.unchanged


def snapshot(index: Path) -> dict[str, np.ndarray]:
    with IndexStore.open_reader(str(index)) as store:
        loaded = store.load()
    return {r.path: loaded.vectors[k] for k, r in enumerate(loaded.rows)}


def _start(images: Path, index: Path) -> tuple[subprocess.Popen[bytes], float]:
    """Start a build; return it and the moment it opened the index."""
    proc = subprocess.Popen(build_cmd(images, index), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (index / "catalog.sqlite").exists() and proc.poll() is None:
        if time.monotonic() > deadline:
            raise AssertionError("the build never opened its index")
        time.sleep(0.01)
    return proc, time.monotonic()


def reference_build(images: Path, work: Path) -> tuple[dict[str, np.ndarray], float]:
    """An uninterrupted build: its vectors, and how long it held the index open."""
    index = work / "reference"
    proc, opened = _start(images, index)
    assert proc.wait() == 0
    return snapshot(index), time.monotonic() - opened


def _no_survivors(index: Path, timeout: float = 15.0) -> None:
    """The build's decoding workers must die with it, not linger holding memory."""
    deadline = time.monotonic() + timeout
    while True:
        alive = []
        for pid in os.listdir("/proc"):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    if str(index).encode() in fh.read():
                        alive.append(pid)
            except OSError:
                continue
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert not alive, f"processes of the killed build survive: {alive}"


def one_iteration(images: Path, work: Path, seed: int, reference: dict[str, np.ndarray],
                  window: float, model: object) -> str:
    rng = random.Random(seed)
    index = work / f"index-{seed}"
    proc, _ = _start(images, index)
    time.sleep(rng.uniform(0.0, window * 0.8))  # from opening the index to near the end
    finished_first = proc.poll() is not None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _no_survivors(index)
    committed = 0
    if (index / "manifest.json").exists():
        report = verify_index(str(index))
        problems = [p for p in report.problems if not p.startswith("orphan vector file")]
        assert not problems, f"seed {seed}: inconsistent after kill: {problems}"
        committed = report.embedded + report.errors
    embedded, unchanged = resume(images, index, model)
    assert unchanged == committed, f"seed {seed}: {committed} committed, {unchanged} kept"
    assert embedded == len(reference) - committed, f"seed {seed}: re-embedded {embedded}"
    report = verify_index(str(index))
    assert report.ok and not report.notes, f"seed {seed}: {report.problems} {report.notes}"
    got = snapshot(index)
    assert set(got) == set(reference), f"seed {seed}: paths differ"
    worst = max(float(np.abs(got[p] - reference[p]).max()) for p in got)
    assert worst < 1e-5, f"seed {seed}: vectors differ by {worst}"
    return (f"seed {seed}: killed {'after it finished' if finished_first else 'mid-run'}, "
            f"{committed} committed before, {embedded} embedded on resume")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("images")
    ap.add_argument("work")
    ap.add_argument("--iterations", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    from imgsim_index.embed.models import load_model

    model = load_model("efficientnet-lite0")
    reference, window = reference_build(Path(a.images), work)
    for k in range(a.iterations):
        print(one_iteration(Path(a.images), work, a.seed + k, reference, window, model),
              flush=True)
    print(f"{a.iterations} iterations: consistent after every kill, complete after resume")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
