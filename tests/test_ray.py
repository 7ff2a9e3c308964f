"""--engine ray: a build and a dedupe on a local Ray instance equal the local ones; a worker
killed mid-build loses and duplicates nothing; an interrupted Ray build resumes; without Ray
the engine says how to install it."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import cli_ok, report_of

from imgsim_index import search
from imgsim_index.cli import main
from imgsim_index.embed.embedder import EmbedSettings
from imgsim_index.embed.ray_embed import block_rows, ordered_batches
from imgsim_index.errors import ImgsimError
from imgsim_index.index.store import IndexStore
from imgsim_index.pipeline.build import BuildSettings, build_index
from imgsim_index.pipeline.ray_engine import RayMissingError, make_engine, require_ray
from imgsim_index.progress import NoProgress
from imgsim_index.search import Pairs, PairSettings


def find_pairs(x: np.ndarray, settings: PairSettings, folders: np.ndarray | None = None,
               queries: np.ndarray | None = None, engine: object = None) -> Pairs:
    return search.find_pairs(x, settings, method="exact", folders=folders, queries=queries,
                             engine=engine)[0]  # type: ignore[arg-type]

# small batches and checkpoints, so a build is many Ray tasks and several commits;
# no time-based checkpoints, so commit boundaries (and so ids) depend on counts only
SETTINGS = BuildSettings(model="efficientnet-lite0", embed=EmbedSettings(batch_size=4),
                         checkpoint_images=10, checkpoint_seconds=1e9)


@pytest.fixture(scope="module")
def ray_session():  # type: ignore[no-untyped-def]
    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install '.[ray]'")
    pytest.importorskip("ray.data", reason="Ray Data is not installed: pip install '.[ray]'")
    if ray.is_initialized():
        ray.shutdown()
    ray.init(address="local", num_cpus=2, include_dashboard=False,
             object_store_memory=300 * 2**20,
             logging_level="WARNING")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def photos(samples: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample images plus unreadable files, which become error rows in both engines."""
    folder = tmp_path_factory.mktemp("ray") / "photos"
    shutil.copytree(samples / "images", folder)
    (folder / "camera" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (folder / "backup" / "notes.png").write_text("not an image")
    (folder / "empty.jpg").write_bytes(b"")
    return folder


@pytest.fixture(scope="module")
def local_index(photos: Path, lite0, tmp_path_factory: pytest.TempPathFactory) -> Path:  # type: ignore[no-untyped-def]
    idx = tmp_path_factory.mktemp("ray") / "local"
    build_index([str(photos)], str(idx), SETTINGS, model=lite0)
    return idx


def catalog(idx: Path) -> tuple[list[tuple[Any, ...]], np.ndarray]:
    """Every row (id, path, size, mtime, width, height, status, error) and the vectors."""
    with IndexStore.open_reader(str(idx)) as store:
        rows = store.catalog.rows()
        loaded = store.load()
    return ([(r.id, r.path, r.size, r.mtime_ns, r.width, r.height, r.status, r.error)
             for r in rows], loaded.vectors)


def assert_same_index(a: Path, b: Path) -> None:
    rows_a, vec_a = catalog(a)
    rows_b, vec_b = catalog(b)
    assert rows_a == rows_b  # same ids to paths, sizes, statuses and error reasons
    assert vec_a.shape == vec_b.shape and len(vec_a) > 40
    np.testing.assert_allclose(vec_a, vec_b, atol=1e-5)


def test_ray_build_equals_local_build(ray_session, photos, local_index, lite0, tmp_path):  # type: ignore[no-untyped-def]
    idx = tmp_path / "ray"
    with make_engine("ray") as engine:  # type: ignore[union-attr]
        r = build_index([str(photos)], str(idx), SETTINGS, model=lite0,
                        engine=engine)
    assert r.errors == 3 and r.embedded == r.scanned - 3
    assert_same_index(local_index, idx)
    assert ray_session.is_initialized()  # the engine joined the caller's session, left it open


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(name))
    out, stack = [], [root]
    while stack:
        for child in children.get(stack.pop(), []):
            out.append(child)
            stack.append(child)
    return out


def embedding_actor_pids() -> list[int]:
    """Ray workers started by this test process that host an embedding actor."""
    pids = []
    for pid in _descendants(os.getpid()):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if b"EmbedActor" in fh.read():
                    pids.append(pid)
        except OSError:
            continue
    return pids


class KillAnActor(NoProgress):
    """After the first batch reaches the driver, SIGKILL one embedding actor's process."""

    def __init__(self) -> None:
        self.killed: list[int] = []
        self.images = 0

    def update(self, n: int) -> None:
        self.images += n
        if not self.killed:
            pids = embedding_actor_pids()
            assert pids, "no embedding actor process found"
            os.kill(pids[0], signal.SIGKILL)
            self.killed.append(pids[0])


def test_worker_killed_mid_build_loses_and_duplicates_nothing(ray_session, photos, local_index,  # type: ignore[no-untyped-def]
                                                              lite0, tmp_path):
    idx = tmp_path / "killed"
    killer = KillAnActor()
    with make_engine("ray") as engine:  # type: ignore[union-attr]
        r = build_index([str(photos)], str(idx), SETTINGS, killer, model=lite0,
                        engine=engine)
    assert killer.killed and killer.images == r.scanned  # killed early; every image came once
    assert killer.killed[0] not in embedding_actor_pids()
    assert r.embedded + r.errors == r.scanned
    assert_same_index(local_index, idx)


