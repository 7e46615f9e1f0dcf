"""One unit of work per process: a symbol's result klines, or one results file's resamples.

Each task (`jobs` says what it is given) reads its inputs, writes its own output files
(atomically) into the directory it is given, and returns a small summary; the workflow decides
where that directory is and swaps it in.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet  # noqa: F401 - every task reads Parquet: the forkserver loads it once, not each worker

from bhds import storage
from bhds.errors import DataError
from bhds.generate import frame
from bhds.generate.builds import FORMAT
from bhds.generate.frame import FUNDING, TIME, Columns
from bhds.generate.funding import funding_on_grid, funding_series
from bhds.generate.gaps import fill, gap_starts, segment_names, segments
from bhds.generate.jobs import RESAMPLE_SOURCE_INTERVAL, RESAMPLED_GROUP_MONTHS, KlineJob, ResampleJob, TaskResult
from bhds.generate.merge import merge, traded, vwap
from bhds.generate.output import write_months
from bhds.generate.resample import resample_columns
from bhds.generate.resample_extend import extend_resampled
from bhds.paths import PARQUET_SUFFIX, Layout, list_files, parquet_in, resampled_file_in
from bhds.schema import API_FUNDING_SCHEMA, KLINE_SCHEMA, PARSED_FUNDING_SCHEMA, vwap_column
from bhds.types import Interval, TradeType, parse_interval

_FUNDING_COLUMNS = [TIME, FUNDING]


def _use_system_allocator() -> None:
    """Arrow's default pool keeps freed pages for reuse; with a symbol's whole history per process
    that nearly doubles the peak memory. The system allocator hands large blocks back at once."""
    if pa.default_memory_pool().backend_name != "system":
        pa.set_memory_pool(pa.system_memory_pool())


def _read_parts(paths: list[Path]) -> list[Columns]:
    """Each file's rows as a frame (read-only views of Arrow memory)."""
    parts = []
    for path in paths:
        with storage.ParquetColumns(path) as source:
            table = source.read(KLINE_SCHEMA)
        if table.num_rows:
            parts.append(frame.from_table(table))
    return parts


def _read_klines(paths: list[Path]) -> Columns | None:
    """The files' rows as one writable frame, converted file by file to keep the peak low."""
    parts = _read_parts(paths)
    return frame.concat(parts) if parts else None


def _on_grid(parts: list[Columns], interval: Interval) -> Columns | None:
    """The partitions' rows laid straight onto the grid of consecutive candles, in one copy; None when that does not fit.

    The usual archive: partitions in time order, rows sorted and unique, on the interval's grid
    from the first candle, a few holes. Each hole becomes rows of zeros (volume 0: not traded,
    so the fill re-makes them exactly as it re-makes any missing candle). This is the frame the
    merge, the concatenation and the fill's spreading onto the grid would give, without their
    two extra copies. Anything else (duplicates, unaligned times, long holes, many holes) is None
    and goes the general way.
    """
    if interval.is_calendar or not parts:
        return None
    t = np.concatenate([part[TIME] for part in parts])
    if len(t) < 2 or not bool(np.all(t[1:] > t[:-1])):
        return None
    first, step = int(t[0]), interval.ms
    size = (int(t[-1]) - first) // step + 1
    if size > len(t) + len(t) // 8 + 1:  # long holes: the general way spreads segments only
        return None
    at = (t - first) // step
    if not np.array_equal(at * step + first, t):
        return None
    breaks = np.flatnonzero(np.diff(at) != 1) + 1
    if len(breaks) > len(t) // 256:
        return None
    # Runs of consecutive candles, cut at partition boundaries: (part, first row, end row, grid slot).
    offsets = np.cumsum([0] + [len(part[TIME]) for part in parts])
    cuts = sorted({0, len(t), *(int(b) for b in breaks), *(int(o) for o in offsets)})
    runs = []
    for lo, hi in zip(cuts[:-1], cuts[1:]):
        k = int(np.searchsorted(offsets, lo, side="right")) - 1
        runs.append((k, lo - int(offsets[k]), hi - int(offsets[k]), int(at[lo])))
    out: Columns = {TIME: np.arange(first, first + size * step, step, dtype=np.int64)}
    have = np.zeros(size, dtype=bool)
    for _k, lo, hi, slot in runs:
        have[slot:slot + hi - lo] = True
    holes = np.flatnonzero(~have)
    for name in [n for n in parts[0] if n != TIME]:
        column = np.empty(size, dtype=parts[0][name].dtype)
        for k, lo, hi, slot in runs:
            column[slot:slot + hi - lo] = parts[k][name][lo:hi]
        column[holes] = 0
        out[name] = column
    return out


def _read_funding(path: Path, schema: pa.Schema) -> tuple[np.ndarray, np.ndarray] | None:
    """(hour time ms, rate) from a funding file, or None when it is absent or empty."""
    if not path.exists():
        return None
    with storage.ParquetColumns(path) as source:
        table = source.read(pa.schema([schema.field(name) for name in _FUNDING_COLUMNS]))
    if not table.num_rows:
        return None
    cols = frame.from_table(table)
    return cols[TIME], cols[FUNDING]


_NO_EVENTS = (np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64))


def _funding_events(layout: Layout, job: KlineJob) -> tuple[np.ndarray, np.ndarray] | None:
    """The symbol's funding events, or None when the file gets no funding column.

    Every futures file gets the column when funding is asked for, 0 where no event fell, so a glob
    read of a results folder never meets a file without it. (The legacy tool left it out when the
    archive had no funding for the symbol, e.g. one listed this month, and ignored the API's.)
    """
    if not (job.trade_type.is_futures and job.with_funding_rates):
        return None
    parsed = _read_funding(layout.parsed_funding_file(job.trade_type, job.symbol), PARSED_FUNDING_SCHEMA)
    return funding_series(parsed or _NO_EVENTS, _read_funding(layout.api_funding_file(job.trade_type, job.symbol), API_FUNDING_SCHEMA))


