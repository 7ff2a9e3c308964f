"""ivf: the on-disk IVF of a large index, in FAISS's own format, built and read in bounded memory.

Layout (inside the index folder):
  ivf/ivf.json              the commit point: the parts, the commits each covers, settings
  ivf/coarse-NNNNNN.faiss   the trained, empty IndexIVFScalarQuantizer (quantizer + SQ8)
  ivf/part-NNNNNN.faiss     that index with OnDiskInvertedLists over part-NNNNNN.ivfdata;
                            `faiss.read_index(path, faiss.IO_FLAG_ONDISK_SAME_DIR)` opens it
  ivf/part-NNNNNN.ivfdata   FAISS's list layout: per list, codes (size x code_size bytes)
                            then ids (size x 8 bytes), lists one after another
  ivf/part-NNNNNN.probes    int32 (count, P): each entry's P nearest cells, nearest first
                            (column 0 its list), in the order of the lists
  ivf/part-NNNNNN.npz       per list: size, byte offset, largest reconstruction error

The quantizer works in a PCA-reduced, L2-normalised space (cheap assignment that keeps
near-duplicates together); codes are 8-bit scalar-quantized full vectors (a quarter of
float32). Every entry's reconstruction error ||x - decode(code)|| is measured when it is
encoded, and each list keeps its largest, so a scan can bound the error of an approximate
score and lose nothing to quantization (search/ivf_scan.py). Full-precision vectors stay in
the vector files; reported scores come from them.

A part covers catalog commits (from_seq, to_seq]: an entry is current when its row is
still embedded with a commit in that range (a changed file's new vector is in a later
part; a deleted file's entry is skipped until the parts are merged). Writers add each
checkpoint's new rows as a small part (O(new) work); when there are too many parts they
are merged into one, list by list. Every file is written under a temporary name and
renamed, and ivf.json is replaced last: a crash (SIGKILL) at any point leaves the
previous ivf.json naming complete files, and the next writer deletes the rest.

Files are read with plain reads (os.pread), never mmap: mapped pages count in a process's
resident memory, and a whole-index scan touches every list.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from imgsim_index.atomic_files import atomic_write_json, fsync_dir
from imgsim_index.errors import IndexFormatError

IVF_DIR = "ivf"
IVF_MANIFEST = "ivf.json"
IVF_FORMAT = 1
# an index gets an IVF above this many vectors (below it the exact tiles are as fast)
IVF_ABOVE = 200_000
MAX_PARTS = 8  # more parts than this: MERGE_PARTS adjacent ones of a like size...
MERGE_PARTS = 4  # ...are merged into one (ivf_sync.merge_window)
PROBES_STORED = 16  # nearest cells kept per entry; a scan probes up to this many
COARSE_DIM = 128  # PCA dimensions of the quantizer's space
TRAIN_POINTS = 24  # k-means sample per cell
MIN_TRAIN = 20_000
KMEANS_ITER = 8
# retrain when the index has grown this many times past what the cells were trained on:
# cells of sqrt(n) vectors then hold several times their planned size (see ARCHITECTURE)
RETRAIN_GROWTH = 4.0
# ... or when the lists' imbalance (FAISS's imbalance factor, n_lists x sum(size^2) /
# n^2: what a whole scan costs against equal lists) has doubled since training: new data
# far from the trained cells (a new camera, a new kind of photo) piles into a few lists
RETRAIN_IMBALANCE = 2.0
ENCODE_ROWS = 65_536  # vectors encoded per step


@dataclass(frozen=True)
class Part:
    name: str
    from_seq: int  # entries are rows committed after this ...
    to_seq: int  # ... up to and including this
    count: int


@dataclass(frozen=True)
class IvfManifest:
    dim: int
    nlist: int
    coarse_dim: int
    probes_stored: int
    trained_on: int  # vectors the index held when the cells were trained
    imbalance: float = 1.0  # the lists' imbalance factor right after training
    parts: tuple[Part, ...] = ()
    coarse: str = "coarse-000001.faiss"  # the trained quantizer these parts were coded with
    format_version: int = IVF_FORMAT
    trained_at: str = ""

    @property
    def covered_seq(self) -> int:
        return max((p.to_seq for p in self.parts), default=0)

    @property
    def count(self) -> int:
        return sum(p.count for p in self.parts)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "parts": [asdict(p) for p in self.parts]}

    @classmethod
    def from_json(cls, obj: dict[str, Any], where: str) -> IvfManifest:
        try:
            if obj["format_version"] != IVF_FORMAT:
                raise IndexFormatError(f"{where} has IVF format {obj['format_version']}, this "
                                       f"imgsim-index reads {IVF_FORMAT}; run verify --repair")
            parts = tuple(Part(**p) for p in obj["parts"])
            return cls(**{**obj, "parts": parts})
        except (KeyError, TypeError) as exc:
            raise IndexFormatError(f"{where} is damaged ({exc}); run verify --repair") from None


def imbalance(sizes: np.ndarray) -> float:
    """FAISS's imbalance factor of list sizes: 1 for equal lists."""
    n = float(sizes.sum())
    return float(len(sizes) * (sizes.astype(np.float64) ** 2).sum() / (n * n)) if n else 1.0


