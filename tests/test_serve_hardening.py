"""serve under hostile requests: DNS rebinding, binds, tokens in URLs, move targets,
bad bodies, image bombs, unbounded pair listings. The real service over real HTTP."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np
import pytest
import uvicorn
from library_fixture import simple_library
from test_serve import (  # noqa: F401  (library and server are fixtures)
    LITE0,
    free_port,
    library,
    running_server,
    serve_refused,
    server,
)

from imgsim_index.errors import InputError
from imgsim_index.index.catalog import NewRow
from imgsim_index.index.store import IndexStore
from imgsim_index.search.settings import LISTING_MIN_THRESHOLD
from imgsim_index.serve.app import create_app
from imgsim_index.serve.security import check_bind
from imgsim_index.serve.service import IndexService, ServeSettings


@pytest.mark.parametrize("host", ["127.evil.example:8751", "127.evil.example", "127.0.0.1.nip.io",
                                  "localhost.evil.example", "[::1", "evil.example:80"])
def test_host_header_must_name_a_loopback_address(server: str, host: str) -> None:  # noqa: F811
    for method, path in (("GET", "/v1/health"), ("POST", "/v1/apply"), ("GET", "/")):
        res = httpx.request(method, server + path, headers={"Host": host}, json={}, timeout=30)
        assert res.status_code == 403, (method, path, res.text)
        assert "is not this machine" in res.json()["error"]


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.1:8750", "127.1.2.3:80", "localhost",
                                  "LocalHost:8750", "[::1]:8750", "[::1]"])
def test_loopback_host_headers_are_served(server: str, host: str) -> None:  # noqa: F811
    res = httpx.get(server + "/v1/health", headers={"Host": host}, timeout=30)
    assert res.status_code == 200, res.text


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"])
def test_loopback_binds_need_no_token(host: str) -> None:
    check_bind(host, None)


def test_a_name_that_looks_like_the_loopback_is_resolved() -> None:
    with pytest.raises(InputError, match=r"cannot resolve --host '127\.attacker\.invalid'"):
        check_bind("127.attacker.invalid", None)
    with pytest.raises(InputError, match="binding 0.0.0.0 makes the index reachable"):
        check_bind("0.0.0.0", None)
    check_bind("0.0.0.0", "a-token")


def test_serve_refuses_an_unresolvable_bind(library: Path) -> None:  # noqa: F811
    run = serve_refused("--index", str(library / "index"), "--host", "127.attacker.invalid")
    lines = run.stderr.strip().splitlines()
    assert lines == ["Error: cannot resolve --host '127.attacker.invalid' (Name or service not "
                     "known); give an IP address such as 127.0.0.1"]


def test_token_in_the_url_opens_the_review_page_only(library: Path, tmp_path: Path) -> None:  # noqa: F811
    index = tmp_path / "index"
    shutil.copytree(library / "index", index)  # the module's server holds the other's lock
    with running_server("--index", str(index), "--output", str(tmp_path / "results"),
                        token="s3cret") as (url, _):
        for method, path in (("POST", "/v1/undo"), ("POST", "/v1/apply"), ("GET", "/v1/health"),
                             ("GET", "/v1/reports"), ("POST", "/v1/dedupe")):
            res = httpx.request(method, f"{url}{path}?token=s3cret", json={}, timeout=30)
            assert res.status_code == 401, (method, path, res.text)
        assert httpx.get(f"{url}/?token=nope", timeout=30).status_code == 401
        with httpx.Client(base_url=url, timeout=30) as browser:
            page = browser.get("/?token=s3cret")
            assert page.status_code == 200 and browser.cookies.get("imgsim_token") == "s3cret"
            assert browser.get("/v1/health").status_code == 200  # the cookie counts
        assert httpx.get(f"{url}/v1/health", headers={"Authorization": "Bearer s3cret"},
                         timeout=30).status_code == 200


def test_apply_moves_only_under_the_move_root(tmp_path: Path) -> None:
    photos, result = simple_library(tmp_path)
    results = tmp_path / "results"
    assert os.path.dirname(os.path.dirname(result.report_path)) == str(results)
    before = sorted(p for p in photos.rglob("*") if p.is_file())
    elsewhere = tmp_path / "elsewhere"
    (results / "link").symlink_to(elsewhere, target_is_directory=True)
    with running_server("--index", str(tmp_path / "index"), "--output", str(results)) as (url, _), \
            httpx.Client(base_url=url, timeout=60) as client:
        for move_to, real in ((str(elsewhere), elsewhere), ("../elsewhere", elsewhere),
                              (str(results / "link" / "x"), elsewhere / "x")):
            res = client.post("/v1/apply", json={"action": "move", "move_to": move_to})
            assert res.status_code == 400, res.text
            assert res.json()["error"] == (
                f"move destination {move_to} resolves to {real}, outside the folder moves "
                f"may go to ({results}); pick a folder inside it")
        assert sorted(p for p in photos.rglob("*") if p.is_file()) == before
        assert not elsewhere.exists()
        # a refused request writes no reviewed report either
        assert not list(results.rglob("report-reviewed-*.json"))
        done = client.post("/v1/apply", json={"action": "move", "move_to": "dupes"})
        assert done.status_code == 200, done.text
        assert done.json()["move_to"] == str(results / "dupes")
        assert len(done.json()["done"]) == 3
        assert (results / "dupes" / "photos" / "b" / "dog-2.jpg").is_file()
        undone = client.post("/v1/undo", json={"journal": done.json()["journal"]})
        assert undone.status_code == 200 and len(undone.json()["restored"]) == 3
    assert sorted(p for p in photos.rglob("*") if p.is_file()) == before


def test_apply_refuses_choices_the_report_does_not_have(tmp_path: Path) -> None:
    """A file to leave alone named otherwise than the report names it (relative, or not
    its absolute path), or a group the report does not have: 400 with the reason,
    nothing moved and nothing written. Named as the report names it, the file stays."""
    photos, result = simple_library(tmp_path)
    results = tmp_path / "results"
    report = json.loads(Path(result.report_path).read_text())
    group = report["groups"][0]
    leave = group["removable"][0]
    relative = os.path.relpath(leave, tmp_path)
    before = sorted(p for p in photos.rglob("*") if p.is_file())
    with running_server("--index", str(tmp_path / "index"), "--output", str(results)) as (url, _), \
            httpx.Client(base_url=url, timeout=60) as client:
        for body, message in (
                ({"skip": [relative]}, f"skip: {relative} is not a file of the report's groups "
                 "(name it by its absolute path, as the report does)"),
                ({"skip": [leave + ".x"]}, f"skip: {leave}.x is not a file of the report's "
                 "groups (name it by its absolute path, as the report does)"),
                ({"keepers": {"77": leave}}, "keepers: the report has no group '77'"),
                ({"keepers": {"first": leave}}, "keepers: the report has no group 'first'"),
                # other spellings of group 0's number: the keeper they name would be moved
                *(({"keepers": {key: leave}}, f"keepers: the report has no group {key!r}")
                  for key in ("00", "-0", "\uff10", "--0", "\u00b2", "9" * 5000)),
                ({"skip_groups": [77]}, "skip_groups: the report has no group 77")):
            res = client.post("/v1/apply", json={"action": "move", "move_to": "dupes", **body})
            assert res.status_code == 400, res.text
            assert res.json()["error"] == message
        assert sorted(p for p in photos.rglob("*") if p.is_file()) == before
        assert not list(results.rglob("report-reviewed-*.json"))
        # the same file named with a folded spelling of its absolute path is left alone
        spelled = leave.replace(os.sep, os.sep + "." + os.sep, 1)
        done = client.post("/v1/apply", json={"action": "move", "move_to": "dupes",
                                              "skip": [spelled]})
        assert done.status_code == 200, done.text
        assert leave not in {op["path"] for op in done.json()["done"]}
        assert os.path.isfile(leave)
        assert len(done.json()["done"]) == report["files_removable"] - 1


def test_folders_and_files_that_are_not_journals_are_400(library: Path,  # noqa: F811
                                                         server: str) -> None:  # noqa: F811
    """A folder where an image or a journal is named, a journal that is no text, a journal
    outside the output folder: 400 with the reason, never a 500 or 422."""
    folder = library / "photos" / "copies"
    results = library / "results"
    results.mkdir(exist_ok=True)
    garbled = results / "garbled.jsonl"
    garbled.write_bytes(b"\xff\xfe{")
    with httpx.Client(base_url=server, timeout=60) as client:
        got = client.get("/v1/thumb", params={"path": str(folder)})
        assert (got.status_code, got.json()) == (400, {"error": f"{folder} is not a file"})
        got = client.post("/v1/query", json={"path": str(folder)})
        assert (got.status_code, got.json()["error"]) == (
            400, f"{folder} is not a file; a query names image files")
        for journal, message in (
                (garbled, f"{garbled} is not an imgsim-index apply journal (not UTF-8 text)"),
                (results, f"cannot open journal {results}: Is a directory"),
                (library / "index" / "manifest.json",
                 f"{library / 'index' / 'manifest.json'} is not inside the output folder; "
                 f"only files under {results} can be named")):
            got = client.post("/v1/undo", json={"journal": str(journal)})
            assert (got.status_code, got.json()["error"]) == (400, message)


@pytest.mark.parametrize("route, body, message", [
    ("/v1/dedupe", {"threshold": "abc"}, "body.threshold: Input should be a valid number"),
    # strict: no coercion of strings, booleans or floats into what a field holds
    ("/v1/dedupe", {"threshold": "0.9"}, "body.threshold: Input should be a valid number"),
    ("/v1/dedupe", {"threshold": True}, "body.threshold: Input should be a valid number"),
    ("/v1/dedupe", {"new_only": "yes"}, "body.new_only: Input should be a valid boolean"),
    ("/v1/dedupe", {"new_only": 1}, "body.new_only: Input should be a valid boolean"),
    ("/v1/apply", {"skip_groups": [True]}, "body.skip_groups.0: Input should be a valid integer"),
    ("/v1/apply", {"skip_groups": ["1"]}, "body.skip_groups.0: Input should be a valid integer"),
    ("/v1/apply", {"skip_groups": [0.0]}, "body.skip_groups.0: Input should be a valid integer"),
    ("/v1/dedupe", {"threshold": 10**400}, "body.threshold: Input should be a valid number"),
    ("/v1/dedupe", [1, 2], "body: Input should be a valid dictionary or instance of DedupeBody"),
    ("/v1/dedupe", {"threshold": float("nan")}, "body.threshold: Input should be a finite number"),
    ("/v1/dedupe", {"colour": 1}, "body.colour: Extra inputs are not permitted"),
    ("/v1/apply", {"skip_groups": ["x"]}, "body.skip_groups.0: Input should be a valid integer"),
    ("/v1/apply", {"keepers": {"0": ["a"]}}, "body.keepers.0: Input should be a valid string"),
    ("/v1/apply", {"move_to": 5}, "body.move_to: Input should be a valid string"),
    ("/v1/apply", ["report"], "body: Input should be a valid dictionary or instance of ApplyBody"),
    ("/v1/undo", {"journal": {"a": 1}}, "body.journal: Input should be a valid string"),
    ("/v1/undo", {}, "body.journal: Field required"),
    ("/v1/query", {"paths": [1]}, "body.paths.0: Input should be a valid string"),
    ("/v1/images", {"path": None}, '"paths" must be a non-empty list of paths'),
])
def test_bad_bodies_name_the_field(server: str, route: str, body: object,  # noqa: F811
                                   message: str) -> None:
    res = httpx.post(server + route, content=json.dumps(body).encode(),
                     headers={"Content-Type": "application/json"}, timeout=30)
    assert res.status_code == 400, res.text
    assert res.json() == {"error": message}


@pytest.mark.parametrize("raw, message", [
    (b"[" * 100_000, "the body nests too deep; send a flat JSON object"),
    (b'{"threshold": ' + b"9" * 5000 + b"}", "the body is not JSON: Exceeds the limit"),
])
def test_bodies_that_break_the_parser_are_400(server: str, raw: bytes,  # noqa: F811
                                              message: str) -> None:
    for route in ("/v1/dedupe", "/v1/apply", "/v1/undo", "/v1/query", "/v1/images"):
        res = httpx.post(server + route, content=raw,
                         headers={"Content-Type": "application/json"}, timeout=30)
        assert res.status_code == 400, (route, res.text)
        assert res.json()["error"].startswith(message), (route, res.text)


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares width x height grey pixels and holds almost none (a bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0,
                                                               0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def test_images_over_the_pixel_limit_are_413_before_decoding(library: Path,  # noqa: F811
                                                             server: str) -> None:  # noqa: F811
    bomb = png_header(13300, 13300)
    want = ("is 13300x13300 = 176890000 pixels, over the limit of 100000000 pixels per image "
            "(--max-megapixels)")
    inbox = sorted((library / "inbox").iterdir())
    for route in ("/v1/query", "/v1/images"):
        res = httpx.post(server + route, files={"image": ("bomb.png", bomb, "image/png")},
                         timeout=60)
        assert res.status_code == 413, res.text
        assert res.json()["error"].endswith(want)
    assert sorted((library / "inbox").iterdir()) == inbox  # the refused upload is not kept
    named = library / "photos" / "bombs" / "bomb.png"
    named.parent.mkdir(exist_ok=True)
    named.write_bytes(bomb)
    res = httpx.post(server + "/v1/query", json={"path": str(named)}, timeout=60)
    assert res.status_code == 413 and res.json() == {"error": f"bomb.png {want}"}
    res = httpx.get(server + "/v1/thumb", params={"path": str(named)}, timeout=60)
    assert res.status_code == 413 and res.json() == {"error": f"bomb.png {want}"}


@contextlib.contextmanager
def serving(service: IndexService) -> Iterator[str]:
    """The app over `service`, served by uvicorn on 127.0.0.1 in this process."""
    port = free_port()
    app = create_app(service)
    runner = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            if runner.started:
                break
            time.sleep(0.05)
        yield url
    finally:
        runner.should_exit = True
        thread.join(60)


def test_decoding_is_bounded_by_slots(library: Path, tmp_path: Path,  # noqa: F811
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from imgsim_index.serve import review

    monkeypatch.setattr(review, "THUMB_WAIT", 0.5)  # a thumbnail waits this long for a slot
    index = tmp_path / "index"
    shutil.copytree(library / "index", index)  # the module's server holds the other's lock
    service = IndexService(ServeSettings(index=str(index), output=str(tmp_path / "results"),
                                         decode_slots=1, build=LITE0))
    path = str(library / "photos" / "s1.jpg")
    with serving(service) as url, httpx.Client(base_url=url, timeout=120) as client:
        with service.decoding():  # a request decoding now holds the only slot
            for res in (client.post("/v1/query", json={"path": path}),
                        client.get("/v1/thumb", params={"path": path})):
                assert res.status_code == 429, res.text
                assert res.headers["retry-after"] == "1"
                assert res.json() == {"error": "all 1 decoding slots are busy; try again "
                                               "shortly"}
        assert client.post("/v1/query", json={"path": path}).status_code == 200
        assert client.get("/v1/thumb", params={"path": path}).status_code == 200


@pytest.mark.parametrize("threshold", ["-1", "0.49"])
def test_pair_listings_below_the_floor_are_400(server: str, threshold: str) -> None:  # noqa: F811
    res = httpx.get(server + "/v1/pairs", params={"threshold": threshold}, timeout=30)
    assert res.status_code == 400, res.text
    assert res.json()["error"].startswith(
        f"threshold must be between {LISTING_MIN_THRESHOLD} and 1 for a pair listing, got ")


def random_index(index: Path, n: int, dim: int) -> None:
    """`n` random unit vectors (no model: only pair listings read them), then, in a second
    commit, two equal vectors (one pair, scoring 1)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    twin = np.zeros((2, dim), np.float32)
    twin[:, 0] = 1.0
    store = IndexStore.open_writer(str(index), {"model": "test", "dim": dim, "weights_id": "x",
                                                "preprocessing": {}})
    try:
        store.commit([NewRow(f"/data/img{k:06d}.jpg", "/data", 1000, k, 64, 64)
                      for k in range(n)], x)
        store.commit([NewRow(f"/data/twin{k}.jpg", "/data", 1000, k, 64, 64)
                      for k in range(2)], twin)
    finally:
        store.close()


