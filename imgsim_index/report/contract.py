"""The report.json contract in types: what `build_report` writes and every reader reads.

`Report` and the row types are TypedDicts: a report is still the plain dict that json
writes and reads, so report.json's bytes do not depend on these types, while mypy checks
every key a writer sets and a reader looks up. The same contract as a JSON Schema (draft
2020-12) ships beside this module, `report.schema.json`, for scripts in other languages;
tests/test_report_contract.py keeps the two in step and validates a real report with it.

Keys a report always has are required; the rest are written only in some runs:
`pair_search` (a dedupe, not a bare build_report), `skipped` (a dedupe of folders),
`new_images` and `new_since` (a new-only dedupe), `reviewed_from` (a report narrowed to
the review page's choices), `hash_candidates` (verification ran), and a pair row's
`match`, `evidence` and `verification` (pairs with verdicts).
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any, TypedDict, cast

SCHEMA_FILE = "report.schema.json"  # in this package: imgsim_index/report/report.schema.json


class _PairRowRequired(TypedDict):
    index: int
    image1: str
    image2: str
    similarity_score: float


class PairRow(_PairRowRequired, total=False):
    """A row of similar_pairs or near_misses."""

    match: str  # exact | copy | other_shot | not_verified (read it with pair_match)
    evidence: str
    verification: dict[str, float]  # the numbers behind the verdict, rounded


class Member(TypedDict):
    path: str
    size: int | None
    mtime_ns: int | None
    width: int | None
    height: int | None
    score_to_keeper: float | None
    role: str  # keep | remove | unverified | protected | frame
    protected: bool


class NotRemovable(TypedDict):
    path: str
    reason: str


class Group(TypedDict):
    group: int
    size: int
    keeper: str
    keep_reason: str
    members: list[Member]
    removable: list[str]
    bytes_removable: int
    all_protected: bool
    not_removable: list[NotRemovable]
    verify_at_apply: list[str]


class _VerificationRequired(TypedDict):
    ran: bool
    compared: int
    skipped_as_grouped: int
    skipped_as_other_shot: int
    same_bytes: int
    not_verified: int
    seconds: float


class Verification(_VerificationRequired, total=False):
    hash_candidates: int  # pairs under the threshold only the perceptual hashes found
    skipped_per_image: int  # not_verified pairs left at the limit of other shots per image
    other_shots_per_image: int  # that limit (0: none)


class ErrorEntry(TypedDict):
    path: str
    error: str | None


class SkippedEntry(TypedDict):
    path: str
    reason: str
    folder: bool  # a whole folder left out, not walked


class Skipped(TypedDict):
    counts: dict[str, int]
    paths: list[SkippedEntry]


class _ReportRequired(TypedDict):
    # the seed's keys, first in the file
    timestamp: str
    folder_list: list[str]
    total_images_in_folders: int
    compare_mode: str  # full | sample | new_only
    threshold: float
    number_of_similar_pairs: int
    number_of_unique_groups: int
    photos_to_remove: int
    similar_pairs: list[PairRow]
    # extras
    report_schema_version: int
    threshold_source: str  # model default | given
    verification: Verification
    number_of_near_misses: int
    near_misses: list[PairRow]
    compare_scope: str  # all | inter_folder
    sample_ratio: float | None
    seed: int
    similarity: str
    model: dict[str, Any]  # defaults.IDENTITY_KEYS of the index's manifest
    index_path: str
    number_of_duplicate_groups: int
    groups: list[Group]
    keep_policy: str
    protected_folders: list[str]
    files_removable: int
    bytes_removable: int
    number_of_errors: int
    errors: list[ErrorEntry]
    timings_seconds: dict[str, float]


class Report(_ReportRequired, total=False):
    """report.json (see the module docstring for when the optional keys appear)."""

    pair_search: dict[str, Any]  # method (exact | approx | ivf) and its parameters
    skipped: Skipped
    new_images: int
    new_since: str | None
    reviewed_from: str


def as_report(data: dict[str, Any]) -> Report:
    """A dict read from a report.json file, typed; the caller has checked what it uses
    (actions.safety.load_report checks what apply relies on)."""
    return cast(Report, data)


# Reports of schema 3 wrote a pair that could not be verified as match other_shot with
# evidence starting so; pair_match reads them as not_verified
OLD_NOT_VERIFIED_EVIDENCE = "not verified"


def pair_match(row: PairRow) -> str:
    """A pair row's match ("" when it has none), reading a schema 3 report's not-verified
    pair (other_shot, evidence "not verified: ...") as not_verified."""
    from imgsim_index.verify.verdict import NOT_VERIFIED

    match = str(row.get("match", ""))
    if match == "other_shot" and str(row.get("evidence", "")).startswith(
            OLD_NOT_VERIFIED_EVIDENCE):
        return NOT_VERIFIED
    return match


def report_schema() -> dict[str, Any]:
    """The JSON Schema of report.json, as shipped with the package."""
    text = resources.files("imgsim_index.report").joinpath(SCHEMA_FILE).read_text("utf-8")
    return cast(dict[str, Any], json.loads(text))


__all__ = ["OLD_NOT_VERIFIED_EVIDENCE", "SCHEMA_FILE", "ErrorEntry", "Group", "Member",
           "NotRemovable", "PairRow", "Report", "Skipped", "SkippedEntry", "Verification",
           "as_report", "pair_match", "report_schema"]
