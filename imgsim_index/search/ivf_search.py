"""ivf_search: an index folder with an on-disk IVF + threshold -> exact pairs of catalog ids,
in memory set by a budget, not by N.

Whole index: every current entry probes its lists (ivf_scan.scan_whole). New only: the
rows committed after a given commit are read in full precision and probe theirs
(ivf_scan.scan_queries); the same candidate rule, so the same pairs as a whole search
restricted to pairs with a new row. Rows committed after the IVF's last update (pending:
a writer stopped before filing them, or a reader's snapshot is newer than the IVF) are
searched in both: they probe the lists and are scored exactly against each other; their
old entries, if any, are stale and skipped. Candidates are then scored exactly from the
vector files (float64 dot products, the one threshold rule of threshold.py), in chunks.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from imgsim_index.errors import IndexFormatError
from imgsim_index.index import ivf
from imgsim_index.index.catalog import Catalog
from imgsim_index.index.ivf_sync import (
    RowKeys,
    VectorLookup,
    iter_vectors,
    keys_of_ids,
    row_keys,
)
from imgsim_index.search.ivf_scan import (
    F32_SLACK,
    SMALL_CACHE,
    TILE_ROWS,
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
from imgsim_index.search.threshold import (
    SCORE_DECIMALS,
    meets_threshold,
    rescore_step,
    search_radius,
)

PENDING_ROWS = 8_192  # new or pending rows read per step
# more rows than this not yet filed into the IVF are refused (scored against each other
# they would cost O(P^2)): a dedupe or `verify --repair` files them
PENDING_MAX = 200_000


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
    s, step = 0, rescore_step(0)  # a first small step, then sized by the vectors' dim
    while s < len(a):
        ca, cb = a[s:s + step], b[s:s + step]
        s += len(ca)
        ids, inv = np.unique(np.concatenate([ca, cb]), return_inverse=True)
        x = lookup.read(ids).astype(np.float64)
        step = rescore_step(x.shape[1])
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


def ivf_pairs(folder: str, catalog: Catalog, source: ivf.IvfManifest | ivf.OpenIvf,
              threshold: float,
              *, approx: ApproxSettings | None = None, prefixes: Sequence[str] | None = None,
              new_after: int | None = None, budget: int | None = None,
              on_progress: Callable[[int, int], None] | None = None,
              engine: Any = None) -> tuple[IdPairs, IvfSearchInfo]:
    """Pairs of the rows in scope (paths under `prefixes`, or all) meeting `threshold`;
    with `new_after`, only pairs with a row committed after that commit. `source`: the
    IVF opened (ivf.open_ivf) before the caller's catalog snapshot was taken, or its
    manifest (its parts are opened here). `engine` (e.g. a RayEngine): runs a whole
    scan's groups of lists as its tasks; same pairs."""
    with _opened(folder, source) as opened:
        return _ivf_pairs(folder, catalog, opened, threshold, approx=approx,
                          prefixes=prefixes, new_after=new_after, budget=budget,
                          on_progress=on_progress, engine=engine)


@contextlib.contextmanager
def _opened(folder: str, source: ivf.IvfManifest | ivf.OpenIvf) -> Iterator[ivf.OpenIvf]:
    """`source` when open (the caller closes it), else its parts opened for the call."""
    if isinstance(source, ivf.OpenIvf):
        yield source
    else:
        with ivf.OpenIvf.of(folder, source) as opened:
            yield opened


