#!/usr/bin/env python3
"""Embedding end to end, JPEG files -> vectors: a plain torch baseline against our pipeline.

usage: python benchmarks/bench_embed.py [--model efficientnet-lite0|resnet50-random]
         [--frames 24] [--photos 24] [--batch-size 32] [--workers N] [--seed 0]
         [--work DIR] [--no-write]

Generates JPEGs with PIL (1920x1080 "video frames" and 4000x3000 12-megapixel
"photos": blurred colour fields with shapes and grain, so they compress like
photos, not like flat colour), then embeds them twice in the same run:

- baseline: one process; PIL full decode, torchvision Resize(256) +
  CenterCrop(224) (with the model's interpolation) + Normalize, eager fp32
  torch (default memory format) under no_grad, batches of --batch-size;
- ours: imgsim_index.embed.Embedder.embed_files (JPEG draft-mode decoding in
  DataLoader worker processes, channels-last, inference_mode).

Prints images/s of both and their ratio, the cosine between the two vectors of
each image (draft decoding changes pixels slightly), the network alone on a
decoded batch (both ways), the model's GFLOP per
image (torch's FlopCounterMode) times images/s, and SGEMM GFLOP/s measured
with torch.mm in the same run, as the machine's ceiling. `resnet50-random` is
torchvision's ResNet50 with random weights: ImageNet weights cannot be
downloaded here, and the speed does not depend on the weights, but its
vectors mean nothing, so use it for speed only.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.results_file import update_section  # noqa: E402


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
    from imgsim_index.models import LoadedModel, load_model

    if name != "resnet50-random":
        return load_model(name)
    import torch
    from torchvision.models import resnet50

    from imgsim_index.models.resnet import RESNET50

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


def ours(model: Any, paths: list[str], batch_size: int, workers: int | None) -> np.ndarray:
    from imgsim_index.embed import Embedder, EmbedSettings

    embedder = Embedder(model, "cpu")
    out = np.zeros((len(paths), model.info.dim), np.float32)
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


def model_only(model: Any, batch_size: int, repeat: int = 3) -> tuple[float, float]:
    """images/s of the network alone on a decoded batch: (eager fp32 NCHW under no_grad,
    ours: Embedder.embed_pixels, channels-last under inference_mode)."""
    import torch

    from imgsim_index.embed import Embedder

    crop = model.info.preprocess.crop
    pixels = np.random.default_rng(0).integers(0, 256, (batch_size, crop, crop, 3), np.uint8)
    x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float().contiguous() / 255.0
    net = model.network.to(memory_format=torch.contiguous_format)
    with torch.no_grad():
        net(x)
        t = time.perf_counter()
        for _ in range(repeat):
            net(x)
        eager = batch_size * repeat / (time.perf_counter() - t)
    embedder = Embedder(model, "cpu")  # converts the network to channels-last
    embedder.embed_pixels(pixels)
    t = time.perf_counter()
    for _ in range(repeat):
        embedder.embed_pixels(pixels)
    return eager, batch_size * repeat / (time.perf_counter() - t)


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
    ap.add_argument("--frames", type=int, default=24, help="1920x1080 JPEGs")
    ap.add_argument("--photos", type=int, default=24, help="4000x3000 JPEGs")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=None,
                    help="our decode processes (default: cores - 1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "imgsim-bench-embed"),
                    help="where the generated JPEGs are kept between runs")
    ap.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    a = ap.parse_args()
    import torch

    folder = Path(a.work) / f"seed{a.seed}"
    folder.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    images = make_images(folder, a.frames, a.photos, a.seed)
    paths, kinds = [p for p, _ in images], np.asarray([k for _, k in images])
    print(f"{len(paths)} JPEGs in {folder} ({time.perf_counter() - t:.0f}s)", flush=True)
    model = load(a.model)
    crop = model.info.preprocess.crop
    with torch.no_grad():  # warm-up outside the timings (first-call allocations)
        model.network(torch.zeros(2, 3, crop, crop))
    flops = gflop_per_image(model)
    gemm_before = sgemm_gflops()

    t = time.perf_counter()
    base = baseline(model, paths, a.batch_size)
    base_s = time.perf_counter() - t
    print(f"baseline: {len(paths) / base_s:.2f} images/s", flush=True)
    t = time.perf_counter()
    mine = ours(model, paths, a.batch_size, a.workers)
    ours_s = time.perf_counter() - t
    print(f"ours: {len(paths) / ours_s:.2f} images/s", flush=True)
    eager_net, ours_net = model_only(model, a.batch_size)
    print(f"network only: eager {eager_net:.2f}, ours {ours_net:.2f} images/s", flush=True)
    gemm_after = sgemm_gflops()
    gemm = max(gemm_before, gemm_after)

    cos = np.einsum("ij,ij->i", base.astype(np.float64), mine.astype(np.float64))
    base_ips, ours_ips = len(paths) / base_s, len(paths) / ours_s
    lines = [
        f"Model: {a.model}"
        + (" (random weights: speed only, vectors meaningless)" if "random" in a.model else "")
        + f"; {a.frames} 1920x1080 + {a.photos} 4000x3000 JPEGs (quality 90), batch "
        f"{a.batch_size}, torch {torch.__version__} with {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} cores.",
        "",
        "| pipeline | images/s | vs baseline | model GFLOP/s achieved | share of SGEMM |",
        "|---|---|---|---|---|",
        f"| baseline: PIL full decode, torchvision Resize+CenterCrop, eager fp32, 1 process "
        f"| {base_ips:.2f} | 1.00x | {flops * base_ips:.0f} | {flops * base_ips / gemm:.0%} |",
        f"| ours: Embedder.embed_files (draft decode in workers, channels-last) "
        f"| {ours_ips:.2f} | {ours_ips / base_ips:.2f}x | {flops * ours_ips:.0f} "
        f"| {flops * ours_ips / gemm:.0%} |",
        f"| network only, decoded batch: eager fp32 NCHW, no_grad | {eager_net:.2f} | "
        f"{eager_net / base_ips:.2f}x | {flops * eager_net:.0f} | {flops * eager_net / gemm:.0%} |",
        f"| network only, decoded batch: ours (channels-last, inference_mode) | {ours_net:.2f} "
        f"| {ours_net / base_ips:.2f}x | {flops * ours_net:.0f} | {flops * ours_net / gemm:.0%} |",
        "",
        f"- model cost: {flops:.2f} GFLOP per image at {crop}x{crop} (FlopCounterMode); "
        f"SGEMM (torch.mm 2048^2, same run): {gemm:.0f} GFLOP/s "
        f"(before {gemm_before:.0f}, after {gemm_after:.0f})",
    ]
    for kind in ("frame", "photo"):
        c = cos[kinds == kind]
        if "random" in a.model:
            lines.append("- cosine(baseline, ours): not meaningful with random weights "
                         "(their features barely depend on the image)")
            break
        if len(c):
            lines.append(f"- cosine(baseline, ours) for {kind}s: min {c.min():.4f}, "
                         f"median {np.median(c):.4f}")
    body = "\n".join(lines)
    print(body)
    if not a.no_write:
        cmd = " ".join(["python benchmarks/bench_embed.py", *sys.argv[1:]])
        update_section(f"bench-embed-{a.model}", f"Embedding end to end ({a.model})", cmd, body)


if __name__ == "__main__":
    main()
