"""Column names and Arrow types of every Parquet file (contract §5). Identical to what bhds.py wrote."""

from __future__ import annotations

import pyarrow as pa

TIMESTAMP = pa.timestamp("ms", tz="UTC")

KLINE_SCHEMA = pa.schema(
    [
        ("candle_begin_time", TIMESTAMP),
        ("open", pa.float64()),
        ("high", pa.float64()),
        ("low", pa.float64()),
        ("close", pa.float64()),
        ("volume", pa.float64()),
        ("quote_volume", pa.float64()),
        ("trade_num", pa.int64()),
        ("taker_buy_base_asset_volume", pa.float64()),
        ("taker_buy_quote_asset_volume", pa.float64()),
    ]
)
KLINE_COLUMNS = KLINE_SCHEMA.names

# parsed_data/<tt>/funding/<SYMBOL>.pqt
PARSED_FUNDING_SCHEMA = pa.schema(
    [
        ("funding_time", TIMESTAMP),
        ("funding_interval_hours", pa.int64()),
        ("funding_rate", pa.float64()),
        ("candle_begin_time", TIMESTAMP),
    ]
)

# api_data/<tt>/funding_rate/<SYMBOL>.pqt
API_FUNDING_SCHEMA = pa.schema(
    [
        ("funding_time", TIMESTAMP),
        ("candle_begin_time", TIMESTAMP),
        ("funding_rate", pa.float64()),
    ]
)

HOUR_MS = 3_600_000


def vwap_column(interval: str) -> str:
    """`avg_price_<interval>`, e.g. `avg_price_1m`."""
    return f"avg_price_{interval}"


def empty_table(schema: pa.Schema) -> pa.Table:
    return schema.empty_table()
