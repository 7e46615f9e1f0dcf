"""REST calls to one Binance market and what their answers mean.

Every call takes its weight from the market's RateLimiter before it is sent and reports the
server's `X-MBX-USED-WEIGHT-*` back after. Transient trouble (5xx, 408, timeouts, dropped
connections) is retried through `bhds.net.with_retries`; a 429 waits for Retry-After via the
limiter and is asked again; 418 (ban) and 403/451 (blocked, restricted location) stop the whole
market; `-1121` (invalid symbol) is raised as InvalidSymbol for the caller to skip the symbol.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from bhds.api.markets import Market
from bhds.api.ratelimit import Budget, MarketStopped, RateLimiter
from bhds.net import DEFAULT_POLICY, RetryableHTTPError, RetryPolicy, retry_after_seconds, with_retries

log = logging.getLogger("bhds.api.client")

# A REST answer is small: besides the session's silence timeouts (BHDS_HTTP_TIMEOUT), the whole
# answer gets at most this long (or the silence timeout, if that is longer).
REQUEST_TOTAL_S = 30.0
# A 429 answered this many times in a row for one request means our pacing is not working:
# give the item up (reported) rather than walk into a ban.
MAX_429_IN_A_ROW = 6
INVALID_SYMBOL = -1121
INVALID_SYMBOL_STATUS = -1122


class ApiError(Exception):
    """Binance refused one request (a 4xx with a JSON error, or an unreadable answer)."""

    def __init__(self, status: int, code: int, msg: str, url: str) -> None:
        super().__init__(f"HTTP {status}, code {code}: {msg} ({url})")
        self.status, self.code, self.msg, self.url = status, code, msg, url


class InvalidSymbol(ApiError):
    """`-1121`: the market does not know this symbol (never listed, or delisted and removed)."""


@dataclass
class Counters:
    """Requests made and answers seen, for the run summary."""

    requests: int = 0
    rate_limited: int = 0  # 429 answers
    retried: int = 0  # transient failures retried


def _window_suffix(window_s: float) -> str:
    seconds = int(window_s)
    for unit, size in (("D", 86_400), ("H", 3_600), ("M", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}S"


def used_weight(headers: Any, budget: Budget) -> int | None:
    """The used weight the server reports for the budget's window (e.g. X-MBX-USED-WEIGHT-1M)."""
    raw = headers.get(f"X-MBX-USED-WEIGHT-{_window_suffix(budget.window_s)}")
    if raw is None:
        # Another window length than we expected: take the largest count reported.
        values = [v for k, v in headers.items() if k.upper().startswith("X-MBX-USED-WEIGHT-")]
        raw = max(values, key=lambda v: int(v) if str(v).isdigit() else -1) if values else None
    try:
        return int(raw) if raw is not None else None
    except (TypeError, ValueError):
        return None


def _error_fields(body: bytes) -> tuple[int, str]:
    try:
        data = json.loads(body)
        return int(data.get("code", 0)), str(data.get("msg", ""))
    except (ValueError, TypeError, AttributeError):
        return 0, body[:200].decode("utf-8", "replace").strip()


