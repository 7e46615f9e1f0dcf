"""`bhds.load` & co., `list-data` and `catalog` on a store built by the real pipeline from the fake Binance.

The store: spot BTCUSDT (a 90-minute hole), ETHUSDT (archive days filled from the API) and
LUNAUSDT (a three-day halt, so generate splits it into `SP0_LUNAUSDT` and `LUNAUSDT`), 1m from
2024-12-25 (so ranges cross a month boundary), resampled to 1h at base offset 15m; um_futures
BTCUSDT with archive and API funding. Every `load` is checked against the files read by hand.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import date, datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pyarrow.parquet as pq
import pytest

import bhds
from bhds.cli import main
from bhds.errors import BhdsError, DataError, InputError
from bhds.paths import Layout
from tests.conftest import fake_on_copy

SPOT_SYMBOLS = ["BTCUSDT", "ETHUSDT", "LUNAUSDT"]
TIME = "candle_begin_time"
REPO = Path(__file__).resolve().parent.parent


def _run(args: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 0, args


@pytest.fixture(scope="module")
def store(default_archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `binance_data` folder after the pipeline ran (treat as read-only; copy it to change it)."""
    work = tmp_path_factory.mktemp("research")
    fake, env = fake_on_copy(default_archive, work)
    try:
        with pytest.MonkeyPatch.context() as patch:
            for key in ("CRYPTO_BASE_DIR", "CRYPTO_NJOBS", "BHDS_NOW", *fake.env):
                patch.setenv(key, env[key])
            for args in (["aws_kline", "download", "spot", "1m", *SPOT_SYMBOLS], ["aws_kline", "verify", "spot", "1m", *SPOT_SYMBOLS],
                         ["aws_kline", "parse", "spot", "1m", *SPOT_SYMBOLS],
                         ["api_data", "download-aws-missing-kline", "spot", "1m", *SPOT_SYMBOLS],
                         ["generate", "kline-type", "spot", "1m"], ["generate", "resample-type", "spot", "1h", "15m"],
                         ["aws_kline", "download", "um_futures", "1m", "BTCUSDT"], ["aws_kline", "verify", "um_futures", "1m", "BTCUSDT"],
                         ["aws_kline", "parse", "um_futures", "1m", "BTCUSDT"], ["aws_funding", "download", "um_futures", "BTCUSDT"],
                         ["aws_funding", "verify", "um_futures", "BTCUSDT"], ["aws_funding", "parse", "um_futures", "BTCUSDT"],
                         ["api_data", "download-recent-funding", "um_futures", "BTCUSDT"], ["generate", "kline-type", "um_futures", "1m"]):
                _run(args)
    finally:
        fake.stop()
    return work / "crypto" / "binance_data"


