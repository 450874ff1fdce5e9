#!/usr/bin/env bash
# coapd start-up and config errors: every bad config exits 1 and its message
# names the file and line; -t, -h, -V; plugin loading checks.
. "$(dirname "$0")/lib.sh"
it_init host_config

PKI=$T/pki
it_pki "$PKI"
PORT=$(it_free_port)

# conf FILE LINES...: write a config file from the given lines.
conf() {
  local f=$1
  shift
  printf '%s\n' "$@" >"$f"
}

# A good base; tests replace or append lines.
base=(
  "# coapd test config"
  "listen 127.0.0.1 $PORT"
  "listen ::1 $PORT"
  "dtls_cert $PKI/server.crt"
  "dtls_key $PKI/server.key"
  "dtls_ca $PKI/trust.pem"
)

# expect_error NAME PATTERN [coapd args]: coapd -c $T/NAME.conf must exit 1
# and log PATTERN (a fixed string).
expect_error() {
  local name=$1 pattern=$2
  shift 2
  it_coapd_run "$name" -c "$T/$name.conf" "$@"
  [ "$IT_RC" = 1 ] || it_fail "$name: exit status $IT_RC, expected 1"
  grep -qF -- "$pattern" "$IT_LOG" || it_fail "$name: log lacks '$pattern'"
}

# -h, -V, usage errors.
it_coapd_run help -h
[ "$IT_RC" = 0 ] && grep -q "usage: coapd" "$IT_LOG" || it_fail "-h: rc $IT_RC"
it_coapd_run version -V
[ "$IT_RC" = 0 ] && grep -Eq "^coapd [0-9]" "$IT_LOG" || it_fail "-V: rc $IT_RC"
it_coapd_run usage -x
[ "$IT_RC" = 2 ] || it_fail "bad option: rc $IT_RC, expected 2"
it_coapd_run usage2
[ "$IT_RC" = 2 ] || it_fail "no -c: rc $IT_RC, expected 2"

# A good config passes -t, with a plugin and options.
conf "$T/good.conf" "${base[@]}" "log_level debug" "plugin $TESTPLUG" \
  "plugin_opt_greeting  hello  world  "
it_coapd_run good -t -c "$T/good.conf"
[ "$IT_RC" = 0 ] || it_fail "good config: rc $IT_RC"
it_expect_log good "configuration OK"
it_expect_log good "\[testplug\] testplug ready \(config line 8\)"
it_expect_log good "\[testplug\] testplug fini"

# The config file itself.
it_coapd_run nofile -c "$T/does-not-exist.conf"
[ "$IT_RC" = 1 ] && grep -qF "$T/does-not-exist.conf: No such file or directory" "$IT_LOG" ||
  it_fail "missing config: rc $IT_RC"

# Parser errors (the unit test covers every one; a few end to end here).
conf "$T/unknown.conf" "${base[@]}" "listne 127.0.0.1 $PORT"
expect_error unknown "$T/unknown.conf:7: unknown key 'listne'; did you mean 'listen'?"
conf "$T/dup.conf" "${base[@]}" "dtls_cert $PKI/server.crt"
expect_error dup "$T/dup.conf:7: duplicate 'dtls_cert' (first set on line 4)"
conf "$T/port.conf" "${base[@]}" "listen 127.0.0.1 65536"
expect_error port "$T/port.conf:7: bad value '65536' for listen PORT (integer from 1 to 65535)"
conf "$T/noval.conf" "${base[@]}" "session_timeout"
expect_error noval "$T/noval.conf:7: missing value for 'session_timeout'"
conf "$T/opt.conf" "${base[@]}" "plugin_opt_greeting hi" "plugin $TESTPLUG"
expect_error opt "$T/opt.conf:7: 'plugin_opt_greeting' without a preceding 'plugin' line"
conf "$T/missing.conf" "listen 127.0.0.1 $PORT" "dtls_cert $PKI/server.crt" \
  "dtls_key $PKI/server.key"
expect_error missing "$T/missing.conf: missing required key 'dtls_ca'"

