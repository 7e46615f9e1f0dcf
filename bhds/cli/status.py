"""`bhds status`: when each stage last ran and whether it succeeded (new in bhds; for cron and health checks)."""

from __future__ import annotations

from pathlib import Path

import click

from bhds.cli import RunFailed
from bhds.cli import options as opt

EXIT_UNHEALTHY = 3


@click.command("status", cls=opt.Command)
@click.option("--format", "output_format", type=click.Choice(("table", "json")), default="table", show_default=True,
              help="json is for machines: stdout then holds only the JSON document.")
@click.option("--max-age", default=None, metavar="DURATION",
              help="Also exit 3 when a stage's last run ended longer ago than this, e.g. 26h, 90m, 2d.")
@click.option("--prometheus", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="FILE",
              help="Also write the status as a node_exporter textfile, e.g. /var/lib/node_exporter/textfile/bhds.prom.")
@click.option("--stage", "stages", multiple=True, metavar="TEXT",
              help="Only the stages starting with TEXT, e.g. 'generate kline-type um_futures' (repeatable; default: all).")
def command(output_format: str, max_age: str | None, prometheus: Path | None, stages: tuple[str, ...]) -> None:
    """Per stage and trade type: the last run recorded in binance_data/.bhds/runs.jsonl, its outcome and age.

    Exits 3 when the last run of any stage failed (any exit code but 0) or is older than --max-age,
    or when no run is recorded."""
    from bhds.progress import setup_logging
    from bhds.settings import load_settings
    from bhds.workflows.status import status

    settings = load_settings(debug=bool(click.get_current_context().find_root().params.get("debug")))
    setup_logging(settings.debug)
    summary = status(settings, output_format=output_format, max_age=max_age, prometheus=prometheus, stages=stages,
                     write=click.echo)
    for failure in summary.failures:
        click.echo(f"bhds: problem: {failure}", err=True)
    if summary.failed:
        raise RunFailed(EXIT_UNHEALTHY)
