"""verified: the one rule for whether a removable file may go -- the index shows it to be a
verified copy (exact or copy) of its keeper. Dedupe lists a file as removable only when
it passes (`screen`), and apply checks every file with the same `screen` before touching
it, so the report's `files_removable` is what apply does and nothing written in a report
(its threshold, match, evidence, groups or scores) can widen it.

A removable file R passes with keeper K when:

1. R and K have the same content digest in the index; or
2. R and K are joined by a chain of pairs that a dedupe verified as exact or copy and
   recorded in the index (catalog table `verified_pairs`), each pair's recorded digests
   still those of its rows (content unchanged since), and each pair's score of stored
   vectors, rounded as the pair search rounds it, at or above the model's floor
   (`copy_floor`: the model's calibrated candidate threshold, never a report's), or the
   two rows' stored perceptual hashes within search.hash_pairs.HASH_RADIUS bits in some
   rotation or mirror (the pairs the hash channel makes candidates: grey copies and
   quarter turns score under the floor); and along the chain from R to K, each image
   shows all of the one before it (`lacks`: a crop stands for no picture it was cut
   from, so a crop kept never costs the rest of the picture, nor a picture that differs
   from another only outside the crop, which both copies of the crop would otherwise
   join); or
3. no such chain is recorded (a `--verify off` report, or an index from before pairs or
   their `lacks` were recorded), the score of R and K meets the floor, and `verify_now`
   says the two are a copy of which K lacks nothing: apply verifies the files themselves
   at that point; dedupe without verification lists such files as `verify_at_apply`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from imgsim_index.index.catalog import VerifiedPair
from imgsim_index.verify.verdict import LACKS_A, LACKS_B, lacks, swapped

if TYPE_CHECKING:
    from imgsim_index.groups.keep import GroupDecision
    from imgsim_index.index.catalog import Row
    from imgsim_index.search import Pairs
    from imgsim_index.verify import Verdict, Verdicts, VerifySettings

NOT_A_COPY = "is not a verified copy of its keeper in the index"
KEEPER_LACKS = "its keeper shows only part of its picture"
THROUGH_CROP = ("only a copy that shows part of its picture joins them (a crop, a turn with filled "
                "corners, or a caption over it)")


def copy_floor(model: str | None) -> float:
    """The lowest score of stored vectors at which apply takes a verified pair as evidence:
    the model's calibrated candidate threshold with verification (verify.CANDIDATE_THRESHOLDS;
    0.99 for a model without a measured one)."""
    from imgsim_index.verify import candidate_threshold

    return candidate_threshold(model, verify=True)


class CopyEvidence:
    """The verified pairs among `rows` (by id) that still stand: recorded as exact or copy
    (any other match, not_verified included, is no evidence), both rows unchanged since
    (their digests are the recorded ones) and their score at or above `floor` or their
    `hashes` (perceptual, by row id) within the hash channel's radius. `links`: both ways;
    `steps`: x -> y where y shows all of x's picture (y may stand for x)."""

    def __init__(self, rows: Mapping[int, Row], pairs: Iterable[VerifiedPair],
                 vectors: Mapping[int, np.ndarray], floor: float,
                 hashes: Mapping[int, bytes] | None = None):
        self.rows, self.vectors, self.floor = rows, vectors, floor
        self.hashes = hashes or {}
        self.links: dict[int, set[int]] = {}
        self.steps: dict[int, set[int]] = {}
        self._back: dict[int, set[int]] = {}  # steps, reversed
        self._to: dict[int, set[int]] = {}  # keeper -> the rows that may go for it
        self._linked: dict[int, set[int]] = {}  # row -> the rows linked to it
        from imgsim_index.verify.verdict import KEPT

        for p in pairs:
            ra, rb = rows.get(p.a), rows.get(p.b)
            if (p.match not in KEPT or ra is None or rb is None or ra.digest != p.digest_a
                    or rb.digest != p.digest_b or not self.meets_floor(p.a, p.b)):
                continue
            self.links.setdefault(p.a, set()).add(p.b)
            self.links.setdefault(p.b, set()).add(p.a)
            if p.lacks is None:
                continue  # recorded by a version that did not say: no step either way
            if not p.lacks & LACKS_B:
                self.steps.setdefault(p.a, set()).add(p.b)
            if not p.lacks & LACKS_A:
                self.steps.setdefault(p.b, set()).add(p.a)

    def score(self, a: int, b: int) -> float | None:
        """The rounded score of two rows' stored vectors (None: a vector is missing)."""
        from imgsim_index.search.threshold import SCORE_DECIMALS

        va, vb = self.vectors.get(a), self.vectors.get(b)
        if va is None or vb is None:
            return None
        return round(float(np.dot(va.astype(np.float64), vb.astype(np.float64))), SCORE_DECIMALS)

    def meets_floor(self, a: int, b: int) -> bool:
        s = self.score(a, b)
        return (s is not None and s >= self.floor) or self.hashes_match(a, b)

    def hashes_match(self, a: int, b: int) -> bool:
        from imgsim_index.ingest.phash import dihedral_distance
        from imgsim_index.search.hash_pairs import HASH_RADIUS

        ha, hb = self.hashes.get(a), self.hashes.get(b)
        return ha is not None and hb is not None and dihedral_distance(ha, hb) <= HASH_RADIUS

    def joined(self, a: int, b: int) -> bool:
        """Is row a joined to row b by a chain of standing verified pairs, each image of
        which shows all of the one before it (b may stand for a)?"""
        if not self._back:
            for x, ys in self.steps.items():
                for y in ys:
                    self._back.setdefault(y, set()).add(x)
        if b not in self._to:  # the rows with such a chain to b: one walk per keeper
            self._to[b] = _reached(self._back, b)
        return a in self._to[b]

    def linked(self, a: int, b: int) -> bool:
        """Are rows a and b joined by a chain of standing verified pairs, whatever each
        image shows of the others?"""
        if b not in self._linked:
            for k in (got := _reached(self.links, b)):
                self._linked[k] = got
        return a in self._linked.get(b, ())


