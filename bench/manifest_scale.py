"""`python bench/manifest_scale.py [--files 5000 20000]`: what the object-store protocol costs as a tree grows.

For a tree of N small files on moto's S3 server (loopback): the first publish (every file uploaded),
then a daily-like publish (1 % of the files changed or new, as a day of new zips is), then a sync with
nothing new on another working copy. Per step: wall seconds and the S3 requests made, by kind. The
requests are what scale with a real bucket (each one a round trip, a LIST page holds 1,000 keys);
moto's own speed is not the point. Timings are never asserted.
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def request_kind(method: str, path: str, bucket: str) -> str:
    if method == "GET" and path.rstrip("/") == f"/{bucket}":
        return "LIST"
    return method


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, nargs="+", default=[5000, 20000])
    args = parser.parse_args()
    import boto3

    from bench.harness import publish as keep_report
    from bhds import paths
    from bhds.objstore.manifest import publish, read_manifest, sync_down
    from bhds.objstore.store import open_store
    from bhds.paths import Layout
    from bhds.settings import StoreAccess
    from bhds.types import TradeType
    from tests.motoserver import _hooked_server

    counts: collections.Counter[str] = collections.Counter()
    hooks = []
    server = _hooked_server(hooks)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    access = StoreAccess(endpoint_url=endpoint, region="us-east-1", access_key_id="b", secret_access_key="b")
    rows = []
    try:
        for n in args.files:
            bucket = f"scale-{n}"
            boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="b", aws_secret_access_key="b",
                         region_name="us-east-1").create_bucket(Bucket=bucket)
            hooks[:] = [lambda method, path, b=bucket: counts.update([request_kind(method, path, b)])]
            store = open_store(f"s3://{bucket}/store", access)
            with tempfile.TemporaryDirectory(prefix="bhds-scale-") as tmp:
                writer = Layout(Path(tmp) / "a" / "binance_data")
                tree = paths.store_tree_dir(writer, "aws", TradeType.spot)
                base = sync_down(store, writer, tree)  # an empty working copy of an empty bucket
                for i in range(n):
                    f = tree / f"daily/klines/S{i % 200:03d}USDT/1m/S{i % 200:03d}USDT-1m-{i // 200:05d}.zip"
                    f.parent.mkdir(parents=True, exist_ok=True)
                    f.write_bytes(f"zip {i}".encode())

                def step(name: str, action) -> None:  # noqa: ANN001
                    counts.clear()
                    started = time.monotonic()
                    action()
                    rows.append((n, name, time.monotonic() - started, dict(counts)))

                step("first publish", lambda: publish(store, writer, tree, base))
                for day in (1, 2):
                    changed = sorted(tree.rglob("*.zip"))[: max(1, n // 200)]
                    for i, f in enumerate(changed):
                        f.write_bytes(f"day {day} {i}".encode())
                    for i in range(max(1, n // 200)):
                        f = tree / f"daily/klines/S{i % 200:03d}USDT/1m/new-{day}-{i}.zip"
                        f.parent.mkdir(parents=True, exist_ok=True)
                        f.write_bytes(b"new")
                    base = read_manifest(store, paths.store_tree_name(writer, tree))
                    step(f"day {day} publish (1 % changed)", lambda: publish(store, writer, tree, base))
                reader = Layout(Path(tmp) / "b" / "binance_data")
                reader_tree = paths.store_tree_dir(reader, "aws", TradeType.spot)
                step("fresh copy sync", lambda: sync_down(store, reader, reader_tree))
                step("no-op sync", lambda: sync_down(store, reader, reader_tree))
                manifest = store.read(paths.store_key(paths.store_tree_name(writer, tree), paths.STORE_MANIFEST))
                rows.append((n, "manifest bytes", len(manifest[0]) if manifest else 0, {}))
    finally:
        server.stop()
    lines = ["| files | step | wall s | S3 requests |", "|---|---|---|---|"]
    for n, name, value, reqs in rows:
        shown = f"{value:,}" if name == "manifest bytes" else f"{value:.2f}"
        lines.append(f"| {n:,} | {name} | {shown} | {', '.join(f'{k} {v}' for k, v in sorted(reqs.items()))} |")
    keep_report("# The object-store protocol as a tree grows (moto on loopback)\n\n" + "\n".join(lines) + "\n", "manifest-scale")

if __name__ == "__main__":
    main()
