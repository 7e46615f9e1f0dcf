"""The HTTP session factory and the one retry policy shared by the archive and the REST client.

Retried: connection errors, timeouts, truncated bodies, 5xx, 429/403-SlowDown style answers
(raised as RetryableHTTPError). Not retried: anything the caller raises as final. Every retry is
bounded in attempts and in total time, and the last error is re-raised unchanged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt, stop_after_delay, wait_exponential_jitter

from bhds.settings import Settings

# Per request: connect quickly, allow a slow but steady body.
CONNECT_TIMEOUT_S = 15
READ_TIMEOUT_S = 60
USER_AGENT = "bhds"


class RetryableHTTPError(Exception):
    """An HTTP answer worth asking again (5xx, 429, S3 SlowDown/AccessDenied blips)."""

    def __init__(self, status: int, url: str, retry_after: float | None = None, detail: str = "") -> None:
        super().__init__(f"HTTP {status} from {url}{': ' + detail if detail else ''}")
        self.status = status
        self.url = url
        self.retry_after = retry_after


TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (aiohttp.ClientError, asyncio.TimeoutError, RetryableHTTPError)


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: attempts, back-off bounds, and a cap on the total time spent retrying."""

    attempts: int = 6
    initial_wait: float = 0.5
    max_wait: float = 20.0
    max_total: float = 180.0


DEFAULT_POLICY = RetryPolicy()


def _wait_with_retry_after(policy: RetryPolicy) -> Callable[[RetryCallState], float]:
    backoff = wait_exponential_jitter(multiplier=policy.initial_wait, max=policy.max_wait)

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RetryableHTTPError) and exc.retry_after is not None:
            return min(max(exc.retry_after, 0.0), policy.max_total)
        return backoff(state)

    return wait


async def with_retries(
    call: Callable[[], Awaitable[object]],
    policy: RetryPolicy = DEFAULT_POLICY,
    *,
    retry_on: tuple[type[BaseException], ...] = TRANSIENT_ERRORS,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    before_sleep: Callable[[RetryCallState], None] | None = None,
):
    """Await `call()` until it succeeds or the policy gives up (then its last error propagates)."""
    retrying = AsyncRetrying(
        stop=stop_after_attempt(policy.attempts) | stop_after_delay(policy.max_total),
        wait=_wait_with_retry_after(policy),
        retry=retry_if_exception_type(retry_on),
        reraise=True,
        sleep=sleep,
        before_sleep=before_sleep,
    )
    return await retrying(call)


def make_session(settings: Settings, *, connections: int | None = None) -> aiohttp.ClientSession:
    """One session per run: bounded connections, per-request timeouts, the proxy from settings.

    The environment is not trusted implicitly: settings already resolved --http-proxy and the
    *_PROXY variables, so behaviour is the same under cron and in a shell.
    """
    limit = connections or settings.concurrency
    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=limit, ttl_dns_cache=300)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT_S, sock_read=READ_TIMEOUT_S)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        proxy=settings.http_proxy,
        headers={"User-Agent": USER_AGENT},
        trust_env=False,
    )


def retry_after_seconds(headers: "aiohttp.typedefs.LooseHeaders | dict[str, str]") -> float | None:
    """The Retry-After header in seconds, if it is a number."""
    raw = headers.get("Retry-After") if headers is not None else None
    if raw is None:
        return None
    try:
        return float(raw)
    except (TypeError, ValueError):
        return None
