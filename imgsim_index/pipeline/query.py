"""query: image files -> the most similar indexed images, with scores.

The query images are embedded with the index's own model (checked against the
manifest, weights included), then searched against every vector in the index.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from imgsim_index.embed.embedder import Embedder
from imgsim_index.errors import InputError
from imgsim_index.index.catalog import Row
from imgsim_index.index.store import IndexStore, LoadedVectors, check_identity
from imgsim_index.pipeline.build import BuildSettings, resolve_model
from imgsim_index.search.threshold import SCORE_DECIMALS
from imgsim_index.verify import VerifySettings


@dataclass
class QueryResult:
    path: str
    error: str | None = None
    matches: list[tuple[str, float]] = field(default_factory=list)  # (path, score), best first
    # with verification: (match, evidence) per match at or above the model's candidate
    # threshold, aligned with `matches` (None below it, or when verification is off)
    verdicts: list[tuple[str, str] | None] = field(default_factory=list)


def verify_hits(results: Sequence[QueryResult], rows: dict[str, Row], threshold: float,
                settings: VerifySettings) -> None:
    """Give each match scoring >= threshold a verdict: the query image and each hit are
    decoded once per query, and compared on their pixels as dedupe's candidate pairs are."""
    from imgsim_index.search import Pairs
    from imgsim_index.verify import verify_pairs

    for r in results:
        r.verdicts = [None] * len(r.matches)
        hits = [k for k, (_, s) in enumerate(r.matches) if s >= threshold]
        if r.error or not hits:
            continue
        query_row = Row(id=-1, path=r.path, root="", size=None, mtime_ns=None, width=None,
                        height=None, status="query", error=None, segment=None, added_at=0.0,
                        seq=0)
        star = [query_row, *(rows[r.matches[k][0]] for k in hits)]
        n = len(hits)
        pairs = Pairs(np.zeros(n, np.int64), np.arange(1, n + 1, dtype=np.int64),
                      np.asarray([r.matches[k][1] for k in hits], np.float64))
        v = verify_pairs(star, pairs, settings)  # a star: every pair is compared
        for p, k in enumerate(hits):
            r.verdicts[k] = (v.match[p], v.evidence[p])


def query_index(
    index_dir: str,
    images: Sequence[str],
    top_k: int = 10,
    threshold: float | None = None,
    settings: BuildSettings | None = None,
    embedder: Embedder | None = None,
    loaded: LoadedVectors | None = None,
    verify: VerifySettings | None = None,
) -> list[QueryResult]:
    """`embedder` (the model, ready on its device) and `loaded` (the index's vectors) come
    from a caller that keeps them between queries (a long-running service), or are
    loaded here. `verify` (enabled): matches at or above the model's candidate threshold get
    a verdict (QueryResult.verdicts)."""
    import faiss

    if top_k < 1:
        raise InputError("top-k must be at least 1")
    settings = settings or BuildSettings()
    with IndexStore.open_reader(index_dir) as store:
        manifest = dict(store.manifest)
        if loaded is None:
            loaded = store.load()
    model = embedder.model if embedder else resolve_model(index_dir, settings)
    check_identity(manifest, model.identity(), index_dir)
    results = [QueryResult(p) for p in images]
    embedder = embedder or Embedder(model, settings.embed.device, settings.embed.backend)
    vectors = np.zeros((len(images), model.info.dim), np.float32)
    ok = np.zeros(len(images), bool)
    from dataclasses import replace

    embed_settings = replace(settings.embed, workers=0) if len(images) < 8 else settings.embed
    for batch in embedder.embed_files(list(images), embed_settings):
        vectors[batch.positions] = batch.vectors
        ok[batch.positions] = True
        for pos, reason in batch.errors:
            results[pos].error = reason
    if not len(loaded.rows):
        return results
    k = min(top_k, len(loaded.rows))
    rows = np.flatnonzero(ok)
    # faiss.knn searches the loaded matrix in place (the kernel IndexFlatIP.search runs),
    # without copying it into an index first: at 100k x 1280 the copy cost 10x the search.
    _, found = faiss.knn(vectors[rows], loaded.vectors, k, metric=faiss.METRIC_INNER_PRODUCT)
    for q, hits in zip(rows.tolist(), found, strict=True):
        hits = hits[hits >= 0]
        scores = np.round(loaded.vectors[hits].astype(np.float64)
                          @ vectors[q].astype(np.float64), SCORE_DECIMALS)
        order = np.argsort(-scores, kind="stable")
        for h, s in zip(hits[order].tolist(), scores[order].tolist(), strict=True):
            if threshold is None or s >= threshold:
                results[q].matches.append((loaded.rows[h].path, float(s)))
    if verify is not None and verify.enabled is not False:
        from imgsim_index.verify import candidate_threshold

        verify_hits(results, {row.path: row for row in loaded.rows},
                    candidate_threshold(model.info.name), verify)
    return results
