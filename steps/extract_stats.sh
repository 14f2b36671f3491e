#!/usr/bin/env bash
# Stage 3 of the non-neural baseline system: per-utterance feature mean + std (no network).
. "$(dirname "$0")/common.sh"
help_message="Usage: $0 <feature-store> <out-dir>
Writes <out-dir>/xvector.{h5,scp,ark}: mean and standard deviation of the features of each utterance."
. "$_steps_root/utils/parse_options.sh"
[ $# -eq 2 ] || { echo "$help_message" >&2; exit 1; }
log "reads $1, writes $2"
pyspeaker extract-stats --features "$1" --out "$2"
