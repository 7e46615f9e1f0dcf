"""Klines built from parsed trades or aggTrades, at any interval (sub-minute ones too).

Semantics are Binance's own, so that bars from a day's aggTrades equal that day's klines:
a bar opening at t holds the trades with time in [t, t+I); open/close are the first/last trade
in file (trade id) order; `trade_num` counts trades (an aggTrade stands for last_trade_id -
first_trade_id + 1 of them); the taker-buy volumes are those of trades whose buyer is NOT the
maker; `quote_volume` sums price × quantity (trades: Binance's own quote_qty; COIN-M: the base
asset, quantity × contract size / price, as COIN-M klines report). An interval with no trade has
no row, as Binance publishes no kline for it.

Memory: the input is read one Parquet row group at a time; each batch is reduced to partial
bars right away (numpy, no per-trade Python), and the partial bars, a few per output bar at
most, are merged at the end. Peak memory is one row group plus the output.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bhds.errors import DataError, InputError
from bhds.paths import partition_month
from bhds.schema import KLINE_SCHEMA
from bhds.storage import files_signature, footer_value, open_parquet, read_rows, write_table_numeric
from bhds.types import DAY_MS, Interval, parse_interval

SOURCES_KEY = b"bhds.bars"
SOURCE_DATASETS = ("aggTrades", "trades")
FORMAT_VERSION = 1
_VALUES = ("open", "high", "low", "close", "volume", "quote_volume", "trade_num", "taker_buy_base_asset_volume",
           "taker_buy_quote_asset_volume")
_SUMS = ("volume", "quote_volume", "trade_num", "taker_buy_base_asset_volume", "taker_buy_quote_asset_volume")


def bar_interval(text: str) -> Interval:
    """A bar length in s, m, h or d: under a day it must divide the day (bars align on midnight UTC)."""
    interval = parse_interval(text, what="bar interval")
    if interval.unit not in ("s", "m", "h", "d"):
        raise InputError(f"bar interval {text!r} must be in seconds, minutes, hours or days (s, m, h, d), e.g. 10s, 1m, 1h",
                         exit_code=2)
    if interval.ms > DAY_MS and interval.ms % DAY_MS:
        raise InputError(f"bar interval {text!r} is longer than a day but not whole days: use e.g. 1d, 3d", exit_code=2)
    if interval.ms < DAY_MS and DAY_MS % interval.ms:
        raise InputError(f"bar interval {text!r} does not divide a day, so bars would not start at midnight UTC: "
                         "use e.g. 10s, 15s, 1m, 5m, 1h, 4h", exit_code=2)
    return interval


@dataclass(frozen=True)
class BarsTask:
    """One symbol's bars to (re)build from its monthly partitions; picklable for a worker process."""

    market: str
    dataset: str
    interval_ms: int
    sources: tuple[str, ...]
    target: str
    signature: str
    contract_size: float | None = None  # COIN-M aggTrades only: USD per contract
    keep_before_ms: int | None = None  # keep the previous file's bars opening before this; `sources` are the rest


def signature(sources: list[Path], dataset: str, interval: str, contract_size: float | None) -> str:
    """What the bars are built from: options and each partition's name, size and mtime."""
    return json.dumps({"version": FORMAT_VERSION, "from": dataset, "interval": interval, "contract_size": contract_size,
                       "inputs": files_signature(sources)})


def built_from(target: Path) -> str | None:
    """The signature in an output's footer; None when absent, unreadable or not ours."""
    return footer_value(target, SOURCES_KEY)


_OPTIONS = ("version", "from", "interval", "contract_size")


def reuse_plan(previous: str | None, current: str, sources: list[Path], interval_ms: int) -> tuple[list[Path], int | None]:
    """(partitions to read, keep the previous bars opening before this time in ms, or None for all).

    A new day changes only the last partition: the months before it were built from the same
    partitions with the same options, so their bars are kept from the previous file and only the
    changed months are read again. Bars of a day or less never straddle a month boundary; longer
    ones (epoch-aligned days) might, so they are always rebuilt in full.
    """
    try:
        old = json.loads(previous) if previous else None
    except ValueError:
        old = None
    new = json.loads(current)
    if not old or interval_ms > DAY_MS or any(old.get(key) != new[key] for key in _OPTIONS):
        return sources, None
    old_inputs, new_inputs = old.get("inputs") or [], new["inputs"]
    same = 0
    while same < min(len(old_inputs), len(new_inputs)) and old_inputs[same] == new_inputs[same]:
        same += 1
    month = partition_month(new_inputs[same][0]) if 0 < same < len(new_inputs) else None
    if month is None:  # nothing in common, or partitions removed at the end: rebuild
        return sources, None
    start = datetime(month[0], month[1], 1, tzinfo=timezone.utc)
    return sources[same:], int(start.timestamp() * 1000)


