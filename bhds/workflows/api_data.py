"""Workflows of the `api_data` group: fill what the archive lacks from the Binance REST API.

Kline commands turn their arguments into (symbol, day) pairs — given days, or the days the
parsed archive store lacks plus the recent days the archive has not published yet — and hand
them to `bhds.api.fill`. Funding commands fetch each symbol's recent funding rates. Every
command reports days/symbols requested, filled, empty and failed, the requests made and the
peak weight the server reported.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timezone

import pyarrow as pa

from bhds.api.arrow import int64_values
from bhds.api.client import InvalidSymbol
from bhds.api.connect import ApiOptions, MarketSession, open_market
from bhds.api.fill import ITEM_ERRORS, DayJob, FillOutcome, KlineFiller
from bhds.api.funding import fetch_recent_funding, funding_to_table
from bhds.api.ledger import EmptyDayLedger
from bhds.api.missing import StoreCoverage, day_list, finished_days, scan_store, tail_days
from bhds.api.ratelimit import MarketStopped
from bhds.errors import InputError, NetworkError
from bhds.parallel import imap_isolated
from bhds.paths import FUNDING, KLINES, PARQUET_SUFFIX, Layout, list_files, list_subdirs, lock_name
from bhds.progress import bar
from bhds.schema import PARSED_FUNDING_SCHEMA
from bhds.settings import Settings
from bhds.state import connect
from bhds.storage import open_parquet, parquet_metadata, stage_lock, sweep_temp_files, write_table
from bhds.symbol_names import check_listed, listed_locally, unknown_symbols
from bhds.types import Interval, RunSummary, TradeType, parse_interval

log = logging.getLogger("bhds.workflows.api_data")

# A legacy run wrote an empty Parquet file for an empty answer; such files are this small.
_TINY_FILE = 8 * 1024
# Reading many stores is worth a process pool only past this many partition files.
_POOL_FROM_FILES = 200


# =========================================================================================
# Arguments
# =========================================================================================


def _interval(trade_type: TradeType, text: str) -> Interval:
    interval = parse_interval(text, archive=True)
    if interval.text == "1s" and trade_type is not TradeType.spot:
        raise InputError(f"interval 1s exists for spot only: use 1m or longer for {trade_type.value}", exit_code=2)
    return interval


def parse_day(text: str) -> date:
    """`20200101`, `2020-01-01` or `2020/01/01` (a time part is ignored)."""
    raw = (text or "").strip().replace("/", "-")
    try:
        return date.fromisoformat(raw)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(raw).date()
    except ValueError:
        raise InputError(f"date {text!r} is not a date: use YYYYMMDD or YYYY-MM-DD, e.g. 20200101", exit_code=2) from None


def _futures(trade_type: TradeType) -> TradeType:
    if trade_type is TradeType.spot:
        raise InputError("spot has no funding rates: use um_futures or cm_futures", exit_code=2)
    return trade_type


# =========================================================================================
# Klines
# =========================================================================================


@dataclass
class _Plan:
    """Days to fetch, and why the others are not."""

    holes: dict[str, list[date]] = field(default_factory=dict)
    tails: dict[str, list[date]] = field(default_factory=dict)
    have_file: int = 0
    asked_recently: int = 0
    no_store: list[str] = field(default_factory=list)


def _existing_days(layout: Layout, trade_type: TradeType, symbol: str, interval: str) -> set[date]:
    """Days with an API file holding data (a legacy empty file does not count)."""
    days = set()
    for path in list_files(layout.api_kline_dir(trade_type, symbol, interval), PARQUET_SUFFIX):
        try:
            day = datetime.strptime(path.name[: -len(PARQUET_SUFFIX)], "%Y%m%d").date()
        except ValueError:
            continue
        try:
            if path.stat().st_size < _TINY_FILE and parquet_metadata(path).num_rows == 0:
                continue  # the legacy tool's "asked, got nothing": ask again
        except (OSError, ValueError):
            continue  # unreadable: fetch it again
        days.add(day)
    return days


def _scan_job(args: tuple[Layout, TradeType, str, Interval]) -> StoreCoverage:
    return scan_store(*args)


def _scan_stores(settings: Settings, layout: Layout, trade_type: TradeType, symbols: list[str], interval: Interval,
                 summary: RunSummary) -> dict[str, StoreCoverage]:
    files = sum(len(list_files(layout.parsed_kline_dir(trade_type, s, interval.text), PARQUET_SUFFIX)) for s in symbols)
    jobs = settings.n_jobs if files >= _POOL_FROM_FILES else 1
    coverages = {}
    for (_, _, symbol, _), result in imap_isolated(_scan_job, [(layout, trade_type, s, interval) for s in symbols], jobs):
        if isinstance(result, BaseException):
            summary.fail(f"{symbol}: cannot read its parsed klines: {result}")
        else:
            coverages[symbol] = result
    return coverages


def _plan(layout: Layout, trade_type: TradeType, interval: Interval, coverages: dict[str, StoreCoverage],
          ledger: EmptyDayLedger, now: datetime, overwrite: bool) -> _Plan:
    plan = _Plan()
    for symbol, coverage in sorted(coverages.items()):
        if coverage.empty:
            plan.no_store.append(symbol)
            continue
        holes, tail = coverage.short_days, tail_days(coverage, interval, now)
        if not overwrite:
            have = _existing_days(layout, trade_type, symbol, interval.text)
            recent = ledger.asked_recently(symbol, now) - have
            plan.have_file += sum(1 for d in (*holes, *tail) if d in have)
            plan.asked_recently += sum(1 for d in (*holes, *tail) if d in recent)
            holes = [d for d in holes if d not in have and d not in recent]
            tail = [d for d in tail if d not in have and d not in recent]
        if holes:
            plan.holes[symbol] = holes
            log.debug("%s: archive lacks %s", symbol, day_list(holes))
        if tail:
            plan.tails[symbol] = tail
    return plan


def _apply_outcome(summary: RunSummary, outcome: FillOutcome, requested: int, ms: MarketSession,
                   *, invalid_is_failure: bool) -> None:
    """Counts and failures of a kline fill into the summary (nothing is left out)."""
    summary.files += len(outcome.filled)
    summary.rows += outcome.rows
    summary.bytes += outcome.bytes
    summary.notes.update({
        "days": requested,
        "filled": len(outcome.filled),
        "empty": len(outcome.empty),
    })
    if outcome.stopped is not None:
        summary.fail(f"{ms.market.trade_type.value}: {outcome.stopped}")
        for job in outcome.not_fetched:
            summary.fail(f"{job.symbol} {job.day.isoformat()}: not fetched (HTTP {outcome.stopped.status})")
    for job, reason in outcome.failed:
        summary.fail(f"{job.symbol} {job.day.isoformat()}: {reason}")
    for symbol, msg in sorted(outcome.invalid.items()):
        days = sum(1 for j in outcome.skipped_invalid if j.symbol == symbol)
        text = f"{symbol}: Binance does not know this symbol ({msg}); {days} day(s) skipped"
        if invalid_is_failure:
            summary.fail(text)
        else:
            summary.skipped += 1
    if outcome.invalid and not invalid_is_failure:
        summary.notes["invalid_symbols"] = ",".join(sorted(outcome.invalid))
    _market_notes(summary, ms)


def _market_notes(summary: RunSummary, ms: MarketSession) -> None:
    counters = ms.client.counters
    summary.notes["requests"] = counters.requests
    summary.notes["peak_weight"] = f"{ms.limiter.peak_used}/{ms.limiter.budget.limit}"
    if counters.rate_limited:
        summary.notes["http_429"] = counters.rate_limited
    if counters.retried:
        summary.notes["retried"] = counters.retried


async def _fill(settings: Settings, layout: Layout, trade_type: TradeType, interval: Interval, ledger: EmptyDayLedger,
                holes: dict[str, list[date]], tails: dict[str, list[date]], summary: RunSummary, api: ApiOptions | None,
                *, invalid_is_failure: bool) -> None:
    now = settings.now()
    first_symbol = next(iter(sorted({*holes, *tails})), None)
    try:
        async with open_market(settings, trade_type, layout, options=api, probe_symbol=first_symbol) as ms:
            server_ms = ms.server_now_ms()
            if server_ms is not None and server_ms < now.timestamp() * 1000:
                now = datetime.fromtimestamp(server_ms / 1000, tz=timezone.utc)  # our clock runs ahead
            holes, unfinished = _finished_only(holes, interval, now)
            tails, late = _finished_only(tails, interval, now)
            if unfinished or late:
                log.warning("%d day(s) not finished yet on Binance's clock (ours is ahead); not fetched", unfinished + late)
                summary.skipped += unfinished + late
                summary.notes["unfinished"] = summary.notes.get("unfinished", 0) + unfinished + late
            outcome = FillOutcome()
            filler = KlineFiller(ms.client, layout, trade_type, interval, ledger, now, workers=ms.workers)
            if tails:
                tails = await filler.trim_tails(tails, outcome)
            jobs = sorted({DayJob(s, d) for s, days in (*holes.items(), *tails.items()) for d in days})
            log.info("%s %s: %d day(s) of %d symbol(s) to fetch, %d of them after the archive's last day",
                     trade_type.value, interval.text, len(jobs), len({j.symbol for j in jobs}),
                     sum(len(v) for v in tails.values()))
            if outcome.stopped is None:
                with bar(total=len(jobs), desc=f"{trade_type.value} {interval.text} klines", unit="day") as progress:
                    filler.on_done = lambda _job: progress.update()
                    await filler.run(jobs, outcome)
            else:
                outcome.not_fetched.extend(jobs)
            if outcome.stopped is not None and outcome.stopped.status in (403, 451):
                raise NetworkError(str(outcome.stopped))
            _apply_outcome(summary, outcome, len(jobs), ms, invalid_is_failure=invalid_is_failure)
            if invalid_is_failure and outcome.invalid:
                _refuse_unknown(layout, trade_type, outcome.invalid)
            if "contract_sizes" in ms.notes:
                summary.notes["contract_sizes"] = ms.notes["contract_sizes"]
    except MarketStopped as exc:
        _stopped_before_start(exc, summary, sum(len(v) for v in (*holes.values(), *tails.values())))


def _refuse_unknown(layout: Layout, trade_type: TradeType, invalid: dict[str, str]) -> None:
    """Symbols named on the command line that Binance's API does not know (-1121) and no local store
    has either are typos: exit 2 with the closest local names. A local one (delisted since) stays a
    failed item."""
    known = listed_locally(layout.aws_kline_symbols_dir(trade_type), layout.parsed_kline_symbols_dir(trade_type),
                           layout.api_kline_symbols_dir(trade_type))
    if trade_type.is_futures:
        known |= listed_locally(layout.aws_funding_symbols_dir(trade_type))
    typos = sorted(set(invalid) - known)
    if typos:
        raise unknown_symbols(typos, known, f"unknown to Binance's {trade_type.value} API ({invalid[typos[0]]})", "")


def _finished_only(days_of: dict[str, list[date]], interval: Interval, now: datetime) -> tuple[dict[str, list[date]], int]:
    """The days whose bars all closed at `now`, and how many did not."""
    kept = {symbol: finished_days(days, interval, now) for symbol, days in days_of.items()}
    dropped = sum(len(days) for days in days_of.values()) - sum(len(days) for days in kept.values())
    return {symbol: days for symbol, days in kept.items() if days}, dropped


def _stopped_before_start(exc: MarketStopped, summary: RunSummary, items: int) -> None:
    if exc.status in (403, 451):
        raise NetworkError(str(exc)) from None
    summary.fail(f"{exc} ({items} item(s) not fetched)")


def _open_ledger(layout: Layout, trade_type: TradeType, interval: Interval) -> tuple[sqlite3.Connection, EmptyDayLedger]:
    conn = connect(layout)
    return conn, EmptyDayLedger(conn, trade_type, interval.text)


def _kline_run(settings: Settings, command: str, trade_type: TradeType, interval_text: str,
               body: Callable[[Layout, TradeType, Interval, EmptyDayLedger, RunSummary], None]) -> RunSummary:
    trade_type = TradeType(trade_type)
    interval = _interval(trade_type, interval_text)
    layout = Layout(settings.data_dir)
    summary = RunSummary(command)
    with stage_lock(layout, lock_name("api", trade_type, KLINES, interval.text), settings.lock_timeout):
        conn, ledger = _open_ledger(layout, trade_type, interval)
        try:
            body(layout, trade_type, interval, ledger, summary)
        finally:
            conn.close()
    return summary


def download_kline(settings: Settings, *, trade_type, time_interval, symbol, dts, api: ApiOptions | None = None) -> RunSummary:
    """The given UTC days of one symbol, always fetched (the current, unfinished day never is)."""
    days = sorted({parse_day(text) for text in dts})

    def body(layout: Layout, tt: TradeType, interval: Interval, ledger: EmptyDayLedger, summary: RunSummary) -> None:
        wanted = finished_days(days, interval, settings.now())
        unfinished = [d for d in days if d not in wanted]
        if unfinished:
            log.warning("%s: %s not finished yet (UTC); not fetched", symbol, day_list(unfinished))
            summary.skipped += len(unfinished)
            summary.notes["unfinished"] = len(unfinished)
        if wanted:
            sweep_temp_files(layout.api_kline_dir(tt, symbol, interval.text))
            asyncio.run(_fill(settings, layout, tt, interval, ledger, {symbol: wanted}, {}, summary, api,
                              invalid_is_failure=True))

    return _kline_run(settings, "api_data download-kline", trade_type, time_interval, body)


def _missing(settings: Settings, command: str, trade_type: TradeType, time_interval: str, symbols: list[str] | None,
             overwrite: bool, api: ApiOptions | None) -> RunSummary:
    def body(layout: Layout, tt: TradeType, interval: Interval, ledger: EmptyDayLedger, summary: RunSummary) -> None:
        names = symbols
        if names is not None:
            where = layout.aws_kline_symbols_dir(tt)
            check_listed(names, listed_locally(where, layout.parsed_kline_symbols_dir(tt), layout.api_kline_symbols_dir(tt)),
                         f"in the local archive {where}", "if it is new, run aws_kline download, verify and parse first")
        if names is None:
            root = layout.aws_kline_symbols_dir(tt)
            names = [s for s in list_subdirs(root) if (root / s / interval.text).is_dir()]
            if not names:
                log.warning("no local %s %s klines under %s: run aws_kline download first", tt.value, interval.text, root)
                summary.notes["symbols"] = 0
                return
        names = list(dict.fromkeys(names))
        summary.notes["symbols"] = len(names)
        coverages = _scan_stores(settings, layout, tt, names, interval, summary)
        plan = _plan(layout, tt, interval, coverages, ledger, settings.now(), overwrite)
        if plan.no_store:
            log.warning("no parsed %s %s klines for %s: run aws_kline parse first", tt.value, interval.text,
                        ", ".join(plan.no_store))
            summary.skipped += len(plan.no_store)
            summary.notes["no_parsed_data"] = len(plan.no_store)
        if plan.have_file:
            summary.notes["have_file"] = plan.have_file
        if plan.asked_recently:
            summary.notes["empty_recently"] = plan.asked_recently
        if not plan.holes and not plan.tails:
            summary.notes.update({"days": 0, "filled": 0, "empty": 0})
            log.info("%s %s: nothing missing", tt.value, interval.text)
            return
        for symbol in {*plan.holes, *plan.tails}:
            sweep_temp_files(layout.api_kline_dir(tt, symbol, interval.text))
        asyncio.run(_fill(settings, layout, tt, interval, ledger, plan.holes, plan.tails, summary, api,
                          invalid_is_failure=symbols is not None))

    return _kline_run(settings, command, trade_type, time_interval, body)


def download_aws_missing_kline_type(settings: Settings, *, trade_type, time_interval, overwrite,
                                    api: ApiOptions | None = None) -> RunSummary:
    """Missing days of every symbol with local archive klines of the interval."""
    return _missing(settings, "api_data download-aws-missing-kline-type", trade_type, time_interval, None, overwrite, api)


def download_aws_missing_kline(settings: Settings, *, trade_type, time_interval, symbols, overwrite,
                               api: ApiOptions | None = None) -> RunSummary:
    """Missing days of the given symbols."""
    return _missing(settings, "api_data download-aws-missing-kline", trade_type, time_interval, list(symbols), overwrite, api)


# =========================================================================================
# Funding
# =========================================================================================


def _archive_last_funding_ms(layout: Layout, trade_type: TradeType, symbol: str) -> int | None:
    """Time of the last settlement in the parsed archive funding, if it was parsed."""
    path = layout.parsed_funding_file(trade_type, symbol)
    if not path.exists():
        return None
    try:
        with open_parquet(path) as parquet:
            column = parquet.read(columns=["funding_time"]).column("funding_time")
        times = int64_values(column if column.type == PARSED_FUNDING_SCHEMA.field("funding_time").type
                             else column.cast(PARSED_FUNDING_SCHEMA.field("funding_time").type))
    except (OSError, KeyError, ValueError, pa.ArrowException) as exc:
        log.warning("cannot read %s (%s): fetching only the newest funding rates of %s", path, exc, symbol)
        return None
    return int(times.max()) if len(times) else None


async def _funding(settings: Settings, layout: Layout, trade_type: TradeType, symbols: list[str], summary: RunSummary,
                   api: ApiOptions | None, *, invalid_is_failure: bool) -> None:
    written, empty, invalid = 0, [], {}
    try:
        async with open_market(settings, trade_type, layout, options=api) as ms:
            workers = min(ms.workers, 8)
            queue = iter(symbols)
            stopped: list[MarketStopped] = []
            done: set[str] = set()

            async def one(symbol: str) -> None:
                nonlocal written
                try:
                    rows = await fetch_recent_funding(ms.client, symbol,
                                                      archive_last_ms=_archive_last_funding_ms(layout, trade_type, symbol))
                except InvalidSymbol as exc:
                    invalid[symbol] = exc.msg or str(exc)
                    log.warning("%s: Binance does not know this symbol (%s); skipping it", symbol, exc.msg)
                    return
                except ITEM_ERRORS as exc:
                    summary.fail(f"{symbol}: {exc}")
                    return
                try:
                    table = funding_to_table(rows)
                except (KeyError, ValueError, TypeError) as exc:  # an answer of the wrong shape
                    summary.fail(f"{symbol}: unexpected fundingRate answer ({type(exc).__name__}: {exc})")
                    return
                if table.num_rows == 0:
                    empty.append(symbol)  # e.g. a delivery contract: no funding; an older file is kept
                    return
                size = await asyncio.to_thread(write_table, table, layout.api_funding_file(trade_type, symbol))
                summary.bytes += size
                summary.rows += table.num_rows
                summary.files += 1
                written += 1

            with bar(total=len(symbols), desc=f"{trade_type.value} funding", unit="symbol") as progress:
                async def worker() -> None:
                    for symbol in queue:
                        if stopped:
                            return
                        try:
                            await one(symbol)
                        except MarketStopped as exc:
                            stopped.append(exc)
                            return
                        done.add(symbol)
                        progress.update()

                async with asyncio.TaskGroup() as group:
                    for _ in range(min(workers, len(symbols))):
                        group.create_task(worker())
            summary.notes.update({"symbols": len(symbols), "filled": written, "empty": len(empty)})
            if stopped:
                if stopped[0].status in (403, 451):
                    raise NetworkError(str(stopped[0]))
                summary.fail(f"{trade_type.value}: {stopped[0]}")
                for symbol in symbols:
                    if symbol not in done and symbol not in invalid:
                        summary.fail(f"{symbol}: not fetched (HTTP {stopped[0].status})")
            _market_notes(summary, ms)
            if "contract_sizes" in ms.notes:
                summary.notes["contract_sizes"] = ms.notes["contract_sizes"]
    except MarketStopped as exc:
        _stopped_before_start(exc, summary, len(symbols))
        return
    if empty:
        log.info("no funding rates for %s", ", ".join(empty))
    if invalid and invalid_is_failure:
        _refuse_unknown(layout, trade_type, invalid)
    for symbol, msg in sorted(invalid.items()):
        if invalid_is_failure:
            summary.fail(f"{symbol}: Binance does not know this symbol ({msg})")
        else:
            summary.skipped += 1
    if invalid and not invalid_is_failure:
        summary.notes["invalid_symbols"] = ",".join(sorted(invalid))


def _funding_run(settings: Settings, command: str, trade_type, symbols: list[str] | None,
                 api: ApiOptions | None) -> RunSummary:
    trade_type = _futures(TradeType(trade_type))
    layout = Layout(settings.data_dir)
    summary = RunSummary(command)
    with stage_lock(layout, lock_name("api", trade_type, FUNDING), settings.lock_timeout):
        names = symbols
        if names is None:
            names = list_subdirs(layout.aws_funding_symbols_dir(trade_type))
            if not names:
                log.warning("no local %s funding symbols under %s: run aws_funding download first",
                            trade_type.value, layout.aws_funding_symbols_dir(trade_type))
                summary.notes["symbols"] = 0
                return summary
        names = list(dict.fromkeys(names))
        sweep_temp_files(layout.api_funding_dir(trade_type))
        asyncio.run(_funding(settings, layout, trade_type, names, summary, api, invalid_is_failure=symbols is not None))
    return summary


def download_recent_funding(settings: Settings, *, trade_type, symbols, api: ApiOptions | None = None) -> RunSummary:
    """The newest funding rates (up to 1000, back to the archive's end) of the given symbols."""
    return _funding_run(settings, "api_data download-recent-funding", trade_type, list(symbols), api)


def download_recent_funding_type(settings: Settings, *, trade_type, api: ApiOptions | None = None) -> RunSummary:
    """The same for every symbol with local archive funding."""
    return _funding_run(settings, "api_data download-recent-funding-type", trade_type, None, api)

