"""Pair verification: is a candidate pair the same capture (exact / copy) or another shot?

describe() reduces one decoded, upright RGB image to a small picklable Features record
(a grey thumbnail, a half-size chroma thumbnail, the content box after trimming uniform
margins, a 32x32 normalised sketch, SIFT keypoints and descriptors as arrays, a pixel hash).
compare() decides, for two Features:

1. ``exact``: equal content digest, or equal shape and equal pixel hash.
2. Geometry candidates: the 8 dihedral transforms (mirror x rot90) tried on the 32x32 sketches
   of the content boxes (cheap, covers exact / mirrored / rotated / resized / bordered copies,
   and a whole picture resized without keeping its aspect: the box-to-box map then has a
   scale per axis, up to ``max_squash``),
   then ECC refinement of the best of those maps (turned or slightly cropped copies; a map
   ECC leaves in place is confirmed and needs no keypoints), then SIFT + RANSAC restricted
   to a similarity (mirrored features tried when needed).
3. For each candidate the image with the smaller footprint is warped onto the other; the
   sharper one is blurred to match, one monotone tone curve (isotonic fit of grey levels)
   maps one onto the other, and the residual is measured per 16-px block where both images
   have content. Blocks far above the noise level "differ"; thin horizontal bands of
   differing blocks are taken as a text overlay, and wider bands of caption strokes (white
   over darker, black over lighter) near the top or bottom as caption text. A hue check stops
   a colour redesign from being explained by the grey tone curve. A curve that is a pure
   gain (clipped at white) is an exposure change at any strength.
   When no map passes, the best one is checked again with local tone curves on top
   (tone.local_correction: a coarse grid of monotone curves, blended bilinearly).
   Each map is checked at half size first; a clear failure there ends its check.
4. ``copy`` when (almost) nothing differs, else ``other_shot`` with the differing share.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from dataclasses import dataclass, field

import cv2
import numpy as np

from imgsim_index.verify.tone import (
    N_HUES,
    apply_curve,
    class_curves,
    gain_fit,
    local_correction,
    tone_curve,
)

__all__ = ["Features", "Verdict", "VerifySettings", "compare", "describe", "flat_verdict",
           "is_flat"]


@dataclass(frozen=True)
class VerifySettings:
    """Tunables. Pixel values are at the thumbnail scale (long side ``thumb_side``)."""

    thumb_side: int = 512  # long side of the grey thumbnail used for alignment and residuals
    sift_side: int = 256  # long side of the image SIFT runs on (smaller = faster describe)
    max_features: int = 400  # SIFT keypoints kept per image
    ratio: float = 0.8  # Lowe ratio test
    ransac_px: float = 3.0  # RANSAC reprojection threshold (thumbnail px)
    min_inliers: int = 12  # fewer RANSAC inliers = no alignment
    sketch_ncc: float = 0.8  # dihedral sketch correlation needed to try that transform
    block: int = 16  # residual block size (thumbnail px)
    diff_floor: float = 10.0  # a block differs if its mean |residual| exceeds this grey level...
    diff_noise_k: float = 3.0  # ...and this multiple of the median block residual
    diff_contrast: float = 0.5  # ...and this multiple of the block's grey std (either image)
    max_differing: float = 0.02  # share of overlap blocks allowed to differ in a copy
    max_region: float = 0.01  # largest connected differing region (share of blocks) in a copy
    max_block_median: float = 8.0  # median block residual above this = pixels do not agree
    max_tone_dev: float = 55.0  # mean |tone curve - identity| above this = not an edit...
    # ...unless the curves are a pure gain (an exposure change, clipped at white): within
    # max_gain_dev grey levels of min(gain x level, 255), the gain in [1/max_gain, max_gain]
    max_gain_dev: float = 4.0
    max_gain: float = 3.0
    # when the global tone curves leave a map short of a copy, it is checked again with a
    # monotone curve per tile of local_tiles x local_tiles tiles on top (blended bilinearly
    # across the picture): a vignette, CLAHE, detail enhancement; 0 = never
    local_tiles: int = 4
    local_maps: int = 1  # ...on this many of the best-scoring maps (2 kept no more copies)
    band_rows: float = 0.12  # an overlay band is at most this share of the block rows high
    overlay_contrast: float = 1.5  # ...and this many times more contrasted in one image
    max_overlay: float = 0.12  # largest share of blocks a text-overlay band may cover
    # ...and it spans at least this share of the block columns (a line of text is wide; a
    # ball at two places in one row of two frames is not)
    overlay_min_width: float = 0.2
    # caption text (meme text: white letters outlined in black), which may be taller than
    # band_rows: blocks where one image has at least caption_stroke of its pixels near white
    # over darker pixels of the other image and as many near black over lighter, in bands at most
    # caption_rows of the block rows high, at least caption_min_width of the columns wide,
    # within the top or bottom caption_zone of the rows, their text blocks at most
    # max_caption of the blocks in all (0 = no captions); a block around them is the text's
    # too
    caption_stroke: float = 0.03
    caption_rows: float = 0.25
    caption_min_width: float = 0.3
    caption_zone: float = 0.35
    max_caption: float = 0.3
    min_overlap: float = 0.55  # overlap / larger content area needed to verify at all
    max_hue_deg: float = 25.0  # mean hue change allowed between two colour images
    flat_std: float = 3.0  # grey std (thumbnail, or overlap) below which an image can be flat
    # ...and no more than flat_max_share of its pixels are flat_dev grey levels or more from
    # its median: small strokes on a blank page (an 18 px signature on 800x600 is 0.2% of the
    # thumbnail's pixels, std 5.5; a smaller or fainter one passes the std test) are content
    flat_dev: float = 12.0
    flat_max_share: float = 0.0002  # about 40 px of a 512x384 thumbnail
    # two flat images are copies only when their mean R, G and B each differ by at most this
    # (JPEG re-encoding moves a flat colour by a level or two); else, and whenever only one
    # image is flat, they are other shots
    flat_colour_tol: float = 6.0
    trim_std: float = 2.5  # a margin row/column is uniform below this grey std
    ecc_confirm_px: float = 1.5  # ECC moving the sketch map less than this confirms it
    # each map is first checked at half the thumbnail size (blocks of block / 2); one that
    # fails there by this factor on any limit is rejected without the full-size check
    coarse_margin: float = 2.0  # 0: no coarse check
    ecc_start_ncc: float = 0.5  # sketch correlation from which ECC refines a failed sketch map
    coarse_accept: int = 1  # a map passing a coarse check by coarse_margin is a copy
    coarse_levels: int = 2  # coarse checks: 1 = at half size; 2 = a quarter (to pass), then half
    block_hue_deg: float = 45.0  # a block coloured in both whose hue moved more differs
    min_class_share: float = 0.005  # a colour class with less of the overlap: no curve of its own
    # a connected region of at least strong_min_blocks differing blocks whose residual is
    # above both strong_ratio times the noise level (diff_floor, diff_noise_k x the median
    # block residual) and strong_floor grey levels is new content,
    # however small (a ball that moved between two frames covers 0.3% of the blocks)
    strong_ratio: float = 2.0
    strong_floor: float = 20.0
    strong_min_blocks: int = 1
    # ...not counting blocks with more than this share clipped (any channel at 0-3 or 252-255)
    strong_clip_share: float = 0.25
    # the box-to-box map of two sketches is tried when the two content boxes' aspect ratios
    # differ by at most this factor: a whole picture resized without keeping its aspect
    # (640x480 -> 224x224 is 1.33, a 2:1 stretch 2) is a separate scale per axis, which the
    # similarity fitted to keypoints cannot express; the residual check decides as for any map
    max_squash: float = 2.5

    def validate(self) -> VerifySettings:
        """Return self, or raise ValueError naming the first bad setting."""
        checks = [
            (64 <= self.thumb_side <= 2048, "thumb_side must be in [64, 2048]"),
            (64 <= self.sift_side <= self.thumb_side, "sift_side must be in [64, thumb_side]"),
            (self.max_features >= 50, "max_features must be >= 50"),
            (0.5 <= self.ratio < 1.0, "ratio must be in [0.5, 1)"),
            (self.ransac_px > 0, "ransac_px must be > 0"),
            (self.min_inliers >= 4, "min_inliers must be >= 4"),
            (0.0 < self.sketch_ncc <= 1.0, "sketch_ncc must be in (0, 1]"),
            (4 <= self.block <= 64, "block must be in [4, 64]"),
            (self.diff_floor > 0 and self.diff_noise_k > 0, "diff_floor, diff_noise_k must be > 0"),
            (0.0 <= self.max_differing < 1.0, "max_differing must be in [0, 1)"),
            (0.0 <= self.max_region < 1.0, "max_region must be in [0, 1)"),
            (self.diff_contrast >= 0, "diff_contrast must be >= 0"),
            (self.max_block_median > 0, "max_block_median must be > 0"),
            (self.max_tone_dev > 0, "max_tone_dev must be > 0"),
            (self.max_gain_dev >= 0 and self.max_gain >= 1.0,
             "max_gain_dev must be >= 0, max_gain >= 1"),
            (0 <= self.local_tiles <= 16 and self.local_maps >= 1,
             "local_tiles must be in [0, 16], local_maps >= 1"),
            (0.0 < self.band_rows <= 1.0, "band_rows must be in (0, 1]"),
            (self.overlay_contrast >= 1.0, "overlay_contrast must be >= 1"),
            (0.0 <= self.max_overlay < 1.0, "max_overlay must be in [0, 1)"),
            (0.0 <= self.overlay_min_width <= 1.0, "overlay_min_width must be in [0, 1]"),
            (0.0 < self.caption_stroke <= 0.5 and 0.0 < self.caption_rows <= 1.0
             and 0.0 <= self.caption_min_width <= 1.0 and 0.0 < self.caption_zone <= 0.5
             and 0.0 <= self.max_caption < 1.0,
             "caption_stroke must be in (0, 0.5], caption_rows in (0, 1], caption_min_width "
             "in [0, 1], caption_zone in (0, 0.5], max_caption in [0, 1)"),
            (0.0 < self.min_overlap <= 1.0, "min_overlap must be in (0, 1]"),
            (0.0 < self.max_hue_deg <= 180.0, "max_hue_deg must be in (0, 180]"),
            (self.flat_std >= 0 and self.trim_std >= 0, "flat_std, trim_std must be >= 0"),
            (self.flat_dev > 0 and self.flat_colour_tol >= 0,
             "flat_dev must be > 0, flat_colour_tol >= 0"),
            (0.0 <= self.flat_max_share < 1.0, "flat_max_share must be in [0, 1)"),
            (self.ecc_confirm_px >= 0, "ecc_confirm_px must be >= 0"),
            (self.coarse_margin == 0 or self.coarse_margin >= 1,
             "coarse_margin must be 0 (off) or >= 1"),
            (0.0 < self.ecc_start_ncc <= 1.0, "ecc_start_ncc must be in (0, 1]"),
            (0.0 <= self.min_class_share <= 1.0, "min_class_share must be in [0, 1]"),
            (self.coarse_accept in (0, 1), "coarse_accept must be 0 or 1"),
            (self.coarse_levels in (1, 2, 3), "coarse_levels must be 1, 2 or 3"),
            (0.0 < self.block_hue_deg <= 180.0, "block_hue_deg must be in (0, 180]"),
            (self.strong_ratio >= 1.0 and self.strong_floor > 0 and self.strong_min_blocks >= 1,
             "strong_ratio must be >= 1, strong_floor > 0, strong_min_blocks >= 1"),
            (0.0 <= self.strong_clip_share <= 1.0, "strong_clip_share must be in [0, 1]"),
            (1.0 <= self.max_squash <= 4.0, "max_squash must be in [1, 4]"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(f"VerifySettings: {msg}")
        return self


DEFAULT = VerifySettings()




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
    clip: np.ndarray  # uint8 255 where any channel of the thumbnail is at 0-3 or 252-255
    # SIFT keypoints (float32 (n, 2) x, y in thumbnail px) and descriptors (uint8 (n, 128)),
    # computed on first use (most copies align by their sketches and never need them) and
    # kept: key "d" or "m" (of the mirrored thumbnail) + the settings they depend on
    sift_cache: dict[str, tuple[np.ndarray, np.ndarray]] = field(
        default_factory=dict, repr=False, compare=False)

    derived: dict[str, Features] = field(default_factory=dict, repr=False, compare=False)
    # colour classes at the grey thumbnail's size, computed on first use (tone_classes)
    class_cache: dict[str, np.ndarray] = field(default_factory=dict, repr=False,
                                               compare=False)

    def tone_classes(self) -> np.ndarray:
        """uint8 colour class per grey thumbnail pixel: 0 neutral (chroma < 10), else
        1 + the hue's sextant. Tone curves are fitted per class, so an edit that maps the
        channels differently (a gamma per channel, a white balance) stays a function."""
        if "c" not in self.class_cache:
            a = self.chroma[:, :, 0].astype(np.float32) - 128
            b = self.chroma[:, :, 1].astype(np.float32) - 128
            sector = np.floor((np.arctan2(b, a) + np.pi) * (N_HUES / (2 * np.pi)))
            cls = np.where(np.hypot(a, b) < 10, 0, 1 + sector.astype(np.int32) % N_HUES)
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
                clip=cv2.resize(self.clip, size, interpolation=cv2.INTER_AREA))
        return self.derived["half"]

    @property
    def scale(self) -> float:
        """Thumbnail px per original px."""
        return self.grey.shape[1] / self.shape[1]

    def keypoints(self, settings: VerifySettings,
                  mirrored: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(keypoints, descriptors) of the thumbnail (or of its mirror image), cached."""
        key = f"{'m' if mirrored else 'd'}{settings.sift_side}/{settings.max_features}"
        if key not in self.sift_cache:
            g = np.ascontiguousarray(self.grey[:, ::-1]) if mirrored else self.grey
            self.sift_cache[key] = _sift_arrays(g, settings)
        return self.sift_cache[key]


