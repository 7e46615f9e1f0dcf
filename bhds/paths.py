"""Every local path and S3 key of the data layout (contract §4). No other module joins path segments.

The archive mirror under `aws_data/` is the S3 key verbatim; everything else uses the trade-type
value (`spot`, `um_futures`, `cm_futures`). bhds' own bookkeeping lives in `binance_data/.bhds/`,
outside the contract's folders, so a tree made by the legacy tool and ours stay interchangeable.
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

from bhds.types import TradeType

PARQUET_SUFFIX = ".pqt"
CHECKSUM_SUFFIX = ".CHECKSUM"
VERIFIED_SUFFIX = ".verified"
PART_SUFFIX = ".part"
TEMP_MARKER = ".bhds-tmp"

_MARKET_SEGMENT = {
    TradeType.spot: "spot",
    TradeType.um_futures: "futures/um",
    TradeType.cm_futures: "futures/cm",
}


def market_segment(trade_type: TradeType) -> str:
    """Binance's path segment: `spot`, `futures/um`, `futures/cm`."""
    return _MARKET_SEGMENT[TradeType(trade_type)]


# ---- S3 keys (always '/'-joined, directory prefixes end with '/') ----

def kline_symbols_prefix(trade_type: TradeType) -> str:
    return f"data/{market_segment(trade_type)}/daily/klines/"


def kline_files_prefix(trade_type: TradeType, symbol: str, interval: str) -> str:
    return f"{kline_symbols_prefix(trade_type)}{symbol}/{interval}/"


def funding_symbols_prefix(trade_type: TradeType) -> str:
    return f"data/{market_segment(trade_type)}/monthly/fundingRate/"


def funding_files_prefix(trade_type: TradeType, symbol: str) -> str:
    return f"{funding_symbols_prefix(trade_type)}{symbol}/"


def liquidation_symbols_prefix(trade_type: TradeType) -> str:
    return f"data/{market_segment(trade_type)}/daily/liquidationSnapshot/"


def liquidation_files_prefix(trade_type: TradeType, symbol: str) -> str:
    return f"{liquidation_symbols_prefix(trade_type)}{symbol}/"


def dataset_symbols_prefix(trade_type: TradeType, period: str, dataset: str) -> str:
    """`data/<market>/<daily|monthly>/<dataset>/`: one sub-directory per symbol (any archive dataset)."""
    return f"data/{market_segment(trade_type)}/{period}/{dataset}/"


def dataset_files_prefix(trade_type: TradeType, period: str, dataset: str, symbol: str, interval: str | None = None) -> str:
    """The directory of one symbol's files of a dataset (with the interval folder for kline-like ones)."""
    prefix = f"{dataset_symbols_prefix(trade_type, period, dataset)}{symbol}/"
    return f"{prefix}{interval}/" if interval else prefix


def key_url(base_url: str, key: str) -> str:
    """Download URL of an S3 key under the bucket URL."""
    return f"{base_url.rstrip('/')}/{key}"


def kline_zip_name(symbol: str, interval: str, day: date) -> str:
    return f"{symbol}-{interval}-{day.isoformat()}.zip"


def funding_zip_name(symbol: str, year: int, month: int) -> str:
    return f"{symbol}-fundingRate-{year:04d}-{month:02d}.zip"


# ---- companions of a local archive file ----

def checksum_path(zip_path: Path) -> Path:
    return zip_path.with_name(zip_path.name + CHECKSUM_SUFFIX)


def verified_marker(zip_path: Path) -> Path:
    """The legacy tool's empty `<zip>.verified` marker; we write and honour it."""
    return zip_path.with_name(zip_path.name + VERIFIED_SUFFIX)


def part_path(path: Path) -> Path:
    """Where a download streams before it is checked and renamed."""
    return path.with_name(path.name + PART_SUFFIX)


def temp_path(path: Path, token: str) -> Path:
    """A temporary sibling of `path`; the marker lets a later run sweep leftovers of a killed one."""
    return path.with_name(f".{path.name}.{token}{TEMP_MARKER}")


