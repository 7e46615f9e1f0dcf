"""generate kline / kline-type (contract §6.11, §5.6 and the issue's fixes), on real Parquet files."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

from bhds.cli import main
from bhds.errors import InputError
from bhds.paths import Layout, list_files, retired_dir, staging_dir
from bhds.schema import KLINE_SCHEMA, TIMESTAMP
from bhds.storage import recover_dir, replace_dir
from bhds.types import TradeType
from bhds.workflows import generate
from tests.test_generate_support import (
    DAY,
    HOUR,
    MINUTE,
    klines,
    ms,
    read,
    settings_for,
    steps,
    times,
    write_api_day,
    write_archive,
    write_funding,
)

REPO = Path(__file__).resolve().parent.parent
SPOT, UM, CM = TradeType.spot, TradeType.um_futures, TradeType.cm_futures
DEFAULTS = dict(split_gaps=True, min_days=1, min_price_chg=0.1, with_vwap=True, with_funding_rates=True)


def kline_type(base: Path, trade_type: TradeType, interval: str = "1m", n_jobs: int = 1, **options: object):
    return generate.kline_type(settings_for(base, n_jobs), trade_type=trade_type, time_interval=interval, **{**DEFAULTS, **options})


def kline_one(base: Path, trade_type: TradeType, symbol: str, interval: str = "1m", **options: object):
    return generate.kline(settings_for(base), trade_type=trade_type, time_interval=interval, symbol=symbol, **{**DEFAULTS, **options})


def results(base: Path, trade_type: TradeType, interval: str = "1m") -> dict[str, pa.Table]:
    directory = Layout(base / "binance_data").results_kline_dir(trade_type, interval)
    return {p.name[:-4]: read(p) for p in list_files(directory, ".pqt")}


def run_cli(argv: list[str], base: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    monkeypatch.setenv("CRYPTO_BASE_DIR", str(base))
    monkeypatch.setenv("CRYPTO_NJOBS", "1")
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    return Layout(tmp_path / "binance_data")


def three_segments(layout: Layout, symbol: str = "BTCUSDT") -> None:
    """Contract §6.11.5's example: 12-30..01-01, hole to 01-03 with +49%, hole to 01-06 with +0.3%."""
    t = np.concatenate([steps("2023-12-30", "2024-01-02"), steps("2024-01-03", "2024-01-04"), steps("2024-01-06", "2024-01-07")])
    price = np.where(t < ms("2024-01-03"), 100.0, np.where(t < ms("2024-01-06"), 149.0, 149.45))
    write_archive(layout, SPOT, symbol, "1m", klines(t, price))


# ---- §6.11.5 worked example, gap order ----

def test_worked_example_splits_into_sp0_sp1_and_plain(tmp_path: Path, layout: Layout) -> None:
    three_segments(layout)
    summary = kline_type(tmp_path, SPOT)
    out = results(tmp_path, SPOT)
    assert sorted(out) == ["BTCUSDT", "SP0_BTCUSDT", "SP1_BTCUSDT"]
    spans = {name: (times(tab)[0], times(tab)[-1], tab.num_rows) for name, tab in out.items()}
    assert spans["SP0_BTCUSDT"] == (ms("2023-12-30"), ms("2024-01-01T23:59"), 3 * 1440)
    assert spans["SP1_BTCUSDT"] == (ms("2024-01-03"), ms("2024-01-03T23:59"), 1440)
    assert spans["BTCUSDT"] == (ms("2024-01-06"), ms("2024-01-06T23:59"), 1440)
    assert summary.files == 3 and summary.rows == 5 * 1440 and summary.failed == 0


