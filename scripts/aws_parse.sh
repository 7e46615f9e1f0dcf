#!/usr/bin/env bash
# Parse the verified archive into Parquet. Usage: aws_parse.sh [interval, default 1m]
# Every step runs even if one failed; exits non-zero if any did. Runs from anywhere (see common.sh).
. "$(dirname "$0")/common.sh" || exit 1
interval=${1:-1m}

run aws_funding parse-type-all um_futures
run aws_funding parse-type-all cm_futures

run aws_kline parse-type-all spot "$interval"
run aws_kline parse-type-all um_futures "$interval"
run aws_kline parse-type-all cm_futures "$interval"
exit $status
