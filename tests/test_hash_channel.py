"""The perceptual-hash candidate channel: grey copies and quarter turns that the embedding
scores under the candidate threshold become candidates, and verification keeps them."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import skimage.data as skdata
from conftest import cli_ok, report_of
from PIL import Image

from imgsim_index.index.catalog import Catalog

PHOTOS = ("astronaut", "rocket", "coffee")
OTHERS = ("immunohistochemistry", "hubble_deep_field", "retina")
T = Image.Transpose
EDITS = {
    "grey": lambda im: im.convert("L"),
    "rot90": lambda im: im.transpose(T.ROTATE_90),
    "rot180": lambda im: im.transpose(T.ROTATE_180),
    "rot270": lambda im: im.transpose(T.ROTATE_270),
    "mirror": lambda im: im.transpose(T.FLIP_LEFT_RIGHT),
    "mirror_rot90": lambda im: im.transpose(T.FLIP_LEFT_RIGHT).transpose(T.ROTATE_90),
    "mirror_rot180": lambda im: im.transpose(T.FLIP_LEFT_RIGHT).transpose(T.ROTATE_180),
    "mirror_rot270": lambda im: im.transpose(T.FLIP_LEFT_RIGHT).transpose(T.ROTATE_270),
}


def _photo(name: str) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(getattr(skdata, name)())).convert("RGB")


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three photos, each with its 8 copies (JPEG, quality 90), and three other photos."""
    out = tmp_path_factory.mktemp("hashch") / "photos"
    out.mkdir()
    for name in PHOTOS:
        im = _photo(name)
        im.save(out / f"{name}.jpg", quality=90)
        for edit, fn in EDITS.items():
            fn(im).save(out / f"{name}_{edit}.jpg", quality=90)
    for name in OTHERS:
        _photo(name).save(out / f"{name}.jpg", quality=90)
    return out


@pytest.fixture(scope="module")
def report(folder: Path) -> dict:  # type: ignore[type-arg]
    index = folder.parent / "index"
    out = folder.parent / "results"
    return report_of(cli_ok("dedupe", str(folder), "--index", str(index), "--model",
                            "efficientnet-lite0", "--output", str(out), "-q"))


def _name(path: str) -> str:
    return os.path.basename(path).removesuffix(".jpg")


def test_every_grey_and_turned_copy_is_a_verified_copy_at_the_defaults(
        report: dict) -> None:  # type: ignore[type-arg]
    assert report["threshold"] == 0.75 and report["verification"]["ran"]
    groups = sorted(sorted(_name(m["path"]) for m in g["members"]) for g in report["groups"]
                    if g["size"] > 1)
    assert groups == sorted(sorted([p, *(f"{p}_{e}" for e in EDITS)]) for p in PHOTOS)
    pairs = {frozenset((_name(p["image1"]), _name(p["image2"]))): p
             for p in report["similar_pairs"]}
    for p in PHOTOS:
        for e in EDITS:  # each copy is a candidate with its original, and a copy
            row = pairs[frozenset((p, f"{p}_{e}"))]
            assert row["match"] in ("exact", "copy"), row
            assert -1 <= row["similarity_score"] <= 1
    assert not any(_name(p["image1"]) in OTHERS or _name(p["image2"]) in OTHERS
                   for p in report["similar_pairs"] + report["near_misses"])
    # some of them only the hash channel found: under the cosine threshold, noted as such
    below = [p for p in report["similar_pairs"] if p["similarity_score"] < 0.75]
    assert below and all("hash_distance" in p["verification"] for p in below)
    assert report["verification"]["hash_candidates"] == len(
        below + [p for p in report["near_misses"] if p["similarity_score"] < 0.75])
    # apply takes them: every copy is removable (one keeper per photo)
    assert report["files_removable"] == len(PHOTOS) * len(EDITS)


