"""preview: an indexed entry (image file or video frame) -> an upright RGB image for display."""

from __future__ import annotations

import io

from PIL import Image, ImageOps

from imgsim_index.errors import DecodeError
from imgsim_index.ingest.decode import BACKGROUND, DEFAULT_MAX_PIXELS, _to_rgb, read_file
from imgsim_index.ingest.video import read_frame, split_frame_path


def preview_image(path: str, box: tuple[int, int]) -> Image.Image:
    """Fit within `box`; raises DecodeError (or OSError) when the entry cannot be shown."""
    if split_frame_path(path)[1] is not None:
        im = read_frame(path)
    else:
        im = Image.open(io.BytesIO(read_file(path)))
        if im.width * im.height > DEFAULT_MAX_PIXELS:
            raise DecodeError("too large to preview")
        im.draft("RGB", box)  # JPEG: decode at a reduced DCT scale, much faster
        im = ImageOps.exif_transpose(im)
        im = _to_rgb(im, BACKGROUND)
    im.thumbnail(box)
    return im
