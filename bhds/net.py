"""The HTTP session factory and the one retry policy shared by the archive and the REST client.

Retried: connection errors, timeouts, truncated bodies, 5xx, 429/403-SlowDown style answers
(raised as RetryableHTTPError). Not retried: anything the caller raises as final. Every retry is
bounded in attempts and in total time, logged at INFO with what is asked again and why, and the
last error is re-raised unchanged.

How long a silent server is waited for: a request fails when the server sends nothing for
`BHDS_HTTP_TIMEOUT` seconds (default 30; connecting gets at most 15 of them), and a server that
stays silent `RetryPolicy.silent_attempts` (3) times in a row is given up on, so a server that
accepts the connection and never answers costs about 3 × 30 s plus short waits, never minutes of
silence. REST calls also have a 30 s cap on the whole answer (`bhds.api.client`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt, stop_after_delay, wait_exponential_jitter

from bhds.settings import Settings

# Per request: connect quickly; the body may be slow but not silent for longer than the read
# timeout (settings.http_timeout, BHDS_HTTP_TIMEOUT).
CONNECT_TIMEOUT_S = 15
USER_AGENT = "bhds"

log = logging.getLogger("bhds.net")


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
    # A server that answered nothing (timed out) this many times in a row is given up on.
    silent_attempts: int = 3


DEFAULT_POLICY = RetryPolicy()


def _wait_with_retry_after(policy: RetryPolicy) -> Callable[[RetryCallState], float]:
    backoff = wait_exponential_jitter(multiplier=policy.initial_wait, max=policy.max_wait)

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RetryableHTTPError) and exc.retry_after is not None:
            return min(max(exc.retry_after, 0.0), policy.max_total)
        return backoff(state)

    return wait


def _silent(exc: BaseException | None) -> bool:
    """A timeout: the server accepted the request (or not even the connection) and said nothing."""
    return isinstance(exc, asyncio.TimeoutError)


def describe_failure(exc: BaseException) -> str:
    """Why an attempt failed, in a few words (a timeout's own text is often empty)."""
    if _silent(exc):
        return f"no answer in time ({str(exc).strip() or 'timeout'})"
    return str(exc).strip() or type(exc).__name__


def _what(exc: BaseException | None, default: str) -> str:
    url = getattr(exc, "url", None) or getattr(getattr(exc, "request_info", None), "real_url", None)
    return default or (str(url) if url else "a request")


def _stop(policy: RetryPolicy, silent_so_far: int = 0) -> Callable[[RetryCallState], bool]:
    ordinary = stop_after_attempt(policy.attempts) | stop_after_delay(policy.max_total)
    silent_in_a_row = silent_so_far

    def stop(state: RetryCallState) -> bool:
        nonlocal silent_in_a_row
        exc = state.outcome.exception() if state.outcome else None
        silent_in_a_row = silent_in_a_row + 1 if _silent(exc) else 0
        return silent_in_a_row >= policy.silent_attempts or ordinary(state)

    return stop


async def with_retries(
    call: Callable[[], Awaitable[object]],
    policy: RetryPolicy = DEFAULT_POLICY,
    *,
    retry_on: tuple[type[BaseException], ...] = TRANSIENT_ERRORS,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    before_sleep: Callable[[RetryCallState], None] | None = None,
    what: str = "",
    silent_so_far: int = 0,
    tries_before: int = 0,
):
    """Await `call()` until it succeeds or the policy gives up (then its last error propagates).

    `what` names the request in the INFO line logged before each retry (default: the failed
    URL when the error carries one). A caller that already tried on its own passes `tries_before`
    (for the numbering of the log) and `silent_so_far`, how many of those tries timed out in a row.
    """
    def log_and_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        log.info("%s: %s; asking again in %.1fs (try %d of at most %d)", _what(exc, what),
                 describe_failure(exc) if exc else "failed", wait, tries_before + state.attempt_number + 1,
                 tries_before + policy.attempts)
        if before_sleep is not None:
            before_sleep(state)

    retrying = AsyncRetrying(
        stop=_stop(policy, silent_so_far),
        wait=_wait_with_retry_after(policy),
        retry=retry_if_exception_type(retry_on),
        reraise=True,
        sleep=sleep,
        before_sleep=log_and_sleep,
    )
    return await retrying(call)


def make_session(settings: Settings, *, connections: int | None = None) -> aiohttp.ClientSession:
    """One session per run: bounded connections, per-request timeouts, the proxy from settings.

    The environment is not trusted implicitly: settings already resolved --http-proxy and the
    *_PROXY variables, so behaviour is the same under cron and in a shell.
    """
    limit = connections or settings.concurrency
    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=limit, ttl_dns_cache=300)
    silence = settings.http_timeout
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=min(CONNECT_TIMEOUT_S, silence), sock_read=silence)
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
