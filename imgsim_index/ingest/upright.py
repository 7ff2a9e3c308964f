"""upright: an indexed entry (image file, camera RAW or video frame) -> an upright RGB image
of a given size, for verification and display (previews, thumbnails, the gallery).

Files open through decode.open_image, so every reader (HEIF, JPEG XL) is registered in
whatever process shows or verifies them; camera RAW shows its embedded preview when
large enough, as decoding does, else a half-size demosaic.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image, ImageOps

from imgsim_index.errors import DecodeError
from imgsim_index.ingest.decode import (
    BACKGROUND,
    DEFAULT_MAX_PIXELS,
    FLIP_TURNS,
    demosaic,
    open_image,
    raw_file,
    read_file,
    to_rgb,
)
from imgsim_index.ingest.formats import format_of
from imgsim_index.ingest.video import read_frame, split_frame_path


def upright_image(path: str, box: tuple[int, int], purpose: str = "decode") -> Image.Image:
    """An indexed entry (file, camera RAW or video frame) as an upright RGB image fitting
    `box`, with JPEG draft decoding; its upright (width, height) before any reduction in
    `info["upright_size"]`. DecodeError (or OSError) when it cannot be read."""
    fmt = format_of(path)
    if split_frame_path(path)[1] is not None:
        im = read_frame(path)
        size = im.size
    elif fmt is not None and fmt.raw:
        im, size = _raw_image(read_file(path), box)
    else:
        im = open_image(read_file(path), path)
        if im.width * im.height > DEFAULT_MAX_PIXELS:
            raise DecodeError(f"too large to {purpose}")
        size = im.size
        im.draft("RGB", box)  # JPEG: decode at a reduced DCT scale (still covering box)
        im = ImageOps.exif_transpose(im)
        if (im.width > im.height) != (size[0] > size[1]):
            size = size[::-1]  # turned upright
        im = to_rgb(im, BACKGROUND)
    im.thumbnail(box)
    im.info["upright_size"] = size  # (width, height) before any reduction
    return im


# A RAW file's embedded preview is shown and verified when its shorter side reaches this:
# the same rule as decode_raw with both models' resize target (256), so verification sees
# the picture the embedding saw.
RAW_PREVIEW_MIN_SIDE = 512


def _raw_image(data: bytes, box: tuple[int, int]) -> tuple[Image.Image, tuple[int, int]]:
    """A camera RAW file, upright: its embedded preview when large enough, else a half-size
    demosaic; and its upright full size."""
    with raw_file(data, DEFAULT_MAX_PIXELS) as (raw, flip, size):
        return _raw_preview_image(raw, box, flip) or demosaic(raw), size


def _raw_preview_image(raw: Any, box: tuple[int, int], flip: int) -> Image.Image | None:
    import rawpy

    try:
        thumb = raw.extract_thumb()
        if thumb.format == rawpy.ThumbFormat.BITMAP:
            im = Image.fromarray(np.ascontiguousarray(thumb.data, dtype=np.uint8), "RGB")
            oriented = False
        else:
            im = open_image(thumb.data)
            if min(im.size) < RAW_PREVIEW_MIN_SIDE:
                return None
            oriented = im.getexif().get(0x0112, 1) != 1
            im.draft("RGB", box)
            im = to_rgb(ImageOps.exif_transpose(im), BACKGROUND)
    except (rawpy.LibRawError, OSError, ValueError, SyntaxError):
        return None
    if min(im.size) < RAW_PREVIEW_MIN_SIDE and thumb.format == rawpy.ThumbFormat.BITMAP:
        return None
    turns = 0 if oriented else FLIP_TURNS.get(flip, 0)
    return im.rotate(90 * turns, expand=True) if turns else im


__all__ = ["RAW_PREVIEW_MIN_SIDE", "upright_image"]
