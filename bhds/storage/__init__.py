"""The storage layer: every read, write, rename and removal of a data file goes through here.

Stages never call `open`, `os.replace`, `Path.unlink` or pyarrow's readers and writers on data
themselves (tests/test_storage_owns_io.py checks it), so the guarantees live in one place: files
and folders appear whole or not at all (`files`, `parquet`, `dirs`), a full disk is one line, and
one writer per stage (`locks`). `from bhds import storage; storage.X` and
`from bhds.storage import X` both work for every public name below.
"""

from __future__ import annotations

from bhds.storage.dirs import _renameat2, recover_dir, replace_dir  # noqa: F401 - a test asks whether the kernel can swap
from bhds.storage.files import (
    CHUNK_BYTES,
    add_link,
    append_line,
    atomic_path,
    create_empty,
    files_signature,
    link_or_copy,
    open_dir,
    open_scratch,
    open_zip,
    read_bytes,
    read_json,
    read_small,
    remove,
    remove_all,
    remove_tree,
    replace_file,
    same_bytes,
    sha256_file,
    sweep_temp_files,
    write_bytes,
    write_joined,
    write_json,
)
from bhds.objstore.lazy import ensure_local, ensure_local_all, ensure_local_tree
from bhds.storage.locks import stage_lock, stage_locks, try_lock
from bhds.storage.parquet import (
    NUMERIC_COMPRESSION_LEVEL,
    NUMERIC_PAGE_ROWS,
    PARQUET_COMPRESSION,
    ParquetColumns,
    ends_like_parquet,
    footer_frame,
    footer_value,
    numeric_encodings,
    numeric_write_options,
    open_dataset,
    open_parquet,
    parquet_metadata,
    parquet_schema,
    parquet_writer,
    read_rows,
    read_table,
    write_table,
    write_table_numeric,
)

__all__ = [
    "CHUNK_BYTES", "NUMERIC_COMPRESSION_LEVEL", "NUMERIC_PAGE_ROWS", "PARQUET_COMPRESSION", "ParquetColumns",
    "add_link", "append_line", "atomic_path", "create_empty", "ends_like_parquet", "ensure_local", "ensure_local_all", "ensure_local_tree", "files_signature", "footer_frame", "footer_value",
    "link_or_copy", "numeric_encodings", "numeric_write_options", "open_dir", "open_dataset", "open_parquet", "open_scratch", "open_zip",
    "parquet_metadata", "parquet_schema", "parquet_writer", "read_bytes", "read_json", "read_rows", "read_small",
    "read_table", "recover_dir", "remove", "remove_all", "remove_tree", "replace_dir", "replace_file", "same_bytes", "sha256_file",
    "stage_lock", "stage_locks", "try_lock", "sweep_temp_files", "write_bytes", "write_joined", "write_json", "write_table",
    "write_table_numeric",
]


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
