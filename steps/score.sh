#!/usr/bin/env bash
# Stage 5: score a trial list into <scores-dir>/scores.txt (+ scores.json saying how).
. "$(dirname "$0")/common.sh"
backend_dir=""; score_norm=none; top_n=300; test_embeddings=""
help_message="Usage: $0 [--backend-dir DIR] [--score-norm none|snorm|asnorm] [--top-n N] [--test-embeddings DIR] <embeddings-dir> <trials> <scores-dir>
  <embeddings-dir> holds the enroll side, and the test side too unless --test-embeddings gives it.
See 'pyspeaker score --help'."
. "$_steps_root/utils/parse_options.sh"
[ $# -eq 3 ] || { echo "$help_message" >&2; exit 1; }
backend_args=()
[ -n "$backend_dir" ] && backend_args=(--backend-dir "$backend_dir")
[ -n "$test_embeddings" ] && backend_args+=(--test-embeddings "$test_embeddings")
mkdir -p "$3"
log "reads $1${test_embeddings:+ and $test_embeddings} and $2, writes $3/scores.txt (back-end ${backend_dir:-cosine}, norm $score_norm)"
pyspeaker score --embeddings "$1" --trials "$2" --out "$3/scores.txt" "${backend_args[@]}" \
  --score-norm "$score_norm" --top-n "$top_n"
