"""engine: the one type a build, a dedupe and the Python API take as `engine=`.

An engine is where still images are embedded and pairs searched when not in this
process (pipeline.ray_engine.RayEngine, `--engine ray`); None is this process. Every
entry point takes the same object and each stage asks it for its own part: a build
for a `FileEmbedder`, the exact search for `candidates` (search.SearchEngine), the
on-disk IVF scan for `ivf_candidates`. The answers are the local ones whichever
engine computes them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np

    from imgsim_index.embed.embedder import EmbeddedBatch, EmbedSettings
    from imgsim_index.embed.models import LoadedModel
    from imgsim_index.search.plan import OnProgress, SearchPlan


class FileEmbedder(Protocol):
    """What embeds image files: `embed.Embedder` here, or an engine's (a Ray cluster).

    Yields batches in input order, each covering the next `settings.batch_size`
    positions (as `Embedder.embed_files` does), so commits, and the catalog ids they
    assign, come out the same whichever engine embedded the files."""

    def embed_files(self, paths: Sequence[str], settings: EmbedSettings,
                    on_progress: Callable[[int], None] | None = None
                    ) -> Iterator[EmbeddedBatch]: ...


class Engine(Protocol):
    """Embedding and pair search elsewhere; see the module docstring."""

    name: str  # what report.json's pair_search.engine says when this engine searched

    def file_embedder(self, model: LoadedModel) -> FileEmbedder:
        """The embedder of a build's still images (videos are always embedded here)."""
        ...

    def candidates(self, x: np.ndarray, plan: SearchPlan, on_progress: OnProgress | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
        """search.plan.CandidateSearch: the exact search's candidate pairs."""
        ...

    def ivf_candidates(self, folder: str, manifest: Any, keys: Any, nprobe: int,
                       radius: float, cache_bytes: int, on_progress: OnProgress | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
        """search.ivf_search's whole scan of an on-disk IVF."""
        ...


__all__ = ["Engine", "FileEmbedder"]
