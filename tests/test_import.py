"""import-vectors: precomputed vectors + paths -> an index that dedupe reads like any other."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from imgsim_index.cli import cli
from imgsim_index.errors import ImgsimError, IndexMismatchError, InputError
from imgsim_index.index.import_vectors import ImportSettings, import_vectors
from imgsim_index.index.store import MANIFEST, IndexStore
from imgsim_index.pipeline.build import BuildSettings, build_index
from imgsim_index.pipeline.dedupe import DedupeSettings, dedupe
from imgsim_index.search import PairSettings

DIM = 48


def planted(n: int = 300, pairs: int = 12, seed: int = 0
            ) -> tuple[np.ndarray, set[tuple[int, int]]]:
    """Random vectors at random lengths, `pairs` of them near-copies (cosine > 0.995)."""
    rng = np.random.default_rng(seed)
    pairs = min(pairs, n // 2)
    x = rng.standard_normal((n, DIM))
    slots = rng.permutation(n)[: 2 * pairs].reshape(pairs, 2)
    for a, b in slots:
        x[b] = x[a] + rng.normal(0, 0.03, DIM)
    x *= rng.uniform(0.1, 50.0, (n, 1))  # not unit length: import normalises
    return x.astype(np.float32), {(int(min(a, b)), int(max(a, b))) for a, b in slots}


def write_input(folder: Path, x: np.ndarray, paths: list[str] | None = None,
                name: str = "v") -> tuple[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    vec, txt = folder / f"{name}.npy", folder / f"{name}.txt"
    np.save(vec, x)
    if paths is None:
        paths = [str(folder / "photos" / f"img{k:05d}.jpg") for k in range(len(x))]
    txt.write_text("".join(p + "\n" for p in paths), encoding="utf-8")
    return str(vec), str(txt)


def load(index: Path) -> tuple[list[str], np.ndarray]:
    with IndexStore.open_reader(str(index)) as store:
        got = store.load()
    return [r.path for r in got.rows], got.vectors


def test_vectors_are_normalised_and_kept_in_path_order(tmp_path: Path) -> None:
    x, _ = planted(n=100)
    vec, txt = write_input(tmp_path, x)
    # a small chunk: several commits, several segments
    r = import_vectors(vec, txt, str(tmp_path / "idx"),
                       ImportSettings(chunk_bytes=4 * DIM * 7, compact=False))
    assert (r.imported, r.total_embedded, r.dim, r.model) == (100, 100, DIM, "imported")
    assert len(list((tmp_path / "idx" / "segments").iterdir())) == 15
    paths, vectors = load(tmp_path / "idx")
    assert paths == Path(txt).read_text().splitlines()
    want = x.astype(np.float64) / np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)
    np.testing.assert_allclose(vectors, want, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(vectors.astype(np.float64), axis=1), 1, atol=1e-6)
    manifest = json.loads((tmp_path / "idx" / MANIFEST).read_text())
    assert manifest["model"] == "imported" and manifest["dim"] == DIM
    assert manifest["weights_id"] == "imported" and manifest["preprocessing"] == {}


def test_float64_and_float16_input(tmp_path: Path) -> None:
    x, _ = planted(n=20)
    for dtype in (np.float64, np.float16):
        vec, txt = write_input(tmp_path / str(np.dtype(dtype)), x.astype(dtype))
        import_vectors(vec, txt, str(tmp_path / f"idx-{np.dtype(dtype)}"))
        _, got = load(tmp_path / f"idx-{np.dtype(dtype)}")
        assert got.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1, atol=1e-6)


def test_dimension_mismatch_is_refused(tmp_path: Path) -> None:
    x, _ = planted(n=10)
    import_vectors(*write_input(tmp_path / "a", x), str(tmp_path / "idx"))
    vec, txt = write_input(tmp_path / "b", np.ones((10, DIM + 1), np.float32))
    with pytest.raises(IndexMismatchError, match=rf"{DIM + 1}-d vectors; the index .* {DIM}-d"):
        import_vectors(vec, txt, str(tmp_path / "idx"))
    assert load(tmp_path / "idx")[1].shape == (10, DIM)


def test_model_mismatch_is_refused(tmp_path: Path) -> None:
    x, _ = planted(n=10)
    idx = str(tmp_path / "idx")
    import_vectors(*write_input(tmp_path / "a", x), idx, ImportSettings(model="clip-b32"))
    other = [str(tmp_path / f"other{k}.jpg") for k in range(10)]
    vec, txt = write_input(tmp_path / "b", x, other)
    with pytest.raises(IndexMismatchError, match="imported as model 'clip-b32'.*'dinov2'"):
        import_vectors(vec, txt, idx, ImportSettings(model="dinov2"))
    # the same label, or none (the index's), is accepted
    r = import_vectors(vec, txt, idx)
    assert (r.model, r.total_embedded) == ("clip-b32", 20)


def test_known_model_name_checks_its_dimension(tmp_path: Path) -> None:
    x, _ = planted(n=10)
    vec, txt = write_input(tmp_path, x)
    with pytest.raises(IndexMismatchError, match="resnet50 gives 2048-d"):
        import_vectors(vec, txt, str(tmp_path / "idx"), ImportSettings(model="resnet50"))
    assert not (tmp_path / "idx").exists()


def test_import_into_a_built_index_and_build_into_an_imported_one_are_refused(
        tmp_path: Path) -> None:
    built = tmp_path / "built"
    identity = {"model": "efficientnet-lite0", "dim": DIM, "weights_id": "sha256:ab",
                "preprocessing": {"resize": 256}}
    IndexStore.open_writer(str(built), identity).close()
    x, _ = planted(n=10)
    vec, txt = write_input(tmp_path, x)
    with pytest.raises(IndexMismatchError, match="cannot be mixed"):
        import_vectors(vec, txt, str(built))
    import_vectors(vec, txt, str(tmp_path / "imported"))
    (tmp_path / "photos").mkdir()
    for model in (None, "efficientnet-lite0"):
        with pytest.raises(ImgsimError):
            build_index([str(tmp_path / "photos")], str(tmp_path / "imported"),
                        BuildSettings(model=model))


def test_paths_count_mismatch_is_refused(tmp_path: Path) -> None:
    x, _ = planted(n=10)
    vec, txt = write_input(tmp_path, x, [f"/p/{k}.jpg" for k in range(9)])
    with pytest.raises(InputError, match="has 10 rows but .* lists 9 paths"):
        import_vectors(vec, txt, str(tmp_path / "idx"))
    assert not (tmp_path / "idx").exists()


@pytest.mark.parametrize("lines, message", [
    (["/p/a.jpg", "", "/p/c.jpg"], "line 2 is empty"),
    (["/p/a.jpg", "/p/b.jpg", "/p/a.jpg"], "lists /p/a.jpg twice \\(lines 1 and 3\\)"),
])
def test_bad_paths_files_are_refused(tmp_path: Path, lines: list[str], message: str) -> None:
    vec, txt = write_input(tmp_path, planted(n=3)[0], lines)
    with pytest.raises(InputError, match=message):
        import_vectors(vec, txt, str(tmp_path / "idx"))


def test_paths_file_must_be_utf8(tmp_path: Path) -> None:
    vec, txt = write_input(tmp_path, planted(n=2)[0], ["/p/a.jpg", "/p/b.jpg"])
    Path(txt).write_bytes(b"/p/a.jpg\n/p/\xff.jpg\n")
    with pytest.raises(InputError, match="line 2 is not valid UTF-8"):
        import_vectors(vec, txt, str(tmp_path / "idx"))


def test_unicode_and_crlf_paths(tmp_path: Path) -> None:
    vec, _ = write_input(tmp_path, planted(n=2)[0])
    txt = tmp_path / "crlf.txt"
    txt.write_bytes("/p/caf\u00e9 \u732b.jpg\r\n/p/b .jpg\r\n".encode())
    import_vectors(vec, str(txt), str(tmp_path / "idx"))
    assert load(tmp_path / "idx")[0] == ["/p/caf\u00e9 \u732b.jpg", "/p/b .jpg"]


@pytest.mark.parametrize("bad, message", [(0.0, "row 7 is all zeros"),
                                          (np.nan, "row 7 holds NaN")])
def test_rows_without_a_direction_are_refused_before_writing(
        tmp_path: Path, bad: float, message: str) -> None:
    x, _ = planted(n=20)
    x[7] = bad
    vec, txt = write_input(tmp_path, x)
    with pytest.raises(InputError, match=message):
        import_vectors(vec, txt, str(tmp_path / "idx"), ImportSettings(chunk_bytes=4 * DIM * 3))
    assert not (tmp_path / "idx").exists()


@pytest.mark.parametrize("array", [np.zeros(5, np.float32), np.array([["a"], ["b"]])])
def test_vectors_must_be_a_float_matrix(tmp_path: Path, array: np.ndarray) -> None:
    vec, txt = write_input(tmp_path, array, ["/p/a", "/p/b"])
    with pytest.raises(InputError, match="expected"):
        import_vectors(vec, txt, str(tmp_path / "idx"))


def test_dedupe_on_the_imported_index_finds_the_planted_pairs(tmp_path: Path) -> None:
    x, truth = planted(n=400, pairs=15)
    vec, txt = write_input(tmp_path, x)
    import_vectors(vec, txt, str(tmp_path / "idx"), ImportSettings(chunk_bytes=4 * DIM * 64))
    r = dedupe(str(tmp_path / "idx"), None,
               DedupeSettings(pairs=PairSettings(threshold=0.98), output=str(tmp_path / "out")))
    paths = Path(txt).read_text().splitlines()
    got = {tuple(sorted((p["image1"], p["image2"]))) for p in r.report["similar_pairs"]}
    assert got == {(paths[a], paths[b]) for a, b in truth}
    assert r.report["photos_to_remove"] == len(truth)


def test_cli_import_then_dedupe(tmp_path: Path) -> None:
    x, truth = planted(n=200, pairs=5, seed=4)
    vec, txt = write_input(tmp_path, x)
    runner = CliRunner()
    res = runner.invoke(cli, ["import-vectors", vec, txt, "--index", str(tmp_path / "idx"),
                              "--model", "mynet", "-q"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines() == [
        f"Imported 200 vectors of dimension {DIM} (model mynet).",
        f"Index {tmp_path / 'idx'}: 200 images.",
    ]
    res = runner.invoke(cli, ["dedupe", "--index", str(tmp_path / "idx"), "--threshold", "0.98",
                              "--output", str(tmp_path / "out"), "-q"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert f"Found {len(truth)} pairs" in res.stdout
    # vectors from elsewhere: no files were read, so verification is off unless asked for
    report = json.loads(next((tmp_path / "out").glob("*/report.json")).read_text())
    assert report["verification"]["ran"] is False
    res = runner.invoke(cli, ["dedupe", "--index", str(tmp_path / "idx"), "--threshold", "0.98",
                              "--verify", "on", "--output", str(tmp_path / "on"), "-q"],
                        catch_exceptions=False)
    assert "Found 0 pairs" in res.stdout  # the files are not there: nothing can be verified


def test_vectors_are_read_in_blocks_and_committed_in_chunks(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import imgsim_index.index.import_vectors as importer
    from imgsim_index.index.store import IndexStore as Store

    x, _ = planted(n=50)
    vec, txt = write_input(tmp_path, x)
    modes, commits = [], []
    real_load, real_commit = np.load, Store.commit

    def load(*args, **kwargs):  # type: ignore[no-untyped-def]
        modes.append(kwargs.get("mmap_mode"))
        return real_load(*args, **kwargs)

    def commit(self, rows, vectors, *rest):  # type: ignore[no-untyped-def]
        commits.append(len(vectors))
        return real_commit(self, rows, vectors, *rest)

    monkeypatch.setattr(importer.np, "load", load)
    monkeypatch.setattr(Store, "commit", commit)
    import_vectors(vec, txt, str(tmp_path / "idx"), ImportSettings(chunk_bytes=4 * DIM * 16))
    assert modes == []  # plain file reads, no memory map (its pages would count in RSS)
    assert commits == [16, 16, 16, 2]


@pytest.mark.parametrize("order", ["F", "C"])
def test_fortran_order_and_other_dtypes_import_the_same_vectors(tmp_path: Path, order: str
                                                                ) -> None:
    x, _ = planted(n=40)
    vec, txt = write_input(tmp_path, x)
    other = tmp_path / "other.npy"
    np.save(other, np.asarray(x, dtype=np.float64, order=order))
    import_vectors(vec, txt, str(tmp_path / "a"), ImportSettings(chunk_bytes=4 * DIM * 7))
    import_vectors(str(other), txt, str(tmp_path / "b"), ImportSettings(chunk_bytes=4 * DIM * 7))
    with IndexStore.open_reader(str(tmp_path / "a")) as a, \
            IndexStore.open_reader(str(tmp_path / "b")) as b:
        assert np.allclose(a.load().vectors, b.load().vectors, atol=1e-7)


def test_truncated_npy_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    x, _ = planted(n=40)
    vec, txt = write_input(tmp_path, x)
    data = Path(vec).read_bytes()
    Path(vec).write_bytes(data[:-100])
    with pytest.raises(InputError, match="truncated"):
        import_vectors(vec, txt, str(tmp_path / "idx"))
    assert not (tmp_path / "idx").exists()
