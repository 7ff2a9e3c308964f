"""report.json: the seed's keys, spelled exactly as users' scripts parse them, plus extras.

Seed keys: timestamp, folder_list, total_images_in_folders, compare_mode, threshold,
number_of_similar_pairs, number_of_unique_groups, photos_to_remove, similar_pairs
(index, image1, image2, similarity_score; sorted by score, highest first).

groups (largest first): group, size, keeper, members (path, size, mtime_ns, width,
height, score_to_keeper, role keep|remove|protected|frame, protected), removable (paths),
bytes_removable, all_protected. `apply` works from these alone: it re-checks each
removable file's size and mtime_ns and stays inside folder_list.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from imgsim_index.atomic_files import atomic_write_json
from imgsim_index.groups.components import Groups
from imgsim_index.groups.keep import GroupDecision, KeepSettings, choose_keepers
from imgsim_index.index.catalog import Row
from imgsim_index.search import Pairs, PairSettings

# 2: groups carry keeper, members with size/resolution/mtime/score, removable
REPORT_SCHEMA_VERSION = 2


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
) -> dict[str, Any]:
    keep = keep or KeepSettings()
    if decisions is None:
        decisions = choose_keepers(rows, groups, keep)
    path = [r.path for r in rows]
    similar = [
        {"index": k, "image1": path[a], "image2": path[b], "similarity_score": s}
        for k, (a, b, s) in enumerate(
            zip(pairs.i.tolist(), pairs.j.tolist(), pairs.score.tolist(), strict=True)
        )
    ]
    group_list = [group_entry(g, d, rows) for g, d in enumerate(decisions)]
    return {
        "timestamp": timestamp,
        "folder_list": list(folders),
        "total_images_in_folders": len(rows),
        "compare_mode": settings.compare_mode,
        "threshold": settings.threshold,
        "number_of_similar_pairs": len(pairs),
        "number_of_unique_groups": groups.n_unique,
        "photos_to_remove": groups.n_removable,
        "similar_pairs": similar,
        # extras
        "report_schema_version": REPORT_SCHEMA_VERSION,
        "compare_scope": settings.compare_scope,
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


def group_entry(number: int, d: GroupDecision, rows: Sequence[Row]) -> dict[str, Any]:
    """A group as apply, export and the gallery read it: everything needed to act safely."""
    removable = set(d.removable)
    members = []
    for k, (m, prot) in enumerate(zip(d.members.tolist(), d.protected.tolist(), strict=True)):
        r = rows[m]
        role = ("keep" if m == d.keeper else "remove" if m in removable else
                "protected" if prot else "frame")
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
    }


def write_report(report: dict[str, Any], path: str) -> None:
    atomic_write_json(path, report)
