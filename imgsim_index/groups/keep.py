"""keep: groups -> one keeper per group, the removable files, and each member's score to it.

Policies (the first key decides, the rest break ties so the choice never
depends on catalog order):

  highest-resolution  most pixels (width x height), then largest file, then shortest path
  largest             largest file, then most pixels, then shortest path
  oldest / newest     earliest / latest modification time, then most pixels, ...
  shortest-path       shortest path (e.g. "IMG_1.jpg" over "Copy of IMG_1 (2).jpg")
  first               the earliest input folder as given on the command line, then path order
                      (a run on the index alone orders its scan roots alphabetically)

highest-resolution is the default: a near-duplicate group is mostly one picture
at several sizes and qualities (an original, a thumbnail, a re-saved export),
and pixel count is the best cheap signal of the most complete copy. File size
alone rewards re-encodes at a higher quality setting and PNG conversions of a
JPEG; dates are rewritten by copies and downloads.

Protected files (under a --protect folder) are a reference set: they are never
removable, the keeper is picked among them when a group has any, and a group
made only of protected files removes nothing. Video frames (`clip.mp4#t=...`)
are not files: they are never removable, and the keeper is a still image when
the group has one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from imgsim_index.errors import InputError
from imgsim_index.groups.components import Groups
from imgsim_index.index.catalog import Row
from imgsim_index.ingest.video import split_frame_path
from imgsim_index.paths import under_any
from imgsim_index.search.threshold import exact_scores

KEEP_POLICIES = ("highest-resolution", "largest", "oldest", "newest", "shortest-path", "first")
DEFAULT_KEEP = "highest-resolution"


@dataclass(frozen=True)
class KeepSettings:
    policy: str = DEFAULT_KEEP
    protect: tuple[str, ...] = ()  # folders whose files are always kept

    def validate(self) -> None:
        if self.policy not in KEEP_POLICIES:
            raise InputError(
                f"unknown keep policy {self.policy!r}; choose one of {', '.join(KEEP_POLICIES)}"
            )


@dataclass(frozen=True)
class GroupDecision:
    members: np.ndarray  # row positions, ascending
    keeper: int  # row position of the keeper
    protected: np.ndarray  # bool per member
    frames: np.ndarray  # bool per member: a video frame entry, not a file
    removable: list[int]  # row positions, ascending
    scores: np.ndarray | None  # float64 per member: score to the keeper (None: no vectors)


def _pixels(r: Row) -> int:
    return (r.width or 0) * (r.height or 0)


def _tiebreak(r: Row) -> tuple[int, int, int, str]:
    return (-_pixels(r), -(r.size or 0), len(r.path), r.path)


SortKey = Callable[[Row, int], tuple[object, ...]]

_POLICY_KEYS: dict[str, SortKey] = {
    "highest-resolution": lambda r, _: _tiebreak(r),
    "largest": lambda r, _: (-(r.size or 0), *_tiebreak(r)),
    "oldest": lambda r, _: (r.mtime_ns if r.mtime_ns is not None else 2**63, *_tiebreak(r)),
    "newest": lambda r, _: (-(r.mtime_ns or 0), *_tiebreak(r)),
    "shortest-path": lambda r, _: (len(r.path), r.path),
    "first": lambda r, folder: (folder if folder >= 0 else 2**31, r.path),
}


def is_frame(path: str) -> bool:
    return split_frame_path(path)[1] is not None


def choose_keepers(
    rows: Sequence[Row],
    groups: Groups,
    settings: KeepSettings,
    folder_codes: np.ndarray | None = None,
    vectors: np.ndarray | None = None,
) -> list[GroupDecision]:
    """One decision per group of `groups.members`, in the same order.

    `folder_codes`: each row's input folder in command-line order (for "first");
    `vectors`: the rows' vectors, to score every member against its keeper.
    """
    settings.validate()
    key = _POLICY_KEYS[settings.policy]
    codes = folder_codes if folder_codes is not None else np.zeros(len(rows), np.int64)
    out = []
    for members in groups.members:
        paths = [rows[m].path for m in members.tolist()]
        protected = np.asarray([under_any(p, settings.protect) for p in paths], dtype=bool)
        frames = np.asarray([is_frame(p) for p in paths], dtype=bool)
        candidates = (members[protected] if protected.any() else
                      members[~frames] if not frames.all() else members)
        keeper = min(candidates.tolist(), key=lambda m: key(rows[m], int(codes[m])))
        fixed = (protected | frames).tolist()
        removable = [m for m, f in zip(members.tolist(), fixed, strict=True)
                     if m != keeper and not f]
        scores = None
        if vectors is not None:
            scores = exact_scores(vectors, members, np.full(len(members), keeper, np.int64))
        out.append(GroupDecision(members, keeper, protected, frames, removable, scores))
    return out
