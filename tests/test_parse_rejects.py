"""Parse never loses a day to a bad file, and never lets an impossible row into `parsed_data`.

Every zip here is built from the bytes of Binance's real BTCUSDT 1m files of 2020-01-01..03
(tests/data/real), altered the way broken uploads are: times in seconds, another day's rows,
1-second bars in the 1m folder, NaN or non-positive prices, high below low, a time off the grid.
"""

from __future__ import annotations

import zipfile
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bhds.paths import Layout
from bhds.types import TradeType
from tests.test_parse_funding import funding_csv, month_rows
from tests.test_parse_support import put_funding_month, put_kline_day
from tests.test_parse_workflow import base, layout, parse, run_cli  # noqa: F401 (fixtures)

REAL = Path(__file__).resolve().parent / "data" / "real" / "spot" / "daily" / "klines" / "BTCUSDT" / "1m"
SPOT, UM = TradeType.spot, TradeType.um_futures
DAYS = [date(2020, 1, d) for d in (1, 2, 3)]
DAY2 = "BTCUSDT-1m-2020-01-02.zip"
MINUTE, DAY_MS = 60_000, 86_400_000


def real_rows(day: date) -> list[list[bytes]]:
    """The CSV rows of Binance's real file of `day`, as lists of fields."""
    with zipfile.ZipFile(REAL / f"BTCUSDT-1m-{day.isoformat()}.zip") as zf:
        text = zf.read(zf.namelist()[0])
    return [line.split(b",") for line in text.splitlines()]


def csv_of(rows: list[list[bytes]]) -> bytes:
    return b"".join(b",".join(fields) + b"\n" for fields in rows)


def retimed(rows: list[list[bytes]], change) -> list[list[bytes]]:
    """`rows` with open and close time replaced by change(time)."""
    return [[str(change(int(r[0]))).encode(), *r[1:6], str(change(int(r[6]))).encode(), *r[7:]] for r in rows]


def as_seconds(rows: list[list[bytes]]) -> list[list[bytes]]:
    """Each minute's row repeated for its 60 seconds: what a 1s file looks like in the 1m folder."""
    seconds = [r for second in range(60) for r in retimed(rows, lambda t, s=second: t + s * 1000)]
    return sorted(seconds, key=lambda r: int(r[0]))


def partition(layout: Layout) -> Path:
    return layout.parsed_kline_partition(SPOT, "BTCUSDT", "1m", 2020, 1)


def day_rows(table: pa.Table, day: date) -> pa.Table:
    times = table.column("candle_begin_time").cast(pa.int64()).to_numpy()
    start = int(np.datetime64(day, "ms").astype(np.int64))
    return table.filter(pa.array((times >= start) & (times < start + DAY_MS)))


@pytest.fixture
def parsed(layout: Layout, base: Path) -> pa.Table:
    """The three real days, parsed cleanly: what a bad re-upload of day 2 must not lose."""
    for day in DAYS:
        put_kline_day(layout, SPOT, "BTCUSDT", "1m", day, csv_of(real_rows(day)), mtime_ns=10**18)
    summary = parse(base)
    assert summary.failed == 0 and summary.rows == 3 * 1440
    return pq.read_table(partition(layout))


def reupload_day2(layout: Layout, rows: list[list[bytes]]) -> None:
    put_kline_day(layout, SPOT, "BTCUSDT", "1m", DAYS[1], csv_of(rows), mtime_ns=10**18 + 1)