def worker_probe(data_dir: Path, token: str) -> Path:
    """The file a Dask command writes in its data folder for the workers to find (a temp file: never published)."""
    return temp_path(data_dir / "worker-probe", token)


STAGING_MARKER = ".bhds-build"
RETIRED_MARKER = ".bhds-old"


def swap_home(target: Path) -> Path:
    """The directory a swap of `target` really replaces: `target`, or where it points if it is a symlink.

    A results folder linked to another disk must stay a link: the new tree is built beside the
    link's destination (same file system, so the swap is one rename) and takes its place there.
    """
    target = Path(target)
    return Path(os.path.realpath(target)) if target.is_symlink() else target


def staging_dir(target: Path, token: str) -> Path:
    """Where a whole output tree is built beside `target` (beside its destination if it is a symlink)."""
    home = swap_home(target)
    return home.with_name(f".{home.name}.{token}{STAGING_MARKER}")


def retired_dir(target: Path, token: str) -> Path:
    """Where the previous `target` waits during a swap, until it is deleted."""
    home = swap_home(target)
    return home.with_name(f".{home.name}.{token}{RETIRED_MARKER}")


def swap_leftovers(target: Path) -> tuple[list[Path], list[Path]]:
    """(staging dirs, retired dirs) a killed swap of `target` may have left beside it (or beside its destination)."""
    home = swap_home(target)
    parent, prefix = home.parent, f".{home.name}."
    if not parent.is_dir():
        return [], []
    entries = sorted(p for p in parent.iterdir() if p.name.startswith(prefix) and p.is_dir() and not p.is_symlink())
    return ([p for p in entries if p.name.endswith(STAGING_MARKER)], [p for p in entries if p.name.endswith(RETIRED_MARKER)])


def parquet_in(directory: Path, name: str) -> Path:
    """`<directory>/<name>.pqt`, for results written into a staging tree."""
    return Path(directory) / f"{name}{PARQUET_SUFFIX}"


def resampled_file_in(interval_dir: Path, offset: str, name: str) -> Path:
    """`<interval_dir>/<offset>/<name>.pqt`, the layout of `Layout.resampled_file` under any root."""
    return Path(interval_dir) / offset / f"{name}{PARQUET_SUFFIX}"


# Parsed folders of archive datasets whose own name is taken by a legacy stage.
PARSED_DATASET_FOLDERS = {"klines": "archive_klines"}

# ---- stage locks ----

# The datasets a stage can work on, as they appear in lock names.
KLINES = "klines"
FUNDING = "funding"
LIQUIDATION = "liquidation"


def lock_name(stage: str, trade_type: TradeType, dataset: str, interval: str | None = None) -> str:
    """`<stage>-<trade type>-<dataset>[-<interval>]`: the lock of one stage's output for one dataset.

    Stages are `archive` (download and verify: verify deletes what download writes), `parse`,
    `api`, `generate` and `resample`. Runs collide only when they share a name, so
    `aws_funding download-um-futures` and `aws_kline download-um-futures 1m` run side by side,
    while two runs writing the same folders wait for each other (or exit 75).
    """
    name = f"{stage}-{TradeType(trade_type).value}-{dataset}"
    return f"{name}-{interval}" if interval else name


