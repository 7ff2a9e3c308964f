"""watch: keep an index up to date with a folder and report new duplicates as they appear.

Every `interval` seconds the folder is scanned. A file is taken only once it is
complete: its size and mtime were the same at the previous scan and it has
not been modified for `settle` seconds (a camera still writing a clip keeps
changing it). New files are added, a new-only dedupe runs, and one JSON line
per cycle with findings is appended to the log. `stop` (an Event the CLI sets
on SIGINT/SIGTERM) ends the loop after the current batch is committed.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from imgsim_index.ingest.scan import ImageRef, scan_folders
from imgsim_index.pipeline.build import BuildSettings, build_index, resolve_model
from imgsim_index.pipeline.dedupe import DedupeSettings, dedupe
from imgsim_index.progress import NoProgress, Progress


@dataclass(frozen=True)
class WatchSettings:
    interval: float = 10.0
    settle: float | None = None  # seconds without modification; None = interval
    log: str | None = None  # JSON Lines; None = <index>/watch.jsonl
    build: BuildSettings = field(default_factory=BuildSettings)
    dedupe: DedupeSettings = field(default_factory=DedupeSettings)
    max_cycles: int | None = None  # for tests and batch use


class _Stability:
    """Remembers each file's (size, mtime) from the previous scan."""

    def __init__(self, settle: float):
        self.settle = settle
        self.previous: dict[str, tuple[int | None, int | None]] = {}
        self.current: dict[str, tuple[int | None, int | None]] = {}

    def observe(self, refs: list[ImageRef]) -> None:
        self.previous, self.current = self.current, {r.path: (r.size, r.mtime_ns) for r in refs}

    def complete(self, ref: ImageRef) -> bool:
        if ref.error is not None:
            return True  # nothing to wait for: it is recorded as unreadable
        if self.previous.get(ref.path) != (ref.size, ref.mtime_ns):
            return False
        return ref.mtime_ns is not None and time.time() - ref.mtime_ns / 1e9 >= self.settle


def watch_folder(
    folder: str,
    index_dir: str,
    settings: WatchSettings,
    stop: threading.Event,
    on_cycle: Callable[[dict[str, Any]], None] | None = None,
    progress: Progress | None = None,
) -> int:
    """Run until `stop` is set (or max_cycles); returns the number of cycles run."""
    progress = progress or NoProgress()
    log = settings.log or os.path.join(index_dir, "watch.jsonl")
    model = resolve_model(index_dir, settings.build)  # once, not per cycle
    stability = _Stability(settings.interval if settings.settle is None else settings.settle)
    dedupe_settings = replace(settings.dedupe, new_only=True)
    cycles = 0
    while not stop.is_set():
        stability.observe(scan_folders([folder], settings.build.scan))
        built = build_index([folder], index_dir, settings.build, progress, model=model,
                            accept=stability.complete, should_stop=stop.is_set)
        event: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "folder": os.path.abspath(folder),
            "added": built.embedded, "unreadable": built.errors,
        }
        if built.embedded or built.errors:
            result = dedupe(index_dir, None, dedupe_settings, progress)
            rep = result.report
            event.update(new_images=rep.get("new_images"), report=result.report_path,
                         pairs=[{k: p[k] for k in ("image1", "image2", "similarity_score")}
                                for p in rep["similar_pairs"]],
                         errors=rep["errors"])
            _append(log, event)
        if on_cycle:
            on_cycle(event)
        cycles += 1
        if settings.max_cycles is not None and cycles >= settings.max_cycles:
            break
        stop.wait(settings.interval)
    return cycles


def _append(path: str, event: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(event, ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