@pytest.mark.parametrize("first_gap", ["gap1", "gap2"])
def test_two_gaps_in_either_order_give_disjoint_segments_covering_every_candle(tmp_path: Path, layout: Layout, first_gap: str) -> None:
    # gap1: > 1 day and > 10% jump; gap2: > 2 days and any move. A 1.5-day hole with a 1% move is no gap.
    holes = {"gap1": (1.5, 1.30), "gap2": (3.0, 1.01)}
    order = [first_gap, "gap2" if first_gap == "gap1" else "gap1"]
    pieces, start, price = [], ms("2024-02-01"), 50.0
    for hole_days, factor in [(0, 1.0), holes[order[0]], (1.5, 1.01), holes[order[1]]]:
        start += int(hole_days * DAY)
        price *= factor
        t = np.arange(start, start + 2 * DAY, MINUTE, dtype=np.int64)
        pieces.append((t, price))
        start = int(t[-1]) + MINUTE
    t = np.concatenate([p[0] for p in pieces])
    write_archive(layout, SPOT, "ABCUSDT", "1m", klines(t, np.concatenate([np.full(len(p[0]), p[1]) for p in pieces])))
    kline_type(tmp_path, SPOT)
    out = results(tmp_path, SPOT)
    assert sorted(out) == ["ABCUSDT", "SP0_ABCUSDT", "SP1_ABCUSDT"]
    spans = [(times(out[n])[0], times(out[n])[-1]) for n in ("SP0_ABCUSDT", "SP1_ABCUSDT", "ABCUSDT")]
    assert spans[0] == (pieces[0][0][0], pieces[0][0][-1])
    assert spans[1] == (pieces[1][0][0], pieces[2][0][-1])  # the 1%-over-1.5-days hole is filled, not split
    assert spans[2] == (pieces[3][0][0], pieces[3][0][-1])
    assert all(a[1] < b[0] for a, b in zip(spans, spans[1:]))
    for tab in out.values():
        assert np.all(np.diff(times(tab)) == MINUTE)


def test_no_split_gaps_gives_one_filled_file(tmp_path: Path, layout: Layout) -> None:
    three_segments(layout)
    kline_type(tmp_path, SPOT, split_gaps=False)
    out = results(tmp_path, SPOT)
    assert list(out) == ["BTCUSDT"]
    assert out["BTCUSDT"].num_rows == (ms("2024-01-06T23:59") - ms("2023-12-30")) // MINUTE + 1


def test_unchanged_price_over_a_long_hole_is_not_a_gap(tmp_path: Path, layout: Layout) -> None:
    # gap2 needs a strictly non-zero price change, as in the legacy tool (contract §6.11.4).
    t = np.concatenate([steps("2024-03-01", "2024-03-02"), steps("2024-03-06", "2024-03-07")])
    table = klines(t, 10.0)
    table = table.set_column(1, "open", pa.array(np.full(len(t), 10.0))).set_column(4, "close", pa.array(np.full(len(t), 10.0)))
    write_archive(layout, SPOT, "FLATUSDT", "1m", table)
    kline_type(tmp_path, SPOT)
    assert list(results(tmp_path, SPOT)) == ["FLATUSDT"]


# ---- merge, zero volume, fill, VWAP ----

def test_api_wins_zero_volume_is_resynthesised_and_edges_vanish(tmp_path: Path, layout: Layout) -> None:
    t = steps("2024-01-01", "2024-01-02")
    archive = klines(t, 100.0).to_pandas()
    archive.loc[[0, 10, len(t) - 1], "volume"] = 0.0  # leading, interior and trailing no-trade candles
    write_archive(layout, SPOT, "BTCUSDT", "1m", pa.Table.from_pandas(archive, schema=KLINE_SCHEMA, preserve_index=False))
    api = klines(np.array([ms("2024-01-01T00:20")]), 222.0, seed=5)
    write_api_day(layout, SPOT, "BTCUSDT", "1m", date(2024, 1, 1), api)
    write_api_day(layout, SPOT, "BTCUSDT", "1m", date(2024, 1, 2), klines(steps("2024-01-02", "2024-01-02T01:00"), 101.0))
    write_api_day(layout, SPOT, "BTCUSDT", "1m", date(2024, 1, 3), klines(np.empty(0, dtype=np.int64), 1.0))  # empty API day
    kline_type(tmp_path, SPOT, min_price_chg=10.0)  # the 222 candle must not split the series
    df = results(tmp_path, SPOT)["BTCUSDT"].to_pandas().set_index("candle_begin_time")
    ts = lambda text: pd.Timestamp(text, tz="UTC")  # noqa: E731
    assert df.index[0] == ts("2024-01-01 00:01") and df.index[-1] == ts("2024-01-02 00:59")
    assert len(df) == 24 * 60 - 1 + 60  # the 23:59 no-trade candle is re-made by the fill, 00:00 is gone
    filled = df.loc[ts("2024-01-01 00:10")]
    prev_close = df.loc[ts("2024-01-01 00:09"), "close"]
    assert filled[["open", "high", "low", "close", "avg_price_1m"]].tolist() == [prev_close] * 5
    assert filled[["volume", "quote_volume", "trade_num", "taker_buy_base_asset_volume", "taker_buy_quote_asset_volume"]].tolist() == [0] * 5
    assert df.loc[ts("2024-01-01 00:20"), "close"] == api.column("close")[0].as_py()
    assert np.allclose(df.loc[df.volume > 0, "avg_price_1m"], (df.quote_volume / df.volume)[df.volume > 0].clip(df.low, df.high))


