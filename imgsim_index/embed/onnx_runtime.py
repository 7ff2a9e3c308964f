"""ONNX Runtime inference on the CPU: the same network, exported once, run by ORT.

The feature network of a LoadedModel is exported (torch's TorchScript-based
exporter, opset 17, batch axis dynamic) to
`$XDG_CACHE_HOME/imgsim-index/onnx/<model>-<weights_id>.onnx`, written
atomically, and run by an ORT session with graph optimisation level ALL (its
NCHWc blocked-layout convolutions are where the speed comes from), one intra-op
thread per torch thread (torch's default: one per core) and no spin-waiting.
Input: the same normalised float32 NCHW batch as the torch path; output: pooled
features, which `embed.Embedder` L2-normalises exactly as it does torch's.

A file is checked against the torch network on a seeded batch before it is used or
cached (cosine >= 0.9999 per row); a cached file that fails the check (stale, truncated,
another network under the same name) is exported again. A check that passes is recorded
next to the file (`<file>.json`: model, weights_id, opset, onnxruntime version and the
file's sha256). The rule: a cached file is used without building the torch network (and
without importing torch or timm) only when that record names this model, weights_id,
opset and onnxruntime version and the file's bytes hash to the recorded sha256; anything
else (no record, another runtime, a changed or corrupt file) takes the checked path
above. The file's sha256 is kept beside it (`<file>.digest.json`) with its stat (device,
inode, size, mtime, ctime) and is trusted instead of hashing the file again while that stat
is unchanged; any write changes the ctime, which no user tool can set back, so a changed
file is hashed again. ORT optimises the graph for the CPU (fusions, blocked layouts) on
every session, which took about as long as the rest of making it: the graph it optimised
is kept too (`<model>-<weights>.optimized.onnx`, written by the session, kept only when a
session of it gives the same unit vectors within 1e-6 on a seeded batch), with a record of
the source file's sha256, the onnxruntime version and a digest of the CPU's instruction
sets (/proc/cpuinfo), and later sessions load it with optimisation off; any mismatch
optimises again. The backend is not part of the model identity: vectors agree with
torch's, so an index does not record it.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import re
import sys
import tempfile
import time
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from imgsim_index.defaults import usable_cores
from imgsim_index.errors import FIX_CPU, FIX_TORCH_BACKEND, InputError, ModelError
from imgsim_index.ingest.identity import stamp_trusted, stat_stamp

if TYPE_CHECKING:
    from imgsim_index.embed.models import LoadedModel

BACKENDS = ("torch", "onnx", "auto")
INSTALL_HINT = "pip install 'imgsim-index[onnx]' (or: pip install onnxruntime onnx)"
OPSET = 17
SELF_CHECK_COSINE = 0.9999


def onnx_available() -> bool:
    """onnxruntime (to run) and onnx (torch's exporter needs it) are both importable."""
    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx"))


def check_backend(name: str) -> None:
    """Refuse an unknown backend, or "onnx" without its packages, in one line."""
    if name not in BACKENDS:
        raise InputError(f"unknown backend {name!r}; use {', '.join(BACKENDS)}")
    if name == "onnx" and not onnx_available():
        raise InputError(f"the ONNX backend needs onnxruntime and onnx: {INSTALL_HINT}",
                         fix=FIX_TORCH_BACKEND)


def resolve_backend(name: str, device: str) -> str:
    """"torch" or "onnx" for a resolved device ("cpu" | "cuda"). ORT runs on the CPU only;
    "auto" picks it on the CPU when it is installed."""
    check_backend(name)
    if name == "auto":
        return "onnx" if device == "cpu" and onnx_available() else "torch"
    if name == "onnx" and device != "cpu":
        raise InputError("the ONNX backend runs on the CPU only", fix=FIX_CPU)
    return name


def cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "imgsim-index", "onnx")


