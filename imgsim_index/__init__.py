"""imgsim-index: duplicate and near-duplicate images, found with CNN embeddings and FAISS.

Public API:
    build_index(folders, index_dir, BuildSettings(...)) -> BuildResult
    dedupe(index_dir, folders, DedupeSettings(...)) -> DedupeResult
    IndexStore.open_reader(index_dir).load() -> LoadedVectors
    find_pairs(vectors, PairSettings(...)) -> Pairs
"""

from .dedupe import DedupeResult, DedupeSettings, dedupe
from .embed import EmbedSettings
from .errors import ImgsimError
from .indexer import BuildResult, BuildSettings, build_index
from .pairs import Pairs, PairSettings, find_pairs
from .store import IndexStore

__version__ = "0.1.0"

__all__ = [
    "BuildResult", "BuildSettings", "DedupeResult", "DedupeSettings", "EmbedSettings",
    "ImgsimError", "IndexStore", "PairSettings", "Pairs", "build_index", "dedupe", "find_pairs",
]
