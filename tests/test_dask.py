"""The per-item work on a real Dask cluster (`--scheduler`, DASK_SCHEDULER_ADDRESS): the same bytes
as the local pool, a worker killed mid-task retried to the same result, one-line errors.

One `distributed.LocalCluster` (worker processes) serves the whole module: starting one takes seconds.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import pytest
from distributed import Client, LocalCluster, get_task_stream

from bhds.cli import main
from bhds.parallel import executor, imap_isolated
from bhds.paths import temp_path
from bhds.settings import load_settings
from bhds.workflows import generate
from tests.conftest import fake_on_copy, store_after
from tests.test_e2e_scripts import run_scripts

REPO = Path(__file__).resolve().parent.parent
PARSE = ["aws_kline", "parse-type-all", "spot", "1m"]
GENERATE = ["generate", "kline-type", "spot", "1m"]
QUALITY = ["quality", "report", "spot", "1m", "--format", "json"]
OUTPUTS = ("parsed_data", "results_data")
TASK_PREFIX = "_on_worker-"  # the key of every task bhds submits (bhds.cluster)


@pytest.fixture(scope="module")
def cluster():
    """A real scheduler with two worker processes of one thread each, and a client to watch it."""
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as local, \
            Client(local) as client:
        yield local, client


@pytest.fixture(scope="module")
def verified(default_archive: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A data root with the spot 1m archive downloaded and verified (nothing parsed yet)."""
    return store_after(default_archive, tmp_path_factory.mktemp("dask"), [
        ["aws_kline", "download-spot", "1m"], ["aws_kline", "verify-type-all", "spot", "1m"]])


@pytest.fixture(scope="module")
def parsed(verified, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str], dict[str, str]]:
    """`verified` parsed, and the digests of what the pool's `generate kline-type` makes of it."""
    base, env = verified
    root = copy_of(base, tmp_path_factory.mktemp("dask-parsed") / "crypto")
    assert bhds(PARSE, env, CRYPTO_BASE_DIR=str(root)).returncode == 0
    pool = copy_of(root, tmp_path_factory.mktemp("dask-pool") / "crypto")
    assert bhds(GENERATE, env, CRYPTO_BASE_DIR=str(pool)).returncode == 0
    return root, env, digests(pool)


def copy_of(base: Path, dest: Path) -> Path:
    shutil.copytree(base, dest, symlinks=True)
    return dest


def bhds(argv: list[str], env: dict[str, str], **changes: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "bhds.py"), *argv], cwd=REPO, env=dict(env, **changes),
                          capture_output=True, text=True, timeout=300)


def digests(base: Path) -> dict[str, str]:
    """sha256 of every output file under the data root, by relative path."""
    root = base / "binance_data"
    out = {}
    for top in OUTPUTS:
        for path in sorted((root / top).rglob("*")):
            if path.is_file():
                out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("bhds: error:")]


def test_verify_on_the_scheduler_equals_the_pool(verified, cluster, tmp_path: Path) -> None:
    base, env = verified
    _, client = cluster
    trees = {}
    for name in ("pool", "dask"):
        root = copy_of(base, tmp_path / name)
        mirror = root / "binance_data" / "aws_data"
        for marker in mirror.rglob("*.verified"):
            marker.unlink()
        bad = sorted(mirror.rglob("BTCUSDT-1m-*.zip"))[3]
        bad.write_bytes(b"PK\x03\x04 not the published bytes")
        changes = {"CRYPTO_BASE_DIR": str(root)}
        if name == "dask":
            changes["DASK_SCHEDULER_ADDRESS"] = cluster[0].scheduler_address
        with get_task_stream(client) as stream:
            proc = bhds(["aws_kline", "verify-type-all", "spot", "1m"], env, **changes)
        assert proc.returncode == 3 and f"{bad.name}: " in proc.stderr, proc.stderr[-2000:]
        on_cluster = [record for record in stream.data if str(record["key"]).startswith(TASK_PREFIX)]
        assert bool(on_cluster) == (name == "dask")
        trees[name] = sorted(str(p.relative_to(mirror)) for p in mirror.rglob("*") if p.is_file())
        assert not bad.exists() and bad.name + ".verified" not in {Path(p).name for p in trees[name]}
    assert trees["dask"] == trees["pool"]
    assert sum(name.endswith(".verified") for name in trees["dask"]) > 50


