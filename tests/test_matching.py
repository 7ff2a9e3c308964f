"""Tests of verify/matching.py on generated copies of a scikit-image sample photo."""

from __future__ import annotations

import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data as skdata  # noqa: E402
from conftest import _load_script
from PIL import Image, ImageDraw

from imgsim_index.verify import matching as mt
from imgsim_index.verify.check import verify_map


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return np.ascontiguousarray(skdata.astronaut())


@pytest.fixture(scope="module")
def base(photo: np.ndarray) -> mt.Features:
    return mt.describe(photo)


def jpeg(rgb: np.ndarray, q: int = 80) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, q])
    assert ok
    return np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1])


def check(base: mt.Features, rgb: np.ndarray, match: str, *words: str) -> mt.Verdict:
    v = mt.compare(base, mt.describe(rgb))
    assert v.match == match, v
    for w in words:
        assert w in v.evidence, v
    return v


def test_exact_pixels(photo: np.ndarray, base: mt.Features) -> None:
    v = mt.compare(base, mt.describe(photo.copy()))
    assert v.match == "exact" and "pixels" in v.evidence


def test_exact_digest(photo: np.ndarray) -> None:
    a = mt.describe(photo, digest="abc")
    b = mt.describe(jpeg(photo), digest="abc")
    assert mt.compare(a, b).match == "exact"


def test_mirrored(photo: np.ndarray, base: mt.Features) -> None:
    check(base, np.ascontiguousarray(photo[:, ::-1]), "copy", "mirrored")


def test_rot90(photo: np.ndarray, base: mt.Features) -> None:
    check(base, np.ascontiguousarray(np.rot90(photo)), "copy", "rotated")


def test_resized_reencoded(photo: np.ndarray, base: mt.Features) -> None:
    small = cv2.resize(photo, (170, 170), interpolation=cv2.INTER_AREA)
    v = check(base, jpeg(small, 60), "copy", "resized to 33%")
    assert abs(v.numbers["size_ratio"] - 1 / 3) < 0.02


def test_cropped(photo: np.ndarray, base: mt.Features) -> None:
    check(base, jpeg(photo[:, 51:]), "copy", "cropped 10% on the left")


def test_a_centred_crop_is_named_once(photo: np.ndarray, base: mt.Features) -> None:
    """12% off each side (astronaut is 512 px): one phrase, not four sides; the numbers stay."""
    v = check(base, jpeg(photo[61:451, 61:451]), "copy", "B is a centred crop of A (2")
    assert "on the left" not in v.evidence and "on the bottom" not in v.evidence, v
    assert all(0.1 < v.numbers[f"crop_{s}"] < 0.14 for s in ("left", "right", "top", "bottom"))


def test_other_shot_evidence_is_plain_words(photo: np.ndarray, base: mt.Features) -> None:
    half = np.where(np.arange(512)[None, :, None] < 256, photo, 255 - photo).astype(np.uint8)
    moved = photo.copy()
    moved[128:256, 160:288] = photo[128:256, 100:228]
    for other, words in ((half, "the pixels differ throughout"),
                         (moved, "something small appears, moves or vanishes")):
        v = check(base, other, "other_shot", words)
        for jargon in ("residual", "text/overlay", "blocks differ", "grey levels", " deg)",
                       " on 0%", ".", "region of"):
            assert jargon not in v.evidence, v
        assert v.numbers["block_median"] >= 0 and "strong_blocks" in v.numbers  # kept


def test_grey(photo: np.ndarray, base: mt.Features) -> None:
    g = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)
    check(base, np.repeat(g[:, :, None], 3, axis=2), "copy", "grey")


def test_gamma(photo: np.ndarray, base: mt.Features) -> None:
    lut = np.clip(255 * (np.arange(256) / 255) ** 1.4 + 0.5, 0, 255).astype(np.uint8)
    check(base, lut[photo], "copy", "darker")


def test_letterbox(photo: np.ndarray, base: mt.Features) -> None:
    out = np.zeros((512 + 128, 512, 3), np.uint8)
    out[64:576] = photo
    check(base, out, "copy", "borders added to B")


def test_patch_moved(photo: np.ndarray, base: mt.Features) -> None:
    moved = photo.copy()
    moved[128:256, 160:288] = photo[128:256, 100:228]
    check(base, moved, "other_shot", "other shot")


def test_unrelated(base: mt.Features) -> None:
    rng = np.random.default_rng(0)
    noise = cv2.GaussianBlur(rng.integers(0, 255, (300, 400, 3), dtype=np.uint8), (0, 0), 2)
    v = check(base, noise, "other_shot", "no alignment")
    assert v.numbers.get("inliers", 0) < mt.DEFAULT.min_inliers


def test_features_picklable(base: mt.Features) -> None:
    again = pickle.loads(pickle.dumps(base))
    assert mt.compare(base, again).match == "exact"


def test_deterministic(photo: np.ndarray, base: mt.Features) -> None:
    b = mt.describe(jpeg(np.ascontiguousarray(np.rot90(photo[40:, :]))))
    assert mt.compare(base, b) == mt.compare(base, b)


def test_settings_validate() -> None:
    mt.MatchSettings().validate()
    with pytest.raises(ValueError, match="ratio"):
        mt.MatchSettings(ratio=1.5).validate()


def smooth(seed: int, size: tuple[int, int] = (96, 72)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (6, 6, 3), dtype=np.uint8)).resize(
        size, Image.Resampling.BICUBIC)


@pytest.mark.parametrize(("seed", "size", "degrees", "fill"), [
    (1, (96, 72), 2, None), (2, (640, 480), 2, None), (1, (640, 480), 3, (255, 255, 255))])
def test_turned_copy_with_filled_corners(seed: int, size: tuple[int, int], degrees: int,
                                         fill: tuple[int, int, int] | None) -> None:
    """A copy turned a few degrees without growing the canvas: the filled corners are the
    edit's (a smooth picture has no keypoints, so the alignment is refined by ECC)."""
    im = smooth(seed, size)
    turned = im.rotate(degrees, resample=Image.Resampling.BILINEAR,
                       **({"fillcolor": fill} if fill else {}))
    turned = turned.resize((round(size[0] * 90 / 96), round(size[1] * 68 / 72)))
    v = mt.compare(mt.describe(np.asarray(im)), mt.describe(jpeg(np.asarray(turned), 90)))
    assert v.match == "copy", v
    assert v.evidence.startswith(f"rotated {degrees} deg, corners filled, B resized to 9"), v
    assert "cropped" not in v.evidence and v.numbers["fill_share"] > 0


