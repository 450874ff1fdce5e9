#!/usr/bin/env bash
# it.man: the generated man pages (docs/man/) render without a warning,
# as lintian checks them, and every option a tool's --help names and every
# key of coapd --help-config and both --help-plugin tables is in its page.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
it_init man
for tool in man groff; do
  command -v "$tool" >/dev/null || it_fail "$tool is missing: run scripts/deps.sh"
done
D=${EST_MAN_DIR:-}
for v in ESTCTL EST_ENROLL EST_BENCH EST_PLUGIN MOSQ_PLUGIN; do
  [ -e "${!v:-}" ] || it_fail "$v is not set to a built file"
done
export ASAN_OPTIONS=detect_leaks=0

# render PAGE: plain text, wide and unhyphenated, so words stay whole.
render() { groff -man -Tascii -rHY=0 -rLL=2000n -P-cbou "$1" 2>/dev/null; }

# missing PAGE WORDS...: the words the rendered page lacks.
missing() {
  local page=$1 w
  shift
  render "$page" >"$T/page.txt"
  for w in "$@"; do
    grep -qF -- "$w" "$T/page.txt" || echo "$w"
  done
}
# The option words of a --help text: --long and -x.
opt_words() { grep -oE '(^|[ [(|,])--?[A-Za-z][A-Za-z0-9-]*' | sed 's/^[ [(|,]//' | sort -u; }
# The NAME column of an option table.
table_keys() { awk '/^NAME +TYPE +DEFAULT/ { on = 1; next } on && NF { print $1 }'; }

check_page() { # PAGE WORDS-FILE
  local page=$1 words=$2 lacking
  [ -s "$page" ] || it_fail "no man page $page (built by docs/man/CMakeLists.txt)"
  [ -s "$page.gz" ] && gzip -t "$page.gz" || it_fail "no valid $page.gz"
  cmp -s <(gzip -dc "$page.gz") "$page" || it_fail "$page.gz is not $page"
  # lintian's own check (manpage-has-errors-from-man), and groff's all warnings.
  LC_ALL=C.UTF-8 MANROFFSEQ='' MANWIDTH=80 man --warnings -E UTF-8 -l -Tutf8 -Z "$page" \
    >/dev/null 2>"$T/warn.log" || it_fail "man -l $page failed: $(cat "$T/warn.log")"
  groff -man -Tutf8 -ww -z "$page" 2>>"$T/warn.log" || it_fail "groff failed on $page"
  [ ! -s "$T/warn.log" ] || it_fail "$page has warnings: $(head -5 "$T/warn.log")"
  [ "$(wc -l <"$words")" -ge 3 ] || it_fail "too few words to check for $page: $(cat "$words")"
  # shellcheck disable=SC2046
  lacking=$(missing "$page" $(cat "$words"))
  [ -z "$lacking" ] || it_fail "$(basename "$page") lacks: $(echo $lacking)"
  echo "$(basename "$page"): $(wc -l <"$words") words found, no warnings"
}

"$COAPD" --help | opt_words >"$T/coapd.words"
check_page "$D/coapd.8" "$T/coapd.words"
"$ESTCTL" --help | opt_words >"$T/estctl.words"
check_page "$D/estctl.8" "$T/estctl.words"
"$EST_ENROLL" --help | opt_words >"$T/enroll.words"
check_page "$D/est-enroll.1" "$T/enroll.words"
"$EST_BENCH" --help | opt_words >"$T/bench.words"
check_page "$D/est-bench.1" "$T/bench.words"
{
  "$COAPD" --help-config | table_keys
  "$COAPD" --help-plugin "$EST_PLUGIN" | table_keys
  "$COAPD" --help-plugin "$MOSQ_PLUGIN" | table_keys
} >"$T/conf.words"
grep -qx plugin_opt_db_path "$T/conf.words" && grep -qx max_parked_handshakes "$T/conf.words" &&
  grep -qx plugin_opt_operators "$T/conf.words" || it_fail "a key table is missing: $(cat "$T/conf.words")"
check_page "$D/coapd.conf.5" "$T/conf.words"

# The check can fail: a word no page has is reported.
[ "$(missing "$D/coapd.conf.5" plugin_opt_no_such_option)" = plugin_opt_no_such_option ] ||
  it_fail "the word check does not notice a missing option"
it_pass