def _reached(edges: Mapping[int, Iterable[int]], a: int) -> set[int]:
    seen, todo = {a}, [a]
    while todo:
        for n in edges.get(todo.pop(), ()):
            if n not in seen:
                seen.add(n)
                todo.append(n)
    return seen


# the pairs (removable, keeper) apply would have to verify from the files now -> for each,
# None when the files are a copy, else why not
VerifyNow = Callable[[Sequence[tuple["Row", "Row"]]], list[str | None]]


def screen(pairs: Sequence[tuple[Row, Row]], evidence: CopyEvidence,
           verify_now: VerifyNow | None) -> list[str | None]:
    """For each (removable, keeper): None when the file may go, else why not (a sentence
    that follows the file's name). `verify_now`: rule 3 (None: it does not apply)."""
    out: list[str | None] = []
    pending: list[int] = []
    for k, (r, keep) in enumerate(pairs):
        if r.digest is None or keep.digest is None:
            out.append(f"{NOT_A_COPY}: no content digest is recorded for it or its keeper; "
                       "run build on its folder, then dedupe")
        elif r.digest == keep.digest or evidence.joined(r.id, keep.id):
            out.append(None)
        else:
            score = evidence.score(r.id, keep.id)
            if score is None:
                out.append(f"{NOT_A_COPY} (no stored vector)")
                continue
            if evidence.linked(r.id, keep.id):
                direct = keep.id in evidence.links.get(r.id, ())
                out.append(f"{NOT_A_COPY}: {KEEPER_LACKS if direct else THROUGH_CROP}")
            else:
                out.append(f"{NOT_A_COPY}: no verified copy joins them (score {score:.6f}, "
                           f"the model's floor is {evidence.floor})")
            if score >= evidence.floor and verify_now is not None:
                pending.append(k)
    if pending:
        assert verify_now is not None
        for k, why in zip(pending, verify_now([pairs[k] for k in pending]), strict=True):
            out[k] = None if why is None else f"{NOT_A_COPY}: {why}"
    return out


