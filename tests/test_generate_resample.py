"""generate resample / resample-type (contract §6.12, §5.7 and the issue's fixes), on real Parquet files."""

from __future__ import annotations

import csv
import io
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from bhds.cli import main
from bhds.errors import InputError
from bhds.generate.offsets import plan_resample
from bhds.paths import Layout, list_files, list_subdirs
from bhds.schema import KLINE_SCHEMA, TIMESTAMP
from bhds.storage import write_table
from bhds.types import TradeType
from bhds.workflows import generate
from tests.test_generate import assert_same_in_pandas_and_polars
from tests.test_generate_support import HOUR, MINUTE, klines, ms, read, settings_for, steps, times, write_archive, write_funding

SPOT, UM, CM = TradeType.spot, TradeType.um_futures, TradeType.cm_futures
REAL = Path(__file__).resolve().parent / "data" / "real" / "spot" / "daily" / "klines" / "BTCUSDT" / "1m"
SUMS = ["volume", "quote_volume", "trade_num", "taker_buy_base_asset_volume", "taker_buy_quote_asset_volume"]


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    return Layout(tmp_path / "binance_data")


def resample_type(base: Path, trade_type: TradeType, interval: str, offset: str, n_jobs: int = 1):
    return generate.resample_type(settings_for(base, n_jobs), trade_type=trade_type, resample_interval=interval, base_offset=offset)


def write_results_1m(layout: Layout, trade_type: TradeType, name: str, t: np.ndarray, seed: int = 0, funding: dict[int, float] | None = None) -> pa.Table:
    """A 1m results file as `generate kline-type` writes it (random walk, some no-trade minutes)."""
    rng = np.random.default_rng(seed)
    price = 100 * np.exp(np.cumsum(rng.normal(0, 0.001, len(t))))
    volume = np.where(rng.random(len(t)) < 0.1, 0.0, rng.exponential(3.0, len(t)))
    table = klines(t, price, volume, seed=seed)
    vwap = np.clip(np.where(volume > 0, price, table.column("open").to_numpy()), table.column("low").to_numpy(), table.column("high").to_numpy())
    table = table.append_column("avg_price_1m", pa.array(vwap))
    if funding is not None:
        rates = np.array([funding.get(int(x), 0.0) for x in t])
        table = table.append_column("funding_rate", pa.array(rates))
    write_table(table, layout.results_kline_file(trade_type, "1m", name))
    return table


# ---- offsets (contract §6.12 table) and argument checks ----

@pytest.mark.parametrize(
    ("interval", "offset", "names"),
    [
        ("1h", "5m", [f"{i}m" for i in range(0, 60, 5)]),
        ("1h", "15m", ["0m", "15m", "30m", "45m"]),
        ("4h", "1h", ["0h", "1h", "2h", "3h"]),
        ("4h", "30m", [f"{i}m" for i in range(0, 240, 30)]),
        ("5m", "0m", ["0m"]),
    ],
)
def test_offset_table(interval: str, offset: str, names: list[str]) -> None:
    assert [o.name for o in plan_resample(interval, offset).offsets] == names


@pytest.mark.parametrize(
    ("interval", "offset", "says"),
    [
        ("1h", "25m", "does not divide"),  # the legacy tool made 0m and 25m; the issue asks for an error
        ("1h", "1h", "not shorter"),
        ("1h", "2h", "not shorter"),
        ("4h", "0h", "is zero: use 0m"),
        ("1h", "-5m", "is not an interval"),
        ("1h", "abc", "is not an interval"),
        ("0h", "0m", "is zero"),
        ("30s", "0m", "whole number of minutes"),
        ("1mo", "1d", "calendar period"),
    ],
)
def test_bad_offsets_are_one_line_usage_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, interval: str, offset: str, says: str) -> None:
    with pytest.raises(InputError) as info:
        plan_resample(interval, offset)
    assert info.value.exit_code == 2 and says in info.value.message
    monkeypatch.setenv("CRYPTO_BASE_DIR", str(tmp_path))
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", "resample-type", "--", "spot", interval, offset])  # "--" lets "-5m" through Click
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1 and err[0].startswith("bhds: error: ") and says in err[0]


# ---- windows and aggregations against an independent pandas reference ----

