"""ResNet50 (torchvision, ImageNet weights), classifier removed: 2048-d pooled features.

Weights come from `--weights FILE`, else torchvision's cache
(`$TORCH_HOME/hub/checkpoints`), else torchvision's download. IMAGENET1K_V1 is
used: it is what `resnet50(pretrained=True)` gave, which the 0.99 default
threshold was chosen with.
"""

from __future__ import annotations

import os

from imgsim_index.embed.models.base import (
    LoadedModel,
    ModelInfo,
    read_state_dict,
    state_dict_digest,
)
from imgsim_index.errors import FIX_WEIGHTS, ModelError
from imgsim_index.ingest.preprocess import Preprocess

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

RESNET50 = ModelInfo(
    name="resnet50",
    dim=2048,
    preprocess=Preprocess(
        resize=256, crop=224, interpolation="bilinear", mean=IMAGENET_MEAN, std=IMAGENET_STD
    ),
)


def torchvision_weights_url() -> str:
    from torchvision.models import ResNet50_Weights

    return str(ResNet50_Weights.IMAGENET1K_V1.url)


def torchvision_cache_path() -> str:
    import torch.hub

    return os.path.join(
        torch.hub.get_dir(), "checkpoints", os.path.basename(torchvision_weights_url())
    )


def _fetch_torchvision_weights() -> tuple[dict[str, object], str]:
    import torch.hub

    cached = torchvision_cache_path()
    if os.path.isfile(cached):
        return read_state_dict(cached), cached
    url = torchvision_weights_url()
    try:
        state = torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=True)
    except Exception as exc:  # offline: URLError, socket errors, HTTP errors
        raise ModelError(
            "ResNet50 ImageNet weights are not available: "
            f"not in torchvision's cache ({cached}) and the download from {url} failed "
            f"({type(exc).__name__}: {exc}). Download that file on a machine with internet "
            f"and give it as the weights file (or copy it to {cached}), "
            "or use the offline model efficientnet-lite0", fix=FIX_WEIGHTS
        ) from None
    return state, url


def load_resnet50(weights: str | None) -> LoadedModel:
    import torch
    from torchvision.models import resnet50

    if weights:
        state, source = read_state_dict(weights), os.path.abspath(weights)
    else:
        state, source = _fetch_torchvision_weights()
    net = resnet50(weights=None)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise ModelError(
            f"{source} is not a torchvision ResNet50 state_dict: {first}"
        ) from None
    digest = state_dict_digest(state, skip_prefixes=("fc.",))
    net.fc = torch.nn.Identity()  # type: ignore[assignment]
    net.eval()
    return LoadedModel(RESNET50, net, digest, source)
