"""The public Python API: README's example runs as written, the API returns data and writes
nothing unless asked, and the search entry point reports how it searched."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import imgsim_index
from imgsim_index import search
from imgsim_index.progress import NoProgress
from imgsim_index.search import PairSettings, SearchInfo

ROOT = Path(__file__).resolve().parents[1]


def readme_python_example() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Python", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README's Python section has no python block"
    return match.group(1)


def test_public_names_resolve_lazily() -> None:
    code = ("import sys, imgsim_index; heavy = [m for m in ('torch', 'faiss', 'cv2') "
            "if m in sys.modules]; print(heavy); imgsim_index.find_duplicates; "
            "imgsim_index.Index; imgsim_index.PairSettings; imgsim_index.undo")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"  # importing the package loads no heavy library
    for name in imgsim_index.__all__:
        assert getattr(imgsim_index, name) is not None, name
    with pytest.raises(AttributeError):
        imgsim_index.no_such_name  # noqa: B018


def test_readme_python_example_runs_as_written(samples: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The one-call example, run in a folder holding `photos/` (generated images): it builds
    a cache index, and a second call only reads it."""
    shutil.copytree(samples / "images", tmp_path / "photos")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    code = readme_python_example()
    assert len([ln for ln in code.splitlines() if ln.strip()]) <= 6
    namespace: dict[str, object] = {}
    exec(compile(code, "README.md", "exec"), namespace)
    result = namespace["result"]
    assert isinstance(result, imgsim_index.Duplicates)
    photos = sorted(str(p) for p in (tmp_path / "photos").rglob("*") if p.is_file())
    assert sorted(result.duplicates) == photos  # every image, with its duplicates or none
    pairs = {frozenset(p[:2]): p[2] for p in result.pair_paths()}
    listed = {frozenset((a, d["file"])): d["similarity_score"]
              for a, dups in result.duplicates.items() for d in dups}
    assert listed == pairs and len(pairs) > 0
    assert all(d["match"] in ("exact", "copy") for dups in result.duplicates.values()
               for d in dups)
    groups = result.group_paths()
    assert [g[0] for g in groups] == result.keeper_paths()
    assert sorted(result.removable_paths()) == sorted(
        p for g in groups for p in g[1:])  # plain photos: every other member is removable
    assert result.to_dict() == result.duplicates
    (cache,) = (tmp_path / "cache" / "imgsim-index" / "indexes").iterdir()
    assert result.index_path == str(cache)
    assert result.build is not None and result.build.embedded == len(photos)
    again = imgsim_index.find_duplicates("photos", model="efficientnet-lite0")
    assert again.build is not None and again.build.embedded == 0
    assert again.duplicates == result.duplicates
    assert not (tmp_path / "results").exists()  # no report unless asked


def test_the_package_namespace_shows_only_the_public_api() -> None:
    names = dir(imgsim_index)
    assert not {"Any", "TYPE_CHECKING", "annotations", "importlib", "typing"} & set(names)
    assert set(names) == {*imgsim_index.__all__, "__version__"}


def test_find_duplicates_writes_nothing(samples: Path, tmp_path: Path) -> None:
    from imgsim_index import BuildSettings, Index, find_duplicates

    index = Index(str(tmp_path / "idx"), BuildSettings(model="efficientnet-lite0"))
    index.add([str(samples / "images")])
    def state() -> list[tuple[str, int, int]]:  # SQLite's WAL files belong to readers too
        return sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size)
                      for p in (tmp_path / "idx").rglob("*")
                      if not p.name.endswith(("-shm", "-wal")))

    before = state()
    dups = find_duplicates(index, threshold=0.9)
    again = index.find_duplicates(threshold=0.9)
    after = state()
    assert before == after and sorted(os.listdir(tmp_path)) == ["idx"]
    assert [p[:2] for p in dups.pair_paths()] == [p[:2] for p in again.pair_paths()]
    report = dups.to_report("20260101_000000")
    assert report["number_of_similar_pairs"] == len(dups.pairs)
    assert report["photos_to_remove"] == dups.groups.n_removable
    assert report["pair_search"] == {"method": "exact", "precision": dups.search.precision}
    # a threshold given in PairSettings is used as given, even the search's own default
    given = find_duplicates(index, settings=imgsim_index.DedupeSettings(
        pairs=PairSettings(threshold=0.99)))
    assert (given.threshold_used, given.threshold_source) == (0.99, "given")
    assert (find_duplicates(index).threshold_used,
            find_duplicates(index).threshold_source) == (0.75, "model default")
    files = imgsim_index.write_report(dups, str(tmp_path / "out"), collage=False,
                                      gallery=False)
    assert sorted(os.listdir(tmp_path / "out")) == ["report.json"]
    assert files.collage_path == files.gallery_path == ""


