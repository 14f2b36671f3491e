# Sourced by every steps/*.sh: strict mode, logging helpers, and the pyspeaker environment.
set -euo pipefail
_steps_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$_steps_root/utils/lib.sh"
command -v pyspeaker >/dev/null 2>&1 || . "$_steps_root/path.sh"
