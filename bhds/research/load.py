"""`bhds.load` and friends: one symbol's candles as a table, whatever the folder layout.

Only the files that can hold the asked range are opened, and within them pyarrow's dataset filter
skips the row groups whose statistics lie outside it; `columns` prunes the rest. A split symbol's
`SP<i>_` segments are read too, in time order. The `parsed` source merges archive partitions with
API days through generate's own `merge`, so it shows exactly what generate starts from.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Union

from bhds import storage
from bhds.errors import ConfigError, DataError, InputError
from bhds.paths import PARQUET_SUFFIX, list_files
from bhds.research.store import (API_KLINES, PARSED_KLINES, RESAMPLED, RESULTS, TIME, TRADE_BARS, Dataset, FileFigures,
                                  file_figures, interval_order, stem, trade_type_of)
from bhds.types import DAY_MS, TradeType, parse_interval

if TYPE_CHECKING:
    import pandas as pd
    import polars as pl
    import pyarrow as pa

    from bhds.paths import Layout

Source = str  # "results", "resampled", "parsed", "trade_bars", or a dataset `archive parse` wrote ("trades", ...)
TimeLike = Union[str, datetime, date, None]
SOURCES: tuple[str, ...] = ("results", "resampled", "parsed", TRADE_BARS)
SEGMENT = "segment"

# A partition may hold a stray row of a neighbouring day; files this close to the range are read too.
_MARGIN_MS = DAY_MS


def load_arrow(trade_type: str | TradeType, symbol: str, interval: str = "1m", start: TimeLike = None, end: TimeLike = None, *,
               offset: str | None = None, columns: Sequence[str] | None = None, source: Source = "results",
               segments: bool = False, indicators: Sequence[str] | None = None,
               data_dir: str | Path | None = None) -> pa.Table:
    """`load` as a pyarrow Table (no pandas involved)."""
    tt = trade_type_of(trade_type)
    layout = _layout(data_dir)
    start_ms, end_ms = to_ms(start, "start"), to_ms(end, "end")
    if start_ms is not None and end_ms is not None and end_ms < start_ms:
        raise InputError(f"end {end!r} is before start {start!r}: give an end after the start (the end is exclusive)", exit_code=2)
    if source == "parsed":
        if segments:
            raise InputError("segments=True applies to results and resampled data, not to source='parsed'", exit_code=2)
        if offset is not None:
            raise InputError("offset applies to source='resampled' only", exit_code=2)
        table = _load_parsed(layout, tt, symbol, parse_interval(interval, archive=True).text, start_ms, end_ms)
    elif source in (RESULTS, RESAMPLED, TRADE_BARS):
        if source == TRADE_BARS and (offset is not None or indicators):
            raise InputError("offset and indicators apply to results and resamples, not to source='trade_bars'", exit_code=2)
        dataset = _result_dataset(layout, tt, interval, offset, source)
        wanted = None if columns is None else [TIME, *([columns] if isinstance(columns, str) else columns)]
        table = _load_segments(layout, dataset, symbol, start_ms, end_ms, segments, wanted)
    else:
        if segments or offset is not None or indicators:
            raise InputError(f"segments, offset and indicators apply to results and resamples, not to source={source!r}", exit_code=2)
        return _load_archive_dataset(layout, tt, source, symbol, interval, start_ms, end_ms, columns)
    table = _select(table, columns, segments)
    if indicators:
        if source == "parsed":
            raise InputError("indicators are computed from results or resamples, not from source='parsed'", exit_code=2)
        table = _join_indicators(table, layout, tt, symbol, interval, offset, list(indicators), start, end)
    return _sorted(table)


def _join_indicators(table: pa.Table, layout: Layout, tt: TradeType, symbol: str, interval: str, offset: str | None,
                     indicators: list[str], start: TimeLike, end: TimeLike) -> pa.Table:
    """The candles with the indicator columns `generate indicators-type` wrote, matched on candle time."""
    from bhds.indicators import read_indicators

    extra = read_indicators(tt, symbol, interval, offset=offset, indicators=indicators, start=start, end=end,
                            data_dir=layout.root)
    extra = extra.set_column(0, TIME, extra.column(0).cast(table.schema.field(TIME).type))
    clash = [name for name in extra.column_names[1:] if name in table.column_names]
    if clash:
        raise InputError(f"indicator column {', '.join(clash)} clashes with a kline column: ask for fewer columns", exit_code=2)
    return table.join(extra, TIME, join_type="left outer")


def load(trade_type: str | TradeType, symbol: str, interval: str = "1m", start: TimeLike = None, end: TimeLike = None, *,
         offset: str | None = None, columns: Sequence[str] | None = None, source: Source = "results",
         segments: bool = False, indicators: Sequence[str] | None = None,
         data_dir: str | Path | None = None) -> pd.DataFrame:
    """One symbol's candles as a pandas DataFrame: one row per candle, sorted, RangeIndex.

    Args:
        trade_type: `spot`, `um_futures` or `cm_futures`.
        symbol: e.g. `BTCUSDT`; a split symbol's `SP<i>_BTCUSDT` segments are included.
        interval: the kline interval (`results`, `parsed`), the resample interval (`resampled`) or
            the bar interval (`trade_bars`, e.g. `10s`).
        start: first candle time to include (inclusive); ISO text such as `2025-01-01` or
            `2025-01-01T08:00Z`, or a datetime/date. Naive values are UTC.
        end: candle time to stop before (exclusive), same forms.
        offset: the resample offset folder (`resampled` only), e.g. `5m`.
        columns: columns to read; `candle_begin_time` always comes first. Default: all.
        source: `results` (generated klines), `resampled`, `parsed` (archive partitions merged
            with API days, as generate sees them before its gap split and fill), `trade_bars`
            (bars `bhds generate bars` built from trades); or a dataset that
            `bhds archive parse` wrote (`trades`, `aggTrades`, `bookDepth`, `metrics`, `markPriceKlines`
            with `interval`, ...), filtered and sorted by its own time column.
        segments: add a `segment` column naming the file each row came from (`SP0_X`, …, `X`).
        indicators: specs or column names written by `generate indicators-type` (e.g. `rsi:14`,
            `macd:12,26,9`), joined on candle time; not for `parsed`.
        data_dir: the `binance_data` folder; default: the configured store (CRYPTO_BASE_DIR).

    Returns:
        A DataFrame whose `candle_begin_time` is tz-aware UTC.

    Raises:
        bhds.BhdsError: InputError for a bad argument, DataError when the data is not on disk.
    """
    table = load_arrow(trade_type, symbol, interval, start, end, offset=offset, columns=columns, source=source,
                       segments=segments, indicators=indicators, data_dir=data_dir)
    return table.to_pandas()


def load_polars(trade_type: str | TradeType, symbol: str, interval: str = "1m", start: TimeLike = None, end: TimeLike = None, *,
                offset: str | None = None, columns: Sequence[str] | None = None, source: Source = "results",
                segments: bool = False, indicators: Sequence[str] | None = None,
                data_dir: str | Path | None = None) -> pl.DataFrame:
    """`load` as a polars DataFrame (needs polars: pip install polars)."""
    try:
        import polars as pl
    except ImportError:
        raise ConfigError("load_polars needs polars: pip install polars (or use bhds.load for pandas)") from None
    table = load_arrow(trade_type, symbol, interval, start, end, offset=offset, columns=columns, source=source,
                       segments=segments, indicators=indicators, data_dir=data_dir)
    return pl.from_arrow(table)  # type: ignore[return-value]


def symbols(trade_type: str | TradeType, interval: str = "1m", source: Source = "results", *, offset: str | None = None,
            data_dir: str | Path | None = None) -> list[str]:
    """Symbols with data for the source and interval (for `resampled` without `offset`: under any offset)."""
    return sorted(_files_by_symbol(_layout(data_dir), trade_type_of(trade_type), interval, source, offset))


def coverage(trade_type: str | TradeType, interval: str = "1m", source: Source = "results", *, offset: str | None = None,
             data_dir: str | Path | None = None) -> pd.DataFrame:
    """Per symbol: first and last candle, rows, files and bytes, from the Parquet footers only.

    `resampled` needs `offset`. For `parsed`, rows count archive and API rows alike, so a day
    present in both counts twice.
    """
    import pandas as pd

    tt, layout = trade_type_of(trade_type), _layout(data_dir)
    if source == RESAMPLED:
        _result_dataset(layout, tt, interval, offset, source)  # the offset is required, and must exist
    time_column = _archive_dataset(tt, source, interval).time_column if source not in SOURCES else TIME
    records = []
    for symbol, paths in sorted(_files_by_symbol(layout, tt, interval, source, offset).items()):
        records.append(summarise(symbol, [file_figures(p, time_column) for p in paths]))
    frame = pd.DataFrame(records, columns=["symbol", "first", "last", "rows", "files", "bytes"])
    for column in ("first", "last"):
        frame[column] = pd.to_datetime(frame[column], unit="ms", utc=True)
    return frame


def summarise(symbol: str, figures: list[FileFigures]) -> dict:
    """One coverage record (times in epoch ms) from the figures of a symbol's files."""
    firsts = [f.first_ms for f in figures if f.first_ms is not None]
    lasts = [f.last_ms for f in figures if f.last_ms is not None]
    return {"symbol": symbol, "first": min(firsts) if firsts else None, "last": max(lasts) if lasts else None,
            "rows": sum(f.rows for f in figures), "files": len(figures), "bytes": sum(f.bytes for f in figures)}


