"""pairs: vectors + threshold -> Pairs(i, j, score), i < j, by FAISS range search in tiles.

Memory is O(N x dim + block x dim + pairs), never N x N: the vectors are cut into
blocks of `block_size` rows; one block at a time is a FAISS IndexFlatIP, and
query blocks are range-searched against it. In full mode only tiles on or
above the diagonal are searched, so each pair is scored once. Blocks of 4096
and FAISS BLAS tiles of the same size make each tile one large GEMM, which
runs at the speed of a plain numpy GEMM (benchmarks/bench_pairs.py); the
first version, with blocks of 16,384 and FAISS's default 4096 x 1024 tiles,
scored diagonal blocks in full and ran 2.46x slower.

Threshold rule (deliberate, documented in ARCHITECTURE.md): float32 scores
are off by up to ~1e-6 and FAISS keeps only scores strictly above its radius,
so it searches a little below the threshold (SEARCH_MARGIN); every
candidate is re-scored in float64 from the stored float32 vectors, and a pair
counts when that score, rounded to the 6 decimals the report shows, is >= the
threshold. A pair shown as 0.990000 at threshold 0.99 is therefore always
included.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from imgsim_index.errors import InputError
from imgsim_index.search.tiles import above_bf16, check_precision, resolve_precision, to_bf16

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
    precision: str = "auto"  # candidate scores: fp32 | bf16 | auto (lowp.resolve_precision)

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
        check_precision(self.precision)


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


def _range_search(index: Any, queries: np.ndarray, radius: float
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(query row, index row) of every score above `radius`: FAISS range search."""
    lims, _, found = index.range_search(queries, radius)
    q = np.repeat(np.arange(len(queries), dtype=np.int64), np.diff(lims).astype(np.int64))
    return q, found.astype(np.int64)


@contextmanager
def _blas_tiles(size: int) -> Iterator[None]:
    """FAISS scores a range search in BLAS tiles of 4096 x 1024 by default; tiles as large
    as our blocks run at the speed of one plain GEMM (see benchmarks/bench_pairs.py)."""
    import faiss

    cv = faiss.cvar
    saved = cv.distance_compute_blas_query_bs, cv.distance_compute_blas_database_bs
    cv.distance_compute_blas_query_bs = cv.distance_compute_blas_database_bs = max(size, 1)
    try:
        yield
    finally:
        cv.distance_compute_blas_query_bs, cv.distance_compute_blas_database_bs = saved


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
    check_scope(settings, folders)
    rows = query_rows(len(x), settings, queries)
    i, j = candidate_pairs(x, search_radius(settings), settings.block_size, rows,
                           on_progress=on_progress,
                           precision=resolve_precision(settings.precision, len(x)))
    return pairs_from_candidates(x, i, j, settings, folders, partial=rows is not None)


def check_scope(settings: PairSettings, folders: np.ndarray | None) -> None:
    if settings.compare_scope == "inter_folder" and folders is None:
        raise InputError("inter_folder needs each image's input folder")


def search_radius(settings: PairSettings) -> float:
    """The float32 score a candidate needs (a little below the threshold, see module doc)."""
    return float(settings.threshold) - SEARCH_MARGIN


def query_rows(n: int, settings: PairSettings, queries: np.ndarray | None = None
               ) -> np.ndarray | None:
    """The rows searched against all rows, sorted and unique; None for a full search
    (every pair once). Sample mode draws them with the seed; `queries` overrides."""
    if queries is not None:
        return np.unique(np.asarray(queries, np.int64))
    if settings.compare_mode == "sample":
        rng = np.random.default_rng(settings.seed)
        k = max(1, round(settings.sample_ratio * n)) if n else 0
        return np.sort(rng.choice(n, size=k, replace=False)) if n else np.zeros(0, np.int64)
    return None


def candidate_pairs(
    x: np.ndarray,
    radius: float,
    block_size: int,
    queries: np.ndarray | None = None,
    first: int = 0,
    stop: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    precision: str = "fp32",
) -> tuple[np.ndarray, np.ndarray]:
    """(i, j) row pairs whose float32 score is >= radius, by tiles of block_size rows.

    precision fp32: FAISS range search per tile. bf16: torch bf16 GEMM per tile with
    the radius lowered by lowp.BF16_MARGIN, a superset of the fp32 candidates (the
    float64 re-score makes the answers equal); tiles are converted as they are used,
    so there is no bf16 copy of x.

    queries None: rows first..stop (first a multiple of block_size) against
    themselves and every later row, i < j; shards [0, b), [b, 2b), ... together
    score each pair once. queries given: those rows against all rows, i != j (a
    pair of two query rows comes twice). `x` is only read, so it may be a
    read-only shared array.
    """
    import faiss

    n, bs = len(x), block_size
    starts = range(0, n, bs)
    partial = queries is not None
    if queries is not None:
        q_starts = list(range(0, len(queries), bs))
        blocks = [(a0, b0) for b0 in starts for a0 in q_starts]
    else:  # the upper triangle of blocks: each pair is scored once
        if first % bs:
            raise ValueError("a shard of a full search starts at a multiple of block_size")
        end = n if stop is None else min(n, stop)
        blocks = [(a0, b0) for b0 in starts for a0 in range(first, end, bs) if a0 <= b0]
    found_i, found_j = [], []
    index: Any = None
    index_at, width = -1, 0
    bf16 = resolve_precision(precision, n) == "bf16"

    def search(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if bf16:
            return above_bf16(to_bf16(q), len(q), index, width, radius)
        return _range_search(index, q, radius)

    with _blas_tiles(bs):
        for step, (a0, b0) in enumerate(blocks, 1):
            if b0 != index_at:  # one block at a time: memory O(block x dim)
                block = np.ascontiguousarray(x[b0:min(n, b0 + bs)])
                index_at, width = b0, len(block)
                if bf16:
                    index = to_bf16(block)
                else:
                    index = faiss.IndexFlatIP(x.shape[1])
                    index.add(block)
            if queries is not None:  # a0 indexes `queries`
                qrows = queries[a0:a0 + bs]
                qi, rj = search(x[qrows])
                gi = qrows[qi]
            else:
                qi, rj = search(x[a0:min(n, a0 + bs)])
                gi = qi + a0
            gj = rj + b0
            keep = gi != gj if partial else gi < gj
            found_i.append(gi[keep])
            found_j.append(gj[keep])
            if on_progress:
                on_progress(step, len(blocks))
    i = np.concatenate(found_i) if found_i else np.zeros(0, np.int64)
    j = np.concatenate(found_j) if found_j else np.zeros(0, np.int64)
    return i.astype(np.int64, copy=False), j.astype(np.int64, copy=False)


def pairs_from_candidates(x: np.ndarray, i: np.ndarray, j: np.ndarray, settings: PairSettings,
                          folders: np.ndarray | None = None, partial: bool = True) -> Pairs:
    """Candidates -> Pairs: each pair once (i < j), the folder scope applied, re-scored in
    float64 and kept by the threshold rule, sorted by score. `partial`: the candidates
    may hold a pair twice (set it when in doubt)."""
    n = len(x)
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
