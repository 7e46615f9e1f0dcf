"""Contract §6.12 steps 5-7: resample 1m klines to every offset in one pass, a column at a time.

Rows are aggregated once into blocks of the base offset, aligned to the epoch; each offset's
windows are then runs of consecutive blocks, so 12 offsets cost one pass over the minutes plus 12
cheap passes over the blocks. The window structure comes from the time column alone, so the other
columns are read, aggregated and dropped one by one: memory stays at a few columns, not a file.
Windows are labelled by their start and kept only when complete.

A 1m results file is usually one regular grid (generate fills every missing minute): then the
blocks and windows are plain reshapes of the columns and each aggregate is a few whole-array
operations instead of a reduceat over index arrays, in the same order, so the bits are the same.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from bhds.generate.frame import FUNDING, SUM_COLUMNS, TIME, Columns
from bhds.generate.grid import month_start_ms, months_since_epoch
from bhds.generate.offsets import MINUTE_MS, ResamplePlan

ColumnReader = Callable[[str], np.ndarray]


def _runs(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and last index of each run of equal consecutive keys."""
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    ends = np.r_[starts[1:], len(keys)] - 1
    return starts, ends


@dataclass
class _Runs:
    """Where each group starts and ends in the level below (minutes → blocks → windows)."""

    starts: np.ndarray
    ends: np.ndarray

    def first(self, values: np.ndarray) -> np.ndarray:
        return values[self.starts]

    def last(self, values: np.ndarray) -> np.ndarray:
        return values[self.ends]

    # fmax/fmin skip NaN as the legacy tool's polars max/min do: one NaN minute must not blank the bar.
    def max(self, values: np.ndarray) -> np.ndarray:
        return np.fmax.reduceat(values, self.starts)

    def min(self, values: np.ndarray) -> np.ndarray:
        return np.fmin.reduceat(values, self.starts)

    def sum(self, values: np.ndarray) -> np.ndarray:
        return np.add.reduceat(values, self.starts)


# Folding costs one numpy call per position in the group: worth it for many narrow groups, else reduceat.
_FOLD_MAX_WIDTH = 16
_FOLD_MIN_GROUPS_PER_WIDTH = 32


def _pairwise_sum(columns: list[np.ndarray]) -> np.ndarray:
    """Element-wise sum of `columns` in the order of numpy's pairwise summation (what `np.add.reduce`
    and `reduceat` do to a run of floats), so a grid sum has the bits of a reduceat sum."""
    n = len(columns)
    if n < 8:
        total = columns[0] + columns[0].dtype.type(0)  # numpy starts from 0: a -0.0 becomes 0.0
        for column in columns[1:]:
            total += column
        return total
    if n <= 128:
        partial = columns[:8]
        i = 8
        while i < n - n % 8:
            partial = [partial[j] + columns[i + j] for j in range(8)]
            i += 8
        total = ((partial[0] + partial[1]) + (partial[2] + partial[3])) + ((partial[4] + partial[5]) + (partial[6] + partial[7]))
        for column in columns[i:]:
            total += column
        return total
    half = n // 2 - (n // 2) % 8
    return _pairwise_sum(columns[:half]) + _pairwise_sum(columns[half:])


@dataclass
class _Stride:
    """`count` groups of `width` consecutive values from index `start` (runs on a regular grid), as a reshape."""

    start: int
    count: int
    width: int

    def _rows(self, values: np.ndarray) -> np.ndarray:
        return values[self.start : self.start + self.count * self.width].reshape(self.count, self.width)

    def first(self, values: np.ndarray) -> np.ndarray:
        return self._rows(values)[:, 0]

    def last(self, values: np.ndarray) -> np.ndarray:
        return self._rows(values)[:, -1]

    def max(self, values: np.ndarray) -> np.ndarray:
        return self._fold(np.fmax, values)

    def min(self, values: np.ndarray) -> np.ndarray:
        return self._fold(np.fmin, values)

    def sum(self, values: np.ndarray) -> np.ndarray:
        rows = self._rows(values)
        if self.width == 1:
            return rows[:, 0]
        if not self._foldable():
            return self._reduceat(np.add, rows)
        # reduceat adds a group as first + pairwise_sum(the others)
        return rows[:, 0] + _pairwise_sum([rows[:, j] for j in range(1, self.width)])

    def _fold(self, ufunc: np.ufunc, values: np.ndarray) -> np.ndarray:
        rows = self._rows(values)
        if not self._foldable():
            return self._reduceat(ufunc, rows)
        if self.width == 1:
            return rows[:, 0]
        out = ufunc(rows[:, 0], rows[:, 1])
        for j in range(2, self.width):
            ufunc(out, rows[:, j], out=out)
        return out

    def _foldable(self) -> bool:
        return self.width <= _FOLD_MAX_WIDTH and self.count >= _FOLD_MIN_GROUPS_PER_WIDTH * self.width

    def _reduceat(self, ufunc: np.ufunc, rows: np.ndarray) -> np.ndarray:
        return ufunc.reduceat(rows.reshape(-1), np.arange(0, rows.size, self.width)) if self.count else rows[:, 0].copy()


