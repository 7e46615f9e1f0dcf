"""The run record (.bhds/runs.jsonl) and `bhds status`: one line per command, exit codes, staleness, Prometheus."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

import bhds
from bhds import paths, runlog, storage
from bhds.cli import main
from bhds.paths import Layout
from bhds.types import TradeType
from tests.test_generate_support import klines, steps, write_archive

SPOT = TradeType.spot
T0 = datetime(2024, 2, 1, 12, 0, tzinfo=timezone.utc)


def store(base: Path) -> Layout:
    layout = Layout(base / "binance_data")
    t = steps("2024-01-01", "2024-01-03")
    write_archive(layout, SPOT, "BTCUSDT", "1m", klines(t, 100 * np.exp(np.cumsum(np.random.default_rng(1).normal(0, 0.002, len(t))))))
    return layout


def cli(argv: list[str], base: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
        now: datetime = T0) -> tuple[int, str, str]:
    monkeypatch.setenv("CRYPTO_BASE_DIR", str(base))
    monkeypatch.setenv("CRYPTO_NJOBS", "1")
    monkeypatch.setenv("BHDS_NOW", now.isoformat())
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


def lines(layout: Layout) -> list[dict]:
    return [json.loads(line) for line in layout.run_log.read_text().splitlines()]


def test_every_command_appends_one_line_with_its_exit_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    layout = store(tmp_path)
    assert cli(["generate", "kline-type", "spot", "1m"], tmp_path, monkeypatch, capsys)[0] == 0
    assert cli(["generate", "kline-type", "spot", "1x"], tmp_path, monkeypatch, capsys)[0] == 2  # our own usage error
    assert cli(["generate", "kline-type", "bogus", "1m"], tmp_path, monkeypatch, capsys)[0] == 2  # Click's
    storage.write_bytes(b"not parquet", layout.results_kline_file(SPOT, "1m", "XRPUSDT"))
    assert cli(["generate", "indicators-type", "spot", "1m", "--indicator", "rsi:14"], tmp_path, monkeypatch, capsys)[0] == 3
    with storage.stage_lock(layout, paths.lock_name("generate", SPOT, paths.KLINES, "1m")):
        assert cli(["generate", "kline-type", "spot", "1m"], tmp_path, monkeypatch, capsys)[0] == 75

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("bhds.workflows.generate.resample_type", interrupted)  # Ctrl-C in the middle of the work
    assert cli(["generate", "resample-type", "spot", "1h", "5m"], tmp_path, monkeypatch, capsys)[0] == 130
    # Not runs: help, version, status itself, and an unknown command.
    for argv in (["generate", "--help"], ["--version"], ["status"], ["nonsense"]):
        cli(argv, tmp_path, monkeypatch, capsys)

    records = lines(layout)
    assert [(r["command"], r["trade_type"], r["interval"], r["exit_code"], r["outcome"]) for r in records] == [
        ("generate kline-type", "spot", "1m", 0, "ok"),
        ("generate kline-type", "spot", "1x", 2, "usage"),
        ("generate kline-type", None, "1m", 2, "usage"),
        ("generate indicators-type", "spot", "1m", 3, "partial"),
        ("generate kline-type", "spot", "1m", 75, "busy"),
        ("generate resample-type", "spot", "1h/5m", 130, "interrupted"),
    ]
    first, _, click_usage, partial, busy, _ = records
    assert first["summary"]["files"] == 1 and first["summary"]["rows"] == 2 * 1440 and first["summary"]["failed"] == 0
    assert first["argv"] == ["generate", "kline-type", "spot", "1m"] and first["version"] == bhds.__version__
    assert first["start"] == "2024-02-01T12:00:00.000Z" and first["end"] >= first["start"] and first["error"] is None
    assert "'bogus' is not one of" in click_usage["error"] and click_usage["summary"] is None
    assert partial["summary"]["failed"] == 1 and partial["summary"]["failures"][0].startswith("XRPUSDT: cannot read")
    assert partial["summary"]["notes"] == {"symbols": 2}
    assert "another bhds process" in busy["error"]


def test_a_typo_does_not_create_the_data_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    assert cli(["generate", "kline-type", "bogus", "1m"], tmp_path, monkeypatch, capsys)[0] == 2
    assert not (tmp_path / "binance_data").exists()


def test_status_is_ok_then_stale_then_failed_then_ok(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    layout = store(tmp_path)
    code, out, err = cli(["status"], tmp_path, monkeypatch, capsys)
    assert code == 3 and out == "" and "no runs recorded" in err

    assert cli(["generate", "kline-type", "spot", "1m"], tmp_path, monkeypatch, capsys)[0] == 0
    code, out, err = cli(["status", "--max-age", "2h"], tmp_path, monkeypatch, capsys, now=T0 + timedelta(hours=1))
    assert (code, err) == (0, "")
    assert out.splitlines()[0].split() == ["STAGE", "TRADE_TYPE", "INTERVAL", "LAST_END", "(UTC)", "AGE", "OUTCOME", "EXIT", "TIME", "FAILED", "STATUS"]
    assert re.match(r"^generate kline-type\s+spot\s+1m\s+2024-02-01 12:00:\d\d\s+(?:1h00m|59m\d\ds)\s+ok\s+0\s+\d+\.\ds\s+0\s+ok$", out.splitlines()[1])

    code, out, err = cli(["status", "--max-age", "2h", "--format", "json"], tmp_path, monkeypatch, capsys, now=T0 + timedelta(hours=3))
    assert code == 3
    doc = json.loads(out)  # stdout holds the JSON document and nothing else
    assert doc["schema"] == "bhds-status/1" and doc["healthy"] is False and doc["max_age_seconds"] == 7200
    (stage,) = doc["stages"]
    assert stage["problem"].startswith("last run 2h59m ago, older than --max-age 2h00m") or stage["problem"].startswith("last run 3h00m ago")
    assert err.startswith("bhds: problem: generate kline-type spot 1m: last run")

    storage.write_bytes(b"not parquet", layout.results_kline_file(SPOT, "1m", "XRPUSDT"))
    assert cli(["generate", "indicators-type", "spot", "1m", "--indicator", "rsi:14"], tmp_path, monkeypatch, capsys)[0] == 3
    code, out, err = cli(["status"], tmp_path, monkeypatch, capsys)
    assert code == 3 and "bhds: problem: generate indicators-type spot 1m: last run partial (exit 3)" in err
    assert cli(["status", "--stage", "generate kline-type"], tmp_path, monkeypatch, capsys)[0] == 0  # only the stages asked about

    # A busy run (another process had the lock) is not the stage's last run; a usage error of a working stage is.
    layout.results_kline_file(SPOT, "1m", "XRPUSDT").unlink()
    assert cli(["generate", "indicators-type", "spot", "1m", "--indicator", "rsi:14"], tmp_path, monkeypatch, capsys)[0] == 0
    with storage.stage_lock(layout, "generate-indicators-spot-1m"):
        assert cli(["generate", "indicators-type", "spot", "1m", "--indicator", "rsi:14"], tmp_path, monkeypatch, capsys)[0] == 75
    assert cli(["status"], tmp_path, monkeypatch, capsys)[0] == 0
    assert cli(["generate", "kline-type", "spot", "1m", "--min-days", "-1"], tmp_path, monkeypatch, capsys)[0] == 2
    code, _, err = cli(["status"], tmp_path, monkeypatch, capsys)
    assert code == 3 and "generate kline-type spot 1m: last run usage (exit 2)" in err


@pytest.mark.parametrize(("max_age", "says"), [("1x", "is not a duration"), ("1mo", "months have no fixed length"), ("0", "longer than zero")])
def test_bad_max_age_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, max_age: str, says: str) -> None:
    code, out, err = cli(["status", "--max-age", max_age], tmp_path, monkeypatch, capsys)
    assert code == 2 and out == "" and err.startswith("bhds: error: --max-age") and says in err and len(err.splitlines()) == 1


PROM_SAMPLE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*",?)*\} '
                         r"(?:[-+]?(?:\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|NaN|Inf))$")


def test_prometheus_textfile_parses_and_says_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    parser = pytest.importorskip("prometheus_client.parser")
    layout = store(tmp_path)
    assert cli(["generate", "kline-type", "spot", "1m"], tmp_path, monkeypatch, capsys)[0] == 0
    storage.write_bytes(b"not parquet", layout.results_kline_file(SPOT, "1m", "XRPUSDT"))
    assert cli(["generate", "indicators-type", "spot", "1m", "--indicator", "rsi"], tmp_path, monkeypatch, capsys)[0] == 3
    prom = tmp_path / "textfile" / "bhds.prom"
    prom.parent.mkdir()
    prom.write_text("stale content\n")

    code, _, _ = cli(["status", "--prometheus", str(prom)], tmp_path, monkeypatch, capsys, now=T0 + timedelta(minutes=5))

    assert code == 3
    assert [p.name for p in prom.parent.iterdir()] == ["bhds.prom"]  # renamed into place, no temporary left
    text = prom.read_text()
    assert text.endswith("\n")
    for line in text.splitlines():
        assert line.startswith(("# HELP ", "# TYPE ")) or PROM_SAMPLE.match(line), line
    families = {f.name: f for f in parser.text_string_to_metric_families(text)}
    assert set(families) == {"bhds_last_run_timestamp_seconds", "bhds_last_run_success", "bhds_last_run_duration_seconds",
                             "bhds_last_run_failures", "bhds_last_run_exit_code", "bhds_last_run_healthy"}
    assert all(f.type == "gauge" for f in families.values())

    def value(metric: str, stage: str) -> float:
        (sample,) = [s for s in families[metric].samples if s.labels == {"stage": stage, "trade_type": "spot", "interval": "1m"}]
        return sample.value

    assert value("bhds_last_run_success", "generate kline-type") == 1
    assert value("bhds_last_run_success", "generate indicators-type") == 0
    assert value("bhds_last_run_failures", "generate indicators-type") == 1
    assert value("bhds_last_run_exit_code", "generate indicators-type") == 3
    assert value("bhds_last_run_timestamp_seconds", "generate kline-type") >= T0.timestamp()
    assert value("bhds_last_run_duration_seconds", "generate kline-type") > 0


def test_prometheus_labels_are_escaped() -> None:
    parser = pytest.importorskip("prometheus_client.parser")
    record = {"command": 'odd "stage" \\ name', "trade_type": "spot", "interval": "1m\nx", "exit_code": 0, "end": "2024-02-01T12:00:00.000Z", "seconds": 1.5}
    text = runlog.render_prometheus(runlog.evaluate([record], T0, None))
    (sample,) = list(parser.text_string_to_metric_families(text))[0].samples
    assert sample.labels == {"stage": 'odd "stage" \\ name', "trade_type": "spot", "interval": "1m\nx"}


def _append_many(args: tuple[str, int]) -> None:
    root, worker = args
    layout = Layout(Path(root))
    for i in range(300):
        runlog.append_run(layout, {"command": "x", "exit_code": 0, "end": "2024-01-01T00:00:00Z", "worker": worker, "i": i, "pad": "p" * (1000 + 37 * worker)})


def test_concurrent_runs_never_interleave_their_lines(tmp_path: Path) -> None:
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        pool.map(_append_many, [(str(tmp_path), w) for w in range(4)])
    records = lines(Layout(tmp_path))
    assert len(records) == 1200
    for worker in range(4):
        assert [r["i"] for r in records if r["worker"] == worker] == list(range(300))


def test_the_log_rotates_and_both_files_are_read(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    for i in range(40):
        runlog.append_run(layout, {"command": "generate kline-type", "trade_type": "spot", "exit_code": 0, "end": "2024-01-01T00:00:00Z", "i": i},
                          max_bytes=1000)
    assert sorted(p.name for p in layout.state_dir.iterdir() if p.is_file()) == ["runs.jsonl", "runs.jsonl.1"]
    assert layout.run_log.stat().st_size <= 1000 + 200 and layout.run_log_previous.stat().st_size <= 1000 + 200
    kept = [r["i"] for r in runlog.read_runs(layout)]
    assert kept == list(range(kept[0], 40)) and len(kept) >= 10
    (status,) = runlog.evaluate(runlog.read_runs(layout), T0, None)
    assert status.last["i"] == 39


def test_a_run_stopped_by_sigterm_leaves_its_line(tmp_path: Path) -> None:
    """A real process, terminated while it retries an unreachable archive: exit 143 and a 'terminated' line."""
    env = dict(os.environ, CRYPTO_BASE_DIR=str(tmp_path), BHDS_AWS_URL="http://127.0.0.1:9/data.binance.vision")
    repo = Path(__file__).resolve().parents[1]
    process = subprocess.Popen([sys.executable, str(repo / "bhds.py"), "aws_kline", "download", "spot", "1m", "BTCUSDT"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log_file = Layout(tmp_path / "binance_data").root / ".bhds"
    deadline = time.monotonic() + 30
    while not log_file.is_dir() and time.monotonic() < deadline:  # it has started and made its store
        time.sleep(0.1)
    time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 143
    assert "stopped=terminated" in out
    (line,) = lines(Layout(tmp_path / "binance_data"))
    assert (line["command"], line["exit_code"], line["outcome"], line["error"]) == ("aws_kline download", 143, "terminated", "terminated")
