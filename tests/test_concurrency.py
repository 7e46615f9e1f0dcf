"""Two bhds processes on the same data directory and stage: the second waits or exits clearly."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from bhds.paths import Layout
from bhds.storage import stage_lock
from tests.conftest import fake_on_copy

REPO = Path(__file__).resolve().parent.parent
GEN = ["generate", "kline-type", "spot", "1m", "--split-gaps", "--with-vwap", "--no-with-funding-rates"]


def bhds(argv: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(REPO / "bhds.py"), *argv], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def parsed_root(default_archive: Path, tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("concurrency")
    fake, env = fake_on_copy(default_archive, work)
    base = Path(env["CRYPTO_BASE_DIR"])
    try:
        for argv in (["aws_kline", "download-spot", "1m"], ["aws_kline", "verify-type-all", "spot", "1m"],
                     ["aws_kline", "parse-type-all", "spot", "1m"]):
            proc = bhds(argv, env)
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err
    finally:
        fake.stop()
    return base, env


def test_busy_stage_names_the_holder(parsed_root, tmp_path: Path) -> None:
    base, env = parsed_root
    with stage_lock(Layout(base / "binance_data"), "parse-spot"):
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
        with stage_lock(layout, "parse-spot"):
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
    with stage_lock(layout, "generate-kline-spot-1m"):  # a kline-type 1m run in progress
        proc = bhds(["generate", "resample-type", "spot", "1h", "5m"], quick)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 75, err
    assert f"PID {os.getpid()}" in err and "generate-kline-spot-1m" in err and "Traceback" not in err

    with stage_lock(layout, "generate-kline-spot-1m", shared=True):  # a resample of another interval reading
        reader = bhds(["generate", "resample-type", "spot", "1h", "5m"], quick)
        _, reader_err = reader.communicate(timeout=300)
        writer = bhds(GEN, quick)
        _, writer_err = writer.communicate(timeout=120)
    assert reader.returncode == 0, reader_err
    assert writer.returncode == 75 and "other bhds processes are reading" in writer_err
