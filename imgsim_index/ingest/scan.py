"""scan: folders and files -> ImageRef(path, root, size, mtime_ns, kind), without hanging.

Images and videos are matched by extension (any case). Symlinked folders are followed once
(a loop is cut by remembering each folder's device and inode). Anything that
cannot be a readable image file -- a FIFO or device named x.jpg, a broken
symlink, a symlink loop, a name that is not UTF-8 -- comes out as an ImageRef
with `error` set, so the catalog records it with its reason instead of the run
crashing or blocking.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from imgsim_index.errors import InputError
from imgsim_index.ingest.video import is_video_name

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})


@dataclass(frozen=True)
class ImageRef:
    path: str  # absolute, symlinks not resolved: the name the user knows
    root: str  # the input folder it was found under (absolute)
    size: int | None
    mtime_ns: int | None
    error: str | None = None
    kind: str = "image"  # image | video (a video becomes one entry per sampled frame)


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _ref_for(path: str, root: str) -> ImageRef:
    kind = "video" if is_video_name(path) else "image"
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:  # bytes that are not UTF-8 (os.fsdecode's surrogates)
        # SQLite and report.json cannot hold such a name: record it, readably, as an error
        return ImageRef(_printable(path), _printable(root), None, None,
                        "file name is not valid UTF-8; rename it to index it")
    try:
        st = os.stat(path)  # follows symlinks
    except FileNotFoundError:
        why = "broken symlink" if os.path.islink(path) else "file vanished during scan"
        return ImageRef(path, root, None, None, why, kind)
    except OSError as exc:  # ELOOP, EACCES, ...
        return ImageRef(path, root, None, None, f"cannot stat: {exc.strerror or exc}", kind)
    if not stat.S_ISREG(st.st_mode):
        return ImageRef(path, root, None, None, f"not a regular file ({_kind(st.st_mode)})", kind)
    return ImageRef(path, root, st.st_size, st.st_mtime_ns, None, kind)


def _printable(path: str) -> str:
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "named pipe"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "special file"


def scan_folder(root: str) -> Iterator[ImageRef]:
    """Yield image files under `root` in a stable (sorted) order."""
    root = os.path.abspath(root)
    seen: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            st = os.stat(folder)
        except OSError:
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen:
            continue  # a symlink loop or a second link to a folder already scanned
        seen.add(key)
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            continue
        subfolders = []
        for entry in entries:
            try:
                is_dir = entry.is_dir(follow_symlinks=True)
            except OSError:
                is_dir = False
            if is_dir:
                subfolders.append(entry.path)
            elif is_image_name(entry.name) or is_video_name(entry.name):
                yield _ref_for(entry.path, root)
        stack.extend(reversed(subfolders))


def scan_folders(roots: Sequence[str]) -> list[ImageRef]:
    """Scan every root (a folder, or a single image or video file); a file reachable from
    two roots is listed once, under the first."""
    refs: list[ImageRef] = []
    seen_paths: set[str] = set()
    for root in roots:
        if os.path.isfile(root):
            path = os.path.abspath(root)
            if path not in seen_paths:
                seen_paths.add(path)
                refs.append(_ref_for(path, os.path.dirname(path)))
            continue
        if not os.path.isdir(root):
            raise InputError(f"not a folder: {root}")
        for ref in scan_folder(root):
            if ref.path not in seen_paths:
                seen_paths.add(ref.path)
                refs.append(ref)
    return refs