_AGGREGATE = {"open": "first", "high": "max", "low": "min", "close": "last", **{name: "sum" for name in (*SUM_COLUMNS, FUNDING)}}


@dataclass
class _Offset:
    windows: _Runs | _Stride  # windows over blocks
    complete: np.ndarray | slice  # which windows to keep
    begin: np.ndarray  # labels of the kept windows


def _on_minute_grid(t: np.ndarray, plan: ResamplePlan) -> bool:
    """Whether the minutes are one regular 1m grid that fixed-length blocks split evenly (not calendar months)."""
    return bool(plan.block_ms and len(t) and (int(t[0]) - plan.anchor_ms) % MINUTE_MS == 0 and np.all(np.diff(t) == MINUTE_MS))


def _plan_grid(t: np.ndarray, plan: ResamplePlan) -> tuple[_Stride, dict[str, _Offset]]:
    """`_plan_windows` for minutes on a regular grid: keep the whole blocks, then each offset's whole windows.

    A partial block at either end can only be part of an incomplete window, so it is skipped;
    every window made of whole blocks is complete.
    """
    width = plan.block_ms // MINUTE_MS
    first_minute = (int(t[0]) - plan.anchor_ms) // MINUTE_MS
    skip = -first_minute % width
    first_block = (first_minute + skip) // width
    blocks = _Stride(skip, max(0, (len(t) - skip) // width), width)
    per_window = plan.blocks_per_window
    offsets: dict[str, _Offset] = {}
    for offset in plan.offsets:
        lead = (offset.blocks - first_block) % per_window
        windows = _Stride(lead, max(0, (blocks.count - lead) // per_window), per_window)
        begin = plan.anchor_ms + (first_block + lead + np.arange(windows.count, dtype=np.int64) * per_window) * plan.block_ms
        offsets[offset.name] = _Offset(windows, slice(None), begin)
    return blocks, offsets


def _plan_windows(t: np.ndarray, plan: ResamplePlan) -> tuple[_Runs, dict[str, _Offset]]:
    """The block runs over the minutes, and each offset's windows over the blocks."""
    interval = plan.interval
    keys = (t - plan.anchor_ms) // plan.block_ms if plan.block_ms else months_since_epoch(t) // interval.count
    start, end = _runs(keys)
    blocks = _Runs(start, end)
    block_key, first_t, last_t = keys[start], t[start], t[end]
    del keys
    per_window = plan.blocks_per_window
    offsets: dict[str, _Offset] = {}
    for offset in plan.offsets:
        if per_window == 1:
            windows = _Runs(np.arange(len(block_key)), np.arange(len(block_key)))
            window_key = block_key
        else:
            window_keys = (block_key - offset.blocks) // per_window
            windows = _Runs(*_runs(window_keys))
            window_key = window_keys[windows.starts]
        if plan.block_ms:
            begin = plan.anchor_ms + (window_key * per_window + offset.blocks) * plan.block_ms
            length: np.ndarray | int = interval.ms
        else:
            begin = month_start_ms(window_key * interval.count)
            length = month_start_ms((window_key + 1) * interval.count) - begin
        complete = windows.last(last_t) + MINUTE_MS - windows.first(first_t) == length
        offsets[offset.name] = _Offset(windows, complete, begin[complete])
    return blocks, offsets


def resample_columns(read: ColumnReader, names: Sequence[str], plan: ResamplePlan, *, vwap_name: str | None) -> dict[str, Columns]:
    """Resampled frames by offset name, with the columns `names` (dtypes kept), fetched one by one with `read`.

    Sums for volumes, trade counts and `funding_rate` (the legacy tool took the window's first
    funding value, which is 0 at every offset but 0). The VWAP column (`vwap_name`) keeps its
    legacy meaning: the VWAP of the window's first minute, the price a strategy can still trade at
    when the bar opens; the window's own VWAP is quote_volume / volume of the bar.
    """
    t = read(TIME)
    index = None
    on_grid = _on_minute_grid(t, plan)
    if len(t) > 1 and not on_grid and not bool(np.all(t[1:] > t[:-1])):  # not sorted and unique: last row of a time wins
        order = np.argsort(t, kind="stable")
        keep = np.r_[t[order][1:] != t[order][:-1], True]
        index = order[keep]
        t = t[index]
    column = read if index is None else (lambda name: read(name)[index])
    if len(t) == 0:
        empty = {name: (t if name == TIME else column(name))[:0] for name in names}
        return {offset.name: dict(empty) for offset in plan.offsets}

    blocks, offsets = _plan_grid(t, plan) if on_grid else _plan_windows(t, plan)
    result: dict[str, Columns] = {name: {TIME: o.begin} for name, o in offsets.items()}
    for name in names:
        how = "first" if name == vwap_name else _AGGREGATE.get(name)
        if name == TIME or how is None:
            continue
        per_block = getattr(blocks, how)(column(name))
        for offset_name, o in offsets.items():
            result[offset_name][name] = getattr(o.windows, how)(per_block)[o.complete]
    return {offset_name: {name: frame[name] for name in names if name in frame} for offset_name, frame in result.items()}
