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