def test_turned_copy_aligned_without_keypoints(photo: np.ndarray) -> None:
    """A copy turned by 2 degrees is aligned by refining the sketches' map (ECC): no SIFT."""
    a = mt.describe(photo, sift=False)
    turned = cv2.warpAffine(photo, cv2.getRotationMatrix2D((255.5, 255.5), 2.0, 1.0), (512, 512))
    b = mt.describe(jpeg(turned, 90), sift=False)
    v = mt.compare(a, b)
    assert v.match == "copy" and "rotated 2 deg" in v.evidence, v
    assert "inliers" not in v.numbers
    assert a.sift_cache == {} and b.sift_cache == {}


def test_moved_subject_rejected_at_half_size(photo: np.ndarray) -> None:
    """A clear other shot fails the half-size check; the sketch map, confirmed by ECC, needs
    no keypoints; the same verdict as with the coarse check and ECC confirmation off."""
    moved = photo.copy()
    moved[128:256, 160:288] = photo[128:256, 100:228]
    a, b = mt.describe(photo, sift=False), mt.describe(moved, sift=False)
    v = mt.compare(a, b)
    assert v.match == "other_shot" and v.numbers["coarse"] == 1.0, v
    assert a.sift_cache == {} and b.sift_cache == {}
    full = mt.MatchSettings(coarse_margin=0.0, ecc_confirm_px=0.0)
    w = mt.compare(mt.describe(photo), mt.describe(moved), full)
    assert w.match == "other_shot" and "coarse" not in w.numbers, w
    with pytest.raises(ValueError, match="coarse_margin"):
        mt.MatchSettings(coarse_margin=0.5).validate()


def _both_ways(x: np.ndarray, y: np.ndarray) -> tuple[str, str]:
    a, b = mt.describe(x), mt.describe(y)
    return mt.compare(a, b).match, mt.compare(b, a).match


def test_figure_entering_at_the_edge_is_another_shot_either_way(tmp_path: Path) -> None:
    """The README's CCTV clip: at 24 s a figure walks in at the left edge of the quiet scene
    of 17-22 s. One tone curve fitted from the frame with the figure maps its grey levels
    onto the background there and hides it; the check predicts each frame from the other,
    so the order of the two never matters."""
    from imgsim_index.ingest.video import frame_path, read_frame

    clip = tmp_path / "cam1.avi"
    assert _load_script("make_cctv_clip").write_clip(str(clip), seconds=30)[:2] == [
        (0, 7), (17, 22)]
    quiet, walk = (np.asarray(read_frame(frame_path(str(clip), ms)).convert("RGB"))
                   for ms in (22000, 24000))
    assert _both_ways(quiet, walk) == ("other_shot", "other_shot")
    # and the quiet frames of that stretch stay copies of each other
    other = np.asarray(read_frame(frame_path(str(clip), 18000)).convert("RGB"))
    assert _both_ways(quiet, other) == ("copy", "copy")


def test_gamma_per_channel_is_a_copy_either_way(photo: np.ndarray) -> None:
    """A gamma applied to each RGB channel moves grey levels by hue (a magenta and a green
    of one grey end up apart); tone curves per colour class keep it an edit both ways."""
    g = np.clip(255.0 * (photo / 255.0) ** 1.4 + 0.5, 0, 255).astype(np.uint8)
    assert _both_ways(photo, g) == ("copy", "copy")


def test_caption_over_a_photo_with_highlights_is_a_copy_either_way(photo: np.ndarray) -> None:
    """White text over the picture: the curve is refitted without it, so white highlights
    elsewhere are not bent towards the colours under the text, in either order."""
    texted = np.ascontiguousarray(photo.copy())
    cv2.putText(texted, "(c) 2024 sample", (20, 470), cv2.FONT_HERSHEY_SIMPLEX, 1.6,
                (255, 255, 255), 4)
    assert _both_ways(photo, jpeg(texted)) == ("copy", "copy")


def test_figure_in_a_night_scene_is_another_shot_either_way() -> None:
    """A dark figure on a black night background: where one frame is clipped black the
    residual counts beyond the other frame's spread there, so the figure is not excused
    as clipped shadow in either order."""
    rng = np.random.default_rng(1)

    def night(figure: bool) -> np.ndarray:
        g = np.clip(1.5 + rng.normal(0, 1.5, (480, 640)), 0, 255)
        cv2.rectangle(g, (400, 40), (560, 200), 170, -1)  # a lit window
        cv2.circle(g, (100, 80), 30, 220, -1)  # a lamp
        if figure:
            g[240:350, 250:290] = rng.uniform(30, 60, (110, 40))  # 1.4% of the frame
        return np.ascontiguousarray(np.repeat(g.astype(np.uint8)[:, :, None], 3, 2))

    assert _both_ways(night(True), night(False)) == ("other_shot", "other_shot")
    assert _both_ways(night(False), night(False)) == ("copy", "copy")


@pytest.mark.parametrize("colour", [(40, 200, 60), (230, 200, 40), (40, 60, 230)])
def test_recoloured_subject_in_a_grey_scene_is_another_shot(photo: np.ndarray,
                                                            colour: tuple[int, int, int]) -> None:
    """A red subject becomes green, yellow or blue in an otherwise grey picture: each hue
    has its own tone curve, which could map the subject's levels onto anything, so blocks
    coloured in both images whose hue moved by more than 45 degrees differ."""
    g = photo.astype(np.float32).mean(axis=2)
    yy, xx = np.mgrid[0:g.shape[0], 0:g.shape[1]]
    m = ((yy - 300) / 60.0) ** 2 + ((xx - 250) / 45.0) ** 2 < 1  # about 3% of the picture

    def subject(col: tuple[int, int, int]) -> np.ndarray:
        im = np.repeat(g[:, :, None], 3, axis=2)
        im[m] = np.outer(0.5 + 0.5 * g[m] / 255.0, col)
        return np.clip(im, 0, 255).astype(np.uint8)

    assert _both_ways(subject((230, 40, 40)), jpeg(subject(colour))) == ("other_shot",
                                                                         "other_shot")
    assert _both_ways(subject((230, 40, 40)), jpeg(subject((230, 40, 40)))) == ("copy", "copy")


