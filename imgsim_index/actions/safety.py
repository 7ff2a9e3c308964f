"""safety: report.json -> what apply checks each file against, and the checks themselves.

A file may be touched only while it is still the one in the report (same size
and mtime_ns, a regular file), is not a keeper nor protected, its keeper is
still there unchanged, and both lie inside the report's input folders, also
once symbolic links are resolved. Each check answers with a reason a user can
act on, or None.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from imgsim_index.errors import ActionError, InputError, ReportError
from imgsim_index.groups.keep import is_frame
from imgsim_index.paths import under_any


@dataclass(frozen=True)
class ReportContext:
    report_path: str
    folders: tuple[str, ...]
    real_folders: tuple[str, ...]
    protected: tuple[str, ...]
    members: dict[str, dict[str, Any]]
    keeper_of: dict[str, str]  # removable path -> its keeper
    keepers: frozenset[str]


# -- the report -----------------------------------------------------------------------
def load_report(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            report = json.load(fh)
    except OSError as exc:
        raise ReportError(f"cannot read report {path}: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ReportError(f"{path} is not a report.json ({exc}); pass the report.json "
                          "that `imgsim-index dedupe` wrote") from None
    if not isinstance(report, dict) or not isinstance(report.get("folder_list"), list):
        raise ReportError(f"{path} is not an imgsim-index report (no folder_list)")
    groups = report.get("groups")
    if (int(report.get("report_schema_version") or 1) < 2 or not isinstance(groups, list)
            or any("removable" not in g or "keeper" not in g for g in groups)):
        raise ReportError(f"{path} was written by an older imgsim-index and names no keepers; "
                          "run `imgsim-index dedupe` again for a report apply can use")
    return report


def report_context(report: dict[str, Any], report_path: str) -> ReportContext:
    folders = tuple(os.path.abspath(f) for f in report["folder_list"])
    members, keeper_of = {}, {}
    for g in report["groups"]:
        for m in g["members"]:
            members[m["path"]] = m
        for p in g["removable"]:
            keeper_of[p] = g["keeper"]
    return ReportContext(
        report_path=os.path.abspath(report_path), folders=folders,
        real_folders=tuple(os.path.realpath(f) for f in folders),
        protected=tuple(report.get("protected_folders") or ()),
        members=members, keeper_of=keeper_of,
        keepers=frozenset(g["keeper"] for g in report["groups"]),
    )


# -- checks ---------------------------------------------------------------------------
def _outside(path: str, ctx: ReportContext) -> str | None:
    if not under_any(path, ctx.folders):
        return "is outside the report's input folders"
    if not under_any(os.path.realpath(path), ctx.real_folders):
        return "resolves (through a symbolic link) to a place outside the report's input folders"
    return None


def _changed(path: str, member: dict[str, Any]) -> str | None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "no longer exists"
    except OSError as exc:
        return f"cannot be examined ({exc.strerror or exc})"
    if stat.S_ISLNK(st.st_mode):
        return "is now a symbolic link"
    if not stat.S_ISREG(st.st_mode):
        return "is not a regular file"
    if st.st_size != member["size"] or st.st_mtime_ns != member["mtime_ns"]:
        return (f"changed since the report (size {member['size']} -> {st.st_size} bytes, "
                f"mtime {member['mtime_ns']} -> {st.st_mtime_ns}); run dedupe again")
    return None


def problem_with(path: str, ctx: ReportContext) -> str | None:
    """Why `path` must not be touched, or None."""
    if path in ctx.keepers:
        return "is a keeper"
    member = ctx.members.get(path)
    if member is None or path not in ctx.keeper_of:
        return "is not a removable file of the report"
    if member.get("protected") or under_any(path, ctx.protected):
        return "is under a protected folder"
    if is_frame(path):
        return "is a frame of a video, not a file; apply acts on whole files only"
    reason = _outside(path, ctx) or _changed(path, member)
    if reason:
        return reason
    keeper = ctx.keeper_of[path]
    reason = _outside(keeper, ctx) or _changed(keeper, ctx.members[keeper])
    if reason:
        return f"its keeper {keeper} {reason}; not touching a copy whose original may be gone"
    return None


def folder_labels(folders: Sequence[str]) -> dict[str, str]:
    """A distinct sub-folder name under --move-to for each input folder."""
    labels: dict[str, str] = {}
    for f in folders:
        base = os.path.basename(f.rstrip(os.sep)) or "root"
        label, k = base, 2
        while label in labels.values():
            label, k = f"{base}-{k}", k + 1
        labels[f] = label
    return labels


def move_target(path: str, folders: Sequence[str], move_to: str) -> str:
    """MOVE_TO/<input folder's name>/<path relative to that folder>."""
    labels = folder_labels(folders)
    inside = [f for f in folders if under_any(path, [f])]
    folder = max(inside, key=len)
    return os.path.join(move_to, labels[folder], os.path.relpath(path, folder))


def check_move_to(move_to: str | None, ctx: ReportContext) -> str:
    if not move_to:
        raise InputError("moving needs a destination folder (--move-to DIR)")
    dest = os.path.abspath(move_to)
    real = os.path.realpath(dest)
    for folder in ctx.real_folders:
        if real == folder or under_any(real, [folder]) or under_any(folder, [real]):
            raise ActionError(
                f"--move-to {dest} overlaps the input folder {folder}; pick a folder outside "
                "the input folders, or the next dedupe would find the moved files again"
            )
    return dest
