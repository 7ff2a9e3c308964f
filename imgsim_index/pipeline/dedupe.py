"""dedupe: index (+ folders) -> Duplicates (pairs, groups, decisions), then the report files.

`find_duplicates` computes and writes nothing; `write_report` writes report.json,
the collage and the gallery for a Duplicates; `dedupe` is what the command does:
update the index from the folders, find, write into a new timestamped folder, and
remember the snapshot so the next new-only dedupe starts after it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from imgsim_index.defaults import DEFAULT_KEEP, DEFAULT_THRESHOLD, VERIFY_KEPT_BYTES
from imgsim_index.errors import InputError
from imgsim_index.groups.components import Groups, connected_components
from imgsim_index.groups.keep import GroupDecision, KeepSettings, choose_keepers
from imgsim_index.groups.verified import (
    copy_floor,
    decided_pairs,
    direct_copies,
    screen_decisions,
    whole_rank,
)
from imgsim_index.index.catalog import Row, VerifiedPair
from imgsim_index.index.import_vectors import IMPORTED_WEIGHTS
from imgsim_index.index.manifest import Manifest, identity_of
from imgsim_index.index.store import IndexStore, scope_prefix
from imgsim_index.ingest import kept
from imgsim_index.ingest.kept import retain as retain_thumbs
from imgsim_index.ingest.scan import skipped_report
from imgsim_index.ingest.video import split_frame_path
from imgsim_index.paths import deepest_folder
from imgsim_index.pipeline.build import BuildResult, BuildSettings, build_index
from imgsim_index.pipeline.engine import Engine
from imgsim_index.pipeline.large import bring_ivf_up_to_date, search_ivf, wants_ivf
from imgsim_index.progress import NoProgress, Progress
from imgsim_index.report import build_report, write_collage
from imgsim_index.report import write_report as write_report_json
from imgsim_index.report.contract import Report, Skipped
from imgsim_index.report.html import write_gallery
from imgsim_index.search import (
    ApproxSettings,
    Pairs,
    PairSettings,
    SearchInfo,
    find_pairs,
    query_rows,
)
from imgsim_index.search.hash_pairs import hash_pairs
from imgsim_index.search.settings import choose_method
from imgsim_index.search.threshold import exact_scores
from imgsim_index.verify import (
    Verdict,
    Verdicts,
    VerifySettings,
    candidate_threshold,
    verify_pairs,
)

if TYPE_CHECKING:
    from imgsim_index.search.plan import OnProgress


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
    search: str = "auto"  # exact | approx | auto (approx above search.AUTO_APPROX_ABOVE)
    approx: ApproxSettings = field(default_factory=ApproxSettings)
    # candidate threshold: None = `pairs.threshold` when given, else the model's own
    # (verify.candidate_threshold); a number = that threshold
    threshold: float | None = None
    verify: VerifySettings = field(default_factory=VerifySettings)
    group_near_misses: bool = False  # other-shot pairs join the groups (bursts grouped)
    # bytes the on-disk IVF search may hold (its list cache and tiles); None: a quarter of
    # the machine's memory (search.ivf_scan.default_budget)
    memory_budget: int | None = None
    wait: bool = False  # wait for another writer when the IVF must take in new vectors

    def validate(self) -> None:
        self.pairs.validate()
        if self.threshold is not None:
            replace(self.pairs, threshold=self.threshold).validate()
        self.verify.validate()
        self.approx.validate()
        KeepSettings(self.keep, tuple(self.protect)).validate()
        # a bad combination (approx with sample or new-only) fails before any work
        choose_method(self.search, 0, self.pairs, self.new_only or self.since is not None)


@dataclass(frozen=True)
class Duplicates:
    """What find_duplicates found. Row positions index `rows`; nothing is written yet.
    Frozen: made once, by find_duplicates (dataclasses.replace for a changed copy)."""

    rows: list[Row]  # the images compared (embedded catalog rows)
    pairs: Pairs  # i < j row positions, score desc
    groups: Groups  # connected components of the pairs
    decisions: list[GroupDecision]  # keeper and removable files per group of 2+
    errors: list[Row]  # files that could not be read, with their reasons
    search: SearchInfo
    settings: DedupeSettings
    folder_list: list[str]  # the input folders (or the index's scan roots)
    model: dict[str, Any]  # the index's model identity
    index_path: str
    timings: dict[str, float]
    snapshot_seq: int  # catalog commit the search saw
    new_images: int | None = None  # new-only: how many images were searched from
    new_since: str | None = None
    build: BuildResult | None = None
    # verification: `candidates` (every pair the search found) and a verdict for each;
    # `pairs` holds the exact and copy ones, `near_misses` the other shots
    candidates: Pairs | None = None
    verdicts: Verdicts | None = None
    near_misses: Pairs = field(default_factory=Pairs.empty)
    threshold_used: float = DEFAULT_THRESHOLD  # the candidate threshold the search ran with
    threshold_source: str = "given"  # "model default" | "given"
    # images compared; None: len(rows). A search of the on-disk IVF loads only the rows
    # in a pair, and every other image is a group of one
    total_images: int | None = None
    # what verification decided, by catalog row ids, for the index (write_report records it)
    verified: list[VerifiedPair] = field(default_factory=list)
    other_shots: list[tuple[int, int]] = field(default_factory=list)

    def pair_paths(self) -> list[tuple[str, str, float]]:
        """(path 1, path 2, score) of every pair, highest score first."""
        return [(self.rows[a].path, self.rows[b].path, s)
                for a, b, s in zip(self.pairs.i.tolist(), self.pairs.j.tolist(),
                                   self.pairs.score.tolist(), strict=True)]

    def pair_verdicts(self, pairs: Pairs) -> list[Verdict] | None:
        """The Verdict of each of `pairs` (a subset of the candidates)."""
        if self.verdicts is None or self.candidates is None:
            return None
        where = {(a, b): k for k, (a, b) in enumerate(zip(self.candidates.i.tolist(),
                                                          self.candidates.j.tolist(),
                                                          strict=True))}
        return [self.verdicts.pairs[where[(a, b)]]
                for a, b in zip(pairs.i.tolist(), pairs.j.tolist(), strict=True)]

    def removable_paths(self) -> list[str]:
        """The files the keep policy would remove, group by group."""
        return [self.rows[m].path for d in self.decisions for m in d.removable]

    def group_paths(self) -> list[list[str]]:
        """Each duplicate group's files (largest group first), the keeper first."""
        return [[self.rows[d.keeper].path, *(self.rows[m].path for m in d.members.tolist()
                                             if m != d.keeper)] for d in self.decisions]

    def keeper_paths(self) -> list[str]:
        """The file kept in each duplicate group, as group_paths lists the groups."""
        return [self.rows[d.keeper].path for d in self.decisions]

    @property
    def duplicates(self) -> dict[str, list[dict[str, Any]]]:
        """Every image compared -> its duplicates (exact and copy pairs), best first, each
        {"file", "similarity_score", "match"}: the mapping imagededup's find_duplicates
        returns, with the verdict added."""
        found: dict[str, list[dict[str, Any]]] = {r.path: [] for r in self.rows}
        verdicts = self.pair_verdicts(self.pairs)
        for k, (a, b, score) in enumerate(self.pair_paths()):
            match = verdicts[k].match if verdicts else "copy"
            found[a].append({"file": b, "similarity_score": score, "match": match})
            found[b].append({"file": a, "similarity_score": score, "match": match})
        return found

    def to_dict(self) -> dict[str, list[dict[str, Any]]]:
        """The `duplicates` mapping (JSON-ready)."""
        return self.duplicates

    def to_report(self, timestamp: str | None = None) -> Report:
        """The report.json content (the seed's keys first)."""
        s = self.settings
        report = build_report(
            timestamp=timestamp or time.strftime("%Y%m%d_%H%M%S"), folders=self.folder_list,
            rows=self.rows, pairs=self.pairs, groups=self.groups, settings=s.pairs,
            errors=self.errors, index_path=self.index_path, timings=self.timings,
            model=self.model, keep=KeepSettings(s.keep, tuple(s.protect)),
            decisions=self.decisions, threshold=self.threshold_used,
            pair_verdicts=self.pair_verdicts(self.pairs),
            near_misses=self.near_misses, near_miss_verdicts=self.pair_verdicts(self.near_misses),
            verification=self.verdicts.summary() if self.verdicts is not None else None,
            threshold_source=self.threshold_source, total_images=self.total_images)
        report["pair_search"] = self.search.as_report()
        if self.verdicts is not None and self.verdicts.ran and self.candidates is not None:
            # pairs under the cosine threshold that only the perceptual hashes found
            report["verification"]["hash_candidates"] = sum(
                "hash_distance" in nums and score < self.threshold_used
                for nums, score in zip(self.verdicts.numbers, self.candidates.score.tolist(),
                                       strict=True))
        if self.build is not None:  # what the scan of the folders left out, and why
            report["skipped"] = cast(Skipped, skipped_report(self.build.skipped_paths))
        if self.new_images is not None:
            report["compare_mode"] = "new_only"
            report["new_images"] = self.new_images
            report["new_since"] = self.new_since
        return report


