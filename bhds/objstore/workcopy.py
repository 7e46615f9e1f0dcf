"""Run one command against a store URL: sync a local working copy, run the local workflow, publish.

The bucket is the published truth. A command (1) takes the leases of the trees it writes,
(2) brings every tree it reads or writes up to the published generation (only objects whose
ETag changed are fetched, files nobody published are removed), (3) runs the ordinary local
workflow in that copy, so values are those of a local run by construction, (4) publishes each
tree it writes as a new generation (see `manifest`). A run that fails or is killed publishes
nothing: the previous generation stays what readers see, and the next run starts from it.
"""

from __future__ import annotations

import logging
import secrets
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bhds import paths
from bhds.objstore import detached, lazy
from bhds.objstore.lease import Lease, held
from bhds.objstore.manifest import publish, sync_down
from bhds.objstore.store import open_store
from bhds.paths import Layout
from bhds.settings import Settings
from bhds.types import RunSummary, TradeType

log = logging.getLogger("bhds")

# The trees a workflow module writes, besides `.bhds` (every writer's bookkeeping); () writes only
# that. A module not listed is taken to write everything (safe, and serialised with every writer).
WRITES: Mapping[str, tuple[str, ...]] = {
    "archive": ("aws",),
    "parse": ("parsed",),
    "archive_parse": ("parsed",),
    "api_data": ("api",),
    "generate": ("results",),
    "bars": ("results",),
    "indicators": ("results",),
    "quality": (),
}
# The trees a workflow reads besides those it writes and `.bhds`; a target (`module:function`) is
# looked up before its module, and anything not listed reads every tree. A tree a command does not
# read is not synced: an archive command does not walk the parsed or results trees, which on a full
# archive hold hundreds of thousands of files. Over-listing costs a sync; under-listing would
# run a stage on a stale copy, so an entry here names every tree the stage or its tasks open or list.
READS: Mapping[str, tuple[str, ...]] = {
    "archive": ("aws",),
    "parse": ("aws",),
    "archive_parse": ("aws",),
    "api_data": ("aws", "parsed"),  # symbols known from the mirror; days covered by the parsed klines
    "generate:resample": ("results",),
    "generate:resample_type": ("results",),
    "bars": ("parsed",),
    "archive:archive_ls": (),  # lists the remote archive only
}
# Commands that only read: they take no lease and publish nothing.
READ_ONLY = {"research:list_data", "research:catalog", "status:status", "archive:archive_ls"}


def trade_types_of(target: str, kwargs: Mapping[str, Any]) -> list[TradeType]:
    """The market a command works on (its trade_type/market argument or its name), or all three."""
    for name in ("trade_type", "market"):
        value = kwargs.get(name)
        if value:
            try:
                return [TradeType(value)]
            except ValueError:
                pass
    function = target.split(":")[1]
    for tt in TradeType:
        if function.endswith(f"_{tt.value}"):
            return [tt]
    return list(TradeType)


def trees_of(layout: Layout, target: str, kwargs: Mapping[str, Any]) -> tuple[list[Path], list[Path]]:
    """(trees only read, trees written) by the command, as local folders of the working copy; both are synced."""
    markets = trade_types_of(target, kwargs)
    module = target.split(":")[0]

    def dirs(kinds: Iterable[str]) -> list[Path]:
        return list(dict.fromkeys(paths.store_tree_dir(layout, kind, tt) for tt in markets for kind in kinds))

    read_kinds = READS.get(target, READS.get(module, paths.STORE_TREE_KINDS))
    if target in READ_ONLY:
        return dirs(read_kinds), []
    # `.bhds` last: its build records must never be published ahead of the files they describe (a
    # run killed in between then rebuilds those files, which is idempotent, instead of skipping them).
    written_kinds = (*[k for k in WRITES.get(module, paths.STORE_TREE_KINDS) if k != "state"], "state")
    return dirs(read_kinds), dirs(written_kinds)


def _checkpoint(database: Path) -> None:
    """Fold SQLite's WAL into the database file, so the one file published is complete."""
    if database.exists():
        with sqlite3.connect(database) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()


def run_in_working_copy(settings: Settings, target: str, kwargs: Mapping[str, Any], run: Callable[[], RunSummary]) -> RunSummary:
    """Sync, run, publish (see the module docstring). `run` is the local workflow call."""
    from bhds.storage import stage_lock

    assert settings.store_url is not None
    store = open_store(settings.store_url, settings.store)
    store.check()
    layout = Layout(settings.data_dir)
    layout.root.mkdir(parents=True, exist_ok=True)
    reads, writes = trees_of(layout, target, kwargs)
    seconds = settings.store.lease_seconds if settings.store else 60.0
    leases = {tree: Lease(store, paths.store_key(paths.store_tree_name(layout, tree), paths.STORE_LEASE), seconds, target,
                          f"{settings.store_url}/binance_data/{paths.store_tree_name(layout, tree)}") for tree in writes}
    with stage_lock(layout, paths.WORKING_COPY_LOCK, settings.lock_timeout), held(list(leases.values()), settings.lock_timeout), \
            _placeholders(settings, layout) as index:
        bases = {tree: sync_down(store, layout, tree, placeholders=index) for tree in dict.fromkeys([*writes, *reads])}
        # The run's generation folder per written tree: the publish uploads there, and so do Dask
        # workers that work in copies of their own (`detached`; they need the placeholders).
        token = secrets.token_hex(4)
        folders = {tree: paths.store_generation_dir(bases[tree].generation + 1, token) for tree in writes}
        if index is not None:
            work = detached.Session(store, layout, settings.store, list(bases), bases, folders)
            work.index = index
            with detached.session(work):
                summary = run()
        else:
            summary = run()
        if writes:
            _checkpoint(layout.state_db)
        for tree in writes:
            publish(store, layout, tree, bases[tree], still_held=leases[tree].renew, folder=folders[tree],
                    staged=work.staged if index is not None else None)
    return summary


@contextmanager
def _placeholders(settings: Settings, layout: Layout) -> Iterator[lazy.Index | None]:
    """The working copy's placeholder index, active in this process for the command (None: a full copy).

    BHDS_LAZY_SYNC=0 makes no new placeholders; none for a store only this process can reach (`memory://`).
    """
    assert settings.store_url is not None
    path = lazy.index_path(layout.root)
    making = bool(settings.store and settings.store.lazy_sync)
    if not lazy.supports(settings.store_url) or not (making or path.exists()):
        yield None
        return
    # With BHDS_LAZY_SYNC=0 an existing index stays active: the placeholders an earlier sync made
    # are fetched by this sync (`make_equal`), never read as zeros.
    index = lazy.Index(path, making=making)
    lazy.activate(lazy.LazyContext(str(path), settings.store_url, settings.store))
    try:
        yield index
    finally:
        lazy.activate(None)
        index.close()
