"""spill: described images that the walk's memory cannot hold, kept on disk until no pair
needs them, so a later round reads them back instead of decoding and describing them again.

A walk through more images than its memory holds (settings.memory_bytes) goes in parts,
and a round touches most of its images again: without this, 800 look-alike pictures with
room for 75 were described 18,396 times; 2,000 took 637 s at the default 512 MiB, 279 s
with this, 203 s with room for all (benchmarks/RESULTS.md). A description is pickled
when it is first dropped for room while a pair still needs it (about 1 MiB: thumbnails,
keypoints), again only where comparisons have given it keypoints since, and removed when
no pair needs it; reading one back costs about half a millisecond against about 10
(decoding and describing) to 25 (with keypoints).

The folder is made, on first need, inside `parent` (`dedupe`: the index's folder, on the
disk that holds the index rather than a /tmp that may be memory), as
verify-spill-PID-XXXXXXXX (mode 0700), and removed when the walk ends; one left by a
process that no longer runs (killed) is removed by the next walk there (POSIX; only such
a name, a folder of this user's holding only N.pickle files). A file is read back only
if it is the file written (device, inode, size, times) and its bytes are (length,
CRC-32): a file swapped or damaged meanwhile is never unpickled (the image is described
again), and files are made 0600, never through a link. Within
VERIFY_SPILL_BYTES, and never where the disk would keep less than SPILL_MIN_FREE_BYTES
free: past either, or where the folder cannot be written, an image dropped for room is
described again when needed, as without this. A description read back is the first
reading's, so the verdicts are those of a walk that held every image.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import shutil
import stat
import tempfile
import zlib
from typing import Any

from imgsim_index.defaults import VERIFY_SPILL_BYTES
from imgsim_index.ingest.kept import Identity, identity

PREFIX = "verify-spill-"
SPILL_MIN_FREE_BYTES = 1 << 30  # the disk keeps at least this much free


class Spill:
    def __init__(self, parent: str, max_bytes: int = VERIFY_SPILL_BYTES) -> None:
        self.parent, self.max_bytes = parent, max_bytes
        with contextlib.suppress(OSError):  # what killed walks left, whether this one spills
            _remove_stale(parent)
        self.dir: str | None = None
        self.unusable = False  # the folder could not be made: nothing is spilled
        self.sizes: dict[int, int] = {}  # row -> bytes of its file
        self.keypoints: dict[int, int] = {}  # row -> keypoint sets its file holds
        # row -> its file's identity when written (device, inode, size, times: a file put
        # in its place is another inode, ours still existing) and the CRC-32 of its bytes:
        # a file is unpickled only if both are those written
        self.checks: dict[int, tuple[Identity, int]] = {}
        self.used = 0
        self.written = self.read = 0  # descriptions written, and read back

    def put(self, k: int, features: Any) -> None:
        """Keep row k's description on disk, room allowing: written again only where
        comparisons have given it keypoints since (SIFT costs more than the rest)."""
        if self.keypoints.get(k) == len(features.sift_cache) or self.unusable \
                or not self._ready():
            return
        data = pickle.dumps(features, protocol=pickle.HIGHEST_PROTOCOL)
        if self.used - self.sizes.get(k, 0) + len(data) > self.max_bytes \
                or not self._room(len(data)):
            return
        self.drop(k)
        path = self._path(k)
        try:  # a new file, only ours to read and write, never through a link
            with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o600),
                      "wb") as f:
                f.write(data)
                f.flush()
                ident = identity(os.fstat(f.fileno()))
        except OSError:  # the disk filled since: this one is described again when needed
            with contextlib.suppress(OSError):
                os.unlink(path)
            return
        self.sizes[k] = len(data)
        self.checks[k] = (ident, zlib.crc32(data))
        self.keypoints[k] = len(features.sift_cache)
        self.used += len(data)
        self.written += 1

    def take(self, k: int) -> Any | None:
        """Row k's description, or None: not spilled, or its file unreadable (then it is
        described again)."""
        if k not in self.sizes:
            return None
        try:
            with open(os.open(self._path(k), os.O_RDONLY | _NOFOLLOW), "rb") as f:
                ident = identity(os.fstat(f.fileno()))
                data = f.read(self.sizes[k] + 1)
            if len(data) != self.sizes[k] or (ident, zlib.crc32(data)) != self.checks[k]:
                raise ValueError("not the file written")  # never unpickled
            got = pickle.loads(data)  # noqa: S301 - the bytes this walk wrote
        except Exception:  # noqa: BLE001 - gone or damaged: described from its file instead
            self.drop(k)
            return None
        self.read += 1
        return got

    def drop(self, k: int) -> None:
        """No pair needs row k any more: its file goes."""
        size = self.sizes.pop(k, None)
        self.keypoints.pop(k, None)
        self.checks.pop(k, None)
        if size is not None:
            self.used -= size
            with contextlib.suppress(OSError):
                os.unlink(self._path(k))

    def close(self) -> None:
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
        self.sizes.clear()
        self.keypoints.clear()
        self.used = 0

    def _path(self, k: int) -> str:
        assert self.dir is not None
        return os.path.join(self.dir, f"{k}.pickle")

    def _ready(self) -> bool:
        if self.dir is None:
            try:
                self.dir = tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=self.parent)
            except OSError:  # read-only, gone, not a folder
                self.unusable = True
                return False
        return True

    def _room(self, size: int) -> bool:
        assert self.dir is not None
        try:
            return shutil.disk_usage(self.dir).free - size >= SPILL_MIN_FREE_BYTES
        except OSError:
            return False


def _remove_stale(parent: str) -> None:
    """Remove the spill folders in `parent` of processes that no longer run (POSIX: on
    Windows os.kill would end the process it asks about)."""
    if os.name != "posix":
        return
    for name in os.listdir(parent):
        m = _OURS.fullmatch(name)
        if m is None or int(m[1]) == os.getpid() or _running(int(m[1])):
            continue
        path = os.path.join(parent, name)
        try:
            st = os.lstat(path)
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
                continue
            for entry in os.listdir(path):  # only what a walk writes: N.pickle
                if _FILE.fullmatch(entry):
                    os.unlink(os.path.join(path, entry))
            os.rmdir(path)  # fails, keeping it, where anything else is inside
        except OSError:
            continue


# a name tempfile.mkdtemp gave a walk: the prefix, a PID, 8 random characters
# never through a link (POSIX); binary, not text, on Windows
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)


_OURS = re.compile(rf"{PREFIX}([0-9]{{1,9}})-[a-z0-9_]{{8}}", re.ASCII)
_FILE = re.compile(r"[0-9]+\.pickle", re.ASCII)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, another user's
        return True
    return True


__all__ = ["PREFIX", "SPILL_MIN_FREE_BYTES", "Spill"]
