"""A progress sink the library reports to; the CLI plugs tqdm in, the library prints nothing."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def start(self, description: str, total: int | None) -> None: ...

    def update(self, n: int) -> None: ...

    def note(self, message: str) -> None: ...

    def finish(self) -> None: ...


class NoProgress:
    def start(self, description: str, total: int | None) -> None:
        pass

    def update(self, n: int) -> None:
        pass

    def note(self, message: str) -> None:
        pass

    def finish(self) -> None:
        pass
