"""Colour of an aligned pair: the chroma of both on one grid (chroma_pair), the hue change
over the picture and per block (hue_change), and solid blobs of another colour
(colour_blobs): a subject recoloured, or a ball of the ground's grey in another colour.
check.py judges a map with them.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import NamedTuple

import cv2
import numpy as np

from imgsim_index.verify.features import Features
from imgsim_index.verify.residual import block_sums, row_pixels, solid_blobs
from imgsim_index.verify.settings import (
    BLOB_MIN_SHARE,
    BLOB_OPEN_DIV,
    CHROMA_BAND_SCALE,
    CLIP_COLOUR_CHROMA,
    COLOUR_LEVEL,
    COLOUR_MEAN_K,
    COLOUR_NOISE_K,
    HUE_BLOCK_COVER,
    HUE_MIN_PIXELS,
    HUE_MIN_SHARE,
    LAB_ZERO,
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


def chroma_pair(a: Features, b: Features, m: np.ndarray, swap: bool
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, Clips]:
    """(a* b* of dst and of src warped onto it, 0 = neutral; where src's chroma lands;
    the clip masks and the map colour_blobs takes): the chroma (half the grey size) of
    the pair on dst's grid, at the resolution of the smaller (band_limited)."""
    src, dst = (a, b) if swap else (b, a)
    half = np.array([[0.5, 0, 0], [0, 0.5, 0], [0, 0, 1]])
    m3 = np.vstack([m, [0, 0, 1]])
    if swap:
        m3 = np.linalg.inv(m3)
    to_half = (half @ m3 @ np.linalg.inv(half))[:2]
    hd, wd = dst.chroma.shape[:2]
    warped = cv2.warpAffine(src.chroma, to_half, (wd, hd), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=(LAB_ZERO, LAB_ZERO))
    valid = cv2.warpAffine(np.ones(src.chroma.shape[:2], np.uint8), to_half, (wd, hd),
                           flags=cv2.INTER_NEAREST) > 0
    return (band_limited(dst.chroma, to_half).astype(np.float32) - LAB_ZERO,
            warped.astype(np.float32) - LAB_ZERO,
            valid, Clips(dst.clip, src.clip, (half @ m3)[:2], dst.bright, src.bright))


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
    ab_d, ab_s, valid, clips = chroma_pair(a, b, m, swap)
    hd, wd = valid.shape
    c_d, c_s = np.hypot(ab_d[..., 0], ab_d[..., 1]), np.hypot(ab_s[..., 0], ab_s[..., 1])
    sel = valid & (c_d > NEUTRAL_CHROMA) & (c_s > NEUTRAL_CHROMA)
    hb, wb = grid
    blocks = np.zeros(grid, bool)
    cbs = max(1, block // 2)  # the chroma is at half the grey size
    blobs = partial(colour_blobs, ab_d, ab_s, valid, clips, cbs, grid)
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
    return fit, fit | (valid & one_sided)


def skipped_rows(rows: np.ndarray | None, cbs: int, shape: tuple[int, ...]
                 ) -> np.ndarray | None:
    """bool per chroma px: the block rows `rows` (bool per row of blocks of cbs chroma px,
    a caption's) at the chroma's size; None where there are none."""
    return None if rows is None or not rows.any() else row_pixels(rows, cbs, shape)


def colour_blobs(ab_d: np.ndarray, ab_s: np.ndarray, valid: np.ndarray, clips: Clips,
                 cbs: int, grid: tuple[int, int], skip_rows: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Blocks of the residual grid (blocks of cbs chroma px) touched by a solid blob of
    another colour: ab_d (a*, b* of dst, 0 = neutral) predicted from ab_s (src's, aligned)
    by one affine map fitted where both are valid and neither is clipped, and again
    without the worst pixels (the blob's own), the residual's blobs (residual.solid_blobs)
    above COLOUR_LEVEL and COLOUR_NOISE_K x the median residual, COLOUR_MEAN_K x that on
    average. Two masks: the blobs judged where neither image is clipped, and those judged
    where a clipped colour faces no clipping too (_fit_mask). A blob wholly in skip_rows
    (bool per block row: a caption's) is not counted: a caption's letters make many blobs
    of their own, which would hide an object beside them (solid_blobs finds none among
    too many); an object reaching out of them is judged whole."""
    hb, wb = grid
    fit, judged = _fit_mask(valid, clips, (ab_d, ab_s))
    none = np.zeros(grid, bool)
    n_fit = int(fit.sum())
    if n_fit < HUE_MIN_PIXELS or hb * cbs > fit.shape[0] or wb * cbs > fit.shape[1]:
        return none, none
    x = np.concatenate([ab_s, np.ones(ab_s.shape[:2] + (1,), np.float32)], axis=2)
    x = x.reshape(-1, 3).astype(np.float64)
    y = ab_d.reshape(-1, 2).astype(np.float64)
    inl = fit.ravel()
    for _ in range(2):
        xi = x[inl]
        coef = np.linalg.lstsq(xi.T @ xi, xi.T @ y[inl], rcond=None)[0]
        err = np.linalg.norm(y - x @ coef, axis=1)
        inl = fit.ravel() & (err <= max(REFIT_MEDIAN_K * float(np.median(err[fit.ravel()])),
                                        COLOUR_LEVEL / 2))
        if inl.sum() < HUE_MIN_PIXELS:
            return none, none
    err2 = err.reshape(fit.shape)
    level = max(COLOUR_LEVEL, COLOUR_NOISE_K * float(np.median(err2[fit])))
    found = []
    skip = skipped_rows(skip_rows, cbs, fit.shape)
    for where in (fit, judged) if (judged & ~fit).any() else (fit,):
        res = np.where(where, err2, 0.0).astype(np.float32)
        keep = solid_blobs(res, level, None, cbs // BLOB_OPEN_DIV, BLOB_MIN_SHARE * n_fit,
                           COLOUR_MEAN_K, skip=skip)
        found.append(none if keep is None else block_sums(keep, cbs, hb, wb) > 0)
    return found[0], found[-1]


def colour_probe(ab_d: np.ndarray, ab_s: np.ndarray, valid: np.ndarray,
                 clips: Clips, cbs: int, stride: int,
                 skip_rows: np.ndarray | None = None) -> bool:
    """colour_blobs' question in a few milliseconds, for check's look before a coarse
    pass: the affine map of a* b* fitted (and refitted without the worst) on every
    stride-th pixel where both are valid and neither is clipped, then the blobs of the
    residual where colour_blobs judges it (with the one-sided clipped colours, whatever
    the exposure: the probe only sends a map on), not counting blobs wholly in skip_rows
    (a caption's block rows, as colour_blobs); True when there is one."""
    fit, judged = _fit_mask(valid, clips, (ab_d, ab_s))
    idx = np.flatnonzero(fit)
    sample = idx[::stride]
    if sample.size < HUE_MIN_PIXELS:
        return False
    x = np.ones((sample.size, 3))
    x[:, :2] = ab_s.reshape(-1, 2)[sample]
    y = ab_d.reshape(-1, 2)[sample].astype(np.float64)
    inl = np.ones(sample.size, bool)
    for _ in range(2):
        coef = np.linalg.lstsq(x[inl], y[inl], rcond=None)[0]  # (3, 2)
        err = np.sqrt(((y - x @ coef) ** 2).sum(axis=1))
        inl = err <= max(REFIT_MEDIAN_K * float(np.median(err)), COLOUR_LEVEL / 2)
        if inl.sum() < HUE_MIN_PIXELS:
            return False
    pred = cv2.transform(ab_s, coef.T.astype(np.float32))  # a*, b* of src through the map
    diff = ab_d - pred
    res = cv2.magnitude(np.ascontiguousarray(diff[..., 0]), np.ascontiguousarray(diff[..., 1]))
    res *= judged
    level = max(COLOUR_LEVEL, COLOUR_NOISE_K * float(np.median(res.ravel()[sample])))
    return solid_blobs(res, level, None, cbs // BLOB_OPEN_DIV, BLOB_MIN_SHARE * idx.size,
                       COLOUR_MEAN_K, skip=skipped_rows(skip_rows, cbs, res.shape)) is not None
