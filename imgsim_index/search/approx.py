"""approx: candidate pairs from IVF cells, for large N (the same contract as exact.py).

For large N the exact search's N^2/2 scores dominate. Here the vectors are
split into `nlist` cells by spherical k-means (trained and assigned in a
PCA-reduced space, which is cheap and keeps near-duplicates together), every
vector is filed under its nearest cell and probes its `nprobe` nearest cells,
and each cell is scored, tile by tile (tiles.TileScorer: numpy GEMMs in
float32, or bf16 GEMMs where the CPU is faster at them), against every vector
that probes it. A pair is a candidate when one vector's home cell is among the
other's probes. Candidates go through the same rule as exact mode (threshold.py),
so every approximate pair is an exact pair with its exact score; only recall can
be lower (a pair whose two vectors fall in cells too far apart).
Cost ~ N x (nprobe x N / nlist + nlist x coarse_dim / dim) scores instead of
N^2 / 2; benchmarks/bench_approx.py measures time and recall against exact mode.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from imgsim_index.search.exact import exact_candidates
from imgsim_index.search.plan import OnProgress, SearchPlan
from imgsim_index.search.settings import ApproxSettings
from imgsim_index.search.threshold import concat_candidates
from imgsim_index.search.tiles import TileScorer


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


def approx_candidates(x: np.ndarray, plan: SearchPlan, on_progress: OnProgress | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
    """(i, j) candidate pairs from the IVF cells (a pair may come twice, from two cells).
    With as few cells as probes every cell would be compared with every vector, so the
    exact tiles answer instead."""
    if plan.rows is not None:
        raise ValueError("the approximate search compares every vector (no query rows)")
    approx, nprobe, n = plan.approx, plan.nprobe, len(x)
    nlist = min(approx.nlist or cells_for(n, nprobe), n // 2)  # k-means needs points
    if nlist <= nprobe:
        return exact_candidates(x, plan, on_progress)
    probes = assign_cells(x, approx, nlist, nprobe)
    home = probes[:, 0]
    members = np.argsort(home, kind="stable")
    m_bounds = np.searchsorted(home[members], np.arange(nlist + 1))
    flat = probes.ravel()
    probers = np.argsort(flat, kind="stable") // probes.shape[1]  # rows, grouped by cell
    p_bounds = np.searchsorted(np.sort(flat), np.arange(nlist + 1))
    del flat
    scorer = TileScorer(x, plan.radius, plan.precision, bf16_copy=True, fp32_kernel="gemm")
    found_i, found_j = [], []
    for c in range(nlist):
        rows = probers[p_bounds[c]:p_bounds[c + 1]]
        for m in range(m_bounds[c], m_bounds[c + 1], approx.tile):  # a big cell: in parts
            cell = members[m:min(m + approx.tile, m_bounds[c + 1])]
            block = scorer.block(cell)
            for s in range(0, len(rows), approx.tile):
                qrows = rows[s:s + approx.tile]
                qi, cj = scorer.above(scorer.operand(qrows), len(qrows), block, len(cell))
                gi, gj = qrows[qi], cell[cj]
                keep = gi != gj
                found_i.append(gi[keep])
                found_j.append(gj[keep])
        if on_progress:
            on_progress(c + 1, nlist)
    del scorer
    return concat_candidates(found_i, found_j)


__all__ = ["approx_candidates", "assign_cells", "cells_for", "coarse_vectors", "pca_basis"]
