"""Keep policies, --protect, and the keeper data in report.json (no CNN: hand-made vectors)."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from library_fixture import THRESHOLD, Img, make_library, run_dedupe, simple_library

from imgsim_index.cli import main
from imgsim_index.errors import InputError
from imgsim_index.groups.components import connected_components
from imgsim_index.groups.keep import DEFAULT_KEEP, KEEP_POLICIES, KeepSettings, choose_keepers
from imgsim_index.index.catalog import Row
from imgsim_index.report.units import human_bytes


def row(k: int, path: str, size: int | None = 100, w: int | None = 10, h: int | None = 10,
        mtime: int | None = 5) -> Row:
    values: dict[str, Any] = {
        "id": k, "path": path, "root": "/lib", "size": size, "mtime_ns": mtime, "width": w,
        "height": h, "status": "embedded", "error": None, "segment": "s", "added_at": 0.0}
    return Row(**{f.name: values.get(f.name, 0) for f in dataclasses.fields(Row)})


def keeper_of(rows: list[Row], policy: str, codes: list[int] | None = None,
              protect: tuple[str, ...] = ()) -> str:
    """The keeper when all `rows` form one group."""
    n = len(rows)
    groups = connected_components(n, np.zeros(n - 1, np.int64), np.arange(1, n, dtype=np.int64))
    code_arr = None if codes is None else np.asarray(codes, np.int64)
    (d,) = choose_keepers(rows, groups, KeepSettings(policy, protect), code_arr)
    assert sorted(d.removable + [d.keeper]) == list(range(n)) or protect
    return rows[d.keeper].path


# One row wins under each policy, and only under it.
ROWS = [
    row(0, "/lib/b/big_pixels.jpg", size=500, w=400, h=300, mtime=50),
    row(1, "/lib/a/big_file_name.png", size=900, w=200, h=150, mtime=40),
    row(2, "/lib/c/oldest_one.jpg", size=300, w=100, h=75, mtime=10),
    row(3, "/lib/c/newest_one.jpg", size=200, w=100, h=75, mtime=90),
    row(4, "/lib/a/s.jpg", size=100, w=50, h=40, mtime=60),
]
EXPECTED = {
    "highest-resolution": "/lib/b/big_pixels.jpg",
    "largest": "/lib/a/big_file_name.png",
    "oldest": "/lib/c/oldest_one.jpg",
    "newest": "/lib/c/newest_one.jpg",
    "shortest-path": "/lib/a/s.jpg",
}


@pytest.mark.parametrize("policy", sorted(EXPECTED))
def test_each_policy_picks_its_keeper(policy: str) -> None:
    assert keeper_of(ROWS, policy) == EXPECTED[policy]


def test_first_follows_the_folder_order_then_the_path() -> None:
    # folder codes are the input folders in command-line order: code 0 wins over path order
    assert keeper_of(ROWS, "first", codes=[1, 1, 0, 0, 1]) == "/lib/c/newest_one.jpg"
    assert keeper_of(ROWS, "first", codes=[0] * 5) == "/lib/a/big_file_name.png"


def test_every_policy_is_covered_and_the_default_is_documented() -> None:
    # "original" reads the files' EXIF: tested on real files below
    assert set(EXPECTED) | {"first", "original"} == set(KEEP_POLICIES)
    assert DEFAULT_KEEP == "original"


def test_ties_break_on_file_size_then_shorter_path() -> None:
    rows = [row(0, "/lib/long_name.jpg", size=100), row(1, "/lib/x.jpg", size=100),
            row(2, "/lib/bigger_file.jpg", size=101)]
    assert keeper_of(rows, "highest-resolution") == "/lib/bigger_file.jpg"
    assert keeper_of(rows[:2], "highest-resolution") == "/lib/x.jpg"
    assert keeper_of(list(reversed(rows[:2])), "oldest") == "/lib/x.jpg"  # not catalog order


def test_missing_metadata_never_wins() -> None:
    rows = [row(0, "/lib/a.jpg"), row(1, "/lib/b.jpg", None, None, None, None)]
    for policy in KEEP_POLICIES:
        if policy not in ("shortest-path", "first"):
            assert keeper_of(rows, policy) == "/lib/a.jpg", policy


def test_protected_files_are_kept_and_the_keeper_is_one_of_them() -> None:
    n = len(ROWS)
    groups = connected_components(n, np.zeros(n - 1, np.int64), np.arange(1, n, dtype=np.int64))
    (d,) = choose_keepers(ROWS, groups, KeepSettings("highest-resolution", ("/lib/c",)))
    assert ROWS[d.keeper].path.startswith("/lib/c/")
    assert {ROWS[m].path for m in d.removable} == {"/lib/b/big_pixels.jpg",
                                                   "/lib/a/big_file_name.png", "/lib/a/s.jpg"}
    assert d.protected.tolist() == [False, False, True, True, False]


def test_a_group_of_only_protected_files_removes_nothing() -> None:
    assert keeper_of(ROWS, "largest", protect=("/lib",)) == "/lib/a/big_file_name.png"
    n = len(ROWS)
    groups = connected_components(n, np.zeros(n - 1, np.int64), np.arange(1, n, dtype=np.int64))
    (d,) = choose_keepers(ROWS, groups, KeepSettings("largest", ("/lib/",)))
    assert d.removable == [] and d.protected.all()


def test_protect_matches_whole_folder_names_only() -> None:
    rows = [row(0, "/lib/c2/x.jpg", w=1), row(1, "/lib/y.jpg", w=99)]
    assert keeper_of(rows, "highest-resolution", protect=("/lib/c",)) == "/lib/y.jpg"


def test_video_frames_are_never_removable_and_a_still_image_is_kept() -> None:
    frames = [row(0, "/lib/cam.mp4#t=00:00:01.000", w=1920, h=1080),
              row(1, "/lib/cam.mp4#t=00:00:02.000", w=1920, h=1080)]
    rows = [*frames, row(2, "/lib/still.jpg", w=10, h=10)]
    groups = connected_components(3, np.asarray([0, 0]), np.asarray([1, 2]))
    (d,) = choose_keepers(rows, groups, KeepSettings())
    assert rows[d.keeper].path == "/lib/still.jpg" and d.removable == []
    assert d.frames.tolist() == [True, True, False]
    only_frames = connected_components(2, np.asarray([0]), np.asarray([1]))
    (d,) = choose_keepers(frames, only_frames, KeepSettings())
    assert d.removable == [] and d.keeper in (0, 1)


def test_unknown_policy_is_refused_with_the_choices() -> None:
    with pytest.raises(InputError, match="highest-resolution"):
        KeepSettings("biggest").validate()


# -- through dedupe: report.json ----------------------------------------------------------
def test_report_lists_groups_with_keeper_members_scores_and_removable(tmp_path: Path) -> None:
    photos, r = simple_library(tmp_path)
    rep = json.loads(Path(r.report_path).read_text())
    assert rep["photos_to_remove"] == 3 and rep["number_of_unique_groups"] == 4  # seed meaning
    assert rep["keep_policy"] == "highest-resolution" and rep["protected_folders"] == []
    g0, g1 = rep["groups"]
    assert g0["keeper"] == str(photos / "a/sunset.jpg")
    assert g1["keeper"] == str(photos / "a/dog.jpg")
    assert g0["removable"] == [str(photos / "a/sunset_small.jpg"),
                               str(photos / "b/sunset copy.jpg")]
    for g in (g0, g1):
        assert g["size"] == len(g["members"])
        roles = {m["path"]: m["role"] for m in g["members"]}
        assert roles[g["keeper"]] == "keep"
        assert sorted(p for p, role in roles.items() if role == "remove") == sorted(g["removable"])
        for m in g["members"]:
            st = os.stat(m["path"])
            assert (m["size"], m["mtime_ns"]) == (st.st_size, st.st_mtime_ns)
            assert m["width"] and m["height"] and m["protected"] is False
            assert THRESHOLD - 0.05 < m["score_to_keeper"] <= 1.0
            assert round(m["score_to_keeper"], 6) == m["score_to_keeper"]
        assert g["bytes_removable"] == sum(os.stat(p).st_size for p in g["removable"])
    assert rep["files_removable"] == 3
    assert rep["bytes_removable"] == g0["bytes_removable"] + g1["bytes_removable"]


def test_score_to_keeper_is_the_float64_dot_of_the_stored_vectors(tmp_path: Path) -> None:
    from imgsim_index.index.store import IndexStore

    _, r = simple_library(tmp_path)
    with IndexStore.open_reader(str(tmp_path / "index")) as store:
        loaded = store.load()
    vec = {row.path: loaded.vectors[k].astype(np.float64) for k, row in enumerate(loaded.rows)}
    for g in r.report["groups"]:
        for m in g["members"]:
            assert m["score_to_keeper"] == round(float(vec[m["path"]] @ vec[g["keeper"]]), 6)


def test_dedupe_keep_and_protect_settings(tmp_path: Path) -> None:
    photos, index = make_library(tmp_path, [
        Img("ref/original.jpg", 0, (40, 30), mtime=1_500_000_000),
        Img("new/edit.jpg", 0, (160, 120), pad=5000, mtime=1_700_000_000),
        Img("new/other.jpg", 0, (80, 60), mtime=1_600_000_000),
        Img("ref/a.jpg", 1), Img("ref/b.jpg", 1),
    ])
    largest = run_dedupe(tmp_path, index, keep="largest").report["groups"][0]
    assert largest["keeper"] == str(photos / "new/edit.jpg")
    oldest = run_dedupe(tmp_path, index, keep="oldest").report["groups"][0]
    assert oldest["keeper"] == str(photos / "ref/original.jpg")
    rep = run_dedupe(tmp_path, index, protect=(str(photos / "ref"),)).report
    g0, g1 = rep["groups"]
    assert g0["keeper"] == str(photos / "ref/original.jpg")  # the reference copy, though smallest
    assert sorted(g0["removable"]) == [str(photos / "new/edit.jpg"), str(photos / "new/other.jpg")]
    assert g1["removable"] == [] and g1["all_protected"]
    assert [m["protected"] for m in g1["members"]] == [True, True]
    assert rep["files_removable"] == 2 and rep["photos_to_remove"] == 3


def removable_text(result_line: str) -> str:
    report = json.loads(Path(result_line.removeprefix("Result JSON: ")).read_text())
    return f"{report['files_removable']}, {human_bytes(report['bytes_removable'])}"


def test_cli_dedupe_keeps_its_eight_lines_first_and_names_the_gallery_on_stdout(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    photos, r = simple_library(tmp_path)
    main(["dedupe", "--index", str(tmp_path / "index"), "--threshold", str(THRESHOLD),
          "--output", str(tmp_path / "cli"), "--keep", "shortest-path",
          "--protect", str(photos / "b"), "-q"])
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert len(lines) == 12 and lines[0] == "Total images found: 7" and err == ""
    assert lines[8] == f"Index: {tmp_path / 'index'}"
    assert lines[9].startswith("Verified: ")
    assert lines[6].startswith("Result JSON: ")
    assert lines[4] == "Photos that can be removed if only keeping 1 from each group: 3"
    assert lines[10] == ("Files apply would remove (keepers, --protect folders and video "
                         "frames kept): " + removable_text(lines[6]))
    assert lines[11].startswith("Gallery saved: ") and lines[11].endswith("report.html")
    rep = json.loads(Path(lines[6].removeprefix("Result JSON: ")).read_text())
    assert rep["keep_policy"] == "shortest-path"
    assert rep["protected_folders"] == [str(photos / "b")]
    # b/ is protected: "b/sunset copy.jpg" is kept as the keeper, b/dog-2.jpg too
    assert [g["keeper"] for g in rep["groups"]] == [str(photos / "b/sunset copy.jpg"),
                                                    str(photos / "b/dog-2.jpg")]


# -- a keeper that is the original: EXIF read from generated files -------------------------
def _photo(path: Path, w: int = 96, h: int = 64, make: str | None = None,
           taken: str | None = None, mtime: int | None = None, model: str = "Model X") -> Row:
    """A real file (JPEG with the EXIF given, or PNG/TIFF by its extension) and its row."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(np.random.default_rng(w * h).integers(0, 255, (h, w, 3), np.uint8))
    exif = Image.Exif()
    if make:
        exif[271], exif[272] = make, model
    if taken:
        exif.get_ifd(0x8769)[0x9003] = taken
    im.save(path, exif=exif) if (make or taken) else im.save(path)
    if mtime is not None:
        os.utime(path, ns=(mtime, mtime))
    st = path.stat()
    return row(0, str(path), size=st.st_size, w=w, h=h, mtime=st.st_mtime_ns)


