"""decode: a file -> RGB uint8 pixels at the model's input size, or DecodeError with a reason.

The preprocessing here is part of a model's identity (see Preprocess.identity,
stored in the manifest): EXIF orientation applied, first frame of animations,
16-bit and CMYK converted, transparency composited onto a fixed mid-grey (not
white: some images keep their whole picture in the alpha channel over white
RGB, and compositing onto white would turn them all into the same blank
image), shorter side resized, centre crop. JPEGs are decoded in DCT-domain
"draft" mode at the smallest scale that still covers the resize, which is
several times faster on large photos and changes the pixels only slightly
(to at least twice the resize target; see decode_bytes).

Formats beyond Pillow's own (see formats.py): HEIC/HEIF and JPEG XL through
their Pillow plugins, registered on the first file named as one of theirs or whose
bytes Pillow's own readers do not know (a HEIC saved as .jpg); camera RAW through rawpy,
using the embedded preview when its shorter side is at least twice the resize
target (the same margin as JPEG draft mode) and a half-size demosaic otherwise.
A format whose decoder is not installed fails with the package to install.
"""

from __future__ import annotations

import io
import os
import re
import stat
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from imgsim_index.errors import DecodeError, ImageTooLarge
from imgsim_index.ingest import kept
from imgsim_index.ingest.formats import (
    PLUGINS,
    Format,
    format_of,
    missing_decoder,
    plugins_registered,
    register_plugins,
)
from imgsim_index.ingest.identity import content_digest
from imgsim_index.ingest.kept import Thumb
from imgsim_index.ingest.phash import image_hash
from imgsim_index.ingest.preprocess import BACKGROUND as BACKGROUND
from imgsim_index.ingest.preprocess import Preprocess as Preprocess

DEFAULT_MAX_PIXELS = 178_956_970  # Pillow's own bomb limit; larger images are refused
DEFAULT_MAX_BYTES = 512 * 1024 * 1024

_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


@dataclass(frozen=True)
class Decoded:
    pixels: np.ndarray  # (crop, crop, 3) uint8
    width: int  # of the upright original
    height: int
    digest: str | None = None  # of the file's bytes (decode_file), see ingest/identity.py
    phash: bytes | None = None  # perceptual hash of the whole image (ingest/phash.py)
    upright: Thumb | None = None  # upright_image's thumbnail, when asked (decode_bytes)


