"""query on a stored index: the vectors are read without their rows, only the hits' catalog
rows are looked up, and the results (scores, order, ties) are those of an exhaustive FAISS
search with a float64 re-score."""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from imgsim_index.embed.embedder import Embedder, EmbedSettings
from imgsim_index.errors import IndexFormatError
from imgsim_index.index.catalog import NewRow
from imgsim_index.index.store import IndexStore
from imgsim_index.pipeline.build import BuildSettings, build_index, resolve_model
from imgsim_index.pipeline.query import query_index, top_hits
from imgsim_index.search.threshold import SCORE_DECIMALS
from imgsim_index.verify import VerifySettings

MODEL = "efficientnet-lite0"
# every neighbour, the query file included, scores only: the search itself
RAW: dict[str, Any] = {"threshold": -1.0, "include_self": True,
                       "verify": VerifySettings(enabled=False)}


def faiss_reference(vectors: np.ndarray, query: np.ndarray, k: int) -> list[tuple[int, float]]:
    """What query gave before: faiss.knn on the matrix, then a stable sort of the hits by
    their float64 score rounded to SCORE_DECIMALS."""
    import faiss

    _, found = faiss.knn(query[None, :], vectors, k, metric=faiss.METRIC_INNER_PRODUCT)
    hits = found[0][found[0] >= 0]
    scores = np.round(vectors[hits].astype(np.float64) @ query.astype(np.float64),
                      SCORE_DECIMALS)
    order = np.argsort(-scores, kind="stable")
    return list(zip(hits[order].tolist(), scores[order].tolist(), strict=True))


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("k", [1, 2, 5, 11, 40, 150])
def test_top_hits_equal_faiss_with_ties(k: int) -> None:
    rng = np.random.default_rng(k)
    x = unit(rng.standard_normal((600, 64), dtype=np.float32))
    x[[0, 3, 7, 12, 15, 40, 41, 200, 333, 599]] = x[5]  # exact duplicates of row 5
    x[[20, 21, 22]] = x[100]
    for q in (x[5], x[100], unit(rng.standard_normal((1, 64), dtype=np.float32))[0]):
        rows, scores = top_hits(x, q, x @ q, k)
        assert list(zip(rows.tolist(), scores.tolist(), strict=True)) == faiss_reference(x, q, k)


def test_top_hits_refuse_a_damaged_vector() -> None:
    x = unit(np.random.default_rng(0).standard_normal((10, 8), dtype=np.float32))
    x[4, 2] = np.nan
    with pytest.raises(IndexFormatError, match="NaN or Inf"):
        top_hits(x, x[0], x @ x[0], 3)


def _photo(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(small).resize((320, 240), Image.BICUBIC).save(path, quality=92)


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Embedder]:
    """Four real photos, then 300 random vectors (copies of a photo's among them) in a
    second commit under the same identity: two vector files, one parked row."""
    tmp = tmp_path_factory.mktemp("q")
    for k in range(4):
        _photo(tmp / "photos" / f"p{k}.jpg", k)
    idx = tmp / "idx"
    build_index([str(tmp / "photos")], str(idx), BuildSettings(model=MODEL))
    embedder = Embedder(resolve_model(str(idx), BuildSettings()), "cpu", "auto")
    probe = tmp / "photos" / "p1.jpg"
    (batch,) = embedder.embed_files([str(probe)], EmbedSettings(workers=0))
    rng = np.random.default_rng(3)
    x = unit(rng.standard_normal((300, batch.vectors.shape[1]), dtype=np.float32))
    x[[10, 50, 299]] = batch.vectors[0]  # ties with the photo itself
    root = str(tmp / "photos")
    store = IndexStore.open_writer(str(idx), IndexStore.read_manifest(str(idx)))
    try:
        store.commit([NewRow(os.path.join(root, "more", f"r{k:03d}.jpg"), root, 1, k)
                      for k in range(300)], x)
        with store.catalog.transaction():  # moved out of the indexed folders by an apply
            store.catalog.rename_path(os.path.join(root, "more", "r010.jpg"),
                                      str(tmp / "trash" / "r010.jpg"), None, None, None)
    finally:
        store.close()
    return idx, probe, embedder


