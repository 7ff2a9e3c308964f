#!/usr/bin/env python3
"""Generate a folder of sample images with known near-duplicates (no downloads).

usage: make_samples.py OUT [--distinct 40] [--seed 0]
writes OUT/images/{camera,backup}/... and OUT/truth.json (paths relative to OUT/images,
the format ../shared/eval/score_pairs.py reads).

Each distinct image is a random scene (gradient sky, ground, shapes, text);
some get edited copies (re-encoded, resized, slightly cropped, brightened,
EXIF-rotated), spread over two sub-folders, as a camera roll and a backup
would be.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageEnhance, ImageFilter


def scene(rng: random.Random, size: tuple[int, int] = (960, 720)) -> Image.Image:
    w, h = size
    im = Image.new("RGB", size)
    d = ImageDraw.Draw(im)
    top = tuple(rng.randrange(256) for _ in range(3))
    bottom = tuple(rng.randrange(256) for _ in range(3))
    horizon = rng.randrange(h // 3, 2 * h // 3)
    for y in range(horizon):
        f = y / horizon
        colour = tuple(int(a * (1 - f) + b * f) for a, b in zip(top, bottom, strict=True))
        d.line([(0, y), (w, y)], fill=colour)
    ground = tuple(rng.randrange(256) for _ in range(3))
    d.rectangle([0, horizon, w, h], fill=ground)
    for _ in range(rng.randrange(4, 12)):
        x0, y0 = rng.randrange(w), rng.randrange(h)
        x1, y1 = x0 + rng.randrange(40, w // 2), y0 + rng.randrange(40, h // 2)
        colour = tuple(rng.randrange(256) for _ in range(3))
        kind = rng.choice(["ellipse", "rectangle", "polygon", "lines"])
        if kind == "ellipse":
            d.ellipse([x0, y0, x1, y1], fill=colour, outline=(0, 0, 0), width=3)
        elif kind == "rectangle":
            d.rectangle([x0, y0, x1, y1], fill=colour)
        elif kind == "polygon":
            pts = [(rng.randrange(w), rng.randrange(h)) for _ in range(rng.randrange(3, 7))]
            d.polygon(pts, fill=colour)
        else:
            for k in range(rng.randrange(3, 10)):
                d.line([(x0, y0 + 12 * k), (x1, y0 + 12 * k + rng.randrange(-40, 40))],
                       fill=colour, width=rng.randrange(2, 8))
    return im.filter(ImageFilter.GaussianBlur(1))


EDITS = {
    "q60.jpg": lambda im: (im, {"quality": 60}),
    "small.png": lambda im: (im.resize((im.width * 3 // 5, im.height * 3 // 5)), {}),
    "crop95.jpg": lambda im: (im.crop((0, 0, im.width * 95 // 100, im.height * 95 // 100)),
                              {"quality": 90}),
    "bright.jpg": lambda im: (ImageEnhance.Brightness(im).enhance(1.1), {"quality": 90}),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--distinct", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    root = Path(a.out)
    out = root / "images"
    (out / "camera").mkdir(parents=True, exist_ok=True)
    (out / "backup").mkdir(parents=True, exist_ok=True)
    groups = []
    for k in range(a.distinct):
        im = scene(rng)
        name = f"scene_{k:03d}"
        im.save(out / "camera" / f"{name}.jpg", quality=92)
        group = [f"camera/{name}.jpg"]
        if k % 2 == 0:  # half of the scenes have copies
            for edit in rng.sample(sorted(EDITS), rng.randrange(1, 3)):
                copy, kw = EDITS[edit](im)
                rel = f"backup/{name}_{edit}"
                copy.save(out / rel, **kw)
                group.append(rel)
            if k % 4 == 0:
                exif = Image.Exif()
                exif[0x0112] = 6  # stored rotated, shown upright
                rel = f"backup/{name}_rotated.jpg"
                im.transpose(Image.Transpose.ROTATE_90).save(out / rel, exif=exif, quality=92)
                group.append(rel)
            groups.append(group)
    n = sum(len(g) for g in groups) + (a.distinct - len(groups))
    (root / "truth.json").write_text(json.dumps({"groups": groups}, indent=1))
    print(f"{n} images, {len(groups)} duplicate groups -> {out}")


if __name__ == "__main__":
    main()
