"""How a result file is laid out: one row group per calendar month (klines) or quarter (resamples).

A row group per period lets a later run keep a file's past periods as they are (their bytes,
`splice`) and encode only the ones that changed; a full build writes the very same groups, so
both give identical files. Resampled files hold 5-240 times fewer rows than 1m ones: month
groups of 1h bars (720 rows) made them 15 % larger than one group, bigger than bhds.py's; quarters
6-11 %, smaller than bhds.py's (`bench/resample_groups.py`, bench/results/resample-groups-*.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from bhds import storage
from bhds.generate.grid import month_start_ms, months_since_epoch


def period_start_ms(t_ms: np.ndarray, months: int = 1) -> np.ndarray:
    """Start of the period of `months` calendar months (counted from January 1970) holding each time."""
    return month_start_ms(months_since_epoch(t_ms) // months * months)


def month_bounds(t: np.ndarray, months: int = 1) -> list[int]:
    """Row offsets where each period of `months` calendar months of the sorted times `t` starts, and `len(t)`."""
    if not len(t):
        return [0]
    first, last = months_since_epoch(t[[0, -1]]) // months
    starts = month_start_ms(np.arange(first + 1, last + 1) * months)
    return [0, *(int(i) for i in np.searchsorted(t, starts)), len(t)]


def write_months(table: pa.Table, path: Path | pa.NativeFile, months: int = 1) -> int:
    """Write `table` (sorted by its first column, epoch ms), one row group per period of `months`; return the size.

    A path is written atomically; a stream (`pa.BufferOutputStream`) as it is.
    """
    _write_groups(table, path, months)  # atomically, when a path
    return path.stat().st_size if isinstance(path, Path) else 0


def group_time_ranges(metadata: pa.parquet.FileMetaData) -> tuple[np.ndarray, np.ndarray] | None:
    """First and last time (epoch ms, the first column) of each row group, from the footer's statistics."""
    lows, highs = [], []
    for i in range(metadata.num_row_groups):
        stats = metadata.row_group(i).column(0).statistics
        if stats is None or not stats.has_min_max:
            return None
        lows.append(int(stats.min_raw))
        highs.append(int(stats.max_raw))
    return np.array(lows, dtype=np.int64), np.array(highs, dtype=np.int64)


def write_extended(previous: Path, keep: int, tail: pa.Table, target: Path, months: int = 1) -> int:
    """Write `target` atomically as `previous`' first `keep` row groups (their bytes) + `tail` encoded in periods
    of `months`; return its size. Raises `splice.SpliceError` when the two cannot be joined."""
    from bhds.generate.splice import SpliceError, footer_only, splice_plan

    sink = pa.BufferOutputStream()
    _write_groups(tail, sink, months)
    kept_end, rest = splice_plan(footer_only(previous), keep, sink.getvalue().to_pybytes())
    try:
        storage.write_joined(previous, kept_end, rest, target)
    except EOFError:
        raise SpliceError(f"{previous} is shorter than its footer says") from None
    return kept_end + len(rest)


def _write_groups(table: pa.Table, where: Path | pa.NativeFile, months: int) -> None:
    times = table.column(0).chunk(0) if table.column(0).num_chunks == 1 else table.column(0).combine_chunks()
    t = np.frombuffer(times.buffers()[1], dtype=np.int64, count=len(times), offset=times.offset * 8)
    bounds = month_bounds(t, months)
    with storage.parquet_writer(where, table.schema, **storage.numeric_write_options(table.schema)) as writer:
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            if hi > lo:
                writer.write_table(table.slice(lo, hi - lo), row_group_size=hi - lo)
