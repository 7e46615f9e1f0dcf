"""`aws_kline parse | parse-type-all` end to end on a temporary data directory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import date
from pathlib import Path

import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bhds.cli import main
from bhds.paths import TEMP_MARKER, Layout
from bhds.schema import KLINE_SCHEMA
from bhds.types import ARCHIVE_INTERVALS, TradeType
from bhds.workflows import parse as parse_workflow
from tests.test_parse_support import INTERVAL_MS, day_times, env_for, kline_csv, make_settings, ms, put_kline_day, put_zip, zip_bytes

REPO = Path(__file__).resolve().parent.parent
REAL = REPO / "tests" / "data" / "real" / "spot" / "daily" / "klines" / "BTCUSDT" / "1m"
SPOT, UM = TradeType.spot, TradeType.um_futures


@pytest.fixture
def base(tmp_path: Path) -> Path:
    return tmp_path / "crypto"


@pytest.fixture
def layout(base: Path) -> Layout:
    return Layout(base / "binance_data")


def parse(base: Path, symbols=("BTCUSDT",), interval="1m", trade_type=SPOT, force=False, n_jobs=1):
    return parse_workflow.kline_parse(make_settings(base, n_jobs), trade_type=trade_type, time_interval=interval,
                                      symbols=list(symbols), force_update=force)


def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, base: Path, *argv: str) -> tuple[int, str, str]:
    for key, value in env_for(base).items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SystemExit) as stop:
        main(list(argv))
    out, err = capsys.readouterr()
    return stop.value.code, out, err


def times_of(path: Path) -> list[int]:
    return pq.read_table(path).column("candle_begin_time").cast(pa.int64()).to_pylist()


def test_real_files_through_the_cli(monkeypatch, capsys, base: Path, layout: Layout) -> None:
    target = layout.aws_kline_dir(SPOT, "BTCUSDT", "1m")
    target.mkdir(parents=True)
    for zip_path in sorted(REAL.glob("*.zip")):
        put_zip(target / zip_path.name, zip_path.read_bytes())
    code, out, _ = run_cli(monkeypatch, capsys, base, "aws_kline", "parse-type-all", "spot", "1m")
    assert code == 0
    assert "files=3 rows=4,320" in out and "failed=0" in out
    path = layout.parsed_kline_partition(SPOT, "BTCUSDT", "1m", 2020, 1)
    table = pq.read_table(path)
    assert table.schema.remove_metadata() == KLINE_SCHEMA
    assert table.num_rows == 4320 and times_of(path) == sorted(set(times_of(path)))
    frame = pd.read_parquet(path)
    assert str(frame["candle_begin_time"].dtype) == "datetime64[ms, UTC]" and frame["trade_num"].dtype == "int64"
    assert frame.iloc[0]["open"] == 7195.24 and frame.iloc[-1]["close"] == 7344.96
    # A second run has nothing to do and does not touch the partition.
    before = path.stat().st_mtime_ns
    code, out, _ = run_cli(monkeypatch, capsys, base, "aws_kline", "parse", "spot", "1m", "BTCUSDT")
    assert code == 0 and "files=0" in out and "skipped=3" in out
    assert path.stat().st_mtime_ns == before


def test_only_verified_zips_are_read(base: Path, layout: Layout) -> None:
    put_kline_day(layout, SPOT, "BTCUSDT", "1m", date(2023, 5, 1), kline_csv(day_times(date(2023, 5, 1), count=5)))
    put_kline_day(layout, SPOT, "BTCUSDT", "1m", date(2023, 5, 2), kline_csv(day_times(date(2023, 5, 2), count=5)), verified=False)
    summary = parse(base)
    assert summary.files == 1
    assert times_of(layout.parsed_kline_partition(SPOT, "BTCUSDT", "1m", 2023, 5)) == day_times(date(2023, 5, 1), count=5)


def test_ms_and_us_files_across_2025_make_one_timeline(base: Path, layout: Layout) -> None:
    days = [date(2024, 12, 30), date(2024, 12, 31), date(2025, 1, 1), date(2025, 1, 2)]
    for day in days:
        put_kline_day(layout, SPOT, "BTCUSDT", "1m", day, kline_csv(day_times(day), micro=day.year == 2025))
    summary = parse(base)
    assert summary.failed == 0 and summary.rows == 4 * 1440
    dec = times_of(layout.parsed_kline_partition(SPOT, "BTCUSDT", "1m", 2024, 12))
    jan = times_of(layout.parsed_kline_partition(SPOT, "BTCUSDT", "1m", 2025, 1))
    assert dec + jan == [t for day in days for t in day_times(day)]


def test_1s_keeps_the_last_second_of_the_month(base: Path, layout: Layout) -> None:
    last_day = date(2024, 1, 31)
    times = [ms(2024, 1, 31, 23, 59, s) for s in range(50, 60)] + [ms(2024, 2, 1)]  # one stray row of February
    put_kline_day(layout, SPOT, "BTCUSDT", "1s", last_day, kline_csv(times, "1s"))
    summary = parse(base, interval="1s")
    assert summary.failed == 0
    kept = times_of(layout.parsed_kline_partition(SPOT, "BTCUSDT", "1s", 2024, 1))
    assert kept[-1] == ms(2024, 1, 31, 23, 59, 59) and kept == times[:-1]


@pytest.mark.parametrize("interval", ARCHIVE_INTERVALS)
def test_every_archive_interval_parses(base: Path, layout: Layout, interval: str) -> None:
    # 2024-03-01 is a month start, so a plausible first bar for 1w and 1mo files too.
    step = INTERVAL_MS.get(interval, 0)  # 0: one month
    times = [ms(2024, 3, 1) + i * step for i in range(3)] if 0 < step < 86_400_000 else [ms(2024, 3, 1)]
    put_kline_day(layout, UM, "BTCUSDT", interval, date(2024, 3, 1), kline_csv(times, interval, header=True))
    summary = parse(base, interval=interval, trade_type=UM)
    assert summary.failed == 0 and summary.files == 1
    assert times_of(layout.parsed_kline_partition(UM, "BTCUSDT", interval, 2024, 3)) == times


def test_reuploaded_zip_reparses_only_its_month_and_replaces_its_day(base: Path, layout: Layout) -> None:
    days = [date(2024, 1, 30), date(2024, 1, 31), date(2024, 2, 1)]
    zips = {day: put_kline_day(layout, SPOT, "BTCUSDT", "1m", day, kline_csv(day_times(day)), mtime_ns=10**18) for day in days}
    assert parse(base).files == 3
    jan = layout.parsed_kline_partition(SPOT, "BTCUSDT", "1m", 2024, 1)
    feb = layout.parsed_kline_partition(SPOT, "BTCUSDT", "1m", 2024, 2)
    jan_before, feb_before = pl.read_parquet(jan), feb.stat().st_mtime_ns

    # Binance re-uploads Jan 31 with corrected prices and one minute fewer.
    fixed = day_times(date(2024, 1, 31))[:-1]
    put_kline_day(layout, SPOT, "BTCUSDT", "1m", date(2024, 1, 31), kline_csv(fixed, bump=5.0), mtime_ns=10**18 + 1)
    summary = parse(base)
    assert (summary.files, summary.skipped, summary.notes["partitions"]) == (1, 2, 1)
    assert feb.stat().st_mtime_ns == feb_before
    jan_after = pl.read_parquet(jan)
    assert jan_after.height == jan_before.height - 1
    day30 = pl.col("candle_begin_time") < pl.datetime(2024, 1, 31, time_zone="UTC")
    assert jan_after.filter(day30).equals(jan_before.filter(day30))
    assert (jan_after.filter(~day30)["open"] - jan_before.filter(~day30)["open"].head(1439)).round(6).unique().to_list() == [5.0]
    assert zips  # the zips stayed where they were


def test_deleted_partition_is_rebuilt(base: Path, layout: Layout) -> None:
    put_kline_day(layout, SPOT, "BTCUSDT", "1m", date(2024, 1, 5), kline_csv(day_times(date(2024, 1, 5))))
    parse(base)
    path = layout.parsed_kline_partition(SPOT, "BTCUSDT", "1m", 2024, 1)
    path.unlink()
    assert parse(base).files == 1 and path.exists()


def test_truncated_partition_is_rebuilt_though_its_zips_are_unchanged(monkeypatch, capsys, base: Path, layout: Layout) -> None:
    days = [date(2024, 1, 5), date(2024, 1, 6)]
    for day in days:
        put_kline_day(layout, SPOT, "BTCUSDT", "1m", day, kline_csv(day_times(day)))
    parse(base)
    path = layout.parsed_kline_partition(SPOT, "BTCUSDT", "1m", 2024, 1)
    whole = pq.read_table(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # a copy cut short
    code, out, err = run_cli(monkeypatch, capsys, base, "aws_kline", "parse", "spot", "1m", "BTCUSDT")
    assert code == 0 and "files=2 " in out and "failed=0" in out
    assert "unreadable and was rebuilt" in err
    assert pq.read_table(path).equals(whole)
    assert parse(base).files == 0


def test_legacy_partition_is_adopted_and_extended(base: Path, layout: Layout) -> None:
    # bhds.py (polars) wrote January 1-2; its zips are older than the partition. Jan 3 is new.
    old_ns = 1_700_000_000 * 10**9
    for d in (1, 2, 3):
        put_kline_day(layout, SPOT, "BTCUSDT", "1m", date(2024, 1, d), kline_csv(day_times(date(2024, 1, d))), mtime_ns=old_ns)
    legacy = (pl.DataFrame({"t": day_times(date(2024, 1, 1)) + day_times(date(2024, 1, 2))})
              .select(pl.col("t").cast(pl.Datetime("ms")).dt.replace_time_zone("UTC").alias("candle_begin_time"),
                      *[pl.lit(1.5).alias(c) for c in ("open", "high", "low", "close", "volume", "quote_volume")],
                      pl.lit(7, dtype=pl.Int64).alias("trade_num"),
                      *[pl.lit(2.5).alias(c) for c in ("taker_buy_base_asset_volume", "taker_buy_quote_asset_volume")]))
    path = layout.parsed_kline_partition(SPOT, "BTCUSDT", "1m", 2024, 1)
    path.parent.mkdir(parents=True)
    legacy.write_parquet(path)
    legacy_pandas = pd.read_parquet(path).dtypes

    summary = parse(base)
    assert (summary.files, summary.skipped) == (1, 2)  # days 1-2 adopted without reading their zips
    ours = pl.read_parquet(path)
    assert ours.schema == legacy.schema and pd.read_parquet(path).dtypes.equals(legacy_pandas)
    assert ours.height == 3 * 1440
    assert ours.head(2 * 1440).equals(legacy)  # nothing lost or changed
    assert parse(base).files == 0  # and now recorded

    # A zip downloaded after the partition was written is parsed even though its day has rows.
    put_kline_day(layout, SPOT, "BTCUSDT", "1m", date(2024, 1, 2), kline_csv(day_times(date(2024, 1, 2)), bump=1.0),
                  mtime_ns=path.stat().st_mtime_ns + 10**9)
    assert parse(base).files == 1
    assert pl.read_parquet(path).filter(pl.col("candle_begin_time").dt.day() == 2)["open"].min() > 1.5


def test_force_update_rebuilds_from_the_zips(base: Path, layout: Layout) -> None:
    put_kline_day(layout, SPOT, "BTCUSDT", "1m", date(2024, 1, 1), kline_csv(day_times(date(2024, 1, 1))))
    parse(base)
    path = layout.parsed_kline_partition(SPOT, "BTCUSDT", "1m", 2024, 1)
    extra = pl.read_parquet(path).with_columns(pl.col("candle_begin_time") + pl.duration(days=5))
    pl.concat([pl.read_parquet(path), extra]).write_parquet(path)  # rows no zip has
    assert parse(base).files == 0 and pl.read_parquet(path).height == 2880
    summary = parse(base, force=True)
    assert summary.files == 1 and pl.read_parquet(path).height == 1440


def _with_bad_crc(zip_data: bytes) -> bytes:
    """The same zip with the CRC-32 of its (only) member changed in both headers."""
    raw = bytearray(zip_data)
    raw[14] ^= 0xFF  # local file header
    raw[raw.rfind(b"PK\x01\x02") + 16] ^= 0xFF  # central directory
    return bytes(raw)


def test_broken_files_are_reported_and_the_rest_completes(monkeypatch, capsys, base: Path, layout: Layout) -> None:
    good_days = [date(2024, 1, 1), date(2024, 1, 9), date(2024, 2, 1)]
    for day in good_days:
        put_kline_day(layout, SPOT, "BTCUSDT", "1m", day, kline_csv(day_times(day)))
    folder = layout.aws_kline_dir(SPOT, "BTCUSDT", "1m")
    bad = {
        "BTCUSDT-1m-2024-01-02.zip": b"PK\x03\x04 garbage",
        "BTCUSDT-1m-2024-01-03.zip": zip_bytes({"a.csv": b""}),
        "BTCUSDT-1m-2024-01-04.zip": zip_bytes({}),
        "BTCUSDT-1m-2024-01-05.zip": zip_bytes({"a.csv": b"1,2\n", "b.csv": b"1,2\n"}),
        "BTCUSDT-1m-2024-01-06.zip": zip_bytes({"a.csv": kline_csv(day_times(date(2024, 1, 6), count=3)) + b"1704499380000,x,1,1,1,1,1,1,1,1,1,0\n"}),
        # Inflates cleanly but fails its CRC-32: verify no longer inflates a zip whose SHA-256 matches, so parse must catch it.
        "BTCUSDT-1m-2024-01-07.zip": _with_bad_crc(zip_bytes({"a.csv": kline_csv(day_times(date(2024, 1, 7)))})),
    }
    for name, data in bad.items():
        put_zip(folder / name, data)
    code, out, err = run_cli(monkeypatch, capsys, base, "aws_kline", "parse", "spot", "1m", "BTCUSDT")
    assert code == 3
    assert "files=3" in out and "failed=6" in out
    for name in bad:
        assert f"bhds: failed: {name}: " in err
    assert "Bad CRC-32" in err
    assert "Traceback" not in err
    jan = times_of(layout.parsed_kline_partition(SPOT, "BTCUSDT", "1m", 2024, 1))
    assert jan == day_times(date(2024, 1, 1)) + day_times(date(2024, 1, 9))
    # Broken files are tried again on the next run (and fail again); good ones are not re-read.
    code, out, _ = run_cli(monkeypatch, capsys, base, "aws_kline", "parse", "spot", "1m", "BTCUSDT")
    assert code == 3 and "failed=6" in out and "files=0" in out


def test_failed_write_leaves_the_old_partition(monkeypatch, base: Path, layout: Layout) -> None:
    put_kline_day(layout, SPOT, "BTCUSDT", "1m", date(2024, 1, 1), kline_csv(day_times(date(2024, 1, 1))))
    parse(base)
    path = layout.parsed_kline_partition(SPOT, "BTCUSDT", "1m", 2024, 1)
    before = path.read_bytes()
    put_kline_day(layout, SPOT, "BTCUSDT", "1m", date(2024, 1, 2), kline_csv(day_times(date(2024, 1, 2))))

    def full_disk(table, where, **kw):
        Path(where).write_bytes(b"PAR1 half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("bhds.storage.pq.write_table", full_disk)
    summary = parse(base)
    assert summary.failed == 1 and "disk full" in summary.failures[0]
    assert path.read_bytes() == before
    assert not list(path.parent.glob(f"*{TEMP_MARKER}"))
    monkeypatch.undo()
    assert parse(base).files == 1 and len(times_of(path)) == 2880  # the failed day was not recorded


KILL_SCRIPT = """
import os, signal, sys
import pyarrow.parquet as pq
real = pq.write_table
def write_then_die(table, where, **kw):
    real(table, where, **kw)
    os.kill(os.getpid(), signal.SIGKILL)  # dies after the temp file is written, before the rename
