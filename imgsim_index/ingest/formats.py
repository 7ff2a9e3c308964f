"""formats: which file extensions are images, and which package decodes each.

Cheap to import (no Pillow, no numpy): the scanner uses it to recognise files,
the decoder to pick a decoder and to say which package is missing.

  Pillow       JPEG, PNG, BMP, GIF, TIFF, WebP, Netpbm (PPM/PGM/PBM/PNM/PFM), PCX, TGA,
               DDS, ICO, ICNS, SGI, XBM, XPM, QOI, MSP, BLP, JPEG 2000;
               AVIF (Pillow >= 11.3 wheels)
  pillow-heif  HEIC / HEIF (phones)
  pillow-jxl-plugin  JPEG XL
  rawpy        camera RAW: CR2, CR3, NEF, ARW, DNG, RAF, ORF, RW2

A file whose decoder is not installed is not skipped: decoding it fails with a
reason naming the package to install, and the catalog records that error.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from functools import cache


@dataclass(frozen=True)
class Format:
    name: str  # as shown in messages
    extensions: frozenset[str]  # lower case, with the dot
    module: str  # what must import for the decoder to exist
    package: str  # what to pip install when it does not
    raw: bool = False  # camera RAW: decoded through rawpy, not Pillow


def _exts(*names: str) -> frozenset[str]:
    return frozenset(names)


# Pillow's raster readers (PIL.Image.registered_extensions() with an opener). Left out:
# formats read through outside programs or only on one OS (EPS/PS: Ghostscript, WMF/EMF:
# Windows), stubs without a decoder (BUFR, GRIB, HDF5, MPEG), IFUNC .im (deprecated by
# Pillow), layered documents and non-photos (PSD, GIMP brushes, cursors, IPTC, Photo CD),
# and SGI's .rgb/.bw (also the names of raw pixel dumps).
PILLOW = Format("JPEG/PNG/BMP/GIF/TIFF/WebP",
                _exts(".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".apng", ".bmp", ".dib", ".gif",
                      ".tif", ".tiff", ".webp",
                      # Netpbm, PC Paintbrush, Targa, DirectDraw, icons, SGI, X11, ...
                      ".ppm", ".pgm", ".pbm", ".pnm", ".pfm", ".pcx", ".tga", ".dds", ".icns",
                      ".ico", ".sgi", ".xbm", ".xpm", ".qoi", ".msp", ".blp",
                      # JPEG 2000 (OpenJPEG, in Pillow's wheels)
                      ".jp2", ".j2k", ".j2c", ".jpc", ".jpf", ".jpx"),
                "PIL", "pillow")
AVIF = Format("AVIF", _exts(".avif"), "PIL.AvifImagePlugin", "pillow>=11.3")
HEIF = Format("HEIC/HEIF", _exts(".heic", ".heif", ".hif"), "pillow_heif", "pillow-heif")
JXL = Format("JPEG XL", _exts(".jxl"), "pillow_jxl", "pillow-jxl-plugin")
RAW = Format("camera RAW",
             _exts(".cr2", ".cr3", ".nef", ".arw", ".dng", ".raf", ".orf", ".rw2"),
             "rawpy", "rawpy", raw=True)

FORMATS = (PILLOW, AVIF, HEIF, JXL, RAW)
# Pillow plugins that register an opener for their format on import (HEIF: on a call)
PLUGINS = (HEIF, JXL)

IMAGE_EXTENSIONS = frozenset().union(*(f.extensions for f in FORMATS))
RAW_EXTENSIONS = RAW.extensions
_BY_EXT = {ext: f for f in FORMATS for ext in f.extensions}


def format_of(path: str) -> Format | None:
    """The format a file name claims by its extension (any case), or None."""
    return _BY_EXT.get(os.path.splitext(path)[1].lower())


@cache
def missing_decoder(fmt: Format) -> str | None:
    """None when `fmt` can be decoded here; otherwise the reason, naming the package."""
    try:
        importlib.import_module(fmt.module)
    except ImportError:
        return (f"no {fmt.name} decoder installed: pip install '{fmt.package}' "
                "(or run scripts/setup.sh), then build again")
    if fmt is AVIF:
        from PIL import features

        if not features.check("avif"):
            return ("this Pillow was built without AVIF: pip install -U 'pillow>=11.3' "
                    "(or run scripts/setup.sh), then build again")
    return None


@cache
def register_plugins() -> tuple[str, ...]:
    """Register every installed Pillow plugin (HEIF, JPEG XL) once; their names.

    Registered whatever a file is called, so a HEIC saved as .jpg still opens. The
    decoder calls this for a file named as one of theirs, or when Pillow's own readers do
    not know a file's bytes (see plugins_registered): importing them takes longer than
    decoding a JPEG, which then needs neither.

    Pillow's own readers are all loaded first, so that they come before the plugins
    whenever this runs: Pillow tries readers in the order they were registered, and
    pillow-heif claims any `mif1` file, AVIF ones too, which its wheel cannot decode (no
    AV1 decoder), while Pillow's AVIF reader declines a HEIC and lets the next one try."""
    from PIL import Image

    Image.init()
    done = []
    for fmt in PLUGINS:
        if missing_decoder(fmt) is None:
            module = importlib.import_module(fmt.module)
            if fmt is HEIF:
                module.register_heif_opener()
            done.append(fmt.name)
    return tuple(done)


def plugins_registered() -> bool:
    """Has register_plugins run in this process?"""
    return register_plugins.cache_info().currsize > 0


__all__ = ["FORMATS", "IMAGE_EXTENSIONS", "RAW_EXTENSIONS", "Format", "format_of",
           "missing_decoder", "plugins_registered", "register_plugins"]
