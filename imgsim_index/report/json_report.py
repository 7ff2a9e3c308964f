"""report.json: the seed's keys, spelled exactly as users' scripts parse them, plus extras.

Seed keys: timestamp, folder_list, total_images_in_folders, compare_mode, threshold,
number_of_similar_pairs, number_of_unique_groups, photos_to_remove, similar_pairs
(index, image1, image2, similarity_score; sorted by score, highest first).

groups (largest first): group, size, keeper, members (path, size, mtime_ns, width,
height, score_to_keeper, role keep|remove|unverified|protected|frame, protected), removable
(paths), bytes_removable, all_protected, not_removable (path, reason: members the keep
policy would remove but the index does not show to be verified copies of the keeper, role
unverified), verify_at_apply (removable paths apply verifies from the files: the dedupe
ran without verification). removable, files_removable and bytes_removable count what
apply accepts: groups/verified.py's rule, the one apply checks. `apply` re-checks each
removable file's size and mtime_ns, stays inside folder_list, and takes nothing else
from the report on trust.

Verification (schema 3, 4): each similar_pairs row adds match (exact | copy), evidence (a
short sentence) and verification (the numbers behind it, rounded); near_misses lists the
other_shot and not_verified pairs (could not be checked: an image unreadable; or not
compared: an image had met the limit of other shots per image) in the same shape (not in
similar_pairs, groups or photos_to_remove);
verification {ran, compared, skipped_as_grouped, skipped_as_other_shot, same_bytes,
not_verified, seconds, and when it ran hash_candidates: pairs under the threshold that only
the perceptual-hash channel found, whose rows carry verification.hash_distance;
skipped_per_image: the not_verified pairs left at the limit of other shots per image, and
other_shots_per_image: that limit (0: none)};
threshold_source "model default" | "given".

The keys and their types are typed in report/contract.py (`Report`) and described for
other languages by report/report.schema.json; the tests keep both in step with this module.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, cast

from imgsim_index.atomic_files import atomic_write_json
from imgsim_index.groups.components import Groups
from imgsim_index.groups.keep import GroupDecision, KeepSettings, choose_keepers
from imgsim_index.index.catalog import Row
from imgsim_index.report.contract import (
    Group,
    Member,
    PairRow,
    Report,
    Verification,
    pair_match,
)
from imgsim_index.search import Pairs, PairSettings
from imgsim_index.verify.verdict import NOT_VERIFIED, Verdict

# 2: groups carry keeper, members with size/resolution/mtime/score, removable
# 3: pairs carry match, evidence and verification numbers; near_misses; verification
# 4: a pair that could not be verified has match not_verified (3: other_shot, its evidence
#    starting "not verified"; contract.pair_match reads both)
REPORT_SCHEMA_VERSION = 4



def near_miss_text(report: Report) -> str:
    """What near_misses holds, in words: "N other shots", and "M pairs not verified" when
    some could not be checked (a file unreadable now): those are not other shots."""
    rows = report.get("near_misses") or []
    unchecked = sum(pair_match(r) == NOT_VERIFIED for r in rows)
    text = _count(len(rows) - unchecked, "other shot")
    return text + (f" and {_count(unchecked, 'pair')} not verified" if unchecked else "")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def verification_text(report: Report) -> str:
    """What verification did, in short sentences (the console summary, the gallery)."""
    v = report.get("verification") or {}
    text = [f"{_count(v.get('compared', 0), 'pair')} compared on their pixels."]
    if grouped := v.get("skipped_as_grouped", 0):
        text.append(f"{_count(grouped, 'pair')} already joined through copies, not compared.")
    if apart := v.get("skipped_as_other_shot", 0):
        text.append(f"{_count(apart, 'pair')} between groups already shown to be other "
                    "shots, not compared.")
    if capped := v.get("skipped_per_image", 0):
        limit = v.get("other_shots_per_image", 0)
        text.append(f"{_count(capped, 'pair')} not compared: an image in each had already "
                    f"been found unlike {_count(limit, 'other image')}, the limit per image "
                    "(--max-other-shots; these images look alike to the model: a higher "
                    "threshold tells them apart sooner).")
    text.append(f"Listed apart: {near_miss_text(report)}.")
    return " ".join(text)


def pair_rows(paths: Sequence[str], pairs: Pairs,
              verdicts: Sequence[Verdict] | None) -> list[PairRow]:
    """similar_pairs / near_misses rows: the seed's four keys, then the verdict."""
    out = []
    for k, (a, b, s) in enumerate(zip(pairs.i.tolist(), pairs.j.tolist(), pairs.score.tolist(),
                                      strict=True)):
        row: PairRow = {"index": k, "image1": paths[a], "image2": paths[b],
                               "similarity_score": s}
        if verdicts is not None:
            verdict = verdicts[k]
            row["match"], row["evidence"] = verdict.match, verdict.evidence
            row["verification"] = {n: round(float(v), 4) for n, v in verdict.numbers.items()}
        out.append(row)
    return out


