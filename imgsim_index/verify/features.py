"""One image, described for matching: describe() reduces a decoded, upright RGB image to a
small picklable Features record (a grey thumbnail, a half-size chroma thumbnail, the content
box after trimming uniform margins, a 32x32 normalised sketch, a pixel hash; SIFT keypoints
when a comparison first needs them). Also whether an image is flat (no content at all).
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field

import cv2
import numpy as np

from imgsim_index.verify.settings import (
    CLIP_GREY_DARK,
    CLIP_HIGH,
    CLIP_LOW,
    CLIP_NEAR,
    DEFAULT,
    LAB_ZERO,
    NEUTRAL_CHROMA,
    SKETCH_SIDE,
    TRIM_MEAN_TOL,
    TRIM_MIN_CONTENT,
    TRIM_MIN_MARGIN_PX,
    MatchSettings,
)
from imgsim_index.verify.tone import N_HUES


@dataclass(frozen=True)
class Features:
    """What compare() needs about one image; small and picklable (plain arrays only)."""

    shape: tuple[int, int]  # original (height, width)
    digest: str | None  # content digest given by the caller (e.g. file hash)
    pixel_hash: str  # sha1 of the decoded pixels
    grey: np.ndarray  # uint8 grey thumbnail, long side <= thumb_side
    chroma: np.ndarray  # uint8 Lab a*, b* at half the thumbnail size (128 = neutral)
    box: tuple[int, int, int, int]  # content box x0, y0, x1, y1 in thumbnail px
    sketch: np.ndarray  # float32 32x32 zero-mean unit-norm sketch of the content box
    colourful: float  # share of thumbnail pixels with clear colour (chroma > 10)
    mean_rgb: tuple[float, float, float]  # mean R, G, B of the thumbnail
    clip: np.ndarray  # uint8 255 where the thumbnail is clipped (_clip_masks)
    # uint8 255 where a channel is CLIP_NEAR or more (clipped, or near it after a resize
    # or re-encoding of a clipped colour)
    bright: np.ndarray
    # SIFT keypoints (float32 (n, 2) x, y in thumbnail px) and descriptors (uint8 (n, 128)),
    # computed on first use (most copies align by their sketches and never need them) and
    # kept: key "d" or "m" (of the mirrored thumbnail) + the settings they depend on
    sift_cache: dict[str, tuple[np.ndarray, np.ndarray]] = field(
        default_factory=dict, repr=False, compare=False)

    derived: dict[str, Features] = field(default_factory=dict, repr=False, compare=False)
    # colour classes at the grey thumbnail's size, computed on first use (tone_classes)
    class_cache: dict[str, np.ndarray] = field(default_factory=dict, repr=False,
                                               compare=False)

    def __getstate__(self) -> dict[str, object]:
        """Pickled (a worker process is sent the images it compares) without what is
        derived on first use (the half size, the colour classes): a quarter less to send."""
        state = dict(self.__dict__)
        state["derived"], state["class_cache"] = {}, {}
        return state

    def nbytes(self) -> int:
        """The bytes this image holds: its thumbnails, and what comparisons derived."""
        own = sum(x.nbytes for x in (self.grey, self.chroma, self.sketch, self.clip, self.bright))
        return (own + sum(f.nbytes() for f in self.derived.values())
                + sum(x.nbytes for x in self.class_cache.values())
                + sum(xy.nbytes + d.nbytes for xy, d in self.sift_cache.values()))

    def tone_classes(self) -> np.ndarray:
        """uint8 colour class per grey thumbnail pixel: 0 neutral (chroma < 10), else
        1 + the hue's sextant. Tone curves are fitted per class, so an edit that maps the
        channels differently (a gamma per channel, a white balance) stays a function."""
        if "c" not in self.class_cache:
            a = self.chroma[:, :, 0].astype(np.float32) - LAB_ZERO
            b = self.chroma[:, :, 1].astype(np.float32) - LAB_ZERO
            sector = np.floor((np.arctan2(b, a) + np.pi) * (N_HUES / (2 * np.pi)))
            cls = np.where(np.hypot(a, b) < NEUTRAL_CHROMA, 0, 1 + sector.astype(np.int32) % N_HUES)
            h, w = self.grey.shape
            self.class_cache["c"] = cv2.resize(cls.astype(np.uint8), (w, h),
                                               interpolation=cv2.INTER_NEAREST)
        return self.class_cache["c"]

    def half(self) -> Features:
        """This image at half the thumbnail size (for the coarse check), cached."""
        if "half" not in self.derived:
            h, w = self.grey.shape
            size = (max(1, w // 2), max(1, h // 2))
            csize = (max(1, size[0] // 2), max(1, size[1] // 2))
            fx, fy = size[0] / w, size[1] / h
            x0, y0, x1, y1 = self.box
            self.derived["half"] = Features(
                shape=self.shape, digest=self.digest, pixel_hash=self.pixel_hash,
                grey=cv2.resize(self.grey, size, interpolation=cv2.INTER_AREA),
                chroma=cv2.resize(self.chroma, csize, interpolation=cv2.INTER_AREA),
                box=(int(x0 * fx), int(y0 * fy), int(np.ceil(x1 * fx)), int(np.ceil(y1 * fy))),
                sketch=self.sketch, colourful=self.colourful, mean_rgb=self.mean_rgb,
                clip=cv2.resize(self.clip, size, interpolation=cv2.INTER_AREA),
                bright=cv2.resize(self.bright, size, interpolation=cv2.INTER_AREA))
        return self.derived["half"]

    @property
    def scale(self) -> float:
        """Thumbnail px per original px."""
        return self.grey.shape[1] / self.shape[1]

    def keypoints(self, settings: MatchSettings,
                  mirrored: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(keypoints, descriptors) of the thumbnail (or of its mirror image), cached."""
        key = f"{'m' if mirrored else 'd'}{settings.sift_side}/{settings.max_features}"
        if key not in self.sift_cache:
            g = np.ascontiguousarray(self.grey[:, ::-1]) if mirrored else self.grey
            self.sift_cache[key] = _sift_arrays(g, settings)
        return self.sift_cache[key]