# ---- arguments ----

def _layout(data_dir: str | Path | None) -> Layout:
    from bhds.paths import Layout

    if data_dir is not None:
        return Layout(Path(data_dir).expanduser())
    from bhds.settings import load_settings

    return Layout(load_settings().data_dir)


def to_ms(value: TimeLike, what: str) -> int | None:
    """Epoch ms of a time given as ISO text, datetime (pandas Timestamp too), date or numpy datetime64 (naive means UTC)."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise InputError(f"{what} {value!r} is not a time: use ISO-8601, e.g. 2025-01-01 or 2025-01-01T08:00Z", exit_code=2) from None
    if isinstance(value, datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    elif str(getattr(value, "dtype", "")).startswith("datetime64"):  # a numpy datetime64 (UTC, as numpy has no zones)
        return int(value.astype("datetime64[ms]").astype("int64"))  # type: ignore[attr-defined]
    else:
        raise InputError(f"{what} {value!r} is not a time: give ISO text, a datetime or a date", exit_code=2)
    delta = moment - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def _result_dataset(layout: Layout, tt: TradeType, interval: str, offset: str | None, source: str) -> Dataset:
    if source == TRADE_BARS:
        from bhds.generate.bars import bar_interval

        return Dataset(tt, TRADE_BARS, bar_interval(interval).text)
    if source == RESULTS:
        if offset is not None:
            raise InputError("offset applies to source='resampled' only", exit_code=2)
        return Dataset(tt, RESULTS, parse_interval(interval, archive=True).text)
    parse_interval(interval)
    offsets = _offsets(layout, tt, interval)
    if offset is None:
        raise InputError(f"source='resampled' needs an offset, e.g. offset={offsets[0] if offsets else '0m'!r} "
                         f"(on disk for {tt.value} {interval}: {', '.join(offsets) or 'none'})", exit_code=2)
    if offset not in offsets:
        raise DataError(f"no {tt.value} {interval} resamples at offset {offset} under {layout.resampled_interval_dir(tt, interval)} "
                        f"(offsets on disk: {', '.join(offsets) or 'none'}): run `bhds generate resample-type {tt.value} {interval} <base offset>`")
    return Dataset(tt, RESAMPLED, interval, offset)


def _offsets(layout: Layout, tt: TradeType, interval: str) -> list[str]:
    from bhds.paths import list_subdirs

    return sorted(list_subdirs(layout.resampled_interval_dir(tt, interval)), key=interval_order)


def _files_by_symbol(layout: Layout, tt: TradeType, interval: str, source: str, offset: str | None) -> dict[str, list[Path]]:
    if source == "parsed":
        text = parse_interval(interval, archive=True).text
        merged: dict[str, list[Path]] = {}
        for kind in (PARSED_KLINES, API_KLINES):
            for symbol, paths in Dataset(tt, kind, text).files_by_symbol(layout).items():
                merged.setdefault(symbol, []).extend(paths)
        return merged
    if source == RESAMPLED and offset is None:
        parse_interval(interval)
        merged = {}
        for each in _offsets(layout, tt, interval):
            for symbol, paths in Dataset(tt, RESAMPLED, interval, each).files_by_symbol(layout).items():
                merged.setdefault(symbol, []).extend(paths)
        return merged
    if source not in SOURCES:
        return _archive_dataset(tt, source, interval).files_by_symbol(layout)
    return _result_dataset(layout, tt, interval, offset, source).files_by_symbol(layout)


def _archive_dataset(tt: TradeType, name: str, interval: str) -> Dataset:
    """The `archive parse` dataset `name` (at `interval` if it has interval folders); a one-line error for an unknown source."""
    from bhds.archive.catalog import dataset_interval, datasets_of, find_dataset

    names = [d.name for d in datasets_of(tt)]
    if name not in names:
        raise InputError(f"source {name!r} is not known: use one of {', '.join(SOURCES)}, or a dataset `archive parse` "
                         f"writes for {tt.value} ({', '.join(names)})", exit_code=2)
    found = find_dataset(tt, name)
    return Dataset(tt, found.name, dataset_interval(tt, found, interval if found.has_interval else None))


# ---- reading ----

def _time_filter(field_type: pa.DataType, start_ms: int | None, end_ms: int | None, column: str = TIME):  # noqa: ANN202
    import pyarrow as pa
    import pyarrow.dataset as ds

    def scalar(ms: int) -> pa.Scalar:
        if pa.types.is_timestamp(field_type):
            per_ms = {"s": None, "ms": 1, "us": 1_000, "ns": 1_000_000}[field_type.unit]
            return pa.scalar(ms * per_ms if per_ms else -(-ms // 1000), type=field_type)
        return pa.scalar(ms, type=pa.timestamp("ms", tz="UTC"))

    expression = None
    if start_ms is not None:
        expression = ds.field(column) >= scalar(start_ms)
    if end_ms is not None:
        below = ds.field(column) < scalar(end_ms)
        expression = below if expression is None else expression & below
    return expression


def read_range(path: Path, start_ms: int | None, end_ms: int | None, columns: list[str] | None = None) -> pa.Table:
    """The file's rows with `start_ms <= candle_begin_time < end_ms`, skipping row groups outside it."""
    import pyarrow as pa

    from bhds.schema import TIMESTAMP

    try:
        dataset = storage.open_dataset(path)
        names = dataset.schema.names
        if TIME not in names:
            raise DataError(f"{path} has no {TIME} column: delete it and run the step that writes it again")
        wanted = None if columns is None else [c for c in columns if c in names]
        table = dataset.to_table(columns=wanted, filter=_time_filter(dataset.schema.field(TIME).type, start_ms, end_ms))
    except FileNotFoundError:
        raise DataError(f"{path} vanished while reading (a run rewrote the folder?): call load again") from None
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"cannot read {path} ({exc}): delete the file and run the step that writes it again") from exc
    if TIME in table.column_names and table.schema.field(TIME).type != TIMESTAMP:
        table = table.set_column(table.column_names.index(TIME), TIME, table.column(TIME).cast(TIMESTAMP))
    return table


