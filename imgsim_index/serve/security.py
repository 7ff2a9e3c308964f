"""security: who may call, from where, and which files a request may name.

- A token (Authorization: Bearer T, or the cookie the review page sets from ?token=)
  is required on every request when one is configured; a bind other than the
  loopback refuses to start without one.
- A POST whose Origin (or Sec-Fetch-Site) says another site sent it is refused, so a
  page elsewhere cannot make a browser change the index or the files (no CSRF); no
  CORS headers are ever sent.
- Without a token, the Host header must name the loopback (no DNS rebinding).
- A path argument must resolve (symbolic links followed) inside the index's folders.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Sequence
from urllib.parse import urlsplit

from imgsim_index.errors import InputError, RequestRefused

LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
TOKEN_COOKIE = "imgsim_token"


def is_loopback(host: str) -> bool:
    return host in LOOPBACK or host.startswith("127.")


def check_bind(host: str, token: str | None) -> None:
    if not is_loopback(host) and not token:
        raise InputError(f"binding {host} makes the index reachable from other machines; "
                         "give a token with --token or IMGSIM_TOKEN")


def _host_name(host_header: str) -> str:
    return urlsplit(f"//{host_header}").hostname or ""


def check_request(method: str, headers: dict[str, str], cookies: dict[str, str],
                  token: str | None, query_token: str | None) -> None:
    """Raise RequestRefused unless the request may go on. `headers` keys are lower case."""
    if token:
        auth = headers.get("authorization", "")
        given = (auth[7:] if auth.lower().startswith("bearer ") else
                 cookies.get(TOKEN_COOKIE) or query_token or "")
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise RequestRefused(401, "missing or wrong token: send Authorization: Bearer <token>")
    elif not is_loopback(_host_name(headers.get("host", ""))):
        raise RequestRefused(403, f"Host {headers.get('host', '')!r} is not this machine; "
                           "the service answers only on the loopback without a token")
    if method not in ("GET", "HEAD", "OPTIONS"):
        if method != "POST":
            raise RequestRefused(405, f"{method} is not allowed; changes are made with POST")
        origin = headers.get("origin")
        if origin is not None and urlsplit(origin).netloc != headers.get("host", ""):
            raise RequestRefused(403, f"cross-origin request from {origin} refused")
        if headers.get("sec-fetch-site") in ("cross-site", "same-site"):
            raise RequestRefused(403, "cross-site request refused")


def resolve_inside(path: str, roots: Sequence[str]) -> str:
    """`path` as an absolute path, if it resolves inside one of `roots`; else InputError."""
    if not isinstance(path, str) or not path or "\0" in path:
        raise InputError("a path must be a non-empty string")
    absolute = os.path.abspath(path)
    real = os.path.realpath(absolute)
    for root in roots:
        if _within(real, os.path.realpath(root)) and _within(absolute, os.path.abspath(root)):
            return absolute
    raise InputError(f"{path} is not inside the index's folders; only files under "
                     f"{', '.join(sorted(set(roots))) or '(none yet)'} can be named")


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(os.path.join(folder, ""))
