"""The daily case of `generate kline-type`: a new day extends the latest result file.

Each test compares the files an extending run writes with those of a run from nothing, byte for
byte, and checks which runs extended (`extended=` in the summary) and which built from scratch.
"""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bhds.generate.splice import SpliceError, splice
from bhds.paths import Layout
from bhds.types import TradeType
from bhds.workflows import generate
from tests.test_generate_support import klines, ms, settings_for, steps, write_api_day, write_archive, write_funding

SPOT, UM = TradeType.spot, TradeType.um_futures
OPTIONS = dict(split_gaps=True, min_days=1, min_price_chg=0.1, with_vwap=True, with_funding_rates=True)


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    return Layout(tmp_path / "binance_data")


def kline_type(base: Path, trade_type: TradeType = SPOT, **options: object):
    return generate.kline_type(settings_for(base), trade_type=trade_type, time_interval="1m", **{**OPTIONS, **options})


def history(start: str, end: str, seed: int, *, hole: tuple[str, str] | None = None, price: float = 100.0) -> pa.Table:
    """1m klines with some untraded minutes (volume 0) and optionally a hole, prices drifting."""
    t = steps(start, end)
    if hole:
        t = t[(t < ms(hole[0])) | (t >= ms(hole[1]))]
    rng = np.random.default_rng(seed)
    volume = np.where(rng.random(len(t)) < 0.05, 0.0, rng.uniform(0.5, 3.0, len(t)))
    return klines(t, price * (1 + 0.2 * np.sin(np.arange(len(t)) / 5000)), volume, seed=seed)


def result_bytes(layout: Layout, trade_type: TradeType = SPOT) -> dict[str, bytes]:
    folder = layout.results_kline_dir(trade_type, "1m")
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.pqt"))}


def assert_equals_full_rebuild(tmp_path: Path, layout: Layout, trade_type: TradeType = SPOT) -> None:
    incremental = result_bytes(layout, trade_type)
    shutil.rmtree(layout.root / "results_data")
    shutil.rmtree(layout.root / ".bhds" / "cache")
    summary = kline_type(tmp_path, trade_type)
    assert "extended" not in summary.notes
    full = result_bytes(layout, trade_type)
    assert full.keys() == incremental.keys()
    for name in full:
        assert full[name] == incremental[name], name  # byte for byte


def parse_months(layout: Layout, trade_type: TradeType, symbol: str, table: pa.Table, since: str | None) -> None:
    """Write the monthly partitions of `table` from the month of `since` on, as parse rewrites only the months it touches."""
    if since is not None:
        first = ms(str(np.datetime64(since, "M")) + "-01")
        table = table.filter(pa.array(table.column("candle_begin_time").cast(pa.int64()).to_numpy() >= first))
    write_archive(layout, trade_type, symbol, "1m", table)


def two_symbols(layout: Layout, end: str, trade_type: TradeType = SPOT, *, since: str | None = None) -> None:
    """BTCUSDT has a long hole in January (an SP0_ file), ETHUSDT none; both until `end`, months from `since`'s on."""
    parse_months(layout, trade_type, "BTCUSDT", history("2024-01-01", end, 1, hole=("2024-01-10", "2024-01-13T12:00"), price=100.0), since)
    parse_months(layout, trade_type, "ETHUSDT", history("2024-01-01", end, 2, price=50.0), since)


@pytest.mark.parametrize("new_day", ["2024-03-10", "2024-04-01"], ids=["within the month", "first day of a month"])
def test_a_new_day_extends_the_latest_file_and_equals_a_full_rebuild(tmp_path: Path, layout: Layout, new_day: str) -> None:
    two_symbols(layout, new_day)
    kline_type(tmp_path)
    folder = layout.results_kline_dir(SPOT, "1m")
    assert pq.ParquetFile(folder / "ETHUSDT.pqt").metadata.num_row_groups == 3  # one per month
    sp0 = (folder / "SP0_BTCUSDT.pqt").stat().st_ino

    # The next day arrives: parse rewrites the month's partition (or starts the next one).
    end = str(np.datetime64(new_day) + 1)
    two_symbols(layout, end, since=new_day)
    summary = kline_type(tmp_path)
    assert summary.notes["extended"] == 2
    assert (folder / "SP0_BTCUSDT.pqt").stat().st_ino == sp0  # the earlier segment is the same file
    last = pq.read_table(folder / "ETHUSDT.pqt").column("candle_begin_time").cast(pa.int64())[-1].as_py()
    assert last >= ms(new_day) + 23 * 3600_000
    assert_equals_full_rebuild(tmp_path, layout)


