"""The command tree. Commands only parse arguments and dispatch to a workflow function.

This is the one place that turns a BhdsError into `bhds: error: ...` and an exit code:
0 done; 1 the command failed; 2 bad usage or input; 3 finished but some items failed;
75 another bhds process holds the stage's lock; 130 interrupted (Ctrl-C); 143 terminated (SIGTERM).
Every command that got past its arguments ends with its summary line, also when it failed (exit 1, 3,
75, 130, 143); bad usage (exit 2) is the one error line alone.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import signal
import sys
import time
import traceback
from typing import TYPE_CHECKING, Any

import click

from bhds.cli.options import SCHEDULER_KEY, OrderedGroup
from bhds.cli.runrecord import note_summary, recorded

if TYPE_CHECKING:
    from bhds.types import RunSummary

EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 128 + signal.SIGTERM  # 143, what a shell reports for a process killed by SIGTERM
MAX_FAILURES_SHOWN = 30

log = logging.getLogger("bhds")


class RunFailed(Exception):
    """Raised inside a command to exit with a code after printing the summary."""

    def __init__(self, code: int) -> None:
        self.code = code


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the main thread is, so that it unwinds exactly like Ctrl-C.

    A KeyboardInterrupt subclass because asyncio, the process pool and every `finally` already
    treat that one as "stop now and clean up"; any other exception raised inside an event loop
    callback would be logged and swallowed.
    """


# The summary line of the running command, printed after the error line when the command stops
# early: (line, stream is stderr).
_unfinished: tuple[str, bool] | None = None


def dispatch(target: str, *, emits_data: bool = False, **kwargs: Any) -> None:
    """Resolve settings, call `module:function(settings, **kwargs)`, print its summary line.

    Network flags (--http-proxy, --concurrency) become settings, so workflows see one object.

    Stdout is for data: a command that writes machine-readable output to stdout in this run (JSON,
    CSV, ...) passes `emits_data=True`, and its summary line, like every log, goes to stderr, so
    `bhds ... --format json | jq` reads only the data. Otherwise the summary line is on stdout.
    A workflow that fails or is interrupted half-way still gets its summary line (after the error).
    """
    from bhds.types import CREATED, RunSummary

    global _unfinished
    ctx = click.get_current_context()
    started = time.monotonic()
    CREATED.clear()
    try:
        summary = _run(ctx, target, kwargs)
    except BaseException as exc:
        if getattr(exc, "exit_code", None) != EXIT_USAGE:  # bad usage is one line, nothing ran
            # The workflow's own summary when it had made one (what got done before the stop).
            partial = CREATED[0] if CREATED else RunSummary(" ".join(ctx.command_path.split()[1:]))
            partial.seconds = time.monotonic() - started
            partial.notes["stopped"] = _stop_reason(exc)
            if partial.notes["stopped"] == "error":
                partial.failed += 1  # the error itself
            note_summary(partial)
            _unfinished = (partial.line(), emits_data)
        raise
    summary.seconds = time.monotonic() - started
    note_summary(summary)  # for this run's line in .bhds/runs.jsonl
    for failure in summary.failures[:MAX_FAILURES_SHOWN]:
        click.echo(f"bhds: failed: {failure}", err=True)
    if len(summary.failures) > MAX_FAILURES_SHOWN:
        click.echo(f"bhds: failed: ... and {len(summary.failures) - MAX_FAILURES_SHOWN} more", err=True)
    click.echo(summary.line(), err=emits_data)
    if summary.failed:
        raise RunFailed(EXIT_PARTIAL)


def _run(ctx: click.Context, target: str, kwargs: dict[str, Any]) -> RunSummary:
    from bhds.settings import check_proxy, check_scheduler, load_settings

    settings = load_settings(debug=bool(ctx.find_root().params.get("debug")))
    proxy = kwargs.pop("http_proxy", None)
    concurrency = kwargs.pop("concurrency", None)
    scheduler = check_scheduler(ctx.meta.get(SCHEDULER_KEY))  # --scheduler, on the commands that take it
    # Only the commands that take --scheduler fan work out; the others ignore DASK_SCHEDULER_ADDRESS.
    fans_out = any(param.name == "scheduler" for param in ctx.command.params)
    if fans_out and scheduler is None:
        scheduler = check_scheduler(settings.scheduler, "DASK_SCHEDULER_ADDRESS")
    settings = settings.with_overrides(http_proxy=check_proxy(proxy), concurrency=concurrency, scheduler=scheduler)

    from bhds.parallel import executor
    from bhds.progress import setup_logging

    setup_logging(settings.debug)
    module_name, func_name = target.split(":")
    func = getattr(importlib.import_module(f"bhds.workflows.{module_name}"), func_name)

    def run_workflow() -> RunSummary:
        with executor(settings) if fans_out else contextlib.nullcontext():
            return func(settings, **kwargs)

    if settings.store_url:  # the data root is a bucket: run in a synced working copy, then publish
        from bhds.objstore.workcopy import run_in_working_copy

        return run_in_working_copy(settings, target, kwargs, run_workflow)
    return run_workflow()


