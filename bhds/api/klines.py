"""One UTC day of klines: which requests cover it, and how their answers become a table.

A day is split into the windows that cost the least request weight (then the fewest calls),
each asking for exactly the bars it spans (so COIN-M's "most recent `limit` before endTime" rule
returns the same bars as the other markets). On the futures markets three calls of 480 bars
weigh 6 where one call of 1440 weighs 10, so a budget-bound fill gets 1.67x the days a minute.
The answers are normalised to ms, restricted to the day and to bars already closed at `now`,
de-duplicated (last wins) and sorted, in the contract's schema.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import pyarrow as pa

from bhds.api.arrow import from_numpy, int64_values
from bhds.schema import KLINE_SCHEMA
from bhds.types import DAY_MS, Interval

_EPOCH = date(1970, 1, 1)
# Open times at or above this are microseconds (ms stays below it until the year 5138).
_MICROSECONDS_FROM = 10**14


@dataclass(frozen=True)
class Window:
    """One klines call: open times in [start_ms, end_ms] (Binance's inclusive endTime), `limit` bars."""

    start_ms: int
    end_ms: int
    limit: int


def day_start_ms(day: date) -> int:
    return (day - _EPOCH).days * DAY_MS


def ms_to_day(ms: int) -> date:
    return date.fromordinal(_EPOCH.toordinal() + ms // DAY_MS)


def is_sub_daily(interval: Interval) -> bool:
    return not interval.is_calendar and interval.ms < DAY_MS


def plan_day(day: date, interval: Interval, max_bars: int, weight: Callable[[int], int] | None = None) -> list[Window]:
    """The calls that cover every bar opening on `day`: the least total `weight(limit)`, then the fewest.

    Without `weight` (a flat price per call), the fewest calls of at most `max_bars`.
    """
    start = day_start_ms(day)
    if not is_sub_daily(interval):
        # A day holds at most the one bar that opens on it (1d, 3d, 1w, 1mo).
        return [Window(start, start + DAY_MS - 1, 1)]
    step = interval.ms
    bars = DAY_MS // step
    chunk = min(bars, max_bars) if weight is None else _cheapest_chunk(bars, max_bars, weight)
    return [
        Window(start + i * step, start + min(bars, i + chunk) * step - 1, min(chunk, bars - i))
        for i in range(0, bars, chunk)
    ]


@functools.lru_cache(maxsize=64)
def _cheapest_chunk(bars: int, max_bars: int, weight: Callable[[int], int]) -> int:
    """Bars per call that cost the least weight in all, then the fewest calls, then the largest calls."""
    fewest = -(-bars // max_bars)
    # Binance's cheapest bars per weight sit at a limit of a third of the maximum or more, so
    # more than 4x the fewest calls never pays.
    sizes = {min(bars, max_bars)} | {-(-bars // n) for n in range(fewest, min(bars, 4 * fewest + 1) + 1)}

    def cost(size: int) -> tuple[int, int, int]:
        return sum(weight(min(size, bars - i)) for i in range(0, bars, size)), -(-bars // size), -size

    return min(sizes, key=cost)


def rows_to_table(rows: list[list[Any]]) -> pa.Table:
    """Binance's 12-element kline arrays → the contract's 10 columns (close time and ignore dropped)."""
    if not rows:
        return KLINE_SCHEMA.empty_table()
    cols = list(zip(*rows))
    open_time = np.asarray(cols[0], dtype=np.int64)
    if open_time.size and open_time.max() >= _MICROSECONDS_FROM:
        open_time = np.where(open_time >= _MICROSECONDS_FROM, open_time // 1000, open_time)

    def floats(i: int) -> pa.Array:
        # float() of a decimal string is the nearest double, as the archive's CSV reader gives.
        return from_numpy(np.asarray(cols[i], dtype=np.float64), pa.float64())

    arrays = [
        from_numpy(open_time, KLINE_SCHEMA.field("candle_begin_time").type),
        floats(1), floats(2), floats(3), floats(4), floats(5), floats(7),
        from_numpy(np.asarray(cols[8], dtype=np.int64), pa.int64()),
        floats(9), floats(10),
    ]
    return pa.Table.from_arrays(arrays, schema=KLINE_SCHEMA)


def finish_day(parts: list[pa.Table], day: date, interval: Interval, now_ms: int) -> pa.Table:
    """Join a day's answers: inside the day, closed by `now_ms`, one row per open time (last wins), sorted."""
    table = pa.concat_tables(parts) if parts else KLINE_SCHEMA.empty_table()
    if table.num_rows == 0:
        return table
    t = int64_values(table.column("candle_begin_time"))
    start = day_start_ms(day)
    keep = (t >= start) & (t < start + DAY_MS) & (interval.close_ms(t) <= now_ms)
    idx = np.flatnonzero(keep)
    t = t[idx]
    order = np.argsort(t, kind="stable")
    ts = t[order]
    last_of_run = np.ones(len(ts), dtype=bool)
    last_of_run[:-1] = ts[1:] != ts[:-1]
    return table.take(from_numpy(idx[order[last_of_run]], pa.int64()))
