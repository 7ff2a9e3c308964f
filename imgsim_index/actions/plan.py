"""actions: report.json -> a checked plan -> move, hard-link, trash or delete the removable files.

Every file passes safety.problem_with when planning and again just before it
is touched, and the journal's 'begin' record is on disk before it is touched.

Moves, hard links and trashing can be undone from the journal; deletions cannot.
Once the files are done, the report's index is told where they went
(index_sync.py), so the next dedupe neither lists nor refuses them. A hard
link keeps the replaced file under the journal's originals folder for undo,
unless it was byte-identical to its keeper (then undo copies the keeper back).
An interrupted apply is resumed or undone from its journal: the one operation
it was in the middle of is first finished or put back (see _recover).

A failure of one file (a destination folder that cannot be made, a name too
long, a full disk, no permission) is put back, journalled with its reason, and
the rest go on; ApplyResult.failed lists them. A journal that cannot be written
stops the run before the next file is touched.
"""

from __future__ import annotations

import contextlib
import filecmp
import os
import stat
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from typing import Any

from imgsim_index.actions.file_ops import (
    DestinationTaken,
    keep_original,
    link_over,
    matches,
    move_file,
    part_name,
    remove_if_exists,
    same_file,
)
from imgsim_index.actions.index_sync import IndexSync, index_state, sync_index
from imgsim_index.actions.journal import Journal
from imgsim_index.actions.safety import (
    ReportContext,
    check_move_to,
    load_report,
    move_target,
    problem_with,
    report_context,
)
from imgsim_index.actions.trash import find_trashed, send_to_trash
from imgsim_index.errors import ActionError, InputError
from imgsim_index.ingest.identity import FileKey, normal_path
from imgsim_index.progress import NoProgress, Progress
from imgsim_index.report.contract import Report

ACTIONS = ("move", "hardlink", "trash", "delete")


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
    name: str = ""  # as the report spells it (path is normalised)
    key: FileKey = (0, 0)  # device and inode when planned
    digest: str | None = None  # content digest when planned (the index's, checked equal)


@dataclass(frozen=True)
class Refusal:
    path: str
    reason: str


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
    failed: list[Refusal] = field(default_factory=list)  # tried, failed, put back
    index: IndexSync | None = None  # how the report's index was updated

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
    index: IndexSync | None = None


def _examine(name: str, ctx: ReportContext, action: str, move_to: str | None
             ) -> Operation | Refusal:
    reason = problem_with(name, ctx)
    if reason:
        return Refusal(name, reason)
    path, keeper = normal_path(name), normal_path(ctx.keeper_of[name])
    try:
        st, kst = os.stat(path), os.stat(keeper)
    except OSError as exc:  # it vanished a moment after the checks
        return Refusal(name, f"cannot be examined ({exc.strerror or exc})")
    linked = (st.st_dev, st.st_ino) == (kst.st_dev, kst.st_ino)
    frees = 0 if linked or st.st_nlink > 1 else st.st_size
    row = ctx.index_rows.get(path)
    base = Operation(path, keeper, st.st_size, st.st_mtime_ns, stat.S_IMODE(st.st_mode), frees,
                     name=name, key=(st.st_dev, st.st_ino), digest=row.digest if row else None)
    if action == "move":
        target = move_target(path, ctx.folders, str(move_to))
        if os.path.lexists(target):
            return Refusal(name, f"{target} already exists; not overwriting it")
        return Operation(**{**base.__dict__, "target": target})
    if action == "hardlink":
        if linked:
            return Refusal(name, f"is already a hard link to its keeper {keeper}")
        if st.st_dev != kst.st_dev:
            return Refusal(name, f"is on another filesystem than its keeper {keeper}; hard links "
                                 "cannot cross filesystems (use --move-to or --delete for it)")
        identical = st.st_size == kst.st_size and filecmp.cmp(path, keeper, shallow=False)
        return Operation(**{**base.__dict__, "identical": identical,
                            "frees": frees if identical else 0,
                            "held": 0 if identical else frees})
    return base


