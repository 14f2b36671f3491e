#!/usr/bin/env bash
# Runs pyspeaker's test suite (creates the Python environment on first use).
#   ./test.sh                 fast suite (what CI runs; includes a small end-to-end recipe run)
#   ./test.sh -m slow         only the slow cases;  ./test.sh -m ''  everything
#   ./test.sh tests/test_metrics.py -k eer    any pytest arguments
set -euo pipefail
cd "$(dirname "$0")"
. ./path.sh
# test-only extras (requirements-test.txt); if they cannot be installed the tests that need them skip
python - <<'PY' 2>/dev/null || {
import importlib.util, sys
import pkg_resources  # noqa: F401  (webrtcvad, under resemblyzer, needs it)
sys.exit(any(importlib.util.find_spec(m) is None
             for m in ("onnx", "onnxruntime", "resemblyzer", "speechbrain", "wespeaker")))
PY
  python -m pip install --quiet --disable-pip-version-check -r requirements-test.txt -c requirements.txt 2>&1 \
     | grep -v 'is ignored: it is neither' >&2 || true
  python -m pip install --quiet --disable-pip-version-check --no-deps wespeaker-unofficial==0.0.2 2>&1 \
     | grep -v 'is ignored: it is neither' >&2 || true
}
exec python -m pytest "$@"
