"""distributed: embedding and pair search on a Ray cluster (`--engine ray`).

The process that runs `build` or `dedupe` stays the driver and the only writer
of the index: Ray actors decode and embed images and hand vectors back, the
driver commits them in the same checkpoints, in the same order, as a local
build (pipeline.engine.FileEmbedder), so ids, crash safety and resume are the local
ones. Pair search sends query shards to Ray tasks that search the whole
vector set (one copy per node, in Ray's object store) and merges their
candidates with the local threshold rule, so the pairs equal a local search.

Ray is an optional extra and is imported only when an engine is used.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from imgsim_index.embed.ray_embed import RaySettings
from imgsim_index.errors import EngineError, InputError, RayMissingError

if TYPE_CHECKING:
    from imgsim_index.embed.models import LoadedModel
    from imgsim_index.embed.ray_embed import RayFileEmbedder
    from imgsim_index.search.plan import OnProgress, SearchPlan

ENGINES = ("local", "ray")
INSTALL_HINT = "the Ray engine needs Ray: pip install 'imgsim-index[ray]'"

# what a scan task's process holds besides its list cache (the interpreter, numpy, faiss)
RAY_TASK_OVERHEAD = 512 << 20


def require_ray() -> None:
    """Raise RayMissingError, with the install command, unless ray and ray.data import."""
    try:
        missing = importlib.util.find_spec("ray") is None
    except (ImportError, ValueError):
        missing = True
    if missing:
        raise RayMissingError(INSTALL_HINT)
    try:
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise RayMissingError(f"{INSTALL_HINT} ({exc})") from None


class RayEngine:
    """Embeds still images and searches pairs on a Ray cluster; connects on first use.

    Use as a context manager (or call close()): a Ray session this engine opened is
    closed at the end (a local instance it started stops; a cluster it joined keeps
    running); one the caller opened is left alone.
    """

    name = "ray"

    def __init__(self, settings: RaySettings | None = None):
        require_ray()
        self.settings = settings or RaySettings()
        self.settings.validate()
        self._started = False
        self._connected = False

    def connect(self) -> None:
        import ray

        if self._connected:
            return
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"logging_level": logging.WARNING}
            address = self.settings.address or os.environ.get("RAY_ADDRESS")
            if address:
                kwargs["address"] = address
            elif self.settings.num_cpus is not None:  # a new local instance of this size
                kwargs.update(address="local", num_cpus=self.settings.num_cpus,
                              include_dashboard=False)
            # else: a cluster started on this machine with `ray start`, or a new local one
            try:
                ray.init(**kwargs)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                hint = (" (check the address; on a cluster with token authentication set "
                        "RAY_AUTH_MODE=token here too)") if address else ""
                raise EngineError(f"cannot connect to Ray at {address or 'a new local instance'}"
                                  f": {exc}{hint}") from None
            self._started = True
        self._connected = True

    def file_embedder(self, model: LoadedModel) -> RayFileEmbedder:
        """engine.Engine.file_embedder: a build's still images are embedded on the cluster."""
        from imgsim_index.embed.ray_embed import RayFileEmbedder

        self.connect()
        return RayFileEmbedder(model, self.settings)

    def candidates(self, x: np.ndarray, plan: SearchPlan, on_progress: OnProgress | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
        """search.plan.CandidateSearch: the exact tiles, sharded over Ray tasks."""
        from imgsim_index.search.ray_shards import ray_candidates

        self.connect()
        return ray_candidates(x, plan, on_progress, self.settings.max_retries)

    def ivf_candidates(self, folder: str, manifest: Any, keys: Any, nprobe: int,
                       radius: float, cache_bytes: int, on_progress: OnProgress | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
        """search.ivf_search's whole scan, by groups of lists, as Ray tasks reading the
        index folder (which every node must see at the same path: shared storage)."""
        import ray

        from imgsim_index.search.ray_shards import ray_ivf_candidates

        self.connect()
        tasks = 4 * max(1, int(ray.cluster_resources().get("CPU", 1)))
        # each task holds its list cache and its process: Ray places no more of them on a
        # node than its memory holds (not one per CPU whatever the budget); never more than
        # the largest node has, or no node could run one
        largest = max((float(n.get("Resources", {}).get("memory", 0)) for n in ray.nodes()
                       if n.get("Alive")), default=0.0)
        memory = cache_bytes + RAY_TASK_OVERHEAD
        memory = int(min(memory, largest)) if largest > 0 else 0
        return ray_ivf_candidates(folder, manifest, keys, nprobe, radius, cache_bytes, tasks,
                                  on_progress, self.settings.max_retries, memory)

    def close(self) -> None:
        if self._started:
            import ray

            ray.shutdown()
        self._started = self._connected = False

    def __enter__(self) -> RayEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_engine(name: str, address: str | None = None) -> RayEngine | None:
    """`--engine NAME [--ray-address ADDR]` -> None for local, else a RayEngine (checked now,
    connected on first use)."""
    if name == "local":
        if address:
            raise InputError("a Ray address needs the Ray engine")
        return None
    if name == "ray":
        return RayEngine(RaySettings(address=address))
    raise InputError(f"unknown engine {name!r}; use {' or '.join(ENGINES)}")


__all__ = ["ENGINES", "EngineError", "RayEngine", "RayMissingError", "RaySettings",
           "make_engine", "require_ray"]