def _decide(rows: list[Row], policy: str = DEFAULT_KEEP) -> tuple[str, str]:
    rows = [dataclasses.replace(r, id=k) for k, r in enumerate(rows)]
    n = len(rows)
    groups = connected_components(n, np.zeros(n - 1, np.int64), np.arange(1, n, dtype=np.int64))
    (d,) = choose_keepers(rows, groups, KeepSettings(policy))
    return rows[d.keeper].path, d.keep_reason


def test_the_camera_jpeg_is_kept_over_a_bigger_png_conversion(tmp_path: Path) -> None:
    jpg = _photo(tmp_path / "camera" / "home.jpg", make="Canon")
    png = _photo(tmp_path / "backup" / "home.png")
    assert png.size is not None and jpg.size is not None and png.size > jpg.size
    for policy in ("original", "highest-resolution"):  # same pixels: EXIF breaks the tie
        assert _decide([png, jpg], policy) == (jpg.path, "camera EXIF (Canon Model X)")
    assert _decide([png, jpg], "largest")[0] == png.path  # asked for: the biggest file


def test_the_camera_is_named_once_when_the_model_repeats_the_make(tmp_path: Path) -> None:
    from imgsim_index.groups.keep import file_facts

    for make, model, want in (("Canon", "Canon EOS R5", "Canon EOS R5"),
                              ("NIKON CORPORATION", "NIKON D850", "NIKON D850"),
                              ("FUJIFILM", "X-T4", "FUJIFILM X-T4")):
        jpg = _photo(tmp_path / f"{model}.jpg", make=make, model=model)
        png = _photo(tmp_path / f"{model}.png")
        assert file_facts(jpg.path).camera == want
        assert _decide([png, jpg], "original") == (jpg.path, f"camera EXIF ({want})")


