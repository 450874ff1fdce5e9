#!/usr/bin/env bash
# EST over HTTPS (RFC 7030, docs/decisions.md §16) against an independent
# client: strongSwan's `pki --estca` / `pki --est` (5.9.8), not our code.
#   1. pki --estca fetches /cacerts: the same certificate as ca.crt.
#   2. pki --est without a client certificate (anonymous simpleenroll,
#      https_anonymous manual): 202 + Retry-After, pki polls until an
#      operator approves with estctl, then gets CN=gw-1 from our CA for
#      its CSR key.
#   6. Polling a pending request keeps one request row, not one per poll.
#   3. pki --est --cert/--key with that certificate (simplereenroll): a new
#      certificate, new serial, same subject.
#   4. Refusals: simplereenroll with the IDevID (not from this CA) is 403;
#      with https_anonymous off an anonymous simpleenroll is 403.
#   5. estctl reject: pki stops polling and fails; the log has the reason.
# Needs strongswan-pki and libstrongswan-extra-plugins (scripts/deps.sh).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/est_lib.sh"
it_init est_https_pki
[ -x "${ESTCTL:-}" ] || it_fail "ESTCTL is not set"
# A pki still in the background when the test ends (a failure) is stopped.
BG_PIDS=()
trap 'for p in "${BG_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done; it_cleanup' EXIT
command -v pki >/dev/null ||
  it_fail "strongSwan's pki is not installed: run scripts/deps.sh (strongswan-pki, libstrongswan-extra-plugins)"
timeout -k 2 10 pki --est --help 2>&1 | grep -q -- "--maxpolltime" ||
  it_fail "this pki has no --est: run scripts/deps.sh (strongswan-pki, libstrongswan-extra-plugins)"
