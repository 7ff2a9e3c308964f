"""verify: check catalog, vectors and manifest against each other; optionally repair.

Checks: SQLite's own quick_check of the catalog; the manifest reads and matches
the catalog's counts; every segment the catalog names exists, reads, and has the
manifest's dimension (a file of another dimension is damaged as a whole); every
embedded row has exactly one current vector, finite (no NaN or Inf) and of unit
length; no segment file is unknown
to the catalog (an orphan from an interrupted commit); error rows hold no vector; the
on-disk IVF of a large index reads, its files have the sizes its lists say, FAISS reads
each part, and it holds every covered row exactly once (ivf_sync.check_ivf).
Superseded vectors (old versions of changed files, awaiting compaction) are
counted, not reported as problems.

Repair (under the writer lock): orphan files are deleted; rows whose vector is
missing or damaged are removed from the catalog so that the next build
re-embeds those files; the index is compacted and the manifest rewritten; a damaged IVF
is removed and rebuilt from the vector files (and a missing one built, as on first use).
What repair cannot fix (a catalog SQLite cannot read or that fails quick_check)
is said as such in `VerifyReport.unrepairable`, never raised.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from imgsim_index.errors import ImgsimError, IndexFormatError
from imgsim_index.index.ivf_sync import check_ivf, drop_ivf
from imgsim_index.index.manifest import manifest_to_dict
from imgsim_index.index.store import SEGMENTS, IndexStore
from imgsim_index.index.vector_file import VectorFile


@dataclass
class VerifyReport:
    problems: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    unrepairable: list[str] = field(default_factory=list)
    embedded: int = 0
    errors: int = 0
    segments: int = 0
    superseded_vectors: int = 0
    notes: list[str] = field(default_factory=list)
    ivf_damaged: bool = False  # the on-disk IVF is unsound (repair rebuilds it)

    @property
    def ok(self) -> bool:
        return not self.problems


def _check(store: IndexStore, report: VerifyReport) -> list[str]:
    """Fill `report`; return the paths whose vectors are missing or damaged."""
    cat = store.catalog
    sqlite_findings = cat.quick_check()
    if sqlite_findings:
        report.problems.append(f"the catalog fails SQLite's quick_check: "
                               f"{'; '.join(sqlite_findings[:3])}")
        report.unrepairable.append(_CATALOG_LOST)
        return []
    rows = cat.rows()
    embedded = [r for r in rows if r.status == "embedded"]
    report.embedded, report.errors = len(embedded), len(rows) - len(embedded)
    segments = cat.segments()
    report.segments = len(segments)
    counts = store.manifest.get("counts", {})
    if counts and counts != {"embedded": report.embedded, "errors": report.errors}:
        report.notes.append(  # informational; a writer rewrites them when it finishes
            f"manifest counts {counts} are stale: the catalog holds "
            f"{report.embedded} embedded and {report.errors} error rows")
    for r in rows:
        if r.status == "error" and r.segment is not None:
            report.problems.append(f"error row {r.path} names a vector file")
    wanted: dict[str, list[int]] = {}
    by_id = {r.id: r for r in embedded}
    for r in embedded:
        if r.segment not in segments:
            report.problems.append(f"{r.path}: its vector file {r.segment} is not registered")
        wanted.setdefault(str(r.segment), []).append(r.id)
    damaged: list[str] = []
    for name in segments:
        path = os.path.join(store.folder, name)
        try:
            with VectorFile(path) as vf:
                ids = vf.ids
                norm_parts = [np.linalg.norm(v, axis=1) for _, v in vf.chunks()]
        except (OSError, IndexFormatError) as exc:
            report.problems.append(f"vector file {name} cannot be read: {exc}")
            damaged += [by_id[i].path for i in wanted.get(name, [])]
            continue
        if vf.dim != store.dim:
            report.problems.append(f"{name} holds {vf.dim}-d vectors, not {store.dim}")
            damaged += [by_id[i].path for i in wanted.get(name, [])]
            continue
        dup = [i for i, c in Counter(ids.tolist()).items() if c > 1]
        if dup:
            report.problems.append(f"{name} holds ids {dup[:5]} more than once")
        here = set(ids.tolist())
        norms = dict(zip(ids.tolist(), np.concatenate([np.zeros(0), *norm_parts]).tolist(),
                         strict=True))
        mine = wanted.get(name, [])
        for i in mine:
            if i not in here:
                report.problems.append(f"{by_id[i].path}: no vector in {name}")
                damaged.append(by_id[i].path)
            elif not np.isfinite(norms[i]):
                report.problems.append(f"{by_id[i].path}: vector holds NaN or Inf")
                damaged.append(by_id[i].path)
            elif abs(norms[i] - 1.0) > 1e-3:
                report.problems.append(f"{by_id[i].path}: vector norm {norms[i]:.4f}, not 1")
                damaged.append(by_id[i].path)
        report.superseded_vectors += len(here - set(mine))
    seg_dir = os.path.join(store.folder, SEGMENTS)
    if os.path.isdir(seg_dir):
        for f in sorted(os.listdir(seg_dir)):
            if f"{SEGMENTS}/{f}" not in segments:
                report.problems.append(f"orphan vector file {SEGMENTS}/{f} (not in the catalog)")
    ivf_problems, ivf_notes = check_ivf(store.folder, cat)
    report.problems += ivf_problems
    report.notes += ivf_notes
    report.ivf_damaged = bool(ivf_problems)
    return damaged


_CATALOG_LOST = ("the catalog cannot be repaired in place: move the index folder aside and "
                 "build a new index (the image files are untouched)")


def verify_index(index_dir: str, repair: bool = False, wait: bool = False) -> VerifyReport:
    report = VerifyReport()
    try:
        with IndexStore.open_reader(index_dir) as store:
            _check(store, report)
    except IndexFormatError as exc:
        if not IndexStore.exists(index_dir):
            raise  # no index at all: nothing to verify
        report.problems.append(str(exc))
        report.unrepairable.append(_CATALOG_LOST)
    if not repair or report.ok or report.unrepairable:
        return report
    manifest = IndexStore.read_manifest(index_dir)
    # opened with its own identity; opening removes orphan files
    store = IndexStore.open_writer(index_dir, manifest_to_dict(manifest), wait=wait)
    try:
        damaged = _check(store, VerifyReport())
        if damaged:
            store.remove_paths(damaged)
            report.repaired.append(
                f"removed {len(damaged)} rows without a sound vector; the next build "
                "re-embeds those files")
        store.compact()
        report.repaired.append("removed orphan files, compacted the vectors, rewrote the manifest")
        if report.ivf_damaged:
            drop_ivf(store.folder)
        if store.update_ivf(audit=True) is not None and report.ivf_damaged:
            report.repaired.append("rebuilt the on-disk IVF from the vector files")
    except (OSError, ImgsimError) as exc:
        report.unrepairable.append(f"repair stopped: {exc}; the index is as it was before "
                                   "the step that failed")
    finally:
        store.close()
    return report
