"""store: vectors + refs -> an index folder: catalog.sqlite, vectors.faiss, manifest.json.

Layout
  catalog.sqlite   one row per file (see catalog.py); the commit point
  vectors.faiss    the compacted base: IndexIDMap2(IndexFlatIP), ids = catalog ids
  segments/*.faiss vectors added since the last compaction, same format
  manifest.json    format version, model identity, preprocessing, dim, counts
  writer.lock      held (flock) by the one writer, names the holder

A writer embeds in checkpoints: it writes a new immutable segment file
atomically, then commits the catalog rows that point at it in one
transaction. A crash before the commit leaves an orphan file that the next
writer deletes; a crash after it loses nothing. Each row names the file that
holds its current vector, so a changed file's old vector (still in an older
segment) is ignored until compaction rewrites vectors.faiss. Adding k images
writes O(k) bytes; compaction runs only when the segments outgrow the base,
so its cost is amortised.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from imgsim_index.atomic_files import atomic_write_json
from imgsim_index.defaults import IDENTITY_KEYS
from imgsim_index.errors import (
    FIX_INDEX_MODEL,
    IndexFormatError,
    IndexMismatchError,
    IndexMissingError,
)
from imgsim_index.index.catalog import (
    Catalog,
    NewRow,
    Row,
    VerifiedPair,
    VideoDone,
    db_name,
    writing,
)
from imgsim_index.index.manifest import (
    Manifest,
    identity_of,
    manifest_from_dict,
    manifest_to_dict,
)
from imgsim_index.index.vector_file import (
    CHUNK_BYTES,
    VECTORS_AT,
    VectorFile,
    VectorFileWriter,
    read_vectors,
    rows_per_chunk,
    write_vectors,
)
from imgsim_index.locks import acquire_writer_lock, release_writer_lock

FORMAT_VERSION = 1
BASE = "vectors.faiss"
SEGMENTS = "segments"
CATALOG = "catalog.sqlite"
MANIFEST = "manifest.json"
LOCK = "writer.lock"
MAX_SEGMENTS = 16
# past MAX_SEGMENTS files, the smallest MERGE_SEGMENTS segments are merged into one (the
# compacted base is left alone until the segments hold more vectors than it): tiered, so
# each vector is rewritten about log(N) times, and an import of k vectors costs O(k)
# amortised instead of a rewrite of all N every MAX_SEGMENTS imports
MERGE_SEGMENTS = 8

# index folders (real paths) whose writer lock this process holds through
# IndexStore.writer_lock, with the descriptor: open_updater reuses it
_HELD_HERE: dict[str, int] = {}
_T = TypeVar("_T")


@dataclass
class LoadedVectors:
    rows: list[Row]  # embedded rows, in id order
    vectors: np.ndarray  # (len(rows), dim) float32, row i belongs to rows[i]
    seq: int = 0  # the last commit these rows include (see Catalog.last_seq)


@dataclass
class SearchVectors:
    """The vectors a query searches, without their catalog rows: `ids[i]` is the catalog id
    of row i of `vectors`, which may be a read-only map of a vector file (then in the
    file's order)."""

    ids: np.ndarray  # (n,) int64, unique; ascending unless `vectors` maps a file
    vectors: np.ndarray  # (n, dim) float32


def read_segment(path: str) -> tuple[np.ndarray, np.ndarray]:
    """A (small) vector file -> (ids int64 (n,), vectors float32 (n, dim))."""
    return read_vectors(path)


def _members(ids: np.ndarray, sorted_ids: np.ndarray) -> np.ndarray:
    """Boolean mask of the `ids` found in `sorted_ids` (ascending): a binary search per
    id, where np.isin would sort all of `sorted_ids` again for every chunk."""
    if not len(sorted_ids):
        return np.zeros(len(ids), bool)
    at = np.minimum(np.searchsorted(sorted_ids, ids), len(sorted_ids) - 1)
    return sorted_ids[at] == ids


def _fill_from(vf: VectorFile, row_ids: np.ndarray, mine: np.ndarray, out: np.ndarray,
               segment: str, folder: str, chunk_bytes: int) -> int:
    """Copy the vectors of the rows that name `vf` (`mine`, a mask over the ascending
    `row_ids`) into their rows of `out`, chunk by chunk; returns how many were copied.

    A run of the file that is wanted whole and lands on consecutive rows of `out` (a
    compacted base, a segment of new rows) is read straight into `out`; any other chunk
    is read into one reused buffer and scattered. Memory: `out` plus one chunk."""
    buf: np.ndarray | None = None
    filled = 0
    step = rows_per_chunk(vf.dim, chunk_bytes)
    for s in range(0, vf.n, step):
        ids = vf.ids[s:s + step]
        at = np.minimum(np.searchsorted(row_ids, ids), max(len(row_ids) - 1, 0))
        hit = (row_ids[at] == ids) & mine[at] if len(row_ids) else np.zeros(len(ids), bool)
        k = int(hit.sum())
        if not k:
            continue
        if k == len(ids) and at[-1] - at[0] == k - 1 and (k == 1 or (np.diff(at) == 1).all()):
            got = out[at[0]:at[0] + k]
            vf.read_into(s, got)
        else:
            if buf is None:
                buf = np.empty((min(step, vf.n), vf.dim), np.float32)
            vf.read_into(s, buf[:len(ids)])
            got = buf[:len(ids)][hit]
            out[at[hit]] = got
        # NaN scores would lose pairs silently; min and max propagate NaN and show Inf
        if not (np.isfinite(got.min()) and np.isfinite(got.max())):
            raise IndexFormatError(
                f"{folder}: {segment} holds vectors with NaN or Inf; the "
                "index is damaged: run verify with repair")
        filled += k
    return filled


def describe_identity(identity: dict[str, Any]) -> str:
    """"model (weights ID)", or the model alone when its weights are not known yet."""
    weights = identity.get("weights_id")
    return f"{identity.get('model')}" + (f" (weights {weights})" if weights else "")


class IndexStore:
    """An index folder. Open with `IndexStore.open_reader` or `IndexStore.open_writer`."""

    def __init__(self, folder: str, catalog: Catalog, manifest: Manifest, writable: bool):
        self.folder = os.path.abspath(folder)
        self.catalog = catalog
        self.manifest = manifest
        self.writable = writable
        self._lock_fd: int | None = None

    # -- opening -----------------------------------------------------------
    @staticmethod
    def exists(folder: str) -> bool:
        return os.path.isfile(os.path.join(folder, MANIFEST))

    @classmethod
    def open_reader(cls, folder: str) -> IndexStore:
        manifest = cls.read_manifest(folder)
        catalog = Catalog(os.path.join(folder, CATALOG), readonly=True)
        return cls(folder, catalog, manifest, writable=False)

    @classmethod
    def open_writer(cls, folder: str, identity: dict[str, Any], wait: bool = False) -> IndexStore:
        """Lock the folder for writing, creating the index if it is new.

        Refuses an index built with another model identity than `identity`.
        """
        with writing(f"the index {folder}"):
            os.makedirs(os.path.join(folder, SEGMENTS), exist_ok=True)
            lock_fd = acquire_writer_lock(os.path.join(folder, LOCK), wait)
        has_manifest = os.path.isfile(os.path.join(folder, MANIFEST))
        new = not has_manifest and not os.path.isfile(os.path.join(folder, CATALOG))
        try:
            if has_manifest:
                manifest = cls.read_manifest(folder)
                check_identity(manifest, identity, folder)
            elif not new:
                raise IndexFormatError(
                    f"{folder} has a catalog but no {MANIFEST}; it is not an index this "
                    "version can open safely. Move it aside and build again."
                )
            else:
                manifest = manifest_from_dict({
                    "format_version": FORMAT_VERSION,
                    **identity,
                    "created_at": _now(),
                    "updated_at": _now(),
                    "counts": {"embedded": 0, "errors": 0},
                }, os.path.join(folder, MANIFEST))
            catalog = Catalog(os.path.join(folder, CATALOG))
            store = cls(folder, catalog, manifest, writable=True)
            store._lock_fd = lock_fd
            try:
                store._write_manifest()
                store._remove_orphans()
            except BaseException:
                catalog.close()
                raise
            return store
        except BaseException:
            if new:  # a new index that could not be made whole (a full disk): leave none
                for name in (CATALOG, f"{CATALOG}-wal", f"{CATALOG}-shm"):
                    with contextlib.suppress(OSError):
                        os.unlink(os.path.join(folder, name))
            release_writer_lock(lock_fd)
            raise

    @staticmethod
    @contextlib.contextmanager
    def writer_lock(folder: str, wait: bool = False) -> Iterator[None]:
        """Hold an existing index's writer lock across several steps (apply: from planning
        to the index update), so no build, serve or other apply writes it meanwhile.
        Another holder: IndexLockedError naming it (with `wait`, queue behind it). While
        held, `open_updater` in this process uses this lock; nested calls are no-ops."""
        cls = IndexStore
        cls.read_manifest(folder)  # a missing index: IndexMissingError, no lock file made
        key = os.path.realpath(folder)
        if key in _HELD_HERE:
            yield
            return
        _HELD_HERE[key] = acquire_writer_lock(os.path.join(folder, LOCK), wait)
        try:
            yield
        finally:
            release_writer_lock(_HELD_HERE.pop(key))

    @classmethod
    def open_updater(cls, folder: str, wait: bool = False) -> IndexStore:
        """Lock an existing index for a catalog update that adds no vectors (apply and
        undo recording where files went): no model identity is needed or checked. Inside
        `writer_lock` for the same folder, the lock held there is used (and kept)."""
        manifest = cls.read_manifest(folder)
        if os.path.realpath(folder) in _HELD_HERE:
            return cls(folder, Catalog(os.path.join(folder, CATALOG)), manifest, writable=True)
        lock_fd = acquire_writer_lock(os.path.join(folder, LOCK), wait)
        try:
            catalog = Catalog(os.path.join(folder, CATALOG))
        except BaseException:
            release_writer_lock(lock_fd)
            raise
        store = cls(folder, catalog, manifest, writable=True)
        store._lock_fd = lock_fd
        return store

    @staticmethod
    def read_manifest(folder: str) -> Manifest:
        path = os.path.join(folder, MANIFEST)
        if not os.path.isfile(path):
            raise IndexMissingError(f"no index at {folder} (missing {MANIFEST})")
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, json.JSONDecodeError) as exc:
            raise IndexFormatError(f"cannot read {path}: {exc}") from None
        if not isinstance(data, dict) or data.get("format_version") != FORMAT_VERSION:
            raise IndexFormatError(
                f"{path} has format version "
                f"{data.get('format_version') if isinstance(data, dict) else None}, "
                f"this imgsim-index reads version {FORMAT_VERSION}"
            )
        return manifest_from_dict(data, path)

    def close(self) -> None:
        try:
            if self.writable:
                self._write_manifest()  # counts only: the catalog is the commit point
        finally:
            self.catalog.close()
            if self._lock_fd is not None:
                key = os.path.realpath(self.folder)
                if _HELD_HERE.get(key) == self._lock_fd:  # lent to this process: take back
                    del _HELD_HERE[key]
                release_writer_lock(self._lock_fd)
                self._lock_fd = None

    def lend_lock(self) -> None:
        """Let `writer_lock` and `open_updater` in this process use this writer's lock until
        it closes: for a long-running service that runs applies and undos on the same
        thread as its writes, so they are serialised with them."""
        assert self.writable and self._lock_fd is not None
        _HELD_HERE[os.path.realpath(self.folder)] = self._lock_fd

    def __enter__(self) -> IndexStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    # -- writing -------------------------------------------------------------
    def commit(self, embedded: Sequence[NewRow], vectors: np.ndarray,
               errors: Sequence[NewRow] = (), videos_done: Sequence[VideoDone] = (),
               forget: Sequence[str] = (), forget_videos: Sequence[str] = ()) -> list[int]:
        """Durably, in one transaction: forget paths and videos, add `embedded` rows with
        their vectors, error rows, and completed videos. Returns the embedded rows' ids."""
        assert self.writable
        if len(embedded) != len(vectors):
            raise ValueError("one vector per embedded row")
        if len(embedded) and vectors.shape[1] != self.dim:
            raise IndexMismatchError(
                f"vectors have dimension {vectors.shape[1]}, the index holds {self.dim}"
            )
        with writing(f"the index {self.folder}"):
            return self._commit(embedded, vectors, errors, videos_done, forget, forget_videos)

    def _commit(self, embedded: Sequence[NewRow], vectors: np.ndarray, errors: Sequence[NewRow],
                videos_done: Sequence[VideoDone], forget: Sequence[str],
                forget_videos: Sequence[str]) -> list[int]:
        cat = self.catalog
        ids: list[int] = []
        with cat.transaction():
            seq = cat.next_seq()
            cat.delete_paths(forget)
            for video in forget_videos:
                cat.delete_video(video)
            if len(embedded):
                name = f"{SEGMENTS}/{seq:08d}.faiss"
                ids = cat.upsert(embedded, name, seq)
                write_vectors(os.path.join(self.folder, name), np.asarray(ids, np.int64),
                              vectors)
                cat.add_segment(name, len(ids))
            cat.upsert(errors, None, seq)
            for v in videos_done:
                cat.video_done(v, seq)
        return ids

    def update_ivf(self, progress: Any = None, force: bool = False, audit: bool = False
                   ) -> Any:
        """File the vectors committed since the IVF's last update into it (creating it when
        the index passes ivf.IVF_ABOVE vectors, or when `force`; `audit`: every entry read
        and covered rows it lacks filed); see index/ivf_sync.py."""
        from imgsim_index.index.ivf_sync import update_ivf

        assert self.writable
        return update_ivf(self.folder, self.catalog, progress, force, audit)

    def remove_paths(self, paths: Sequence[str]) -> int:
        """Forget files (their vectors become garbage until the next compaction), as a
        commit of its own: searchers kept per commit (serve) see the removal."""
        with self.catalog.transaction():
            self.catalog.next_seq()
            return self.catalog.delete_paths(paths)

    def needs_compaction(self) -> bool:
        """More vectors in segments than in the compacted base: time to rewrite them all
        into one file (each vector is then rewritten O(1) times, amortised)."""
        segs = self.catalog.segments()
        base = segs.get(BASE, 0)
        delta = sum(c for name, c in segs.items() if name != BASE)
        return delta > base

    def needs_merge(self) -> bool:
        """More than MAX_SEGMENTS vector files: the smallest segments are due a merge."""
        return len(self.catalog.segments()) > MAX_SEGMENTS

    def tidy(self, chunk_bytes: int = CHUNK_BYTES, progress: Any = None) -> str:
        """Keep the vector files few at a cost that follows what was added: a compaction
        when the segments outgrow the base, else a merge of the smallest segments when there
        are too many files, else nothing (said on `progress`). Returns "compacted", "merged"
        or ""."""
        if self.needs_compaction():
            if progress is not None:
                progress.note("compacting the index")
            self.compact(chunk_bytes)
            return "compacted"
        merged = ""
        if progress is not None and self.needs_merge():
            progress.note("merging small vector files")
        while self.needs_merge():  # a build of many checkpoints may leave many files
            if not self.merge_smallest(chunk_bytes):
                break
            merged = "merged"
        return merged

    def merge_smallest(self, chunk_bytes: int = CHUNK_BYTES) -> str:
        """Merge the MERGE_SEGMENTS smallest segments (by vectors; never the base) into one
        new segment, streamed like compact(); returns its name. Crash-safe like compact():
        the new file is complete before the catalog names it, and an unnamed file is an
        orphan that the next writer removes."""
        segs = {n: c for n, c in self.catalog.segments().items() if n != BASE}
        names = sorted(segs, key=lambda n: (segs[n], n))[:MERGE_SEGMENTS]
        if len(names) < 2:
            return ""
        k, last = 0, self.catalog.last_seq()
        while True:
            name = f"{SEGMENTS}/{last:08d}-{k}.faiss"
            if name not in segs and not os.path.exists(os.path.join(self.folder, name)):
                break
            k += 1
        with writing(f"the index {self.folder} (merging segments)"):
            with VectorFileWriter(os.path.join(self.folder, name), self.dim) as out:
                self._copy_live(sorted(names), out, chunk_bytes)
                count = out.finish()
            with self.catalog.transaction():
                self.catalog.move_segments(names, name, count)
            self._remove_orphans()
        return name

    def _copy_live(self, segments: list[str], out: VectorFileWriter, chunk_bytes: int) -> None:
        """Append the live vectors of `segments` (in this order) to `out`, chunk by chunk."""
        for segment in segments:
            wanted = self.catalog.live_ids(segment)
            if not len(wanted):
                continue
            with VectorFile(os.path.join(self.folder, segment)) as vf:
                for ids, vecs in vf.chunks(chunk_bytes):
                    live = _members(ids, wanted)
                    out.append(ids[live], vecs[live])

    def compact(self, chunk_bytes: int = CHUNK_BYTES) -> None:
        """Rewrite all live vectors into vectors.faiss and drop the segments.

        Streams: each file is read `chunk_bytes` at a time and only the live rows are
        appended to the new base, so memory stays about 2 x chunk_bytes plus 8 bytes per
        row for the ids, whatever N is."""
        with writing(f"the index {self.folder} (compacting)"):
            self._compact(chunk_bytes)

    def _compact(self, chunk_bytes: int) -> None:
        path = os.path.join(self.folder, BASE)
        with VectorFileWriter(path, self.dim) as out:
            self._copy_live(sorted(self.catalog.segments()), out, chunk_bytes)
            # Safe at every step: the new base holds every live vector, so rows that still
            # name an old segment and rows that name the base both find theirs.
            count = out.finish()
        with self.catalog.transaction():
            self.catalog.move_all_to(BASE, count)
        self._remove_orphans()

    def _remove_orphans(self) -> None:
        known = set(self.catalog.segments())
        seg_dir = os.path.join(self.folder, SEGMENTS)
        for name in os.listdir(seg_dir):
            rel = f"{SEGMENTS}/{name}"
            if rel not in known:
                os.unlink(os.path.join(seg_dir, name))
        for name in os.listdir(self.folder):
            if ".tmp-" in name:
                os.unlink(os.path.join(self.folder, name))

    def _write_manifest(self) -> None:
        self.manifest["counts"] = self.catalog.counts()
        self.manifest["updated_at"] = _now()
        path = os.path.join(self.folder, MANIFEST)
        try:
            with writing(path):
                atomic_write_json(path, manifest_to_dict(self.manifest))
        except BaseException:
            with contextlib.suppress(OSError):  # a write that failed leaves its temporary
                os.unlink(f"{path}.tmp-{os.getpid()}")
            raise

    # -- reading -------------------------------------------------------------
    def load(self, roots: Sequence[str] | None = None,
             chunk_bytes: int = CHUNK_BYTES) -> LoadedVectors:
        """All embedded rows (under `roots` if given) with their current vectors.

        Memory: the result plus one chunk of `chunk_bytes`, whatever the files hold.
        """
        return self._retrying(lambda: self._load_once(roots, chunk_bytes))

    def _retrying(self, read: Callable[[], _T]) -> _T:
        """A writer may compact (and delete segment files) between our reading the rows and
        opening the files; then the rows are read again, naming the new files."""
        for attempt in range(5):
            try:
                return read()
            except FileNotFoundError as exc:
                if attempt == 4:
                    raise IndexFormatError(
                        f"{self.folder}: the vector file {exc.filename} is missing; the index "
                        "is damaged: run verify with repair") from None
                time.sleep(0.2 * (attempt + 1))
        raise AssertionError("unreachable")

    def _load_once(self, roots: Sequence[str] | None, chunk_bytes: int) -> LoadedVectors:
        db = self.catalog.db
        db.execute("BEGIN")  # rows and commit number from one snapshot
        try:
            rows = self.catalog.rows("WHERE status = 'embedded'")
            seq = self.catalog.last_seq()
        finally:
            db.execute("COMMIT")
        rows = in_scope(rows, roots) if roots is not None else self._placed(rows)
        row_ids = np.fromiter((r.id for r in rows), np.int64, len(rows))  # ascending
        codes: dict[str, int] = {}  # segment -> its number; each row's in row_seg
        row_seg = np.fromiter((codes.setdefault(str(r.segment), len(codes)) for r in rows),
                              np.int32, len(rows))
        out = self._gather(row_ids, row_seg, list(codes), chunk_bytes)
        return LoadedVectors(rows, out, seq)

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """One read transaction: every catalog read inside sees the same commit."""
        self.catalog.db.execute("BEGIN")
        try:
            yield
        finally:
            self.catalog.db.execute("COMMIT")

    def load_for_search(self, chunk_bytes: int = CHUNK_BYTES) -> SearchVectors:
        """The placed embedded rows' ids and current vectors, without building their rows
        (a query looks up only its hits' rows, by id: `Catalog.rows_by_id`). Call inside
        `snapshot` so that those rows are of the same commit.

        When one vector file holds exactly the wanted rows (a compacted index with nothing
        forgotten or parked since), its vectors are mapped read-only rather than read;
        a compaction replaces the file by a rename, so the map stays whole. Otherwise the
        vectors are gathered as `load` does."""
        return self._retrying(lambda: self._search_once(chunk_bytes))

    def _search_once(self, chunk_bytes: int) -> SearchVectors:
        by_segment = self.catalog.embedded_ids()
        names = sorted(by_segment)
        ids = np.concatenate([by_segment[n] for n in names] or [np.zeros(0, np.int64)])
        row_seg = np.repeat(np.arange(len(names), dtype=np.int32),
                            [len(by_segment[n]) for n in names])
        order = np.argsort(ids, kind="stable")
        ids, row_seg = ids[order], row_seg[order]
        keep = self._placed_mask(ids)
        if keep is not None:
            ids, row_seg = ids[keep], row_seg[keep]
        if len(names) == 1:
            with VectorFile(os.path.join(self.folder, names[0])) as vf:
                if vf.dim == self.dim and np.array_equal(np.sort(vf.ids), ids):
                    return SearchVectors(vf.ids, np.memmap(vf.path, "<f4", "r", VECTORS_AT,
                                                        (vf.n, vf.dim)))
        return SearchVectors(ids, self._gather(ids, row_seg, names, chunk_bytes))

    def _placed_mask(self, ids: np.ndarray) -> np.ndarray | None:
        """`_placed` over the ascending `ids`, as a mask (None: all placed). Only the rows
        that SQLite cannot show to lie under a root by a prefix range of their path (parked
        rows, paths or roots stored as bytes) are read and tested as `_placed` tests them."""
        roots = self.catalog.roots()
        prefixes = [os.path.join(r, "") for r in roots if _is_text(r)]
        if not all(os.path.normpath(r) == r for r in roots):
            prefixes = []  # `_placed` walks up each path's folders: test every row
        outside = self.catalog.embedded_outside(prefixes)
        if not outside:
            return None
        placed = {r.id for r in self._placed(outside)}
        parked = np.asarray(sorted({r.id for r in outside} - placed), np.int64)
        return ~_members(ids, parked)

    def _gather(self, row_ids: np.ndarray, row_seg: np.ndarray, names: Sequence[str],
                chunk_bytes: int) -> np.ndarray:
        """The vectors of the rows `row_ids` (ascending), each from the file its row names
        (`names[row_seg[i]]`), as one new (n, dim) float32 array."""
        out = np.zeros((len(row_ids), self.dim), np.float32)
        filled = 0
        for code, segment in enumerate(names):
            with VectorFile(os.path.join(self.folder, segment)) as vf:
                if vf.dim != self.dim:
                    raise IndexFormatError(
                        f"{self.folder}: {segment} holds {vf.dim}-d vectors, the index "
                        f"{self.dim}-d; the index is damaged: run verify with repair")
                filled += _fill_from(vf, row_ids, row_seg == code, out, segment, self.folder,
                                     chunk_bytes)
        if filled != len(row_ids):
            raise IndexFormatError(
                f"{self.folder}: {len(row_ids) - filled} catalog rows have no vector; "
                "the index is damaged: run verify with repair"
            )
        return out

    def placed(self, rows: list[Row]) -> list[Row]:
        return self._placed(rows)

    def _placed(self, rows: list[Row]) -> list[Row]:
        """The rows whose file lies inside one of the folders the index was built from.
        A file that apply moved out of them (to --move-to or the trash) keeps its row and
        vector under its new path but is parked: left out until undo brings it back."""
        roots = self.catalog.roots()
        if all(os.path.normpath(r) == r for r in roots):
            # a normalised folder is one of a path's dirname ancestors exactly when the
            # path starts with it and a separator: one C-level test per row
            prefixes = tuple(os.path.join(r, "") for r in roots)
            return [r for r in rows if r.path.startswith(prefixes)]
        return [r for r in rows if _inside(r.path, roots)]

    @staticmethod
    def record_dedupe(folder: str, seq: int) -> None:
        """Remember that a dedupe covered every commit up to `seq` (for --new-only)."""
        catalog = Catalog(os.path.join(folder, CATALOG))
        try:
            catalog.set_meta("last_dedupe_seq", str(seq))
        finally:
            catalog.close()

    @staticmethod
    def record_verified(folder: str, copies: Sequence[VerifiedPair],
                        not_copies: Sequence[tuple[int, int]]) -> None:
        """Record the pairs a dedupe verified (see Catalog.record_verified), in one commit."""
        catalog = Catalog(os.path.join(folder, CATALOG))
        try:
            with writing(f"the index catalog {catalog.path}"), catalog.transaction():
                catalog.record_verified(copies, not_copies)
        finally:
            catalog.close()

    def last_dedupe_seq(self) -> int:
        return int(self.catalog.get_meta("last_dedupe_seq") or 0)

    def error_rows(self, roots: Sequence[str] | None = None) -> list[Row]:
        rows = self.catalog.rows("WHERE status = 'error'")
        return rows if roots is None else in_scope(rows, roots)


