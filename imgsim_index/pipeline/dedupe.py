"""dedupe: index (+ folders) -> pairs -> groups -> report.json + collage in a new folder."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from imgsim_index.groups.components import Groups, connected_components
from imgsim_index.groups.keep import DEFAULT_KEEP, KeepSettings, choose_keepers
from imgsim_index.index.catalog import Row
from imgsim_index.index.store import IndexStore
from imgsim_index.ingest.video import split_frame_path
from imgsim_index.pipeline.build import BuildResult, BuildSettings, build_index
from imgsim_index.progress import NoProgress, Progress
from imgsim_index.report import build_report, write_collage, write_report
from imgsim_index.report.html import write_gallery
from imgsim_index.search.approx import ApproxSettings, find_pairs_approx, use_approx
from imgsim_index.search.exact import Pairs, PairSettings, find_pairs
from imgsim_index.search.tiles import resolve_precision

if TYPE_CHECKING:
    from imgsim_index.pipeline.ray_engine import RayEngine


@dataclass(frozen=True)
class DedupeSettings:
    pairs: PairSettings = field(default_factory=PairSettings)
    output: str = "results"
    max_pairs_for_collage: int = 20
    build: BuildSettings = field(default_factory=BuildSettings)
    keep: str = DEFAULT_KEEP  # see keep.KEEP_POLICIES
    protect: tuple[str, ...] = ()  # folders whose files are always kept
    new_only: bool = False  # only pairs involving images added since the last dedupe
    since: float | None = None  # ... or added at/after this time (epoch seconds)
    search: str = "auto"  # exact | approx | auto (approx above pairs_approx.AUTO_APPROX_ABOVE)
    approx: ApproxSettings = field(default_factory=ApproxSettings)


@dataclass
class DedupeResult:
    output_dir: str
    report_path: str
    collage_path: str
    report: dict[str, Any]
    build: BuildResult | None
    gallery_path: str = ""


def make_output_dir(base: str) -> tuple[str, str]:
    """OUTPUT/<YYYYmmdd_HHMMSS>, never an existing one. Returns (folder, timestamp)."""
    stamp = time.strftime("%Y%m%d_%H%M%S")
    os.makedirs(base, exist_ok=True)
    for k in range(1, 1000):
        name = stamp if k == 1 else f"{stamp}_{k}"
        path = os.path.join(base, name)
        try:
            os.mkdir(path)
            return path, stamp
        except FileExistsError:
            continue
    raise FileExistsError(f"too many result folders for {stamp} in {base}")


def folder_codes(rows: Sequence[Row], folders: Sequence[str] | None) -> np.ndarray:
    """Which input folder each row belongs to: the deepest given folder, else its scan root."""
    if not folders:
        roots = sorted({r.root for r in rows})
        code = {root: k for k, root in enumerate(roots)}
        return np.asarray([code[r.root] for r in rows], np.int64)
    prefixes = sorted(((os.path.join(os.path.abspath(f), ""), k) for k, f in enumerate(folders)),
                      key=lambda t: -len(t[0]))
    out = np.empty(len(rows), np.int64)
    for n, r in enumerate(rows):
        out[n] = next((k for p, k in prefixes if r.path.startswith(p)), -1)
    return out


def dedupe(
    index_dir: str,
    folders: Sequence[str] | None = None,
    settings: DedupeSettings | None = None,
    progress: Progress | None = None,
    engine: RayEngine | None = None,
) -> DedupeResult:
    """`engine`: embed (when `folders` are given) and search exact pairs on a Ray cluster."""
    settings = settings or DedupeSettings()
    progress = progress or NoProgress()
    settings.pairs.validate()
    settings.approx.validate()
    use_approx(settings.search, 0, settings.pairs,  # a bad combination fails before any work
               settings.new_only or settings.since is not None)
    keep_settings = KeepSettings(settings.keep, tuple(settings.protect))
    keep_settings.validate()
    timings: dict[str, float] = {}
    built = None
    t = time.perf_counter()
    if folders:
        built = build_index(folders, index_dir, settings.build, progress,
                            engine=engine.file_embedder if engine else None)
        timings["index_update"] = time.perf_counter() - t
    t = time.perf_counter()
    with IndexStore.open_reader(index_dir) as store:
        loaded = store.load(folders or None)
        errors = store.error_rows(folders or None)
        manifest = dict(store.manifest)
        index_path = store.folder
        last_dedupe = store.last_dedupe_seq()
    rows, vectors = loaded.rows, loaded.vectors
    if built is not None:  # only files that are in the folders now, not stale catalog rows
        present = set(built.scanned_paths)
        keep = [k for k, r in enumerate(rows) if split_frame_path(r.path)[0] in present]
        rows, vectors = [rows[k] for k in keep], vectors[keep]
        errors = [r for r in errors if r.path in present]
    queries = None
    if settings.since is not None:
        queries = np.flatnonzero([r.added_at >= settings.since for r in rows])
    elif settings.new_only:
        queries = np.flatnonzero([r.seq > last_dedupe for r in rows])
    timings["load_vectors"] = time.perf_counter() - t
    t = time.perf_counter()
    codes = folder_codes(rows, folders)
    approx = use_approx(settings.search, len(rows), settings.pairs, queries is not None)
    if approx:
        pairs = find_pairs_approx(vectors, settings.pairs, settings.approx, codes)
    elif engine is not None:
        pairs = engine.find_pairs(vectors, settings.pairs, codes, queries=queries)
    else:
        pairs = find_pairs(vectors, settings.pairs, codes, queries=queries)
    timings["pair_search"] = time.perf_counter() - t
    groups = connected_components(len(rows), pairs.i, pairs.j)
    decisions = choose_keepers(rows, groups, keep_settings, codes, vectors)
    folder_list = [os.path.abspath(f) for f in folders] if folders else sorted(
        {r.root for r in rows})
    out_dir, stamp = make_output_dir(settings.output)
    report = build_report(
        timestamp=stamp, folders=folder_list, rows=rows, pairs=pairs, groups=groups,
        settings=settings.pairs, errors=errors, index_path=index_path, timings=timings,
        model={k: manifest.get(k) for k in ("model", "dim", "weights_id", "preprocessing")},
        keep=keep_settings, decisions=decisions,
    )
    collage_path = os.path.join(out_dir, "similar_pairs_sample", "random_collage.jpg")
    write_collage(_pair_paths(rows, pairs), collage_path, settings.max_pairs_for_collage,
                  settings.pairs.seed, settings.pairs.threshold)
    precision = resolve_precision(settings.pairs.precision, len(rows))
    report["pair_search"] = ({"method": "approx", **asdict(settings.approx),
                              "nprobe": settings.approx.probes_for(settings.pairs.threshold),
                              "precision": precision}
                             if approx else {"method": "exact", "precision": precision})
    if queries is not None:
        report["compare_mode"] = "new_only"
        report["new_images"] = len(queries)
        report["new_since"] = (time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(settings.since))
                               if settings.since is not None else "last dedupe")
    report_path = os.path.join(out_dir, "report.json")
    write_report(report, report_path)
    if not folders:  # the whole index was covered up to this snapshot
        IndexStore.record_dedupe(index_dir, loaded.seq)
    gallery_path = write_gallery(report, os.path.join(out_dir, "report.html"), progress)
    return DedupeResult(out_dir, report_path, collage_path, report, built, gallery_path)


def _pair_paths(rows: Sequence[Row], pairs: Pairs) -> list[tuple[str, str, float]]:
    return [(rows[a].path, rows[b].path, s)
            for a, b, s in zip(pairs.i.tolist(), pairs.j.tolist(), pairs.score.tolist(),
                               strict=True)]


__all__ = ["DedupeResult", "DedupeSettings", "Groups", "dedupe", "make_output_dir"]
