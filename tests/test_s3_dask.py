"""Both halves of #16 at once: the data root in a bucket (moto's S3 server) AND the work on a real
Dask cluster (worker processes). The five scripts give, value by value, what the local pool gives
on the same archive; a worker SIGKILLed mid-task and a client SIGKILLed mid-run leave the bucket
whole (a readable generation, no temp files, no leases) and the run, or its re-run, converges.

One LocalCluster (test_dask's fixture) and one moto server (the session's) serve the module.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import pytest
from distributed import get_task_stream

from bhds.cli import main
from bhds.objstore.manifest import read_manifest
from bhds.objstore.store import open_store
from bhds.paths import TEMP_MARKER
from bhds.workflows import generate
from tests.conftest import fake_on_copy
from tests.test_dask import TASK_PREFIX, _die_once
from tests.test_e2e_scripts import SCRIPTS, pipeline, run_scripts  # noqa: F401  (pipeline: a fixture)
from tests.test_e2e_store import (access, assert_bucket_clean, assert_klines_equal, assert_same_values, bucket_keys,
                                  local_result, local_run, published_copy, s3_client)  # noqa: F401  (local_run: a fixture)

REPO = Path(__file__).resolve().parent.parent
TREE = "results_data/spot"
# A generate whose results differ from the scripts' (no VWAP): every symbol is rebuilt, as tasks.
REGENERATE = ("generate", "kline-type", "spot", "1m", "--no-with-vwap", "--no-with-funding-rates")


@pytest.fixture(scope="module")
def cluster(s3_server):
    """A real scheduler with two worker processes of one thread each, and a client to watch it. The
    workers (and any a nanny restarts) have the bucket's variables, as on a real cluster: tasks carry
    the store's URL and endpoint, never its keys."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                      env=dict(s3_server.env)) as local, Client(local) as client:
        yield local, client


@pytest.fixture(scope="module")
def s3_dask_run(default_archive: Path, tmp_path_factory: pytest.TempPathFactory, s3_server, cluster):  # noqa: F811
    """The five scripts with CRYPTO_BASE_DIR=s3://... and DASK_SCHEDULER_ADDRESS at the module's cluster."""
    local_cluster, client = cluster
    work = tmp_path_factory.mktemp("e2e-s3-dask")
    url = f"s3://{s3_server.new_bucket()}/store"
    fake, env = fake_on_copy(default_archive, work)
    env.update(s3_server.env, CRYPTO_BASE_DIR=url, BHDS_WORK_DIR=str(work / "working-copy"), BHDS_LEASE_SECONDS="20",
               DASK_SCHEDULER_ADDRESS=local_cluster.scheduler_address)
    try:
        with get_task_stream(client) as stream:
            procs = run_scripts(env)
    finally:
        fake.stop()
    tasks = [record for record in stream.data if str(record["key"]).startswith(TASK_PREFIX)]
    return url, procs, env, tasks


def clone_store(url: str, server) -> str:  # noqa: ANN001
    """A copy of the store at `url` in a fresh bucket (keys inside a store are relative to its prefix)."""
    bucket, prefix = url[len("s3://"):].split("/", 1)
    target = server.new_bucket()
    client = s3_client(server)
    for key in bucket_keys(url, server):
        client.copy_object(Bucket=target, Key=key, CopySource={"Bucket": bucket, "Key": key})
    return f"s3://{target}/{prefix}"


def test_the_five_scripts_on_dask_with_a_bucket_root_equal_a_local_run(s3_dask_run, local_run, s3_server, cluster,  # noqa: F811
                                                                        tmp_path: Path) -> None:
    url, procs, _, tasks = s3_dask_run
    for script, proc in zip(SCRIPTS, procs):
        assert proc.returncode == 0, f"{script} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
        assert "Traceback" not in proc.stderr
        assert all(" failed=0 " in line for line in proc.stdout.strip().splitlines()), proc.stdout
    # The per-item work ran as tasks on the cluster's own worker processes, not in the client.
    assert len(tasks) > 50
    assert {record["worker"] for record in tasks} <= set(cluster[1].scheduler_info()["workers"])
    published = published_copy(url, s3_server, tmp_path / "reader")
    assert_same_values(local_run, published)
    mirror = lambda root: sorted(p.relative_to(root).as_posix() for p in (root / "aws_data").rglob("*") if p.is_file())  # noqa: E731
    assert mirror(published) == mirror(local_run)
    assert_bucket_clean(url, s3_server)


