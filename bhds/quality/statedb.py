"""Facts the archive and API stages recorded in the state DB, read defensively.

Each stage owns its tables and their layout may change, so nothing here depends on a table name.
The database is opened read-only and every table is inspected at run time:

- the archive's LastModified: a table with a `key` or `path` column holding this market's kline
  keys (`data/<market>/daily/klines/<SYM>/<interval>/...zip`) and a `last_modified`-like column
  (ISO text or epoch seconds/ms), max per symbol;
- days the API answered with nothing: a table whose name holds `empty` with `symbol` and `day`
  columns (`YYYY-MM-DD` or `YYYYMMDD`), filtered by `trade_type`/`market` and
  `interval`/`time_interval` when present.

Anything absent, unreadable or of an unexpected shape leaves the figure unknown (None).
"""

from __future__ import annotations

import logging
import math
import os
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from bhds.paths import kline_symbols_prefix, market_segment
from bhds.quality.grid import day_number
from bhds.types import TradeType

log = logging.getLogger("bhds.quality")

_SYMBOL_COLUMNS = ("symbol",)
_TRADE_TYPE_COLUMNS = ("trade_type", "market", "tt")
_INTERVAL_COLUMNS = ("interval", "time_interval")
_KEY_COLUMNS = ("key", "s3_key", "path", "local_path", "file", "name")
_MODIFIED_COLUMNS = ("last_modified", "lastmodified", "s3_last_modified", "remote_last_modified")


@dataclass
class StateFacts:
    last_modified_ms: dict[str, int] = field(default_factory=dict)
    api_empty_days: dict[str, set[int]] = field(default_factory=dict)  # day numbers


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _first(columns: list[str], wanted: tuple[str, ...]) -> str | None:
    lower = {c.lower(): c for c in columns}
    return next((lower[w] for w in wanted if w in lower), None)


# LastModified outside these years is a broken value, not a date to report (or to crash on).
_SANE_MS = (1_230_768_000_000, 4_102_444_800_000)  # 2009-01-01 .. 2100-01-01


def _epoch_ms(value: object) -> int | None:
    """LastModified as ISO text (`2024-01-02T03:04:05.000Z`) or epoch seconds / ms; None if not a sane time."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            return None
        ms = int(value if value > 1e11 else value * 1000)
        return ms if _SANE_MS[0] <= ms < _SANE_MS[1] else None
    text = str(value).strip()
    try:
        return _epoch_ms(float(text))
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        try:  # the HTTP date format of a Last-Modified header
            parsed = datetime.strptime(text, "%a, %d %b %Y %H:%M:%S %Z")
        except ValueError:
            return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return _epoch_ms(int(parsed.timestamp() * 1000))


def read_facts(db_path: Path, trade_type: TradeType, interval: str, symbols: list[str]) -> StateFacts:
    facts = StateFacts()
    if not db_path.is_file():
        return facts
    wanted = set(symbols)
    try:
        conn, tables = _open_readonly(db_path)
    except sqlite3.Error as exc:
        log.debug("state DB %s not readable: %s", db_path, exc)
        return facts
    try:
        for table in tables:
            try:
                columns = [row[1] for row in conn.execute(f"PRAGMA table_info({_quote(table)})")]
                _last_modified(conn, table, columns, trade_type, interval, wanted, facts)
                _api_empty_days(conn, table, columns, trade_type, interval, wanted, facts)
            except sqlite3.Error as exc:
                log.debug("state table %s skipped: %s", table, exc)
    except sqlite3.Error as exc:
        log.debug("state DB %s not readable: %s", db_path, exc)
    finally:
        conn.close()
    return facts


def _open_readonly(db_path: Path) -> tuple[sqlite3.Connection, list[str]]:
    """The database opened read-only, and its tables. On a read-only file system SQLite cannot
    create the WAL's shared-memory file that `mode=ro` needs: nobody can be writing there, so the
    file is opened as immutable instead."""
    last: sqlite3.Error | None = None
    for query in ("mode=ro", "mode=ro&immutable=1"):
        conn = sqlite3.connect(f"file:{db_path}?{query}", uri=True, timeout=5)
        try:
            return conn, [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        except sqlite3.Error as exc:
            conn.close()
            last = exc
            if os.access(db_path.parent, os.W_OK):
                break  # a writable directory: the problem is the file itself
    raise last


def _scope(columns: list[str], trade_type: TradeType, interval: str) -> tuple[str, list[str]]:
    """A WHERE clause keeping this trade type and interval, for the columns the table has."""
    where, params = [], []
    tt_col = _first(columns, _TRADE_TYPE_COLUMNS)
    if tt_col:
        where.append(f"{_quote(tt_col)} IN (?, ?)")
        params += [TradeType(trade_type).value, market_segment(trade_type)]
    iv_col = _first(columns, _INTERVAL_COLUMNS)
    if iv_col:
        where.append(f"{_quote(iv_col)} = ?")
        params.append(interval)
    return (" WHERE " + " AND ".join(where)) if where else "", params


def _last_modified(conn: sqlite3.Connection, table: str, columns: list[str], trade_type: TradeType, interval: str,
                   wanted: set[str], facts: StateFacts) -> None:
    key = _first(columns, _KEY_COLUMNS)
    modified = _first(columns, _MODIFIED_COLUMNS)
    if key is None or modified is None:
        return
    prefix = kline_symbols_prefix(trade_type)  # data/<market>/daily/klines/
    sql = f"SELECT {_quote(key)}, {_quote(modified)} FROM {_quote(table)} WHERE {_quote(key)} LIKE ?"
    for text, value in conn.execute(sql, ("%" + prefix + "%",)):
        rest = str(text).replace("\\", "/").split(prefix, 1)[-1].split("/")
        if len(rest) < 3 or rest[1] != interval or rest[0] not in wanted or not rest[-1].endswith(".zip"):
            continue
        ms = _epoch_ms(value)
        if ms is not None and ms > facts.last_modified_ms.get(rest[0], -1):
            facts.last_modified_ms[rest[0]] = ms


def _api_empty_days(conn: sqlite3.Connection, table: str, columns: list[str], trade_type: TradeType, interval: str,
                    wanted: set[str], facts: StateFacts) -> None:
    symbol = _first(columns, _SYMBOL_COLUMNS)
    day = _first(columns, ("day", "date"))
    if "empty" not in table.lower() or symbol is None or day is None:
        return
    where, params = _scope(columns, trade_type, interval)
    for name, text in conn.execute(f"SELECT {_quote(symbol)}, {_quote(day)} FROM {_quote(table)}{where}", params):
        if name not in wanted:
            continue
        try:
            facts.api_empty_days.setdefault(name, set()).add(day_number(str(text)[:10]))
        except ValueError:
            continue
