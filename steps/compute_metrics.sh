#!/usr/bin/env bash
# Stage 6: EER / minDCF (metrics.json), DET curve and score histogram.
. "$(dirname "$0")/common.sh"
p_target="0.01 0.05"
help_message="Usage: $0 [--p-target '0.01 0.05'] <scores.txt> <trials> <results-dir>"
. "$_steps_root/utils/parse_options.sh"
[ $# -eq 3 ] || { echo "$help_message" >&2; exit 1; }
pt_args=()
for p in $p_target; do pt_args+=(--p-target "$p"); done
mkdir -p "$3"
log "reads $1 and $2, writes $3/{metrics.json,det.png,hist.png}"
pyspeaker compute-metrics --scores "$1" --trials "$2" "${pt_args[@]}" --out "$3/metrics.json" \
  --det "$3/det.png" --hist "$3/hist.png"
