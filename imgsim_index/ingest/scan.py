"""scan: folders and files -> ImageRef(path, root, size, mtime_ns, kind), without hanging.

Images and videos are matched by extension (any case). Symlinked folders are followed once
(a loop is cut by remembering each folder's device and inode). Anything that
cannot be a readable image file -- a FIFO or device named x.jpg, a broken
symlink, a symlink loop, a name that is not UTF-8 -- comes out as an ImageRef
with `error` set, so the catalog records it with its reason instead of the run
crashing or blocking.

One identity per file: each file's (device, inode) is recorded, and a file
reached under several names (a symlinked folder inside another input,
overlapping inputs such as `photos photos/2024`, hard links) is listed once,
under the first name found; `scan` notes the other names as `Alias`es.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from imgsim_index.errors import InputError
from imgsim_index.ingest.identity import FileKey, normal_path
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
    dev: int | None = None  # st_dev and st_ino: the file's identity, whatever its name
    ino: int | None = None

    @property
    def key(self) -> FileKey | None:
        return None if self.dev is None or self.ino is None else (self.dev, self.ino)


@dataclass(frozen=True)
class Alias:
    """A second name of a file that is indexed under its first name."""

    path: str  # the name not indexed
    indexed_as: str


@dataclass
class Scan:
    refs: list[ImageRef]
    aliases: list[Alias]


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
    return ImageRef(path, root, st.st_size, st.st_mtime_ns, None, kind, st.st_dev, st.st_ino)


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
    root = normal_path(root)
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
    """Scan every root (a folder, or a single image or video file); a file reachable
    under several names is listed once, under the first."""
    return scan(roots).refs


def scan(roots: Sequence[str]) -> Scan:
    """As `scan_folders`, also naming each file's other names (`Alias`)."""
    out = Scan([], [])
    by_path: set[str] = set()
    by_key: dict[FileKey, str] = {}

    def take(ref: ImageRef) -> None:
        if ref.path in by_path:
            return  # the same name again (an input given twice, or inside another)
        key = ref.key
        if key is not None and key in by_key:
            out.aliases.append(Alias(ref.path, by_key[key]))
            return
        by_path.add(ref.path)
        if key is not None:
            by_key[key] = ref.path
        out.refs.append(ref)

    for root in roots:
        if os.path.isfile(root):
            path = normal_path(root)
            take(_ref_for(path, os.path.dirname(path)))
            continue
        if not os.path.isdir(root):
            raise InputError(f"not a folder: {root}")
        for ref in scan_folder(root):
            take(ref)
    return out