def list_sizes(folder: str, manifest: IvfManifest) -> np.ndarray:
    """Entries per list over every part (stale entries included)."""
    total = np.zeros(manifest.nlist, np.int64)
    for p in manifest.parts:
        with np.load(os.path.join(ivf_dir(folder), p.name + ".npz")) as meta:
            total += meta["sizes"].astype(np.int64)
    return total


def ivf_dir(folder: str) -> str:
    return os.path.join(folder, IVF_DIR)


def read_manifest(folder: str) -> IvfManifest | None:
    """The index's IVF manifest, or None when the index has no IVF."""
    path = os.path.join(ivf_dir(folder), IVF_MANIFEST)
    try:
        with open(path, encoding="utf-8") as fh:
            obj = json.load(fh)
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as exc:
        raise IndexFormatError(f"cannot read {path} ({exc}); run verify --repair") from None
    return IvfManifest.from_json(obj, path)


def write_manifest(folder: str, manifest: IvfManifest) -> None:
    atomic_write_json(os.path.join(ivf_dir(folder), IVF_MANIFEST), manifest.to_json())


# nlist = this x sqrt(n). Measured at 1M x 512 (clustered, 2,000 planted pairs at
# 0.96-0.995, threshold 0.95, nprobe 4, 2 cores): 2 -> 2,000 lists, 67 s, 2000/2000
# planted; 4 -> 4,000 lists, 32 s, 1999/2000 (benchmarks/RESULTS.md, bench_scale.py)
CELLS_PER_ROOT = 4.0


