"""Tone models: how one image's grey levels map onto another's (matching.py predicts each
image of a pair from the other through them; what they cannot explain differs).

Global: monotone curves (isotonic fits of grey levels, one per colour class) over the
whole overlap.
"""

from __future__ import annotations

import numpy as np

N_HUES = 6  # hue sextants of the tone classes (plus neutral)


def isotonic(y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted non-decreasing least-squares fit (pool adjacent violators)."""
    vals: list[float] = []
    wts: list[float] = []
    cnt: list[int] = []
    for yi, wi in zip(y.tolist(), w.tolist(), strict=True):
        vals.append(yi)
        wts.append(wi)
        cnt.append(1)
        while len(vals) > 1 and vals[-2] > vals[-1]:
            wsum = wts[-2] + wts[-1]
            v = (vals[-2] * wts[-2] + vals[-1] * wts[-1]) / wsum if wsum > 0 else vals[-1]
            c = cnt[-2] + cnt[-1]
            del vals[-1], wts[-1], cnt[-1]
            vals[-1], wts[-1], cnt[-1] = v, wsum, c
    return np.repeat(np.array(vals), cnt)


def apply_curve(x: np.ndarray, curve: np.ndarray, cls: np.ndarray | None = None) -> np.ndarray:
    """np.interp(x, arange(256), curve) for a 256-entry curve, read from a 1/16-level table
    (off by at most 1/32 level times the curve's slope; np.interp's search per value cost
    more than the rest of a comparison). With `cls`, curve is (classes, 256) and each
    value takes the curve of its class."""
    curves = curve.reshape(-1, 256)
    grid = np.arange(256 * 16 + 1) / 16.0
    lut = np.concatenate([np.interp(grid, np.arange(256), c) for c in curves]).astype(
        np.float32)
    t = np.clip(x, 0.0, 255.0).astype(np.float32)
    t *= 16.0
    t += 0.5
    i = t.astype(np.intp)
    if cls is not None:
        i += cls.astype(np.intp) * (256 * 16 + 1)
    return lut.take(i)


def tone_curve(src: np.ndarray, dst: np.ndarray, bins: int = 64) -> np.ndarray:
    """256-entry monotone curve mapping src grey levels onto dst (fitted on masked pixels)."""
    if 256 % bins:
        raise ValueError("bins must divide 256")
    # counts per grey level, then summed per bin (a division of every pixel costs more)
    cnt = np.bincount(src, minlength=256).reshape(bins, -1).sum(axis=1).astype(np.float64)
    tot = np.bincount(src, weights=dst, minlength=256).reshape(bins, -1).sum(axis=1)
    return fit_bins(cnt, tot, bins)


def fit_bins(cnt: np.ndarray, tot: np.ndarray, bins: int) -> np.ndarray:
    mean = np.where(cnt > 0, tot / np.maximum(cnt, 1), 0.0)
    used = cnt > 0
    if not used.any():
        return np.arange(256, dtype=np.float64)
    fit = isotonic(mean[used], cnt[used])
    centres = (np.flatnonzero(used) + 0.5) * 256 / bins
    return np.interp(np.arange(256), centres, fit)


def class_curves(src: np.ndarray, cls: np.ndarray, dst: np.ndarray, min_share: float,
                  bins: int = 64) -> np.ndarray:
    """(N_HUES + 1, 256) monotone curves mapping src grey levels onto dst, one per colour
    class of the src pixels; a class with fewer than min_share of the pixels takes the
    curve of all of them."""
    k = N_HUES + 1
    key = cls.astype(np.intp) * 256 + src
    cnt = np.bincount(key, minlength=k * 256).reshape(k, bins, -1).sum(axis=2).astype(
        np.float64)
    tot = np.bincount(key, weights=dst, minlength=k * 256).reshape(k, bins, -1).sum(axis=2)
    overall = fit_bins(cnt.sum(axis=0), tot.sum(axis=0), bins)
    n = cnt.sum(axis=1)
    return np.stack([fit_bins(cnt[c], tot[c], bins) if n[c] >= min_share * len(src)
                     else overall for c in range(k)])
