"""safety: report.json -> what apply checks each file against, and the checks themselves.

A file may be touched only while it is still the one in the report (same size
and mtime_ns, a regular file), is not a keeper nor protected, its keeper is
still there unchanged (its content digest too), both lie inside the report's
input folders (also once symbolic links are resolved), and the index shows it to
be a verified copy of its keeper (groups/verified.py, the rule dedupe lists
removable files by): equal content digests; or a chain of pairs a dedupe
verified as exact or copy and recorded in the index, each pair's rows unchanged
since and its score of stored vectors at or above the model's calibrated floor
(verified.copy_floor); or, where no such pair is recorded (a `--verify off`
report, an index from an older version), a score at or above that floor and a
verification of the two files done now (`verify_files`). The report's threshold,
matches, evidence and scores play no part. Each check answers with a reason a
user can act on, or None.

Paths are compared normalised (`d/sub/../a.png` is `d/a.png`) and files by
identity (device, inode): a removable file that is a keeper under another name
is refused. The report is bound to the index it was made from (`index_path`):
a file is touched only when it lies inside the folders that index was built
from, the index holds it, and it is still the same file (device, inode) with
the same bytes (content digest) as when it was indexed. Editing the report
cannot widen that.
"""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from imgsim_index.errors import ActionError, ImgsimError, InputError, ReportError
from imgsim_index.groups.keep import is_frame
from imgsim_index.groups.verified import CopyEvidence, copy_floor, screen
from imgsim_index.index.catalog import Row, VerifiedPair
from imgsim_index.ingest.identity import (
    FileKey,
    file_digest,
    file_key,
    normal_path,
    stamp_trusted,
    stat_stamp,
)
from imgsim_index.paths import under_any
from imgsim_index.report.contract import Member, Report, as_report

if TYPE_CHECKING:
    from imgsim_index.verify.verdict import Verdict


@dataclass(frozen=True)
class ReportContext:
    report_path: str
    folders: tuple[str, ...]
    real_folders: tuple[str, ...]
    protected: tuple[str, ...]
    members: dict[str, Member]
    keeper_of: dict[str, str]  # removable path -> its keeper
    keepers: frozenset[str]  # normalised
    index_rows: dict[str, Row]  # the index's rows for the report's paths (normalised)
    index_roots: tuple[str, ...]  # the folders the index was built from
    keeper_keys: dict[FileKey, str]  # identity of each keeper (when it was planned) -> keeper
    index_path: str = ""  # the index the report was made from (apply updates it)
    # removable (normalised) -> why the index does not show it to be a verified copy of
    # its keeper (groups/verified.py)
    not_duplicate: dict[str, str] = field(default_factory=dict)
    # path -> its stat (identity.stat_stamp) when its digest last matched the index: a
    # keeper with many copies is read once, not once per copy and check; an edit changes
    # the stat, so it is still seen
    digest_checked: dict[str, tuple[int, ...]] = field(default_factory=dict)


# -- the report -----------------------------------------------------------------------
def load_report(path: str) -> Report:
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
    if (_int(report.get("report_schema_version")) < 2 or not isinstance(groups, list)
            or any(not isinstance(g, dict) or "removable" not in g or "keeper" not in g
                   for g in groups)):
        raise ReportError(f"{path} was written by an older imgsim-index and names no keepers; "
                          "run `imgsim-index dedupe` again for a report apply can use")
    problem = _malformed(report)
    if problem:
        raise ReportError(f"{path} is damaged: {problem}; run `imgsim-index dedupe` again")
    return as_report(report)


def _int(value: Any) -> int:
    try:
        return int(value or 1)
    except (TypeError, ValueError):
        return 0


