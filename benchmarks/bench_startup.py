#!/usr/bin/env python3
"""Start-up and no-op costs, as whole processes: `--help`, a full build of N images against
a no-op build of the same folder (same run), and a no-op build of an index of many files;
then the fixed cost of a real build (a new index of 1 image against one of N) and a query
of one image (on the N-image index and on one of --vectors vectors), for this tree and,
with --baseline, for another source tree in the same run; and how much of such a query is
the image's embedding (model session and image, timed inside a fresh process), with
EfficientNet-Lite0 and with the default model, ResNet50 (random weights, unless
--no-resnet).

usage: python benchmarks/bench_startup.py [--n 96] [--big 10000] [--vectors 100000]
                                          [--repeat 3] [--no-resnet]
                                          [--baseline TREE [--baseline-commit C]]

--baseline names a source tree of another commit (`git archive <commit> | tar -x -C TREE`).
The caches (ONNX file, weights digest) are warm: each tree builds once before it is timed.

The many-file index is filled through the store with random vectors (under the identity
a real build wrote), for files that exist on disk, so the no-op build's scan and catalog
lookups are real while no CNN runs for 10,000 images.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.bench_common import photos, write_random_index  # noqa: E402
from benchmarks.results_file import (  # noqa: E402
    cpu_features,
    machine,
    this_command,
    update_section,
)
from imgsim_index.cli.query_cmds import BLAS_THREAD_TIMEOUT  # noqa: E402
from imgsim_index.index.catalog import NewRow  # noqa: E402
from imgsim_index.index.store import IndexStore  # noqa: E402

MODEL = "efficientnet-lite0"  # weights from a pip package: no download


ROOT = Path(__file__).resolve().parents[1]


# The query runs take the path an AVX2-only CPU takes where a library lets us choose it:
# OpenBLAS (numpy's matrix products) is pinned to its Haswell (AVX2) kernels. ONNX Runtime
# picks its kernels itself and has no such switch.
AVX2 = {"OPENBLAS_CORETYPE": "Haswell"}
# Every measured process keeps compiled bytecode (in a folder of the run, not in the trees),
# as an installed package does: with PYTHONDONTWRITEBYTECODE set, each process would compile
# the library's sources again (about 0.06 s of a query).
PYCACHE = {"dir": str(Path(tempfile.gettempdir()) / "imgsim-bench-pycache")}  # main: in its tmp


def child_env(tree: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, **(extra or {}), "PYTHONPYCACHEPREFIX": PYCACHE["dir"],
            "PYTHONPATH": str(tree)}


def timed(*args: str, tree: Path = ROOT) -> float:
    return timed_cpu(*args, tree=tree)[0]


def timed_cpu(*args: str, tree: Path = ROOT, env: dict[str, str] | None = None,
              ) -> tuple[float, float]:
    """(wall seconds, CPU seconds: user + system) of one process of `tree`'s code."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run([sys.executable, *args], check=True, stdout=subprocess.DEVNULL,
                   env=child_env(tree, env), cwd=tree)  # -m puts cwd first
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def many_files_index(folder: Path, index: Path, n: int, like: Path) -> None:
    """`n` small files in `folder`, catalogued in `index` with the identity of `like`."""
    identity = IndexStore.read_manifest(str(like))
    for k in range(n):
        sub = folder / f"d{k % 100:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"f{k:06d}.jpg").write_bytes(b"\xff\xd8" + k.to_bytes(4, "little"))
    root = str(folder.resolve())
    rows = []
    for dirpath, _, names in os.walk(root):
        for name in names:
            p = os.path.join(dirpath, name)
            st = os.stat(p)
            rows.append(NewRow(p, root, st.st_size, st.st_mtime_ns, 64, 48))
    rng = np.random.default_rng(1)
    vec = rng.standard_normal((len(rows), int(identity["dim"])), dtype=np.float32)
    vec /= np.linalg.norm(vec, axis=1, keepdims=True)
    store = IndexStore.open_writer(str(index), identity)
    try:
        store.commit(rows, vec)
        if store.needs_compaction():
            store.compact()
    finally:
        store.close()


def vectors_index(index: Path, n: int, like: Path) -> None:
    """`n` random unit vectors under the identity of `like`, written through the store."""
    write_random_index(str(index), n, IndexStore.read_manifest(str(like)), seed=2)


