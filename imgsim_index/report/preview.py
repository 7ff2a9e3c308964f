"""preview: an indexed entry (image file or video frame) -> an upright RGB image for display."""

from __future__ import annotations

from PIL import Image

from imgsim_index.ingest.upright import upright_image


def preview_image(path: str, box: tuple[int, int]) -> Image.Image:
    """Fit within `box`; raises DecodeError (or OSError) when the entry cannot be shown."""
    return upright_image(path, box, "preview")
