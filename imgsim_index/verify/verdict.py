"""The verdict on one candidate pair: the one type every stage passes around."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from imgsim_index.verify.settings import LACK_EDGE_PX, LACK_MIN_SHARE

NOT_VERIFIED = "not_verified"  # the pair could not be checked: never grouped, never a copy
MATCHES = ("exact", "copy", "other_shot", NOT_VERIFIED)
KEPT = ("exact", "copy")  # the matches that group: duplicates

# which image of a copy lacks part of the other's picture (a crop), as bits: the first
# (A) lacks part of B's, and the other way round (groups/verified.py: a crop stands for
# no picture it was cut from)
LACKS_A, LACKS_B = 1, 2


def lacks(numbers: Mapping[str, float]) -> int:
    """The LACKS_A / LACKS_B bits of a copy verdict's numbers (A, B: the compared images
    in their order): an image lacks part of the other's picture where more than
    LACK_MIN_SHARE of the other's content box, and more than a band of LACK_EDGE_PX
    along the smaller box's edge, falls outside its own (lacks_a, lacks_b, lacks_edge:
    evidence._lacks_shares; a turned copy's filled corners are its own loss), or where
    it carries a caption (check's `text_in`, 1 or 2 as these bits: its letters cover the
    picture beneath, a ball under a meme's caption)."""
    tol = max(LACK_MIN_SHARE, LACK_EDGE_PX * numbers.get("lacks_edge", 0.0))
    bits = (LACKS_A if numbers.get("lacks_a", 0.0) > tol else 0) | (
        LACKS_B if numbers.get("lacks_b", 0.0) > tol else 0)
    return bits | int(numbers.get("text_in", 0.0)) & (LACKS_A | LACKS_B)


def swapped(bits: int | None) -> int | None:
    """lacks() of the pair in the other order."""
    return None if bits is None else ((bits & LACKS_A) << 1) | ((bits & LACKS_B) >> 1)


@dataclass(frozen=True)
class Verdict:
    """exact | copy | other_shot | not_verified, a short sentence saying why, and the numbers
    behind it. not_verified: the pair could not be checked (a file unreadable, the
    comparison failed); it stays out of the groups, and the evidence says why."""

    match: str
    evidence: str
    numbers: dict[str, float] = field(default_factory=dict)

    @property
    def kept(self) -> bool:
        return self.match in KEPT

    @property
    def verified(self) -> bool:
        return self.match != NOT_VERIFIED
