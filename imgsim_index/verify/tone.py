"""Tone models: how one image's grey levels map onto another's (matching.py predicts each
image of a pair from the other through them; what they cannot explain differs).

Global: monotone curves (isotonic fits of grey levels, one per colour class) over the
whole overlap; gain_fit says how close they are to a pure exposure change.
Local: local_correction, a monotone curve per node of a coarse grid, blended bilinearly
(a vignette, CLAHE, detail enhancement), tried only when the global curves fail.
"""

from __future__ import annotations

import numpy as np

from imgsim_index.verify.settings import (
    FIELD_OUTLIER,
    FIELD_RIDGE,
    FIELD_STRIDE,
    GAIN_MAX_LEVEL,
    GAIN_MIN_LEVEL,
    GAIN_MIN_PIXELS,
    LOCAL_MIN_WEIGHT,
    LOCAL_NODE_SHARE,
    LUT_STEPS,
)

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
    grid = np.arange(256 * LUT_STEPS + 1) / float(LUT_STEPS)
    lut = np.concatenate([np.interp(grid, np.arange(256), c) for c in curves]).astype(
        np.float32)
    t = np.clip(x, 0.0, 255.0).astype(np.float32)
    t *= float(LUT_STEPS)
    t += 0.5
    i = t.astype(np.intp)
    if cls is not None:
        i += cls.astype(np.intp) * (256 * LUT_STEPS + 1)
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


