#!/usr/bin/env bash
# SIGHUP reloads (docs/operations.md "Reload"): coapd reads coapd.conf and
# every file it names again. A new CA certificate and key sign the next
# enrollment without a restart; a new csr_attrs and a new policy take over;
# a bad file, a bad line or a bad option value is refused with FILE:LINE
# and the running configuration keeps serving; keys that need a restart
# say so; SIGTERM is still a clean stop; and systemd hears READY=1,
# RELOADING=1 + READY=1 per SIGHUP, and STOPPING=1 (Type=notify).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/est_lib.sh"
it_init est_reload

PKI=$T/pki
it_pki "$PKI"
it_pki "$T/pki2" # a second, unrelated CA to roll over to
mkdir -m 700 "$T/ca"
cp "$PKI/ca.crt" "$T/ca/ca.crt"
install -m 600 "$PKI/ca.key" "$T/ca/ca.key"
cp "$EST_TEST_DATA/csrattrs.der" "$T/attrs.der"
# systemd's side of Type=notify: a datagram socket in NOTIFY_SOCKET.
cat >"$T/notify.py" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
open(sys.argv[2] + ".ready", "w").close()
s.settimeout(60)
with open(sys.argv[2], "ab", buffering=0) as f:
    try:
        while True:
            f.write(s.recv(4096).replace(b"\n", b" ") + b"\n")
    except socket.timeout:
        pass
EOF
python3 "$T/notify.py" "$T/notify.sock" "$T/notify.out" &
NPID=$!
for ((i = 0; i < 50; i++)); do [ -e "$T/notify.out.ready" ] && break; sleep 0.1; done
[ -e "$T/notify.out.ready" ] || it_fail "the NOTIFY_SOCKET listener did not start"
NOTIFY_SOCKET=$T/notify.sock est_start "ca_cert $T/ca/ca.crt" "ca_key $T/ca/ca.key" \
  "csr_attrs $T/attrs.der"
for ((i = 0; i < 50; i++)); do grep -q "READY=1" "$T/notify.out" && break; sleep 0.1; done
[ "$(cat "$T/notify.out")" = "READY=1" ] || it_fail "no READY=1 after start: $(cat "$T/notify.out")"
LOG=$T/coapd.log
PID=${IT_PIDS[coapd]}

# hup PATTERN: send SIGHUP and wait for PATTERN in new log lines.
hup() {
  local before i
  before=$(wc -l <"$LOG")
  kill -HUP "$PID"
  for ((i = 0; i < 100; i++)); do
    tail -n +"$((before + 1))" "$LOG" | grep -Eq "$1" && break
    sleep 0.1
  done
  tail -n +"$((before + 1))" "$LOG" >"$T/hup.log"
  grep -Eq "$1" "$T/hup.log" || it_fail "after SIGHUP no '$1' in the log: $(cat "$T/hup.log")"
  kill -0 "$PID" 2>/dev/null || it_fail "coapd died of SIGHUP"
}

# enroll NAME: a fresh CSR for CN=NAME over sen; the certificate in $T/NAME.pem.
enroll() {
  est_csr "$T/$1.key" "$T/$1.csr" "$1"
  est_req gnutls idevid post /est/sen -t 286 -f "$T/$1.csr"
  it_expect_code 2.04
  est_p7_to_pem "$IT_PAYLOAD_FILE" "$T/$1.pem"
}
# signed_by CERT CA: certtool verifies CERT against CA alone.
signed_by() { certtool --verify --load-ca-certificate "$2" --infile "$1" >/dev/null 2>&1; }
line_of() { grep -n "^$1" "$CONF" | tail -1 | cut -d: -f1; }

enroll dev-a
signed_by "$T/dev-a.pem" "$PKI/ca.crt" || it_fail "dev-a is not signed by the first CA"

# 1. The CA certificate and key are replaced; the next enrollment is signed by
# the new CA, and crts serves it.
cp "$T/pki2/ca.crt" "$T/ca/ca.crt.new" && mv "$T/ca/ca.crt.new" "$T/ca/ca.crt"
install -m 600 "$T/pki2/ca.key" "$T/ca/ca.key.new" && mv "$T/ca/ca.key.new" "$T/ca/ca.key"
hup "\[est-coaps\] reloaded: "
grep -q "coapd: .*coapd.conf reloaded" "$T/hup.log" || it_fail "no host reload line: $(cat "$T/hup.log")"
enroll dev-b
signed_by "$T/dev-b.pem" "$T/pki2/ca.crt" || it_fail "after SIGHUP dev-b is not signed by the new CA"
signed_by "$T/dev-b.pem" "$PKI/ca.crt" && it_fail "after SIGHUP dev-b is still signed by the old CA"
est_req gnutls idevid get /est/crts
it_expect_code 2.05
est_p7_to_pem "$IT_PAYLOAD_FILE" "$T/crts.pem"
cmp -s <(certtool -i --infile "$T/crts.pem" | grep -A1 "Subject Public Key ID") \
  <(certtool -i --infile "$T/pki2/ca.crt" | grep -A1 "Subject Public Key ID") ||
  it_fail "crts does not serve the new CA after SIGHUP"

