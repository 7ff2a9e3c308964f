"""imgsim-index: duplicate and near-duplicate images, found with CNN embeddings and FAISS.

Public API:
    build_index(folders, index_dir, BuildSettings(...)) -> BuildResult
    dedupe(index_dir, folders, DedupeSettings(...)) -> DedupeResult
    IndexStore.open_reader(index_dir).load() -> LoadedVectors
    find_pairs(vectors, PairSettings(...)) -> Pairs

The names are imported on first use (PEP 562), so `import imgsim_index` and the
CLI's --help do not pay for numpy, FAISS or the pipeline.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_WHERE = {
    "EmbedSettings": "imgsim_index.embed.embedder",
    "ImgsimError": "imgsim_index.errors",
    "IndexStore": "imgsim_index.index.store",
    "BuildResult": "imgsim_index.pipeline.build",
    "BuildSettings": "imgsim_index.pipeline.build",
    "build_index": "imgsim_index.pipeline.build",
    "DedupeResult": "imgsim_index.pipeline.dedupe",
    "DedupeSettings": "imgsim_index.pipeline.dedupe",
    "dedupe": "imgsim_index.pipeline.dedupe",
    "Pairs": "imgsim_index.search.exact",
    "PairSettings": "imgsim_index.search.exact",
    "find_pairs": "imgsim_index.search.exact",
}

__all__ = [
    "BuildResult", "BuildSettings", "DedupeResult", "DedupeSettings", "EmbedSettings",
    "ImgsimError", "IndexStore", "PairSettings", "Pairs", "build_index", "dedupe", "find_pairs",
]

if TYPE_CHECKING:
    from imgsim_index.embed.embedder import EmbedSettings
    from imgsim_index.errors import ImgsimError
    from imgsim_index.index.store import IndexStore
    from imgsim_index.pipeline.build import BuildResult, BuildSettings, build_index
    from imgsim_index.pipeline.dedupe import DedupeResult, DedupeSettings, dedupe
    from imgsim_index.search.exact import Pairs, PairSettings, find_pairs


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'imgsim_index' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
