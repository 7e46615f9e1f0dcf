"""Placeholders: files of the working copy whose bytes stay in the bucket until something reads them.

A sync does not fetch a large published file; it creates a *placeholder*: a sparse file of the
object's size (no disk blocks), with its published mtime. Listings and stats, which is all the
stages' planners look at, see the real tree; a read goes through `bhds.storage`, which calls
`ensure_local` first: a placeholder is then fetched to a temp sibling, given its mtime and
renamed over itself, so a reader never sees a half-fetched file. A working copy of a market's
full mirror thus costs its manifest and its inodes, and a command fetches only what it reads.

The index (`<work dir>/.bhds-sync/placeholders.sqlite`) maps a placeholder's inode (with its size and
mtime) to its object key and ETag. Keyed by inode, it follows the file through renames, hard
links and folder swaps (`generate` links unchanged results into a staging tree and swaps it in);
a file written since (new inode, or new size or mtime) is no longer a placeholder. Processes that run
a command's items (the pool's, a `local:N` Dask cluster's) get the index with their work
(`current()` / `activate()`): a placeholder is read whole by whichever process needs it first.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # every storage read imports this module: it loads nothing else until a placeholder exists
    import sqlite3

    from bhds.objstore.store import ObjectStore
    from bhds.settings import StoreAccess

# Files below this are fetched by the sync as before: a CHECKSUM file (~100 bytes) or a JSON record
# is cheaper fetched with the batch than alone when read. A daily zip or a Parquet file is above it.
MIN_LAZY_BYTES = 4096


class LazyContext:
    """What a process needs to fetch placeholders: the index and the store (picklable, sent with work)."""

    __slots__ = ("index", "url", "access")

    def __init__(self, index: str, url: str, access: StoreAccess | None) -> None:
        self.index, self.url, self.access = index, url, access


_UNSET: Any = object()
_context: LazyContext | None = None  # the process's: a command's, or a pool process's
# A Dask task's, in its thread: a worker process may run tasks of several commands at once. Threads
# a task starts without copying its context fall back to the process's (the last task's).
_task_context: ContextVar[Any] = ContextVar("bhds_placeholders", default=_UNSET)
_local = threading.local()  # per thread: SQLite connections and stores, by index and URL
_fetched = 0  # placeholders this process fetched (for tests and the log)


def current() -> LazyContext | None:
    value = _task_context.get()
    return _context if value is _UNSET else value


def activate(context: LazyContext | None) -> None:
    """Make this process fetch placeholders of `context`'s working copy on read (None: none)."""
    global _context
    _context = context


@contextmanager
def active_in_task(context: LazyContext | None) -> Iterator[None]:
    """`activate` for the task running in this thread (a Dask worker thread) until it returns, and for
    the process as the fallback of threads the task starts. Reset on the way out: the thread runs
    other commands' tasks next (and a task run in the client's own thread must not outlive itself)."""
    activate(context)
    token = _task_context.set(context)
    try:
        yield
    finally:
        _task_context.reset(token)


def fetched() -> int:
    return _fetched


def index_path(work_root: Path) -> Path:
    """The placeholder index of the working copy whose data folder is `work_root` (beside the sync records)."""
    return Path(work_root).parent / ".bhds-sync" / "placeholders.sqlite"


def supports(url: str) -> bool:
    """Whether a store can serve placeholders: every process of a command must reach it (not `memory://`)."""
    return not url.startswith("memory://")


