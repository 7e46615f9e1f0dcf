"""The object-store protocol against a real S3 server (moto's, on loopback): whole objects, manifests,
generations, garbage collection, leases; and the data root given as a URL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from bhds import paths
from bhds.errors import ConfigError, LockBusy
from bhds.objstore.lease import Lease, held
from bhds.objstore.manifest import publish, read_manifest, sync_down
from bhds.errors import ConfigError
from bhds.objstore.store import open_store
from bhds.paths import Layout
from bhds.settings import load_settings
from bhds.types import TradeType

REPO = Path(__file__).resolve().parent.parent
TREE = "results_data/spot"


def copy_of(tmp_path: Path, name: str) -> tuple[Layout, Path]:
    """A working copy's layout and its `results_data/spot` tree."""
    layout = Layout(tmp_path / name / "binance_data")
    tree = paths.store_tree_dir(layout, "results", TradeType.spot)
    return layout, tree


def write(tree: Path, rel: str, data: bytes) -> None:
    (tree / rel).parent.mkdir(parents=True, exist_ok=True)
    (tree / rel).write_bytes(data)


def files(tree: Path) -> dict[str, bytes]:
    return {p.relative_to(tree).as_posix(): p.read_bytes() for p in sorted(tree.rglob("*")) if p.is_file()}


def test_store_moves_whole_objects_and_lists_etags(s3_bucket: str, tmp_path: Path) -> None:
    store = open_store(s3_bucket, load_settings().store)
    small, big = tmp_path / "small", tmp_path / "big"
    small.write_bytes(b"abc")
    big.write_bytes(os.urandom(70 * 2**20))  # above MULTIPART_BYTES: a completed multipart upload
    etags = store.put_files([(small, "k/small"), (big, "k/big")])
    assert store.list("k/") == etags
    assert "-" in etags["k/big"] and "-" not in etags["k/small"]
    store.get_files([("k/big", tmp_path / "big2")])
    assert (tmp_path / "big2").read_bytes() == big.read_bytes()
    # Conditional writes: create only once; replace and delete only with the current ETag.
    first = store.create("k/lease", b"1")
    assert first is not None and store.create("k/lease", b"2") is None
    assert store.replace("k/lease", b"3", "0" * 32) is None
    second = store.replace("k/lease", b"3", first)
    assert second is not None and store.read("k/lease") == (b"3", second)
    assert not store.delete_if("k/lease", first) and store.delete_if("k/lease", second)
    assert store.read("k/lease") is None


def test_collection_lists_generation_folders_not_the_whole_tree(s3_server, s3_bucket: str, tmp_path: Path) -> None:
    """A publish of a few changed files into a tree of 2,500 makes one listing request (the folders of
    the generations), not one per 1,000 objects: on a full archive's tree that was a thousand LIST
    pages per publish. The old generation's superseded objects and a dead writer's uploads still go."""
    store = open_store(s3_bucket, load_settings().store)
    a_layout, a = copy_of(tmp_path, "a")
    base = sync_down(store, a_layout, a)
    for i in range(2500):
        write(a, f"klines/1m/S{i:04d}.pqt", b"%d" % i)
    g1 = publish(store, a_layout, a, base)
    orphan = f"binance_data/{TREE}/_g000002.deadbeef/klines/1m/S0000.pqt"
    store.put(orphan, b"a writer killed before its manifest")
    lists: list[str] = []
    bucket = s3_bucket.removeprefix("s3://")
    s3_server.hooks.append(lambda method, path: lists.append(path) if method == "GET" and path.rstrip("/") == f"/{bucket}" else None)
    try:
        write(a, "klines/1m/S0000.pqt", b"changed")
        g2 = publish(store, a_layout, a, g1)
        write(a, "klines/1m/S0001.pqt", b"changed")
        g3 = publish(store, a_layout, a, g2)
    finally:
        s3_server.hooks.pop()
    assert len(lists) == 3  # g2: the folders, then the dead writer's folder; g3: the folders
    stored = set(store.list(f"binance_data/{TREE}/_g"))
    key = lambda k: f"binance_data/{TREE}/{k}"  # noqa: E731
    assert orphan not in stored
    assert key(g1.objects["klines/1m/S0000.pqt"]["key"]) not in stored  # superseded by g2, collected by g3
    assert stored == {key(o["key"]) for m in (g2, g3) for o in m.objects.values()}


