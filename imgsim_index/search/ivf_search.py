"""ivf_search: an index folder with an on-disk IVF + threshold -> exact pairs of catalog ids,
in memory set by a budget, not by N.

Whole index: every current entry probes its lists (ivf_scan.scan_whole). New only: the
rows committed after a given commit are read in full precision and probe theirs
(ivf_scan.scan_queries); the same candidate rule, so the same pairs as a whole search
restricted to pairs with a new row. Candidates are then scored exactly from the vector
files (float64 dot products, the one threshold rule of threshold.py), in chunks.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from imgsim_index.index import ivf
from imgsim_index.index.catalog import Catalog
from imgsim_index.index.ivf_sync import RowKeys, VectorLookup, iter_vectors, row_keys
from imgsim_index.search.ivf_scan import (
    ListCache,
    Queries,
    cache_budget,
    default_budget,
    scan_order,
    scan_queries,
    scan_whole,
    unique_pairs,
)
from imgsim_index.search.settings import IVF_NPROBE, ApproxSettings
from imgsim_index.search.threshold import SCORE_DECIMALS, meets_threshold, search_radius

RESCORE_ROWS = 65_536  # candidate pairs scored exactly per step


@dataclass
class IdPairs:
    """Pairs of catalog ids (a < b), exact scores, highest first."""

    a: np.ndarray
    b: np.ndarray
    score: np.ndarray


@dataclass
class IvfSearchInfo:
    candidates: int
    pairs: int
    nprobe: int
    nlist: int
    parts: int
    vectors: int  # rows in scope
    queries: int | None  # rows searched from (new only), None for a whole search
    lists_read: int
    budget_bytes: int
    seconds: float


def rescore(lookup: VectorLookup, a: np.ndarray, b: np.ndarray, threshold: float) -> IdPairs:
    """Exact scores of candidate id pairs; those meeting `threshold`, highest first."""
    keep_a, keep_b, keep_s = [], [], []
    for s in range(0, len(a), RESCORE_ROWS):
        ca, cb = a[s:s + RESCORE_ROWS], b[s:s + RESCORE_ROWS]
        ids, inv = np.unique(np.concatenate([ca, cb]), return_inverse=True)
        x = lookup.read(ids).astype(np.float64)
        ia, ib = inv[:len(ca)], inv[len(ca):]
        score = np.einsum("ij,ij->i", x[ia], x[ib])
        ok = meets_threshold(score, threshold)
        keep_a.append(ca[ok])
        keep_b.append(cb[ok])
        keep_s.append(np.round(score[ok], SCORE_DECIMALS))
    pa, pb = _cat(keep_a, np.int64), _cat(keep_b, np.int64)
    ps = _cat(keep_s, np.float64)
    order = np.lexsort((pb, pa, -ps))
    return IdPairs(pa[order], pb[order], ps[order])


def ivf_pairs(folder: str, catalog: Catalog, manifest: ivf.IvfManifest, threshold: float,
              *, approx: ApproxSettings | None = None, prefixes: Sequence[str] | None = None,
              new_after: int | None = None, budget: int | None = None,
              on_progress: Callable[[int, int], None] | None = None,
              engine: Any = None) -> tuple[IdPairs, IvfSearchInfo]:
    """Pairs of the rows in scope (paths under `prefixes`, or all) meeting `threshold`;
    with `new_after`, only pairs with a row committed after that commit. `engine` (e.g.
    a RayEngine): runs a whole scan's groups of lists as its tasks; same pairs."""
    started = time.perf_counter()
    approx = approx or ApproxSettings()
    budget = budget or default_budget()
    nprobe = min(approx.probes_for(threshold, IVF_NPROBE), manifest.probes_stored)
    radius = search_radius(threshold)
    keys = row_keys(catalog, prefixes)
    coarse = ivf.load_coarse(folder, manifest)
    with ivf.open_parts(folder, manifest) as readers, VectorLookup(folder, catalog) as lookup:
        cache = ListCache(readers, coarse, keys.keys_of,
                          cache_budget(budget, keys.count, new_after is None))
        queries = None
        if new_after is None and engine is not None:
            u, v = engine.ivf_candidates(folder, manifest, keys, nprobe, radius,
                                         cache.budget, on_progress)
        elif new_after is None:
            u, v = scan_whole(cache, nprobe, radius, scan_order(coarse), on_progress)
        else:
            u, v, queries = _scan_new(folder, catalog, cache, keys, new_after, nprobe, radius,
                                      on_progress)
        a, b = unique_pairs(u, v)
        del u, v
        pairs = rescore(lookup, a, b, threshold)
    info = IvfSearchInfo(candidates=len(a), pairs=len(pairs.a), nprobe=nprobe,
                         nlist=manifest.nlist, parts=len(manifest.parts), vectors=keys.count,
                         queries=queries, lists_read=cache.reads, budget_bytes=budget,
                         seconds=time.perf_counter() - started)
    return pairs, info


