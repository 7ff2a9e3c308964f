"""actions: report.json -> a checked plan -> move, hard-link or delete the removable files.

Rules, checked when planning and again just before each file is touched:
  - the file is still the one in the report (same size and mtime_ns), a regular file
  - it is not a keeper nor protected, and its keeper is still there, unchanged
  - it and its keeper lie inside the report's input folders, also once symlinks are resolved
  - the journal's 'begin' record is on disk before the file is touched

Moves and hard links can be undone from the journal; deletions cannot. A hard
link keeps the replaced file under the journal's originals folder for undo,
unless it was byte-identical to its keeper (then undo copies the keeper back).
An interrupted apply is resumed or undone from its journal: the one operation
it was in the middle of is first finished or put back (see _recover).
"""

from __future__ import annotations

import filecmp
import json
import os
import stat
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import ActionError, InputError, ReportError
from .fileops import (
    keep_original,
    link_over,
    matches,
    move_file,
    part_name,
    remove_if_exists,
    same_file,
)
from .journal import Journal
from .keep import under_any
from .progress import NoProgress, Progress

ACTIONS = ("move", "hardlink", "delete")


@dataclass(frozen=True)
class Operation:
    path: str
    keeper: str
    size: int
    mtime_ns: int
    mode: int  # permission bits, to give a restored file back
    frees: int  # bytes freed in the input folders right away
    held: int = 0  # bytes freed only once the originals kept for undo are deleted
    target: str | None = None  # move: destination
    identical: bool = False  # hardlink: same bytes as the keeper, so no backup is needed


@dataclass(frozen=True)
class Refusal:
    path: str
    reason: str


@dataclass(frozen=True)
class ReportContext:
    report_path: str
    folders: tuple[str, ...]
    real_folders: tuple[str, ...]
    protected: tuple[str, ...]
    members: dict[str, dict[str, Any]]
    keeper_of: dict[str, str]  # removable path -> its keeper
    keepers: frozenset[str]


@dataclass
class Plan:
    action: str
    move_to: str | None
    context: ReportContext
    operations: list[Operation]
    refused: list[Refusal]

    @property
    def bytes_freed(self) -> int:
        return sum(op.frees for op in self.operations)

    @property
    def bytes_held(self) -> int:
        return sum(op.held for op in self.operations)


@dataclass
class ApplyResult:
    journal: str
    action: str
    done: list[Operation]
    refused: list[Refusal]
    backup_dir: str | None
    move_to: str | None = None
    already_done: int = 0  # finished by the interrupted run this one resumed

    @property
    def bytes_freed(self) -> int:
        return sum(op.frees for op in self.done)

    @property
    def bytes_held(self) -> int:
        return sum(op.held for op in self.done)


@dataclass
class UndoResult:
    restored: list[str] = field(default_factory=list)
    not_restored: list[Refusal] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)  # deletions cannot be undone


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


def _examine(path: str, ctx: ReportContext, action: str, move_to: str | None
             ) -> Operation | Refusal:
    reason = problem_with(path, ctx)
    if reason:
        return Refusal(path, reason)
    keeper = ctx.keeper_of[path]
    st, kst = os.stat(path), os.stat(keeper)
    linked = (st.st_dev, st.st_ino) == (kst.st_dev, kst.st_ino)
    frees = 0 if linked or st.st_nlink > 1 else st.st_size
    base = Operation(path, keeper, st.st_size, st.st_mtime_ns, stat.S_IMODE(st.st_mode), frees)
    if action == "move":
        target = move_target(path, ctx.folders, str(move_to))
        if os.path.lexists(target):
            return Refusal(path, f"{target} already exists; not overwriting it")
        return Operation(**{**base.__dict__, "target": target})
    if action == "hardlink":
        if linked:
            return Refusal(path, f"is already a hard link to its keeper {keeper}")
        if st.st_dev != kst.st_dev:
            return Refusal(path, f"is on another filesystem than its keeper {keeper}; hard links "
                                 "cannot cross filesystems (use --move-to or --delete for it)")
        identical = st.st_size == kst.st_size and filecmp.cmp(path, keeper, shallow=False)
        return Operation(**{**base.__dict__, "identical": identical,
                            "frees": frees if identical else 0,
                            "held": 0 if identical else frees})
    return base


# -- planning -------------------------------------------------------------------------
def make_plan(report_path: str, action: str, move_to: str | None = None,
              skip: Collection[str] = ()) -> Plan:
    """What apply would do, file by file, and what it refuses and why. Touches nothing."""
    if action not in ACTIONS:
        raise InputError(f"unknown action {action!r}; choose one of {', '.join(ACTIONS)}")
    ctx = report_context(load_report(report_path), report_path)
    dest = check_move_to(move_to, ctx) if action == "move" else None
    ops: list[Operation] = []
    refused: list[Refusal] = []
    seen: set[str] = set(skip)
    for path in ctx.keeper_of:
        if path in seen:
            continue
        seen.add(path)
        got = _examine(path, ctx, action, dest)
        if isinstance(got, Operation):
            ops.append(got)
        else:
            refused.append(got)
    return Plan(action, dest, ctx, ops, refused)


