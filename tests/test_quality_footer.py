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
from bhds.types import TradeType
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


def test_a_partition_rewritten_with_other_rows_is_decoded_not_trusted(env: Path) -> None:
    layout = build_store(env, summaries=True)
    path = layout.parsed_kline_partition(SPOT, "BBBUSDT", "1m", 2024, 2)
    _rewrite(path, lambda t: t.slice(0, t.num_rows - 60))  # the last hour is gone
    doc, summary = run_json(symbols=("BBBUSDT",))
    record = by_symbol(doc)["BBBUSDT"]
    assert summary.notes["summaries"] == 0 and summary.files == 1
    assert record["bars_present"] == 16 * 60 + 2 * 1440 - 60 and record["last_day"] == "2024-02-04"


def test_deep_finds_a_summary_that_no_longer_matches_its_rows(env: Path, capsys: pytest.CaptureFixture) -> None:
    layout = build_store(env, summaries=True)
    path = layout.parsed_kline_partition(SPOT, "BBBUSDT", "1m", 2024, 2)

    def high_below_open(table: pa.Table) -> pa.Table:
        high = table.column("high").to_numpy().copy()
        times = table.column("candle_begin_time").cast(pa.int64()).to_numpy()
        high[times == ms("2024-02-03 12:00")] = 1.0
        return table.set_column(2, "high", pa.array(high))

    _rewrite(path, high_below_open)  # same rows, same times: the summary still looks like it fits
    trusting, _ = run_json(symbols=("BBBUSDT",))
    assert by_symbol(trusting)["BBBUSDT"]["ohlc_violations"]["rows"] == 0

    code, out, err = cli(["quality", "report", "spot", "1m", "BBBUSDT", "--deep", "--format", "json", "-o", str(env / "r.json")], capsys)
    record = by_symbol(json.loads((env / "r.json").read_text()))["BBBUSDT"]
    assert code == 3
    assert record["ohlc_violations"]["high_below_open_close"] == 1
    assert "disagrees with its rows" in err and "--force-update" in err and "Traceback" not in err


def test_summary_survives_every_archive_interval_and_rejects_another(tmp_path: Path) -> None:
    times = np.arange(ms("2024-03-01 00:00"), ms("2024-03-01 00:00") + 10 * 3_600_000, 3_600_000)
    table = pa.table({"candle_begin_time": pa.array(times).cast(pa.timestamp("ms", tz="UTC")),
                      **{c: np.full(len(times), 1.0) for c in ("open", "high", "low", "close", "volume")}})
    path = tmp_path / "p.pqt"
    pq.write_table(footer.with_summary(table, "1h", {}), path)
    stats = footer.stored_stats(pq.read_metadata(path), "1h")
    assert stats is not None and (stats.rows, stats.first, stats.last, stats.holes) == (10, int(times[0]), int(times[-1]), 0)
    assert footer.stored_stats(pq.read_metadata(path), "1m") is None  # a summary of another grid is not used
    pq.write_table(table, path)  # no summary at all
    assert footer.stored_stats(pq.read_metadata(path), "1h") is None and footer.parse_duplicates(pq.read_metadata(path)) is None


def test_archive_day_names_are_read_strictly() -> None:
    from bhds.quality.inventory import _day_numbers

    assert _day_numbers(["2024-01-01", "2024-02-29"]) == [19723, 19782]
    odd = ["2024-01-01", "      2024", " 024-01-01", "2024-02-30", "2024-1-1", "2024-01-01T"]
    assert _day_numbers(odd) == [19723, None, None, None, None, None]
