"""`generate bars`: klines from parsed trades equal Binance's own klines, end to end against the fake.

The fake's aggTrades and trades come from one set of fills (aggTrades group the fills of one taker
order). For the equality test the day's klines are derived from the aggTrades CSV by a plain
reference (Python loops, exact decimals), written as Binance writes a klines zip, and served by
the fake next to the trades; bhds then downloads, verifies and parses the trades and builds bars,
which must equal those klines.

Floats: open/high/low/close are copied prices, compared exactly. The volumes are sums; Binance
sums decimals exactly, bhds sums float64. A sum of n float64 terms is within n·2⁻⁵³ of the
exact sum relative to it (n < 10⁴ here), so the volumes are compared to the CSV's decimal
text with a relative tolerance of 1e-12, far below any decimal the archive writes.
"""

from __future__ import annotations

import json
import os
import zipfile
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from bhds.generate.bars import SOURCES_KEY
from bhds.schema import KLINE_SCHEMA
from tests.fakebinance import build_datasets, datasets_universe
from tests.fakebinance.archive import write_zip_object
from tests.test_archive_datasets import bucket, data_dir, run  # noqa: F401 - `bucket` serves this module's datasets_archive

DAY = date(2024, 12, 15)
KLINES_KEY = "data/futures/um/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2024-12-15.zip"



def zip_rows(path: Path) -> list[list[str]]:
    """The CSV rows of a zip, without a header row."""
    with zipfile.ZipFile(path) as zf:
        lines = zf.read(zf.namelist()[0]).decode().splitlines()
    return [line.split(",") for line in lines if line and line[0].isdigit()]


def reference_klines(rows: list[list[str]], bar_ms: int, dataset: str = "aggTrades",
                     contract_size: int | None = None) -> list[list[str]]:
    """Binance's klines from trade rows, one trade at a time in exact decimals (the test's oracle).

    aggTrades: id, price, qty, first id, last id, time, is_buyer_maker[, best match];
    trades: id, price, qty, quote_qty, time, is_buyer_maker[, best match]. COIN-M aggTrades
    (`contract_size` given): the quote volume is the base asset, contracts × size / price.
    """
    bars: dict[int, dict] = {}
    for row in rows:
        price, qty = Decimal(row[1]), Decimal(row[2])
        if dataset == "aggTrades":
            quote = qty * contract_size / price if contract_size else price * qty
            count, when, buyer_maker = int(row[4]) - int(row[3]) + 1, int(row[5]), row[6]
        else:
            quote, count, when, buyer_maker = Decimal(row[3]), 1, int(row[4]), row[5]
        ms = when // 1000 if when >= 10 ** 15 else when
        start = ms - ms % bar_ms
        taker_buy = buyer_maker.lower() == "false"
        bar = bars.get(start)
        if bar is None:
            bar = bars[start] = {"open": row[1], "high": price, "low": price, "close": row[1], "volume": Decimal(0),
                                 "quote": Decimal(0), "count": 0, "tb": Decimal(0), "tbq": Decimal(0)}
        bar["high"], bar["low"], bar["close"] = max(bar["high"], price), min(bar["low"], price), row[1]
        bar["volume"] += qty
        bar["quote"] += quote
        bar["count"] += count
        if taker_buy:
            bar["tb"] += qty
            bar["tbq"] += quote
    out = []
    for start in sorted(bars):
        b = bars[start]
        out.append([str(start), b["open"], str(b["high"]), str(b["low"]), b["close"], f"{b['volume']:f}",
                    str(start + bar_ms - 1), f"{b['quote']:f}", str(b["count"]), f"{b['tb']:f}", f"{b['tbq']:f}", "0"])
    return out


