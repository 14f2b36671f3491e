#!/usr/bin/env bash
# Stage 0 of the voxceleb recipe: corpora as downloaded -> Kaldi data dirs and trials.
#   data/voxceleb2_dev     training set (VoxCeleb2 dev; m4a through ffmpeg pipes, or converted wav)
#   data/voxceleb1_test    the 40 test speakers, trials_O (veri_test.txt), trials_O_clean (veri_test2.txt)
#   data/voxceleb1         all of VoxCeleb1, trials_E[_clean] (list_test_all[2].txt), trials_H[_clean]
#   data/voxceleb1_dev     VoxCeleb1 without the test speakers
#   data/musan{,_music,_speech,_noise}, data/rirs_{simulated,real}   augmentation sources (if given)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
. "$root/utils/lib.sh"
vox1_dir=""; vox2_dir=""; lists_dir=""; musan_dir=""; rirs_dir=""
rir_rooms="smallroom mediumroom"
vox2_audio=pipe     # pipe: ffmpeg pipes in wav.scp; wav: convert once into --vox2-wav-dir (resumable)
vox2_wav_dir=""
ffmpeg=ffmpeg
nj=4
out=data
help_message="Usage: $0 --vox1-dir DIR --vox2-dir DIR [--lists-dir DIR (default: vox1-dir)]
    [--musan-dir DIR] [--rirs-dir DIR] [--rir-rooms '$rir_rooms'] [--vox2-audio pipe|wav]
    [--vox2-wav-dir DIR] [--ffmpeg PROG] [--nj N] [--out $out]"
. "$root/utils/parse_options.sh"
[ $# -eq 0 ] || { echo "$help_message" >&2; exit 1; }
[ -n "$vox1_dir" ] && [ -n "$vox2_dir" ] || die "--vox1-dir and --vox2-dir are required (see $0 --help)"
command -v pyspeaker >/dev/null || . "$root/path.sh"   # activates the project's Python
lists_dir=${lists_dir:-$vox1_dir}

log "checking the corpora"
"$root/local/voxceleb/download.sh" --vox1-dir "$vox1_dir" --vox2-dir "$vox2_dir" --lists-dir "$lists_dir" \
  --musan-dir "$musan_dir" --rirs-dir "$rirs_dir"

vox2_src=$vox2_dir
case "$vox2_audio" in
  pipe) ;;
  wav)
    [ -n "$vox2_wav_dir" ] || die "--vox2-audio wav needs --vox2-wav-dir"
    log "converting VoxCeleb2 m4a -> wav in $vox2_wav_dir (resumable, $nj jobs)"
    python "$root/local/prepare_voxceleb.py" convert --src "$vox2_dir" --dst "$vox2_wav_dir" --nj "$nj" --ffmpeg "$ffmpeg"
    vox2_src=$vox2_wav_dir ;;
  *) die "--vox2-audio must be pipe or wav, not '$vox2_audio'" ;;
esac

log "VoxCeleb data dirs and trials -> $out/"
python "$root/local/prepare_voxceleb.py" data --vox1-dir "$vox1_dir" --vox2-dir "$vox2_src" --lists-dir "$lists_dir" \
  --out "$out" --ffmpeg "$ffmpeg"
if [ -n "$musan_dir" ] || [ -n "$rirs_dir" ]; then
  log "augmentation data dirs -> $out/"
  args=()
  [ -z "$musan_dir" ] || args+=(--musan-dir "$musan_dir")
  [ -z "$rirs_dir" ] || args+=(--rirs-dir "$rirs_dir" --rir-rooms "$rir_rooms")
  python "$root/local/prepare_voxceleb.py" augment "${args[@]}" --out "$out"
fi
log "done"
