"""The index follows apply and undo: moved rows renamed (parked), deleted rows gone,
hard-linked rows set aside as aliases of their keepers, and everything put back by
undo; no CNN needed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from library_fixture import IDENTITY, Img, make_library, run_dedupe, simple_library

from imgsim_index.actions.plan import apply_plan, make_plan, resume_apply
from imgsim_index.actions.undo import undo
from imgsim_index.cli import cli, main
from imgsim_index.index.catalog import Catalog
from imgsim_index.index.store import CATALOG, LOCK, IndexStore
from imgsim_index.ingest.identity import file_digest
from imgsim_index.ingest.scan import Alias
from imgsim_index.locks import acquire_writer_lock, release_writer_lock
from imgsim_index.pipeline.build import build_index


def rows(index: Path) -> dict[str, tuple[int, int | None, int | None, str | None]]:
    cat = Catalog(str(index / CATALOG), readonly=True)
    try:
        return {r.path: (r.id, r.dev, r.ino, r.digest) for r in cat.rows()}
    finally:
        cat.close()


def loaded(index: Path) -> dict[str, np.ndarray]:
    with IndexStore.open_reader(str(index)) as store:
        got = store.load()
    return {r.path: got.vectors[k] for k, r in enumerate(got.rows)}


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


def test_delete_removes_rows_and_a_hard_link_leaves_the_index(tmp_path: Path) -> None:
    photos, first = simple_library(tmp_path)
    index = tmp_path / "index"
    report = first.report
    group = next(g for g in report["groups"] if len(g["removable"]) == 2)
    other = next(g for g in report["groups"] if g is not group)
    keep_only = {"groups": [other]}
    narrowed = tmp_path / "one-group.json"
    narrowed.write_text(json.dumps({**report, **keep_only}))
    before = rows(index)
    linked = apply_plan(make_plan(str(narrowed), "hardlink"), str(tmp_path / "h.jsonl"))
    assert linked.index is not None and linked.index.relinked == 1
    path, keeper = other["removable"][0], other["keeper"]
    assert path not in rows(index) and keeper in rows(index)

    deleted = apply_plan(make_plan(first.report_path, "delete"), str(tmp_path / "d.jsonl"))
    assert deleted.index is not None and deleted.index.removed == 2
    assert [r.path for r in deleted.refused] == [path]  # an alias: not held by the index
    assert not set(group["removable"]) & set(rows(index))
    assert run_dedupe(tmp_path, index).report["groups"] == []
    assert undo(str(tmp_path / "h.jsonl")).index.relinked == 1  # type: ignore[union-attr]
    st = os.stat(path)
    assert rows(index)[path] == (before[path][0], st.st_dev, st.st_ino, file_digest(path))


def test_hardlink_then_dedupe_lists_nothing_and_undo_lists_the_pair_again(
        tmp_path: Path) -> None:
    """The keeper sorts after its copy, so the next scan finds the copy's name first: the
    build still indexes the file under the keeper's name, and the copy stays an alias."""
    photos, index = make_library(tmp_path, [
        Img("a/copy.jpg", 0, (60, 45)), Img("a/keeper.jpg", 0, (120, 90)), Img("b/tree.jpg")])
    copy, keeper = str(photos / "a" / "copy.jpg"), str(photos / "a" / "keeper.jpg")
    first = run_dedupe(tmp_path, index)
    assert removable(first.report) == [copy]
    before, vectors = rows(index), loaded(index)
    journal = str(tmp_path / "h.jsonl")
    out = CliRunner().invoke(cli, ["apply", first.report_path, "--hardlink", "--yes",
                                   "--journal", journal, "-q"])
    assert out.exit_code == 0, out.output
    assert "Index updated: 0 files renamed, 0 removed, 1 hard-linked" in out.stdout
    assert os.path.samefile(copy, keeper) and sorted(rows(index)) == [keeper,
                                                                      str(photos / "b/tree.jpg")]
    second = run_dedupe(tmp_path, index)
    assert second.report["groups"] == [] and second.report["similar_pairs"] == []
    assert make_plan(second.report_path, "hardlink").refused == []

    with IndexStore.open_writer(str(index), IDENTITY) as store:
        store.compact()  # the set-aside vector survives compaction
    noop = build_index([str(photos)], str(index))
    assert (noop.embedded, noop.moved, noop.unchanged, noop.model_loaded) == (0, 0, 2, False)
    assert noop.aliases == [Alias(copy, keeper)]
    assert copy not in rows(index)

    back = undo(journal)
    assert back.index is not None and back.index.relinked == 1
    st = os.stat(copy)
    assert not os.path.samefile(copy, keeper)
    assert rows(index)[copy] == (before[copy][0], st.st_dev, st.st_ino, before[copy][3])
    assert np.array_equal(loaded(index)[copy], vectors[copy])
    third = run_dedupe(tmp_path, index)
    assert removable(third.report) == [copy]
    assert make_plan(third.report_path, "hardlink").refused == []


def test_a_locked_index_refuses_apply_until_it_is_free(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Another writer holds the index: apply --yes refuses before touching anything (it
    would otherwise act while the index cannot follow); once free, apply and its index
    update run, and --resume of the finished journal has nothing to do."""
    _, first = simple_library(tmp_path)
    index, journal = tmp_path / "index", str(tmp_path / "j.jsonl")
    args = ["apply", first.report_path, "--move-to", str(tmp_path / "dupes"), "--yes",
            "--journal", journal, "-q"]
    fd = acquire_writer_lock(str(index / LOCK), False)
    try:
        with pytest.raises(SystemExit) as exited:
            main(args)
    finally:
        release_writer_lock(fd)
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith(f"Error: the index is being written by pid {os.getpid()} ")
    assert err.endswith("or pass --wait to queue behind it\n")
    assert not os.path.exists(journal) and not (tmp_path / "dupes").exists()
    main(args)
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


def test_every_apply_flow_plans_and_acts_under_the_index_lock(tmp_path: Path) -> None:
    """apply --yes, the Python API and the review page run one flow (apply_report): the
    report's index is locked from planning to the end, and another writer is refused."""
    import imgsim_index
    from imgsim_index.actions.plan import apply_report
    from imgsim_index.errors import IndexLockedError

    _, first = simple_library(tmp_path)
    lock = str(tmp_path / "index" / LOCK)
    fd = acquire_writer_lock(lock, False)
    try:
        with pytest.raises(IndexLockedError):
            imgsim_index.apply(first.report_path, "move", str(tmp_path / "dupes"))
    finally:
        release_writer_lock(fd)
    assert not (tmp_path / "dupes").exists()
    seen: list[str] = []

    def planned(plan: object, journal: str) -> None:  # before any file is touched
        with pytest.raises(IndexLockedError):
            acquire_writer_lock(lock, False)
        seen.append(journal)

    result = apply_report(first.report_path, "move", str(tmp_path / "dupes"), on_plan=planned)
    assert seen == [result.journal] and result.done
    assert all(os.path.exists(op.target) for op in result.done)
