"""Placeholders (`bhds.objstore.lazy`) against a real S3 server: a sync fetches small files and leaves
large ones in the bucket until something reads them through `bhds.storage`."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bhds import paths, storage
from bhds.objstore import lazy
from bhds.objstore.manifest import publish, read_manifest, sync_down
from bhds.objstore.store import open_store
from bhds.parse.klines import parse_rows
from bhds.parse.zipcsv import csv_body
from bhds.paths import Layout
from bhds.settings import load_settings
from bhds.types import TradeType
from tests.test_e2e_store import access

REAL = Path(__file__).parent / "data" / "real" / "spot" / "daily" / "klines" / "BTCUSDT" / "1m"
ZIP = "BTCUSDT-1m-2020-01-01.zip"


def tree_of(root: Path) -> tuple[Layout, Path]:
    layout = Layout(root / "binance_data")
    return layout, paths.store_tree_dir(layout, "parsed", TradeType.spot)


def real_files(tree: Path) -> dict[str, bytes]:
    """A tree a writer publishes: a real daily zip and its CHECKSUM, and the Parquet file bhds parses it into."""
    zip_bytes = (REAL / ZIP).read_bytes()
    table = parse_rows(csv_body(zip_bytes))
    out = tree / "klines" / "BTCUSDT" / "1m" / "202001.pqt"
    out.parent.mkdir(parents=True)
    storage.write_table_numeric(table, out)
    (tree / "zips").mkdir()
    (tree / "zips" / ZIP).write_bytes(zip_bytes)
    (tree / "zips" / f"{ZIP}.CHECKSUM").write_bytes((REAL / f"{ZIP}.CHECKSUM").read_bytes())
    return {p.relative_to(tree).as_posix(): p.read_bytes() for p in tree.rglob("*") if p.is_file()}


@pytest.fixture
def published(s3_bucket: str, tmp_path: Path):
    """(store, url, the published files) after a writer published `real_files`."""
    store = open_store(s3_bucket, load_settings().store)
    layout, tree = tree_of(tmp_path / "writer")
    base = sync_down(store, layout, tree)
    content = real_files(tree)
    publish(store, layout, tree, base)
    return store, s3_bucket, content


@pytest.fixture
def reader(published, s3_server, tmp_path: Path):
    """A fresh working copy synced with placeholders, active in this process: (layout, tree, index)."""
    store, url, _ = published
    layout, tree = tree_of(tmp_path / "reader")
    index = lazy.Index(lazy.index_path(layout.root))
    # The store's access as a command has it (from the AWS variables): pool workers get it with their work.
    lazy.activate(lazy.LazyContext(str(lazy.index_path(layout.root)), url, access(s3_server)))
    try:
        sync_down(store, layout, tree, placeholders=index)
        yield layout, tree, index
    finally:
        lazy.activate(None)
        index.close()


def test_a_sync_leaves_large_files_as_placeholders_that_a_read_fetches(published, reader) -> None:
    _, _, content = published
    _, tree, index = reader
    manifest = read_manifest(published[0], "parsed_data/spot")
    large = {rel for rel, data in content.items() if len(data) >= lazy.MIN_LAZY_BYTES}
    assert large == {"klines/BTCUSDT/1m/202001.pqt", f"zips/{ZIP}"}
    for rel, data in content.items():
        st = os.stat(tree / rel)
        # What planners see is the published file: its size and the writer's mtime.
        assert (st.st_size, st.st_mtime_ns) == (len(data), manifest.objects[rel]["mtime_ns"])
        assert index.holds(tree / rel) == (rel in large)
        if rel in large:
            assert st.st_blocks == 0  # sparse: no bytes on disk
        else:
            assert (tree / rel).read_bytes() == data  # fetched by the sync
    before = lazy.fetched()
    zip_path = tree / "zips" / ZIP
    assert storage.sha256_file(zip_path)[0] == hashlib.sha256(content[f"zips/{ZIP}"]).hexdigest()
    assert lazy.fetched() == before + 1 and not index.holds(zip_path)
    assert index.count() == 1  # the fetched placeholder's row went with its inode (a reused inode number is no placeholder)
    assert os.stat(zip_path).st_mtime_ns == manifest.objects[f"zips/{ZIP}"]["mtime_ns"]  # still unchanged to planners
    assert storage.read_bytes(zip_path) == content[f"zips/{ZIP}"] and lazy.fetched() == before + 1  # read once


def test_a_placeholders_footer_is_read_alone(published, reader) -> None:
    """Planners read footers of every output (is it whole, what was it built from): a placeholder
    answers from one ranged read of the object's tail and stays a placeholder."""
    _, _, content = published
    _, tree, index = reader
    pqt = tree / "klines" / "BTCUSDT" / "1m" / "202001.pqt"
    real = tree.parent / "real.pqt"
    real.write_bytes(content["klines/BTCUSDT/1m/202001.pqt"])
    before = lazy.fetched()
    assert storage.ends_like_parquet(pqt)
    assert storage.footer_frame(pqt) == storage.footer_frame(real)
    assert storage.parquet_schema(pqt).equals(storage.parquet_schema(real), check_metadata=True)
    assert storage.parquet_metadata(pqt).num_rows == 1440 == storage.parquet_metadata(real).num_rows
    assert lazy.fetched() == before and index.holds(pqt)
    # Reading rows fetches it; the table is the real file's.
    assert storage.read_table(pqt).equals(storage.read_table(real))
    assert lazy.fetched() == before + 1 and not index.holds(pqt)


