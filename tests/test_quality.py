"""`quality report` on a synthetic store whose defects are injected one by one, so every figure is known.

Store (spot 1m, clock pinned to 2024-02-10 12:00 UTC):

AAAUSDT, 2024-01-29 .. 2024-02-04 (partitions 202401 and 202402):
  - archive zips for 01-29, 01-30, 01-31, 02-01, 02-04 (01-30 not verified); none for 02-02, 02-03
  - 01-30 partial: 02:00-03:29 missing (90 bars)
  - 02-02 only from the API (full day); 02-03 has an empty API file and nothing else
  - OHLC violations on 01-29: high below open, low above close, negative volume, NaN close
  - zero volume: 01-31 10:00-10:04 (5), 01-31 23:57 .. 02-01 00:03 across the partition edge (7),
    02-04 12:00 (1)
  - 3 rows of 02-04 written twice in the 202402 partition
  - results: SP0_AAAUSDT (01-29 .. 02-02) and AAAUSDT (02-04)
BBBUSDT: listed 2024-02-02 08:00, complete to 02-04 23:59.
CCCUSDT: two archive zips, never parsed.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bhds.cli import main
from bhds.paths import Layout, kline_files_prefix
from bhds.quality import footer
from bhds.quality.record import SYMBOL_KEYS
from bhds.quality.report import render_table
from bhds.schema import KLINE_SCHEMA, PARSED_FUNDING_SCHEMA, API_FUNDING_SCHEMA
from bhds.settings import load_settings
from bhds.storage import write_table_numeric
from bhds.types import TradeType
from bhds.workflows.quality import report

MIN = 60_000
DAY = 86_400_000
NOW = "2024-02-10T12:00:00Z"


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp() * 1000)


def klines(start: str, end: str, step: int = MIN, *, drop: tuple[str, str] | None = None) -> dict[str, np.ndarray]:
    """Clean candles from `start` to `end` inclusive; `drop` removes [from, to] inclusive."""
    ts = np.arange(ms(start), ms(end) + 1, step, dtype=np.int64)
    if drop:
        ts = ts[(ts < ms(drop[0])) | (ts > ms(drop[1]))]
    base = 100 + (ts // step % 50) * 0.1
    return {
        "candle_begin_time": ts, "open": base, "high": base + 1, "low": base - 1, "close": base + 0.5,
        "volume": np.full(len(ts), 2.0), "quote_volume": base * 2, "trade_num": np.full(len(ts), 3, dtype=np.int64),
        "taker_buy_base_asset_volume": np.ones(len(ts)), "taker_buy_quote_asset_volume": base,
    }


def set_at(cols: dict[str, np.ndarray], when: str, **values: float) -> None:
    (i,) = np.flatnonzero(cols["candle_begin_time"] == ms(when))
    for name, value in values.items():
        cols[name][i] = value


def table(cols: dict[str, np.ndarray]) -> pa.Table:
    arrays = [pa.array(cols["candle_begin_time"]).cast(pa.timestamp("ms", tz="UTC"))]
    arrays += [pa.array(cols[name]) for name in KLINE_SCHEMA.names[1:]]
    return pa.Table.from_arrays(arrays, schema=KLINE_SCHEMA)


def concat(*parts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def write(path: Path, cols: dict[str, np.ndarray], *, summary: bool = False) -> None:
    """A plain pyarrow file, or with `summary` one as parse writes it (month summary in the footer)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if summary:
        write_table_numeric(footer.with_summary(table(cols), "1m", {}), path)
    else:
        pq.write_table(table(cols), path, compression="zstd")


def zips(layout: Layout, tt: TradeType, symbol: str, days: list[str], unverified: tuple[str, ...] = ()) -> None:
    directory = layout.local_for_key(kline_files_prefix(tt, symbol, "1m"))
    directory.mkdir(parents=True, exist_ok=True)
    for day in days:
        name = f"{symbol}-1m-{day}.zip"
        (directory / name).write_bytes(b"PK\x05\x06" + bytes(18))
        (directory / f"{name}.CHECKSUM").write_text(f"{'0' * 64}  {name}\n")
        if day not in unverified:
            (directory / f"{name}.verified").touch()


