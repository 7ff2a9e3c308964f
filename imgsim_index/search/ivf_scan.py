"""ivf_scan: candidate pairs from the on-disk IVF (index/ivf.py) in bounded memory, then
exact scores from the full-precision vector files.

The rule that makes a pair a candidate, the same for a whole-index scan and for a scan of
a few new vectors: the *later* vector of the pair (by catalog commit, then id) probes the
earlier one's list, i.e. home(v) is among the first `nprobe` cells of u, where u is later.
A new-only dedupe therefore finds exactly the pairs a whole dedupe finds that involve a
new vector (tests compare them).

Whole scan, in passes: each pass holds one block of target lists (neighbours in a greedy
walk over the centroids, as many as the memory budget holds, each read once) and streams
the query lists, scoring only the entries whose stored probes name a list of the block;
scores are float32 GEMMs against the SQ8 codes kept as floats. An approximate score
differs from the exact one by at most e_u + e_v + e_u e_v (the two reconstruction errors,
measured per list when the codes were written), so candidates are taken at radius - that
bound - 1e-4 (float32 rounding) and nothing is lost to quantization; only the cells can
miss a pair (recall in benchmarks/bench_scale.py).
Memory: one block of lists, one GEMM tile, 8 bytes per candidate and per catalog id.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from imgsim_index.index.ivf import Coarse, Part, PartReader

F32_SLACK = 1e-4  # float32 GEMM rounding at d <= 4096, with room to spare
TILE_ROWS = 2048


@dataclass
class _List:
    ids: np.ndarray
    # the SQ8 codes as float32 (n, d): a vector is vmin + step * codes, so a score is
    # (q * step) . codes + q . vmin: one conversion per list read, no decode per score
    codes: np.ndarray
    keys: np.ndarray  # (seq << 32 | id) of the entries kept: current and in scope
    err: float
    pos: np.ndarray  # where the kept entries are in the list on disk

    @property
    def nbytes(self) -> int:
        return self.codes.nbytes + self.ids.nbytes + self.keys.nbytes


@dataclass
class Queries:
    """Query vectors prepared for scores against code lists: x * step and x . vmin."""

    scaled: np.ndarray
    offset: np.ndarray

    @classmethod
    def of(cls, x: np.ndarray, coarse: Coarse) -> Queries:
        return cls(np.ascontiguousarray(x * coarse.step, np.float32),
                   (x @ coarse.vmin).astype(np.float32))

    def rows(self, rows: np.ndarray) -> Queries:
        return Queries(self.scaled[rows], self.offset[rows])

    def scores(self, target: _List) -> np.ndarray:
        out = self.scaled @ target.codes.T
        out += self.offset[:, None]
        return out


class ListCache:
    """Decoded lists by (part, cell), least recently used dropped past `budget` bytes."""

    def __init__(self, readers: list[PartReader], coarse: Coarse,
                 keys_of: Callable[[np.ndarray, Part], np.ndarray], budget: int):
        self.readers, self.coarse, self.keys_of = readers, coarse, keys_of
        self.budget, self.used = budget, 0
        self._lists: OrderedDict[tuple[int, int], _List] = OrderedDict()
        self.reads = self.hits = 0

    def get(self, k: int, c: int) -> _List:
        key = (k, c)
        got = self._lists.get(key)
        if got is not None:
            self._lists.move_to_end(key)
            self.hits += 1
            return got
        got = self.load(k, c)
        self._lists[key] = got
        self.used += got.nbytes
        while self.used > self.budget and len(self._lists) > 1:
            _, old = self._lists.popitem(last=False)
            self.used -= old.nbytes
        return got

    def load(self, k: int, c: int, rows: np.ndarray | None = None) -> _List:
        """List c of part k read from disk (its current, in-scope entries; with `rows`, only
        those of its positions), not kept."""
        r = self.readers[k]
        ids, codes = r.list_entries(c)
        keys = self.keys_of(ids, r.part)
        ok = keys >= 0  # stale and out-of-scope entries are never scored
        if rows is not None:
            ok &= rows
        pos = np.flatnonzero(ok)
        if len(pos) < len(ids):
            ids, codes, keys = ids[pos], codes[pos], keys[pos]
        self.reads += 1
        return _List(ids, codes.astype(np.float32), keys, float(r.maxerr[c]), pos)

    def list_bytes(self, c: int) -> int:
        """What list c of every part takes decoded (an upper bound: stale entries count)."""
        return sum(int(r.sizes[c]) * (4 * r.dim + 16) for r in self.readers)


def _above(q: Queries, kq: np.ndarray, eq: float, target: _List, radius: float,
           later_only: bool) -> tuple[np.ndarray, np.ndarray]:
    """(query positions, target positions) whose approximate score may reach `radius`."""
    if not len(target.ids) or not len(q.offset):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    et = target.err
    cut = np.float32(radius - (eq + et + eq * et) - F32_SLACK)
    qs, ts = [], []
    for s in range(0, len(q.offset), TILE_ROWS):
        tile = Queries(q.scaled[s:s + TILE_ROWS], q.offset[s:s + TILE_ROWS])
        a, b = np.nonzero(tile.scores(target) >= cut)
        if later_only:  # the later vector of a pair probes the earlier one's list
            later = target.keys[b] < kq[s + a]
            a, b = a[later], b[later]
        qs.append(a + s)
        ts.append(b)
    return np.concatenate(qs), np.concatenate(ts)


def scan_order(coarse: Coarse, neighbours: int = 32) -> np.ndarray:
    """The cells in an order where each is followed by one of its nearest (a greedy walk
    over the centroids): lists probed by one query list are mostly probed by the next
    ones too, so the cache keeps them."""
    import faiss

    q = faiss.downcast_index(coarse.quantizer)
    flat = faiss.downcast_index(q.index) if isinstance(q, faiss.IndexPreTransform) else q
    centroids = flat.reconstruct_n(0, flat.ntotal)
    _, near = flat.search(centroids, min(neighbours, len(centroids)))
    seen = np.zeros(len(centroids), bool)
    order, cur, scan = [], 0, 0
    for _ in range(len(centroids)):
        seen[cur] = True
        order.append(cur)
        nxt = [int(j) for j in near[cur] if j >= 0 and not seen[j]]
        if nxt:
            cur = nxt[0]
            continue
        while scan < len(seen) and seen[scan]:
            scan += 1
        if scan == len(seen):
            break
        cur = scan
    return np.asarray(order, np.int64)


def _by_cell(probes: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """(cell, query rows probing it) for every cell in `probes` (n, nprobe)."""
    flat = probes.ravel()
    rows = np.repeat(np.arange(len(probes)), probes.shape[1])
    order = np.argsort(flat, kind="stable")
    cells, first = np.unique(flat[order], return_index=True)
    bounds = np.append(first, len(order))
    return [(int(c), rows[order[a:b]]) for c, a, b in
            zip(cells.tolist(), bounds[:-1].tolist(), bounds[1:].tolist(), strict=True)]


def _blocks(cells: np.ndarray, cache: ListCache) -> list[np.ndarray]:
    """`cells` cut into runs whose decoded lists (every part) fit the cache's budget."""
    out, start, used = [], 0, 0
    for i, c in enumerate(cells.tolist()):
        size = cache.list_bytes(c)
        if used and used + size > cache.budget:
            out.append(cells[start:i])
            start, used = i, 0
        used += size
    if start < len(cells):
        out.append(cells[start:])
    return out


