"""body: a request's JSON body, checked against the route's model, or a clear InputError.

Every body is a pydantic model in strict mode (unknown fields refused, numbers finite, no
coercion: `"1"` or `true` is no group number, `"yes"` no boolean); a body that is
not JSON, nests too deep for the parser, or fails its model is an InputError naming
the field (`body.keepers.0: Input should be a valid string`), which the app answers
with 400, as it does FastAPI's own checks of query parameters.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.requests import Request

from imgsim_index.defaults import DEFAULT_KEEP
from imgsim_index.errors import InputError

M = TypeVar("M", bound="Body")


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)


class PathsBody(Body):
    """Files named by path: one, or a list."""

    path: str | None = None
    paths: list[str] | None = None


class DedupeBody(Body):
    threshold: float | None = None  # None: the model's own candidate threshold
    keep: str = DEFAULT_KEEP
    new_only: bool = False
    compare_scope: str = "all"


class ApplyBody(Body):
    report: str | None = None  # None: the latest report
    action: str = "move"
    move_to: str | None = None
    keepers: dict[str, str] = {}  # group number -> the path to keep
    skip: list[str] = []
    skip_groups: list[int] = []


class UndoBody(Body):
    journal: str


def error_message(errors: Sequence[Any]) -> str:
    """The first of pydantic's (or FastAPI's) errors as `where: what`."""
    first = errors[0] if errors else {}
    where = ".".join(str(p) for p in first.get("loc", ())) or "body"
    return f"{where}: {first.get('msg', 'invalid request')}"


async def read_json(request: Request, default: Any = None) -> Any:
    raw = await request.body()
    if not raw.strip():
        if default is not None:
            return default
        raise InputError("the request has no body; send JSON")
    try:
        return json.loads(raw)
    except RecursionError:
        raise InputError("the body nests too deep; send a flat JSON object") from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError, a number too long
        raise InputError(f"the body is not JSON: {exc}") from None


def parse(model: type[M], value: Any) -> M:
    """`value` (parsed JSON) as `model`, or an InputError naming the first bad field."""
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
        raise InputError(error_message(errors)) from None
    except RecursionError:
        raise InputError("the body nests too deep; send a flat JSON object") from None


async def read_body(request: Request, model: type[M], empty_ok: bool = False) -> M:
    """The request's JSON body as `model`; with `empty_ok`, no body means the defaults."""
    return parse(model, await read_json(request, default={} if empty_ok else None))


def openapi_body(model: type[Body], uploads: bool = False) -> dict[str, Any]:
    """A route's `openapi_extra` documenting its JSON body (the route reads it itself);
    `uploads`: multipart form data is accepted too."""
    content: dict[str, Any] = {"application/json": {"schema": model.model_json_schema()}}
    if uploads:
        content["multipart/form-data"] = {"schema": {"type": "object"}}
    required = any(f.is_required() for f in model.model_fields.values())
    return {"requestBody": {"required": required, "content": content}}
