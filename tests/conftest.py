"""Shared fixtures: generated images and a real EfficientNet-Lite0 (weights from a pip package)."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load_script(name: str):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def lite0():  # type: ignore[no-untyped-def]
    from imgsim_index.models import load_model

    return load_model("efficientnet-lite0")


@pytest.fixture(scope="session")
def samples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 generated scenes, half with edited copies; OUT/images and OUT/truth.json."""
    out = tmp_path_factory.mktemp("samples")
    make = _load_script("make_samples")
    import sys

    argv = sys.argv
    sys.argv = ["make_samples.py", str(out), "--distinct", "24", "--seed", "3"]
    try:
        make.main()
    finally:
        sys.argv = argv
    return out


def truth_pairs(root: Path) -> set[tuple[str, str]]:
    truth = json.loads((root / "truth.json").read_text())
    pairs = set()
    for g in truth["groups"]:
        paths = sorted(os.path.join(root, "images", p) for p in g)
        for a in range(len(paths)):
            for b in range(a + 1, len(paths)):
                pairs.add((paths[a], paths[b]))
    return pairs
