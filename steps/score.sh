#!/usr/bin/env bash
# Stage 5: score a trial list into <scores-dir>/scores.txt.
. "$(dirname "$0")/common.sh"
backend_dir=""
help_message="Usage: $0 [--backend-dir DIR] <embeddings-dir> <trials> <scores-dir>"
. "$_steps_root/utils/parse_options.sh"
[ $# -eq 3 ] || { echo "$help_message" >&2; exit 1; }
mean_args=()
[ -n "$backend_dir" ] && mean_args=(--mean "$backend_dir/mean.npy")
mkdir -p "$3"
log "reads $1 and $2, writes $3/scores.txt"
pyspeaker score --embeddings "$1" --trials "$2" --out "$3/scores.txt" "${mean_args[@]}"
