"""serve: the real service (uvicorn in a subprocess on a free port) over real HTTP."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from imgsim_index.embed.embedder import EmbedSettings
from imgsim_index.index.store import IndexStore
from imgsim_index.pipeline.build import BuildSettings, build_index
from imgsim_index.pipeline.dedupe import DedupeSettings, dedupe
from imgsim_index.pipeline.query import query_index
from imgsim_index.search import PairSettings
from imgsim_index.verify import VerifySettings

LITE0 = BuildSettings(model="efficientnet-lite0", embed=EmbedSettings(workers=0, device="cpu"))
THRESHOLD = 0.97


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def running_server(*args: str, host: str = "127.0.0.1", token: str | None = None
                   ) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`serve ARGS` in a subprocess; yields (base URL, process) once /v1/health answers."""
    port = free_port()
    cmd = [sys.executable, "-c", "from imgsim_index.cli import main; main()", "serve",
           *args, "--host", host, "--port", str(port), "--device", "cpu"]
    env = {**os.environ, **({"IMGSIM_TOKEN": token} if token else {})}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        for _ in range(600):
            if proc.poll() is not None:
                raise AssertionError(f"serve exited: {proc.communicate()[1]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/v1/health", headers=headers, timeout=5).status_code == 200:
                    break
            time.sleep(0.1)
        else:
            raise AssertionError("serve did not answer within 60 s")
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()


