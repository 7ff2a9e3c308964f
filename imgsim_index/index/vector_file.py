"""vecfile: one vector file of an index (a segment or the base), written and read in chunks.

The files are FAISS indexes, IndexIDMap2(IndexFlatIP), so `faiss.read_index`
opens any of them. This module writes and reads that layout itself so that no
step holds a whole file in memory: a compaction appends vectors chunk by chunk
and a load copies the rows it wants chunk by chunk. (FAISS's own I/O builds the
whole index in RAM, and serialising it makes a second copy, so memory would
grow with N.) Reads use plain file reads, not mmap: mapped pages count in a
process's resident memory and would make a 1M-vector compaction look 8 GiB big.

Layout, little-endian, as faiss/impl/index_write.cpp writes it:
  "IxM2" header(d, n)                  the IndexIDMap2
  "IxFI" header(d, n)                  its IndexFlatIP
  u64 n*d, float32[n*d]                the vectors, row-major
  u64 n,   int64[n]                    the ids
  header = i32 d, i64 n, i64 2^20, i64 2^20, u8 is_trained (1), i32 metric (0: inner product)
"""

from __future__ import annotations

import contextlib
import os
import struct
import sys
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np

from imgsim_index.atomic_files import fsync_dir
from imgsim_index.errors import IndexFormatError

_HEADER = struct.Struct("<iqqqBi")
_DUMMY = 1 << 20  # what FAISS writes in the two unused header fields
_COUNT = struct.Struct("<Q")
VECTORS_AT = 2 * (4 + _HEADER.size) + _COUNT.size  # byte offset of the first float
CHUNK_BYTES = 64 << 20  # default bytes of vectors per read or write step


def _head(d: int, n: int) -> bytes:
    def one(fourcc: bytes) -> bytes:
        return fourcc + _HEADER.pack(d, n, _DUMMY, _DUMMY, 1, 0)

    return one(b"IxM2") + one(b"IxFI") + _COUNT.pack(n * d)


