"""scripts/stress_apply.py: apply, resume and undo killed at random points, 3 iterations.

The script builds a real index (efficientnet-lite0) of generated images once,
then kills real `apply` / `apply --resume` / `undo` processes with SIGKILL and
checks every file after each kill. The 100-iteration run is in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "stress_apply.py"


def test_every_file_accounted_for_after_killed_apply_resume_and_undo(tmp_path: Path) -> None:
    # iterations 0..2: move killed then resumed, hardlink killed then resumed, move killed
    # then undone; each ends with an undo that must put every file back
    done = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "work"),
                           "--iterations", "3", "--seed", "0"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    # 8 pictures, each with a byte copy and a JPEG re-encoding (all found: the cosine or the
    # hash channel), 3 unique: 16 removable
    assert lines[0] == "27 files, 16 removable"
    assert [line.split(":")[0] for line in lines[1:4]] == [
        "iteration 0 (seed 0)", "iteration 1 (seed 1)", "iteration 2 (seed 2)"]
    assert all(line.endswith("undone; all files accounted") for line in lines[1:4])
    assert lines[1].startswith("iteration 0 (seed 0): move ")
    assert lines[2].startswith("iteration 1 (seed 1): hardlink ")
    assert lines[4].startswith("3 iterations in ")
    assert lines[4].endswith("every file accounted for after every kill, "
                             "all back at its source after undo")
    # each iteration cleans up after itself; the originals' links stay for the next
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == [
        "images", "index", "pristine", "results"]


def test_a_work_folder_in_use_is_refused(tmp_path: Path) -> None:
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "x").write_text("x")
    done = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "work")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().endswith(f"{tmp_path / 'work'} is not empty")
