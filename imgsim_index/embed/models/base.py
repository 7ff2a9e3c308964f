"""The interface every backbone provides: a feature network plus its identity."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from imgsim_index.errors import ModelError
from imgsim_index.ingest.preprocess import Preprocess

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class ModelInfo:
    """What is known about a model without loading it."""

    name: str
    dim: int
    preprocess: Preprocess


class LoadedModel:
    """A model's identity, and its feature network (images (N,3,H,W) normalised -> pooled
    features (N, dim)).

    The network may be built on first use (`build`): when the weights' digest is known
    from the digest cache, the identity is ready without torch, and a backend that has
    the network exported already (ONNX Runtime) never needs it. `build` checks that the
    weights it reads still have `weights_id`.
    """

    def __init__(self, info: ModelInfo, network: torch.nn.Module | None, weights_id: str,
                 weights_source: str,
                 build: Callable[[], tuple[torch.nn.Module, str]] | None = None):
        if network is None and build is None:
            raise ValueError("a LoadedModel needs its network or a way to build it")
        self.info, self.weights_id, self.weights_source = info, weights_id, weights_source
        self._network, self._build = network, build

    @property
    def network_built(self) -> bool:
        return self._network is not None

    @property
    def network(self) -> torch.nn.Module:
        if self._network is None:
            assert self._build is not None
            net, digest = self._build()
            if digest != self.weights_id:
                raise ModelError(
                    f"the weights file {self.weights_source} changed: its tensors now have "
                    f"digest {digest}, not {self.weights_id}"
                )
            self._network = net
        return self._network

    @network.setter
    def network(self, net: torch.nn.Module) -> None:
        self._network = net

    def identity(self) -> dict[str, Any]:
        return {
            "model": self.info.name,
            "dim": self.info.dim,
            "weights_id": self.weights_id,
            "preprocessing": self.info.preprocess.identity(),
        }


def state_dict_digest(state: dict[str, Any], skip_prefixes: tuple[str, ...] = ()) -> str:
    """sha256 over names, shapes and bytes of the tensors, in sorted name order."""
    h = hashlib.sha256()
    for key in sorted(state):
        if key.startswith(skip_prefixes):
            continue
        t = state[key].detach().cpu().contiguous()
        h.update(key.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    return "sha256:" + h.hexdigest()[:32]


def read_state_dict(path: str) -> dict[str, Any]:
    """Load a state_dict saved with torch.save, tolerating common wrappers."""
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelError(f"weights file not found: {path}") from None
    except Exception as exc:  # torch raises many types for a bad file
        raise ModelError(f"cannot read weights file {path}: {exc}") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ModelError(f"{path} does not hold a state_dict (found {type(obj).__name__})")
    return {k.removeprefix("module."): v for k, v in obj.items()}


# The digest of a weights file is a pass over all its tensors, and reading them needs torch
# (seconds to import): it is kept in the cache, keyed by the model, the file's absolute
# path, size and mtime, so a run whose ONNX network is cached starts without torch.
DIGESTS_FILE = "weights-digests.json"


def cache_root() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "imgsim-index")


def _digest_key(model: str, path: str) -> str | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return f"{model}|{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}"


def _read_digests() -> dict[str, str]:
    try:
        with open(os.path.join(cache_root(), DIGESTS_FILE), encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}


def cached_digest(model: str, path: str) -> str | None:
    """The digest recorded for this file when its size and mtime have not changed."""
    key = _digest_key(model, path)
    return _read_digests().get(key) if key else None


def remember_digest(model: str, path: str, digest: str) -> None:
    """Record a digest just computed (best effort: a read-only cache only costs time)."""
    key = _digest_key(model, path)
    if key is None:
        return
    data = _read_digests()
    if data.get(key) == digest:
        return
    data[key] = digest
    folder = cache_root()
    with contextlib.suppress(OSError):
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".digests-", suffix=".part", dir=folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh, indent=0, sort_keys=True)
            os.replace(tmp, os.path.join(folder, DIGESTS_FILE))
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


def weights_model(info: ModelInfo, path: str,
                  features: Callable[[str], tuple[torch.nn.Module, str]]) -> LoadedModel:
    """The model of weights file `path`; `features(path)` builds its feature network and
    returns it with the weights' digest. With the digest cached for this file, the network
    is built only when something uses it."""
    digest = cached_digest(info.name, path)

    def build() -> tuple[torch.nn.Module, str]:
        net, got = features(path)
        remember_digest(info.name, path, got)
        return net, got

    if digest is not None:
        return LoadedModel(info, None, digest, path, build=build)
    net, digest = build()
    return LoadedModel(info, net, digest, path)