def test_a_flat_overlap_verifies_nothing() -> None:
    """A blank page and the page with a faint 10 px signature: compare() judges them by
    their flatness before aligning (other shots), and a map whose overlap is flat, in one
    image or both, is no evidence of a copy either (the signature's grey std is 0.6)."""
    page = Image.new("RGB", (800, 600), (250, 250, 250))
    signed = page.copy()
    ImageDraw.Draw(signed).text((520, 540), "Signed: J. Smith", fill=(200, 200, 200),
                                font_size=10)
    a, b = mt.describe(np.asarray(page)), mt.describe(np.asarray(signed))
    assert float(b.grey.std()) < mt.DEFAULT.flat_std and mt.is_flat(a) and not mt.is_flat(b)
    v = mt.compare(a, b)
    assert (v.match, v.evidence) == ("other_shot", "A is blank (RGB 250/250/250), B has content")
    same = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    for x, y in ((a, b), (b, a), (a, a)):
        chk = verify_map(x, y, same, mt.DEFAULT)
        assert not chk.copy and chk.words == ["flat where they overlap: nothing to verify"]


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 6])
def test_a_small_ball_that_moved_between_two_frames_is_another_shot(photo: np.ndarray,
                                                                   seed: int) -> None:
    """Two frames of a static camera in which a small ball (radius 2.5% of the width, 0.3%
    of the blocks at each place) moved: under the shares a copy may differ by, but its
    pixels differ by far in a solid blob (seed 0: a grey ball on the black background,
    which is clipped in one frame only; seed 2: the two places lie in one row, as a short
    text band would, but two solid blobs are no line of text)."""
    from benchmarks.hard_edits import ball_frames

    assert _both_ways(*ball_frames(photo, seed)) == ("other_shot", "other_shot")


@pytest.mark.parametrize(("name", "seed"), [
    ("astronaut", 1001), ("chelsea", 1009), ("immunohistochemistry", 1000),
    ("chelsea", 1003), ("immunohistochemistry", 1009), ("immunohistochemistry", 1031),
    ("chelsea", 1035)])
def test_a_ball_of_one_and_a_half_percent_of_the_width_that_moved_is_another_shot(
        name: str, seed: int) -> None:
    """A smaller ball (radius 1.5% of the width: 7-8 px on the thumbnail, about 0.05% of
    the overlap at each place) that moved between two frames: a magenta ball on the black
    ground of the astronaut photo, brown balls over chelsea's fur and the stained tissue.
    Its solid blob is under the 0.08% of the overlap that used to be asked of new content,
    so the first three were copies; the next two were passed at a quarter of the size,
    where such a ball is 2 px wide (check._probe now looks at the thumbnails' size
    first), and so were the last two, balls of about the ground's grey in another colour
    (a yellow ball on the light tissue), until the probe looked for blobs of another
    colour too."""
    from benchmarks.hard_edits import ball_frames, sample

    rgb = sample(name)
    frames = ball_frames(rgb, seed, round(0.015 * rgb.shape[1]))
    assert _both_ways(*frames) == ("other_shot", "other_shot")


def test_a_map_a_coarse_size_finds_a_block_differing_in_goes_on_to_the_full_size() -> None:
    """Rocket, seed 301: a dark blue ball moved over the sky and the tower. At a quarter of
    the size it is a few pixels wide and leaves one differing block, under every share a
    copy may differ by, so the coarse check passed the map as a copy; a coarse size now
    passes a map only where no block differs, and the full size sees the ball."""
    from benchmarks.hard_edits import ball_frames, sample

    assert _both_ways(*ball_frames(sample("rocket"), 301)) == ("other_shot", "other_shot")


@pytest.mark.parametrize("seed", [0, 1])
def test_local_tone_is_not_tried_where_only_a_small_change_fails_the_map(
        photo: np.ndarray, seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ball that moved fails the global check on its compact strong change alone, within
    every share, median and tone limit: local tone curves are not fitted over it (they
    could only hide it; at full size they cost a quarter of a second a map). A vignette,
    which fails the share limits, is still a copy through them."""
    import imgsim_index.verify.align as al
    from benchmarks.hard_edits import ball_frames, jpeg, vignette

    local: list[str] = []
    real = al.check_map

    def spy(*args, **kw):  # type: ignore[no-untyped-def]
        local.append(args[5] if len(args) > 5 else kw.get("local", ""))
        return real(*args, **kw)

    monkeypatch.setattr(al, "check_map", spy)
    a, b = (mt.describe(x) for x in ball_frames(photo, seed))
    v = mt.compare(a, b)
    assert v.match == "other_shot" and "something small appears" in v.evidence
    assert not any(local)
    v = mt.compare(mt.describe(photo), mt.describe(jpeg(vignette(photo))))
    assert v.match == "copy" and "tone changed locally" in v.evidence and any(local)


def _ball_frames_at(rgb: np.ndarray, colour: tuple[int, int, int], x: int, y: int,
                    r: int, step: int) -> tuple[np.ndarray, np.ndarray]:
    frames = []
    for cx in (x, x + step):
        f = rgb.copy()
        cv2.circle(f, (cx, y), r, colour, -1, lineType=cv2.LINE_AA)
        frames.append(jpeg(f))
    return frames[0], frames[1]


def test_a_ball_of_the_backgrounds_grey_in_another_colour_is_another_shot() -> None:
    """A ball whose grey level is the background's (no grey residual to speak of) but whose
    colour is not: a* b* of one frame predicted from the other's by one affine map leave it
    as a solid blob of another colour."""
    bg = np.zeros((384, 512, 3), np.uint8)
    bg[:] = (120, 120, 120)
    rng = np.random.default_rng(5)
    bg = np.clip(bg.astype(np.int16) + rng.integers(-30, 31, (384, 1, 1))
                 + np.linspace(-40, 40, 512)[None, :, None].astype(np.int16), 0, 255
                 ).astype(np.uint8)
    bg = cv2.GaussianBlur(bg, (0, 0), 2)
    bg[::24] = 40  # lines: something to align on
    grey = int(bg[200, 240].mean())
    green = (max(0, grey - 60), min(255, grey + 40), max(0, grey - 60))  # ~ the same grey
    a, b = _ball_frames_at(bg, green, 200, 200, 14, 50)
    assert _both_ways(a, b) == ("other_shot", "other_shot")
    ev = mt.compare(mt.describe(a), mt.describe(b))
    assert ev.numbers["blob_blocks"] > 0 and ev.numbers["strong_blocks"] == 0


def test_a_copy_of_a_copy_with_a_tone_that_one_curve_misses_stays_a_copy() -> None:
    """Two edits of one photo (meme text; an exposure x0.6): where a colour's curve misses,
    the residual forms a blob, but the two images show the same structure there (they
    correlate), so it is no new content."""
    from benchmarks.hard_edits import COPIES, exposure
    from benchmarks.hard_edits import jpeg as jpeg85

    rocket = np.ascontiguousarray(skdata.rocket())
    assert _both_ways(jpeg85(COPIES["meme"](rocket)), jpeg85(exposure(rocket, 0.6))) == (
        "copy", "copy")


def test_clipped_channels_are_no_new_content(photo: np.ndarray) -> None:
    """A brightening clips channels per pixel (a green at 255 stays there while red and blue
    grow): the grey levels of such blocks differ by far from the tone curve's prediction,
    which is the edit's, not new content."""
    from benchmarks.hard_edits import exposure

    assert _both_ways(photo, jpeg(exposure(photo, 1.4))) == ("copy", "copy")


@pytest.mark.parametrize(("edit", "name"), [
    ("vignette", "rocket"), ("vignette", "immunohistochemistry"), ("vignette", "chelsea"),
    ("vignette", "coffee"), ("clahe", "coffee"), ("clahe", "rocket"), ("clahe", "chelsea"),
    ("clahe", "immunohistochemistry"),
    ("meme", "chelsea"), ("meme", "immunohistochemistry"), ("detail", "chelsea"),
    ("detail", "rocket"), ("exposure_0.6", "immunohistochemistry"),
    pytest.param("clahe", "astronaut", marks=pytest.mark.xfail(
        strict=True, reason="not handled yet: predicting the original from the CLAHE copy "
        "(CLAHE on L, not grey), blocks of saturated dark red and of skin stay far off the "
        "grey curves per tile; not counting them (they correlate 0.91 and more with their "
        "counterparts) let a ball or a word added to the photo pass against the CLAHE copy"))])
def test_local_tone_edits_meme_text_and_strong_exposure_are_copies(edit: str,
                                                                   name: str) -> None:
    """A vignette, CLAHE and detail enhancement change the tone differently over the picture
    (a smooth gain field explains a vignette, fine fur and dark corners included; curves
    per tile of an 8 x 8 grid, at the tiles' centres as CLAHE places them, explain the
    others); meme text is taller than a text line
    but text-like (white letters outlined in black at the top and bottom); x0.6 on a bright
    picture moves its levels by 65 on average, a pure gain."""
    from benchmarks.hard_edits import COPIES, sample

    rgb = sample(name)
    assert _both_ways(rgb, jpeg(COPIES[edit](rgb))) == ("copy", "copy")


def _photo_640x480(name: str) -> np.ndarray:
    """A scikit-image photo as a 640x480 JPEG (scaled to cover, centre cropped)."""
    from benchmarks.hard_edits import sample

    rgb = sample(name)
    h, w = rgb.shape[:2]
    f = max(640 / w, 480 / h)
    big = cv2.resize(rgb, (round(w * f), round(h * f)), interpolation=cv2.INTER_CUBIC)
    y0, x0 = (big.shape[0] - 480) // 2, (big.shape[1] - 640) // 2
    return jpeg(big[y0:y0 + 480, x0:x0 + 640], 92)


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea", "rocket"])
def test_a_squashed_resize_is_a_copy_either_way(name: str) -> None:
    """Dataset pipelines resize without keeping the aspect (640x480 -> 224x224): a scale per
    axis, which a similarity cannot express; the two content boxes map onto each other."""
    rgb = _photo_640x480(name)
    for size in ((300, 300), (224, 224), (1280, 480), (640, 960)):
        squashed = jpeg(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA))
        assert _both_ways(rgb, squashed) == ("copy", "copy"), size
    v = mt.compare(mt.describe(rgb), mt.describe(jpeg(cv2.resize(rgb, (224, 224)))))
    assert "B resized to 35% x 47% (aspect changed)" in v.evidence, v