def cache_path(model: LoadedModel) -> str:
    """Where `model`'s exported network lives: one file per model name and weights."""
    wid = re.sub(r"[^A-Za-z0-9._-]+", "-", model.weights_id)
    return os.path.join(cache_dir(), f"{model.info.name}-{wid}.onnx")


def export_onnx(model: LoadedModel) -> bytes:
    """The feature network as an ONNX model (bytes): input "input" (N,3,crop,crop) float32,
    output "features" (N,dim), N dynamic."""
    import torch

    net = model.network
    was_training = net.training
    crop = model.info.preprocess.crop
    try:
        net.eval()
        with warnings.catch_warnings(), torch.no_grad(), \
                tempfile.TemporaryDirectory(prefix="imgsim-onnx-") as tmp:
            warnings.simplefilter("ignore")  # the legacy exporter's deprecation notices
            path = os.path.join(tmp, "model.onnx")
            torch.onnx.export(
                net, (torch.zeros(2, 3, crop, crop),), path, dynamo=False,
                input_names=["input"], output_names=["features"], opset_version=OPSET,
                dynamic_axes={"input": {0: "batch"}, "features": {0: "batch"}},
            )
            with open(path, "rb") as fh:
                return fh.read()
    except Exception as exc:  # the exporter raises many types
        raise ModelError(
            f"cannot export {model.info.name} to ONNX ({type(exc).__name__}: {exc})",
            fix=FIX_TORCH_BACKEND
        ) from None
    finally:
        net.train(was_training)


def default_threads() -> int:
    """torch's intra-op thread count, without importing torch for it."""
    if "torch" in sys.modules:
        import torch

        return int(torch.get_num_threads())
    with contextlib.suppress(ValueError):
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "")))
    return usable_cores()


def record_path(path: str) -> str:
    """Where the record of a cached file's passed check lives."""
    return path + ".json"


def digest_path(path: str) -> str:
    """Where a cached file's sha256 is kept with the stat it had when it was hashed."""
    return path + ".digest.json"


def _stat_key(st: os.stat_result) -> list[int]:
    return list(stat_stamp(st))  # a list, as the kept JSON reads back


def _kept_digest(path: str, seen: list[int]) -> str | None:
    """The sha256 kept for the file at `path` when its stat is still `seen`; else None."""
    try:
        with open(digest_path(path), encoding="utf-8") as fh:
            kept = json.load(fh)
    except (OSError, ValueError):
        return None
    if not isinstance(kept, dict) or kept.get("path") != os.path.abspath(path) or \
            kept.get("stat") != seen or not isinstance(kept.get("sha256"), str):
        return None
    return str(kept["sha256"])


def _keep_digest(path: str, seen: list[int], sha256: str, hashed_at: int) -> None:
    """Keep `sha256` (hashed at `hashed_at`, time.time_ns()) for the file at `path` of stat
    `seen`, when its ctime is old enough to be trusted (best effort)."""
    if stamp_trusted(seen, hashed_at):
        kept = {"path": os.path.abspath(path), "stat": seen, "sha256": sha256}
        with contextlib.suppress(OSError):
            _write_atomically(digest_path(path), json.dumps(kept).encode())


def _identity(model: LoadedModel) -> dict[str, Any]:
    """What a cached file's record must name, besides its sha256."""
    import onnxruntime as ort

    return {"model": model.info.name, "weights_id": model.weights_id, "opset": OPSET,
            "onnxruntime": ort.__version__}


def _trusted_bytes(path: str, want: dict[str, Any]) -> tuple[bytes, str] | None:
    """The bytes of the file at `path` and their sha256, when its record is `want` with
    that sha256; else None. The file is hashed unless its digest is kept for its present
    stat (see digest_path)."""
    try:
        with open(record_path(path), encoding="utf-8") as fh:
            rec = json.load(fh)
        with open(path, "rb") as fh:
            seen = _stat_key(os.fstat(fh.fileno()))
            started = time.time_ns()
            data = fh.read()
            if _stat_key(os.fstat(fh.fileno())) != seen:  # written while read
                return None
    except (OSError, ValueError):
        return None
    kept = _kept_digest(path, seen)
    sha256 = kept or hashlib.sha256(data).hexdigest()
    if rec != {**want, "sha256": sha256}:
        return None
    if kept is None:
        _keep_digest(path, seen, sha256, started)
    return data, sha256


