"""Helpers for the generate tests: write the inputs the parse and API stages would have written.

Kept in a test module (it holds no tests) so both generate test files can share it.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa

from bhds.paths import Layout
from bhds.schema import API_FUNDING_SCHEMA, KLINE_SCHEMA, PARSED_FUNDING_SCHEMA, TIMESTAMP
from bhds.settings import Settings, load_settings
from bhds.storage import read_table, write_table
from bhds.types import TradeType

MINUTE = 60_000
HOUR = 3_600_000
DAY = 86_400_000


def ms(text: str) -> int:
    """Epoch ms of an ISO time, UTC: `ms("2024-01-01T08:00")`."""
    return int(datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp() * 1000)


def steps(start: str, end: str, step: int = MINUTE) -> np.ndarray:
    """Candle open times in [start, end)."""
    return np.arange(ms(start), ms(end), step, dtype=np.int64)


def klines(t: np.ndarray, price: np.ndarray | float, volume: np.ndarray | float = 2.0, seed: int = 0) -> pa.Table:
    """A KLINE_SCHEMA table with open/close around `price`, high/low bracketing them, VWAP = price."""
    n = len(t)
    rng = np.random.default_rng(seed)
    price = np.broadcast_to(np.asarray(price, dtype=np.float64), (n,)).copy()
    volume = np.broadcast_to(np.asarray(volume, dtype=np.float64), (n,)).copy()
    open_ = price * (1 + rng.uniform(-0.001, 0.001, n))
    close = price * (1 + rng.uniform(-0.001, 0.001, n))
    high = np.maximum(open_, close) * 1.002
    low = np.minimum(open_, close) * 0.998
    return pa.table(
        {
            "candle_begin_time": pa.array(t, type=TIMESTAMP),
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": volume,
            "quote_volume": volume * price,
            "trade_num": rng.integers(1, 50, n).astype(np.int64),
            "taker_buy_base_asset_volume": volume / 2,
            "taker_buy_quote_asset_volume": volume * price / 2,
        },
        schema=KLINE_SCHEMA,
    )


def write_archive(layout: Layout, trade_type: TradeType, symbol: str, interval: str, table: pa.Table) -> None:
    """Monthly parsed partitions as the parse stage writes them, plus the archive directory that lists the symbol."""
    t = table.column("candle_begin_time").cast(pa.int64()).to_numpy()
    months = t.astype("datetime64[ms]").astype("datetime64[M]")
    for month in np.unique(months):
        y, m = int(str(month)[:4]), int(str(month)[5:7])
        write_table(table.filter(pa.array(months == month)), layout.parsed_kline_partition(trade_type, symbol, interval, y, m))
    layout.aws_kline_dir(trade_type, symbol, interval).mkdir(parents=True, exist_ok=True)


def write_api_day(layout: Layout, trade_type: TradeType, symbol: str, interval: str, day: date, table: pa.Table) -> None:
    write_table(table, layout.api_kline_day_file(trade_type, symbol, interval, day))


def write_funding(layout: Layout, trade_type: TradeType, symbol: str, times: list[int], rates: list[float], *, api: bool = False) -> None:
    t = np.asarray(times, dtype=np.int64)
    hour = t - t % HOUR
    if api:
        table = pa.table({"funding_time": pa.array(t, type=TIMESTAMP), "candle_begin_time": pa.array(hour, type=TIMESTAMP), "funding_rate": rates}, schema=API_FUNDING_SCHEMA)
        write_table(table, layout.api_funding_file(trade_type, symbol))
    else:
        table = pa.table(
            {"funding_time": pa.array(t, type=TIMESTAMP), "funding_interval_hours": np.full(len(t), 8, dtype=np.int64), "funding_rate": rates,
             "candle_begin_time": pa.array(hour, type=TIMESTAMP)},
            schema=PARSED_FUNDING_SCHEMA,
        )
        write_table(table, layout.parsed_funding_file(trade_type, symbol))


def settings_for(base: Path, n_jobs: int = 1) -> Settings:
    return load_settings({"CRYPTO_BASE_DIR": str(base), "CRYPTO_NJOBS": str(n_jobs), "HOME": str(base)})


def times(table: pa.Table) -> np.ndarray:
    return table.column("candle_begin_time").cast(pa.int64()).to_numpy()


def read(path: Path) -> pa.Table:
    return read_table(path)