def test_a_squashed_other_shot_is_still_another_shot() -> None:
    """A scale per axis is one more freedom, not a homography: a photo seen from another
    viewpoint (a perspective warp) and a patch moved elsewhere stay other shots, squashed."""
    from benchmarks.hard_edits import patch_moved

    rgb = _photo_640x480("coffee")
    h, w = rgb.shape[:2]
    corners = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    seen = np.float32([[0.06 * w, 0.06 * h], [0.94 * w, 0], [0.94 * w, h], [0.06 * w, 0.94 * h]])
    view = cv2.warpPerspective(rgb, cv2.getPerspectiveTransform(corners, seen), (w, h),
                               borderMode=cv2.BORDER_REFLECT)
    for other in (view, patch_moved(rgb)):
        squashed = jpeg(cv2.resize(other, (224, 224), interpolation=cv2.INTER_AREA))
        assert _both_ways(rgb, squashed) == ("other_shot", "other_shot")


def test_a_gain_field_is_recovered_and_cannot_follow_one_object() -> None:
    """GainField fits a smooth polynomial gain between two aligned images: a vignette-like
    field is found to within a hundredth, and a disc that moved (new content) neither
    bends the field nor is explained by it."""
    from imgsim_index.verify.tone import GainField

    rng = np.random.default_rng(5)
    h, w = 200, 300
    yy, xx = np.mgrid[0:h, 0:w]
    r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
    true = (1.0 - 0.3 * r2).astype(np.float32)
    src = rng.uniform(40, 220, (h, w)).astype(np.float32)
    dst = src * true
    disc = (yy - 100) ** 2 + (xx - 150) ** 2 < 15 ** 2
    dst[disc] = 250.0  # a bright object in the target only
    field, dev = GainField(np.ones((h, w), bool), 4).fit(src, dst)
    assert float(np.abs(field - true)[~disc].max()) < 0.01
    assert float(np.abs(src * field - dst)[disc].mean()) > 50  # the disc stays a residual
    assert 0.1 < dev < 0.3


def test_describe_means_and_clip_mask_are_numpys(photo: np.ndarray) -> None:
    # the mean colour is in a flat pair's evidence and numbers: the same bits as NumPy's
    rgb = photo.copy()
    rgb[:40] = 255
    rgb[40:60, :, 1] = 2
    f = mt.describe(rgb)
    small = cv2.resize(rgb, (f.grey.shape[1], f.grey.shape[0]), interpolation=cv2.INTER_AREA)
    assert f.mean_rgb == tuple(float(v) for v in small.reshape(-1, 3).mean(axis=0))
    # light: any channel at 252-255; dark: any at 0-3 in a pixel darker than grey 64
    dark = (small <= 3).any(axis=2) & (f.grey < 64)
    want = np.where((small >= 252).any(axis=2) | dark, 255, 0).astype(np.uint8)
    assert np.array_equal(f.clip, want) and want.any()
    assert (small[40:60] <= 3).any(axis=2).any() and not f.clip[
        (small <= 3).any(axis=2) & (f.grey >= 64)].any()  # a green at 2 in a light pixel


def test_a_ball_of_the_towers_grey_against_the_photo_is_another_shot() -> None:
    """The rocket frame (seed 301) whose ball sits over the tower at its grey level: only its
    colour tells it, a blob 1.67x the colour level (2x was asked: the frame was a copy of
    the photo, and as one folder it was proposed for removal). Against the photo's edits
    (a vignette, an unsharp mask, a JPEG) it is still a copy in one order or both."""
    from benchmarks.hard_edits import ball_frames, sample

    rgb = sample("rocket")
    _, frame = ball_frames(rgb, 301)
    assert _both_ways(frame, rgb) == ("other_shot", "other_shot")


