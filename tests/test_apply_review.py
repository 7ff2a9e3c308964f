"""apply and undo against the ways a review found to lose data: concurrent writers of one
index, a keeper changed in place, a hand-edited report, recovery touching another
process's file, edits after --hardlink or --move-to, and misleading messages.
Real commands on small generated images, with EfficientNet-Lite0."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgsim_index.actions.journal import Journal
from imgsim_index.actions.plan import _begin_record, _try, make_plan
from imgsim_index.index.store import LOCK
from imgsim_index.locks import acquire_writer_lock, release_writer_lock

PATTERNS = ("stripes", "checks", "rings")


def _picture(kind: str) -> Image.Image:
    y, x = np.mgrid[0:240, 0:320]
    if kind == "stripes":
        a = ((x // 20) % 2) * 255
        rgb = np.stack([a, np.full_like(a, 40), 255 - a], -1)
    elif kind == "checks":
        a = (((x // 40) + (y // 40)) % 2) * 255
        rgb = np.stack([np.full_like(a, 200), a, np.full_like(a, 30)], -1)
    else:
        r = np.hypot(x - 160, y - 120)
        a = (np.sin(r / 6) * 127 + 128).astype(int)
        rgb = np.stack([a, 255 - a, np.full_like(a, 90)], -1)
    return Image.fromarray(rgb.astype(np.uint8))


def cli(*args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    got = subprocess.run([sys.executable, "-m", "imgsim_index", *args], capture_output=True,
                         text=True)
    if check:
        assert got.returncode == 0, got.stderr
    return got


@pytest.fixture
def lib(tmp_path: Path) -> dict[str, Path]:
    """photos/imgK.png (three different pictures) each with a byte-identical copy (cp -p),
    indexed and deduped with --keep shortest-path: keepers imgK.png."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for k, kind in enumerate(PATTERNS):
        _picture(kind).save(photos / f"img{k}.png")
        shutil.copy2(photos / f"img{k}.png", photos / f"img{k}_copy.png")
    report = dedupe(tmp_path, "shortest-path")
    return {"root": tmp_path, "photos": photos, "index": tmp_path / "idx", "report": report}


def dedupe(root: Path, keep: str) -> Path:
    out = root / f"results-{keep}"
    cli("dedupe", str(root / "photos"), "--index", str(root / "idx"), "--model",
        "efficientnet-lite0", "--output", str(out), "--keep", keep, "-q", check=True)
    (report,) = out.glob("*/report.json")
    return report


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_file())


def journals(report: Path) -> list[Path]:
    return sorted(report.parent.glob("apply-*.jsonl"))


ALL = ["img0.png", "img0_copy.png", "img1.png", "img1_copy.png", "img2.png", "img2_copy.png"]


