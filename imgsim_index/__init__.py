"""imgsim-index: duplicate and near-duplicate images, found with CNN embeddings and FAISS.

The public API (see README, "Python"):

    find_duplicates("photos/", model=...) -> Duplicates   (.duplicates, .group_paths(), ...)
    Index(path, BuildSettings(...))         .add(paths) .query(images) .check()
    find_duplicates(index, folders, threshold=..., settings=DedupeSettings(...)) -> Duplicates
    write_report(duplicates, out_dir, collage=True, gallery=True) -> ReportFiles
    make_plan(report_json, "move" | "hardlink" | "delete", move_to) -> Plan
    apply_plan(plan, journal_path=None) -> ApplyResult;  undo(journal_path) -> UndoResult
    apply(report_json, action, move_to) -> ApplyResult   (make_plan + apply_plan, locked)
    find_pairs(vectors, PairSettings(...), method="auto") -> (Pairs, SearchInfo)

Names are imported on first use, so `import imgsim_index` (and the CLI's --help) stays
fast: torch, faiss and the pipeline load only when something needs them.
"""

import typing

__version__ = "0.1.0"

_EXPORTS = {
    "Index": "imgsim_index.api",
    "find_duplicates": "imgsim_index.api",
    "make_plan": "imgsim_index.api",
    "apply_plan": "imgsim_index.api",
    "apply": "imgsim_index.api",
    "undo": "imgsim_index.actions.undo",
    "Duplicates": "imgsim_index.pipeline.dedupe",
    "DedupeSettings": "imgsim_index.pipeline.dedupe",
    "DedupeResult": "imgsim_index.pipeline.dedupe",
    "ReportFiles": "imgsim_index.pipeline.dedupe",
    "dedupe": "imgsim_index.pipeline.dedupe",
    "write_report": "imgsim_index.pipeline.dedupe",
    "BuildSettings": "imgsim_index.pipeline.build",
    "BuildResult": "imgsim_index.pipeline.build",
    "build_index": "imgsim_index.pipeline.build",
    "QueryResult": "imgsim_index.pipeline.query",
    "query_index": "imgsim_index.pipeline.query",
    "EmbedSettings": "imgsim_index.embed.embedder",
    "KeepSettings": "imgsim_index.groups.keep",
    "PairSettings": "imgsim_index.search",
    "ApproxSettings": "imgsim_index.search",
    "Pairs": "imgsim_index.search",
    "VerifySettings": "imgsim_index.verify.inputs",
    "SearchInfo": "imgsim_index.search",
    "find_pairs": "imgsim_index.search",
    "IndexStore": "imgsim_index.index.store",
    "ImgsimError": "imgsim_index.errors",
    "InputError": "imgsim_index.errors",
    "IndexFormatError": "imgsim_index.errors",
    "IndexMismatchError": "imgsim_index.errors",
    "ModelError": "imgsim_index.errors",
}

if typing.TYPE_CHECKING:
    from imgsim_index.actions.undo import undo
    from imgsim_index.api import Index, apply, apply_plan, find_duplicates, make_plan
    from imgsim_index.embed.embedder import EmbedSettings
    from imgsim_index.errors import (
        ImgsimError,
        IndexFormatError,
        IndexMismatchError,
        InputError,
        ModelError,
    )
    from imgsim_index.groups.keep import KeepSettings
    from imgsim_index.index.store import IndexStore
    from imgsim_index.pipeline.build import BuildResult, BuildSettings, build_index
    from imgsim_index.pipeline.dedupe import (
        DedupeResult,
        DedupeSettings,
        Duplicates,
        ReportFiles,
        dedupe,
        write_report,
    )
    from imgsim_index.pipeline.query import QueryResult, query_index
    from imgsim_index.search import ApproxSettings, Pairs, PairSettings, SearchInfo, find_pairs
    from imgsim_index.verify.inputs import VerifySettings


def __getattr__(name: str) -> object:
    import importlib

    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'imgsim_index' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The public API only (not the helpers this module imports)."""
    return sorted([*__all__, "__version__"])


__all__ = ["ApproxSettings", "BuildResult", "BuildSettings", "DedupeResult", "DedupeSettings",
    "Duplicates", "EmbedSettings", "ImgsimError", "Index", "IndexFormatError",
    "IndexMismatchError", "IndexStore", "InputError", "KeepSettings", "ModelError",
    "PairSettings", "Pairs", "QueryResult", "ReportFiles", "SearchInfo", "VerifySettings",
    "apply", "apply_plan",
    "build_index", "dedupe", "find_duplicates", "find_pairs", "make_plan", "query_index", "undo",
    "write_report"]

del typing  # dir() and vars() show the public API, nothing this module needed
