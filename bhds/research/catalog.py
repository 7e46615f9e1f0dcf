"""`bhds catalog`: a DuckDB file of views over the store's Parquet files, one per dataset.

    <tt>_klines_<interval>               results_data/<tt>/klines/<interval>/*.pqt
    <tt>_resampled_<interval>_<offset>   results_data/<tt>/resampled_klines/<interval>/<offset>/*.pqt
    <tt>_funding                         parsed funding with the API's records, the API winning per hour (as generate does)

Each view has a `symbol` column first (a split symbol's `SP<i>_` segments carry the plain symbol)
and then the file's columns. Views read the files at query time through a glob of their folder,
so new symbols and rewritten files show without a refresh; a new interval, offset or trade type
needs one (`bhds catalog`, or any generate run when the catalog exists). The file is written to a
temporary sibling and renamed, so a reader never sees half a catalog.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from bhds import storage
from bhds.errors import BhdsError, ConfigError
from bhds.paths import PARQUET_SUFFIX, Layout, list_files, list_subdirs
from bhds.types import TradeType

log = logging.getLogger("bhds.catalog")

F = TypeVar("F", bound=Callable[..., Any])

_LOCK_WAIT_S = 60.0  # writing the catalog takes well under a second


def require_duckdb() -> Any:
    try:
        import duckdb
    except ImportError:
        raise ConfigError("the SQL catalog needs DuckDB: pip install 'bhds[sql]' (or pip install duckdb)") from None
    return duckdb


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _files(directory: Path) -> str:
    return _literal(str(Path(directory).absolute() / f"*{PARQUET_SUFFIX}"))


def _symbol() -> str:
    """SQL for the symbol of a row from its file name: `.../SP2_LUNAUSDT.pqt` -> `LUNAUSDT`."""
    return r"regexp_replace(regexp_extract(filename, '([^/\\]+)\.pqt$', 1), '^SP[0-9]+_', '')"


def _select(directory: Path, extra: str = "") -> str:
    return (f"SELECT {_symbol()} AS symbol, * EXCLUDE (filename){extra} "
            f"FROM read_parquet({_files(directory)}, filename = true, union_by_name = true)")


def view_definitions(layout: Layout, folders: list[Path] | None = None) -> dict[str, str]:
    """View name -> SELECT, for every dataset on disk; `folders` gets each folder a view reads."""
    folders = [] if folders is None else folders

    def _over(directory: Path, extra: str = "") -> str:
        folders.append(directory)
        return _select(directory, extra)

    # Imported here: generate imports this module for `refresh_after`, and a no-op generate run
    # must stay free of numpy and pyarrow (which the store's footer reading pulls in).
    from bhds.research.store import API_FUNDING, FUNDING, RESAMPLED, RESULTS, datasets

    views: dict[str, str] = {}
    for tt in TradeType:
        found = datasets(layout, tt)
        funding = {d.kind: d for d in found if d.kind in (FUNDING, API_FUNDING)}
        for dataset in found:
            if dataset.kind == RESULTS:
                views[f"{tt.value}_klines_{dataset.interval}"] = _over(dataset.directory(layout))  # type: ignore[arg-type]
            elif dataset.kind == RESAMPLED:
                views[f"{tt.value}_resampled_{dataset.interval}_{dataset.offset}"] = _over(dataset.directory(layout))  # type: ignore[arg-type]
        if FUNDING in funding and API_FUNDING in funding:
            union = (f"{_over(layout.parsed_funding_dir(tt), ', 0 AS bhds_source')} UNION ALL BY NAME "
                     f"{_over(layout.api_funding_dir(tt), ', 1 AS bhds_source')}")
            views[f"{tt.value}_funding"] = (
                f"SELECT * EXCLUDE (bhds_source) FROM ({union}) "
                "QUALIFY row_number() OVER (PARTITION BY symbol, candle_begin_time ORDER BY bhds_source DESC) = 1")
        elif funding:
            only = next(iter(funding.values()))
            views[f"{tt.value}_funding"] = _over(only.directory(layout))  # type: ignore[arg-type]
        views.update(_archive_views(layout, tt, folders))
        for interval in list_subdirs(layout.trade_bars_root(tt)):
            views[f"{tt.value}_trade_bars_{interval}"] = _over(layout.trade_bars_dir(tt, interval))
    return views


def _archive_views(layout: Layout, tt: TradeType, folders: list[Path]) -> dict[str, str]:
    """`<tt>_<dataset>[_<interval>]` over what `archive parse` wrote: one folder per symbol of monthly partitions."""
    from bhds.archive.catalog import datasets_of

    views: dict[str, str] = {}
    for dataset in datasets_of(tt):
        name = f"{tt.value}_{_snake(dataset.name)}"
        roots = ([(f"{name}_{i}", layout.parsed_dataset_symbols_dir(tt, dataset.name, i))
                  for i in list_subdirs(layout.parsed_dataset_symbols_dir(tt, dataset.name))]
                 if dataset.has_interval else [(name, layout.parsed_dataset_symbols_dir(tt, dataset.name))])
        for view, root in roots:
            if any(list_files(root / symbol, PARQUET_SUFFIX) for symbol in list_subdirs(root)):
                folders.append(root)
                files = _literal(str(root.absolute() / "*" / f"*{PARQUET_SUFFIX}"))
                symbol = r"regexp_extract(filename, '([^/\\]+)[/\\][0-9]{6}\.pqt$', 1)"
                views[view] = f"SELECT {symbol} AS symbol, * EXCLUDE (filename) FROM read_parquet({files}, filename = true)"
    return views


def _snake(name: str) -> str:
    """`aggTrades` -> `agg_trades`, `markPriceKlines` -> `mark_price_klines` (SQL names without quotes)."""
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


def write_catalog(layout: Layout, path: Path | None = None) -> list[str]:
    """Write the catalog (default `binance_data/catalog.duckdb`) atomically; return the view names."""
    duckdb = require_duckdb()
    target = Path(path) if path is not None else layout.catalog_db
    if target.is_dir():
        raise ConfigError(f"{target} is a directory: give a file name for the catalog, e.g. {target / 'catalog.duckdb'}")
    # Two generate runs may finish together: one writer at a time, each listing the folders afresh.
    with storage.stage_lock(layout, "catalog", _LOCK_WAIT_S):
        return _write(duckdb, layout, target)


def _write(duckdb: Any, layout: Layout, target: Path) -> list[str]:
    folders: list[Path] = []
    views = view_definitions(layout, folders)
    # DuckDB reads these files itself (schemas now, rows at query time): in a working copy of a
    # bucket, their placeholders are fetched first (`objstore.lazy`; nothing to do elsewhere).
    for folder in folders:
        storage.ensure_local_tree(folder)
    with storage.atomic_path(target) as tmp:
        wal = tmp.with_name(tmp.name + ".wal")
        try:
            connection = duckdb.connect(str(tmp))
            try:
                for name, select in views.items():
                    connection.execute(f'CREATE VIEW "{name}" AS {select}')
            finally:
                connection.close()
        except duckdb.Error as exc:
            raise BhdsError(f"cannot write the catalog {target} ({str(exc).splitlines()[0]}): check the files it names, "
                            "or run with --debug") from exc
        finally:
            storage.remove(wal)
    return list(views)


def refresh_if_present(data_dir: Path) -> None:
    """Rewrite the default catalog when one exists; a failure is logged, never raised (the data is fine)."""
    layout = Layout(data_dir)
    if not layout.catalog_db.exists():
        return
    try:
        names = write_catalog(layout)
        log.info("catalog %s refreshed: %d views", layout.catalog_db, len(names))
    except BhdsError as exc:
        log.warning("catalog not refreshed: %s", exc.message)


def refresh_after(workflow: F) -> F:
    """Wrap a generate workflow so that the catalog follows the folders it may have added."""

    @functools.wraps(workflow)
    def run(settings: Any, **kwargs: Any) -> Any:
        summary = workflow(settings, **kwargs)
        if summary.files or summary.changed:  # a run that changed nothing added or dropped no folder
            refresh_if_present(settings.data_dir)
        return summary

    return run  # type: ignore[return-value]