def test_vwap_of_filled_rows_for_any_interval_is_open_and_clipped(tmp_path: Path, layout: Layout) -> None:
    t = steps("2024-05-01", "2024-05-03", HOUR)
    t = t[(t != ms("2024-05-01T05:00")) & (t != ms("2024-05-01T06:00"))]
    table = klines(t, 7.0).to_pandas()
    table.loc[3, "quote_volume"] = table.loc[3, "volume"] * 99.0  # a VWAP far above the high
    write_archive(layout, SPOT, "XYZUSDT", "1h", pa.Table.from_pandas(table, schema=KLINE_SCHEMA, preserve_index=False))
    kline_type(tmp_path, SPOT, "1h")
    df = results(tmp_path, SPOT, "1h")["XYZUSDT"].to_pandas().set_index("candle_begin_time")
    assert len(df) == 48 and df["avg_price_1h"].notna().all()
    gap = df.loc[pd.Timestamp("2024-05-01 05:00", tz="UTC")]
    assert gap.avg_price_1h == gap.open
    assert ((df.avg_price_1h >= df.low) & (df.avg_price_1h <= df.high)).all()
    assert df.iloc[3].avg_price_1h == df.iloc[3].high


def test_coin_m_vwap_is_a_price_within_low_high(tmp_path: Path, layout: Layout, caplog: pytest.LogCaptureFixture) -> None:
    t = steps("2024-01-01", "2024-01-01T12:00")
    price = 40_000 + np.cumsum(np.random.default_rng(1).normal(0, 20, len(t)))
    contracts = np.random.default_rng(2).integers(1, 500, len(t)).astype(float)
    table = klines(t, price, contracts)
    # COIN-M: `volume` is contracts (100 USD each for BTC), `quote_volume` the base-asset volume.
    table = table.set_column(6, "quote_volume", pa.array(contracts * 100 / price))
    write_archive(layout, CM, "BTCUSD_PERP", "1m", table)
    eth = klines(t, 2_000.0, 50.0)
    write_archive(layout, CM, "ETHUSD_PERP", "1m", eth.set_column(6, "quote_volume", pa.array(np.full(len(t), 50 * 10 / 2_000.0))))

    logger = logging.getLogger("bhds.generate")
    logger.addHandler(caplog.handler)  # the CLI tests turn off propagation to the root logger
    try:
        kline_type(tmp_path, CM)  # no contract-size cache: Binance's rule, 100 USD for BTC, 10 USD otherwise
    finally:
        logger.removeHandler(caplog.handler)
    assert "using Binance's rule" in caplog.text
    out = results(tmp_path, CM)
    btc = out["BTCUSD_PERP"].to_pandas()
    assert np.allclose(btc.avg_price_1m, price, rtol=1e-9)
    assert ((btc.avg_price_1m >= btc.low) & (btc.avg_price_1m <= btc.high)).all()
    assert not (btc.avg_price_1m == btc.low).all()
    assert np.allclose(out["ETHUSD_PERP"].column("avg_price_1m").to_numpy(), 2_000.0)

    # The cached exchangeInfo size wins over the rule (a made-up 50 USD here, to tell them apart).
    cache = layout.cache_file("cm_contract_sizes.json")
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"BTCUSD_PERP": 100, "ETHUSD_PERP": 50}))
    kline_type(tmp_path, CM)
    eth_vwap = results(tmp_path, CM)["ETHUSD_PERP"].to_pandas()
    assert np.allclose(eth_vwap.avg_price_1m, np.minimum(10_000.0, eth_vwap.high))