def _stop_reason(exc: BaseException) -> str:
    if isinstance(exc, Terminated):
        return "terminated"
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    return "error"


@click.group(cls=OrderedGroup, context_settings={"help_option_names": ["--help"]})
@click.option("--debug", is_flag=True, default=False, help="Show debug logs and full tracebacks (also BHDS_DEBUG=1).")
@click.version_option(package_name="bhds", message="bhds %(version)s", prog_name="bhds")
def cli(debug: bool) -> None:
    """bhds: keep a local, research-ready copy of Binance market history.

    \b
    The pipeline: run the five scripts in scripts/ in this order (each
    takes the kline interval, default 1m, except resample.sh):
      1. aws_download.sh  mirror and verify the data.binance.vision archive
      2. aws_parse.sh     verified zips -> monthly Parquet in parsed_data/
      3. api_download.sh  days the archive lacks, recent funding (REST API)
      4. gen_kline.sh     merged, gap-split klines -> results_data/
      5. resample.sh      1h bars at every 5m offset, and 5m bars

    Everything is stored under $CRYPTO_BASE_DIR/binance_data (default ~/crypto_data). Run
    `bhds GROUP COMMAND --help` for one command; README.md in the repository explains the
    configuration variables, exit codes and how to read the results.
    """


def _register() -> None:
    from bhds.cli import api_data, archive, aws_funding, aws_kline, aws_liquidation, generate, quality, research, status

    # The legacy root listed its groups in this order; bhds' own additions follow.
    cli.add_command(aws_funding.group, "aws_funding")
    cli.add_command(aws_kline.group, "aws_kline")
    cli.add_command(api_data.group, "api_data")
    cli.add_command(aws_liquidation.group, "aws_liquidation")
    cli.add_command(generate.group, "generate")
    cli.add_command(quality.group, "quality")
    cli.add_command(research.list_data, "list-data")
    cli.add_command(research.catalog, "catalog")
    cli.add_command(status.command, "status")
    cli.add_command(archive.group, "archive")


_register()


def _debug_requested(argv: list[str]) -> bool:
    from bhds.settings import debug_from_env

    return "--debug" in argv or debug_from_env()


@recorded  # appends this run to .bhds/runs.jsonl whatever way it ends
def main(argv: list[str] | None = None) -> None:
    """Entry point of `python bhds.py`, `python -m bhds` and the `bhds` console script."""
    from bhds.errors import BhdsError, find_disk_full

    global _unfinished
    _unfinished = None
    args = sys.argv[1:] if argv is None else argv
    restore = _report_sigterm()
    try:
        cli.main(args=args, prog_name=_prog_name(), standalone_mode=False)
    except (click.exceptions.Abort, KeyboardInterrupt) as exc:
        # Click turns a KeyboardInterrupt (and so Terminated) into Abort, keeping it as the cause.
        if isinstance(exc, Terminated) or isinstance(exc.__cause__, Terminated):
            _exit(EXIT_TERMINATED, "bhds: terminated (SIGTERM); run the same command again to finish the job")
        _exit(EXIT_INTERRUPTED, "bhds: interrupted; run the same command again to finish the job")
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except RunFailed as exc:
        sys.exit(exc.code)
    except BhdsError as exc:
        if _debug_requested(args):
            traceback.print_exc()
        _exit(exc.exit_code, f"bhds: error: {exc.message}")
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, no traceback
        if _debug_requested(args):
            traceback.print_exc()
        full = find_disk_full(exc)  # wherever it struck (a lock file, a library's own write...)
        if full is not None:
            _exit(full.exit_code, f"bhds: error: {full.message}")
        _exit(1, f"bhds: error: unexpected {type(exc).__name__}: {exc} (this is a bug; run again with --debug for the traceback)")
    finally:
        restore()
    sys.exit(0)


def _exit(code: int, message: str) -> None:
    """The one error line on stderr, then the stopped command's summary line, then exit."""
    click.echo(message, err=True)
    if _unfinished is not None:
        line, to_stderr = _unfinished
        click.echo(line, err=to_stderr)
    sys.exit(code)


def _report_sigterm():  # noqa: ANN202 - returns the undo function
    """Make SIGTERM stop the command like Ctrl-C (clean-up, one line, exit 143); return the undo.

    Only in the process that installed it: a worker process that inherited the handler dies of
    SIGTERM as usual, so the pool can stop it.
    """
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return lambda: None  # someone embedding bhds has their own plans for SIGTERM
    owner = os.getpid()

    def handler(signum: int, frame: object) -> None:
        if os.getpid() != owner:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        raise Terminated()

    try:
        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave SIGTERM alone
        return lambda: None
    return lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _prog_name() -> str:
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "bhds"
    return "bhds" if name in ("__main__.py", "-c", "") else name
