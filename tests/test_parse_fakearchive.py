"""Parse the fake Binance archive (every market, 1m and 1h, funding) and compare with the generator's truth.

The default archive spans 2024-12-25..2025-01-10, so spot crosses the ms → µs switch; futures
files carry headers; some days are missing or partial; one UM symbol changes funding interval.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bhds.paths import Layout, verified_marker
from bhds.types import TradeType
from bhds.workflows import parse as parse_workflow
from tests.fakebinance import day_bars, default_universe, funding_rows
from tests.fakebinance.archive import archive_days
from tests.test_parse_support import make_settings

MARKET_OF = {TradeType.spot: "spot", TradeType.um_futures: "um", TradeType.cm_futures: "cm"}
COLUMNS = {"open": "open", "high": "high", "low": "low", "close": "close", "volume": "volume",
           "quote_volume": "quote_volume", "trade_num": "count",
           "taker_buy_base_asset_volume": "taker_buy_volume", "taker_buy_quote_asset_volume": "taker_buy_quote_volume"}


@pytest.fixture(scope="module")
def parsed(default_archive: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A data directory mirroring the archive (hard links + .verified markers), parsed once."""
    base = tmp_path_factory.mktemp("parsed_fake")
    aws = Layout(base / "binance_data").aws_root
    for zip_path in (default_archive / "data").rglob("*.zip"):
        if "liquidationSnapshot" in zip_path.parts:
            continue
        dest = aws / zip_path.relative_to(default_archive)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.link(zip_path, dest)
        verified_marker(dest).touch()
    settings = make_settings(base, n_jobs=2)
    summaries = {}
    for trade_type in TradeType:
        summaries[trade_type] = parse_workflow.kline_parse_type_all(settings, trade_type=trade_type, time_intervals=["1m", "1h"], force_update=False)
        if trade_type.is_futures:
            summaries[(trade_type, "funding")] = parse_workflow.funding_parse_type_all(settings, trade_type=trade_type)
    return base, summaries


def _parsed_table(layout: Layout, trade_type: TradeType, symbol: str, interval: str) -> pa.Table:
    files = sorted(layout.parsed_kline_dir(trade_type, symbol, interval).glob("*.pqt"))
    return pa.concat_tables([pq.read_table(f) for f in files])


def test_every_symbol_matches_the_generator(parsed) -> None:
    base, summaries = parsed
    universe = default_universe()
    layout = Layout(base / "binance_data")
    assert all(s.failed == 0 for s in summaries.values())
    checked = 0
    for trade_type in TradeType:
        for spec in (s for s in universe.symbols if s.market == MARKET_OF[trade_type]):
            days = archive_days(universe, spec)
            if not days:
                continue
            for interval in ("1m", "1h"):
                truth = [day_bars(spec, interval, d, archive=True).to_arrays() for d in days]
                expected = {k: np.concatenate([t[k] for t in truth]) for k in truth[0]}
                table = _parsed_table(layout, trade_type, spec.symbol, interval)
                got_times = table.column("candle_begin_time").cast(pa.int64()).to_numpy()
                assert np.array_equal(got_times, expected["open_time"]), (trade_type, spec.symbol, interval)
                for ours, theirs in COLUMNS.items():
                    assert np.array_equal(table.column(ours).to_numpy(), expected[theirs]), (spec.symbol, interval, ours)
                checked += 1
    assert checked >= 40


def test_funding_matches_the_generator(parsed) -> None:
    base, _ = parsed
    universe = default_universe()
    layout = Layout(base / "binance_data")
    start, end = 1_733_011_200_000, 1_735_689_600_000  # December 2024, the one complete month
    eth = next(s for s in universe.symbols if s.market == "um" and s.symbol == "ETHUSDT")
    rows = funding_rows(eth, start, end, with_mark=False)
    table = pq.read_table(layout.parsed_funding_file(TradeType.um_futures, "ETHUSDT"))
    assert table.column("funding_time").cast(pa.int64()).to_pylist() == rows.time_ms.tolist()
    assert table.column("funding_interval_hours").to_pylist() == rows.interval_hours.tolist()
    assert set(rows.interval_hours.tolist()) == {8, 4}
    assert table.column("candle_begin_time").cast(pa.int64()).to_pylist() == (rows.nominal_ms - rows.nominal_ms % 3_600_000).tolist()
    assert np.allclose(table.column("funding_rate").to_numpy(), rows.rate / 1e8)
    assert not layout.parsed_funding_file(TradeType.um_futures, "BTCUSDT_250328").exists()  # delivery: no funding


def test_second_run_does_nothing(parsed) -> None:
    base, _ = parsed
    settings = make_settings(base, n_jobs=2)
    for trade_type in TradeType:
        summary = parse_workflow.kline_parse_type_all(settings, trade_type=trade_type, time_intervals=["1m", "1h"], force_update=False)
        assert summary.files == 0 and summary.notes["partitions"] == 0 and summary.skipped > 0
    again = parse_workflow.funding_parse_type_all(settings, trade_type=TradeType.cm_futures)
    assert again.files == 0 and again.skipped > 0


def test_partitions_are_no_larger_than_bhds_py_would_write(parsed, tmp_path: Path) -> None:
    # bhds.py wrote the same columns with polars' defaults; the same rows must not cost more disk here.
    polars = pytest.importorskip("polars")
    base, _ = parsed
    layout = Layout(base / "binance_data")
    ours = theirs = 0
    for trade_type in TradeType:
        for path in layout.parsed_kline_symbols_dir(trade_type).glob("*/1m/*.pqt"):
            ours += path.stat().st_size
            legacy = tmp_path / f"{trade_type.value}-{path.parent.parent.name}-{path.name}"
            polars.from_arrow(pq.read_table(path)).write_parquet(legacy)
            theirs += legacy.stat().st_size
    assert theirs > 1_000_000
    assert ours <= theirs, f"{ours:,} bytes against {theirs:,} from polars' writer"