class BinanceClient:
    """One market's REST endpoints on a shared aiohttp session."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        market: Market,
        limiter: RateLimiter,
        *,
        funding_limiter: RateLimiter | None = None,
        policy: RetryPolicy = DEFAULT_POLICY,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.session = session
        self.market = market
        self.limiter = limiter
        self.funding_limiter = funding_limiter
        self.policy = policy
        self.sleep = sleep
        self.counters = Counters()

    # ---- endpoints -----------------------------------------------------------------------
    async def exchange_info(self, symbol: str | None = None) -> dict[str, Any]:
        params = {"symbol": symbol} if symbol else {}
        return await self.get_json("exchangeInfo", params, self.market.exchange_info_weight)

    async def klines(self, symbol: str, interval: str, start_ms: int, end_ms: int, limit: int) -> list[list[Any]]:
        """Bars with open time in [start_ms, end_ms] (both inclusive), at most `limit` of them."""
        params = {"symbol": symbol, "interval": interval, "startTime": start_ms, "endTime": end_ms, "limit": limit}
        try:
            data = await self.get_json("klines", params, self.market.kline_weight(limit))
        except ApiError as exc:
            if exc.code == INVALID_SYMBOL_STATUS:  # a symbol in a state without klines: no data
                return []
            raise
        return self._rows(data, "klines")

    async def last_kline(self, symbol: str, interval: str, end_ms: int) -> list[Any] | None:
        """The most recent bar opening at or before `end_ms`, or None if there is none."""
        params = {"symbol": symbol, "interval": interval, "endTime": end_ms, "limit": 1}
        try:
            rows = self._rows(await self.get_json("klines", params, self.market.kline_weight(1)), "klines")
        except ApiError as exc:
            if exc.code == INVALID_SYMBOL_STATUS:
                return None
            raise
        return rows[-1] if rows else None

    async def funding_rate(self, symbol: str, *, limit: int = 1000, start_ms: int | None = None,
                           end_ms: int | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"symbol": symbol, "limit": limit}
        if start_ms is not None:
            params["startTime"] = start_ms
        if end_ms is not None:
            params["endTime"] = end_ms
        data = await self.get_json("fundingRate", params, self.market.funding_weight, funding=True)
        return self._rows(data, "fundingRate")

    def _rows(self, data: Any, endpoint: str) -> list:
        if not isinstance(data, list):
            raise ApiError(200, 0, f"expected a JSON array from {endpoint}, got {type(data).__name__}", self.market.url(endpoint))
        return data

    # ---- mechanics -----------------------------------------------------------------------
    async def get_json(self, endpoint: str, params: dict[str, Any], weight: int, *, funding: bool = False) -> Any:
        """GET one endpoint within the budget; return its JSON or raise (see module doc)."""
        url = self.market.url(endpoint)
        in_a_row = 0
        while True:
            status, headers, body = await self._send_with_retries(url, params, weight, funding)
            if status == 429:
                in_a_row += 1
                self.counters.rate_limited += 1
                retry_after = retry_after_seconds(headers)
                self.limiter.back_off(retry_after, used_weight(headers, self.limiter.budget))
                if funding and self.funding_limiter is not None:
                    self.funding_limiter.back_off(retry_after)
                log.warning("%s answered 429 (too many requests); waiting %s and slowing down",
                            self.market.trade_type.value, f"{retry_after:g}s" if retry_after else "for the next window")
                if in_a_row >= MAX_429_IN_A_ROW:
                    code, msg = _error_fields(body)
                    raise ApiError(status, code, f"still rate-limited after {in_a_row} waits: {msg}", url)
                continue
            if status == 418:
                retry_after = retry_after_seconds(headers)
                until = f" for {retry_after:g}s" if retry_after else ""
                raise self._stop(MarketStopped(
                    f"Binance banned this IP{until} (HTTP 418) on {self.market.base_url}: stop all bhds API runs "
                    "and try again after the ban ends", status=418, retry_after=retry_after))
            if status in (403, 451):
                what = "from a restricted location (HTTP 451)" if status == 451 else "by Binance's firewall (HTTP 403)"
                raise self._stop(MarketStopped(
                    f"{self.market.base_url} refuses requests {what}: use --http-proxy (or HTTP_PROXY) with an "
                    "allowed location, or run from another network", status=status))
            if status >= 400:
                code, msg = _error_fields(body)
                cls = InvalidSymbol if code == INVALID_SYMBOL else ApiError
                raise cls(status, code, msg, url)
            try:
                return json.loads(body)
            except ValueError:
                raise ApiError(status, 0, "the answer is not JSON", url) from None

    def _stop(self, reason: MarketStopped) -> MarketStopped:
        self.limiter.stop(reason)
        if self.funding_limiter is not None:
            self.funding_limiter.stop(reason)
        return reason

    def _timeout(self) -> aiohttp.ClientTimeout:
        silence = self.session.timeout
        return aiohttp.ClientTimeout(total=max(REQUEST_TOTAL_S, silence.sock_read or 0), sock_connect=silence.sock_connect,
                                     sock_read=silence.sock_read)

    async def _send_with_retries(self, url: str, params: dict[str, Any], weight: int, funding: bool) -> tuple[int, Any, bytes]:
        async def attempt() -> tuple[int, Any, bytes]:
            if funding and self.funding_limiter is not None:
                await self.funding_limiter.acquire(1)
            ticket = await self.limiter.acquire(weight)
            self.counters.requests += 1
            async with self.session.get(url, params=params, timeout=self._timeout()) as resp:
                body = await resp.read()
                self.limiter.observe(ticket, used_weight(resp.headers, self.limiter.budget))
                # 408: the futures gateway timed out waiting for its backend (-1007), as transient as a 5xx.
                if resp.status >= 500 or resp.status == 408:
                    raise RetryableHTTPError(resp.status, url, retry_after_seconds(resp.headers), _error_fields(body)[1])
                return resp.status, resp.headers, body

        def before_sleep(state: Any) -> None:
            self.counters.retried += 1  # bhds.net logs the retry

        return await with_retries(attempt, self.policy, sleep=self.sleep, before_sleep=before_sleep, what=url)