@dataclass(frozen=True)
class Verdict:
    match: str  # "exact" | "copy" | "other_shot"
    evidence: str
    numbers: dict[str, float]


_SIFT: dict[tuple[int, int], cv2.SIFT] = {}


def _sift(n: int) -> cv2.SIFT:
    key = (n, threading.get_ident())  # one detector per thread: comparisons run in threads
    if key not in _SIFT:
        _SIFT[key] = cv2.SIFT_create(nfeatures=n)  # type: ignore[attr-defined]
    return _SIFT[key]


def _resize_long(img: np.ndarray, side: int) -> np.ndarray:
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
        bad = (std > tol) | (np.abs(mean - ref) > 6.0)
        idx = np.flatnonzero(bad)
        return int(idx[0]) if idx.size else len(std)

    rs, rm = f.std(axis=1), f.mean(axis=1)
    cs, cm = f.std(axis=0), f.mean(axis=0)
    y0 = first(rs, rm, float(rm[0]))
    y1 = h - first(rs[::-1], rm[::-1], float(rm[-1]))
    x0 = first(cs, cm, float(cm[0]))
    x1 = w - first(cs[::-1], cm[::-1], float(cm[-1]))
    if y1 - y0 < 0.3 * h or x1 - x0 < 0.3 * w:  # (nearly) flat image: keep everything
        return 0, 0, w, h
    # a margin of one or two px is resampling noise, not a border
    y0 = y0 if y0 > 2 else 0
    x0 = x0 if x0 > 2 else 0
    y1 = y1 if h - y1 > 2 else h
    x1 = x1 if w - x1 > 2 else w
    return x0, y0, x1, y1