def scope_prefix(root: str) -> str:
    """What the rows of an input start with: a folder as `folder/`, a file as its own path
    (a video's frames are `path#t=...`)."""
    path = os.path.abspath(root)
    return path if os.path.isfile(path) else os.path.join(path, "")


def in_scope(rows: list[Row], roots: Sequence[str]) -> list[Row]:
    """The rows inside the input folders `roots`, or of the input files among them."""
    prefixes = [scope_prefix(r) for r in roots]
    folders = tuple(p for p in prefixes if p.endswith(os.sep))
    files = {p for p in prefixes if not p.endswith(os.sep)}
    return [r for r in rows if r.path.startswith(folders)
            or r.path.split("#t=", 1)[0] in files]


def _is_text(path: str) -> bool:
    """Is `path` stored as TEXT in the catalog (valid UTF-8)?"""
    return isinstance(db_name(path), str)


def _inside(path: str, roots: set[str]) -> bool:
    folder = os.path.dirname(path)
    while folder not in roots:
        up = os.path.dirname(folder)
        if up == folder:
            return False
        folder = up
    return True


def check_identity(manifest: Manifest, identity: dict[str, Any], folder: str) -> None:
    """IndexMismatchError unless `identity` (the model at hand) matches the index's
    `manifest`. A key `identity` lacks is not known yet (the weights' digest before the
    model is loaded) and is neither compared nor named."""
    built = identity_of(manifest)
    differ = [k for k in IDENTITY_KEYS
              if k in identity and built.get(k) != identity.get(k)]
    if differ:
        raise IndexMismatchError(
            f"the index at {folder} was built with {describe_identity(built)}; "
            f"refusing to add vectors from {describe_identity(identity)} "
            f"({', '.join(differ)} {'differs' if len(differ) == 1 else 'differ'}); pick "
            f"another index folder, or use the index's model {manifest['model']}",
            fix=FIX_INDEX_MODEL, fix_arg=manifest["model"]
        )


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
