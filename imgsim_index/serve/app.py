"""app: the FastAPI application over an IndexService (JSON API, metrics, review page).

Every error leaves as {"error": message} with a status: 400 for bad input (a query
parameter or JSON field that fails its model included: never 422), 401/403 for
refused callers, 404 for unknown things, 409 for a locked index, 413 for a too-large
upload or image, 429 (with Retry-After) when every decoding slot is busy, 507 for a full
disk; an index or model that cannot serve (damaged, no weights) and anything unexpected
are a 500 with a one-line message, never a stack trace.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from imgsim_index.errors import (
    ActionError,
    Cancelled,
    DecodeError,
    DiskFullError,
    ImageTooLarge,
    ImgsimError,
    IndexLockedError,
    IndexMismatchError,
    InputError,
    ReportError,
    RequestRefused,
    ResultTooLarge,
    ServiceBusy,
    UploadTooLarge,
)
from imgsim_index.ingest.scan import is_image_name
from imgsim_index.pipeline.dedupe import DedupeSettings
from imgsim_index.search import PairSettings
from imgsim_index.serve.body import (
    DedupeBody,
    PathsBody,
    error_message,
    openapi_body,
    parse,
    read_body,
    read_json,
)
from imgsim_index.serve.review import add_review_routes
from imgsim_index.serve.security import check_request, resolve_inside
from imgsim_index.serve.service import IndexService

MAX_PAGE_SIZE = 1000
DISCONNECT_POLL_S = 0.1  # how often a long search looks whether its client left
RETRY_AFTER_S = 1  # told to a caller refused because every decoding slot is busy
UPLOAD_CHUNK = 1 << 20


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _status_of(exc: ImgsimError) -> int:
    if isinstance(exc, IndexLockedError):
        return 409
    if isinstance(exc, (UploadTooLarge, ImageTooLarge, ResultTooLarge)):
        return 413
    if isinstance(exc, ServiceBusy):
        return 429
    if isinstance(exc, Cancelled):
        return 499  # nobody reads it: the client closed the request
    if isinstance(exc, (InputError, ReportError, ActionError, DecodeError,
                        IndexMismatchError)):
        return 400  # what was asked cannot be done as asked: the message says why
    if isinstance(exc, DiskFullError):
        return 507
    return 500  # the index or the model cannot serve it (damaged, missing weights)


class Guard:
    """Checks every request (security.check_request) before it reaches a route, and turns
    anything a route let escape into a one-line 500. Plain ASGI, not BaseHTTPMiddleware,
    so a route still sees its client leave (Request.is_disconnected)."""

    def __init__(self, app: ASGIApp, token: str | None):
        self.app, self.token = app, token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        try:
            check_request(request.method, request.url.path,
                          {k.lower(): v for k, v in request.headers.items()},
                          dict(request.cookies), self.token, request.query_params.get("token"))
        except RequestRefused as exc:
            await error(exc.status, exc.message)(scope, receive, send)
            return
        started = False

        async def send_started(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_started)
        except Exception as exc:  # the last net: one line, no trace
            if started:
                raise
            await error(500, f"internal error: {type(exc).__name__}: {exc}")(scope, receive, send)


def create_app(service: IndexService, start_service: bool = True) -> FastAPI:
    """The app. Its startup starts the service (takes the writer lock) unless the caller
    did; its shutdown always stops it (commits what was embedded), before uvicorn hands
    a caught SIGTERM back to the process."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if start_service:
            service.start()
        try:
            yield
        finally:
            service.stop()

    app = FastAPI(title="imgsim-index", version="1",
                  description="Near-duplicate image search over one index.", lifespan=lifespan)
    token = service.settings.token

    app.add_middleware(Guard, token=token)

    @app.exception_handler(ImgsimError)
    async def on_imgsim_error(_: Request, exc: ImgsimError) -> JSONResponse:
        response = error(_status_of(exc), str(exc))
        if isinstance(exc, ServiceBusy):
            response.headers["Retry-After"] = str(RETRY_AFTER_S)
        return response

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error(400, error_message(exc.errors()))

    add_api_routes(app, service)
    add_review_routes(app, service)
    return app