def _overlaps(first_ms: int, last_ms: int, start_ms: int | None, end_ms: int | None) -> bool:
    """Whether [first, last] (widened by a day) meets [start, end)."""
    return (end_ms is None or first_ms - _MARGIN_MS < end_ms) and (start_ms is None or last_ms + _MARGIN_MS >= start_ms)


def _load_segments(layout: Layout, dataset: Dataset, symbol: str, start_ms: int | None, end_ms: int | None, segments: bool,
                   columns: list[str] | None) -> pa.Table:
    import pyarrow as pa

    paths = dataset.files_by_symbol(layout).get(symbol)
    if not paths:
        raise DataError(_missing(dataset, symbol, layout))
    if columns is not None:
        names = [name for path in paths for name in storage.parquet_schema(path).names] + ([SEGMENT] if segments else [])
        _check_columns(columns, list(dict.fromkeys(names)))
    tables = []
    for path in paths:
        table = read_range(path, start_ms, end_ms, columns)
        if segments:
            table = table.append_column(SEGMENT, pa.array([stem(path)] * len(table), pa.string()))
        tables.append(table)
    return pa.concat_tables(tables, promote_options="default") if len(tables) > 1 else tables[0]


def _missing(dataset: Dataset, symbol: str, layout: Layout) -> str:
    tt = dataset.trade_type.value
    if dataset.kind == TRADE_BARS:
        return (f"no {tt} {dataset.interval} trade bars for {symbol} under {dataset.directory(layout)}: "
                f"run `bhds generate bars {tt} {symbol} --interval {dataset.interval}` first")
    if dataset.kind == RESULTS:
        return (f"no {tt} {dataset.interval} results for {symbol} under {dataset.directory(layout)}: "
                f"run `bhds generate kline {tt} {dataset.interval} {symbol}` (or kline-type) first")
    return (f"no {tt} {dataset.interval} resamples at offset {dataset.offset} for {symbol} under {dataset.directory(layout)}: "
            f"run `bhds generate resample {tt} {symbol} {dataset.interval} <base offset>` first")


