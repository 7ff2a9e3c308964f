"""store: catalog.sqlite + segment files + manifest; commit, load, lock, compact, orphans."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from imgsim_index.errors import IndexFormatError, IndexLockedError, IndexMismatchError
from imgsim_index.index.catalog import NewRow
from imgsim_index.index.store import BASE, CATALOG, MANIFEST, SEGMENTS, IndexStore, read_segment
from imgsim_index.index.vector_file import CHUNK_BYTES

DIM = 8
IDENTITY: dict[str, Any] = {"model": "alphanet", "dim": DIM, "weights_id": "x",
                            "preprocessing": {}}
ROOT = "/photos"


def unit(n: int, seed: int = 0, dim: int = DIM) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, dim))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def rows(names: list[str], root: str = ROOT) -> list[NewRow]:
    return [NewRow(f"{root}/{n}", root, 100 + k, 1_000 + k, 640, 480)
            for k, n in enumerate(names)]


def names(n: int, prefix: str = "img") -> list[str]:
    return [f"{prefix}{k:04d}.jpg" for k in range(n)]


def segment_files(folder: Path) -> list[str]:
    return sorted(os.listdir(folder / SEGMENTS))


def loaded(folder: Path) -> tuple[list[str], np.ndarray]:
    with IndexStore.open_reader(str(folder)) as store:
        got = store.load()
    return [r.path for r in got.rows], got.vectors


def test_open_writer_creates_the_layout(tmp_path: Path) -> None:
    idx = tmp_path / "idx"
    with IndexStore.open_writer(str(idx), IDENTITY) as store:
        assert (idx / CATALOG).is_file() and (idx / MANIFEST).is_file()
        store.commit(rows(names(5)), unit(5))
        segs = segment_files(idx)
        assert len(segs) == 1 and segs[0].endswith(".faiss")
        ids, vecs = read_segment(str(idx / SEGMENTS / segs[0]))
        assert len(ids) == 5 and vecs.shape == (5, DIM)
    manifest = json.loads((idx / MANIFEST).read_text())
    for key, value in IDENTITY.items():
        assert manifest[key] == value
    assert manifest["counts"] == {"embedded": 5, "errors": 0}
    assert IndexStore.exists(str(idx))
    assert not any(".tmp-" in n for n in os.listdir(idx))


def test_commit_then_load_returns_the_vectors_in_id_order(tmp_path: Path) -> None:
    v1, v2 = unit(30, 1), unit(20, 2)
    with IndexStore.open_writer(str(tmp_path), IDENTITY) as store:
        ids1 = store.commit(rows(names(30, "a")), v1)
        ids2 = store.commit(rows(names(20, "b")), v2)
        got = store.load()
    assert ids1 + ids2 == sorted(ids1 + ids2)
    assert [r.id for r in got.rows] == ids1 + ids2
    assert got.vectors.dtype == np.float32
    assert np.array_equal(got.vectors, np.concatenate([v1, v2]))
    assert [r.path for r in got.rows] == [f"{ROOT}/{n}" for n in names(30, "a") + names(20, "b")]
    r0 = got.rows[0]
    assert (r0.root, r0.size, r0.mtime_ns, r0.width, r0.height, r0.status, r0.error) == (
        ROOT, 100, 1000, 640, 480, "embedded", None)
    # the same again from a reader, after the writer closed
    paths, vecs = loaded(tmp_path)
    assert np.array_equal(vecs, np.concatenate([v1, v2]))
    assert len(paths) == 50


def test_empty_index_loads_empty(tmp_path: Path) -> None:
    with IndexStore.open_writer(str(tmp_path), IDENTITY) as store:
        got = store.load()
        assert got.rows == [] and got.vectors.shape == (0, DIM)
        store.compact()
        assert store.load().vectors.shape == (0, DIM)


def test_reader_sees_commits_while_the_writer_is_open(tmp_path: Path) -> None:
    with IndexStore.open_writer(str(tmp_path), IDENTITY) as store:
        store.commit(rows(names(3)), unit(3))
        paths, vecs = loaded(tmp_path)
        assert len(paths) == 3 and np.array_equal(vecs, unit(3))


def test_reopen_with_another_identity_names_both_models(tmp_path: Path) -> None:
    with IndexStore.open_writer(str(tmp_path), IDENTITY) as store:
        store.commit(rows(names(2)), unit(2))
    other = {**IDENTITY, "model": "betanet", "weights_id": "y"}
    with pytest.raises(IndexMismatchError) as info:
        IndexStore.open_writer(str(tmp_path), other)
    msg = str(info.value)
    assert "alphanet" in msg and "betanet" in msg
    for changed in ({"dim": 16}, {"weights_id": "z"}, {"preprocessing": {"resize": 256}}):
        with pytest.raises(IndexMismatchError):
            IndexStore.open_writer(str(tmp_path), {**IDENTITY, **changed})
    # a refused open must not keep the lock, nor change the index
    with IndexStore.open_writer(str(tmp_path), IDENTITY) as store:
        assert len(store.load().rows) == 2


def test_commit_of_another_dimension_is_refused(tmp_path: Path) -> None:
    with IndexStore.open_writer(str(tmp_path), IDENTITY) as store:
        with pytest.raises(IndexMismatchError):
            store.commit(rows(names(2)), unit(2, dim=DIM * 2))
        with pytest.raises(ValueError):
            store.commit(rows(names(2)), unit(3))
        assert store.load().rows == []


def test_second_writer_is_refused_naming_the_holder(tmp_path: Path) -> None:
    first = IndexStore.open_writer(str(tmp_path), IDENTITY)
    try:
        with pytest.raises(IndexLockedError) as info:
            IndexStore.open_writer(str(tmp_path), IDENTITY)
        assert f"pid {os.getpid()}" in str(info.value)
    finally:
        first.close()
    IndexStore.open_writer(str(tmp_path), IDENTITY).close()  # free again once closed


def test_writer_in_another_process_is_named(tmp_path: Path) -> None:
    code = textwrap.dedent(f"""
        import sys, time
        from imgsim_index.index.store import IndexStore
        s = IndexStore.open_writer({str(tmp_path)!r}, {IDENTITY!r})
        print("ready", flush=True)
        sys.stdin.readline()
        s.close()
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        with pytest.raises(IndexLockedError) as info:
            IndexStore.open_writer(str(tmp_path), IDENTITY)
        assert f"pid {proc.pid}" in str(info.value)
    finally:
        assert proc.stdin is not None
        proc.stdin.write("\n")
        proc.stdin.flush()
        proc.wait(timeout=30)
    IndexStore.open_writer(str(tmp_path), IDENTITY).close()


