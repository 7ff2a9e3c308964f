#!/usr/bin/env python3
"""Memory and time of the on-disk IVF at scale: import, whole dedupe, new-only dedupe.

usage: python benchmarks/bench_scale.py [--sizes 1000000,3000000] [--dim 512]
         [--planted 2000] [--new 1000] [--threshold 0.95] [--workdir DIR]
         [--baseline REV] [--baseline-upto N] [--avx2-upto N] [--check-upto N]
         [--no-compact-above N] [--no-write]

For each size N, in a fresh scratch folder and each command in a fresh process
through the CLI (peak = VmHWM of that process, wall = its whole run):

1. writes N clustered unit vectors (N / 1000 centres) with `--planted` near-duplicate
   pairs at cosine 0.96-0.995, streamed to a .npy (never all in memory);
2. `import-vectors` (the index passes 200,000 vectors, so the IVF is trained and filled);
3. `dedupe --threshold T` of the whole index: planted pairs found, their reported scores
   against float64 scores of the generated vectors (exact, not approximate);
4. the same with OpenBLAS forced to its AVX2 kernels (OPENBLAS_CORETYPE=Haswell, the path
   of AVX2-only CPUs; the scan uses no bf16), up to `--avx2-upto` vectors;
5. `--baseline REV` (e.g. the commit before the IVF): that revision's `dedupe` of the same
   index (its in-memory approximate search), up to `--baseline-upto` vectors;
6. `import-vectors` of `--new` more vectors (a tenth of them copies of old ones) and
   `dedupe --new-only`: its pairs must be exactly the whole dedupe's pairs that involve a
   new vector (checked by a second whole dedupe, up to `--check-upto` vectors).

The image files do not exist (imported vectors are not verified), so this measures the
index, the search, the grouping and the report.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.bench_common import PEAK_WRAPPER, fmt_table, run_cli  # noqa: E402
from benchmarks.results_file import (  # noqa: E402
    cpu_features,
    machine,
    this_command,
    update_section,
)

ROOT = Path(__file__).resolve().parents[1]
# the AVX2 path: what an AVX2-only CPU runs (the scan uses no bf16 or AMX)
AVX2 = {"OPENBLAS_CORETYPE": "Haswell", "FAISS_OPT_LEVEL": "avx2"}
CHUNK = 100_000
QUERY = """
import json, sys, time
import numpy as np
from imgsim_index.index import ivf
from imgsim_index.index.catalog import Catalog
from imgsim_index.search.ivf_search import IvfSearcher
idx, n, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
cat = Catalog(idx + "/catalog.sqlite", readonly=True)
t = time.perf_counter()
searcher = IvfSearcher(idx, cat, ivf.read_manifest(idx))  # what the service keeps per commit
setup = time.perf_counter() - t
ids = np.sort(np.random.default_rng(1).choice(np.arange(1, n + 1), count, replace=False))
x = searcher.lookup.read(ids)
times = []
for q in range(count):  # one request at a time, as the service answers one query image
    t = time.perf_counter()
    searcher.top_k(x[q:q + 1], 10)
    times.append(time.perf_counter() - t)
