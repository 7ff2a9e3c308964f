"""body: a request's JSON body, or a clear InputError."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from imgsim_index.errors import InputError


async def read_json(request: Request, default: Any = None) -> Any:
    raw = await request.body()
    if not raw.strip():
        if default is not None:
            return default
        raise InputError("the request has no body; send JSON")
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"the body is not JSON: {exc}") from None
