"""The run record: one JSON line per bhds command in `binance_data/.bhds/runs.jsonl`, and what
`bhds status` makes of it (per stage: the last run, its outcome and age; a Prometheus textfile).

Each line is appended with a single `write` on a file opened with O_APPEND, so concurrent runs
never interleave their lines. When the file passes `MAX_LOG_BYTES` it is renamed to
`runs.jsonl.1` (replacing the previous one) under a lock, and readers read both: the log stays
below about twice that size, and the last run of every stage survives a rotation.
"""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from bhds import storage
from bhds.errors import InputError
from bhds.paths import Layout
from bhds.types import parse_interval

RECORD_FORMAT = 1
MAX_LOG_BYTES = 8 * 1024 * 1024  # ~15,000 runs; at a few dozen cron runs a day, years of history
STATUS_SCHEMA = "bhds-status/1"
FORMATS = ("table", "json")

# Exit codes (bhds.cli) → the word status shows. 75 means another process held the stage's lock:
# that run did nothing, so it never counts as the stage's last run.
_OUTCOMES = {0: "ok", 2: "usage", 3: "partial", 75: "busy", 130: "interrupted", 143: "terminated"}
BUSY = "busy"


def outcome_of(exit_code: int) -> str:
    return _OUTCOMES.get(exit_code, "failed")


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# ---- writing ----

def append_run(layout: Layout, record: dict, *, max_bytes: int = MAX_LOG_BYTES) -> None:
    """Append `record` as one line; rotate the log first when it has grown past `max_bytes`."""
    line = (json.dumps(record, separators=(",", ":"), ensure_ascii=True, default=str) + "\n").encode()
    path = layout.run_log
    path.parent.mkdir(parents=True, exist_ok=True)
    _rotate_if_large(layout, max_bytes)
    storage.append_line(path, line)


