"""The `archive` group and the date-range/dry-run options, end to end against the fake Binance.

The bucket is the dataset archive of `tests.fakebinance.datasets`: every dataset of every market,
daily files 2024-11-30 .. 2025-01-01 and monthly files for 2024-11 (one day) and 2024-12.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import zipfile
from datetime import date, timedelta
from pathlib import Path

import pytest

from bhds.archive.catalog import DATASETS
from bhds.cli import main
from tests.fakebinance import (
    SHAPES,
    build_datasets,
    dataset_key,
    datasets_of,
    datasets_universe,
    file_csv,
    read_member,
    reupload,
    start_in_thread,
)
from tests.fakebinance.archive import corrupt_zip_keep_checksum

MARKETS = {"spot": "spot", "um_futures": "um", "cm_futures": "cm"}
ROOT = {"spot": "data/spot", "um_futures": "data/futures/um", "cm_futures": "data/futures/cm"}
KLINE_LIKE = {"klines", "markPriceKlines", "indexPriceKlines", "premiumIndexKlines"}
DEC = [date(2024, 12, 1) + timedelta(days=i) for i in range(31)]
JAN1 = date(2025, 1, 1)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as stop:
        main(list(argv))
    out, err = capsys.readouterr()
    return stop.value.code, out, err


@pytest.fixture(scope="session")
def datasets_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("datasets_archive")
    build_datasets(datasets_universe(), root, compress_level=1)
    return root


@pytest.fixture
def bucket(datasets_archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A fake Binance over a private (hard-linked) copy of the dataset archive, and bhds aimed at it."""
    root = tmp_path / "bucket"
    shutil.copytree(datasets_archive, root, copy_function=os.link)
    fake = start_in_thread(root)
    data = tmp_path / "crypto"
    data.mkdir()
    for key, value in {"CRYPTO_BASE_DIR": str(data), **fake.env, "CRYPTO_NJOBS": "2",
                       "BHDS_NOW": fake.universe.now_iso}.items():
        monkeypatch.setenv(key, value)
    try:
        yield root
    finally:
        fake.stop()


def data_dir() -> Path:
    return Path(os.environ["CRYPTO_BASE_DIR"]) / "binance_data"


def local_zips(prefix: str = "data/") -> dict[str, bytes]:
    base = data_dir() / "aws_data"
    return {str(p.relative_to(base)): p.read_bytes() for p in sorted((base / prefix).rglob("*.zip"))} if (base / prefix).exists() else {}


def sample_symbol(market: str, dataset: str) -> str:
    if market == "spot":
        return "BTCUSDT"
    if market == "um_futures":
        return "ETHUSDT" if dataset == "liquidationSnapshot" else "BTCUSDT"
    return "BTCUSD" if dataset == "indexPriceKlines" else "BTCUSD_PERP"


def dry_run_keys(out: str) -> list[str]:
    """The keys a dry run lists as new or updated (lines `  <change> <key> <size>`)."""
    return [line.split()[1] for line in out.splitlines() if line.startswith("  ") and line.split()[0] in ("new", "updated")]


def covered_days(keys) -> list[date]:
    """Every day the given zips hold, one entry per (file, day): a day twice means fetched twice."""
    days = []
    for key in keys:
        parts = key[:-4].rsplit("-", 3)
        if parts[-1].isdigit() and len(parts[-1]) == 2 and len(parts[-2]) == 2 and parts[-3].isdigit() and len(parts[-3]) == 4:
            days.append(date(int(parts[-3]), int(parts[-2]), int(parts[-1])))
        else:
            y, m = int(parts[-2]), int(parts[-1])
            d = date(y, m, 1)
            while d.month == m:
                days.append(d)
                d += timedelta(days=1)
    return sorted(days)


# ---- the fake archive itself -----------------------------------------------------------------

def test_catalogue_and_fake_agree_on_every_dataset() -> None:
    # The fake serves what bhds' catalogue names, market by market, with the same periods.
    for market, short in MARKETS.items():
        assert [d.name for d in DATASETS if market in [m.value for m in d.markets]] == \
            sorted(datasets_of(short), key=[d.name for d in DATASETS].index)
    for d in DATASETS:
        assert (SHAPES[d.name].daily, SHAPES[d.name].monthly) == (d.daily, d.monthly), d.name