class Layout:
    """The data directory `<CRYPTO_BASE_DIR>/binance_data` and everything in it."""

    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir)

    # -- archive mirror --
    @property
    def aws_root(self) -> Path:
        return self.root / "aws_data"

    def local_for_key(self, key: str) -> Path:
        """The local mirror path of an S3 key (or key prefix)."""
        return self.aws_root.joinpath(*[part for part in key.split("/") if part])

    def aws_kline_dir(self, trade_type: TradeType, symbol: str, interval: str) -> Path:
        return self.local_for_key(kline_files_prefix(trade_type, symbol, interval))

    def aws_kline_symbols_dir(self, trade_type: TradeType) -> Path:
        return self.local_for_key(kline_symbols_prefix(trade_type))

    def aws_funding_dir(self, trade_type: TradeType, symbol: str) -> Path:
        return self.local_for_key(funding_files_prefix(trade_type, symbol))

    def aws_funding_symbols_dir(self, trade_type: TradeType) -> Path:
        return self.local_for_key(funding_symbols_prefix(trade_type))

    def aws_liquidation_dir(self, trade_type: TradeType, symbol: str) -> Path:
        return self.local_for_key(liquidation_files_prefix(trade_type, symbol))

    # -- parsed --
    def parsed_kline_dir(self, trade_type: TradeType, symbol: str, interval: str) -> Path:
        return self.root / "parsed_data" / TradeType(trade_type).value / "klines" / symbol / interval

    def parsed_kline_partition(self, trade_type: TradeType, symbol: str, interval: str, year: int, month: int) -> Path:
        return self.parsed_kline_dir(trade_type, symbol, interval) / f"{year:04d}{month:02d}{PARQUET_SUFFIX}"

    def parsed_kline_symbols_dir(self, trade_type: TradeType) -> Path:
        """`parsed_data/<tt>/klines`, one sub-directory per symbol."""
        return self.root / "parsed_data" / TradeType(trade_type).value / "klines"

    def parsed_dataset_dir(self, trade_type: TradeType, dataset: str, symbol: str, interval: str | None = None) -> Path:
        """`parsed_data/<tt>/<dataset>/[<interval>/]<SYMBOL>`: monthly partitions of an archive dataset.

        Archive `klines` go to `archive_klines`: `parsed_data/<tt>/klines/` is the legacy parse's,
        whose sub-directories are read as symbols.
        """
        return self.parsed_dataset_symbols_dir(trade_type, dataset, interval) / symbol

    def parsed_dataset_partition(self, trade_type: TradeType, dataset: str, symbol: str, year: int, month: int,
                                 interval: str | None = None) -> Path:
        return self.parsed_dataset_dir(trade_type, dataset, symbol, interval) / f"{year:04d}{month:02d}{PARQUET_SUFFIX}"

    def parsed_dataset_symbols_dir(self, trade_type: TradeType, dataset: str, interval: str | None = None) -> Path:
        """`parsed_data/<tt>/<dataset>[/<interval>]`, one sub-directory per symbol."""
        base = self.root / "parsed_data" / TradeType(trade_type).value / PARSED_DATASET_FOLDERS.get(dataset, dataset)
        return base / interval if interval else base

    def parsed_funding_dir(self, trade_type: TradeType) -> Path:
        return self.root / "parsed_data" / TradeType(trade_type).value / "funding"

    def parsed_funding_file(self, trade_type: TradeType, symbol: str) -> Path:
        return self.parsed_funding_dir(trade_type) / f"{symbol}{PARQUET_SUFFIX}"

    # -- REST API --
    def api_kline_dir(self, trade_type: TradeType, symbol: str, interval: str) -> Path:
        return self.root / "api_data" / TradeType(trade_type).value / "klines" / symbol / interval

    def api_kline_day_file(self, trade_type: TradeType, symbol: str, interval: str, day: date) -> Path:
        return self.api_kline_dir(trade_type, symbol, interval) / f"{day:%Y%m%d}{PARQUET_SUFFIX}"

    def api_kline_symbols_dir(self, trade_type: TradeType) -> Path:
        """`api_data/<tt>/klines`, one sub-directory per symbol."""
        return self.root / "api_data" / TradeType(trade_type).value / "klines"

    def api_funding_dir(self, trade_type: TradeType) -> Path:
        return self.root / "api_data" / TradeType(trade_type).value / "funding_rate"

    def api_funding_file(self, trade_type: TradeType, symbol: str) -> Path:
        return self.api_funding_dir(trade_type) / f"{symbol}{PARQUET_SUFFIX}"

    # -- results --
    def results_klines_root(self, trade_type: TradeType) -> Path:
        """`results_data/<tt>/klines`, one sub-directory per interval."""
        return self.root / "results_data" / TradeType(trade_type).value / "klines"

    def results_kline_dir(self, trade_type: TradeType, interval: str) -> Path:
        return self.results_klines_root(trade_type) / interval

    def results_kline_file(self, trade_type: TradeType, interval: str, name: str) -> Path:
        return self.results_kline_dir(trade_type, interval) / f"{name}{PARQUET_SUFFIX}"

    def trade_bars_root(self, trade_type: TradeType) -> Path:
        """`results_data/<tt>/trade_bars`, one folder per interval."""
        return self.root / "results_data" / TradeType(trade_type).value / "trade_bars"

    def trade_bars_dir(self, trade_type: TradeType, interval: str) -> Path:
        """`results_data/<tt>/trade_bars/<interval>`: klines built from trades by `generate bars`."""
        return self.trade_bars_root(trade_type) / interval

    def trade_bars_file(self, trade_type: TradeType, interval: str, symbol: str) -> Path:
        return self.trade_bars_dir(trade_type, interval) / f"{symbol}{PARQUET_SUFFIX}"

    def resampled_root(self, trade_type: TradeType) -> Path:
        """`results_data/<tt>/resampled_klines`, one sub-directory per interval, then per offset."""
        return self.root / "results_data" / TradeType(trade_type).value / "resampled_klines"

    def resampled_interval_dir(self, trade_type: TradeType, resample_interval: str) -> Path:
        return self.resampled_root(trade_type) / resample_interval

    def resampled_dir(self, trade_type: TradeType, resample_interval: str, offset: str) -> Path:
        return self.resampled_interval_dir(trade_type, resample_interval) / offset

    def resampled_file(self, trade_type: TradeType, resample_interval: str, offset: str, name: str) -> Path:
        return self.resampled_dir(trade_type, resample_interval, offset) / f"{name}{PARQUET_SUFFIX}"

    def indicators_dir(self, trade_type: TradeType, interval: str, offset: str | None = None) -> Path:
        """`results_data/<tt>/indicators/<interval>[/<offset>]`: indicators of the klines or resamples of that interval."""
        base = self.root / "results_data" / TradeType(trade_type).value / "indicators" / interval
        return base / offset if offset else base

    def indicators_file(self, trade_type: TradeType, interval: str, offset: str | None, symbol: str) -> Path:
        return self.indicators_dir(trade_type, interval, offset) / f"{symbol}{PARQUET_SUFFIX}"

    # -- bhds bookkeeping (not part of the legacy layout) --
    @property
    def state_dir(self) -> Path:
        return self.root / ".bhds"

    @property
    def run_log(self) -> Path:
        """One JSON line per bhds command run (`bhds status` reads it)."""
        return self.state_dir / "runs.jsonl"

    @property
    def run_log_previous(self) -> Path:
        """Where `run_log` is rotated to when it grows too large (one generation is kept)."""
        return self.state_dir / "runs.jsonl.1"

    @property
    def state_db(self) -> Path:
        """SQLite file recording what was verified, parsed and asked of the API."""
        return self.state_dir / "state.sqlite"

    def state_db_set_aside(self, stamp: str) -> Path:
        """Where a damaged state database is kept (for a post-mortem) before it is rebuilt."""
        return self.state_dir / f"state.sqlite.damaged-{stamp}"

    def lock_file(self, stage: str) -> Path:
        """The file behind `stage_lock(layout, stage)`; `stage` is a `lock_name`."""
        return self.state_dir / "locks" / f"{stage}.lock"

    def cache_file(self, name: str) -> Path:
        """Small cached metadata (e.g. COIN-M contract sizes) so later stages run offline."""
        return self.state_dir / "cache" / name

    @property
    def catalog_db(self) -> Path:
        """The DuckDB file of `bhds catalog`: SQL views over the results and funding files."""
        return self.root / "catalog.duckdb"

    def marker_template(self, generation: int = 0) -> Path:
        """An empty file that `.verified` markers are hard links to (a link is ~20× cheaper than a new file)."""
        return self.state_dir / "markers" / f"empty-{generation}"


