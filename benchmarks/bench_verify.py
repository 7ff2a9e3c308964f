#!/usr/bin/env python3
"""What verification costs: dedupe with and without it, on the evaluation set and the CCTV clip.

usage: python benchmarks/bench_verify.py --evalset DIR [--baseline TREE] [--repeats 3]
         [--model efficientnet-lite0]

Builds an index of DIR/images and of the README's generated CCTV clip (60 s, 1 frame/s),
then times real `imgsim-index dedupe` runs on each (median wall seconds of --repeats, and the
child's CPU seconds; runs in rounds, each code cosine-only then verified back to back, the
ratio the median of the rounds' ratios) with `--verify off` and with verification, both of
the existing index and from the folder into a new index (the README's command, embedding
included), at the thresholds the README and the quality benchmark use (evaluation set: the
model's default; CCTV: 0.99).
--baseline names a source tree of another commit (for example `git archive <commit> | tar -x
-C TREE`), timed in the same run with the same indexes. For the clip it checks that the
verified groups are one per quiet stretch, none mixing two.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
from make_cctv_clip import write_clip  # noqa: E402

from benchmarks.results_file import this_command, update_section  # noqa: E402


def adopt_orphans() -> None:
    """Make this process the reaper of its descendants (Linux): the worker processes of a
    verification are children of its forkserver, which outlives the command by a moment
    and is then reparented; reaped here, their CPU time counts among this process's
    children's (RUSAGE_CHILDREN)."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER


def reap() -> None:
    """Wait for every descendant left (the forkserver and its workers)."""
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def run(tree: Path, args: list[str]) -> tuple[float, float, str]:
    """(wall s, CPU s, stdout) of `python -m imgsim_index ARGS` with tree's code; the CPU
    of every process it started included."""
    env = {**os.environ, "PYTHONPATH": str(tree)}  # and run there: -m puts the cwd first
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "imgsim_index", *args], env=env, cwd=tree,
                         check=True, capture_output=True, text=True).stdout
    wall = time.perf_counter() - t
    reap()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, out


def report_of(out: str) -> dict:  # type: ignore[type-arg]
    line = next(x for x in out.splitlines() if x.startswith("Result JSON: "))
    return dict(json.loads(Path(line.removeprefix("Result JSON: ")).read_text()))


