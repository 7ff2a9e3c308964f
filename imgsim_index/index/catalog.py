"""catalog: the SQLite bookkeeping of an index folder (one row per image file).

The catalog is the commit point of the index: a vector exists for a row only
once the transaction naming its segment file has committed. WAL mode lets
readers (dedupe, query) see the last committed state while a writer runs.

Schema 2 adds each file's identity (dev, ino) and content digest; an older
catalog gains the columns (ALTER TABLE) when a writer opens it, and readers of
an older catalog see them as NULL. Any SQLite error that means a damaged file
becomes an IndexFormatError naming the repair; a write that finds no room
(SQLITE_FULL, or the I/O error SQLite reports for a file-size limit) becomes
a DiskFullError (`writing`), and the last commit stays whole.

File names: a path is held in memory as Python's str (os.fsdecode: a byte that is
not UTF-8 is a lone surrogate U+DC80-U+DCFF). A path that is valid UTF-8 is stored
as TEXT, as always; one that is not is stored as a BLOB of its exact bytes
(`db_name`), which SQLite compares and keeps UNIQUE like any value, and read back
with os.fsdecode (`py_name`). No schema change: old catalogs hold only TEXT.

Aliases: a file that apply hard-linked to its keeper is a second name of the keeper's
file, not a second image. Its row is set aside in the `aliases` table (same columns,
plus the keeper), out of every read of `images`; its vector stays in the vector files
(compaction keeps it: `live_ids` counts aliases), so undo puts the row back whole
(`restore_alias`). The table is created with `CREATE TABLE IF NOT EXISTS` by every
writer; readers of a catalog without it see no aliases.

Perceptual hashes: `image_hashes` holds the 32-byte hash (ingest/phash.py) of an image
row, by id, written in the transaction that writes the row (and its vector); a row with
none (too flat, embedded before hashes, imported, a video frame) has no entry. Entries
of rows deleted since are ignored by readers and dropped at compaction. Created the same
way; a catalog without it has no hashes.

Verified pairs: `verified_pairs` holds the pairs of rows (by id, a < b) a dedupe verified
as exact or copy, with their digests then (apply's evidence: groups/verified.py);
`pair_lacks`, for the pair and digests, which lacks part of the other's picture (an older
version writes only `verified_pairs`: lacks None). Created the same way."""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from imgsim_index.errors import FIX_OTHER_INDEX, NO_SPACE, IndexFormatError, InputError, no_space

SCHEMA_VERSION = 2
LOOKUP_IDS = 50_000  # ids looked up per statement
FETCH_ROWS = 200_000  # rows fetched per step when a column is read whole
_T = TypeVar("_T")