@dataclass
class ReportFiles:
    output_dir: str
    report_path: str
    collage_path: str  # "" when not written
    gallery_path: str  # "" when not written
    report: Report


@dataclass
class DedupeResult:
    output_dir: str
    report_path: str
    collage_path: str
    report: Report
    build: BuildResult | None
    gallery_path: str = ""
    duplicates: Duplicates | None = None


def check_output_dir(base: str) -> None:
    """InputError unless result folders can be made in `base`: a folder that is writable,
    or that can be made inside the nearest folder above it that exists. Checked before
    any work, so a long run does not end in an error."""
    path = os.path.abspath(base)
    while not os.path.lexists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    if not os.path.isdir(path):
        raise InputError(f"cannot write results to {base}: {path} is not a folder")
    if not os.access(path, os.W_OK | os.X_OK):
        raise InputError(f"cannot write results to {base}: {path} is not writable")


def make_output_dir(base: str) -> tuple[str, str]:
    """OUTPUT/<YYYYmmdd_HHMMSS>, never an existing one. Returns (folder, timestamp)."""
    stamp = time.strftime("%Y%m%d_%H%M%S")
    try:
        os.makedirs(base, exist_ok=True)
        for k in range(1, 1000):
            name = stamp if k == 1 else f"{stamp}_{k}"
            path = os.path.join(base, name)
            try:
                os.mkdir(path)
                return path, stamp
            except FileExistsError:
                continue
    except OSError as exc:
        raise InputError(f"cannot write results to {base}: {exc.strerror or exc}") from None
    raise InputError(f"too many result folders for {stamp} in {base}")


