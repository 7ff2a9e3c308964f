"""exact: every candidate pair, by tiles of block_size x block_size rows (FAISS range search,
or bf16 GEMMs where the CPU is faster at them), never an N x N matrix.

Memory is O(N x dim + block x dim + pairs): one block at a time is the tile
scorer's block operand, and query blocks are searched against it. In a full
search only tiles on or above the diagonal are scored, so each pair is scored
once. Blocks of 4096 and FAISS BLAS tiles of the same size make each tile one
large GEMM, which runs at the speed of a plain numpy GEMM
(benchmarks/bench_pairs.py); the first version, with blocks of 16,384 and
FAISS's default 4096 x 1024 tiles, scored diagonal blocks in full and ran 2.46x
slower.
"""

from __future__ import annotations

import numpy as np

from imgsim_index.errors import ResultTooLarge
from imgsim_index.search.plan import OnProgress, SearchPlan
from imgsim_index.search.threshold import concat_candidates
from imgsim_index.search.tiles import TileScorer, faiss_blas_tiles


def tile_blocks(n: int, block_size: int, queries: np.ndarray | None, first: int = 0,
                stop: int | None = None) -> list[tuple[int, int]]:
    """(query block start, block start) of every tile to score. queries None: rows
    first..stop (first a multiple of block_size) against themselves and every later row,
    so shards [0, b), [b, 2b), ... together score each pair once; queries given: every
    block of them against every block of rows."""
    bs = block_size
    starts = range(0, n, bs)
    if queries is not None:
        return [(a0, b0) for b0 in starts for a0 in range(0, len(queries), bs)]
    if first % bs:
        raise ValueError("a shard of a full search starts at a multiple of block_size")
    end = n if stop is None else min(n, stop)
    return [(a0, b0) for b0 in starts for a0 in range(first, end, bs) if a0 <= b0]


def exact_candidates(x: np.ndarray, plan: SearchPlan, on_progress: OnProgress | None = None,
                     first: int = 0, stop: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(i, j) row pairs whose candidate score reaches plan.radius: i < j in a full search
    (rows first..stop against themselves and every later row); with plan.rows, those rows
    against all rows, i != j (a pair of two query rows comes twice). `x` is only read, so
    it may be a read-only shared array."""
    n, bs, queries = len(x), plan.block_size, plan.rows
    blocks = tile_blocks(n, bs, queries, first, stop)
    scorer = TileScorer(x, plan.radius, plan.precision)
    found_i, found_j = [], []
    block, block_at = None, -1
    found = 0
    with faiss_blas_tiles(bs):
        for step, (a0, b0) in enumerate(blocks, 1):
            if b0 != block_at:  # one block at a time: memory O(block x dim)
                block, block_at = scorer.block(slice(b0, min(n, b0 + bs))), b0
            nb = min(n, b0 + bs) - b0
            if queries is not None:  # a0 indexes `queries`
                qrows = queries[a0:a0 + bs]
                qi, rj = scorer.above(scorer.operand(qrows), len(qrows), block, nb)
                gi = qrows[qi]
            else:
                nq = min(n, a0 + bs) - a0
                qi, rj = scorer.above(scorer.operand(slice(a0, a0 + nq)), nq, block, nb)
                gi = qi + a0
            gj = rj + b0
            keep = gi != gj if queries is not None else gi < gj
            found_i.append(gi[keep])
            found_j.append(gj[keep])
            found += len(found_i[-1])
            if plan.max_candidates is not None and found > plan.max_candidates:
                raise ResultTooLarge(f"more than {plan.max_candidates} pairs score near the "
                                     "threshold; raise the threshold or search fewer rows")
            if on_progress:
                on_progress(step, len(blocks))
    return concat_candidates(found_i, found_j)


__all__ = ["exact_candidates", "tile_blocks"]
