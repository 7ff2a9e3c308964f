"""groups: pairs -> connected components; counts of unique groups and removable files.

unique groups = components of the pair graph, single images included;
photos to remove = images - unique groups (keep one per group).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Groups:
    labels: np.ndarray  # (n,) component id per row, 0..n_components-1
    members: list[np.ndarray]  # components with 2+ rows, largest first, rows ascending

    @property
    def n_unique(self) -> int:
        return int(self.labels.max()) + 1 if len(self.labels) else 0

    @property
    def n_removable(self) -> int:
        return len(self.labels) - self.n_unique


def _find(parent: np.ndarray, x: int) -> int:
    root = x
    while parent[root] != root:
        root = parent[root]
    while parent[x] != root:  # path compression
        parent[x], x = root, parent[x]
    return root


def connected_components(n: int, i: np.ndarray, j: np.ndarray) -> Groups:
    parent = np.arange(n, dtype=np.int64)
    for a, b in zip(i.tolist(), j.tolist(), strict=True):
        ra, rb = _find(parent, a), _find(parent, b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    roots = np.fromiter((_find(parent, x) for x in range(n)), np.int64, count=n)
    _, labels = np.unique(roots, return_inverse=True)
    labels = labels.astype(np.int64)
    order = np.argsort(labels, kind="stable")
    bounds = np.flatnonzero(np.diff(labels[order])) + 1
    comps = [c for c in np.split(order, bounds) if len(c) > 1] if n else []
    comps.sort(key=lambda c: (-len(c), int(c[0])))
    return Groups(labels, comps)
