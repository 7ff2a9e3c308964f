"""html: report.json -> the review page's data (review_data) and the page itself
(render_page); report.html is that page with the data embedded, plus thumbs/ beside it.

One page, two ways to serve it: review_assets/ holds its HTML, CSS and script. report.html
embeds review_data's output; the `serve` page (serve/review.py) leaves the data block empty
and its script asks GET /v1/review for the same data. No network beyond that: no CDN, no
fonts, no remote images; a Content-Security-Policy allows only the page's own inline style
and script (pinned by hash), images from its own origin (thumbs/ or /v1/thumb) and, on the
served page alone, requests to its own origin. The user can untick files and groups and
change keepers; report.html then exports the choices as a file that
`apply REPORT --plan FILE` accepts (see actions/choices.py), the served page applies them.
The data travels as JSON in a <script type="application/json"> block with '<', '>' and
'&' escaped, so a file named "</script><img src=x onerror=...>.jpg" stays text.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
import json
import math
import os
import re
import time
from collections.abc import Callable
from importlib import resources
from typing import Any

from imgsim_index.atomic_files import atomic_write_bytes
from imgsim_index.progress import Progress
from imgsim_index.report.contract import PairRow, Report, pair_match
from imgsim_index.report.json_report import verification_text
from imgsim_index.report.thumbs import write_thumbnails
from imgsim_index.report.units import human_bytes

PAGE_SIZE = 50
THUMBS_DIR = "thumbs"
NEAR_MISSES_SHOWN = 200  # near-miss pairs shown (best scores first); the page counts the rest
FILES_SHOWN = 500  # unreadable / skipped files listed; the page counts the rest
ASSETS = "review_assets"  # review.html, review.css, review.js: the page, both ways it is served


def _mtime_text(mtime_ns: int | None) -> str:
    if mtime_ns is None:
        return "?"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(mtime_ns / 1e9))


def _verification_text(report: Report) -> str:
    v = report.get("verification") or {}
    if not v.get("ran"):
        return "off (cosine only)"
    return f"on: {verification_text(report)}"


def _summary(report: Report) -> list[tuple[str, str]]:
    protected = report.get("protected_folders") or []
    return [
        ("Run", str(report.get("timestamp", ""))),
        ("Folders", "; ".join(report.get("folder_list", []))),
        ("Threshold", str(report.get("threshold"))),
        ("Images", str(report.get("total_images_in_folders"))),
        ("Similar pairs", str(report.get("number_of_similar_pairs"))),
        *([("Verification", _verification_text(report))] if "verification" in report else []),
        ("Duplicate groups", str(len(report.get("groups", [])))),
        ("Keep policy", str(report.get("keep_policy", ""))),
        ("Protected folders", "; ".join(protected) if protected else "none"),
        ("Removable", f"{report.get('files_removable', 0)} files, "
                      f"{human_bytes(int(report.get('bytes_removable', 0)))}"),
    ]


def _shown_near_misses(report: Report) -> list[PairRow]:
    rows = sorted(report.get("near_misses") or [], key=lambda r: -r["similarity_score"])
    return rows[:NEAR_MISSES_SHOWN]


def _member_verdict(path: str, keeper: str, paths: set[str],
                    verdicts: dict[frozenset[str], PairRow]) -> dict[str, Any]:
    """match / evidence of the pair that put `path` in its group: the one with the keeper,
    else its best-scoring pair with another member; `pair` is that pair's A and B."""
    row = verdicts.get(frozenset((path, keeper)))
    if row is None:
        linked = [r for other in sorted(paths - {path})
                  if (r := verdicts.get(frozenset((path, other)))) is not None]
        row = max(linked, key=lambda r: r["similarity_score"], default=None)
    if row is None or "match" not in row:
        return {}
    return {"match": row["match"], "evidence": _words(row["match"], row.get("evidence", "")),
            "pair": [row["image1"], row["image2"]]}


def _words(match: str, evidence: str) -> str:
    """The evidence without a leading restatement of its match ("other shot: 7% ..." ->
    "7% ..."): the page shows the match beside it."""
    label = match.replace("_", " ") + ":"
    return evidence[len(label):].lstrip() if evidence.startswith(label) else evidence


def _near_verdict(row: PairRow) -> dict[str, str]:
    """A near miss as the page shows it: a pair that could not be verified is labelled so
    (contract.pair_match reads a schema 3 report's form too), never as another shot."""
    match = pair_match(row) or "other_shot"
    return {"match": match, "evidence": _words(match, str(row.get("evidence", "")))}


def no_thumb(path: str) -> str | None:
    return None


