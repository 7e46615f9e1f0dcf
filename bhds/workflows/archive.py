"""Archive mirror workflows: aws_kline/aws_funding download and verify, aws_liquidation download.

Download: resolve the symbols (explicit, or listed and filtered per contract §6.2), turn them
into directory prefixes, and let `bhds.archive.mirror` list, diff and fetch. Verify: find the
local zips without a `.verified` marker, fetch any missing CHECKSUM, then hash them on every
core (parse tests each zip's CRC when it reads it). Both hold the `archive` lock of each dataset
they touch (`paths.lock_name`), since verify deletes what download writes; different datasets and
intervals run side by side.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bhds import paths, state
from bhds.archive.listing import ArchiveFile, Listing
from bhds.archive.manifest import Manifest, Record
from bhds.archive.markers import MarkerWriter
from bhds.archive.verify import Candidate, survey, verify_all
from bhds.errors import InputError, NetworkError
from bhds.paths import Layout
from bhds.settings import Settings
from bhds.storage import remove_all, stage_locks
from bhds.symbol_names import Selection, check_downloaded, check_listed, select_cm, select_cm_pairs, select_spot, select_um
from bhds.types import ContractType, RunSummary, TradeType, parse_interval
from bhds.types import _human_bytes as human_bytes

if TYPE_CHECKING:
    from bhds.archive.mirror import Mirror, MirrorReport
    from bhds.net import RetryPolicy

# aiohttp and the download machinery are imported inside the functions that use the network:
# they take ~0.3 s to load, and verify of a complete tree never needs them.

log = logging.getLogger("bhds.workflows.archive")

# Shown instead of the full list once a summary has this many unreadable symbol names.
MAX_NAMES_LOGGED = 20
# The retry policy of every archive request (None: bhds.net's shared policy); tests make it quick.
RETRY_POLICY: RetryPolicy | None = None


def _policy() -> RetryPolicy:
    from bhds.net import DEFAULT_POLICY

    return RETRY_POLICY or DEFAULT_POLICY


# The `archive` group names datasets as Binance does; the legacy commands' locks use these names,
# and both must take the same lock for the same folders.
_LEGACY_DATASET = {"klines": paths.KLINES, "fundingRate": paths.FUNDING, "liquidationSnapshot": paths.LIQUIDATION}


def _locks(trade_type: TradeType, dataset: str, intervals: Iterable[str] = ()) -> list[str]:
    """The archive locks of one dataset: one per interval, or one for a dataset without intervals."""
    dataset = _LEGACY_DATASET.get(dataset, dataset)
    return ([paths.lock_name("archive", trade_type, dataset, interval) for interval in intervals]
            or [paths.lock_name("archive", trade_type, dataset)])


def _archive_interval(text: str) -> str:
    """The interval as Binance spells it in paths (`1m`, `1mo`), checked against its list."""
    return parse_interval(text, archive=True).text


def _intervals(texts: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(_archive_interval(t) for t in texts))


def _manifest(settings: Settings, layout: Layout) -> Manifest:
    return Manifest(state.connect(layout), lambda: settings.now().isoformat(timespec="seconds"))


# ---- download ------------------------------------------------------------------------------

Selector = Callable[[list[str]], Selection]


async def _resolve_symbols(session, settings: Settings, summary: RunSummary, symbols_prefixes: list[str],
                           selector: Selector | None) -> list[str]:
    """The symbols listed under any of `symbols_prefixes` that pass `selector` (noted in the summary)."""
    names: list[str] = []
    for symbols_prefix in symbols_prefixes:
        names.extend(await _list_symbols(session, settings, symbols_prefix))
    names = sorted(set(names)) if len(symbols_prefixes) > 1 else names
    where = " and ".join(symbols_prefixes)
    selection = selector(names) if selector else Selection(kept=names)
    summary.notes["symbols"] = len(selection.kept)
    if selection.unparsed:
        shown = ", ".join(selection.unparsed[:MAX_NAMES_LOGGED])
        more = f" and {len(selection.unparsed) - MAX_NAMES_LOGGED} more" if len(selection.unparsed) > MAX_NAMES_LOGGED else ""
        log.warning("%d symbol name(s) under %s could not be read and were left out: %s%s",
                    len(selection.unparsed), where, shown, more)
        summary.notes["unreadable_symbols"] = len(selection.unparsed)
    log.info("%d of %d listed symbols selected under %s", len(selection.kept), len(names), where)
    if not selection.kept:
        log.warning("no symbol under %s passed the filter: nothing to download", where)
    return selection.kept


def _mirror(session, settings: Settings, layout: Layout, manifest: Manifest, executor: Executor, markers: bool) -> Mirror:
    """The mirror of a download run: it fetches here, or in batches of Dask tasks when a scheduler is set."""
    from bhds.archive.mirror import Mirror
    from bhds.parallel import on_dask

    return Mirror(session, base_url=settings.aws_url, layout=layout, manifest=manifest, executor=executor,
                  concurrency=settings.concurrency, markers=markers, policy=_policy(),
                  on_cluster=settings if on_dask() else None)


async def _download_async(settings: Settings, layout: Layout, manifest: Manifest, *, summary: RunSummary,
                          symbols: list[str] | None, symbols_prefix: str, selector: Selector | None,
                          file_prefixes: Callable[[str], list[str]], markers: bool) -> MirrorReport:
    from bhds.net import make_session

    async with make_session(settings) as session:
        named = symbols is not None
        if symbols is None:
            symbols = await _resolve_symbols(session, settings, summary, [symbols_prefix], selector)
        prefixes = [prefix for symbol in symbols for prefix in file_prefixes(symbol)]
        with ThreadPoolExecutor(max_workers=max(1, settings.n_jobs), thread_name_prefix="bhds-ziptest") as executor:
            report = await _mirror(session, settings, layout, manifest, executor, markers).run(prefixes)
        if named and report.empty:
            # A named symbol with nothing listed may be a typo (or lowercase): if the archive does
            # not list it at all, that is exit 2 with the closest names. Asked only then, so a
            # normal run costs no extra listing.
            empty = set(report.empty)
            nothing = [s for s in symbols if all(prefix in empty for prefix in file_prefixes(s))]
            if nothing:
                listed = await _list_symbols(session, settings, symbols_prefix)
                check_listed(nothing, listed, f"in the archive under {settings.aws_url.rstrip('/')}/{symbols_prefix}", "")
        return report


async def _list_symbols(session: object, settings: Settings, symbols_prefix: str) -> list[str]:
    from bhds.archive.listing import list_prefix

    try:
        return (await list_prefix(session, settings.aws_url, symbols_prefix, _policy())).names
    except Exception as exc:  # noqa: BLE001 - nothing can be done without the symbol list
        raise NetworkError(
            f"cannot list {symbols_prefix} at {settings.aws_url} ({exc}): check the network, --http-proxy "
            "or BHDS_AWS_URL, and run the command again") from exc


def _download(settings: Settings, command: str, trade_type: TradeType, *, dataset: str, intervals: Iterable[str] = (),
              symbols: list[str] | None,
              symbols_prefix: str, file_prefixes: Callable[[str], list[str]], selector: Selector | None = None,
              markers: bool = True, monthly: bool = False, start: date | None = None, end: date | None = None,
              dry_run: bool = False, emit: Emit | None = None) -> RunSummary:
    """Mirror the files under `file_prefixes(symbol)` (daily folders, or monthly ones if `monthly`).

    With a date range or a dry run, the folders are listed first and only the files of days in
    the range are mirrored (or, dry, listed); without, listing and downloading overlap as always.
    """
    if start is not None or end is not None or dry_run:
        return _ranged(settings, command, locks=_locks(trade_type, dataset, intervals), symbols=symbols,
                       symbols_prefixes=[symbols_prefix],
                       selector=selector, markers=markers, start=start, end=end, dry_run=dry_run, emit=emit,
                       folders=lambda s: [Folders(s, None, p) if monthly else Folders(s, p, None) for p in file_prefixes(s)])
    summary = RunSummary(command)
    layout = Layout(settings.data_dir)
    with stage_locks(layout, _locks(trade_type, dataset, intervals), settings.lock_timeout):
        manifest = _manifest(settings, layout)
        try:
            log.info("mirroring %s%s into %s", settings.aws_url.rstrip("/") + "/", symbols_prefix, layout.aws_root)
            report = asyncio.run(_download_async(
                settings, layout, manifest, summary=summary, symbols=symbols, symbols_prefix=symbols_prefix,
                selector=selector, file_prefixes=file_prefixes, markers=markers))
        finally:
            with contextlib.suppress(Exception):
                manifest.flush()
            manifest.conn.close()
    _fill_download_summary(summary, report, explicit=symbols is not None)
    return summary


def _fill_download_summary(summary: RunSummary, report: MirrorReport, *, explicit: bool) -> None:
    summary.files = report.downloaded
    summary.bytes = report.bytes
    summary.skipped = report.skipped
    summary.notes["listed"] = report.listed
    if report.adopted:
        summary.notes["adopted"] = report.adopted
    if report.unverified:
        summary.notes["unverified"] = report.unverified
    if report.swept:
        log.info("removed %d partial download(s) left by an interrupted run", report.swept)
    if report.empty:
        summary.notes["empty_dirs"] = len(report.empty)
        # A symbol the user named that lists nothing is probably a typo; in a filtered market
        # listing an empty directory is normal (a symbol without that interval).
        for prefix in report.empty[:MAX_NAMES_LOGGED]:
            log.log(logging.WARNING if explicit else logging.DEBUG, "nothing is listed under %s: check the symbol and interval", prefix)
    for failure in report.failures:
        summary.fail(failure)


# ---- date ranges and dry runs ---------------------------------------------------------------

Emit = Callable[[str], None]


@dataclass(frozen=True)
class Folders:
    """One symbol's daily and monthly folders of a dataset (either may be absent)."""

    symbol: str
    daily: str | None
    monthly: str | None


