"""One review UI, two ways to serve it: report.html (data embedded) and the `serve` page (data
from GET /v1/review) show the same things from the same assets, in real Chromium.

The library: a photo, a half-size re-encoded copy of it (a copy pair), the photo with a
subject moved (another shot of both), a corrupt .jpg (unreadable) and a .txt (skipped).
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from imgsim_index.report.html import render_page, review_data
from imgsim_index.report.units import human_bytes
from tests.test_html import dedupe_report, write_shots
from tests.test_serve import running_server

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync"]
needs_browser = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason="chromium is not installed at /usr/bin/chromium: run `bash scripts/install_browser.sh` "
           "to test the review page in a headless browser")


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], Path]:
    """(root, report, report.json path) of a real dedupe over the generated library."""
    root = tmp_path_factory.mktemp("review")
    d = root / "photos"
    write_shots(d)
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is no JPEG" * 20)
    (d / "notes.txt").write_text("not a picture")
    report_path = dedupe_report(d, root)
    return root, json.loads(report_path.read_text()), report_path


def test_review_data_carries_what_the_page_shows(
        library: tuple[Path, dict[str, Any], Path]) -> None:
    root, report, _ = library
    data = review_data(report)
    [group] = data["groups"]
    assert group["keep_reason"] and group["keep_reason"] == report["groups"][0]["keep_reason"]
    copy = next(m for m in group["members"] if m["role"] == "remove")
    assert copy["match"] == "copy" and "resized to 50%" in copy["evidence"]
    assert data["near_misses"] and all(n["match"] == "other_shot" for n in data["near_misses"])
    # the match is shown beside the evidence: the evidence does not say it again
    assert not any(n["evidence"].startswith("other shot") for n in data["near_misses"])
    assert [Path(e["path"]).name for e in data["errors"]] == ["broken.jpg"]
    assert data["errors_total"] == 1 and data["errors"][0]["error"]
    assert [Path(s["path"]).name for s in data["skipped"]] == ["notes.txt"]
    assert data["skipped_total"] == 1 and sum(data["skipped_counts"].values()) == 1


def test_serve_answers_the_review_data_the_icon_and_every_thumbnail(
        library: tuple[Path, dict[str, Any], Path]) -> None:
    root, report, report_path = library
    with running_server("--index", str(root / "idx"), "--output", str(root / "out"),
                        "--decode-slots", "1") as (url, _):
        got = httpx.get(f"{url}/v1/review", timeout=60).json()
        assert got["path"] == str(report_path)
        # the same data report.html embeds, its previews from /v1/thumb
        want = review_data(report, lambda p: "/v1/thumb?path=" + urllib.parse.quote(p, safe=""))
        assert got["review"] == json.loads(json.dumps(want))
        thumbs = [m["thumb"] for g in got["review"]["groups"] for m in g["members"]]
        icon = httpx.get(f"{url}/favicon.ico", timeout=10)
        assert icon.status_code == 200 and icon.headers["content-type"] == "image/svg+xml"
        # more thumbnails at once than decoding slots: each waits its turn, none gets 429
        with httpx.Client(base_url=url, timeout=60) as client:
            import concurrent.futures

            with concurrent.futures.ThreadPoolExecutor(6) as pool:
                codes = list(pool.map(lambda t: client.get(t).status_code, thumbs * 4))
        assert codes == [200] * len(thumbs) * 4


def test_page_template_keeps_a_placeholder_in_a_file_name_as_text() -> None:
    data = {"groups": [], "summary": [["Folders", "/p/{{SCRIPT}}"]]}
    page = render_page("t", data)
    assert page.count("<script>") == 1 and "/p/{{SCRIPT}}" in page


# -- in Chromium --------------------------------------------------------------------------
class Watch:
    """A page's console errors, uncaught errors, failed requests and error responses."""

    def __init__(self, page: Any) -> None:
        self.problems: list[str] = []
        page.on("console", lambda m: self.problems.append(f"console {m.type}: {m.text} "
                                                          f"{m.location.get('url')}")
                if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda e: self.problems.append(f"pageerror: {e}"))
        page.on("requestfailed", lambda r: self.problems.append(f"failed: {r.url}"))
        page.on("response", lambda r: self.problems.append(f"{r.status}: {r.url}")
                if r.status >= 400 else None)


def wait_for_images(page: Any) -> None:
    # polled from here: the page's CSP forbids the eval that wait_for_function needs
    for _ in range(400):
        if page.evaluate("[...document.images].every(i => i.complete && i.naturalWidth > 0)"):
            return
        page.wait_for_timeout(50)
    raise AssertionError("thumbnails did not load: " + str(page.evaluate(
        "[...document.images].filter(i => !i.naturalWidth).map(i => i.src)")))