def one_image_embedding(image: Path, index: Path, repeat: int) -> float:
    """Decode and embed one image in a warm process (the model loaded, ONNX as built)."""
    from imgsim_index.embed.embedder import Embedder, EmbedSettings
    from imgsim_index.pipeline.build import BuildSettings, resolve_model

    emb = Embedder(resolve_model(str(index), BuildSettings()), "auto", "auto")
    settings = EmbedSettings(workers=0)
    runs = []
    for _ in range(repeat + 1):
        t = time.perf_counter()
        list(emb.embed_files([str(image)], settings))
        runs.append(time.perf_counter() - t)
    return statistics.median(runs[1:])


# In a fresh process, after the imports a query makes anyway (numpy, the library): the
# model and its ONNX session made (onnxruntime imported) while the one image decodes, as
# `query` does, then the image embedded. This is what a one-image query cannot avoid; the
# rest of its process is start-up, the index and the output. It runs with OpenBLAS's
# idle threads sleeping at once, as `query` sets them (else their spinning after numpy's
# import competes with the session for the 2 cores and counts in its CPU time).
_EMBED_CHILD = """
import json, sys, time
import numpy
from imgsim_index.embed.embedder import Embedder, EmbedSettings
from imgsim_index.pipeline.build import BuildSettings, resolve_model
index, image = sys.argv[1:3]
t = time.perf_counter(); c = time.process_time()
emb = Embedder(resolve_model(index, BuildSettings()), "auto", "auto", defer_session=True)
list(emb.embed_files([image], EmbedSettings(workers=0)))
print(json.dumps([time.perf_counter() - t, time.process_time() - c]))
"""


EMBED_ENV = {"OPENBLAS_THREAD_TIMEOUT": BLAS_THREAD_TIMEOUT}


def fresh_embedding(image: Path, index: Path) -> tuple[float, float, float, float]:
    """In a fresh process of this tree (see _EMBED_CHILD): (wall, CPU) seconds of making
    the model session and embedding `image`, then (wall, CPU) of that whole process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", _EMBED_CHILD, str(index), str(image)],
                         check=True, capture_output=True, text=True,
                         env=child_env(ROOT, {**AVX2, **EMBED_ENV})).stdout
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    inner_wall, inner_cpu = json.loads(out.splitlines()[-1])
    return (inner_wall, inner_cpu, wall,
            (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime))


def real_runs(tree: Path, t: Path, photos_dir: Path, n: int, big: Path,
              repeat: int) -> dict[str, float]:
    """A build of 1 image and of `n` (new indexes), and queries of one image, as whole
    processes of `tree`'s code."""
    cli = ["-m", "imgsim_index"]
    one = t / f"one-{tree.name}"
    one.mkdir()
    (one / "p.jpg").write_bytes(next(photos_dir.rglob("*.jpg")).read_bytes())

    def build(src: Path, name: str) -> float:
        return timed(*cli, "build", str(src), "--index", str(t / name), "--model", MODEL, "-q",
                     tree=tree)

    build(one, f"warm-{tree.name}")  # fills the caches this tree keeps
    b1 = [build(one, f"b1-{tree.name}-{k}") for k in range(repeat)]
    bn = build(photos_dir, f"bn-{tree.name}")
    return {"build1": statistics.median(b1), "buildn": bn}


def query_runs(trees: list[tuple[str, Path]], t: Path, big: Path,
               repeat: int) -> dict[str, dict[str, float]]:
    """Queries of one image (--verify off, top 5) on each tree's n-image index and on `big`,
    the trees taking turns in each round so that they share the machine's load alike;
    after one unmeasured round. Medians of wall and CPU seconds."""
    runs: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for round_ in range(repeat + 1):
        for name, tree in trees:
            image = str(t / f"one-{tree.name}" / "p.jpg")
            for case, index in (("query_n", t / f"bn-{tree.name}"), ("query_big", big)):
                got = timed_cpu("-m", "imgsim_index", "query", image, "--index", str(index),
                                "--top-k", "5", "--verify", "off", tree=tree, env=AVX2)
                if round_:
                    runs.setdefault((name, case), []).append(got)
    out: dict[str, dict[str, float]] = {}
    for (name, case), timings in runs.items():
        out.setdefault(name, {})[case] = statistics.median(w for w, _ in timings)
        out[name][f"{case}_cpu"] = statistics.median(c for _, c in timings)
    return out


