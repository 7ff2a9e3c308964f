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
from typing import Any

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
    try:
        return _gather([search.remote(x_ref, p, a, b) for p, a, b in shards(len(x), plan)],
                       on_progress, "pair search")
    finally:
        del x_ref


def _gather(pending: list[Any], on_progress: OnProgress | None, what: str
            ) -> tuple[np.ndarray, np.ndarray]:
    """The union of the tasks' (i, j) candidates, reporting each task done; a failed task
    cancels the rest: EngineError."""
    import ray

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
        raise EngineError(f"the Ray {what} failed: {exc}") from exc
    return concat_candidates(found_i, found_j)


def scan_cell_group(folder: str, manifest: Any, keys: Any, cells: np.ndarray,
                    nprobe: int, radius: float, cache_bytes: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """One task's share of a whole on-disk IVF scan: the query lists `cells` (every part)
    against the lists their entries probe, read from the index folder (shared storage)."""
    from imgsim_index.index import ivf
    from imgsim_index.search.ivf_scan import ListCache, scan_whole

    coarse = ivf.load_coarse(folder, manifest)
    with ivf.open_parts(folder, manifest) as readers:
        cache = ListCache(readers, coarse, keys.keys_of, cache_bytes)
        return scan_whole(cache, nprobe, radius, cells)


def ray_ivf_candidates(folder: str, manifest: Any, keys: Any, nprobe: int,
                       radius: float, cache_bytes: int, tasks: int,
                       on_progress: OnProgress | None = None, max_retries: int = 4,
                       memory: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """ivf_scan.scan_whole over every list, the lists split into `tasks` groups of
    consecutive cells (neighbours in the scan order share the lists they probe), each a
    Ray task asking for `memory` bytes of the node's memory (0: none asked); the union is
    exactly the local scan's candidates."""
    import ray

    scan = ray.remote(scan_cell_group).options(num_cpus=1, max_retries=max_retries,
                                               **({"memory": memory} if memory else {}))
    keys_ref = ray.put(keys)
    from imgsim_index.index import ivf
    from imgsim_index.search.ivf_scan import scan_order

    # consecutive cells of the local scan's order: neighbours share the lists they probe
    groups = np.array_split(scan_order(ivf.load_coarse(folder, manifest)), max(1, tasks))
    try:
        return _gather([scan.remote(folder, manifest, keys_ref, g, nprobe, radius, cache_bytes)
                        for g in groups if len(g)], on_progress, "IVF scan")
    finally:
        del keys_ref


__all__ = ["ray_candidates", "ray_ivf_candidates", "scan_cell_group", "search_shard", "shards"]
