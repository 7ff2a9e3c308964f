"""sets: what the pair walk (rounds.py) knows of the images' groups: Sets, a union-find of the
images joined through verified copies, and Apart, the pairs of groups shown to be other
shots of each other."""

from __future__ import annotations


class Sets:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, x: int) -> int:
        p = self.parent
        while p[x] != x:
            p[x] = p[p[x]]
            x = p[x]
        return x

    def union(self, a: int, b: int) -> tuple[int, int] | None:
        """Join the sets of a and b; (surviving root, absorbed root), or None if joined."""
        root_a, root_b = self.find(a), self.find(b)
        if root_a == root_b:
            return None
        self.parent[max(root_a, root_b)] = min(root_a, root_b)
        return min(root_a, root_b), max(root_a, root_b)

    def copy(self) -> Sets:
        s = Sets(0)
        s.parent = list(self.parent)
        return s


class Apart:
    """Pairs of sets (by root) shown to be other shots of each other by `votes` compared
    pairs judged on aligned pixels (the same captures, edited, are no copies of each
    other either, so their other pairs are not compared: the compared pairs stand for
    them), or by `unaligned` compared pairs of which the rest did not align: pictures that
    look alike to the embedding but share no geometry (products on white, synthetic
    images) would otherwise compare every pair between two groups of their copies."""

    def __init__(self, votes: int, unaligned: int) -> None:
        self.votes, self.unaligned = votes, unaligned
        # root -> other root -> the compared pairs between them that were not copies:
        # (pair, judged on aligned pixels)
        self.by_root: dict[int, dict[int, list[tuple[int, bool]]]] = {}

    def decided(self, root_a: int, root_b: int) -> tuple[list[int], bool] | None:
        """(the deciding pairs, whether they were judged on aligned pixels) when sets
        root_a and root_b are apart, else None."""
        pairs = self.by_root.get(root_a, {}).get(root_b, [])
        aligned = [p for p, judged in pairs if judged]
        if len(aligned) >= self.votes:
            return aligned, True
        if len(pairs) >= self.unaligned:
            return [p for p, _ in pairs], False
        return None

    def add(self, root_a: int, root_b: int, *pairs: tuple[int, bool]) -> None:
        self.by_root.setdefault(root_a, {}).setdefault(root_b, []).extend(pairs)
        self.by_root.setdefault(root_b, {}).setdefault(root_a, []).extend(pairs)

    def merged(self, keep: int, gone: int) -> None:
        """Sets `gone` joined `keep`: the verdicts against `gone` count against `keep`."""
        for other, pairs in self.by_root.pop(gone, {}).items():
            del self.by_root[other][gone]
            if other != keep:
                self.add(keep, other, *pairs)


__all__ = ["Apart", "Sets"]