def test_a_file_to_protect_is_refused_not_ignored(tmp_path: Path) -> None:
    """The command line takes --protect as an existing folder; the library's KeepSettings
    refuses a file too, which would otherwise protect nothing (no path lies under it)."""
    photo = tmp_path / "keep-me.jpg"
    photo.write_bytes(b"x")
    with pytest.raises(InputError) as e:
        keeper_of([row(0, str(photo)), row(1, str(tmp_path / "copy.jpg"))], "original",
                  protect=(str(photo),))
    assert str(e.value) == (f"protect takes folders: {str(photo)!r} is a file (protect the "
                            f"folder that holds it)")
    assert keeper_of([row(0, str(photo)), row(1, str(tmp_path / "b" / "copy.jpg"))],
                     "original", protect=(str(tmp_path / "b"),)) == str(tmp_path / "b" / "copy.jpg")

def _png_chunks(data: bytes) -> list[bytes]:
    out, i = [], 8
    while i < len(data):
        n = int.from_bytes(data[i:i + 4], "big")
        out.append(data[i:i + 12 + n])
        i += 12 + n
    return out


@pytest.mark.parametrize("where", ["before the pixels", "after the pixels", "none"])
def test_a_pngs_exif_is_read_without_decoding_its_pixels(tmp_path: Path, where: str) -> None:
    """Keepers read each member's camera and capture time from its header: a PNG's eXIf
    chunk may come after its pixel data, where Pillow's getexif decodes the whole image
    to find it (0.4 s of a 100-image dedupe); header_exif walks the chunks instead."""
    from PIL import Image

    from imgsim_index.groups.keep import file_facts
    from imgsim_index.ingest.decode import header_exif, open_image

    exif = Image.Exif()
    exif[271], exif[272], exif[306] = "Canon", "Canon EOS R5", "2020:01:02 03:04:05"
    first = tmp_path / "first.png"
    Image.new("RGB", (64, 48), (10, 20, 30)).save(first, exif=exif)
    chunks = _png_chunks(first.read_bytes())
    assert [c[4:8] for c in chunks] == [b"IHDR", b"eXIf", b"IDAT", b"IEND"]
    ex, rest = chunks[1], [chunks[0], *chunks[2:]]
    body = {"before the pixels": chunks, "after the pixels": [*rest[:-1], ex, rest[-1]],
            "none": rest}[where]
    path = tmp_path / "photo.png"
    path.write_bytes(first.read_bytes()[:8] + b"".join(body))
    with open_image(str(path)) as im:
        got = dict(header_exif(im))
        assert im._im is None  # no pixels decoded
    with Image.open(path) as im:  # Pillow's own reading (decoding the pixels)
        assert got == dict(im.getexif())
    facts = file_facts(str(path))
    if where == "none":
        assert got == {} and facts.camera is None and facts.captured is None
    else:
        assert facts.camera == "Canon EOS R5" and facts.captured == 1577934245.0


