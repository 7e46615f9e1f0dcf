"""Expected failures. The CLI shows them as one line `bhds: error: ...` and exits non-zero.

Anything else is a bug and gets a traceback only with --debug / BHDS_DEBUG=1.
"""

from __future__ import annotations


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
