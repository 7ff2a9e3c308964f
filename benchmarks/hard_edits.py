#!/usr/bin/env python3
"""A generated hard set for verification: seeded edits that are copies, and other shots that
look like copies, on scikit-image's sample photos (shipped with the package; no download).

usage: python benchmarks/hard_edits.py [--out DIR] [-v] [--folder] [--sweep] [--write-results]

Copies (each of a photo): a vignette, "meme" text (big white letters outlined in black at the
top and bottom), CLAHE on the L channel, detail enhancement (cv2.detailEnhance) and an unsharp
mask, and an exposure change (x1.4 and x0.6, clipped), each re-encoded as JPEG. Other shots:
two frames of a static camera in which a small ball moved (other moments) and a patch of the
photo moved elsewhere. Every labelled pair goes through `verify_pairs` with the code on the
import path (run it with PYTHONPATH set to another tree to measure that tree), in both
orders; prints the right verdicts per class, and with --write-results writes them to RESULTS.md.
The tests use the same edits (tests/test_matching.py).

--folder also runs `imgsim-index dedupe` on all the images as one folder (every candidate
pair of the set, a ball frame against the photo and its edits too) and scores its report:
copy verdicts against the truth (two images are copies when both are the photo or an edit
of it; a frame with a ball and a photo with a patch moved are other shots of everything),
and the files it would remove that are no copy of their group's keeper.

--sweep also counts verdicts beyond the labelled pairs (sweep()): ball frames of new seeds
(of a bright saturated ball too), a ball frame against every edit of its photo and (30
seeds) against its meme copy, each edit at other strengths, and small changes in textured
spots against the copies that pass with local tone.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry")


def sample(name: str) -> np.ndarray:
    """A scikit-image sample photo as HxWx3 uint8 RGB."""
    import skimage.data as skdata

    return np.ascontiguousarray(getattr(skdata, name)()[:, :, :3])


def vignette(rgb: np.ndarray, strength: float = 0.6) -> np.ndarray:
    """Corners darkened to (1 - strength) of their level, smoothly from the centre."""
    h, w = rgb.shape[:2]
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((x - w / 2) / (w / 2)) ** 2 + ((y - h / 2) / (h / 2)) ** 2
    gain = 1.0 - strength * np.clip(r2 / 2.0, 0, 1) ** 1.2
    return np.clip(rgb * gain[:, :, None], 0, 255).astype(np.uint8)


def meme(rgb: np.ndarray, top: str = "WHEN THE BUILD",
         bottom: str = "FINALLY PASSES") -> np.ndarray:
    """Big white text outlined in black across the top and the bottom."""
    im = Image.fromarray(rgb)
    h = im.height
    size = max(12, h // 9)
    d = ImageDraw.Draw(im)
    for text, y in ((top, h // 40), (bottom, h - h // 40 - size)):
        width = d.textlength(text, font_size=size)
        d.text(((im.width - width) / 2, y), text, fill=(255, 255, 255), font_size=size,
               stroke_width=max(2, size // 12), stroke_fill=(0, 0, 0))
    return np.asarray(im)


def clahe(rgb: np.ndarray) -> np.ndarray:
    """CLAHE (clip limit 2, 8x8 tiles) on the L channel of Lab."""
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)
    lab[:, :, 0] = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(lab[:, :, 0])
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)


def detail(rgb: np.ndarray) -> np.ndarray:
    """OpenCV's detail enhancement (edge-preserving filter, details boosted)."""
    return cv2.detailEnhance(rgb, sigma_s=10, sigma_r=0.15)


def unsharp(rgb: np.ndarray, amount: float = 1.5, sigma: float = 2.0) -> np.ndarray:
    blur = cv2.GaussianBlur(rgb.astype(np.float32), (0, 0), sigma)
    return np.clip(rgb + amount * (rgb - blur), 0, 255).astype(np.uint8)


def exposure(rgb: np.ndarray, factor: float) -> np.ndarray:
    return np.clip(rgb.astype(np.float32) * factor, 0, 255).astype(np.uint8)