_SIFT: dict[tuple[int, int], cv2.SIFT] = {}


def _sift(n: int) -> cv2.SIFT:
    key = (n, threading.get_ident())  # one detector per thread: comparisons run in threads
    if key not in _SIFT:
        _SIFT[key] = cv2.SIFT_create(nfeatures=n)  # type: ignore[attr-defined]
    return _SIFT[key]


def resize_long(img: np.ndarray, side: int) -> np.ndarray:
    h, w = img.shape[:2]
    f = side / max(h, w)
    if f >= 1.0:
        return img
    size = (max(1, round(w * f)), max(1, round(h * f)))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)


def _trim_box(g: np.ndarray, tol: float) -> tuple[int, int, int, int]:
    """Content box after removing uniform margins (letterbox bars, added borders)."""
    h, w = g.shape
    f = g.astype(np.float32)

    def first(std: np.ndarray, mean: np.ndarray, ref: float) -> int:
        bad = (std > tol) | (np.abs(mean - ref) > TRIM_MEAN_TOL)
        idx = np.flatnonzero(bad)
        return int(idx[0]) if idx.size else len(std)

    rs, rm = f.std(axis=1), f.mean(axis=1)
    cs, cm = f.std(axis=0), f.mean(axis=0)
    y0 = first(rs, rm, float(rm[0]))
    y1 = h - first(rs[::-1], rm[::-1], float(rm[-1]))
    x0 = first(cs, cm, float(cm[0]))
    x1 = w - first(cs[::-1], cm[::-1], float(cm[-1]))
    # (nearly) flat image: keep everything
    if y1 - y0 < TRIM_MIN_CONTENT * h or x1 - x0 < TRIM_MIN_CONTENT * w:
        return 0, 0, w, h
    # a margin of one or two px is resampling noise, not a border
    y0 = y0 if y0 > TRIM_MIN_MARGIN_PX else 0
    x0 = x0 if x0 > TRIM_MIN_MARGIN_PX else 0
    y1 = y1 if h - y1 > TRIM_MIN_MARGIN_PX else h
    x1 = x1 if w - x1 > TRIM_MIN_MARGIN_PX else w
    return x0, y0, x1, y1


