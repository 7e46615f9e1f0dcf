"""The fake Binance: an aiohttp app serving the archive bucket (S3 V1 listing + objects) and
the spot / USDⓈ-M / COIN-M REST endpoints, with fault switches and counters.

    fake = start_in_thread(root)            # a daemon thread with its own loop, free port
    fake.env                                # the four BHDS_* URLs
    fake.faults.error_rate = 0.1            # switch faults while it runs
    fake.stats.sent_429                     # what the server did
    fake.stop()
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import json
import math
import os
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.utils import formatdate
from pathlib import Path
from typing import Any, Callable
from xml.sax.saxutils import escape

import numpy as np
from aiohttp import web

from .archive import UNIVERSE_FILE, load_universe
from .series import (
    Bars,
    FundingRows,
    day_bars,
    format_columns,
    funding_rows,
    intervals_for,
)
from .universe import DAY_MS, PERPETUAL_DELIVERY_DATE, SymbolSpec, Universe, day_ms, ms_day

BUCKET = "data.binance.vision"
S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
REST_PREFIX = {"/api/": "spot", "/fapi/": "um", "/dapi/": "cm"}
KLINE_LIMIT = {"spot": (500, 1000), "um": (500, 1500), "cm": (500, 1500)}
DEFAULT_WEIGHT_BUDGET = {"spot": 6000, "um": 2400, "cm": 2400}
COINM_MAX_WINDOW_MS = 200 * DAY_MS
LEVERAGED_SUFFIXES = ("UP", "DOWN", "BULL", "BEAR")
LEVERAGED_EXCEPTIONS = ("JUP", "SYRUP")


# =========================================================================================
# Switches and counters
# =========================================================================================


@dataclass
class Faults:
    """Fault switches; mutable while the server runs. Random choices are seeded per URL and
    per attempt (the k-th request of a URL always gets the same fate), so runs reproduce."""

    seed: int = 0
    error_rate: float = 0.0  # share of 500/502/503 answers
    error_scope: str = "all"  # all | s3 | listing | files | rest
    fail_first: int = 0  # the first N requests of every URL (in error_scope) answer `fail_status`
    fail_status: int = 503  # e.g. 408, the futures gateway's "timeout waiting for the backend" (-1007)
    ban_at_kline: int = 0  # the Nth klines request answers 418 and bans the market (0: never)
    truncate_rate: float = 0.0  # share of object bodies cut short (full Content-Length, early close)
    latency: float = 0.0  # seconds added to every request
    silent: bool = False  # accept every request (in error_scope) and answer nothing until switched off
    weight_budget: dict[str, int] | int = field(default_factory=lambda: dict(DEFAULT_WEIGHT_BUDGET))
    weight_window: float = 60.0  # seconds; windows aligned to the clock like Binance's minute
    retry_after: int | None = None  # Retry-After sent with 429 (default: seconds to window end)
    throttle_rate: float = 0.0  # share of REST requests answered 429 (Retry-After 1 s) even under budget
    ban_after: int = 3  # requests during one active Retry-After beyond this many → 418
    ban_seconds: int = 120
    funding_budget: int = 500  # /fapi/v1/fundingRate requests per funding_window
    funding_window: float = 300.0
    funding_recent: int = 200  # fundingRate without start/end: at most this many, newest
    s3_error_xml: str | None = None  # listing answers 'AccessDenied' (403) or 'SlowDown' (503)
    s3_error_xml_files: bool = False  # ... and object GETs too
    rest_html: int | None = None  # REST answers an HTML page with this status (200, 502)
    status_override: dict[str, int] = field(default_factory=dict)  # path prefix → status
    page_size: int = 1000  # listing entries per page (S3: 1000)
    omit_next_marker: bool = False  # truncated listings without NextMarker

    def budget(self, market: str) -> int:
        if isinstance(self.weight_budget, int):
            return self.weight_budget
        return int(self.weight_budget.get(market, DEFAULT_WEIGHT_BUDGET[market]))


@dataclass
class Stats:
    """What the server did since start (or `reset()`)."""

    requests: Counter = field(default_factory=Counter)  # path → count
    status: Counter = field(default_factory=Counter)  # HTTP status → count
    weight_max: dict[str, int] = field(default_factory=dict)  # market → max used weight seen
    sent_429: int = 0
    sent_418: int = 0
    violations: int = 0
    sent_5xx: int = 0
    truncations: int = 0
    bytes_served: int = 0  # object body bytes written

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    def requests_under(self, prefix: str) -> int:
        return sum(n for p, n in self.requests.items() if p.startswith(prefix))

    def reset(self) -> None:
        self.__init__()  # type: ignore[misc]


@dataclass
class _Bucket:
    window_id: int = -1
    used: int = 0
    blocked_until: float = 0.0
    violations: int = 0


# =========================================================================================
# Helpers
# =========================================================================================


def _unit(seed: int, *parts: object) -> float:
    h = hashlib.blake2b(repr((seed,) + parts).encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") / 2.0 ** 64


def _iso_ms(ts: float) -> str:
    return datetime.fromtimestamp(int(ts), tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _s3_error(status: int, code: str, message: str, **extra: str) -> web.Response:
    body = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in extra.items())
    xml = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{escape(message)}'
           f"</Message>{body}<RequestId>FAKE0000000000</RequestId><HostId>fakebinance</HostId></Error>")
    return web.Response(status=status, body=xml.encode(), content_type="application/xml")


def _html(status: int) -> web.Response:
    title = {200: "Binance", 502: "502 Bad Gateway", 503: "503 Service Unavailable"}.get(status, f"{status} Error")
    page = (f"<!DOCTYPE html><html><head><title>{title}</title></head><body><h1>{title}</h1>"
            "<p>Generated by cloudfront (CloudFront)</p></body></html>")
    return web.Response(status=status, text=page, content_type="text/html")


class _ApiError(Exception):
    def __init__(self, status: int, code: int, msg: str):
        super().__init__(msg)
        self.status, self.code, self.msg = status, code, msg


def _int_param(q, name: str) -> int | None:
    raw = q.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise _ApiError(400, -1100, f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'.") from None


def _need(q, name: str) -> str:
    v = q.get(name)
    if not v:
        raise _ApiError(400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")
    return v


def _kline_weight(limit: int) -> int:
    if limit < 100:
        return 1
    if limit < 500:
        return 2
    if limit <= 1000:
        return 5
    return 10


# =========================================================================================
# The application
# =========================================================================================


class FakeBinance:
    """aiohttp application over an archive directory (which holds `universe.json`)."""

    def __init__(self, root: Path | str, *, faults: Faults | None = None, now_ms: int | None = None,
                 universe: Universe | None = None, clock: Callable[[], float] = time.time):
        self.root = Path(root).resolve()
        self.universe = universe if universe is not None else load_universe(self.root)
        self.now_ms = int(now_ms if now_ms is not None else self.universe.now_ms)
        self.faults = faults if faults is not None else Faults()
        self.stats = Stats()
        self.clock = clock
        self.extra_keys: dict[str, tuple[bytes, float]] = {}
        self._md5: dict[str, tuple[int, int, str]] = {}
        self._attempts: Counter = Counter()
        self._buckets: dict[str, _Bucket] = {}
        self._banned_until: dict[str, float] = {}
        self._klines_seen = 0
        self.app = web.Application(middlewares=[self._middleware])
        self.app.router.add_get(f"/{BUCKET}", self._list)
        self.app.router.add_get(f"/{BUCKET}/", self._list)
        self.app.router.add_get(f"/{BUCKET}/{{key:.+}}", self._object)
        for market, base in (("spot", "/api/v3"), ("um", "/fapi/v1"), ("cm", "/dapi/v1")):
            self.app.router.add_get(f"{base}/klines", self._handler(self._klines, market))
            self.app.router.add_get(f"{base}/exchangeInfo", self._handler(self._exchange_info, market))
            self.app.router.add_get(f"{base}/time", self._handler(self._time, market))
            self.app.router.add_get(f"{base}/ping", self._handler(self._ping, market))
            if market != "spot":
                self.app.router.add_get(f"{base}/fundingRate", self._handler(self._funding, market))

    # ---- bucket contents helpers ---------------------------------------------------------
    def add_dummy_keys(self, prefix: str, n: int, *, name: str = "DUMMY{i:06d}.zip", size: int = 16) -> list[str]:
        """Register n in-memory objects `prefix + name.format(i=i)` (listed and served)."""
        keys = []
        stamp = float(int(self.clock()))
        for i in range(n):
            key = prefix + name.format(i=i)
            self.extra_keys[key] = ((key.encode() * (size // max(1, len(key)) + 1))[:size], stamp)
            keys.append(key)
        return keys

    def _md5_of(self, path: str, st: os.stat_result) -> str:
        cached = self._md5.get(path)
        if cached and cached[0] == st.st_mtime_ns and cached[1] == st.st_size:
            return cached[2]
        with open(path, "rb") as f:
            digest = hashlib.md5(f.read()).hexdigest()
        self._md5[path] = (st.st_mtime_ns, st.st_size, digest)
        return digest

    def _key_path(self, key: str) -> Path | None:
        parts = key.split("/")
        if any(p in ("", ".", "..") for p in parts) or key == UNIVERSE_FILE:
            return None
        return self.root.joinpath(*parts)

    @staticmethod
    def _hidden(name: str) -> bool:
        return name.startswith(".") or ".tmp" in name

    def _has_files(self, path: str) -> bool:
        for _dirpath, _dirs, files in os.walk(path):
            if any(not self._hidden(f) for f in files):
                return True
        return False

    def _entries(self, prefix: str, delimiter: str) -> dict[str, Any]:
        """name → None (common prefix) | ('file', path) | ('extra', key) under prefix."""
        out: dict[str, Any] = {}
        dir_part, _, name_part = prefix.rpartition("/")
        base = self._key_path(dir_part) if dir_part else self.root
        if base is not None and base.is_dir():
            with os.scandir(base) as it:
                for e in it:
                    if not e.name.startswith(name_part) or self._hidden(e.name):
                        continue
                    key = f"{dir_part}/{e.name}" if dir_part else e.name
                    if key == UNIVERSE_FILE:
                        continue
                    if e.is_dir():
                        if delimiter == "/":
                            if self._has_files(e.path):
                                out[key + "/"] = None
                        else:
                            for dirpath, _dirs, files in os.walk(e.path):
                                rel = os.path.relpath(dirpath, self.root).replace(os.sep, "/")
                                for f in files:
                                    if not self._hidden(f):
                                        self._roll_up(out, prefix, delimiter, f"{rel}/{f}",
                                                      ("file", os.path.join(dirpath, f)))
                    else:
                        self._roll_up(out, prefix, delimiter, key, ("file", e.path))
        for key in self.extra_keys:
            if key.startswith(prefix):
                self._roll_up(out, prefix, delimiter, key, ("extra", key))
        return out

    @staticmethod
    def _roll_up(out: dict[str, Any], prefix: str, delimiter: str, key: str, item: Any) -> None:
        rest = key[len(prefix):]
        if delimiter and delimiter in rest:
            out[prefix + rest[: rest.index(delimiter) + len(delimiter)]] = None
        else:
            out[key] = item

    # ---- middleware: stats, latency, faults, weights -------------------------------------
    def _scope_of(self, request: web.Request) -> str:
        p = request.path
        if p == f"/{BUCKET}" or p == f"/{BUCKET}/":
            return "listing"
        if p.startswith(f"/{BUCKET}/"):
            return "files"
        return "rest"

    def _in_scope(self, scope: str) -> bool:
        want = self.faults.error_scope
        return want == "all" or want == scope or (want == "s3" and scope in ("listing", "files"))

    @staticmethod
    def _market_of(path: str) -> str | None:
        for prefix, market in REST_PREFIX.items():
            if path.startswith(prefix):
                return market
        return None

    @web.middleware
    async def _middleware(self, request: web.Request, handler):
        self.stats.requests[request.path] += 1
        try:
            resp = await self._dispatch(request, handler)
        except web.HTTPException as e:  # unknown paths and the like
            resp = web.Response(status=e.status, text=e.text or e.reason)
        market = self._market_of(request.path)
        if (market is not None and "X-MBX-USED-WEIGHT-1M" not in resp.headers and not resp.prepared
                and not (resp.content_type or "").startswith("text/html")):
            self._with_weight(resp, market)
        self.stats.status[resp.status] += 1
        if resp.status >= 500:
            self.stats.sent_5xx += 1
        return resp

    async def _dispatch(self, request: web.Request, handler) -> web.StreamResponse:
        f = self.faults
        if f.latency > 0:
            await asyncio.sleep(f.latency)
        scope = self._scope_of(request)
        while f.silent and self._in_scope(scope):
            await asyncio.sleep(0.05)  # connection open, not a byte sent: the client must give up on its own
        market = self._market_of(request.path)
        attempt_key = request.path_qs
        self._attempts[attempt_key] += 1
        attempt = self._attempts[attempt_key]

        for prefix, status in f.status_override.items():
            if request.path.startswith(prefix):
                return self._forced(status, scope, market)

        if market is not None:
            banned = self._banned_until.get(market, 0.0)
            now = self.clock()
            if now < banned:
                return self._ban_response(market, banned - now)

        if self._in_scope(scope):
            if attempt <= f.fail_first:
                return self._server_error(f.fail_status, scope, market)
            if f.error_rate > 0 and _unit(f.seed, "error", attempt_key, attempt) < f.error_rate:
                status = (500, 502, 503)[int(_unit(f.seed, "which", attempt_key, attempt) * 3)]
                return self._server_error(status, scope, market)

        if market is not None and f.rest_html is not None:
            return self._with_weight(_html(f.rest_html), market)
        if f.s3_error_xml and (scope == "listing" or (scope == "files" and f.s3_error_xml_files)):
            if f.s3_error_xml == "SlowDown":
                return _s3_error(503, "SlowDown", "Please reduce your request rate.")
            return _s3_error(403, f.s3_error_xml, "Access Denied")

        if market is not None:
            limited = self._charge(request, market)
            if limited is not None:
                return limited
        resp = await handler(request)
        if market is not None:
            self._with_weight(resp, market)
        return resp

    def _forced(self, status: int, scope: str, market: str | None) -> web.StreamResponse:
        if status == 418 and market:
            return self._ban_response(market, float(self.faults.ban_seconds), count=True)
        if status >= 500:
            return self._server_error(status, scope, market)
        if scope != "rest":
            code = {403: "AccessDenied", 404: "NoSuchKey"}.get(status, "Forced")
            return _s3_error(status, code, "Access Denied" if status == 403 else f"forced {status}")
        msg = {451: "Service unavailable from a restricted location according to 'b. Eligibility' in "
                    "https://www.binance.com/en/terms. Please contact customer service if you believe you "
                    "received this message in error.",
               403: "Forbidden", 429: "Too many requests."}.get(status, f"forced {status}")
        resp = web.json_response({"code": 0 if status != 429 else -1003, "msg": msg}, status=status)
        if status == 429:
            self.stats.sent_429 += 1
            resp.headers["Retry-After"] = str(self.faults.retry_after or 1)
        return self._with_weight(resp, market) if market else resp

    def _server_error(self, status: int, scope: str, market: str | None) -> web.StreamResponse:
        if status == 502:
            return _html(502)
        if scope != "rest":
            if status == 503:
                return _s3_error(503, "ServiceUnavailable", "Service is unable to handle request.")
            return _s3_error(status, "InternalError", "We encountered an internal error. Please try again.")
        if status == 503:
            return web.json_response({"code": -1008, "msg": "Service Unavailable."}, status=503)
        if status == 408:
            return web.json_response({"code": -1007, "msg": "Timeout waiting for response from backend server. "
                                      "Send status unknown; execution status unknown."}, status=408)
        return web.json_response({"code": -1000, "msg": "An unknown error occurred while processing the request."},
                                 status=status)

    def _ban_response(self, market: str, seconds: float, count: bool = True) -> web.Response:
        until_ms = int((self.clock() + seconds) * 1000)
        resp = web.json_response({"code": -1003, "msg": f"Way too much request weight used; IP banned until {until_ms}. "
                                  "Please use WebSocket Streams for live updates to avoid bans."}, status=418)
        resp.headers["Retry-After"] = str(max(1, math.ceil(seconds)))
        if count:
            self.stats.sent_418 += 1
        return self._with_weight(resp, market)

    def _weight_of(self, request: web.Request, market: str) -> tuple[int, bool]:
        """(weight, counts against the funding bucket)."""
        path = request.path
        if path.endswith("/klines"):
            if market == "spot":
                return 2, False
            try:
                limit = int(request.query.get("limit") or KLINE_LIMIT[market][0])
            except ValueError:
                limit = KLINE_LIMIT[market][0]
            return _kline_weight(limit), False
        if path.endswith("/exchangeInfo"):
            return (20 if market == "spot" else 1), False
        if path.endswith("/fundingRate"):
            return (0, True) if market == "um" else (1, False)
        return 1, False

    def _bucket(self, name: str, window: float, now: float) -> _Bucket:
        b = self._buckets.setdefault(name, _Bucket())
        wid = int(now // window)
        if b.window_id != wid:
            b.window_id, b.used = wid, 0
        return b

    def _charge(self, request: web.Request, market: str) -> web.StreamResponse | None:
        f = self.faults
        now = self.clock()
        if f.ban_at_kline and request.path.endswith("/klines"):
            self._klines_seen += 1
            if self._klines_seen == f.ban_at_kline:
                self._banned_until[market] = now + f.ban_seconds
                return self._ban_response(market, float(f.ban_seconds))
        weight, funding = self._weight_of(request, market)
        checks = [(market, f.weight_window, f.budget(market), weight)]
        if funding:
            checks.append((market + ":funding", f.funding_window, f.funding_budget, 1))
        for name, window, budget, cost in checks:
            b = self._bucket(name, window, now)
            if now < b.blocked_until:
                b.violations += 1
                self.stats.violations += 1
                if b.violations > f.ban_after:
                    b.violations = 0
                    self._banned_until[market] = now + f.ban_seconds
                    return self._ban_response(market, float(f.ban_seconds))
                return self._too_many(market, b.blocked_until - now)
            if name == market and f.throttle_rate > 0:
                key = request.path_qs
                if _unit(f.seed, "throttle", key, self._attempts[key]) < f.throttle_rate:
                    # A transient throttle (Binance's WAF does this under load): the whole market
                    # is blocked for Retry-After, exactly like a budget overrun.
                    retry = max(1, int(f.retry_after or 1))
                    b.blocked_until, b.violations = now + retry, 0
                    return self._too_many(market, float(retry))
            if cost and b.used + cost > budget:
                retry = f.retry_after if f.retry_after is not None else math.ceil((b.window_id + 1) * window - now)
                retry = max(1, int(retry))
                # Violations are counted per blocked period: a client that backs off is forgiven.
                b.blocked_until, b.violations = now + retry, 0
                return self._too_many(market, float(retry))
        for name, window, _budget, cost in checks:
            self._buckets[name].used += cost
        used = self._buckets[market].used
        self.stats.weight_max[market] = max(self.stats.weight_max.get(market, 0), used)
        return None

    def _too_many(self, market: str, seconds: float) -> web.Response:
        self.stats.sent_429 += 1
        resp = web.json_response({"code": -1003, "msg": "Too many requests; current limit of IP is "
                                  f"{self.faults.budget(market)} requests per minute. Please use WebSocket Streams "
                                  "for live updates to avoid polling the API."}, status=429)
        resp.headers["Retry-After"] = str(max(1, math.ceil(seconds)))
        return self._with_weight(resp, market)

    def _with_weight(self, resp: web.StreamResponse, market: str) -> web.StreamResponse:
        b = self._bucket(market, self.faults.weight_window, self.clock())
        resp.headers["X-MBX-USED-WEIGHT-1M"] = str(b.used)
        if market == "spot":
            resp.headers["X-MBX-USED-WEIGHT"] = str(b.used)
        return resp

    # ---- S3 ------------------------------------------------------------------------------
    async def _list(self, request: web.Request) -> web.Response:
        q = request.query
        prefix = q.get("prefix", "")
        delimiter = q.get("delimiter", "")
        marker = q.get("marker", "")
        try:
            max_keys = int(q.get("max-keys", "1000"))
        except ValueError:
            return _s3_error(400, "InvalidArgument", "Provided max-keys not an integer or within integer range")
        max_keys = max(0, min(max_keys, 1000))
        entries = self._entries(prefix, delimiter)
        names = sorted(entries, key=lambda s: s.encode())
        encoded = [n.encode() for n in names]
        start = bisect.bisect_right(encoded, marker.encode()) if marker else 0
        page_n = min(max_keys, max(1, self.faults.page_size))
        page = names[start:start + page_n]
        truncated = start + page_n < len(names)
        parts = [f'<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="{S3_NS}">',
                 f"<Name>{BUCKET}</Name><Prefix>{escape(prefix)}</Prefix><Marker>{escape(marker)}</Marker>"]
        if truncated and delimiter and page and not self.faults.omit_next_marker:
            parts.append(f"<NextMarker>{escape(page[-1])}</NextMarker>")
        parts.append(f"<MaxKeys>{max_keys}</MaxKeys>")
        if delimiter:
            parts.append(f"<Delimiter>{escape(delimiter)}</Delimiter>")
        parts.append(f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>")
        prefixes = []
        for name in page:
            item = entries[name]
            if item is None:
                prefixes.append(f"<CommonPrefixes><Prefix>{escape(name)}</Prefix></CommonPrefixes>")
                continue
            if item[0] == "extra":
                data, stamp = self.extra_keys[item[1]]
                size, mtime, etag = len(data), stamp, hashlib.md5(data).hexdigest()
            else:
                try:
                    st = os.stat(item[1])
                except FileNotFoundError:
                    continue
                size, mtime, etag = st.st_size, st.st_mtime, self._md5_of(item[1], st)
            parts.append(f"<Contents><Key>{escape(name)}</Key><LastModified>{_iso_ms(mtime)}</LastModified>"
                         f"<ETag>&quot;{etag}&quot;</ETag><Size>{size}</Size>"
                         "<StorageClass>STANDARD</StorageClass></Contents>")
        parts.extend(prefixes)
        parts.append("</ListBucketResult>")
        return web.Response(body="".join(parts).encode(), content_type="application/xml")

    async def _object(self, request: web.Request) -> web.StreamResponse:
        key = request.match_info["key"]
        if key in self.extra_keys:
            data, mtime = self.extra_keys[key]
        else:
            path = self._key_path(key)
            try:
                if path is None or self._hidden(path.name):
                    raise FileNotFoundError
                data = path.read_bytes()
                mtime = path.stat().st_mtime
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                return _s3_error(404, "NoSuchKey", "The specified key does not exist.", Key=key)
        headers = {
            "ETag": f'"{hashlib.md5(data).hexdigest()}"',
            "Last-Modified": formatdate(mtime, usegmt=True),
            "Accept-Ranges": "bytes",
            "Content-Type": "application/zip" if key.endswith(".zip") else "binary/octet-stream",
            "Server": "AmazonS3",
        }
        status = 200
        body = data
        rng = request.headers.get("Range", "")
        if rng.startswith("bytes="):
            try:
                a, _, b = rng[6:].split(",")[0].partition("-")
                if a == "":
                    first, last = max(0, len(data) - int(b)), len(data) - 1
                else:
                    first, last = int(a), (int(b) if b else len(data) - 1)
                last = min(last, len(data) - 1)
                if first > last:
                    raise ValueError
            except ValueError:
                resp = _s3_error(416, "InvalidRange", "The requested range is not satisfiable")
                resp.headers["Content-Range"] = f"bytes */{len(data)}"
                return resp
            status, body = 206, data[first:last + 1]
            headers["Content-Range"] = f"bytes {first}-{last}/{len(data)}"
        f = self.faults
        attempt = self._attempts[request.path_qs]
        if (request.method == "GET" and f.truncate_rate > 0 and len(body) > 1
                and _unit(f.seed, "truncate", request.path_qs, attempt) < f.truncate_rate):
            return await self._truncated(request, status, headers, body)
        if request.method == "GET":
            self.stats.bytes_served += len(body)
        return web.Response(status=status, body=body, headers=headers)

    async def _truncated(self, request: web.Request, status: int, headers: dict, body: bytes) -> web.StreamResponse:
        """Announce the full Content-Length, send part of it, then drop the connection."""
        resp = web.StreamResponse(status=status, headers=headers)
        resp.content_length = len(body)
        await resp.prepare(request)
        cut = max(1, len(body) // 3)
        await resp.write(body[:cut])
        self.stats.truncations += 1
        self.stats.bytes_served += cut
        if request.transport is not None:
            request.transport.close()
        return resp

    # ---- REST ----------------------------------------------------------------------------
    def _handler(self, fn, market: str):
        async def handle(request: web.Request) -> web.StreamResponse:
            try:
                payload = fn(request, market)
            except _ApiError as e:
                return web.json_response({"code": e.code, "msg": e.msg}, status=e.status)
            return web.json_response(payload, dumps=lambda o: json.dumps(o, separators=(",", ":")))
        return handle

    def _spec(self, market: str, symbol: str) -> SymbolSpec:
        spec = self.universe.get(market, symbol)
        if spec is None or spec.start_ms > self.now_ms:
            raise _ApiError(400, -1121, "Invalid symbol.")
        return spec

    def _time(self, request: web.Request, market: str) -> dict:
        return {"serverTime": self.now_ms}

    def _ping(self, request: web.Request, market: str) -> dict:
        return {}

    # klines --------------------------------------------------------------------------------
    def _klines(self, request: web.Request, market: str) -> list:
        q = request.query
        symbol = _need(q, "symbol")
        interval = _need(q, "interval")
        start = _int_param(q, "startTime")
        end = _int_param(q, "endTime")
        limit = _int_param(q, "limit")
        spec = self._spec(market, symbol)
        if interval not in intervals_for(market):
            raise _ApiError(400, -1120, "Invalid interval.")
        default, most = KLINE_LIMIT[market]
        limit = default if limit is None else limit
        if limit < 1 or limit > most:
            raise _ApiError(400, -1130, "Data sent for parameter 'limit' is not valid.")
        if market == "spot":  # spot accepts microseconds too
            start = start // 1000 if start is not None and start >= 10 ** 14 else start
            end = end // 1000 if end is not None and end >= 10 ** 14 else end
        if start is not None and end is not None and start > end:
            raise _ApiError(400, -1023, "Start time is greater than end time.")
        if market == "cm":
            if start is not None and end is not None and end - start > COINM_MAX_WINDOW_MS:
                raise _ApiError(400, -1127, "More than 200 days between startTime and endTime.")
            if start is not None and end is None:
                end = start + COINM_MAX_WINDOW_MS
            elif end is not None and start is None:
                start = end - COINM_MAX_WINDOW_MS
            newest = True
        else:
            newest = start is None
        lo = start if start is not None else 0
        hi = end if end is not None else self.now_ms
        bars = self._collect(spec, interval, lo, hi, limit, newest)
        return self._kline_rows(spec, bars)

    def _collect(self, spec: SymbolSpec, interval: str, lo: int, hi: int, limit: int, newest: bool):
        """Up to `limit` bars with lo <= open_time <= hi (the newest ones if `newest`)."""
        now = self.now_ms
        lo = max(lo, spec.start_ms - spec.start_ms % DAY_MS)
        hi = min(hi, now, spec.end_ms - 1)
        if lo > hi:
            return []
        days = []
        d0, d1 = ms_day(lo), ms_day(hi)
        n_days = (d1 - d0).days + 1
        order = range(n_days - 1, -1, -1) if newest else range(n_days)
        got = 0
        for k in order:
            d = d0 + timedelta(days=k)
            b = day_bars(spec, interval, d, now_ms=now)
            if len(b) == 0:
                continue
            if b.open_time[0] < lo or b.open_time[-1] > hi:
                b = b.take(np.flatnonzero((b.open_time >= lo) & (b.open_time <= hi)))
            if len(b):
                days.append(b)
                got += len(b)
            if got >= limit:
                break
        if newest:
            days.reverse()
        if not days:
            return []
        bars = Bars.concat(days, spec)
        return bars.take(slice(len(bars) - limit, None)) if newest else bars.take(slice(0, limit))

    @staticmethod
    def _kline_rows(spec: SymbolSpec, bars) -> list:
        if not len(bars):
            return []
        spot = spec.market == "spot"
        pd = 8 if spot else bars.price_dec
        qd = 8 if spot else bars.qty_dec
        qq = 8 if spot else bars.quote_dec
        o, h, lo, c, v, qv, tb, tq = (a.to_pylist() for a in format_columns([
            (bars.open, bars.price_dec, pd), (bars.high, bars.price_dec, pd), (bars.low, bars.price_dec, pd),
            (bars.close, bars.price_dec, pd), (bars.volume, bars.qty_dec, qd),
            (bars.quote_volume, bars.quote_dec, qq), (bars.taker_buy_volume, bars.qty_dec, qd),
            (bars.taker_buy_quote_volume, bars.quote_dec, qq)]))
        ot = bars.open_time.tolist()
        ct = bars.close_time.tolist()
        n = bars.count.tolist()
        return [[ot[i], o[i], h[i], lo[i], c[i], v[i], ct[i], qv[i], n[i], tb[i], tq[i], "0"] for i in range(len(ot))]

    # funding -------------------------------------------------------------------------------
    def _funding(self, request: web.Request, market: str) -> list:
        q = request.query
        symbol = q.get("symbol") or None
        if market == "cm" and symbol is None:
            _need(q, "symbol")
        start = _int_param(q, "startTime")
        end = _int_param(q, "endTime")
        limit = _int_param(q, "limit")
        limit = 100 if limit is None else limit
        if limit < 1 or limit > 1000:
            raise _ApiError(400, -1130, "Data sent for parameter 'limit' is not valid.")
        if start is not None and end is not None and start > end:
            raise _ApiError(400, -1023, "Start time is greater than end time.")
        specs = [self._spec(market, symbol)] if symbol else [s for s in self.universe.market(market)
                                                              if s.start_ms <= self.now_ms]
        rows: list[tuple[int, str, FundingRows, int]] = []
        if start is None and end is None:
            want = min(limit, self.faults.funding_recent)
            for s in specs:
                r = self._recent_funding(s, want, self.now_ms)
                rows.extend((int(r.time_ms[i]), s.symbol, r, i) for i in range(len(r)))
            rows.sort(key=lambda x: (x[0], x[1]))
            rows = rows[-want:]
        elif start is not None:
            hi = end if end is not None else self.now_ms
            for s in specs:
                r = funding_rows(s, start - 10, hi + 1, now_ms=self.now_ms)
                keep = np.flatnonzero((r.time_ms >= start) & (r.time_ms <= hi))
                r = r.take(keep[:limit])
                rows.extend((int(r.time_ms[i]), s.symbol, r, i) for i in range(len(r)))
            rows.sort(key=lambda x: (x[0], x[1]))
            rows = rows[:limit]
        else:
            for s in specs:
                r = self._recent_funding(s, limit, end)
                rows.extend((int(r.time_ms[i]), s.symbol, r, i) for i in range(len(r)))
            rows.sort(key=lambda x: (x[0], x[1]))
            rows = rows[-limit:]
        out = []
        for t, sym, r, i in rows:
            rate = int(r.rate[i])
            mark = int(r.mark[i])
            out.append({"symbol": sym, "fundingTime": t, "fundingRate": _dec(rate, 8),
                        "markPrice": _dec(mark * 10 ** (8 - r.price_dec), 8)})
        return out

    def _recent_funding(self, spec: SymbolSpec, want: int, until_ms: int) -> FundingRows:
        """The newest `want` settlements reported at or before until_ms."""
        until_ms = min(until_ms, self.now_ms)
        hi = until_ms + 1
        span = 60 * DAY_MS
        lo = hi
        floor = spec.start_ms - spec.start_ms % DAY_MS
        while True:
            lo = max(floor, lo - span)
            r = funding_rows(spec, lo, hi, now_ms=self.now_ms)
            keep = np.flatnonzero(r.time_ms <= until_ms)
            if len(keep) >= want or lo <= floor:
                return r.take(keep[-want:] if want else keep[:0])
            span *= 2

    # exchangeInfo --------------------------------------------------------------------------
    def _rate_limits(self, market: str) -> list[dict]:
        limits = [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                   "limit": self.faults.budget(market)},
                  {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200}]
        if market == "spot":
            limits.append({"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000})
        return limits

    def _status(self, spec: SymbolSpec) -> str:
        now = self.now_ms
        if now >= spec.end_ms:
            return {"spot": "BREAK", "um": "SETTLING", "cm": "SETTLING"}[spec.market]
        if spec.in_halt(now):
            return {"spot": "HALT", "um": "PRE_SETTLE", "cm": "PRE_SETTLE"}[spec.market]
        return "TRADING"

    def _exchange_info(self, request: web.Request, market: str) -> dict:
        q = request.query
        specs = [s for s in self.universe.market(market) if s.start_ms <= self.now_ms]
        if market == "spot":
            wanted: list[str] | None = None
            if q.get("symbol"):
                wanted = [q["symbol"]]
            elif q.get("symbols"):
                try:
                    wanted = json.loads(q["symbols"])
                except ValueError:
                    raise _ApiError(400, -1100, "Illegal characters found in parameter 'symbols'.") from None
            if wanted is not None:
                specs = [self._spec(market, w) for w in wanted]
        info: dict[str, Any] = {"timezone": "UTC", "serverTime": self.now_ms,
                                "rateLimits": self._rate_limits(market), "exchangeFilters": []}
        if market == "um":
            info["futuresType"] = "U_MARGINED"
            info["assets"] = [{"asset": a, "marginAvailable": True, "autoAssetExchange": None}
                              for a in sorted({s.quote_asset for s in specs})]
        info["symbols"] = [self._symbol_info(s) for s in specs]
        return info

    def _symbol_info(self, s: SymbolSpec) -> dict:
        tick = _dec(1, s.price_decimals)
        step = _dec(1, s.qty_decimals)
        if s.market == "spot":
            leveraged = s.base_asset.endswith(LEVERAGED_SUFFIXES) and s.base_asset not in LEVERAGED_EXCEPTIONS
            return {
                "symbol": s.symbol, "status": self._status(s), "baseAsset": s.base_asset, "baseAssetPrecision": 8,
                "quoteAsset": s.quote_asset, "quotePrecision": 8, "quoteAssetPrecision": 8,
                "baseCommissionPrecision": 8, "quoteCommissionPrecision": 8,
                "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
                "icebergAllowed": True, "ocoAllowed": True, "otoAllowed": True,
                "quoteOrderQtyMarketAllowed": True, "allowTrailingStop": True, "cancelReplaceAllowed": True,
                "isSpotTradingAllowed": True, "isMarginTradingAllowed": not leveraged,
                "filters": [
                    {"filterType": "PRICE_FILTER", "minPrice": _dec(10 ** (8 - s.price_decimals), 8),
                     "maxPrice": "1000000.00000000", "tickSize": _dec(10 ** (8 - s.price_decimals), 8)},
                    {"filterType": "LOT_SIZE", "minQty": _dec(10 ** (8 - s.qty_decimals), 8),
                     "maxQty": "9000000.00000000", "stepSize": _dec(10 ** (8 - s.qty_decimals), 8)},
                ],
                "permissions": [], "permissionSets": [["LEVERAGED"]] if leveraged else [["SPOT", "MARGIN"]],
                "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
                "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
            }
        if s.delivery_day is not None:
            delivery = day_ms(s.delivery_day) + 8 * 3_600_000
            contract = "CURRENT_QUARTER" if delivery - self.now_ms <= 92 * DAY_MS else "NEXT_QUARTER"
        else:
            delivery = PERPETUAL_DELIVERY_DATE if self.now_ms < s.end_ms else s.end_ms
            contract = "PERPETUAL"
        common = {
            "symbol": s.symbol, "pair": s.symbol.split("_")[0], "contractType": contract, "deliveryDate": delivery,
            "onboardDate": s.start_ms, "maintMarginPercent": "2.5000", "requiredMarginPercent": "5.0000",
            "baseAsset": s.base_asset, "quoteAsset": s.quote_asset, "pricePrecision": s.price_decimals,
            "quantityPrecision": s.qty_decimals, "baseAssetPrecision": 8, "quotePrecision": 8,
            "underlyingType": s.underlying_type, "underlyingSubType": [], "triggerProtect": "0.0500",
            "liquidationFee": "0.012500", "marketTakeBound": "0.05", "maxMoveOrderLimit": 10000,
            "filters": [{"filterType": "PRICE_FILTER", "minPrice": tick, "maxPrice": "4529764", "tickSize": tick},
                        {"filterType": "LOT_SIZE", "minQty": step, "maxQty": "1000", "stepSize": step}],
            "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET",
                           "TRAILING_STOP_MARKET"],
            "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
        }
        if s.market == "um":
            common["status"] = self._status(s)
            common["marginAsset"] = s.quote_asset
            return common
        common["contractStatus"] = self._status(s)
        common["contractSize"] = int(s.contract_size) if float(s.contract_size).is_integer() else s.contract_size
        common["marginAsset"] = s.base_asset
        common["equalQtyPrecision"] = 4
        return common


def _dec(units: int, dec: int) -> str:
    if dec <= 0:
        return str(units)
    sign = "-" if units < 0 else ""
    a = abs(units)
    return f"{sign}{a // 10 ** dec}.{a % 10 ** dec:0{dec}d}"


# =========================================================================================
# Running it
# =========================================================================================


def env_for(url: str) -> dict[str, str]:
    """The four BHDS_* variables that point bhds at a fake served at `url`."""
    return {
        "BHDS_AWS_URL": f"{url}/{BUCKET}",
        "BHDS_SPOT_API_URL": url,
        "BHDS_UM_API_URL": url,
        "BHDS_CM_API_URL": url,
    }


class RunningFake:
    """A FakeBinance served from a daemon thread; see `start_in_thread`."""

    def __init__(self, fake: FakeBinance, host: str, port: int, loop: asyncio.AbstractEventLoop,
                 thread: threading.Thread):
        self.fake = fake
        self.host = host
        self.port = port
        self._loop = loop
        self._thread = thread

    url = property(lambda self: f"http://{self.host}:{self.port}")
    aws_url = property(lambda self: f"{self.url}/{BUCKET}")
    env = property(lambda self: env_for(self.url))
    faults = property(lambda self: self.fake.faults)
    stats = property(lambda self: self.fake.stats)
    root = property(lambda self: self.fake.root)
    universe = property(lambda self: self.fake.universe)

    @property
    def now_ms(self) -> int:
        """The fake's "current time" (REST still-forming bar, /time); settable."""
        return self.fake.now_ms

    @now_ms.setter
    def now_ms(self, value: int) -> None:
        self.fake.now_ms = int(value)

    def add_dummy_keys(self, prefix: str, n: int, **kw: Any) -> list[str]:
        return self.fake.add_dummy_keys(prefix, n, **kw)

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)

    def __enter__(self) -> "RunningFake":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_in_thread(root: Path | str, port: int = 0, *, host: str = "127.0.0.1", now_ms: int | None = None,
                    clock: Callable[[], float] = time.time, **fault_kwargs: Any) -> RunningFake:
    """Serve the archive at `root` on host:port (0 = a free port) from a daemon thread."""
    fake = FakeBinance(root, faults=Faults(**fault_kwargs), now_ms=now_ms, clock=clock)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    box: dict[str, Any] = {}

    def run() -> None:
        asyncio.set_event_loop(loop)
        runner = web.AppRunner(fake.app, access_log=None, shutdown_timeout=0.5)
        try:
            loop.run_until_complete(runner.setup())
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            box["port"] = sock.getsockname()[1]
            loop.run_until_complete(web.SockSite(runner, sock).start())
        except BaseException as e:  # surfaced to the caller below
            box["error"] = e
            ready.set()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(runner.cleanup())
            loop.close()

    thread = threading.Thread(target=run, name="fakebinance", daemon=True)
    thread.start()
    ready.wait(30)
    if "error" in box:
        raise box["error"]
    return RunningFake(fake, host, box["port"], loop, thread)
