"""The month summary parse keeps in each partition's footer, and how `quality report` uses and checks it."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bhds.paths import Layout
from bhds.quality import footer
from bhds.types import ARCHIVE_INTERVALS, TradeType, parse_interval
from tests.test_parse_support import day_times, kline_csv, put_kline_day
from tests.test_parse_workflow import parse
from tests.test_quality import NOW, build_store, by_symbol, cli, ms, run_json

SPOT = TradeType.spot
DAY_MS = 86_400_000


def _doc_without_clock(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k != "generated_at"}


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    base = tmp_path / "crypto"
    monkeypatch.setenv("CRYPTO_BASE_DIR", str(base))
    monkeypatch.setenv("BHDS_NOW", NOW)
    monkeypatch.setenv("CRYPTO_NJOBS", "1")
    return base


def test_parse_records_duplicates_per_day_and_a_rerun_replaces_only_its_day(env: Path) -> None:
    layout = Layout(env / "binance_data")
    jan = [date(2024, 1, d) for d in (1, 2, 3)]
    repeats = {jan[0]: 5, jan[2]: 2}  # Binance files that list some minutes twice
    for day in jan:
        times = day_times(day)
        put_kline_day(layout, SPOT, "BTCUSDT", "1m", day, kline_csv(times + times[100:100 + repeats.get(day, 0)]), mtime_ns=10**18)
    first = parse(env)
    assert first.notes["duplicates"] == 7

    path = layout.parsed_kline_partition(SPOT, "BTCUSDT", "1m", 2024, 1)
    day_number = {day: (date.toordinal(day) - date(1970, 1, 1).toordinal()) for day in jan}
    assert footer.duplicates_by_day(pq.read_metadata(path)) == {day_number[jan[0]]: 5, day_number[jan[2]]: 2}
    doc, summary = run_json(symbols=("BTCUSDT",))
    record = by_symbol(doc)["BTCUSDT"]
    assert (record["parse_duplicates"], record["duplicate_rows"], record["bars_present"]) == (7, 0, 3 * 1440)
    assert (summary.files, summary.notes["summaries"]) == (0, 1)  # read from the footer, nothing decoded

    # Binance fixes Jan 1: only that day's count changes, Jan 3's is carried over.
    put_kline_day(layout, SPOT, "BTCUSDT", "1m", jan[0], kline_csv(day_times(jan[0])), mtime_ns=10**18 + 1)
    assert parse(env).notes["duplicates"] == 0
    assert footer.duplicates_by_day(pq.read_metadata(path)) == {day_number[jan[2]]: 2}
    assert by_symbol(run_json(symbols=("BTCUSDT",))[0])["BTCUSDT"]["parse_duplicates"] == 2


def _legacy_partition(path: Path, days: list[date]) -> None:
    """A partition as bhds.py (polars) writes it: no footer summary."""
    import polars as pl

    times = [t for day in days for t in day_times(day)]
    frame = pl.DataFrame({"t": times}).select(
        pl.col("t").cast(pl.Datetime("ms")).dt.replace_time_zone("UTC").alias("candle_begin_time"),
        *[pl.lit(1.5).alias(c) for c in ("open", "high", "low", "close", "volume", "quote_volume")],
        pl.lit(7, dtype=pl.Int64).alias("trade_num"),
        *[pl.lit(2.5).alias(c) for c in ("taker_buy_base_asset_volume", "taker_buy_quote_asset_volume")])
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(path)


def test_duplicates_of_a_legacy_partition_are_unknown_until_every_day_is_reparsed(env: Path) -> None:
    layout = Layout(env / "binance_data")
    path = layout.parsed_kline_partition(SPOT, "BTCUSDT", "1m", 2024, 1)
    old_ns = 1_700_000_000 * 10**9
    for d in (1, 2):
        put_kline_day(layout, SPOT, "BTCUSDT", "1m", date(2024, 1, d), kline_csv(day_times(date(2024, 1, d))), mtime_ns=old_ns)
    day3 = day_times(date(2024, 1, 3))
    put_kline_day(layout, SPOT, "BTCUSDT", "1m", date(2024, 1, 3), kline_csv(day3 + day3[:4]), mtime_ns=old_ns)
    _legacy_partition(path, [date(2024, 1, 1), date(2024, 1, 2)])

    parse(env)  # days 1-2 adopted from bhds.py's partition, day 3 parsed with 4 repeats
    record = by_symbol(run_json(symbols=("BTCUSDT",))[0])["BTCUSDT"]
    assert record["parse_duplicates"] is None and record["bars_present"] == 3 * 1440
    assert footer.duplicates_by_day(pq.read_metadata(path)) is None

    parse(env, force=True)  # every day parsed by bhds: the count is known
    assert by_symbol(run_json(symbols=("BTCUSDT",))[0])["BTCUSDT"]["parse_duplicates"] == 4


def test_a_legacy_partition_whose_days_are_all_reparsed_gets_a_known_count(env: Path) -> None:
    layout = Layout(env / "binance_data")
    path = layout.parsed_kline_partition(SPOT, "BTCUSDT", "1m", 2024, 1)
    _legacy_partition(path, [date(2024, 1, 1)])
    day1 = day_times(date(2024, 1, 1))
    # Downloaded after bhds.py wrote the partition: parsed again, replacing the whole day.
    put_kline_day(layout, SPOT, "BTCUSDT", "1m", date(2024, 1, 1), kline_csv(day1 + day1[:3]),
                  mtime_ns=path.stat().st_mtime_ns + 10**9)
    assert parse(env).files == 1
    assert by_symbol(run_json(symbols=("BTCUSDT",))[0])["BTCUSDT"]["parse_duplicates"] == 3


def test_footers_give_the_figures_decoding_gives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BHDS_NOW", NOW)
    monkeypatch.setenv("CRYPTO_NJOBS", "1")
    monkeypatch.setenv("CRYPTO_BASE_DIR", str(tmp_path / "plain"))
    build_store(tmp_path / "plain")
    plain, _ = run_json()
    monkeypatch.setenv("CRYPTO_BASE_DIR", str(tmp_path / "bhds"))
    build_store(tmp_path / "bhds", summaries=True)
    fast, fast_summary = run_json()
    deep, deep_summary = run_json(deep=True)

    # AAAUSDT 202401 and BBBUSDT 202402 come from footers; AAAUSDT 202402 has API days, so it is decoded.
    assert (fast_summary.files, fast_summary.notes["summaries"]) == (3, 2)
    assert (deep_summary.files, deep_summary.notes["summaries"], deep_summary.failed) == (5, 0, 0)
    assert _doc_without_clock(fast) == _doc_without_clock(deep)
    for name, record in by_symbol(fast).items():
        expected = dict(by_symbol(plain)[name], archive_newest_mtime=record["archive_newest_mtime"])
        if name != "CCCUSDT":  # never parsed
            assert (expected["parse_duplicates"], record["parse_duplicates"]) == (None, 0)  # recorded only by bhds
            expected["parse_duplicates"] = 0
        assert record == expected


def _rewrite(path: Path, change) -> None:
    """Rewrite a partition as another tool would: the table keeps its schema metadata, footer included."""
    table = pq.read_table(path)
    assert footer.KEY in table.schema.metadata
    pq.write_table(change(table), path)


def _drop_last_hour(t: pa.Table) -> pa.Table:
    return t.slice(0, t.num_rows - 60)


def _shift_an_hour(t: pa.Table) -> pa.Table:  # same row count, other times
    times = t.column("candle_begin_time").cast(pa.int64()).to_numpy() + 3_600_000
    return t.set_column(0, "candle_begin_time", pa.array(times).cast(t.schema.field(0).type))


def _repeat_a_middle_row(t: pa.Table) -> pa.Table:  # same first and last time, one row more
    return pa.concat_tables([t.slice(0, 100), t.slice(99, 1), t.slice(100)]).combine_chunks()


def _in_microseconds(t: pa.Table) -> pa.Table:
    return t.set_column(0, "candle_begin_time", t.column(0).cast(pa.timestamp("us", tz="UTC")))


def _lowest_high_lower(t: pa.Table) -> pa.Table:  # same rows and times, a new minimum of `high`
    high = t.column("high").to_numpy().copy()
    high[500] = 1.0
    return t.set_column(2, "high", pa.array(high))


@pytest.mark.parametrize(("edit", "figure", "expected"), [
    (_drop_last_hour, "bars_present", 16 * 60 + 2 * 1440 - 60),
    (_shift_an_hour, "last_day", "2024-02-05"),  # the moved rows, not the summary, reach 02-05 00:59
    (_repeat_a_middle_row, "duplicate_rows", 1),
    (_in_microseconds, "bars_present", 16 * 60 + 2 * 1440),
    (_lowest_high_lower, "ohlc_violations", {"rows": 1, "high_below_open_close": 1, "low_above_open_close": 0,
                                             "negative": 0, "nan": 0}),
])
def test_a_partition_rewritten_by_another_tool_is_decoded_not_trusted(env: Path, edit, figure: str, expected: object) -> None:
    layout = build_store(env, summaries=True)
    path = layout.parsed_kline_partition(SPOT, "BBBUSDT", "1m", 2024, 2)
    _rewrite(path, edit)
    doc, summary = run_json(symbols=("BBBUSDT",))
    assert (summary.notes["summaries"], summary.files, summary.failed) == (0, 1, 0)
    assert by_symbol(doc)["BBBUSDT"][figure] == expected


def test_deep_finds_a_summary_that_no_longer_matches_its_rows(env: Path, capsys: pytest.CaptureFixture) -> None:
    layout = build_store(env, summaries=True)
    path = layout.parsed_kline_partition(SPOT, "BBBUSDT", "1m", 2024, 2)

    def high_below_close_inside_the_range(table: pa.Table) -> pa.Table:
        high, close = table.column("high").to_numpy().copy(), table.column("close").to_numpy()
        row = int(np.argmax(close))  # a row whose new high stays between the column's min and max
        high[row] = close[row] - 0.1
        assert high.min() < high[row] < high.max()
        return table.set_column(2, "high", pa.array(high))

    _rewrite(path, high_below_close_inside_the_range)  # rows, times and extremes unchanged
    trusting, _ = run_json(symbols=("BBBUSDT",))
    assert by_symbol(trusting)["BBBUSDT"]["ohlc_violations"]["rows"] == 0  # the documented blind spot

    code, out, err = cli(["quality", "report", "spot", "1m", "BBBUSDT", "--deep", "--format", "json", "-o", str(env / "r.json")], capsys)
    record = by_symbol(json.loads((env / "r.json").read_text()))["BBBUSDT"]
    assert code == 3
    assert record["ohlc_violations"]["high_below_open_close"] == 1
    assert "disagrees with its rows" in err and "--force-update" in err and "Traceback" not in err
    assert "disagrees" not in cli(["quality", "report", "spot", "1m", "AAAUSDT", "--deep", "-o", str(env / "a.txt")], capsys)[2]


@pytest.mark.parametrize("interval", ARCHIVE_INTERVALS)
def test_summary_of_every_archive_interval_is_read_back(tmp_path: Path, interval: str) -> None:
    step = parse_interval(interval)
    start = ms("2024-03-01 00:00")
    if step.is_calendar:
        times = np.array([ms(f"2024-{m:02d}-01 00:00") for m in (3, 4, 6)])  # May missing
    else:
        times = start + step.ms * np.array([0, 1, 2, 4])  # the fourth bar missing
    table = pa.table({"candle_begin_time": pa.array(times).cast(pa.timestamp("ms", tz="UTC")),
                      **{c: np.full(len(times), 1.0) for c in ("open", "high", "low", "close", "volume")}})
    path = tmp_path / "p.pqt"
    pq.write_table(footer.with_summary(table, interval, {}), path)
    stats = footer.stored_stats(pq.read_metadata(path), interval)
    assert stats is not None
    assert (stats.rows, stats.first, stats.last, stats.holes, stats.hole_bars) == (len(times), int(times[0]), int(times[-1]), 1, 1)
    other = "1h" if interval != "1h" else "1m"
    assert footer.stored_stats(pq.read_metadata(path), other) is None  # a summary of another grid is not used
    pq.write_table(table, path)  # no summary at all
    assert footer.stored_stats(pq.read_metadata(path), interval) is None and footer.parse_duplicates(pq.read_metadata(path)) is None


def test_archive_day_names_are_read_strictly() -> None:
    from bhds.quality.inventory import _day_numbers

    assert _day_numbers(["2024-01-01", "2024-02-29"]) == [19723, 19782]
    odd = ["2024-01-01", "      2024", " 024-01-01", "2024-02-30", "2024-1-1", "2024-01-01T"]
    assert _day_numbers(odd) == [19723, None, None, None, None, None]
    assert _day_numbers(["2024-01-01", "2024-02-30"]) == [19723, None]  # right shape, not a date
