"""Kline zips → KLINE_SCHEMA tables: real Binance files, header detection, ms/µs, broken files."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pyarrow as pa
import pytest

from bhds.parse import klines, partitions
from bhds.parse.timeline import month_window
from bhds.parse.zipcsv import BadSourceFile, csv_body, read_member, strip_header
from bhds.schema import KLINE_SCHEMA
from tests.test_parse_support import day_times, kline_csv, ms, zip_bytes

REAL = Path(__file__).resolve().parent / "data" / "real" / "spot" / "daily" / "klines" / "BTCUSDT" / "1m"


def _parse_zip(data: bytes) -> pa.Table:
    return klines.parse_rows(csv_body(data))


def test_real_spot_files_golden() -> None:
    tables = [_parse_zip((REAL / f"BTCUSDT-1m-2020-01-0{d}.zip").read_bytes()) for d in (1, 2, 3)]
    assert [t.num_rows for t in tables] == [1440, 1440, 1440]
    for d, table in zip((1, 2, 3), tables):
        assert table.schema == KLINE_SCHEMA
        times = table.column("candle_begin_time").cast(pa.int64()).to_pylist()
        assert times == day_times(date(2020, 1, d))  # every minute of the day, in order
    first = tables[0].slice(0, 1).to_pylist()[0]
    assert first["candle_begin_time"].isoformat() == "2020-01-01T00:00:00+00:00"
    assert {k: v for k, v in first.items() if k != "candle_begin_time"} == {
        "open": 7195.24, "high": 7196.25, "low": 7183.14, "close": 7186.68, "volume": 51.642812,
        "quote_volume": 371233.51835535, "trade_num": 493, "taker_buy_base_asset_volume": 19.59823,
        "taker_buy_quote_asset_volume": 140888.41428273,
    }
    last = tables[2].slice(1439, 1).to_pylist()[0]
    assert last["candle_begin_time"].isoformat() == "2020-01-03T23:59:00+00:00"
    assert (last["open"], last["high"], last["low"], last["close"]) == (7315.18, 7345.0, 7315.18, 7344.96)
    assert (last["volume"], last["quote_volume"], last["trade_num"]) == (162.222127, 1189827.85045958, 820)
    assert (last["taker_buy_base_asset_volume"], last["taker_buy_quote_asset_volume"]) == (108.714154, 797359.09303179)


def test_header_or_not_gives_the_same_table() -> None:
    times = day_times(date(2023, 5, 1), count=30)
    plain = _parse_zip(zip_bytes({"a.csv": kline_csv(times)}))
    headed = _parse_zip(zip_bytes({"a.csv": kline_csv(times, header=True)}))
    crlf = _parse_zip(zip_bytes({"a.csv": kline_csv(times, header=True).replace(b"\n", b"\r\n")}))
    bom = _parse_zip(zip_bytes({"a.csv": b"\xef\xbb\xbf" + kline_csv(times, header=True)}))
    assert plain.num_rows == 30
    assert plain.equals(headed) and plain.equals(crlf) and plain.equals(bom)


def test_microseconds_and_milliseconds_give_one_timeline() -> None:
    # Spot switched to µs on 2025-01-01: the last ms day and the first µs day join without a jump.
    dec31 = day_times(date(2024, 12, 31), count=1440)
    jan1 = day_times(date(2025, 1, 1), count=1440)
    before = _parse_zip(zip_bytes({"a.csv": kline_csv(dec31)}))
    after = _parse_zip(zip_bytes({"a.csv": kline_csv(jan1, micro=True)}))
    joined = pa.concat_tables([before, after]).column("candle_begin_time").cast(pa.int64()).to_pylist()
    assert joined == dec31 + jan1
    assert after.column("candle_begin_time").type == pa.timestamp("ms", tz="UTC")
    # The same rows written in ms parse identically, and the unit is decided per value.
    assert after.equals(_parse_zip(zip_bytes({"a.csv": kline_csv(jan1)})))
    mixed = kline_csv(jan1[:2]) + kline_csv(jan1[2:4], micro=True)
    assert _parse_zip(zip_bytes({"a.csv": mixed})).column("candle_begin_time").cast(pa.int64()).to_pylist() == jan1[:4]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"this is not a zip", "not a readable zip"),
        (zip_bytes({}), "found 0"),
        (zip_bytes({"a.csv": b"1,2\n", "b.csv": b"1,2\n"}), "found 2 (a.csv, b.csv)"),
        (zip_bytes({"a.csv": b""}), "no data rows"),
        (zip_bytes({"a.csv": b"open_time,open\n"}), "no data rows"),
    ],
)
def test_unusable_zips_say_why(data: bytes, reason: str) -> None:
    with pytest.raises(BadSourceFile, match=reason.replace("(", r"\(").replace(")", r"\)")):
        csv_body(data)


def test_truncated_zip_is_unreadable() -> None:
    good = zip_bytes({"a.csv": kline_csv(day_times(date(2023, 5, 1)))})
    with pytest.raises(BadSourceFile, match="not a readable zip"):
        read_member(good[: len(good) // 2])


@pytest.mark.parametrize(
    "bad_line",
    [
        b"1682899260000,abc,1,1,1,1,1682899319999,1,1,1,1,0",  # a word where a price belongs
        b"1682899260000,1,1,1,1,1,1682899319999,1,1,1,1",  # 11 columns
        b"1682899260000,,1,1,1,1,1682899319999,1,1,1,1,0",  # an empty value
        b"1682899260000,1,1,1,1,1,1682899319999,1,2.5,1,1,0",  # a fractional trade count
    ],
)
def test_a_malformed_row_fails_the_file(bad_line: bytes) -> None:
    csv = kline_csv(day_times(date(2023, 5, 1), count=3)) + bad_line + b"\n"
    with pytest.raises(BadSourceFile, match="unparseable CSV row"):
        klines.parse_rows(strip_header(csv))


def test_parse_many_isolates_the_bad_file_and_keeps_order() -> None:
    days = [date(2023, 5, d) for d in (1, 2, 3)]
    bodies = [(f"d{i}", kline_csv(day_times(d, count=10))) for i, d in enumerate(days)]
    bodies.insert(1, ("bad", b"1,2,3\n"))
    table, failures, sources = klines.parse_many(iter(bodies))
    assert [name for name, _ in failures] == ["bad"]
    assert table.column("candle_begin_time").cast(pa.int64()).to_pylist() == [t for d in days for t in day_times(d, count=10)]
    assert sources == [("d0", 10), ("d1", 10), ("d2", 10)]


def test_parse_many_knows_each_rows_file_even_with_blank_lines() -> None:
    first = kline_csv(day_times(date(2023, 5, 1), count=4))
    second = kline_csv(day_times(date(2023, 5, 2), count=3)) + b"\n\n"  # pyarrow skips the blank lines
    table, failures, sources = klines.parse_many([("a", first), ("b", second), ("c", first)])
    assert not failures and table.num_rows == 11
    assert sources == [("a", 4), ("b", 3), ("c", 4)]


def test_parse_many_batches_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = klines.parse_rows
    monkeypatch.setattr(klines, "parse_rows", lambda csv: calls.append(len(csv)) or real(csv))
    monkeypatch.setattr(klines, "MAX_BATCH_BYTES", 3000)
    bodies = [(str(d), kline_csv(day_times(date(2023, 5, d), count=10))) for d in range(1, 8)]
    table, failures, sources = klines.parse_many(bodies)
    assert not failures and table.num_rows == 70 and sources == [(str(d), 10) for d in range(1, 8)]
    assert len(calls) > 1 and max(calls) <= 3000


def test_month_window_keeps_the_last_instant() -> None:
    start, end = month_window(2024, 1)
    assert (start, end) == (ms(2024, 1, 1), ms(2024, 2, 1))
    assert month_window(2024, 12) == (ms(2024, 12, 1), ms(2025, 1, 1))
    times = [ms(2023, 12, 31, 23, 59, 59), ms(2024, 1, 1), ms(2024, 1, 31, 23, 59, 59), ms(2024, 2, 1)]
    table = pa.table({"candle_begin_time": pa.array(times).cast(pa.timestamp("ms", tz="UTC"))})
    kept = partitions.within(table, start, end).column(0).cast(pa.int64()).to_pylist()
    assert kept == times[1:3]


def test_merge_dedups_newest_wins_and_sorts() -> None:
    def table(times: list[int], value: float) -> pa.Table:
        return pa.table({"candle_begin_time": pa.array(times).cast(pa.timestamp("ms", tz="UTC")), "v": [value] * len(times)})

    merged = partitions.merge(table([3, 1, 2], 0.0), table([2, 4, 4], 1.0).set_column(1, "v", pa.array([1.0, 1.0, 2.0])))
    assert merged.column(0).cast(pa.int64()).to_pylist() == [1, 2, 3, 4]
    assert merged.column("v").to_pylist() == [0.0, 1.0, 0.0, 2.0]
