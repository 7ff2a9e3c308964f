"""security: who may call, from where, and which files a request may name.

- A token (Authorization: Bearer T, or the cookie the review page sets from ?token=)
  is required on every request when one is configured; ?token= counts on the review
  page's GET alone, so a token never rides in the URL of an API call. A bind whose
  address (a name resolved, every address it resolves to) is not the loopback refuses
  to start without one.
- A POST whose Origin (or Sec-Fetch-Site) says another site sent it is refused, so a
  page elsewhere cannot make a browser change the index or the files (no CSRF); no
  CORS headers are ever sent.
- Without a token, the Host header must be a loopback IP address or `localhost` (no
  DNS rebinding: `127.evil.example` is a name, not an address).
- A path argument must resolve (symbolic links followed) inside the index's folders.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import socket
from collections.abc import Sequence
from urllib.parse import urlsplit

from imgsim_index.errors import InputError, RequestRefused

TOKEN_COOKIE = "imgsim_token"
TOKEN_PAGE = "/"  # the one page that takes ?token= (and sets the cookie from it)


def is_loopback(host: str) -> bool:
    """`host` (brackets and port stripped) is `localhost` or a loopback IP address."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bound_addresses(host: str) -> list[str]:
    """The addresses a bind of `host` listens on: the IP address itself, or every address
    the name resolves to."""
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return [str(ipaddress.ip_address(bare))]
    except ValueError:
        pass
    try:
        found = socket.getaddrinfo(bare, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        why = getattr(exc, "strerror", None) or exc
        raise InputError(f"cannot resolve --host {host!r} ({why}); give an IP address such as "
                         "127.0.0.1") from None
    return sorted({str(info[4][0]) for info in found})


def check_bind(host: str, token: str | None) -> None:
    addresses = bound_addresses(host)
    outside = [a for a in addresses if not is_loopback(a.split("%")[0])]
    if outside and not token:
        shown = host if outside == [host] else f"{host} ({', '.join(outside)})"
        raise InputError(f"binding {shown} makes the index reachable from other machines; "
                         "give a token with --token or IMGSIM_TOKEN")


def _host_name(host_header: str) -> str:
    try:
        return urlsplit(f"//{host_header}").hostname or ""
    except ValueError:  # a malformed header, e.g. an unclosed [
        return ""


def check_request(method: str, path: str, headers: dict[str, str], cookies: dict[str, str],
                  token: str | None, query_token: str | None) -> None:
    """Raise RequestRefused unless the request may go on. `headers` keys are lower case;
    `query_token` (?token=) counts only on the review page's GET."""
    if token:
        auth = headers.get("authorization", "")
        from_url = query_token if method == "GET" and path == TOKEN_PAGE else None
        given = (auth[7:] if auth.lower().startswith("bearer ") else
                 cookies.get(TOKEN_COOKIE) or from_url or "")
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


def resolve_inside(path: str, roots: Sequence[str], where: str = "the index's folders") -> str:
    """`path` as an absolute path, if it resolves inside one of `roots` (`where`, in
    words); else InputError."""
    if not isinstance(path, str) or not path or "\0" in path:
        raise InputError("a path must be a non-empty string")
    absolute = os.path.abspath(path)
    real = os.path.realpath(absolute)
    for root in roots:
        if _within(real, os.path.realpath(root)) and _within(absolute, os.path.abspath(root)):
            return absolute
    raise InputError(f"{path} is not inside {where}; only files under "
                     f"{', '.join(sorted(set(roots))) or '(none yet)'} can be named")


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(os.path.join(folder, ""))
