"""report.html: self-contained, untrusted file names stay text, and it renders in a real browser.

The browser tests run Debian's chromium headless (scripts/install_browser.sh
installs it; CI does) and are skipped with a message where it is missing.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from library_fixture import Img, make_library, run_dedupe
from PIL import Image

from imgsim_index.report.html import PAGE_SIZE, _json_for_script, review_data, write_gallery

XSS_NAME = "<img src=x onerror=alert(1)>.jpg"
# a path may hold "</script>" through its folders: "<" / "script><img ...>" / "z.jpg"
XSS_FOLDERS = "</script><img src=y onerror=alert(2)>"
ODD_NAME = "quote\"apos'amp&lt;.jpg"


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts.append(data)


def parse(html: str) -> Tags:
    p = Tags()
    p.feed(html)
    return p


@pytest.fixture(scope="module")
def xss_gallery(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("xss")
    photos, index = make_library(root, [
        Img("normal.jpg", 0, (120, 90)),
        Img(XSS_NAME, 0, (60, 45)),
        Img("<" + XSS_FOLDERS[1:] + "/z.jpg", 1, (80, 60)),
        Img(ODD_NAME, 1, (40, 30)),
        Img("two/a.jpg", 1, (20, 15)),
        Img("single.jpg"),
    ])
    r = run_dedupe(root, index)
    return Path(r.gallery_path), r.report


def test_gallery_and_thumbnails_are_written_beside_the_report(
        xss_gallery: tuple[Path, dict[str, Any]]) -> None:
    page, report = xss_gallery
    assert page.name == "report.html" and (page.parent / "report.json").is_file()
    thumbs = sorted((page.parent / "thumbs").iterdir())
    assert len(thumbs) == sum(g["size"] for g in report["groups"]) == 5
    for t in thumbs:
        with Image.open(t) as im:
            assert im.format == "JPEG" and im.width <= 240 and im.height <= 180


def test_page_needs_no_network(xss_gallery: tuple[Path, dict[str, Any]]) -> None:
    html = xss_gallery[0].read_text(encoding="utf-8")
    assert not re.search(r"https?:|//[a-z]", html, re.I)
    tags = parse(html).tags
    assert not [t for t, a in tags if t in ("link", "iframe", "object", "embed", "img")]
    assert all("src" not in a for t, a in tags if t == "script")
    csp = next(a["content"] for t, a in tags if t == "meta" and a.get("http-equiv"))
    assert csp and "default-src 'none'" in csp and "'unsafe-inline'" not in csp


def test_untrusted_file_names_stay_text(xss_gallery: tuple[Path, dict[str, Any]]) -> None:
    page, report = xss_gallery
    html = page.read_text(encoding="utf-8")
    assert "<img src=x" not in html and "</script><img" not in html
    parsed = parse(html)
    assert [t for t, _ in parsed.tags].count("script") == 2  # the data block and the page script
    data = json.loads(parsed.scripts[0])
    paths = {m["path"] for g in data["groups"] for m in g["members"]}
    assert any(p.endswith("/" + XSS_NAME) for p in paths)
    assert any(XSS_FOLDERS in p for p in paths)
    assert any(p.endswith("/" + ODD_NAME) for p in paths)
    assert "innerHTML" not in html and "insertAdjacentHTML" not in html and "eval(" not in html


def test_json_for_script_escapes_markup() -> None:
    text = _json_for_script({"p": "</script><!-- & -->"})
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == {"p": "</script><!-- & -->"}


def test_gallery_data_sorts_groups_by_size_and_puts_the_keeper_first() -> None:
    report = synthetic_report([2, 5, 3])
    data = review_data(report)
    assert [len(g["members"]) for g in data["groups"]] == [5, 3, 2]
    assert all(g["members"][0]["role"] == "keep" for g in data["groups"])
    assert data["score_min"] <= report["threshold"] and data["page_size"] == PAGE_SIZE


def synthetic_report(sizes: list[int], threshold: float = 0.9) -> dict[str, Any]:
    """A report.json's groups without image files (the gallery then shows 'no preview')."""
    groups = []
    for g, n in enumerate(sizes):
        members: list[dict[str, Any]] = [
            {"path": f"/photos/g{g}/img_{k}.jpg", "size": 1000 + k, "mtime_ns": 10**18,
             "width": 64, "height": 48, "score_to_keeper": 1.0 if k == 0 else 0.95,
             "role": "keep" if k == 0 else "remove", "protected": False}
            for k in range(n)]
        groups.append({"group": g, "size": n, "keeper": members[0]["path"], "members": members,
                       "removable": [m["path"] for m in members[1:]],
                       "bytes_removable": sum(m["size"] for m in members[1:]),
                       "all_protected": False})
    return {"timestamp": "t", "folder_list": ["/photos"], "threshold": threshold,
            "groups": groups, "keep_policy": "highest-resolution", "protected_folders": []}


