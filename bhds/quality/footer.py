"""The month summary that parse stores in each partition's Parquet footer.

Parse has every row of a partition in memory when it writes it, so it computes the partition's
`PieceStats` there (with `pieces.month_stats`, the same function the report uses) and keeps it as
key-value metadata. A report then reads a 2 KB footer instead of decoding six columns: 12,000
partitions cost about a second, not a minute.

The summary is bound to the file it describes: it is used only when the footer's row count and
the time column's min/max statistics equal the ones recorded beside it, the interval matches, and
the format is this one. A file rewritten by another tool that dropped or changed rows fails the
check and is decoded. `quality report --deep` ignores summaries and checks them against the rows.

Parse also records here how many rows it dropped as repeated times, per UTC day, so that a later
run that re-parses some days can replace their counts and keep the others.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np

from bhds.quality.grid import Grid
from bhds.quality.pieces import PieceStats, month_stats, table_arrays
from bhds.types import DAY_MS, parse_interval

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq

KEY = b"bhds.month_summary"
FORMAT = "bhds-month-summary/1"


def with_summary(table: pa.Table, interval: str, duplicates_by_day: dict[int, int] | None) -> pa.Table:
    """`table` carrying its month summary in the schema metadata, which Parquet writes to the footer.

    `duplicates_by_day` is what parse dropped per UTC day (None: unknown for some day).
    """
    arrays = table_arrays(table)
    arrays.parse_duplicates = None if duplicates_by_day is None else sum(duplicates_by_day.values())
    stats = month_stats(arrays, [], Grid(parse_interval(interval)))
    times = arrays.ts
    body = {
        "format": FORMAT,
        "interval": interval,
        "file_rows": table.num_rows,
        "time_min": int(times.min()) if len(times) else None,
        "time_max": int(times.max()) if len(times) else None,
        "duplicates_by_day": None if duplicates_by_day is None else {str(d): n for d, n in sorted(duplicates_by_day.items()) if n},
        "stats": stats.to_json(),
    }
    metadata = dict(table.schema.metadata or {})
    metadata[KEY] = json.dumps(body, separators=(",", ":")).encode()
    return table.replace_schema_metadata(metadata)


def _body(metadata: pq.FileMetaData) -> dict | None:
    raw = (metadata.metadata or {}).get(KEY)
    if raw is None:
        return None
    try:
        body = json.loads(raw)
    except ValueError:
        return None
    return body if isinstance(body, dict) and body.get("format") == FORMAT else None


def _time_range_ms(metadata: pq.FileMetaData) -> tuple[int, int] | None:
    """Min and max of the first column (candle_begin_time) from row-group statistics, if stored in ms."""
    column = metadata.schema.column(0)
    if column.physical_type != "INT64" or "milliseconds" not in str(column.logical_type).lower():
        return None
    lows, highs = [], []
    for i in range(metadata.num_row_groups):
        stats = metadata.row_group(i).column(0).statistics
        if stats is None or not stats.has_min_max:
            return None
        lows.append(stats.min_raw)
        highs.append(stats.max_raw)
    return (min(lows), max(highs)) if lows else None


def stored_stats(metadata: pq.FileMetaData, interval: str) -> PieceStats | None:
    """The partition's summary when it is present, of this interval, and still describes the file."""
    body = _body(metadata)
    if body is None or body.get("interval") != interval or body.get("file_rows") != metadata.num_rows:
        return None
    if metadata.num_rows:
        if _time_range_ms(metadata) != (body.get("time_min"), body.get("time_max")):
            return None
    try:
        return PieceStats.from_json(body["stats"])
    except (KeyError, TypeError, ValueError):
        return None


def parse_duplicates(metadata: pq.FileMetaData) -> int | None:
    """Rows parse dropped as repeated times while building this file; None when not recorded."""
    by_day = duplicates_by_day(metadata)
    return None if by_day is None else sum(by_day.values())


def duplicates_by_day(metadata: pq.FileMetaData) -> dict[int, int] | None:
    body = _body(metadata)
    if body is None or not isinstance(body.get("duplicates_by_day"), dict):
        return None
    try:
        return {int(day): int(n) for day, n in body["duplicates_by_day"].items()}
    except (TypeError, ValueError):
        return None


def repeated_times_by_day(times_ms: np.ndarray) -> dict[int, int]:
    """Per UTC day, the rows beyond the first that share a time (what de-duplication drops)."""
    ordered = np.sort(times_ms)
    repeats = ordered[1:][ordered[1:] == ordered[:-1]]
    if not len(repeats):
        return {}
    days, counts = np.unique(repeats // DAY_MS, return_counts=True)
    return {int(d): int(n) for d, n in zip(days, counts)}
