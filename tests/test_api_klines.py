"""api_data kline commands against the fake Binance: what is fetched, what is written, rate limits."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from bhds.api.connect import ApiOptions
from bhds.api.ratelimit import Budget
from bhds.errors import NetworkError
from bhds.paths import Layout
from bhds.settings import load_settings
from bhds.state import connect
from bhds.storage import read_table
from bhds.workflows import api_data
from tests.fakebinance.archive import archive_days
from tests.fakebinance.universe import DAY_MS
from tests.test_api_support import days_between, rest_day, short_window, write_store

REPO = Path(__file__).resolve().parent.parent
KLINES = {"spot": "/api/v3/klines", "um_futures": "/fapi/v1/klines", "cm_futures": "/dapi/v1/klines"}


@pytest.fixture
def env(bhds_env, fake_binance):
    """(settings, layout, fake) aimed at a fresh fake Binance."""
    settings = load_settings()
    return settings, Layout(settings.data_dir), fake_binance


def api_files(layout: Layout, tt: str, symbol: str, interval: str = "1m") -> dict[date, Path]:
    folder = layout.api_kline_dir(tt, symbol, interval)
    return {datetime.strptime(p.stem, "%Y%m%d").date(): p for p in sorted(folder.glob("*.pqt"))}


def store_archive(layout, fake, tt, market, symbol, interval="1m", **kw):
    spec = fake.universe.spec(market, symbol)
    write_store(layout, tt, spec, interval, archive_days(fake.universe, spec), **kw)
    return spec


def test_missing_type_fills_holes_partial_days_and_unpublished_days_exactly(env):
    settings, layout, fake = env
    uni = fake.universe
    btc = uni.spec("spot", "BTCUSDT")
    write_store(layout, "spot", btc, "1m", [d for d in archive_days(uni, btc) if d != date(2025, 1, 6)],
                cut={date(2025, 1, 8): 600})
    specs = {"BTCUSDT": btc}
    for symbol in ("ETHUSDT", "BTCUSDC", "WAVESUSDT", "PENGUUSDT"):
        specs[symbol] = store_archive(layout, fake, "spot", "spot", symbol)

    summary = api_data.download_aws_missing_kline_type(settings, trade_type="spot", time_interval="1m", overwrite=False)

    recent = [date(2025, 1, 11), date(2025, 1, 12)]  # the archive ends 2025-01-10; today is 2025-01-13
    expected = {
        "BTCUSDT": [date(2025, 1, 2), date(2025, 1, 6), date(2025, 1, 8), *recent],  # exchange hole, my hole, cut day
        "ETHUSDT": [date(2024, 12, 28), date(2025, 1, 3), date(2025, 1, 4), *recent],  # days the archive lacks
        "BTCUSDC": [date(2025, 1, 7), *recent],  # the archive file stops at 07:36
        "WAVESUSDT": [date(2025, 1, 5)],  # delisted that day at 03:00: nothing after it
        "PENGUUSDT": [date(2024, 12, 30), *recent],  # listed at 08:00
    }
    for symbol, days in expected.items():
        files = api_files(layout, "spot", symbol)
        assert sorted(files) == days, symbol
        for d, path in files.items():
            assert read_table(path).equals(rest_day(specs[symbol], "1m", d, uni.now_ms)), (symbol, d)
    assert read_table(api_files(layout, "spot", "BTCUSDT")[date(2025, 1, 2)]).num_rows == 1440 - 90
    n = sum(len(v) for v in expected.values())
    assert summary.failed == 0 and summary.files == n
    assert summary.notes["days"] == n and summary.notes["filled"] == n and summary.notes["empty"] == 0
    # two calls per spot 1m day, plus one call per symbol to find where its data ends
    assert fake.stats.requests[KLINES["spot"]] == 2 * n + 5
    assert summary.notes["requests"] == 2 * n + 5 + 1  # + exchangeInfo

    # Again: every day has its file; only the delisted symbol's end is looked up again.
    mtimes = {p: p.stat().st_mtime_ns for p in (layout.root / "api_data").rglob("*.pqt")}
    fake.stats.reset()
    again = api_data.download_aws_missing_kline_type(settings, trade_type="spot", time_interval="1m", overwrite=False)
    assert again.failed == 0 and again.notes["days"] == 0 and again.notes["have_file"] == n
    assert fake.stats.requests[KLINES["spot"]] == 1
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes

    # --overwrite fetches them all again
    fake.stats.reset()
    over = api_data.download_aws_missing_kline(settings, trade_type="spot", time_interval="1m", symbols=["ETHUSDT"],
                                               overwrite=True)
    assert over.notes["filled"] == 5 and fake.stats.requests[KLINES["spot"]] == 2 * 5 + 1


def test_empty_days_are_remembered_and_asked_again_a_day_later(env, monkeypatch):
    settings, layout, fake = env
    luna = fake.universe.spec("spot", "LUNAUSDT")  # halted 2025-01-02 .. 2025-01-04: no bars anywhere
    write_store(layout, "spot", luna, "1m", days_between(date(2024, 12, 25), date(2025, 1, 10)))
    halt = [date(2025, 1, 2), date(2025, 1, 3), date(2025, 1, 4)]

    first = api_data.download_aws_missing_kline(settings, trade_type="spot", time_interval="1m", symbols=["LUNAUSDT"], overwrite=False)
    assert first.failed == 0 and first.notes["empty"] == 3 and first.notes["filled"] == 2
    assert sorted(api_files(layout, "spot", "LUNAUSDT")) == [date(2025, 1, 11), date(2025, 1, 12)]  # no empty files
    conn = connect(layout)
    asked = conn.execute("SELECT day, asked_at FROM api_kline_empty_days WHERE symbol='LUNAUSDT' ORDER BY day").fetchall()
    conn.close()
    assert [d for d, _ in asked] == [d.isoformat() for d in halt]
    assert all(a.startswith("2025-01-13T12:34:56") for _, a in asked)

    fake.stats.reset()
    second = api_data.download_aws_missing_kline(settings, trade_type="spot", time_interval="1m", symbols=["LUNAUSDT"], overwrite=False)
    assert second.notes["days"] == 0 and second.notes["empty_recently"] == 3
    assert fake.stats.requests[KLINES["spot"]] == 0

    # A day later (for us and for the fake) the halt days are asked again, with the new day.
    fake.fake.now_ms += DAY_MS
    monkeypatch.setenv("BHDS_NOW", "2025-01-14T12:34:56.789Z")
    later = api_data.download_aws_missing_kline(load_settings(), trade_type="spot", time_interval="1m", symbols=["LUNAUSDT"], overwrite=False)
    assert later.notes["days"] == 4 and later.notes["empty"] == 3 and later.notes["filled"] == 1
    assert date(2025, 1, 13) in api_files(layout, "spot", "LUNAUSDT")


def test_an_invalid_symbol_is_skipped_and_the_others_are_filled(env):
    settings, layout, fake = env
    store_archive(layout, fake, "um_futures", "um", "ETHUSDT")  # misses 2025-01-02 in the archive
    ghost = dataclasses.replace(fake.universe.spec("um", "BTCUSDT"), symbol="GHOSTUSDT")
    write_store(layout, "um_futures", ghost, "1m", [d for d in days_between(date(2024, 12, 25), date(2025, 1, 10))
                                                    if d != date(2025, 1, 1)])

    summary = api_data.download_aws_missing_kline_type(settings, trade_type="um_futures", time_interval="1m", overwrite=False)
    assert summary.failed == 0  # a -type run over local folders: reported, not a failure
    assert summary.notes["invalid_symbols"] == "GHOSTUSDT" and summary.skipped == 1
    assert sorted(api_files(layout, "um_futures", "ETHUSDT")) == [date(2025, 1, 2), date(2025, 1, 11), date(2025, 1, 12)]
    assert api_files(layout, "um_futures", "GHOSTUSDT") == {}

    named = api_data.download_aws_missing_kline(settings, trade_type="um_futures", time_interval="1m",
                                                symbols=["GHOSTUSDT", "ETHUSDT"], overwrite=True)
    assert named.failed == 1 and "GHOSTUSDT: Binance does not know this symbol" in named.failures[0]
    assert named.notes["filled"] == 3
    # Its hole (01-01) and the two days after its store (found invalid by the tail probe) are all counted.
    assert named.failures[0].endswith("; 3 day(s) skipped")


def test_a_ban_during_the_tail_probes_reports_every_day_not_fetched(env):
    settings, layout, fake = env
    symbols = ["BTCUSDT", "ETHUSDT", "1000PEPEUSDT", "ETHBTC", "BTCUSDC"]
    for symbol in symbols:
        store_archive(layout, fake, "um_futures", "um", symbol)
    fake.faults.ban_at_kline = 2  # the second probe is answered 418
    summary = api_data.download_aws_missing_kline_type(settings, trade_type="um_futures", time_interval="1m", overwrite=False)
    not_fetched = {line.split(":")[0] for line in summary.failures if line.endswith("not fetched (HTTP 418)")}
    due = {f"{s} {d}" for s in symbols for d in ("2025-01-11", "2025-01-12")} | {"ETHUSDT 2025-01-02"}
    assert not_fetched == due and summary.notes["days"] == len(due)
    assert all(api_files(layout, "um_futures", s) == {} for s in symbols)


def test_our_clock_ahead_of_binance_never_stores_the_forming_bar(env, monkeypatch):
    settings, layout, fake = env
    day, midnight = date(2025, 1, 12), DAY_MS * (date(2025, 1, 13) - date(1970, 1, 1)).days
    fake.fake.now_ms = midnight - 2_000  # Binance: 23:59:58, its 23:59 bar still forming
    monkeypatch.setenv("BHDS_NOW", "2025-01-13T00:00:03Z")  # ours: 5 s ahead, the day looks finished
    early = api_data.download_kline(load_settings(), trade_type="um_futures", time_interval="1m", symbol="BTCUSDT", dts=["20250112"])
    assert early.failed == 0 and early.notes["unfinished"] == 1 and api_files(layout, "um_futures", "BTCUSDT") == {}
    fake.fake.now_ms = midnight + 60_000
    monkeypatch.setenv("BHDS_NOW", "2025-01-13T00:01:03Z")
    later = api_data.download_kline(load_settings(), trade_type="um_futures", time_interval="1m", symbol="BTCUSDT", dts=["20250112"])
    assert later.failed == 0 and later.files == 1
    path = api_files(layout, "um_futures", "BTCUSDT")[day]
    assert read_table(path).equals(rest_day(fake.universe.spec("um", "BTCUSDT"), "1m", day, fake.fake.now_ms))
    assert read_table(path).num_rows == 1440


def test_a_weekly_bar_still_forming_on_binances_clock_is_not_fetched(env, monkeypatch):
    settings, layout, fake = env
    next_monday = DAY_MS * (date(2025, 1, 13) - date(1970, 1, 1)).days
    fake.fake.now_ms = next_monday - 2_000  # Binance: the week of 01-06 closes in 2 s
    monkeypatch.setenv("BHDS_NOW", "2025-01-13T00:00:03Z")  # ours: it closed 3 s ago
    early = api_data.download_kline(load_settings(), trade_type="um_futures", time_interval="1w", symbol="BTCUSDT", dts=["20250106"])
    assert early.failed == 0 and early.notes["unfinished"] == 1 and early.notes.get("empty", 0) == 0
    assert api_files(layout, "um_futures", "BTCUSDT", "1w") == {}
    conn = connect(layout)
    assert conn.execute("SELECT COUNT(*) FROM api_kline_empty_days").fetchone() == (0,)  # not taken for an empty day
    conn.close()


def test_a_408_from_the_futures_gateway_is_retried(env):
    settings, layout, fake = env
    fake.faults.fail_first, fake.faults.fail_status = 1, 408  # every URL's first request: -1007 timeout
    summary = api_data.download_kline(settings, trade_type="um_futures", time_interval="1h", symbol="BTCUSDT", dts=["20250110"])
    assert summary.failed == 0 and summary.files == 1 and summary.notes["retried"] >= 1
    path = api_files(layout, "um_futures", "BTCUSDT", "1h")[date(2025, 1, 10)]
    assert read_table(path).equals(rest_day(fake.universe.spec("um", "BTCUSDT"), "1h", date(2025, 1, 10), fake.universe.now_ms))


def test_a_ban_stops_the_market_and_every_unfetched_day_is_reported(env):
    settings, layout, fake = env
    fake.faults.status_override = {"/fapi/v1/klines": 418}
    days = [(date(2024, 12, 25) + timedelta(days=i)).isoformat() for i in range(15)]
    summary = api_data.download_kline(settings, trade_type="um_futures", time_interval="1m", symbol="BTCUSDT", dts=days)
    assert summary.failed == 1 + 15
    assert "banned this IP" in summary.failures[0] and "418" in summary.failures[0]
    assert all("not fetched (HTTP 418)" in f for f in summary.failures[1:])
    # requests already in flight when the first ban arrived, and not one after
    assert fake.stats.sent_418 == fake.stats.requests[KLINES["um_futures"]] <= 16
    assert api_files(layout, "um_futures", "BTCUSDT") == {}


def test_a_restricted_location_is_a_clear_error_exit_1(bhds_env, fake_binance):
    fake_binance.faults.status_override = {"/fapi/": 451}
    proc = subprocess.run([sys.executable, "bhds.py", "api_data", "download-kline", "um_futures", "1m", "BTCUSDT", "20250101"],
                          cwd=REPO, capture_output=True, text=True, env=os.environ)
    assert proc.returncode == 1
    assert "restricted location (HTTP 451)" in proc.stderr and "--http-proxy" in proc.stderr
    with pytest.raises(NetworkError, match="firewall"):
        fake_binance.faults.status_override = {"/fapi/": 403}
        api_data.download_recent_funding(load_settings(), trade_type="um_futures", symbols=["BTCUSDT"])


def test_429_retry_after_is_obeyed_with_no_violation(env):
    settings, layout, fake = env
    # The server allows 20 weight per second (two 1m days); we are told, wrongly, 40. Requests
    # go about 0.27 s apart, so a 429 is certain and nothing is in flight when it comes back.
    fake.faults.weight_window = 1.0
    fake.faults.weight_budget = {"um": 20}
    days = [d.isoformat() for d in days_between(date(2025, 1, 1), date(2025, 1, 10))]
    summary = api_data.download_kline(settings, trade_type="um_futures", time_interval="1m", symbol="BTCUSDT", dts=days,
                                      api=ApiOptions(budget=Budget(40, 1.0)))
    stats = (fake.stats.sent_429, fake.stats.violations, fake.stats.sent_418, summary.line())
    assert fake.stats.sent_429 >= 1 and summary.notes["http_429"] == fake.stats.sent_429, stats
    assert fake.stats.violations == 0 and fake.stats.sent_418 == 0, stats
    assert summary.failed == 0 and summary.notes["filled"] == len(days), stats  # nothing dropped
    assert fake.stats.sent_429 < len(days) // 2, stats  # it slowed down instead of hitting the limit each time


def test_weight_never_exceeds_the_budget_over_thousands_of_requests(env):
    settings, layout, fake = env
    # 2-second windows: our 7 % headroom then absorbs up to 140 ms of arrival jitter (a minute's
    # window absorbs 4 s), so a busy test machine does not turn into 429s.
    short_window(fake, 2, {"um": 800})
    last = date(2025, 1, 12)
    days = [(last - timedelta(days=i)).isoformat() for i in range(3000)]  # 1h days: weight 1 each
    summary = api_data.download_kline(settings, trade_type="um_futures", time_interval="1h", symbol="BTCUSDT", dts=days)
    assert fake.stats.requests[KLINES["um_futures"]] == 3000
    assert fake.stats.sent_429 == 0 and fake.stats.violations == 0
    assert fake.stats.weight_max["um"] <= 800
    assert summary.failed == 0 and summary.notes["filled"] + summary.notes["empty"] == 3000
    assert summary.notes["filled"] == 19
    assert summary.notes["peak_weight"].endswith("/800")  # the budget announced in exchangeInfo
    # (how close to the budget it runs is measured in test_api_ratelimit and the bench, not here:
    # a busy machine could not keep up anyway)


@pytest.mark.parametrize("tt,market,symbol,interval", [
    ("spot", "spot", "BTCUSDT", "1m"),
    ("um_futures", "um", "ETHUSDT", "1m"),
    ("cm_futures", "cm", "BTCUSD_PERP", "1m"),
    ("cm_futures", "cm", "ETHUSD_PERP", "1h"),
])
def test_download_kline_writes_what_the_server_holds(env, tt, market, symbol, interval):
    settings, layout, fake = env
    days = [date(2024, 12, 31), date(2025, 1, 1), date(2025, 1, 2)]
    summary = api_data.download_kline(settings, trade_type=tt, time_interval=interval, symbol=symbol,
                                      dts=[d.strftime("%Y%m%d") for d in days])
    assert summary.failed == 0 and summary.files == 3
    spec = fake.universe.spec(market, symbol)
    files = api_files(layout, tt, symbol, interval)
    assert sorted(files) == days
    for d, path in files.items():
        assert read_table(path).equals(rest_day(spec, interval, d, fake.universe.now_ms))
    # Spot: 1000 + 440 bars. Futures: three calls of 480 bars weigh 6, one of 1440 would weigh 10.
    per_day = (2 if tt == "spot" else 3) if interval == "1m" else 1
    assert fake.stats.requests[KLINES[tt]] == per_day * 3
    if tt != "spot" and interval == "1m":
        assert fake.stats.weight_max[market] <= 3 * 6 + 1  # + exchangeInfo (less if a minute rolled over)
    if tt == "cm_futures":
        sizes = json.loads(layout.cache_file("cm_contract_sizes.json").read_text())
        assert sizes == {"BTCUSD_PERP": 100.0, "ETHUSD_PERP": 10.0, "BTCUSD_250328": 100.0}


def test_the_current_day_is_never_fetched(env):
    settings, layout, fake = env
    summary = api_data.download_kline(settings, trade_type="spot", time_interval="1m", symbol="BTCUSDT",
                                      dts=["2025-01-12", "2025-01-13", "2025-01-20"])
    assert summary.files == 1 and summary.skipped == 2 and summary.notes["unfinished"] == 2
    assert sorted(api_files(layout, "spot", "BTCUSDT")) == [date(2025, 1, 12)]


def run_main(capsys, *args: str) -> tuple[int, str, str]:
    """`bhds api_data ...` in this process: (exit code, stdout, stderr)."""
    from bhds.cli import main

    with pytest.raises(SystemExit) as info:
        main(["api_data", *args])
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def test_cli_summary_line_and_exit_codes(bhds_env, fake_binance, capsys):
    ok = subprocess.run([sys.executable, "bhds.py", "api_data", "download-kline", "spot", "1m", "BTCUSDT", "20250102",
                         "2025-01-03"], cwd=REPO, capture_output=True, text=True, env=os.environ)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("api_data download-kline: files=2 rows=2,790 ")
    assert "days=2 filled=2 empty=0 requests=5 peak_weight=" in ok.stdout and "failed=0" in ok.stdout

    code, _, err = run_main(capsys, "download-kline", "spot", "1m", "BTCUSDT", "2025-02-30")
    assert code == 2 and "bhds: error: date '2025-02-30' is not a date" in err

    code, out, _ = run_main(capsys, "download-aws-missing-kline-type", "cm_futures", "1m")
    assert code == 0 and "symbols=0" in out

    code, _, err = run_main(capsys, "download-kline", "um_futures", "1m", "NOSUCHUSDT", "20250102")
    assert code == 2 and "bhds: error: symbol 'NOSUCHUSDT' unknown to Binance's um_futures API" in err

    code, _, err = run_main(capsys, "download-kline", "um_futures", "1s", "BTCUSDT", "20250102")
    assert code == 2 and "1s exists for spot only" in err
