"""locks: the index writer lock (on `writer.lock`), the file lock it and the apply journal
share, and the registry of locks this process holds, so that forked workers (decoding,
verification) can close their inherited copies.

The lock is flock where there is fcntl (Linux, macOS): held by the open file, released by
the kernel when its holder dies. On Windows (no fcntl) it is msvcrt's lock of one byte far
past the file's contents, so the holder's note at the start stays readable; it too is
released when the process ends.
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys
import time

from imgsim_index.errors import IndexLockedError

_HELD: set[int] = set()
# where the Windows lock sits: past any holder note, so reading that note is never refused
_LOCK_OFFSET = 1 << 30
_RETRY_S = 0.1  # a waiting Windows lock tries again this often (msvcrt has no blocking lock)


def lock_file(fd: int, wait: bool) -> None:
    """Lock the open file `fd` exclusively for this process; BlockingIOError when another
    holds it and not `wait`."""
    try:
        import fcntl
    except ImportError:
        _lock_msvcrt(fd, wait)
        return
    fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))


def _lock_msvcrt(fd: int, wait: bool) -> None:
    import msvcrt

    here = os.lseek(fd, 0, os.SEEK_CUR)  # msvcrt locks from the position: put it back after
    try:
        while True:
            os.lseek(fd, _LOCK_OFFSET, os.SEEK_SET)
            try:
                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
                return
            except OSError:  # held by another (EACCES / EDEADLOCK)
                if not wait:
                    raise BlockingIOError("the file is locked by another process") from None
            time.sleep(_RETRY_S)
    finally:
        os.lseek(fd, here, os.SEEK_SET)


def _read_at_start(fd: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    return os.read(fd, 4096)


def _write_at_start(fd: int, data: bytes) -> None:
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, data)


def host_name() -> str:
    """This machine's name, on any OS (os.uname is POSIX only)."""
    return platform.node() or "this machine"


def acquire_writer_lock(path: str, wait: bool) -> int:
    """Lock `path` exclusively (blocking when `wait`), write who holds it, and return the
    descriptor. Another holder: IndexLockedError naming it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        lock_file(fd, wait)
    except BlockingIOError:
        holder = _read_at_start(fd).decode("utf-8", "replace").strip() or "another process"
        os.close(fd)
        raise IndexLockedError(
            f"the index is being written by {holder}; wait for it to finish"
        ) from None
    _HELD.add(fd)
    os.ftruncate(fd, 0)
    since = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    info = f"pid {os.getpid()} on {host_name()} ({' '.join(sys.argv[:3])}) since {since}"
    _write_at_start(fd, info.encode())
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


def forked_worker_start(parent: int) -> None:
    """In a worker forked from process `parent` (decoding, verification): it dies with
    its parent, and closes its copies of the parent's locks (release_inherited_locks).

    If the parent is SIGKILLed (or OOM-killed), a worker blocked on its full result queue
    would otherwise hang forever, holding memory (seen in the crash tests).
    """
    release_inherited_locks()
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


__all__ = ["acquire_writer_lock", "forked_worker_start", "host_name", "lock_file",
           "release_inherited_locks", "release_writer_lock"]
