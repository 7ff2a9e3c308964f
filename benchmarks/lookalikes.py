#!/usr/bin/env python3
"""Smooth look-alikes: distinct pictures that the embedding scores alike and a free map
and tone curves fit onto each other. How many wrong copy verdicts, and what verifying
them costs.

usage: python benchmarks/lookalikes.py [--pictures 25] [--out DIR]

Writes PICTURES pictures (look_alike: a colour gradient and three soft blobs under their
own noise, seeds 0..N-1) with three copies each (JPEG 70 and 50, and a JPEG 90 at 80%
size), runs `imgsim-index dedupe` on them (efficientnet-lite0, the defaults) and prints
the groups that mix two pictures, the copy verdicts between different pictures, the
pairs compared and the verification's wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def look_alike(seed: int) -> np.ndarray:
    """A smooth picture (a colour gradient and three soft blobs) under its own noise:
    what synthetic sets and plain backdrops look like."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:240, 0:320]
    base = np.add.outer(np.arange(240), np.arange(320))[..., None] * rng.uniform(0.2, 0.8, 3)
    for _ in range(3):
        cy, cx, s = rng.uniform(0, 240), rng.uniform(0, 320), rng.uniform(20, 80)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
        base = base + rng.uniform(-80, 80, 3) * blob[..., None]
    return np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)


def write_set(folder: Path, pictures: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(pictures):
        im = Image.fromarray(look_alike(k))
        im.save(folder / f"p{k:03d}.jpg", quality=95)
        im.save(folder / f"p{k:03d}_q70.jpg", quality=70)
        im.save(folder / f"p{k:03d}_q50.jpg", quality=50)
        im.resize((256, 192)).save(folder / f"p{k:03d}_small.jpg", quality=90)


def picture(path: str) -> str:
    return os.path.basename(path)[:4]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pictures", type=int, default=25)
    ap.add_argument("--out", help="folder for the images and results (default: temporary)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.out or tmp)
        write_set(work / "images", args.pictures)
        t = time.perf_counter()
        run = subprocess.run(
            [sys.executable, "-c", "from imgsim_index.cli import main; main()", "dedupe",
             str(work / "images"), "--index", str(work / "index"), "--model",
             "efficientnet-lite0", "--output", str(work / "results"), "--json"],
            capture_output=True, text=True, cwd=ROOT, check=True)
        wall = time.perf_counter() - t
        report = json.loads(Path(json.loads(run.stdout)["report_path"]).read_text())
    mixed = [sorted({picture(m["path"]) for m in g["members"]}) for g in report["groups"]]
    mixed = [g for g in mixed if len(g) > 1]
    wrong = [p for p in report["similar_pairs"] if p["match"] in ("copy", "exact")
             and picture(p["image1"]) != picture(p["image2"])]
    v = report["verification"]
    print(f"{args.pictures} pictures x 4 files: {report['number_of_duplicate_groups']} groups "
          f"({len(mixed)} mixing pictures), {report['files_removable']} files removable "
          f"({3 * args.pictures} right), {len(wrong)} copy verdicts between different "
          f"pictures; pairs compared {v['compared']}, grouped {v['skipped_as_grouped']}, "
          f"apart {v['skipped_as_other_shot']}; verification "
          f"{report['timings_seconds'].get('verify', 0):.1f} s, dedupe {wall:.1f} s wall")


if __name__ == "__main__":
    main()
