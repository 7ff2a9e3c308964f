"""apply acts only on files the index shows to be verified copies of their keepers, and the
report's files_removable is what apply does (no CNN needed: hand-made vectors, real files,
real verification)."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
from library_fixture import DIM, Img, make_library, run_dedupe, simple_library

from imgsim_index.actions.plan import apply_plan, make_plan
from imgsim_index.groups.verified import NOT_A_COPY
from imgsim_index.verify import VerifySettings

# two images with one vector (cosine ~1) but different pictures: another shot, not a copy
BURST = [Img("c/burst1.jpg", 7, (100, 75), picture=71), Img("c/burst2.jpg", 7, (80, 60),
                                                             picture=72)]


def edit_report(path: str, change: Any) -> None:
    rep = json.loads(Path(path).read_text())
    change(rep)
    Path(path).write_text(json.dumps(rep))


def member(path: str) -> dict[str, Any]:
    st = os.stat(path)
    return {"path": path, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "width": 1,
            "height": 1, "score_to_keeper": 1.0, "role": "remove", "protected": False}


def refusals(plan: Any) -> dict[str, str]:
    return {r.path: r.reason for r in plan.refused}


def test_an_edited_threshold_and_removable_list_cannot_widen_apply(tmp_path: Path) -> None:
    photos, first = simple_library(tmp_path)
    cat = str(photos / "a/cat.jpg")
    before = Path(cat).read_bytes()

    def widen(rep: dict[str, Any]) -> None:
        rep["threshold"] = -1.0
        g = rep["groups"][0]
        g["members"].append(member(cat))
        g["removable"].append(cat)

    edit_report(first.report_path, widen)
    plan = make_plan(first.report_path, "move", str(tmp_path / "dupes"))
    assert refusals(plan)[cat].startswith(f"{NOT_A_COPY}: no verified copy joins them (score ")
    result = apply_plan(plan, str(tmp_path / "j.jsonl"))
    assert len(result.done) == first.report["files_removable"] == 3
    assert Path(cat).read_bytes() == before


def test_edited_matches_and_evidence_change_nothing(tmp_path: Path) -> None:
    photos, index = make_library(tmp_path, [Img("a/sunset.jpg", 0, (120, 90)),
                                            Img("a/sunset_small.jpg", 0, (60, 45)), *BURST])
    first = run_dedupe(tmp_path, index)
    burst1, burst2 = str(photos / "c/burst1.jpg"), str(photos / "c/burst2.jpg")
    assert [(p["image1"], p["match"]) for p in first.report["near_misses"]] == [
        (burst1, "other_shot")]
    before = Path(burst2).read_bytes()

    def forge(rep: dict[str, Any]) -> None:  # the other shot made out to be a copy
        rep["threshold"] = -1.0
        near = rep.pop("near_misses")[0]
        rep["similar_pairs"].append({**near, "match": "exact", "evidence": "same bytes"})
        for p in rep["similar_pairs"]:
            p["match"], p["evidence"] = "exact", "same bytes"
        rep["groups"].append({"group": 1, "size": 2, "keeper": burst1,
                              "members": [{**member(burst1), "role": "keep"}, member(burst2)],
                              "removable": [burst2], "bytes_removable": 1})

    edit_report(first.report_path, forge)
    plan = make_plan(first.report_path, "move", str(tmp_path / "dupes"))
    assert [op.path for op in plan.operations] == [str(photos / "a/sunset_small.jpg")]
    assert refusals(plan)[burst2].startswith(f"{NOT_A_COPY}: verified now from the files: ")
    apply_plan(plan, str(tmp_path / "j.jsonl"))
    assert Path(burst2).read_bytes() == before


def chain_vectors() -> dict[str, np.ndarray]:
    """A-B and B-C score 0.995, A-C 0.980: C is below 0.99 to A, joined through B."""
    e1, e2 = np.eye(DIM)[0], np.eye(DIM)[1]
    return {rel: np.cos(t) * e1 + np.sin(t) * e2
            for rel, t in (("a/A.jpg", 0.0), ("b/B.jpg", 0.1), ("c/C.jpg", 0.2))}


def test_files_removable_counts_what_apply_does_through_a_chain_of_copies(
        tmp_path: Path) -> None:
    photos, index = make_library(tmp_path, [
        Img("a/A.jpg", 0, (120, 90)), Img("b/B.jpg", 0, (90, 68)), Img("c/C.jpg", 0, (60, 45)),
        Img("a/dog.jpg", 1, (80, 60)), Img("b/dog-2.jpg", 1, (40, 30))], given=chain_vectors())
    got = run_dedupe(tmp_path, index, threshold=0.99)
    rep = got.report
    group = next(g for g in rep["groups"] if g["keeper"] == str(photos / "a/A.jpg"))
    scores = {m["path"]: m["score_to_keeper"] for m in group["members"]}
    assert scores[str(photos / "c/C.jpg")] < rep["threshold"] == 0.99
    result = apply_plan(make_plan(got.report_path, "move", str(tmp_path / "dupes")),
                        str(tmp_path / "j.jsonl"))
    assert len(result.done) == rep["files_removable"] == 3 and result.refused == []
    assert not (photos / "c/C.jpg").exists() and group["not_removable"] == []


def test_a_member_grouped_as_another_shot_is_not_listed_nor_removed(tmp_path: Path) -> None:
    photos, index = make_library(tmp_path, [*BURST, Img("c/burst1_small.jpg", 7, (50, 38),
                                                        picture=71)])
    got = run_dedupe(tmp_path, index, group_near_misses=True)
    rep = got.report
    [group] = rep["groups"]
    burst2 = str(photos / "c/burst2.jpg")
    assert group["keeper"] == str(photos / "c/burst1.jpg")
    assert group["removable"] == [str(photos / "c/burst1_small.jpg")]
    assert [n["path"] for n in group["not_removable"]] == [burst2]
    assert group["not_removable"][0]["reason"].startswith(NOT_A_COPY)
    assert {m["path"]: m["role"] for m in group["members"]}[burst2] == "unverified"
    assert rep["files_removable"] == 1
    result = apply_plan(make_plan(got.report_path, "move", str(tmp_path / "dupes")),
                        str(tmp_path / "j.jsonl"))
    assert len(result.done) == 1 and Path(burst2).exists()


def test_verify_off_reports_are_verified_by_apply(tmp_path: Path) -> None:
    photos, index = make_library(tmp_path, [Img("a/sunset.jpg", 0, (120, 90)),
                                            Img("a/sunset_small.jpg", 0, (60, 45)), *BURST])
    got = run_dedupe(tmp_path, index, verify=VerifySettings(enabled=False))
    rep = got.report
    burst2, small = str(photos / "c/burst2.jpg"), str(photos / "a/sunset_small.jpg")
    plan = make_plan(got.report_path, "move", str(tmp_path / "dupes"))
    assert [op.path for op in plan.operations] == [small]
    assert refusals(plan)[burst2].startswith(f"{NOT_A_COPY}: verified now from the files: ")
    result = apply_plan(plan, str(tmp_path / "j.jsonl"))
    assert [op.path for op in result.done] == [small] and Path(burst2).exists()
    # the report says which files apply verifies (its dedupe compared no pictures)
    assert sorted(p for g in rep["groups"] for p in g["verify_at_apply"]) == [small, burst2]


def test_an_index_without_recorded_pairs_is_verified_at_apply(tmp_path: Path) -> None:
    photos, first = simple_library(tmp_path)
    db = sqlite3.connect(tmp_path / "index" / "catalog.sqlite")
    db.execute("DROP TABLE IF EXISTS verified_pairs")  # as an older version left it
    db.commit()
    db.close()
    plan = make_plan(first.report_path, "move", str(tmp_path / "dupes"))
    assert plan.refused == [] and len(plan.operations) == first.report["files_removable"] == 3


def test_a_pair_that_cannot_be_verified_is_not_grouped_nor_removed(tmp_path: Path) -> None:
    """An image unreadable at dedupe time: its pair is match not_verified in report.json (a
    report the schema accepts), in no group even with other shots grouped, and apply
    removes nothing; a not_verified verdict recorded in the index is no copy either."""
    import jsonschema

    from imgsim_index.report.contract import report_schema
    from imgsim_index.report.html import review_data
    from imgsim_index.report.json_report import near_miss_text

    photos, index = make_library(tmp_path, [Img("a/sunset.jpg", 0, (120, 90)),
                                            Img("a/sunset_small.jpg", 0, (60, 45))])
    small = photos / "a/sunset_small.jpg"
    small.write_bytes(b"\xff\xd8 not a jpeg any more")
    for more in ({}, {"group_near_misses": True}):
        got = run_dedupe(tmp_path, index, **more)
        rep = json.loads(Path(got.report_path).read_text())
        jsonschema.Draft202012Validator(report_schema()).validate(rep)
        [near] = rep["near_misses"]
        assert near["match"] == "not_verified", near
        assert near["evidence"].startswith("could not read it for verification ("), near
        assert rep["similar_pairs"] == [] and rep["groups"] == [], more
        assert rep["verification"]["not_verified"] == 1
        assert near_miss_text(rep) == "0 other shots and 1 pair not verified"
        assert [n["match"] for n in review_data(rep)["near_misses"]] == ["not_verified"]
        plan = make_plan(got.report_path, "move", str(tmp_path / "dupes"))
        assert plan.operations == [] and plan.refused == []



def test_a_not_verified_pair_recorded_in_the_index_is_no_copy(tmp_path: Path) -> None:
    """Two other shots with one vector, their pair recorded in the index as not_verified
    (with the rows' digests) and a report forged to remove one: apply verifies the files
    and refuses, the record joins nothing."""
    photos, index = make_library(tmp_path, BURST)
    got = run_dedupe(tmp_path, index)
    burst1, burst2 = str(photos / "c/burst1.jpg"), str(photos / "c/burst2.jpg")
    db = sqlite3.connect(index / "catalog.sqlite")
    (a, digest_a), (b, digest_b) = db.execute(
        "SELECT id, digest FROM images ORDER BY id").fetchall()
    db.execute("INSERT INTO verified_pairs VALUES (?, ?, 'not_verified', ?, ?)",
               (a, b, digest_a, digest_b))
    db.commit()
    db.close()
    before = Path(burst2).read_bytes()

    def forge(rep: dict[str, Any]) -> None:
        rep["groups"] = [{"group": 0, "size": 2, "keeper": burst1,
                          "members": [{**member(burst1), "role": "keep"}, member(burst2)],
                          "removable": [burst2], "bytes_removable": 1}]

    edit_report(got.report_path, forge)
    plan = make_plan(got.report_path, "move", str(tmp_path / "dupes"))
    assert plan.operations == []
    assert refusals(plan)[burst2].startswith(f"{NOT_A_COPY}: verified now from the files: ")
    apply_plan(plan, str(tmp_path / "j.jsonl"))
    assert Path(burst2).read_bytes() == before