def _malformed(report: dict[str, Any]) -> str | None:
    """The first field of a report that apply cannot use, named as in the file."""
    def text_list(v: Any) -> bool:
        return isinstance(v, list) and all(isinstance(x, str) for x in v)

    if not text_list(report["folder_list"]):
        return "folder_list must be a list of folder names"
    if not isinstance(report.get("index_path"), str):
        return "index_path must name the index the report was made from"
    if not text_list(report.get("protected_folders") or []):
        return "protected_folders must be a list of folder names"
    for k, g in enumerate(report["groups"]):
        if not isinstance(g["keeper"], str):
            return f"groups[{k}].keeper must be a path"
        if not text_list(g["removable"]):
            return f"groups[{k}].removable must be a list of paths"
        members = g.get("members")
        if not isinstance(members, list):
            return f"groups[{k}].members must be a list"
        for i, m in enumerate(members):
            where = f"groups[{k}].members[{i}]"
            if not isinstance(m, dict) or not isinstance(m.get("path"), str):
                return f"{where}.path must be a path"
            for key in ("size", "mtime_ns"):
                if type(m.get(key)) is not int:
                    return f"{where}.{key} must be an integer"
        known = {m["path"] for m in members}
        for p in [g["keeper"], *g["removable"]]:
            if p not in known:
                return f"groups[{k}] names {p} but has no member entry for it"
    return None


@dataclass(frozen=True)
class _IndexView:
    """What apply reads from the report's index: the rows of the report's paths, the
    folders it was built from, the verified pairs among those rows, and its model."""

    rows: dict[str, Row]
    roots: tuple[str, ...]
    verified: list[VerifiedPair]
    model: str | None
    hashes: dict[int, bytes]  # perceptual hashes of the rows, by id


def _read_index(report: Report, paths: set[str]) -> _IndexView:
    from imgsim_index.index.store import CATALOG, IndexStore

    folder = report["index_path"]
    try:
        manifest = IndexStore.read_manifest(folder)
        from imgsim_index.index.catalog import Catalog

        catalog = Catalog(os.path.join(folder, CATALOG), readonly=True)
    except ImgsimError as exc:
        raise ReportError(f"the report is bound to the index at {folder}, which cannot be "
                          f"opened: {exc}") from None
    try:
        rows = {r.path: r for r in catalog.rows("WHERE status = 'embedded'")
                if r.path in paths}
        roots = tuple(sorted(catalog.roots()))
        verified = catalog.verified_pairs(r.id for r in rows.values())
        hashes = catalog.hashes_of(r.id for r in rows.values())
    finally:
        catalog.close()
    model = manifest.get("model")
    return _IndexView(rows, roots, verified, model if isinstance(model, str) else None, hashes)


def report_context(report: Report, report_path: str) -> ReportContext:
    folders = tuple(os.path.abspath(f) for f in report["folder_list"])
    members, keeper_of = {}, {}
    for g in report["groups"]:
        for m in g["members"]:
            members[m["path"]] = m
        for p in g["removable"]:
            keeper_of[p] = g["keeper"]
    keepers = frozenset(normal_path(g["keeper"]) for g in report["groups"])
    index = _read_index(report, {normal_path(p) for p in members})
    rows, roots = index.rows, index.roots
    not_duplicate = _not_copies(report["index_path"], keeper_of, index)
    keeper_keys = {}
    for k in keepers:
        try:
            keeper_keys[file_key(os.stat(k))] = k
        except OSError:
            continue  # a vanished keeper refuses its files (problem_with)
    return ReportContext(
        report_path=os.path.abspath(report_path), folders=folders,
        real_folders=tuple(os.path.realpath(f) for f in folders),
        protected=tuple(report.get("protected_folders") or ()),
        members=members, keeper_of=keeper_of, keepers=keepers,
        index_rows=rows, index_roots=roots, keeper_keys=keeper_keys,
        index_path=os.path.abspath(report["index_path"]),
        not_duplicate=not_duplicate,
    )


def _not_copies(folder: str, keeper_of: dict[str, str], index: _IndexView) -> dict[str, str]:
    """The removable files the index does not show to be verified copies of their keepers
    (groups/verified.screen, the rule dedupe lists removable files by); those with no
    verified pair recorded are verified from the files now. Nothing the report says
    (threshold, matches, evidence, scores) plays a part."""
    pairs = []
    for path, keeper in keeper_of.items():
        a, b = index.rows.get(normal_path(path)), index.rows.get(normal_path(keeper))
        if a is not None and b is not None:  # else refused as not indexed (problem_with)
            pairs.append((normal_path(path), a, b))
    if not pairs:
        return {}
    ends = {i for p in index.verified for i in (p.a, p.b)}
    by_id = {r.id: r for r in index.rows.values()}
    needed = [by_id[i] for i in ends] + [r for _, a, b in pairs for r in (a, b)]
    evidence = CopyEvidence(by_id, index.verified, _row_vectors(folder, needed),
                            copy_floor(index.model), index.hashes)
    why = screen([(a, b) for _, a, b in pairs], evidence, verify_files)
    return {path: w for (path, _, _), w in zip(pairs, why, strict=True) if w is not None}


