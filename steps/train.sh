#!/usr/bin/env bash
# Stage 2: train an embedding network on a feature store.
. "$(dirname "$0")/common.sh"
config=conf/resnet34l_amsoftmax.yaml; overrides=""
help_message="Usage: $0 [--config F.yaml] [--overrides 'key=value ...'] <feature-store> <exp-dir>
Writes <exp-dir>/{config.yaml,train.log,metrics.tsv,checkpoints/}. See 'pyspeaker train --help'."
. "$_steps_root/utils/parse_options.sh"
[ $# -eq 2 ] || { echo "$help_message" >&2; exit 1; }
set_args=()
for kv in $overrides; do set_args+=(--set "$kv"); done
log "reads $1 with $config ${overrides:+($overrides)}, writes $2"
pyspeaker train --config "$config" --features "$1" --exp-dir "$2" "${set_args[@]}" >/dev/null
