"""ivf_sync: keep an index's on-disk IVF (ivf.py) in step with its catalog, in bounded memory.

`update_ivf` runs under the writer lock: it creates the IVF when the index passes
IVF_ABOVE vectors (or when asked: `verify --repair`, a conversion of an existing flat
index on first use), adds the rows committed since the IVF's last commit as a new part
(work proportional to what is new: stale entries are counted from the catalog, not
read), merges MERGE_PARTS adjacent parts of a like size when there are more than
MAX_PARTS (so a merge costs what the small parts hold), all of them when a third
of the entries are stale, and retrains when the index has grown RETRAIN_GROWTH times past
what the cells were trained on or the lists' imbalance has grown RETRAIN_IMBALANCE times
since (new data far from the trained cells). ivf.json is replaced last, so a crash leaves the
previous IVF whole; a search treats rows the IVF does not hold yet as pending.

`RowKeys` are what a scan needs per embedded row in scope (24 bytes per live row, any
id): its commit and its rank in (commit, id) order. Every catalog change that affects a
search is a commit of its own (a new seq), so what is kept per commit stays true.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np

from imgsim_index.errors import IndexFormatError
from imgsim_index.index import ivf
from imgsim_index.index.catalog import LOOKUP_IDS, Catalog, prefix_end, writing
from imgsim_index.index.vector_file import CHUNK_BYTES, VECTORS_AT, VectorFile, rows_per_chunk
from imgsim_index.progress import NoProgress, Progress

FETCH = 200_000  # catalog rows fetched per step
STALE_SHARE = 1 / 3  # merge when this share of the IVF's entries is stale


@dataclass
class RowKeys:
    """The embedded rows (in scope), by ascending id: each one's commit and its rank in
    (commit, id) order, the key a scan orders rows by ("later"). Sized by the rows, not by
    the ids ever issued: 24 bytes per row, any int64 id."""

    ids: np.ndarray  # int64 (n,), ascending
    seqs: np.ndarray  # int64 (n,)
    ranks: np.ndarray  # int64 (n,)

    @classmethod
    def of(cls, ids: np.ndarray, seqs: np.ndarray) -> RowKeys:
        order = np.argsort(ids, kind="stable")
        ids, seqs = ids[order], seqs[order]
        ranks = np.empty(len(ids), np.int64)
        ranks[np.lexsort((ids, seqs))] = np.arange(len(ids), dtype=np.int64)
        return cls(ids, seqs, ranks)

    def position(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(index into the arrays, whether the id is a row here) of each id."""
        at = np.minimum(np.searchsorted(self.ids, ids), max(len(self.ids) - 1, 0))
        found = self.ids[at] == ids if len(self.ids) else np.zeros(len(ids), bool)
        return at, found

    def has(self, ids: np.ndarray) -> np.ndarray:
        return self.position(ids)[1]

    def keys_of(self, ids: np.ndarray, part: ivf.Part) -> np.ndarray:
        """The rank of the entries of `part` that are current and in scope, else -1."""
        at, found = self.position(ids)
        s = np.where(found, self.seqs[at] if len(self.seqs) else -1, -1)
        cur = (s > part.from_seq) & (s <= part.to_seq)
        return np.where(cur, self.ranks[at] if len(self.ranks) else -1, -1)

    def key(self, ids: np.ndarray) -> np.ndarray:
        """The rank of rows (all must be here)."""
        return self.ranks[np.searchsorted(self.ids, ids)]

    def seq_of(self, ids: np.ndarray) -> np.ndarray:
        """The commit of rows (all must be here)."""
        return self.seqs[np.searchsorted(self.ids, ids)]

    @property
    def count(self) -> int:
        return len(self.ids)


def row_keys(catalog: Catalog, prefixes: Sequence[str] | None = None,
             min_seq: int = -1) -> RowKeys:
    """The embedded rows' commits, limited to paths starting with one of `prefixes` when
    given, and to commits after `min_seq`. Streams the catalog: no Row objects. With
    `min_seq`, the rows are found by commit (the seq index): work follows the rows
    committed since, not the catalog's size."""
    base = "SELECT id, seq FROM images WHERE status = 'embedded' AND seq > ?"
    # `+path`: a prefix must not steer SQLite to a scan of the prefix's whole path range
    path = "+path" if min_seq >= 0 else "path"
    return _keys_of_query(catalog, base, (min_seq,), prefixes, path)