def cells_for(n: int) -> int:
    """nlist = CELLS_PER_ROOT x sqrt(n): a whole scan costs n x nprobe x n / nlist scores
    and filing costs n x nlist x COARSE_DIM; lists keep >= 64 entries (and 16 lists at
    least, so an index of up to 1,024 vectors probes every list: an exhaustive search)."""
    return max(16, min(round(CELLS_PER_ROOT * math.sqrt(n)), n // 64 or 16))


# -- the quantizer ------------------------------------------------------------------------
@dataclass
class Coarse:
    """The trained parts every IVF part shares: PCA basis, centroids, SQ8 ranges."""

    index: Any  # faiss.IndexIVFScalarQuantizer, trained, empty
    quantizer: Any  # its quantizer (PCA -> normalise -> inner product over centroids)
    vmin: np.ndarray  # (d,) SQ8 range start per dimension
    step: np.ndarray  # (d,) SQ8 step per dimension (vdiff / 255)
    dim: int
    nlist: int
    coarse_dim: int

    def probes(self, x: np.ndarray, k: int) -> np.ndarray:
        """(n, k) int64: the k nearest cells of each vector, nearest first."""
        _, p = self.quantizer.search(np.ascontiguousarray(x, np.float32), k)
        return np.asarray(p, np.int64)

    def encode(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(codes uint8 (n, d), reconstruction error per vector float32 (n,))."""
        codes = np.asarray(self.index.sq.compute_codes(np.ascontiguousarray(x, np.float32)))
        err = np.linalg.norm(self.decode(codes) - x, axis=1).astype(np.float32)
        return codes, err

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """float32 (n, d): the same values as FAISS's ScalarQuantizer.decode (QT_8bit)."""
        out = codes.astype(np.float32)
        out *= self.step
        out += self.vmin
        return out


def _linear_transform(mean: np.ndarray, basis: np.ndarray) -> Any:
    import faiss

    k, d = basis.shape
    lt = faiss.LinearTransform(d, k, True)
    faiss.copy_array_to_vector(np.ascontiguousarray(basis, np.float32).ravel(), lt.A)
    faiss.copy_array_to_vector((-(basis @ mean)).astype(np.float32), lt.b)
    lt.is_trained = True
    return lt


def train_coarse(sample: np.ndarray, nlist: int, seed: int = 0) -> Coarse:
    """A trained, empty IndexIVFScalarQuantizer over `sample` (unit vectors)."""
    import faiss

    from imgsim_index.search.approx import pca_basis

    d = sample.shape[1]
    rng = np.random.default_rng(seed)
    k = min(COARSE_DIM, d)
    flat = faiss.IndexFlatIP(k)
    if k < d:
        mean, basis = pca_basis(sample[:20_000], k, rng)
        quantizer: Any = faiss.IndexPreTransform(flat)
        quantizer.prepend_transform(faiss.NormalizationTransform(k, 2.0))
        quantizer.prepend_transform(_linear_transform(mean, basis))
        y = quantizer.chain.at(0).apply(np.ascontiguousarray(sample))
        y /= np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)
    else:
        quantizer, y = flat, sample
    km = faiss.Kmeans(k, nlist, niter=KMEANS_ITER, spherical=True, seed=seed,
                      max_points_per_centroid=TRAIN_POINTS * 4, min_points_per_centroid=1,
                      verbose=False)
    km.train(np.ascontiguousarray(y, np.float32))
    centroids = np.asarray(km.centroids, np.float32)
    # scan order: cells sorted by their first principal coordinate, so cells scanned one
    # after another probe many of the same lists (the scan's cache keeps them)
    order = np.argsort(centroids[:, 0] if k < d else centroids @ _top_direction(centroids))
    flat.add(centroids[order])  # cell numbers follow the scan order
    index = faiss.IndexIVFScalarQuantizer(quantizer, d, nlist, faiss.ScalarQuantizer.QT_8bit,
                                          faiss.METRIC_INNER_PRODUCT, False)
    index.sq.train(np.ascontiguousarray(sample, np.float32))
    index.is_trained = True
    index.own_fields = False
    coarse = _coarse_of(index)
    coarse.quantizer = quantizer  # keeps it alive: the index does not own it
    return coarse


def _top_direction(c: np.ndarray) -> np.ndarray:
    centred = c - c.mean(axis=0)
    return np.linalg.svd(centred, full_matrices=False)[2][0]


def load_coarse(folder: str, manifest: IvfManifest) -> Coarse:
    import faiss

    path = os.path.join(ivf_dir(folder), manifest.coarse)
    try:
        index = faiss.read_index(path)
    except RuntimeError as exc:
        raise IndexFormatError(f"cannot read {path} ({str(exc).splitlines()[-1][:120]}); "
                               "run verify --repair") from None
    return _coarse_of(index)


def _coarse_of(index: Any) -> Coarse:
    import faiss

    d = index.d
    trained = faiss.vector_to_array(index.sq.trained)
    vmin, vdiff = trained[:d], trained[d:]
    step = (vdiff / 255.0).astype(np.float32)
    return Coarse(index=index, quantizer=index.quantizer,
                  vmin=(vmin + 0.5 * step).astype(np.float32), step=step,
                  dim=d, nlist=index.nlist, coarse_dim=min(COARSE_DIM, d))


def save_coarse(folder: str, index: Any, name: str) -> None:
    import faiss

    os.makedirs(ivf_dir(folder), exist_ok=True)
    path = os.path.join(ivf_dir(folder), name)
    tmp = f"{path}.tmp-{os.getpid()}"
    faiss.write_index(index, tmp)
    _fsync_replace(tmp, path)


def _fsync_replace(tmp: str, path: str) -> None:
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(path))


# -- writing a part -----------------------------------------------------------------------
@dataclass
class _Run:
    """Entries in arrival order, spilled to a temporary file: home cell, probes, codes, ids,
    errors. Memory: one block."""

    path: str
    dim: int
    probes: int
    homes: list[np.ndarray] = field(default_factory=list)
    count: int = 0

    @property
    def record(self) -> int:
        return self.dim + 4 * self.probes + 8 + 4

    def append(self, fh: Any, codes: np.ndarray, probes: np.ndarray, ids: np.ndarray,
               err: np.ndarray) -> None:
        n = len(ids)
        rec = np.empty((n, self.record), np.uint8)
        rec[:, :self.dim] = codes
        at = self.dim
        rec[:, at:at + 4 * self.probes] = probes.astype("<i4").view(np.uint8).reshape(n, -1)
        at += 4 * self.probes
        rec[:, at:at + 8] = ids.astype("<i8").view(np.uint8).reshape(n, 8)
        rec[:, at + 8:] = err.astype("<f4").view(np.uint8).reshape(n, 4)
        fh.write(rec.tobytes())
        self.homes.append(probes[:, 0].astype(np.int32))
        self.count += n

    def blocks(self, rows: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray,
                                                  np.ndarray]]:
        with open(self.path, "rb") as fh:
            while True:
                raw = np.fromfile(fh, np.uint8, rows * self.record)
                if not len(raw):
                    return
                rec = raw.reshape(-1, self.record)
                at = self.dim
                probes = rec[:, at:at + 4 * self.probes].copy().view("<i4")
                at += 4 * self.probes
                ids = rec[:, at:at + 8].copy().view("<i8")[:, 0]
                err = rec[:, at + 8:].copy().view("<f4")[:, 0]
                yield rec[:, :self.dim], probes, ids, err