def resnet_section(args: argparse.Namespace, t: Path, trees: list[tuple[str, Path]]) -> str:
    """One-image queries on an index built with the default model, ResNet50 (randomly
    initialised weights in a file: ImageNet's cannot be downloaded here; the time is the
    same), and the share of that image's embedding, as for the other model."""
    import torch
    from torchvision.models import resnet50

    weights = t / "resnet50-random.pth"
    torch.manual_seed(0)  # the same file every run: its ONNX export is cached once
    torch.save(resnet50(weights=None).state_dict(), weights)
    image = t / f"one-{ROOT.name}" / "p.jpg"
    for _, tree in trees:  # the first build exports the network (cached): not timed
        timed("-m", "imgsim_index", "build", str(t / "photos" / "d0"), "--index",
              str(t / f"r50-{tree.name}"), "--model", "resnet50", "--weights", str(weights),
              "-q", tree=tree)
    runs: dict[str, list[tuple[float, float]]] = {}
    for round_ in range(args.repeat + 1):
        for name, tree in trees:
            got = timed_cpu("-m", "imgsim_index", "query", str(image), "--index",
                            str(t / f"r50-{tree.name}"), "--top-k", "5", "--verify", "off",
                            tree=tree, env=AVX2)
            if round_:
                runs.setdefault(name, []).append(got)
    fresh = [fresh_embedding(image, t / f"r50-{ROOT.name}") for _ in range(args.repeat + 1)][1:]
    ew, ec = (statistics.median(f[i] for f in fresh) for i in range(2))
    rows = []
    for name, timings in runs.items():
        w, c = (statistics.median(x[i] for x in timings) for i in range(2))
        rows.append(f"| {name} | {w:.3f} ({c:.3f}) | {ew / w:.0%} ({ec / c:.0%}) |")
    return (
        "\nThe same for the default model, ResNet50 (`--model resnet50 --weights FILE` at "
        "build, a randomly initialised state_dict: ImageNet weights cannot be downloaded "
        "here, and the time is the same), on an index of "
        f"{len(list((t / 'photos' / 'd0').glob('*.jpg')))} of the photos: making its ONNX "
        f"session and embedding the image took {ew:.3f} s wall ({ec:.3f} s CPU) in a fresh "
        "process.\n\n| code | query: s (CPU s) | embedding's share |\n|---|---|---|\n"
        + "\n".join(rows) + "\n")


