"""Quick start: with the ONNX network and the weights' digest cached, a build and a query
run without torch (checked in a fresh process); the caches are trusted only while they
match (weights file unchanged, ONNX file as checked)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgsim_index.embed.models import load_model
from imgsim_index.embed.models.base import cached_digest, remember_digest
from imgsim_index.embed.models.efficientnet import packaged_weights_path
from imgsim_index.errors import ModelError
from imgsim_index.index.store import IndexStore
from imgsim_index.pipeline.build import BuildSettings, build_index

MODEL = "efficientnet-lite0"
HEAVY = ("torch", "timm", "torchvision")


def _photo(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    Image.fromarray(small).resize((320, 240), Image.BICUBIC).save(path, quality=92)


def test_cached_onnx_build_and_query_import_no_torch(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    for k in range(3):
        (tmp_path / "a").mkdir(exist_ok=True)
        _photo(tmp_path / "a" / f"p{k}.jpg", k)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    settings = BuildSettings(model=MODEL)
    build_index([str(tmp_path / "a")], str(tmp_path / "first"), settings)  # fills the caches
    script = (
        "import json, sys\n"
        "from imgsim_index.pipeline.build import BuildSettings, build_index\n"
        "from imgsim_index.pipeline.query import query_index\n"
        f"r = build_index([{str(tmp_path / 'b')!r}], {str(tmp_path / 'second')!r}, "
        f"BuildSettings(model={MODEL!r}))\n"
        f"q = query_index({str(tmp_path / 'second')!r}, [{str(tmp_path / 'a' / 'p1.jpg')!r}], "
        "top_k=1)\n"
        f"print(json.dumps([r.embedded, q[0].matches[0][0], [m for m in {HEAVY!r} "
        "if m in sys.modules]]))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, env=os.environ.copy()).stdout
    embedded, top, heavy = json.loads(out.splitlines()[-1])
    assert (embedded, top, heavy) == (3, str(tmp_path / "b" / "p1.jpg"), [])
    with IndexStore.open_reader(str(tmp_path / "first")) as a, \
            IndexStore.open_reader(str(tmp_path / "second")) as b:
        va, vb = a.load(), b.load()
        assert a.manifest["weights_id"] == b.manifest["weights_id"]
    np.testing.assert_allclose(va.vectors, vb.vectors, atol=1e-5)


def test_weights_digest_is_cached_by_path_size_and_mtime(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    weights = tmp_path / "lite0.pth"
    shutil.copyfile(packaged_weights_path(), weights)
    first = load_model(MODEL, str(weights))
    assert first.network_built  # nothing cached: the network was built to hash the weights
    assert cached_digest(MODEL, str(weights)) == first.weights_id
    second = load_model(MODEL, str(weights))
    assert not second.network_built and second.weights_id == first.weights_id
    os.utime(weights, ns=(1, 1))  # touched: the cached digest no longer applies
    assert cached_digest(MODEL, str(weights)) is None


def test_a_wrong_cached_digest_is_caught_when_the_network_is_built(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    weights = tmp_path / "lite0.pth"
    shutil.copyfile(packaged_weights_path(), weights)
    remember_digest(MODEL, str(weights), "sha256:not-these-weights")
    lazy = load_model(MODEL, str(weights))
    assert lazy.weights_id == "sha256:not-these-weights"
    with pytest.raises(ModelError, match=r"the weights file .*lite0\.pth changed: its tensors "
                                         r"now have digest sha256:[0-9a-f]{32}, not "
                                         r"sha256:not-these-weights"):
        _ = lazy.network