def folder_codes(rows: Sequence[Row], folders: Sequence[str] | None) -> np.ndarray:
    """Which input folder each row belongs to: the deepest given folder, else its scan root."""
    if not folders:
        roots = sorted({r.root for r in rows})
        code = {root: k for k, root in enumerate(roots)}
        return np.asarray([code[r.root] for r in rows], np.int64)
    prefixes = sorted(((scope_prefix(f), k) for k, f in enumerate(folders)),
                      key=lambda t: -len(t[0]))
    return np.asarray([deepest_folder(r.path, prefixes) for r in rows], np.int64)


def progress_steps(progress: Progress, description: str) -> OnProgress:
    """An on_progress(done, total) callback that drives a Progress bar."""
    shown = {"done": 0, "started": False}

    def on_progress(done: int, total: int) -> None:
        if not shown["started"]:
            progress.start(description, total)
            shown["started"] = True
        progress.update(done - int(shown["done"]))
        shown["done"] = done

    return on_progress


def find_duplicates(
    index_dir: str,
    folders: Sequence[str] | None = None,
    settings: DedupeSettings | None = None,
    progress: Progress | None = None,
    *,
    engine: Engine | None = None,
    present: set[str] | None = None,
) -> Duplicates:
    """Pairs, groups and keep decisions of the index's images (those under `folders` when
    given), read from the last committed state. Writes nothing but what verification
    drops for room, in a folder inside the index's that it removes (verify/spill.py).

    `present`: only files in this set of paths (e.g. what a scan found just now), so rows
    of files deleted since they were indexed are left out.
    """
    settings = settings or DedupeSettings()
    progress = progress or NoProgress()
    settings.validate()
    timings: dict[str, float] = {}
    sampled = settings.pairs.compare_mode == "sample"
    if wants_ivf(index_dir, settings.search, sampled, settings.since is not None):
        return _find_large(index_dir, folders, settings, progress, present, engine)
    t = time.perf_counter()
    with IndexStore.open_reader(index_dir) as store:
        loaded = store.load(folders or None)
        errors = store.error_rows(folders or None)
        manifest = store.manifest.copy()
        index_path = store.folder
        last_dedupe = store.last_dedupe_seq()
        hash_ids, hashes = store.catalog.image_hashes()
    rows, vectors = loaded.rows, loaded.vectors
    if present is not None:
        keep = [k for k, r in enumerate(rows) if split_frame_path(r.path)[0] in present]
        rows, vectors = [rows[k] for k in keep], vectors[keep]
        errors = [r for r in errors if r.path in present]
    queries, new_since = None, None
    if settings.since is not None:
        queries = np.flatnonzero([r.added_at >= settings.since for r in rows])
        new_since = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(settings.since))
    elif settings.new_only:
        queries = np.flatnonzero([r.seq > last_dedupe for r in rows])
        new_since = "last dedupe"
    timings["load_vectors"] = time.perf_counter() - t
    t = time.perf_counter()
    codes = folder_codes(rows, folders)
    settings = _verify_auto(settings, manifest)
    threshold, source = resolve_threshold(settings, manifest.get("model"))
    pair_settings = replace(settings.pairs, threshold=threshold)
    candidates, info = find_pairs(vectors, pair_settings, method=settings.search,
                                  approx=settings.approx, folders=codes, queries=queries,
                                  engine=engine,
                                  on_progress=progress_steps(progress, "Pair search"))
    progress.finish()
    timings["pair_search"] = time.perf_counter() - t
    hash_distance = None
    if settings.verify.enabled:  # a candidate channel for verification; cosine alone without
        t = time.perf_counter()
        candidates, hash_distance = with_hash_pairs(
            candidates, rows, vectors, (hash_ids, hashes),
            query_rows(len(rows), pair_settings, queries),
            codes if pair_settings.across_folders else None)
        timings["hash_search"] = time.perf_counter() - t
    folder_list = ([os.path.abspath(f) for f in folders] if folders
                   else sorted({r.root for r in rows}))
    found = _Found(rows, vectors, candidates, info, codes, errors, folder_list, manifest,
                   index_path, loaded.seq, None if queries is None else len(queries), new_since,
                   threshold, source, None, hash_distance,
                   _hashes_in_pairs(candidates, rows, (hash_ids, hashes)))
    return _decide(found, settings, progress, timings)


