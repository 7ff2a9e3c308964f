"""A damaged index is named in one line, `verify` finds each damage, `--repair` fixes what
it can and says what it cannot (hand-made vectors, no CNN)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from conftest import cli_main
from library_fixture import DIM, Img, make_library, run_dedupe

from imgsim_index.errors import IndexFormatError
from imgsim_index.index.check import verify_index
from imgsim_index.index.store import IndexStore
from imgsim_index.index.vector_file import read_vectors, write_vectors

IMAGES = [Img("a.jpg", 0, (90, 60)), Img("b.jpg", 0, (60, 40)), Img("c.jpg")]


def cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    return cli_main(args, capsys)


def catalog_pages(index: Path) -> tuple[Path, int, bytearray]:
    """The catalog file (its WAL checkpointed into it), its page size and its bytes."""
    import sqlite3

    db = index / "catalog.sqlite"
    con = sqlite3.connect(db)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page = con.execute("PRAGMA page_size").fetchone()[0]
    con.close()
    return db, page, bytearray(db.read_bytes())


def only_segment(index: Path) -> Path:
    [seg] = (index / "segments").iterdir()
    return seg


def test_garbage_catalog_is_one_line_everywhere(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    _, index = make_library(tmp_path, IMAGES)
    for name in os.listdir(index):
        if name.startswith("catalog.sqlite"):
            os.unlink(index / name)
    (index / "catalog.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(IndexFormatError, match=r"is damaged \(file is not a database\); "
                                               "run verify with repair"):
        run_dedupe(tmp_path, index)
    code, out, err = cli(["dedupe", "--index", str(index), "--output", str(tmp_path / "r")],
                         capsys)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "run `imgsim-index verify --repair`" in err
    report = verify_index(str(index))
    assert len(report.problems) == 1 and "file is not a database" in report.problems[0]
    code, out, _ = cli(["verify", "--index", str(index), "--repair"], capsys)
    assert code == 1 and "cannot repair: the catalog cannot be repaired in place" in out
    assert "OK" not in out


def test_nan_vector_is_found_and_repaired(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    photos, index = make_library(tmp_path, IMAGES)
    seg = only_segment(index)
    ids, vecs = read_vectors(str(seg))
    vecs[1, 3] = np.nan
    write_vectors(str(seg), ids, vecs)
    with pytest.raises(IndexFormatError, match="NaN or Inf.*run verify with repair"):
        run_dedupe(tmp_path, index)
    report = verify_index(str(index))
    assert report.problems == [f"{photos / 'b.jpg'}: vector holds NaN or Inf"]
    code, out, _ = cli(["verify", "--index", str(index), "--repair"], capsys)
    assert code == 0 and "removed 1 rows without a sound vector" in out
    assert verify_index(str(index)).ok
    with IndexStore.open_reader(str(index)) as store:
        assert [r.path for r in store.load().rows] == [str(photos / "a.jpg"),
                                                       str(photos / "c.jpg")]


def test_dimension_mismatch_is_found_and_repaired(tmp_path: Path) -> None:
    _, index = make_library(tmp_path, IMAGES)
    seg = only_segment(index)
    ids, vecs = read_vectors(str(seg))
    write_vectors(str(seg), ids, np.ascontiguousarray(vecs[:, : DIM // 2]))
    with pytest.raises(IndexFormatError, match=f"holds {DIM // 2}-d vectors"):
        run_dedupe(tmp_path, index)
    report = verify_index(str(index))
    assert report.problems == [f"segments/{seg.name} holds {DIM // 2}-d vectors, not {DIM}"]
    fixed = verify_index(str(index), repair=True)
    assert fixed.unrepairable == [] and "removed 3 rows" in fixed.repaired[0]
    assert verify_index(str(index)).ok


def test_deleted_segment_is_named_and_repaired(tmp_path: Path) -> None:
    _, index = make_library(tmp_path, IMAGES)
    seg = only_segment(index)
    os.unlink(seg)
    with pytest.raises(IndexFormatError, match="is missing; the index is damaged: run verify"):
        run_dedupe(tmp_path, index)
    report = verify_index(str(index))
    assert report.problems[0].startswith(f"vector file segments/{seg.name} cannot be read")
    assert "removed 3 rows" in verify_index(str(index), repair=True).repaired[0]
    assert verify_index(str(index)).ok


def test_verify_runs_sqlite_quick_check(tmp_path: Path) -> None:
    _, index = make_library(tmp_path, IMAGES)
    db, page, data = catalog_pages(index)
    assert len(data) >= 3 * page
    data[page + 8: 2 * page] = bytes(range(256)) * ((page - 8) // 256) + bytes((page - 8) % 256)
    db.write_bytes(bytes(data))
    report = verify_index(str(index))
    assert not report.ok
    assert report.unrepairable  # said, not raised


def test_garbage_pages_are_one_line_for_every_command(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The catalog's header and schema are sound, its table pages garbage: SQLite opens it
    and fails on the first read ("database disk image is malformed"). Every command names
    the damage in one line instead of a traceback."""
    from PIL import Image

    photos, index = tmp_path / "photos", tmp_path / "index"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for k in range(3):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), np.uint8)).save(photos / f"{k}.png")
    code, _, err = cli(["build", str(photos), "--index", str(index), "--model",
                        "efficientnet-lite0", "--workers", "0", "-q"], capsys)
    assert code == 0, err
    db, page, data = catalog_pages(index)
    garbage = np.random.default_rng(1).integers(0, 256, len(data) - page, np.uint8)
    data[page:] = garbage.tobytes()  # every page but the first (header + schema)
    db.write_bytes(bytes(data))
    for args in (["dedupe", "--index", str(index), "--output", str(tmp_path / "r")],
                 ["query", str(photos / "0.png"), "--index", str(index)],
                 ["build", str(photos), "--index", str(index), "--model",
                  "efficientnet-lite0", "--workers", "0"],
                 ["dedupe", str(photos), "--index", str(index), "--output", str(tmp_path / "r")],
                 ["verify", "--index", str(index)]):
        code, out, err = cli(args, capsys)
        assert code == 1, (args, out, err)
        if args[0] == "verify":
            assert "malformed" in out or "damaged" in out, out
            continue
        assert "Traceback" not in err and err.count("\n") == 1, (args, err)
        assert "is damaged (database disk image is malformed)" in err, (args, err)
        assert "run `imgsim-index verify --repair`" in err, (args, err)


def test_a_catalog_that_cannot_be_written_is_not_called_damaged(tmp_path: Path) -> None:
    """SQLite's 'attempt to write a readonly database' (a catalog this user may read but
    not write) is a permission to fix, not damage to repair: the error says which."""
    import sqlite3

    from imgsim_index.errors import InputError
    from imgsim_index.index.catalog import _Connection

    path = tmp_path / "catalog.sqlite"
    sqlite3.connect(path).execute("CREATE TABLE t (x)").connection.close()
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, factory=_Connection)
    db.catalog_path = str(path)
    with pytest.raises(InputError) as got:
        db.execute("INSERT INTO t VALUES (1)")
    db.close()
    assert str(got.value) == (f"the index catalog {path} is not writable (attempt to write a "
                              "readonly database); check the permissions of the index folder "
                              "and its files (nothing is damaged)")