def test_changed_file_gets_its_new_vector_in_one_row(tmp_path: Path) -> None:
    old, new = unit(4, 10), unit(1, 11)
    with IndexStore.open_writer(str(tmp_path), IDENTITY) as store:
        ids = store.commit(rows(names(4)), old)
        changed = NewRow(f"{ROOT}/{names(4)[2]}", ROOT, 999, 5_000, 800, 600)
        (cid,) = store.commit([changed], new)
        assert cid == ids[2]  # the path keeps its id
        got = store.load()
    assert [r.id for r in got.rows] == ids
    assert [r.path for r in got.rows].count(changed.path) == 1
    expect = old.copy()
    expect[2] = new[0]
    assert np.array_equal(got.vectors, expect)
    row = got.rows[2]
    assert (row.size, row.mtime_ns, row.width, row.height) == (999, 5000, 800, 600)
    paths, vecs = loaded(tmp_path)
    assert np.array_equal(vecs, expect)


@pytest.mark.parametrize("chunk_bytes", [CHUNK_BYTES, 4 * DIM * 3])  # 3 rows: many chunks
def test_compact_preserves_load_and_removes_segments(tmp_path: Path, chunk_bytes: int) -> None:
    with IndexStore.open_writer(str(tmp_path), IDENTITY) as store:
        for k in range(5):
            store.commit(rows(names(10, f"b{k}_")), unit(10, k))
        store.commit(rows(names(3, "b1_")), unit(3, 99))  # changes: stale vectors in a segment
        store.remove_paths([f"{ROOT}/b4_0000.jpg"])
        store.commit([], np.zeros((0, DIM), np.float32),
                     [NewRow(f"{ROOT}/bad.jpg", ROOT, 1, 1, error="corrupt")])
        before = store.load()
        assert len(segment_files(tmp_path)) == 6
        assert store.needs_compaction()
        store.compact(chunk_bytes)
        after = store.load()
        assert segment_files(tmp_path) == []
        assert (tmp_path / BASE).is_file()
        assert store.catalog.segments() == {BASE: 49}
        assert not store.needs_compaction()
        assert [r.id for r in after.rows] == [r.id for r in before.rows]
        assert [r.path for r in after.rows] == [r.path for r in before.rows]
        assert np.array_equal(after.vectors, before.vectors)
        assert len(store.error_rows()) == 1
        # the index keeps working after compaction: add, change, compact again
        store.commit(rows(names(2, "c")), unit(2, 50))
        store.commit(rows(names(1, "b0_")), unit(1, 51))
        again = store.load()
        assert len(again.rows) == 51
        assert np.array_equal(again.vectors[0], unit(1, 51)[0])
        store.compact(chunk_bytes)
        assert np.array_equal(store.load().vectors, again.vectors)
        assert segment_files(tmp_path) == []
    ids, vecs = read_segment(str(tmp_path / BASE))
    assert len(ids) == 51
    _, reread = loaded(tmp_path)
    assert np.array_equal(reread, again.vectors)


