"""Phone and camera formats: HEIC, AVIF, JPEG XL and camera RAW (a DNG written here),
decoded to the same pixels as the picture they hold; a missing decoder names its package."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from imgsim_index.embed.models.resnet import RESNET50
from imgsim_index.errors import DecodeError
from imgsim_index.ingest.decode import decode_bytes, decode_file
from imgsim_index.ingest.formats import IMAGE_EXTENSIONS, format_of, register_plugins
from imgsim_index.ingest.scan import scan_folders

PRE = RESNET50.preprocess


def scene(w: int, h: int) -> np.ndarray:
    """Smooth gradients with a red block in the top-left corner."""
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.dstack([x * 255 // (w - 1), y * 255 // (h - 1), np.full_like(x, 120)])
    rgb = rgb.astype(np.uint8)
    rgb[: h // 4, : w // 4] = (240, 20, 20)
    return rgb


def lossless(rgb: np.ndarray) -> np.ndarray:
    """`rgb` decoded from a PNG: what every other format must come close to."""
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    return decode_bytes(buf.getvalue(), PRE).pixels


def reference(w: int = 400, h: int = 300) -> np.ndarray:
    return lossless(scene(w, h))


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


@pytest.mark.parametrize(("name", "fmt"), [
    ("phone.HEIC", "HEIF"), ("phone.heif", "HEIF"), ("web.avif", "AVIF"), ("new.JXL", "JXL"),
])
def test_phone_and_web_formats_decode_like_the_png(tmp_path: Path, name: str, fmt: str) -> None:
    register_plugins()  # the writers need the plugins too
    path = tmp_path / name
    Image.fromarray(scene(400, 300)).save(path, fmt, quality=95)
    d = decode_file(str(path), PRE)
    assert (d.width, d.height) == (400, 300)
    assert d.pixels.shape == (PRE.crop, PRE.crop, 3)
    assert mean_abs_diff(d.pixels, reference()) < 4.0


def test_heic_saved_as_jpg_still_decodes(tmp_path: Path) -> None:
    register_plugins()
    path = tmp_path / "IMG_0001.jpg"
    Image.fromarray(scene(400, 300)).save(path, "HEIF", quality=95)
    assert mean_abs_diff(decode_file(str(path), PRE).pixels, reference()) < 4.0


_FRESH_DECODE = """
import sys
from imgsim_index.embed.models.resnet import RESNET50
from imgsim_index.ingest.decode import decode_file
for path in sys.argv[1:]:
    d = decode_file(path, RESNET50.preprocess)
    plugins = [m for m in ("pillow_heif", "pillow_jxl") if m in sys.modules]
    print(path.rsplit("/", 1)[-1], d.width, d.height, d.pixels.shape, *plugins)
