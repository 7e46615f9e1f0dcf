"""Klines as a dict of numpy columns: Arrow in, numpy for the arithmetic, Arrow out."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from bhds.schema import KLINE_SCHEMA, vwap_column

Columns = dict[str, np.ndarray]

TIME = "candle_begin_time"
FUNDING = "funding_rate"
SUM_COLUMNS = ("volume", "quote_volume", "trade_num", "taker_buy_base_asset_volume", "taker_buy_quote_asset_volume")


def _numpy_dtype(arrow_type: pa.DataType) -> type:
    if pa.types.is_floating(arrow_type) and arrow_type.bit_width == 64:
        return np.float64
    if (pa.types.is_integer(arrow_type) or pa.types.is_timestamp(arrow_type)) and arrow_type.bit_width == 64:
        return np.int64
    raise TypeError(f"no numpy view for Arrow type {arrow_type}")


def to_numpy(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A 64-bit numeric (or timestamp → int64 ms) Arrow column as numpy; nulls become 0.

    Read straight from the Arrow buffers, shared when there is one chunk: pyarrow's own
    `to_numpy` imports pandas, which costs each worker process 0.3 s and 40 MB for nothing.
    """
    if isinstance(array, pa.ChunkedArray):
        if array.num_chunks == 1:
            return to_numpy(array.chunk(0))
        if array.num_chunks == 0:
            return np.empty(0, dtype=_numpy_dtype(array.type))
        return np.concatenate([to_numpy(chunk) for chunk in array.chunks])
    dtype = _numpy_dtype(array.type)
    values = np.frombuffer(array.buffers()[1], dtype=dtype, count=len(array), offset=array.offset * np.dtype(dtype).itemsize)
    if array.null_count:
        values = np.where(_valid(array), values, 0).astype(dtype)
    return values


def _valid(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Which values are not null, from the validity bitmaps (pyarrow.compute costs each worker 30 ms to import)."""
    if isinstance(array, pa.ChunkedArray):
        return np.concatenate([_valid(chunk) for chunk in array.chunks]) if array.num_chunks else np.empty(0, dtype=bool)
    if not array.null_count:
        return np.ones(len(array), dtype=bool)
    bits = np.unpackbits(np.frombuffer(array.buffers()[0], dtype=np.uint8), bitorder="little", count=array.offset + len(array))
    return bits[array.offset :].astype(bool)


def to_arrow(values: np.ndarray, arrow_type: pa.DataType) -> pa.Array:
    """The inverse of `to_numpy`, sharing the numpy memory (no pandas, no copy when contiguous)."""
    values = np.ascontiguousarray(values, dtype=_numpy_dtype(arrow_type))
    return pa.Array.from_buffers(arrow_type, len(values), [None, pa.py_buffer(values)])


def from_table(table: pa.Table) -> Columns:
    """Numpy columns of a kline table; the time column becomes int64 epoch milliseconds.

    Rows without a time are dropped; other nulls become 0, as the legacy tool's fill_null(0) did.
    Arrays may be read-only views of Arrow memory; `concat` gives writable copies.
    """
    cols = {name: to_numpy(table.column(name)) for name in table.column_names}
    if table.column(TIME).null_count:
        valid = _valid(table.column(TIME))
        cols = {name: values[valid] for name, values in cols.items()}
    return cols


def to_table(cols: Columns, schema: pa.Schema) -> pa.Table:
    """An Arrow table of `schema` built from numpy columns (int64 ms for timestamps)."""
    return pa.Table.from_arrays([to_arrow(cols[field.name], field.type) for field in schema], schema=schema)


def take(cols: Columns, index: np.ndarray | slice) -> Columns:
    return {name: values[index] for name, values in cols.items()}


def concat(parts: list[Columns]) -> Columns:
    """Row-wise concatenation into writable arrays of frames with the same columns.

    Consumes `parts` column by column, so at most one extra column is alive at a time: with a
    symbol's whole history in memory that halves the peak.
    """
    if len(parts) == 1:
        return {name: values if values.flags.writeable else values.copy() for name, values in parts[0].items()}
    return {name: np.concatenate([part.pop(name) for part in parts]) for name in list(parts[0])}


def dedup_keep_last(cols: Columns) -> Columns:
    """Sorted by time, one row per time; among equal times the row that came last wins.

    Consumes `cols` (column by column, as `concat`) unless it is already sorted and unique.
    """
    t = cols[TIME]
    if len(t) < 2 or bool(np.all(t[1:] > t[:-1])):
        return cols
    order = np.argsort(t, kind="stable")
    ts = t[order]
    keep = np.ones(len(ts), dtype=bool)
    keep[:-1] = ts[1:] != ts[:-1]  # the last of each run of equal times
    index = order[keep]
    del t, ts, order, keep
    return {name: cols.pop(name)[index] for name in list(cols)}


def result_schema(interval: str, *, with_vwap: bool, with_funding: bool) -> pa.Schema:
    """Contract §5.6: the 10 kline columns, then `avg_price_<interval>`, then `funding_rate`."""
    fields = list(KLINE_SCHEMA)
    if with_vwap:
        fields.append(pa.field(vwap_column(interval), pa.float64()))
    if with_funding:
        fields.append(pa.field(FUNDING, pa.float64()))
    return pa.schema(fields)


def input_schema(names: list[str]) -> pa.Schema:
    """Schema of a results file that has the kline columns plus some of the optional ones."""
    fields = list(KLINE_SCHEMA)
    known = set(KLINE_SCHEMA.names)
    fields += [pa.field(name, pa.float64()) for name in names if name not in known]
    return pa.schema(fields)