def _window(start: date | datetime | None = None, end: date | datetime | None = None, dry_run: bool = False,
            emit: Emit | None = None) -> dict[str, Any]:
    """The date range and dry-run options as `_download` takes them; a reversed range is refused."""
    start = start.date() if isinstance(start, datetime) else start
    end = end.date() if isinstance(end, datetime) else end
    if start is not None and end is not None and start > end:
        raise InputError(f"--start {start} is after --end {end}: swap them", exit_code=2)
    return {"start": start, "end": end, "dry_run": dry_run, "emit": emit}


async def _list_many(session, settings: Settings, prefixes: list[str], summary: RunSummary,
                     what: Callable[[Listing], list] = lambda listing: listing.files) -> dict[str, list]:
    """`what` of the listing of each prefix (its files by default), listed concurrently; a prefix
    that cannot be listed is a failure."""
    from bhds.archive.listing import list_prefix
    from bhds.archive.mirror import MAX_LISTINGS

    gate = asyncio.Semaphore(min(MAX_LISTINGS, settings.concurrency))
    out: dict[str, list] = {}

    async def one(prefix: str) -> None:
        async with gate:
            try:
                out[prefix] = what(await list_prefix(session, settings.aws_url, prefix, _policy()))
            except Exception as exc:  # noqa: BLE001 - one folder failing must not stop the others
                summary.fail(f"{prefix}: listing failed ({exc})")

    await asyncio.gather(*(one(prefix) for prefix in prefixes))
    return out