# -- finding 1: one writer at a time -------------------------------------------------
def test_apply_refuses_while_the_index_is_locked_and_wait_queues(lib: dict[str, Path]) -> None:
    report, index = str(lib["report"]), str(lib["index"])
    fd = acquire_writer_lock(os.path.join(index, LOCK), wait=False)  # as build or serve holds it
    try:
        dry = cli("apply", report, "--delete")
        assert dry.returncode == 0 and "Dry run: would delete 3 files" in dry.stdout
        got = cli("apply", report, "--delete", "--yes")
        assert got.returncode == 1
        assert got.stderr.startswith(f"Error: the index is being written by pid {os.getpid()} ")
        assert got.stderr.rstrip().endswith("or pass --wait to queue behind it")
        assert len(got.stderr.strip().splitlines()) == 1
        assert names(lib["photos"]) == ALL and journals(lib["report"]) == []
        waiting = subprocess.Popen([sys.executable, "-m", "imgsim_index", "apply", report,
                                    "--delete", "--yes", "--wait", "-q"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        with pytest.raises(subprocess.TimeoutExpired):
            waiting.wait(3)  # queued behind the lock, not acting
        assert names(lib["photos"]) == ALL
    finally:
        release_writer_lock(fd)
    out, err = waiting.communicate(timeout=120)
    assert waiting.returncode == 0, err
    assert "Done: deleted 3 files" in out
    assert names(lib["photos"]) == ["img0.png", "img1.png", "img2.png"]


def test_two_applies_with_swapped_keepers_keep_every_picture(lib: dict[str, Path]) -> None:
    for k in range(3):  # the copies are newer
        copy = lib["photos"] / f"img{k}_copy.png"
        t = os.stat(copy).st_mtime_ns + 10**10
        os.utime(copy, ns=(t, t))
    reports = [str(dedupe(lib["root"], keep)) for keep in ("oldest", "newest")]
    runs = [subprocess.Popen([sys.executable, "-m", "imgsim_index", "apply", r, "--delete",
                              "--yes", "--wait", "-q"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
            for r in reports]
    outs = [r.communicate(timeout=180) for r in runs]
    # whichever came second found every keeper gone: it did nothing, and says so with 1
    assert sorted(r.returncode for r in runs) == [0, 1], outs
    assert sum("Nothing was done: all 3 files apply would act on were refused" in err
               for _, err in outs) == 1, outs
    left = names(lib["photos"])
    assert len(left) == 3 and {n.split("_")[0].split(".")[0] for n in left} == {
        "img0", "img1", "img2"}
    done = sorted(o.split("Done: deleted ")[1].split(" files")[0] for o, _ in outs)
    assert done == ["0", "3"]


def test_undo_and_resume_take_the_lock(lib: dict[str, Path]) -> None:
    cli("apply", str(lib["report"]), "--move-to", str(lib["root"] / "dupes"), "--yes", "-q",
        check=True)
    (journal,) = journals(lib["report"])
    fd = acquire_writer_lock(os.path.join(str(lib["index"]), LOCK), wait=False)
    try:
        for args in (("undo", str(journal)),
                     ("apply", str(lib["report"]), "--resume", str(journal), "--yes")):
            got = cli(*args)
            assert got.returncode == 1
            assert "the index is being written by" in got.stderr
            assert got.stderr.rstrip().endswith("or pass --wait to queue behind it")
    finally:
        release_writer_lock(fd)
    assert names(lib["photos"]) == ["img0.png", "img1.png", "img2.png"]
    back = cli("undo", str(journal), check=True)
    assert "Restored 3 files" in back.stdout and names(lib["photos"]) == ALL


# -- finding 2: the keeper's bytes ---------------------------------------------------
def test_a_keeper_changed_in_place_refuses_its_copies(lib: dict[str, Path]) -> None:
    keeper = lib["photos"] / "img0.png"
    st = os.stat(keeper)
    with open(keeper, "r+b") as fh:  # bit rot: same size, mtime put back, same inode
        fh.seek(st.st_size // 2)
        chunk = fh.read(64)
        fh.seek(st.st_size // 2)
        fh.write(bytes(b ^ 0xFF for b in chunk))
    os.utime(keeper, ns=(st.st_atime_ns, st.st_mtime_ns))
    for action in (("--delete",), ("--trash",), ("--hardlink",),
                   ("--move-to", str(lib["root"] / "dupes"))):
        got = cli("apply", str(lib["report"]), *action)
        assert (f"refused {lib['photos'] / 'img0_copy.png'}: its keeper {keeper} changed since "
                "it was indexed (its content digest differs); run dedupe again; not touching "
                "a copy whose original may be gone") in got.stdout
    got = cli("apply", str(lib["report"]), "--delete", "--yes", check=True)
    assert "Done: deleted 2 files" in got.stdout and "1 refused" in got.stdout
    assert names(lib["photos"]) == ["img0.png", "img0_copy.png", "img1.png", "img2.png"]


# -- finding 6: a removable file must be a verified copy of its keeper ---------------
def test_a_hand_edited_report_cannot_remove_other_pictures(lib: dict[str, Path]) -> None:
    r = json.loads(lib["report"].read_text())
    g = next(g for g in r["groups"] if g["keeper"].endswith("img0.png"))
    moved = [str(lib["photos"] / n) for n in ("img1.png", "img1_copy.png")]
    for f in moved:
        st = os.stat(f)
        for h in r["groups"]:
            h["members"] = [m for m in h["members"] if m["path"] != f]
            h["removable"] = [x for x in h["removable"] if x != f]
        g["members"].append({"path": f, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                             "role": "remove"})
        g["removable"].append(f)
    r["groups"] = [h for h in r["groups"] if h["removable"]]
    lib["report"].write_text(json.dumps(r))
    got = cli("apply", str(lib["report"]), "--delete", "--yes", check=True)
    for f in moved:
        line = next(x for x in got.stdout.splitlines() if x.startswith(f"refused {f}: "))
        assert line.split(": ", 1)[1].startswith(
            "is not a verified copy of its keeper in the index: no verified copy joins them "
            "(score 0.")
        assert line.endswith("the model's floor is 0.75)")
    assert "Done: deleted 2 files" in got.stdout and "2 refused" in got.stdout
    assert names(lib["photos"]) == ["img0.png", "img1.png", "img1_copy.png", "img2.png"]


# -- finding 4: recovery leaves another process's target alone -----------------------
def test_recovery_never_removes_a_target_another_process_placed(lib: dict[str, Path]) -> None:
    plan = make_plan(str(lib["report"]), "move", str(lib["root"] / "dupes"))
    op = plan.operations[0]
    path = str(lib["root"] / "second.jsonl")
    head = {"action": "move", "report": str(lib["report"]), "folders": list(plan.context.folders),
            "move_to": plan.move_to, "backup_dir": path + "-originals", "index": ""}
    with Journal.create(path, head) as journal:
        rec = _begin_record(op, "move", journal.next_number(), "")
        journal.append(rec)
        assert op.target is not None
        os.makedirs(os.path.dirname(op.target))
        os.link(op.path, op.target)  # the other apply, between link and unlink
        why = _try(rec, journal)
        assert why == f"failed: {op.target} already exists; not overwriting it"
        os.unlink(op.path)  # the other apply finishes
    assert not os.path.exists(op.path) and os.path.isfile(op.target)
    states = [r["type"] for r in Journal.open(path).records]
    assert states == ["apply", "begin", "rolled_back"]


# -- findings 5 and 10: undo checks the bytes recorded at apply time -----------------
def _edit_in_place(path: Path) -> None:
    st = os.stat(path)
    with open(path, "r+b") as fh:
        fh.seek(100)
        fh.write(b"\0" * 16)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_undo_of_an_edited_hard_link_says_the_original_is_gone(lib: dict[str, Path]) -> None:
    cli("apply", str(lib["report"]), "--hardlink", "--yes", "-q", check=True)
    (journal,) = journals(lib["report"])
    begin = [r for r in Journal.open(str(journal)).records if r["type"] == "begin"]
    assert all(len(r["digest"]) == 32 for r in begin)
    copy = lib["photos"] / "img0_copy.png"
    _edit_in_place(copy)
    got = cli("undo", str(journal))
    assert got.returncode == 1
    assert (f"not restored {copy}: cannot restore the original: {copy} changed since apply "
            f"(since --hardlink it is one file with its keeper {lib['photos'] / 'img0.png'}: "
            "an edit of either name edited both, and the original bytes are gone)"
            ) in got.stdout
    assert "Restored 2 files; 1 not restored." in got.stdout


def test_undo_of_an_edited_moved_file_leaves_it(lib: dict[str, Path]) -> None:
    dupes = lib["root"] / "dupes"
    cli("apply", str(lib["report"]), "--move-to", str(dupes), "--yes", "-q", check=True)
    (journal,) = journals(lib["report"])
    moved = dupes / "photos" / "img0_copy.png"
    _edit_in_place(moved)
    got = cli("undo", str(journal))
    assert got.returncode == 1
    assert (f"not restored {lib['photos'] / 'img0_copy.png'}: cannot restore the original: "
            f"{moved} changed since apply; left as it is") in got.stdout
    assert moved.is_file() and not (lib["photos"] / "img0_copy.png").exists()


# -- findings 9, 11-14: messages -----------------------------------------------------
def test_delete_has_no_undo_and_undo_says_so(lib: dict[str, Path]) -> None:
    got = cli("apply", str(lib["report"]), "--delete", "--yes", "-q", check=True)
    assert "Undo with" not in got.stdout + got.stderr
    (journal,) = journals(lib["report"])
    back = cli("undo", str(journal))
    assert back.returncode == 1 and back.stdout == ""
    assert back.stderr == (f"Error: {journal} records an apply that deleted 3 files; deleted "
                           "files cannot be restored, so there is nothing to undo\n")


def test_plan_dry_run_writes_nothing(lib: dict[str, Path]) -> None:
    r = json.loads(lib["report"].read_text())
    g = r["groups"][0]
    choices = lib["root"] / "choices.json"
    choices.write_text(json.dumps({
        "format": "imgsim-index-choices", "version": 1, "report_timestamp": r["timestamp"],
        "groups": [{"group": g["group"], "keeper": g["keeper"], "remove": g["removable"]}]}))
    before = sorted(p.name for p in lib["report"].parent.iterdir())
    got = cli("apply", str(lib["report"]), "--delete", "--plan", str(choices), check=True)
    assert "Dry run: would delete 1 files" in got.stdout
    assert sorted(p.name for p in lib["report"].parent.iterdir()) == before
    assert "Reviewed report" not in got.stderr


def test_undo_of_a_report_and_a_second_undo(lib: dict[str, Path]) -> None:
    got = cli("undo", str(lib["report"]))
    assert got.returncode == 1
    assert got.stderr == (f"Error: {lib['report']} is a report, not an apply journal; pass the "
                          "apply-*.jsonl journal that apply wrote beside it\n")
    cli("apply", str(lib["report"]), "--hardlink", "--yes", "-q", check=True)
    (journal,) = journals(lib["report"])
    first = cli("undo", str(journal), check=True)
    assert "Index updated: 0 files back under their names, 3 hard links undone" in first.stdout
    second = cli("undo", str(journal), check=True)
    assert second.stdout == "Restored 0 files; 0 not restored.\n"


def test_resume_of_an_undone_journal_whose_index_is_pending(lib: dict[str, Path]) -> None:
    dupes = lib["root"] / "dupes"
    cli("apply", str(lib["report"]), "--move-to", str(dupes), "--yes", "-q", check=True)
    (journal,) = journals(lib["report"])
    away = lib["root"] / "idx-away"
    lib["index"].rename(away)  # the index cannot be opened while undo runs
    first = cli("undo", str(journal), check=True)
    assert "Restored 3 files" in first.stdout
    assert f"The index {lib['index']} was not updated: no index at" in first.stderr
    away.rename(lib["index"])
    got = cli("apply", str(lib["report"]), "--resume", str(journal), "--yes")
    assert got.returncode == 1
    assert got.stderr == (f"Error: {journal} has been undone, but its index still lists the "
                          f"files where apply put them; run undo {journal} again to update "
                          "it\n")
    again = cli("undo", str(journal), check=True)
    assert again.stdout == ("Restored 0 files; 0 not restored.\n"
                            f"Index updated: 3 files back under their names, 0 hard links "
                            f"undone ({lib['index']})\n")
    done = cli("apply", str(lib["report"]), "--resume", str(journal), "--yes")
    assert done.stderr == f"Error: {journal} has been undone; run apply again for a new plan\n"


def test_an_apply_that_did_nothing_because_all_was_refused_exits_1(
        lib: dict[str, Path]) -> None:
    first = cli("apply", str(lib["report"]), "--move-to", str(lib["root"] / "dupes"), "--yes",
                "-q", check=True)
    assert "Done: moved 3 files" in first.stdout
    again = cli("apply", str(lib["report"]), "--move-to", str(lib["root"] / "dupes"), "--yes",
                "-q")
    assert again.returncode == 1, again.stderr
    assert "Done: moved 0 files" in again.stdout and "3 refused" in again.stdout
    assert again.stderr.strip().splitlines()[-1] == (
        "Nothing was done: all 3 files apply would act on were refused (reasons above)")
    dry = cli("apply", str(lib["report"]), "--move-to", str(lib["root"] / "dupes"))
    assert dry.returncode == 0, dry.stderr  # a dry run only shows
    assert names(lib["photos"]) == ["img0.png", "img1.png", "img2.png"]
