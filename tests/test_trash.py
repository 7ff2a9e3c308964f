"""apply --trash: the freedesktop trash under $XDG_DATA_HOME, the journal says where each
file went, undo restores from there, and the index follows both ways."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

from library_fixture import run_dedupe, simple_library


def imgsim(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(tmp_path / "home"), "XDG_DATA_HOME": str(tmp_path / "xdg")}
    return subprocess.run([sys.executable, "-m", "imgsim_index", *args], capture_output=True,
                          text=True, timeout=120, env=env)


def test_trash_then_undo_restores_from_the_trash(tmp_path: Path) -> None:
    (tmp_path / "home").mkdir()
    photos, first = simple_library(tmp_path)
    gone = sorted(p for g in first.report["groups"] for p in g["removable"])
    stats = {p: os.stat(p) for p in gone}
    journal = str(tmp_path / "t.jsonl")
    r = imgsim(tmp_path, "apply", first.report_path, "--trash", "-q")
    assert r.returncode == 0, r.stderr
    assert "Dry run: would move 3 files to the trash" in r.stdout
    r = imgsim(tmp_path, "apply", first.report_path, "--trash", "--yes", "--journal", journal,
               "-q")
    assert r.returncode == 0, r.stderr
    assert "Done: moved 3 files to the trash, freeing " in r.stdout
    assert "Index updated: 3 files renamed, 0 removed" in r.stdout
    trash = tmp_path / "xdg" / "Trash"
    done = {rec["n"]: rec for rec in map(json.loads, Path(journal).read_text().splitlines())
            if rec["type"] == "done"}
    assert len(done) == 3
    for rec in done.values():  # each file is where the journal says, with its trashinfo
        target = Path(rec["target"])
        assert target.parent == trash / "files" and target.is_file()
        info = (trash / "info" / f"{target.name}.trashinfo").read_text()
        assert rec["trashinfo"] == str(trash / "info" / f"{target.name}.trashinfo")
        named = unquote(info.split("Path=")[1].split("\n")[0])
        assert named in gone  # absolute: the photos lie outside XDG_DATA_HOME
    assert not any(os.path.exists(p) for p in gone)
    # two files named alike: the second goes in as "sunset_small 1.jpg"-style; all found
    assert len(list((trash / "files").iterdir())) == 3

    index = tmp_path / "index"
    assert run_dedupe(tmp_path, index).report["groups"] == []
    r = imgsim(tmp_path, "undo", journal, "-q")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Restored 3 files; 0 not restored." in r.stdout
    for p in gone:
        st = os.stat(p)
        assert (st.st_ino, st.st_size, st.st_mtime_ns) == (
            stats[p].st_ino, stats[p].st_size, stats[p].st_mtime_ns)
    assert list((trash / "files").iterdir()) == list((trash / "info").iterdir()) == []
    again = run_dedupe(tmp_path, index).report
    assert sorted(p for g in again["groups"] for p in g["removable"]) == gone


def test_undo_says_where_a_file_is_when_it_cannot_come_back(tmp_path: Path) -> None:
    (tmp_path / "home").mkdir()
    _, first = simple_library(tmp_path)
    journal = str(tmp_path / "t.jsonl")
    r = imgsim(tmp_path, "apply", first.report_path, "--trash", "--yes", "--journal", journal,
               "-q")
    assert r.returncode == 0, r.stderr
    rec = next(json.loads(x) for x in Path(journal).read_text().splitlines()
               if json.loads(x)["type"] == "begin")
    Path(rec["path"]).write_bytes(b"a new file under the old name")
    r = imgsim(tmp_path, "undo", journal, "-q")
    assert r.returncode == 1
    target = next(json.loads(x)["target"] for x in Path(journal).read_text().splitlines()
                  if json.loads(x)["type"] == "done" and json.loads(x)["n"] == rec["n"])
    assert (f"not restored {rec['path']}: {rec['path']} exists again; the trashed file stays "
            f"in the trash at {target}") in r.stdout
    assert "Restored 2 files; 1 not restored." in r.stdout