def _rotate_if_large(layout: Layout, max_bytes: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        if layout.run_log.stat().st_size <= max_bytes:
            return
    if not layout.run_log.exists():
        return
    with storage.try_lock(layout.lock_file("runs-log")) as taken:
        if not taken:
            return  # another run is rotating it right now
        # Checked again under the lock: a run that just rotated left a small file, keep it.
        with contextlib.suppress(FileNotFoundError):
            if layout.run_log.stat().st_size > max_bytes:
                storage.replace_file(layout.run_log, layout.run_log_previous)


# ---- reading ----

def read_runs(layout: Layout) -> list[dict]:
    """Every recorded run, oldest first (the rotated file, then the current one); unreadable lines are skipped."""
    runs = []
    for path in (layout.run_log_previous, layout.run_log):
        try:
            text = storage.read_bytes(path).decode("utf-8", errors="replace")
        except FileNotFoundError:
            continue
        for line in text.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("command") and isinstance(record.get("exit_code"), int) and record.get("end"):
                runs.append(record)
    return runs


def parse_duration(text: str) -> float:
    """`--max-age`: `90m`, `26h`, `2d`, `1w`, or plain seconds → seconds. Bad input raises InputError (exit 2)."""
    raw = (text or "").strip()
    if raw.isdigit():
        seconds = float(raw)
    else:
        try:
            interval = parse_interval(raw, what="--max-age")
        except InputError:
            raise InputError(f"--max-age {text!r} is not a duration: use e.g. 90m, 26h, 2d or a number of seconds", exit_code=2) from None
        if interval.is_calendar:
            raise InputError(f"--max-age {text!r}: months have no fixed length, use days, e.g. 31d", exit_code=2)
        seconds = interval.ms / 1000
    if seconds <= 0:
        raise InputError(f"--max-age {text!r} must be longer than zero: use e.g. 26h", exit_code=2)
    return seconds


@dataclass(frozen=True)
class StageStatus:
    stage: str
    trade_type: str
    interval: str
    last: dict  # the record of the stage's last run
    age_seconds: float
    problem: str | None  # why this stage is unhealthy, or None

    @property
    def end(self) -> datetime:
        return parse_iso(self.last["end"])

    def to_json(self) -> dict:
        summary = self.last.get("summary") or {}
        return {
            "stage": self.stage, "trade_type": self.trade_type or None, "interval": self.interval or None,
            "outcome": self.last.get("outcome") or outcome_of(self.last["exit_code"]), "exit_code": self.last["exit_code"],
            "start": self.last.get("start"), "end": self.last["end"], "age_seconds": round(self.age_seconds, 3),
            "duration_seconds": self.last.get("seconds"), "failures": summary.get("failed", 0),
            "error": self.last.get("error"), "healthy": self.problem is None, "problem": self.problem,
            "argv": self.last.get("argv"), "version": self.last.get("version"),
        }


def stage_key(record: dict) -> tuple[str, str, str]:
    return record["command"], record.get("trade_type") or "", record.get("interval") or ""


def stage_text(key: tuple[str, str, str]) -> str:
    """`generate kline-type um_futures 1m`: what `--stage` prefixes are matched against."""
    return " ".join(part for part in key if part)


def evaluate(runs: list[dict], now: datetime, max_age_seconds: float | None, stages: tuple[str, ...] = ()) -> list[StageStatus]:
    """The last run of each (stage, trade type, interval) and whether it is a problem: failed, or older than max_age.

    A stage exists once one of its runs got past argument checking (exit code other than 2 and
    75): a mistyped command line, run once, is not a stage that stays red forever, while a cron
    line that worked and then broke shows up as failed. `stages` keeps only the stages whose
    text starts with one of them.
    """
    last: dict[tuple[str, str, str], dict] = {}
    real: set[tuple[str, str, str]] = set()
    for record in runs:  # lines are appended when a run ends, so a later line is a later run
        outcome = outcome_of(record["exit_code"])
        if outcome == BUSY:
            continue
        key = stage_key(record)
        last[key] = record
        if outcome != "usage" and key[1]:
            real.add(key)
    statuses = []
    for key in sorted(real):
        if stages and not any(stage_text(key).startswith(prefix.strip()) for prefix in stages):
            continue
        record = last[key]
        age = (now - parse_iso(record["end"])).total_seconds()
        problem = None
        if record["exit_code"] != 0:
            problem = f"last run {outcome_of(record['exit_code'])} (exit {record['exit_code']})"
        elif max_age_seconds is not None and age > max_age_seconds:
            problem = f"last run {human_age(age)} ago, older than --max-age {human_age(max_age_seconds)}"
        statuses.append(StageStatus(*key, record, age, problem))
    return statuses


def human_age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


# ---- rendering ----

def render_json(statuses: list[StageStatus], *, now: datetime, data_dir: Path, max_age_seconds: float | None) -> str:
    doc = {
        "schema": STATUS_SCHEMA, "generated_at": iso(now), "data_dir": str(data_dir), "max_age_seconds": max_age_seconds,
        "healthy": bool(statuses) and all(s.problem is None for s in statuses), "stages": [s.to_json() for s in statuses],
    }
    return json.dumps(doc, indent=2)


def render_table(statuses: list[StageStatus]) -> str:
    header = ("STAGE", "TRADE_TYPE", "INTERVAL", "LAST_END (UTC)", "AGE", "OUTCOME", "EXIT", "TIME", "FAILED", "STATUS")
    rows = [header]
    for s in statuses:
        seconds = s.last.get("seconds")
        rows.append((s.stage, s.trade_type or "-", s.interval or "-", s.last["end"][:19].replace("T", " "), human_age(s.age_seconds),
                     s.last.get("outcome") or outcome_of(s.last["exit_code"]), str(s.last["exit_code"]),
                     f"{seconds:.1f}s" if isinstance(seconds, int | float) else "-", str((s.last.get("summary") or {}).get("failed", 0)),
                     "ok" if s.problem is None else f"PROBLEM: {s.problem}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)


_PROMETHEUS_METRICS = (
    ("bhds_last_run_timestamp_seconds", "Unix time at which the last run of the stage ended.",
     lambda s: s.end.timestamp()),
    ("bhds_last_run_success", "1 if the last run of the stage exited 0, else 0.",
     lambda s: 1 if s.last["exit_code"] == 0 else 0),
    ("bhds_last_run_duration_seconds", "Wall time of the last run of the stage.",
     lambda s: s.last.get("seconds") or 0.0),
    ("bhds_last_run_failures", "Items (files, symbols, days) the last run of the stage reported as failed.",
     lambda s: (s.last.get("summary") or {}).get("failed", 0)),
    ("bhds_last_run_exit_code", "Exit code of the last run of the stage.",
     lambda s: s.last["exit_code"]),
    ("bhds_last_run_healthy", "1 if the stage's last run succeeded and is not older than --max-age, else 0.",
     lambda s: 1 if s.problem is None else 0),
)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def render_prometheus(statuses: list[StageStatus]) -> str:
    """node_exporter textfile format: HELP and TYPE, then one gauge per stage, labels stage/trade_type/interval."""
    lines = []
    for name, help_text, value in _PROMETHEUS_METRICS:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        for s in statuses:
            labels = f'stage="{_label(s.stage)}",trade_type="{_label(s.trade_type)}",interval="{_label(s.interval)}"'
            lines.append(f"{name}{{{labels}}} {_number(value(s))}")
    return "\n".join(lines) + "\n"
