"""Missing-day detection on parsed stores, day planning, answer clean-up, the empty-day ledger."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pyarrow as pa
import pytest

from bhds.api.klines import Window, finish_day, plan_day, rows_to_table
from bhds.api.ledger import EmptyDayLedger, reask_after
from bhds.api.missing import scan_store, tail_days
from bhds.errors import InputError
from bhds.paths import Layout
from bhds.schema import KLINE_SCHEMA
from bhds.state import connect
from bhds.types import DAY_MS, parse_interval
from bhds.workflows.api_data import parse_day
from tests.fakebinance import default_universe
from tests.fakebinance.universe import day_ms
from tests.test_api_support import days_between, write_store

UNI = default_universe()
NOW = datetime(2025, 1, 13, 12, 34, 56, tzinfo=timezone.utc)
M1 = parse_interval("1m", archive=True)


@pytest.fixture
def layout(tmp_path):
    return Layout(tmp_path / "binance_data")


def test_holes_partial_days_and_recent_days(layout):
    spec = UNI.spec("spot", "BTCUSDT")  # an exchange hole 02:00-03:30 on 2025-01-02
    days = [d for d in days_between(date(2024, 12, 25), date(2025, 1, 10)) if d not in (date(2024, 12, 31), date(2025, 1, 6))]
    write_store(layout, "spot", spec, "1m", days, cut={date(2025, 1, 8): 600})
    cov = scan_store(layout, "spot", "BTCUSDT", M1)
    assert (cov.first_day, cov.last_day) == (date(2024, 12, 25), date(2025, 1, 10))
    # whole-day holes (one across a month boundary), a partial day, the exchange hole
    assert cov.short_days == [date(2024, 12, 31), date(2025, 1, 2), date(2025, 1, 6), date(2025, 1, 8)]
    # after the last archive day up to yesterday; never today
    assert tail_days(cov, M1, NOW) == [date(2025, 1, 11), date(2025, 1, 12)]
    assert tail_days(cov, M1, datetime(2025, 1, 11, 0, 0, 1, tzinfo=timezone.utc)) == []


def test_listing_day_counts_as_short_and_an_empty_store_has_nothing(layout):
    spec = UNI.spec("spot", "PENGUUSDT")  # listed 2024-12-30 08:00
    write_store(layout, "spot", spec, "1m", days_between(date(2024, 12, 30), date(2025, 1, 3)))
    cov = scan_store(layout, "spot", "PENGUUSDT", M1)
    assert cov.short_days == [date(2024, 12, 30)]
    assert cov.rows == 16 * 60 + 4 * 1440
    empty = scan_store(layout, "spot", "NOPEUSDT", M1)
    assert empty.empty and empty.short_days == [] and tail_days(empty, M1, NOW) == []


def test_hourly_and_daily_intervals(layout):
    spec = UNI.spec("um", "BTCUSDT")
    h1 = parse_interval("1h", archive=True)
    write_store(layout, "um_futures", spec, "1h", [date(2025, 1, 1), date(2025, 1, 3)], cut={date(2025, 1, 3): 23})
    cov = scan_store(layout, "um_futures", "BTCUSDT", h1)
    assert cov.short_days == [date(2025, 1, 2), date(2025, 1, 3)]
    # 1w: the days due are the cadence of the first bar, and a week still forming is not due yet
    w1 = parse_interval("1w", archive=True)
    from bhds.api.missing import StoreCoverage
    monday = date(2024, 12, 30)
    cov = StoreCoverage("X", first_day=monday, last_day=monday, anchor_ms=day_ms(monday))
    assert tail_days(cov, w1, NOW) == [date(2025, 1, 6)]


def test_plan_day_uses_the_fewest_exact_windows():
    day = date(2025, 1, 2)
    start = day_ms(day)
    spot = plan_day(day, M1, 1000)
    assert spot == [Window(start, start + 1000 * 60_000 - 1, 1000), Window(start + 1000 * 60_000, start + DAY_MS - 1, 440)]
    assert plan_day(day, M1, 1500) == [Window(start, start + DAY_MS - 1, 1440)]
    s1 = plan_day(day, parse_interval("1s", archive=True), 1000)
    assert len(s1) == 87 and sum(w.limit for w in s1) == 86_400
    assert all(b.start_ms == a.end_ms + 1 for a, b in zip(s1, s1[1:]))
    assert plan_day(day, parse_interval("1d", archive=True), 1000) == [Window(start, start + DAY_MS - 1, 1)]


def test_plan_day_takes_the_least_weight_the_market_charges():
    from bhds.api.markets import market_for
    from bhds.settings import load_settings

    day = date(2025, 1, 2)
    start = day_ms(day)
    settings = load_settings()
    spot, um, cm = (market_for(settings, tt) for tt in ("spot", "um_futures", "cm_futures"))
    # Spot charges 2 a call whatever the limit: the fewest calls, as without a weight.
    assert plan_day(day, M1, spot.max_bars, spot.kline_weight) == plan_day(day, M1, spot.max_bars)
    # Futures: 1440 bars in one call weigh 10, in two of 720 also 10, in three of 480 only 6.
    for market in (um, cm):
        windows = plan_day(day, M1, market.max_bars, market.kline_weight)
        assert windows == [Window(start + i * 480 * 60_000, start + (i + 1) * 480 * 60_000 - 1, 480) for i in range(3)]
        assert sum(market.kline_weight(w.limit) for w in windows) == 6
    # Coarser intervals fit one call already at the lowest price for their size.
    assert [w.limit for w in plan_day(day, parse_interval("5m", archive=True), 1500, um.kline_weight)] == [288]
    assert [w.limit for w in plan_day(day, parse_interval("15m", archive=True), 1500, um.kline_weight)] == [96]


def _row(t: int, price: str = "1.5") -> list:
    return [t, price, price, price, price, "2.0", t + 59_999, "3.0", 7, "1.0", "1.5", "0"]


def test_finish_day_normalises_dedups_filters_and_drops_the_forming_bar():
    day = date(2025, 1, 2)
    t0 = day_ms(day)
    first = rows_to_table([_row(t0 - 60_000), _row(t0), _row(t0 + 60_000, "1.6")])
    # microseconds, an overlap with a newer value, a bar of the next day
    second = rows_to_table([_row((t0 + 60_000) * 1000, "1.7"), _row(t0 + 120_000), _row(t0 + DAY_MS)])
    table = finish_day([first, second], day, M1, now_ms=t0 + 180_000)
    assert table.schema.equals(KLINE_SCHEMA)
    times = table.column("candle_begin_time").cast(pa.int64()).to_pylist()
    assert times == [t0, t0 + 60_000, t0 + 120_000]
    assert table.column("close").to_pylist()[1] == 1.7  # last answer wins
    # with `now` inside the third bar, that bar is still forming
    assert finish_day([first, second], day, M1, now_ms=t0 + 150_000).num_rows == 2
    assert finish_day([], day, M1, now_ms=t0).num_rows == 0


def test_rows_to_table_parses_decimal_strings_exactly():
    table = rows_to_table([[1735776000000, "94512.34000000", "0.1", "1e-8", "3", "0.00012", 0, "12.5", 9, "0", "7", "0"]])
    assert table.column("open").to_pylist() == [94512.34]
    assert table.column("high").to_pylist() == [0.1]
    assert table.column("trade_num").type == pa.int64()


def test_ledger_remembers_empty_answers_for_a_day(layout):
    conn = connect(layout)
    ledger = EmptyDayLedger(conn, "spot", "1m")
    ledger.record_empty("LUNAUSDT", date(2025, 1, 3), NOW)
    assert ledger.asked_recently("LUNAUSDT", NOW + timedelta(hours=23)) == {date(2025, 1, 3)}
    assert ledger.asked_recently("LUNAUSDT", NOW + timedelta(days=1, seconds=1)) == set()
    assert EmptyDayLedger(conn, "spot", "1h").asked_recently("LUNAUSDT", NOW) == set()
    # still empty when asked again: the next question waits twice as long (a long halt fades out)
    later = NOW + timedelta(days=1, seconds=1)
    ledger.record_empty("LUNAUSDT", date(2025, 1, 3), later)
    assert ledger.asked_recently("LUNAUSDT", later + timedelta(days=1, seconds=1)) == {date(2025, 1, 3)}
    assert ledger.asked_recently("LUNAUSDT", later + timedelta(days=2, seconds=1)) == set()
    ledger.forget("LUNAUSDT", [date(2025, 1, 3)])
    assert ledger.asked_recently("LUNAUSDT", NOW) == set()
    conn.close()


def test_reask_waits_double_each_time_up_to_a_month():
    assert [reask_after(n).days for n in (1, 2, 3, 4, 5, 6, 7, 50)] == [1, 2, 4, 8, 16, 32, 32, 32]


@pytest.mark.parametrize("text", ["20200101", "2020-01-01", "2020/01/01", " 2020-01-01T05:00 "])
def test_parse_day_accepts_the_legacy_spellings(text):
    assert parse_day(text) == date(2020, 1, 1)


@pytest.mark.parametrize("text", ["2020-13-01", "yesterday", "", "202001"])
def test_parse_day_refuses_others_with_exit_2(text):
    with pytest.raises(InputError) as info:
        parse_day(text)
    assert info.value.exit_code == 2
    assert "YYYYMMDD" in str(info.value)

