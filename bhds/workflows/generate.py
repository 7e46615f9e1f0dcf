"""Workflows of the `generate` command group: result klines (contract §6.11) and resamples (§6.12).

`kline-type` and `resample-type` build their whole output tree in a staging directory beside the
old one and swap it in at the end, so readers never see a half-built tree and a failed or killed
run leaves the previous results. They are incremental: only the units whose inputs changed since
the last run (`bhds.generate.builds`) are computed; the others' files are hard-linked into the
staging tree, and a run with nothing to do writes nothing. One symbol's (file's) failure is
reported, its previous outputs are carried over, and the others go on. Single-symbol commands
write their files atomically in place.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import multiprocessing
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

from bhds import storage
from bhds.errors import BhdsError, DataError, InputError
from bhds.generate.builds import FORMAT, BuildRecord, FileStat, Unit, digest, file_stat, files_stat, outputs_of, tree_files
from bhds.generate.contracts import CONTRACT_SIZES_CACHE, load_sizes, sizes_for
from bhds.generate.offsets import ResamplePlan, plan_resample
from bhds.generate.jobs import RESAMPLE_SOURCE_INTERVAL, RESAMPLED_GROUP_MONTHS, TASKS_MODULE, KlineJob, ResampleJob, TaskResult, run_kline_job, run_resample_job
from bhds.parallel import imap_isolated
from bhds.paths import KLINES, PARQUET_SUFFIX, Layout, list_files, list_subdirs, lock_name, parquet_in, resampled_file_in, staging_dir
from bhds.progress import bar
from bhds.settings import Settings
from bhds.symbol_names import check_listed, listed_locally
from bhds.types import RunSummary, TradeType, parse_interval

log = logging.getLogger("bhds.generate")

J = TypeVar("J")


# ---- shared helpers ----

def _kline_stage(trade_type: TradeType, interval: str) -> str:
    return lock_name("generate", trade_type, KLINES, interval)


def _resample_stage(trade_type: TradeType, interval: str) -> str:
    return lock_name("resample", trade_type, KLINES, interval)


@contextlib.contextmanager
def _resample_locks(settings: Settings, layout: Layout, trade_type: TradeType, interval: str) -> Iterator[None]:
    """Own the resampled tree, and read the 1m results while no `kline-type 1m` is rewriting them."""
    with storage.stage_lock(layout, _resample_stage(trade_type, interval), settings.lock_timeout), \
            storage.stage_lock(layout, _kline_stage(trade_type, RESAMPLE_SOURCE_INTERVAL), settings.lock_timeout, shared=True):
        yield


def _check_kline_args(time_interval: str, min_days: int, min_price_chg: float) -> str:
    """The interval as every stage spells it in paths (`1H` -> `1h`), after checking the options."""
    interval = parse_interval(time_interval, what="time interval", archive=True).text
    if min_days < 0:
        raise InputError(f"--min-days {min_days} is negative: give a number of days of 0 or more (default 1)", exit_code=2)
    if not min_price_chg >= 0:  # also catches nan
        raise InputError(f"--min-price-chg {min_price_chg} is not a price change ratio: give 0 or more, e.g. 0.1 for 10% (default)", exit_code=2)
    return interval


def _kline_symbols(layout: Layout, trade_type: TradeType, interval: str) -> list[str]:
    """Symbols with a local archive kline directory for the interval (contract §6.5)."""
    return [s for s in list_subdirs(layout.aws_kline_symbols_dir(trade_type)) if layout.aws_kline_dir(trade_type, s, interval).is_dir()]


def _contract_sizes(layout: Layout, trade_type: TradeType, symbols: list[str], with_vwap: bool) -> dict[str, float]:
    if trade_type is not TradeType.cm_futures or not with_vwap:
        return {}
    return sizes_for(symbols, load_sizes(layout.cache_file(CONTRACT_SIZES_CACHE)))


def _segment_pattern(symbol: str) -> re.Pattern[str]:
    return re.compile(rf"^SP\d+_{re.escape(symbol)}$")


def _stem(path: Path) -> str:
    return path.name[: -len(PARQUET_SUFFIX)]


def _symbol_files(directory: Path, symbol: str) -> list[Path]:
    """`<SYMBOL>.pqt` and its `SP<i>_<SYMBOL>.pqt` segments in a results directory."""
    pattern = _segment_pattern(symbol)
    return [p for p in list_files(directory, PARQUET_SUFFIX) if _stem(p) == symbol or pattern.match(_stem(p))]


def _reason(exc: BaseException) -> str:
    return exc.message if isinstance(exc, BhdsError) else f"{type(exc).__name__}: {exc}"


def _count(summary: RunSummary, result: TaskResult) -> None:
    if result.skipped:
        summary.skipped += 1
        return
    summary.files += len(result.files)
    summary.rows += result.rows
    summary.bytes += result.bytes


def _run_all(func: Callable[[J], TaskResult], jobs: Sequence[J], label: Callable[[J], str], settings: Settings,
             summary: RunSummary) -> tuple[list[tuple[J, TaskResult]], list[J]]:
    """Run the jobs on every core and count what they wrote; return (jobs done with their results, jobs that failed)."""
    # The pool's workers fork from the forkserver (`bhds.parallel`): have it import the entry
    # script and the task code (numpy, pyarrow) once, rather than every worker after its start.
    multiprocessing.get_context("forkserver").set_forkserver_preload(["__main__", TASKS_MODULE])
    done: list[tuple[J, TaskResult]] = []
    failed: list[J] = []
    with bar(total=len(jobs), desc="Processing tasks", unit="task") as progress:
        for job, outcome in imap_isolated(func, jobs, settings.n_jobs):
            progress.update(1)
            progress.set_postfix_str(label(job))
            if isinstance(outcome, BaseException):
                log.debug("%s failed", label(job), exc_info=outcome)
                summary.fail(f"{label(job)}: {_reason(outcome)}")
                failed.append(job)
            else:
                _count(summary, outcome)
                done.append((job, outcome))
    return done, failed


def _largest_first(items: list[J], files: Callable[[J], list[Path]]) -> list[J]:
    """Items by decreasing input size, so the workers finish together instead of one idling at the end."""

    def size(item: J) -> int:
        return sum(path.stat().st_size for path in files(item) if path.exists())

    return sorted(items, key=size, reverse=True)


def _build_and_swap(target: Path, build: Callable[[Path], None]) -> None:
    """Call `build(staging)` and swap the staging tree in for `target`; on any error drop it."""
    staging = staging_dir(target, uuid.uuid4().hex[:8])
    try:
        staging.mkdir(parents=True)
    except OSError as exc:
        raise DataError(f"cannot create {staging} ({exc.strerror or exc}): make the data directory writable or set CRYPTO_BASE_DIR") from exc
    try:
        build(staging)
        # A Dask task whose worker died mid-write was re-run; the dead attempt's temp file stays out.
        storage.sweep_temp_files(staging)
        storage.replace_dir(staging, target)
    except BaseException:
        storage.remove_tree(staging)
        raise


def _link_outputs(units: Sequence[Unit], source: Path, staging: Path) -> None:
    """Put the files of units that need no rebuild into the new tree (hard links: same inode, same mtime)."""
    for unit in units:
        for name in unit.outputs:
            storage.link_or_copy(source / name, staging / name)


def _keep_if_identical(previous: Path, rebuilt: Path) -> None:
    """Keep the previous file (its inode and mtime) where a rebuild wrote the same bytes.

    A re-uploaded day changes a symbol's latest segment, not its older `SP<i>_` files: those
    stay the same files, so `resample-type` sees them unchanged.
    """
    try:
        if previous.samefile(rebuilt):  # carried over as a link already
            return
        if previous.stat().st_size == rebuilt.stat().st_size and storage.same_bytes(previous, rebuilt):
            storage.link_or_copy(previous, rebuilt)
    except FileNotFoundError:
        pass


def _unchanged(summary: RunSummary, count: int) -> None:
    if count:
        summary.notes["unchanged"] = count


def _record_path(layout: Layout, stage: str) -> Path:
    return layout.cache_file(f"{stage}.json")


# ---- generate kline / kline-type ----

def _kline_job(layout: Layout, trade_type: TradeType, interval: str, symbol: str, out_dir: Path, sizes: dict[str, float],
               previous: Unit | None = None, previous_dir: Path | None = None, **options: object) -> KlineJob:
    """The job of one symbol; `previous` (its last build, files untouched in `previous_dir`) lets it extend rather than rebuild."""
    usable = previous is not None and previous.inputs is not None and previous_dir is not None
    names = tuple(_stem(Path(name)) for name in previous.outputs) if usable else ()  # type: ignore[union-attr]
    return KlineJob(data_dir=layout.root, trade_type=trade_type, interval=interval, symbol=symbol, out_dir=out_dir,
                    contract_size=sizes.get(symbol), previous=names, previous_dir=previous_dir if usable else None,
                    previous_inputs=previous.inputs if usable else None, **options)  # type: ignore[arg-type, union-attr]


def _log_options(split_gaps: bool, min_days: int, min_price_chg: float, with_vwap: bool, with_funding_rates: bool) -> None:
    split = f"split_gaps={split_gaps}" + (f" (min_days={min_days}, min_price_chg={min_price_chg})" if split_gaps else "")
    log.info("%s; with_vwap=%s; with_funding_rates=%s", split, with_vwap, with_funding_rates)


def kline(settings: Settings, *, trade_type, time_interval, symbol, split_gaps, min_days, min_price_chg, with_vwap, with_funding_rates) -> RunSummary:
    """Merged, gap-split, filled klines of one symbol; its stale `SP<i>_` files are removed."""
    trade_type = TradeType(trade_type)
    time_interval = _check_kline_args(time_interval, min_days, min_price_chg)
    layout = Layout(settings.data_dir)
    check_listed([symbol], listed_locally(layout.parsed_kline_symbols_dir(trade_type), layout.api_kline_symbols_dir(trade_type)),
                 f"in the parsed or API klines under {layout.root}", "if it is new, run aws_kline download, verify and parse first")
    summary = RunSummary("generate kline")
    target = layout.results_kline_dir(trade_type, time_interval)
    log.info("Generate merged and split kline data for %s %s %s", symbol, trade_type.value, time_interval)
    options = dict(split_gaps=split_gaps, min_days=min_days, min_price_chg=min_price_chg, with_vwap=with_vwap, with_funding_rates=with_funding_rates)
    with storage.stage_lock(layout, _kline_stage(trade_type, time_interval), settings.lock_timeout):
        storage.recover_dir(target)
        sizes = _contract_sizes(layout, trade_type, [symbol], with_vwap)
        unit_digest = _kline_digest(layout, trade_type, time_interval, symbol, sizes.get(symbol), options)  # before the inputs are read
        record = BuildRecord.load(_record_path(layout, _kline_stage(trade_type, time_interval)))
        previous = record.untouched(symbol, target)
        result = run_kline_job(_kline_job(layout, trade_type, time_interval, symbol, target, sizes, previous, target, **options))
        if result.extended:
            summary.notes["extended"] = 1
        if result.skipped:
            log.warning("no parsed archive klines for %s %s %s: nothing generated (run aws_kline parse first)", symbol, trade_type.value, time_interval)
        else:
            stale = [p for p in _symbol_files(target, symbol) if _stem(p) not in result.files]
            storage.remove_all(stale)
            if stale:
                log.info("removed stale segments of %s: %s", symbol, ", ".join(_stem(p) for p in stale))
            # So that `kline-type` with the same options need not build this symbol again.
            record.save({**record.units, symbol: Unit(unit_digest, outputs_of(target, [parquet_in(target, n).name for n in result.files]), result.inputs)})
        _count(summary, result)
    return summary


def _kline_digest(layout: Layout, trade_type: TradeType, interval: str, symbol: str, contract_size: float | None, options: dict[str, object]) -> str:
    """What one symbol's result files depend on: its partitions, API days, funding files, contract size, the options."""
    inputs = [layout.parsed_kline_dir(trade_type, symbol, interval), layout.api_kline_dir(trade_type, symbol, interval)]
    files = [path for directory in inputs for path in list_files(directory, PARQUET_SUFFIX)]
    if trade_type.is_futures and options["with_funding_rates"]:
        files += [layout.parsed_funding_file(trade_type, symbol), layout.api_funding_file(trade_type, symbol)]
    return digest(FORMAT, trade_type.value, interval, options, contract_size, files_stat(files, layout.root))


