#!/usr/bin/env bash
# Stage 2: train an embedding network on a feature store (or on audio with --data-dir true).
# With --ngpu N (N GPUs per node) or --nproc N (N CPU processes, --ngpu 0) it launches torchrun:
# distributed data-parallel training, NCCL between GPUs, gloo between CPU processes; several
# nodes with --nnodes M --node-rank R --master-addr A --master-port P (run it once per node).
. "$(dirname "$0")/common.sh"
config=conf/resnet34l_amsoftmax.yaml; overrides=""
ngpu=""            # GPUs per node (0: CPU); empty: one process, CUDA if present
nproc=1            # CPU processes when --ngpu 0
nnodes=1; node_rank=0; master_addr=127.0.0.1; master_port=29500
resume=no          # no | auto | yes: continue from the last epoch checkpoint in <exp-dir>
data_dir=false     # true: <feature-store> is a Kaldi data dir of audio (features on the fly)
help_message="Usage: $0 [options] <feature-store|data-dir> <exp-dir>
Writes <exp-dir>/{config.yaml,train.log,metrics.tsv,checkpoints/}. See 'pyspeaker train --help'.
Options:
  --config F.yaml         training config (default $config)
  --overrides 'k=v ...'   config overrides (pyspeaker train --set)
  --data-dir true         the first argument is a data dir of audio, not a feature store
  --resume no|auto|yes    continue an interrupted run (default $resume)
  --ngpu N                N GPUs per node through torchrun (DDP, NCCL); --ngpu 0 --nproc N: N CPU processes (gloo)
  --nnodes M --node-rank R --master-addr A --master-port P   multi-node (default $nnodes node)"
. "$_steps_root/utils/parse_options.sh"
[ $# -eq 2 ] || { echo "$help_message" >&2; exit 1; }
set_args=()
for kv in $overrides; do set_args+=(--set "$kv"); done
input=(--features "$1")
[ "$data_dir" = true ] && input=(--data-dir "$1")
args=(train --config "$config" "${input[@]}" --exp-dir "$2" --resume "$resume" "${set_args[@]}")

procs=0
if [ -n "$ngpu" ]; then
  procs=$ngpu
  if [ "$ngpu" -eq 0 ]; then procs=$nproc; args+=(--set train.device=cpu); fi
fi
log "reads $1 with $config ${overrides:+($overrides)}, writes $2"
if [ "$procs" -gt 1 ] || [ "$nnodes" -gt 1 ]; then
  command -v torchrun >/dev/null || die "torchrun not found (it comes with PyTorch)"
  if [ "$nnodes" -gt 1 ]; then
    launch=(--nnodes "$nnodes" --node-rank "$node_rank" --master-addr "$master_addr" --master-port "$master_port")
  else
    launch=(--standalone --nnodes 1)
  fi
  # CPU processes share the cores: one thread each unless OMP_NUM_THREADS says otherwise
  [ "${ngpu:-0}" -eq 0 ] && export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
  log "torchrun: $nnodes node(s) x $procs processes ($([ "${ngpu:-0}" -gt 0 ] && echo "GPUs, NCCL" || echo "CPU, gloo"))"
  torchrun "${launch[@]}" --nproc-per-node "$procs" -m pyspeaker "${args[@]}" >/dev/null
else
  pyspeaker "${args[@]}" >/dev/null
fi