command -v openssl >/dev/null || it_fail "no openssl"
DB=$T/est.db
ctl() { "$ESTCTL" --db "$DB" --actor tester "$@"; }
# rows: ROWS = the requests, one line each, "id state subject" (from
# estctl list --json, kept in $T/list.json). Fails if estctl does.
rows() {
  ctl list --json >"$T/list.json" 2>"$T/list.err" || it_fail "estctl list: $(cat "$T/list.err")"
  ROWS=$(/usr/bin/python3 -c '
import json, sys
for x in json.load(open(sys.argv[1])): print(x["id"], x["state"], x["subject"])' "$T/list.json") ||
    it_fail "estctl list --json: $(head -c 300 "$T/list.json")"
}
# pending_id SUBJECT: PENDING = the id of the newest pending request for
# SUBJECT, empty if none.
pending_id() {
  rows
  PENDING=$(awk -v s="$1" '$2 == "pending" && $3 == s { print $1 }' <<<"$ROWS" | tail -n 1)
}
# pki_run NAME ARGS...: one pki run in the foreground, bounded; stdout in
# $T/NAME.out, stderr in $T/pki-NAME.log (tailed by it_fail). Sets PKI_RC.
pki_run() {
  local name=$1
  shift
  timeout -k 5 40 pki "$@" --url "https://127.0.0.1:$HP" --cacert "$PKI/ca.crt" \
    >"$T/$name.out" 2>"$T/pki-$name.log" </dev/null
  PKI_RC=$?
  [ "$PKI_RC" != 124 ] && [ "$PKI_RC" != 137 ] || it_fail "pki $name did not finish within 40 s"
}
# pki_bg NAME ARGS...: the same in the background; sets PKI_PID.
pki_bg() {
  local name=$1
  shift
  timeout -k 5 90 pki "$@" --url "https://127.0.0.1:$HP" --cacert "$PKI/ca.crt" \
    >"$T/$name.out" 2>"$T/pki-$name.log" </dev/null &
  PKI_PID=$!
  BG_PIDS+=("$PKI_PID")
}
# pki_wait PID SECONDS: wait for it to end, bounded; sets PKI_RC.
pki_wait() {
  local pid=$1 i
  for ((i = 0; i < $2 * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    return 1
  fi
  wait "$pid"
  PKI_RC=$?
  return 0
}
# newkey NAME CN: $T/NAME.der (EC P-256) and $T/NAME.csr (PEM PKCS#10).
newkey() {
  timeout 20 pki --gen --type ecdsa --size 256 >"$T/$1.der" 2>/dev/null || it_fail "pki --gen $1"
  timeout 20 pki --req --in "$T/$1.der" --type ecdsa --dn "CN=$2" --outform pem \
    >"$T/$1.csr" 2>/dev/null || it_fail "pki --req $1"
}
x509() { openssl x509 -in "$1" -noout -nameopt RFC2253 "${@:2}"; }
# count_202 ID: 202 log lines for request ID.
count_202() {
  grep -c "https request op=simpleenroll status=202 .*reason=\"request $1 is waiting for an operator\" retry_after=2" \
    "$T/coapd.log"
}

PKI=$T/pki
it_pki "$PKI"
HP=$(it_free_tcp_port)
est_start "https_listen 127.0.0.1 $HP" "https_cert $PKI/server.crt" "https_key $PKI/server.key" \
  "https_anonymous manual" "retry_after 2"

# ---- 1. cacerts ------------------------------------------------------------
pki_run estca --estca --outform pem
[ "$PKI_RC" = 0 ] || it_fail "pki --estca exited $PKI_RC: $(tail -5 "$T/pki-estca.log")"
[ "$(grep -c 'BEGIN CERTIFICATE' "$T/estca.out")" = 1 ] ||
  it_fail "pki --estca did not write exactly one certificate: $(head -c 300 "$T/estca.out")"
want=$(x509 "$PKI/ca.crt" -fingerprint -sha256)
got=$(x509 "$T/estca.out" -fingerprint -sha256)
[ -n "$want" ] && [ "$got" = "$want" ] || it_fail "cacerts: got '$got', want '$want'"
grep -q "Root CA equals trusted TLS Root CA" "$T/pki-estca.log" ||
  it_fail "pki did not match the EST CA to the TLS trust anchor: $(tail -5 "$T/pki-estca.log")"
# RFC 5652 §5.2: a certs-only SignedData carries id-data; pki says
# "pkcs7 content type N not supported" for anything else.
! grep -q "content type .* not supported" "$T"/pki-*.log ||
  it_fail "pki did not like the PKCS#7 content type: $(grep -h 'content type' "$T"/pki-*.log)"

# ---- 2. anonymous simpleenroll, polled until approved ----------------------
newkey gw1 gw-1
pki_bg enroll --est --in "$T/gw1.csr" --interval 1 --maxpolltime 60 --outform pem
enroll_pid=$PKI_PID
id="" n=0
for ((i = 0; i < 100; i++)); do # 20 s: the first poll comes after 2 s
  kill -0 "$enroll_pid" 2>/dev/null ||
    it_fail "pki --est ended before the approval: $(tail -8 "$T/pki-enroll.log")"
  [ -n "$id" ] || { pending_id CN=gw-1; id=$PENDING; }
  [ -n "$id" ] && n=$(count_202 "$id") && [ "$n" -ge 2 ] && break
  sleep 0.2
done
[ -n "$id" ] || it_fail "no pending request for CN=gw-1 in estctl list: $ROWS"
[ "$n" -ge 2 ] || it_fail "request $id: $n 202 answers in 20 s, pki did not poll"
# 6. Every poll is the same request: one row, still pending.
rows
[ "$ROWS" = "$id pending CN=gw-1" ] || it_fail "after $n polls estctl list shows: $ROWS"
ctl show "$id" --json | /usr/bin/python3 -c '
import json, sys
x = json.load(sys.stdin)
assert x["function"] == "sen", x
assert (x["keyType"], x["keyCurve"]) == ("ec", "secp256r1"), x' ||
  it_fail "estctl show $id: $(ctl show "$id" --json)"
ctl approve "$id" >"$T/approve.out" || it_fail "estctl approve $id: $(cat "$T/approve.out")"
pki_wait "$enroll_pid" 20 || it_fail "pki --est still polling 20 s after the approval: $(tail -8 "$T/pki-enroll.log")"
echo "---- pki --est stderr (anonymous simpleenroll, polled on 202 until approved)"
cat "$T/pki-enroll.log"
echo "---- end of pki --est stderr"
[ "$PKI_RC" = 0 ] || it_fail "pki --est exited $PKI_RC after the approval"
grep -q "EST request pending, polling every 2 seconds" "$T/pki-enroll.log" ||
  it_fail "pki was not told to wait (202 + Retry-After: 2)"
[ "$(grep -c "going to sleep for 2 seconds" "$T/pki-enroll.log")" -ge 1 ] || it_fail "pki did not poll"
cp "$T/enroll.out" "$T/gw1.crt"
[ "$(x509 "$T/gw1.crt" -subject)" = "subject=CN=gw-1" ] || it_fail "subject: $(x509 "$T/gw1.crt" -subject)"
[ "$(x509 "$T/gw1.crt" -issuer)" = "issuer=$(x509 "$PKI/ca.crt" -subject | sed 's/^subject=//')" ] ||
  it_fail "issuer: $(x509 "$T/gw1.crt" -issuer)"
openssl verify -CAfile "$PKI/ca.crt" "$T/gw1.crt" >"$T/verify.out" 2>&1 ||
  it_fail "openssl verify: $(cat "$T/verify.out")"
csr_pub=$(openssl req -in "$T/gw1.csr" -noout -pubkey)
[ -n "$csr_pub" ] && [ "$(x509 "$T/gw1.crt" -pubkey)" = "$csr_pub" ] ||
  it_fail "the certificate's public key is not the CSR's"
# 6. Still one row for that key, now issued.
rows
[ "$ROWS" = "$id issued CN=gw-1" ] || it_fail "after the approval estctl list shows: $ROWS"

# ---- 3. simplereenroll with the certificate from 2 -------------------------
newkey gw1b gw-1
pki_run reenroll --est --in "$T/gw1b.csr" --cert "$T/gw1.crt" --key "$T/gw1.der" \
  --interval 1 --maxpolltime 10 --outform pem
[ "$PKI_RC" = 0 ] || it_fail "pki --est --cert (re-enroll) exited $PKI_RC: $(tail -8 "$T/pki-reenroll.log")"
grep -q "EST request pending" "$T/pki-reenroll.log" && it_fail "re-enrollment was queued"
# pki authenticated with the certificate from 2 and asked simplereenroll.
rows
[ "$(/usr/bin/python3 -c '
import json, sys
print(" ".join(x["function"] + ":" + x["client"] for x in json.load(open(sys.argv[1])) if x["id"] != int(sys.argv[2])))' \
  "$T/list.json" "$id")" = "sren:CN=gw-1" ] ||
  it_fail "the re-enrollment is not one sren request from CN=gw-1: $(cat "$T/list.json")"
cp "$T/reenroll.out" "$T/gw1b.crt"
[ "$(x509 "$T/gw1b.crt" -subject)" = "subject=CN=gw-1" ] || it_fail "re-enroll subject: $(x509 "$T/gw1b.crt" -subject)"
[ "$(x509 "$T/gw1b.crt" -serial)" != "$(x509 "$T/gw1.crt" -serial)" ] || it_fail "re-enroll kept the serial"
openssl verify -CAfile "$PKI/ca.crt" "$T/gw1b.crt" >"$T/verify.out" 2>&1 ||
  it_fail "openssl verify (re-enroll): $(cat "$T/verify.out")"
[ "$(x509 "$T/gw1b.crt" -pubkey)" = "$(openssl req -in "$T/gw1b.csr" -noout -pubkey)" ] ||
  it_fail "the re-enrolled certificate's public key is not the new CSR's"

# ---- 4a. simplereenroll with the IDevID: 403 -------------------------------
newkey idv idevid-0001
pki_run idevid --est --in "$T/idv.csr" --cert "$PKI/idevid.crt" --key "$PKI/idevid.key" \
  --interval 1 --maxpolltime 10 --outform pem
[ "$PKI_RC" != 0 ] || it_fail "pki re-enrolled with the IDevID"
grep -q "EST request failed: HTTP 403" "$T/pki-idevid.log" ||
  it_fail "pki did not see a 403 for the IDevID: $(tail -5 "$T/pki-idevid.log")"
grep -q "BEGIN CERTIFICATE" "$T/idevid.out" && it_fail "pki got a certificate for the IDevID re-enroll"
grep -q "https request op=simplereenroll status=403 .*client=\"[^\"]*idevid-0001" "$T/coapd.log" ||
  it_fail "no simplereenroll status=403 for the IDevID in the log"

# ---- 5. an anonymous request rejected by the operator ----------------------
newkey gw3 gw-3
pki_bg rejected --est --in "$T/gw3.csr" --interval 1 --maxpolltime 60 --outform pem
rej_pid=$PKI_PID
id3=""
for ((i = 0; i < 100; i++)); do
  kill -0 "$rej_pid" 2>/dev/null || it_fail "pki ended before the rejection: $(tail -8 "$T/pki-rejected.log")"
  pending_id CN=gw-3
  id3=$PENDING
  [ -n "$id3" ] && [ "$(count_202 "$id3")" -ge 1 ] && break
  sleep 0.2
done
[ -n "$id3" ] || it_fail "no pending request for CN=gw-3: $ROWS"
ctl reject "$id3" --reason "not ours" >"$T/reject.out" || it_fail "estctl reject: $(cat "$T/reject.out")"
pki_wait "$rej_pid" 20 || it_fail "pki still polling 20 s after the rejection: $(tail -8 "$T/pki-rejected.log")"
[ "$PKI_RC" != 0 ] || it_fail "pki exited 0 after the rejection"
grep -q "EST request pending" "$T/pki-rejected.log" || it_fail "the rejected request was not pending first"
grep -q "EST request failed: HTTP 403" "$T/pki-rejected.log" ||
  it_fail "pki did not see a 403 after the rejection: $(tail -5 "$T/pki-rejected.log")"
grep -q "BEGIN CERTIFICATE" "$T/rejected.out" && it_fail "pki got a certificate after the rejection"
grep -q "https request op=simpleenroll status=403 .*reason=\"[^\"]*not ours" "$T/coapd.log" ||
  it_fail "no simpleenroll status=403 with the reason 'not ours' in the log"
rows
[ "$(awk -v id="$id3" '$1 == id { print $2 }' <<<"$ROWS")" = rejected ] || it_fail "request $id3: $ROWS"
est_stop
cp "$T/coapd.log" "$T/coapd-manual.log" # est_start empties coapd.log

# ---- 4b. https_anonymous off: an anonymous simpleenroll is 403 -------------
rows
before=$ROWS
HP=$(it_free_tcp_port)
est_start "https_listen 127.0.0.1 $HP" "https_cert $PKI/server.crt" "https_key $PKI/server.key" \
  "https_anonymous off" "retry_after 2"
newkey gw4 gw-4
pki_run anonoff --est --in "$T/gw4.csr" --interval 1 --maxpolltime 10 --outform pem
[ "$PKI_RC" != 0 ] || it_fail "anonymous enrollment worked with https_anonymous off"
grep -q "EST request failed: HTTP 403" "$T/pki-anonoff.log" ||
  it_fail "pki did not see a 403 with https_anonymous off: $(tail -5 "$T/pki-anonoff.log")"
grep -q "BEGIN CERTIFICATE" "$T/anonoff.out" && it_fail "pki got a certificate with https_anonymous off"
grep -q "EST request pending" "$T/pki-anonoff.log" && it_fail "https_anonymous off still queued the request"
grep -q 'https request op=simpleenroll status=403 .*client="(no client certificate)"' "$T/coapd.log" ||
  it_fail "no simpleenroll status=403 for the anonymous client in the log"
rows
[ "$ROWS" = "$before" ] || it_fail "https_anonymous off still stored a request: $ROWS"
est_stop
it_pass