def test_a_sync_fetches_the_manifest_only_when_it_changed(s3_server, s3_bucket: str, tmp_path: Path) -> None:
    """A working copy keeps the manifest body it last synced or published: a sync with nothing new
    asks for its ETag (HEAD) instead of downloading it again (on a full mirror, some 200 MB per
    command); after another writer published, it downloads the new one and gets the new files."""
    store = open_store(s3_bucket, load_settings().store)
    a_layout, a = copy_of(tmp_path, "a")
    b_layout, b = copy_of(tmp_path, "b")
    base = sync_down(store, a_layout, a)
    write(a, "klines/1m/BTCUSDT.pqt", b"btc-1")
    g1 = publish(store, a_layout, a, base)
    requests: list[str] = []
    s3_server.hooks.append(lambda method, path: requests.append(method) if path.endswith(f"/{TREE}/{paths.STORE_MANIFEST}") else None)
    try:
        assert sync_down(store, a_layout, a).etag == g1.etag  # the writer kept what it published
        assert requests == ["HEAD"]
        sync_down(store, b_layout, b)  # a new copy has nothing kept
        assert requests == ["HEAD", "GET"]
        requests.clear()
        assert sync_down(store, b_layout, b).etag == g1.etag
        assert requests == ["HEAD"]
        write(a, "klines/1m/BTCUSDT.pqt", b"btc-2")
        publish(store, a_layout, a, g1)
        requests.clear()
        sync_down(store, b_layout, b)
        assert requests == ["HEAD", "GET"] and files(b) == {"klines/1m/BTCUSDT.pqt": b"btc-2"}
    finally:
        s3_server.hooks.pop()


@pytest.fixture(params=["s3", "memory"])
def any_store(request: pytest.FixtureRequest):
    """The protocol on S3 (moto), and on fsspec's memory file system (the generic driver: gs://, az://...)."""
    if request.param == "memory":
        import secrets

        return open_store(f"memory://bhds-{secrets.token_hex(4)}/prefix")
    return open_store(request.getfixturevalue("s3_bucket") + "/prefix", load_settings().store)


