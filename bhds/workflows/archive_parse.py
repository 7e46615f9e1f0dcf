"""`archive parse`: verified zips of any archive dataset → monthly Parquet partitions, incrementally.

Partitions go to `parsed_data/<market>/<dataset>/[<interval>/]<SYMBOL>/<YYYYMM>.pqt` (archive
klines under `archive_klines`, away from the legacy parse's `klines`); the schema of each
dataset is in `bhds.parse.datasets`.

A month is built from its monthly zip when one is verified, else from its daily zips in day
order. A partition records in its footer which zips (name, size, mtime) it was built from; it
is rewritten only when that set changed (a new day, a re-uploaded file), so a re-run does
nothing. Only zips with a `.verified` marker are read.
"""

from __future__ import annotations

import logging
from pathlib import Path

from bhds import paths
from bhds.archive.catalog import DAILY, MONTHLY, dataset_interval, find_dataset
from bhds.archive.periods import file_span
from bhds.paths import VERIFIED_SUFFIX, Layout
from bhds.settings import Settings
from bhds.storage import stage_lock, sweep_temp_files
from bhds.types import RunSummary, TradeType

log = logging.getLogger("bhds.workflows.archive_parse")

# CSV bytes per streamed block (one row group each); tests make it small to see several.
BLOCK_SIZE: int | None = None


def _verified_zips(directory: Path) -> list[Path]:
    return [p for p in paths.list_files(directory, ".zip") if p.with_name(p.name + VERIFIED_SUFFIX).exists()]


def month_sources(layout: Layout, tt: TradeType, dataset: str, symbol: str,
                  interval: str | None = None) -> dict[tuple[int, int], list[Path]]:
    """The zips of each month: the verified monthly zip if any, else the verified daily zips by day."""
    months: dict[tuple[int, int], list[Path]] = {}
    for zip_path in _verified_zips(layout.local_for_key(paths.dataset_files_prefix(tt, DAILY, dataset, symbol, interval))):
        span = file_span(zip_path.name)
        if span is not None:
            months.setdefault((span[0].year, span[0].month), []).append(zip_path)
    for zip_path in _verified_zips(layout.local_for_key(paths.dataset_files_prefix(tt, MONTHLY, dataset, symbol, interval))):
        span = file_span(zip_path.name)
        if span is not None:
            months[(span[0].year, span[0].month)] = [zip_path]
    return {month: sorted(files, key=lambda p: file_span(p.name)) for month, files in sorted(months.items())}


def archive_parse(settings: Settings, *, market, dataset, symbols, interval=None) -> RunSummary:
    from bhds.parallel import write_outputs
    from bhds.parse.trades import DEFAULT_BLOCK_SIZE, MonthTask, built_from, parse_month, signature

    tt = TradeType(market)
    ds = find_dataset(tt, dataset)
    interval = dataset_interval(tt, ds, interval)
    layout = Layout(settings.data_dir)
    named = list(dict.fromkeys(symbols)) or sorted({
        s for period in ds.periods(interval)
        for s in paths.list_subdirs(layout.local_for_key(paths.dataset_symbols_prefix(tt, period, ds.name)))
        if layout.local_for_key(paths.dataset_files_prefix(tt, period, ds.name, s, interval)).is_dir()})
    summary = RunSummary("archive parse")
    summary.notes["symbols"] = len(named)
    folder = paths.PARSED_DATASET_FOLDERS.get(ds.name, ds.name)
    with stage_lock(layout, paths.lock_name("parse", tt, folder, interval), settings.lock_timeout):
        tasks = []
        for symbol in named:
            sweep_temp_files(layout.parsed_dataset_dir(tt, ds.name, symbol, interval))
            months = month_sources(layout, tt, ds.name, symbol, interval)
            if not months:
                log.warning("no verified %s %s%s zips of %s: run `archive download` (and `archive verify`) first",
                            tt.value, ds.name, f" {interval}" if interval else "", symbol)
            for (year, month), sources in months.items():
                target = layout.parsed_dataset_partition(tt, ds.name, symbol, year, month, interval)
                built = signature(sources)
                if built_from(target) == built:
                    summary.skipped += 1
                    continue
                tasks.append(MonthTask(tt.value, ds.name, tuple(map(str, sources)), str(target), built,
                                       BLOCK_SIZE or DEFAULT_BLOCK_SIZE))
        log.info("parsing %d %s %s month(s) on %d process(es)", len(tasks), tt.value, ds.name, settings.n_jobs)
        write_outputs(parse_month, tasks, settings.n_jobs, summary, target=lambda task: task.target,
                      kept="its previous partition is kept")
    return summary
