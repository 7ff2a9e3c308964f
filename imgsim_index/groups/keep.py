"""keep: groups -> one keeper per group (with the reason), the removable files, and each
member's score to it.

Policies (the first key decides, the rest break ties so the choice never
depends on catalog order):

  original            the file a camera or phone wrote, in this order:
                        1. camera EXIF (Make/Model) over a file without it
                        2. the original format over a conversion: JPEG, HEIC/HEIF or
                           camera RAW over PNG, BMP, TIFF, GIF or WebP
                        3. the earliest capture time (EXIF DateTimeOriginal; a file
                           without it comes after those with it)
                        4. most pixels, then the earliest modification time, then the
                           shorter path
  highest-resolution  most pixels, then 1-3 above, then largest file, earliest
                      modification time, shorter path
  largest             largest file, then as highest-resolution
  oldest / newest     earliest / latest modification time, then as highest-resolution
  shortest-path       shortest path (e.g. "IMG_1.jpg" over "Copy of IMG_1 (2).jpg")
  first               the earliest input folder as given on the command line, then path order
                      (a run on the index alone orders its scan roots alphabetically)

original is the default: the copy worth keeping is the one the camera wrote --
it carries the capture metadata, and a PNG or TIFF of the same pixels is a
conversion even when it is bigger (file size rewards conversions and re-encodes
at a higher quality). Pixel count comes after capture time, so a downscaled
export that kept the EXIF loses to the full-size original of the same capture;
a file without a capture date (EXIF stripped) is ranked by pixels. Camera EXIF
and capture time are read from each group member's header only (Pillow, no
pixels decoded); camera RAW files count as camera originals.

Each decision carries `keep_reason`: the first rule in the policy's order on
which the keeper beat the runner-up ("camera EXIF (Canon EOS R5)", "original
format (.jpg over .png)", "most pixels", ...), prefixed by "protected: " when
the keeper was picked among protected files.

Protected files (under a --protect folder) are a reference set: they are never
removable, the keeper is picked among them when a group has any, and a group
made only of protected files removes nothing. Video frames (`clip.mp4#t=...`)
are not files: they are never removable, and the keeper is a still image when
the group has one.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from imgsim_index.defaults import DEFAULT_KEEP
from imgsim_index.errors import InputError
from imgsim_index.ingest.formats import RAW_EXTENSIONS
from imgsim_index.paths import under_any

if TYPE_CHECKING:  # numpy and the rest load with choose_keepers: the CLI imports this module
    import numpy as np

    from imgsim_index.groups.components import Groups
    from imgsim_index.index.catalog import Row

KEEP_POLICIES = ("original", "highest-resolution", "largest", "oldest", "newest",
                 "shortest-path", "first")

# the formats cameras and phones write, and those a copy is usually converted to
ORIGINAL_EXTENSIONS = frozenset({".jpg", ".jpeg", ".heic", ".heif", ".hif"}) | RAW_EXTENSIONS
CONVERSION_EXTENSIONS = frozenset({
    ".png", ".apng", ".bmp", ".dib", ".tif", ".tiff", ".gif", ".webp", ".ppm", ".pgm", ".pbm",
    ".pnm", ".pfm", ".pcx", ".tga", ".dds", ".icns", ".ico", ".sgi", ".xbm", ".xpm", ".qoi",
    ".msp", ".blp"})


@dataclass(frozen=True)
class KeepSettings:
    policy: str = DEFAULT_KEEP
    protect: tuple[str, ...] = ()  # folders whose files are always kept

    def validate(self) -> None:
        if self.policy not in KEEP_POLICIES:
            raise InputError(
                f"unknown keep policy {self.policy!r}; choose one of {', '.join(KEEP_POLICIES)}"
            )
        # a file given as a folder would protect nothing (no path lies under it): refused
        files = [p for p in self.protect if os.path.isfile(p)]
        if files:
            raise InputError(f"protect takes folders: {files[0]!r} is a file (protect the "
                             f"folder that holds it)")


@dataclass(frozen=True)
class GroupDecision:
    members: np.ndarray  # row positions, ascending
    keeper: int  # row position of the keeper
    protected: np.ndarray  # bool per member
    frames: np.ndarray  # bool per member: a video frame entry, not a file
    removable: list[int]  # row positions, ascending
    scores: np.ndarray | None  # float64 per member: score to the keeper (None: no vectors)
    keep_reason: str = ""  # why the keeper won, e.g. "camera EXIF (Canon EOS R5)"
    # members the keep policy would remove but the index does not show to be verified
    # copies of the keeper (groups/verified.py): row position -> why; not in `removable`
    not_removable: dict[int, str] = field(default_factory=dict)
    # removable members apply verifies from the files (no verification ran in the dedupe)
    verify_at_apply: tuple[int, ...] = ()


@dataclass(frozen=True)
class FileFacts:
    """What a file's header says about where it came from."""

    camera: str | None = None  # "Make Model" from EXIF
    captured: float | None = None  # EXIF DateTimeOriginal, seconds (local time, naive)


