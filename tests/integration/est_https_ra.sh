#!/usr/bin/env bash
# RA clients over HTTPS EST (RFC 7030 §3.7, docs/decisions.md §17): a TLS
# client whose certificate chains to ra_trust and carries id-kp-cmcRA asks
# for devices. With EST-Device-Chain the device's own class and policy
# apply (its IDevID waits for an operator, its LDevID re-enrolls), the
# request and its audit row record the RA and the device, and the device
# can collect over CoAP what its RA asked for. Without it the device is its
# CSR key, under ra_policy. Nobody else may name a device, and a
# certificate from the RA CA without id-kp-cmcRA is no RA.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/est_lib.sh"
it_init est_https_ra
[ -x "${ESTCTL:-}" ] || it_fail "ESTCTL is not set"
DB=$T/est.db
ctl() { "$ESTCTL" --db "$DB" --actor tester "$@"; }

# An RA CA, an RA certificate (cmcRA + clientAuth) and one without cmcRA.
RA=$T/ra
mkdir -p "$RA"
gen() { certtool --generate-privkey --key-type=ecdsa --curve=secp256r1 --outfile "$1" 2>/dev/null; }
gen "$RA/ca.key"
printf 'cn = "est-coaps Test RA CA"\nca\ncert_signing_key\nexpiration_days = 365\n' >"$RA/ca.tmpl"
certtool --generate-self-signed --load-privkey "$RA/ca.key" --template "$RA/ca.tmpl" \
  --outfile "$RA/ca.crt" 2>/dev/null || it_fail "RA CA"
