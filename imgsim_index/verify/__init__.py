"""verify: candidate pairs -> a Verdict per pair (exact | copy | other_shot | not_verified),
with evidence.

The stage between pair search and grouping. A candidate pair (cosine >= the threshold) is
checked on the pixels themselves (matching.py: geometric alignment of the two images, then
a block residual where they overlap), so an edited copy and another shot of the same scene
come apart: groups, keep decisions and `photos_to_remove` use exact and copy only.

Modules: verdict (the Verdict type), rounds (which pairs are compared, in rounds, on which
workers), matching (the verdict on one pair, and the method), features (describing one
image), align (the alignment strategies, in order), geometry (maps), check and residual
(checking one map), evidence (the words of a verdict), settings (every threshold), tone
(tone curves).

Cost: each image is decoded (upright, long side <= `max_side`) and described at most once
per call, its keypoints only when a comparison needs them; descriptions and comparisons run
in parallel (threads of this process by default). Only the edges the groups need are
compared: pairs are walked by descending score with a union-find, and a pair whose
two ends are already joined through verified copies is not compared (it is a copy by
transitivity). A static scene of N mutually similar frames costs about N - 1 compares.
Between two groups the best-scoring pair is compared first; once `apart_votes` (2) of their
compared pairs are other shots, their other pairs are not compared (other shots, by
transitivity of a capture), and a copy on any of them joins the groups (rounds.py).

cv2 is imported by `matching`, which is loaded only when a pair needs decoding.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from imgsim_index.defaults import (
    CANDIDATE_THRESHOLDS,
    COSINE_ONLY_THRESHOLDS,
    FALLBACK_THRESHOLD,
)
from imgsim_index.errors import InputError
from imgsim_index.progress import NoProgress, Progress
from imgsim_index.verify.rounds import APART_EVIDENCE, SKIPPED_EVIDENCE, PairWalk
from imgsim_index.verify.settings import DEFAULT, MatchSettings
from imgsim_index.verify.verdict import KEPT, MATCHES, NOT_VERIFIED, Verdict

if TYPE_CHECKING:
    from imgsim_index.search import Pairs


class ImageSource(Protocol):
    """What verification reads of an image: the file, and its content digest when known
    (equal digests are an exact match without decoding). A catalog Row is one."""

    @property
    def path(self) -> str: ...

    @property
    def digest(self) -> str | None: ...


@dataclass(frozen=True)
class ImageFile:
    """An image to verify that the index does not hold (a query image)."""

    path: str
    digest: str | None = None


def candidate_threshold(model: str | None, verify: bool = True) -> float:
    """The model's own candidate threshold (with or without verification)."""
    table = CANDIDATE_THRESHOLDS if verify else COSINE_ONLY_THRESHOLDS
    return table.get(model or "", FALLBACK_THRESHOLD)


@dataclass(frozen=True)
class VerifySettings:
    # None: on, except for an index of imported vectors (the tool never read those files,
    # so it has nothing to check them against); True / False: as asked
    enabled: bool | None = None
    # None: threads in this process, one per core (at most defaults.MAX_VERIFY_THREADS);
    # 0: in this process, one at a time; N >= 1: N worker processes
    workers: int | None = None
    # images are decoded with their long side at most this (JPEG: at a reduced DCT scale);
    # describe() works on 512 px thumbnails, so more only costs decoding time
    max_side: int = 512
    tunables: tuple[tuple[str, float], ...] = ()  # settings.MatchSettings fields to change
    # two groups are other shots of each other, and their other candidate pairs are not
    # compared, once this many of their pairs (the best-scoring first) were judged other
    # shots on aligned pixels; a copy verdict on any of their pairs joins them. 1 lets one
    # wrong verdict split a group of copies (an exposure edit beyond the tone limit, say)
    apart_votes: int = 2

    def validate(self) -> VerifySettings:
        if self.workers is not None and not 0 <= self.workers <= 256:
            raise InputError(f"verification workers must be in [0, 256], got {self.workers}")
        if not 128 <= self.max_side <= 8192:
            raise InputError(f"verification max side must be in [128, 8192], got "
                             f"{self.max_side}")
        if not 1 <= self.apart_votes <= 100:
            raise InputError(f"verification apart votes must be in [1, 100], got "
                             f"{self.apart_votes}")
        self.matching()
        return self

    def matching(self) -> MatchSettings:
        """The MatchSettings these tunables give (InputError when one is bad)."""
        names = {f.name for f in dataclasses.fields(MatchSettings)}
        bad = [k for k, _ in self.tunables if k not in names]
        if bad:
            raise InputError(f"unknown verification setting {bad[0]!r}; known: "
                             f"{', '.join(sorted(names))}")
        ints = {f.name for f in dataclasses.fields(MatchSettings)
                if isinstance(getattr(DEFAULT, f.name), int)}
        frac = [k for k, v in self.tunables if k in ints and not float(v).is_integer()]
        if frac:
            raise InputError(f"verification setting {frac[0]!r} must be a whole number")
        try:
            # whole-number settings given as floats (a command line's "block=8.0") are ints
            changes: dict[str, Any] = {k: int(v) if k in ints else v for k, v in self.tunables}
            return dataclasses.replace(MatchSettings(), **changes).validate()
        except ValueError as e:
            raise InputError(str(e)) from None


