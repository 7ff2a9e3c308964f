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


# A digest read from a file stands for it while its stat stays the same: any write changes
# the ctime, which no user tool can set back. A ctime within a coarse file-system clock's
# tick of the read could hide a write in that same tick, so a digest is trusted for a stat
# only when the file's ctime is this much older than the read began.
CTIME_TRUST_NS = 2_000_000_000


def stat_stamp(st: os.stat_result) -> tuple[int, int, int, int, int]:
    """(dev, inode, size, mtime_ns, ctime_ns): what a write to the file changes."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def stamp_trusted(stamp: tuple[int, ...] | list[int], read_started_ns: int) -> bool:
    """May a digest of bytes read from `read_started_ns` (time.time_ns()) on stand for
    the file while its stat is `stamp` (see CTIME_TRUST_NS)?"""
    return stamp[4] < read_started_ns - CTIME_TRUST_NS


def normal_path(path: str) -> str:
    """Absolute, with `.`, `..` and repeated separators folded (symlinks not resolved)."""
    return os.path.normpath(os.path.abspath(path))
