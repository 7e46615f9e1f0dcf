"""The weight limiter on a simulated clock: pacing, the per-window bound, 429 back-off, stops."""

from __future__ import annotations

import asyncio
from collections import defaultdict

import pytest

from bhds.api.client import used_weight
from bhds.api.exchange_info import request_budget
from bhds.api.ratelimit import Budget, MarketStopped, RateLimiter


class VirtualTime:
    """A clock that only moves when someone sleeps (the limiter holds its lock while sleeping)."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)


def limiter(budget: Budget, vt: VirtualTime, **kw) -> RateLimiter:
    return RateLimiter(budget, clock=vt.clock, wall=vt.clock, sleep=vt.sleep, **kw)


def run(coro):
    return asyncio.run(coro)


def per_window(grants: list[tuple[float, int]], window: float) -> dict[int, int]:
    used: dict[int, int] = defaultdict(int)
    for t, w in grants:
        used[int(t // window)] += w
    return used


def max_sliding(grants: list[tuple[float, int]], window: float) -> int:
    best, j, total = 0, 0, 0
    for i, (t, w) in enumerate(grants):
        total += w
        while grants[j][0] <= t - window:
            total -= grants[j][1]
            j += 1
        best = max(best, total)
    return best


@pytest.mark.parametrize("weight", [1, 2, 10])
def test_pacing_stays_under_the_budget_in_every_window_and_uses_most_of_it(weight):
    vt = VirtualTime()
    budget = Budget(2400, 60.0)
    lim = limiter(budget, vt)
    grants = []

    async def go():
        for _ in range(3000):
            await lim.acquire(weight)
            grants.append((vt.now, weight))

    run(go())
    fixed = per_window(grants, 60.0)
    assert max(fixed.values()) <= 0.99 * budget.limit
    assert max_sliding(grants, 60.0) <= 0.99 * budget.limit
    # Throughput over the whole run: at least 90 % of what the budget allows.
    elapsed = grants[-1][0] - grants[0][0]
    rate = sum(w for _, w in grants[1:]) / elapsed * 60.0
    assert rate >= 0.9 * budget.limit
    # Paced, not bursty: no second carries more than a few requests' worth.
    per_second = per_window(grants, 1.0)
    assert max(per_second.values()) <= 0.05 * budget.limit + 2 * 0.93 * budget.limit / 60 + weight


def test_concurrent_tasks_share_one_budget():
    vt = VirtualTime()
    lim = limiter(Budget(600, 10.0), vt)
    grants = []

    async def task():
        for _ in range(200):
            await lim.acquire(5)
            grants.append((vt.now, 5))

    async def go():
        await asyncio.gather(*(task() for _ in range(8)))

    run(go())
    assert len(grants) == 1600
    assert max(per_window(grants, 10.0).values()) <= 0.99 * 600
    assert lim.requests == 1600


def test_server_report_of_a_full_window_makes_us_wait_for_the_next():
    vt = VirtualTime(start=1_000.0)  # a window boundary: 1000 is a multiple of 10
    lim = limiter(Budget(100, 10.0), vt)

    async def go():
        ticket = await lim.acquire(1)
        lim.observe(ticket, 99)  # someone else on this IP used the window up
        start = vt.now
        await lim.acquire(1)
        return start, vt.now

    start, granted = run(go())
    assert granted >= 1_010.0  # the next window
    assert lim.peak_used == 99
    assert granted - start <= 10.0 + 0.2


def test_back_off_pauses_everyone_for_retry_after_and_slows_down():
    vt = VirtualTime()
    lim = limiter(Budget(1000, 10.0), vt)

    async def go():
        await lim.acquire(1)
        pace = lim.pace
        lim.back_off(3.0)
        lim.back_off(3.0)  # a second 429 of the same episode does not slow down again
        t0 = vt.now
        await lim.acquire(1)
        return pace, t0

    pace, t0 = run(go())
    assert vt.now >= t0 + 3.0
    assert lim.pace == pytest.approx(pace * 0.75)
    assert lim.backoffs == 1


def test_back_off_learns_a_lower_real_limit_from_the_429():
    vt = VirtualTime()
    lim = limiter(Budget(1000, 10.0), vt)
    lim.back_off(1.0, used=600)  # the server said no at 600: its limit is about 600
    assert lim.budget.limit == 600
    lim2 = limiter(Budget(1000, 10.0), vt)
    lim2.back_off(1.0, used=3)  # a 429 that is not about weight teaches nothing
    assert lim2.budget.limit == 1000


def test_a_stopped_market_refuses_every_request():
    vt = VirtualTime()
    lim = limiter(Budget(100, 10.0), vt)
    lim.stop(MarketStopped("banned", status=418, retry_after=120))

    async def go():
        await lim.acquire(1)

    with pytest.raises(MarketStopped, match="banned"):
        run(go())


def test_request_heavier_than_the_bucket_still_goes():
    vt = VirtualTime()
    lim = limiter(Budget(100, 10.0), vt)  # bucket of 2 weight, requests of 10

    async def go():
        for _ in range(20):
            await lim.acquire(10)

    run(go())
    assert lim.requests == 20


def test_budget_and_used_weight_come_from_the_server():
    info = {"rateLimits": [
        {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400},
        {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
        {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
    ]}
    assert request_budget(info) == Budget(2400, 60.0)
    assert request_budget({"rateLimits": []}) is None
    assert used_weight({"X-MBX-USED-WEIGHT-1M": "37"}, Budget(2400, 60.0)) == 37
    assert used_weight({"X-MBX-USED-WEIGHT-1M": "37"}, Budget(50, 2.0)) == 37  # another window: best effort
    assert used_weight({}, Budget(2400, 60.0)) is None


def test_waits_over_two_seconds_are_logged_with_what_is_waited_for(caplog: pytest.LogCaptureFixture):
    vt = VirtualTime(start=1_000.0)
    lim = limiter(Budget(100, 10.0), vt, name="um_futures API")

    async def go():
        ticket = await lim.acquire(1)
        lim.observe(ticket, 99)  # the window is used up: wait ~10 s for the next
        await lim.acquire(1)
        lim.back_off(5.0)  # a 429 with Retry-After 5
        await lim.acquire(1)
        lim.back_off(1.0)  # a short pause is not worth a line
        await lim.acquire(1)

    with caplog.at_level("INFO", logger="bhds.api"):
        run(go())
    lines = [r.getMessage() for r in caplog.records if r.levelname == "INFO"]
    assert len(lines) == 2, lines
    assert lines[0].startswith("um_futures API: waiting 10.") and "for the next 10s weight window (99 of 100 weight used)" in lines[0]
    assert lines[1] == "um_futures API: waiting 5.0s for the end of the pause the server asked for (HTTP 429)"
