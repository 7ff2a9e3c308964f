"""large: the pair search of a dedupe over an index with an on-disk IVF, in bounded memory.

Hands find_duplicates the same values the in-memory search does (rows, their vectors,
candidate Pairs over row positions), but the rows are only those in a pair: catalog rows
and vectors are read for hits, never for the whole index. Every other image in scope is a
group of one, counted (`total`) but not loaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from imgsim_index.errors import IndexFormatError, IndexLockedError
from imgsim_index.index import ivf
from imgsim_index.index.catalog import Row
from imgsim_index.index.ivf_sync import VectorLookup, needs_ivf
from imgsim_index.index.store import IndexStore, scope_prefix
from imgsim_index.ingest.video import split_frame_path
from imgsim_index.pipeline.engine import Engine
from imgsim_index.progress import Progress
from imgsim_index.search import ApproxSettings, Pairs, SearchInfo
from imgsim_index.search.ivf_search import ivf_pairs
from imgsim_index.search.plan import OnProgress


@dataclass
class LargeSearch:
    rows: list[Row]  # the rows in at least one pair, ascending id
    vectors: np.ndarray  # their vectors
    candidates: Pairs  # row positions into `rows`
    info: SearchInfo
    total: int  # images in scope
    queries: int | None  # new-only: rows searched from


# a search whose vector files a writer deleted (merged) meanwhile runs again this often
RACE_RETRIES = 2


def wants_ivf(index_dir: str, search: str, sampled: bool, since: bool) -> bool:
    """The on-disk IVF answers `auto` (and `approx`) searches of an index that has one or
    has grown past ivf.IVF_ABOVE, except sample mode and --since (the in-memory search)."""
    if search == "exact" or sampled or since:
        return False
    with IndexStore.open_reader(index_dir) as store:  # a missing index: its own error
        return needs_ivf(store.catalog, ivf.read_manifest(index_dir))


def bring_ivf_up_to_date(index_dir: str, progress: Progress, wait: bool = False) -> None:
    """Create or update the IVF under the writer lock (a flat index converted on first use;
    rows a crashed writer left unfiled are filed now). Nothing to do: no lock is taken."""
    with IndexStore.open_reader(index_dir) as store:
        manifest = ivf.read_manifest(index_dir)
        if manifest is not None and manifest.covered_seq >= store.catalog.last_seq():
            return
    try:
        with IndexStore.writer_lock(index_dir, wait), \
                IndexStore.open_updater(index_dir, wait) as store:
            store.update_ivf(progress)
    except IndexLockedError as exc:
        raise IndexLockedError(f"{exc}; the index's IVF must take in the newest vectors "
                               "before a dedupe: wait for the writer or pass --wait",
                               fix=exc.fix, fix_arg=exc.fix_arg) from None


def search_ivf(index_dir: str, folders: Sequence[str] | None, threshold: float,
               approx: ApproxSettings, new_after: int | None, budget: int | None,
               present: set[str] | None, on_progress: OnProgress | None,
               engine: Engine | None = None) -> LargeSearch:
    """The IVF search of a dedupe, from one catalog snapshot. A writer that merges or
    compacts vector files meanwhile deletes files the snapshot names (the vectors live on
    in the new file): the search then runs again from a new snapshot (RACE_RETRIES times
    at most, then a one-line error)."""
    for attempt in range(RACE_RETRIES + 1):
        try:
            return _search_ivf_once(index_dir, folders, threshold, approx, new_after, budget,
                                    present, on_progress, engine)
        except FileNotFoundError as exc:
            if attempt == RACE_RETRIES:
                raise IndexFormatError(
                    f"{index_dir}: the vector file {exc.filename} vanished while this dedupe "
                    "read it, again and again (a writer merging files, or a damaged index: "
                    "run `imgsim-index verify --index ... --repair`)") from None
    raise AssertionError("unreachable")


def _search_ivf_once(index_dir: str, folders: Sequence[str] | None, threshold: float,
                     approx: ApproxSettings, new_after: int | None, budget: int | None,
                     present: set[str] | None, on_progress: OnProgress | None,
                     engine: Engine | None) -> LargeSearch:
    # the IVF is opened before the snapshot is taken: the snapshot is never older than it
    with IndexStore.open_reader(index_dir) as store, ivf.open_ivf(index_dir) as opened, \
            store.snapshot():
        prefixes = [scope_prefix(f) for f in folders] if folders else None
        found, info = ivf_pairs(store.folder, store.catalog, opened, threshold,
                                approx=approx, prefixes=prefixes, new_after=new_after,
                                budget=budget, on_progress=on_progress, engine=engine)
        ids = np.unique(np.concatenate([found.a, found.b]))
        by_id = store.catalog.rows_by_id(ids.tolist())
        rows = [by_id[int(k)] for k in ids.tolist()]
        keep = np.ones(len(found.a), bool)
        if present is not None:  # rows of files the scan no longer found take no part
            gone = np.array([split_frame_path(r.path)[0] not in present for r in rows], bool)
            if gone.any():
                keep &= ~gone[np.searchsorted(ids, found.a)] & ~gone[np.searchsorted(ids, found.b)]
        if not folders:  # parked rows (moved out of the index's folders) take no part
            placed = {r.id for r in store.placed(rows)}
            out = np.array([r.id not in placed for r in rows], bool)
            if out.any():
                keep &= ~out[np.searchsorted(ids, found.a)] & ~out[np.searchsorted(ids, found.b)]
        a, b, score = found.a[keep], found.b[keep], found.score[keep]
        used = np.unique(np.concatenate([a, b]))
        rows = [by_id[int(k)] for k in used.tolist()]
        with VectorLookup(store.folder, store.catalog) as lookup:
            vectors = lookup.read(used)
    pairs = Pairs(np.searchsorted(used, a), np.searchsorted(used, b), score)
    search = SearchInfo(
        method="ivf", engine="local" if engine is None or new_after is not None else engine.name,
        precision="fp32", vectors=info.vectors,
        queries=info.queries, candidates=info.candidates, pairs=len(pairs),
        seconds=info.seconds, nprobe=info.nprobe,
        details={"nlist": info.nlist, "parts": info.parts, "lists_read": info.lists_read,
                 "memory_budget_bytes": info.budget_bytes, "codes": "SQ8",
                 "rescored": "float64 from the vector files"})
    return LargeSearch(rows, vectors, pairs, search, info.vectors, info.queries)


__all__ = ["LargeSearch", "bring_ivf_up_to_date", "search_ivf", "wants_ivf"]
