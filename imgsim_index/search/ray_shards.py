"""ray_shards: candidate pairs searched by Ray tasks, with the same contract as exact.py.

The vectors go into Ray's object store once (one shared, read-only copy per
node). Each task takes a shard and runs exact.exact_candidates on it: in a full
search, one block of rows against itself and every later row (so each pair is
scored once over all tasks); with query rows, one block of them against all
rows. Tasks return float32 candidates only; find_pairs applies the threshold
rule to their union, so the answer is exactly the local one. A task lost with
its worker is run again by Ray; it is a pure function of its shard, so a retry
cannot duplicate or lose pairs.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from imgsim_index.errors import EngineError
from imgsim_index.search.exact import exact_candidates
from imgsim_index.search.plan import OnProgress, SearchPlan
from imgsim_index.search.threshold import concat_candidates


def search_shard(x: np.ndarray, plan: SearchPlan, first: int, stop: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """One task's share: candidates of rows first..stop (or of plan.rows) against all rows."""
    return exact_candidates(x, plan, first=first, stop=stop)


def shards(n: int, plan: SearchPlan) -> list[tuple[SearchPlan, int, int]]:
    """(plan, first, stop) per task, the largest first: one block of rows each."""
    bs = plan.block_size
    if plan.rows is None:  # row block k searches n - k x block_size columns
        return [(plan, a, min(n, a + bs)) for a in range(0, n, bs)]
    return [(dataclasses.replace(plan, rows=plan.rows[a:a + bs]), 0, n)
            for a in range(0, len(plan.rows), bs)]


def ray_candidates(x: np.ndarray, plan: SearchPlan, on_progress: OnProgress | None = None,
                   max_retries: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """exact.exact_candidates (same contract) with the shards run as Ray tasks on the
    connected cluster."""
    import ray

    search = ray.remote(search_shard).options(num_cpus=1, max_retries=max_retries)
    x_ref = ray.put(x)
    pending = [search.remote(x_ref, p, a, b) for p, a, b in shards(len(x), plan)]
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
    return concat_candidates(found_i, found_j)


__all__ = ["ray_candidates", "search_shard", "shards"]
