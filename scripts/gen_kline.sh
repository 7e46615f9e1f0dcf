#!/usr/bin/env bash
# Merge archive and API klines into results_data. Usage: gen_kline.sh [interval, default 1m]
# Like the legacy script: every step runs even if an earlier one failed (no set -e), but the
# script exits non-zero when any step failed, so cron notices.
cd "$(dirname "$0")/.." || exit 1
PYTHON=${PYTHON:-python}
status=0
run() { "$PYTHON" bhds.py "$@" || status=1; }
interval=${1:-1m}

run generate kline-type spot "$interval" --split-gaps --with-vwap --no-with-funding-rates
run generate kline-type um_futures "$interval" --split-gaps --with-vwap --with-funding-rates
run generate kline-type cm_futures "$interval" --split-gaps --with-vwap --with-funding-rates
exit $status