def reference(table: pa.Table, interval_ms: int, offset_ms: int) -> pd.DataFrame:
    """Windows computed the slow, obvious way: group minutes by (t − offset) // interval."""
    df = table.to_pandas()
    df["t"] = times(table)
    df["window"] = (df.t - offset_ms) // interval_ms * interval_ms + offset_ms
    g = df.groupby("window")
    out = pd.DataFrame({"open": g.open.first(), "high": g.high.max(), "low": g.low.min(), "close": g.close.last(), **{c: g[c].sum() for c in SUMS}})
    out["avg_price_1m"] = g.avg_price_1m.first()  # the first minute's VWAP, as the legacy tool
    complete = g.t.max() + MINUTE - g.t.min() == interval_ms
    return out[complete]


@pytest.mark.parametrize(("interval", "base", "interval_ms", "checked"), [("1h", "5m", HOUR, ["0m", "35m", "55m"]), ("4h", "1h", 4 * HOUR, ["0h", "3h"]), ("5m", "0m", 5 * MINUTE, ["0m"])])
def test_windows_match_a_pandas_reference(tmp_path: Path, layout: Layout, interval: str, base: str, interval_ms: int, checked: list[str]) -> None:
    t = steps("2024-03-01T00:07", "2024-03-03T05:43")
    source = write_results_1m(layout, SPOT, "BTCUSDT", t, seed=3)
    summary = resample_type(tmp_path, SPOT, interval, base)
    plan = plan_resample(interval, base)
    assert list_subdirs(layout.resampled_interval_dir(SPOT, interval)) == sorted(o.name for o in plan.offsets)
    assert summary.files == len(plan.offsets)
    for offset in plan.offsets:
        if offset.name not in checked:
            continue
        got = read(layout.resampled_file(SPOT, interval, offset.name, "BTCUSDT"))
        want = reference(source, interval_ms, offset.blocks * plan.block_ms)
        assert got.schema.equals(source.schema)
        assert (times(got) == want.index.to_numpy()).all()  # labelled by start, incomplete edges dropped
        g = got.to_pandas()
        for name in ["open", "high", "low", "close", *SUMS, "avg_price_1m"]:
            assert np.allclose(g[name].to_numpy(), want[name].to_numpy(), rtol=1e-12, atol=0), name
        assert g["trade_num"].dtype == np.int64


def real_minutes() -> pa.Table:
    """Binance's own BTCUSDT 1m rows of 2020-01-01..03, straight from the zips' CSV."""
    rows = []
    for path in sorted(REAL.glob("*.zip")):
        with zipfile.ZipFile(path) as archive:
            rows += list(csv.reader(io.TextIOWrapper(archive.open(archive.namelist()[0]))))
    col = lambda i, kind: [kind(r[i]) for r in rows]  # noqa: E731
    return pa.table({"candle_begin_time": pa.array(col(0, int), type=TIMESTAMP), "open": col(1, float), "high": col(2, float), "low": col(3, float),
                     "close": col(4, float), "volume": col(5, float), "quote_volume": col(7, float), "trade_num": col(8, int),
                     "taker_buy_base_asset_volume": col(9, float), "taker_buy_quote_asset_volume": col(10, float)}, schema=KLINE_SCHEMA)


def test_resampled_vwap_is_the_first_minutes_on_real_binance_minutes(tmp_path: Path, layout: Layout) -> None:
    """avg_price_1m of a resampled bar is the VWAP of its first minute (contract §6.12), at every offset.

    A strategy enters at the next bar's avg_price_1m: a whole-window VWAP there would use up to an
    hour of future prices. Minutes 03:00-03:02 of Jan 1st are removed, so the bars opening then
    start on gap-filled minutes, whose VWAP is the previous close (the legacy fill).
    """
    table = real_minutes()
    t = times(table)
    hole = (t >= ms("2020-01-01T03:00")) & (t < ms("2020-01-01T03:03"))
    write_archive(layout, SPOT, "BTCUSDT", "1m", table.filter(pa.array(~hole)))
    generate.kline_type(settings_for(tmp_path), trade_type=SPOT, time_interval="1m", split_gaps=True, min_days=1, min_price_chg=0.1, with_vwap=True, with_funding_rates=False)
    resample_type(tmp_path, SPOT, "1h", "5m")

    df = table.to_pandas()
    minute_vwap = np.clip(df.quote_volume / df.volume, df.low, df.high)  # every real minute here traded
    expected = dict(zip(t.tolist(), minute_vwap))
    previous_close = float(df.close[t == ms("2020-01-01T02:59")].iloc[0])
    for minute in (ms("2020-01-01T03:00"), ms("2020-01-01T03:01"), ms("2020-01-01T03:02")):
        expected[minute] = previous_close
    for offset in plan_resample("1h", "5m").offsets:
        bars = read(layout.resampled_file(SPOT, "1h", offset.name, "BTCUSDT"))
        begin = times(bars)
        assert len(begin) >= 70
        assert bars.column("avg_price_1m").to_pylist() == [expected[b] for b in begin.tolist()], offset.name
        window_vwap = bars.column("quote_volume").to_numpy() / bars.column("volume").to_numpy()
        assert not np.allclose(bars.column("avg_price_1m").to_numpy(), window_vwap)
    one = read(layout.resampled_file(SPOT, "1h", "5m", "BTCUSDT")).to_pandas().set_index("candle_begin_time")
    assert one.avg_price_1m[pd.Timestamp("2020-01-01T01:05", tz="UTC")] == 58283.84729024 / 8.112425  # the CSV row of 01:05
    zero = read(layout.resampled_file(SPOT, "1h", "0m", "BTCUSDT")).to_pandas().set_index("candle_begin_time")
    assert zero.avg_price_1m[pd.Timestamp("2020-01-01T03:00", tz="UTC")] == previous_close


