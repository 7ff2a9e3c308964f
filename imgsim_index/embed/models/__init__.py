"""models: one file per backbone behind one small interface (see base.py).

Nothing here builds a network at import time; `load_model` does, on request.
"""

from __future__ import annotations

from collections.abc import Callable

from imgsim_index.embed.models.base import LoadedModel, ModelInfo
from imgsim_index.embed.models.efficientnet import EFFICIENTNET_LITE0, load_efficientnet_lite0
from imgsim_index.embed.models.resnet import RESNET50, load_resnet50
from imgsim_index.errors import ModelError

DEFAULT_MODEL = "resnet50"

_LOADERS: dict[str, tuple[ModelInfo, Callable[[str | None], LoadedModel]]] = {
    RESNET50.name: (RESNET50, load_resnet50),
    EFFICIENTNET_LITE0.name: (EFFICIENTNET_LITE0, load_efficientnet_lite0),
}

MODEL_NAMES = tuple(_LOADERS)


def model_info(name: str) -> ModelInfo:
    try:
        return _LOADERS[name][0]
    except KeyError:
        raise ModelError(
            f"unknown model {name!r}; choose one of: {', '.join(MODEL_NAMES)}"
        ) from None


def load_model(name: str, weights: str | None = None) -> LoadedModel:
    """Build `name` on the CPU with its pre-trained weights (from `weights` if given)."""
    model_info(name)
    return _LOADERS[name][1](weights)


__all__ = ["DEFAULT_MODEL", "MODEL_NAMES", "LoadedModel", "ModelInfo", "load_model", "model_info"]
