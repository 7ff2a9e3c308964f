"""groups: pairs -> connected components, unique groups and removable files."""

from __future__ import annotations

import numpy as np

from imgsim_index.groups.components import connected_components


def arr(values: list[int]) -> np.ndarray:
    return np.asarray(values, dtype=np.int64)


def components_by_search(n: int, i: np.ndarray, j: np.ndarray) -> list[frozenset[int]]:
    """Reference answer: breadth-first search over an adjacency list."""
    adj: list[set[int]] = [set() for _ in range(n)]
    for a, b in zip(i.tolist(), j.tolist(), strict=True):
        adj[a].add(b)
        adj[b].add(a)
    seen, out = [False] * n, []
    for s in range(n):
        if seen[s]:
            continue
        seen[s], comp, todo = True, {s}, [s]
        while todo:
            for v in adj[todo.pop()]:
                if not seen[v]:
                    seen[v] = True
                    comp.add(v)
                    todo.append(v)
        out.append(frozenset(comp))
    return out


def test_the_seed_arithmetic() -> None:
    g = connected_components(10, arr([0, 1, 3]), arr([1, 2, 4]))
    assert g.n_unique == 7
    assert g.n_removable == 3
    assert [m.tolist() for m in g.members] == [[0, 1, 2], [3, 4]]
    assert len(g.labels) == 10
    assert g.labels[0] == g.labels[1] == g.labels[2]
    assert g.labels[3] == g.labels[4] != g.labels[0]
    assert len(set(g.labels[5:].tolist())) == 5


def test_components_are_sorted_largest_first_then_by_first_row() -> None:
    # sizes: {7, 8} 2, {0, 9} 2, {1, 2, 3, 4} 4, {5, 6, 10} 3
    i = arr([7, 0, 4, 2, 1, 10, 5])
    j = arr([8, 9, 3, 3, 2, 6, 10])
    g = connected_components(12, i, j)
    assert [m.tolist() for m in g.members] == [[1, 2, 3, 4], [5, 6, 10], [0, 9], [7, 8]]
    assert g.n_unique == 12 - 3 - 2 - 1 - 1
    assert g.n_removable == 7
    for m in g.members:
        assert m.tolist() == sorted(m.tolist())


def test_no_pairs() -> None:
    g = connected_components(5, arr([]), arr([]))
    assert g.n_unique == 5 and g.n_removable == 0 and g.members == []
    assert sorted(g.labels.tolist()) == [0, 1, 2, 3, 4]


def test_no_images() -> None:
    g = connected_components(0, arr([]), arr([]))
    assert g.n_unique == 0 and g.n_removable == 0 and g.members == []
    assert len(g.labels) == 0


def test_everything_one_group_and_repeated_pairs() -> None:
    i = arr([0, 1, 2, 3, 0, 0, 4])
    j = arr([1, 2, 3, 4, 4, 1, 3])  # a ring, a repeated pair
    g = connected_components(5, i, j)
    assert g.n_unique == 1 and g.n_removable == 4
    assert [m.tolist() for m in g.members] == [[0, 1, 2, 3, 4]]
    assert set(g.labels.tolist()) == {0}


def test_chain_merges_late() -> None:
    # two groups that only join by the last pair
    g = connected_components(6, arr([0, 3, 1, 4, 2]), arr([1, 4, 2, 5, 5]))
    assert [m.tolist() for m in g.members] == [[0, 1, 2, 3, 4, 5]]
    assert g.n_unique == 1


def test_labels_are_contiguous() -> None:
    g = connected_components(8, arr([6, 2]), arr([7, 5]))
    assert set(g.labels.tolist()) == set(range(g.n_unique))
    assert g.labels.dtype == np.int64


def test_random_graphs_match_a_reference() -> None:
    rng = np.random.default_rng(0)
    for n, m in [(1, 0), (2, 1), (50, 30), (300, 280), (1000, 600), (200, 1000)]:
        i = rng.integers(0, n, m)
        j = rng.integers(0, n, m)
        keep = i != j
        i, j = np.minimum(i[keep], j[keep]), np.maximum(i[keep], j[keep])
        g = connected_components(n, i, j)
        ref = components_by_search(n, i, j)
        assert g.n_unique == len(ref)
        assert g.n_removable == n - len(ref)
        got = [frozenset(m.tolist()) for m in g.members]
        assert sorted(got, key=sorted) == sorted((c for c in ref if len(c) > 1), key=sorted)
        sizes = [len(m) for m in g.members]
        assert sizes == sorted(sizes, reverse=True)
        for comp in ref:  # one label per component, different labels for different ones
            assert len({int(g.labels[v]) for v in comp}) == 1
        assert len({int(g.labels[min(c)]) for c in ref}) == len(ref)