def test_original_format_beats_a_conversion_when_neither_has_exif(tmp_path: Path) -> None:
    jpg = _photo(tmp_path / "a" / "x.jpg")
    tif = _photo(tmp_path / "x.tif")  # shorter path, bigger file
    assert _decide([tif, jpg]) == (jpg.path, "original format (.jpg over .tif)")


def test_earliest_capture_time_then_pixels_then_mtime_then_shorter_path(tmp_path: Path) -> None:
    early = _photo(tmp_path / "later_copy" / "a.jpg", make="Sony", taken="2021:05:01 10:00:00",
                   mtime=9 * 10**18)
    late = _photo(tmp_path / "b.jpg", make="Sony", taken="2021:05:01 10:00:05", mtime=10**18)
    assert _decide([late, early]) == (early.path, "earliest capture time")
    # the same capture: the full-size original beats a downscaled export that kept EXIF
    small = _photo(tmp_path / "s.jpg", 48, 32, make="Sony", taken="2021:05:01 10:00:00")
    assert _decide([small, early]) == (early.path, "most pixels")
    # no EXIF at all: most pixels, then the earliest modified, then the shorter path
    old = _photo(tmp_path / "old" / "p.jpg", mtime=10**18)
    new = _photo(tmp_path / "n.jpg", mtime=2 * 10**18)
    assert _decide([new, old]) == (old.path, "earliest modification time")
    same = _photo(tmp_path / "nn" / "q.jpg", mtime=2 * 10**18)
    assert _decide([same, new]) == (new.path, "shortest path")


def test_keep_reason_for_protected_and_frames() -> None:
    n = len(ROWS)
    groups = connected_components(n, np.zeros(n - 1, np.int64), np.arange(1, n, dtype=np.int64))
    (d,) = choose_keepers(ROWS, groups, KeepSettings("highest-resolution", ("/lib/c",)))
    assert d.keep_reason == "protected: largest file"  # same pixels, no EXIF, same format
    (d,) = choose_keepers(ROWS, groups, KeepSettings("largest", ("/lib/b",)))
    assert d.keep_reason == "the only protected file"
    (d,) = choose_keepers(ROWS, groups, KeepSettings("highest-resolution"))
    assert d.keep_reason == "most pixels"
    frames = [row(0, "/lib/cam.mp4#t=00:00:01.000"), row(1, "/lib/still.jpg")]
    (d,) = choose_keepers(frames, connected_components(2, np.asarray([0]), np.asarray([1])),
                          KeepSettings())
    assert d.keep_reason == "the only still image"