def test_pair_listing_stops_at_its_cap_and_when_the_client_leaves(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # float32 tiles: a CPU with bf16 GEMMs would finish the search before the client leaves
    monkeypatch.setenv("IMGSIM_PAIR_PRECISION", "fp32")
    index = tmp_path / "index"
    random_index(index, 16_000, 256)  # 256 tiles of 1024 x 1024 x 256: seconds to search
    service = IndexService(ServeSettings(index=str(index), output=str(tmp_path / "results"),
                                         max_listed_pairs=2))
    with serving(service) as url:
        # since the first commit: the twins, a candidate from both ends (2, the cap); no
        # random 256-d vector comes near 0.5 with them
        twins = httpx.get(url + "/v1/pairs", params={"threshold": 0.5, "since": 1}, timeout=120)
        assert twins.status_code == 200, twins.text
        assert [(p["image1"], p["image2"], p["similarity_score"])
                for p in twins.json()["pairs"]] == [("/data/twin0.jpg", "/data/twin1.jpg", 1.0)]
        service.settings = replace(service.settings, max_listed_pairs=1)
        capped = httpx.get(url + "/v1/pairs", params={"threshold": 0.99, "since": 1},
                           timeout=120)
        assert capped.status_code == 413, capped.text
        assert capped.json() == {"error": "more than 1 pairs score near the threshold; raise "
                                          "the threshold or search fewer rows"}
        service.settings = replace(service.settings, max_listed_pairs=1000)
        with pytest.raises(httpx.TimeoutException):  # the client leaves mid-search
            httpx.get(url + "/v1/pairs", params={"threshold": 0.9}, timeout=0.2)
        for _ in range(600):
            if service.metrics.pair_searches_cancelled:
                break
            time.sleep(0.1)
        assert service.metrics.pair_searches_cancelled == 1
        metrics = httpx.get(url + "/metrics", timeout=30).text
        assert "imgsim_pair_searches_cancelled_total 1\n" in metrics


def fuzz_value(rng: random.Random, paths: list[str], depth: int = 0) -> object:
    """A value of a random JSON type: strings (paths among them), numbers (negative,
    huge, fractional), null, booleans, lists, objects, deep nesting."""
    kind = rng.randrange(12 if depth < 2 else 8)
    if kind == 0:
        return rng.choice(["", "x", "abc", "../../etc/passwd", "\u202e\0", "0", "-1", "1e999"])
    if kind == 1:
        return rng.choice(paths)
    if kind == 2:
        return rng.choice([0, 1, 7, 1000, 10**6])
    if kind == 3:
        return rng.choice([-1, -(10**9), -0.5])
    if kind == 4:
        return rng.choice([10**30, 2**63, -(2**64)])
    if kind == 5:
        return rng.choice([0.5, 0.97, 1.5, 1e308])
    if kind == 6:
        return None
    if kind == 7:
        return rng.choice([True, False])
    if kind in (8, 9):
        return [fuzz_value(rng, paths, depth + 1) for _ in range(rng.randrange(4))]
    if kind == 10:
        return {rng.choice(["0", "1", "a", "group"]): fuzz_value(rng, paths, depth + 1)
                for _ in range(rng.randrange(3))}
    nested: object = rng.choice([[], {}, 1])
    for _ in range(rng.randrange(20, 200)):
        nested = [nested] if rng.random() < 0.5 else {"a": nested}
    return nested


def operations(spec: dict[str, Any]) -> list[tuple[str, str, list[dict[str, Any]], list[str]]]:
    """(method, path, parameters, JSON body fields) of every operation in the OpenAPI spec."""
    out = []
    for path, item in spec["paths"].items():
        for method, op in item.items():
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            fields = sorted(body.get("schema", {}).get("properties", {}))
            out.append((method.upper(), path, op.get("parameters", []), fields))
    return sorted(out)


def test_fuzzed_requests_never_get_a_5xx(tmp_path: Path) -> None:
    photos, result = simple_library(tmp_path)
    paths = [str(p) for p in sorted(photos.rglob("*.jpg"))] + [result.report_path,
                                                                 str(tmp_path / "results")]
    rng = random.Random(20261205)
    failures = []
    with running_server("--index", str(tmp_path / "index"),
                        "--output", str(tmp_path / "results")) as (url, _), \
            httpx.Client(base_url=url, timeout=120) as client:
        ops = operations(client.get("/openapi.json").json())
        assert {(m, p) for m, p, _, _ in ops} >= {
            ("POST", "/v1/query"), ("POST", "/v1/images"), ("GET", "/v1/pairs"),
            ("POST", "/v1/dedupe"), ("GET", "/v1/jobs/{job_id}"), ("POST", "/v1/apply"),
            ("POST", "/v1/undo"), ("GET", "/v1/thumb"), ("GET", "/v1/report"),
            ("GET", "/v1/review")}
        for _ in range(25):
            for method, path, parameters, fields in ops:
                target, params = path, {}
                for p in parameters:
                    value = fuzz_value(rng, paths, depth=2)
                    text = value if isinstance(value, str) else json.dumps(value)[:2000]
                    if p["in"] == "path":
                        target = target.replace("{" + p["name"] + "}",
                                                quote(text[:200], safe="") or "x")
                    elif rng.random() < 0.8:
                        params[p["name"]] = text
                body: object = None
                if fields:
                    shape = rng.random()
                    if shape < 0.8:
                        body = {f: fuzz_value(rng, paths) for f in fields if rng.random() < 0.6}
                        if rng.random() < 0.1:
                            body["unknown"] = 1  # type: ignore[index]
                    else:
                        body = fuzz_value(rng, paths)
                content = None if body is None else json.dumps(body).encode()
                res = client.request(method, target, params=params, content=content,
                                     headers={"Content-Type": "application/json"})
                if res.status_code >= 500:
                    failures.append((method, target, params, content, res.status_code,
                                     res.text))
    assert failures == []