# ---- funding ----

def test_funding_lands_on_its_candle_api_wins_and_column_rules(tmp_path: Path, layout: Layout) -> None:
    t = steps("2024-01-01", "2024-01-03")
    write_archive(layout, UM, "BTCUSDT", "1m", klines(t, 100.0))
    write_archive(layout, UM, "NOFUNDUSDT", "1m", klines(t, 100.0))
    write_archive(layout, UM, "NEWUSDT", "1m", klines(t, 100.0))
    write_funding(layout, UM, "NEWUSDT", [ms("2024-01-02T08:00")], [0.0007], api=True)  # listed this month: API funding only
    write_archive(layout, SPOT, "BTCUSDT", "1m", klines(t, 100.0))
    write_funding(layout, SPOT, "BTCUSDT", [ms("2024-01-01T08:00")], [0.5])  # never used for spot
    write_funding(layout, UM, "BTCUSDT", [ms("2024-01-01") + 1, ms("2024-01-01T08:00") + 5, ms("2024-01-01T16:00")], [0.0001, 0.0002, 0.0003])
    write_funding(layout, UM, "BTCUSDT", [ms("2024-01-01T16:00") + 2, ms("2024-01-02T00:00")], [-0.0004, 0.0005], api=True)

    kline_type(tmp_path, UM)
    out = results(tmp_path, UM)
    # Every futures file has the column, so a glob read of the folder never misses it; 0 where no event.
    assert out["NOFUNDUSDT"].column("funding_rate").to_numpy().tolist() == [0.0] * len(t)
    new = out["NEWUSDT"].to_pandas().set_index("candle_begin_time")["funding_rate"]
    assert new[new != 0].to_dict() == {pd.Timestamp("2024-01-02T08:00", tz="UTC"): 0.0007}
    assert pl.read_parquet(Layout(tmp_path / "binance_data").results_kline_dir(UM, "1m") / "*.pqt").columns[-1] == "funding_rate"
    df = out["BTCUSDT"].to_pandas().set_index("candle_begin_time")["funding_rate"]
    nonzero = df[df != 0]
    assert [str(i) for i in nonzero.index] == ["2024-01-01 00:00:00+00:00", "2024-01-01 08:00:00+00:00", "2024-01-01 16:00:00+00:00", "2024-01-02 00:00:00+00:00"]
    assert nonzero.tolist() == [0.0001, 0.0002, -0.0004, 0.0005]

    kline_type(tmp_path, UM, with_funding_rates=False)
    assert "funding_rate" not in results(tmp_path, UM)["BTCUSDT"].column_names
    kline_type(tmp_path, SPOT)
    assert "funding_rate" not in results(tmp_path, SPOT)["BTCUSDT"].column_names


def test_funding_at_0800_on_6h_candles_lands_on_the_0600_candle(tmp_path: Path, layout: Layout) -> None:
    t = steps("2024-01-01", "2024-01-03", 6 * HOUR)
    write_archive(layout, UM, "ETHUSDT", "6h", klines(t, 2000.0))
    events = [ms("2024-01-01"), ms("2024-01-01T08:00") + 3, ms("2024-01-01T16:00"), ms("2024-01-02T00:00")]
    write_funding(layout, UM, "ETHUSDT", events, [0.1, 0.2, 0.3, 0.4])
    kline_type(tmp_path, UM, "6h")
    df = results(tmp_path, UM, "6h")["ETHUSDT"].to_pandas()
    by_hour = dict(zip(df.candle_begin_time.dt.strftime("%d %H"), df.funding_rate))
    assert by_hour == {"01 00": 0.1, "01 06": 0.2, "01 12": 0.3, "01 18": 0.0, "02 00": 0.4, "02 06": 0.0, "02 12": 0.0, "02 18": 0.0}