def _hashes_in_pairs(pairs: Pairs, rows: Sequence[Row], stored: tuple[np.ndarray, np.ndarray]
                     ) -> dict[int, bytes]:
    """The stored hashes of the rows in `pairs`, by row id (what apply reads)."""
    hash_ids, hashes = stored
    want = np.unique(np.fromiter((rows[k].id for k in np.unique(
        np.concatenate([pairs.i, pairs.j])).tolist()), np.int64))
    at = np.flatnonzero(np.isin(hash_ids, want))
    return {int(hash_ids[k]): hashes[k].tobytes() for k in at.tolist()}


def with_hash_pairs(candidates: Pairs, rows: Sequence[Row], vectors: np.ndarray,
                    stored: tuple[np.ndarray, np.ndarray], queries: np.ndarray | None,
                    codes: np.ndarray | None) -> tuple[Pairs, np.ndarray]:
    """The cosine candidates and the hash channel's (search/hash_pairs.py), score
    descending, each with its real cosine; and per pair its hash distance in bits (-1: the
    hash channel did not find it). `stored`: (ids, hashes) of the rows with a hash;
    `queries`: row positions pairs must touch (None: all); `codes`: pairs within one input
    folder are left out."""
    ids = np.fromiter((r.id for r in rows), np.int64, len(rows))  # ascending
    hash_ids, hashes = stored
    at = np.searchsorted(ids, hash_ids)
    mine = at < len(ids)
    mine[mine] = ids[at[mine]] == hash_ids[mine]
    pos = at[mine]  # row position of each hash, ascending
    none = np.full(len(candidates), -1, np.int32)
    if len(pos) < 2:
        return candidates, none
    local = None if queries is None else np.flatnonzero(np.isin(pos, queries))
    a, b, d = hash_pairs(hashes[mine], queries=local)
    a, b = pos[a], pos[b]
    if codes is not None:
        other = codes[a] != codes[b]
        a, b, d = a[other], b[other], d[other]
    n = max(len(rows), 1)
    have = candidates.i.astype(np.int64) * n + candidates.j
    key = a * n + b
    known = np.isin(key, have)
    distance = none.copy()
    where = {int(k): x for x, k in enumerate(have.tolist())}
    for k, dist in zip(key[known].tolist(), d[known].tolist(), strict=True):
        distance[where[k]] = dist
    a, b, d = a[~known], b[~known], d[~known]
    merged = Pairs(np.concatenate([candidates.i, a.astype(candidates.i.dtype)]),
                   np.concatenate([candidates.j, b.astype(candidates.j.dtype)]),
                   np.concatenate([candidates.score, exact_scores(vectors, a, b)]))
    distance = np.concatenate([distance, d])
    order = np.argsort(-merged.score, kind="stable")
    return Pairs(merged.i[order], merged.j[order], merged.score[order]), distance[order]


