"""A photo library plus index made without a CNN: real image files, hand-made vectors.

Images of one `group` get nearly the same vector (cosine > 0.99), other images
get random ones (cosine < 0.6 in 32 dimensions), so dedupe's groups are known
in advance and no model is loaded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from imgsim_index.index.catalog import NewRow
from imgsim_index.index.store import IndexStore
from imgsim_index.ingest.identity import file_digest
from imgsim_index.pipeline.dedupe import DedupeResult, DedupeSettings, dedupe
from imgsim_index.search import PairSettings

DIM = 32
IDENTITY = {"model": "test", "dim": DIM, "weights_id": "x", "preprocessing": {}}
THRESHOLD = 0.95


@dataclass(frozen=True)
class Img:
    rel: str  # path under the library root
    group: int | None = None  # same group -> near-identical vectors; None -> a unique image
    size: tuple[int, int] = (64, 48)
    pad: int = 0  # extra bytes after the JPEG data, to set the file size
    mtime: int = 1_600_000_000  # seconds
    same_bytes_as: str | None = None  # rel of an earlier image: write a byte-exact copy of it
    picture: int | None = None  # seed of the picture (default: the group's, or its own)


def write_image(path: Path, size: tuple[int, int], seed: int, pad: int = 0,
                mtime: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (4, 4, 3), dtype=np.uint8)
    Image.fromarray(base).resize(size, Image.Resampling.BILINEAR).save(path, "JPEG", quality=85)
    if pad:
        with open(path, "ab") as fh:
            fh.write(b"\0" * pad)
    if mtime is not None:
        os.utime(path, ns=(mtime * 10**9, mtime * 10**9))


def make_library(root: Path, images: list[Img], seed: int = 0,
                 given: dict[str, np.ndarray] | None = None) -> tuple[Path, Path]:
    """Write `images` under root/photos and index them into root/index. Returns both folders.
    `given`: the vector of an image (by rel) instead of the one its group gives."""
    photos, index = root / "photos", root / "index"
    photos.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    bases: dict[int, np.ndarray] = {}
    rows, vectors = [], []
    for k, img in enumerate(images):
        path = photos / img.rel
        if img.same_bytes_as is not None:
            path.write_bytes((photos / img.same_bytes_as).read_bytes())
            os.utime(path, ns=(img.mtime * 10**9,) * 2)
        else:
            picture = (img.picture if img.picture is not None else
                       img.group if img.group is not None else 1000 + k)
            write_image(path, img.size, seed=picture, pad=img.pad, mtime=img.mtime)
        st = os.stat(path)
        root = photos if path.is_relative_to(photos) else path.parent  # rel may be absolute
        rows.append(NewRow(str(path), str(root), st.st_size, st.st_mtime_ns,
                           img.size[0], img.size[1], dev=st.st_dev, ino=st.st_ino,
                           digest=file_digest(str(path))))
        if given is not None and img.rel in given:
            v = given[img.rel]
        elif img.group is None:
            v = rng.normal(size=DIM)
        else:
            base = bases.setdefault(img.group, rng.normal(size=DIM))
            v = base / np.linalg.norm(base) + rng.normal(size=DIM) * 0.01
        vectors.append(v / np.linalg.norm(v))
    with IndexStore.open_writer(str(index), IDENTITY) as store:
        store.commit(rows, np.asarray(vectors, np.float32))
    return photos, index


def run_dedupe(root: Path, index: Path, keep: str = "highest-resolution",
               protect: tuple[str, ...] = (), threshold: float = THRESHOLD,
               **more: Any) -> DedupeResult:
    """`more`: other DedupeSettings fields (verify=..., group_near_misses=...)."""
    settings = DedupeSettings(pairs=PairSettings(threshold=threshold),
                              output=str(root / "results"), max_pairs_for_collage=2, keep=keep,
                              protect=protect, **more)
    return dedupe(str(index), None, settings)


def simple_library(root: Path) -> tuple[Path, DedupeResult]:
    """Two groups (3 and 2 files) and two unique images; returns (photos folder, result)."""
    photos, index = make_library(root, [
        Img("a/sunset.jpg", 0, (120, 90)),
        Img("a/sunset_small.jpg", 0, (60, 45)),
        Img("b/sunset copy.jpg", 0, (90, 60)),
        Img("a/dog.jpg", 1, (80, 60)),
        Img("b/dog-2.jpg", 1, (40, 30)),
        Img("a/cat.jpg"),
        Img("b/tree.jpg"),
    ])
    return photos, run_dedupe(root, index)