@dataclass
class Verdicts:
    """One Verdict per candidate pair, aligned with the pairs given to verify_pairs, and
    what the run did."""

    pairs: list[Verdict]
    compared: int = 0  # pairs compared on their pixels
    skipped_as_grouped: int = 0  # pairs joined through verified copies, not compared
    # pairs between two groups that apart_votes of their pairs showed to be other shots
    skipped_as_other_shot: int = 0
    same_bytes: int = 0  # pairs with equal content digests (exact, not decoded)
    # pairs whose verdict is not_verified: an image could not be decoded or described here,
    # or the comparison failed
    not_verified: int = 0
    seconds: float = 0.0
    ran: bool = True
    errors: dict[int, str] = field(default_factory=dict)  # row position -> why not described

    @property
    def match(self) -> list[str]:
        return [v.match for v in self.pairs]

    @property
    def evidence(self) -> list[str]:
        return [v.evidence for v in self.pairs]

    @property
    def numbers(self) -> list[dict[str, float]]:
        """The numbers of each verdict (the verdicts' own dicts: a later stage may add to
        them, as dedupe adds the hash channel's distance)."""
        return [v.numbers for v in self.pairs]

    def kept(self) -> np.ndarray:
        """Boolean mask of the pairs that are exact or copy."""
        return np.asarray([v.kept for v in self.pairs], bool)

    def summary(self) -> dict[str, Any]:
        return {"ran": self.ran, "compared": self.compared,
                "skipped_as_grouped": self.skipped_as_grouped,
                "skipped_as_other_shot": self.skipped_as_other_shot, "same_bytes": self.same_bytes,
                "not_verified": self.not_verified, "seconds": round(self.seconds, 3)}


def unverified(n: int) -> Verdicts:
    """Verdicts when verification is off: every pair stands on its score."""
    return Verdicts([Verdict("copy", "not verified (cosine only)") for _ in range(n)], ran=False)


def decode_for_verify(path: str, max_side: int) -> tuple[np.ndarray, tuple[int, int]]:
    """An indexed entry as upright RGB uint8 pixels, long side <= max_side, and its
    upright (height, width) before reduction."""
    from imgsim_index.ingest.upright import upright_image

    im = upright_image(path, (max_side, max_side), "verify")
    w, h = im.info["upright_size"]
    return np.asarray(im.convert("RGB"), np.uint8), (h, w)


def verify_pairs(
    images: Sequence[ImageSource],
    pairs: Pairs,
    settings: VerifySettings | None = None,
    progress: Progress | None = None,
) -> Verdicts:
    """A verdict per pair of `pairs` (positions into `images`: catalog rows, or ImageFile
    for files the index does not hold)."""
    settings = (settings or VerifySettings()).validate()
    progress = progress or NoProgress()
    if settings.enabled is False:  # None (auto) is on here: the caller knows no better
        return unverified(len(pairs))
    t0 = time.perf_counter()
    out = Verdicts([Verdict("", "") for _ in range(len(pairs))])
    progress.start("Verifying pairs", len(pairs))
    try:
        PairWalk(images, pairs, settings, out, progress).run()
    finally:
        progress.finish()
    out.seconds = time.perf_counter() - t0
    return out


__all__ = ["APART_EVIDENCE", "CANDIDATE_THRESHOLDS", "KEPT", "MATCHES", "NOT_VERIFIED",
           "SKIPPED_EVIDENCE", "ImageFile", "ImageSource", "Verdict", "VerifySettings",
           "Verdicts", "candidate_threshold", "decode_for_verify", "unverified", "verify_pairs"]
