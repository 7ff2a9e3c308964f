"""apply acts only on files the index shows to be verified copies of their keepers, and the
report's files_removable is what apply does (no CNN needed: hand-made vectors, real files,
real verification)."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from library_fixture import DIM, Img, make_library, run_dedupe, simple_library
from PIL import Image

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


def _crop_library(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    """A photo (PNG), the photo with a ball in its lower right corner (PNG) and a JPEG crop
    of the photo that leaves the corner out: the crop is a copy of both, the two are other
    shots. One vector for all three: every pair is a candidate."""
    from benchmarks.hard_edits import sample

    rgb = sample("chelsea")
    h, w = rgb.shape[:2]
    ball = rgb.copy()
    yy, xx = np.mgrid[0:h, 0:w]
    ball[(xx - (w - 30)) ** 2 + (yy - (h - 30)) ** 2 <= 12 ** 2] = (30, 140, 230)
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(rgb).save(src / "photo.png")
    Image.fromarray(ball).save(src / "ball.png")
    Image.fromarray(rgb[: int(h * 0.78), : int(w * 0.82)]).save(src / "crop.jpg", quality=92)
    photos, index = make_library(tmp_path, [
        Img(name, 0, same_bytes_as=str(src / name))
        for name in ("photo.png", "ball.png", "crop.jpg")])
    return photos, index, {k: str(photos / f"{k}.{e}")
                           for k, e in (("photo", "png"), ("ball", "png"), ("crop", "jpg"))}


def test_a_crop_stands_for_no_picture_it_was_cut_from(tmp_path: Path) -> None:
    """The crop is a copy of the photo and of the ball frame, which are other shots of each
    other. Before, with --keep original (JPEG over PNG) the crop was the keeper and both
    whole pictures were removable: apply deleted the ball frame, which no file left shows,
    and the rest of the photo. Now the keeper is a whole picture, the crop goes, and the
    other whole picture stays: only the crop joins it to the keeper."""
    from imgsim_index.cli.dedupe_cmd import kept_line
    from imgsim_index.groups.verified import THROUGH_CROP

    photos, index, f = _crop_library(tmp_path)
    got = run_dedupe(tmp_path, index, keep="original")
    [group] = got.report["groups"]
    assert group["keeper"] in (f["photo"], f["ball"])
    assert group["keep_reason"].startswith("showing the whole picture: ")
    assert group["removable"] == [f["crop"]] and got.report["files_removable"] == 1
    other = f["ball"] if group["keeper"] == f["photo"] else f["photo"]
    assert group["not_removable"] == [{"path": other,
                                       "reason": f"{NOT_A_COPY}: {THROUGH_CROP}"}]
    assert kept_line(got.report) == (
        "Apply leaves 1 of the 2 photos beyond one per group: 1 is not a verified copy of "
        "its keeper (report.json says why under not_removable).")
    plan = make_plan(got.report_path, "delete", None)
    result = apply_plan(plan, str(tmp_path / "j.jsonl"))
    assert [op.path for op in result.done] == [f["crop"]]
    assert Path(f["photo"]).exists() and Path(f["ball"]).exists()


def test_a_report_that_keeps_the_crop_removes_no_whole_picture(tmp_path: Path) -> None:
    """A report edited to keep the crop and remove both whole pictures (what dedupe chose
    before): the index shows no chain on which the crop stands for them, so apply verifies
    the files now, and refuses both (the crop lacks part of each); the same where the pairs
    were recorded by a version that did not say which image lacks what (no pair_lacks)."""
    from imgsim_index.groups.verified import KEEPER_LACKS

    photos, index, f = _crop_library(tmp_path)
    got = run_dedupe(tmp_path, index, keep="original")

    def keep_crop(rep: dict[str, Any]) -> None:
        rep["groups"] = [{"group": 0, "size": 3, "keeper": f["crop"],
                          "members": [{**member(f["crop"]), "role": "keep"},
                                      member(f["photo"]), member(f["ball"])],
                          "removable": [f["photo"], f["ball"]], "bytes_removable": 1}]

    edit_report(got.report_path, keep_crop)
    before = {k: Path(v).read_bytes() for k, v in f.items()}
    for recorded in (True, False):
        if not recorded:  # as a version that did not say left them
            db = sqlite3.connect(index / "catalog.sqlite")
            db.execute("DELETE FROM pair_lacks")
            db.commit()
            db.close()
        plan = make_plan(got.report_path, "delete", None)
        assert plan.operations == []
        for path in (f["photo"], f["ball"]):
            assert refusals(plan)[path].startswith(
                f"{NOT_A_COPY}: verified now from the files: {KEEPER_LACKS} (B cropped "), \
                refusals(plan)
        apply_plan(plan, str(tmp_path / f"j-{recorded}.jsonl"))
        assert {k: Path(v).read_bytes() for k, v in f.items()} == before


def test_which_image_of_a_copy_lacks_part_of_the_other() -> None:
    """lacks(): from the shares of each content box the other's leaves out (above 0.5% and
    a band of half a pixel along the smaller box's edge), and the image that carries a
    caption."""
    from imgsim_index.verify.verdict import LACKS_A, LACKS_B, lacks, swapped

    assert lacks({}) == 0
    assert lacks({"lacks_a": 0.0, "lacks_b": 0.19}) == LACKS_B
    assert lacks({"lacks_a": 0.02, "lacks_b": 0.0}) == LACKS_A
    assert lacks({"lacks_a": 0.02, "lacks_b": 0.02}) == LACKS_A | LACKS_B
    assert lacks({"lacks_a": 0.004, "lacks_b": 0.005}) == 0
    assert lacks({"lacks_a": 0.009, "lacks_edge": 0.02}) == 0  # 0.5 px of a 100 px box
    assert lacks({"lacks_a": 0.011, "lacks_edge": 0.02}) == LACKS_A
    assert lacks({"text_in": 2.0}) == LACKS_B and lacks({"text_in": 1.0}) == LACKS_A
    assert swapped(LACKS_A) == LACKS_B and swapped(LACKS_B) == LACKS_A
    assert swapped(None) is None and swapped(LACKS_A | LACKS_B) == LACKS_A | LACKS_B


@pytest.mark.parametrize("turn", [2, 5])
@pytest.mark.parametrize("order", ["original first", "turned first"])
def test_a_turned_copys_filled_corners_are_what_it_lacks(turn: int, order: str) -> None:
    """A photo and a copy turned by a few degrees with its corners filled black: the turned
    copy lacks the original's corners, in either order; its fill is no picture the
    original lacks (before, the turned frame's bounding box made the original look
    cropped, and the turned copy was kept over it)."""
    from benchmarks.hard_edits import jpeg, sample
    from imgsim_index.verify import matching as mt
    from imgsim_index.verify.verdict import LACKS_A, LACKS_B, lacks

    rgb = sample("chelsea")
    h, w = rgb.shape[:2]
    rot = cv2.getRotationMatrix2D((w / 2, h / 2), turn, 1.0)
    turned = jpeg(cv2.warpAffine(rgb, rot, (w, h), borderValue=(0, 0, 0)))
    a, b = (mt.describe(rgb), mt.describe(turned))
    if order == "turned first":
        a, b = b, a
    v = mt.compare(a, b)
    assert v.match == "copy", v.evidence
    assert lacks(v.numbers) == (LACKS_B if order == "original first" else LACKS_A), v.numbers


def test_a_catalog_whose_pairs_do_not_say_what_they_lack(tmp_path: Path) -> None:
    """What each pair lacks sits in a table of its own (pair_lacks, by the pair and its
    digests), so an older version still records pairs in verified_pairs as it did. A
    catalog without that table, read-only: its pairs read with lacks None; opened for
    writing, the table is made; an entry for other digests is another content's; a pair
    found to be other shots goes from both."""
    from imgsim_index.index.catalog import Catalog, VerifiedPair

    path = str(tmp_path / "catalog.sqlite")
    cat = Catalog(path)
    cat.record_verified([VerifiedPair(1, 2, "copy", "d1", "d2", 2)], [])
    cat.close()
    db = sqlite3.connect(path)
    db.execute("DROP TABLE pair_lacks")
    db.execute("INSERT INTO verified_pairs VALUES (3, 4, 'copy', 'd3', 'd4')")  # 5 columns
    db.commit()
    db.close()
    ro = Catalog(path, readonly=True)
    assert ro.verified_pairs([1, 2]) == [VerifiedPair(1, 2, "copy", "d1", "d2", None)]
    ro.close()
    rw = Catalog(path)
    assert rw.verified_pairs([1, 2]) == [VerifiedPair(1, 2, "copy", "d1", "d2", None)]
    rw.record_verified([VerifiedPair(1, 2, "copy", "d1", "d2", 1)], [])
    assert rw.verified_pairs([1, 2]) == [VerifiedPair(1, 2, "copy", "d1", "d2", 1)]
    rw.db.execute("UPDATE verified_pairs SET digest_b = 'new' WHERE a = 1")
    assert rw.verified_pairs([1, 2]) == [VerifiedPair(1, 2, "copy", "d1", "new", None)]
    rw.record_verified([], [(1, 2)])
    assert rw.verified_pairs([1, 2, 3, 4]) == [VerifiedPair(3, 4, "copy", "d3", "d4", None)]
    rw.close()


def test_a_caption_hides_what_is_beneath_it(tmp_path: Path) -> None:
    """A photo, a frame of it in which a ball appeared under where a meme's letters go,
    and the meme copy of the photo: the meme is a copy of both (its letters cover the
    ball), the photo and the frame are other shots. The meme carries the text (text_in),
    so it stands for neither: it is the one file that goes, whatever the policy picks."""
    from benchmarks.hard_edits import ball_frames, jpeg, meme, sample
    from imgsim_index.groups.verified import THROUGH_CROP

    rgb = sample("coffee")
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(rgb).save(src / "photo.png")
    Image.fromarray(ball_frames(rgb, 201)[0]).save(src / "frame.png")
    Image.fromarray(jpeg(meme(rgb))).save(src / "meme.jpg", quality=95)
    photos, index = make_library(tmp_path, [Img(name, 0, same_bytes_as=str(src / name))
                                            for name in ("photo.png", "frame.png", "meme.jpg")])
    f = {name: str(photos / name) for name in ("photo.png", "frame.png", "meme.jpg")}
    for keep in ("original", "highest-resolution"):
        got = run_dedupe(tmp_path, index, keep=keep)
        [group] = got.report["groups"]
        assert group["keeper"] in (f["photo.png"], f["frame.png"]), keep
        assert group["removable"] == [f["meme.jpg"]], keep
        other = f["frame.png"] if group["keeper"] == f["photo.png"] else f["photo.png"]
        assert group["not_removable"] == [{"path": other,
                                           "reason": f"{NOT_A_COPY}: {THROUGH_CROP}"}]


@pytest.mark.parametrize("order", [("photo.jpg", "turned.jpg"), ("turned.jpg", "photo.jpg")])
def test_a_turned_copy_is_no_keeper_over_its_photo(tmp_path: Path, order: tuple[str, ...]
                                                   ) -> None:
    """A photo and a copy of it turned by 8 degrees, corners filled black (older, so the
    policies `oldest` and `original` would pick it): the photo is kept, in either order
    of indexing, and the turned copy goes. Before, the turned frame made the photo look
    cropped: the turned copy was kept and apply deleted the photo's corners."""
    from benchmarks.hard_edits import sample

    rgb = sample("chelsea")
    h, w = rgb.shape[:2]
    turned = cv2.warpAffine(rgb, cv2.getRotationMatrix2D((w / 2, h / 2), 8, 1.0), (w, h),
                            borderValue=(0, 0, 0))
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(rgb).save(src / "photo.jpg", quality=95)
    Image.fromarray(turned).save(src / "turned.jpg", quality=95)
    photos, index = make_library(tmp_path, [
        Img(name, 0, same_bytes_as=str(src / name),
            mtime=1_400_000_000 if name == "turned.jpg" else 1_600_000_000)
        for name in order])
    for keep in ("oldest", "original"):
        [group] = run_dedupe(tmp_path, index, keep=keep).report["groups"]
        assert group["keeper"] == str(photos / "photo.jpg"), (keep, group["keep_reason"])
        assert group["removable"] == [str(photos / "turned.jpg")]