def test_publish_sync_generations_and_gc(any_store, tmp_path: Path) -> None:
    store = any_store
    a_layout, a = copy_of(tmp_path, "a")
    b_layout, b = copy_of(tmp_path, "b")
    assert sync_down(store, a_layout, a).generation == 0
    write(a, "klines/1m/BTCUSDT.pqt", b"btc-1")
    write(a, "klines/1m/ETHUSDT.pqt", b"eth-1")
    write(a, ".klines.x.bhds-tmp", b"half")  # a killed writer's temp file is never published
    g0 = sync_down(store, a_layout, a)
    # Nothing published yet: the copy is made equal to that (unpublished files go), temp files are left alone.
    assert g0.generation == 0 and g0.etag is None and files(a) == {".klines.x.bhds-tmp": b"half"}
    write(a, "klines/1m/BTCUSDT.pqt", b"btc-1")
    write(a, "klines/1m/ETHUSDT.pqt", b"eth-1")
    g1 = publish(store, a_layout, a, g0)
    assert g1.generation == 1 and sorted(g1.objects) == ["klines/1m/BTCUSDT.pqt", "klines/1m/ETHUSDT.pqt"]
    assert read_manifest(store, TREE).objects == g1.objects

    # A second working copy gets exactly the published files; its stray file is removed.
    sync_down(store, b_layout, b)
    write(b, "klines/1m/STRAY.pqt", b"nobody published me")
    assert sync_down(store, b_layout, b).generation == 1
    assert files(b) == {"klines/1m/BTCUSDT.pqt": b"btc-1", "klines/1m/ETHUSDT.pqt": b"eth-1"}

    # Generation 2 uploads only the changed file; the unchanged one keeps its object.
    write(a, "klines/1m/BTCUSDT.pqt", b"btc-2")
    g2 = publish(store, a_layout, a, g1)
    assert g2.objects["klines/1m/ETHUSDT.pqt"] == g1.objects["klines/1m/ETHUSDT.pqt"]
    assert g2.objects["klines/1m/BTCUSDT.pqt"]["key"].startswith("_g000002.")
    assert publish(store, a_layout, a, g2) is g2  # nothing changed: no new generation

    # The reader fetches only what changed (its untouched file keeps its inode).
    inode = (b / "klines/1m/ETHUSDT.pqt").stat().st_ino
    sync_down(store, b_layout, b)
    assert files(b)["klines/1m/BTCUSDT.pqt"] == b"btc-2" and (b / "klines/1m/ETHUSDT.pqt").stat().st_ino == inode

    # Generation 3 deletes a file: generation 1's BTC object (listed by neither 2 nor 3) is collected,
    # generation 2's objects stay for readers that fetched its manifest a moment ago.
    (a / "klines/1m/ETHUSDT.pqt").unlink()
    g3 = publish(store, a_layout, a, g2)
    stored = set(store.list(f"binance_data/{TREE}/_g"))
    key = lambda obj: f"binance_data/{TREE}/{obj['key']}"  # noqa: E731
    assert key(g1.objects["klines/1m/BTCUSDT.pqt"]) not in stored
    assert {key(o) for o in g2.objects.values()} | {key(o) for o in g3.objects.values()} == stored
    sync_down(store, b_layout, b)
    assert files(b) == {"klines/1m/BTCUSDT.pqt": b"btc-2"}


def test_an_overtaken_writer_does_not_publish(any_store, tmp_path: Path) -> None:
    """The manifest is replaced with If-Match on the one the run started from."""
    store = any_store
    a_layout, a = copy_of(tmp_path, "a")
    b_layout, b = copy_of(tmp_path, "b")
    base_a, base_b = sync_down(store, a_layout, a), sync_down(store, b_layout, b)
    write(a, "x.pqt", b"from a")
    write(b, "x.pqt", b"from b")
    publish(store, a_layout, a, base_a)
    with pytest.raises(LockBusy, match="published by another writer"):
        publish(store, b_layout, b, base_b)
    sync_down(store, b_layout, b)
    assert files(b) == {"x.pqt": b"from a"}


def test_lease_excludes_expires_and_is_taken_over(s3_bucket: str) -> None:
    store = open_store(s3_bucket, load_settings().store)
    holder = Lease(store, "t/_lease", 1.0, "holder", "tree t")
    holder.acquire(0)
    rival = Lease(store, "t/_lease", 1.0, "rival", "tree t")
    with pytest.raises(LockBusy, match="holds the lease of tree t"):
        rival.acquire(0)
    assert holder.renew()
    time.sleep(2.5)  # not renewed for longer than its length (server clock, 1 s resolution): dead
    rival.acquire(0)
    assert not holder.renew() and holder.lost  # the old holder learns it lost the lease
    holder.release()  # does not delete the rival's lease
    assert json.loads(store.read("t/_lease")[0])["owner"] == "rival"
    rival.release()
    assert store.read("t/_lease") is None


def test_held_leases_are_renewed_while_the_work_runs(s3_bucket: str) -> None:
    store = open_store(s3_bucket, load_settings().store)
    with held([Lease(store, "t/_lease", 1.0, "holder", "tree t")], timeout=0):
        time.sleep(2.5)  # longer than the lease: the renewal thread keeps it alive
        with pytest.raises(LockBusy):
            Lease(store, "t/_lease", 1.0, "rival", "tree t").acquire(0)
    assert store.read("t/_lease") is None


