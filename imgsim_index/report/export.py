"""export: report.json's groups -> CSV for spreadsheets, or JSON / JSON Lines for programs,
one row (object) per member file, with the same columns (keys).

Paths in the report are absolute, so no cell starts with '=', '+', '-' or '@'
and a spreadsheet never reads a file name as a formula.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Iterator
from typing import IO, Any

from imgsim_index.atomic_files import json_text
from imgsim_index.errors import InputError

EXPORT_FORMATS = ("csv", "json", "jsonl")
CSV_COLUMNS = ("group", "role", "path", "keeper", "score_to_keeper", "size_bytes", "width",
               "height", "modified", "mtime_ns", "protected")


def _modified(mtime_ns: int | None) -> str:
    if mtime_ns is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(mtime_ns / 1e9))


def csv_rows(report: dict[str, Any]) -> Iterator[tuple[object, ...]]:
    for g in report.get("groups", []):
        for m in g["members"]:
            yield (g["group"], m["role"], m["path"], g["keeper"], m["score_to_keeper"], m["size"],
                   m["width"], m["height"], _modified(m["mtime_ns"]), m["mtime_ns"],
                   "yes" if m["protected"] else "no")


def write_export(report: dict[str, Any], out: IO[str], fmt: str = "csv") -> int:
    """Write the report's groups to `out` (opened with newline=''). Returns the row count.
    In JSON the numbers stay numbers and `protected` is a boolean."""
    if fmt not in EXPORT_FORMATS:
        raise InputError(
            f"unknown export format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    if fmt != "csv":
        objs = [{**dict(zip(CSV_COLUMNS, row, strict=True)), "protected": row[-1] == "yes"}
                for row in csv_rows(report)]
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
