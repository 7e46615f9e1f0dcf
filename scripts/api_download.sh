#!/usr/bin/env bash
# Fill the days the archive lacks from the REST API and fetch recent funding. Usage: api_download.sh [interval, default 1m]
# Every step runs even if one failed; exits non-zero if any did. Runs from anywhere (see common.sh).
. "$(dirname "$0")/common.sh" || exit 1
interval=${1:-1m}

run api_data download-aws-missing-kline-type spot "$interval"
run api_data download-aws-missing-kline-type um_futures "$interval"
run api_data download-aws-missing-kline-type cm_futures "$interval"

run api_data download-recent-funding-type um_futures
run api_data download-recent-funding-type cm_futures
exit $status
