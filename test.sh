#!/usr/bin/env bash
# Runs pyspeaker's test suite (creates the Python environment on first use).
#   ./test.sh                 fast suite (what CI runs; includes a small end-to-end recipe run)
#   ./test.sh -m slow         only the slow cases;  ./test.sh -m ''  everything
#   ./test.sh tests/test_metrics.py -k eer    any pytest arguments
set -euo pipefail
cd "$(dirname "$0")"
. ./path.sh
# test-only extras (requirements-test.txt); if they cannot be installed the tests that need them skip
python -c 'import onnxruntime, onnx' 2>/dev/null \
  || python -m pip install --quiet --disable-pip-version-check -r requirements-test.txt 2>&1 \
     | grep -v 'is ignored: it is neither' >&2 \
  || true
exec python -m pytest "$@"
