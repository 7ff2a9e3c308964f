"""Every decoder in every stage and every process: a HEIC, a JPEG XL and a camera RAW file
indexed in one process are verified, shown and queried in another, where no plugin was
registered before; a pair that could not be verified is never called another shot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from imgsim_index.ingest.formats import register_plugins
from tests.conftest import cli_ok, report_of
from tests.test_formats import write_dng
from tests.test_verify_stage import photo

ROOT = Path(__file__).resolve().parents[1]


def _fresh(*args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in a new interpreter: nothing registered but what the command does itself."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "imgsim_index", *args], capture_output=True,
                          text=True, env=env, cwd=ROOT)


def test_heic_jxl_and_raw_copies_are_verified_in_a_later_process(tmp_path: Path) -> None:
    register_plugins()  # the writers need the plugins
    photos = tmp_path / "photos"
    photos.mkdir()
    for name, seed, fmt in (("a", 11, "HEIF"), ("b", 12, "JXL")):
        im = photo(seed)
        im.save(photos / f"{name}.jpg", quality=92)
        im.save(photos / f"{name}.{'heic' if fmt == 'HEIF' else 'jxl'}", fmt, quality=90)
    raw = photo(13)
    raw.save(photos / "c.jpg", quality=92)
    write_dng(photos / "c.dng", preview=np.asarray(raw.resize((800, 600))), w=64, h=48)
    idx, out = tmp_path / "idx", tmp_path / "out"
    cli_ok("build", str(photos), "--index", str(idx), "--model", "efficientnet-lite0",
           "--workers", "0", "-q")
    run = _fresh("dedupe", "--index", str(idx), "--output", str(out), "--verify-workers", "0",
                 "-q")
    assert run.returncode == 0, run.stderr
    report = report_of(run.stdout)
    verdicts = {tuple(sorted(Path(p).name for p in (r["image1"], r["image2"]))):
                (r["match"], r["evidence"]) for r in report["similar_pairs"]}
    near = {tuple(sorted(Path(p).name for p in (r["image1"], r["image2"]))): r["evidence"]
            for r in report["near_misses"]}
    assert not near, near
    assert verdicts[("a.heic", "a.jpg")][0] == "copy", verdicts
    assert verdicts[("b.jpg", "b.jxl")][0] == "copy", verdicts
    assert verdicts[("c.dng", "c.jpg")][0] == "copy", verdicts
    # the thumbnails of the gallery were made in that process too
    [thumbs] = (out / d / "thumbs" for d in os.listdir(out))
    assert len(os.listdir(thumbs)) == 6, report["errors"]
    # and a query of a HEIC in a fresh process verifies its hits
    q = _fresh("query", str(photos / "a.heic"), "--index", str(idx), "--json")
    assert q.returncode == 0, q.stderr
    hits = {Path(h["path"]).name: h for h in json.loads(q.stdout)[0]["matches"]}
    assert hits["a.jpg"]["match"] == "copy", hits


def test_an_unverified_pair_is_not_called_another_shot(tmp_path: Path) -> None:
    """A file gone after indexing: its pair is listed apart as not verified, in the report's
    evidence, on the console and in the gallery, never as another shot."""
    photos = tmp_path / "photos"
    photos.mkdir()
    im = photo(21)
    im.save(photos / "a.png")
    im.resize((320, 240), Image.Resampling.LANCZOS).save(photos / "b.jpg", quality=85)
    idx = tmp_path / "idx"
    cli_ok("build", str(photos), "--index", str(idx), "--model", "efficientnet-lite0",
           "--workers", "0", "-q")
    (photos / "b.jpg").write_bytes(b"not an image any more")
    stdout = cli_ok("dedupe", "--index", str(idx), "--output", str(tmp_path / "out"),
                    "--verify-workers", "0", "-q")
    report = report_of(stdout)
    [row] = report["near_misses"]
    assert row["match"] == "not_verified", row
    assert row["evidence"].startswith("could not read it"), row
    assert "Listed apart: 0 other shots and 1 pair not verified." in stdout, stdout
    assert "1 other shots" not in stdout, stdout
    from imgsim_index.report.html import review_data

    [near] = review_data(report)["near_misses"]
    assert near["match"] == "not_verified", near
