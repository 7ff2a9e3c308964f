#!/usr/bin/env python3
"""Embedding end to end, JPEG files -> vectors: a plain torch baseline against our pipeline.

usage: python benchmarks/bench_embed.py [--model efficientnet-lite0|resnet50-random]
         [--frames 96] [--photos 48] [--batch-size 32] [--workers N] [--seed 0]
         [--repeat 3] [--no-onnx] [--work DIR] [--no-write]

Generates JPEGs with PIL (1920x1080 "video frames" and 4000x3000 12-megapixel
"photos": blurred colour fields with shapes and grain, so they compress like
photos, not like flat colour), then embeds them twice in the same run:

- baseline: one process; PIL full decode, torchvision Resize(256) +
  CenterCrop(224) (with the model's interpolation) + Normalize, eager fp32
  torch (default memory format) under no_grad, batches of --batch-size;
- ours: imgsim_index.embed.embedder.Embedder.embed_files (JPEG draft-mode decoding in
  DataLoader worker processes, channels-last, inference_mode);
- ours with onnx: the same with backend "onnx" (the network exported once and run
  by ONNX Runtime, graph optimisation level ALL), when onnxruntime is installed.

Each set (frames, photos) is timed on its own, with several batches each (a
set of one batch would time worker start-up and a first batch that nothing
overlaps: 24 frames ran at 1.58x the baseline where 96 ran at 2.30x). The end-to-end runs are
interleaved (every method on every set, --repeat times) and the best run of
each is reported (the machine may be shared); the
Embedders are built (and the ONNX file exported or loaded) before the timings.
Prints images/s and ratios, the cosine between the vectors of each image
(baseline vs ours: draft decoding changes pixels slightly; torch vs onnx: same
pixels, so only the arithmetic differs), the network alone on a decoded batch
(eager, ours, ours with onnx; best of the interleaved batches), the model's
GFLOP per image (torch's FlopCounterMode) times images/s, and SGEMM GFLOP/s
measured with torch.mm in the same run (best of before and after), as the
machine's ceiling. It also times our decoding alone (one process, CPU time per
image) and from it the ceiling of a pipeline whose decoding and network share
the cores: 1 / (decode seconds / cores + 1 / network images/s). `resnet50-random` is
torchvision's ResNet50 with random weights: ImageNet weights cannot be
downloaded here, and the speed does not depend on the weights, but its
vectors mean nothing, so use it for speed only.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.results_file import this_command, update_section  # noqa: E402


def make_jpeg(path: Path, size: tuple[int, int], rng: np.random.Generator) -> None:
    from PIL import Image, ImageDraw, ImageFilter

    w, h = size
    low = rng.integers(0, 256, (max(2, h // 120), max(2, w // 120), 3), dtype=np.uint8)
    im = Image.fromarray(low).resize(size, Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(im)
    for _ in range(12):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        x1, y1 = x0 + int(rng.integers(w // 20, w // 3)), y0 + int(rng.integers(h // 20, h // 3))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x0, y0, x1, y1], fill=colour)
    im = im.filter(ImageFilter.GaussianBlur(2))
    grain = rng.normal(0, 6, (h, w, 1)).astype(np.float32)
    pixels = np.clip(np.asarray(im, np.float32) + grain, 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path, "JPEG", quality=90)


def make_images(folder: Path, frames: int, photos: int, seed: int) -> list[tuple[str, str]]:
    """[(path, kind)], generated once per folder and reused."""
    rng = np.random.default_rng(seed)
    out = []
    for kind, count, size in (("frame", frames, (1920, 1080)), ("photo", photos, (4000, 3000))):
        for k in range(count):
            path = folder / f"{kind}{k:03d}.jpg"
            if not path.exists():
                make_jpeg(path, size, rng)
            out.append((str(path), kind))
    return out


def load(name: str) -> Any:
    """A LoadedModel: efficientnet-lite0 with its real weights, or a random ResNet50."""
    from imgsim_index.embed.models import LoadedModel, load_model

    if name != "resnet50-random":
        return load_model(name)
    import torch
    from torchvision.models import resnet50

    from imgsim_index.embed.models.resnet import RESNET50

    torch.manual_seed(0)
    net = resnet50(weights=None)
    net.fc = torch.nn.Identity()  # type: ignore[assignment]
    return LoadedModel(RESNET50, net.eval(), "random", "random init (speed only)")


def baseline(model: Any, paths: list[str], batch_size: int) -> np.ndarray:
    import torch
    from PIL import Image
    from torchvision import transforms

    pre = model.info.preprocess
    mode = {"bilinear": transforms.InterpolationMode.BILINEAR,
            "bicubic": transforms.InterpolationMode.BICUBIC}[pre.interpolation]
    tf = transforms.Compose([
        transforms.Resize(pre.resize, interpolation=mode),
        transforms.CenterCrop(pre.crop),
        transforms.ToTensor(),
        transforms.Normalize(pre.mean, pre.std),
    ])
    out = []
    with torch.no_grad():
        for s in range(0, len(paths), batch_size):
            batch = torch.stack([tf(Image.open(p).convert("RGB"))
                                 for p in paths[s:s + batch_size]])
            feats = model.network(batch)
            out.append(torch.nn.functional.normalize(feats, dim=1).numpy())
    return np.concatenate(out)


def ours(embedder: Any, paths: list[str], batch_size: int, workers: int | None) -> np.ndarray:
    from imgsim_index.embed.embedder import EmbedSettings

    out = np.zeros((len(paths), embedder.model.info.dim), np.float32)
    for batch in embedder.embed_files(paths, EmbedSettings(batch_size=batch_size,
                                                          workers=workers, device="cpu")):
        if batch.errors:
            raise RuntimeError(f"decode errors: {batch.errors}")
        out[batch.positions] = batch.vectors
    return out


def gflop_per_image(model: Any) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    crop = model.info.preprocess.crop
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.network(torch.zeros(1, 3, crop, crop))
    return counter.get_total_flops() / 1e9


def model_only(model: Any, embedders: dict[str, Any], batch_size: int,
               repeat: int = 3) -> dict[str, float]:
    """images/s of the network alone on a decoded batch, best of `repeat` interleaved
    batches: "eager" (fp32 NCHW under no_grad, on a copy of the network) and each
    embedder's embed_pixels (ours: channels-last under inference_mode; onnx: ORT)."""
    import copy

    import torch

    crop = model.info.preprocess.crop
    pixels = np.random.default_rng(0).integers(0, 256, (batch_size, crop, crop, 3), np.uint8)
    x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float().contiguous() / 255.0
    net = copy.deepcopy(model.network).to(memory_format=torch.contiguous_format)

    def eager() -> None:
        with torch.no_grad():
            net(x)

    runs: dict[str, Any] = {"eager": eager}
    for name, e in embedders.items():
        runs[name] = lambda e=e: e.embed_pixels(pixels)
    best = dict.fromkeys(runs, 0.0)
    for f in runs.values():
        f()  # warm-up
    for _ in range(repeat):
        for name, f in runs.items():
            t = time.perf_counter()
            f()
            best[name] = max(best[name], batch_size / (time.perf_counter() - t))
    return best


