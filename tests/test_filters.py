"""Nothing silent: every file under an input is listed, or skipped with its reason (hidden,
excluded, unsupported extension, too small); a build counts them and loads no model when
nothing is new."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgsim_index.embed.models.efficientnet import EFFICIENTNET_LITE0
from imgsim_index.errors import InputError
from imgsim_index.ingest.scan import ScanSettings, Skipped, scan_inputs, skipped_report
from imgsim_index.pipeline.build import BuildSettings, build_index


def _image(path: Path, w: int = 64, h: int = 48, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def _names(root: Path, paths: list[str]) -> list[str]:
    return [os.path.relpath(p, root) for p in paths]


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    _image(root / "a.jpg")
    _image(root / "trip" / "b.png", seed=1)
    _image(root / "trip" / "tiny.png", 8, 8, seed=2)
    _image(root / ".thumbnails" / "a.png", seed=3)
    _image(root / ".x.jpg", seed=4)
    _image(root / "@eaDir" / "a.jpg", seed=5)
    _image(root / "cache" / "c.jpg", seed=6)
    _image(root / "trip" / "draft.tmp.jpg", seed=7)
    (root / ".DS_Store").write_bytes(b"\0\0")
    (root / "Thumbs.db").write_bytes(b"\0")
    (root / "trip" / "desktop.ini").write_text("[x]")
    (root / "notes.txt").write_text("hello")
    (root / "trip" / "b.xmp").write_text("<x/>")
    return root


def test_defaults_skip_hidden_and_unsupported_and_list_every_skip(mixed: Path) -> None:
    scan = scan_inputs([str(mixed)])
    assert _names(mixed, [r.path for r in scan.refs]) == [
        "a.jpg", "cache/c.jpg", "trip/b.png", "trip/draft.tmp.jpg", "trip/tiny.png"]
    got = [(os.path.relpath(s.path, mixed), s.reason, s.folder) for s in scan.skipped]
    assert sorted(got) == sorted([
        (".DS_Store", "hidden", False), (".thumbnails", "hidden", True),
        (".x.jpg", "hidden", False), ("@eaDir", "hidden", True),
        ("Thumbs.db", "hidden", False), ("notes.txt", "unsupported extension", False),
        ("trip/b.xmp", "unsupported extension", False), ("trip/desktop.ini", "hidden", False),
    ])
    report = skipped_report(scan.skipped)
    assert report["counts"] == {"hidden": 6, "unsupported extension": 2}
    assert len(report["paths"]) == 8 and set(report["paths"][0]) == {"path", "reason", "folder"}


def test_include_hidden_lists_hidden_files_and_walks_hidden_folders(mixed: Path) -> None:
    scan = scan_inputs([str(mixed)], ScanSettings(include_hidden=True))
    names = _names(mixed, [r.path for r in scan.refs])
    assert {".x.jpg", ".thumbnails/a.png", "@eaDir/a.jpg"} <= set(names)
    assert {s.reason for s in scan.skipped} == {"unsupported extension"}
    # .DS_Store, Thumbs.db and desktop.ini are no images either
    assert len(scan.skipped) == 5


def test_exclude_patterns_are_gitignore_style_relative_to_each_root(mixed: Path) -> None:
    scan = scan_inputs([str(mixed)], ScanSettings(exclude=("cache/", "*.tmp.jpg", "/a.jpg")))
    assert _names(mixed, [r.path for r in scan.refs]) == ["trip/b.png", "trip/tiny.png"]
    excluded = sorted(os.path.relpath(s.path, mixed) for s in scan.skipped
                      if s.reason == "excluded")
    assert excluded == ["a.jpg", "cache", "trip/draft.tmp.jpg"]
    # "/a.jpg" is anchored at the input folder: a deeper a.jpg is not excluded
    _image(mixed / "trip" / "a.jpg", seed=9)
    scan = scan_inputs([str(mixed)], ScanSettings(exclude=("/a.jpg",)))
    assert "trip/a.jpg" in _names(mixed, [r.path for r in scan.refs])


def test_min_size_and_min_pixels_skip_small_files(mixed: Path) -> None:
    tiny = mixed / "trip" / "tiny.png"
    by_size = scan_inputs([str(mixed)], ScanSettings(min_size=tiny.stat().st_size + 1))
    small = [s for s in by_size.skipped if s.reason == "too small"]
    assert [os.path.relpath(s.path, mixed) for s in small] == ["trip/tiny.png"]
    by_pixels = scan_inputs([str(mixed)], ScanSettings(min_pixels=65))  # tiny is 8x8
    assert [s.path for s in by_pixels.skipped if s.reason == "too small"] == [str(tiny)]
    assert str(tiny) not in [r.path for r in by_pixels.refs]
    assert len(by_pixels.refs) == 4
    # an unreadable header is not "too small": the decoder reports it
    (mixed / "broken.jpg").write_bytes(b"not a jpeg")
    again = scan_inputs([str(mixed)], ScanSettings(min_pixels=65))
    assert str(mixed / "broken.jpg") in [r.path for r in again.refs]


def test_a_file_named_as_input_is_always_listed(mixed: Path) -> None:
    scan = scan_inputs([str(mixed / ".x.jpg")], ScanSettings(min_pixels=10**6))
    assert [r.path for r in scan.refs] == [str(mixed / ".x.jpg")] and scan.skipped == []


def test_overlapping_roots_count_a_skip_once(mixed: Path) -> None:
    scan = scan_inputs([str(mixed), str(mixed / "trip")])
    assert len([s for s in scan.skipped if s.path.endswith("b.xmp")]) == 1


@pytest.mark.parametrize(("settings", "message"), [
    (ScanSettings(min_size=-1), "minimum size must be 0 or more bytes, got -1"),
    (ScanSettings(min_pixels=-5), "minimum pixels must be 0 or more, got -5"),
])
def test_bad_settings_are_input_errors(tmp_path: Path, settings: ScanSettings,
                                       message: str) -> None:
    with pytest.raises(InputError, match=f"^{message}$"):
        scan_inputs([str(tmp_path)], settings)


def test_build_counts_skips_and_a_noop_build_loads_no_model(mixed: Path, tmp_path: Path,
                                                          lite0) -> None:  # type: ignore[no-untyped-def]
    idx = str(tmp_path / "idx")
    settings = BuildSettings(model=EFFICIENTNET_LITE0.name,
                             scan=ScanSettings(exclude=("cache/",), min_pixels=65))
    first = build_index([str(mixed)], idx, settings, model=lite0)
    assert (first.scanned, first.embedded, first.errors) == (3, 3, 0)
    assert first.skipped == {"hidden": 6, "excluded": 1, "unsupported extension": 2,
                             "too small": 1}
    assert sum(first.skipped.values()) == len(first.skipped_paths)
    assert all(isinstance(s, Skipped) for s in first.skipped_paths)
    # nothing new: the model is never loaded (no `model=` passed either)
    again = build_index([str(mixed)], idx, BuildSettings(scan=settings.scan))
    assert (again.embedded, again.unchanged, again.model_loaded) == (0, 3, False)
    assert again.skipped == first.skipped
    # one new image: now it is loaded, and checked against the index
    _image(mixed / "new.png", seed=11)
    third = build_index([str(mixed)], idx, BuildSettings(scan=settings.scan))
    assert (third.embedded, third.unchanged, third.model_loaded) == (1, 3, True)


def test_dedupe_takes_the_scan_filters_of_build(mixed: Path, tmp_path: Path) -> None:
    """`dedupe FOLDER` builds with the same --exclude, --include-hidden, --min-size and
    --min-pixels as `build`, and looks only at what that scan took."""
    import json

    from tests.conftest import cli_ok

    def dedupe(idx: str, *flags: str) -> dict:  # type: ignore[type-arg]
        out = cli_ok("dedupe", str(mixed), "--index", str(tmp_path / idx), "--model",
                     "efficientnet-lite0", "--output", str(tmp_path / "out"), "--json", "-q",
                     *flags)
        return json.loads(out)  # type: ignore[no-any-return]

    first = dedupe("idx", "--exclude", "cache/", "--min-pixels", "65")
    assert first["total_images_in_folders"] == 3
    assert first["skipped"] == {"hidden": 6, "excluded": 1, "unsupported extension": 2,
                                "too small": 1}
    hidden = dedupe("idx2", "--include-hidden", "--min-size", "1")
    assert hidden["total_images_in_folders"] == 8  # hidden files and folders too
    assert "hidden" not in hidden["skipped"] and "excluded" not in hidden["skipped"]
    small = dedupe("idx3", "--min-size", str(10**9))
    assert small["total_images_in_folders"] == 0
    assert small["skipped"]["too small"] == 5
