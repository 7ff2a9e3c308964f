"""The index follows apply and undo: moved rows renamed (parked), deleted rows gone,
hard-linked rows re-identified, and everything put back by undo; no CNN needed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from library_fixture import run_dedupe, simple_library

from imgsim_index.actions.plan import apply_plan, make_plan, resume_apply
from imgsim_index.actions.undo import undo
from imgsim_index.cli import main
from imgsim_index.index.catalog import Catalog
from imgsim_index.index.store import CATALOG, LOCK, IndexStore
from imgsim_index.ingest.identity import file_digest
from imgsim_index.locks import acquire_writer_lock, release_writer_lock


def rows(index: Path) -> dict[str, tuple[int, int | None, int | None, str | None]]:
    cat = Catalog(str(index / CATALOG), readonly=True)
    try:
        return {r.path: (r.id, r.dev, r.ino, r.digest) for r in cat.rows()}
    finally:
        cat.close()


def removable(report: dict) -> list[str]:  # type: ignore[type-arg]
    return sorted(p for g in report["groups"] for p in g["removable"])


def test_move_then_dedupe_lists_nothing_again_and_undo_brings_them_back(tmp_path: Path) -> None:
    photos, first = simple_library(tmp_path)
    index, dupes = tmp_path / "index", tmp_path / "dupes"
    moved = removable(first.report)
    before = rows(index)
    result = apply_plan(make_plan(first.report_path, "move", str(dupes)),
                        str(tmp_path / "j.jsonl"))
    assert result.index is not None and result.index.error is None
    assert (result.index.renamed, result.index.removed) == (3, 0)
    after = rows(index)
    for path in moved:  # same id, same vector, new path, identity of the file there
        new = str(dupes / "photos" / os.path.relpath(path, photos))
        st = os.stat(new)
        assert path not in after and after[new] == (before[path][0], st.st_dev, st.st_ino,
                                                    before[path][3])
    second = run_dedupe(tmp_path, index)
    assert second.report["photos_to_remove"] == 0 and second.report["groups"] == []
    assert second.report["total_images_in_folders"] == 4
    assert make_plan(second.report_path, "move", str(dupes)).refused == []

    back = undo(str(tmp_path / "j.jsonl"))
    assert sorted(back.restored) == moved and back.index is not None
    assert back.index.renamed == 3 and rows(index) == before
    third = run_dedupe(tmp_path, index)
    assert removable(third.report) == moved
    assert make_plan(third.report_path, "move", str(dupes)).refused == []


def test_delete_removes_rows_and_hardlink_records_the_new_identity(tmp_path: Path) -> None:
    photos, first = simple_library(tmp_path)
    index = tmp_path / "index"
    report = first.report
    group = next(g for g in report["groups"] if len(g["removable"]) == 2)
    other = next(g for g in report["groups"] if g is not group)
    keep_only = {"groups": [other]}
    narrowed = tmp_path / "one-group.json"
    narrowed.write_text(json.dumps({**report, **keep_only}))
    linked = apply_plan(make_plan(str(narrowed), "hardlink"), str(tmp_path / "h.jsonl"))
    assert linked.index is not None and linked.index.relinked == 1
    path, keeper = other["removable"][0], other["keeper"]
    kst = os.stat(keeper)
    row = rows(index)[path]
    assert (row[1], row[2], row[3]) == (kst.st_dev, kst.st_ino, file_digest(keeper))

    deleted = apply_plan(make_plan(first.report_path, "delete"), str(tmp_path / "d.jsonl"))
    assert deleted.index is not None and deleted.index.removed == 2
    assert not set(group["removable"]) & set(rows(index))
    assert run_dedupe(tmp_path, index).report["groups"] != []  # the hard link, refused
    assert undo(str(tmp_path / "h.jsonl")).index.relinked == 1  # type: ignore[union-attr]
    st = os.stat(path)
    assert rows(index)[path][1:] == (st.st_dev, st.st_ino, file_digest(path))


def test_a_locked_index_is_updated_by_resume(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """Files moved while another writer held the index: apply says so, and --resume of the
    finished journal records the moves once the index is free."""
    _, first = simple_library(tmp_path)
    index, journal = tmp_path / "index", str(tmp_path / "j.jsonl")
    fd = acquire_writer_lock(str(index / LOCK), False)
    try:
        main(["apply", first.report_path, "--move-to", str(tmp_path / "dupes"), "--yes",
              "--journal", journal, "-q"])
    finally:
        release_writer_lock(fd)
    err = capsys.readouterr().err
    assert f"The index {index} was not updated: " in err and "--resume" in err
    assert removable(run_dedupe(tmp_path, index).report) == removable(first.report)
    got = resume_apply(journal)
    assert got.index is not None and got.index.renamed == 3 and got.done == []
    assert run_dedupe(tmp_path, index).report["groups"] == []
    with pytest.raises(Exception, match="is complete"):
        resume_apply(journal)


def test_parked_rows_stay_out_of_whole_index_loads(tmp_path: Path) -> None:
    _, first = simple_library(tmp_path)
    index = tmp_path / "index"
    apply_plan(make_plan(first.report_path, "move", str(tmp_path / "dupes")),
               str(tmp_path / "j.jsonl"))
    with IndexStore.open_reader(str(index)) as store:
        assert len(store.load().rows) == 4
        assert len(store.load([str(tmp_path / "dupes")]).rows) == 3
