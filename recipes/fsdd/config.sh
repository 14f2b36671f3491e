# Settings of the recipe "fsdd": real speech, the Free Spoken Digit Dataset (6 speakers x 10 digits
# x 50 repetitions, 8 kHz), like Kaldi's egs/yesno: small enough to run everything in minutes.
# Give the location of a clone of https://github.com/Jakobovski/free-spoken-digit-dataset:
#   ./run.sh --recipe fsdd --fsdd-dir /path/to/free-spoken-digit-dataset
# Two protocols, each trained and scored on its own (exp/<exp-name>/<protocol>/):
#   open    train on 4 speakers, verify on the 2 unseen ones (every pair of their 1,000 utterances)
#   closed  train on repetitions 5-49 of all 6 speakers, verify on repetitions 0-4 (every pair of 300)
# Systems: the trained network and the non-neural baseline (mean + std of 30 MFCCs per utterance,
# cosine after subtracting the training mean), which the network must beat.
# Every variable here can be overridden on the command line of run.sh as --name value.
fsdd_dir=""                           # a clone of the FSDD repository (holds recordings/)
open_test_speakers="theo yweweler"    # open set: the unseen speakers
heldout_reps="0 1 2 3 4"              # closed set: held-out repetitions (FSDD's customary test portion)
max_reps=50                           # use repetitions 0..max_reps-1 of each digit (fewer: a quick run)
protocols="open closed"
train_set=fsdd_{protocol}_train       # "{protocol}" is replaced by each protocol
test_set=fsdd_{protocol}_test
trials=data/fsdd_{protocol}_test/trials

feat_conf=conf/fbank_8k.conf          # 40-dim fbank at 8 kHz for the network
feat_opts=""
systems="trained baseline"            # trained, untrained, baseline
baseline_feat_conf=conf/mfcc_8k.conf  # 30 MFCCs at 8 kHz for the baseline
train_config=conf/tdnn_small.yaml       # x-vector TDNN chosen for tiny corpora (why: see the file)
train_overrides=""
exp_name=fsdd_tdnn
backends="cosine"                     # cosine after subtracting the training mean; 4 speakers are too few for LDA/PLDA
score_norms="none"
asnorm_top_n=4

# Stage 0 of this recipe: the FSDD data dirs and trials of both protocols.
prepare_data() {
  python local/prepare_fsdd.py --fsdd-dir "$fsdd_dir" --out data --open-test-speakers "$open_test_speakers" \
    --heldout-reps "$heldout_reps" --max-reps "$max_reps"
}
# What stage 0's outputs depend on (it is skipped while these stay the same); runs first.
prepare_data_inputs() {
  [ -n "$fsdd_dir" ] || die "give the FSDD location: --fsdd-dir DIR (git clone https://github.com/Jakobovski/free-spoken-digit-dataset)"
  echo "$(cd "$fsdd_dir" 2>/dev/null && pwd)|$open_test_speakers|$heldout_reps|$max_reps"
  sha1sum local/prepare_fsdd.py
}
