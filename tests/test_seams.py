"""Where separately built pieces meet: the run record, the catalog hook, the archive group's ranges
and dry runs, and the temp-file sweep across lock boundaries. Each case was a real bug."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bhds import storage
from bhds.paths import Layout, temp_path
from bhds.types import TradeType
from bhds.workflows import generate, indicators
from tests.fakebinance.archive import corrupt_zip_keep_checksum
from tests.test_archive_datasets import bucket, data_dir, datasets_archive, local_zips, run  # noqa: F401 - fixtures
from tests.test_generate_incremental import OPTIONS, write_three
from tests.test_generate_support import HOUR, klines, settings_for, steps, write_archive
from tests.test_runlog import cli, lines, store

SPOT = TradeType.spot


def test_the_catalog_drops_views_of_offset_folders_a_resample_removed(tmp_path: Path) -> None:
    duckdb = pytest.importorskip("duckdb")
    from bhds.research.catalog import write_catalog

    layout = Layout(tmp_path / "binance_data")
    write_three(layout)
    settings = settings_for(tmp_path)
    generate.kline_type(settings, trade_type=SPOT, time_interval="1m", **OPTIONS)
    generate.resample_type(settings, trade_type=SPOT, resample_interval="1h", base_offset="5m")
    write_catalog(layout)
    # A coarser base offset reuses the shared offsets' files (writes none) and drops the others.
    summary = generate.resample_type(settings, trade_type=SPOT, resample_interval="1h", base_offset="15m")
    assert summary.files == 0 and not layout.resampled_dir(SPOT, "1h", "5m").exists()
    con = duckdb.connect(str(layout.catalog_db), read_only=True)
    views = {row[0] for row in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
    assert {v for v in views if v.startswith("spot_resampled_1h_")} == {f"spot_resampled_1h_{o}" for o in ("0m", "15m", "30m", "45m")}
    for view in views:
        con.execute(f'SELECT count(*) FROM "{view}"').fetchall()  # every view reads files that exist


def test_a_dry_run_with_a_damaged_state_db_previews_and_writes_nothing(bucket: Path, capsys) -> None:
    code, _, err = run(capsys, "archive", "download", "spot", "trades", "BTCUSDT", "--start", "2024-12-31")
    assert code == 0, err
    db = data_dir() / ".bhds" / "state.sqlite"
    db.write_bytes(b"this is not sqlite" * 100)
    code, out, err = run(capsys, "archive", "download", "spot", "trades", "BTCUSDT", "--start", "2024-12-31", "--dry-run")
    assert code == 0, err
    assert "is damaged" in err and "Traceback" not in err
    assert db.read_bytes() == b"this is not sqlite" * 100  # left for the real run to set aside
    code, _, err = run(capsys, "archive", "download", "spot", "trades", "BTCUSDT", "--start", "2024-12-31")
    assert code == 0, err


@pytest.mark.parametrize("extra", [[], ["--start", "2024-12-31"], ["--dry-run"]], ids=["plain", "range", "dry-run"])
def test_a_mistyped_symbol_is_exit_2_with_or_without_a_range(bucket: Path, capsys, extra: list[str]) -> None:
    code, _, err = run(capsys, "aws_kline", "download", "spot", "1h", "BTCUSDX", *extra)
    assert code == 2, err
    assert "did you mean BTCUSDT" in err


def test_archive_download_names_the_closest_symbols_too(bucket: Path, capsys) -> None:
    code, _, err = run(capsys, "archive", "download", "spot", "trades", "btcusdt", "--start", "2024-12-31")
    assert code == 2 and "did you mean BTCUSDT" in err


def test_a_failed_archive_verify_is_a_stage_status_reports(bucket: Path, capsys) -> None:
    code, _, err = run(capsys, "archive", "download", "spot", "trades", "BTCUSDT", "--start", "2024-12-31")
    assert code == 0, err
    victim = sorted(k for k in local_zips() if "/trades/" in k)[0]
    (data_dir() / "aws_data" / (victim + ".verified")).unlink()
    corrupt_zip_keep_checksum(data_dir() / "aws_data", victim)
    code, _, err = run(capsys, "archive", "verify", "spot", "trades", "BTCUSDT")
    assert code == 3, err
    record = json.loads((data_dir() / ".bhds/runs.jsonl").read_text().splitlines()[-1])
    assert (record["command"], record["trade_type"], record["exit_code"]) == ("archive verify trades", "spot", 3)
    code, out, _ = run(capsys, "status", "--format", "json")
    assert code == 3
    stages = {(s["stage"], s["trade_type"]): s for s in json.loads(out)["stages"]}
    assert stages[("archive verify trades", "spot")]["problem"]


def test_a_partial_run_records_no_internal_exception_as_its_error(tmp_path: Path, monkeypatch, capsys) -> None:
    layout = store(tmp_path)
    storage.write_bytes(b"not parquet", layout.parsed_kline_partition(SPOT, "ETHUSDT", "1m", 2024, 1))
    layout.aws_kline_dir(SPOT, "ETHUSDT", "1m").mkdir(parents=True, exist_ok=True)  # a symbol generate takes up
    code, _, err = cli(["generate", "kline-type", "spot", "1m"], tmp_path, monkeypatch, capsys)
    assert code == 3, err
    record = lines(layout)[-1]
    assert record["error"] is None and record["summary"]["failed"] == 1


def test_list_data_goes_through_dispatch_and_records_its_summary(tmp_path: Path, monkeypatch, capsys) -> None:
    layout = store(tmp_path)
    code, out, err = cli(["list-data", "spot", "--format", "json"], tmp_path, monkeypatch, capsys)
    assert code == 0, err
    json.loads(out)  # stdout is the document alone
    assert err.strip().splitlines()[-1].startswith("list-data: files=")
    assert lines(layout)[-1]["summary"] is not None


def test_an_indicators_run_leaves_the_temp_files_of_an_offset_run_alone(tmp_path: Path) -> None:
    pytest.importorskip("talib")
    layout = Layout(tmp_path / "binance_data")
    for i, symbol in enumerate(("BTCUSDT", "ETHUSDT")):
        write_archive(layout, SPOT, symbol, "1h", klines(steps("2024-01-01", "2024-02-03", HOUR), 100.0 + i, seed=i))
    settings = settings_for(tmp_path)
    generate.kline_type(settings, trade_type=SPOT, time_interval="1h", **OPTIONS)
    in_flight = temp_path(layout.indicators_file(SPOT, "1h", "5m", "BTCUSDT"), "abcd1234")
    # An `--offset 5m` run in flight holds its own lock and writes through a temp sibling.
    with storage.stage_lock(layout, indicators._stage(SPOT, "1h", "5m")):
        in_flight.parent.mkdir(parents=True, exist_ok=True)
        in_flight.write_bytes(b"half-written parquet")
        indicators.indicators_type(settings, trade_type=SPOT, time_interval="1h", offset=None, indicators=["rsi:14"])
        assert in_flight.exists()
