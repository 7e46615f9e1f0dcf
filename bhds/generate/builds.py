"""What each result file was built from, so `kline-type` and `resample-type` redo only what changed.

A build record maps each unit of work (a symbol for `kline-type`; a 1m results file at one offset
for `resample-type`) to a digest of everything its output depends on (its input files' sizes and
mtimes, the options, the contract size, `FORMAT`) and to the size and mtime of the files it wrote.
A unit is current when its digest is unchanged and its outputs are exactly the recorded files,
untouched: an output deleted or rewritten by another tool makes the unit stale again.

The record lives in `.bhds/cache/` (deleting it costs one full rebuild) and is written after the
results tree has been swapped in. A run killed between the swap and the record leaves the old
record, which does not know the files the run rebuilt, so the next run rebuilds those units again:
slower, never wrong. Stdlib only: a run with nothing to do imports neither numpy nor pyarrow.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from bhds import storage

log = logging.getLogger("bhds.generate")

# Bump when a change to generate or resample changes what a result file holds for the same inputs.
FORMAT = 2

FileStat = tuple[int, int]  # size, mtime_ns


def file_stat(path: Path) -> FileStat | None:
    """Size and modification time (ns), or None when the file is absent.

    Every writer renames a freshly written file into place, so a rewritten file has a new mtime.
    The inode is left out on purpose: a copy of the data directory (`cp -a`, rsync) keeps sizes
    and mtimes, and so needs no rebuild.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_size, st.st_mtime_ns


def files_stat(paths: Iterable[Path], root: Path) -> list[tuple[str, FileStat | None]]:
    """`(path relative to root, file_stat)` of each path, for a digest."""
    return [(str(path.relative_to(root)), file_stat(path)) for path in paths]


def digest(*parts: object) -> str:
    """A stable hash of JSON-able parts (what a unit's output depends on)."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass
class Unit:
    """One unit of work as last built: the digest of its inputs and the files it wrote (path relative to the tree → stat)."""

    digest: str
    outputs: dict[str, FileStat] = field(default_factory=dict)
    inputs: dict | None = None  # what the unit's latest output was built from, file by file (see `generate.extend`)


def tree_files(root: Path) -> set[str]:
    """Every file under `root`, as paths relative to it (empty when `root` is absent)."""
    found: set[str] = set()
    if not root.is_dir():
        return found
    for directory, _subdirs, names in os.walk(root):
        prefix = os.path.relpath(directory, root)
        found.update(name if prefix == "." else os.path.join(prefix, name) for name in names)
    return found


def outputs_of(tree: Path, names: Iterable[str]) -> dict[str, FileStat]:
    """The recorded stat of each written file (relative to `tree`)."""
    out = {}
    for name in names:
        stat = file_stat(tree / name)
        if stat is not None:
            out[name] = stat
    return out


class BuildRecord:
    """The units of one results tree as last built, loaded from and saved to one JSON file."""

    def __init__(self, path: Path, units: dict[str, Unit] | None = None) -> None:
        self.path = path
        self.units: dict[str, Unit] = units or {}

    @classmethod
    def load(cls, path: Path) -> BuildRecord:
        """The record at `path`; empty (everything gets rebuilt) when absent, unreadable or of another FORMAT."""
        try:
            raw = storage.read_json(path)
            if raw.get("format") != FORMAT:
                return cls(path)
            units = {key: Unit(value["digest"], {name: tuple(stat) for name, stat in value["outputs"].items()},  # type: ignore[misc]
                               value.get("inputs")) for key, value in raw["units"].items()}
        except FileNotFoundError:
            return cls(path)
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            log.warning("build record %s is unreadable (%s): rebuilding everything", path, exc)
            return cls(path)
        return cls(path, units)

    def current(self, key: str, unit_digest: str, tree: Path) -> Unit | None:
        """The recorded unit when it was built from the same inputs and its outputs in `tree` are untouched."""
        unit = self.units.get(key)
        if unit is None or unit.digest != unit_digest:
            return None
        if any(file_stat(tree / name) != stat for name, stat in unit.outputs.items()):
            return None
        return unit

    def untouched(self, key: str, tree: Path) -> Unit | None:
        """The recorded unit, whatever its inputs now, when every file it wrote is still in `tree` as written."""
        unit = self.units.get(key)
        if unit is None or not unit.outputs or any(file_stat(tree / name) != stat for name, stat in unit.outputs.items()):
            return None
        return unit

    def save(self, units: dict[str, Unit]) -> None:
        raw = {"format": FORMAT, "units": {key: {"digest": u.digest, "outputs": u.outputs, **({"inputs": u.inputs} if u.inputs else {})}
                                           for key, u in sorted(units.items())}}
        storage.write_json(raw, self.path)
        self.units = units
