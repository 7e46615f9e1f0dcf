"""The command tree. Commands only parse arguments and dispatch to a workflow function.

This is the one place that turns a BhdsError into `bhds: error: ...` and an exit code:
0 done; 1 the command failed; 2 bad usage or input; 3 finished but some items failed;
75 another bhds process holds the stage's lock; 130 interrupted.
"""

from __future__ import annotations

import importlib
import logging
import sys
import time
import traceback
from typing import Any

import click

from bhds.cli.options import OrderedGroup

EXIT_PARTIAL = 3
EXIT_INTERRUPTED = 130
MAX_FAILURES_SHOWN = 30

log = logging.getLogger("bhds")


class RunFailed(Exception):
    """Raised inside a command to exit with a code after printing the summary."""

    def __init__(self, code: int) -> None:
        self.code = code


def dispatch(target: str, *, summary_to_stderr: bool = False, **kwargs: Any) -> None:
    """Resolve settings, call `module:function(settings, **kwargs)`, print its summary line.

    Network flags (--http-proxy, --concurrency) become settings, so workflows see one object.
    `summary_to_stderr`: for commands whose stdout is data (`archive ls`).
    """
    from bhds.settings import check_proxy, load_settings

    ctx = click.get_current_context()
    settings = load_settings(debug=bool(ctx.find_root().params.get("debug")))
    proxy = kwargs.pop("http_proxy", None)
    concurrency = kwargs.pop("concurrency", None)
    settings = settings.with_overrides(http_proxy=check_proxy(proxy), concurrency=concurrency)

    from bhds.progress import setup_logging

    setup_logging(settings.debug)
    module_name, func_name = target.split(":")
    func = getattr(importlib.import_module(f"bhds.workflows.{module_name}"), func_name)
    started = time.monotonic()
    summary = func(settings, **kwargs)
    summary.seconds = time.monotonic() - started
    for failure in summary.failures[:MAX_FAILURES_SHOWN]:
        click.echo(f"bhds: failed: {failure}", err=True)
    if len(summary.failures) > MAX_FAILURES_SHOWN:
        click.echo(f"bhds: failed: ... and {len(summary.failures) - MAX_FAILURES_SHOWN} more", err=True)
    click.echo(summary.line(), err=summary_to_stderr)
    if summary.failed:
        raise RunFailed(EXIT_PARTIAL)


@click.group(cls=OrderedGroup, context_settings={"help_option_names": ["--help"]})
@click.option("--debug", is_flag=True, default=False, help="Show debug logs and full tracebacks (also BHDS_DEBUG=1).")
@click.version_option(package_name="bhds", message="bhds %(version)s", prog_name="bhds")
def cli(debug: bool) -> None:
    """bhds: keep a local, research-ready copy of Binance market history."""


def _register() -> None:
    from bhds.cli import api_data, archive, aws_funding, aws_kline, aws_liquidation, generate, quality

    # The legacy root listed its groups in this order; bhds' own additions follow.
    cli.add_command(aws_funding.group, "aws_funding")
    cli.add_command(aws_kline.group, "aws_kline")
    cli.add_command(api_data.group, "api_data")
    cli.add_command(aws_liquidation.group, "aws_liquidation")
    cli.add_command(generate.group, "generate")
    cli.add_command(quality.group, "quality")
    cli.add_command(archive.group, "archive")


_register()


def _debug_requested(argv: list[str]) -> bool:
    from bhds.settings import debug_from_env

    return "--debug" in argv or debug_from_env()


def main(argv: list[str] | None = None) -> None:
    """Entry point of `python bhds.py`, `python -m bhds` and the `bhds` console script."""
    from bhds.errors import BhdsError

    args = sys.argv[1:] if argv is None else argv
    try:
        cli.main(args=args, prog_name=_prog_name(), standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("bhds: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except RunFailed as exc:
        sys.exit(exc.code)
    except KeyboardInterrupt:
        click.echo("bhds: interrupted; run the same command again to finish the job", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except BhdsError as exc:
        if _debug_requested(args):
            traceback.print_exc()
        click.echo(f"bhds: error: {exc.message}", err=True)
        sys.exit(exc.exit_code)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, no traceback
        if _debug_requested(args):
            traceback.print_exc()
        click.echo(
            f"bhds: error: unexpected {type(exc).__name__}: {exc} (this is a bug; run again with --debug for the traceback)",
            err=True,
        )
        sys.exit(1)
    sys.exit(0)


def _prog_name() -> str:
    import os

    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "bhds"
    return "bhds" if name in ("__main__.py", "-c", "") else name