def _gap_starts(cols: Columns, rows: np.ndarray, job: KlineJob, interval: Interval) -> np.ndarray:
    if not job.split_gaps:
        return np.empty(0, dtype=np.int64)
    every = len(rows) == len(cols[TIME])  # every candle traded: index them directly
    return gap_starts(cols[TIME], cols["open"], cols["close"], min_days=job.min_days, min_price_chg=job.min_price_chg,
                      interval=interval, rows=None if every else rows)


def inputs_record(job: KlineJob, archive_files: list[Path], api_files: list[Path]) -> dict:
    """What a symbol's files are built from, file by file, so the next run's `extend` can tell which months changed."""
    options = [FORMAT, job.trade_type.value, job.interval, job.split_gaps, job.min_days, job.min_price_chg, job.with_vwap,
               job.with_funding_rates, job.contract_size]
    return {"options": options, "parsed": storage.files_signature(archive_files), "api": storage.files_signature(api_files)}


def build_klines(job: KlineJob) -> TaskResult:
    """Contract §6.11 for one symbol: merge, VWAP, gap split, fill, funding, write.

    When the job names the symbol's previous files and only its latest months changed, the
    latest file is extended instead (`extend`), which gives the same file.
    """
    _use_system_allocator()
    layout = Layout(job.data_dir)
    interval = parse_interval(job.interval, archive=True)
    archive_files = list_files(layout.parsed_kline_dir(job.trade_type, job.symbol, job.interval), PARQUET_SUFFIX)
    api_files = list_files(layout.api_kline_dir(job.trade_type, job.symbol, job.interval), PARQUET_SUFFIX)
    record = inputs_record(job, archive_files, api_files)  # before the files are read: a later change shows next time
    events = _funding_events(layout, job)
    if job.previous:
        from bhds.generate.extend import extend

        extended = extend(job, interval, archive_files, api_files, record, events)
        if extended is not None:
            return extended
    result = TaskResult(job.symbol, inputs=record)
    parts = _read_parts(archive_files)
    if not parts:  # the legacy tool skips a symbol without archive data, whatever the API has
        result.skipped = True
        return result
    api = _read_klines(api_files)
    cols = _on_grid(parts, interval) if api is None else None
    if cols is None:
        cols = merge(frame.concat(parts), api)
    del parts
    present = traded(cols)
    rows = np.flatnonzero(present)
    if not len(rows):
        result.skipped = True
        return result

    vwap_name = vwap_column(job.interval) if job.with_vwap else None
    if vwap_name:
        cols[vwap_name] = vwap(cols, contract_size=job.contract_size if job.trade_type is TradeType.cm_futures else None)
    schema = frame.result_schema(job.interval, with_vwap=vwap_name is not None, with_funding=events is not None)

    parts = segments(rows, _gap_starts(cols, rows, job, interval))
    for i, (name, part) in enumerate(zip(segment_names(job.symbol, len(parts)), parts)):
        segment = frame.take(cols, part)
        if i == len(parts) - 1:
            cols.clear()  # the last segment holds what is left, so the fill can free it as it goes
        filled, candles = fill(segment, present[part], interval, vwap_name)
        if events is not None:
            filled[FUNDING] = funding_on_grid(candles, interval, events)
        result.bytes += write_months(frame.to_table(filled, schema), parquet_in(job.out_dir, name))
        result.rows += len(candles)
        result.files.append(name)
    return result


def resample_file(job: ResampleJob) -> TaskResult:
    """Contract §6.12 for one 1m results file: one output per offset, named like the input.

    The file is read a column at a time (see `resample_columns`), so a worker holds a few
    columns rather than a symbol's whole history. When only the file's latest months changed
    since the last run (`job.kept_source_groups`), an offset's output keeps its earlier quarters
    and gets only the later ones (`resample_extend`), which gives the same file.
    """
    _use_system_allocator()
    name = job.source.name[: -len(PARQUET_SUFFIX)]
    result = TaskResult(name)
    with storage.ParquetColumns(job.source) as source:
        missing = [n for n in KLINE_SCHEMA.names if n not in source.names]
        if missing:
            raise DataError(f"{job.source} is not a kline results file (no {', '.join(missing)}): delete it or run generate kline-type again")
        schema = frame.input_schema([n for n in source.names if n in (vwap_column(RESAMPLE_SOURCE_INTERVAL), FUNDING)])
        vwap_name = vwap_column(RESAMPLE_SOURCE_INTERVAL) if vwap_column(RESAMPLE_SOURCE_INTERVAL) in schema.names else None

        def read(column: str) -> np.ndarray:
            field = schema.field(column)
            return frame.to_numpy(source.column(column, field.type))

        extended = extend_resampled(job, name, schema, vwap_name) if job.kept_source_groups else {}
        for offset, (rows, size) in extended.items():
            result.rows += rows
            result.bytes += size
            result.files.append(offset)
        result.extended = len(extended)
        rest = tuple(o for o in job.plan.offsets if o.name not in extended)
        frames = resample_columns(read, schema.names, dataclasses.replace(job.plan, offsets=rest), vwap_name=vwap_name) if rest else {}
    for offset, out in frames.items():
        result.bytes += write_months(frame.to_table(out, schema), resampled_file_in(job.out_dir, offset, name), RESAMPLED_GROUP_MONTHS)
        result.rows += len(out[TIME])
        result.files.append(offset)
    return result
