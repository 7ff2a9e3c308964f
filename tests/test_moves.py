"""A build finds moves: a file renamed or moved under the input folders keeps its row,
id and vector (matched by device and inode, or by content digest); copies and edits are
new files."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import cli_ok
from library_fixture import write_image

from imgsim_index.index.store import IndexStore
from imgsim_index.pipeline.build import BuildResult, BuildSettings, build_index


def library(tmp_path: Path) -> tuple[Path, Path]:
    photos = tmp_path / "photos"
    for k, name in enumerate(("a.jpg", "b.jpg", "sub/c.jpg")):
        write_image(photos / name, (96, 64), seed=k)
    return photos, tmp_path / "idx"


def build(photos: Path, idx: Path, lite0, prune: bool = False) -> BuildResult:  # type: ignore[no-untyped-def]
    return build_index([str(photos)], str(idx), BuildSettings(prune=prune), model=lite0)


def vectors(idx: Path) -> dict[str, tuple[int, np.ndarray]]:
    with IndexStore.open_reader(str(idx)) as store:
        got = store.load()
    return {r.path: (r.id, got.vectors[k]) for k, r in enumerate(got.rows)}


def test_rename_and_move_into_a_subfolder_keep_id_and_vector(tmp_path: Path, lite0) -> None:  # type: ignore[no-untyped-def]
    photos, idx = library(tmp_path)
    assert build(photos, idx, lite0).embedded == 3
    before = vectors(idx)
    os.rename(photos / "a.jpg", photos / "renamed.jpg")
    (photos / "deeper").mkdir()
    os.rename(photos / "b.jpg", photos / "deeper" / "b.jpg")
    again = build(photos, idx, lite0, prune=True)
    assert (again.embedded, again.moved, again.unchanged, again.pruned) == (0, 2, 1, 0)
    after = vectors(idx)
    assert sorted(after) == sorted(str(photos / p) for p in
                                   ("renamed.jpg", "deeper/b.jpg", "sub/c.jpg"))
    for old, new in (("a.jpg", "renamed.jpg"), ("b.jpg", "deeper/b.jpg")):
        old_id, old_vec = before[str(photos / old)]
        new_id, new_vec = after[str(photos / new)]
        assert new_id == old_id and np.array_equal(new_vec, old_vec)
    st = os.stat(photos / "renamed.jpg")
    with IndexStore.open_reader(str(idx)) as store:
        row = store.catalog.row_of(str(photos / "renamed.jpg"))
    assert row is not None and (row.dev, row.ino) == (st.st_dev, st.st_ino)
    third = build(photos, idx, lite0)
    assert (third.embedded, third.moved, third.unchanged) == (0, 0, 3)


def test_a_copy_is_a_new_file_and_a_moved_edit_is_embedded(tmp_path: Path, lite0) -> None:  # type: ignore[no-untyped-def]
    photos, idx = library(tmp_path)
    build(photos, idx, lite0)
    shutil.copyfile(photos / "a.jpg", photos / "a copy.jpg")  # the original is still there
    copied = build(photos, idx, lite0)
    assert (copied.embedded, copied.moved) == (1, 0)
    assert len(vectors(idx)) == 4
    # moved and edited: other bytes, another inode
    write_image(photos / "sub" / "c2.jpg", (96, 64), seed=99)
    os.unlink(photos / "sub" / "c.jpg")
    edited = build(photos, idx, lite0, prune=True)
    assert (edited.embedded, edited.moved, edited.pruned) == (1, 0, 1)
    assert str(photos / "sub" / "c.jpg") not in vectors(idx)


def test_a_byte_identical_copy_elsewhere_is_a_move_by_digest(tmp_path: Path, lite0) -> None:  # type: ignore[no-untyped-def]
    photos, idx = library(tmp_path)
    build(photos, idx, lite0)
    before = vectors(idx)
    (photos / "elsewhere").mkdir()
    shutil.copyfile(photos / "b.jpg", photos / "elsewhere" / "b-copy.jpg")  # new inode
    os.unlink(photos / "b.jpg")
    again = build(photos, idx, lite0, prune=True)
    assert (again.embedded, again.moved, again.pruned) == (0, 1, 0)
    new = str(photos / "elsewhere" / "b-copy.jpg")
    assert vectors(idx)[new][0] == before[str(photos / "b.jpg")][0]
    assert np.array_equal(vectors(idx)[new][1], before[str(photos / "b.jpg")][1])
    assert build(photos, idx, lite0).unchanged == 3  # its size and mtime were recorded


def test_two_copies_of_one_vanished_file_match_it_once(tmp_path: Path, lite0) -> None:  # type: ignore[no-untyped-def]
    photos, idx = library(tmp_path)
    build(photos, idx, lite0)
    for name in ("x1.jpg", "x2.jpg"):
        shutil.copyfile(photos / "a.jpg", photos / name)
    os.unlink(photos / "a.jpg")
    again = build(photos, idx, lite0)
    assert (again.embedded, again.moved) == (1, 1)
    assert len(vectors(idx)) == 4


def test_the_build_summary_counts_moves_and_loads_no_model(tmp_path: Path, lite0) -> None:  # type: ignore[no-untyped-def]
    photos, idx = library(tmp_path)
    build(photos, idx, lite0)
    os.rename(photos / "a.jpg", photos / "sub" / "a.jpg")
    out = cli_ok("build", photos, "--index", idx, "-q")
    assert "Scanned 3 files: embedded 0, unchanged 2, moved 1 (vectors kept), unreadable 0.\n" \
        in out
    again = build_index([str(photos)], str(idx))
    assert (again.moved, again.model_loaded) == (0, False)


def test_a_folder_that_cannot_be_listed_is_counted_and_its_rows_are_not_pruned(
        tmp_path: Path, lite0, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """A subfolder the scan cannot list (no permission: PermissionError from the system,
    injected here because the tests may run as root) is skipped as an unreadable folder,
    never silently, and a prune does not forget the rows of the files in it."""
    import imgsim_index.ingest.scan as scan

    photos, idx = library(tmp_path)
    assert build(photos, idx, lite0).embedded == 3
    locked = str(photos / "sub")
    listing = os.scandir

    def refuse(path):  # type: ignore[no-untyped-def]
        if os.fspath(path) == locked:
            raise PermissionError(13, "Permission denied", locked)
        return listing(path)

    monkeypatch.setattr(scan.os, "scandir", refuse)
    result = build(photos, idx, lite0, prune=True)
    assert result.skipped == {"unreadable folder": 1}
    assert [(s.path, s.reason, s.folder) for s in result.skipped_paths] == [
        (locked, "unreadable folder", True)]
    assert result.pruned == 0
    assert str(photos / "sub" / "c.jpg") in vectors(idx)
