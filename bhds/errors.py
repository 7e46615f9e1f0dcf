"""Expected failures. The CLI shows them as one line `bhds: error: ...` and exits non-zero.

Anything else is a bug and gets a traceback only with --debug / BHDS_DEBUG=1.
"""

from __future__ import annotations

import errno


class BhdsError(Exception):
    """An expected failure whose message says what went wrong and what to do."""

    exit_code: int = 1

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code

    @property
    def message(self) -> str:
        return str(self)


class ConfigError(BhdsError):
    """A bad environment variable or setting."""


class InputError(BhdsError):
    """A bad argument value that Click could not catch (interval, date, symbol...)."""


class NetworkError(BhdsError):
    """The network failed after every retry, or the server refused us for good."""


class DataError(BhdsError):
    """A file on disk or from the network is not what it should be."""


class LockBusy(BhdsError):
    """Another bhds process holds the lock for this data directory and stage."""

    exit_code = 75  # EX_TEMPFAIL: cron may simply try again later


class DiskFull(DataError):
    """The disk (or the user's quota) is full: nothing more can be written, so the run stops."""


def is_disk_full(exc: BaseException) -> bool:
    """True for an OSError of a full disk (ENOSPC) or quota (EDQUOT), and SQLite's "database or disk is full"."""
    import sqlite3  # here: most commands never touch SQLite

    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1))
    if isinstance(exc, sqlite3.OperationalError):
        return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "disk is full" in str(exc)
    return False


def disk_full(path: object | None, exc: BaseException | None = None) -> DiskFull:
    """The one message for a full disk: where (when known), and what to do."""
    quota = isinstance(exc, OSError) and exc.errno == getattr(errno, "EDQUOT", -1)
    what = "disk quota exceeded" if quota else "disk full"
    where = f" while writing {path}" if path else ""
    return DiskFull(f"{what}{where}: free some space (or move CRYPTO_BASE_DIR to a bigger disk) "
                    "and run the same command again; it goes on where it stopped")


def find_disk_full(exc: BaseException) -> DiskFull | None:
    """The disk-full error behind `exc` (itself, or what caused it), as bhds' message; None if there is none."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, DiskFull):
            return exc
        if is_disk_full(exc):
            return disk_full(getattr(exc, "filename", None), exc)
        exc = exc.__cause__ or exc.__context__
    return None
