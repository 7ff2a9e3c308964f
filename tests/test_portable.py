"""The package imports and works where the OS has no fcntl, os.uname, os.pread/pwrite or
os.sched_getaffinity (Windows): the CLI answers --help, and a dedupe, an apply (its
journal is locked) and its undo run end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from PIL import Image

from tests.test_verify_stage import photo

ROOT = Path(__file__).resolve().parents[1]

# Runs in a fresh interpreter. fcntl cannot be imported (a meta-path finder refuses it) and
# the POSIX-only calls are gone; msvcrt stands in as Windows has it: a lock of bytes from the
# file's position, refused (OSError) while another open file holds them, made here of POSIX
# record locks taken before fcntl was hidden.
_NO_POSIX = r"""
import errno, os, sys, types
import fcntl as _fcntl

# what reads os.uname, or takes a module named msvcrt for Windows, on Linux only, at import
import asyncio, concurrent.futures.process, getpass, multiprocessing.connection  # noqa: E401,F401
import multiprocessing.util, numpy, subprocess, uuid  # noqa: E401,F401


class _NoFcntl:
    def find_spec(self, name, path=None, target=None):
        if name == "fcntl":
            raise ImportError("No module named 'fcntl'")
        return None


sys.modules.pop("fcntl")
sys.meta_path.insert(0, _NoFcntl())
for name in ("uname", "pread", "pwrite", "sched_getaffinity", "getuid"):
    if hasattr(os, name):
        delattr(os, name)


def _locking(fd, mode, nbytes):
    try:
        _fcntl.lockf(fd, _fcntl.LOCK_EX | _fcntl.LOCK_NB, nbytes, 0, os.SEEK_CUR)
    except OSError:
        raise PermissionError(errno.EACCES, "Permission denied") from None


sys.modules["msvcrt"] = types.ModuleType("msvcrt")
sys.modules["msvcrt"].LK_NBLCK = 2
sys.modules["msvcrt"].locking = _locking

from imgsim_index.cli import main

try:
    main(sys.argv[1:])
except SystemExit as exc:
    sys.exit(exc.code)
"""


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", _NO_POSIX, *args], capture_output=True,
                          text=True, env=env, cwd=ROOT)


def test_without_fcntl_and_uname_the_cli_works_end_to_end(tmp_path: Path) -> None:
    helped = _run("--help")
    assert helped.returncode == 0 and "dedupe" in helped.stdout, helped.stderr
    photos = tmp_path / "photos"
    photos.mkdir()
    im = photo(31)
    im.save(photos / "a.png")
    im.resize((320, 240), Image.Resampling.LANCZOS).save(photos / "a_small.jpg", quality=90)
    photo(32).save(photos / "b.png")
    found = _run("dedupe", str(photos), "--index", str(tmp_path / "idx"), "--model",
                 "efficientnet-lite0", "--workers", "0", "--output", str(tmp_path / "out"),
                 "--json", "-q")
    assert found.returncode == 0, found.stderr
    summary = json.loads(found.stdout)
    assert (summary["number_of_similar_pairs"], summary["photos_to_remove"]) == (1, 1)
    applied = _run("apply", summary["report_path"], "--move-to", str(tmp_path / "moved"),
                   "--yes", "--journal", str(tmp_path / "j.jsonl"))
    assert applied.returncode == 0, applied.stderr
    assert sorted(os.listdir(photos)) == ["a_small.jpg", "b.png"]  # the JPEG is kept
    undone = _run("undo", str(tmp_path / "j.jsonl"))
    assert undone.returncode == 0, undone.stderr
    assert sorted(os.listdir(photos)) == ["a.png", "a_small.jpg", "b.png"]