def test_fake_files_have_binance_shapes(datasets_archive: Path) -> None:
    root = datasets_archive

    def first(key: str) -> list[str]:
        return read_member(root, key).decode().splitlines()

    spot_trades_dec = first(dataset_key("spot", "daily", "trades", "BTCUSDT", "2024-12-31"))
    spot_trades_jan = first(dataset_key("spot", "daily", "trades", "BTCUSDT", "2025-01-01"))
    assert spot_trades_dec[0][0].isdigit() and len(spot_trades_dec[0].split(",")) == 7  # no header, isBestMatch
    assert len(spot_trades_dec[0].split(",")[4]) == 13 and len(spot_trades_jan[0].split(",")[4]) == 16  # ms, then µs
    assert spot_trades_dec[0].split(",")[5] in ("True", "False")
    spot_agg = first(dataset_key("spot", "daily", "aggTrades", "BTCUSDT", "2025-01-01"))
    assert len(spot_agg[0].split(",")) == 8 and len(spot_agg[0].split(",")[5]) == 16
    um_agg = first(dataset_key("um", "daily", "aggTrades", "BTCUSDT", "2025-01-01"))
    assert um_agg[0] == "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker"
    assert len(um_agg[1].split(",")) == 7 and um_agg[1].split(",")[6] in ("true", "false")
    assert first(dataset_key("cm", "daily", "trades", "BTCUSD_PERP", "2025-01-01"))[0] == "id,price,qty,base_qty,time,is_buyer_maker"
    assert first(dataset_key("um", "daily", "metrics", "BTCUSDT", "2025-01-01"))[1].startswith("2025-01-01 00:00:00,BTCUSDT,")
    assert first(dataset_key("cm", "daily", "bookDepth", "BTCUSD_PERP", "2025-01-01"))[0] == "timestamp,percentage,depth,notional"
    assert (root / dataset_key("cm", "monthly", "indexPriceKlines", "BTCUSD", "2024-12", "1h")).is_file()
    assert not (root / "data/futures/cm/daily/premiumIndexKlines/BTCUSD_250328").exists()
    assert not (root / "data/futures/um/daily/fundingRate").exists() and not (root / "data/futures/um/monthly/metrics").exists()
    # A monthly file holds exactly its daily files' rows, under one header; each file has its CHECKSUM.
    for market, symbol, dataset in (("um", "BTCUSDT", "aggTrades"), ("spot", "BTCUSDT", "klines")):
        interval = "1h" if dataset == "klines" else None
        month = read_member(root, dataset_key(market, "monthly", dataset, symbol, "2024-12", interval)).decode().splitlines()
        days = [read_member(root, dataset_key(market, "daily", dataset, symbol, d.isoformat(), interval)).decode().splitlines()
                for d in DEC]
        header = 1 if market != "spot" else 0
        assert month == days[0][:header] + [row for day in days for row in day[header:]]
    assert (root / (dataset_key("um", "daily", "bookTicker", "BTCUSDT", "2024-12-31") + ".CHECKSUM")).is_file()


def test_fake_datasets_are_deterministic(tmp_path: Path) -> None:
    universe = datasets_universe()
    spec = universe.spec("spot", "ETHUSDT")
    a = file_csv(spec, "aggTrades", DEC[:3])
    b = file_csv(spec, "aggTrades", DEC[:3])
    assert a == b and a[1] > 0
    build_datasets(universe, tmp_path / "x", datasets=["metrics"], markets=["um"], compress_level=1)
    build_datasets(universe, tmp_path / "y", datasets=["metrics"], markets=["um"], compress_level=1)
    key = dataset_key("um", "daily", "metrics", "BTCUSDT", "2024-12-05")
    assert (tmp_path / "x" / key).read_bytes() == (tmp_path / "y" / key).read_bytes()


# ---- every dataset of every market -----------------------------------------------------------

