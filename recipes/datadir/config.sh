# Settings of the recipe "datadir": your own Kaldi data dirs, wherever they are:
#   ./run.sh --recipe datadir --train-dir /corpora/mine/train --test-dir /corpora/mine/test \
#       --trials /corpora/mine/test/trials [--enroll-dir /corpora/mine/enroll]
# Stage 0 validates the dirs (pyspeaker validate-data), checks that the trials name utterances of
# the test (enroll) dir and that no training speaker is tested (pyspeaker check-trials), and links
# the dirs under data/ as data/<dir name>_<6 hex of its absolute path>; nothing you own is moved,
# rewritten or replaced (--valid-speakers N writes its split as new dirs under data/).
# Trials: Kaldi '<enroll> <test> target|nontarget' or VoxCeleb '<1|0> <enroll> <test>'; with
# --enroll-dir the enroll ids are utterances of that dir, else of the test dir.
# Every variable here can be overridden on the command line of run.sh as --name value.
#
# Measured with these defaults and --train-minutes 15 (2 CPU cores, 2026-12-02; EER %, minDCF at
# p_target 0.01; FSDD with --feat-conf conf/fbank_8k.conf --baseline-feat-conf conf/mfcc_8k.conf):
#   FSDD open (train 4 speakers, test 2 unseen), seed 0: trained 36.77 (cosine) vs the baseline's
#     best 43.56 (cosine); minDCF ~1 for both. (The fsdd recipe's 10 epochs gave 32.08: with no
#     validation speakers to spare, 15 minutes over-train 4 speakers.)
#   FSDD closed (6 speakers, held-out repetitions), seed 0: trained 0.01 / 0.0014 (LDA+PLDA) vs the
#     baseline's 2.41 / 0.356 (LDA+PLDA).
#   The default corpus (local/prepare_mini.py: 100 training speakers, 10 held out with
#     --valid-speakers 10 --select best; 20 test speakers), training seeds 0 / 1 / 2:
#     trained LDA+PLDA 10.00 / 10.20 / 9.70 (mean 9.97), minDCF 0.728 / 0.791 / 0.719;
#     baseline LDA+PLDA 11.30 / 0.840; fusion of the two (weights from the validation trials)
#     7.90 / 8.40 / 8.10 (mean 8.13), minDCF 0.727 / 0.806 / 0.683. Stage 7 selects the PLDA fusion
#     on the validation trials in all three seeds; on the 2,000 test trials it has the lowest EER
#     in all three and the lowest minDCF in two (seed 1: trained PLDA + AS-norm 0.740). On every
#     pair of the test utterances (51,040 trials, 2,400 target): selected fusion 8.54 / 8.62 / 8.62,
#     minDCF 0.875 / 0.867 / 0.876, lowest on both in all three seeds; trained PLDA 10.53 / 10.38 /
#     10.53, minDCF 0.966 / 0.957 / 0.957; baseline PLDA 11.18, minDCF 0.897.
# One feature set and one network were measured (these defaults), not a sweep.
train_dir=""                          # Kaldi data dir to train on (wav.scp, utt2spk; segments optional)
test_dir=""                           # Kaldi data dir of the test utterances
enroll_dir=""                         # optional: Kaldi data dir of the enroll utterances
trials=""                             # the trial list (any path)
allow_shared_speakers=false           # true: train and test dirs may share speakers (a warning, not an error)

# The default corpus's settings (conf/tdnn_small.yaml trains on anything from 8 kHz up, in minutes);
# give your own with --feat-conf / --train-config / --train-overrides.
feat_conf=conf/fbank.conf             # 80-dim fbank at 16 kHz; conf/fbank_8k.conf for telephone audio
feat_opts=""
train_config=conf/tdnn_small.yaml
train_overrides="train.max_epoch=30"   # 30 epochs or --train-minutes, whichever ends first
exp_name=datadir_tdnn
systems="trained baseline"            # trained, untrained, baseline, pretrained
baseline_feat_conf=conf/mfcc.conf     # the statistics baseline the network has to beat
backends="cosine plda"
score_norms="none asnorm"
asnorm_top_n=100

# After option parsing: the data/ names of the given dirs.
configure_recipe() {
  own_data_dirs=false   # stage 0 links your dirs and never writes into them (not a setting: always so)
  [ -n "$train_dir" ] && [ -n "$test_dir" ] && [ -n "$trials" ] ||
    die "give your data: --train-dir DIR --test-dir DIR --trials FILE (Kaldi data dirs; see ./run.sh --recipe datadir --help)"
  train_set=$(linked_name "$train_dir"); test_set=$(linked_name "$test_dir")
  enroll_set=""; [ -z "$enroll_dir" ] || enroll_set=$(linked_name "$enroll_dir")
}
# Stage 0: check the dirs and link them under data/.
prepare_data() {
  local dir set
  for dir in "$train_dir" "$test_dir" ${enroll_dir:+"$enroll_dir"}; do
    [ -d "$dir" ] || die "--train-dir/--test-dir/--enroll-dir: $dir is not a directory"
    set=$(linked_name "$dir")
    # shellcheck disable=SC2086
    pyspeaker validate-data $validate_opts "$dir" >&2
    link_data_dir "$dir" "data/$set"
  done
  [ -f "$trials" ] || die "--trials $trials: no such file"
  case $allow_shared_speakers in true|false) ;; *) die "--allow-shared-speakers must be true or false" ;; esac
  pyspeaker check-trials --trials "$trials" --test-dir "$test_dir" ${enroll_dir:+--enroll-dir "$enroll_dir"} \
    --train-dir "$train_dir" "--$([ "$allow_shared_speakers" = true ] || echo no-)allow-shared-speakers" >&2
}
prepare_data_inputs() {
  local dir
  for dir in "$train_dir" "$test_dir" ${enroll_dir:+"$enroll_dir"}; do
    echo "$(cd "$dir" 2>/dev/null && pwd)"; file_fingerprint "$dir"/{wav.scp,utt2spk,segments}
  done
  echo "$trials"; file_fingerprint "$trials"; echo "allow_shared_speakers=$allow_shared_speakers"
}