def test_the_verifier_accepts_each_copy_on_its_own(folder: Path) -> None:
    from imgsim_index.index.catalog import Row
    from imgsim_index.search import Pairs
    from imgsim_index.verify import KEPT, VerifySettings, verify_pairs

    def row(k: int, name: str) -> Row:
        return Row(k, str(folder / f"{name}.jpg"), str(folder), None, None, None, None,
                   "embedded", None, None, 0.0, 0)

    for p in PHOTOS:
        for e in EDITS:
            got = verify_pairs([row(1, p), row(2, f"{p}_{e}")],
                               Pairs(np.zeros(1, np.int64), np.ones(1, np.int64), np.ones(1)),
                               VerifySettings(enabled=True, workers=0))
            assert got.match[0] in KEPT, (p, e, got.evidence[0])


def test_hashes_are_stored_one_per_image_in_the_catalog(report: dict,  # type: ignore[type-arg]
                                                        folder: Path) -> None:
    cat = Catalog(str(folder.parent / "index" / "catalog.sqlite"), readonly=True)
    try:
        ids, hashes = cat.image_hashes()
        assert len(ids) == len(cat.rows()) == len(PHOTOS) * (len(EDITS) + 1) + len(OTHERS)
        assert hashes.shape == (len(ids), 32)
    finally:
        cat.close()


def test_a_turned_or_mirrored_image_hashes_as_a_dihedral_variant() -> None:
    from imgsim_index.ingest.phash import dihedral, image_hash
    from imgsim_index.search.hash_pairs import HASH_RADIUS

    im = _photo("astronaut")
    own = np.frombuffer(image_hash(im) or b"", np.uint8)[None]
    variants = dihedral(own)[:, 0]
    for fn in EDITS.values():
        other = np.frombuffer(image_hash(fn(im)) or b"", np.uint8)
        best = min(int(np.unpackbits(v ^ other).sum()) for v in variants)
        assert best <= 4
    far = np.frombuffer(image_hash(_photo("coffee")) or b"", np.uint8)
    assert min(int(np.unpackbits(v ^ far).sum()) for v in variants) > 3 * HASH_RADIUS


def test_a_flat_image_has_no_hash() -> None:
    from imgsim_index.ingest.phash import image_hash

    assert image_hash(Image.new("RGB", (300, 200), (40, 90, 200))) is None


def test_hash_pairs_equal_a_brute_force_answer() -> None:
    from imgsim_index.ingest.phash import dihedral
    from imgsim_index.search.hash_pairs import HASH_RADIUS, hash_pairs

    rng = np.random.default_rng(5)
    base = rng.integers(0, 256, (40, 32), dtype=np.uint8)
    off = np.zeros(32, np.uint8)
    off[:8] = 1  # 8 bits
    hashes = np.concatenate([base, dihedral(base)[3][:10], base[:10] ^ off])  # turned, edited
    variants = dihedral(hashes)
    n = len(hashes)
    want = {}
    for a in range(n):
        for b in range(a + 1, n):
            d = min(int(np.unpackbits(variants[k, a] ^ hashes[b]).sum()) for k in range(8))
            if d <= HASH_RADIUS:
                want[(a, b)] = d
    a, b, d = hash_pairs(hashes)
    assert dict(zip(zip(a.tolist(), b.tolist(), strict=True), d.tolist(), strict=True)) == want
    assert len(want) == 30
    qa, qb, _ = hash_pairs(hashes, queries=np.asarray([3, 45]))
    assert set(zip(qa.tolist(), qb.tolist(), strict=True)) == {
        p for p in want if 3 in p or 45 in p}
    assert all(len(x) == 0 for x in hash_pairs(hashes, queries=np.zeros(0, np.int64)))


def test_apply_takes_the_copies_the_hash_channel_found(report: dict,  # type: ignore[type-arg]
                                                       folder: Path) -> None:
    from imgsim_index.actions.plan import make_plan

    (path,) = (folder.parent / "results").glob("*/report.json")
    plan = make_plan(str(path), "move", move_to=str(folder.parent / "dupes"))
    assert plan.refused == []
    assert len(plan.operations) == len(PHOTOS) * len(EDITS)  # all but one keeper per photo
