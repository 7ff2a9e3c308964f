"""Colour of an aligned pair: the chroma of both on one grid (chroma_pair), the hue change
over the picture and per block (hue_change), and solid blobs of another colour
(colour_blobs): a subject recoloured, or a ball of the ground's grey in another colour.
check.py judges a map with them.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache, partial
from typing import NamedTuple

import cv2
import numpy as np

from imgsim_index.verify.features import Features
from imgsim_index.verify.geometry import centres
from imgsim_index.verify.residual import block_sums, row_pixels, solid_blobs
from imgsim_index.verify.settings import (
    BLOB_MIN_SHARE,
    BLOB_OPEN_DIV,
    CHROMA_BAND_SCALE,
    CLIP_COLOUR_CHROMA,
    CLIP_INSIDE_PX,
    COLOUR_LEVEL,
    COLOUR_MEAN_K,
    COLOUR_NOISE_K,
    HUE_BLOCK_COVER,
    HUE_MIN_PIXELS,
    HUE_MIN_SHARE,
    LAB_ZERO,
    LIGHT_CELLS_PER_SIGMA,
    LIGHT_CHROMA_POWER,
    LIGHT_MIN_CHANGE,
    LIGHT_SIGMA,
    NEUTRAL_CHROMA,
    REFIT_MEDIAN_K,
    MatchSettings,
)


class Clips(NamedTuple):
    """What colour_blobs takes of the pair's clipping (Features.clip, .bright)."""

    dst: np.ndarray  # dst's clip mask, at its grey size
    src: np.ndarray  # src's
    to_chroma: np.ndarray  # 2x3: src grey px -> dst's chroma grid
    dst_bright: np.ndarray  # dst's bright mask (a channel near clipping)
    src_bright: np.ndarray


class ChromaPair(NamedTuple):
    """The chroma (half the grey size) of an aligned pair on dst's grid."""

    dst: np.ndarray  # a* b* of dst, float32, 0 = neutral, at the resolution of the
    # smaller image (band_limited)
    src: np.ndarray  # src's, warped onto dst's grid
    valid: np.ndarray  # where src's chroma lands
    clips: Clips
    # per chroma px, the smooth light change (light_change): made on first call, as only
    # the colour blobs of a map that passes every other limit ask
    light: Callable[[], np.ndarray]


def chroma_pair(a: Features, b: Features, m: np.ndarray, swap: bool) -> ChromaPair:
    """The chroma of the pair under map m on dst's grid (ChromaPair)."""
    src, dst = (a, b) if swap else (b, a)
    m3 = np.vstack([m, [0, 0, 1]])
    if swap:
        m3 = np.linalg.inv(m3)
    to_chroma = _grey_to_chroma(dst) @ m3  # src grey px -> dst chroma px
    to_half = (to_chroma @ np.linalg.inv(_grey_to_chroma(src)))[:2]
    hd, wd = dst.chroma.shape[:2]
    warped = cv2.warpAffine(src.chroma, to_half, (wd, hd), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=(LAB_ZERO, LAB_ZERO))
    valid = cv2.warpAffine(np.ones(src.chroma.shape[:2], np.uint8), to_half, (wd, hd),
                           flags=cv2.INTER_NEAREST) > 0
    return ChromaPair(band_limited(dst.chroma, to_half).astype(np.float32) - LAB_ZERO,
                      warped.astype(np.float32) - LAB_ZERO, valid,
                      Clips(dst.clip, src.clip, to_chroma[:2], dst.bright, src.bright),
                      cache(partial(light_change, dst, src, to_chroma[:2], valid)))


