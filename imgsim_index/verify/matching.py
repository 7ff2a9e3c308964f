"""Pair verification: is a candidate pair the same capture (exact / copy) or another shot?

The method, for two described images (features.describe), in the order compare() runs it:

1. ``exact``: equal content digest (the same bytes), or equal shape and equal pixel hash
   (the same decoded pixels). Nothing else is looked at.
2. Flat images (flat_verdict): a blank page is a copy only of a blank page of the same
   colour; anything with content is another picture. No alignment can tell flat images
   apart, so they are settled first.
3. Alignment (align.py): maps from B's thumbnail to A's are found by strategies tried
   cheapest first (content-box sketches, ECC refinement, SIFT keypoints and their mirror
   image, a template search, ECC again, local tone curves), each map checked as it is
   found; the search stops at the first map that passes.
4. The check of a map (check.py): the image with the smaller footprint is warped onto the
   other; the sharper one is blurred to match; each is predicted from the other through
   monotone tone curves per colour class (residual.py, tone.py), and the residual is
   judged per 16-px block where both have content. Blocks far above the noise differ;
   thin wide bands of them are a text overlay, caption strokes near the top or bottom are
   caption text; a hue check stops a recolouring from passing as a tone change; a curve
   that is a pure gain is an exposure change at any strength. Each map is first checked
   at a quarter and half size, where a clear result settles it.
5. The verdict: ``copy`` when the best map passes, with evidence naming how B was made
   from A (evidence.py: mirrored, rotated, resized, cropped, borders, tone, blur, text);
   else ``other_shot`` with the share of the overlap that differs, or "no alignment".

Why this order: most candidate pairs are exact or simple copies that the first steps
settle in a millisecond; keypoints (the costly step) are computed only for the pairs that
need them, and the residual check, not the alignment, decides every verdict, so a
strategy that finds a wrong map cannot make a copy of two other shots. All thresholds are
in settings.py.
"""

from __future__ import annotations

from imgsim_index.verify.align import align
from imgsim_index.verify.evidence import copy_notes, copy_sentence, sentence
from imgsim_index.verify.features import Features, describe, is_flat
from imgsim_index.verify.settings import DEFAULT, MatchSettings
from imgsim_index.verify.verdict import Verdict

__all__ = ["DEFAULT", "Features", "MatchSettings", "Verdict", "compare", "describe",
           "flat_verdict", "is_flat"]


def _rgb_words(f: Features) -> str:
    return "RGB " + "/".join(f"{v:.0f}" for v in f.mean_rgb)


def flat_verdict(a: Features, b: Features, settings: MatchSettings = DEFAULT) -> Verdict | None:
    """The verdict of a pair where either image is flat; None when neither is. A flat image
    is a copy only of a flat image of the same colour: anything with content is another
    picture, however little of it there is."""
    flat_a, flat_b = is_flat(a, settings), is_flat(b, settings)
    if not (flat_a or flat_b):
        return None
    if flat_a and flat_b:
        diff = max(abs(x - y) for x, y in zip(a.mean_rgb, b.mean_rgb, strict=True))
        nums = {"flat_colour_diff": diff}
        if diff <= settings.flat_colour_tol:
            return Verdict("copy", f"blank images of the same colour ({_rgb_words(a)})", nums)
        return Verdict("other_shot", f"blank images of different colours ({_rgb_words(a)} and "
                       f"{_rgb_words(b)})", nums)
    flat, full = ("A", "B") if flat_a else ("B", "A")
    return Verdict("other_shot", f"{flat} is blank ({_rgb_words(a if flat_a else b)}), "
                   f"{full} has content", {})


def compare(a: Features, b: Features, settings: MatchSettings = DEFAULT) -> Verdict:
    """Verdict for a candidate pair (deterministic)."""
    v = _compare(a, b, settings)
    return Verdict(v.match, v.evidence, {k: float(x) for k, x in v.numbers.items()})


def _compare(a: Features, b: Features, settings: MatchSettings) -> Verdict:
    if a.digest is not None and a.digest == b.digest:
        return Verdict("exact", "same bytes")
    if a.shape == b.shape and a.pixel_hash == b.pixel_hash:
        return Verdict("exact", "same decoded pixels")
    flat = flat_verdict(a, b, settings)
    if flat is not None:
        return flat
    found = align(a, b, settings)
    if not found.tried:
        return Verdict("other_shot", "no alignment", found.numbers)
    best = max(found.tried, key=lambda t: (t.check.copy, t.check.score))
    chk = best.check
    nums = {**found.numbers, **chk.numbers, "aligned_by_sketch": float(best.source == "sketch")}
    if chk.copy:
        chk.numbers.update(nums)
        notes = copy_notes(a, b, best.map, chk.numbers, chk.notes)
        return Verdict("copy", copy_sentence(notes), {**chk.numbers})
    if chk.numbers.get("overlap", 1.0) < settings.min_overlap and best.source == "sift":
        return Verdict("other_shot", f"no alignment ({sentence(chk.notes)})", nums)
    why = f"other shot: {chk.differing:.0%} of the overlap differs"
    return Verdict("other_shot", ", ".join([why, sentence(chk.notes)]) if chk.notes else why,
                   nums)
