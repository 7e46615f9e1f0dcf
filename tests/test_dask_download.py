"""Archive downloads on a real Dask cluster: batches of files fetched by worker processes give the
mirror of a pool run (files, CHECKSUMs, markers, manifest rows), the same failures under faults,
and the same mirror when a worker is SIGKILLed in the middle of a batch.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
from dataclasses import replace
from functools import partial
from pathlib import Path

import pytest
from distributed import get_task_stream

from bhds.archive import remote
from bhds.paths import Layout, part_path
from tests.conftest import fake_on_copy
from tests.test_archive import fast_retries, leftovers, run  # noqa: F401  (fast_retries: a fixture)
from tests.test_dask import TASK_PREFIX, bhds, cluster  # noqa: F401  (cluster: a fixture)

SPOT = ["aws_kline", "download-spot", "1m"]
UM_RANGE = ["archive", "download", "um_futures", "klines", "--interval", "1m", "--start", "2025-01-02"]
BTC_KLINES = "data/spot/daily/klines/BTCUSDT/1m/"
TASKS = re.compile(r"fetching (\d+) file\(s\) in (\d+) Dask task\(s\)")


def mirror_state(root: Path) -> tuple[dict[str, bytes], list[tuple]]:
    """Every file of the mirror (zips, CHECKSUMs, `.verified` markers) with its bytes, and the manifest rows."""
    aws = root / "binance_data" / "aws_data"
    files = {str(p.relative_to(aws)): p.read_bytes() for p in sorted(aws.rglob("*")) if p.is_file()}
    with sqlite3.connect(root / "binance_data" / ".bhds" / "state.sqlite") as conn:
        rows = conn.execute("SELECT * FROM archive_files ORDER BY key").fetchall()
    return files, rows


def summary_line(stdout: str) -> str:
    """The run's summary line without its duration."""
    return re.sub(r" time=\S+", "", stdout.strip().splitlines()[-1])


def on_workers(stream: list[dict]) -> list[dict]:
    return [record for record in stream if str(record["key"]).startswith(TASK_PREFIX)]


def test_a_download_on_the_cluster_equals_a_pool_run_and_a_second_run_fetches_nothing(
        default_archive: Path, cluster, tmp_path: Path) -> None:  # noqa: F811
    local_cluster, client = cluster
    fake, env = fake_on_copy(default_archive, tmp_path)
    env.pop("DASK_SCHEDULER_ADDRESS", None)
    states, lines = {}, {}
    try:
        for name, changes, flag in (("pool", {}, []), ("dask", {"DASK_SCHEDULER_ADDRESS": local_cluster.scheduler_address}, []),
                                    ("local2", {}, ["--scheduler", "local:2"])):
            root = tmp_path / name
            lines[name] = []
            for argv in (SPOT, UM_RANGE):
                with get_task_stream(client) as stream:
                    proc = bhds([*argv, *flag], env, CRYPTO_BASE_DIR=str(root), **changes)
                assert proc.returncode == 0, proc.stderr[-2000:]
                lines[name].append(summary_line(proc.stdout))
                if name == "pool":
                    assert not on_workers(stream.data) and not TASKS.search(proc.stderr)
                elif name == "dask":
                    # Every batch ran as a task on the cluster's workers, more than one of them.
                    files, tasks = map(int, TASKS.search(proc.stderr).groups())
                    assert files > 50 and tasks >= 2
                    assert len(on_workers(stream.data)) == tasks
                else:
                    assert "local Dask cluster of 2 worker process(es)" in proc.stderr and TASKS.search(proc.stderr)
            states[name] = mirror_state(root)
        # Run again on the cluster: everything is known, nothing is fetched, no task is submitted.
        with get_task_stream(client) as stream:
            again = bhds(SPOT, env, CRYPTO_BASE_DIR=str(tmp_path / "dask"), DASK_SCHEDULER_ADDRESS=local_cluster.scheduler_address)
        assert again.returncode == 0 and " files=0 " in again.stdout and not on_workers(stream.data), again.stderr[-2000:]
    finally:
        fake.stop()
    files, rows = states["pool"]
    assert sum(name.endswith(".verified") for name in files) > 50 and sum(name.endswith(".CHECKSUM") for name in files) > 50
    assert len(rows) == len([name for name in files if not name.endswith(".verified")])
    assert states["dask"] == states["pool"] and states["local2"] == states["pool"]
    assert lines["dask"] == lines["pool"] == lines["local2"]
    assert not leftovers(tmp_path / "dask")


FAULTS = {
    "seed": 11, "error_rate": 0.05, "truncate_rate": 0.03,
    # A zip and its CHECKSUM never published although listed, a zip (and CHECKSUM) failing every try: exit 3.
    "status_override": {f"/data.binance.vision/{BTC_KLINES}BTCUSDT-1m-2025-01-03.zip": 404,
                        f"/data.binance.vision/{BTC_KLINES}BTCUSDT-1m-2025-01-04.zip": 503},
}


def _in_process(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], root: Path, scheduler: str | None) -> None:
    for key in ("CRYPTO_NJOBS", "BHDS_NOW", "BHDS_AWS_URL", "BHDS_SPOT_API_URL", "BHDS_UM_API_URL", "BHDS_CM_API_URL"):
        monkeypatch.setenv(key, env[key])
    monkeypatch.setenv("CRYPTO_BASE_DIR", str(root))
    if scheduler is None:
        monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    else:
        monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", scheduler)