# the columns after id and path: an `images` row, and a row set aside in `aliases`
_ROW_SCHEMA = """
    root TEXT NOT NULL,
    size INTEGER,
    mtime_ns INTEGER,
    width INTEGER,
    height INTEGER,
    status TEXT NOT NULL CHECK (status IN ('embedded', 'error')),
    error TEXT,
    segment TEXT,
    added_at REAL NOT NULL,
    seq INTEGER NOT NULL DEFAULT 0,
    dev INTEGER,
    ino INTEGER,
    digest TEXT"""

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    path TEXT NOT NULL UNIQUE,{_ROW_SCHEMA}
);
CREATE INDEX IF NOT EXISTS images_seq ON images (seq);
CREATE INDEX IF NOT EXISTS images_segment ON images (segment);
CREATE TABLE IF NOT EXISTS videos (
    path TEXT PRIMARY KEY,
    root TEXT NOT NULL,
    size INTEGER,
    mtime_ns INTEGER,
    frames INTEGER NOT NULL,
    seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS aliases (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    keeper TEXT NOT NULL,{_ROW_SCHEMA}
);
CREATE TABLE IF NOT EXISTS verified_pairs (
    a INTEGER NOT NULL,
    b INTEGER NOT NULL,
    match TEXT NOT NULL,
    digest_a TEXT NOT NULL,
    digest_b TEXT NOT NULL,
    PRIMARY KEY (a, b)
);
CREATE TABLE IF NOT EXISTS pair_lacks (
    a INTEGER NOT NULL,
    b INTEGER NOT NULL,
    digest_a TEXT NOT NULL,
    digest_b TEXT NOT NULL,
    lacks INTEGER NOT NULL,
    PRIMARY KEY (a, b)
);
CREATE TABLE IF NOT EXISTS image_hashes (id INTEGER PRIMARY KEY, hash BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS segments (
    name TEXT PRIMARY KEY,
    count INTEGER NOT NULL,
    created_at REAL NOT NULL
);
"""


def db_name(path: str) -> str | bytes:
    """The value a path is stored as: itself when it is UTF-8, else its bytes (a BLOB)."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(path)
    return path


def py_name(value: str | bytes) -> str:
    """A stored path back as the str os functions take (the inverse of db_name)."""
    return value if isinstance(value, str) else os.fsdecode(value)


def _row(r: Sequence[object]) -> Row:
    return Row(r[0], py_name(r[1]), py_name(r[2]), *r[3:])  # type: ignore[arg-type]


@dataclass(frozen=True)
class Row:
    id: int
    path: str
    root: str
    size: int | None
    mtime_ns: int | None
    width: int | None
    height: int | None
    status: str
    error: str | None
    segment: str | None
    added_at: float
    seq: int  # commit number that wrote this row: rows with seq > s are newer than commit s
    dev: int | None = None  # the file's identity when it was scanned (st_dev, st_ino)
    ino: int | None = None
    digest: str | None = None  # BLAKE2b-128 of the bytes that were embedded (hex)


@dataclass(frozen=True)
class VerifiedPair:
    """A pair of rows (a < b, by id) a dedupe verified as exact or copy, with the content
    digests the rows had then."""

    a: int
    b: int
    match: str
    digest_a: str
    digest_b: str
    # which of the two lacks part of the other's picture (a crop): groups/verified.py's
    # LACKS_A / LACKS_B bits; None where the version that recorded it did not say
    lacks: int | None = 0


@dataclass(frozen=True)
class NewRow:
    """A row to write: `segment` is None for errors."""

    path: str
    root: str
    size: int | None
    mtime_ns: int | None
    width: int | None = None
    height: int | None = None
    error: str | None = None
    dev: int | None = None
    ino: int | None = None
    digest: str | None = None
    phash: bytes | None = None  # perceptual hash of the image (ingest/phash.py), if any


@dataclass(frozen=True)
class VideoDone:
    """A video whose frames are all committed."""

    path: str
    root: str
    size: int | None
    mtime_ns: int | None
    frames: int


_COLUMNS = (
    "id, path, root, size, mtime_ns, width, height, status, error, segment, added_at, seq"
)
_ROW_COLUMNS = _COLUMNS + ", dev, ino, digest"
_IDENTITY_COLUMNS = (("dev", "INTEGER"), ("ino", "INTEGER"), ("digest", "TEXT"))

REPAIR_HINT = "run verify with repair, or build a new index in another folder"


def damaged(path: str, exc: sqlite3.Error) -> IndexFormatError:
    """The one-line error for a catalog SQLite cannot read."""
    return IndexFormatError(f"the index catalog {path} is damaged ({exc}); {REPAIR_HINT}")


def not_writable(path: str, exc: object) -> InputError:
    """The one-line error for a catalog (or index file) this user cannot write."""
    return InputError(f"the index {path} is not writable ({exc}); check the permissions of "
                      "the index folder and its files (nothing is damaged)")


# SQLite's result codes for a catalog that cannot be written: read-only, no permission
_READONLY_CODES = frozenset({sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM,
                             sqlite3.SQLITE_CANTOPEN})
# errno values of a file or folder this user cannot write
_NO_WRITE = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})


# SQLite's result codes for a file it cannot read as a database: a damaged page (CORRUPT,
# "database disk image is malformed") or no database at all (NOTADB)
_DAMAGE_CODES = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})


def _checked(method: Callable[..., _T]) -> Callable[..., _T]:
    """`method` of a catalog's connection or cursor, raising damaged() where SQLite finds
    the file damaged, whichever read or write finds it (a page is read when first needed,
    so any statement, fetch or commit may be the one)."""

    @functools.wraps(method)
    def run(self: Any, *args: Any) -> _T:
        try:
            return method(self, *args)
        except sqlite3.DatabaseError as exc:
            code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
            if code not in _DAMAGE_CODES and code not in _READONLY_CODES:
                raise
            conn = self if isinstance(self, sqlite3.Connection) else self.connection
            path = getattr(conn, "catalog_path", "?")
            if code in _READONLY_CODES:
                raise not_writable(f"catalog {path}", exc) from None
            raise damaged(path, exc) from None

    return run


