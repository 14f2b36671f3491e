#!/usr/bin/env bash
# Stage 2: train an embedding network on a feature store (or on audio with --data-dir true).
# With --ngpu N (N GPUs per node) or --nproc N (N CPU processes, --ngpu 0) it launches torchrun:
# distributed data-parallel training, NCCL between GPUs, gloo between CPU processes; several
# nodes with --nnodes M --node-rank R --master-addr A --master-port P (run it once per node).
# With --cmd "slurm [sbatch options]" it submits itself as one Slurm job of --nnodes nodes and waits:
# srun starts it once per node, where Slurm gives the node rank and the master (the first node).
. "$(dirname "$0")/common.sh"
config=conf/resnet34l_amsoftmax.yaml; overrides=""
ngpu=""            # GPUs per node (0: CPU); empty: one process, CUDA if present
nproc=1            # CPU processes when --ngpu 0
nnodes=1; node_rank=0; master_addr=127.0.0.1; master_port=29500
resume=no          # no | auto | yes: continue from the last epoch checkpoint in <exp-dir>
data_dir=false     # true: <feature-store> is a Kaldi data dir of audio (features on the fly)
cmd=local          # local | "slurm [sbatch options]" | a launcher prefix (see pyspeaker/parallel.py)
slurm_step=""      # internal: "batch" (the Slurm job's script) or "node" (one srun task per node)
help_message="Usage: $0 [options] <feature-store|data-dir> <exp-dir>
Writes <exp-dir>/{config.yaml,train.log,metrics.tsv,checkpoints/}. See 'pyspeaker train --help'.
Options:
  --config F.yaml         training config (default $config)
  --overrides 'k=v ...'   config overrides (pyspeaker train --set)
  --data-dir true         the first argument is a data dir of audio, not a feature store
  --resume no|auto|yes    continue an interrupted run (default $resume)
  --ngpu N                N GPUs per node through torchrun (DDP, NCCL); --ngpu 0 --nproc N: N CPU processes (gloo)
  --nnodes M --node-rank R --master-addr A --master-port P   multi-node (default $nnodes node)
  --cmd 'slurm [sbatch options]'   one Slurm job of --nnodes nodes (one task per node, --ngpu GPUs or
                          --nproc CPUs each), multi-node through Slurm's node list; log <exp-dir>/log/train_job.log
  --cmd PREFIX            run under a launcher prefix (e.g. 'srun -p gpu --gres=gpu:1'); default $cmd"
opts=("$@")
. "$_steps_root/utils/parse_options.sh"
[ $# -eq 2 ] || { echo "$help_message" >&2; exit 1; }
opts=("${opts[@]:0:${#opts[@]}-2}")   # the options alone, to start this script again as a job

if [ "$slurm_step" = batch ]; then
  # one task per node; srun does not pass sbatch's --cpus-per-task on to its tasks by itself
  exec srun --kill-on-bad-exit=1 --ntasks-per-node=1 ${SLURM_CPUS_PER_TASK:+--cpus-per-task=$SLURM_CPUS_PER_TASK} \
    bash "$_steps_root/steps/train.sh" "${opts[@]}" --slurm-step node "$1" "$2"
elif [ "$slurm_step" = node ]; then
  nnodes=$SLURM_NNODES; node_rank=$SLURM_NODEID
  master_addr=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
  log "slurm job $SLURM_JOB_ID: node $node_rank of $nnodes ($(hostname -s)), master $master_addr:$master_port"
elif [ "$cmd" != local ]; then
  mkdir -p "$2/log"
  resources=(--nodes="$nnodes" --ntasks-per-node=1)   # those of --cmd come later and win
  if [ -n "$ngpu" ] && [ "$ngpu" -gt 0 ]; then resources+=(--gpus-per-node="$ngpu")
  elif [ -n "$ngpu" ]; then resources+=(--cpus-per-task="$nproc"); fi
  step=(--cmd local); [[ $cmd == slurm || $cmd == "slurm "* ]] && step=(--slurm-step batch)
  log "training through --cmd '$cmd' ($nnodes node(s)); job log $2/log/train_job.log"
  # exec: a SIGTERM to this script reaches the launcher, which cancels the Slurm job
  exec python -m pyspeaker.parallel --cmd "$cmd" --log "$2/log/train_job.log" "${resources[@]/#/--slurm-option=}" \
    -- bash "$_steps_root/steps/train.sh" "${opts[@]}" "${step[@]}" "$1" "$2"
fi
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