def keys_of_ids(catalog: Catalog, ids: np.ndarray,
                prefixes: Sequence[str] | None = None) -> RowKeys:
    """RowKeys of those of `ids` that are embedded rows in scope (looked up by id)."""
    got = [RowKeys.of(np.zeros(0, np.int64), np.zeros(0, np.int64))]
    base = ("SELECT id, seq FROM images WHERE status = 'embedded' AND id IN "
            "(SELECT value FROM json_each(?))")
    for s in range(0, len(ids), LOOKUP_IDS):
        chunk = json.dumps([int(i) for i in ids[s:s + LOOKUP_IDS].tolist()])
        got.append(_keys_of_query(catalog, base, (chunk,), prefixes, "+path"))
    return RowKeys.of(np.concatenate([k.ids for k in got]),
                      np.concatenate([k.seqs for k in got]))


def _keys_of_query(catalog: Catalog, base: str, params: tuple[object, ...],
                   prefixes: Sequence[str] | None, path: str) -> RowKeys:
    queries: list[tuple[str, tuple[object, ...]]] = []
    if prefixes is None:
        queries.append((base, params))
    else:
        for p in prefixes:
            queries.append((base + f" AND {path} >= ? AND {path} < ?",
                            (*params, p, prefix_end(p))))
    got: list[np.ndarray] = [np.zeros((0, 2), np.int64)]
    for sql, args in queries:
        cur = catalog.db.execute(sql, args)
        while rows := cur.fetchmany(FETCH):
            got.append(np.asarray(rows, np.int64).reshape(-1, 2))
    both = np.concatenate(got)
    del got
    return RowKeys.of(both[:, 0].copy(), both[:, 1].copy())


