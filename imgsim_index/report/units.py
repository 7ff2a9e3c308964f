"""Units for people: byte counts as text (shared by the gallery and the command line)."""

from __future__ import annotations


def human_bytes(n: int) -> str:
    """1536 -> '1.5 KB' (powers of 1024; whole bytes below 1 KB)."""
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"
