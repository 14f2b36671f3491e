#!/usr/bin/env bash
# Stage 3: one embedding per utterance (xvector.h5 + xvector.scp/ark).
. "$(dirname "$0")/common.sh"
nj=1; cmd=local; data_dir=false
help_message="Usage: $0 [--nj N] [--cmd CMD] [--data-dir true] <checkpoint> <feature-store|data-dir> <out-dir>
  --nj N           parallel jobs, one log each in <out-dir>/../log/ (default $nj)
  --cmd CMD        their launcher: local, or \"slurm [sbatch options]\" (default $cmd; see conf/cmd.sh)
  --data-dir true  the second argument is a data dir of audio: the model computes its own input
                   (pyspeaker embed; for models trained from audio, waveform front-ends included)"
. "$_steps_root/utils/parse_options.sh"
[ $# -eq 3 ] || { echo "$help_message" >&2; exit 1; }
log "reads $1 and $2, writes $3 (nj=$nj)"
if [ "$data_dir" = true ]; then
  pyspeaker embed --model "$1" --data-dir "$2" --out "$3"
else
  pyspeaker extract --checkpoint "$1" --features "$2" --out "$3" --nj "$nj" --cmd "$cmd"
fi