def list_subdirs(directory: Path) -> list[str]:
    """Sorted names of the sub-directories of `directory` (empty when it does not exist)."""
    if not directory.is_dir():
        return []
    return sorted(entry.name for entry in directory.iterdir() if entry.is_dir() and not entry.name.startswith("."))


def partition_month(name: str) -> tuple[int, int] | None:
    """(year, month) of a parsed partition's file name `YYYYMM.pqt`; None for any other name."""
    stem = name[: -len(PARQUET_SUFFIX)] if name.endswith(PARQUET_SUFFIX) else ""
    if len(stem) != 6 or not stem.isdigit() or not 1 <= int(stem[4:]) <= 12:
        return None
    return int(stem[:4]), int(stem[4:])


def list_files(directory: Path, suffix: str) -> list[Path]:
    """Sorted files in `directory` whose name ends with `suffix` (none when it does not exist)."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.name.endswith(suffix) and p.is_file() and not p.name.startswith("."))


# ---- object store (a data root given as a URL; the protocol is in bhds/objstore) ----

STORE_MANIFEST = "_manifest.json"
STORE_LEASE = "_lease"
STORE_COLLECTED = "_collected"  # the generation whose garbage collection finished
# The kinds of tree a command reads or writes as a whole; each is published by its own manifest.
STORE_TREE_KINDS = ("aws", "parsed", "api", "results", "state")
# Under `.bhds/`, what stays with the machine: its locks, its run log, link templates, SQLite's side files.
_LOCAL_ONLY = ("locks/", "runs.jsonl", "markers/", "state.sqlite-wal", "state.sqlite-shm", "state.sqlite.damaged-")


def store_tree_dir(layout: Layout, kind: str, trade_type: TradeType) -> Path:
    """The local folder of one published tree: a market's archive mirror, parsed, API or results data, or `.bhds`."""
    tt = TradeType(trade_type)
    return {
        "aws": lambda: layout.local_for_key(f"data/{market_segment(tt)}/"),
        "parsed": lambda: layout.root / "parsed_data" / tt.value,
        "api": lambda: layout.root / "api_data" / tt.value,
        "results": lambda: layout.root / "results_data" / tt.value,
        "state": lambda: layout.state_dir,
    }[kind]()