@pytest.fixture
def store_copy(store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of the store, with CRYPTO_BASE_DIR aimed at it (for tests that change files)."""
    copy = tmp_path / "crypto" / "binance_data"
    shutil.copytree(store, copy)
    monkeypatch.setenv("CRYPTO_BASE_DIR", str(copy.parent))
    monkeypatch.setenv("CRYPTO_NJOBS", "1")
    return copy


def by_hand(paths: list[Path]) -> pd.DataFrame:
    """Files read with plain pandas and concatenated: what `load` must return."""
    return pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def results(store: Path, name: str) -> Path:
    return Layout(store).results_kline_file("spot", "1m", name)


# ---- import cost ----

def test_import_bhds_stays_free_of_pandas_pyarrow_and_duckdb() -> None:
    code = ("import sys, bhds, bhds.cli; heavy = [m for m in ('pandas', 'pyarrow', 'duckdb', 'polars', 'numpy') if m in sys.modules]; "
            "assert callable(bhds.load) and callable(bhds.coverage) and issubclass(bhds.DataError, bhds.BhdsError); print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# ---- load: results ----

def test_load_results_equals_the_file(store: Path) -> None:
    got = bhds.load("spot", "BTCUSDT", data_dir=store)
    want = by_hand([results(store, "BTCUSDT")])
    pd.testing.assert_frame_equal(got, want)
    assert isinstance(got.index, pd.RangeIndex) and str(got[TIME].dt.tz) == "UTC"
    assert got[TIME].is_monotonic_increasing and got[TIME].is_unique
    assert bhds.load("spot", "BTCUSDT", "1m", source="results", data_dir=str(store)).equals(got)  # a str path works too


def test_a_split_symbol_is_its_segments_in_time_order(store: Path) -> None:
    sp0, last = results(store, "SP0_LUNAUSDT"), results(store, "LUNAUSDT")
    assert sp0.exists() and last.exists()
    got = bhds.load("spot", "LUNAUSDT", data_dir=store)
    pd.testing.assert_frame_equal(got, by_hand([sp0, last]))
    assert "segment" not in got.columns
    # The halt (2025-01-02 .. 01-05) is the gap between the two files.
    assert got[TIME].diff().max() > pd.Timedelta(days=2)
    tagged = bhds.load("spot", "LUNAUSDT", data_dir=store, segments=True)
    sizes = tagged.groupby("segment", sort=False).size()
    assert list(sizes.index) == ["SP0_LUNAUSDT", "LUNAUSDT"]
    assert list(sizes) == [pq.read_metadata(sp0).num_rows, pq.read_metadata(last).num_rows]
    pd.testing.assert_frame_equal(tagged.drop(columns="segment"), got)


def test_ranges_are_start_inclusive_end_exclusive_across_files_and_months(store: Path) -> None:
    full = bhds.load("spot", "LUNAUSDT", data_dir=store)
    sp0_last = pd.read_parquet(results(store, "SP0_LUNAUSDT"))[TIME].iloc[-1]
    next_first = pd.read_parquet(results(store, "LUNAUSDT"))[TIME].iloc[0]
    # A range over the file boundary holds the last candle of one file and the first of the next.
    got = bhds.load("spot", "LUNAUSDT", start=sp0_last, end=next_first + pd.Timedelta(minutes=1), data_dir=store)
    assert list(got[TIME]) == [sp0_last, next_first]
    # Month boundary, given as text, datetime and date alike.
    for start, end in (("2024-12-31T23:58:00Z", "2025-01-01T00:02"), (datetime(2024, 12, 31, 23, 58, tzinfo=timezone.utc), datetime(2025, 1, 1, 0, 2))):
        got = bhds.load("spot", "BTCUSDT", start=start, end=end, data_dir=store)
        assert list(got[TIME]) == [utc("2024-12-31 23:58"), utc("2024-12-31 23:59"), utc("2025-01-01 00:00"), utc("2025-01-01 00:01")]
    january = bhds.load("spot", "LUNAUSDT", start=date(2025, 1, 1), end=date(2025, 2, 1), data_dir=store)
    want = full[(full[TIME] >= utc("2025-01-01")) & (full[TIME] < utc("2025-02-01"))].reset_index(drop=True)
    pd.testing.assert_frame_equal(january, want)
    assert len(bhds.load("spot", "BTCUSDT", start="2024-12-26", end="2024-12-26", data_dir=store)) == 0
    assert list(bhds.load("spot", "BTCUSDT", start="2030-01-01", data_dir=store).columns) == list(full.columns)


def test_columns_prune_and_time_comes_first(store: Path) -> None:
    got = bhds.load("um_futures", "BTCUSDT", columns=["funding_rate", "close"], data_dir=store)
    want = pd.read_parquet(Layout(store).results_kline_file("um_futures", "1m", "BTCUSDT"), columns=[TIME, "funding_rate", "close"])
    pd.testing.assert_frame_equal(got, want)
    assert got["funding_rate"].ne(0).sum() > 10  # funding landed on the 8-hourly candles
    arrow = bhds.load_arrow("spot", "LUNAUSDT", columns=["close"], segments=True, data_dir=store)
    assert arrow.column_names == [TIME, "close", "segment"]
    polars = bhds.load_polars("spot", "LUNAUSDT", start="2025-01-06", data_dir=store)
    assert isinstance(polars, pl.DataFrame)
    pd.testing.assert_frame_equal(polars.to_pandas(), bhds.load("spot", "LUNAUSDT", start="2025-01-06", data_dir=store), check_dtype=False)


# ---- load: resampled ----

@pytest.mark.parametrize("offset", ["0m", "15m", "30m", "45m"])
def test_load_resampled_equals_the_offset_folder(store: Path, offset: str) -> None:
    layout = Layout(store)
    got = bhds.load("spot", "LUNAUSDT", "1h", offset=offset, source="resampled", data_dir=store)
    want = by_hand([layout.resampled_file("spot", "1h", offset, "SP0_LUNAUSDT"), layout.resampled_file("spot", "1h", offset, "LUNAUSDT")])
    pd.testing.assert_frame_equal(got, want)
    assert (got[TIME].dt.minute == int(offset[:-1])).all()
    window = bhds.load("spot", "BTCUSDT", "1h", "2024-12-31T22:00Z", "2025-01-01T02:00Z", offset=offset, source="resampled", data_dir=store)
    assert window[TIME].min() >= utc("2024-12-31 22:00") and window[TIME].max() < utc("2025-01-01 02:00") and len(window) == 4


# ---- load: parsed ----

def parsed_by_hand(store: Path, symbol: str) -> pd.DataFrame:
    """Archive partitions, then API days whose candles traded override them (contract §6.11.1), by pandas."""
    layout = Layout(store)
    archive = by_hand(sorted(layout.parsed_kline_dir("spot", symbol, "1m").glob("*.pqt")))
    api_files = sorted(layout.api_kline_dir("spot", symbol, "1m").glob("*.pqt"))
    api = by_hand(api_files) if api_files else archive.iloc[:0]
    api = api[api["volume"] > 0]
    both = pd.concat([archive, api], ignore_index=True)
    both[TIME] = both[TIME].astype("datetime64[ms, UTC]")
    return both.drop_duplicates(TIME, keep="last").sort_values(TIME, ignore_index=True)


@pytest.mark.parametrize("symbol", ["ETHUSDT", "BTCUSDT"])
def test_load_parsed_merges_archive_and_api_days(store: Path, symbol: str) -> None:
    got = bhds.load("spot", symbol, source="parsed", data_dir=store)
    want = parsed_by_hand(store, symbol)
    pd.testing.assert_frame_equal(got, want, check_dtype=False)
    assert got[TIME].dt.date.nunique() == 19  # 2024-12-25 .. 2025-01-12: the archive's 17 days and the API's
    if symbol == "ETHUSDT":  # days the archive lacks come from the API
        assert (got[TIME].dt.date == date(2025, 1, 3)).sum() > 1400  # (less its untraded minutes, which the API merge drops)
    # What generate starts from: every traded candle of the results is this merge's candle.
    res = bhds.load("spot", symbol, data_dir=store)
    traded = got[got["volume"] > 0].reset_index(drop=True)
    cols = ["candle_begin_time", "open", "high", "low", "close", "volume"]
    pd.testing.assert_frame_equal(res[res["volume"] > 0][cols].reset_index(drop=True), traded[cols], check_dtype=False)
    window = bhds.load("spot", symbol, start="2024-12-31T23:00", end="2025-01-01T01:00", source="parsed", data_dir=store)
    pd.testing.assert_frame_equal(window, want[(want[TIME] >= utc("2024-12-31 23:00")) & (want[TIME] < utc("2025-01-01 01:00"))]
                                  .reset_index(drop=True), check_dtype=False)


def test_a_range_opens_only_the_partitions_it_needs(store_copy: Path) -> None:
    december = Layout(store_copy).parsed_kline_partition("spot", "ETHUSDT", "1m", 2024, 12)
    december.write_bytes(b"not parquet")  # any read of it fails
    got = bhds.load("spot", "ETHUSDT", start="2025-01-05", end="2025-01-06", source="parsed", data_dir=store_copy)
    assert len(got) == 1440
    with pytest.raises(DataError, match="cannot read .*202412.pqt"):
        bhds.load("spot", "ETHUSDT", start="2024-12-30", source="parsed", data_dir=store_copy)


# ---- symbols, coverage, errors ----

def test_symbols_and_coverage_match_the_loaded_rows(store: Path) -> None:
    assert bhds.symbols("spot", data_dir=store) == SPOT_SYMBOLS
    assert bhds.symbols("spot", "1h", "resampled", data_dir=store) == SPOT_SYMBOLS
    assert bhds.symbols("spot", source="parsed", data_dir=store) == SPOT_SYMBOLS
    assert bhds.symbols("um_futures", data_dir=store) == ["BTCUSDT"]
    assert bhds.symbols("cm_futures", data_dir=store) == []
    cov = bhds.coverage("spot", data_dir=store).set_index("symbol")
    for symbol in SPOT_SYMBOLS:
        frame = bhds.load("spot", symbol, data_dir=store)
        row = cov.loc[symbol]
        assert (row["first"], row["last"], row["rows"]) == (frame[TIME].iloc[0], frame[TIME].iloc[-1], len(frame))
    assert cov.loc["LUNAUSDT", "files"] == 2
    resampled = bhds.coverage("spot", "1h", "resampled", offset="15m", data_dir=store).set_index("symbol")
    assert resampled.loc["BTCUSDT", "rows"] == len(bhds.load("spot", "BTCUSDT", "1h", offset="15m", source="resampled", data_dir=store))
    with pytest.raises(InputError, match="needs an offset"):  # rows summed over offsets would mean nothing
        bhds.coverage("spot", "1h", "resampled", data_dir=store)


@pytest.mark.parametrize(("kwargs", "error", "says"), [
    ({"trade_type": "futures"}, InputError, "trade type 'futures' is not known: use one of spot, um_futures, cm_futures"),
    ({"source": "raw"}, InputError, "source 'raw' is not known"),
    ({"start": "last tuesday"}, InputError, "start 'last tuesday' is not a time"),
    ({"start": "2025-01-02", "end": "2025-01-01"}, InputError, "is before start"),
    ({"columns": ["close", "nope"]}, InputError, "no column 'nope'"),
    ({"interval": "7m"}, InputError, "not published by Binance"),
    ({"symbol": "DOGEUSDT"}, DataError, "run `bhds generate kline spot 1m DOGEUSDT`"),
    ({"source": "resampled", "interval": "1h"}, InputError, "needs an offset"),
    ({"source": "resampled", "interval": "1h", "offset": "5m"}, DataError, "offsets on disk: 0m, 15m, 30m, 45m"),
    ({"source": "parsed", "segments": True}, InputError, "segments=True applies"),
    ({"interval": "1h"}, DataError, "no spot 1h results"),
])
def test_errors_are_one_line_bhds_errors(store: Path, kwargs: dict, error: type, says: str) -> None:
    args = {"trade_type": "spot", "symbol": "BTCUSDT", "data_dir": store, **kwargs}
    with pytest.raises(error) as info:
        bhds.load(**args)
    assert isinstance(info.value, BhdsError) and says in info.value.message and "\n" not in info.value.message


def test_data_dir_defaults_to_the_configured_store(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRYPTO_BASE_DIR", str(store.parent))
    assert len(bhds.load("spot", "BTCUSDT", end="2024-12-25T00:10")) == 10


# ---- list-data ----

def cli(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(args)
    captured = capsys.readouterr()
    return info.value.code, captured.out, captured.err


def test_list_data_json_is_the_only_thing_on_stdout(store: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("CRYPTO_BASE_DIR", str(store.parent))
    code, out, err = cli(["list-data", "--format", "json"], capsys)
    assert code == 0
    doc = json.loads(out)  # the whole of stdout is one JSON document
    assert doc["schema"] == "bhds-list-data/1" and doc["data_dir"] == str(store)
    assert err.strip().splitlines()[-1].startswith("list-data: files=")
    rows = {(r["trade_type"], r["dataset"], r["interval"], r["offset"], r["symbol"]): r for r in doc["datasets"]}
    kinds = {(tt, kind) for tt, kind, *_ in rows}
    assert kinds == {("spot", "parsed_klines"), ("spot", "api_klines"), ("spot", "results"), ("spot", "resampled"),
                     ("um_futures", "parsed_klines"), ("um_futures", "funding"), ("um_futures", "api_funding"), ("um_futures", "results")}
    luna = rows[("spot", "results", "1m", None, "LUNAUSDT")]
    files = [results(store, "SP0_LUNAUSDT"), results(store, "LUNAUSDT")]
    assert luna["files"] == 2 and luna["bytes"] == sum(p.stat().st_size for p in files)
    assert luna["rows"] == len(bhds.load("spot", "LUNAUSDT", data_dir=store))
    assert (luna["first"], luna["last"]) == ("2024-12-25T00:00:00Z", "2025-01-12T23:59:00Z")
    parsed = rows[("spot", "parsed_klines", "1m", None, "ETHUSDT")]
    assert parsed["files"] == 2 and parsed["rows"] == 14 * 1440 and parsed["stale"] is None  # 17 archive days less 3 missing
    assert rows[("spot", "resampled", "1h", "15m", "BTCUSDT")]["first"] == "2024-12-25T00:15:00Z"
    funding = rows[("um_futures", "funding", None, None, "BTCUSDT")]
    assert (funding["first"], funding["last"], funding["rows"]) == ("2024-12-25T00:00:00Z", "2024-12-31T16:00:00Z", 21)
    assert not any(r["stale"] for r in doc["datasets"])


def test_list_data_filters_and_formats(store: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("CRYPTO_BASE_DIR", str(store.parent))
    code, out, _ = cli(["list-data", "spot", "--interval", "1h", "--format", "csv"], capsys)
    lines = out.strip().splitlines()
    assert code == 0 and lines[0] == "trade_type,dataset,interval,offset,symbol,first,last,rows,files,bytes,stale"
    assert len(lines) == 1 + 4 * 3 and all(line.startswith("spot,resampled,1h,") for line in lines[1:])
    code, out, _ = cli(["list-data", "um_futures"], capsys)
    table = out.strip().splitlines()
    assert code == 0 and table[0].split() == ["trade_type", "dataset", "interval", "offset", "symbol", "first", "last", "rows", "files", "bytes", "stale"]
    assert len(table) == 5 and "list-data:" not in out
    code, _, err = cli(["list-data", "spot", "--interval", "fortnight"], capsys)
    assert code == 2 and err.strip().startswith("bhds: error: --interval 'fortnight' is not an interval")


def test_list_data_says_when_results_are_older_than_their_inputs(store_copy: Path, capsys: pytest.CaptureFixture) -> None:
    layout = Layout(store_copy)
    later = results(store_copy, "BTCUSDT").stat().st_mtime + 60
    os.utime(layout.parsed_kline_partition("spot", "BTCUSDT", "1m", 2025, 1), (later, later))  # a re-parse after generate
    os.utime(results(store_copy, "ETHUSDT"), (later, later))  # 1m results rewritten after the resample
    code, out, _ = cli(["list-data", "spot", "--format", "json"], capsys)
    stale = {(r["dataset"], r["offset"], r["symbol"]) for r in json.loads(out)["datasets"] if r["stale"]}
    assert code == 0
    assert stale == {("results", None, "BTCUSDT")} | {("resampled", o, "ETHUSDT") for o in ("0m", "15m", "30m", "45m")}
    code, out, _ = cli(["list-data", "spot"], capsys)
    assert [line.split()[4] for line in out.splitlines() if line.rstrip().endswith("STALE")] == ["BTCUSDT"] + ["ETHUSDT"] * 4


# ---- catalog ----

def test_catalog_views_return_what_load_returns(store_copy: Path, capsys: pytest.CaptureFixture) -> None:
    import duckdb

    code, out, _ = cli(["catalog"], capsys)
    assert code == 0 and out.startswith("catalog: files=1") and "views=7" in out
    path = Layout(store_copy).catalog_db
    assert path.exists() and not [p for p in path.parent.iterdir() if "bhds-tmp" in p.name or p.name.endswith(".wal")]
    with duckdb.connect(str(path), read_only=True) as db:
        views = sorted(row[0] for row in db.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall())
        assert views == ["spot_klines_1m", "spot_resampled_1h_0m", "spot_resampled_1h_15m", "spot_resampled_1h_30m",
                         "spot_resampled_1h_45m", "um_futures_funding", "um_futures_klines_1m"]
        assert db.execute("SELECT count(*) FROM duckdb_tables()").fetchone() == (0,)  # views, not copies
        db.execute("SET TimeZone = 'UTC'")
        sql = db.execute("SELECT * FROM spot_klines_1m WHERE symbol = 'LUNAUSDT' AND candle_begin_time >= '2025-01-01' ORDER BY candle_begin_time").df()
        want = bhds.load("spot", "LUNAUSDT", start="2025-01-01", data_dir=store_copy)
        assert list(sql.columns) == ["symbol", *want.columns]
        pd.testing.assert_frame_equal(sql.drop(columns="symbol"), want, check_dtype=False)
        resampled = db.execute("SELECT * EXCLUDE (symbol) FROM spot_resampled_1h_45m WHERE symbol = 'BTCUSDT' ORDER BY 1").df()
        pd.testing.assert_frame_equal(resampled, bhds.load("spot", "BTCUSDT", "1h", offset="45m", source="resampled", data_dir=store_copy),
                                      check_dtype=False)
        # The example query.
        top = dict(db.execute("SELECT symbol, max(close) FROM spot_klines_1m WHERE candle_begin_time >= '2025-01-01' GROUP BY 1").fetchall())
        assert top == {s: bhds.load("spot", s, start="2025-01-01", data_dir=store_copy)["close"].max() for s in SPOT_SYMBOLS}
        # Funding: the archive's records and the API's, one per hour.
        funding = db.execute("SELECT candle_begin_time, funding_rate FROM um_futures_funding WHERE symbol = 'BTCUSDT' ORDER BY 1").df()
        assert funding["candle_begin_time"].is_unique and len(funding) == 59
        on_candles = bhds.load("um_futures", "BTCUSDT", columns=["funding_rate"], data_dir=store_copy)
        on_candles = on_candles[on_candles["funding_rate"] != 0].reset_index(drop=True)
        merged = funding[funding["candle_begin_time"] <= on_candles[TIME].iloc[-1]].reset_index(drop=True)
        np.testing.assert_allclose(merged["funding_rate"], on_candles["funding_rate"])


def test_generate_refreshes_an_existing_catalog(store_copy: Path, capsys: pytest.CaptureFixture) -> None:
    import duckdb

    path = Layout(store_copy).catalog_db
    code, _, _ = cli(["generate", "resample-type", "spot", "4h", "1h"], capsys)
    assert code == 0 and not path.exists()  # no catalog: generate does not make one
    code, _, _ = cli(["catalog"], capsys)
    code, _, _ = cli(["generate", "resample-type", "spot", "5m", "0m"], capsys)
    assert code == 0
    with duckdb.connect(str(path), read_only=True) as db:
        views = {row[0] for row in db.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
        assert {"spot_resampled_4h_0h", "spot_resampled_4h_3h", "spot_resampled_5m_0m"} <= views
        rows = db.execute("SELECT count(*) FROM spot_resampled_5m_0m WHERE symbol = 'ETHUSDT'").fetchone()[0]
    assert rows == len(bhds.load("spot", "ETHUSDT", "5m", offset="0m", source="resampled", data_dir=store_copy))


def test_catalog_to_another_path_and_without_duckdb(store_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture) -> None:
    target = tmp_path / "elsewhere.duckdb"
    target.write_bytes(b"an old catalog")
    code, _, _ = cli(["catalog", str(target)], capsys)
    assert code == 0 and target.read_bytes()[:14] != b"an old catalog" and not Layout(store_copy).catalog_db.exists()
    code, _, _ = cli(["catalog"], capsys)
    assert code == 0 and Layout(store_copy).catalog_db.exists()
    monkeypatch.setitem(sys.modules, "duckdb", None)  # import duckdb -> ImportError
    code, out, err = cli(["catalog"], capsys)
    assert code == 1 and out.startswith("catalog: ") and "stopped=error" in out  # the summary line, still
    assert err == "bhds: error: the SQL catalog needs DuckDB: pip install 'bhds[sql]' (or pip install duckdb)\n"
    # generate still succeeds when the catalog cannot be refreshed, and says so.
    code, out, err = cli(["generate", "resample-type", "spot", "4h", "1h"], capsys)
    assert code == 0 and out.startswith("generate resample-type:")
    assert "catalog not refreshed: the SQL catalog needs DuckDB" in err


# ---- files written by other tools ----

def test_files_from_other_writers_nanoseconds_and_no_statistics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """bhds.py wrote results through pandas (ns timestamps); other tools may write no min/max statistics."""
    import pyarrow as pa

    layout = Layout(tmp_path / "binance_data")
    directory = layout.results_kline_dir("spot", "1m")
    directory.mkdir(parents=True)

    def frame(first: str, n: int) -> pd.DataFrame:
        t = pd.date_range(first, periods=n, freq="min", tz="UTC").astype("datetime64[ns, UTC]")
        price = np.linspace(1.0, 2.0, n)
        return pd.DataFrame({TIME: t, "open": price, "high": price, "low": price, "close": price, "volume": np.ones(n)})

    early, late = frame("2024-01-31 22:00", 180), frame("2024-02-03 00:00", 60)
    pq.write_table(pa.Table.from_pandas(early, preserve_index=False), directory / "SP0_XUSDT.pqt", write_statistics=False)
    late.to_parquet(directory / "XUSDT.pqt", index=False)
    assert pq.read_schema(directory / "XUSDT.pqt").field(TIME).type == pa.timestamp("ns", tz="UTC")

    got = bhds.load("spot", "XUSDT", start=np.datetime64("2024-01-31T23:58"), end=pd.Timestamp("2024-02-01 00:02", tz="UTC"),
                    data_dir=layout.root)
    assert str(got[TIME].dtype) == "datetime64[ms, UTC]"
    assert list(got[TIME]) == [utc("2024-01-31 23:58"), utc("2024-01-31 23:59"), utc("2024-02-01 00:00"), utc("2024-02-01 00:01")]
    whole = bhds.load("spot", "XUSDT", data_dir=layout.root)
    assert len(whole) == 240 and whole["close"].tolist() == early["close"].tolist() + late["close"].tolist()
    cov = bhds.coverage("spot", data_dir=layout.root).iloc[0]
    assert (cov["first"], cov["last"], cov["rows"], cov["files"]) == (utc("2024-01-31 22:00"), utc("2024-02-03 00:59"), 240, 2)
    monkeypatch.setitem(sys.modules, "polars", None)
    with pytest.raises(BhdsError, match=r"^load_polars needs polars: pip install polars"):
        bhds.load_polars("spot", "XUSDT", data_dir=layout.root)