def test_leading_and_trailing_partial_windows_are_dropped(tmp_path: Path, layout: Layout) -> None:
    write_results_1m(layout, SPOT, "BTCUSDT", steps("2024-03-01T00:07", "2024-03-01T03:10"))
    resample_type(tmp_path, SPOT, "1h", "5m")
    labels = lambda off: [str(x)[11:16] for x in read(layout.resampled_file(SPOT, "1h", off, "BTCUSDT")).column(0).to_pylist()]  # noqa: E731
    assert labels("0m") == ["01:00", "02:00"]
    assert labels("5m") == ["01:05", "02:05"]  # 00:05-01:05 lacks 00:05 and 00:06
    assert labels("10m") == ["00:10", "01:10", "02:10"]  # 02:10-03:10 ends on the last minute, 03:09


def test_funding_is_summed_inside_windows_at_offsets_0_and_35m(tmp_path: Path, layout: Layout) -> None:
    t = steps("2024-01-01", "2024-01-02T12:00")
    events = {ms("2024-01-01T00:00"): 0.0001, ms("2024-01-01T08:00"): 0.0002, ms("2024-01-01T16:00"): -0.0003, ms("2024-01-02T00:00"): 0.0004, ms("2024-01-02T08:00"): 0.0005}
    write_results_1m(layout, UM, "BTCUSDT", t, funding=events)
    resample_type(tmp_path, UM, "1h", "5m")

    def nonzero(offset: str) -> dict[str, float]:
        df = read(layout.resampled_file(UM, "1h", offset, "BTCUSDT")).to_pandas()
        return {str(k)[5:16]: v for k, v in zip(df.candle_begin_time, df.funding_rate) if v != 0}

    assert nonzero("0m") == {"01-01 00:00": 0.0001, "01-01 08:00": 0.0002, "01-01 16:00": -0.0003, "01-02 00:00": 0.0004, "01-02 08:00": 0.0005}
    # At 35m the window [07:35, 08:35) holds the 08:00 event; the first event (00:00) is in a partial window.
    assert nonzero("35m") == {"01-01 07:35": 0.0002, "01-01 15:35": -0.0003, "01-01 23:35": 0.0004, "01-02 07:35": 0.0005}


def test_funding_from_generate_kline_type_through_resample(tmp_path: Path, layout: Layout) -> None:
    write_archive(layout, UM, "ETHUSDT", "1m", klines(steps("2024-01-01", "2024-01-02"), 2000.0))
    write_funding(layout, UM, "ETHUSDT", [ms("2024-01-01T08:00") + 1, ms("2024-01-01T16:00") + 1], [0.01, 0.02])
    generate.kline_type(settings_for(tmp_path), trade_type=UM, time_interval="1m", split_gaps=True, min_days=1, min_price_chg=0.1, with_vwap=True, with_funding_rates=True)
    resample_type(tmp_path, UM, "1h", "5m")
    for offset in ("0m", "35m", "55m"):
        assert read(layout.resampled_file(UM, "1h", offset, "ETHUSDT")).column("funding_rate").to_numpy().sum() == pytest.approx(0.03)


