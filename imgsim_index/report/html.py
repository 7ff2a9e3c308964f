"""html: report.json's groups -> report.html, a self-contained gallery, plus thumbs/ beside it.

No network: no CDN, no fonts, no remote images; a Content-Security-Policy
allows only the page's own inline style and script (pinned by hash) and
images from the thumbs folder. The user can untick files and groups and change
keepers, then "export my choices" downloads a choices file that
`apply REPORT --plan FILE` accepts (see actions/choices.py). The report's data travels as JSON in a
<script type="application/json"> block with '<', '>' and '&' escaped, so a
file named "</script><img src=x onerror=...>.jpg" stays text.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
import os
import time
from typing import Any

from imgsim_index.atomic_files import atomic_write_bytes
from imgsim_index.progress import Progress
from imgsim_index.report.contract import PairRow, Report
from imgsim_index.report.gallery_assets import CHOICES_SCRIPT, CHOICES_STYLE, SCRIPT, STYLE
from imgsim_index.report.json_report import verification_text
from imgsim_index.report.thumbs import write_thumbnails
from imgsim_index.report.units import human_bytes

PAGE_SIZE = 50
THUMBS_DIR = "thumbs"
NEAR_MISSES_SHOWN = 200  # near-miss pairs shown (best scores first); the page counts the rest


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
    return {"match": row["match"], "evidence": row.get("evidence", ""),
            "pair": [row["image1"], row["image2"]]}


def _near_verdict(row: PairRow) -> dict[str, str]:
    """A near miss as the page shows it: a pair that could not be verified is labelled so
    (report.json keeps match other_shot, its evidence saying "not verified"), never as
    another shot."""
    from imgsim_index.verify import UNVERIFIED

    evidence = str(row.get("evidence", ""))
    if evidence.startswith(UNVERIFIED):
        return {"match": "not_verified", "evidence": evidence[len(UNVERIFIED):].lstrip(": ")}
    return {"match": row.get("match", "other_shot"), "evidence": evidence}


def gallery_data(report: Report, thumbs: dict[str, str]) -> dict[str, Any]:
    """What the page's script renders: groups largest first, keeper first in each group, each
    member with the verdict that joined it; near misses (other shots) apart."""

    def thumb(path: str) -> str | None:
        return f"{THUMBS_DIR}/{thumbs[path]}" if path in thumbs else None

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
    return {"page_size": PAGE_SIZE, "score_min": max(-1.0, math.floor(floor * 10000) / 10000),
            "summary": _summary(report), "groups": groups, "near_misses": near,
            "near_misses_total": len(report.get("near_misses") or []),
            "timestamp": report.get("timestamp")}  # binds exported choices to this report


def _json_for_script(obj: Any) -> str:
    """JSON that cannot end its <script> element or open a comment, whatever the strings say.

    ASCII only: a file name that is not valid UTF-8 (a lone surrogate in Python) still encodes.
    """
    text = json.dumps(obj, ensure_ascii=True, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _csp_hash(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"


def render_gallery(data: dict[str, Any], title: str) -> str:
    style, script = STYLE + CHOICES_STYLE, SCRIPT + CHOICES_SCRIPT  # one element each
    csp = (f"default-src 'none'; img-src 'self'; style-src {_csp_hash(style)}; "
           f"script-src {_csp_hash(script)}; base-uri 'none'; form-action 'none'")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{html.escape(csp)}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{style}</style>
</head>
<body>
<header>
<h1>{html.escape(title)}</h1>
<dl id="summary"></dl>
</header>
<div class="controls">
<span id="count"></span>
<label>score to keeper from <input type="range" id="score-lo">
<output id="lo-value"></output></label>
<label>to <input type="range" id="score-hi"> <output id="hi-value"></output></label>
<button type="button" id="prev">&larr; previous</button>
<span id="page-info"></span>
<button type="button" id="next">next &rarr;</button>
<span id="choices-info"></span>
<button type="button" id="export-choices">export my choices</button>
</div>
<main id="groups"></main>
<section id="near-misses" hidden></section>
<script type="application/json" id="gallery-data">{_json_for_script(data)}</script>
<script>{script}</script>
</body>
</html>
"""


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
    atomic_write_bytes(path, render_gallery(gallery_data(report, thumbs), title).encode("utf-8"))
    return path