def scan_whole(cache: ListCache, nprobe: int, radius: float, order: np.ndarray,
               on_progress: Callable[[int, int], None] | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Candidate (later id, earlier id) pairs of the entries of the lists `order` (every
    list: a whole scan), in passes. A pass holds one block of target lists (neighbours in
    the centroid walk, as many as the cache budget holds, each read and converted once)
    and streams the query lists, scoring only the rows that probe the block: a list is
    read as a target once in all, whatever the data's spread, and as a query once per
    pass (its probes first, then the codes of the rows that need them)."""
    readers = cache.readers
    nlist = len(readers[0].sizes) if readers else 0
    probed = np.zeros(nlist, bool)
    for r in readers:
        for c in order.tolist():
            if r.sizes[c]:
                probed[r.list_probes(c)[:, :nprobe].ravel()] = True
    walk = scan_order(cache.coarse) if nlist else np.zeros(0, np.int64)
    blocks = _blocks(walk[probed[walk]], cache)
    found_u: list[np.ndarray] = []
    found_v: list[np.ndarray] = []
    total, step = len(blocks) * len(order) * len(readers), 0
    for block in blocks:
        in_block = np.zeros(nlist, bool)
        in_block[block] = True
        targets = {(t, c): cache.load(t, c) for c in block.tolist() for t in range(len(readers))}
        for k, r in enumerate(readers):
            for c in order.tolist():
                step += 1
                if on_progress and (step % 256 == 0 or step == total):
                    on_progress(step, total)
                if not r.sizes[c]:
                    continue
                probes = r.list_probes(c)[:, :nprobe]
                hits = in_block[probes]
                q = cache.load(k, c, hits.any(axis=1))
                if not len(q.ids):
                    continue
                probes, hits = probes[q.pos], hits[q.pos]
                prepared = Queries.of(cache.coarse.decode(q.codes), cache.coarse)
                for cell, rows in _by_cell(np.where(hits, probes, -1)):
                    if cell < 0:
                        continue
                    for t in range(len(readers)):
                        target = targets[(t, cell)]
                        a, b = _above(prepared.rows(rows), q.keys[rows], q.err, target,
                                      radius, True)
                        found_u.append(q.ids[rows[a]])
                        found_v.append(target.ids[b])
        del targets
    return _concat(found_u), _concat(found_v)


def scan_queries(cache: ListCache, xq: np.ndarray, ids: np.ndarray, keys: np.ndarray,
                 nprobe: int, radius: float, later_only: bool = True
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Candidate (query id, target id) pairs of full-precision query vectors."""
    probes = cache.coarse.probes(xq, nprobe)
    prepared = Queries.of(xq, cache.coarse)
    found_u, found_v = [], []
    for cell, rows in _by_cell(probes):
        for t in range(len(cache.readers)):
            target = cache.get(t, cell)
            a, b = _above(prepared.rows(rows), keys[rows], 0.0, target, radius, later_only)
            found_u.append(ids[rows[a]])
            found_v.append(target.ids[b])
    u, v = _concat(found_u), _concat(found_v)
    keep = u != v
    return u[keep], v[keep]


def _concat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)


