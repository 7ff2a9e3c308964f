#!/usr/bin/env python3
"""Generate a static-camera clip: quiet stretches (only sensor noise) and stretches where
someone walks through, with the light dimming from one quiet stretch to the next (evening
falls). Each quiet stretch is a run of repeated frames a CCTV dedupe should group.

usage: make_cctv_clip.py OUT.avi [--seconds 60] [--fps 10] [--seed 0]
Prints the quiet stretches (the expected duplicate groups at 1 frame/s).
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_samples import scene  # noqa: E402


def write_clip(out: str, seconds: int = 60, fps: int = 10, seed: int = 0,
               size: tuple[int, int] = (640, 480)) -> list[tuple[int, int]]:
    """Write the clip; return the quiet stretches as (first second, last second)."""
    rng = random.Random(seed)
    noise = np.random.default_rng(seed)
    background = np.asarray(scene(rng, size))[:, :, ::-1].copy()  # BGR for OpenCV
    writer = cv2.VideoWriter(out, cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    if not writer.isOpened():
        raise SystemExit(f"OpenCV cannot write {out}")
    quiet: list[tuple[int, int]] = []
    t, walking, light = 0, False, 1.0
    while t < seconds:
        span = min(seconds - t, rng.randrange(5, 12))
        if not walking:
            quiet.append((t, t + span - 1))
        lit = (background * light).astype(np.uint8)
        top, coat = rng.randrange(120, 240), tuple(rng.randrange(256) for _ in range(3))
        for f in range(span * fps):
            frame = lit.copy()
            if walking:  # a figure crossing the scene, left to right
                x = int((f / (span * fps)) * (size[0] + 80)) - 80
                cv2.rectangle(frame, (x, top), (x + 60, top + 220), coat, -1)
                cv2.circle(frame, (x + 30, top - 30), 28, (60, 160, 230), -1)
            jitter = noise.integers(-3, 4, frame.shape)
            writer.write(np.clip(frame.astype(np.int16) + jitter, 0, 255).astype(np.uint8))
        if walking:
            light *= 0.7  # the light dims while someone walks through
        t, walking = t + span, not walking
    writer.release()
    return quiet


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--fps", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    quiet = write_clip(a.out, a.seconds, a.fps, a.seed)
    print(f"{a.out}: {a.seconds} s; quiet stretches (s): "
          + ", ".join(f"{s}-{e}" for s, e in quiet))


if __name__ == "__main__":
    main()