def _scan_new(folder: str, catalog: Catalog, cache: ListCache, keys: RowKeys, after: int,
              nprobe: int, radius: float,
              on_progress: Callable[[int, int], None] | None = None
              ) -> tuple[np.ndarray, np.ndarray, int]:
    found_u, found_v, n = [], [], 0
    for step, (ids, x) in enumerate(iter_vectors(folder, catalog, after)):
        if on_progress:
            on_progress(step, step + 1)
        mine = keys.has(ids)  # in scope
        ids, x = ids[mine], x[mine]
        n += len(ids)
        if len(ids):
            u, v = scan_queries(cache, x, ids, keys.key(ids), nprobe, radius)
            found_u.append(u)
            found_v.append(v)
    return _cat(found_u, np.int64), _cat(found_v, np.int64), n


def _cat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)


class IvfSearcher:
    """What answers top-k queries against an index's IVF as of one commit, kept between
    queries (a service keeps one per commit): the row keys, the vector map, the open
    parts and a small list cache. Setup reads 28 bytes per catalog row once; each query
    then reads only its probed lists."""

    def __init__(self, folder: str, catalog: Catalog, manifest: ivf.IvfManifest,
                 budget: int | None = None):
        self.folder, self.manifest = folder, manifest
        self.seq = catalog.last_seq()
        # rows parked outside the index's folders (moved away by apply) are not searched
        self.keys = row_keys(catalog, [os.path.join(r, "") for r in sorted(catalog.roots())])
        self.coarse = ivf.load_coarse(folder, manifest)
        pending = [(ids, v) for ids, v in iter_vectors(folder, catalog, manifest.covered_seq)]
        self.pending = [(ids[self.keys.has(ids)], v[self.keys.has(ids)])
                        for ids, v in pending]
        self._parts = ivf.open_parts(folder, manifest)
        readers = self._parts.__enter__()
        try:
            self.lookup = VectorLookup(folder, catalog)
        except BaseException:
            self._parts.__exit__(None, None, None)
            raise
        self.cache = ListCache(readers, self.coarse, self.keys.keys_of,
                               cache_budget(budget or default_budget(), self.keys.count,
                                            False))
        self._lock = threading.Lock()  # a service's request threads share one searcher

    def top_k(self, x: np.ndarray, k: int, nprobe: int | None = None
              ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per query vector (rows of `x`, unit): the ids and exact scores (rounded to
        SCORE_DECIMALS) of its `k` best rows among its `nprobe` nearest lists (default:
        every stored probe) and the rows committed since the IVF's last update, best
        first. Candidates within the lists' quantization error of the k-th approximate
        score are scored again exactly, so the order is exact."""
        with self._lock:
            return self._top_k(x, k, nprobe)

    def _top_k(self, x: np.ndarray, k: int, nprobe: int | None
               ) -> list[tuple[np.ndarray, np.ndarray]]:
        m = self.manifest
        nprobe = min(nprobe or m.probes_stored, m.probes_stored)
        probes = self.coarse.probes(x, nprobe)
        prepared = Queries.of(x, self.coarse)
        out: list[tuple[np.ndarray, np.ndarray]] = []
        for q in range(len(x)):
            ids_parts, score_parts, err = [], [], 0.0
            one = prepared.rows(np.asarray([q]))
            for c in probes[q].tolist():
                for t in range(len(self.cache.readers)):
                    lst = self.cache.get(t, c)
                    ids_parts.append(lst.ids)
                    score_parts.append(one.scores(lst)[0])
                    err = max(err, lst.err)
            for ids, v in self.pending:
                ids_parts.append(ids)
                score_parts.append(v @ x[q])
            ids = _cat(ids_parts, np.int64)
            approx = _cat(score_parts, np.float32)
            if not len(ids):
                out.append((ids, np.zeros(0, np.float64)))
                continue
            kk = min(k, len(ids))
            kth = np.partition(approx, len(approx) - kk)[len(approx) - kk]
            cand = np.flatnonzero(approx >= kth - 2 * err - 1e-3)
            exact = self.lookup.read(ids[cand]).astype(np.float64) @ x[q].astype(np.float64)
            order = np.lexsort((ids[cand], -exact))[:kk]
            out.append((ids[cand][order], np.round(exact[order], SCORE_DECIMALS)))
        return out

    def close(self) -> None:
        self.lookup.close()
        self._parts.__exit__(None, None, None)

    def __enter__(self) -> IvfSearcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def ivf_top_k(folder: str, catalog: Catalog, manifest: ivf.IvfManifest, x: np.ndarray,
              k: int, nprobe: int | None = None, budget: int | None = None
              ) -> list[tuple[np.ndarray, np.ndarray]]:
    """IvfSearcher.top_k for a one-off query."""
    with IvfSearcher(folder, catalog, manifest, budget) as searcher:
        return searcher.top_k(x, k, nprobe)


__all__ = ["IdPairs", "IvfSearchInfo", "IvfSearcher", "ivf_pairs", "ivf_top_k", "rescore"]