def isotonic_rows(y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted non-decreasing least-squares fits of the rows of y (n, m), weights w (n, m),
    all at once: fit_i = max over j <= i of min over k >= i of the weighted mean of y[j..k],
    the min-max form of what pool adjacent violators (isotonic) finds, in O(m^2) NumPy work
    per row instead of a Python loop per row. A value of weight 0 takes part in no mean;
    its own fit means nothing (inf where no weighted value follows it)."""
    n, m = y.shape
    cw = np.zeros((m + 1, n))
    np.cumsum(w.T, axis=0, out=cw[1:])
    cs = np.zeros((m + 1, n))
    np.cumsum((w * y).T, axis=0, out=cs[1:])
    weight = cw[1:, None, :] - cw[None, :-1, :]  # [k, j, row]: the weight of j..k
    means = cs[1:, None, :] - cs[None, :-1, :]
    np.divide(means, weight, out=means, where=weight > 0)
    means[weight <= 0] = np.inf  # no values in j..k (or k < j): no bound
    for k in range(m - 2, -1, -1):  # [i, j]: the least mean of j..k over k >= i
        np.minimum(means[k], means[k + 1], out=means[k])
    means[np.triu_indices(m, 1)] = -np.inf  # j > i: no bound
    return means.max(axis=1).T


def _extend_rows(fits: np.ndarray, used: np.ndarray, bins: int) -> np.ndarray:
    """(n, 256) curves through the fitted bin centres of each row (fits, used: (n, bins),
    the rows' fits at their used bins); beyond the levels a row fitted it goes on parallel
    to the identity (a level a tile lacks keeps its offset, not a constant). Rows with no
    used bin give nothing meaningful."""
    step = 256 / bins
    b = np.arange(bins)
    prev = np.maximum.accumulate(np.where(used, b, -1), axis=1)  # last used bin <= b
    nxt = np.minimum.accumulate(np.where(used, b, bins)[:, ::-1], axis=1)[:, ::-1]
    at_prev = np.take_along_axis(fits, np.clip(prev, 0, bins - 1), axis=1)
    at_next = np.take_along_axis(fits, np.clip(nxt, 0, bins - 1), axis=1)
    with np.errstate(invalid="ignore", over="ignore"):  # rows with no used bin: nan
        # every bin on the curve: between used bins on the line joining them, before the
        # first and after the last parallel to the identity
        full = at_prev + (at_next - at_prev) * (b - prev) / np.maximum(nxt - prev, 1)
        full = np.where(prev < 0, at_next + (b - nxt) * step, full)
        full = np.where(nxt >= bins, at_prev + (b - prev) * step, full)
        full = np.where(used, fits, full)
        x = np.arange(256, dtype=np.float64)
        first, last = 0.5 * step, (bins - 0.5) * step  # the outer bin centres
        t = (x - first) / step
        i = np.clip(t.astype(np.intp), 0, bins - 2)
        frac = t - i
        out = full[:, i] * (1.0 - frac) + full[:, i + 1] * frac
    below, above = x < first, x > last
    out[:, below] = full[:, :1] + (x[below] - first)
    out[:, above] = full[:, -1:] + (x[above] - last)
    return out


def _node_weights(xs: np.ndarray, node: np.ndarray, wt: np.ndarray, n_nodes: int,
                  bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bin key, weight, weight per node and bin) of the (4, n) pairs of pixel and node
    around it (node, wt: the nodes of each pixel's cell and their bilinear weights; xs: the
    pixels' int levels): what _node_curves fits on, the same for every goal."""
    key = (node * bins + (xs * bins // 256)[None, :]).ravel()
    w = wt.ravel().astype(np.float64)
    cnt = np.bincount(key, weights=w, minlength=n_nodes * bins).reshape(n_nodes, bins)
    return key, w, cnt


def _node_curves(weights: tuple[np.ndarray, np.ndarray, np.ndarray], goal: np.ndarray,
                 bins: int, min_weight: float) -> np.ndarray:
    """(n_nodes, 256) monotone curves of the pixels' levels onto goal ((4, n): the level
    each pixel should map to through each node of its cell), one per grid node, each
    fitted on the pixels around it weighted by their bilinear weight (weights:
    _node_weights); a node with less than min_weight keeps the identity."""
    key, w, cnt = weights
    n_nodes = cnt.shape[0]
    tot = np.bincount(key, weights=w * goal.ravel(), minlength=cnt.size).reshape(n_nodes, bins)
    used = cnt > 1e-6
    weight = np.where(used, cnt, 0.0)
    fits = isotonic_rows(np.divide(tot, cnt, out=np.zeros_like(tot), where=used), weight)
    fitted = cnt.sum(axis=1) >= min_weight
    return np.where(fitted[:, None], _extend_rows(fits, used, bins),
                    np.arange(256, dtype=np.float64)[None, :])


def _cell(coord: np.ndarray, lo: int, hi: int, cells: int) -> tuple[np.ndarray, np.ndarray]:
    """(cell index, position in the cell 0..1) of pixel coordinates along one axis, for
    cells + 1 nodes at the centres of as many tiles from lo to hi (as CLAHE places its
    tiles' curves); beyond the outer centres a pixel takes the outer node alone."""
    t = (coord.astype(np.float64) - lo + 0.5) * (cells + 1) / max(hi - lo, 1) - 0.5
    t = np.clip(t, 0.0, cells)
    i = np.minimum(t.astype(np.intp), cells - 1)
    return i, t - i


def _spans(n: int, lo: int, hi: int, cells: int) -> list[tuple[np.ndarray, int, int]]:
    """Per node along one axis: (its bilinear weights over [start, stop), start, stop)."""
    g, gf = _cell(np.arange(n), lo, hi, cells)
    out = []
    for k in range(cells + 1):
        wk = np.where(g == k, 1 - gf, 0.0) + np.where(g == k - 1, gf, 0.0)
        idx = np.flatnonzero(wk > 0)
        a, b = (int(idx[0]), int(idx[-1]) + 1) if idx.size else (0, 0)
        out.append((wk[a:b].astype(np.float32), a, b))
    return out


def local_correction(pred: np.ndarray, target: np.ndarray, valid: np.ndarray, tiles: int,
                     bins: int = 32, outlier: float = 30.0,
                     steps: int = 3, stride: int = 3) -> tuple[np.ndarray, float]:
    """(pred corrected by local tone curves, their mean |curve - identity| per pixel).

    The overlap's bounding box is cut into tiles x tiles tiles (tiles >= 2), a node at the
    centre of each, as CLAHE cuts a picture; each node has a monotone curve of `bins` bins
    mapping the prediction (float32, aligned with `target`) onto the target, fitted on the
    pixels of the four cells between node centres around it weighted bilinearly, and
    refitted without the pixels predicted worse than `outlier` grey levels (new content
    there). Each pixel takes the curves of its cell's four nodes, weighted bilinearly (as
    CLAHE blends its tiles), so the correction varies smoothly over the picture (local
    contrast equalisation, detail enhancement), not the grey levels of one object."""
    ys_, xs_ = np.nonzero(valid)
    if ys_.size == 0:
        return pred, 0.0
    h, w = target.shape
    y0, y1, x0, x1 = int(ys_.min()), int(ys_.max()) + 1, int(xs_.min()), int(xs_.max()) + 1
    ys_, xs_ = ys_[::stride], xs_[::stride]  # the curves are fitted on every stride-th pixel
    side, cells = tiles, tiles - 1
    iy, fy = _cell(ys_, y0, y1, cells)
    ix, fx = _cell(xs_, x0, x1, cells)
    node = np.stack([iy * side + ix, iy * side + ix + 1, (iy + 1) * side + ix,
                     (iy + 1) * side + ix + 1])
    wt = np.stack([(1 - fy) * (1 - fx), (1 - fy) * fx, fy * (1 - fx), fy * fx])
    xs = np.clip(pred[ys_, xs_], 0, 255).astype(np.intp)
    ys = target[ys_, xs_].astype(np.float64)
    min_weight = max(LOCAL_MIN_WEIGHT, ys_.size / (side * side * LOCAL_NODE_SHARE))
    sel = None  # the pixels fitted (None: all)
    weights = _node_weights(xs, node, wt, side * side, bins)
    flat = node * 256 + xs[None, :]  # each pixel's level on each of its nodes' curves
    at = xs.astype(np.float64)
    vals = np.broadcast_to(at, node.shape)  # through the identity curves, at first
    curves = np.empty((side * side, 256))
    for step in range(2 * steps):
        # each node's curve moves by the residual of the blended prediction around it, so
        # the blend, not each node alone, fits the target (backfitting steps)
        goal = vals + (ys - at)[None, :]
        curves = _node_curves(weights, goal if sel is None else goal[:, sel], bins,
                              min_weight)
        vals = curves.take(flat)
        at = (vals * wt).sum(axis=0)
        if step == steps - 1:  # new content (text, a figure) is left out of the next fits
            inl = np.abs(ys - at) <= outlier
            if not inl.all():
                sel = np.flatnonzero(inl)
                weights = _node_weights(xs[sel], node[:, sel], wt[:, sel], side * side, bins)
    return _blend(pred, curves, _spans(h, y0, y1, cells), _spans(w, x0, x1, cells)), float(
        np.mean(np.abs(at - xs)))


def _blend(pred: np.ndarray, curves: np.ndarray, spans_y: list[tuple[np.ndarray, int, int]],
           spans_x: list[tuple[np.ndarray, int, int]]) -> np.ndarray:
    """pred through the nodes' curves, each pixel through those of its cell's four nodes
    weighted bilinearly (spans: _spans along each axis)."""
    side, w = len(spans_x), pred.shape[1]
    q = np.clip(pred, 0.0, 255.0).astype(np.float32)
    lo = np.minimum(q.astype(np.intp), 254)
    frac = q - lo
    out = np.zeros_like(q)
    for i, (wy, r0, r1) in enumerate(spans_y):
        acc = np.zeros((r1 - r0, w), np.float32)
        for j, (wx, c0, c1) in enumerate(spans_x):
            c = curves[i * side + j].astype(np.float32)
            li, fr = lo[r0:r1, c0:c1], frac[r0:r1, c0:c1]
            v = c.take(li)
            v += fr * (c.take(li + 1) - v)
            v *= wx[None, :]
            acc[:, c0:c1] += v
        acc *= wy[:, None]
        out[r0:r1] += acc
    return out


def gain_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(gain g, mean |y - min(g x, 255)|): how close the tone curve's values y at the
    pixels' levels x are to a pure exposure change (a gain, clipped at white)."""
    sel = (y < GAIN_MAX_LEVEL) & (x > GAIN_MIN_LEVEL)
    if sel.sum() < GAIN_MIN_PIXELS:
        return 1.0, float("inf")
    xf, yf = x[sel].astype(np.float64), y[sel].astype(np.float64)
    g = float((xf * yf).sum() / max(float((xf * xf).sum()), 1e-9))
    return g, float(np.mean(np.abs(y - np.minimum(g * x.astype(np.float64), 255.0))))


def _powers(coord: np.ndarray, lo: int, hi: int, degree: int) -> np.ndarray:
    """(n, degree + 1) powers 0..degree of coordinates scaled to [-1, 1] over [lo, hi)."""
    t = (coord.astype(np.float64) - (lo + hi - 1) / 2) / max((hi - 1 - lo) / 2, 1.0)
    out = np.ones((t.size, degree + 1))
    out[:, 1:] = t[:, None]
    return np.cumprod(out, axis=1)


class GainField:
    """A smooth gain field between two aligned images: a polynomial of the given degree
    in the pixel coordinates (scaled over the bounding box of `valid`), fitted on every
    stride-th pixel of `valid` by least squares so that pred x field matches the target,
    then refitted without the pixels predicted worse than `outlier` grey levels (new
    content). A vignette, a graduated filter, uneven light added to a copy are such
    fields; a polynomial of low degree cannot follow one object's grey levels, so a
    subject that moved or appeared stays a residual."""

    def __init__(self, valid: np.ndarray, degree: int, outlier: float = FIELD_OUTLIER,
                 stride: int = FIELD_STRIDE) -> None:
        ys, xs = np.nonzero(valid)
        self.shape, self.degree, self.outlier = valid.shape, degree, outlier
        self.box = (0, 1, 0, 1)
        if ys.size:
            self.box = (int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1)
        self.ys, self.xs = ys[::stride], xs[::stride]
        y0, y1, x0, x1 = self.box
        self.tri = np.add.outer(np.arange(degree + 1), np.arange(degree + 1)) <= degree
        pv, pu = _powers(self.ys, y0, y1, degree), _powers(self.xs, x0, x1, degree)
        self.basis = (pv[:, :, None] * pu[:, None, :])[:, self.tri]  # (n, terms): v^i u^j

    def fit(self, pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, float]:
        """(the field over the whole grid, its mean |gain - 1| at the fitted pixels)."""
        if self.ys.size == 0:
            return np.ones(self.shape, np.float32), 0.0
        p = pred[self.ys, self.xs].astype(np.float64)
        t = target[self.ys, self.xs].astype(np.float64)
        a = self.basis * p[:, None]
        inl = np.ones(p.size, bool)
        coef = np.zeros(self.basis.shape[1])
        for _ in range(2):  # least squares by the normal equations (a few dozen terms)
            ai = a[inl]
            coef = np.linalg.solve(ai.T @ ai + FIELD_RIDGE * np.eye(coef.size),
                                   ai.T @ t[inl])
            inl = np.abs(t - a @ coef) <= self.outlier
        c = np.zeros(self.tri.shape)
        c[self.tri] = coef
        (h, w), (y0, y1, x0, x1), d = self.shape, self.box, self.degree
        # separable: (h, d + 1) @ (d + 1, d + 1) @ (d + 1, w)
        field = _powers(np.arange(h), y0, y1, d) @ c @ _powers(np.arange(w), x0, x1, d).T
        return field.astype(np.float32), float(np.mean(np.abs(self.basis @ coef - 1.0)))
