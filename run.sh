#!/usr/bin/env bash
# pyspeaker recipe driver (Kaldi egs style). Each stage is one line of intent calling steps/*.sh.
#
#   0  data       corpus + Kaldi data dirs (recipe-specific: recipes/<recipe>/config.sh)
#   1  features   steps/make_features.sh   -> features/<feat-id>/<set>/
#   2  train      steps/train.sh           -> exp/<name>/{config.yaml,train.log,metrics.tsv,checkpoints/}
#   3  embed      steps/extract.sh         -> <system>/embeddings/<set>/xvector.{h5,scp,ark}
#   4  backend    steps/train_backend.sh   -> <system>/backend/<backend>/
#   5  score      steps/score.sh           -> <system>/scores/<trials>/<backend>_<norm>/scores.txt
#   6  metrics    steps/compute_metrics.sh -> <system>/results/<trials>/<backend>_<norm>/{metrics.json,det.png,hist.png}
#
# Stages 4-6 run for every back-end in $backends and score normalisation in $score_norms.
# Stages 3-6 run for two systems: the trained model (<system> = exp/<name>) and, for comparison,
# the same network at its random initialisation (<system> = exp/<name>/untrained).
set -euo pipefail
cd "$(dirname "$0")"
. utils/lib.sh

recipe=mini
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[i]}" in --recipe) recipe=${args[i+1]:-} ;; --recipe=*) recipe=${args[i]#*=} ;; esac
done
[ -f "recipes/$recipe/config.sh" ] || die "unknown recipe '$recipe' (have: $(ls recipes | tr '\n' ' '))"

stage=0
stop_stage=6
force=false        # true: redo stages even when their outputs are complete
nj=2               # parallel jobs for data preparation and features
cmd=local          # job launcher for --nj jobs: local, or e.g. "srun --ntasks=1"
validate_opts=""   # options of 'pyspeaker validate-data' at stage 0 (e.g. --no-check-audio)
. "recipes/$recipe/config.sh"

help_message="Usage: ./run.sh [--recipe NAME] [--stage N] [--stop-stage M] [--force true] [--<setting> VALUE ...]

Runs the speaker-verification recipe stages N..M (default 0..6):
  0 data, 1 features, 2 train, 3 embeddings, 4 back-end, 5 score, 6 metrics.
A stage whose outputs are complete (for the same settings) is skipped; --force true redoes it.
Recipes: $(ls recipes | tr '\n' ' ')(default mini). Settings of recipe '$recipe' (recipes/$recipe/config.sh):
$(grep -E '^[a-z_][a-z0-9_]*=' "recipes/$recipe/config.sh" | sed -E 's/ +#.*//' |
  while IFS='=' read -r name value; do echo "  --${name//_/-} $value"; done)
  --nj $nj  --cmd $cmd"
. utils/parse_options.sh
[ $# -eq 0 ] || die "unexpected argument '$1' (see ./run.sh --help)"

. ./path.sh
run_stage() { [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; }
exp=exp/$exp_name
trials_name=$(basename "$trials")
systems="trained:$exp:checkpoints/final.pt untrained:$exp/untrained:checkpoints/init.pt"
log "recipe $recipe, stages $stage..$stop_stage"

if run_stage 0; then
  log "stage 0: corpus and data dirs"
  fp=$(prepare_data_inputs | fingerprint "$(cat)")
  if is_done data/.done.prepare "$fp"; then
    log "stage 0: data/ is up to date, skipping"
  else
    prepare_data >&2   # stdout of run.sh carries only the results table
    # shellcheck disable=SC2086
    for set in "$train_set" "$test_set"; do pyspeaker validate-data $validate_opts "data/$set" >&2; done
    mark_done data/.done.prepare "$fp"
  fi
fi

feat_store() {  # the store path of a set: derived from the feature config, never typed
  # shellcheck disable=SC2086
  pyspeaker make-features --data-dir "data/$1" --conf "$feat_conf" $feat_opts --print-path
}

if run_stage 1; then
  log "stage 1: features ($feat_conf $feat_opts)"
  for set in "$train_set" "$test_set"; do
    steps/make_features.sh --conf "$feat_conf" --opts "$feat_opts$([ "$force" = true ] && echo " --force")" \
      --nj "$nj" --cmd "$cmd" "data/$set" features >/dev/null
  done
fi

if run_stage 2; then
  log "stage 2: training $exp"
  train_store=$(feat_store "$train_set")
  fp=$(fingerprint "$(file_fingerprint "$train_config")" "$train_overrides" "$train_store" \
       "$(file_fingerprint "$train_store/manifest.json")")
  if is_done "$exp/.done.train" "$fp" && [ -f "$exp/checkpoints/final.pt" ]; then
    log "stage 2: $exp is trained with these settings, skipping"
  else
    steps/train.sh --config "$train_config" --overrides "$train_overrides" "$train_store" "$exp"
    mark_done "$exp/.done.train" "$fp"
  fi
  log "training curve: $exp/metrics.tsv"
fi

report_args=()
for sys in $systems; do
  IFS=: read -r sys_name sys_dir ckpt <<< "$sys"
  ckpt=$exp/$ckpt
  ckpt_fp=$(file_fingerprint "$ckpt")
  if run_stage 3; then
    log "stage 3: embeddings ($sys_name model)"
    for set in "$train_set" "$test_set"; do
      out=$sys_dir/embeddings/$set
      if is_done "$out/.done" "$ckpt_fp"; then log "stage 3: $out is up to date, skipping"; continue; fi
      steps/extract.sh "$ckpt" "$(feat_store "$set")" "$out"
      mark_done "$out/.done" "$ckpt_fp"
    done
  fi
  if run_stage 4; then
    for be in $backends; do
      log "stage 4: $be back-end ($sys_name model)"
      steps/train_backend.sh --backend "$be" "$sys_dir/embeddings/$train_set" "data/$train_set/utt2spk" \
        "$sys_dir/backend/$be"
    done
  fi
  for be in $backends; do
    for norm in $score_norms; do
      tag=${be}_$norm
      if run_stage 5; then
        log "stage 5: scoring $trials with $be, score norm $norm ($sys_name model)"
        steps/score.sh --backend-dir "$sys_dir/backend/$be" --score-norm "$norm" --top-n "$asnorm_top_n" \
          "$sys_dir/embeddings/$test_set" "$trials" "$sys_dir/scores/$trials_name/$tag"
      fi
      if run_stage 6; then
        log "stage 6: metrics of $trials_name/$tag ($sys_name model)"
        steps/compute_metrics.sh "$sys_dir/scores/$trials_name/$tag/scores.txt" "$trials" \
          "$sys_dir/results/$trials_name/$tag" >&2
      fi
      report_args+=(--system "$sys_name=$sys_dir/results/$trials_name/$tag/metrics.json")
    done
  done
done

if run_stage 6; then
  log "results on $trials (the trained model vs. the same network untrained), also in $exp/RESULTS.md:"
  pyspeaker report --out "$exp/RESULTS.md" "${report_args[@]}"
fi
log "done"