def test_a_placeholder_follows_links_and_folder_swaps(published, reader) -> None:
    """`generate` links unchanged results into a staging tree and swaps it in: the index is by
    inode, so the placeholder is still one under its new names, and each name reads the real bytes."""
    _, _, content = published
    _, tree, index = reader
    source = tree / "zips" / ZIP
    staging = tree.parent / "staging"
    staging.mkdir()
    storage.link_or_copy(source, staging / ZIP)
    assert index.holds(staging / ZIP)
    swapped = tree.parent / "swapped"
    os.rename(staging, swapped)
    assert storage.read_bytes(swapped / ZIP) == content[f"zips/{ZIP}"]
    # The other name is another file now (the fetched one was renamed over the link); it is still a placeholder.
    assert index.holds(source) and storage.read_bytes(source) == content[f"zips/{ZIP}"]
    assert not index.holds(source) and index.count() == 1  # its inode has no name left: its row is gone


def test_a_truncated_fetch_leaves_the_placeholder(published, reader, s3_server) -> None:
    """An object shorter than published (a damaged bucket, a cut transfer) is an error naming the
    file; the placeholder stays (no half file takes its place) and the next read tries again."""
    store, _, content = published
    _, tree, index = reader
    zip_path = tree / "zips" / ZIP
    key = paths.store_key("parsed_data/spot", read_manifest(store, "parsed_data/spot").objects[f"zips/{ZIP}"]["key"])
    good = content[f"zips/{ZIP}"]
    store.put(key, good[:1000])
    with pytest.raises(OSError, match="fetched 1000 bytes"):
        storage.read_bytes(zip_path)
    assert index.holds(zip_path) and not list(zip_path.parent.glob(f"*{paths.TEMP_MARKER}"))
    store.put(key, good)
    assert storage.read_bytes(zip_path) == good


def test_publish_never_uploads_a_placeholders_zeros(published, reader) -> None:
    """Even with its sync record lost (every file then looks changed), a publish reads placeholders
    through the store: the bucket keeps the real bytes and no generation is made."""
    store, _, content = published
    layout, tree, _ = reader
    base = read_manifest(store, "parsed_data/spot")
    paths.sync_record(layout, "parsed_data/spot").unlink()
    after = publish(store, layout, tree, base)
    assert after.generation == base.generation
    for rel, obj in read_manifest(store, "parsed_data/spot").objects.items():
        found = store.read(paths.store_key("parsed_data/spot", obj["key"]))
        assert found is not None and found[0] == content[rel]


