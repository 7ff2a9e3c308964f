"""threshold: the one rule that decides a pair, and the step that turns candidates into Pairs.

Rule (deliberate, documented in ARCHITECTURE.md): float32 scores are off by up
to ~1e-6 and FAISS keeps only scores strictly above its radius, so every search
looks a little below the threshold (SEARCH_MARGIN) for candidates; each
candidate is re-scored in float64 from the stored float32 vectors, and a pair
counts when that score, rounded to the 6 decimals the report shows, is >= the
threshold. A pair shown as 0.990000 at threshold 0.99 is therefore always
included. Every search method hands its candidates to `pairs_from_candidates`,
so all of them answer with the same pairs and the same scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SEARCH_MARGIN = 1e-4  # far above float32 dot-product error for unit vectors (~1e-6)
SCORE_DECIMALS = 6
# float64 operands of one step of exact re-scoring (the two sides' rows, and what a step
# reads): 1,638 pairs of 1280-d vectors. Steps of 65,536 pairs held 1.3 GiB of operands
# (2.2 GiB peak) and ran 9x slower, out of cache; every step size gives the same scores
RESCORE_BYTES = 64 << 20


def rescore_step(dim: int) -> int:
    """Candidate pairs re-scored per step: 4 float64 arrays of a step's rows within
    RESCORE_BYTES."""
    return max(64, RESCORE_BYTES // (32 * dim)) if dim > 0 else 64


@dataclass
class Pairs:
    """Pairs of row positions, i < j, sorted by score descending (ties by i, j)."""

    i: np.ndarray  # int64
    j: np.ndarray  # int64
    score: np.ndarray  # float64, rounded to SCORE_DECIMALS

    def __len__(self) -> int:
        return len(self.i)

    @staticmethod
    def empty() -> Pairs:
        return Pairs(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64))


def search_radius(threshold: float) -> float:
    """The float32 score a candidate needs: a little below the threshold."""
    return float(threshold) - SEARCH_MARGIN


def exact_scores(vectors: np.ndarray, i: np.ndarray, j: np.ndarray,
                 chunk: int | None = None) -> np.ndarray:
    """float64 dot products of the listed pairs, rounded to SCORE_DECIMALS (`chunk` pairs
    a step: rescore_step by default)."""
    chunk = chunk or rescore_step(vectors.shape[1] if vectors.ndim == 2 else 1)
    out = np.empty(len(i), np.float64)
    for s in range(0, len(i), chunk):
        a = vectors[i[s:s + chunk]].astype(np.float64)
        b = vectors[j[s:s + chunk]].astype(np.float64)
        out[s:s + chunk] = np.einsum("ij,ij->i", a, b)
    return np.round(out, SCORE_DECIMALS)


def concat_candidates(found_i: list[np.ndarray], found_j: list[np.ndarray]
                      ) -> tuple[np.ndarray, np.ndarray]:
    """The candidate lists of many tiles, cells or shards as two int64 arrays."""
    if not found_i:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return (np.concatenate(found_i).astype(np.int64, copy=False),
            np.concatenate(found_j).astype(np.int64, copy=False))


def pairs_from_candidates(x: np.ndarray, i: np.ndarray, j: np.ndarray, threshold: float,
                          folders: np.ndarray | None = None, partial: bool = True) -> Pairs:
    """Candidates -> Pairs: each pair once (i < j), pairs within one folder dropped when
    `folders` is given (inter-folder scope), re-scored in float64 and kept by the
    threshold rule, sorted by score. `partial`: the candidates may hold a pair twice."""
    n = len(x)
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    if partial and len(lo):  # a pair of two query rows came twice
        key = np.unique(lo * n + hi)
        lo, hi = key // n, key % n
    if folders is not None and len(lo):
        other = folders[lo] != folders[hi]
        lo, hi = lo[other], hi[other]
    score = exact_scores(x, lo, hi)
    keep = score >= float(threshold)
    lo, hi, score = lo[keep], hi[keep], score[keep]
    order = np.lexsort((hi, lo, -score))
    return Pairs(lo[order], hi[order], score[order])


def meets_threshold(scores: np.ndarray, threshold: float) -> np.ndarray:
    """The rule for scores computed elsewhere (query hits, keeper scores): rounded to
    SCORE_DECIMALS, then >= threshold."""
    return np.round(np.asarray(scores, np.float64), SCORE_DECIMALS) >= float(threshold)


__all__ = ["RESCORE_BYTES", "SCORE_DECIMALS", "SEARCH_MARGIN", "Pairs", "concat_candidates",
           "exact_scores", "meets_threshold", "pairs_from_candidates", "rescore_step",
           "search_radius"]