def test_faults_give_the_same_retries_failures_and_exit_code_on_the_cluster(
        default_archive: Path, cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys,
        fast_retries) -> None:  # noqa: F811
    local_cluster, client = cluster
    outcomes, states, served = {}, {}, {}
    for name, scheduler in (("pool", None), ("dask", local_cluster.scheduler_address)):
        # A fresh fake each time: its faults are seeded per URL and attempt, so both runs meet the same ones.
        fake, env = fake_on_copy(default_archive, tmp_path / name, **FAULTS)
        _in_process(monkeypatch, env, tmp_path / name / "crypto", scheduler)
        try:
            with get_task_stream(client) as stream:
                code, out, err = run(capsys, *SPOT, "--concurrency", "8")
        finally:
            fake.stop()
        assert bool(on_workers(stream.data)) == (name == "dask"), err[-2000:]
        assert fake.stats.sent_5xx > 0 and fake.stats.truncations > 0  # the faults did happen
        failures = sorted(line for line in err.splitlines() if line.startswith("bhds: failed:"))
        outcomes[name] = (code, summary_line(out), [line.replace(fake.url, "FAKE") for line in failures])
        served[name] = (dict(fake.stats.requests), fake.stats.sent_5xx, fake.stats.truncations)
        states[name] = mirror_state(tmp_path / name / "crypto")
    code, line, failures = outcomes["pool"]
    assert code == 3 and line.endswith(" failed=3") and len(failures) == 3
    assert "BTCUSDT-1m-2025-01-03.zip.CHECKSUM: listed but not published (HTTP 404)" in failures[0]
    assert "BTCUSDT-1m-2025-01-03.zip: listed but no longer published (HTTP 404)" in failures[1]
    assert "BTCUSDT-1m-2025-01-04.zip: download failed (HTTP 503 from " in failures[2]
    assert outcomes["dask"] == outcomes["pool"]
    # The same requests, URL by URL: every retry of the pool run happened on the workers too.
    assert served["dask"] == served["pool"]
    assert states["dask"] == states["pool"]


def _die_mid_batch(flag: Path, real, batch: remote.Batch) -> remote.BatchResult:  # noqa: ANN001
    """The first batch holding BTCUSDT zips installs half of them, leaves a `.part` and SIGKILLs its worker."""
    btc = [unit for unit in batch.units if f"/{BTC_KLINES}" in f"/{unit.main.key}"]
    if btc and not flag.exists():
        flag.write_text(str(os.getpid()))
        half = len(batch.units) // 2
        real(replace(batch, units=batch.units[:half]))
        doomed = Layout(batch.settings.data_dir).local_for_key(batch.units[half].main.key)
        doomed.parent.mkdir(parents=True, exist_ok=True)
        part_path(doomed).write_bytes(b"PK\x03\x04 cut off by the kill")
        os.kill(os.getpid(), signal.SIGKILL)
    return real(batch)


def test_a_worker_killed_mid_batch_is_retried_and_the_mirror_is_identical(
        default_archive: Path, cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # noqa: F811
    local_cluster, _ = cluster
    fake, env = fake_on_copy(default_archive, tmp_path)
    flag = tmp_path / "killed"
    states = {}
    try:
        for name in ("pool", "dask"):
            _in_process(monkeypatch, env, tmp_path / name, local_cluster.scheduler_address if name == "dask" else None)
            if name == "dask":
                # The real task function, run on the cluster's workers, behind one that kills its worker once.
                monkeypatch.setattr(remote, "fetch_batch", partial(_die_mid_batch, flag, remote.fetch_batch))
            code, out, err = run(capsys, *SPOT)
            assert code == 0, err[-2000:]
            states[name] = mirror_state(tmp_path / name)
    finally:
        fake.stop()
    killed = int(flag.read_text())
    assert killed != os.getpid()  # a worker process died mid-batch, and yet the run finished
    assert states["dask"] == states["pool"]
    assert not leftovers(tmp_path / "dask")


def test_a_download_on_dask_into_a_bucket_root_publishes_the_pool_mirror(default_archive: Path, s3_server,
                                                                          tmp_path: Path) -> None:
    """`--scheduler local:2` with CRYPTO_BASE_DIR=s3://...: the workers fetch into the client's working
    copy, which is then published; a fresh copy synced from the bucket equals a pool run's mirror."""
    from tests.test_e2e_store import published_copy

    fake, env = fake_on_copy(default_archive, tmp_path)
    env.pop("DASK_SCHEDULER_ADDRESS", None)
    url = f"s3://{s3_server.new_bucket()}/store"
    try:
        pool = bhds(SPOT, env, CRYPTO_BASE_DIR=str(tmp_path / "pool"))
        assert pool.returncode == 0, pool.stderr[-2000:]
        on_dask = bhds([*SPOT, "--scheduler", "local:2"], {**env, **s3_server.env}, CRYPTO_BASE_DIR=url,
                       BHDS_WORK_DIR=str(tmp_path / "work"))
        assert on_dask.returncode == 0, on_dask.stderr[-2000:]
        assert TASKS.search(on_dask.stderr), on_dask.stderr[-2000:]
    finally:
        fake.stop()
    assert summary_line(on_dask.stdout) == summary_line(pool.stdout)
    published_copy(url, s3_server, tmp_path / "reader")
    assert mirror_state(tmp_path / "reader") == mirror_state(tmp_path / "pool")