CASES = [(market, d.name) for market in MARKETS for d in DATASETS if market in [m.value for m in d.markets]]


@pytest.mark.parametrize(("market", "dataset"), CASES)
def test_download_and_verify_every_dataset(bucket: Path, capsys, market: str, dataset: str) -> None:
    symbol = sample_symbol(market, dataset)
    interval = ["--interval", "1h"] if dataset in KLINE_LIKE else []
    code, out, err = run(capsys, "archive", "download", market, dataset, symbol, *interval,
                         "--start", "2024-12-01", "--end", "2025-01-01")
    assert code == 0, err
    shape = SHAPES[dataset]
    short = MARKETS[market]
    iv = "1h" if dataset in KLINE_LIKE else None
    if not shape.daily:
        expected = [dataset_key(short, "monthly", dataset, symbol, "2024-12", iv)]
    elif not shape.monthly:
        expected = [dataset_key(short, "daily", dataset, symbol, d.isoformat(), iv) for d in DEC + [JAN1]]
    else:
        expected = [dataset_key(short, "monthly", dataset, symbol, "2024-12", iv),
                    dataset_key(short, "daily", dataset, symbol, JAN1.isoformat(), iv)]
    got = local_zips(ROOT[market] + "/")
    assert sorted(got) == sorted(expected)
    for key, body in got.items():
        assert body == (bucket / key).read_bytes(), key  # byte for byte what Binance serves
        with zipfile.ZipFile(data_dir() / "aws_data" / key) as zf:
            rows = zf.read(zf.namelist()[0]).decode().splitlines()
        assert rows == read_member(bucket, key).decode().splitlines() and len(rows) > 1
        assert (data_dir() / "aws_data" / (key + ".CHECKSUM")).is_file()
    assert f"files={2 * len(expected)} " in out
    # verify: everything was checked on the way in; a local copy damaged since is caught and removed.
    code, out, err = run(capsys, "archive", "verify", market, dataset, *interval)
    assert code == 0, err
    assert f"skipped={len(expected)}" in out
    victim = data_dir() / "aws_data" / expected[0]
    (victim.with_name(victim.name + ".verified")).unlink()
    corrupt_zip_keep_checksum(data_dir() / "aws_data", expected[0])
    code, out, err = run(capsys, "archive", "verify", market, dataset, symbol, *interval)
    assert code == 3
    assert not victim.exists() and str(victim) in err


# ---- dry run == real run ----------------------------------------------------------------------

def test_dry_run_lists_exactly_what_the_run_downloads_and_writes_nothing(bucket: Path, capsys) -> None:
    argv = ["archive", "download", "um_futures", "aggTrades", "--start", "2024-12-01", "--end", "2025-01-01"]
    code, out, err = run(capsys, *argv, "--dry-run")
    assert code == 0, err
    planned = dry_run_keys(out)
    assert not Path(os.environ["CRYPTO_BASE_DIR"], "binance_data").exists()  # not even the state DB or a lock
    summary = out.splitlines()[-1]
    assert "dry_run=nothing written" in summary
    # The listed symbols pass the legacy default filters: USDT perpetuals, not the delivery contract.
    assert {k.split("/")[5] for k in planned} == {"BTCUSDT", "ETHUSDT"}
    code, out2, err = run(capsys, *argv)
    assert code == 0, err
    assert sorted(local_zips()) == sorted(planned)
    files_bytes = lambda line: [p for p in line.split() if p.startswith(("files=", "bytes="))]  # noqa: E731
    assert files_bytes(summary) == files_bytes(out2.splitlines()[-1])

    # Binance re-uploads one file: the dry run names it as updated, and the run fetches exactly it.
    key = dataset_key("um", "daily", "aggTrades", "ETHUSDT", "2025-01-01")
    new_sha = reupload(bucket, key, read_member(bucket, key) + b"1735776000000000,1.0,1,1,1,1735776000000,true\n")
    db = data_dir() / ".bhds" / "state.sqlite"
    before = {p.name: p.read_bytes() for p in db.parent.iterdir() if p.is_file()}
    code, out, err = run(capsys, *argv, "--dry-run")
    assert code == 0, err
    assert dry_run_keys(out) == [key]
    assert f"  updated {key} " in out
    assert {p.name: p.read_bytes() for p in db.parent.iterdir() if p.is_file()} == before  # no -wal/-shm either
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    assert "files=2 " in out
    assert local_zips()[key] == (bucket / key).read_bytes()
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT sha256 FROM archive_files WHERE key = ?", (key,)).fetchone()[0] == new_sha
    code, out, err = run(capsys, *argv, "--dry-run")
    assert dry_run_keys(out) == [] and "files=0 " in out