Picked = list[tuple[str, str, list[ArchiveFile]]]  # (symbol, folder prefix, files to mirror)


async def _pick(session, settings: Settings, layout: Layout, summary: RunSummary, *, symbols: list[str] | None,
                symbols_prefixes: list[str], selector: Selector | None, folders: Callable[[str], list[Folders]],
                start: date | None, end: date | None) -> Picked:
    """List each symbol's folders and pick the files of [start, end]: monthly for whole months, daily for the rest."""
    from bhds.archive.periods import choose
    from bhds.archive.plan import scan_dir

    explicit = symbols is not None
    if symbols is None:
        symbols = await _resolve_symbols(session, settings, summary, symbols_prefixes, selector)
    groups = [group for symbol in symbols for group in folders(symbol)]
    prefixes = list(dict.fromkeys(p for g in groups for p in (g.daily, g.monthly) if p))
    listed = await _list_many(session, settings, prefixes, summary)
    summary.notes["listed"] = sum(len(files) for files in listed.values())
    picked: Picked = []
    nothing: list[str] = []
    for g in groups:
        daily = listed.get(g.daily, []) if g.daily else []
        monthly = listed.get(g.monthly, []) if g.monthly else []
        if not daily and not monthly and all(p in listed for p in (g.daily, g.monthly) if p):
            where = " or ".join(p for p in (g.daily, g.monthly) if p)
            log.log(logging.WARNING if explicit else logging.DEBUG, "nothing is listed under %s: check the symbol and interval", where)
            nothing.append(g.symbol)
        local_daily = scan_dir(layout.local_for_key(g.daily), sweep=False)[0] if g.daily and monthly else {}
        take_daily, take_monthly = choose(daily, monthly, start=start, end=end, monthly_only=g.daily is None,
                                          local_daily=local_daily)
        picked += [(g.symbol, prefix, files) for prefix, files in ((g.daily, take_daily), (g.monthly, take_monthly))
                   if prefix and files]
    if explicit and nothing:
        # As in a plain download: a named symbol with nothing listed may be a typo (or lowercase);
        # if no listing knows it at all, that is exit 2 with the closest names.
        known = [name for prefix in symbols_prefixes for name in await _list_symbols(session, settings, prefix)]
        where = " or ".join(f"{settings.aws_url.rstrip('/')}/{prefix}" for prefix in symbols_prefixes)
        check_listed(list(dict.fromkeys(nothing)), known, f"in the archive under {where}", "")
    return picked