def _write_atomically(path: str, data: bytes) -> None:
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".export-", suffix=".part", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class OnnxNetwork:
    """An ORT session standing in for `model.network` on the CPU: float32 NCHW
    normalised batch -> pooled features (not normalised)."""

    def __init__(self, session: Any, source: str, optimized: str | None = None):
        # source: the ONNX file; optimized: the graph ORT optimised from it earlier, when
        # the session runs that one
        self.session, self.source, self.optimized = session, source, optimized

    def __call__(self, x: np.ndarray) -> np.ndarray:
        out = self.session.run(None, {"input": np.ascontiguousarray(x, dtype=np.float32)})
        return np.asarray(out[0], dtype=np.float32)


def _session(model_bytes: bytes, threads: int, optimize: bool = True,
             save_to: str | None = None) -> Any:
    """An ORT session; `optimize` False for a graph ORT optimised already, `save_to` a
    path where ORT writes the graph it optimised."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                   else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    if save_to:
        so.optimized_model_filepath = save_to
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    # idle ORT threads sleep instead of spinning: the decoding processes share the cores
    # (end to end this measured 4-14% faster; the network alone ~7% slower)
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3  # errors only
    return ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])


def optimized_path(path: str) -> str:
    """Where the graph ORT optimised from the cached file at `path` is kept."""
    return path.removesuffix(".onnx") + ".optimized.onnx"


def cpu_key() -> str | None:
    """The instruction sets ORT picks its kernels and blocked layouts by: a digest of the
    first `flags` (x86) or `Features` (Arm) line of /proc/cpuinfo and the architecture;
    None where there is no such line (no optimised graph is kept there)."""
    import platform

    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8",
                                            errors="replace") as fh:
        for line in fh:
            if line.startswith(("flags", "Features")):
                text = f"{platform.machine()}|{line.partition(':')[2].strip()}"
                return hashlib.sha256(text.encode()).hexdigest()[:16]
    return None


# An optimised graph is kept only when its unit vectors are those of the session that
# optimised it, within this (per coordinate).
OPTIMIZED_TOLERANCE = 1e-6


def _same_features(a: Any, b: Any, crop: int) -> bool:
    """Two sessions give the same unit vectors (within OPTIMIZED_TOLERANCE) on a seeded
    batch of 3."""
    x = np.random.default_rng(0).standard_normal((3, 3, crop, crop), dtype=np.float32)
    got = [OnnxNetwork(s, "")(x).astype(np.float64) for s in (a, b)]
    if got[0].shape != got[1].shape:
        return False
    unit = [g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-30) for g in got]
    return bool(np.abs(unit[0] - unit[1]).max() <= OPTIMIZED_TOLERANCE)


def _cached_session(path: str, data: bytes, sha256: str, threads: int,
                    crop: int) -> OnnxNetwork:
    """A session of the checked file at `path` (`data`, of `sha256`): of the graph ORT
    optimised from it when that is kept for this onnxruntime and CPU, else optimised now,
    that graph kept (best effort) when a session of it gives the same vectors."""
    import onnxruntime as ort

    cpu = cpu_key()
    if cpu is None:
        return OnnxNetwork(_session(data, threads), path)
    opt = optimized_path(path)
    want = {"source_sha256": sha256, "onnxruntime": ort.__version__, "cpu": cpu}
    saved = _trusted_bytes(opt, want)
    if saved is not None:
        with contextlib.suppress(Exception):  # a graph ORT refuses: optimised again
            return OnnxNetwork(_session(saved[0], threads, optimize=False), path, opt)
    try:
        fd, tmp = tempfile.mkstemp(prefix=".optimized-", suffix=".part",
                                   dir=os.path.dirname(path))
        os.close(fd)
    except OSError:  # a read-only cache: optimised on every run
        return OnnxNetwork(_session(data, threads), path)
    try:
        session = _session(data, threads, save_to=tmp)
        with contextlib.suppress(Exception), open(tmp, "rb") as fh:
            graph = fh.read()
            if _same_features(session, _session(graph, threads, optimize=False), crop):
                os.replace(tmp, opt)
                _write_record(opt, graph, want)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    return OnnxNetwork(session, path)


def _agrees(net: OnnxNetwork, model: LoadedModel) -> bool:
    """ORT and torch give the same features (cosine per row) on a seeded batch of 3
    (not the export's 2, so the batch axis is exercised too)."""
    import torch

    crop = model.info.preprocess.crop
    x = np.random.default_rng(0).standard_normal((3, 3, crop, crop), dtype=np.float32)
    with torch.inference_mode():
        want = model.network(torch.from_numpy(x).contiguous()).float().numpy()
    try:
        got = net(x)
    except Exception:  # a file of another network: wrong input name or shape
        return False
    if got.shape != want.shape:
        return False
    a, b = got.astype(np.float64), want.astype(np.float64)
    cos = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1),
                                      1e-30)
    return bool(np.all(cos >= SELF_CHECK_COSINE))


