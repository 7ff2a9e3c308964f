"""plan: what every candidate search is handed (SearchPlan) and what a search reports back
(SearchInfo). The exact tiles, the IVF cells and the Ray shards are interchangeable parts
with one signature: `candidates(x, plan, on_progress) -> (i, j)` int64 row pairs whose
candidate score reaches plan.radius; find_pairs applies the threshold rule to them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np

from imgsim_index.search.settings import ApproxSettings

OnProgress = Callable[[int, int], None]


@dataclass(frozen=True)
class SearchPlan:
    radius: float  # candidate score needed (threshold.search_radius)
    block_size: int  # rows per side of a score tile
    precision: str  # fp32 | bf16, resolved
    rows: np.ndarray | None = None  # query rows against all rows; None: every pair once
    approx: ApproxSettings = field(default_factory=ApproxSettings)
    nprobe: int = 0  # approx: cells each vector probes
    max_candidates: int | None = None  # exact: stop with ResultTooLarge beyond this many


class CandidateSearch(Protocol):
    def __call__(self, x: np.ndarray, plan: SearchPlan,
                 on_progress: OnProgress | None = None) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass(frozen=True)
class SearchInfo:
    method: str  # exact | approx | ivf (the on-disk IVF, search/ivf_search.py)
    engine: str  # local | ray
    precision: str  # fp32 | bf16
    vectors: int
    queries: int | None  # rows searched against all (sample, new-only); None: full
    candidates: int
    pairs: int
    seconds: float
    approx: ApproxSettings | None = None
    nprobe: int | None = None
    details: dict[str, Any] | None = None  # ivf: lists, parts, budget, candidates

    def as_report(self) -> dict[str, Any]:
        """The report's `pair_search` entry."""
        if self.method == "ivf":
            return {"method": "ivf", "nprobe": self.nprobe, **(self.details or {})}
        if self.method == "approx" and self.approx is not None:
            return {"method": "approx", **asdict(self.approx), "nprobe": self.nprobe,
                    "precision": self.precision}
        return {"method": "exact", "precision": self.precision}


__all__ = ["CandidateSearch", "OnProgress", "SearchInfo", "SearchPlan"]