def traced(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every statement SQLite runs in this process from now on (bound values expanded)."""
    seen: list[str] = []
    connect: Callable[..., sqlite3.Connection] = sqlite3.connect

    def traced_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        db = connect(*args, **kwargs)
        db.set_trace_callback(seen.append)
        return db

    monkeypatch.setattr(sqlite3, "connect", traced_connect)
    return seen


def test_query_reads_only_the_hits_rows_and_matches_the_full_load(
        index: tuple[Path, Path, Embedder], monkeypatch: pytest.MonkeyPatch) -> None:
    idx, probe, embedder = index
    with IndexStore.open_reader(str(idx)) as store:
        loaded = store.load()
    assert len(loaded.rows) == 303  # the parked row is left out
    seen = traced(monkeypatch)
    got = query_index(str(idx), [str(probe)], top_k=6, embedder=embedder, **RAW)
    # the same through the service's path (its rows and vectors kept in memory)
    assert got == query_index(str(idx), [str(probe)], top_k=6, embedder=embedder,
                              loaded=loaded, **RAW)
    (batch,) = embedder.embed_files([str(probe)], EmbedSettings(workers=0))
    want = [(loaded.rows[i].path, s)
            for i, s in faiss_reference(loaded.vectors, batch.vectors[0], 6)]
    assert got[0].matches == want
    # the photo and its two copies tie: the later rows first (as FAISS's heap lists them)
    assert [p for p, _ in want[:3]] == [
        os.path.join(str(idx.parent / "photos"), "more", f"r{k:03d}.jpg") for k in (299, 50)
    ] + [str(probe)] and want[0][1] == want[2][1]
    row_reads = [s for s in seen if re.match(r"SELECT id, path, root, .* FROM images", s)]
    by_id = [s for s in row_reads if " id IN (" in s]
    assert len(row_reads) == 2 and len(by_id) == 1  # the parked-row check, the hits
    hit_ids = sorted(r.id for r in loaded.rows if r.path in {p for p, _ in want})
    assert by_id[0].split(" id IN (")[1].split(")")[0] == ", ".join(map(str, hit_ids))
    assert "NOT (path >= " in (set(row_reads) - set(by_id)).pop()


def test_load_for_search_maps_a_compacted_index_and_equals_load(
        index: tuple[Path, Path, Embedder], tmp_path: Path) -> None:
    idx, probe, embedder = index
    copy = tmp_path / "idx"
    os.makedirs(copy / "segments")
    for name in ("manifest.json", "catalog.sqlite", "vectors.faiss"):
        if (idx / name).exists():
            (copy / name).write_bytes((idx / name).read_bytes())
    for f in (idx / "segments").iterdir():
        (copy / "segments" / f.name).write_bytes(f.read_bytes())
    for folder, mapped in ((idx, False), (copy, True)):
        if mapped:
            store = IndexStore.open_writer(str(copy), IndexStore.read_manifest(str(copy)))
            store.remove_paths([str(idx.parent / "trash" / "r010.jpg")])  # the parked row
            store.compact()
            store.close()
        with IndexStore.open_reader(str(folder)) as store:
            loaded = store.load()
            with store.snapshot():
                search = store.load_for_search()
        order = np.argsort(search.ids)  # a mapped file keeps its own order
        assert search.ids[order].tolist() == [r.id for r in loaded.rows]
        assert np.array_equal(np.asarray(search.vectors)[order], loaded.vectors)
        assert isinstance(search.vectors, np.memmap) == mapped
        # ties are broken by id, whatever order the file holds the rows in
        assert query_index(str(folder), [str(probe)], top_k=6, embedder=embedder, **RAW) == \
            query_index(str(folder), [str(probe)], top_k=6, embedder=embedder, loaded=loaded, **RAW)


def test_load_for_search_keeps_the_rows_load_keeps(tmp_path: Path) -> None:
    """Parked rows (outside every root), a sibling folder whose name starts like a root's,
    and paths and roots that are not UTF-8 (stored as bytes): the same rows as `load`."""
    identity = {"model": "m", "dim": 8, "preprocessing": {}, "weights_id": "w"}
    photos, odd = str(tmp_path / "photos"), str(tmp_path / "caf\udce9")
    names = [(photos, f"{photos}/a.jpg"), (photos, f"{photos}/sub/b\udcff.jpg"),
             (odd, f"{odd}/c.jpg"), (odd, f"{odd}/d\udcfe.jpg"),
             (photos, f"{photos}2/e.jpg"), (photos, f"{photos}/f.jpg")]
    x = unit(np.random.default_rng(0).standard_normal((len(names), 8), dtype=np.float32))
    store = IndexStore.open_writer(str(tmp_path / "idx"), identity)
    try:
        store.commit([NewRow(p, root, 1, k) for k, (root, p) in enumerate(names)], x)
        with store.catalog.transaction():  # parked by an apply: moved out of the roots
            store.catalog.rename_path(f"{photos}/f.jpg", str(tmp_path / "trash" / "f.jpg"),
                                      None, None, None)
            store.catalog.rename_path(f"{odd}/c.jpg", str(tmp_path / "trash" / "c\udce1.jpg"),
                                      None, None, None)
    finally:
        store.close()
    with IndexStore.open_reader(str(tmp_path / "idx")) as store:
        loaded = store.load()
        with store.snapshot():
            search = store.load_for_search()
    assert sorted(r.path for r in loaded.rows) == sorted(
        [f"{photos}/a.jpg", f"{photos}/sub/b\udcff.jpg", f"{odd}/d\udcfe.jpg"])
    assert search.ids.tolist() == [r.id for r in loaded.rows]
    assert np.array_equal(search.vectors, loaded.vectors)