def _load_parsed(layout: Layout, tt: TradeType, symbol: str, interval: str, start_ms: int | None, end_ms: int | None) -> pa.Table:
    """Archive partitions and API days of the range, merged by generate's `merge` (API wins, empty API candles dropped)."""
    from bhds.generate import frame
    from bhds.generate.merge import merge
    from bhds.quality.inventory import kline_files
    from bhds.schema import KLINE_SCHEMA

    found = kline_files(layout, tt, symbol, interval)
    if not found.parsed:
        raise DataError(f"no parsed {tt.value} {interval} klines for {symbol} under "
                        f"{layout.parsed_kline_dir(tt, symbol, interval)}: run `bhds aws_kline parse {tt.value} {interval} {symbol}` first")
    archive_paths = [Path(sig.path) for month, sig in sorted(found.parsed.items()) if _overlaps(*_month_span(month), start_ms, end_ms)]
    api_paths = [Path(sig.path) for day, sig in sorted(found.api.items()) if _overlaps(day * DAY_MS, (day + 1) * DAY_MS - 1, start_ms, end_ms)]

    def columns_of(paths: list[Path]) -> frame.Columns:
        parts = [frame.from_table(read_range(p, start_ms, end_ms, KLINE_SCHEMA.names).select(KLINE_SCHEMA.names).cast(KLINE_SCHEMA))
                 for p in paths]
        parts = [part for part in parts if len(part[TIME])] or [frame.from_table(KLINE_SCHEMA.empty_table())]
        return frame.concat(parts)

    merged = merge(columns_of(archive_paths), columns_of(api_paths) if api_paths else None)
    return frame.to_table(merged, KLINE_SCHEMA)