def test_dry_run_keeps_part_files_and_the_filters_match_the_legacy_ones(bucket: Path, capsys) -> None:
    leftover = data_dir() / "aws_data" / "data/spot/daily/trades/BTCUSDT/BTCUSDT-trades-2025-01-01.zip.part"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"half")
    code, out, _ = run(capsys, "archive", "download", "spot", "trades", "--start", "2025-01-01", "--dry-run")
    assert code == 0
    assert {k.split("/")[4] for k in dry_run_keys(out)} == {"BTCUSDT", "ETHUSDT"}
    assert leftover.read_bytes() == b"half"
    code, out, _ = run(capsys, "archive", "download", "spot", "trades", "--start", "2025-01-01", "--dry-run",
                       "--keep-stablecoins", "--leverage-tokens")
    assert {k.split("/")[4] for k in dry_run_keys(out)} == {"BTCUSDT", "ETHUSDT", "USDCUSDT", "BTCUPUSDT"}
    code, out, _ = run(capsys, "archive", "download", "cm_futures", "trades", "--start", "2025-01-01", "--dry-run",
                       "--contract-type", "DELIVERY")
    assert {k.split("/")[5] for k in dry_run_keys(out)} == {"BTCUSD_250328"}


# ---- date ranges ------------------------------------------------------------------------------

@pytest.mark.parametrize(("start", "end", "monthly", "daily"), [
    # A month is taken whole only when the range holds all of it (November's file has one day,
    # the listing, but its name cannot tell).
    ("2024-11-30", "2024-12-31", ["2024-12"], ["2024-11-30"]),
    ("2024-11-01", "2024-12-31", ["2024-11", "2024-12"], []),
    ("2024-11-15", "2025-01-01", ["2024-12"], ["2024-11-30", "2025-01-01"]),
    ("2024-12-02", "2025-01-01", [], [d.isoformat() for d in DEC[1:]] + ["2025-01-01"]),
    ("2024-12-30", "2025-01-01", [], ["2024-12-30", "2024-12-31", "2025-01-01"]),
    ("2024-11-30", "2024-12-01", [], ["2024-11-30", "2024-12-01"]),
    (None, None, ["2024-11", "2024-12"], ["2025-01-01"]),
])
def test_range_takes_monthly_files_for_whole_months_and_daily_files_for_the_rest(
        bucket: Path, capsys, start: str | None, end: str | None, monthly: list[str], daily: list[str]) -> None:
    window = (["--start", start] if start else []) + (["--end", end] if end else [])
    code, out, err = run(capsys, "archive", "download", "spot", "klines", "BTCUSDT", "--interval", "1h", *window)
    assert code == 0, err
    expected = ([dataset_key("spot", "monthly", "klines", "BTCUSDT", m, "1h") for m in monthly]
                + [dataset_key("spot", "daily", "klines", "BTCUSDT", d, "1h") for d in daily])
    assert sorted(local_zips()) == sorted(expected)
    # Exactly the range's days that have data (from the listing day 2024-11-30), none twice.
    first = max(date.fromisoformat(start) if start else date.min, date(2024, 11, 30))
    last = date.fromisoformat(end) if end else JAN1
    days = [d for d in covered_days(local_zips()) if d >= date(2024, 11, 30)]
    assert days == [first + timedelta(days=i) for i in range((last - first).days + 1)]


