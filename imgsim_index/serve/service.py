"""service: one index kept open for many requests.

The writer lock is taken when the service starts and held until it stops: adds
queue behind one writer thread, which owns the writer's catalog connection.
Reads never wait for it: each read opens the catalog read-only (as dedupe does)
and sees the last commit; the vectors are cached by commit number, as one contiguous
float32 matrix, and reloaded only after a commit (the writer's own or, for an
index shared with other readers, any). Queries search that matrix in place (one
float32 product per block of queries, pipeline/query.py): no per-request index or copy.
The model is loaded on first need and kept.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from imgsim_index.defaults import decode_slots
from imgsim_index.embed.embedder import Embedder
from imgsim_index.errors import (
    ActionError,
    Cancelled,
    ImageTooLarge,
    InputError,
    ResultTooLarge,
    ServiceBusy,
)
from imgsim_index.index.manifest import identity_of
from imgsim_index.index.store import IndexStore, LoadedVectors
from imgsim_index.pipeline.build import BuildSettings, build_index, resolve_model
from imgsim_index.pipeline.dedupe import DedupeSettings, dedupe, folder_codes
from imgsim_index.pipeline.query import (
    QueryResult,
    pair_verdicts,
    query_index,
    resolve_threshold,
    verify_enabled,
)
from imgsim_index.search import PairSettings
from imgsim_index.search.settings import LISTING_MAX_CANDIDATES, LISTING_MIN_THRESHOLD
from imgsim_index.serve.jobs import CANCELLED, Job, JobBoard, JobProgress, JobRunner
from imgsim_index.serve.metrics import Metrics

if TYPE_CHECKING:
    from imgsim_index.index.catalog import Row
    from imgsim_index.search import Pairs
    from imgsim_index.search.ivf_search import IvfSearcher

# Per request image: a decode takes about 4 bytes a pixel at its peak, so 100 MP is
# about 400 MB (a 13300 x 13300 PNG of 544 KB took 700 MB before this bound).
DEFAULT_MAX_PIXELS = 100_000_000
T = TypeVar("T")


@dataclass(frozen=True)
class ServeSettings:
    index: str
    output: str = "results"  # where dedupe jobs write their report folders
    inbox: str | None = None  # where uploaded images are saved before being added
    max_upload_bytes: int = 50 * 1024 * 1024
    token: str | None = None
    move_root: str | None = None  # where the review page may move files; None: `output`
    max_pixels: int = DEFAULT_MAX_PIXELS  # per image a request decodes (header checked first)
    decode_slots: int | None = None  # requests decoding at once; None: one per CPU core
    max_listed_pairs: int = LISTING_MAX_CANDIDATES  # a pair listing's search stops beyond
    build: BuildSettings = field(default_factory=BuildSettings)


@dataclass
class PairListing:
    """A page of a pair listing; its pairs spelled as report.json's similar_pairs."""

    since: int
    seq: int
    threshold: float
    threshold_source: str  # "given" | "model default"
    total: int = 0
    pairs: list[dict[str, Any]] = field(default_factory=list)


def listed_pairs(rows: Sequence[Row], shown: Pairs, verify_on: bool) -> list[dict[str, Any]]:
    """A page of a pair listing (positions into `rows`), verified when asked, spelled as
    report.json's similar_pairs."""
    from imgsim_index.verify import VerifySettings

    verdicts = pair_verdicts(rows, shown, VerifySettings(enabled=verify_on))
    return [{"image1": rows[i].path, "image2": rows[j].path, "similarity_score": score,
             "match": v.match, "evidence": v.evidence}
            for i, j, score, v in zip(shown.i.tolist(), shown.j.tolist(),
                                      shown.score.tolist(), verdicts, strict=True)]


# Rows per side of a listing's score tiles: smaller than a dedupe's 4096, so a search is
# checked for its client having left (and for its cap) after every 1024 x 1024 scores.
LISTING_BLOCK = 1024