def test_too_many_segments_merge_the_smallest_and_leave_the_base(tmp_path: Path) -> None:
    """Past MAX_SEGMENTS files the MERGE_SEGMENTS smallest segments become one (their stale
    vectors dropped); the compacted base is not rewritten, so adding a few vectors costs
    what they are, not a rewrite of the whole index."""
    from imgsim_index.index.store import MAX_SEGMENTS, MERGE_SEGMENTS

    with IndexStore.open_writer(str(tmp_path), IDENTITY) as store:
        store.commit(rows(names(200, "base")), unit(200, 1))
        store.compact()
        base = (tmp_path / BASE).stat()
        for k in range(MAX_SEGMENTS):
            store.commit(rows(names(2 + k, f"s{k}_")), unit(2 + k, 10 + k))
        store.commit(rows(names(1, "s0_")), unit(1, 99))  # a stale vector in a small segment
        assert store.needs_merge() and not store.needs_compaction()
        before = store.load()
        smallest = sorted((c, n) for n, c in store.catalog.segments().items() if n != BASE)
        assert store.tidy() == "merged"
        segs = store.catalog.segments()
        assert len(segs) == MAX_SEGMENTS + 2 - MERGE_SEGMENTS + 1
        new = [n for n in segs if n != BASE and n not in {m for _, m in smallest}]
        assert len(new) == 1
        # the 8 smallest held 1 + 2 + ... vectors, one of them now stale
        want = sum(c for c, _ in smallest[:MERGE_SEGMENTS]) - 1
        assert segs[new[0]] == want and len(read_segment(str(tmp_path / new[0]))[0]) == want
        assert sorted(segment_files(tmp_path)) == sorted(n.split("/")[1] for n in segs
                                                           if n != BASE)
        st = (tmp_path / BASE).stat()
        assert (st.st_ino, st.st_mtime_ns) == (base.st_ino, base.st_mtime_ns)
        after = store.load()
        assert [r.path for r in after.rows] == [r.path for r in before.rows]
        assert np.array_equal(after.vectors, before.vectors)
        assert not store.needs_merge()
    # a merge that died before the catalog named its file leaves an orphan, removed later
    orphan = tmp_path / SEGMENTS / "99999999-0.faiss"
    orphan.write_bytes(b"half a merge")
    with IndexStore.open_writer(str(tmp_path), IDENTITY) as store:
        assert not orphan.exists()
        assert np.array_equal(store.load().vectors, after.vectors)