def test_without_lazy_sync_the_copy_is_full(published, tmp_path: Path) -> None:
    """BHDS_LAZY_SYNC=0: a full copy, as before (every byte on disk)."""
    store, url, content = published
    assert load_settings({"CRYPTO_BASE_DIR": url, "BHDS_LAZY_SYNC": "0"}).store.lazy_sync is False
    layout, tree = tree_of(tmp_path / "full")
    sync_down(store, layout, tree)
    assert {p.relative_to(tree).as_posix(): p.read_bytes() for p in tree.rglob("*") if p.is_file()} == content


def test_the_pool_workers_read_placeholders(published, reader) -> None:
    """A worker process of the pool gets the index with its work: it reads real bytes, not zeros."""
    from bhds.parallel import imap_isolated

    _, _, content = published
    _, tree, _ = reader
    names = [tree / "klines" / "BTCUSDT" / "1m" / "202001.pqt", tree / "zips" / ZIP]
    got = dict(imap_isolated(_digest, names, n_jobs=2))
    assert got == {p: hashlib.sha256(content[p.relative_to(tree).as_posix()]).hexdigest() for p in names}


def _digest(path: Path) -> str:
    return storage.sha256_file(path)[0]


def test_a_dataset_over_a_folder_fetches_its_placeholders(published, reader) -> None:
    _, _, content = published
    _, tree, _ = reader
    folder = tree / "klines" / "BTCUSDT" / "1m"
    table = storage.open_dataset(folder).to_table()  # pyarrow lists the folder and reads it itself
    expected = pq.read_table(pa.BufferReader(content["klines/BTCUSDT/1m/202001.pqt"]))
    assert table.num_rows == 1440 and table.equals(expected)


def test_lazy_sync_turned_off_fetches_the_placeholders_left(published, reader) -> None:
    """BHDS_LAZY_SYNC=0 on a copy that has placeholders: the index stays in force and the sync
    fetches them (before: left as zeros that a command would have read)."""
    store, _, content = published
    layout, tree, index = reader
    assert index.count() == 2
    full = lazy.Index(lazy.index_path(layout.root), making=False)
    try:
        sync_down(store, layout, tree, placeholders=full)
        assert not any(full.holds(tree / rel) for rel in content)
    finally:
        full.close()
    assert {p.relative_to(tree).as_posix(): p.read_bytes() for p in tree.rglob("*") if p.is_file()} == content


def test_same_bytes_compares_placeholders_by_etag(published, reader) -> None:
    """`generate` keeps a rebuilt file's predecessor when the bytes are equal: two placeholders of one
    object are equal without a fetch; a placeholder and a real file compare by their bytes."""
    _, _, content = published
    _, tree, index = reader
    zip_path = tree / "zips" / ZIP
    linked = tree / "zips" / "linked.zip"
    storage.link_or_copy(zip_path, linked)
    before = lazy.fetched()
    assert storage.same_bytes(zip_path, linked) and lazy.fetched() == before
    other = tree / "other.zip"
    other.write_bytes(content[f"zips/{ZIP}"][:-1] + b"x")
    assert not storage.same_bytes(zip_path, other)  # the old code compared the placeholder's zeros
    other.write_bytes(content[f"zips/{ZIP}"])
    assert storage.same_bytes(linked, other)