COPIES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "vignette": vignette,
    "meme": meme,
    "clahe": clahe,
    "detail": detail,
    "unsharp": unsharp,
    "exposure_1.4": lambda im: exposure(im, 1.4),
    "exposure_0.6": lambda im: exposure(im, 0.6),
}


def jpeg(rgb: np.ndarray, q: int = 85) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, q])
    assert ok
    return np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1])


def ball_frames(rgb: np.ndarray, seed: int, radius: int | None = None,
                step: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Two frames of a static camera on `rgb` (sensor noise, JPEG) in which a small ball
    (radius about 2.5% of the width) moved by about 3 radii: another moment."""
    rng = np.random.default_rng(seed)
    h, w = rgb.shape[:2]
    r = radius or max(4, round(0.025 * w))
    move = step or 3 * r
    x0 = int(rng.integers(2 * r, w - 2 * r - move))
    y0 = int(rng.integers(2 * r, h - 2 * r))
    colour = tuple(int(v) for v in rng.integers(0, 256, 3))
    frames = []
    for x in (x0, x0 + move):
        f = rgb.copy()
        cv2.circle(f, (x, y0), r, colour, -1, lineType=cv2.LINE_AA)
        cv2.circle(f, (x - r // 3, y0 - r // 3), max(1, r // 4), (255, 255, 255), -1,
                   lineType=cv2.LINE_AA)  # a highlight: a ball, not a disc
        noisy = f.astype(np.int16) + rng.integers(-2, 3, f.shape)
        frames.append(jpeg(np.clip(noisy, 0, 255).astype(np.uint8), 90))
    return frames[0], frames[1]


def saturated_ball_frames(rgb: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """ball_frames with a bright saturated ball (a random hue at saturation 0.55-1 and full
    value: one channel at 255, clipped in both frames where the ball is), moved by 3 radii,
    without a highlight: a red, green or yellow object that moved between two frames."""
    import colorsys

    rng = np.random.default_rng(seed)
    h, w = rgb.shape[:2]
    r = max(4, round(0.025 * w))
    x0 = int(rng.integers(2 * r, w - 5 * r))
    y0 = int(rng.integers(2 * r, h - 2 * r))
    hsv = (float(rng.random()), float(rng.uniform(0.55, 1.0)), 1.0)
    colour = tuple(int(round(255 * c)) for c in colorsys.hsv_to_rgb(*hsv))
    frames = []
    for x in (x0, x0 + 3 * r):
        f = rgb.copy()
        cv2.circle(f, (x, y0), r, colour, -1, lineType=cv2.LINE_AA)
        noisy = f.astype(np.int16) + rng.integers(-2, 3, f.shape)
        frames.append(jpeg(np.clip(noisy, 0, 255).astype(np.uint8), 90))
    return frames[0], frames[1]


def patch_moved(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    out = rgb.copy()
    ph, pw = h // 5, w // 5
    out[h // 4:h // 4 + ph, w // 3:w // 3 + pw] = rgb[h // 4:h // 4 + ph, w // 10:w // 10 + pw]
    return out


def textured_spots(rgb: np.ndarray, n: int = 3) -> list[tuple[int, int]]:
    """Centres (x, y) of the n most textured windows (grey std over a sixteenth of the
    width), at least two windows apart: where a small change hides best."""
    h, w = rgb.shape[:2]
    g = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    win = max(16, w // 16)
    mean = cv2.blur(g, (win, win))
    sd = np.sqrt(np.maximum(cv2.blur(g * g, (win, win)) - mean * mean, 0))
    spots = []
    for _ in range(n):
        inner = sd[win:-win, win:-win]
        y, x = np.unravel_index(int(np.argmax(inner)), inner.shape)
        y, x = int(y) + win, int(x) + win
        spots.append((x, y))
        sd[max(0, y - 2 * win):y + 2 * win, max(0, x - 2 * win):x + 2 * win] = 0
    return spots


def textured_changes(rgb: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """Small changes where the photo is most textured (textured_spots): at each spot the
    word SOLD (white or red, a sixteenth of the height) and a ball of the spot's own colour
    (radius 2% of the width); and ball frames (ball_frames, seeds 1000-1002). Each is
    another picture than any edit of the photo (JPEG q 90)."""
    h, w = rgb.shape[:2]
    out = []
    for k, (x, y) in enumerate(textured_spots(rgb)):
        im = Image.fromarray(rgb.copy())
        ImageDraw.Draw(im).text((x - w // 16, y - h // 32), "SOLD",
                                fill=(255, 255, 255) if k % 2 else (200, 20, 20),
                                font_size=max(12, h // 16))
        out.append((f"word{k}", jpeg(np.asarray(im), 90)))
        ball = rgb.copy()
        cv2.circle(ball, (x, y), max(6, round(0.02 * w)), tuple(int(v) for v in rgb[y, x]),
                   -1, lineType=cv2.LINE_AA)
        out.append((f"ball{k}", jpeg(ball, 90)))
    out += [(f"frame{s}", ball_frames(rgb, 1000 + s)[0]) for s in range(3)]
    return out


def pairs() -> list[tuple[str, str, np.ndarray, np.ndarray, bool]]:
    """(photo, class, A, B, is a copy) for every labelled pair of the set."""
    out = []
    for k, name in enumerate(PHOTOS):
        rgb = sample(name)
        for cls, edit in COPIES.items():
            out.append((name, cls, rgb, jpeg(edit(rgb)), True))
        for s in range(3):
            a, b = ball_frames(rgb, 100 * k + s)
            out.append((name, "moved_ball", a, b, False))
        out.append((name, "patch_moved", rgb, jpeg(patch_moved(rgb)), False))
    return out


def _what(path: str) -> tuple[str, str]:
    """(photo, what the file shows): "photo" for the photo and its edits (the a side of
    each pair, the b side of a copy class), else the file's own name (its own picture)."""
    n, name, rest = Path(path).stem.split("_", 2)
    cls, side = rest.rsplit("_", 1)
    plain = cls in COPIES or (cls == "patch_moved" and side == "a")
    return name, "photo" if plain else Path(path).stem


def folder_scores(root: Path, work: Path) -> str:
    """`imgsim-index dedupe ROOT` (this tree's code, one thread) scored against _what."""
    import json
    import os
    import subprocess
    import time

    out = work / "results"
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "imgsim_index", "dedupe", str(root), "--index",
                    str(work / "index"), "--model", "efficientnet-lite0", "--output", str(out),
                    "--verify-workers", "0", "-q"], check=False, capture_output=True,
                   env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    wall = time.perf_counter() - t
    report = json.loads(next(out.glob("*/report.json")).read_text())
    said = {True: [0, 0], False: [0, 0]}  # truth -> [copy verdicts, pairs]
    for p in report["similar_pairs"] + report["near_misses"]:
        a, b = _what(p["image1"]), _what(p["image2"])
        truth = a == b and a[1] == "photo"
        said[truth][0] += p["match"] in ("copy", "exact")
        said[truth][1] += 1
    right = wrong = 0
    for g in report["groups"]:
        for m in g["removable"]:
            ok = _what(m) == _what(g["keeper"]) and _what(m)[1] == "photo"
            right, wrong = right + ok, wrong + (not ok)
    tp, fp = said[True][0], said[False][0]
    return (f"\n\nAs one folder (`dedupe`, {wall:.1f} s wall, verification "
            f"{report['timings_seconds'].get('verify', 0):.1f} s in one thread): "
            f"{said[True][1]} candidate pairs of copies, {said[False][1]} of other shots; copy "
            f"verdicts right {tp}, wrong {fp} (precision {tp / max(tp + fp, 1):.3f}, recall "
            f"{tp / max(said[True][1], 1):.3f}); files it would remove: {right} copies of "
            f"their keeper, {wrong} not")