def check_page(page: Any, report: dict[str, Any], shot: Path) -> None:
    """What the review page must show for the one group, its near misses and the files
    left aside, whichever way it was served."""
    page.wait_for_selector("body[data-ready='1']")
    page.evaluate("document.querySelectorAll('img').forEach(i => { i.loading = 'eager'; })")
    wait_for_images(page)
    [g] = report["groups"]
    sec = page.locator(f"section.group[data-group='{g['group']}']")
    assert g["keep_reason"] in sec.locator(".keep-reason").inner_text()
    copy = next(m for m in g["members"] if m["role"] == "remove")
    card = sec.locator("figure.member", has=page.locator(f"[title='{copy['path']}']"))
    text = card.inner_text()
    assert card.locator(".match").inner_text() == "copy"
    [row] = report["similar_pairs"]
    assert row["evidence"] in text  # the human evidence line
    assert f"score {copy['score_to_keeper']:.6f}" in text
    assert human_bytes(copy["size"]) in text and "bytes" not in text
    assert card.locator(".path .name").inner_text() == Path(copy["path"]).name
    # the name is laid out on one line: a path wraps at its folder separators
    assert page.evaluate("[...document.querySelectorAll('.path .name')]"
                         ".every(n => n.getClientRects().length === 1)")
    near = page.locator("#near-misses")
    assert near.is_visible() and "Other shots of the same scene" in near.inner_text()
    assert near.locator(".match-other_shot").count() == len(report["near_misses"]) >= 1
    words = report["near_misses"][0]["evidence"].removeprefix("other shot: ")
    assert words in near.inner_text() and "other shot: other shot" not in near.inner_text()
    unreadable = page.locator("#unreadable")
    assert unreadable.is_visible()
    [err] = report["errors"]
    assert err["path"] in unreadable.locator(".path").first.get_attribute("title")
    skipped = page.locator("#skipped")
    assert skipped.is_visible() and "notes.txt" in skipped.inner_text()
    # the action bar leaves the end of the page visible
    page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
    bottom = page.evaluate("Math.max(...[...document.querySelectorAll("
                           "'main, section.box:not([hidden])')]"
                           ".map(e => e.getBoundingClientRect().bottom))")
    bar = page.evaluate("document.getElementById('actions').getBoundingClientRect().top")
    assert bottom <= bar + 0.5, (bottom, bar)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(shot), full_page=False)
    page.screenshot(path=str(shot.with_name(shot.stem + "-full.png")), full_page=True)
    print(f"screenshot: {shot}")


def keyboard_untick_the_copy(page: Any, report: dict[str, Any]) -> None:
    """j/k move between groups, l to the copy, x unticks it."""
    [g] = report["groups"]
    page.locator("body").press("j")
    page.locator("body").press("k")
    assert page.get_attribute("body", "data-current") == str(g["group"])
    assert "1 files to remove" in page.inner_text("#choices-info")
    page.locator("body").press("l")
    copy = next(m["path"] for m in g["members"] if m["role"] == "remove")
    assert page.get_attribute("body", "data-current-file") == copy
    page.locator("body").press("x")
    assert "0 files to remove" in page.inner_text("#choices-info")
    assert not page.is_checked(f'input.choice-remove[data-path="{copy}"]')
    page.locator("body").press("x")
    assert "1 files to remove" in page.inner_text("#choices-info")


@pytest.fixture
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="the review page test needs the playwright package")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@needs_browser
def test_both_pages_show_keeper_reason_match_evidence_near_misses_and_unreadable_files(
        library: tuple[Path, dict[str, Any], Path], browser: Any, tmp_path: Path) -> None:
    root, report, report_path = library
    # the static page, from a real dedupe
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    static = Watch(page)
    page.goto(report_path.with_name("report.html").as_uri())
    check_page(page, report, tmp_path / "static.png")
    assert page.locator("#export-choices").is_visible() and not page.locator("#apply").is_visible()
    keyboard_untick_the_copy(page, report)
    page.close()
    assert static.problems == []
    # the served page, from a real server
    [g] = report["groups"]
    copy = next(m["path"] for m in g["members"] if m["role"] == "remove")
    moved_to = root / "out" / "moved"
    with running_server("--index", str(root / "idx"), "--output", str(root / "out"),
                        "--decode-slots", "1") as (url, _):
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        served = Watch(page)
        page.goto(url + "/")
        check_page(page, report, tmp_path / "served.png")
        assert page.locator("#apply").is_visible() and not page.locator("#export-choices") \
            .is_visible()
        keyboard_untick_the_copy(page, report)
        page.fill("#move-to", str(moved_to))
        page.click("#apply")
        page.wait_for_selector("#status:has-text('Applied')")
        assert re.search(r"Applied: 1 files \(move\), freed \d+(\.\d)? KB",
                         page.inner_text("#status"))
        assert not Path(copy).exists()
        page.click("#undo")
        page.wait_for_selector("#status:has-text('Undone')")
        assert "Undone: 1 files restored" in page.inner_text("#status")
        assert Path(copy).is_file()
        page.close()
    assert served.problems == []
