"""Archive mirror workflows: aws_kline/aws_funding download and verify, aws_liquidation download.

Download: resolve the symbols (explicit, or listed and filtered per contract §6.2), turn them
into directory prefixes, and let `bhds.archive.mirror` list, diff and fetch. Verify: find the
local zips without a `.verified` marker, fetch any missing CHECKSUM, then hash them on every
core (parse tests each zip's CRC when it reads it). Both hold the `archive-<trade type>` lock,
since verify deletes what download writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from typing import TYPE_CHECKING

from bhds import paths, state
from bhds.archive.manifest import Manifest, Record
from bhds.archive.markers import MarkerWriter
from bhds.archive.verify import Candidate, survey, verify_all
from bhds.errors import NetworkError
from bhds.paths import Layout
from bhds.settings import Settings
from bhds.storage import stage_lock
from bhds.symbols import Selection, select_cm, select_spot, select_um
from bhds.types import ContractType, RunSummary, TradeType, parse_interval

if TYPE_CHECKING:
    from bhds.archive.mirror import MirrorReport
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


def _lock_name(trade_type: TradeType) -> str:
    return f"archive-{TradeType(trade_type).value}"


def _archive_interval(text: str) -> str:
    """The interval as Binance spells it in paths (`1m`, `1mo`), checked against its list."""
    return parse_interval(text, archive=True).text


def _intervals(texts: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(_archive_interval(t) for t in texts))


def _manifest(settings: Settings, layout: Layout) -> Manifest:
    return Manifest(state.connect(layout), lambda: settings.now().isoformat(timespec="seconds"))


# ---- download ------------------------------------------------------------------------------

Selector = Callable[[list[str]], Selection]


async def _download_async(settings: Settings, layout: Layout, manifest: Manifest, *, summary: RunSummary,
                          symbols: list[str] | None, symbols_prefix: str, selector: Selector | None,
                          file_prefixes: Callable[[str], list[str]], markers: bool) -> MirrorReport:
    from bhds.archive.listing import list_prefix
    from bhds.archive.mirror import Mirror
    from bhds.net import make_session

    async with make_session(settings) as session:
        if symbols is None:
            try:
                listing = await list_prefix(session, settings.aws_url, symbols_prefix, _policy())
            except Exception as exc:  # noqa: BLE001 - nothing can be done without the symbol list
                raise NetworkError(
                    f"cannot list {symbols_prefix} at {settings.aws_url} ({exc}): check the network, --http-proxy "
                    "or BHDS_AWS_URL, and run the command again") from exc
            names = listing.names
            selection = selector(names) if selector else Selection(kept=names)
            summary.notes["symbols"] = len(selection.kept)
            if selection.unparsed:
                shown = ", ".join(selection.unparsed[:MAX_NAMES_LOGGED])
                more = f" and {len(selection.unparsed) - MAX_NAMES_LOGGED} more" if len(selection.unparsed) > MAX_NAMES_LOGGED else ""
                log.warning("%d symbol name(s) under %s could not be read and were left out: %s%s",
                            len(selection.unparsed), symbols_prefix, shown, more)
                summary.notes["unreadable_symbols"] = len(selection.unparsed)
            symbols = selection.kept
            log.info("%d of %d listed symbols selected under %s", len(symbols), len(names), symbols_prefix)
            if not symbols:
                log.warning("no symbol under %s passed the filter: nothing to download", symbols_prefix)
        prefixes = [prefix for symbol in symbols for prefix in file_prefixes(symbol)]
        with ThreadPoolExecutor(max_workers=max(1, settings.n_jobs), thread_name_prefix="bhds-ziptest") as executor:
            mirror = Mirror(session, base_url=settings.aws_url, layout=layout, manifest=manifest, executor=executor,
                            concurrency=settings.concurrency, markers=markers, policy=_policy())
            return await mirror.run(prefixes)


def _download(settings: Settings, command: str, trade_type: TradeType, *, symbols: list[str] | None,
              symbols_prefix: str, file_prefixes: Callable[[str], list[str]], selector: Selector | None = None,
              markers: bool = True) -> RunSummary:
    summary = RunSummary(command)
    layout = Layout(settings.data_dir)
    with stage_lock(layout, _lock_name(trade_type), settings.lock_timeout):
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


def kline_download(settings: Settings, *, trade_type, time_interval, symbols) -> RunSummary:
    tt = TradeType(trade_type)
    interval = _archive_interval(time_interval)
    return _download(settings, "aws_kline download", tt, symbols=list(dict.fromkeys(symbols)),
                     symbols_prefix=paths.kline_symbols_prefix(tt),
                     file_prefixes=lambda s: [paths.kline_files_prefix(tt, s, interval)])


def _kline_market(settings: Settings, command: str, tt: TradeType, time_intervals, selector: Selector) -> RunSummary:
    intervals = _intervals(time_intervals)
    return _download(settings, command, tt, symbols=None, symbols_prefix=paths.kline_symbols_prefix(tt), selector=selector,
                     file_prefixes=lambda s: [paths.kline_files_prefix(tt, s, i) for i in intervals])


def kline_download_spot(settings: Settings, *, time_intervals, quote, stablecoins, leverage_coins) -> RunSummary:
    quote = quote.strip().upper()
    return _kline_market(settings, "aws_kline download-spot", TradeType.spot, time_intervals,
                         lambda names: select_spot(names, quote=quote, stablecoins=stablecoins, leverage_coins=leverage_coins))


def kline_download_um_futures(settings: Settings, *, time_intervals, quote, contract_type) -> RunSummary:
    quote, ct = quote.strip().upper(), ContractType(contract_type)
    return _kline_market(settings, "aws_kline download-um-futures", TradeType.um_futures, time_intervals,
                         lambda names: select_um(names, quote=quote, contract_type=ct))


def kline_download_cm_futures(settings: Settings, *, time_intervals, contract_type) -> RunSummary:
    ct = ContractType(contract_type)
    return _kline_market(settings, "aws_kline download-cm-futures", TradeType.cm_futures, time_intervals,
                         lambda names: select_cm(names, contract_type=ct))


def funding_download(settings: Settings, *, trade_type, symbols) -> RunSummary:
    tt = TradeType(trade_type)
    return _download(settings, "aws_funding download", tt, symbols=list(dict.fromkeys(symbols)),
                     symbols_prefix=paths.funding_symbols_prefix(tt),
                     file_prefixes=lambda s: [paths.funding_files_prefix(tt, s)])


def _funding_market(settings: Settings, command: str, tt: TradeType, selector: Selector) -> RunSummary:
    return _download(settings, command, tt, symbols=None, symbols_prefix=paths.funding_symbols_prefix(tt), selector=selector,
                     file_prefixes=lambda s: [paths.funding_files_prefix(tt, s)])


def funding_download_um_futures(settings: Settings, *, quote, contract_type) -> RunSummary:
    quote, ct = quote.strip().upper(), ContractType(contract_type)
    return _funding_market(settings, "aws_funding download-um-futures", TradeType.um_futures,
                           lambda names: select_um(names, quote=quote, contract_type=ct))


def funding_download_cm_futures(settings: Settings, *, contract_type) -> RunSummary:
    ct = ContractType(contract_type)
    return _funding_market(settings, "aws_funding download-cm-futures", TradeType.cm_futures,
                           lambda names: select_cm(names, contract_type=ct))


# The legacy tool only mirrors liquidation snapshots (no verify command, no markers); so do we,
# though each zip is still checked against its CHECKSUM while it downloads.

def liquidation_download(settings: Settings, *, trade_type, symbols) -> RunSummary:
    tt = TradeType(trade_type)
    return _download(settings, "aws_liquidation download", tt, symbols=list(dict.fromkeys(symbols)),
                     symbols_prefix=paths.liquidation_symbols_prefix(tt),
                     file_prefixes=lambda s: [paths.liquidation_files_prefix(tt, s)], markers=False)


def _liquidation_market(settings: Settings, command: str, tt: TradeType, selector: Selector) -> RunSummary:
    return _download(settings, command, tt, symbols=None, symbols_prefix=paths.liquidation_symbols_prefix(tt),
                     selector=selector, file_prefixes=lambda s: [paths.liquidation_files_prefix(tt, s)], markers=False)


def liquidation_download_um_futures(settings: Settings, *, quote, contract_type) -> RunSummary:
    quote, ct = quote.strip().upper(), ContractType(contract_type)
    return _liquidation_market(settings, "aws_liquidation download-um-futures", TradeType.um_futures,
                               lambda names: select_um(names, quote=quote, contract_type=ct))


def liquidation_download_cm_futures(settings: Settings, *, contract_type) -> RunSummary:
    ct = ContractType(contract_type)
    return _liquidation_market(settings, "aws_liquidation download-cm-futures", TradeType.cm_futures,
                               lambda names: select_cm(names, contract_type=ct))


# ---- verify --------------------------------------------------------------------------------

def _verify(settings: Settings, command: str, trade_type: TradeType, directories: list[tuple[str, Path]]) -> RunSummary:
    """Verify the unmarked zips of `(key prefix, local dir)` pairs; delete pairs that fail."""
    summary = RunSummary(command)
    absent = [directory for _, directory in directories if not directory.is_dir()]
    for directory in absent[:MAX_NAMES_LOGGED]:
        log.warning("nothing to verify in %s: it does not exist (download it first)", directory)
    if absent:
        summary.notes["missing_dirs"] = len(absent)
    layout = Layout(settings.data_dir)
    with stage_lock(layout, _lock_name(trade_type), settings.lock_timeout):
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
            for doomed in (candidate.path, paths.checksum_path(candidate.path), paths.verified_marker(candidate.path)):
                with contextlib.suppress(FileNotFoundError):
                    doomed.unlink()
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
    dirs = [(paths.kline_files_prefix(tt, s, interval), layout.aws_kline_dir(tt, s, interval)) for s in dict.fromkeys(symbols)]
    return _verify(settings, "aws_kline verify", tt, dirs)


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
    summary = _verify(settings, "aws_kline verify-type-all", tt, dirs)
    summary.notes = {"symbols": len({prefix.split("/")[-3] for prefix, _ in dirs}), **summary.notes}
    return summary


def funding_verify(settings: Settings, *, trade_type, symbols) -> RunSummary:
    tt = TradeType(trade_type)
    layout = Layout(settings.data_dir)
    dirs = [(paths.funding_files_prefix(tt, s), layout.aws_funding_dir(tt, s)) for s in dict.fromkeys(symbols)]
    return _verify(settings, "aws_funding verify", tt, dirs)


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
                      [(paths.funding_files_prefix(tt, s), layout.aws_funding_dir(tt, s)) for s in symbols])
    summary.notes = {"symbols": len(symbols), **summary.notes}
    return summary
