"""Candle grids: the open times of consecutive candles, for fixed intervals and calendar months."""

from __future__ import annotations

import numpy as np

from bhds.types import Interval


def months_since_epoch(t_ms: np.ndarray) -> np.ndarray:
    return t_ms.astype("datetime64[ms]").astype("datetime64[M]").astype(np.int64)


def month_start_ms(months: np.ndarray) -> np.ndarray:
    return np.asarray(months, dtype=np.int64).astype("datetime64[M]").astype("datetime64[ms]").astype(np.int64)


def grid(first_ms: int, last_ms: int, interval: Interval) -> np.ndarray:
    """Open times of every candle from the one at `first_ms` to the one at `last_ms`."""
    if interval.is_calendar:
        m0, m1 = months_since_epoch(np.array([first_ms, last_ms], dtype=np.int64))
        return month_start_ms(np.arange(m0, m1 + 1, interval.count))
    return np.arange(first_ms, last_ms + 1, interval.ms, dtype=np.int64)


def grid_end(candles: np.ndarray, interval: Interval) -> int:
    """Where the last candle of a grid closes."""
    return int(interval.close_ms(candles[-1:])[0])


def slots(times: np.ndarray, candles: np.ndarray, interval: Interval) -> np.ndarray:
    """Index of the candle containing each time, or -1 when it falls outside the grid."""
    if interval.is_calendar:
        index = np.searchsorted(candles, times, side="right") - 1
    else:
        index = (times - candles[0]) // interval.ms
    inside = (times >= candles[0]) & (times < grid_end(candles, interval))
    return np.where(inside, index, -1)
