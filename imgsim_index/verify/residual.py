"""Residuals on a block grid: one image predicted from the other (aligned) through monotone
tone curves, and the blocks where the prediction fails; which of those are a text overlay
or caption text. check.py judges a map from them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache, partial
from typing import Literal

import cv2
import numpy as np

from imgsim_index.verify.settings import (
    BAND_MIN_ASPECT,
    BAND_MIN_ROWS,
    BLOB_COUNT_K,
    BLOB_MAX_COUNT,
    BLOB_MEAN_K,
    BLOB_MIN_SHARE,
    BLOB_OPEN_DIV,
    BLOB_SAME_NCC,
    CLIP_HIGH,
    CLIP_LOW,
    CLIP_SPREAD_K,
    FIELD_MIN_GAIN,
    FIELD_ROUNDS,
    LETTER_CONTRAST,
    LETTER_GROW_DIV,
    LETTER_RANGE,
    LETTER_ROWS,
    OVERLAY_NEWS_SHARE,
    REFIT_FLOOR_K,
    REFIT_MEDIAN_K,
    REFIT_SAMPLE,
    STROKE_BLACK,
    STROKE_CONTRAST,
    STROKE_WHITE,
    TEXT_LINE_ASPECT,
    MatchSettings,
)
from imgsim_index.verify.tone import (
    GainField,
    apply_curve,
    class_curves,
    gain_fit,
    local_correction,
)

# tone that varies over the picture, on top of the global curves: none, monotone curves
# per tile (MatchSettings.local_tiles), a smooth gain field (MatchSettings.local_field)
Local = Literal["", "tiles", "field"]


def block_sums(x: np.ndarray, bs: int, hb: int, wb: int) -> np.ndarray:
    """Sums over the (hb, wb) grid of bs x bs blocks of a float32 image (area resampling:
    one pass in OpenCV instead of a strided NumPy reduction)."""
    crop = np.ascontiguousarray(x[: hb * bs, : wb * bs])
    return cv2.resize(crop, (wb, hb), interpolation=cv2.INTER_AREA).astype(np.float64) * (bs * bs)


def block_std(g: np.ndarray, in_overlap: np.ndarray, n: np.ndarray, bs: int) -> np.ndarray:
    """Grey std per block over the pixels where in_overlap (float32 0/1) is 1; n: their counts."""
    hb, wb = n.shape
    x = g * in_overlap
    nn = np.maximum(n, 1.0)
    mean = block_sums(x, bs, hb, wb) / nn
    var = block_sums(x * g, bs, hb, wb) / nn - mean * mean
    return np.sqrt(np.maximum(var, 0.0))


def components(mask: np.ndarray) -> list[tuple[int, int, int, int, int]]:
    """(x, y, w, h, area) of 8-connected components of a boolean block grid."""
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    return [tuple(int(v) for v in stats[i]) for i in range(1, n)]  # type: ignore[misc]


def rows_near(blocks: np.ndarray) -> np.ndarray:
    """The block rows of `blocks`, and the blocks beside them (a line of text)."""
    near = cv2.dilate(blocks.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    near |= near.any(axis=1, keepdims=True)
    return near


def row_pixels(rows: np.ndarray, bs: int, shape: tuple[int, ...]) -> np.ndarray:
    """bool per px of an image of `shape`: the rows of blocks of bs px marked in `rows`
    (bool per block row)."""
    out = np.zeros(shape[:2], bool)
    n = min(rows.size * bs, out.shape[0])
    out[:n] = np.repeat(rows, bs)[:n, None]
    return out


def caption_letters(ga: np.ndarray, gb: np.ndarray, caption: np.ndarray, bs: int) -> np.ndarray:
    """bool per px: a caption's letters near the rows of its blocks (LETTER_ROWS block rows
    on either side), grown by bs // LETTER_GROW_DIV px; none without a caption. The
    letters are those of the image with more of them: its pixels that differ from the
    other image's by LETTER_CONTRAST and lie within the same disc of pixels LETTER_RANGE
    levels apart in it (a letter's fill beside its outline or the picture: thin,
    contrasted strokes). A ball under the text is in the image without it, and the middle
    of a ball is far from its edge. Left out of the grey blobs, what shows between the
    letters is judged like the rest of the picture (a ball under a meme's text moved)."""
    if not caption.any():
        return np.zeros(ga.shape, bool)
    band = np.convolve(caption.any(axis=1), np.ones(2 * LETTER_ROWS + 1), "same") > 0
    rows = row_pixels(band, bs, ga.shape)
    k = 2 * max(1, bs // LETTER_GROW_DIV) + 1
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    differs = rows & (np.abs(ga - gb) >= LETTER_CONTRAST)
    best = np.zeros(ga.shape, bool)
    for g in (ga, gb):
        letters = differs & (cv2.morphologyEx(g, cv2.MORPH_GRADIENT, disc) >= LETTER_RANGE)
        if letters.sum() > best.sum():
            best = letters
    return (cv2.dilate(best.astype(np.uint8), disc) > 0) & rows


def text_line_rows(overlay: np.ndarray) -> np.ndarray:
    """bool per block: the rows near (rows_near) an overlay's lines of text, its components
    TEXT_LINE_ASPECT times wider than high (an object's two places are not that wide)."""
    lines = np.zeros_like(overlay)
    for x, y, w, h, _ in components(overlay):
        if w >= TEXT_LINE_ASPECT * h:
            lines[y:y + h, x:x + w] |= overlay[y:y + h, x:x + w]
    return rows_near(lines)


@dataclass
class Residual:
    diff: np.ndarray  # blocks where the prediction fails
    strong: np.ndarray  # ...by far (settings.strong_ratio, strong_floor): new content
    median: float  # median block residual (grey levels)
    tone_shift: float  # mean (curve - identity) over the predicting image's pixels
    tone_dev: float  # mean |curve - identity|
    gain: float  # the pure gain (exposure change, clipped at white) closest to the curves
    gain_dev: float  # ...and the curves' mean |curve - that gain|
    local_dev: float  # mean |local curve - identity| of the tiles' curves (0: global only)
    mapped: np.ndarray  # the source through the global curves (before any local ones)
    # the blocks touched by a solid blob of pixels differing by far (_blobs), computed on
    # first call and kept: only a map that passes every other limit asks
    blobs: Callable[[], np.ndarray] = field(default=lambda: np.zeros((0, 0), bool),
                                            repr=False)


def _clip_tolerance(source0: np.ndarray, idx: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Per pixel, the residual not counted: where the source is clipped (0-3 or 252-255)
    an edit may have merged many levels of the target into one, so the residual there
    counts only beyond twice the spread of the target over that level (a figure in a night
    scene stands far outside the spread of the black it covers; the highlights a
    brightening clipped stay within theirs). ys: the target at the fitted pixels idx."""
    lv = np.clip(source0, 0, 255).astype(np.uint8)
    lv_idx = lv.ravel().take(idx)
    cnt = np.bincount(lv_idx, minlength=256)
    mean = np.bincount(lv_idx, weights=ys, minlength=256) / np.maximum(cnt, 1)
    var = np.bincount(lv_idx, weights=ys * ys, minlength=256) / np.maximum(cnt, 1) - mean ** 2
    tol = np.zeros(256, np.float32)
    clipped = np.r_[0:CLIP_LOW + 1, CLIP_HIGH:256]
    tol[clipped] = CLIP_SPREAD_K * np.sqrt(np.maximum(var[clipped], 0.0))
    return tol[lv]


def _curves(xs: np.ndarray, cs: np.ndarray, ys: np.ndarray,
            settings: MatchSettings) -> np.ndarray:
    """The class curves mapping levels xs (of classes cs) onto ys, refitted without the
    pixels they predict worst: new content (text, a figure) whose grey levels also occur
    in the picture would otherwise pull a curve there (a white caption over red bends
    white towards red, and a white highlight elsewhere then differs)."""
    curves = class_curves(xs, cs, ys, settings.min_class_share)
    err = np.abs(ys - curves[cs, xs])
    inl = err <= max(REFIT_FLOOR_K * settings.diff_floor,
                     REFIT_MEDIAN_K * float(np.median(err[::REFIT_SAMPLE])))
    if not inl.all():
        curves = class_curves(xs[inl], cs[inl], ys[inl], settings.min_class_share)
    return curves


def _field(target: np.ndarray, source: np.ndarray, cls: np.ndarray,
           fitted: tuple[np.ndarray, np.ndarray, np.ndarray], mapped: np.ndarray,
           settings: MatchSettings) -> tuple[np.ndarray, float]:
    """(the prediction through class curves times a smooth gain field, the field's mean
    |gain - 1|): field and curves fitted in turn (FIELD_ROUNDS times), so that the global
    curves no longer carry the field's average darkening. fitted: the mask of the fitted
    pixels, their flat indices and the target there; mapped: the source through the
    global curves."""
    fit, idx, ys = fitted
    xs = np.clip(source.ravel().take(idx), 0, 255).astype(np.intp)
    cs = cls.ravel().take(idx)
    gf = GainField(fit, settings.local_field)
    field, dev = gf.fit(mapped, target)
    for _ in range(FIELD_ROUNDS):
        g = np.maximum(field[fit], FIELD_MIN_GAIN)
        mapped = apply_curve(source, _curves(xs, cs, ys / g, settings), cls)
        field, dev = gf.fit(mapped, target)
    return (mapped * field).astype(np.float32), dev


def noise_and_level(median: float, settings: MatchSettings) -> tuple[float, float]:
    """(the noise a block's mean residual is judged against, the strong level: new
    content) from the median block residual."""
    noise = max(settings.diff_floor, settings.diff_noise_k * median)
    return noise, max(settings.strong_ratio * noise, settings.strong_floor)


def residual(target: np.ndarray, source: np.ndarray, source0: np.ndarray,
              cls: np.ndarray, st: np.ndarray, idx: np.ndarray, in_overlap: np.ndarray,
              n: np.ndarray, used: np.ndarray, settings: MatchSettings,
              local: Local = "", fitted: Residual | None = None,
              left_out: np.ndarray | None = None) -> Residual:
    """Predict `target` from `source` (aligned float32 grey images) through monotone tone
    curves, one per colour class of the source (`cls`, aligned with it), fitted on the
    overlap (flat pixel indices `idx`; in_overlap: the overlap as float32 0/1, n: its pixel count
    per block; st: the target's block grey std); blocks (of settings.block px) whose mean
    residual is out of line with the noise and the local contrast differ. Pixels that are
    clipped in the source (`source0`, unblurred, at 0-3 or 252-255) are not judged: the
    levels an edit clipped cannot be told apart there. fitted: the residual of the same
    inputs without local tone, whose global curves are taken as they are (the same
    numbers: the tone numbers are always the global curves'). left_out: bool, the pixels
    left out of the blobs (clipped)."""
    ys = target.ravel().take(idx)
    if fitted is None:
        fitted = _global_fit(source, cls, idx, ys, settings)
    mapped, local_dev = fitted.mapped, 0.0
    if local:  # tone that varies over the picture, on top of the global curves
        fit = np.zeros(target.shape, bool)
        fit.ravel()[idx] = True
        if local == "tiles":
            mapped, local_dev = local_correction(mapped, target, fit, settings.local_tiles)
        else:
            mapped, local_dev = _field(target, source, cls, (fit, idx, ys), mapped, settings)
    bs = settings.block
    hb, wb = used.shape
    res = np.abs(target - mapped)
    res -= _clip_tolerance(source0, idx, ys)
    np.maximum(res, 0.0, out=res)
    res *= in_overlap
    r = block_sums(res, bs, hb, wb)
    block_res = np.where(used, r / np.maximum(n, 1.0), 0.0)
    sm = block_std(mapped, in_overlap, n, bs)
    med = float(np.median(block_res[used]))
    # block contrast of either image: a misregistered or blurred edge leaves a residual well
    # below the local contrast, new content (a moved subject) one of the order of it
    noise, level = noise_and_level(med, settings)
    thr = np.maximum(noise, settings.diff_contrast * np.maximum(st, sm))
    diff = used & (block_res > thr)
    strong = diff & (block_res > level)
    blobs = cache(partial(_blobs, res, level, left_out, in_overlap, bs, used, (target, source)))
    return Residual(diff, strong, med, fitted.tone_shift, fitted.tone_dev, fitted.gain,
                    fitted.gain_dev, local_dev, fitted.mapped, blobs)


def _blobs(res: np.ndarray, level: float, left_out: np.ndarray | None,
           in_overlap: np.ndarray, bs: int, used: np.ndarray,
           pair: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Blocks touched by a blob of pixels whose residual is above `level`, still there after
    an opening by a disc of about bs / BLOB_OPEN_DIV px (an edge a little off, a blur
    difference, a stroke of text are thinner), covering BLOB_MIN_SHARE of the overlap and
    BLOB_MEAN_K times the level on average: a small object that moved, appeared or
    vanished. Pixels left_out (clipped) are not judged."""
    hb, wb = used.shape
    keep = solid_blobs(res, level, left_out, bs // BLOB_OPEN_DIV,
                       BLOB_MIN_SHARE * float(in_overlap.sum()), BLOB_MEAN_K, pair)
    if keep is None:
        return np.zeros(used.shape, bool)
    return used & (block_sums(keep, bs, hb, wb) > 0)


def solid_blobs(res: np.ndarray, level: float, left_out: np.ndarray | None, open_px: int,
                min_px: float, mean_k: float,
                pair: tuple[np.ndarray, np.ndarray] | None = None,
                skip: np.ndarray | None = None) -> np.ndarray | None:
    """float32 0/1 mask of the blobs of pixels whose residual `res` is above `level` (but
    where left_out), still there after an opening by a disc of about open_px, of min_px
    pixels at least and a mean residual of mean_k x level at least; None when there is
    none, or more than BLOB_MAX_COUNT of BLOB_COUNT_K x min_px (many solid blobs are text
    the overlay and caption rules did not see, or an edit; new content that large is
    judged by its share). pair:
    the two aligned images the residual is of; a blob where they correlate by BLOB_SAME_NCC
    or more shows the same structure in another tone (a tone curve that misses a few
    colours), not new content. skip: bool per px; a blob wholly there is neither kept nor
    counted (a caption's letters), one reaching out of it is judged whole."""
    hot = res > level
    if left_out is not None:
        hot &= ~left_out
    if not hot.any():
        return None
    k = max(1, open_px) | 1
    hot8: np.ndarray = hot.astype(np.uint8)
    if k > 1:
        hot8 = cv2.morphologyEx(hot8, cv2.MORPH_OPEN,
                                cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    # labelled within the box of what is left (a few blobs in a large picture)
    x, y, w, h = cv2.boundingRect(hot8)
    if w == 0 or h == 0:
        return None
    n, lab, stats, _ = cv2.connectedComponentsWithStats(hot8[y:y + h, x:x + w],
                                                        connectivity=8)
    stats[:, 0] += x
    stats[:, 1] += y
    area = stats[:, cv2.CC_STAT_AREA]
    big = area >= min_px
    big[0] = False
    if skip is not None:
        inside = np.bincount(lab.ravel(), weights=skip[y:y + h, x:x + w].ravel(), minlength=n)
        big &= inside < area
    if big.any():  # ...and far above the level on average (a local tone edit is not)
        mean = np.bincount(lab.ravel(), weights=res[y:y + h, x:x + w].ravel(),
                           minlength=n) / np.maximum(area, 1)
        big &= mean >= mean_k * level
    # only blobs of BLOB_COUNT_K x min_px count towards BLOB_MAX_COUNT: a speck just over
    # the minimum beside an object that moved is no third letter of a word
    counted = area >= BLOB_COUNT_K * min_px
    if pair is not None and big.any() and (big & counted).sum() <= BLOB_MAX_COUNT:
        for i in np.flatnonzero(big):
            big[i] = not _same_structure(pair, stats[i], k)
    if not big.any() or (big & counted).sum() > BLOB_MAX_COUNT:
        return None
    out = np.zeros(res.shape, np.float32)
    out[y:y + h, x:x + w] = big[lab]
    return out


def _same_structure(pair: tuple[np.ndarray, np.ndarray], box: np.ndarray, grow: int) -> bool:
    """The two images correlate by BLOB_SAME_NCC or more over the box (x, y, w, h, ...),
    grown by `grow` px (a flat patch in either correlates with nothing)."""
    x, y, w, h = (int(v) for v in box[:4])
    ys, xs = slice(max(0, y - grow), y + h + grow), slice(max(0, x - grow), x + w + grow)
    t = pair[0][ys, xs].astype(np.float64).ravel()
    s = pair[1][ys, xs].astype(np.float64).ravel()
    t -= t.mean()
    s -= s.mean()
    den = float(np.sqrt((t * t).sum() * (s * s).sum()))
    return den > 0 and float((t * s).sum()) / den >= BLOB_SAME_NCC


def _global_fit(source: np.ndarray, cls: np.ndarray, idx: np.ndarray, ys: np.ndarray,
                settings: MatchSettings) -> Residual:
    """The global tone curves of residual(): the source mapped through them and their
    numbers (the blocks are left empty)."""
    xs = np.clip(source.ravel().take(idx), 0, 255).astype(np.intp)
    cs = cls.ravel().take(idx)
    curves = _curves(xs, cs, ys, settings)
    mapped = apply_curve(source, curves, cls).astype(np.float32)
    at = curves[cs, xs]  # the curves at the fitted pixels
    dev = at - xs
    gain, gain_dev = gain_fit(xs, at)
    none = np.zeros((0, 0), bool)
    return Residual(none, none, 0.0, float(np.mean(dev)), float(np.mean(np.abs(dev))), gain,
                    gain_dev, 0.0, mapped)


def split_overlay(r: Residual, std_a: np.ndarray, std_b: np.ndarray,
                   settings: MatchSettings) -> tuple[np.ndarray, np.ndarray]:
    """(differing blocks that are not a text overlay, overlay blocks): an overlay is a thin
    horizontal band of differing blocks where one image is far more contrasted (std_a,
    std_b: block grey std of the two aligned images)."""
    hb = r.diff.shape[0]
    rest = r.diff.copy()
    band = np.zeros_like(r.diff)
    closed = cv2.dilate(r.diff.astype(np.uint8), np.ones((1, 3), np.uint8)) > 0
    for cx, cy, cw, ch, _ in components(closed):
        sub = r.diff[cy:cy + ch, cx:cx + cw]
        if not (ch <= max(BAND_MIN_ROWS, round(settings.band_rows * hb))
                and cw >= BAND_MIN_ASPECT * ch
                and cw >= settings.overlay_min_width * r.diff.shape[1]):
            continue
        ca = float(std_a[cy:cy + ch, cx:cx + cw][sub].mean())
        cb = float(std_b[cy:cy + ch, cx:cx + cw][sub].mean())
        if max(ca, cb) >= settings.overlay_contrast * max(min(ca, cb), 1.0):
            band[cy:cy + ch, cx:cx + cw] |= sub
            rest[cy:cy + ch, cx:cx + cw] &= ~sub
    return rest, band


def text_in(ga: np.ndarray, gb: np.ndarray, caption: np.ndarray, bs: int, n_used: float,
            contrast: float, swap: bool) -> float:
    """Which image carries a caption's letters (caption_blocks: white letters outlined in
    black), where its blocks are OVERLAY_NEWS_SHARE of the n_used blocks or more: the one
    with `contrast` times the other's stroke pixels there (near white over darker, near
    black over lighter, the fewer of the two), as verdict.lacks' bits (1: A, 2: B; ga:
    dst's grey, swap: src is A); else 0. What its letters cover of the other's picture,
    that image lacks. Only letters count: a band one image shows sharper (the other
    blurred there, a face blurred out) is no text of the sharper one."""
    if caption.sum() < OVERLAY_NEWS_SHARE * n_used:
        return 0.0
    hb, wb = caption.shape
    inside = np.zeros(ga.shape, bool)
    inside[: hb * bs, : wb * bs] = np.kron(caption, np.ones((bs, bs), bool))

    def strokes(g: np.ndarray, other: np.ndarray) -> int:
        white = int(((g >= STROKE_WHITE) & (g - other >= STROKE_CONTRAST) & inside).sum())
        black = int(((g <= STROKE_BLACK) & (other - g >= STROKE_CONTRAST) & inside).sum())
        return min(white, black)

    on_d, on_s = strokes(ga, gb), strokes(gb, ga)
    if on_d > 0 and on_d >= contrast * on_s:
        return 2.0 if swap else 1.0
    if on_s > 0 and on_s >= contrast * on_d:
        return 1.0 if swap else 2.0
    return 0.0


def caption_blocks(ga: np.ndarray, gb: np.ndarray, in_overlap: np.ndarray, n: np.ndarray,
                    used: np.ndarray, settings: MatchSettings) -> np.ndarray:
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
        white = (g >= STROKE_WHITE) & (g - other >= STROKE_CONTRAST)
        black = (g <= STROKE_BLACK) & (other - g >= STROKE_CONTRAST)
        w_share, b_share = (block_sums((m * in_overlap).astype(np.float32), bs, hb, wb) / nn
                            for m in (white, black))
        return np.minimum(w_share, b_share)

    text = used & (np.maximum(strokes(ga, gb), strokes(gb, ga)) >= settings.caption_stroke)
    grown = (cv2.dilate(text.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0) & used
    zone = settings.caption_zone * hb
    for cx, cy, cw, ch, _ in components(grown):
        if (ch <= max(BAND_MIN_ROWS, round(settings.caption_rows * hb))
                and cw >= BAND_MIN_ASPECT * ch
                and cw >= settings.caption_min_width * wb and (cy + ch <= zone
                                                                 or cy >= hb - zone)):
            out[cy:cy + ch, cx:cx + cw] |= grown[cy:cy + ch, cx:cx + cw]
    if (out & text).sum() > settings.max_caption * used.sum():
        out[:] = False
    return out

