"""build/add: paths -> an up-to-date index. Orchestrates scan -> decode/embed -> store.

Only files that are new or changed (path, size, mtime) are embedded; a changed
file keeps its id and gets a new vector. A file that vanished from one path under
the scanned folders and appeared at another is a move, not a new file: its row
takes the new path and keeps its id and vector (`_moves`). A file reached under
several names is indexed under the name the index already holds. Videos become one entry per sampled
frame (`cam.mp4#t=00:01:23.500`); a video counts as indexed once all its frames
are committed, and an interrupted video resumes after its last committed
frame. Work is committed in checkpoints, so an interrupted build keeps what it
committed and the next run resumes from there.

The model is loaded only when something must be embedded: on an existing index
(and no other model or weights asked for) the scan and the catalog lookups come
first, so a run with nothing new or changed never loads it. Everything the scan
leaves out is counted per reason in BuildResult.skipped (see ingest.scan).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from imgsim_index.embed.embedder import EmbeddedBatch, Embedder, EmbedSettings, VideoBatch
from imgsim_index.embed.models import DEFAULT_MODEL, LoadedModel, load_model, model_info
from imgsim_index.errors import InputError
from imgsim_index.index.catalog import Catalog, NewRow, Row, VideoDone
from imgsim_index.index.import_vectors import IMPORTED_WEIGHTS
from imgsim_index.index.manifest import manifest_to_dict
from imgsim_index.index.store import IndexStore, check_identity
from imgsim_index.ingest.identity import file_digest
from imgsim_index.ingest.scan import (
    UNREADABLE_FOLDER,
    Alias,
    ImageRef,
    Scan,
    ScanSettings,
    Skipped,
    scan_inputs,
    skipped_counts,
)
from imgsim_index.ingest.video import frame_path, split_frame_path
from imgsim_index.pipeline.engine import Engine, FileEmbedder
from imgsim_index.progress import NoProgress, Progress


@dataclass(frozen=True)
class BuildSettings:
    model: str | None = None  # None: the index's model, or resnet50 for a new index
    weights: str | None = None
    embed: EmbedSettings = field(default_factory=EmbedSettings)
    video_fps: float = 1.0  # frames sampled per second of video
    prune: bool = False  # forget catalog entries under the scanned paths that are gone
    checkpoint_images: int = 2048
    checkpoint_seconds: float = 30.0
    wait_for_lock: bool = False
    scan: ScanSettings = field(default_factory=ScanSettings)  # filters: hidden, exclude, ...

    def validate(self) -> None:
        self.scan.validate()
        if not 0 < self.video_fps <= 1000:
            raise InputError(f"video fps must be in (0, 1000], got {self.video_fps}")
        if self.checkpoint_images < 1:
            raise InputError("checkpoint size must be at least 1 image")


@dataclass
class BuildResult:
    index: str
    model: str
    scanned: int = 0  # files found (a video counts once)
    embedded: int = 0  # images and frames embedded by this run
    embedded_frames: int = 0  # of `embedded`: video frames
    embedded_videos: int = 0  # videos whose frames this run embedded
    unchanged: int = 0
    errors: int = 0  # unreadable files recorded by this run
    pruned: int = 0
    moved: int = 0  # rows that took a new path (files renamed or moved), not re-embedded
    total_embedded: int = 0
    total_errors: int = 0
    seconds: float = 0.0
    scanned_paths: list[str] = field(default_factory=list)
    aliases: list[Alias] = field(default_factory=list)  # other names of files indexed once
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count
    skipped_paths: list[Skipped] = field(default_factory=list)
    model_loaded: bool = False  # False: nothing needed embedding, the model was not loaded
    created: bool = False  # True: this run created the index folder's index


def resolve_model(index_dir: str, settings: BuildSettings) -> LoadedModel:
    """Pick and load the model before any work, checking it against an existing index."""
    manifest = IndexStore.read_manifest(index_dir) if IndexStore.exists(index_dir) else None
    name = settings.model or (manifest["model"] if manifest else DEFAULT_MODEL)
    info = model_info(name)
    weights = settings.weights
    if manifest is not None:
        # before loading: the weights' digest is not known yet, so it is not compared
        check_identity(manifest, {"model": name, "dim": info.dim,
                                  "preprocessing": info.preprocess.identity()}, index_dir)
        hint = manifest.get("weights_source")
        if weights is None and hint and os.path.isfile(hint):
            weights = hint  # the local file this index was built from
    return load_model(name, weights)


def build_index(
    paths: Sequence[str],
    index_dir: str,
    settings: BuildSettings | None = None,
    progress: Progress | None = None,
    model: LoadedModel | None = None,
    accept: Callable[[ImageRef], bool] | None = None,
    should_stop: Callable[[], bool] | None = None,
    engine: Engine | None = None,
    store: IndexStore | None = None,
) -> BuildResult:
    """Bring the index up to date with `paths` (folders, image files, video files).

    `accept` filters the scanned files (e.g. only files that finished being written);
    `should_stop` is polled between batches: when it says so, the work done so far is
    committed and the build returns early. `engine` embeds the still images
    (default: this process, `embed.Embedder`); this process stays the only writer.
    `store`: a writer the caller already holds (a long-running service); it stays open.
    """
    settings = settings or BuildSettings()
    settings.validate()
    progress = progress or NoProgress()
    t0 = time.perf_counter()
    for p in paths:  # cheap checks first, then the model, then the (long) scan
        if not os.path.exists(p):
            raise InputError(f"no such folder or file: {p}")
    deferred = model is None and _can_defer_model(index_dir, settings)
    if model is None and not deferred:
        model = resolve_model(index_dir, settings)
    if model is not None:
        identity = {**model.identity(), "weights_source": model.weights_source}
    else:  # the index's own identity: checked against the model once it is loaded
        identity = manifest_to_dict(store.manifest if store is not None
                                    else IndexStore.read_manifest(index_dir))
    owned = store is None
    created = store is None and not IndexStore.exists(index_dir)
    if store is None:
        store = IndexStore.open_writer(index_dir, identity, wait=settings.wait_for_lock)
    elif model is not None:
        check_identity(store.manifest, identity, index_dir)
    writer = store
    try:
        progress.note(f"scanning {len(paths)} path(s)")
        found = scan_inputs(paths, settings.scan)
        refs = _prefer_indexed_names(found, store.catalog)
        if found.aliases:
            a = found.aliases[0]
            progress.note(f"{len(found.aliases)} file(s) reached under more than one name were "
                          f"indexed once, under the first name found (e.g. {a.path} is "
                          f"{a.indexed_as})")
        if accept is not None:
            refs = [r for r in refs if accept(r)]
        slot = _ModelSlot(model, lambda: _load_for(writer, index_dir, settings, progress))
        update = _Update(store, slot, settings, progress, should_stop, engine)
        # before run: a prune leaves alone the rows under folders the scan could not list
        update.result.skipped = skipped_counts(found.skipped)
        update.result.skipped_paths = found.skipped
        result = update.run(refs, paths)
        result.aliases = found.aliases
        result.model_loaded = slot.loaded is not None
        result.created = created
        store.tidy(progress=progress)
        store.update_ivf(progress)  # a large index files its new vectors into the IVF
        counts = store.catalog.counts()
    finally:
        if owned:
            store.close()
    result.total_embedded, result.total_errors = counts["embedded"], counts["errors"]
    result.seconds = time.perf_counter() - t0
    return result


def _can_defer_model(index_dir: str, settings: BuildSettings) -> bool:
    """Can loading the model wait until something must be embedded? Yes on an existing
    index of embedded images when no other model and no weights file are asked for (an
    index of imported vectors is refused up front, as a build cannot add to it)."""
    if settings.weights is not None or not IndexStore.exists(index_dir):
        return False
    manifest = IndexStore.read_manifest(index_dir)
    if manifest.get("weights_id") == IMPORTED_WEIGHTS:
        return False
    return settings.model in (None, manifest.get("model"))


def _load_for(store: IndexStore, index_dir: str, settings: BuildSettings,
              progress: Progress) -> LoadedModel:
    progress.note("loading the model")
    model = resolve_model(index_dir, settings)
    check_identity(store.manifest, model.identity(), index_dir)
    return model


class _ModelSlot:
    """The model, loaded on first use."""

    def __init__(self, model: LoadedModel | None, load: Callable[[], LoadedModel]):
        self.loaded, self._load = model, load

    def get(self) -> LoadedModel:
        if self.loaded is None:
            self.loaded = self._load()
        return self.loaded


def _prefer_indexed_names(found: Scan, cat: Catalog) -> list[ImageRef]:
    """The scan lists a file reached under several names under the first name found; when
    the index holds it under another of those names (a keeper whose copy apply replaced
    by a hard link to it), list it under that one, so its row stays and the other name
    stays an alias."""
    held: dict[str, tuple[Alias, Row]] = {}  # first name found -> the name the index holds
    for a in found.aliases:
        row = cat.row_of(a.path)
        if a.indexed_as not in held and row is not None and cat.row_of(a.indexed_as) is None:
            held[a.indexed_as] = (a, row)
    if not held:
        return found.refs

    def renamed(a: Alias) -> Alias:
        if a.indexed_as not in held:
            return a
        b = held[a.indexed_as][0]
        return Alias(a.indexed_as, b.path) if b is a else Alias(a.path, b.path)

    found.aliases = [renamed(a) for a in found.aliases]
    return [replace(x, path=held[x.path][1].path, root=held[x.path][1].root)
            if x.path in held else x for x in found.refs]


def _changed(ref: ImageRef, row: Row | None) -> bool:
    if row is None:
        return True
    if ref.error is not None:
        return row.status != "error" or row.error != ref.error
    return (row.size, row.mtime_ns) != (ref.size, ref.mtime_ns)


def _under(paths: Sequence[str]) -> Callable[[str], bool]:
    """Is a path inside one of the input folders among `paths`?"""
    folders = tuple(os.path.join(os.path.abspath(p), "") for p in paths if os.path.isdir(p))
    return lambda p: p.startswith(folders)


def _digest_or_none(x: ImageRef) -> str | None:
    """For engines that do not hand back the digest of the bytes they read."""
    try:
        return file_digest(x.path)
    except OSError:
        return None


class _Update:
    """One pass over the scanned files: decide what to do, embed, commit in checkpoints."""

    def __init__(self, store: IndexStore, model: _ModelSlot, settings: BuildSettings,
                 progress: Progress, should_stop: Callable[[], bool] | None = None,
                 engine: Engine | None = None):
        self.store, self.slot, self.settings, self.progress = store, model, settings, progress
        self.should_stop = should_stop or (lambda: False)
        self.rows: list[NewRow] = []
        self.vectors: list[np.ndarray] = []
        self.errors: list[NewRow] = []
        self.videos_done: list[VideoDone] = []
        self.frames = 0  # of `rows`: video frames
        self.forget_videos: list[str] = []
        self.forget_paths: list[str] = []  # a video's own error row, once it decodes
        self.last = time.monotonic()
        self.result = BuildResult(index=store.folder, model=store.manifest["model"])
        self._embedder: Embedder | None = None
        self.engine = engine

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = Embedder(self.slot.get(), self.settings.embed.device,
                                     self.settings.embed.backend)
        return self._embedder

    def run(self, refs: list[ImageRef], paths: Sequence[str]) -> BuildResult:
        cat = self.store.catalog
        known = cat.rows_by_path()
        videos_done = cat.videos()
        r = self.result
        r.scanned, r.scanned_paths = len(refs), [x.path for x in refs]
        r.moved = self._moves(refs, paths, known)
        images = [x for x in refs if x.error is None and x.kind == "image"
                  and _changed(x, known.get(x.path))]
        bad = [x for x in refs if x.error is not None and _changed(x, known.get(x.path))]
        videos, starts = self._videos_to_do(refs, known, videos_done)
        r.unchanged = len(refs) - len(images) - len(bad) - len(videos) - r.moved
        if self.settings.prune:
            self._prune(refs, paths, known, videos_done)
        self.errors.extend(NewRow(x.path, x.root, x.size, x.mtime_ns, error=x.error)
                           for x in bad)
        self._flush(force=True)
        self._record_identities([x for x in refs if x.kind == "image" and x.error is None
                                 and x.path in known and not _changed(x, known[x.path])],
                                known)
        if images:
            self._embed_images(images)
        if videos and not self.should_stop():
            self._embed_videos(videos, starts)
        return r

    def _moves(self, refs: list[ImageRef], paths: Sequence[str], known: dict[str, Row]) -> int:
        """Rename the rows of files that moved: a row whose path vanished (under the scanned
        folders, and no longer there at all) takes the path of a new file that is the same
        file -- the same (dev, ino) with the row's size and mtime (inode numbers are reused
        after a delete) -- or, failing that, has the same size and content digest (a copy
        made elsewhere, the original deleted). Each vanished row is matched at most once;
        digests are read only for new files of a vanished row's size. `known` is updated."""
        new = [x for x in refs if x.kind == "image" and x.error is None and x.path not in known]
        if not new:
            return 0
        seen, under = {x.path for x in refs}, _under(paths)
        vanished = [row for row in known.values()
                    if row.status == "embedded" and row.path not in seen and under(row.path)
                    and split_frame_path(row.path)[1] is None and not os.path.lexists(row.path)]
        by_key = {(row.dev, row.ino): row for row in vanished}
        by_size: dict[int | None, list[Row]] = {}
        for row in vanished:
            if row.digest:
                by_size.setdefault(row.size, []).append(row)
        found: dict[str, tuple[ImageRef, Row, str | None]] = {}  # old path -> the move
        for x in new:
            same = by_key.get((x.dev, x.ino)) if x.dev is not None else None
            if same is not None and (same.size, same.mtime_ns) == (x.size, x.mtime_ns):
                found.setdefault(same.path, (x, same, same.digest))
        taken = {m[0].path for m in found.values()}
        for x in new:
            candidates = [] if x.path in taken else [
                row for row in by_size.get(x.size, []) if row.path not in found]
            digest = _digest_or_none(x) if candidates else None
            copy = next((row for row in candidates if row.digest == digest), None)
            if copy is not None:
                found[copy.path] = (x, copy, digest)
        if found:
            with self.store.catalog.transaction():
                self.store.catalog.next_seq()  # rows change path: a commit of its own
                for old, (x, row, digest) in found.items():
                    self.store.catalog.rename_path(old, x.path, x.dev, x.ino, digest, NewRow(
                        x.path, x.root, x.size, x.mtime_ns))
                    del known[old]
                    known[x.path] = replace(row, path=x.path, root=x.root, size=x.size,
                                            mtime_ns=x.mtime_ns, dev=x.dev, ino=x.ino,
                                            digest=digest)
        return len(found)

    def _record_identities(self, unchanged: list[ImageRef], known: dict[str, Row]) -> None:
        """Unchanged files indexed before identities were recorded (or since moved to
        another inode by a copy): store their (dev, ino) and content digest."""
        todo = [x for x in unchanged
                if (known[x.path].dev, known[x.path].ino) != (x.dev, x.ino)
                or known[x.path].digest is None]
        if not todo:
            return
        cat = self.store.catalog
        with cat.transaction():
            for x in todo:
                try:
                    cat.set_identity(x.path, x.dev, x.ino, file_digest(x.path))
                except OSError:
                    continue  # unreadable now: its row keeps no digest, so apply refuses it

    def _videos_to_do(self, refs: list[ImageRef], known: dict[str, Row],
                      done: dict[str, tuple[int | None, int | None, int]]
                      ) -> tuple[list[ImageRef], list[int]]:
        """Videos that are new, changed, or interrupted; and the ms to resume each from."""
        committed: dict[str, tuple[int | None, int | None, int]] = {}
        for row in known.values():
            video, ms = split_frame_path(row.path)
            if ms is not None:
                size, mtime, last = committed.get(video, (row.size, row.mtime_ns, -1))
                committed[video] = (size, mtime, max(last, ms))
        todo, starts = [], []
        for x in refs:
            if x.kind != "video" or x.error is not None:
                continue
            state = (x.size, x.mtime_ns)
            if x.path in done and done[x.path][:2] == state:
                continue
            if x.path in known:
                self.forget_paths.append(x.path)
            prior = committed.get(x.path)
            if prior is not None and prior[:2] == state:
                starts.append(prior[2] + 1)  # resume after the last committed frame
            else:
                if prior is not None or x.path in done:
                    self.forget_videos.append(x.path)  # changed: its old frames go
                starts.append(0)
            todo.append(x)
        return todo, starts

    def _prune(self, refs: list[ImageRef], paths: Sequence[str], known: dict[str, Row],
               videos_done: dict[str, tuple[int | None, int | None, int]]) -> None:
        seen, under = {x.path for x in refs}, _under(paths)
        # a folder the scan could not list is not gone: its rows stay
        unlisted = _under([s.path for s in self.result.skipped_paths
                           if s.reason == UNREADABLE_FOLDER])
        gone = [p for p in known if split_frame_path(p)[0] not in seen and under(p)
                and not unlisted(p)]
        gone_videos = [v for v in videos_done if v not in seen and under(v) and not unlisted(v)]
        if gone or gone_videos:
            self.store.commit([], self._empty(), forget=gone, forget_videos=gone_videos)
            self.result.pruned = len(gone)

    def _drain(self, description: str, total: int | None, batches: Iterator[Any],
               take: Callable[[Any], None]) -> None:
        """Take batches, committing at checkpoints, until done or asked to stop."""
        self.progress.start(description, total)
        try:
            for batch in batches:
                take(batch)
                self._flush()
                if self.should_stop():
                    break
            self._flush(force=True)
        finally:
            self.progress.finish()

    def _embed_images(self, todo: list[ImageRef]) -> None:
        source: FileEmbedder = (self.engine.file_embedder(self.slot.get()) if self.engine
                                else self.embedder)
        batches = source.embed_files([x.path for x in todo], self.settings.embed,
                                     on_progress=self.progress.update)
        self._drain("embedding images", len(todo), batches, lambda b: self._take_images(todo, b))

    def _take_images(self, todo: list[ImageRef], b: EmbeddedBatch) -> None:
        for k, pos in enumerate(b.positions):
            x = todo[pos]
            w, h = b.sizes[k]
            digest = b.digests[k] if k < len(b.digests) else None
            self.rows.append(NewRow(x.path, x.root, x.size, x.mtime_ns, w, h,
                                    dev=x.dev, ino=x.ino, digest=digest or _digest_or_none(x),
                                    phash=b.hashes[k] if k < len(b.hashes) else None))
        if b.positions:
            self.vectors.append(b.vectors)
        for pos, reason in b.errors:
            x = todo[pos]
            self.errors.append(NewRow(x.path, x.root, x.size, x.mtime_ns, error=reason))

    def _embed_videos(self, todo: list[ImageRef], starts: list[int]) -> None:
        counts = [0] * len(todo)
        batches = self.embedder.embed_videos(
            [x.path for x in todo], self.settings.embed, 1.0 / self.settings.video_fps, starts,
            on_progress=self.progress.update)
        self._drain(f"embedding frames of {len(todo)} video(s)", None, batches,
                    lambda b: self._take_frames(todo, b, counts))

    def _take_frames(self, todo: list[ImageRef], b: VideoBatch, counts: list[int]) -> None:
        for v, ms, w, h in b.frames:
            x = todo[v]
            self.rows.append(NewRow(frame_path(x.path, ms), x.root, x.size, x.mtime_ns, w, h))
            counts[v] += 1
            self.frames += 1
        if b.frames:
            self.vectors.append(b.vectors)
        for v, reason in b.errors:
            x = todo[v]
            self.errors.append(NewRow(x.path, x.root, x.size, x.mtime_ns, error=reason))
        for v in b.done:
            x = todo[v]
            self.videos_done.append(VideoDone(x.path, x.root, x.size, x.mtime_ns, counts[v]))

    def _flush(self, force: bool = False) -> None:
        pending = len(self.rows) + len(self.errors) + len(self.videos_done)
        due = (len(self.rows) + len(self.errors) >= self.settings.checkpoint_images
               or time.monotonic() - self.last >= self.settings.checkpoint_seconds)
        if not (pending or self.forget_videos or self.forget_paths) or not (force or due):
            return
        matrix = np.concatenate(self.vectors) if self.vectors else self._empty()
        self.store.commit(self.rows, matrix, self.errors, self.videos_done,
                          forget=self.forget_paths, forget_videos=self.forget_videos)
        self.result.embedded += len(self.rows)
        self.result.embedded_frames += self.frames
        self.result.embedded_videos += sum(v.frames > 0 for v in self.videos_done)
        self.result.errors += len(self.errors)
        self.rows, self.vectors, self.errors, self.videos_done = [], [], [], []
        self.frames = 0
        self.forget_videos, self.forget_paths = [], []
        self.last = time.monotonic()

    def _empty(self) -> np.ndarray:
        return np.zeros((0, self.store.dim), np.float32)


__all__ = ["BuildResult", "BuildSettings", "build_index",
           "resolve_model"]