@dataclass
class _Found:
    """What a pair search hands the verdicts, groups and keepers."""

    rows: list[Row]
    vectors: np.ndarray
    candidates: Pairs
    info: SearchInfo
    codes: np.ndarray  # input folder per row
    errors: list[Row]
    folder_list: list[str]
    manifest: Manifest
    index_path: str
    seq: int
    new_images: int | None
    new_since: str | None
    threshold: float
    source: str
    total: int | None
    hash_distance: np.ndarray | None = None  # per candidate, -1: not found by the hash channel
    hashes: dict[int, bytes] | None = None  # perceptual hashes of the rows in pairs, by id


def _decide(found: _Found, settings: DedupeSettings, progress: Progress,
            timings: dict[str, float]) -> Duplicates:
    """Verify the candidates, group the verified pairs, choose keepers."""
    rows, candidates = found.rows, found.candidates
    # the build's kept thumbnails of files in no candidate pair are not needed
    retain_thumbs({rows[k].path for k in np.unique(np.concatenate(
        [candidates.i, candidates.j])).tolist()})
    if settings.memory_budget and settings.verify.memory_bytes is None:
        # the described images verification holds: half the budget
        half = max(settings.memory_budget // 2, 16 << 20)
        settings = replace(settings, verify=replace(settings.verify, memory_bytes=half))
    if settings.verify.spill_dir is None:  # images dropped for room wait beside the index
        settings = replace(settings, verify=replace(settings.verify,
                                                    spill_dir=found.index_path))
    t = time.perf_counter()
    # a pair the perceptual hashes found is compared whatever an image's other shots
    uncapped = None if found.hash_distance is None else (found.hash_distance >= 0).tolist()
    verdicts = verify_pairs(rows, candidates, settings.verify, progress, uncapped)
    if verdicts.ran:
        timings["verify"] = time.perf_counter() - t
    if found.hash_distance is not None:  # the channel that found a pair, in its numbers
        numbers = verdicts.numbers  # a list made per call
        for k in np.flatnonzero(found.hash_distance >= 0).tolist():
            numbers[k]["hash_distance"] = float(found.hash_distance[k])
    kept = verdicts.kept()
    pairs, near = subset(candidates, kept), subset(candidates, ~kept)
    # other shots join the groups when asked; a pair that could not be verified never does
    edges = (subset(candidates, np.asarray([v.verified for v in verdicts.pairs], bool))
             if settings.group_near_misses else pairs)
    groups = connected_components(len(rows), edges.i, edges.j)
    decisions = choose_keepers(rows, groups, KeepSettings(settings.keep, tuple(settings.protect)),
                               found.codes, found.vectors, whole_rank(candidates, verdicts))
    m = found.manifest
    copies, other_shots = decided_pairs(rows, candidates, verdicts)
    floor = copy_floor(m.get("model"))
    screened = screen_decisions(decisions, rows, found.vectors, copies, floor, verdicts.ran,
                                found.hashes)
    if verdicts.ran and (more := direct_copies(rows, screened, settings.verify)):
        copies += more  # compared with the keeper itself: recorded, then screened again
        screened = screen_decisions(decisions, rows, found.vectors, copies, floor, True,
                                    found.hashes)
    decisions = screened
    return Duplicates(
        rows=list(rows), pairs=pairs, groups=groups, decisions=decisions,
        errors=list(found.errors), search=found.info, settings=settings,
        folder_list=found.folder_list,
        model=identity_of(m),
        index_path=found.index_path, timings=timings, snapshot_seq=found.seq,
        new_images=found.new_images, new_since=found.new_since,
        candidates=candidates, verdicts=verdicts, near_misses=near,
        threshold_source=found.source, threshold_used=found.threshold,
        total_images=found.total, verified=copies, other_shots=other_shots)


def _find_large(index_dir: str, folders: Sequence[str] | None, settings: DedupeSettings,
                progress: Progress, present: set[str] | None,
                engine: Engine | None = None) -> Duplicates:
    """find_duplicates over the on-disk IVF: memory set by the budget, not by N."""
    timings: dict[str, float] = {}
    t = time.perf_counter()
    bring_ivf_up_to_date(index_dir, progress, settings.wait)
    timings["ivf_update"] = time.perf_counter() - t
    with IndexStore.open_reader(index_dir) as store:
        errors = store.error_rows(folders or None)
        manifest = store.manifest.copy()
        index_path, seq = store.folder, store.catalog.last_seq()
        last_dedupe = store.last_dedupe_seq()
        roots = sorted(store.catalog.roots())
    if present is not None:
        errors = [r for r in errors if r.path in present]
    settings = _verify_auto(settings, manifest)
    threshold, source = resolve_threshold(settings, manifest.get("model"))
    t = time.perf_counter()
    large = search_ivf(index_dir, folders, threshold, settings.approx,
                       last_dedupe if settings.new_only else None, settings.memory_budget,
                       present, progress_steps(progress, "Pair search"), engine)
    progress.finish()
    timings["pair_search"] = time.perf_counter() - t
    codes = folder_codes(large.rows, folders)
    candidates = large.candidates
    if settings.pairs.across_folders and len(candidates):
        other = codes[candidates.i] != codes[candidates.j]
        candidates = subset(candidates, other)
    folder_list = [os.path.abspath(f) for f in folders] if folders else roots
    found = _Found(large.rows, large.vectors, candidates, large.info, codes, list(errors),
                   folder_list, manifest, index_path, seq, large.queries,
                   "last dedupe" if settings.new_only else None, threshold, source, large.total)
    return _decide(found, settings, progress, timings)


def _verify_auto(settings: DedupeSettings, manifest: Manifest) -> DedupeSettings:
    """Verification `auto`: on, except for imported vectors (the tool never read the files)."""
    if settings.verify.enabled is not None:
        return settings
    imported = manifest.get("weights_id") == IMPORTED_WEIGHTS
    return replace(settings, verify=replace(settings.verify, enabled=not imported))


def resolve_threshold(settings: DedupeSettings, model: str | None) -> tuple[float, str]:
    """(candidate threshold, "given" | "model default") for a dedupe of `model`'s index."""
    if settings.threshold is not None:
        return float(settings.threshold), "given"
    if settings.pairs.threshold is not None:
        return float(settings.pairs.threshold), "given"
    return candidate_threshold(model, settings.verify.enabled is not False), "model default"


def subset(pairs: Pairs, mask: np.ndarray) -> Pairs:
    """The pairs where `mask` holds, in the same order."""
    return Pairs(pairs.i[mask], pairs.j[mask], pairs.score[mask])


def write_report(
    dups: Duplicates,
    out_dir: str,
    *,
    collage: bool = True,
    gallery: bool = True,
    timestamp: str | None = None,
    progress: Progress | None = None,
) -> ReportFiles:
    """report.json (and the collage and gallery unless turned off) into `out_dir`, after
    recording in the index the pairs verification decided (apply checks against them)."""
    os.makedirs(out_dir, exist_ok=True)
    if dups.verified or dups.other_shots:  # apply reads the verdicts from the index
        IndexStore.record_verified(dups.index_path, dups.verified, dups.other_shots)
    report = dups.to_report(timestamp)
    collage_path = gallery_path = ""
    if collage:
        collage_path = os.path.join(out_dir, "similar_pairs_sample", "random_collage.jpg")
        s = dups.settings
        write_collage(dups.pair_paths(), collage_path, s.max_pairs_for_collage, s.pairs.seed,
                      dups.threshold_used)
    report_path = os.path.join(out_dir, "report.json")
    write_report_json(report, report_path)
    if gallery:
        gallery_path = write_gallery(report, os.path.join(out_dir, "report.html"),
                                     progress or NoProgress())
    return ReportFiles(out_dir, report_path, collage_path, gallery_path, report)


def dedupe(
    index_dir: str,
    folders: Sequence[str] | None = None,
    settings: DedupeSettings | None = None,
    progress: Progress | None = None,
    *,
    engine: Engine | None = None,
) -> DedupeResult:
    """The dedupe command: update the index from `folders` (if given), find duplicates,
    write the report files into a new OUTPUT/<timestamp>/ folder, and record the snapshot
    for the next new-only dedupe when the whole index was covered.

    `engine`: where images are embedded and pairs searched (pipeline/engine.py; None:
    here)."""
    settings = settings or DedupeSettings()
    progress = progress or NoProgress()
    settings.validate()
    check_output_dir(settings.output)
    built, update = None, {}
    side = settings.verify.max_side
    # the build decodes every image: verification, which describes the images in this
    # process (worker processes only compare them), takes its thumbnails from there
    with (kept.keeping((side, side), VERIFY_KEPT_BYTES) if folders
          and settings.verify.enabled is not False else nullcontext()):
        if folders:
            t = time.perf_counter()
            built = build_index(folders, index_dir, settings.build, progress,
                                engine=engine)
            update = {"index_update": time.perf_counter() - t}
        dups = find_duplicates(index_dir, folders, settings, progress, engine=engine,
                               present=set(built.scanned_paths) if built is not None else None)
    dups = replace(dups, build=built, timings={**update, **dups.timings})
    out_dir, stamp = make_output_dir(settings.output)
    files = write_report(dups, out_dir, timestamp=stamp, progress=progress)
    if not folders:  # the whole index was covered up to this snapshot
        IndexStore.record_dedupe(index_dir, dups.snapshot_seq)
    return DedupeResult(files.output_dir, files.report_path, files.collage_path, files.report,
                        built, files.gallery_path, dups)


__all__ = ["DedupeResult", "DedupeSettings", "Duplicates", "Groups", "ReportFiles", "dedupe",
           "find_duplicates", "folder_codes", "make_output_dir", "write_report"]
