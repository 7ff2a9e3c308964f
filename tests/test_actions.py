"""apply / undo / export: dry runs, refusals, journals, interrupted runs (no CNN needed)."""

from __future__ import annotations

import csv
import io
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from library_fixture import Img, make_library, run_dedupe, simple_library

from imgsim_index.actions import file_ops as fileops
from imgsim_index.actions import plan as actions
from imgsim_index.actions.journal import Journal
from imgsim_index.actions.plan import apply_plan, make_plan, resume_apply
from imgsim_index.actions.undo import undo
from imgsim_index.cli import main
from imgsim_index.errors import ActionError, ReportError
from imgsim_index.report.export import CSV_COLUMNS, write_export

Snapshot = dict[str, tuple[bytes, int, int]]


def snapshot(folder: Path) -> Snapshot:
    """Every file under `folder`: content, mtime_ns and inode."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            st = p.stat()
            out[str(p.relative_to(folder))] = (p.read_bytes(), st.st_mtime_ns, st.st_ino)
    return out


def contents(snap: Snapshot) -> dict[str, tuple[bytes, int]]:
    return {k: (v[0], v[1]) for k, v in snap.items()}


@pytest.fixture
def lib(tmp_path: Path) -> tuple[Path, str, dict[str, Any]]:
    """(photos folder, report.json path, report) of two groups: 3 + 2 files, 3 removable."""
    photos, r = simple_library(tmp_path)
    return photos, r.report_path, r.report


def edit_report(report_path: str, change: Any) -> None:
    rep = json.loads(Path(report_path).read_text())
    change(rep)
    Path(report_path).write_text(json.dumps(rep))


def journal_records(path: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


# -- dry run ------------------------------------------------------------------------------
def test_plan_touches_nothing_and_counts_the_bytes(lib: tuple[Path, str, dict[str, Any]],
                                                   tmp_path: Path) -> None:
    photos, report, rep = lib
    before = snapshot(photos)
    plan = make_plan(report, "move", str(tmp_path / "dupes"))
    assert sorted(op.path for op in plan.operations) == sorted(
        p for g in rep["groups"] for p in g["removable"])
    assert plan.refused == [] and plan.bytes_freed == rep["bytes_removable"]
    assert plan.operations[0].target == str(tmp_path / "dupes/photos/a/sunset_small.jpg")
    assert make_plan(report, "delete").bytes_freed == rep["bytes_removable"]
    assert snapshot(photos) == before and not (tmp_path / "dupes").exists()


def test_cli_dry_run_then_apply_then_undo(lib: tuple[Path, str, dict[str, Any]], tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    photos, report, rep = lib
    before = snapshot(photos)
    main(["apply", report, "--move-to", str(tmp_path / "dupes")])
    out = capsys.readouterr().out
    assert sum(line.startswith("would move ") for line in out.splitlines()) == 3
    assert f"freeing 3.3 KB ({rep['bytes_removable']} bytes)" in out and "--yes" in out
    assert snapshot(photos) == before
    main(["apply", report, "--move-to", str(tmp_path / "dupes"), "--yes", "-q"])
    out = capsys.readouterr().out
    assert "Done: moved 3 files" in out
    journal = out.split("Undo with: imgsim-index undo ")[1].strip()
    assert not (photos / "b/dog-2.jpg").exists()
    assert (tmp_path / "dupes/photos/b/dog-2.jpg").exists()
    main(["undo", journal, "-q"])
    assert "Restored 3 files" in capsys.readouterr().out
    assert contents(snapshot(photos)) == contents(before)
    assert list((tmp_path / "dupes").iterdir()) == []  # folders apply made are gone again


def test_cli_needs_exactly_one_action(lib: tuple[Path, str, dict[str, Any]],
                                      capsys: pytest.CaptureFixture[str]) -> None:
    _, report, _ = lib
    for args in ([], ["--hardlink", "--delete"]):
        with pytest.raises(SystemExit) as exc:
            main(["apply", report, *args])
        assert exc.value.code == 2
    assert "choose" in capsys.readouterr().err


# -- the three actions and their undo -----------------------------------------------------
def test_move_keeps_the_folder_structure_and_undo_restores(
        lib: tuple[Path, str, dict[str, Any]], tmp_path: Path) -> None:
    photos, report, rep = lib
    before = snapshot(photos)
    result = apply_plan(make_plan(report, "move", str(tmp_path / "dupes")),
                        str(tmp_path / "j.jsonl"))
    assert len(result.done) == 3 and result.refused == []
    moved = snapshot(tmp_path / "dupes")
    assert sorted(moved) == ["photos/a/sunset_small.jpg", "photos/b/dog-2.jpg",
                             "photos/b/sunset copy.jpg"]
    for rel, (data, mtime, _) in moved.items():
        assert (data, mtime) == before[rel.removeprefix("photos/")][:2]
    for g in rep["groups"]:
        assert Path(g["keeper"]).exists()
    records = journal_records(str(tmp_path / "j.jsonl"))
    assert [r["type"] for r in records] == ["apply"] + ["begin", "done"] * 3 + ["index", "end"]
    u = undo(str(tmp_path / "j.jsonl"))
    assert len(u.restored) == 3 and u.not_restored == []
    assert contents(snapshot(photos)) == contents(before)


def test_hardlink_links_to_the_keeper_and_undo_restores_the_original(
        lib: tuple[Path, str, dict[str, Any]], tmp_path: Path) -> None:
    photos, report, rep = lib
    before = snapshot(photos)
    result = apply_plan(make_plan(report, "hardlink"), str(tmp_path / "j.jsonl"))
    assert len(result.done) == 3
    for g in rep["groups"]:
        for p in g["removable"]:
            assert os.path.samefile(p, g["keeper"])
    assert result.bytes_held == rep["bytes_removable"] and result.bytes_freed == 0
    assert result.backup_dir and len(os.listdir(result.backup_dir)) == 3
    assert not list(photos.rglob(".imgsim-*"))
    undo(str(tmp_path / "j.jsonl"))
    after = snapshot(photos)
    assert contents(after) == contents(before)
    assert len({ino for _, _, ino in after.values()}) == len(after)  # no links left
    assert not os.path.exists(result.backup_dir)


def test_hardlink_of_identical_bytes_keeps_no_backup_and_undo_copies_back(
        tmp_path: Path) -> None:
    photos, index = make_library(tmp_path, [
        Img("keep.jpg", 0, (90, 60)),
        Img("copy.jpg", 0, (60, 40), mtime=1_234_000_000, same_bytes_as="keep.jpg")])
    r = run_dedupe(tmp_path, index)
    before = snapshot(photos)
    result = apply_plan(make_plan(r.report_path, "hardlink"), str(tmp_path / "j.jsonl"))
    assert [op.identical for op in result.done] == [True]
    assert result.bytes_freed == len(before["copy.jpg"][0]) and result.bytes_held == 0
    assert not os.path.exists(str(result.backup_dir))
    undo(str(tmp_path / "j.jsonl"))
    assert contents(snapshot(photos)) == contents(before)
    assert not os.path.samefile(photos / "copy.jpg", photos / "keep.jpg")


def test_delete_removes_and_undo_says_it_cannot_restore(
        lib: tuple[Path, str, dict[str, Any]], tmp_path: Path) -> None:
    photos, report, rep = lib
    result = apply_plan(make_plan(report, "delete"), str(tmp_path / "j.jsonl"))
    assert result.bytes_freed == rep["bytes_removable"]
    assert sorted(str(p) for p in photos.rglob("*.jpg")) == sorted(
        [str(photos / "a/cat.jpg"), str(photos / "b/tree.jpg")] + [g["keeper"] for g in
                                                                  rep["groups"]])
    with pytest.raises(ActionError, match="records an apply that deleted 3 files; deleted "
                                          "files cannot be restored, so there is nothing to "
                                          "undo"):
        undo(str(tmp_path / "j.jsonl"))


# -- refusals -----------------------------------------------------------------------------
def reasons(plan: actions.Plan) -> dict[str, str]:
    return {r.path: r.reason for r in plan.refused}


def test_refuses_a_file_changed_since_the_report(lib: tuple[Path, str, dict[str, Any]]) -> None:
    photos, report, _ = lib
    (photos / "b/dog-2.jpg").write_bytes(b"new content")
    st = os.stat(photos / "a/sunset_small.jpg")
    os.utime(photos / "a/sunset_small.jpg", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    plan = make_plan(report, "delete")
    got = reasons(plan)
    assert "changed since the report" in got[str(photos / "b/dog-2.jpg")]
    assert [op.path for op in plan.operations] == [str(photos / "b/sunset copy.jpg")]
    # only what changed is named, times as dates a person reads (to the microsecond)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(st.st_mtime_ns // 10**9))
    later = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(st.st_mtime_ns // 10**9 + 1))
    micro = f".{st.st_mtime_ns % 10**9 // 1000:06d}"
    assert got[str(photos / "a/sunset_small.jpg")] == (
        f"changed since the report (modified {stamp}{micro} -> {later}{micro}); run dedupe "
        "again")


def test_refuses_when_the_keeper_changed_or_vanished(
        lib: tuple[Path, str, dict[str, Any]]) -> None:
    photos, report, _ = lib
    os.unlink(photos / "a/dog.jpg")
    got = reasons(make_plan(report, "delete"))
    assert "keeper" in got[str(photos / "b/dog-2.jpg")]
    assert "no longer exists" in got[str(photos / "b/dog-2.jpg")]


def test_refuses_a_keeper_listed_as_removable(lib: tuple[Path, str, dict[str, Any]]) -> None:
    photos, report, rep = lib
    keeper = rep["groups"][0]["keeper"]
    edit_report(report, lambda r: r["groups"][0]["removable"].append(keeper))
    plan = make_plan(report, "delete")
    assert reasons(plan)[keeper] == "is a keeper"
    assert keeper not in [op.path for op in plan.operations]


def test_refuses_a_protected_file_listed_as_removable(tmp_path: Path) -> None:
    photos, index = make_library(tmp_path, [Img("ref/a.jpg", 0, (90, 60)),
                                            Img("new/b.jpg", 0, (60, 40)),
                                            Img("ref/c.jpg", 0, (30, 20))])
    r = run_dedupe(tmp_path, index, protect=(str(photos / "ref"),))
    assert r.report["groups"][0]["removable"] == [str(photos / "new/b.jpg")]
    edit_report(r.report_path, lambda rep: rep["groups"][0]["removable"].append(
        str(photos / "ref/c.jpg")))
    got = reasons(make_plan(r.report_path, "delete"))
    assert got == {str(photos / "ref/c.jpg"): "is under a protected folder"}


def test_refuses_paths_outside_the_input_folders(lib: tuple[Path, str, dict[str, Any]],
                                                 tmp_path: Path) -> None:
    photos, report, _ = lib
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    victim = outside / "precious.jpg"
    victim.write_bytes(b"x" * 100)
    st = victim.stat()
    dotdot = str(photos / ".." / "elsewhere" / "precious.jpg")
    (photos / "link").symlink_to(outside, target_is_directory=True)
    via_link = str(photos / "link" / "precious.jpg")

    def tamper(rep: dict[str, Any]) -> None:
        g = rep["groups"][0]
        for p in (str(victim), dotdot, via_link):
            g["removable"].append(p)
            g["members"].append({"path": p, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                                 "protected": False, "role": "remove"})
    edit_report(report, tamper)
    plan = make_plan(report, "delete")
    got = reasons(plan)
    assert got[str(victim)] == got[dotdot] == "is outside the report's input folders"
    assert "outside the report's input folders" in got[via_link] and "symbolic" in got[via_link]
    apply_plan(plan, str(tmp_path / "j.jsonl"))
    assert victim.read_bytes() == b"x" * 100


def test_refuses_a_video_frame_entry(lib: tuple[Path, str, dict[str, Any]]) -> None:
    photos, report, _ = lib
    frame = str(photos / "a/clip.mp4#t=00:00:01.000")

    def tamper(rep: dict[str, Any]) -> None:
        rep["groups"][0]["removable"].append(frame)
        rep["groups"][0]["members"].append({"path": frame, "size": 1, "mtime_ns": 1,
                                            "protected": False, "role": "remove"})
    edit_report(report, tamper)
    assert "frame of a video" in reasons(make_plan(report, "delete"))[frame]


def test_refuses_to_overwrite_at_the_destination(lib: tuple[Path, str, dict[str, Any]],
                                                 tmp_path: Path) -> None:
    photos, report, _ = lib
    taken = tmp_path / "dupes/photos/b/dog-2.jpg"
    taken.parent.mkdir(parents=True)
    taken.write_bytes(b"mine")
    plan = make_plan(report, "move", str(tmp_path / "dupes"))
    assert "already exists" in reasons(plan)[str(photos / "b/dog-2.jpg")]
    apply_plan(plan, str(tmp_path / "j.jsonl"))
    assert taken.read_bytes() == b"mine" and (photos / "b/dog-2.jpg").exists()


def test_refuses_a_destination_inside_the_inputs(lib: tuple[Path, str, dict[str, Any]]) -> None:
    photos, report, _ = lib
    with pytest.raises(ActionError, match="outside the input folders"):
        make_plan(report, "move", str(photos / "dupes"))


def test_rechecks_each_file_just_before_acting(lib: tuple[Path, str, dict[str, Any]],
                                               tmp_path: Path) -> None:
    photos, report, _ = lib
    plan = make_plan(report, "delete")
    (photos / "b/dog-2.jpg").write_bytes(b"edited after the dry run")
    result = apply_plan(plan, str(tmp_path / "j.jsonl"))
    assert [r.path for r in result.refused] == [str(photos / "b/dog-2.jpg")]
    assert (photos / "b/dog-2.jpg").read_bytes() == b"edited after the dry run"


def test_hardlink_across_filesystems_is_refused_with_a_reason(tmp_path: Path) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on another filesystem than the test's temporary folder")
    other = Path(os.environ.get("TMPDIR_SHM", shm)) / f"imgsim-test-{os.getpid()}"
    try:  # the copy is indexed where it lies, on the other filesystem
        photos, index = make_library(tmp_path, [Img("keep.jpg", 0, (90, 60)),
                                                Img(str(other / "copy.jpg"), 0, (60, 40))])
        r = run_dedupe(tmp_path, index)
        assert r.report["groups"][0]["removable"] == [str(other / "copy.jpg")]
        got = reasons(make_plan(r.report_path, "hardlink"))
        assert "another filesystem" in got[str(other / "copy.jpg")]
        # moving across filesystems works, and undo brings it back
        result = apply_plan(make_plan(r.report_path, "move", str(tmp_path / "dupes")),
                            str(tmp_path / "j.jsonl"))
        assert len(result.done) == 1 and not (other / "copy.jpg").exists()
        undo(str(tmp_path / "j.jsonl"))
        assert (other / "copy.jpg").exists()
    finally:
        import shutil

        shutil.rmtree(other, ignore_errors=True)


def test_old_or_foreign_reports_are_refused(tmp_path: Path) -> None:
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"folder_list": ["/x"], "report_schema_version": 1,
                               "groups": [{"group": 0, "size": 2, "members": ["/x/a", "/x/b"]}]}))
    with pytest.raises(ReportError, match="run `imgsim-index dedupe` again"):
        make_plan(str(old), "delete")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ReportError, match="not a report.json"):
        make_plan(str(bad), "delete")


# -- interrupted runs ---------------------------------------------------------------------
class Crash(BaseException):
    """Stands in for a power cut or kill -9 in the middle of an apply."""


def crash_on_call(monkeypatch: pytest.MonkeyPatch, module: Any, name: str, call: int) -> None:
    real = getattr(module, name)
    calls = {"n": 0}

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == call:
            raise Crash
        return real(*args, **kwargs)
    monkeypatch.setattr(module, name, wrapper)


@pytest.mark.parametrize("where", ["before_link", "before_done_record"])
def test_undo_after_an_interrupted_hardlink_apply(
        where: str, lib: tuple[Path, str, dict[str, Any]], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    photos, report, _ = lib
    before = snapshot(photos)
    journal = str(tmp_path / "j.jsonl")
    with monkeypatch.context() as m:
        if where == "before_link":  # 2nd file: original backed up, link not made yet
            crash_on_call(m, actions, "link_over", 2)
        else:  # 2nd file linked, but its 'done' record never written
            crash_on_call(m, Journal, "append", 5)  # header, begin, done, begin, *done*
        with pytest.raises(Crash):
            apply_plan(make_plan(report, "hardlink"), journal)
    types = [r["type"] for r in journal_records(journal)]
    assert types == ["apply", "begin", "done", "begin"] and "end" not in types
    u = undo(journal)
    assert len(u.restored) == (1 if where == "before_link" else 2) and u.not_restored == []
    assert contents(snapshot(photos)) == contents(before)
    assert not list(photos.rglob(".imgsim-*"))


def test_undo_after_a_move_cut_between_its_two_names(
        lib: tuple[Path, str, dict[str, Any]], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    photos, report, _ = lib
    before = snapshot(photos)
    journal = str(tmp_path / "j.jsonl")
    calls = {"n": 0}

    def place_then_crash(src: str, dst: str) -> None:
        calls["n"] += 1
        os.link(src, dst)  # the new name exists ...
        if calls["n"] == 3:
            raise Crash  # ... and the old one is never removed
        os.unlink(src)

    with monkeypatch.context() as m:
        m.setattr(fileops, "_place", place_then_crash)
        with pytest.raises(Crash):
            apply_plan(make_plan(report, "move", str(tmp_path / "dupes")), journal)
    assert len(list((tmp_path / "dupes").rglob("*.jpg"))) == 3  # two moved, one half-way
    u = undo(journal)
    assert len(u.restored) == 2
    assert contents(snapshot(photos)) == contents(before)
    assert undo(journal).restored == []  # a second undo has nothing left to do


def test_resume_finishes_an_interrupted_apply(lib: tuple[Path, str, dict[str, Any]],
                                              tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    photos, report, rep = lib
    before = snapshot(photos)
    journal = str(tmp_path / "j.jsonl")
    with monkeypatch.context() as m:
        crash_on_call(m, actions, "keep_original", 2)  # inside the 2nd operation
        with pytest.raises(Crash):
            apply_plan(make_plan(report, "hardlink"), journal)
    result = resume_apply(journal, report)
    assert result.already_done == 1 and len(result.done) == 2 and result.refused == []
    for g in rep["groups"]:
        for p in g["removable"]:
            assert os.path.samefile(p, g["keeper"])
    types = [r["type"] for r in journal_records(journal)]
    assert types.count("rolled_back") == 1 and types[-1] == "end"
    with pytest.raises(ActionError, match="complete"):
        resume_apply(journal, report)
    undo(journal)
    assert contents(snapshot(photos)) == contents(before)


def test_a_file_recreated_at_the_source_is_never_lost(
        lib: tuple[Path, str, dict[str, Any]], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    photos, report, _ = lib
    journal = str(tmp_path / "j.jsonl")
    with monkeypatch.context() as m:
        crash_on_call(m, Journal, "append", 3)  # the first move is made, its 'done' is not
        with pytest.raises(Crash):
            apply_plan(make_plan(report, "move", str(tmp_path / "dupes")), journal)
    moved = tmp_path / "dupes/photos/a/sunset_small.jpg"
    moved_bytes = moved.read_bytes()
    (photos / "a/sunset_small.jpg").write_bytes(b"someone put a new file here")
    u = undo(journal)
    assert "exists again" in u.not_restored[0].reason
    assert moved.read_bytes() == moved_bytes
    assert (photos / "a/sunset_small.jpg").read_bytes() == b"someone put a new file here"


def test_cli_resume_after_an_interruption(lib: tuple[Path, str, dict[str, Any]],
                                          tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    photos, report, _ = lib
    journal = str(tmp_path / "j.jsonl")
    with monkeypatch.context() as m:
        crash_on_call(m, actions, "move_file", 2)
        with pytest.raises(Crash):
            main(["apply", report, "--move-to", str(tmp_path / "dupes"), "--yes", "-q",
                  "--journal", journal])
    assert journal in capsys.readouterr().err  # named before anything was touched
    with pytest.raises(SystemExit) as exc:
        main(["apply", report, "--resume", journal])
    assert exc.value.code == 2  # --resume acts: it wants --yes
    main(["apply", report, "--resume", journal, "--yes", "-q"])
    out = capsys.readouterr().out
    assert "Done: moved 2 files" in out and "1 files had been done before" in out
    assert len(list((tmp_path / "dupes").rglob("*.jpg"))) == 3


def test_cli_undo_exits_1_when_something_stays(lib: tuple[Path, str, dict[str, Any]],
                                              tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    photos, report, _ = lib
    journal = str(tmp_path / "j.jsonl")
    apply_plan(make_plan(report, "move", str(tmp_path / "dupes")), journal)
    (photos / "b/dog-2.jpg").write_bytes(b"a new file took its place")
    with pytest.raises(SystemExit) as exc:
        main(["undo", journal, "-q"])
    assert exc.value.code == 1
    out = capsys.readouterr().out
    assert "exists again" in out and "Restored 2 files; 1 not restored." in out
    assert (photos / "b/dog-2.jpg").read_bytes() == b"a new file took its place"


def test_a_torn_last_journal_line_is_ignored(lib: tuple[Path, str, dict[str, Any]],
                                             tmp_path: Path) -> None:
    photos, report, _ = lib
    before = snapshot(photos)
    journal = tmp_path / "j.jsonl"
    apply_plan(make_plan(report, "move", str(tmp_path / "dupes")), str(journal))
    with open(journal, "a") as fh:
        fh.write('{"type": "und')
    assert len(undo(str(journal)).restored) == 3
    assert contents(snapshot(photos)) == contents(before)


def test_one_process_at_a_time_per_journal(lib: tuple[Path, str, dict[str, Any]],
                                           tmp_path: Path) -> None:
    _, report, _ = lib
    journal = str(tmp_path / "j.jsonl")
    apply_plan(make_plan(report, "move", str(tmp_path / "dupes")), journal)
    with Journal.open(journal), pytest.raises(ActionError, match="in use"):
        undo(journal)
    with pytest.raises(ActionError, match="already exists"):
        apply_plan(make_plan(report, "delete"), journal)


def test_undo_will_not_follow_a_tampered_journal_outside(
        lib: tuple[Path, str, dict[str, Any]], tmp_path: Path) -> None:
    _, report, _ = lib
    journal = tmp_path / "j.jsonl"
    apply_plan(make_plan(report, "move", str(tmp_path / "dupes")), str(journal))
    records = journal_records(str(journal))
    records[1]["path"] = str(tmp_path / "outside.jpg")
    journal.write_text("".join(json.dumps(r) + "\n" for r in records))
    u = undo(str(journal))
    assert len(u.restored) == 2 and "outside" in u.not_restored[0].reason
    assert not (tmp_path / "outside.jpg").exists()


# -- export -------------------------------------------------------------------------------
def test_export_csv_has_one_row_per_member(lib: tuple[Path, str, dict[str, Any]],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    photos, report, rep = lib
    buf = io.StringIO(newline="")
    assert write_export(rep, buf) == 5
    rows = list(csv.DictReader(io.StringIO(buf.getvalue())))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [r["role"] for r in rows] == ["keep", "remove", "remove", "keep", "remove"]
    assert rows[1]["path"] == str(photos / "a/sunset_small.jpg")
    assert rows[1]["keeper"] == rep["groups"][0]["keeper"]
    main(["export", report, "--format", "csv"])
    assert "CSV saved: " in capsys.readouterr().out
    assert Path(report).with_suffix(".csv").read_bytes().decode() == buf.getvalue()


# -- per-file failures: journalled, the rest go on, undo and resume always finish ------------
def test_a_blocked_destination_fails_one_file_and_the_rest_go_on(
        lib: tuple[Path, str, dict[str, Any]], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    photos, report, _ = lib
    dest = tmp_path / "dupes"
    (dest / "photos").mkdir(parents=True)
    (dest / "photos" / "b").write_bytes(b"a plain file where a folder must be made")
    before = snapshot(photos)
    journal = str(tmp_path / "j.jsonl")
    result = apply_plan(make_plan(report, "move", str(dest)), journal)
    assert [op.path for op in result.done] == [str(photos / "a/sunset_small.jpg")]
    assert sorted(f.path for f in result.failed) == [str(photos / "b/dog-2.jpg"),
                                                     str(photos / "b/sunset copy.jpg")]
    assert all(f.reason.startswith("failed: ") for f in result.failed)
    recs = journal_records(journal)
    assert [r["type"] for r in recs if r["type"] != "begin"][-1] == "end"
    assert sum(r["type"] == "rolled_back" and "error" in r for r in recs) == 2
    assert (photos / "b/dog-2.jpg").exists() and (photos / "b/sunset copy.jpg").exists()
    # the CLI says so and exits non-zero
    (tmp_path / "dupes3").mkdir()
    (tmp_path / "dupes3" / "photos").write_bytes(b"blocks every file")
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main(["apply", report, "--move-to", str(tmp_path / "dupes3"), "--yes", "-q",
              "--journal", str(tmp_path / "m.jsonl")])
    assert exit_.value.code == 1
    out = capsys.readouterr()
    assert out.out.count("failed ") == 2 and "2 files failed" in out.err
    u = undo(journal)
    assert u.restored == [str(photos / "a/sunset_small.jpg")] and u.not_restored == []
    assert contents(snapshot(photos)) == contents(before)


def test_undo_and_resume_finish_when_an_operation_was_left_open(
        lib: tuple[Path, str, dict[str, Any]], tmp_path: Path) -> None:
    """A journal cut right after a failed move's 'begin' (no rolled_back, no end): recovery
    meets the plain file in the way (ENOTDIR) and a name too long, and still finishes."""
    photos, report, _ = lib
    dest = tmp_path / "dupes"
    (dest / "photos").mkdir(parents=True)
    (dest / "photos" / "b").write_bytes(b"in the way")
    journal = str(tmp_path / "j.jsonl")
    apply_plan(make_plan(report, "move", str(dest)), journal)
    recs = journal_records(journal)
    cut = [r for r in recs if r["type"] not in ("rolled_back", "end")]
    long_target = str(dest / "photos" / ("x" * 300) / "y.jpg")
    first = next(r for r in cut if r["type"] == "begin")
    cut.append({**first, "n": 99, "path": str(photos / "a/cat.jpg"), "target": long_target})
    Path(journal).write_text("".join(json.dumps(r) + "\n" for r in cut))
    u = undo(journal)
    assert u.restored == [str(photos / "a/sunset_small.jpg")] and u.not_restored == []
    assert (photos / "a/cat.jpg").exists()
    types = [r["type"] for r in journal_records(journal)]
    assert types.count("rolled_back") == 3 and types[-1] == "undo_end"
    # resume from the same cut state
    Path(journal).write_text("".join(json.dumps(r) + "\n" for r in cut))
    os.unlink(dest / "photos" / "b")
    result = resume_apply(journal, report)
    assert sorted(op.path for op in result.done) == [str(photos / "b/dog-2.jpg"),
                                                     str(photos / "b/sunset copy.jpg")]
    assert result.failed == [] and journal_records(journal)[-1]["type"] == "end"


def test_a_name_too_long_fails_that_file_only(lib: tuple[Path, str, dict[str, Any]],
                                               tmp_path: Path) -> None:
    photos, report, _ = lib
    dest = tmp_path / "d" / ("n" * 250) / ("m" * 250)
    deep = dest
    while len(str(deep)) < 4200:
        deep = deep / ("p" * 250)
    result = apply_plan(make_plan(report, "move", str(deep)), str(tmp_path / "j.jsonl"))
    assert result.done == [] and len(result.failed) == 3
    assert all("too long" in f.reason for f in result.failed)
    assert len(list(photos.rglob("*.jpg"))) == 7
    assert undo(str(tmp_path / "j.jsonl")).not_restored == []


def test_default_journal_names_never_collide(lib: tuple[Path, str, dict[str, Any]],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    _, report, _ = lib
    # both names in the same second, whatever the clock does meanwhile
    monkeypatch.setattr(actions.time, "strftime", lambda fmt, *a: "20260101_000000")
    first = actions.default_journal_path(report, "delete")
    Journal.create(first, {"action": "delete"}).close()
    second = actions.default_journal_path(report, "delete")
    assert second != first and second.endswith("_2.jsonl")
    assert str(os.getpid()) in os.path.basename(first)


def test_a_keeper_is_read_once_yet_an_edit_between_plan_and_act_is_seen(
        lib: tuple[Path, str, dict[str, Any]], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The keeper of several copies is digested once per run (its stat, ctime included,
    vouches for it afterwards); writing to it in place, even with its mtime put back,
    changes its ctime and is caught before any copy is touched."""
    from imgsim_index.actions import safety
    from imgsim_index.ingest import identity

    photos, report, _ = lib
    monkeypatch.setattr(identity, "CTIME_TRUST_NS", 0)  # the files were made a moment ago
    reads: list[str] = []
    real = safety.file_digest
    monkeypatch.setattr(safety, "file_digest", lambda p: reads.append(p) or real(p))
    keeper = str(photos / "a/sunset.jpg")
    plan = make_plan(report, "move", str(tmp_path / "moved"))
    assert sorted(op.path for op in plan.operations if op.keeper == keeper) == [
        str(photos / "a/sunset_small.jpg"), str(photos / "b/sunset copy.jpg")]
    assert reads.count(keeper) == 1
    st = os.stat(keeper)
    with open(keeper, "r+b") as fh:  # same size, same mtime, other bytes
        fh.seek(st.st_size // 2)
        fh.write(b"\x00" * 8)
    os.utime(keeper, ns=(st.st_atime_ns, st.st_mtime_ns))
    result = apply_plan(plan, str(tmp_path / "j.jsonl"))
    assert reads.count(keeper) > 1  # the new ctime made it read again
    assert {r.path for r in result.refused} >= {str(photos / "a/sunset_small.jpg"),
                                                 str(photos / "b/sunset copy.jpg")}
    assert (photos / "a/sunset_small.jpg").is_file() and (photos / "b/sunset copy.jpg").is_file()
