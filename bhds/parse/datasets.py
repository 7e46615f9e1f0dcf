"""The Parquet schema of every archive dataset `archive parse` writes, in one table.

Binance's CSV columns in order, under Binance's own snake_case header names (the headered
futures files' names; spot files have no header and use the same order). Ids and counts are
int64, prices, quantities and ratios float64, booleans bool, free text string. Times are
`timestamp[us, tz=UTC]` for trades and aggTrades and `timestamp[ms, tz=UTC]` elsewhere: epoch
numbers are read as ms or µs per value (spot switched to µs in 2025; a µs value in an ms
column is floored to the ms), and the `YYYY-MM-DD HH:MM:SS` strings of metrics and bookDepth
are UTC. The klines' last column (`ignore`) is not kept.

  dataset               columns
  klines, markPriceKlines, indexPriceKlines, premiumIndexKlines
                        open_time, open, high, low, close, volume, close_time, quote_volume,
                        count, taker_buy_volume, taker_buy_quote_volume
  trades                id, price, qty, quote_qty (COIN-M: base_qty), time, is_buyer_maker
                        [, is_best_match (spot)]
  aggTrades             agg_trade_id, price, quantity, first_trade_id, last_trade_id,
                        transact_time, is_buyer_maker [, is_best_match (spot)]
  bookTicker            update_id, best_bid_price, best_bid_qty, best_ask_price, best_ask_qty,
                        transaction_time, event_time
  bookDepth             timestamp, percentage, depth, notional
  metrics               create_time, symbol, sum_open_interest, sum_open_interest_value,
                        count_toptrader_long_short_ratio, sum_toptrader_long_short_ratio,
                        count_long_short_ratio, sum_taker_long_short_vol_ratio
  fundingRate           calc_time, funding_interval_hours, last_funding_rate
  liquidationSnapshot   time, side, order_type, time_in_force, original_quantity, price,
                        average_price, order_status, last_fill_quantity,
                        accumulated_fill_quantity
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

TIME_US = pa.timestamp("us", tz="UTC")
TIME_MS = pa.timestamp("ms", tz="UTC")
_I, _F, _B, _S = pa.int64(), pa.float64(), pa.bool_(), pa.string()


@dataclass(frozen=True)
class Column:
    """One CSV column: its Parquet name and type, and how the CSV writes it."""

    name: str
    type: pa.DataType
    text_time: bool = False  # a `YYYY-MM-DD HH:MM:SS` UTC string rather than an epoch number
    kept: bool = True  # False: read past, not written (the klines' `ignore`)

    @property
    def is_time(self) -> bool:
        return pa.types.is_timestamp(self.type)


def _cols(spec: str) -> list[Column]:
    """`name:kind ...` → columns; kinds: i int64, f float64, b bool, s string, ms/us epoch time,
    text UTC datetime string, skip read and dropped."""
    kinds = {"i": _I, "f": _F, "b": _B, "s": _S, "ms": TIME_MS, "us": TIME_US, "text": TIME_MS, "skip": _S}
    out = []
    for item in spec.split():
        name, kind = item.split(":")
        out.append(Column(name, kinds[kind], text_time=kind == "text", kept=kind != "skip"))
    return out


KLINE_LIKE = ("klines", "markPriceKlines", "indexPriceKlines", "premiumIndexKlines")
_KLINE = _cols("open_time:ms open:f high:f low:f close:f volume:f close_time:ms quote_volume:f count:i "
               "taker_buy_volume:f taker_buy_quote_volume:f ignore:skip")
SCHEMAS: dict[str, list[Column]] = {
    **{name: _KLINE for name in KLINE_LIKE},
    "trades": _cols("id:i price:f qty:f quote_qty:f time:us is_buyer_maker:b"),
    "aggTrades": _cols("agg_trade_id:i price:f quantity:f first_trade_id:i last_trade_id:i transact_time:us "
                       "is_buyer_maker:b"),
    "bookTicker": _cols("update_id:i best_bid_price:f best_bid_qty:f best_ask_price:f best_ask_qty:f "
                        "transaction_time:ms event_time:ms"),
    "bookDepth": _cols("timestamp:text percentage:f depth:f notional:f"),
    "metrics": _cols("create_time:text symbol:s sum_open_interest:f sum_open_interest_value:f "
                     "count_toptrader_long_short_ratio:f sum_toptrader_long_short_ratio:f count_long_short_ratio:f "
                     "sum_taker_long_short_vol_ratio:f"),
    "fundingRate": _cols("calc_time:ms funding_interval_hours:i last_funding_rate:f"),
    "liquidationSnapshot": _cols("time:ms side:s order_type:s time_in_force:s original_quantity:f price:f "
                                 "average_price:f order_status:s last_fill_quantity:f accumulated_fill_quantity:f"),
}
_SPOT_EXTRA = {"trades": Column("is_best_match", _B), "aggTrades": Column("is_best_match", _B)}


def csv_columns(market: str, dataset: str) -> list[Column]:
    """Every CSV column of `dataset` in `market` (spot, um_futures, cm_futures), in file order."""
    if dataset not in SCHEMAS:
        raise ValueError(f"no schema for {dataset}")
    cols = list(SCHEMAS[dataset])
    if dataset == "trades" and market == "cm_futures":
        cols[3] = Column("base_qty", _F)
    if market == "spot" and dataset in _SPOT_EXTRA:
        cols.append(_SPOT_EXTRA[dataset])
    return cols


def schema(market: str, dataset: str) -> pa.Schema:
    """The Parquet schema of a partition of `dataset` in `market`."""
    return pa.schema([(c.name, c.type) for c in csv_columns(market, dataset) if c.kept])
