# Kaldi-style option parsing: for every "--some-name value" on the command line, set the
# already-defined shell variable some_name=value. Unknown options are an error; --help prints $help_message.
# Source it after defining the variables:  . utils/parse_options.sh
while [ $# -gt 0 ]; do
  case "$1" in
    --help|-h) echo "${help_message:-no help}"; exit 0 ;;
    --*=*) _name=${1%%=*}; _value=${1#*=}; shift; set -- "$_name" "$_value" "$@"; continue ;;
    --*)
      _name=$(echo "${1#--}" | tr '-' '_')
      if ! declare -p "$_name" >/dev/null 2>&1; then
        echo "$0: unknown option $1 (see $0 --help)" >&2; exit 1
      fi
      [ $# -ge 2 ] || { echo "$0: option $1 needs a value" >&2; exit 1; }
      printf -v "$_name" '%s' "$2"; shift 2 ;;
    *) break ;;
  esac
done
