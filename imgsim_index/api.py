"""api: the Python entry points, thin over the pipeline. Everything returns data; nothing
is written unless a function says it writes (Index.add writes the index, write_report the
report files and the verified pairs into the index, apply_plan and undo act on files
through a journal)."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from imgsim_index.errors import InputError
from imgsim_index.pipeline.build import BuildResult, BuildSettings, build_index
from imgsim_index.pipeline.dedupe import DedupeSettings, Duplicates
from imgsim_index.pipeline.dedupe import find_duplicates as _find_duplicates
from imgsim_index.progress import Progress

if TYPE_CHECKING:
    from imgsim_index.actions.plan import ApplyResult, Plan
    from imgsim_index.index.check import VerifyReport
    from imgsim_index.pipeline.engine import Engine
    from imgsim_index.pipeline.query import QueryResult
    from imgsim_index.verify import VerifySettings


class Index:
    """An index folder (catalog.sqlite, vectors, manifest.json), created on the first add.

    `settings` choose the model and how images are embedded; an existing index keeps
    its own model (another one is refused with IndexMismatchError)."""

    def __init__(self, path: str, settings: BuildSettings | None = None):
        self.path = str(path)
        self.settings = settings or BuildSettings()

    def __repr__(self) -> str:
        return f"Index({self.path!r})"

    def add(self, paths: Sequence[str], progress: Progress | None = None,
            engine: Engine | None = None) -> BuildResult:
        """Embed the new or changed image and video files under `paths` (files or folders).
        Files already indexed and unchanged are not read again. `engine`: where the
        images are embedded (pipeline/engine.py; None: here)."""
        return build_index([str(p) for p in paths], self.path, self.settings, progress,
                           engine=engine)

    def find_duplicates(self, folders: Sequence[str] | None = None, **options: Any
                        ) -> Duplicates:
        """find_duplicates(self, folders, **options); see there."""
        return find_duplicates(self, folders, **options)

    def query(self, images: Sequence[str], top_k: int = 10, threshold: float | None = None,
              *, include_self: bool = False, include_below: bool = False,
              verify: VerifySettings | None = None) -> list[QueryResult]:
        """The `top_k` indexed matches of each query image, best first, by the rules the
        CLI and HTTP query share (pipeline/query.py): at or above `threshold` (default: the
        model's candidate threshold), verified, the query file itself left out."""
        from imgsim_index.pipeline.query import query_index

        return query_index(self.path, [str(p) for p in images], top_k, threshold,
                           self.settings, verify=verify, include_self=include_self,
                           include_below=include_below)

    def check(self, repair: bool = False) -> VerifyReport:
        """Check catalog, vectors and manifest against each other (and repair)."""
        from imgsim_index.index.check import verify_index

        return verify_index(self.path, repair=repair, wait=self.settings.wait_for_lock)


def find_duplicates(
    source: Index | str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
    folders: Sequence[str] | None = None,
    *,
    index: Index | str | None = None,
    model: str | None = None,
    build: BuildSettings | None = None,
    threshold: float | None = None,
    settings: DedupeSettings | None = None,
    progress: Progress | None = None,
    engine: Engine | None = None,
) -> Duplicates:
    """Pairs at or above the threshold (cosine, 6 decimals), their groups and the keep
    decisions. Writes no report.

    `source`: an Index or index folder (then the whole index, or the images under
    `folders`), or one or more folders of photos: then they are first added to `index`
    (default: a cache index for these folders and this model, under
    $XDG_CACHE_HOME/imgsim-index/indexes/, updated with only new or changed files on
    the next call), with `model` or `build` choosing how images are embedded, and the
    result covers the images under them. `find_duplicates("photos").duplicates` maps
    each file to its duplicates, as imagededup's find_duplicates does.

    `threshold`: the candidate threshold (default: settings.threshold, else the model's
    own: 0.99 for resnet50, 0.75 for efficientnet-lite0, whose candidates are then
    verified; see verify.CANDIDATE_THRESHOLDS)."""
    settings = settings or DedupeSettings()
    if threshold is not None:
        settings = dataclasses.replace(settings, threshold=threshold)
    if source is None:
        if index is None:
            raise InputError("find_duplicates needs a folder of photos or an index")
        source, index = index, None
    if isinstance(source, Index) or _is_index_dir(source):
        path = source.path if isinstance(source, Index) else os.fspath(source)  # type: ignore[arg-type]
        return _find_duplicates(path, [str(f) for f in folders] if folders else None, settings,
                                progress, engine=engine)
    photos = [os.fspath(source)] if isinstance(source, (str, os.PathLike)) else [
        os.fspath(f) for f in source]
    photos += [str(f) for f in folders or ()]
    build = build or BuildSettings()
    if model is not None:
        build = dataclasses.replace(build, model=model)
    target = index if isinstance(index, Index) else Index(
        index or default_index_path(photos, build.model), build)
    built = target.add(photos, progress, engine)
    dups = _find_duplicates(target.path, photos, settings, progress, engine=engine)
    return dataclasses.replace(dups, build=built)


def _is_index_dir(path: object) -> bool:
    return isinstance(path, (str, os.PathLike)) and os.path.isfile(
        os.path.join(os.fspath(path), "manifest.json"))


def default_index_path(folders: Sequence[str], model: str | None) -> str:
    """The cache index of these folders (as absolute paths, in any order) and this model."""
    key = "\n".join([model or "", *sorted(os.path.abspath(f) for f in folders)])
    digest = hashlib.sha256(os.fsencode(key)).hexdigest()[:16]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "imgsim-index", "indexes", digest)


def make_plan(report_path: str, action: str, move_to: str | None = None) -> Plan:
    """The checked plan of `action` (move | hardlink | delete) for a report.json: what
    would be done and what is refused, with reasons. Touches nothing."""
    from imgsim_index.actions.plan import make_plan as _make_plan

    return _make_plan(report_path, action, move_to)


def apply_plan(plan: Plan, journal_path: str | None = None,
               progress: Progress | None = None) -> ApplyResult:
    """Carry out a plan, every file re-checked just before it is touched, with an undo
    journal (default: apply-<action>-<time>.jsonl beside the report)."""
    from imgsim_index.actions.plan import apply_plan as _apply_plan
    from imgsim_index.actions.plan import default_journal_path

    journal_path = journal_path or default_journal_path(plan.context.report_path, plan.action)
    return _apply_plan(plan, journal_path, progress)


def apply(report_path: str, action: str, move_to: str | None = None, *,
          journal_path: str | None = None, progress: Progress | None = None,
          wait: bool = False) -> ApplyResult:
    """What `imgsim-index apply REPORT --yes` does: plan and carry out `action` (move |
    hardlink | trash | delete) with the report's index locked from planning to the end,
    every file re-checked just before it is touched, with an undo journal (default beside
    the report). make_plan + apply_plan is the same with a look at the plan in between."""
    from imgsim_index.actions.plan import apply_report

    return apply_report(report_path, action, move_to, journal_path=journal_path,
                        progress=progress, wait=wait)


__all__ = ["Index", "apply", "apply_plan", "default_index_path", "find_duplicates",
           "make_plan"]
