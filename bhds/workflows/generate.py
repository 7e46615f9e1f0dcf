"""Workflows of the `generate` command group: result klines (contract §6.11) and resamples (§6.12).

`kline-type` and `resample-type` build their whole output tree in a staging directory beside the
old one and swap it in at the end, so readers never see a half-built tree and a failed or killed
run leaves the previous results. One symbol's (file's) failure is reported, its previous outputs
are carried over, and the others go on. Single-symbol commands write their files atomically in
place.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

from bhds import storage
from bhds.errors import BhdsError, DataError, InputError
from bhds.generate.contracts import CONTRACT_SIZES_CACHE, load_sizes, sizes_for
from bhds.generate.offsets import ResamplePlan, plan_resample
from bhds.generate.jobs import RESAMPLE_SOURCE_INTERVAL, KlineJob, ResampleJob, TaskResult, run_kline_job, run_resample_job
from bhds.parallel import imap_isolated
from bhds.paths import KLINES, PARQUET_SUFFIX, Layout, list_files, list_subdirs, lock_name, parquet_in, resampled_file_in, staging_dir
from bhds.progress import bar
from bhds.settings import Settings
from bhds.symbol_names import check_listed, listed_locally
from bhds.types import RunSummary, TradeType, parse_interval

log = logging.getLogger("bhds.generate")

J = TypeVar("J")


# ---- shared helpers ----

def _kline_stage(trade_type: TradeType, interval: str) -> str:
    return lock_name("generate", trade_type, KLINES, interval)


def _resample_stage(trade_type: TradeType, interval: str) -> str:
    return lock_name("resample", trade_type, KLINES, interval)


@contextlib.contextmanager
def _resample_locks(settings: Settings, layout: Layout, trade_type: TradeType, interval: str) -> Iterator[None]:
    """Own the resampled tree, and read the 1m results while no `kline-type 1m` is rewriting them."""
    with storage.stage_lock(layout, _resample_stage(trade_type, interval), settings.lock_timeout), \
            storage.stage_lock(layout, _kline_stage(trade_type, RESAMPLE_SOURCE_INTERVAL), settings.lock_timeout, shared=True):
        yield


def _check_kline_args(time_interval: str, min_days: int, min_price_chg: float) -> str:
    """The interval as every stage spells it in paths (`1H` -> `1h`), after checking the options."""
    interval = parse_interval(time_interval, what="time interval", archive=True).text
    if min_days < 0:
        raise InputError(f"--min-days {min_days} is negative: give a number of days of 0 or more (default 1)", exit_code=2)
    if not min_price_chg >= 0:  # also catches nan
        raise InputError(f"--min-price-chg {min_price_chg} is not a price change ratio: give 0 or more, e.g. 0.1 for 10% (default)", exit_code=2)
    return interval


def _kline_symbols(layout: Layout, trade_type: TradeType, interval: str) -> list[str]:
    """Symbols with a local archive kline directory for the interval (contract §6.5)."""
    return [s for s in list_subdirs(layout.aws_kline_symbols_dir(trade_type)) if layout.aws_kline_dir(trade_type, s, interval).is_dir()]


def _contract_sizes(layout: Layout, trade_type: TradeType, symbols: list[str], with_vwap: bool) -> dict[str, float]:
    if trade_type is not TradeType.cm_futures or not with_vwap:
        return {}
    return sizes_for(symbols, load_sizes(layout.cache_file(CONTRACT_SIZES_CACHE)))


def _segment_pattern(symbol: str) -> re.Pattern[str]:
    return re.compile(rf"^SP\d+_{re.escape(symbol)}$")


def _stem(path: Path) -> str:
    return path.name[: -len(PARQUET_SUFFIX)]


def _symbol_files(directory: Path, symbol: str) -> list[Path]:
    """`<SYMBOL>.pqt` and its `SP<i>_<SYMBOL>.pqt` segments in a results directory."""
    pattern = _segment_pattern(symbol)
    return [p for p in list_files(directory, PARQUET_SUFFIX) if _stem(p) == symbol or pattern.match(_stem(p))]


def _reason(exc: BaseException) -> str:
    return exc.message if isinstance(exc, BhdsError) else f"{type(exc).__name__}: {exc}"


def _count(summary: RunSummary, result: TaskResult) -> None:
    if result.skipped:
        summary.skipped += 1
        return
    summary.files += len(result.files)
    summary.rows += result.rows
    summary.bytes += result.bytes


def _run_all(func: Callable[[J], TaskResult], jobs: Sequence[J], label: Callable[[J], str], settings: Settings, summary: RunSummary) -> list[J]:
    """Run the jobs on every core, count what they wrote, and return the jobs that failed."""
    failed: list[J] = []
    with bar(total=len(jobs), desc="Processing tasks", unit="task") as progress:
        for job, outcome in imap_isolated(func, jobs, settings.n_jobs):
            progress.update(1)
            progress.set_postfix_str(label(job))
            if isinstance(outcome, BaseException):
                log.debug("%s failed", label(job), exc_info=outcome)
                summary.fail(f"{label(job)}: {_reason(outcome)}")
                failed.append(job)
            else:
                _count(summary, outcome)
    return failed


def _largest_first(items: list[J], files: Callable[[J], list[Path]]) -> list[J]:
    """Items by decreasing input size, so the workers finish together instead of one idling at the end."""

    def size(item: J) -> int:
        return sum(path.stat().st_size for path in files(item) if path.exists())

    return sorted(items, key=size, reverse=True)


def _build_and_swap(target: Path, build: Callable[[Path], None]) -> None:
    """Call `build(staging)` and swap the staging tree in for `target`; on any error drop it."""
    staging = staging_dir(target, uuid.uuid4().hex[:8])
    try:
        staging.mkdir(parents=True)
    except OSError as exc:
        raise DataError(f"cannot create {staging} ({exc.strerror or exc}): make the data directory writable or set CRYPTO_BASE_DIR") from exc
    try:
        build(staging)
        storage.replace_dir(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


# ---- generate kline / kline-type ----

def _kline_job(layout: Layout, trade_type: TradeType, interval: str, symbol: str, out_dir: Path, sizes: dict[str, float], **options: object) -> KlineJob:
    return KlineJob(data_dir=layout.root, trade_type=trade_type, interval=interval, symbol=symbol, out_dir=out_dir,
                    contract_size=sizes.get(symbol), **options)  # type: ignore[arg-type]


def _log_options(split_gaps: bool, min_days: int, min_price_chg: float, with_vwap: bool, with_funding_rates: bool) -> None:
    split = f"split_gaps={split_gaps}" + (f" (min_days={min_days}, min_price_chg={min_price_chg})" if split_gaps else "")
    log.info("%s; with_vwap=%s; with_funding_rates=%s", split, with_vwap, with_funding_rates)


def kline(settings: Settings, *, trade_type, time_interval, symbol, split_gaps, min_days, min_price_chg, with_vwap, with_funding_rates) -> RunSummary:
    """Merged, gap-split, filled klines of one symbol; its stale `SP<i>_` files are removed."""
    trade_type = TradeType(trade_type)
    time_interval = _check_kline_args(time_interval, min_days, min_price_chg)
    layout = Layout(settings.data_dir)
    check_listed([symbol], listed_locally(layout.parsed_kline_symbols_dir(trade_type), layout.api_kline_symbols_dir(trade_type)),
                 f"in the parsed or API klines under {layout.root}", "if it is new, run aws_kline download, verify and parse first")
    summary = RunSummary("generate kline")
    target = layout.results_kline_dir(trade_type, time_interval)
    log.info("Generate merged and split kline data for %s %s %s", symbol, trade_type.value, time_interval)
    options = dict(split_gaps=split_gaps, min_days=min_days, min_price_chg=min_price_chg, with_vwap=with_vwap, with_funding_rates=with_funding_rates)
    with storage.stage_lock(layout, _kline_stage(trade_type, time_interval), settings.lock_timeout):
        storage.recover_dir(target)
        sizes = _contract_sizes(layout, trade_type, [symbol], with_vwap)
        result = run_kline_job(_kline_job(layout, trade_type, time_interval, symbol, target, sizes, **options))
        if result.skipped:
            log.warning("no parsed archive klines for %s %s %s: nothing generated (run aws_kline parse first)", symbol, trade_type.value, time_interval)
        else:
            stale = [p for p in _symbol_files(target, symbol) if _stem(p) not in result.files]
            for path in stale:
                path.unlink(missing_ok=True)
            if stale:
                log.info("removed stale segments of %s: %s", symbol, ", ".join(_stem(p) for p in stale))
        _count(summary, result)
    return summary


def kline_type(settings: Settings, *, trade_type, time_interval, split_gaps, min_days, min_price_chg, with_vwap, with_funding_rates) -> RunSummary:
    """`kline` for every symbol with a local archive kline directory, swapped in as one new tree."""
    trade_type = TradeType(trade_type)
    time_interval = _check_kline_args(time_interval, min_days, min_price_chg)
    layout = Layout(settings.data_dir)
    summary = RunSummary("generate kline-type")
    target = layout.results_kline_dir(trade_type, time_interval)
    log.info("BHDS Merge klines for %s %s", trade_type.value, time_interval)
    log.info("results_dir=%s", target)
    _log_options(split_gaps, min_days, min_price_chg, with_vwap, with_funding_rates)
    options = dict(split_gaps=split_gaps, min_days=min_days, min_price_chg=min_price_chg, with_vwap=with_vwap, with_funding_rates=with_funding_rates)

    with storage.stage_lock(layout, _kline_stage(trade_type, time_interval), settings.lock_timeout):
        storage.recover_dir(target)
        symbols = _kline_symbols(layout, trade_type, time_interval)
        if not symbols:
            log.warning("No symbols found for %s %s: previous results left as they are", trade_type.value, time_interval)
            return summary
        log.info("num_symbols=%d (%s -- %s)", len(symbols), symbols[0], symbols[-1])
        sizes = _contract_sizes(layout, trade_type, symbols, with_vwap)

        def build(staging: Path) -> None:
            by_size = _largest_first(symbols, lambda s: list_files(layout.parsed_kline_dir(trade_type, s, time_interval), PARQUET_SUFFIX))
            jobs = [_kline_job(layout, trade_type, time_interval, s, staging, sizes, **options) for s in by_size]
            for job in _run_all(run_kline_job, jobs, lambda j: j.symbol, settings, summary):
                kept = _symbol_files(target, job.symbol)
                for path in kept:
                    storage.link_or_copy(path, parquet_in(staging, _stem(path)))
                if kept:
                    log.warning("%s failed: kept its previous results (%d files)", job.symbol, len(kept))

        _build_and_swap(target, build)
    return summary


# ---- generate resample / resample-type ----

def resample(settings: Settings, *, trade_type, symbol, resample_interval, base_offset) -> RunSummary:
    """Resample one symbol's 1m results at every offset of the base offset."""
    trade_type = TradeType(trade_type)
    plan = plan_resample(resample_interval, base_offset)
    layout = Layout(settings.data_dir)
    source = layout.results_kline_file(trade_type, RESAMPLE_SOURCE_INTERVAL, symbol)
    generated = [p.name[: -len(PARQUET_SUFFIX)] for p in list_files(source.parent, PARQUET_SUFFIX)]  # SP<i>_ segments too
    check_listed([symbol], generated, f"in the 1m results {source.parent}",
                 f"if it is new, run generate kline {trade_type.value} 1m <SYMBOL> first")
    summary = RunSummary("generate resample")
    log.info("Resample kline %s %s %s base offset %s", trade_type.value, resample_interval, symbol, base_offset)
    target = layout.resampled_interval_dir(trade_type, resample_interval)
    with _resample_locks(settings, layout, trade_type, resample_interval):
        storage.recover_dir(target)
        if not source.exists():
            raise InputError(f"no 1m results for {symbol} ({source}): run `generate kline {trade_type.value} 1m {symbol}` first")
        _count(summary, run_resample_job(ResampleJob(source, trade_type, plan, target)))
    return summary


