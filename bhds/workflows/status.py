"""Workflow of `bhds status`: per stage and trade type, the last recorded run, its outcome and age."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bhds import runlog, storage
from bhds.errors import InputError
from bhds.paths import Layout
from bhds.settings import Settings
from bhds.types import RunSummary


def status(settings: Settings, *, output_format: str = "table", max_age: str | None = None, prometheus: Path | None = None,
           stages: tuple[str, ...] = (), write: Callable[[str], None] | None = None) -> RunSummary:
    """Render the status of every stage to `write` (and to a Prometheus textfile).

    Each stage whose last run failed, or ended longer than `max_age` ago, is a failed item; so is
    an empty record (nothing has run, or runs.jsonl was deleted), so a health check notices.
    """
    if output_format not in runlog.FORMATS:
        raise InputError(f"--format {output_format!r} is not known: use one of {', '.join(runlog.FORMATS)}", exit_code=2)
    max_age_seconds = runlog.parse_duration(max_age) if max_age is not None else None
    layout = Layout(settings.data_dir)
    now = settings.now()
    statuses = runlog.evaluate(runlog.read_runs(layout), now, max_age_seconds, tuple(stages))

    summary = RunSummary("status")
    if not statuses:
        what = f"of {', '.join(repr(s) for s in stages)} " if stages else ""
        summary.fail(f"no runs {what}recorded in {layout.run_log} yet: run a bhds command first")
    for item in statuses:
        if item.problem is not None:
            where = " ".join(part for part in (item.stage, item.trade_type, item.interval) if part)
            summary.fail(f"{where}: {item.problem}")
    if write is not None:
        if output_format == "json":
            write(runlog.render_json(statuses, now=now, data_dir=layout.root, max_age_seconds=max_age_seconds))
        elif statuses:
            write(runlog.render_table(statuses))
    if prometheus is not None:
        # Written to a temporary sibling and renamed, so node_exporter never reads half a file.
        storage.write_bytes(runlog.render_prometheus(statuses).encode(), Path(prometheus))
    return summary
