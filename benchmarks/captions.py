#!/usr/bin/env python3
"""Captions against verification: captioned copies, balls under captions, burnt-in timestamps.

usage: python benchmarks/captions.py [--only copies|balls|timestamps|small] [--json OUT]
       python benchmarks/captions.py --compare BASE.json THIS.json

On scikit-image's five sample photos (hard_edits.PHOTOS), every pair through `compare` in
both orders, with the code on the import path (run it with PYTHONPATH set to another tree
to measure that tree):
- copies: 12 caption styles (STYLES) x 4 encodings (JPEG 50, 70, 95; 50% size, JPEG 85)
  against the photo's JPEG: copies, counted when a copy both ways;
- balls: a ball frame (hard_edits.ball_frames, seeds 200-229) against a captioned copy
  of its photo (6 styles): other shots, counted when a copy in either order;
- timestamps: CCTV frames with a burnt-in clock that changes (white, plain or outlined):
  still frames are copies both ways, frames in which a ball moved are other shots;
- small (small_copies, small_balls, small_plain, small_frames): each photo resized to
  SMALL_WIDTHS px wide (INTER_AREA, JPEG 85) against its copy with one outlined line of
  caption (SMALL_STYLES, JPEG 85): copies both ways; a ball frame of the small photo
  (seeds 200-209) against its meme copy, against the small photo itself, and against
  the frame in which the ball moved: other shots. Small pictures have few block rows (a
  133 px high thumbnail: 8).
--json writes every pair's verdicts; --compare prints the pairs two such files disagree
on (won: a right verdict that the first file lacks; lost: the other way).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw

sys.path.append(str(Path(__file__).resolve().parents[1]))  # after PYTHONPATH: another tree
from benchmarks.hard_edits import PHOTOS, ball_frames, jpeg, meme, sample  # noqa: E402

WHITE = (255, 255, 255, 255)


def caption(rgb: np.ndarray, lines: list[str], size_div: int, fill: tuple[int, ...],
            stroke_div: int = 0, stroke: tuple[int, int, int] = (0, 0, 0),
            where: str = "bottom", bar: tuple[int, ...] | None = None, shadow: bool = False,
            alpha: int | None = None) -> np.ndarray:
    """rgb with `lines` of text a size_div-th of the height high, centred at the top or
    bottom or in the bottom right corner; outlined (a stroke_div-th of the size), on a
    bar, with a drop shadow or translucent (alpha) as asked."""
    im = Image.fromarray(rgb).convert("RGBA")
    layer = Image.new("RGBA", im.size, (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    h, w = im.height, im.width
    size = max(10, h // size_div)
    step = int(size * 1.15)
    y0 = {"bottom": h - h // 30 - len(lines) * step, "top": h // 30,
          "corner": h - h // 30 - size}[where]
    if bar is not None:
        d.rectangle((0, y0 - size // 4, w, y0 + len(lines) * step + size // 4), fill=bar)
    for i, text in enumerate(lines):
        tw = d.textlength(text, font_size=size)
        x = (w - tw) / 2 if where != "corner" else w - tw - w // 30
        y = y0 + i * step
        if shadow:
            d.text((x + size // 10, y + size // 10), text, fill=(0, 0, 0, 255), font_size=size)
        colour = fill if alpha is None else fill[:3] + (alpha,)
        outline = {"stroke_width": max(1, size // stroke_div),
                   "stroke_fill": stroke} if stroke_div else {}
        d.text((x, y), text, fill=colour, font_size=size, **outline)  # type: ignore[arg-type]
    return np.asarray(Image.alpha_composite(im, layer).convert("RGB"))


STYLES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "meme": meme,
    "meme_bottom": lambda im: caption(im, ["FINALLY PASSES"], 9, WHITE, 12),
    "white_thick": lambda im: caption(im, ["NOBODY:"], 7, WHITE, 6, where="top"),
    "white_large": lambda im: caption(im, ["BIG"], 4, WHITE, 12, where="top"),
    "white_2lines": lambda im: caption(im, ["ME EXPLAINING", "THE BUG"], 11, WHITE, 12),
    "yellow_sub": lambda im: caption(im, ["I told you it would rain today."], 16,
                                     (255, 230, 0, 255), 16),
    "black_on_white": lambda im: caption(im, ["Caption: a day out"], 14, (0, 0, 0, 255),
                                         bar=WHITE),
    "white_shadow": lambda im: caption(im, ["Summer 2019"], 10, WHITE, shadow=True),
    "small_white": lambda im: caption(im, ["photo by someone"], 22, WHITE, where="corner"),
    "red_outlined": lambda im: caption(im, ["SALE 50% OFF"], 9, (230, 20, 20, 255), 14,
                                       stroke=(255, 255, 255)),
    "watermark": lambda im: caption(im, ["SAMPLE"], 6, WHITE, alpha=110),
    "black_white_stroke": lambda im: caption(im, ["THE END"], 9, (0, 0, 0, 255), 12,
                                             stroke=(255, 255, 255), where="top"),
}
SMALL_STYLES = ("meme", "meme_bottom", "white_thick", "black_white_stroke")
SMALL_WIDTHS = (160, 200, 240, 280)
BALL_STYLES = ("meme", "white_thick", "white_large", "white_2lines", "yellow_sub",
               "black_on_white")


def _half(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    return jpeg(cv2.resize(rgb, (w // 2, h // 2), interpolation=cv2.INTER_AREA), 85)


ENCODINGS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "q50": lambda im: jpeg(im, 50), "q70": lambda im: jpeg(im, 70),
    "q95": lambda im: jpeg(im, 95), "half": _half}


def _copies(a: np.ndarray, b: np.ndarray) -> list[bool]:
    """Whether compare() calls a and b a copy (or exact), in each order."""
    from imgsim_index.verify import matching as mt

    fa, fb = mt.describe(a), mt.describe(b)
    return [mt.compare(fa, fb).match in ("exact", "copy"),
            mt.compare(fb, fa).match in ("exact", "copy")]


def _frame(rgb: np.ndarray, second: int, rng: np.random.Generator, outlined: bool,
           ball: tuple[int, int, int, tuple[int, ...]] | None) -> np.ndarray:
    """A CCTV frame of rgb: a white clock at the top left, a ball, sensor noise, JPEG 90."""
    im = Image.fromarray(rgb.copy())
    d = ImageDraw.Draw(im)
    size = max(10, im.height // 24)
    outline = {"stroke_width": max(1, size // 12), "stroke_fill": (0, 0, 0)} if outlined else {}
    d.text((im.height // 40, im.height // 40),
           f"2026-12-07 14:{second // 60:02d}:{second % 60:02d}", fill=(255, 255, 255),
           font_size=size, **outline)  # type: ignore[arg-type]
    out = np.asarray(im).copy()
    if ball is not None:
        x, y, r, colour = ball
        cv2.circle(out, (x, y), r, colour, -1, lineType=cv2.LINE_AA)
    noisy = out.astype(np.int16) + rng.integers(-2, 3, out.shape)
    return jpeg(np.clip(noisy, 0, 255).astype(np.uint8), 90)


def _small(name: str, rgb: np.ndarray, out: dict[str, dict[str, list[bool]]]) -> None:
    """The small sets of one photo (module docstring)."""
    h, w = rgb.shape[:2]
    for width in SMALL_WIDTHS:
        small = cv2.resize(rgb, (width, round(h * width / w)), interpolation=cv2.INTER_AREA)
        plain = jpeg(small)
        for style in SMALL_STYLES:
            out["small_copies"][f"{name}|w{width}|{style}"] = _copies(
                plain, jpeg(STYLES[style](small)))
        copy = jpeg(meme(small))
        for seed in range(200, 210):
            frame, moved = ball_frames(small, seed)
            out["small_balls"][f"{name}|w{width}|{seed}"] = _copies(frame, copy)
            out["small_plain"][f"{name}|w{width}|{seed}"] = _copies(frame, plain)
            out["small_frames"][f"{name}|w{width}|{seed}"] = _copies(frame, moved)


def run(only: str | None) -> dict[str, dict[str, list[bool]]]:
    """Every pair's verdicts (copy or exact, in each order) per set."""
    out: dict[str, dict[str, list[bool]]] = {
        "copies": {}, "balls": {}, "timestamps": {}, "small_copies": {}, "small_balls": {},
        "small_plain": {}, "small_frames": {}}
    for name in PHOTOS:
        rgb = sample(name)
        if only in (None, "small"):
            _small(name, rgb, out)
        plain = jpeg(rgb)
        for style, edit in STYLES.items():
            captioned = edit(rgb)
            if only in (None, "copies"):
                for enc, encode in ENCODINGS.items():
                    out["copies"][f"{name}|{style}|{enc}"] = _copies(plain, encode(captioned))
            if only in (None, "balls") and style in BALL_STYLES:
                copy = jpeg(captioned)
                for seed in range(200, 230):
                    out["balls"][f"{name}|{style}|{seed}"] = _copies(
                        ball_frames(rgb, seed)[0], copy)
        if only in (None, "timestamps"):
            h, w = rgb.shape[:2]
            for k in range(6):
                rng = np.random.default_rng(k)
                start = int(rng.integers(0, 3000))
                r = max(4, round(0.025 * w))
                x, y = int(rng.integers(2 * r, w - 6 * r)), int(rng.integers(h // 6, h - 2 * r))
                colour = tuple(int(v) for v in rng.integers(0, 256, 3))
                out["timestamps"][f"{name}|still|{k}"] = _copies(
                    _frame(rgb, start, rng, k % 2 == 1, None),
                    _frame(rgb, start + 1 + k, rng, k % 2 == 1, None))
                out["timestamps"][f"{name}|ball|{k}"] = _copies(
                    _frame(rgb, start, rng, k % 2 == 1, (x, y, r, colour)),
                    _frame(rgb, start + 1, rng, k % 2 == 1, (x + 3 * r, y, r, colour)))
        print(name, file=sys.stderr, flush=True)
    return out


def right(kind: str, key: str, verdicts: list[bool]) -> bool:
    """Whether a pair's verdicts are right: copies both ways for captioned copies and
    still frames, no copy in either order for balls."""
    if kind in ("copies", "small_copies") or (kind == "timestamps" and "|still|" in key):
        return all(verdicts)
    return not any(verdicts)


def summary(res: dict[str, dict[str, list[bool]]]) -> str:
    lines = []
    for kind, pairs in res.items():
        if not pairs:
            continue
        by: dict[str, list[int]] = {}
        for key, verdicts in pairs.items():
            group = key.split("|")[1]
            by.setdefault(group, [0, 0])
            by[group][0] += right(kind, key, verdicts)
            by[group][1] += 1
        ok = sum(v[0] for v in by.values())
        lines.append(f"{kind}: right {ok}/{len(pairs)} ("
                     + ", ".join(f"{g} {a}/{n}" for g, (a, n) in by.items()) + ")")
    return "\n".join(lines)


def compare_files(base: Path, this: Path) -> str:
    a, b = json.loads(base.read_text()), json.loads(this.read_text())
    lines = []
    for kind in a:
        for key in a[kind]:
            if key in b.get(kind, {}):
                was, now = right(kind, key, a[kind][key]), right(kind, key, b[kind][key])
                if was != now:
                    lines.append(f"{'won ' if now else 'lost'} {kind} {key}")
    return "\n".join(lines) or "the same verdicts"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=("copies", "balls", "timestamps", "small"))
    ap.add_argument("--json", type=Path, help="write every pair's verdicts here")
    ap.add_argument("--compare", nargs=2, type=Path, metavar=("BASE", "THIS"))
    args = ap.parse_args()
    if args.compare:
        print(compare_files(*args.compare))
        return
    import imgsim_index

    print(f"code: {Path(imgsim_index.__file__).parent}", file=sys.stderr)
    res = run(args.only)
    print(summary(res))
    if args.json:
        args.json.write_text(json.dumps(res, indent=0))


if __name__ == "__main__":
    main()
