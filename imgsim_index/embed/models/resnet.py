"""ResNet50 (torchvision, ImageNet weights), classifier removed: 2048-d pooled features.

Weights come from `--weights FILE`, else torchvision's cache
(`$TORCH_HOME/hub/checkpoints`), else torchvision's download. IMAGENET1K_V1 is
used: it is what `resnet50(pretrained=True)` gave, which the 0.99 default
threshold was chosen with.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from imgsim_index.embed.models.base import (
    LoadedModel,
    ModelInfo,
    read_state_dict,
    state_dict_digest,
    weights_model,
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


# torchvision's ResNet50_Weights.IMAGENET1K_V1.url, written out so that finding the cached
# file does not import torchvision (a test checks the two agree)
WEIGHTS_URL = "https://download.pytorch.org/models/resnet50-0676ba61.pth"


def torchvision_weights_url() -> str:
    from torchvision.models import ResNet50_Weights

    return str(ResNet50_Weights.IMAGENET1K_V1.url)


def torch_hub_dir() -> str:
    """torch.hub.get_dir(), without importing torch when it is not imported yet."""
    if "torch" in sys.modules:
        import torch.hub

        return str(torch.hub.get_dir())
    cache = os.getenv("XDG_CACHE_HOME", os.path.join("~", ".cache"))
    return os.path.join(os.path.expanduser(os.getenv("TORCH_HOME", os.path.join(cache, "torch"))),
                        "hub")


def torchvision_cache_path() -> str:
    return os.path.join(torch_hub_dir(), "checkpoints", os.path.basename(WEIGHTS_URL))


def _download_torchvision_weights() -> str:
    import torch.hub

    cached = torchvision_cache_path()
    url = torchvision_weights_url()
    try:
        torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=True)
    except Exception as exc:  # offline: URLError, socket errors, HTTP errors
        raise ModelError(
            "ResNet50 ImageNet weights are not available: "
            f"not in torchvision's cache ({cached}) and the download from {url} failed "
            f"({type(exc).__name__}: {exc}). Download that file on a machine with internet "
            f"and give it as the weights file (or copy it to {cached}), "
            "or use the offline model efficientnet-lite0", fix=FIX_WEIGHTS
        ) from None
    return torchvision_cache_path()


def _features(source: str) -> tuple[Any, str]:
    import torch
    from torchvision.models import resnet50

    state = read_state_dict(source)
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
    return net, digest


def load_resnet50(weights: str | None) -> LoadedModel:
    if weights:
        source = os.path.abspath(weights)
    else:
        source = torchvision_cache_path()
        if not os.path.isfile(source):
            source = _download_torchvision_weights()
    return weights_model(RESNET50, source, _features)