def test_the_five_scripts_on_the_scheduler_of_dask_scheduler_address_equal_a_local_run(
        default_archive: Path, cluster, tmp_path: Path) -> None:
    local_cluster, client = cluster
    trees, reports, tasks = {}, {}, {}
    for name in ("local", "dask"):
        fake, env = fake_on_copy(default_archive, tmp_path / name)
        env.pop("DASK_SCHEDULER_ADDRESS", None)
        if name == "dask":
            env["DASK_SCHEDULER_ADDRESS"] = local_cluster.scheduler_address
        try:
            with get_task_stream(client) as stream:
                procs = run_scripts(env)
                report = bhds(QUALITY, env)
        finally:
            fake.stop()
        assert [proc.returncode for proc in (*procs, report)] == [0] * (len(procs) + 1), procs[-1].stderr[-2000:]
        trees[name] = digests(tmp_path / name / "crypto")
        # The report names its data root and when the zips were downloaded: the rest is the data's.
        reports[name] = re.sub(r'"archive_newest_mtime": "[^"]*"', "", report.stdout.replace(str(tmp_path / name), "ROOT"))
        tasks[name] = [record for record in stream.data if str(record["key"]).startswith(TASK_PREFIX)]
    # The work ran as tasks on that scheduler's workers, and only when it was set.
    assert not tasks["local"] and len(tasks["dask"]) > 50
    assert {record["worker"] for record in tasks["dask"]} <= set(client.scheduler_info()["workers"])
    assert len([path for path in trees["local"] if path.startswith("results_data/spot/resampled_klines")]) > 10
    assert trees["dask"] == trees["local"]
    assert reports["dask"] == reports["local"]


def test_scheduler_local_n_starts_and_closes_its_own_cluster(parsed, tmp_path: Path) -> None:
    base, env, expected = parsed
    on_dask = copy_of(base, tmp_path / "dask")
    proc = bhds([*GENERATE, "--scheduler", "local:2"], env, CRYPTO_BASE_DIR=str(on_dask))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "local Dask cluster of 2 worker process(es)" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert digests(on_dask) == expected


def _die_once(markers: Path, real, job):  # noqa: ANN001, ANN202 - a stand-in for the task function
    """BTCUSDT's first attempt leaves a half-written temp file and SIGKILLs its worker process."""
    marker = markers / job.symbol
    if job.symbol == "BTCUSDT" and not marker.exists():
        marker.write_text(str(os.getpid()))
        job.out_dir.mkdir(parents=True, exist_ok=True)
        temp_path(job.out_dir / f"{job.symbol}.parquet", "killed00").write_bytes(b"PAR1 half written")
        os.kill(os.getpid(), signal.SIGKILL)
    return real(job)


