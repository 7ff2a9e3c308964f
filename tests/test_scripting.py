"""Scriptable output: dedupe --json on stdout (nothing else there), export as JSON / JSON Lines."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from library_fixture import THRESHOLD, simple_library

from imgsim_index.cli import main
from imgsim_index.report.export import CSV_COLUMNS


def test_dedupe_json_is_the_only_thing_on_stdout(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    photos, _ = simple_library(tmp_path)
    main(["dedupe", "--index", str(tmp_path / "index"), "--threshold", str(THRESHOLD),
          "--output", str(tmp_path / "out"), "--protect", str(photos), "--json"])
    out = capsys.readouterr().out
    got = json.loads(out)
    report = json.loads(Path(got["report_path"]).read_text())
    for key in ("total_images_in_folders", "number_of_similar_pairs", "number_of_unique_groups",
                "photos_to_remove", "files_removable", "bytes_removable", "threshold"):
        assert got[key] == report[key]
    assert (got["total_images_in_folders"], got["photos_to_remove"]) == (7, 3)
    assert (got["files_removable"], got["bytes_removable"]) == (0, 0)  # all protected
    assert Path(got["gallery_path"]).name == "report.html"
    assert Path(got["collage_path"]).is_file() and Path(got["output_dir"]).is_dir()
    assert got["skipped"] == {}


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_export_json_and_jsonl_hold_the_csv_rows(tmp_path: Path, fmt: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    _, r = simple_library(tmp_path)
    main(["export", r.report_path, "--format", "csv", "-o", "-"])
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    main(["export", r.report_path, "--format", fmt, "-o", "-"])
    out = capsys.readouterr().out
    objs = json.loads(out) if fmt == "json" else [json.loads(x) for x in out.splitlines()]
    assert len(objs) == len(table) == 5 and all(tuple(o) == CSV_COLUMNS for o in objs)
    for o, row in zip(objs, table, strict=True):
        assert {k: str(v) for k, v in o.items() if k != "protected"} == {
            k: v for k, v in row.items() if k != "protected"}
        assert o["protected"] is (row["protected"] == "yes")
    assert isinstance(objs[0]["size_bytes"], int)
    main(["export", r.report_path, "--format", fmt])
    saved = Path(r.report_path).with_suffix(f".{fmt}")
    assert saved.read_text() == out


def test_export_rows_carry_match_evidence_and_keep_reason(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, r = simple_library(tmp_path)
    report = json.loads(Path(r.report_path).read_text())
    main(["export", r.report_path, "--format", "json", "-o", "-"])
    objs = json.loads(capsys.readouterr().out)
    assert {"match", "evidence", "keep_reason"} <= set(CSV_COLUMNS)
    reasons = {g["group"]: g["keep_reason"] for g in report["groups"]}
    assert all(o["keep_reason"] == reasons[o["group"]] and o["keep_reason"] for o in objs)
    keepers = [o for o in objs if o["role"] == "keep"]
    assert keepers and all((o["match"], o["evidence"]) == ("", "") for o in keepers)
    pairs = {frozenset((p["image1"], p["image2"])): p for p in report["similar_pairs"]}
    for o in objs:
        if o["role"] == "keep":
            continue
        assert o["match"] in ("exact", "copy") and o["evidence"], o
        direct = pairs.get(frozenset((o["path"], o["keeper"])))
        if direct is not None:
            assert (o["match"], o["evidence"]) == (direct["match"], direct["evidence"])
        else:
            assert o["evidence"].startswith("to ")


def test_dedupe_says_where_its_default_index_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    photos, _ = simple_library(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    args = ["dedupe", str(photos), "--model", "efficientnet-lite0", "--threshold",
            str(THRESHOLD), "--output", str(tmp_path / "out"), "-q"]
    main(args)
    lines = capsys.readouterr().out.splitlines()
    assert (f"Index: created {work / 'imgsim-index'} (the default; choose another with "
            "--index DIR)") in lines
    main([*args, "--json"])
    got = json.loads(capsys.readouterr().out)
    assert (got["index_path"], got["index_created"]) == (str(work / "imgsim-index"), False)
    main(args)
    assert f"Index: {work / 'imgsim-index'}" in capsys.readouterr().out.splitlines()
