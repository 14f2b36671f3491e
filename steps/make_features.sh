#!/usr/bin/env bash
# Stage 1: features of one data dir into the feature store (features/<feat-id>/<set>/).
. "$(dirname "$0")/common.sh"
conf=conf/fbank.conf; opts=""; nj=1; cmd=local
help_message="Usage: $0 [--conf F] [--opts 'make-features options'] [--nj N] [--cmd CMD] <data-dir> <features-root>
Prints the store directory on stdout. Options are those of 'pyspeaker make-features --help';
--cmd: local, or \"slurm [sbatch options]\" (see conf/cmd.sh)."
. "$_steps_root/utils/parse_options.sh"
[ $# -eq 2 ] || { echo "$help_message" >&2; exit 1; }
log "reads $1 ($conf $opts), writes under $2 (nj=$nj)"
# shellcheck disable=SC2086
pyspeaker make-features --data-dir "$1" --conf "$conf" $opts --features-root "$2" --nj "$nj" --cmd "$cmd"
