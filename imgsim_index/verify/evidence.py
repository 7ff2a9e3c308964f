"""Evidence: what a comparison found, kept as structured notes and put into words once.

A check (check.py) and the description of a copy (copy_notes) produce Notes: a kind and
its values. sentence() formats a list of them into the evidence of a verdict; nothing
reads the words back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from imgsim_index.verify.features import Features
from imgsim_index.verify.geometry import box_corners
from imgsim_index.verify.settings import (
    BORDER_NAMED,
    CENTRED_TOL,
    CROP_MIN_SHARE,
    CROP_MIN_SHARE_FILLED,
    GREY_COLOURFUL,
    GREY_MAX_COLOURFUL,
    NOISE_NAMED,
    RESIZE_NAMED,
    TONE_NAMED,
    TURN_NAMED_DEG,
    TURN_WHOLE_DEG,
)

# each kind of note and its words (str.format of the note's values)
WORDS = {
    # a check's findings (check.py)
    "overlap_low": "overlap only {0:.0%}",
    "flat_overlap": "flat where they overlap: nothing to verify",
    "too_small": "too small",
    "overlap_small": "overlap too small",
    "small_change": "something small appears, moves or vanishes",
    "region": "a region covering {0:.0%} of the picture differs",
    "throughout": "the pixels differ throughout",
    "light": "the light differs more than an edit would change it",
    "colours": "the colours differ",
    "overlay": "text or an overlay on {0:.0%} of the picture",
    "local_tone": "tone changed locally",
    "detail": "their fine detail differs (smooth pictures that only look alike)",
    "slanted": "aligning them would turn one and squash it, which no edit does",
    # how a copy was made (copy_notes)
    "mirrored": "mirrored",
    "rotated": "rotated {0} deg",
    "turned": "rotated {0:.0f} deg",
    "turned_slightly": "rotated {0:.1f} deg",
    "filled": "corners filled",
    "aspect": "B resized to {0:.0%} x {1:.0%} (aspect changed)",
    "b_resized": "B resized to {0:.0%}",
    "a_resized": "A resized to {0:.0%}",
    "centred_crop": "{0} is a centred crop of {1} ({2:.0%} trimmed off its width and height)",
    "b_cropped": "B cropped {0:.0%} on the {1}",
    "a_cropped": "A cropped {0:.0%} on the {1}",
    "borders_b": "borders added to B ({0:.0%})",
    "borders_a": "borders added to A ({0:.0%})",
    "grey": "converted to grey",
    "b_brighter": "B brighter/contrast/gamma changed",
    "b_darker": "B darker/contrast/gamma changed",
    "blurred": "{0} blurred",
    "noise": "re-encoded/noise",
}
SAME_PICTURE = "same picture, pixels differ slightly"  # a copy with nothing to name


@dataclass(frozen=True)
class Note:
    """One finding: a kind of WORDS and the values its words show."""

    kind: str
    values: tuple[Any, ...] = ()

    def words(self) -> str:
        return WORDS[self.kind].format(*self.values)


def sentence(notes: list[Note]) -> str:
    """The notes in words, in their order, comma separated."""
    return ", ".join(n.words() for n in notes)


def _crop_notes(a: Features, b: Features, m: np.ndarray, nums: dict[str, float],
                min_share: float) -> list[Note]:
    """Crop shares per side: parts of one content box that the other lacks (named from
    `min_share`); a crop of all four sides, even on each axis, is one centred crop."""
    pa = box_corners(b.box) @ np.vstack([m, [0, 0, 1]]).T
    bx0, by0 = pa[:, 0].min(), pa[:, 1].min()
    bx1, by1 = pa[:, 0].max(), pa[:, 1].max()
    ax0, ay0, ax1, ay1 = a.box
    uw = max(ax1, bx1) - min(ax0, bx0)
    uh = max(ay1, by1) - min(ay0, by0)
    sides = {"left": (bx0 - ax0) / uw, "right": (ax1 - bx1) / uw,
             "top": (by0 - ay0) / uh, "bottom": (ay1 - by1) / uh}
    for side, v in sides.items():
        nums[f"crop_{side}"] = float(v)  # > 0: B lacks this side of A; < 0: A lacks it
    for who, sign in (("B", 1.0), ("A", -1.0)):
        cut = {side: sign * v for side, v in sides.items()}
        if min(cut.values()) > min_share and abs(cut["left"] - cut["right"]) <= CENTRED_TOL \
                and abs(cut["top"] - cut["bottom"]) <= CENTRED_TOL:
            share = (cut["left"] + cut["right"] + cut["top"] + cut["bottom"]) / 2
            return [Note("centred_crop", (who, "A" if who == "B" else "B", share))]
    return [Note("b_cropped", (v, side)) if v > 0 else Note("a_cropped", (-v, side))
            for side, v in sides.items() if abs(v) > min_share]


def _turn_notes(nums: dict[str, float]) -> list[Note]:
    """Mirroring and turns: a right angle, then what is left of the rotation."""
    notes = [Note("mirrored")] if nums["mirrored"] else []
    rot = nums["rotation_deg"]
    r90 = round(rot / 90.0) * 90
    if r90 % 360:
        notes.append(Note("rotated", (r90 % 360,)))
    if abs(rot - r90) > TURN_NAMED_DEG:
        small = rot - r90
        notes.append(Note("turned" if abs(small) >= TURN_WHOLE_DEG else "turned_slightly",
                          (small,)))
    return notes


def _size_notes(a: Features, b: Features, m: np.ndarray, nums: dict[str, float]) -> list[Note]:
    """Resizing: B's size relative to A, per axis when the aspect changed."""
    rel = nums["scale"] * b.scale / a.scale  # A px per B px
    nums["size_ratio"] = 1.0 / rel  # B linear size relative to A
    # B's width and height relative to what they show of A (a map with a scale per axis)
    bx, by = (a.scale / (float(np.hypot(*m[:, i])) * b.scale) for i in (0, 1))
    nums["size_ratio_x"], nums["size_ratio_y"] = bx, by
    if abs(np.log(bx / by)) > RESIZE_NAMED:
        return [Note("aspect", (bx, by))]
    if abs(1.0 / rel - 1.0) > RESIZE_NAMED:  # name the smaller one: "A resized to 60%"
        return [Note("b_resized", (1.0 / rel,)) if rel > 1.0 else Note("a_resized", (rel,))]
    return []