def _ivf_pairs(folder: str, catalog: Catalog, opened: ivf.OpenIvf, threshold: float, *,
               approx: ApproxSettings | None, prefixes: Sequence[str] | None,
               new_after: int | None, budget: int | None,
               on_progress: Callable[[int, int], None] | None, engine: Any
               ) -> tuple[IdPairs, IvfSearchInfo]:
    manifest, coarse = opened.manifest, opened.coarse
    started = time.perf_counter()
    approx = approx or ApproxSettings()
    budget = budget or default_budget()
    nprobe = min(approx.probes_for(threshold, IVF_NPROBE), manifest.probes_stored)
    radius = search_radius(threshold)
    if new_after is not None:
        a, b, queries, count, reads, pairs = _new_pairs(
            folder, catalog, opened, threshold, prefixes, new_after, nprobe, on_progress)
    else:
        keys = row_keys(catalog, prefixes)
        pending = _pending(folder, keys, manifest)
        cache = ListCache(opened.readers, coarse, keys.keys_of,
                          cache_budget(budget, keys.count, True))
        if engine is not None:
            u, v = engine.ivf_candidates(folder, manifest, keys, nprobe, radius,
                                         cache.budget, on_progress)
        else:
            u, v = scan_whole(cache, nprobe, radius, scan_order(coarse), on_progress)
        with VectorLookup.whole(folder, catalog) as lookup:
            pu, pv, _, _ = _scan_pending(cache, lookup, keys, pending, None, nprobe, radius)
            a, b = unique_pairs(np.concatenate([u, pu]), np.concatenate([v, pv]))
            del u, v, pu, pv
            pairs = rescore(lookup, a, b, threshold)
        queries, count, reads = None, keys.count, cache.reads
    info = IvfSearchInfo(candidates=len(a), pairs=len(pairs.a), nprobe=nprobe,
                         nlist=manifest.nlist, parts=len(manifest.parts), vectors=count,
                         queries=queries, lists_read=reads, budget_bytes=budget,
                         seconds=time.perf_counter() - started)
    return pairs, info


def _new_pairs(folder: str, catalog: Catalog, opened: ivf.OpenIvf, threshold: float,
               prefixes: Sequence[str] | None, after: int, nprobe: int,
               on_progress: Callable[[int, int], None] | None
               ) -> tuple[np.ndarray, np.ndarray, int, int, int, IdPairs]:
    """A new-only search whose work follows the new rows, not N: the rows committed after
    `after` (found by commit) probe their lists; every entry of a probed list is scored,
    and only the candidates' rows are then looked up in the catalog to drop stale,
    out-of-scope and earlier-probing entries (the same rule a whole scan applies before
    scoring, so the same pairs). Returns (candidates a, b, queries, rows in scope, lists
    read, pairs)."""
    manifest = opened.manifest
    radius = search_radius(threshold)
    keys = row_keys(catalog, prefixes, min(after, manifest.covered_seq))
    pending = _pending(folder, keys, manifest)
    cache = ListCache(opened.readers, opened.coarse, _every_entry, SMALL_CACHE)
    with VectorLookup(folder, catalog) as lookup:
        u, v, t, queries = _scan_new(cache, lookup, keys, after, manifest, nprobe, radius,
                                     on_progress)
        pu, pv, pt, pq = _scan_pending(cache, lookup, keys, pending, after, nprobe, radius,
                                       later_only=False)
        u, v, t = np.concatenate([u, pu]), np.concatenate([v, pv]), np.concatenate([t, pt])
        targets = keys_of_ids(catalog, np.unique(v[t != -1]), prefixes)
        ids, first = np.unique(np.concatenate([keys.ids, targets.ids]), return_index=True)
        both = RowKeys.of(ids, np.concatenate([keys.seqs, targets.seqs])[first])
        keep = _current(u, v, t, both, manifest)
        a, b = unique_pairs(u[keep], v[keep])
        new = np.maximum(both.seq_of(a), both.seq_of(b)) > after
        a, b = a[new], b[new]
        pairs = rescore(lookup, a, b, threshold)
    return a, b, queries + pq, catalog.count_embedded(prefixes), cache.reads, pairs


def _every_entry(ids: np.ndarray, part: ivf.Part) -> np.ndarray:
    """A new-only scan keeps every entry of a list (checked after scoring)."""
    return np.zeros(len(ids), np.int64)


def _current(u: np.ndarray, v: np.ndarray, t: np.ndarray, keys: RowKeys,
             manifest: ivf.IvfManifest) -> np.ndarray:
    """Which candidates (query u, target v found in part t; -1: a pending row, scored from
    its vector) stand: v a row in scope, its entry current (its commit inside the part's
    range), and u the later of the two (by commit, then id)."""
    at, found = keys.position(v)
    sv = np.where(found, keys.seqs[at] if len(keys.seqs) else -1, -1)
    su = keys.seq_of(u)
    filed = t >= 0
    part = np.where(filed, t, 0)
    lo = np.asarray([p.from_seq for p in manifest.parts], np.int64)[part]
    hi = np.asarray([p.to_seq for p in manifest.parts], np.int64)[part]
    current = ~filed | ((sv > lo) & (sv <= hi))
    later = ~filed | (su > sv) | ((su == sv) & (u > v))
    return found & (u != v) & current & later


