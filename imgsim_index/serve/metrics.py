"""metrics: the service's counters in the Prometheus text format (version 0.0.4)."""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Histogram:
    def __init__(self, buckets: tuple[float, ...] = LATENCY_BUCKETS):
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)  # the last one is +Inf
        self.total = 0.0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        with self._lock:
            self.counts[bisect.bisect_left(self.buckets, value)] += 1
            self.total += value

    def lines(self, name: str) -> list[str]:
        out, running = [], 0
        for bound, n in zip((*map(repr, self.buckets), "+Inf"), self.counts, strict=True):
            running += n
            out.append(f'{name}_bucket{{le="{bound}"}} {running}')
        out += [f"{name}_sum {self.total!r}", f"{name}_count {running}"]
        return out


class Metrics:
    def __init__(self) -> None:
        self.images_indexed = 0
        self.embedded_images = 0
        self.embed_seconds = 0.0
        self.query_seconds = Histogram()
        self.pair_searches_cancelled = 0

    def render(self, images_indexed: int, queue_length: Callable[[], int]) -> str:
        self.images_indexed = images_indexed
        lines = [
            "# HELP imgsim_images_indexed Images (and video frames) with a vector in the index.",
            "# TYPE imgsim_images_indexed gauge",
            f"imgsim_images_indexed {images_indexed}",
            "# HELP imgsim_queue_length Jobs waiting for the writer or the dedupe thread.",
            "# TYPE imgsim_queue_length gauge",
            f"imgsim_queue_length {queue_length()}",
            "# HELP imgsim_query_seconds Time to answer POST /v1/query.",
            "# TYPE imgsim_query_seconds histogram",
            *self.query_seconds.lines("imgsim_query_seconds"),
            "# HELP imgsim_embedded_images_total Images embedded by add jobs.",
            "# TYPE imgsim_embedded_images_total counter",
            f"imgsim_embedded_images_total {self.embedded_images}",
            "# HELP imgsim_embed_seconds_total Time add jobs spent (embedded/seconds = "
            "throughput).",
            "# TYPE imgsim_embed_seconds_total counter",
            f"imgsim_embed_seconds_total {self.embed_seconds!r}",
            "# HELP imgsim_pair_searches_cancelled_total Pair listings stopped because "
            "their client left.",
            "# TYPE imgsim_pair_searches_cancelled_total counter",
            f"imgsim_pair_searches_cancelled_total {self.pair_searches_cancelled}",
        ]
        return "\n".join(lines) + "\n"
