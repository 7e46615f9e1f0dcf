# Sourced by the five pipeline scripts (not run on its own); plain POSIX sh, so `sh script.sh`
# works as it did with the legacy scripts. Like them, every step runs even if an earlier one
# failed (no set -e); unlike them, the script exits non-zero when any step failed, so cron notices.
#
# The scripts run from anywhere: they move into the repository to call `python bhds.py` as the
# legacy scripts did. Paths the caller gave relative to where they called from (CRYPTO_BASE_DIR,
# a PYTHON such as venv/bin/python) are made absolute first, so they keep meaning that place.
case ${CRYPTO_BASE_DIR:-/} in
  /* | "~"* | *://*) ;;  # absolute, home-relative, or a store URL (s3://bucket/prefix)
  *) CRYPTO_BASE_DIR="$PWD/$CRYPTO_BASE_DIR"; export CRYPTO_BASE_DIR ;;
esac
PYTHON=${PYTHON:-python}
case $PYTHON in
  /*) ;;
  */*) PYTHON="$PWD/$PYTHON" ;;
esac
cd "$(dirname "$0")/.." || exit 1
status=0
run() { "$PYTHON" bhds.py "$@" || status=1; }
