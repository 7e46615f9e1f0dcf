"""`list-data`: per trade type, dataset, interval and symbol, what is on disk, from footers and stat().

`stale` says whether generated files are older than what they were made from: results older than
the symbol's parsed partitions, API days or (when the results carry funding) funding files;
resamples older than the 1m results file of the same name; trade bars whose footer names other
trade partitions than those on disk now (what `generate bars` would rebuild). It is None for the
inputs themselves (parsed klines and funding, API days, every `archive parse` dataset).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from bhds.paths import PARQUET_SUFFIX, Layout, list_files, partition_month
from bhds.quality.grid import iso_ms
from bhds.research.store import RESAMPLED, RESULTS, TRADE_BARS, Dataset, FileFigures, datasets, file_figures, stem
from bhds.types import TradeType, _human_bytes

SCHEMA = "bhds-list-data/1"
FORMATS = ("table", "json", "csv")
COLUMNS = ("trade_type", "dataset", "interval", "offset", "symbol", "first", "last", "rows", "files", "bytes", "stale")
RESAMPLE_SOURCE_INTERVAL = "1m"  # resamples are made from the 1m results (generate.jobs says so too)


def list_data(layout: Layout, trade_types: list[TradeType], interval: str | None = None) -> list[dict]:
    """One record per (trade type, dataset, interval, offset, symbol), in that order."""
    records = []
    for tt in trade_types:
        for dataset in datasets(layout, tt):
            if interval is not None and dataset.interval != interval:
                continue
            time_column = dataset.time_column
            for symbol, paths in dataset.files_by_symbol(layout).items():
                figures = [file_figures(p, time_column) for p in paths]
                firsts = [f.first_ms for f in figures if f.first_ms is not None]
                lasts = [f.last_ms for f in figures if f.last_ms is not None]
                records.append({
                    "trade_type": tt.value, "dataset": dataset.kind, "interval": dataset.interval, "offset": dataset.offset,
                    "symbol": symbol, "first": iso_ms(min(firsts)) if firsts else None, "last": iso_ms(max(lasts)) if lasts else None,
                    "rows": sum(f.rows for f in figures), "files": len(figures), "bytes": sum(f.bytes for f in figures),
                    "stale": _stale(layout, dataset, symbol, figures),
                })
    return records


def _stale(layout: Layout, dataset: Dataset, symbol: str, figures: list[FileFigures]) -> bool | None:
    tt = dataset.trade_type
    if dataset.kind == RESULTS:
        inputs = list_files(layout.parsed_kline_dir(tt, symbol, dataset.interval or ""), PARQUET_SUFFIX)
        inputs += list_files(layout.api_kline_dir(tt, symbol, dataset.interval or ""), PARQUET_SUFFIX)
        if any("funding_rate" in f.columns for f in figures):
            inputs += [layout.parsed_funding_file(tt, symbol), layout.api_funding_file(tt, symbol)]
        newest_input = max((_mtime(p) for p in inputs), default=0)
        return newest_input > min(f.mtime_ns for f in figures)
    if dataset.kind == RESAMPLED:
        return any(_mtime(layout.results_kline_file(tt, RESAMPLE_SOURCE_INTERVAL, stem(f.path))) > f.mtime_ns for f in figures)
    if dataset.kind == TRADE_BARS:
        return any(_bars_stale(layout, tt, symbol, f.path) for f in figures)
    return None


def _bars_stale(layout: Layout, tt: TradeType, symbol: str, path: Path) -> bool | None:
    """Whether the trade partitions a bars file was built from (its footer) differ from those on disk."""
    from bhds.generate.bars import built_from
    from bhds.storage import files_signature

    try:
        built = json.loads(built_from(path) or "null")
        source, inputs = built["from"], built["inputs"]
    except (ValueError, TypeError, KeyError):
        return None  # not written by `generate bars`: nothing to compare with
    partitions = [p for p in list_files(layout.parsed_dataset_dir(tt, source, symbol), PARQUET_SUFFIX) if partition_month(p.name)]
    try:
        return files_signature(partitions) != inputs
    except FileNotFoundError:  # a partition replaced while listing
        return True


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return 0


def document(records: list[dict], *, data_dir: str, generated_at: str) -> dict:
    return {"schema": SCHEMA, "generated_at": generated_at, "data_dir": data_dir, "datasets": records}


def render(doc: dict, fmt: str) -> str:
    """JSON (the whole document), CSV (one line per record) or an aligned table for people."""
    records = doc["datasets"]
    if fmt == "json":
        return json.dumps(doc, indent=2)
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
        return buffer.getvalue().rstrip("\n")
    if not records:
        return f"nothing under {doc['data_dir']}"
    rows = [[_cell(key, r[key]) for key in COLUMNS] for r in records]
    widths = [max(len(key), *(len(row[i]) for row in rows)) for i, key in enumerate(COLUMNS)]
    right = {"rows", "files", "bytes"}
    lines = ["  ".join(key.ljust(w) for key, w in zip(COLUMNS, widths)).rstrip()]
    for row in rows:
        lines.append("  ".join(cell.rjust(w) if key in right else cell.ljust(w) for key, cell, w in zip(COLUMNS, row, widths)).rstrip())
    return "\n".join(lines)


def _cell(key: str, value: object) -> str:
    if value is None:
        return "-"
    if key == "stale":
        return "STALE" if value else "ok"
    if key == "rows":
        return f"{value:,}"
    if key == "bytes":
        return _human_bytes(int(value))  # type: ignore[call-overload]
    return str(value)