def write_part(folder: str, coarse: Coarse, name: str,
               batches: Iterable[tuple[np.ndarray, np.ndarray]],
               probes: int = PROBES_STORED) -> int:
    """Encode (ids, unit vectors) batches into the files of part `name` (FAISS format);
    returns the entry count. Two passes over a spill file: memory is one batch plus
    4 bytes per entry, whatever the count. Files appear complete or not at all."""

    base = os.path.join(ivf_dir(folder), name)
    probes = min(probes, coarse.nlist)
    run = _Run(f"{base}.run.tmp-{os.getpid()}", coarse.dim, probes)
    tmp = f".tmp-{os.getpid()}"
    try:
        with open(run.path, "wb") as fh:
            for ids, x in batches:
                for s in range(0, len(ids), ENCODE_ROWS):
                    xs = x[s:s + ENCODE_ROWS]
                    codes, err = coarse.encode(xs)
                    run.append(fh, codes, coarse.probes(xs, probes),
                               np.asarray(ids[s:s + ENCODE_ROWS], np.int64), err)
        homes = np.concatenate(run.homes) if run.homes else np.zeros(0, np.int32)
        sizes = np.bincount(homes, minlength=coarse.nlist).astype(np.int64)
        del homes
        entry = coarse.dim + 8
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)  # entry index
        offsets = starts * entry  # list c's bytes start here (capacity == size)
        cursor = np.zeros(coarse.nlist, np.int64)
        maxerr = np.zeros(coarse.nlist, np.float32)
        data = os.open(base + ".ivfdata" + tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        prob = os.open(base + ".probes" + tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.ftruncate(data, int(sizes.sum()) * entry)
            os.ftruncate(prob, int(sizes.sum()) * 4 * probes)
            for codes, pr, ids, err in run.blocks(ENCODE_ROWS):
                home = pr[:, 0]
                order = np.argsort(home, kind="stable")
                cells, first = np.unique(home[order], return_index=True)
                bounds = np.append(first, len(order))
                np.maximum.at(maxerr, home, err)
                for c, a, b in zip(cells.tolist(), bounds[:-1].tolist(), bounds[1:].tolist(),
                                   strict=True):
                    sel = order[a:b]
                    k, at = b - a, int(cursor[c])
                    size = int(sizes[c])
                    os.pwrite(data, codes[sel].tobytes(), int(offsets[c]) + at * coarse.dim)
                    os.pwrite(data, ids[sel].astype("<i8").tobytes(),
                              int(offsets[c]) + size * coarse.dim + at * 8)
                    os.pwrite(prob, pr[sel].astype("<i4").tobytes(),
                              (int(starts[c]) + at) * 4 * probes)
                    cursor[c] += k
            os.fsync(data)
            os.fsync(prob)
        finally:
            os.close(data)
            os.close(prob)
        np.savez(base + ".npz" + tmp + ".npz", sizes=sizes, offsets=offsets, maxerr=maxerr,
                 probes=np.int64(probes))
        _write_part_index(coarse, name, sizes, base + ".faiss" + tmp)
        for ext in (".ivfdata", ".probes", ".faiss"):
            _fsync_replace(base + ext + tmp, base + ext)
        _fsync_replace(base + ".npz" + tmp + ".npz", base + ".npz")
        return int(sizes.sum())
    finally:
        for leftover in (run.path, *(base + e + tmp for e in (".ivfdata", ".probes", ".faiss")),
                         base + ".npz" + tmp + ".npz"):
            with contextlib.suppress(OSError):
                os.unlink(leftover)


def _write_part_index(coarse: Coarse, name: str, sizes: np.ndarray, path: str) -> None:
    """The part's .faiss: the trained index with OnDiskInvertedLists describing the lists
    laid out one after another in NAME.ivfdata (capacity == size), named relative to it."""
    import faiss

    invlists = faiss.OnDiskInvertedLists(coarse.nlist, coarse.dim, name + ".ivfdata")
    u64 = np.ascontiguousarray(sizes, np.uint64)
    invlists.set_all_lists_sizes(faiss.swig_ptr(u64))
    invlists.totsize = int(sizes.sum()) * (coarse.dim + 8)
    index: Any = faiss.deserialize_index(faiss.serialize_index(coarse.index))  # a copy
    index.replace_invlists(invlists, False)
    index.ntotal = int(sizes.sum())
    faiss.write_index(index, path)
    empty: Any = faiss.ArrayInvertedLists(coarse.nlist, coarse.dim)
    empty.thisown = False  # the index frees it; `invlists` is freed by Python
    index.replace_invlists(empty, True)


def part_files(name: str) -> tuple[str, ...]:
    return tuple(name + ext for ext in (".faiss", ".ivfdata", ".probes", ".npz"))


def remove_unlisted(folder: str, manifest: IvfManifest | None) -> None:
    """Delete part files that ivf.json does not name (left by a crash or a merge)."""
    d = ivf_dir(folder)
    if not os.path.isdir(d):
        return
    keep = {IVF_MANIFEST}
    if manifest is not None:
        keep.add(manifest.coarse)
        for p in manifest.parts:
            keep.update(part_files(p.name))
    for entry in os.listdir(d):
        if entry not in keep:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(d, entry))


# -- reading a part -----------------------------------------------------------------------
class PartReader:
    """One part's lists, read with os.pread: (ids, codes, probes) of a list on demand."""

    def __init__(self, folder: str, part: Part, dim: int):
        self.part = part
        base = os.path.join(ivf_dir(folder), part.name)
        try:
            with np.load(base + ".npz") as meta:
                self.sizes = meta["sizes"].astype(np.int64)
                self.offsets = meta["offsets"].astype(np.int64)
                self.maxerr = meta["maxerr"].astype(np.float32)
                self.nprobes = int(meta["probes"])
            self._data = os.open(base + ".ivfdata", os.O_RDONLY)
            self._probes = os.open(base + ".probes", os.O_RDONLY)
        except (OSError, KeyError, ValueError) as exc:
            raise IndexFormatError(f"{base}: IVF part unreadable ({exc}); "
                                   "run `imgsim-index verify --repair`") from None
        self.dim = dim
        self.starts = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int64)

    def _read(self, fd: int, n: int, at: int) -> bytes:
        data = os.pread(fd, n, at)
        if len(data) != n:
            raise IndexFormatError(f"IVF part {self.part.name} is truncated; "
                                   "run `imgsim-index verify --repair`")
        return data

    def list_entries(self, c: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids int64 (n,), codes uint8 (n, d)) of list c."""
        n = int(self.sizes[c])
        if not n:
            return np.zeros(0, np.int64), np.zeros((0, self.dim), np.uint8)
        raw = self._read(self._data, n * (self.dim + 8), int(self.offsets[c]))
        codes = np.frombuffer(raw, np.uint8, n * self.dim).reshape(n, self.dim)
        ids = np.frombuffer(raw, "<i8", n, n * self.dim).astype(np.int64)
        return ids, codes

    def list_ids(self, c: int) -> np.ndarray:
        """ids int64 (n,) of list c (its codes are not read)."""
        n = int(self.sizes[c])
        at = int(self.offsets[c]) + n * self.dim
        return np.frombuffer(self._read(self._data, n * 8, at), "<i8").astype(np.int64)

    def list_probes(self, c: int) -> np.ndarray:
        n = int(self.sizes[c])
        raw = self._read(self._probes, n * 4 * self.nprobes, int(self.starts[c]) * 4 * self.nprobes)
        return np.frombuffer(raw, "<i4").reshape(n, self.nprobes).astype(np.int64)

    def close(self) -> None:
        os.close(self._data)
        os.close(self._probes)


@contextlib.contextmanager
def open_parts(folder: str, manifest: IvfManifest) -> Iterator[list[PartReader]]:
    readers: list[PartReader] = []
    try:
        for p in manifest.parts:
            readers.append(PartReader(folder, p, manifest.dim))
        yield readers
    finally:
        for r in readers:
            r.close()


OPEN_TRIES = 5  # times ivf.json is read again when a writer removed what it named


@dataclass
class OpenIvf(contextlib.AbstractContextManager["OpenIvf"]):
    """An IVF as one ivf.json names it: the manifest, the trained quantizer and the parts,
    open (open files outlive a writer's merge or retrain that deletes them)."""

    manifest: IvfManifest
    coarse: Coarse
    readers: list[PartReader]

    @classmethod
    def of(cls, folder: str, manifest: IvfManifest) -> OpenIvf:
        coarse = load_coarse(folder, manifest)
        readers: list[PartReader] = []
        try:
            for p in manifest.parts:
                readers.append(PartReader(folder, p, manifest.dim))
        except BaseException:
            for r in readers:
                r.close()
            raise
        return cls(manifest, coarse, readers)

    def close(self) -> None:
        for r in self.readers:
            r.close()
        self.readers = []

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_ivf(folder: str) -> OpenIvf:
    """The index's IVF, opened. A search opens it BEFORE it takes its catalog snapshot, so
    the snapshot is never older than the IVF: rows changed since are pending (committed
    after covered_seq), never held by the IVF with codes newer than the snapshot. A
    writer that removed the named files between the read of ivf.json and their opening
    (a merge, a retrain): ivf.json is read again."""
    tries = 0
    while True:
        manifest = read_manifest(folder)
        if manifest is None:
            raise IndexFormatError(f"{folder} has no IVF; run `imgsim-index verify --repair`")
        try:
            return OpenIvf.of(folder, manifest)
        except IndexFormatError:
            tries += 1
            if tries == OPEN_TRIES or read_manifest(folder) == manifest:
                raise  # damaged, not replaced


def merge_parts(folder: str, manifest: IvfManifest, live: Any, name: str) -> IvfManifest:
    """One part holding every current entry of `manifest`'s parts (codes copied, list by
    list; `live(ids, part) -> mask` says which entries are current). Returns the new
    manifest (not yet written)."""

    coarse = load_coarse(folder, manifest)
    base = os.path.join(ivf_dir(folder), name)
    tmp = f".tmp-{os.getpid()}"
    entry = coarse.dim + 8
    with open_parts(folder, manifest) as readers:
        sizes = np.zeros(manifest.nlist, np.int64)
        keep: list[list[np.ndarray]] = [[] for _ in readers]
        for k, r in enumerate(readers):  # pass 1: what stays, per list (ids only)
            for c in range(manifest.nlist):
                ids, _ = r.list_entries(c) if r.sizes[c] else (np.zeros(0, np.int64), None)
                mask = live(ids, r.part) if len(ids) else np.zeros(0, bool)
                keep[k].append(mask)
                sizes[c] += int(mask.sum())
        probes = min(r.nprobes for r in readers)
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        maxerr = np.zeros(manifest.nlist, np.float32)
        try:
            with open(base + ".ivfdata" + tmp, "wb") as data, \
                    open(base + ".probes" + tmp, "wb") as prob:
                for c in range(manifest.nlist):
                    codes_c, ids_c = [], []
                    for k, r in enumerate(readers):
                        mask = keep[k][c]
                        if not mask.any():
                            continue
                        ids, codes = r.list_entries(c)
                        codes_c.append(codes[mask])
                        ids_c.append(ids[mask])
                        prob.write(r.list_probes(c)[mask][:, :probes].astype("<i4").tobytes())
                        maxerr[c] = max(maxerr[c], r.maxerr[c])
                    for block in codes_c:
                        data.write(block.tobytes())
                    for block in ids_c:
                        data.write(block.astype("<i8").tobytes())
                data.flush()
                prob.flush()
            np.savez(base + ".npz" + tmp + ".npz", sizes=sizes, offsets=starts * entry,
                     maxerr=maxerr, probes=np.int64(probes))
            _write_part_index(coarse, name, sizes, base + ".faiss" + tmp)
            for ext in (".ivfdata", ".probes", ".faiss"):
                _fsync_replace(base + ext + tmp, base + ext)
            _fsync_replace(base + ".npz" + tmp + ".npz", base + ".npz")
        finally:
            for ext in (".ivfdata", ".probes", ".faiss", ".npz"):
                with contextlib.suppress(OSError):
                    os.unlink(base + ext + tmp + (".npz" if ext == ".npz" else ""))
    part = Part(name, min(p.from_seq for p in manifest.parts),
                max(p.to_seq for p in manifest.parts), int(sizes.sum()))
    return replace(manifest, parts=(part,))


def next_part_name(manifest: IvfManifest | None) -> str:
    used = [int(p.name.split("-")[1]) for p in manifest.parts] if manifest else []
    return f"part-{max(used, default=0) + 1:06d}"


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


__all__ = ["IVF_ABOVE", "IVF_DIR", "IVF_MANIFEST", "MAX_PARTS", "MERGE_PARTS", "PROBES_STORED",
           "Coarse", "IvfManifest", "OpenIvf", "Part", "PartReader", "cells_for",
           "load_coarse", "merge_parts", "next_part_name", "open_ivf", "open_parts",
           "read_manifest", "remove_unlisted", "save_coarse", "train_coarse",
           "write_manifest", "write_part"]
