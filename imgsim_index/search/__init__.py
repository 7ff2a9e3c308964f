"""search: vectors + PairSettings -> (Pairs(i, j, score), SearchInfo), never an N x N matrix.

One entry point, `find_pairs`. It chooses a candidate search (the exact tiles,
the IVF cells, or the exact tiles sharded over a Ray cluster: interchangeable
parts with one signature, see plan.py), then applies the one threshold rule
(threshold.py) to the candidates, so every method answers with exact pairs and
exact scores; only the approximate search can miss pairs.
"""

from __future__ import annotations

import time
from typing import Protocol

import numpy as np

from imgsim_index.errors import InputError
from imgsim_index.search.plan import CandidateSearch, OnProgress, SearchInfo, SearchPlan
from imgsim_index.search.settings import (
    AUTO_APPROX_ABOVE,
    METHODS,
    ApproxSettings,
    PairSettings,
    choose_method,
)
from imgsim_index.search.threshold import (
    SCORE_DECIMALS,
    Pairs,
    exact_scores,
    meets_threshold,
    pairs_from_candidates,
    search_radius,
)
from imgsim_index.search.tiles import resolve_precision


class SearchEngine(Protocol):
    """What a compute engine (pipeline/engine.py's Engine) offers the search."""

    name: str  # SearchInfo.engine when it searched

    def candidates(self, x: np.ndarray, plan: SearchPlan, on_progress: OnProgress | None = None
                   ) -> tuple[np.ndarray, np.ndarray]: ...


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


def find_pairs(
    vectors: np.ndarray,
    settings: PairSettings | None = None,
    *,
    method: str = "auto",
    approx: ApproxSettings | None = None,
    folders: np.ndarray | None = None,
    queries: np.ndarray | None = None,
    engine: SearchEngine | None = None,
    on_progress: OnProgress | None = None,
    max_candidates: int | None = None,
) -> tuple[Pairs, SearchInfo]:
    """All pairs of rows whose score, rounded to 6 decimals, is >= the threshold
    (settings.threshold, 0.99 when not given).

    method: exact | approx | auto (approx above AUTO_APPROX_ABOVE vectors in a full
    search). folders: an int code per row (its input folder); with compare_scope
    inter_folder, pairs within one folder are left out. queries: search only from
    these rows against all rows (e.g. the images added since the last dedupe); every
    pair found has at least one of them; overrides the compare mode's choice.
    engine: runs the exact search's shards elsewhere (a Ray cluster); same answer.
    on_progress(done, total): called after each tile, cell or shard; an exception it
    raises stops the search. max_candidates: the exact local search stops with
    ResultTooLarge once it has found more candidate pairs (approx and engines refuse it).
    """
    settings = settings or PairSettings()
    approx = approx or ApproxSettings()
    settings.validate()
    approx.validate()
    if settings.across_folders and folders is None:
        raise InputError("the inter_folder scope needs each image's input folder")
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    rows = query_rows(len(x), settings, queries)
    chosen = choose_method(method, len(x), settings, partial=rows is not None)
    if max_candidates is not None and (chosen == "approx" or engine is not None):
        raise InputError("a cap on candidate pairs needs the exact search on this machine")
    nprobe = approx.probes_for(settings.cutoff)
    plan = SearchPlan(radius=search_radius(settings.cutoff), block_size=settings.block_size,
                      precision=resolve_precision(settings.precision, len(x)), rows=rows,
                      approx=approx, nprobe=nprobe, max_candidates=max_candidates)
    search: CandidateSearch
    if chosen == "approx":
        from imgsim_index.search.approx import approx_candidates as search
    elif engine is not None:
        search = engine.candidates
    else:
        from imgsim_index.search.exact import exact_candidates as search
    started = time.perf_counter()
    i, j = search(x, plan, on_progress)
    scoped = folders if settings.across_folders else None
    pairs = pairs_from_candidates(x, i, j, settings.cutoff, scoped,
                                  partial=rows is not None or chosen == "approx")
    info = SearchInfo(
        method=chosen, engine="local" if engine is None or chosen == "approx" else engine.name,
        precision=plan.precision, vectors=len(x),
        queries=None if rows is None else len(rows), candidates=len(i), pairs=len(pairs),
        seconds=time.perf_counter() - started,
        approx=approx if chosen == "approx" else None,
        nprobe=nprobe if chosen == "approx" else None)
    return pairs, info


__all__ = ["AUTO_APPROX_ABOVE", "METHODS", "SCORE_DECIMALS", "ApproxSettings", "Pairs",
           "PairSettings", "SearchEngine", "SearchInfo", "exact_scores", "find_pairs",
           "meets_threshold", "query_rows"]