# ---- output schemas, readers ----

def expected_schema(vwap: str | None, funding: bool) -> pa.Schema:
    fields = list(KLINE_SCHEMA)
    if vwap:
        fields.append(pa.field(vwap, pa.float64()))
    if funding:
        fields.append(pa.field("funding_rate", pa.float64()))
    return pa.schema(fields)


@pytest.mark.parametrize(
    ("trade_type", "options", "vwap", "funding"),
    [
        (SPOT, {}, "avg_price_1m", False),
        (UM, {}, "avg_price_1m", True),
        (UM, {"with_vwap": False}, None, True),
        (CM, {"with_funding_rates": False}, "avg_price_1m", False),
    ],
)
def test_schema_and_dtypes_and_pandas_polars_agree(tmp_path: Path, layout: Layout, trade_type, options, vwap, funding) -> None:
    t = np.concatenate([steps("2024-01-01", "2024-01-02"), steps("2024-01-02T03:00", "2024-01-02T05:00")])
    write_archive(layout, trade_type, "SYMUSDT", "1m", klines(t, 5.0))
    write_funding(layout, trade_type, "SYMUSDT", [ms("2024-01-01T08:00")], [0.001])
    kline_type(tmp_path, trade_type, **options)
    path = Layout(tmp_path / "binance_data").results_kline_file(trade_type, "1m", "SYMUSDT")
    table = read(path)
    assert table.schema.equals(expected_schema(vwap, funding))
    assert table.column("candle_begin_time").type == TIMESTAMP
    assert_same_in_pandas_and_polars(path)


def assert_same_in_pandas_and_polars(path: Path) -> None:
    pdf = pd.read_parquet(path)
    plf = pl.read_parquet(path)
    assert list(pdf.columns) == plf.columns
    assert str(pdf["candle_begin_time"].dtype) == "datetime64[ms, UTC]"
    assert plf.schema["candle_begin_time"] == pl.Datetime("ms", "UTC")
    assert plf.schema["trade_num"] == pl.Int64 and str(pdf["trade_num"].dtype) == "int64"
    for name in pdf.columns:
        if name == "candle_begin_time":
            assert (pdf[name].astype("int64").to_numpy() == plf[name].dt.epoch("ms").to_numpy()).all()
        else:
            assert np.array_equal(pdf[name].to_numpy(), plf[name].to_numpy())


# ---- single symbol, stale segments ----

def test_single_symbol_removes_only_its_own_stale_segments(tmp_path: Path, layout: Layout) -> None:
    three_segments(layout)
    directory = layout.results_kline_dir(SPOT, "1m")
    directory.mkdir(parents=True)
    for name in ("SP5_BTCUSDT", "SP0_XBTCUSDT", "SP0_BTCUSDT2", "ETHUSDT", "SPX_BTCUSDT"):
        (directory / f"{name}.pqt").write_bytes(b"old")
    summary = kline_one(tmp_path, SPOT, "BTCUSDT")
    names = sorted(p.name for p in directory.iterdir())
    assert names == sorted(["BTCUSDT.pqt", "SP0_BTCUSDT.pqt", "SP1_BTCUSDT.pqt", "SP0_XBTCUSDT.pqt", "SP0_BTCUSDT2.pqt", "ETHUSDT.pqt", "SPX_BTCUSDT.pqt"])
    assert summary.files == 3


def test_single_symbol_without_data_writes_nothing(tmp_path: Path) -> None:
    summary = kline_one(tmp_path, SPOT, "NOPEUSDT")
    assert summary.files == 0 and summary.skipped == 1 and summary.failed == 0


# ---- errors and exit codes ----

def test_negative_min_days_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    code, _, err = run_cli(["generate", "kline-type", "spot", "1m", "--min-days", "-1"], tmp_path, monkeypatch, capsys)
    assert code == 2
    assert err.strip().splitlines()[-1].startswith("bhds: error: --min-days -1 is negative")
    with pytest.raises(InputError):
        kline_one(tmp_path, SPOT, "BTCUSDT", "7m")