def kline_type(settings: Settings, *, trade_type, time_interval, split_gaps, min_days, min_price_chg, with_vwap, with_funding_rates) -> RunSummary:
    """`kline` for every symbol with a local archive kline directory, swapped in as one new tree.

    Only the symbols whose inputs changed since the last run are built again (see `builds`); the
    others' files are hard-linked into the new tree. When nothing changed nothing is written.
    """
    trade_type = TradeType(trade_type)
    time_interval = _check_kline_args(time_interval, min_days, min_price_chg)
    layout = Layout(settings.data_dir)
    summary = RunSummary("generate kline-type")
    target = layout.results_kline_dir(trade_type, time_interval)
    log.info("BHDS Merge klines for %s %s", trade_type.value, time_interval)
    log.info("results_dir=%s", target)
    _log_options(split_gaps, min_days, min_price_chg, with_vwap, with_funding_rates)
    options = dict(split_gaps=split_gaps, min_days=min_days, min_price_chg=min_price_chg, with_vwap=with_vwap, with_funding_rates=with_funding_rates)
    stage = _kline_stage(trade_type, time_interval)

    with storage.stage_lock(layout, stage, settings.lock_timeout):
        storage.recover_dir(target)
        symbols = _kline_symbols(layout, trade_type, time_interval)
        if not symbols:
            log.warning("No symbols found for %s %s: previous results left as they are", trade_type.value, time_interval)
            return summary
        log.info("num_symbols=%d (%s -- %s)", len(symbols), symbols[0], symbols[-1])
        sizes = _contract_sizes(layout, trade_type, symbols, with_vwap)
        record = BuildRecord.load(_record_path(layout, stage))
        digests = {s: _kline_digest(layout, trade_type, time_interval, s, sizes.get(s), options) for s in symbols}
        units = {s: unit for s in symbols if (unit := record.current(s, digests[s], target)) is not None}
        todo = [s for s in symbols if s not in units]
        _unchanged(summary, len(units))
        if not todo and tree_files(target) == {name for unit in units.values() for name in unit.outputs}:
            log.info("nothing changed since the last run: %s left as it is", target)
            return summary
        log.info("%d symbols to build, %d unchanged", len(todo), len(units))

        extended = 0

        def build(staging: Path) -> None:
            nonlocal extended
            _link_outputs(list(units.values()), target, staging)
            by_size = _largest_first(todo, lambda s: list_files(layout.parsed_kline_dir(trade_type, s, time_interval), PARQUET_SUFFIX))
            jobs = [_kline_job(layout, trade_type, time_interval, s, staging, sizes, record.untouched(s, target), target, **options)
                    for s in by_size]
            done, failed = _run_all(run_kline_job, jobs, lambda j: j.symbol, settings, summary)
            for job, result in done:
                extended += result.extended
                names = [parquet_in(staging, n).name for n in result.files]
                for name in names:
                    _keep_if_identical(target / name, staging / name)
                units[job.symbol] = Unit(digests[job.symbol], outputs_of(staging, names), result.inputs)
            for job in failed:
                kept = _symbol_files(target, job.symbol)
                for path in kept:
                    storage.link_or_copy(path, parquet_in(staging, _stem(path)))
                if kept:
                    log.warning("%s failed: kept its previous results (%d files)", job.symbol, len(kept))
                if job.symbol in record.units:  # its old digest makes the next run try again
                    units[job.symbol] = record.units[job.symbol]

        _build_and_swap(target, build)
        summary.changed = True
        if extended:
            summary.notes["extended"] = extended
            log.info("%d symbols extended by their changed months (the earlier ones kept as they were)", extended)
        record.save(units)
    return summary


