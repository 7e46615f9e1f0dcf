#!/usr/bin/env bash
# Fill the days the archive lacks from the REST API and fetch recent funding. Usage: api_download.sh [interval, default 1m]
# Like the legacy script: every step runs even if an earlier one failed (no set -e), but the
# script exits non-zero when any step failed, so cron notices.
cd "$(dirname "$0")/.." || exit 1
PYTHON=${PYTHON:-python}
status=0
run() { "$PYTHON" bhds.py "$@" || status=1; }
interval=${1:-1m}

run api_data download-aws-missing-kline-type spot "$interval"
run api_data download-aws-missing-kline-type um_futures "$interval"
run api_data download-aws-missing-kline-type cm_futures "$interval"

run api_data download-recent-funding-type um_futures
run api_data download-recent-funding-type cm_futures
exit $status
