#!/usr/bin/env python3
"""Local engine against Ray engine on this machine, same images, same run.

usage: python benchmarks/bench_ray.py [--images 200] [--model efficientnet-lite0|resnet50-random]
         [--batch-size 32] [--repeats 2] [--pairs-n 20000] [--no-write]

Generates the images with scripts/make_samples.py (960x720 scenes and edited
copies, JPEG and PNG), starts a local Ray instance with all cores, then builds
an index of them with both engines, interleaved `--repeats` times (the machine
is shared, so runs drift), and also of the first `--batch-size` images alone:
the difference gives each engine's fixed cost per build (for Ray: starting an
actor pool and shipping the model through the object store) and its marginal
rate. Checks that the Ray index equals the local one (ids to paths, vectors). Then times exact pair
search on `--pairs-n` synthetic vectors of the model's dimension both ways, and
the driver's commit rate (what one writer can take). `resnet50-random` is
torchvision's ResNet50 with random weights (no ImageNet weights offline): speed
only.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.bench_common import planted_vectors  # noqa: E402
from benchmarks.results_file import this_command, update_section  # noqa: E402
from imgsim_index.embed.embedder import EmbedSettings  # noqa: E402
from imgsim_index.index.catalog import NewRow  # noqa: E402
from imgsim_index.index.store import IndexStore  # noqa: E402
from imgsim_index.pipeline.build import BuildSettings, build_index  # noqa: E402
from imgsim_index.search import PairSettings, find_pairs  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def load(name: str) -> Any:
    from imgsim_index.embed.models import LoadedModel, load_model

    if name != "resnet50-random":
        return load_model(name)
    import torch
    from torchvision.models import resnet50

    from imgsim_index.embed.models.resnet import RESNET50

    net = resnet50(weights=None)
    net.fc = torch.nn.Identity()  # type: ignore[assignment]
    return LoadedModel(RESNET50, net.eval(), "random", "random init (speed only)")


def make_images(work: Path, n: int) -> Path:
    """At least n generated images, trimmed to exactly n (sorted order)."""
    out = work / "samples"
    distinct = max(2, int(n / 1.8) + 2)
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_samples.py"), str(out),
                    "--distinct", str(distinct), "--seed", "7"], check=True,
                   capture_output=True)
    files = sorted(p for p in (out / "images").rglob("*") if p.is_file())
    if len(files) < n:
        raise SystemExit(f"make_samples gave {len(files)} images, fewer than {n}")
    for p in files[n:]:
        p.unlink()
    return out / "images"


def first_images(images: Path, k: int) -> Path:
    """A folder with copies of the first k images (scan order)."""
    out = images.parent / "first"
    for p in sorted(p for p in images.rglob("*") if p.is_file())[:k]:
        dest = out / p.relative_to(images)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(p, dest)
    return out


def timed_build(images: Path, index: Path, settings: BuildSettings, model: Any,
                engine: Any = None) -> float:
    shutil.rmtree(index, ignore_errors=True)
    t = time.perf_counter()
    r = build_index([str(images)], str(index), settings, model=model,
                    engine=engine)
    seconds = time.perf_counter() - t
    if r.errors or r.embedded != r.scanned:
        with IndexStore.open_reader(str(index)) as store:
            bad = store.error_rows()
        raise SystemExit(f"{r.errors} of {r.scanned} images failed, e.g. {bad[0].path}: "
                         f"{bad[0].error}")
    return seconds


def same_index(a: Path, b: Path) -> tuple[bool, float]:
    with IndexStore.open_reader(str(a)) as sa, IndexStore.open_reader(str(b)) as sb:
        la, lb = sa.load(), sb.load()
    same_ids = [(r.id, r.path) for r in la.rows] == [(r.id, r.path) for r in lb.rows]
    return same_ids, float(np.abs(la.vectors - lb.vectors).max())


def commit_rate(work: Path, dim: int, n: int = 20480, chunk: int = 2048) -> float:
    """Vectors per second one driver commits (segment file + catalog rows, fsynced)."""
    identity = {"model": "synthetic", "dim": dim, "weights_id": "none", "preprocessing": {}}
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    index = work / "commit"
    store = IndexStore.open_writer(str(index), identity)
    t = time.perf_counter()
    try:
        for s in range(0, n, chunk):
            rows = [NewRow(f"/data/{k:09d}.jpg", "/data", 1000, k, 224, 224)
                    for k in range(s, s + chunk)]
            store.commit(rows, x[s:s + chunk])
    finally:
        store.close()
    seconds = time.perf_counter() - t
    shutil.rmtree(index)
    return n / seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--model", default="efficientnet-lite0",
                    choices=["efficientnet-lite0", "resnet50-random"])
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--pairs-n", type=int, default=20000)
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args()

    import ray

    from imgsim_index.pipeline.ray_engine import RayEngine

    work = Path(tempfile.mkdtemp(prefix="imgsim-bench-ray-"))
    try:
        images = make_images(work, a.images)
        model = load(a.model)
        settings = BuildSettings(model=model.info.name,
                                 embed=EmbedSettings(batch_size=a.batch_size))
        cores = os.cpu_count() or 1
        t = time.perf_counter()
        ray.init(address="local", num_cpus=cores, include_dashboard=False,
                 object_store_memory=1 << 30, logging_level="WARNING")
        ray_init = time.perf_counter() - t
        few = first_images(images, a.batch_size)
        runs: dict[str, list[float]] = {k: [] for k in ("local", "ray", "local1", "ray1")}
        with RayEngine() as engine:
            for _ in range(a.repeats):
                runs["local1"].append(timed_build(few, work / "local", settings, model))
                runs["ray1"].append(timed_build(few, work / "ray", settings, model, engine))
                runs["local"].append(timed_build(images, work / "local", settings, model))
                runs["ray"].append(timed_build(images, work / "ray", settings, model, engine))
                print({k: f"{v[-1]:.1f}s" for k, v in runs.items()}, flush=True)
            same_ids, max_diff = same_index(work / "local", work / "ray")
            x, _ = planted_vectors(a.pairs_n, model.info.dim, 0, 0.85)
            ps = PairSettings(threshold=0.9)
            t = time.perf_counter()
            want, _ = find_pairs(x, ps, method="exact")
            pairs_local = time.perf_counter() - t
            t = time.perf_counter()
            got, _ = find_pairs(x, ps, method="exact", engine=engine)
            pairs_ray = time.perf_counter() - t
            pairs_equal = (np.array_equal(want.i, got.i) and np.array_equal(want.j, got.j)
                           and np.array_equal(want.score, got.score))
        ray.shutdown()
        commits = commit_rate(work, model.info.dim)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    n, k = a.images, min(a.images, a.batch_size)
    best = {key: min(v) for key, v in runs.items()}
    marginal = {e: (n - k) / max(1e-9, best[e] - best[e + "1"]) for e in ("local", "ray")}
    names = {"local": "local engine (Embedder: 1 decode process, torch on all cores)",
             "ray": f"Ray engine ({cores} CPU actors x 1 thread, decoding in the actors)"}
    table = [f"| engine | build of {n}: s (each run) | images/s (best) | build of {k}: s "
             "(best) | fixed cost s | marginal images/s |", "|---|---|---|---|---|---|"]
    for e in ("local", "ray"):
        fixed = best[e + "1"] - k / marginal[e]
        table.append(f"| {names[e]} | {', '.join(f'{x:.1f}' for x in runs[e])} | "
                     f"{n / best[e]:.2f} | {best[e + '1']:.1f} | {fixed:.1f} | "
                     f"{marginal[e]:.2f} |")
    lb, rb = best["local"], best["ray"]
    body = "\n".join([
        f"{n} generated images (960x720 and edited copies, JPEG/PNG), model {a.model}, "
        f"batch {a.batch_size}; builds interleaved, {a.repeats} of each. Ray: a local "
        f"instance with {cores} CPUs, started once ({ray_init:.1f} s, not in the build times).",
        "",
        *table,
        "",
        f"- Ray / local build time (best runs): **{rb / lb:.2f}x**; marginal rate Ray / local: "
        f"{marginal['ray'] / marginal['local']:.2f}x. fixed cost = build of {k} minus {k} "
        "images at the marginal rate; marginal = the extra images over the extra time",
        f"- Ray index equals the local one: ids to paths {'same' if same_ids else 'DIFFERENT'}, "
        f"largest vector difference {max_diff:.1e}",
        f"- exact pair search, {a.pairs_n} x {model.info.dim} synthetic vectors, threshold 0.9: "
        f"local {pairs_local:.2f} s, Ray {pairs_ray:.2f} s ({pairs_ray / pairs_local:.2f}x; "
        f"object store put + {cores} one-thread tasks); same pairs and scores: "
        f"{'yes' if pairs_equal else 'NO'}",
        f"- one driver commits {commits:,.0f} vectors/s of dim {model.info.dim} (segment file "
        "+ catalog rows, fsynced, checkpoints of 2048): the ceiling of the single writer",
        f"- per core (marginal): local {marginal['local'] / cores:.2f}, Ray "
        f"{marginal['ray'] / cores:.2f} images/s ({cores} cores)",
    ])
    print(body)
    if not a.no_write:
        cmd = this_command()
        update_section(f"bench-ray-{a.model}", f"Local engine vs Ray engine ({a.model})", cmd,
                       body)


if __name__ == "__main__":
    main()