def _exif_time(text: object) -> float | None:
    try:
        t = datetime.strptime(str(text).strip().rstrip("\x00"), "%Y:%m:%d %H:%M:%S")
        return (t - datetime(1970, 1, 1)).total_seconds()
    except ValueError:
        return None


def file_facts(path: str) -> FileFacts:
    """Camera and capture time from the file's EXIF, read without decoding pixels."""
    if is_frame(path):
        return FileFacts()
    try:
        from imgsim_index.ingest.decode import header_exif, open_image

        with open_image(path) as im:
            exif = header_exif(im)
            make, model = (str(exif.get(t) or "").strip().rstrip("\x00") for t in (271, 272))
            captured = _exif_time(exif.get_ifd(0x8769).get(0x9003) or exif.get(306) or "")
    except Exception:  # noqa: BLE001 - an unreadable header tells nothing
        make, model, captured = "", "", None
    camera = camera_name(make, model)
    if camera is None and _ext(path) in RAW_EXTENSIONS:
        camera = "camera RAW"
    return FileFacts(camera, captured)


def camera_name(make: str, model: str) -> str | None:
    """"Canon EOS R5" from make "Canon" and model "Canon EOS R5" (most makers repeat their
    name in the model; "NIKON CORPORATION" and "NIKON D850" share a first word), else
    "make model"; None without either."""
    make, model = make.strip(), model.strip()
    if make and model and model.split()[0].lower() == make.split()[0].lower():
        return model
    return " ".join(x for x in (make, model) if x) or None


def split_frame_path(path: str) -> tuple[str, int | None]:
    from imgsim_index.ingest.video import split_frame_path as split

    return split(path)


def _ext(path: str) -> str:
    return os.path.splitext(split_frame_path(path)[0])[1].lower()


def _pixels(r: Row) -> int:
    return (r.width or 0) * (r.height or 0)


@dataclass
class _Member:
    row: Row
    folder: int
    _facts: FileFacts | None = field(default=None, repr=False)

    @property
    def facts(self) -> FileFacts:
        if self._facts is None:
            self._facts = file_facts(self.row.path)
        return self._facts


# a rule: its name (for keep_reason) and a key, smaller is better
Rule = tuple[str, Callable[[_Member], object]]

_PIXELS: Rule = ("most pixels", lambda m: -_pixels(m.row))
_CAMERA: Rule = ("camera EXIF", lambda m: m.facts.camera is None)
_FORMAT: Rule = ("original format", lambda m: _ext(m.row.path) in CONVERSION_EXTENSIONS)
_CAPTURE: Rule = ("earliest capture time",
                  lambda m: math.inf if m.facts.captured is None else m.facts.captured)
_SIZE: Rule = ("largest file", lambda m: -(m.row.size or 0))
_OLDEST: Rule = ("earliest modification time",
                 lambda m: m.row.mtime_ns if m.row.mtime_ns is not None else 2**63)
_NEWEST: Rule = ("latest modification time", lambda m: -(m.row.mtime_ns or 0))
_SHORTEST: Rule = ("shortest path", lambda m: len(m.row.path))
_PATH: Rule = ("path order", lambda m: m.row.path)
_FOLDER: Rule = ("first input folder", lambda m: m.folder if m.folder >= 0 else 2**31)

