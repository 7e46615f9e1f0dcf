"""Per-month findings kept between reports, so a re-run decodes only the months whose files changed.

A month's entry is valid while the names, sizes and mtimes of its files are unchanged; every
writer in bhds replaces files atomically, which gives a replaced file a new mtime. The cache is
an optimisation only: a missing, stale or unreadable cache just means reading the Parquet files.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from bhds import storage
from bhds.errors import DataError
from bhds.quality.inventory import KlineFiles
from bhds.quality.pieces import PieceStats

FORMAT = "bhds-quality-cache/4"
log = logging.getLogger("bhds.quality")

Entries = dict[str, dict]  # month "YYYYMM" -> {"sig": [...], "stats": {...}}


class PieceCache:
    def __init__(self, path: Path, scope: str, symbols: dict[str, Entries] | None = None) -> None:
        self.path = path
        self.scope = scope  # "<trade type>/<interval>": a cache never mixes stores
        self.symbols: dict[str, Entries] = symbols or {}
        self.changed = False

    @classmethod
    def load(cls, path: Path, scope: str) -> PieceCache:
        try:
            data = storage.read_json(path)
            if data.get("format") == FORMAT and data.get("scope") == scope and isinstance(data.get("symbols"), dict):
                # Entries of the wrong shape (a hand edit, another version) are dropped, not trusted.
                symbols = {name: entry for name, entry in data["symbols"].items() if _well_formed(entry)}
                return cls(path, scope, symbols)
        except FileNotFoundError:
            pass
        except (OSError, ValueError, AttributeError) as exc:
            log.debug("ignoring unreadable quality cache %s: %s", path, exc)
        return cls(path, scope)

    def entries(self, symbol: str) -> Entries:
        """The symbol's months."""
        return self.symbols.get(symbol, {}).get("months", {})

    def archive(self, symbol: str) -> dict | None:
        """The symbol's last archive listing (see inventory.archive_files)."""
        return self.symbols.get(symbol, {}).get("archive")

    def replace(self, symbol: str, entries: Entries, archive: dict | None) -> None:
        value = {"months": entries, "archive": archive}
        if self.symbols.get(symbol) != value:
            self.symbols[symbol] = value
            self.changed = True

    def save(self) -> None:
        """Write the cache atomically; a read-only store only loses the speed-up."""
        if not self.changed:
            return
        if not _writable(self.path):
            log.debug("the store is read-only: the quality cache %s is not saved", self.path)
            return
        try:
            storage.write_json({"format": FORMAT, "scope": self.scope, "symbols": self.symbols}, self.path)
        except DataError as exc:
            log.warning("could not save the quality cache (%s); the next report reads every file again", exc)


def _writable(path: Path) -> bool:
    """Whether the cache file could be written: its nearest existing folder is writable."""
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return os.access(folder, os.W_OK)


def _well_formed(entry: object) -> bool:
    if not isinstance(entry, dict) or not isinstance(entry.get("months"), dict):
        return False
    archive = entry.get("archive")
    return (archive is None or isinstance(archive, dict)) and all(
        isinstance(m, dict) and isinstance(m.get("stats"), dict) for m in entry["months"].values())


def lookup(entries: Entries, month: str, sig: list) -> PieceStats | None:
    """The cached stats of a month whose files still have the signature `sig`."""
    entry = entries.get(month)
    if not entry or entry.get("sig") != sig:
        return None
    try:
        return PieceStats.from_json(entry["stats"])
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def month_signatures(files: KlineFiles) -> dict[str, list]:
    """Month -> the names, sizes and mtimes of its partition and API day files, in a fixed order."""
    out = {}
    for month in files.months():
        partition = files.parsed.get(month)
        sigs = ([partition] if partition else []) + [files.api[day] for day in files.api_days_in(month)]
        out[month] = [sig.key for sig in sigs]
    return out
