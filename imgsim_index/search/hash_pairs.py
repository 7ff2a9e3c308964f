"""hash_pairs: perceptual hashes -> the pairs within a Hamming radius in any rotation or
mirror: the candidate channel for what the embeddings do not see (grey, quarter turns).

Each query hash is turned and mirrored the 8 ways of the dihedral group (ingest/phash.py:
bit operations on the hash) and searched against every image's own hash with a FAISS
binary flat index (range search, popcount of 256-bit XORs). The distance of a pair is the
smallest over the 8 variants. Memory: the hashes (32 bytes each) plus one block of query
results; time grows with (queries x 8) x hashes, so this runs where the vectors are in
memory (up to search.AUTO_APPROX_ABOVE images), not on the on-disk IVF path.
"""

from __future__ import annotations

import numpy as np

from imgsim_index.ingest.phash import HASH_BYTES, dihedral

# Matches at or under this many differing bits of 256 (PDQ's own advice is 31); copies of
# the scikit-image photos differ in at most 6, unrelated photos in about 100 or more.
HASH_RADIUS = 31
_BLOCK = 8192  # query hashes per range search


def hash_pairs(hashes: np.ndarray, radius: int = HASH_RADIUS,
               queries: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a, b, distance) with a < b, positions into `hashes` ((n, 32) uint8), of every pair
    whose hashes differ in at most `radius` bits in some rotation or mirror of one of them.
    `queries`: only pairs with at least one of these positions (None: all pairs)."""
    import faiss

    hashes = np.ascontiguousarray(hashes, np.uint8)
    n = len(hashes)
    empty = np.zeros(0, np.int64)
    if n < 2:
        return empty, empty, empty.astype(np.int32)
    index = faiss.IndexBinaryFlat(HASH_BYTES * 8)
    index.add(hashes)
    rows = np.arange(n, dtype=np.int64) if queries is None else np.unique(queries)
    if not len(rows):
        return empty, empty, empty.astype(np.int32)
    a_parts, b_parts, d_parts = [], [], []
    for s in range(0, len(rows), _BLOCK):
        block = rows[s:s + _BLOCK]
        for variant in dihedral(hashes[block]):
            lims, dist, found = index.range_search(np.ascontiguousarray(variant), radius + 1)
            q = np.repeat(block, np.diff(lims).astype(np.int64))
            other = q != found
            a_parts.append(np.minimum(q, found)[other])
            b_parts.append(np.maximum(q, found)[other])
            d_parts.append(dist[other])
    a, b, d = (np.concatenate(a_parts), np.concatenate(b_parts),
               np.concatenate(d_parts).astype(np.int32))
    order = np.lexsort((d, b, a))  # by pair, then distance: the first of each is its least
    a, b, d = a[order], b[order], d[order]
    first = np.ones(len(a), bool)
    first[1:] = (a[1:] != a[:-1]) | (b[1:] != b[:-1])
    return a[first], b[first], d[first]


__all__ = ["HASH_RADIUS", "hash_pairs"]
