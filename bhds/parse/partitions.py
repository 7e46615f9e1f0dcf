"""Monthly partitions: keeping rows inside a time window, and merging old rows with new ones.

A partition holds one row per `candle_begin_time`, sorted. When rows overlap, the newer source
wins: later files over earlier ones, freshly parsed rows over the partition on disk (except a
file's rows for a neighbouring day, see `jobs.update_month`).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pyarrow as pa

from bhds.parse.timeline import DAY_MS


def time_values(table: pa.Table, column: str = "candle_begin_time") -> np.ndarray:
    """The time column as int64 epoch units, without copying when possible."""
    return table.column(column).combine_chunks().cast(pa.int64()).to_numpy(zero_copy_only=False)


def within(table: pa.Table, start_ms: int, end_ms: int, column: str = "candle_begin_time") -> pa.Table:
    """Rows with start ≤ time < end."""
    times = time_values(table, column)
    mask = (times >= start_ms) & (times < end_ms)
    return table if mask.all() else table.filter(pa.array(mask))


def _in_any(times: np.ndarray, windows: list[tuple[int, int]]) -> np.ndarray:
    mask = np.zeros(len(times), dtype=bool)
    for start, end in windows:
        mask |= (times >= start) & (times < end)
    return mask


def without_windows(table: pa.Table, windows: Iterable[tuple[int, int]], column: str = "candle_begin_time") -> pa.Table:
    """Rows outside every [start, end) window (used to replace whole days by a re-parsed file)."""
    windows = list(windows)
    if not windows or table.num_rows == 0:
        return table
    drop = _in_any(time_values(table, column), windows)
    return table.filter(pa.array(~drop)) if drop.any() else table


def within_windows(table: pa.Table, windows: Iterable[tuple[int, int]], column: str = "candle_begin_time") -> pa.Table:
    """Rows inside at least one [start, end) window."""
    windows = list(windows)
    if table.num_rows == 0:
        return table
    return table.filter(pa.array(_in_any(time_values(table, column), windows)))


def dedup_sorted(table: pa.Table, column: str = "candle_begin_time") -> pa.Table:
    """Sort by `column`, keeping only the last row (in table order) of each time."""
    if table.num_rows == 0:
        return table
    times = time_values(table, column)
    order = np.argsort(times, kind="stable")  # stable: among equal times, table order is kept
    sorted_times = times[order]
    last_of_run = np.empty(len(order), dtype=bool)
    last_of_run[:-1] = sorted_times[1:] != sorted_times[:-1]
    last_of_run[-1] = True
    keep = order[last_of_run]
    if len(keep) == table.num_rows and np.all(keep[1:] > keep[:-1]):
        return table  # already sorted and unique: skip the copy
    return table.take(pa.array(keep))


def merge(old: pa.Table | None, new: pa.Table, column: str = "candle_begin_time") -> pa.Table:
    """Union of `old` and `new`, one row per time (new wins), sorted."""
    parts = [t for t in (old, new) if t is not None and t.num_rows]
    if not parts:
        return new
    combined = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
    return dedup_sorted(combined, column)


def days_with_rows(table: pa.Table, column: str = "candle_begin_time") -> set[int]:
    """UTC days (as days since the epoch) that have at least one row."""
    if table.num_rows == 0:
        return set()
    return {int(day) for day in np.unique(time_values(table, column) // DAY_MS)}