# ---- generate resample / resample-type ----

def resample(settings: Settings, *, trade_type, symbol, resample_interval, base_offset) -> RunSummary:
    """Resample one symbol's 1m results at every offset of the base offset."""
    trade_type = TradeType(trade_type)
    plan = plan_resample(resample_interval, base_offset)
    layout = Layout(settings.data_dir)
    source = layout.results_kline_file(trade_type, RESAMPLE_SOURCE_INTERVAL, symbol)
    generated = [p.name[: -len(PARQUET_SUFFIX)] for p in list_files(source.parent, PARQUET_SUFFIX)]  # SP<i>_ segments too
    check_listed([symbol], generated, f"in the 1m results {source.parent}",
                 f"if it is new, run generate kline {trade_type.value} 1m <SYMBOL> first")
    summary = RunSummary("generate resample")
    log.info("Resample kline %s %s %s base offset %s", trade_type.value, resample_interval, symbol, base_offset)
    target = layout.resampled_interval_dir(trade_type, resample_interval)
    with _resample_locks(settings, layout, trade_type, resample_interval):
        storage.recover_dir(target)
        if not source.exists():
            raise InputError(f"no 1m results for {symbol} ({source}): run `generate kline {trade_type.value} 1m {symbol}` first")
        source_stat = file_stat(source)
        digests = {_resample_key(o.name, symbol): _resample_digest(plan, o.name, source_stat) for o in plan.offsets}
        record = BuildRecord.load(_record_path(layout, _resample_stage(trade_type, resample_interval)))
        kline_record = BuildRecord.load(_record_path(layout, _kline_stage(trade_type, RESAMPLE_SOURCE_INTERVAL)))
        kept = _kept_source_groups(record, kline_record, target, plan, source, source_stat)
        result = run_resample_job(ResampleJob(source, trade_type, plan, target, target if kept else None, kept))
        _count(summary, result)
        if result.extended:
            summary.notes["extended"] = result.extended
        # So that `resample-type` need not resample this file again.
        record.save({**record.units, **{key: Unit(d, outputs_of(target, [key]), _resample_inputs(plan, o.name, source_stat))
                                        for (key, d), o in zip(digests.items(), plan.offsets)}})
    return summary


