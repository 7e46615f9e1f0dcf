"""`python bench/store_vs_local.py [--runs 1]`: the five scripts with the store in a bucket vs on local disk.

Builds the tests' default archive (tests.fakebinance) in a temp dir, serves it with the fake
Binance, starts moto's S3 server on loopback, then runs the five scripts in order, twice each
(a first run, then a run with nothing new), once with CRYPTO_BASE_DIR=<local dir> and once with
CRYPTO_BASE_DIR=s3://<bucket>/store; then as another machine would (a fresh working copy, nothing
new in the bucket), with placeholders and with BHDS_LAZY_SYNC=0, and the disk each copy used. Prints wall and CPU seconds (user+sys of the scripts' process
trees; the S3 server's own work is not counted) per script, and writes the table under
bench/results/. Timings are never asserted.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
SCRIPTS = ["aws_download.sh", "aws_parse.sh", "api_download.sh", "gen_kline.sh", "resample.sh"]


def run_scripts(env: dict[str, str]) -> list[tuple[str, float, float]]:
    """(script, wall s, CPU s) of each script, in order; a failing script stops the bench."""
    out = []
    for script in SCRIPTS:
        before, started = os.times(), time.monotonic()
        proc = subprocess.run(["bash", str(REPO / "scripts" / script), *(["1m"] if script != "resample.sh" else [])],
                              env=env, capture_output=True, text=True)
        after = os.times()
        if proc.returncode:
            raise SystemExit(f"{script} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
        cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
        out.append((script, time.monotonic() - started, cpu))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    import boto3
    from moto.server import ThreadedMotoServer

    from tests.fakebinance import build_archive, default_universe, start_in_thread

    with tempfile.TemporaryDirectory(prefix="bhds-bench-store-") as tmp:
        work = Path(tmp)
        build_archive(default_universe(), work / "archive", intervals=("1m", "1h"), compress_level=1)
        fake = start_in_thread(work / "archive")
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        aws = {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
               "AWS_REGION": "us-east-1"}
        boto3.client("s3", endpoint_url=aws["AWS_ENDPOINT_URL"], aws_access_key_id="bench", aws_secret_access_key="bench",
                     region_name="us-east-1").create_bucket(Bucket="bench")
        base = dict(os.environ, **fake.env, CRYPTO_NJOBS="2", BHDS_NOW=fake.universe.now_iso, PYTHONPATH=str(REPO))
        roots = {"local": {"CRYPTO_BASE_DIR": str(work / "local")},
                 "s3": {**aws, "CRYPTO_BASE_DIR": "s3://bench/store", "BHDS_WORK_DIR": str(work / "working-copy")}}
        rows = {}
        disk = {}
        try:
            for name, extra in roots.items():
                for attempt in ("first", "again"):
                    rows[(name, attempt)] = run_scripts(dict(base, **extra))
            # Another machine joins (nothing new in the bucket): a fresh working copy with
            # placeholders (the default) and with full copies (BHDS_LAZY_SYNC=0).
            for attempt, lazy in (("fresh", "1"), ("fresh full", "0")):
                copy = work / f"working-copy-{lazy}"
                rows[("s3", attempt)] = run_scripts({**base, **roots["s3"], "BHDS_WORK_DIR": str(copy), "BHDS_LAZY_SYNC": lazy})
                disk[attempt] = sum(p.stat().st_blocks * 512 for p in copy.rglob("*") if p.is_file())
        finally:
            server.stop()
            fake.stop()
    keys = (("local", "first"), ("s3", "first"), ("local", "again"), ("s3", "again"), ("s3", "fresh"), ("s3", "fresh full"))
    lines = ["| script | local first: wall / CPU s | s3 first: wall / CPU s | local again | s3 again "
             "| s3, fresh machine | s3, fresh machine, BHDS_LAZY_SYNC=0 |", "|---|---|---|---|---|---|---|"]
    for i, script in enumerate(SCRIPTS):
        cells = [f"{rows[k][i][1]:.1f} / {rows[k][i][2]:.1f}" for k in keys]
        lines.append(f"| {script} | " + " | ".join(cells) + " |")
    totals = [f"{sum(r[1] for r in rows[k]):.1f} / {sum(r[2] for r in rows[k]):.1f}" for k in keys]
    lines.append("| **total** | " + " | ".join(totals) + " |")
    lines.append("")
    lines.append(f"Disk used by the fresh machine's working copy afterwards: {disk['fresh'] / 1e6:.1f} MB with placeholders, "
                 f"{disk['fresh full'] / 1e6:.1f} MB as a full copy.")
    table = "\n".join(lines)
    print(table)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    out = REPO / "bench" / "results" / f"store-vs-local-default-archive-{stamp}.md"
    out.write_text(f"# The five scripts: store in a bucket (moto on loopback) vs local disk\n\n{table}\n")
    print(f"written {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
