"""Which UTC days the parsed archive store lacks, and which recent days it cannot have yet.

The store is `parsed_data/<tt>/klines/<SYMBOL>/<interval>/*.pqt` (contract §5.2); only its
`candle_begin_time` column is read. A day "should" hold every bar that opens on it:
`1 day ÷ interval` bars for intervals under a day, one bar for `1d`, and for longer intervals
(`3d`, `1w`, `1mo`) one bar on the days where the cadence started by the store's first bar opens
one, none on the others. A day is missing when it holds fewer bars than that.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

from bhds.api.arrow import int64_values
from bhds.api.klines import is_sub_daily, ms_to_day
from bhds.paths import PARQUET_SUFFIX, Layout, list_files
from bhds.errors import DataError
from bhds.storage import open_parquet
from bhds.types import DAY_MS, Interval, TradeType

_MS = pa.timestamp("ms", tz="UTC")


@dataclass
class StoreCoverage:
    """What the parsed store holds for one symbol and interval."""

    symbol: str
    first_day: date | None = None
    last_day: date | None = None
    anchor_ms: int | None = None  # open time of the first bar: the cadence of intervals over a day
    short_days: list[date] = field(default_factory=list)  # between first and last, fewer bars than due
    rows: int = 0

    @property
    def empty(self) -> bool:
        return self.first_day is None


def bar_open_times(layout: Layout, trade_type: TradeType, symbol: str, interval: str) -> np.ndarray:
    """Sorted, unique open times (epoch ms) of every bar in the symbol's parsed partitions."""
    parts = []
    for path in list_files(layout.parsed_kline_dir(trade_type, symbol, interval), PARQUET_SUFFIX):
        column = _read_times(path)
        if column.type != _MS:  # the contract says ms; tolerate another unit
            column = column.cast(_MS)
        parts.append(int64_values(column))
    if not parts:
        return np.zeros(0, dtype=np.int64)
    # Sort and drop repeats by hand: partitions come sorted (so this is near-linear), and
    # numpy's hash-based unique is many times slower on a year of 1m bars.
    times = np.sort(np.concatenate(parts), kind="stable")
    return times[np.concatenate(([True], times[1:] != times[:-1]))]


def _read_times(path: Path) -> pa.ChunkedArray:
    """The `candle_begin_time` column of one partition (DataError naming the file if unreadable)."""
    try:
        with open_parquet(path) as parquet:
            return parquet.read(columns=["candle_begin_time"]).column("candle_begin_time")
    except (OSError, KeyError, pa.ArrowException) as exc:
        raise DataError(f"cannot read {path} ({exc}): delete it and run aws_kline parse again") from exc


def due_bars(days: np.ndarray, interval: Interval, anchor_ms: int) -> np.ndarray:
    """How many bars should open on each day (days given as days since 1970-01-01)."""
    if is_sub_daily(interval):
        return np.full(len(days), DAY_MS // interval.ms, dtype=np.int64)
    if interval.is_calendar:
        anchor = ms_to_day(anchor_ms)
        dates = [date.fromordinal(date(1970, 1, 1).toordinal() + int(d)) for d in days]
        return np.array([
            1 if d.day == 1 and ((d.year - anchor.year) * 12 + d.month - anchor.month) % interval.count == 0 else 0
            for d in dates
        ], dtype=np.int64)
    if interval.ms == DAY_MS:
        return np.ones(len(days), dtype=np.int64)
    return ((days * DAY_MS - anchor_ms) % interval.ms == 0).astype(np.int64)


def scan_store(layout: Layout, trade_type: TradeType, symbol: str, interval: Interval) -> StoreCoverage:
    """Count the store's bars per UTC day and list the short days between its first and last day."""
    times = bar_open_times(layout, trade_type, symbol, interval.text)
    coverage = StoreCoverage(symbol, rows=len(times))
    if len(times) == 0:
        return coverage
    per_day = times // DAY_MS
    starts = np.flatnonzero(np.concatenate(([True], per_day[1:] != per_day[:-1])))
    days, counts = per_day[starts], np.diff(np.append(starts, len(per_day)))
    coverage.first_day, coverage.last_day = ms_to_day(int(days[0]) * DAY_MS), ms_to_day(int(days[-1]) * DAY_MS)
    coverage.anchor_ms = int(times[0])
    every_day = np.arange(days[0], days[-1] + 1, dtype=np.int64)
    have = np.zeros(len(every_day), dtype=np.int64)
    have[days - days[0]] = counts
    short = every_day[have < due_bars(every_day, interval, coverage.anchor_ms)]
    coverage.short_days = [ms_to_day(int(d) * DAY_MS) for d in short]
    return coverage


def yesterday(now: datetime) -> date:
    """The last complete UTC day at `now`; the current day is never fetched."""
    return now.date() - timedelta(days=1)


def tail_days(coverage: StoreCoverage, interval: Interval, now: datetime) -> list[date]:
    """Days after the store's last day up to the last day whose bars are all closed at `now`."""
    if coverage.empty:
        return []
    first = coverage.last_day + timedelta(days=1)
    last = yesterday(now)
    if first > last:
        return []
    days = np.arange((first - date(1970, 1, 1)).days, (last - date(1970, 1, 1)).days + 1, dtype=np.int64)
    days = days[due_bars(days, interval, coverage.anchor_ms) > 0]
    return finished_days([ms_to_day(int(d) * DAY_MS) for d in days], interval, now)


def finished_days(days: list[date], interval: Interval, now: datetime) -> list[date]:
    """The days whose bars have all closed at `now`: before today, and for a bar longer than a day
    (which may still be forming well after the day it opens on) past its close."""
    last = yesterday(now)
    kept = [d for d in days if d <= last]
    if kept and not is_sub_daily(interval):
        opens = np.array([(d - date(1970, 1, 1)).days * DAY_MS for d in kept], dtype=np.int64)
        closed = interval.close_ms(opens) <= int(now.timestamp() * 1000)
        kept = [d for d, ok in zip(kept, closed) if ok]
    return kept


def day_list(days: list[date]) -> str:
    """`2025-01-02, 2025-01-05..2025-01-07` for logs."""
    if not days:
        return "none"
    runs: list[tuple[date, date]] = []
    for d in sorted(days):
        if runs and d == runs[-1][1] + timedelta(days=1):
            runs[-1] = (runs[-1][0], d)
        else:
            runs.append((d, d))
    return ", ".join(a.isoformat() if a == b else f"{a.isoformat()}..{b.isoformat()}" for a, b in runs)