def test_a_faint_ball_against_the_vignette_copy_is_another_shot() -> None:
    """A grey ball on chelsea (seed 202), faint: its blob's mean residual is 1.47x the
    strong level against the photo's vignette copy (1.5x was asked: the frame was a copy
    of the vignette copy, and as one folder it was proposed for removal)."""
    from benchmarks.hard_edits import COPIES, ball_frames, sample
    from benchmarks.hard_edits import jpeg as set_jpeg  # the set's encoder (OpenCV, q 85)

    rgb = sample("chelsea")
    frame, _ = ball_frames(rgb, 202)
    assert _both_ways(frame, set_jpeg(COPIES["vignette"](rgb))) == ("other_shot",
                                                                      "other_shot")


def test_an_object_added_to_a_photo_is_no_copy_of_its_clahe_copy() -> None:
    """A ball or a word added to the astronaut photo, against the photo's CLAHE copy: the
    local tone checks must not let them through (dropping the strong blocks of contrast
    the tile curves miss, which correlate with their counterparts, did: under local tone
    the added object's block is neither strong nor a blob)."""
    from benchmarks.hard_edits import COPIES, ball_frames, sample
    from benchmarks.hard_edits import jpeg as set_jpeg

    rgb = sample("astronaut")
    copy = set_jpeg(COPIES["clahe"](rgb))
    brown = rgb.copy()
    cv2.circle(brown, (97, 282), 13, (112, 91, 61), -1, lineType=cv2.LINE_AA)
    im = Image.fromarray(rgb.copy())
    ImageDraw.Draw(im).text((227, 89), "EXIT 42", fill=(255, 0, 0), font_size=20)
    for changed in (brown, np.asarray(im), *(ball_frames(rgb, 1000 + s)[0] for s in range(3))):
        assert _both_ways(set_jpeg(changed, 90), copy) == ("other_shot", "other_shot")


@pytest.mark.parametrize("edit", ["", "vignette", "meme", "detail", "unsharp"])
def test_a_saturated_ball_on_black_is_new_content(edit: str) -> None:
    """A magenta ball (green at 4) on the black ground of the astronaut photo: every pixel
    under it has a channel at 0-3, in one image or the other. Clipping hides only what it
    can explain: a channel at 0 in a light pixel is no shadow, and a black ground hides
    only the other image's dark levels, not a ball on it. Before, the photo and the frame
    with the ball were a copy, and so was the frame and every edit of the photo."""
    from benchmarks.hard_edits import COPIES, ball_frames, sample

    rgb = sample("astronaut")
    frame, _ = ball_frames(rgb, 1001)  # (209, 4, 130), radius 13 px, at (406, 307)
    other = jpeg(COPIES[edit](rgb)) if edit else rgb
    assert _both_ways(frame, other) == ("other_shot", "other_shot")


@pytest.mark.parametrize(("name", "seed"), [
    ("astronaut", 1002), ("coffee", 1013), ("chelsea", 1005), ("immunohistochemistry", 1006)])
def test_a_bright_saturated_ball_that_moved_is_another_shot(name: str, seed: int) -> None:
    """A ball of a bright saturated colour ((29, 255, 61), (255, 141, 38), (255, 82, 154),
    (81, 149, 255)) moved between two frames: every pixel under it has a channel at 255,
    so its colour was not judged at all (clipped), and its grey level alone did not stand
    out. Where the two frames have the same exposure, a pixel clipped in one image only
    and clearly coloured there is judged by the colour blobs. Before: a copy both ways
    (30 of 100 such pairs; benchmarks/RESULTS.md, hard edits)."""
    from benchmarks.hard_edits import sample, saturated_ball_frames

    assert _both_ways(*saturated_ball_frames(sample(name), seed)) == ("other_shot",
                                                                      "other_shot")


@pytest.mark.parametrize(("name", "seed"), [
    ("astronaut", 1009), ("astronaut", 1019), ("coffee", 1002), ("coffee", 1005)])
def test_a_saturated_ball_on_a_light_ground_is_another_shot(name: str, seed: int) -> None:
    """A bright saturated ball on a light ground (the astronaut's white suit, coffee's
    orange saucer: a channel at 200 or more under it, not clipped): the ball's pixels are
    clipped in one frame and light in the other, which a copy's resampled clipped colour
    is too, at its edge. Judged from two chroma px in from that edge, the ball's colour
    counts. Before: a copy in one order or both (with the chroma grid half a pixel off,
    coffee 1002 was caught only by the offset mask's ring)."""
    from benchmarks.hard_edits import sample, saturated_ball_frames

    assert _both_ways(*saturated_ball_frames(sample(name), seed)) == ("other_shot",
                                                                      "other_shot")


def test_a_vignettes_colours_follow_its_light() -> None:
    """A vignette (x0.4 in the corners) darkens the colours with the grey: a* b* scale
    with the light, which one affine map of the colours over the picture cannot follow
    (the astronaut's saturated corner leaves a colour blob). The colours scaled by the
    smooth light change (colour.light_change) leave none; as they are, the blob is
    there."""
    from benchmarks.hard_edits import jpeg as set_jpeg  # the set's encoder (OpenCV, q 85)
    from benchmarks.hard_edits import sample, vignette
    from imgsim_index.verify.colour import chroma_pair, colour_blobs

    rgb = sample("astronaut")
    photo, edited = mt.describe(rgb), mt.describe(set_jpeg(vignette(rgb)))
    pair = chroma_pair(edited, photo, np.array([[1.0, 0, 0], [0, 1.0, 0]]), True)
    grid = (32, 32)  # 16 px blocks of the 512 px thumbnail: 8 chroma px
    light = pair.light()
    assert float(light.max() / light.min()) > 1.4  # the light varies smoothly
    assert not colour_blobs(pair, 8, grid)[0].any()
    assert colour_blobs(pair._replace(light=lambda: np.ones_like(light)), 8, grid)[0].any()


@pytest.mark.parametrize("gain", [1.03, 0.95, 1.2])
def test_a_saturated_ball_that_moved_while_the_exposure_drifted_is_another_shot(
        gain: float) -> None:
    """The second frame a few percent lighter or darker (a camera's automatic exposure):
    a pure gain under CLIP_HIGH / CLIP_NEAR cannot clip a channel the other frame has
    under CLIP_NEAR, so the ball's clipped colour is judged as at one exposure. Before
    (tone curves within 3 levels of identity only): a copy both ways at x1.03."""
    from benchmarks.hard_edits import exposure, sample, saturated_ball_frames

    a, b = saturated_ball_frames(sample("astronaut"), 1002)
    assert _both_ways(a, jpeg(exposure(b, gain), 90)) == ("other_shot", "other_shot")