def test_find_pairs_returns_search_info() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 32)).astype(np.float32)
    x[1] = x[0] + 0.01
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    pairs, info = search.find_pairs(x, PairSettings(threshold=0.99, block_size=64))
    assert isinstance(info, SearchInfo)
    assert (info.method, info.engine, info.vectors, info.queries) == ("exact", "local", 300, None)
    assert info.pairs == len(pairs) >= 1 and info.candidates >= info.pairs
    steps: list[tuple[int, int]] = []
    search.find_pairs(x, PairSettings(threshold=0.99, block_size=64),
                      on_progress=lambda d, t: steps.append((d, t)))
    assert steps[-1][0] == steps[-1][1] == 5 * 6 // 2  # upper triangle of 5 x 5 blocks
    _, sampled = search.find_pairs(x, PairSettings(threshold=0.99, compare_mode="sample",
                                                   sample_ratio=0.1))
    assert sampled.queries == 30


def test_dedupe_shows_progress_for_the_search(samples: Path, tmp_path: Path) -> None:
    """The pair search reports to the progress sink, so the console shows it."""
    from imgsim_index import BuildSettings, DedupeSettings, dedupe

    class Recorder(NoProgress):
        def __init__(self) -> None:
            self.started: list[tuple[str, int | None]] = []

        def start(self, description: str, total: int | None) -> None:
            self.started.append((description, total))

    rec = Recorder()
    result = dedupe(str(tmp_path / "idx"), [str(samples / "images")],
                    DedupeSettings(output=str(tmp_path / "out"),
                                   build=BuildSettings(model="efficientnet-lite0")), rec)
    assert ("Pair search", 1) in rec.started
    # the Duplicates is made once, with the build and every timing, and cannot change later
    dups = result.duplicates
    assert dups is not None and dups.build is result.build
    assert list(dups.timings)[0] == "index_update" and "pair_search" in dups.timings
    with pytest.raises(dataclasses.FrozenInstanceError):
        dups.build = None  # type: ignore[misc]


class HereEngine:
    """An engine (pipeline/engine.py) that computes in this process with the local code
    and notes which part each stage asked it for."""

    name = "here"

    def __init__(self) -> None:
        self.asked: list[str] = []

    def file_embedder(self, model: object) -> object:
        from imgsim_index.embed.embedder import Embedder

        self.asked.append("file_embedder")
        return Embedder(model, "cpu")  # type: ignore[arg-type]

    def candidates(self, x: np.ndarray, plan: object, on_progress: object = None
                   ) -> tuple[np.ndarray, np.ndarray]:
        from imgsim_index.search.exact import exact_candidates

        self.asked.append("candidates")
        return exact_candidates(x, plan, on_progress)  # type: ignore[arg-type]

    def ivf_candidates(self, *args: object, **kwargs: object) -> tuple[np.ndarray, np.ndarray]:
        raise AssertionError("a small index has no on-disk IVF")


def test_one_engine_object_goes_to_every_entry_point(samples: Path, tmp_path: Path) -> None:
    """build_index, Index.add, find_duplicates and dedupe take the same engine object; each
    stage asks it for its part, and the answer is the local one."""
    from imgsim_index import BuildSettings, Index
    from imgsim_index.pipeline.build import build_index

    images = str(samples / "images")
    here = HereEngine()
    build = BuildSettings(model="efficientnet-lite0")
    build_index([images], str(tmp_path / "built"), build, engine=here)
    assert here.asked == ["file_embedder"]
    dups = imgsim_index.find_duplicates(images, index=str(tmp_path / "idx"),
                                        build=build, engine=here)
    assert here.asked[1:] == ["file_embedder", "candidates"]
    assert dups.search.engine == "here"
    local = Index(str(tmp_path / "built")).find_duplicates()
    assert local.search.engine == "local"
    assert [p[:2] for p in dups.pair_paths()] == [p[:2] for p in local.pair_paths()]