def _resample_digest(plan: ResamplePlan, offset: str, source_stat: FileStat | None) -> str:
    return digest(FORMAT, plan.interval.text, offset, source_stat)


def _resample_inputs(plan: ResamplePlan, offset: str, source_stat: FileStat | None) -> dict:
    """What a resampled file was made from, for the next run's `resample_extend`: the 1m file's stat and the layout."""
    return {"source": list(source_stat or ()), "options": [FORMAT, plan.interval.text, offset, RESAMPLED_GROUP_MONTHS]}


def _kept_source_groups(record: BuildRecord, kline_record: BuildRecord, target: Path, plan: ResamplePlan, source: Path,
                        source_stat: FileStat | None) -> int:
    """How many leading row groups of the 1m file `source` are byte for byte those its resamples of `plan` in
    `target` were made from, as `kline-type`'s record of its extensions (`extend.lineage`) tells; 0 when unknown."""
    name = _stem(source)
    previous = [record.untouched(_resample_key(o.name, name), target) for o in plan.offsets]
    if any(u is None or not u.inputs or u.inputs.get("options") != _resample_inputs(plan, o.name, None)["options"]
           for u, o in zip(previous, plan.offsets)):
        return 0
    made_from = {tuple(u.inputs["source"]) for u in previous}  # type: ignore[index, union-attr]
    kline = kline_record.units.get(name)
    if len(made_from) != 1 or kline is None or not kline.inputs or kline.outputs.get(source.name) != source_stat:
        return 0
    old_stat = made_from.pop()
    return next((int(groups) for stat, groups in kline.inputs.get("lineage", []) if tuple(stat) == old_stat), 0)