def test_months_already_complete_in_daily_form_are_not_fetched_again(bucket: Path, capsys) -> None:
    # The legacy download mirrors every daily file; the archive group then takes no monthly file.
    code, _, err = run(capsys, "aws_kline", "download", "spot", "1h", "BTCUSDT")
    assert code == 0, err
    code, out, err = run(capsys, "archive", "download", "spot", "klines", "BTCUSDT", "--interval", "1h", "--dry-run")
    assert code == 0, err
    assert dry_run_keys(out) == [] and "files=0 " in out


def test_legacy_downloads_take_a_range_and_a_dry_run(bucket: Path, capsys) -> None:
    code, out, err = run(capsys, "aws_kline", "download", "spot", "1h", "BTCUSDT", "--start", "2024-12-31", "--dry-run")
    assert code == 0, err
    assert dry_run_keys(out) == [dataset_key("spot", "daily", "klines", "BTCUSDT", d, "1h") for d in ("2024-12-31", "2025-01-01")]
    assert not data_dir().exists()
    code, out, err = run(capsys, "aws_kline", "download", "spot", "1h", "BTCUSDT", "--start", "2024-12-31")
    assert code == 0, err
    assert sorted(local_zips()) == [dataset_key("spot", "daily", "klines", "BTCUSDT", d, "1h") for d in ("2024-12-31", "2025-01-01")]
    # Funding is monthly: a range inside December takes December's file.
    code, out, err = run(capsys, "aws_funding", "download-um-futures", "--start", "2024-12-10", "--end", "2024-12-10")
    assert code == 0, err
    assert sorted(local_zips("data/futures/um/")) == [dataset_key("um", "monthly", "fundingRate", s, "2024-12")
                                                      for s in ("BTCUSDT", "ETHUSDT")]
    code, out, err = run(capsys, "aws_liquidation", "download", "cm_futures", "BTCUSD_PERP", "--start", "2024-12-30",
                         "--end", "2024-12-31")
    assert code == 0, err
    assert sorted(local_zips("data/futures/cm/")) == [dataset_key("cm", "daily", "liquidationSnapshot", "BTCUSD_PERP", d)
                                                      for d in ("2024-12-30", "2024-12-31")]
    assert not list((data_dir() / "aws_data/data/futures/cm").rglob("*.verified"))  # as before: no markers


@pytest.mark.parametrize("argv", [
    ["archive", "download", "spot", "klines", "BTCUSDT", "--interval", "1h", "--start", "2024-11-15", "--end", "2025-01-01"],
    ["archive", "download", "cm_futures", "fundingRate", "--start", "2024-12-31"],
    ["archive", "download", "um_futures", "metrics", "BTCUSDT", "--end", "2024-12-02"],
    ["aws_kline", "download-spot", "1h", "--start", "2024-12-30", "--end", "2024-12-31"],
    ["aws_funding", "download-cm-futures", "--start", "2024-12-01"],
    ["aws_liquidation", "download", "cm_futures", "BTCUSD_PERP", "--start", "2024-12-31"],
])
def test_dry_run_equals_the_run_for_every_kind_of_download(bucket: Path, capsys, argv: list[str]) -> None:
    """Monthly-only, daily-only and mixed datasets, archive and legacy commands: the dry run names
    exactly the zips the run then writes (and each zip's CHECKSUM counts in `files=`)."""
    code, out, err = run(capsys, *argv, "--dry-run")
    assert code == 0, err
    planned = dry_run_keys(out)
    assert planned and not data_dir().exists()
    code, out2, err = run(capsys, *argv)
    assert code == 0, err
    assert sorted(local_zips()) == sorted(planned)
    assert f"files={2 * len(planned)} " in out.splitlines()[-1] and f"files={2 * len(planned)} " in out2.splitlines()[-1]
    code, out, err = run(capsys, *argv, "--dry-run")
    assert code == 0 and dry_run_keys(out) == [] and "files=0 " in out, err


# ---- ls ---------------------------------------------------------------------------------------

