#!/usr/bin/env bash
# pyspeaker recipe driver (Kaldi egs style). Each stage is one line of intent calling steps/*.sh.
#
#   0  data       corpus + Kaldi data dirs (recipe-specific: recipes/<recipe>/config.sh); with
#                 --valid-speakers N (or --valid-utterances N) also pyspeaker split-valid -> data/<train>_valid
#                 (N speakers, or N utterances of every speaker, + trials) and data/<train>_sub (the rest,
#                 which stages 1-7 then train on)
#   1  features   steps/make_features.sh   -> features/<feat-id>/<set>/
#   2  train      steps/train.sh           -> exp/<name>/{config.yaml,train.log,metrics.tsv,checkpoints/}
#   3  embed      steps/extract.sh         -> <system>/embeddings/<set>/xvector.{h5,scp,ark}
#                 (baseline system: steps/extract_stats.sh, feature mean + std, no network)
#   4  backend    steps/train_backend.sh   -> <system>/backend/<backend>/
#   5  score      steps/score.sh           -> <system>/scores/<trials>/<backend>_<norm>/scores.txt
#   6  metrics    steps/compute_metrics.sh -> <system>/results/<trials>/<backend>_<norm>/{metrics.json,det.png,hist.png}
#   7  calibrate  (with a validation set) pyspeaker calibrate on each system's validation scores
#                 -> <system>/calibration/<backend>_<norm>/calibration.json, <system>/{scores,results}/<trials>/<backend>_<norm>_cal/;
#                 pyspeaker fuse of the systems, weights learnt on the validation trials -> exp/<name>/fusion/;
#                 the validation metrics of every system (the fusion's out of fold: 5-fold cross-validation)
#                 -> <system>/results/<train>_valid/<backend>_<norm>/, and the system they select is marked
#                 '*' in RESULTS.md: the lowest validation minDCF(0.01), then EER; never the test trials
#
# With a validation set, stage 2 validates every epoch (metrics.tsv: valid_eer), stages 3 and 5 also
# embed data/<train>_valid and score its trials (<system>/scores/<train>_valid/), and the results
# table lists the calibrated systems (actual DCF, Cllr) and the fusion system.
#
# Stages 3-6 run for each system in $systems: "trained" (<system> = exp/<name>), "untrained" (the
# same network at its random initialisation, exp/<name>/untrained), "baseline" (statistics of
# $baseline_feat_conf features, exp/<name>/baseline) and "pretrained" (the model dir $pretrained,
# e.g. from 'pyspeaker import-model', embedding the data dirs' audio; exp/<name>/pretrained); stages 4-6 for every back-end in $backends
# and score normalisation in $score_norms. A recipe with several protocols (fsdd: open and closed
# set) runs stages 1-6 once per protocol in $protocols, with exp/<name>/<protocol> as exp/<name>.
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
stop_stage=7
force=false        # true: redo stages even when their outputs are complete
nj=2               # parallel jobs for data preparation, features and embeddings
cmd=""             # one job launcher for stages 1-3 (local, "slurm [sbatch options]"); empty: conf/cmd.sh's
. conf/cmd.sh      # feat_cmd, train_cmd, extract_cmd: the site's launchers (--feat-cmd ... override one)
train_from=features   # stages 2-3 read: features (the stage-1 store) or audio (the data dir: features on
                      # the fly, or the model's waveform front-end, as conf/resnet34v2_softmaxproto.yaml)
train_opts=""      # more steps/train.sh options, e.g. "--ngpu 4 --nnodes 2" (DDP; multi-node through Slurm)
validate_opts=""   # options of 'pyspeaker validate-data' at stage 0 (e.g. --no-check-audio)
protocols=""       # several protocols: "{protocol}" in set names and trials is replaced by each
systems="trained untrained"   # systems of stages 3-6: trained, untrained, baseline, pretrained
baseline_feat_conf=""         # features of the baseline system (e.g. conf/mfcc_8k.conf)
own_data_dirs=true            # stage 0 writes data/<set> (false: it links the user's dirs, recipe datadir)
pretrained=""                 # model of the pretrained system: an import-model dir, experiment dir or checkpoint
valid_speakers=0              # N > 0: hold out N training speakers as a validation set (stage 0), which
                              # validates each epoch and calibrates and fuses the systems (stage 7)
