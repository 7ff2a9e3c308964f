"""kept: upright thumbnails that one command's decoding keeps for a later stage of the same
command, so a file is decoded once where two stages read it.

`dedupe FOLDER` decodes every image to embed it, then verification decodes the images of
the candidate pairs again (upright, long side <= its max side). While `keeping(box,
max_bytes)` is open, decode_file also makes that thumbnail from the pixels it already
decoded, where they are the very pixels upright_image would decode (decode.upright_thumb
says where), and keeps it here by (path, content digest), up to max_bytes; verification
takes it (decode_for_verify) instead of reading the file. An image not kept is decoded
where it is needed, as without this. Only the process that opened it keeps thumbnails
(decoding threads, not worker processes).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

Thumb = tuple[np.ndarray, tuple[int, int]]  # upright RGB pixels, upright (height, width)


@dataclass
class _Kept:
    box: tuple[int, int]
    max_bytes: int
    pid: int = field(default_factory=os.getpid)
    used: int = 0
    thumbs: dict[tuple[str, str], Thumb] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


_open: _Kept | None = None


@contextmanager
def keeping(box: tuple[int, int], max_bytes: int) -> Iterator[None]:
    """Keep the thumbnails fitting `box` that decoding makes, up to max_bytes, until the
    block ends (then they are dropped)."""
    global _open
    before, _open = _open, _Kept(box, max_bytes)
    try:
        yield
    finally:
        _open = before


def _here() -> _Kept | None:
    kept = _open
    return kept if kept is not None and kept.pid == os.getpid() else None


def wanted_box() -> tuple[int, int] | None:
    """The box of the thumbnails to make while decoding, or None (none kept, or full)."""
    kept = _here()
    return kept.box if kept is not None and kept.used < kept.max_bytes else None


def keep(path: str, digest: str | None, box: tuple[int, int], thumb: Thumb) -> None:
    kept = _here()
    if kept is None or digest is None or box != kept.box:
        return
    with kept.lock:
        if (path, digest) not in kept.thumbs and kept.used + thumb[0].nbytes <= kept.max_bytes:
            kept.thumbs[(path, digest)] = thumb
            kept.used += thumb[0].nbytes


def take(path: str, digest: str | None, box: tuple[int, int]) -> Thumb | None:
    """The thumbnail kept for this file's content at this box (given once), or None."""
    kept = _here()
    if kept is None or digest is None or box != kept.box:
        return None
    with kept.lock:
        thumb = kept.thumbs.pop((path, digest), None)
        if thumb is not None:
            kept.used -= thumb[0].nbytes
        return thumb


__all__ = ["Thumb", "keep", "keeping", "take", "wanted_box"]
