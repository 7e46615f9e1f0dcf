"""Helpers for the api_data tests: parsed stores built from the fake's series, expected API days.

(No tests here; the name only keeps the file next to the tests that use it.)
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta

import pyarrow as pa

from bhds.paths import Layout
from bhds.schema import KLINE_SCHEMA
from bhds.storage import write_table
from tests.fakebinance import series
from tests.fakebinance.universe import DAY_MS, SymbolSpec, day_ms

MARKET = {"spot": "spot", "um_futures": "um", "cm_futures": "cm"}


def bars_table(bars: series.Bars) -> pa.Table:
    """The fake's bars in the contract's kline schema (what parse and the API stage write)."""
    a = bars.to_arrays()
    return pa.Table.from_arrays(
        [pa.array(a["open_time"]).cast(KLINE_SCHEMA.field(0).type), pa.array(a["open"]), pa.array(a["high"]),
         pa.array(a["low"]), pa.array(a["close"]), pa.array(a["volume"]), pa.array(a["quote_volume"]),
         pa.array(a["count"]), pa.array(a["taker_buy_volume"]), pa.array(a["taker_buy_quote_volume"])],
        schema=KLINE_SCHEMA,
    )


def days_between(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def write_store(layout: Layout, trade_type: str, spec: SymbolSpec, interval: str, days: Iterable[date], *,
                cut: dict[date, int] | None = None, aws_dir: bool = True) -> int:
    """Monthly parsed partitions holding the archive bars of `days` (`cut`: keep only the first n rows)."""
    months: dict[tuple[int, int], list[pa.Table]] = {}
    for d in days:
        table = bars_table(series.day_bars(spec, interval, d, archive=True))
        if cut and d in cut:
            table = table.slice(0, cut[d])
        months.setdefault((d.year, d.month), []).append(table)
    rows = 0
    for (year, month), parts in months.items():
        table = pa.concat_tables(parts)
        rows += table.num_rows
        write_table(table, layout.parsed_kline_partition(trade_type, spec.symbol, interval, year, month))
    if aws_dir:
        layout.aws_kline_dir(trade_type, spec.symbol, interval).mkdir(parents=True, exist_ok=True)
    return rows


def rest_day(spec: SymbolSpec, interval: str, d: date, now_ms: int) -> pa.Table:
    """What the fake's REST API holds for one UTC day, without a bar still forming at `now_ms`."""
    table = bars_table(series.kline_bars(spec, interval, day_ms(d), day_ms(d) + DAY_MS, now_ms=now_ms))
    step = series.INTERVAL_MS[interval]
    opens = table.column(0).cast(pa.int64()).to_pylist()
    closed = sum(1 for t in opens if t + step <= now_ms)
    return table.slice(0, closed)


def short_window(fake, window_s: float, budgets: dict[str, int]) -> None:
    """Make the fake count weight in `window_s`-second windows and announce them in exchangeInfo.

    The fake's exchangeInfo always says "per minute"; bhds reads its budget from there, so the
    announcement is patched on this server instance to match the real window.
    """
    fake.faults.weight_window = window_s
    fake.faults.weight_budget = dict(budgets)
    app = fake.fake

    def rate_limits(market: str) -> list[dict]:
        return [{"rateLimitType": "REQUEST_WEIGHT", "interval": "SECOND", "intervalNum": int(window_s),
                 "limit": app.faults.budget(market)}]

    app._rate_limits = rate_limits