# -- in a real browser --------------------------------------------------------------------
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_browser = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not installed: run `bash scripts/install_browser.sh` (CI does) "
           "to run the HTML gallery in a headless browser")


def chromium(page: Path, profile: Path, *args: str, fragment: str = ""
             ) -> subprocess.CompletedProcess[str]:
    cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", "--disable-extensions", f"--user-data-dir={profile}",
           "--enable-logging=stderr", "--v=0", "--virtual-time-budget=10000", *args,
           page.resolve().as_uri() + fragment]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)


def console_messages(stderr: str) -> list[str]:
    """What the page logged: console output, uncaught errors, CSP violations."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


def rendered(page: Path, profile: Path, fragment: str = "") -> tuple[str, Tags]:
    run = chromium(page, profile, "--dump-dom", fragment=fragment)
    assert run.returncode == 0, run.stderr[-2000:]
    assert console_messages(run.stderr) == []
    return run.stdout, parse(run.stdout)


def rendered_ok(page: Path, profile: Path) -> tuple[str, Tags, dict[str, str | None]]:
    """The rendered page, its tags and its body's attributes, after a clean start."""
    dom, tags = rendered(page, profile)
    body = next(a for t, a in tags.tags if t == "body")
    assert body.get("data-ready") == "1" and "data-errors" not in body
    return dom, tags, body


