"""How a result klines file is laid out: one row group per calendar month.

A row group per month lets a later run keep a file's past months as they are (their bytes,
`splice`) and encode only the months that changed; a full build writes the very same groups, so
both give identical files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from bhds import storage
from bhds.generate.grid import month_start_ms, months_since_epoch


def month_bounds(t: np.ndarray) -> list[int]:
    """Row offsets where each calendar month of the sorted times `t` starts, and `len(t)`."""
    if not len(t):
        return [0]
    first, last = months_since_epoch(t[[0, -1]])
    starts = month_start_ms(np.arange(first + 1, last + 1))
    return [0, *(int(i) for i in np.searchsorted(t, starts)), len(t)]


def write_months(table: pa.Table, path: Path | pa.NativeFile) -> int:
    """Write `table` (sorted by its first column, epoch ms), one row group per month; return the size.

    A path is written atomically; a stream (`pa.BufferOutputStream`) as it is.
    """
    if not isinstance(path, Path):
        _write_groups(table, path)
        return 0
    with storage.atomic_path(path) as tmp:
        _write_groups(table, tmp)
        size = tmp.stat().st_size
    return size


def _write_groups(table: pa.Table, where: Path | pa.NativeFile) -> None:
    import pyarrow.parquet as pq

    times = table.column(0).chunk(0) if table.column(0).num_chunks == 1 else table.column(0).combine_chunks()
    t = np.frombuffer(times.buffers()[1], dtype=np.int64, count=len(times), offset=times.offset * 8)
    bounds = month_bounds(t)
    with pq.ParquetWriter(where, table.schema, **storage.numeric_write_options(table.schema)) as writer:
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            if hi > lo:
                writer.write_table(table.slice(lo, hi - lo), row_group_size=hi - lo)