"""


def test_plugins_are_registered_on_first_need(tmp_path: Path) -> None:
    """In a fresh process: a JPEG decodes without the HEIF and JPEG XL plugins; a HEIC
    saved as .jpg (bytes Pillow's own readers do not know) registers them and decodes;
    a .jxl registers them by its name."""
    register_plugins()  # the writers need the plugins
    Image.fromarray(scene(400, 300)).save(tmp_path / "plain.jpg", "JPEG", quality=95)
    Image.fromarray(scene(400, 300)).save(tmp_path / "IMG_0001.jpg", "HEIF", quality=95)
    Image.fromarray(scene(320, 240)).save(tmp_path / "new.jxl", "JXL", quality=95)
    runs = [["plain.jpg", "IMG_0001.jpg"], ["new.jxl"]]
    out = [subprocess.run([sys.executable, "-c", _FRESH_DECODE,
                           *(str(tmp_path / n) for n in names)],
                          capture_output=True, text=True, check=True).stdout.splitlines()
           for names in runs]
    assert out == [["plain.jpg 400 300 (224, 224, 3)",
                    "IMG_0001.jpg 400 300 (224, 224, 3) pillow_heif pillow_jxl"],
                   ["new.jxl 320 240 (224, 224, 3) pillow_heif pillow_jxl"]]


def _major_brand(path: Path, brand: bytes) -> None:
    """Set the ftyp box's major brand of the HEIF/AVIF file at `path` (bytes 8-12)."""
    data = bytearray(path.read_bytes())
    assert data[4:8] == b"ftyp"
    data[8:12] = brand
    path.write_bytes(bytes(data))


def test_mif1_files_decode_whichever_file_came_first(tmp_path: Path) -> None:
    """An AVIF and a HEIC whose major brand is the generic `mif1` decode in a fresh
    process whether the plugins were registered before Pillow loaded its own readers
    (a .heic first) or after (a WebP first): pillow-heif claims every mif1 file and its
    wheel has no AV1 decoder, so Pillow's AVIF reader must come first either way."""
    from PIL import features

    if not features.check("avif"):
        pytest.skip("this Pillow has no AVIF")
    register_plugins()  # the writers need the plugins
    Image.fromarray(scene(400, 300)).save(tmp_path / "first.heic", "HEIF", quality=95)
    Image.fromarray(scene(400, 300)).save(tmp_path / "first.webp", "WEBP", quality=95)
    for name, fmt in (("generic.avif", "AVIF"), ("generic.heic", "HEIF")):
        Image.fromarray(scene(400, 300)).save(tmp_path / name, fmt, quality=95)
        _major_brand(tmp_path / name, b"mif1")
    for first in ("first.heic", "first.webp"):
        names = [first, "generic.avif", "generic.heic"]
        out = subprocess.run([sys.executable, "-c", _FRESH_DECODE,
                              *(str(tmp_path / n) for n in names)],
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        assert [line.split()[:3] for line in out.stdout.splitlines()] == [
            [n, "400", "300"] for n in names]


# -- camera RAW: a minimal DNG (a 16-bit RGGB mosaic) with an optional preview ----------
def write_dng(path: Path, preview: np.ndarray | None = None, w: int = 128, h: int = 96,
              orientation: int = 1, make: str = "TestMake") -> str:
    """A valid DNG: IFD0 holds the preview (JPEG, as cameras write it) when given, the raw
    mosaic (a flat grey-green field) its own IFD. tifffile writes it uncompressed; the
    preview strip is then replaced by JPEG bytes and its tags patched."""
    mosaic = np.full((h, w), 9000, np.uint16)
    mosaic[0::2, 1::2] = mosaic[1::2, 0::2] = 20000  # the two green sites
    cfa = [(33421, "H", 2, (2, 2), True), (33422, "B", 4, (0, 1, 1, 2), True)]
    dng = [(50706, "B", 4, (1, 4, 0, 0), True), (50708, "s", 0, "Test Camera", True),
           (50714, "H", 1, 0, True), (50717, "H", 1, 65535, True),
           (50721, "2i", 9, (1, 1, 0, 1, 0, 1, 0, 1, 1, 1, 0, 1, 0, 1, 0, 1, 1, 1), True),
           (50778, "H", 1, 21, True), (50728, "2I", 3, (1, 1, 1, 1, 1, 1), True),
           (271, "s", 0, make, True), (272, "s", 0, "Model 1", True),
           (274, "H", 1, orientation, True)]
    jpeg = b""
    with tifffile.TiffWriter(path) as tw:
        if preview is None:
            tw.write(mosaic, photometric=32803, subfiletype=0, extratags=cfa + dng,
                     metadata=None)
        else:
            buf = io.BytesIO()
            Image.fromarray(preview).save(buf, "JPEG", quality=95)
            jpeg = buf.getvalue()
            tw.write(preview, photometric="rgb", subfiletype=1, subifds=1,
                     rowsperstrip=preview.shape[0], extratags=dng, metadata=None)
            tw.write(mosaic, photometric=32803, subfiletype=0, extratags=cfa, metadata=None)
    if jpeg:
        with tifffile.TiffFile(path, mode="r+b") as tf:
            page = tf.pages[0]
            offset = page.tags["StripOffsets"].value[0]
            page.tags["Compression"].overwrite(7)
            page.tags["StripByteCounts"].overwrite((len(jpeg),))
            page.tags["PhotometricInterpretation"].overwrite(6)
            tf.filehandle.seek(offset)
            tf.filehandle.write(jpeg)
    return str(path)


def test_raw_with_a_large_preview_decodes_the_preview(tmp_path: Path) -> None:
    # 600 px shorter side >= 2 x the resize target (256): the preview is used
    path = write_dng(tmp_path / "IMG_1.DNG", preview=scene(800, 600))
    d = decode_file(path, PRE)
    assert (d.width, d.height) == (128, 96)  # the sensor's size, not the preview's
    assert mean_abs_diff(d.pixels, reference(800, 600)) < 4.0


def test_raw_with_a_small_preview_is_demosaiced(tmp_path: Path) -> None:
    path = write_dng(tmp_path / "IMG_2.dng", preview=scene(400, 300))  # 300 < 512
    d = decode_file(path, PRE)
    assert (d.width, d.height) == (128, 96)
    # the mosaic is a flat field: no red corner of the preview, every pixel alike
    assert d.pixels.std(axis=(0, 1)).max() < 1.0
    assert mean_abs_diff(d.pixels, reference(400, 300)) > 30


def test_raw_without_preview_is_demosaiced_and_turned_upright(tmp_path: Path) -> None:
    d = decode_file(write_dng(tmp_path / "IMG_3.dng", orientation=6), PRE)
    assert (d.width, d.height) == (96, 128)  # rotated a quarter turn
    assert d.pixels.shape == (PRE.crop, PRE.crop, 3)
    r, g, b = d.pixels.reshape(-1, 3).mean(axis=0)
    assert g > r and g > b  # the mosaic's green sites are the bright ones


def test_raw_preview_is_turned_upright(tmp_path: Path) -> None:
    path = write_dng(tmp_path / "IMG_4.dng", preview=scene(800, 600), orientation=6)
    d = decode_file(path, PRE)
    assert (d.width, d.height) == (96, 128)
    upright = np.rot90(scene(800, 600), 3)  # a quarter turn clockwise
    assert mean_abs_diff(d.pixels, lossless(np.ascontiguousarray(upright))) < 4.0


def test_corrupt_raw_is_an_error_with_its_reason(tmp_path: Path) -> None:
    path = tmp_path / "broken.cr2"
    path.write_bytes(b"II*\x00" + b"\x00" * 200)
    with pytest.raises(DecodeError, match="^camera RAW file could not be read: "):
        decode_file(str(path), PRE)


@pytest.mark.parametrize(("blocked", "name", "package"), [
    ("pillow_heif", "a.heic", "pip install 'pillow-heif'"),
    ("rawpy", "a.NEF", "pip install 'rawpy'"),
    ("pillow_jxl", "a.jxl", "pip install 'pillow-jxl-plugin'"),
])
def test_a_missing_decoder_is_an_error_naming_the_package(
        tmp_path: Path, blocked: str, name: str, package: str) -> None:
    (tmp_path / name).write_bytes(b"\x00" * 64)
    code = (f"import sys; sys.modules[{blocked!r}] = None\n"  # as if it were not installed
            "from imgsim_index.embed.models.resnet import RESNET50\n"
            "from imgsim_index.ingest.decode import decode_bytes, decode_file\n"
            "from imgsim_index.errors import DecodeError\n"
            f"try:\n    decode_file({str(tmp_path / name)!r}, RESNET50.preprocess)\n"
            "except DecodeError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    fmt = format_of(name)
    assert fmt is not None
    assert out == (f"no {fmt.name} decoder installed: {package} "
                   "(or run scripts/setup.sh), then build again")


def test_scanner_finds_every_format_in_any_case(tmp_path: Path) -> None:
    names = ["a.HEIC", "b.heif", "c.AVIF", "d.jxl", "e.CR2", "f.cr3", "g.NEF", "h.arw",
             "i.DNG", "j.raf", "k.ORF", "l.rw2", "m.jpg"]
    for n in names:
        (tmp_path / n).write_bytes(b"x")
    found = sorted(os.path.basename(r.path) for r in scan_folders([str(tmp_path)]))
    assert found == sorted(names)
    assert {".heic", ".heif", ".avif", ".jxl", ".cr2", ".cr3", ".nef", ".arw", ".dng", ".raf",
            ".orf", ".rw2"} <= IMAGE_EXTENSIONS


# Pillow's other readers: each written here by Pillow itself (name, format, mode)
PILLOW_MORE = [
    ("a.ppm", "PPM", "RGB"), ("b.PGM", "PPM", "L"), ("c.pbm", "PPM", "1"), ("d.pnm", "PPM", "RGB"),
    ("e.pcx", "PCX", "RGB"), ("f.tga", "TGA", "RGB"), ("g.dds", "DDS", "RGB"),
    ("h.icns", "ICNS", "RGB"), ("i.ico", "ICO", "RGB"), ("j.sgi", "SGI", "RGB"),
    ("l.xbm", "XBM", "1"), ("m.qoi", "QOI", "RGB"),
    ("n.jp2", "JPEG2000", "RGB"), ("o.j2k", "JPEG2000", "RGB"), ("p.jfif", "JPEG", "RGB"),
    ("q.jpe", "JPEG", "RGB"), ("r.dib", "DIB", "RGB"), ("s.apng", "PNG", "RGB"),
    ("t.pfm", "PPM", "F"), ("u.msp", "MSP", "1"),
]


def test_pillow_formats_beyond_the_common_ones_are_scanned_and_decoded(
        tmp_path: Path) -> None:
    rgb = Image.fromarray(scene(256, 256))
    for name, fmt, mode in PILLOW_MORE:
        im = rgb.convert("L").convert(mode) if mode in ("L", "1", "F") else rgb
        im.save(tmp_path / name, fmt)
    found = sorted(os.path.basename(r.path) for r in scan_folders([str(tmp_path)]))
    assert found == sorted(n for n, _, _ in PILLOW_MORE)
    for name, _, mode in PILLOW_MORE:
        d = decode_file(str(tmp_path / name), PRE)
        assert d.pixels.shape == (PRE.crop, PRE.crop, 3), name
        if mode == "RGB":  # the colour picture, not a grey or two-level one
            assert mean_abs_diff(d.pixels, reference(256, 256)) < 6.0, name
