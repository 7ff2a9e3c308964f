"""scan: folders and files -> ImageRef(path, root, size, mtime_ns, kind), without hanging.

Images and videos are matched by extension (any case). Symlinked folders are followed once
(a loop is cut by remembering each folder's device and inode). Anything that
cannot be a readable image file -- a FIFO or device named x.jpg, a broken
symlink, a symlink loop -- comes out as an ImageRef
with `error` set, so the catalog records it with its reason instead of the run
crashing or blocking.

A name that is not UTF-8 is listed like any other, as the str os.fsdecode gives (each
byte that is not UTF-8 a lone surrogate U+DC80-U+DCFF), which every os call maps back
to the exact bytes; the catalog and the JSON files keep it losslessly (see
index/catalog.py and atomic_files.json_text), and what is shown escapes it.

One identity per file: each file's (device, inode) is recorded, and a file
reached under several names (a symlinked folder inside another input,
overlapping inputs such as `photos photos/2024`, hard links) is listed once,
under the first name found; `scan` notes the other names as `Alias`es.

Nothing is left out silently: a file under an input folder that is not listed
is a `Skipped` entry with its reason -- hidden (a name starting with "." and the
system clutter in HIDDEN_NAMES), excluded (a gitignore-style pattern of
ScanSettings.exclude, relative to the input folder), unsupported extension, or
too small (ScanSettings.min_size bytes, min_pixels read from the file's header).
A hidden or excluded folder is one entry: it is not walked. A file named as an
input is always listed.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from imgsim_index.errors import InputError
from imgsim_index.ingest.formats import IMAGE_EXTENSIONS, format_of
from imgsim_index.ingest.identity import FileKey, normal_path
from imgsim_index.ingest.video import is_video_name

# skipped unless ScanSettings.include_hidden, besides every name that starts with "."
# (.DS_Store, .thumbnails, .git, ...): NAS thumbnail folders and Windows' clutter
HIDDEN_NAMES = frozenset({"@eadir", "thumbs.db", "desktop.ini", "$recycle.bin"})

HIDDEN, EXCLUDED, UNSUPPORTED, TOO_SMALL, UNREADABLE_FOLDER = (
    "hidden", "excluded", "unsupported extension", "too small", "unreadable folder")
SKIP_REASONS = (HIDDEN, EXCLUDED, UNSUPPORTED, TOO_SMALL, UNREADABLE_FOLDER)


@dataclass(frozen=True)
class ScanSettings:
    include_hidden: bool = False
    exclude: tuple[str, ...] = ()  # gitignore-style patterns, relative to each input folder
    min_size: int = 0  # bytes; smaller files are skipped
    min_pixels: int = 0  # width x height from the header; smaller images are skipped

    def validate(self) -> None:
        if self.min_size < 0:
            raise InputError(f"minimum size must be 0 or more bytes, got {self.min_size}")
        if self.min_pixels < 0:
            raise InputError(f"minimum pixels must be 0 or more, got {self.min_pixels}")
        _exclude_spec(self.exclude)


@dataclass(frozen=True)
class Skipped:
    path: str  # as ImageRef.path
    reason: str  # one of SKIP_REASONS
    folder: bool = False  # a whole folder, not walked


@dataclass
class Scan:
    refs: list[ImageRef] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    aliases: list[Alias] = field(default_factory=list)


def skipped_counts(skipped: Sequence[Skipped]) -> dict[str, int]:
    """{reason: count}, reasons in SKIP_REASONS order, only those that occur."""
    counts = {r: 0 for r in SKIP_REASONS}
    for s in skipped:
        counts[s.reason] = counts.get(s.reason, 0) + 1
    return {r: n for r, n in counts.items() if n}


def skipped_report(skipped: Sequence[Skipped]) -> dict[str, Any]:
    """What report.json holds under "skipped": counts per reason and every entry."""
    return {"counts": skipped_counts(skipped),
            "paths": [{"path": s.path, "reason": s.reason, "folder": s.folder}
                      for s in skipped]}


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


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def is_hidden_name(name: str) -> bool:
    return name.startswith(".") or name.lower() in HIDDEN_NAMES


def _exclude_spec(patterns: Sequence[str]) -> Any:
    if not patterns:
        return None
    import pathspec

    try:
        return pathspec.GitIgnoreSpec.from_lines(patterns)
    except (ValueError, TypeError) as exc:
        raise InputError(f"bad exclude pattern: {exc}") from None


def header_pixels(path: str) -> int | None:
    """width x height read from the file's header without decoding; None if unreadable."""
    fmt = format_of(path)
    try:
        if fmt is not None and fmt.raw:
            import rawpy

            with rawpy.imread(path) as raw:
                return int(raw.sizes.width) * int(raw.sizes.height)
        from imgsim_index.ingest.decode import open_image

        with open_image(path) as im:
            return int(im.size[0]) * int(im.size[1])
    except Exception:  # noqa: BLE001 - any unreadable header: the decoder reports it
        return None


