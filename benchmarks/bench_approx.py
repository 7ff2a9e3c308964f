#!/usr/bin/env python3
"""Approximate pair search (pairs_approx) against exact mode: time and pair recall.

usage: python benchmarks/bench_approx.py [--n 200000] [--dim 2048]
         [--thresholds 0.9,0.95,0.99] [--query-share 0.03] [--nprobe 16] [--nlist N]
         [--data uniform|clustered] [--seed 0] [--repeat 2] [--exact-full] [--no-write]

Generates N seeded unit vectors with planted near-duplicate pairs (5% of N,
cosine uniform in [0.85, 1)). Exact mode over all N is O(N^2), so by default
it is timed on a seeded random share of query rows (find_pairs with
`queries`, which scores every query against all N) and its full time is
extrapolated linearly: t_full = t_sample x (N - 1) / (2 x queries), as pair
search cost is proportional to the pairs scored. --exact-full times the real
thing instead. Recall at each threshold is measured two ways: over every exact
pair touching the sampled queries (the ground truth), and over all planted
pairs at or above the threshold. It also checks that every approximate pair is
an exact pair with the exact score. Target: 20x faster than exact, recall >=
0.995. `uniform` data (isotropic noise) is the hard case for cells; `clustered`
(N/200 centres of uneven sizes) is closer to real embeddings.
For 1M vectors: --n 1000000 --query-share 0.005 (about 9 GB of RAM).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.bench_common import (  # noqa: E402
    fmt_table,
    pair_keys,
    peak_rss_mib,
    planted_vectors,
)
from benchmarks.results_file import this_command, update_section  # noqa: E402
from imgsim_index import search  # noqa: E402
from imgsim_index.search import ApproxSettings, Pairs, PairSettings  # noqa: E402
from imgsim_index.search.approx import cells_for  # noqa: E402
from imgsim_index.search.tiles import resolve_precision  # noqa: E402


def find_pairs(x: np.ndarray, settings: PairSettings, queries: np.ndarray | None = None
               ) -> Pairs:
    return search.find_pairs(x, settings, method="exact", queries=queries)[0]


def find_pairs_approx(x: np.ndarray, settings: PairSettings, approx: ApproxSettings) -> Pairs:
    return search.find_pairs(x, settings, method="approx", approx=approx)[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--thresholds", default="0.9,0.95,0.99")
    ap.add_argument("--query-share", type=float, default=0.03,
                    help="share of rows whose exact pairs are the ground truth")
    ap.add_argument("--nprobe", type=int, default=None,
                    help="cells probed per vector (default: by threshold, AUTO_NPROBE)")
    ap.add_argument("--nlist", type=int, default=None)
    ap.add_argument("--coarse-dim", type=int, default=ApproxSettings.coarse_dim)
    ap.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto",
                    help="approx candidate scores (auto: bf16 where this CPU does it faster)")
    ap.add_argument("--exact-precision", choices=["auto", "bf16", "fp32"], default="auto",
                    help="exact mode's candidate scores (auto, as dedupe runs it)")
    ap.add_argument("--data", choices=["uniform", "clustered"], default="uniform")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--exact-full", action="store_true", help="time exact mode over all N")
    ap.add_argument("--repeat", type=int, default=2,
                    help="timed runs per method, interleaved; the fastest counts")
    ap.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    a = ap.parse_args()
    thresholds = sorted(float(t) for t in a.thresholds.split(","))
    low = min(thresholds) - 0.05
    t0 = time.perf_counter()
    x, planted = planted_vectors(a.n, a.dim, a.seed, low, share=0.05,
                                 clusters=a.n // 200 if a.data == "clustered" else 0)
    print(f"generated {a.n} x {a.dim} {a.data} vectors, {len(planted)} planted pairs in "
          f"{time.perf_counter() - t0:.0f}s", flush=True)
    settings = ApproxSettings(nprobe=a.nprobe, nlist=a.nlist, coarse_dim=a.coarse_dim,
                              seed=a.seed)

    # ground truth: exact pairs touching the sampled queries (all N with --exact-full)
    rng = np.random.default_rng(a.seed + 7)
    q = a.n if a.exact_full else max(1, round(a.query_share * a.n))
    queries = np.arange(a.n) if a.exact_full else np.sort(rng.choice(a.n, q, replace=False))
    find_pairs(x[:2], PairSettings(threshold=low))  # warm-up outside the timing
    resolve_precision("auto")  # the one-time bf16 check, also outside
    exact_runs: list[float] = []
    approx_runs: dict[float, list[float]] = {t: [] for t in thresholds}
    results = {}
    for rep in range(a.repeat):  # interleaved; the fastest run of each counts
        t = time.perf_counter()
        exact_settings = PairSettings(threshold=thresholds[0], precision=a.exact_precision)
        truth = (find_pairs(x, exact_settings) if a.exact_full else
                 find_pairs(x, exact_settings, queries=queries))
        exact_runs.append(time.perf_counter() - t)
        print(f"[{rep + 1}/{a.repeat}] exact ({q} queries): {exact_runs[-1]:.1f}s", flush=True)
        for thr in thresholds:
            t = time.perf_counter()
            results[thr] = find_pairs_approx(
                x, PairSettings(threshold=thr, precision=a.precision), settings)
            approx_runs[thr].append(time.perf_counter() - t)
            print(f"[{rep + 1}/{a.repeat}] approx t={thr}: {approx_runs[thr][-1]:.1f}s",
                  flush=True)
    precision = resolve_precision(a.precision, a.n)
    exact_s = min(exact_runs)
    exact_full_s = exact_s if a.exact_full else exact_s * (a.n - 1) / (2 * q)
    how = ("measured" if a.exact_full else
           f"extrapolated from {q} queries in {exact_s:.1f}s")
    print(f"exact: {exact_full_s:.0f}s for all {a.n} ({how}), {len(truth)} pairs", flush=True)
    in_queries = np.zeros(a.n, bool)
    in_queries[queries] = True
    truth_score = dict(zip(pair_keys(truth.i, truth.j, a.n).tolist(), truth.score.tolist(),
                           strict=True))
    pk = pair_keys(planted[:, 0], planted[:, 1], a.n)
    planted_score = np.einsum("ij,ij->i", x[planted[:, 0]].astype(np.float64),
                              x[planted[:, 1]].astype(np.float64)).round(6)

    rows, ok = [], True
    for thr in thresholds:
        got, approx_s = results[thr], min(approx_runs[thr])
        keys = pair_keys(got.i, got.j, a.n)
        touching = in_queries[got.i] | in_queries[got.j]
        want = {k for k, s in truth_score.items() if s >= thr}
        found = dict(zip(keys[touching].tolist(), got.score[touching].tolist(), strict=True))
        subset = all(k in want and truth_score[k] == s for k, s in found.items())
        ok &= subset
        recall = len(want & set(found)) / max(1, len(want))
        above = planted_score >= thr
        planted_recall = float(np.isin(pk[above], keys).mean()) if above.any() else 1.0
        speedup = exact_full_s / approx_s
        print(f"t={thr}: approx {approx_s:.1f}s ({speedup:.1f}x), {len(got)} pairs, recall "
              f"{recall:.4f} on {len(want)} exact pairs, {planted_recall:.4f} on "
              f"{int(above.sum())} planted; subset of exact: {subset}", flush=True)
        nprobe = settings.probes_for(thr)
        nlist = a.nlist or cells_for(a.n, nprobe)
        rows.append([f"{thr}", f"{nprobe} / {nlist}", f"{exact_full_s:.0f}", f"{approx_s:.1f}",
                     f"{speedup:.1f}x",
                     f"{recall:.4f} ({len(want)})", f"{planted_recall:.4f} ({int(above.sum())})",
                     "yes" if subset else "NO"])
    table = fmt_table(["threshold", "nprobe / nlist", "exact s", "approx s", "speed-up",
                       "recall (exact pairs of sampled queries)", "recall (planted pairs)",
                       "approx pairs are exact pairs, exact scores"], rows)
    body = "\n".join([
        f"N = {a.n}, dim = {a.dim}, {a.data} data, seed {a.seed}; {len(planted)} planted "
        f"pairs (cosine uniform in [{low:.2f}, 1)). Approx settings: {asdict(settings)} "
        "(nprobe None: by threshold; nlist None: sqrt(nprobe x N)).",
        f"Exact time: {how}. Times are the fastest of {a.repeat} interleaved runs (the "
        "machine is shared; single runs varied up to 2x).",
        "",
        table,
        "",
        "- target: >= 20x faster than exact with recall >= 0.995",
        "- approx time includes PCA, k-means training and cell assignment",
        f"- candidate scores in {precision} (--precision {a.precision}), exact mode's in "
        f"{resolve_precision(a.exact_precision, a.n)} (--exact-precision {a.exact_precision}); "
        "both then re-scored in float64",
        f"- peak resident memory of this benchmark process (vectors, exact and approx "
        f"runs): {peak_rss_mib() / 1024:.1f} GiB",
    ])
    print(body)
    if not a.no_write:
        cmd = this_command()
        size = "" if a.n == 200_000 else f"-{a.n}"
        update_section(f"bench-approx-{a.data}{size}",
                       f"Approximate pair search ({a.data} data, N = {a.n})", cmd, body)
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
