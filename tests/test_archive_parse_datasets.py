"""`archive parse` for every dataset of every market: download, verify and parse a sample from the
fake Binance, and compare each partition with the CSV rows decoded here independently."""

from __future__ import annotations

import csv
import io
import re
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.test_archive_datasets import (  # noqa: F401 - fixtures
    CASES,
    KLINE_LIKE,
    bucket,
    data_dir,
    datasets_archive,
    run,
    sample_symbol,
)

INT = re.compile(r"-?\d+")
FLOAT = re.compile(r"-?\d*\.\d+(e-?\d+)?")
DATETIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
US_FROM = 10**15  # an epoch number this large is in µs


def decode(field: str):
    """One CSV field as Python sees it: bool, epoch ms of a UTC datetime string, int, float or text."""
    if field in ("true", "True", "false", "False"):
        return field.lower() == "true"
    if DATETIME.fullmatch(field):
        return int(datetime.strptime(field, "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc).timestamp() * 1000)
    if INT.fullmatch(field):
        return int(field)
    if FLOAT.fullmatch(field):
        return float(field)
    return field


def zip_rows(path: Path) -> tuple[list[str] | None, list[list]]:
    """(header or None, decoded rows) of one downloaded zip."""
    with zipfile.ZipFile(path) as zf:
        text = zf.read(zf.namelist()[0]).decode()
    rows = list(csv.reader(io.StringIO(text)))
    header = rows[0] if rows and rows[0][0][:1].isalpha() else None
    return header, [[decode(f) for f in row] for row in (rows[1:] if header else rows)]


def month_of(name: str) -> str:
    stamp = re.search(r"(\d{4})-(\d{2})(?:-\d{2})?\.zip$", name)
    return stamp.group(1) + stamp.group(2)


@pytest.mark.parametrize(("market", "dataset"), CASES)
def test_parse_every_dataset_equals_the_csv(bucket: Path, capsys, market: str, dataset: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    symbol = sample_symbol(market, dataset)
    interval = ["--interval", "1h"] if dataset in KLINE_LIKE else []
    code, _, err = run(capsys, "archive", "download", market, dataset, symbol, *interval, "--start", "2024-11-01")
    assert code == 0, err
    code, _, err = run(capsys, "archive", "verify", market, dataset, *interval)
    assert code == 0, err
    code, out, err = run(capsys, "archive", "parse", market, dataset, *interval)
    assert code == 0, err

    # Each month from its monthly zip when there is one, else from its daily zips in day order.
    zips = sorted((data_dir() / "aws_data").rglob("*.zip"))
    monthly = {month_of(p.name): [p] for p in zips if "/monthly/" in str(p)}
    daily: dict[str, list[Path]] = {}
    for p in zips:
        if "/daily/" in str(p):
            daily.setdefault(month_of(p.name), []).append(p)
    sources = {**daily, **monthly}
    folder = "archive_klines" if dataset == "klines" else dataset
    parsed = data_dir() / "parsed_data" / market / folder / ("1h" if interval else "") / symbol
    assert sorted(p.name for p in parsed.iterdir()) == sorted(f"{m}.pqt" for m in sources)
    assert not (data_dir() / "parsed_data" / market / "klines").exists()  # the legacy parse's folder

    micro = dataset in ("trades", "aggTrades")
    total = 0
    for month, files in sources.items():
        table = pq.read_table(parsed / f"{month}.pqt")
        times = [i for i, f in enumerate(table.schema) if pa.types.is_timestamp(f.type)]
        assert times, "every dataset has a time column"
        for i in times:
            assert table.schema.field(i).type == pa.timestamp("us" if micro else "ms", tz="UTC")
        want = []
        for path in files:
            header, rows = zip_rows(path)
            if dataset in KLINE_LIKE:  # the `ignore` column is not kept
                header, rows = header and header[:-1], [row[:-1] for row in rows]
            if header:
                assert table.schema.names == header
            for row in rows:
                for i in times:
                    value = row[i]
                    if micro:
                        row[i] = value if value >= US_FROM else value * 1000
                    else:
                        row[i] = value // 1000 if value >= US_FROM else value
            want += rows
        for i in times:
            table = table.set_column(i, table.schema.names[i], table.column(i).cast(pa.int64()))
        got = [list(row.values()) for row in table.to_pylist()]
        assert got == want, (month, [p.name for p in files])
        assert all(type(g) is type(w) or isinstance(w, int) and type(g) is float
                   for row_g, row_w in zip(got, want) for g, w in zip(row_g, row_w))
        total += len(want)
    assert total > 0 and f"rows={total:,} " in out

    # Incremental: nothing changed, nothing rewritten.
    code, out, err = run(capsys, "archive", "parse", market, dataset, *interval)
    assert code == 0 and "files=0 " in out and f"skipped={len(sources)}" in out, err


def test_metrics_without_a_header_keep_their_first_row(tmp_path: Path) -> None:
    """A metrics file starts with a date, not a number: the header test must not eat a data row."""
    import pyarrow.parquet as pq

    from bhds.parse.trades import MonthTask, parse_month, signature

    rows = ["2024-12-01 00:00:00,BTCUSDT,1.5,2.5,1.1,1.2,1.3,1.4", "2024-12-01 00:05:00,BTCUSDT,1.6,2.6,1.1,1.2,1.3,1.4"]
    source = tmp_path / "BTCUSDT-metrics-2024-12-01.zip"
    with zipfile.ZipFile(source, "w") as zf:
        zf.writestr("BTCUSDT-metrics-2024-12-01.csv", "\n".join(rows) + "\n")
    target = tmp_path / "202412.pqt"
    assert parse_month(MonthTask("um_futures", "metrics", (str(source),), str(target), signature([source])))[0] == 2
    table = pq.read_table(target)
    assert table.column("sum_open_interest").to_pylist() == [1.5, 1.6]
    assert [t.isoformat() for t in table.column("create_time").to_pylist()] == [
        "2024-12-01T00:00:00+00:00", "2024-12-01T00:05:00+00:00"]


@pytest.mark.parametrize(("market", "dataset"), [("spot", "trades"), ("um_futures", "aggTrades"),
                                                 ("um_futures", "markPriceKlines"), ("um_futures", "metrics")])
def test_load_reads_a_parsed_dataset_by_its_own_time_column(bucket: Path, capsys, market: str, dataset: str) -> None:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    import bhds

    symbol = sample_symbol(market, dataset)
    interval = ["--interval", "1h"] if dataset in KLINE_LIKE else []
    for argv in (["download", market, dataset, symbol, *interval, "--start", "2024-11-01"],
                 ["verify", market, dataset, *interval], ["parse", market, dataset, *interval]):
        code, _, err = run(capsys, "archive", *argv)
        assert code == 0, err
    folder = "archive_klines" if dataset == "klines" else dataset
    parsed = data_dir() / "parsed_data" / market / folder / ("1h" if interval else "") / symbol
    everything = pa.concat_tables([pq.read_table(p) for p in sorted(parsed.glob("*.pqt"))])
    time = next(f.name for f in everything.schema if pa.types.is_timestamp(f.type))

    assert bhds.load_arrow(market, symbol, "1h", source=dataset, data_dir=data_dir()).to_pylist() == everything.to_pylist()
    # A range across the year's boundary, start inclusive and end exclusive, by the dataset's own time.
    start, end = pd.Timestamp("2024-12-31T12:00", tz="UTC"), pd.Timestamp("2025-01-01T12:00", tz="UTC")
    frame = everything.to_pandas()
    expected = frame[(frame[time] >= start) & (frame[time] < end)].reset_index(drop=True)
    got = bhds.load(market, symbol, "1h", start, end, source=dataset, data_dir=data_dir())
    assert len(expected) > 0
    pd.testing.assert_frame_equal(got, expected)
    pruned = bhds.load(market, symbol, "1h", start, end, source=dataset, columns=[everything.schema.names[-1]], data_dir=data_dir())
    assert list(pruned.columns) == list(dict.fromkeys([time, everything.schema.names[-1]]))
    with pytest.raises(bhds.DataError, match="run `bhds archive download"):
        bhds.load(market, "NOSUCHUSDT", "1h", source=dataset, data_dir=data_dir())


def _um_aggtrades_mark_klines_and_bars(capsys, bar_interval: str) -> str:
    """Download, verify and parse USDⓈ-M aggTrades and 1h mark-price klines of one symbol, build its
    trade bars at `bar_interval`; the symbol."""
    symbol = sample_symbol("um_futures", "aggTrades")
    for dataset, interval in (("aggTrades", []), ("markPriceKlines", ["--interval", "1h"])):
        for argv in (["download", "um_futures", dataset, symbol, *interval, "--start", "2024-11-01"],
                     ["verify", "um_futures", dataset, *interval], ["parse", "um_futures", dataset, *interval]):
            code, _, err = run(capsys, "archive", *argv)
            assert code == 0, err
    code, _, err = run(capsys, "generate", "bars", "um_futures", symbol, "--interval", bar_interval)
    assert code == 0, err
    return symbol


def test_the_catalog_has_a_view_per_parsed_dataset_and_trade_bars(bucket: Path, capsys) -> None:
    duckdb = pytest.importorskip("duckdb")
    import pyarrow.parquet as pq

    from bhds.paths import Layout
    from bhds.research.catalog import write_catalog

    symbol = _um_aggtrades_mark_klines_and_bars(capsys, "1h")
    layout = Layout(data_dir())
    views = write_catalog(layout)
    assert {"um_futures_agg_trades", "um_futures_mark_price_klines_1h", "um_futures_trade_bars_1h"} <= set(views)
    con = duckdb.connect(str(layout.catalog_db), read_only=True)
    partitions = sorted((data_dir() / "parsed_data" / "um_futures" / "aggTrades" / symbol).glob("*.pqt"))
    rows = sum(pq.read_metadata(p).num_rows for p in partitions)
    assert con.execute("SELECT count(*), min(symbol), max(symbol) FROM um_futures_agg_trades").fetchone() == (rows, symbol, symbol)
    bars = pq.read_table(layout.trade_bars_file("um_futures", "1h", symbol))
    assert con.execute("SELECT count(*), sum(trade_num) FROM um_futures_trade_bars_1h WHERE symbol = ?", [symbol]).fetchone() == (
        bars.num_rows, sum(bars.column("trade_num").to_pylist()))
    assert con.execute("SELECT count(DISTINCT symbol) FROM um_futures_mark_price_klines_1h").fetchone() == (1,)


def test_list_data_and_load_cover_parsed_datasets_and_trade_bars(bucket: Path, capsys) -> None:
    """`list-data` shows every `archive parse` dataset and the trade bars with their footer figures;
    `symbols`, `coverage` and `load` read them too; bars whose trade partitions changed are stale."""
    import json
    import os

    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    import bhds
    from bhds.paths import Layout

    symbol = _um_aggtrades_mark_klines_and_bars(capsys, "10s")
    layout = Layout(data_dir())
    partitions = sorted(layout.parsed_dataset_dir("um_futures", "aggTrades", symbol).glob("*.pqt"))
    trades = pa.concat_tables([pq.read_table(p) for p in partitions])
    bars_file = layout.trade_bars_file("um_futures", "10s", symbol)
    bars = pq.read_table(bars_file)

    def iso(value) -> str:  # list-data shows times to the second
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")

    code, out, err = run(capsys, "list-data", "um_futures", "--format", "json")
    assert code == 0, err
    rows = {(r["dataset"], r["interval"], r["symbol"]): r for r in json.loads(out)["datasets"]}
    agg = rows[("aggTrades", None, symbol)]
    times = pc.min_max(trades.column("transact_time"))
    assert (agg["rows"], agg["files"], agg["bytes"]) == (trades.num_rows, len(partitions), sum(p.stat().st_size for p in partitions))
    assert (agg["first"], agg["last"], agg["stale"]) == (iso(times["min"].as_py()), iso(times["max"].as_py()), None)
    mark = rows[("markPriceKlines", "1h", symbol)]
    mark_files = sorted(layout.parsed_dataset_dir("um_futures", "markPriceKlines", symbol, "1h").glob("*.pqt"))
    assert mark["rows"] == sum(pq.read_metadata(p).num_rows for p in mark_files) > 0
    got_bars = rows[("trade_bars", "10s", symbol)]
    first_bar, last_bar = bars.column("candle_begin_time")[0].as_py(), bars.column("candle_begin_time")[-1].as_py()
    assert (got_bars["rows"], got_bars["files"], got_bars["first"], got_bars["last"], got_bars["stale"]) == (
        bars.num_rows, 1, iso(first_bar), iso(last_bar), False)
    code, out, _ = run(capsys, "list-data", "um_futures", "--interval", "10s", "--format", "csv")
    assert out.strip().splitlines()[1:] == [f"um_futures,trade_bars,10s,,{symbol},{iso(first_bar)},{iso(last_bar)},"
                                            f"{bars.num_rows},1,{bars_file.stat().st_size},False"]

    # The loader: trade bars by interval, parsed datasets by name.
    assert bhds.load_arrow("um_futures", symbol, "10s", source="trade_bars", data_dir=data_dir()).equals(bars)
    assert bhds.symbols("um_futures", "10s", source="trade_bars", data_dir=data_dir()) == [symbol]
    assert bhds.symbols("um_futures", source="aggTrades", data_dir=data_dir()) == [symbol]
    cover = bhds.coverage("um_futures", source="aggTrades", data_dir=data_dir())
    assert cover[["symbol", "rows", "files"]].values.tolist() == [[symbol, trades.num_rows, len(partitions)]]
    assert cover["last"].iloc[0] == times["max"].as_py().replace(microsecond=times["max"].as_py().microsecond // 1000 * 1000)
    with pytest.raises(bhds.DataError, match="run `bhds generate bars um_futures BTCUSDT --interval 1m`"):
        bhds.load("um_futures", symbol, "1m", source="trade_bars", data_dir=data_dir())
    with pytest.raises(bhds.InputError, match="not to source='trade_bars'"):
        bhds.load("um_futures", symbol, "10s", source="trade_bars", indicators=["rsi:14"], data_dir=data_dir())

    # A re-parsed month the bars do not include yet makes them stale, until `generate bars` runs again.
    later = bars_file.stat().st_mtime + 60
    os.utime(partitions[-1], (later, later))
    code, out, _ = run(capsys, "list-data", "um_futures", "--format", "json")
    assert {(r["dataset"], r["symbol"]) for r in json.loads(out)["datasets"] if r["stale"]} == {("trade_bars", symbol)}
    code, _, err = run(capsys, "generate", "bars", "um_futures", symbol, "--interval", "10s")
    assert code == 0, err
    code, out, _ = run(capsys, "list-data", "um_futures", "--format", "json")
    assert not any(r["stale"] for r in json.loads(out)["datasets"])
