"""choices: a report + the user's choices -> a reviewed report that apply acts on.

The choices come from the review page (keepers, unticked files and groups) or from
a choices file that the static report.html exports ("export my choices"):

    {"format": "imgsim-index-choices", "version": 1, "report_timestamp": "...",
     "groups": [{"group": 3, "keeper": "/p/a.jpg", "remove": ["/p/b.jpg"]}, ...]}

Choices only narrow what the report allows: a group the report does not have, a
keeper outside its group (or a protected file or video frame), or a file to remove
that is not a keep/remove member of its group is refused with the reason, and
nothing is written. A group the file leaves out is left alone. The one widening a
keeper change implies is allowed, as on the review page: the former keeper may be
removed in favour of the new one. The reviewed report is written beside the original
(report-reviewed-<time>.json) and goes through make_plan/apply_plan like any report,
so every file is still checked and journaled.
"""

from __future__ import annotations

import copy
import json
import os
import time
from collections.abc import Collection, Mapping

from imgsim_index.actions.safety import load_report
from imgsim_index.atomic_files import atomic_write_json
from imgsim_index.errors import InputError
from imgsim_index.ingest.identity import normal_path
from imgsim_index.report.contract import Group, Report

CHOICES_FORMAT = "imgsim-index-choices"
CHOICES_VERSION = 1
Choice = tuple[str, set[str]]  # (keeper, files to remove)


def _candidates(g: Group) -> set[str]:
    """The members the report lets apply choose between: its keep and remove entries."""
    return {m["path"] for m in g["members"] if m["role"] in ("keep", "remove")}


def _check_keeper(g: Group, keeper: str) -> None:
    roles = {m["path"]: m["role"] for m in g["members"]}
    if keeper not in roles:
        raise InputError(f"{keeper} is not a member of group {g['group']}; "
                         "a keeper must be one of its group's files")
    if roles[keeper] not in ("keep", "remove"):
        raise InputError(f"{keeper} is a {roles[keeper]} entry of group {g['group']} "
                         "and cannot be its keeper")


def reviewed_report(report: Report, choices: Mapping[int, Choice], source: str) -> Report:
    """The report narrowed to `choices` (group -> (keeper, files to remove)); groups not in
    `choices` are left out. Raises InputError on a choice the report does not allow."""
    by_group = {g["group"]: g for g in report["groups"]}
    for number in choices:
        if number not in by_group:
            raise InputError(f"the report has no group {number}")
    out = copy.deepcopy(report)
    groups = []
    for g in out["groups"]:
        if g["group"] not in choices:
            continue
        keeper, remove = choices[g["group"]]
        _check_keeper(g, keeper)
        allowed = _candidates(g) - {keeper}
        for path in sorted(remove - allowed):
            what = "its keeper" if path == keeper else "not removable there in the report"
            raise InputError(f"{path} cannot be removed from group {g['group']}: it is {what}; "
                             "choices may only narrow the report")
        for m in g["members"]:
            if m["role"] in ("keep", "remove"):
                m["role"] = "keep" if m["path"] == keeper else "remove"
        g["keeper"] = keeper
        g["removable"] = sorted(remove)
        sizes = {m["path"]: m["size"] or 0 for m in g["members"]}
        g["bytes_removable"] = sum(sizes[p] for p in g["removable"])
        groups.append(g)
    out["groups"] = groups
    out["files_removable"] = sum(len(g["removable"]) for g in groups)
    out["bytes_removable"] = sum(g["bytes_removable"] for g in groups)
    out["reviewed_from"] = source
    return out