def test_futures_with_funding_extend_when_the_kept_months_funding_is_unchanged(tmp_path: Path, layout: Layout) -> None:
    two_symbols(layout, "2024-03-10", UM)
    events = [ms("2024-02-01T08:00"), ms("2024-03-09T16:00")]
    for symbol in ("BTCUSDT", "ETHUSDT"):
        write_funding(layout, UM, symbol, events, [0.0001, -0.0002])
    kline_type(tmp_path, UM)

    two_symbols(layout, "2024-03-11", UM, since="2024-03-10")
    write_funding(layout, UM, "BTCUSDT", [*events, ms("2024-03-10T08:00")], [0.0001, -0.0002, 0.0003])  # a new event
    write_funding(layout, UM, "ETHUSDT", [ms("2024-02-01T08:00"), *events[1:], ms("2024-03-10T08:00")], [0.0005, -0.0002, 0.0003])  # February's rate revised
    summary = kline_type(tmp_path, UM)
    assert summary.notes["extended"] == 1  # BTCUSDT; ETHUSDT's kept months would differ, so it is built again
    assert_equals_full_rebuild(tmp_path, layout, UM)


def test_funding_revised_in_an_earlier_segment_rebuilds_that_segment(tmp_path: Path, layout: Layout) -> None:
    """SP0_BTCUSDT (before January's hole) carries funding too: a revised event there must reach it."""
    two_symbols(layout, "2024-03-10", UM)
    events = [ms("2024-01-05T08:00"), ms("2024-02-01T08:00")]
    write_funding(layout, UM, "BTCUSDT", events, [0.0001, -0.0002])
    kline_type(tmp_path, UM)

    two_symbols(layout, "2024-03-11", UM, since="2024-03-10")
    write_funding(layout, UM, "BTCUSDT", events, [0.0007, -0.0002])  # the event inside SP0_BTCUSDT revised
    kline_type(tmp_path, UM)
    assert_equals_full_rebuild(tmp_path, layout, UM)


@pytest.mark.parametrize("change", ["earlier month re-parsed", "api day in an earlier month", "new gap", "other options"])
def test_what_an_extension_cannot_reproduce_is_built_from_scratch(tmp_path: Path, layout: Layout, change: str) -> None:
    two_symbols(layout, "2024-03-10")
    kline_type(tmp_path)
    two_symbols(layout, "2024-03-11", since="2024-03-10")  # BTCUSDT and ETHUSDT get their new day
    options: dict[str, object] = {}
    if change == "earlier month re-parsed":  # ETHUSDT's January: nothing before it to keep
        table = history("2024-01-01", "2024-03-11", 2, price=50.0)
        parse_months(layout, SPOT, "ETHUSDT", table.set_column(1, "open", pa.array(table.column("open").to_numpy() * 1.001)), None)
    elif change == "api day in an earlier month":
        write_api_day(layout, SPOT, "ETHUSDT", "1m", date(2024, 1, 5), klines(steps("2024-01-05", "2024-01-06"), 51.0))
    elif change == "new gap":  # ETHUSDT stops for three days and comes back 30 % higher: a new SP0_ split
        t = steps("2024-03-13", "2024-03-14")
        parse_months(layout, SPOT, "ETHUSDT", pa.concat_tables([history("2024-01-01", "2024-03-10", 2, price=50.0), klines(t, 80.0)]), "2024-03-13")
    else:
        options = dict(min_price_chg=0.2)
    summary = kline_type(tmp_path, **options)
    expected = {"earlier month re-parsed": 1, "api day in an earlier month": 1, "new gap": 1, "other options": 0}[change]
    assert summary.notes.get("extended", 0) == expected  # BTCUSDT's new day still extends where only it changed
    if change == "new gap":
        assert (layout.results_kline_dir(SPOT, "1m") / "SP0_ETHUSDT.pqt").exists()
    if change == "other options":
        options_full = result_bytes(layout)
        shutil.rmtree(layout.root / "results_data")
        shutil.rmtree(layout.root / ".bhds" / "cache")
        kline_type(tmp_path, **options)
        assert result_bytes(layout) == options_full
    else:
        assert_equals_full_rebuild(tmp_path, layout)