def _both_copies(a: np.ndarray, b: np.ndarray) -> tuple[bool, bool]:
    """Whether compare() calls a and b a copy (or exact), in each order."""
    from imgsim_index.verify import matching as mt

    fa, fb = mt.describe(a), mt.describe(b)
    return (mt.compare(fa, fb).match in ("exact", "copy"),
            mt.compare(fb, fa).match in ("exact", "copy"))


def _clahe_clip(clip: float) -> Callable[[np.ndarray], np.ndarray]:
    def edit(rgb: np.ndarray) -> np.ndarray:
        lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)
        lab[:, :, 0] = cv2.createCLAHE(clipLimit=clip, tileGridSize=(8, 8)).apply(lab[:, :, 0])
        return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
    return edit


def _detail(sigma_s: float, sigma_r: float) -> Callable[[np.ndarray], np.ndarray]:
    return lambda rgb: cv2.detailEnhance(rgb, sigma_s=sigma_s, sigma_r=sigma_r)


def _vignette(strength: float) -> Callable[[np.ndarray], np.ndarray]:
    return lambda rgb: vignette(rgb, strength)


STRENGTHS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    **{f"vignette {s}": _vignette(s) for s in (0.5, 0.6, 0.7, 0.8, 0.9)},
    **{f"CLAHE clip {c}": _clahe_clip(c) for c in (1.5, 2.0, 3.0, 5.0)},
    **{f"detail {s}/{r}": _detail(s, r) for s, r in ((10, 0.15), (20, 0.3), (40, 0.5))},
    "vignette 0.6 + exposure x1.3": lambda rgb: exposure(vignette(rgb, 0.6), 1.3),
}
# the copies that pass only with local tone curves, against which textured_changes are judged
LOCAL_TONE_COPIES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    **{k: COPIES[k] for k in ("vignette", "clahe", "detail")},
    **{k: STRENGTHS[k] for k in ("CLAHE clip 3.0", "vignette 0.7")},
}


