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
# Measured with these defaults, --train-minutes 15 --select best (2 CPU cores, 2026-12-04; EER %, minDCF at
# p_target 0.01; training seeds 0 / 1 / 2; the 30 epochs end before the budget: 4.5-6 min of training;
# FSDD with --feat-conf conf/fbank_8k.conf --baseline-feat-conf conf/mfcc_8k.conf --valid-utterances 25):
#   FSDD open (train 4 speakers, test 2 unseen): trained 31.04 (cosine) / 39.64 (PLDA) / 36.35 (cosine)
#     vs the baseline's best 43.37 (PLDA + AS-norm); minDCF ~1 for all. Selected on the (closed-set)
#     validation: trained cosine, 31.04 / 41.38 / 36.35 (every trained row validates at 0.00 %).
#   FSDD closed (6 speakers, held-out repetitions): trained PLDA (+ AS-norm) 0.00 / 0.10 / 0.00,
#     minDCF 0.0000 / 0.0103 / 0.0000, vs the baseline's PLDA 2.34 / 0.343; selected 0.35 / 0.14 / 0.00.
#   The default corpus (local/prepare_mini.py: 100 training speakers, 10 held out with
#     --valid-speakers 10; 20 test speakers): trained PLDA 10.70 / 10.40 / 12.00 (mean 11.03), minDCF
#     0.700 / 0.802 / 0.842; baseline PLDA 11.30 / 0.840; selected in all three: the PLDA fusion,
#     8.20 / 8.00 / 8.10, minDCF 0.761 / 0.785 / 0.819 (lowest EER of all 12 rows in all three, lowest
#     minDCF in two). Every pair of the test utterances (51,040 trials, 2,400 target): trained PLDA
#     11.17 / 11.33 / 12.13, minDCF 0.986 / 0.971 / 0.968; baseline PLDA 11.18 / 0.897; fusion 8.61 /
#     9.02 / 9.00, minDCF 0.905 / 0.896 / 0.889.
#   With tdnn_small's 10 epochs (seed 0): FSDD open 37.30, closed 0.12, default corpus 11.00: 30 are better.
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