def store_tree_name(layout: Layout, tree_dir: Path) -> str:
    """A tree's name: its folder relative to the data directory, '/'-joined (e.g. `results_data/spot`)."""
    return Path(tree_dir).relative_to(layout.root).as_posix()


def store_key(tree: str, rel: str) -> str:
    """The object key, under the store URL, of `rel` inside a tree (`binance_data/<tree>/<rel>`)."""
    return f"binance_data/{tree}/{rel}"


def store_generation_dir(generation: int, token: str) -> str:
    """The folder, inside a tree, of the objects one writer uploaded for generation N (token: that writer)."""
    return f"_g{generation:06d}.{token}"


def store_generation_of(folder: str) -> int | None:
    """The generation N of a `store_generation_dir` name (`_g000042.1a2b3c4d` -> 42); None for any other name."""
    number, dot, token = folder[2:].partition(".")
    return int(number) if folder.startswith("_g") and dot and token and number.isdigit() else None


def store_skips(tree: str, rel: str) -> bool:
    """True for a file that is never published: temp files of a killed writer, and machine-local bookkeeping."""
    if TEMP_MARKER in rel or STAGING_MARKER in rel or RETIRED_MARKER in rel or PART_SUFFIX in rel:  # cheap test first
        if any(TEMP_MARKER in p or STAGING_MARKER in p or RETIRED_MARKER in p or p.endswith(PART_SUFFIX) for p in rel.split("/")):
            return True
    return tree == ".bhds" and rel.startswith(_LOCAL_ONLY)


def sync_record(layout: Layout, tree: str) -> Path:
    """What the working copy last synced of a tree (manifest + local stats), beside `binance_data`."""
    return layout.root.parent / ".bhds-sync" / (tree.replace("/", "~") + ".json")


def synced_manifest(layout: Layout, tree: str) -> Path:
    """The body of the manifest the working copy last synced or published, beside its sync record."""
    return layout.root.parent / ".bhds-sync" / (tree.replace("/", "~") + ".manifest.json")


def client_marker(layout: Layout, token: str) -> Path:
    """The file a command on a bucket keeps in its working copy while it runs: a Dask worker that sees
    it works in that folder; one that does not keeps a copy of its own (`objstore.detached`)."""
    return layout.root.parent / ".bhds-sync" / f"client-{token}"


WORKING_COPY_LOCK = "working-copy"  # one command at a time in a store's local working copy
