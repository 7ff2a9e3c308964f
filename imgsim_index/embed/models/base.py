"""The interface every backbone provides: a feature network plus its identity."""

from __future__ import annotations

import hashlib
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


@dataclass
class LoadedModel:
    info: ModelInfo
    network: torch.nn.Module  # images (N,3,H,W) normalised -> pooled features (N, dim)
    weights_id: str  # content hash of the weights: two files with equal tensors agree
    weights_source: str  # where they were loaded from, for messages and the manifest

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