def _ranged(settings: Settings, command: str, *, locks: list[str], symbols: list[str] | None,
            symbols_prefixes: list[str], selector: Selector | None, folders: Callable[[str], list[Folders]],
            start: date | None, end: date | None, dry_run: bool, markers: bool, emit: Emit | None) -> RunSummary:
    """Mirror (or, dry, list) the files of [start, end] in each symbol's folders."""
    from bhds.net import make_session

    summary = RunSummary(command)
    layout = Layout(settings.data_dir)
    kwargs = dict(symbols=symbols, symbols_prefixes=symbols_prefixes, selector=selector, folders=folders, start=start, end=end)
    if dry_run:  # no lock, no state database, no folder: a dry run writes nothing at all

        async def pick_only() -> Picked:
            async with make_session(settings) as session:
                return await _pick(session, settings, layout, summary, **kwargs)

        _preview(layout, summary, asyncio.run(pick_only()), markers=markers, emit=emit or log.info)
        return summary

    async def pick_and_mirror(manifest: Manifest) -> MirrorReport:
        async with make_session(settings) as session:
            picked = await _pick(session, settings, layout, summary, **kwargs)
            with ThreadPoolExecutor(max_workers=max(1, settings.n_jobs), thread_name_prefix="bhds-ziptest") as executor:
                mirror = _mirror(session, settings, layout, manifest, executor, markers)
                return await mirror.run_listed((prefix, files) for _, prefix, files in picked)

    with stage_locks(layout, locks, settings.lock_timeout):
        manifest = _manifest(settings, layout)
        try:
            report = asyncio.run(pick_and_mirror(manifest))
        finally:
            with contextlib.suppress(Exception):
                manifest.flush()
            manifest.conn.close()
    listed = summary.notes.pop("listed", 0)
    _fill_download_summary(summary, report, explicit=symbols is not None)
    summary.notes["listed"] = listed
    return summary


def _preview(layout: Layout, summary: RunSummary, picked: Picked, *, markers: bool, emit: Emit) -> None:
    """Emit, per symbol, the files a real run would download (new or updated) and their total size."""
    from bhds.archive.manifest import read_only_records
    from bhds.archive.plan import NEW, TO_CHECK, UPDATED, Preview, preview_directory, scan_dir

    records = read_only_records(layout.state_db, [prefix for _, prefix, _ in picked])
    by_symbol: dict[str, list[Preview]] = {}
    for symbol, prefix, files in picked:
        local, _ = scan_dir(layout.local_for_key(prefix), sweep=False)
        by_symbol.setdefault(symbol, []).extend(preview_directory(files, local, records, markers=markers))
    counts = {NEW: 0, UPDATED: 0, TO_CHECK: 0}
    for symbol, items in by_symbol.items():
        fetch = [p for p in items if p.change != TO_CHECK]
        size = sum(p.size for p in fetch)
        changes = ", ".join(f"{n} {c}" for c in (NEW, UPDATED, TO_CHECK) if (n := sum(p.change == c for p in items)))
        emit(f"{symbol}: {len(fetch)} zip(s) to download, {human_bytes(size)} with their CHECKSUMs ({changes})"
             if items else f"{symbol}: up to date")
        for p in items:
            emit(f"  {p.change:<7} {p.main.key} {p.size}")
            counts[p.change] += 1
        # Counted as a real run counts them: every key, the zip and its CHECKSUM.
        summary.files += sum(p.keys for p in fetch)
        summary.bytes += size
    summary.notes.update({"new": counts[NEW], "updated": counts[UPDATED]})
    if counts[TO_CHECK]:
        summary.notes["to_check"] = counts[TO_CHECK]
    summary.notes["dry_run"] = "nothing written"


