#!/usr/bin/env python3
"""A whole dedupe at scale through the CLI: import N vectors, then `dedupe`, with peak memory.

usage: python benchmarks/bench_dedupe_scale.py [--n 1000000] [--dim 2048]
         [--threshold 0.9] [--data uniform|clustered] [--workdir DIR] [--no-write]

Writes N seeded unit vectors with planted near-duplicate pairs (bench_common,
5% of N, cosine uniform in [threshold - 0.05, 1)) to a .npy and a paths file,
then runs, each in a fresh process:

1. `imgsim-index import-vectors` (streamed build, then compaction);
2. `imgsim-index dedupe --index DIR --threshold T` with the automatic choice of
   pair search (approximate above 200,000 images).

It reports each command's wall time and peak resident memory (VmHWM, read by a
small wrapper when the command exits), the report's own stage timings, and the
recall of the planted pairs at or above the threshold in the report. The image
files do not exist, so the collage and gallery show placeholders: this measures
the index, the search, the grouping and the report, not decoding.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.bench_common import fmt_table, planted_vectors, run_cli  # noqa: E402
from benchmarks.results_file import (  # noqa: E402
    cpu_features,
    machine,
    this_command,
    update_section,
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--threshold", type=float, default=0.9)
    ap.add_argument("--data", choices=["uniform", "clustered"], default="uniform")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", default=None, help="scratch folder (needs ~3 x N x dim x 4 B)")
    ap.add_argument("--precisions", default="auto,fp32",
                    help="pair-search precisions to run dedupe with, comma-separated: auto (what "
                         "this CPU gets by default), fp32 (the float32 path every x86-64 CPU "
                         "takes without bf16 GEMMs; forced with $IMGSIM_PAIR_PRECISION), bf16")
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-dedupe-scale-", dir=a.workdir))
    try:
        t = time.perf_counter()
        x, planted = planted_vectors(a.n, a.dim, a.seed, a.threshold - 0.05, share=0.05,
                                     clusters=a.n // 200 if a.data == "clustered" else 0)
        np.save(work / "vectors.npy", x)
        scores = np.einsum("ij,ij->i", x[planted[:, 0]].astype(np.float64),
                           x[planted[:, 1]].astype(np.float64)).round(6)
        del x
        want = {(int(p), int(q)) for (p, q), s in zip(planted, scores, strict=True)
                if s >= a.threshold}
        with open(work / "paths.txt", "w", encoding="utf-8") as fh:
            for k in range(a.n):
                fh.write(f"/archive/cam{k % 16:02d}/img{k:09d}.jpg\n")
        print(f"inputs: {a.n} x {a.dim} {a.data}, {len(planted)} planted pairs, "
              f"{time.perf_counter() - t:.0f}s", flush=True)
        idx = str(work / "index")
        imp_s, imp_gib, _, _ = run_cli(["import-vectors", str(work / "vectors.npy"),
                                     str(work / "paths.txt"), "--index", idx, "-q"])
        print(f"import-vectors: {imp_s:.0f}s, peak {imp_gib:.2f} GiB", flush=True)
        os.unlink(work / "vectors.npy")
        row_of = {f"/archive/cam{k % 16:02d}/img{k:09d}.jpg": k for k in range(a.n)}
        rows, notes = [["import-vectors (streamed, then compaction)", f"{imp_s:.0f}",
                        f"{imp_gib:.2f}"]], []
        for precision in a.precisions.split(","):
            env = {} if precision == "auto" else {"IMGSIM_PAIR_PRECISION": precision}
            out_dir = work / f"out-{precision}"
            # with progress bars: the console must show the pair search advancing; the
            # vectors have no image files behind them, so there is nothing to verify
            ded_s, ded_gib, _, err = run_cli(
                ["dedupe", "--index", idx, "--threshold", str(a.threshold), "--verify", "off",
                 "--output", str(out_dir)], env)
            print(f"dedupe ({precision}): {ded_s:.0f}s, peak {ded_gib:.2f} GiB", flush=True)
            bars = [b.strip() for b in err.replace("\r", "\n").splitlines()
                    if b.startswith("Pair search")]
            progress = (f"{len(bars)} progress updates, last: `{bars[-1]}`" if bars
                        else "no progress shown for the pair search")
            print(f"pair search progress on the console: {progress}", flush=True)
            report = json.loads(next(out_dir.glob("*/report.json")).read_text())
            got = {tuple(sorted((row_of[p["image1"]], row_of[p["image2"]])))
                   for p in report["similar_pairs"]}
            recall = len(want & got) / max(1, len(want))
            search = report["pair_search"]
            stages = ", ".join(f"{k} {v:.1f}s" for k, v in report["timings_seconds"].items())
            rows.append([f"dedupe --threshold {a.threshold} ({search['method']}, "
                         f"{search['precision']}; asked: {precision})", f"{ded_s:.0f}",
                         f"{ded_gib:.2f}"])
            notes += [
                f"- {precision}: dedupe stages (report.json timings): {stages}",
                f"- {precision}: pair search progress on stderr: {progress}",
                f"- {precision}: pairs reported: {report['number_of_similar_pairs']:,}; "
                f"groups: {report['number_of_unique_groups']:,}; planted pairs found: "
                f"{len(want & got):,} of {len(want):,} (recall {recall:.4f})",
            ]
        flags = f"{machine()}; {cpu_features()}"
        body = "\n".join([
            f"N = {a.n:,} vectors of dim {a.dim} ({a.data}, seed {a.seed}), "
            f"{len(planted):,} planted pairs, {len(want):,} of them at or above "
            f"{a.threshold}. Each command in a fresh process through the CLI; peak = VmHWM. "
            f"CPU: {flags}.",
            "",
            fmt_table(["command", "seconds", "peak GiB"], rows),
            "",
            *notes,
            f"- vectors: {a.n * a.dim * 4 / 2**30:.1f} GiB in float32",
        ])
        print(body)
        if not a.no_write:
            cmd = this_command()
            update_section(f"bench-dedupe-scale-{a.data}-{a.n}",
                           f"A whole dedupe through the CLI ({a.data}, N = {a.n:,})", cmd, body)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