# -- planning -------------------------------------------------------------------------
def make_plan(report_path: str, action: str, move_to: str | None = None,
              skip: Collection[str] = (), report: Report | None = None,
              move_root: str | None = None) -> Plan:
    """What apply would do, file by file, and what it refuses and why. Touches nothing.
    `report`: the report's content when it is not read from `report_path` (a reviewed
    report of a dry run, never written). `move_root`: a folder `move_to` must resolve
    inside (a relative `move_to` is taken under it), for callers that take the
    destination from someone else (the service's review page)."""
    if action not in ACTIONS:
        raise InputError(f"unknown action {action!r}; choose one of {', '.join(ACTIONS)}")
    ctx = report_context(report if report is not None else load_report(report_path),
                         report_path)
    dest = check_move_to(move_to, ctx, move_root) if action == "move" else None
    ops: list[Operation] = []
    refused: list[Refusal] = []
    finished = {normal_path(p) for p in skip}
    planned: dict[FileKey, str] = {}
    for name in ctx.keeper_of:
        if normal_path(name) in finished:
            continue  # done by the interrupted run being resumed
        got = _examine(name, ctx, action, dest)
        if isinstance(got, Operation) and got.key in planned:
            got = Refusal(name, f"is the same file as {planned[got.key]}, already planned "
                                "(another name for it)")
        if isinstance(got, Operation):
            planned[got.key] = got.path
            ops.append(got)
        else:
            refused.append(got)
    return Plan(action, dest, ctx, ops, refused)


def default_journal_path(report_path: str, action: str) -> str:
    """A new name beside the report: time and process id, then _2, _3... if taken, so two
    applies in the same second never share a journal (Journal.create refuses to reuse one)."""
    stamp = f"{time.strftime('%Y%m%d_%H%M%S')}-{os.getpid()}"
    base = os.path.join(os.path.dirname(os.path.abspath(report_path)), f"apply-{action}-{stamp}")
    path, k = f"{base}.jsonl", 2
    while os.path.lexists(path):
        path, k = f"{base}_{k}.jsonl", k + 1
    return path


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
            "identical": op.identical, "dev": op.key[0], "ino": op.key[1], "digest": op.digest}


def _perform(rec: dict[str, Any]) -> dict[str, Any]:
    """Do one operation; what the 'done' record must add (where a trashed file went)."""
    action, path = rec["action"], rec["path"]
    if action == "trash":
        got = send_to_trash(path, _key(rec))
        return {"target": got.path, "trashinfo": got.info}
    if action == "delete":
        os.unlink(path)
    elif action == "move":
        move_file(path, rec["target"])
    else:
        if rec["backup"]:
            keep_original(path, rec["backup"])
        link_over(path, rec["keeper"], rec["tmp"])
    return {}


def _recover(rec: dict[str, Any]) -> bool:
    """Bring an operation that was cut short to a clean state. True: it had completed;
    False: it is put back as before (any half-made copy or link removed)."""
    action, path = rec["action"], rec["path"]
    if action in ("delete", "trash"):
        return not os.path.lexists(path)
    original = matches(path, rec["size"], rec["mtime_ns"])
    if action == "move":
        target = rec["target"]
        remove_if_exists(part_name(target))
        if not os.path.lexists(target):
            return False
        if original and _made_here(target, rec):
            os.unlink(target)  # both names are whole: the source was never removed
            return False
        return not original  # a target that is not ours (another process's) stays
    if same_file(path, rec["keeper"]):
        return True
    remove_if_exists(rec["tmp"])
    backup = rec["backup"]
    if backup and os.path.lexists(backup):
        if original:
            os.unlink(backup)  # the original is still in place
        elif not os.path.lexists(path):
            os.replace(backup, path)
    return False


