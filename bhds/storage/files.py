"""Data files: written whole or not at all, read, hashed, linked and removed.

Every write goes to a temporary sibling and is renamed over the target with os.replace, which is
atomic on POSIX: a reader (or a run killed at any instant) sees the old file or the new one. A
failed write is one DataError line (`_disk_error`); reads raise the OSError, which the caller
turns into its own message naming the file and the command that rebuilds it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from bhds.errors import DataError, disk_full, is_disk_full
from bhds.objstore.lazy import ensure_local, placeholder_object
from bhds.storage import journal
from bhds.paths import TEMP_MARKER, temp_path

if TYPE_CHECKING:
    import zipfile

# `sha256_file`'s read size: large enough that per-read overhead vanishes, small enough to keep memory flat.
CHUNK_BYTES = 1 << 20


def _disk_error(path: Path, exc: OSError) -> DataError:
    if is_disk_full(exc):
        return disk_full(path, exc)
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return DataError(f"cannot write {path} ({exc.strerror}): make the data directory writable or set CRYPTO_BASE_DIR")
    return DataError(f"cannot write {path}: {exc.strerror or exc}; check the disk and run the command again")


# ---- writing ----

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
        journal.wrote(path)
    except OSError as exc:
        raise _disk_error(path, exc) from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_bytes(data: bytes, path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(value: Any, path: Path) -> None:
    """Write `value` as compact JSON (a record bhds reads back, not a report), atomically."""
    write_bytes(json.dumps(value, separators=(",", ":")).encode(), path)


def write_joined(source: Path, prefix: int, rest: bytes, target: Path) -> None:
    """Write `source`'s first `prefix` bytes + `rest` to `target` atomically, the prefix copied by the
    kernel where it can (no pass through Python). EOFError when `source` is shorter than `prefix`."""
    ensure_local(source)
    with atomic_path(target) as tmp, open(source, "rb") as src, open(tmp, "wb") as dst:
        left, offset = prefix, 0
        copy_range = getattr(os, "copy_file_range", None)
        while left and copy_range is not None:
            try:
                done = copy_range(src.fileno(), dst.fileno(), left, offset, offset)
            except OSError:
                break  # another file system, an old kernel: copy below
            if not done:
                break
            left, offset = left - done, offset + done
        if left:
            src.seek(offset)
            dst.seek(offset)
            while left:
                block = src.read(min(left, 1 << 22))
                if not block:
                    raise EOFError(f"{source} ends before byte {prefix}")
                dst.write(block)
                left -= len(block)
        dst.seek(prefix)
        dst.write(rest)


def link_or_copy(source: Path, target: Path) -> None:
    """Put a copy of `source` at `target` (a hard link when possible), atomically."""
    with atomic_path(target) as tmp:
        try:
            os.link(source, tmp)  # a placeholder linked stays one under both names (its index is by inode)
        except OSError:
            ensure_local(source)
            shutil.copy2(source, tmp)


def add_link(source: Path, target: Path) -> bool:
    """Give the existing file `source` the new name `target` (a hard link: no new inode, no copy).

    False when `target` exists already (it is left as it is); other OSErrors (EMLINK, EXDEV, EPERM)
    are raised, for the caller to pick another way.
    """
    try:
        os.link(source, target)
    except FileExistsError:
        return False
    journal.wrote(target)
    return True


def create_empty(path: Path, *, exclusive: bool = False) -> None:
    """Create the empty file `path` (a flag whose existence is its content). An existing one is
    touched, or, when `exclusive`, FileExistsError."""
    if exclusive:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    else:
        Path(path).touch()
    journal.wrote(path)


def append_line(path: Path, line: bytes) -> None:
    """Append `line` to `path` (created if absent) in one O_APPEND write: the lines of concurrent
    writers never interleave, and nothing is rewritten."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
    journal.wrote(path)


def open_scratch(path: Path) -> BinaryIO:
    """A file opened for writing whose name already marks it unfinished (a download's `.part`): it
    becomes data only through `replace_file` once checked, and is `remove`d otherwise."""
    return open(path, "wb")  # noqa: SIM115 - the caller closes it (`with`)


def replace_file(source: Path, target: Path) -> None:
    """Publish the finished file `source` (a temporary sibling) as `target`, in one atomic rename."""
    os.replace(source, target)
    journal.wrote(target)


