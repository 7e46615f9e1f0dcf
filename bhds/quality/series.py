"""A symbol's months stitched in time order: holes and zero-volume runs across month edges, and the day view.

The expected window runs from the first candle to the last one, widened to whole days where the
archive holds a zip for a day without any candle (downloaded but not parsed, or parsed empty).
So a listing day that starts at 08:00 or a delisting day that ends at 03:00 is not "partial";
a hole or a short day in between is.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bhds.quality.grid import Grid
from bhds.quality.pieces import PieceStats
from bhds.types import DAY_MS


@dataclass
class DayView:
    """Per UTC day from `first_day`: bars expected, bars present, and whether API rows or a zip cover it."""

    first_day: int
    expected: np.ndarray
    present: np.ndarray  # clipped to expected
    api: np.ndarray  # bool
    archive: np.ndarray  # bool


@dataclass
class SeriesFigures:
    rows: int = 0
    duplicates: int = 0
    misaligned: int = 0
    first: int | None = None
    last: int | None = None
    holes: int = 0
    hole_bars: int = 0
    longest_hole_bars: int = 0
    longest_hole_after: int | None = None
    zero_rows: int = 0
    zero_runs: int = 0
    zero_longest: int = 0
    high_below: int = 0
    low_above: int = 0
    negative: int = 0
    nan: int = 0
    violation_rows: int = 0
    parse_duplicates: int | None = 0  # None when some partition did not record it
    parsed_days: set[int] = field(default_factory=set)
    api_days: set[int] = field(default_factory=set)
    api_empty_days: set[int] = field(default_factory=set)
    day_counts: list[tuple[int, list[int]]] = field(default_factory=list)  # (first day, rows per day) per month

    def note_hole(self, bars: int, after: int) -> None:
        self.holes += 1
        self.hole_bars += bars
        if bars > self.longest_hole_bars:
            self.longest_hole_bars, self.longest_hole_after = bars, after


_SUMMED = ("rows", "duplicates", "misaligned", "zero_rows", "high_below", "low_above", "negative", "nan", "violation_rows")


def stitch(pieces: list[PieceStats], grid: Grid) -> SeriesFigures:
    """Combine months (any order) into one symbol's figures."""
    out = SeriesFigures()
    for piece in pieces:
        for name in _SUMMED:
            setattr(out, name, getattr(out, name) + getattr(piece, name))
        if out.parse_duplicates is not None:
            out.parse_duplicates = None if piece.parse_duplicates is None else out.parse_duplicates + piece.parse_duplicates
        out.parsed_days.update(piece.parsed_days)
        out.api_days.update(piece.api_days)
        out.api_empty_days.update(piece.api_empty_days)
        if piece.day_first is not None:
            out.day_counts.append((piece.day_first, piece.day_count))

    step = grid.step
    prev_last: int | None = None
    open_run = 0  # zero-volume candles running up to the previous month's last candle
    for piece in sorted((p for p in pieces if p.first is not None), key=lambda p: p.first):
        out.holes += piece.holes
        out.hole_bars += piece.hole_bars
        if piece.longest_hole_bars > out.longest_hole_bars:
            out.longest_hole_bars, out.longest_hole_after = piece.longest_hole_bars, piece.longest_hole_after
        adjacent = False
        if prev_last is None:
            out.first = piece.first
        else:
            gap = grid.unit(piece.first) - grid.unit(prev_last)
            adjacent = gap == step
            if gap > step:
                out.note_hole(gap // step - 1, prev_last)
        out.zero_runs += piece.zero_runs
        out.zero_longest = max(out.zero_longest, piece.zero_longest)
        if adjacent and open_run and piece.zero_leading:
            out.zero_runs -= 1  # the previous month's last run goes on here
            joined = open_run + piece.zero_leading
            out.zero_longest = max(out.zero_longest, joined)
            open_run = joined if piece.zero_leading == piece.rows - piece.misaligned else piece.zero_trailing
        else:
            open_run = piece.zero_trailing
        if out.last is None or piece.last > out.last:
            out.last = prev_last = piece.last
    return out


def day_view(fig: SeriesFigures, grid: Grid, archive_days: list[int]) -> DayView | None:
    """Expected and present bars per day over the expected window; None when nothing is known."""
    per_day = grid.bars_per_day
    if per_day is None:
        return None
    step = grid.step
    candidates = list(archive_days)
    if fig.first is not None:
        candidates += [fig.first // DAY_MS, fig.last // DAY_MS]
    if not candidates:
        return None
    lo_day, hi_day = min(candidates), max(candidates)
    start = lo_day * DAY_MS
    if fig.first is not None and fig.first // DAY_MS == lo_day:
        start = -(-fig.first // step) * step  # first grid time at or after the first candle
    end = hi_day * DAY_MS + DAY_MS - step
    if fig.last is not None and fig.last // DAY_MS == hi_day:
        end = fig.last // step * step

    days = np.arange(lo_day, hi_day + 1, dtype=np.int64)
    day_start = days * DAY_MS
    first_bar = np.maximum(day_start, start)
    last_bar = np.minimum(day_start + DAY_MS - step, end)
    expected = np.where(last_bar >= first_bar, (last_bar - first_bar) // step + 1, 0)

    present = np.zeros(len(days), dtype=np.int64)
    for first, counts in fig.day_counts:
        lo, hi = max(first, lo_day), min(first + len(counts), hi_day + 1)
        if lo < hi:
            present[lo - lo_day : hi - lo_day] += np.asarray(counts[lo - first : hi - first], dtype=np.int64)
    present = np.minimum(present, expected)

    def mask(day_set: set[int] | list[int]) -> np.ndarray:
        out = np.zeros(len(days), dtype=bool)
        if day_set:
            index = np.asarray(sorted(day_set), dtype=np.int64) - lo_day
            out[index[(index >= 0) & (index < len(days))]] = True
        return out

    return DayView(lo_day, expected, present, mask(fig.api_days), mask(archive_days))
