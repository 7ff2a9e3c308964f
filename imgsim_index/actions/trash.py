"""trash: a file -> the system trash (send2trash), and where it went, so undo can put it back.

send2trash does not say where it put a file. On the freedesktop trash (Linux) it
moves the file into `TRASH/files/NAME` (NAME, or `BASE N.EXT` when taken) and
writes `TRASH/info/NAME.trashinfo` holding the original path, where TRASH is
$XDG_DATA_HOME/Trash for files on the home's filesystem, else the volume's
`.Trash/UID` or `.Trash-UID`. `find_trashed` looks in those places for an info
file naming the original path and takes the entry with the file's identity
(device, inode; a rename keeps it), else the newest one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import unquote

from imgsim_index.errors import ActionError
from imgsim_index.ingest.identity import FileKey

INFO_SUFFIX = ".trashinfo"


@dataclass(frozen=True)
class Trashed:
    path: str  # TRASH/files/NAME
    info: str  # TRASH/info/NAME.trashinfo


def _mount_point(path: str) -> str:
    path = os.path.realpath(path)
    while not os.path.ismount(path):
        path = os.path.dirname(path)
    return path


def trash_dirs(path: str) -> list[tuple[str, str]]:
    """(trash folder, the folder its info Paths are relative to) where the freedesktop
    trash may have put `path`: the home trash first, then the volume's."""
    data_home = os.path.expanduser(os.environ.get("XDG_DATA_HOME") or "~/.local/share")
    dirs = [(os.path.join(data_home, "Trash"), data_home)]
    top = _mount_point(os.path.dirname(os.path.abspath(path)))
    if hasattr(os, "getuid"):  # the volumes' trash folders are per user id (POSIX)
        uid = str(os.getuid())
        dirs += [(os.path.join(top, ".Trash", uid), top),
                 (os.path.join(top, f".Trash-{uid}"), top)]
    return dirs


def _info_path(info: str, topdir: str) -> str | None:
    try:
        with open(info, encoding="utf-8", errors="surrogateescape") as fh:
            for line in fh:
                if line.startswith("Path="):
                    named = unquote(line[5:].rstrip("\n"), errors="surrogateescape")
                    return os.path.normpath(os.path.join(topdir, named))
    except OSError:
        return None
    return None


def find_trashed(path: str, key: FileKey | None) -> Trashed | None:
    """Where the trash holds the file that was at `path` (see the module's docstring)."""
    path = os.path.abspath(path)
    found: list[tuple[bool, float, Trashed]] = []
    for trash, topdir in trash_dirs(path):
        info_dir, files_dir = os.path.join(trash, "info"), os.path.join(trash, "files")
        try:
            names = os.listdir(info_dir)
        except OSError:
            continue
        for name in names:
            if not name.endswith(INFO_SUFFIX):
                continue
            info = os.path.join(info_dir, name)
            if _info_path(info, topdir) != path:
                continue
            entry = os.path.join(files_dir, name[: -len(INFO_SUFFIX)])
            try:
                st = os.lstat(entry)
            except OSError:
                continue
            same = key is not None and (st.st_dev, st.st_ino) == key
            found.append((same, os.path.getmtime(info), Trashed(entry, info)))
    if not found:
        return None
    return max(found, key=lambda f: (f[0], f[1]))[2]


def send_to_trash(path: str, key: FileKey | None) -> Trashed:
    """Move `path` to the system trash and say where it went."""
    try:
        from send2trash import send2trash
    except ImportError:
        raise ActionError("--trash needs send2trash: pip install send2trash") from None
    send2trash(path)
    got = find_trashed(path, key)
    if got is None:
        raise ActionError(f"{path} was sent to the trash, but its place there was not found; "
                          "look for it in your desktop's trash")
    return got
