"""ray_pairs: vectors + PairSettings -> Pairs equal to pairs.find_pairs, searched by Ray tasks.

The vectors go into Ray's object store once (one shared, read-only copy per
node). Each task takes a query shard and runs pairs.candidate_pairs, the local
tile search: in a full search, one block of rows against itself and every
later row (so each pair is scored once over all tasks); with sample or
new-only queries, one block of queries against all rows. Tasks return float32
candidates only; the driver merges them and applies pairs.pairs_from_candidates
(dedupe, folder scope, float64 re-score, threshold, order), so the answer is
exactly the local one. A task lost with its worker is run again by Ray; it is a
pure function of its shard, so a retry cannot duplicate or lose pairs.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from imgsim_index.pipeline.ray_engine import EngineError, RaySettings
from imgsim_index.search.exact import (
    Pairs,
    PairSettings,
    candidate_pairs,
    check_scope,
    pairs_from_candidates,
    query_rows,
    search_radius,
)


def search_shard(x: np.ndarray, radius: float, block_size: int, queries: np.ndarray | None,
                 first: int, stop: int, precision: str = "auto"
                 ) -> tuple[np.ndarray, np.ndarray]:
    """One task's share: candidates of rows first..stop (or of `queries`) against all rows.
    `auto` precision is resolved on the worker's own CPU."""
    return candidate_pairs(x, radius, block_size, queries, first, stop, precision=precision)


def shards(n: int, rows: np.ndarray | None, block_size: int
           ) -> list[tuple[np.ndarray | None, int, int]]:
    """(queries, first, stop) per task, the largest first: one block of rows each."""
    if rows is None:  # row block k searches n - k x block_size columns
        return [(None, a, min(n, a + block_size)) for a in range(0, n, block_size)]
    return [(rows[a:a + block_size], 0, n) for a in range(0, len(rows), block_size)]


def find_pairs_ray(
    vectors: np.ndarray,
    settings: PairSettings,
    folders: np.ndarray | None = None,
    queries: np.ndarray | None = None,
    ray_settings: RaySettings | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> Pairs:
    """pairs.find_pairs (same arguments, same answer) with the search done by Ray tasks."""
    import ray

    settings.validate()
    ray_settings = ray_settings or RaySettings()
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    check_scope(settings, folders)
    rows = query_rows(len(x), settings, queries)
    radius = search_radius(settings)
    search = ray.remote(search_shard).options(num_cpus=1, max_retries=ray_settings.max_retries)
    x_ref = ray.put(x)
    pending = [search.remote(x_ref, radius, settings.block_size, q, a, b, settings.precision)
               for q, a, b in shards(len(x), rows, settings.block_size)]
    total, found_i, found_j = len(pending), [], []
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            i, j = ray.get(done[0])
            found_i.append(i)
            found_j.append(j)
            if on_progress:
                on_progress(total - len(pending), total)
    except ray.exceptions.RayError as exc:
        for ref in pending:
            ray.cancel(ref)
        raise EngineError(f"the Ray pair search failed: {exc}") from exc
    finally:
        del x_ref
    i = np.concatenate(found_i) if found_i else np.zeros(0, np.int64)
    j = np.concatenate(found_j) if found_j else np.zeros(0, np.int64)
    return pairs_from_candidates(x, i, j, settings, folders, partial=rows is not None)


__all__ = ["find_pairs_ray", "search_shard", "shards"]