def build_store(root: Path, *, summaries: bool = False) -> Layout:
    """The store above; with `summaries` its partitions carry the month summary parse writes."""
    layout = Layout(root / "binance_data")
    tt = TradeType.spot
    # --- AAAUSDT ---
    zips(layout, tt, "AAAUSDT", ["2024-01-29", "2024-01-30", "2024-01-31", "2024-02-01", "2024-02-04"], unverified=("2024-01-30",))
    jan = klines("2024-01-29 00:00", "2024-01-31 23:59", drop=("2024-01-30 02:00", "2024-01-30 03:29"))
    set_at(jan, "2024-01-29 00:10", high=50.0)  # high below open and close
    set_at(jan, "2024-01-29 00:20", low=500.0)  # low above open and close
    set_at(jan, "2024-01-29 00:30", volume=-1.0)
    set_at(jan, "2024-01-29 00:40", close=np.nan)
    for minute in range(5):
        set_at(jan, f"2024-01-31 10:0{minute}", volume=0.0)
    for when in ("2024-01-31 23:57", "2024-01-31 23:58", "2024-01-31 23:59"):
        set_at(jan, when, volume=0.0)
    feb = concat(klines("2024-02-01 00:00", "2024-02-01 23:59"), klines("2024-02-04 00:00", "2024-02-04 23:59"))
    for when in ("2024-02-01 00:00", "2024-02-01 00:01", "2024-02-01 00:02", "2024-02-01 00:03", "2024-02-04 12:00"):
        set_at(feb, when, volume=0.0)
    feb = concat(feb, klines("2024-02-04 05:00", "2024-02-04 05:02"))  # written twice
    write(layout.parsed_kline_partition(tt, "AAAUSDT", "1m", 2024, 1), jan, summary=summaries)
    write(layout.parsed_kline_partition(tt, "AAAUSDT", "1m", 2024, 2), feb, summary=summaries)
    write(layout.api_kline_dir(tt, "AAAUSDT", "1m") / "20240202.pqt", klines("2024-02-02 00:00", "2024-02-02 23:59"))
    write(layout.api_kline_dir(tt, "AAAUSDT", "1m") / "20240203.pqt", klines("2024-02-03 00:00", "2024-02-02 00:00"))  # empty
    results = layout.results_kline_dir(tt, "1m")
    write(results / "SP0_AAAUSDT.pqt", klines("2024-01-29 00:00", "2024-02-02 23:59"))
    write(results / "AAAUSDT.pqt", klines("2024-02-04 00:00", "2024-02-04 23:59"))
    # --- BBBUSDT: listed at 08:00 ---
    zips(layout, tt, "BBBUSDT", ["2024-02-02", "2024-02-03", "2024-02-04"])
    write(layout.parsed_kline_partition(tt, "BBBUSDT", "1m", 2024, 2), klines("2024-02-02 08:00", "2024-02-04 23:59"),
          summary=summaries)
    # --- CCCUSDT: downloaded, never parsed ---
    zips(layout, tt, "CCCUSDT", ["2024-02-03", "2024-02-04"])
    return layout


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Layout:
    monkeypatch.setenv("CRYPTO_BASE_DIR", str(tmp_path))
    monkeypatch.setenv("BHDS_NOW", NOW)
    monkeypatch.setenv("CRYPTO_NJOBS", "2")
    return build_store(tmp_path)


def run_json(tt: str = "spot", interval: str = "1m", symbols: tuple[str, ...] = (), **kwargs: object) -> tuple[dict, object]:
    out: list[str] = []
    summary = report(load_settings(), trade_type=TradeType(tt), time_interval=interval, symbols=list(symbols),
                     output_format="json", write=out.append, **kwargs)
    (text,) = out
    return json.loads(text), summary


def by_symbol(doc: dict) -> dict[str, dict]:
    return {r["symbol"]: r for r in doc["symbols"]}


def cli(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def futures_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, symbol: str) -> Layout:
    """An empty UM store (clock pinned) with one day of `symbol`'s candles."""
    monkeypatch.setenv("CRYPTO_BASE_DIR", str(tmp_path))
    monkeypatch.setenv("BHDS_NOW", NOW)
    layout = Layout(tmp_path / "binance_data")
    write(layout.parsed_kline_partition(TradeType.um_futures, symbol, "1m", 2024, 1), klines("2024-01-10 00:00", "2024-01-10 23:59"))
    return layout