def unique_pairs(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each unordered pair once, as (smaller id, larger id), sorted."""
    a, b = np.minimum(u, v), np.maximum(u, v)
    code = np.unique(a.astype(np.int64) << 32 | b.astype(np.int64))
    return code >> 32, code & 0xFFFFFFFF


def default_budget() -> int:
    """A tenth of the machine's memory, between 512 MiB and 4 GiB (2.4 GiB at 24 GiB)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 << 30
    return int(min(max(total // 10, 512 << 20), 4 << 30))


PER_ROW_BYTES = 40  # what a search keeps per catalog row: keys, the vector lookup's map
SMALL_CACHE = 64 << 20  # a search from few rows reads each probed list once: no reuse
# the rest of a dedupe process: Python, numpy, FAISS, SQLite, tiles, candidates (a whole
# dedupe of a 30,000-vector IVF index peaked at 0.16 GiB, benchmarks/bench_scale.py)
PROCESS_BYTES = 320 << 20


def cache_budget(budget: int, rows: int, whole: bool) -> int:
    """The bytes of decoded lists a search may keep: the budget (the whole process's) less
    what it holds per catalog row, its tiles and the process itself; a new-only search
    keeps little (it reads each probed list once)."""
    left = max(budget - PER_ROW_BYTES * rows - PROCESS_BYTES, 64 << 20)
    return left if whole else min(left, SMALL_CACHE)


__all__ = ["ListCache", "Queries", "cache_budget", "default_budget", "scan_order",
           "scan_queries", "scan_whole",
           "unique_pairs"]