def decided_pairs(rows: Sequence[Row], candidates: Pairs, verdicts: Verdicts
                  ) -> tuple[list[VerifiedPair], list[tuple[int, int]]]:
    """What a dedupe's verification decided, as catalog row ids (a < b): the pairs it found
    to be exact or copy (not those only joined through others), and those whose pictures it
    compared and found to be other shots. Nothing when verification did not run."""
    copies: list[VerifiedPair] = []
    others: list[tuple[int, int]] = []
    if not verdicts.ran:
        return copies, others
    for v, i, j in zip(verdicts.pairs, candidates.i.tolist(), candidates.j.tolist(),
                       strict=True):
        if compared_copy(v):
            if rows[i].digest and rows[j].digest:
                copies.append(recorded(rows[i], rows[j], v))
        elif v.match == "other_shot" and "regions" in v.numbers:
            # judged on the aligned pictures (a not_verified pair says nothing either way)
            others.append((min(rows[i].id, rows[j].id), max(rows[i].id, rows[j].id)))
    return copies, others


def compared_copy(v: Verdict) -> bool:
    """An exact or copy verdict of a comparison (not a pair only joined through others)."""
    from imgsim_index.verify import SKIPPED_EVIDENCE

    return v.kept and v.evidence != SKIPPED_EVIDENCE


def recorded(a: Row, b: Row, v: Verdict) -> VerifiedPair:
    """Verdict v on rows a and b (its A and B) as the index records it: ids ascending, the
    lacks bits in that order."""
    bits = lacks(v.numbers)
    lo, hi = (a, b) if a.id < b.id else (b, a)
    return VerifiedPair(lo.id, hi.id, v.match, str(lo.digest), str(hi.digest),
                        bits if lo is a else swapped(bits))


def whole_rank(candidates: Pairs, verdicts: Verdicts) -> dict[int, int]:
    """For each row (position) of a compared copy, how many rows can go for it: the
    compared copies (not those joined through others) give steps x -> y where y shows all
    of x (lacks); a row in a strongly connected set of steps with no step out of it (no
    set shows more) ranks by the rows with a path of steps to it, any other row 0. The
    keeper is one of the highest (keep.choose_keepers): a crop never, where the group has
    its whole picture; of two whole pictures, the one more copies show whole (a turned
    copy whose fill the black picture hides lacks the photo's corners, and the photo
    seems to lack its black corners: the photo, with its resized and re-encoded copies)."""
    if not verdicts.ran or not len(candidates):
        return {}
    src: list[int] = []
    dst: list[int] = []
    nodes: set[int] = set()
    n_copies = 0
    for v, i, j in zip(verdicts.pairs, candidates.i.tolist(), candidates.j.tolist(),
                       strict=True):
        if compared_copy(v):
            nodes.update((i, j))
            n_copies += 1
            bits = lacks(v.numbers)
            if not bits & LACKS_B:  # j shows all of i
                src.append(i)
                dst.append(j)
            if not bits & LACKS_A:
                src.append(j)
                dst.append(i)
    if len(src) == 2 * n_copies:
        return {}  # every copy shows all of the other: the policy decides
    fwd: dict[int, list[int]] = {k: [] for k in nodes}
    back: dict[int, list[int]] = {k: [] for k in nodes}
    for x, y in zip(src, dst, strict=True):
        fwd[x].append(y)
        back[y].append(x)
    label = _strong_sets(fwd, back)
    left = {label[x] for x, y in zip(src, dst, strict=True) if label[x] != label[y]}
    sets: dict[int, list[int]] = {}
    for k in sorted(nodes):
        sets.setdefault(label[k], []).append(k)
    rank: dict[int, int] = {}
    for lab, ks in sets.items():  # a sink set: every row of it reaches the same rows
        reach = 0 if lab in left else len(_reached(back, ks[0]))
        rank.update(dict.fromkeys(ks, reach))
    return rank