def _paths_from(body: Any, roots: list[str]) -> list[str]:
    if not isinstance(body, dict) or not ("path" in body or "paths" in body):
        raise InputError('send JSON {"path": ...} or {"paths": [...]}, or upload files as '
                         'multipart form data')
    named = parse(PathsBody, body)
    paths = named.paths if named.paths is not None else [named.path]
    if not paths or None in paths:
        raise InputError('"paths" must be a non-empty list of paths')
    return [resolve_inside(str(p), roots) for p in paths]


async def _save_uploads(request: Request, folder: str, limit: int) -> list[tuple[str, str]]:
    """Uploaded files -> [(original name, saved path)], each at most `limit` bytes."""
    length = request.headers.get("content-length")
    if length is None:
        raise InputError("uploads need a Content-Length header")
    if int(length) > limit + 64 * 1024:
        raise UploadTooLarge(f"upload of {int(length)} bytes is over the limit of {limit} bytes "
                       "(--max-upload-mb)")
    form = await request.form(max_files=100)
    saved = []
    for n, (_, item) in enumerate(form.multi_items()):
        if not isinstance(item, UploadFile):
            continue
        name = os.path.basename(item.filename or "") or f"upload{n}.jpg"
        if not is_image_name(name):
            raise InputError(f"{name!r} does not have an image file extension")
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)
        dst = os.path.join(folder, f"{time.strftime('%Y%m%d_%H%M%S')}-{os.getpid()}-{n}-{safe}")
        written = 0
        with open(dst, "xb") as out:
            while chunk := await item.read(UPLOAD_CHUNK):
                written += len(chunk)
                if written > limit:
                    out.close()
                    os.unlink(dst)
                    raise UploadTooLarge(f"{name} is over the upload limit of {limit} bytes "
                                   "(--max-upload-mb)")
                out.write(chunk)
        saved.append((name, dst))
    if not saved:
        raise InputError("the form holds no file; upload images as multipart form data")
    return saved


async def _watch_disconnect(request: Request, left: threading.Event) -> None:
    """Set `left` once the request's client has closed its connection."""
    while not await request.is_disconnected():
        await asyncio.sleep(DISCONNECT_POLL_S)
    left.set()


def _is_multipart(request: Request) -> bool:
    return request.headers.get("content-type", "").startswith("multipart/form-data")


