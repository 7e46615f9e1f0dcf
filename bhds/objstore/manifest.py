"""A tree's published generation, and the local working copy kept equal to it.

The manifest `binance_data/<tree>/_manifest.json` is the tree: its generation number and, per
file, the object key (inside the tree), ETag, size and the writer's mtime (`mtime_ns`: a synced copy
carries it, so the stages' size-and-mtime checks see an unchanged input as unchanged on every
machine; manifests published before it existed lack it and still sync). Objects are never overwritten once published:
generation N's new or changed files go under `_g<N>.<writer token>/`, unchanged ones keep their
key. Publishing is: upload, then replace the manifest with `If-Match` on the one the run started
from (a writer that was overtaken fails instead of publishing over it), then delete the objects
that neither this generation nor the previous one lists (a reader that fetched the previous
manifest a moment ago can still read its files): the keys the manifest names as collectable, and
the generation folders of writers that never published, found by one delimited listing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from bhds import paths
from bhds.errors import ConfigError, LockBusy
from bhds.objstore import lazy
from bhds.objstore.store import ObjectStore
from bhds.paths import Layout

log = logging.getLogger("bhds")
MANIFEST_FORMAT = 1


@dataclass
class Manifest:
    tree: str
    generation: int = 0
    objects: dict[str, dict] = field(default_factory=dict)  # file (relative to the tree) -> {key, etag, size, mtime_ns}
    etag: str | None = None  # of the manifest object itself; None: nothing published yet
    # Keys the previous generation listed and this one does not: kept by the garbage collection for
    # readers still on the previous generation.
    superseded: list[str] = field(default_factory=list)
    # Keys this generation's garbage collection deletes: those the previous generation superseded
    # (no reader needs them once this one is published), and the previous collection's own if it
    # never finished. Kept in the manifest so that a writer killed before collecting leaves the work
    # to the next one, and no collection has to list the whole tree. None: a manifest from before
    # the field, whose unfinished collection (if any) falls back to listing every generation's keys.
    collectable: list[str] | None = field(default_factory=list)

    def to_bytes(self) -> bytes:
        return json.dumps({"format": MANIFEST_FORMAT, "tree": self.tree, "generation": self.generation,
                           "published": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                           "objects": self.objects, "superseded": self.superseded, "collectable": self.collectable},
                          indent=0, sort_keys=True).encode()


def read_manifest(store: ObjectStore, tree: str) -> Manifest:
    """The published generation of `tree` (generation 0, empty, when none was published)."""
    found = store.read(paths.store_key(tree, paths.STORE_MANIFEST))
    return Manifest(tree) if found is None else _parse(tree, *found)


def _parse(tree: str, data: bytes, etag: str) -> Manifest:
    body = json.loads(data)
    collectable = body.get("collectable")  # None: written before bhds recorded it (see `Manifest.collectable`)
    return Manifest(tree, int(body["generation"]), dict(body["objects"]), etag, list(body.get("superseded", [])),
                    None if collectable is None else list(collectable))


def _read_manifest_kept(store: ObjectStore, layout: Layout, tree: str, record: dict) -> Manifest:
    """The published manifest, its body fetched only when its ETag is not the one this working copy
    kept at its last sync or publish (one HEAD then): a market's mirror of a million files has a
    manifest of some 200 MB, and every command reading the tree syncs it."""
    kept = paths.synced_manifest(layout, tree)
    if record.get("manifest_etag") and kept.exists():
        head = store.head(paths.store_key(tree, paths.STORE_MANIFEST))
        if head is not None and head.etag == record["manifest_etag"]:
            try:
                return _parse(tree, kept.read_bytes(), head.etag)
            except (OSError, ValueError, KeyError):
                pass  # a damaged copy: fetch the published one
    found = store.read(paths.store_key(tree, paths.STORE_MANIFEST))
    if found is None:
        return Manifest(tree)
    _keep_manifest(layout, tree, found[0])
    return _parse(tree, *found)


def _keep_manifest(layout: Layout, tree: str, data: bytes) -> None:
    from bhds.storage import write_bytes

    kept = paths.synced_manifest(layout, tree)
    kept.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(data, kept)


def local_files(tree_dir: Path, tree: str, inodes: dict[str, tuple[int, int]] | None = None) -> dict[str, tuple[int, int]]:
    """Every publishable file of a local tree: relative path -> (size, mtime_ns); `inodes` gets (dev, inode).

    Walked with `os.scandir` and paths joined as strings: a market's mirror holds hundreds of
    thousands of files, and every command that syncs or publishes the tree walks it.
    """
    out: dict[str, tuple[int, int]] = {}
    # Links followed: a results folder may be a symlink to another disk (`paths.swap_home`), its files are the tree's.
    pending = [(os.fspath(tree_dir), "")]
    while pending:
        folder, prefix = pending.pop()
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            rel = prefix + entry.name
            if entry.is_dir():  # follows links
                pending.append((entry.path, rel + "/"))
            elif not paths.store_skips(tree, rel):
                st = entry.stat()
                out[rel] = (st.st_size, st.st_mtime_ns)
                if inodes is not None:
                    inodes[rel] = (st.st_dev, st.st_ino)
    return dict(sorted(out.items()))


def _load_record(layout: Layout, tree: str) -> dict:
    try:
        return json.loads(paths.sync_record(layout, tree).read_text())
    except (FileNotFoundError, ValueError):
        return {"generation": None, "files": {}}


def _save_record(layout: Layout, tree: str, generation: int, files: dict[str, list], manifest_etag: str | None) -> None:
    from bhds.storage import write_bytes

    record = paths.sync_record(layout, tree)
    record.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(json.dumps({"generation": generation, "files": files, "manifest_etag": manifest_etag}).encode(), record)


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _drop_sqlite_sides(path: Path) -> None:
    """A replaced SQLite file must not meet the old file's WAL (SQLite would replay it onto the new one)."""
    for suffix in ("-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


def sync_down(store: ObjectStore, layout: Layout, tree_dir: Path, attempts: int = 3, *,
              placeholders: lazy.Index | None = None) -> Manifest:
    """Make the local tree equal to its published generation; fetch only files whose ETag or local copy changed.

    With `placeholders`, a file of at least `lazy.MIN_LAZY_BYTES` outside `.bhds` is not fetched
    but becomes a placeholder, fetched when read (`bhds.objstore.lazy`).
    An object gone while fetching means two generations were published meanwhile (the older one's
    objects collected): read the manifest again.
    """
    for attempt in range(1, attempts + 1):
        try:
            return _sync_once(store, layout, tree_dir, placeholders)
        except FileNotFoundError:
            if attempt == attempts:
                raise
            log.info("%s: a newer generation was published while syncing; syncing again", tree_dir)
    raise AssertionError("unreachable")


def _sync_once(store: ObjectStore, layout: Layout, tree_dir: Path, placeholders: lazy.Index | None) -> Manifest:
    tree = paths.store_tree_name(layout, tree_dir)
    record = _load_record(layout, tree)
    manifest = _read_manifest_kept(store, layout, tree, record)
    if tree == paths.store_tree_name(layout, layout.state_dir):
        placeholders = None  # the state database and caches are opened by SQLite, not read through storage
    files, counts = make_equal(store, layout, tree_dir, manifest.objects, record, placeholders)
    if files != record["files"] or record["generation"] != manifest.generation or record.get("manifest_etag") != manifest.etag:
        _save_record(layout, tree, manifest.generation, files, manifest.etag)
    if any(counts):
        log.info("%s: working copy at generation %d (%d fetched, %d placeholders, %d removed, %d re-timed)",
                 tree, manifest.generation, *counts)
    return manifest


def make_equal(store: ObjectStore, layout: Layout, tree_dir: Path, objects: dict[str, dict], record: dict,
               placeholders: lazy.Index | None) -> tuple[dict[str, list], tuple[int, int, int, int]]:
    """Make the local tree hold exactly `objects` (a manifest's, or a cluster worker's listing, see
    `objstore.detached`), given the `record` of what it held; return the new record's files and the
    counts (fetched, placeholders made, removed, re-timed)."""
    tree = paths.store_tree_name(layout, tree_dir)
    inodes: dict[str, tuple[int, int]] = {}
    local = local_files(tree_dir, tree, inodes)
    fetch = []
    retime = []  # files already equal to their object whose mtime is not the published one
    # BHDS_LAZY_SYNC=0 after placeholders were made: they are fetched now like changed files.
    unwanted = set() if placeholders is None or placeholders.making else placeholders.inodes(tree)
    for rel, obj in objects.items():
        known = record["files"].get(rel)
        if known is None or known[0] != obj["etag"] or tuple(known[1:]) != local.get(rel):
            fetch.append(rel)
        elif unwanted and (*inodes[rel], *local[rel]) in unwanted:
            fetch.append(rel)
        elif "mtime_ns" in obj and local[rel][1] != obj["mtime_ns"]:
            retime.append(rel)
    deferred: list[str] = []  # fetched when read
    if placeholders is not None and placeholders.making:
        deferred = [rel for rel in fetch if objects[rel]["size"] >= lazy.MIN_LAZY_BYTES]
        fetch = [rel for rel in fetch if objects[rel]["size"] < lazy.MIN_LAZY_BYTES]
        for rel in deferred:
            _drop_sqlite_sides(tree_dir / rel)
        # A placeholder's mtime is part of what marks it: re-timing one is making it again.
        again = [rel for rel in retime if placeholders.holds(tree_dir / rel)]
        retime = [rel for rel in retime if rel not in set(again)]
        deferred += again
        now = time.time_ns()  # for a manifest from before `mtime_ns`: a fetch would have given the fetch time
        placeholders.make(tree, [(tree_dir / rel, paths.store_key(tree, objects[rel]["key"]), objects[rel]["etag"],
                                  objects[rel]["size"], objects[rel].get("mtime_ns", now)) for rel in deferred])
    token = secrets.token_hex(4)
    temps = {rel: paths.temp_path(tree_dir / rel, token) for rel in fetch}
    for temp in temps.values():
        temp.parent.mkdir(parents=True, exist_ok=True)
    try:
        store.get_files([(paths.store_key(tree, objects[rel]["key"]), temps[rel]) for rel in fetch])
    except BaseException:
        for temp in temps.values():
            temp.unlink(missing_ok=True)
        raise
    for rel, temp in temps.items():
        os.replace(temp, tree_dir / rel)
        _drop_sqlite_sides(tree_dir / rel)
    for rel in [*temps, *retime]:
        published_mtime = objects[rel].get("mtime_ns")
        if published_mtime is not None:  # the writer's mtime, not the fetch time: nothing looks changed downstream
            os.utime(tree_dir / rel, ns=(published_mtime, published_mtime))
    stale = [rel for rel in local if rel not in objects]
    if stale and not paths.sync_record(layout, tree).exists():
        # Never synced here: these files are not a stale copy of the bucket but someone's data
        # (BHDS_WORK_DIR pointed at an existing data folder). Deleting them would lose it.
        raise ConfigError(f"{tree_dir} holds {len(stale)} files the bucket never published (e.g. {stale[0]}): "
                          "BHDS_WORK_DIR must be an empty folder or bhds' own working copy; point it elsewhere "
                          "or move those files")
    for rel in stale:
        (tree_dir / rel).unlink(missing_ok=True)
        _drop_sqlite_sides(tree_dir / rel)
        _prune_empty(tree_dir, (tree_dir / rel).parent)
    files = {}
    touched = {*temps, *retime, *deferred}
    for rel, obj in objects.items():
        if rel in touched:
            st = os.stat(tree_dir / rel)
            files[rel] = [obj["etag"], st.st_size, st.st_mtime_ns]
            inodes[rel] = (st.st_dev, st.st_ino)
        else:  # untouched by this sync: its stat is the one just walked
            files[rel] = [obj["etag"], *local[rel]]
    if placeholders is not None:
        placeholders.forget_except(tree, {inodes[rel] for rel in objects})
    return files, (len(fetch), len(deferred), len(stale), len(retime))


def _prune_empty(top: Path, folder: Path) -> None:
    """Remove folders emptied by a sync (an object store has no empty folders, so neither has a synced copy)."""
    while folder != top and folder.is_relative_to(top):
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


def in_bucket(tree: str, path: Path, stat: tuple[int, int], staged: Mapping[str, tuple[int, int, str, str]] | None
              ) -> dict | None:
    """The manifest entry of a file of `tree` whose bytes are in the bucket already, though not as
    what the run synced: a placeholder (a worker's upload, or one whose sync record was lost; never
    read, its bytes here are zeros) or a file `staged` by this run (path -> (size, mtime_ns, key,
    ETag)) and unchanged since. None for any other file."""
    if (held := lazy.placeholder_object(path)) is not None:
        key, etag = held
    elif staged and (hit := staged.get(os.fspath(path))) is not None and hit[:2] == stat:
        key, etag = hit[2:]
    else:
        return None
    return {"key": key.removeprefix(paths.store_key(tree, "")), "etag": etag, "size": stat[0], "mtime_ns": stat[1]}


def publish(store: ObjectStore, layout: Layout, tree_dir: Path, base: Manifest,
            still_held: Callable[[], bool] = lambda: True, folder: str | None = None,
            staged: Mapping[str, tuple[int, int, str, str]] | None = None) -> Manifest:
    """Publish the local tree as the generation after `base` (the one the run synced from), if anything changed.

    `still_held` is asked just before the manifest is replaced: a run that lost its lease stops there.
    `folder` is the run's generation folder, where cluster workers may have uploaded outputs already
    (`objstore.detached`); by default a new one. `staged`: files this run uploaded already, path ->
    (size, mtime_ns, key, ETag), listed as they are while unchanged.
    """
    tree = base.tree
    record = _load_record(layout, tree)
    local = local_files(tree_dir, tree)
    keep: dict[str, dict] = {}
    placed: dict[str, dict] = {}  # placeholders whose bytes are already in the bucket under another key
    upload: list[str] = []
    for rel, stat in local.items():
        obj, known = base.objects.get(rel), record["files"].get(rel)
        if obj is not None and known is not None and known[0] == obj["etag"] and tuple(known[1:]) == stat:
            # Untouched since the sync: its published mtime stays (a file system keeping coarser times
            # than the writer's must not make a generation). A manifest from before `mtime_ns` gains
            # this one with the next generation that changes anything else.
            keep[rel] = obj if "mtime_ns" in obj else {**obj, "mtime_ns": stat[1]}
        elif (found := in_bucket(tree, tree_dir / rel, stat, staged)) is not None:
            if obj is not None and obj["key"] == found["key"]:
                keep[rel] = {**obj, "mtime_ns": stat[1]}
            else:
                placed[rel] = found
        elif obj is not None and "-" not in obj["etag"] and obj["size"] == stat[0] and _md5(tree_dir / rel) == obj["etag"]:
            keep[rel] = {**obj, "mtime_ns": stat[1]}  # rewritten with the same bytes: only its mtime is new
        else:
            upload.append(rel)
    # A rewritten file's new mtime alone is a change worth a generation: the stages' records on this
    # machine name that mtime, and a copy synced elsewhere must match them.
    retimed = [rel for rel, obj in keep.items() if base.objects[rel].get("mtime_ns", obj["mtime_ns"]) != obj["mtime_ns"]]
    if not upload and not placed and not retimed and set(keep) == set(base.objects):
        finish_collection(store, base)  # a writer killed after publishing may not have collected
        return base
    generation = base.generation + 1
    folder = folder or paths.store_generation_dir(generation, secrets.token_hex(4))
    assert paths.store_generation_of(folder) == generation, folder
    sizes = {rel: local[rel][0] for rel in upload}
    etags = store.put_files([(tree_dir / rel, paths.store_key(tree, f"{folder}/{rel}")) for rel in upload])
    objects = {**keep, **placed}
    for rel in upload:
        objects[rel] = {"key": f"{folder}/{rel}", "etag": etags[paths.store_key(tree, f"{folder}/{rel}")], "size": sizes[rel],
                        "mtime_ns": local[rel][1]}
    listed = {obj["key"] for obj in objects.values()}
    superseded = sorted({obj["key"] for obj in base.objects.values()} - listed)
    finished = collection_finished(store, base)
    if not finished and base.collectable is None:
        _collect(store, base)  # an older manifest names no keys to carry over: collect it now
        finished = True
    collectable = sorted({*base.superseded, *([] if finished else base.collectable or [])})
    new = Manifest(tree, generation, dict(sorted(objects.items())), superseded=superseded, collectable=collectable)
    if not still_held():
        raise LockBusy(f"the lease of {tree} was lost before publishing (this run stalled longer than BHDS_LEASE_SECONDS): "
                       "run the command again")
    key = paths.store_key(tree, paths.STORE_MANIFEST)
    data = new.to_bytes()
    new.etag = store.replace(key, data, base.etag) if base.etag else store.create(key, data)
    if new.etag is None:
        raise LockBusy(f"{tree} was published by another writer during this run: run the command again")
    _keep_manifest(layout, tree, data)
    _save_record(layout, tree, generation, {rel: [obj["etag"], *local[rel]] for rel, obj in new.objects.items()}, new.etag)
    _collect(store, new)  # just published: its collection cannot have run
    if placed:
        # Worker uploads this generation does not list (a file a later task replaced or removed, an
        # output whose result never came back) were never published: no reader can need them.
        own = paths.store_key(tree, f"{folder}/")
        stray = sorted(set(store.list(own)) - {paths.store_key(tree, obj["key"]) for obj in objects.values()})
        store.delete(stray)
    log.info("%s: published generation %d (%d files uploaded, %d uploaded by workers, %d kept, %d re-timed)",
             tree, generation, len(upload), len(placed), len(keep), len(retimed))
    return new


def collect_garbage(store: ObjectStore, manifest: Manifest) -> int:
    """Delete what no reader of `manifest`'s generation or its predecessor can need; the count deleted.

    That is the keys it lists as collectable, and every generation folder (`_g<N>.<writer>/`) that no
    key of the two generations lives in: uploads of writers killed or overtaken before publishing.
    Each folder holds one writer's uploads, so one delimited listing of the folders finds them:
    the requests grow with the changes and the number of generations, not with the tree's files.
    Only folders of generations up to `manifest`'s are candidates: a later one is a newer generation
    or the upload of a writer building on this one, and this collection may be a stalled writer's,
    resumed after its lease expired (the collection of that later generation removes it if dead).
    """
    tree = manifest.tree
    live = {*manifest.superseded, *(obj["key"] for obj in manifest.objects.values())}
    live_folders = {key.split("/", 1)[0] for key in live}
    doomed = {paths.store_key(tree, key) for key in manifest.collectable or () if key not in live}
    for folder in store.folders(paths.store_key(tree, "_g")):
        name = folder.rstrip("/").rsplit("/", 1)[-1]
        generation = paths.store_generation_of(name)
        if generation is None or generation > manifest.generation:
            continue
        if name not in live_folders:
            doomed.update(store.list(folder))
        elif manifest.collectable is None:  # an older manifest: its dead keys are found by listing
            doomed.update(key for key in store.list(folder) if key.removeprefix(paths.store_key(tree, "")) not in live)
    store.delete(sorted(doomed))
    return len(doomed)


def collection_finished(store: ObjectStore, manifest: Manifest) -> bool:
    """Whether `manifest`'s garbage collection ran to the end (or there was none to run)."""
    if manifest.generation == 0:
        return True
    done = store.read(paths.store_key(manifest.tree, paths.STORE_COLLECTED))
    return done is not None and done[0] == str(manifest.generation).encode()


def finish_collection(store: ObjectStore, manifest: Manifest) -> None:
    """Collect the garbage of `manifest`'s generation unless that was done (one GET when it was)."""
    if not collection_finished(store, manifest):
        _collect(store, manifest)


def _collect(store: ObjectStore, manifest: Manifest) -> None:
    """Collect `manifest`'s garbage, then record that it is done (`_collected`)."""
    collect_garbage(store, manifest)
    store.put(paths.store_key(manifest.tree, paths.STORE_COLLECTED), str(manifest.generation).encode())


def published_files(url: str, tree: str) -> dict[str, str]:
    """The files of a published tree (e.g. `results_data/spot`), path inside the tree -> object URL.

    For reading the bucket without a working copy: `pd.read_parquet(files["klines/1m/BTCUSDT.pqt"],
    storage_options=...)`. The URLs stay readable until the generation after next is published.
    """
    from bhds.objstore.store import open_store
    from bhds.settings import load_settings

    store = open_store(url, load_settings({**os.environ, "CRYPTO_BASE_DIR": url}).store)
    manifest = read_manifest(store, tree.strip("/"))
    return {rel: f"{store.url}/{paths.store_key(manifest.tree, obj['key'])}" for rel, obj in manifest.objects.items()}