def test_interrupted_ray_build_resumes_to_the_same_index(ray_session, photos, local_index,  # type: ignore[no-untyped-def]
                                                         lite0, tmp_path):
    from imgsim_index.pipeline.ray_engine import RayEngine, RaySettings

    idx = tmp_path / "resumed"
    batches = []
    with RayEngine() as engine:  # stop (as a watch's SIGTERM would) after two batches
        first = build_index([str(photos)], str(idx), SETTINGS, model=lite0,
                            engine=engine,
                            should_stop=lambda: batches.append(1) or len(batches) >= 2)
    assert 0 < first.embedded + first.errors < first.scanned
    # the rest on the layout used with GPUs: decoding in tasks, embedding in an actor
    with RayEngine(RaySettings(decode_tasks=True)) as engine:
        second = build_index([str(photos)], str(idx), SETTINGS, model=lite0,
                             engine=engine)
    assert second.unchanged == first.embedded + first.errors
    assert first.embedded + second.embedded == second.total_embedded
    rows_a, vec_a = catalog(local_index)
    rows_b, vec_b = catalog(idx)
    # commits fell elsewhere, so error rows may have other ids; each path came once
    by_path_a = {r[1]: r[2:] for r in rows_a}
    assert {r[1]: r[2:] for r in rows_b} == by_path_a and len(rows_b) == len(by_path_a)
    with IndexStore.open_reader(str(local_index)) as a, IndexStore.open_reader(str(idx)) as b:
        la, lb = a.load(), b.load()
    va = dict(zip((r.path for r in la.rows), la.vectors, strict=True))
    for r, v in zip(lb.rows, lb.vectors, strict=True):
        np.testing.assert_allclose(v, va[r.path], atol=1e-5)
    assert len(vec_a) == len(vec_b)


def _planted(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    for k in range(0, n // 2, 3):  # near-copies at several distances
        x[k + n // 2] = x[k] + rng.normal(0, 0.02 + 0.01 * (k % 5), dim).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("settings", [
    PairSettings(threshold=0.9, block_size=16),
    PairSettings(threshold=0.95, block_size=7),
    PairSettings(threshold=0.9, block_size=16, compare_mode="sample", sample_ratio=0.3, seed=2),
    PairSettings(threshold=0.9, block_size=10, compare_scope="inter_folder"),
], ids=["full", "odd-blocks", "sample", "inter-folder"])
def test_ray_pair_search_equals_local(ray_session, settings: PairSettings) -> None:  # type: ignore[no-untyped-def]
    x = _planted(120, 64, 1)
    folders = (np.arange(120) // 7) % 3  # some planted pairs within a folder, some across
    with make_engine("ray") as engine:  # type: ignore[union-attr]
        got = find_pairs(x, settings, folders, engine=engine)
        new_only = find_pairs(x, settings, folders, np.arange(100, 120), engine)
    want = find_pairs(x, settings, folders)
    assert len(want) > 5
    for a, b in ((got, want),
                 (new_only, find_pairs(x, settings, folders, queries=np.arange(100, 120)))):
        assert np.array_equal(a.i, b.i) and np.array_equal(a.j, b.j)
        assert np.array_equal(a.score, b.score)


def test_dedupe_with_ray_writes_the_local_report(ray_session, local_index, tmp_path):  # type: ignore[no-untyped-def]
    args = ("--threshold", "0.9", "-q")
    local = report_of(cli_ok("dedupe", "--index", local_index, "--output", tmp_path / "a",
                             *args))
    ray = report_of(cli_ok("dedupe", "--index", local_index, "--output", tmp_path / "b",
                           "--engine", "ray", *args))
    assert local["number_of_similar_pairs"] > 5
    for key in ("similar_pairs", "groups", "number_of_similar_pairs",
                "number_of_unique_groups", "photos_to_remove", "errors", "pair_search"):
        assert ray[key] == local[key], key
    assert ray_session.is_initialized()


def test_ordered_batches_reorder_and_drop_repeats() -> None:
    def out(pos: list[int], bad: tuple[int, ...] = ()) -> dict[str, np.ndarray]:
        vec = np.asarray([[p, 0.0] for p in pos], np.float32)
        return {"pos": np.asarray(pos), "vector": vec, "width": np.asarray(pos) + 1,
                "height": np.asarray(pos) + 2,
                "error": np.asarray(["bad" if p in bad else "" for p in pos])}

    results = [out([4, 5]), out([0, 1, 2]), out([0, 1, 2]), out([3], bad=(3,)), out([6])]
    got = list(ordered_batches(results, 7, 3, 2))
    assert [b.positions for b in got] == [[0, 1, 2], [4, 5], [6]]
    assert got[1].errors == [(3, "bad")] and got[1].sizes == [(5, 6), (6, 7)]
    assert got[2].vectors.tolist() == [[6.0, 0.0]]
    with pytest.raises(ImgsimError, match="returned 5 of 7 images.*run the build again"):
        list(ordered_batches([out([0, 1, 2]), out([4, 5])], 7, 3, 2))
    assert block_rows(10_000, 32, 2) % 32 == 0 and block_rows(10, 32, 2) == 32


def test_engine_ray_without_ray_says_how_to_install(monkeypatch, capsys, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "ray" else real(name, *a))
    with pytest.raises(RayMissingError, match=r"pip install 'imgsim-index\[ray\]'"):
        require_ray()
    with pytest.raises(SystemExit) as stopped:
        main(["build", str(tmp_path), "--index", str(tmp_path / "i"), "--engine", "ray", "-q"])
    assert stopped.value.code == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        "Error: the Ray engine needs Ray: pip install 'imgsim-index[ray]'"]
    assert not (tmp_path / "i").exists()  # refused before any work
    assert make_engine("local") is None