valid_utterances=0            # N > 0: instead, hold out N utterances of every training speaker (closed-set
                              # validation, for corpora with too few speakers to spare)
valid_seed=0                  # which speakers (utterances) and trials are held out
valid_max_trials=20000        # at most this many validation trials (a seeded sample of the pairs)
select=last                   # the final model: last epoch, best by validation EER, or average of the last epochs
train_minutes=""              # stop training after M minutes (train.max_minutes); empty: no limit
noise_dir=""                  # MUSAN-layout noise for augmentation (augment.noise_dir; needs --train-from audio)
rir_dir=""                    # room impulse responses for augmentation (augment.rir_dir; needs --train-from audio)
. "recipes/$recipe/config.sh"

help_message="Usage: ./run.sh [--recipe NAME] [--stage N] [--stop-stage M] [--force true] [--<setting> VALUE ...]

Runs the speaker-verification recipe stages N..M (default 0..7):
  0 data, 1 features, 2 train, 3 embeddings, 4 back-end, 5 score, 6 metrics, 7 calibration + fusion
  (stage 7 needs a validation set: --valid-speakers N or --valid-utterances N; it also marks the best system on
  the validation trials).
A stage whose outputs are complete (for the same settings) is skipped; --force true redoes it.
Recipes: $(ls recipes | tr '\n' ' ')(default mini). Settings of recipe '$recipe' (recipes/$recipe/config.sh):
$(grep -E '^[a-z_][a-z0-9_]*=' "recipes/$recipe/config.sh" | sed -E 's/ +#.*//' |
  while IFS='=' read -r name value; do echo "  --${name//_/-} $value"; done)
  --nj $nj  --systems \"$systems\"  --train-from $train_from  --train-opts \"$train_opts\"
  --valid-speakers N  hold out N training speakers (seeded: --valid-seed $valid_seed, at most --valid-max-trials
                    $valid_max_trials trials): validation EER per epoch, calibrated systems and their fusion
  --valid-utterances N  instead, hold out N utterances of every training speaker (for corpora with too few
                    speakers to spare: the validation speakers are then seen in training)
  --select last|best|average  the final model: last epoch, best by validation EER, average of the last (default $select)
  --train-minutes M  stop training after M minutes (train.max_minutes); the schedules run over the budget, or
                    over the epochs when train.max_epoch ends training first
  --noise-dir DIR --rir-dir DIR  augmentation (MUSAN layout; RIR WAVs or a data dir); need --train-from audio
  --pretrained DIR  model of the 'pretrained' system (--systems \"pretrained ...\"): a 'pyspeaker import-model' dir,
                    an experiment dir or a checkpoint; stage 3 embeds the data dirs' audio with it
  --cmd LAUNCHER   for stages 1-3: local, or \"slurm [sbatch options]\" (e.g. --cmd \"slurm -p cpu --mem=4G\");
                   default from conf/cmd.sh: --feat-cmd \"$feat_cmd\" --train-cmd \"$train_cmd\" --extract-cmd \"$extract_cmd\""
. utils/parse_options.sh
enroll_set=""      # a recipe with separate enroll utterances sets this (data/<enroll_set>)
if declare -F configure_recipe >/dev/null; then configure_recipe; fi   # settings derived from the options
if [ -n "$cmd" ]; then feat_cmd=$cmd; train_cmd=$cmd; extract_cmd=$cmd; fi
[ $# -eq 0 ] || die "unexpected argument '$1' (see ./run.sh --help)"
case $train_from in features|audio) ;; *) die "--train-from must be features or audio, not '$train_from'" ;; esac
[[ $valid_speakers =~ ^[0-9]+$ ]] || die "--valid-speakers must be a number of speakers (0: none), not '$valid_speakers'"
[[ $valid_utterances =~ ^[0-9]+$ ]] ||
  die "--valid-utterances must be a number of utterances per speaker (0: none), not '$valid_utterances'"