def test_a_worker_killed_mid_task_with_a_bucket_root(s3_dask_run, local_run, s3_server, cluster, tmp_path: Path,  # noqa: F811
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """BTCUSDT's first attempt leaves a half-written temp file in the working copy and SIGKILLs its
    worker; Dask re-runs it elsewhere, the run publishes the local result and no temp file."""
    regenerate_with_a_worker_killed(s3_dask_run[0], s3_dask_run[2], cluster[0].scheduler_address, tmp_path / "working-copy",
                                    local_run, s3_server, tmp_path, monkeypatch)


def regenerate_with_a_worker_killed(store_url: str, env: dict[str, str], scheduler: str, work_dir: Path, local_run: Path,  # noqa: F811
                                    s3_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    """REGENERATE on a clone of the store at `store_url`, on `scheduler`, with BTCUSDT's first attempt
    SIGKILLing its worker (`_die_once`): the run finishes, the bucket holds the local result and is clean."""
    url = clone_store(store_url, s3_server)
    markers = tmp_path / "markers"
    markers.mkdir()
    monkeypatch.setattr(generate, "run_kline_job", partial(_die_once, markers, generate.run_kline_job))
    for key in ("CRYPTO_NJOBS", "BHDS_NOW", "BHDS_LEASE_SECONDS", *s3_server.env):
        monkeypatch.setenv(key, env[key])
    monkeypatch.setenv("CRYPTO_BASE_DIR", url)
    monkeypatch.setenv("BHDS_WORK_DIR", str(work_dir))
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", scheduler)
    with pytest.raises(SystemExit) as stopped:
        main(list(REGENERATE))
    assert stopped.value.code == 0
    killed = int((markers / "BTCUSDT").read_text())
    assert killed != os.getpid()  # a worker process died, and yet the run finished
    assert_klines_equal(local_result(local_run, env, REGENERATE, tmp_path / "local"),
                        published_copy(url, s3_server, tmp_path / "reader"))
    assert_bucket_clean(url, s3_server)


def test_a_client_killed_mid_run_on_dask_then_rerun(s3_dask_run, local_run, s3_server, cluster, tmp_path: Path) -> None:  # noqa: F811
    """SIGKILL the command while its tasks run on the cluster: the previous generation stays whole
    and readable; the same command again (its dead lease taken over) publishes the local result."""
    _, _, env, _ = s3_dask_run
    url = clone_store(s3_dask_run[0], s3_server)
    env = dict(env, CRYPTO_BASE_DIR=url, BHDS_WORK_DIR=str(tmp_path / "working-copy"))
    store = open_store(url, access(s3_server))
    old = read_manifest(store, TREE)
    client = cluster[1]
    killed = subprocess.Popen([sys.executable, str(REPO / "bhds.py"), *REGENERATE], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while killed.poll() is None and time.monotonic() < deadline:
            running = [key for keys in client.processing().values() for key in keys if str(key).startswith(TASK_PREFIX)]
            if running:
                os.kill(killed.pid, signal.SIGKILL)
                break
            time.sleep(0.05)
        assert killed.wait(60) == -signal.SIGKILL, killed.stderr.read()[-2000:]
    finally:
        if killed.poll() is None:
            killed.kill()
    now = read_manifest(store, TREE)
    assert now == old
    reader = published_copy(url, s3_server, tmp_path / "reader")
    for name, obj in now.objects.items():  # every listed object is there, whole
        assert (reader / TREE / name).stat().st_size == obj["size"]
    proc = subprocess.run([sys.executable, str(REPO / "bhds.py"), *REGENERATE], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert read_manifest(store, TREE).generation == old.generation + 1
    assert_klines_equal(local_result(local_run, env, REGENERATE, tmp_path / "local"),
                        published_copy(url, s3_server, tmp_path / "reader2"))
    assert_bucket_clean(url, s3_server)


@pytest.fixture
def blind_scheduler(tmp_path: Path):
    """A scheduler whose one worker runs in its own mount namespace with an empty tmpfs over
    `tmp_path/hidden`: another machine's view of that folder. Yields (address, hidden folder)."""
    from distributed import Client, LocalCluster

    hidden = tmp_path / "hidden"
    hidden.mkdir()
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "mount", "-t", "tmpfs", "tmpfs", str(hidden)],
                           capture_output=True)
    if probe.returncode != 0:
        pytest.skip("needs mount namespaces (unshare --mount) to give a worker its own filesystem view")
    with LocalCluster(n_workers=0, processes=True, dashboard_address=":0") as local, Client(local) as client:
        worker = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                                   f'mount -t tmpfs tmpfs "$0" && exec "$1" -m distributed.cli.dask_worker "$2" '
                                   "--nthreads 1 --no-nanny --no-dashboard",
                                   str(hidden), sys.executable, local.scheduler_address],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            client.wait_for_workers(1, timeout=60)
            yield local.scheduler_address, hidden
        finally:
            worker.terminate()
            worker.wait(30)


def test_with_a_local_root_workers_that_do_not_see_it_stop_the_run_before_any_task(s3_dask_run, local_run,  # noqa: F811
                                                                                     blind_scheduler) -> None:
    """With a local root there is no bucket to carry outputs: a remote worker writing into its own
    folder of that name would report success for outputs nobody sees. The command says so in one
    line and writes nothing. (With a bucket root such workers work in copies of their own:
    tests/test_dask_remote.py.)"""
    address, hidden = blind_scheduler
    _, _, env, _ = s3_dask_run
    root = hidden / "crypto"
    shutil.copytree(local_run.parent, root, symlinks=True)
    before = {p: p.stat().st_mtime_ns for p in (root / "binance_data" / TREE).rglob("*") if p.is_file()}
    env = {k: v for k, v in env.items() if k != "BHDS_WORK_DIR"}
    env.update(CRYPTO_BASE_DIR=str(root), DASK_SCHEDULER_ADDRESS=address)
    proc = subprocess.run([sys.executable, str(REPO / "bhds.py"), *REGENERATE], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 1, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("bhds: error:")]
    assert len(lines) == 1 and "do not see the data folder" in lines[0] and str(root) in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert {p: p.stat().st_mtime_ns for p in (root / "binance_data" / TREE).rglob("*") if p.is_file()} == before
    assert not list(root.rglob(f"*{TEMP_MARKER}"))  # the probe is gone