def choices_from_review(report: Report, keepers: Mapping[str, str],
                        skip: Collection[str], skip_groups: Collection[int]) -> dict[int, Choice]:
    """The review page's form (keepers by group number, unticked files and groups) as
    choices. Every choice must name what the report has: a group number it does not
    have, or a file to leave alone that is none of its groups' keep or remove entries
    (written otherwise than the report writes it: relative, or a spelling that is not
    its absolute path), is refused with the reason, so a file the user meant to keep is
    never acted on because its name did not match."""
    numbers = {g["group"] for g in report["groups"]}
    for number in skip_groups:
        if number not in numbers:
            raise InputError(f"skip_groups: the report has no group {number}")
    # a key names a group exactly as its number is written ("0", not "00", "-0" or a
    # digit of another script): another spelling would pass a check and miss the lookup
    for key in keepers:
        if key not in {str(n) for n in numbers}:
            raise InputError(f"keepers: the report has no group {key!r}")
    members = {p for g in report["groups"] for p in _candidates(g)}
    leave = set()
    for path in skip:
        if path in members:
            leave.add(path)
        elif os.path.isabs(path) and normal_path(path) in members:
            leave.add(normal_path(path))
        else:
            raise InputError(f"skip: {path} is not a file of the report's groups (name "
                             "it by its absolute path, as the report does)")
    out: dict[int, Choice] = {}
    for g in report["groups"]:
        if g["group"] in skip_groups:
            continue
        keeper = keepers.get(str(g["group"]), g["keeper"])
        _check_keeper(g, keeper)
        out[g["group"]] = (keeper, _candidates(g) - {keeper} - leave)
    return out


def _bad(path: str, what: str) -> InputError:
    return InputError(f"{path} is not a choices file exported from report.html: {what}")


def load_choices(path: str, report: Report) -> dict[int, Choice]:
    """A choices file, checked against the report it was exported from."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except OSError as exc:
        raise InputError(f"cannot read choices file {path}: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _bad(path, f"not JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != CHOICES_FORMAT:
        raise _bad(path, f"no \"format\": \"{CHOICES_FORMAT}\"")
    if data.get("version") != CHOICES_VERSION:
        raise _bad(path, f"version {data.get('version')!r}, this imgsim-index reads "
                         f"{CHOICES_VERSION}")
    if data.get("report_timestamp") != report.get("timestamp"):
        raise InputError(f"{path} was exported from the report of "
                         f"{data.get('report_timestamp')}, not this one "
                         f"({report.get('timestamp')}); export it again from this report's page")
    groups = data.get("groups")
    if not isinstance(groups, list):
        raise _bad(path, "groups must be a list")
    out: dict[int, Choice] = {}
    for k, g in enumerate(groups):
        if (not isinstance(g, dict) or type(g.get("group")) is not int
                or not isinstance(g.get("keeper"), str) or not isinstance(g.get("remove"), list)
                or not all(isinstance(p, str) for p in g["remove"])):
            raise _bad(path, f"groups[{k}] must be {{group: number, keeper: path, "
                             "remove: [path]}")
        if g["group"] in out:
            raise _bad(path, f"group {g['group']} appears twice")
        out[g["group"]] = (g["keeper"], set(g["remove"]))
    return out


def write_reviewed(report_path: str, reviewed: Report) -> str:
    """Save `reviewed` beside its report as report-reviewed-<time>.json (a new name)."""
    stamp = time.strftime("%Y%m%d_%H%M%S")
    base = os.path.join(os.path.dirname(os.path.abspath(report_path)), f"report-reviewed-{stamp}")
    path, k = f"{base}.json", 2
    while os.path.lexists(path):
        path, k = f"{base}_{k}.json", k + 1
    atomic_write_json(path, reviewed)
    return path


def reviewed_from_file(report_path: str, choices_path: str) -> Report:
    """The reviewed report for `choices_path` (exported from `report_path`'s gallery),
    in memory (a dry run writes nothing)."""
    report = load_report(report_path)
    return reviewed_report(report, load_choices(choices_path, report),
                           os.path.basename(report_path))


def apply_choices_file(report_path: str, choices_path: str) -> str:
    """The reviewed report for `choices_path`, written beside the report. Returns its
    path; apply it like any report."""
    return write_reviewed(report_path, reviewed_from_file(report_path, choices_path))


__all__ = ["CHOICES_FORMAT", "CHOICES_VERSION", "apply_choices_file", "choices_from_review",
           "load_choices", "reviewed_from_file", "reviewed_report", "write_reviewed"]
