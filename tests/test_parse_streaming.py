"""The streamed archive parse: its three-thread pipeline (`ahead`) and the per-block choice of
time unit, on real zips written here."""

from __future__ import annotations

import threading
import zipfile
from pathlib import Path

import pytest

from bhds.parse.trades import MonthTask, ahead, parse_month, signature
from bhds.parse.zipcsv import BadSourceFile


def _zip(path: Path, lines: list[str]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(path.name[:-4] + ".csv", "\n".join(lines) + "\n")
    return path


def test_ahead_yields_everything_in_order_and_raises_the_producers_error() -> None:
    with ahead(iter(range(100)), depth=2) as stream:
        assert list(stream) == list(range(100))

    def failing():
        yield 1
        yield 2
        raise BadSourceFile("bad row 3")

    got = []
    with pytest.raises(BadSourceFile, match="bad row 3"), ahead(failing()) as stream:
        for item in stream:
            got.append(item)
    assert got == [1, 2]


def test_a_consumer_that_leaves_early_closes_the_producer_and_its_thread_ends() -> None:
    closed = threading.Event()

    def endless():
        try:
            n = 0
            while True:
                yield n
                n += 1
        finally:
            closed.set()

    with pytest.raises(KeyError), ahead(endless()) as stream:
        assert [next(stream) for _ in range(3)] == [0, 1, 2]
        raise KeyError("the consumer fails")
    assert closed.is_set()
    assert not any(t.name == "bhds-ahead" for t in threading.enumerate())


def test_a_bad_row_deep_in_a_multi_block_file_is_reported_and_nothing_is_written(tmp_path: Path) -> None:
    lines = [f"{i},100.5,0.001,0.1005,{1733011200000 + i},true" for i in range(5000)]
    lines[4321] = "4321,not-a-price,0.001,0.1005,1733011204321,true"
    source = _zip(tmp_path / "BTCUSDT-trades-2024-12.zip", lines)
    target = tmp_path / "202412.pqt"
    with pytest.raises(BadSourceFile, match="BTCUSDT-trades-2024-12.zip: bad row"):
        parse_month(MonthTask("um_futures", "trades", (str(source),), str(target), signature([source]), block_size=4096))
    assert not target.exists() and list(tmp_path.iterdir()) == [source]


@pytest.mark.parametrize("block_size", [64, 1 << 20])
def test_times_in_ms_and_us_are_told_apart_per_value_in_blocks_that_mix_them(tmp_path: Path, block_size: int) -> None:
    """Spot's switch to µs inside one file: blocks all-ms, all-µs and mixed all come out right."""
    import pyarrow.parquet as pq

    ms, us = 1735689599999, 1735689600000000  # the last ms of 2024, the first µs of 2025
    stamps = [ms - 2, ms - 1, ms, us, us + 1, us + 2]
    trades = _zip(tmp_path / "BTCUSDT-trades-2024-12.zip",
                  [f"{i},100.5,0.001,0.1005,{t},true,true" for i, t in enumerate(stamps)])
    target = tmp_path / "trades.pqt"
    parse_month(MonthTask("spot", "trades", (str(trades),), str(target), signature([trades]), block_size=block_size))
    got = pq.read_table(target).column("time").cast("int64").to_pylist()
    assert got == [ms * 1000 - 2000, ms * 1000 - 1000, ms * 1000, us, us + 1, us + 2]

    # ms columns floor a µs value (spot klines' close_time `…999999`)
    klines = _zip(tmp_path / "BTCUSDT-1h-2024-12.zip", [
        f"{ms - 3599999},1,1,1,1,1,{ms},1,1,1,1,0",
        f"{us},1,1,1,1,1,{us + 3599999999},1,1,1,1,0"])
    target = tmp_path / "klines.pqt"
    parse_month(MonthTask("spot", "klines", (str(klines),), str(target), signature([klines]), block_size=block_size))
    table = pq.read_table(target)
    assert table.column("open_time").cast("int64").to_pylist() == [ms - 3599999, us // 1000]
    assert table.column("close_time").cast("int64").to_pylist() == [ms, us // 1000 + 3599999]