def read_file(path: str, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """Read a regular file whole; never blocks on a FIFO or device."""
    return read_file_stat(path, max_bytes)[0]


def read_file_stat(path: str, max_bytes: int = DEFAULT_MAX_BYTES
                   ) -> tuple[bytes, os.stat_result]:
    """read_file, and the fstat of the file the bytes were read from."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise DecodeError("file vanished before it could be read") from None
    except OSError as exc:
        raise DecodeError(f"cannot open: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise DecodeError("not a regular file")
        if st.st_size == 0:
            raise DecodeError("empty file")
        if st.st_size > max_bytes:
            raise DecodeError(f"file too large ({st.st_size} bytes > {max_bytes})")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            return fh.read(), st
    finally:
        os.close(fd)


def check_pixels(path: str, max_pixels: int) -> None:
    """Raise ImageTooLarge if the file's header declares more than `max_pixels` pixels;
    only the header is read. A file whose header Pillow's own readers do not know passes
    (decoding reports what is wrong with it, or applies its own limit)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return
    try:
        regular = stat.S_ISREG(os.fstat(fd).st_mode)
    except OSError:
        regular = False
    if not regular:  # a folder, a device: not opened as a file here
        os.close(fd)
        return
    with os.fdopen(fd, "rb") as fh:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(fh) as im:
                    w, h = im.size
        except Image.DecompressionBombError as exc:
            # Pillow's own limit (twice Image.MAX_IMAGE_PIXELS), mostly over ours too
            found = re.search(r"\((\d+) pixels\)", str(exc))
            declared = int(found.group(1)) if found else None
            limit = (f"the limit of {max_pixels} pixels per image"
                     if declared is None or declared > max_pixels else
                     f"the image reader's limit of {2 * (Image.MAX_IMAGE_PIXELS or 0)} pixels")
            raise ImageTooLarge(f"{os.path.basename(path)} declares "
                                f"{declared or 'too many'} pixels, over {limit}") from None
        except Exception:  # not an image Pillow knows by its header: the decoder says why
            return
    if w * h > max_pixels:
        raise ImageTooLarge(f"{os.path.basename(path)} is {w}x{h} = {w * h} pixels, over the "
                            f"limit of {max_pixels} pixels per image")


def to_rgb(im: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """`im` in RGB, as every reader of a file sees it: 16-bit and float greys scaled to
    8 bits, palettes expanded, transparency laid over `background`."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        top = 65535.0 if arr.max(initial=0) > 255 else 255.0
        im = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("LA", "La", "PA", "RGBa") or (
        im.mode in ("L", "RGB") and "transparency" in im.info  # a colour key
    ):
        im = im.convert("RGBA")
    if im.mode == "RGBA":
        bg = Image.new("RGB", im.size, background)
        bg.paste(im, mask=im.getchannel("A"))
        return bg
    if im.mode != "RGB":
        im = im.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, ...
    return im


def decode_bytes(
    data: bytes, pre: Preprocess, max_pixels: int = DEFAULT_MAX_PIXELS, name: str = "",
    upright_box: tuple[int, int] | None = None,
) -> Decoded:
    """`data` (a file's bytes; `name`, when known, picks the readers to register).
    upright_box: also upright_image's thumbnail of the file for this box, where these
    pixels are the ones it decodes (upright_thumb)."""
    upright = None
    try:
        with warnings.catch_warnings():
            # Pillow warns from ~89 MP; `max_pixels` (checked below) is the limit that counts
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = open_image(data, name)
            w, h = im.size
            if w * h > max_pixels:
                raise DecodeError(f"decompression bomb: {w}x{h} pixels exceeds {max_pixels}")
            orientation = im.getexif().get(0x0112, 1)
            if pre.jpeg_draft and im.format == "JPEG":
                # draft() picks a DCT scale whose result is still >= the requested size.
                # Asking for twice the resize target leaves the final resize real pixels
                # to filter: against full decoding, vectors then agree to a median cosine
                # of 0.9997 (0.964 at worst on 4096 px wallpapers with fine patterns,
                # which alias), while decoding 4096 px JPEGs 5.6x faster.
                scale = min(w, h) / (2 * pre.resize)
                if scale >= 2:  # draft can halve at least once
                    im.draft("RGB", (max(1, int(w / scale)), max(1, int(h / scale))))
            drafted = (im.format, im.size, getattr(im, "decoderconfig", ()) or (1, 0))
            im.seek(0)
            im.load()
            if orientation != 1:
                im = ImageOps.exif_transpose(im)
            uw, uh = (h, w) if orientation in (5, 6, 7, 8) else (w, h)
            rgb = to_rgb(im, pre.background)
            pixels, phash = resize_and_crop(rgb, pre), image_hash(rgb)
            if upright_box is not None:  # last: it reduces rgb in place (no full-size copy)
                upright = upright_thumb(data, name, drafted, rgb, pre, upright_box, (w, h))
    except DecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DecodeError(f"decompression bomb: {exc}") from None
    except UnidentifiedImageError:
        raise DecodeError("not a recognised image format") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError) as exc:
        raise DecodeError(f"corrupt or truncated image: {exc}") from None
    except MemoryError:
        raise DecodeError("image too large to decode in memory") from None
    return Decoded(pixels, uw, uh, phash=phash, upright=upright)


def upright_thumb(data: bytes, name: str, drafted: tuple[Any, ...], rgb: Image.Image,
                  pre: Preprocess, box: tuple[int, int], size: tuple[int, int]) -> Thumb | None:
    """upright_image(name, box)'s pixels and upright (height, width) from `rgb` (the
    upright RGB image decode_bytes made of a file of stored (width, height) `size`, decoded
    as `drafted`: its format, size and decoder configuration), or None where they could
    differ: formats other than JPEG and PNG (whose orientation both read alike), another
    background, an image over upright_image's pixel limit, or a JPEG decoded at another DCT
    scale than upright_image's draft for `box` picks. `rgb` is reduced in place (a copy
    would hold a second full-size image)."""
    fmt, decoded_size, config = drafted
    if fmt not in ("JPEG", "PNG") or pre.background != BACKGROUND or (
            size[0] * size[1] > DEFAULT_MAX_PIXELS):
        return None
    if fmt == "JPEG":
        probe = open_image(data, name)  # the header only: the scale its draft picks
        probe.draft("RGB", box)
        if (probe.size, getattr(probe, "decoderconfig", ()) or (1, 0)) != (decoded_size, config):
            return None
    if (rgb.width > rgb.height) != (size[0] > size[1]):
        size = size[::-1]  # turned upright (upright_image's rule)
    rgb.thumbnail(box)
    return np.asarray(rgb.convert("RGB"), np.uint8), (size[1], size[0])


def _require_decoder(fmt: Format | None) -> None:
    reason = None if fmt is None else missing_decoder(fmt)
    if reason is not None:
        raise DecodeError(reason)


def open_image(source: str | bytes, name: str | None = None) -> Image.Image:
    """Pillow's image of a file (its path, or its bytes and `name`), lazily loaded: the one
    way every stage opens a file with Pillow (decoding, verification, previews, headers), so
    each reader works in every stage and every process whatever ran there before.

    A file named as a plugin's format (HEIC, JPEG XL) registers the plugins first; bytes
    that Pillow's own readers do not know (a HEIC saved as .jpg) register them and are
    tried again. DecodeError when the format's decoder is not installed. Camera RAW is not
    Pillow's: see decode_raw and upright_image."""
    fmt = format_of(name if name is not None else source if isinstance(source, str) else "")
    _require_decoder(fmt)
    if fmt in PLUGINS:
        register_plugins()

    def opened() -> Image.Image:
        return Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)

    try:
        return opened()
    except UnidentifiedImageError:
        if plugins_registered():
            raise
        register_plugins()
        return opened()