def _sketch(g: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    x0, y0, x1, y1 = box
    s = cv2.resize(g[y0:y1, x0:x1], (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    s -= s.mean()
    n = float(np.linalg.norm(s))
    return s / n if n > 1e-6 else s


def _sift_arrays(g: np.ndarray, settings: VerifySettings) -> tuple[np.ndarray, np.ndarray]:
    small = _resize_long(g, settings.sift_side)
    f = g.shape[1] / small.shape[1]
    kps, desc = _sift(settings.max_features).detectAndCompute(small, None)
    if desc is None or not kps:
        return np.zeros((0, 2), np.float32), np.zeros((0, 128), np.uint8)
    xy = np.array([k.pt for k in kps], np.float32) * f
    return xy, np.clip(desc, 0, 255).astype(np.uint8)


def _mean_rgb(rgb: np.ndarray) -> tuple[float, float, float]:
    r, g, b = (float(v) for v in rgb.reshape(-1, 3).mean(axis=0))
    return r, g, b


def describe(rgb: np.ndarray, digest: str | None = None,
             settings: VerifySettings = DEFAULT, sift: bool = True,
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
    small = _resize_long(rgb, settings.thumb_side)
    grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    half = cv2.resize(small, (max(1, small.shape[1] // 2), max(1, small.shape[0] // 2)),
                      interpolation=cv2.INTER_AREA)
    lab = cv2.cvtColor(half, cv2.COLOR_RGB2LAB)
    chroma = np.ascontiguousarray(lab[:, :, 1:])
    c = np.hypot(chroma[:, :, 0].astype(np.float32) - 128, chroma[:, :, 1].astype(np.float32) - 128)
    box = _trim_box(grey, settings.trim_std)
    f = Features(shape=(h, w), digest=digest, pixel_hash=pixel_hash, grey=grey, chroma=chroma,
                 box=box, sketch=_sketch(grey, box), colourful=float((c > 10).mean()),
                 mean_rgb=_mean_rgb(small),
                 clip=np.where(((small <= 3) | (small >= 252)).any(axis=2), 255, 0).astype(
                     np.uint8))
    if sift:
        f.keypoints(settings)
    return f


# ---------------------------------------------------------------- geometry candidates


def _dihedral(s: np.ndarray, k: int) -> np.ndarray:
    t = np.fliplr(s) if k >= 4 else s
    return np.rot90(t, k % 4)


def _unit_to_box(box: tuple[int, int, int, int]) -> np.ndarray:
    x0, y0, x1, y1 = box  # pixel centres at integers: the box spans x0 - 0.5 .. x1 - 0.5
    return np.array([[x1 - x0, 0, x0 - 0.5], [0, y1 - y0, y0 - 0.5], [0, 0, 1]], np.float64)


def _dihedral_matrix(k: int, box_a: tuple[int, int, int, int],
                     box_b: tuple[int, int, int, int]) -> np.ndarray:
    """2x3 matrix mapping b thumbnail px to a thumbnail px for dihedral transform k."""
    n = 8
    v, u = np.mgrid[0:n, 0:n].astype(np.float64)
    u, v = (u + 0.5) / n, (v + 0.5) / n
    su, sv = _dihedral(u, k), _dihedral(v, k)  # at a position of the a frame: b's unit coords
    src = np.stack([u.ravel(), v.ravel(), np.ones(n * n)], 1)  # a unit coords
    sol, *_ = np.linalg.lstsq(src, np.stack([su.ravel(), sv.ravel()], 1), rcond=None)
    a_to_b = np.vstack([sol.T, [0, 0, 1]])  # a unit -> b unit
    b_to_a = _unit_to_box(box_a) @ np.linalg.inv(a_to_b) @ np.linalg.inv(_unit_to_box(box_b))
    return b_to_a[:2]


def _match(kp_a: np.ndarray, d_a: np.ndarray, kp_b: np.ndarray, d_b: np.ndarray,
           settings: VerifySettings) -> tuple[np.ndarray | None, int]:
    if len(d_a) < settings.min_inliers or len(d_b) < settings.min_inliers:
        return None, 0
    bf = cv2.BFMatcher(cv2.NORM_L2)
    pairs = bf.knnMatch(d_a.astype(np.float32), d_b.astype(np.float32), k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < settings.ratio * p[1].distance]
    if len(good) < settings.min_inliers:
        return None, len(good)
    pa = np.array([kp_a[m.queryIdx] for m in good], np.float32)
    pb = np.array([kp_b[m.trainIdx] for m in good], np.float32)
    cv2.setRNGSeed(12345)
    m, inl = cv2.estimateAffinePartial2D(pb, pa, method=cv2.RANSAC,
                                         ransacReprojThreshold=settings.ransac_px,
                                         maxIters=2000, confidence=0.995, refineIters=10)
    n = int(inl.sum()) if inl is not None else 0
    if m is None or n < settings.min_inliers:
        return None, n
    return m.astype(np.float64), n


def _template_fwd(a: Features, b: Features, k: int) -> tuple[float, np.ndarray]:
    """Find b's content (dihedral k, shrunk by 80-100% per axis) inside a's content box.

    Fallback for images with too few keypoints (smooth gradients): returns (ncc, b->a 2x3).
    """
    ax0, ay0, ax1, ay1 = a.box
    bx0, by0, bx1, by1 = b.box
    f = 64.0 / max(ax1 - ax0, ay1 - ay0)
    wa, ha = max(8, round((ax1 - ax0) * f)), max(8, round((ay1 - ay0) * f))
    ga = cv2.resize(a.grey[ay0:ay1, ax0:ax1], (wa, ha), interpolation=cv2.INTER_AREA)
    gb = np.ascontiguousarray(_dihedral(b.grey[by0:by1, bx0:bx1], k))
    best = (-1.0, np.zeros((2, 3)))
    for qx in (1.0, 0.95, 0.9, 0.85, 0.8):
        for qy in (1.0, 0.95, 0.9, 0.85, 0.8):
            tw, th = max(4, round(wa * qx)), max(4, round(ha * qy))
            t = cv2.resize(gb, (tw, th), interpolation=cv2.INTER_AREA)
            if float(t.std()) < 1.0:
                continue
            r = cv2.matchTemplate(ga, t, cv2.TM_CCOEFF_NORMED)
            _, score, _, loc = cv2.minMaxLoc(r)
            if score > best[0]:
                sub = (ax0 + loc[0] / f, ay0 + loc[1] / f, ax0 + (loc[0] + tw) / f,
                       ay0 + (loc[1] + th) / f)
                best = (float(score), _dihedral_matrix(k, sub, b.box))  # type: ignore[arg-type]
    return best


def _template(a: Features, b: Features, k: int) -> tuple[float, np.ndarray]:
    s1, m1 = _template_fwd(a, b, k)
    s2, m2 = _template_fwd(b, a, k if k >= 4 else (4 - k) % 4)
    if s2 > s1:
        return s2, np.linalg.inv(np.vstack([m2, [0, 0, 1]]))[:2]
    return s1, m1


def _refine_ecc(a: Features, b: Features, m: np.ndarray) -> np.ndarray | None:
    """A b->a map refined (affine, intensity-invariant ECC) on grey thumbnails of at most
    128 px, starting from m; None when it does not converge."""
    f = min(1.0, 128.0 / max(a.grey.shape + b.grey.shape))
    ga, gb = (_resize_long(x.grey, round(max(x.grey.shape) * f)) for x in (a, b))
    sa = np.diag([ga.shape[1] / a.grey.shape[1], ga.shape[0] / a.grey.shape[0], 1.0])
    sb = np.diag([gb.shape[1] / b.grey.shape[1], gb.shape[0] / b.grey.shape[0], 1.0])
    a_to_b = sb @ np.linalg.inv(np.vstack([m, [0, 0, 1]])) @ np.linalg.inv(sa)
    x0, y0, x1, y1 = (round(v * f) for v in b.box)  # the mask is of the input image (b)
    mask = np.zeros(gb.shape, np.uint8)
    mask[y0 + 1:y1 - 1, x0 + 1:x1 - 1] = 1
    crit = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 100, 1e-5)
    try:
        _, w = cv2.findTransformECC(ga, gb, a_to_b[:2].astype(np.float32), cv2.MOTION_AFFINE,
                                    crit, mask, 3)
    except cv2.error:
        return None
    a_to_b_full = np.linalg.inv(sb) @ np.vstack([w.astype(np.float64), [0, 0, 1]]) @ sa
    b_to_a = np.linalg.inv(a_to_b_full)
    return b_to_a[:2]


def _map_shift(m1: np.ndarray, m2: np.ndarray, box: tuple[int, int, int, int]) -> float:
    """Largest distance (px) between where two b->a maps put the corners of b's box."""
    x0, y0, x1, y1 = box
    c = np.array([[x0, y0, 1], [x1, y0, 1], [x1, y1, 1], [x0, y1, 1]], np.float64)
    return float(np.max(np.hypot(*(c @ (m1 - m2).T).T)))


def _flip_matrix(w: int) -> np.ndarray:
    return np.array([[-1.0, 0.0, w - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


# ---------------------------------------------------------------- verification of one geometry


@dataclass
class _Check:
    copy: bool
    differing: float
    score: float
    numbers: dict[str, float]
    words: list[str]


def _box_mask(shape: tuple[int, int], box: tuple[int, int, int, int]) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    x0, y0, x1, y1 = box
    m[y0:y1, x0:x1] = 1
    return m


def _extreme(g: np.ndarray) -> np.ndarray:
    return (g <= 12) | (g >= 243)


def _fill_mask(g: np.ndarray) -> np.ndarray:
    """Near-black or near-white regions touching the border (a transform's constant fill),
    grown by 3 px to cover the resampled edge."""
    n, lab = cv2.connectedComponents(_extreme(g).astype(np.uint8), connectivity=4)
    keep = np.zeros(n, bool)
    keep[np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]])] = True
    keep[0] = False
    return cv2.dilate(keep[lab].astype(np.uint8), np.ones((7, 7), np.uint8)) > 0


def _block_sums(x: np.ndarray, bs: int, hb: int, wb: int) -> np.ndarray:
    """Sums over the (hb, wb) grid of bs x bs blocks of a float32 image (area resampling:
    one pass in OpenCV instead of a strided NumPy reduction)."""
    crop = np.ascontiguousarray(x[: hb * bs, : wb * bs])
    return cv2.resize(crop, (wb, hb), interpolation=cv2.INTER_AREA).astype(np.float64) * (bs * bs)


def _block_std(g: np.ndarray, vmf: np.ndarray, n: np.ndarray, bs: int) -> np.ndarray:
    """Grey std per block over the pixels where vmf (float32 0/1) is 1; n: their counts."""
    hb, wb = n.shape
    x = g * vmf
    nn = np.maximum(n, 1.0)
    mean = _block_sums(x, bs, hb, wb) / nn
    var = _block_sums(x * g, bs, hb, wb) / nn - mean * mean
    return np.sqrt(np.maximum(var, 0.0))


def _components(mask: np.ndarray) -> list[tuple[int, int, int, int, int]]:
    """(x, y, w, h, area) of 8-connected components of a boolean block grid."""
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    return [tuple(int(v) for v in stats[i]) for i in range(1, n)]  # type: ignore[misc]


def _hue_change(fa: Features, fb: Features, m: np.ndarray, swap: bool, block: int,
                grid: tuple[int, int], settings: VerifySettings) -> tuple[float, np.ndarray]:
    """(mean absolute hue change in deg where both images are clearly coloured, -1 if
    unknown; blocks of the residual grid (hb, wb) of `block` grey px, mostly coloured in
    both, whose hue changed by more than settings.block_hue_deg: a subject recoloured, or
    another one there)."""
    src, dst = (fa, fb) if swap else (fb, fa)
    half = np.array([[0.5, 0, 0], [0, 0.5, 0], [0, 0, 1]])
    m3 = np.vstack([m, [0, 0, 1]])
    if swap:
        m3 = np.linalg.inv(m3)
    mh = (half @ m3 @ np.linalg.inv(half))[:2]
    hd, wd = dst.chroma.shape[:2]
    warped = cv2.warpAffine(src.chroma, mh, (wd, hd), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=(128, 128))
    valid = cv2.warpAffine(np.ones(src.chroma.shape[:2], np.uint8), mh, (wd, hd),
                           flags=cv2.INTER_NEAREST) > 0
    a = dst.chroma.astype(np.float32) - 128
    b = warped.astype(np.float32) - 128
    ca, cb = np.hypot(a[..., 0], a[..., 1]), np.hypot(b[..., 0], b[..., 1])
    sel = valid & (ca > 10) & (cb > 10)
    hb, wb = grid
    blocks = np.zeros(grid, bool)
    if sel.sum() < 20:
        return -1.0, blocks
    d = np.abs(np.remainder(np.arctan2(a[..., 1], a[..., 0]) - np.arctan2(b[..., 1], b[..., 0])
                            + np.pi, 2 * np.pi) - np.pi).astype(np.float32)
    w = np.where(sel, np.minimum(ca, cb), 0.0).astype(np.float32)
    cbs = max(1, block // 2)  # the chroma is at half the grey size
    if hb * cbs <= hd and wb * cbs <= wd:
        wsum = _block_sums(w, cbs, hb, wb)
        cover = _block_sums(sel.astype(np.float32), cbs, hb, wb) / (cbs * cbs)
        deg = np.degrees(_block_sums(d * w, cbs, hb, wb) / np.maximum(wsum, 1e-6))
        blocks = (cover >= 0.5) & (deg > settings.block_hue_deg)
    if sel.sum() < 0.02 * valid.sum():
        return -1.0, blocks
    return float(np.degrees(np.average(d[sel], weights=w[sel]))), blocks


@dataclass
class _Residual:
    diff: np.ndarray  # blocks where the prediction fails
    strong: np.ndarray  # ...by far (settings.strong_ratio, strong_floor): new content
    median: float  # median block residual (grey levels)
    tone_shift: float  # mean (curve - identity) over the predicting image's pixels
    tone_dev: float  # mean |curve - identity|
    gain: float  # the pure gain (exposure change, clipped at white) closest to the curves
    gain_dev: float  # ...and the curves' mean |curve - that gain|
    local_dev: float  # mean |local curve - identity| of the tiles' curves (0: global only)


def _residual(target: np.ndarray, source: np.ndarray, source0: np.ndarray,
              cls: np.ndarray, st: np.ndarray, idx: np.ndarray, vmf: np.ndarray,
              n: np.ndarray, used: np.ndarray, settings: VerifySettings,
              tiles: int = 0) -> _Residual:
    """Predict `target` from `source` (aligned float32 grey images) through monotone tone
    curves, one per colour class of the source (`cls`, aligned with it), fitted on the
    overlap (flat pixel indices `idx`; vmf: the overlap as float32 0/1, n: its pixel count
    per block; st: the target's block grey std); blocks (of settings.block px) whose mean
    residual is out of line with the noise and the local contrast differ. Pixels that are
    clipped in the source (`source0`, unblurred, at 0-3 or 252-255) are not judged: the
    levels an edit clipped cannot be told apart there."""
    bs = settings.block
    hb, wb = used.shape
    xs = np.clip(source.ravel().take(idx), 0, 255).astype(np.intp)
    ys = target.ravel().take(idx)
    cs = cls.ravel().take(idx)
    curves = class_curves(xs, cs, ys, settings.min_class_share)
    # refitted without the pixels it predicts worst: new content (text, a figure) whose grey
    # levels also occur in the picture would otherwise pull the curve there (a white caption
    # over red bends white towards red, and a white highlight elsewhere then differs)
    err = np.abs(ys - curves[cs, xs])
    inl = err <= max(3.0 * settings.diff_floor, 6.0 * float(np.median(err[::7])))
    if not inl.all():
        curves = class_curves(xs[inl], cs[inl], ys[inl], settings.min_class_share)
    mapped = apply_curve(source, curves, cls).astype(np.float32)
    dev = curves[cs, xs] - xs
    gain, gain_dev = gain_fit(xs, curves[cs, xs])
    local_dev = 0.0
    if tiles:  # tone that varies over the picture: curves per tile on top of the global ones
        fit = np.zeros(target.shape, bool)
        fit.ravel()[idx] = True
        mapped, local_dev = local_correction(mapped, target, fit, tiles)
    # where the source is clipped (0-3 or 255-252) an edit may have merged many levels of
    # the target into one: the residual there counts only beyond twice the spread of the
    # target over that level (a figure in a night scene stands far outside the spread of
    # the black it covers; the highlights a brightening clipped stay within theirs)
    lv = np.clip(source0, 0, 255).astype(np.uint8)
    lv_idx = lv.ravel().take(idx)
    cnt = np.bincount(lv_idx, minlength=256)
    mean = np.bincount(lv_idx, weights=ys, minlength=256) / np.maximum(cnt, 1)
    var = np.bincount(lv_idx, weights=ys * ys, minlength=256) / np.maximum(cnt, 1) - mean ** 2
    tol = np.zeros(256, np.float32)
    clipped = np.r_[0:4, 252:256]
    tol[clipped] = 2.0 * np.sqrt(np.maximum(var[clipped], 0.0))
    res = np.abs(target - mapped)
    res -= tol[lv]
    np.maximum(res, 0.0, out=res)
    res *= vmf
    r = _block_sums(res, bs, hb, wb)
    rb = np.where(used, r / np.maximum(n, 1.0), 0.0)
    sm = _block_std(mapped, vmf, n, bs)
    med = float(np.median(rb[used]))
    # block contrast of either image: a misregistered or blurred edge leaves a residual well
    # below the local contrast, new content (a moved subject) one of the order of it
    noise = max(settings.diff_floor, settings.diff_noise_k * med)
    thr = np.maximum(noise, settings.diff_contrast * np.maximum(st, sm))
    diff = used & (rb > thr)
    strong = diff & (rb > max(settings.strong_ratio * noise, settings.strong_floor))
    return _Residual(diff, strong, med, float(np.mean(dev)), float(np.mean(np.abs(dev))),
                     gain, gain_dev, local_dev)


def _split_overlay(r: _Residual, std_a: np.ndarray, std_b: np.ndarray,
                   settings: VerifySettings) -> tuple[np.ndarray, np.ndarray]:
    """(differing blocks that are not a text overlay, overlay blocks): an overlay is a thin
    horizontal band of differing blocks where one image is far more contrasted (std_a,
    std_b: block grey std of the two aligned images)."""
    hb = r.diff.shape[0]
    rest = r.diff.copy()
    band = np.zeros_like(r.diff)
    closed = cv2.dilate(r.diff.astype(np.uint8), np.ones((1, 3), np.uint8)) > 0
    for cx, cy, cw, ch, _ in _components(closed):
        sub = r.diff[cy:cy + ch, cx:cx + cw]
        if not (ch <= max(3, round(settings.band_rows * hb)) and cw >= 2 * ch
                and cw >= settings.overlay_min_width * r.diff.shape[1]):
            continue
        ca = float(std_a[cy:cy + ch, cx:cx + cw][sub].mean())
        cb = float(std_b[cy:cy + ch, cx:cx + cw][sub].mean())
        if max(ca, cb) >= settings.overlay_contrast * max(min(ca, cb), 1.0):
            band[cy:cy + ch, cx:cx + cw] |= sub
            rest[cy:cy + ch, cx:cx + cw] &= ~sub
    return rest, band


def _caption_blocks(ga: np.ndarray, gb: np.ndarray, vmf: np.ndarray, n: np.ndarray,
                    used: np.ndarray, settings: VerifySettings) -> np.ndarray:
    """Blocks of caption text added to one image (meme text: white letters outlined in
    black): blocks where one image has caption_stroke of their pixels near white over
    darker ones of the other, and as many near black over lighter ones, grown by a block, in wide,
    thin bands near the top or the bottom (caption_rows high at most, caption_min_width
    wide at least, in the outer caption_zone of the rows), their text blocks together at
    most max_caption of the blocks. A band taller than band_rows is an overlay only so."""
    bs = settings.block
    hb, wb = used.shape
    out = np.zeros(used.shape, bool)
    if not settings.max_caption:
        return out
    nn = np.maximum(n, 1.0)

    def strokes(g: np.ndarray, other: np.ndarray) -> np.ndarray:
        # near-white pixels over darker ones and near-black ones over lighter ones in the
        # other image: letters and their outline, over any background
        white = (g >= 220) & (g - other >= 40)
        black = (g <= 50) & (other - g >= 40)
        w_share, b_share = (_block_sums((m * vmf).astype(np.float32), bs, hb, wb) / nn
                            for m in (white, black))
        return np.minimum(w_share, b_share)

    text = used & (np.maximum(strokes(ga, gb), strokes(gb, ga)) >= settings.caption_stroke)
    grown = (cv2.dilate(text.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0) & used
    zone = settings.caption_zone * hb
    for cx, cy, cw, ch, _ in _components(grown):
        if (ch <= max(3, round(settings.caption_rows * hb)) and cw >= 2 * ch
                and cw >= settings.caption_min_width * wb and (cy + ch <= zone
                                                                 or cy >= hb - zone)):
            out[cy:cy + ch, cx:cx + cw] |= grown[cy:cy + ch, cx:cx + cw]
    if (out & text).sum() > settings.max_caption * used.sum():
        out[:] = False
    return out


def _verify(fa: Features, fb: Features, m: np.ndarray, settings: VerifySettings,
            blurs: dict[tuple[int, float], np.ndarray] | None = None,
            local: bool = False) -> _Check:
    """Check a 2x3 map m (b thumbnail px -> a thumbnail px). blurs: blurred thumbnails
    shared by the checks of one comparison. local: predict each image from the other with
    curves per tile (settings.local_tiles) on top of the global ones."""
    blurs = {} if blurs is None else blurs
    m3 = np.vstack([m, [0, 0, 1]])
    lin = m[:, :2]
    det = float(np.linalg.det(lin))
    mirrored = det < 0
    s = float(np.sqrt(abs(det)))
    # warp the image whose content is smaller on screen onto the other (upsampling only)
    swap = s < 1.0
    if swap:
        src, dst, mm = fa, fb, np.linalg.inv(m3)[:2]
    else:
        src, dst, mm = fb, fa, m
    hd, wd = dst.grey.shape
    warped = cv2.warpAffine(src.grey, mm, (wd, hd), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REPLICATE)
    src_valid = cv2.warpAffine(_box_mask(src.grey.shape, src.box), mm, (wd, hd),
                               flags=cv2.INTER_NEAREST)
    valid = (src_valid > 0) & (_box_mask(dst.grey.shape, dst.box) > 0)
    valid = cv2.erode(valid.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    area_d = (dst.box[2] - dst.box[0]) * (dst.box[3] - dst.box[1])
    area_s = (src.box[2] - src.box[0]) * (src.box[3] - src.box[1]) * abs(np.linalg.det(mm[:, :2]))
    overlap = float(valid.sum()) / max(area_d, area_s, 1.0)
    nums: dict[str, float] = {"scale": s, "mirrored": float(mirrored), "overlap": overlap}
    # rotation, in a's frame: angle of b's x axis
    ang = float(np.degrees(np.arctan2(m[1, 0], m[0, 0])))
    if mirrored:
        ang = float(np.degrees(np.arctan2(-m[1, 0], -m[0, 0])))
    nums["rotation_deg"] = ang
    if overlap < settings.min_overlap:
        return _Check(False, 1.0, -1.0, nums, [f"overlap only {overlap:.0%}"])
    nums["fill_share"] = 0.0
    if abs(ang - round(ang / 90.0) * 90.0) > 0.3:
        # turned by a few degrees without growing the canvas: the corners are filled with a
        # constant; such fill in one image only is the edit's, not the picture's
        fill_d, fill_s = _fill_mask(dst.grey), _fill_mask(src.grey)
        share = abs(float(fill_d.mean()) - float(fill_s.mean()))  # in one image only
        if 0.002 < share <= 0.15:
            nums["fill_share"] = share
            fill_w = cv2.warpAffine(fill_s.astype(np.uint8), mm, (wd, hd),
                                    flags=cv2.INTER_NEAREST) > 0
            valid &= ~((fill_d & ~_extreme(warped)) | (fill_w & ~_extreme(dst.grey)))
    ga0 = dst.grey.astype(np.float32)
    gb0 = warped.astype(np.float32)
    vm = valid
    bs = settings.block
    hue, hue_blocks = -1.0, np.zeros((hd // bs, wd // bs), bool)
    if min(fa.colourful, fb.colourful) > 0.001 and hue_blocks.size:
        hue, hue_blocks = _hue_change(fa, fb, m, swap, bs, hue_blocks.shape, settings)
        if min(fa.colourful, fb.colourful) <= 0.05:
            hue = -1.0  # too little colour for a mean over the picture
    nums["hue_change_deg"] = hue
    nums["std_a"], nums["std_b"] = float(ga0[vm].std()), float(gb0[vm].std())
    if _flat_pixels(ga0[vm], settings) or _flat_pixels(gb0[vm], settings):
        # flat where they overlap: nothing there tells a copy from another picture (two
        # wholly flat images were judged by their colours before any alignment), so this
        # map verifies nothing
        nums["mean_diff"] = abs(float(ga0[vm].mean()) - float(gb0[vm].mean()))
        return _Check(False, 1.0, -1.0, nums, ["flat where they overlap: nothing to verify"])
    # tone curve on lightly smoothed images, then the blur that best explains the other image
    hb, wb = hd // bs, wd // bs
    if hb == 0 or wb == 0:
        return _Check(False, 1.0, -1.0, nums, ["too small"])
    vmf = vm.astype(np.float32)
    c = np.rint(_block_sums(vmf, bs, hb, wb))
    used = c >= 0.75 * bs * bs
    if used.sum() < 4:
        return _Check(False, 1.0, -1.0, nums, ["overlap too small"])
    caption = _caption_blocks(ga0, gb0, vmf, c, used, settings)
    fit = vm
    if caption.any():  # the tone curves and the blur are the picture's, not the text's
        fit = vm.copy()
        fit[: hb * bs, : wb * bs] &= ~np.kron(caption, np.ones((bs, bs), bool))
    # the pixels the tone curves are fitted on, raster order (img.ravel().take(idx) = img[fit])
    idx = np.flatnonzero(fit)

    def dst_blur(sigma: float) -> np.ndarray:  # the unwarped image's blurs: one per compare
        key = (id(dst), sigma)
        if key not in blurs:
            blurs[key] = cv2.GaussianBlur(ga0, (0, 0), sigma)
        return blurs[key]

    ga, gb = dst_blur(0.8), cv2.GaussianBlur(gb0, (0, 0), 0.8)
    ga_v, gb_v = ga.ravel().take(idx), gb.ravel().take(idx)
    curve = tone_curve(np.clip(gb_v, 0, 255).astype(np.uint8), ga_v)
    yy_gb = apply_curve(gb_v, curve)
    best = (float(np.mean(np.abs(ga_v - yy_gb))), 0.0, ga, gb)
    for which in (0, 1):  # blur a, then b, more while it helps (the error is unimodal in it)
        for sigma in (1.0, 2.0, 3.0):
            sig = float(np.hypot(sigma, 0.8))
            x = dst_blur(sig) if which == 0 else ga
            y = cv2.GaussianBlur(gb0, (0, 0), sig) if which == 1 else gb
            yy = apply_curve(y.ravel().take(idx), curve) if which == 1 else yy_gb
            xv = x.ravel().take(idx) if which == 0 else ga_v
            err = float(np.mean(np.abs(xv - yy)))
            if err >= best[0] * 0.97:
                break
            best = (err, sigma if which == 0 else -sigma, x, y)
    _, blur_sig, ga, gb = best
    nums["blur_sigma"] = blur_sig
    # each image predicted from the other through a tone curve, and the blocks where either
    # prediction fails differ: one curve alone can map grey levels found only in new content
    # (a figure walking in) onto the background there, which hides it in that direction.
    # A direction can only add differing blocks, so when the first already rules out a
    # copy the second is not computed (the verdict is the same in either order)
    bstd_a, bstd_b = _block_std(ga, vmf, c, bs), _block_std(gb, vmf, c, bs)
    cls_w = cv2.warpAffine(src.tone_classes(), mm, (wd, hd), flags=cv2.INTER_NEAREST,
                           borderMode=cv2.BORDER_REPLICATE)
    fwd = _residual(ga, gb, gb0, cls_w, bstd_a, idx, vmf, c, used, settings)
    nums["tone_shift"] = fwd.tone_shift
    hue_blocks &= used
    # blocks largely clipped in either image (in any channel): an edit that clipped them
    # leaves residuals there that are no new content
    clip_w = cv2.warpAffine(src.clip, mm, (wd, hd), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REPLICATE)
    clip = np.maximum(dst.clip, clip_w).astype(np.float32) * (vmf / 255.0)
    clipped = _block_sums(clip, bs, hb, wb) > settings.strong_clip_share * np.maximum(c, 1.0)
    cls_d = dst.tone_classes()

    def judge(tiles: int) -> _Check:
        f = fwd if not tiles else _residual(ga, gb, gb0, cls_w, bstd_a, idx, vmf, c, used,
                                            settings, tiles)
        chk = _judge([f], bstd_a, bstd_b, used, hue_blocks, clipped, caption, overlap, hue,
                     nums, settings)
        if chk.copy:
            rev = _residual(gb, ga, ga0, cls_d, bstd_b, idx, vmf, c, used, settings, tiles)
            chk = _judge([f, rev], bstd_a, bstd_b, used, hue_blocks, clipped, caption, overlap,
                         hue, nums, settings)
        return chk

    if not local:
        return judge(0)
    chk = judge(settings.local_tiles)
    chk.numbers["local_tone"] = 1.0
    if chk.copy:
        chk.words.insert(0, "tone changed locally")
    return chk


def _judge(dirs: list[_Residual], std_a: np.ndarray, std_b: np.ndarray, used: np.ndarray,
           hue_blocks: np.ndarray, clipped: np.ndarray, caption: np.ndarray, overlap: float,
           hue: float, nums: dict[str, float], settings: VerifySettings) -> _Check:
    """The check's verdict from the residuals of one or both directions and the blocks
    whose hue changed (nums: the geometry's numbers so far, completed here; clipped: blocks
    whose strong residuals are not counted as new content; caption: the blocks of caption
    text in one image, whose differences are the text's)."""
    nums = dict(nums)
    words: list[str] = []
    hb = used.shape[0]
    tone_dev = max(d.tone_dev for d in dirs)
    med = max(d.median for d in dirs)
    nums["tone_dev"], nums["block_median"] = tone_dev, med
    n_used = float(used.sum())
    # text overlays are told apart in each direction, then the blocks either direction
    # finds differing, and not an overlay band there, are new content
    split = [_split_overlay(d, std_a, std_b, settings) for d in dirs]
    rest = np.logical_or.reduce([r for r, _ in split] + [hue_blocks])
    in_caption = rest & caption
    rest &= ~caption
    overlay = float((np.logical_or.reduce([b for _, b in split]) & ~rest & ~caption).sum())
    differing = float(rest.sum()) / n_used
    comps = _components(rest)
    nums["largest_region"] = max((c[4] for c in comps), default=0) / n_used
    # shaped like a text band (the coarse check leaves such a region to the full one)
    nums["band_shaped"] = float(any(c[3] <= max(3, round(settings.band_rows * hb))
                                    and c[2] >= 2 * c[3] for c in comps))
    nums["regions"] = float(len(comps))
    overlay_share = overlay / n_used
    if overlay_share > settings.max_overlay:
        differing += overlay_share
        overlay_share = 0.0
    caption_share = float(in_caption.sum()) / n_used  # under max_caption: _caption_blocks
    nums["caption_share"] = caption_share
    overlay_share += caption_share
    nums["differing_share"], nums["overlay_share"] = differing, overlay_share
    copy = differing <= settings.max_differing and nums["largest_region"] <= settings.max_region
    # a small object that moved, appeared or vanished (a ball between two video frames)
    # stays under the shares above; its blocks differ by far, where an edit's do not
    strong = np.logical_or.reduce([d.strong for d in dirs]) & rest & ~clipped
    nums["strong_blocks"] = float(strong.sum())
    big = max((c[4] for c in _components(strong)), default=0)
    if big >= settings.strong_min_blocks:
        copy = False
        words.append("something small appears, moves or vanishes")
    if nums["largest_region"] > settings.max_region:
        words.append(f"a region covering {nums['largest_region']:.0%} of the picture differs")
    if med > settings.max_block_median:
        copy = False
        words.append("the pixels differ throughout")
    # an exposure change is a gain (clipped at white) however strong: x0.6 on a bright
    # picture moves its levels by 70 and more; another light (day and night) is no gain
    gains = [d.gain for d in dirs if d.gain_dev <= settings.max_gain_dev]
    nums["gain"] = dirs[0].gain
    nums["gain_dev"] = max(d.gain_dev for d in dirs)
    exposure = len(gains) == len(dirs) and all(
        1.0 / settings.max_gain <= g <= settings.max_gain for g in gains)
    if tone_dev > settings.max_tone_dev and not exposure:
        copy = False
        words.append("the light differs more than an edit would change it")
    nums["local_tone_dev"] = max(d.local_dev for d in dirs)
    if hue >= 0 and hue > settings.max_hue_deg:
        copy = False
        words.append("the colours differ")
    if overlay_share >= 0.005:  # the share is in the numbers; under 1% it is no news
        words.append(f"text or an overlay on {overlay_share:.0%} of the picture")
    score = overlap - differing - 0.01 * med
    return _Check(copy, differing, score, nums, words)


def _to_level(f: Features, h: Features) -> np.ndarray:
    """3x3 map from f's thumbnail px to a reduced copy's px (pixel centres)."""
    sx, sy = h.grey.shape[1] / f.grey.shape[1], h.grey.shape[0] / f.grey.shape[0]
    return np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1]])


def _clearly_other(c: _Check, s: VerifySettings) -> bool:
    n, k = c.numbers, s.coarse_margin
    regions = not n.get("band_shaped") and (c.differing > k * s.max_differing
                                            or n.get("largest_region", 0.0) > k * s.max_region)
    return (n.get("overlap", 1.0) < s.min_overlap or regions
            or n.get("block_median", 0.0) > k * s.max_block_median
            or n.get("tone_dev", 0.0) > k * s.max_tone_dev
            or n.get("hue_change_deg", -1.0) > k * s.max_hue_deg)


def _clearly_copy(c: _Check, s: VerifySettings) -> bool:
    n, k = c.numbers, s.coarse_margin
    return (c.differing * k <= s.max_differing and n.get("largest_region", 0.0) * k <= s.max_region
            and n.get("block_median", 0.0) * k <= s.max_block_median
            and n.get("tone_dev", 0.0) * k <= s.max_tone_dev
            and n.get("hue_change_deg", -1.0) * k <= s.max_hue_deg)


def _check(fa: Features, fb: Features, m: np.ndarray, settings: VerifySettings,
           blurs: dict[tuple[int, float], np.ndarray], local: bool = False) -> _Check:
    """_verify, after checks at coarser sizes (coarse_levels halvings, coarsest first, with
    blocks halved too) that settle a map failing there, or passing there (coarse_accept),
    by coarse_margin on every limit; a map in between goes on to the next size."""
    if settings.coarse_margin and min(fa.grey.shape + fb.grey.shape) >= 8 * settings.block:
        m3 = np.vstack([m, [0, 0, 1]])
        for level in range(settings.coarse_levels, 0, -1):
            block = settings.block >> level
            if block < 4:
                continue
            ha, hb = fa, fb
            for _ in range(level):
                ha, hb = ha.half(), hb.half()
            mh = _to_level(fa, ha) @ m3 @ np.linalg.inv(_to_level(fb, hb))
            c = _verify(ha, hb, mh[:2], dataclasses.replace(settings, block=block), blurs,
                        local)
            # below half size only a clear pass settles a map: resampling a noisy picture
            # (a star field) that far makes blocks differ that agree at half size
            if level == 1 and not c.copy and _clearly_other(c, settings):
                c.numbers["coarse"] = float(level)
                return c
            if c.copy and settings.coarse_accept and _clearly_copy(c, settings):
                c.numbers["coarse"] = float(level)
                return c
    return _verify(fa, fb, m, settings, blurs, local)


# ---------------------------------------------------------------- evidence


def _side_words(fa: Features, fb: Features, m: np.ndarray, nums: dict[str, float],
                min_share: float = 0.02) -> list[str]:
    """Crop shares per side: parts of one content box that the other lacks (named from
    `min_share`); a crop of all four sides, even on each axis, is one centred crop."""
    x0, y0, x1, y1 = fb.box
    corners = np.array([[x0, y0, 1], [x1, y0, 1], [x1, y1, 1], [x0, y1, 1]], np.float64)
    pa = corners @ np.vstack([m, [0, 0, 1]]).T
    bx0, by0 = pa[:, 0].min(), pa[:, 1].min()
    bx1, by1 = pa[:, 0].max(), pa[:, 1].max()
    ax0, ay0, ax1, ay1 = fa.box
    uw = max(ax1, bx1) - min(ax0, bx0)
    uh = max(ay1, by1) - min(ay0, by0)
    sides = {"left": (bx0 - ax0) / uw, "right": (ax1 - bx1) / uw,
             "top": (by0 - ay0) / uh, "bottom": (ay1 - by1) / uh}
    for side, v in sides.items():
        nums[f"crop_{side}"] = float(v)  # > 0: B lacks this side of A; < 0: A lacks it
    for who, sign in (("B", 1.0), ("A", -1.0)):
        cut = {side: sign * v for side, v in sides.items()}
        if min(cut.values()) > min_share and abs(cut["left"] - cut["right"]) <= 0.03 \
                and abs(cut["top"] - cut["bottom"]) <= 0.03:
            share = (cut["left"] + cut["right"] + cut["top"] + cut["bottom"]) / 2
            other = "A" if who == "B" else "B"
            return [f"{who} is a centred crop of {other} ({share:.0%} trimmed off its "
                    "width and height)"]
    return [f"B cropped {v:.0%} on the {side}" if v > 0 else f"A cropped {-v:.0%} on the {side}"
            for side, v in sides.items() if abs(v) > min_share]


def _copy_evidence(fa: Features, fb: Features, m: np.ndarray, chk: _Check) -> str:
    n = chk.numbers
    words: list[str] = []
    if n["mirrored"]:
        words.append("mirrored")
    rot = n["rotation_deg"]
    r90 = round(rot / 90.0) * 90
    if r90 % 360:
        words.append(f"rotated {r90 % 360} deg")
    if abs(rot - r90) > 0.5:
        small = rot - r90
        words.append(f"rotated {small:.0f} deg" if abs(small) >= 1.5 else
                     f"rotated {small:.1f} deg")
    filled = n.get("fill_share", 0.0) > 0
    if filled:
        words.append("corners filled")
    rel = n["scale"] * fb.scale / fa.scale  # A px per B px
    n["size_ratio"] = 1.0 / rel  # B linear size relative to A
    # B's width and height relative to what they show of A (a map with a scale per axis)
    bx, by = (fa.scale / (float(np.hypot(*m[:, i])) * fb.scale) for i in (0, 1))
    n["size_ratio_x"], n["size_ratio_y"] = bx, by
    if abs(np.log(bx / by)) > 0.03:
        words.append(f"B resized to {bx:.0%} x {by:.0%} (aspect changed)")
    elif abs(1.0 / rel - 1.0) > 0.03:  # name the smaller one: "A resized to 60%", not B 167%
        words.append(f"B resized to {1.0 / rel:.0%}" if rel > 1.0 else
                     f"A resized to {rel:.0%}")
    # the filled corners of a turned copy extend its frame a little: not a crop
    words += _side_words(fa, fb, m, n, 0.075 if filled else 0.02)
    trim_a = 1 - (fa.box[2] - fa.box[0]) * (fa.box[3] - fa.box[1]) / fa.grey.size
    trim_b = 1 - (fb.box[2] - fb.box[0]) * (fb.box[3] - fb.box[1]) / fb.grey.size
    n["border_a"], n["border_b"] = trim_a, trim_b
    if trim_b > 0.02 and trim_b > trim_a + 0.02:
        words.append(f"borders added to B ({trim_b:.0%})")
    elif trim_a > 0.02 and trim_a > trim_b + 0.02:
        words.append(f"borders added to A ({trim_a:.0%})")
    if (fa.colourful > 0.05) != (fb.colourful > 0.05) and min(fa.colourful, fb.colourful) < 0.005:
        words.append("converted to grey")
    if n.get("tone_dev", 0.0) > 6.0:
        # tone_shift maps (warped) src onto dst; express it for B relative to A
        shift = n["tone_shift"] if n["scale"] >= 1.0 else -n["tone_shift"]
        words.append("B brighter/contrast/gamma changed" if shift < 0
                     else "B darker/contrast/gamma changed")
    if abs(n.get("blur_sigma", 0.0)) > 0:
        sig = n["blur_sigma"]
        softer = "A" if (sig < 0) == (n["scale"] >= 1.0) else "B"
        words.append(f"{softer} blurred")
    words += chk.words
    if n.get("block_median", 0.0) > 1.0:
        words.append("re-encoded/noise")
    return ", ".join(words) if words else "same picture, pixels differ slightly"


# ---------------------------------------------------------------- flat images


def _flat_pixels(g: np.ndarray, settings: VerifySettings) -> bool:
    """Grey levels with no content: a low std and almost no pixel far from their median
    (strokes on a blank page are content however few)."""
    if g.size == 0:
        return True
    if float(g.std()) >= settings.flat_std:
        return False
    far = np.abs(g.astype(np.float32) - float(np.median(g))) >= settings.flat_dev
    return float(far.mean()) <= settings.flat_max_share


def is_flat(f: Features, settings: VerifySettings = DEFAULT) -> bool:
    """The whole image is one flat colour (a blank page, a black frame)."""
    return _flat_pixels(f.grey, settings)


def _rgb_words(f: Features) -> str:
    return "RGB " + "/".join(f"{v:.0f}" for v in f.mean_rgb)


def flat_verdict(a: Features, b: Features, settings: VerifySettings = DEFAULT) -> Verdict | None:
    """The verdict of a pair where either image is flat; None when neither is. A flat image
    is a copy only of a flat image of the same colour: anything with content is another
    picture, however little of it there is."""
    fa, fb = is_flat(a, settings), is_flat(b, settings)
    if not (fa or fb):
        return None
    if fa and fb:
        diff = max(abs(x - y) for x, y in zip(a.mean_rgb, b.mean_rgb, strict=True))
        nums = {"flat_colour_diff": diff}
        if diff <= settings.flat_colour_tol:
            return Verdict("copy", f"blank images of the same colour ({_rgb_words(a)})", nums)
        return Verdict("other_shot", f"blank images of different colours ({_rgb_words(a)} and "
                       f"{_rgb_words(b)})", nums)
    flat, full = ("A", "B") if fa else ("B", "A")
    return Verdict("other_shot", f"{flat} is blank ({_rgb_words(a if fa else b)}), "
                   f"{full} has content", {})


# ---------------------------------------------------------------- compare


def compare(a: Features, b: Features, settings: VerifySettings = DEFAULT) -> Verdict:
    """Verdict for a candidate pair (deterministic)."""
    v = _compare(a, b, settings)
    return Verdict(v.match, v.evidence, {k: float(x) for k, x in v.numbers.items()})


def _compare(a: Features, b: Features, settings: VerifySettings) -> Verdict:
    if a.digest is not None and a.digest == b.digest:
        return Verdict("exact", "same bytes", {})
    if a.shape == b.shape and a.pixel_hash == b.pixel_hash:
        return Verdict("exact", "same decoded pixels", {})
    flat = flat_verdict(a, b, settings)
    if flat is not None:
        return flat
    cands: list[tuple[str, np.ndarray, float]] = []
    blurs: dict[tuple[int, float], np.ndarray] = {}
    ncc = [float((a.sketch * _dihedral(b.sketch, k)).sum()) for k in range(8)]
    order = sorted(range(8), key=lambda k: -ncc[k])
    best_k = order[0]
    aw, ah = a.box[2] - a.box[0], a.box[3] - a.box[1]
    bw, bh = b.box[2] - b.box[0], b.box[3] - b.box[1]
    for k in order[:2]:
        if ncc[k] < settings.sketch_ncc:
            break
        ra = aw / ah
        rb = (bh / bw) if k % 2 else (bw / bh)
        if abs(np.log(ra / rb)) < max(0.04, np.log(settings.max_squash)):
            cands.append(("sketch", _dihedral_matrix(k, a.box, b.box), ncc[k]))
    nums0: dict[str, float] = {"sketch_ncc": ncc[best_k]}
    checks: list[tuple[_Check, np.ndarray, str]] = []
    for src, mc, _ in cands:
        chk = _check(a, b, mc, settings, blurs)
        checks.append((chk, mc, src))
        if chk.copy:
            break
    refined: list[np.ndarray] = []  # maps already refined by ECC
    skip_sift = False
    if checks and not any(c.copy for c, _, _ in checks):
        # cheapest next step: refine the best sketch map densely (ECC on 128 px thumbnails,
        # about a millisecond). A copy turned or cropped slightly aligns here without SIFT;
        # when ECC keeps the map where the sketches put it, the alignment is confirmed and
        # the disagreement is in the pictures, so keypoints would find the same map
        chk0, m0, _ = max(checks, key=lambda t: t[0].score)
        me = _refine_ecc(a, b, m0)
        refined.append(m0)
        if me is not None:
            shift = _map_shift(m0, me, b.box)
            nums0["ecc_shift_px"] = shift
            if shift > settings.ecc_confirm_px:
                chk = _check(a, b, me, settings, blurs)
                checks.append((chk, me, "ecc"))
            skip_sift = shift <= settings.ecc_confirm_px \
                and chk0.numbers.get("overlap", 0.0) >= settings.min_overlap
    elif not checks and ncc[best_k] >= settings.ecc_start_ncc:
        # the sketches agree too little to verify their box-to-box map as it is (a turn filled
        # the corners, a crop moved the content): ECC refines it; kept only when it passes
        me = _refine_ecc(a, b, _dihedral_matrix(best_k, a.box, b.box))
        if me is not None:
            chk = _check(a, b, me, settings, blurs)
            checks.append((chk, me, "ecc"))
            if not chk.copy:
                checks.pop()  # SIFT decides; this map stays a candidate only when it passed
    if not skip_sift and not any(c.copy for c, _, _ in checks):
        kp_a, d_a = a.keypoints(settings)
        m, n_in = _match(kp_a, d_a, *b.keypoints(settings), settings)
        nums0["inliers"] = float(n_in)
        tried_flip = False
        if m is None or best_k >= 4:
            mf, nf = _match(kp_a, d_a, *b.keypoints(settings, mirrored=True), settings)
            tried_flip = True
            if mf is not None and (m is None or nf > n_in):
                m = (np.vstack([mf, [0, 0, 1]]) @ _flip_matrix(b.grey.shape[1]))[:2]
                n_in = nf
                nums0["inliers"] = float(nf)
        nums0["tried_mirror"] = float(tried_flip)
        if m is not None:
            chk = _check(a, b, m, settings, blurs)
            checks.append((chk, m, "sift"))
        elif ncc[best_k] >= settings.sketch_ncc:
            score, mt = _template(a, b, best_k)
            nums0["template_ncc"] = score
            if score >= settings.sketch_ncc:
                checks.append((_check(a, b, mt, settings, blurs), mt, "template"))
        if m is None and checks and not any(c.copy for c, _, _ in checks):
            # no keypoints to align by (smooth pictures): the box-to-box maps cannot rotate,
            # so a copy turned by a few degrees is refined from the best of them
            _, m0, _ = max(checks, key=lambda t: t[0].score)
            me = None if any(m0 is r for r in refined) else _refine_ecc(a, b, m0)
            if me is not None:
                checks.append((_check(a, b, me, settings, blurs), me, "ecc"))
    if not checks:
        return Verdict("other_shot", "no alignment", nums0)
    if settings.local_tiles and not any(c.copy for c, _, _ in checks):
        # no map passes with one tone curve for the whole picture: the best aligned ones
        # (by their global check; a keypoint map a fraction of a pixel off can score above
        # the exact box map) are tried with curves per tile (a vignette, CLAHE, detail
        # enhancement), under every limit of the global check; one stands only when it
        # passes. Tried last, so local curves never stand in for a better map (a turn)
        for chk0, m0, src0 in sorted(checks, key=lambda t: -t[0].score)[:settings.local_maps]:
            if chk0.numbers.get("hue_change_deg", -1.0) > settings.max_hue_deg:
                continue
            chk = _check(a, b, m0, settings, blurs, local=True)
            if chk.copy:
                checks.append((chk, m0, src0))
                break
    chk, m, src = max(checks, key=lambda t: (t[0].copy, t[0].score))
    nums = {**nums0, **chk.numbers, "aligned_by_sketch": float(src == "sketch")}
    if chk.copy:
        chk.numbers.update(nums)
        ev = _copy_evidence(a, b, m, chk)
        return Verdict("copy", ev, {**chk.numbers})
    if chk.numbers.get("overlap", 1.0) < settings.min_overlap and src == "sift":
        return Verdict("other_shot", f"no alignment ({', '.join(chk.words)})", nums)
    why = [f"other shot: {chk.differing:.0%} of the overlap differs"] + chk.words
    return Verdict("other_shot", ", ".join(why), nums)
