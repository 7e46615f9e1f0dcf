"""End to end: the five shell scripts, exactly as shipped, in order, against the fake Binance.

The final `results_data` is checked against values computed here straight from the synthetic
series (tests.fakebinance.series), not from anything bhds wrote: row counts, OHLC of chosen bars,
gap-filled rows, the gap split, funding sums and resample offsets.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import fake_on_copy
from tests.fakebinance import default_universe, funding_rows, klines, start_in_thread
from tests.fakebinance.universe import day_ms

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = ["aws_download.sh", "aws_parse.sh", "api_download.sh", "gen_kline.sh", "resample.sh"]
UNIVERSE = default_universe()
NOW = UNIVERSE.now_ms
FIRST_DAY, LAST_FULL_DAY = date(2024, 12, 25), date(2025, 1, 12)  # yesterday of `now` (2025-01-13)
MIN = 60_000


def run_scripts(env: dict[str, str]) -> list[subprocess.CompletedProcess]:
    procs = []
    for script in SCRIPTS:
        args = ["bash", str(REPO / "scripts" / script)] + (["1m"] if script != "resample.sh" else [])
        procs.append(subprocess.run(args, env=env, capture_output=True, text=True, timeout=600))
    return procs


@pytest.fixture(scope="module")
def pipeline(default_archive: Path, tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("e2e")
    fake, env = fake_on_copy(default_archive, work)
    try:
        procs = run_scripts(env)
    finally:
        fake.stop()
    return work / "crypto" / "binance_data", procs, env


def series(market: str, symbol: str) -> dict[str, np.ndarray]:
    """The symbol's 1m bars the pipeline can know: first archive day .. yesterday."""
    spec = UNIVERSE.spec(market, symbol)
    return klines(spec, "1m", day_ms(FIRST_DAY), day_ms(LAST_FULL_DAY) + 86_400_000, now_ms=NOW)


def filled_grid(bars: dict[str, np.ndarray], start: int, end: int) -> pd.DataFrame:
    """Independent re-statement of the contract's fill: traded bars as they are, every other
    minute a flat candle at the previous close with zero volume."""
    traded = bars["volume"] > 0
    frame = pd.DataFrame({k: bars[k][traded] for k in ("open", "high", "low", "close", "volume", "quote_volume")},
                         index=bars["open_time"][traded])
    frame = frame[(frame.index >= start) & (frame.index <= end)]
    grid = frame.reindex(np.arange(start, end + 1, MIN))
    grid["close"] = grid["close"].ffill()
    for col in ("open", "high", "low"):
        grid[col] = grid[col].fillna(grid["close"])
    return grid.fillna({"volume": 0.0, "quote_volume": 0.0})



def ms_index(frame: pd.DataFrame) -> np.ndarray:
    return frame["candle_begin_time"].dt.tz_convert(None).to_numpy().astype("datetime64[ms]").astype(np.int64)


def test_every_script_succeeds(pipeline) -> None:
    _, procs, _ = pipeline
    for script, proc in zip(SCRIPTS, procs):
        assert proc.returncode == 0, f"{script} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
        assert "Traceback" not in proc.stderr


def test_spot_btcusdt_is_the_series_with_its_hole_filled(pipeline) -> None:
    data, _, _ = pipeline
    bars = series("spot", "BTCUSDT")
    traded = bars["open_time"][bars["volume"] > 0]
    start, end = int(traded[0]), int(traded[-1])
    result = pd.read_parquet(data / "results_data/spot/klines/1m/BTCUSDT.pqt")
    assert list(result.columns) == ["candle_begin_time", "open", "high", "low", "close", "volume", "quote_volume", "trade_num",
                                    "taker_buy_base_asset_volume", "taker_buy_quote_asset_volume", "avg_price_1m"]
    times = ms_index(result)
    assert len(result) == (end - start) // MIN + 1
    assert times[0] == start and times[-1] == end and np.all(np.diff(times) == MIN)
    expected = filled_grid(bars, start, end)
    for col in ("open", "high", "low", "close", "volume", "quote_volume"):
        np.testing.assert_allclose(result[col].to_numpy(), expected[col].to_numpy(), rtol=1e-12, err_msg=col)
    # The 90-minute hole of 2025-01-02 02:00-03:30 is flat, zero-volume, at the 01:59 close.
    hole = (times >= day_ms(date(2025, 1, 2)) + 120 * MIN) & (times < day_ms(date(2025, 1, 2)) + 210 * MIN)
    assert hole.sum() == 90
    assert (result["volume"][hole] == 0).all()
    assert result["open"][hole].nunique() == 1
    vwap = result["avg_price_1m"]
    assert ((vwap >= result["low"] - 1e-9) & (vwap <= result["high"] + 1e-9)).all()
    # Days after the archive (2025-01-11, -12) came from the API; today (unfinished) did not.
    assert times[-1] < day_ms(date(2025, 1, 13))
    assert (times >= day_ms(date(2025, 1, 12))).sum() > 1000


