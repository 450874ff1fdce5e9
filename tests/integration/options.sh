#!/usr/bin/env bash
# Plugin option tables end to end:
#  - coapd --help-plugin prints est_coaps.so's and mosquitto_est.so's tables
#    (exit 0), says so for a plugin without one, and exits 1 with a clear
#    message for something that is not a plugin;
#  - coapd refuses bad est_coaps.so options itself, before the plugin's
#    init, with FILE:LINE and a did-you-mean hint;
#  - README.md's "Plugin options" tables list exactly the names, types and
#    defaults of the two tables, in table order.
#
#   bash options.sh                     (ctest: it.options)
#   bash options.sh --markdown PLUGIN   print README rows for PLUGIN's table
#                                       (doc text as the meaning) to paste
#
# Needs COAPD, EST_PLUGIN, MOSQ_EST_PLUGIN, TESTPLUG, EST_TEST_DATA and
# EST_SOURCE_DIR (the README's folder) in the environment (options.cmake).
. "$(dirname "$0")/lib.sh"

# help_rows PLUGIN: "name<TAB>type<TAB>default" per option, from
# --help-plugin (the lines after the NAME TYPE DEFAULT header).
help_rows() {
  "$COAPD" --help-plugin "$1" | awk '
    /^NAME +TYPE +DEFAULT/ { on = 1; next }
    on && NF >= 3 { sub(/^plugin_opt_/, "", $1); print $1 "\t" $2 "\t" $3 }'
}

# readme_rows HEADING: the same from the README table under HEADING; a
# default in backticks is that value, "(none)" is "-".
readme_rows() {
  awk -v heading="$1" '
    $0 == heading { on = 1; next }
    on && /^#/ { exit }
    on && /^\| `/ {
      line = $0
      gsub(/\\\|/, "\001", line) # an escaped | inside a cell
      split(line, f, "|")
      for (i = 2; i <= 4; i++) {
        gsub(/^ +| +$/, "", f[i])
        gsub(/`/, "", f[i])
        gsub(/\001/, "|", f[i])
      }
      if (f[4] == "(none)") f[4] = "-"
      print f[2] "\t" f[3] "\t" f[4]
    }' "$EST_SOURCE_DIR/README.md"
}

# markdown PLUGIN: README rows generated from --help-plugin.
markdown() {
  "$COAPD" --help-plugin "$1" | awk '
    /^NAME +TYPE +DEFAULT/ { on = 1; next }
    on && NF >= 3 {
      name = $1; type = $2; def = $3
      sub(/^plugin_opt_/, "", name)
      doc = $0
      sub(/^[^ ]+ +[^ ]+ +[^ ]+ +/, "", doc)
      gsub(/\|/, "\\|", type)
      if (def == "-") def = "(none)"
      else if (def != "(required)") def = "`" def "`"
      printf "| `%s` | %s | %s | %s |\n", name, type, def, doc
    }'
}

