"""vecfile: the streamed reader and writer of FAISS IndexIDMap2(IndexFlatIP) files."""

from __future__ import annotations

import os
from pathlib import Path

import faiss
import numpy as np
import pytest

from imgsim_index.errors import IndexFormatError
from imgsim_index.index.vector_file import VectorFile, VectorFileWriter, read_vectors, write_vectors


def faiss_bytes(ids: np.ndarray, x: np.ndarray) -> bytes:
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(x.shape[1]))
    if len(ids):
        index.add_with_ids(x, ids)
    return bytes(faiss.serialize_index(index).tobytes())


def sample(n: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.permutation(10 * n + 1)[:n].astype(np.int64),
            rng.standard_normal((n, d)).astype(np.float32))


@pytest.mark.parametrize(("n", "d"), [(0, 3), (1, 1), (2, 3), (1000, 64)])
def test_files_are_byte_identical_to_faiss_and_read_back(tmp_path: Path, n: int, d: int) -> None:
    ids, x = sample(n, d)
    path = str(tmp_path / "v.faiss")
    write_vectors(path, ids, x)
    assert Path(path).read_bytes() == faiss_bytes(ids, x)
    index = faiss.read_index(path)  # FAISS opens ours
    assert index.ntotal == n
    got_ids, got_x = read_vectors(path)
    assert np.array_equal(got_ids, ids) and np.array_equal(got_x, x)


def test_faiss_written_files_are_read_in_chunks(tmp_path: Path) -> None:
    ids, x = sample(1000, 16)
    path = tmp_path / "f.faiss"
    path.write_bytes(faiss_bytes(ids, x))
    with VectorFile(str(path)) as vf:
        parts = list(vf.chunks(chunk_bytes=4 * 16 * 300))
    assert [len(i) for i, _ in parts] == [300, 300, 300, 100]
    assert np.array_equal(np.concatenate([i for i, _ in parts]), ids)
    assert np.array_equal(np.concatenate([v for _, v in parts]), x)


def test_appending_in_parts_equals_one_write(tmp_path: Path) -> None:
    ids, x = sample(500, 8)
    with VectorFileWriter(str(tmp_path / "p.faiss"), 8) as w:
        for s in range(0, 500, 77):
            w.append(ids[s:s + 77], x[s:s + 77])
        assert w.finish() == 500
    assert (tmp_path / "p.faiss").read_bytes() == faiss_bytes(ids, x)
    assert os.listdir(tmp_path) == ["p.faiss"]


def test_a_failed_write_leaves_no_file(tmp_path: Path) -> None:
    ids, x = sample(10, 8)
    with pytest.raises(ValueError, match="dimension 8"), \
            VectorFileWriter(str(tmp_path / "p.faiss"), 8) as w:
        w.append(ids, x)
        w.append(ids, x[:, :4])
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(("damage", "message"), [
    (lambda b: b[:-1], "bytes where"),
    (lambda b: b[:40], "truncated header|bytes where"),
    (lambda b: b"IxMp" + b[4:], "expected IxM2"),
    (lambda b: b"", "truncated header"),
])
def test_damaged_files_are_refused_with_a_reason(tmp_path: Path, damage, message) -> None:  # type: ignore[no-untyped-def]
    ids, x = sample(20, 8)
    path = tmp_path / "d.faiss"
    path.write_bytes(damage(faiss_bytes(ids, x)))
    with pytest.raises(IndexFormatError, match=message):
        VectorFile(str(path))


def test_a_missing_file_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        VectorFile(str(tmp_path / "gone.faiss"))