def test_api_filled_the_archive_missing_days_exactly(pipeline) -> None:
    data, _, _ = pipeline
    bars = series("spot", "ETHUSDT")
    for day in (date(2024, 12, 28), date(2025, 1, 3), date(2025, 1, 4)):
        api = pd.read_parquet(data / f"api_data/spot/klines/ETHUSDT/1m/{day:%Y%m%d}.pqt")
        in_day = (bars["open_time"] >= day_ms(day)) & (bars["open_time"] < day_ms(day) + 86_400_000)
        assert len(api) == in_day.sum() == 1440
        np.testing.assert_allclose(api["close"].to_numpy(), bars["close"][in_day])
    assert not (data / "api_data/spot/klines/ETHUSDT/1m/20250113.pqt").exists()


def test_luna_is_split_at_the_halt(pipeline) -> None:
    data, _, _ = pipeline
    names = sorted(p.name for p in (data / "results_data/spot/klines/1m").glob("*LUNAUSDT.pqt"))
    assert names == ["LUNAUSDT.pqt", "SP0_LUNAUSDT.pqt"]
    bars = series("spot", "LUNAUSDT")
    traded = bars["open_time"][bars["volume"] > 0]
    halt_start, halt_end = day_ms(date(2025, 1, 2)), day_ms(date(2025, 1, 5))
    before, after = traded[traded < halt_start], traded[traded >= halt_end]
    sp0 = ms_index(pd.read_parquet(data / "results_data/spot/klines/1m/SP0_LUNAUSDT.pqt"))
    last = ms_index(pd.read_parquet(data / "results_data/spot/klines/1m/LUNAUSDT.pqt"))
    assert (sp0[0], sp0[-1]) == (before[0], before[-1])
    assert (last[0], last[-1]) == (after[0], after[-1])


