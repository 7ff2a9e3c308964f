#!/usr/bin/env python3
"""SIGKILL real `imgsim-index apply`, `apply --resume` and `undo` runs at random points
and check that every file is accounted for after each kill.

usage: stress_apply.py WORK_DIR [--iterations 100] [--seed 0]

Once: generate two folders of images with real duplicates (byte-exact copies,
which hard-link without a kept original, and JPEG re-encodings, which keep
one), and run `dedupe ... --model efficientnet-lite0` over them.

Each iteration (seeded) runs `apply --move-to DIR --yes` or `apply --hardlink
--yes` (alternating) and kills it with SIGKILL after a random number of journal
lines. Then it finishes with `apply --resume JOURNAL --yes` or takes it back with
`undo JOURNAL` (alternating; every other time that run is killed once more and
run again), and ends with an undo. After every step:
  * keepers and files outside the groups are untouched (same inode, same bytes);
  * each removable file is at its source or at its destination with its bytes
    unchanged (move), or its source is the original or a hard link to its keeper
    with the original kept for undo (hard link);
  * a finished apply did every file, a finished undo put every file back at its
    source and left no stray file behind.
The first violation stops the run with a message and exit status 1.

Between iterations the files are given back their original inodes from hard
links kept in WORK_DIR/pristine (an undo restores a byte-identical hard-linked
file as a copy, a new inode), and a build of the unchanged files lets the index
learn those inodes again (it would rightly refuse a file swapped behind its back).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from imgsim_index.actions.safety import move_target  # noqa: E402
from imgsim_index.ingest.identity import file_digest, normal_path  # noqa: E402

BASES = 8  # images with duplicates
UNIQUE = 3  # images without


class Violation(AssertionError):
    pass


def _image(seed: int) -> Image.Image:
    """A picture of random shapes: distinct pictures are far apart for the CNN."""
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (160, 120), tuple(int(c) for c in rng.integers(0, 255, 3)))
    draw = ImageDraw.Draw(img)
    for _ in range(12):
        x0, y0 = int(rng.integers(0, 140)), int(rng.integers(0, 100))
        box = (x0, y0, x0 + int(rng.integers(10, 80)), y0 + int(rng.integers(10, 60)))
        fill = tuple(int(c) for c in rng.integers(0, 255, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=fill)
    return img


def make_images(root: Path) -> list[Path]:
    """Two input folders: a/ holds originals and unique images, b/ exact and near copies."""
    a, b = root / "a", root / "b"
    (b / "sub").mkdir(parents=True)
    a.mkdir(parents=True)
    for i in range(BASES):
        _image(i).save(a / f"img{i}.png")
        shutil.copyfile(a / f"img{i}.png", b / f"copy{i}.png")  # byte-exact
        _image(i).save(b / "sub" / f"near{i}.jpg", quality=95)  # same picture, other bytes
    for i in range(UNIQUE):
        _image(100 + i).save(a / f"unique{i}.png")
    for k, p in enumerate(sorted(root.rglob("*.*"))):
        t = (1_600_000_000 + k) * 10**9
        os.utime(p, ns=(t, t))
    return [a, b]


def run_dedupe(folders: list[Path], work: Path) -> Path:
    cmd = [sys.executable, "-m", "imgsim_index", "dedupe", *map(str, folders),
           "--index", str(work / "index"), "--model", "efficientnet-lite0",
           "--output", str(work / "results"), "--threshold", "0.95",
           # the oldest file (a/imgN.png) keeps: its byte copy and its JPEG re-encoding are
           # then both removable (under `original`, the JPEG would keep and both PNGs go)
           "--keep", "oldest", "--workers", "1", "-q"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"dedupe failed ({done.returncode}): {done.stderr.strip()}")
    reports = sorted((work / "results").glob("*/report.json"))
    if len(reports) != 1:
        raise SystemExit(f"dedupe wrote {len(reports)} reports, expected one")
    return reports[0]


@dataclass
class Library:
    folders: list[str]
    report: str
    digest: dict[str, str]  # every file under the input folders -> its content digest
    key: dict[str, tuple[int, int]]  # ... -> (device, inode)
    mtime: dict[str, int]  # ... -> st_mtime_ns
    pristine: dict[str, str]  # ... -> a hard link to it outside the input folders
    keeper_of: dict[str, str]  # removable -> keeper

    def files_now(self) -> set[str]:
        return {str(p) for f in self.folders for p in Path(f).rglob("*") if not p.is_dir()}

    def restore(self, index: str) -> None:
        """Give every file back its original inode (hence bytes, mode and mtime), then let
        the index learn those inodes again: undo told it where the files were, and a file
        swapped behind its back would rightly be refused next time. A build of unchanged
        files only records their identities (no model is loaded, nothing is embedded)."""
        swapped = False
        for path, link in self.pristine.items():
            if os.path.lexists(path) and os.path.samefile(path, link):
                continue
            tmp = path + ".stress-restore"
            os.link(link, tmp)
            os.replace(tmp, path)
            swapped = True
        for stray in self.files_now() - set(self.pristine):
            os.unlink(stray)
        if swapped:
            done = subprocess.run([sys.executable, "-m", "imgsim_index", "build", *self.folders,
                                   "--index", index, "-q"], capture_output=True, text=True)
            if done.returncode != 0 or "embedded 0," not in done.stdout:
                raise SystemExit(f"the index did not take the restored files back: "
                                 f"{done.stdout.strip()} {done.stderr.strip()}")


def load_library(folders: list[Path], report_path: Path, work: Path) -> Library:
    report = json.loads(report_path.read_text())
    keeper_of = {normal_path(p): normal_path(g["keeper"])
                 for g in report["groups"] for p in g["removable"]}
    if not keeper_of:
        raise SystemExit("dedupe found no removable files; the stress test needs duplicates")
    identical = [p for p, k in keeper_of.items() if file_digest(p) == file_digest(k)]
    if not identical or len(identical) == len(keeper_of):
        raise SystemExit("the report needs both byte-identical and differing duplicates")
    pristine_dir = work / "pristine"
    pristine_dir.mkdir()
    digest, key, mtime, pristine = {}, {}, {}, {}
    for k, p in enumerate(sorted(str(p) for f in folders for p in f.rglob("*.*"))):
        st = os.stat(p)
        digest[p], key[p], mtime[p] = file_digest(p), (st.st_dev, st.st_ino), st.st_mtime_ns
        pristine[p] = str(pristine_dir / f"{k:03d}")
        os.link(p, pristine[p])
    return Library([str(f) for f in folders], str(report_path), digest, key, mtime,
                   pristine, keeper_of)


# -- running and killing ---------------------------------------------------------------
def journal_lines(journal: Path) -> int:
    try:
        return journal.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def records(journal: Path) -> list[dict]:
    out = []
    for line in journal.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # torn by the kill
    return out


def run(cmd: list[str], journal: Path, rng: random.Random | None, log: Path,
        expected_lines: int = 0) -> tuple[int, bool]:
    """Run `cmd`; with `rng`, SIGKILL it once the journal has grown by a random number
    of lines (1..expected_lines). Returns (exit status, killed)."""
    start = journal_lines(journal)
    target = rng.randint(1, max(1, expected_lines)) if rng else 0
    with open(log, "ab") as out:
        out.write(f"$ {' '.join(cmd)}\n".encode())
        out.flush()
        proc = subprocess.Popen(cmd, stdout=out, stderr=out)
        deadline = time.monotonic() + 120
        while rng and proc.poll() is None:
            if journal_lines(journal) - start >= target:
                time.sleep(rng.uniform(0.0, 0.002))  # land inside a step, not only between
                proc.send_signal(signal.SIGKILL)
                break
            if time.monotonic() > deadline:
                proc.kill()
                raise Violation(f"{cmd[3]} wrote no journal line in 120 s (see {log})")
            time.sleep(0.0005)
        rc = proc.wait(timeout=120)
    return rc, rc == -signal.SIGKILL


def _must_succeed(rc: int, what: str, log: Path) -> None:
    if rc != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]
        raise Violation(f"{what} exited with {rc}: {' | '.join(tail)}")


# -- the checks ------------------------------------------------------------------------
def _digest(path: str) -> str | None:
    try:
        return file_digest(path) if os.path.isfile(path) and not os.path.islink(path) else None
    except OSError:
        return None


def _same(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check(lib: Library, action: str, move_to: str, journal: Path, state: str) -> None:
    """state: 'any' (right after a kill), 'done' (apply finished) or 'back' (undo finished)."""
    backups = {r["path"]: r.get("backup") for r in records(journal) if r.get("type") == "begin"}
    for path, want in lib.digest.items():
        if path not in lib.keeper_of:  # a keeper or a file outside the groups
            st = os.lstat(path) if os.path.lexists(path) else None
            if st is None or (st.st_dev, st.st_ino) != lib.key[path] or _digest(path) != want:
                raise Violation(f"{path} (not removable) was touched")
            continue
        src = _digest(path)
        if action == "move":
            target = move_target(path, lib.folders, move_to)
            dst = _digest(target)
            if src not in (None, want) or dst not in (None, want):
                raise Violation(f"{path}: bytes changed (source {src}, destination {dst})")
            if src is None and dst is None:
                raise Violation(f"{path} is lost: neither at its source nor at {target}")
            if state == "done" and (src, dst) != (None, want):
                raise Violation(f"{path}: apply finished but the file is not (only) at {target}")
            if state == "back" and (src, dst) != (want, None):
                raise Violation(f"{path}: undo finished but the file is not back at its source")
            continue
        keeper = lib.keeper_of[path]
        if src is None:
            raise Violation(f"{path}: the source of a hard link disappeared")
        linked = _same(path, keeper)
        if linked and want != lib.digest[keeper]:
            backup = backups.get(path)
            if not backup or _digest(backup) != want:
                raise Violation(f"{path} is a link to its keeper but its original is not kept "
                                f"(backup {backup})")
        elif not linked and src != want:
            raise Violation(f"{path}: bytes changed")
        if state == "done" and not linked:
            raise Violation(f"{path}: apply finished but it is not a link to {keeper}")
        if state == "back" and linked:
            raise Violation(f"{path}: undo finished but it is still a link to {keeper}")
    if state == "back":
        _check_put_back(lib, action)
        stray = lib.files_now() - set(lib.digest)
        if stray:
            raise Violation(f"undo finished but stray files remain: {sorted(stray)}")
        left = [str(p) for p in Path(move_to).rglob("*") if not p.is_dir()]
        if left:
            raise Violation(f"undo finished but files remain under --move-to: {left}")


def _check_put_back(lib: Library, action: str) -> None:
    """After undo every file has its mtime again, and the very inode it had, except a
    hard-linked byte-identical file: undo gives that one back as a copy of its keeper."""
    for path in lib.keeper_of:
        st = os.lstat(path)
        copied = action == "hardlink" and lib.digest[path] == lib.digest[lib.keeper_of[path]]
        if st.st_mtime_ns != lib.mtime[path]:
            raise Violation(f"{path}: undo gave it back with another mtime")
        if not copied and (st.st_dev, st.st_ino) != lib.key[path]:
            raise Violation(f"{path}: undo gave back another file (inode), not the original")


def _ended(journal: Path) -> bool:
    return any(r.get("type") == "end" for r in records(journal))


def one_iteration(lib: Library, work: Path, k: int, seed: int) -> str:
    rng = random.Random(seed)
    action = ("move", "hardlink")[k % 2]
    finish = ("resume", "undo")[(k // 2) % 2]
    kill_again = (k // 4) % 2 == 1
    it = work / f"it-{k:04d}"
    it.mkdir()
    journal, move_to, log = it / "journal.jsonl", str(it / "moved"), it / "log.txt"
    cli = [sys.executable, "-m", "imgsim_index"]
    n = len(lib.keeper_of)
    how = ["--move-to", move_to] if action == "move" else ["--hardlink"]
    rc, killed = run([*cli, "apply", lib.report, *how, "--yes", "--journal", str(journal), "-q"],
                     journal, rng, log, expected_lines=2 * n + 2)
    if not killed:
        _must_succeed(rc, "apply", log)
    check(lib, action, move_to, journal, "any")
    notes = [f"{action} killed at line {journal_lines(journal)}" if killed
             else f"{action} finished before the kill"]
    if finish == "resume" and not _ended(journal):
        resume = [*cli, "apply", lib.report, "--resume", str(journal), "--yes", "-q"]
        if kill_again:
            rc, killed = run(resume, journal, rng, log, expected_lines=2 * n)
            check(lib, action, move_to, journal, "any")
            notes.append("resume killed" if killed else "resume finished before the kill")
        if not kill_again or (killed and not _ended(journal)):
            rc, _ = run(resume, journal, None, log)
            _must_succeed(rc, "apply --resume", log)
            notes.append("resumed")
        check(lib, action, move_to, journal, "done")
    elif finish == "resume":
        check(lib, action, move_to, journal, "done")
    undo = [*cli, "undo", str(journal), "-q"]
    if finish == "undo" and kill_again:
        rc, killed = run(undo, journal, rng, log, expected_lines=n + 1)
        check(lib, action, move_to, journal, "any")
        notes.append("undo killed" if killed else "undo finished before the kill")
    rc, _ = run(undo, journal, None, log)
    _must_succeed(rc, "undo", log)
    check(lib, action, move_to, journal, "back")
    lib.restore(str(work / "index"))
    shutil.rmtree(it)
    return f"iteration {k} (seed {seed}): " + ", ".join(notes) + ", undone; all files accounted"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("work", help="an empty or new folder for the images, index and runs")
    ap.add_argument("--iterations", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    work = Path(a.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    if any(work.iterdir()):
        raise SystemExit(f"{work} is not empty")
    folders = make_images(work / "images")
    lib = load_library(folders, run_dedupe(folders, work), work)
    print(f"{len(lib.digest)} files, {len(lib.keeper_of)} removable", flush=True)
    started = time.monotonic()
    for k in range(a.iterations):
        try:
            print(one_iteration(lib, work, k, a.seed + k), flush=True)
        except Violation as exc:
            print(f"VIOLATION in iteration {k} (seed {a.seed + k}): {exc}", file=sys.stderr)
            sys.exit(1)
    print(f"{a.iterations} iterations in {time.monotonic() - started:.0f} s: every file "
          "accounted for after every kill, all back at its source after undo")


if __name__ == "__main__":
    main()
