"""query: image files -> the most similar indexed images, with scores and verdicts.

The query images are embedded with the index's own model (checked against the
manifest, weights included), then searched against every vector in the index, or, in an
index with an on-disk IVF, against the lists nearest to them (search/ivf_search.py):
memory and time then do not grow with the index.

The rules every surface (CLI, HTTP, Python) shares live here: the threshold is the given
one, else the model's candidate threshold as dedupe takes it; the query file itself is
left out unless `include_self`; every listed neighbour carries `similarity_score`,
`match` and `evidence` (report.json's names); neighbours under the threshold are left out
unless `include_below`, and then marked `match: "below_threshold"`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from imgsim_index.embed.embedder import Embedder
from imgsim_index.errors import IndexFormatError, InputError
from imgsim_index.index.catalog import Row
from imgsim_index.index.import_vectors import IMPORTED_WEIGHTS
from imgsim_index.index.manifest import Manifest
from imgsim_index.index.store import IndexStore, LoadedVectors, check_identity
from imgsim_index.pipeline.build import BuildSettings, resolve_model
from imgsim_index.search.threshold import SCORE_DECIMALS
from imgsim_index.verify import ImageFile
from imgsim_index.verify.verdict import Verdict

if TYPE_CHECKING:
    from imgsim_index.search import Pairs
    from imgsim_index.search.ivf_search import IvfSearcher
    from imgsim_index.verify import ImageSource, VerifySettings


_QUERY_BLOCK = 32  # query images scored together: (rows, 32) float32 scores at a time


BELOW_THRESHOLD = "below_threshold"  # the match of a listed neighbour under the threshold


@dataclass
class QueryResult:
    path: str
    error: str | None = None
    matches: list[tuple[str, float]] = field(default_factory=list)  # (path, score), best first
    # a Verdict per match, aligned with `matches`: exact | copy | other_shot as dedupe
    # verifies its candidates (copy, "not verified (cosine only)" without verification),
    # BELOW_THRESHOLD under the threshold
    verdicts: list[Verdict] = field(default_factory=list)
    threshold: float | None = None  # the threshold used
    threshold_source: str = ""  # "given" | "model default", as in report.json

    def rows(self) -> list[dict[str, Any]]:
        """The matches as every surface prints them: path, similarity_score, match,
        evidence."""
        return [{"path": p, "similarity_score": s, "match": v.match, "evidence": v.evidence}
                for (p, s), v in zip(self.matches, self.verdicts, strict=True)]

    def to_dict(self, name: str | None = None) -> dict[str, Any]:
        """The result as JSON (CLI --json, HTTP); `name`: what to call the query image
        (an upload's own name) instead of its path."""
        return {"query": self.path if name is None else name, "error": self.error,
                "threshold": self.threshold, "threshold_source": self.threshold_source,
                "matches": self.rows()}


def verify_enabled(settings: VerifySettings | None, manifest: Manifest) -> bool:
    """Verification as asked, else (auto) on, except for an index of imported vectors:
    the tool never read those files."""
    if settings is not None and settings.enabled is not None:
        return settings.enabled
    return manifest.get("weights_id") != IMPORTED_WEIGHTS


def resolve_threshold(threshold: float | None, model: str | None, verify: bool
                      ) -> tuple[float, str]:
    """(threshold, "given" | "model default"): the given one, else the model's candidate
    threshold with or without verification, as dedupe takes it."""
    from imgsim_index.verify import candidate_threshold

    if threshold is not None:
        return float(threshold), "given"
    return candidate_threshold(model, verify), "model default"


def is_same_file(indexed: str, query_path: str) -> bool:
    """Is the indexed entry the query file itself (by path, or by device and inode)?"""
    if os.path.abspath(indexed) == os.path.abspath(query_path):
        return True
    try:
        return os.path.samefile(indexed, query_path)
    except OSError:
        return False


def pair_verdicts(images: Sequence[ImageSource], pairs: Pairs,
                  settings: VerifySettings | None) -> list[Verdict]:
    """The Verdict of each pair of `pairs` (positions into `images`), compared as dedupe
    compares its candidates; copy, "not verified (cosine only)" when verification is off."""
    from imgsim_index.verify import VerifySettings, verify_pairs

    # every pair asked about is compared: no limit of other shots per image
    every = replace(settings or VerifySettings(), other_shots_per_image=0)
    return verify_pairs(images, pairs, every).pairs


def verify_hits(results: Sequence[QueryResult], rows: dict[str, Row], threshold: float,
                settings: VerifySettings) -> None:
    """Give each match a verdict: scoring >= threshold, the query image and each hit are
    decoded once per query, and compared on their pixels as dedupe's candidate pairs are;
    under it, BELOW_THRESHOLD."""
    from imgsim_index.search import Pairs

    below = Verdict(BELOW_THRESHOLD, f"scores under the threshold {threshold:g}: not a duplicate")
    for r in results:
        r.verdicts = [below] * len(r.matches)
        hits = [k for k, (_, s) in enumerate(r.matches) if s >= threshold]
        if r.error or not hits:
            continue
        star: list[ImageSource] = [ImageFile(r.path), *(rows[r.matches[k][0]] for k in hits)]
        n = len(hits)
        pairs = Pairs(np.zeros(n, np.int64), np.arange(1, n + 1, dtype=np.int64),
                      np.asarray([r.matches[k][1] for k in hits], np.float64))
        verdicts = pair_verdicts(star, pairs, settings)  # a star: every pair is compared
        for p, k in enumerate(hits):
            r.verdicts[k] = verdicts[p]


def top_hits(vectors: np.ndarray, query: np.ndarray, scores: np.ndarray, k: int,
             ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The `k` rows of `vectors` most similar to `query` (a unit vector), given their
    float32 `scores` (vectors @ query): (rows, scores rounded to SCORE_DECIMALS in
    float64), best first.

    The candidates are every row within a margin of the k-th float32 score (the margin
    covers float32 rounding); they are scored again in float64, each row by the same sum,
    so equal vectors score equal and the result does not depend on how the float32
    scores were summed. Order (as FAISS's heap gave it when
    it ran the search on rows in id order): the k best by exact score, an equal score
    taking the lower id first; listed by rounded score, then exact score, equal exact
    scores from the higher id down. `ids`: each row's id (default: its position).
    A non-finite vector makes a non-finite score: IndexFormatError."""
    if not np.isfinite(scores).all():
        raise IndexFormatError("the index holds vectors with NaN or Inf; the index is damaged:"
                               " run verify with repair")
    kth = np.partition(scores, len(scores) - k)[len(scores) - k]
    cand = np.flatnonzero(scores >= kth - np.float32(1e-3))
    exact = (np.asarray(vectors[cand], np.float64) * query.astype(np.float64)).sum(axis=1)
    tie = cand if ids is None else ids[cand]
    best = np.lexsort((tie, -exact))[:k]  # positions in cand
    exact, tie = exact[best], tie[best]
    rounded = np.round(exact, SCORE_DECIMALS)
    order = np.lexsort((-tie, -exact, -rounded))
    return cand[best[order]], rounded[order]


def query_index(
    index_dir: str,
    images: Sequence[str],
    top_k: int = 10,
    threshold: float | None = None,
    settings: BuildSettings | None = None,
    embedder: Embedder | None = None,
    loaded: LoadedVectors | None = None,
    verify: VerifySettings | None = None,
    *,
    include_self: bool = False,
    include_below: bool = False,
    searcher: IvfSearcher | None = None,
) -> list[QueryResult]:
    """The `top_k` best matches of each image, best first (see the module's rules).

    `threshold`: None for the model's candidate threshold (verify.candidate_threshold).
    `verify`: None for on (off for an index of imported vectors); matches at or above the
    threshold are compared on their pixels. `include_self`: list the query file itself
    when it is indexed. `include_below`: fill up to `top_k` with neighbours under the
    threshold, marked BELOW_THRESHOLD.

    `embedder` (the model, ready on its device) and `loaded` (the index's vectors) come
    from a caller that keeps them between queries (a long-running service), or are
    loaded here: then only the vectors are read (mapped when the index is compacted), and
    the catalog rows of the hits alone, by id, from the same commit. `searcher`: a large
    index's IVF searcher kept by the caller for the index's current commit (see
    search.ivf_search.IvfSearcher)."""
    if top_k < 1:
        raise InputError("top-k must be at least 1")
    settings = settings or BuildSettings()
    from imgsim_index.verify import VerifySettings

    with IndexStore.open_reader(index_dir) as store:
        manifest = store.manifest.copy()
        model = embedder.model if embedder else resolve_model(index_dir, settings)
        check_identity(manifest, model.identity(), index_dir)
        verify_on = verify_enabled(verify, manifest)
        threshold, source = resolve_threshold(threshold, model.info.name, verify_on)
        results = [QueryResult(p, threshold=threshold, threshold_source=source)
                   for p in images]
        # one more than asked: the query file itself, when indexed, is left out below
        search_k = top_k + (not include_self)
        # a one-shot query makes its ONNX session while the images decode
        embedder = embedder or Embedder(model, settings.embed.device, settings.embed.backend,
                                        defer_session=True)
        vectors, ok = _embed(embedder, images, settings, results)
        if loaded is not None:  # rows in id order: a row's position breaks ties alike
            found = _search(loaded.vectors, None, vectors, ok, search_k)
            hit_rows = {i: loaded.rows[i] for hits, _ in found.values() for i in hits}
        else:
            with store.snapshot():
                found = _search_stored(store, vectors, ok, search_k, searcher)
                hit_rows = store.catalog.rows_by_id(i for hits, _ in found.values()
                                                    for i in hits)
    missing = {i for hits, _ in found.values() for i in hits} - set(hit_rows)
    if missing:  # a vector with no row in the same commit
        raise IndexFormatError(f"{index_dir}: {len(missing)} vectors have no catalog row; the "
                               "index is damaged: run verify with repair")
    for q, (hits, scores) in found.items():
        query_path = results[q].path
        results[q].matches = [
            (hit_rows[i].path, s) for i, s in zip(hits, scores, strict=True)
            if (include_below or s >= threshold)
            and (include_self or not is_same_file(hit_rows[i].path, query_path))][:top_k]
    verify_hits(results, {r.path: r for r in hit_rows.values()}, threshold,
                replace(verify or VerifySettings(), enabled=verify_on))
    return results


def _search_stored(store: IndexStore, vectors: np.ndarray, ok: np.ndarray, top_k: int,
                   searcher: IvfSearcher | None = None
                   ) -> dict[int, tuple[list[int], list[float]]]:
    """Query position -> (ids, scores) of its best rows: through the on-disk IVF of a large
    index (only the probed lists are read), else over every stored vector."""
    from imgsim_index.index import ivf

    todo = np.flatnonzero(ok)
    if searcher is not None:
        hits = searcher.top_k(vectors[todo], top_k)
        return {int(q): (ids.tolist(), scores.tolist()) for q, (ids, scores)
                in zip(todo.tolist(), hits, strict=True)}
    manifest = ivf.read_manifest(store.folder)
    if manifest is None:
        search = store.load_for_search()
        return _search(search.vectors, search.ids, vectors, ok, top_k)
    from imgsim_index.search.ivf_search import ivf_top_k

    hits = ivf_top_k(store.folder, store.catalog, manifest, vectors[todo], top_k)
    return {int(q): (ids.tolist(), scores.tolist()) for q, (ids, scores)
            in zip(todo.tolist(), hits, strict=True)}


def _embed(embedder: Embedder, images: Sequence[str], settings: BuildSettings,
           results: list[QueryResult]) -> tuple[np.ndarray, np.ndarray]:
    """The query images' vectors, and which were read (an unreadable one gets its error)."""
    vectors = np.zeros((len(images), embedder.model.info.dim), np.float32)
    ok = np.zeros(len(images), bool)
    embed_settings = replace(settings.embed, workers=0) if len(images) < 8 else settings.embed
    for batch in embedder.embed_files(list(images), embed_settings):
        vectors[batch.positions] = batch.vectors
        ok[batch.positions] = True
        for pos, reason in batch.errors:
            results[pos].error = reason
    return vectors, ok


def _search(index: np.ndarray, ids: np.ndarray | None, vectors: np.ndarray, ok: np.ndarray,
            top_k: int) -> dict[int, tuple[list[int], list[float]]]:
    """Query position -> (its best `top_k` rows, as their `ids` or, without, their
    positions; their scores), best first."""
    if not len(index):
        return {}
    k = min(top_k, len(index))
    found = {}
    index = np.asarray(index)  # a memory map searched in place
    todo = np.flatnonzero(ok).tolist()
    for s in range(0, len(todo), _QUERY_BLOCK):
        block = todo[s:s + _QUERY_BLOCK]
        scores = index @ vectors[block].T  # one pass over the index per block of queries
        for j, q in enumerate(block):
            rows, best = top_hits(index, vectors[q], scores[:, j], k, ids)
            found[q] = ((rows if ids is None else ids[rows]).tolist(), best.tolist())
    return found