def test_the_keeper_is_the_picture_most_copies_show_whole() -> None:
    """whole_rank on hand-made verdicts: a crop steps to the photo, the photo and its
    re-encoded copy show all of each other, a turned copy whose fill was not seen and the
    photo seem to lack each other's corners: the photo's set ranks first (3 rows can go
    for it), the turned copy 1, the crop 0; pairs joined through others say nothing."""
    from imgsim_index.groups.verified import whole_rank
    from imgsim_index.search import Pairs
    from imgsim_index.verify import SKIPPED_EVIDENCE, Verdicts
    from imgsim_index.verify.verdict import Verdict

    crop, photo, jpeg, turned = 0, 1, 2, 3
    pairs = Pairs(np.array([crop, photo, photo, crop]), np.array([photo, jpeg, turned, turned]),
                  np.ones(4))
    verdicts = Verdicts([Verdict("copy", "A cropped 10%", {"lacks_a": 0.19, "lacks_b": 0.0}),
                         Verdict("copy", "same picture", {}),
                         Verdict("copy", "turned", {"lacks_a": 0.02, "lacks_b": 0.02}),
                         Verdict("copy", SKIPPED_EVIDENCE)])
    assert whole_rank(pairs, verdicts) == {crop: 0, photo: 3, jpeg: 3, turned: 1}