def test_ls_prints_symbols_only_on_stdout(bucket: Path, capsys) -> None:
    code, out, err = run(capsys, "archive", "ls", "spot", "trades")
    assert code == 0, err
    assert out == "BTCUPUSDT\nBTCUSDT\nETHUSDT\nUSDCUSDT\n"
    assert "archive ls:" in err  # the summary line goes to stderr
    code, out, err = run(capsys, "archive", "ls", "cm_futures", "premiumIndexKlines", "--format", "json")
    assert code == 0, err
    assert json.loads(out) == ["BTCUSD_PERP"]
    code, out, _ = run(capsys, "archive", "ls", "um_futures", "markPriceKlines", "--interval", "1h", "--format", "json")
    assert json.loads(out) == ["BTCUSDT", "BTCUSDT_250328", "ETHUSDT"]
    code, out, _ = run(capsys, "archive", "ls", "um_futures", "markPriceKlines", "--interval", "5m", "--format", "json")
    assert code == 0 and json.loads(out) == []


# ---- bad input --------------------------------------------------------------------------------

@pytest.mark.parametrize(("argv", "message"), [
    (["archive", "download", "spot", "metrics"], "spot has no dataset 'metrics': use one of klines, aggTrades, trades"),
    (["archive", "download", "option", "BVOLIndex"], "option (data/option/daily/BVOLIndex, EOHSummary) is not supported"),
    (["archive", "ls", "um_futures", "nope"], "um_futures has no dataset 'nope': use one of klines, aggTrades, trades, "
                                              "markPriceKlines, indexPriceKlines, premiumIndexKlines, bookTicker, "
                                              "bookDepth, metrics, fundingRate, liquidationSnapshot"),
    (["archive", "download", "spot", "klines", "BTCUSDT"], "klines needs an interval: pass --interval"),
    (["archive", "download", "spot", "trades", "--interval", "1m"], "trades has no interval folders: drop --interval"),
    (["archive", "download", "um_futures", "klines", "--interval", "1s"], "1s is published for spot klines only"),
    (["archive", "download", "spot", "trades", "--start", "2025-01-02", "--end", "2025-01-01"],
     "--start 2025-01-02 is after --end 2025-01-01"),
    (["archive", "download", "spot", "trades", "--contract-type", "DELIVERY"], "--contract-type does not apply to spot"),
    (["archive", "download", "cm_futures", "trades", "--quote", "USDT"], "--quote does not apply to cm_futures"),
    (["archive", "download", "spot", "trades", "--start", "2025-13-01"], "Invalid value for '--start'"),
    (["aws_kline", "download", "spot", "1m", "BTCUSDT", "--end", "01/02/2025"], "Invalid value for '--end'"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, monkeypatch, tmp_path: Path, argv: list[str], message: str) -> None:
    monkeypatch.setenv("CRYPTO_BASE_DIR", str(tmp_path))
    monkeypatch.setenv("BHDS_AWS_URL", "http://127.0.0.1:9/data.binance.vision")  # never reached
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "binance_data").exists()


# ---- parse: trades and aggTrades -------------------------------------------------------------

def expected_rows(csv_lines: list[str]) -> list[tuple]:
    """The rows of a Binance trades/aggTrades CSV as the partition must hold them, decoded here by hand."""
    if csv_lines and not csv_lines[0][0].isdigit():
        csv_lines = csv_lines[1:]
    out = []
    for line in csv_lines:
        values = []
        for field in line.split(","):
            if field in ("true", "True", "false", "False"):
                values.append(field.lower() == "true")
            elif "." in field:
                values.append(float(field))
            else:
                values.append(int(field))
        out.append(values)
    return out


def partition_rows(path: Path, time_column: str) -> list[list]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    assert table.schema.field(time_column).type == pa.timestamp("us", tz="UTC")
    table = table.set_column(table.schema.get_field_index(time_column), time_column, table[time_column].cast(pa.int64()))
    return [list(row.values()) for row in table.to_pylist()]


@pytest.mark.parametrize("market", list(MARKETS))
@pytest.mark.parametrize("dataset", ["trades", "aggTrades"])
def test_parse_streams_trades_into_monthly_partitions_equal_to_the_csv(bucket: Path, capsys, monkeypatch, market: str,
                                                                       dataset: str) -> None:
    import pyarrow.parquet as pq

    from bhds.workflows import archive_parse

    monkeypatch.setattr(archive_parse, "BLOCK_SIZE", 2048)  # several row groups from tiny files
    symbol = sample_symbol(market, dataset)
    code, _, err = run(capsys, "archive", "download", market, dataset, symbol, "--start", "2024-11-01")
    assert code == 0, err
    code, out, err = run(capsys, "archive", "parse", market, dataset)
    assert code == 0, err
    short = MARKETS[market]
    time_column = "time" if dataset == "trades" else "transact_time"
    parsed = data_dir() / "parsed_data" / market / dataset / symbol
    assert sorted(p.name for p in parsed.iterdir()) == ["202411.pqt", "202412.pqt", "202501.pqt"]
    sources = {"202411": [dataset_key(short, "monthly", dataset, symbol, "2024-11")],
               "202412": [dataset_key(short, "monthly", dataset, symbol, "2024-12")],
               "202501": [dataset_key(short, "daily", dataset, symbol, "2025-01-01")]}
    total = 0
    for month, keys in sources.items():
        want = [row for key in keys for row in expected_rows(read_member(bucket, key).decode().splitlines())]
        for row in want:  # ms before 2025 on spot and always on futures, µs after: all µs in the partition
            idx = 4 if dataset == "trades" else 5
            row[idx] = row[idx] if row[idx] >= 10**15 else row[idx] * 1000
        got = partition_rows(parsed / f"{month}.pqt", time_column)
        assert got == want, month
        total += len(want)
    assert pq.ParquetFile(parsed / "202412.pqt").num_row_groups > 1
    assert f"files=3 rows={total:,} " in out
    names = pq.read_schema(parsed / "202501.pqt").names
    assert names[-1] == ("is_best_match" if market == "spot" else "is_buyer_maker")
    if dataset == "trades":
        assert names[3] == ("base_qty" if market == "cm_futures" else "quote_qty")


def test_parse_is_incremental_and_follows_a_reupload(bucket: Path, capsys) -> None:
    code, _, err = run(capsys, "archive", "download", "um_futures", "trades", "BTCUSDT", "--start", "2024-12-30")
    assert code == 0, err
    code, out, err = run(capsys, "archive", "parse", "um_futures", "trades", "BTCUSDT")
    assert code == 0 and "files=2 " in out, err
    code, out, _ = run(capsys, "archive", "parse", "um_futures", "trades", "BTCUSDT")
    assert "files=0 " in out and "skipped=2" in out
    key = dataset_key("um", "daily", "trades", "BTCUSDT", "2024-12-31")
    lines = read_member(bucket, key).decode().splitlines()
    reupload(bucket, key, "\n".join(lines[:-1]) + "\n")  # Binance drops a bad last row
    code, out, err = run(capsys, "archive", "download", "um_futures", "trades", "BTCUSDT", "--start", "2024-12-30")
    assert code == 0 and "files=2 " in out, err
    code, out, err = run(capsys, "archive", "parse", "um_futures", "trades", "BTCUSDT")
    assert code == 0 and "files=1 " in out and "skipped=1" in out, err
    rows = partition_rows(data_dir() / "parsed_data/um_futures/trades/BTCUSDT/202412.pqt", "time")
    assert [r[0] for r in rows][-1] == int(lines[-2].split(",")[0])


def test_parse_of_a_kline_like_dataset_needs_its_interval(capsys, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CRYPTO_BASE_DIR", str(tmp_path))
    code, _, err = run(capsys, "archive", "parse", "um_futures", "markPriceKlines")
    assert code == 2 and "markPriceKlines needs an interval: pass --interval" in err


@pytest.mark.parametrize("block", [1, 7, 64, 10_000])
def test_csv_blocks_cut_at_line_ends_and_lose_nothing(block: int) -> None:
    import io

    from bhds.parse.trades import csv_blocks

    text = b"".join(b"%d,%s\n" % (i, b"x" * (i % 23)) for i in range(300)) + b"300,last-without-newline"
    blocks = list(csv_blocks(io.BytesIO(text), block))
    assert b"".join(blocks) == text
    assert all(b.endswith(b"\n") for b in blocks[:-1])