def add_api_routes(app: FastAPI, service: IndexService) -> None:
    limit = service.settings.max_upload_bytes

    @app.get("/v1/health")
    def health() -> dict[str, Any]:
        """Liveness, the index's size and last commit number."""
        loaded = service.snapshot()
        return {"status": "ok", "index": service.index_dir, "images": len(loaded.rows),
                "seq": loaded.seq, "model": service.manifest.get("model"),
                "queue_length": service.queue_length()}

    @app.post("/v1/query", openapi_extra=openapi_body(PathsBody, uploads=True))
    async def query(request: Request, k: int = Query(10, ge=1, le=1000),
                    threshold: float | None = Query(None, ge=-1.0, le=1.0),
                    verify: bool = Query(True), include_self: bool = Query(False),
                    include_below: bool = Query(False)) -> dict[str, Any]:
        """Top-k indexed matches of uploaded images (multipart) or of JSON
        {"path"|"paths"} under the index's folders, as the CLI's query --json lists them
        (rules: pipeline/query.py): at or above `threshold` (default: the model's
        candidate threshold), each with `similarity_score`, `match` and `evidence`."""
        from starlette.concurrency import run_in_threadpool

        def _query(paths: list[str], *args: Any) -> tuple[list[Any], int]:
            service.check_pixels(paths)  # the header only, before anything is decoded
            return service.query(paths, *args)

        with tempfile.TemporaryDirectory(prefix="imgsim-query-") as tmp:
            if _is_multipart(request):
                uploads = await _save_uploads(request, tmp, limit)
                names, paths = [u[0] for u in uploads], [u[1] for u in uploads]
            else:
                paths = _paths_from(await read_json(request), service.roots())
                for path in paths:
                    if not os.path.isfile(path):
                        raise InputError(f"{path} is not a file; a query names image files")
                names = paths
            with service.decoding():  # held while the images decode and embed, not uploads
                results, seq = await run_in_threadpool(_query, paths, k, threshold, verify,
                                                       include_self, include_below)
        return {"seq": seq, "results": [r.to_dict(name)
                                        for name, r in zip(names, results, strict=True)]}

    @app.post("/v1/images", status_code=202, openapi_extra=openapi_body(PathsBody, uploads=True))
    async def add_images(request: Request) -> dict[str, Any]:
        """Add JSON {"paths": [...]} under the index's folders, or uploaded files (saved
        into the inbox folder first), to the index: returns a job to poll."""
        if _is_multipart(request):
            inbox = service.settings.inbox
            if not inbox:
                raise InputError("uploads are saved into an inbox folder; start the service "
                                 "with --inbox DIR to accept them")
            os.makedirs(inbox, exist_ok=True)
            paths = [p for _, p in await _save_uploads(request, inbox, limit)]
            try:
                service.check_pixels(paths)
            except ImageTooLarge:
                for path in paths:
                    os.unlink(path)
                raise
        else:
            paths = _paths_from(await read_json(request), service.roots())
        job = service.submit_add(paths)
        return {"job": job.id, "paths": paths, "status_url": f"/v1/jobs/{job.id}"}

    @app.get("/v1/pairs")
    async def pairs(request: Request, since: int = Query(0, ge=0),
                    threshold: float | None = Query(None, le=1.0), page: int = Query(1, ge=1),
                    page_size: int = Query(100, ge=1, le=MAX_PAGE_SIZE),
                    verify: bool = Query(True)) -> dict[str, Any]:
        """Pairs scoring >= threshold (at least 0.5; default: the model's candidate
        threshold) that involve an image committed after commit `since`, best first, paged,
        spelled as report.json's similar_pairs (`similarity_score`, `match`, `evidence`);
        pass the returned `seq` as the next call's `since`. A search past 100,000 candidate
        pairs stops with 413; a search whose client leaves stops at its next tile."""
        from starlette.concurrency import run_in_threadpool

        left = threading.Event()
        watch = asyncio.create_task(_watch_disconnect(request, left))
        try:
            found = await run_in_threadpool(service.new_pairs, since, threshold, page,
                                            page_size, verify, left.is_set)
        finally:
            watch.cancel()
        return {"since": since, "seq": found.seq, "threshold": found.threshold,
                "threshold_source": found.threshold_source, "total": found.total,
                "page": page, "page_size": page_size, "pairs": found.pairs}

    @app.post("/v1/dedupe", status_code=202, openapi_extra=openapi_body(DedupeBody))
    async def start_dedupe(request: Request) -> dict[str, Any]:
        """Dedupe the whole index into a new report folder (a job). JSON options:
        threshold, keep, new_only, compare_scope."""
        body = await read_body(request, DedupeBody, empty_ok=True)
        settings = DedupeSettings(pairs=PairSettings(compare_scope=body.compare_scope),
                                  new_only=body.new_only, keep=body.keep,
                                  threshold=body.threshold)
        settings.validate()
        job = service.submit_dedupe(settings)
        return {"job": job.id, "status_url": f"/v1/jobs/{job.id}"}

    @app.get("/v1/jobs/{job_id}")
    def job_status(job_id: str) -> dict[str, Any]:
        """A job's state (queued, running, done, failed, cancelled), progress and result."""
        job = service.jobs.get(job_id)
        if job is None:
            raise StarletteHTTPException(404, f"no job {job_id}")
        return job.as_json()

    @app.get("/metrics", response_class=PlainTextResponse)
    def metrics() -> PlainTextResponse:
        """Prometheus text format."""
        text = service.metrics.render(len(service.snapshot().rows), service.queue_length)
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")


__all__ = ["create_app"]
