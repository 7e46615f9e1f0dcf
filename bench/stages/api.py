"""REST API stage: the legacy gap fill and recent funding, and a run long enough to show the pace.

* `download-aws-missing-kline-type spot 1m`: the baseline's 29 symbol-days the archive lacks
  (plus, new in bhds, the two days after the archive's last one);
* `download-recent-funding-type um_futures`: 10 symbols;
* `download-aws-missing-kline-type spot 1h` over a store holding only each symbol's first and
  last archive day: ~3,400 requests at the real spot budget (6000 weight/min, 2 per call), so
  the run is limited by the budget, not by the machine. Target: >= 90 % of the requests per
  minute the budget allows, zero 429s;
* `download-aws-missing-kline-type um_futures 1m` over a store (of its own) missing ~60 days per
  symbol: budget-bound at 2400 weight/min, where a day's weight (6: three 480-bar calls) sets the pace.

The parsed stores are written here from the fake's own series (what `aws_kline parse` would
write), unless the parse stage already left a 1m store. Each command runs through a small
wrapper that appends its summary line (requests, peak weight, 429s) to `<work>/api-runs.log`.
"""

from __future__ import annotations

import shutil
import sqlite3
import sys
import time
from pathlib import Path

from bench.harness import REPO, BenchContext, Case

LOG_NAME = "api-runs.log"
SPOT_BUDGET = 6000  # weight per minute, as the fake (and Binance) announce it
SPOT_KLINE_WEIGHT = 2
UM_BUDGET = 2400
UM_DAY_WEIGHT = 6  # three calls of 480 bars (one call of 1440 would weigh 10)
UM_TAIL_DAYS = 300  # the UM store keeps each symbol's first day and its last 300: ~60 missing days each
MARKETS = {"spot": "spot", "um_futures": "um"}
BASELINE_1M = {"wall_s": 2.84, "peak_mb": 90.0}  # 29 symbol-days, 31,920 rows
BASELINE_FUNDING = {"wall_s": 1.04, "peak_mb": 70.0}  # 10 symbols

WRAPPER = r"""
import subprocess, sys, time
log, argv = sys.argv[1], sys.argv[2:]
t0 = time.perf_counter()
proc = subprocess.run([sys.executable, "bhds.py", *argv], stdout=subprocess.PIPE, text=True)
with open(log, "a") as fh:
    fh.write(f"{' '.join(argv)} | wall={time.perf_counter() - t0:.2f}s rc={proc.returncode} | {proc.stdout.strip()}\n")
sys.exit(proc.returncode)
"""


def _universe(ctx: BenchContext):
    from tests.fakebinance.universe import Universe

    return Universe.from_json((ctx.archive_root / "universe.json").read_text())


def _write_store(ctx: BenchContext, interval: str, which: str, trade_type: str = "spot", data_dir: Path | None = None) -> None:
    """Parsed partitions of every archive day ("all"), only the first and last ("ends"), or the first
    and the last UM_TAIL_DAYS ("hole": the days between are missing)."""
    import pyarrow as pa

    from bhds.paths import PARQUET_SUFFIX, Layout, list_files
    from bhds.storage import write_table
    from tests.fakebinance.archive import archive_days
    from tests.test_api_support import bars_table
    from tests.fakebinance import series

    layout = Layout(data_dir or ctx.data_dir)
    uni = _universe(ctx)
    for spec in uni.market(MARKETS[trade_type]):
        layout.aws_kline_dir(trade_type, spec.symbol, interval).mkdir(parents=True, exist_ok=True)
        folder = layout.parsed_kline_dir(trade_type, spec.symbol, interval)
        if list_files(folder, PARQUET_SUFFIX):
            continue  # made by the parse stage or an earlier run: same rows
        days = archive_days(uni, spec)
        if which == "ends":
            days = [days[0], days[-1]]
        elif which == "hole":
            days = [days[0], *days[-UM_TAIL_DAYS:]]
        months: dict[tuple[int, int], list] = {}
        for d in days:
            months.setdefault((d.year, d.month), []).append(bars_table(series.day_bars(spec, interval, d, archive=True)))
        for (year, month), parts in months.items():
            write_table(pa.concat_tables(parts), layout.parsed_kline_partition(trade_type, spec.symbol, interval, year, month))


def _forget_api(trade_type: str, interval: str | None, data_dir: Path | None = None):
    """Setup: remove what an earlier run fetched, so each repetition does the whole job."""
    def setup(ctx: BenchContext) -> None:
        from bhds.paths import Layout

        layout = Layout(data_dir or ctx.data_dir)
        if interval is None:
            shutil.rmtree(layout.api_funding_dir(trade_type), ignore_errors=True)
            return
        for folder in layout.api_kline_symbols_dir(trade_type).glob(f"*/{interval}"):
            shutil.rmtree(folder, ignore_errors=True)
        db = layout.state_db
        if db.exists():
            with sqlite3.connect(db) as conn:
                if conn.execute("SELECT 1 FROM sqlite_master WHERE name='api_kline_empty_days'").fetchone():
                    conn.execute("DELETE FROM api_kline_empty_days WHERE trade_type=? AND interval=?", (trade_type, interval))
    return setup


