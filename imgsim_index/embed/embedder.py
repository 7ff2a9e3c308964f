"""embed: files -> batches of float32 (n, dim) L2-normalised vectors, model-pinned.

Decoding runs ahead of the network, at most two batches ahead (memory stays
flat): with ONNX Runtime in threads of this process (decoded_batches: Pillow's
decoder and resize release the GIL, and no torch import or worker start is
paid), with torch in a DataLoader's worker processes (torch is loaded anyway).
A file that cannot be decoded comes out as an error with its reason; the batch
goes on without it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from imgsim_index.defaults import embed_workers
from imgsim_index.embed.models import LoadedModel
from imgsim_index.embed.onnx_runtime import (
    OnnxNetwork,
    check_backend,
    load_onnx_network,
    resolve_backend,
)
from imgsim_index.errors import FIX_CPU, DecodeError, InputError
from imgsim_index.ingest.decode import DEFAULT_MAX_PIXELS, Preprocess, decode_file
from imgsim_index.ingest.formats import register_plugins


@dataclass(frozen=True)
class EmbedSettings:
    batch_size: int = 32
    # decoding threads (ONNX backend) or processes (torch); None = one per core beyond the first
    workers: int | None = None
    device: str = "auto"  # auto | cpu | cuda
    max_pixels: int = DEFAULT_MAX_PIXELS
    backend: str = "auto"  # torch | onnx (ONNX Runtime, CPU) | auto (onnx on the CPU if installed)

    def __post_init__(self) -> None:
        check_backend(self.backend)

    def resolved_workers(self) -> int:
        if self.workers is not None:
            return self.workers
        return embed_workers()


@dataclass
class EmbeddedBatch:
    """Results for some of the inputs, by their position in the input list."""

    positions: list[int] = field(default_factory=list)  # rows of `vectors`
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    sizes: list[tuple[int, int]] = field(default_factory=list)  # (width, height) per row
    errors: list[tuple[int, str]] = field(default_factory=list)  # (position, reason)
    digests: list[str | None] = field(default_factory=list)  # content digest per row, if known
    hashes: list[bytes | None] = field(default_factory=list)  # perceptual hash per row, if any


def _cuda_available() -> bool:
    """torch.cuda.is_available(), without importing torch where no NVIDIA driver is loaded
    (Linux: no /dev/nvidiactl and no /proc/driver/nvidia means no CUDA device)."""
    if "torch" not in sys.modules and sys.platform.startswith("linux") and not any(
            os.path.exists(p) for p in ("/dev/nvidiactl", "/proc/driver/nvidia")):
        return False
    import torch

    return bool(torch.cuda.is_available())


def resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if _cuda_available() else "cpu"
    if name == "cuda" and not _cuda_available():
        raise InputError("the CUDA device was asked for, but torch sees none", fix=FIX_CPU)
    if name not in ("cpu", "cuda"):
        raise InputError(f"unknown device {name!r}; use auto, cpu or cuda")
    return name


class DecodedFiles:
    """Map-style dataset: position -> (position, pixels | None, width, height, error, digest,
    perceptual hash)."""

    def __init__(self, paths: Sequence[str], pre: Preprocess, max_pixels: int):
        self.paths, self.pre, self.max_pixels = list(paths), pre, max_pixels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, pos: int) -> tuple[int, np.ndarray | None, int, int, str | None,
                                             str | None, bytes | None]:
        try:
            d = decode_file(self.paths[pos], self.pre, self.max_pixels)
        except DecodeError as exc:
            return pos, None, 0, 0, str(exc), None, None
        except Exception as exc:  # a decoder bug must cost one file, not the run
            return pos, None, 0, 0, f"decoder failed: {type(exc).__name__}: {exc}", None, None
        return pos, d.pixels, d.width, d.height, None, d.digest, d.phash


class _Videos:
    """Iterable dataset: each worker decodes its share of the videos, frame by frame.

    Yields ("frame", video, ms, pixels, w, h), then ("done", video, frames) when a video
    is finished, or ("error", video, reason).
    """

    def __init__(self, paths: Sequence[str], starts: Sequence[int], every_s: float,
                 pre: Preprocess):
        self.paths, self.starts, self.every_s, self.pre = list(paths), list(starts), every_s, pre

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        from torch.utils.data import get_worker_info

        from imgsim_index.ingest.video import iter_frames

        info = get_worker_info()
        share = range(len(self.paths)) if info is None else range(
            info.id, len(self.paths), info.num_workers)
        for v in share:
            n = 0
            try:
                for f in iter_frames(self.paths[v], self.every_s, self.pre):
                    if f.ms < self.starts[v]:
                        continue  # committed by an earlier, interrupted run
                    n += 1
                    yield ("frame", v, f.ms, f.pixels, f.width, f.height)
            except DecodeError as exc:
                if n == 0 and self.starts[v] == 0:
                    yield ("error", v, str(exc))
                    continue
            except Exception as exc:  # a decoder bug must cost one video, not the run
                yield ("error", v, f"video decoder failed: {type(exc).__name__}: {exc}")
                continue
            yield ("done", v, n)


@dataclass
class VideoBatch:
    frames: list[tuple[int, int, int, int]] = field(default_factory=list)  # (video, ms, w, h)
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    done: list[int] = field(default_factory=list)  # videos whose frames are all out
    errors: list[tuple[int, str]] = field(default_factory=list)


class DecodedBatches(Iterator[list[Any]]):
    """The batches of decoded_batches. `close()` cancels the decoding that has not started,
    also before the first batch was taken (a session that fails to load, Ctrl-C)."""

    def __init__(self, batches: Generator[list[Any], None, None], pool: Any = None):
        self._batches, self._pool = batches, pool

    def __next__(self) -> list[Any]:
        return next(self._batches)

    def close(self) -> None:
        self._batches.close()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


def decoded_batches(items: Any, batch_size: int, threads: int) -> DecodedBatches:
    """`items[0], items[1], ...` in batches of `batch_size`, in order, computed by `threads`
    threads (none: here, one at a time) at most two batches ahead of the consumer.

    With threads, decoding starts at the call (the first two batches are queued), so the
    caller can do other work, such as making the model's session, while they decode.
    JPEG decoding, resizing and hashing release the GIL, so threads decode while ONNX
    Runtime (which releases it too) runs the previous batch, without the worker processes'
    start (a Python and torch import each). Closing the iterator (or an exception in the
    consumer, Ctrl-C included) cancels what has not started; at most `threads` items are
    still finished.
    """
    n = len(items)
    if not threads:
        return DecodedBatches([items[k] for k in range(start, min(start + batch_size, n))]
                              for start in range(0, n, batch_size))
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(threads, thread_name_prefix="imgsim-decode")
    ahead = deque(pool.submit(items.__getitem__, k) for k in range(min(n, 2 * batch_size)))
    return DecodedBatches(_in_order(pool, ahead, items, batch_size), pool)


def _in_order(pool: Any, pending: Any, items: Any, batch_size: int
              ) -> Generator[list[Any], None, None]:
    """The batches of decoded_batches, from `pending` (the futures of the first items, in
    order), keeping the next batch queued."""
    n, submitted = len(items), len(pending)
    try:
        for start in range(0, n, batch_size):
            end = min(start + batch_size, n)
            while submitted < min(n, end + batch_size):  # this batch and the next
                pending.append(pool.submit(items.__getitem__, submitted))
                submitted += 1
            yield [pending.popleft().result() for _ in range(start, end)]
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _collate(items: list[Any]) -> list[Any]:
    return items


def _init_worker(_: int, parent: int) -> None:
    import torch

    from imgsim_index.locks import forked_worker_start

    forked_worker_start(parent)
    torch.set_num_threads(1)


class Embedder:
    """A loaded model on a device, turning uint8 pixel batches into unit vectors.

    backend "torch" runs the network eagerly (channels-last, inference_mode); "onnx"
    runs it exported, in ONNX Runtime on the CPU (onnx_backend.py); "auto" is onnx on
    the CPU when onnxruntime is installed. Both give the same vectors (cosine >= 0.9999).
    """

    def __init__(self, model: LoadedModel, device: str = "auto", backend: str = "torch",
                 defer_session: bool = False):
        """`defer_session`: the ONNX Runtime session is made on first use, and embed_files
        then makes it while its first images decode (a one-shot query); else now."""
        self.model = model
        if backend == "onnx" and device == "auto":
            device = "cpu"  # ORT runs on the CPU only
        self.device = resolve_device(device)
        self.backend = resolve_backend(backend, self.device)
        pre = model.info.preprocess
        # (1, 3, 1, 1) float32, in 0..255 units; the ONNX path never imports torch
        self._mean_np = (np.asarray(pre.mean, np.float32) * 255.0).reshape(1, 3, 1, 1)
        self._std_np = (np.asarray(pre.std, np.float32) * 255.0).reshape(1, 3, 1, 1)
        self._onnx: OnnxNetwork | None = None
        if self.backend == "onnx":
            if not defer_session:
                self._onnx = load_onnx_network(model)
        else:
            import torch

            self._mean = torch.from_numpy(self._mean_np).to(self.device)
            self._std = torch.from_numpy(self._std_np).to(self.device)
            model.network = model.network.to(self.device).to(memory_format=torch.channels_last)

    @property
    def onnx(self) -> OnnxNetwork | None:
        """The ONNX Runtime session (backend onnx; made now if deferred), else None."""
        if self._onnx is None and self.backend == "onnx":
            self._onnx = load_onnx_network(self.model)
        return self._onnx

    @property
    def network(self) -> Any:
        """The torch network (built on first use when the ONNX path did not need it)."""
        return self.model.network

    def embed_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """(n, H, W, 3) uint8 -> (n, dim) float32, unit length."""
        if self.onnx is not None:
            x = (pixels.transpose(0, 3, 1, 2).astype(np.float32) - self._mean_np) / self._std_np
            feats = self.onnx(np.ascontiguousarray(x))
            norm = np.sqrt(np.einsum("ij,ij->i", feats, feats))[:, None]
            return (feats / np.maximum(norm, np.float32(1e-12))).astype(np.float32, copy=False)
        import torch

        with torch.inference_mode():
            t = torch.from_numpy(pixels).to(self.device).permute(0, 3, 1, 2).float()
            t = ((t - self._mean) / self._std).contiguous(memory_format=torch.channels_last)
            unit = torch.nn.functional.normalize(self.network(t).float(), dim=1)
            return unit.cpu().numpy().astype(np.float32, copy=False)

    def _loader(self, dataset: Any, settings: EmbedSettings, workers: int) -> Any:
        from torch.utils.data import DataLoader

        return DataLoader(
            dataset,
            batch_size=settings.batch_size,
            num_workers=workers,
            collate_fn=_collate,
            worker_init_fn=partial(_init_worker, parent=os.getpid()) if workers else None,
            prefetch_factor=2 if workers else None,
            pin_memory=self.device == "cuda",
        )

    def embed_videos(
        self,
        paths: Sequence[str],
        settings: EmbedSettings,
        every_s: float = 1.0,
        starts: Sequence[int] | None = None,
        on_progress: Callable[[int], None] | None = None,
    ) -> Iterator[VideoBatch]:
        """Frames every `every_s` seconds of each video (from `starts[v]` ms on)."""
        if not paths:
            return
        workers = min(settings.resolved_workers(), len(paths))
        from torch.utils.data import IterableDataset

        class Videos(_Videos, IterableDataset):  # type: ignore[misc]
            """torch needs the IterableDataset base; torch is imported only here."""

        dataset = Videos(paths, starts or [0] * len(paths), every_s, self.model.info.preprocess)
        for items in self._loader(dataset, settings, workers):
            out = VideoBatch()
            good = []
            for item in items:
                if item[0] == "frame":
                    _, v, ms, pixels, w, h = item
                    out.frames.append((v, ms, w, h))
                    good.append(pixels)
                elif item[0] == "done":
                    out.done.append(item[1])
                else:
                    out.errors.append((item[1], item[2]))
            out.vectors = self.embed_pixels(np.stack(good)) if good else np.zeros(
                (0, self.model.info.dim), np.float32)
            if on_progress:
                on_progress(len(good))
            yield out

    def embed_files(
        self,
        paths: Sequence[str],
        settings: EmbedSettings,
        on_progress: Callable[[int], None] | None = None,
    ) -> Iterator[EmbeddedBatch]:
        """Yield one EmbeddedBatch per decoded batch, in input order."""
        if not paths:
            return
        # one batch or less: a worker would decode it alone while this process waits, so
        # it is decoded here (no worker start, and no torch for the DataLoader)
        workers = 0 if len(paths) <= settings.batch_size else min(
            settings.resolved_workers(), len(paths))
        dataset = DecodedFiles(paths, self.model.info.preprocess, settings.max_pixels)
        if workers and self.backend != "onnx":
            batches: Iterator[list[Any]] = iter(self._loader(dataset, settings, workers))
        else:
            # a session not made yet is made while one thread decodes the first batches
            threads = workers or int(self.backend == "onnx" and self._onnx is None)
            if threads > 1:
                # once, before decoding threads race to do it; decoded by one thread, only
                # a file that needs the plugins registers them (see ingest.decode)
                register_plugins()
            decoding = decoded_batches(dataset, settings.batch_size, threads)
            try:
                self.onnx  # noqa: B018 (the session, made now if deferred)
            except BaseException:  # a session that cannot be made, Ctrl-C: no more decoding
                decoding.close()
                raise
            batches = decoding
        for items in batches:
            out = EmbeddedBatch()
            good: list[np.ndarray] = []
            for pos, pixels, w, h, err, digest, phash in items:
                if err is not None:
                    out.errors.append((pos, err))
                elif pixels is not None:
                    out.positions.append(pos)
                    out.sizes.append((w, h))
                    out.digests.append(digest)
                    out.hashes.append(phash)
                    good.append(pixels)
            if good:
                out.vectors = self.embed_pixels(np.stack(good))
            else:
                out.vectors = np.zeros((0, self.model.info.dim), np.float32)
            if on_progress:
                on_progress(len(items))
            yield out
