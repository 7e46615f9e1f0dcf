"""`aws_funding parse | parse-type-all`: verified zips only, dedup, hour floor, interval hours, faults."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bhds.cli import main
from bhds.paths import Layout
from bhds.schema import PARSED_FUNDING_SCHEMA
from bhds.types import TradeType
from bhds.workflows import parse as parse_workflow
from tests.test_parse_support import FUNDING_HEADER, env_for, make_settings, ms, put_funding_month, put_zip

UM, CM = TradeType.um_futures, TradeType.cm_futures
HOUR = 3_600_000


def funding_csv(rows: list[tuple[int, int, str]], header: bool = True) -> bytes:
    lines = [FUNDING_HEADER] if header else []
    lines += [f"{t},{h},{r}" for t, h, r in rows]
    return ("\n".join(lines) + "\n").encode()


def month_rows(year: int, month: int, hours: int = 8, jitter: int = 3, count: int = 6) -> list[tuple[int, int, str]]:
    start = ms(year, month, 1)
    return [(start + i * hours * HOUR + (i % 2) * jitter, hours, f"0.000{i + 1}") for i in range(count)]


@pytest.fixture
def base(tmp_path: Path) -> Path:
    return tmp_path / "crypto"


@pytest.fixture
def layout(base: Path) -> Layout:
    return Layout(base / "binance_data")


def parse_all(base: Path, trade_type=UM):
    return parse_workflow.funding_parse_type_all(make_settings(base), trade_type=trade_type)


def test_funding_file_schema_dedup_floor_and_interval(base: Path, layout: Layout) -> None:
    jan = month_rows(2024, 1, hours=8)
    feb = month_rows(2024, 2, hours=4)
    feb_dup = feb + [feb[2]]  # Binance files have carried duplicated rows
    put_funding_month(layout, UM, "BTCUSDT", 2024, 1, funding_csv(jan, header=False))
    put_funding_month(layout, UM, "BTCUSDT", 2024, 2, funding_csv(feb_dup))
    put_funding_month(layout, UM, "BTCUSDT", 2024, 3, funding_csv(month_rows(2024, 3, hours=1)), verified=False)
    summary = parse_all(base)
    assert summary.failed == 0 and summary.files == 2
    path = layout.parsed_funding_file(UM, "BTCUSDT")
    table = pq.read_table(path)
    assert table.schema.remove_metadata() == PARSED_FUNDING_SCHEMA
    times = table.column("funding_time").cast(pa.int64()).to_pylist()
    assert times == [t for t, _, _ in jan + feb]  # unverified March left out, duplicate gone, sorted
    assert table.column("candle_begin_time").cast(pa.int64()).to_pylist() == [t - t % HOUR for t in times]
    assert table.column("funding_interval_hours").to_pylist() == [8] * 6 + [4] * 6
    assert table.column("funding_rate").to_pylist()[:2] == [0.0001, 0.0002]
    frame = pd.read_parquet(path)
    assert str(frame["funding_time"].dtype) == "datetime64[ms, UTC]" and frame["funding_interval_hours"].dtype == "int64"
    assert pl.read_parquet(path).schema["candle_begin_time"] == pl.Datetime("ms", "UTC")


def test_rerun_skips_unchanged_and_rebuilds_on_new_month(base: Path, layout: Layout) -> None:
    put_funding_month(layout, CM, "BTCUSD_PERP", 2024, 1, funding_csv(month_rows(2024, 1)))
    assert parse_all(base, CM).files == 1
    path = layout.parsed_funding_file(CM, "BTCUSD_PERP")
    before = path.stat().st_mtime_ns
    again = parse_all(base, CM)
    assert (again.files, again.skipped) == (0, 1) and path.stat().st_mtime_ns == before
    put_funding_month(layout, CM, "BTCUSD_PERP", 2024, 2, funding_csv(month_rows(2024, 2)))
    assert parse_all(base, CM).files == 2
    assert pq.read_table(path).num_rows == 12


def test_a_broken_zip_is_reported_and_its_month_kept(monkeypatch, capsys, base: Path, layout: Layout) -> None:
    put_funding_month(layout, UM, "ETHUSDT", 2024, 1, funding_csv(month_rows(2024, 1)))
    bad = put_funding_month(layout, UM, "ETHUSDT", 2024, 2, funding_csv(month_rows(2024, 2)))
    parse_all(base)
    # February's zip goes bad, March arrives: March is added, February's rows survive, the run says so.
    put_zip(bad, b"not a zip at all", mtime_ns=bad.stat().st_mtime_ns + 10**9)
    put_funding_month(layout, UM, "ETHUSDT", 2024, 3, funding_csv(month_rows(2024, 3)))
    for key, value in env_for(base).items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SystemExit) as stop:
        main(["aws_funding", "parse-type-all", "um_futures"])
    out, err = capsys.readouterr()
    assert stop.value.code == 3 and "failed=1" in out
    assert "bhds: failed: ETHUSDT-fundingRate-2024-02.zip: not a readable zip" in err
    months = pl.read_parquet(layout.parsed_funding_file(UM, "ETHUSDT"))["funding_time"].dt.month().unique().sort().to_list()
    assert months == [1, 2, 3]
    assert parse_all(base).failed == 1  # not recorded as done: tried again next run


def test_spot_has_no_funding(monkeypatch, capsys, base: Path) -> None:
    for key, value in env_for(base).items():
        monkeypatch.setenv(key, value)
    for argv in (["aws_funding", "parse-type-all", "spot"], ["aws_funding", "parse", "spot", "BTCUSDT"]):
        with pytest.raises(SystemExit) as stop:
            main(argv)
        assert stop.value.code == 2
        assert "funding rates for futures only, not spot" in capsys.readouterr().err


def test_no_symbols_is_said_not_crashed(monkeypatch, capsys, base: Path) -> None:
    for key, value in env_for(base).items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SystemExit) as stop:
        main(["aws_funding", "parse-type-all", "um_futures"])
    out, err = capsys.readouterr()
    assert stop.value.code == 0 and "symbols=0" in out and "nothing to parse" in err


def test_a_funding_file_cut_short_is_rebuilt_although_no_zip_changed(base: Path, layout: Layout) -> None:
    put_funding_month(layout, UM, "BTCUSDT", 2024, 1, funding_csv(month_rows(2024, 1)))
    assert parse_all(base).files == 1
    path = layout.parsed_funding_file(UM, "BTCUSDT")
    whole = pq.read_table(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # a full disk, an interrupted copy
    again = parse_all(base)
    assert again.failed == 0 and again.files == 1
    assert pq.read_table(path).equals(whole)
