"""phash: an upright RGB image -> a 256-bit perceptual hash (32 bytes) whose rotations and
mirrors are bit operations on the hash itself.

The hash follows Meta's PDQ: the luminance (ITU-R 601, as Pillow's grey conversion, so a
grey copy has the colour image's luminance) is box-filtered down to 64 x 64, a DCT keeps
the 16 x 16 lowest frequencies without the DC row and column, and each coefficient
becomes one bit: above or below a median. One change from PDQ: the median is taken per
parity class (row frequency odd or even x column frequency odd or even, 64 coefficients
each) instead of over all 256. A mirror negates every coefficient of two classes, so
with per-class medians it complements their bits exactly; a transpose swaps the rows and
columns of the bit matrix. Each of the 8 rotations and mirrors of an image (the dihedral
group) therefore has the hash `dihedral(h)[k]` computes from the stored 32 bytes alone,
and an index stores one hash per image.

Re-encoding, resizing and grey conversion move few bits (a handful of the 256); unrelated
photos differ in about 128. Images too flat to hash (PDQ's quality below MIN_QUALITY: a
blank page, a fade to black) get no hash: their bits would be noise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from PIL import Image

HASH_BYTES = 32
SIDE = 64  # the box-filtered luminance
FREQS = 16  # DCT frequencies 1..16 per axis
MIN_QUALITY = 20  # PDQ's gradient quality (0-100) below which an image gets no hash


def _dct_matrix() -> np.ndarray:
    k = np.arange(1, FREQS + 1, dtype=np.float64)[:, None]
    j = np.arange(SIDE, dtype=np.float64)[None, :]
    return np.sqrt(2.0 / SIDE) * np.cos(np.pi / (2 * SIDE) * k * (2 * j + 1))


_DCT = _dct_matrix()  # (16, 64)
# parity class of each coefficient: 2 x (row frequency odd) + (column frequency odd)
_CLASS = (2 * (np.arange(FREQS)[:, None] % 2) + np.arange(FREQS)[None, :] % 2).ravel()
# the coefficients a mirror negates: frequency k odd (index k - 1 even) along the mirrored axis
_ROWS_NEG = np.repeat((np.arange(FREQS) % 2 == 0)[:, None], FREQS, axis=1)
_COLS_NEG = _ROWS_NEG.T.copy()
_MASKS = (np.zeros((FREQS, FREQS), bool), _COLS_NEG, _ROWS_NEG, _COLS_NEG ^ _ROWS_NEG)


def luminance_64(im: Image.Image) -> np.ndarray:
    """The image's luminance, box-filtered to 64 x 64 (float64, 0..255)."""
    from PIL import Image
    grey = im if im.mode == "L" else im.convert("L")
    return np.asarray(grey.resize((SIDE, SIDE), Image.Resampling.BOX), np.float64)


def quality(lum: np.ndarray) -> int:
    """PDQ's quality of a 64 x 64 luminance: its summed neighbour differences, 0-100."""
    total = (np.abs(np.diff(lum, axis=0)).sum() + np.abs(np.diff(lum, axis=1)).sum())
    return int(min(100, total * 100 / 255 / 90))


def hash_bits(lum: np.ndarray) -> np.ndarray:
    """(16, 16) bool: each coefficient above its parity class's median."""
    coef = (_DCT @ lum @ _DCT.T).ravel()
    bits = np.zeros(FREQS * FREQS, bool)
    for c in range(4):
        mine = c == _CLASS
        bits[mine] = coef[mine] > np.median(coef[mine])
    return bits.reshape(FREQS, FREQS)


def image_hash(im: Image.Image) -> bytes | None:
    """The 32-byte hash of an upright image (any mode Pillow converts to grey), or None
    when it is too flat to hash."""
    lum = luminance_64(im)
    if quality(lum) < MIN_QUALITY:
        return None
    return np.packbits(hash_bits(lum).ravel()).tobytes()


def dihedral(hashes: np.ndarray) -> np.ndarray:
    """(n, 32) uint8 hashes -> (8, n, 32): the hash of each image turned and mirrored
    every way the dihedral group allows (variant 0 is the image itself)."""
    n = len(hashes)
    bits = np.unpackbits(np.asarray(hashes, np.uint8), axis=1).reshape(n, FREQS, FREQS)
    out = np.empty((8, n, HASH_BYTES), np.uint8)
    k = 0
    for b in (bits, bits.transpose(0, 2, 1)):
        for mask in _MASKS:
            out[k] = np.packbits((b ^ mask).reshape(n, -1), axis=1)
            k += 1
    return out


def dihedral_distance(a: bytes, b: bytes) -> int:
    """The fewest bits in which `b` differs from `a` turned or mirrored some way."""
    turned = dihedral(np.frombuffer(a, np.uint8)[None])[:, 0]
    diff = np.bitwise_xor(turned, np.frombuffer(b, np.uint8)).astype(np.uint8)
    return int(np.unpackbits(diff, axis=1).sum(axis=1).min())


__all__ = ["HASH_BYTES", "MIN_QUALITY", "dihedral", "dihedral_distance", "hash_bits", "image_hash",
           "luminance_64", "quality"]