@needs_browser
def test_browser_renders_every_group_and_names_as_text(
        xss_gallery: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    page, report = xss_gallery
    dom, tags, body = rendered_ok(page, tmp_path / "profile")
    sections = [a for t, a in tags.tags
                if t == "section" and "group" in str(a.get("class")).split()]
    assert len(sections) == len(report["groups"]) == 2
    assert body["data-groups-on-page"] == "2"
    imgs = [a["src"] for t, a in tags.tags if t == "img"]
    in_groups = parse(dom.split('id="near-misses"', 1)[0]).tags
    assert len([a for t, a in in_groups if t == "img"]) == 5
    assert len(imgs) == 5 + 2 * len(report["near_misses"][:200])
    assert all(str(s).startswith("thumbs/t") for s in imgs)
    assert "&lt;img src=x onerror=alert(1)&gt;.jpg" in dom
    assert "&lt;/script&gt;&lt;img src=y onerror=alert(2)&gt;/z.jpg" in dom
    assert 'src="x"' not in dom and 'src="y"' not in dom


@needs_browser
def test_browser_score_filter_hides_groups_outside_the_range(
        xss_gallery: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    page, report = xss_gallery
    # a group is shown while any of its removable members scores inside [min, max]
    scores = [[m["score_to_keeper"] for m in g["members"] if m["role"] != "keep"]
              for g in report["groups"]]
    best, worst = sorted(max(s) for s in scores), sorted(min(s) for s in scores)
    for fragment in (f"#min={(best[0] + best[1]) / 2:.6f}",
                     f"#max={(worst[0] + worst[1]) / 2:.6f}"):
        _, tags = rendered(page, tmp_path / "profile", fragment=fragment)
        body = next(a for t, a in tags.tags if t == "body")
        assert body["data-groups-shown"] == "1" and body["data-groups-on-page"] == "1", fragment


@needs_browser
def test_browser_screenshot(xss_gallery: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    page, _ = xss_gallery
    shot = tmp_path / "gallery.png"
    run = chromium(page, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,2000",
                   "--hide-scrollbars")
    assert run.returncode == 0 and console_messages(run.stderr) == []
    with Image.open(shot) as im:
        assert im.size == (1280, 2000)
        colors = im.convert("RGB").resize((64, 100)).getcolors(64 * 100)
        assert colors is not None and len(colors) > 20  # thumbnails and text, not a blank page
    keep = os.environ.get("IMGSIM_SCREENSHOT_DIR")
    if keep:  # CI keeps it as an artifact
        os.makedirs(keep, exist_ok=True)
        shutil.copy(shot, os.path.join(keep, "gallery.png"))


@needs_browser
def test_browser_paginates_ten_thousand_pairs(tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    write_gallery(synthetic_report([2] * 10_000), str(page), thumbnails=False)
    t = time.perf_counter()
    dom, tags = rendered(page, tmp_path / "profile")
    print(f"10,000 pairs: {page.stat().st_size / 1e6:.1f} MB page, "
          f"loaded and rendered in {time.perf_counter() - t:.2f} s (incl. browser start)")
    body = next(a for t, a in tags.tags if t == "body")
    assert body["data-groups-shown"] == "10000" and body["data-groups-on-page"] == str(PAGE_SIZE)
    assert len(re.findall(r'class="group[ "]', dom)) == PAGE_SIZE
    assert f"page 1 of {10_000 // PAGE_SIZE}" in dom and "10000 of 10000 groups" in dom
    _, tags = rendered(page, tmp_path / "profile", fragment="#page=200")
    body = next(a for t, a in tags.tags if t == "body")
    assert body["data-groups-on-page"] == str(PAGE_SIZE)


@needs_browser
def test_browser_shows_an_empty_report(tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    write_gallery(synthetic_report([]), str(page))
    dom, _ = rendered(page, tmp_path / "profile")
    assert "No duplicate groups at this threshold." in dom


# names that would reorder or hide text, and how the page must show them (as ascii() does)
BIDI_NAMES = {
    "/photos/g0/invoice\u202egpj.exe": "/photos/g0/invoice\\u202egpj.exe",
    "/photos/g0/\u202a\u202b\u202c\u202d.jpg": "/photos/g0/\\u202a\\u202b\\u202c\\u202d.jpg",
    "/photos/g0/\u2066\u2067\u2068\u2069.jpg": "/photos/g0/\\u2066\\u2067\\u2068\\u2069.jpg",
    "/photos/g0/mark\u200e\u200f.jpg": "/photos/g0/mark\\u200e\\u200f.jpg",
    "/photos/g0/line\nbreak\ttab\x1besc\\u202e.jpg":
        "/photos/g0/line\\nbreak\\ttab\\x1besc\\\\u202e.jpg",
    "/photos/g0/café \\ back.jpg": "/photos/g0/café \\ back.jpg",  # printable: as it is
}


@needs_browser
def test_browser_shows_control_and_bidi_characters_escaped(tmp_path: Path) -> None:
    report = synthetic_report([len(BIDI_NAMES)])
    report["folder_list"] = ["/photos/\u202eevil"]
    members = report["groups"][0]["members"]
    for m, name in zip(members, BIDI_NAMES, strict=True):
        m["path"] = name
    assert all(ascii(name)[1:-1] == shown for name, shown in BIDI_NAMES.items()
               if not name.isprintable())  # the same rule as the console's
    page = tmp_path / "report.html"
    write_gallery(report, str(page), thumbnails=False)
    dom, _ = rendered(page, tmp_path / "profile")
    paths = re.findall(r'<div class="path" title="([^"]*)">(.*?)</div>', dom, re.S)
    texts = [html.unescape(re.sub(r"<[^>]+>", "", t)) for _, t in paths]
    assert texts == list(BIDI_NAMES.values())
    assert [html.unescape(title) for title, _ in paths] == list(BIDI_NAMES.values())
    assert "<dd>/photos/\\u202eevil</dd>" in dom
    # what is shown: the page without its attributes (the choices script keeps each real
    # path in a data- attribute, which is never displayed, to write the exported plan)
    shown_text = re.sub(r'\s[\w-]+="[^"]*"', "", dom)
    for bad in ("\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068",
                "\u2069", "\u200e", "\u200f", "\x1b"):
        assert bad not in shown_text


# -- verdicts and near misses -------------------------------------------------------------
def write_shots(d: Path) -> None:
    """A photo, a half-size re-encoded copy of it and another moment (a subject moved)."""
    from tests.test_verify_stage import moved, photo

    d.mkdir(parents=True)
    base = photo(7)
    base.save(d / "base.png")
    base.resize((320, 240), Image.Resampling.LANCZOS).save(d / "small.jpg", quality=85)
    moved(base).save(d / "moved.png")


def dedupe_report(d: Path, root: Path) -> Path:
    """Index and dedupe folder `d` (index root/idx, reports under root/out); report.json."""
    from tests.conftest import cli_ok

    out = cli_ok("dedupe", str(d), "--index", str(root / "idx"), "--model", "efficientnet-lite0",
                 "--output", str(root / "out"), "--threshold", "0.5", "--verify-workers", "0",
                 "-q")
    line = next(x for x in out.splitlines() if x.startswith("Result JSON: "))
    return Path(line.removeprefix("Result JSON: "))


@pytest.fixture(scope="module")
def shots_gallery(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("shots")
    write_shots(root / "photos")
    report_path = dedupe_report(root / "photos", root)
    return report_path.with_name("report.html"), json.loads(report_path.read_text())


def test_gallery_data_carries_verdicts_and_near_misses(
        shots_gallery: tuple[Path, dict[str, Any]]) -> None:
    page, report = shots_gallery
    data = review_data(report)
    [group] = data["groups"]
    assert sorted(Path(m["path"]).name for m in group["members"]) == ["base.png", "small.jpg"]
    copy = group["members"][1]
    assert copy["match"] == "copy" and re.search(r"resized to 50%", copy["evidence"])
    assert sorted(Path(p).name for p in copy["pair"]) == ["base.png", "small.jpg"]
    assert "match" not in group["members"][0]  # the keeper
    near = data["near_misses"]
    assert data["near_misses_total"] == len(report["near_misses"]) == len(near) >= 1
    # both pairs of the two shots are compared: one other-shot verdict does not decide
    assert [n["match"] for n in near] == ["other_shot"] * 2
    # the page shows the match beside the evidence: the evidence does not say it again
    by_pair = {(r["image1"], r["image2"]): r["evidence"] for r in report["near_misses"]}
    assert all(by_pair[tuple(n["pair"])] == "other shot: " + n["evidence"] for n in near)
    assert all("moved.png" in (Path(n["a"]["path"]).name, Path(n["b"]["path"]).name)
               for n in near)
    # the near misses' images get thumbnails too
    thumbs = sorted(p.name for p in (page.parent / "thumbs").iterdir())
    assert len(thumbs) == 3
    v = report["verification"]
    grouped = (f" {v['skipped_as_grouped']} pairs already joined through copies, not compared."
               if v["skipped_as_grouped"] else "")
    apart = (f" {v['skipped_as_other_shot']} pair{'s' if v['skipped_as_other_shot'] > 1 else ''}"
             " between groups already shown to be other shots, not compared."
             if v["skipped_as_other_shot"] else "")
    assert ("Verification", f"on: {v['compared']} pairs compared on their pixels.{grouped}"
            f"{apart} Listed apart: {len(near)} other shots.") in data["summary"]


@needs_browser
def test_browser_shows_verdicts_and_near_misses_apart(
        shots_gallery: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    page, report = shots_gallery
    dom, _, body = rendered_ok(page, tmp_path / "profile")
    n = len(report["near_misses"])
    assert body["data-near-misses"] == str(n)
    text = re.sub(r"<[^>]+>", "", dom)
    assert (f"Other shots of the same scene: not proposed for removal ({n} pairs)") in text
    copy_row = next(r for r in report["similar_pairs"])
    assert (f'<span class="match match-copy">copy</span>{html.escape(copy_row["evidence"])}'
            in dom)
    for row in report["near_misses"]:
        words = html.escape(row["evidence"].removeprefix("other shot: "))
        assert f'<span class="match match-other_shot">other shot</span>{words}' in dom
    assert "other shot: other shot" not in text and "other shotother shot" not in text
    near = dom.split('id="near-misses"', 1)[1].split("</section>", 1)[0]
    assert near.count("<img") == 2 * n and "hidden" not in near.split(">", 1)[0]
    # the near misses are no group: nothing there can be ticked for removal
    assert "choice-remove" not in near