pq.write_table = write_then_die
from bhds.cli import main
main(sys.argv[1:])
"""


def test_killed_mid_write_leaves_the_old_partition(base: Path, layout: Layout) -> None:
    put_kline_day(layout, SPOT, "BTCUSDT", "1m", date(2024, 1, 1), kline_csv(day_times(date(2024, 1, 1))))
    parse(base)
    path = layout.parsed_kline_partition(SPOT, "BTCUSDT", "1m", 2024, 1)
    before = path.read_bytes()
    put_kline_day(layout, SPOT, "BTCUSDT", "1m", date(2024, 1, 2), kline_csv(day_times(date(2024, 1, 2))))
    env = {**os.environ, **env_for(base), "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", KILL_SCRIPT, "aws_kline", "parse", "spot", "1m", "BTCUSDT"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert path.read_bytes() == before
    assert len(list(path.parent.glob(f"*{TEMP_MARKER}"))) == 1  # the orphan of the killed run
    summary = parse(base)  # the next run cleans up and finishes the job
    assert summary.files == 1 and len(times_of(path)) == 2880
    assert not list(path.parent.glob(f"*{TEMP_MARKER}"))


def test_pool_and_in_process_give_the_same_files(monkeypatch, tmp_path: Path) -> None:
    outputs = []
    for n_jobs in (1, 2):
        base = tmp_path / f"jobs{n_jobs}"
        layout = Layout(base / "binance_data")
        for symbol in ("AAAUSDT", "BBBUSDT"):
            for day in (date(2024, 1, 31), date(2024, 2, 1), date(2024, 2, 2)):
                put_kline_day(layout, SPOT, symbol, "1m", day, kline_csv(day_times(day), bump=len(symbol)))
        monkeypatch.setattr(parse_workflow, "POOL_MIN_BYTES", 0)
        summary = parse_workflow.kline_parse_type_all(make_settings(base, n_jobs), trade_type=SPOT, time_intervals=["1m"], force_update=False)
        assert summary.files == 6 and summary.failed == 0 and summary.notes["partitions"] == 4
        outputs.append({p.relative_to(base): pl.read_parquet(p) for p in sorted((base / "binance_data" / "parsed_data").rglob("*.pqt"))})
    assert outputs[0].keys() == outputs[1].keys() and len(outputs[0]) == 4
    assert all(outputs[0][k].equals(outputs[1][k]) for k in outputs[0])


def test_nothing_to_parse_is_said_not_crashed(monkeypatch, capsys, base: Path, layout: Layout, caplog) -> None:
    code, out, err = run_cli(monkeypatch, capsys, base, "aws_kline", "parse-type-all", "spot", "1m")
    assert code == 0 and "symbols=0" in out
    assert "nothing to parse" in err
    code, out, err = run_cli(monkeypatch, capsys, base, "aws_kline", "parse", "spot", "1m", "NOPEUSDT")
    assert code == 0 and "no verified spot 1m zips for NOPEUSDT" in err
    assert not (base / "binance_data" / "parsed_data").exists()  # no empty folders left behind


def test_bad_interval_is_a_usage_error(monkeypatch, capsys, base: Path) -> None:
    code, _, err = run_cli(monkeypatch, capsys, base, "aws_kline", "parse", "spot", "7m", "BTCUSDT")
    assert code == 2 and "not published by Binance" in err


def test_archive_manifest_is_consulted_when_present(base: Path, layout: Layout) -> None:
    day1, day2 = date(2024, 1, 1), date(2024, 1, 2)
    z1 = put_kline_day(layout, SPOT, "BTCUSDT", "1m", day1, kline_csv(day_times(day1)))
    z2 = put_kline_day(layout, SPOT, "BTCUSDT", "1m", day2, kline_csv(day_times(day2)))
    layout.state_dir.mkdir(parents=True)
    # The archive stage's table (its own DDL): day 2 was verified at another size, so it changed since.
    import sqlite3

    with sqlite3.connect(layout.state_db) as conn:
        conn.execute("CREATE TABLE archive_files (key TEXT PRIMARY KEY, size INTEGER NOT NULL, last_modified TEXT, "
                     "etag TEXT, sha256 TEXT, verified_at TEXT NOT NULL)")
        prefix = "data/spot/daily/klines/BTCUSDT/1m/"
        conn.execute("INSERT INTO archive_files VALUES (?, ?, NULL, NULL, NULL, 'x')", (prefix + z1.name, z1.stat().st_size))
        conn.execute("INSERT INTO archive_files VALUES (?, ?, NULL, NULL, NULL, 'x')", (prefix + z2.name, z2.stat().st_size + 1))
    summary = parse(base)
    assert summary.files == 1
    assert times_of(layout.parsed_kline_partition(SPOT, "BTCUSDT", "1m", 2024, 1)) == day_times(day1)


# ---- edges found in review ----

def open_at(path: Path, when: int) -> float | None:
    table = pq.read_table(path)
    times = table.column("candle_begin_time").cast(pa.int64()).to_pylist()
    return table.column("open")[times.index(when)].as_py() if when in times else None


def test_a_days_own_row_beats_a_neighbouring_files_copy_in_any_parse_order(base: Path, layout: Layout) -> None:
    d4, d5, d6 = date(2024, 1, 4), date(2024, 1, 5), date(2024, 1, 6)
    old = 10**18  # zips older than any partition write: versions told apart by mtime
    # Day 4's file ends with a different copy of 05 00:00; day 6's file starts with one of 05 23:59.
    put_kline_day(layout, SPOT, "BTCUSDT", "1m", d4, kline_csv(day_times(d4)) + kline_csv([ms(2024, 1, 5)], bump=50), mtime_ns=old)
    put_kline_day(layout, SPOT, "BTCUSDT", "1m", d5, kline_csv(day_times(d5)), mtime_ns=old)
    put_kline_day(layout, SPOT, "BTCUSDT", "1m", d6, kline_csv([ms(2024, 1, 5, 23, 59)], bump=50) + kline_csv(day_times(d6)),
                  mtime_ns=old)
    path = layout.parsed_kline_partition(SPOT, "BTCUSDT", "1m", 2024, 1)
    own_0500 = float(kline_csv([ms(2024, 1, 5)]).split(b",")[1])  # each day's own row, not the +50 copy
    own_0559 = float(kline_csv([ms(2024, 1, 5, 23, 59)]).split(b",")[1])
    assert parse(base).failed == 0
    assert (open_at(path, ms(2024, 1, 5)), open_at(path, ms(2024, 1, 5, 23, 59))) == (own_0500, own_0559)
    assert pq.read_table(path).num_rows == 3 * 1440
    # A re-upload of day 4 alone (same content, new version) keeps day 5's own row too.
    put_kline_day(layout, SPOT, "BTCUSDT", "1m", d4, kline_csv(day_times(d4)) + kline_csv([ms(2024, 1, 5)], bump=50), mtime_ns=old + 1)
    assert parse(base).files == 1
    assert open_at(path, ms(2024, 1, 5)) == own_0500
    assert open_at(path, ms(2024, 1, 5, 23, 59)) == own_0559
    forced = pq.read_table(path)
    assert parse(base, force=True).failed == 0
    assert pq.read_table(path).equals(forced)


def test_a_stray_row_counts_only_for_a_day_without_a_file_of_its_own(base: Path, layout: Layout) -> None:
    d5, d6 = date(2024, 1, 5), date(2024, 1, 6)
    old = 10**18
    own = [t for t in day_times(d6) if t != ms(2024, 1, 6, 12)]  # day 6's file lacks 12:00
    strays = kline_csv([ms(2024, 1, 6, 12), ms(2024, 1, 4, 23, 59)], bump=50)  # day 5 has copies of 06 12:00 and 04 23:59
    put_kline_day(layout, SPOT, "BTCUSDT", "1m", d5, kline_csv(day_times(d5)) + strays, mtime_ns=old)
    put_kline_day(layout, SPOT, "BTCUSDT", "1m", d6, kline_csv(own), mtime_ns=old)
    path = layout.parsed_kline_partition(SPOT, "BTCUSDT", "1m", 2024, 1)
    assert parse(base).failed == 0
    full = pq.read_table(path)
    # 06 12:00 belongs to day 6, which has a file: its hole stays. 01-04 has no file: the stray fills it.
    assert open_at(path, ms(2024, 1, 6, 12)) is None and open_at(path, ms(2024, 1, 4, 23, 59)) is not None
    assert full.num_rows == 1440 + 1439 + 1
    put_kline_day(layout, SPOT, "BTCUSDT", "1m", d6, kline_csv(own), mtime_ns=old + 1)  # day 6 re-uploaded alone
    assert parse(base).files == 1 and pq.read_table(path).equals(full)
    assert parse(base, force=True).failed == 0 and pq.read_table(path).equals(full)


def test_a_zip_that_fails_keeps_failing_until_it_is_replaced(base: Path, layout: Layout) -> None:
    days = [date(2024, 1, d) for d in (1, 2, 3)]
    for day in days:
        put_kline_day(layout, SPOT, "BTCUSDT", "1m", day, kline_csv(day_times(day)), mtime_ns=10**18)
    assert parse(base).failed == 0
    # Day 1 is re-uploaded with a bad row, day 2 with a good new version: the partition is rewritten
    # (newer than the broken zip), which must not make the broken zip look parsed on the next run.
    put_kline_day(layout, SPOT, "BTCUSDT", "1m", days[0], kline_csv(day_times(days[0]), bump=5) + b"garbage,row\n",
                  mtime_ns=10**18 + 1)
    put_kline_day(layout, SPOT, "BTCUSDT", "1m", days[1], kline_csv(day_times(days[1]), bump=5), mtime_ns=10**18 + 1)
    assert parse(base).failed == 1
    again = parse(base)
    assert again.failed == 1 and "BTCUSDT-1m-2024-01-01.zip: unparseable CSV row" in again.failures[0]
    put_kline_day(layout, SPOT, "BTCUSDT", "1m", days[0], kline_csv(day_times(days[0]), bump=5), mtime_ns=10**18 + 2)
    fixed = parse(base)
    assert fixed.failed == 0 and fixed.files == 1
    path = layout.parsed_kline_partition(SPOT, "BTCUSDT", "1m", 2024, 1)
    assert open_at(path, ms(2024, 1, 1)) == float(kline_csv([ms(2024, 1, 1)], bump=5).split(b",")[1])


def test_force_update_removes_months_without_zips_and_any_interval_spelling_works(base: Path, layout: Layout) -> None:
    for day in (date(2024, 1, 31), date(2024, 2, 1)):
        put_kline_day(layout, SPOT, "BTCUSDT", "1h", day, kline_csv(day_times(day, "1h"), "1h"))
    assert parse(base, interval="1H").files == 2  # the folder download wrote is 1h, whatever the spelling
    folder = layout.parsed_kline_dir(SPOT, "BTCUSDT", "1h")
    assert sorted(p.name for p in folder.glob("*.pqt")) == ["202401.pqt", "202402.pqt"]
    zip_path = layout.aws_kline_dir(SPOT, "BTCUSDT", "1h") / "BTCUSDT-1h-2024-02-01.zip"
    zip_path.unlink()
    zip_path.with_name(zip_path.name + ".verified").unlink()
    assert parse(base, interval="1h").failed == 0
    assert sorted(p.name for p in folder.glob("*.pqt")) == ["202401.pqt", "202402.pqt"]  # kept: nothing lost
    assert parse(base, interval="1h", force=True).failed == 0
    assert sorted(p.name for p in folder.glob("*.pqt")) == ["202401.pqt"]  # as if the folder were rebuilt
    # A month whose zip waits for verify keeps its partition, and nothing goes when no zip is usable.
    again = put_kline_day(layout, SPOT, "BTCUSDT", "1h", date(2024, 2, 1), kline_csv(day_times(date(2024, 2, 1), "1h"), "1h"))
    assert parse(base, interval="1h").files == 1
    again.with_name(again.name + ".verified").unlink()
    assert parse(base, interval="1h", force=True).failed == 0
    assert sorted(p.name for p in folder.glob("*.pqt")) == ["202401.pqt", "202402.pqt"]
    for marker in layout.aws_kline_dir(SPOT, "BTCUSDT", "1h").glob("*.verified"):
        marker.unlink()
    parse(base, interval="1h", force=True)
    assert sorted(p.name for p in folder.glob("*.pqt")) == ["202401.pqt", "202402.pqt"]
