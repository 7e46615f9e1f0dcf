"""The bar grid of an interval: where candles should start, in a unit where consecutive bars differ by `step`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone

import numpy as np

from bhds.types import DAY_MS, Interval


@dataclass(frozen=True)
class Grid:
    """Fixed intervals work in epoch milliseconds; calendar months in month numbers since 1970."""

    interval: Interval

    @property
    def is_months(self) -> bool:
        return self.interval.is_calendar

    @property
    def step(self) -> int:
        """Distance between consecutive bars, in units."""
        return 1 if self.is_months else self.interval.ms

    @property
    def bars_per_day(self) -> int | None:
        """Bars in a UTC day when the interval divides a day, else None (no day-level figures)."""
        if self.is_months or DAY_MS % self.interval.ms:
            return None
        return DAY_MS // self.interval.ms

    def units(self, ts_ms: np.ndarray) -> np.ndarray:
        if not self.is_months:
            return ts_ms
        return ts_ms.astype("datetime64[ms]").astype("datetime64[M]").astype(np.int64)

    def unit(self, ts_ms: int) -> int:
        return int(self.units(np.array([ts_ms], dtype=np.int64))[0])

    def misaligned(self, ts_ms: np.ndarray) -> np.ndarray:
        """Rows whose time is off the grid. Only checked where the grid is anchored at 00:00 UTC."""
        if self.bars_per_day is None:
            return np.zeros(len(ts_ms), dtype=bool)
        return ts_ms % self.step != 0


def percent_down(part: int, whole: int) -> float:
    """100 * part / whole rounded down to 2 decimals, in integers: 100.0 only when nothing is missing."""
    return (10_000 * int(part) // int(whole)) / 100


def iso_ms(ms: int | None) -> str | None:
    """`2024-01-31T23:59:00Z` for an epoch-ms instant."""
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_day(day: int | None) -> str | None:
    """`2024-01-31` for a day number since 1970-01-01."""
    if day is None:
        return None
    return str(np.datetime64(int(day), "D"))


_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def day_number(text: str) -> int:
    """Day number since 1970-01-01 of `YYYY-MM-DD` or `YYYYMMDD` (ValueError otherwise)."""
    if len(text) == 8 and text.isdigit():
        text = f"{text[:4]}-{text[4:6]}-{text[6:]}"
    elif len(text) != 10:
        raise ValueError(f"not a day: {text!r}")
    return date.fromisoformat(text).toordinal() - _EPOCH_ORDINAL
