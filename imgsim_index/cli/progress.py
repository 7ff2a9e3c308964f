"""The CLI's Progress sink: tqdm bars on stderr, so stdout carries only the summary."""

from __future__ import annotations

import sys
from typing import Any

import click


class TqdmProgress:
    """Progress bars on stderr (none when disabled, e.g. by --quiet)."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.bar: Any = None

    def start(self, description: str, total: int | None) -> None:
        if self.enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=description, unit=_unit(description),
                            file=sys.stderr, dynamic_ncols=True)

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def note(self, message: str) -> None:
        if self.enabled:
            click.echo(message, err=True)

    def finish(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _unit(description: str) -> str:
    """What a stage counts: pairs when verifying, tiles (or cells, or shards) in the pair
    search, images (files, frames) everywhere else."""
    d = description.lower()
    return "pair" if "pairs" in d else "step" if "search" in d else "img"
