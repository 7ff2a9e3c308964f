"""Atomic file replacement: write to a temporary name, fsync, rename, fsync the folder."""

from __future__ import annotations

import contextlib
import json
import os
import re
from typing import Any

_SURROGATE = re.compile("[\ud800-\udfff]")


def json_text(obj: Any, indent: int | None = None) -> str:
    """JSON as UTF-8 text keeps, where a str holds a lone surrogate (a file name that is
    not UTF-8, as os.fsdecode gives it), the escape \\udcXX: valid JSON that json.loads
    turns back into the same str, whose os.fsencode is the file's exact bytes."""
    return _escaped(json.dumps(obj, indent=indent, ensure_ascii=False, sort_keys=False))


def _escaped(text: str) -> str:
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


JSON_WRITE_CHARS = 1 << 20  # encoded pieces gathered per write


def atomic_write_json(path: str, obj: Any) -> None:
    """json_text(obj, indent=2) and a newline, atomically, written as it is encoded: a
    report of millions of pairs is never one string (json.dumps with an indent joins a
    list of every piece: 4.8 GiB for a 710 MB report)."""
    folder = os.path.dirname(os.path.abspath(path))
    tmp = f"{path}.tmp-{os.getpid()}"
    pieces: list[str] = []
    held = 0
    try:
        with open(tmp, "wb") as fh:
            for piece in json.JSONEncoder(ensure_ascii=False, indent=2).iterencode(obj):
                pieces.append(piece)
                held += len(piece)
                if held >= JSON_WRITE_CHARS:  # a lone surrogate is one piece's character
                    fh.write(_escaped("".join(pieces)).encode("utf-8"))
                    pieces, held = [], 0
            fh.write((_escaped("".join(pieces)) + "\n").encode("utf-8"))
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    os.replace(tmp, path)
    fsync_dir(folder)
