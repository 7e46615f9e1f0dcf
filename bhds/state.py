"""bhds' bookkeeping database (`binance_data/.bhds/state.sqlite`).

SQLite gives every stage atomic, crash-safe records for free: what was verified (size,
LastModified, ETag, sha256), which zip fed which parsed day, which API days came back empty and
when. Each stage owns its own tables and creates them with `ensure_schema`. Only the main process
writes; worker processes return values.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator

from bhds.errors import DataError
from bhds.paths import Layout


def connect(layout: Layout) -> sqlite3.Connection:
    """Open (creating if needed) the state database with settings safe for concurrent readers."""
    path = layout.state_db
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, timeout=30, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
    except (OSError, sqlite3.Error) as exc:
        raise DataError(f"cannot open bhds state database {path} ({exc}): check that the data directory is writable") from exc
    return conn


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
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
