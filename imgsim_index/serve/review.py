"""review: the review page's routes. A report's groups -> the user's choices -> a reviewed
report -> the same make_plan/apply_plan checks and journal as `apply` -> undo.

The user's choices never widen what apply may do (actions/choices.py checks them, as
for a choices file exported from report.html): a new keeper must be a member of its
group, only members the report marked keep/remove can become removable (protected
files and video frames stay), and the reviewed report is written next to the
original so the journal names what was applied.
"""

from __future__ import annotations

import io
import os
import urllib.parse
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from imgsim_index.actions.choices import choices_from_review, reviewed_report, write_reviewed
from imgsim_index.actions.plan import apply_report
from imgsim_index.actions.safety import check_move_to, load_report, report_context
from imgsim_index.actions.undo import undo
from imgsim_index.errors import InputError, ReportError
from imgsim_index.report.html import page_csp, render_page, review_data
from imgsim_index.report.thumbs import THUMB_BOX, THUMB_QUALITY
from imgsim_index.serve.body import ApplyBody, UndoBody, openapi_body, read_body
from imgsim_index.serve.security import TOKEN_COOKIE, resolve_inside
from imgsim_index.serve.service import IndexService

PAGE_ACTIONS = ("move", "hardlink")  # deletion cannot be undone, so the page does not offer it
# a page shows dozens of thumbnails at once, more than there are decoding slots: a thumbnail
# request waits its turn (small decodes, a few at a time) instead of failing with 429
THUMB_WAIT = 30.0
FAVICON = (b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">'
           b'<rect x="1" y="3" width="9" height="9" fill="#2f6db5"/>'
           b'<rect x="6" y="5" width="9" height="9" fill="#2e8b3a"/></svg>')


def list_reports(output: str) -> list[str]:
    """report.json files under `output`, newest first."""
    if not os.path.isdir(output):
        return []
    found = [os.path.join(output, d, "report.json") for d in os.listdir(output)]
    return sorted((p for p in found if os.path.isfile(p)), key=os.path.getmtime, reverse=True)


def pick_report(output: str, report: str | None) -> str:
    if report:
        path = resolve_inside(report, [output], "the output folder")
        if os.path.basename(path) != "report.json" or not os.path.isfile(path):
            raise InputError(f"{report} is not a report.json under {output}")
        return path
    reports = list_reports(output)
    if not reports:
        raise ReportError(f"no report under {output} yet; run a dedupe (POST /v1/dedupe)")
    return reports[0]


def apply_review(report_path: str, body: ApplyBody, move_root: str) -> dict[str, Any]:
    """`move_to` must resolve inside `move_root` (relative: under it); without one, files
    go to <move_root>/<report folder>/moved."""
    action = body.action
    if action not in PAGE_ACTIONS:
        raise InputError(f"the review page applies {' or '.join(PAGE_ACTIONS)}, not {action!r}")
    written: list[str] = []
    move_to = body.move_to or os.path.join(
        move_root, os.path.basename(os.path.dirname(report_path)), "moved")

    def review() -> str:
        report = load_report(report_path)
        choices = choices_from_review(report, body.keepers, set(body.skip),
                                      set(body.skip_groups))
        reviewed = reviewed_report(report, choices, os.path.basename(report_path))
        if action == "move":  # a refused destination writes nothing
            check_move_to(move_to, report_context(reviewed, report_path), move_root)
        written.append(write_reviewed(report_path, reviewed))
        return written[0]

    result = apply_report(report_path, action, move_to if action == "move" else None,
                          review=review, move_root=move_root)
    reviewed_path = written[0]
    return {"journal": result.journal, "reviewed_report": reviewed_path, "action": action,
            "move_to": result.move_to,
            "done": [{"path": op.path, "target": op.target, "keeper": op.keeper}
                     for op in result.done],
            "refused": [{"path": r.path, "reason": r.reason} for r in result.refused],
            "bytes_freed": result.bytes_freed}


def add_review_routes(app: FastAPI, service: IndexService) -> None:
    output = os.path.abspath(service.settings.output)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page(token: str | None = None) -> HTMLResponse:
        text = render_page("imgsim-index review", None)  # the data comes from /v1/review
        response = HTMLResponse(text, headers={
            "Content-Security-Policy": page_csp(served=True) + "; frame-ancestors 'none'",
            "X-Frame-Options": "DENY"})
        if token:  # the middleware checked it; later requests from the page carry the cookie
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
        return response

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        """The page's icon: browsers ask for it, and a 404 would show in their console."""
        return Response(FAVICON, media_type="image/svg+xml",
                        headers={"Cache-Control": "max-age=86400"})

    @app.get("/v1/reports")
    def reports() -> dict[str, Any]:
        """The report.json files of the output folder, newest first."""
        return {"output": output, "reports": list_reports(output)}

    @app.get("/v1/report")
    def report(report: str | None = None) -> JSONResponse:
        """A report (default: the latest) with its path, for the review page."""
        path = pick_report(output, report)
        return JSONResponse({"path": path, "report": load_report(path)})

    @app.get("/v1/review")
    def review(report: str | None = None) -> JSONResponse:
        """A report (default: the latest) as the review page shows it (report.html embeds
        the same data), with the report's path; previews come from /v1/thumb."""
        path = pick_report(output, report)
        data = review_data(load_report(path),
                           lambda p: "/v1/thumb?path=" + urllib.parse.quote(p, safe=""))
        return JSONResponse({"path": path, "review": data})

    @app.get("/v1/thumb")
    def thumb(path: str = Query(...)) -> Response:
        """A JPEG thumbnail of an indexed file."""
        from imgsim_index.report.preview import preview_image

        src = resolve_inside(path, service.roots())
        if not os.path.isfile(src):
            raise InputError(f"{path} is not a file")
        buf = io.BytesIO()
        with service.decoding(wait=THUMB_WAIT):
            service.check_pixels([src])
            try:
                preview_image(src, THUMB_BOX).save(buf, "JPEG", quality=THUMB_QUALITY)
            except Exception as exc:
                return JSONResponse({"error": f"cannot show {path}: {exc}"}, status_code=404)
        return Response(buf.getvalue(), media_type="image/jpeg",
                        headers={"Cache-Control": "private, max-age=60"})

    @app.post("/v1/apply", openapi_extra=openapi_body(ApplyBody))
    async def apply(request: Request) -> dict[str, Any]:
        """Apply the reviewed choices: JSON {report, action: move|hardlink, move_to,
        keepers: {group: path}, skip: [path], skip_groups: [group]}."""
        from starlette.concurrency import run_in_threadpool

        body = await read_body(request, ApplyBody)
        path = pick_report(output, body.report)
        return await run_in_threadpool(service.on_writer, "apply",
                                       lambda: apply_review(path, body, service.move_root()))

    @app.post("/v1/undo", openapi_extra=openapi_body(UndoBody))
    async def undo_apply(request: Request) -> dict[str, Any]:
        """Undo an apply from its journal: JSON {journal}."""
        from starlette.concurrency import run_in_threadpool

        body = await read_body(request, UndoBody)
        journal = resolve_inside(body.journal, [output], "the output folder")
        result = await run_in_threadpool(service.on_writer, "undo", lambda: undo(journal))
        return {"restored": result.restored,
                "not_restored": [{"path": r.path, "reason": r.reason}
                                 for r in result.not_restored]}
