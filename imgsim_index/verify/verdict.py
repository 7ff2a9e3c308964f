"""The verdict on one candidate pair: the one type every stage passes around."""

from __future__ import annotations

from dataclasses import dataclass, field

NOT_VERIFIED = "not_verified"  # the pair could not be checked: never grouped, never a copy
MATCHES = ("exact", "copy", "other_shot", NOT_VERIFIED)
KEPT = ("exact", "copy")  # the matches that group: duplicates


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
