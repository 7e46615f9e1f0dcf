"""Parquet and file I/O that never leaves a half-written file, and the per-stage lock.

Every write goes to a temporary sibling and is renamed over the target with os.replace, which is
atomic on POSIX: a reader (or a run killed at any instant) sees the old file or the new one.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import functools
import os
import shutil
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from bhds.errors import DataError, LockBusy, disk_full, is_disk_full
from bhds.paths import TEMP_MARKER, Layout, retired_dir, swap_home, swap_leftovers, temp_path

if TYPE_CHECKING:
    import pyarrow as pa

PARQUET_COMPRESSION = "zstd"
# zstd level of klines (parsed and results): see write_table_numeric.
NUMERIC_COMPRESSION_LEVEL = 2


def __getattr__(name: str):
    # pyarrow takes ~0.3 s to import: it is loaded on first use, so commands that write no
    # Parquet (download, verify) start faster. `bhds.storage.pa` / `.pq` still resolve.
    if name == "pa":
        import pyarrow

        return pyarrow
    if name == "pq":
        import pyarrow.parquet

        return pyarrow.parquet
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _disk_error(path: Path, exc: OSError) -> DataError:
    if is_disk_full(exc):
        return disk_full(path, exc)
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return DataError(f"cannot write {path} ({exc.strerror}): make the data directory writable or set CRYPTO_BASE_DIR")
    return DataError(f"cannot write {path}: {exc.strerror or exc}; check the disk and run the command again")


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success rename it over `path`, else delete it."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _disk_error(path, exc) from exc
    tmp = temp_path(path, uuid.uuid4().hex[:8])
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        raise _disk_error(path, exc) from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_table(table: pa.Table, path: Path) -> int:
    """Write `table` as Parquet atomically; return the file size."""
    import pyarrow.parquet as pq  # on first use, see __getattr__

    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression=PARQUET_COMPRESSION)
        size = tmp.stat().st_size
    return size


def numeric_encodings(schema: pa.Schema) -> dict[str, str]:
    """Parquet encodings for large numeric tables, per column (measured, see write_table_numeric).

    Integers and times: DELTA_BINARY_PACKED (a 1m time column shrinks to a few hundred bytes).
    Quote volumes (price × quantity summed over trades, so every mantissa bit is used):
    BYTE_STREAM_SPLIT. Other floats (prices, base volumes, VWAP: short decimals): PLAIN, whose
    repeating byte patterns zstd finds and byte-stream-split would scatter.
    """
    import pyarrow as pa  # noqa: F811 - on first use, see __getattr__

    encodings = {}
    for field in schema:
        if pa.types.is_floating(field.type):
            encodings[field.name] = "BYTE_STREAM_SPLIT" if "quote" in field.name else "PLAIN"
        elif pa.types.is_integer(field.type) or pa.types.is_timestamp(field.type):
            encodings[field.name] = "DELTA_BINARY_PACKED"
    return encodings


def write_table_numeric(table: pa.Table, path: Path) -> int:
    """Like `write_table`, for large numeric tables such as klines: no dictionary pages, numeric encodings.

    Chosen by measurement on a year of 1m klines (bench/parquet_formats.py; the table is in
    bench/results/parquet-formats-spot-10x365.md): per-column encodings (`numeric_encodings`), no
    dictionary pages (prices and volumes rarely repeat), zstd level 2. The files are 3-9 % smaller
    than bhds.py's for the same rows (byte-stream-split on every float made them ~20 % larger, and
    read ~30 % faster in pyarrow and DuckDB, ~30 % slower in polars); every reader takes about as long
    on them as on bhds.py's files or less. All encodings are standard Parquet that every reader supports.
    """
    import pyarrow.parquet as pq  # on first use, see __getattr__

    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, **numeric_write_options(table.schema))
        size = tmp.stat().st_size
    return size


# Rows per data page: pyarrow's default (20,000) cuts a 1m year into ~27 pages per column, each
# compressed alone; 131,072 rows (1 MiB of float64) made result klines 6 % smaller and their
# write 5-10 % faster at the same zstd level (bench/results/parquet-formats-spot-10x365.md).
NUMERIC_PAGE_ROWS = 131_072


@functools.cache
def _has_page_rows_option() -> bool:
    import inspect

    import pyarrow.parquet as pq  # noqa: F811

    return "max_rows_per_page" in inspect.signature(pq.write_table).parameters


def numeric_write_options(schema: pa.Schema) -> dict[str, object]:
    """The `pq.write_table` / `pq.ParquetWriter` options of `write_table_numeric`."""
    options: dict[str, object] = dict(compression=PARQUET_COMPRESSION, compression_level=NUMERIC_COMPRESSION_LEVEL,
                                      use_dictionary=False, column_encoding=numeric_encodings(schema))
    if _has_page_rows_option():  # pyarrow 20+
        options.update(max_rows_per_page=NUMERIC_PAGE_ROWS, data_page_size=8 * NUMERIC_PAGE_ROWS)
    return options


def write_bytes(data: bytes, path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def footer_value(path: Path, key: bytes) -> str | None:
    """The value bhds stored under `key` in a Parquet file's footer (what the file was built from),
    or None when the file is absent, unreadable or not ours: such a file is simply built again."""
    import pyarrow as pa  # noqa: F811 - on first use, see __getattr__
    import pyarrow.parquet as pq

    try:
        metadata = pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowInvalid):
        return None
    value = metadata.get(key)
    return value.decode() if value else None


def files_signature(paths: Iterable[Path]) -> list[list]:
    """`[name, size, mtime_ns]` of each file, in the given order: a rewritten or re-uploaded input changes it."""
    out = []
    for path in paths:
        st = os.stat(path)
        out.append([path.name, st.st_size, st.st_mtime_ns])
    return out


def read_table(path: Path, schema: pa.Schema | None = None, columns: list[str] | None = None) -> pa.Table:
    """Read a Parquet file, cast to `schema` (the contract's dtypes) when given.

    A file that cannot be read raises DataError naming it, so one bad partition is reported
    rather than crashing a whole run.
    """
    import pyarrow as pa  # noqa: F811 - on first use, see __getattr__
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path, columns=columns)
    except FileNotFoundError:
        raise
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"cannot read {path} ({exc}): delete the file and run the step that writes it again") from exc
    if schema is not None:
        wanted = pa.schema([schema.field(name) for name in (columns or schema.names)])
        try:
            table = table.select(wanted.names).cast(wanted)
        except (KeyError, pa.ArrowException) as exc:
            raise DataError(f"{path} does not have the expected columns ({exc}): delete it and run the step that writes it again") from exc
    return table


class ParquetColumns:
    """One Parquet file, read whole (`read`) or a column at a time (`column`), without pandas.

    Use as a context manager; `names` lists the columns. Columns come back as one chunk per row
    group (not `read_table`'s 128k-row pieces), which numpy can share without a copy, and
    `pq.read_table` would import pandas (0.3 s, 40 MB) in every worker process. Unreadable files
    raise DataError naming them.
    """

    def __init__(self, path: Path) -> None:
        import pyarrow as pa  # noqa: F811 - on first use, see __getattr__
        import pyarrow.parquet as pq

        self.path = Path(path)
        try:
            self._file = pq.ParquetFile(self.path)
        except FileNotFoundError:
            raise
        except (OSError, pa.ArrowException) as exc:
            raise DataError(f"cannot read {path} ({exc}): delete the file and run the step that writes it again") from exc
        self.names: list[str] = list(self._file.schema_arrow.names)

    def column(self, name: str, type: pa.DataType | None = None) -> pa.Array:  # noqa: A002
        import pyarrow as pa  # noqa: F811

        try:
            column = self._file.read(columns=[name]).column(0)
            array = column.chunk(0) if column.num_chunks == 1 else pa.concat_arrays(column.chunks) if column.num_chunks else pa.array([], column.type)
            return array.cast(type) if type is not None and array.type != type else array
        except (KeyError, OSError, pa.ArrowException) as exc:
            raise DataError(f"cannot read column {name} of {self.path} ({exc}): delete the file and run the step that writes it again") from exc

    def read(self, schema: pa.Schema) -> pa.Table:
        """The columns of `schema`, cast to its types (one chunk per row group)."""
        import pyarrow as pa  # noqa: F811

        try:
            table = self._file.read(columns=schema.names)
            # Only cast what differs: a cast loads pyarrow.compute, 30 ms in every worker process.
            return table if table.schema.equals(schema) else table.cast(schema)
        except (KeyError, OSError, pa.ArrowException) as exc:
            raise DataError(f"{self.path} does not have the expected columns ({exc}): delete it and run the step that writes it again") from exc

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> ParquetColumns:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def link_or_copy(source: Path, target: Path) -> None:
    """Put a copy of `source` at `target` (a hard link when possible), atomically."""
    with atomic_path(target) as tmp:
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copy2(source, tmp)


def replace_dir(new: Path, target: Path) -> None:
    """Swap the fully built directory `new` in for `target`, then delete the old tree.

    Readers see the old tree or the new one, never a half-built one. On Linux the two trade places
    in one atomic step (renameat2 RENAME_EXCHANGE), so `target` never goes missing. Elsewhere the
    old tree is renamed aside and the new one in; a run killed between those two renames leaves the
    old tree aside, and `recover_dir` puts it back. When `target` is a symlink (say, to another
    disk) the swap happens at its destination, and the link stays; `new` must be its
    `paths.staging_dir`, which lies on the destination's file system.
    """
    home = swap_home(target)
    try:
        if home.exists() and _exchange(new, home):
            shutil.rmtree(new, ignore_errors=True)  # `new` now holds the old tree
            return
    except OSError as exc:
        raise _disk_error(target, exc) from exc
    aside = retired_dir(home, uuid.uuid4().hex[:8])
    try:
        if home.exists():
            os.rename(home, aside)
        os.rename(new, home)
    except OSError as exc:
        if aside.exists() and not home.exists():
            os.rename(aside, home)
        raise _disk_error(target, exc) from exc
    shutil.rmtree(aside, ignore_errors=True)


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
# Errors meaning "this kernel or file system cannot exchange": fall back to two renames.
_NO_EXCHANGE = {errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EPERM}


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two existing paths; False when the platform cannot (not Linux, old kernel or libc)."""
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in _NO_EXCHANGE:
        return False
    raise OSError(code, os.strerror(code), str(b))


@functools.cache
def _renameat2():  # noqa: ANN202 - a ctypes function or None
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # glibc before 2.28, or another libc without it
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


def recover_dir(target: Path) -> None:
    """Clean up after a killed `replace_dir` of `target`: restore the old tree if it is missing, drop leftovers.

    Call it under the stage lock, before building a new tree. A `target` that is a symlink to a
    folder that is gone (an unmounted disk) is refused: building there would fill another disk.
    """
    home = swap_home(target)
    staging, retired = swap_leftovers(target)
    if retired and not home.exists():
        os.rename(retired[-1], home)
        retired = retired[:-1]
    for leftover in staging + retired:
        shutil.rmtree(leftover, ignore_errors=True)
    if target.is_symlink() and not home.is_dir():
        raise DataError(f"{target} is a symlink to {home}, which is not a folder: mount its disk or create the folder, "
                        "or replace the link with a folder, and run the command again")


def sweep_temp_files(directory: Path, *, recursive: bool = True) -> int:
    """Delete temporary files a killed run left under `directory` (only in it, if not `recursive`); return how many.

    Sweep only what the caller's lock covers: a sub-folder written under another lock may hold a
    temporary file that a concurrent run is about to rename.
    """
    if not directory.exists():
        return 0
    removed = 0
    for leftover in (directory.rglob if recursive else directory.glob)(f"*{TEMP_MARKER}"):
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()
            removed += 1
    return removed


@contextlib.contextmanager
def stage_locks(layout: Layout, stages: Iterable[str], timeout: float = 0.0) -> Iterator[None]:
    """Hold the exclusive locks of several stages (e.g. one per interval of a download).

    They are taken in sorted order, so two runs waiting for overlapping sets cannot deadlock.
    """
    with contextlib.ExitStack() as stack:
        for stage in sorted(set(stages)):
            stack.enter_context(stage_lock(layout, stage, timeout))
        yield


@contextlib.contextmanager
def stage_lock(layout: Layout, stage: str, timeout: float = 0.0, *, shared: bool = False) -> Iterator[None]:
    """Hold the lock of one stage of one data directory: exclusive to write its output, `shared` to read it.

    A second bhds process wanting the same stage waits up to `timeout` seconds, then fails with a
    message naming the holder's PID. Readers (shared) exclude a writer but not each other. The lock
    is released by the kernel if the holder dies.
    """
    lock_path = layout.lock_file(stage)
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(lock_path, "a+")
    except OSError as exc:
        raise _disk_error(lock_path, exc) from exc
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    handle.seek(0)
                    holder = handle.read().strip()
                    # Only a writer records its PID: readers share the lock, and the file is empty then.
                    who = f"another bhds process (PID {holder}) is running" if holder else "other bhds processes are reading"
                    raise LockBusy(
                        f"{who} the {stage} stage on {layout.root}: "
                        "wait for it to finish, or set BHDS_LOCK_TIMEOUT=<seconds> to wait for it"
                    ) from None
                time.sleep(0.2)
        if not shared:
            handle.seek(0)
            handle.truncate()
            handle.write(str(os.getpid()))
            handle.flush()
        try:
            yield
        finally:
            if not shared:  # a later reader-blocked writer must not name this finished process
                handle.truncate(0)
                handle.flush()
    finally:
        handle.close()