def sweep() -> str:
    """Verdicts beyond the labelled pairs, in both orders (compare() in this thread): ball
    frames of new seeds (1000-1009) at two radii, frames of a bright saturated ball
    (saturated_ball_frames, seeds 1000-1019), a ball frame against each edit of its
    photo (seeds 1000-1002) and against its meme copy (seeds 200-229), small changes in
    textured spots against the copies that pass with local tone (all two pictures, never
    a copy), and each edit at other strengths (copies)."""
    balls = [0, 0]
    saturated = [0, 0]
    mixed = [0, 0]
    kept: dict[str, list[int]] = {k: [0, 0] for k in STRENGTHS}
    textured: dict[str, list[int]] = {k: [0, 0] for k in LOCAL_TONE_COPIES}
    under_meme = [0, 0]
    for name in PHOTOS:
        rgb = sample(name)
        w = rgb.shape[1]
        for seed in range(1000, 1010):
            for share in (0.025, 0.015):
                balls[0] += any(_both_copies(*ball_frames(rgb, seed, max(4, round(share * w)))))
                balls[1] += 1
        for seed in range(1000, 1020):
            saturated[0] += any(_both_copies(*saturated_ball_frames(rgb, seed)))
            saturated[1] += 1
        for seed in range(1000, 1003):
            frame = ball_frames(rgb, seed)[0]
            for edit in COPIES.values():
                mixed[0] += any(_both_copies(frame, jpeg(edit(rgb))))
                mixed[1] += 1
        for label, edit in STRENGTHS.items():
            kept[label][0] += sum(_both_copies(rgb, jpeg(edit(rgb))))
            kept[label][1] += 2
        meme_copy = jpeg(meme(rgb))
        for seed in range(200, 230):
            under_meme[0] += any(_both_copies(ball_frames(rgb, seed)[0], meme_copy))
            under_meme[1] += 1
        changes = textured_changes(rgb)
        for label, edit in LOCAL_TONE_COPIES.items():
            copy = jpeg(edit(rgb))
            for _, changed in changes:
                textured[label][0] += any(_both_copies(changed, copy))
                textured[label][1] += 1
    lines = ["\n\nSweep (`--sweep`): pairs called a copy in either order, which are other "
             f"shots: new ball seeds {balls[0]}/{balls[1]}; bright saturated balls (a "
             f"channel at 255, seeds 1000-1019) {saturated[0]}/{saturated[1]}; a ball frame "
             "against an edit "
             f"of its photo {mixed[0]}/{mixed[1]}; a ball frame (seeds 200-229) against "
             f"the meme copy of its photo {under_meme[0]}/{under_meme[1]}. Copies kept at "
             "other strengths "
             f"(both orders, {len(PHOTOS)} photos):", "",
             "| edit | copies kept |", "|---|---|"]
    lines += [f"| {label} | {ok}/{total} |" for label, (ok, total) in kept.items()]
    total = [sum(v[i] for v in kept.values()) for i in (0, 1)]
    lines.append(f"| all | {total[0]}/{total[1]} |")
    lines += ["", "A word or a ball in a textured spot, or a ball frame (textured_changes), "
              "against a copy that passes with local tone: pairs called a copy in either "
              "order, which are other shots:", "", "| copy | changes passed as copies |",
              "|---|---|"]
    lines += [f"| {label} | {ok}/{total} |" for label, (ok, total) in textured.items()]
    total = [sum(v[i] for v in textured.values()) for i in (0, 1)]
    lines.append(f"| all | {total[0]}/{total[1]} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", help="folder for the images (default: a temporary one)")
    ap.add_argument("--write-results", action="store_true")
    ap.add_argument("-v", "--verbose", action="store_true", help="print each wrong verdict")
    ap.add_argument("--folder", action="store_true",
                    help="also dedupe the images as one folder and score the report")
    ap.add_argument("--sweep", action="store_true",
                    help="also new ball seeds, ball frames against edits, edit strengths")
    args = ap.parse_args()
    from imgsim_index.index.catalog import Row
    from imgsim_index.search import Pairs
    from imgsim_index.verify import VerifySettings, verify_pairs

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.out or tmp)
        root.mkdir(parents=True, exist_ok=True)
        labelled = pairs()
        rows, ij = [], []
        for n, (name, cls, a, b, _) in enumerate(labelled):
            for side, im in (("a", a), ("b", b)):
                path = root / f"{n:03d}_{name}_{cls}_{side}.png"
                Image.fromarray(im).save(path, compress_level=1)
                rows.append(Row(id=len(rows) + 1, path=str(path), root=str(root), size=None,
                                mtime_ns=None, width=None, height=None, status="ok", error=None,
                                segment="s", added_at=0.0, seq=1, digest=None))
            ij.append((2 * n, 2 * n + 1))
        idx = np.array(ij, np.int64)
        settings = VerifySettings(workers=0)
        score = np.full(len(idx), 0.9)
        v = [verify_pairs(rows, Pairs(idx[:, 0], idx[:, 1], score), settings),
             verify_pairs(rows, Pairs(idx[:, 1], idx[:, 0], score), settings)]
        folder = folder_scores(root, Path(tmp)) if args.folder else ""
    tally: dict[str, list[int]] = {}
    for n, (name, cls, _, _, copy) in enumerate(labelled):
        for order in v:
            got = order.match[n] in ("exact", "copy")
            t = tally.setdefault(cls, [0, 0])
            t[0] += int(got == copy)
            if got != copy and args.verbose:
                print(f"{name} {cls}: {order.match[n]}: {order.evidence[n]}")
            t[1] += 1
    lines = ["| class | truth | right verdicts (both orders) |", "|---|---|---|"]
    for cls, (ok, total) in tally.items():
        truth = "copy" if cls in COPIES else "other shot"
        lines.append(f"| {cls} | {truth} | {ok}/{total} |")
    kept = sum(t[0] for c, t in tally.items() if c in COPIES)
    n_copies = sum(t[1] for c, t in tally.items() if c in COPIES)
    wrong = sum(t[1] - t[0] for c, t in tally.items() if c not in COPIES)
    n_other = sum(t[1] for c, t in tally.items() if c not in COPIES)
    secs = v[0].seconds + v[1].seconds
    lines.append(f"\ncopies kept {kept}/{n_copies}, other shots passed as copies "
                 f"{wrong}/{n_other}; {secs:.1f} s for {2 * len(idx)} verdicts")
    text = "\n".join(lines) + folder + (sweep() if args.sweep else "")
    print(text)
    if args.write_results:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from benchmarks.results_file import this_command, update_section

        update_section("hard-edits", "Verification on generated hard edits", this_command(),
                       text)


if __name__ == "__main__":
    main()