def kline_download(settings: Settings, *, trade_type, time_interval, symbols, **window: Any) -> RunSummary:
    tt = TradeType(trade_type)
    interval = _archive_interval(time_interval)
    return _download(settings, "aws_kline download", tt, dataset=paths.KLINES, intervals=[interval],
                     symbols=list(dict.fromkeys(symbols)),
                     symbols_prefix=paths.kline_symbols_prefix(tt),
                     file_prefixes=lambda s: [paths.kline_files_prefix(tt, s, interval)], **_window(**window))


def _kline_market(settings: Settings, command: str, tt: TradeType, time_intervals, selector: Selector,
                  window: dict[str, Any]) -> RunSummary:
    intervals = _intervals(time_intervals)
    return _download(settings, command, tt, dataset=paths.KLINES, intervals=intervals, symbols=None,
                     symbols_prefix=paths.kline_symbols_prefix(tt), selector=selector,
                     file_prefixes=lambda s: [paths.kline_files_prefix(tt, s, i) for i in intervals], **_window(**window))


def kline_download_spot(settings: Settings, *, time_intervals, quote, stablecoins, leverage_coins, **window: Any) -> RunSummary:
    quote = quote.strip().upper()
    return _kline_market(settings, "aws_kline download-spot", TradeType.spot, time_intervals,
                         lambda names: select_spot(names, quote=quote, stablecoins=stablecoins, leverage_coins=leverage_coins),
                         window)


def kline_download_um_futures(settings: Settings, *, time_intervals, quote, contract_type, **window: Any) -> RunSummary:
    quote, ct = quote.strip().upper(), ContractType(contract_type)
    return _kline_market(settings, "aws_kline download-um-futures", TradeType.um_futures, time_intervals,
                         lambda names: select_um(names, quote=quote, contract_type=ct), window)


def kline_download_cm_futures(settings: Settings, *, time_intervals, contract_type, **window: Any) -> RunSummary:
    ct = ContractType(contract_type)
    return _kline_market(settings, "aws_kline download-cm-futures", TradeType.cm_futures, time_intervals,
                         lambda names: select_cm(names, contract_type=ct), window)


def funding_download(settings: Settings, *, trade_type, symbols, **window: Any) -> RunSummary:
    return _funding_market(settings, "aws_funding download", TradeType(trade_type), None, window, list(dict.fromkeys(symbols)))


def _funding_market(settings: Settings, command: str, tt: TradeType, selector: Selector | None, window: dict[str, Any],
                    symbols: list[str] | None = None) -> RunSummary:
    return _download(settings, command, tt, dataset=paths.FUNDING, symbols=symbols,
                     symbols_prefix=paths.funding_symbols_prefix(tt), selector=selector,
                     file_prefixes=lambda s: [paths.funding_files_prefix(tt, s)], monthly=True, **_window(**window))


def funding_download_um_futures(settings: Settings, *, quote, contract_type, **window: Any) -> RunSummary:
    quote, ct = quote.strip().upper(), ContractType(contract_type)
    return _funding_market(settings, "aws_funding download-um-futures", TradeType.um_futures,
                           lambda names: select_um(names, quote=quote, contract_type=ct), window)


def funding_download_cm_futures(settings: Settings, *, contract_type, **window: Any) -> RunSummary:
    ct = ContractType(contract_type)
    return _funding_market(settings, "aws_funding download-cm-futures", TradeType.cm_futures,
                           lambda names: select_cm(names, contract_type=ct), window)


# The legacy tool only mirrors liquidation snapshots (no verify command, no markers); so do we,
# though each zip is still checked against its CHECKSUM while it downloads.

def liquidation_download(settings: Settings, *, trade_type, symbols, **window: Any) -> RunSummary:
    return _liquidation_market(settings, "aws_liquidation download", TradeType(trade_type), None, window,
                               list(dict.fromkeys(symbols)))


def _liquidation_market(settings: Settings, command: str, tt: TradeType, selector: Selector | None, window: dict[str, Any],
                        symbols: list[str] | None = None) -> RunSummary:
    return _download(settings, command, tt, dataset=paths.LIQUIDATION, symbols=symbols,
                     symbols_prefix=paths.liquidation_symbols_prefix(tt), selector=selector,
                     file_prefixes=lambda s: [paths.liquidation_files_prefix(tt, s)], markers=False, **_window(**window))


