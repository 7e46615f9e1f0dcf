"""Split segments of the generated results (`SP<i>_<SYM>` ... `<SYM>`) from Parquet footers only."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from bhds.errors import DataError
from bhds.quality.grid import iso_ms
from bhds.quality.pieces import as_numpy, times_ms
from bhds.storage import open_parquet
from bhds.types import DAY_MS

_TO_MS = {"s": 1000, "ms": 1, "us": 1 / 1000, "ns": 1 / 1_000_000}


@dataclass
class Segment:
    name: str
    first: int | None
    last: int | None
    rows: int

    def to_json(self) -> dict:
        return {"name": self.name, "first": iso_ms(self.first), "last": iso_ms(self.last), "rows": self.rows}


def read_segment(name: str, path: Path) -> Segment:
    """First/last candle and row count of a results file, from row-group statistics when present."""
    try:
        pf = open_parquet(path)
        meta = pf.metadata
        field = pf.schema_arrow.field("candle_begin_time")
        column = pf.schema_arrow.get_field_index("candle_begin_time")
        lows, highs = [], []
        for i in range(meta.num_row_groups):
            stats = meta.row_group(i).column(column).statistics
            if meta.row_group(i).num_rows == 0:
                continue
            if stats is None or not stats.has_min_max or not pa.types.is_timestamp(field.type):
                lows, highs = None, None
                break
            scale = _TO_MS[field.type.unit]
            lows.append(int(stats.min_raw * scale))
            highs.append(int(stats.max_raw * scale))
        if lows is None:  # no usable statistics: read the one column
            times = as_numpy(times_ms(pf.read(columns=["candle_begin_time"]).column(0)).drop_null())
            lows, highs = ([int(times.min())], [int(times.max())]) if len(times) else ([], [])
    except (OSError, pa.ArrowException, KeyError) as exc:
        raise DataError(f"cannot read {path} ({exc}): run generate kline again to rewrite it") from exc
    return Segment(name, min(lows) if lows else None, max(highs) if highs else None, meta.num_rows)


def split_gaps(segments: list[Segment]) -> list[dict]:
    """The holes between consecutive segments, in days: where generate split the series."""
    ordered = sorted((s for s in segments if s.first is not None), key=lambda s: s.first)
    return [
        {"after": iso_ms(a.last), "before": iso_ms(b.first), "days": round((b.first - a.last) / DAY_MS, 3)}
        for a, b in zip(ordered, ordered[1:])
    ]
