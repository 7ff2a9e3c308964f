"""The --engine and --ray-address options of build, add and dedupe, and the engine session."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from imgsim_index.pipeline.ray_engine import RayEngine


def engine_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--ray-address", default=None, metavar="ADDR",
                     help="Ray cluster for --engine ray (default: $RAY_ADDRESS, else a new "
                          "local Ray instance).")(f)
    return click.option("--engine", type=click.Choice(["local", "ray"]), default="local",
                        show_default=True,
                        help="Where still images are embedded and exact pairs searched: this "
                             "process, or a Ray cluster (pip install 'imgsim-index[ray]'). "
                             "This process still writes the index. With ray, dedupe's "
                             "default search is exact, on the cluster (--approx runs "
                             "here).")(f)


@contextlib.contextmanager
def engine_session(name: str, address: str | None) -> Iterator[RayEngine | None]:
    """None for the local engine; else a RayEngine, checked now (Ray installed?) and closed
    at the end."""
    from imgsim_index.pipeline.ray_engine import make_engine

    engine = make_engine(name, address)
    if engine is None:
        yield None
        return
    # Ray Data's INFO lines and notes would bury our progress bars; failures still
    # reach us as exceptions.
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    with engine:
        yield engine
