"""bhds' bookkeeping database (`binance_data/.bhds/state.sqlite`).

SQLite gives every stage atomic, crash-safe records for free: what was verified (size,
LastModified, ETag, sha256), which zip fed which parsed day, which API days came back empty and
when. Each stage owns its own tables and creates them with `ensure_schema`. Only the main process
writes; worker processes return values.

Everything here is derivable from the files on disk, so it is never the user's job to repair it:
a database that is damaged (not SQLite, cut short, malformed) is moved aside to
`state.sqlite.damaged-<UTC time>` with one warning and an empty one takes its place; each stage
then re-derives its records from the files, as on a tree written by bhds.py (download re-records
the verified zips it finds, verify hashes the unmarked ones, parse adopts the days its partitions
already hold, the API asks again about empty days).

Tables (owner → table): archive (`bhds/archive/manifest.py`) → `archive_files`; parse
(`bhds/parse/ledger.py`) → `parsed_kline_sources`, `parsed_funding_sources`; API
(`bhds/api/ledger.py`) → `api_kline_empty_days`. `quality` only reads them.

A full disk while writing here is a `DiskFull` error naming this file, like any other write.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from bhds import storage
from bhds.errors import DataError, disk_full, is_disk_full
from bhds.paths import Layout

log = logging.getLogger("bhds.state")

_HEADER = b"SQLite format 3\x00"
# SQLite's own result codes for "this file is not (or no longer) a database".
_DAMAGED_CODES = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})


class StateConnection(sqlite3.Connection):
    """A connection that turns SQLite's "database or disk is full" into bhds' disk-full error naming
    the file, and damage found mid-run into a set-aside database and a one-line error."""

    layout: Layout

    def execute(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201 - sqlite3's own signature
        try:
            return super().execute(*args, **kwargs)
        except sqlite3.DatabaseError as exc:
            raise self._translated(exc) from exc

    def executemany(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
        try:
            return super().executemany(*args, **kwargs)
        except sqlite3.DatabaseError as exc:
            raise self._translated(exc) from exc

    def executescript(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
        try:
            return super().executescript(*args, **kwargs)
        except sqlite3.DatabaseError as exc:
            raise self._translated(exc) from exc

    def _translated(self, exc: sqlite3.DatabaseError) -> Exception:
        if is_disk_full(exc):
            return disk_full(self.layout.state_db, exc)
        if _is_damage(exc):
            # Found deep inside, after this run already relied on it: set aside, and start again.
            aside = set_aside(self.layout, str(exc), warn=False)
            kept = f"; kept it as {aside.name}" if aside else ""
            return DataError(f"bhds state database {self.layout.state_db} is damaged ({exc}){kept}: run the same "
                             "command again, it rebuilds what it needs from the files on disk")
        return exc


def _is_damage(exc: sqlite3.DatabaseError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in _DAMAGED_CODES  # extended codes keep the primary one in the low byte


def connect(layout: Layout) -> sqlite3.Connection:
    """Open (creating if needed) the state database with settings safe for concurrent readers.

    A damaged database is set aside and replaced by an empty one (see the module doc).
    """
    path = layout.state_db
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise (disk_full(path.parent, exc) if is_disk_full(exc) else _unwritable(path, exc)) from exc
    problem = damage(path)
    if problem is None:
        try:
            return _open(layout)
        except sqlite3.DatabaseError as exc:
            if not _is_damage(exc):
                raise _unwritable(path, exc) from exc
            problem = str(exc)
    set_aside(layout, problem)
    try:
        return _open(layout)
    except sqlite3.Error as exc:
        raise _unwritable(path, exc) from exc


def _open(layout: Layout) -> StateConnection:
    conn = sqlite3.connect(layout.state_db, timeout=30, isolation_level=None, factory=StateConnection)
    try:
        # Plain sqlite3 calls here: damage must reach connect(), not set the file aside from inside.
        sqlite3.Connection.execute(conn, "PRAGMA journal_mode=WAL")
        sqlite3.Connection.execute(conn, "PRAGMA synchronous=NORMAL")
        sqlite3.Connection.execute(conn, "SELECT count(*) FROM sqlite_master").fetchone()  # fails on a damaged file
        conn.layout = layout
    except BaseException:
        conn.close()
        raise
    return conn


def _unwritable(path: Path, exc: BaseException) -> DataError:
    return DataError(f"cannot open bhds state database {path} ({exc}): check that the data directory is writable")


def damage(path: Path) -> str | None:
    """What is wrong with the database file at `path`, from its header alone; None when it looks whole.

    Cheap (one 100-byte read), so every command can afford it: a file that is not SQLite, or one
    shorter than the page count its header records (cut short by a full disk or a bad copy).
    Damage deeper inside is found by SQLite when the page is read.
    """
    try:
        header = storage.read_small(path, 100)
        size = path.stat().st_size
    except OSError:
        return None  # missing (a new store) or not readable (a permission problem, reported by the open)
    if size == 0:
        return None  # a new, empty database (SQLite writes the header with the first table)
    wal = path.with_name(path.name + "-wal")
    if wal.exists() and wal.stat().st_size > 0:
        # Another process may be checkpointing (page 1 is written before the file grows): leave
        # the judgement to SQLite, which replays the WAL.
        pages = 0
    else:
        pages = int.from_bytes(header[28:32], "big")
    if len(header) < 100 or not header.startswith(_HEADER):
        return "not an SQLite database"
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    # The page count is valid only while the "version valid for" number matches the change counter.
    if header[92:96] == header[24:28] and pages and size < pages * page_size:
        return f"cut short: {size} bytes, its header says {pages * page_size}"
    return None


def set_aside(layout: Layout, problem: str, *, warn: bool = True) -> Path | None:
    """Rename the damaged database (and its WAL) to `state.sqlite.damaged-<time>`; return the new name.

    `warn`: log the one warning that the run goes on with a new database.
    """
    path = layout.state_db
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    aside = layout.state_db_set_aside(stamp)
    try:
        storage.replace_file(path, aside)
    except FileNotFoundError:
        return None  # another bhds process set it aside first
    except OSError as exc:
        raise DataError(f"bhds state database {path} is damaged ({problem}) and cannot be moved aside ({exc}): "
                        "delete it (bhds rebuilds it from the files) and run the command again") from exc
    for suffix in ("-wal", "-shm"):
        # The WAL belongs to the damaged file; the shared-memory index is rebuilt by SQLite.
        with contextlib.suppress(FileNotFoundError):
            side = path.with_name(path.name + suffix)
            if suffix == "-wal":
                storage.replace_file(side, aside.with_name(aside.name + suffix))
            else:
                storage.remove(side)
    if warn:
        log.warning("bhds state database %s was damaged (%s): kept it as %s and started a new one; "
                    "this run re-derives what it needs from the files on disk", path, problem, aside.name)
    return aside


def ensure_schema(conn: sqlite3.Connection, ddl: str) -> None:
    """Run CREATE TABLE IF NOT EXISTS ... statements (idempotent)."""
    conn.executescript(ddl)


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN ... COMMIT, rolled back on error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        with contextlib.suppress(sqlite3.Error, DataError):  # a failed COMMIT may have ended it already
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
