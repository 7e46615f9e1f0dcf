"""generate indicators-type: TA-Lib's own values, per split segment, incremental, one-line errors; read_indicators."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bhds.cli import main
from bhds.errors import InputError
from bhds.indicators import read_indicators
from bhds.paths import Layout, list_files
from bhds.types import TradeType
from bhds.workflows import generate, indicators
from tests.test_generate_support import klines, ms, settings_for, steps, write_archive

talib = pytest.importorskip("talib")

SPOT = TradeType.spot
DEFAULTS = dict(split_gaps=True, min_days=1, min_price_chg=0.1, with_vwap=True, with_funding_rates=True)
SPECS = ["rsi:14", "macd:12,26,9", "bbands:20,2", "atr:14", "sma:10", "ema:10"]


def random_walk(t: np.ndarray, start: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return start * np.exp(np.cumsum(rng.normal(0, 0.002, len(t))))


def split_store(base: Path, symbol: str = "BTCUSDT") -> None:
    """Two days, a two-day hole with a 49% jump (a split), two more days: SP0_<symbol> and <symbol>."""
    layout = Layout(base / "binance_data")
    first, second = steps("2024-01-01", "2024-01-03"), steps("2024-01-05", "2024-01-07")
    price = np.concatenate([random_walk(first, 100.0, 1), random_walk(second, 149.0, 2)])
    write_archive(layout, SPOT, symbol, "1m", klines(np.concatenate([first, second]), price, seed=3))
    generate.kline_type(settings_for(base), trade_type=SPOT, time_interval="1m", **DEFAULTS)


def plain_store(base: Path, symbol: str = "ETHUSDT") -> None:
    layout = Layout(base / "binance_data")
    t = steps("2024-01-01", "2024-01-03")
    write_archive(layout, SPOT, symbol, "1m", klines(t, random_walk(t, 10.0, 4), seed=5))


def run(base: Path, interval: str = "1m", offset: str | None = None, specs: list[str] = SPECS, n_jobs: int = 1):
    return indicators.indicators_type(settings_for(base, n_jobs), trade_type=SPOT, time_interval=interval, offset=offset, indicators=specs)


def talib_columns(segment: pa.Table) -> dict[str, np.ndarray]:
    """What TA-Lib itself gives on one segment, named as bhds names the columns."""
    c, h, low = (segment.column(n).to_numpy() for n in ("close", "high", "low"))
    macd, signal, hist = talib.MACD(c, fastperiod=12, slowperiod=26, signalperiod=9)
    upper, middle, lower = talib.BBANDS(c, timeperiod=20, nbdevup=2.0, nbdevdn=2.0)
    return {
        "rsi_14": talib.RSI(c, timeperiod=14), "macd_12_26_9": macd, "macd_signal_12_26_9": signal, "macd_hist_12_26_9": hist,
        "bbands_upper_20_2": upper, "bbands_middle_20_2": middle, "bbands_lower_20_2": lower,
        "atr_14": talib.ATR(h, low, c, timeperiod=14), "sma_10": talib.SMA(c, timeperiod=10), "ema_10": talib.EMA(c, timeperiod=10),
    }


def assert_equals_talib(output: pa.Table, segments: list[pa.Table]) -> None:
    times = output.column("candle_begin_time").cast(pa.int64()).to_numpy()
    expected_times = np.concatenate([s.column("candle_begin_time").cast(pa.int64()).to_numpy() for s in segments])
    np.testing.assert_array_equal(times, expected_times)
    expected = [talib_columns(s) for s in segments]
    assert output.column_names == ["candle_begin_time", *expected[0]]
    for name in expected[0]:
        want = np.concatenate([e[name] for e in expected])
        got = output.column(name).to_numpy(zero_copy_only=False)  # nulls come back as NaN
        assert np.array_equal(np.isnan(got), np.isnan(want)), name
        np.testing.assert_array_equal(got[~np.isnan(got)], want[~np.isnan(want)], err_msg=name)


def results_segments(base: Path, directory: Path, symbol: str) -> list[pa.Table]:
    files = [p for p in list_files(directory, ".pqt") if p.stem == symbol or p.stem.endswith(f"_{symbol}") and p.stem.startswith("SP")]
    tables = [pq.read_table(p) for p in files]
    return sorted(tables, key=lambda t: t.column("candle_begin_time")[0].as_py())


def test_values_equal_talib_on_each_segment_of_a_split_symbol(tmp_path: Path) -> None:
    split_store(tmp_path)
    layout = Layout(tmp_path / "binance_data")
    source = layout.results_kline_dir(SPOT, "1m")
    assert sorted(p.name for p in list_files(source, ".pqt")) == ["BTCUSDT.pqt", "SP0_BTCUSDT.pqt"]

    summary = run(tmp_path, n_jobs=2)

    assert summary.failed == 0 and summary.files == 1 and summary.rows == 4 * 1440
    out_path = layout.root / "results_data" / "spot" / "indicators" / "1m" / "BTCUSDT.pqt"
    assert [p.name for p in list_files(out_path.parent, ".pqt")] == ["BTCUSDT.pqt"]
    output = pq.read_table(out_path)
    segments = results_segments(tmp_path, source, "BTCUSDT")
    assert_equals_talib(output, segments)
    # Nothing reaches across the split: the second segment warms up again, and differs from a run over both.
    rsi = output.column("rsi_14").to_numpy(zero_copy_only=False)
    assert np.isnan(rsi[2 * 1440: 2 * 1440 + 14]).all() and not np.isnan(rsi[2 * 1440 + 14])
    assert output.column("rsi_14").null_count == 28  # warm-up rows are nulls, not NaN, on disk


def test_resampled_offset_folder_is_read_and_mirrored(tmp_path: Path) -> None:
    split_store(tmp_path)
    generate.resample_type(settings_for(tmp_path), trade_type=SPOT, resample_interval="1h", base_offset="15m")
    layout = Layout(tmp_path / "binance_data")

    summary = run(tmp_path, "1h", "15m")

    assert summary.failed == 0 and summary.files == 1
    out_path = layout.indicators_file(SPOT, "1h", "15m", "BTCUSDT")
    assert out_path == layout.root / "results_data" / "spot" / "indicators" / "1h" / "15m" / "BTCUSDT.pqt"
    assert_equals_talib(pq.read_table(out_path), results_segments(tmp_path, layout.resampled_dir(SPOT, "1h", "15m"), "BTCUSDT"))


def test_reruns_skip_unchanged_symbols_and_redo_changed_ones(tmp_path: Path) -> None:
    split_store(tmp_path)
    plain_store(tmp_path)
    generate.kline_type(settings_for(tmp_path), trade_type=SPOT, time_interval="1m", **DEFAULTS)
    layout = Layout(tmp_path / "binance_data")
    first = run(tmp_path, n_jobs=2)  # two symbols: worker processes
    assert (first.files, first.skipped) == (2, 0)
    btc = layout.indicators_file(SPOT, "1m", None, "BTCUSDT")
    before = btc.stat().st_mtime_ns

    again = run(tmp_path)
    assert (again.files, again.skipped) == (0, 2)

    # generate rewrites every results file with the same rows: the digest sees nothing changed.
    generate.kline_type(settings_for(tmp_path), trade_type=SPOT, time_interval="1m", **DEFAULTS)
    regenerated = run(tmp_path)
    assert (regenerated.files, regenerated.skipped) == (0, 2)
    assert btc.stat().st_mtime_ns == before

    # New klines for one symbol: only that one is computed again.
    t = steps("2024-01-01", "2024-01-04")
    write_archive(layout, SPOT, "ETHUSDT", "1m", klines(t, random_walk(t, 10.0, 9), seed=5))
    generate.kline_type(settings_for(tmp_path), trade_type=SPOT, time_interval="1m", **DEFAULTS)
    changed = run(tmp_path)
    assert (changed.files, changed.skipped) == (1, 1)
    assert pq.read_table(layout.indicators_file(SPOT, "1m", None, "ETHUSDT")).num_rows == 3 * 1440

    # Other specs: every file is rebuilt with exactly those columns.
    respecified = run(tmp_path, specs=["rsi:21"])
    assert (respecified.files, respecified.skipped) == (2, 0)
    assert pq.read_schema(btc).names == ["candle_begin_time", "rsi_21"]

    # A deleted output is rebuilt; a symbol without klines loses its indicators.
    btc.unlink()
    for path in list_files(layout.results_kline_dir(SPOT, "1m"), ".pqt"):
        if "ETHUSDT" in path.name:
            path.unlink()
    last = run(tmp_path, specs=["rsi:21"])
    assert (last.files, last.skipped) == (1, 0)
    assert [p.name for p in list_files(btc.parent, ".pqt")] == ["BTCUSDT.pqt"]


def cli(argv: list[str], base: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    monkeypatch.setenv("CRYPTO_BASE_DIR", str(base))
    monkeypatch.setenv("CRYPTO_NJOBS", "1")
    capsys.readouterr()  # drop what building the store logged
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


def test_cli_writes_the_files_and_prints_the_summary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    split_store(tmp_path)
    code, out, _ = cli(["generate", "indicators-type", "spot", "1m", "--indicator", "rsi:14", "--indicator", "macd"], tmp_path, monkeypatch, capsys)
    assert code == 0
    assert out.strip().startswith("generate indicators-type: files=1 rows=5,760")
    names = pq.read_schema(Layout(tmp_path / "binance_data").indicators_file(SPOT, "1m", None, "BTCUSDT")).names
    assert names == ["candle_begin_time", "rsi_14", "macd_12_26_9", "macd_signal_12_26_9", "macd_hist_12_26_9"]


@pytest.mark.parametrize(("argv", "says"), [
    (["--indicator", "rsi:abc"], "--indicator 'rsi:abc': 'abc' is not a whole number; e.g. rsi:14"),
    (["--indicator", "foo:3"], "--indicator 'foo:3': unknown indicator; use one of adx, atr, bbands,"),
    (["--indicator", "macd:12,26"], "--indicator 'macd:12,26': macd takes 3 numbers, e.g. macd:12,26,9"),
    (["--indicator", "rsi:0"], "--indicator 'rsi:0': '0' must be a positive number"),
    (["--indicator", "rsi:1"], "--indicator rsi:1: TA-Lib refuses these numbers"),
    ([], "no indicator given: pass at least one --indicator"),
    (["--indicator", "rsi", "--offset", "5m"], "--offset is for resampled klines: 1m results have no offsets"),
])
def test_bad_specs_are_one_line_usage_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
                                             argv: list[str], says: str) -> None:
    split_store(tmp_path)
    code, out, err = cli(["generate", "indicators-type", "spot", "1m", *argv], tmp_path, monkeypatch, capsys)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith(f"bhds: error: {says}"), err


def test_missing_offset_folder_names_the_ones_on_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    split_store(tmp_path)
    generate.resample_type(settings_for(tmp_path), trade_type=SPOT, resample_interval="1h", base_offset="30m")
    code, _, err = cli(["generate", "indicators-type", "spot", "1h", "--offset", "5m", "--indicator", "rsi"], tmp_path, monkeypatch, capsys)
    assert code == 2 and "use one of the offsets on disk (0m, 30m)" in err
    code, _, err = cli(["generate", "indicators-type", "spot", "1h", "--indicator", "rsi"], tmp_path, monkeypatch, capsys)
    assert code == 1 and "run `generate kline-type spot 1h` first, or pass --offset" in err and "(offsets on disk: 0m, 30m)" in err


def test_without_talib_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    split_store(tmp_path)
    monkeypatch.setitem(sys.modules, "talib", None)  # what `import talib` sees when it is not installed
    code, out, err = cli(["generate", "indicators-type", "spot", "1m", "--indicator", "rsi:14"], tmp_path, monkeypatch, capsys)
    assert code == 1 and out.startswith("generate indicators-type: files=0 ") and "stopped=error" in out  # the summary, still
    assert err == "bhds: error: technical indicators need TA-Lib, which is not installed: pip install 'bhds[indicators]'\n"


def test_read_indicators_by_spec_or_column_and_time_range(tmp_path: Path) -> None:
    split_store(tmp_path)
    run(tmp_path)
    data_dir = tmp_path / "binance_data"
    table = read_indicators("spot", "BTCUSDT", "1m", indicators=["macd:12,26,9", "rsi_14"], data_dir=data_dir,
                            start="2024-01-05", end="2024-01-05T01:00")
    assert table.column_names == ["candle_begin_time", "macd_12_26_9", "macd_signal_12_26_9", "macd_hist_12_26_9", "rsi_14"]
    times = table.column("candle_begin_time").cast(pa.int64()).to_numpy()
    np.testing.assert_array_equal(times, np.arange(ms("2024-01-05"), ms("2024-01-05T01:00"), 60_000))
    assert str(table.schema.field("candle_begin_time").type) == "timestamp[ms, tz=UTC]"
    assert read_indicators(SPOT, "BTCUSDT", data_dir=data_dir).num_columns == 11
    with pytest.raises(InputError, match=r"has no column rsi_21: run `bhds generate indicators-type spot 1m --indicator rsi:21`"):
        read_indicators(SPOT, "BTCUSDT", indicators=["rsi:21"], data_dir=data_dir)
    with pytest.raises(InputError, match="no indicators for XRPUSDT spot 1m"):
        read_indicators(SPOT, "XRPUSDT", data_dir=data_dir)
    assert os.path.exists(data_dir / "results_data" / "spot" / "indicators" / "1m" / "BTCUSDT.pqt")


def test_load_joins_the_indicators_on_candle_time_across_a_split(tmp_path: Path) -> None:
    import bhds

    split_store(tmp_path)
    run(tmp_path)
    data_dir = tmp_path / "binance_data"
    frame = bhds.load("spot", "BTCUSDT", "1m", start="2024-01-02T23:00", end="2024-01-05T01:00", columns=["close"],
                      indicators=["rsi:14"], data_dir=data_dir)
    assert list(frame.columns) == ["candle_begin_time", "close", "rsi_14"]
    by_hand = read_indicators("spot", "BTCUSDT", "1m", indicators=["rsi:14"], data_dir=data_dir,
                              start="2024-01-02T23:00", end="2024-01-05T01:00").to_pandas()
    assert len(frame) == len(by_hand) == 60 + 60  # the hour before the split and the hour after it
    assert frame["candle_begin_time"].is_monotonic_increasing
    np.testing.assert_array_equal(frame["candle_begin_time"].to_numpy(), by_hand["candle_begin_time"].to_numpy())
    np.testing.assert_array_equal(frame["rsi_14"].to_numpy(dtype=float, na_value=np.nan),
                                  by_hand["rsi_14"].to_numpy(dtype=float, na_value=np.nan))
    assert frame["rsi_14"].iloc[60:74].isna().all()  # warm-up again after the split: no window reaches across it
    with pytest.raises(InputError, match="not from source='parsed'"):
        bhds.load("spot", "BTCUSDT", source="parsed", indicators=["rsi:14"], data_dir=data_dir)
