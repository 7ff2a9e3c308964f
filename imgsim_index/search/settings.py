"""settings: what a pair search is asked for (PairSettings) and how the IVF search runs
(ApproxSettings). Plain frozen values; validate() raises InputError in library terms."""

from __future__ import annotations

from dataclasses import dataclass

from imgsim_index.defaults import DEFAULT_THRESHOLD
from imgsim_index.errors import InputError
from imgsim_index.search.tiles import check_precision

METHODS = ("auto", "exact", "approx")
# inter_folder is the seed's spelling, which report.json keeps; inter-folder matches the
# other hyphenated values. Both mean: only pairs across input folders.
SCOPES = ("all", "inter_folder", "inter-folder")
# A pair listing made on request (serve's GET /v1/pairs) is bounded: below this threshold
# nearly every pair of photos scores (at -1, 5,000 images made 12.5M pairs, 3.5 GB), and
# the search stops once it has found more than LISTING_MAX_CANDIDATES candidate pairs.
LISTING_MIN_THRESHOLD = 0.5
LISTING_MAX_CANDIDATES = 100_000
AUTO_APPROX_ABOVE = 200_000  # `auto` picks approx mode above this many vectors

# nprobe by threshold: closer pairs need fewer probes. Tuned on the hard case, isotropic
# 2048-d vectors (bench_approx.py, 200k vectors): recall of planted pairs 0.9992 / 0.9994
# / 1.0 at 0.9 / 0.95 / 0.99 (real embeddings are clustered, which helps the cells).
AUTO_NPROBE = ((0.97, 8), (0.93, 12), (0.88, 24), (-1.0, 32))
# The on-disk IVF (search/ivf_search.py): smaller cells (4 sqrt(n) lists) and SQ8 scans.
# Measured at 1M x 512, clustered, threshold 0.95: nprobe 1 / 2 / 4 found 95.9% / 99.75% /
# 99.95% of 2,000 planted pairs (benchmarks/bench_scale.py). At most index.ivf.PROBES_STORED.
IVF_NPROBE = ((0.97, 3), (0.93, 4), (0.88, 8), (-1.0, 16))


@dataclass(frozen=True)
class PairSettings:
    # cosine at or above which two rows are a pair; None: not given, so the caller's
    # default applies (find_pairs: DEFAULT_THRESHOLD; a dedupe: the model's own)
    threshold: float | None = None
    compare_mode: str = "full"  # full | sample
    sample_ratio: float = 0.3
    seed: int = 0
    compare_scope: str = "all"  # all | inter-folder (or the seed's inter_folder)

    @property
    def cutoff(self) -> float:
        """The threshold the search applies: the given one, else DEFAULT_THRESHOLD."""
        return DEFAULT_THRESHOLD if self.threshold is None else float(self.threshold)

    @property
    def across_folders(self) -> bool:
        return self.compare_scope in ("inter_folder", "inter-folder")
    block_size: int = 4096  # rows per side of a score tile; bounds the extra memory
    precision: str = "auto"  # candidate scores: fp32 | bf16 | auto (tiles.resolve_precision)

    def validate(self) -> None:
        if self.threshold is not None and not -1.0 <= self.threshold <= 1.0:
            raise InputError(f"threshold must be between -1 and 1, got {self.threshold}")
        if self.compare_mode not in ("full", "sample"):
            raise InputError(f"compare mode must be full or sample, got {self.compare_mode!r}")
        if self.compare_scope not in SCOPES:
            raise InputError(
                f"compare scope must be all or inter-folder, got {self.compare_scope!r}"
            )
        if not 0.0 < self.sample_ratio <= 1.0:
            raise InputError(f"sample ratio must be in (0, 1], got {self.sample_ratio}")
        if self.block_size < 1:
            raise InputError("block size must be positive")
        check_precision(self.precision)


@dataclass(frozen=True)
class ApproxSettings:
    nprobe: int | None = None  # cells each vector probes, its own included; None: AUTO_NPROBE
    nlist: int | None = None  # cells; None: about sqrt(nprobe x N), see approx.cells_for
    coarse_dim: int = 128  # PCA dimensions for k-means and cell assignment (0: no PCA)
    train_points: int = 32  # k-means sample per cell
    kmeans_iter: int = 8
    seed: int = 0
    tile: int = 4096  # query rows per GEMM

    def validate(self) -> None:
        if self.nprobe is not None and self.nprobe < 1:
            raise InputError(f"nprobe must be at least 1, got {self.nprobe}")
        if self.nlist is not None and self.nlist < 1:
            raise InputError(f"nlist must be at least 1, got {self.nlist}")
        if self.coarse_dim < 0 or self.train_points < 1 or self.kmeans_iter < 1:
            raise InputError("coarse_dim, train_points and kmeans_iter must be positive")
        if self.tile < 1:
            raise InputError("tile must be positive")

    def probes_for(self, threshold: float, table: tuple[tuple[float, int], ...] = AUTO_NPROBE
                   ) -> int:
        if self.nprobe is not None:
            return self.nprobe
        return next(p for t, p in table if threshold >= t)


def choose_method(method: str, n: int, settings: PairSettings, partial: bool = False) -> str:
    """auto | exact | approx -> "exact" or "approx".

    auto: approx above AUTO_APPROX_ABOVE vectors in full mode; exact otherwise.
    Approx mode compares every vector, so it does not combine with a partial
    search (sample mode, new-only queries)."""
    if method not in METHODS:
        raise InputError(f"pair search must be exact, approx or auto, got {method!r}")
    partial = partial or settings.compare_mode == "sample"
    if method == "approx" and partial:
        raise InputError("the approximate search compares every image; it cannot be combined "
                         "with sample mode or a new-only search; use the exact search there")
    if method == "approx" or (method == "auto" and not partial and n > AUTO_APPROX_ABOVE):
        return "approx"
    return "exact"


__all__ = ["AUTO_APPROX_ABOVE", "AUTO_NPROBE", "DEFAULT_THRESHOLD", "IVF_NPROBE", "METHODS",
           "ApproxSettings", "PairSettings", "choose_method"]
