#!/usr/bin/env bash
# Stage 4: train a scoring back-end (cosine mean, or LDA + PLDA) and the score-norm cohort.
. "$(dirname "$0")/common.sh"
backend=cosine; lda_dim=200
help_message="Usage: $0 [--backend cosine|plda] [--lda-dim N] <train-embeddings-dir> <utt2spk> <backend-dir>
See 'pyspeaker train-backend --help'."
. "$_steps_root/utils/parse_options.sh"
[ $# -eq 3 ] || { echo "$help_message" >&2; exit 1; }
log "reads $1 and $2, writes $3 (backend $backend)"
pyspeaker train-backend --backend "$backend" --lda-dim "$lda_dim" --embeddings "$1" --utt2spk "$2" --out "$3"
