"""jobs: long work (adds, dedupes) run in the background, polled by id.

Adds run one at a time on the single writer thread (it holds the index's writer
lock for the service's lifetime); dedupes only read the index, so they run on
their own thread and never wait behind an add.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from imgsim_index.errors import ImgsimError

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"


@dataclass
class Job:
    id: str
    kind: str  # add | dedupe
    state: str = QUEUED
    created_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    done: int = 0  # units of progress (images embedded, ...)
    total: int | None = None
    stage: str = ""
    result: dict[str, Any] | None = None
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "state": self.state,
                "created_at": self.created_at, "finished_at": self.finished_at,
                "progress": {"stage": self.stage, "done": self.done, "total": self.total},
                "result": self.result, "error": self.error}


class JobProgress:
    """progress.Progress that records into a Job, for GET /v1/jobs/{id}."""

    def __init__(self, job: Job, on_update: Callable[[int], None] | None = None):
        self.job, self.on_update = job, on_update

    def start(self, description: str, total: int | None) -> None:
        self.job.stage, self.job.total, self.job.done = description, total, 0

    def update(self, n: int) -> None:
        self.job.done += n
        if self.on_update:
            self.on_update(n)

    def note(self, message: str) -> None:
        self.job.stage = message

    def finish(self) -> None:
        pass


Work = Callable[[Job], dict[str, Any]]


class JobRunner:
    """One thread taking (job, work) pairs in order. `start_with` runs first on the thread
    (e.g. opening the writer) and `end_with` last, whatever happened."""

    def __init__(self, name: str, start_with: Callable[[], None] | None = None,
                 end_with: Callable[[], None] | None = None):
        self._queue: queue.Queue[tuple[Job, Work] | None] = queue.Queue()
        self._start_with, self._end_with = start_with, end_with
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        """Start the thread; raise what `start_with` raised (e.g. the index is locked)."""
        self.thread.start()
        self._ready.wait()
        if self._startup_error is not None:
            self.thread.join()
            raise self._startup_error

    def submit(self, job: Job, work: Work) -> None:
        self._queue.put((job, work))

    def queued(self) -> int:
        return self._queue.qsize()

    def stop(self) -> None:
        """Finish the running job early (it commits what it has), cancel the queued ones."""
        self.stopping.set()
        self._queue.put(None)
        self.thread.join()

    def _loop(self) -> None:
        try:
            if self._start_with:
                self._start_with()
        except BaseException as exc:  # reported by start()
            self._startup_error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    break
                job, work = item
                if self.stopping.is_set():
                    job.state, job.error = CANCELLED, "the service stopped before this job ran"
                    job.finished_at = time.time()
                    continue
                self._run(job, work)
        finally:
            if self._end_with:
                self._end_with()

    @staticmethod
    def _run(job: Job, work: Work) -> None:
        job.state = RUNNING
        try:
            job.result = work(job)
            job.state = DONE
        except ImgsimError as exc:
            job.state, job.error = FAILED, str(exc)
        except Exception as exc:  # a job must never take the service down
            job.state, job.error = FAILED, f"{type(exc).__name__}: {exc}"
        job.finished_at = time.time()


class JobBoard:
    """Every job by id (kept for the service's lifetime; jobs are small)."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def new(self, kind: str) -> Job:
        with self._lock:
            job = Job(id=f"{kind}-{next(self._ids)}", kind=kind)
            self._jobs[job.id] = job
        return job

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)
