"""A request-weight budget shared by every task talking to one Binance market.

Binance counts the weight an IP used in fixed windows (one minute for `X-MBX-USED-WEIGHT-1M`)
and answers 429, then bans with 418, when a window overflows. Three mechanisms keep us out:

* pacing: a token bucket refills at `sustained` x limit per window and holds at most `burst` x
  limit, so any window of that length (fixed or sliding) sees at most (sustained + burst) x limit
  of our weight, spread out instead of fired at the start of the minute;
* a ceiling: the weight counted in the current window (ours, raised to what the server reports
  after every response, which also covers other programs on the same IP) never passes
  `ceiling` x limit; when it would, we wait for the next window;
* back-off: a 429 pauses every task until Retry-After (or the next window) and slows the pace.

Clock and sleep are injected so tests run windows of simulated minutes in milliseconds.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

# Fraction of a window added after its end before we trust that the server rolled over too.
_BOUNDARY_GRACE = 0.01
# Each 429 cuts the pace by this factor, never below `_MIN_PACE` of the limit.
_SLOW_DOWN = 0.75
_MIN_PACE = 0.2
# Float noise in the refill must not turn into endless micro-sleeps.
_EPSILON = 1e-6
_MIN_SLEEP = 0.001
# Waits longer than this are logged at INFO, so a long pause never looks like a hang.
LOGGED_WAIT_S = 2.0

log = logging.getLogger("bhds.api")


@dataclass(frozen=True)
class Budget:
    """What the server allows: `limit` weight per `window_s` seconds."""

    limit: int
    window_s: float

    def __post_init__(self) -> None:
        if self.limit <= 0 or self.window_s <= 0:
            raise ValueError(f"a rate budget needs a positive limit and window, not {self}")


@dataclass(frozen=True)
class Ticket:
    """A granted request: its weight and the window it was sent in."""

    weight: int
    window: int


class MarketStopped(Exception):
    """The market refuses us (418 ban, 403/451 block): no further request may be sent."""

    def __init__(self, message: str, *, status: int, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class RateLimiter:
    """Paces the requests of one market under its budget; one instance for all of its tasks."""

    def __init__(
        self,
        budget: Budget,
        *,
        sustained: float = 0.93,
        burst: float = 0.05,
        ceiling: float = 0.99,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        name: str = "",
    ) -> None:
        self.name = name or "requests"  # for the log, e.g. "um_futures klines"
        self._fractions = (sustained, burst, ceiling)
        self._clock, self._wall, self._sleep = clock, wall, sleep
        self._apply(budget)
        self._lock = asyncio.Lock()
        self._tokens = self._capacity
        self._refilled_at = clock()
        self._window = self._window_id()
        self._window_used = 0.0
        self._pause_until = 0.0
        self._stopped: MarketStopped | None = None
        self.requests = 0
        self.peak_used = 0
        self.backoffs = 0

    def _apply(self, budget: Budget) -> None:
        sustained, burst, ceiling = self._fractions
        self.budget = budget
        self._rate = sustained * budget.limit / budget.window_s  # weight per second
        self._min_rate = _MIN_PACE * budget.limit / budget.window_s
        self._capacity = max(1.0, burst * budget.limit)
        self._ceiling = ceiling * budget.limit

    def set_budget(self, budget: Budget) -> None:
        """Adopt the budget the server announces (exchangeInfo `rateLimits`); counts carry over."""
        window_changed = budget.window_s != self.budget.window_s
        self._apply(budget)
        self._tokens = min(self._tokens, self._capacity)
        if window_changed:  # keep what was counted so far (conservative), under the new numbering
            self._window = self._window_id()

    # ---- windows -------------------------------------------------------------------------
    def _window_id(self) -> int:
        return math.floor(self._wall() / self.budget.window_s)

    def _roll(self) -> None:
        window = self._window_id()
        if window != self._window:
            self._window, self._window_used = window, 0.0

    def _until_next_window(self) -> float:
        next_start = (self._window_id() + 1) * self.budget.window_s
        return max(0.001, next_start - self._wall() + _BOUNDARY_GRACE * self.budget.window_s)

    # ---- granting ------------------------------------------------------------------------
    async def acquire(self, weight: int) -> Ticket:
        """Wait until a request of `weight` may be sent; raise MarketStopped if the market is shut."""
        async with self._lock:  # one waiter at a time: first come, first served
            while True:
                if self._stopped is not None:
                    raise self._stopped
                now = self._clock()
                if now < self._pause_until:
                    await self._wait(self._pause_until - now, "the end of the pause the server asked for (HTTP 429)")
                    continue
                self._roll()
                if self._window_used + weight > self._ceiling:
                    await self._wait(self._until_next_window(), f"the next {self.budget.window_s:g}s weight window "
                                     f"({self._window_used:.0f} of {self.budget.limit} weight used)")
                    continue
                self._tokens = min(self._capacity, self._tokens + (now - self._refilled_at) * self._rate)
                self._refilled_at = now
                # A request heavier than the whole bucket goes when the bucket is full.
                need = min(float(weight), self._capacity)
                if self._tokens < need - _EPSILON:
                    await self._wait(max(_MIN_SLEEP, (need - self._tokens) / self._rate),
                                     f"the pace of {self.pace:.0f} weight per {self.budget.window_s:g}s")
                    continue
                self._tokens -= weight
                self._window_used += weight
                self.requests += 1
                return Ticket(weight, self._window)

    async def _wait(self, seconds: float, why: str) -> None:
        if seconds > LOGGED_WAIT_S:
            log.info("%s: waiting %.1fs for %s", self.name, seconds, why)
        await self._sleep(seconds)

    def observe(self, ticket: Ticket, used: int | None) -> None:
        """Re-sync with the weight the server says this window has used (None: header absent)."""
        if used is None:
            return
        self.peak_used = max(self.peak_used, used)
        self._roll()
        # A report about an earlier window says nothing about this one.
        if ticket.window == self._window:
            self._window_used = max(self._window_used, float(used))

    def back_off(self, retry_after: float | None, used: int | None = None) -> None:
        """A 429: everyone waits until Retry-After (or the next window), then goes slower.

        `used` is the weight the 429 answer reports. When it is well into our budget, the
        server's real limit is about `used` (lower than we were told, or shared with another
        program on this IP): we adopt it, so the same window does not overflow again.
        """
        now = self._clock()
        wait = retry_after if retry_after is not None and retry_after > 0 else self._until_next_window()
        if now >= self._pause_until:  # one slow-down per episode, not one per in-flight request
            if used is not None and self.budget.limit * 0.5 <= used < self.budget.limit:
                self._apply(Budget(int(used), self.budget.window_s))
            self._rate = max(self._min_rate, self._rate * _SLOW_DOWN)
            self.backoffs += 1
        self._pause_until = max(self._pause_until, now + wait)
        self._tokens = 0.0
        self._refilled_at = now + wait

    def stop(self, reason: MarketStopped) -> None:
        """Refuse every further request of this market (a ban or a block)."""
        if self._stopped is None:
            self._stopped = reason

    @property
    def pace(self) -> float:
        """Current sustained pace in weight per window."""
        return self._rate * self.budget.window_s
