"""tiles: one scorer of candidate tiles for every pair search, in float32 (FAISS range search)
or bfloat16 (torch GEMM with a worst-case error margin).

On CPUs with AMX or AVX512-BF16, a bfloat16 GEMM runs several times faster
than a float32 one (measured on this project's machine: about 2 TFLOP/s against
0.3). The pair searches use it only to pick candidates: a tile is scored in
bf16 and every entry >= radius - BF16_MARGIN is a candidate, which the float64
re-score (threshold.pairs_from_candidates) then decides exactly. The margin is a
worst-case bound for unit vectors, so no pair that float32 scoring would find
is lost and the answer is the same pair for pair (tests compare both):

  inputs rounded to 8 significant bits (unit roundoff u = 2^-8): (2u + u^2)
  float32 accumulation over d <= 4096 terms:                       d 2^-24
  the result rounded to bfloat16:                                   u (1 + the above)
  total < 0.0121 -> BF16_MARGIN = 0.0125

The comparison itself is exact: the lowered radius is rounded down to a bf16
number (bf16_floor) before torch compares the bf16 scores with it.

oneDNN builds a kernel per GEMM shape (about 3 ms each, measured), so tiles are
zero-padded to bucketed row counts and the shapes repeat.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from imgsim_index.errors import InputError

BF16_MARGIN = 0.0125
PRECISIONS = ("auto", "bf16", "fp32")
AUTO_BF16_FROM = 8192  # auto: smaller searches take a few ms either way; keep float32


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise InputError(f"precision must be auto, bf16 or fp32, got {precision!r}")


BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")  # x86 flags of native bf16 dot products


def cpu_has_bf16() -> bool:
    """Whether /proc/cpuinfo lists native bf16 (AMX or AVX512-BF16); False elsewhere."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return any(f in line.split() for f in BF16_CPU_FLAGS)
    except OSError:
        pass
    return False


@functools.lru_cache(maxsize=1)
def bf16_is_faster() -> bool:
    """Whether to score candidate tiles in bfloat16, decided once per process. bf16
    results must stay inside the margin; then a CPU listing AMX or AVX512-BF16 says
    yes, and any other is timed: a 2048 x 1024 x 512 product, 5 times in each precision,
    interleaved, medians compared, bf16 needing a 1.5x lead. (Timing alone once said no
    on a busy machine that has AMX.)"""
    import torch

    rng = np.random.default_rng(0)
    a = rng.standard_normal((2048, 1024), dtype=np.float32)
    b = rng.standard_normal((512, 1024), dtype=np.float32)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    ha, hb = ta.bfloat16(), tb.bfloat16()
    exact = a.astype(np.float64) @ b.T.astype(np.float64)
    if np.abs(torch.mm(ha, hb.T).double().numpy() - exact).max() > BF16_MARGIN / 2:
        return False
    if cpu_has_bf16():
        return True
    torch.mm(ta, tb.T)  # first calls build the kernels
    times: dict[str, list[float]] = {"bf16": [], "fp32": []}
    for _ in range(5):
        for name, (p, q) in (("bf16", (ha, hb)), ("fp32", (ta, tb))):
            t = time.perf_counter()
            torch.mm(p, q.T)
            times[name].append(time.perf_counter() - t)
    return float(np.median(times["bf16"])) * 1.5 < float(np.median(times["fp32"]))


PRECISION_ENV = "IMGSIM_PAIR_PRECISION"  # fp32 | bf16: what `auto` means in this process


def resolve_precision(precision: str, n: int | None = None) -> str:
    """bf16 or fp32: `auto` is bf16 where it is faster, for searches of >= AUTO_BF16_FROM
    vectors (`n` None: any size). $IMGSIM_PAIR_PRECISION=fp32|bf16 decides `auto` instead:
    to measure the float32 path on a CPU with bf16, or force bf16 where the timing said no."""
    check_precision(precision)
    if precision != "auto":
        return precision
    forced = os.environ.get(PRECISION_ENV, "").strip().lower()
    if forced:
        if forced not in ("fp32", "bf16"):
            raise InputError(f"${PRECISION_ENV} must be fp32 or bf16, got {forced!r}")
        return forced
    if n is not None and n < AUTO_BF16_FROM:
        return "fp32"
    return "bf16" if bf16_is_faster() else "fp32"


def padded_rows(n: int) -> int:
    """Rows a tile of n rows is padded to: few distinct shapes, at most ~12% padding
    above 256 rows."""
    step = 32 if n <= 256 else 256 if n <= 4096 else 1024
    return -(-n // step) * step


def to_bf16(rows: np.ndarray) -> Any:
    """float32 rows -> a zero-padded bf16 tensor of padded_rows(len(rows)) rows."""
    import torch

    out = torch.empty((padded_rows(len(rows)), rows.shape[1]), dtype=torch.bfloat16)
    out[:len(rows)] = torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32))
    out[len(rows):].zero_()
    return out


def gather_bf16(xb: Any, idx: np.ndarray) -> Any:
    """Rows `idx` of a bf16 tensor, zero-padded like to_bf16."""
    import torch

    n = len(idx)
    out = torch.empty((padded_rows(n), xb.shape[1]), dtype=torch.bfloat16)
    torch.index_select(xb, 0, torch.from_numpy(np.asarray(idx, np.int64)), out=out[:n])
    out[n:].zero_()
    return out


def bf16_copy_of(x: np.ndarray, step: int = 65536) -> Any:
    """A bf16 tensor copy of x (half its memory), converted in steps."""
    import torch

    xb = torch.empty(x.shape, dtype=torch.bfloat16)
    for s in range(0, len(x), step):
        xb[s:s + step] = torch.from_numpy(x[s:s + step])
    return xb


