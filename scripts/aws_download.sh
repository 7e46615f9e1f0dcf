#!/usr/bin/env bash
# Mirror funding rates and klines from data.binance.vision and verify them. Usage: aws_download.sh [interval, default 1m]
# Every step runs even if one failed; exits non-zero if any did. Runs from anywhere (see common.sh).
. "$(dirname "$0")/common.sh" || exit 1
interval=${1:-1m}

run aws_funding download-um-futures
run aws_funding verify-type-all um_futures
run aws_funding download-cm-futures
run aws_funding verify-type-all cm_futures

run aws_kline download-spot "$interval"
run aws_kline verify-type-all spot "$interval"
run aws_kline download-um-futures "$interval"
run aws_kline verify-type-all um_futures "$interval"
run aws_kline download-cm-futures "$interval"
run aws_kline verify-type-all cm_futures "$interval"
exit $status