@pytest.mark.parametrize("gain", [1.4, 0.7])
def test_an_exposure_copy_of_a_frame_with_a_saturated_ball_is_a_copy(gain: float) -> None:
    """The same frame made lighter (the ball's and other saturated colours clip in the
    copy only) or darker (they are clipped in the original only): clipping an exposure
    change explains, which the colour blobs leave out as before."""
    from benchmarks.hard_edits import exposure, sample, saturated_ball_frames

    frame, _ = saturated_ball_frames(sample("astronaut"), 1002)
    assert _both_ways(frame, jpeg(exposure(frame, gain))) == ("copy", "copy")


def test_a_local_check_from_the_prepared_global_one_is_the_same(photo: np.ndarray) -> None:
    # a vignette: the local tone check of a map reuses what its global check prepared
    # and is judged the same as one made from nothing
    h, w = photo.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    fall = 1.0 - 0.6 * (((yy - h / 2) / h) ** 2 + ((xx - w / 2) / w) ** 2) * 2
    edited = np.clip(photo * fall[..., None], 0, 255).astype(np.uint8)
    a, b = mt.describe(photo), mt.describe(edited)
    m = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    from imgsim_index.verify.check import check_map

    prepared: dict = {}  # type: ignore[type-arg]
    first = check_map(a, b, m, mt.DEFAULT, {}, "", prepared)
    assert prepared  # the global check left its judgements
    for local in ("tiles", "field"):
        again = check_map(a, b, m, mt.DEFAULT, {}, local, prepared)
        fresh = check_map(a, b, m, mt.DEFAULT, {}, local, None)
        assert (again.copy, again.numbers, again.words) == (fresh.copy, fresh.numbers,
                                                            fresh.words)
    assert first.numbers.get("local_tone") is None


def test_batched_isotonic_fits_equal_pool_adjacent_violators() -> None:
    """The node curves fitted all at once (min-max form) are the loop's fits, row by row,
    with unused bins (weight 0) left out and the curves extended parallel to the identity."""
    from imgsim_index.verify.tone import _extend_rows, isotonic, isotonic_rows

    rng = np.random.default_rng(7)
    bins = 32
    w = rng.random((50, bins)) * 10
    w[rng.random((50, bins)) < 0.4] = 0.0  # levels a tile lacks
    w[3] = 0.0
    w[3, 17] = 2.0  # one used bin
    w[4, :] = 0.0
    w[4, [0, bins - 1]] = 1.0  # the outer bins only
    y = np.cumsum(rng.normal(4.0, 12.0, (50, bins)), axis=1)  # rising, with violations
    fits = isotonic_rows(y, w)
    curves = _extend_rows(fits, w > 0, bins)
    x = np.arange(256, dtype=np.float64)
    for r in range(50):
        used = w[r] > 0
        if not used.any():
            continue
        loop = isotonic(y[r][used], w[r][used])
        assert np.allclose(fits[r][used], loop, rtol=0, atol=1e-9)
        centres = (np.flatnonzero(used) + 0.5) * 256 / bins
        want = np.interp(x, centres, loop)
        want = np.where(x < centres[0], loop[0] + (x - centres[0]), want)
        want = np.where(x > centres[-1], loop[-1] + (x - centres[-1]), want)
        assert np.allclose(curves[r], want, rtol=0, atol=1e-9)
        assert np.all(np.diff(curves[r]) >= -1e-9)  # monotone


def test_a_speck_beside_an_object_that_moved_does_not_hide_it() -> None:
    """Two solid blobs (an object at its two places) and a speck just over the blob
    minimum: more than BLOB_MAX_COUNT blobs read as text, and hid the object once the
    minimum was lowered; only blobs of the old minimum's size count now."""
    from imgsim_index.verify.residual import solid_blobs
    from imgsim_index.verify.settings import BLOB_MIN_SHARE

    res = np.zeros((512, 512), np.float32)
    for centre, r in (((100, 100), 13), ((140, 100), 13), ((400, 400), 7)):
        cv2.circle(res, centre, r, 60.0, -1)
    found = solid_blobs(res, 20.0, None, 5, BLOB_MIN_SHARE * res.size, 1.4)
    assert found is not None and found[100, 100] == 1.0 and found[100, 140] == 1.0
    words = np.zeros((512, 512), np.float32)  # three letter-sized blobs: no new content
    for x in (100, 160, 220):
        cv2.circle(words, (x, 300), 13, 60.0, -1)
    assert solid_blobs(words, 20.0, None, 5, BLOB_MIN_SHARE * words.size, 1.4) is None


@pytest.mark.parametrize("k", range(8))
def test_a_dihedral_copys_colours_land_on_the_same_chroma_pixels(k: int) -> None:
    """A mirrored or turned lossless copy: its chroma, warped onto the original's chroma
    grid through the pair's map, equals the original's. The grey-to-chroma map takes
    pixel centres, as the maps do: taken by corners (x / 2), a mirror or turn landed
    half a chroma pixel off (all but the transpose, k = 5), and a small saturated detail
    left colour blobs, an other shot once the full size judged them."""
    from imgsim_index.verify.colour import chroma_pair
    from imgsim_index.verify.geometry import dihedral, dihedral_matrix

    rng = np.random.default_rng(3)
    img = cv2.resize(rng.integers(0, 256, (48, 64, 3)).astype(np.uint8), (640, 480),
                     interpolation=cv2.INTER_NEAREST)  # blocks of 10 px, random colours
    a, b = mt.describe(img), mt.describe(np.ascontiguousarray(dihedral(img, k)))
    inverse = {1: 3, 3: 1}.get(k, k)  # the map is of b's px onto a's
    pair = chroma_pair(a, b, dihedral_matrix(inverse, a.box, b.box), False)
    ab_d, ab_s, valid = pair.dst, pair.src, pair.valid
    assert valid.mean() > 0.95
    assert float(np.percentile(np.abs(ab_d - ab_s)[valid], 99)) < 2.0


def test_a_captions_letter_blobs_do_not_hide_an_object_beside_them() -> None:
    """Three letter-sized blobs in a caption's rows and a ball below them: many blobs read
    as text and hid the ball; with the rows skipped (what colour_blobs does with a
    caption's block rows) the letters neither count nor show, and a ball reaching out of
    the rows is judged whole, the part of it inside them included."""
    from imgsim_index.verify.residual import solid_blobs
    from imgsim_index.verify.settings import BLOB_MIN_SHARE

    res = np.zeros((512, 512), np.float32)
    for x in (100, 160, 220):
        cv2.circle(res, (x, 40), 13, 60.0, -1)  # letters in rows 0-63
    cv2.circle(res, (300, 70), 12, 60.0, -1)  # a ball from row 58 to 82
    min_px = BLOB_MIN_SHARE * res.size
    assert solid_blobs(res, 20.0, None, 5, min_px, 1.4) is None
    skip = np.zeros(res.shape, bool)
    skip[:64] = True
    found = solid_blobs(res, 20.0, None, 5, min_px, 1.4, skip=skip)
    assert found is not None
    assert found[70, 300] == 1.0 and found[60, 300] == 1.0  # the ball, whole
    assert found[40, 100] == 0.0 and found[40, 160] == 0.0 and found[40, 220] == 0.0


