"""The verified-file manifest: one row per mirrored key in the state database.

A row says "the local copy of this key was checked, and it is the object S3 listed with this
size, LastModified and ETag". A later listing that still shows the same size and LastModified
needs neither a download nor a hash; a different one means Binance re-uploaded the file.
`last_modified` is NULL for files verified from disk alone (`verify`), whose server attributes
are unknown until the next download run sees them listed.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from bhds.state import ensure_schema, transaction

DDL = """
CREATE TABLE IF NOT EXISTS archive_files (
    key TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    last_modified TEXT,
    etag TEXT,
    sha256 TEXT,
    verified_at TEXT NOT NULL
) WITHOUT ROWID;
"""

# Pending writes are committed in batches: one transaction per file would cost a disk sync each.
FLUSH_EVERY = 500

log = logging.getLogger("bhds.archive")


@dataclass(frozen=True)
class Record:
    key: str
    size: int
    last_modified: str | None
    etag: str | None
    sha256: str | None
    verified_at: str = ""


def _upper_bound(prefix: str) -> str:
    # Every key starting with `prefix` sorts below the prefix with its last character bumped.
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def _records_under(conn: sqlite3.Connection, prefix: str) -> dict[str, Record]:
    rows = conn.execute(
        "SELECT key, size, last_modified, etag, sha256, verified_at FROM archive_files WHERE key >= ? AND key < ?",
        (prefix, _upper_bound(prefix)),
    ).fetchall()
    return {row[0]: Record(*row) for row in rows}


def read_only_records(db_path: Path, prefixes: Iterable[str]) -> dict[str, Record]:
    """The records under `prefixes` without writing a byte (for a dry run): {} when there is no database.

    A cleanly closed database (no `-wal` beside it) is opened as immutable, since even a
    read-only SQLite connection would create the `-wal` and `-shm` files otherwise.
    """
    if not db_path.is_file():
        return {}
    wal = db_path.with_name(db_path.name + "-wal")
    mode = "mode=ro" if wal.exists() else "immutable=1"
    conn = sqlite3.connect(f"{db_path.resolve().as_uri()}?{mode}", uri=True)
    try:
        out: dict[str, Record] = {}
        for prefix in prefixes:
            out.update(_records_under(conn, prefix))
        return out
    except sqlite3.OperationalError:  # no archive_files table yet: nothing was ever mirrored
        return {}
    except sqlite3.DatabaseError as exc:  # damaged: a real run sets it aside; a preview just cannot use it
        log.warning("%s is damaged (%s): every file is shown as new; a real run sets it aside and rebuilds it", db_path, exc)
        return {}
    finally:
        conn.close()


class Manifest:
    """Reads and buffered writes of `archive_files`; the caller flushes (also on the way out)."""

    def __init__(self, conn: sqlite3.Connection, clock: Callable[[], str]) -> None:
        ensure_schema(conn, DDL)
        self.conn = conn
        self.clock = clock
        self._pending: list[tuple[str, tuple]] = []

    def under(self, prefix: str) -> dict[str, Record]:
        """Every record whose key starts with `prefix`, by key."""
        return _records_under(self.conn, prefix)

    def get(self, key: str) -> Record | None:
        row = self.conn.execute(
            "SELECT key, size, last_modified, etag, sha256, verified_at FROM archive_files WHERE key = ?", (key,)
        ).fetchone()
        return Record(*row) if row else None

    def put(self, key: str, size: int, last_modified: str | None, etag: str | None, sha256: str | None) -> None:
        # verified_at is stamped at flush time: one clock read per batch, not per file.
        self._pending.append(("put", (key, size, last_modified, etag, sha256)))
        if len(self._pending) >= FLUSH_EVERY:
            self.flush()

    def forget(self, key: str) -> None:
        self._pending.append(("del", (key,)))
        if len(self._pending) >= FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        """Commit pending writes in order, in one transaction."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        stamp = self.clock()
        with transaction(self.conn):
            for op, values in pending:
                if op == "put":
                    self.conn.execute("INSERT OR REPLACE INTO archive_files VALUES (?, ?, ?, ?, ?, ?)", values + (stamp,))
                else:
                    self.conn.execute("DELETE FROM archive_files WHERE key = ?", values)