def load_onnx_network(model: LoadedModel, threads: int | None = None,
                      use_cache: bool = True) -> OnnxNetwork:
    """An ORT session for `model`: from the cache when a checked file is there (without
    the torch network when its record matches), else exported now (and cached when the
    cache folder is writable)."""
    check_backend("onnx")
    threads = threads or default_threads()
    path = cache_path(model)
    if use_cache:
        checked = _trusted_bytes(path, _identity(model))
        with contextlib.suppress(Exception):  # a file ORT refuses: check, export again
            if checked is not None:
                return _cached_session(path, *checked, threads, model.info.preprocess.crop)
        with contextlib.suppress(Exception):  # unreadable or not a model: export again
            with open(path, "rb") as fh:
                data = fh.read()
            net = OnnxNetwork(_session(data, threads), path)
            if _agrees(net, model):
                _write_record(path, data, _identity(model))
                return net
    data = export_onnx(model)
    try:
        net = OnnxNetwork(_session(data, threads), "exported now")
    except Exception as exc:
        raise ModelError(
            f"onnxruntime cannot load the exported {model.info.name} "
            f"({type(exc).__name__}: {exc})", fix=FIX_TORCH_BACKEND
        ) from None
    if not _agrees(net, model):
        raise ModelError(
            f"ONNX export of {model.info.name} disagrees with torch (cosine < "
            f"{SELF_CHECK_COSINE})", fix=FIX_TORCH_BACKEND
        )
    if use_cache:
        with contextlib.suppress(OSError):  # a read-only cache costs an export per run
            _write_atomically(path, data)
            net.source = path
            _write_record(path, data, _identity(model))
    return net


def _write_record(path: str, data: bytes, want: dict[str, Any]) -> None:
    """Record `want` with the sha256 of `data`, cached at `path` (best effort)."""
    started = time.time_ns()
    sha256 = hashlib.sha256(data).hexdigest()
    with contextlib.suppress(OSError):
        _write_atomically(record_path(path), json.dumps({**want, "sha256": sha256}).encode())
        with open(path, "rb") as fh:  # the digest is kept only for these very bytes
            seen = _stat_key(os.fstat(fh.fileno()))
            if fh.read() == data:
                _keep_digest(path, seen, sha256, started)


__all__ = ["BACKENDS", "OnnxNetwork", "cache_dir", "cache_path", "check_backend",
           "cpu_key", "default_threads", "digest_path", "export_onnx", "load_onnx_network",
           "onnx_available", "optimized_path", "record_path", "resolve_backend"]
