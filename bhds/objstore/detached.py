"""Tasks on Dask workers that do not see the client's working copy: each works in a copy of its own.

With a bucket root, the client runs a command in its working copy (`workcopy`). A worker on
another machine has no such folder, so it keeps its own copy at the same path on its own disk
(`BHDS_WORK_DIR`, or the default under the user's cache) and the bucket carries everything
between the two; no data file passes through the client.

1. Before a round of tasks, the client lists its copy of the command's trees as objects
   (`snapshot`): a placeholder's object, a file unchanged since the sync its published object; a
   file the client itself wrote in this run is uploaded first, into the run's generation folder.
2. A task's worker makes its copy equal to that listing (`manifest.make_equal`: small files
   fetched, the others placeholders), runs the task with a journal of its writes
   (`storage.journal`), uploads each file written into the run's generation folder of its tree,
   and returns the keys, ETags, sizes and mtimes with the task's result (`Outputs`).
3. The client makes a placeholder for each such file and removes what the task removed (`apply`);
   publishing lists those placeholders under their keys (`manifest.publish`), so the files are
   never fetched by the client unless it reads them.

A worker whose folder at that path *is* the client's (same machine or a shared filesystem) sees the
client's marker file and runs the task in place, as before. Uploads of a run that never publishes
lie in its generation folders, which the next publish of the tree collects (see `manifest`).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bhds import paths
from bhds.objstore import lazy
from bhds.objstore.manifest import Manifest, _load_record, _save_record, in_bucket, local_files, make_equal
from bhds.paths import Layout

if TYPE_CHECKING:
    from bhds.objstore.store import ObjectStore
    from bhds.settings import StoreAccess

log = logging.getLogger("bhds")
WORKER_LOCK_WAIT_S = 3600.0  # a task waits this long for a command of the worker machine's own to finish


class Session:
    """The client's side: the running command's store, working copy, trees and generation folders."""

    def __init__(self, store: ObjectStore, layout: Layout, access: StoreAccess | None, trees: list[Path],
                 bases: dict[Path, Manifest], folders: dict[Path, str]) -> None:
        self.store, self.layout, self.access = store, layout, access
        self.trees = [tree for tree in trees if tree != layout.state_dir]  # tasks never open the state database
        self.bases, self.folders = bases, folders
        # Files this client uploaded for a snapshot: path -> (size, mtime_ns, key, etag); a publish lists
        # them as uploaded (not again) while unchanged.
        self.staged: dict[str, tuple[int, int, str, str]] = {}
        self.read_folders: dict[Path, str] = {}  # see `folder_of`
        self.snapshots: list[str] = []  # keys of the listings uploaded for workers, deleted at the end
        self.marker = paths.client_marker(layout, secrets.token_hex(8))
        self.index: lazy.Index | None = None


    def folder_of(self, tree_dir: Path) -> str:
        """The generation folder this run uploads into for `tree_dir`. A tree the command only reads
        gets one of its own (never published: collected by that tree's next publish)."""
        if tree_dir in self.folders:
            return self.folders[tree_dir]
        generation = self.bases[tree_dir].generation + 1 if tree_dir in self.bases else 1
        return self.read_folders.setdefault(tree_dir, paths.store_generation_dir(generation, secrets.token_hex(4)))


_session: Session | None = None


def current() -> Session | None:
    return _session


@contextmanager
def session(value: Session) -> Iterator[Session]:
    """The running command's session; its marker tells a worker on the client's own folder to work in place."""
    global _session
    from bhds import storage

    value.marker.parent.mkdir(parents=True, exist_ok=True)
    storage.write_bytes(b"", value.marker)
    _session = value
    try:
        yield value
    finally:
        _session = None
        storage.remove(value.marker)
        if value.snapshots:
            value.store.delete(value.snapshots)


class Snapshot:
    """What a worker needs to make its copy equal to the client's. The listing itself (per tree,
    file -> object; as large as the trees' manifests) is an object in the bucket (`key`), read only
    by a machine whose copy is not at this snapshot yet: tasks stay small, and a worker that
    joins or restarts mid-round finds it there."""

    __slots__ = ("id", "key", "data_root", "url", "access", "marker", "folders", "generations")

    def __init__(self, id: str, key: str, data_root: str, url: str, access: StoreAccess | None, marker: str,  # noqa: A002
                 folders: dict[str, str], generations: dict[str, int]) -> None:
        self.id, self.key, self.data_root, self.url, self.access, self.marker = id, key, data_root, url, access, marker
        self.folders, self.generations = folders, generations


def snapshot(s: Session, access: StoreAccess | None) -> Snapshot:
    """List the client's copy of the command's trees as objects, uploading what only the client holds.
    `access` is what the workers get (without keys: they use their own)."""
    listing: dict[str, dict[str, dict]] = {}
    uploads: list[tuple[Path, str, str, int, int]] = []  # (path, tree, full key, size, mtime)
    for tree_dir in s.trees:
        tree = paths.store_tree_name(s.layout, tree_dir)
        base = s.bases[tree_dir]
        record = _load_record(s.layout, tree)
        objects: dict[str, dict] = {}
        for rel, stat in local_files(tree_dir, tree).items():
            path = tree_dir / rel
            obj, known = base.objects.get(rel), record["files"].get(rel)
            if obj is not None and known is not None and known[0] == obj["etag"] and tuple(known[1:]) == stat:
                objects[rel] = {**obj, "mtime_ns": stat[1]}
            elif (found := in_bucket(tree, path, stat, s.staged)) is not None:
                objects[rel] = found
            else:
                uploads.append((path, tree, paths.store_key(tree, f"{s.folder_of(tree_dir)}/{rel}"), *stat))
                objects[rel] = {}  # filled below
        listing[tree] = objects
    if uploads:
        etags = s.store.put_files([(path, key) for path, _, key, _, _ in uploads])
        for path, tree, key, size, mtime in uploads:
            s.staged[str(path)] = (size, mtime, key, etags[key])
            rel = path.relative_to(s.layout.root / tree).as_posix()
            listing[tree][rel] = {"key": key.removeprefix(paths.store_key(tree, "")), "etag": etags[key], "size": size, "mtime_ns": mtime}
        log.info("uploaded %d file(s) of this run for the cluster's workers", len(uploads))
    generations = {paths.store_tree_name(s.layout, tree): base.generation for tree, base in s.bases.items()}
    body = json.dumps(listing, sort_keys=True).encode()
    # The run is part of the identity: a run that never published may have left its outputs in the
    # workers' copies, and the next run's listing can be the same bytes.
    snap_id = hashlib.sha256(body + s.marker.name.encode()).hexdigest()[:16]
    # In the run's folder of `.bhds` (always written): a killed run's is collected with its uploads.
    state = s.layout.state_dir
    key = paths.store_key(paths.store_tree_name(s.layout, state), f"{s.folder_of(state)}/snapshot-{snap_id}.json")
    if key not in s.snapshots:
        s.store.put(key, body)
        s.snapshots.append(key)
    assert s.store.url is not None
    folders = {paths.store_tree_name(s.layout, tree): folder for tree, folder in s.folders.items()}
    return Snapshot(snap_id, key, str(s.layout.root), s.store.url, access, str(s.marker), folders, generations)


class Outputs:
    """A detached task's result and what it left in the bucket: (path, full key, ETag, size, mtime_ns) per
    file written, and the paths (files, and folders ending in '/') it removed."""

    __slots__ = ("result", "written", "removed")

    def __init__(self, result: Any, written: list[tuple[str, str, str, int, int]], removed: list[str]) -> None:
        self.result, self.written, self.removed = result, written, removed


def apply(s: Session, outputs: Outputs) -> Any:
    """Bring a detached task's outputs into the client's copy (placeholders; removals); return its result."""
    from bhds import storage

    for name in outputs.removed:
        if name.endswith(os.sep):
            storage.remove_tree(Path(name))
        else:
            storage.remove(Path(name))
    by_tree: dict[str, list[tuple[Path, str, str, int, int]]] = {}
    for name, key, etag, size, mtime in outputs.written:
        tree = _tree_of(s.layout, s.trees, name)
        by_tree.setdefault(tree, []).append((Path(name), key, etag, size, mtime))
    assert s.index is not None
    for tree, items in by_tree.items():
        s.index.make(tree, items)
    return outputs.result


def _tree_of(layout: Layout, trees: list[Path], name: str) -> str:
    for tree_dir in trees:
        if name.startswith(os.fspath(tree_dir) + os.sep):
            return paths.store_tree_name(layout, tree_dir)
    raise RuntimeError(f"a task wrote {name}, outside the trees this command publishes; run it without a remote "
                       "scheduler and report this")


# ---- the worker's side ----

_worker_index: dict[str, lazy.Index] = {}
_index_lock = threading.Lock()


def run_task(func: Callable[[Any], Any], item: Any, snap: Snapshot) -> Any:
    """Run `item` against the worker's own copy and upload what it wrote; in place on the client's folder.

    Every worker process of a machine shares that copy (the same path): a task runs under a shared
    lock of it, and a copy is made equal to another snapshot only under the exclusive lock, so
    never under a running task (whose outputs are not in the snapshot yet).
    """
    context = lazy.LazyContext(str(lazy.index_path(Path(snap.data_root))), snap.url, snap.access)
    if os.path.exists(snap.marker):  # the client's own folder: work in it, as without a bucket
        with lazy.active_in_task(context):
            return func(item)
    from bhds.storage import stage_lock

    layout = Layout(Path(snap.data_root))
    sync_dir = lazy.index_path(layout.root).parent
    sync_dir.mkdir(parents=True, exist_ok=True)
    # A bhds command of this machine's own on the same working copy (same URL, default path) holds
    # this lock exclusively while it runs: the copy is not changed under it, nor it under a task.
    with stage_lock(layout, paths.WORKING_COPY_LOCK, WORKER_LOCK_WAIT_S, shared=True):
        return _run_in_copy(func, item, snap, layout, sync_dir, context)


def _run_in_copy(func: Callable[[Any], Any], item: Any, snap: Snapshot, layout: Layout, sync_dir: Path,
                 context: lazy.LazyContext) -> Any:
    from bhds.storage import journal

    fd = os.open(sync_dir / "worker.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        while True:
            fcntl.flock(fd, fcntl.LOCK_SH)
            if _synced_id(sync_dir) == snap.id:
                break
            fcntl.flock(fd, fcntl.LOCK_UN)
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                if _synced_id(sync_dir) != snap.id:
                    # Cleared first: a copy left half made (a killed worker) names no snapshot.
                    (sync_dir / "worker-snapshot").unlink(missing_ok=True)
                    _make_copy(snap, layout)
                    (sync_dir / "worker-snapshot").write_text(snap.id)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        with lazy.active_in_task(context), journal.recording() as record:
            result = func(item)
            # Inside the task's context: which written files are placeholders is this copy's index's answer.
            written = _upload(snap, list(record.written))
        return Outputs(result, written, sorted(record.removed) + sorted(record.removed_trees))
    finally:
        os.close(fd)  # releases the lock


def _synced_id(sync_dir: Path) -> str | None:
    try:
        return (sync_dir / "worker-snapshot").read_text()
    except FileNotFoundError:
        return None


def _make_copy(snap: Snapshot, layout: Layout) -> None:
    """Make this machine's copy of the snapshot's trees equal to it."""
    from bhds.objstore.store import open_store

    with _index_lock:
        index = _worker_index.get(snap.data_root)
        if index is None:
            index = _worker_index[snap.data_root] = lazy.Index(lazy.index_path(layout.root))
    store = open_store(snap.url, snap.access)
    found = store.read(snap.key)
    if found is None:
        raise RuntimeError(f"the listing {snap.key} of this run is gone from the store (the run ended?): "
                           "run the command again")
    for tree, objects in json.loads(found[0]).items():
        tree_dir = layout.root / tree
        if not paths.sync_record(layout, tree).exists() and not (tree_dir.exists() and any(tree_dir.iterdir())):
            # A new copy gets its record before any file, so that what a killed first copy leaves is
            # removed like any file the listing does not name. A folder holding files without a record
            # is someone's data at that path: `make_equal` refuses it in one line, never empties it.
            _save_record(layout, tree, 0, {}, None)
        tree_dir.mkdir(parents=True, exist_ok=True)
        files, counts = make_equal(store, layout, tree_dir, objects, _load_record(layout, tree), index)
        _save_record(layout, tree, snap.generations.get(tree, 0), files, None)
        if any(counts):
            log.info("%s: worker copy (%d fetched, %d placeholders, %d removed, %d re-timed)", tree, *counts)


def _upload(snap: Snapshot, written: list[str]) -> list[tuple[str, str, str, int, int]]:
    from bhds.objstore.store import open_store

    layout = Layout(Path(snap.data_root))
    items: list[tuple[str, str]] = []
    linked: list[tuple[str, str, str, int, int]] = []
    state = os.fspath(layout.state_dir) + os.sep
    tree_dirs = [layout.root / tree for tree in snap.generations if layout.root / tree != layout.state_dir]
    for name in written:
        if name.startswith(state) and paths.store_skips(paths.store_tree_name(layout, layout.state_dir), name[len(state):]):
            continue  # the machine's own bookkeeping (link templates, locks)
        tree = _tree_of(layout, tree_dirs, name)
        rel = os.path.relpath(name, layout.root / tree).replace(os.sep, "/")
        # A staging tree is uploaded (the client swaps it in); temp files and partial downloads are not.
        if paths.TEMP_MARKER in rel or rel.endswith(paths.PART_SUFFIX) or not os.path.isfile(name):
            continue
        folder = snap.folders.get(tree)
        if folder is None:
            raise RuntimeError(f"a task wrote {name} in {tree}, a tree this command only reads: run it without a "
                               "remote scheduler and report this")
        held = lazy.placeholder_object(name)
        if held is not None:  # a link to a placeholder (a carried-over file): its bytes are that object's
            st = os.stat(name)
            linked.append((name, held[0], held[1], st.st_size, st.st_mtime_ns))
            continue
        items.append((name, paths.store_key(tree, f"{folder}/{rel}")))
    if items:
        etags = open_store(snap.url, snap.access).put_files([(Path(name), key) for name, key in items])
        for name, key in items:
            st = os.stat(name)
            linked.append((name, key, etags[key], st.st_size, st.st_mtime_ns))
    return linked
