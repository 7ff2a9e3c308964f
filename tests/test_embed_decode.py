"""Decoding for the ONNX backend: threads decode ahead of the network, in input order, with
the same vectors as decoding in this process one file at a time, every unreadable file
counted with its reason, and no torch import in a build of several batches."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgsim_index.embed.embedder import Embedder, EmbedSettings, decoded_batches
from imgsim_index.pipeline.build import BuildSettings, build_index

MODEL = "efficientnet-lite0"


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg"


def _photos(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(5)
    out = []
    for k in range(n):
        small = rng.integers(0, 256, (9, 12, 3), dtype=np.uint8)
        p = folder / f"p{k:02d}.jpg"
        Image.fromarray(small).resize((600, 450), Image.BICUBIC).save(p, quality=90)
        out.append(p)
    return out


def test_threads_give_the_in_process_vectors_and_count_bad_files(
        lite0, cache: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    paths = [str(p) for p in _photos(tmp_path / "img", 17)]
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "cut.jpg").write_bytes(Path(paths[0]).read_bytes()[:300])
    (tmp_path / "text.png").write_text("not an image")
    paths[3:3] = [str(tmp_path / "empty.jpg")]  # first batch
    paths[9:9] = [str(tmp_path / "cut.jpg")]  # second batch
    paths.append(str(tmp_path / "text.png"))  # last batch
    emb = Embedder(lite0, "cpu", "onnx")
    runs = {w: list(emb.embed_files(paths, EmbedSettings(batch_size=5, workers=w,
                                                         backend="onnx")))
            for w in (0, 1, 3)}
    for w in (1, 3):
        assert [b.positions for b in runs[w]] == [b.positions for b in runs[0]]
        assert [b.errors for b in runs[w]] == [b.errors for b in runs[0]]
        assert [b.digests for b in runs[w]] == [b.digests for b in runs[0]]
        for a, b in zip(runs[w], runs[0], strict=True):
            np.testing.assert_array_equal(a.vectors, b.vectors)
    errors = [e for b in runs[3] for e in b.errors]
    assert [(pos, reason.split(":")[0]) for pos, reason in errors] == [
        (3, "empty file"), (9, "corrupt or truncated image"),
        (19, "not a recognised image format")]
    assert [len(b.positions) + len(b.errors) for b in runs[3]] == [5, 5, 5, 5]
    assert sorted(p for b in runs[3] for p in b.positions) == sorted(
        set(range(20)) - {3, 9, 19})


class _Items:
    """Records which items were computed."""

    def __init__(self, n: int):
        self.n, self.done, self.lock = n, [], threading.Lock()

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, k: int) -> int:
        with self.lock:
            self.done.append(k)
        return k * 10


def test_decoded_batches_are_in_order_and_stop_at_two_batches_ahead() -> None:
    for threads in (0, 1, 4):
        assert list(decoded_batches(_Items(11), 4, threads)) == [
            [0, 10, 20, 30], [40, 50, 60, 70], [80, 90, 100]]
    items = _Items(1000)
    it = decoded_batches(items, 10, 2)
    assert next(it) == list(range(0, 100, 10))
    it.close()  # the consumer stopped (an interrupted build): nothing more is queued
    assert len(items.done) <= 20  # the first batch and the one decoded ahead
    assert sorted(items.done)[:10] == list(range(10))


class _Slow(_Items):
    """Items that take a while each, as large images do."""

    def __getitem__(self, k: int) -> int:
        import time

        time.sleep(0.05)
        return super().__getitem__(k)


def test_closing_before_the_first_batch_cancels_the_queued_decoding() -> None:
    import time

    items = _Slow(40)
    it = decoded_batches(items, 10, 1)  # the first two batches are queued at once
    it.close()  # the caller failed before taking a batch (a session error, Ctrl-C)
    time.sleep(0.3)
    assert len(items.done) <= 2  # the one decoding when closed, and no more


def test_a_session_that_cannot_be_made_stops_the_decoding(
        lite0, cache: Path, tmp_path: Path,  # type: ignore[no-untyped-def]
        monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    import imgsim_index.embed.embedder as embedder_module
    from imgsim_index.errors import ModelError

    paths = [str(p) for p in _photos(tmp_path / "img", 3)] * 10  # one batch of 30
    decoded: list[str] = []
    real_decode = embedder_module.decode_file

    def slow_decode(path: str, *args: object, **kw: object) -> object:
        time.sleep(0.05)
        decoded.append(path)
        return real_decode(path, *args, **kw)  # type: ignore[arg-type]

    def broken(*_: object, **__: object) -> object:
        time.sleep(0.1)
        raise ModelError("the session cannot be made")

    monkeypatch.setattr(embedder_module, "decode_file", slow_decode)
    monkeypatch.setattr(embedder_module, "load_onnx_network", broken)
    emb = Embedder(lite0, "cpu", "onnx", defer_session=True)
    with pytest.raises(ModelError, match="cannot be made"):
        list(emb.embed_files(paths, EmbedSettings(workers=0)))
    time.sleep(0.5)
    assert len(decoded) <= 4  # those decoded while the session was tried, then no more


def test_multi_batch_onnx_build_imports_no_torch(cache: Path, tmp_path: Path) -> None:
    _photos(tmp_path / "a", 3)
    _photos(tmp_path / "b", 11)
    (tmp_path / "b" / "bad.jpg").write_bytes(b"\xff\xd8 not really")
    build_index([str(tmp_path / "a")], str(tmp_path / "first"), BuildSettings(model=MODEL))
    script = (
        "import json, sys\n"
        "from imgsim_index.embed.embedder import EmbedSettings\n"
        "from imgsim_index.pipeline.build import BuildSettings, build_index\n"
        f"r = build_index([{str(tmp_path / 'b')!r}], {str(tmp_path / 'second')!r}, "
        f"BuildSettings(model={MODEL!r}, embed=EmbedSettings(batch_size=4, workers=2)))\n"
        "print(json.dumps([r.embedded, r.errors, "
        "[m for m in ('torch', 'timm', 'torchvision') if m in sys.modules]]))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, env=os.environ.copy()).stdout
    assert json.loads(out.splitlines()[-1]) == [11, 1, []]


def test_a_deferred_session_is_made_while_the_first_images_decode(
        lite0, cache: Path, tmp_path: Path,  # type: ignore[no-untyped-def]
        monkeypatch: pytest.MonkeyPatch) -> None:
    import imgsim_index.embed.embedder as embedder_module

    paths = [str(p) for p in _photos(tmp_path / "img", 3)]
    eager = list(Embedder(lite0, "cpu", "onnx").embed_files(paths, EmbedSettings(workers=0)))
    decoding, seen = threading.Event(), []
    real_decode, real_load = embedder_module.decode_file, embedder_module.load_onnx_network

    def decode(*args: object, **kw: object) -> object:
        decoding.set()
        return real_decode(*args, **kw)  # type: ignore[arg-type]

    def load(*args: object, **kw: object) -> object:
        seen.append((decoding.wait(30), threading.current_thread().name))
        return real_load(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(embedder_module, "decode_file", decode)
    monkeypatch.setattr(embedder_module, "load_onnx_network", load)
    emb = Embedder(lite0, "cpu", "onnx", defer_session=True)
    assert seen == []  # not made yet
    deferred = list(emb.embed_files(paths, EmbedSettings(workers=0)))
    # made once, in this thread, while a decoding thread had started on the images
    assert seen == [(True, threading.current_thread().name)]
    assert [b.positions for b in deferred] == [b.positions for b in eager] == [[0, 1, 2]]
    np.testing.assert_array_equal(deferred[0].vectors, eager[0].vectors)


def test_a_one_image_query_of_a_jpeg_loads_no_format_plugin(
        cache: Path, tmp_path: Path) -> None:
    """The HEIF and JPEG XL plugins take longer to import than a JPEG takes to decode: a
    query of a JPEG does without them; a HEIF file named .jpg still registers them."""
    pytest.importorskip("pillow_heif")
    paths = _photos(tmp_path / "img", 2)
    build_index([str(tmp_path / "img")], str(tmp_path / "idx"), BuildSettings(model=MODEL))
    import pillow_heif

    pillow_heif.register_heif_opener()
    disguised = tmp_path / "heif-named.jpg"
    Image.open(paths[1]).save(disguised, format="HEIF", quality=95)
    script = (
        "import json, sys\n"
        "from imgsim_index.pipeline.query import query_index\n"
        "out = []\n"
        f"for image in ({str(paths[0])!r}, {str(disguised)!r}):\n"
        f"    q = query_index({str(tmp_path / 'idx')!r}, [image], top_k=1,"
        " include_self=True)[0]\n"
        "    out.append([q.error, q.matches[0][0],\n"
        "                [m for m in ('pillow_heif', 'pillow_jxl') if m in sys.modules]])\n"
        "print(json.dumps(out))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, env=os.environ.copy()).stdout
    assert json.loads(out.splitlines()[-1]) == [
        [None, str(paths[0]), []],
        [None, str(paths[1]), ["pillow_heif", "pillow_jxl"]]]
