#!/usr/bin/env bash
# Merge archive and API klines into results_data. Usage: gen_kline.sh [interval, default 1m]
# Every step runs even if one failed; exits non-zero if any did. Runs from anywhere (see common.sh).
. "$(dirname "$0")/common.sh" || exit 1
interval=${1:-1m}

run generate kline-type spot "$interval" --split-gaps --with-vwap --no-with-funding-rates
run generate kline-type um_futures "$interval" --split-gaps --with-vwap --with-funding-rates
run generate kline-type cm_futures "$interval" --split-gaps --with-vwap --with-funding-rates
exit $status