# 2. A CA file that does not load: refused with FILE:LINE, the new CA stays.
cp "$T/ca/ca.crt" "$T/ca/good.crt"
echo "not a certificate" >"$T/ca/ca.crt"
hup "reload refused"
grep -q "$CONF:$(line_of plugin_opt_ca_cert): ca_cert/ca_key: " "$T/hup.log" ||
  it_fail "the bad ca_cert is not named with FILE:LINE: $(cat "$T/hup.log")"
enroll dev-c
signed_by "$T/dev-c.pem" "$T/pki2/ca.crt" || it_fail "a refused reload changed the CA"
mv "$T/ca/good.crt" "$T/ca/ca.crt"

# 3. A bad line in coapd.conf, and a bad option value: the host refuses the
# whole reload before any plugin sees it.
cp "$CONF" "$T/good.conf"
echo "sesion_timeout 10" >>"$CONF"
hup "coapd: reload refused: .*coapd.conf:$(wc -l <"$CONF"): "
cp "$T/good.conf" "$CONF"
echo "plugin_opt_retry_after soon" >>"$CONF"
hup "coapd: reload refused: .*coapd.conf:$(wc -l <"$CONF"): .*retry_after"
grep -q "\[est-coaps\] reloaded" "$T/hup.log" && it_fail "a refused reload reached the plugin"
cp "$T/good.conf" "$CONF"
enroll dev-d

# 4. The policy and csr_attrs change while running: the next enrollment
# waits for an operator; att serves the new CsrAttrs.
sed -i 's/^plugin_opt_idevid_policy auto$/plugin_opt_idevid_policy manual/' "$CONF"
cp "$EST_TEST_DATA/csrattrs-rfc7030.der" "$T/attrs.der"
hup "\[est-coaps\] reloaded: .*idevid_policy manual"
est_csr "$T/dev-e.key" "$T/dev-e.csr" dev-e
est_req gnutls idevid post /est/sen -t 286 -f "$T/dev-e.csr"
it_expect_code 5.03
est_req gnutls idevid get /est/att
it_expect_code 2.05
cmp -s "$IT_PAYLOAD_FILE" "$EST_TEST_DATA/csrattrs-rfc7030.der" ||
  it_fail "att does not serve the new csr_attrs after SIGHUP"

# 5. The DTLS trust anchors: without the manufacturer CA in dtls_ca, a new
# handshake with the IDevID fails; put back, it works again.
cp "$PKI/trust.pem" "$T/trust.good"
cp "$PKI/ca.crt" "$PKI/trust.pem"
hup "coapd: .*coapd.conf reloaded"
est_req gnutls idevid get /est/crts
it_expect_code none
cp "$T/trust.good" "$PKI/trust.pem"
hup "coapd: .*coapd.conf reloaded"
est_req gnutls idevid get /est/crts
it_expect_code 2.05

# 6. A key that shapes the resources waits for a restart, and says so.
echo "plugin_opt_root /est2" >>"$CONF"
hup "$CONF:$(wc -l <"$CONF"): reload: root changed; it takes effect when coapd restarts"
est_req gnutls idevid get /est/crts
it_expect_code 2.05

# 7. SIGTERM is still a clean stop.
kill -TERM "$PID"
wait "$PID"
rc=$?
unset "IT_PIDS[coapd]"
[ "$rc" = 0 ] || it_fail "coapd exited $rc on SIGTERM after reloads"
grep -q "coapd: stopped" "$LOG" || it_fail "no 'coapd: stopped' line"
# Each SIGHUP, refused or not, was RELOADING=1 then READY=1; the stop STOPPING=1.
hups=$(grep -c "coapd: SIGHUP" "$LOG")
kill "$NPID" 2>/dev/null
want=$(echo READY=1; for ((i = 0; i < hups; i++)); do echo RELOADING=1; echo READY=1; done
  echo STOPPING=1)
[ "$(cat "$T/notify.out")" = "$want" ] ||
  it_fail "sd_notify sequence: $(tr '\n' ' ' <"$T/notify.out"), want $(echo $want)"
it_san_check "$LOG"
it_pass