@pytest.mark.parametrize(("name", "seed"), [("chelsea", 205), ("rocket", 208),
                                            ("coffee", 205), ("chelsea", 229)])
def test_a_ball_beside_a_meme_copys_letters_is_new_content(name: str, seed: int) -> None:
    """A ball frame (ball_frames) whose ball lies in the rows of the meme copy's text,
    between or beside its letters, against the meme copy: two pictures, whichever is
    kept. The caption's rows were left out of the blobs whole, so the ball was not seen
    (a copy both ways before); now only the letters are (caption_letters). Colour blobs
    leave out the caption's rows only, not the rows beside them (chelsea 229: a green
    ball of the fur's grey just above the bottom text)."""
    from benchmarks.hard_edits import COPIES, ball_frames, sample
    from benchmarks.hard_edits import jpeg as set_jpeg

    rgb = sample(name)
    frame, _ = ball_frames(rgb, seed)
    assert _both_ways(frame, set_jpeg(COPIES["meme"](rgb))) == ("other_shot", "other_shot")


@pytest.mark.parametrize(("name", "seed", "width"), [("astronaut", 207, 240),
                                                    ("coffee", 203, 240),
                                                    ("astronaut", 200, 200)])
def test_a_ball_beside_a_small_meme_copys_text_is_new_content(name: str, seed: int,
                                                             width: int) -> None:
    """A ball frame of a small picture (ball_frames, 200-240 px wide) against the meme
    copy of that picture: two pictures, whichever is kept. The meme's letters made more
    colour blobs than BLOB_MAX_COUNT, so none counted and a ball clear of the text (a
    blue ball on the astronaut's flag) was a copy in one order at least; colour blobs
    wholly in a caption's rows are no longer counted."""
    from benchmarks.hard_edits import ball_frames, meme, sample
    from benchmarks.hard_edits import jpeg as set_jpeg

    rgb = sample(name)
    h, w = rgb.shape[:2]
    small = cv2.resize(rgb, (width, round(h * width / w)), interpolation=cv2.INTER_AREA)
    frame, _ = ball_frames(small, seed)
    assert _both_ways(frame, set_jpeg(meme(small))) == ("other_shot", "other_shot")


@pytest.mark.parametrize(("name", "seed"), [("astronaut", 202), ("immunohistochemistry", 200)])
def test_a_ball_in_a_small_picture_is_new_content(name: str, seed: int) -> None:
    """A ball frame of a 160 px picture (ball_frames: radius 4 px; a dark ball on the
    astronaut's light wall) against the picture itself: two pictures. The map passes at
    half size, where the ball is 2 px across and its blob's box correlates with the
    ground's edges: the full-size look (the probe), which sees it, is asked before a pass
    at half size too."""
    from benchmarks.hard_edits import ball_frames, sample
    from benchmarks.hard_edits import jpeg as set_jpeg

    rgb = sample(name)
    h, w = rgb.shape[:2]
    small = cv2.resize(rgb, (160, round(h * 160 / w)), interpolation=cv2.INTER_AREA)
    frame, _ = ball_frames(small, seed)
    assert _both_ways(frame, set_jpeg(small)) == ("other_shot", "other_shot")


def test_the_quickstarts_jpeg_60_copy_is_a_copy(tmp_path: Path) -> None:
    """scripts/make_samples.py's scene 18 and its JPEG 60 copy (the quickstart's set): a
    copy both ways. Re-encoding moved the edge of the flat margin under the picture by a
    row, so the content boxes' map is stretched 0.3% and one block of thin lines differs;
    the whole frames' map, a px from it, is the copy's (align.SketchMaps)."""
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "scripts" / "make_samples.py"
    subprocess.run([sys.executable, str(script), str(tmp_path)], check=True,
                   capture_output=True)
    images = tmp_path / "images"
    copy, original = (np.asarray(Image.open(p).convert("RGB")) for p in (
        images / "backup" / "scene_018_q60.jpg", images / "camera" / "scene_018.jpg"))
    assert _both_ways(copy, original) == ("copy", "copy")


@pytest.mark.xfail(strict=True, reason="not handled yet: the letters' colour blobs are "
                   "judged; leaving out the colour blobs on an overlay's line of text (its "
                   "box grown by a block) found these and 4 more captioned copies but let 3 "
                   "balls in a subtitle's line pass (benchmarks/RESULTS.md, the chroma grid "
                   "by pixel centres)")
@pytest.mark.parametrize("encoding", ["q70", "half"])
def test_a_translucent_watermarks_letters_are_no_colour_blobs(encoding: str) -> None:
    """coffee with a translucent white word over it (captions.py's watermark, alpha 110),
    JPEG 70 or halved: the letters pale the colours under them, colour blobs on the
    overlay's line of text. A copy at 38b77e7, where the chroma grid was half a pixel
    off; an other shot since the grid is by pixel centres."""
    from benchmarks.captions import ENCODINGS, STYLES
    from benchmarks.hard_edits import jpeg as set_jpeg
    from benchmarks.hard_edits import sample

    rgb = sample("coffee")
    copy = ENCODINGS[encoding](STYLES["watermark"](rgb))
    assert _both_ways(set_jpeg(rgb), copy) == ("copy", "copy")


@pytest.mark.parametrize(("name", "q"), [("astronaut", 50), ("rocket", 95),
                                         ("immunohistochemistry", 70)])
def test_meme_copies_stay_copies_with_their_letters_left_out(name: str, q: int) -> None:
    """Leaving out only a caption's letters keeps the meme copy a copy of its photo's JPEG,
    at a low JPEG quality too (thin outlines, whose anti-aliased edges a stroke rule
    missed)."""
    from benchmarks.hard_edits import COPIES, sample
    from benchmarks.hard_edits import jpeg as set_jpeg

    rgb = sample(name)
    assert _both_ways(set_jpeg(rgb), set_jpeg(COPIES["meme"](rgb), q)) == ("copy", "copy")


