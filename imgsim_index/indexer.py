"""build: folders -> an up-to-date index. Orchestrates scan -> decode/embed -> store.

Only files that are new or changed (path, size, mtime) are embedded. Work is
committed in checkpoints, so an interrupted build keeps what it committed and
the next run resumes from there.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from .catalog import NewRow, Row
from .embed import EmbeddedBatch, Embedder, EmbedSettings
from .errors import IndexFormatError, InputError
from .models import DEFAULT_MODEL, LoadedModel, load_model, model_info
from .progress import NoProgress, Progress
from .scan import ImageRef, scan_folders
from .store import IndexStore, check_identity


@dataclass(frozen=True)
class BuildSettings:
    model: str | None = None  # None: the index's model, or resnet50 for a new index
    weights: str | None = None
    embed: EmbedSettings = field(default_factory=EmbedSettings)
    checkpoint_images: int = 2048
    checkpoint_seconds: float = 30.0
    wait_for_lock: bool = False


@dataclass
class BuildResult:
    index: str
    model: str
    scanned: int = 0
    embedded: int = 0  # this run
    unchanged: int = 0
    errors: int = 0  # new unreadable files this run
    total_embedded: int = 0
    total_errors: int = 0
    seconds: float = 0.0
    scanned_paths: list[str] = field(default_factory=list)


def _needs_work(ref: ImageRef, row: Row | None) -> bool:
    if row is None:
        return True
    if ref.error is not None:
        return row.status != "error" or row.error != ref.error
    return (row.size, row.mtime_ns) != (ref.size, ref.mtime_ns)


def resolve_model(index_dir: str, settings: BuildSettings) -> LoadedModel:
    """Pick and load the model before any work, checking it against an existing index."""
    manifest = IndexStore._read_manifest(index_dir) if IndexStore.exists(index_dir) else None
    name = settings.model or (manifest["model"] if manifest else DEFAULT_MODEL)
    info = model_info(name)
    weights = settings.weights
    if manifest is not None:
        check_identity(
            manifest,
            {**manifest, "model": name, "dim": info.dim,
             "preprocessing": info.preprocess.identity()},
            index_dir,
        )
        hint = manifest.get("weights_source")
        if weights is None and hint and os.path.isfile(hint):
            weights = hint  # the local file this index was built from
    return load_model(name, weights)


def build_index(
    folders: Sequence[str],
    index_dir: str,
    settings: BuildSettings | None = None,
    progress: Progress | None = None,
    model: LoadedModel | None = None,
) -> BuildResult:
    settings = settings or BuildSettings()
    progress = progress or NoProgress()
    t0 = time.perf_counter()
    for folder in folders:  # cheap checks first, then the model, then the (long) scan
        if not os.path.isdir(folder):
            raise InputError(f"not a folder: {folder}")
    model = model or resolve_model(index_dir, settings)
    progress.note(f"scanning {len(folders)} folder(s)")
    refs = scan_folders(folders)
    identity = {**model.identity(), "weights_source": model.weights_source}
    store = IndexStore.open_writer(index_dir, identity, wait=settings.wait_for_lock)
    try:
        result = _update(store, refs, model, settings, progress)
        if store.needs_compaction():
            progress.note("compacting the index")
            store.compact()
        counts = store.catalog.counts()
    finally:
        store.close()
    result.total_embedded, result.total_errors = counts["embedded"], counts["errors"]
    result.seconds = time.perf_counter() - t0
    return result


def _update(store: IndexStore, refs: list[ImageRef], model: LoadedModel,
            settings: BuildSettings, progress: Progress) -> BuildResult:
    known = store.catalog.rows_by_path()
    result = BuildResult(index=store.folder, model=model.info.name, scanned=len(refs),
                         scanned_paths=[r.path for r in refs])
    scan_errors = [r for r in refs if r.error is not None and _needs_work(r, known.get(r.path))]
    todo = [r for r in refs if r.error is None and _needs_work(r, known.get(r.path))]
    result.unchanged = len(refs) - len(scan_errors) - len(todo)
    if scan_errors:
        store.commit([], _no_vectors(store), [_error_row(r, str(r.error)) for r in scan_errors])
        result.errors += len(scan_errors)
    if not todo:
        return result
    embedder = Embedder(model, settings.embed.device)
    progress.start("embedding", len(todo))
    pending: list[EmbeddedBatch] = []
    pending_n, last = 0, time.monotonic()
    try:
        for batch in embedder.embed_files([r.path for r in todo], settings.embed,
                                          on_progress=progress.update):
            pending.append(batch)
            pending_n += len(batch.positions) + len(batch.errors)
            if (pending_n >= settings.checkpoint_images
                    or time.monotonic() - last >= settings.checkpoint_seconds):
                _checkpoint(store, todo, pending, result)
                pending, pending_n, last = [], 0, time.monotonic()
        _checkpoint(store, todo, pending, result)
    finally:
        progress.finish()
    return result


def _checkpoint(store: IndexStore, todo: list[ImageRef], batches: list[EmbeddedBatch],
                result: BuildResult) -> None:
    import numpy as np

    rows: list[NewRow] = []
    errors: list[NewRow] = []
    vecs = []
    for b in batches:
        for k, pos in enumerate(b.positions):
            r = todo[pos]
            w, h = b.sizes[k]
            rows.append(NewRow(r.path, r.root, r.size, r.mtime_ns, w, h))
        if len(b.positions):
            vecs.append(b.vectors)
        errors.extend(_error_row(todo[pos], reason) for pos, reason in b.errors)
    if not rows and not errors:
        return
    matrix = np.concatenate(vecs) if vecs else _no_vectors(store)
    store.commit(rows, matrix, errors)
    result.embedded += len(rows)
    result.errors += len(errors)


def _error_row(ref: ImageRef, reason: str) -> NewRow:
    return NewRow(ref.path, ref.root, ref.size, ref.mtime_ns, error=reason)


def _no_vectors(store: IndexStore):  # type: ignore[no-untyped-def]
    import numpy as np

    return np.zeros((0, store.dim), np.float32)


__all__ = ["BuildResult", "BuildSettings", "IndexFormatError", "build_index", "resolve_model"]
