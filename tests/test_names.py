"""File names that are not UTF-8: indexed, deduped, shown escaped, acted on by their
real bytes, and put back by undo."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import cli_ok, report_of, write_scene_video
from library_fixture import write_image

from imgsim_index.atomic_files import JSON_WRITE_CHARS, atomic_write_json, json_text
from imgsim_index.index.catalog import Catalog, NewRow, db_name
from imgsim_index.index.store import CATALOG
from imgsim_index.ingest.scan import scan_inputs

BAD = b"caf\xe9 \xff.jpg"  # Latin-1 e-acute and a byte 0xff: not UTF-8


def bytes_file(folder: Path, name: bytes, data: bytes) -> str:
    """Write `data` under the exact byte name; the path as os.fsdecode gives it."""
    raw = os.path.join(os.fsencode(str(folder)), name)
    try:
        with open(raw, "wb") as fh:
            fh.write(data)
    except OSError:
        pytest.skip("the file system refuses names that are not UTF-8")
    return os.fsdecode(raw)


def test_scan_lists_the_name_and_json_text_round_trips_its_bytes(tmp_path: Path) -> None:
    path = bytes_file(tmp_path, BAD, b"x" * 10)
    (ref,) = scan_inputs([str(tmp_path)]).refs
    assert ref.error is None and ref.path == path and ref.size == 10
    text = json_text({"p": ref.path})
    assert text == '{"p": "' + str(tmp_path) + '/caf\\udce9 \\udcff.jpg"}'
    text.encode("utf-8")  # writable as UTF-8
    assert os.fsencode(json.loads(text)["p"]) == os.fsencode(str(tmp_path)) + b"/" + BAD


def test_a_json_file_is_written_as_it_is_encoded_with_the_same_bytes(tmp_path: Path) -> None:
    """atomic_write_json streams the encoder's pieces (a report of millions of pairs is
    never one string): the bytes are json_text's with indent 2 and a newline, across many
    writes and with names that are not UTF-8; an object it cannot encode leaves the old
    file and no part file."""
    rows = [{"image1": f"/x/\udcff{k}.jpg", "image2": f"/y/é{k}.png", "score": k / 7}
            for k in range(3 * JSON_WRITE_CHARS // 60)]
    obj = {"similar_pairs": rows, "name": "\udce9"}
    path = tmp_path / "report.json"
    atomic_write_json(str(path), obj)
    data = path.read_bytes()
    assert len(data) > 2 * JSON_WRITE_CHARS
    assert data == (json_text(obj, indent=2) + "\n").encode("utf-8")
    assert json.loads(data)["similar_pairs"][5]["image1"] == "/x/\udcff5.jpg"
    with pytest.raises(TypeError):
        atomic_write_json(str(path), {"rows": rows, "bad": object()})
    assert path.read_bytes() == data and os.listdir(tmp_path) == ["report.json"]


def test_catalog_stores_the_exact_bytes_and_old_text_rows_unchanged(tmp_path: Path) -> None:
    name = os.fsdecode(os.fsencode(str(tmp_path)) + b"/" + BAD)
    assert db_name(name) == os.fsencode(name) and db_name("/a/b.jpg") == "/a/b.jpg"
    cat = Catalog(str(tmp_path / "c.sqlite"))
    with cat.transaction():
        cat.upsert([NewRow(name, str(tmp_path), 1, 2), NewRow("/a/b.jpg", "/a", 1, 2)], "s")
    kinds = dict(cat.db.execute("SELECT id, typeof(path) FROM images"))
    assert sorted(kinds.values()) == ["blob", "text"]
    assert sorted(r.path for r in cat.rows()) == sorted(["/a/b.jpg", name])
    assert cat.row_of(name) is not None
    with cat.transaction():
        assert cat.rename_path(name, name + ".2", 7, 8, "d")
        assert cat.delete_paths([name + ".2"]) == 1
    assert [r.path for r in cat.rows()] == ["/a/b.jpg"]
    cat.close()


def test_build_dedupe_apply_move_and_undo_act_on_the_real_bytes(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    write_image(photos / "a.jpg", (96, 64), seed=3)
    write_image(photos / "other.jpg", (96, 64), seed=4)
    os.utime(photos / "a.jpg", ns=(10**18, 10**18))  # a.jpg is the older: the keeper
    dup = bytes_file(photos, BAD, (photos / "a.jpg").read_bytes())
    os.utime(os.fsencode(dup), ns=(2 * 10**18, 2 * 10**18))
    index, out = tmp_path / "index", tmp_path / "out"
    stdout = cli_ok("dedupe", photos, "--index", index, "--output", out,
                    "--model", "efficientnet-lite0", "--threshold", "0.95")
    report = report_of(stdout)
    text = next(out.glob("*/report.json")).read_text(encoding="utf-8")
    assert "caf\\udce9 \\udcff.jpg" in text  # the documented escape, valid UTF-8 JSON
    assert report["number_of_errors"] == 0 and report["total_images_in_folders"] == 3
    (group,) = report["groups"]
    assert group["keeper"] == str(photos / "a.jpg") and group["removable"] == [dup]
    gallery = next(out.glob("*/report.html")).read_text(encoding="utf-8")
    assert "caf\\\\udce9" in gallery or "caf\\udce9" in gallery

    report_path = next(out.glob("*/report.json"))
    moved_to = tmp_path / "moved"
    cli_ok("apply", report_path, "--move-to", moved_to, "--yes",
           "--journal", tmp_path / "j.jsonl")
    raw_new = os.path.join(os.fsencode(str(moved_to)), b"photos", BAD)
    assert os.path.exists(raw_new) and not os.path.exists(os.fsencode(dup))
    cat = Catalog(str(index / CATALOG), readonly=True)
    assert os.fsdecode(raw_new) in {r.path for r in cat.rows()}
    cat.close()
    cli_ok("undo", tmp_path / "j.jsonl")
    assert os.path.exists(os.fsencode(dup)) and not os.path.exists(raw_new)
    with open(os.fsencode(dup), "rb") as fh:
        assert fh.read() == (photos / "a.jpg").read_bytes()


# -- dedupe takes files as inputs, and the hyphenated compare scope -------------------
def test_dedupe_of_image_files_and_a_video_file(tmp_path: Path) -> None:
    photos, other = tmp_path / "photos", tmp_path / "other"
    write_image(photos / "a.jpg", (96, 64), seed=3, mtime=1_500_000_000)
    (photos / "b.jpg").write_bytes((photos / "a.jpg").read_bytes())
    write_image(other / "c.jpg", (96, 64), seed=3, mtime=1_600_000_000)
    clip = tmp_path / "clip.mp4"
    write_scene_video(clip, scenes=2, seconds_each=2)
    index, out = tmp_path / "index", tmp_path / "out"
    common = ("--index", index, "--model", "efficientnet-lite0", "--threshold", "0.95",
              "--json")

    def run(*inputs: object, scope: str = "all") -> dict:  # type: ignore[type-arg]
        got = json.loads(cli_ok("dedupe", *inputs, *common, "--output", out,
                                "--compare-scope", scope))
        return json.loads(Path(got["report_path"]).read_text())  # type: ignore[no-any-return]

    alone = run(photos / "a.jpg")  # one image: only itself, although b.jpg is its copy
    assert (alone["folder_list"], alone["total_images_in_folders"]) == ([str(photos / "a.jpg")], 1)
    assert alone["similar_pairs"] == []
    video = run(clip)
    assert video["folder_list"] == [str(clip)] and video["total_images_in_folders"] >= 2
    assert all(p.startswith(str(clip) + "#t=") for g in video["groups"]
               for p in (m["path"] for m in g["members"]))
    both = run(photos / "a.jpg", photos / "b.jpg", other / "c.jpg", scope="inter-folder")
    assert both["compare_scope"] == "inter_folder"  # the seed's value, whatever was typed
    assert both["total_images_in_folders"] == 3
    # every file is an input of its own: all three pairs are across inputs
    assert both["number_of_similar_pairs"] == 3
    (group,) = both["groups"]
    assert group["keeper"] == str(photos / "a.jpg")
    report_path = next(p for p in out.glob("*/report.json")
                       if json.loads(p.read_text())["compare_scope"] == "inter_folder")
    cli_ok("apply", report_path, "--move-to", tmp_path / "moved", "--yes",
           "--journal", tmp_path / "j.jsonl")
    assert sorted(p.name for p in (tmp_path / "moved").rglob("*.jpg")) == ["b.jpg", "c.jpg"]