def liquidation_download_um_futures(settings: Settings, *, quote, contract_type, **window: Any) -> RunSummary:
    quote, ct = quote.strip().upper(), ContractType(contract_type)
    return _liquidation_market(settings, "aws_liquidation download-um-futures", TradeType.um_futures,
                               lambda names: select_um(names, quote=quote, contract_type=ct), window)


def liquidation_download_cm_futures(settings: Settings, *, contract_type, **window: Any) -> RunSummary:
    ct = ContractType(contract_type)
    return _liquidation_market(settings, "aws_liquidation download-cm-futures", TradeType.cm_futures,
                               lambda names: select_cm(names, contract_type=ct), window)


# ---- verify --------------------------------------------------------------------------------

def _verify(settings: Settings, command: str, trade_type: TradeType, directories: list[tuple[str, Path]],
            dataset: str, intervals: Iterable[str] = ()) -> RunSummary:
    """Verify the unmarked zips of `(key prefix, local dir)` pairs; delete pairs that fail."""
    summary = RunSummary(command)
    absent = [directory for _, directory in directories if not directory.is_dir()]
    for directory in absent[:MAX_NAMES_LOGGED]:
        log.warning("nothing to verify in %s: it does not exist (download it first)", directory)
    if absent:
        summary.notes["missing_dirs"] = len(absent)
    layout = Layout(settings.data_dir)
    with stage_locks(layout, _locks(trade_type, dataset, intervals), settings.lock_timeout):
        found = survey(directories)
        summary.skipped = found.marked
        if found.swept:
            log.info("removed %d partial download(s) left by an interrupted run", found.swept)
        if not found.candidates:
            log.info("all %d zip(s) already verified", found.marked)
            return summary
        manifest = _manifest(settings, layout)
        try:
            records: dict[str, Record] = {}
            for prefix, _ in directories:
                records.update(manifest.under(prefix))
            candidates = _fetch_missing_checksums(settings, found.candidates, summary)
            _verify_candidates(settings, layout, manifest, records, candidates, summary)
        finally:
            with contextlib.suppress(Exception):
                manifest.flush()
            manifest.conn.close()
    return summary


def _fetch_missing_checksums(settings: Settings, candidates: list[Candidate], summary: RunSummary) -> list[Candidate]:
    """Fetch each missing CHECKSUM (the legacy tool deleted the zip instead); keep zips we cannot check."""
    missing = [c for c in candidates if not c.has_checksum]
    if not missing:
        return candidates
    log.info("fetching %d missing CHECKSUM file(s) from %s", len(missing), settings.aws_url)

    from bhds.archive.verify import fetch_checksums
    from bhds.net import make_session

    async def run() -> list:
        async with make_session(settings) as session:
            return await fetch_checksums(session, settings.aws_url, missing, concurrency=settings.concurrency,
                                         policy=_policy())

    failed: set[str] = set()
    for outcome in asyncio.run(run()):
        if outcome.error:
            failed.add(outcome.candidate.key)
            summary.fail(f"{outcome.candidate.path}: {outcome.error}; the zip is kept unverified")
    summary.notes["checksums_fetched"] = len(missing) - len(failed)
    return [c for c in candidates if c.key not in failed]


def _verify_candidates(settings: Settings, layout: Layout, manifest: Manifest, records: dict[str, Record],
                       candidates: list[Candidate], summary: RunSummary) -> None:
    from bhds.progress import bar

    log.info("verifying %d zip(s) on %d thread(s)", len(candidates), settings.n_jobs)
    removed = 0
    markers = MarkerWriter(layout)
    with bar(total=len(candidates), desc="verify", unit="file") as progress:
        for candidate, verdict in verify_all(candidates, settings.n_jobs, on_ok=markers.mark):
            progress.update(1)
            if verdict.ok:
                previous = records.get(candidate.key)
                # Keep the server's attributes when these are still the bytes that were listed.
                same = (previous is not None and previous.size == verdict.size
                        and previous.sha256 in (None, verdict.sha256))
                manifest.put(candidate.key, verdict.size, previous.last_modified if same else None,
                             previous.etag if same else None, verdict.sha256)
                summary.files += 1
                summary.bytes += verdict.size
                continue
            remove_all((candidate.path, paths.checksum_path(candidate.path), paths.verified_marker(candidate.path)))
            manifest.forget(candidate.key)
            manifest.forget(candidate.key + paths.CHECKSUM_SUFFIX)
            removed += 1
            summary.fail(f"{candidate.path}: {verdict.reason}; removed it and its CHECKSUM, run download again")
    if removed:
        summary.notes["removed"] = removed


