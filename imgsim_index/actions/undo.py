"""undo: an apply journal -> moved and trashed files back in place, hard-linked files restored,
and the report's index told (index_sync.py).

Operations are undone newest first, each recorded as 'undone' in the same
journal, so an interrupted undo can simply be run again. Nothing is
overwritten: a file that came back meanwhile, or a link that was changed
after apply, is reported and left as it is. A file whose bytes differ from the
content digest recorded when it was applied is not put back as if it were the
original (after --hardlink both names are one file: an edit of either edits
both). Deleted files cannot come back. Undo runs under the index's writer lock.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

from imgsim_index.actions.file_ops import (
    copy_over,
    matches,
    move_file,
    put_back,
    remove_if_exists,
    same_file,
)
from imgsim_index.actions.index_sync import index_state, sync_index
from imgsim_index.actions.journal import Journal
from imgsim_index.actions.plan import (
    Refusal,
    UndoResult,
    index_lock,
    settle_interrupted,
)
from imgsim_index.errors import ActionError
from imgsim_index.ingest.identity import file_digest
from imgsim_index.paths import under_any
from imgsim_index.progress import NoProgress, Progress


def _outside_journal_scope(rec: dict[str, Any], head: dict[str, Any]) -> str | None:
    """A journal is a file anyone could edit: stay inside the places apply could have used."""
    if not under_any(rec["path"], head["folders"]):
        return "the journal names a file outside the report's input folders"
    if rec["action"] == "move" and not under_any(rec["target"], [head["move_to"]]):
        return "the journal names a destination outside --move-to"
    if rec.get("backup") and not under_any(rec["backup"], [head["backup_dir"]]):
        return "the journal names an original outside its originals folder"
    if rec["action"] == "trash":
        return _outside_trash(rec)
    return None


def _outside_trash(rec: dict[str, Any]) -> str | None:
    """A trashed file must come back from TRASH/files/NAME with TRASH/info/NAME.trashinfo."""
    target, info = rec.get("target"), rec.get("trashinfo")
    if not target or not info:
        return "the journal does not say where in the trash the file went; look for it there"
    trash = os.path.dirname(os.path.dirname(target))
    expected = os.path.join(trash, "info", os.path.basename(target) + ".trashinfo")
    if os.path.basename(os.path.dirname(target)) != "files" or info != expected:
        return "the journal names a place outside a trash folder"
    return None


def _changed_since_apply(path: str, rec: dict[str, Any], note: str = "") -> str | None:
    """Why `path` is not the original any more: its bytes differ from the content digest
    recorded when it was applied (journals without one are checked by size and mtime only)."""
    if not rec.get("digest"):
        return None
    try:
        same = file_digest(path) == rec["digest"]
    except OSError as exc:
        return f"cannot restore the original: {path} cannot be read ({exc.strerror or exc})"
    return None if same else f"cannot restore the original: {path} changed since apply{note}"


def _undo_trash(rec: dict[str, Any]) -> str | None:
    path, target, size, mtime = rec["path"], rec["target"], rec["size"], rec["mtime_ns"]
    if not os.path.lexists(target) and matches(path, size, mtime):
        return None  # put back already
    if os.path.lexists(path):
        return f"{path} exists again; the trashed file stays in the trash at {target}"
    if not matches(target, size, mtime):
        return (f"the trashed file is no longer in the trash at {target} as it was (emptied "
                "or restored elsewhere); left as it is")
    changed = _changed_since_apply(target, rec)
    if changed:
        return f"{changed}; it stays in the trash at {target}"
    move_file(target, path)
    remove_if_exists(rec["trashinfo"])
    return None


def _undo_move(rec: dict[str, Any]) -> str | None:
    path, target, size, mtime = rec["path"], rec["target"], rec["size"], rec["mtime_ns"]
    if not os.path.lexists(target) and matches(path, size, mtime):
        return None  # put back already, by an undo that was interrupted before recording it
    if os.path.lexists(path):
        return f"{path} exists again; the moved file stays at {target}"
    if not matches(target, size, mtime):
        return f"the moved file {target} is missing or changed since apply; left as it is"
    changed = _changed_since_apply(target, rec)
    if changed:
        return f"{changed}; left as it is"
    move_file(target, path)
    return None


def _undo_hardlink(rec: dict[str, Any]) -> str | None:
    path, keeper, backup = rec["path"], rec["keeper"], rec["backup"]
    size, mtime = rec["size"], rec["mtime_ns"]
    if not same_file(path, keeper):
        if matches(path, size, mtime) and not (backup and os.path.lexists(backup)):
            return None  # restored already
        kept = f" (its original is kept at {backup})" if backup else ""
        return f"{path} is no longer a link to {keeper}; left as it is{kept}"
    if backup:
        if not matches(backup, size, mtime):
            return f"the original kept at {backup} is missing or changed; cannot restore {path}"
        changed = _changed_since_apply(backup, rec)
        if changed:
            return changed
        put_back(backup, path)
        return None
    if os.path.getsize(keeper) != size:
        return f"its keeper {keeper} changed since apply; cannot restore an identical copy"
    changed = _changed_since_apply(
        path, rec, f" (since --hardlink it is one file with its keeper {keeper}: an edit of "
                   "either name edited both, and the original bytes are gone)")
    if changed:
        return changed
    copy_over(keeper, path, mtime, int(rec["mode"]))
    return None


_UNDO = {"move": _undo_move, "hardlink": _undo_hardlink, "trash": _undo_trash}


def _prune_empty_folders(start: str, stop: str) -> None:
    """Remove the folders under `stop` that undo has emptied, from `start` upwards."""
    folder = os.path.abspath(start)
    while under_any(folder, [stop]):
        try:
            os.rmdir(folder)  # only ever succeeds on an empty folder
        except OSError:
            return
        folder = os.path.dirname(folder)


def undo(journal_path: str, progress: Progress | None = None, wait: bool = False
         ) -> UndoResult:
    """Undo the moves and hard links recorded in an apply journal (finished or not)."""
    progress = progress or NoProgress()
    result = UndoResult()
    with Journal.open(journal_path) as journal, index_lock(journal.header.get("index"), wait):
        head = journal.header
        if head.get("action") == "delete":
            n = len(journal.numbers("done"))
            raise ActionError(f"{journal.path} records an apply that deleted {n} files; "
                              "deleted files cannot be restored, so there is nothing to undo")
        result.not_restored.extend(settle_interrupted(journal))
        done, undone = journal.numbers("done"), journal.numbers("undone")
        placed = {int(r["n"]): r for r in journal.records if r.get("type") == "done"}
        todo = [{**r, **{k: placed[r["n"]][k] for k in ("target", "trashinfo")
                         if placed[r["n"]].get(k)}}
                for r in reversed(journal.begun()) if r["n"] in done and r["n"] not in undone]
        progress.start("undo", len(todo))
        for rec in todo:
            progress.update(1)
            if rec["action"] == "delete":
                result.deleted.append(rec["path"])
                continue
            try:
                problem = _outside_journal_scope(rec, head) or _UNDO[rec["action"]](rec)
            except OSError as exc:
                problem = f"failed: {exc.strerror or exc}"
            if problem:
                result.not_restored.append(Refusal(rec["path"], problem))
                continue
            journal.write({"type": "undone", "n": rec["n"]})
            result.restored.append(rec["path"])
            if rec["action"] == "move":
                _prune_empty_folders(os.path.dirname(rec["target"]), head["move_to"])
        progress.finish()
        with contextlib.suppress(OSError):
            os.rmdir(head["backup_dir"])  # when every original has gone back
        if result.restored or index_state(journal) != "undone":
            result.index = sync_index(journal, undoing=True)  # not again once recorded
        journal.write({"type": "undo_end"})
    return result
