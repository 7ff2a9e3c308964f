"""Bounded decoding: extreme aspect ratios are resampled from the crop window only."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from imgsim_index.ingest import decode
from imgsim_index.ingest.decode import Preprocess, decode_bytes

PRE = Preprocess(256, 224, "bilinear", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


def png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def test_a_1_by_100000_strip_decodes_to_its_centre() -> None:
    strip = np.zeros((100_000, 1, 3), np.uint8)
    strip[:] = (200, 10, 10)  # red, with a green band in the middle
    strip[49_990:50_010] = (10, 200, 10)
    d = decode_bytes(png(Image.fromarray(strip)), PRE)
    assert (d.width, d.height, d.pixels.shape) == (1, 100_000, (224, 224, 3))
    # the crop window is 224/256 of a source pixel around the middle: all green
    assert np.unique(d.pixels.reshape(-1, 3), axis=0).tolist() == [[10, 200, 10]]


def test_the_crop_window_rule_gives_the_same_pixels_as_resize_then_crop() -> None:
    rng = np.random.default_rng(0)
    im = Image.fromarray(rng.integers(0, 255, (40, 1000, 3), dtype=np.uint8)).resize((2000, 80))
    resized = im.resize((6400, 256), Image.Resampling.BILINEAR)  # above the bound
    left = (6400 - 224) // 2
    whole = np.asarray(resized.crop((left, 16, left + 224, 240)))
    assert decode.MAX_RESIZED_SIDE < 6400
    assert np.array_equal(decode.resize_and_crop(im, PRE), whole)
