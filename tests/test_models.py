"""Real pre-trained weights: loaded right, unit vectors out, clear errors when missing."""

from __future__ import annotations

import os
import urllib.error

import numpy as np
import pytest
import torch

from imgsim_index.embed.embedder import Embedder
from imgsim_index.embed.models import load_model, model_info
from imgsim_index.embed.models.efficientnet import EFFICIENTNET_LITE0, build_classifier
from imgsim_index.errors import FIX_WEIGHTS, ModelError
from imgsim_index.ingest.decode import decode_file


def _photo(name: str) -> str:
    import skimage

    path = os.path.join(os.path.dirname(skimage.__file__), "data", name)
    if not os.path.isfile(path):
        pytest.skip(f"scikit-image does not ship {name}")
    return path


def _top(net: torch.nn.Module, path: str, k: int = 3) -> list[str]:
    from torchvision.models import ResNet50_Weights

    categories = ResNet50_Weights.IMAGENET1K_V1.meta["categories"]
    pre = EFFICIENTNET_LITE0.preprocess
    px = decode_file(path, pre).pixels
    x = torch.from_numpy(px.copy()).permute(2, 0, 1).float()[None] / 255.0
    x = (x - torch.tensor(pre.mean).view(1, 3, 1, 1)) / torch.tensor(pre.std).view(1, 3, 1, 1)
    with torch.inference_mode():
        probs = net(x).softmax(1)[0]
    return [categories[int(i)] for i in probs.topk(k).indices]


def test_efficientnet_lite0_classifies_real_photos() -> None:
    """The shipped weights map onto timm's network correctly: real photos get real labels."""
    net, _, _ = build_classifier()
    assert _top(net, _photo("coffee.png"), 1) == ["espresso"]
    assert _top(net, _photo("chelsea.png"), 1)[0] in {"tabby", "tiger cat", "Egyptian cat"}
    assert {"moped", "motor scooter"} & set(_top(net, _photo("motorcycle_left.png")))


def test_efficientnet_lite0_gives_unit_vectors(lite0, samples) -> None:  # type: ignore[no-untyped-def]
    e = Embedder(lite0, "cpu")
    path = str(next((samples / "images" / "camera").glob("*.jpg")))
    px = decode_file(path, lite0.info.preprocess).pixels
    v = e.embed_pixels(np.stack([px, px]))
    assert v.shape == (2, 1280) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert lite0.weights_id.startswith("sha256:")


def test_resnet50_loads_local_weights_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from torchvision.models import resnet50

    torch.manual_seed(0)
    path = tmp_path / "resnet50.pth"
    torch.save(resnet50(weights=None).state_dict(), path)
    m = load_model("resnet50", str(path))
    assert m.info.dim == 2048 and m.weights_source == str(path)
    v = Embedder(m, "cpu").embed_pixels(np.random.default_rng(0).integers(
        0, 255, (2, 224, 224, 3), dtype=np.uint8))
    assert v.shape == (2, 2048)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    # the same tensors saved again give the same identity
    torch.save(torch.load(path, weights_only=True), tmp_path / "copy.pth")
    assert load_model("resnet50", str(tmp_path / "copy.pth")).weights_id == m.weights_id


def test_resnet50_without_weights_says_what_to_do(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Offline with an empty cache: one message naming the cache, the URL and the ways out."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))

    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(ModelError) as err:
        load_model("resnet50")
    msg = str(err.value)
    assert str(tmp_path / "torch-home") in msg
    assert "https://download.pytorch.org/models/resnet50-0676ba61.pth" in msg
    assert "weights file" in msg and "efficientnet-lite0" in msg and "--" not in msg
    assert err.value.fix == FIX_WEIGHTS  # the CLI adds: (--weights FILE, or --model ...)
    from imgsim_index.cli import error_line

    assert "--weights FILE, or --model efficientnet-lite0" in error_line(err.value)


def test_bad_weights_file_is_a_model_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="cannot read weights file"):
        load_model("resnet50", str(bad))
    with pytest.raises(ModelError, match="not found"):
        load_model("resnet50", str(tmp_path / "missing.pth"))
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ModelError, match="not a torchvision ResNet50"):
        load_model("resnet50", str(tmp_path / "other.pth"))


def test_unknown_model_lists_choices() -> None:
    with pytest.raises(ModelError, match="resnet50, efficientnet-lite0"):
        model_info("vgg")