class _Cursor(sqlite3.Cursor):
    execute = _checked(sqlite3.Cursor.execute)
    executemany = _checked(sqlite3.Cursor.executemany)
    executescript = _checked(sqlite3.Cursor.executescript)
    fetchone = _checked(sqlite3.Cursor.fetchone)
    fetchmany = _checked(sqlite3.Cursor.fetchmany)
    fetchall = _checked(sqlite3.Cursor.fetchall)
    __next__ = _checked(sqlite3.Cursor.__next__)


class _Connection(sqlite3.Connection):
    """A catalog's connection: every statement runs on a _Cursor, so a damaged file is an
    IndexFormatError wherever it shows, never a bare sqlite3.DatabaseError."""

    catalog_path = ""

    def cursor(self, factory: Any = _Cursor) -> Any:
        return super().cursor(factory)

    def execute(self, sql: str, parameters: Any = (), /) -> Any:
        return self.cursor().execute(sql, parameters)

    def executemany(self, sql: str, parameters: Any, /) -> Any:
        return self.cursor().executemany(sql, parameters)

    def executescript(self, script: str, /) -> Any:
        return self.cursor().executescript(script)

    commit = _checked(sqlite3.Connection.commit)


def _no_room(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF  # the primary result code
    return code in (sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR)


@contextlib.contextmanager
def writing(what: str) -> Iterator[None]:
    """Turn a write of `what` that found no room (OSError ENOSPC, EDQUOT or EFBIG, or
    SQLite's full-disk and write errors) into a one-line DiskFullError."""
    try:
        yield
    except OSError as exc:
        if exc.errno in _NO_WRITE:
            raise InputError(f"cannot write {what}: {exc.strerror} ({exc.filename}); check "
                             "its permissions") from None
        if exc.errno not in NO_SPACE:
            raise
        raise no_space(what, exc.strerror or exc) from None
    except sqlite3.OperationalError as exc:
        if not _no_room(exc):
            raise
        raise no_space(what, f"SQLite: {exc}") from None


class Catalog:
    def __init__(self, path: str, readonly: bool = False):
        self.path = path
        uri = f"file:{path}?mode=ro" if readonly else f"file:{path}"
        try:
            self.db = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=30,
                                      factory=_Connection)
        except sqlite3.Error as exc:
            raise damaged(path, exc) from None
        self.db.catalog_path = path
        try:
            self._open(path, readonly)
        except sqlite3.DatabaseError as exc:
            self.db.close()
            if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
                raise
            if not readonly and _no_room(exc):
                raise no_space(f"the index catalog {path}", f"SQLite: {exc}") from None
            if getattr(exc, "sqlite_errorcode", 0) & 0xFF in _READONLY_CODES:
                raise not_writable(f"catalog {path}", exc) from None
            raise damaged(path, exc) from None

    def _open(self, path: str, readonly: bool) -> None:
        self.db.execute("PRAGMA busy_timeout = 30000")
        if not readonly:
            self.db.execute("PRAGMA journal_mode = WAL")
            self.db.execute("PRAGMA synchronous = FULL")
            try:
                self.db.executescript(_SCHEMA)
            except sqlite3.OperationalError as exc:
                if _no_room(exc):
                    raise no_space(f"the index catalog {path}", f"SQLite: {exc}") from None
                raise IndexFormatError(
                    f"{path} has an unknown catalog layout ({exc}); it was written by another "
                    "version of imgsim-index; build a new index in another folder",
                    fix=FIX_OTHER_INDEX
                ) from None
            self._migrate()
            self.db.execute(
                "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
        have = {r[1] for r in self.db.execute("PRAGMA table_info(images)")}
        extra = [name if name in have else f"NULL AS {name}" for name, _ in _IDENTITY_COLUMNS]
        self._columns = ", ".join([_COLUMNS, *extra])

    def _migrate(self) -> None:
        """Schema 1 -> 2: the identity columns, added in place (old rows hold NULL)."""
        have = {r[1] for r in self.db.execute("PRAGMA table_info(images)")}
        for name, kind in _IDENTITY_COLUMNS:
            if name not in have:
                self.db.execute(f"ALTER TABLE images ADD COLUMN {name} {kind}")
        self.db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'",
                        (str(SCHEMA_VERSION),))

    def quick_check(self) -> list[str]:
        """SQLite's own check of the file: [] when sound, else its findings."""
        try:
            got = [str(r[0]) for r in self.db.execute("PRAGMA quick_check")]
        except (sqlite3.DatabaseError, IndexFormatError) as exc:
            return [str(exc)]
        return [] if got == ["ok"] else got

    def close(self) -> None:
        self.db.close()

    # -- reads -------------------------------------------------------------
    def rows(self, where: str = "", params: Sequence[object] = ()) -> list[Row]:
        sql = f"SELECT {self._columns} FROM images {where} ORDER BY id"
        try:
            return [_row(r) for r in self.db.execute(sql, params)]
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
                raise
            raise damaged(self.path, exc) from None

    def rows_by_id(self, ids: Iterable[int]) -> dict[int, Row]:
        """The rows with these ids (any that no longer exist are left out)."""
        want = sorted(set(ids))
        got: dict[int, Row] = {}
        for s in range(0, len(want), 500):  # within SQLite's limit on bound values
            part = want[s:s + 500]
            got.update((r.id, r) for r in self.rows(
                f"WHERE id IN ({', '.join('?' * len(part))})", part))
        return got

    def embedded_ids(self) -> dict[str, np.ndarray]:
        """Vector file -> the ascending ids of the embedded rows whose vector it holds,
        without building their rows."""
        names = [str(r[0]) for r in self.db.execute(
            "SELECT DISTINCT segment FROM images WHERE status = 'embedded'")]
        return {name: _int_column(self.db.execute(
            "SELECT id FROM images WHERE segment = ? AND status = 'embedded' ORDER BY id",
            (name,))) for name in names}

    def count_embedded(self, prefixes: Sequence[str] | None = None) -> int:
        """The embedded rows (whose path starts with one of `prefixes` when given)."""
        if prefixes is None:
            return int(self.db.execute(
                "SELECT COUNT(*) FROM images WHERE status = 'embedded'").fetchone()[0])
        return sum(int(self.db.execute(
            "SELECT COUNT(*) FROM images WHERE status = 'embedded' AND path >= ? AND path < ?",
            (p, prefix_end(p))).fetchone()[0])
            for p in prefixes)

    def segments_of(self, ids: np.ndarray) -> dict[int, str]:
        """id -> the vector file of each of `ids` that is an embedded row (looked up by id:
        work follows len(ids), not the catalog's size)."""
        out: dict[int, str] = {}
        for s in range(0, len(ids), LOOKUP_IDS):
            chunk = json.dumps([int(i) for i in ids[s:s + LOOKUP_IDS].tolist()])
            out.update((int(i), str(n)) for i, n in self.db.execute(
                "SELECT id, segment FROM images WHERE status = 'embedded' AND id IN "
                "(SELECT value FROM json_each(?))", (chunk,)))
        return out

    def embedded_outside(self, prefixes: Sequence[str]) -> list[Row]:
        """The embedded rows whose path starts with none of `prefixes` (text), found by
        ranges on the path: a path stored as bytes sorts after all text, so it is always
        among them, as is a text path whose next character is U+10FFFF (a superset)."""
        ranges = "".join(" AND NOT (path >= ? AND path < ?)" for _ in prefixes)
        return self.rows(f"WHERE status = 'embedded'{ranges}",
                         [v for p in prefixes for v in (p, p + "\U0010ffff")])

    def row_of(self, path: str) -> Row | None:
        got = self.rows("WHERE path = ?", (db_name(path),))
        return got[0] if got else None

    def roots(self) -> set[str]:
        """The folders the rows were found under (the index's input folders)."""
        return {py_name(r[0]) for r in self.db.execute("SELECT DISTINCT root FROM images")}

    def _has_table(self, name: str) -> bool:
        return self.db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                               (name,)).fetchone() is not None

    def image_hashes(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids ascending, (n, 32) uint8 hashes) of the embedded rows that have a hash."""
        if not self._has_table("image_hashes"):
            return np.zeros(0, np.int64), np.zeros((0, 32), np.uint8)
        got = self.db.execute(
            "SELECT h.id, h.hash FROM image_hashes h JOIN images i ON i.id = h.id"
            " WHERE i.status = 'embedded' ORDER BY h.id").fetchall()
        ids = np.fromiter((r[0] for r in got), np.int64, len(got))
        hashes = np.frombuffer(b"".join(r[1] for r in got), np.uint8).reshape(len(got), 32)
        return ids, hashes

    def hashes_of(self, ids: Iterable[int]) -> dict[int, bytes]:
        """The perceptual hashes of these rows, by id (rows without one are left out)."""
        if not self._has_table("image_hashes"):
            return {}
        want = sorted(set(ids))
        out: dict[int, bytes] = {}
        for s in range(0, len(want), 500):  # within SQLite's limit on bound values
            part = want[s:s + 500]
            out.update(self.db.execute(
                f"SELECT id, hash FROM image_hashes WHERE id IN ({', '.join('?' * len(part))})",
                part).fetchall())
        return out

    def verified_pairs(self, ids: Iterable[int]) -> list[VerifiedPair]:
        """The recorded verified pairs with both rows among `ids`."""
        if not self._has_table("verified_pairs"):
            return []  # a catalog from before pairs were recorded
        want = sorted(set(ids))
        keep = set(want)
        # an older version's catalog, opened read-only, has no pair_lacks; an entry for
        # other digests is another content's
        lacks, join = (("l.lacks", " LEFT JOIN pair_lacks l ON l.a = v.a AND l.b = v.b AND "
                        "l.digest_a = v.digest_a AND l.digest_b = v.digest_b")
                       if self._has_table("pair_lacks") else ("NULL", ""))
        out = []
        for s in range(0, len(want), 500):  # within SQLite's limit on bound values
            part = want[s:s + 500]
            out += [VerifiedPair(*r) for r in self.db.execute(
                f"SELECT v.a, v.b, v.match, v.digest_a, v.digest_b, {lacks} FROM "
                f"verified_pairs v{join} WHERE v.a IN ({', '.join('?' * len(part))})", part)
                if r[1] in keep]
        return out

    def rows_by_path(self) -> dict[str, Row]:
        return {r.path: r for r in self.rows()}

    def videos(self) -> dict[str, tuple[int | None, int | None, int]]:
        """Fully indexed videos: path -> (size, mtime_ns, frames)."""
        return {py_name(p): (s, m, f) for p, s, m, f in
                self.db.execute("SELECT path, size, mtime_ns, frames FROM videos")}

    def segments(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT name, count FROM segments"))

    def live_ids(self, segment: str) -> np.ndarray:
        """Sorted ids of the embedded rows whose current vector is in `segment`."""
        cur = self.db.execute("SELECT id FROM images WHERE segment = ? AND status = 'embedded'"
                              " UNION SELECT id FROM aliases WHERE segment = ? ORDER BY id",
                              (segment, segment))
        return np.fromiter((r[0] for r in cur), np.int64)

    def counts(self) -> dict[str, int]:
        got = dict(self.db.execute("SELECT status, COUNT(*) FROM images GROUP BY status"))
        return {"embedded": got.get("embedded", 0), "errors": got.get("error", 0)}

    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    # -- writes (inside `transaction`) --------------------------------------
    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction (BEGIN IMMEDIATE): committed when the block ends,
        rolled back when it raises (KeyboardInterrupt included)."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
            with writing(f"the index catalog {self.path}"):
                self.db.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise

    def last_seq(self) -> int:
        return int(self.get_meta("last_seq") or 0)

    def next_seq(self) -> int:
        """Number this commit (inside the transaction, so a rollback gives it back)."""
        seq = self.last_seq() + 1
        self.set_meta("last_seq", str(seq))
        return seq

    def upsert(self, rows: Iterable[NewRow], segment: str | None, seq: int = 0) -> list[int]:
        """Insert or replace rows by path, keeping an existing path's id. Returns ids."""
        now = time.time()
        ids = []
        for r in rows:
            status = "error" if r.error is not None else "embedded"
            cur = self.db.execute(
                "INSERT INTO images (path, root, size, mtime_ns, width, height, status, error,"
                " segment, added_at, seq, dev, ino, digest)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(path) DO UPDATE SET root=excluded.root, size=excluded.size,"
                " mtime_ns=excluded.mtime_ns, width=excluded.width, height=excluded.height,"
                " status=excluded.status, error=excluded.error, segment=excluded.segment,"
                " added_at=excluded.added_at, seq=excluded.seq, dev=excluded.dev,"
                " ino=excluded.ino, digest=excluded.digest RETURNING id",
                (db_name(r.path), db_name(r.root), r.size, r.mtime_ns, r.width, r.height,
                 status, r.error, None if r.error is not None else segment, now, seq,
                 r.dev, r.ino, r.digest),
            )
            ids.append(int(cur.fetchone()[0]))
            self.set_hash(ids[-1], r.phash)
        return ids

    def set_hash(self, row_id: int, phash: bytes | None) -> None:
        """Record (or, None, forget) the perceptual hash of a row."""
        if phash is None:
            self.db.execute("DELETE FROM image_hashes WHERE id = ?", (row_id,))
        else:
            self.db.execute("INSERT OR REPLACE INTO image_hashes VALUES (?, ?)",
                            (row_id, phash))

    def video_done(self, v: VideoDone, seq: int) -> None:
        self.db.execute("INSERT OR REPLACE INTO videos VALUES (?, ?, ?, ?, ?, ?)",
                        (db_name(v.path), db_name(v.root), v.size, v.mtime_ns, v.frames, seq))

    def delete_video(self, path: str) -> int:
        """Forget a video: its completion record and every frame row."""
        self.db.execute("DELETE FROM videos WHERE path = ?", (db_name(path),))
        lo = db_name(path + "#t=")
        hi = lo + b"\xff" if isinstance(lo, bytes) else lo + "\U0010ffff"
        return self.db.execute("DELETE FROM images WHERE path >= ? AND path < ?",
                               (lo, hi)).rowcount

    def add_segment(self, name: str, count: int) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO segments VALUES (?, ?, ?)", (name, count, time.time())
        )

    def move_segments(self, names: Sequence[str], segment: str, count: int) -> None:
        """After a merge: the embedded rows whose vector lived in one of `names` now find it
        in `segment` (by the segment index: work follows the rows moved)."""
        for old in names:
            self.db.execute("UPDATE images SET segment = ? WHERE segment = ? AND "
                            "status = 'embedded'", (segment, old))
            self.db.execute("UPDATE aliases SET segment = ? WHERE segment = ? AND "
                            "status = 'embedded'", (segment, old))
            self.db.execute("DELETE FROM segments WHERE name = ?", (old,))
        self.add_segment(segment, count)

    def move_all_to(self, segment: str, count: int) -> None:
        """After a compaction: every embedded row's vector now lives in `segment`."""
        self.db.execute("UPDATE images SET segment = ? WHERE status = 'embedded'", (segment,))
        self.db.execute("UPDATE aliases SET segment = ? WHERE status = 'embedded'", (segment,))
        self.db.execute("DELETE FROM segments")
        self.add_segment(segment, count)
        self.db.execute("DELETE FROM image_hashes WHERE id NOT IN"
                        " (SELECT id FROM images UNION SELECT id FROM aliases)")

    def set_identity(self, path: str, dev: int | None, ino: int | None, digest: str) -> None:
        """Record an unchanged file's identity and digest (rows written before schema 2)."""
        self.db.execute("UPDATE images SET dev = ?, ino = ?, digest = ? WHERE path = ?",
                        (dev, ino, digest, db_name(path)))

    def rename_path(self, old: str, new: str, dev: int | None, ino: int | None,
                    digest: str | None, found: NewRow | None = None) -> bool:
        """Give the row of `old` the path `new` (a file moved by apply or undo, or found
        moved by a build), keeping its id and vector, with the file's identity now. A stale
        row already at `new` goes. `found`: the root, size and mtime the file has now (a
        build's move; apply's moves keep the row's, so a parked row keeps its root)."""
        old_v, new_v = db_name(old), db_name(new)
        if self.db.execute("SELECT 1 FROM images WHERE path = ?", (old_v,)).fetchone() is None:
            return False
        self.db.execute("DELETE FROM images WHERE path = ?", (new_v,))
        self.db.execute("UPDATE images SET path = ?, dev = ?, ino = ?, digest = ? WHERE path = ?",
                        (new_v, dev, ino, digest, old_v))
        if found is not None:
            self.db.execute("UPDATE images SET root = ?, size = ?, mtime_ns = ? WHERE path = ?",
                            (db_name(found.root), found.size, found.mtime_ns, new_v))
        return True

    def set_alias(self, path: str, keeper: str) -> bool:
        """Set the row of `path` aside as a second name of `keeper`'s file (a hard link made
        by apply): out of `images`, its vector kept for `restore_alias`."""
        name = db_name(path)
        got = self.db.execute(
            f"INSERT OR REPLACE INTO aliases ({_ROW_COLUMNS}, keeper)"
            f" SELECT {_ROW_COLUMNS}, ? FROM images WHERE path = ?", (db_name(keeper), name))
        if not got.rowcount:
            return False
        self.db.execute("DELETE FROM images WHERE path = ?", (name,))
        return True

    def restore_alias(self, path: str, seq: int) -> bool:
        """Put the row set aside by `set_alias` back (same id, segment and vector), as written
        by commit `seq` (the undo's): the IVF files it again like any new row, since its
        entries may have been dropped while it was set aside. Not when a row for `path`
        exists again (a build indexed it meanwhile) or its segment is gone: then the
        set-aside row is dropped and a build embeds what is there."""
        name = db_name(path)
        got = self.db.execute(
            f"INSERT INTO images ({_ROW_COLUMNS}) SELECT {_ROW_COLUMNS} FROM aliases"
            " WHERE path = ? AND (segment IS NULL OR segment IN (SELECT name FROM segments))"
            " AND NOT EXISTS (SELECT 1 FROM images WHERE path = ?)", (name, name))
        if got.rowcount:
            self.db.execute("UPDATE images SET seq = ? WHERE path = ?", (seq, name))
        self.db.execute("DELETE FROM aliases WHERE path = ?", (name,))
        return bool(got.rowcount)

    def aliases(self) -> dict[str, str]:
        """Rows set aside as hard links: path -> keeper."""
        return {py_name(p): py_name(k)
                for p, k in self.db.execute("SELECT path, keeper FROM aliases")}

    def delete_paths(self, paths: Iterable[str]) -> int:
        n = 0
        for p in paths:
            n += self.db.execute("DELETE FROM images WHERE path = ?", (db_name(p),)).rowcount
        return n

    def record_verified(self, copies: Iterable[VerifiedPair],
                        not_copies: Iterable[tuple[int, int]]) -> None:
        """Record pairs verified as exact or copy; forget those now found to be other
        shots (a, b: row ids, a < b)."""
        copies, gone = list(copies), list(not_copies)
        self.db.executemany("INSERT OR REPLACE INTO verified_pairs (a, b, match, digest_a, "
                            "digest_b) VALUES (?, ?, ?, ?, ?)",
                            [(p.a, p.b, p.match, p.digest_a, p.digest_b) for p in copies])
        self.db.executemany("INSERT OR REPLACE INTO pair_lacks VALUES (?, ?, ?, ?, ?)",
                            [(p.a, p.b, p.digest_a, p.digest_b, p.lacks) for p in copies
                             if p.lacks is not None])
        self.db.executemany("DELETE FROM verified_pairs WHERE a = ? AND b = ?", gone)
        unknown = [(p.a, p.b) for p in copies if p.lacks is None]
        self.db.executemany("DELETE FROM pair_lacks WHERE a = ? AND b = ?", gone + unknown)

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))


def _int_column(cursor: Any) -> np.ndarray:
    """The first column of a query's rows as int64, fetched in steps (no object per row
    kept)."""
    parts = [np.zeros(0, np.int64)]
    while rows := cursor.fetchmany(FETCH_ROWS):
        parts.append(np.asarray(rows, np.int64)[:, 0])
    return np.concatenate(parts)


def prefix_end(prefix: str) -> str:
    """The smallest string greater than every string starting with `prefix`."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1) if prefix else "\U0010ffff"

