# Shared shell helpers for run.sh and steps/: timestamped logging and re-runnable stage markers.
# Source it; it defines functions only.

log() { echo "$(date '+%Y-%m-%d %H:%M:%S') [$(basename "${BASH_SOURCE[1]:-$0}")] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# A stage (or one output of it) is done when its marker holds the same fingerprint as now; the
# fingerprint covers the inputs and settings, so changing any of them re-runs the stage.
fingerprint() { printf '%s\n' "$@" | sha1sum | cut -c1-16; }
file_fingerprint() { { cat "$@" 2>/dev/null || true; } | sha1sum | cut -c1-16; }  # missing files: fine
is_done() { [ "${force:-false}" != true ] && [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }
mark_done() { mkdir -p "$(dirname "$1")" && echo "$2" > "$1.tmp" && mv "$1.tmp" "$1"; }

# Data dirs a recipe links instead of writing (recipe "datadir"): data/<name>_<6 hex of the path>.
linked_name() {
  local abs; abs=$(cd "$1" 2>/dev/null && pwd) || die "$1 is not a directory"
  echo "$(basename "$abs")_$(printf '%s' "$abs" | sha1sum | cut -c1-6)"
}
link_data_dir() {  # <user's dir> <data/name>: a symlink; an existing other dir is never replaced
  local abs; abs=$(cd "$1" && pwd)
  if [ -L "$2" ] && [ "$(readlink "$2")" = "$abs" ]; then return 0; fi
  [ ! -e "$2" ] && [ ! -L "$2" ] || die "$2 exists and is not a link to $abs: refusing to replace it (move it away)"
  mkdir -p "$(dirname "$2")" && ln -s "$abs" "$2"
}
# Stage 0 of a recipe that writes data dirs replaces only the ones it made itself: it records them
# in data/.made_by/<set>; any other dir there (a user's, a link, another recipe's) stops it.
check_own_data_dirs() {  # <recipe> <set> ...
  local recipe=$1 set; shift
  for set in "$@"; do
    [ -e "data/$set" ] || [ -L "data/$set" ] || continue
    local owner; owner=$(cat "data/.made_by/$set" 2>/dev/null || true)
    # (before data/.made_by existed, the recipe's stage-0 marker said the same)
    [ -n "$owner" ] || [ ! -f "data/.done.prepare.$recipe" ] || owner=$recipe
    if [ -L "data/$set" ] || [ "$owner" != "$recipe" ]; then
      die "data/$set exists and was not made by stage 0 of recipe '$recipe': refusing to replace it (move it away, or use --recipe datadir for your own data dirs)"
    fi
  done
}
mark_own_data_dirs() {  # <recipe> <set> ...
  local recipe=$1 set; shift
  mkdir -p data/.made_by
  for set in "$@"; do [ -d "data/$set" ] && echo "$recipe" > "data/.made_by/$set"; done
  return 0
}