def kline_verify(settings: Settings, *, trade_type, time_interval, symbols) -> RunSummary:
    tt = TradeType(trade_type)
    interval = _archive_interval(time_interval)
    layout = Layout(settings.data_dir)
    check_downloaded(symbols, layout.aws_kline_symbols_dir(tt), "aws_kline download")
    dirs = [(paths.kline_files_prefix(tt, s, interval), layout.aws_kline_dir(tt, s, interval)) for s in dict.fromkeys(symbols)]
    return _verify(settings, "aws_kline verify", tt, dirs, paths.KLINES, [interval])


def kline_verify_type_all(settings: Settings, *, trade_type, time_intervals) -> RunSummary:
    tt = TradeType(trade_type)
    intervals = _intervals(time_intervals)
    layout = Layout(settings.data_dir)
    root = layout.aws_kline_symbols_dir(tt)
    dirs = [(paths.kline_files_prefix(tt, s, i), layout.aws_kline_dir(tt, s, i))
            for i in intervals for s in paths.list_subdirs(root) if layout.aws_kline_dir(tt, s, i).is_dir()]
    if not dirs:
        log.warning("no local %s klines for %s under %s: run `aws_kline download` first", tt.value, " ".join(intervals), root)
        summary = RunSummary("aws_kline verify-type-all")
        summary.notes["symbols"] = 0
        return summary
    summary = _verify(settings, "aws_kline verify-type-all", tt, dirs, paths.KLINES, intervals)
    summary.notes = {"symbols": len({prefix.split("/")[-3] for prefix, _ in dirs}), **summary.notes}
    return summary


def funding_verify(settings: Settings, *, trade_type, symbols) -> RunSummary:
    tt = TradeType(trade_type)
    layout = Layout(settings.data_dir)
    check_downloaded(symbols, layout.aws_funding_symbols_dir(tt), "aws_funding download")
    dirs = [(paths.funding_files_prefix(tt, s), layout.aws_funding_dir(tt, s)) for s in dict.fromkeys(symbols)]
    return _verify(settings, "aws_funding verify", tt, dirs, paths.FUNDING)


def funding_verify_type_all(settings: Settings, *, trade_type) -> RunSummary:
    tt = TradeType(trade_type)
    layout = Layout(settings.data_dir)
    root = layout.aws_funding_symbols_dir(tt)
    symbols = paths.list_subdirs(root)
    if not symbols:
        log.warning("no local %s funding rates under %s: run `aws_funding download` first", tt.value, root)
        summary = RunSummary("aws_funding verify-type-all")
        summary.notes["symbols"] = 0
        return summary
    summary = _verify(settings, "aws_funding verify-type-all", tt,
                      [(paths.funding_files_prefix(tt, s), layout.aws_funding_dir(tt, s)) for s in symbols],
                      paths.FUNDING)
    summary.notes = {"symbols": len(symbols), **summary.notes}
    return summary


# ---- the `archive` group: any dataset of any market ----------------------------------------

def _dataset(market, dataset: str, interval: str | None, *, interval_required: bool = True):
    from bhds.archive.catalog import dataset_interval, find_dataset

    tt = TradeType(market)
    found = find_dataset(tt, dataset)
    if interval is None and not interval_required and found.has_interval:
        return tt, found, None
    return tt, found, dataset_interval(tt, found, interval)


def _dataset_folders(tt: TradeType, dataset, interval: str | None) -> Callable[[str], list[Folders]]:
    from bhds.archive.catalog import DAILY, MONTHLY

    periods = dataset.periods(interval)

    def folders(symbol: str) -> list[Folders]:
        daily, monthly = (paths.dataset_files_prefix(tt, p, dataset.name, symbol, interval) if p in periods else None
                          for p in (DAILY, MONTHLY))
        return [Folders(symbol, daily, monthly)]

    return folders