def _load_archive_dataset(layout: Layout, tt: TradeType, name: str, symbol: str, interval: str, start_ms: int | None,
                          end_ms: int | None, columns: Sequence[str] | None) -> pa.Table:
    """A dataset `archive parse` wrote (trades, aggTrades, bookDepth, metrics, ...), rows of [start, end) by its time column.

    The time column is the dataset's first timestamp (`time` of trades, `transact_time` of
    aggTrades, `open_time` of klines, ...); only the monthly partitions that meet the range are opened.
    """
    import numpy as np
    import pyarrow as pa

    found = _archive_dataset(tt, name, interval)
    folder_interval = found.interval
    directory = layout.parsed_dataset_dir(tt, found.kind, symbol, folder_interval)
    files = list_files(directory, PARQUET_SUFFIX)
    if not files:
        where = f" --interval {folder_interval}" if folder_interval else ""
        raise DataError(f"no parsed {found.kind} of {symbol} under {directory}: run `bhds archive download {tt.value} "
                        f"{found.kind} {symbol}{where}`, then `archive verify` and `archive parse` with the same arguments")
    wanted = [p for p in files if p.stem.isdigit() and _overlaps_month(p.stem, start_ms, end_ms)]
    try:
        dataset = storage.open_dataset(wanted or [files[0]])
        time = next(f.name for f in dataset.schema if pa.types.is_timestamp(f.type))
        if columns is not None:
            columns = [time] + [c for c in ([columns] if isinstance(columns, str) else columns) if c != time]
            _check_columns(columns, dataset.schema.names)
        table = dataset.to_table(columns=columns, filter=_time_filter(dataset.schema.field(time).type, start_ms, end_ms, time))
    except FileNotFoundError:
        raise DataError(f"a partition under {directory} vanished while reading (a parse rewrote it?): call load again") from None
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"cannot read {directory} ({exc}): run `bhds archive parse` for it again") from exc
    if not wanted:
        table = table.slice(0, 0)
    values = table.column(time).cast(pa.int64()).to_numpy() if table.num_rows > 1 else np.zeros(0)
    if len(values) > 1 and not bool(np.all(values[1:] >= values[:-1])):
        table = table.sort_by(time)
    return table


