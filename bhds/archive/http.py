"""How the archive reads S3's answers: which statuses are worth asking again, which are final.

S3 (and the CloudFront in front of it) answers 404 for a key that is gone, 5xx/SlowDown for
overload and, in outages seen on this bucket, a transient 403 AccessDenied. The first is final,
the others go through the shared retry policy of `bhds.net`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import aiohttp

from bhds.net import TRANSIENT_ERRORS, RetryableHTTPError, RetryPolicy, describe_failure, retry_after_seconds, with_retries

T = TypeVar("T")
log = logging.getLogger("bhds.net")

# Answers retried besides 5xx: S3's transient AccessDenied, timeouts and throttling.
RETRYABLE_STATUSES = frozenset({403, 408, 429})


class NotPublished(Exception):
    """HTTP 404: the key is not (or no longer) published."""

    def __init__(self, url: str) -> None:
        super().__init__(f"HTTP 404 from {url}")
        self.url = url


class FinalHTTPError(Exception):
    """An HTTP answer that asking again will not change (400, 401, 405...)."""

    def __init__(self, status: int, url: str) -> None:
        super().__init__(f"HTTP {status} from {url}")
        self.status = status
        self.url = url


class IncompleteBody(Exception):
    """A body that ended early or does not hash to its CHECKSUM; fetched again."""


# What the archive retries: the shared transient set plus bodies that came back short.
RETRY_ON: tuple[type[BaseException], ...] = TRANSIENT_ERRORS + (IncompleteBody,)


def check_status(response: aiohttp.ClientResponse) -> None:
    """Return on 200; raise NotPublished, RetryableHTTPError or FinalHTTPError otherwise."""
    status = response.status
    if status == 200:
        return
    url = str(response.url)
    if status == 404:
        raise NotPublished(url)
    if status >= 500 or status in RETRYABLE_STATUSES:
        raise RetryableHTTPError(status, url, retry_after_seconds(response.headers))
    raise FinalHTTPError(status, url)


def describe(exc: BaseException) -> str:
    """A short reason for the summary: the exception's message, or its type when it has none."""
    text = str(exc).strip()
    return text if text else type(exc).__name__


async def with_archive_retries(attempt: Callable[[], Awaitable[T]], policy: RetryPolicy,
                               retry_on: tuple[type[BaseException], ...] = RETRY_ON, *, what: str = "") -> T:
    """`attempt()` once directly, then, if it failed transiently, under the shared retry policy.

    Setting up tenacity costs more CPU than fetching a small zip over a fast link, and almost
    every request succeeds at once; so only the retries go through it (one try fewer, after the
    policy's first wait or the server's Retry-After).
    """
    try:
        return await attempt()
    except retry_on as exc:
        if policy.attempts <= 1:
            raise
        retry_after = exc.retry_after if isinstance(exc, RetryableHTTPError) else None
        wait = min(retry_after, policy.max_total) if retry_after is not None else policy.initial_wait
        log.info("%s: %s; asking again in %.1fs (try 2 of at most %d)", what or getattr(exc, "url", "a request"),
                 describe_failure(exc), wait, policy.attempts)
        silent = int(isinstance(exc, asyncio.TimeoutError))
        await asyncio.sleep(wait)
    rest = dataclasses.replace(policy, attempts=policy.attempts - 1, max_total=max(0.0, policy.max_total - policy.initial_wait))
    return await with_retries(attempt, rest, retry_on=retry_on, what=what, silent_so_far=silent, tries_before=1)