def _dataset_selector(tt: TradeType, dataset, *, quote: str | None, keep_stablecoins: bool, leverage_tokens: bool,
                      contract_type: str | None) -> Selector:
    """The legacy download filters of the market, refusing the ones that do not apply to it."""
    def refuse(option: str) -> None:
        raise InputError(f"{option} does not apply to {tt.value} {dataset.name}: drop it", exit_code=2)

    if tt is TradeType.spot:
        if contract_type:
            refuse("--contract-type")
        q = (quote or "USDT").strip().upper()
        return lambda names: select_spot(names, quote=q, stablecoins=keep_stablecoins, leverage_coins=leverage_tokens)
    if keep_stablecoins:
        refuse("--keep-stablecoins")
    if leverage_tokens:
        refuse("--leverage-tokens")
    if tt is TradeType.um_futures:
        q, ct = (quote or "USDT").strip().upper(), ContractType(contract_type or "PERPETUAL")
        return lambda names: select_um(names, quote=q, contract_type=ct)
    if quote:
        refuse("--quote")
    if dataset.name == "indexPriceKlines":  # COIN-M index folders are pairs (BTCUSD), not contracts
        if contract_type:
            refuse("--contract-type")
        return select_cm_pairs
    ct = ContractType(contract_type or "PERPETUAL")
    return lambda names: select_cm(names, contract_type=ct)


def _symbols_prefixes(tt: TradeType, dataset, interval: str | None) -> list[str]:
    return [paths.dataset_symbols_prefix(tt, p, dataset.name) for p in dataset.periods(interval)]


def archive_download(settings: Settings, *, market, dataset, symbols, interval=None, quote=None, keep_stablecoins=False,
                     leverage_tokens=False, contract_type=None, **window: Any) -> RunSummary:
    """`archive download`: monthly files for whole months in range, daily files for the other days."""
    tt, ds, iv = _dataset(market, dataset, interval)
    selector = _dataset_selector(tt, ds, quote=quote, keep_stablecoins=keep_stablecoins,
                                 leverage_tokens=leverage_tokens, contract_type=contract_type)
    named = list(dict.fromkeys(symbols)) or None
    w = _window(**window)
    return _ranged(settings, "archive download", locks=_locks(tt, ds.name, [iv] if iv else []), symbols=named,
                   symbols_prefixes=_symbols_prefixes(tt, ds, iv),
                   selector=selector, folders=_dataset_folders(tt, ds, iv), markers=True, **w)


def archive_ls(settings: Settings, *, market, dataset, interval=None, output_format="text", emit: Emit) -> RunSummary:
    """`archive ls`: the symbols listed for a dataset (with `interval`: those that have its folder)."""
    from bhds.net import make_session

    tt, ds, iv = _dataset(market, dataset, interval, interval_required=False)
    summary = RunSummary("archive ls")

    async def run() -> list[str]:
        async with make_session(settings) as session:
            names = await _resolve_symbols(session, settings, summary, _symbols_prefixes(tt, ds, iv), None)
            if iv is None:
                return names
            prefixes = {s: [paths.dataset_files_prefix(tt, p, ds.name, s) for p in ds.periods(iv)] for s in names}
            listed = await _list_many(session, settings, [p for ps in prefixes.values() for p in ps], summary,
                                      lambda listing: listing.names)
            return [s for s in names if any(iv in listed.get(p, ()) for p in prefixes[s])]

    names = asyncio.run(run())
    summary.notes["symbols"] = len(names)
    if output_format == "json":
        import json

        emit(json.dumps(names))
    else:
        for name in names:
            emit(name)
    return summary


def archive_verify(settings: Settings, *, market, dataset, symbols, interval=None) -> RunSummary:
    """`archive verify`: hash and test the local zips of a dataset (daily and monthly folders)."""
    tt, ds, iv = _dataset(market, dataset, interval)
    layout = Layout(settings.data_dir)
    named = list(dict.fromkeys(symbols))
    if not named:
        named = sorted({s for prefix in _symbols_prefixes(tt, ds, iv) for s in paths.list_subdirs(layout.local_for_key(prefix))})
    dirs = []
    for symbol in named:
        for group in _dataset_folders(tt, ds, iv)(symbol):
            dirs += [(p, layout.local_for_key(p)) for p in (group.daily, group.monthly) if p and layout.local_for_key(p).is_dir()]
    if not dirs:
        log.warning("no local %s %s%s files: run `archive download` first", tt.value, ds.name, f" {iv}" if iv else "")
        summary = RunSummary("archive verify")
        summary.notes["symbols"] = 0
        return summary
    summary = _verify(settings, "archive verify", tt, dirs, ds.name, [iv] if iv else [])
    summary.notes = {"symbols": len(named), **summary.notes}
    return summary
