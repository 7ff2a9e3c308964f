"""pairs: vectors + threshold -> Pairs(i, j, score), i < j, by FAISS range search.

Memory is O(N x dim + pairs): the vectors are cut into blocks, one block at a
time becomes a FAISS IndexFlatIP, and query blocks are range-searched against
it. In full mode only blocks on or above the diagonal are searched, so each
pair is scored once, not twice.

Threshold rule (deliberate, documented in ARCHITECTURE.md): FAISS scores in
float32 and keeps only scores strictly above its radius, so it searches with
a radius a little below the threshold (SEARCH_MARGIN), every candidate is
re-scored in float64 from the stored float32 vectors, and a pair counts when
that score, rounded to the 6 decimals the report shows, is >= the threshold.
A pair shown as 0.990000 at threshold 0.99 is therefore always included.
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
    block_size: int = 16384  # vectors per FAISS block; bounds the extra memory

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


def _range_search(index: object, queries: np.ndarray, radius: float
                  ) -> tuple[np.ndarray, np.ndarray]:
    """-> (query row, index row) of every candidate above `radius`."""
    lims, _, found = index.range_search(queries, radius)  # type: ignore[attr-defined]
    q = np.repeat(np.arange(len(queries), dtype=np.int64), np.diff(lims).astype(np.int64))
    return q, found.astype(np.int64)


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
    import faiss

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
    total_steps = len(starts) * (len(starts) + 1) // 2 if not partial else (
        len(starts) * max(1, -(-len(queries) // bs)))
    step = 0
    for b0 in starts:
        b1 = min(n, b0 + bs)
        index = faiss.IndexFlatIP(x.shape[1])
        index.add(x[b0:b1])
        if not partial:
            q_blocks = [np.arange(a0, min(n, a0 + bs), dtype=np.int64) for a0 in starts if a0 <= b0]
        else:
            q_blocks = [queries[s:s + bs] for s in range(0, len(queries), bs)]
        for qrows in q_blocks:
            if len(qrows):
                qi, rj = _range_search(index, x[qrows], radius)
                gi, gj = qrows[qi], rj + b0
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
