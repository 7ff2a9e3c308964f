"""locks: the index writer lock (flock on `writer.lock`) and the registry of locks this
process holds, so that forked decoding workers can close their inherited copies."""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import time

from imgsim_index.errors import IndexLockedError

_HELD: set[int] = set()


def acquire_writer_lock(path: str, wait: bool) -> int:
    """flock `path` exclusively (blocking when `wait`), write who holds it, and return the
    descriptor. Another holder: IndexLockedError naming it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "another process"
        os.close(fd)
        raise IndexLockedError(
            f"the index is being written by {holder}; wait for it to finish"
        ) from None
    _HELD.add(fd)
    os.ftruncate(fd, 0)
    since = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    info = f"pid {os.getpid()} on {os.uname().nodename} ({' '.join(sys.argv[:3])}) since {since}"
    os.pwrite(fd, info.encode(), 0)
    return fd


def release_writer_lock(fd: int) -> None:
    _HELD.discard(fd)
    os.close(fd)


def release_inherited_locks() -> None:
    """In a forked child (a decoding worker): close our copies of the writer lock.

    flock locks belong to the open file, which a fork shares; a worker orphaned by a
    SIGKILLed parent would otherwise keep the index locked. Closing the child's copy
    leaves the parent's lock in place.
    """
    for fd in list(_HELD):
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD.clear()


__all__ = ["acquire_writer_lock", "release_inherited_locks", "release_writer_lock"]
