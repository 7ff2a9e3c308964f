"""A write that finds no room: a one-line error, nothing lost, the index consistent.

A real full disk needs a small filesystem (root only); a file-size limit
(RLIMIT_FSIZE, `ulimit -f`) fails writes beyond it the same way, with EFBIG,
which imgsim-index treats like ENOSPC. The commands run as real subprocesses
under that limit, with SIGXFSZ ignored so the write fails instead of killing.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def run_limited(args: list[str], limit: int | None) -> subprocess.CompletedProcess[str]:
    def limit_writes() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        if limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run([sys.executable, "-m", "imgsim_index", *args], capture_output=True,
                          text=True, timeout=300, preexec_fn=limit_writes)


def one_line_error(run: subprocess.CompletedProcess[str]) -> str:
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr
    lines = [line for line in run.stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, run.stderr
    return lines[0]


def test_build_on_a_full_disk_stops_with_one_line_and_keeps_a_consistent_index(
        tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for k in range(12):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), np.uint8)).save(images / f"{k}.png")
    index = tmp_path / "index"
    build = ["build", str(images), "--index", str(index), "--model", "efficientnet-lite0",
             "--checkpoint-every", "4", "--batch-size", "4", "--workers", "1", "-q"]
    line = one_line_error(run_limited(build, 20_000))  # the new catalog's log does not fit
    assert line.startswith("Error: no space left on device while writing the index ")
    assert str(index) in line
    assert line.endswith("; the index keeps what was committed. Free some space and run the "
                         "command again")
    assert "(File too large)" in line or "(SQLite: disk I/O error)" in line
    # with room again, the build finishes what it could not write
    again = run_limited(build, None)
    assert again.returncode == 0, again.stderr
    with open(index / "manifest.json") as fh:
        assert json.load(fh)["counts"] == {"embedded": 12, "errors": 0}
    verify = run_limited(["verify", "--index", str(index)], None)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "OK: the index is consistent" in verify.stdout
    assert not [p for p in os.listdir(index) if ".tmp-" in p]
    # an index that exists (its catalog is 28 KB): its next commit does not fit
    for k in range(12, 16):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), np.uint8)).save(images / f"{k}.png")
    line = one_line_error(run_limited(build, 20_000))
    assert line.startswith("Error: no space left on device while writing the index ")
    assert str(index) in line
    verify = run_limited(["verify", "--index", str(index)], None)
    assert verify.returncode == 0 and "OK: the index is consistent" in verify.stdout
    with open(index / "manifest.json") as fh:
        assert json.load(fh)["counts"] == {"embedded": 12, "errors": 0}
    assert not [p for p in os.listdir(index) if ".tmp-" in p]