def test_the_single_symbol_command_extends_in_place(tmp_path: Path, layout: Layout) -> None:
    two_symbols(layout, "2024-03-10")
    settings = settings_for(tmp_path)
    generate.kline(settings, trade_type=SPOT, time_interval="1m", symbol="BTCUSDT", **OPTIONS)
    two_symbols(layout, "2024-03-11", since="2024-03-10")
    summary = generate.kline(settings, trade_type=SPOT, time_interval="1m", symbol="BTCUSDT", **OPTIONS)
    assert summary.notes == {"extended": 1}
    assert kline_type(tmp_path).notes == {"unchanged": 1}  # BTCUSDT is current; ETHUSDT had no build to extend
    assert_equals_full_rebuild(tmp_path, layout)


# ---- splice ----

def _parquet(table: pa.Table, groups: list[tuple[int, int]], **options: object) -> bytes:
    sink = pa.BufferOutputStream()
    with pq.ParquetWriter(sink, table.schema, compression="zstd", **options) as writer:
        for lo, hi in groups:
            writer.write_table(table.slice(lo, hi - lo), row_group_size=hi - lo)
    return sink.getvalue().to_pybytes()


def test_splice_gives_the_bytes_of_one_write_and_refuses_what_it_cannot_shift() -> None:
    n = 50_000
    table = pa.table({"t": np.arange(n, dtype=np.int64), "x": np.random.default_rng(0).random(n)})
    whole = _parquet(table, [(0, 20_000), (20_000, 40_000), (40_000, n)])
    head = _parquet(table, [(0, 20_000), (20_000, 30_000)])  # its second group gets replaced
    tail = _parquet(table.slice(20_000), [(0, 20_000), (20_000, n - 20_000)])
    assert splice(head, 1, tail) == whole
    assert pq.read_table(pa.BufferReader(splice(head, 1, tail))).equals(table)

    with pytest.raises(SpliceError):
        splice(head, 1, _parquet(table.slice(20_000), [(0, n - 20_000)], write_page_index=True))
    with pytest.raises(SpliceError):
        splice(head, 1, _parquet(table.select(["x"]), [(0, n)]))
    with pytest.raises(SpliceError):
        splice(head, 3, tail)


# ---- through the pipeline ----

def test_a_reuploaded_day_of_the_current_month_extends_through_the_pipeline(bhds_env, fake_binance, data_root: Path,
                                                                            capsys: pytest.CaptureFixture) -> None:
    from tests.fakebinance import kline_key, reupload_corrected_hour
    from tests.test_generate_incremental import run

    steps_ = [("aws_kline", "download-spot", "1m"), ("aws_kline", "parse-type-all", "spot", "1m"), ("generate", "kline-type", "spot", "1m")]
    for argv in steps_:
        run(capsys, *argv)
    folder = data_root / "binance_data" / "results_data" / "spot" / "klines" / "1m"
    assert pq.ParquetFile(folder / "BTCUSDT.pqt").metadata.num_row_groups == 2  # December and January

    key = kline_key("spot", "BTCUSDT", "1m", date(2025, 1, 6))
    reupload_corrected_hour(fake_binance.root, key)
    outputs = [run(capsys, *argv) for argv in steps_]
    assert "files=1 " in outputs[2] and "extended=1" in outputs[2]  # December kept, January encoded again

    extended = {p.name: p.read_bytes() for p in folder.glob("*.pqt")}
    shutil.rmtree(folder.parent)
    shutil.rmtree(data_root / "binance_data" / ".bhds" / "cache", ignore_errors=True)
    assert "extended" not in run(capsys, *steps_[2])
    assert {p.name: p.read_bytes() for p in folder.glob("*.pqt")} == extended  # byte for byte a full rebuild