def test_a_worker_killed_mid_task_is_retried_and_the_result_is_identical(parsed, cluster, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    base, env, expected = parsed
    on_dask = copy_of(base, tmp_path / "dask")

    markers = tmp_path / "markers"
    markers.mkdir()
    # The real task function, run on the cluster's workers, behind one that kills its worker once.
    monkeypatch.setattr(generate, "run_kline_job", partial(_die_once, markers, generate.run_kline_job))
    for key in ("CRYPTO_NJOBS", "BHDS_NOW"):
        monkeypatch.setenv(key, env[key])
    monkeypatch.setenv("CRYPTO_BASE_DIR", str(on_dask))
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", cluster[0].scheduler_address)
    with pytest.raises(SystemExit) as stopped:
        main(GENERATE)
    assert stopped.value.code == 0
    killed = int((markers / "BTCUSDT").read_text())
    assert killed != os.getpid()  # it was a worker process that died, and yet the run finished
    assert digests(on_dask) == expected


def _record(directory: Path, item: int) -> int:
    started = time.time()
    time.sleep(0.2)
    (directory / str(item)).write_text(f"{started} {time.time()}")
    if item == 3:
        raise ValueError("item 3 is bad")
    return item * item


def test_isolation_and_bounded_in_flight_work_on_dask(cluster, tmp_path: Path) -> None:
    settings = load_settings({"CRYPTO_BASE_DIR": str(tmp_path), "DASK_SCHEDULER_ADDRESS": cluster[0].scheduler_address})
    with executor(settings):
        outcomes = dict(imap_isolated(partial(_record, tmp_path), range(6), 2, max_pending=1))
    assert sorted(outcomes) == list(range(6))
    assert isinstance(outcomes[3], ValueError) and str(outcomes[3]) == "item 3 is bad"
    assert all(outcomes[i] == i * i for i in range(6) if i != 3)
    # One task in flight at a time although two workers were free: the spans never overlap.
    spans = sorted(tuple(map(float, (tmp_path / str(i)).read_text().split())) for i in range(6))
    assert all(end <= next_start for (_, end), (next_start, _) in zip(spans, spans[1:]))


def test_scheduler_without_dask_installed_is_one_line_naming_the_extra(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker" / "distributed"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('No module named distributed')\n")
    env = dict(os.environ, CRYPTO_BASE_DIR=str(tmp_path / "data"), PYTHONPATH=f"{blocker.parent}{os.pathsep}{REPO}")
    for argv, changes in (([*GENERATE, "--scheduler", "local:2"], {}), (GENERATE, {"DASK_SCHEDULER_ADDRESS": "tcp://10.0.0.5:8786"})):
        proc = bhds(argv, env, **changes)
        lines = error_lines(proc.stderr)
        assert proc.returncode == 1
        assert len(lines) == 1 and "pip install 'bhds[dask]'" in lines[0] and "Traceback" not in proc.stderr
    # A command with no per-item work ignores Dask's variable (a Dask user may have it exported).
    proc = bhds(["list-data"], env, DASK_SCHEDULER_ADDRESS="tcp://10.0.0.5:8786")
    assert proc.returncode == 0 and "dask" not in proc.stderr.lower(), proc.stderr


@pytest.mark.parametrize(("argv", "changes", "named"), [
    ([*GENERATE, "--scheduler", "local:0"], {}, "--scheduler='local:0'"),
    ([*GENERATE, "--scheduler", "somewhere:port"], {}, "--scheduler='somewhere:port'"),
    (GENERATE, {"DASK_SCHEDULER_ADDRESS": "http://10.0.0.5:8786"}, "DASK_SCHEDULER_ADDRESS='http://10.0.0.5:8786'"),
])
def test_a_bad_scheduler_is_one_line(argv: list[str], changes: dict[str, str], named: str, tmp_path: Path) -> None:
    proc = bhds(argv, dict(os.environ, CRYPTO_BASE_DIR=str(tmp_path)), **changes)
    assert proc.returncode == 1
    assert len(error_lines(proc.stderr)) == 1 and named in error_lines(proc.stderr)[0]
    assert "Traceback" not in proc.stderr


def test_a_command_without_per_item_work_ignores_any_dask_scheduler_address(tmp_path: Path) -> None:
    """Dask's variable may hold what bhds does not take (a dask-gateway address, say): only the commands
    that fan out read it, the others run as if it were unset."""
    env = dict(os.environ, CRYPTO_BASE_DIR=str(tmp_path))
    proc = bhds(["list-data"], env, DASK_SCHEDULER_ADDRESS="gateway://gateway.example:443/analysis")
    assert proc.returncode == 0 and not error_lines(proc.stderr), proc.stderr