def verify_files(pairs: Sequence[tuple[Row, Row]]) -> list[str | None]:
    """verified.VerifyNow for apply: each (removable, keeper) verified from the files now,
    with the default verification settings."""
    from imgsim_index.search import Pairs
    from imgsim_index.verify import VerifySettings, verify_pairs

    rows: list[Row] = []
    at: dict[int, int] = {}
    ends = []
    for pair in pairs:
        for r in pair:
            if r.id not in at:
                at[r.id] = len(rows)
                rows.append(r)
            ends.append(at[r.id])
    i, j = np.asarray(ends[0::2], np.int64), np.asarray(ends[1::2], np.int64)
    # every pair asked about is compared: no limit of other shots per image
    everything = VerifySettings(enabled=True, other_shots_per_image=0)
    got = verify_pairs(rows, Pairs(i, j, np.zeros(len(i))), everything)
    return [_refusal(v) for v in got.pairs]


def _refusal(verdict: Verdict) -> str | None:
    """None when a verdict made now from the files (A: the removable file, B: its keeper)
    is a copy of which the keeper lacks nothing, else why the file stays."""
    from imgsim_index.groups.verified import KEEPER_LACKS, LACKS_B, lacks

    if verdict.kept and lacks(verdict.numbers) & LACKS_B:
        return f"verified now from the files: {KEEPER_LACKS} ({verdict.evidence})"
    if verdict.kept:
        return None
    if not verdict.verified:
        return f"could not be verified from the files now: {verdict.evidence}"
    return f"verified now from the files: {verdict.evidence or verdict.match}"


def _row_vectors(folder: str, rows: list[Row]) -> dict[int, np.ndarray]:
    """The stored vectors of `rows`, by row id, read from the files that hold them."""
    from imgsim_index.index.vector_file import VectorFile

    by_segment: dict[str, set[int]] = {}
    for r in rows:
        if r.segment:
            by_segment.setdefault(r.segment, set()).add(r.id)
    out: dict[int, np.ndarray] = {}
    for segment, wanted in by_segment.items():
        try:
            with VectorFile(os.path.join(folder, segment)) as vf:
                for at in np.flatnonzero(np.isin(vf.ids, np.fromiter(wanted, np.int64))):
                    out[int(vf.ids[at])] = vf.read(int(at), int(at) + 1)[0]
        except FileNotFoundError:
            raise ReportError(f"the index at {folder} was rewritten while it was read; "
                              "try again") from None
    return out


# -- checks ---------------------------------------------------------------------------
def _inside(path: str, inputs: Sequence[str]) -> bool:
    """Inside one of the input folders, or one of the input files itself."""
    return under_any(path, inputs) or os.path.abspath(path) in inputs


def _outside(path: str, ctx: ReportContext) -> str | None:
    if not _inside(path, ctx.folders):
        return "is outside the report's input folders"
    if not _inside(os.path.realpath(path), ctx.real_folders):
        return "resolves (through a symbolic link) to a place outside the report's input folders"
    return None


def _changed(path: str, member: Member) -> str | None:
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
    changes = []
    if st.st_size != member["size"]:
        changes.append(f"size {member['size']} -> {st.st_size} bytes")
    if st.st_mtime_ns != member["mtime_ns"]:
        changes.append(f"modified {_when(member['mtime_ns'])} -> {_when(st.st_mtime_ns)}")
    if changes:
        return f"changed since the report ({', '.join(changes)}); run dedupe again"
    return None


