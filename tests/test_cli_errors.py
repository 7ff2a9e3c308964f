"""Bad paths given to the CLI end in one line that names them, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import cli_main
from report_sample import sample_report

from imgsim_index.report.json_report import write_report


def cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    return cli_main(args, capsys)


def test_a_journal_that_is_not_text_is_named(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"\xff\xfe{")
    code, _, err = cli(["undo", str(bad)], capsys)
    assert (code, err) == (1, f"Error: {bad} is not an imgsim-index apply journal (not UTF-8 "
                              "text)\n")


def test_export_into_a_folder_that_does_not_exist_is_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "report.json"
    write_report(sample_report(), str(report))
    target = tmp_path / "missing" / "x.csv"
    code, _, err = cli(["export", str(report), "-o", str(target)], capsys)
    assert (code, err) == (1, f"Error: cannot write {target}: No such file or directory\n")
    assert not target.parent.exists()


def test_dedupe_refuses_an_output_it_cannot_write_before_any_work(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The output is checked first: a file where the results folder should be stops the
    run before the folder is scanned or an index made."""
    photos = tmp_path / "photos"
    photos.mkdir()
    blocker = tmp_path / "results"
    blocker.write_text("a file, not a folder")
    code, _, err = cli(["dedupe", str(photos), "--index", str(tmp_path / "idx"),
                        "--model", "efficientnet-lite0", "--output", str(blocker / "run")],
                       capsys)
    assert (code, err) == (1, f"Error: cannot write results to {blocker / 'run'}: {blocker} "
                              "is not a folder\n")
    assert not (tmp_path / "idx").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos", "results"]
