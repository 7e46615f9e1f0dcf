"""Parse workflows: `aws_kline parse | parse-type-all`, `aws_funding parse | parse-type-all`.

Each run lists the verified zips, asks the ledger which months (klines) or symbols (funding)
are behind them, rebuilds only those on all cores, and records what fed each output.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from bhds import paths, state
from bhds.errors import InputError
from bhds.parallel import imap_isolated
from bhds.parse import ledger
from bhds.parse.plan import SymbolPlan, plan_funding, plan_klines
from bhds.parse.tasks import FundingResult, FundingTask, MonthResult, MonthTask, run_funding, run_month
from bhds.paths import Layout, list_subdirs
from bhds.progress import bar
from bhds.settings import Settings
from bhds.storage import remove, stage_lock, stage_locks, sweep_temp_files
from bhds.symbol_names import check_downloaded
from bhds.types import RunSummary, TradeType, parse_interval

log = logging.getLogger("bhds.parse")

# Below this many bytes of zips to read, starting worker processes costs more than it saves.
POOL_MIN_BYTES = 8 * 1024 * 1024
RETRY_HINT = "skipped; delete the zip and its .verified marker, then run download and verify again"
REJECT_HINT = "the file's other rows were parsed; it is reported on every run until a corrected zip is downloaded"


def kline_parse(settings: Settings, *, trade_type, time_interval, symbols, force_update) -> RunSummary:
    """Parse the verified daily kline zips of the given symbols into monthly partitions."""
    trade_type = TradeType(trade_type)
    interval = parse_interval(time_interval, archive=True).text
    layout = Layout(settings.data_dir)
    check_downloaded(symbols, layout.aws_kline_symbols_dir(trade_type), "aws_kline download and verify")
    summary = RunSummary("aws_kline parse")
    with stage_lock(layout, paths.lock_name("parse", trade_type, paths.KLINES, interval), settings.lock_timeout):
        _parse_klines(settings, layout, trade_type, interval, _unique(symbols), force_update, summary)
    return summary


def kline_parse_type_all(settings: Settings, *, trade_type, time_intervals, force_update) -> RunSummary:
    """Parse every local symbol that has the interval, for each interval in turn."""
    trade_type = TradeType(trade_type)
    intervals = _unique(parse_interval(text, archive=True).text for text in time_intervals)
    summary = RunSummary("aws_kline parse-type-all")
    layout = Layout(settings.data_dir)
    with stage_locks(layout, [paths.lock_name("parse", trade_type, paths.KLINES, i) for i in intervals], settings.lock_timeout):
        for interval in intervals:
            symbols_dir = layout.aws_kline_symbols_dir(trade_type)
            symbols = [s for s in list_subdirs(symbols_dir) if layout.aws_kline_dir(trade_type, s, interval).is_dir()]
            if not symbols:
                log.warning("no %s %s klines under %s: nothing to parse (run aws_kline download and verify first)",
                            trade_type.value, interval, symbols_dir)
            _parse_klines(settings, layout, trade_type, interval, symbols, force_update, summary)
    return summary


def funding_parse(settings: Settings, *, trade_type, symbols) -> RunSummary:
    """Rebuild the funding file of each given symbol from its verified monthly zips."""
    trade_type = _funding_market(trade_type)
    layout = Layout(settings.data_dir)
    check_downloaded(symbols, layout.aws_funding_symbols_dir(trade_type), "aws_funding download and verify")
    summary = RunSummary("aws_funding parse")
    with stage_lock(layout, paths.lock_name("parse", trade_type, paths.FUNDING), settings.lock_timeout):
        _parse_funding(settings, layout, trade_type, _unique(symbols), summary)
    return summary


def funding_parse_type_all(settings: Settings, *, trade_type) -> RunSummary:
    """Rebuild the funding file of every local symbol of a futures market."""
    trade_type = _funding_market(trade_type)
    summary = RunSummary("aws_funding parse-type-all")
    layout = Layout(settings.data_dir)
    symbols_dir = layout.aws_funding_symbols_dir(trade_type)
    symbols = list_subdirs(symbols_dir)
    if not symbols:
        log.warning("no %s funding rates under %s: nothing to parse (run aws_funding download and verify first)",
                    trade_type.value, symbols_dir)
    with stage_lock(layout, paths.lock_name("parse", trade_type, paths.FUNDING), settings.lock_timeout):
        _parse_funding(settings, layout, trade_type, symbols, summary)
    return summary


# ---- klines ----

def _parse_klines(settings: Settings, layout: Layout, trade_type: TradeType, interval: str, symbols: list[str],
                  force: bool, summary: RunSummary) -> None:
    summary.notes["symbols"] = summary.notes.get("symbols", 0) + len(symbols)
    summary.notes.setdefault("partitions", 0)
    summary.notes.setdefault("duplicates", 0)  # rows dropped for repeating a time
    if not symbols:
        return
    conn = state.connect(layout)
    try:
        ledger.prepare(conn)
        recorded = ledger.kline_sources(conn, trade_type.value, interval)
        plans = []
        for symbol in symbols:
            sweep_temp_files(layout.parsed_kline_dir(trade_type, symbol, interval))
            sizes = ledger.archive_sizes(conn, paths.kline_files_prefix(trade_type, symbol, interval))
            plan = plan_klines(layout, trade_type, symbol, interval, recorded.get(symbol, {}), force, sizes)
            _warn_about(plan, symbol, "no verified %s %s zips for %s in %s: run aws_kline download and verify first",
                        trade_type.value, interval, symbol, layout.aws_kline_dir(trade_type, symbol, interval))
            summary.skipped += plan.up_to_date
            for orphan in plan.orphans:
                log.info("--force-update: removing %s (no verified zip of its month is left)", orphan)
                remove(orphan)
            plans.append(plan)
        tasks = [task for plan in plans for task in plan.tasks]
        log.info("parse %s %s klines: %d symbols, %d months to update, %d zips already parsed",
                 trade_type.value, interval, len(symbols), len(tasks), summary.skipped)

        def record(task: MonthTask, result: MonthResult) -> None:
            partition = f"{task.year:04d}{task.month:02d}"
            done = [(z.name, z.size, z.mtime_ns) for z in result.parsed + result.adopted]
            ledger.record_kline_sources(conn, trade_type.value, task.symbol, interval, partition, done, _stamp(settings))
            ledger.mark_kline_zips_failed(conn, trade_type.value, task.symbol, interval, partition,
                                          [name for name, _ in result.failures + result.rejected], _stamp(settings))
            if result.partition_was_unreadable:
                log.warning("%s was unreadable and was rebuilt from its zips (%s)", task.partition, result.partition_was_unreadable)
            if result.rows_outside:
                log.debug("%s: %d rows outside the month or of another day's file dropped", task.label, result.rows_outside)
            _tally(summary, result)
            summary.skipped += len(result.adopted) + result.unchanged
            summary.notes["partitions"] += int(result.written)
            summary.notes["duplicates"] += result.duplicates_dropped
            for name, what in result.rejected:
                summary.fail(f"{name}: {what} ({REJECT_HINT})")
            if result.rows_rejected:
                summary.notes["rejected"] = summary.notes.get("rejected", 0) + result.rows_rejected

        _run(settings, plans, run_month, record, summary, f"parse {trade_type.value} {interval}", "month")
    finally:
        conn.close()


# ---- funding ----

def _funding_market(trade_type) -> TradeType:
    trade_type = TradeType(trade_type)
    if not trade_type.is_futures:
        raise InputError("Binance publishes funding rates for futures only, not spot: use um_futures or cm_futures", exit_code=2)
    return trade_type


def _parse_funding(settings: Settings, layout: Layout, trade_type: TradeType, symbols: list[str], summary: RunSummary) -> None:
    summary.notes["symbols"] = len(symbols)
    summary.notes["written"] = 0
    if not symbols:
        return
    sweep_temp_files(layout.parsed_funding_dir(trade_type))
    conn = state.connect(layout)
    try:
        ledger.prepare(conn)
        recorded = ledger.funding_sources(conn, trade_type.value)
        plans = []
        for symbol in symbols:
            sizes = ledger.archive_sizes(conn, paths.funding_files_prefix(trade_type, symbol))
            plan = plan_funding(layout, trade_type, symbol, recorded.get(symbol, {}), sizes)
            _warn_about(plan, symbol, "no verified %s funding zips for %s in %s: run aws_funding download and verify first",
                        trade_type.value, symbol, layout.aws_funding_dir(trade_type, symbol))
            summary.skipped += plan.up_to_date
            plans.append(plan)
        log.info("parse %s funding rates: %d symbols, %d to rebuild", trade_type.value, len(symbols), sum(len(p.tasks) for p in plans))

        def record(task: FundingTask, result: FundingResult) -> None:
            if result.written and not result.failures:
                # Recorded only when complete, so a failed zip is tried again next run.
                done = [(z.name, z.size, z.mtime_ns) for z in result.parsed]
                ledger.replace_funding_sources(conn, trade_type.value, task.symbol, done, _stamp(settings))
            _tally(summary, result)
            summary.notes["written"] += int(result.written)

        _run(settings, plans, run_funding, record, summary, f"parse {trade_type.value} funding", "symbol")
    finally:
        conn.close()


# ---- shared ----

def _tally(summary: RunSummary, result: MonthResult | FundingResult) -> None:
    """Add what one worker result read and which of its zips failed to the run's summary."""
    summary.files += len(result.parsed)
    summary.rows += result.rows_parsed
    summary.bytes += result.bytes_read
    for name, reason in result.failures:
        summary.fail(f"{name}: {reason} ({RETRY_HINT})")