def _made_here(target: str, rec: dict[str, Any]) -> bool:
    """Did this operation make `target`: a second name of the source (the same device and
    inode as recorded), or a whole copy of it on another filesystem?"""
    try:
        st = os.lstat(target)
    except OSError:
        return False
    key = _key(rec)
    if key is None or (st.st_dev, st.st_ino) == key:
        return matches(target, rec["size"], rec["mtime_ns"])
    return st.st_dev != key[0] and matches(target, rec["size"], rec["mtime_ns"])


def settle_interrupted(journal: Journal) -> list[Refusal]:
    """Finish or put back every operation cut short; those that cannot be settled now
    (recovery itself fails) stay open in the journal and are returned with the reason."""
    unsettled = []
    for rec in journal.interrupted():
        try:
            done = _recover(rec)
        except OSError as exc:
            unsettled.append(Refusal(rec["path"], f"cannot be settled after an interrupted "
                                                  f"{rec['action']}: {exc.strerror or exc}"))
            continue
        journal.write({"type": "done" if done else "rolled_back", "n": rec["n"],
                         **(_trash_place(rec) if done else {})})
    return unsettled


def _key(rec: dict[str, Any]) -> FileKey | None:
    """The identity a begin record gives the file (absent in older journals)."""
    return (int(rec["dev"]), int(rec["ino"])) if "dev" in rec and "ino" in rec else None


def _trash_place(rec: dict[str, Any]) -> dict[str, Any]:
    """Where an interrupted trashing put the file, looked up in the trash."""
    if rec["action"] != "trash":
        return {}
    got = find_trashed(rec["path"], _key(rec))
    return {"target": got.path, "trashinfo": got.info} if got else {}


def _try(rec: dict[str, Any], journal: Journal) -> str | None:
    """Perform one journalled operation; on failure put it back and say why."""
    try:
        placed = _perform(rec)
    except DestinationTaken as exc:  # nothing was touched: no recovery, the target is not ours
        why = f"failed: {exc.filename} already exists; not overwriting it"
        journal.write({"type": "rolled_back", "n": rec["n"], "error": why})
        return why
    except (OSError, ActionError) as exc:
        why = (f"failed: {getattr(exc, 'strerror', None) or exc}"
               + (f" ({exc.filename})" if isinstance(exc, OSError) and exc.filename else ""))
        try:
            state = "done" if _recover(rec) else "rolled_back"
        except OSError as again:  # left open: undo or --resume settles it later
            return f"{why}; putting it back failed too ({again.strerror or again})"
        journal.write({"type": state, "n": rec["n"], "error": why,
                         **(_trash_place(rec) if state == "done" else {})})
        return None if state == "done" else why
    journal.write({"type": "done", "n": rec["n"], **placed})
    return None


def _execute(plan: Plan, journal: Journal, progress: Progress) -> ApplyResult:
    backup_dir = str(journal.header["backup_dir"])
    done: list[Operation] = []
    refused = list(plan.refused)
    failed: list[Refusal] = []
    progress.start(plan.action, len(plan.operations))
    for planned in plan.operations:
        progress.update(1)
        op = _examine(planned.name or planned.path, plan.context, plan.action,
                      plan.move_to)  # re-check now
        if isinstance(op, Refusal):
            refused.append(op)
            continue
        rec = _begin_record(op, plan.action, journal.next_number(), backup_dir)
        journal.write(rec)
        why = _try(rec, journal)
        if why:
            failed.append(Refusal(op.path, why))
        else:
            done.append(op)
    progress.finish()
    synced = sync_index(journal)
    journal.write({"type": "end", "failed": len(failed)})
    return ApplyResult(journal.path, plan.action, done, refused,
                       backup_dir if plan.action == "hardlink" else None, plan.move_to,
                       failed=failed, index=synced)


@contextlib.contextmanager
def index_lock(index_path: str | None, wait: bool = False) -> Iterator[None]:
    """Hold the writer lock of the index a report or journal is bound to, so that no other
    apply, undo, build or serve changes the files' index (or acts on the same files) while
    this run plans, acts and updates it. IndexLockedError names another holder; `wait`
    queues behind it. An index that no longer exists has no lock to take."""
    from imgsim_index.index.store import IndexStore

    if not index_path or not IndexStore.exists(index_path):
        yield
        return
    with IndexStore.writer_lock(index_path, wait):
        yield


