"""pairs_approx: vectors + threshold -> Pairs like pairs.find_pairs, from IVF candidates.

For large N the exact search's N^2/2 scores dominate. Here the vectors are
split into `nlist` cells by spherical k-means (trained and assigned in a
PCA-reduced space, which is cheap and keeps near-duplicates together), every
vector is filed under its nearest cell and probes its `nprobe` nearest cells,
and each cell is compared, as one float32 GEMM per tile, with every vector
that probes it. A pair is a candidate when one vector's home cell is among the
other's probes. Candidates go through the same rule as exact mode: float32
threshold lowered by pairs.SEARCH_MARGIN, float64 re-score from the stored
vectors, rounded to 6 decimals, >= threshold. So every approximate pair is an
exact pair with its exact score; only recall can be lower (a pair whose two
vectors fall in cells too far apart). Where the CPU does bfloat16 GEMMs faster
(AMX, AVX512-BF16), the cell GEMMs run in bf16 with the radius lowered by a
worst-case rounding bound (BF16_MARGIN), so they lose no candidate.
Cost ~ N x (nprobe x N / nlist + nlist x coarse_dim / dim) scores instead of
N^2 / 2; benchmarks/bench_approx.py measures time and recall against exact mode.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from imgsim_index.errors import InputError
from imgsim_index.search.exact import (
    Pairs,
    PairSettings,
    check_scope,
    find_pairs,
    pairs_from_candidates,
    search_radius,
)
from imgsim_index.search.tiles import above_bf16, bf16_copy, gather_bf16, resolve_precision

AUTO_APPROX_ABOVE = 200_000  # `auto` picks approx mode above this many vectors


def _above(scores: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) of the entries >= radius of a score tile, as int64.

    Row maxima first: most rows have no candidate, and np.nonzero over a whole
    2-D tile costs ~10x a max-reduction over it."""
    cols = scores.shape[1]
    rows = np.flatnonzero(scores.max(axis=1) >= radius)
    if 4 * len(rows) > len(scores):  # many hits: a low threshold
        flat = np.flatnonzero(scores >= radius)
        return flat // cols, flat % cols
    flat = np.flatnonzero(scores[rows] >= radius)
    return rows[flat // cols], flat % cols


class _Scorer:
    """Candidate scores of row tiles against a cell's block: float32 GEMMs (numpy), or
    bf16 GEMMs (lowp: a bf16 copy of the vectors, half the memory of x, and the radius
    lowered by lowp.BF16_MARGIN)."""

    def __init__(self, x: np.ndarray, radius: float, precision: str):
        self.x, self.radius = x, radius
        self.bf16 = precision == "bf16"
        if self.bf16:
            self.xb = bf16_copy(x)

    def rows(self, idx: np.ndarray) -> Any:
        return gather_bf16(self.xb, idx) if self.bf16 else self.x[idx]

    def above(self, q: Any, nq: int, block: Any, nb: int) -> tuple[np.ndarray, np.ndarray]:
        """(row, column) of the scores >= the radius among the first nq x nb."""
        if self.bf16:
            return above_bf16(q, nq, block, nb, self.radius)
        return _above(q @ block.T, self.radius)


# nprobe by threshold: closer pairs need fewer probes. Tuned on the hard case, isotropic
# 2048-d vectors (bench_approx.py, 200k vectors): recall of planted pairs 0.9992 / 0.9994
# / 1.0 at 0.9 / 0.95 / 0.99 (real embeddings are clustered, which helps the cells).
AUTO_NPROBE = ((0.97, 8), (0.93, 12), (0.88, 24), (-1.0, 32))


@dataclass(frozen=True)
class ApproxSettings:
    nprobe: int | None = None  # cells each vector probes, its own included; None: AUTO_NPROBE
    nlist: int | None = None  # cells; None: about sqrt(nprobe x N), see cells_for
    coarse_dim: int = 128  # PCA dimensions for k-means and cell assignment (0: no PCA)
    train_points: int = 32  # k-means sample per cell
    kmeans_iter: int = 8
    seed: int = 0
    tile: int = 4096  # query rows per GEMM

    def validate(self) -> None:
        if self.nprobe is not None and self.nprobe < 1:
            raise InputError(f"nprobe must be at least 1, got {self.nprobe}")
        if self.nlist is not None and self.nlist < 1:
            raise InputError(f"nlist must be at least 1, got {self.nlist}")
        if self.coarse_dim < 0 or self.train_points < 1 or self.kmeans_iter < 1:
            raise InputError("coarse_dim, train_points and kmeans_iter must be positive")
        if self.tile < 1:
            raise InputError("tile must be positive")

    def probes_for(self, threshold: float) -> int:
        if self.nprobe is not None:
            return self.nprobe
        return next(p for t, p in AUTO_NPROBE if threshold >= t)


def use_approx(method: str, n: int, settings: PairSettings, partial: bool = False) -> bool:
    """exact | approx | auto -> whether to search approximately.

    auto: approx above AUTO_APPROX_ABOVE vectors in full mode; exact otherwise.
    Approx mode compares every vector, so it does not combine with a partial
    search (sample mode, new-only queries)."""
    if method not in ("exact", "approx", "auto"):
        raise InputError(f"pair search must be exact, approx or auto, got {method!r}")
    partial = partial or settings.compare_mode == "sample"
    if method == "approx" and partial:
        raise InputError("--approx compares every image; it cannot be combined with "
                         "--compare-mode sample or a new-only dedupe. Use --exact there")
    return method == "approx" or (method == "auto" and not partial and n > AUTO_APPROX_ABOVE)


def cells_for(n: int, nprobe: int) -> int:
    """nlist = sqrt(nprobe x n): cells of sqrt(n / nprobe) vectors, so each vector is
    scored against ~sqrt(nprobe x n) others, and centroids (at the reduced dimension)
    cost little next to that. Cells keep >= 64 vectors so the GEMMs stay efficient."""
    return max(1, min(round(math.sqrt(nprobe * n)), n // 64))


def _orthonormal(y: np.ndarray) -> np.ndarray:
    """Orthonormal columns spanning y (n x k, n >> k), by Cholesky QR: two GEMMs and a
    k x k factorisation (LAPACK's QR on a tall matrix is ~10x slower, and erratic when
    the cores are busy)."""
    g = (y.T @ y).astype(np.float64)
    g += np.eye(len(g)) * (1e-9 * np.trace(g) / len(g))
    lower = np.linalg.cholesky(g)
    return np.ascontiguousarray(y @ np.linalg.inv(lower).T.astype(np.float32))


def pca_basis(sample: np.ndarray, k: int, rng: np.random.Generator
              ) -> tuple[np.ndarray, np.ndarray]:
    """(mean (d,), top-k principal directions (k, d)) of `sample`, by randomized SVD
    with two power iterations: well under a second where a full d x d eigen-
    decomposition takes tens of seconds at d = 2048."""
    mean = sample.mean(axis=0, dtype=np.float64).astype(np.float32)
    s = sample - mean
    y = s @ rng.standard_normal((s.shape[1], k + 16)).astype(np.float32)
    for _ in range(2):
        y = _orthonormal(y)
        y = s @ (s.T @ y)
    q = _orthonormal(y)
    _, _, vt = np.linalg.svd(q.T @ s, full_matrices=False)
    return mean, np.ascontiguousarray(vt[:k], dtype=np.float32)


def coarse_vectors(x: np.ndarray, a: ApproxSettings, sample: np.ndarray,
                   rng: np.random.Generator) -> np.ndarray:
    """Unit vectors in the centred PCA space used for cells (the input when no PCA)."""
    d = x.shape[1]
    if not 0 < a.coarse_dim < d:
        return x
    mean, basis = pca_basis(x[sample], a.coarse_dim, rng)
    y = np.empty((len(x), a.coarse_dim), np.float32)
    shift = mean @ basis.T  # (x - mean) @ basis.T without an x-sized temporary
    for s in range(0, len(x), 65536):
        y[s:s + 65536] = x[s:s + 65536] @ basis.T - shift
    y /= np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)
    return y


def assign_cells(x: np.ndarray, a: ApproxSettings, nlist: int, nprobe: int) -> np.ndarray:
    """(n, nprobe) int64: each vector's nearest cells, nearest first (column 0: its home)."""
    import faiss

    n = len(x)
    rng = np.random.default_rng(a.seed)
    sample = rng.choice(n, size=min(n, max(nlist * a.train_points, 20_000)), replace=False)
    y = coarse_vectors(x, a, sample[: 10_000], rng)
    km = faiss.Kmeans(y.shape[1], nlist, niter=a.kmeans_iter, spherical=True, seed=a.seed,
                      max_points_per_centroid=a.train_points, min_points_per_centroid=1,
                      verbose=False)
    km.train(np.ascontiguousarray(y[sample]))
    index = faiss.IndexFlatIP(y.shape[1])
    centroids: Any = km.centroids
    index.add(centroids)
    probes = np.empty((n, min(nprobe, nlist)), np.int64)
    for s in range(0, n, 65536):
        _, probes[s:s + 65536] = index.search(np.ascontiguousarray(y[s:s + 65536]),
                                              probes.shape[1])
    return probes


def find_pairs_approx(
    vectors: np.ndarray,
    settings: PairSettings,
    approx: ApproxSettings | None = None,
    folders: np.ndarray | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> Pairs:
    """Pairs with score >= threshold, a subset of find_pairs' answer with the same scores."""
    approx = approx or ApproxSettings()
    settings.validate()
    approx.validate()
    if settings.compare_mode != "full":
        raise InputError("approximate pair search compares every image (compare mode full)")
    check_scope(settings, folders)
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n = len(x)
    nprobe = approx.probes_for(settings.threshold)
    nlist = min(approx.nlist or cells_for(n, nprobe), n // 2)  # k-means needs points
    if nlist <= nprobe:  # every cell probed: nothing to gain over exact
        return find_pairs(x, settings, folders, on_progress)
    probes = assign_cells(x, approx, nlist, nprobe)
    home = probes[:, 0]
    members = np.argsort(home, kind="stable")
    m_bounds = np.searchsorted(home[members], np.arange(nlist + 1))
    flat = probes.ravel()
    probers = np.argsort(flat, kind="stable") // probes.shape[1]  # rows, grouped by cell
    p_bounds = np.searchsorted(np.sort(flat), np.arange(nlist + 1))
    del flat
    scorer = _Scorer(x, search_radius(settings), resolve_precision(settings.precision, n))
    found_i, found_j = [], []
    for c in range(nlist):
        rows = probers[p_bounds[c]:p_bounds[c + 1]]
        for m in range(m_bounds[c], m_bounds[c + 1], approx.tile):  # a big cell: in parts
            cell = members[m:min(m + approx.tile, m_bounds[c + 1])]
            block = scorer.rows(cell)
            for s in range(0, len(rows), approx.tile):
                qrows = rows[s:s + approx.tile]
                qi, cj = scorer.above(scorer.rows(qrows), len(qrows), block, len(cell))
                gi, gj = qrows[qi], cell[cj]
                keep = gi != gj
                found_i.append(gi[keep])
                found_j.append(gj[keep])
        if on_progress:
            on_progress(c + 1, nlist)
    del scorer
    i = np.concatenate(found_i) if found_i else np.zeros(0, np.int64)
    j = np.concatenate(found_j) if found_j else np.zeros(0, np.int64)
    # a pair can come from two cells; the shared tail dedupes, re-scores and sorts
    return pairs_from_candidates(x, i, j, settings, folders, partial=True)


__all__ = ["AUTO_APPROX_ABOVE", "AUTO_NPROBE", "ApproxSettings", "cells_for", "find_pairs_approx",
           "use_approx"]