[ "$valid_speakers" -eq 0 ] || [ "$valid_utterances" -eq 0 ] ||
  die "--valid-speakers $valid_speakers and --valid-utterances $valid_utterances: hold out speakers or utterances, not both"
validating=false; [ "$valid_speakers" -gt 0 ] || [ "$valid_utterances" -gt 0 ] && validating=true
if [ "$valid_speakers" -gt 0 ]; then valid_what="$valid_speakers speakers"; split_opt=(--num-speakers "$valid_speakers")
else valid_what="$valid_utterances utterances of every speaker"; split_opt=(--num-utterances "$valid_utterances"); fi
case $select in last|best|average) ;; *) die "--select must be last, best or average, not '$select'" ;; esac
[ "$select" != best ] || $validating ||
  die "--select best picks the model by validation EER: it needs --valid-speakers N or --valid-utterances N"
[ -z "$train_minutes" ] || [[ $train_minutes =~ ^[0-9]+([.][0-9]+)?$ ]] ||
  die "--train-minutes must be a number of minutes, not '$train_minutes'"
if [ -n "$noise_dir$rir_dir" ] && [ "$train_from" != audio ]; then
  die "--noise-dir/--rir-dir augment the waveforms: they need --train-from audio (now '$train_from')"
fi
for sys in $systems; do
  case $sys in trained|untrained) ;; baseline) [ -n "$baseline_feat_conf" ] ||
    die "--systems has baseline but --baseline-feat-conf is empty (e.g. conf/mfcc_8k.conf)" ;;
  pretrained) [ -n "$pretrained" ] || die "--systems has pretrained but --pretrained is empty (a model dir from "\
"'pyspeaker import-model', e.g. exp/models/resemblyzer)"
    pretrained_ckpt=""
    for f in "$pretrained" "$pretrained/final.pt" "$pretrained/checkpoints/final.pt"; do
      [ -f "$f" ] && { pretrained_ckpt=$f; break; }
    done
    [ -n "$pretrained_ckpt" ] || die "--pretrained $pretrained: no model there (a checkpoint, or a dir with final.pt)" ;;
  *) die "unknown system '$sys' in --systems (valid: trained untrained baseline pretrained)" ;; esac
done

