#!/usr/bin/env bash
# Parse the verified archive into Parquet. Usage: aws_parse.sh [interval, default 1m]
# Like the legacy script: every step runs even if an earlier one failed (no set -e), but the
# script exits non-zero when any step failed, so cron notices.
cd "$(dirname "$0")/.." || exit 1
PYTHON=${PYTHON:-python}
status=0
run() { "$PYTHON" bhds.py "$@" || status=1; }
interval=${1:-1m}

run aws_funding parse-type-all um_futures
run aws_funding parse-type-all cm_futures

run aws_kline parse-type-all spot "$interval"
run aws_kline parse-type-all um_futures "$interval"
run aws_kline parse-type-all cm_futures "$interval"
exit $status
