"""preprocess: a model's input preparation, as data (no numpy, no Pillow: cheap to import).

Part of a model's identity (stored in the manifest); decode.py carries it out.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

BACKGROUND = (128, 128, 128)


@dataclass(frozen=True)
class Preprocess:
    resize: int  # shorter side after resizing
    crop: int  # centre crop, square
    interpolation: str  # "bilinear" | "bicubic"
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    background: tuple[int, int, int] = BACKGROUND
    jpeg_draft: bool = True

    def identity(self) -> dict[str, object]:
        """As stored in manifest.json (JSON types, so it compares equal after a round trip)."""
        return dict(json.loads(json.dumps(asdict(self))))


__all__ = ["BACKGROUND", "Preprocess"]
