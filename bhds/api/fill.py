"""Fetch whole UTC days of klines for many (symbol, day) pairs, within the market's budget.

A fixed pool of worker tasks takes pairs from one queue, so no pair is ever dropped: each ends
as written, empty (recorded in the ledger), failed (reported), skipped because its symbol is
invalid, or not fetched because the market stopped us (418/403/451) — and the caller is told
which. Files are written atomically off the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import aiohttp
import pyarrow as pa

from bhds.api.client import ApiError, BinanceClient, InvalidSymbol
from bhds.api.klines import day_start_ms, finish_day, plan_day, rows_to_table
from bhds.api.ledger import EmptyDayLedger
from bhds.api.ratelimit import MarketStopped
from bhds.errors import BhdsError
from bhds.net import RetryableHTTPError
from bhds.paths import Layout
from bhds.storage import write_table
from bhds.types import DAY_MS, Interval, TradeType

log = logging.getLogger("bhds.api.fill")

# Errors that end one item (after the client's retries) but not the run.
ITEM_ERRORS = (ApiError, aiohttp.ClientError, asyncio.TimeoutError, RetryableHTTPError, BhdsError)


@dataclass(frozen=True, order=True)
class DayJob:
    symbol: str
    day: date


@dataclass
class FillOutcome:
    """What happened to every pair handed to `KlineFiller.run`."""

    filled: list[DayJob] = field(default_factory=list)
    empty: list[DayJob] = field(default_factory=list)
    failed: list[tuple[DayJob, str]] = field(default_factory=list)
    invalid: dict[str, str] = field(default_factory=dict)  # symbol -> Binance's message
    skipped_invalid: list[DayJob] = field(default_factory=list)
    not_fetched: list[DayJob] = field(default_factory=list)  # the market stopped us first
    stopped: MarketStopped | None = None
    rows: int = 0
    bytes: int = 0


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if isinstance(exc, (ApiError, BhdsError)) else f"{type(exc).__name__}: {text}"


class KlineFiller:
    """Fetches and stores kline days of one market and interval."""

    def __init__(
        self,
        client: BinanceClient,
        layout: Layout,
        trade_type: TradeType,
        interval: Interval,
        ledger: EmptyDayLedger,
        now: datetime,
        *,
        workers: int = 8,
        on_done: Callable[[DayJob], None] | None = None,
    ) -> None:
        self.client = client
        self.layout = layout
        self.trade_type = TradeType(trade_type)
        self.interval = interval
        self.ledger = ledger
        self.now = now
        self.now_ms = int(now.timestamp() * 1000)
        self.workers = max(1, workers)
        self.on_done = on_done

    # ---- where a symbol's data ends ------------------------------------------------------
    async def probe_last_day(self, symbol: str, last_day: date) -> date | None:
        """Day of the symbol's most recent bar opening on or before `last_day` (None: no bar at all)."""
        end_ms = day_start_ms(last_day) + DAY_MS - 1
        row = await self.client.last_kline(symbol, self.interval.rest_name, end_ms)
        if row is None:
            return None
        opened = int(self._converted(rows_to_table, [row]).column(0)[0].value)
        return date(1970, 1, 1) + timedelta(days=opened // DAY_MS)

    async def trim_tails(self, tails: dict[str, list[date]], outcome: FillOutcome) -> dict[str, list[date]]:
        """Keep each symbol's tail days up to where its data ends (one request per symbol).

        Symbols with a tail too short for a probe to save anything keep it unprobed.
        """
        per_day = len(self._plan(date(2000, 1, 1)))
        kept: dict[str, list[date]] = {}
        to_probe = []
        for symbol, days in tails.items():
            if len(days) * per_day > 2:
                to_probe.append(symbol)
            elif days:
                kept[symbol] = days

        async def probe(symbol: str) -> None:
            days = tails[symbol]
            try:
                last = await self.probe_last_day(symbol, days[-1])
            except InvalidSymbol as exc:
                outcome.invalid[symbol] = exc.msg or str(exc)
                outcome.skipped_invalid.extend(DayJob(symbol, d) for d in days)  # counted, not forgotten
                return
            except ITEM_ERRORS as exc:
                # Without the probe, fetch the whole tail: nothing is lost, only requests.
                log.warning("%s: could not find where its data ends (%s); fetching all %d recent days",
                            symbol, _describe(exc), len(days))
                kept[symbol] = days
                return
            ends = [d for d in days if last is not None and d <= last]
            if len(ends) < len(days):
                log.info("%s: data ends %s; %d of %d recent days to fetch", symbol,
                         last.isoformat() if last else "before the archive's last day", len(ends), len(days))
            if ends:
                kept[symbol] = ends

        await self._run_pool(to_probe, probe, outcome)
        if outcome.stopped is not None:
            # Probes the stop cut off keep their whole tail, so those days are reported as not fetched.
            for symbol in to_probe:
                if symbol not in kept and symbol not in outcome.invalid:
                    kept[symbol] = tails[symbol]
        return kept

    # ---- one day ---------------------------------------------------------------------------
    async def fetch_day(self, job: DayJob) -> pa.Table:
        parts = []
        for window in self._plan(job.day):
            rows = await self.client.klines(job.symbol, self.interval.rest_name, window.start_ms, window.end_ms, window.limit)
            parts.append(self._converted(rows_to_table, rows))
        return finish_day(parts, job.day, self.interval, self.now_ms)

    def _plan(self, day: date) -> list:
        market = self.client.market
        return plan_day(day, self.interval, market.max_bars, market.kline_weight)

    def _converted(self, convert: Callable, rows: list) -> pa.Table:
        """`convert(rows)`; an answer of the wrong shape fails the item, not the run."""
        try:
            return convert(rows)
        except (ValueError, TypeError, IndexError, KeyError, pa.ArrowException) as exc:
            raise ApiError(200, 0, f"unexpected klines answer ({type(exc).__name__}: {exc})",
                           self.client.market.url("klines")) from exc

    async def _one(self, job: DayJob, outcome: FillOutcome) -> None:
        if job.symbol in outcome.invalid:
            outcome.skipped_invalid.append(job)
            return
        try:
            table = await self.fetch_day(job)
            if table.num_rows == 0:
                self.ledger.record_empty(job.symbol, job.day, self.now)
                outcome.empty.append(job)
                return
            path = self.layout.api_kline_day_file(self.trade_type, job.symbol, self.interval.text, job.day)
            size = await asyncio.to_thread(write_table, table, path)  # (`+=` across an await would race)
            outcome.bytes += size
            self.ledger.forget(job.symbol, [job.day])
            outcome.rows += table.num_rows
            outcome.filled.append(job)
        except InvalidSymbol as exc:
            if job.symbol not in outcome.invalid:
                log.warning("%s: Binance does not know this symbol (%s); skipping it", job.symbol, exc.msg)
                outcome.invalid[job.symbol] = exc.msg or str(exc)
            outcome.skipped_invalid.append(job)
        except ITEM_ERRORS as exc:
            outcome.failed.append((job, _describe(exc)))
            log.warning("%s %s: %s", job.symbol, job.day.isoformat(), _describe(exc))

    async def run(self, jobs: Iterable[DayJob], outcome: FillOutcome | None = None) -> FillOutcome:
        """Fetch every job; a stopped market leaves the rest in `outcome.not_fetched`."""
        outcome = outcome or FillOutcome()

        async def one(job: DayJob) -> None:
            await self._one(job, outcome)
            if self.on_done is not None:
                self.on_done(job)

        await self._run_pool(sorted(jobs), one, outcome)
        return outcome

    async def _run_pool(self, items: list, work: Callable, outcome: FillOutcome) -> None:
        queue = iter(items)
        done: set = set()

        async def worker() -> None:
            for item in queue:
                if outcome.stopped is not None:
                    return
                try:
                    await work(item)
                except MarketStopped as exc:
                    if outcome.stopped is None:
                        outcome.stopped = exc
                    return
                done.add(item)

        if items:
            # A bug in one worker cancels the others instead of leaving them running.
            async with asyncio.TaskGroup() as group:
                for _ in range(min(self.workers, len(items))):
                    group.create_task(worker())
        if outcome.stopped is not None:
            outcome.not_fetched.extend(i for i in items if isinstance(i, DayJob) and i not in done)