def _pending(folder: str, keys: RowKeys, manifest: ivf.IvfManifest) -> np.ndarray:
    """The ids in scope committed after the IVF's last update (ascending)."""
    pending = keys.ids[keys.seqs > manifest.covered_seq]
    if len(pending) > PENDING_MAX:
        raise IndexFormatError(f"{folder}: {len(pending):,} rows are not in the IVF yet; a "
                               "dedupe or `imgsim-index verify --repair` files them")
    return pending


def _scan_new(cache: ListCache, lookup: VectorLookup, keys: RowKeys, after: int,
              manifest: ivf.IvfManifest, nprobe: int, radius: float,
              on_progress: Callable[[int, int], None] | None = None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Candidates (query, target, the target's part) of the rows in scope committed after
    `after` that the IVF holds, with the number of those rows; their vectors read by
    position (never whole vector files: after a compaction one holds N)."""
    filed = (keys.seqs > after) & (keys.seqs <= manifest.covered_seq)
    rows, seqs = keys.ids[filed], keys.seqs[filed]
    found_u, found_v, found_t = [], [], []
    steps = range(0, len(rows), PENDING_ROWS)
    for step, s in enumerate(steps):
        if on_progress:
            on_progress(step, len(steps))
        ids = rows[s:s + PENDING_ROWS]
        x = lookup.read(ids)
        home = _part_of(manifest, seqs[s:s + PENDING_ROWS])
        u, v, t = scan_queries(cache, x, ids, keys.key(ids), nprobe, radius, later_only=False,
                               probes=_stored_probes(cache, ids, x, nprobe, home))
        found_u.append(u)
        found_v.append(v)
        found_t.append(t)
    return (_cat(found_u, np.int64), _cat(found_v, np.int64), _cat(found_t, np.int64),
            len(rows))


def _part_of(manifest: ivf.IvfManifest, seqs: np.ndarray) -> np.ndarray:
    """The part that holds the entry of rows committed at `seqs` (covered by the IVF)."""
    out = np.full(len(seqs), -1, np.int64)
    for k, p in enumerate(manifest.parts):
        out[(seqs > p.from_seq) & (seqs <= p.to_seq)] = k
    return out


def _stored_probes(cache: ListCache, ids: np.ndarray, x: np.ndarray, nprobe: int,
                   home: np.ndarray | None = None) -> np.ndarray:
    """The first `nprobe` stored probes of rows the IVF holds (a whole scan probes with
    these: the same cells, not FAISS's recomputation, whose near-ties can differ). Each
    row is looked for in the lists nearest it, nearest first, until found in its home;
    `home`: the part that holds each row's current entry (else any part's current one)."""
    out = np.empty((len(ids), nprobe), np.int64)
    todo = np.arange(len(ids))
    for k in (min(ivf.PROBES_STORED, cache.coarse.nlist), cache.coarse.nlist):
        cells = cache.coarse.probes(x[todo], k)
        for col in range(k):
            if not len(todo):
                return out
            found, probes = _find_entries(cache, ids[todo], cells[:, col], nprobe,
                                          None if home is None else home[todo])
            out[todo[found]] = probes[found]
            todo, cells = todo[~found], cells[~found]
    if len(todo):
        raise IndexFormatError("the IVF lacks rows it should hold; run "
                               "`imgsim-index verify --repair`")
    return out


def _find_entries(cache: ListCache, want: np.ndarray, cells: np.ndarray, nprobe: int,
                  home: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Whether each id of `want` is an entry of list cells[i] (in part home[i] when given,
    else a current one), and if so its first `nprobe` stored probes."""
    found = np.zeros(len(want), bool)
    probes = np.zeros((len(want), nprobe), np.int64)
    order = np.argsort(cells, kind="stable")
    uniq, first = np.unique(cells[order], return_index=True)
    for c, lo, hi in zip(uniq.tolist(), first.tolist(), [*first[1:].tolist(), len(order)],
                         strict=True):
        sel = order[lo:hi]
        for k, reader in enumerate(cache.readers):
            mine = sel if home is None else sel[home[sel] == k]
            if not len(mine):
                continue
            lst = cache.get(k, c)
            if not len(lst.ids):
                continue
            by_id = np.argsort(lst.ids)
            at = np.minimum(np.searchsorted(lst.ids[by_id], want[mine]), len(by_id) - 1)
            hit = lst.ids[by_id[at]] == want[mine]
            if hit.any():
                pos = lst.pos[by_id[at[hit]]]  # where they are in the list on disk
                probes[mine[hit]] = reader.list_probes(c)[pos, :nprobe]
                found[mine[hit]] = True
    return found, probes


def _scan_pending(cache: ListCache, lookup: VectorLookup, keys: RowKeys, pending: np.ndarray,
                  after: int | None, nprobe: int, radius: float, later_only: bool = True
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Candidates of the pending rows (those committed after `after`, when given): they
    probe the lists (the later row of a pair probes: every filed row is earlier) and are
    scored against every pending row (float32 GEMM tiles). Returns them (query, target,
    the target's part, -1 for a pending target) and the count of pending rows searched
    from."""
    queries = pending if after is None else pending[keys.seq_of(pending) > after]
    found_u, found_v, found_t = [], [], []
    for s in range(0, len(queries), PENDING_ROWS):
        q = queries[s:s + PENDING_ROWS]
        xq = lookup.read(q)
        u, v, t = scan_queries(cache, xq, q, keys.key(q), nprobe, radius, later_only)
        found_u.append(u)
        found_v.append(v)
        found_t.append(t)
        for r0 in range(0, len(pending), PENDING_ROWS):
            p = pending[r0:r0 + PENDING_ROWS]
            if after is None and p[-1] < q[0]:
                continue  # (q, p) found as (p, q) already
            xp = xq if np.array_equal(p, q) else lookup.read(p)
            for r in range(0, len(q), TILE_ROWS):
                i, j = np.nonzero(xq[r:r + TILE_ROWS] @ xp.T >= radius - F32_SLACK)
                i += r
                keep = q[i] != p[j]
                found_u.append(q[i[keep]])
                found_v.append(p[j[keep]])
                found_t.append(np.full(int(keep.sum()), -1, np.int64))
    return (_cat(found_u, np.int64), _cat(found_v, np.int64), _cat(found_t, np.int64),
            len(queries))


def _cat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)


class IvfSearcher:
    """What answers top-k queries against an index's IVF as of one commit, kept between
    queries (a service keeps one per commit): the row keys, the vector map, the open
    parts and a small list cache. Setup reads 28 bytes per catalog row once; each query
    then reads only its probed lists. `source`: the IVF opened (ivf.open_ivf) before the
    caller's catalog snapshot was taken (the searcher closes it), or its manifest."""

    def __init__(self, folder: str, catalog: Catalog,
                 source: ivf.IvfManifest | ivf.OpenIvf, budget: int | None = None):
        self._ivf = source if isinstance(source, ivf.OpenIvf) else ivf.OpenIvf.of(folder,
                                                                                   source)
        try:
            self._setup(folder, catalog, budget)
        except BaseException:
            self._ivf.close()
            raise

    def _setup(self, folder: str, catalog: Catalog, budget: int | None) -> None:
        manifest = self._ivf.manifest
        self.folder, self.manifest = folder, manifest
        self.seq = catalog.last_seq()
        # rows parked outside the index's folders (moved away by apply) are not searched
        self.keys = row_keys(catalog, [os.path.join(r, "") for r in sorted(catalog.roots())])
        self.coarse = self._ivf.coarse
        pending = [(ids, v) for ids, v in iter_vectors(folder, catalog, manifest.covered_seq)]
        self.pending = [(ids[self.keys.has(ids)], v[self.keys.has(ids)])
                        for ids, v in pending]
        self.lookup = VectorLookup.whole(folder, catalog)
        self.cache = ListCache(self._ivf.readers, self.coarse, self.keys.keys_of,
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
        self._ivf.close()

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
