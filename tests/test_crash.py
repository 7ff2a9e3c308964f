"""SIGKILL a real build subprocess at seeded random moments; the index stays consistent
and the next build resumes, re-embedding only what was not committed."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import ROOT, _load_script

stress = _load_script("stress_kill")


@pytest.fixture(scope="module")
def reference(samples: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    work = tmp_path_factory.mktemp("kill")
    vectors, window = stress.reference_build(samples / "images", work)
    return work, vectors, window


@pytest.mark.parametrize("seed", range(10))
def test_kill_and_resume(seed: int, samples: Path, reference, lite0) -> None:  # type: ignore[no-untyped-def]
    work, vectors, window = reference
    assert len(vectors) > 20
    print(stress.one_iteration(samples / "images", work, seed, vectors, window, lite0))


def test_script_is_runnable() -> None:
    assert (ROOT / "scripts" / "stress_kill.py").is_file()
