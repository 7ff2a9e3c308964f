"""A report built by report.json_report.build_report from fixed, hand-made inputs (no model,
no files): every kind of row and group field, so a change of the report's bytes shows."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from imgsim_index.groups.components import connected_components
from imgsim_index.groups.keep import GroupDecision, KeepSettings
from imgsim_index.index.catalog import Row
from imgsim_index.report.json_report import build_report
from imgsim_index.search import Pairs, PairSettings
from imgsim_index.verify.verdict import Verdict


def _row(k: int, name: str, size: int | None, error: str | None = None) -> Row:
    values: dict[str, Any] = {
        "id": k, "path": f"/lib/{name}", "root": "/lib", "size": size,
        "mtime_ns": 1_700_000_000_000_000_000 + k, "width": 640 + k, "height": 480,
        "status": "error" if error else "embedded", "error": error, "segment": "s",
        "added_at": 0.0}
    return Row(**{f.name: values.get(f.name, 0) for f in dataclasses.fields(Row)})


def sample_report() -> Any:
    rows = [_row(0, "a.jpg", 1000), _row(1, "a copy.png", 2000), _row(2, "b.jpg", 300),
            _row(3, "b2.jpg", 310), _row(4, "c.jpg", 50), _row(5, "\udcff.jpg", 60)]
    pairs = Pairs(np.array([0, 2], np.int64), np.array([1, 3], np.int64),
                  np.array([0.998765, 0.97], np.float64))
    near = Pairs(np.array([0], np.int64), np.array([4], np.int64), np.array([0.8], np.float64))
    groups = connected_components(len(rows), pairs.i, pairs.j)
    decisions = [
        GroupDecision(np.array([0, 1]), 0, np.array([False, False]), np.array([False, False]),
                      [1], np.array([1.0, 0.998765]), "original format (JPEG)"),
        GroupDecision(np.array([2, 3]), 2, np.array([False, True]), np.array([False, False]),
                      [], None, "protected", {3: "not shown to be a verified copy"}, ()),
    ]
    return build_report(
        timestamp="20260101_000000", folders=["/lib"], rows=rows, pairs=pairs, groups=groups,
        settings=PairSettings(threshold=0.9, compare_mode="sample", sample_ratio=0.5, seed=7,
                              compare_scope="inter-folder"),
        errors=[_row(9, "bad.jpg", 10, error="cannot identify image file")],
        model={"model": "efficientnet-lite0", "dim": 1280, "weights_id": "abc",
               "preprocessing": {"resize": 256}},
        index_path="/idx", timings={"pair_search": 0.12345, "verify": 1.0},
        keep=KeepSettings("original", ("/lib/keep",)), decisions=decisions, threshold=0.9,
        pair_verdicts=[Verdict("copy", "B resized to 33%", {"scale": 0.333333, "overlap": 1.0}),
                       Verdict("exact", "same bytes")],
        near_misses=near,
        near_miss_verdicts=[Verdict("other_shot", "other shot: 14% of the overlap differs",
                                    {"differing_share": 0.14})],
        verification={"ran": True, "compared": 3, "skipped_as_grouped": 0,
                      "skipped_as_other_shot": 0, "same_bytes": 1, "not_verified": 0,
                      "seconds": 0.5},
        threshold_source="given", total_images=6)
