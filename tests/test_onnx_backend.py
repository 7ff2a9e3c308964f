"""ONNX Runtime backend: the same vectors as torch, exported once and cached, and a clear
one-line error (or torch, for "auto") when onnxruntime is not installed.

Tests that run ORT skip when onnxruntime or onnx is missing; the missing-package tests
simulate that and always run."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from imgsim_index.embed import onnx_runtime as onnx_backend
from imgsim_index.embed.embedder import Embedder, EmbedSettings
from imgsim_index.embed.models import load_model
from imgsim_index.embed.onnx_runtime import cache_path, resolve_backend
from imgsim_index.errors import FIX_TORCH_BACKEND, ImgsimError, InputError, ModelError
from imgsim_index.ingest import identity
from imgsim_index.ingest.decode import decode_file

MIN_COSINE = 0.9999


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """ORT installed (else skip) and a fresh export cache for this test."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "imgsim-index" / "onnx"


@pytest.fixture
def no_onnxruntime(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if onnxruntime were not installed (find_spec and import both see None)."""
    monkeypatch.setitem(sys.modules, "onnxruntime", None)


@pytest.fixture(scope="module")
def random_resnet50(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A randomly initialised ResNet50 saved to a file and loaded like real weights."""
    from torchvision.models import resnet50

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "resnet50-random.pth"
    torch.save(resnet50(weights=None).state_dict(), path)
    return load_model("resnet50", str(path))


def _pixels(paths: list[Path], model) -> np.ndarray:  # type: ignore[no-untyped-def]
    return np.stack([decode_file(str(p), model.info.preprocess).pixels for p in paths])


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _sample_images(samples: Path, n: int = 6) -> list[Path]:
    return sorted((samples / "images").rglob("*.jpg"))[:n]


def test_efficientnet_lite0_onnx_vectors_equal_torch(lite0, samples, cache) -> None:  # type: ignore[no-untyped-def]
    px = _pixels(_sample_images(samples), lite0)
    onnx = Embedder(lite0, "cpu", "onnx")
    assert onnx.backend == "onnx" and onnx.onnx is not None
    assert onnx.onnx.source == cache_path(lite0) and Path(cache_path(lite0)).is_file()
    assert Path(cache_path(lite0)).parent == cache
    got = onnx.embed_pixels(px)
    want = Embedder(lite0, "cpu", "torch").embed_pixels(px)
    assert got.dtype == np.float32 and got.shape == want.shape == (len(px), 1280)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert _cosines(got, want).min() >= MIN_COSINE
    # pairwise similarities (what dedupe thresholds) agree too
    assert np.abs(got @ got.T - want @ want.T).max() < 1e-4


def test_random_resnet50_from_a_file_onnx_equals_torch(random_resnet50, samples, cache) -> None:  # type: ignore[no-untyped-def]
    m = random_resnet50
    px = np.concatenate([
        _pixels(_sample_images(samples, 4), m),
        np.random.default_rng(1).integers(0, 256, (3, 224, 224, 3), dtype=np.uint8),
    ])
    onnx, eager = Embedder(m, "cpu", "onnx"), Embedder(m, "cpu", "torch")
    got, want = onnx.embed_pixels(px), eager.embed_pixels(px)
    assert got.shape == (len(px), 2048)
    assert _cosines(got, want).min() >= MIN_COSINE
    # random weights give features that barely depend on the image, so also compare
    # what does depend on it: the features minus their batch mean, before normalising
    x = ((torch.from_numpy(px).permute(0, 3, 1, 2).float() - eager._mean) / eager._std)
    assert onnx.onnx is not None
    raw_onnx = onnx.onnx(x.contiguous().numpy())
    with torch.inference_mode():
        raw_torch = m.network(x).numpy()
    centred = _cosines(raw_onnx - raw_onnx.mean(0), raw_torch - raw_torch.mean(0))
    assert centred.min() >= MIN_COSINE
    assert np.linalg.norm(raw_onnx - raw_torch) / np.linalg.norm(raw_torch) < 1e-3


def test_export_is_cached_and_a_bad_file_is_replaced(lite0, cache, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    path = Path(cache_path(lite0))
    Embedder(lite0, "cpu", "onnx")
    first = path.read_bytes()
    # no temporary files left; the passed check is recorded next to the file
    assert sorted(p.name for p in cache.iterdir()) == [path.name, path.name + ".json"]

    def no_export(model):  # type: ignore[no-untyped-def]
        raise AssertionError("exported again although the cache holds the file")

    with monkeypatch.context() as mp:
        mp.setattr(onnx_backend, "export_onnx", no_export)
        assert Embedder(lite0, "cpu", "onnx").onnx.source == str(path)  # type: ignore[union-attr]

    path.write_bytes(first[: len(first) // 2])  # truncated: exported again
    Embedder(lite0, "cpu", "onnx")
    assert path.read_bytes() == first


def test_a_cached_file_of_other_weights_fails_the_check(lite0, cache) -> None:  # type: ignore[no-untyped-def]
    """Same name, other network (e.g. a stale file): the self-check against torch catches
    it and the network is exported again."""
    import copy

    other = copy.copy(lite0)
    other.network = copy.deepcopy(lite0.network)
    with torch.no_grad():
        next(other.network.parameters()).mul_(-1.0)  # same identity, other weights
    Embedder(other, "cpu", "onnx")
    Path(onnx_backend.record_path(cache_path(lite0))).unlink()  # a file left without record
    stale = Path(cache_path(lite0)).read_bytes()
    e = Embedder(lite0, "cpu", "onnx")
    assert Path(cache_path(lite0)).read_bytes() != stale
    px = np.random.default_rng(2).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    want = Embedder(lite0, "cpu", "torch").embed_pixels(px)
    assert _cosines(e.embed_pixels(px), want).min() >= MIN_COSINE


def test_unwritable_cache_still_works(lite0, cache, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    blocker = tmp_path / "file-not-folder"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    e = Embedder(lite0, "cpu", "onnx")
    assert e.onnx is not None and e.onnx.source == "exported now"


def test_build_with_onnx_gives_the_torch_index(samples, cache, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The backend is not part of the model identity: same manifest, same vectors."""
    from conftest import cli_ok

    from imgsim_index.index.store import IndexStore

    folder = samples / "images"
    loaded = {}
    for backend in ("torch", "onnx"):
        index = tmp_path / f"index-{backend}"
        cli_ok("build", folder, "--index", index, "--model", "efficientnet-lite0",
               "--backend", backend, "--workers", "0", "-q")
        manifest = IndexStore.read_manifest(str(index))
        with IndexStore.open_reader(str(index)) as store:
            v = store.load()
        loaded[backend] = (manifest, {r.path: v.vectors[k] for k, r in enumerate(v.rows)})
    (m_torch, v_torch), (m_onnx, v_onnx) = loaded["torch"], loaded["onnx"]
    for key in ("model", "dim", "weights_id", "preprocessing"):
        assert m_torch[key] == m_onnx[key]
    assert sorted(v_torch) == sorted(v_onnx) and len(v_torch) > 10
    paths = sorted(v_torch)
    cos = _cosines(np.stack([v_torch[p] for p in paths]), np.stack([v_onnx[p] for p in paths]))
    assert cos.min() >= MIN_COSINE


def test_backend_choice(cache) -> None:  # type: ignore[no-untyped-def]
    assert resolve_backend("auto", "cpu") == "onnx"
    assert resolve_backend("auto", "cuda") == "torch"
    assert resolve_backend("torch", "cpu") == "torch"
    with pytest.raises(InputError, match="runs on the CPU"):
        resolve_backend("onnx", "cuda")
    with pytest.raises(InputError, match="unknown backend"):
        EmbedSettings(backend="tensorrt")


def test_without_onnxruntime_onnx_is_refused_and_auto_is_torch(no_onnxruntime, lite0) -> None:  # type: ignore[no-untyped-def]
    assert not onnx_backend.onnx_available()
    with pytest.raises(ImgsimError, match=r"pip install 'imgsim-index\[onnx\]'"):
        EmbedSettings(backend="onnx")
    with pytest.raises(ImgsimError, match="onnxruntime"):
        Embedder(lite0, "cpu", "onnx")
    assert resolve_backend("auto", "cpu") == "torch"
    assert Embedder(lite0, "cpu", "auto").backend == "torch"
    EmbedSettings(backend="auto")  # fine: falls back to torch


def test_without_onnxruntime_the_cli_says_how_to_install(no_onnxruntime, tmp_path,  # type: ignore[no-untyped-def]
                                                         capsys) -> None:
    from imgsim_index.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["build", str(tmp_path), "--index", str(tmp_path / "index"), "--backend", "onnx"])
    assert exit_.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("Error: the ONNX backend needs onnxruntime")
    assert err[0].endswith("(use --backend torch)")
    assert "pip install" in err[0]
    assert not (tmp_path / "index").exists()


def test_export_failure_is_a_model_error(lite0, cache, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("unsupported operator")

    monkeypatch.setattr(torch.onnx, "export", broken)
    with pytest.raises(ModelError, match="cannot export") as err:
        Embedder(lite0, "cpu", "onnx")
    assert err.value.fix == FIX_TORCH_BACKEND
    assert not lite0.network.training


def test_a_corrupt_cached_file_is_checked_and_exported_again(lite0, cache) -> None:  # type: ignore[no-untyped-def]
    """Same length, other bytes (its record's sha256 no longer matches): the file is not
    trusted, fails to load or the check, and is exported again, record and all."""
    path = Path(cache_path(lite0))
    Embedder(lite0, "cpu", "onnx")
    good, record = path.read_bytes(), Path(onnx_backend.record_path(str(path))).read_text()
    bad = bytearray(good)
    bad[len(bad) // 2: len(bad) // 2 + 4096] = bytes(4096)
    path.write_bytes(bytes(bad))
    e = Embedder(lite0, "cpu", "onnx")
    assert path.read_bytes() == good
    assert Path(onnx_backend.record_path(str(path))).read_text() == record
    px = np.random.default_rng(3).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    want = Embedder(lite0, "cpu", "torch").embed_pixels(px)
    assert _cosines(e.embed_pixels(px), want).min() >= MIN_COSINE


def test_the_files_digest_is_kept_until_the_file_changes(lite0, cache, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The cached file's sha256 is kept with its stat and trusted while that is unchanged
    (so a later session does not hash the file); a write, even one that restores size and
    mtime, changes the ctime: the file is hashed again, fails its record and is exported
    again."""
    import json
    import os

    path = Path(cache_path(lite0))
    digest_file = Path(onnx_backend.digest_path(str(path)))
    Embedder(lite0, "cpu", "onnx")
    assert not digest_file.exists()  # a file written moments ago is not trusted by stat
    monkeypatch.setattr(identity, "CTIME_TRUST_NS", 0)  # as if it were older
    Embedder(lite0, "cpu", "onnx")  # hashed, matched its record: the digest is kept
    good = path.read_bytes()
    kept = json.loads(digest_file.read_text())
    st = path.stat()
    assert kept == {"path": str(path.resolve()), "sha256": hashlib.sha256(good).hexdigest(),
                    "stat": [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns,
                             st.st_ctime_ns]}

    # what is trusted is the kept digest: record and digest naming other bytes still load
    record_file = Path(onnx_backend.record_path(str(path)))
    record = json.loads(record_file.read_text())
    record_file.write_text(json.dumps({**record, "sha256": "0" * 64}))
    digest_file.write_text(json.dumps({**kept, "sha256": "0" * 64}))

    def no_export(model):  # type: ignore[no-untyped-def]
        raise AssertionError("exported again although the cache holds the file")

    with monkeypatch.context() as mp:
        mp.setattr(onnx_backend, "export_onnx", no_export)
        assert Embedder(lite0, "cpu", "onnx").onnx.source == str(path)  # type: ignore[union-attr]

    # other bytes of the same length, mtime set back: hashed, refused, exported again
    bad = bytearray(good)
    bad[len(bad) // 2: len(bad) // 2 + 4096] = bytes(4096)
    path.write_bytes(bytes(bad))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_mtime_ns == st.st_mtime_ns and path.stat().st_size == st.st_size
    Embedder(lite0, "cpu", "onnx")
    assert path.read_bytes() == good
    assert json.loads(record_file.read_text()) == record


def test_the_optimised_graph_is_kept_and_gives_the_same_vectors(lite0, cache) -> None:  # type: ignore[no-untyped-def]
    """The graph ORT optimised from the checked file is kept, and later sessions run it
    (optimisation off) with the same unit vectors within 1e-6; a record of another CPU, or
    a changed graph file, makes the next session optimise again and keep the graph anew."""
    import json

    if onnx_backend.cpu_key() is None:
        pytest.skip("no /proc/cpuinfo here: no optimised graph is kept")
    opt = Path(onnx_backend.optimized_path(cache_path(lite0)))
    record_file = Path(onnx_backend.record_path(str(opt)))
    px = np.random.default_rng(4).integers(0, 256, (3, 224, 224, 3), dtype=np.uint8)
    first = Embedder(lite0, "cpu", "onnx")  # exported and checked against torch
    assert not opt.exists() and first.onnx is not None and first.onnx.optimized is None
    want = first.embed_pixels(px)

    def session() -> tuple[str | None, np.ndarray]:
        e = Embedder(lite0, "cpu", "onnx")
        assert e.onnx is not None and e.onnx.source == cache_path(lite0)
        return e.onnx.optimized, e.embed_pixels(px)

    assert session()[0] is None and opt.is_file()  # optimised now, the graph kept
    record = json.loads(record_file.read_text())
    assert sorted(record) == ["cpu", "onnxruntime", "sha256", "source_sha256"]
    assert record["cpu"] == onnx_backend.cpu_key()
    assert record["source_sha256"] == hashlib.sha256(
        Path(cache_path(lite0)).read_bytes()).hexdigest()
    used, got = session()
    assert used == str(opt)
    assert np.abs(got - want).max() <= 1e-6

    def kept_anew() -> None:  # ORT's serialised graph may differ in its bytes run to run
        got = json.loads(record_file.read_text())
        assert got == {**record, "sha256": hashlib.sha256(opt.read_bytes()).hexdigest()}

    record_file.write_text(json.dumps({**record, "cpu": "another-cpu"}))
    assert session()[0] is None  # optimised again for this CPU
    kept_anew()
    assert session()[0] == str(opt)

    bad = bytearray(opt.read_bytes())
    bad[len(bad) // 2: len(bad) // 2 + 4096] = bytes(4096)
    opt.write_bytes(bytes(bad))
    used, got = session()
    assert used is None and opt.read_bytes() != bytes(bad)
    kept_anew()
    assert np.abs(got - want).max() <= 1e-6
    assert session()[0] == str(opt)
