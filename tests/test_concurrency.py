"""Two bhds processes on the same data directory: the second waits or exits clearly when both would
write the same files (or one rewrites what the other reads), and runs side by side otherwise."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from bhds.paths import FUNDING, KLINES, Layout, lock_name
from bhds.storage import stage_lock
from bhds.types import TradeType
from tests.conftest import store_after

REPO = Path(__file__).resolve().parent.parent
GEN = ["generate", "kline-type", "spot", "1m", "--split-gaps", "--with-vwap", "--no-with-funding-rates"]
PARSE_SPOT_1M = lock_name("parse", TradeType.spot, KLINES, "1m")
GENERATE_SPOT_1M = lock_name("generate", TradeType.spot, KLINES, "1m")


def bhds(argv: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(REPO / "bhds.py"), *argv], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def parsed_root(default_archive: Path, tmp_path_factory: pytest.TempPathFactory):
    return store_after(default_archive, tmp_path_factory.mktemp("concurrency"), [
        ["aws_kline", "download-spot", "1m"], ["aws_kline", "verify-type-all", "spot", "1m"],
        ["aws_kline", "parse-type-all", "spot", "1m"]])


def test_busy_stage_names_the_holder(parsed_root, tmp_path: Path) -> None:
    base, env = parsed_root
    with stage_lock(Layout(base / "binance_data"), PARSE_SPOT_1M):
        proc = bhds(["aws_kline", "parse-type-all", "spot", "1m"], dict(env, BHDS_LOCK_TIMEOUT="0"))
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 75
    assert f"PID {os.getpid()}" in err and "Traceback" not in err
    assert len([line for line in err.splitlines() if line.startswith("bhds: error:")]) == 1


def test_second_process_waits_within_the_timeout(parsed_root) -> None:
    base, env = parsed_root
    layout = Layout(base / "binance_data")
    held = threading.Event()

    def hold() -> None:
        with stage_lock(layout, PARSE_SPOT_1M):
            held.set()
            time.sleep(2.0)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait()
    started = time.monotonic()
    proc = bhds(["aws_kline", "parse-type-all", "spot", "1m"], dict(env, BHDS_LOCK_TIMEOUT="60"))
    _, err = proc.communicate(timeout=120)
    holder.join()
    assert proc.returncode == 0, err
    assert time.monotonic() - started >= 1.0


def test_two_simultaneous_generates_leave_one_clean_result(parsed_root, tmp_path: Path) -> None:
    base, env = parsed_root
    root = tmp_path / "crypto"
    shutil.copytree(base, root)
    env = dict(env, CRYPTO_BASE_DIR=str(root), BHDS_LOCK_TIMEOUT="120")
    procs = [bhds(GEN, env) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-1500:] for o in outs]
    results = root / "binance_data/results_data/spot/klines/1m"
    first = {p.name: pd.read_parquet(p) for p in sorted(results.glob("*.pqt"))}
    # A single run on a fresh copy gives the same files and content.
    solo_root = tmp_path / "solo"
    shutil.copytree(base, solo_root)
    proc = bhds(GEN, dict(env, CRYPTO_BASE_DIR=str(solo_root)))
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    solo = {p.name: pd.read_parquet(p) for p in sorted((solo_root / "binance_data/results_data/spot/klines/1m").glob("*.pqt"))}
    assert list(first) == list(solo) and first
    for name, frame in solo.items():
        pd.testing.assert_frame_equal(first[name], frame, check_exact=True)
    leftovers = [p for p in results.parent.iterdir() if p.name != "1m"]
    assert leftovers == []


def test_resample_waits_for_kline_type_and_readers_share(parsed_root) -> None:
    """Resampling reads the 1m results: not while `kline-type 1m` rewrites them, but beside another resample."""
    base, env = parsed_root
    layout = Layout(base / "binance_data")
    quick = dict(env, BHDS_LOCK_TIMEOUT="0")
    with stage_lock(layout, GENERATE_SPOT_1M):  # a kline-type 1m run in progress
        proc = bhds(["generate", "resample-type", "spot", "1h", "5m"], quick)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 75, err
    assert f"PID {os.getpid()}" in err and GENERATE_SPOT_1M in err and "Traceback" not in err

    with stage_lock(layout, GENERATE_SPOT_1M, shared=True):  # a resample of another interval reading
        reader = bhds(["generate", "resample-type", "spot", "1h", "5m"], quick)
        _, reader_err = reader.communicate(timeout=300)
        writer = bhds(GEN, quick)
        _, writer_err = writer.communicate(timeout=120)
    assert reader.returncode == 0, reader_err
    assert writer.returncode == 75 and "other bhds processes are reading" in writer_err


def _wait_for_holder(lock_file: Path, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    """Until `proc` holds the lock (a writer records its PID in the lock file)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if lock_file.exists() and lock_file.read_text().strip() == str(proc.pid):
            return
        time.sleep(0.05)
    raise AssertionError(f"{proc.args} never took {lock_file.name} (exit {proc.poll()}): {proc.communicate()[1][-1500:]}")


