"""One month of a symbol (its parsed partition plus the API day files of that month) reduced to a few numbers.

Only the columns the checks need are decoded (time, OHLC, volume), with one vectorised pass each;
the common case (no violation anywhere) costs four comparisons per row. API rows win over parsed
rows at the same time, as in `generate`; duplicates are counted inside each file, so an API day
that replaces archive rows is not a duplicate.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bhds.errors import DataError
from bhds.quality.grid import Grid
from bhds.storage import open_parquet
from bhds.types import DAY_MS

COLUMNS = ["candle_begin_time", "open", "high", "low", "close", "volume"]


@dataclass
class PieceStats:
    """What one month contributes; JSON-safe (ints and lists) so it can be cached."""

    rows: int = 0  # distinct candles after merging
    duplicates: int = 0  # extra rows sharing a time inside one file
    misaligned: int = 0  # rows off the interval grid
    first: int | None = None  # epoch ms of the first / last candle
    last: int | None = None
    day_first: int | None = None  # UTC day number of day_count[0]
    day_count: list[int] = field(default_factory=list)  # aligned candles per day from day_first on
    parsed_days: list[int] = field(default_factory=list)  # days holding at least one archive (parsed) candle
    api_days: list[int] = field(default_factory=list)  # days whose API file holds candles
    api_empty_days: list[int] = field(default_factory=list)  # days whose API file is empty
    holes: int = 0  # runs of missing bars between two candles of this month
    hole_bars: int = 0
    longest_hole_bars: int = 0
    longest_hole_after: int | None = None  # epoch ms of the candle before the longest hole
    zero_rows: int = 0
    zero_runs: int = 0
    zero_longest: int = 0
    zero_leading: int = 0  # zero-volume run that starts at the first candle
    zero_trailing: int = 0  # ... and the one that ends at the last
    high_below: int = 0
    low_above: int = 0
    negative: int = 0
    nan: int = 0
    violation_rows: int = 0
    parse_duplicates: int | None = 0  # rows parse dropped for a repeated time (footer.py); None = not recorded

    def to_json(self) -> dict:
        return {name: getattr(self, name) for name in _FIELDS}

    @classmethod
    def from_json(cls, data: dict) -> PieceStats:
        if data.keys() != _FIELD_SET:
            raise ValueError("cached entry has other fields")
        return cls(**data)


_FIELDS = tuple(f.name for f in fields(PieceStats))
_FIELD_SET = frozenset(_FIELDS)


@dataclass
class Arrays:
    ts: np.ndarray
    o: np.ndarray
    h: np.ndarray
    l: np.ndarray  # noqa: E741 - the kline column
    c: np.ndarray
    v: np.ndarray
    null_times: int = 0

    def take(self, index: np.ndarray) -> Arrays:
        return Arrays(self.ts[index], self.o[index], self.h[index], self.l[index], self.c[index], self.v[index])

    @classmethod
    def concat(cls, parts: list[Arrays]) -> Arrays:
        return cls(*(np.concatenate([getattr(p, n) for p in parts]) for n in ("ts", "o", "h", "l", "c", "v")))

    def __len__(self) -> int:
        return len(self.ts)


def as_numpy(array: pa.Array) -> np.ndarray:
    """The values of a fixed-width array without nulls, zero-copy.

    Not `Array.to_numpy()`: in pyarrow 26 its first call imports pandas, 0.7 s per worker process.
    """
    if array.null_count:
        raise ValueError("as_numpy needs an array without nulls")
    dtype = np.dtype(np.float64 if pa.types.is_floating(array.type) else np.int64)
    if array.type.bit_width != 64:
        raise ValueError(f"as_numpy reads 64-bit values, not {array.type}")
    return np.frombuffer(array.buffers()[1], dtype=dtype, count=len(array), offset=array.offset * dtype.itemsize)


def times_ms(column: pa.ChunkedArray) -> pa.Array:
    """Epoch milliseconds as int64, whatever the stored time unit."""
    column = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    if pa.types.is_timestamp(column.type) and column.type.unit != "ms":
        column = column.cast(pa.timestamp("ms", tz=column.type.tz), safe=False)
    return column.cast(pa.int64())


def read_arrays(path: str) -> Arrays:
    """The six checked columns of a kline Parquet file as numpy arrays (rows with no time dropped)."""
    try:
        return table_arrays(open_parquet(path).read(columns=COLUMNS, use_threads=False))
    except (OSError, pa.ArrowException, KeyError, ValueError) as exc:  # ValueError: columns of the wrong type
        raise DataError(f"cannot read {path} ({exc}): delete it and run the step that writes it again") from exc


def table_arrays(table: pa.Table) -> Arrays:
    """The six checked columns of an in-memory kline table (rows with no time dropped)."""
    table = table.select(COLUMNS)
    times = times_ms(table.column(0))
    nulls = times.null_count
    if nulls:
        table = table.filter(times.is_valid())
        times = times_ms(table.column(0))
    floats = [_float_numpy(table.column(i)) for i in range(1, 6)]
    return Arrays(as_numpy(times), *floats, null_times=nulls)


def _float_numpy(column: pa.ChunkedArray) -> np.ndarray:
    """float64 values, NaN for nulls; zero-copy for the usual single float64 chunk without nulls."""
    array = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    if array.type != pa.float64():
        array = array.cast(pa.float64())
    if array.null_count:
        array = pc.fill_null(array, np.nan)
    return as_numpy(array)


def is_strictly_increasing(ts: np.ndarray) -> bool:
    return len(ts) < 2 or bool(np.all(ts[1:] > ts[:-1]))


def duplicate_count(ts: np.ndarray) -> int:
    """Rows beyond the first at the same time (0 for the usual sorted, unique file)."""
    if is_strictly_increasing(ts):
        return 0
    return int(len(ts) - len(np.unique(ts)))


def sorted_unique_last(arrays: Arrays) -> Arrays:
    """Sort by time; of rows sharing a time keep the last one (later files win)."""
    ts = arrays.ts
    if is_strictly_increasing(ts):
        return arrays
    order = np.argsort(ts, kind="stable")
    ts_sorted = ts[order]
    keep = np.ones(len(ts_sorted), dtype=bool)
    keep[:-1] = ts_sorted[1:] != ts_sorted[:-1]
    return arrays.take(order[keep])


def day_counts(ts: np.ndarray) -> tuple[int, np.ndarray]:
    """(first UTC day, rows per day from it) of sorted times: a binary search per day, not a pass per row."""
    first = int(ts[0]) // DAY_MS
    bounds = np.arange(first, int(ts[-1]) // DAY_MS + 2, dtype=np.int64) * DAY_MS
    return first, np.diff(np.searchsorted(ts, bounds))


def read_piece(parsed: str | None, api: list[tuple[int, str]], grid: Grid) -> tuple[PieceStats, int, Arrays | None]:
    """Read a month's files and summarise them; also return the rows decoded and the partition's arrays."""
    partition = read_arrays(parsed) if parsed is not None else None
    days = [(day, read_arrays(path)) for day, path in api]
    rows_read = sum(len(a) + a.null_times for a in ([partition] if partition is not None else []) + [a for _, a in days])
    return month_stats(partition, days, grid), rows_read, partition


def month_stats(partition: Arrays | None, api: list[tuple[int, Arrays]], grid: Grid) -> PieceStats:
    """Summarise a month: its parsed partition (if any) and its API days, API rows winning at equal times.

    Parse calls this on the partition it has just built (no API days) and stores the result in the
    file's footer; the report calls it on what it decodes. One function, so both agree.
    `parse_duplicates` is left at 0: it is a fact of parsing, not of the rows (see footer.py).
    """
    parts: list[Arrays] = []
    stats = PieceStats()
    nulls = 0
    if partition is not None:
        nulls += partition.null_times
        ordered = is_strictly_increasing(partition.ts)
        if not ordered:
            stats.duplicates += duplicate_count(partition.ts)
        if len(partition):
            first, counts = day_counts(partition.ts if ordered else np.sort(partition.ts))
            stats.parsed_days = (np.flatnonzero(counts) + first).tolist()
        parts.append(partition)
    for day, arrays in api:
        nulls += arrays.null_times
        if len(arrays) == 0:
            stats.api_empty_days.append(day)
            continue
        stats.api_days.append(day)
        stats.duplicates += duplicate_count(arrays.ts)
        parts.append(arrays)
    merged = sorted_unique_last(Arrays.concat(parts) if len(parts) != 1 else parts[0]) if parts else None
    if merged is not None and len(merged):
        summarise(merged, grid, stats)
    stats.nan += nulls
    stats.violation_rows += nulls
    return stats


def summarise(a: Arrays, grid: Grid, stats: PieceStats) -> None:
    """Fill `stats` from sorted, unique candles."""
    stats.rows = len(a.ts)
    _violations(a, stats)
    ts, volume, step = a.ts, a.v, grid.step
    gaps = np.diff(grid.units(ts))
    odd = np.flatnonzero(gaps != step)  # usually empty: a month without holes
    # On-grid for sure when the first time is and every irregular gap is whole bars; else look at each row.
    if grid.bars_per_day is not None and (ts[0] % step or np.any(gaps[odd] % step)):
        off_grid = grid.misaligned(ts)
        stats.misaligned = int(off_grid.sum())
        ts, volume = ts[~off_grid], volume[~off_grid]
        if not len(ts):
            return
        gaps = np.diff(ts)
        odd = np.flatnonzero(gaps != step)
    stats.first, stats.last = int(ts[0]), int(ts[-1])
    if grid.bars_per_day is not None:
        stats.day_first, counts = day_counts(ts)
        stats.day_count = counts.tolist()

    holes = odd[gaps[odd] > step]
    if len(holes):
        missing = gaps[holes] // step - 1
        stats.holes = len(holes)
        stats.hole_bars = int(missing.sum())
        worst = int(np.argmax(missing))
        stats.longest_hole_bars = int(missing[worst])
        stats.longest_hole_after = int(ts[holes[worst]])
    _zero_runs(volume, gaps, step, stats)


def _violations(a: Arrays, stats: PieceStats) -> None:
    # NaN fails every comparison, and low >= 0 with low <= open, close <= high implies no negative
    # price: so one combined mask settles the usual all-clean case.
    top = np.maximum(a.o, a.c)
    bottom = np.minimum(a.o, a.c)
    clean = (a.h >= top) & (a.l <= bottom) & (a.l >= 0) & (a.v >= 0)
    if clean.all():
        return
    bad = ~clean
    o, h, l, c, v = a.o[bad], a.h[bad], a.l[bad], a.c[bad], a.v[bad]  # noqa: E741
    stats.high_below += int((h < top[bad]).sum())
    stats.low_above += int((l > bottom[bad]).sum())
    stats.negative += int(((o < 0) | (h < 0) | (l < 0) | (c < 0) | (v < 0)).sum())
    stats.nan += int((np.isnan(o) | np.isnan(h) | np.isnan(l) | np.isnan(c) | np.isnan(v)).sum())
    stats.violation_rows += int(bad.sum())


def _zero_runs(volume: np.ndarray, gaps: np.ndarray, step: int, stats: PieceStats) -> None:
    """Runs of zero-volume candles at consecutive bars (a hole ends a run). Works on the zero rows only."""
    zero = np.flatnonzero(volume == 0)
    stats.zero_rows = len(zero)
    if not len(zero):
        return
    # A zero row continues a run when the row before it is zero and exactly one bar earlier.
    continues = (np.diff(zero) == 1) & (gaps[zero[:-1]] == step)
    starts = np.flatnonzero(np.concatenate(([True], ~continues)))
    lengths = np.diff(np.append(starts, len(zero)))
    stats.zero_runs = len(lengths)
    stats.zero_longest = int(lengths.max())
    stats.zero_leading = int(lengths[0]) if zero[0] == 0 else 0
    stats.zero_trailing = int(lengths[-1]) if zero[-1] == len(volume) - 1 else 0
