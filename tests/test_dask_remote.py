"""Dask workers on "other machines": they do not see the client's working copy, and read and write the
bucket themselves (`bhds.objstore.detached`).

The scheduler and the worker processes are real (`dask scheduler`, `dask worker`), started by the
test; each worker runs in a mount namespace of its own (`unshare -m`) where the client's working
copy is an empty tmpfs: whatever a worker writes there, the client never sees, exactly as on
another machine. The five scripts must still give, value by value, what a local run gives, and
the client must never hold the bytes of what the workers built.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from bhds import paths
from bhds.objstore import lazy
from bhds.objstore.manifest import read_manifest
from bhds.objstore.store import open_store
from tests.conftest import fake_on_copy
from tests.test_e2e_scripts import SCRIPTS, pipeline, run_scripts  # noqa: F401  (pipeline: a fixture)
from tests.test_e2e_store import (access, assert_bucket_clean, assert_klines_equal, assert_same_values,  # noqa: F401
                                  local_run, published_copy)  # (local_run: a fixture)
from tests.test_s3_dask import clone_store, regenerate_with_a_worker_killed

pytest.importorskip("distributed")
WORKERS = 2


def _can_unshare() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", "mount -t tmpfs tmpfs /mnt"],
                           capture_output=True)
    return probe.returncode == 0


@pytest.fixture(scope="module")
def blind_cluster(tmp_path_factory: pytest.TempPathFactory, s3_server) -> Iterator[tuple[str, Path]]:
    """(scheduler address, a folder the workers cannot see: the working copies go below it).

    The workers have the bucket's variables in their environment, as on a real cluster: the client
    sends no keys with its tasks."""
    if not _can_unshare():
        pytest.skip("needs `unshare -m` and tmpfs mounts (root or user namespaces) to hide the client's folder")
    top = tmp_path_factory.mktemp("blind-cluster")
    work = top / "hidden"  # the tests' working copies go below it
    work.mkdir()
    scheduler_file = top / "scheduler.json"
    env = {**os.environ, **s3_server.env, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    scheduler = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
                                  "--dashboard-address", ":0", "--scheduler-file", str(scheduler_file)],
                                 env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    # Each worker's namespace has an empty tmpfs over the working copy: its own "disk" at that path.
    hide = 'mount -t tmpfs tmpfs "$0" && exec "$@"'
    workers = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", hide, str(work),
                                sys.executable, "-m", "distributed.cli.dask_worker", "--scheduler-file", str(scheduler_file),
                                "--nworkers", str(WORKERS), "--nthreads", "1", "--no-dashboard", "--host", "127.0.0.1"],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        from distributed import Client

        deadline = time.monotonic() + 60
        while not scheduler_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        with Client(scheduler_file=str(scheduler_file), timeout="30s") as client:
            client.wait_for_workers(WORKERS, timeout=60)
            address = client.scheduler.address
        yield address, work
    finally:
        for proc in (workers, scheduler):
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def placeholders_in(work: Path, tree: str) -> tuple[set[str], set[str]]:
    """(files of `tree` in the client's copy that are placeholders, the other files)."""
    top = work / "binance_data" / tree
    with closing(sqlite3.connect(lazy.index_path(work / "binance_data"))) as conn:
        held = set(conn.execute("SELECT dev, ino, size, mtime_ns FROM placeholder"))
    lazy_files, real = set(), set()
    for p in top.rglob("*"):
        if p.is_file() and not paths.store_skips(tree, p.relative_to(top).as_posix()):
            st = p.stat()
            (lazy_files if (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) in held else real).add(p.relative_to(top).as_posix())
    return lazy_files, real


@pytest.fixture(scope="module")
def blind_run(default_archive: Path, blind_cluster, s3_server, tmp_path_factory: pytest.TempPathFactory):
    """The five scripts with a bucket root on the blind cluster: (url, procs, env)."""
    address, hidden = blind_cluster
    top = tmp_path_factory.mktemp("blind-run")
    url = f"s3://{s3_server.new_bucket()}/store"
    fake, env = fake_on_copy(default_archive, top)
    env.update(s3_server.env, CRYPTO_BASE_DIR=url, BHDS_WORK_DIR=str(hidden / "five-scripts"), BHDS_LEASE_SECONDS="20",
               DASK_SCHEDULER_ADDRESS=address)
    try:
        procs = run_scripts(env)
    finally:
        fake.stop()
    return url, procs, env


def test_workers_without_the_working_copy_build_through_the_bucket(blind_run, local_run, s3_server, tmp_path: Path) -> None:  # noqa: F811
    url, procs, env = blind_run
    for script, proc in zip(SCRIPTS, procs):
        assert proc.returncode == 0, f"{script} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
        assert "Traceback" not in proc.stderr
        assert all(" failed=0 " in line for line in proc.stdout.strip().splitlines()), proc.stdout
    # The workers said they work in copies of their own (the old code refused: "do not see the data folder").
    assert any("copies of their own" in proc.stderr for proc in procs), procs[-1].stderr[-2000:]
    # Workers uploaded what they built: no generated, parsed or downloaded file went up from the client.
    published_lines = [line for proc in procs for line in proc.stderr.splitlines() if "published generation" in line]
    assert any("0 files uploaded" in line and "results_data" in line for line in published_lines)
    published = published_copy(url, s3_server, tmp_path / "reader")
    assert_same_values(local_run, published)
    assert_bucket_clean(url, s3_server)
    # What the workers built reached the bucket without passing through the client: in the client's
    # copy every generated and resampled file is a placeholder (its bytes never fetched here).
    work = Path(env["BHDS_WORK_DIR"])
    lazy_files, _ = placeholders_in(work, "results_data/spot")
    built = {rel for rel, obj in read_manifest(open_store(url, access(s3_server)), "results_data/spot").objects.items()
             if obj["size"] >= lazy.MIN_LAZY_BYTES}
    assert built and built <= lazy_files, sorted(built - lazy_files)[:5]


def test_a_blind_worker_killed_mid_task_is_retried_and_the_result_is_identical(blind_run, blind_cluster, local_run,  # noqa: F811
                                                                                s3_server, tmp_path: Path,
                                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """BTCUSDT's first attempt leaves a half-written temp file in its worker's own copy and SIGKILLs
    that worker; Dask re-runs it on the other one, and the bucket gets the local result, no temp file."""
    regenerate_with_a_worker_killed(blind_run[0], blind_run[2], blind_cluster[0], blind_cluster[1] / "killed", local_run,
                                    s3_server, tmp_path, monkeypatch)


def test_a_reuploaded_day_of_a_split_symbol_on_blind_workers_keeps_its_older_segments(blind_run, blind_cluster, default_archive: Path,
                                                                               s3_server, tmp_path: Path) -> None:
    """A re-uploaded day of a split symbol, rebuilt by a worker without the client's folder: the older
    segments come out byte for byte the same and keep their published objects (the client compares
    the worker's upload with the placeholder by ETag: `storage.same_bytes`), the latest one is new,
    every published object holds the bytes its ETag names (no placeholder's zeros), and the values
    equal a full local build from the same inputs."""
    from tests.fakebinance import reupload_corrected_hour

    url = clone_store(blind_run[0], s3_server)
    env = dict(blind_run[2], CRYPTO_BASE_DIR=url, BHDS_WORK_DIR=str(blind_cluster[1] / "extend"))
    store = open_store(url, access(s3_server))
    tree = "results_data/spot"
    before = read_manifest(store, tree)
    segments = sorted(rel for rel in before.objects if rel.startswith("klines/1m/SP"))
    symbol = segments[0].split("_", 1)[1].removesuffix(".pqt")
    fake, fake_env = fake_on_copy(default_archive, tmp_path / "fake")
    try:
        archive = tmp_path / "fake" / "bucket"
        latest = max(archive.rglob(f"data/spot/daily/klines/{symbol}/1m/*.zip"), key=lambda p: p.name)
        reupload_corrected_hour(archive, latest.relative_to(archive).as_posix())
        run_env = {**env, **fake.env}
        for argv in (("aws_kline", "download-spot", "1m"), ("aws_kline", "parse-type-all", "spot", "1m"),
                     ("generate", "kline-type", "spot", "1m", "--split-gaps", "--with-vwap", "--no-with-funding-rates")):
            proc = subprocess.run([sys.executable, "bhds.py", *argv], cwd=Path(__file__).resolve().parent.parent, env=run_env,
                                  capture_output=True, text=True, timeout=600)
            assert proc.returncode == 0 and " failed=0 " in proc.stdout, proc.stdout + proc.stderr[-3000:]
    finally:
        fake.stop()
    assert " unchanged=" in proc.stdout, proc.stdout  # the other symbols were not rebuilt
    after = read_manifest(store, tree)
    older = sorted(rel for rel in after.objects if rel.startswith("klines/1m/SP") and rel.endswith(f"_{symbol}.pqt"))
    assert older
    for rel in older:  # the older segments: the very objects published before
        assert after.objects[rel]["key"] == before.objects[rel]["key"], rel
    latest = f"klines/1m/{symbol}.pqt"  # the latest segment keeps the plain name
    assert after.objects[latest]["key"] != before.objects[latest]["key"]
    for rel, obj in after.objects.items():
        data = store.read(paths.store_key(tree, obj["key"]))[0]
        assert len(data) == obj["size"] and data.strip(b"\0"), rel
        if "-" not in obj["etag"]:
            assert hashlib.md5(data).hexdigest() == obj["etag"], rel
    # The same inputs built from scratch on a local root give the same values.
    published = published_copy(url, s3_server, tmp_path / "reader")
    scratch = tmp_path / "scratch" / "binance_data"
    shutil.copytree(published, scratch, ignore=shutil.ignore_patterns("results_data", ".bhds"))  # inputs only: all built anew
    local_env = {k: v for k, v in env.items() if k not in ("BHDS_WORK_DIR", "DASK_SCHEDULER_ADDRESS")}
    local_env["CRYPTO_BASE_DIR"] = str(scratch.parent)
    proc = subprocess.run([sys.executable, "bhds.py", "generate", "kline-type", "spot", "1m", "--split-gaps", "--with-vwap",
                           "--no-with-funding-rates"], cwd=Path(__file__).resolve().parent.parent, env=local_env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert_klines_equal(scratch, published)