def default_journal_path(report_path: str, action: str) -> str:
    stamp = time.strftime("%Y%m%d_%H%M%S")
    return os.path.join(os.path.dirname(os.path.abspath(report_path)),
                        f"apply-{action}-{stamp}.jsonl")


def backup_dir_for(journal_path: str) -> str:
    return os.path.splitext(os.path.abspath(journal_path))[0] + "-originals"


# -- acting ---------------------------------------------------------------------------
def _tmp_link_name(path: str, n: int) -> str:
    return os.path.join(os.path.dirname(path), f".imgsim-link-{n}.tmp")


def _begin_record(op: Operation, action: str, n: int, backup_dir: str) -> dict[str, Any]:
    backup = None
    if action == "hardlink" and not op.identical:
        backup = os.path.join(backup_dir, f"{n:06d}{os.path.splitext(op.path)[1][:16]}")
    return {"type": "begin", "n": n, "action": action, "path": op.path, "keeper": op.keeper,
            "target": op.target, "backup": backup, "tmp": _tmp_link_name(op.path, n),
            "size": op.size, "mtime_ns": op.mtime_ns, "mode": op.mode,
            "identical": op.identical}


def _perform(rec: dict[str, Any]) -> None:
    action, path = rec["action"], rec["path"]
    if action == "delete":
        os.unlink(path)
    elif action == "move":
        move_file(path, rec["target"])
    else:
        if rec["backup"]:
            keep_original(path, rec["backup"])
        link_over(path, rec["keeper"], rec["tmp"])


def _recover(rec: dict[str, Any]) -> bool:
    """Bring an operation that was cut short to a clean state. True: it had completed;
    False: it is put back as before (any half-made copy or link removed)."""
    action, path = rec["action"], rec["path"]
    if action == "delete":
        return not os.path.lexists(path)
    if action == "move":
        target = rec["target"]
        remove_if_exists(part_name(target))
        if os.path.lexists(target) and not os.path.lexists(path):
            return True
        if os.path.lexists(target) and matches(target, rec["size"], rec["mtime_ns"]):
            os.unlink(target)  # a copy across filesystems was complete, the source still there
        return False
    if same_file(path, rec["keeper"]):
        return True
    remove_if_exists(rec["tmp"])
    backup = rec["backup"]
    if backup and os.path.lexists(backup):
        if os.path.lexists(path):
            os.unlink(backup)
        else:
            os.replace(backup, path)
    return False


def settle_interrupted(journal: Journal) -> None:
    for rec in journal.interrupted():
        done = _recover(rec)
        journal.append({"type": "done" if done else "rolled_back", "n": rec["n"]})


def _execute(plan: Plan, journal: Journal, progress: Progress) -> ApplyResult:
    backup_dir = str(journal.header["backup_dir"])
    done: list[Operation] = []
    refused = list(plan.refused)
    progress.start(plan.action, len(plan.operations))
    for planned in plan.operations:
        progress.update(1)
        op = _examine(planned.path, plan.context, plan.action, plan.move_to)  # re-check now
        if isinstance(op, Refusal):
            refused.append(op)
            continue
        rec = _begin_record(op, plan.action, journal.next_number(), backup_dir)
        journal.append(rec)
        try:
            _perform(rec)
        except OSError as exc:
            journal.append({"type": "done" if _recover(rec) else "rolled_back", "n": rec["n"]})
            refused.append(Refusal(op.path, f"failed: {exc.strerror or exc}"))
            continue
        journal.append({"type": "done", "n": rec["n"]})
        done.append(op)
    progress.finish()
    journal.append({"type": "end"})
    return ApplyResult(journal.path, plan.action, done, refused,
                       backup_dir if plan.action == "hardlink" else None, plan.move_to)


def apply_plan(plan: Plan, journal_path: str, progress: Progress | None = None) -> ApplyResult:
    """Carry out `plan`, journaling every step to `journal_path` (a new file)."""
    header = {"action": plan.action, "report": plan.context.report_path,
              "folders": list(plan.context.folders), "move_to": plan.move_to,
              "backup_dir": backup_dir_for(journal_path),
              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    with Journal.create(journal_path, header) as journal:
        return _execute(plan, journal, progress or NoProgress())


def resume_apply(journal_path: str, report_path: str | None = None,
                 progress: Progress | None = None) -> ApplyResult:
    """Finish an interrupted apply: settle the operation it stopped in, then do the rest."""
    with Journal.open(journal_path) as journal:
        head = journal.header
        if journal.has("undone") or journal.has("undo_end"):
            raise ActionError(f"{journal.path} has been undone; run apply again for a new plan")
        if journal.has("end"):
            raise ActionError(f"{journal.path} is complete; there is nothing to resume")
        if report_path and os.path.realpath(report_path) != os.path.realpath(head["report"]):
            raise ActionError(f"{journal.path} belongs to {head['report']}, not {report_path}")
        settle_interrupted(journal)
        done = journal.numbers("done")
        finished = {r["path"] for r in journal.begun() if r["n"] in done}
        plan = make_plan(head["report"], head["action"], head["move_to"], skip=finished)
        result = _execute(plan, journal, progress or NoProgress())
        result.already_done = len(finished)
        return result