def test_um_funding_lands_on_its_candles_and_sums(pipeline) -> None:
    data, _, _ = pipeline
    result = pd.read_parquet(data / "results_data/um_futures/klines/1m/BTCUSDT.pqt")
    times = ms_index(result)
    spec = UNIVERSE.spec("um", "BTCUSDT")
    events = funding_rows(spec, int(times[0]), int(times[-1]) + MIN, now_ms=NOW)
    rates = events.rate / 1e8
    hours = (events.time_ms // 3_600_000) * 3_600_000
    assert len(events) > 40
    on = pd.Series(result["funding_rate"].to_numpy(), index=times)
    np.testing.assert_allclose(on.loc[hours].to_numpy(), rates, rtol=1e-12)
    np.testing.assert_allclose(result["funding_rate"].sum(), rates.sum(), rtol=1e-9)
    assert (result["funding_rate"] != 0).sum() == len(events)


def test_resampled_offsets_and_bars(pipeline) -> None:
    data, _, _ = pipeline
    base = data / "results_data"
    assert sorted(p.name for p in (base / "spot/resampled_klines/1h").iterdir()) == sorted(f"{m}m" for m in range(0, 60, 5))
    assert [p.name for p in (base / "spot/resampled_klines/5m").iterdir()] == ["0m"]
    assert not (base / "cm_futures/resampled_klines/5m").exists()
    # One 1h bar at offset 35m, recomputed from the series.
    bars = series("spot", "BTCUSDT")
    traded = bars["open_time"][bars["volume"] > 0]
    grid = filled_grid(bars, int(traded[0]), int(traded[-1]))
    window = day_ms(date(2025, 1, 6)) + 10 * 3_600_000 + 35 * MIN
    chunk = grid.loc[window: window + 59 * MIN]
    hourly = pd.read_parquet(base / "spot/resampled_klines/1h/35m/BTCUSDT.pqt")
    row = hourly[ms_index(hourly) == window].iloc[0]
    assert row["open"] == chunk["open"].iloc[0] and row["close"] == chunk["close"].iloc[-1]
    assert row["high"] == chunk["high"].max() and row["low"] == chunk["low"].min()
    np.testing.assert_allclose(row["volume"], chunk["volume"].sum(), rtol=1e-12)
    # Incomplete windows are dropped: every bar is a whole hour after the first full window.
    starts = ms_index(hourly)
    assert np.all((starts - 35 * MIN) % 3_600_000 == 0)
    assert starts[0] >= traded[0] and starts[-1] + 3_600_000 - MIN <= traded[-1]


def test_um_funding_survives_every_offset(pipeline) -> None:
    """Funding inside a window is summed into it, at 0m and at 35m alike (legacy lost it at 35m)."""
    data, _, _ = pipeline
    minute = pd.read_parquet(data / "results_data/um_futures/klines/1m/BTCUSDT.pqt")
    times = ms_index(minute)
    for offset in (0, 35):
        hourly = pd.read_parquet(data / f"results_data/um_futures/resampled_klines/1h/{offset}m/BTCUSDT.pqt")
        starts = ms_index(hourly)
        covered = (times >= starts[0]) & (times < starts[-1] + 3_600_000)
        np.testing.assert_allclose(hourly["funding_rate"].sum(), minute["funding_rate"][covered].sum(), rtol=1e-9)
        assert (hourly["funding_rate"] != 0).sum() > 40


def _readme_examples() -> list[str]:
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Reading the results"):]
    section = section[: section.index("\n## ", 1)]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


@pytest.mark.parametrize("library", ["pandas", "polars", "duckdb"])
def test_readme_examples_read_the_results(pipeline, tmp_path: Path, library: str) -> None:
    """Each "Reading the results" example runs as printed, against this pipeline's store (as ~/crypto_data)."""
    data, _, _ = pipeline
    examples = {code.split("import ")[-1].split()[0].split(".")[0]: code for code in _readme_examples()}
    assert sorted(examples) == ["duckdb", "pandas", "polars"]
    if importlib.util.find_spec(library) is None:
        pytest.skip(f"{library} is not installed")
    home = tmp_path / "home"
    home.mkdir()
    (home / "crypto_data").symlink_to(data.parent)
    proc = subprocess.run([sys.executable, "-c", examples[library]], env=dict(os.environ, HOME=str(home)),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_second_run_changes_nothing(pipeline) -> None:
    """Everything already there: the scripts succeed again and the results are byte-for-byte content-equal."""
    data, _, env = pipeline
    before = {p: pd.read_parquet(p) for p in sorted((data / "results_data").rglob("*.pqt"))}
    bucket = Path(env["CRYPTO_BASE_DIR"]).parent / "bucket"
    fake = start_in_thread(bucket)
    try:
        procs = run_scripts(dict(env, **fake.env))
    finally:
        fake.stop()
    for script, proc in zip(SCRIPTS, procs):
        assert proc.returncode == 0, f"{script}: {proc.stderr[-2000:]}"
    after = {p: pd.read_parquet(p) for p in sorted((data / "results_data").rglob("*.pqt"))}
    assert list(after) == list(before)
    for path, frame in before.items():
        pd.testing.assert_frame_equal(after[path], frame, check_exact=True)
    assert not [p for p in data.rglob("*") if p.name.endswith((".part", ".bhds-tmp"))]


def test_quiet_for_cron(pipeline) -> None:
    """Without a terminal: no progress-bar noise, and exactly one summary line per command on stdout."""
    _, procs, _ = pipeline
    commands_per_script = {"aws_download.sh": 10, "aws_parse.sh": 5, "api_download.sh": 5, "gen_kline.sh": 3, "resample.sh": 5}
    for script, proc in zip(SCRIPTS, procs):
        assert "\r" not in proc.stderr and "it/s" not in proc.stderr, script
        lines = proc.stdout.strip().splitlines()
        assert len(lines) == commands_per_script[script], (script, lines)
        assert all(" failed=0 " in line and line.rstrip().endswith("s") for line in lines), lines


@pytest.fixture(scope="module")
def faulty_pipeline(default_archive: Path, tmp_path_factory: pytest.TempPathFactory):
    """The same five scripts while the server misbehaves: 5% 5xx, 2% cut-off bodies, latency, 8% of REST answers 429."""
    work = tmp_path_factory.mktemp("e2e-faults")
    fake, env = fake_on_copy(default_archive, work, seed=11, error_rate=0.05, truncate_rate=0.02, latency=0.003, throttle_rate=0.08)
    try:
        procs = run_scripts(env)
    finally:
        fake.stop()
    return work / "crypto" / "binance_data", procs, fake.stats


def _parquet_tree(root: Path) -> dict[str, pd.DataFrame]:
    return {p.relative_to(root).as_posix(): pd.read_parquet(p) for p in sorted(root.rglob("*.pqt"))}


def test_faults_end_with_exactly_the_clean_results(pipeline, faulty_pipeline) -> None:
    clean, _, _ = pipeline
    faulty, procs, stats = faulty_pipeline
    for script, proc in zip(SCRIPTS, procs):
        assert proc.returncode == 0, f"{script} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    # The faults really happened...
    assert stats.sent_5xx > 20 and stats.truncations > 5 and stats.sent_429 > 0
    # ...Retry-After was honoured (a request already in flight when a 429 is sent may still land) and nobody got banned.
    assert stats.sent_418 == 0 and stats.violations <= stats.sent_429
    for tree in ("parsed_data", "api_data", "results_data"):
        expected, actual = _parquet_tree(clean / tree), _parquet_tree(faulty / tree)
        assert list(actual) == list(expected), tree
        for name, frame in expected.items():
            pd.testing.assert_frame_equal(actual[name], frame, check_exact=True, obj=name)
    mirror = sorted(p.relative_to(clean).as_posix() for p in (clean / "aws_data").rglob("*") if p.is_file())
    assert mirror == sorted(p.relative_to(faulty).as_posix() for p in (faulty / "aws_data").rglob("*") if p.is_file())
    assert not [p for p in faulty.rglob("*") if p.name.endswith((".part", ".bhds-tmp"))]
