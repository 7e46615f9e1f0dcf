#!/usr/bin/env bash
# Resample the 1m results to 1h (every 5m offset) and 5m. Usage: resample.sh
# Like the legacy script: every step runs even if an earlier one failed (no set -e), but the
# script exits non-zero when any step failed, so cron notices.
cd "$(dirname "$0")/.." || exit 1
PYTHON=${PYTHON:-python}
status=0
run() { "$PYTHON" bhds.py "$@" || status=1; }
run generate resample-type spot 1h 5m
run generate resample-type um_futures 1h 5m
run generate resample-type cm_futures 1h 5m

run generate resample-type spot 5m 0m
run generate resample-type um_futures 5m 0m
exit $status
