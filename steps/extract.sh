#!/usr/bin/env bash
# Stage 3: one embedding per utterance (xvector.h5 + xvector.scp/ark).
. "$(dirname "$0")/common.sh"
nj=1; cmd=local
help_message="Usage: $0 [--nj N] [--cmd CMD] <checkpoint> <feature-store> <out-dir>
  --nj N      parallel jobs, one log each in <out-dir>/../log/ (default $nj)
  --cmd CMD   their launcher: local, or \"slurm [sbatch options]\" (default $cmd; see conf/cmd.sh)"
. "$_steps_root/utils/parse_options.sh"
[ $# -eq 3 ] || { echo "$help_message" >&2; exit 1; }
log "reads $1 and $2, writes $3 (nj=$nj)"
pyspeaker extract --checkpoint "$1" --features "$2" --out "$3" --nj "$nj" --cmd "$cmd"