def bf16_floor(value: float) -> float:
    """The largest bfloat16 number <= value. torch compares a bf16 tensor with a Python
    float in bf16, rounding the float to the nearest bf16 (up by as much as 0.002 near
    1), so thresholds are rounded down here first."""
    import torch

    t = torch.tensor([value], dtype=torch.float32).bfloat16()
    while float(t.item()) > value:
        t = torch.nextafter(t, torch.tensor([-float("inf")], dtype=torch.bfloat16))
    return float(t.item())


def above_bf16(q: Any, nq: int, block: Any, nb: int, radius: float
               ) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) int64 of the bf16 scores of q x block >= radius - BF16_MARGIN, among
    the first nq rows and nb columns (the rest is padding)."""
    import torch

    lowered = bf16_floor(radius - BF16_MARGIN)
    scores = torch.mm(q, block.T)
    hit_rows = torch.nonzero(scores.amax(dim=1) >= lowered).squeeze(1)
    hits = torch.nonzero(scores.index_select(0, hit_rows) >= lowered).numpy()
    qi = hit_rows.numpy()[hits[:, 0]].astype(np.int64)
    cj = hits[:, 1].astype(np.int64)
    real = (qi < nq) & (cj < nb)  # padding rows are zeros: a radius <= 0 would match them
    return qi[real], cj[real]




@contextmanager
def faiss_blas_tiles(size: int) -> Iterator[None]:
    """FAISS scores a range search in BLAS tiles of 4096 x 1024 by default; tiles as large
    as our blocks run at the speed of one plain GEMM (see benchmarks/bench_pairs.py)."""
    import faiss

    cv = faiss.cvar
    saved = cv.distance_compute_blas_query_bs, cv.distance_compute_blas_database_bs
    cv.distance_compute_blas_query_bs = cv.distance_compute_blas_database_bs = max(size, 1)
    try:
        yield
    finally:
        cv.distance_compute_blas_query_bs, cv.distance_compute_blas_database_bs = saved


def above_fp32(scores: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) int64 of the entries >= radius of a float32 score tile. Row maxima
    first: most rows have no candidate, and np.nonzero over a whole 2-D tile costs ~10x
    a max-reduction over it."""
    cols = scores.shape[1]
    rows = np.flatnonzero(scores.max(axis=1) >= radius) if len(scores) else np.zeros(0, np.int64)
    if 4 * len(rows) > len(scores):  # many hits: a low threshold
        flat = np.flatnonzero(scores >= radius)
        return flat // cols, flat % cols
    flat = np.flatnonzero(scores[rows] >= radius)
    return rows[flat // cols], flat % cols


class TileScorer:
    """Which scores of a tile (query rows x block rows) reach the radius, in one precision.

    fp32, kernel "faiss": the block becomes a FAISS IndexFlatIP and the query rows are
    range-searched against it (the exact tiles: large square tiles). fp32, kernel "gemm":
    one numpy GEMM per tile, thresholded by row maxima first (the IVF cells: many small
    blocks; it kept the IVF search at its earlier speed, see benchmarks/RESULTS.md). bf16: both
    sides become zero-padded bf16 tensors (to_bf16 / gather_bf16) and above_bf16 keeps
    the scores >= radius - BF16_MARGIN, a superset of the fp32 candidates. `bf16_copy`:
    keep a whole bf16 copy of x (half its memory) for searches that gather scattered rows
    many times (IVF cells); the tile search converts its contiguous tiles as it goes
    instead. `x` is only read.
    """

    def __init__(self, x: np.ndarray, radius: float, precision: str, bf16_copy: bool = False,
                 fp32_kernel: str = "faiss"):
        self.x, self.radius = x, radius
        self.bf16 = precision == "bf16"
        self.faiss = fp32_kernel == "faiss"
        self.xb = bf16_copy_of(x) if self.bf16 and bf16_copy else None

    def operand(self, rows: slice | np.ndarray) -> Any:
        """Query-side operand of rows `rows` (a slice or an index array) of x."""
        if not self.bf16:
            return np.ascontiguousarray(self.x[rows])
        if self.xb is not None and not isinstance(rows, slice):
            return gather_bf16(self.xb, rows)
        return to_bf16(self.x[rows])

    def block(self, rows: slice | np.ndarray) -> Any:
        """Block-side operand: a FAISS index (fp32) or a bf16 tensor."""
        if self.bf16 or not self.faiss:
            return self.operand(rows)
        import faiss

        index = faiss.IndexFlatIP(self.x.shape[1])
        index.add(np.ascontiguousarray(self.x[rows]))
        return index

    def above(self, q: Any, nq: int, block: Any, nb: int) -> tuple[np.ndarray, np.ndarray]:
        """(query row, block row) int64 of the scores that reach the radius."""
        if self.bf16:
            return above_bf16(q, nq, block, nb, self.radius)
        if not self.faiss:
            return above_fp32(q @ block.T, self.radius)
        lims, _, found = block.range_search(q, self.radius)
        qi = np.repeat(np.arange(nq, dtype=np.int64), np.diff(lims).astype(np.int64))
        return qi, found.astype(np.int64)


__all__ = ["AUTO_BF16_FROM", "BF16_CPU_FLAGS", "BF16_MARGIN", "PRECISIONS", "PRECISION_ENV",
           "TileScorer", "above_bf16", "above_fp32", "faiss_blas_tiles",
           "bf16_copy_of", "bf16_floor", "bf16_is_faster", "check_precision", "cpu_has_bf16",
           "gather_bf16", "padded_rows", "resolve_precision", "to_bf16"]