def test_funding_and_kline_downloads_of_one_market_run_side_by_side(fake_binance, bhds_env, data_root: Path) -> None:
    """They write different folders; both also record their files in the one state database at once."""
    env = dict(os.environ, **bhds_env, BHDS_LOCK_TIMEOUT="0")
    layout = Layout(data_root / "binance_data")
    fake_binance.faults.latency = 1.0  # every request waits: the kline download lasts several seconds
    klines = bhds(["aws_kline", "download-um-futures", "1m"], env)
    _wait_for_holder(layout.lock_file(lock_name("archive", TradeType.um_futures, KLINES, "1m")), klines)
    funding = bhds(["aws_funding", "download-um-futures"], env)
    funding_out, funding_err = funding.communicate(timeout=300)
    overlapped = klines.poll() is None  # the funding run started and ended while the kline run held its lock
    klines_out, klines_err = klines.communicate(timeout=300)
    assert funding.returncode == 0, funding_err[-1500:]
    assert klines.returncode == 0, klines_err[-1500:]
    assert overlapped
    # Both wrote their files and recorded every one in the shared state database.
    conn = sqlite3.connect(layout.state_db)
    try:
        for out, prefix in ((funding_out, "data/futures/um/monthly/fundingRate/"), (klines_out, "data/futures/um/daily/klines/")):
            fetched = int(re.search(r" files=(\d+) ", out).group(1))
            recorded = conn.execute("SELECT count(*) FROM archive_files WHERE key LIKE ?", (prefix + "%",)).fetchone()[0]
            assert fetched > 0 and recorded == fetched, (out, recorded)
    finally:
        conn.close()


def test_runs_that_share_outputs_still_exclude_each_other(parsed_root) -> None:
    """Download and verify of one interval (verify deletes what download writes); parse of one interval."""
    base, env = parsed_root
    layout = Layout(base / "binance_data")
    quick = dict(env, BHDS_LOCK_TIMEOUT="0")
    with stage_lock(layout, lock_name("archive", TradeType.spot, KLINES, "1m")):
        verify = bhds(["aws_kline", "verify-type-all", "spot", "1m"], quick)
        _, verify_err = verify.communicate(timeout=120)
        other = bhds(["aws_funding", "verify-type-all", "um_futures"], quick)  # another dataset: free
        _, other_err = other.communicate(timeout=120)
    assert verify.returncode == 75 and "archive-spot-klines-1m" in verify_err, verify_err
    assert other.returncode == 0, other_err
    with stage_lock(layout, lock_name("parse", TradeType.spot, KLINES, "1h")):  # a parse of 1h in progress
        parse_1h = bhds(["aws_kline", "parse-type-all", "spot", "1h", "1m"], quick)
        _, err_1h = parse_1h.communicate(timeout=120)
        parse_1m = bhds(["aws_kline", "parse-type-all", "spot", "1m"], quick)  # another interval: free
        _, err_1m = parse_1m.communicate(timeout=120)
    assert parse_1h.returncode == 75 and "parse-spot-klines-1h" in err_1h, err_1h
    assert parse_1m.returncode == 0, err_1m
    with stage_lock(layout, lock_name("parse", TradeType.um_futures, FUNDING)):
        funding = bhds(["aws_funding", "parse-type-all", "um_futures"], quick)
        _, funding_err = funding.communicate(timeout=120)
    assert funding.returncode == 75 and "parse-um_futures-funding" in funding_err, funding_err