# ---- reading ----

def read_bytes(path: Path) -> bytes:
    """A whole file. OSError (FileNotFoundError when absent) is left to the caller to name."""
    ensure_local(path)
    return Path(path).read_bytes()


def read_json(path: Path) -> Any:
    """A JSON file bhds wrote. FileNotFoundError when absent; OSError or ValueError when unreadable."""
    ensure_local(path)
    return json.loads(Path(path).read_bytes())


def read_small(path: Path, limit: int = 4096) -> bytes:
    """Up to `limit` bytes from the start of a small file, in one os-level read: verify reads
    thousands of 91-byte CHECKSUM files, and a file object per read costs more than the read."""
    ensure_local(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, limit)
    finally:
        os.close(fd)


def sha256_file(path: Path, chunk_bytes: int = CHUNK_BYTES) -> tuple[str, int]:
    """(hex SHA-256, size) of a file: small files in one read, others in chunks into one buffer."""
    import hashlib  # on first use: only download and verify hash

    digest = hashlib.sha256()
    ensure_local(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        expected = os.fstat(fd).st_size
        if expected < chunk_bytes:
            # A daily zip is ~60 KB: one exact-size read beats zero-filling a 1 MiB buffer.
            data = os.read(fd, expected + 1)
            if len(data) == expected:  # else the file is growing: fall through to the loop
                digest.update(data)
                return digest.hexdigest(), len(data)
            os.lseek(fd, 0, os.SEEK_SET)
        buffer = bytearray(chunk_bytes)
        view = memoryview(buffer)
        size = 0
        while True:
            n = os.readv(fd, [buffer])
            if not n:
                break
            digest.update(view[:n])
            size += n
        return digest.hexdigest(), size
    finally:
        os.close(fd)


def same_bytes(a: Path, b: Path) -> bool:
    """Whether two files of the same size hold the same bytes. Two placeholders of a working copy
    compare by their objects' ETags, without a fetch (a multipart ETag may differ for equal bytes:
    then they count as different, which costs a rebuild, never a wrong file)."""
    import filecmp

    held_a, held_b = placeholder_object(a), placeholder_object(b)
    if held_a is not None and held_b is not None:
        return held_a[1] == held_b[1]
    ensure_local(a)
    ensure_local(b)
    return filecmp.cmp(a, b, shallow=False)


def open_zip(source: Path | bytes | BinaryIO) -> zipfile.ZipFile:
    """A zip archive, for reading: a path, a seekable file object, or its bytes already in memory."""
    import io
    import zipfile  # noqa: F811 - loaded on first use (it imports bz2 and lzma)

    if isinstance(source, (str, os.PathLike)):
        ensure_local(source)
    return zipfile.ZipFile(io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source)


def open_dir(path: Path) -> int:
    """A read-only descriptor of the folder `path`, to list and stat its entries by name (`dir_fd=`)
    without building a path per file; the caller closes it. FileNotFoundError, NotADirectoryError."""
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY)


# ---- removing ----

def remove(path: Path | str) -> bool:
    """Delete the file `path`; False when it was already gone (another run, or never written)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    journal.removed(path)
    return True


def remove_all(paths: Iterable[Path]) -> int:
    """`remove` each of `paths`; return how many were there."""
    return sum(remove(path) for path in paths)


def remove_tree(path: Path) -> None:
    """Delete a folder and everything in it, as far as possible: a leftover is retried by the next run's sweep."""
    shutil.rmtree(path, ignore_errors=True)
    journal.removed_tree(path)


def sweep_temp_files(directory: Path, *, recursive: bool = True) -> int:
    """Delete temporary files a killed run left under `directory` (only in it, if not `recursive`); return how many.

    Sweep only what the caller's lock covers: a sub-folder written under another lock may hold a
    temporary file that a concurrent run is about to rename.
    """
    if not directory.exists():
        return 0
    return remove_all((directory.rglob if recursive else directory.glob)(f"*{TEMP_MARKER}"))


def files_signature(paths: Iterable[Path]) -> list[list]:
    """`[name, size, mtime_ns]` of each file, in the given order: a rewritten or re-uploaded input changes it."""
    out = []
    for path in paths:
        st = os.stat(path)
        out.append([path.name, st.st_size, st.st_mtime_ns])
    return out