. ./path.sh
run_stage() { [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; }
has_system() { [[ " $systems " == *" $1 "* ]]; }
log "recipe $recipe, stages $stage..$stop_stage${protocols:+, protocols $protocols}"
exp_root=exp/$exp_name
protocol_list=${protocols:-_}   # "_": the recipe has one protocol
# One protocol's sets and trials ("{protocol}" replaced); sets $p_train $p_test $p_trials.
select_protocol() {
  local p=$1; [ "$p" = _ ] && p=""
  p_train=${train_set//\{protocol\}/$p}; p_test=${test_set//\{protocol\}/$p}; p_trials=${trials//\{protocol\}/$p}
  p_full_train=$p_train; p_valid=""   # with a validation set: train on data/<train>_sub, validate on <train>_valid
  if $validating; then p_valid=${p_train}_valid; p_train=${p_train}_sub; fi
}

if run_stage 0; then
  log "stage 0: corpus and data dirs"
  fp=$(prepare_data_inputs | fingerprint "$(cat)")
  if is_done "data/.done.prepare.$recipe" "$fp"; then
    log "stage 0: data/ is up to date, skipping"
  else
    made_sets=()
    for protocol in $protocol_list; do select_protocol "$protocol"; made_sets+=("$p_full_train" "$p_test"); done
    [ "$own_data_dirs" = false ] || check_own_data_dirs "$recipe" "${made_sets[@]}"
    prepare_data >&2   # stdout of run.sh carries only the results table
    if [ "$own_data_dirs" != false ]; then   # (a recipe that links the user's dirs validates them itself)
      mark_own_data_dirs "$recipe" "${made_sets[@]}"
      for protocol in $protocol_list; do
        select_protocol "$protocol"
        # shellcheck disable=SC2086
        for set in "$p_full_train" "$p_test"; do pyspeaker validate-data $validate_opts "data/$set" >&2; done
      done
    fi
    mark_done "data/.done.prepare.$recipe" "$fp"   # one marker per recipe: recipes share data/
  fi
  if $validating; then   # held-out speakers (utterances): new data dirs, written by pyspeaker
    for protocol in $protocol_list; do
      select_protocol "$protocol"
      fp=$(fingerprint "$valid_speakers" "$valid_utterances" "$valid_seed" "$valid_max_trials" \
           "$(file_fingerprint "data/$p_full_train"/{wav.scp,utt2spk,segments,utt2dur})")
      marker=data/.done.split.$p_full_train
      if is_done "$marker" "$fp" && [ -f "data/$p_valid/trials" ] && [ -f "data/$p_train/utt2spk" ]; then
        log "stage 0: data/$p_valid and data/$p_train are up to date, skipping"; continue
      fi
      for set in "$p_valid" "$p_train"; do   # replace only what an earlier split made
        if { [ -e "data/$set" ] || [ -L "data/$set" ]; } && { [ -L "data/$set" ] || [ ! -f "$marker" ]; }; then
          die "data/$set exists and was not made by --valid-speakers/--valid-utterances: refusing to replace it (move it away)"
        fi
      done
      log "stage 0: holding out $valid_what of data/$p_full_train -> data/$p_valid, data/$p_train"
      pyspeaker split-valid --data-dir "data/$p_full_train" "${split_opt[@]}" --seed "$valid_seed" \
        --max-trials "$valid_max_trials" --valid-out "data/$p_valid" --train-out "data/$p_train" >&2
      mark_done "$marker" "$fp"
    done
  fi
fi
if $validating && [ "$stop_stage" -ge 1 ]; then   # later stages need the split
  for protocol in $protocol_list; do
    select_protocol "$protocol"
    [ -f "data/$p_valid/trials" ] && [ -f "data/$p_train/utt2spk" ] ||
      die "validation set ($valid_what): data/$p_valid or data/$p_train is missing (run stage 0 with the same --valid-speakers/--valid-utterances)"
  done
fi
calibrating=false; $validating && [ "$stop_stage" -ge 7 ] && calibrating=true

feat_store() {  # the store path of a set for a config: derived from the config, never typed
  # shellcheck disable=SC2086
  pyspeaker make-features --data-dir "data/$1" --conf "${2:-$feat_conf}" $feat_opts --print-path
}

report_args=()
for protocol in $protocol_list; do
  select_protocol "$protocol"
  exp=$exp_root${protocols:+/$protocol}
  trials_name=$(basename "$p_trials")
  [ -n "$protocols" ] && log "protocol $protocol: train on data/$p_train, verify $p_trials, in $exp"

  if run_stage 1; then   # the features of the systems that use them (a pretrained model computes its own)
    confs=""; { has_system trained || has_system untrained; } && confs=$feat_conf
    has_system baseline && confs="$confs $baseline_feat_conf"
    for conf in $confs; do
      log "stage 1: features ($conf $feat_opts)"
      for set in "$p_train" "$p_test" $enroll_set $p_valid; do
        steps/make_features.sh --conf "$conf" --opts "$feat_opts$([ "$force" = true ] && echo " --force")" \
          --nj "$nj" --cmd "$feat_cmd" "data/$set" features >/dev/null
      done
    done
  fi

  if run_stage 2 && { has_system trained || has_system untrained; }; then
    log "stage 2: training $exp"
    if [ "$train_from" = audio ]; then
      train_input=data/$p_train; input_opts="--data-dir true"
      input_fp=$(file_fingerprint "data/$p_train"/{wav.scp,segments,utt2spk})
    else
      train_input=$(feat_store "$p_train"); input_opts=""
      input_fp=$(file_fingerprint "$train_input/manifest.json")
    fi
    run_overrides=$train_overrides   # + validation, model selection, time limit, augmentation
    if [ -n "$p_valid" ]; then
      run_overrides+=" valid.trials=data/$p_valid/trials train.test_interval=1"
      if [ "$train_from" = audio ]; then run_overrides+=" valid.data_dir=data/$p_valid"
      else run_overrides+=" valid.features=$(feat_store "$p_valid")"; fi
    fi
    [ "$select" = last ] || run_overrides+=" train.select=$select"
    [ -z "$train_minutes" ] || run_overrides+=" train.max_minutes=$train_minutes"
    [ -z "$noise_dir" ] || run_overrides+=" augment.noise_dir=$noise_dir"
    [ -z "$rir_dir" ] || run_overrides+=" augment.rir_dir=$rir_dir"
    fp=$(fingerprint "$(file_fingerprint "$train_config")" "$run_overrides" "$train_input" "$input_fp" \
         ${train_opts:+"$train_opts"})
    if is_done "$exp/.done.train" "$fp" && [ -f "$exp/checkpoints/final.pt" ]; then
      log "stage 2: $exp is trained with these settings, skipping"
    else
      # shellcheck disable=SC2086
      steps/train.sh --config "$train_config" --overrides "$run_overrides" --cmd "$train_cmd" $train_opts \
        $input_opts "$train_input" "$exp"
      mark_done "$exp/.done.train" "$fp"
    fi
    log "training curve: $exp/metrics.tsv"
  fi

  for sys_name in $systems; do
    case $sys_name in
      trained) sys_dir=$exp; ckpt=$exp/checkpoints/final.pt; what="trained model" ;;
      untrained) sys_dir=$exp/untrained; ckpt=$exp/checkpoints/init.pt; what="untrained model" ;;
      baseline) sys_dir=$exp/baseline; ckpt=""; what="baseline: mean + std of $baseline_feat_conf features" ;;
      pretrained) sys_dir=$exp/pretrained; ckpt=$pretrained_ckpt; what="pretrained model $pretrained" ;;
    esac
    from_audio=$train_from; [ "$sys_name" = pretrained ] && from_audio=audio   # it brings its own front-end
    if run_stage 3; then
      log "stage 3: embeddings ($what)"
      for set in "$p_train" "$p_test" $enroll_set $p_valid; do
        out=$sys_dir/embeddings/$set
        if [ -z "$ckpt" ]; then store=$(feat_store "$set" "$baseline_feat_conf")
        elif [ "$from_audio" = audio ]; then store=data/$set   # the model computes its own input from the audio
        else store=$(feat_store "$set"); fi
        # the model and the features of the set (a changed data dir gets a new manifest)
        fp=$(fingerprint "$(file_fingerprint "$ckpt")" "$(file_fingerprint "$store"/{manifest.json,wav.scp,segments})")
        if is_done "$out/.done" "$fp"; then log "stage 3: $out is up to date, skipping"; continue; fi
        if [ -n "$ckpt" ]; then
          steps/extract.sh --nj "$nj" --cmd "$extract_cmd" --data-dir "$([ "$from_audio" = audio ] && echo true || echo false)" \
            "$ckpt" "$store" "$out"
        else
          steps/extract_stats.sh "$store" "$out"
        fi
        mark_done "$out/.done" "$fp"
      done
    fi
    if run_stage 4; then
      for be in $backends; do
        out=$sys_dir/backend/$be
        fp=$(fingerprint "$be" "$(file_fingerprint "$sys_dir/embeddings/$p_train/.done")" \
             "$(file_fingerprint "data/$p_train/utt2spk")")
        if is_done "$out/.done" "$fp"; then log "stage 4: $out is up to date, skipping"; continue; fi
        log "stage 4: $be back-end ($sys_name)"
        steps/train_backend.sh --backend "$be" "$sys_dir/embeddings/$p_train" "data/$p_train/utt2spk" "$out"
        mark_done "$out/.done" "$fp"
      done
    fi
    for be in $backends; do
      for norm in $score_norms; do
        tag=${be}_$norm
        scores=$sys_dir/scores/$trials_name/$tag results=$sys_dir/results/$trials_name/$tag
        if run_stage 5; then
          # the test trials (enroll side: the enroll set, else the test set), and the validation trials
          for which in test $([ -n "$p_valid" ] && echo valid); do
            if [ "$which" = test ]; then
              enroll_emb=$sys_dir/embeddings/${enroll_set:-$p_test}; test_emb=$sys_dir/embeddings/$p_test
              list=$p_trials; out=$scores; test_args=(${enroll_set:+--test-embeddings "$test_emb"})
            else
              enroll_emb=$sys_dir/embeddings/$p_valid; test_emb=$enroll_emb
              list=data/$p_valid/trials; out=$sys_dir/scores/$p_valid/$tag; test_args=()
            fi
            fp=$(fingerprint "$norm" "$asnorm_top_n" "$(file_fingerprint "$test_emb/.done")" \
                 "$(file_fingerprint "$enroll_emb/.done")" \
                 "$(file_fingerprint "$sys_dir/backend/$be/.done")" "$(file_fingerprint "$list")")
            if is_done "$out/.done" "$fp"; then
              log "stage 5: $out is up to date, skipping"
            else
              log "stage 5: scoring $list with $be, score norm $norm ($sys_name)"
              steps/score.sh --backend-dir "$sys_dir/backend/$be" --score-norm "$norm" --top-n "$asnorm_top_n" \
                "${test_args[@]}" "$enroll_emb" "$list" "$out"
              mark_done "$out/.done" "$fp"
            fi
          done
        fi
        if run_stage 6; then
          fp=$(fingerprint "$(file_fingerprint "$scores/scores.txt")" "$(file_fingerprint "$p_trials")")
          if is_done "$results/.done" "$fp"; then
            log "stage 6: $results is up to date, skipping"
          else
            log "stage 6: metrics of $trials_name/$tag ($sys_name)"
            steps/compute_metrics.sh "$scores/scores.txt" "$p_trials" "$results" >&2
            mark_done "$results/.done" "$fp"
          fi
        fi
        if run_stage 7 && [ -n "$p_valid" ]; then   # calibrated on the validation trials, applied to the test
          cal=$sys_dir/calibration/$tag/calibration.json valid_scores=$sys_dir/scores/$p_valid/$tag/scores.txt
          fp=$(fingerprint "$(file_fingerprint "$valid_scores")" "$(file_fingerprint "data/$p_valid/trials")" \
               "$(file_fingerprint "$scores/scores.txt")" "$(file_fingerprint "$p_trials")" "+ validation metrics")
          if is_done "$sys_dir/results/$trials_name/${tag}_cal/.done" "$fp"; then
            log "stage 7: $sys_dir/results/$trials_name/${tag}_cal is up to date, skipping"
          else
            log "stage 7: calibration of $tag on data/$p_valid/trials ($sys_name)"
            mkdir -p "$(dirname "$cal")" "$sys_dir/scores/$trials_name/${tag}_cal"
            # the validation figures the best system is selected on (calibration does not change them)
            steps/compute_metrics.sh "$valid_scores" "data/$p_valid/trials" "$sys_dir/results/$p_valid/$tag" >&2
            pyspeaker calibrate train --scores "$valid_scores" --trials "data/$p_valid/trials" --out "$cal" >&2
            pyspeaker calibrate apply --scores "$scores/scores.txt" --calibration "$cal" \
              --out "$sys_dir/scores/$trials_name/${tag}_cal/scores.txt"
            steps/compute_metrics.sh "$sys_dir/scores/$trials_name/${tag}_cal/scores.txt" "$p_trials" \
              "$sys_dir/results/$trials_name/${tag}_cal" >&2
            mark_done "$sys_dir/results/$trials_name/${tag}_cal/.done" "$fp"
          fi
        fi
        $calibrating && results=$sys_dir/results/$trials_name/${tag}_cal
        report_args+=(--system "${protocols:+$protocol/}$sys_name=$results/metrics.json")
        $calibrating && report_args+=(--valid-metrics "$sys_dir/results/$p_valid/$tag/metrics.json")
      done
    done
  done

  # the fusion system: logistic regression of the systems' scores, weights learnt on the validation trials
  n_systems=$(wc -w <<< "$systems")
  if [ -n "$p_valid" ] && [ "$n_systems" -ge 2 ]; then
    for be in $backends; do
      for norm in $score_norms; do
        tag=${be}_$norm fusion=$exp/fusion
        if run_stage 7; then
          valid_args=() test_args=() fp_parts=()
          for sys_name in $systems; do
            case $sys_name in trained) sys_dir=$exp ;; *) sys_dir=$exp/$sys_name ;; esac
            valid_args+=(--scores "$sys_dir/scores/$p_valid/$tag/scores.txt" --name "$sys_name")
            test_args+=(--scores "$sys_dir/scores/$trials_name/$tag/scores.txt")
            fp_parts+=("$(file_fingerprint "$sys_dir/scores/$p_valid/$tag/scores.txt" \
                          "$sys_dir/scores/$trials_name/$tag/scores.txt")")
          done
          fp=$(fingerprint "$systems" "${fp_parts[@]}" "$(file_fingerprint "data/$p_valid/trials" "$p_trials")" \
               "+ out-of-fold validation scores")
          if is_done "$fusion/results/$trials_name/$tag/.done" "$fp"; then
            log "stage 7: $fusion/results/$trials_name/$tag is up to date, skipping"
          else
            log "stage 7: fusion of $systems ($tag), weights learnt on data/$p_valid/trials"
            mkdir -p "$fusion/calibration/$tag" "$fusion/scores/$trials_name/$tag" "$fusion/scores/$p_valid/$tag"
            # --cv-out: the fusion's validation scores from weights that did not see them (5 folds)
            pyspeaker fuse train "${valid_args[@]}" --trials "data/$p_valid/trials" \
              --out "$fusion/calibration/$tag/fusion.json" --cv-out "$fusion/scores/$p_valid/$tag/scores.txt" >&2
            steps/compute_metrics.sh "$fusion/scores/$p_valid/$tag/scores.txt" "data/$p_valid/trials" \
              "$fusion/results/$p_valid/$tag" >&2
            pyspeaker fuse apply "${test_args[@]}" --trials "$p_trials" --fusion "$fusion/calibration/$tag/fusion.json" \
              --out "$fusion/scores/$trials_name/$tag/scores.txt"
            steps/compute_metrics.sh "$fusion/scores/$trials_name/$tag/scores.txt" "$p_trials" \
              "$fusion/results/$trials_name/$tag" >&2
            mark_done "$fusion/results/$trials_name/$tag/.done" "$fp"
          fi
        fi
        $calibrating && report_args+=(--system "${protocols:+$protocol/}fusion=$fusion/results/$trials_name/$tag/metrics.json"
                                      --valid-metrics "$fusion/results/$p_valid/$tag/metrics.json")
      done
    done
  fi
done

if run_stage 6 || { $calibrating && run_stage 7; }; then
  what=$systems; $calibrating && what="$systems calibrated on data/*_valid, + fusion"
  log "results ($what${protocols:+; protocols $protocols}), also in $exp_root/RESULTS.md:"
  pyspeaker report --out "$exp_root/RESULTS.md" "${report_args[@]}"
fi
log "done"
