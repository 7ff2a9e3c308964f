"""fileops: the file operations of apply and undo, each leaving a state a crash can recover.

A move is a rename, or across filesystems a copy to a hidden part-file, fsync,
link into place, then unlink of the source: at every moment the source, the
destination or both are whole. A hard link is made under a temporary name and
renamed over the duplicate, so the duplicate's path never disappears.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat

from imgsim_index.atomic_files import fsync_dir

# errors that mean "a hard link is not possible here", not "something is wrong"
_NO_LINK = {errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK}


def parent(path: str) -> str:
    return os.path.dirname(os.path.abspath(path))


def part_name(dst: str) -> str:
    """The hidden name a copy to `dst` is written under until it is complete."""
    digest = hashlib.sha1(dst.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return os.path.join(parent(dst), f".imgsim-part-{digest}")


# errors that mean "there is no such file to remove" (a file where a folder should be,
# a name too long to exist): recovery must not fail on them
_ABSENT = {errno.ENOENT, errno.ENOTDIR, errno.ENAMETOOLONG}


def remove_if_exists(path: str) -> None:
    try:
        os.unlink(path)
    except OSError as exc:
        if exc.errno not in _ABSENT:
            raise


def matches(path: str, size: int, mtime_ns: int) -> bool:
    """Is `path` a regular file (not a symlink) of this size and modification time?"""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and (st.st_size, st.st_mtime_ns) == (size, mtime_ns)


def same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


class DestinationTaken(FileExistsError):
    """The destination exists, so nothing was done: it may be another process's file
    (recovery must not touch it)."""

    def __init__(self, dst: str):
        super().__init__(errno.EEXIST, "destination exists", dst)


def _place(src: str, dst: str) -> None:
    """Give `src` the name `dst` without ever overwriting an existing `dst`."""
    try:
        os.link(src, dst)  # fails with EEXIST instead of clobbering
    except FileExistsError:
        raise DestinationTaken(dst) from None
    except OSError as exc:
        if exc.errno not in _NO_LINK:
            raise
        if os.path.lexists(dst):
            raise DestinationTaken(dst) from None
        os.rename(src, dst)
        return
    os.unlink(src)


def copy_durably(src: str, dst: str) -> None:
    """Copy `src` with its mode and times to a new `dst` that appears only when complete."""
    part = part_name(dst)
    remove_if_exists(part)
    shutil.copy2(src, part, follow_symlinks=False)
    with open(part, "rb") as fh:
        os.fsync(fh.fileno())
    try:
        _place(part, dst)
    except DestinationTaken:
        remove_if_exists(part)
        raise
    fsync_dir(parent(dst))


def move_file(src: str, dst: str) -> None:
    """Move `src` to `dst` (not overwriting), creating folders; works across filesystems."""
    os.makedirs(parent(dst), exist_ok=True)
    if os.path.lexists(dst):
        raise DestinationTaken(dst)
    try:
        _place(src, dst)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        copy_durably(src, dst)
        os.unlink(src)
    fsync_dir(parent(dst))
    fsync_dir(parent(src))


def keep_original(path: str, backup: str) -> None:
    """Preserve `path`'s current content at `backup`: a second hard link, else a copy."""
    os.makedirs(parent(backup), exist_ok=True)
    remove_if_exists(backup)
    try:
        os.link(path, backup)
        fsync_dir(parent(backup))
    except OSError as exc:
        if exc.errno not in _NO_LINK:
            raise
        copy_durably(path, backup)


def link_over(path: str, keeper: str, tmp: str) -> None:
    """Atomically replace `path` with a hard link to `keeper` (same filesystem only)."""
    remove_if_exists(tmp)
    os.link(keeper, tmp)
    os.replace(tmp, path)
    fsync_dir(parent(path))


def put_back(backup: str, path: str) -> None:
    """Replace `path` with the file at `backup` and remove `backup`."""
    try:
        os.replace(backup, path)  # same filesystem: atomic, keeps the original inode and times
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        part = part_name(path)
        remove_if_exists(part)
        shutil.copy2(backup, part, follow_symlinks=False)
        with open(part, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(part, path)
        os.unlink(backup)
        fsync_dir(parent(backup))
    fsync_dir(parent(path))


def copy_over(src: str, path: str, mtime_ns: int, mode: int) -> None:
    """Replace `path` with an independent copy of `src`, given `path`'s old mode and times."""
    part = part_name(path)
    remove_if_exists(part)
    shutil.copyfile(src, part, follow_symlinks=False)
    os.chmod(part, mode)
    os.utime(part, ns=(mtime_ns, mtime_ns))
    with open(part, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(part, path)
    fsync_dir(parent(path))
