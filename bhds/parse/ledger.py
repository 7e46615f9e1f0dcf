"""What fed each parsed file, in bhds' state database: one row per source zip and its version.

A zip whose (size, mtime_ns) matches its row was parsed in that version; anything else (a new
zip, a re-downloaded one, a partition deleted by hand) makes its month due again. Only the main
process writes here; workers return what they did.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from bhds.state import ensure_schema, transaction

_DDL = """
CREATE TABLE IF NOT EXISTS parsed_kline_sources (
    trade_type TEXT NOT NULL,
    symbol     TEXT NOT NULL,
    interval   TEXT NOT NULL,
    zip_name   TEXT NOT NULL,
    size       INTEGER NOT NULL,
    mtime_ns   INTEGER NOT NULL,
    partition  TEXT NOT NULL,   -- YYYYMM of the partition the zip fed
    parsed_at  TEXT NOT NULL,
    PRIMARY KEY (trade_type, symbol, interval, zip_name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS parsed_funding_sources (
    trade_type TEXT NOT NULL,
    symbol     TEXT NOT NULL,
    zip_name   TEXT NOT NULL,
    size       INTEGER NOT NULL,
    mtime_ns   INTEGER NOT NULL,
    parsed_at  TEXT NOT NULL,
    PRIMARY KEY (trade_type, symbol, zip_name)
) WITHOUT ROWID;
"""

Fingerprints = dict[str, tuple[int, int]]  # zip name → (size, mtime_ns)


def prepare(conn: sqlite3.Connection) -> None:
    ensure_schema(conn, _DDL)


def archive_sizes(conn: sqlite3.Connection, key_prefix: str) -> dict[str, int]:
    """File name → size the archive stage verified, for the keys under `key_prefix` (read-only).

    The archive stage's `archive_files` table is optional: a tree verified by bhds.py has only
    markers, and then this is empty.
    """
    upper = key_prefix[:-1] + chr(ord(key_prefix[-1]) + 1)
    try:
        rows = conn.execute("SELECT key, size FROM archive_files WHERE key >= ? AND key < ?", (key_prefix, upper)).fetchall()
    except sqlite3.OperationalError:  # no such table: the archive stage never ran on this tree
        return {}
    return {key[len(key_prefix):]: size for key, size in rows}


def kline_sources(conn: sqlite3.Connection, trade_type: str, interval: str) -> dict[str, Fingerprints]:
    """Every recorded zip of one trade type and interval, by symbol."""
    by_symbol: dict[str, Fingerprints] = {}
    rows = conn.execute(
        "SELECT symbol, zip_name, size, mtime_ns FROM parsed_kline_sources WHERE trade_type = ? AND interval = ?",
        (trade_type, interval),
    )
    for symbol, name, size, mtime_ns in rows:
        by_symbol.setdefault(symbol, {})[name] = (size, mtime_ns)
    return by_symbol


def record_kline_sources(conn: sqlite3.Connection, trade_type: str, symbol: str, interval: str, partition: str,
                         sources: Iterable[tuple[str, int, int]], parsed_at: str) -> None:
    """Remember that `sources` (name, size, mtime_ns) are in `partition` as of now."""
    rows = [(trade_type, symbol, interval, name, size, mtime_ns, partition, parsed_at) for name, size, mtime_ns in sources]
    if not rows:
        return
    with transaction(conn):
        conn.executemany("INSERT OR REPLACE INTO parsed_kline_sources VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)


# A fingerprint no file can have: a zip that failed stays "changed" until it parses.
FAILED = (-1, -1)


def mark_kline_zips_failed(conn: sqlite3.Connection, trade_type: str, symbol: str, interval: str, partition: str,
                           names: Iterable[str], parsed_at: str) -> None:
    """Record zips that failed with a fingerprint that never matches, so every run tries them again
    (and fails loudly) instead of taking them for a legacy tree's already parsed days."""
    record_kline_sources(conn, trade_type, symbol, interval, partition, ((name, *FAILED) for name in names), parsed_at)


def funding_sources(conn: sqlite3.Connection, trade_type: str) -> dict[str, Fingerprints]:
    by_symbol: dict[str, Fingerprints] = {}
    rows = conn.execute("SELECT symbol, zip_name, size, mtime_ns FROM parsed_funding_sources WHERE trade_type = ?", (trade_type,))
    for symbol, name, size, mtime_ns in rows:
        by_symbol.setdefault(symbol, {})[name] = (size, mtime_ns)
    return by_symbol


def replace_funding_sources(conn: sqlite3.Connection, trade_type: str, symbol: str,
                            sources: Iterable[tuple[str, int, int]], parsed_at: str) -> None:
    """The funding file is rebuilt from all its zips, so its record is replaced as a whole."""
    rows = [(trade_type, symbol, name, size, mtime_ns, parsed_at) for name, size, mtime_ns in sources]
    with transaction(conn):
        conn.execute("DELETE FROM parsed_funding_sources WHERE trade_type = ? AND symbol = ?", (trade_type, symbol))
        conn.executemany("INSERT INTO parsed_funding_sources VALUES (?, ?, ?, ?, ?, ?)", rows)