def light_change(dst: Features, src: Features, to_chroma: np.ndarray, valid: np.ndarray
                 ) -> np.ndarray:
    """Per chroma px of dst's grid, how much a smooth gain (a vignette, uneven light)
    scales a* and b* from src to dst: both greys brought to the grid (src's through
    to_chroma, its grey px -> dst's chroma px) and smoothed over LIGHT_SIGMA of the width
    where src lands (on a grid LIGHT_CELLS_PER_SIGMA cells per sigma, then enlarged),
    their ratio to the power LIGHT_CHROMA_POWER (RGB times g scales a* b* by about
    g ** 0.73: the sRGB curve, then Lab's cube root); 1 where unknown. Smooth, it
    follows the light over the picture, not a small object's own."""
    hd, wd = valid.shape
    sigma = LIGHT_SIGMA * max(wd, hd)
    f = max(1.0, sigma / LIGHT_CELLS_PER_SIGMA)  # chroma px per cell
    size = (max(1, round(wd / f)), max(1, round(hd / f)))
    small_s = cv2.resize(src.grey, (max(1, round(src.grey.shape[1] / f)),
                                    max(1, round(src.grey.shape[0] / f))),
                         interpolation=cv2.INTER_AREA).astype(np.float32)
    # src's small px -> its grey px -> dst's chroma px -> a cell
    to_cells = (centres(size[0] / wd, size[1] / hd) @ np.vstack([to_chroma, [0, 0, 1]])
                @ np.linalg.inv(centres(small_s.shape[1] / src.grey.shape[1],
                                         small_s.shape[0] / src.grey.shape[0])))
    grey_d = cv2.resize(dst.grey, size, interpolation=cv2.INTER_AREA).astype(np.float32)
    grey_s = cv2.warpAffine(small_s, to_cells[:2], size, flags=cv2.INTER_LINEAR)
    inside = cv2.resize(valid.astype(np.float32), size, interpolation=cv2.INTER_AREA)
    weight = cv2.GaussianBlur(inside, (0, 0), LIGHT_CELLS_PER_SIGMA)
    smooth_d, smooth_s = (cv2.GaussianBlur(g * inside, (0, 0), LIGHT_CELLS_PER_SIGMA)
                          for g in (grey_d, grey_s))
    ratio = np.ones(weight.shape, np.float32)
    ok = weight > 1e-3
    ratio[ok] = ((smooth_d[ok] + 1.0) / (smooth_s[ok] + 1.0)) ** LIGHT_CHROMA_POWER
    return cv2.resize(ratio, (wd, hd), interpolation=cv2.INTER_LINEAR)


def _grey_to_chroma(f: Features) -> np.ndarray:
    """3x3 map from f's grey px to its chroma px, pixel centres: the chroma is the grey's
    picture reduced to about half (its own rounded size), so a mirror or turn lands on
    the same chroma pixels."""
    (hg, wg), (hc, wc) = f.grey.shape[:2], f.chroma.shape[:2]
    return centres(wc / wg, hc / hg)