@pytest.mark.parametrize(("alter", "says"), [
    (lambda rows: retimed(rows, lambda t: t // 1000), "1440 of 1440 rows lie outside 2020-01-02 UTC (1970-01-19 "),
    (lambda rows: real_rows(DAYS[2]), "1440 of 1440 rows lie outside 2020-01-02 UTC (2020-01-03 00:00 to 2020-01-03 23:59)"),
    (lambda rows: retimed(rows, lambda t: t + 6 * 3_600_000), "360 of 1440 rows lie outside 2020-01-02 UTC"),
    (lambda rows: rows[:-1] + retimed(rows[-1:], lambda t: t + 5 * DAY_MS), "1 of 1440 rows lie outside 2020-01-02 UTC (2020-01-07 23:59)"),
    (lambda rows: as_seconds(rows), "84960 of 86400 rows are off the 1m grid"),
], ids=["times in seconds", "the next day's file", "clock six hours late", "one row days away", "1s bars in the 1m folder"])
def test_a_file_whose_times_do_not_fit_its_day_is_refused_and_the_day_keeps_its_rows(
        monkeypatch, capsys, base: Path, layout: Layout, parsed: pa.Table, alter, says: str) -> None:
    reupload_day2(layout, alter(real_rows(DAYS[1])))
    for _ in range(2):  # a re-run of the unchanged file fails again, as loudly
        code, out, err = run_cli(monkeypatch, capsys, base, "aws_kline", "parse", "spot", "1m", "BTCUSDT")
        assert code == 3
        failure = [line for line in err.splitlines() if DAY2 in line]
        assert len(failure) == 1 and says in failure[0], err
        assert "the day keeps the rows it had" in failure[0]
        assert "rows=0" in out and "files=0" in out  # its rows are not counted as parsed
        assert pq.read_table(partition(layout)).equals(parsed)
    # --force-update rebuilds from the zips, and still keeps the refused file's day.
    code, _, _ = run_cli(monkeypatch, capsys, base, "aws_kline", "parse", "spot", "1m", "BTCUSDT", "--force-update")
    assert code == 3
    assert pq.read_table(partition(layout)).equals(parsed)


def test_times_in_seconds_are_called_so(base: Path, layout: Layout, parsed: pa.Table) -> None:
    reupload_day2(layout, retimed(real_rows(DAYS[1]), lambda t: t // 1000))
    (failure,) = parse(base).failures
    assert "times in seconds?" in failure


def test_impossible_rows_are_dropped_counted_and_the_rest_kept(monkeypatch, capsys, base: Path, layout: Layout,
                                                               parsed: pa.Table) -> None:
    rows = real_rows(DAYS[1])
    rows[10][1] = b"NaN"  # open
    rows[11][4] = b"nan"  # close
    rows[12][3] = b"0"  # low of zero
    rows[13][2], rows[13][3] = rows[13][3], b"99999"  # high below low
    rows[14][0] = str(int(rows[14][0]) + 1000).encode()  # 00:14:01, off the 1m grid
    rows[15][5] = b"-1"  # negative volume
    reupload_day2(layout, rows)
    for _ in range(2):
        code, out, err = run_cli(monkeypatch, capsys, base, "aws_kline", "parse", "spot", "1m", "BTCUSDT")
        assert code == 3
        assert (f"{DAY2}: 6 rows rejected (2 NaN price, 1 non-positive price, 1 high below low, "
                "1 NaN, infinite or negative volume, 1 off the 1m grid)") in err
        assert "rows=1,434" in out and "rejected=6" in out
        table = pq.read_table(partition(layout))
        day2 = day_rows(table, DAYS[1])
        assert day2.num_rows == 1434 and table.num_rows == 3 * 1440 - 6
        good = [i for i in range(1440) if not 10 <= i <= 15]
        assert day2.equals(day_rows(parsed, DAYS[1]).take(good))  # the good rows, unchanged
        for name in ("open", "high", "low", "close"):
            values = table.column(name).to_numpy()
            assert np.isfinite(values).all() and (values > 0).all()
    # A corrected upload parses cleanly and fills the day again.
    put_kline_day(layout, SPOT, "BTCUSDT", "1m", DAYS[1], csv_of(real_rows(DAYS[1])), mtime_ns=10**18 + 2)
    assert parse(base).failed == 0
    assert pq.read_table(partition(layout)).equals(parsed)


def test_a_file_with_no_usable_row_of_its_day_is_refused(base: Path, layout: Layout, parsed: pa.Table) -> None:
    rows = real_rows(DAYS[1])
    for row in rows:
        row[1] = b"NaN"
    reupload_day2(layout, rows)
    (failure,) = parse(base).failures
    assert failure.startswith(f"{DAY2}: no usable row of 2020-01-02 (1440 NaN price); the day keeps the rows it had")
    assert pq.read_table(partition(layout)).equals(parsed)


def test_a_first_parse_of_a_refused_file_writes_only_the_good_days(base: Path, layout: Layout) -> None:
    put_kline_day(layout, SPOT, "BTCUSDT", "1m", DAYS[0], csv_of(real_rows(DAYS[0])))
    put_kline_day(layout, SPOT, "BTCUSDT", "1m", DAYS[1], csv_of(retimed(real_rows(DAYS[1]), lambda t: t // 1000)))
    summary = parse(base)
    assert summary.failed == 1 and summary.files == 1 and summary.rows == 1440
    times = pq.read_table(partition(layout)).column("candle_begin_time").cast(pa.int64()).to_numpy()
    assert len(times) == 1440 and times.min() == int(np.datetime64("2020-01-01", "ms").astype(np.int64))


HOUR = 3_600_000


def test_a_funding_file_outside_its_month_is_refused_and_the_month_keeps_its_rows(base: Path, layout: Layout) -> None:
    from tests.test_parse_funding import parse_all

    put_funding_month(layout, UM, "BTCUSDT", 2024, 1, funding_csv(month_rows(2024, 1)), mtime_ns=10**18)
    put_funding_month(layout, UM, "BTCUSDT", 2024, 2, funding_csv(month_rows(2024, 2)), mtime_ns=10**18)
    assert parse_all(base).failed == 0
    path = layout.parsed_funding_file(UM, "BTCUSDT")
    before = pq.read_table(path)
    # February re-uploaded with its times in seconds, then with March's rows.
    in_seconds = [(t // 1000, h, r) for t, h, r in month_rows(2024, 2)]
    for rows, says in ((in_seconds, "6 of 6 rows lie outside 2024-02 UTC (1970-01-20"),
                       (month_rows(2024, 3), "5 of 6 rows lie outside 2024-02 UTC (2024-03-01 08:00 to 2024-03-02 16:00)")):
        put_funding_month(layout, UM, "BTCUSDT", 2024, 2, funding_csv(rows), mtime_ns=10**18 + 1)
        for _ in range(2):
            summary = parse_all(base)
            assert summary.failed == 1 and says in summary.failures[0] and "BTCUSDT-fundingRate-2024-02.zip" in summary.failures[0]
            assert summary.rows == 6  # January only
            assert pq.read_table(path).equals(before)
    # Settlements stamped a few ms after the hour at the month's end stay with their file.
    late = month_rows(2024, 2) + [(int(np.datetime64("2024-03-01", "ms").astype(np.int64)) + 5, 8, "0.0001")]
    put_funding_month(layout, UM, "BTCUSDT", 2024, 2, funding_csv(late), mtime_ns=10**18 + 2)
    assert parse_all(base).failed == 0
    assert pq.read_table(path).num_rows == 13


@pytest.mark.parametrize(("extra", "refused"), [(1, False), (14, False), (15, True)])
def test_up_to_one_percent_of_a_files_rows_may_be_the_next_days(base: Path, layout: Layout, extra: int, refused: bool) -> None:
    """Real day 1 followed by the first `extra` rows of real day 2: 1% of the rows (14 of 1440 + 14) is allowed."""
    rows = real_rows(DAYS[0]) + real_rows(DAYS[1])[:extra]
    put_kline_day(layout, SPOT, "BTCUSDT", "1m", DAYS[0], csv_of(rows))
    summary = parse(base)
    assert summary.failed == int(refused)
    if refused:
        assert f"{extra} of {1440 + extra} rows lie outside 2020-01-01 UTC" in summary.failures[0]
        assert not partition(layout).exists()
    else:
        assert pq.read_table(partition(layout)).num_rows == 1440 + extra  # day 2 has no file: the rows fill it


def test_a_file_with_rejected_rows_is_reported_again_but_its_partition_is_not_rewritten(layout: Layout, base: Path) -> None:
    """Re-reporting must not churn: the partition keeps its mtime, so generate finds nothing changed."""
    from bhds.workflows import generate
    from tests.test_generate_support import settings_for

    options = dict(split_gaps=True, min_days=1, min_price_chg=0.1, with_vwap=True, with_funding_rates=True)
    for day in DAYS:
        put_kline_day(layout, SPOT, "BTCUSDT", "1m", day, csv_of(real_rows(day)), mtime_ns=10**18)
    rows = real_rows(DAYS[1])
    rows[10][1] = b"NaN"
    reupload_day2(layout, rows)
    assert parse(base).failed == 1
    settings = settings_for(base)
    generate.kline_type(settings, trade_type=SPOT, time_interval="1m", **options)
    mtime = partition(layout).stat().st_mtime_ns
    again = parse(base)
    assert again.failed == 1 and "1 rows rejected (1 NaN price)" in again.failures[0]  # still loud
    assert partition(layout).stat().st_mtime_ns == mtime
    assert generate.kline_type(settings, trade_type=SPOT, time_interval="1m", **options).notes.get("unchanged") == 1
