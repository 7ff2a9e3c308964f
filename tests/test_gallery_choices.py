"""report.html's "export my choices" and `apply REPORT --plan FILE`: choices narrow a report,
never widen it, and still go through apply's checks and journal."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from library_fixture import simple_library

from imgsim_index.cli import cli

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync"]


def choices(report: dict[str, Any], groups: list[dict[str, Any]]) -> dict[str, Any]:
    return {"format": "imgsim-index-choices", "version": 1,
            "report_timestamp": report["timestamp"], "groups": groups}


def group_of(report: dict[str, Any], keeper: str) -> int:
    return int(next(g["group"] for g in report["groups"] if g["keeper"] == keeper))


def apply_cli(*args: str) -> Any:
    return CliRunner().invoke(cli, ["apply", *args], catch_exceptions=False)


def reviewed_reports(report_path: str) -> list[str]:
    return sorted(p for p in os.listdir(os.path.dirname(report_path))
                  if p.startswith("report-reviewed-"))


def expect_narrowed_move(photos: Path, moved: Path) -> None:
    """Sunset group with "b/sunset copy.jpg" unticked; dog group's keeper changed to dog-2."""
    for gone in ("a/sunset_small.jpg", "a/dog.jpg"):
        assert not (photos / gone).exists()
        assert (moved / "photos" / gone).is_file()
    for kept in ("a/sunset.jpg", "b/sunset copy.jpg", "b/dog-2.jpg", "a/cat.jpg", "b/tree.jpg"):
        assert (photos / kept).is_file()
    assert sorted(str(p.relative_to(moved)) for p in moved.rglob("*") if p.is_file()) == \
        ["photos/a/dog.jpg", "photos/a/sunset_small.jpg"]


def test_plan_unticks_one_file_and_changes_one_keeper(tmp_path: Path) -> None:
    photos, result = simple_library(tmp_path)
    report = result.report
    sunset, dog = str(photos / "a/sunset.jpg"), str(photos / "a/dog.jpg")
    plan = tmp_path / "choices.json"
    plan.write_text(json.dumps(choices(report, [
        {"group": group_of(report, sunset), "keeper": sunset,
         "remove": [str(photos / "a/sunset_small.jpg")]},
        {"group": group_of(report, dog), "keeper": str(photos / "b/dog-2.jpg"),
         "remove": [dog]},
    ])))
    moved = tmp_path / "moved"
    run = apply_cli(result.report_path, "--plan", str(plan), "--move-to", str(moved))
    assert run.exit_code == 0, run.output
    assert "Dry run: would move 2 files" in run.stdout and not moved.exists()
    run = apply_cli(result.report_path, "--plan", str(plan), "--move-to", str(moved), "--yes",
                    "-q")
    assert run.exit_code == 0, run.output
    assert "Done: moved 2 files" in run.stdout and "0 refused" in run.stdout
    expect_narrowed_move(photos, moved)
    reviewed = reviewed_reports(result.report_path)
    assert len(reviewed) == 1  # written by the run that acts; the dry run writes none
    data = json.loads(Path(os.path.dirname(result.report_path), reviewed[-1]).read_text())
    assert data["files_removable"] == 2 and data["reviewed_from"] == "report.json"
    journal = run.stdout.split("Undo with: imgsim-index undo ")[1].strip().strip("'")
    assert CliRunner().invoke(cli, ["undo", journal, "-q"]).exit_code == 0
    assert (photos / "a/dog.jpg").is_file() and (photos / "a/sunset_small.jpg").is_file()