def stretches_check(report: dict, quiet: list[tuple[int, int]]) -> str:  # type: ignore[type-arg]
    """How the groups of a clip's report fall on its quiet stretches."""
    stretch = {s: k for k, (x, y) in enumerate(quiet) for s in range(x, y + 1)}

    def second(path: str) -> int:
        m = re.search(r"t=(\d+):(\d+):(\d+)", path)
        return int(m[1]) * 3600 + int(m[2]) * 60 + int(m[3]) if m else -1

    spans, found, mixed = [], set(), 0
    for g in report["groups"]:
        secs = sorted(second(p if isinstance(p, str) else p["path"]) for p in g["members"]) \
            if isinstance(g, dict) else sorted(second(p) for p in g)
        ks = {stretch[s] for s in secs if s in stretch}
        found |= ks
        mixed += len(ks) > 1
        spans.append(f"{secs[0]}-{secs[-1]} s ({len(secs)})")
    return (f"{len(spans)} groups: {', '.join(sorted(spans, key=lambda s: int(s.split('-')[0])))}"
            f"; quiet stretches found {len(found)}/{len(quiet)}, groups mixing two: {mixed}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--evalset", required=True, help="an evaluation set (with images/)")
    ap.add_argument("--baseline", default=None, help="source tree of the code to compare with")
    ap.add_argument("--baseline-name", default="before")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--model", default="efficientnet-lite0")
    a = ap.parse_args()
    adopt_orphans()
    sys.path.insert(0, str(ROOT))
    from imgsim_index.verify import candidate_threshold

    trees = ([(a.baseline_name, Path(a.baseline))] if a.baseline else []) + [("this", ROOT)]
    rows = ["| set | code | dedupe of | cosine only: wall s (CPU s) | verified: wall s (CPU s) "
            "| ratio (wall) | ratio (CPU) | pairs compared / joined through copies / apart as "
            "their groups |",
            "|---|---|---|---|---|---|---|---|"]
    notes: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "footage"
        clip.mkdir()
        quiet = write_clip(str(clip / "cam1.avi"), seconds=60, seed=0)
        sets = [("evaluation set", Path(a.evalset) / "images", str(candidate_threshold(a.model))),
                ("CCTV clip", clip, "0.99")]
        for name, folder, threshold in sets:
            index = Path(tmp) / f"index-{name.split()[0]}"
            wall, _, _ = run(ROOT, ["build", str(folder), "--index", str(index), "--model",
                                    a.model, "-q"])
            notes.append(f"- {name}: building the index (decode + embed) took {wall:.1f} s "
                         "wall, not included in the rows of an existing index.")
            modes = ("existing index", "from the folder")
            # run k of every code and both settings back to back (round k), so a ratio
            # pairs runs made moments apart: the machine's speed drifts between rounds
            runs: dict[tuple[str, str, str], list[tuple[float, float, str]]] = {}
            for mode in modes:
                for k in range(a.repeats):
                    for code, tree in trees:
                        for verify in ("off", "on"):
                            if mode == "existing index":
                                target, where = [], index
                            else:  # the README's command: a new index, embedding included
                                target = [str(folder)]
                                where = Path(tmp) / f"fresh-{name.split()[0]}-{code}-{verify}-{k}"
                            runs.setdefault((code, mode, verify), []).append(run(
                                tree, ["dedupe", *target, "--index", str(where), "--model",
                                       a.model, "--threshold", threshold, "--verify", verify,
                                       "--output", str(Path(tmp) / "out"), "-q"]))
            for code, _ in trees:
                for mode in modes:
                    off, on = runs[(code, mode, "off")], runs[(code, mode, "on")]
                    w0, c0 = statistics.median(r[0] for r in off), statistics.median(
                        r[1] for r in off)
                    w1, c1 = statistics.median(r[0] for r in on), statistics.median(
                        r[1] for r in on)
                    ratio_w = statistics.median(y[0] / x[0] for x, y in zip(off, on, strict=True))
                    ratio_c = statistics.median(y[1] / x[1] for x, y in zip(off, on, strict=True))
                    rep = report_of(on[-1][2])
                    v = rep["verification"]
                    rows.append(f"| {name} (threshold {threshold}) | {code} | {mode} | "
                                f"{w0:.2f} ({c0:.2f}) | {w1:.2f} ({c1:.2f}) | {ratio_w:.2f}x | "
                                f"{ratio_c:.2f}x | {v['compared']} / "
                                f"{v['skipped_as_grouped']} / "
                                f"{v.get('skipped_as_other_shot', 0)} |")
                    if name == "CCTV clip" and mode == "existing index":
                        notes.append(f"- CCTV clip, {code}, quiet stretches (s) {quiet}: "
                                     f"cosine only: {stretches_check(report_of(off[-1][2]), quiet)}"
                                     f". Verified: {stretches_check(rep, quiet)}.")
    body = "\n".join([
        f"Model: {a.model}. Median of {a.repeats} runs each; wall seconds of the whole command "
        "(Python start-up, loading the index, pair search, verification, report, gallery; "
        "'from the folder' is the README's `dedupe FOLDER --index NEW`: decoding and embedding "
        "every image too), "
        "with the child's CPU seconds (user + system) in brackets. The machine is shared, so "
        "wall times carry noise; the runs are made in rounds (each code, cosine only then "
        "verified, back to back) and a ratio is the median of the rounds' ratios.", "",
        *rows, "", *notes])
    print(body)
    update_section(f"verify-cost-{a.model}", f"Verification cost ({a.model})", this_command(),
                   body)


if __name__ == "__main__":
    main()
