# Source me: sets up (on first use) and activates pyspeaker's Python environment, and puts the
# recipe's steps/ and utils/ on PATH.  Usage:  . ./path.sh
PYSPEAKER_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export PYSPEAKER_ROOT
. "$PYSPEAKER_ROOT/utils/setup_env.sh" || { echo "path.sh: could not set up the Python environment" >&2; return 1 2>/dev/null || exit 1; }
export PATH="$PYSPEAKER_ROOT/steps:$PYSPEAKER_ROOT/utils:$PATH"
export PYTHONUNBUFFERED=1
# Two cores are the norm here; torch would otherwise start one thread per core per process.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)}