def test_many_checkpoints_in_one_writer_leave_at_most_max_segments_files(
        tmp_path: Path) -> None:
    """A build of many checkpoints onto a large base: tidy merges the smallest segments
    until no more than MAX_SEGMENTS files are left, the base untouched."""
    from imgsim_index.index.store import MAX_SEGMENTS

    with IndexStore.open_writer(str(tmp_path), IDENTITY) as store:
        store.commit(rows(names(500, "base")), unit(500, 1))
        store.compact()
        base = (tmp_path / BASE).stat()
        for k in range(60):
            store.commit(rows(names(3, f"c{k}_")), unit(3, 100 + k))
        before = store.load()
        assert store.tidy() == "merged"
        assert len(store.catalog.segments()) <= MAX_SEGMENTS
        assert (tmp_path / BASE).stat().st_mtime_ns == base.st_mtime_ns
        assert np.array_equal(store.load().vectors, before.vectors)


def test_orphan_segment_is_removed_by_the_next_writer(tmp_path: Path) -> None:
    with IndexStore.open_writer(str(tmp_path), IDENTITY) as store:
        store.commit(rows(names(3)), unit(3))
    kept = segment_files(tmp_path)
    assert len(kept) == 1
    # a writer that crashed after writing its segment, before the catalog commit
    from imgsim_index.index.vector_file import write_vectors

    orphan = tmp_path / SEGMENTS / "00000002.faiss"
    write_vectors(str(orphan), np.arange(100, 103, dtype=np.int64), unit(3, 7))
    (tmp_path / SEGMENTS / "00000009.faiss").write_bytes(b"half written")
    (tmp_path / f"{BASE}.tmp-12345").write_bytes(b"unfinished compaction")
    with IndexStore.open_writer(str(tmp_path), IDENTITY) as store:
        assert segment_files(tmp_path) == kept
        assert not any(".tmp-" in n for n in os.listdir(tmp_path))
        assert np.array_equal(store.load().vectors, unit(3))
        store.commit(rows(names(2, "new")), unit(2, 8))  # the next segment number is fine
        assert len(store.load().rows) == 5


def test_remove_paths(tmp_path: Path) -> None:
    v = unit(6)
    with IndexStore.open_writer(str(tmp_path), IDENTITY) as store:
        store.commit(rows(names(6)), v)
        gone = [f"{ROOT}/{names(6)[k]}" for k in (1, 4)]
        assert store.remove_paths(gone + [f"{ROOT}/never-there.jpg"]) == 2
        got = store.load()
        assert [r.path for r in got.rows] == [f"{ROOT}/{names(6)[k]}" for k in (0, 2, 3, 5)]
        assert np.array_equal(got.vectors, v[[0, 2, 3, 5]])
        assert store.catalog.counts() == {"embedded": 4, "errors": 0}
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    assert manifest["counts"]["embedded"] == 4


def test_error_rows(tmp_path: Path) -> None:
    with IndexStore.open_writer(str(tmp_path), IDENTITY) as store:
        store.commit(rows(names(3)), unit(3), [NewRow(f"{ROOT}/bad.jpg", ROOT, 10, 20,
                                                      error="corrupt or truncated image")])
        store.commit([], np.zeros((0, DIM), np.float32),
                     [NewRow(f"{ROOT}/pipe.jpg", ROOT, None, None, error="named pipe")])
        errors = store.error_rows()
        assert [(r.path, r.error, r.status, r.segment) for r in errors] == [
            (f"{ROOT}/bad.jpg", "corrupt or truncated image", "error", None),
            (f"{ROOT}/pipe.jpg", "named pipe", "error", None),
        ]
        assert f"{ROOT}/bad.jpg" not in [r.path for r in store.load().rows]
        assert len(store.load().rows) == 3
        # an embedded file that became unreadable: an error now, not a vector
        store.commit([], np.zeros((0, DIM), np.float32),
                     [NewRow(f"{ROOT}/{names(3)[0]}", ROOT, 1, 2, error="vanished")])
        assert [r.path for r in store.load().rows] == [f"{ROOT}/{n}" for n in names(3)[1:]]
        assert len(store.error_rows()) == 3
        # and a fixed file: a vector again
        store.commit(rows(["bad.jpg"]), unit(1, 5))
        assert f"{ROOT}/bad.jpg" in [r.path for r in store.load().rows]
        assert len(store.error_rows()) == 2
        assert store.catalog.counts() == {"embedded": 3, "errors": 2}