def rows_per_chunk(dim: int, chunk_bytes: int = CHUNK_BYTES) -> int:
    return max(1, chunk_bytes // (4 * dim))


class VectorFile:
    """A vector file opened for reading: header checked, ids read (8 bytes a row),
    vectors read on demand. Raises FileNotFoundError when the file is gone (a writer
    may have compacted it away) and IndexFormatError when it is not a sound file."""

    def __init__(self, path: str):
        self.path = path
        self._fh: BinaryIO = open(path, "rb")  # noqa: SIM115 - closed by close()
        try:
            self.dim, self.n = self._parse(os.fstat(self._fh.fileno()).st_size)
            self._fh.seek(VECTORS_AT + 4 * self.n * self.dim + _COUNT.size)
            self.ids = np.fromfile(self._fh, dtype="<i8", count=self.n).astype(np.int64)
        except BaseException:
            self._fh.close()
            raise

    def _parse(self, size: int) -> tuple[int, int]:
        head = self._fh.read(VECTORS_AT)

        def bad(why: str) -> IndexFormatError:
            return IndexFormatError(f"{self.path} is not a sound vector file ({why}); "
                                    "run `imgsim-index verify --repair`")

        if len(head) < VECTORS_AT:
            raise bad("truncated header")
        fields = []
        for at, fourcc in ((0, b"IxM2"), (4 + _HEADER.size, b"IxFI")):
            if head[at:at + 4] != fourcc:
                raise bad(f"expected {fourcc.decode()} at byte {at}, found {head[at:at + 4]!r}")
            d, n, _, _, _, metric = _HEADER.unpack_from(head, at + 4)
            if metric != 0:
                raise bad(f"metric {metric}, not inner product")
            fields.append((d, n))
        (d, n), inner = fields
        (floats,) = _COUNT.unpack_from(head, VECTORS_AT - _COUNT.size)
        if inner != (d, n) or d < 1 or n < 0 or floats != n * d:
            raise bad(f"inconsistent sizes d={d} n={n}")
        want = VECTORS_AT + 4 * n * d + _COUNT.size + 8 * n
        if size != want:
            raise bad(f"{size} bytes where {want} were expected")
        self._fh.seek(VECTORS_AT + 4 * n * d)
        (id_count,) = _COUNT.unpack(self._fh.read(_COUNT.size))
        if id_count != n:
            raise bad(f"{id_count} ids for {n} vectors")
        return d, n

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows start..stop-1 as a new float32 array."""
        stop = min(stop, self.n)
        if stop <= start:
            return np.zeros((0, self.dim), np.float32)
        self._fh.seek(VECTORS_AT + 4 * start * self.dim)
        out = np.fromfile(self._fh, dtype="<f4", count=(stop - start) * self.dim)
        return out.reshape(stop - start, self.dim).astype(np.float32, copy=False)

    def read_into(self, start: int, out: np.ndarray) -> None:
        """Rows start..start+len(out)-1 read straight into `out` (a C-contiguous float32
        (k, dim) array, which may be a slice of a larger one): no intermediate copy."""
        k = len(out)
        if start < 0 or start + k > self.n or out.shape[1:] != (self.dim,):
            raise ValueError(f"rows {start}..{start + k} of {self.n} do not fit {out.shape}")
        if not (out.dtype == np.float32 and out.flags.c_contiguous):
            raise ValueError("read_into needs a C-contiguous float32 array")
        self._fh.seek(VECTORS_AT + 4 * start * self.dim)
        view = memoryview(out.view(np.uint8).reshape(-1))  # type: ignore[arg-type]
        if self._fh.readinto(view) != view.nbytes:  # type: ignore[attr-defined]
            raise IndexFormatError(f"{self.path} ended early; run `imgsim-index verify --repair`")
        if sys.byteorder != "little":
            out.byteswap(inplace=True)

    def chunks(self, chunk_bytes: int = CHUNK_BYTES) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids, vectors) of consecutive row ranges of about chunk_bytes each."""
        step = rows_per_chunk(self.dim, chunk_bytes)
        for s in range(0, self.n, step):
            yield self.ids[s:s + step], self.read(s, s + step)

    def fileno(self) -> int:
        """The open file's descriptor, for os.pread of single rows."""
        return self._fh.fileno()

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> VectorFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class VectorFileWriter:
    """Writes a vector file under a temporary name (`path.tmp-PID`, which a writer
    opening the index deletes as an orphan); `finish` fsyncs it and renames it into
    place, so readers see the whole file or none. Memory: the ids (8 bytes a row)."""

    def __init__(self, path: str, dim: int):
        self.path, self.dim, self.n = path, dim, 0
        self.tmp = f"{path}.tmp-{os.getpid()}"
        self._ids: list[np.ndarray] = []
        self._fh: BinaryIO = open(self.tmp, "wb")  # noqa: SIM115 - closed by finish/abort
        self._fh.write(_head(dim, 0))

    def append(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if vectors.ndim != 2 or vectors.shape[1] != self.dim or len(ids) != len(vectors):
            raise ValueError(f"expected {len(ids)} vectors of dimension {self.dim}, "
                             f"got shape {vectors.shape}")
        np.ascontiguousarray(vectors, dtype="<f4").tofile(self._fh)
        self._ids.append(np.asarray(ids, dtype="<i8"))
        self.n += len(ids)

    def finish(self) -> int:
        """Make the file appear at `path`; returns its row count."""
        ids = np.concatenate(self._ids) if self._ids else np.zeros(0, "<i8")
        self._fh.write(_COUNT.pack(self.n))
        ids.tofile(self._fh)
        self._fh.seek(0)
        self._fh.write(_head(self.dim, self.n))
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        os.replace(self.tmp, self.path)
        fsync_dir(os.path.dirname(os.path.abspath(self.path)))
        return self.n

    def abort(self) -> None:
        with contextlib.suppress(OSError):  # flushing what is buffered may fail too (disk full)
            self._fh.close()
        if os.path.exists(self.tmp):
            os.unlink(self.tmp)

    def __enter__(self) -> VectorFileWriter:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None:
            self.abort()


def write_vectors(path: str, ids: np.ndarray, vectors: np.ndarray) -> None:
    """One vector file at `path`, atomically."""
    with VectorFileWriter(path, vectors.shape[1]) as w:
        w.append(ids, vectors)
        w.finish()


def read_vectors(path: str) -> tuple[np.ndarray, np.ndarray]:
    """A whole vector file -> (ids int64 (n,), vectors float32 (n, dim)). Small files only."""
    with VectorFile(path) as f:
        return f.ids, f.read(0, f.n)


__all__ = ["CHUNK_BYTES", "VectorFile", "VectorFileWriter", "read_vectors", "rows_per_chunk",
           "write_vectors"]