def _strong_sets(fwd: Mapping[int, list[int]], back: Mapping[int, list[int]]) -> dict[int, int]:
    """Kosaraju: a label per node, equal for the nodes of one strongly connected set."""
    order: list[int] = []
    seen: set[int] = set()
    for start in fwd:
        if start in seen:
            continue
        seen.add(start)
        stack = [(start, iter(fwd[start]))]
        while stack:
            node, it = stack[-1]
            for nxt in it:
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, iter(fwd[nxt])))
                    break
            else:
                stack.pop()
                order.append(node)
    label: dict[int, int] = {}
    for start in reversed(order):
        if start in label:
            continue
        label[start], todo = start, [start]
        while todo:
            for prev in back[todo.pop()]:
                if prev not in label:
                    label[prev] = start
                    todo.append(prev)
    return label


def direct_copies(rows: Sequence[Row], decisions: Sequence[GroupDecision],
                  settings: VerifySettings) -> list[VerifiedPair]:
    """The members that only a partial copy joins to their keeper (THROUGH_CROP: a crop
    compared with a turned copy, never with the photo), compared with the keeper itself:
    the pairs found to be copies of which the keeper lacks nothing, to record."""
    from imgsim_index.search import Pairs
    from imgsim_index.verify import verify_pairs

    ends = [(m, d.keeper) for d in decisions for m, why in d.not_removable.items()
            if why.endswith(THROUGH_CROP) and rows[m].digest and rows[d.keeper].digest]
    if not ends:
        return []
    every = dataclasses.replace(settings, other_shots_per_image=0)  # each pair asked about
    got = verify_pairs(rows, Pairs(np.asarray([m for m, _ in ends], np.int64),
                                   np.asarray([k for _, k in ends], np.int64),
                                   np.ones(len(ends))), every)
    # A: the member, B: its keeper, which must lack nothing of the member's picture
    return [recorded(rows[m], rows[k], v) for (m, k), v in zip(ends, got.pairs, strict=True)
            if compared_copy(v) and not lacks(v.numbers) & LACKS_B]


def screen_decisions(decisions: Sequence[GroupDecision], rows: Sequence[Row],
                     vectors: np.ndarray, copies: Sequence[VerifiedPair], floor: float,
                     verified: bool, hashes: Mapping[int, bytes] | None = None
                     ) -> list[GroupDecision]:
    """The keep decisions with `removable` narrowed by `screen` to what apply will accept:
    the others go to `not_removable` with the reason. `verified`: the dedupe verified its
    pairs (else the files apply must verify are listed in `verify_at_apply`). `hashes`: the
    rows' perceptual hashes by id, as apply reads them from the index."""
    from dataclasses import replace

    wanted = {m for d in decisions for m in d.members.tolist()}
    by_id = {rows[m].id: rows[m] for m in wanted}
    vecs = {rows[m].id: vectors[m] for m in wanted}
    evidence = CopyEvidence(by_id, copies, vecs, floor, hashes)
    asked: set[int] = set()  # row ids left for apply to verify

    def defer(pairs: Sequence[tuple[Row, Row]]) -> list[str | None]:
        asked.update(r.id for r, _ in pairs)
        return [None] * len(pairs)

    out = []
    for d in decisions:
        why = screen([(rows[m], rows[d.keeper]) for m in d.removable], evidence,
                     None if verified else defer)
        go = [m for m, w in zip(d.removable, why, strict=True) if w is None]
        out.append(replace(d, removable=go,
                           not_removable={m: w for m, w in zip(d.removable, why, strict=True)
                                          if w is not None},
                           verify_at_apply=tuple(m for m in go if rows[m].id in asked)))
    return out


__all__ = ["KEEPER_LACKS", "LACKS_A", "LACKS_B", "NOT_A_COPY", "THROUGH_CROP", "CopyEvidence",
           "VerifiedPair", "VerifyNow", "copy_floor", "decided_pairs", "direct_copies", "lacks",
           "screen", "screen_decisions", "swapped", "whole_rank"]