@pytest.mark.parametrize("change, reason", [
    (lambda p, s, d: {"group": s, "keeper": str(p / "a/sunset.jpg"),
                      "remove": [str(p / "a/cat.jpg")]},
     "a/cat.jpg cannot be removed from group {s}: it is not removable there in the report; "
     "choices may only narrow the report"),
    (lambda p, s, d: {"group": d, "keeper": str(p / "a/sunset.jpg"), "remove": []},
     "a/sunset.jpg is not a member of group {d}; a keeper must be one of its group's files"),
    (lambda p, s, d: {"group": s, "keeper": str(p / "a/sunset.jpg"),
                      "remove": [str(p / "a/sunset.jpg")]},
     "a/sunset.jpg cannot be removed from group {s}: it is its keeper; "
     "choices may only narrow the report"),
    (lambda p, s, d: {"group": 99, "keeper": str(p / "a/sunset.jpg"), "remove": []},
     "the report has no group 99"),
])
def test_plan_that_widens_is_refused_with_a_reason(tmp_path: Path, change: Any,
                                                   reason: str) -> None:
    photos, result = simple_library(tmp_path)
    report = result.report
    s = group_of(report, str(photos / "a/sunset.jpg"))
    d = group_of(report, str(photos / "a/dog.jpg"))
    plan = tmp_path / "choices.json"
    plan.write_text(json.dumps(choices(report, [change(photos, s, d)])))
    run = apply_cli(result.report_path, "--plan", str(plan), "--move-to", str(tmp_path / "m"),
                    "--yes")
    assert run.exit_code == 1
    lines = run.output.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"Error: --plan {plan}: ")
    assert lines[0].endswith(reason.format(s=s, d=d))
    assert not (tmp_path / "m").exists() and not reviewed_reports(result.report_path)


def test_plan_from_another_report_is_refused(tmp_path: Path) -> None:
    photos, result = simple_library(tmp_path)
    plan = tmp_path / "choices.json"
    plan.write_text(json.dumps({**choices(result.report, []), "report_timestamp": "other"}))
    run = apply_cli(result.report_path, "--plan", str(plan), "--move-to", str(tmp_path / "m"))
    assert run.exit_code == 1
    assert (f"was exported from the report of other, not this one "
            f"({result.report['timestamp']})") in run.output


@pytest.mark.skipif(not os.path.exists(CHROMIUM),
                    reason="chromium is not installed at /usr/bin/chromium: run "
                           "`bash scripts/install_browser.sh` to test the gallery in a browser")
def test_gallery_untick_change_keeper_export_then_apply(tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="the gallery choices test needs the playwright package")
    photos, result = simple_library(tmp_path)
    assert result.gallery_path
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(accept_downloads=True)
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(Path(result.gallery_path).as_uri())
        page.wait_for_selector("body[data-choices='1']")
        assert "your choices: 3 files to remove" in page.inner_text("#choices-info")
        page.uncheck(f'input.choice-remove[data-path="{photos / "b/sunset copy.jpg"}"]')
        page.check(f'input.choice-keeper[data-path="{photos / "b/dog-2.jpg"}"]')
        assert "your choices: 2 files to remove" in page.inner_text("#choices-info")
        assert page.is_checked(f'input.choice-remove[data-path="{photos / "a/dog.jpg"}"]')
        assert page.is_disabled(f'input.choice-remove[data-path="{photos / "b/dog-2.jpg"}"]')
        with page.expect_download() as info:
            page.click("#export-choices")
        saved = tmp_path / "exported.json"
        info.value.save_as(saved)
        assert info.value.suggested_filename.startswith("choices-")
        browser.close()
    assert errors == []
    plan = json.loads(saved.read_text())
    report = result.report
    sunset, dog = str(photos / "a/sunset.jpg"), str(photos / "a/dog.jpg")
    assert plan == choices(report, sorted([
        {"group": group_of(report, sunset), "keeper": sunset,
         "remove": [str(photos / "a/sunset_small.jpg")]},
        {"group": group_of(report, dog), "keeper": str(photos / "b/dog-2.jpg"),
         "remove": [dog]},
    ], key=lambda g: [x["group"] for x in plan["groups"]].index(g["group"])))
    moved = tmp_path / "moved"
    run = apply_cli(result.report_path, "--plan", str(saved), "--move-to", str(moved), "--yes",
                    "-q")
    assert run.exit_code == 0, run.output
    expect_narrowed_move(photos, moved)
