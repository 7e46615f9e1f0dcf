# Sourced by the five pipeline scripts (not run on its own). Like the legacy scripts, every step
# runs even if an earlier one failed (no set -e); unlike them, the script exits non-zero when any
# step failed, so cron notices.
#
# The scripts run from anywhere: they move into the repository to call `python bhds.py` as the
# legacy scripts did. Paths the caller gave relative to where they called from (CRYPTO_BASE_DIR,
# a PYTHON such as venv/bin/python) are made absolute first, so they keep meaning that place.
if [[ -n ${CRYPTO_BASE_DIR:-} && $CRYPTO_BASE_DIR != /* && $CRYPTO_BASE_DIR != "~"* ]]; then
  export CRYPTO_BASE_DIR="$PWD/$CRYPTO_BASE_DIR"
fi
PYTHON=${PYTHON:-python}
if [[ $PYTHON == */* && $PYTHON != /* ]]; then
  PYTHON="$PWD/$PYTHON"
fi
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
status=0
run() { "$PYTHON" bhds.py "$@" || status=1; }