def header_exif(im: Image.Image) -> Image.Exif:
    """The EXIF of an image opened with open_image, without decoding its pixels. Pillow's
    PNG reader decodes the whole image to look for an eXIf chunk after the pixel data
    (getexif loads it) when none came before: here the file's chunks are walked instead,
    seeking past the pixel data."""
    if im.format == "PNG" and "exif" not in im.info:
        fp = getattr(im, "fp", None)  # the open stream of a file not yet loaded
        data = _png_exif_chunk(fp) if fp is not None else None
        if data is None:
            return Image.Exif()
        im.info["exif"] = data  # getexif now reads it, and decodes nothing
    return im.getexif()


def _png_exif_chunk(fp: Any) -> bytes | None:
    """The data of a PNG stream's eXIf chunk (anywhere before IEND), or None; the stream's
    position is restored."""
    at = fp.tell()
    try:
        fp.seek(8)  # the signature
        while len(head := fp.read(8)) == 8:
            size, kind = int.from_bytes(head[:4], "big"), head[4:]
            if kind == b"eXIf":
                data = fp.read(size)
                return data if len(data) == size else None
            if kind == b"IEND":
                return None
            fp.seek(size + 4, os.SEEK_CUR)  # the data and its CRC
        return None
    finally:
        fp.seek(at)


# Beyond this long side the resized image is never built whole: only the region the
# centre crop keeps is resampled (see resize_and_crop). Resizing the shorter side of a
# 1 x 100000 strip to 256 would otherwise make a 256 x 25.6M image (about 20 GB).
MAX_RESIZED_SIDE = 4096


def resize_and_crop(im: Image.Image, pre: Preprocess) -> np.ndarray:
    w, h = im.size
    scale = pre.resize / min(w, h)
    nw, nh = max(pre.crop, round(w * scale)), max(pre.crop, round(h * scale))
    left, top = (nw - pre.crop) // 2, (nh - pre.crop) // 2
    if max(nw, nh) > MAX_RESIZED_SIDE:
        return _resize_crop_window(im, pre, (nw, nh), (left, top))
    im = im.resize((nw, nh), _RESAMPLE[pre.interpolation])
    im = im.crop((left, top, left + pre.crop, top + pre.crop))
    return np.asarray(im, dtype=np.uint8)


def _resize_crop_window(im: Image.Image, pre: Preprocess, resized: tuple[int, int],
                        corner: tuple[int, int]) -> np.ndarray:
    """The same crop window as resize-then-crop, resampled straight from the source region
    that maps onto it (Pillow's `box`), so memory follows the crop, not the long side."""
    w, h = im.size
    sx, sy = w / resized[0], h / resized[1]
    left, top = corner
    box = (left * sx, top * sy, (left + pre.crop) * sx, (top + pre.crop) * sy)
    out = im.resize((pre.crop, pre.crop), _RESAMPLE[pre.interpolation], box=box)
    return np.asarray(out, dtype=np.uint8)


