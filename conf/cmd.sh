# Job launchers of run.sh's stages (Kaldi's cmd.sh): edit them for your site. Each is one of
#   local                      processes on this machine
#   "slurm [sbatch options]"   Slurm jobs: one per --nj job (stages 1 and 3), each logging to its job
#                              log; training (stage 2) is one job of --nnodes nodes (steps/train.sh)
#   any other command line     a launcher prefix put before each job (e.g. "srun --ntasks=1")
# run.sh --cmd VALUE sets all three for one run; --feat-cmd, --train-cmd, --extract-cmd one each.
feat_cmd=local      # stage 1: make-features, --nj jobs
train_cmd=local     # stage 2: training
extract_cmd=local   # stage 3: embeddings, --nj jobs

# Slurm examples (partitions, memory and time limits are site-specific):
# feat_cmd="slurm -p cpu --cpus-per-task=1 --mem=4G --time=4:00:00"
# train_cmd="slurm -p gpu --time=3-00:00:00"     # with train_overrides' settings; GPUs: steps/train.sh --ngpu
# extract_cmd="slurm -p gpu --gpus=1 --mem=16G --time=4:00:00"