leaf() { # name cn extra
  gen "$RA/$1.key"
  printf 'cn = "%s"\ntls_www_client\nsigning_key\nexpiration_days = 30\n%b' "$2" "$3" >"$RA/$1.tmpl"
  certtool --generate-certificate --load-privkey "$RA/$1.key" --load-ca-certificate "$RA/ca.crt" \
    --load-ca-privkey "$RA/ca.key" --template "$RA/$1.tmpl" --outfile "$RA/$1.crt" 2>/dev/null ||
    it_fail "RA leaf $1"
}
leaf ra "registrar-1" 'key_purpose_oid = 1.3.6.1.5.5.7.3.28\n'
leaf plain "not-an-ra" ''
chmod 600 "$RA"/*.key

HP=$(it_free_tcp_port)
est_start "https_listen 127.0.0.1 $HP" "https_cert $T/pki/server.crt" \
  "https_key $T/pki/server.key" "ra_trust $RA/ca.crt" "ra_policy auto" \
  "idevid_policy manual" "retry_after 9" "pop_linking verify"
LOG=$T/coapd.log
U=https://127.0.0.1:$HP/.well-known/est

# post WHO CSR_B64 OP [curl args...]: status code; body in $T/body.
post() {
  local who=$1 csr=$2 op=$3
  shift 3
  curl -s --max-time 10 --cacert "$PKI/ca.crt" --cert "$who.crt" --key "$who.key" \
    -H 'Content-Type: application/pkcs10' --data-binary @"$csr" -o "$T/body" \
    -w '%{http_code}' "$@" "$U/$op"
}
b64csr() { est_csr "$1.key" "$1.csr" "$2" "${@:3}" && base64 -w 64 "$1.csr" >"$1.b64"; }
dev_chain() { openssl x509 -in "$1" -outform DER | base64 -w 0; }
IDEV=$(dev_chain "$PKI/idevid.crt")

# 1. No device named: the device is its CSR key; ra_policy auto issues,
# and the row names the RA. The challengePassword is not checked against
# this TLS session: it binds the device's own session with the RA, which
# checked it (RFC 9148 §5). Sent by the device itself, it is refused.
b64csr "$T/k1" gw-1 'challenge_password = "bound-to-the-device-session"'
code=$(post "$PKI/idevid" "$T/k1.b64" simpleenroll)
[ "$code" = 403 ] && grep -q "POP linking" "$T/body" || it_fail "PoP, direct: $code $(cat "$T/body")"
code=$(post "$RA/ra" "$T/k1.b64" simpleenroll)
[ "$code" = 200 ] || it_fail "RA, no device: $code $(cat "$T/body")"
base64 -d "$T/body" | openssl pkcs7 -inform DER -print_certs -noout | grep -q "subject=CN = gw-1" ||
  it_fail "RA, no device: no certificate for CN=gw-1"
ctl list --json | /usr/bin/python3 -c '
import json, sys
r = json.load(sys.stdin)
assert len(r) == 1 and r[0]["state"] == "issued", r
assert r[0]["ra"] == "CN=registrar-1", r[0]
assert r[0]["clientClass"] is None, r[0]
' || it_fail "RA row: $(ctl list --json)"
ctl audit | grep -q "direct, via RA CN=registrar-1" || it_fail "audit: $(ctl audit)"
# ... but an RA cannot renew a device it does not name.
code=$(post "$RA/ra" "$T/k1.b64" simplereenroll)
[ "$code" = 403 ] && grep -q "needs the device's certificate" "$T/body" ||
  it_fail "RA sren without a device: $code $(cat "$T/body")"

# 2. The RA names the device by its IDevID: idevid_policy manual applies,
# 202 + Retry-After, and the row is the device's with the RA beside it.
b64csr "$T/k2" idevid-0001
code=$(post "$RA/ra" "$T/k2.b64" simpleenroll -D "$T/hdr" -H "EST-Device-Chain: $IDEV")
[ "$code" = 202 ] || it_fail "RA for an IDevID: $code $(cat "$T/body")"
grep -qi '^Retry-After: 9' "$T/hdr" || it_fail "no Retry-After 9: $(cat "$T/hdr")"
grep -q 'https request op=simpleenroll status=202 .*client="serialNumber=0001,CN=idevid-0001,O=est-coaps".* ra="CN=registrar-1"' "$LOG" ||
  it_fail "202 log line: $(grep 'https request' "$LOG")"
fp=$(openssl x509 -in "$PKI/idevid.crt" -outform DER | sha256sum | cut -d' ' -f1)
id=$(ctl list --state pending --json | /usr/bin/python3 -c '
import json, sys
fp = sys.argv[1]
r = json.load(sys.stdin)
assert len(r) == 1, r
x = r[0]
assert x["ra"] == "CN=registrar-1" and x["clientClass"] == "idevid", x
assert x["clientFingerprint"] == fp, (x, fp)
assert "idevid-0001" in x["client"] and x["clientSerial"], x
print(x["id"])' "$fp") || it_fail "pending RA row: $(ctl list --json)"
ctl show "$id" | grep -q "via RA  *CN=registrar-1" || it_fail "show: $(ctl show "$id")"
ctl audit | grep -q "pending .*via RA CN=registrar-1" || it_fail "audit pending: $(ctl audit)"
ctl approve "$id" >/dev/null || it_fail "approve"
# The device itself collects it over CoAP: the same request (same key,
# same IDevID), no second row.
est_req gnutls idevid post /est/sen -t 286 -f "$T/k2.csr" -o "$T/k2.p7"
it_expect_code 2.04
[ "$(ctl list --json | /usr/bin/python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')" = 2 ] ||
  it_fail "the device's CoAP collect made a new row: $(ctl list --json)"
# And the RA's resend gets the same certificate bytes.
code=$(post "$RA/ra" "$T/k2.b64" simpleenroll -H "EST-Device-Chain: $IDEV")
[ "$code" = 200 ] || it_fail "RA resend after approval: $code"
base64 -d "$T/body" >"$T/k2.ra.p7"
cmp -s "$T/k2.p7" "$T/k2.ra.p7" || it_fail "the RA's resend got other bytes than the device"
base64 -d "$T/body" | openssl pkcs7 -inform DER -print_certs >"$T/k2.pem"

# 3. The RA renews an LDevID it names: sren rules (same subject) apply.
LD=$(openssl x509 -in "$T/k2.pem" -outform DER | base64 -w 0)
code=$(post "$RA/ra" "$T/k2.b64" simplereenroll -H "EST-Device-Chain: $LD")
[ "$code" = 200 ] || it_fail "RA sren for an LDevID: $code $(cat "$T/body")"
b64csr "$T/k3" someone-else
code=$(post "$RA/ra" "$T/k3.b64" simplereenroll -H "EST-Device-Chain: $LD")
[ "$code" = 403 ] || it_fail "RA sren with another subject: $code $(cat "$T/body")"

# 4. Refusals: a device chain nobody trusts; a header that is not base64;
# the header from a client that is no RA (the IDevID itself, a certificate
# of the RA CA without cmcRA).
ROGUE=$(dev_chain "$PKI/rogue.crt")
code=$(post "$RA/ra" "$T/k1.b64" simpleenroll -H "EST-Device-Chain: $ROGUE")
[ "$code" = 403 ] || it_fail "RA for a rogue device: $code"
code=$(post "$RA/ra" "$T/k1.b64" simpleenroll -H "EST-Device-Chain: not*base64")
[ "$code" = 400 ] && grep -q "EST-Device-Chain is not" "$T/body" || it_fail "bad header: $code $(cat "$T/body")"
code=$(post "$PKI/idevid" "$T/k1.b64" simpleenroll -H "EST-Device-Chain: $IDEV")
[ "$code" = 403 ] && grep -q "only taken from an RA" "$T/body" ||
  it_fail "a device naming a device: $code $(cat "$T/body")"
code=$(post "$RA/plain" "$T/k1.b64" simpleenroll -H "EST-Device-Chain: $IDEV")
[ "$code" = 403 ] || it_fail "no cmcRA: $code $(cat "$T/body")"
code=$(post "$RA/plain" "$T/k1.b64" simpleenroll)
[ "$code" = 403 ] || it_fail "no cmcRA, no device: $code"

# 5. ra_policy manual (after a reload): an RA's unnamed device waits.
sed -i 's/^plugin_opt_ra_policy auto/plugin_opt_ra_policy manual/' "$CONF"
before=$(wc -l <"$LOG")
kill -HUP "${IT_PIDS[coapd]}"
for ((i = 0; i < 100; i++)); do
  tail -n +"$((before + 1))" "$LOG" | grep -q "reloaded:" && break
  sleep 0.1
done
tail -n +"$((before + 1))" "$LOG" | grep -q "reloaded:" || it_fail "no reload: $(tail -3 "$LOG")"
b64csr "$T/k4" gw-4
code=$(post "$RA/ra" "$T/k4.b64" simpleenroll)
[ "$code" = 202 ] || it_fail "ra_policy manual: $code $(cat "$T/body")"
est_stop
it_pass