def _columns(market: str, dataset: str) -> list[str]:
    if dataset == "aggTrades":
        return ["price", "quantity", "first_trade_id", "last_trade_id", "transact_time", "is_buyer_maker"]
    return ["price", "qty", "base_qty" if market == "cm_futures" else "quote_qty", "time", "is_buyer_maker"]


def _numpy(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    if pa.types.is_timestamp(array.type):
        array = pc.cast(array, pa.int64())
    return array.to_numpy(zero_copy_only=False)


def _trade_values(batch: pa.RecordBatch, task: BarsTask) -> dict[str, np.ndarray]:
    """Per-trade (or per-aggTrade) columns: bar key (µs) and the kline values each contributes."""
    cols = [_numpy(batch.column(i)) for i in range(batch.num_columns)]
    if task.dataset == "aggTrades":
        price, qty, first_id, last_id, time_us, buyer_maker = cols
        count = last_id - first_id + 1
        quote = qty * task.contract_size / price if task.contract_size else price * qty
    else:
        price, qty, quote, time_us, buyer_maker = cols
        count = np.ones(len(price), dtype=np.int64)
    bar_us = task.interval_ms * 1000
    taker_buy = ~buyer_maker.astype(bool)
    return {"key": time_us - time_us % bar_us, "open": price, "high": price, "low": price, "close": price,
            "volume": qty, "quote_volume": quote, "trade_num": count.astype(np.int64),
            "taker_buy_base_asset_volume": np.where(taker_buy, qty, 0.0),
            "taker_buy_quote_asset_volume": np.where(taker_buy, quote, 0.0)}


def reduce_bars(rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Rows in trade order (trades or partial bars) → one row per bar key, in key order.

    A stable sort keeps trade order inside a bar, so open is the first and close the last trade.
    """
    key = rows["key"]
    if len(key) and np.any(key[1:] < key[:-1]):
        order = np.argsort(key, kind="stable")
        rows = {name: values[order] for name, values in rows.items()}
        key = rows["key"]
    if not len(key):
        return rows
    starts = np.flatnonzero(np.concatenate(([True], key[1:] != key[:-1])))
    ends = np.concatenate((starts[1:], [len(key)])) - 1
    out = {"key": key[starts], "open": rows["open"][starts], "close": rows["close"][ends],
           "high": np.maximum.reduceat(rows["high"], starts), "low": np.minimum.reduceat(rows["low"], starts)}
    for name in _SUMS:
        out[name] = np.add.reduceat(rows[name], starts)
    return out


def build_bars(task: BarsTask) -> tuple[int, int]:
    """Write the bars of `task` atomically, the signature in the footer; (bars, bytes)."""
    partials: list[dict[str, np.ndarray]] = []
    columns = _columns(task.market, task.dataset)
    for source in task.sources:
        try:
            parquet = open_parquet(source)
            for group in range(parquet.num_row_groups):
                batch = parquet.read_row_group(group, columns=columns)
                if batch.num_rows:
                    partials.append(reduce_bars(_trade_values(batch, task)))
        except (OSError, pa.ArrowException, KeyError) as exc:
            raise DataError(f"cannot read {source} ({exc}): delete it and run `bhds archive parse` again") from None
    if partials:
        bars = reduce_bars({name: np.concatenate([p[name] for p in partials]) for name in partials[0]})
    else:
        bars = {name: np.zeros(0) for name in ("key", *_VALUES)}
    arrays = [pa.array(bars["key"].astype(np.int64) // 1000).cast(KLINE_SCHEMA.field("candle_begin_time").type)]
    arrays += [pa.array(bars[name]).cast(KLINE_SCHEMA.field(name).type) for name in _VALUES]
    table = pa.Table.from_arrays(arrays, schema=KLINE_SCHEMA)
    if task.keep_before_ms is not None:
        kept = read_rows(task.target).select(KLINE_SCHEMA.names).cast(KLINE_SCHEMA)
        keep_before = pa.scalar(task.keep_before_ms, pa.int64()).cast(KLINE_SCHEMA.field("candle_begin_time").type)
        table = pa.concat_tables([kept.filter(pc.less(kept["candle_begin_time"], keep_before)), table])
    table = table.replace_schema_metadata({SOURCES_KEY: task.signature.encode()})
    return table.num_rows, write_table_numeric(table, Path(task.target))