def _when(mtime_ns: int | None) -> str:
    """A modification time as local date and time, to the microsecond (two saves within
    a second differ)."""
    if mtime_ns is None:
        return "unknown"
    secs, ns = divmod(int(mtime_ns), 10**9)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(secs)) + f".{ns // 1000:06d}"


def problem_with(path: str, ctx: ReportContext) -> str | None:
    """Why `path` must not be touched, or None."""
    norm = normal_path(path)
    if path in ctx.keepers or norm in ctx.keepers:
        return "is a keeper"
    member = ctx.members.get(path)
    if member is None or path not in ctx.keeper_of:
        return "is not a removable file of the report"
    if member.get("protected") or under_any(norm, ctx.protected):
        return "is under a protected folder"
    if is_frame(path):
        return "is a frame of a video, not a file; apply acts on whole files only"
    reason = _outside(norm, ctx) or _changed(norm, member)
    if reason:
        return reason
    keeper = normal_path(ctx.keeper_of[path])
    reason = (_outside(keeper, ctx) or _changed(keeper, ctx.members[ctx.keeper_of[path]])
              or _not_indexed(keeper, ctx, digest=True))
    if reason:
        return f"its keeper {keeper} {reason}; not touching a copy whose original may be gone"
    return _not_indexed(norm, ctx, digest=True) or ctx.not_duplicate.get(norm)


def _not_indexed(path: str, ctx: ReportContext, digest: bool) -> str | None:
    """Is `path` still the very file (and, with `digest`, the bytes) its index holds,
    and not another name of a keeper?"""
    if not under_any(path, ctx.index_roots):
        return "is outside the folders the report's index was built from"
    try:
        st = os.stat(path)
    except OSError as exc:
        return f"cannot be examined ({exc.strerror or exc})"
    key = file_key(st)
    other = ctx.keeper_keys.get(key)
    if other is not None and other != path:
        return f"is the same file as the keeper {other} (another name for it)"
    row = ctx.index_rows.get(path)
    if row is None:
        return "is not in the index the report was made from"
    if row.dev is None or row.ino is None or row.digest is None:
        return ("was indexed by an older imgsim-index, which recorded no identity for it; "
                "run build on its folder, then dedupe, to record one")
    if key != (row.dev, row.ino):
        return "is no longer the file that was indexed (another file has its name now)"
    seen = stat_stamp(st)
    if digest and ctx.digest_checked.get(path) != seen:
        started = time.time_ns()
        try:
            now = file_digest(path)
        except OSError as exc:
            return f"cannot be read ({exc.strerror or exc})"
        if now != row.digest:
            return "changed since it was indexed (its content digest differs); run dedupe again"
        if stamp_trusted(seen, started):
            ctx.digest_checked[path] = seen
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
    """MOVE_TO/<input folder's name>/<path relative to that folder>; a file that was an
    input itself: MOVE_TO/<its folder's name>/<its name>."""
    labels = folder_labels(folders)
    inside = [f for f in folders if under_any(path, [f])]
    if not inside:  # an input file
        return os.path.join(move_to, os.path.basename(os.path.dirname(path)) or "root",
                            os.path.basename(path))
    folder = max(inside, key=len)
    return os.path.join(move_to, labels[folder], os.path.relpath(path, folder))


def check_move_to(move_to: str | None, ctx: ReportContext, root: str | None = None) -> str:
    """The destination folder as an absolute path. `root`: a folder the destination must
    resolve inside (symbolic links followed), a relative one being taken under it."""
    if not move_to:
        raise InputError("moving needs a destination folder (--move-to DIR)")
    dest = os.path.abspath(move_to if root is None else os.path.join(root, move_to))
    real = os.path.realpath(dest)
    if root is not None:
        real_root = os.path.realpath(root)
        if real != real_root and not under_any(real, [real_root]):
            raise InputError(f"move destination {move_to} resolves to {real}, outside the "
                             f"folder moves may go to ({real_root}); pick a folder inside it")
    for folder in ctx.real_folders:
        if real == folder or under_any(real, [folder]) or under_any(folder, [real]):
            raise ActionError(
                f"--move-to {dest} overlaps the input folder {folder}; pick a folder outside "
                "the input folders, or the next dedupe would find the moved files again"
            )
    return dest
