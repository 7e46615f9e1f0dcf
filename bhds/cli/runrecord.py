"""Record every command run in `.bhds/runs.jsonl` (see bhds.runlog): wraps `main`, the one way in.

`recorded` sees the exit code `main` leaves with (and, through the exception it handled, the
error), `note_summary` is called by `dispatch` with the run's summary. Not recorded: `--help`,
`--version`, `--dry-run` (it writes nothing at all), `status` itself (a health check run every minute would push real runs out of the
log), a command name that does not exist, and bad-usage runs when the data directory does not
exist yet (a typo should not create it). Recording never changes the command's outcome: if the
record cannot be written, one warning line goes to stderr.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from bhds.types import RunSummary

_SKIPPED_COMMANDS = {"status"}
_MAX_FAILURES_KEPT = 10
_TRADE_TYPE_SUFFIXES = {"-spot": "spot", "-um-futures": "um_futures", "-cm-futures": "cm_futures"}

_current: dict[str, Any] = {}


def note_summary(summary: RunSummary) -> None:
    """Keep the summary of the run in progress for its record."""
    _current["summary"] = summary


def recorded(main: Callable[..., None]) -> Callable[..., None]:
    """Wrap the CLI's `main(argv)` so that each run appends its record when it exits."""

    @functools.wraps(main)
    def run(argv: list[str] | None = None) -> None:
        args = [str(a) for a in (sys.argv[1:] if argv is None else argv)]
        _current.clear()
        started_wall, started = time.time(), time.monotonic()
        code, error = 1, None
        try:
            main(argv)
            code = 0
        except SystemExit as exc:
            code, error = _exit_code(exc.code), _error_text(exc.__context__)
            raise
        except BaseException as exc:
            error = _error_text(exc)
            raise
        finally:
            _record(args, started_wall, time.monotonic() - started, code, error)

    return run


def _exit_code(code: object) -> int:
    if code is None:
        return 0
    return code if isinstance(code, int) else 1


def _error_text(exc: BaseException | None) -> str | None:
    import click

    from bhds.errors import BhdsError

    from bhds.cli import RunFailed

    if exc is None or isinstance(exc, RunFailed):  # failed items: the summary's figures say which
        return None
    if isinstance(exc, BhdsError):
        return exc.message
    if isinstance(exc, click.ClickException):
        return exc.format_message()
    if isinstance(exc, KeyboardInterrupt | click.exceptions.Abort):
        from bhds.cli import Terminated  # SIGTERM unwinds as a KeyboardInterrupt subclass

        return "terminated" if isinstance(exc, Terminated) or isinstance(exc.__cause__, Terminated) else "interrupted"
    if isinstance(exc, click.exceptions.Exit):
        return None
    return f"{type(exc).__name__}: {exc}"


def describe(args: list[str]) -> dict[str, Any] | None:
    """Command path, trade type and interval of a command line, or None when it names no command."""
    import click

    from bhds.cli import cli

    path: list[str] = []
    group: click.Command = cli
    rest = list(args)
    while isinstance(group, click.Group):
        names = [i for i, token in enumerate(rest) if not token.startswith("-")]
        if not names or rest[names[0]] not in group.commands:
            return None
        index = names[0]
        path.append(rest[index])
        group, rest = group.commands[rest[index]], rest[index + 1:]
    try:
        params = group.make_context(" ".join(path), list(rest), resilient_parsing=True).params
    except Exception:  # noqa: BLE001 - a line that cannot even be half-parsed still gets its command path
        params = {}
    trade_type = params.get("trade_type") or params.get("market")  # the archive group says market
    trade_type = getattr(trade_type, "value", trade_type) or next(
        (tt for suffix, tt in _TRADE_TYPE_SUFFIXES.items() if path[-1].endswith(suffix)), None)
    interval = (params.get("time_interval") or ",".join(params.get("time_intervals") or ()) or params.get("resample_interval")
                or params.get("interval") or None)
    if params.get("dataset"):  # `archive <verb> <market> <dataset>`: each dataset is a stage of its own
        path.append(str(params["dataset"]))
    offset = params.get("base_offset") or params.get("offset")
    if interval and offset:
        interval = f"{interval}/{offset}"
    return {"command": " ".join(path), "trade_type": trade_type, "interval": interval}


def _summary_figures(summary: RunSummary | None) -> dict[str, Any] | None:
    if summary is None:
        return None
    return {"files": summary.files, "rows": summary.rows, "bytes": summary.bytes, "skipped": summary.skipped,
            "failed": summary.failed, "seconds": round(summary.seconds, 3), "notes": summary.notes,
            "failures": summary.failures[:_MAX_FAILURES_KEPT]}


def _record(args: list[str], started_wall: float, seconds: float, code: int, error: str | None) -> None:
    if any(a in ("--help", "--version", "--dry-run") for a in args):
        return  # a dry run writes nothing at all, not even its record
    try:
        from bhds import runlog
        from bhds.errors import BhdsError
        from bhds.paths import Layout
        from bhds.settings import load_settings

        what = describe(args)
        if what is None or what["command"].split(" ")[0] in _SKIPPED_COMMANDS:
            return
        try:
            settings = load_settings()
        except BhdsError:
            return  # no data directory to record into; the command said what is wrong with the settings
        layout = Layout(settings.data_dir)
        summary = _current.get("summary")
        if summary is None and not layout.root.is_dir():
            return
        start = settings.fixed_now or datetime.fromtimestamp(started_wall, timezone.utc)
        record = {
            "format": runlog.RECORD_FORMAT, **what, "argv": args,
            "start": runlog.iso(start), "end": runlog.iso(start + timedelta(seconds=seconds)), "seconds": round(seconds, 3),
            "exit_code": code, "outcome": runlog.outcome_of(code), "error": error,
            "summary": _summary_figures(summary), "version": _version(), "pid": os.getpid(),
        }
        runlog.append_run(layout, record)
    except OSError as exc:
        print(f"bhds: warning: could not record this run in .bhds/runs.jsonl ({exc.strerror or exc})", file=sys.stderr)
    except Exception as exc:  # noqa: BLE001 - recording must never change how a command ends
        print(f"bhds: warning: could not record this run ({type(exc).__name__}: {exc})", file=sys.stderr)


def _version() -> str:
    from bhds import __version__

    return __version__