def build_report(
    *,
    timestamp: str,
    folders: Sequence[str],
    rows: Sequence[Row],
    pairs: Pairs,
    groups: Groups,
    settings: PairSettings,
    errors: Sequence[Row],
    model: dict[str, Any],
    index_path: str,
    timings: dict[str, float],
    keep: KeepSettings | None = None,
    decisions: Sequence[GroupDecision] | None = None,
    threshold: float | None = None,
    pair_verdicts: Sequence[Verdict] | None = None,
    near_misses: Pairs | None = None,
    near_miss_verdicts: Sequence[Verdict] | None = None,
    verification: dict[str, Any] | None = None,
    threshold_source: str = "given",
    total_images: int | None = None,
) -> Report:
    """`threshold`: the candidate threshold used (default: settings.threshold).
    `total_images`: the images compared when `rows` holds only those in pairs (a search of
    the on-disk IVF reads rows for its hits only); every other row is a group of one."""
    total = len(rows) if total_images is None else total_images
    keep = keep or KeepSettings()
    if decisions is None:
        decisions = choose_keepers(rows, groups, keep)
    path = [r.path for r in rows]
    similar = pair_rows(path, pairs, pair_verdicts)
    group_list = [group_entry(g, d, rows) for g, d in enumerate(decisions)]
    return {
        "timestamp": timestamp,
        "folder_list": list(folders),
        "total_images_in_folders": total,
        "compare_mode": settings.compare_mode,
        "threshold": settings.cutoff if threshold is None else threshold,
        "number_of_similar_pairs": len(pairs),
        "number_of_unique_groups": total - groups.n_removable,
        "photos_to_remove": groups.n_removable,
        "similar_pairs": similar,
        # extras
        "report_schema_version": REPORT_SCHEMA_VERSION,
        "threshold_source": threshold_source,
        "verification": cast(Verification, verification) or {
            "ran": False, "compared": 0, "skipped_as_grouped": 0, "skipped_as_other_shot": 0,
            "same_bytes": 0, "not_verified": 0, "seconds": 0.0},
        "number_of_near_misses": 0 if near_misses is None else len(near_misses),
        "near_misses": [] if near_misses is None else pair_rows(path, near_misses,
                                                                near_miss_verdicts),
        "compare_scope": settings.compare_scope.replace("-", "_"),  # the seed's spelling
        "sample_ratio": settings.sample_ratio if settings.compare_mode == "sample" else None,
        "seed": settings.seed,
        "similarity": "cosine (inner product of L2-normalised vectors)",
        "model": model,
        "index_path": index_path,
        "number_of_duplicate_groups": len(groups.members),
        "groups": group_list,
        "keep_policy": keep.policy,
        "protected_folders": [os.path.abspath(f) for f in keep.protect],
        "files_removable": sum(len(g["removable"]) for g in group_list),
        "bytes_removable": sum(g["bytes_removable"] for g in group_list),
        "number_of_errors": len(errors),
        "errors": [{"path": r.path, "error": r.error} for r in errors],
        "timings_seconds": {k: round(v, 3) for k, v in timings.items()},
    }


def group_entry(number: int, d: GroupDecision, rows: Sequence[Row]) -> Group:
    """A group as apply, export and the gallery read it: everything needed to act safely."""
    removable = set(d.removable)
    members: list[Member] = []
    for k, (m, prot) in enumerate(zip(d.members.tolist(), d.protected.tolist(), strict=True)):
        r = rows[m]
        role = ("keep" if m == d.keeper else "remove" if m in removable else
                "unverified" if m in d.not_removable else "protected" if prot else "frame")
        members.append({
            "path": r.path, "size": r.size, "mtime_ns": r.mtime_ns,
            "width": r.width, "height": r.height,
            "score_to_keeper": None if d.scores is None else float(d.scores[k]),
            "role": role, "protected": bool(prot),
        })
    return {
        "group": number,
        "size": len(members),
        "keeper": rows[d.keeper].path,
        "keep_reason": d.keep_reason,
        "members": members,
        "removable": [rows[m].path for m in d.removable],
        "bytes_removable": sum(rows[m].size or 0 for m in d.removable),
        "all_protected": bool(d.protected.all()),
        "not_removable": [{"path": rows[m].path, "reason": why}
                          for m, why in sorted(d.not_removable.items())],
        "verify_at_apply": [rows[m].path for m in d.verify_at_apply],
    }


def write_report(report: Report, path: str) -> None:
    atomic_write_json(path, report)