def test_no_symbols_keeps_previous_results(tmp_path: Path, layout: Layout) -> None:
    directory = layout.results_kline_dir(SPOT, "1m")
    directory.mkdir(parents=True)
    (directory / "OLDUSDT.pqt").write_bytes(b"x")
    summary = kline_type(tmp_path, SPOT)
    assert summary.files == 0 and (directory / "OLDUSDT.pqt").exists()


# ---- safe replacement ----

def test_one_failing_symbol_keeps_its_previous_results_and_exits_3(tmp_path: Path, layout: Layout, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    three_segments(layout, "BTCUSDT")
    write_archive(layout, SPOT, "ETHUSDT", "1m", klines(steps("2024-01-01", "2024-01-02"), 10.0))
    write_archive(layout, SPOT, "GONEUSDT", "1m", klines(steps("2024-01-01", "2024-01-02"), 10.0))
    kline_type(tmp_path, SPOT, n_jobs=2)
    before = {p.name: p.read_bytes() for p in layout.results_kline_dir(SPOT, "1m").iterdir()}

    # BTCUSDT's partition becomes unreadable, ETHUSDT gets a new day, GONEUSDT is no longer in the archive.
    layout.parsed_kline_partition(SPOT, "BTCUSDT", "1m", 2024, 1).write_bytes(b"not parquet")
    write_archive(layout, SPOT, "ETHUSDT", "1m", klines(steps("2024-01-01", "2024-01-03"), 10.0))
    layout.aws_kline_dir(SPOT, "GONEUSDT", "1m").rmdir()
    code, out, err = run_cli(["generate", "kline-type", "spot", "1m"], tmp_path, monkeypatch, capsys)
    assert code == 3
    assert "bhds: failed: BTCUSDT: cannot read" in err
    assert out.startswith("generate kline-type: files=1 ") and "failed=1" in out

    after = {p.name: p.read_bytes() for p in layout.results_kline_dir(SPOT, "1m").iterdir()}
    assert sorted(after) == ["BTCUSDT.pqt", "ETHUSDT.pqt", "SP0_BTCUSDT.pqt", "SP1_BTCUSDT.pqt"]
    assert all(after[name] == before[name] for name in after if "BTC" in name)
    assert read(layout.results_kline_file(SPOT, "1m", "ETHUSDT")).num_rows == 2 * 1440
    assert [p.name for p in layout.results_kline_dir(SPOT, "1m").parent.iterdir()] == ["1m"]  # no staging leftovers


def test_replace_dir_and_recovery_after_a_kill_between_the_renames(tmp_path: Path) -> None:
    target = tmp_path / "1m"
    target.mkdir()
    (target / "A.pqt").write_text("old")
    new = staging_dir(target, "aaaa")
    new.mkdir()
    (new / "A.pqt").write_text("new")
    replace_dir(new, target)
    assert (target / "A.pqt").read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["1m"]

    # A kill after "old aside" and before "new in": the old tree is put back, leftovers dropped.
    os.rename(target, retired_dir(target, "bbbb"))
    staging_dir(target, "cccc").mkdir()
    recover_dir(target)
    assert (target / "A.pqt").read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["1m"]


def test_replace_dir_swaps_in_one_step_where_the_kernel_can(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bhds import storage

    if storage._renameat2() is None:
        pytest.skip("no renameat2 here: the two-rename path is tested above")
    target = tmp_path / "1m"
    target.mkdir()
    (target / "A.pqt").write_text("old")
    new = staging_dir(target, "dddd")
    new.mkdir()
    (new / "A.pqt").write_text("new")

    def no_rename(*args: object) -> None:  # any two-step swap would have a moment without `target`
        raise AssertionError("os.rename used: the swap was not atomic")

    monkeypatch.setattr(os, "rename", no_rename)
    replace_dir(new, target)
    assert (target / "A.pqt").read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["1m"]

    # Where the file system cannot exchange, the two renames still do the job.
    monkeypatch.undo()
    monkeypatch.setattr("bhds.storage.dirs._exchange", lambda a, b: False)
    newer = staging_dir(target, "eeee")
    newer.mkdir()
    (newer / "A.pqt").write_text("newer")
    replace_dir(newer, target)
    assert (target / "A.pqt").read_text() == "newer" and sorted(p.name for p in tmp_path.iterdir()) == ["1m"]


def test_a_run_killed_halfway_leaves_the_previous_results(tmp_path: Path, layout: Layout) -> None:
    for i in range(12):
        write_archive(layout, SPOT, f"S{i:02d}USDT", "1m", klines(steps("2024-01-01", "2024-01-21"), 10.0 + i, seed=i))
    kline_type(tmp_path, SPOT)
    directory = layout.results_kline_dir(SPOT, "1m")
    before = {p.name: p.read_bytes() for p in directory.iterdir()}
    for i in range(12):  # new inputs, so a half-swapped tree would show
        write_archive(layout, SPOT, f"S{i:02d}USDT", "1m", klines(steps("2024-01-01", "2024-01-22"), 10.0 + i, seed=i))

    env = {**os.environ, "CRYPTO_BASE_DIR": str(tmp_path), "CRYPTO_NJOBS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "bhds.py", "generate", "kline-type", "spot", "1m"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    staged = None
    deadline = time.monotonic() + 30
    while proc.poll() is None and time.monotonic() < deadline:
        staged = next((p for p in directory.parent.iterdir() if p.name.endswith(".bhds-build")), None)
        if staged is not None and len(list(staged.glob("*.pqt"))) >= 3:
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed halfway"
    assert {p.name: p.read_bytes() for p in directory.iterdir()} == before

    summary = kline_type(tmp_path, SPOT)  # the next run cleans up and finishes the job
    assert summary.files == 12 and [p.name for p in directory.parent.iterdir()] == ["1m"]
    assert all(read(p).num_rows == 21 * 1440 for p in directory.iterdir())


def test_calendar_month_candles_are_filled_month_by_month(tmp_path: Path, layout: Layout) -> None:
    t = np.array([ms("2023-12-01"), ms("2024-01-01"), ms("2024-03-01"), ms("2024-04-01")])
    write_archive(layout, UM, "BTCUSDT", "1mo", klines(t, 100.0))
    write_funding(layout, UM, "BTCUSDT", [ms("2024-02-10T08:00"), ms("2024-02-20T16:00"), ms("2024-04-30T16:00")], [0.1, 0.2, 0.3])
    kline_type(tmp_path, UM, "1mo", min_days=100)
    df = results(tmp_path, UM, "1mo")["BTCUSDT"].to_pandas()
    assert [str(x)[:10] for x in df.candle_begin_time] == ["2023-12-01", "2024-01-01", "2024-02-01", "2024-03-01", "2024-04-01"]
    assert df.volume.tolist()[2] == 0 and df.avg_price_1mo.notna().all()
    assert df.funding_rate.tolist() == pytest.approx([0, 0, 0.3, 0, 0.3])


@pytest.mark.parametrize("interval,step", [("3d", 3 * DAY), ("1w", 7 * DAY), ("1mo", None)])
def test_candles_longer_than_a_day_split_only_at_a_real_hole(tmp_path: Path, layout: Layout, interval: str, step: int | None) -> None:
    # Consecutive candles are `step` apart open to open, yet no day goes without a candle: no gap.
    if step is None:
        t = np.array([ms(f"{2023 + m // 12}-{m % 12 + 1:02d}-01") for m in range(14)], dtype=np.int64)
    else:
        t = ms("2024-01-01") + step * np.arange(14, dtype=np.int64)
    price = 100 * 1.002 ** np.arange(14)  # prices change at every candle, as markets do
    write_archive(layout, SPOT, "BTCUSDT", interval, klines(t, price))
    kline_type(tmp_path, SPOT, interval)
    assert {name: table.num_rows for name, table in results(tmp_path, SPOT, interval).items()} == {"BTCUSDT": 14}
    # Three candles missing and a 49% jump: one split, the rows after the hole in the plain file.
    kept = np.r_[0:6, 9:14]
    holed = tmp_path / "holed"
    write_archive(Layout(holed / "binance_data"), SPOT, "BTCUSDT", interval, klines(t[kept], np.where(kept < 6, 100.0, 149.0)))
    kline_type(holed, SPOT, interval)
    split = results(holed, SPOT, interval)
    assert {name: table.num_rows for name, table in split.items()} == {"SP0_BTCUSDT": 6, "BTCUSDT": 5}
    assert times(split["BTCUSDT"])[0] == t[9]


def test_single_partition_with_no_trade_candles_and_no_api(tmp_path: Path, layout: Layout) -> None:
    # One partition gives read-only Arrow-backed arrays; the fill must still be able to patch them.
    table = klines(steps("2024-01-01", "2024-01-01T02:00"), 3.0).to_pandas()
    table.loc[[5, 6], "volume"] = 0.0
    write_archive(layout, SPOT, "ONEUSDT", "1m", pa.Table.from_pandas(table, schema=KLINE_SCHEMA, preserve_index=False))
    kline_type(tmp_path, SPOT)
    df = results(tmp_path, SPOT)["ONEUSDT"].to_pandas()
    assert len(df) == 120 and (df.loc[[5, 6], "open"] == df.loc[4, "close"]).all() and (df.loc[[5, 6], "trade_num"] == 0).all()


def test_a_second_run_of_the_same_stage_is_refused_while_one_holds_the_lock(tmp_path: Path, layout: Layout) -> None:
    from bhds.errors import LockBusy
    from bhds.storage import stage_lock

    with stage_lock(layout, "generate-spot-klines-1m"):
        with pytest.raises(LockBusy):
            kline_type(tmp_path, SPOT)
        kline_type(tmp_path, UM)  # another trade type is another stage


def test_arrow_numpy_round_trip_handles_nulls_offsets_and_chunks() -> None:
    from bhds.generate.frame import from_table, to_arrow, to_numpy

    floats = pa.array([1.5, None, 3.5, 4.5, None, 6.5]).slice(1)
    assert to_numpy(floats).tolist() == [0.0, 3.5, 4.5, 0.0, 6.5]
    stamps = pa.chunked_array([pa.array([0, 60_000], type=TIMESTAMP), pa.array([120_000], type=TIMESTAMP)])
    assert to_numpy(stamps).tolist() == [0, 60_000, 120_000]
    back = to_arrow(np.array([5, 6], dtype=np.int64), TIMESTAMP)
    assert back.type == TIMESTAMP and back.cast(pa.int64()).to_pylist() == [5, 6]
    # Rows without a time are dropped, in every column, across chunks and slice offsets.
    table = pa.table({"candle_begin_time": pa.chunked_array([pa.array([0, None, 60_000], type=TIMESTAMP).slice(1), pa.array([None, 120_000], type=TIMESTAMP)]),
                      "open": pa.chunked_array([pa.array([9.0, 1.0, 2.0]).slice(1), pa.array([3.0, None])])})
    cols = from_table(table)
    assert cols["candle_begin_time"].tolist() == [60_000, 120_000] and cols["open"].tolist() == [2.0, 0.0]


@pytest.mark.parametrize("value", ["-0.5", "nan"])
def test_negative_or_nan_min_price_chg_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, value: str) -> None:
    code, _, err = run_cli(["generate", "kline", "spot", "1m", "BTCUSDT", "--min-price-chg", value], tmp_path, monkeypatch, capsys)
    assert code == 2 and "--min-price-chg" in err.strip().splitlines()[-1]


def test_an_interval_spelt_1H_reads_and_writes_the_1h_folders(tmp_path: Path, layout: Layout) -> None:
    write_archive(layout, SPOT, "BTCUSDT", "1h", klines(steps("2024-01-01", "2024-01-03", HOUR), 100.0))
    summary = kline_type(tmp_path, SPOT, "1H")
    assert summary.failed == 0 and summary.files == 1
    assert {name: t.num_rows for name, t in results(tmp_path, SPOT, "1h").items()} == {"BTCUSDT": 48}
