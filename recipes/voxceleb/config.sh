# Settings of the recipe "voxceleb": train on VoxCeleb2 dev, test on VoxCeleb1 (Kaldi's and
# voxceleb_trainer's setting). The corpora need registration: download them yourself (stage 0 says
# where from) and give their locations, e.g.
#   ./run.sh --recipe voxceleb --vox1-dir /corpora/VoxCeleb1 --vox2-dir /corpora/VoxCeleb2 \
#       --musan-dir /corpora/musan --rirs-dir /corpora/RIRS_NOISES
# Every variable here can be overridden on the command line of run.sh as --name value.
vox1_dir=""                           # VoxCeleb1: wav/id1xxxx/<video>/NNNNN.wav (or Kaldi's dev/wav + test/wav)
vox2_dir=""                           # VoxCeleb2 dev: dev/aac/id0xxxx/<video>/NNNNN.m4a (or aac/, or a wav tree)
lists_dir=""                          # veri_test2.txt, list_test_all2.txt, ... (empty: in vox1_dir)
musan_dir=""                          # MUSAN (music/ speech/ noise/); empty: no MUSAN data dirs
rirs_dir=""                           # RIRS_NOISES (simulated_rirs/ ...); empty: no RIR data dirs
rir_rooms="smallroom mediumroom"      # simulated room sets in data/rirs_simulated (Kaldi's choice)
vox2_audio=pipe                       # pipe: m4a read through ffmpeg pipes; wav: converted once (resumable)
vox2_wav_dir=""                       # where the converted wav go with vox2_audio=wav
ffmpeg=ffmpeg                         # the ffmpeg program (wav.scp pipes and the conversion)

train_set=voxceleb2_dev               # data/<train_set>, data/<test_set>
test_set=voxceleb1_test               # data/voxceleb1 (all 1,251 speakers) for the E and H lists
trials=data/voxceleb1_test/trials_O_clean   # also trials_O; data/voxceleb1/trials_{E,H}[_clean]
validate_opts="--no-check-audio"      # validate-data options (reading 1M pipes would take hours)

feat_conf=conf/fbank.conf             # 80-dim fbank (WeSpeaker's VoxCeleb setting)
feat_opts=""                          # more make-features options, e.g. "--format ark --compress"; jobs: --nj
train_config=conf/resnet34l_amsoftmax.yaml
# The lab's full setting (voxceleb_trainer: 500 epochs of at most 500 utterances per speaker);
# VoxCeleb2's fbank store (~260 GB) is read from disk, not held in memory.
train_overrides="data.max_seg_per_spk=500 data.in_memory=false data.num_workers=8 train.keep_last=5"
exp_name=voxceleb_resnet34l_amsoftmax
backends="cosine plda"                # stage 4-6 back-ends: cosine (with training mean), plda (LDA + PLDA)
score_norms="none asnorm"             # none, snorm, asnorm (cohort: training speaker means)
asnorm_top_n=300                      # AS-norm cohort size (WeSpeaker: 300 of the 5,994 VoxCeleb2 speakers)

# Stage 0: check the corpora (prints where to get missing ones), make the data dirs and trials.
prepare_data() {
  local/voxceleb/prepare_data.sh --vox1-dir "$vox1_dir" --vox2-dir "$vox2_dir" --lists-dir "$lists_dir" \
    --musan-dir "$musan_dir" --rirs-dir "$rirs_dir" --rir-rooms "$rir_rooms" --vox2-audio "$vox2_audio" \
    --vox2-wav-dir "$vox2_wav_dir" --ffmpeg "$ffmpeg" --nj "$nj" --out data
  [ -f "$trials" ] || die "stage 0 made no $trials (is its list in ${lists_dir:-$vox1_dir}?)"
}
# After option parsing: training from audio augments with the MUSAN and RIR data dirs stage 0 makes
# (data/musan: music, speech and noise; data/rirs_simulated) unless --noise-dir / --rir-dir say otherwise.
configure_recipe() {
  [ "$train_from" = audio ] || return 0
  [ -n "$noise_dir" ] || [ -z "$musan_dir" ] || noise_dir=data/musan
  [ -n "$rir_dir" ] || [ -z "$rirs_dir" ] || rir_dir=data/rirs_simulated
}
# What stage 0's outputs depend on (it is skipped while these stay the same).
prepare_data_inputs() {
  echo "$vox1_dir|$vox2_dir|$lists_dir|$musan_dir|$rirs_dir|$rir_rooms|$vox2_audio|$vox2_wav_dir|$ffmpeg"
  sha1sum local/voxceleb/*.sh local/prepare_voxceleb.py
}
