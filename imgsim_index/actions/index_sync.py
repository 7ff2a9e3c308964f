"""index_sync: an apply journal -> the report's index told where each file went.

After apply, a moved or trashed file's row takes its new path (id and vector kept;
the new path lies outside the index's folders, so the row is parked and a dedupe
leaves it out), a deleted file's row goes, and a hard-linked file's row is set aside
as an alias of its keeper (the same file under a second name: listed once, by the
keeper's row; its vector kept, see Catalog.set_alias). After undo, the rows are put
back. The update is derived from
the journal alone (an operation is applied when it is 'done' and not 'undone'),
so it can be run again at any time with the same result: `apply --resume` and
`undo` run it, which reconciles a crash between the file operations and the
catalog update. A row moves only while the file at its new path is the one
indexed: the same identity (device, inode), or else the same content digest.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from imgsim_index.actions.file_ops import same_file
from imgsim_index.actions.journal import Journal
from imgsim_index.errors import ImgsimError
from imgsim_index.index.catalog import Catalog
from imgsim_index.ingest.identity import file_digest


@dataclass
class IndexSync:
    index: str
    renamed: int = 0
    removed: int = 0
    relinked: int = 0
    error: str | None = None  # why the index could not be updated (it is left as it was)


def _where(rec: dict[str, Any]) -> str | None:
    """Where an applied operation left the file's name: the new path, or None (gone)."""
    return rec.get("target") if rec["action"] in ("move", "trash") else None


def _identity(path: str, digest_of: Callable[[], str | None]
              ) -> tuple[int, int, str | None] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino, digest_of()


def _rename(cat: Catalog, old: str, new: str) -> int:
    """Move the row of `old` to `new` when the file at `new` is the indexed one; a row
    whose file cannot be matched goes (the next build embeds what is there)."""
    row = cat.row_of(old)
    if row is None:
        return 0
    try:
        st = os.stat(new)
    except OSError:
        return 0  # not there (yet): nothing to record
    digest = row.digest
    if (st.st_dev, st.st_ino) != (row.dev, row.ino):  # copied across filesystems
        try:
            now = file_digest(new)
        except OSError:
            now = None
        if now is None or now != digest:
            cat.delete_paths([old])
            return 0
    return int(cat.rename_path(old, new, st.st_dev, st.st_ino, digest))


def _link(cat: Catalog, path: str, keeper: str, applied: bool, seq: int) -> int:
    """A hard link made by apply: the linked name's row is set aside while it is the
    keeper's file (an alias, not a second image), and put back by undo (as commit `seq`)."""
    if not applied:
        back = cat.restore_alias(path, seq)
        return max(int(back), _relink(cat, path))
    if same_file(path, keeper):
        return int(cat.set_alias(path, keeper))
    return _relink(cat, path)


def _relink(cat: Catalog, path: str) -> int:
    """Record the identity and digest of the file now at `path` (restored by undo, or no
    longer the keeper's file)."""
    def digest() -> str | None:
        try:
            return file_digest(path)
        except OSError:
            return None

    got = _identity(path, digest)
    if got is None or cat.row_of(path) is None:
        return 0
    cat.set_identity(path, got[0], got[1], got[2] or "")
    return 1


def sync_index(journal: Journal, undoing: bool = False) -> IndexSync:
    """Bring the index named in the journal's header in line with the journal, in one
    transaction under the writer lock, and record that in the journal. Never raises for
    the index: a locked or missing index is returned as `error`, the files stay as they are."""
    from imgsim_index.index.store import IndexStore

    head = journal.header
    result = IndexSync(str(head.get("index") or ""))
    if not result.index:
        return result  # a journal written before apply updated the index
    done, undone = journal.numbers("done"), journal.numbers("undone")
    finished = {int(r["n"]): r for r in journal.records if r.get("type") == "done"}
    try:
        store = IndexStore.open_updater(result.index)
    except (ImgsimError, OSError) as exc:
        result.error = str(exc)
        return result
    try:
        cat = store.catalog
        with cat.transaction():
            seq = cat.next_seq()  # a commit of its own: searches kept per commit see it
            for rec in journal.begun():
                n = int(rec["n"])
                if n not in done:
                    continue
                rec = {**rec, **{k: v for k, v in finished[n].items() if k == "target"}}
                applied = n not in undone
                if rec["action"] == "hardlink":
                    result.relinked += _link(cat, rec["path"], rec["keeper"], applied, seq)
                elif rec["action"] == "delete":
                    result.removed += cat.delete_paths([rec["path"]]) if applied else 0
                elif _where(rec):
                    old, new = (rec["path"], _where(rec)) if applied else (_where(rec),
                                                                           rec["path"])
                    result.renamed += _rename(cat, str(old), str(new))
    except ImgsimError as exc:
        result.error = str(exc)
        return result
    finally:
        store.close()
    journal.write({"type": "index", "state": "undone" if undoing else "applied",
                     "renamed": result.renamed, "removed": result.removed,
                     "relinked": result.relinked})
    return result


def index_state(journal: Journal) -> str | None:
    """'applied' or 'undone': what the last index update recorded in the journal did."""
    states = [r.get("state") for r in journal.records if r.get("type") == "index"]
    return str(states[-1]) if states else None
