"""ivf_scan: candidate pairs from the on-disk IVF (index/ivf.py) in bounded memory, then
exact scores from the full-precision vector files.

The rule that makes a pair a candidate, the same for a whole-index scan and for a scan of
a few new vectors: the *later* vector of the pair (by catalog commit, then id) probes the
earlier one's list, i.e. home(v) is among the first `nprobe` cells of u, where u is later.
A new-only dedupe therefore finds exactly the pairs a whole dedupe finds that involve a
new vector (tests compare them).

Whole scan, in passes (scan_whole): each pass gathers the query rows that probe one block
of target lists (neighbours in a greedy walk over the centroids) and scores each target
once against all of them: float32 GEMMs against the SQ8 codes converted to floats.
An approximate score differs from the exact one by at most e_u + e_v + e_u e_v (the two
reconstruction errors, measured per list when the codes were written), so candidates are
taken at radius - that bound - 1e-4 (float32 rounding) and nothing is lost to
quantization; only the cells can miss a pair (recall in benchmarks/bench_scale.py).
Memory: one block of gathered rows (as stored codes), one target and one GEMM tile, 8
bytes per candidate and 40 per catalog row.
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

    def load(self, k: int, c: int, rows: np.ndarray | None = None,
             as_float: bool = True) -> _List:
        """List c of part k read from disk (its current, in-scope entries; with `rows`, only
        those of its positions), not kept; codes as float32, or as stored (uint8)."""
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
        return _List(ids, codes.astype(np.float32) if as_float else codes.copy(), keys,
                     float(r.maxerr[c]), pos)


def _above(q: Queries, kq: np.ndarray, eq: float | np.ndarray, target: _List, radius: float,
           later_only: bool) -> tuple[np.ndarray, np.ndarray]:
    """(query positions, target positions) whose approximate score may reach `radius`;
    `eq`: the queries' reconstruction error bound (one, or one per query)."""
    if not len(target.ids) or not len(q.offset):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    et = target.err
    cut = np.asarray(radius - (eq + et + eq * et) - F32_SLACK, np.float32)
    qs, ts = [], []
    for s in range(0, len(q.offset), TILE_ROWS):
        tile = Queries(q.scaled[s:s + TILE_ROWS], q.offset[s:s + TILE_ROWS])
        a, b = np.nonzero(tile.scores(target) >= (cut if cut.ndim == 0 else
                                                  cut[s:s + TILE_ROWS, None]))
        if later_only:  # the later vector of a pair probes the earlier one's list
            later = target.keys[b] < kq[s + a]
            a, b = a[later], b[later]
        qs.append(a + s)
        ts.append(b)
    return np.concatenate(qs), np.concatenate(ts)


def scan_order(coarse: Coarse, neighbours: int = 32) -> np.ndarray:
    """The cells in an order where each is followed by one of its nearest (a greedy walk
    over the centroids): the blocks of a whole scan are runs of it, so a block holds
    neighbouring cells, which the same rows tend to probe."""
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


def _blocks(cells: np.ndarray, cost: np.ndarray, budget: int) -> list[np.ndarray]:
    """`cells` cut into runs whose summed `cost` (bytes) fits `budget` (one cell at least)."""
    out, start, used = [], 0, 0
    for i, c in enumerate(cells.tolist()):
        if used and used + int(cost[c]) > budget:
            out.append(cells[start:i])
            start, used = i, 0
        used += int(cost[c])
    if start < len(cells):
        out.append(cells[start:])
    return out


@dataclass
class _Gathered:
    """The query rows of one pass that probe its block (codes as stored), and per probe
    into the block the probed cell and the row; allocated once at the pass's exact size
    (no copies made while gathering), filled up to n rows and m probes."""

    codes: np.ndarray
    ids: np.ndarray
    keys: np.ndarray
    err: np.ndarray
    cell: np.ndarray
    row: np.ndarray
    n: int = 0
    m: int = 0

    @classmethod
    def allocate(cls, rows: int, probes: int, dim: int) -> _Gathered:
        return cls(np.empty((rows, dim), np.uint8), np.empty(rows, np.int64),
                   np.empty(rows, np.int64), np.empty(rows, np.float32),
                   np.empty(probes, np.int64), np.empty(probes, np.int64))

    def add(self, q: _List, cells: np.ndarray, at: np.ndarray) -> None:
        n, m, k = self.n, self.m, len(q.ids)
        self.codes[n:n + k] = q.codes
        self.ids[n:n + k] = q.ids
        self.keys[n:n + k] = q.keys
        self.err[n:n + k] = q.err
        self.cell[m:m + len(at)] = cells
        self.row[m:m + len(at)] = at + n
        self.n, self.m = n + k, m + len(at)


