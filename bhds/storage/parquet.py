"""Parquet files: written atomically (through `files.atomic_path`), read without pandas.

pyarrow takes ~0.3 s to import: every function loads it on first use, so commands that write no
Parquet (download, verify) start faster. Readers that raise DataError (`read_table`,
`ParquetColumns`) name the file; the others leave pyarrow's error to the caller's message.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bhds.errors import DataError
from bhds.objstore.lazy import NOT_A_PLACEHOLDER, ensure_local, ensure_local_all, ensure_local_tree, parquet_footer
from bhds.storage.files import atomic_path

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq

PARQUET_COMPRESSION = "zstd"
# zstd level of klines (parsed and results): see write_table_numeric.
NUMERIC_COMPRESSION_LEVEL = 2
MAGIC = b"PAR1"


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


def _footer_source(path: Path | str) -> Any:
    """What pyarrow reads a footer from: the file, or for a placeholder its footer (fetched alone, see `objstore.lazy`)."""
    footer = parquet_footer(path)
    if footer is NOT_A_PLACEHOLDER:
        return path
    if footer is None:  # not Parquet: let pyarrow read the whole file and say so
        ensure_local(path)
        return path
    import pyarrow as pa  # noqa: F811

    return pa.BufferReader(footer)


def footer_value(path: Path, key: bytes) -> str | None:
    """The value bhds stored under `key` in a Parquet file's footer (what the file was built from),
    or None when the file is absent, unreadable or not ours: such a file is simply built again."""
    import pyarrow as pa  # noqa: F811 - on first use, see __getattr__
    import pyarrow.parquet as pq

    try:
        metadata = pq.read_schema(_footer_source(path)).metadata or {}
    except (OSError, pa.ArrowInvalid):
        return None
    value = metadata.get(key)
    return value.decode() if value else None


def read_table(path: Path, schema: pa.Schema | None = None, columns: list[str] | None = None) -> pa.Table:
    """Read a Parquet file, cast to `schema` (the contract's dtypes) when given.

    A file that cannot be read raises DataError naming it, so one bad partition is reported
    rather than crashing a whole run.
    """
    import pyarrow as pa  # noqa: F811 - on first use, see __getattr__
    import pyarrow.parquet as pq

    ensure_local(path)
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
        ensure_local(self.path)
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


@contextlib.contextmanager
def parquet_writer(where: Path | pa.NativeFile, schema: pa.Schema, **options: object) -> Iterator[pq.ParquetWriter]:
    """A `pq.ParquetWriter` (`options` are its own) on `where`: a path is written atomically (the
    file appears, whole, when the block ends without error), a stream (`pa.BufferOutputStream`) as it is."""
    import pyarrow.parquet as pq  # noqa: F811 - on first use

    if not isinstance(where, (str, os.PathLike)):
        with pq.ParquetWriter(where, schema, **options) as writer:
            yield writer
        return
    with atomic_path(Path(where)) as tmp, pq.ParquetWriter(tmp, schema, **options) as writer:
        yield writer


def open_parquet(path: Path | str) -> pq.ParquetFile:
    """A Parquet file opened for reading its footer, row groups or columns (no pandas, unlike
    `pq.read_table`). OSError or pyarrow's ArrowException when unreadable: the caller names the file."""
    import pyarrow.parquet as pq  # noqa: F811 - on first use

    ensure_local(path)
    return pq.ParquetFile(path)


def open_dataset(files: Path | str | list[Path]) -> Any:
    """Parquet files (one, or several of one schema) as one pyarrow dataset, for reading rows with
    a filter that skips row groups by their statistics; errors as `open_parquet`."""
    import pyarrow.dataset as ds

    source = [str(f) for f in files] if isinstance(files, list) else str(files)
    if isinstance(source, list):
        ensure_local_all(source)
    elif os.path.isdir(source):
        ensure_local_tree(source)  # pyarrow lists the folder itself
    else:
        ensure_local(source)
    return ds.dataset(source, format="parquet")


def parquet_metadata(path: Path | str) -> pq.FileMetaData:
    """A Parquet file's footer (row groups, their statistics, key-value metadata); errors as `open_parquet`."""
    import pyarrow.parquet as pq  # noqa: F811 - on first use

    return pq.read_metadata(_footer_source(path))


def parquet_schema(path: Path | str) -> pa.Schema:
    """A Parquet file's Arrow schema, from its footer alone; errors as `open_parquet`."""
    import pyarrow.parquet as pq  # noqa: F811 - on first use

    return pq.read_schema(_footer_source(path))


def read_rows(path: Path | str, columns: list[str] | None = None, filters: list | None = None) -> pa.Table:
    """Columns of a Parquet file, only the rows matching `filters` (pyarrow's DNF, pushed down to row
    groups); errors as `open_parquet`. Imports pandas: worker hot paths use `ParquetColumns`."""
    import pyarrow.parquet as pq  # noqa: F811 - on first use

    ensure_local(path)
    return pq.read_table(path, columns=columns, filters=filters)


def ends_like_parquet(path: Path) -> bool:
    """Whether the file ends with Parquet's magic: a cheap test (one small read) that catches a file
    cut short by a full disk or an interrupted copy. False when it cannot be read."""
    try:
        footer = parquet_footer(path)
        if footer is not NOT_A_PLACEHOLDER:
            return footer is not None
        with open(path, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            if size < 12:  # magic + footer length + magic
                return False
            handle.seek(size - 4)
            return handle.read(4) == MAGIC
    except OSError:
        return False


def footer_frame(path: Path) -> bytes | None:
    """A Parquet file's footer framed as a file (`PAR1` + footer + length + `PAR1`), in two small
    reads; None when the file does not end like Parquet. OSError when it cannot be read."""
    footer = parquet_footer(path)
    if footer is not NOT_A_PLACEHOLDER:
        return footer  # type: ignore[return-value]
    with open(path, "rb") as f:
        f.seek(-8, os.SEEK_END)
        tail = f.read(8)
        if tail[4:] != MAGIC:
            return None
        size = int.from_bytes(tail[:4], "little")
        f.seek(-8 - size, os.SEEK_END)
        return MAGIC + f.read(size) + tail
