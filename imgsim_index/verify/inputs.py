"""inputs: what verification takes and gives (the images it reads, its settings, the
verdicts of a run) and how it reads an image; apart from the pair walk (rounds.py), which
uses them, so the package imports one way."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from imgsim_index.defaults import (
    CANDIDATE_THRESHOLDS,
    COSINE_ONLY_THRESHOLDS,
    FALLBACK_THRESHOLD,
    VERIFY_OTHER_SHOTS_PER_IMAGE,
    VERIFY_STALL_SECONDS,
)
from imgsim_index.errors import InputError
from imgsim_index.verify.settings import DEFAULT, MatchSettings
from imgsim_index.verify.verdict import Verdict


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
    # None or 1: threads in this process, one per core (at most
    # defaults.MAX_VERIFY_THREADS), or forks with `fork`; 0: in this process, one at a
    # time; N >= 2: images are described in threads here, pairs compared in N worker
    # processes (a first round of fewer than rounds.POOL_MIN_TASKS comparisons in
    # threads). Worker processes that are not forks import the main module again where it
    # is a script: a script that asks for them needs its `if __name__ == "__main__":` guard
    workers: int | None = None
    # this process does nothing else while it verifies (a command, not a server or a
    # program with threads of its own): where the platform forks (Linux), the worker
    # processes (one per core with workers None) are forks of it, made when comparisons
    # start, that inherit the images described so far and are sent only later ones. Unsafe
    # where another thread may be inside OpenCV or BLAS at that moment: off by default
    fork: bool = False
    # images are decoded with their long side at most this (JPEG: at a reduced DCT scale);
    # describe() works on 512 px thumbnails, so more only costs decoding time
    max_side: int = 512
    tunables: tuple[tuple[str, float], ...] = ()  # settings.MatchSettings fields to change
    # bytes of described images the walk holds at once (None: defaults.VERIFY_IMAGES_BYTES)
    memory_bytes: int | None = None
    # a folder in which the walk keeps, on disk, the described images it drops for room
    # while a pair still needs them (verify/spill.py; dedupe: the index's folder); None:
    # they are described again when needed
    spill_dir: str | None = None
    # two groups are other shots of each other, and their other candidate pairs are not
    # compared, once this many of their pairs (the best-scoring first) were judged other
    # shots on aligned pixels; a copy verdict on any of their pairs joins them. 1 lets one
    # wrong verdict split a group of copies (an exposure edit beyond the tone limit, say)
    apart_votes: int = 2
    # ...or once this many of their compared pairs were other shots at all, the rest not
    # aligned or with too little to judge (a pair that does not align rarely has a copy of
    # its ends that does): a cap on the comparisons between two groups of distinct
    # pictures that look alike to the embedding (products on white, synthetic images)
    unaligned_votes: int = 4
    # an image is compared no more once this many of its comparisons found other shots: its
    # pairs not decided by then are not verified ("not compared: ...", counted as
    # Verdicts.skipped_per_image), except those verify_pairs is told to compare whatever
    # the cap (dedupe: the perceptual-hash channel's). Bounds a walk through pictures the
    # embedding cannot tell apart to about N * this / 2 comparisons; 0: no cap
    other_shots_per_image: int = VERIFY_OTHER_SHOTS_PER_IMAGE
    # worker processes that finish no comparison in this many seconds are stopped and their
    # comparisons given to new ones; a comparison that was under way at rounds.STALL_TRIES
    # such stops is not verified (it names the limit). Process workers only: a thread
    # cannot be stopped (workers 0, or threads, are not guarded)
    stall_seconds: float = VERIFY_STALL_SECONDS

    def validate(self) -> VerifySettings:
        if self.workers is not None and not 0 <= self.workers <= 256:
            raise InputError(f"verification workers must be in [0, 256], got {self.workers}")
        if not 128 <= self.max_side <= 8192:
            raise InputError(f"verification max side must be in [128, 8192], got "
                             f"{self.max_side}")
        if self.memory_bytes is not None and self.memory_bytes < 16 << 20:
            raise InputError(f"verification memory must be at least 16 MiB, got "
                             f"{self.memory_bytes} bytes")
        if not 1 <= self.apart_votes <= 100:
            raise InputError(f"verification apart votes must be in [1, 100], got "
                             f"{self.apart_votes}")
        if not self.apart_votes <= self.unaligned_votes <= 10_000:
            raise InputError(f"verification unaligned votes must be in [apart votes "
                             f"({self.apart_votes}), 10000], got {self.unaligned_votes}")
        if not 0 <= self.other_shots_per_image <= 1_000_000:
            raise InputError(f"verification other shots per image must be in [0, 1000000] "
                             f"(0: no limit), got {self.other_shots_per_image}")
        if not 1 <= self.stall_seconds <= 86_400:
            raise InputError(f"verification stall seconds must be in [1, 86400], got "
                             f"{self.stall_seconds}")
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
    # pairs between two groups that apart_votes (unaligned_votes) of their pairs showed
    # to be other shots
    skipped_as_other_shot: int = 0
    same_bytes: int = 0  # pairs with equal content digests (exact, not decoded)
    # pairs not compared because an end had met VerifySettings.other_shots_per_image other
    # shots (not_verified: counted in not_verified too)
    skipped_per_image: int = 0
    other_shots_per_image: int = 0  # the limit these verdicts were given under (0: none)
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
                "skipped_per_image": self.skipped_per_image,
                "other_shots_per_image": self.other_shots_per_image,
                "not_verified": self.not_verified, "seconds": round(self.seconds, 3)}


def unverified(n: int) -> Verdicts:
    """Verdicts when verification is off: every pair stands on its score."""
    return Verdicts([Verdict("copy", "not verified (cosine only)") for _ in range(n)], ran=False)


def decode_for_verify(path: str, max_side: int, digest: str | None = None
                      ) -> tuple[np.ndarray, tuple[int, int]]:
    """An indexed entry as upright RGB uint8 pixels, long side <= max_side, and its
    upright (height, width) before reduction: the thumbnail this command's decoding kept
    of this content (digest), if any (ingest/kept.py), else decoded here."""
    from imgsim_index.ingest import kept
    from imgsim_index.ingest.upright import upright_image

    thumb = kept.take(path, digest, (max_side, max_side))
    if thumb is not None:
        return thumb
    im = upright_image(path, (max_side, max_side), "verify")
    w, h = im.info["upright_size"]
    return np.asarray(im.convert("RGB"), np.uint8), (h, w)
