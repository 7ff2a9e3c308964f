"""pairs: vectors + threshold -> Pairs(i, j, score), i < j, by tiled float32 GEMM.

Memory is O(N x dim + block^2 + pairs): the vectors are cut into blocks of
`block_size` rows and one block x block tile of float32 scores (a BLAS GEMM)
exists at a time; its candidates are kept and the tile is reused. In full
mode only tiles on or above the diagonal are computed, so each pair is scored
once, not twice. (This replaced FAISS range search over IndexFlatIP blocks:
the same BLAS work, but bigger GEMMs and no diagonal blocks scored twice, so
it runs at the speed of a plain numpy GEMM; see benchmarks/bench_pairs.py.)

Threshold rule (deliberate, documented in ARCHITECTURE.md): float32 scores
are off by up to ~1e-6, so tiles are thresholded a little below the threshold
(SEARCH_MARGIN), every candidate is re-scored in float64 from the stored
float32 vectors, and a pair counts when that score, rounded to the 6 decimals
the report shows, is >= the threshold. A pair shown as 0.990000 at threshold
0.99 is therefore always included.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .errors import InputError

SEARCH_MARGIN = 1e-4  # far above float32 dot-product error for unit vectors (~1e-6)
SCORE_DECIMALS = 6


@dataclass(frozen=True)
class PairSettings:
    threshold: float = 0.99
    compare_mode: str = "full"  # full | sample
    sample_ratio: float = 0.3
    seed: int = 0
    compare_scope: str = "all"  # all | inter_folder
    block_size: int = 4096  # rows per side of a score tile; bounds the extra memory

    def validate(self) -> None:
        if not -1.0 <= self.threshold <= 1.0:
            raise InputError(f"threshold must be between -1 and 1, got {self.threshold}")
        if self.compare_mode not in ("full", "sample"):
            raise InputError(f"compare mode must be full or sample, got {self.compare_mode!r}")
        if self.compare_scope not in ("all", "inter_folder"):
            raise InputError(
                f"compare scope must be all or inter_folder, got {self.compare_scope!r}"
            )
        if not 0.0 < self.sample_ratio <= 1.0:
            raise InputError(f"sample ratio must be in (0, 1], got {self.sample_ratio}")
        if self.block_size < 1:
            raise InputError("block size must be positive")


@dataclass
class Pairs:
    """Pairs of row positions, i < j, sorted by score descending (ties by i, j)."""

    i: np.ndarray  # int64
    j: np.ndarray  # int64
    score: np.ndarray  # float64, rounded to SCORE_DECIMALS

    def __len__(self) -> int:
        return len(self.i)


def exact_scores(vectors: np.ndarray, i: np.ndarray, j: np.ndarray,
                 chunk: int = 65536) -> np.ndarray:
    """float64 dot products of the listed pairs, rounded to SCORE_DECIMALS."""
    out = np.empty(len(i), np.float64)
    for s in range(0, len(i), chunk):
        a = vectors[i[s:s + chunk]].astype(np.float64)
        b = vectors[j[s:s + chunk]].astype(np.float64)
        out[s:s + chunk] = np.einsum("ij,ij->i", a, b)
    return np.round(out, SCORE_DECIMALS)


def _above(scores: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) of the entries >= radius of a score tile, as int64.

    Row maxima first: most rows have no candidate, and np.nonzero over a whole
    2-D tile costs ~10x a max-reduction over it."""
    cols = scores.shape[1]
    rows = np.flatnonzero(scores.max(axis=1) >= radius)
    if 4 * len(rows) > len(scores):  # many hits: a low threshold, or a diagonal tile
        flat = np.flatnonzero(scores >= radius)
        return flat // cols, flat % cols
    flat = np.flatnonzero(scores[rows] >= radius)
    return rows[flat // cols], flat % cols


def find_pairs(
    vectors: np.ndarray,
    settings: PairSettings,
    folders: np.ndarray | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    queries: np.ndarray | None = None,
) -> Pairs:
    """All pairs with score >= threshold (see module doc), never an N x N matrix.

    `folders`: an int code per row (its input folder); with compare_scope
    inter_folder, pairs within one folder are left out.
    `queries`: search only from these rows (against all rows), e.g. the images added
    since the last dedupe; every pair found has at least one of them. Overrides the
    compare mode's choice of queries.
    """
    settings.validate()
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n = len(x)
    if settings.compare_scope == "inter_folder" and folders is None:
        raise InputError("inter_folder needs each image's input folder")
    partial = queries is not None or settings.compare_mode == "sample"
    if queries is not None:
        queries = np.unique(np.asarray(queries, np.int64))
    elif settings.compare_mode == "sample":
        rng = np.random.default_rng(settings.seed)
        k = max(1, round(settings.sample_ratio * n)) if n else 0
        queries = np.sort(rng.choice(n, size=k, replace=False)) if n else np.zeros(0, np.int64)
    else:
        queries = np.arange(n, dtype=np.int64)
    radius = float(settings.threshold) - SEARCH_MARGIN
    bs = settings.block_size
    starts = list(range(0, n, bs))
    found_i, found_j = [], []
    if partial:  # query blocks outer, so each is gathered once
        blocks = [(a0, b0) for a0 in range(0, len(queries), bs) for b0 in starts]
    else:  # the upper triangle of blocks: each pair is scored once
        blocks = [(a0, b0) for b0 in starts for a0 in starts if a0 <= b0]
    total_steps = len(blocks)
    step = 0
    tile = np.empty((bs, bs), np.float32) if n >= bs else None  # reused by full-size tiles
    q = x[:0]
    for a0, b0 in blocks:
        block = x[b0:min(n, b0 + bs)]
        if partial:  # a0 indexes `queries`; gather each query block once
            qrows = queries[a0:a0 + bs]
            if b0 == 0:
                q = x[qrows]
        else:
            q = x[a0:min(n, a0 + bs)]
        full = tile is not None and len(q) == len(block) == bs
        scores = np.matmul(q, block.T, out=tile) if full else q @ block.T
        qi, rj = _above(scores, radius)
        gi = qrows[qi] if partial else qi + a0
        gj = rj + b0
        keep = gi != gj if partial else gi < gj
        found_i.append(gi[keep])
        found_j.append(gj[keep])
        step += 1
        if on_progress:
            on_progress(step, total_steps)
    i = np.concatenate(found_i) if found_i else np.zeros(0, np.int64)
    j = np.concatenate(found_j) if found_j else np.zeros(0, np.int64)
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    if partial and len(lo):  # a pair of two query rows came twice
        key = np.unique(lo * n + hi)
        lo, hi = key // n, key % n
    if settings.compare_scope == "inter_folder" and folders is not None and len(lo):
        other = folders[lo] != folders[hi]
        lo, hi = lo[other], hi[other]
    score = exact_scores(x, lo, hi)
    keep = score >= float(settings.threshold)
    lo, hi, score = lo[keep], hi[keep], score[keep]
    order = np.lexsort((hi, lo, -score))
    return Pairs(lo[order], hi[order], score[order])