def _sketch(g: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    x0, y0, x1, y1 = box
    s = cv2.resize(g[y0:y1, x0:x1], (SKETCH_SIDE, SKETCH_SIDE),
                   interpolation=cv2.INTER_AREA).astype(np.float32)
    s -= s.mean()
    n = float(np.linalg.norm(s))
    return s / n if n > 1e-6 else s


def _sift_arrays(g: np.ndarray, settings: MatchSettings) -> tuple[np.ndarray, np.ndarray]:
    small = resize_long(g, settings.sift_side)
    f = g.shape[1] / small.shape[1]
    kps, desc = _sift(settings.max_features).detectAndCompute(small, None)
    if desc is None or not kps:
        return np.zeros((0, 2), np.float32), np.zeros((0, 128), np.uint8)
    xy = np.array([k.pt for k in kps], np.float32) * f
    return xy, np.clip(desc, 0, 255).astype(np.uint8)


def _mean_rgb(rgb: np.ndarray) -> tuple[float, float, float]:
    """Mean R, G, B: OpenCV's exact integer sums over the pixel count (what NumPy's mean
    gives, bit for bit: a float64 sum of integers is exact; its strided reduction over
    the channels cost more than the rest of describe)."""
    n = rgb.shape[0] * rgb.shape[1]
    sums = cv2.sumElems(np.ascontiguousarray(rgb))
    return sums[0] / n, sums[1] / n, sums[2] / n


_LIGHT_LUT = np.zeros(256, np.uint8)
_LIGHT_LUT[CLIP_HIGH:] = 255
_NEAR_LUT = np.zeros(256, np.uint8)
_NEAR_LUT[CLIP_NEAR:] = 255
_DARK_LUT = np.zeros(256, np.uint8)
_DARK_LUT[: CLIP_LOW + 1] = 255


def _clip_masks(rgb: np.ndarray, grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(clip, bright): uint8 255 where a channel is clipped: at CLIP_HIGH..255 (light), or
    at 0..CLIP_LOW in a pixel darker than CLIP_GREY_DARK (a crushed shadow; a saturated
    colour with a channel at 0, a magenta ball, is no shadow and its grey level shows what
    is there), else 0; and 255 where a channel is CLIP_NEAR or more. Each table is a step,
    so the channels' maximum (minimum for the dark one) goes through it once."""
    r, g, b = cv2.split(np.ascontiguousarray(rgb))
    top, bottom = cv2.max(cv2.max(r, g), b), cv2.min(cv2.min(r, g), b)
    dark = cv2.LUT(bottom, _DARK_LUT)
    dark[grey >= CLIP_GREY_DARK] = 0
    return cv2.max(cv2.LUT(top, _LIGHT_LUT), dark), cv2.LUT(top, _NEAR_LUT)


def describe(rgb: np.ndarray, digest: str | None = None,
             settings: MatchSettings = DEFAULT, sift: bool = True,
             shape: tuple[int, int] | None = None) -> Features:
    """Features of one upright HxWx3 uint8 RGB image (any size; downscaled inside).

    sift=False leaves the keypoints to be computed when a comparison first needs them.
    shape: the image's (height, width) when `rgb` was already reduced from it (sizes in the
    evidence, and exact-by-pixels, refer to it).
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"describe: need HxWx3 uint8 RGB, got {rgb.shape} {rgb.dtype}")
    h, w = shape or rgb.shape[:2]
    pixel_hash = hashlib.sha1(np.ascontiguousarray(rgb).data).hexdigest()
    small = resize_long(rgb, settings.thumb_side)
    grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    half = cv2.resize(small, (max(1, small.shape[1] // 2), max(1, small.shape[0] // 2)),
                      interpolation=cv2.INTER_AREA)
    lab = cv2.cvtColor(half, cv2.COLOR_RGB2LAB)
    chroma = np.ascontiguousarray(lab[:, :, 1:])
    c = np.hypot(chroma[:, :, 0].astype(np.float32) - LAB_ZERO,
                 chroma[:, :, 1].astype(np.float32) - LAB_ZERO)
    box = _trim_box(grey, settings.trim_std)
    clip, bright = _clip_masks(small, grey)
    f = Features(shape=(h, w), digest=digest, pixel_hash=pixel_hash, grey=grey, chroma=chroma,
                 box=box, sketch=_sketch(grey, box), colourful=float((c > NEUTRAL_CHROMA).mean()),
                 mean_rgb=_mean_rgb(small), clip=clip, bright=bright)
    if sift:
        f.keypoints(settings)
    return f


def flat_pixels(g: np.ndarray, settings: MatchSettings) -> bool:
    """Grey levels with no content: a low std and almost no pixel far from their median
    (strokes on a blank page are content however few)."""
    if g.size == 0:
        return True
    if float(g.std()) >= settings.flat_std:
        return False
    far = np.abs(g.astype(np.float32) - float(np.median(g))) >= settings.flat_dev
    return float(far.mean()) <= settings.flat_max_share


def is_flat(f: Features, settings: MatchSettings = DEFAULT) -> bool:
    """The whole image is one flat colour (a blank page, a black frame)."""
    return flat_pixels(f.grey, settings)