print(json.dumps({"setup": setup, "times": times}))
"""


def run_query(idx: str, n: int, count: int) -> tuple[float, float, float, float]:
    """(p50 s, p99 s, peak GiB, setup s) of `count` one-vector queries in one fresh process:
    the search part of the service's /v1/query (the image's embedding adds a constant),
    with the searcher it keeps per commit made once (setup)."""
    e = {**os.environ, "PYTHONPATH": str(ROOT)}
    code = PEAK_WRAPPER + QUERY
    proc = subprocess.run([sys.executable, "-c", code, idx, str(n), str(count)],
                          capture_output=True, text=True, env=e, cwd=str(ROOT))
    if proc.returncode != 0:
        raise RuntimeError(f"query benchmark failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    times = sorted(out["times"])
    peak = [line for line in proc.stderr.splitlines() if line.startswith("PEAK_KIB ")]
    p99 = times[min(len(times) - 1, int(round(0.99 * (len(times) - 1))))]
    return times[len(times) // 2], p99, int(peak[-1].split()[1]) / 2**20, out["setup"]


def path_of(k: int) -> str:
    return f"/cctv/cam{k % 10}/f{k:09d}.jpg"


def write_vectors(out: Path, start: int, n: int, dim: int, centres: np.ndarray,
                  planted: dict[int, tuple[int, float]], rng: np.random.Generator,
                  sources: dict[int, np.ndarray]) -> None:
    """Rows start..start+n-1 into out.npy and their paths into out.paths, chunk by chunk.
    planted: copy row -> (source row, cosine); sources are kept as they are written."""
    with open(f"{out}.npy", "wb") as fh, open(f"{out}.paths", "w", encoding="utf-8") as ph:
        np.lib.format.write_array_header_1_0(
            fh, {"descr": "<f4", "fortran_order": False, "shape": (n, dim)})
        for s in range(start, start + n, CHUNK):
            m = min(CHUNK, start + n - s)
            c = rng.integers(0, len(centres), m)
            x = centres[c] + 1.2 * rng.standard_normal((m, dim), dtype=np.float32)
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            for k in range(s, s + m):
                if k in planted:
                    a, t = planted[k]
                    va = sources[a].astype(np.float64)
                    u = rng.standard_normal(dim)
                    u -= (u @ va) * va
                    u /= np.linalg.norm(u)
                    x[k - s] = (t * va + np.sqrt(1 - t * t) * u).astype(np.float32)
                if k in sources:
                    sources[k] = x[k - s].copy()
            fh.write(x.astype("<f4").tobytes())
            ph.write("".join(path_of(k) + "\n" for k in range(s, s + m)))


def report_pairs(out_dir: Path) -> tuple[dict[tuple[str, str], float], dict[str, object]]:
    report = json.loads(next(out_dir.glob("*/report.json")).read_text())
    pairs = {tuple(sorted((p["image1"], p["image2"]))): p["similarity_score"]
             for p in report["similar_pairs"]}
    return pairs, report


def stored_scores(idx: str, pairs: list[tuple[int, int]]) -> dict[tuple[str, str], float]:
    """float64 scores of the vectors as the index stores them, rounded as reports are."""
    from imgsim_index.index.catalog import Catalog
    from imgsim_index.index.ivf_sync import VectorLookup

    cat = Catalog(os.path.join(idx, "catalog.sqlite"), readonly=True)
    try:
        ids = {k: cat.row_of(path_of(k)).id for p in pairs for k in p}  # type: ignore[union-attr]
        with VectorLookup(idx, cat) as lookup:
            keys = sorted(ids)
            vec = dict(zip(keys, lookup.read(np.asarray([ids[k] for k in keys])).astype(
                np.float64), strict=True))
    finally:
        cat.close()
    return {tuple(sorted((path_of(a), path_of(b)))): round(float(vec[a] @ vec[b]), 6)
            for a, b in pairs}


def one_size(n: int, a: argparse.Namespace, work: Path) -> tuple[list[list[str]], list[str]]:
    rng = np.random.default_rng(a.seed)
    centres = rng.standard_normal((max(16, n // 1000), a.dim), dtype=np.float32)
    srcs = rng.choice(n // 2, a.planted, replace=False)
    cps = n // 2 + rng.choice(n - n // 2, a.planted, replace=False)
    planted = {int(b): (int(s), float(rng.uniform(0.96, 0.995))) for s, b in zip(srcs, cps,
                                                                                  strict=True)}
    sources: dict[int, np.ndarray] = {int(s): np.zeros(0, np.float32) for s in srcs}
    t = time.perf_counter()
    write_vectors(work / "base", 0, n, a.dim, centres, planted, rng, sources)
    gen = time.perf_counter() - t
    idx = str(work / "index")
    rows, notes = [], [f"- N = {n:,}: vectors generated in {gen:.0f} s"]
    # a compaction rewrites every vector once more: above --no-compact-above the segments
    # are kept (disk: the .npy, the segments and the IVF at once, not a fourth copy)
    compact = [] if n <= a.no_compact_above else ["--no-compact"]
    s, gib, _, _ = run_cli(["import-vectors", str(work / "base.npy"), str(work / "base.paths"),
                         "--index", idx, "-q", *compact])
    os.unlink(work / "base.npy")
    rows.append([f"{n:,}", "import-vectors (streamed, then IVF trained and filled"
                 f"{', segments not compacted' if compact else ''})", f"{s:.0f}", f"{gib:.2f}",
                 ""])
    exact = stored_scores(idx, [(p, q) for q, (p, _) in planted.items()])
    ivf_bytes = sum(f.stat().st_size for f in (Path(idx) / "ivf").glob("*"))
    notes.append(f"- N = {n:,}: IVF files {ivf_bytes / 2**30:.2f} GiB, vectors "
                 f"{n * a.dim * 4 / 2**30:.2f} GiB float32")

    def whole(label: str, env: dict[str, str] | None = None, root: Path = ROOT
              ) -> dict[tuple[str, str], float]:
        out = work / f"out-{label}"
        args = ["dedupe", "--index", idx, "--threshold", str(a.threshold), "--output",
                str(out), "-q"]
        secs, peak, _, _ = run_cli(args, env, root)
        got, report = report_pairs(out)
        found = [(path_of(p), path_of(q)) for q, (p, _) in planted.items()]
        hit = sum(tuple(sorted(f)) in got for f in found)
        wrong = sum(got[k] != v for k, v in exact.items() if k in got)
        search = report["pair_search"]
        rows.append([f"{n:,}", f"dedupe --threshold {a.threshold} ({label}: "
                     f"{search['method']}, nprobe {search.get('nprobe')})", f"{secs:.0f}",
                     f"{peak:.2f}", f"{hit}/{len(planted)}"])
        notes.append(f"- N = {n:,}, {label}: {len(got):,} pairs; planted found {hit} of "
                     f"{len(planted)}; planted pairs whose reported score is not the float64 score "
                     f"of the stored vectors: {wrong}; stages {report['timings_seconds']}")
        shutil.rmtree(out)
        return got

    whole("default")
    if n <= a.avx2_upto:
        whole("AVX2 path", AVX2)
    if a.baseline and n <= a.baseline_upto:
        base = work / "baseline"
        if not base.exists():
            base.mkdir()
            subprocess.run(f"git -C {ROOT} archive {a.baseline} | tar -x -C {base}",
                           shell=True, check=True)
        whole(f"baseline {a.baseline}, in-memory", {"BENCH_IVF_ABOVE": ""}, root=base)
    qs = run_query(idx, n, a.queries)
    rows.append([f"{n:,}", f"query: top-10 of one vector through the IVF ({a.queries} in a "
                 f"row; searcher made once in {qs[3]:.1f} s)",
                 f"p50 {qs[0]:.3f} / p99 {qs[1]:.3f}", f"{qs[2]:.2f}", ""])
    # new vectors: a tenth are copies of old rows
    new_planted = {n + k: (int(rng.integers(0, n)), float(rng.uniform(0.96, 0.995)))
                   for k in range(0, a.new, 10)}
    # the new copies' sources are old rows: their vectors are read back from the index
    from imgsim_index.index.catalog import Catalog
    from imgsim_index.index.ivf_sync import VectorLookup

    cat = Catalog(os.path.join(idx, "catalog.sqlite"), readonly=True)
    with VectorLookup(idx, cat) as lookup:
        for k in {p for p, _ in new_planted.values()}:
            row = cat.row_of(path_of(k))
            assert row is not None
            sources[k] = lookup.read(np.asarray([row.id]))[0]
    cat.close()
    write_vectors(work / "new", n, a.new, a.dim, centres, new_planted, rng, sources)
    s, gib, _, _ = run_cli(["import-vectors", str(work / "new.npy"), str(work / "new.paths"),
                         "--index", idx, "-q"])
    rows.append([f"{n:,}", f"import-vectors of {a.new:,} new (a new IVF part)", f"{s:.1f}",
                 f"{gib:.2f}", ""])

    def new_only(label: str, env: dict[str, str] | None = None
                 ) -> dict[tuple[str, str], float]:
        out = work / f"out-new-{label}"
        secs, peak, _, _ = run_cli(["dedupe", "--index", idx, "--new-only", "--threshold",
                                 str(a.threshold), "--output", str(out), "-q"], env)
        got, report = report_pairs(out)
        hit = sum(tuple(sorted((path_of(p), path_of(q)))) in got
                  for q, (p, _) in new_planted.items())
        rows.append([f"{n:,}", f"dedupe --new-only ({a.new:,} new, {label})", f"{secs:.1f}",
                     f"{peak:.2f}", f"{hit}/{len(new_planted)}"])
        notes.append(f"- N = {n:,}, new-only ({label}): {len(got)} pairs, stages "
                     f"{report['timings_seconds']}")
        shutil.rmtree(out)
        return got

    def last_dedupe(seq: str | None = None) -> str | None:
        """The index's record of its last dedupe, read (or written back, so that a second
        new-only run sees the same new rows)."""
        c = Catalog(os.path.join(idx, "catalog.sqlite"), readonly=seq is None)
        try:
            if seq is not None:
                c.set_meta("last_dedupe_seq", seq)
            return c.get_meta("last_dedupe_seq")
        finally:
            c.close()

    before = last_dedupe()
    got_new = new_only("default")
    if n <= a.avx2_upto and before is not None:
        last_dedupe(before)
        same = new_only("AVX2 path", AVX2) == got_new
        notes.append(f"- N = {n:,}: new-only on the AVX2 path gives the same pairs: {same}")
    if n <= a.check_upto:
        after = whole("whole again, to check new-only")
        new_paths = {path_of(k) for k in range(n, n + a.new)}
        want = {p for p in after if p[0] in new_paths or p[1] in new_paths}
        notes.append(f"- N = {n:,}: new-only pairs equal the whole dedupe's pairs with a new "
                     f"vector: {set(got_new) == want} ({len(want)} pairs)")
    return rows, notes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000000,3000000")
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--planted", type=int, default=2000)
    ap.add_argument("--new", type=int, default=1000)
    ap.add_argument("--threshold", type=float, default=0.95)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--baseline", default=None, help="a revision whose dedupe is the baseline")
    ap.add_argument("--baseline-upto", type=int, default=3_000_000)
    ap.add_argument("--avx2-upto", type=int, default=3_000_000)
    ap.add_argument("--check-upto", type=int, default=1_000_000)
    ap.add_argument("--no-compact-above", type=int, default=5_000_000)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--section", default="bench-scale")
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args()
    rows, notes = [], []
    for n in [int(v) for v in a.sizes.split(",")]:
        work = Path(tempfile.mkdtemp(prefix=f"bench-scale-{n}-", dir=a.workdir))
        try:
            r, nt = one_size(n, a, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        rows += r
        notes += nt
        print(fmt_table(["N", "command", "seconds", "peak GiB", "planted found"], rows),
              flush=True)
    body = "\n".join([
        f"Clustered {a.dim}-d unit vectors, {a.planted:,} planted pairs at cosine "
        f"0.96-0.995, threshold {a.threshold}; each command a fresh process through the CLI, "
        f"peak = VmHWM, wall = the whole command. CPU: {machine()}; {cpu_features()}.",
        "", fmt_table(["N", "command", "seconds", "peak GiB", "planted found"], rows), "",
        *notes])
    print(body)
    if not a.no_write:
        update_section(a.section, "On-disk IVF at scale: memory and time", this_command(),
                       body)


if __name__ == "__main__":
    main()