_TIES = [_PIXELS, _CAMERA, _FORMAT, _CAPTURE, _SIZE, _OLDEST, _SHORTEST, _PATH]

_POLICY_RULES: dict[str, list[Rule]] = {
    "original": [_CAMERA, _FORMAT, _CAPTURE, _PIXELS, _OLDEST, _SHORTEST, _PATH],
    "highest-resolution": _TIES,
    "largest": [_SIZE, *_TIES],
    "oldest": [_OLDEST, *_TIES],
    "newest": [_NEWEST, *_TIES],
    "shortest-path": [_SHORTEST, _PATH],
    "first": [_FOLDER, _PATH],
}


def _pick(members: list[_Member], rules: list[Rule]) -> tuple[int, str]:
    """Index of the best of `members` under `rules`, and the rule that decided it."""
    keys = [tuple(key(m) for _, key in rules) for m in members]
    order = sorted(range(len(members)), key=lambda k: keys[k])  # type: ignore[arg-type,return-value]
    best = order[0]
    if len(order) == 1:
        return best, "the only candidate"
    runner = order[1]
    at = next(i for i, (a, b) in enumerate(zip(keys[best], keys[runner], strict=True)) if a != b)
    name = rules[at][0]
    if rules[at] is _CAMERA:
        name = f"camera EXIF ({members[best].facts.camera})"
    elif rules[at] is _FORMAT:
        name = (f"original format ({_ext(members[best].row.path)} over "
                f"{_ext(members[runner].row.path)})")
    return best, name


def is_frame(path: str) -> bool:
    return split_frame_path(path)[1] is not None


def choose_keepers(
    rows: Sequence[Row],
    groups: Groups,
    settings: KeepSettings,
    folder_codes: np.ndarray | None = None,
    vectors: np.ndarray | None = None,
    rank: Mapping[int, int] | None = None,
) -> list[GroupDecision]:
    """One decision per group of `groups.members`, in the same order.

    `folder_codes`: each row's input folder in command-line order (for "first");
    `vectors`: the rows' vectors, to score every member against its keeper; `rank`: how
    many rows may go for each (verified.whole_rank: 0 for a crop of another member's
    picture, or one with text over it): the keeper is of the highest, then the policy's
    (a crop stands for no picture it was cut from: groups/verified.py).
    """
    import numpy as np

    from imgsim_index.search.threshold import exact_scores

    settings.validate()
    rules = _POLICY_RULES[settings.policy]
    ranks = rank or {}
    codes = folder_codes if folder_codes is not None else np.zeros(len(rows), np.int64)
    out = []
    for members in groups.members:
        paths = [rows[m].path for m in members.tolist()]
        protected = np.asarray([under_any(p, settings.protect) for p in paths], dtype=bool)
        frames = np.asarray([is_frame(p) for p in paths], dtype=bool)
        candidates = (members[protected] if protected.any() else
                      members[~frames] if not frames.all() else members)
        cands = candidates.tolist()
        best, reason = _pick([_Member(rows[m], int(codes[m])) for m in cands], rules)
        top = max(ranks.get(m, 0) for m in cands)
        whole = [m for m in cands if ranks.get(m, 0) == top]
        # the policy's pick shows less than another member's picture: the whole ones decide
        cropped = cands[best] not in whole
        if cropped:
            cands = whole
            best, reason = _pick([_Member(rows[m], int(codes[m])) for m in cands], rules)
        keeper = cands[best]
        if len(cands) == 1 and cropped:
            reason = ("the only protected file showing the whole picture" if protected.any()
                      else "the only file showing the whole picture")
        elif len(cands) == 1:
            reason = ("the only protected file" if protected.any() else "the only still image")
        else:
            if cropped:
                reason = f"showing the whole picture: {reason}"
            if protected.any() and not protected.all():
                reason = f"protected: {reason}"
        fixed = (protected | frames).tolist()
        removable = [m for m, f in zip(members.tolist(), fixed, strict=True)
                     if m != keeper and not f]
        scores = None
        if vectors is not None:
            scores = exact_scores(vectors, members, np.full(len(members), keeper, np.int64))
        out.append(GroupDecision(members, keeper, protected, frames, removable, scores, reason))
    return out
