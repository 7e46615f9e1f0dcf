"""Kline CSV rows → a pyarrow Table in `KLINE_SCHEMA`.

Columns are taken by position (Binance's 12-column layout, header names vary); the open time is
read as an integer and its unit decided per value, because spot files switched from ms to µs on
2025-01-01 and a month can hold both.
"""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from bhds.parse.zipcsv import BadSourceFile
from bhds.schema import KLINE_SCHEMA

# Position i of the CSV → our column name (None = not kept: close_time, ignore).
_CSV_COLUMNS = (
    "candle_begin_time", "open", "high", "low", "close", "volume", None,
    "quote_volume", "trade_num", "taker_buy_base_asset_volume", "taker_buy_quote_asset_volume", None,
)
_NAMES = [name or f"_unused{i}" for i, name in enumerate(_CSV_COLUMNS)]
_KEPT = [name for name in _CSV_COLUMNS if name]
# open_time is read as a plain integer; its unit is resolved per value below.
_TYPES = {field.name: (pa.int64() if field.name == "candle_begin_time" else field.type) for field in KLINE_SCHEMA}
# Any value ≥ 10^15 is µs: ms reaches 10^15 only in the year 33658, µs passed it in 2001.
MICROSECOND_THRESHOLD = 10**15
# One pyarrow call per batch of days amortises the reader's fixed cost; the cap bounds memory (1s months).
MAX_BATCH_BYTES = 16 * 1024 * 1024

_READ = pcsv.ReadOptions(column_names=_NAMES, use_threads=False, block_size=1 << 22)
# No null values at all: an empty field is a broken row, not a missing value.
_CONVERT = pcsv.ConvertOptions(column_types=_TYPES, include_columns=_KEPT, null_values=[], strings_can_be_null=False)
_PARSE = pcsv.ParseOptions()


def parse_rows(csv: bytes) -> pa.Table:
    """Header-less kline CSV bytes → KLINE_SCHEMA table (file order kept); BadSourceFile if a row is malformed."""
    try:
        raw = pcsv.read_csv(pa.py_buffer(csv), read_options=_READ, parse_options=_PARSE, convert_options=_CONVERT)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise BadSourceFile(f"unparseable CSV row ({_short(exc)})") from None
    open_time = raw.column("candle_begin_time")
    open_ms = pc.if_else(pc.greater_equal(open_time, MICROSECOND_THRESHOLD), pc.divide(open_time, 1000), open_time)
    columns = [open_ms.cast(KLINE_SCHEMA.field(0).type)] + [raw.column(name) for name in KLINE_SCHEMA.names[1:]]
    return pa.Table.from_arrays(columns, schema=KLINE_SCHEMA)


def parse_many(bodies: Iterable[tuple[str, bytes]]) -> tuple[pa.Table, list[tuple[str, str]], list[tuple[str, int]]]:
    """Parse several files' rows, in the given order.

    Returns the table, the bad files as (name, reason), and where the rows came from as
    (name, rows) per parsed file in table order. Files are joined into batches of up to
    MAX_BATCH_BYTES and parsed in one call each; a batch with a bad row, or whose row count does
    not match its files' line counts (a blank line somewhere), is parsed again file by file, so
    only the bad file is lost and every row's file is known. `bodies` may be a generator: files
    are then read one batch at a time.
    """
    tables: list[pa.Table] = []
    failures: list[tuple[str, str]] = []
    sources: list[tuple[str, int]] = []
    batch: list[tuple[str, bytes]] = []
    size = 0

    def flush() -> None:
        nonlocal batch, size
        if len(batch) > 1:
            try:
                joined = parse_rows(b"".join(body for _, body in batch))
                lines = [body.count(b"\n") for _, body in batch]  # every body ends with a newline
                if sum(lines) == joined.num_rows:
                    tables.append(joined)
                    sources.extend((name, n) for (name, _), n in zip(batch, lines))
                    batch, size = [], 0
                    return
            except BadSourceFile:
                pass
        for name, body in batch:
            try:
                table = parse_rows(body)
            except BadSourceFile as exc:
                failures.append((name, str(exc)))
                continue
            tables.append(table)
            sources.append((name, table.num_rows))
        batch, size = [], 0

    for name, body in bodies:
        if size and size + len(body) > MAX_BATCH_BYTES:
            flush()
        batch.append((name, body))
        size += len(body)
    flush()
    table = pa.concat_tables(tables) if tables else KLINE_SCHEMA.empty_table()
    return table, failures, sources


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]
