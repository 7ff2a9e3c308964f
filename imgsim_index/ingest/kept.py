"""kept: upright thumbnails that one command's decoding keeps for a later stage of the same
command, so a file is decoded once where two stages read it.

`dedupe FOLDER` decodes every image to embed it, then verification decodes the images of
the candidate pairs again (upright, long side <= its max side). While `keeping(box,
max_bytes)` is open, decode_file also makes that thumbnail from the pixels it already
decoded, where they are the very pixels upright_image would decode (decode.upright_thumb
says where), and keeps it here by (path, content digest), up to max_bytes; verification
takes it (decode_for_verify) instead of reading the file, only while the file is the
one that was read (the same device, inode, size, mtime and ctime: a file replaced or
deleted since is decoded, or found missing, as without this). Once the candidate pairs
are known, the thumbnails of files in none of them are dropped (`retain`). An image not
kept is decoded where it is needed, as without this. Only the process that opened it
keeps thumbnails (decoding threads, not worker processes).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

Thumb = tuple[np.ndarray, tuple[int, int]]  # upright RGB pixels, upright (height, width)
Identity = tuple[int, int, int, int, int]  # dev, inode, size, mtime_ns, ctime_ns


def identity(st: os.stat_result) -> Identity:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


@dataclass
class _Kept:
    box: tuple[int, int]
    max_bytes: int
    pid: int = field(default_factory=os.getpid)
    used: int = 0
    thumbs: dict[tuple[str, str], tuple[Thumb, Identity]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


_open: _Kept | None = None
_blocks: list[_Kept] = []  # the keeping() blocks open, oldest first
_blocks_lock = threading.Lock()


@contextmanager
def keeping(box: tuple[int, int], max_bytes: int) -> Iterator[None]:
    """Keep the thumbnails fitting `box` that decoding makes, up to max_bytes, until the
    block ends (then they are dropped)."""
    global _open
    mine = _Kept(box, max_bytes)
    with _blocks_lock:
        _blocks.append(mine)
        _open = mine
    try:
        yield
    finally:  # blocks may end in any order (two threads): the newest still open keeps
        with _blocks_lock:
            _blocks.remove(mine)
            _open = _blocks[-1] if _blocks else None


def _here() -> _Kept | None:
    kept = _open
    return kept if kept is not None and kept.pid == os.getpid() else None


def wanted_box() -> tuple[int, int] | None:
    """The box of the thumbnails to make while decoding, or None (none kept, or full)."""
    kept = _here()
    return kept.box if kept is not None and kept.used < kept.max_bytes else None


def keep(path: str, digest: str | None, box: tuple[int, int], thumb: Thumb,
         ident: Identity) -> None:
    """Keep `thumb` of the file at `path` whose bytes (of this digest) were read from the
    file `ident` names (its fstat when read)."""
    kept = _here()
    if kept is None or digest is None or box != kept.box:
        return
    with kept.lock:
        if (path, digest) not in kept.thumbs and kept.used + thumb[0].nbytes <= kept.max_bytes:
            kept.thumbs[(path, digest)] = (thumb, ident)
            kept.used += thumb[0].nbytes


def take(path: str, digest: str | None, box: tuple[int, int]) -> Thumb | None:
    """The thumbnail kept for this file's content at this box (given once), or None: also
    when the file at `path` is no longer the one read (replaced, changed, deleted)."""
    kept = _here()
    if kept is None or digest is None or box != kept.box:
        return None
    with kept.lock:
        got = kept.thumbs.pop((path, digest), None)
        if got is None:
            return None
        kept.used -= got[0][0].nbytes
    try:
        now = identity(os.stat(path))
    except OSError:
        return None
    return got[0] if now == got[1] else None


def retain(paths: set[str]) -> None:
    """Drop the thumbnails of files outside `paths` (the candidate pairs' files)."""
    kept = _here()
    if kept is None:
        return
    with kept.lock:
        for key in [k for k in kept.thumbs if k[0] not in paths]:
            kept.used -= kept.thumbs.pop(key)[0][0].nbytes


__all__ = ["Identity", "Thumb", "identity", "keep", "keeping", "retain", "take", "wanted_box"]
