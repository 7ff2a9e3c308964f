"""journal: the undo log of one apply, as JSON Lines, each line fsynced before the next step.

  {"type": "apply", "version": 1, "action": ..., "report": ..., "folders": [...], ...}
  {"type": "begin", "n": 1, "path": ..., ...}   written before a file is touched
  {"type": "done", "n": 1}                      written once the operation is complete
  {"type": "rolled_back", "n": 1}               an interrupted operation, put back as it was
  {"type": "end"}                               apply finished
  {"type": "undone", "n": 1} ... {"type": "undo_end"}

A crash can tear only the last line; reading ignores a line that is not JSON.
One process at a time holds the journal (an exclusive flock).
"""

from __future__ import annotations

import json
import os
from typing import IO, Any

from imgsim_index.atomic_files import fsync_dir, json_text
from imgsim_index.errors import ActionError
from imgsim_index.locks import lock_file

JOURNAL_VERSION = 1


class Journal:
    def __init__(self, path: str, fh: IO[str], records: list[dict[str, Any]]):
        self.path = path
        self.fh = fh
        self.records = records
        self.last_number = 0

    @classmethod
    def create(cls, path: str, header: dict[str, Any]) -> Journal:
        path = os.path.abspath(path)
        try:
            fh = open(path, "x", encoding="utf-8")  # noqa: SIM115 - held open until close()
        except FileExistsError:
            raise ActionError(
                f"journal {path} already exists; pass --resume {path} to finish it, "
                "or --journal with a new name"
            ) from None
        except OSError as exc:
            raise ActionError(f"cannot write the journal {path}: {exc.strerror or exc}; "
                              "pass --journal with a writable place") from None
        journal = cls(path, fh, [])
        journal._lock()
        journal.append({"type": "apply", "version": JOURNAL_VERSION, **header})
        fsync_dir(os.path.dirname(path))
        return journal

    @classmethod
    def open(cls, path: str) -> Journal:
        path = os.path.abspath(path)
        try:
            fh = open(path, "r+", encoding="utf-8")  # noqa: SIM115 - held open until close()
        except OSError as exc:
            raise ActionError(f"cannot open journal {path}: {exc.strerror or exc}") from None
        journal = cls(path, fh, [])
        journal._lock()
        try:
            text = fh.read()
        except UnicodeDecodeError:
            fh.close()
            raise ActionError(f"{path} is not an imgsim-index apply journal (not UTF-8 "
                              "text)") from None
        journal.records = _parse(text)
        journal.last_number = max((int(r["n"]) for r in journal.begun()), default=0)
        head = journal.records[0] if journal.records else {}
        if head.get("type") != "apply" or head.get("version") != JOURNAL_VERSION:
            fh.close()
            if _is_report(text):
                raise ActionError(f"{path} is a report, not an apply journal; pass the "
                                  "apply-*.jsonl journal that apply wrote beside it")
            raise ActionError(f"{path} is not an imgsim-index apply journal (version "
                              f"{JOURNAL_VERSION})")
        fh.seek(0, os.SEEK_END)
        if text and not text.endswith("\n"):
            fh.write("\n")  # end a torn line so the next record starts on its own
        return journal

    def _lock(self) -> None:
        try:
            lock_file(self.fh.fileno(), wait=False)
        except BlockingIOError:
            self.fh.close()
            raise ActionError(
                f"journal {self.path} is in use by another apply or undo; wait for it to finish"
            ) from None

    def close(self) -> None:
        self.fh.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def write(self, record: dict[str, Any]) -> None:
        """append(), or ActionError naming the way out when the journal cannot be written:
        the run stops before touching another file."""
        try:
            self.append(record)
        except OSError as exc:
            raise ActionError(
                f"cannot write the journal {self.path} ({exc.strerror or exc}); stopped before "
                f"touching another file. Free space, then finish with --resume {self.path} "
                "or take it back with undo") from None

    def append(self, record: dict[str, Any]) -> None:
        """Durably add one record: nothing is touched until its 'begin' is on disk."""
        self.fh.write(json_text(record) + "\n")
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.records.append(record)
        if record.get("type") == "begin":
            self.last_number = max(self.last_number, int(record["n"]))

    # -- reading ---------------------------------------------------------------
    @property
    def header(self) -> dict[str, Any]:
        return self.records[0]

    def numbers(self, kind: str) -> set[int]:
        return {int(r["n"]) for r in self.records if r.get("type") == kind}

    def begun(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("type") == "begin"]

    def next_number(self) -> int:
        return self.last_number + 1

    def has(self, kind: str) -> bool:
        return any(r.get("type") == kind for r in self.records)

    def interrupted(self) -> list[dict[str, Any]]:
        """Operations begun but neither finished nor rolled back."""
        settled = self.numbers("done") | self.numbers("rolled_back")
        return [r for r in self.begun() if int(r["n"]) not in settled]


def _is_report(text: str) -> bool:
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return False
    return isinstance(data, dict) and "folder_list" in data and "groups" in data


def _parse(text: str) -> list[dict[str, Any]]:
    records = []
    for line in text.splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line torn by a crash
        if isinstance(rec, dict):
            records.append(rec)
    return records
