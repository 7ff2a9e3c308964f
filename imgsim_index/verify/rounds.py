"""The walk over candidate pairs: which pairs are compared, in which rounds, on which workers.

Pairs are walked by descending score with a union-find of the images joined through
verified copies (Sets): a pair whose two ends are already joined is a copy by
transitivity and is not compared. Comparisons run in rounds: each round compares, in
parallel, the pairs that would join two not yet (tentatively) joined sets; a pair whose ends
a pending comparison may join waits for the next round. Between two sets, once `apart_votes`
of their compared pairs were judged other shots on aligned pixels, or `unaligned_votes`
were other shots at all (Apart), their other pairs are not compared.

Workers: images are decoded (or taken from the build's thumbnails: ingest/kept.py) and
described in threads of this process. Pairs are compared, for rounds of POOL_MIN_TASKS
comparisons or more:
- with settings.fork (the CLI, which runs nothing else meanwhile) where the platform
  forks (Linux), in forks of this process, one per core by default, made when the first
  such round's comparisons start: they inherit the images described so far (and are sent
  those described later), so nothing is pickled but the verdicts. On 2 cores, against
  threads: the evaluation set's verification 2.0-2.6 s -> 1.65-1.9 s, 300 quick
  compares 4.7 s -> 2.3-2.7 s, the hard edits as one folder 16-20 s -> 11.5-12.6 s;
- else with workers >= 2 (`--verify-workers N`), in a pool started while the images are
  described, each task sending both images (0.7-1.2 MB pickled; a worker keeps the
  images it was sent last, with what it derived from them): that pays where comparisons
  are slow and loses where they are quick;
- else in threads of this process (no start-up, keypoints shared, but their NumPy calls
  on small arrays hold the GIL: two threads do the work of about 1.3).
Worker processes that finish no comparison in settings.stall_seconds are ended (a hung
one would hang the command) and the round's unfinished comparisons go to new workers,
started apart (a fork may inherit a lock a thread held); see _Workers._in_pool.
BLAS and OpenCV run in one thread each meanwhile (one_blas_thread); a fork inherits that.
OpenCV's own thread pool is not safe across a fork: a worker forked while the pool's
threads were busy (describing a part's images in this process's threads) hung for good
in its first SIFT (once in a verified dedupe of 2,000 look-alikes that forked workers for
about 200 parts); with OpenCV at one thread its pool is never used here.

Memory: an image's description is dropped once every pair that needs it is decided, and
the walk holds at most settings.memory_bytes of them (defaults.VERIFY_IMAGES_BYTES): a
round whose pairs need more images than fit goes in parts (the same pairs compared, the
same verdicts while the files stay as they are), and an image dropped for room (the least
recently used first) is kept on disk while a pair needs it, where settings.spill_dir
names a folder (spill.py; dedupe: the index's), and read back when a later round needs
it; else (no folder, or the disk full) it is described again: a file whose pixels changed
since its first reading is then not verified (CHANGED_ERROR). Forks are made
again for a part whose images they did not inherit (REFORK_MIN_IMAGES), so the images are
not sent to them whole.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from imgsim_index.defaults import VERIFY_IMAGES_BYTES, VERIFY_STALL_SECONDS, verify_threads
from imgsim_index.locks import forked_worker_start
from imgsim_index.progress import Progress
from imgsim_index.verify.sets import Apart, Sets
from imgsim_index.verify.spill import Spill
from imgsim_index.verify.verdict import NOT_VERIFIED, Verdict

if TYPE_CHECKING:
    from imgsim_index.search import Pairs
    from imgsim_index.verify.inputs import ImageSource, Verdicts, VerifySettings

SKIPPED_EVIDENCE = "not compared: already grouped through verified copies"
APART_EVIDENCE = "not compared: their groups are other shots"
UNALIGNED_EVIDENCE = "not compared: their groups do not align"
# a pair whose comparison was under way each time the worker processes stalled
STALLED_EVIDENCE = ("not verified: its comparison was under way when the verification "
                    "workers finished nothing in {:g} s, {} times")
GIVEN_UP_EVIDENCE = ("not verified: the verification workers finished nothing in {:g} s, "
                     "{} times in a row")
STALL_TRIES = 2  # stalls a comparison may be under way at before it is given up
STALLS_IN_A_ROW = 3  # stalls with nothing finished between them: the round's rest is given up
POOL_START_SECONDS = 60.0  # allowed on top of stall_seconds while workers started apart start
# a pair with an image that has met VerifySettings.other_shots_per_image other shots
CAPPED_EVIDENCE = "not compared: the limit of other shots per image"

# A process pool pays for starting workers (forkserver: forks of a server that imported
# verification; spawn: an interpreter each) and for pickling the images of each pair; a
# first round of fewer comparisons than this runs in threads of this process. On 2 cores
# the evaluation set (84 compares) took the same time either way, the hard edits as one
# folder (231 slow ones) 30% less in processes, 4,005 quick pairs 55% more.
POOL_MIN_TASKS = 16
ERROR_CHARS = 200  # an error kept in the evidence is cut to this many characters
# what one described image may hold, per pixel of a square thumbnail: grey, clip and bright
# masks (1 byte each), chroma at half size (0.5), the half and quarter sizes, colour
# classes and keypoints that comparisons derive (up to 3; 6.2 measured on a square
# picture); the parts of a round are sized by it
IMAGE_BYTES_PER_PX = 6.5
# the error of an image whose file changed between two readings of one walk
CHANGED_ERROR = "the file changed while it was being verified"
# forked workers are made again for a part of a round that needs this many images they did
# not inherit (else those are sent whole with each task, 0.7-1.2 MB pickled)
REFORK_MIN_IMAGES = 16


_blas_lock = threading.Lock()
_blas_users = 0  # verify_pairs calls under one_blas_thread now (threads of a server)
_blas_limit: Any = None  # the limit they share, restored by the last to leave
_cv_threads = 0  # OpenCV's thread count before, restored by the last to leave


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """BLAS (every OpenBLAS loaded: NumPy's, OpenCV's, FAISS's) in one thread while pairs
    are verified. Its products here are small (a gain field's normal equations, a colour
    map's least squares) and its threads, which spin while they wait, took the cores from
    the verification threads: on 2 cores, 60 compares of the hard edits took 5.3 s in two
    threads, 3.7 s with one BLAS thread (benchmarks/RESULTS.md). The setting is the
    process's: overlapping calls (a server verifying two requests) share one limit, set by
    the first and restored by the last, so none leaves BLAS at one thread for good; other
    BLAS work in the process meanwhile (a search in another thread) runs in one thread."""
    global _blas_users, _blas_limit, _cv_threads
    with _blas_lock:
        if _blas_users == 0:
            _blas_limit = _limit_blas()
            _cv_threads = _one_cv_thread()
        _blas_users += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0:
                _blas_limit.restore_original_limits()
                _blas_limit = None
                import cv2

                cv2.setNumThreads(_cv_threads)


def _limit_blas() -> Any:
    """Every BLAS loaded in one thread; the limit (threadpoolctl) restores them."""
    import cv2  # noqa: F401  (its OpenBLAS is loaded with it: load it first, to limit it)
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def _one_cv_thread() -> int:
    """OpenCV in one thread (never in a fork: it hangs there); the count it had."""
    import cv2

    before = cv2.getNumThreads()
    cv2.setNumThreads(1)
    return int(before)


def _worker_start() -> None:
    """A worker process's BLAS and OpenCV in one thread for its life (one_blas_thread)."""
    _limit_blas()
    _one_cv_thread()


def _started() -> None:
    """A task that only starts a worker process."""


def _first_line(e: Exception) -> str:
    return (str(e).splitlines() or [type(e).__name__])[0][:ERROR_CHARS]


def _describe(task: tuple[int, str, str | None, int, Any]) -> tuple[int, Any, str]:
    """(row, Features | None, error) for one image; never raises. Keypoints come later,
    when a comparison needs them."""
    k, path, digest, max_side, match_settings = task
    from imgsim_index.verify.features import describe
    from imgsim_index.verify.inputs import decode_for_verify

    try:
        rgb, shape = decode_for_verify(path, max_side, digest)
        return k, describe(rgb, digest, match_settings, sift=False, shape=shape), ""
    except Exception as e:  # noqa: BLE001 - any decoder failure is this image's verdict
        return k, None, _first_line(e)


@dataclass
class _Compared:
    """A comparison's verdict, and the keypoints it computed (kept for later pairs)."""

    pair: int
    verdict: Verdict
    keypoints_a: dict[str, Any]
    keypoints_b: dict[str, Any]
    ran: bool = True  # False: given up (its workers stalled), not compared


def _compare(task: tuple[int, Any, Any, Any]) -> _Compared:
    """The verdict on one pair of described images; never raises."""
    p, a, b, match_settings = task
    from imgsim_index.verify import matching

    had_a, had_b = set(a.sift_cache), set(b.sift_cache)
    if a.shape == b.shape and a.pixel_hash == b.pixel_hash:
        v = Verdict("exact", "same decoded pixels")
    else:
        try:  # a flat image is a copy only of one of its colour (matching.flat_verdict)
            v = matching.compare(a, b, match_settings)
        except Exception as e:  # noqa: BLE001 - one pair's failure never stops the run
            # not verified is not a copy: it stays out of the groups, listed for review
            v = Verdict(NOT_VERIFIED, f"comparison failed: {type(e).__name__}: {e}"[:ERROR_CHARS])
    return _Compared(p, v, {k: x for k, x in a.sift_cache.items() if k not in had_a},
                     {k: x for k, x in b.sift_cache.items() if k not in had_b})


# a worker process keeps the images of its recent tasks (with what it derived from them:
# half sizes, colour classes, keypoints), so pairs sharing an image do not derive it again
WORKER_IMAGES = 64
_worker_images: dict[tuple[str, str | None, tuple[int, int]], Any] = {}


# in a forked worker: the images its parent had described when it forked, by row (empty
# in a worker started apart, which is sent every image)
_inherited: dict[int, Any] = {}


def _in_worker(task: tuple[int, Any, Any, Any]) -> _Compared:
    """_compare in a worker process: an image given by its row is the one a forked worker
    inherited; one sent whole is replaced by the same image sent before (and kept: _seen)."""
    p, a, b, match_settings = task
    return _compare((p, _inherited[a] if isinstance(a, int) else _seen(a),
                     _inherited[b] if isinstance(b, int) else _seen(b), match_settings))


def can_fork() -> bool:
    """Forking a process that has loaded OpenCV, BLAS and an inference runtime is safe on
    Linux (with nothing else running in it meanwhile); macOS forbids it to several system
    libraries, Windows cannot fork."""
    import multiprocessing

    return sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()


def _seen(f: Any) -> Any:
    key = (f.pixel_hash, f.digest, f.shape)
    kept = _worker_images.pop(key, f)
    if kept is not f:
        kept.sift_cache.update(f.sift_cache)
    _worker_images[key] = kept  # the most recent last
    while len(_worker_images) > WORKER_IMAGES:
        del _worker_images[next(iter(_worker_images))]
    return kept


def _fork_context() -> Any:
    import multiprocessing

    return multiprocessing.get_context("fork")


def _pool_context() -> Any:
    """Workers that start from a fresh interpreter: forkserver where the platform has it
    (its server imports verification once; each worker is a fork of it), else spawn."""
    import multiprocessing

    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["imgsim_index.verify.rounds", "imgsim_index.verify.matching"])
        return ctx
    return multiprocessing.get_context("spawn")


class _Workers:
    """Runs a round's tasks: describing images in threads of this process (or in this
    thread), comparing pairs there too or in a process pool for a round of POOL_MIN_TASKS
    or more: forks of this process that inherit the described images (settings.fork, where
    the platform forks), else workers started apart that are sent them (workers >= 2; see
    the module doc)."""

    def __init__(self, workers: int | None, fork: bool, stall_seconds: float = VERIFY_STALL_SECONDS,
                 note: Callable[[str], None] = lambda _: None) -> None:
        self.stall_seconds, self.note = stall_seconds, note
        self.stalls: Counter[int] = Counter()  # pool stops each task was under way at
        self.started = 0.0  # when the pool of workers started apart was made
        self.fork = fork and can_fork() and workers != 0
        if self.fork and workers is None:
            workers = verify_threads()
        self.n_workers = workers or 0
        self.fork &= self.n_workers > 1
        self.n_threads = 0 if workers == 0 else verify_threads()
        self.pool: Executor | None = None
        self.threads: Executor | None = None
        self.broken = False  # a worker process died: the pool is not used again
        self.forked: frozenset[int] = frozenset()  # rows the forked workers inherited

    def _pool(self, features: dict[int, Any]) -> Executor:
        global _inherited
        if self.pool is None:
            if self.fork:
                _inherited = features  # the workers fork at their first task, and keep it
                self.forked = frozenset(k for k, f in features.items() if f is not None)
                # a fork inherits BLAS at one thread (one_blas_thread), and must not
                # reconfigure OpenCV's threads (cv2.setNumThreads hangs in a fork of a
                # process whose OpenCV pool had started); it dies with this process and
                # closes its copy of the index's lock
                self.pool = ProcessPoolExecutor(self.n_workers, mp_context=_fork_context(),
                                                initializer=forked_worker_start,
                                                initargs=(os.getpid(),))
            else:
                self.pool = ProcessPoolExecutor(self.n_workers, mp_context=_pool_context(),
                                                initializer=_worker_start)
                self.started = time.monotonic()
        return self.pool

    def _stall_timeout(self) -> float:
        """stall_seconds, and for workers started apart up to POOL_START_SECONDS (at most
        twice stall_seconds) more while they start (they import verification: seconds,
        more on a loaded machine)."""
        if self.fork:
            return self.stall_seconds
        grace = min(POOL_START_SECONDS, 2 * self.stall_seconds)
        return self.stall_seconds + max(0.0, self.started + grace - time.monotonic())

    def _pooled(self, n_tasks: int) -> bool:
        # once started, the pool takes any round it can share out
        return (self.n_workers > 1 and not self.broken
                and n_tasks >= (2 if self.pool else POOL_MIN_TASKS))

    def start(self, n_tasks: int) -> None:
        """Start the pool's processes now, while this process describes the images, when
        a round of n_tasks comparisons will use it (forks start when the round's
        comparisons do: they inherit its images)."""
        if self.pool is None and not self.fork and self._pooled(n_tasks):
            for _ in range(self.n_workers):
                self._pool({}).submit(_started)

    def refork(self, rows: set[int]) -> None:
        """End the forked workers before a part of a round that needs REFORK_MIN_IMAGES
        images they did not inherit: its comparisons fork new ones, which inherit them. Ended
        before those images are described: pages this process shares with live forks are
        copied as it writes them (describing took 40% longer with idle forks alive)."""
        if self.fork and self.pool is not None and len(rows - self.forked) >= REFORK_MIN_IMAGES:
            self.pool.shutdown()
            self.pool = None

    def here(self, fn: Callable[[Any], Any], tasks: list[Any]) -> list[Any]:
        """fn over tasks in this process: in threads, or in this thread."""
        if self.n_threads > 1 and len(tasks) > 1:
            if self.threads is None:
                self.threads = ThreadPoolExecutor(self.n_threads, thread_name_prefix="verify")
            return list(self.threads.map(fn, tasks))
        return [fn(t) for t in tasks]

    def compare(self, tasks: list[tuple[int, int, int, Any]],
                features: dict[int, Any]) -> list[_Compared]:
        """The verdicts of tasks (pair, row a, row b, match settings), rows in `features`."""
        if self._pooled(len(tasks)):
            return self._in_pool(tasks, features)
        return self.here(_compare, [(p, features[a], features[b], s) for p, a, b, s in tasks])

    def _in_pool(self, tasks: list[tuple[int, int, int, Any]],
                 features: dict[int, Any]) -> list[_Compared]:
        """The tasks compared in the pool, one at a time (a comparison takes from a
        millisecond to a tenth of a second). Where the pool finishes none in stall_seconds,
        its processes are ended and the unfinished tasks go to new ones (started apart, not
        forks: a fork may have inherited a lock held by a thread); a task under way at
        STALL_TRIES stalls, or every task left after STALLS_IN_A_ROW stalls with nothing
        finished between them, is not verified."""
        done: dict[int, _Compared] = {}
        todo, in_a_row = tasks, 0
        while todo:
            pool = self._pool(features)
            finished: queue.SimpleQueue[Future[_Compared]] = queue.SimpleQueue()
            # a row the workers inherited goes as its number, any other image whole
            with warnings.catch_warnings():
                # Python 3.12+ warns of any fork of a process with threads: these are idle
                # here (module doc of VerifySettings.fork)
                warnings.filterwarnings("ignore", ".*multi-threaded.*fork", DeprecationWarning)
                futures = {pool.submit(_in_worker, (p, a if a in self.forked else features[a],
                                                    b if b in self.forked else features[b],
                                                    s)): (p, a, b, s)
                           for p, a, b, s in todo}  # in order: the call queue is FIFO
            for f in futures:
                f.add_done_callback(finished.put)
            try:
                for _ in futures:
                    f = finished.get(timeout=self._stall_timeout())
                    done[futures[f][0]] = f.result()  # BrokenProcessPool: a worker died
                    in_a_row = 0
                return [done[t[0]] for t in tasks]
            except BrokenProcessPool:
                # a worker died (killed, out of memory): the rest are compared here, in
                # threads, and so are the rounds after it (comparisons are deterministic)
                self.broken = True
                rest = [(p, features[a], features[b], s) for p, a, b, s in futures.values()
                        if p not in done]
                done.update((c.pair, c) for c in self.here(_compare, rest))
                return [done[t[0]] for t in tasks]
            except queue.Empty:
                in_a_row += 1
                todo = self._stalled(futures, done, in_a_row)
        return [done[t[0]] for t in tasks]

    def _stalled(self, futures: dict[Future[_Compared], tuple[int, int, int, Any]],
                 done: dict[int, _Compared], in_a_row: int) -> list[tuple[int, int, int, Any]]:
        """After a stall: the pool ended, the verdicts given up added to `done`; the tasks
        for new workers (started apart, not forks)."""
        # in the workers: the first n_workers running in submission order (each holds one
        # task; the others running() are only queued)
        running = [t[0] for f, t in futures.items()
                   if not f.done() and f.running()][:self.n_workers]
        self._stop_pool()
        for f, t in futures.items():  # finished before they were ended
            if f.done() and not f.cancelled() and f.exception() is None:
                done[t[0]] = f.result()
        self.stalls.update(p for p in running if p not in done)
        todo = [t for t in futures.values() if t[0] not in done]
        for p, *_ in todo:
            if self.stalls[p] >= STALL_TRIES:
                why = STALLED_EVIDENCE.format(self.stall_seconds, STALL_TRIES)
            elif in_a_row >= STALLS_IN_A_ROW:
                why = GIVEN_UP_EVIDENCE.format(self.stall_seconds, in_a_row)
            else:
                continue
            done[p] = _Compared(p, Verdict(NOT_VERIFIED, why), {}, {}, ran=False)
        left = [t for t in todo if t[0] not in done]
        self.note(f"verification workers finished no comparison in {self.stall_seconds:g} s: "
                  f"ended; {len(left)} comparisons go to new workers"
                  + (f", {len(todo) - len(left)} not verified" if len(todo) > len(left) else ""))
        self.fork, self.forked = False, frozenset()
        return left

    def _stop_pool(self) -> None:
        """End the pool's processes now (a stalled one may be stopped, or deep in a loop)."""
        pool, self.pool = self.pool, None
        if pool is None:
            return
        # ProcessPoolExecutor has no public way to end its workers before Python 3.14
        for proc in list((getattr(pool, "_processes", None) or {}).values()):
            proc.kill()
        # a worker ended part-way through writing its result leaves the pool's thread
        # reading it: with this process's own end of the pipe closed, that read ends
        results = getattr(pool, "_result_queue", None)
        writer = getattr(results, "_writer", None)
        if writer is not None:
            writer.close()
        pool.shutdown(wait=True, cancel_futures=True)

    def abort(self) -> None:
        """End the workers now: the walk was interrupted (Ctrl-C), maybe while one hangs."""
        self._stop_pool()
        if self.threads is not None:
            self.threads.shutdown(wait=False, cancel_futures=True)
            self.threads = None

    def close(self) -> None:
        global _inherited
        _inherited = {}
        for ex in (self.pool, self.threads):
            if ex is not None:
                ex.shutdown()


class PairWalk:
    """One verify_pairs call: fills `out.pairs` (a Verdict per pair) round by round."""

    def __init__(self, rows: Sequence[ImageSource], pairs: Pairs, settings: VerifySettings,
                 out: Verdicts, progress: Progress, uncapped: Sequence[bool] | None = None
                 ) -> None:
        self.rows, self.settings, self.out, self.progress = rows, settings, out, progress
        self.ends = list(zip(pairs.i.tolist(), pairs.j.tolist(), strict=True))
        self.scores = pairs.score.tolist()
        self.order = sorted(range(len(pairs)), key=lambda p: -self.scores[p])
        self.match_settings = settings.matching()
        self.sets = Sets(len(rows))
        self.apart = Apart(settings.apart_votes, settings.unaligned_votes)
        # described images (None: could not be), least recently used first
        self.features: dict[int, Any] = {}
        self.need = Counter(k for ends in self.ends for k in ends)  # pairs undecided, by row
        self.pixels: dict[int, str | None] = {}  # each row's first reading (its pixel hash)
        self.budget = settings.memory_bytes or VERIFY_IMAGES_BYTES
        side = self.match_settings.thumb_side
        self.per_image = int(IMAGE_BYTES_PER_PX * side * side)
        self.workers = _Workers(settings.workers, settings.fork, settings.stall_seconds,
                                progress.note)
        # other shots found by comparisons, by row; pairs compared whatever the count
        self.differs: Counter[int] = Counter()
        self.cap = settings.other_shots_per_image or len(rows) + 1
        self.capped: dict[int, str] = {}  # the evidence of pairs left at the cap, by row
        self.uncapped = frozenset(
            p for p, u in enumerate(() if uncapped is None else uncapped) if u)
        # descriptions dropped for room while a pair needs them, on disk (spill.py)
        self.spill = None if settings.spill_dir is None else Spill(settings.spill_dir)

    def run(self) -> None:
        if not self.order:
            return
        try:
            with one_blas_thread():
                pending = self.order
                while pending:
                    batch, pending = self._sort(pending)
                    for part in self._parts(batch):
                        self.workers.start(len(part))
                        self._describe(part)
                        self._compare(part)
        except BaseException:
            self.workers.abort()  # Ctrl-C: not waiting on a worker that may hang
            raise
        finally:
            self.workers.close()
            if self.spill is not None:
                self.spill.close()

    def _decide(self, p: int, verdict: Verdict) -> None:
        self.out.pairs[p] = verdict
        self.progress.update(1)
        for k in self.ends[p]:
            self.need[k] -= 1
            if self.need[k] == 0:  # no pair needs it any more
                self.features.pop(k, None)
                if self.spill is not None:
                    self.spill.drop(k)

    def _parts(self, batch: list[int]) -> Iterator[list[int]]:
        """The round's pairs in parts whose images fit the memory budget together."""
        cap = max(2, self.budget // self.per_image)
        part: list[int] = []
        rows: set[int] = set()
        for p in batch:
            ends = set(self.ends[p])
            if part and len(rows | ends) > cap:
                yield part
                part, rows = [], set()
            part.append(p)
            rows |= ends
        if part:
            yield part

    def _make_room(self, rows: set[int], new: int) -> None:
        """Drop described images outside `rows` (the least recently used first) until
        `new` more fit the budget."""
        held = sum(f.nbytes() for f in self.features.values() if f is not None)
        # an image that could not be read holds nothing: kept, so it is not read again
        for k in [k for k, f in self.features.items() if k not in rows and f is not None]:
            if held + new * self.per_image <= self.budget:
                return
            dropped = self.features.pop(k)
            held -= dropped.nbytes()
            if self.spill is not None and self.need[k] > 0:
                self.spill.put(k, dropped)

    def _join(self, a: int, b: int) -> None:
        joined = self.sets.union(a, b)
        if joined:
            self.apart.merged(*joined)

    def _sort(self, pending: list[int]) -> tuple[list[int], list[int]]:
        """(the pairs this round compares, those that wait); the rest are decided here."""
        tentative = self.sets.copy()
        batch: list[int] = []
        later: list[int] = []
        planned: Counter[int] = Counter()  # comparisons in this round, by row
        for p in pending:
            a, b = self.ends[p]
            root_a, root_b = self.sets.find(a), self.sets.find(b)
            if root_a == root_b:
                self._decide(p, Verdict("copy", SKIPPED_EVIDENCE))
                self.out.skipped_as_grouped += 1
            elif (deciding := self.apart.decided(root_a, root_b)) is not None:
                self._decide(p, Verdict("other_shot", self._apart_evidence(*deciding)))
                self.out.skipped_as_other_shot += 1
            elif self._capped(p) and not self._same_bytes(p):
                self._decide(p, Verdict(NOT_VERIFIED, self._capped_evidence(a, b)))
                self.out.skipped_per_image += 1
                self.out.not_verified += 1
            elif tentative.find(a) == tentative.find(b):
                later.append(p)  # a comparison in this round may join them
            elif self._same_bytes(p):
                self._decide(p, Verdict("exact", "same bytes"))
                self.out.same_bytes += 1
                self._join(a, b)
                tentative.union(a, b)
            elif self._capped(p, planned):
                later.append(p)  # this round's comparisons may bring an end to the limit
            else:
                batch.append(p)
                planned.update((a, b))  # a copy found does not count towards the limit
                tentative.union(a, b)
        return batch, later

    def _capped(self, p: int, planned: Counter[int] | None = None) -> bool:
        """An end of pair p has met the limit of other shots (with the comparisons planned
        in this round), and p is not to be compared whatever it."""
        if p in self.uncapped:
            return False
        a, b = self.ends[p]
        if planned is None:
            return max(self.differs[a], self.differs[b]) >= self.cap
        return max(self.differs[a] + planned[a], self.differs[b] + planned[b]) >= self.cap

    def _same_bytes(self, p: int) -> bool:
        digest_a, digest_b = (self.rows[k].digest for k in self.ends[p])
        return digest_a is not None and digest_a == digest_b

    def _apart_evidence(self, deciding: list[int], aligned: bool) -> str:
        names = "; ".join(f"{os.path.basename(self.rows[self.ends[q][0]].path)} and "
                          f"{os.path.basename(self.rows[self.ends[q][1]].path)}"
                          for q in deciding)
        return f"{APART_EVIDENCE if aligned else UNALIGNED_EVIDENCE} (compared: {names})"

    def _capped_evidence(self, a: int, b: int) -> str:
        k = a if self.differs[a] >= self.cap else b
        if k not in self.capped:  # one string per image: look-alikes leave millions of pairs
            n = self.differs[k]
            self.capped[k] = (f"{CAPPED_EVIDENCE} ({os.path.basename(self.rows[k].path)} was "
                              f"already found unlike {n} other image{'s' if n > 1 else ''})")
        return self.capped[k]

    def _describe(self, batch: list[int]) -> None:
        rows = {k for p in batch for k in self.ends[p]}
        for k in rows & self.features.keys():  # used now: the most recent
            self.features[k] = self.features.pop(k)
        need = sorted(rows - self.features.keys())
        self.workers.refork(rows)
        self._make_room(rows, len(need))
        if self.spill is not None:  # those on disk are read back, not described again
            for k in need:
                got = self.spill.take(k)
                if got is not None and got.pixel_hash == self.pixels.get(k):
                    self.features[k] = got
            need = [k for k in need if k not in self.features]
        tasks = [(k, self.rows[k].path, self.rows[k].digest, self.settings.max_side,
                  self.match_settings) for k in need]
        for k, features, error in self.workers.here(_describe, tasks):
            seen = self.pixels.setdefault(k, None if features is None else features.pixel_hash)
            if features is not None and seen != features.pixel_hash:
                # described again after it was dropped for room, and the file's pixels
                # are not those of its first reading: no verdict on a file that changed
                features, error = None, CHANGED_ERROR
            self.features[k] = features
            if features is None:
                self.out.errors[k] = error

    def _compare(self, batch: list[int]) -> None:
        tasks = []
        for p in batch:
            a, b = self.ends[p]
            if self.features[a] is None or self.features[b] is None:
                why = self.out.errors.get(a) or self.out.errors.get(b) or "unknown"
                # a file that cannot be read now (vanished, changed, unreadable) is no
                # evidence of a copy: the pair stays out of the groups, so nothing is
                # proposed for removal on the embedding's word alone
                self._decide(p, Verdict(NOT_VERIFIED,
                                        f"could not read it for verification ({why})"))
                self.out.not_verified += 1
            else:
                tasks.append((p, a, b, self.match_settings))
        # the least similar first: they are the slowest (other shots try every strategy), so
        # quick comparisons, not a slow one, end the round while another worker waits; the
        # verdicts are recorded in the walk's order whatever order they were computed in
        slow_first = sorted(tasks, key=lambda t: self.scores[t[0]])
        done = {c.pair: c for c in self.workers.compare(slow_first, self.features)}
        for task in tasks:
            self._record(done[task[0]])

    def _record(self, done: _Compared) -> None:
        a, b = self.ends[done.pair]
        self.features[a].sift_cache.update(done.keypoints_a)  # computed in a worker: keep
        self.features[b].sift_cache.update(done.keypoints_b)
        self.out.compared += done.ran
        v = done.verdict
        if v.kept:
            self._join(a, b)
        elif not v.verified:  # the comparison itself failed
            self.out.not_verified += 1
        else:  # judged on aligned pixels ("regions": they differ), or not: a failure
            # to align or too little to judge, which counts less (another member of the
            # group may still align); a file that could not be read counts not at all
            self.apart.add(self.sets.find(a), self.sets.find(b),
                           (done.pair, "regions" in v.numbers))
            self.differs[a] += 1
            self.differs[b] += 1
        self._decide(done.pair, v)
