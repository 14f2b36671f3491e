#!/usr/bin/env bash
# Stage 3: one embedding per utterance (xvector.h5 + xvector.scp/ark).
. "$(dirname "$0")/common.sh"
help_message="Usage: $0 <checkpoint> <feature-store> <out-dir>"
. "$_steps_root/utils/parse_options.sh"
[ $# -eq 3 ] || { echo "$help_message" >&2; exit 1; }
log "reads $1 and $2, writes $3"
pyspeaker extract --checkpoint "$1" --features "$2" --out "$3"
