#!/usr/bin/env bash
# Resample the 1m results to 1h (every 5m offset) and 5m. Usage: resample.sh
# Every step runs even if one failed; exits non-zero if any did. Runs from anywhere (see common.sh).
. "$(dirname "$0")/common.sh" || exit 1
run generate resample-type spot 1h 5m
run generate resample-type um_futures 1h 5m
run generate resample-type cm_futures 1h 5m

run generate resample-type spot 5m 0m
run generate resample-type um_futures 5m 0m
exit $status
