"""Settings, the path layout, interval parsing, atomic storage and the stage lock."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date, datetime, timezone
from pathlib import Path

import pyarrow as pa
import pytest

from bhds import paths
from bhds.errors import ConfigError, DataError, InputError, LockBusy
from bhds.paths import Layout
from bhds.schema import KLINE_SCHEMA
from bhds.settings import DEFAULT_AWS_URL, load_settings
from bhds.storage import read_table, stage_lock, sweep_temp_files, write_table
from bhds.types import TradeType, parse_interval

REPO = Path(__file__).resolve().parent.parent


# ---- settings ----

def test_defaults(tmp_path: Path) -> None:
    s = load_settings({"HOME": str(tmp_path)})
    assert s.base_dir == Path(os.path.expanduser("~/crypto_data")).absolute()
    assert s.data_dir == s.base_dir / "binance_data"
    assert s.n_jobs == max(1, os.cpu_count() or 1)
    assert s.aws_url == DEFAULT_AWS_URL
    assert (s.spot_api_url, s.um_api_url, s.cm_api_url) == ("https://api.binance.com", "https://fapi.binance.com", "https://dapi.binance.com")
    assert s.concurrency == 32 and s.http_proxy is None


def test_tilde_is_expanded_and_urls_lose_trailing_slash(tmp_path: Path) -> None:
    s = load_settings({"CRYPTO_BASE_DIR": "~/x", "BHDS_AWS_URL": "http://127.0.0.1:9/bucket/", "HTTPS_PROXY": "http://proxy:3128"})
    assert s.base_dir == Path(os.path.expanduser("~/x"))
    assert s.aws_url == "http://127.0.0.1:9/bucket"
    assert s.http_proxy == "http://proxy:3128"


def test_http_proxy_wins_over_https_proxy() -> None:
    s = load_settings({"HTTP_PROXY": "http://a:1", "https_proxy": "http://b:2"})
    assert s.http_proxy == "http://a:1"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"CRYPTO_NJOBS": "abc"}, "CRYPTO_NJOBS"),
        ({"CRYPTO_NJOBS": "0"}, "CRYPTO_NJOBS"),
        ({"BHDS_CONCURRENCY": "-3"}, "BHDS_CONCURRENCY"),
        ({"BHDS_AWS_URL": "ftp://x"}, "BHDS_AWS_URL"),
        ({"BHDS_UM_API_URL": "fapi.binance.com"}, "BHDS_UM_API_URL"),
        ({"HTTP_PROXY": "proxy:3128"}, "HTTP_PROXY"),
        ({"BHDS_NOW": "yesterday"}, "BHDS_NOW"),
        ({"BHDS_LOCK_TIMEOUT": "soon"}, "BHDS_LOCK_TIMEOUT"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    assert named in str(info.value) and "\n" not in str(info.value)


def test_base_dir_that_is_a_file(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ConfigError, match="CRYPTO_BASE_DIR"):
        load_settings({"CRYPTO_BASE_DIR": str(f)})


def test_bhds_now_pins_the_clock() -> None:
    s = load_settings({"BHDS_NOW": "2025-01-10T12:00:00Z"})
    assert s.now() == datetime(2025, 1, 10, 12, tzinfo=timezone.utc)


def test_bad_environment_is_one_line_on_the_cli(tmp_path: Path) -> None:
    env = dict(os.environ, CRYPTO_NJOBS="abc", CRYPTO_BASE_DIR=str(tmp_path))
    proc = subprocess.run([sys.executable, "bhds.py", "aws_kline", "verify", "spot", "1m", "BTCUSDT"], cwd=REPO, env=env, capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "bhds: error: CRYPTO_NJOBS='abc' is not a whole number: set it to a number of at least 1, or unset it"
    ]


# ---- paths: the contract's layout table (§4) ----

def test_layout_matches_the_contract() -> None:
    d = Layout(Path("/home/u/crypto_data/binance_data"))
    aws = "/home/u/crypto_data/binance_data/aws_data/data"
    spot, um, cm = TradeType.spot, TradeType.um_futures, TradeType.cm_futures
    zip_path = d.aws_kline_dir(spot, "BTCUSDT", "1m") / paths.kline_zip_name("BTCUSDT", "1m", date(2020, 1, 1))
    assert str(zip_path) == f"{aws}/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2020-01-01.zip"
    assert str(paths.checksum_path(zip_path)).endswith("BTCUSDT-1m-2020-01-01.zip.CHECKSUM")
    assert str(paths.verified_marker(zip_path)).endswith("BTCUSDT-1m-2020-01-01.zip.verified")
    assert str(d.aws_kline_dir(um, "BTCUSDT", "1m")) == f"{aws}/futures/um/daily/klines/BTCUSDT/1m"
    assert str(d.aws_kline_dir(cm, "BTCUSD_PERP", "1m")) == f"{aws}/futures/cm/daily/klines/BTCUSD_PERP/1m"
    assert str(d.aws_funding_dir(um, "BTCUSDT") / paths.funding_zip_name("BTCUSDT", 2020, 1)) == (
        f"{aws}/futures/um/monthly/fundingRate/BTCUSDT/BTCUSDT-fundingRate-2020-01.zip")
    assert str(d.aws_liquidation_dir(um, "BTCUSDT")) == f"{aws}/futures/um/daily/liquidationSnapshot/BTCUSDT"
    root = "/home/u/crypto_data/binance_data"
    assert str(d.parsed_kline_partition(spot, "BTCUSDT", "1m", 2020, 1)) == f"{root}/parsed_data/spot/klines/BTCUSDT/1m/202001.pqt"
    assert str(d.parsed_funding_file(um, "BTCUSDT")) == f"{root}/parsed_data/um_futures/funding/BTCUSDT.pqt"
    assert str(d.api_kline_day_file(um, "BTCUSDT", "1m", date(2025, 1, 2))) == f"{root}/api_data/um_futures/klines/BTCUSDT/1m/20250102.pqt"
    assert str(d.api_funding_file(cm, "BTCUSD_PERP")) == f"{root}/api_data/cm_futures/funding_rate/BTCUSD_PERP.pqt"
    assert str(d.results_kline_file(spot, "1m", "SP0_LUNAUSDT")) == f"{root}/results_data/spot/klines/1m/SP0_LUNAUSDT.pqt"
    assert str(d.resampled_file(um, "1h", "35m", "BTCUSDT")) == f"{root}/results_data/um_futures/resampled_klines/1h/35m/BTCUSDT.pqt"


def test_s3_prefixes() -> None:
    assert paths.kline_symbols_prefix(TradeType.spot) == "data/spot/daily/klines/"
    assert paths.kline_files_prefix(TradeType.um_futures, "BTCUSDT", "1m") == "data/futures/um/daily/klines/BTCUSDT/1m/"
    assert paths.funding_symbols_prefix(TradeType.cm_futures) == "data/futures/cm/monthly/fundingRate/"
    assert paths.liquidation_files_prefix(TradeType.cm_futures, "BTCUSD_PERP") == "data/futures/cm/daily/liquidationSnapshot/BTCUSD_PERP/"
    layout = Layout(Path("/d"))
    assert layout.local_for_key("data/spot/daily/klines/") == Path("/d/aws_data/data/spot/daily/klines")


# ---- intervals ----

@pytest.mark.parametrize(
    ("text", "ms", "per_day"),
    [("1s", 1_000, 86_400), ("1m", 60_000, 1440), ("5m", 300_000, 288), ("15T", 900_000, 96), ("1h", 3_600_000, 24),
     ("4H", 14_400_000, 6), ("1d", 86_400_000, 1), ("3d", 3 * 86_400_000, None), ("1w", 7 * 86_400_000, None)],
)
def test_intervals(text: str, ms: int, per_day: int | None) -> None:
    interval = parse_interval(text)
    assert interval.ms == ms and interval.bars_per_day == per_day and interval.text == text


def test_month_interval() -> None:
    month = parse_interval("1mo", archive=True)
    assert month.is_calendar and month.rest_name == "1M" and month.bars_per_day is None


@pytest.mark.parametrize("bad", ["7x", "0m", "", "m", "1.5h", "-1m"])
def test_bad_intervals(bad: str) -> None:
    with pytest.raises(InputError) as info:
        parse_interval(bad)
    assert info.value.exit_code == 2


def test_archive_interval_list() -> None:
    with pytest.raises(InputError, match="not published by Binance"):
        parse_interval("7m", archive=True)
    assert parse_interval("7m").ms == 420_000


# ---- storage ----

def _klines(n: int) -> pa.Table:
    start = 1_577_836_800_000
    cols = {
        "candle_begin_time": pa.array([start + i * 60_000 for i in range(n)], pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
        **{c: pa.array([float(i) for i in range(n)]) for c in ("open", "high", "low", "close", "volume", "quote_volume")},
        "trade_num": pa.array(list(range(n)), pa.int64()),
        "taker_buy_base_asset_volume": pa.array([1.0] * n),
        "taker_buy_quote_asset_volume": pa.array([2.0] * n),
    }
    return pa.table(cols, schema=KLINE_SCHEMA)


def test_parquet_round_trip_keeps_contract_dtypes(tmp_path: Path) -> None:
    target = tmp_path / "a" / "202001.pqt"
    write_table(_klines(5), target)
    back = read_table(target, KLINE_SCHEMA)
    assert back.schema == KLINE_SCHEMA and back.num_rows == 5
    import pandas as pd

    frame = pd.read_parquet(target)
    assert str(frame["candle_begin_time"].dtype) == "datetime64[ms, UTC]"
    assert str(frame["trade_num"].dtype) == "int64"
    assert list(tmp_path.joinpath("a").iterdir()) == [target]  # no temp file left


def test_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "p.pqt"
    write_table(_klines(3), target)
    before = target.read_bytes()

    with pytest.raises(Exception):
        write_table("not a table", target)  # type: ignore[arg-type]
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["p.pqt"]


def test_killed_writer_leaves_old_file_and_a_sweepable_temp(tmp_path: Path) -> None:
    """SIGKILL in the middle of writing: the target is untouched; the leftover temp is swept later."""
    target = tmp_path / "p.pqt"
    write_table(_klines(3), target)
    before = target.read_bytes()
    code = (
        "import os, signal, pyarrow.parquet as pq\n"
        "from bhds import storage\n"
        "import tests.test_foundation as t\n"
        f"with storage.atomic_path(__import__('pathlib').Path({str(target)!r})) as tmp:\n"
        "    pq.write_table(t._klines(100000), tmp)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True)
    assert proc.returncode == -9
    assert target.read_bytes() == before
    leftovers = [p for p in tmp_path.iterdir() if p != target]
    assert len(leftovers) == 1 and leftovers[0].name.endswith(".bhds-tmp")
    assert sweep_temp_files(tmp_path) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["p.pqt"]


def test_unreadable_parquet_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pqt"
    bad.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(DataError, match="delete the file"):
        read_table(bad, KLINE_SCHEMA)


def test_disk_full_is_a_clear_error_and_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    target = tmp_path / "x.pqt"
    write_table(_klines(2), target)
    before = target.read_bytes()

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("bhds.storage.files.os.replace", full)
    with pytest.raises(DataError, match="disk full while writing"):
        write_table(_klines(5), target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["x.pqt"]


def test_stage_lock_names_the_holder(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    code = (
        "import sys, time\nfrom pathlib import Path\nfrom bhds.paths import Layout\nfrom bhds.storage import stage_lock\n"
        f"with stage_lock(Layout(Path({str(tmp_path)!r})), 'parse-spot'):\n    print('held', flush=True)\n    time.sleep(30)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockBusy) as info:
            with stage_lock(layout, "parse-spot", timeout=0.3):
                pass
        assert f"PID {holder.pid}" in str(info.value)
        with stage_lock(layout, "parse-um_futures"):  # another stage is free
            pass
    finally:
        holder.kill()
        holder.wait()
    with stage_lock(layout, "parse-spot"):  # released when the holder died
        pass


def test_package_version_matches_setup_cfg() -> None:
    import configparser

    import bhds

    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    assert config["metadata"]["version"] == bhds.__version__


@pytest.mark.parametrize(("value", "on"), [("", False), ("0", False), ("false", False), ("No", False), ("1", True), ("yes", True)])
def test_bhds_debug(value: str, on: bool) -> None:
    from bhds.settings import debug_from_env

    assert debug_from_env({"BHDS_DEBUG": value}) is on
    assert load_settings({"BHDS_DEBUG": value}).debug is on
