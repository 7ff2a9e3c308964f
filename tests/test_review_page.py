"""The review page in real Chromium (Playwright): change the choices, apply with move, undo."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from library_fixture import simple_library
from test_serve import running_server

CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM),
    reason="chromium is not installed at /usr/bin/chromium: run `bash scripts/install_browser.sh` "
           "to test the review page in a headless browser")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync"]


def test_review_untick_change_keeper_apply_move_and_undo(tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="the review page test needs the playwright package")
    photos, result = simple_library(tmp_path)
    groups = {g["keeper"]: g for g in result.report["groups"]}
    sunset, dog = str(photos / "a/sunset.jpg"), str(photos / "a/dog.jpg")
    assert groups[sunset]["removable"] == sorted([str(photos / "a/sunset_small.jpg"),
                                                  str(photos / "b/sunset copy.jpg")])
    assert groups[dog]["removable"] == [str(photos / "b/dog-2.jpg")]
    moved = tmp_path / "moved"
    with running_server("--index", str(tmp_path / "index"),
                        "--output", str(tmp_path / "results"),
                        "--move-root", str(moved)) as (url, _), \
            sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url + "/")
        page.wait_for_selector("body[data-ready='1']")
        assert page.locator("section.group").count() == 2
        assert page.locator("section.group figure img").count() == 5
        # polled from here: the page's CSP forbids the eval that wait_for_function needs
        for _ in range(200):
            if page.evaluate("[...document.querySelectorAll('section.group figure img')]"
                             ".every(i => i.complete && i.naturalWidth > 0)"):
                break
            page.wait_for_timeout(50)
        else:
            raise AssertionError("thumbnails did not load")
        page.uncheck(f'input.choice-remove[data-path="{photos / "b/sunset copy.jpg"}"]')
        page.check(f'input.choice-keeper[data-path="{photos / "b/dog-2.jpg"}"]')
        page.select_option("#action", "move")
        page.fill("#move-to", str(moved))
        page.click("#apply")
        page.wait_for_selector("#status:has-text('Applied')")
        assert "Applied: 2 files (move)" in page.inner_text("#status")
        assert not (photos / "a/sunset_small.jpg").exists()
        assert (moved / "photos/a/sunset_small.jpg").is_file()
        assert not (photos / "a/dog.jpg").exists()
        assert (moved / "photos/a/dog.jpg").is_file()
        for kept in ("a/sunset.jpg", "b/sunset copy.jpg", "b/dog-2.jpg", "a/cat.jpg"):
            assert (photos / kept).is_file()
        page.click("#undo")
        page.wait_for_selector("#status:has-text('Undone')")
        assert "Undone: 2 files restored" in page.inner_text("#status")
        browser.close()
    for name in ("a/sunset.jpg", "a/sunset_small.jpg", "b/sunset copy.jpg", "a/dog.jpg",
                 "b/dog-2.jpg", "a/cat.jpg", "b/tree.jpg"):
        assert (photos / name).is_file()
    assert not any(p.is_file() for p in moved.rglob("*"))
    assert errors == []