def test_load_and_error_rows_by_root(tmp_path: Path) -> None:
    with IndexStore.open_writer(str(tmp_path), IDENTITY) as store:
        store.commit(rows(names(2), "/data/photos") + rows(names(3), "/data/photos2"), unit(5),
                     [NewRow("/data/photos2/x.jpg", "/data/photos2", 1, 1, error="e")])
        assert len(store.load(["/data/photos"]).rows) == 2  # not /data/photos2's
        assert len(store.load(["/data/photos2/"]).rows) == 3
        assert len(store.load(["/data"]).rows) == 5
        assert np.array_equal(store.load(["/data/photos2"]).vectors, unit(5)[2:])
        assert store.error_rows(["/data/photos"]) == []
        assert len(store.error_rows(["/data/photos2"])) == 1


def test_unicode_paths_round_trip(tmp_path: Path) -> None:
    odd = ["фото 1.jpg", "emoji 😀.png", "new\nline.jpg", "quote'\"s.jpg"]
    with IndexStore.open_writer(str(tmp_path), IDENTITY) as store:
        store.commit(rows(odd), unit(4))
    paths, _ = loaded(tmp_path)
    assert paths == [f"{ROOT}/{n}" for n in odd]


def test_open_reader_of_a_non_index(tmp_path: Path) -> None:
    with pytest.raises(IndexFormatError):
        IndexStore.open_reader(str(tmp_path))
    (tmp_path / MANIFEST).write_text(json.dumps({"format_version": 999}))
    with pytest.raises(IndexFormatError, match="format version"):
        IndexStore.open_reader(str(tmp_path))
    (tmp_path / MANIFEST).write_text("{not json")
    with pytest.raises(IndexFormatError):
        IndexStore.open_reader(str(tmp_path))


def test_catalog_without_manifest_is_refused(tmp_path: Path) -> None:
    with IndexStore.open_writer(str(tmp_path), IDENTITY) as store:
        store.commit(rows(names(1)), unit(1))
    (tmp_path / MANIFEST).unlink()
    with pytest.raises(IndexFormatError):
        IndexStore.open_writer(str(tmp_path), IDENTITY)
    assert (tmp_path / CATALOG).is_file()  # left alone


def reference_load(folder: Path) -> tuple[list[tuple[object, ...]], np.ndarray]:
    """What load must return, the plain way: every embedded row in id order (all under
    ROOT here), its vector looked up in the whole file its row names, read by FAISS."""
    import faiss

    with IndexStore.open_reader(str(folder)) as store:
        got = store.catalog.db.execute(
            f"SELECT {store.catalog._columns} FROM images "
            "WHERE status = 'embedded' ORDER BY id").fetchall()
    files: dict[str, dict[int, np.ndarray]] = {}
    for row in got:
        if row[9] not in files:
            index = faiss.read_index(str(folder / row[9]))
            ids = faiss.vector_to_array(index.id_map)
            vecs = index.index.reconstruct_n(0, index.ntotal)
            files[row[9]] = dict(zip(ids.tolist(), vecs, strict=True))
    return got, np.array([files[row[9]][row[0]] for row in got], np.float32).reshape(-1, DIM)


