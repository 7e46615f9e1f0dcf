"""What the API said about each day: the days it answered empty, and when we asked.

Empty answers are not written as empty files (the legacy tool did, and so never asked again).
They go to the state database instead, with the time of asking; a later run asks again once
`REASK_AFTER` has passed, then after twice as long each further time it is still empty (up to
`REASK_MAX`), so a long halt does not cost its days' requests on every run forever. A day that
later comes back with data is removed from the table.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from datetime import date, datetime, timedelta, timezone

from bhds.state import ensure_schema
from bhds.types import TradeType

REASK_AFTER = timedelta(days=1)
REASK_MAX = timedelta(days=32)

_DDL = """
CREATE TABLE IF NOT EXISTS api_kline_empty_days (
    trade_type TEXT NOT NULL,
    symbol     TEXT NOT NULL,
    interval   TEXT NOT NULL,
    day        TEXT NOT NULL,  -- YYYY-MM-DD (UTC)
    asked_at   TEXT NOT NULL,  -- ISO-8601 UTC, the last time it was asked
    asks       INTEGER NOT NULL DEFAULT 1,  -- empty answers in a row
    PRIMARY KEY (trade_type, symbol, interval, day)
);
"""


class EmptyDayLedger:
    """The `api_kline_empty_days` table of one market and interval."""

    def __init__(self, conn: sqlite3.Connection, trade_type: TradeType, interval: str) -> None:
        self.conn = conn
        self.trade_type = TradeType(trade_type).value
        self.interval = interval
        ensure_schema(conn, _DDL)

    def asked_recently(self, symbol: str, now: datetime) -> set[date]:
        """Days that came back empty too recently to ask again at `now`."""
        rows = self.conn.execute(
            "SELECT day, asked_at, asks FROM api_kline_empty_days WHERE trade_type=? AND symbol=? AND interval=?",
            (self.trade_type, symbol, self.interval),
        )
        return {date.fromisoformat(day) for day, asked_at, asks in rows
                if datetime.fromisoformat(asked_at) + reask_after(asks) > now}

    def record_empty(self, symbol: str, day: date, asked_at: datetime) -> None:
        self.conn.execute(
            "INSERT INTO api_kline_empty_days (trade_type, symbol, interval, day, asked_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT DO UPDATE SET asked_at = excluded.asked_at, asks = asks + 1",
            (self.trade_type, symbol, self.interval, day.isoformat(), _iso(asked_at)),
        )

    def forget(self, symbol: str, days: Iterable[date]) -> None:
        """The days now have data: drop their empty records."""
        self.conn.executemany(
            "DELETE FROM api_kline_empty_days WHERE trade_type=? AND symbol=? AND interval=? AND day=?",
            [(self.trade_type, symbol, self.interval, d.isoformat()) for d in days],
        )


def reask_after(asks: int) -> timedelta:
    """How long to wait before asking again about a day that was empty `asks` times in a row."""
    return min(REASK_AFTER * 2 ** max(0, min(asks, 16) - 1), REASK_MAX)


def _iso(moment: datetime) -> str:
    # One fixed, sortable form for the database.
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")
