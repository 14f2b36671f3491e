#!/usr/bin/env bash
# The download step of the voxceleb recipe. VoxCeleb needs a registration form, so nothing is
# downloaded: this checks that each corpus given is where it is said to be, and otherwise prints
# where to get it and exits 1.
#   local/voxceleb/download.sh --vox1-dir /corpora/VoxCeleb1 --vox2-dir /corpora/VoxCeleb2 \
#       [--lists-dir DIR] [--musan-dir /corpora/musan] [--rirs-dir /corpora/RIRS_NOISES]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
vox1_dir=""; vox2_dir=""; lists_dir=""; musan_dir=""; rirs_dir=""
help_message="Usage: $0 --vox1-dir DIR --vox2-dir DIR [--lists-dir DIR] [--musan-dir DIR] [--rirs-dir DIR]
Checks the corpora; prints where to get the missing ones and exits 1."
. "$root/utils/parse_options.sh"
[ $# -eq 0 ] || { echo "$help_message" >&2; exit 1; }
command -v pyspeaker >/dev/null || . "$root/path.sh"   # activates the project's Python
args=()
for name in vox1_dir vox2_dir lists_dir musan_dir rirs_dir; do
  [ -z "${!name}" ] || args+=("--${name//_/-}" "${!name}")
done
exec python "$root/local/prepare_voxceleb.py" check "${args[@]}"