def _connect(index: str) -> sqlite3.Connection:
    import sqlite3

    conn = sqlite3.connect(index, timeout=60, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE IF NOT EXISTS placeholder (dev INTEGER, ino INTEGER, size INTEGER, mtime_ns INTEGER,"
                 " key TEXT, etag TEXT, tree TEXT, footer BLOB, PRIMARY KEY (dev, ino))")
    return conn


def _conn(context: LazyContext) -> sqlite3.Connection:
    conns = _local.__dict__.setdefault("conns", {})
    key = (os.getpid(), context.index)
    conn = conns.get(key)
    if conn is None:
        conn = conns[key] = _connect(context.index)
    return conn


def _store(context: LazyContext) -> ObjectStore:
    stores = _local.__dict__.setdefault("stores", {})
    key = (os.getpid(), context.url)
    store = stores.get(key)
    if store is None:
        from bhds.objstore.store import open_store

        store = stores[key] = open_store(context.url, context.access)
    return store


class Index:
    """The client's side of the index: placeholders are made and forgotten here (one writer, the command)."""

    def __init__(self, path: Path, *, making: bool = True) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = _connect(os.fspath(path))
        self.making = making  # False (BHDS_LAZY_SYNC=0): a sync fetches files, placeholders included

    def close(self) -> None:
        self.conn.close()

    def make(self, tree: str, items: Iterable[tuple[Path, str, str, int, int]]) -> int:
        """Put a placeholder at each `path` for object `key` (`etag`, `size`, `mtime_ns`); return how many.

        Each is created under a temp name, indexed, then renamed into place: a crash leaves either
        the previous file or an indexed placeholder, never an unindexed file of zeros.
        """
        import secrets

        from bhds.paths import temp_path

        token = secrets.token_hex(4)
        rows = []
        renames = []
        for path, key, etag, size, mtime_ns in items:
            temp = temp_path(path, token)
            temp.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            try:
                os.ftruncate(fd, size)
                os.utime(fd, ns=(mtime_ns, mtime_ns))
                st = os.fstat(fd)
            finally:
                os.close(fd)
            if size:  # an empty file is its object already: not indexed
                rows.append((st.st_dev, st.st_ino, size, mtime_ns, key, etag, tree))
            renames.append((temp, path))
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.executemany("INSERT OR REPLACE INTO placeholder VALUES (?, ?, ?, ?, ?, ?, ?, NULL)", rows)
        for temp, path in renames:
            os.replace(temp, path)
        return len(renames)

    def forget_except(self, tree: str, live: set[tuple[int, int]]) -> None:
        """Drop `tree`'s entries of inodes no longer in it (a sync passes every inode it walked)."""
        stale = [row for row in self.conn.execute("SELECT dev, ino FROM placeholder WHERE tree = ?", (tree,)) if row not in live]
        if stale:
            with self.conn:
                self.conn.execute("BEGIN IMMEDIATE")
                self.conn.executemany("DELETE FROM placeholder WHERE dev = ? AND ino = ?", stale)

    def inodes(self, tree: str) -> set[tuple[int, int, int, int]]:
        """(dev, inode, size, mtime_ns) of `tree`'s placeholders."""
        return set(self.conn.execute("SELECT dev, ino, size, mtime_ns FROM placeholder WHERE tree = ?", (tree,)))

    def holds(self, path: Path) -> bool:
        """Whether `path` is a placeholder now."""
        return _lookup(self.conn, path, "etag") is not None

    def count(self) -> int:
        return self.conn.execute("SELECT count(*) FROM placeholder").fetchone()[0]


def _lookup(conn: sqlite3.Connection, path: Path | str, columns: str) -> tuple[os.stat_result, tuple] | None:
    """(stat, the row's `columns`) when `path` is a placeholder now, else None: its inode is indexed
    and still has the size and mtime it was made with."""
    try:
        st = os.stat(path)
    except OSError:
        return None  # the caller's own read names the problem
    row = conn.execute(f"SELECT size, mtime_ns, {columns} FROM placeholder WHERE dev = ? AND ino = ?", (st.st_dev, st.st_ino)).fetchone()
    if row is None or (row[0], row[1]) != (st.st_size, st.st_mtime_ns):
        return None  # a real file (or one rewritten since it was a placeholder)
    return st, row[2:]


def _entry(context: LazyContext, path: Path | str) -> tuple[os.stat_result, str, str] | None:
    """(stat, key, ETag) of the placeholder `path`; None for any other file."""
    found = _lookup(_conn(context), path, "key, etag")
    return None if found is None else (found[0], *found[1])


def _gone(path: Path | str, exc: FileNotFoundError) -> OSError:
    # Not "no such file" to the caller (which may take a missing file for "not built yet"): the
    # object went away (a newer generation published, the old one collected).
    return OSError(f"{path}: its object is gone from the store ({exc}); a newer generation was "
                   "published meanwhile: run the command again")


PARQUET_MAGIC = b"PAR1"
FOOTER_GUESS = 64 * 1024  # one ranged read covers the footer of a bhds Parquet file (a few KiB)
NOT_A_PLACEHOLDER = object()


def parquet_footer(path: Path | str) -> bytes | None | object:
    """For a placeholder: its Parquet footer framed as a file (`PAR1` + footer + length + `PAR1`), or
    None when the object does not end like Parquet; `NOT_A_PLACEHOLDER` for any other file.

    Planners read footers (is a partition whole, what was a file built from) of every output: a
    placeholder answers from one ranged read of its object's tail, kept in the index, and stays one.
    """
    context = current()
    found = None if context is None else _lookup(_conn(context), path, "key, footer")
    if found is None:
        return NOT_A_PLACEHOLDER
    st, (key, footer) = found
    if footer is None:
        try:
            footer = _read_footer(_store(context), key, st.st_size)
        except FileNotFoundError as exc:
            raise _gone(path, exc) from None
        _conn(context).execute("UPDATE placeholder SET footer = ? WHERE dev = ? AND ino = ?", (footer, st.st_dev, st.st_ino))
    return footer or None


def _read_footer(store: ObjectStore, key: str, size: int) -> bytes:
    """The framed footer of object `key` (b"" when it does not end like Parquet), in one or two ranged reads."""
    if size < 12:
        return b""
    tail = store.read_tail(key, size, min(size, FOOTER_GUESS))
    if tail[-4:] != PARQUET_MAGIC:
        return b""
    length = int.from_bytes(tail[-8:-4], "little")
    if length + 8 > size - 4:
        return b""
    if length + 8 > len(tail):
        tail = store.read_tail(key, size, length + 8)
    return PARQUET_MAGIC + tail[-8 - length:]


def placeholder_object(path: Path | str) -> tuple[str, str] | None:
    """(store key, ETag) of the object whose bytes the placeholder `path` stands for; None for any other file."""
    context = current()
    if context is None:
        return None
    found = _entry(context, path)
    return None if found is None else (found[1], found[2])


def ensure_local(path: Path | str) -> None:
    """Fetch `path` if it is a placeholder, so it can be read; nothing else (one stat and lookup)."""
    context = current()
    if context is None:
        return
    found = _entry(context, path)
    if found is not None:
        _fetch(context, [(Path(path), *found)])


def ensure_local_all(paths: Iterable[Path | str]) -> None:
    """`ensure_local` for many files, fetched together (a dataset's files, a folder for DuckDB)."""
    context = current()
    if context is None:
        return
    todo = [(Path(p), *found) for p in paths if (found := _entry(context, p)) is not None]
    if todo:
        _fetch(context, todo)


def ensure_local_tree(folder: Path | str) -> None:
    """`ensure_local_all` for every file under `folder` (for readers that list a folder themselves)."""
    if current() is None:
        return
    ensure_local_all(_walk(Path(folder)))


def _walk(folder: Path) -> Iterator[str]:
    pending = [os.fspath(folder)]
    while pending:
        try:
            entries = list(os.scandir(pending.pop()))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            if entry.is_dir():
                pending.append(entry.path)
            elif entry.is_file():
                yield entry.path


def _fetch(context: LazyContext, todo: list[tuple[Path, os.stat_result, str, str]]) -> None:
    """Fetch each placeholder to a temp sibling with its mtime, and rename it over the placeholder.

    A placeholder's index row is dropped once its inode has no name left (checked on a descriptor
    held across the rename: with no name, nobody can link it any more). Another name of the same
    inode (a hard link) keeps it a placeholder under that name.
    """
    global _fetched
    import logging
    import secrets

    from bhds.paths import temp_path

    token = secrets.token_hex(4)
    temps = [temp_path(path, token) for path, *_ in todo]
    gone: list[tuple[int, int]] = []
    try:
        try:
            _store(context).get_files([(key, temp) for (_, _, key, _), temp in zip(todo, temps, strict=True)])
        except FileNotFoundError as exc:
            raise _gone(todo[0][0], exc) from None
        for (path, st, _, _), temp in zip(todo, temps, strict=True):
            got = os.stat(temp).st_size
            if got != st.st_size:
                raise OSError(f"{path}: fetched {got} bytes from the store where {st.st_size} were published; "
                              "run the command again")
            os.utime(temp, ns=(st.st_mtime_ns, st.st_mtime_ns))
            held = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.replace(temp, path)
                if os.fstat(held).st_nlink == 0:
                    gone.append((st.st_dev, st.st_ino))
            finally:
                os.close(held)
    finally:
        for temp in temps:
            try:
                os.unlink(temp)
            except FileNotFoundError:
                pass
    if gone:  # a freed inode number may be reused by a new file: its row must not outlive it
        _conn(context).executemany("DELETE FROM placeholder WHERE dev = ? AND ino = ?", gone)
    _fetched += len(todo)
    logging.getLogger("bhds").debug("fetched %d placeholder(s), e.g. %s", len(todo), todo[0][0])