def decode_file(path: str, pre: Preprocess, max_pixels: int = DEFAULT_MAX_PIXELS) -> Decoded:
    fmt = format_of(path)
    _require_decoder(fmt)
    data, st = read_file_stat(path)
    box = kept.wanted_box()  # a later stage of this command wants upright thumbnails
    decoded = (decode_raw(data, pre, max_pixels) if fmt is not None and fmt.raw
               else decode_bytes(data, pre, max_pixels, path, box))
    digest = content_digest(data)
    if decoded.upright is not None and box is not None:
        kept.keep(path, digest, box, decoded.upright, kept.identity(st))
    return replace(decoded, digest=digest, upright=None)


# libraw's `flip` -> the number of quarter turns (counter-clockwise) that make it upright
FLIP_TURNS = {3: 2, 5: 1, 6: 3}


@contextmanager
def raw_file(data: bytes, max_pixels: int) -> Iterator[tuple[Any, int, tuple[int, int]]]:
    """rawpy's reader of a camera RAW file, its libraw `flip` and its upright full size;
    whatever fails inside becomes a DecodeError with its reason."""
    import rawpy

    try:
        with rawpy.imread(io.BytesIO(data)) as raw:
            w, h, flip = raw.sizes.width, raw.sizes.height, raw.sizes.flip
            if w * h > max_pixels:
                raise DecodeError(f"decompression bomb: {w}x{h} pixels exceeds {max_pixels}")
            yield raw, flip, ((h, w) if flip in (5, 6) else (w, h))
    except DecodeError:
        raise
    except (rawpy.LibRawError, OSError, ValueError) as exc:
        raise DecodeError(f"camera RAW file could not be read: {exc}") from None
    except MemoryError:
        raise DecodeError("image too large to decode in memory") from None


def demosaic(raw: Any) -> Image.Image:
    """A half-size demosaic; libraw applies the orientation itself here."""
    return Image.fromarray(raw.postprocess(half_size=True, use_camera_wb=True, output_bps=8),
                           "RGB")


def decode_raw(data: bytes, pre: Preprocess, max_pixels: int = DEFAULT_MAX_PIXELS) -> Decoded:
    """A camera RAW file: its embedded preview when large enough, else a half-size demosaic."""
    with raw_file(data, max_pixels) as (raw, flip, upright):
        preview, upright_already = _raw_preview(raw, pre, max_pixels)
        if preview is not None:
            # the hash is of the preview as stored: hashes match in every orientation
            turns = 0 if upright_already else FLIP_TURNS.get(flip, 0)
            return Decoded(np.ascontiguousarray(np.rot90(preview.pixels, turns)), *upright,
                           phash=preview.phash)
        rgb = demosaic(raw)
    return Decoded(resize_and_crop(rgb, pre), *upright, phash=image_hash(rgb))


def _raw_preview(raw: Any, pre: Preprocess, max_pixels: int) -> tuple[Decoded | None, bool]:
    """The embedded preview's pixels (resized and cropped) and hash, and whether they are upright
    already (a JPEG preview with its own EXIF orientation, as libraw writes for some
    cameras); None when there is none, it is unreadable, or its shorter side is under
    2 x the resize target."""
    import rawpy

    try:
        thumb = raw.extract_thumb()
    except (rawpy.LibRawError, OSError, ValueError):
        return None, False
    if thumb.format == rawpy.ThumbFormat.BITMAP:
        im = Image.fromarray(np.ascontiguousarray(thumb.data, dtype=np.uint8), "RGB")
        if min(im.size) < 2 * pre.resize:
            return None, False
        return Decoded(resize_and_crop(im, pre), *im.size, phash=image_hash(im)), False
    try:
        with open_image(thumb.data) as probe:
            if min(probe.size) < 2 * pre.resize:
                return None, False
            oriented = probe.getexif().get(0x0112, 1) != 1
        return decode_bytes(thumb.data, pre, max_pixels), oriented
    except (DecodeError, OSError, ValueError):
        return None, False
