"""A long-lived index: adds embed only what is new, --new-only, changed files, prune, query."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import cli_ok, pair_set, report_of

from imgsim_index.cli import cli
from imgsim_index.index.store import IndexStore

M = ("--model", "efficientnet-lite0")


@pytest.fixture
def split(samples: Path, tmp_path: Path) -> tuple[Path, list[Path], list[Path]]:
    """A folder holding the first half of the sample images; the second half kept aside."""
    files = sorted((samples / "images").rglob("*.*"))
    first, later = files[::2], files[1::2]
    folder = tmp_path / "photos"
    for f in first:
        dest = folder / f.relative_to(samples / "images")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, dest)
    return folder, first, later


def test_add_embeds_exactly_the_new_images_and_new_only_matches_full(split, samples, tmp_path):  # type: ignore[no-untyped-def]
    folder, first, later = split
    idx = tmp_path / "idx"
    out = cli_ok("build", folder, "--index", idx, *M, "-q")
    assert f"embedded {len(first)}," in out
    cli_ok("dedupe", "--index", idx, "--threshold", "0.9", "--output", tmp_path / "r", "-q")
    new_paths = set()
    for f in later:
        dest = folder / f.relative_to(samples / "images")
        shutil.copy2(f, dest)
        new_paths.add(str(dest))
    out = cli_ok("add", folder, "--index", idx, "-q")
    assert f"embedded {len(later)}, unchanged {len(first)}," in out
    new_only = report_of(cli_ok("dedupe", "--index", idx, "--threshold", "0.9", "--new-only",
                                "--output", tmp_path / "r", "-q"))
    full = report_of(cli_ok("dedupe", "--index", idx, "--threshold", "0.9",
                            "--output", tmp_path / "r", "-q"))
    expected = {p for p in pair_set(full) if p[0] in new_paths or p[1] in new_paths}
    assert expected and pair_set(new_only) == expected
    assert new_only["compare_mode"] == "new_only" and new_only["new_images"] == len(later)
    assert pair_set(full) - expected  # some pairs were between old images only
    # nothing new since the last dedupe: no pairs
    again = report_of(cli_ok("dedupe", "--index", idx, "--threshold", "0.9", "--new-only",
                             "--output", tmp_path / "r", "-q"))
    assert again["new_images"] == 0 and again["similar_pairs"] == []


def test_changed_file_is_re_embedded_under_its_id_and_prune_forgets(split, tmp_path):  # type: ignore[no-untyped-def]
    folder, first, _ = split
    idx = tmp_path / "idx"
    cli_ok("build", folder, "--index", idx, *M, "-q")
    files = sorted(folder.rglob("*.*"))
    target, other = files[0], files[-1]
    db = sqlite3.connect(idx / "catalog.sqlite")
    old_id = db.execute("SELECT id FROM images WHERE path = ?", (str(target),)).fetchone()[0]
    shutil.copyfile(other, target)
    os.utime(target, ns=(10**18, 10**18))
    assert "embedded 1, unchanged" in cli_ok("add", folder, "--index", idx, "-q")
    row = db.execute("SELECT id, size FROM images WHERE path = ?", (str(target),)).fetchone()
    assert row == (old_id, other.stat().st_size)
    hits = json.loads(cli_ok("query", target, "--index", idx, "--json", "--top-k", "3",
                             "--include-self"))
    top = {m["path"] for m in hits[0]["matches"] if m["similarity_score"] > 0.9999}
    assert {str(target), str(other)} <= top  # the new content, twice in the index now
    target.unlink()
    out = cli_ok("add", folder, "--index", idx, "--prune", "-q")
    assert "forgot 1 missing" in out
    with IndexStore.open_reader(str(idx)) as store:
        paths = {r.path for r in store.load().rows}
    assert str(target) not in paths and len(paths) == len(first) - 1
    assert "OK: the index is consistent." in cli_ok("verify", "--index", idx)


def test_query_lists_best_matches_and_reports_unreadable_files(split, tmp_path):  # type: ignore[no-untyped-def]
    folder, _, _ = split
    idx = tmp_path / "idx"
    cli_ok("build", folder, "--index", idx, *M, "-q")
    probe = sorted(folder.rglob("*.jpg"))[0]
    bad = tmp_path / "bad.jpg"
    bad.write_text("no")
    got = CliRunner().invoke(cli, ["query", str(probe), str(bad), "--index", str(idx),
                                   "--top-k", "2", "--include-self"])
    assert got.exit_code == 1, got.output
    lines = got.stdout.splitlines()
    assert lines[0] == str(probe) and lines[1].split() == ["1.000000", str(probe)]
    assert f"{bad}" in lines and "  unreadable: not a recognised image format" in lines
    assert got.stderr == (f"Error: query image {bad} cannot be read: not a recognised image "
                          "format\n")
    data = json.loads(cli_ok("query", probe, "--index", idx, "--json", "--threshold", "0.999",
                             "--include-self"))
    assert [m["path"] for m in data[0]["matches"]] == [str(probe)]
    # without --include-self the query file itself is left out, and top-k still holds
    data = json.loads(cli_ok("query", probe, "--index", idx, "--json", "--top-k", "2",
                             "--include-below"))
    assert len(data[0]["matches"]) == 2 and str(probe) not in [m["path"] for m in
                                                               data[0]["matches"]]
    missing = CliRunner().invoke(cli, ["query", str(tmp_path / "nope.jpg"), "--index",
                                       str(idx)])
    assert missing.exit_code == 1
    assert missing.stderr == f"Error: query image {tmp_path / 'nope.jpg'} does not exist\n"


def test_second_writer_is_refused_naming_the_holder(split, tmp_path):  # type: ignore[no-untyped-def]
    folder, _, _ = split
    idx = tmp_path / "idx"
    cli_ok("build", folder, "--index", idx, *M, "-q")
    holder = IndexStore.open_writer(str(idx), IndexStore.read_manifest(str(idx)))
    try:
        result = CliRunner().invoke(cli, ["add", str(folder), "--index", str(idx), "-q"])
        assert result.exit_code != 0
        assert f"pid {os.getpid()}" in str(result.exception)
        # readers work while the writer holds the lock
        assert "Total images found" in cli_ok("dedupe", "--index", idx, "--output",
                                              tmp_path / "r", "-q")
    finally:
        holder.close()


def test_model_mismatch_is_refused(split, tmp_path):  # type: ignore[no-untyped-def]
    import torch
    from torchvision.models import resnet50

    folder, _, _ = split
    idx = tmp_path / "idx"
    cli_ok("build", folder, "--index", idx, *M, "-q")
    weights = tmp_path / "r50.pth"
    torch.save(resnet50(weights=None).state_dict(), weights)
    result = CliRunner().invoke(cli, ["add", str(folder), "--index", str(idx), "--model",
                                      "resnet50", "--weights", str(weights), "-q"])
    assert result.exit_code != 0
    msg = str(result.exception)
    assert "built with efficientnet-lite0" in msg and "refusing to add vectors" in msg
    lite0_weights = IndexStore.read_manifest(str(idx))["weights_id"]
    assert lite0_weights in msg.split("refusing")[0]  # the index's side only
    assert lite0_weights not in msg.split("refusing")[1], msg
