#!/usr/bin/env bash
# Stage 4: train the scoring back-end on training-set embeddings.
. "$(dirname "$0")/common.sh"
backend=cosine
help_message="Usage: $0 [--backend cosine] <train-embeddings-dir> <backend-dir>"
. "$_steps_root/utils/parse_options.sh"
[ $# -eq 2 ] || { echo "$help_message" >&2; exit 1; }
log "reads $1, writes $2 (backend $backend)"
pyspeaker train-backend --backend "$backend" --embeddings "$1" --out "$2"