def _python(code: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_lease_contention_between_two_processes(s3_bucket: str) -> None:
    """Another process holds the lease: we fail at once (exit-75 error), or wait for it with a timeout."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    other = _python(f"""
        import sys, time
        from bhds.objstore.lease import Lease, held
        from bhds.objstore.store import open_store
        from bhds.settings import load_settings
        store = open_store({s3_bucket!r}, load_settings().store)
        with held([Lease(store, "t/_lease", 30.0, "other", "tree t")], timeout=0):
            print("held", flush=True)
            time.sleep(3)
    """, env)
    assert other.stdout.readline().strip() == "held"
    store = open_store(s3_bucket, load_settings().store)
    mine = Lease(store, "t/_lease", 30.0, "mine", "tree t")
    with pytest.raises(LockBusy, match=rf"PID {other.pid}\)"):
        mine.acquire(0)
    mine.acquire(30)  # released when the other process finishes
    assert other.wait(30) == 0
    mine.release()


def test_a_killed_holder_on_this_host_is_dead_at_once(s3_bucket: str) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    other = _python(f"""
        import time
        from bhds.objstore.lease import Lease
        from bhds.objstore.store import open_store
        from bhds.settings import load_settings
        Lease(open_store({s3_bucket!r}, load_settings().store), "t/_lease", 600.0, "other", "tree t").acquire(0)
        print("held", flush=True)
        time.sleep(600)
    """, env)
    assert other.stdout.readline().strip() == "held"
    other.send_signal(signal.SIGKILL)
    other.wait()
    Lease(open_store(s3_bucket, load_settings().store), "t/_lease", 600.0, "mine", "tree t").acquire(0)


@pytest.mark.parametrize("kill_at", ["after_upload", "after_manifest"])
def test_killed_mid_publish_leaves_the_old_generation_and_a_rerun_converges(s3_bucket: str, tmp_path: Path,
                                                                             kill_at: str) -> None:
    """SIGKILL between the uploads and the manifest (or before the garbage collection): readers still
    see a whole generation; publishing again converges and collects the dead writer's objects."""
    store = open_store(s3_bucket, load_settings().store)
    a_layout, a = copy_of(tmp_path, "a")
    sync_down(store, a_layout, a)
    for i in range(20):
        write(a, f"f{i:02d}.pqt", b"old %d" % i)
    g1 = publish(store, a_layout, a, read_manifest(store, TREE))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    writer = _python(f"""
        import os, signal
        from pathlib import Path
        from bhds import paths
        from bhds.objstore import manifest
        from bhds.objstore.store import open_store
        from bhds.paths import Layout
        from bhds.settings import load_settings
        from bhds.types import TradeType
        store = open_store({s3_bucket!r}, load_settings().store)
        layout = Layout(Path({str(tmp_path / 'w' / 'binance_data')!r}))
        tree = paths.store_tree_dir(layout, "results", TradeType.spot)
        base = manifest.sync_down(store, layout, tree)
        for i in range(20):
            (tree / f"f{{i:02d}}.pqt").write_bytes(b"new %d" % i)
        die = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
        if {kill_at!r} == "after_upload":
            store.replace = store.create = die          # the manifest write never happens
        else:
            manifest.collect_garbage = die              # published, then killed before the clean-up
        manifest.publish(store, layout, tree, base)
    """, env)
    assert writer.wait(60) == -signal.SIGKILL, writer.stderr.read()
    published = read_manifest(store, TREE)
    expected = b"old" if kill_at == "after_upload" else b"new"
    assert published.generation == (1 if kill_at == "after_upload" else 2)
    b_layout, b = copy_of(tmp_path, "reader")
    sync_down(store, b_layout, b)
    assert files(b) == {f"f{i:02d}.pqt": expected + b" %d" % i for i in range(20)}
    # The dead writer's objects are there, unlisted or superseded; the next publish collects them.
    assert len(store.list(f"binance_data/{TREE}/_g")) > len(published.objects)
    stored = lambda: set(store.list(f"binance_data/{TREE}/_g"))  # noqa: E731
    key = lambda k: f"binance_data/{TREE}/{k}"  # noqa: E731
    if kill_at == "after_manifest":
        # Nothing new to publish, yet the next writer finishes the dead one's collection.
        c_layout, c = copy_of(tmp_path, "c")
        base = sync_down(store, c_layout, c)
        assert publish(store, c_layout, c, base) is base
        assert stored() == {key(o["key"]) for o in base.objects.values()} | {key(k) for k in base.superseded}
    # A rerun with a change publishes and collects every object of the dead writer.
    rerun_layout, rerun_tree = copy_of(tmp_path, "rerun")
    base = sync_down(store, rerun_layout, rerun_tree)
    write(rerun_tree, "f00.pqt", b"rerun")
    final = publish(store, rerun_layout, rerun_tree, base)
    assert stored() == {key(o["key"]) for m in (base, final) for o in m.objects.values()}
    assert g1.generation == 1


def test_a_url_root_is_a_working_copy_per_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    one = load_settings({"CRYPTO_BASE_DIR": "s3://bucket/one/", "XDG_CACHE_HOME": str(tmp_path / "cache")})
    two = load_settings({"CRYPTO_BASE_DIR": "s3://bucket/two", "XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert one.store_url == "s3://bucket/one" and one.base_dir != two.base_dir
    assert one.base_dir.is_relative_to(tmp_path / "cache" / "bhds")
    pinned = load_settings({"CRYPTO_BASE_DIR": "s3://bucket/one", "BHDS_WORK_DIR": str(tmp_path / "w")})
    assert pinned.base_dir == tmp_path / "w"
    assert load_settings({"CRYPTO_BASE_DIR": str(tmp_path)}).store_url is None
    with pytest.raises(ConfigError, match="not a store URL"):
        load_settings({"CRYPTO_BASE_DIR": "s3://"})


def test_without_s3fs_an_s3_root_is_one_line_naming_the_extra(tmp_path: Path) -> None:
    code = ("import sys; sys.modules['s3fs'] = None; sys.modules['fsspec'] = None\n"
            "from bhds.cli import main; main(['generate', 'kline-type', 'spot', '1m'])")
    env = dict(os.environ, PYTHONPATH=str(REPO), CRYPTO_BASE_DIR="s3://bucket/prefix", BHDS_WORK_DIR=str(tmp_path / "w"))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[0] == ("bhds: error: CRYPTO_BASE_DIR='s3://bucket/prefix' needs the S3 driver: "
                                           "pip install 'bhds[s3]'")
    assert "Traceback" not in proc.stderr


def test_a_missing_bucket_is_one_line(s3_server, tmp_path: Path) -> None:
    env = dict(os.environ, **s3_server.env, PYTHONPATH=str(REPO), CRYPTO_BASE_DIR="s3://no-such-bucket/prefix",
               BHDS_WORK_DIR=str(tmp_path / "w"))
    proc = subprocess.run([sys.executable, str(REPO / "bhds.py"), "generate", "kline-type", "spot", "1m"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[0] == ("bhds: error: CRYPTO_BASE_DIR='s3://no-such-bucket/prefix': bucket "
                                           "'no-such-bucket' does not exist: create it, or check AWS_ENDPOINT_URL and AWS_REGION")


def test_sync_reads_the_manifest_again_when_its_objects_were_collected(s3_bucket: str, tmp_path: Path) -> None:
    """A reader that fetched manifest N while N+1 and N+2 were published finds N's objects gone: it retries."""
    store = open_store(s3_bucket, load_settings().store)
    a_layout, a = copy_of(tmp_path, "a")
    b_layout, b = copy_of(tmp_path, "b")
    base = sync_down(store, a_layout, a)
    write(a, "x.pqt", b"1")
    g1 = publish(store, a_layout, a, base)
    real_get = store.get_files
    calls = []

    def publish_twice_first(items):  # noqa: ANN001, ANN202 - the writer overtakes the reader mid-sync
        if not calls:
            write(a, "x.pqt", b"2")
            g2 = publish(store, a_layout, a, g1)
            write(a, "x.pqt", b"3")
            publish(store, a_layout, a, g2)
        calls.append(items)
        return real_get(items)

    store.get_files = publish_twice_first
    assert sync_down(store, b_layout, b).generation == 3
    assert files(b) == {"x.pqt": b"3"} and len(calls) == 2


def test_a_results_folder_linked_to_another_disk_is_published_and_synced(tmp_path: Path) -> None:
    """`klines/1m` may be a symlink (README: results on another disk): its files are part of the tree."""
    store = open_store("memory://bhds-linked/prefix")
    layout, a = copy_of(tmp_path, "a")
    disk = tmp_path / "disk"
    disk.mkdir()
    (a / "klines").mkdir(parents=True)
    os.symlink(disk, a / "klines" / "1m")
    g0 = sync_down(store, layout, a)
    write(a, "klines/1m/BTCUSDT.pqt", b"btc")
    write(a, "klines/5m/BTCUSDT.pqt", b"btc-5m")
    g1 = publish(store, layout, a, g0)
    assert sorted(g1.objects) == ["klines/1m/BTCUSDT.pqt", "klines/5m/BTCUSDT.pqt"]
    # The next run syncs (nothing to fetch or remove) and publishes nothing new: the linked files stay.
    assert sync_down(store, layout, a).generation == 1
    assert (disk / "BTCUSDT.pqt").read_bytes() == b"btc" and (a / "klines" / "1m").is_symlink()
    assert publish(store, layout, a, g1).generation == 1


def test_a_first_sync_never_deletes_files_the_bucket_did_not_publish(tmp_path: Path) -> None:
    """BHDS_WORK_DIR pointed at an existing data folder: refuse, keep the files; a synced copy still drops strays."""
    store = open_store("memory://bhds-foreign/prefix")
    layout, a = copy_of(tmp_path, "a")
    write(a, "klines/1m/BTCUSDT.pqt", b"someone's data")
    with pytest.raises(ConfigError, match="never published"):
        sync_down(store, layout, a)
    assert files(a) == {"klines/1m/BTCUSDT.pqt": b"someone's data"}
    # In a working copy bhds has synced before, a file nobody published is a killed run's leftover.
    layout_b, b = copy_of(tmp_path, "b")
    sync_down(store, layout_b, b)
    write(b, "klines/1m/ETHUSDT.pqt", b"leftover")
    sync_down(store, layout_b, b)
    assert files(b) == {}


def mtimes(tree: Path) -> dict[str, int]:
    return {p.relative_to(tree).as_posix(): p.stat().st_mtime_ns for p in sorted(tree.rglob("*")) if p.is_file()}


def test_a_synced_file_carries_the_mtime_it_was_published_with(any_store, tmp_path: Path) -> None:
    """The stages decide what to redo from size and mtime: a copy synced on another machine must not look new."""
    store = any_store
    a_layout, a = copy_of(tmp_path, "a")
    b_layout, b = copy_of(tmp_path, "b")
    g0 = sync_down(store, a_layout, a)
    write(a, "klines/1m/BTCUSDT.pqt", b"btc-1")
    write(a, "klines/1m/ETHUSDT.pqt", b"eth-1")
    os.utime(a / "klines/1m/BTCUSDT.pqt", ns=(1_600_000_000_123_456_789, 1_600_000_000_123_456_789))
    g1 = publish(store, a_layout, a, g0)
    assert {rel: obj["mtime_ns"] for rel, obj in g1.objects.items()} == mtimes(a)
    sync_down(store, b_layout, b)
    assert mtimes(b) == mtimes(a) and mtimes(b)["klines/1m/BTCUSDT.pqt"] == 1_600_000_000_123_456_789
    # B's record names the published mtime: B's next sync fetches nothing, B's publish publishes nothing.
    inode = (b / "klines/1m/ETHUSDT.pqt").stat().st_ino
    assert sync_down(store, b_layout, b).generation == 1 and (b / "klines/1m/ETHUSDT.pqt").stat().st_ino == inode
    assert publish(store, b_layout, b, read_manifest(store, TREE)).generation == 1

    # A rewrites a file with the same bytes (a new mtime, nothing uploaded): a generation with the new mtime,
    # and B's copy takes it without fetching.
    write(a, "klines/1m/ETHUSDT.pqt", b"eth-1")
    os.utime(a / "klines/1m/ETHUSDT.pqt", ns=(1_700_000_000_000_000_001, 1_700_000_000_000_000_001))
    g2 = publish(store, a_layout, a, g1)
    assert g2.generation == 2 and g2.objects["klines/1m/ETHUSDT.pqt"]["key"] == g1.objects["klines/1m/ETHUSDT.pqt"]["key"]
    sync_down(store, b_layout, b)
    assert mtimes(b) == mtimes(a) and (b / "klines/1m/ETHUSDT.pqt").stat().st_ino == inode


def test_a_manifest_without_mtimes_still_syncs(any_store, tmp_path: Path) -> None:
    """Manifests published before `mtime_ns` existed: files are fetched (mtime: the fetch time) and kept."""
    store = any_store
    a_layout, a = copy_of(tmp_path, "a")
    b_layout, b = copy_of(tmp_path, "b")
    g0 = sync_down(store, a_layout, a)
    write(a, "klines/1m/BTCUSDT.pqt", b"btc-1")
    g1 = publish(store, a_layout, a, g0)
    key = paths.store_key(TREE, paths.STORE_MANIFEST)
    body = json.loads(store.read(key)[0])
    for obj in body["objects"].values():
        del obj["mtime_ns"]
    assert store.replace(key, json.dumps(body).encode(), g1.etag) is not None
    old = read_manifest(store, TREE)
    sync_down(store, b_layout, b)
    assert files(b) == {"klines/1m/BTCUSDT.pqt": b"btc-1"}
    assert sync_down(store, b_layout, b).generation == 1
    assert publish(store, b_layout, b, old).generation == 1  # nothing changed: no generation just to add mtimes


def test_a_late_collection_of_an_older_generation_spares_the_newer_ones(any_store, tmp_path: Path) -> None:
    """A writer that stalled after publishing generation 1 (its lease expired meanwhile) resumes its
    garbage collection after someone published generation 2: that collection must not take
    generation 2's new folder for a dead writer's uploads (readers of 2 would find its files gone)."""
    from bhds.objstore.manifest import collect_garbage

    store = any_store
    a_layout, a = copy_of(tmp_path, "a")
    b_layout, b = copy_of(tmp_path, "b")
    base = sync_down(store, a_layout, a)
    write(a, "klines/1m/BTCUSDT.pqt", b"btc-1")
    g1 = publish(store, a_layout, a, base)
    sync_down(store, b_layout, b)
    write(b, "klines/1m/BTCUSDT.pqt", b"btc-2")
    publish(store, b_layout, b, g1)
    collect_garbage(store, g1)  # the stalled writer of generation 1, resumed
    reader_layout, reader = copy_of(tmp_path, "reader")
    sync_down(store, reader_layout, reader)
    assert files(reader) == {"klines/1m/BTCUSDT.pqt": b"btc-2"}


def test_a_writer_that_stalls_after_its_lease_check_keeps_its_uploads(any_store, tmp_path: Path) -> None:
    """Writer A checks its lease and stalls before replacing the manifest; its lease expires, writer B
    takes it, has nothing to publish and finishes generation 1's unfinished collection. A then
    replaces the (unchanged) manifest: the objects it names must still be there."""
    store = any_store
    a_layout, a = copy_of(tmp_path, "a")
    b_layout, b = copy_of(tmp_path, "b")
    base = sync_down(store, a_layout, a)
    write(a, "klines/1m/BTCUSDT.pqt", b"btc-1")
    g1 = publish(store, a_layout, a, base)
    store.delete([paths.store_key(TREE, paths.STORE_COLLECTED)])  # generation 1's writer died before noting it
    write(a, "klines/1m/BTCUSDT.pqt", b"btc-2")

    def stalls_while_b_runs() -> bool:
        b_base = sync_down(store, b_layout, b)
        assert publish(store, b_layout, b, b_base) is b_base  # nothing new: it only collects
        return True  # A's check passed just before its stall

    g2 = publish(store, a_layout, a, g1, still_held=stalls_while_b_runs)
    assert g2.generation == 2
    reader_layout, reader = copy_of(tmp_path, "reader")
    sync_down(store, reader_layout, reader)
    assert files(reader) == {"klines/1m/BTCUSDT.pqt": b"btc-2"}


def test_an_older_manifests_unfinished_collection_is_finished_by_the_next_writer(any_store, tmp_path: Path,
                                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A manifest from before `collectable` whose writer died before its garbage collection: the next
    writer must still collect what that collection would have (generation 1's BTC object, which
    generation 3 no longer needs); its folder stays listed (ETH lives in it), so only a key-by-key
    look finds it. Otherwise it is never collected."""
    from bhds.objstore import manifest as manifest_module

    store = any_store
    a_layout, a = copy_of(tmp_path, "a")
    g0 = sync_down(store, a_layout, a)
    write(a, "klines/1m/BTCUSDT.pqt", b"btc-1")
    write(a, "klines/1m/ETHUSDT.pqt", b"eth-1")
    g1 = publish(store, a_layout, a, g0)
    write(a, "klines/1m/BTCUSDT.pqt", b"btc-2")
    g2 = publish(store, a_layout, a, g1)
    write(a, "klines/1m/BTCUSDT.pqt", b"btc-3")

    def killed(*args: object) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(manifest_module, "collect_garbage", killed)
        with pytest.raises(KeyboardInterrupt):
            publish(store, a_layout, a, g2)  # published generation 3, killed before collecting
    key = paths.store_key(TREE, paths.STORE_MANIFEST)
    data, etag = store.read(key)
    body = json.loads(data)
    del body["collectable"]  # as an older bhds wrote it
    assert store.replace(key, json.dumps(body).encode(), etag) is not None
    g3 = read_manifest(store, TREE)
    write(a, "klines/1m/BTCUSDT.pqt", b"btc-4")
    g4 = publish(store, a_layout, a, g3)
    stored = set(store.list(f"binance_data/{TREE}/_g"))
    assert stored == {f"binance_data/{TREE}/{o['key']}" for m in (g3, g4) for o in m.objects.values()}


def test_archive_ls_syncs_no_tree(tmp_path: Path) -> None:
    """`archive ls` lists the remote archive and reads no local file: on a bucket root it must not
    sync its market's trees (a full mirror is hundreds of thousands of files) only to ignore them."""
    from bhds.objstore.workcopy import trees_of

    layout = Layout(tmp_path / "binance_data")
    assert trees_of(layout, "archive:archive_ls", {"market": "spot", "dataset": "klines"}) == ([], [])
    reads, writes = trees_of(layout, "research:list_data", {"trade_type": "spot"})
    assert writes == [] and paths.store_tree_dir(layout, "results", TradeType.spot) in reads