def test_a_captioned_copy_resized_to_half_is_a_copy() -> None:
    """The astronaut with one line of meme text at the bottom, resized to 50% (area
    average) and re-encoded, against the photo's JPEG: a copy both ways. The resize blurs
    the colour of the small mission patch, whose colour blobs the letters' own had
    drowned (more than BLOB_MAX_COUNT); once the letters' blobs no longer count, the
    larger image's colours are judged at the smaller one's resolution (band_limited)."""
    from benchmarks.hard_edits import jpeg as set_jpeg
    from benchmarks.hard_edits import sample

    rgb = sample("astronaut")
    im = Image.fromarray(rgb)
    size = im.height // 9
    d = ImageDraw.Draw(im)
    text = "FINALLY PASSES"
    d.text(((im.width - d.textlength(text, font_size=size)) / 2,
            im.height - im.height // 30 - int(size * 1.15)), text, fill=(255, 255, 255),
           font_size=size, stroke_width=size // 12, stroke_fill=(0, 0, 0))
    half = cv2.resize(np.asarray(im), (rgb.shape[1] // 2, rgb.shape[0] // 2),
                      interpolation=cv2.INTER_AREA)
    assert _both_ways(set_jpeg(rgb), set_jpeg(half)) == ("copy", "copy")


@pytest.mark.xfail(strict=True, reason="not handled yet: at 200 px the top line is not "
                   "recognised as a caption (its outlines too thin) and its letters make two "
                   "grey blobs; they passed only while the bottom line's letters made more "
                   "blobs than BLOB_MAX_COUNT (benchmarks/RESULTS.md, hard edits, third part)")
def test_a_small_meme_copy_is_a_copy() -> None:
    """The rocket at 200 x 133 px and its meme copy, each JPEG 85: a copy both ways on
    9c6966b, lost when a caption's letters, not its rows, were left out (a review lost 4
    of 731 generated copies: memes 160-300 px wide, and two differently captioned 512 px
    pictures, one halved)."""
    from benchmarks.hard_edits import jpeg as set_jpeg
    from benchmarks.hard_edits import meme, sample

    small = cv2.resize(sample("rocket"), (200, 133), interpolation=cv2.INTER_AREA)
    assert _both_ways(set_jpeg(small), set_jpeg(meme(small))) == ("copy", "copy")


@pytest.mark.xfail(strict=True, reason="not handled yet: a ball mostly under the letters "
                   "is left out with them (caption_letters); too little of it shows between "
                   "them for a blob (benchmarks/RESULTS.md, hard edits)")
def test_a_ball_under_a_meme_copys_text_is_new_content() -> None:
    """A frame of the chelsea photo with a ball (ball_frames seed 201, at about (134, 275),
    under the letters FI of the bottom text) against the photo's meme copy: two
    pictures, whichever is kept (ball frames against meme copies, seeds 200-229 on five
    photos: 23/150 called a copy). In the hard edits as one folder the pair is not
    compared while the meme copy is joined to the photo's group; once that group splits,
    it is, and the frame was proposed for removal with the meme copy as its keeper."""
    from benchmarks.hard_edits import COPIES, ball_frames, sample
    from benchmarks.hard_edits import jpeg as set_jpeg

    rgb = sample("chelsea")
    frame, _ = ball_frames(rgb, 201)
    assert _both_ways(frame, set_jpeg(COPIES["meme"](rgb))) == ("other_shot", "other_shot")


def test_smooth_look_alikes_are_other_shots_and_their_copies_copies() -> None:
    """Look-alikes of different seeds were copies (turned 25 deg and squashed along the
    turn, or mapped through local tone curves): among 25 of them with 3 copies each, 374
    copy verdicts between different pictures, 9 distinct files proposed for removal
    (benchmarks/lookalikes.py). Their fine detail (their own noise) does not correlate,
    and a squash along a slanted axis is no edit. Their JPEG and downscaled copies stay
    copies."""
    from benchmarks.hard_edits import jpeg
    from benchmarks.lookalikes import look_alike

    pics = [look_alike(seed) for seed in (1, 4, 15, 19, 21)]
    feats = [mt.describe(jpeg(p, 95)) for p in pics]
    for k in range(len(pics)):
        for other in range(k + 1, len(pics)):
            for x, y in ((feats[k], feats[other]), (feats[other], feats[k])):
                v = mt.compare(x, y)
                assert v.match == "other_shot", (k, other, v.evidence)
        small = cv2.resize(pics[k], (256, 192), interpolation=cv2.INTER_AREA)
        for copy in (jpeg(pics[k], 50), jpeg(small, 90)):
            assert mt.compare(feats[k], mt.describe(copy)).match == "copy"


def test_a_squash_with_a_large_turn_is_no_copy_edit() -> None:
    """stretch gives a map's anisotropy and its turn off the nearest right angle (the
    rotation of its polar decomposition): 25 deg with a 63% x 160% squash (what fitted
    smooth look-alikes) is refused; a turn alone, a squash alone or after a right-angle
    turn, and a skewed scan (turned 2-3 deg) squashed into a box are copy edits."""
    from imgsim_index.verify.geometry import stretch
    from imgsim_index.verify.settings import SQUASHED_TURN_MAX, STRETCH_MIN_ANISOTROPY

    def turned(deg: float) -> np.ndarray:
        t = np.radians(deg)
        return np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])

    zero = np.zeros((2, 1))
    aniso, turn = stretch(np.hstack([turned(-25.0) @ np.diag([0.63, 1.6]), zero]))
    assert aniso == pytest.approx(1.6 / 0.63) and turn == pytest.approx(25.0)
    assert aniso > STRETCH_MIN_ANISOTROPY and turn > SQUASHED_TURN_MAX
    assert stretch(np.hstack([1.2 * turned(25.0), zero]))[0] == pytest.approx(1.0)
    assert stretch(np.array([[1.6, 0.0, 3.0], [0.0, 0.63, 1.0]]))[1] == pytest.approx(0.0)
    assert stretch(np.array([[0.0, 1.33, 0.0], [0.75, 0.0, 0.0]]))[1] == pytest.approx(0.0)
    box = np.hstack([np.diag([300 / 640, 300 / 480]) @ turned(2.0), zero])
    assert stretch(box)[1] == pytest.approx(2.0)
    assert stretch(box)[1] < SQUASHED_TURN_MAX


def test_a_skewed_scan_squashed_into_a_box_is_a_copy() -> None:
    """A photo turned by 3 deg, then resized without keeping its aspect (a skewed scan
    forced into a fixed box): a turn with a squash, under SQUASHED_TURN_MAX."""
    from benchmarks.hard_edits import sample

    rgb = sample("astronaut")
    h, w = rgb.shape[:2]
    turned = cv2.warpAffine(rgb, cv2.getRotationMatrix2D((w / 2, h / 2), 3, 1.0), (w, h))
    boxed = cv2.resize(turned, (460, 512), interpolation=cv2.INTER_AREA)
    fa, fb = mt.describe(rgb), mt.describe(boxed)
    assert (mt.compare(fa, fb).match, mt.compare(fb, fa).match) == ("copy", "copy")
