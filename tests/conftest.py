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
    from imgsim_index.embed.models import load_model

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


def cli_ok(*args: str) -> str:
    """Run the CLI in-process; fail the test with its output unless it exits 0."""
    from click.testing import CliRunner

    from imgsim_index.cli import cli

    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def cli_main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run the CLI's own entry point (its one-line errors, its exit codes): (exit code,
    stdout, stderr)."""
    from imgsim_index.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(args)
        raise SystemExit(0)
    out = capsys.readouterr()
    return int(exit_.value.code or 0), out.out, out.err


def report_of(stdout: str) -> dict:  # type: ignore[type-arg]
    """The report.json a dedupe run printed the path of."""
    line = next(x for x in stdout.splitlines() if x.startswith("Result JSON: "))
    return json.loads(Path(line.removeprefix("Result JSON: ")).read_text())  # type: ignore[no-any-return]


def pair_set(report: dict) -> set[tuple[str, str]]:  # type: ignore[type-arg]
    return {tuple(sorted((p["image1"], p["image2"]))) for p in report["similar_pairs"]}  # type: ignore[misc]


def write_scene_video(path: Path, scenes: int = 3, seconds_each: int = 4, fps: int = 10,
                      seed: int = 1) -> None:
    """A static-camera clip: `scenes` still scenes with a little sensor noise, back to back."""
    import random

    import cv2
    import numpy as np

    make = _load_script("make_samples")
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (640, 480))
    rng = random.Random(seed)
    noise = np.random.default_rng(seed)
    for _ in range(scenes):
        frame = np.asarray(make.scene(rng, (640, 480)))[:, :, ::-1]
        for _ in range(seconds_each * fps):
            jitter = noise.integers(-2, 3, frame.shape)
            writer.write(np.clip(frame.astype(np.int16) + jitter, 0, 255).astype(np.uint8))
    writer.release()
