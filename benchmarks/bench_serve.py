#!/usr/bin/env python3
"""serve: query latency and adds per second of the running service against a large index,
with the one-shot `imgsim-index query` process as the baseline measured in the same run.

usage: python benchmarks/bench_serve.py [--n 100000] [--queries 60] [--adds 50] [--cli-runs 3]

The index holds N random unit vectors of efficientnet-lite0's dimension (1280),
committed through IndexStore under the model's own identity, as a build would
write them. (`import` would label them weights_id "imported", and an imported
index is deliberately refused for queries by image and for adds: nothing proves
its vectors came from the model. Random vectors stand in for N embedded images
here, so the fixture takes the model's identity, as bench_incremental does.)

The real server runs as `python -m imgsim_index serve` in a subprocess on a free
port, with the model loaded at start. Each query uploads one generated JPEG
(multipart). Adds: one request uploads `--adds` small generated images into the
inbox, and the add job is timed alone and again while a thread posts queries
back to back.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.bench_common import fmt_table, write_random_index  # noqa: E402
from benchmarks.results_file import cpu_features, this_command, update_section  # noqa: E402

MODEL = "efficientnet-lite0"


def fill_index(index: str, n: int, seed: int = 0) -> None:
    """`n` random unit vectors under the served model's identity."""
    from imgsim_index.embed.models import load_model

    write_random_index(index, n, load_model(MODEL).identity(), seed)


def jpeg(seed: int, size: tuple[int, int] = (160, 120)) -> bytes:
    rng = np.random.default_rng(seed)
    im = Image.fromarray(rng.integers(0, 255, (6, 6, 3), dtype=np.uint8)).resize(
        size, Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def server(index: str, inbox: str, output: str) -> Iterator[str]:
    import httpx

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "imgsim_index", "serve", "--index", index,
                             "--inbox", inbox, "--output", output, "--port", str(port),
                             "--device", "cpu", "--load-model"], stderr=subprocess.PIPE,
                            text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(1200):
            if proc.poll() is not None:
                raise SystemExit(f"serve exited: {proc.communicate()[1]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/v1/health", timeout=60).status_code == 200:
                    break
            time.sleep(0.1)
        else:
            raise SystemExit("serve did not answer within 120 s")
        yield url
    finally:
        proc.terminate()
        proc.communicate(timeout=120)


def post_query(client: object, seed: int) -> float:
    t = time.perf_counter()
    r = client.post("/v1/query?k=10", files={"image": (f"q{seed}.jpg", jpeg(seed),  # type: ignore[attr-defined]
                                                       "image/jpeg")})
    took = time.perf_counter() - t
    if r.status_code != 200 or r.json()["results"][0]["error"]:
        raise SystemExit(f"query failed: {r.text}")
    return took


def add_job(client: object, first_seed: int, count: int) -> tuple[float, int]:
    """Upload `count` generated images as one add; seconds until the job is done."""
    files = [("image", (f"a{s}.jpg", jpeg(s, (96, 72)), "image/jpeg"))
             for s in range(first_seed, first_seed + count)]
    t = time.perf_counter()
    r = client.post("/v1/images", files=files)  # type: ignore[attr-defined]
    if r.status_code != 202:
        raise SystemExit(f"add failed: {r.text}")
    job = r.json()["job"]
    while True:
        state = client.get(f"/v1/jobs/{job}").json()  # type: ignore[attr-defined]
        if state["state"] not in ("queued", "running"):
            break
        time.sleep(0.05)
    took = time.perf_counter() - t
    if state["state"] != "done":
        raise SystemExit(f"add job ended {state}")
    return took, int(state["result"]["embedded"])


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.array(xs), q))


def cli_query_seconds(index: str, image: str, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "imgsim_index", "query", image, "--index", index,
                        "--device", "cpu"], check=True, capture_output=True)
        times.append(time.perf_counter() - t)
    return times


def main() -> None:
    import httpx

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=60)
    ap.add_argument("--adds", type=int, default=50)
    ap.add_argument("--cli-runs", type=int, default=3)
    ap.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        index, inbox = os.path.join(tmp, "index"), os.path.join(tmp, "inbox")
        t = time.perf_counter()
        fill_index(index, args.n)
        print(f"index of {args.n} x 1280 written in {time.perf_counter() - t:.1f} s", flush=True)
        image = os.path.join(tmp, "query.jpg")
        Path(image).write_bytes(jpeg(10**6))
        cli = cli_query_seconds(index, image, args.cli_runs)
        print(f"CLI query: {[round(x, 2) for x in cli]} s", flush=True)
        with server(index, inbox, os.path.join(tmp, "results")) as url, \
                httpx.Client(base_url=url, timeout=300) as client:
            for s in range(5):  # warm: the matrix, the model's first batches
                post_query(client, s)
            lat = [post_query(client, 100 + s) for s in range(args.queries)]
            alone, embedded = add_job(client, 10_000, args.adds)
            post_query(client, 7)  # the first query after a commit reloads the vectors
            busy: list[float] = []
            stop = threading.Event()

            def querying() -> None:
                s = 20_000
                while not stop.is_set():
                    busy.append(post_query(client, s))
                    s += 1

            th = threading.Thread(target=querying)
            th.start()
            try:
                with_q, embedded_q = add_job(client, 30_000, args.adds)
            finally:
                stop.set()
                th.join()
    cli_s = statistics.median(cli)
    p50, p99 = pct(lat, 50), pct(lat, 99)
    rows = [
        ["`imgsim-index query` process (baseline)", f"{cli_s * 1000:.0f}", "", "1.0",
         f"median of {len(cli)} runs"],
        ["service, one upload per request", f"{p50 * 1000:.1f}", f"{p99 * 1000:.1f}",
         f"{cli_s / p50:.0f}x faster", f"{len(lat)} requests, warm"],
        ["service, while an add runs", f"{pct(busy, 50) * 1000:.1f}",
         f"{pct(busy, 99) * 1000:.1f}", f"{cli_s / pct(busy, 50):.0f}x faster",
         f"{len(busy)} requests (includes the reload after the commit)"],
    ]
    adds = [
        ["add alone", str(embedded), f"{alone:.2f}", f"{embedded / alone:.1f}", "1.0"],
        ["add with queries posted back to back", str(embedded_q), f"{with_q:.2f}",
         f"{embedded_q / with_q:.1f}", f"{(embedded_q / with_q) / (embedded / alone):.2f}"],
    ]
    body = (f"Index: {args.n} random unit vectors x 1280 ({MODEL}'s identity), "
            f"k=10, CPU only; CPU: {cpu_features()}.\n\n"
            + fmt_table(["query", "p50 ms", "p99 ms", "vs CLI process", "notes"], rows)
            + "\n\n"
            + fmt_table(["adds (one request of small uploaded JPEGs)", "images", "seconds",
                         "images/s", "vs alone"], adds) + "\n")
    print(body)
    if not args.no_write:
        update_section("bench-serve", "serve: query latency and adds at 100k vectors",
                       this_command(), body)


if __name__ == "__main__":
    main()
