"""Atomic file replacement: write to a temporary name, fsync, rename, fsync the folder."""

from __future__ import annotations

import json
import os
import re
from typing import Any

_SURROGATE = re.compile("[\ud800-\udfff]")


def json_text(obj: Any, indent: int | None = None) -> str:
    """JSON as UTF-8 text keeps, where a str holds a lone surrogate (a file name that is
    not UTF-8, as os.fsdecode gives it), the escape \\udcXX: valid JSON that json.loads
    turns back into the same str, whose os.fsencode is the file's exact bytes."""
    text = json.dumps(obj, indent=indent, ensure_ascii=False, sort_keys=False)
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def fsync_dir(folder: str) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: str, data: bytes | memoryview) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(folder)


def atomic_write_json(path: str, obj: Any) -> None:
    text = json_text(obj, indent=2) + "\n"
    atomic_write_bytes(path, text.encode("utf-8"))
