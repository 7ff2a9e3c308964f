"""The verification stage: verify_pairs on generated edits, the union-find skip, and its
place in dedupe (near_misses, --verify off, the report's fields), with EfficientNet-Lite0."""

from __future__ import annotations

import contextlib
import json
import os
import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps

from imgsim_index.errors import InputError
from imgsim_index.index.catalog import Row
from imgsim_index.search import Pairs
from imgsim_index.verify import (
    APART_EVIDENCE,
    CAPPED_EVIDENCE,
    SKIPPED_EVIDENCE,
    UNALIGNED_EVIDENCE,
    VerifySettings,
    verify_pairs,
)
from tests.conftest import _load_script, cli_ok, report_of

SIZE = (640, 480)


def photo(seed: int) -> Image.Image:
    """A generated scene with texture everywhere (shapes over multi-scale noise)."""
    rng = np.random.default_rng(seed)
    noise = np.zeros((SIZE[1], SIZE[0]), np.float32)
    for cells, weight in ((6, 60.0), (24, 30.0), (96, 15.0)):
        small = rng.uniform(-1, 1, (cells * 3 // 4, cells)).astype(np.float32)
        layer = Image.fromarray(small).resize(SIZE, Image.Resampling.BICUBIC)
        noise += weight * np.asarray(layer)
    base = np.asarray(_load_script("make_samples").scene(random.Random(seed), SIZE), np.float32)
    return Image.fromarray(np.clip(base + noise[:, :, None], 0, 255).astype(np.uint8))


def moved(im: Image.Image) -> Image.Image:
    """Another moment: a subject (a quarter-size block of the picture) moved elsewhere."""
    out = im.copy()
    w, h = im.size
    patch = im.crop((w // 8, h // 8, w // 8 + w // 3, h // 8 + h // 3))
    d = ImageDraw.Draw(out)
    d.ellipse((w // 8, h // 8, w // 8 + w // 3, h // 8 + h // 3), fill=(30, 120, 200))
    out.paste(patch, (w // 2, h // 2))
    return out


def overlay(im: Image.Image) -> Image.Image:
    out = im.copy()
    ImageDraw.Draw(out).text((60, 400), "(c) 2024 imgsim sample photo", fill=(255, 255, 255),
                             font_size=28, stroke_width=2, stroke_fill=(0, 0, 0))
    return out


def borders(im: Image.Image) -> Image.Image:
    out = Image.new("RGB", (im.width, im.height + 120), (0, 0, 0))
    out.paste(im, (0, 60))
    return out


def gamma(im: Image.Image, g: float) -> Image.Image:
    a = np.asarray(im, np.float32) / 255.0
    return Image.fromarray(np.clip(255.0 * a ** g + 0.5, 0, 255).astype(np.uint8))


def noisy(im: Image.Image) -> Image.Image:
    a = np.asarray(im, np.int16) + np.random.default_rng(5).integers(-6, 7, (SIZE[1], SIZE[0], 3))
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


EDITS = {
    "reencoded.jpg": lambda im: im,
    "third.png": lambda im: im.resize((im.width // 3, im.height // 3), Image.Resampling.LANCZOS),
    "crop10.png": lambda im: im.crop((im.width // 10, 0, im.width, im.height)),
    "rot90.png": lambda im: im.transpose(Image.Transpose.ROTATE_90),
    "rot180.png": lambda im: im.transpose(Image.Transpose.ROTATE_180),
    "mirror.png": ImageOps.mirror,
    "grey.png": lambda im: ImageOps.grayscale(im).convert("RGB"),
    "bright.png": lambda im: ImageEnhance.Brightness(im).enhance(1.3),
    "contrast.png": lambda im: ImageEnhance.Contrast(im).enhance(0.7),
    "gamma.png": lambda im: gamma(im, 1.4),
    "blur.png": lambda im: im.filter(ImageFilter.GaussianBlur(1.5)),
    "noise.png": noisy,
    "overlay.png": overlay,
    "borders.png": borders,
}

EVIDENCE = {"third.png": "resized to 33%", "crop10.png": "cropped 10% on the left",
            "rot90.png": "rotated", "rot180.png": "rotated 180 deg", "mirror.png": "mirrored",
            "grey.png": "converted to grey", "borders.png": "borders added"}


def row(k: int, path: Path, digest: str | None = None) -> Row:
    return Row(id=k + 1, path=str(path), root=str(path.parent), size=None, mtime_ns=None,
               width=None, height=None, status="ok", error=None, segment="s", added_at=0.0,
               seq=1, digest=digest)


def star(n: int) -> Pairs:
    """Pairs (0, k) for k = 1..n-1, all with score 0.95."""
    return Pairs(np.zeros(n - 1, np.int64), np.arange(1, n, dtype=np.int64),
                 np.full(n - 1, 0.95))


@pytest.fixture(scope="module")
def edits(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """base.png, one file per edit, and moved.png (another moment), in one folder."""
    d = tmp_path_factory.mktemp("edits")
    base = photo(7)
    base.save(d / "base.png")
    names = []
    for name, edit in EDITS.items():
        edit(base).save(d / name, quality=70) if name.endswith(".jpg") else edit(base).save(
            d / name)
        names.append(name)
    moved(base).save(d / "moved.png")
    return d, names


def test_each_edit_is_a_copy_with_its_evidence(edits: tuple[Path, list[str]]) -> None:
    d, names = edits
    rows = [row(k, d / n) for k, n in enumerate(["base.png", *names])]
    v = verify_pairs(rows, star(len(rows)), VerifySettings(workers=0))
    got = {n: (v.match[k], v.evidence[k]) for k, n in enumerate(names)}
    assert {n: m for n, (m, _) in got.items()} == {n: "copy" for n in names}, got
    for name, word in EVIDENCE.items():
        assert word in got[name][1], (name, got[name])
    assert v.compared == len(names) and v.skipped_as_grouped == 0 and v.ran


def test_moved_subject_is_another_shot(edits: tuple[Path, list[str]]) -> None:
    d, _ = edits
    rows = [row(0, d / "base.png"), row(1, d / "moved.png")]
    v = verify_pairs(rows, star(2), VerifySettings(workers=0))
    assert v.match == ["other_shot"]
    assert v.evidence[0].startswith("other shot:") or "region" in v.evidence[0], v.evidence
    assert v.numbers[0]["differing_share"] > 0.02 or v.numbers[0]["largest_region"] > 0.01


def test_same_bytes_are_exact_without_decoding(tmp_path: Path) -> None:
    # the files do not exist: a pair of equal digests must not need them
    rows = [row(0, tmp_path / "a.jpg", "d1"), row(1, tmp_path / "b.jpg", "d1")]
    v = verify_pairs(rows, star(2), VerifySettings(workers=0))
    assert (v.match, v.evidence, v.compared, v.same_bytes) == (["exact"], ["same bytes"], 0, 1)


def test_same_pixels_are_exact(tmp_path: Path) -> None:
    im = photo(3)
    im.save(tmp_path / "a.png")
    im.save(tmp_path / "b.png", compress_level=1)  # other bytes, same pixels
    v = verify_pairs([row(0, tmp_path / "a.png"), row(1, tmp_path / "b.png")], star(2),
                     VerifySettings(workers=0))
    assert (v.match, v.evidence) == (["exact"], ["same decoded pixels"])


def test_undecodable_and_flat_images_get_a_verdict(tmp_path: Path) -> None:
    photo(4).save(tmp_path / "a.png")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    Image.new("RGB", (200, 150), (90, 90, 90)).save(tmp_path / "flat1.png")
    Image.new("RGB", (300, 200), (200, 30, 30)).save(tmp_path / "flat2.png")
    rows = [row(k, tmp_path / n) for k, n in
            enumerate(["a.png", "broken.jpg", "flat1.png", "flat2.png"])]
    pairs = Pairs(np.array([0, 2]), np.array([1, 3]), np.array([0.95, 0.94]))
    v = verify_pairs(rows, pairs, VerifySettings(workers=0))
    # a file that cannot be read for verification is no evidence of a copy: its pair stays
    # out of the groups (nothing proposed for removal); two flat images of other colours
    # are other pictures
    assert v.match == ["not_verified", "other_shot"]
    assert v.evidence[0].startswith("could not read it for verification (")
    assert v.evidence[1] == "blank images of different colours (RGB 90/90/90 and RGB 200/30/30)"
    assert (v.not_verified, v.compared, sorted(v.errors)) == (1, 1, [1])


def test_files_the_index_does_not_hold_are_verified_by_path_and_digest(tmp_path: Path) -> None:
    """verify_pairs takes what it reads of an image (ImageFile: path, digest), no catalog
    row: equal digests are exact without decoding, a resized copy is a copy."""
    from imgsim_index.verify import ImageFile

    photo(5).save(tmp_path / "a.png")
    photo(5).resize((320, 240), Image.Resampling.LANCZOS).save(tmp_path / "b.jpg", quality=90)
    images = [ImageFile(str(tmp_path / "a.png")), ImageFile(str(tmp_path / "b.jpg")),
              ImageFile("/nowhere/c.jpg", "d1"), ImageFile("/nowhere/d.jpg", "d1")]
    v = verify_pairs(images, Pairs(np.array([0, 2]), np.array([1, 3]), np.array([0.97, 0.99])),
                     VerifySettings(workers=0))
    assert v.match == ["copy", "exact"] and v.evidence[1] == "same bytes"


def blank_page() -> Image.Image:
    return Image.new("RGB", (800, 600), (250, 250, 250))


def signed_page(size: int = 18, ink: tuple[int, int, int] = (20, 20, 60)) -> Image.Image:
    im = blank_page()
    ImageDraw.Draw(im).text((520, 540), "Signed: J. Smith", fill=ink, font_size=size)
    return im


def write_pages(folder: Path) -> list[str]:
    """blank.png (a white page), black.png (an all-black image), signed.png (the page with
    an 18 px signature), faint.png (a 10 px grey one) and blank.jpg (blank.png resized and
    re-encoded)."""
    folder.mkdir(exist_ok=True)
    blank_page().save(folder / "blank.png")
    Image.new("RGB", (800, 600), (5, 5, 8)).save(folder / "black.png")
    signed_page().save(folder / "signed.png")
    signed_page(10, (200, 200, 200)).save(folder / "faint.png")
    blank_page().resize((640, 480)).save(folder / "blank.jpg", quality=75)
    return ["blank.png", "black.png", "signed.png", "faint.png", "blank.jpg"]


def test_a_blank_page_is_a_copy_only_of_a_blank_page_of_its_colour(tmp_path: Path) -> None:
    """A flat image was a copy of anything ("no detail to verify"), so a blank page kept
    over the signed page, and over a black image, had them deleted. A flat image is a copy
    only of one of its colour; strokes on a blank page are content, even where the grey
    std is that of a blank scan (the faint 10 px signature)."""
    names = write_pages(tmp_path)
    rows = [row(k, tmp_path / n) for k, n in enumerate(names)]
    v = verify_pairs(rows, star(len(rows)), VerifySettings(workers=0))
    got = dict(zip(names[1:], zip(v.match, v.evidence, strict=True), strict=True))
    assert got["black.png"] == ("other_shot", "blank images of different colours "
                                "(RGB 250/250/250 and RGB 5/5/8)"), got
    assert got["signed.png"] == ("other_shot", "A is blank (RGB 250/250/250), B has content"), got
    assert got["faint.png"] == ("other_shot", "A is blank (RGB 250/250/250), B has content"), got
    assert got["blank.jpg"][0] == "copy" and got["blank.jpg"][1].startswith(
        "blank images of the same colour"), got
    assert v.kept().tolist() == [False, False, False, True]


def test_a_blank_page_deletes_nothing_end_to_end(tmp_path: Path) -> None:
    """dedupe (EfficientNet-Lite0, every pair a candidate) and apply --delete --yes on a
    blank page, a black image and the signed pages: nothing is proposed, nothing deleted."""
    folder = tmp_path / "pages"
    names = write_pages(folder)[:4]
    (folder / "blank.jpg").unlink()
    rep = report_of(cli_ok("dedupe", str(folder), "--index", str(tmp_path / "idx"), "--model",
                           "efficientnet-lite0", "--output", str(tmp_path / "out"),
                           "--threshold", "0.0", "--verify-workers", "0", "-q"))
    assert len(rep["near_misses"]) == 6 and rep["similar_pairs"] == [], rep["near_misses"]
    assert rep["groups"] == [] and rep["photos_to_remove"] == 0
    (report,) = (tmp_path / "out").glob("*/report.json")
    cli_ok("apply", str(report), "--delete", "--yes", "-q")
    assert sorted(p.name for p in folder.iterdir()) == sorted(names)


def test_a_file_gone_during_dedupe_groups_nothing(tmp_path: Path) -> None:
    """Pairs of a file that vanished after it was indexed cannot chain other pictures into a
    removable group: they are listed apart, not grouped."""
    from imgsim_index.groups.components import connected_components

    photo(4).save(tmp_path / "a.png")
    photo(4).save(tmp_path / "gone.png")
    photo(5).save(tmp_path / "b.png")
    rows = [row(k, tmp_path / n) for k, n in enumerate(["a.png", "gone.png", "b.png"])]
    (tmp_path / "gone.png").unlink()
    pairs = Pairs(np.array([0, 1]), np.array([1, 2]), np.array([0.99, 0.9]))
    v = verify_pairs(rows, pairs, VerifySettings(workers=0))
    assert v.match == ["not_verified", "not_verified"]  # never "other shot"
    kept = v.kept()
    groups = connected_components(3, pairs.i[kept], pairs.j[kept])
    assert groups.members == [] and groups.n_removable == 0


def test_a_static_scene_costs_n_minus_one_compares(tmp_path: Path) -> None:
    """Every pair of 12 noisy frames of one scene is a candidate (66 pairs); only the 11
    that join the group are compared, the rest are copies through the group."""
    base = np.asarray(photo(9), np.int16)
    rng = np.random.default_rng(0)
    rows = []
    for k in range(12):
        a = np.clip(base + rng.integers(-2, 3, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(a).save(tmp_path / f"f{k:02d}.png")
        rows.append(row(k, tmp_path / f"f{k:02d}.png"))
    i, j = np.triu_indices(12, 1)
    score = np.linspace(0.999, 0.95, len(i))
    v = verify_pairs(rows, Pairs(i.astype(np.int64), j.astype(np.int64), score),
                     VerifySettings(workers=2))
    assert (v.compared, v.skipped_as_grouped) == (11, 66 - 11)
    assert set(v.match) == {"copy"}
    assert v.evidence.count(SKIPPED_EVIDENCE) == 55


def test_other_shots_are_compared_again_through_the_group(edits: tuple[Path, list[str]]) -> None:
    """base-moved is another shot; a copy of moved must still join moved, not base."""
    d, _ = edits
    rows = [row(0, d / "base.png"), row(1, d / "moved.png"), row(2, d / "reencoded.jpg")]
    pairs = Pairs(np.array([0, 1, 0]), np.array([2, 2, 1]), np.array([0.99, 0.98, 0.97]))
    v = verify_pairs(rows, pairs, VerifySettings(workers=0))
    assert v.match == ["copy", "other_shot", "other_shot"]
    # one other-shot verdict does not keep moved apart from {base, reencoded}: base-moved
    # is compared too
    assert (v.compared, v.skipped_as_other_shot) == (3, 0)
    # with apart_votes=1 the first verdict decides: base-moved is not compared, and its
    # evidence names the pair that decided
    v = verify_pairs(rows, pairs, VerifySettings(workers=0, apart_votes=1))
    assert v.match == ["copy", "other_shot", "other_shot"]
    assert (v.compared, v.skipped_as_other_shot) == (2, 1)
    assert v.evidence[2] == f"{APART_EVIDENCE} (compared: moved.png and reencoded.jpg)"


def test_two_groups_of_other_shots_cost_two_compares_between_them(
        edits: tuple[Path, list[str]], tmp_path: Path) -> None:
    """Three copies of one shot and three of another: 6 pairs within the groups, 9 across.
    4 compares build the groups, 2 show them apart, and the other 7 across are not
    compared; every cross pair is other_shot, every pair within a group a copy."""
    d, _ = edits
    moved = Image.open(d / "moved.png").convert("RGB")
    moved.save(tmp_path / "moved.jpg", quality=80)
    ImageEnhance.Brightness(moved).enhance(1.2).save(tmp_path / "moved_bright.png")
    files = [d / "base.png", d / "reencoded.jpg", d / "bright.png", d / "moved.png",
             tmp_path / "moved.jpg", tmp_path / "moved_bright.png"]
    rows = [row(k, f) for k, f in enumerate(files)]
    within = [(0, 1), (0, 2), (1, 2), (3, 4), (3, 5), (4, 5)]
    across = [(a, b) for a in range(3) for b in range(3, 6)]
    ij = np.array(within + across)
    v = verify_pairs(rows, Pairs(ij[:, 0], ij[:, 1], np.linspace(0.99, 0.9, len(ij))),
                     VerifySettings(workers=0))
    assert v.match == ["copy"] * 6 + ["other_shot"] * 9
    assert (v.compared, v.skipped_as_grouped, v.skipped_as_other_shot) == (6, 2, 7)
    assert v.evidence[-1].startswith(f"{APART_EVIDENCE} (compared: ") \
        and v.evidence[-1].count(" and ") == 2, v.evidence[-1]


def test_pictures_that_do_not_align_cost_a_few_compares_between_their_groups(
        tmp_path: Path) -> None:
    """Two unrelated photos with four copies each (look-alikes to the embedding, say):
    12 pairs within the groups, 16 across. The pairs across do not align; once
    unaligned_votes (4) of them were compared, the other 12 are not, and say so."""
    from benchmarks.hard_edits import jpeg, sample

    files = []
    for name in ("astronaut", "coffee"):
        rgb = sample(name)
        for k, quality in enumerate((95, 85, 75, 65)):
            path = tmp_path / f"{name}{k}.jpg"
            path.write_bytes(png_bytes(jpeg(rgb, quality)))
            files.append(path)
    rows = [row(k, f) for k, f in enumerate(files)]
    within = [(a, b) for g in (0, 4) for a in range(g, g + 4) for b in range(a + 1, g + 4)]
    across = [(a, b) for a in range(4) for b in range(4, 8)]
    ij = np.array(within + across)
    v = verify_pairs(rows, Pairs(ij[:, 0], ij[:, 1], np.linspace(0.99, 0.9, len(ij))),
                     VerifySettings(workers=0))
    assert v.match == ["copy"] * 12 + ["other_shot"] * 16
    assert (v.compared, v.skipped_as_grouped, v.skipped_as_other_shot) == (6 + 4, 6, 12)
    assert all(e.startswith("no alignment") for e in v.evidence[12:16]), v.evidence[12:16]
    assert v.evidence[-1].startswith(f"{UNALIGNED_EVIDENCE} (compared: ") \
        and v.evidence[-1].count(" and ") == 4, v.evidence[-1]


def colour_fields(folder: Path, n: int) -> list[Path]:
    """n distinct smooth random colour fields (pictures alike to the embedding, that no
    map aligns), PNG."""
    import cv2

    files = []
    for k in range(n):
        rng = np.random.default_rng(k)
        small = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
        img = cv2.resize(small, SIZE, interpolation=cv2.INTER_CUBIC)
        img = np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)
        files.append(folder / f"field{k}.png")
        Image.fromarray(img).save(files[-1])
    return files


def test_an_image_is_compared_with_at_most_the_limit_of_other_shots(tmp_path: Path) -> None:
    """Nine distinct pictures, every pair a candidate (36), a copy of the first and a file
    with the second's bytes, whose pairs score lowest. With a limit of 2 other shots per
    image, no image takes part in more than 2 comparisons that found other shots; the pairs
    left are not verified and say why; the copy's pair, marked to compare whatever the
    limit (as dedupe marks the hash channel's), is still a copy, and the same bytes are
    still exact; with no limit every pair is compared."""
    files = colour_fields(tmp_path, 9)
    Image.open(files[0]).save(tmp_path / "copy.jpg", quality=85)
    (tmp_path / "same.png").write_bytes(files[1].read_bytes())
    files += [tmp_path / "copy.jpg", tmp_path / "same.png"]
    rows = [row(k, f, "same" if k in (1, 10) else None) for k, f in enumerate(files)]
    ij = np.array([(a, b) for a in range(9) for b in range(a + 1, 9)] + [(0, 9), (1, 10)])
    pairs = Pairs(ij[:, 0], ij[:, 1], np.linspace(0.99, 0.8, len(ij)))
    uncapped = np.arange(len(ij)) == 36  # an array or a list of bools
    v = verify_pairs(rows, pairs, VerifySettings(workers=0, other_shots_per_image=2),
                     uncapped=uncapped)
    assert v.match[36:] == ["copy", "exact"] and v.evidence[37] == "same bytes", v.evidence
    assert v.same_bytes == 1 and v.other_shots_per_image == 2
    compared = [k for k, e in enumerate(v.evidence[:36]) if not e.startswith("not compared")]
    per_image = np.bincount(ij[compared].ravel(), minlength=10)
    assert per_image.max() <= 2 and len(compared) >= 6, per_image
    assert all(v.match[k] == "other_shot" for k in compared)
    capped = [k for k, e in enumerate(v.evidence) if e.startswith(CAPPED_EVIDENCE)]
    assert v.skipped_per_image == len(capped) == 36 - len(compared) > 0
    assert v.not_verified == len(capped) and v.compared == len(compared) + 1
    assert all(v.match[k] == "not_verified" for k in capped)
    assert v.evidence[capped[0]].endswith(" was already found unlike 2 other images)")
    every = verify_pairs(rows, pairs, VerifySettings(workers=0, other_shots_per_image=0))
    assert every.compared == 37 and every.skipped_per_image == 0 and every.same_bytes == 1
    assert [every.match[k] for k in compared] == [v.match[k] for k in compared]


def test_dedupe_says_how_many_pairs_the_limit_of_other_shots_left(tmp_path: Path,
                                                                    lite0) -> None:  # type: ignore[no-untyped-def]
    """Every pair of seven distinct pictures and a JPEG copy of one a candidate
    (--threshold -1), at most 1 other shot per image: the copy is still found (its pair
    scores highest), the pairs left are not verified, counted in the report and named on
    the console; nothing but the copy is removable."""
    d = tmp_path / "fields"
    d.mkdir()
    files = colour_fields(d, 7)
    Image.open(files[0]).save(d / "field0_copy.jpg", quality=85)
    out = cli_ok("dedupe", str(d), "--index", str(tmp_path / "idx"), "--model",
                 "efficientnet-lite0", "--output", str(tmp_path / "out"), "--threshold", "-1",
                 "--max-other-shots", "1", "--verify-workers", "0")
    rep = report_of(out)
    v = rep["verification"]
    left = [r for r in rep["near_misses"] if r["evidence"].startswith(CAPPED_EVIDENCE)]
    assert v["skipped_per_image"] == len(left) > 0 and v["not_verified"] == len(left)
    assert {r["match"] for r in left} == {"not_verified"}
    assert f"{len(left)} pairs not compared: an image in each had already been found " \
        "unlike 1 other image, the limit per image (--max-other-shots;" in out, out
    assert v["other_shots_per_image"] == 1
    assert [sorted(Path(p).name for p in g["removable"]) for g in rep["groups"]] in (
        [["field0.png"]], [["field0_copy.jpg"]])
    assert v["compared"] + v["skipped_as_other_shot"] + v["skipped_per_image"] == 28


def png_bytes(rgb: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    return buf.getvalue()


def test_one_wrong_other_shot_verdict_does_not_split_a_group_of_copies(
        tmp_path: Path) -> None:
    """Four copies of one photo: the original, its re-encoding and two darkenings. The
    best-scoring pair between the sub-groups (the original and the darker one, gamma 2.5)
    is judged another shot (tones moved beyond the edit limit, and no pure gain), but the
    gamma 1.6 one is a copy of both: a second compare joins the sub-groups instead of one
    verdict splitting them."""
    from benchmarks.hard_edits import jpeg, sample
    from imgsim_index.groups.components import connected_components

    x = sample("immunohistochemistry")

    def gamma(p: float) -> np.ndarray:
        return jpeg(np.clip(255 * (x / 255.0) ** p, 0, 255).astype(np.uint8))

    images = {"x.png": x, "x.jpg": jpeg(x), "x_g25.jpg": gamma(2.5), "x_g16.jpg": gamma(1.6)}
    rows = []
    for k, (name, rgb) in enumerate(images.items()):
        Image.fromarray(rgb).save(tmp_path / name)
        rows.append(row(k, tmp_path / name))
    ij = np.array([(0, 1), (0, 2), (1, 3), (3, 2), (1, 2)])
    pairs = Pairs(ij[:, 0], ij[:, 1], np.array([0.995, 0.99, 0.98, 0.97, 0.96]))
    v = verify_pairs(rows, pairs, VerifySettings(workers=0))
    assert v.match == ["copy", "other_shot", "copy", "copy", "copy"], v.evidence
    kept = v.kept()
    groups = connected_components(4, pairs.i[kept], pairs.j[kept])
    assert [sorted(m) for m in groups.members] == [[0, 1, 2, 3]]
    assert (v.compared, v.skipped_as_grouped, v.skipped_as_other_shot) == (4, 1, 0)


@pytest.mark.parametrize("settings, message", [
    (VerifySettings(workers=-1), "verification workers must be in [0, 256], got -1"),
    (VerifySettings(max_side=10), "verification max side must be in [128, 8192], got 10"),
    (VerifySettings(apart_votes=0), "verification apart votes must be in [1, 100], got 0"),
    (VerifySettings(other_shots_per_image=-1), "verification other shots per image must be "
     "in [0, 1000000] (0: no limit), got -1"),
    (VerifySettings(stall_seconds=0), "verification stall seconds must be in [1, 86400], "
     "got 0"),
    (VerifySettings(memory_bytes=1000),
     "verification memory must be at least 16 MiB, got 1000 bytes"),
    (VerifySettings(tunables=(("ratio", 2.0),)), "VerifySettings: ratio must be in [0.5, 1)"),
    (VerifySettings(tunables=(("nope", 1.0),)), "unknown verification setting 'nope'"),
    (VerifySettings(tunables=(("local_tiles", 2.5),)),
     "verification setting 'local_tiles' must be a whole number"),
])
def test_bad_settings_are_input_errors(settings: VerifySettings, message: str) -> None:
    with pytest.raises(InputError) as e:
        verify_pairs([], Pairs.empty(), settings)
    assert str(e.value).startswith(message)


def test_off_keeps_every_pair_unverified() -> None:
    v = verify_pairs([], star(3), VerifySettings(enabled=False))
    assert (v.match, v.ran, v.compared) == (["copy", "copy"], False, 0)


# ------------------------------------------------------------------ dedupe end to end


@pytest.fixture(scope="module")
def dedupe_runs(edits: tuple[Path, list[str]], tmp_path_factory: pytest.TempPathFactory,
                lite0) -> dict[str, dict]:  # type: ignore[no-untyped-def,type-arg]
    d, _ = edits
    work = tmp_path_factory.mktemp("dedupe")
    index = str(work / "idx")
    out = {}
    for name, extra in {"on": [], "off": ["--verify", "off"],
                        "grouped": ["--group-near-misses"], "default": None}.items():
        args = ["--threshold", "0.5", *extra] if extra is not None else []
        out[name] = report_of(cli_ok("dedupe", str(d), "--index", index, "--model",
                                     "efficientnet-lite0", "--output", str(work / name),
                                     "--verify-workers", "0", "-q", *args))
    return out


def pairs_of(rows: list[dict]) -> set[tuple[str, str]]:  # type: ignore[type-arg]
    return {(Path(r["image1"]).name, Path(r["image2"]).name) for r in rows}


def test_dedupe_moves_other_shots_to_near_misses(dedupe_runs, edits) -> None:  # type: ignore[no-untyped-def]
    rep = dedupe_runs["on"]
    near = pairs_of(rep["near_misses"])
    assert near and all("moved.png" in p for p in near)
    assert not any("moved.png" in p for p in pairs_of(rep["similar_pairs"]))
    assert {r["match"] for r in rep["near_misses"]} == {"other_shot"}
    assert {r["match"] for r in rep["similar_pairs"]} <= {"exact", "copy"}
    # one group: base and its 14 copies; moved.png is in no group, so nothing removes it
    assert [g["size"] for g in rep["groups"]] == [15]
    assert rep["photos_to_remove"] == 14
    assert not any(p.endswith("moved.png") for g in rep["groups"] for p in g["removable"])


def test_verify_off_gives_the_cosine_pairs(dedupe_runs) -> None:  # type: ignore[no-untyped-def]
    on, off = dedupe_runs["on"], dedupe_runs["off"]
    assert pairs_of(off["similar_pairs"]) == (pairs_of(on["similar_pairs"])
                                              | pairs_of(on["near_misses"]))
    assert off["verification"]["ran"] is False and off["near_misses"] == []
    assert [g["size"] for g in off["groups"]] == [16]


def test_group_near_misses_puts_them_back(dedupe_runs) -> None:  # type: ignore[no-untyped-def]
    rep = dedupe_runs["grouped"]
    assert [g["size"] for g in rep["groups"]] == [16]
    assert pairs_of(rep["near_misses"]) == pairs_of(dedupe_runs["on"]["near_misses"])


def test_report_fields(dedupe_runs) -> None:  # type: ignore[no-untyped-def]
    rep = dedupe_runs["on"]
    assert rep["report_schema_version"] == 4
    assert (rep["threshold"], rep["threshold_source"]) == (0.5, "given")
    assert set(rep["verification"]) == {"ran", "compared", "skipped_as_grouped",
                                        "skipped_as_other_shot", "same_bytes", "not_verified",
                                        "seconds", "hash_candidates", "skipped_per_image",
                                        "other_shots_per_image"}
    v = rep["verification"]
    assert v["ran"] is True and v["compared"] + v["skipped_as_grouped"] \
        + v["skipped_as_other_shot"] + v["same_bytes"] + v["skipped_per_image"] \
        == len(rep["similar_pairs"]) + len(rep["near_misses"])
    assert rep["number_of_similar_pairs"] == len(rep["similar_pairs"])
    assert rep["number_of_near_misses"] == len(rep["near_misses"])
    for r in rep["similar_pairs"] + rep["near_misses"]:
        assert list(r)[:4] == ["index", "image1", "image2", "similarity_score"]
        assert isinstance(r["evidence"], str) and r["evidence"]
        assert all(isinstance(x, float) for x in r["verification"].values())
    json.dumps(rep)


def test_default_threshold_is_the_models(dedupe_runs) -> None:  # type: ignore[no-untyped-def]
    from imgsim_index.verify import CANDIDATE_THRESHOLDS

    rep = dedupe_runs["default"]
    assert rep["threshold_source"] == "model default"
    assert rep["threshold"] == CANDIDATE_THRESHOLDS["efficientnet-lite0"]


def test_query_hits_get_verdicts(edits: tuple[Path, list[str]],
                                 tmp_path: Path) -> None:
    """query verifies each hit at or above the candidate threshold, as dedupe does."""
    d, _ = edits
    lib = tmp_path / "lib"
    lib.mkdir()
    for name in ("base.png", "moved.png"):
        (lib / name).write_bytes((d / name).read_bytes())
    index = str(tmp_path / "idx")
    cli_ok("build", str(lib), "--index", index, "--model", "efficientnet-lite0", "-q")
    probe = tmp_path / "probe.jpg"
    Image.open(d / "base.png").resize((320, 240)).save(probe, quality=80)
    out = json.loads(cli_ok("query", str(probe), "--index", index, "--json"))
    [result] = out
    by_name = {Path(m["path"]).name: m for m in result["matches"]}
    assert set(by_name) == {"base.png", "moved.png"}
    base, moved_hit = by_name["base.png"], by_name["moved.png"]
    assert base["match"] == "copy" and "A resized to 50%" in base["evidence"], base
    assert moved_hit["similarity_score"] >= 0.75, moved_hit
    assert moved_hit["match"] == "other_shot", moved_hit
    text = cli_ok("query", str(probe), "--index", index)
    assert f"  {base['similarity_score']:.6f}  {lib / 'base.png'}\n{'':12}copy: " in text
    off = json.loads(cli_ok("query", str(probe), "--index", index, "--json", "--verify", "off",
                            "--threshold", "0.75"))  # without it: 0.99, cosine only
    assert {(m["match"], m["evidence"]) for m in off[0]["matches"]} == {
        ("copy", "not verified (cosine only)")}


def test_whole_number_settings_given_as_floats_are_used() -> None:
    """Tunables arrive as floats (a command line's "block=8"); an int setting takes them
    as ints, so array shapes and ranges built from it work."""
    m = VerifySettings(tunables=(("local_tiles", 3.0), ("block", 8.0))).matching()
    assert (m.local_tiles, m.block) == (3, 8)
    assert isinstance(m.local_tiles, int) and isinstance(m.block, int)


def test_blas_runs_in_one_thread_while_pairs_are_verified(
        edits: tuple[Path, list[str]], monkeypatch: pytest.MonkeyPatch) -> None:
    """OpenBLAS's threads spin while they wait: during verification every BLAS loaded runs
    in one thread, and gets its threads back afterwards."""
    from threadpoolctl import threadpool_info

    import imgsim_index.verify.rounds as rounds

    def blas() -> set[int]:
        return {int(d["num_threads"]) for d in threadpool_info() if d["user_api"] == "blas"}

    seen: list[set[int]] = []
    real = rounds.PairWalk._compare

    def spy(self, batch):  # type: ignore[no-untyped-def]
        seen.append(blas())
        return real(self, batch)

    monkeypatch.setattr(rounds.PairWalk, "_compare", spy)
    d, _ = edits
    before = blas()
    rows = [row(0, d / "base.png"), row(1, d / "reencoded.jpg")]
    v = verify_pairs(rows, Pairs(np.array([0]), np.array([1]), np.array([0.99])))
    assert v.match == ["copy"] and seen and all(s == {1} for s in seen)
    assert blas() == before


def _scenes(folder: Path, n: int = 9) -> tuple[list[Row], Pairs]:
    """n scenes, each a photo, its re-encoded copy and another shot of it: a first round of
    2n comparisons (each photo against its copy and its other shot), then n more."""
    rows, i, j = [], [], []
    for k in range(n):
        base = photo(20 + k)
        for name, im in (("base", base), ("copy", base), ("moved", moved(base))):
            path = folder / f"{k}_{name}.{'jpg' if name == 'copy' else 'png'}"
            im.save(path)
            rows.append(row(len(rows), path))
        i += [3 * k, 3 * k, 3 * k + 1]
        j += [3 * k + 1, 3 * k + 2, 3 * k + 2]
    return rows, Pairs(np.array(i), np.array(j), np.linspace(0.99, 0.9, len(i)))


@pytest.mark.parametrize("fork", [False, True])
def test_worker_processes_give_the_verdicts_of_one_thread(tmp_path: Path, fork: bool,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A first round of 18 comparisons (9 scenes, each with a re-encoded copy and another
    shot of it) goes to 2 worker processes, the next rounds too: the same verdicts,
    evidence and numbers as in one thread. Without fork the pool starts while the images
    are described and is sent them; with fork (Linux) its workers are forks of this
    process made when the comparisons start, which inherit the described images."""
    import imgsim_index.verify.rounds as rounds

    if fork and not rounds.can_fork():
        pytest.skip("this platform does not fork")
    rows, pairs = _scenes(tmp_path)
    started: list[str] = []
    for name in ("_pool_context", "_fork_context"):
        real = getattr(rounds, name)

        def spy(real=real, name=name):  # type: ignore[no-untyped-def]
            started.append(name)
            return real()

        monkeypatch.setattr(rounds, name, spy)
    one = verify_pairs(rows, pairs, VerifySettings(workers=0))
    pooled = verify_pairs(rows, pairs, VerifySettings(workers=2, fork=fork))
    assert started == ["_fork_context" if fork else "_pool_context"]
    assert (pooled.match, pooled.evidence, pooled.compared) == (one.match, one.evidence,
                                                                one.compared)
    assert [v.numbers for v in pooled.pairs] == [v.numbers for v in one.pairs]
    assert one.match.count("copy") == 9 and one.match.count("other_shot") == 18
    assert rounds._inherited == {}  # the parent lets go of the images it lent


@pytest.mark.parametrize("fork", [False, True])
def test_a_memory_budget_verifies_in_parts_with_the_same_verdicts(
        tmp_path: Path, fork: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The walk holds at most memory_bytes of described images: the scenes' images are
    described and compared in parts (of at most budget / 1.70 MB images, a 512 px square
    thumbnail's bound), an image dropped once no pair needs it, with the verdicts,
    evidence and numbers of one part. Forked workers are made again for a part whose
    images they did not inherit (parts of 16 pairs or more go to them)."""
    import imgsim_index.verify.rounds as rounds

    if fork and not rounds.can_fork():
        pytest.skip("this platform does not fork")
    # threads: 9 scenes in parts of 9 images; forks: 24 scenes in parts of 24 (16 pairs)
    scenes, budget = (24, 40 << 20) if fork else (9, 16 << 20)
    rows, pairs = _scenes(tmp_path, scenes)
    held: list[int] = []
    forks: list[int] = []
    real_describe, real_fork = rounds.PairWalk._describe, rounds._fork_context

    def describe(self, batch):  # type: ignore[no-untyped-def]
        real_describe(self, batch)
        held.append(sum(f.nbytes() for f in self.features.values()))

    monkeypatch.setattr(rounds.PairWalk, "_describe", describe)
    monkeypatch.setattr(rounds, "_fork_context", lambda: forks.append(1) or real_fork())
    whole = verify_pairs(rows, pairs, VerifySettings(workers=0))
    assert len(held) == 2 and max(held) > budget  # two rounds, every image held at once
    held.clear()
    parts = verify_pairs(rows, pairs, VerifySettings(workers=2 if fork else 0, fork=fork,
                                                     memory_bytes=budget))
    assert len(held) >= 4 and max(held) <= budget
    assert (parts.match, parts.evidence, parts.compared) == (whole.match, whole.evidence,
                                                             whole.compared)
    assert [v.numbers for v in parts.pairs] == [v.numbers for v in whole.pairs]
    assert whole.match.count("copy") == scenes and whole.compared == 3 * scenes
    assert len(forks) >= 2 if fork else not forks  # made again for a later part


class _Notes:
    """A Progress that keeps the notes it is given."""

    def __init__(self) -> None:
        self.notes: list[str] = []

    def start(self, desc: str, total: int | None = None) -> None: ...
    def update(self, n: int = 1) -> None: ...
    def finish(self) -> None: ...

    def note(self, message: str) -> None:
        self.notes.append(message)


@contextlib.contextmanager
def _stopping_workers(every: bool) -> Iterator[list[int]]:
    """SIGSTOP the worker processes of this process as they appear: the first two only
    (a pool that stalls once), or every one (each pool stalls). After 120 s every one is
    let go again (SIGCONT) and the test fails, rather than hang."""
    import multiprocessing
    import signal
    import threading
    import time

    stopped: list[int] = []
    done = threading.Event()
    deadline = time.monotonic() + 120

    def run() -> None:
        while not done.wait(0.002):
            if time.monotonic() > deadline:
                for pid in stopped:
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGCONT)
                stopped.append(-1)  # the mark of a guard that did not work
                return
            if not every and len(stopped) >= 2:
                continue
            for child in multiprocessing.active_children():
                if child.pid not in stopped and child.pid is not None:
                    os.kill(child.pid, signal.SIGSTOP)
                    stopped.append(child.pid)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        yield stopped
    finally:
        done.set()
        t.join()


@pytest.mark.parametrize("fork", [False, True])
def test_stalled_worker_processes_are_replaced_with_the_same_verdicts(
        tmp_path: Path, fork: bool) -> None:
    """Worker processes that finish no comparison in stall_seconds (here both are stopped
    with SIGSTOP) are ended, and their comparisons go to new ones (not forks): the walk
    ends, with the verdicts, evidence and numbers of one thread, and says so."""
    import multiprocessing

    import imgsim_index.verify.rounds as rounds

    if fork and not rounds.can_fork():
        pytest.skip("this platform does not fork")
    rows, pairs = _scenes(tmp_path)
    one = verify_pairs(rows, pairs, VerifySettings(workers=0))
    notes = _Notes()
    with _stopping_workers(every=False) as stopped:
        pooled = verify_pairs(rows, pairs, VerifySettings(workers=2, fork=fork,
                                                          stall_seconds=3), notes)
    assert len(stopped) == 2 and -1 not in stopped
    assert (pooled.match, pooled.evidence, pooled.compared) == (one.match, one.evidence,
                                                                one.compared)
    assert [v.numbers for v in pooled.pairs] == [v.numbers for v in one.pairs]
    assert notes.notes == ["verification workers finished no comparison in 3 s: ended; "
                           "18 comparisons go to new workers"]
    assert not multiprocessing.active_children()  # the stopped ones were ended


def test_comparisons_whose_workers_stall_again_and_again_are_not_verified(
        tmp_path: Path) -> None:
    """Where every worker process stalls, a comparison under way at two stalls is not
    verified, and after three stalls in a row with nothing finished so is the rest of
    the round (each with its reason): the walk ends after a few stalls, never on a copy
    whose comparison did not run; the next round compares in threads."""
    import multiprocessing

    import imgsim_index.verify.rounds as rounds

    if not rounds.can_fork():
        pytest.skip("this platform does not fork")
    rows, pairs = _scenes(tmp_path)
    one = verify_pairs(rows, pairs, VerifySettings(workers=0))
    notes = _Notes()
    with _stopping_workers(every=True) as stopped:
        v = verify_pairs(rows, pairs, VerifySettings(workers=2, fork=True, stall_seconds=1),
                         notes)
    assert -1 not in stopped and len(stopped) >= 4
    stalled = rounds.STALLED_EVIDENCE.format(1, 2)
    given_up = rounds.GIVEN_UP_EVIDENCE.format(1, 3)
    assert stalled == ("not verified: its comparison was under way when the verification "
                       "workers finished nothing in 1 s, 2 times")
    assert given_up == "not verified: the verification workers finished nothing in 1 s, " \
        "3 times in a row"
    first = [p for p in range(len(pairs)) if p % 3 != 2]  # the first round's 18
    mine = [v.pairs[p] for p in first if v.pairs[p].evidence in (stalled, given_up)]
    assert mine and all(x.match == "not_verified" for x in mine)
    assert [x.evidence for x in mine].count(given_up) >= 1
    for p in range(len(pairs)):  # any other verdict is that of a comparison that ran
        if v.pairs[p] not in mine:
            assert (v.pairs[p].match, v.pairs[p].evidence) == (one.match[p], one.evidence[p])
    assert v.compared == one.compared - len(mine) and v.not_verified == len(mine)
    assert 3 <= len(notes.notes) <= 6
    assert not multiprocessing.active_children()


def test_images_dropped_for_room_are_read_back_from_disk_not_described_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a spill folder, an image dropped for room while a pair still needs it is kept
    on disk and read back: every image is described once, with the verdicts, evidence and
    numbers of a walk that held them all; the folder's own subfolder is gone at the end,
    and so is one that a process no longer running left there."""
    import imgsim_index.verify.rounds as rounds
    from imgsim_index.verify.spill import PREFIX

    rows, pairs = _scenes(tmp_path)
    described: list[int] = []
    real = rounds._describe
    monkeypatch.setattr(rounds, "_describe", lambda t: described.append(t[0]) or real(t))
    whole = verify_pairs(rows, pairs, VerifySettings(workers=0))
    assert sorted(described) == list(range(27))
    described.clear()
    again = verify_pairs(rows, pairs, VerifySettings(workers=0, memory_bytes=16 << 20))
    assert len(described) > 27  # parts: images described again without a spill folder
    spill = tmp_path / "spill"
    (spill / f"{PREFIX}999999999-gone_abc").mkdir(parents=True)  # no such process
    (spill / f"{PREFIX}999999999-gone_abc" / "3.pickle").write_bytes(b"old")
    (spill / "kept").mkdir()  # not ours
    written: list[int] = []
    real_put = rounds.Spill.put
    monkeypatch.setattr(rounds.Spill, "put",
                        lambda self, k, f: written.append(k) or real_put(self, k, f))
    described.clear()
    spilled = verify_pairs(rows, pairs, VerifySettings(workers=0, memory_bytes=16 << 20,
                                                       spill_dir=str(spill)))
    assert written and sorted(described) == list(range(27))  # each image described once
    forked = verify_pairs(rows, pairs, VerifySettings(
        workers=2, fork=rounds.can_fork(), memory_bytes=16 << 20, spill_dir=str(spill)))
    for v in (again, spilled, forked):
        assert (v.match, v.evidence, v.compared) == (whole.match, whole.evidence,
                                                     whole.compared)
        assert [x.numbers for x in v.pairs] == [x.numbers for x in whole.pairs]
    assert sorted(p.name for p in spill.iterdir()) == ["kept"]


def test_dedupe_keeps_images_dropped_for_room_beside_the_index(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lite0) -> None:  # type: ignore[no-untyped-def]
    """`dedupe --memory-budget` small enough to verify in parts: the images dropped for
    room wait in a folder inside the index's, removed at the end; the report is that of a
    dedupe with room for every image."""
    import imgsim_index.verify.rounds as rounds

    d = tmp_path / "scenes"
    d.mkdir()
    _scenes(d, 16)  # 48 images: about 19 fit the 32 MiB left to verification
    parents: list[str] = []
    real_put = rounds.Spill.put
    monkeypatch.setattr(rounds.Spill, "put",
                        lambda self, k, f: parents.append(self.parent) or real_put(self, k, f))
    idx = tmp_path / "idx"
    args = ["dedupe", str(d), "--index", str(idx), "--model", "efficientnet-lite0",
            "--verify-workers", "0", "--output"]
    whole = report_of(cli_ok(*args, str(tmp_path / "a")))
    assert not parents
    parts = report_of(cli_ok(*args, str(tmp_path / "b"), "--memory-budget", "64M"))
    assert parents and set(parents) == {str(idx)}
    assert not [p for p in idx.iterdir() if p.name.startswith("verify-spill-")]
    for key in ("similar_pairs", "near_misses", "groups"):
        assert parts[key] == whole[key]


def test_a_spilled_file_is_read_back_only_with_the_bytes_written(tmp_path: Path) -> None:
    """A spill file swapped for another's, or changed, is never unpickled: take() gives
    None (the image is described again); the walk's own files read back whole."""
    from imgsim_index.verify.features import describe
    from imgsim_index.verify.settings import DEFAULT
    from imgsim_index.verify.spill import Spill

    feats = [describe(np.asarray(photo(40 + k)), None, DEFAULT) for k in range(3)]
    spill = Spill(str(tmp_path))
    for k, f in enumerate(feats):
        spill.put(k, f)
    assert spill.dir is not None and spill.written == 3
    files = [Path(spill.dir) / f"{k}.pickle" for k in range(3)]
    files[1].write_bytes(files[0].read_bytes())  # another row's description
    data = bytearray(files[2].read_bytes())
    data[len(data) // 2] ^= 1  # one bit changed, in the pixels
    files[2].write_bytes(bytes(data))
    assert spill.take(1) is None and spill.take(2) is None
    got = spill.take(0)
    assert got is not None and got.pixel_hash == feats[0].pixel_hash
    assert np.array_equal(got.grey, feats[0].grey)
    spill.close()
    assert not list(tmp_path.iterdir())


def test_stale_spill_folders_go_and_nothing_else(tmp_path: Path) -> None:
    """Only a folder named as a walk names it, of a process that no longer runs, holding
    only N.pickle files, is removed; odd names never stop a dedupe."""
    from imgsim_index.verify.spill import PREFIX, Spill

    if os.name != "posix":
        pytest.skip("stale folders are removed on POSIX only")
    gone = tmp_path / f"{PREFIX}999999999-abcd_123"  # no such process
    gone.mkdir()
    (gone / "3.pickle").write_bytes(b"old")
    photos = tmp_path / f"{PREFIX}999999999-holidays"  # a name like ours, not only ours
    photos.mkdir()
    (photos / "beach.jpg").write_bytes(b"jpeg")
    odd = [f"{PREFIX}99999999999999999999", f"{PREFIX}\u00b2-abcdefgh",
           f"{PREFIX}{os.getpid()}-abcdefgh"]  # huge, not ASCII digits, a live process
    for name in odd:
        (tmp_path / name).mkdir()
    Spill(str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([photos.name, *odd])
    assert (photos / "beach.jpg").read_bytes() == b"jpeg"


def test_a_spill_folder_that_cannot_be_written_describes_images_again(tmp_path: Path) -> None:
    rows, pairs = _scenes(tmp_path)
    whole = verify_pairs(rows, pairs, VerifySettings(workers=0))
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    for where in (not_a_folder, tmp_path / "missing"):
        v = verify_pairs(rows, pairs, VerifySettings(workers=0, memory_bytes=16 << 20,
                                                     spill_dir=str(where)))
        assert (v.match, v.evidence) == (whole.match, whole.evidence)
    assert not_a_folder.read_text() == "x" and not (tmp_path / "missing").exists()


def test_a_file_that_changes_between_two_readings_is_not_verified(tmp_path: Path) -> None:
    """Under a memory budget an image dropped for room is read again when a later round
    needs it: a file whose pixels changed since its first reading gets no verdict on its
    new content (the first verdicts stand; the later pairs are not verified)."""
    from imgsim_index.progress import NoProgress
    from imgsim_index.verify.rounds import CHANGED_ERROR

    rows, pairs = _scenes(tmp_path)
    victim = tmp_path / "0_moved.png"

    class ReplaceAfterTwo(NoProgress):
        done = 0

        def update(self, n: int = 1) -> None:
            self.done += n
            if self.done == 2:  # both of scene 0's first-round pairs are decided
                victim.write_bytes((tmp_path / "0_base.png").read_bytes())

    v = verify_pairs(rows, pairs, VerifySettings(workers=0, memory_bytes=16 << 20),
                     ReplaceAfterTwo())
    assert v.pairs[0].match == "copy" and v.pairs[1].match == "other_shot"
    assert v.pairs[2].match == "not_verified"  # 0_copy and 0_moved, read again
    assert v.pairs[2].evidence == f"could not read it for verification ({CHANGED_ERROR})"
    assert v.errors == {2: CHANGED_ERROR}


def test_forked_workers_by_default_where_the_platform_forks(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """fork with no worker count: one forked worker per core where the platform forks and
    there are two cores or more; threads elsewhere, and always with workers 0 or 1."""
    from imgsim_index.verify import rounds

    monkeypatch.setattr(rounds, "verify_threads", lambda: 4)
    monkeypatch.setattr(rounds, "can_fork", lambda: True)
    w = rounds._Workers(None, True)
    assert (w.fork, w.n_workers) == (True, 4)
    for workers in (0, 1):
        w = rounds._Workers(workers, True)
        assert not w.fork and not w._pooled(100)
    assert not rounds._Workers(None, False)._pooled(100)  # a library caller: threads
    monkeypatch.setattr(rounds, "verify_threads", lambda: 1)
    assert not rounds._Workers(None, True)._pooled(100)  # one core: this thread
    monkeypatch.setattr(rounds, "can_fork", lambda: False)
    monkeypatch.setattr(rounds, "verify_threads", lambda: 4)
    w = rounds._Workers(None, True)
    assert not w.fork and not w._pooled(100)  # macOS, Windows: threads


def test_a_forked_worker_takes_inherited_images_by_row_and_later_ones_whole() -> None:
    from imgsim_index.verify import rounds
    from imgsim_index.verify.features import describe

    a = describe(np.asarray(photo(5)))
    b = describe(np.asarray(moved(photo(5))))
    ms = VerifySettings().matching()
    rounds._inherited = {7: a}
    try:
        got = rounds._in_worker((0, 7, b, ms)).verdict
    finally:
        rounds._inherited = {}
        rounds._worker_images.clear()
    assert got == rounds._compare((0, a, b, ms)).verdict
    assert got.match == "other_shot"


def test_the_commands_forked_workers_give_the_report_of_one_thread(tmp_path: Path) -> None:
    """`dedupe FOLDER` at its defaults (forked workers on Linux) writes the report one
    thread writes, but for the run's times and index folder."""
    folder = tmp_path / "photos"
    folder.mkdir()
    _scenes(folder)
    reports = []
    for extra in ([], ["--verify-workers", "0"]):
        r = report_of(cli_ok("dedupe", str(folder), "--index", str(tmp_path / f"i{len(reports)}"),
                             "--output", str(tmp_path / f"out{len(reports)}"), "--model",
                             "efficientnet-lite0", "-q", *extra))
        assert r["verification"].pop("seconds") >= 0 and r["verification"]["compared"] >= 18
        reports.append({k: v for k, v in r.items()
                        if k not in ("timestamp", "timings_seconds", "index_path")})
    assert reports[0] == reports[1]
    assert reports[0]["number_of_near_misses"] >= 9


def test_a_worker_keeps_images_apart_by_content_digest_and_size() -> None:
    """The images a worker process keeps are keyed by decoded pixels, file digest and size:
    two files with the same pixels and other bytes stay two images (their pair is 'same
    decoded pixels', never 'same bytes')."""
    from imgsim_index.verify import rounds
    from imgsim_index.verify.features import describe

    rgb = np.asarray(photo(3))
    a, b = describe(rgb, "digest-a"), describe(rgb, "digest-b")
    rounds._worker_images.clear()
    assert rounds._seen(a) is a and rounds._seen(b) is b and rounds._seen(a) is a
    done = rounds._in_worker((0, a, b, VerifySettings().matching()))
    assert (done.verdict.match, done.verdict.evidence) == ("exact", "same decoded pixels")
    rounds._worker_images.clear()


class _KillsItsReader:
    """Unpickled, it ends the process that reads it (a worker process dying mid-round)."""

    def __reduce__(self):  # type: ignore[no-untyped-def]
        import os

        return (os._exit, (3,))


def test_a_worker_process_that_dies_leaves_the_round_to_threads() -> None:
    """A worker process that dies (killed, out of memory) breaks the pool: the round is
    compared again in threads of this process, with the same verdicts, and the pool is not
    used again."""
    import dataclasses

    from imgsim_index.verify import rounds
    from imgsim_index.verify.features import describe

    ms = VerifySettings().matching()
    a, b = describe(np.asarray(photo(4))), describe(np.asarray(moved(photo(4))))
    deadly = dataclasses.replace(a, sift_cache={"unused": _KillsItsReader()})
    features = {0: a, 1: b, 2: deadly}
    tasks = [(k, 0, 1, ms) for k in range(rounds.POOL_MIN_TASKS)]
    workers = rounds._Workers(2, False)
    try:
        got = workers.compare([(99, 2, 1, ms), *tasks], features)
        assert workers.broken and workers.threads is not None
        again = workers.compare(tasks, features)
    finally:
        workers.close()
    want = rounds._compare((0, a, b, ms)).verdict
    assert [d.pair for d in got] == [99, *range(len(tasks))]
    assert all(d.verdict == want for d in got + again)


def test_overlapping_verifications_give_blas_its_threads_back() -> None:
    """Two verifications that overlap (a server's requests: A starts, B starts, A ends, B
    ends) share one limit; when the last ends, every BLAS and OpenCV have their threads
    back. OpenCV runs in one thread meanwhile: its pool is not safe across the forks
    that compare pairs (a forked worker hung in SIFT)."""
    import cv2
    from threadpoolctl import threadpool_info

    from imgsim_index.verify.rounds import one_blas_thread

    def blas() -> list[int]:
        return [int(d["num_threads"]) for d in threadpool_info() if d["user_api"] == "blas"]

    before, cv_before = blas(), cv2.getNumThreads()
    a, b = one_blas_thread(), one_blas_thread()
    a.__enter__()
    b.__enter__()
    assert set(blas()) == {1} and cv2.getNumThreads() == 1
    a.__exit__(None, None, None)
    assert set(blas()) == {1} and cv2.getNumThreads() == 1
    b.__exit__(None, None, None)
    assert blas() == before and cv2.getNumThreads() == cv_before