def _resample_key(offset: str, name: str) -> str:
    """A resample unit's key, which is also its output's path in the interval's tree."""
    return str(resampled_file_in(Path(), offset, name))


def resample_type(settings: Settings, *, trade_type, resample_interval, base_offset) -> RunSummary:
    """Resample every 1m results file (SP<i>_ segments included), swapped in as one new tree.

    Only the (file, offset) pairs whose 1m file changed since the last run are resampled again
    (see `builds`); the others are hard-linked into the new tree. When nothing changed nothing is
    written.
    """
    trade_type = TradeType(trade_type)
    plan = plan_resample(resample_interval, base_offset)
    layout = Layout(settings.data_dir)
    summary = RunSummary("generate resample-type")
    target = layout.resampled_interval_dir(trade_type, resample_interval)
    log.info("Resample kline %s %s %s", trade_type.value, resample_interval, base_offset)
    log.info("Resampled kline directory: %s", target)
    stage = _resample_stage(trade_type, resample_interval)

    with _resample_locks(settings, layout, trade_type, resample_interval):
        storage.recover_dir(target)
        sources = list_files(layout.results_kline_dir(trade_type, RESAMPLE_SOURCE_INTERVAL), PARQUET_SUFFIX)
        if not sources:
            log.warning("No 1m results for %s: run `generate kline-type %s 1m` first; previous resamples left as they are", trade_type.value, trade_type.value)
            return summary
        log.info("num_files=%d, offsets=%s", len(sources), ",".join(o.name for o in plan.offsets))
        record = BuildRecord.load(_record_path(layout, stage))
        kline_record = BuildRecord.load(_record_path(layout, _kline_stage(trade_type, RESAMPLE_SOURCE_INTERVAL)))
        digests: dict[str, str] = {}
        stats: dict[str, FileStat | None] = {}
        units: dict[str, Unit] = {}
        jobs: list[ResampleJob] = []
        for source in sources:
            name, source_stat = _stem(source), file_stat(source)
            stats[name] = source_stat
            stale = []
            for offset in plan.offsets:
                key = _resample_key(offset.name, name)
                digests[key] = _resample_digest(plan, offset.name, source_stat)
                unit = record.current(key, digests[key], target)
                if unit is None:
                    stale.append(offset)
                else:
                    units[key] = unit
            if stale:
                stale_plan = dataclasses.replace(plan, offsets=tuple(stale))
                kept = _kept_source_groups(record, kline_record, target, stale_plan, source, source_stat)
                jobs.append(ResampleJob(source, trade_type, stale_plan, target, target if kept else None, kept))
        _unchanged(summary, len(sources) - len(jobs))
        if not jobs and tree_files(target) == set(units):
            log.info("nothing changed since the last run: %s left as it is", target)
            return summary
        log.info("%d files to resample, %d unchanged", len(jobs), len(sources) - len(jobs))

        extended = 0

        def build(staging: Path) -> None:
            nonlocal extended
            _link_outputs(list(units.values()), target, staging)
            ordered = [dataclasses.replace(job, out_dir=staging) for job in _largest_first(jobs, lambda job: [job.source])]
            done, failed = _run_all(run_resample_job, ordered, lambda j: _stem(j.source), settings, summary)
            for job, result in done:
                extended += result.extended
                name = _stem(job.source)
                for offset in job.plan.offsets:
                    key = _resample_key(offset.name, name)
                    units[key] = Unit(digests[key], outputs_of(staging, [key]), _resample_inputs(plan, offset.name, stats[name]))
            for job in failed:
                _carry_over_resampled(target, staging, job.plan, _stem(job.source))
                for offset in job.plan.offsets:
                    key = _resample_key(offset.name, _stem(job.source))
                    if key in record.units:  # its old digest makes the next run try again
                        units[key] = record.units[key]

        _build_and_swap(target, build)
        summary.changed = True
        if extended:
            summary.notes["extended"] = extended
            log.info("%d resampled files extended by their changed quarters (the earlier ones kept as they were)", extended)
        record.save(units)
    return summary


def _carry_over_resampled(target: Path, staging: Path, plan: ResamplePlan, name: str) -> None:
    kept = 0
    for offset in plan.offsets:
        previous = resampled_file_in(target, offset.name, name)
        if previous.exists():
            storage.link_or_copy(previous, resampled_file_in(staging, offset.name, name))
            kept += 1
    if kept:
        log.warning("%s failed: kept its previous resamples (%d files)", name, kept)


# The SQL catalog, when one exists, is rewritten after each run so it covers any folder the run added.
from bhds.research.catalog import refresh_after  # noqa: E402

kline, kline_type, resample, resample_type = map(refresh_after, (kline, kline_type, resample, resample_type))