def _block_sizes(readers: list[PartReader], order: np.ndarray, nprobe: int,
                 blocks: list[np.ndarray], nlist: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, probes) per block: the query rows that probe a block (once each, however
    many of its cells they probe) and their probes into it; stale entries included."""
    block_of = np.zeros(nlist, np.int64)
    for i, b in enumerate(blocks):
        block_of[b] = i
    rows = np.zeros(len(blocks), np.int64)
    probes = np.zeros(len(blocks), np.int64)
    for r in readers:
        for c in order.tolist():
            if r.sizes[c]:
                bp = np.sort(block_of[r.list_probes(c)[:, :nprobe]], axis=1)
                probes += np.bincount(bp.ravel(), minlength=len(blocks))
                first = np.ones(bp.shape, bool)
                first[:, 1:] = bp[:, 1:] != bp[:, :-1]
                rows += np.bincount(bp[first], minlength=len(blocks))
    return rows, probes


def _gather(cache: ListCache, order: np.ndarray, nprobe: int, in_block: np.ndarray,
            into: _Gathered, tick: Callable[[], None]) -> _Gathered:
    for k, r in enumerate(cache.readers):
        for c in order.tolist():
            tick()
            if not r.sizes[c]:
                continue
            probes = r.list_probes(c)[:, :nprobe]
            hits = in_block[probes]
            if not hits.any():
                continue
            q = cache.load(k, c, hits.any(axis=1), as_float=False)
            if len(q.ids):
                at, which = np.nonzero(hits[q.pos])
                into.add(q, probes[q.pos][at, which], at)
    return into


def scan_whole(cache: ListCache, nprobe: int, radius: float, order: np.ndarray,
               on_progress: Callable[[int, int], None] | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Candidate (later id, earlier id) pairs of the entries of the lists `order` (every
    list: a whole scan), in passes over blocks of target lists.

    A block is a run of cells in the centroid walk whose probing query rows fit the
    cache's budget (as stored codes, one byte a dimension). A pass
    reads every query list's probes, gathers the rows that probe the block, then scores
    each target list once against all its probing rows in one GEMM: with spread-out data
    a list's rows probe many different lists, and scoring them list by list would be
    matrix-vector products bound by memory, not by arithmetic."""
    readers = cache.readers
    if not readers or not len(order):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    nlist, d = len(readers[0].sizes), readers[0].dim
    probing = np.zeros(nlist, np.int64)  # probes into each cell from the query rows
    for r in readers:
        for c in order.tolist():
            if r.sizes[c]:
                probing += np.bincount(r.list_probes(c)[:, :nprobe].ravel(), minlength=nlist)
    cost = probing * (d + 40)  # a gathered row: codes, id, key, error, cell and row
    walk = scan_order(cache.coarse)
    blocks = _blocks(walk[probing[walk] > 0], cost, cache.budget)
    found_u: list[np.ndarray] = []
    found_v: list[np.ndarray] = []
    total, step = len(blocks) * len(order) * len(readers), 0

    def tick() -> None:
        nonlocal step
        step += 1
        if on_progress and (step % 256 == 0 or step == total):
            on_progress(step, total)

    rows_in, probes_in = _block_sizes(readers, order, nprobe, blocks, nlist)
    for block, rows_n, probes_n in zip(blocks, rows_in.tolist(), probes_in.tolist(),
                                       strict=True):
        in_block = np.zeros(nlist, bool)
        in_block[block] = True
        g = _gather(cache, order, nprobe, in_block, _Gathered.allocate(rows_n, probes_n, d),
                    tick)
        g.cell, g.row = g.cell[:g.m], g.row[:g.m]
        by_cell = np.argsort(g.cell, kind="stable")
        cells, first = np.unique(g.cell[by_cell], return_index=True)
        bounds = np.append(first, len(by_cell))
        for cell, lo, hi in zip(cells.tolist(), bounds[:-1].tolist(), bounds[1:].tolist(),
                                strict=True):
            rows = g.row[by_cell[lo:hi]]
            prepared = Queries.of(cache.coarse.decode(g.codes[rows]), cache.coarse)
            for t in range(len(readers)):
                target = cache.load(t, cell)
                a, b = _above(prepared, g.keys[rows], g.err[rows], target, radius, True)
                if len(a):
                    found_u.append(g.ids[rows[a]])
                    found_v.append(target.ids[b])
        del g
    return _concat(found_u), _concat(found_v)


def scan_queries(cache: ListCache, xq: np.ndarray, ids: np.ndarray, keys: np.ndarray,
                 nprobe: int, radius: float, later_only: bool = True,
                 probes: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate (query id, target id, the target's part) of full-precision query vectors;
    `probes`: their (n, nprobe) cells (rows the IVF holds: their stored probes), else
    computed."""
    probes = cache.coarse.probes(xq, nprobe) if probes is None else probes
    prepared = Queries.of(xq, cache.coarse)
    found_u, found_v, found_t = [], [], []
    for cell, rows in _by_cell(probes):
        for t in range(len(cache.readers)):
            target = cache.get(t, cell)
            a, b = _above(prepared.rows(rows), keys[rows], 0.0, target, radius, later_only)
            found_u.append(ids[rows[a]])
            found_v.append(target.ids[b])
            found_t.append(np.full(len(b), t, np.int64))
    u, v, t_ = _concat(found_u), _concat(found_v), _concat(found_t)
    keep = u != v
    return u[keep], v[keep], t_[keep]


def _concat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)


def unique_pairs(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each unordered pair once, as (smaller id, larger id), sorted."""
    a, b = np.minimum(u, v).astype(np.int64), np.maximum(u, v).astype(np.int64)
    order = np.lexsort((b, a))  # two columns: any int64 ids
    a, b = a[order], b[order]
    first = np.ones(len(a), bool)
    first[1:] = (a[1:] != a[:-1]) | (b[1:] != b[:-1])
    return a[first], b[first]


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


__all__ = ["SMALL_CACHE", "ListCache", "Queries", "cache_budget", "default_budget", "scan_order",
           "scan_queries", "scan_whole",
           "unique_pairs"]
