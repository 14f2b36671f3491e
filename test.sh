#!/usr/bin/env bash
# Runs pyspeaker's test suite (creates the Python environment on first use).
#   ./test.sh                 fast suite (what CI runs; includes a small end-to-end recipe run)
#   ./test.sh -m slow         only the slow cases;  ./test.sh -m ''  everything
#   ./test.sh tests/test_metrics.py -k eer    any pytest arguments
set -euo pipefail
cd "$(dirname "$0")"
. ./path.sh
exec python -m pytest "$@"