def test_a_detached_task_sends_a_linked_placeholder_by_its_key(published, reader, s3_server, tmp_path: Path) -> None:
    """On a worker without the client's folder, a task that links a carried-over file (a placeholder)
    into its outputs returns that file's object key, and uploads only what it wrote itself: never
    a placeholder's zeros (`detached._upload`)."""
    from bhds.objstore import detached
    from bhds.storage import journal

    store, url, content = published
    worker_root = tmp_path / "worker" / "binance_data"
    manifest = read_manifest(store, "parsed_data/spot")
    listing = {"parsed_data/spot": manifest.objects}
    key = paths.store_key(".bhds", "_g000001.test0000/snapshot-x.json")
    store.put(key, json.dumps(listing).encode())
    snap = detached.Snapshot("x", key, str(worker_root), url, access(s3_server).without_secrets(),
                             str(tmp_path / "no-client-marker"), {"parsed_data/spot": "_g000002.test0000"},
                             {"parsed_data/spot": manifest.generation})
    tree = worker_root / "parsed_data" / "spot"

    def task(_: object) -> str:
        storage.link_or_copy(tree / "zips" / ZIP, tree / "staging.bhds-build" / ZIP)  # carried over
        storage.write_bytes(b"built here" * 1000, tree / "built.bin")
        return "done"

    try:
        outputs = detached.run_task(task, None, snap)
    finally:
        lazy.activate(None)
    assert lazy.current() is None  # the task's context did not outlive it in this thread
    assert isinstance(outputs, detached.Outputs) and outputs.result == "done" and journal._current.get() is None
    sent = {Path(name).relative_to(tree).as_posix(): (k, etag) for name, k, etag, _, _ in outputs.written}
    published_key = paths.store_key("parsed_data/spot", manifest.objects[f"zips/{ZIP}"]["key"])
    assert sent[f"staging.bhds-build/{ZIP}"] == (published_key, manifest.objects[f"zips/{ZIP}"]["etag"])
    assert sent["built.bin"][0] == paths.store_key("parsed_data/spot", "_g000002.test0000/built.bin")
    assert store.read(sent["built.bin"][0])[0] == b"built here" * 1000
    assert not [k for k in store.list("binance_data/parsed_data/spot/_g000002.test0000/") if ZIP in k]


def test_two_runs_with_the_same_listing_get_different_snapshots(published, reader, s3_server) -> None:
    """A run that never published may have left outputs in the workers' copies: the next run's
    snapshot must not pass for the same one, even when its listing is the same bytes."""
    from bhds.objstore import detached

    store, _, _ = published
    layout, tree, _ = reader
    bases = {tree: read_manifest(store, "parsed_data/spot")}
    one, two = (detached.Session(store, layout, access(s3_server), [tree], bases, {}) for _ in range(2))
    first, second = detached.snapshot(one, None), detached.snapshot(two, None)
    assert first.id != second.id
    assert store.read(first.key)[0] == store.read(second.key)[0]  # the same listing


def test_a_worker_copy_path_holding_someones_files_is_refused_not_emptied(published, s3_server, tmp_path: Path) -> None:
    """A worker whose copy path already holds files bhds never synced there (someone's data folder)
    stops the task in one line and deletes nothing."""
    from bhds.errors import ConfigError
    from bhds.objstore import detached

    store, url, _ = published
    worker_root = tmp_path / "worker" / "binance_data"
    theirs = worker_root / "parsed_data" / "spot" / "klines" / "THEIRS" / "1m" / "202001.pqt"
    theirs.parent.mkdir(parents=True)
    theirs.write_bytes(b"someone's data")
    manifest = read_manifest(store, "parsed_data/spot")
    key = paths.store_key(".bhds", "_g000001.test0001/snapshot-y.json")
    store.put(key, json.dumps({"parsed_data/spot": manifest.objects}).encode())
    snap = detached.Snapshot("y", key, str(worker_root), url, access(s3_server).without_secrets(),
                             str(tmp_path / "no-client-marker"), {"parsed_data/spot": "_g000002.test0001"},
                             {"parsed_data/spot": manifest.generation})
    with pytest.raises(ConfigError, match="never published"):
        detached.run_task(lambda _: None, None, snap)
    assert theirs.read_bytes() == b"someone's data"