def test_coin_m_resampled_vwap_is_the_first_minutes(tmp_path: Path, layout: Layout) -> None:
    t = steps("2024-01-01", "2024-01-01T02:00")
    price = np.where(np.arange(len(t)) % 2 == 0, 100.0, 200.0)
    contracts = np.full(len(t), 10.0)
    table = klines(t, price, contracts).set_column(6, "quote_volume", pa.array(contracts * 10 / price))
    table = table.append_column("avg_price_1m", pa.array(price))
    write_table(table, layout.results_kline_file(CM, "1m", "ETHUSD_PERP"))
    resample_type(tmp_path, CM, "1h", "0m")
    vwap = read(layout.resampled_file(CM, "1h", "0m", "ETHUSD_PERP")).column("avg_price_1m").to_numpy()
    # Each hour opens on a minute at 100: that minute's VWAP, not the window's (the harmonic mean 133.33).
    assert vwap.tolist() == [100.0, 100.0]


def test_weekly_windows_open_on_monday_and_daily_on_midnight(tmp_path: Path, layout: Layout) -> None:
    write_results_1m(layout, SPOT, "BTCUSDT", steps("2024-01-03", "2024-01-23"))  # Wed 3rd .. Mon 22nd
    resample_type(tmp_path, SPOT, "1w", "0m")
    resample_type(tmp_path, SPOT, "1d", "0m")
    weeks = read(layout.resampled_file(SPOT, "1w", "0m", "BTCUSDT")).to_pandas().candle_begin_time
    assert [str(d)[:10] for d in weeks] == ["2024-01-08", "2024-01-15"]
    assert read(layout.resampled_file(SPOT, "1d", "0m", "BTCUSDT")).num_rows == 20


# ---- files, schemas, safe replacement ----

def test_every_results_file_sp_included_gives_one_file_per_offset_with_the_input_schema(tmp_path: Path, layout: Layout) -> None:
    t = steps("2024-01-01", "2024-01-01T06:00")
    inputs = {name: write_results_1m(layout, UM, name, t, funding={}) for name in ("SP0_BTCUSDT", "BTCUSDT")}
    inputs["ETHUSDT"] = klines(t, 1.0)  # no VWAP, no funding
    write_table(inputs["ETHUSDT"], layout.results_kline_file(UM, "1m", "ETHUSDT"))
    old = layout.resampled_file(UM, "1h", "0m", "OLDUSDT")  # the previous tree is replaced as a whole
    old.parent.mkdir(parents=True)
    old.write_bytes(b"x")
    resample_type(tmp_path, UM, "1h", "15m", n_jobs=2)
    for offset in ("0m", "15m", "30m", "45m"):
        directory = layout.resampled_dir(UM, "1h", offset)
        assert sorted(p.name for p in list_files(directory, ".pqt")) == ["BTCUSDT.pqt", "ETHUSDT.pqt", "SP0_BTCUSDT.pqt"]
        for name, source in inputs.items():
            path = layout.resampled_file(UM, "1h", offset, name)
            assert read(path).schema.equals(source.schema)
            assert_same_in_pandas_and_polars(path)
    assert read(layout.resampled_file(UM, "1h", "0m", "ETHUSDT")).schema.equals(KLINE_SCHEMA)


