"""ray_embed: image paths -> EmbeddedBatch stream, embedded by Ray Data actors holding the model.

The paths go out as a Ray dataset of (position, path) blocks. Actors (one per
GPU, else one per `cpus_per_actor` CPUs) read and decode the files on their
own node (decode.decode_file through embedder.DecodedFiles, so failures get the local
reasons) and embed them with embed.Embedder.embed_pixels, the local code; with
GPUs, decoding runs in separate CPU tasks feeding the GPU actors. The model
travels once per node through the object store, so workers need no weights
files. The driver takes results as they come, drops positions it already has
(a retried batch), and yields the batches a local Embedder would: positions
[k*bs, (k+1)*bs) in order. The indexer commits them, so ids, checkpoints and
resume are the local ones. A batch lost with its worker is run again by Ray
(actor restarts, task retries); positions still missing at the end stop the
build with an error after the committed checkpoints, and a rerun embeds the rest.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from imgsim_index.embed.embedder import (
    DecodedFiles,
    EmbeddedBatch,
    Embedder,
    EmbedSettings,
    resolve_device,
)
from imgsim_index.embed.models import LoadedModel
from imgsim_index.errors import FIX_CPU, EngineError, ImgsimError, InputError
from imgsim_index.ingest.decode import Preprocess

MAX_BATCHES_PER_BLOCK = 16  # a block is the unit Ray retries and the driver reorders


def decode_batch(batch: dict[str, np.ndarray], pre: Preprocess,
                 max_pixels: int) -> dict[str, np.ndarray]:
    """{pos, path} -> {pos, pixels (n, crop, crop, 3) uint8, width, height, error ('' if ok)}."""
    files = DecodedFiles([str(p) for p in batch["path"]], pre, max_pixels)
    n = len(files)
    pixels = np.zeros((n, pre.crop, pre.crop, 3), np.uint8)
    width, height = np.zeros(n, np.int64), np.zeros(n, np.int64)
    errors = []
    for k in range(n):
        # the driver takes the digest (see build.py); Ray-embedded rows get no perceptual hash
        _, px, w, h, err, *_ = files[k]
        if err is None and px is not None:
            pixels[k], width[k], height[k] = px, w, h
        errors.append(err or "")
    return {"pos": np.asarray(batch["pos"], np.int64), "pixels": pixels, "width": width,
            "height": height, "error": np.asarray(errors, dtype=str)}



@dataclass(frozen=True)
class RaySettings:
    address: str | None = None  # None: $RAY_ADDRESS, `ray start` here, or a new local instance
    actors: int | None = None  # embedding actors; None: one per GPU, else CPUs // cpus_per_actor
    cpus_per_actor: float = 1.0  # CPU actors: also their torch threads
    decode_tasks: bool | None = None  # decode in separate tasks; None: when actors use GPUs
    max_restarts: int = 4  # an embedding actor whose process dies is restarted this often
    max_retries: int = 4  # a batch or search task whose worker dies is run again this often
    num_cpus: int | None = None  # set: always a new local instance with this many CPUs

    def validate(self) -> None:
        if self.actors is not None and self.actors < 1:
            raise InputError(f"actors must be at least 1, got {self.actors}")
        if self.cpus_per_actor <= 0:
            raise InputError("cpus per actor must be positive")
        if self.max_restarts < 0 or self.max_retries < 0:
            raise InputError("restarts and retries cannot be negative")


class EmbedActor:
    """A Ray Data actor: the model on this worker's device, embedding batches of files
    (or of pixels already decoded by decode tasks)."""

    def __init__(self, model: Any, device: str, threads: int, max_pixels: int,
                 decode: bool, backend: str = "torch"):
        import ray
        import torch

        if isinstance(model, (list, tuple)):  # [ObjectRef], so Ray leaves it to us
            model = model[0]
        if isinstance(model, ray.ObjectRef):
            model = ray.get(model)
        if resolve_device(device) == "cpu":
            torch.set_num_threads(max(1, threads))
        # the local Embedder, so the vectors are the local ones (backend: see EmbedSettings)
        self.embedder = (Embedder(model, device) if backend == "torch"
                         else Embedder(model, device, backend))  # type: ignore[call-arg]
        self.pre: Preprocess = model.info.preprocess
        self.dim: int = model.info.dim
        self.max_pixels, self.decode = max_pixels, decode

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.decode:
            batch = decode_batch(batch, self.pre, self.max_pixels)
        errors = np.asarray(batch["error"], dtype=str)
        ok = errors == ""
        vectors = np.zeros((len(errors), self.dim), np.float32)
        if ok.any():
            vectors[ok] = self.embedder.embed_pixels(np.ascontiguousarray(batch["pixels"][ok]))
        return {"pos": np.asarray(batch["pos"], np.int64), "vector": vectors,
                "width": batch["width"], "height": batch["height"], "error": errors}


def block_rows(n: int, batch_size: int, actors: int) -> int:
    """Rows per input block: whole batches (so a batch never spans two blocks), small
    enough for at least ~8 blocks per actor, at most MAX_BATCHES_PER_BLOCK batches."""
    batches = n // max(1, batch_size * 8 * actors)
    return batch_size * max(1, min(MAX_BATCHES_PER_BLOCK, batches))


def ordered_batches(results: Iterable[dict[str, np.ndarray]], n: int, batch_size: int,
                    dim: int, on_progress: Callable[[int], None] | None = None
                    ) -> Iterator[EmbeddedBatch]:
    """Results in any order, possibly repeated -> one EmbeddedBatch per `batch_size`
    positions, in order, each position exactly once. Raises EngineError when some
    positions never came (after yielding every batch before the first gap)."""
    have: dict[int, tuple[np.ndarray, int, int, str]] = {}
    nxt = 0
    for out in results:
        pos, vec, err = out["pos"].tolist(), out["vector"], out["error"]
        width, height = out["width"].tolist(), out["height"].tolist()
        for k, p in enumerate(pos):
            if nxt <= p < n and p not in have:  # a repeat comes from a retried batch
                have[p] = (vec[k], width[k], height[k], str(err[k]))
        while nxt < n and all(p in have for p in range(nxt, min(n, nxt + batch_size))):
            end = min(n, nxt + batch_size)
            yield _batch(have, nxt, end, dim)
            if on_progress:
                on_progress(end - nxt)
            nxt = end
    if nxt < n:
        got = nxt + len(have)
        raise EngineError(
            f"the Ray cluster returned {got} of {n} images; the checkpoints committed so "
            "far are kept: run the build again to embed the rest")


def _batch(have: dict[int, tuple[np.ndarray, int, int, str]], start: int, end: int,
           dim: int) -> EmbeddedBatch:
    out = EmbeddedBatch()
    good = []
    for p in range(start, end):
        vec, w, h, err = have.pop(p)
        if err:
            out.errors.append((p, err))
        else:
            out.positions.append(p)
            out.sizes.append((w, h))
            good.append(vec)
    out.vectors = (np.stack(good).astype(np.float32, copy=False) if good
                   else np.zeros((0, dim), np.float32))
    return out


class RayFileEmbedder:
    """indexer.FileEmbedder on a Ray cluster (connected by the caller)."""

    def __init__(self, model: LoadedModel, settings: RaySettings):
        self.model, self.settings = model, settings
        self._model_ref: Any = None

    def layout(self, embed: EmbedSettings) -> dict[str, Any]:
        """How many actors, on what, and whether decoding runs in separate tasks."""
        import ray

        s = self.settings
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0)) if embed.device != "cpu" else 0
        cpus = float(resources.get("CPU", 1))
        if embed.device == "cuda" and not gpus:
            raise EngineError("the CUDA device was asked for, but the Ray cluster has no GPUs",
                              fix=FIX_CPU)
        decode = s.decode_tasks if s.decode_tasks is not None else gpus > 0
        if gpus:
            actors = s.actors or gpus
        else:
            slots = max(1, int(cpus // s.cpus_per_actor))
            actors = s.actors or (max(1, slots // 2) if decode else slots)
        return {"actors": actors, "gpus": 1 if gpus else 0, "decode_tasks": decode,
                "device": "cuda" if gpus else "cpu"}

    def embed_files(self, paths: Sequence[str], settings: EmbedSettings,
                    on_progress: Callable[[int], None] | None = None
                    ) -> Iterator[EmbeddedBatch]:
        if not paths:
            return
        import ray
        from ray.data import DataContext

        layout = self.layout(settings)
        if self._model_ref is None:
            self._model_ref = ray.put(self.model)
        ctx = DataContext.get_current()
        saved = ctx.execution_options.preserve_order, ctx.enable_progress_bars
        # In order, so results stream into commits with a small reorder buffer.
        ctx.execution_options.preserve_order = True
        ctx.enable_progress_bars = False  # progress goes through on_progress
        try:
            results = self._dataset(paths, settings, layout).iter_batches(
                batch_size=None, batch_format="numpy")
            yield from ordered_batches(_guarded(results), len(paths), settings.batch_size,
                                       self.model.info.dim, on_progress)
        finally:
            ctx.execution_options.preserve_order, ctx.enable_progress_bars = saved

    def _dataset(self, paths: Sequence[str], settings: EmbedSettings,
                 layout: dict[str, Any]) -> Any:
        import pyarrow as pa
        import ray
        from ray.data import ActorPoolStrategy

        s, n, bs = self.settings, len(paths), settings.batch_size
        table = pa.table({"pos": np.arange(n, dtype=np.int64), "path": list(paths)})
        rows = block_rows(n, bs, layout["actors"])
        ds: Any = ray.data.from_arrow([table.slice(k, rows) for k in range(0, n, rows)])
        pre = self.model.info.preprocess
        threads = max(1, math.floor(s.cpus_per_actor))
        # Ray Data retries without limit by default; a file that crashes its worker every
        # time would then hang the build. Ray 2.51+ deprecates these arguments (still
        # honoured); the warning says nothing a user can act on.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*ray_remote_args.*")
            if layout["decode_tasks"]:
                ds = ds.map_batches(decode_batch, batch_size=bs, batch_format="numpy",
                                    fn_kwargs={"pre": pre, "max_pixels": settings.max_pixels},
                                    num_cpus=1, max_retries=s.max_retries)
            return ds.map_batches(
                EmbedActor,
                batch_size=bs,
                batch_format="numpy",
                compute=ActorPoolStrategy(min_size=1, max_size=layout["actors"]),
                fn_constructor_kwargs={"model": [self._model_ref], "device": layout["device"],
                                       "threads": threads, "max_pixels": settings.max_pixels,
                                       "decode": not layout["decode_tasks"],
                                       "backend": getattr(settings, "backend", "torch")},
                num_cpus=0 if layout["gpus"] else s.cpus_per_actor,
                num_gpus=layout["gpus"],
                max_restarts=s.max_restarts,
                max_task_retries=s.max_retries,
            )


def _guarded(results: Iterable[dict[str, np.ndarray]]) -> Iterator[dict[str, np.ndarray]]:
    """Ray's failures as one EngineError that says what is kept and what to do."""
    try:
        yield from results
    except ImgsimError:
        raise
    except Exception as exc:
        cause = getattr(exc, "cause", None) or exc
        first = (str(cause).strip().splitlines() or [type(cause).__name__])[-1]
        raise EngineError(
            f"the Ray job failed ({type(cause).__name__}: {first}); the checkpoints "
            "committed so far are kept: run the build again to finish") from exc


__all__ = ["EmbedActor", "RayFileEmbedder", "block_rows", "decode_batch", "ordered_batches"]