def real_section(args: argparse.Namespace, t: Path) -> str:
    trees = ([("before", Path(args.baseline).resolve())] if args.baseline else []) + [
        ("this", ROOT)]
    big = t / "vectors"
    vectors_index(big, args.vectors, t / "idx")
    res = {name: real_runs(tree, t, t / "photos", args.n, big, args.repeat)
           for name, tree in trees}
    for name, got in query_runs(trees, t, big, args.repeat).items():
        res[name].update(got)
    image, index = t / f"one-{ROOT.name}" / "p.jpg", t / f"bn-{ROOT.name}"
    embed1 = one_image_embedding(image, index, args.repeat)
    fresh = [fresh_embedding(image, index) for _ in range(args.repeat + 1)][1:]
    ew, ec, pw, pc = (statistics.median(f[i] for f in fresh) for i in range(4))
    n = args.n
    rows, shares = [], []
    for name, r in res.items():
        share = (r["buildn"] - r["build1"]) / (n - 1)
        rows.append(
            f"| {name} | {r['build1']:.2f} | {r['buildn']:.2f} | {share:.3f} | "
            f"{r['build1'] - share:.2f} | {r['query_n']:.2f} | {r['query_big']:.2f} |")
        shares.append(
            f"| {name} | {r['query_n']:.3f} ({r['query_n_cpu']:.3f}) | "
            f"{ew / r['query_n']:.0%} ({ec / r['query_n_cpu']:.0%}) | "
            f"{r['query_big']:.3f} ({r['query_big_cpu']:.3f}) | "
            f"{ew / r['query_big']:.0%} ({ec / r['query_big_cpu']:.0%}) |")
    return (
        f"\nReal builds and queries ({MODEL}, `--backend auto`, whole processes, caches "
        f"warm, median of {args.repeat} except the {n}-image build): a new index of 1 image "
        f"and of {n}; the steady-state share of one image is (build {n} - build 1) / {n - 1},"
        " the fixed cost is build 1 minus that share. Queries of one image with "
        f"`--verify off`, top 5, on the {n}-image index and on {args.vectors:,} vectors "
        "written through the store under the same identity (compacted: one vector file).\n\n"
        f"| code | build 1 s | build {n} s | s per image | fixed cost s | query on {n} s "
        f"| query on {args.vectors:,} s |\n|---|---|---|---|---|---|---|\n"
        + "\n".join(rows)
        + f"\n\nDecoding and embedding that one image in a warm process: {embed1:.3f} s.\n"
        "\nHow much of a one-image query process is that image's embedding: in a fresh "
        "process, after the imports any query makes (numpy, the library; OpenBLAS's idle "
        "threads sleeping at once, as `query` sets them), making the model "
        f"and its ONNX session and embedding the image took {ew:.3f} s wall ({ec:.3f} s "
        f"CPU), median of {args.repeat}; the share is that over the whole query process "
        "(its wall time, and in brackets its CPU time: user + system, which the other "
        "work on a shared machine does not inflate). The query processes ran with "
        "`OPENBLAS_CORETYPE=Haswell` (numpy's matrix products on AVX2 kernels, as on an "
        "AVX2-only CPU; ONNX Runtime picks its own kernels), the two codes taking turns, "
        "after one unmeasured round; every measured process keeps compiled bytecode, as "
        "an installed package does.\n\n"
        f"| code | query on {n}: s (CPU s) | embedding's share | query on {args.vectors:,}: "
        "s (CPU s) | embedding's share |\n|---|---|---|---|---|\n"
        + "\n".join(shares)
        + f"\n\nThat embedding process as a whole (interpreter, numpy, the library, the "
        f"session, the image; no index): {pw:.3f} s wall ({pc:.3f} s CPU), the floor of "
        "any process that embeds one image with this library.\n"
        + ("" if args.no_resnet else resnet_section(args, t, trees)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=96, help="images in the full build")
    ap.add_argument("--big", type=int, default=10_000, help="files in the no-op-only index")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each fast case (median)")
    ap.add_argument("--vectors", type=int, default=100_000, help="vectors in the query index")
    ap.add_argument("--baseline", default=None, help="source tree of the code to compare with")
    ap.add_argument("--baseline-commit", default=None,
                    help="the commit --baseline was unpacked from (named in the results)")
    ap.add_argument("--no-resnet", action="store_true",
                    help="leave out the queries on a ResNet50 index (they import torch here)")
    args = ap.parse_args()
    cli = ["-m", "imgsim_index"]
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        PYCACHE["dir"] = str(t / "pycache")
        timed(*cli, "--help")  # compiles the bytecode: not counted
        helps = [timed(*cli, "--help") for _ in range(max(5, args.repeat))]
        modules = subprocess.run(
            [sys.executable, "-c", "import sys, runpy; sys.argv=['x','--help']\n"
             "try:\n runpy.run_module('imgsim_index', run_name='__main__')\n"
             "except SystemExit: pass\n"
             "print('MODULES:', ' '.join(m for m in ('numpy','torch','faiss','cv2','PIL') "
             "if m in sys.modules))"],
            capture_output=True, text=True, check=True).stdout.split("MODULES:")[-1].strip()
        photos(t / "photos", args.n)
        full = timed(*cli, "build", str(t / "photos"), "--index", str(t / "idx"),
                     "--model", MODEL, "-q")
        noop = [timed(*cli, "build", str(t / "photos"), "--index", str(t / "idx"), "-q")
                for _ in range(args.repeat)]
        many_files_index(t / "many", t / "big", args.big, t / "idx")
        big = [timed(*cli, "build", str(t / "many"), "--index", str(t / "big"), "-q")
               for _ in range(args.repeat)]
        real = real_section(args, t)
    med = statistics.median
    body = (
        f"CPU: {machine()}; {cpu_features()}. "
        f"Model {MODEL}; {args.n} JPEGs of 1280x960; "
        f"whole processes (`python -m imgsim_index ...`), median of {args.repeat} "
        f"(--help: of {len(helps)}).\n\n"
        "| case | seconds | against the full build |\n|---|---|---|\n"
        f"| `--help` | {med(helps):.2f} | |\n"
        f"| full build, {args.n} images | {full:.2f} | 1.00 |\n"
        f"| no-op build, same {args.n} images | {med(noop):.2f} | {med(noop) / full:.3f} |\n"
        f"| no-op build, index of {args.big} files | {med(big):.2f} | "
        f"{med(big) / full:.3f} |\n\n"
        f"Modules `--help` imports among numpy, torch, faiss, cv2, PIL: {modules or 'none'}.\n"
        + real
    )
    print(body)
    command = this_command()
    if args.baseline:  # the tree's path is of this run only
        command = command.replace(args.baseline, "TREE")
        body = (f"TREE: `git archive {args.baseline_commit}` unpacked (the code \"before\").\n\n"
                if args.baseline_commit else "TREE: another commit's source tree.\n\n") + body
    update_section("startup", "Start-up and no-op runs", command, body)


if __name__ == "__main__":
    main()