def find_new_pairs(vectors: np.ndarray, settings: PairSettings, codes: np.ndarray,
                   queries: np.ndarray, on_progress: Callable[[int, int], None] | None = None,
                   max_candidates: int | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The one call into the pair search: every pair with one end among `queries`."""
    from imgsim_index.search import find_pairs

    pairs, _ = find_pairs(vectors, settings, method="exact", folders=codes, queries=queries,
                          on_progress=on_progress, max_candidates=max_candidates)
    return pairs.i, pairs.j, pairs.score


class IndexService:
    def __init__(self, settings: ServeSettings):
        self.settings = settings
        self.index_dir = os.path.abspath(settings.index)
        self.manifest = IndexStore.read_manifest(self.index_dir)  # no index: fail at once
        self.jobs = JobBoard()
        self.metrics = Metrics()
        self._store: IndexStore | None = None
        self.writer = JobRunner("index-writer", self._open_writer, self._close_writer)
        self.reader = JobRunner("index-dedupe")
        self._embedder: Embedder | None = None
        self._model_lock = threading.Lock()
        self._cache: LoadedVectors | None = None
        self._searcher: IvfSearcher | None = None
        self._cache_lock = threading.Lock()
        self.decode_slots = settings.decode_slots or decode_slots()
        self._decoding = threading.BoundedSemaphore(self.decode_slots)

    # -- lifetime -----------------------------------------------------------
    def start(self) -> None:
        self.writer.start()  # raises IndexLockedError if another writer holds the index
        self.reader.start()

    def stop(self) -> None:
        """Stop the running add at its next batch (what it embedded is committed), cancel
        queued jobs, release the writer lock."""
        self.writer.stop()
        self.reader.stop()
        with self._cache_lock:
            if self._searcher is not None:
                self._searcher.close()
                self._searcher = None

    def _open_writer(self) -> None:
        identity = identity_of(self.manifest)
        self._store = IndexStore.open_writer(self.index_dir, identity,
                                             wait=self.settings.build.wait_for_lock)
        self._store.lend_lock()  # applies and undos from the review page run on this thread

    def _close_writer(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    # -- shared state -------------------------------------------------------
    def embedder(self) -> Embedder:
        with self._model_lock:
            if self._embedder is None:
                build = self.settings.build
                model = resolve_model(self.index_dir, build)
                self._embedder = Embedder(model, build.embed.device, build.embed.backend)
            return self._embedder

    def snapshot(self) -> LoadedVectors:
        """Every embedded row and its vector as of the last commit (cached per commit)."""
        with IndexStore.open_reader(self.index_dir) as store:
            seq = store.catalog.last_seq()
            with self._cache_lock:
                if self._cache is None or self._cache.seq != seq:
                    loaded = store.load()
                    # one contiguous float32 matrix per commit: every query searches it in
                    # place (one matrix product in query_index), nothing is copied per request
                    self._cache = replace(loaded, vectors=np.ascontiguousarray(
                        loaded.vectors, dtype=np.float32))
                    self.metrics.images_indexed = len(self._cache.rows)
                return self._cache

    def roots(self) -> list[str]:
        """The folders the index covers (catalog roots), plus the inbox."""
        with IndexStore.open_reader(self.index_dir) as store:
            roots = sorted(store.catalog.roots())
        if self.settings.inbox:
            roots.append(os.path.abspath(self.settings.inbox))
        return roots

    def move_root(self) -> str:
        """The folder the review page's moves must land in (--move-root, else --output)."""
        return os.path.abspath(self.settings.move_root or self.settings.output)

    @contextmanager
    def decoding(self, wait: float = 0.0) -> Iterator[None]:
        """Hold one of the decode slots for a request's decoding, or raise ServiceBusy when
        all are taken, at once or after `wait` seconds (memory stays bounded by slots x
        max_pixels)."""
        got = self._decoding.acquire(timeout=wait) if wait > 0 else \
            self._decoding.acquire(blocking=False)
        if not got:
            raise ServiceBusy(f"all {self.decode_slots} decoding slots are busy; try again "
                              "shortly")
        try:
            yield
        finally:
            self._decoding.release()

    def check_pixels(self, paths: Sequence[str]) -> None:
        """ImageTooLarge (naming --max-megapixels) for an image over the pixel limit."""
        from imgsim_index.ingest.decode import check_pixels

        for path in paths:
            try:
                check_pixels(path, self.settings.max_pixels)
            except ImageTooLarge as exc:
                raise ImageTooLarge(f"{exc} (--max-megapixels)") from None

    def queue_length(self) -> int:
        return self.writer.queued() + self.reader.queued()

    # -- reads --------------------------------------------------------------
    def query(self, paths: Sequence[str], top_k: int, threshold: float | None,
              verify: bool = True, include_self: bool = False, include_below: bool = False
              ) -> tuple[list[QueryResult], int]:
        """query_index on the cached vectors and model (its rules: pipeline/query.py)."""
        from imgsim_index.verify import VerifySettings

        t = time.perf_counter()
        # a large index is searched through its on-disk IVF: nothing held between requests
        searcher = self.ivf_searcher()
        loaded = None if searcher is not None else self.snapshot()
        seq = loaded.seq if loaded is not None else searcher.seq  # type: ignore[union-attr]
        results = query_index(self.index_dir, paths, top_k, threshold, self.settings.build,
                              embedder=self.embedder(), loaded=loaded,
                              verify=VerifySettings(enabled=verify), searcher=searcher,
                              include_self=include_self, include_below=include_below)
        self.metrics.query_seconds.observe(time.perf_counter() - t)
        return results, seq

    def ivf_searcher(self) -> IvfSearcher | None:
        """The IVF searcher of the index's last commit (kept until the next commit), or None
        for an index without an IVF (queries then search the cached vectors)."""
        from imgsim_index.index import ivf
        from imgsim_index.search.ivf_search import IvfSearcher

        with IndexStore.open_reader(self.index_dir) as store, self._cache_lock:
            manifest = ivf.read_manifest(self.index_dir)
            if manifest is None:
                return None
            seq = store.catalog.last_seq()
            if self._searcher is None or self._searcher.seq != seq:
                if self._searcher is not None:
                    self._searcher.close()
                    self._searcher = None
                opened = ivf.open_ivf(self.index_dir)  # before the snapshot: see open_ivf
                with store.snapshot():
                    self._searcher = IvfSearcher(store.folder, store.catalog, opened)
            return self._searcher

    def large(self) -> bool:
        """Whether the index has an on-disk IVF (then no request loads every vector)."""
        from imgsim_index.index import ivf

        return ivf.read_manifest(self.index_dir) is not None

    def last_seq(self) -> int:
        with IndexStore.open_reader(self.index_dir) as store:
            return store.catalog.last_seq()

    def new_pairs(self, since: int, threshold: float | None, page: int = 1,
                  page_size: int = 100, verify: bool = True,
                  should_stop: Callable[[], bool] = lambda: False) -> PairListing:
        """Pairs scoring >= threshold (None: the model's candidate threshold, as dedupe
        takes it) with at least one image committed after `since`, best first; the pairs of
        page `page` carry their verdicts (compared as dedupe compares its candidates).
        The threshold must be at least LISTING_MIN_THRESHOLD; the search stops with
        ResultTooLarge past settings.max_listed_pairs candidates, and with Cancelled
        when `should_stop()` turns true (checked after every tile)."""
        from imgsim_index.search import Pairs
        from imgsim_index.verify import VerifySettings

        verify_on = verify_enabled(VerifySettings(enabled=verify), self.manifest)
        threshold, source = resolve_threshold(threshold, self.manifest.get("model"), verify_on)
        if not LISTING_MIN_THRESHOLD <= threshold <= 1.0:
            raise InputError(f"threshold must be between {LISTING_MIN_THRESHOLD} and 1 for a "
                             f"pair listing, got {threshold}: below it nearly every pair of "
                             "images scores")

        def check_stop(done: int, total: int) -> None:
            if should_stop():
                self.metrics.pair_searches_cancelled += 1
                raise Cancelled(f"pair search stopped after {done} of {total} tiles: its "
                                "caller left")

        if self.large():
            return self._new_pairs_large(since, threshold, source, page, page_size, verify_on,
                                         check_stop)
        loaded = self.snapshot()
        rows = loaded.rows
        listing = PairListing(since, loaded.seq, threshold, source)
        queries = np.flatnonzero(np.fromiter((r.seq > since for r in rows), bool, len(rows)))
        if not len(queries):
            return listing
        settings = PairSettings(threshold=threshold, block_size=LISTING_BLOCK)
        i, j, score = find_new_pairs(loaded.vectors, settings, folder_codes(rows, None), queries,
                                     check_stop, self.settings.max_listed_pairs)
        listing.total = len(i)
        start = (page - 1) * page_size
        shown = Pairs(i[start:start + page_size], j[start:start + page_size],
                      score[start:start + page_size])
        listing.pairs = listed_pairs(rows, shown, verify_on)
        return listing

    def _new_pairs_large(self, since: int, threshold: float, source: str, page: int,
                         page_size: int, verify_on: bool,
                         check_stop: Callable[[int, int], None]) -> PairListing:
        """new_pairs through the on-disk IVF: the new rows probe their lists; memory and time
        follow the new rows, not the index."""
        from imgsim_index.index import ivf
        from imgsim_index.search import Pairs
        from imgsim_index.search.ivf_search import ivf_pairs

        with IndexStore.open_reader(self.index_dir) as store, \
                ivf.open_ivf(self.index_dir) as opened, store.snapshot():
            listing = PairListing(since, store.catalog.last_seq(), threshold, source)
            found, info = ivf_pairs(store.folder, store.catalog, opened, threshold,
                                    new_after=since, on_progress=check_stop)
            if info.candidates > self.settings.max_listed_pairs:
                raise ResultTooLarge(f"more than {self.settings.max_listed_pairs} pairs score "
                                     "near the threshold; raise the threshold or search "
                                     "fewer rows")
            listing.total = len(found.a)
            start = (page - 1) * page_size
            a, b = found.a[start:start + page_size], found.b[start:start + page_size]
            ids = np.unique(np.concatenate([a, b]))
            by_id = store.catalog.rows_by_id(ids.tolist())
        rows = [by_id[int(i)] for i in ids.tolist()]
        shown = Pairs(np.searchsorted(ids, a), np.searchsorted(ids, b),
                      found.score[start:start + page_size])
        listing.pairs = listed_pairs(rows, shown, verify_on)
        return listing

    # -- jobs ---------------------------------------------------------------
    def on_writer(self, kind: str, fn: Callable[[], T]) -> T:
        """Run `fn` on the writer thread (serialised with adds, under the service's writer
        lock) and return its result or raise its exception; for apply and undo."""
        done = threading.Event()
        value: list[T] = []
        error: list[BaseException] = []

        def work(job: Job) -> dict[str, Any]:
            try:
                value.append(fn())
            except BaseException as exc:  # handed to the caller below
                error.append(exc)
            finally:
                done.set()
            return {}

        job = self.jobs.new(kind)
        self.writer.submit(job, work)
        while not done.wait(0.2):
            if job.state == CANCELLED:  # the service is stopping: the work never ran
                raise ActionError(f"the service stopped before the {kind} ran; nothing was done")
        if error:
            raise error[0]
        return value[0]

    def submit_add(self, paths: Sequence[str]) -> Job:
        job = self.jobs.new("add")
        self.writer.submit(job, lambda j: self._add(j, list(paths)))
        return job

    def _add(self, job: Job, paths: list[str]) -> dict[str, Any]:
        t = time.perf_counter()
        build = self.settings.build
        result = build_index(paths, self.index_dir, build, JobProgress(job),
                             model=self.embedder().model, should_stop=self.writer.stopping.is_set,
                             store=self._store)
        self.metrics.embedded_images += result.embedded
        self.metrics.embed_seconds += time.perf_counter() - t
        with IndexStore.open_reader(self.index_dir) as store:
            seq = store.catalog.last_seq()
        return {"embedded": result.embedded, "unchanged": result.unchanged,
                "errors": result.errors, "total_embedded": result.total_embedded,
                "stopped_early": self.writer.stopping.is_set(), "seq": seq}

    def submit_dedupe(self, settings: DedupeSettings) -> Job:
        job = self.jobs.new("dedupe")
        settings = replace(settings, output=self.settings.output)
        self.reader.submit(job, lambda j: self._dedupe(j, settings))
        return job

    def _dedupe(self, job: Job, settings: DedupeSettings) -> dict[str, Any]:
        result = dedupe(self.index_dir, None, settings, JobProgress(job))
        rep = result.report
        return {"output_dir": result.output_dir, "report_path": result.report_path,
                "gallery_path": result.gallery_path,
                "pairs": rep["number_of_similar_pairs"],
                "groups": rep["number_of_duplicate_groups"],
                "files_removable": rep["files_removable"]}
