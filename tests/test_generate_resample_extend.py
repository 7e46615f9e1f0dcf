"""The daily case of `generate resample-type`: a 1m file extended by a new day extends its resamples.

Each test compares the resampled files of an extending run with those of a run from nothing, byte
for byte, and checks how many files extended (`extended=` in the summary) and which were resampled whole.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bhds.generate.offsets import plan_resample
from bhds.generate.resample_extend import _kept_groups
from bhds.paths import Layout
from bhds.types import TradeType
from bhds.workflows import generate
from tests.test_generate_extend import OPTIONS, history, kline_type, ms, parse_months, two_symbols
from tests.test_generate_support import settings_for, write_funding

SPOT, UM = TradeType.spot, TradeType.um_futures
PAIRS = [("1h", "5m"), ("4h", "15m"), ("1d", "0m"), ("5m", "0m")]


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    return Layout(tmp_path / "binance_data")


def resample_type(base: Path, interval: str, offset: str, trade_type: TradeType = SPOT):
    return generate.resample_type(settings_for(base), trade_type=trade_type, resample_interval=interval, base_offset=offset)


def resampled(layout: Layout, interval: str, trade_type: TradeType = SPOT) -> dict[str, bytes]:
    folder = layout.resampled_interval_dir(trade_type, interval)
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.pqt"))}


def assert_resamples_equal_a_full_rebuild(tmp_path: Path, layout: Layout, pairs: list[tuple[str, str]], trade_type: TradeType = SPOT) -> None:
    incremental = {interval: resampled(layout, interval, trade_type) for interval, _ in pairs}
    shutil.rmtree(layout.root / "results_data" / trade_type.value / "resampled_klines")
    shutil.rmtree(layout.root / ".bhds" / "cache")
    for interval, offset in pairs:
        assert "extended" not in resample_type(tmp_path, interval, offset, trade_type).notes
        full = resampled(layout, interval, trade_type)
        assert full.keys() == incremental[interval].keys()
        for name in full:
            assert full[name] == incremental[interval][name], (interval, name)  # byte for byte


def daily(tmp_path: Path, layout: Layout, new_day: str, pairs: list[tuple[str, str]], trade_type: TradeType = SPOT) -> dict[str, dict]:
    """Yesterday's full kline-type and resamples, today's new day: kline-type, then each resample; their notes."""
    two_symbols(layout, new_day, trade_type)
    kline_type(tmp_path, trade_type)
    for interval, offset in pairs:
        resample_type(tmp_path, interval, offset, trade_type)
    two_symbols(layout, str(np.datetime64(new_day) + 1), trade_type, since=new_day)
    assert kline_type(tmp_path, trade_type).notes.get("extended") == 2
    return {interval: resample_type(tmp_path, interval, offset, trade_type).notes for interval, offset in pairs}


@pytest.mark.parametrize("new_day", ["2024-05-10", "2024-07-01"], ids=["within the month", "first day of a quarter"])
def test_a_new_day_extends_the_resamples_and_equals_a_full_rebuild(tmp_path: Path, layout: Layout, new_day: str) -> None:
    notes = daily(tmp_path, layout, new_day, PAIRS)
    folder = layout.resampled_interval_dir(SPOT, "1h")
    assert pq.ParquetFile(folder / "5m" / "ETHUSDT.pqt").metadata.num_row_groups == {"2024-05-10": 2, "2024-07-01": 3}[new_day]  # one per quarter
    for interval, offset in PAIRS:
        offsets = len(plan_resample(interval, offset).offsets)
        assert notes[interval] == {"unchanged": 1, "extended": 2 * offsets}, interval  # SP0_BTCUSDT did not change
    assert_resamples_equal_a_full_rebuild(tmp_path, layout, PAIRS)


def test_futures_resamples_with_funding_extend(tmp_path: Path, layout: Layout) -> None:
    two_symbols(layout, "2024-05-10", UM)
    for symbol in ("BTCUSDT", "ETHUSDT"):
        write_funding(layout, UM, symbol, [ms("2024-02-01T08:00"), ms("2024-05-09T16:00")], [0.0001, -0.0002])
    kline_type(tmp_path, UM)
    pairs = [("1h", "5m"), ("5m", "0m")]
    for interval, offset in pairs:
        resample_type(tmp_path, interval, offset, UM)
    two_symbols(layout, "2024-05-11", UM, since="2024-05-10")
    for symbol in ("BTCUSDT", "ETHUSDT"):
        write_funding(layout, UM, symbol, [ms("2024-02-01T08:00"), ms("2024-05-09T16:00"), ms("2024-05-10T08:00")], [0.0001, -0.0002, 0.0003])
    assert kline_type(tmp_path, UM).notes.get("extended") == 2
    assert resample_type(tmp_path, "1h", "5m", UM).notes.get("extended") == 24
    assert resample_type(tmp_path, "5m", "0m", UM).notes.get("extended") == 2
    assert_resamples_equal_a_full_rebuild(tmp_path, layout, pairs, UM)


def test_several_daily_kline_runs_between_two_resamples_still_extend(tmp_path: Path, layout: Layout) -> None:
    two_symbols(layout, "2024-05-10")
    kline_type(tmp_path)
    resample_type(tmp_path, "1h", "5m")
    for day in ("2024-05-10", "2024-05-11", "2024-05-31", "2024-06-01"):  # the 1m file's last kept month moves back once
        two_symbols(layout, str(np.datetime64(day) + 1), since=day)
        assert kline_type(tmp_path).notes.get("extended") == 2
    assert resample_type(tmp_path, "1h", "5m").notes.get("extended") == 24
    assert_resamples_equal_a_full_rebuild(tmp_path, layout, [("1h", "5m")])


@pytest.mark.parametrize("change", ["1m file rebuilt", "output touched", "calendar interval", "1m file not from kline-type"])
def test_what_an_extension_cannot_prove_is_resampled_whole(tmp_path: Path, layout: Layout, change: str) -> None:
    pair = ("1mo", "0m") if change == "calendar interval" else ("1h", "5m")
    two_symbols(layout, "2024-05-10")
    kline_type(tmp_path)
    resample_type(tmp_path, *pair)
    two_symbols(layout, "2024-05-11", since="2024-05-10")
    if change == "1m file rebuilt":  # ETHUSDT's January re-parsed: its 1m file is built from scratch
        table = history("2024-01-01", "2024-05-11", 2, price=50.0)
        parse_months(layout, SPOT, "ETHUSDT", table.set_column(1, "open", pa.array(table.column("open").to_numpy() * 1.001)), None)
    kline_type(tmp_path)
    folder = layout.resampled_interval_dir(SPOT, pair[0])
    if change == "output touched":  # another tool rewrote one offset's file: that file's unit is resampled whole
        path = folder / "15m" / "ETHUSDT.pqt"
        pq.write_table(pq.read_table(path), path)
    if change == "1m file not from kline-type":  # a 1m file written by hand: no record of where it came from
        path = layout.results_kline_dir(SPOT, "1m") / "ETHUSDT.pqt"
        pq.write_table(pq.read_table(path), path)
    expected = {"1m file rebuilt": 12, "output touched": 12, "calendar interval": 0, "1m file not from kline-type": 12}[change]
    assert resample_type(tmp_path, *pair).notes.get("extended", 0) == expected  # BTCUSDT's still extend
    assert_resamples_equal_a_full_rebuild(tmp_path, layout, [pair])


def test_the_single_file_command_extends_in_place(tmp_path: Path, layout: Layout) -> None:
    two_symbols(layout, "2024-05-10")
    kline_type(tmp_path)
    settings = settings_for(tmp_path)
    generate.resample(settings, trade_type=SPOT, symbol="ETHUSDT", resample_interval="4h", base_offset="1h")
    two_symbols(layout, "2024-05-11", since="2024-05-10")
    generate.kline(settings, trade_type=SPOT, time_interval="1m", symbol="ETHUSDT", **OPTIONS)
    summary = generate.resample(settings, trade_type=SPOT, symbol="ETHUSDT", resample_interval="4h", base_offset="1h")
    assert summary.notes == {"extended": 4}
    single = resampled(layout, "4h")
    shutil.rmtree(layout.resampled_interval_dir(SPOT, "4h"))
    shutil.rmtree(layout.root / ".bhds" / "cache")
    generate.resample(settings, trade_type=SPOT, symbol="ETHUSDT", resample_interval="4h", base_offset="1h")
    assert resampled(layout, "4h") == single


def _groups(table: pa.Table, bounds: list[int]) -> pq.FileMetaData:
    sink = pa.BufferOutputStream()
    with pq.ParquetWriter(sink, table.schema) as writer:
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            writer.write_table(table.slice(lo, hi - lo), row_group_size=hi - lo)
    return pq.ParquetFile(pa.BufferReader(sink.getvalue())).metadata


def test_only_quarter_groups_are_kept_and_never_past_the_first_changed_minute() -> None:
    t = np.arange(ms("2024-01-01"), ms("2024-07-01"), 3600_000, dtype=np.int64)
    table = pa.table({"candle_begin_time": pa.array(t).cast(pa.timestamp("ms", tz="UTC"))})
    april = int(np.searchsorted(t, ms("2024-04-01")))
    plan = plan_resample("1h", "5m")
    zero, five = plan.offsets[0], plan.offsets[1]
    quarters = _groups(table, [0, april, len(t)])
    assert _kept_groups(quarters, plan, zero, ms("2024-05-10")) == (1, ms("2024-04-01"))
    assert _kept_groups(quarters, plan, zero, ms("2024-04-01")) == (1, ms("2024-04-01"))  # the 23:00 bar closes at the cut
    assert _kept_groups(quarters, plan, five, ms("2024-04-01")) is None  # the 23:05 bar closes after it: straddles
    assert _kept_groups(_groups(table, [0, len(t)]), plan, zero, ms("2024-05-10")) is None  # an older file: one group
    march = int(np.searchsorted(t, ms("2024-03-01")))
    assert _kept_groups(_groups(table, [0, march, april, len(t)]), plan, zero, ms("2024-05-10")) is None  # not by quarter