def _run(settings: Settings, plans: list[SymbolPlan], work: Callable, record: Callable, summary: RunSummary,
         desc: str, unit: str) -> None:
    """Run every task of `plans` on the pool (or in-process when small) and record each result."""
    tasks = [task for plan in plans for task in plan.tasks]
    if not tasks:
        return
    n_jobs = settings.n_jobs if sum(plan.work_bytes for plan in plans) >= POOL_MIN_BYTES else 1
    with bar(total=len(tasks), desc=desc, unit=unit) as progress:
        for task, outcome in imap_isolated(work, tasks, n_jobs):
            progress.update()
            if isinstance(outcome, BaseException):
                summary.fail(f"{task.label}: {outcome}")
                continue
            record(task, outcome)


def _warn_about(plan: SymbolPlan, symbol: str, missing_message: str, *args: object) -> None:
    if plan.mismatched:
        log.warning("%s: %d zips differ in size from what the archive stage verified, e.g. %s; not parsed until verified again",
                    symbol, len(plan.mismatched), plan.mismatched[0])
    if plan.ignored:
        log.warning("%s: ignored %d files not named like %s's archive files, e.g. %s", symbol, len(plan.ignored), symbol, plan.ignored[0])
    if plan.n_sources == 0:
        log.warning(missing_message, *args)


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _stamp(settings: Settings) -> str:
    return settings.now().isoformat(timespec="seconds")
