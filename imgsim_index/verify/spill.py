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
verify-spill-PID-XXXX (mode 0700), and removed when the walk ends; one left by a process
that no longer runs (killed) is removed by the next walk that spills there (POSIX). Within
VERIFY_SPILL_BYTES, and never where the disk would keep less than SPILL_MIN_FREE_BYTES
free: past either, or where the folder cannot be written, an image dropped for room is
described again when needed, as without this. A description read back is the first
reading's, so the verdicts are those of a walk that held every image.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import shutil
import tempfile
from typing import Any

from imgsim_index.defaults import VERIFY_SPILL_BYTES

PREFIX = "verify-spill-"
SPILL_MIN_FREE_BYTES = 1 << 30  # the disk keeps at least this much free


class Spill:
    def __init__(self, parent: str, max_bytes: int = VERIFY_SPILL_BYTES) -> None:
        self.parent, self.max_bytes = parent, max_bytes
        self.dir: str | None = None
        self.unusable = False  # the folder could not be made: nothing is spilled
        self.sizes: dict[int, int] = {}  # row -> bytes of its file
        self.keypoints: dict[int, int] = {}  # row -> keypoint sets its file holds
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
        try:
            with open(path, "wb") as f:
                f.write(data)
        except OSError:  # the disk filled since: this one is described again when needed
            with contextlib.suppress(OSError):
                os.unlink(path)
            return
        self.sizes[k] = len(data)
        self.keypoints[k] = len(features.sift_cache)
        self.used += len(data)
        self.written += 1

    def take(self, k: int) -> Any | None:
        """Row k's description, or None: not spilled, or its file unreadable (then it is
        described again)."""
        if k not in self.sizes:
            return None
        try:
            with open(self._path(k), "rb") as f:
                got = pickle.load(f)  # noqa: S301 - our own file, in a folder only we can write
        except Exception:  # noqa: BLE001 - gone or damaged: described from its file instead
            self.drop(k)
            return None
        self.read += 1
        return got

    def drop(self, k: int) -> None:
        """No pair needs row k any more: its file goes."""
        size = self.sizes.pop(k, None)
        self.keypoints.pop(k, None)
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
                _remove_stale(self.parent)
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
        pid = name[len(PREFIX):].split("-", 1)[0] if name.startswith(PREFIX) else ""
        if pid.isdigit() and int(pid) != os.getpid() and not _running(int(pid)):
            shutil.rmtree(os.path.join(parent, name), ignore_errors=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, another user's
        return True
    return True


__all__ = ["PREFIX", "SPILL_MIN_FREE_BYTES", "Spill"]