def test_a_member_only_a_partial_copy_joins_is_compared_with_its_keeper(tmp_path: Path
                                                                        ) -> None:
    """direct_copies: a crop that only a turned copy joined to the photo (the walk never
    compared it with the photo) is compared with its keeper itself; a copy of which the
    keeper lacks nothing is returned to record, with the pair's lacks in id order; the
    keeper a crop of the member is no such copy."""
    from benchmarks.hard_edits import sample
    from imgsim_index.groups.keep import GroupDecision
    from imgsim_index.groups.verified import THROUGH_CROP, direct_copies
    from imgsim_index.index.catalog import Catalog
    from imgsim_index.verify import VerifySettings
    from imgsim_index.verify.verdict import LACKS_A, LACKS_B

    rgb = sample("chelsea")
    h, w = rgb.shape[:2]
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(rgb).save(src / "photo.png")
    Image.fromarray(rgb[: int(h * 0.9), : int(w * 0.9)]).save(src / "crop.jpg", quality=92)
    photos, index = make_library(tmp_path, [Img(n, 0, same_bytes_as=str(src / n))
                                            for n in ("crop.jpg", "photo.png")])
    cat = Catalog(str(index / "catalog.sqlite"), readonly=True)
    rows = sorted(cat.rows("WHERE status = 'embedded'"), key=lambda r: r.path)
    cat.close()
    crop, photo = (next(k for k, r in enumerate(rows) if r.path.endswith(n))
                   for n in ("crop.jpg", "photo.png"))

    def decision(member: int, keeper: int) -> GroupDecision:
        return GroupDecision(np.array(sorted((member, keeper))), keeper, np.zeros(2, bool),
                             np.zeros(2, bool), [], None,
                             not_removable={member: f"{NOT_A_COPY}: {THROUGH_CROP}"})

    [pair] = direct_copies(rows, [decision(crop, photo)], VerifySettings(enabled=True))
    assert (pair.a, pair.b) == tuple(sorted((rows[crop].id, rows[photo].id)))
    assert pair.match == "copy"
    assert pair.lacks == (LACKS_A if pair.a == rows[crop].id else LACKS_B)
    assert direct_copies(rows, [decision(photo, crop)], VerifySettings(enabled=True)) == []
