"""What a piece of work wrote and removed: the outputs a cluster worker without the client's folder sends on.

Every data write and removal goes through `bhds.storage` (tests/test_storage_owns_io.py), which
notes it here when a journal is recording in the current context (`recording`). A Dask worker on
another machine runs a task in its own copy of the working copy and uploads what the task's
journal lists (`objstore.detached`); otherwise nothing records and a note costs one lookup.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path


class Journal:
    """Absolute paths written (in order, last write wins) and removed, and folders removed whole."""

    def __init__(self) -> None:
        self.written: dict[str, None] = {}
        self.removed: set[str] = set()
        self.removed_trees: set[str] = set()


_current: ContextVar[Journal | None] = ContextVar("bhds_journal", default=None)


def wrote(path: Path | str) -> None:
    journal = _current.get()
    if journal is not None:
        name = os.path.abspath(path)
        journal.written[name] = None
        journal.removed.discard(name)


def removed(path: Path | str) -> None:
    journal = _current.get()
    if journal is not None:
        name = os.path.abspath(path)
        journal.written.pop(name, None)
        journal.removed.add(name)


def removed_tree(path: Path | str) -> None:
    journal = _current.get()
    if journal is not None:
        top = os.path.abspath(path) + os.sep
        for name in [n for n in journal.written if n.startswith(top)]:
            del journal.written[name]
        journal.removed_trees.add(top)


def replaced_tree(path: Path | str) -> None:
    """A folder swapped in whole (`replace_dir`): what it held is gone, every file it holds now is written."""
    journal = _current.get()
    if journal is not None:
        removed_tree(path)
        for folder, _, names in os.walk(path):
            for name in names:
                wrote(os.path.join(folder, name))


@contextmanager
def recording() -> Iterator[Journal]:
    """Record this context's writes and removals (threads it starts must copy the context)."""
    journal = Journal()
    token = _current.set(journal)
    try:
        yield journal
    finally:
        _current.reset(token)
