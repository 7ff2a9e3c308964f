"""verify: candidate pairs -> a verdict per pair (exact | copy | other_shot), with evidence.

The stage between pair search and grouping. A candidate pair (cosine >= the threshold) is
checked on the pixels themselves (`matching.py`: geometric alignment of the two images,
then a block residual where they overlap), so an edited copy and another shot of the same
scene come apart: groups, keep decisions and `photos_to_remove` use exact and copy only.

Cost: each image is decoded (upright, long side <= `max_side`) and described at most once
per call, its keypoints only when a comparison needs them; descriptions and comparisons run
in parallel (threads of this process by default). Only the edges the groups need are
compared: pairs are walked by descending score with a union-find, and a pair whose
two ends are already joined through verified copies is not compared (it is a copy by
transitivity). A static scene of N mutually similar frames costs about N - 1 compares.
Comparisons run in rounds: each round compares, in parallel, the pairs that would join two
not yet (tentatively) joined sets; a pair whose ends a pending comparison may join waits
for the next round. Between two groups the best-scoring pair is compared first; once
`apart_votes` (2) of their compared pairs are other shots, their other pairs are not compared
(other shots, by transitivity of a capture), and a copy on any of them joins the groups.

cv2 is imported by `matching`, which is loaded only when a pair needs decoding.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from imgsim_index.defaults import (
    CANDIDATE_THRESHOLDS,
    COSINE_ONLY_THRESHOLDS,
    FALLBACK_THRESHOLD,
    verify_threads,
)
from imgsim_index.errors import InputError
from imgsim_index.progress import NoProgress, Progress

if TYPE_CHECKING:
    from imgsim_index.index.catalog import Row
    from imgsim_index.search import Pairs

MATCHES = ("exact", "copy", "other_shot")
KEPT = ("exact", "copy")
UNVERIFIED = "not verified"  # evidence of a pair left out of the groups: it could not be checked
SKIPPED_EVIDENCE = "not compared: already grouped through verified copies"
APART_EVIDENCE = "not compared: their groups are other shots"



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
    tunables: tuple[tuple[str, float], ...] = ()  # matching.VerifySettings fields to change
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

    def matching(self) -> Any:
        """The matching.VerifySettings these tunables give (InputError when one is bad)."""
        from imgsim_index.verify import matching

        names = {f.name for f in dataclasses.fields(matching.VerifySettings)}
        bad = [k for k, _ in self.tunables if k not in names]
        if bad:
            raise InputError(f"unknown verification setting {bad[0]!r}; known: "
                             f"{', '.join(sorted(names))}")
        ints = {f.name for f in dataclasses.fields(matching.VerifySettings)
                if isinstance(getattr(matching.DEFAULT, f.name), int)}
        frac = [k for k, v in self.tunables if k in ints and not float(v).is_integer()]
        if frac:
            raise InputError(f"verification setting {frac[0]!r} must be a whole number")
        try:
            # whole-number settings given as floats (a command line's "block=8.0") are ints
            changes: dict[str, Any] = {k: int(v) if k in ints else v for k, v in self.tunables}
            return dataclasses.replace(matching.VerifySettings(), **changes).validate()
        except ValueError as e:
            raise InputError(str(e)) from None


@dataclass
class Verdicts:
    """One verdict per candidate pair, aligned with the pairs given to verify_pairs."""

    match: list[str]
    evidence: list[str]
    numbers: list[dict[str, float]]
    compared: int = 0  # pairs compared on their pixels
    skipped_as_grouped: int = 0  # pairs joined through verified copies, not compared
    # pairs between two groups that apart_votes of their pairs showed to be other shots
    skipped_as_other_shot: int = 0
    same_bytes: int = 0  # pairs with equal content digests (exact, not decoded)
    not_verified: int = 0  # pairs where an image could not be decoded or described here
    seconds: float = 0.0
    ran: bool = True
    errors: dict[int, str] = field(default_factory=dict)  # row position -> why not described

    def kept(self) -> np.ndarray:
        """Boolean mask of the pairs that are exact or copy."""
        return np.asarray([m in KEPT for m in self.match], bool)

    def summary(self) -> dict[str, Any]:
        return {"ran": self.ran, "compared": self.compared,
                "skipped_as_grouped": self.skipped_as_grouped,
                "skipped_as_other_shot": self.skipped_as_other_shot, "same_bytes": self.same_bytes,
                "not_verified": self.not_verified, "seconds": round(self.seconds, 3)}


def unverified(n: int) -> Verdicts:
    """Verdicts when verification is off: every pair stands on its score."""
    return Verdicts(["copy"] * n, ["not verified (cosine only)"] * n, [{} for _ in range(n)],
                    ran=False)


class _Sets:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, x: int) -> int:
        p = self.parent
        while p[x] != x:
            p[x] = p[p[x]]
            x = p[x]
        return x

    def union(self, a: int, b: int) -> tuple[int, int] | None:
        """Join the sets of a and b; (surviving root, absorbed root), or None if joined."""
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return None
        self.parent[max(ra, rb)] = min(ra, rb)
        return min(ra, rb), max(ra, rb)

    def copy(self) -> _Sets:
        s = _Sets(0)
        s.parent = list(self.parent)
        return s


class _Apart:
    """Pairs of sets (by root) shown to be other shots of each other by `votes` compared
    pairs: the same captures, edited, are no copies of each other either, so their other
    pairs are not compared (the compared pairs stand for them)."""

    def __init__(self, votes: int) -> None:
        self.votes = votes
        # root -> other root -> the compared pairs between them judged other shots
        self.by_root: dict[int, dict[int, list[int]]] = {}

    def decided(self, ra: int, rb: int) -> list[int] | None:
        """The deciding pairs when sets ra and rb are apart, else None."""
        pairs = self.by_root.get(ra, {}).get(rb, [])
        return pairs if len(pairs) >= self.votes else None

    def add(self, ra: int, rb: int, *pairs: int) -> None:
        self.by_root.setdefault(ra, {}).setdefault(rb, []).extend(pairs)
        self.by_root.setdefault(rb, {}).setdefault(ra, []).extend(pairs)

    def merged(self, keep: int, gone: int) -> None:
        """Sets `gone` joined `keep`: the verdicts against `gone` count against `keep`."""
        for other, pairs in self.by_root.pop(gone, {}).items():
            del self.by_root[other][gone]
            if other != keep:
                self.add(keep, other, *pairs)


def decode_for_verify(path: str, max_side: int) -> tuple[np.ndarray, tuple[int, int]]:
    """An indexed entry as upright RGB uint8 pixels, long side <= max_side, and its
    upright (height, width) before reduction."""
    from imgsim_index.ingest.upright import upright_image

    im = upright_image(path, (max_side, max_side), "verify")
    w, h = im.info["upright_size"]
    return np.asarray(im.convert("RGB"), np.uint8), (h, w)


def _describe(task: tuple[int, str, str | None, int, Any]) -> tuple[int, Any, str]:
    """(row, Features | None, error) for one image; never raises. Keypoints come later,
    when a comparison needs them."""
    k, path, digest, max_side, msettings = task
    from imgsim_index.verify import matching

    try:
        rgb, shape = decode_for_verify(path, max_side)
        return k, matching.describe(rgb, digest, msettings, sift=False, shape=shape), ""
    except Exception as e:  # noqa: BLE001 - any decoder failure is this image's verdict
        return k, None, (str(e).splitlines() or [type(e).__name__])[0][:200]


Compared = tuple[int, str, str, dict[str, float], dict[str, Any], dict[str, Any]]


def _compare(task: tuple[int, Any, Any, Any]) -> Compared:
    """(pair, match, evidence, numbers, keypoints computed for a, for b); never raises."""
    p, fa, fb, msettings = task
    from imgsim_index.verify import matching

    had_a, had_b = set(fa.sift_cache), set(fb.sift_cache)

    def done(m: str, ev: str, nums: dict[str, float]) -> Compared:
        return (p, m, ev, nums, {k: v for k, v in fa.sift_cache.items() if k not in had_a},
                {k: v for k, v in fb.sift_cache.items() if k not in had_b})

    if fa.shape == fb.shape and fa.pixel_hash == fb.pixel_hash:
        return done("exact", "same decoded pixels", {})
    try:  # a flat image is a copy only of one of its colour (matching.flat_verdict)
        v = matching.compare(fa, fb, msettings)
    except Exception as e:  # noqa: BLE001 - one pair's failure never stops the run
        # unverified is not a copy: it stays out of the groups, listed for review
        return done("other_shot", f"{UNVERIFIED}: {type(e).__name__}: {e}"[:200], {})
    return done(v.match, v.evidence, v.numbers)


# By default the work runs in threads of this process: decoding, SIFT, matching, warps and
# residuals run in Pillow/OpenCV/NumPy code that releases the GIL, and threads cost no
# interpreter start-up and share the images' keypoints. Measured on 2 cores: the evaluation
# set's verification took 7.5 s wall with 2 threads against 11.0 s in one (benchmarks/RESULTS.md).
# How many: defaults.verify_threads.
# A process pool (workers >= 1) pays for starting interpreters (spawn) and for pickling
# thumbnails; below this many tasks in one round, or with a single worker, the work runs here.
POOL_MIN_TASKS = 16


def verify_pairs(
    rows: Sequence[Row],
    pairs: Pairs,
    settings: VerifySettings | None = None,
    progress: Progress | None = None,
) -> Verdicts:
    """A verdict per pair of `pairs` (row positions into `rows`, score descending)."""
    settings = (settings or VerifySettings()).validate()
    progress = progress or NoProgress()
    n = len(pairs)
    if settings.enabled is False:  # None (auto) is on here: the caller knows no better
        return unverified(n)
    t0 = time.perf_counter()
    msettings = settings.matching()
    pi, pj = pairs.i.tolist(), pairs.j.tolist()
    order = sorted(range(n), key=lambda p: -float(pairs.score[p]))
    match: list[str] = [""] * n
    evidence: list[str] = [""] * n
    numbers: list[dict[str, float]] = [{} for _ in range(n)]
    out = Verdicts(match, evidence, numbers)
    sets = _Sets(len(rows))
    apart = _Apart(settings.apart_votes)

    def join(a: int, b: int) -> None:
        joined = sets.union(a, b)
        if joined:
            apart.merged(*joined)

    feats: dict[int, Any] = {}
    pool: Executor | None = None
    threads: Executor | None = None
    n_workers = settings.workers or 0
    n_threads = verify_threads() if settings.workers is None else 0
    progress.start("Verifying pairs", n)

    def run(fn: Callable[[Any], Any], tasks: list[Any]) -> list[Any]:
        nonlocal pool, threads
        if n_threads > 1 and len(tasks) > 1:
            if threads is None:
                threads = ThreadPoolExecutor(n_threads, thread_name_prefix="verify")
            return list(threads.map(fn, tasks))
        if n_workers <= 1 or len(tasks) < POOL_MIN_TASKS:
            return [fn(t) for t in tasks]
        if pool is None:
            import multiprocessing

            pool = ProcessPoolExecutor(n_workers, mp_context=multiprocessing.get_context("spawn"))
        return list(pool.map(fn, tasks, chunksize=max(1, len(tasks) // (4 * n_workers))))

    try:
        pending = order
        while pending:
            tentative = sets.copy()
            batch: list[int] = []
            later: list[int] = []
            for p in pending:
                a, b = pi[p], pj[p]
                ra, rb = sets.find(a), sets.find(b)
                if ra == rb:
                    match[p], evidence[p] = "copy", SKIPPED_EVIDENCE
                    out.skipped_as_grouped += 1
                    progress.update(1)
                elif (qs := apart.decided(ra, rb)) is not None:
                    match[p] = "other_shot"
                    evidence[p] = f"{APART_EVIDENCE} (compared: " + "; ".join(
                        f"{os.path.basename(rows[pi[q]].path)} and "
                        f"{os.path.basename(rows[pj[q]].path)}" for q in qs) + ")"
                    out.skipped_as_other_shot += 1
                    progress.update(1)
                elif tentative.find(a) == tentative.find(b):
                    later.append(p)  # a comparison in this round may join them
                else:
                    da, db = rows[a].digest, rows[b].digest
                    if da is not None and da == db:
                        match[p], evidence[p] = "exact", "same bytes"
                        out.same_bytes += 1
                        join(a, b)
                        progress.update(1)
                    else:
                        batch.append(p)
                    tentative.union(a, b)
            need = sorted({k for p in batch for k in (pi[p], pj[p])} - feats.keys())
            for k, f, err in run(_describe, [(k, rows[k].path, rows[k].digest,
                                              settings.max_side, msettings) for k in need]):
                feats[k] = f
                if f is None:
                    out.errors[k] = err
            tasks = []
            for p in batch:
                a, b = pi[p], pj[p]
                if feats[a] is None or feats[b] is None:
                    why = out.errors.get(a) or out.errors.get(b) or "unknown"
                    # a file that cannot be read now (vanished, changed, unreadable) is no
                    # evidence of a copy: the pair stays out of the groups, so nothing is
                    # proposed for removal on the embedding's word alone
                    match[p] = "other_shot"
                    evidence[p] = f"{UNVERIFIED}: could not read it for verification ({why})"
                    out.not_verified += 1
                    progress.update(1)
                else:
                    tasks.append((p, feats[a], feats[b], msettings))
            for p, m, ev, nums, kp_a, kp_b in run(_compare, tasks):
                match[p], evidence[p], numbers[p] = m, ev, nums
                feats[pi[p]].sift_cache.update(kp_a)  # computed in a worker: keep them
                feats[pj[p]].sift_cache.update(kp_b)
                out.compared += 1
                if m in KEPT:
                    join(pi[p], pj[p])
                elif ev.startswith(UNVERIFIED):  # the comparison itself failed
                    out.not_verified += 1
                elif "regions" in nums:  # the aligned pictures were judged, and differ:
                    # not a failure to align or too little to judge (another member of the
                    # group may still align), nor a file that could not be read
                    apart.add(sets.find(pi[p]), sets.find(pj[p]), p)
                progress.update(1)
            pending = later
    finally:
        for ex in (pool, threads):
            if ex is not None:
                ex.shutdown()
        progress.finish()
    out.seconds = time.perf_counter() - t0
    return out


__all__ = ["APART_EVIDENCE", "CANDIDATE_THRESHOLDS", "KEPT", "MATCHES", "SKIPPED_EVIDENCE",
           "VerifySettings", "Verdicts", "candidate_threshold", "decode_for_verify",
           "unverified", "verify_pairs"]
