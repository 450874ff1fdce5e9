#!/usr/bin/env bash
# Make a man page from a template, so the page cannot drift from the tool:
# the options come from the built binaries themselves (docs/packaging.md).
# Usage: mkman.sh IN OUT VERSION NAME=PATH...
#   IN is roff with @VERSION@ and @DATE@, and directive lines
#     .\" @run WORD...     the command's output, verbatim (.nf)
#     .\" @table WORD...   an option table as --help-config / --help-plugin
#                          print it (NAME TYPE DEFAULT DESCRIPTION), as .TP
#   A WORD that is a NAME given here is replaced by its PATH. OUT gets the
#   page, OUT.gz the same gzipped without a timestamp (what is installed).
set -euo pipefail
[ $# -ge 3 ] || { echo "usage: mkman.sh IN OUT VERSION NAME=PATH..." >&2; exit 2; }
in=$1 out=$2 version=$3
shift 3
declare -A map=()
for kv in "$@"; do map[${kv%%=*}]=${kv#*=}; done
# The date of the source, not of the build, when the build sets it.
date=$(date -u -d "@${SOURCE_DATE_EPOCH:-$(stat -c %Y "$in")}" +%Y-%m-%d)
tmp=$(mktemp)
trap 'rm -f "$tmp" "$out.new"' EXIT

# Text as roff: backslashes, ASCII hyphen-minus (copy-pasted options must
# work), and no line that would read as a request.
esc() { sed -e 's/\\/\\e/g' -e 's/-/\\-/g' -e "s/^\\([.']\\)/\\\\\\&\\1/"; }

run() {
  local w args=()
  for w in "$@"; do args+=("${map[$w]:-$w}"); done
  # A sanitizer build's leak report is not the help text.
  ASAN_OPTIONS=detect_leaks=0 "${args[@]}" >"$tmp" 2>&1 ||
    { echo "mkman.sh: '${args[*]}' failed: $(head -3 "$tmp")" >&2; exit 1; }
}

table() { # the rows after the header, one .TP each
  awk '
    function trim(s) { sub(/^ +/, "", s); sub(/ +$/, "", s); return s }
    /^NAME +TYPE +DEFAULT +DESCRIPTION/ {
      t = index($0, "TYPE"); d = index($0, "DEFAULT"); x = index($0, "DESCRIPTION"); on = 1; next
    }
    on && NF {
      name = trim(substr($0, 1, t - 1)); type = trim(substr($0, t, d - t))
      def = trim(substr($0, d, x - d)); doc = trim(substr($0, x)); rows++
      printf "\001TP\n\001B %s\n", name
      if (def == "(required)") printf "Type \001I%s\001R, required.\n", type
      else if (def == "-") printf "Type \001I%s\001R, no default.\n", type
      else printf "Type \001I%s\001R, default \001B%s\001R.\n", type, def
      print doc
    }
    END { if (!rows) { print "mkman.sh: no option table" > "/dev/stderr"; exit 1 } }
  ' "$tmp" | esc | sed -e 's/^\x01TP$/.TP/' -e 's/^\x01B /.B /' -e 's/\x01I/\\fI/g' -e 's/\x01R/\\fR/g' -e 's/\x01B/\\fB/g'
}

while IFS= read -r line || [ -n "$line" ]; do
  case "$line" in
  '.\" @run '*)
    read -ra words <<<"${line#.\\\" @run }"
    run "${words[@]}"
    echo ".nf"
    esc <"$tmp"
    echo ".fi"
    ;;
  '.\" @table '*)
    read -ra words <<<"${line#.\\\" @table }"
    run "${words[@]}"
    table
    ;;
  *)
    line=${line//@VERSION@/$version}
    printf '%s\n' "${line//@DATE@/$date}"
    ;;
  esac
done <"$in" >"$out.new"
mv "$out.new" "$out"
gzip -9nc "$out" >"$out.gz"