def scene(path: Path, seed: int, edit: int = 0) -> None:
    """A smooth random picture; `edit` > 0 gives a lightly changed copy of the same scene."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    im = Image.fromarray(rng.integers(0, 255, (6, 6, 3), dtype=np.uint8)).resize(
        (96, 72), Image.Resampling.BICUBIC)
    if edit:
        im = im.rotate(edit, resample=Image.Resampling.BILINEAR).resize((90, 68))
    im.save(path, "JPEG", quality=90)


def wait_job(client: httpx.Client, job: str) -> dict[str, Any]:
    for _ in range(1200):
        state = client.get(f"/v1/jobs/{job}").json()
        if state["state"] not in ("queued", "running"):
            return dict(state)
        time.sleep(0.1)
    raise AssertionError(f"job {job} did not finish")


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("serve")
    photos = root / "photos"
    for k in range(4):
        scene(photos / f"s{k}.jpg", seed=k)
    scene(photos / "copies" / "s0-copy.jpg", seed=0, edit=2)
    scene(photos / "copies" / "s1-copy.jpg", seed=1, edit=3)
    build_index([str(photos)], str(root / "index"), LITE0)
    (root / "inbox").mkdir()
    os.symlink("/etc/hostname", photos / "escape.jpg")
    return root


@pytest.fixture(scope="module")
def server(library: Path) -> Iterator[str]:
    with running_server("--index", str(library / "index"), "--output", str(library / "results"),
                        "--inbox", str(library / "inbox"), "--max-upload-mb", "0.05") as (url, _):
        yield url


def test_query_equals_library_query(library: Path, server: str) -> None:
    path = str(library / "photos" / "s0.jpg")
    raw = {"threshold": -1.0, "include_self": True}  # every neighbour, the file itself too
    want = query_index(str(library / "index"), [path], top_k=3, settings=LITE0,
                       **raw)[0].matches  # type: ignore[arg-type]
    assert want[0] == (path, 1.0) and len(want) == 3
    with httpx.Client(base_url=server, timeout=120) as client:
        by_path = client.post("/v1/query?k=3&threshold=-1&include_self=true",
                              json={"path": path})
        assert by_path.status_code == 200, by_path.text
        got = [(m["path"], m["similarity_score"])
               for m in by_path.json()["results"][0]["matches"]]
        assert got == want
        upload = client.post("/v1/query?k=3&threshold=-1",
                             files={"image": ("mine.jpg", (library / "photos" / "s0.jpg")
                                              .read_bytes(), "image/jpeg")})
        assert upload.status_code == 200, upload.text
        result = upload.json()["results"][0]
        assert result["query"] == "mine.jpg" and result["error"] is None
        assert [(m["path"], m["similarity_score"]) for m in result["matches"]] == want
        cut = client.post(f"/v1/query?k=3&include_self=true&threshold={want[1][1]}",
                          json={"path": path})
        assert [(m["path"], m["similarity_score"])
                for m in cut.json()["results"][0]["matches"]] == want[:2]
        # verdicts, as the library gives them: the query image itself is an exact match
        lib = query_index(str(library / "index"), [path], top_k=3, settings=LITE0,
                          verify=VerifySettings(), **raw)[0]  # type: ignore[arg-type]
        served = by_path.json()["results"][0]["matches"]
        assert [(m["match"], m["evidence"]) for m in served] == [(v.match, v.evidence)
                                                                for v in lib.verdicts]
        assert served[0]["match"] == "exact"
        plain = client.post("/v1/query?k=3&verify=false", json={"path": path}).json()
        assert {(m["match"], m["evidence"]) for m in plain["results"][0]["matches"]} == {
            ("copy", "not verified (cosine only)")}


def test_cli_http_and_python_answer_a_query_alike(library: Path, server: str) -> None:
    """One vocabulary, one default threshold, one self rule: the CLI's query --json,
    /v1/query and Index.query give the same fields and the same matches."""
    import json

    from conftest import cli_ok

    from imgsim_index import Index

    path = str(library / "photos" / "s0.jpg")
    index = str(library / "index")
    cli = json.loads(cli_ok("query", path, "--index", index, "--json", "--device", "cpu"))
    with httpx.Client(base_url=server, timeout=120) as client:
        http = client.post("/v1/query", json={"path": path}).json()["results"]
    python = [r.to_dict() for r in Index(index, LITE0).query([path])]
    assert cli == http == python
    (result,) = cli
    assert set(result) == {"query", "error", "threshold", "threshold_source", "matches"}
    assert (result["threshold"], result["threshold_source"]) == (0.75, "model default")
    matches = result["matches"]
    assert matches and all(set(m) == {"path", "similarity_score", "match", "evidence"}
                           for m in matches)
    assert path not in [m["path"] for m in matches]  # the query file itself is left out
    assert all(m["similarity_score"] >= 0.75 for m in matches)
    by_name = {Path(m["path"]).name: m for m in matches}
    assert by_name["s0-copy.jpg"]["match"] == "copy", by_name
    # neighbours under the threshold are listed only when asked, and marked
    below = json.loads(cli_ok("query", path, "--index", index, "--json", "--top-k", "5",
                              "--include-below", "--threshold", "0.97", "--verify", "off"))
    rows = below[0]["matches"]
    assert len(rows) == 5 and any(m["similarity_score"] < 0.97 for m in rows)
    assert {m["match"] for m in rows if m["similarity_score"] < 0.97} == {"below_threshold"}
    assert {m["match"] for m in rows if m["similarity_score"] >= 0.97} == {"copy"}


def _comparable(report: dict[str, Any]) -> dict[str, Any]:
    """The report without what differs from run to run (times)."""
    out = {k: v for k, v in report.items() if k not in ("timestamp", "timings_seconds")}
    if isinstance(out.get("verification"), dict):
        out["verification"] = {k: v for k, v in out["verification"].items() if k != "seconds"}
    return out


def test_dedupe_job_then_adds_then_pairs_since(library: Path, server: str) -> None:
    import json

    index = str(library / "index")
    with httpx.Client(base_url=server, timeout=120) as client:
        seq0 = client.get("/v1/health").json()["seq"]
        started = client.post("/v1/dedupe", json={"threshold": THRESHOLD})
        assert started.status_code == 202, started.text
        job = wait_job(client, started.json()["job"])
        assert job["state"] == "done", job
        served = json.loads(Path(job["result"]["report_path"]).read_text())
        mine = dedupe(index, None, DedupeSettings(pairs=PairSettings(threshold=THRESHOLD),
                                                 output=str(library / "lib-results")))
        assert _comparable(served) == _comparable(mine.report)
        assert served["number_of_duplicate_groups"] == 2

        new = library / "photos" / "new"
        scene(new / "s2-copy.jpg", seed=2, edit=2)
        scene(new / "s9.jpg", seed=9)
        added = client.post("/v1/images", json={"paths": [str(new / "s2-copy.jpg"),
                                                          str(new / "s9.jpg")]})
        assert added.status_code == 202, added.text
        done = wait_job(client, added.json()["job"])
        assert done["state"] == "done" and done["result"]["embedded"] == 2, done
        pairs = client.get(f"/v1/pairs?since={seq0}&threshold={THRESHOLD}&page_size=1").json()
        assert pairs["seq"] == done["result"]["seq"] > seq0
        assert pairs["total"] == 1 and len(pairs["pairs"]) == 1
        default = client.get(f"/v1/pairs?since={seq0}").json()  # the model's, as dedupe's
        assert (default["threshold"], default["threshold_source"]) == (0.75, "model default")
        assert all(p["match"] in ("exact", "copy", "other_shot") for p in default["pairs"])
        again = client.get(f"/v1/pairs?since={pairs['seq']}&threshold={THRESHOLD}").json()
        assert again["total"] == 0 and again["pairs"] == []
        want = dedupe(index, None, DedupeSettings(pairs=PairSettings(threshold=THRESHOLD),
                                                 new_only=True,
                                                 output=str(library / "lib-results")))
        keys = ("image1", "image2", "similarity_score", "match", "evidence")
        assert [tuple(p[k] for k in keys) for p in pairs["pairs"]] == [
            tuple(p[k] for k in keys) for p in want.report["similar_pairs"]]
        assert {pairs["pairs"][0]["image1"], pairs["pairs"][0]["image2"]} == {
            str(library / "photos" / "s2.jpg"), str(new / "s2-copy.jpg")}
        metrics = client.get("/metrics").text
        assert "imgsim_images_indexed 8\n" in metrics
        assert "imgsim_embedded_images_total 2\n" in metrics
        assert 'imgsim_query_seconds_bucket{le="+Inf"}' in metrics


def test_upload_is_added_from_the_inbox(library: Path, server: str) -> None:
    with httpx.Client(base_url=server, timeout=120) as client:
        scene(library / "up.jpg", seed=3, edit=2)
        res = client.post("/v1/images",
                          files={"image": ("../../evil name.jpg", (library / "up.jpg").read_bytes(),
                                           "image/jpeg")})
        assert res.status_code == 202, res.text
        (saved,) = res.json()["paths"]
        assert os.path.dirname(saved) == str(library / "inbox")
        assert saved.endswith("-evil_name.jpg")
        assert wait_job(client, res.json()["job"])["result"]["embedded"] == 1
        match = client.post("/v1/query?k=1&include_self=true",
                            json={"path": saved}).json()["results"][0]
        assert [(m["path"], m["similarity_score"], m["match"]) for m in match["matches"]] == [
            (saved, 1.0, "exact")]


@pytest.mark.parametrize("body, message", [
    ({"path": "/etc/passwd"}, "/etc/passwd is not inside the index's folders"),
    ({"path": "PHOTOS/../../../etc/passwd"}, "is not inside the index's folders"),
    ({"path": "PHOTOS/escape.jpg"}, "escape.jpg is not inside the index's folders"),
    ({"paths": []}, '"paths" must be a non-empty list of paths'),
    ({"nothing": 1}, 'send JSON {"path": ...}'),
])
def test_bad_paths_are_refused(library: Path, server: str, body: dict[str, Any],
                               message: str) -> None:
    body = {k: v.replace("PHOTOS", str(library / "photos")) if isinstance(v, str) else v
            for k, v in body.items()}
    for route in ("/v1/query", "/v1/images"):
        res = httpx.post(server + route, json=body, timeout=30)
        assert res.status_code == 400
        assert message in res.json()["error"]
    thumb = httpx.get(server + "/v1/thumb", params={"path": "/etc/passwd"}, timeout=30)
    assert thumb.status_code == 400 and "not inside" in thumb.json()["error"]


def test_refusals_are_json(library: Path, server: str) -> None:
    big = os.urandom(80 * 1024)  # caught while saving the file
    res = httpx.post(server + "/v1/query", files={"image": ("big.jpg", big, "image/jpeg")},
                     timeout=30)
    assert res.status_code == 413
    assert res.json() == {"error": "big.jpg is over the upload limit of 52428 bytes "
                                   "(--max-upload-mb)"}
    huge = os.urandom(200 * 1024)  # caught by its Content-Length, before the form is read
    res = httpx.post(server + "/v1/images", files={"image": ("huge.jpg", huge, "image/jpeg")},
                     timeout=30)
    assert res.status_code == 413
    size = int(res.request.headers["content-length"])
    assert res.json() == {"error": f"upload of {size} bytes is over the limit of 52428 bytes "
                                   "(--max-upload-mb)"}
    bad = httpx.post(server + "/v1/query", files={"image": ("x.jpg", b"not a jpeg", "image/jpeg")},
                     timeout=30)
    assert bad.status_code == 200 and bad.json()["results"][0]["error"]
    cross = httpx.post(server + "/v1/dedupe", json={}, headers={"Origin": "http://evil.example"},
                       timeout=30)
    assert cross.status_code == 403
    assert cross.json() == {"error": "cross-origin request from http://evil.example refused"}
    assert httpx.get(server + "/v1/jobs/nope", timeout=30).json() == {"error": "no job nope"}
    wrong = httpx.get(server + "/v1/pairs?since=-1", timeout=30)
    assert wrong.status_code == 400 and wrong.json()["error"].startswith("query.since:")
    assert httpx.delete(server + "/v1/jobs/x", timeout=30).status_code == 405
    assert httpx.get(server + "/docs", timeout=30).status_code == 200
    assert "/v1/pairs" in httpx.get(server + "/openapi.json", timeout=30).json()["paths"]
    assert "access-control-allow-origin" not in cross.headers


def serve_refused(*args: str) -> subprocess.CompletedProcess[str]:
    """`serve ARGS` without a token, expected to stop before it serves."""
    run = subprocess.run([sys.executable, "-c",
                          "from imgsim_index.cli import main; main()", "serve", *args],
                         capture_output=True, text=True, timeout=60,
                         env={k: v for k, v in os.environ.items() if k != "IMGSIM_TOKEN"})
    assert run.returncode == 1, run.stderr
    return run


def test_other_bind_needs_a_token(library: Path, tmp_path: Path) -> None:
    run = serve_refused("--index", str(library / "index"), "--host", "0.0.0.0")
    assert "binding 0.0.0.0 makes the index reachable from other machines; give a token" \
        in run.stderr


def test_token_is_required_on_every_request(library: Path, tmp_path: Path) -> None:
    index = tmp_path / "index"
    shutil.copytree(library / "index", index)  # the module's server holds the other's lock
    with running_server("--index", str(index), host="0.0.0.0", token="s3cret") as (url, _):
        res = httpx.get(url + "/v1/health", timeout=30)
        assert res.status_code == 401
        assert res.json() == {"error": "missing or wrong token: send Authorization: Bearer <token>"}
        assert httpx.get(url + "/v1/health", headers={"Authorization": "Bearer nope"},
                         timeout=30).status_code == 401
        ok = httpx.get(url + "/v1/health", headers={"Authorization": "Bearer s3cret"}, timeout=30)
        assert ok.status_code == 200 and ok.json()["images"] >= 6


def test_sigterm_during_an_add_loses_nothing(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    scene(photos / "first.jpg", seed=100)
    index = str(tmp_path / "index")
    build_index([str(photos)], index, LITE0)
    for k in range(60):
        scene(photos / "batch" / f"b{k:02d}.jpg", seed=200 + k)
    with running_server("--index", index, "--output", str(tmp_path / "results")) as (url, proc):
        with httpx.Client(base_url=url, timeout=60) as client:
            first = client.post("/v1/images", json={"paths": [str(photos / "batch")]}).json()
            queued = client.post("/v1/images", json={"paths": [str(photos)]}).json()
            for _ in range(600):
                if client.get(f"/v1/jobs/{first['job']}").json()["progress"]["done"] > 0:
                    break
                time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(120) == 0
        assert "everything embedded is committed" in proc.stderr.read()  # type: ignore[union-attr]
        assert queued["job"] != first["job"]
    with IndexStore.open_reader(index) as store:
        committed = {r.path for r in store.load().rows}
    assert str(photos / "first.jpg") in committed and len(committed) > 1
    rest = build_index([str(photos)], index, LITE0)  # the lock was released
    assert rest.embedded == 61 - len(committed) and rest.total_embedded == 61