def iter_vectors(folder: str, catalog: Catalog, min_seq: int = 0,
                 chunk_bytes: int = CHUNK_BYTES) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(ids, vectors) of the embedded rows committed after `min_seq`, file by file, chunk
    by chunk (a row's current vector only: the file its row names)."""
    names = [str(r[0]) for r in catalog.db.execute(
        "SELECT DISTINCT segment FROM images WHERE status = 'embedded' AND seq > ?",
        (min_seq,))]
    for name in sorted(names):
        wanted = np.fromiter((r[0] for r in catalog.db.execute(
            "SELECT id FROM images WHERE segment = ? AND status = 'embedded' AND seq > ? "
            "ORDER BY id", (name, min_seq))), np.int64)
        with VectorFile(os.path.join(folder, name)) as vf:
            step = rows_per_chunk(vf.dim, chunk_bytes)
            for s in range(0, vf.n, step):
                ids = vf.ids[s:s + step]
                at = np.minimum(np.searchsorted(wanted, ids), max(len(wanted) - 1, 0))
                hit = wanted[at] == ids if len(wanted) else np.zeros(len(ids), bool)
                if hit.any():
                    yield ids[hit], vf.read(s, s + step)[hit]


def _sample(folder: str, catalog: Catalog, n: int, size: int, seed: int) -> np.ndarray:
    """About `size` of the index's vectors drawn uniformly in one pass."""
    rng = np.random.default_rng(seed)
    p = min(1.0, size / max(n, 1))
    got = [x[rng.random(len(x)) < p] for _, x in iter_vectors(folder, catalog)]
    return np.concatenate(got) if got else np.zeros((0, 0), np.float32)


def needs_ivf(catalog: Catalog, manifest: ivf.IvfManifest | None) -> bool:
    if manifest is not None:
        return True
    return catalog.count_embedded() > ivf.IVF_ABOVE


def update_ivf(folder: str, catalog: Catalog, progress: Progress | None = None,
               force: bool = False, audit: bool = False) -> ivf.IvfManifest | None:
    """Bring the IVF up to the catalog's last commit (the caller holds the writer lock).
    `force`: create it even for a small index; `audit`: read every entry's id and file
    covered rows it lacks (`verify --repair`)."""
    progress = progress or NoProgress()
    manifest = ivf.read_manifest(folder)
    if not force and not needs_ivf(catalog, manifest):
        return None
    with writing(f"the IVF of {folder}"):
        ivf.remove_unlisted(folder, manifest)
        last = catalog.last_seq()
        n = catalog.count_embedded()
        if manifest is None or n > ivf.RETRAIN_GROWTH * manifest.trained_on:
            return _rebuild(folder, catalog, n, last, progress)
        if manifest.covered_seq < last:
            manifest = _add_new(folder, catalog, manifest, last, progress)
            if _drifted(folder, manifest):
                return _rebuild(folder, catalog, n, last, progress)
        # every embedded row the IVF covers has one current entry, so the others are stale:
        # counted, not read (an update costs what is new); `force` reads every entry
        stale = manifest.count - n
        if audit or stale > STALE_SHARE * max(manifest.count, 1):
            manifest = _merge_and_file(folder, catalog, manifest, progress)
        elif len(manifest.parts) > ivf.MAX_PARTS:
            manifest = _merge_window(folder, catalog, manifest, progress)
        return manifest


def merge_window(counts: list[int], k: int) -> int:
    """The first of the k adjacent parts (of these entry counts) to merge: among the
    windows whose largest part holds no more than the others together (parts of a like
    size, so an entry is merged again only into a part at least twice as large: about
    log(N) times in all), the one holding the fewest entries; the fewest of all windows
    when no window is balanced."""
    sums = [sum(counts[i:i + k]) for i in range(len(counts) - k + 1)]
    balanced = [i for i in range(len(sums)) if 2 * max(counts[i:i + k]) <= sums[i]]
    return min(balanced or range(len(sums)), key=lambda i: (sums[i], i))


def _merge_window(folder: str, catalog: Catalog, manifest: ivf.IvfManifest,
                  progress: Progress) -> ivf.IvfManifest:
    """Too many parts: MERGE_PARTS adjacent parts (in commit order, merge_window) become
    one, their stale entries dropped (the rows of their ids looked up by id): the large old
    parts are left as they are, so merging costs what the small parts hold, not a rewrite
    of the whole IVF."""
    parts = sorted(manifest.parts, key=lambda p: p.from_seq)
    k = min(ivf.MERGE_PARTS, len(parts))
    at = merge_window([p.count for p in parts], k)
    window = replace(manifest, parts=tuple(parts[at:at + k]))
    with ivf.open_parts(folder, window) as readers:
        ids = np.unique(np.concatenate([np.zeros(0, np.int64)] + [
            r.list_ids(c) for r in readers for c in np.flatnonzero(r.sizes).tolist()]))
    keys = keys_of_ids(catalog, ids)
    progress.note(f"merging {k} of the IVF's parts ({folder})")
    merged = ivf.merge_parts(folder, window, lambda i, p: keys.keys_of(i, p) >= 0,
                             ivf.next_part_name(manifest))
    out = replace(manifest, parts=tuple(parts[:at]) + merged.parts + tuple(parts[at + k:]))
    ivf.write_manifest(folder, out)
    ivf.remove_unlisted(folder, out)
    return out


def _merge_and_file(folder: str, catalog: Catalog, manifest: ivf.IvfManifest,
                    progress: Progress) -> ivf.IvfManifest:
    """Merge the parts (dropping stale entries) when there are too many or too much is
    stale, then file covered rows the IVF holds no current entry of (a row put back with
    its old commit, as undo once did): both read every entry's id."""
    keys = row_keys(catalog)
    held = _held(folder, manifest, keys)
    stale = manifest.count - int(held.sum())
    if len(manifest.parts) > ivf.MAX_PARTS or stale > STALE_SHARE * max(manifest.count, 1):
        progress.note(f"merging the IVF's parts ({folder})")
        merged = ivf.merge_parts(folder, manifest, lambda ids, p: keys.keys_of(ids, p) >= 0,
                                 ivf.next_part_name(manifest))
        ivf.write_manifest(folder, merged)
        ivf.remove_unlisted(folder, merged)
        manifest = merged
    unfiled = keys.ids[(keys.seqs <= manifest.covered_seq) & (held == 0)]
    if len(unfiled):
        manifest = _file_unfiled(folder, catalog, manifest, unfiled, progress)
    return manifest


def _add_new(folder: str, catalog: Catalog, manifest: ivf.IvfManifest, last: int,
             progress: Progress) -> ivf.IvfManifest:
    """The rows committed after the IVF's last commit, up to `last`, filed as a new part;
    commits that wrote no vector (removals, renames) only extend the newest part's range."""
    batches = iter_vectors(folder, catalog, manifest.covered_seq)
    first = next(batches, None)
    if first is None:
        newest = max(manifest.parts, key=lambda p: p.to_seq)
        parts = tuple(replace(p, to_seq=last) if p is newest else p for p in manifest.parts)
    else:
        progress.note(f"adding new vectors to the IVF ({folder})")
        name = ivf.next_part_name(manifest)
        count = ivf.write_part(folder, ivf.load_coarse(folder, manifest), name,
                               itertools.chain([first], batches))
        parts = (*manifest.parts, ivf.Part(name, manifest.covered_seq, last, count))
    manifest = replace(manifest, parts=parts)
    ivf.write_manifest(folder, manifest)
    return manifest


def _held(folder: str, manifest: ivf.IvfManifest, keys: RowKeys) -> np.ndarray:
    """Per catalog id: how many current entries the IVF holds of it (its ids read, not its
    codes: 8 bytes per entry)."""
    held = np.zeros(keys.count, np.int32)
    with ivf.open_parts(folder, manifest) as readers:
        for reader in readers:
            _count_held(reader, keys, held)
    return held


def _count_held(reader: ivf.PartReader, keys: RowKeys, held: np.ndarray) -> None:
    for c in np.flatnonzero(reader.sizes).tolist():
        ids = reader.list_ids(c)
        cur = keys.keys_of(ids, reader.part) >= 0
        np.add.at(held, keys.position(ids[cur])[0], 1)


def _file_unfiled(folder: str, catalog: Catalog, manifest: ivf.IvfManifest, ids: np.ndarray,
                  progress: Progress) -> ivf.IvfManifest:
    """File rows the IVF covers but holds no current entry of (a row put back with its old
    commit: never so since undo gives it a new one) as a part covering every commit."""
    progress.note(f"filing {len(ids):,} vectors the IVF lacks ({folder})")
    name = ivf.next_part_name(manifest)
    with VectorLookup(folder, catalog) as lookup:
        batches = ((ids[s:s + ivf.ENCODE_ROWS], lookup.read(ids[s:s + ivf.ENCODE_ROWS]))
                   for s in range(0, len(ids), ivf.ENCODE_ROWS))
        count = ivf.write_part(folder, ivf.load_coarse(folder, manifest), name, batches)
    part = ivf.Part(name, 0, manifest.covered_seq, count)
    manifest = replace(manifest, parts=(*manifest.parts, part))
    ivf.write_manifest(folder, manifest)
    return manifest


def _drifted(folder: str, manifest: ivf.IvfManifest) -> bool:
    """Whether the lists' imbalance grew RETRAIN_IMBALANCE times since training."""
    now = ivf.imbalance(ivf.list_sizes(folder, manifest))
    return now > ivf.RETRAIN_IMBALANCE * manifest.imbalance


def _rebuild(folder: str, catalog: Catalog, n: int, last: int, progress: Progress
             ) -> ivf.IvfManifest:
    """Train the cells on a sample and file every vector into one part."""
    progress.note(f"training the IVF of {n:,} vectors ({folder})")
    nlist = ivf.cells_for(n)
    sample = _sample(folder, catalog, n, max(nlist * ivf.TRAIN_POINTS, ivf.MIN_TRAIN), seed=0)
    coarse = ivf.train_coarse(sample, nlist)
    del sample
    old = ivf.read_manifest(folder)
    generation = 1 + max((int(p.name.split("-")[1]) for p in old.parts), default=0) if old else 1
    ivf.save_coarse(folder, coarse.index, f"coarse-{generation:06d}.faiss")
    name = f"part-{generation:06d}"
    progress.note(f"filing {n:,} vectors into {nlist:,} on-disk lists")
    count = ivf.write_part(folder, coarse, name, iter_vectors(folder, catalog))
    manifest = ivf.IvfManifest(dim=coarse.dim, nlist=nlist, coarse_dim=coarse.coarse_dim,
                               probes_stored=min(ivf.PROBES_STORED, nlist), trained_on=n,
                               parts=(ivf.Part(name, 0, last, count),),
                               coarse=f"coarse-{generation:06d}.faiss", trained_at=ivf.now())
    manifest = replace(manifest, imbalance=ivf.imbalance(ivf.list_sizes(folder, manifest)))
    ivf.write_manifest(folder, manifest)
    ivf.remove_unlisted(folder, manifest)
    return manifest




class VectorLookup:
    """Full-precision vectors of embedded rows by id, read with os.pread from the file each
    row names (its current vector). By default the rows asked for are looked up in the
    catalog when read (work and memory follow the rows read, not N: a new-only search);
    `VectorLookup.whole` maps every embedded row once (16 bytes per row) for callers that
    read most of the index (a whole scan's rescoring, a service's searcher)."""

    def __init__(self, folder: str, catalog: Catalog):
        self.folder, self.catalog = folder, catalog
        self._files: dict[str, _Located] = {}
        self._map: tuple[np.ndarray, list[str], np.ndarray, np.ndarray] | None = None

    @classmethod
    def whole(cls, folder: str, catalog: Catalog) -> VectorLookup:
        lookup = cls(folder, catalog)
        try:
            names = sorted(catalog.embedded_ids().items())
            ids_parts, file_parts, pos_parts = [], [], []
            for k, (name, wanted) in enumerate(names):
                ids_parts.append(wanted)
                file_parts.append(np.full(len(wanted), k, np.int32))
                pos_parts.append(lookup._file(name).positions(wanted))
        except BaseException:
            lookup.close()
            raise
        ids = np.concatenate(ids_parts) if ids_parts else np.zeros(0, np.int64)
        order = np.argsort(ids)
        lookup._map = (ids[order], [n for n, _ in names],
                       (np.concatenate(file_parts) if file_parts
                        else np.zeros(0, np.int32))[order],
                       (np.concatenate(pos_parts) if pos_parts
                        else np.zeros(0, np.int64))[order])
        return lookup

    def _file(self, name: str) -> _Located:
        got = self._files.get(name)
        if got is None:
            got = self._files[name] = _Located(self.folder, name)
        return got

    def _locate(self, ids: np.ndarray) -> tuple[list[str], np.ndarray, np.ndarray]:
        """(file names, per id the index of its file, its row in that file)."""
        if self._map is not None:
            mids, names, file, pos = self._map
            at = np.searchsorted(mids, ids)
            return names, file[at], pos[at]
        segment = self.catalog.segments_of(np.unique(ids))
        names = sorted(set(segment.values()))
        index = {n: k for k, n in enumerate(names)}
        missing = [int(i) for i in ids.tolist() if int(i) not in segment]
        if missing:
            raise IndexFormatError(f"{self.folder}: row {missing[0]} has no vector; run "
                                   "`imgsim-index verify --repair`")
        file = np.fromiter((index[segment[int(i)]] for i in ids.tolist()), np.int32, len(ids))
        pos = np.empty(len(ids), np.int64)
        for k, name in enumerate(names):
            sel = file == k
            pos[sel] = self._file(name).positions(ids[sel])
        return names, file, pos

    def read(self, ids: np.ndarray) -> np.ndarray:
        """float32 (len(ids), dim): the current vector of each id (all must be embedded)."""
        ids = np.asarray(ids, np.int64)
        names, file, pos = self._locate(ids)
        files = [self._file(n).vf for n in names]
        dim = files[0].dim if files else 0
        out = np.empty((len(ids), dim), np.float32)
        row = 4 * dim
        for k in np.lexsort((pos, file)).tolist():  # file order: sequential-ish reads
            f = files[int(file[k])]
            raw = os.pread(f.fileno(), row, VECTORS_AT + int(pos[k]) * row)
            out[k] = np.frombuffer(raw, "<f4")
        return out

    def close(self) -> None:
        for f in self._files.values():
            f.vf.close()
        self._files = {}

    def __enter__(self) -> VectorLookup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Located:
    """One vector file opened, and how to find a row in it by id (its ids as written are
    ascending unless rows were appended out of order: then an argsort)."""

    def __init__(self, folder: str, name: str):
        self.folder, self.name = folder, name
        self.vf = VectorFile(os.path.join(folder, name))
        ids = self.vf.ids
        self.order = None if bool(np.all(ids[1:] > ids[:-1])) else np.argsort(ids,
                                                                              kind="stable")
        self.sorted_ids = ids if self.order is None else ids[self.order]

    def positions(self, wanted: np.ndarray) -> np.ndarray:
        ids = self.sorted_ids
        at = np.minimum(np.searchsorted(ids, wanted), max(len(ids) - 1, 0))
        if len(wanted) and (not len(ids) or not bool(np.all(ids[at] == wanted))):
            raise IndexFormatError(f"{self.folder}: {self.name} lacks vectors its catalog "
                                   "rows name; run `imgsim-index verify --repair`")
        return at if self.order is None else self.order[at].astype(np.int64)


def check_ivf(folder: str, catalog: Catalog) -> tuple[list[str], list[str]]:
    """(problems, notes) of the index's IVF: every file of every part readable and of the
    size its lists say, FAISS able to read each part's index, and every embedded row the
    IVF covers held as a current entry exactly once. Memory: 8 bytes per entry."""
    problems: list[str] = []
    try:
        manifest = ivf.read_manifest(folder)
    except IndexFormatError as exc:
        return [str(exc)], []
    if manifest is None:
        big = catalog.counts().get("embedded", 0) > ivf.IVF_ABOVE
        return [], ["no IVF yet: the next writer or dedupe makes one"] if big else []
    try:
        ivf.load_coarse(folder, manifest)
    except IndexFormatError as exc:
        return [str(exc)], []
    keys = row_keys(catalog)
    held = np.zeros(keys.count, np.int32)
    for part in manifest.parts:
        problems += _check_part(folder, manifest, part, keys, held)
    covered = keys.seqs <= manifest.covered_seq
    missing = int((covered & (held == 0)).sum())
    twice = int((held > 1).sum())
    if missing:
        problems.append(f"the IVF lacks {missing:,} embedded rows it should hold")
    if twice:
        problems.append(f"the IVF holds {twice:,} rows more than once as current")
    notes = []
    pending = int((keys.seqs > manifest.covered_seq).sum())
    if pending:
        notes.append(f"{pending:,} rows are not in the IVF yet (the next writer or dedupe "
                     "files them)")
    stale = manifest.count - int(held.sum())
    if stale:
        notes.append(f"the IVF holds {stale:,} entries of changed or removed rows (merged "
                     "away when they grow to a third)")
    return problems, notes


def _check_part(folder: str, manifest: ivf.IvfManifest, part: ivf.Part, keys: RowKeys,
                held: np.ndarray) -> list[str]:
    import faiss

    base = os.path.join(ivf.ivf_dir(folder), part.name)
    try:
        index = faiss.read_index(base + ".faiss", faiss.IO_FLAG_SKIP_IVF_DATA)
        with ivf.open_parts(folder, replace(manifest, parts=(part,))) as (reader,):
            if int(reader.sizes.sum()) != part.count or index.ntotal != part.count:
                return [f"IVF part {part.name}: {int(reader.sizes.sum())} entries in its "
                        f"lists, {index.ntotal} in its index, {part.count} in ivf.json"]
            problem = _layout_problem(base, manifest, reader)
            if problem:
                return [f"IVF part {part.name}: {problem}"]
            _count_held(reader, keys, held)
    except (OSError, RuntimeError, IndexFormatError) as exc:
        return [f"IVF part {part.name} cannot be read: {str(exc).splitlines()[-1][:160]}"]
    return []


def _layout_problem(base: str, manifest: ivf.IvfManifest, reader: ivf.PartReader) -> str:
    """What is wrong with a part's files against its .npz (sizes, offsets, errors and
    probes per list) and its entry count, or ''."""
    n = manifest.nlist
    shapes = (reader.sizes.shape, reader.offsets.shape, reader.maxerr.shape)
    if shapes != ((n,),) * 3 or not 1 <= reader.nprobes <= n:
        return f"its .npz describes {shapes} lists and {reader.nprobes} probes, not {n}"
    count = int(reader.sizes.sum())
    if (reader.sizes < 0).any() or not np.array_equal(reader.offsets,
                                                       reader.starts * (manifest.dim + 8)):
        return "its .npz gives list sizes or offsets that do not lay its lists end to end"
    for ext, want in ((".ivfdata", count * (manifest.dim + 8)),
                      (".probes", count * reader.nprobes * 4)):
        got = os.path.getsize(base + ext)
        if got != want:
            return f"{got} bytes of {ext} where {want} were expected"
    return ""


def drop_ivf(folder: str) -> None:
    """Remove the IVF (its manifest first, so a crash leaves none half-removed); the next
    writer or dedupe builds it again from the vector files."""
    d = ivf.ivf_dir(folder)
    if not os.path.isdir(d):
        return
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(d, ivf.IVF_MANIFEST))
    ivf.remove_unlisted(folder, None)


__all__ = ["RowKeys", "VectorLookup", "check_ivf", "drop_ivf", "iter_vectors", "keys_of_ids",
           "needs_ivf",
           "row_keys", "update_ivf"]