def assert_bars_equal(path: Path, klines: list[list[str]]) -> None:
    table = pq.read_table(path)
    assert table.schema.remove_metadata() == KLINE_SCHEMA
    got = table.to_pylist()
    assert len(got) == len(klines) and len(got) > 0
    for bar, k in zip(got, klines):
        assert int(bar["candle_begin_time"].timestamp() * 1000) == int(k[0])
        assert [bar["open"], bar["high"], bar["low"], bar["close"]] == [float(x) for x in k[1:5]]
        assert bar["trade_num"] == int(k[8])
        for name, text in (("volume", k[5]), ("quote_volume", k[7]), ("taker_buy_base_asset_volume", k[9]),
                           ("taker_buy_quote_asset_volume", k[10])):
            assert bar[name] == pytest.approx(float(text), rel=1e-12, abs=1e-12), (k[0], name)


@pytest.fixture(scope="module")
def datasets_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bucket `bucket` serves here: the fake's trades and aggTrades (UM, spot, COIN-M), plus UM BTCUSDT's 1m klines of DAY derived from its aggTrades."""
    root = tmp_path_factory.mktemp("trades_archive")
    build_datasets(datasets_universe(), root, datasets=["aggTrades", "trades"], markets=["um", "spot", "cm"], compress_level=1)
    agg = zip_rows(root / f"data/futures/um/daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-{DAY}.zip")
    header = "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,taker_buy_quote_volume,ignore"
    body = "\n".join([header] + [",".join(k) for k in reference_klines(agg, 60_000)]) + "\n"
    write_zip_object(root, KLINES_KEY, body.encode(), date(2024, 12, 16), level=1)
    return root




@pytest.fixture(autouse=True)
def small_row_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    """Parse in ~1 kB blocks: a day is many row groups, so (hourly) bars straddle them and partial bars must merge."""
    monkeypatch.setattr("bhds.workflows.archive_parse.BLOCK_SIZE", 1024)


def fetch_and_parse(capsys, market: str, dataset: str, symbol: str, start: str, end: str) -> None:
    for argv in (("download", market, dataset, symbol, "--start", start, "--end", end), ("verify", market, dataset, symbol),
                 ("parse", market, dataset, symbol)):
        code, out, err = run(capsys, "archive", *argv)
        assert code == 0, (argv, out, err)


def bars_file(market: str, interval: str, symbol: str) -> Path:
    return data_dir() / "results_data" / market / "trade_bars" / interval / f"{symbol}.pqt"


def test_bars_from_aggtrades_equal_binance_klines(bucket: Path, capsys) -> None:
    # Binance's klines of the day, downloaded like any dataset ...
    code, _, err = run(capsys, "archive", "download", "um_futures", "klines", "BTCUSDT", "--interval", "1m",
                       "--start", str(DAY), "--end", str(DAY))
    assert code == 0, err
    klines = zip_rows(data_dir() / "aws_data" / KLINES_KEY)
    # ... and the bars bhds builds from the same day's aggTrades.
    fetch_and_parse(capsys, "um_futures", "aggTrades", "BTCUSDT", str(DAY), str(DAY))
    assert pq.ParquetFile(data_dir() / "parsed_data/um_futures/aggTrades/BTCUSDT/202412.pqt").num_row_groups > 5  # about 10 kB of CSV
    code, out, err = run(capsys, "generate", "bars", "um_futures", "BTCUSDT", "--interval", "1m")
    assert code == 0, err
    assert f"files=1 rows={len(klines)} " in out
    assert_bars_equal(bars_file("um_futures", "1m", "BTCUSDT"), klines)
    # Minutes without a trade have no bar, as Binance publishes no kline for them.
    assert len(klines) < 1440


def test_ten_second_bars_and_trades_source(bucket: Path, capsys) -> None:
    agg = zip_rows(bucket / f"data/futures/um/daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-{DAY}.zip")
    fetch_and_parse(capsys, "um_futures", "aggTrades", "BTCUSDT", str(DAY), str(DAY))
    code, _, err = run(capsys, "generate", "bars", "um_futures", "--interval", "10s")  # every parsed symbol
    assert code == 0, err
    assert_bars_equal(bars_file("um_futures", "10s", "BTCUSDT"), reference_klines(agg, 10_000))
    # The same bars from the individual trades (quote volume from Binance's quote_qty column).
    fetch_and_parse(capsys, "um_futures", "trades", "BTCUSDT", str(DAY), str(DAY))
    trades = zip_rows(bucket / f"data/futures/um/daily/trades/BTCUSDT/BTCUSDT-trades-{DAY}.zip")
    code, _, err = run(capsys, "generate", "bars", "um_futures", "BTCUSDT", "--interval", "1m", "--from", "trades")
    assert code == 0, err
    expected = reference_klines(trades, 60_000, "trades")
    assert expected == reference_klines(agg, 60_000)  # one source of truth: the fake's fills
    assert_bars_equal(bars_file("um_futures", "1m", "BTCUSDT"), expected)


def test_spot_microseconds_across_months_and_incremental(bucket: Path, capsys) -> None:
    # 2024-12-31 (ms) and 2025-01-01 (spot's µs times): two monthly partitions, one output.
    fetch_and_parse(capsys, "spot", "aggTrades", "BTCUSDT", "2024-12-31", "2024-12-31")
    code, out, err = run(capsys, "generate", "bars", "spot", "BTCUSDT", "--interval", "1h")
    assert code == 0 and "files=1 " in out, err
    target = bars_file("spot", "1h", "BTCUSDT")
    first = target.stat().st_mtime_ns
    # Nothing changed: skipped, file untouched.
    code, out, err = run(capsys, "generate", "bars", "spot", "BTCUSDT", "--interval", "1h")
    assert code == 0 and "files=0 " in out and "skipped=1" in out, err
    assert target.stat().st_mtime_ns == first
    # A new day parsed (a new month partition): only the new month is read, December's bars are
    # kept from the previous file. Proof: December's partition, garbled behind an unchanged size
    # and mtime, is not opened.
    fetch_and_parse(capsys, "spot", "aggTrades", "BTCUSDT", "2025-01-01", "2025-01-01")
    december = data_dir() / "parsed_data/spot/aggTrades/BTCUSDT/202412.pqt"
    stat, good = december.stat(), december.read_bytes()
    december.write_bytes(b"x" * len(good))
    os.utime(december, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    code, out, err = run(capsys, "generate", "bars", "spot", "BTCUSDT", "--interval", "1h")
    assert code == 0 and "files=1 " in out, err
    december.write_bytes(good)
    os.utime(december, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    rows = []
    for stamp in ("2024-12-31", "2025-01-01"):
        rows += zip_rows(bucket / f"data/spot/daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-{stamp}.zip")
    expected = reference_klines(rows, 3_600_000)
    assert_bars_equal(target, expected)
    assert {datetime.fromtimestamp(int(k[0]) / 1000, tz=timezone.utc).date() for k in expected} == {date(2024, 12, 31), date(2025, 1, 1)}
    assert b'"interval": "1h"' in pq.read_schema(target).metadata[SOURCES_KEY]
    # A partition re-parsed in the past month (new mtime): rebuilt from it on, same bars.
    os.utime(december, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    code, out, err = run(capsys, "generate", "bars", "spot", "BTCUSDT", "--interval", "1h")
    assert code == 0 and "files=1 " in out, err
    assert_bars_equal(target, expected)
    # Another interval is another file, built on its own, and another stage in `bhds status`.
    code, out, err = run(capsys, "generate", "bars", "spot", "BTCUSDT", "--interval", "1d")
    assert code == 0 and "files=1 rows=2 " in out, err
    code, out, err = run(capsys, "status", "--format", "json")
    stages = {(s["stage"], s["trade_type"], s["interval"]) for s in json.loads(out)["stages"]}
    assert {("generate bars", "spot", "1h"), ("generate bars", "spot", "1d")} <= stages


@pytest.mark.parametrize("interval", ["7x", "7m", "1w", "36h", "0s"])
def test_bad_interval_is_one_line_exit_2(bucket: Path, capsys, interval: str) -> None:
    code, out, err = run(capsys, "generate", "bars", "um_futures", "BTCUSDT", "--interval", interval)
    assert code == 2 and out == ""
    assert err.startswith("bhds: error: bar interval") and len(err.strip().splitlines()) == 1


def test_no_parsed_trades_names_the_commands(bucket: Path, capsys) -> None:
    code, out, err = run(capsys, "generate", "bars", "um_futures", "BTCUSDT", "--interval", "1m", "--from", "trades")
    assert code == 1
    line = err.strip().splitlines()[0]
    assert line.startswith("bhds: error: no parsed trades in um_futures of BTCUSDT")
    assert "`bhds archive download um_futures trades BTCUSDT`" in line and "`bhds archive parse um_futures trades BTCUSDT`" in line
    assert not (data_dir() / "results_data").exists()
    # One symbol parsed, another named without data: the first is built, the second reported (exit 3).
    fetch_and_parse(capsys, "um_futures", "trades", "BTCUSDT", str(DAY), str(DAY))
    code, out, err = run(capsys, "generate", "bars", "um_futures", "BTCUSDT", "ETHUSDT", "--interval", "1m", "--from", "trades")
    assert code == 3 and "files=1 " in out and "ETHUSDT: no parsed trades" in err


def test_coin_m_base_asset_volume(bucket: Path, capsys) -> None:
    # COIN-M klines count volume in contracts and quote_volume in the base asset (BTC).
    stamp = "2024-12-20"
    for dataset in ("trades", "aggTrades"):
        fetch_and_parse(capsys, "cm_futures", dataset, "BTCUSD_PERP", stamp, stamp)
    trades = zip_rows(bucket / f"data/futures/cm/daily/trades/BTCUSD_PERP/BTCUSD_PERP-trades-{stamp}.zip")
    code, _, err = run(capsys, "generate", "bars", "cm_futures", "--interval", "5m", "--from", "trades")
    assert code == 0, err
    assert_bars_equal(bars_file("cm_futures", "5m", "BTCUSD_PERP"), reference_klines(trades, 300_000, "trades"))
    # From aggTrades the base amount is computed: contracts × 100 USD (BTC's contract size) / price.
    agg = zip_rows(bucket / f"data/futures/cm/daily/aggTrades/BTCUSD_PERP/BTCUSD_PERP-aggTrades-{stamp}.zip")
    code, _, err = run(capsys, "generate", "bars", "cm_futures", "BTCUSD_PERP", "--interval", "4h")
    assert code == 0, err
    assert_bars_equal(bars_file("cm_futures", "4h", "BTCUSD_PERP"), reference_klines(agg, 4 * 3_600_000, contract_size=100))


def test_reduce_keeps_trade_order_inside_a_bar() -> None:
    # Keys out of order (as partial bars of two months read out of order would be): open and close
    # are still the first and last trade of each bar in the order given, the sums are whole.
    import numpy as np

    from bhds.generate.bars import reduce_bars

    key = np.array([60, 0, 60, 0, 60])
    price = np.array([5.0, 1.0, 7.0, 3.0, 6.0])
    ones = np.ones(5)
    bars = reduce_bars({"key": key, "open": price, "high": price, "low": price, "close": price, "volume": ones,
                        "quote_volume": price, "trade_num": np.ones(5, dtype=np.int64),
                        "taker_buy_base_asset_volume": ones, "taker_buy_quote_asset_volume": price})
    assert bars["key"].tolist() == [0, 60]
    assert (bars["open"].tolist(), bars["close"].tolist()) == ([1.0, 5.0], [3.0, 6.0])
    assert (bars["high"].tolist(), bars["low"].tolist()) == ([3.0, 7.0], [1.0, 5.0])
    assert bars["trade_num"].tolist() == [2, 3] and bars["quote_volume"].tolist() == [4.0, 18.0]