@pytest.mark.parametrize("chunk_bytes", [CHUNK_BYTES, 4 * DIM * 3, 4 * DIM * 7])
def test_load_matches_a_plain_reference(tmp_path: Path, chunk_bytes: int) -> None:
    """A compacted base with a forgotten row in it, segments of new rows, files changed
    (re-embedded under their id, their old vectors left in the base) and an error row:
    load returns exactly the reference's rows and vectors, whatever the chunking."""
    first = names(40)
    with IndexStore.open_writer(str(tmp_path), IDENTITY) as store:
        store.commit(rows(first[:25]), unit(25, 1))
        store.commit(rows(first[25:]), unit(15, 2))
        store.compact()
        store.remove_paths([f"{ROOT}/{first[3]}"])
        store.commit(rows(names(12, "new")), unit(12, 3))
        changed = [first[5], first[6], first[30]]
        store.commit(rows(changed), unit(3, 4), errors=[NewRow(f"{ROOT}/bad.jpg", ROOT, 1, 2,
                                                                error="cannot decode")])
        got = store.load(chunk_bytes=chunk_bytes)
    assert set(segment_files(tmp_path)) and os.path.isfile(tmp_path / BASE)
    expect_rows, expect_vectors = reference_load(tmp_path)
    assert len(got.rows) == 40 - 1 + 12 == len(expect_rows)
    assert [tuple(vars(r).values()) for r in got.rows] == [tuple(r) for r in expect_rows]
    assert got.vectors.dtype == np.float32 and got.vectors.flags.c_contiguous
    assert np.array_equal(got.vectors, expect_vectors)
    by_path = {r.path: k for k, r in enumerate(got.rows)}
    assert np.array_equal(got.vectors[by_path[f"{ROOT}/{first[30]}"]], unit(3, 4)[2])


def test_identity_mismatch_describes_each_side_with_its_own_values() -> None:
    from imgsim_index.index.store import check_identity

    index = {"model": "efficientnet-lite0", "dim": 1280, "preprocessing": {"size": 224},
             "weights_id": "sha256:aaaa"}
    resnet = {"model": "resnet50", "dim": 2048, "preprocessing": {"size": 224},
              "weights_id": "sha256:bbbb"}
    with pytest.raises(IndexMismatchError) as exc:
        check_identity(index, resnet, "/data/idx")
    assert str(exc.value).startswith(
        "the index at /data/idx was built with efficientnet-lite0 (weights sha256:aaaa); "
        "refusing to add vectors from resnet50 (weights sha256:bbbb) (model, dim, "
        "weights_id differ)")
    # the weights not known yet (before the model loads): not compared, not named
    with pytest.raises(IndexMismatchError) as exc:
        check_identity(index, {k: v for k, v in resnet.items() if k != "weights_id"}, "i")
    assert "refusing to add vectors from resnet50 (model, dim differ)" in str(exc.value)
    assert "sha256:aaaa" not in str(exc.value).split("refusing")[1]
    check_identity(index, {k: v for k, v in index.items() if k != "weights_id"}, "i")


def test_an_older_manifest_reads_unchanged_and_keeps_its_keys(tmp_path: Path) -> None:
    """manifest.json is typed (index/manifest.py) but stays the JSON object it was: a
    manifest without the newer keys, and with a key this version does not know, reads as
    written and keeps that key when the index is written again; one without a model is a
    format error, in one line."""
    with IndexStore.open_writer(str(tmp_path), IDENTITY) as store:
        store.commit(rows(names(2)), unit(2))
    path = tmp_path / MANIFEST
    old = {k: v for k, v in json.loads(path.read_text()).items()
           if k not in ("weights_source", "counts", "created_at")}
    old["written_by_a_later_version"] = {"x": 1}
    path.write_text(json.dumps(old))
    assert dict(IndexStore.read_manifest(str(tmp_path))) == old
    with IndexStore.open_writer(str(tmp_path), IDENTITY) as store:
        store.commit(rows(["more.jpg"]), unit(1, seed=3))
    again = json.loads(path.read_text())
    assert again["written_by_a_later_version"] == {"x": 1}
    assert again["counts"]["embedded"] == 3 and again["model"] == IDENTITY["model"]
    path.write_text(json.dumps({k: v for k, v in old.items() if k != "model"}))
    with pytest.raises(IndexFormatError, match=r"has no valid 'model' \(None\); build the"):
        IndexStore.read_manifest(str(tmp_path))
