"""paths: the one folder-containment rule (absolute, normalised, whole path components)."""

from __future__ import annotations

import os
from collections.abc import Sequence


def folder_prefix(folder: str) -> str:
    """`folder` as an absolute, normalised prefix ending in a separator."""
    return os.path.join(os.path.abspath(folder), "")


def is_under(path: str, folder: str) -> bool:
    """Is `path` inside `folder`? `photos2/a.jpg` is not inside `photos`."""
    return os.path.abspath(path).startswith(folder_prefix(folder))


def under_any(path: str, folders: Sequence[str]) -> bool:
    """Is `path` inside one of `folders`?"""
    p = os.path.abspath(path)
    return any(p.startswith(folder_prefix(f)) for f in folders)


def deepest_folder(path: str, prefixes: Sequence[tuple[str, int]]) -> int:
    """The code of the first of `prefixes` (folder_prefix, code), sorted deepest first,
    that holds `path`; -1 when none does."""
    return next((k for p, k in prefixes if path.startswith(p)), -1)


__all__ = ["deepest_folder", "folder_prefix", "is_under", "under_any"]
