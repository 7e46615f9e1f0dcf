"""End to end with the data root in a bucket: the five scripts with CRYPTO_BASE_DIR=s3://... against
moto's S3 server and the fake Binance give, value by value, what a local run gives on the same
archive; a command killed mid-publish leaves a whole generation readable and a re-run converges;
a command finding another process's lease exits 75."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import boto3
import pandas as pd
import pytest

from bhds import paths
from bhds.objstore import lazy
from bhds.objstore.lease import Lease, held
from bhds.objstore.manifest import published_files, read_manifest, sync_down
from bhds.objstore.store import open_store
from bhds.paths import Layout
from bhds.settings import StoreAccess
from bhds.types import TradeType
from tests.conftest import fake_on_copy
from tests.test_e2e_scripts import SCRIPTS, pipeline, run_scripts  # noqa: F401  (pipeline: a fixture)

REPO = Path(__file__).resolve().parent.parent
TREES = ("parsed_data", "api_data", "results_data")


def access(server) -> StoreAccess:
    return StoreAccess(endpoint_url=server.endpoint, region="us-east-1", access_key_id="testing", secret_access_key="testing")


def published_copy(url: str, server, into: Path) -> Path:
    """Everything published under `url`, fetched through the manifests into a fresh folder (not the writer's copy)."""
    store = open_store(url, access(server))
    layout = Layout(into / "binance_data")
    for tt in TradeType:
        for kind in paths.STORE_TREE_KINDS:
            sync_down(store, layout, paths.store_tree_dir(layout, kind, tt))
    return layout.root


def parquet_tree(root: Path) -> dict[str, pd.DataFrame]:
    return {p.relative_to(root).as_posix(): pd.read_parquet(p) for p in sorted(root.rglob("*.pqt"))}


def assert_same_values(expected_root: Path, actual_root: Path) -> None:
    for tree in TREES:
        expected, actual = parquet_tree(expected_root / tree), parquet_tree(actual_root / tree)
        assert list(actual) == list(expected), tree
        for name, frame in expected.items():
            pd.testing.assert_frame_equal(actual[name], frame, check_exact=True, obj=name)


def s3_client(server):  # noqa: ANN001, ANN201 - a boto3 S3 client
    return boto3.client("s3", endpoint_url=server.endpoint, aws_access_key_id="testing",
                        aws_secret_access_key="testing", region_name="us-east-1")


def bucket_keys(url: str, server) -> list[str]:
    """Every object key under the store URL `s3://bucket/prefix`."""
    bucket, prefix = url[len("s3://"):].split("/", 1)
    return [o["Key"] for page in s3_client(server).get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for o in page.get("Contents", [])]


def assert_bucket_clean(url: str, server) -> None:
    """Nothing but manifests, GC markers and generation objects in the bucket: no temp files, no leases left."""
    keys = bucket_keys(url, server)
    assert not [k for k in keys if k.endswith(paths.STORE_LEASE) or paths.TEMP_MARKER in k or k.endswith(".part")]
    assert all("/_g" in k or k.endswith((paths.STORE_MANIFEST, paths.STORE_COLLECTED)) for k in keys)


@pytest.fixture(scope="module")
def local_run(pipeline) -> Path:
    """The five scripts on a local root (test_e2e_scripts' pipeline, run again for this module)."""
    data, procs, _ = pipeline
    assert all(p.returncode == 0 for p in procs), [p.stderr[-2000:] for p in procs]
    return data


@pytest.fixture(scope="module")
def s3_run(default_archive: Path, tmp_path_factory: pytest.TempPathFactory, s3_server):
    work = tmp_path_factory.mktemp("e2e-s3")
    url = f"s3://{s3_server.new_bucket()}/store"
    fake, env = fake_on_copy(default_archive, work)
    env.update(s3_server.env, CRYPTO_BASE_DIR=url, BHDS_WORK_DIR=str(work / "working-copy"), BHDS_LEASE_SECONDS="20")
    try:
        procs = run_scripts(env)
    finally:
        fake.stop()
    return url, procs, env, work


def test_scripts_succeed_with_a_bucket_root(s3_run) -> None:
    _, procs, _, _ = s3_run
    for script, proc in zip(SCRIPTS, procs):
        assert proc.returncode == 0, f"{script} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
        assert "Traceback" not in proc.stderr
        assert all(" failed=0 " in line for line in proc.stdout.strip().splitlines()), proc.stdout


def test_bucket_holds_the_local_results_value_by_value(s3_run, local_run, s3_server, tmp_path: Path) -> None:
    url, _, _, _ = s3_run
    published = published_copy(url, s3_server, tmp_path / "reader")
    assert_same_values(local_run, published)
    mirror = lambda root: sorted(p.relative_to(root).as_posix() for p in (root / "aws_data").rglob("*") if p.is_file())  # noqa: E731
    assert mirror(published) == mirror(local_run)
    assert_bucket_clean(url, s3_server)


def test_readers_find_the_published_files_by_the_manifest(s3_run, local_run, s3_server, monkeypatch) -> None:
    url, _, _, _ = s3_run
    for key, value in s3_server.env.items():
        monkeypatch.setenv(key, value)
    files = published_files(url, "results_data/spot")
    expected = sorted(p.relative_to(local_run / "results_data/spot").as_posix()
                      for p in (local_run / "results_data/spot").rglob("*.pqt"))
    assert sorted(files) == expected
    options = {"client_kwargs": {"endpoint_url": s3_server.endpoint}, "key": "testing", "secret": "testing"}
    frame = pd.read_parquet(files["klines/1m/BTCUSDT.pqt"], storage_options=options)
    pd.testing.assert_frame_equal(frame, pd.read_parquet(local_run / "results_data/spot/klines/1m/BTCUSDT.pqt"), check_exact=True)


def test_a_second_run_publishes_nothing_new(s3_run, s3_server) -> None:
    url, _, env, _ = s3_run
    store = open_store(url, access(s3_server))
    names = [f"{root}/{tt.value}" for root in TREES for tt in TradeType]
    before = {tree: read_manifest(store, tree).generation for tree in names}
    proc = subprocess.run(["bash", str(REPO / "scripts" / "resample.sh")], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert {tree: read_manifest(store, tree).generation for tree in names} == before


def working_copy_files(root: Path, tree: str) -> dict[str, tuple[bytes | None, int, int]]:
    """A working copy's files of `tree`: path inside the tree -> (bytes, or None for a placeholder; mtime_ns; size)."""
    top = root / "binance_data" / tree
    with closing(sqlite3.connect(lazy.index_path(root / "binance_data"))) as conn:
        held = set(conn.execute("SELECT dev, ino, size, mtime_ns FROM placeholder"))
    out = {}
    for p in sorted(top.rglob("*")):
        if p.is_file():
            st = p.stat()
            placeholder = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) in held
            out[p.relative_to(top).as_posix()] = (None if placeholder else p.read_bytes(), st.st_mtime_ns, st.st_size)
    return out


def test_a_fresh_working_copy_rebuilds_nothing(s3_run, s3_server, tmp_path: Path) -> None:
    """Machine B (another BHDS_WORK_DIR) after machine A published: a synced file carries A's mtime, so
    B's parse and generate find every input unchanged and write and publish nothing."""
    url, _, env, _ = s3_run
    store = open_store(url, access(s3_server))
    names = [f"{root}/{tt.value}" for root in TREES for tt in TradeType]
    before = {tree: read_manifest(store, tree) for tree in names}
    b_env = {**env, "BHDS_WORK_DIR": str(tmp_path / "machine-b")}
    argvs = {"parsed_data/spot": (("aws_kline", "parse-type-all", "spot", "1m"), (" files=0 ", " partitions=0 ")),
             "results_data/spot": (("generate", "kline-type", "spot", "1m", "--split-gaps", "--with-vwap", "--no-with-funding-rates"),
                                   (" files=0 ", " unchanged=6 "))}
    for tree, (argv, no_op) in argvs.items():
        proc = subprocess.run([sys.executable, str(REPO / "bhds.py"), *argv], env=b_env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert all(part in proc.stdout for part in no_op), proc.stdout  # the old code: every symbol parsed and built again
        # Every file of B's copy is the published one, with the mtime A published it with: none rewritten.
        published = before[tree].objects
        copy = working_copy_files(tmp_path / "machine-b", tree)
        assert sorted(copy) == sorted(published)
        assert {rel: mtime for rel, (_, mtime, _) in copy.items()} == {rel: obj["mtime_ns"] for rel, obj in published.items()}
        assert {rel: size for rel, (_, _, size) in copy.items()} == {rel: obj["size"] for rel, obj in published.items()}
        assert all(hashlib.md5(data).hexdigest() == published[rel]["etag"] for rel, (data, _, _) in copy.items()
                   if data is not None and "-" not in published[rel]["etag"])
        # Nothing to build, so nothing read: every large file is still a placeholder (before: all fetched).
        assert {rel for rel, (data, _, _) in copy.items() if data is None} == {
            rel for rel, obj in published.items() if obj["size"] >= lazy.MIN_LAZY_BYTES}
    assert {tree: read_manifest(store, tree).generation for tree in names} == {t: m.generation for t, m in before.items()}


def local_result(local_run: Path, env: dict[str, str], argv: tuple[str, ...], into: Path) -> Path:
    """`argv` run with a local root on a copy of the local scripts' run (no scheduler): its data root."""
    local_env = {k: v for k, v in env.items() if k not in ("BHDS_WORK_DIR", "DASK_SCHEDULER_ADDRESS")}
    local_env["CRYPTO_BASE_DIR"] = str(into)
    into.mkdir()
    subprocess.run(["cp", "-a", str(local_run), str(into)], check=True)
    proc = subprocess.run([sys.executable, str(REPO / "bhds.py"), *argv], env=local_env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return into / "binance_data"


def assert_klines_equal(expected_root: Path, actual_root: Path, tree: str = "results_data/spot") -> None:
    expected, actual = parquet_tree(expected_root / tree / "klines"), parquet_tree(actual_root / tree / "klines")
    assert list(actual) == list(expected)
    for name, frame in expected.items():
        pd.testing.assert_frame_equal(actual[name], frame, check_exact=True, obj=name)


def _bhds(env: dict[str, str], *argv: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(REPO / "bhds.py"), *argv], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("kill_at", ["upload", "collect"])
def test_killed_mid_publish_then_rerun(s3_run, s3_server, local_run, tmp_path: Path, kill_at: str) -> None:
    """SIGKILL from inside the S3 server: at the 5th object upload of the new generation (the manifest
    not yet written), or at the garbage collection (just published). Readers see a whole generation,
    old or new, and the same command run again publishes what a local run gives."""
    url, _, env, _ = s3_run
    store = open_store(url, access(s3_server))
    tree = "results_data/spot"
    old = read_manifest(store, tree)
    # Results other than the scripts' (and than the previous case's), so this run publishes something:
    # without VWAP every file changes; without the gap split only the split symbol's do.
    split = "--split-gaps" if kill_at == "upload" else "--no-split-gaps"
    argv = ("generate", "kline-type", "spot", "1m", split, "--no-with-vwap", "--no-with-funding-rates")
    killed = _bhds(env, *argv)
    seen = []

    def tripwire(method: str, path: str) -> None:
        if f"/{tree}/_g{old.generation + 1:06d}." in path and method == "PUT":
            seen.append(path)
            if kill_at == "upload" and len(seen) == 5:
                os.kill(killed.pid, signal.SIGKILL)

    def collect_tripwire(method: str, path: str) -> None:  # the GC's listing is the first request after the manifest
        if kill_at == "collect" and method == "PUT" and path.endswith(f"/{tree}/{paths.STORE_MANIFEST}"):
            s3_server.hooks.append(lambda m, p: os.kill(killed.pid, signal.SIGKILL) if m == "GET" else None)

    s3_server.hooks.extend([tripwire, collect_tripwire])
    try:
        assert killed.wait(600) == -signal.SIGKILL, killed.stderr.read()[-2000:]
    finally:
        s3_server.hooks.clear()
    now = read_manifest(store, tree)
    assert now.generation == old.generation + (0 if kill_at == "upload" else 1)
    assert seen, "the killed run uploaded nothing"
    reader = published_copy(url, s3_server, tmp_path / "reader")
    for name, obj in now.objects.items():  # every listed object is there, whole
        assert (reader / tree / name).stat().st_size == obj["size"]
    # The same command again (its dead lease is taken over at once: same host, PID gone) converges.
    proc = subprocess.run([sys.executable, str(REPO / "bhds.py"), *argv], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert_klines_equal(local_result(local_run, env, argv, tmp_path / "local"), published_copy(url, s3_server, tmp_path / "reader2"))
    # What the dead writer uploaded was collected; what remains is listed by a recent generation.
    last = read_manifest(store, tree)
    listed = {paths.store_key(tree, o["key"]) for m in (old, now, last) for o in m.objects.values()}
    remaining = set(store.list(f"binance_data/{tree}/_g"))
    assert remaining <= listed
    if kill_at == "upload":  # the dead writer's unpublished uploads are gone
        assert not [key for key in remaining if any(path.endswith(f"/{key}") for path in seen)]


def test_a_leased_tree_makes_a_command_exit_75(s3_run, s3_server) -> None:
    url, _, env, _ = s3_run
    store = open_store(url, access(s3_server))
    key = paths.store_key("results_data/um_futures", paths.STORE_LEASE)
    with held([Lease(store, key, 30.0, "test", "results_data/um_futures")], timeout=0):
        proc = subprocess.run([sys.executable, str(REPO / "bhds.py"), "generate", "resample-type", "um_futures", "1h", "5m"],
                              env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 75, proc.stderr
    first = proc.stderr.strip().splitlines()[0]
    assert first.startswith("bhds: error: another bhds process (") and "holds the lease of" in first
    assert "Traceback" not in proc.stderr
    waited = subprocess.run([sys.executable, str(REPO / "bhds.py"), "generate", "resample-type", "um_futures", "1h", "5m"],
                            env=env, capture_output=True, text=True, timeout=120)
    assert waited.returncode == 0, waited.stderr


def test_a_day_published_by_one_machine_extends_on_another(s3_run, default_archive: Path, tmp_path: Path) -> None:
    """Machine A downloads and parses a re-uploaded day of the current month and publishes; machine B (a fresh
    working copy) generates: its synced inputs keep A's mtimes, so only that symbol changes and it is extended
    (months before kept), as it would be on A. cm_futures: a market the other tests leave alone."""
    from tests.fakebinance import reupload_corrected_hour

    _, _, env, _ = s3_run
    fake, fake_env = fake_on_copy(default_archive, tmp_path / "fake")
    try:
        archive = tmp_path / "fake" / "bucket"
        latest = max(archive.rglob("data/futures/cm/daily/klines/*/1m/*.zip"), key=lambda p: (p.name[-14:], p.name))
        key = latest.relative_to(archive).as_posix()
        reupload_corrected_hour(archive, key)
        a_env = {**env, **fake.env}
        for argv in (("aws_kline", "download-cm-futures", "1m"), ("aws_kline", "parse-type-all", "cm_futures", "1m")):
            proc = subprocess.run([sys.executable, str(REPO / "bhds.py"), *argv], env=a_env, capture_output=True, text=True, timeout=600)
            assert proc.returncode == 0 and " failed=0 " in proc.stdout, proc.stdout + proc.stderr[-2000:]
        assert " partitions=1 " in proc.stdout, proc.stdout
    finally:
        fake.stop()
    b_env = {**env, "BHDS_WORK_DIR": str(tmp_path / "machine-b")}
    proc = subprocess.run([sys.executable, str(REPO / "bhds.py"), "generate", "kline-type", "cm_futures", "1m", "--split-gaps",
                           "--with-vwap", "--with-funding-rates"], env=b_env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert " files=1 " in proc.stdout and "extended=1" in proc.stdout, proc.stdout  # the old code: every symbol built again


def test_each_script_on_a_fresh_machine_syncs_only_what_it_reads(default_archive: Path, local_run, s3_server,
                                                                  tmp_path: Path) -> None:
    """Every script runs in a working copy of its own (as if each were another machine), so it sees only
    the trees `workcopy.READS` syncs for it. A tree a stage reads but does not sync would change its
    output (e.g. api_data without the parsed klines fetches every day again), so the bucket equalling
    the local run shows the lists are complete; the missing folders show they are narrow."""
    url = f"s3://{s3_server.new_bucket()}/store"
    fake, env = fake_on_copy(default_archive, tmp_path)
    env.update(s3_server.env, CRYPTO_BASE_DIR=url, BHDS_LEASE_SECONDS="20")
    copies = {}
    try:
        for script in SCRIPTS:
            copies[script] = tmp_path / f"machine-{script.removesuffix('.sh')}"
            args = ["bash", str(REPO / "scripts" / script)] + (["1m"] if script != "resample.sh" else [])
            proc = subprocess.run(args, env={**env, "BHDS_WORK_DIR": str(copies[script])}, capture_output=True,
                                  text=True, timeout=600)
            assert proc.returncode == 0, f"{script}:\n{proc.stderr[-3000:]}"
    finally:
        fake.stop()
    assert_same_values(local_run, published_copy(url, s3_server, tmp_path / "reader"))

    def synced(script: str) -> set[str]:
        root = copies[script] / "binance_data"
        return {name for name in ("aws_data", "parsed_data", "api_data", "results_data") if (root / name).is_dir()}

    # The old code synced every tree into every command's working copy.
    assert synced("aws_download.sh") == {"aws_data"}
    assert synced("aws_parse.sh") == {"aws_data", "parsed_data"}
    assert synced("api_download.sh") == {"aws_data", "parsed_data", "api_data"}
    assert synced("resample.sh") == {"results_data"}
