"""Contract §6.11.4-6: gap scan, split into SP<i>_ segments, and the fill onto a continuous grid."""

from __future__ import annotations

import numpy as np

from bhds.generate.frame import SUM_COLUMNS, TIME, Columns
from bhds.generate.grid import grid, slots
from bhds.types import DAY_MS, Interval

PRICE_COLUMNS = ("open", "high", "low", "close")


def gap_starts(t: np.ndarray, open_: np.ndarray, close: np.ndarray, *, min_days: int, min_price_chg: float,
               interval: Interval | None = None, rows: np.ndarray | None = None) -> np.ndarray:
    """Indices (into the traded candles given) of the first candle after each gap, ascending.

    gap1: more than `min_days` days without a candle and |open / previous close − 1| > min_price_chg;
    gap2: more than 2 × `min_days` days and any non-zero price change (strict, as the legacy tool).
    Taking them in row order is what keeps segments from overlapping when a symbol has several gaps.
    With `rows`, the traded candles are those rows of the full columns given (no copy of them is made).

    The time is measured open to open, as the legacy tool does, for candles of a day or shorter.
    A longer candle (3d, 1w, 1mo) covers days itself, so there the time runs from the previous
    candle's close: consecutive weekly candles are 7 days apart and no gap at all.
    """
    if rows is not None:
        t = t[rows]
    if len(t) < 2:
        return np.empty(0, dtype=np.int64)
    if interval is not None and (interval.is_calendar or interval.ms > DAY_MS):
        elapsed = t[1:] - interval.close_ms(t[:-1])
    else:
        elapsed = np.diff(t)
    # Both kinds need more than `min_days` days: the prices are looked at only there.
    before = np.flatnonzero(elapsed > min_days * DAY_MS)
    after = before + 1
    at_open, at_close = (after, before) if rows is None else (rows[after], rows[before])
    with np.errstate(divide="ignore", invalid="ignore"):
        change = np.abs(open_[at_open] / close[at_close] - 1)
    gap1 = change > min_price_chg
    gap2 = (elapsed[before] > 2 * min_days * DAY_MS) & (change > 0)
    return after[gap1 | gap2]


def segments(traded_rows: np.ndarray, starts: np.ndarray) -> list[slice]:
    """Row ranges from each segment's first traded candle to its last, in time order."""
    bounds = [0, *(int(i) for i in starts), len(traded_rows)]
    return [slice(int(traded_rows[lo]), int(traded_rows[hi - 1]) + 1) for lo, hi in zip(bounds[:-1], bounds[1:]) if hi > lo]


def segment_names(symbol: str, count: int) -> list[str]:
    """`SP0_<SYMBOL>` … for earlier segments; the latest keeps the plain `<SYMBOL>`."""
    return [f"SP{i}_{symbol}" for i in range(count - 1)] + [symbol]


def _on_grid(t: np.ndarray, interval: Interval) -> bool:
    """True when the rows are exactly consecutive candles, so the grid is `t` itself."""
    return not interval.is_calendar and bool(np.all(np.diff(t) == interval.ms))


def _spreader(at: np.ndarray):  # noqa: ANN202 - a function (target, values) -> None
    """A function putting `values[i]` at `target[at[i]]` (`at` ascending).

    Rows usually come in a few long runs of consecutive candles (a year of 1m klines has a
    handful of holes): those are copied as slices, several times faster than a scatter.
    """
    breaks = np.flatnonzero(np.diff(at) != 1) + 1
    if len(breaks) > len(at) // 256:
        def scatter(target: np.ndarray, values: np.ndarray) -> None:
            target[at] = values
        return scatter
    bounds = [0, *(int(b) for b in breaks), len(at)]
    runs = [(int(at[lo]), lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:])]

    def copy_runs(target: np.ndarray, values: np.ndarray) -> None:
        for start, lo, hi in runs:
            target[start:start + hi - lo] = values[lo:hi]
    return copy_runs


def fill(cols: Columns, present: np.ndarray, interval: Interval, vwap_name: str | None) -> tuple[Columns, np.ndarray]:
    """One row per candle from the first to the last: absent candles repeat the last close, volumes 0.

    `present` marks the rows that count (traded candles); the others are re-made like missing
    ones. The VWAP column (any interval, unlike the legacy tool's `avg_price_1m` only) takes `open`
    where missing and is clipped into [low, high]. Returns the filled frame and the grid.

    `cols` is consumed: when its rows already are the grid its arrays are patched in place,
    otherwise its columns are dropped one by one as they are spread onto the grid, so a
    symbol's history is never held twice.
    """
    t = cols[TIME]
    if _on_grid(t, interval):
        candles, out = t, dict(cols)
        have = present
    else:
        candles = grid(int(t[0]), int(t[-1]), interval)
        at = slots(t, candles, interval)
        spread = _spreader(at)
        out = {TIME: candles}
        for name in [n for n in cols if n != TIME]:
            values = cols.pop(name)  # consumed one column at a time, so the old one can go
            out[name] = np.empty(len(candles), dtype=values.dtype)
            spread(out[name], values)
            del values
        have = np.zeros(len(candles), dtype=bool)
        spread(have, present)
    missing = np.flatnonzero(~have)
    if len(missing):
        # Forward fill: a missing candle takes the close of the latest present one (the first always is).
        shown = np.flatnonzero(have)
        carried = out["close"][shown[np.searchsorted(shown, missing) - 1]]
        for name, values in out.items():
            if name in PRICE_COLUMNS:
                values[missing] = carried
            elif name in SUM_COLUMNS:
                values[missing] = 0
            elif name != TIME:
                values[missing] = np.nan  # the VWAP, filled from open below
    if vwap_name is not None:
        price = out[vwap_name]
        gaps = np.isnan(price)
        price[gaps] = out["open"][gaps]
        np.clip(price, out["low"], out["high"], out=price)
    return out, candles
