#!/usr/bin/env python3
"""The on-disk IVF's whole scan on Ray against the same scan in this process.

usage: python benchmarks/bench_ray_ivf.py [--n 1000000] [--dim 512] [--workdir DIR]
         [--no-write]

Writes N clustered vectors with planted pairs (bench_scale's generator), imports them
(the IVF is made), then runs `dedupe --threshold 0.95` twice, each a fresh process
through the CLI: locally and with `--engine ray` (a new local Ray instance: every node
sees the index folder). The two reports' pairs must be identical; wall time and peak
memory of the driver are printed beside each other.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.bench_common import fmt_table, run_cli  # noqa: E402
from benchmarks.bench_scale import write_vectors  # noqa: E402
from benchmarks.results_file import cpu_features, machine, this_command, update_section  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--planted", type=int, default=2000)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-ray-ivf-", dir=a.workdir))
    try:
        rng = np.random.default_rng(0)
        centres = rng.standard_normal((max(16, a.n // 1000), a.dim), dtype=np.float32)
        srcs = rng.choice(a.n // 2, a.planted, replace=False)
        cps = a.n // 2 + rng.choice(a.n - a.n // 2, a.planted, replace=False)
        planted = {int(b): (int(s), float(rng.uniform(0.96, 0.995)))
                   for s, b in zip(srcs, cps, strict=True)}
        sources: dict[int, np.ndarray] = {int(s): np.zeros(0, np.float32) for s in srcs}
        write_vectors(work / "v", 0, a.n, a.dim, centres, planted, rng, sources)
        idx = str(work / "index")
        run_cli(["import-vectors", str(work / "v.npy"), str(work / "v.paths"), "--index", idx,
                 "-q"])
        rows, reports = [], {}
        for engine in ("local", "ray"):
            out = work / f"out-{engine}"
            secs, peak, _, _ = run_cli(["dedupe", "--index", idx, "--threshold", "0.95",
                                     "--engine", engine, "--output", str(out), "-q"])
            report = json.loads(next(out.glob("*/report.json")).read_text())
            reports[engine] = report
            rows.append([engine, report["pair_search"]["method"], f"{secs:.0f}", f"{peak:.2f}",
                         f"{report['number_of_similar_pairs']:,}"])
        same = reports["local"]["similar_pairs"] == reports["ray"]["similar_pairs"]
        body = "\n".join([
            f"N = {a.n:,} clustered {a.dim}-d vectors, {a.planted:,} planted pairs, threshold "
            f"0.95; each dedupe a fresh process through the CLI (peak = the driver's VmHWM; "
            f"the Ray workers' memory is their own). CPU: {machine()}; {cpu_features()}.",
            "", fmt_table(["engine", "search", "seconds", "driver peak GiB", "pairs"], rows),
            "", f"- the two reports' similar_pairs are identical: {same}"])
        print(body)
        if not a.no_write:
            update_section("bench-ray-ivf", "The on-disk IVF scan on Ray against local",
                           this_command(), body)
        if not same:
            raise SystemExit("the Ray scan's pairs differ from the local scan's")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