def review_data(report: Report,
                thumb: Callable[[str], str | None] = no_thumb) -> dict[str, Any]:
    """report.json -> what the review page renders (report.html and the `serve` page alike):
    groups largest first, keeper first in each group with its reason, each member with the
    verdict that joined it; near misses (other shots), unreadable and skipped files apart.
    `thumb`: a file's preview URL (None: no preview)."""
    verdicts = {frozenset((r["image1"], r["image2"])): r
                for r in report.get("similar_pairs") or []}
    groups = []
    scores = []
    for g in sorted(report.get("groups", []), key=lambda g: (-g["size"], g["group"])):
        members = sorted(g["members"], key=lambda m: m["role"] != "keep")
        paths = {m["path"] for m in members}
        groups.append({
            "group": g["group"],
            "keeper": g["keeper"],
            "keep_reason": g.get("keep_reason", ""),
            "bytes_removable": g.get("bytes_removable", 0),
            "members": [{
                "path": m["path"], "size": m["size"], "w": m["width"], "h": m["height"],
                "score": m["score_to_keeper"], "role": m["role"],
                "mtime": _mtime_text(m["mtime_ns"]), "thumb": thumb(m["path"]),
                **({} if m["path"] == g["keeper"] else
                   _member_verdict(m["path"], g["keeper"], paths, verdicts)),
            } for m in members],
        })
        scores += [m["score_to_keeper"] for m in g["members"]
                   if m["role"] != "keep" and m["score_to_keeper"] is not None]
    floor = min([*scores, float(report.get("threshold", 0.0))])
    near = [{"a": {"path": r["image1"], "thumb": thumb(r["image1"])},
             "b": {"path": r["image2"], "thumb": thumb(r["image2"])},
             "score": r["similarity_score"], **_near_verdict(r),
             "pair": [r["image1"], r["image2"]]} for r in _shown_near_misses(report)]
    errors = report.get("errors") or []
    skipped: dict[str, Any] = dict(report.get("skipped") or {})
    return {"page_size": PAGE_SIZE, "score_min": max(-1.0, math.floor(floor * 1e6) / 1e6),
            "summary": _summary(report), "groups": groups, "near_misses": near,
            "near_misses_total": len(report.get("near_misses") or []),
            "errors": errors[:FILES_SHOWN], "errors_total": len(errors),
            "skipped": (skipped.get("paths") or [])[:FILES_SHOWN],
            "skipped_counts": skipped.get("counts") or {},
            "skipped_total": len(skipped.get("paths") or []),
            "timestamp": report.get("timestamp")}  # binds exported choices to this report


def _json_for_script(obj: Any) -> str:
    """JSON that cannot end its <script> element or open a comment, whatever the strings say.

    ASCII only: a file name that is not valid UTF-8 (a lone surrogate in Python) still encodes.
    """
    text = json.dumps(obj, ensure_ascii=True, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _csp_hash(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"


@functools.cache
def _asset(name: str) -> str:
    return resources.files("imgsim_index.report").joinpath(ASSETS, name).read_text("utf-8")


def page_csp(served: bool) -> str:
    """The page's Content-Security-Policy: its own style and script (by hash), images from
    its origin, and requests to its origin on the served page alone."""
    style, script = _asset("review.css"), _asset("review.js")
    connect = "'self'" if served else "'none'"
    return (f"default-src 'none'; img-src 'self'; style-src {_csp_hash(style)}; "
            f"script-src {_csp_hash(script)}; connect-src {connect}; "
            "base-uri 'none'; form-action 'none'")


def render_page(title: str, data: dict[str, Any] | None) -> str:
    """The review page: with `data` (review_data's output) embedded, report.html; without,
    the `serve` page, whose script asks the HTTP API (same origin) for it."""
    values = {"CSP": html.escape(page_csp(data is None)), "TITLE": html.escape(title),
              "STYLE": _asset("review.css"), "SCRIPT": _asset("review.js"),
              "DATA": "" if data is None else _json_for_script(data)}
    # one pass: a value (a file name in DATA) that spells a placeholder stays as it is
    return re.sub(r"\{\{([A-Z]+)\}\}", lambda m: values[m.group(1)], _asset("review.html"))


def write_gallery(report: Report, path: str, progress: Progress | None = None,
                  thumbnails: bool = True) -> str:
    """Write report.html (and thumbs/ beside it) for `report`. Returns the page's path."""
    folder = os.path.dirname(os.path.abspath(path))
    thumbs: dict[str, str] = {}
    if thumbnails:
        paths = [m["path"] for g in report.get("groups", []) for m in g["members"]]
        paths += [p for r in _shown_near_misses(report) for p in (r["image1"], r["image2"])]
        paths = list(dict.fromkeys(paths))
        if paths:
            thumbs = write_thumbnails(paths, os.path.join(folder, THUMBS_DIR), progress)
    title = f"imgsim-index duplicates {report.get('timestamp', '')}".strip()
    data = review_data(report, lambda p: f"{THUMBS_DIR}/{thumbs[p]}" if p in thumbs else None)
    atomic_write_bytes(path, render_page(title, data).encode("utf-8"))
    return path
