"""defaults: every default the package applies when the user gives no value, written once.

Each value says why it is what it is. Modules import from here and never repeat the
literal (tests/test_defaults.py fails if the default candidate threshold appears as a
number anywhere else in the package). Importing this module costs nothing: no numpy, no
torch, so the CLI can show these values in its help.
"""

from __future__ import annotations

import os

# -- pair search -----------------------------------------------------------------------

# Cosine similarity at or above which two images are a pair when nothing else decides: the
# seed's value, where ResNet50 edited copies score and distinct photos rarely do.
DEFAULT_THRESHOLD = 0.99

# The candidate threshold (cosine) per model when verification runs, and without it.
# resnet50: the seed's default both ways. efficientnet-lite0: its edited copies score
# as low as 0.80 (0.796 for a 6% crop); at 0.75 verification keeps precision 0.995 and
# recall 1.0 on the public evaluation set (benchmarks/RESULTS.md, quality section). Without
# verification the score is the verdict, so it stays at the seed's strict value.
CANDIDATE_THRESHOLDS: dict[str, float] = {"resnet50": DEFAULT_THRESHOLD,
                                          "efficientnet-lite0": 0.75}
COSINE_ONLY_THRESHOLDS: dict[str, float] = {"resnet50": DEFAULT_THRESHOLD,
                                            "efficientnet-lite0": DEFAULT_THRESHOLD}
# A model without a measured threshold (imported vectors, a new backbone): the strict one.
FALLBACK_THRESHOLD = DEFAULT_THRESHOLD

# -- groups ----------------------------------------------------------------------------

# Which file of a group is kept: "original" prefers camera EXIF, the original format and
# the earliest capture, the choice a person would make (groups/keep.py KEEP_POLICIES).
DEFAULT_KEEP = "original"

# -- index identity --------------------------------------------------------------------

# What makes two vectors comparable: the same backbone, output size, input preprocessing
# and weights. An index refuses vectors that differ in any of them; report.json's "model"
# holds them in this order.
IDENTITY_KEYS = ("model", "dim", "weights_id", "preprocessing")

# -- parallelism -----------------------------------------------------------------------

# Embedding decodes in worker processes (torch) or threads (ONNX Runtime) while one core
# runs the network; each worker holds decoded images, so the count is capped to keep a
# many-core machine's memory bounded (a cap, not a measured optimum).
MAX_EMBED_WORKERS = 8
# Thumbnails decode and encode in threads (PIL and OpenCV release the GIL); the cap bounds
# the full-size images decoded at once.
MAX_THUMBNAIL_WORKERS = 8
# Verification threads (they share the GIL: on 2 cores the hard edits as one folder verified
# in 15.2 s in 2 threads, 10.7 s in 2 processes, but 4,005 quick pairs in 10.8 s against
# 16.7 s, benchmarks/RESULTS.md); the cap bounds the images and keypoints held at once.
MAX_VERIFY_THREADS = 8
# `dedupe FOLDER` keeps the verification thumbnails its build decodes (at most 0.75 MiB
# each, so about 680 images) for verification, which then decodes only the others
# (ingest/kept.py); the cap bounds the memory they hold.
VERIFY_KEPT_BYTES = 512 * 1024 * 1024
# Verification holds the images it has described (about 0.9 MiB each from a 640x480 photo:
# grey, chroma and clip thumbnails, what comparisons derive) while pairs that need them are
# undecided, up to this; a round of comparisons needing more goes in parts, and an image
# dropped for room is described again if a later pair needs it (verify/rounds.py).
# `dedupe --memory-budget` sets it to half the budget.
VERIFY_IMAGES_BYTES = 512 * 1024 * 1024
# Described images dropped for room while a pair still needs them are kept on disk, next
# to the index, up to this (about 1 MiB each), and read back instead of being decoded and
# described again (verify/spill.py).
VERIFY_SPILL_BYTES = 16 << 30
# An image whose comparisons found this many other shots is compared no more: its other
# candidate pairs are listed not verified (verify/rounds.py). Pictures the embedding cannot
# tell apart (products on white, scans, generated images) make almost every pair a
# candidate: 400 smooth colour fields gave 75,557 of the 79,800 pairs at Lite0's 0.75,
# verified in 80 s; 2,000 gave 1,953,304 (hours). With the cap such a walk costs about
# N * cap / 2 comparisons. The evaluation set's images meet at most 2 other shots each.
VERIFY_OTHER_SHOTS_PER_IMAGE = 32
# A verification worker process that finishes none of its comparisons in this long is
# taken for stuck (a comparison takes milliseconds to a second: the slowest of the hard
# edits 0.4 s on 2 cores); it is stopped and its comparisons go to new workers. Without
# this a hung worker (a fork that inherited a lock held by a thread) hung the command.
VERIFY_STALL_SECONDS = 300.0


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS has one), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def embed_workers() -> int:
    """Decoding workers beside the network: one core is left to the network itself."""
    return max(1, min(MAX_EMBED_WORKERS, usable_cores() - 1))


def thumbnail_workers() -> int:
    """Threads that make the gallery's thumbnails: one per core."""
    return min(MAX_THUMBNAIL_WORKERS, usable_cores())


def verify_threads() -> int:
    """Threads that verify candidate pairs: one per core."""
    return min(MAX_VERIFY_THREADS, usable_cores())


def decode_slots() -> int:
    """Requests the service decodes at once: one per core, so a burst of uploads cannot
    hold more decoded images in memory than the machine can work on."""
    return usable_cores()


__all__ = ["CANDIDATE_THRESHOLDS", "COSINE_ONLY_THRESHOLDS", "DEFAULT_KEEP", "DEFAULT_THRESHOLD",
           "FALLBACK_THRESHOLD", "IDENTITY_KEYS", "MAX_EMBED_WORKERS", "MAX_THUMBNAIL_WORKERS",
           "MAX_VERIFY_THREADS", "VERIFY_IMAGES_BYTES", "VERIFY_KEPT_BYTES",
           "VERIFY_OTHER_SHOTS_PER_IMAGE", "VERIFY_SPILL_BYTES", "VERIFY_STALL_SECONDS",
           "decode_slots", "embed_workers", "thumbnail_workers", "usable_cores", "verify_threads"]
