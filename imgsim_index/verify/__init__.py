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
transitivity of a capture), and a copy on any of them joins the groups (rounds.py). An
image compared with `other_shots_per_image` (32) images that were all other shots is
compared no more: its undecided pairs are not verified (pictures the embedding cannot tell
apart would otherwise cost a comparison per pair of images).

cv2 is imported by `matching`, which is loaded only when a pair needs decoding.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from imgsim_index.defaults import (  # noqa: F401  (names this package has always offered)
    CANDIDATE_THRESHOLDS,
    COSINE_ONLY_THRESHOLDS,
    FALLBACK_THRESHOLD,
)
from imgsim_index.progress import NoProgress, Progress
from imgsim_index.verify.rounds import (
    APART_EVIDENCE,
    CAPPED_EVIDENCE,
    SKIPPED_EVIDENCE,
    UNALIGNED_EVIDENCE,
    PairWalk,
)
from imgsim_index.verify.settings import DEFAULT, MatchSettings  # noqa: F401
from imgsim_index.verify.verdict import KEPT, MATCHES, NOT_VERIFIED, Verdict

if TYPE_CHECKING:
    from imgsim_index.search import Pairs


from imgsim_index.verify.inputs import (  # noqa: E402
    ImageFile,
    ImageSource,
    Verdicts,
    VerifySettings,
    candidate_threshold,
    decode_for_verify,
    unverified,
)


def verify_pairs(
    images: Sequence[ImageSource],
    pairs: Pairs,
    settings: VerifySettings | None = None,
    progress: Progress | None = None,
    uncapped: Sequence[bool] | None = None,
) -> Verdicts:
    """A verdict per pair of `pairs` (positions into `images`: catalog rows, or ImageFile
    for files the index does not hold). `uncapped`: per pair, True to compare it whatever
    `settings.other_shots_per_image` (pairs other evidence points to, as the perceptual
    hash's)."""
    settings = (settings or VerifySettings()).validate()
    progress = progress or NoProgress()
    if settings.enabled is False:  # None (auto) is on here: the caller knows no better
        return unverified(len(pairs))
    t0 = time.perf_counter()
    cap = settings.other_shots_per_image
    out = Verdicts([Verdict("", "") for _ in range(len(pairs))], other_shots_per_image=cap)
    # the images counted only where there are more pairs than the limit (a set of every
    # row of millions of pairs is not free)
    if cap and len(pairs) > cap and len(pairs) > cap * (n := _images_in(pairs)):
        progress.note(f"{len(pairs):,} candidate pairs among {n:,} images: they look alike "
                      f"to the model; each image is compared with at most {cap} that prove "
                      f"to be other shots (a higher threshold gives fewer candidates)")
    progress.start("Verifying pairs", len(pairs))
    try:
        PairWalk(images, pairs, settings, out, progress, uncapped).run()
    finally:
        progress.finish()
    out.seconds = time.perf_counter() - t0
    return out


def _images_in(pairs: Pairs) -> int:
    import numpy as np

    return len(np.union1d(pairs.i, pairs.j))


__all__ = ["APART_EVIDENCE", "CANDIDATE_THRESHOLDS", "CAPPED_EVIDENCE", "KEPT", "MATCHES",
           "NOT_VERIFIED", "SKIPPED_EVIDENCE", "UNALIGNED_EVIDENCE", "ImageFile", "ImageSource",
           "Verdict", "Verdicts", "VerifySettings", "candidate_threshold",
           "decode_for_verify", "unverified", "verify_pairs"]
