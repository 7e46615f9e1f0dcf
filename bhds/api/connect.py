"""Open one market for a run: session, limiter, client, and the live budget from exchangeInfo.

exchangeInfo is the first request, sent alone: its `rateLimits` give the budget and its
`X-MBX-USED-WEIGHT-1M` tells how much of the current window other runs already used, before
any task starts. For COIN-M its `contractSize`s are cached for `generate` (a failure there is
only a warning).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bhds.api.client import ApiError, BinanceClient, InvalidSymbol
from bhds.api.exchange_info import refresh_cm_contract_sizes, request_budget
from bhds.api.markets import UM_FUNDING_BUDGET, Market, market_for
from bhds.api.ratelimit import Budget, RateLimiter
from bhds.errors import BhdsError
from bhds.net import RetryableHTTPError, make_session
from bhds.paths import Layout
from bhds.settings import Settings
from bhds.types import TradeType

log = logging.getLogger("bhds.api.connect")

# Failures of exchangeInfo that only cost us the live budget (the defaults are used instead).
_SOFT_ERRORS = (ApiError, BhdsError, aiohttp.ClientError, asyncio.TimeoutError, RetryableHTTPError, ValueError)

# In-flight requests per market. Pacing, not this number, sets the request rate; it only has
# to cover the network's round trip at that rate. Kept low (Binance asks for "a few"), because
# every request already in flight when a 429 arrives lands inside the Retry-After window and
# counts toward an IP ban.
DEFAULT_WORKERS = 4


@dataclass(frozen=True)
class ApiOptions:
    """Knobs for tests and benchmarks; the CLI uses the defaults."""

    budget: Budget | None = None  # instead of exchangeInfo's rateLimits
    funding_budget: Budget | None = None  # USD-M fundingRate bucket (500 per 5 min)
    workers: int | None = None
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep


@dataclass
class MarketSession:
    """Everything a run needs to talk to one market."""

    market: Market
    client: BinanceClient
    workers: int
    notes: dict[str, Any] = field(default_factory=dict)
    server_time: tuple[int, float] | None = None  # exchangeInfo's serverTime (ms) and our monotonic clock then
    clock: Callable[[], float] = time.monotonic

    def server_now_ms(self) -> int | None:
        """Binance's clock now, from the serverTime it reported (None when it reported none)."""
        if self.server_time is None:
            return None
        reported, at = self.server_time
        return reported + int((self.clock() - at) * 1000)

    @property
    def limiter(self) -> RateLimiter:
        return self.client.limiter


def _limiter(budget: Budget, options: ApiOptions, name: str, **fractions: float) -> RateLimiter:
    return RateLimiter(budget, clock=options.clock, wall=options.wall, sleep=options.sleep, name=name, **fractions)


@contextlib.asynccontextmanager
async def open_market(settings: Settings, trade_type: TradeType, layout: Layout, *,
                      options: ApiOptions | None = None, probe_symbol: str | None = None) -> AsyncIterator[MarketSession]:
    """Yield a ready MarketSession; the HTTP session is closed on exit.

    `probe_symbol` narrows spot's exchangeInfo to one symbol (the full answer is megabytes).
    MarketStopped from the first request (ban, blocked region) propagates.
    """
    options = options or ApiOptions()
    market = market_for(settings, trade_type)
    workers = max(1, options.workers or min(settings.concurrency, DEFAULT_WORKERS))
    limiter = _limiter(options.budget or market.budget, options, f"{market.trade_type.value} API")
    funding_limiter = None
    if market.has_funding_bucket:
        # Half the bucket may go at once, the rest refills over the window: short runs are
        # instant, long ones never pass 95% of the 5-minute limit.
        funding_limiter = _limiter(options.funding_budget or UM_FUNDING_BUDGET, options, f"{market.trade_type.value} funding API",
                                   sustained=0.475, burst=0.475, ceiling=0.99)
    async with make_session(settings, connections=workers) as session:
        client = BinanceClient(session, market, limiter, funding_limiter=funding_limiter, sleep=options.sleep)
        ms = MarketSession(market, client, workers, clock=options.clock)
        info = None
        symbol = probe_symbol if market.trade_type is TradeType.spot else None
        default = f"the default budget of {market.budget.limit} weight per {market.budget.window_s:g}s"
        try:
            info = await client.exchange_info(symbol)
            if not isinstance(info, dict):
                raise ApiError(200, 0, "exchangeInfo is not a JSON object", market.url("exchangeInfo"))
        except InvalidSymbol:
            log.debug("spot exchangeInfo does not know %s; using %s", symbol, default)
        except _SOFT_ERRORS as exc:
            log.warning("exchangeInfo failed (%s); using %s", exc, default)
        if info is not None and isinstance(info.get("serverTime"), int):
            # Which bars have closed is Binance's call, not our clock's: a clock a few seconds
            # ahead would otherwise store the still-forming 23:59 bar just after midnight.
            ms.server_time = (info["serverTime"], options.clock())
        if info is not None and options.budget is None:
            budget = request_budget(info)
            if budget is not None:
                limiter.set_budget(budget)
        log.debug("%s budget: %d weight per %gs", market.trade_type.value, limiter.budget.limit, limiter.budget.window_s)
        if market.trade_type is TradeType.cm_futures:
            # The sizes are a side product: a problem here is a warning, never a failed run.
            try:
                if info is None:
                    raise ApiError(0, 0, "exchangeInfo failed", market.url("exchangeInfo"))
                ms.notes["contract_sizes"] = await refresh_cm_contract_sizes(client, layout, info)
            except _SOFT_ERRORS as exc:
                log.warning("COIN-M contract sizes not updated: %s", exc)
        yield ms
