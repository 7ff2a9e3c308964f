"""The verdict on one candidate pair: the one type every stage passes around."""

from __future__ import annotations

from dataclasses import dataclass, field

MATCHES = ("exact", "copy", "other_shot")
KEPT = ("exact", "copy")  # the matches that group: duplicates
UNVERIFIED = "not verified"  # evidence of a pair left out of the groups: it could not be checked


@dataclass(frozen=True)
class Verdict:
    """exact | copy | other_shot, a short sentence saying why, and the numbers behind it."""

    match: str
    evidence: str
    numbers: dict[str, float] = field(default_factory=dict)
    # False: the pair could not be checked (a file unreadable, the comparison failed); it is
    # an other_shot so that it stays out of the groups, and the evidence says why
    verified: bool = True

    @property
    def kept(self) -> bool:
        return self.match in KEPT