if [ "${1:-}" = --markdown ]; then
  [ $# = 2 ] || { echo "usage: $0 --markdown PLUGIN" >&2; exit 2; }
  markdown "$2"
  exit 0
fi

it_init options
for v in EST_PLUGIN MOSQ_EST_PLUGIN TESTPLUG EST_SOURCE_DIR; do
  [ -n "${!v:-}" ] || it_fail "$v is not set"
done

# --- coapd --help-plugin --------------------------------------------------

it_coapd_run help-est --help-plugin "$EST_PLUGIN"
[ "$IT_RC" = 0 ] || it_fail "--help-plugin est_coaps.so: rc $IT_RC"
it_expect_log help-est "^coapd plugin est-coaps [0-9]"
it_expect_log help-est "^plugin_opt_root +string +/est +the short root"
it_expect_log help-est "^plugin_opt_ca_cert +path +- +.*required unless upstream"
it_expect_log help-est "^plugin_opt_pop_linking +off\|verify\|require +verify "

it_coapd_run help-mosq --help-plugin "$MOSQ_EST_PLUGIN"
[ "$IT_RC" = 0 ] || it_fail "--help-plugin mosquitto_est.so: rc $IT_RC"
it_expect_log help-mosq "^mosquitto_est \(.*\), not a coapd plugin"
it_expect_log help-mosq "^plugin_opt_poll_ms +int\(10\.\.60000\) +500 "

# A bare name is looked up in the plugin directory, as on a plugin line.
COAPD_PLUGIN_PATH=$(dirname "$EST_PLUGIN") \
  it_coapd_run help-bare --help-plugin "$(basename "$EST_PLUGIN")"
[ "$IT_RC" = 0 ] || it_fail "--help-plugin with a bare name: rc $IT_RC"
cmp -s "$T/help-est.log" "$T/help-bare.log" ||
  it_fail "--help-plugin with a bare name printed something else"

# A plugin without a table (testplug) still is one.
it_coapd_run help-old --help-plugin "$TESTPLUG"
[ "$IT_RC" = 0 ] || it_fail "--help-plugin testplug.so: rc $IT_RC"
it_expect_log help-old "^coapd plugin testplug 1\.0 "
it_expect_log help-old "publishes no option table"

# Not plugins: exit 1 and say why.
it_coapd_run help-none --help-plugin "$T/nope.so"
[ "$IT_RC" = 1 ] || it_fail "--help-plugin of a missing file: rc $IT_RC"
it_expect_log help-none "^coapd: cannot open a plugin: .*nope\.so"
libz=$(ldconfig -p | sed -n 's/.*=> \(.*libz.so.1\)$/\1/p' | head -1)
it_coapd_run help-libz --help-plugin "$libz"
[ "$IT_RC" = 1 ] || it_fail "--help-plugin of libz: rc $IT_RC"
it_expect_log help-libz "not a plugin: no symbol 'coapd_plugin_entry' or 'coapd_options_entry'"
echo "not a shared object" >"$T/text.so"
it_coapd_run help-text --help-plugin "$T/text.so"
[ "$IT_RC" = 1 ] || it_fail "--help-plugin of a text file: rc $IT_RC"
# --help-plugin takes no config.
it_coapd_run help-usage --help-plugin "$EST_PLUGIN" -c "$T/x.conf"
[ "$IT_RC" = 2 ] || it_fail "--help-plugin with -c: rc $IT_RC, expected 2"

# --- coapd refuses bad est_coaps.so options before init ------------------

PKI=$T/pki
it_pki "$PKI"
PORT=$(it_free_port)
# conf NAME OPTION-LINES...: the plugin line is line 5, options follow.
conf() {
  local f=$T/$1.conf
  shift
  printf '%s\n' "listen 127.0.0.1 $PORT" "dtls_cert $PKI/server.crt" \
    "dtls_key $PKI/server.key" "dtls_ca $PKI/trust.pem" "plugin $EST_PLUGIN" \
    "$@" >"$f"
}
ca=("plugin_opt_ca_cert $PKI/ca.crt" "plugin_opt_ca_key $PKI/ca.key")

# expect_refused NAME TEXT: coapd -t exits 1 with TEXT (fixed) after
# FILE:LINE, and est_coaps.so's init never ran (it logs as [est-coaps]).
expect_refused() {
  it_coapd_run "$1" -t -c "$T/$1.conf"
  [ "$IT_RC" = 1 ] || it_fail "$1: rc $IT_RC, expected 1"
  grep -qF -- "$T/$1.conf:$2" "$IT_LOG" || it_fail "$1: log lacks '$T/$1.conf:$2'"
  ! grep -q '\[est-coaps\]' "$IT_LOG" || it_fail "$1: the plugin's init ran"
}

conf near "${ca[@]}" "plugin_opt_rot /x"
expect_refused near "8: unknown option 'plugin_opt_rot'; did you mean 'plugin_opt_root'?"
conf far "${ca[@]}" "plugin_opt_colour red"
expect_refused far "8: unknown option 'plugin_opt_colour'"
conf dup "${ca[@]}" "plugin_opt_cert_days 30" "plugin_opt_cert_days 40"
expect_refused dup "9: duplicate 'plugin_opt_cert_days' (first set on line 8)"
conf range "${ca[@]}" "plugin_opt_cert_days 36501"
expect_refused range "8: bad value '36501' for plugin_opt_cert_days (integer from 1 to 36500)"
conf word "${ca[@]}" "plugin_opt_pop_linking maybe"
expect_refused word "8: bad value 'maybe' for plugin_opt_pop_linking (off|verify|require)"
conf onoff "${ca[@]}" "plugin_opt_keygen yes"
expect_refused onoff "8: bad value 'yes' for plugin_opt_keygen (on|off)"
conf root "${ca[@]}" "plugin_opt_root /.well-known/est"
expect_refused root "8: bad value '/.well-known/est' for plugin_opt_root (must look like /est"
conf labels "${ca[@]}" "plugin_opt_labels a,,b"
expect_refused labels "8: bad value 'a,,b' for plugin_opt_labels (each label needs 1 to 63 characters)"
conf blank "${ca[@]}" "plugin_opt_labels a, b"
expect_refused blank "8: bad value 'a, b' for plugin_opt_labels (' b' has a character not allowed in a path)"
conf crts "${ca[@]}" "plugin_opt_labels a,crts"
expect_refused crts "8: bad value 'a,crts' for plugin_opt_labels ('crts' is an EST function name)"

# Combinations the plugin's init refuses, with FILE:LINE and nothing started.
expect_init_refused() {
  it_coapd_run "$1" -t -c "$T/$1.conf"
  [ "$IT_RC" = 1 ] || it_fail "$1: rc $IT_RC, expected 1"
  grep -qF -- "$T/$1.conf:$2" "$IT_LOG" || it_fail "$1: log lacks '$T/$1.conf:$2'"
  ! grep -q 'coapd: ready' "$IT_LOG" || it_fail "$1: coapd got ready"
}
conf req "plugin_opt_ca_cert $PKI/ca.crt"
expect_init_refused req "6: ca_cert and ca_key are required (or upstream, to be a registrar)"
# Registrar mode (docs/decisions.md §19): no CA of its own, upstream_ca
# needed, an https:// URL only.
U=https://127.0.0.1:1/.well-known/est
conf regca "${ca[@]}" "plugin_opt_upstream $U" "plugin_opt_upstream_ca $PKI/ca.crt"
expect_init_refused regca "6: a registrar (upstream) has no CA of its own"
conf regnoca "plugin_opt_upstream $U"
expect_init_refused regnoca "6: upstream needs upstream_ca"
conf reghttp "plugin_opt_upstream http://127.0.0.1:1/.well-known/est"
expect_refused reghttp "6: bad value 'http://127.0.0.1:1/.well-known/est' for plugin_opt_upstream (must start with https://"
conf regslash "plugin_opt_upstream $U/"
expect_refused regslash "6: bad value '$U/' for plugin_opt_upstream (must not end in '/'"
conf regkey "plugin_opt_upstream $U" "plugin_opt_upstream_ca $PKI/ca.crt" \
  "plugin_opt_upstream_cert $PKI/client.crt"
expect_init_refused regkey "8: upstream_cert and upstream_key go together"
conf reghttps "plugin_opt_upstream $U" "plugin_opt_upstream_ca $PKI/ca.crt" \
  "plugin_opt_https_listen 127.0.0.1 1" "plugin_opt_https_cert $PKI/server.crt" \
  "plugin_opt_https_key $PKI/server.key"
expect_init_refused reghttps "8: https_listen with upstream is not supported"
conf orphan "${ca[@]}" "plugin_opt_upstream_ca $PKI/ca.crt"
expect_init_refused orphan "8: upstream_* without upstream"
# Nothing listens upstream and there is no cache: coapd says so and stops.
conf regdown "plugin_opt_upstream $U" "plugin_opt_upstream_ca $PKI/ca.crt" \
  "plugin_opt_upstream_timeout 2" "plugin_opt_idevid_policy auto"
expect_init_refused regdown "6: upstream $U: cacerts not fetched ("
grep -q "and no usable cache (upstream_cache or db_path)" "$IT_LOG" ||
  it_fail "regdown: the log does not say there is no cache"
# The same table accepts a good set, and init runs with the defaults.
conf good "${ca[@]}" "plugin_opt_idevid_policy auto" "plugin_opt_labels a,b"
it_coapd_run good -t -c "$T/good.conf"
[ "$IT_RC" = 0 ] || it_fail "good options: rc $IT_RC"
it_expect_log good "\[est-coaps\] serving /est and /.well-known/est \(2 label\(s\)\).*pop_linking verify, keygen off"

# --- README.md lists what the tables say ----------------------------------

check_readme() {
  local plugin=$1 heading=$2 name=$3
  help_rows "$plugin" >"$T/$name.help"
  readme_rows "$heading" >"$T/$name.readme"
  [ -s "$T/$name.help" ] || it_fail "$name: no options in --help-plugin output"
  [ -s "$T/$name.readme" ] || it_fail "$name: README.md has no table under '$heading'"
  if ! diff -u "$T/$name.help" "$T/$name.readme" >"$T/$name.diff"; then
    cat "$T/$name.diff" >&2
    echo "README rows from the table (bash $0 --markdown $plugin):" >&2
    markdown "$plugin" >&2
    it_fail "README.md '$heading' differs from $name's option table (- table, + README)"
  fi
}
check_readme "$EST_PLUGIN" "#### est_coaps.so" est_coaps
check_readme "$MOSQ_EST_PLUGIN" "#### mosquitto_est.so" mosquitto_est

it_pass
