"""Funding-rate CSV rows → a pyarrow Table in `PARSED_FUNDING_SCHEMA`.

The CSV is `calc_time, funding_interval_hours, last_funding_rate` (header usually present,
detected per file). `candle_begin_time` is the funding time floored to the whole UTC hour,
because Binance stamps settlements a few ms late.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.csv as pcsv

from bhds.parse.zipcsv import BadSourceFile
from bhds.schema import HOUR_MS, PARSED_FUNDING_SCHEMA, TIMESTAMP

_NAMES = ["funding_time", "funding_interval_hours", "funding_rate"]
_READ = pcsv.ReadOptions(column_names=_NAMES, use_threads=False)
_CONVERT = pcsv.ConvertOptions(
    column_types={"funding_time": pa.int64(), "funding_interval_hours": pa.int64(), "funding_rate": pa.float64()},
    null_values=[],
    strings_can_be_null=False,
)


def parse_rows(csv: bytes) -> pa.Table:
    """Header-less funding CSV bytes → PARSED_FUNDING_SCHEMA table; BadSourceFile if a row is malformed."""
    try:
        raw = pcsv.read_csv(pa.py_buffer(csv), read_options=_READ, convert_options=_CONVERT)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise BadSourceFile(f"unparseable CSV row ({first})") from None
    times = raw.column("funding_time").to_numpy()
    hour = times - times % HOUR_MS
    return pa.Table.from_arrays(
        [
            pa.array(times, type=pa.int64()).cast(TIMESTAMP),
            raw.column("funding_interval_hours"),
            raw.column("funding_rate"),
            pa.array(hour, type=pa.int64()).cast(TIMESTAMP),
        ],
        schema=PARSED_FUNDING_SCHEMA,
    )


def empty() -> pa.Table:
    return PARSED_FUNDING_SCHEMA.empty_table()

