"""export: report.json's groups -> CSV for spreadsheets, or JSON / JSON Lines for programs,
one row (object) per member file, with the same columns (keys): the member, its group's
keeper and keep_reason, and the member's match and evidence (those of its pair with the
keeper, else of its best pair in the group, naming the other member).

Paths in the report are absolute, so no cell starts with '=', '+', '-' or '@'
and a spreadsheet never reads a file name as a formula.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Iterator
from typing import IO

from imgsim_index.atomic_files import json_text
from imgsim_index.errors import InputError
from imgsim_index.report.contract import Group, PairRow, Report, pair_match

EXPORT_FORMATS = ("csv", "json", "jsonl")
CSV_COLUMNS = ("group", "role", "path", "keeper", "score_to_keeper", "size_bytes", "width",
               "height", "modified", "mtime_ns", "protected", "match", "evidence",
               "keep_reason")


def _modified(mtime_ns: int | None) -> str:
    if mtime_ns is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(mtime_ns / 1e9))


def _verdicts(report: Report) -> dict[frozenset[str], PairRow]:
    """The report's pair rows (similar pairs, then near misses), by their two paths."""
    rows = [*report.get("similar_pairs", []), *report.get("near_misses", [])]
    return {frozenset((r["image1"], r["image2"])): r for r in reversed(rows)}


def _member_verdict(path: str, group: Group,
                    pairs: dict[frozenset[str], PairRow]) -> tuple[str, str]:
    """(match, evidence) of a member: its pair with the keeper, else its best pair in the
    group (the evidence then names the other member); the keeper itself has none."""
    if path == group["keeper"]:
        return "", ""
    row = pairs.get(frozenset((path, group["keeper"])))
    if row is not None:
        return pair_match(row), str(row.get("evidence", ""))
    linked = [r for m in group["members"] if m["path"] != path
              and (r := pairs.get(frozenset((path, m["path"])))) is not None]
    if not linked:
        return "", ""
    best = max(linked, key=lambda r: r["similarity_score"])
    other = best["image2"] if best["image1"] == path else best["image1"]
    return pair_match(best), f"to {other}: {best.get('evidence', '')}"


def csv_rows(report: Report) -> Iterator[tuple[object, ...]]:
    pairs = _verdicts(report)
    for g in report.get("groups", []):
        for m in g["members"]:
            match, evidence = _member_verdict(m["path"], g, pairs)
            yield (g["group"], m["role"], m["path"], g["keeper"], m["score_to_keeper"], m["size"],
                   m["width"], m["height"], _modified(m["mtime_ns"]), m["mtime_ns"],
                   "yes" if m["protected"] else "no", match, evidence, g.get("keep_reason", ""))


def write_export(report: Report, out: IO[str], fmt: str = "csv") -> int:
    """Write the report's groups to `out` (opened with newline=''). Returns the row count.
    In JSON the numbers stay numbers and `protected` is a boolean."""
    if fmt not in EXPORT_FORMATS:
        raise InputError(
            f"unknown export format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    if fmt != "csv":
        objs = [{**(o := dict(zip(CSV_COLUMNS, row, strict=True))),
                 "protected": o["protected"] == "yes"} for row in csv_rows(report)]
        if fmt == "json":
            out.write(json_text(objs, indent=2) + "\n")
        else:
            out.writelines(json_text(o) + "\n" for o in objs)
        return len(objs)
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    n = 0
    for row in csv_rows(report):
        writer.writerow(row)
        n += 1
    return n