# Files: missing, a directory (we run as root, so chmod 000 proves nothing),
# not PEM, key that does not match the cert.
conf "$T/nokey.conf" "${base[@]:0:4}" "dtls_key $T/nope/server.key" "${base[5]}"
expect_error nokey "$T/nokey.conf:5: dtls_key '$T/nope/server.key': No such file or directory"
conf "$T/dircert.conf" "${base[@]:0:3}" "dtls_cert $PKI" "${base[@]:4}"
expect_error dircert "$T/dircert.conf:4: dtls_cert '$PKI': Is a directory"
echo 'cn = "not a certificate"' >"$T/notpem.txt"
conf "$T/notpem.conf" "${base[@]:0:5}" "dtls_ca $T/notpem.txt"
expect_error notpem "$T/notpem.conf:6: dtls_ca '$T/notpem.txt': no PEM certificate"
conf "$T/mismatch.conf" "${base[@]:0:4}" "dtls_key $PKI/client.key" "${base[5]}"
expect_error mismatch "$T/mismatch.conf:5: dtls_key does not match dtls_cert"

# Relative paths resolve against the config file's directory, whatever the
# working directory.
mkdir -p "$T/etc/plugins"
cp "$TESTPLUG" "$T/etc/plugins/testplug.so"
conf "$T/etc/rel.conf" "listen 127.0.0.1 $PORT" "dtls_cert ../pki/server.crt" \
  "dtls_key ../pki/server.key" "dtls_ca ../pki/trust.pem" "plugin plugins/testplug.so"
(cd / && it_coapd_run rel -t -c "$T/etc/rel.conf" && [ "$IT_RC" = 0 ]) ||
  it_fail "relative paths: $(tail -3 "$T/rel.log")"

# Plugins: a bare name is looked up in COAPD_PLUGIN_PATH.
conf "$T/bare.conf" "${base[@]}" "plugin testplug.so"
COAPD_PLUGIN_PATH="$T/etc/plugins" it_coapd_run bare -t -c "$T/bare.conf"
[ "$IT_RC" = 0 ] || it_fail "bare plugin name: rc $IT_RC"
COAPD_PLUGIN_PATH="$T/nowhere" expect_error bare \
  "$T/bare.conf:7: plugin '$T/nowhere/testplug.so': No such file or directory"

conf "$T/noplug.conf" "${base[@]}" "plugin $T/nope.so"
expect_error noplug "$T/noplug.conf:7: plugin '$T/nope.so': No such file or directory"
conf "$T/notso.conf" "${base[@]}" "plugin $PKI/ca.crt"
expect_error notso "$T/notso.conf:7: plugin '$PKI/ca.crt': "
conf "$T/nosym.conf" "${base[@]}" "plugin $(ldconfig -p | sed -n 's/.*=> \(.*libz.so.1\)$/\1/p' | head -1)"
expect_error nosym "no symbol 'coapd_plugin_entry'"
conf "$T/badabi.conf" "${base[@]}" "plugin $TESTPLUG_BADABI"
expect_error badabi "$T/badabi.conf:7: plugin '$TESTPLUG_BADABI': ABI version 2, coapd needs 1"
conf "$T/twice.conf" "${base[@]}" "plugin $TESTPLUG" "plugin $T/etc/plugins/testplug.so"
expect_error twice "$T/twice.conf:8: plugin '$T/etc/plugins/testplug.so': name 'testplug' already used by the plugin on line 7"
conf "$T/initfail.conf" "${base[@]}" "plugin $TESTPLUG" "plugin_opt_fail_init yes"
expect_error initfail "$T/initfail.conf:7: plugin 'testplug' ($TESTPLUG): init failed"
conf "$T/badopt.conf" "${base[@]}" "plugin $TESTPLUG" "plugin_opt_colour red"
expect_error badopt "$T/badopt.conf:8: unknown option 'colour'"

# Port in use: a second coapd on the same port must refuse (libcoap's
# SO_REUSEADDR would otherwise let both bind), for IPv4 and IPv6.
conf "$T/first.conf" "${base[@]}"
it_coapd_start "$T/first.conf" first
expect_error good "$T/good.conf:2: listen 127.0.0.1 $PORT: address already in use"
conf "$T/v6.conf" "listen ::1 $PORT" "${base[@]:3}"
expect_error v6 "$T/v6.conf:1: listen ::1 $PORT: address already in use"
# -t binds nothing, so it passes next to the running server.
it_coapd_run check -t -c "$T/good.conf"
[ "$IT_RC" = 0 ] || it_fail "-t next to a running server: rc $IT_RC"
it_coapd_stop first
# Two listen lines that overlap inside one config.
conf "$T/overlap.conf" "listen 0.0.0.0 $PORT" "${base[@]:1}"
expect_error overlap "$T/overlap.conf:2: listen 127.0.0.1 $PORT: address already in use"

it_pass