def _warm_funding(inner):
    """Setup: as `inner`, then ask the fake once for each UM symbol's funding (untimed). The fake builds
    a symbol's series on its first request (~0.1 s each, single-threaded): the first timed run would
    otherwise measure the fake, not bhds."""
    def setup(ctx: BenchContext) -> None:
        import urllib.request

        inner(ctx)
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never via a proxy
        for spec in _universe(ctx).market("um"):
            url = f"{ctx.env['BHDS_UM_API_URL']}/fapi/v1/fundingRate?symbol={spec.symbol}&limit=1000"
            with direct.open(url, timeout=30) as answer:
                answer.read()
    return setup


def _fresh_window(inner):
    """Setup: as `inner`, then wait (untimed) for the next minute, so no earlier run's weight counts."""
    def setup(ctx: BenchContext) -> None:
        inner(ctx)
        time.sleep(60.0 - time.time() % 60.0 + 0.2)
    return setup


def _expected_requests(ctx: BenchContext, interval: str, trade_type: str = "spot",
                       data_dir: Path | None = None) -> tuple[int, int]:
    """(requests, days) a run should make: holes + recent days up to each symbol's end, probes, exchangeInfo."""
    from datetime import datetime, timezone

    from bhds.api.missing import scan_store, tail_days
    from bhds.paths import Layout
    from bhds.types import parse_interval

    from bhds.api.klines import plan_day
    from bhds.api.markets import market_for
    from bhds.settings import load_settings

    layout = Layout(data_dir or ctx.data_dir)
    uni = _universe(ctx)
    now = datetime.fromtimestamp(uni.now_ms / 1000, tz=timezone.utc)
    iv = parse_interval(interval, archive=True)
    market = market_for(load_settings(), trade_type)
    per_day = len(plan_day(now.date(), iv, market.max_bars, market.kline_weight))
    requests, days = 1, 0
    for spec in uni.market(MARKETS[trade_type]):
        cov = scan_store(layout, trade_type, spec.symbol, iv)
        tail = tail_days(cov, iv, now)
        if len(tail) * per_day > 2:
            requests += 1
            tail = [d for d in tail if d <= spec.last_day]
        days += len(cov.short_days) + len(tail)
    return requests + days * per_day, days


def cases(ctx: BenchContext) -> list[Case]:
    sys.path.insert(0, str(REPO))
    log = ctx.work / LOG_NAME
    _write_store(ctx, "1m", "all")
    _write_store(ctx, "1h", "ends")
    from bhds.paths import Layout

    layout = Layout(ctx.data_dir)
    for spec in _universe(ctx).market("um"):
        layout.aws_funding_dir("um_futures", spec.symbol).mkdir(parents=True, exist_ok=True)

    def wrapped(argv: list[str]) -> list[str]:
        return [sys.executable, "-c", WRAPPER, str(log), *argv]

    um_root = ctx.work / "crypto_data_um_hole"  # its own store: the parse stage's UM 1m store has no hole
    _write_store(ctx, "1m", "hole", "um_futures", um_root / "binance_data")
    req_um, days_um = _expected_requests(ctx, "1m", "um_futures", um_root / "binance_data")
    argv_um = ["api_data", "download-aws-missing-kline-type", "um_futures", "1m"]
    um_days_per_s = UM_BUDGET / UM_DAY_WEIGHT / 60

    req_1m, days_1m = _expected_requests(ctx, "1m")
    req_1h, days_1h = _expected_requests(ctx, "1h")
    allowed = SPOT_BUDGET / SPOT_KLINE_WEIGHT  # requests per minute
    argv_1m = ["api_data", "download-aws-missing-kline-type", "spot", "1m"]
    argv_1h = ["api_data", "download-aws-missing-kline-type", "spot", "1h"]
    argv_funding = ["api_data", "download-recent-funding-type", "um_futures"]
    return [
        Case(
            name=f"missing-kline-type spot 1m ({days_1m} days)",
            argv=argv_1m, command=wrapped(argv_1m),
            setup=_forget_api("spot", "1m"),
            units={"days": days_1m, "requests": req_1m},
            baseline=BASELINE_1M,
            target="legacy fetched 29 days in 2.84 s; bhds also fetches the 2 unpublished days per live symbol",
        ),
        Case(
            name="recent-funding-type um_futures",
            argv=argv_funding, command=wrapped(argv_funding),
            setup=_warm_funding(_forget_api("um_futures", None)),
            units={"symbols": len(_universe(ctx).market("um"))},
            baseline=BASELINE_FUNDING,
        ),
        Case(
            name=f"missing-kline-type spot 1h ({req_1h} requests)",
            argv=argv_1h, command=wrapped(argv_1h),
            setup=_fresh_window(_forget_api("spot", "1h")),
            units={"requests": req_1h, "days": days_1h},
            target=f">= {0.9 * allowed / 60:.1f} requests/s (90 % of {allowed:.0f}/min), zero 429s (see {LOG_NAME})",
        ),
        Case(
            name=f"missing-kline-type um_futures 1m ({days_um} days)",
            argv=argv_um, command=["env", f"CRYPTO_BASE_DIR={um_root}", *wrapped(argv_um)],
            setup=_fresh_window(_forget_api("um_futures", "1m", um_root / "binance_data")),
            units={"days": days_um, "requests": req_um},
            target=f">= {0.9 * um_days_per_s:.2f} days/s (90 % of the {UM_BUDGET}/min budget at weight {UM_DAY_WEIGHT} a day; "
                   f"one 1440-bar call a day, weight 10, allows {UM_BUDGET / 10 / 60:.2f}), zero 429s",
        ),
    ]