def _ref_for(path: str, root: str) -> ImageRef:
    kind = "video" if is_video_name(path) else "image"
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


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "named pipe"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "special file"


class _Filter:
    """Decides, entry by entry, what a scan lists and what it skips (and why)."""

    def __init__(self, settings: ScanSettings, skipped: list[Skipped]):
        self.settings, self.skipped = settings, skipped
        self.spec = _exclude_spec(settings.exclude)

    def skip_name(self, path: str, root: str, name: str, folder: bool) -> bool:
        reason = None
        if not self.settings.include_hidden and is_hidden_name(name):
            reason = HIDDEN
        elif self.spec is not None:
            rel = os.path.relpath(path, root).replace(os.sep, "/")
            if self.spec.match_file(rel + "/" if folder else rel):
                reason = EXCLUDED
        if reason is None and not folder and not (is_image_name(name) or is_video_name(name)):
            reason = UNSUPPORTED
        if reason is not None:
            self.skipped.append(Skipped(path, reason, folder))
        return reason is not None

    def too_small(self, ref: ImageRef) -> bool:
        if ref.error is not None:
            return False  # the error says more
        s = self.settings
        small = (ref.size or 0) < s.min_size or (
            s.min_pixels > 0 and ref.kind == "image"
            and (header_pixels(ref.path) or s.min_pixels) < s.min_pixels)
        if small:
            self.skipped.append(Skipped(ref.path, TOO_SMALL))
        return small


def scan_folder(root: str, settings: ScanSettings | None = None,
                skipped: list[Skipped] | None = None) -> Iterator[ImageRef]:
    """Yield image files under `root` in a stable (sorted) order; what `settings` leaves
    out is appended to `skipped` with its reason."""
    root = normal_path(root)
    keep = _Filter(settings or ScanSettings(), skipped if skipped is not None else [])
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
        except OSError:  # no permission to list it, or gone: counted, never silent
            keep.skipped.append(Skipped(folder, UNREADABLE_FOLDER, folder=True))
            continue
        subfolders = []
        for entry in entries:
            try:
                is_dir = entry.is_dir(follow_symlinks=True)
            except OSError:
                is_dir = False
            if keep.skip_name(entry.path, root, entry.name, is_dir):
                continue
            if is_dir:
                subfolders.append(entry.path)
            else:
                ref = _ref_for(entry.path, root)
                if not keep.too_small(ref):
                    yield ref
        stack.extend(reversed(subfolders))


def scan_inputs(roots: Sequence[str], settings: ScanSettings | None = None) -> Scan:
    """Scan every root (a folder, or a single image or video file). A file reachable under
    several names is listed once, under the first (the others become `Alias`es); a file
    given as a root is always listed; what `settings` leaves out is `skipped`."""
    settings = settings or ScanSettings()
    settings.validate()
    out = Scan()
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
        for ref in scan_folder(root, settings, out.skipped):
            take(ref)
    unique = {(s.path, s.reason): s for s in out.skipped}  # overlapping roots: once
    out.skipped = list(unique.values())
    return out


def scan_folders(roots: Sequence[str], settings: ScanSettings | None = None) -> list[ImageRef]:
    """The files `scan_inputs` lists, without what it skipped or the second names."""
    return scan_inputs(roots, settings).refs
