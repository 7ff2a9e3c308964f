"""End to end on generated images with known duplicates, through the real CLI and model."""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import truth_pairs
from PIL import Image

from imgsim_index.cli import cli

SEED_KEYS = [
    "timestamp", "folder_list", "total_images_in_folders", "compare_mode", "threshold",
    "number_of_similar_pairs", "number_of_unique_groups", "photos_to_remove", "similar_pairs",
]


def invoke(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def report_pairs(report: dict) -> set[tuple[str, str]]:  # type: ignore[type-arg]
    return {tuple(sorted((p["image1"], p["image2"]))) for p in report["similar_pairs"]}  # type: ignore[misc]


@pytest.fixture(scope="module")
def first_run(samples: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:  # type: ignore[type-arg]
    work = tmp_path_factory.mktemp("e2e")
    out = invoke("dedupe", str(samples / "images"), "--index", str(work / "idx"), "--model",
                 "efficientnet-lite0", "--threshold", "0.9", "--output", str(work / "res"), "-q")
    folder = next(x for x in out.splitlines() if x.startswith("Done. Output folder: ")
                  ).removeprefix("Done. Output folder: ")
    report = json.loads((Path(folder) / "report.json").read_text())
    return {"stdout": out, "folder": Path(folder), "report": report, "work": work}


def test_finds_exactly_the_planted_duplicates(first_run, samples) -> None:  # type: ignore[no-untyped-def]
    assert report_pairs(first_run["report"]) == truth_pairs(samples)


def test_console_summary_in_order(first_run, samples) -> None:  # type: ignore[no-untyped-def]
    rep, folder = first_run["report"], first_run["folder"]
    n = sum(1 for _ in (samples / "images").rglob("*.*"))
    groups = json.loads((samples / "truth.json").read_text())["groups"]
    in_groups = sum(len(g) for g in groups)
    unique = n - in_groups + len(groups)
    assert first_run["stdout"].splitlines()[:8] == [
        f"Total images found: {n}",
        "Threshold = 0.9",
        f"Found {len(truth_pairs(samples))} pairs of images that meet the similarity threshold.",
        f"Number of unique groups: {unique}",
        f"Photos that can be removed if only keeping 1 from each group: {n - unique}",
        f"Collage saved: {folder / 'similar_pairs_sample' / 'random_collage.jpg'}",
        f"Result JSON: {folder / 'report.json'}",
        f"Done. Output folder: {folder}",
    ]
    assert rep["number_of_unique_groups"] == unique and rep["photos_to_remove"] == n - unique


def test_report_schema(first_run) -> None:  # type: ignore[no-untyped-def]
    rep = first_run["report"]
    assert list(rep)[: len(SEED_KEYS)] == SEED_KEYS
    assert rep["compare_mode"] == "full" and rep["threshold"] == 0.9
    assert rep["number_of_similar_pairs"] == len(rep["similar_pairs"])
    scores = [p["similarity_score"] for p in rep["similar_pairs"]]
    assert scores == sorted(scores, reverse=True) and min(scores) >= 0.9
    for k, p in enumerate(rep["similar_pairs"]):
        assert list(p)[:4] == ["index", "image1", "image2", "similarity_score"] and p["index"] == k
    assert rep["model"]["model"] == "efficientnet-lite0" and rep["model"]["dim"] == 1280
    assert sum(g["size"] - 1 for g in rep["groups"]) == rep["photos_to_remove"]
    assert rep["errors"] == []
    assert first_run["folder"].name == rep["timestamp"]


def test_collage_is_written(first_run) -> None:  # type: ignore[no-untyped-def]
    im = Image.open(first_run["folder"] / "similar_pairs_sample" / "random_collage.jpg")
    assert im.format == "JPEG" and im.width >= 700
    rows = min(20, first_run["report"]["number_of_similar_pairs"])
    assert im.height > rows * 270


def test_rerun_embeds_nothing_and_never_overwrites(first_run, samples) -> None:  # type: ignore[no-untyped-def]
    work = first_run["work"]
    out = invoke("build", str(samples / "images"), "--index", str(work / "idx"), "-q")
    assert "embedded 0," in out
    a = invoke("dedupe", "--index", str(work / "idx"), "--threshold", "0.9",
               "--output", str(work / "res"), "-q")
    b = invoke("dedupe", "--index", str(work / "idx"), "--threshold", "0.9",
               "--output", str(work / "res"), "-q")
    def folder_of(out: str) -> str:
        return next(x for x in out.splitlines() if x.startswith("Done. Output folder: "))

    assert folder_of(a) != folder_of(b)
    assert a.splitlines()[:5] == first_run["stdout"].splitlines()[:5]


def test_inter_folder_keeps_only_cross_folder_pairs(samples, tmp_path) -> None:  # type: ignore[no-untyped-def]
    cam, bak = samples / "images" / "camera", samples / "images" / "backup"
    out = invoke("dedupe", str(cam), str(bak), "--index", str(tmp_path / "idx"), "--model",
                 "efficientnet-lite0", "--threshold", "0.9", "--compare-scope", "inter_folder",
                 "--output", str(tmp_path / "res"), "-q")
    rep = json.loads(Path(next(x for x in out.splitlines() if x.startswith("Result JSON: "))
                          .removeprefix("Result JSON: ")).read_text())
    expected = {p for p in truth_pairs(samples) if ("/camera/" in p[0]) != ("/camera/" in p[1])}
    assert report_pairs(rep) == expected and expected


def test_bad_and_odd_files(samples, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Unreadable files are listed with reasons; unusual but valid files are embedded."""
    root = tmp_path / "mixed"
    shutil.copytree(samples / "images" / "camera", root)
    good = next(root.glob("*.jpg"))
    data = good.read_bytes()
    (root / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (root / "empty.jpg").write_bytes(b"")
    (root / "notes.png").write_text("not an image\n")
    os.mkfifo(root / "pipe.jpg")
    (root / "folder.jpg").mkdir()
    os.symlink(root / "gone.jpg", root / "dangling.jpg")
    im = Image.open(good)
    im.convert("CMYK").save(root / "cmyk.jpg")
    im.convert("P", palette=Image.Palette.ADAPTIVE).save(root / "palette.png", transparency=0)
    im.save(root / "odd name ünï <b>.PNG")
    buf = io.BytesIO()
    im.save(buf, "PNG")
    (root / "really_a_png.jpg").write_bytes(buf.getvalue())
    out = invoke("dedupe", str(root), "--index", str(tmp_path / "idx"), "--model",
                 "efficientnet-lite0", "--threshold", "0.99", "--output", str(tmp_path / "r"),
                 "-q")
    rep = json.loads(Path(next(x for x in out.splitlines() if x.startswith("Result JSON: "))
                          .removeprefix("Result JSON: ")).read_text())
    errors = {os.path.basename(e["path"]): e["error"] for e in rep["errors"]}
    assert set(errors) == {"truncated.jpg", "empty.jpg", "notes.png", "pipe.jpg",
                           "dangling.jpg"}
    assert "truncated" in errors["truncated.jpg"] and errors["empty.jpg"] == "empty file"
    assert "named pipe" in errors["pipe.jpg"] and "broken symlink" in errors["dangling.jpg"]
    assert "not a recognised image format" in errors["notes.png"]
    n_images = len(list((samples / "images" / "camera").glob("*.jpg"))) + 4
    assert rep["total_images_in_folders"] == n_images
    paired = {os.path.basename(p) for pair in report_pairs(rep) for p in pair}
    assert {"cmyk.jpg", "odd name ünï <b>.PNG", "really_a_png.jpg"} <= paired
    from imgsim_index.index.store import IndexStore

    with IndexStore.open_reader(str(tmp_path / "idx")) as store:
        embedded = {os.path.basename(r.path) for r in store.load().rows}
    assert {"cmyk.jpg", "palette.png", "odd name ünï <b>.PNG", "really_a_png.jpg"} <= embedded
