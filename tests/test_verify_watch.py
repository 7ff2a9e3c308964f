"""verify finds and repairs damage; watch adds complete files, logs findings, stops cleanly."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner
from conftest import cli_ok

from imgsim_index.cli import cli


def test_verify_reports_and_repairs(samples: Path, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    shutil.copytree(samples / "images" / "camera", folder)
    idx = tmp_path / "idx"
    cli_ok("build", folder, "--index", idx, "--model", "efficientnet-lite0",
           "--checkpoint-every", "5", "-q")
    assert "OK: the index is consistent." in cli_ok("verify", "--index", idx)
    # damage: an orphan vector file, and the base vectors lost
    shutil.copyfile(idx / "vectors.faiss", idx / "segments" / "99999999.faiss")
    os.unlink(idx / "vectors.faiss")
    result = CliRunner().invoke(cli, ["verify", "--index", str(idx)])
    assert result.exit_code == 1
    assert "problem: vector file vectors.faiss cannot be read" in result.stdout
    assert "problem: orphan vector file segments/99999999.faiss" in result.stdout
    assert "verify --repair" in result.stdout
    fixed = cli_ok("verify", "--index", idx, "--repair")
    assert "repaired: removed" in fixed and "the next build re-embeds those files" in fixed
    assert not (idx / "segments" / "99999999.faiss").exists()
    n = len(list(folder.iterdir()))
    assert f"embedded {n}, unchanged 0," in cli_ok("build", folder, "--index", idx, "-q")
    assert "OK: the index is consistent." in cli_ok("verify", "--index", idx)


def test_watch_adds_new_files_logs_pairs_and_stops_on_sigterm(samples: Path,
                                                               tmp_path: Path) -> None:
    inbox, idx, log = tmp_path / "inbox", tmp_path / "idx", tmp_path / "watch.jsonl"
    inbox.mkdir()
    group = json.loads((samples / "truth.json").read_text())["groups"][0]
    cmd = [sys.executable, "-m", "imgsim_index", "watch", str(inbox), "--index", str(idx),
           "--model", "efficientnet-lite0", "--interval", "0.5", "--settle", "0.5",
           "--threshold", "0.9", "--log", str(log), "--output", str(tmp_path / "r"), "-q"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)
        for rel in group:
            shutil.copy2(samples / "images" / rel, inbox / Path(rel).name)
        # a file still being written: it grows between scans and must not be taken yet
        growing = inbox / "growing.jpg"
        data = (samples / "images" / group[0]).read_bytes()
        deadline = time.monotonic() + 120
        events: list[dict] = []  # type: ignore[type-arg]
        written = 0
        while time.monotonic() < deadline:
            if written < len(data):
                written = min(len(data), written + len(data) // 20)
                growing.write_bytes(data[:written])
            if log.exists():
                events = [json.loads(x) for x in log.read_text().splitlines()]
                added = sum(e["added"] + e["unreadable"] for e in events)
                if added >= len(group) + 1:
                    break
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "Stopped." in out
    assert sum(e["added"] for e in events) == len(group) + 1
    assert sum(e["unreadable"] for e in events) == 0  # the growing file was never half-read
    names = {Path(x).name for e in events for p in e.get("pairs", [])
             for x in (p["image1"], p["image2"])}
    assert {Path(rel).name for rel in group} <= names
