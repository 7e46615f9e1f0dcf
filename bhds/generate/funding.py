"""Contract §6.11.3: the funding series (archive plus API, API wins) placed on the candles."""

from __future__ import annotations

import numpy as np

from bhds.generate.grid import slots
from bhds.types import Interval


def funding_series(archive: tuple[np.ndarray, np.ndarray], api: tuple[np.ndarray, np.ndarray] | None) -> tuple[np.ndarray, np.ndarray]:
    """(hour times, rates), one event per hour with the API winning, sorted.

    Both inputs are (candle_begin_time ms, funding_rate) as stored: the funding time floored to the hour.
    """
    times, rates = archive
    if api is not None and len(api[0]):
        times, rates = np.concatenate([times, api[0]]), np.concatenate([rates, api[1]])
    order = np.argsort(times, kind="stable")
    times, rates = times[order], rates[order]
    keep = np.ones(len(times), dtype=bool)
    keep[:-1] = times[1:] != times[:-1]
    return times[keep], rates[keep]


def funding_on_grid(candles: np.ndarray, interval: Interval, events: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Per candle, the sum of the funding events it contains (0 elsewhere).

    The legacy tool joined on the hour and so lost events whose hour starts no candle (08:00 on 6h
    candles); here each event lands on the candle that contains it, for any interval.
    """
    times, rates = events
    index = slots(times, candles, interval) if len(candles) else np.empty(0, dtype=np.int64)
    inside = index >= 0
    return np.bincount(index[inside], weights=rates[inside], minlength=len(candles)).astype(np.float64)

