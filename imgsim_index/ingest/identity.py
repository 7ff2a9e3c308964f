"""identity: what makes a file the same file (device + inode) and the same bytes (a digest).

Paths are names, not files: a symlinked folder, overlapping inputs or a hard link
give one file several names. Scan and apply compare `FileKey`s; the content
digest (BLAKE2b-128 over the bytes, computed from the bytes read for decoding)
tells apply that a file still holds what was indexed, and marks byte-identical
files.
"""

from __future__ import annotations

import hashlib
import os

FileKey = tuple[int, int]  # (st_dev, st_ino)

DIGEST_CHUNK = 1 << 20


def content_digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def file_digest(path: str) -> str:
    """The content digest of a file, read in 1 MiB chunks (never the whole file at once)."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        while chunk := fh.read(DIGEST_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def file_key(st: os.stat_result) -> FileKey:
    return (st.st_dev, st.st_ino)


def normal_path(path: str) -> str:
    """Absolute, with `.`, `..` and repeated separators folded (symlinks not resolved)."""
    return os.path.normpath(os.path.abspath(path))