def report_index(report_path: str) -> str:
    """The index folder a report is bound to."""
    return str(load_report(report_path)["index_path"])


def apply_plan(plan: Plan, journal_path: str, progress: Progress | None = None,
               wait: bool = False) -> ApplyResult:
    """Carry out `plan`, journaling every step to `journal_path` (a new file), under the
    index's writer lock (hold `index_lock` around make_plan too, so nothing changes between
    planning and acting; every file is checked again just before it is touched anyway)."""
    header = {"action": plan.action, "report": plan.context.report_path,
              "folders": list(plan.context.folders), "move_to": plan.move_to,
              "backup_dir": backup_dir_for(journal_path), "index": plan.context.index_path,
              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    with index_lock(plan.context.index_path, wait), \
            Journal.create(journal_path, header) as journal:
        return _execute(plan, journal, progress or NoProgress())


def apply_report(report_path: str, action: str, move_to: str | None = None, *,
                 review: Callable[[], str] | None = None, journal_path: str | None = None,
                 move_root: str | None = None, progress: Progress | None = None,
                 wait: bool = False, on_plan: Callable[[Plan, str], None] | None = None
                 ) -> ApplyResult:
    """The apply flow every surface runs (`apply --yes`, api.apply, the review page), with
    one locking rule: the report's index is locked from planning to the index update, so
    no build, serve or other apply changes the files or the index in between.

    `review`: writes the reviewed report (the user's choices) under the lock and returns
    its path, which is then planned and named in the journal. `journal_path`: default
    beside the (reviewed) report. `move_root`: see make_plan. `on_plan(plan, journal)`:
    called once the plan is made, before any file is touched (the CLI prints refusals)."""
    with index_lock(report_index(report_path), wait):
        if review is not None:
            report_path = review()
        plan = make_plan(report_path, action, move_to, move_root=move_root)
        journal = journal_path or default_journal_path(report_path, action)
        if on_plan is not None:
            on_plan(plan, journal)
        return apply_plan(plan, journal, progress, wait)


def resume_apply(journal_path: str, report_path: str | None = None,
                 progress: Progress | None = None, wait: bool = False) -> ApplyResult:
    """Finish an interrupted apply: settle the operation it stopped in, then do the rest
    (under the index's writer lock)."""
    with Journal.open(journal_path) as journal, index_lock(journal.header.get("index"), wait):
        head = journal.header
        if journal.has("undone") or journal.has("undo_end"):
            if head.get("index") and index_state(journal) == "applied":
                raise ActionError(f"{journal.path} has been undone, but its index still "
                                  f"lists the files where apply put them; run undo "
                                  f"{journal.path} again to update it")
            raise ActionError(f"{journal.path} has been undone; run apply again for a new plan")
        if journal.has("end"):
            if head.get("index") and index_state(journal) != "applied":
                # the files were done but the index could not be told (it was locked)
                return ApplyResult(journal.path, head["action"], [], [], None,
                                   head["move_to"], index=sync_index(journal))
            raise ActionError(f"{journal.path} is complete; there is nothing to resume")
        if report_path and os.path.realpath(report_path) != os.path.realpath(head["report"]):
            raise ActionError(f"{journal.path} belongs to {head['report']}, not {report_path}")
        unsettled = settle_interrupted(journal)
        if unsettled:
            r = unsettled[0]
            raise ActionError(f"{r.path} {r.reason}; fix that, then run --resume again")
        done = journal.numbers("done")
        finished = {r["path"] for r in journal.begun() if r["n"] in done}
        plan = make_plan(head["report"], head["action"], head["move_to"], skip=finished)
        result = _execute(plan, journal, progress or NoProgress())
        result.already_done = len(finished)
        return result