def _overlaps_month(month: str, start_ms: int | None, end_ms: int | None) -> bool:
    first, last = _month_span(month)
    return (end_ms is None or first < end_ms) and (start_ms is None or last >= start_ms)


def _month_span(month: str) -> tuple[int, int]:
    """First and last ms of a `YYYYMM` month."""
    import numpy as np

    begin = np.datetime64(f"{month[:4]}-{month[4:]}", "M")
    return int(begin.astype("datetime64[ms]").astype(np.int64)), int((begin + 1).astype("datetime64[ms]").astype(np.int64)) - 1


def _select(table: pa.Table, columns: Sequence[str] | None, segments: bool) -> pa.Table:
    if columns is None:
        return table
    if isinstance(columns, str):
        columns = [columns]
    _check_columns(columns, table.column_names)
    keep = [TIME] + [c for c in columns if c != TIME]
    if segments and SEGMENT not in keep:
        keep.append(SEGMENT)
    return table.select(keep)


def _check_columns(columns: Sequence[str], names: list[str]) -> None:
    unknown = [c for c in columns if c not in names]
    if unknown:
        raise InputError(f"no column {', '.join(map(repr, unknown))} in this data: use some of {', '.join(names)}", exit_code=2)


def _sorted(table: pa.Table) -> pa.Table:
    """Sorted by time (segments and partitions already are, in order; this only checks)."""
    import numpy as np

    from bhds.generate.frame import to_numpy

    times = to_numpy(table.column(TIME))
    if len(times) > 1 and not bool(np.all(times[1:] > times[:-1])):
        table = table.sort_by(TIME)
    return table
