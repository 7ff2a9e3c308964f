"""collage: up to N randomly chosen pairs, side by side, with score and file names."""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from PIL import Image, ImageDraw, ImageFont

from imgsim_index.defaults import thumbnail_workers
from imgsim_index.report.preview import preview_image

THUMB = (360, 270)
CAPTION_H = 44
PAD = 10
FONT_SIZE = 15


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    for candidate in ("DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"):
        try:
            return ImageFont.truetype(candidate, size)
        except OSError:
            continue
    return ImageFont.load_default(size=size)


def _thumb(path: str) -> Image.Image:
    try:
        return preview_image(path, THUMB)
    except Exception:  # the file changed since it was indexed: show a placeholder
        im = Image.new("RGB", (THUMB[0], THUMB[1]), (60, 60, 60))
        ImageDraw.Draw(im).text((10, 10), "cannot read", fill=(255, 255, 255), font=_font(14))
        return im


def _short(path: str, width: int) -> str:
    parent = os.path.basename(os.path.dirname(path))
    name = f"{parent}/{os.path.basename(path)}" if parent else os.path.basename(path)
    return name if len(name) <= width else "…" + name[-(width - 1):]


def write_collage(
    pairs: Sequence[tuple[str, str, float]], path: str, max_pairs: int = 20, seed: int = 0,
    threshold: float | None = None,
) -> int:
    """Write the collage to `path`; returns how many pairs it shows."""
    chosen = list(pairs)
    if len(chosen) > max_pairs:
        chosen = random.Random(seed).sample(chosen, max_pairs)
        chosen.sort(key=lambda p: -p[2])
    font = _font(FONT_SIZE)
    row_w = 2 * THUMB[0] + 3 * PAD
    row_h = THUMB[1] + CAPTION_H + PAD
    canvas = Image.new("RGB", (row_w, max(1, len(chosen)) * row_h + PAD), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    if not chosen:
        msg = "No pairs met the similarity threshold"
        if threshold is not None:
            msg += f" ({threshold})"
        draw.text((PAD, PAD + 40), msg, fill=(0, 0, 0), font=font)
    # decoded in threads (Pillow releases the GIL while decoding): each distinct file once
    paths = list(dict.fromkeys(p for a, b, _ in chosen for p in (a, b)))
    with ThreadPoolExecutor(max_workers=thumbnail_workers()) as pool:
        thumbs = dict(zip(paths, pool.map(_thumb, paths), strict=True))
    for k, (a, b, score) in enumerate(chosen):
        top = PAD + k * row_h
        for col, p in enumerate((a, b)):
            im = thumbs[p]
            left = PAD + col * (THUMB[0] + PAD)
            canvas.paste(im, (left + (THUMB[0] - im.width) // 2, top + (THUMB[1] - im.height) // 2))
            draw.text((left, top + THUMB[1] + 4), _short(p, 40), fill=(0, 0, 0), font=font)
        draw.text((PAD, top + THUMB[1] + 4 + FONT_SIZE + 4), f"similarity {score:.6f}",
                  fill=(180, 0, 0), font=font)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    canvas.save(path, quality=90)
    return len(chosen)
