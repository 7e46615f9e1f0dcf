"""Workflow of `generate indicators-type`: TA-Lib indicators of every symbol's result klines.

Input: `results_data/<tt>/klines/<interval>/` (what `generate kline-type` wrote), or with an offset
`results_data/<tt>/resampled_klines/<interval>/<offset>/` (what `resample-type` wrote). Output: one
`results_data/<tt>/indicators/<interval>[/<offset>]/<SYMBOL>.pqt` per symbol, each written
atomically; a symbol whose inputs and specs did not change is skipped (see `indicators.compute`).
A symbol that fails keeps its previous file; symbols whose klines are gone lose theirs.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from bhds import storage
from bhds.errors import DataError, InputError
from bhds.indicators.compute import IndicatorJob, IndicatorResult, run_indicator_job
from bhds.indicators.specs import check_with_talib, parse_specs
from bhds.parallel import imap_isolated
from bhds.paths import PARQUET_SUFFIX, Layout, list_files, list_subdirs
from bhds.progress import bar
from bhds.settings import Settings
from bhds.types import RunSummary, TradeType, parse_interval
from bhds.workflows.generate import _kline_stage, _reason, _resample_stage

log = logging.getLogger("bhds.indicators")

_SEGMENT_PREFIX = re.compile(r"^SP\d+_")


def _stage(trade_type: TradeType, interval: str, offset: str | None) -> str:
    return f"generate-indicators-{trade_type.value}-{interval}" + (f"-{offset}" if offset else "")


def _source(layout: Layout, trade_type: TradeType, time_interval: str, offset: str | None) -> tuple[str, Path, str]:
    """(interval as spelt in paths, input directory, the stage lock guarding it), or a one-line error."""
    tt = trade_type.value
    if offset is not None:
        parsed = parse_interval(time_interval, what="interval")
        interval = parsed.text  # resample-type names its folder as typed
        if not parsed.is_calendar and parsed.ms == 60_000:
            raise InputError("--offset is for resampled klines: 1m results have no offsets, drop --offset", exit_code=2)
        if not layout.resampled_interval_dir(trade_type, interval).is_dir():
            raise InputError(f"no resampled {interval} klines for {tt}: run `generate resample-type {tt} {interval} <base offset>` first", exit_code=2)
        source = layout.resampled_dir(trade_type, interval, offset)
        if not source.is_dir():
            offsets = ", ".join(list_subdirs(layout.resampled_interval_dir(trade_type, interval))) or "none"
            raise InputError(f"no resampled {tt} {interval} klines at offset {offset!r}: use one of the offsets on disk ({offsets})", exit_code=2)
        return interval, source, _resample_stage(trade_type, interval)
    interval = parse_interval(time_interval, what="interval", archive=True).text
    source = layout.results_kline_dir(trade_type, interval)
    if not list_files(source, PARQUET_SUFFIX):
        resampled = list_subdirs(layout.resampled_interval_dir(trade_type, interval)) if interval != "1m" else []
        hint = f", or pass --offset for the resampled klines (offsets on disk: {', '.join(resampled)})" if resampled else ""
        raise DataError(f"no {tt} {interval} results in {source}: run `generate kline-type {tt} {interval}` first{hint}")
    return interval, source, _kline_stage(trade_type, interval)


def _by_symbol(files: list[Path]) -> dict[str, tuple[Path, ...]]:
    """`SP0_X.pqt`, `SP1_X.pqt`, `X.pqt` → {X: (those files)}."""
    groups: dict[str, list[Path]] = {}
    for path in files:
        stem = path.name[: -len(PARQUET_SUFFIX)]
        groups.setdefault(_SEGMENT_PREFIX.sub("", stem), []).append(path)
    return {symbol: tuple(paths) for symbol, paths in sorted(groups.items())}


def indicators_type(settings: Settings, *, trade_type: TradeType, time_interval: str, offset: str | None,
                    indicators: list[str]) -> RunSummary:
    """Compute the indicators of every symbol of one results directory."""
    trade_type = TradeType(trade_type)
    specs = parse_specs(indicators)
    offset = offset.strip() if offset is not None else None
    if offset == "":
        raise InputError("--offset is empty: give an offset folder of the resampled klines, e.g. --offset 5m", exit_code=2)
    check_with_talib(specs)
    layout = Layout(settings.data_dir)
    interval, source, source_stage = _source(layout, trade_type, time_interval, offset)
    target = layout.indicators_dir(trade_type, interval, offset)
    summary = RunSummary("generate indicators-type")
    log.info("Indicators %s for %s %s%s: %s", ", ".join(s.text for s in specs), trade_type.value, interval,
             f" offset {offset}" if offset else "", target)

    with storage.stage_lock(layout, _stage(trade_type, interval, offset), settings.lock_timeout), \
            storage.stage_lock(layout, source_stage, settings.lock_timeout, shared=True):
        storage.sweep_temp_files(target, recursive=False)  # offset sub-folders have their own lock
        groups = _by_symbol(list_files(source, PARQUET_SUFFIX))
        summary.notes["symbols"] = len(groups)
        jobs = [IndicatorJob(symbol, inputs, layout.indicators_file(trade_type, interval, offset, symbol), tuple(specs))
                for symbol, inputs in groups.items()]
        with bar(total=len(jobs), desc="indicators", unit="symbol") as progress:
            for job, outcome in imap_isolated(run_indicator_job, jobs, settings.n_jobs):
                progress.update(1)
                if isinstance(outcome, BaseException):
                    log.debug("%s failed", job.symbol, exc_info=outcome)
                    summary.fail(f"{job.symbol}: {_reason(outcome)}")
                    if job.output.exists():
                        log.warning("%s failed: kept its previous indicators", job.symbol)
                    continue
                _count(summary, outcome)
        stale = [p for p in list_files(target, PARQUET_SUFFIX) if p.name[: -len(PARQUET_SUFFIX)] not in groups]
        storage.remove_all(stale)
        if stale:
            log.info("removed indicators of symbols without klines: %s", ", ".join(p.name for p in stale))
    return summary


def _count(summary: RunSummary, result: IndicatorResult) -> None:
    if result.skipped:
        summary.skipped += 1
        return
    summary.files += 1
    summary.rows += result.rows
    summary.bytes += result.bytes
