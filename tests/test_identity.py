"""One identity per file: scan, the catalog and apply see files, not names (no CNN, except
the command-line repro, which runs the real EfficientNet-Lite0)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from library_fixture import DIM, IDENTITY, Img, make_library, run_dedupe, write_image

from imgsim_index.actions.plan import apply_plan, make_plan
from imgsim_index.errors import ReportError
from imgsim_index.index.catalog import Catalog, NewRow
from imgsim_index.index.store import IndexStore
from imgsim_index.ingest.identity import file_digest
from imgsim_index.ingest.scan import Alias, scan_inputs


def edit_report(report_path: str, change: Any) -> None:
    rep = json.loads(Path(report_path).read_text())
    change(rep)
    Path(report_path).write_text(json.dumps(rep))


def reasons(plan: Any) -> dict[str, str]:
    return {r.path: r.reason for r in plan.refused}


def test_scan_lists_each_file_once_and_names_its_other_names(tmp_path: Path) -> None:
    photos, inbox = tmp_path / "photos", tmp_path / "inbox"
    write_image(photos / "a.png", (32, 24), 1)
    write_image(photos / "2024" / "b.png", (32, 24), 2)
    inbox.mkdir()
    (inbox / "linked_photos").symlink_to("../photos", target_is_directory=True)
    os.link(photos / "2024" / "b.png", inbox / "hard.png")
    got = scan_inputs([str(photos), str(photos / "2024"), str(inbox)])
    assert [r.path for r in got.refs] == [str(photos / "a.png"), str(photos / "2024/b.png")]
    assert sorted(got.aliases, key=lambda a: a.path) == [
        Alias(str(inbox / "hard.png"), str(photos / "2024/b.png")),
        Alias(str(inbox / "linked_photos/2024/b.png"), str(photos / "2024/b.png")),
        Alias(str(inbox / "linked_photos/a.png"), str(photos / "a.png")),
    ]
    st = os.stat(photos / "a.png")
    assert (got.refs[0].dev, got.refs[0].ino) == (st.st_dev, st.st_ino)
    # an input spelled with `..` or `//` is the same folder
    again = scan_inputs([str(photos / "2024" / ".."), f"{photos}//2024"])
    assert [r.path for r in again.refs] == [str(photos / "a.png"), str(photos / "2024/b.png")]
    assert again.aliases == []


@pytest.mark.slow
def test_cli_symlinked_folder_overlap_and_hard_link_delete_only_true_duplicates(
        tmp_path: Path) -> None:
    """The reported repro: a folder linked into another input, plus overlapping inputs and
    a hard link. Only the real second copy (c.png, same bytes as a.png) may go."""
    photos, inbox = tmp_path / "photos", tmp_path / "inbox"
    write_image(photos / "a.png", (96, 64), 1)
    write_image(photos / "2024" / "b.png", (96, 64), 2)
    (photos / "c.png").write_bytes((photos / "a.png").read_bytes())
    inbox.mkdir()
    (inbox / "linked_photos").symlink_to("../photos", target_is_directory=True)
    os.link(photos / "2024" / "b.png", inbox / "hard.png")
    before = {p: p.read_bytes() for p in photos.rglob("*.png")}
    env = {**os.environ, "PYTHONPATH": os.getcwd()}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "imgsim_index", *args], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=600)

    d = run("dedupe", "photos", "photos/2024", "inbox", "--index", "idx",
            "--model", "efficientnet-lite0", "--output", "res")
    assert d.returncode == 0, d.stderr
    assert "indexed once" in d.stderr
    [report_path] = (tmp_path / "res").glob("*/report.json")
    rep = json.loads(report_path.read_text())
    assert rep["total_images_in_folders"] == 3
    [group] = rep["groups"]
    assert sorted(m["path"] for m in group["members"]) == [str(photos / "a.png"),
                                                           str(photos / "c.png")]
    a = run("apply", str(report_path), "--delete", "--yes", "--quiet")
    assert a.returncode == 0, a.stdout + a.stderr
    assert Path(group["keeper"]).read_bytes() == before[Path(group["keeper"])]
    left = {p for p in photos.rglob("*.png")}
    assert left == set(before) - {Path(p) for p in group["removable"]}
    assert (inbox / "hard.png").read_bytes() == before[photos / "2024/b.png"]


def two_names_index(tmp_path: Path) -> tuple[Path, Path, str]:
    """An index that holds one file under two names (as an older version built it):
    photos/a.jpg and photos/alias/a.jpg (a symlinked folder). Returns photos, index, report."""
    photos, index = make_library(tmp_path, [Img("a.jpg", 0, (90, 60)),
                                            Img("other.jpg", 0, (60, 40))])
    (photos / "alias").symlink_to(photos, target_is_directory=True)
    alias = photos / "alias" / "a.jpg"
    st = os.stat(alias)
    with IndexStore.open_writer(str(index), IDENTITY) as store:
        v = store.load().vectors[0:1]
        store.commit([NewRow(str(alias), str(photos), st.st_size, st.st_mtime_ns, 60, 40,
                             dev=st.st_dev, ino=st.st_ino, digest=file_digest(str(alias)))],
                     v.copy())
    return photos, index, run_dedupe(tmp_path, index).report_path


def test_apply_refuses_another_name_of_a_keeper(tmp_path: Path) -> None:
    photos, _, report = two_names_index(tmp_path)
    rep = json.loads(Path(report).read_text())
    [group] = rep["groups"]
    assert group["keeper"] in (str(photos / "a.jpg"), str(photos / "alias/a.jpg"))
    for action in ("delete", "move"):
        plan = make_plan(report, action, str(tmp_path / "dupes"))
        other = next(p for p in (str(photos / "a.jpg"), str(photos / "alias/a.jpg"))
                     if p != group["keeper"])
        assert reasons(plan)[other] == (f"is the same file as the keeper {group['keeper']} "
                                        "(another name for it)")
    apply_plan(make_plan(report, "delete"), str(tmp_path / "j.jsonl"))
    assert (photos / "a.jpg").exists()
    assert not (photos / "other.jpg").exists()  # the true duplicate went


def test_apply_normalises_report_paths(tmp_path: Path) -> None:
    photos, index = make_library(tmp_path, [Img("a.jpg", 0, (90, 60)),
                                            Img("sub/b.jpg", 0, (60, 40))])
    report = run_dedupe(tmp_path, index).report_path
    keeper = str(photos / "a.jpg")
    spellings = [f"{photos}/sub/../a.jpg", f"{photos}//a.jpg", f"{photos}/./a.jpg"]

    def tamper(rep: dict[str, Any]) -> None:
        g = rep["groups"][0]
        assert g["keeper"] == keeper
        m = next(m for m in g["members"] if m["path"] == keeper)
        for p in spellings:
            g["removable"].append(p)
            g["members"].append({**m, "path": p, "role": "remove"})
    edit_report(report, tamper)
    plan = make_plan(report, "delete")
    assert {p: reasons(plan)[p] for p in spellings} == dict.fromkeys(spellings, "is a keeper")
    assert [op.path for op in plan.operations] == [str(photos / "sub/b.jpg")]
    apply_plan(plan, str(tmp_path / "j.jsonl"))
    assert (photos / "a.jpg").exists() and not (photos / "sub/b.jpg").exists()


def test_a_second_spelling_of_a_planned_removal_is_refused(tmp_path: Path) -> None:
    photos, index = make_library(tmp_path, [Img("a.jpg", 0, (90, 60)),
                                            Img("sub/b.jpg", 0, (60, 40))])
    report = run_dedupe(tmp_path, index).report_path
    twice = f"{photos}/sub/./b.jpg"

    def tamper(rep: dict[str, Any]) -> None:
        g = rep["groups"][0]
        m = next(m for m in g["members"] if m["path"].endswith("b.jpg"))
        g["removable"].append(twice)
        g["members"].append({**m, "path": twice})
    edit_report(report, tamper)
    plan = make_plan(report, "delete")
    assert reasons(plan)[twice] == (f"is the same file as {photos / 'sub/b.jpg'}, already "
                                    "planned (another name for it)")
    assert len(plan.operations) == 1


def test_a_file_changed_with_size_and_mtime_restored_is_skipped(tmp_path: Path) -> None:
    photos, index = make_library(tmp_path, [Img("a.jpg", 0, (90, 60)),
                                            Img("b.jpg", 0, (60, 40))])
    report = run_dedupe(tmp_path, index).report_path
    b = photos / "b.jpg"
    st = b.stat()
    data = bytearray(b.read_bytes())
    data[-3] ^= 0xFF  # same size
    b.write_bytes(bytes(data))
    os.utime(b, ns=(st.st_atime_ns, st.st_mtime_ns))
    plan = make_plan(report, "delete")
    assert reasons(plan)[str(b)] == ("changed since it was indexed (its content digest "
                                     "differs); run dedupe again")
    assert plan.operations == []


def test_a_file_replaced_by_another_inode_is_skipped(tmp_path: Path) -> None:
    photos, index = make_library(tmp_path, [Img("a.jpg", 0, (90, 60)),
                                            Img("b.jpg", 0, (60, 40))])
    report = run_dedupe(tmp_path, index).report_path
    b = photos / "b.jpg"
    st = b.stat()
    (photos / "b.new").write_bytes(b.read_bytes())
    os.replace(photos / "b.new", b)
    os.utime(b, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert reasons(make_plan(report, "delete"))[str(b)] == (
        "is no longer the file that was indexed (another file has its name now)")


def test_a_hand_edited_folder_list_cannot_widen_the_report(tmp_path: Path) -> None:
    photos, index = make_library(tmp_path, [Img("a.jpg", 0, (90, 60)),
                                            Img("b.jpg", 0, (60, 40))])
    report = run_dedupe(tmp_path, index).report_path
    victim = tmp_path / "unrelated" / "precious.jpg"
    write_image(victim, (60, 40), 0)
    st = victim.stat()

    def tamper(rep: dict[str, Any]) -> None:
        rep["folder_list"] = ["/"]
        g = rep["groups"][0]
        g["removable"].append(str(victim))
        g["members"].append({"path": str(victim), "size": st.st_size,
                             "mtime_ns": st.st_mtime_ns, "protected": False, "role": "remove"})
    edit_report(report, tamper)
    plan = make_plan(report, "delete")
    assert reasons(plan)[str(victim)] == ("is outside the folders the report's index was "
                                          "built from")
    apply_plan(plan, str(tmp_path / "j.jsonl"))
    assert victim.exists() and not (photos / "b.jpg").exists()


@pytest.mark.parametrize(("change", "message"), [
    (lambda r: r["groups"][0]["members"][0].update(size="12"),
     "groups[0].members[0].size must be an integer"),
    (lambda r: r["groups"][0]["members"][1].pop("mtime_ns"),
     "groups[0].members[1].mtime_ns must be an integer"),
    (lambda r: r["groups"][0].update(removable="x.jpg"),
     "groups[0].removable must be a list of paths"),
    (lambda r: r["groups"][0].update(keeper=None), "groups[0].keeper must be a path"),
    (lambda r: r.update(folder_list=[1]), "folder_list must be a list of folder names"),
    (lambda r: r.pop("index_path"), "index_path must name the index the report was made from"),
    (lambda r: r["groups"][0]["members"].pop(), "groups[0] names "),
])
def test_malformed_reports_name_the_field(tmp_path: Path, change: Any, message: str) -> None:
    _, index = make_library(tmp_path, [Img("a.jpg", 0, (90, 60)), Img("b.jpg", 0, (60, 40))])
    report = run_dedupe(tmp_path, index).report_path
    edit_report(report, change)
    with pytest.raises(ReportError, match="damaged: " + message.replace("[", r"\[")
                       .replace("]", r"\]").replace(".", r"\.")):
        make_plan(report, "delete")


def test_a_report_whose_index_is_gone_is_refused(tmp_path: Path) -> None:
    _, index = make_library(tmp_path, [Img("a.jpg", 0, (90, 60)), Img("b.jpg", 0, (60, 40))])
    report = run_dedupe(tmp_path, index).report_path
    os.rename(index, tmp_path / "moved")
    with pytest.raises(ReportError, match="bound to the index at .* cannot be opened"):
        make_plan(report, "delete")


def test_a_schema_1_catalog_is_migrated_and_backfilled_rows_apply(tmp_path: Path) -> None:
    photos, index = make_library(tmp_path, [Img("a.jpg", 0, (90, 60)),
                                            Img("b.jpg", 0, (60, 40))])
    db = sqlite3.connect(index / "catalog.sqlite")  # make it look like a schema-1 catalog
    for col in ("dev", "ino", "digest"):
        db.execute(f"ALTER TABLE images DROP COLUMN {col}")
    db.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    reader = Catalog(str(index / "catalog.sqlite"), readonly=True)
    assert [(r.dev, r.digest) for r in reader.rows()] == [(None, None)] * 2
    reader.close()
    report = run_dedupe(tmp_path, index).report_path
    # rows with no recorded content are no verified copies: the report proposes nothing,
    # says why, and apply acts on nothing
    group = json.loads(Path(report).read_text())["groups"][0]
    assert group["removable"] == [] and group["not_removable"], group
    assert make_plan(report, "delete").operations == []
    with IndexStore.open_writer(str(index), IDENTITY) as store:  # a writer adds the columns
        assert store.catalog.get_meta("schema_version") == "2"
        assert np.asarray(store.load().vectors).shape == (2, DIM)
        for name in ("a.jpg", "b.jpg"):  # what build records for unchanged files
            st = os.stat(photos / name)
            store.catalog.set_identity(str(photos / name), st.st_dev, st.st_ino,
                                       file_digest(str(photos / name)))
    report = run_dedupe(tmp_path, index).report_path
    assert [op.path for op in make_plan(report, "delete").operations] == [str(photos / "b.jpg")]
