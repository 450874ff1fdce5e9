#!/usr/bin/env bash
# The published CRL (RFC 5280 §5, docs/decisions.md §14): coapd signs one
# at start, again after every estctl revoke, and again halfway to its
# nextUpdate; each has a larger CRL number (also across restarts), the
# revoked serial with its reason code, and OpenSSL verifies it and calls a
# revoked certificate revoked. crl_url puts a CRL Distribution Point in
# every certificate; estctl crl hands out the CRL; the revoked event
# carries the number of the first CRL that lists the certificate.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/est_lib.sh"
it_init est_crl
[ -x "${ESTCTL:-}" ] || it_fail "ESTCTL is not set"
command -v openssl >/dev/null || it_fail "openssl is missing (scripts/deps.sh installs it)"
DB=$T/est.db
CRL=$T/pub/ca.crl
mkdir -p "$T/pub"

# wait_crl N: the log says CRL N was published (bounded).
wait_crl() {
  local i
  for ((i = 0; i < 100; i++)); do
    grep -q "CRL $1 published to $CRL" "$T/coapd.log" && return 0
    sleep 0.1
  done
  it_fail "CRL $1 not published: $(grep -i crl "$T/coapd.log" | tail -5)"
}
# crl_text: the CRL as OpenSSL reads it, its signature checked against ca.crt.
crl_text() {
  openssl crl -inform DER -in "$CRL" -CAfile "$PKI/ca.crt" -noout -text >"$T/crl.txt" 2>&1 ||
    it_fail "openssl crl: $(cat "$T/crl.txt")"
  grep -q "verify OK" "$T/crl.txt" || it_fail "openssl did not verify the CRL: $(cat "$T/crl.txt")"
}

est_start "crl_file $CRL" "crl_validity 3600" "crl_url http://crl.example/est/ca.crl"
wait_crl 1
crl_text
grep -q "X509v3 CRL Number:" "$T/crl.txt" && grep -A1 "X509v3 CRL Number:" "$T/crl.txt" | grep -qx " *1" ||
  it_fail "CRL 1: no CRL number 1: $(cat "$T/crl.txt")"
grep -q "No Revoked Certificates" "$T/crl.txt" || it_fail "CRL 1 is not empty"
grep -q "X509v3 Authority Key Identifier" "$T/crl.txt" || it_fail "CRL 1 has no AKI"
grep -Eq "Next Update: " "$T/crl.txt" || it_fail "no nextUpdate"
[ "$(stat -c %a "$CRL")" = 644 ] || it_fail "the CRL is mode $(stat -c %a "$CRL"), want 644"

# A certificate with the distribution point, then revoked.
est_csr "$T/dev.key" "$T/dev.csr" dev-c 'dns_name = "dev-c.example"'
est_req gnutls idevid post /est/sen -t 286 -f "$T/dev.csr"
it_expect_code 2.04
est_p7_to_pem "$IT_PAYLOAD_FILE" "$T/dev.crt"
openssl x509 -in "$T/dev.crt" -noout -text | grep -q "URI:http://crl.example/est/ca.crl" ||
  it_fail "no CRL Distribution Point in the certificate"
openssl crl -inform DER -in "$CRL" -out "$T/crl.pem"
openssl verify -crl_check -CAfile "$PKI/ca.crt" -CRLfile "$T/crl.pem" "$T/dev.crt" >"$T/v1.txt" 2>&1 ||
  it_fail "openssl verify before the revocation: $(cat "$T/v1.txt")"
serial=$(sql() { sqlite3 -cmd ".timeout 5000" "$DB" "$1"; }; sql "select serial from certificates where subject = 'CN=dev-c'")
"$ESTCTL" --db "$DB" --actor carol revoke "$serial" --reason keyCompromise >/dev/null 2>&1 ||
  it_fail "estctl revoke failed"
wait_crl 2
crl_text
upper=$(echo "$serial" | tr a-f A-F)
grep -A5 "Serial Number: $upper" "$T/crl.txt" | grep -q "Key Compromise" ||
  it_fail "CRL 2 does not list $upper with Key Compromise: $(cat "$T/crl.txt")"
openssl crl -inform DER -in "$CRL" -out "$T/crl.pem"
openssl verify -crl_check -CAfile "$PKI/ca.crt" -CRLfile "$T/crl.pem" "$T/dev.crt" >"$T/v2.txt" 2>&1 &&
  it_fail "openssl verify passed a revoked certificate: $(cat "$T/v2.txt")"
grep -q "certificate revoked" "$T/v2.txt" || it_fail "openssl: $(cat "$T/v2.txt")"
echo "openssl verify -crl_check: $(tr '\n' ' ' <"$T/v2.txt")"
# GnuTLS's certtool, a second reader, verifies it and lists the serial
# (it does not print entry extensions).
certtool --verify-crl --load-ca-certificate "$PKI/ca.crt" --infile "$T/crl.pem" \
  >"$T/ct.txt" 2>&1 || it_fail "certtool --verify-crl: $(cat "$T/ct.txt")"
certtool --crl-info --inder --infile "$CRL" 2>/dev/null | grep -q "Serial Number (hex): $serial" ||
  it_fail "certtool does not list $serial"

# estctl hands out the same CRL, DER or PEM.
"$ESTCTL" --db "$DB" crl --out "$T/got.crl" >"$T/ec.out" 2>&1 || it_fail "estctl crl: $(cat "$T/ec.out")"
grep -q "^CRL 2 written to" "$T/ec.out" || it_fail "estctl crl: $(cat "$T/ec.out")"
cmp -s "$T/got.crl" "$CRL" || it_fail "estctl crl gave another CRL than crl_file"
"$ESTCTL" --db "$DB" crl --out "$T/got.pem" --pem >/dev/null 2>&1 || it_fail "estctl crl --pem"
grep -q "BEGIN X509 CRL" "$T/got.pem" || it_fail "estctl crl --pem is not PEM"
# The revoked event names CRL 2, the first that lists it.
"$ESTCTL" --db "$DB" events >"$T/events.out" 2>&1 || it_fail "estctl events: $(cat "$T/events.out")"
grep 'events/revoked ' "$T/events.out" | grep -q '"crlNumber":2' ||
  it_fail "the revoked event lacks crlNumber 2: $(grep revoked "$T/events.out")"
est_stop

# Numbers only grow: a restart publishes CRL 3, still listing the serial.
: >"$T/coapd.log.old"
est_start "crl_file $CRL" "crl_validity 10"
wait_crl 3
crl_text
grep -q "Serial Number: $upper" "$T/crl.txt" || it_fail "CRL 3 forgot $upper"
# Signed again halfway to nextUpdate (10 s validity: every 5 s).
wait_crl 4
est_stop

# crl_file needs the database the revocations are in.
sed -i '/^plugin_opt_db_path /d' "$CONF"
timeout -k 5 20 "$COAPD" -c "$CONF" >"$T/nodb.log" 2>&1
[ $? = 1 ] || it_fail "crl_file without db_path started"
grep -q "crl_file needs plugin_opt_db_path" "$T/nodb.log" || it_fail "no clear error: $(cat "$T/nodb.log")"
echo "plugin_opt_crl_url ftp://x" >>"$CONF"
timeout -k 5 20 "$COAPD" -c "$CONF" -t >"$T/url.log" 2>&1
grep -q "crl_url.*must start with http://, https:// or ldap://" "$T/url.log" ||
  it_fail "a bad crl_url is not reported: $(cat "$T/url.log")"
it_pass
