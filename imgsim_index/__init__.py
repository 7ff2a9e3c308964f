"""imgsim-index: duplicate and near-duplicate images, found with CNN embeddings and FAISS.

Public API:
    build_index(folders, index_dir, BuildSettings(...)) -> BuildResult
    dedupe(index_dir, folders, DedupeSettings(...)) -> DedupeResult
    IndexStore.open_reader(index_dir).load() -> LoadedVectors
    find_pairs(vectors, PairSettings(...)) -> Pairs
"""

from imgsim_index.embed.embedder import EmbedSettings
from imgsim_index.errors import ImgsimError
from imgsim_index.index.store import IndexStore
from imgsim_index.pipeline.build import BuildResult, BuildSettings, build_index
from imgsim_index.pipeline.dedupe import DedupeResult, DedupeSettings, dedupe
from imgsim_index.search.exact import Pairs, PairSettings, find_pairs

__version__ = "0.1.0"

__all__ = [
    "BuildResult", "BuildSettings", "DedupeResult", "DedupeSettings", "EmbedSettings",
    "ImgsimError", "IndexStore", "PairSettings", "Pairs", "build_index", "dedupe", "find_pairs",
]