def resample_type(settings: Settings, *, trade_type, resample_interval, base_offset) -> RunSummary:
    """Resample every 1m results file (SP<i>_ segments included), swapped in as one new tree."""
    trade_type = TradeType(trade_type)
    plan = plan_resample(resample_interval, base_offset)
    layout = Layout(settings.data_dir)
    summary = RunSummary("generate resample-type")
    target = layout.resampled_interval_dir(trade_type, resample_interval)
    log.info("Resample kline %s %s %s", trade_type.value, resample_interval, base_offset)
    log.info("Resampled kline directory: %s", target)

    with _resample_locks(settings, layout, trade_type, resample_interval):
        storage.recover_dir(target)
        sources = list_files(layout.results_kline_dir(trade_type, RESAMPLE_SOURCE_INTERVAL), PARQUET_SUFFIX)
        if not sources:
            log.warning("No 1m results for %s: run `generate kline-type %s 1m` first; previous resamples left as they are", trade_type.value, trade_type.value)
            return summary
        log.info("num_files=%d, offsets=%s", len(sources), ",".join(o.name for o in plan.offsets))

        def build(staging: Path) -> None:
            jobs = [ResampleJob(source, trade_type, plan, staging) for source in _largest_first(sources, lambda source: [source])]
            for job in _run_all(run_resample_job, jobs, lambda j: _stem(j.source), settings, summary):
                _carry_over_resampled(target, staging, plan, _stem(job.source))

        _build_and_swap(target, build)
    return summary


def _carry_over_resampled(target: Path, staging: Path, plan: ResamplePlan, name: str) -> None:
    kept = 0
    for offset in plan.offsets:
        previous = resampled_file_in(target, offset.name, name)
        if previous.exists():
            storage.link_or_copy(previous, resampled_file_in(staging, offset.name, name))
            kept += 1
    if kept:
        log.warning("%s failed: kept its previous resamples (%d files)", name, kept)


# The SQL catalog, when one exists, is rewritten after each run so it covers any folder the run added.
from bhds.research.catalog import refresh_after  # noqa: E402

kline, kline_type, resample, resample_type = map(refresh_after, (kline, kline_type, resample, resample_type))