def band_limited(chroma: np.ndarray, to_dst: np.ndarray) -> np.ndarray:
    """dst's chroma at the resolution of src's, where the map to_dst (src px -> dst px)
    enlarges src by CHROMA_BAND_SCALE or more: reduced by that factor (area average) and
    enlarged back (bilinear), as src's chroma was on its way to dst's grid; else as it is.
    The colours of a resized copy are blurred at a saturated detail (a small badge), which
    no other colour is."""
    f = float(np.sqrt(abs(np.linalg.det(to_dst[:, :2]))))
    if f < CHROMA_BAND_SCALE:
        return chroma
    h, w = chroma.shape[:2]
    small = cv2.resize(chroma, (max(1, round(w / f)), max(1, round(h / f))),
                       interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def hue_change(a: Features, b: Features, m: np.ndarray, swap: bool, block: int,
                grid: tuple[int, int], settings: MatchSettings
                ) -> tuple[float, np.ndarray, Callable[..., tuple[np.ndarray, np.ndarray]]]:
    """(mean absolute hue change in deg where both images are clearly coloured, -1 if
    unknown; blocks of the residual grid (hb, wb) of `block` grey px, mostly coloured in
    both, whose hue changed by more than settings.block_hue_deg: a subject recoloured, or
    another one there; what finds the blocks touched by a blob of another colour,
    colour_blobs)."""
    pair = chroma_pair(a, b, m, swap)
    ab_d, ab_s, valid = pair.dst, pair.src, pair.valid
    hd, wd = valid.shape
    c_d, c_s = np.hypot(ab_d[..., 0], ab_d[..., 1]), np.hypot(ab_s[..., 0], ab_s[..., 1])
    sel = valid & (c_d > NEUTRAL_CHROMA) & (c_s > NEUTRAL_CHROMA)
    hb, wb = grid
    blocks = np.zeros(grid, bool)
    cbs = max(1, block // 2)  # the chroma is at half the grey size
    blobs = partial(colour_blobs, pair, cbs, grid)
    if sel.sum() < HUE_MIN_PIXELS:
        return -1.0, blocks, blobs
    d = np.abs(np.remainder(np.arctan2(ab_d[..., 1], ab_d[..., 0])
                            - np.arctan2(ab_s[..., 1], ab_s[..., 0])
                            + np.pi, 2 * np.pi) - np.pi).astype(np.float32)
    w = np.where(sel, np.minimum(c_d, c_s), 0.0).astype(np.float32)
    if hb * cbs <= hd and wb * cbs <= wd:
        wsum = block_sums(w, cbs, hb, wb)
        cover = block_sums(sel.astype(np.float32), cbs, hb, wb) / (cbs * cbs)
        deg = np.degrees(block_sums(d * w, cbs, hb, wb) / np.maximum(wsum, 1e-6))
        blocks = (cover >= HUE_BLOCK_COVER) & (deg > settings.block_hue_deg)
    if sel.sum() < HUE_MIN_SHARE * valid.sum():
        return -1.0, blocks, blobs
    return float(np.degrees(np.average(d[sel], weights=w[sel]))), blocks, blobs


def _fit_mask(valid: np.ndarray, clips: Clips,
              ab: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(where the colour map is fitted, where its residual is judged). Fitted: src's chroma
    landed (valid) and neither image is clipped. Judged: those, and the pixels clipped in
    one image, clearly coloured there (chroma CLIP_COLOUR_CHROMA or more), where the
    other has no channel near clipping (Features.bright): a saturated ball (a channel at
    255) that moved is clipped where it is, and only there; a clipped colour resized or
    re-encoded stays near clipping, and a white caption or highlight is neutral."""
    hd, wd = valid.shape
    clip_d = cv2.resize(clips.dst, (wd, hd), interpolation=cv2.INTER_AREA) > 0
    clip_s = cv2.warpAffine(clips.src, clips.to_chroma, (wd, hd), flags=cv2.INTER_LINEAR) > 0
    fit = valid & ~(clip_d | clip_s)
    if not (clip_d | clip_s).any():
        return fit, fit
    bright_d = cv2.resize(clips.dst_bright, (wd, hd), interpolation=cv2.INTER_AREA) > 0
    bright_s = cv2.warpAffine(clips.src_bright, clips.to_chroma, (wd, hd),
                              flags=cv2.INTER_LINEAR) > 0
    ab_d, ab_s = ab
    k2 = CLIP_COLOUR_CHROMA ** 2
    coloured_d = (ab_d[..., 0] ** 2 + ab_d[..., 1] ** 2) >= k2
    coloured_s = (ab_s[..., 0] ** 2 + ab_s[..., 1] ** 2) >= k2
    one_sided = (clip_d & ~bright_s & coloured_d) | (clip_s & ~bright_d & coloured_s)
    # a clipped colour facing a light one that is not clipped: judged CLIP_INSIDE_PX in
    # from its edge (a copy's resampled clipped colour differs at the edge only; a
    # saturated ball on a light orange ground differs throughout)
    facing = valid & ((clip_d & ~clip_s & coloured_d) | (clip_s & ~clip_d & coloured_s))
    inside = cv2.erode(facing.astype(np.uint8), np.ones((2 * CLIP_INSIDE_PX + 1,) * 2, np.uint8),
                       borderType=cv2.BORDER_CONSTANT, borderValue=0) > 0  # the frame's edge too
    return fit, fit | (valid & (one_sided | inside))


def skipped_rows(rows: np.ndarray | None, cbs: int, shape: tuple[int, ...]
                 ) -> np.ndarray | None:
    """bool per chroma px: the block rows `rows` (bool per row of blocks of cbs chroma px,
    a caption's) at the chroma's size; None where there are none."""
    return None if rows is None or not rows.any() else row_pixels(rows, cbs, shape)


def _sources(pair: ChromaPair) -> list[np.ndarray]:
    """src's a* b* as they are, and (where the light changes by LIGHT_MIN_CHANGE or more
    somewhere) scaled by the light's change: a vignette darkens colours with the grey,
    an edit of lightness alone (CLAHE on L*) does not. The colour map is fitted to each
    and the closer kept: one choice, not a degree of freedom per pixel. A light changed
    alike everywhere (an exposure) is the map's own scale: the colours as they are."""
    light = pair.light()
    if float(light.max()) < (1.0 + LIGHT_MIN_CHANGE) * float(light.min()):
        return [pair.src]
    return [pair.src, pair.src * light[..., None]]


def _affine_fit(src: np.ndarray, dst: np.ndarray, sample: np.ndarray
                ) -> tuple[np.ndarray, float] | None:
    """(the 3x2 affine map of a* b* from src to dst, (a*, b*, 1) @ map, fitted on the
    flat indices `sample` and again without the worst; the median error there), or None
    where too few pixels fit."""
    x = np.ones((sample.size, 3))
    x[:, :2] = src.reshape(-1, 2)[sample]
    y = dst.reshape(-1, 2)[sample].astype(np.float64)
    inl = np.ones(sample.size, bool)
    for _ in range(2):
        xi = x[inl]
        coef = np.linalg.lstsq(xi.T @ xi, xi.T @ y[inl], rcond=None)[0]
        err = np.sqrt(((y - x @ coef) ** 2).sum(axis=1))
        median = float(np.median(err))
        inl = err <= max(REFIT_MEDIAN_K * median, COLOUR_LEVEL / 2)
        if inl.sum() < HUE_MIN_PIXELS:
            return None
    return coef, median


def _colour_residual(pair: ChromaPair, sample: np.ndarray
                     ) -> tuple[np.ndarray, float] | None:
    """(|dst's a* b* - their prediction from src's| per chroma px, its median over
    `sample`) for the closer of _sources' fits, or None where none fits."""
    best: tuple[np.ndarray, np.ndarray, float] | None = None
    for src in _sources(pair):
        got = _affine_fit(src, pair.dst, sample)
        if got is not None and (best is None or got[1] < best[2]):
            best = (src, *got)
    if best is None:
        return None
    src, coef, _ = best
    diff = pair.dst - cv2.transform(src, coef.T.astype(np.float32))
    res = cv2.magnitude(np.ascontiguousarray(diff[..., 0]), np.ascontiguousarray(diff[..., 1]))
    return res, float(np.median(res.ravel()[sample]))


def colour_blobs(pair: ChromaPair, cbs: int, grid: tuple[int, int],
                 skip_rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Blocks of the residual grid (blocks of cbs chroma px) touched by a solid blob of
    another colour: dst's a* b* predicted from src's (aligned; as they are or under the
    light's change, _sources) by one affine map fitted where both are valid and neither
    is clipped, and again without the worst pixels (the blob's own), the residual's
    blobs (residual.solid_blobs) above COLOUR_LEVEL and COLOUR_NOISE_K x the median
    residual, COLOUR_MEAN_K x that on average. Two masks: the blobs judged where neither
    image is clipped, and those judged where a clipped colour faces no clipping too
    (_fit_mask). A blob wholly in skip_rows (bool per block row: a caption's) is not
    counted: a caption's letters make many blobs of their own, which would hide an
    object beside them (solid_blobs finds none among too many); an object reaching out
    of them is judged whole."""
    hb, wb = grid
    fit, judged = _fit_mask(pair.valid, pair.clips, (pair.dst, pair.src))
    none = np.zeros(grid, bool)
    n_fit = int(fit.sum())
    if n_fit < HUE_MIN_PIXELS or hb * cbs > fit.shape[0] or wb * cbs > fit.shape[1]:
        return none, none
    got = _colour_residual(pair, np.flatnonzero(fit))
    if got is None:
        return none, none
    err2, median = got
    level = max(COLOUR_LEVEL, COLOUR_NOISE_K * median)
    found = []
    skip = skipped_rows(skip_rows, cbs, fit.shape)
    for where in (fit, judged) if (judged & ~fit).any() else (fit,):
        res = np.where(where, err2, 0.0).astype(np.float32)
        keep = solid_blobs(res, level, None, cbs // BLOB_OPEN_DIV, BLOB_MIN_SHARE * n_fit,
                           COLOUR_MEAN_K, skip=skip)
        found.append(none if keep is None else block_sums(keep, cbs, hb, wb) > 0)
    return found[0], found[-1]


def colour_probe(pair: ChromaPair, cbs: int, stride: int,
                 skip_rows: np.ndarray | None = None) -> bool:
    """colour_blobs' question in a few milliseconds, for check's look before a coarse
    pass: the affine map of a* b* fitted (and refitted without the worst) on every
    stride-th pixel where both are valid and neither is clipped, then the blobs of the
    residual where colour_blobs judges it (with the one-sided clipped colours, whatever
    the exposure: the probe only sends a map on), not counting blobs wholly in skip_rows
    (a caption's block rows, as colour_blobs); True when there is one."""
    fit, judged = _fit_mask(pair.valid, pair.clips, (pair.dst, pair.src))
    idx = np.flatnonzero(fit)
    sample = idx[::stride]
    if sample.size < HUE_MIN_PIXELS:
        return False
    got = _colour_residual(pair, sample)
    if got is None:
        return False
    res, median = got
    res *= judged
    level = max(COLOUR_LEVEL, COLOUR_NOISE_K * median)
    return solid_blobs(res, level, None, cbs // BLOB_OPEN_DIV, BLOB_MIN_SHARE * idx.size,
                       COLOUR_MEAN_K, skip=skipped_rows(skip_rows, cbs, res.shape)) is not None
