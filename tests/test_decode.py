"""decode: a file -> (224, 224, 3) uint8 pixels of the upright image, or DecodeError."""

from __future__ import annotations

import io
import os
import struct
import sys
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from imgsim_index.embed.models.efficientnet import EFFICIENTNET_LITE0
from imgsim_index.embed.models.resnet import RESNET50
from imgsim_index.errors import DecodeError
from imgsim_index.ingest.decode import DEFAULT_MAX_PIXELS, decode_bytes, decode_file

PRE = RESNET50.preprocess
SHAPE = (PRE.crop, PRE.crop, 3)


# -- generated pictures --------------------------------------------------------------
def scene(w: int, h: int) -> np.ndarray:
    """A smooth, asymmetric RGB picture (gradients + a checkerboard), JPEG-friendly."""
    y, x = np.mgrid[0:h, 0:w]
    r = x * 255 // max(1, w - 1)
    g = y * 255 // max(1, h - 1)
    b = ((x * 8 // w + y * 6 // h) % 2) * 180 + 40
    rgb = np.dstack([r, g, b]).astype(np.uint8)
    rgb[: h // 5, : w // 4] = (250, 20, 20)  # a marker in the top-left corner
    return rgb


def encode(im: Image.Image, fmt: str, **kw: Any) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(w: int, h: int, color_type: int = 2) -> bytes:
    """A PNG whose header declares w x h pixels, with a few bytes of image data."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
            + png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + png_chunk(b"IEND", b""))


def mean_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int32) - b.astype(np.int32)).mean())


def within(seconds: float, fn: Callable[[], object]) -> object:
    """Run fn in a watchdog thread; fail (instead of hanging) if it takes too long."""
    box: dict[str, object] = {}

    def work() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc

    t = threading.Thread(target=work, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"did not return within {seconds} s"
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box.get("value")


def check_pixels(pixels: np.ndarray) -> None:
    assert pixels.shape == SHAPE
    assert pixels.dtype == np.uint8


# -- ordinary images -----------------------------------------------------------------
@pytest.mark.parametrize("fmt,ext", [("JPEG", "jpg"), ("PNG", "png"), ("BMP", "bmp"),
                                     ("GIF", "gif"), ("TIFF", "tif"), ("WEBP", "webp")])
def test_formats_decode_to_model_input(tmp_path: Path, fmt: str, ext: str) -> None:
    im = Image.fromarray(scene(320, 240))
    d = decode_file(write(tmp_path / f"x.{ext}", encode(im, fmt)), PRE)
    check_pixels(d.pixels)
    assert (d.width, d.height) == (320, 240)
    assert d.pixels.std() > 20  # a picture, not a blank


@pytest.mark.parametrize("size", [(64, 48), (224, 224), (1000, 300), (300, 1000), (2000, 1400)])
def test_any_size_gives_the_crop_size(size: tuple[int, int]) -> None:
    im = Image.fromarray(scene(*size))
    d = decode_bytes(encode(im, "JPEG", quality=90), PRE)
    check_pixels(d.pixels)
    assert (d.width, d.height) == size


def test_same_picture_in_two_formats_decodes_alike() -> None:
    im = Image.fromarray(scene(640, 480))
    png = decode_bytes(encode(im, "PNG"), PRE).pixels
    jpg = decode_bytes(encode(im, "JPEG", quality=95), PRE).pixels  # DCT draft mode
    assert mean_abs(png, jpg) < 3.0


def test_other_model_preprocessing() -> None:
    pre = EFFICIENTNET_LITE0.preprocess
    d = decode_bytes(encode(Image.fromarray(scene(500, 400)), "PNG"), pre)
    assert d.pixels.shape == (pre.crop, pre.crop, 3) and d.pixels.dtype == np.uint8


def test_png_bytes_named_jpg_decode_fine(tmp_path: Path) -> None:
    im = Image.fromarray(scene(300, 200))
    d = decode_file(write(tmp_path / "really_a_png.jpg", encode(im, "PNG")), PRE)
    ref = decode_bytes(encode(im, "PNG"), PRE)
    check_pixels(d.pixels)
    assert np.array_equal(d.pixels, ref.pixels)
    j = decode_file(write(tmp_path / "really_a_jpeg.png", encode(im, "JPEG")), PRE)
    check_pixels(j.pixels)


def test_unicode_path(tmp_path: Path) -> None:
    path = write(tmp_path / "фото 😀 new.jpg", encode(Image.fromarray(scene(100, 80)), "JPEG"))
    check_pixels(decode_file(path, PRE).pixels)


# -- files that are not (whole) images ----------------------------------------------------
def _decode_error(path: str, **kw: Any) -> str:
    with pytest.raises(DecodeError) as info:
        decode_file(path, PRE, **kw)
    msg = str(info.value)
    assert msg
    return msg


def test_empty_file(tmp_path: Path) -> None:
    assert "empty" in _decode_error(write(tmp_path / "e.jpg", b""))


def test_text_named_png(tmp_path: Path) -> None:
    msg = _decode_error(write(tmp_path / "t.png", b"hello, I am a text file\n" * 20))
    assert "not a recognised image" in msg


def test_random_bytes(tmp_path: Path) -> None:
    data = np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    _decode_error(write(tmp_path / "r.jpg", data))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "TIFF"])
def test_truncated(tmp_path: Path, fmt: str) -> None:
    data = encode(Image.fromarray(scene(400, 300)), fmt)
    msg = _decode_error(write(tmp_path / "t.img", data[: len(data) // 2]))
    assert "truncated" in msg or "corrupt" in msg or "not a recognised" in msg


def test_truncated_jpeg_says_truncated(tmp_path: Path) -> None:
    data = encode(Image.fromarray(scene(400, 300)), "JPEG")
    assert "truncated" in _decode_error(write(tmp_path / "t.jpg", data[: len(data) // 2]))


def test_corrupt_png_data(tmp_path: Path) -> None:
    data = bytearray(encode(Image.fromarray(scene(200, 150)), "PNG"))
    start = data.index(b"IDAT") + 4
    data[start:start + 200] = bytes(200)  # breaks the zlib stream and the CRC
    msg = _decode_error(write(tmp_path / "c.png", bytes(data)))
    assert "corrupt" in msg or "truncated" in msg


def test_only_the_first_bytes_of_a_jpeg(tmp_path: Path) -> None:
    data = encode(Image.fromarray(scene(200, 150)), "JPEG")
    _decode_error(write(tmp_path / "h.jpg", data[:20]))


def test_decompression_bomb_is_refused_with_a_reason(tmp_path: Path) -> None:
    t0 = time.perf_counter()
    msg = _decode_error(write(tmp_path / "bomb.png", png_claiming(100_000, 100_000)))
    assert "decompression bomb" in msg
    assert time.perf_counter() - t0 < 2.0  # refused from the header, nothing allocated


def test_max_pixels_is_honoured() -> None:
    data = encode(Image.fromarray(scene(200, 100)), "PNG")
    with pytest.raises(DecodeError, match="decompression bomb"):
        decode_bytes(data, PRE, max_pixels=19_999)
    check_pixels(decode_bytes(data, PRE, max_pixels=20_000).pixels)


def test_large_image_below_max_pixels_is_not_called_a_bomb() -> None:
    # 10000 x 9500 = 95 MP: more than Pillow's own warning limit (~89 MP) but less than
    # DEFAULT_MAX_PIXELS, so a 100 MP camera photo must not be refused as a bomb. This file
    # claims that size but holds almost no data: it must fail as truncated instead.
    assert DEFAULT_MAX_PIXELS > 10_000 * 9_500
    with pytest.raises(DecodeError) as info:
        decode_bytes(png_claiming(10_000, 9_500, color_type=0), PRE)
    assert "bomb" not in str(info.value)
    assert "truncated" in str(info.value) or "corrupt" in str(info.value)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX FIFO")
def test_fifo_is_refused_quickly(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    t0 = time.perf_counter()
    with pytest.raises(DecodeError, match="not a regular file"):
        within(5, lambda: decode_file(str(fifo), PRE))
    assert time.perf_counter() - t0 < 2.0


def test_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "d.jpg").mkdir()
    _decode_error(str(tmp_path / "d.jpg"))


def test_vanished_file(tmp_path: Path) -> None:
    path = write(tmp_path / "v.jpg", encode(Image.fromarray(scene(50, 50)), "JPEG"))
    os.unlink(path)
    assert "vanished" in _decode_error(path)


def test_file_over_max_bytes(tmp_path: Path) -> None:
    from imgsim_index.ingest.decode import read_file

    path = write(tmp_path / "big.jpg", b"\xff" * 1000)
    with pytest.raises(DecodeError, match="too large"):
        read_file(path, max_bytes=999)
    assert len(read_file(path, max_bytes=1000)) == 1000


# -- modes, transparency, animation, orientation -------------------------------------
def test_cmyk_jpeg() -> None:
    im = Image.fromarray(scene(400, 300))
    data = encode(im.convert("CMYK"), "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    d = decode_bytes(data, PRE)
    check_pixels(d.pixels)
    assert mean_abs(d.pixels, decode_bytes(encode(im, "PNG"), PRE).pixels) < 4.0


def test_grayscale_jpeg_and_png() -> None:
    gray = Image.fromarray(scene(400, 300)).convert("L")
    for data in (encode(gray, "JPEG"), encode(gray, "PNG"), encode(gray.convert("1"), "PNG")):
        d = decode_bytes(data, PRE)
        check_pixels(d.pixels)
        assert np.array_equal(d.pixels[..., 0], d.pixels[..., 1])
        assert d.pixels.std() > 20


def test_16bit_grayscale_png_keeps_contrast(tmp_path: Path) -> None:
    h = w = 400
    ramp = np.tile(np.linspace(0, 65535, w), (h, 1)).round().astype(np.uint16)
    ramp[:, w // 2: w // 2 + 20] = 65535
    im = Image.fromarray(ramp)
    assert im.mode.startswith("I;16")
    path = write(tmp_path / "deep.png", encode(im, "PNG"))
    assert Image.open(path).mode.startswith("I")
    d = decode_file(path, PRE)
    check_pixels(d.pixels)
    px = d.pixels[..., 0].astype(np.int32)
    assert not (px == 255).all() and not (px == 0).all()
    assert px.min() < 40 and px.max() > 215  # the full range, not clipped to white
    assert px.std() > 40
    row = px[PRE.crop // 2, :90]  # the left part of the ramp, before the bright band
    assert (np.diff(row) >= 0).all() and row[-1] - row[0] > 30  # still a ramp


def test_16bit_png_of_small_values_is_not_black() -> None:
    # a dark 16-bit picture: values 0..255 out of 65535 are treated as 8-bit values
    arr = np.tile(np.arange(256, dtype=np.uint16), (256, 1))
    d = decode_bytes(encode(Image.fromarray(arr), "PNG"), PRE)
    assert d.pixels.std() > 40


def test_palette_png_with_transparency() -> None:
    idx = np.zeros((200, 300), np.uint8)  # left half: entry 0, transparent
    idx[:, 150:] = 1  # right half: entry 1, opaque red
    idx[:5, :] = 2  # a thin blue band on top, cut off by the centre crop
    im = Image.fromarray(idx, "P")
    im.putpalette([0, 255, 0, 255, 0, 0, 0, 0, 255] + [0] * (253 * 3))  # entry 0 is green
    data = encode(im, "PNG", transparency=0)
    opened = Image.open(io.BytesIO(data))
    assert opened.mode == "P" and "transparency" in opened.info
    d = decode_bytes(data, PRE)
    check_pixels(d.pixels)
    left, right = d.pixels[:, :80].reshape(-1, 3), d.pixels[:, -80:].reshape(-1, 3)
    assert (left == np.array(PRE.background, np.uint8)).all()  # grey, not green or black
    assert (right == np.array((255, 0, 0), np.uint8)).all()


def test_transparent_pixels_become_the_fixed_background() -> None:
    rgba = np.zeros((300, 300, 4), np.uint8)
    rgba[..., :3] = (255, 0, 0)
    rgba[..., 3] = 0  # fully transparent red
    d = decode_bytes(encode(Image.fromarray(rgba, "RGBA"), "PNG"), PRE)
    assert (d.pixels == np.array(PRE.background, np.uint8)).all()


def test_alpha_only_pictures_stay_distinct() -> None:
    h = w = 300
    white = np.full((h, w, 3), 255, np.uint8)
    y, x = np.mgrid[0:h, 0:w]
    alpha_a = np.where(x < w // 2, 255, 0).astype(np.uint8)  # left half opaque
    alpha_b = np.where((x - 150) ** 2 + (y - 150) ** 2 < 80 ** 2, 255, 0).astype(np.uint8)  # disc
    da = decode_bytes(encode(Image.fromarray(np.dstack([white, alpha_a]), "RGBA"), "PNG"), PRE)
    db = decode_bytes(encode(Image.fromarray(np.dstack([white, alpha_b]), "RGBA"), "PNG"), PRE)
    for d in (da, db):
        check_pixels(d.pixels)
        assert d.pixels.std() > 30  # not a blank page
    assert mean_abs(da.pixels, db.pixels) > 30
    # and the same shape given as grey + alpha (LA) decodes like the RGBA one
    la = Image.fromarray(np.dstack([white[..., 0], alpha_a]), "LA")
    assert mean_abs(decode_bytes(encode(la, "PNG"), PRE).pixels, da.pixels) < 1.0


def test_animated_gif_gives_the_first_frame() -> None:
    colours = [(255, 0, 0), (0, 0, 255), (0, 255, 0)]
    frames = [Image.fromarray(np.full((100, 120, 3), c, np.uint8)) for c in colours]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    assert getattr(Image.open(io.BytesIO(buf.getvalue())), "n_frames", 1) == 3
    d = decode_bytes(buf.getvalue(), PRE)
    check_pixels(d.pixels)
    assert (d.width, d.height) == (120, 100)
    mean = d.pixels.reshape(-1, 3).mean(axis=0)
    assert mean[0] > 240 and mean[1] < 15 and mean[2] < 15


def test_animated_webp_gives_the_first_frame() -> None:
    frames = [Image.fromarray(np.full((64, 64, 3), c, np.uint8))
              for c in ((0, 0, 255), (255, 0, 0))]
    buf = io.BytesIO()
    frames[0].save(buf, "WEBP", save_all=True, append_images=frames[1:], duration=50,
                   lossless=True)
    mean = decode_bytes(buf.getvalue(), PRE).pixels.reshape(-1, 3).mean(axis=0)
    assert mean[2] > 240 and mean[0] < 15


# EXIF orientation -> the transpose that stores an upright picture so that it needs that tag
_STORE_AS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,  # displayed after turning 90 degrees clockwise
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


@pytest.mark.parametrize("size", [(400, 300), (1600, 1200)])  # the second uses JPEG draft
@pytest.mark.parametrize("orientation", [6, 2, 3, 4, 5, 7, 8])
def test_exif_orientation(orientation: int, size: tuple[int, int]) -> None:
    upright = Image.fromarray(scene(*size))
    stored = upright.transpose(_STORE_AS[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(stored, "JPEG", quality=95, exif=exif.tobytes())
    assert Image.open(io.BytesIO(data)).getexif().get(0x0112) == orientation
    d = decode_bytes(data, PRE)
    ref = decode_bytes(encode(upright, "JPEG", quality=95), PRE)
    assert (d.width, d.height) == size  # of the upright picture
    assert mean_abs(d.pixels, ref.pixels) < 2.0  # equal within JPEG noise
    # and clearly not the un-rotated pixels
    plain = decode_bytes(encode(stored, "JPEG", quality=95), PRE)
    assert mean_abs(plain.pixels, ref.pixels) > 10


def test_exif_orientation_1_and_none_are_identical() -> None:
    im = Image.fromarray(scene(300, 200))
    exif = Image.Exif()
    exif[0x0112] = 1
    a = decode_bytes(encode(im, "PNG", exif=exif.tobytes()), PRE)
    b = decode_bytes(encode(im, "PNG"), PRE)
    assert np.array_equal(a.pixels, b.pixels)
