#!/usr/bin/env bash
# Sourced by path.sh: make sure a Python environment with pyspeaker's pinned requirements exists,
# then put it first on PATH. Creates <repo>/.venv on first use (or $PYSPEAKER_VENV), re-installs when
# requirements.txt or pyproject.toml change, and reuses an already active environment that imports
# everything we need (set PYSPEAKER_USE_ACTIVE_ENV=0 to never do that).

_pyspeaker_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
_pyspeaker_venv=${PYSPEAKER_VENV:-$_pyspeaker_root/.venv}
_pyspeaker_stamp_want=$(cat "$_pyspeaker_root/requirements.txt" "$_pyspeaker_root/pyproject.toml" | sha1sum | cut -c1-16)

_pyspeaker_active_ok() {
  [ "${PYSPEAKER_USE_ACTIVE_ENV:-1}" = 1 ] && [ -n "${VIRTUAL_ENV:-}" ] \
    && [ "$VIRTUAL_ENV" != "$_pyspeaker_venv" ] \
    && python -c 'import torch, torchaudio, h5py, kaldiio, soundfile, pyarrow, click, scipy, yaml, tqdm, matplotlib, pytest, pyspeaker' 2>/dev/null
}

if _pyspeaker_active_ok; then
  : # an active environment already has everything
elif [ "$(cat "$_pyspeaker_venv/.pyspeaker-stamp" 2>/dev/null)" != "$_pyspeaker_stamp_want" ]; then
  (
    set -euo pipefail
    mkdir -p "$(dirname "$_pyspeaker_venv")"
    exec 9>"$_pyspeaker_venv.lock"
    flock 9   # two first runs at once must not build the same environment twice
    if [ "$(cat "$_pyspeaker_venv/.pyspeaker-stamp" 2>/dev/null)" = "$_pyspeaker_stamp_want" ]; then exit 0; fi
    py=${PYTHON:-python3}
    "$py" -c 'import sys; assert sys.version_info >= (3, 11), "pyspeaker needs Python >= 3.11"' || exit 1
    echo "$(date '+%Y-%m-%d %H:%M:%S') [setup] creating Python environment in $_pyspeaker_venv (first use; about 2 minutes)" >&2
    [ -x "$_pyspeaker_venv/bin/python" ] || "$py" -m venv "$_pyspeaker_venv"
    "$_pyspeaker_venv/bin/python" -m pip install --quiet --disable-pip-version-check \
      -r "$_pyspeaker_root/requirements.txt" 2>&1 | grep -v 'is ignored: it is neither' >&2 || true
    "$_pyspeaker_venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation \
      -e "$_pyspeaker_root" 2>&1 | grep -v 'is ignored: it is neither' >&2 || true
    "$_pyspeaker_venv/bin/python" -c 'import torch, torchaudio, h5py, kaldiio, soundfile, pyarrow, pyspeaker' \
      || { echo "[setup] environment in $_pyspeaker_venv is incomplete: see pip's messages above" >&2; exit 1; }
    echo "$_pyspeaker_stamp_want" > "$_pyspeaker_venv/.pyspeaker-stamp"
  ) || return 1 2>/dev/null || exit 1
  export PATH="$_pyspeaker_venv/bin:$PATH"
  export VIRTUAL_ENV="$_pyspeaker_venv"
else
  export PATH="$_pyspeaker_venv/bin:$PATH"
  export VIRTUAL_ENV="$_pyspeaker_venv"
fi
unset -f _pyspeaker_active_ok