def write_api_funding(layout: Layout, symbol: str, times: list[int], rate: float) -> None:
    api = pa.table({
        "funding_time": pa.array(times).cast(pa.timestamp("ms", tz="UTC")),
        "candle_begin_time": pa.array([t // 3_600_000 * 3_600_000 for t in times]).cast(pa.timestamp("ms", tz="UTC")),
        "funding_rate": pa.array([rate] * len(times)),
    }, schema=API_FUNDING_SCHEMA)
    layout.api_funding_dir(TradeType.um_futures).mkdir(parents=True, exist_ok=True)
    pq.write_table(api, layout.api_funding_file(TradeType.um_futures, symbol))


# ---- figures ----

def test_figures_match_the_injected_defects(store: Layout) -> None:
    doc, summary = run_json()
    a = by_symbol(doc)["AAAUSDT"]
    assert a == {
        "symbol": "AAAUSDT",
        "first_day": "2024-01-29",
        "last_day": "2024-02-04",
        "days_behind": 5,
        "days_expected": 7,
        "days_in_archive": 5,
        "days_verified": 4,
        "days_unparsed": 0,
        "days_from_api": 1,
        "days_api_empty": 1,
        "days_missing": 1,
        "days_partial": 1,
        "bars_expected": 7 * 1440,
        "bars_present": 7 * 1440 - 90 - 1440,
        "bars_missing": 90 + 1440,
        "completeness_pct": 84.82,
        "holes": 2,
        "longest_hole": {"after": "2024-02-02T23:59:00Z", "bars": 1440},
        "duplicate_rows": 3,
        "parse_duplicates": None,
        "misaligned_rows": 0,
        "ohlc_violations": {"rows": 4, "high_below_open_close": 1, "low_above_open_close": 1, "negative": 1, "nan": 1},
        "zero_volume": {"rows": 13, "runs": 3, "longest_run": 7},
        "segments": [
            {"name": "SP0_AAAUSDT", "first": "2024-01-29T00:00:00Z", "last": "2024-02-02T23:59:00Z", "rows": 5 * 1440},
            {"name": "AAAUSDT", "first": "2024-02-04T00:00:00Z", "last": "2024-02-04T23:59:00Z", "rows": 1440},
        ],
        "split_gaps": [{"after": "2024-02-02T23:59:00Z", "before": "2024-02-04T00:00:00Z", "days": 1.001}],
        "funding": None,
        "archive_newest_mtime": a["archive_newest_mtime"],
        "archive_last_modified": None,
        "errors": [],
    }
    assert a["archive_newest_mtime"].startswith(datetime.now(timezone.utc).strftime("%Y-%m-%d"))

    b = by_symbol(doc)["BBBUSDT"]
    assert (b["first_day"], b["last_day"], b["completeness_pct"], b["days_partial"], b["days_missing"]) == ("2024-02-02", "2024-02-04", 100.0, 0, 0)
    assert b["bars_expected"] == b["bars_present"] == 16 * 60 + 2 * 1440  # the listing day is not partial
    assert (b["holes"], b["longest_hole"], b["zero_volume"]["runs"], b["ohlc_violations"]["rows"]) == (0, None, 0, 0)

    c = by_symbol(doc)["CCCUSDT"]
    assert (c["completeness_pct"], c["days_missing"], c["days_unparsed"], c["bars_expected"], c["days_in_archive"]) == (0.0, 2, 2, 2880, 2)

    assert [r["symbol"] for r in doc["symbols"]] == ["CCCUSDT", "AAAUSDT", "BBBUSDT"]  # worst first
    assert summary.failed == 0 and summary.files == 5  # 3 partitions + 2 API files decoded


def test_json_document_schema_is_stable(store: Layout) -> None:
    doc, _ = run_json()
    assert list(doc) == ["schema", "trade_type", "interval", "generated_at", "data_dir", "fail_under", "symbols"]
    assert (doc["schema"], doc["trade_type"], doc["interval"], doc["generated_at"]) == (
        "bhds-quality-report/1", "spot", "1m", "2024-02-10T12:00:00Z")
    frozen = [
        "symbol", "first_day", "last_day", "days_behind", "days_expected", "days_in_archive", "days_verified",
        "days_unparsed", "days_from_api", "days_api_empty", "days_missing", "days_partial", "bars_expected",
        "bars_present", "bars_missing", "completeness_pct", "holes", "longest_hole", "duplicate_rows",
        "parse_duplicates", "misaligned_rows", "ohlc_violations", "zero_volume", "segments", "split_gaps", "funding",
        "archive_newest_mtime", "archive_last_modified", "errors",
    ]
    assert list(SYMBOL_KEYS) == frozen
    for record in doc["symbols"]:
        assert list(record) == frozen
        assert list(record["ohlc_violations"]) == ["rows", "high_below_open_close", "low_above_open_close", "negative", "nan"]
        assert list(record["zero_volume"]) == ["rows", "runs", "longest_run"]
        assert all(list(s) == ["name", "first", "last", "rows"] for s in record["segments"])
        assert all(list(g) == ["after", "before", "days"] for g in record["split_gaps"])
        assert isinstance(record["errors"], list)


def test_table_and_csv(store: Layout, capsys: pytest.CaptureFixture) -> None:
    code, out, _ = cli(["quality", "report", "spot", "1m"], capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "bhds quality report: spot 1m, 3 symbols, worst first"
    assert lines[1].split()[:6] == ["SYMBOL", "FIRST", "LAST", "COMPL%", "MISS", "PART"]
    assert [line.split()[0] for line in lines[2:5]] == ["CCCUSDT", "AAAUSDT", "BBBUSDT"]
    assert lines[3].split() == ["AAAUSDT", "2024-01-29", "2024-02-04", "84.82", "1", "1", "5", "1", "2", "24h", "3", "0", "4",
                                "3/7", "2", "-", lines[3].split()[-1]]
    assert lines[-1].startswith("quality report: files=5 rows=") and lines[-1].endswith("s")  # the summary line stays last

    code, out, err = cli(["quality", "report", "spot", "1m", "--format", "csv"], capsys)
    rows = list(csv.DictReader(io.StringIO(out)))  # stdout holds the data only: the summary line is on stderr
    assert err.splitlines()[-1].startswith("quality report: files=")
    assert [r["symbol"] for r in rows] == ["CCCUSDT", "AAAUSDT", "BBBUSDT"]
    a = rows[1]
    assert (a["completeness_pct"], a["days_missing"], a["zero_volume_longest_run"], a["ohlc_violation_rows"], a["segments"],
            a["longest_hole_bars"]) == ("84.82", "1", "7", "4", "2", "1440")


def test_output_file_leaves_stdout_to_the_summary(store: Layout, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    target = tmp_path / "out" / "report.json"
    code, out, _ = cli(["quality", "report", "spot", "1m", "AAAUSDT", "--format", "json", "-o", str(target)], capsys)
    assert code == 0
    assert out.splitlines() == [out.strip()] and out.startswith("quality report:")
    assert [r["symbol"] for r in json.loads(target.read_text())["symbols"]] == ["AAAUSDT"]


# ---- exit codes ----

def test_fail_under_exit_codes(store: Layout, capsys: pytest.CaptureFixture) -> None:
    code, out, err = cli(["quality", "report", "spot", "1m", "AAAUSDT", "BBBUSDT", "--fail-under", "80"], capsys)
    assert code == 0, err
    code, out, err = cli(["quality", "report", "spot", "1m", "AAAUSDT", "BBBUSDT", "--fail-under", "90"], capsys)
    assert code == 3
    assert "bhds: failed: AAAUSDT: completeness 84.82% is below 90%" in err.splitlines()
    assert "BBBUSDT" not in err
    assert "1 below 90%: AAAUSDT" in out
    assert out.splitlines()[-1].startswith("quality report:") and "below=1" in out.splitlines()[-1]
    code, _, err = cli(["quality", "report", "spot", "1m", "BBBUSDT", "--fail-under", "100"], capsys)
    assert code == 0, err
    code, _, _ = cli(["quality", "report", "spot", "1m", "--fail-under", "101"], capsys)
    assert code == 2


def test_unknown_symbol_and_empty_store(store: Layout, tmp_path: Path, capsys: pytest.CaptureFixture,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = cli(["quality", "report", "spot", "1m", "BBBUSDT", "NOPEUSDT"], capsys)
    assert code == 3
    assert "bhds: failed: NOPEUSDT: no parsed or API 1m candles and no archive zips on disk" in err
    monkeypatch.setenv("CRYPTO_BASE_DIR", str(tmp_path / "empty"))
    code, _, err = cli(["quality", "report", "um_futures", "1m"], capsys)
    assert code == 1
    assert err.strip().startswith("bhds: error: no um_futures 1m klines under ")
    code, _, err = cli(["quality", "report", "spot", "7m"], capsys)
    assert code == 2 and "not published by Binance" in err


def test_unreadable_partition_is_a_failure_not_a_crash(store: Layout, capsys: pytest.CaptureFixture) -> None:
    bad = store.parsed_kline_partition(TradeType.spot, "BBBUSDT", "1m", 2024, 2)
    bad.write_bytes(b"not parquet at all")
    code, out, err = cli(["quality", "report", "spot", "1m", "--format", "json"], capsys)
    assert code == 3
    assert f"bhds: failed: BBBUSDT: cannot read {bad}" in err
    records = by_symbol(json.loads(out))
    assert records["BBBUSDT"]["errors"] and records["BBBUSDT"]["completeness_pct"] == 0.0
    assert records["AAAUSDT"]["completeness_pct"] == 84.82
    assert next(iter(json.loads(out)["symbols"]))["symbol"] == "BBBUSDT"  # errors first


# ---- cache ----

def test_second_run_reuses_months_and_sees_changes(store: Layout) -> None:
    first, s1 = run_json()
    again, s2 = run_json()
    assert s1.files == 5 and s2.files == 0
    assert again["symbols"] == first["symbols"]
    # Fill AAAUSDT's hole of 01-30 (the partition is rewritten, so its mtime changes).
    write(store.parsed_kline_partition(TradeType.spot, "AAAUSDT", "1m", 2024, 1), klines("2024-01-29 00:00", "2024-01-31 23:59"))
    os.utime(store.parsed_kline_partition(TradeType.spot, "AAAUSDT", "1m", 2024, 1), ns=(1, 1))
    third, s3 = run_json()
    a = by_symbol(third)["AAAUSDT"]
    assert s3.files == 1
    assert (a["days_partial"], a["holes"], a["bars_missing"], a["ohlc_violations"]["rows"]) == (0, 1, 1440, 0)
    assert a["zero_volume"] == {"rows": 5, "runs": 2, "longest_run": 4}


# ---- plot ----

def test_plot_png_is_produced(store: Layout, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import matplotlib.image

    png = tmp_path / "plots" / "quality.png"
    code, _, err = cli(["quality", "report", "spot", "1m", "--plot", str(png)], capsys)
    assert code == 0, err
    assert png.stat().st_size > 10_000
    pixels = (matplotlib.image.imread(png)[..., :3] * 255).round().astype(np.uint8).reshape(-1, 3)
    colours = {tuple(p) for p in np.unique(pixels, axis=0)}
    assert len(colours) >= 3
    # The categories are drawn: archive green, API blue, an empty day red, outside grey.
    for rgb in ((0.17, 0.63, 0.17), (0.12, 0.47, 0.71), (0.84, 0.15, 0.16), (0.93, 0.93, 0.93)):
        distance = np.abs(pixels.astype(int) - np.array(rgb) * 255).max(axis=1)
        assert (distance <= 2).sum() > 500, rgb  # a whole cell of it, not a stray anti-aliased pixel
    assert not list(png.parent.glob("*.bhds-tmp"))


def test_plot_cells(store: Layout) -> None:
    from bhds.quality.plot import API, ARCHIVE, EMPTY, OUTSIDE, cell_grid
    from bhds.quality.analyse import SymbolTask, analyse_symbol
    from bhds.quality.inventory import kline_files

    views = []
    for name in ("AAAUSDT", "BBBUSDT"):
        files = kline_files(store, TradeType.spot, name, "1m")
        views.append(analyse_symbol(SymbolTask(str(store.root), TradeType.spot, "1m", name, files, [], {}, None, 0, 0, None)).view)
    image, labels = cell_grid(views)
    assert labels[0] == "2024-01-29" and labels[-1] == "2024-02-04" and image.shape == (2, 7, 3)
    a, b = image
    assert tuple(a[0]) == ARCHIVE and tuple(a[4]) == API and tuple(a[5]) == EMPTY and tuple(b[0]) == OUTSIDE
    assert a[1][0] > a[1][1] > 0.5  # 01-30 is 94% full: between red and yellow, near yellow


def test_plot_without_matplotlib_is_one_clear_line(store: Layout, tmp_path: Path, capsys: pytest.CaptureFixture,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    code, out, err = cli(["quality", "report", "spot", "1m", "--plot", str(tmp_path / "x.png")], capsys)
    assert code == 1
    assert err.strip() == "bhds: error: --plot needs matplotlib: install the plot extra: pip install 'bhds[plot]'"
    assert out.startswith("quality report: ") and "stopped=error" in out  # a failed command still ends with its summary
    assert not (tmp_path / "x.png").exists()


# ---- state DB and funding ----

def test_state_db_facts_are_used_when_present(store: Layout) -> None:
    store.state_dir.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(store.state_db) as conn:
        conn.execute("CREATE TABLE archive_files (key TEXT PRIMARY KEY, size INTEGER, last_modified TEXT, etag TEXT)")
        conn.execute("CREATE TABLE unrelated (x INTEGER)")
        conn.execute("CREATE TABLE api_kline_empty_days (trade_type TEXT, symbol TEXT, interval TEXT, day TEXT, asked_at TEXT)")
        conn.executemany("INSERT INTO api_kline_empty_days VALUES (?, ?, ?, ?, '2024-02-10T00:00:00Z')", [
            ("spot", "AAAUSDT", "1m", "2024-02-03"),  # also an empty file: counted once
            ("spot", "AAAUSDT", "1m", "2024-02-02"),  # an API file with candles came later
            ("spot", "BBBUSDT", "1m", "2024-02-05"),
            ("spot", "BBBUSDT", "5m", "2024-02-06"),
            ("cm_futures", "BBBUSDT", "1m", "2024-02-07"),
        ])
        prefix = kline_files_prefix(TradeType.spot, "AAAUSDT", "1m")
        conn.executemany("INSERT INTO archive_files VALUES (?, 1, ?, 'e')", [
            (prefix + "AAAUSDT-1m-2024-02-04.zip", "2024-02-05T08:01:02.000Z"),
            (prefix + "AAAUSDT-1m-2024-01-29.zip", "2024-01-30T08:00:00.000Z"),
            (prefix + "AAAUSDT-1m-2024-02-04.zip.CHECKSUM", "2024-02-09T00:00:00.000Z"),  # not a zip
            (kline_files_prefix(TradeType.spot, "AAAUSDT", "5m") + "AAAUSDT-5m-2024-02-06.zip", "2024-02-07T00:00:00Z"),
        ])
    doc, _ = run_json()
    records = by_symbol(doc)
    assert records["AAAUSDT"]["archive_last_modified"] == "2024-02-05T08:01:02Z"
    assert records["BBBUSDT"]["archive_last_modified"] is None
    assert (records["AAAUSDT"]["days_api_empty"], records["BBBUSDT"]["days_api_empty"]) == (1, 1)


def test_funding_coverage_and_interval_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    layout = futures_store(tmp_path, monkeypatch, "FFFUSDT")
    tt = TradeType.um_futures
    # 8-hourly from 01-01 00:00 to 01-06 00:00 (16 settlements), then 4-hourly to 01-08 00:00 (12 more);
    # 01-02 16:00 and 01-07 04:00 are missing; 01-03 00:00 is written twice; times carry 0-9 ms of jitter.
    times = [ms("2024-01-01 00:00") + i * 8 * 3_600_000 for i in range(16)]
    hours = [8] * 16
    times += [ms("2024-01-06 04:00") + i * 4 * 3_600_000 for i in range(12)]
    hours += [4] * 12
    drop = {ms("2024-01-02 16:00"), ms("2024-01-07 04:00")}
    kept = [(t + (i % 10), h) for i, (t, h) in enumerate(zip(times, hours)) if t not in drop]
    kept.append((ms("2024-01-03 00:00") + 1, 8))
    kept.sort()
    funding = pa.table({
        "funding_time": pa.array([t for t, _ in kept]).cast(pa.timestamp("ms", tz="UTC")),
        "funding_interval_hours": pa.array([h for _, h in kept], pa.int64()),
        "funding_rate": pa.array([0.0001] * len(kept)),
        "candle_begin_time": pa.array([t // 3_600_000 * 3_600_000 for t, _ in kept]).cast(pa.timestamp("ms", tz="UTC")),
    }, schema=PARSED_FUNDING_SCHEMA)
    layout.parsed_funding_dir(tt).mkdir(parents=True)
    pq.write_table(funding, layout.parsed_funding_file(tt, "FFFUSDT"))
    # The API overlaps the last two archive settlements and adds two newer ones.
    api_times = [ms("2024-01-07 20:00"), ms("2024-01-08 00:00") + 3, ms("2024-01-08 04:00"), ms("2024-01-08 08:00")]
    write_api_funding(layout, "FFFUSDT", api_times, 0.0002)

    doc, _ = run_json("um_futures")
    assert by_symbol(doc)["FFFUSDT"]["funding"] == {
        "records": 28,  # 26 archive settlements kept + 2 newer from the API
        "first": "2024-01-01T00:00:00Z",
        "last": "2024-01-08T08:00:00Z",
        "expected": 30,
        "missing": 2,
        "coverage_pct": 93.33,
        "duplicates": 1,
        "interval_changes": [{"at": "2024-01-06T04:00:00Z", "from_hours": 8, "to_hours": 4}],
        "api_records": 4,
        "api_last": "2024-01-08T08:00:00Z",
    }


def test_hourly_interval_and_misaligned_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRYPTO_BASE_DIR", str(tmp_path))
    monkeypatch.setenv("BHDS_NOW", NOW)
    layout = Layout(tmp_path / "binance_data")
    cols = klines("2024-01-01 00:00", "2024-01-03 23:00", step=3_600_000, drop=("2024-01-02 05:00", "2024-01-02 06:00"))
    cols["candle_begin_time"][3] += 30 * MIN  # 03:30, off the hourly grid
    write(layout.parsed_kline_partition(TradeType.cm_futures, "XUSD_PERP", "1h", 2024, 1), cols)
    rec = by_symbol(run_json("cm_futures", "1h")[0])["XUSD_PERP"]
    assert (rec["bars_expected"], rec["bars_present"], rec["misaligned_rows"], rec["days_partial"], rec["holes"]) == (72, 69, 1, 2, 2)
    assert rec["longest_hole"] == {"after": "2024-01-02T04:00:00Z", "bars": 2}
    assert rec["funding"] is None  # futures, but no funding files
    # The terminal table shows them too, in the OFF column.
    lines = render_table(run_json("cm_futures", "1h")[0]).splitlines()
    assert dict(zip(lines[1].split(), lines[2].split()))["OFF"] == "1"


def test_archive_listing_is_reused_until_the_directory_changes(store: Layout) -> None:
    directory = store.local_for_key(kline_files_prefix(TradeType.spot, "AAAUSDT", "1m"))
    past = 1_600_000_000_000_000_000
    os.utime(directory, ns=(past, past))
    first, _ = run_json(symbols=("AAAUSDT",))
    assert by_symbol(first)["AAAUSDT"]["days_in_archive"] == 5
    # A change that keeps the directory's mtime (only possible by hand) is not seen: proof of reuse.
    (directory / "AAAUSDT-1m-2024-02-04.zip").unlink()
    os.utime(directory, ns=(past, past))
    assert by_symbol(run_json(symbols=("AAAUSDT",))[0])["AAAUSDT"]["days_in_archive"] == 5
    # Any real change (a file added, removed or renamed) moves the mtime: listed again.
    (directory / "AAAUSDT-1m-2024-02-03.zip").write_bytes(b"")
    again = by_symbol(run_json(symbols=("AAAUSDT",))[0])["AAAUSDT"]
    assert (again["days_in_archive"], again["days_verified"]) == (5, 3)  # 02-04 gone, 02-03 new and unverified


# ---- edges found in review ----

def test_one_missing_bar_is_never_reported_complete(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("CRYPTO_BASE_DIR", str(tmp_path))
    monkeypatch.setenv("BHDS_NOW", NOW)
    layout = Layout(tmp_path / "binance_data")
    # 1 minute missing of 30 days: 99.9977%, which rounding would show as 100.00.
    write(layout.parsed_kline_partition(TradeType.spot, "AUSDT", "1m", 2024, 1),
          klines("2024-01-01 00:00", "2024-01-30 23:59", drop=("2024-01-15 12:00", "2024-01-15 12:00")))
    write(layout.parsed_kline_partition(TradeType.spot, "BUSDT", "1m", 2024, 1), klines("2024-01-01 00:00", "2024-01-30 23:59"))
    records = by_symbol(run_json()[0])
    assert (records["AUSDT"]["bars_missing"], records["AUSDT"]["completeness_pct"]) == (1, 99.99)
    assert records["BUSDT"]["completeness_pct"] == 100.0
    code, out, err = cli(["quality", "report", "spot", "1m", "--fail-under", "100"], capsys)
    assert code == 3 and "bhds: failed: AUSDT: completeness 99.99% is below 100%" in err and "BUSDT" not in err
    assert "1 below 100%: AUSDT" in out
    code, _, err = cli(["quality", "report", "spot", "1m", "--fail-under", "99.99"], capsys)
    assert code == 0, err  # 99.9977 is not below 99.99


def test_days_behind_of_weekly_and_monthly_candles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRYPTO_BASE_DIR", str(tmp_path))
    monkeypatch.setenv("BHDS_NOW", NOW)  # 2024-02-10 12:00: January's 1mo and the week of 01-29 are the last closed
    layout = Layout(tmp_path / "binance_data")
    write(layout.parsed_kline_partition(TradeType.spot, "MUSDT", "1mo", 2024, 1), klines("2024-01-01 00:00", "2024-01-01 00:00", DAY))
    write(layout.parsed_kline_partition(TradeType.spot, "WUSDT", "1w", 2024, 1),
          klines("2024-01-01 00:00", "2024-01-29 00:00", 7 * DAY))
    write(layout.parsed_kline_partition(TradeType.spot, "VUSDT", "1w", 2024, 1),
          klines("2024-01-01 00:00", "2024-01-15 00:00", 7 * DAY))  # the weeks of 01-22 and 01-29 are missing
    write(layout.parsed_kline_partition(TradeType.spot, "DUSDT", "1d", 2024, 2), klines("2024-02-01 00:00", "2024-02-07 00:00", DAY))
    assert by_symbol(run_json(interval="1mo")[0])["MUSDT"]["days_behind"] == 0
    weekly = by_symbol(run_json(interval="1w")[0])
    # VUSDT's last week (01-15) covers the days to 01-21; yesterday is 02-09.
    assert (weekly["WUSDT"]["days_behind"], weekly["VUSDT"]["days_behind"]) == (0, 19)
    assert by_symbol(run_json(interval="1d")[0])["DUSDT"]["days_behind"] == 2


def test_a_partition_of_the_wrong_type_keeps_its_symbol_in_the_report(store: Layout, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture) -> None:
    path = store.parsed_kline_partition(TradeType.spot, "BBBUSDT", "1m", 2024, 2)
    t = table(klines("2024-02-02 08:00", "2024-02-04 23:59"))
    times = t.column(0).cast(pa.int64()).to_numpy().astype(np.float64)
    times[5] = np.nan  # float milliseconds with a NaN, as another tool might write them
    pq.write_table(t.set_column(0, "candle_begin_time", pa.array(times)), path)
    png = tmp_path / "q.png"
    code, out, err = cli(["quality", "report", "spot", "1m", "--format", "json", "--plot", str(png)], capsys)
    assert code == 3 and f"bhds: failed: BBBUSDT: cannot read {path}" in err
    records = by_symbol(json.loads(out))
    assert set(records) == {"AAAUSDT", "BBBUSDT", "CCCUSDT"} and records["BBBUSDT"]["errors"]
    assert png.stat().st_size > 10_000


def test_state_and_cache_values_of_the_wrong_shape_are_ignored(store: Layout) -> None:
    store.state_dir.mkdir(parents=True, exist_ok=True)
    prefix = kline_files_prefix(TradeType.spot, "AAAUSDT", "1m")
    with sqlite3.connect(store.state_db) as conn:
        conn.execute("CREATE TABLE archive_files (key TEXT PRIMARY KEY, last_modified)")
        conn.executemany("INSERT INTO archive_files VALUES (?, ?)", [
            (prefix + "AAAUSDT-1m-2024-01-29.zip", "inf"), (prefix + "AAAUSDT-1m-2024-01-30.zip", 10**17),
            (prefix + "AAAUSDT-1m-2024-01-31.zip", "0000-01-01"), (prefix + "AAAUSDT-1m-2024-02-01.zip", "NaN"),
        ])
    cache = store.cache_file("quality-spot-1m.json")
    cache.parent.mkdir(parents=True, exist_ok=True)
    from bhds.quality.cache import month_signatures
    from bhds.quality.inventory import kline_files

    signature = month_signatures(kline_files(store, TradeType.spot, "BBBUSDT", "1m"))["202402"]  # valid: only stats are odd
    cache.write_text(json.dumps({"format": "bhds-quality-cache/4", "scope": "spot/1m", "symbols": {
        "AAAUSDT": [], "BBBUSDT": {"months": {"202402": {"sig": signature, "stats": []}}, "archive": None},
        "CCCUSDT": {"months": {}, "archive": []}}}))
    doc, summary = run_json()
    records = by_symbol(doc)
    assert summary.failed == 0 and records["AAAUSDT"]["archive_last_modified"] is None
    assert (records["AAAUSDT"]["completeness_pct"], records["BBBUSDT"]["completeness_pct"], records["CCCUSDT"]["days_in_archive"]) == (
        84.82, 100.0, 2)


def test_deep_lists_the_archive_again(store: Layout) -> None:
    directory = store.local_for_key(kline_files_prefix(TradeType.spot, "AAAUSDT", "1m"))
    past = 1_600_000_000_000_000_000
    os.utime(directory, ns=(past, past))
    assert by_symbol(run_json(symbols=("AAAUSDT",))[0])["AAAUSDT"]["days_in_archive"] == 5
    (directory / "AAAUSDT-1m-2024-02-04.zip").unlink()
    os.utime(directory, ns=(past, past))  # the cached listing would still say 5
    assert by_symbol(run_json(symbols=("AAAUSDT",), deep=True)[0])["AAAUSDT"]["days_in_archive"] == 4


def test_funding_from_the_api_alone_takes_the_spacing_of_its_settlements(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    layout = futures_store(tmp_path, monkeypatch, "NEWUSDT")
    # A symbol listed after the archive's last month: 4-hourly settlements from the API only, 01-10 08:00 missing.
    write_api_funding(layout, "NEWUSDT", [ms("2024-01-10 00:00") + i * 4 * 3_600_000 + i % 7 for i in range(12) if i != 2], 0.0001)
    funding = by_symbol(run_json("um_futures")[0])["NEWUSDT"]["funding"]
    assert (funding["records"], funding["expected"], funding["missing"], funding["coverage_pct"]) == (11, 12, 1, 91.66)


def test_fail_under_at_exactly_the_ratio_is_not_below() -> None:
    from bhds.quality.record import is_below

    # 9018 of 10000 bars is exactly 90.18%: not below --fail-under 90.18 (floats would say it is).
    assert not is_below({"bars_expected": 10_000, "bars_present": 9_018}, 90.18)
    assert is_below({"bars_expected": 10_000, "bars_present": 9_017}, 90.18)
    assert all(not is_below({"bars_expected": 10_000, "bars_present": n}, n / 100) for n in range(0, 10_001, 7))
