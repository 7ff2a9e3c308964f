"""import: VECTORS.npy + PATHS.txt -> rows of an index, as if imgsim-index had embedded them.

For users with their own embeddings (and for the benchmarks): every other
command (dedupe, the reports, apply) then works on the imported index.

Streaming: the .npy is read in blocks of about `chunk_bytes` (64 MiB) of
rows with plain file reads; each block is normalised and committed through
IndexStore.commit as one segment, and the compaction afterwards streams too
(store.compact), so memory is O(chunk), not O(N x dim): about 3 chunks at the
peak. The O(N) state is 8 bytes a row: a hash per path (to refuse duplicate
paths) and the ids during compaction. benchmarks/bench_build_memory.py
measures the peak at several N.

All input is checked before anything is written: the paths file (UTF-8, one
path per line, no empty or repeated lines, as many lines as vectors), the
vectors (2-D, numeric, every row finite and non-zero) and their dimension and
model label against the index's manifest.

Identity: an imported index records model NAME (default "imported"), the dim
of the file, weights_id "imported" and preprocessing {}. Even when NAME is a
model imgsim-index knows (its dimension is then checked too), the real
weights and preprocessing are *not* recorded: nothing proves the vectors came
from them, and recording them would let `build` mix its own vectors into the
index. So `build` refuses an imported index, and importing into an index that
`build` wrote is refused too.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from imgsim_index.errors import FIX_INDEX_MODEL, FIX_OTHER_INDEX, IndexMismatchError, InputError
from imgsim_index.index.catalog import NewRow
from imgsim_index.index.store import IndexStore
from imgsim_index.progress import NoProgress, Progress

IMPORTED_WEIGHTS = "imported"
DEFAULT_IMPORT_MODEL = "imported"


@dataclass(frozen=True)
class ImportSettings:
    model: str | None = None  # None: the index's model label, or "imported" for a new index
    chunk_bytes: int = 64 << 20  # float32 bytes per commit (one segment file each)
    compact: bool | None = None  # None: when the index needs it (store.needs_compaction)
    stat_files: bool = True  # record size and mtime of paths that exist (for --keep policies)
    wait_for_lock: bool = False

    def validate(self) -> None:
        if self.model is not None and not self.model.strip():
            raise InputError("the model label must be a non-empty name")
        if self.chunk_bytes < 1:
            raise InputError("chunk size must be positive")


@dataclass
class ImportResult:
    index: str
    model: str
    dim: int
    imported: int
    total_embedded: int
    compacted: bool
    seconds: float


def imported_identity(model: str, dim: int) -> dict[str, Any]:
    return {"model": model, "dim": dim, "weights_id": IMPORTED_WEIGHTS, "preprocessing": {}}


class NpyRows:
    """A 2-D .npy file read a block of rows at a time with plain file reads.

    Not np.load(mmap_mode="r"): mapped pages count in the process's resident memory,
    so importing 1M x 2048 vectors would look 8 GiB big. A Fortran-ordered file has
    no contiguous rows; it falls back to a memory map."""

    def __init__(self, path: str):
        self.path = path
        try:
            self._fh = open(path, "rb")  # noqa: SIM115 - closed by close()
        except FileNotFoundError:
            raise InputError(f"vectors file not found: {path}") from None
        except OSError as exc:
            raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
        try:
            fmt = np.lib.format
            version = fmt.read_magic(self._fh)
            if version not in ((1, 0), (2, 0)):
                raise ValueError(f".npy format version {version[0]}.{version[1]}")
            read_header = (fmt.read_array_header_1_0 if version == (1, 0) else
                           fmt.read_array_header_2_0)
            shape, fortran, dtype = read_header(self._fh)
        except (OSError, ValueError) as exc:
            self._fh.close()
            raise InputError(f"{path} is not a readable .npy file: {exc}") from None
        self.offset = self._fh.tell()
        if len(shape) != 2 or shape[1] < 1:
            self._fh.close()
            raise InputError(f"{path} holds an array of shape {shape}; expected (n, dim)")
        if not (np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.integer)):
            self._fh.close()
            raise InputError(f"{path} holds {dtype} values; expected floats")
        self.shape: tuple[int, int] = (int(shape[0]), int(shape[1]))
        self.dtype = dtype
        want = self.offset + shape[0] * shape[1] * dtype.itemsize
        if os.fstat(self._fh.fileno()).st_size < want:
            self._fh.close()
            raise InputError(f"{path} is truncated: its header promises {shape[0]} rows")
        self._fortran = (np.load(path, mmap_mode="r", allow_pickle=False) if fortran
                         else None)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows: slice) -> np.ndarray:
        start, stop, _ = rows.indices(self.shape[0])
        if self._fortran is not None:
            return np.asarray(self._fortran[start:stop])
        d = self.shape[1]
        self._fh.seek(self.offset + start * d * self.dtype.itemsize)
        block = np.fromfile(self._fh, dtype=self.dtype, count=max(0, stop - start) * d)
        return block.reshape(-1, d)

    def close(self) -> None:
        self._fh.close()


def open_vectors(path: str) -> NpyRows:
    """The .npy file, checked to be a 2-D numeric matrix, for reading in blocks of rows."""
    return NpyRows(path)


def iter_paths(path: str) -> Iterator[tuple[int, str]]:
    """(line number, absolute path) per line of a UTF-8 paths file; checks each line."""
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below; a generator owns it
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    with fh:
        for lineno, raw in enumerate(fh, 1):
            line = raw.removesuffix(b"\n").removesuffix(b"\r")
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError:
                raise InputError(f"{path} line {lineno} is not valid UTF-8") from None
            if not text:
                raise InputError(f"{path} line {lineno} is empty; give one path per line")
            if "\0" in text:
                raise InputError(f"{path} line {lineno} holds a NUL character")
            yield lineno, os.path.abspath(text)


def check_paths(path: str) -> int:
    """Validate the whole paths file (see iter_paths; no path twice). Returns the count."""
    hashes = []
    for _, p in iter_paths(path):
        hashes.append(hash(p))
    h = np.asarray(hashes, np.int64)
    del hashes
    order = np.argsort(h, kind="stable")
    same = np.nonzero(h[order][1:] == h[order][:-1])[0]
    if len(same):  # equal hashes: compare the paths themselves (hash collisions are allowed)
        suspects = set(h[order][same].tolist())
        seen: dict[str, int] = {}
        for lineno, p in iter_paths(path):
            if hash(p) in suspects:
                if p in seen:
                    raise InputError(
                        f"{path} lists {p} twice (lines {seen[p]} and {lineno}); "
                        "each image can have one vector"
                    )
                seen[p] = lineno
    return len(h)


def _chunks(n: int, rows: int) -> Iterator[tuple[int, int]]:
    for s in range(0, n, rows):
        yield s, min(n, s + rows)


def normalised(block: np.ndarray, first_row: int, source: str, step: int = 2048) -> np.ndarray:
    """Rows scaled to unit length in float64, returned as float32; bad rows are refused.

    Works `step` rows at a time, so the float64 temporaries stay small."""
    out = np.empty(block.shape, np.float32)
    for s in range(0, len(block), step):
        x = np.asarray(block[s:s + step], dtype=np.float64)
        norms = np.sqrt(np.einsum("ij,ij->i", x, x))
        bad = ~np.isfinite(norms) | (norms == 0)
        if bad.any():
            k = int(np.argmax(bad))
            what = "is all zeros" if norms[k] == 0 else "holds NaN or infinite values"
            raise InputError(
                f"{source} row {first_row + s + k} {what}; it has no direction to compare")
        out[s:s + step] = x / norms[:, None]
    return out


def check_vectors(mm: NpyRows, source: str, rows: int) -> None:
    for s, e in _chunks(len(mm), rows):
        normalised(mm[s:e], s, source)  # the result is dropped: only the checks count


def resolve_identity(index_dir: str, model: str | None, dim: int, source: str
                     ) -> dict[str, Any]:
    """The identity to write with, checked against an existing index and known models."""
    from imgsim_index.embed.models import MODEL_NAMES, model_info

    manifest = IndexStore.read_manifest(index_dir) if IndexStore.exists(index_dir) else None
    name = model or (manifest["model"] if manifest else DEFAULT_IMPORT_MODEL)
    if manifest is not None:
        if manifest.get("weights_id") != IMPORTED_WEIGHTS:
            raise IndexMismatchError(
                f"the index at {index_dir} was built by imgsim-index with "
                f"{manifest['model']}; imported vectors cannot be mixed with the ones it "
                "embeds; import into another index folder", fix=FIX_OTHER_INDEX
            )
        if manifest["dim"] != dim:
            raise IndexMismatchError(
                f"{source} holds {dim}-d vectors; the index at {index_dir} holds "
                f"{manifest['dim']}-d vectors ({manifest['model']}); pick another "
                "index folder", fix=FIX_OTHER_INDEX
            )
        if manifest["model"] != name:
            raise IndexMismatchError(
                f"the index at {index_dir} holds vectors imported as model "
                f"{manifest['model']!r}; refusing to add vectors labelled {name!r}. "
                f"label them {manifest['model']!r} or pick another index folder",
                fix=FIX_INDEX_MODEL, fix_arg=manifest["model"]
            )
    if name in MODEL_NAMES and model_info(name).dim != dim:
        raise IndexMismatchError(
            f"{source} holds {dim}-d vectors, but {name} gives {model_info(name).dim}-d "
            "vectors; label them with the name of the network that made them"
        )
    return imported_identity(name, dim)


def _row(path: str, stat_files: bool) -> NewRow:
    size = mtime = None
    if stat_files:
        try:
            st = os.stat(path)
            size, mtime = st.st_size, st.st_mtime_ns
        except OSError:
            pass  # a path that does not exist here is fine: vectors only
    return NewRow(path, os.path.dirname(path), size, mtime)


def import_vectors(
    vectors_file: str,
    paths_file: str,
    index_dir: str,
    settings: ImportSettings | None = None,
    progress: Progress | None = None,
) -> ImportResult:
    """Add the rows of VECTORS.npy, normalised, under the paths of PATHS.txt (line k = row k).

    A path already in the index gets its new vector (as when `build` sees a changed file).
    """
    settings = settings or ImportSettings()
    progress = progress or NoProgress()
    settings.validate()
    t0 = time.perf_counter()
    mm = open_vectors(vectors_file)
    try:
        return _import(mm, vectors_file, paths_file, index_dir, settings, progress, t0)
    finally:
        mm.close()


def _import(mm: NpyRows, vectors_file: str, paths_file: str, index_dir: str,
            settings: ImportSettings, progress: Progress, t0: float) -> ImportResult:
    n, dim = mm.shape
    count = check_paths(paths_file)
    if count != n:
        raise InputError(
            f"{vectors_file} has {n} rows but {paths_file} lists {count} paths; "
            "line k of the paths file names the image of row k"
        )
    identity = resolve_identity(index_dir, settings.model, dim, vectors_file)
    rows = max(1, settings.chunk_bytes // (4 * dim))
    progress.note(f"checking {n} vectors")
    check_vectors(mm, vectors_file, rows)
    store = IndexStore.open_writer(index_dir, identity, wait=settings.wait_for_lock)
    compacted = False
    try:
        progress.start("importing", n)
        paths = iter_paths(paths_file)
        try:
            for s, e in _chunks(n, rows):
                batch = [_row(next(paths)[1], settings.stat_files) for _ in range(s, e)]
                store.commit(batch, normalised(mm[s:e], s, vectors_file))
                progress.update(e - s)
        finally:
            progress.finish()
        total = store.catalog.counts()["embedded"]
        if settings.compact:
            progress.note("compacting the index")
            store.compact(settings.chunk_bytes)
            compacted = True
        elif settings.compact is None:
            compacted = store.tidy(settings.chunk_bytes, progress) == "compacted"
        store.update_ivf(progress)
    finally:
        store.close()
    return ImportResult(store.folder, identity["model"], dim, n, total, compacted,
                        time.perf_counter() - t0)


__all__ = ["ImportResult", "ImportSettings", "import_vectors", "imported_identity"]
