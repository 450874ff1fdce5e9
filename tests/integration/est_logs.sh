#!/usr/bin/env bash
# Logs an operator can use (docs/operations.md "Logs"): plugin_log_level
# sets one plugin's level apart from log_level; a refusal is one key=value
# line at notice with the peer, function, code and reason; on a journald
# stream (JOURNAL_STREAM) lines carry <N> priority prefixes and no time;
# log_dest syslog sends them to /dev/log with facility daemon.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/est_lib.sh"
it_init est_logs
LOG=$T/coapd.log

# 1. log_level warning for coapd and libcoap, info for est-coaps only.
EST_LOG_LEVEL=warning est_start
est_stop
sed -i "s|^plugin $EST_PLUGIN\$|&\nplugin_log_level info|" "$CONF"
grep -q "^plugin_log_level info$" "$CONF" || it_fail "could not add plugin_log_level"
it_coapd_start "$CONF" coapd
grep -q "info \[est-coaps\] plugin\|notice \[est-coaps\] serving /est" "$LOG" ||
  it_fail "plugin_log_level info did not show the plugin's notice line: $(cat "$LOG")"
grep -q "info listening on" "$LOG" && it_fail "log_level warning still shows coapd's info lines"
# A refusal: a PEM file where a DER CSR belongs gets 4.00 from the plugin.
est_req gnutls idevid post /est/sen -t 286 -f "$T/pki/ca.crt"
it_expect_code 4.00
grep -Eq 'notice \[est-coaps\] request fn=sen code=4\.00 peer=127\.0\.0\.1:[0-9]+ client="[^"]*CN=idevid-0001[^"]*" reason="[^"]+" max_age=0$' "$LOG" ||
  it_fail "no key=value refusal line: $(grep 'request fn' "$LOG")"
est_stop

# 2. plugin_log_level needs a plugin line before it.
printf 'plugin_log_level debug\n' >"$T/bad.conf"
grep -v '^plugin_log_level' "$CONF" >>"$T/bad.conf"
it_coapd_run bad -t -c "$T/bad.conf"
[ "$IT_RC" = 1 ] || it_fail "plugin_log_level before any plugin line: exit $IT_RC"
grep -q "bad.conf:1: 'plugin_log_level' must follow the plugin line it is for" "$IT_LOG" ||
  it_fail "no FILE:LINE for a misplaced plugin_log_level: $(cat "$IT_LOG")"

# 3. A journald stream: <priority> prefixes, no timestamp of our own.
: >"$T/journal.out"
JOURNAL_STREAM=$(stat -c '%d:%i' "$T/journal.out") "$COAPD" -c "$CONF" 2>>"$T/journal.out" &
JPID=$!
for ((i = 0; i < 100; i++)); do
  grep -q "coapd: ready" "$T/journal.out" && break
  sleep 0.1
done
kill -TERM "$JPID"
wait "$JPID" || it_fail "coapd on a journald stream exited $?"
grep -q "^<5>coapd: ready (2 endpoints, 1 plugin)$" "$T/journal.out" ||
  it_fail "no <5> prefixed ready line on a journald stream: $(head -5 "$T/journal.out")"
grep -q "^<5>\[est-coaps\] serving /est" "$T/journal.out" ||
  it_fail "plugin lines lack the prefix: $(head -5 "$T/journal.out")"
grep -Eq '^[0-9]{4}-' "$T/journal.out" && it_fail "timestamps on a journald stream"

# 4. log_dest syslog: a datagram socket at /dev/log takes the lines. If the
# machine has one, the test binds its own over it in a mount namespace.
cat >"$T/syslogd.py" <<'EOF'
import os, socket, sys
path, out = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
open(out + ".ready", "w").close()
s.settimeout(20)
with open(out, "ab", buffering=0) as f:
    try:
        while True:
            f.write(s.recv(4096) + b"\n")
    except socket.timeout:
        pass
EOF
sed -i 's/^plugin_log_level info$/plugin_log_level info\nlog_dest syslog/' "$CONF"
if [ -e /dev/log ]; then
  python3 "$T/syslogd.py" "$T/devlog.sock" "$T/syslog.out" &
  SPID=$!
  for ((i = 0; i < 50; i++)); do [ -e "$T/syslog.out.ready" ] && break; sleep 0.1; done
  run_syslog() { exec unshare -m sh -c "mount --bind '$T/devlog.sock' /dev/log && exec $COAPD -c $CONF"; }
else
  python3 "$T/syslogd.py" /dev/log "$T/syslog.out" &
  SPID=$!
  trap 'rm -f /dev/log; it_cleanup' EXIT
  for ((i = 0; i < 50; i++)); do [ -e "$T/syslog.out.ready" ] && break; sleep 0.1; done
  run_syslog() { exec "$COAPD" -c "$CONF"; }
fi
[ -e "$T/syslog.out.ready" ] || it_fail "the test syslog receiver did not start"
run_syslog >"$T/syslog.stderr" 2>&1 &
CPID=$!
for ((i = 0; i < 100; i++)); do
  grep -q "coapd: ready" "$T/syslog.out" 2>/dev/null && break
  sleep 0.1
done
est_req gnutls idevid post /est/sen -t 286 -f "$T/pki/ca.crt"
it_expect_code 4.00
for ((i = 0; i < 50; i++)); do
  grep -q "request fn=sen code=4.00" "$T/syslog.out" && break
  sleep 0.1
done
kill -TERM "$CPID"
wait "$CPID" || it_fail "coapd with log_dest syslog exited $?"
kill "$SPID" 2>/dev/null
# daemon (3) * 8 + notice (5) = 29, + error (3) = 27.
grep -Eq '^<29>.* coapd\[[0-9]+\]: coapd: ready \(2 endpoints, 1 plugin\)$' "$T/syslog.out" ||
  it_fail "no ready line at daemon.notice in syslog: $(head -3 "$T/syslog.out")"
grep -Eq '^<29>.* coapd\[[0-9]+\]: \[est-coaps\] request fn=sen code=4\.00 peer=' "$T/syslog.out" ||
  it_fail "no refusal at daemon.notice in syslog: $(grep request "$T/syslog.out")"
[ -s "$T/syslog.stderr" ] && it_fail "log_dest syslog still wrote to stderr: $(head -3 "$T/syslog.stderr")"
it_pass