def _border_notes(a: Features, b: Features, nums: dict[str, float]) -> list[Note]:
    trim_a = 1 - (a.box[2] - a.box[0]) * (a.box[3] - a.box[1]) / a.grey.size
    trim_b = 1 - (b.box[2] - b.box[0]) * (b.box[3] - b.box[1]) / b.grey.size
    nums["border_a"], nums["border_b"] = trim_a, trim_b
    if trim_b > BORDER_NAMED and trim_b > trim_a + BORDER_NAMED:
        return [Note("borders_b", (trim_b,))]
    if trim_a > BORDER_NAMED and trim_a > trim_b + BORDER_NAMED:
        return [Note("borders_a", (trim_a,))]
    return []


def _tone_notes(a: Features, b: Features, nums: dict[str, float]) -> list[Note]:
    notes = []
    if (a.colourful > GREY_COLOURFUL) != (b.colourful > GREY_COLOURFUL) \
            and min(a.colourful, b.colourful) < GREY_MAX_COLOURFUL:
        notes.append(Note("grey"))
    if nums.get("tone_dev", 0.0) > TONE_NAMED:
        # tone_shift maps (warped) src onto dst; express it for B relative to A
        shift = nums["tone_shift"] if nums["scale"] >= 1.0 else -nums["tone_shift"]
        notes.append(Note("b_brighter" if shift < 0 else "b_darker"))
    if abs(nums.get("blur_sigma", 0.0)) > 0:
        softer = "A" if (nums["blur_sigma"] < 0) == (nums["scale"] >= 1.0) else "B"
        notes.append(Note("blurred", (softer,)))
    return notes


def _lacks_shares(a: Features, b: Features, m: np.ndarray, nums: dict[str, float]) -> None:
    """lacks_a: the share of B's content box (mapped onto A by m) outside A's, what A lacks
    of B's picture; lacks_b: the share of A's that B's does not cover. A turned copy's
    filled corners are no picture: the fill's share of that image (fill_in, fill_share)
    is taken off. lacks_edge: the smaller box's perimeter over its area, in its own px
    (verdict.lacks allows LACK_EDGE_PX of its edge: a box edge is known to a pixel)."""
    q = (box_corners(b.box) @ np.vstack([m, [0, 0, 1]]).T)[:, :2].astype(np.float32)
    r = box_corners(a.box)[:, :2].astype(np.float32)
    area_q, area_r = float(cv2.contourArea(q)), float(cv2.contourArea(r))
    both = float(cv2.intersectConvexConvex(r, q)[0])
    fill = nums.get("fill_share", 0.0)
    fill_a, fill_b = (fill, 0.0) if nums.get("fill_in") == 1.0 else (
        (0.0, fill) if nums.get("fill_in") == 2.0 else (0.0, 0.0))
    nums["lacks_a"] = max(0.0, 1.0 - both / area_q - fill_b) if area_q > 0 else 0.0
    nums["lacks_b"] = max(0.0, 1.0 - both / area_r - fill_a) if area_r > 0 else 0.0
    # the smaller image in its own px: its thumbnail's scale back to the original
    w, h = min((((f.box[2] - f.box[0]) / f.scale, (f.box[3] - f.box[1]) / f.scale)
                for f in (a, b)), key=lambda s: s[0] * s[1])
    nums["lacks_edge"] = 2.0 * (w + h) / max(w * h, 1.0)


def copy_notes(a: Features, b: Features, m: np.ndarray, nums: dict[str, float],
               found: list[Note]) -> list[Note]:
    """How B was made from A (or A from B), from the map m (b px -> a px) that passed and
    its check's numbers `nums` (completed here: sizes, crops, borders) and notes `found`."""
    notes = _turn_notes(nums)
    filled = nums.get("fill_share", 0.0) > 0
    if filled:
        notes.append(Note("filled"))
    notes += _size_notes(a, b, m, nums)
    # the filled corners of a turned copy extend its frame a little: not a crop
    notes += _crop_notes(a, b, m, nums, CROP_MIN_SHARE_FILLED if filled else CROP_MIN_SHARE)
    notes += _border_notes(a, b, nums)
    _lacks_shares(a, b, m, nums)
    notes += _tone_notes(a, b, nums)
    notes += found
    if nums.get("block_median", 0.0) > NOISE_NAMED:
        notes.append(Note("noise"))
    return notes


def copy_sentence(notes: list[Note]) -> str:
    return sentence(notes) if notes else SAME_PICTURE
