"""Progress bars and log set-up: bars only on a terminal, so cron logs stay one line per event."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import Any, TypeVar

from tqdm import tqdm

T = TypeVar("T")
LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"


def stderr_is_terminal() -> bool:
    return sys.stderr.isatty()


def bar(iterable: Iterable[T] | None = None, *, total: int | None = None, desc: str = "", unit: str = "it", **kwargs: Any) -> tqdm:
    """A tqdm bar on stderr, silent when stderr is not a terminal."""
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=not stderr_is_terminal(), leave=False, dynamic_ncols=True, **kwargs)


class _TqdmSafeHandler(logging.StreamHandler):
    """Writes log lines through tqdm so they do not tear a progress bar apart."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


def setup_logging(debug: bool = False) -> None:
    """Timestamped log lines on stderr; DEBUG with --debug."""
    root = logging.getLogger("bhds")
    root.handlers.clear()
    handler = _TqdmSafeHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT, "%Y-%m-%d %H:%M:%S"))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    root.propagate = False