def decode_core_ms(model: Any, paths: list[str], repeat: int = 2) -> float:
    """Milliseconds of one core per image for our decoding alone (JPEG draft, resize,
    crop: what a DataLoader worker does), best of `repeat` passes in this process."""
    from imgsim_index.embed.embedder import DecodedFiles
    from imgsim_index.ingest.decode import DEFAULT_MAX_PIXELS

    dataset = DecodedFiles(paths, model.info.preprocess, DEFAULT_MAX_PIXELS)
    best = float("inf")
    for _ in range(repeat):
        t = time.process_time()
        for k in range(len(paths)):
            dataset[k]
        best = min(best, time.process_time() - t)
    return 1000 * best / len(paths)


def onnxruntime_version() -> str:
    import onnxruntime

    return str(onnxruntime.__version__)


def sgemm_gflops(size: int = 2048, repeat: int = 10) -> float:
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    t = time.perf_counter()
    for _ in range(repeat):
        torch.mm(a, b)
    return 2 * size**3 * repeat / (time.perf_counter() - t) / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="efficientnet-lite0",
                    choices=["efficientnet-lite0", "resnet50-random"])
    ap.add_argument("--frames", type=int, default=96, help="1920x1080 JPEGs")
    ap.add_argument("--photos", type=int, default=48, help="4000x3000 JPEGs")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=None,
                    help="our decode processes (default: cores - 1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=3,
                    help="interleaved rounds; the best of each is reported")
    ap.add_argument("--no-onnx", action="store_true",
                    help="leave out the ONNX Runtime rows (they need onnxruntime and onnx)")
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "imgsim-bench-embed"),
                    help="where the generated JPEGs are kept between runs")
    ap.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    a = ap.parse_args()
    import torch

    folder = Path(a.work) / f"seed{a.seed}"
    folder.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    images = make_images(folder, a.frames, a.photos, a.seed)
    print(f"{len(images)} JPEGs in {folder} ({time.perf_counter() - t:.0f}s)", flush=True)
    model = load(a.model)
    crop = model.info.preprocess.crop
    with torch.no_grad():  # warm-up outside the timings (first-call allocations)
        model.network(torch.zeros(2, 3, crop, crop))
    flops = gflop_per_image(model)
    gemm_before = sgemm_gflops()

    from imgsim_index.embed.embedder import Embedder
    from imgsim_index.embed.onnx_runtime import onnx_available

    base_model = copy.copy(model)  # the baseline keeps a default-format copy of the network
    base_model.network = copy.deepcopy(model.network)
    embedders: dict[str, Any] = {}
    onnx_note = ""
    if a.no_onnx:
        onnx_note = "left out (--no-onnx)"
    elif not onnx_available():
        onnx_note = "left out: onnxruntime/onnx not installed (pip install -e '.[onnx]')"
    else:
        t = time.perf_counter()
        embedders["onnx"] = Embedder(model, "cpu", "onnx")  # exported once, then cached
        print(f"onnx session ready in {time.perf_counter() - t:.1f}s "
              f"({embedders['onnx'].onnx.source})", flush=True)
    embedders["ours"] = Embedder(model, "cpu")  # converts the network to channels-last

    sets = {"frames": [p for p, k in images if k == "frame"],
            "photos": [p for p, k in images if k == "photo"]}
    sets = {k: v for k, v in sets.items() if v}
    methods: dict[str, Any] = {"baseline": lambda ps: baseline(base_model, ps, a.batch_size)}
    for name, e in embedders.items():
        methods[name] = lambda ps, e=e: ours(e, ps, a.batch_size, a.workers)
    methods = {k: methods[k] for k in ("baseline", "ours", "onnx") if k in methods}
    seconds: dict[tuple[str, str], list[float]] = {}
    vectors: dict[tuple[str, str], np.ndarray] = {}
    for r in range(a.repeat):  # interleaved: every method on every set, then again
        for kind, ps in sets.items():
            for name, f in methods.items():
                t = time.perf_counter()
                vectors[kind, name] = f(ps)
                seconds.setdefault((kind, name), []).append(time.perf_counter() - t)
                print(f"round {r + 1}: {kind} {name} "
                      f"{len(ps) / seconds[kind, name][-1]:.2f} images/s", flush=True)
    decode_ms = {kind: decode_core_ms(model, ps) for kind, ps in sets.items()}
    print("decode only, one process: " + ", ".join(
        f"{k} {v:.1f} ms/image" for k, v in decode_ms.items()), flush=True)
    net_ips = model_only(model, embedders, a.batch_size, repeat=max(3, a.repeat))
    print("network only: " + ", ".join(f"{k} {v:.2f}" for k, v in net_ips.items())
          + " images/s", flush=True)
    gemm_after = sgemm_gflops()
    gemm = max(gemm_before, gemm_after)
    cores = os.cpu_count() or 1

    def cosines(kind: str, x: str, y: str) -> np.ndarray:
        return np.einsum("ij,ij->i", vectors[kind, x].astype(np.float64),
                         vectors[kind, y].astype(np.float64))

    ips = {key: len(sets[key[0]]) / min(v) for key, v in seconds.items()}

    def cells(v: float, base: float | None) -> str:
        ratio = f"{v / base:.2f}x" if base else "-"
        return f"{v:.2f} | {ratio} | {flops * v:.0f} ({flops * v / gemm:.0%})"

    def row(label: str, values: dict[str, float], vs_baseline: bool = True) -> str:
        return f"| {label} | " + " | ".join(
            cells(values[k], ips[k, "baseline"] if vs_baseline else None) for k in sets) + " |"

    head = " | ".join(f"{k}: images/s | {k}: vs baseline | {k}: model GFLOP/s (share of "
                      "SGEMM)" for k in sets)
    lines = [
        f"Model: {a.model}"
        + (" (random weights: speed only, vectors meaningless)" if "random" in a.model else "")
        + f"; {a.frames} 1920x1080 frames and {a.photos} 4000x3000 photos, JPEG quality 90, "
        f"each set timed on its own; batch {a.batch_size}, torch {torch.__version__} with "
        f"{torch.get_num_threads()} threads, {cores} cores"
        + ("" if "onnx" not in embedders else f", onnxruntime {onnxruntime_version()}")
        + f". Best of {a.repeat} interleaved runs (network only: of "
        f"{max(3, a.repeat)} interleaved batches).",
        "",
        f"| pipeline | {head} |",
        "|---|" + "---|" * (3 * len(sets)),
        row("baseline: PIL full decode, torchvision Resize+CenterCrop, eager fp32, 1 process",
            {k: ips[k, "baseline"] for k in sets}),
        row("ours: Embedder.embed_files (draft decode in workers, channels-last)",
            {k: ips[k, "ours"] for k in sets}),
    ]
    if "onnx" in embedders:
        lines.append(row("ours with onnx: the same, network in ONNX Runtime (--backend onnx)",
                         {k: ips[k, "onnx"] for k in sets}))
    for label, key in [("eager fp32 NCHW, no_grad", "eager"),
                       ("ours (channels-last, inference_mode)", "ours"),
                       (f"ours with onnx (ORT, graph level ALL, {torch.get_num_threads()} "
                        "threads)", "onnx")]:
        if key in net_ips:
            lines.append(row(f"network only, decoded batch: {label}",
                             dict.fromkeys(sets, net_ips[key])))
    best_net = max(net_ips.values())
    ceiling = {k: 1.0 / (decode_ms[k] / 1000 / cores + 1.0 / best_net) for k in sets}
    lines += [
        "",
        f"- model cost: {flops:.2f} GFLOP per image at {crop}x{crop} (FlopCounterMode); "
        f"SGEMM (torch.mm 2048^2, same run): {gemm:.0f} GFLOP/s "
        f"(before {gemm_before:.0f}, after {gemm_after:.0f})",
        "- decode only (our decoder: JPEG draft, resize, crop; one process): "
        + ", ".join(f"{k} {decode_ms[k]:.1f} ms of one core per image" for k in sets),
        f"- ceiling when decoding and the fastest network share the {cores} cores "
        "(1 / (decode ms / cores + 1 / network images/s)): "
        + ", ".join(f"{k} {ceiling[k]:.1f} images/s = {flops * ceiling[k] / gemm:.0%} of SGEMM"
                    for k in sets),
        "- end-to-end runs (images/s): " + "; ".join(
            f"{k} {n} " + ", ".join(f"{len(sets[k]) / x:.2f}" for x in v)
            for (k, n), v in seconds.items()),
    ]
    if onnx_note:
        lines.append(f"- ONNX Runtime rows {onnx_note}")
    else:
        c = np.concatenate([cosines(k, "ours", "onnx") for k in sets])
        lines.append(f"- cosine(ours, ours with onnx), same decoded pixels: min {c.min():.6f}, "
                     f"median {np.median(c):.6f}"
                     + (" (random weights: trivially high, see tests/test_onnx_backend.py)"
                        if "random" in a.model else ""))
    if "random" in a.model:
        lines.append("- cosine(baseline, ours): not meaningful with random weights "
                     "(their features barely depend on the image)")
    else:
        for kind in sets:
            for other in [k for k in ("ours", "onnx") if k in methods]:
                c = cosines(kind, "baseline", other)
                lines.append(f"- cosine(baseline, {other}) for {kind}: min {c.min():.4f}, "
                             f"median {np.median(c):.4f}")
    body = "\n".join(lines)
    print(body)
    if not a.no_write:
        cmd = this_command()
        update_section(f"bench-embed-{a.model}", f"Embedding end to end ({a.model})", cmd, body)


if __name__ == "__main__":
    main()
