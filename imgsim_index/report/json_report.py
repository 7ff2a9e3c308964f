"""report.json: the seed's keys, spelled exactly as users' scripts parse them, plus extras.

Seed keys: timestamp, folder_list, total_images_in_folders, compare_mode, threshold,
number_of_similar_pairs, number_of_unique_groups, photos_to_remove, similar_pairs
(index, image1, image2, similarity_score; sorted by score, highest first).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..catalog import Row
from ..fsutil import atomic_write_json
from ..groups import Groups
from ..pairs import Pairs, PairSettings

REPORT_SCHEMA_VERSION = 1


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
) -> dict[str, Any]:
    path = [r.path for r in rows]
    similar = [
        {"index": k, "image1": path[a], "image2": path[b], "similarity_score": s}
        for k, (a, b, s) in enumerate(
            zip(pairs.i.tolist(), pairs.j.tolist(), pairs.score.tolist(), strict=True)
        )
    ]
    group_list = [
        {"group": g, "size": len(m), "members": [path[x] for x in m.tolist()]}
        for g, m in enumerate(groups.members)
    ]
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
        "number_of_errors": len(errors),
        "errors": [{"path": r.path, "error": r.error} for r in errors],
        "timings_seconds": {k: round(v, 3) for k, v in timings.items()},
    }


def write_report(report: dict[str, Any], path: str) -> None:
    atomic_write_json(path, report)
