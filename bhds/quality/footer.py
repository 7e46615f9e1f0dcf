"""The month summary that parse stores in each partition's Parquet footer.

Parse has every row of a partition in memory when it writes it, so it computes the partition's
`PieceStats` there (with `pieces.month_stats`, the same function the report uses) and keeps it as
key-value metadata. A report then reads a footer of a few KB instead of decoding six columns:
12,000 partitions cost about a second, not half a minute.

The summary is bound to the rows it describes by what Parquet's own footer says about them: it
is used only while the row count, the time column's min/max and the min/max of open, high, low,
close and volume equal the values recorded beside it (and the interval and format match). A file
rewritten by another tool with rows added, dropped or moved, or with an extreme value changed,
fails the check and is decoded. An edit inside the range that keeps all of these does not;
`quality report --deep` decodes everything and reports summaries that disagree with the rows.

Parse also records here how many rows it dropped for repeating a time, per UTC day, so that a
later run that re-parses some days can replace their counts and keep the others. A row a file
lists for another day is counted only when both days' files are parsed in the same run (a later
re-parse of that other day replaces it without counting); Binance's daily files rarely do this.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING

import numpy as np

from bhds.quality.grid import Grid
from bhds.quality.pieces import COLUMNS, Arrays, PieceStats, month_stats, table_arrays
from bhds.types import DAY_MS, parse_interval

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq

KEY = b"bhds.month_summary"
FORMAT = "bhds-month-summary/2"
_CHECKED = COLUMNS[1:]  # open, high, low, close, volume


def with_summary(table: pa.Table, interval: str, duplicates_by_day: dict[int, int] | None) -> pa.Table:
    """`table` carrying its month summary in the schema metadata, which Parquet writes to the footer.

    `duplicates_by_day` is what parse dropped per UTC day (None: unknown for some day).
    """
    arrays = table_arrays(table)
    stats = month_stats(arrays, [], Grid(parse_interval(interval)))
    stats.parse_duplicates = None if duplicates_by_day is None else sum(duplicates_by_day.values())
    body = {
        "format": FORMAT,
        "interval": interval,
        "file_rows": table.num_rows,
        "extremes": _extremes(arrays),
        "duplicates_by_day": None if duplicates_by_day is None else {str(d): n for d, n in sorted(duplicates_by_day.items()) if n},
        "stats": stats.to_json(),
    }
    metadata = dict(table.schema.metadata or {})
    metadata[KEY] = json.dumps(body, separators=(",", ":")).encode()
    return table.replace_schema_metadata(metadata)


def _extremes(arrays: Arrays) -> dict[str, list | None]:
    """Min and max of each checked column as Parquet's statistics state them: NaN ignored, None if no value."""
    out: dict[str, list | None] = {}
    for name, values in zip(COLUMNS, (arrays.ts, arrays.o, arrays.h, arrays.l, arrays.c, arrays.v)):
        if values.dtype.kind == "f":
            lo, hi = float(values.min(initial=math.inf)), float(values.max(initial=-math.inf))
            if math.isnan(lo) or math.isnan(hi):  # rare: only then pay for the NaN-skipping pass
                finite = values[~np.isnan(values)]
                lo, hi = float(finite.min(initial=math.inf)), float(finite.max(initial=-math.inf))
            out[name] = None if lo > hi else [lo, hi]
        else:
            out[name] = [int(values.min()), int(values.max())] if len(values) else None
    return out


def _stored_extremes(metadata: pq.FileMetaData) -> dict[str, list | None] | None:
    """The same from the footer's row-group statistics; None when a column has none or times are not in ms."""
    schema = metadata.schema
    index = {schema.column(i).name: i for i in range(len(schema))}
    if not set(COLUMNS) <= index.keys() or "milliseconds" not in str(schema.column(index[COLUMNS[0]]).logical_type).lower():
        return None
    out: dict[str, list | None] = {}
    for name in COLUMNS:
        lows, highs = [], []
        for group in range(metadata.num_row_groups):
            stats = metadata.row_group(group).column(index[name]).statistics
            if stats is None:
                return None
            if stats.has_min_max:
                lows.append(stats.min_raw)
                highs.append(stats.max_raw)
        out[name] = [min(lows), max(highs)] if lows else None
    return out


def _body(metadata: pq.FileMetaData) -> dict | None:
    raw = (metadata.metadata or {}).get(KEY)
    if raw is None:
        return None
    try:
        body = json.loads(raw)
    except ValueError:
        return None
    return body if isinstance(body, dict) and body.get("format") == FORMAT else None


def has_summary(metadata: pq.FileMetaData, interval: str) -> bool:
    """Whether parse left a summary of this interval in the footer (valid or not)."""
    body = _body(metadata)
    return body is not None and body.get("interval") == interval


def stored_stats(metadata: pq.FileMetaData, interval: str) -> PieceStats | None:
    """The partition's summary when it is present, of this interval, and still describes the file."""
    body = _body(metadata)
    if body is None or body.get("interval") != interval or body.get("file_rows") != metadata.num_rows:
        return None
    if metadata.num_rows and _stored_extremes(metadata) != body.get("extremes"):
        return None
    try:
        stats = PieceStats.from_json(body["stats"])
    except (KeyError, TypeError, ValueError):
        return None
    return stats


def parse_duplicates(metadata: pq.FileMetaData) -> int | None:
    """Rows parse dropped for repeating a time while building this file; None when not recorded."""
    by_day = duplicates_by_day(metadata)
    return None if by_day is None else sum(by_day.values())


def duplicates_by_day(metadata: pq.FileMetaData) -> dict[int, int] | None:
    """Day number -> rows parse dropped for repeating a time that day; None when not recorded.

    Read even when the summary no longer matches the rows: the counts describe the source files
    parse read, which an edit of the partition does not change.
    """
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