def test_failing_file_keeps_its_previous_resamples(tmp_path: Path, layout: Layout, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    t = steps("2024-01-01", "2024-01-01T06:00")
    write_results_1m(layout, SPOT, "BTCUSDT", t)
    write_results_1m(layout, SPOT, "ETHUSDT", t)
    resample_type(tmp_path, SPOT, "1h", "30m")
    before = layout.resampled_file(SPOT, "1h", "30m", "BTCUSDT").read_bytes()
    layout.results_kline_file(SPOT, "1m", "BTCUSDT").write_bytes(b"garbage")
    write_results_1m(layout, SPOT, "ETHUSDT", steps("2024-01-01", "2024-01-01T09:00"))
    monkeypatch.setenv("CRYPTO_BASE_DIR", str(tmp_path))
    monkeypatch.setenv("CRYPTO_NJOBS", "1")
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", "resample-type", "spot", "1h", "30m"])
    out, err = capsys.readouterr()
    assert exit_info.value.code == 3 and "bhds: failed: BTCUSDT: cannot read" in err and "failed=1" in out
    assert layout.resampled_file(SPOT, "1h", "30m", "BTCUSDT").read_bytes() == before
    assert read(layout.resampled_file(SPOT, "1h", "0m", "ETHUSDT")).num_rows == 9
    assert sorted(p.name for p in layout.resampled_interval_dir(SPOT, "1h").parent.iterdir()) == ["1h"]


def test_single_symbol_resample(tmp_path: Path, layout: Layout) -> None:
    t = steps("2024-01-01", "2024-01-01T03:00")
    write_results_1m(layout, SPOT, "BTCUSDT", t)
    write_results_1m(layout, SPOT, "SP0_BTCUSDT", t)
    summary = generate.resample(settings_for(tmp_path), trade_type=SPOT, symbol="BTCUSDT", resample_interval="1h", base_offset="20m")
    assert summary.files == 3
    for offset in ("0m", "20m", "40m"):
        assert [p.name for p in list_files(layout.resampled_dir(SPOT, "1h", offset), ".pqt")] == ["BTCUSDT.pqt"]
    with pytest.raises(InputError, match="'NOPE' not listed in the 1m results") as refused:  # a typo: exit 2
        generate.resample(settings_for(tmp_path), trade_type=SPOT, symbol="NOPE", resample_interval="1h", base_offset="20m")
    assert refused.value.exit_code == 2


def test_a_nan_minute_does_not_blank_its_window_high_and_low(tmp_path: Path, layout: Layout) -> None:
    # Another tool's 1m results with one NaN high and one NaN low: the legacy engine (polars max/min)
    # skips them, so the window keeps the extremes of its other minutes.
    table = write_results_1m(layout, SPOT, "BTCUSDT", steps("2024-03-01T00:00", "2024-03-01T02:00"))
    high, low = table.column("high").to_numpy().copy(), table.column("low").to_numpy().copy()
    high[10], low[70] = np.nan, np.nan
    table = table.set_column(2, "high", pa.array(high)).set_column(3, "low", pa.array(low))
    write_table(table, layout.results_kline_file(SPOT, "1m", "BTCUSDT"))
    resample_type(tmp_path, SPOT, "1h", "0m")
    bars = read(layout.resampled_file(SPOT, "1h", "0m", "BTCUSDT"))
    assert bars.column("high").to_pylist() == [np.nanmax(high[:60]), np.nanmax(high[60:])]
    assert bars.column("low").to_pylist() == [np.nanmin(low[:60]), np.nanmin(low[60:])]


@pytest.mark.parametrize(("interval", "offset"), [("1h", "5m"), ("5m", "0m"), ("4h", "15m"), ("1d", "1h"), ("1w", "0m"), ("3m", "0m")])
def test_a_regular_minute_grid_resamples_to_the_same_bits_as_scattered_minutes(tmp_path: Path, layout: Layout, monkeypatch: pytest.MonkeyPatch,
                                                                              interval: str, offset: str) -> None:
    # A results file on one regular 1m grid (what generate writes) takes a reshaping shortcut; the
    # same rows must resample to exactly the bytes the general path (any minutes) gives them:
    # sums in the same order, NaN highs/lows skipped, the same windows dropped at both ends.
    from bhds.generate import resample as engine

    t = steps("2024-03-01T00:07", "2024-03-15T13:41")  # starts and ends mid-window
    table = write_results_1m(layout, SPOT, "BTCUSDT", t, seed=3)
    high = table.column("high").to_numpy().copy()
    high[[5, 600, 601]] = np.nan
    write_table(table.set_column(2, "high", pa.array(high)), layout.results_kline_file(SPOT, "1m", "BTCUSDT"))

    resample_type(tmp_path, SPOT, interval, offset)
    shortcut = {p.parent.name: read(p) for p in layout.resampled_interval_dir(SPOT, interval).glob("*/*.pqt")}
    monkeypatch.setattr(engine, "_on_minute_grid", lambda t, plan: False)
    shutil.rmtree(layout.resampled_interval_dir(SPOT, interval))
    resample_type(tmp_path, SPOT, interval, offset)
    general = {p.parent.name: read(p) for p in layout.resampled_interval_dir(SPOT, interval).glob("*/*.pqt")}

    assert shortcut.keys() == general.keys() == {o.name for o in plan_resample(interval, offset).offsets}
    for name, table in general.items():
        assert table.num_rows > 0
        for column in table.column_names:
            expected, got = table.column(column).to_numpy(), shortcut[name].column(column).to_numpy()
            assert expected.dtype == got.dtype and expected.tobytes() == got.tobytes(), (name, column)
