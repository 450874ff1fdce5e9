#!/usr/bin/env bash
# The CA key on a PKCS#11 token (docs/decisions.md §20): SoftHSM2 through
# p11-kit, ca_key an RFC 7512 URI, the PIN from ca_key_pin_file or from
# pin-value in the URI; the key file is gone before coapd starts. sen,
# sren, skg and skc (est-enroll, coap-client-gnutls/-openssl) get
# certificates signed on the token that openssl verifies against ca.crt,
# each as a separate response (the signature runs on a thread); the CRL
# is signed there too, at start and after estctl revoke. The token
# folder moved away: 5.03 + Max-Age 5 "CA key unavailable, retry later",
# an error in the log; moved back: the next request is issued (the plugin
# opens PKCS#11 again), also with pkcs11_module. A wrong PIN, no PIN, a
# token that is not there, a PIN file others may read: coapd -t and coapd
# exit 1 with FILE:LINE and why. No PIN ever reaches a log.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/est_lib.sh"
it_init est_hsm
[ -x "${EST_ENROLL:-}" ] || it_fail "EST_ENROLL is not set"
[ -x "${ESTCTL:-}" ] || it_fail "ESTCTL is not set"
command -v softhsm2-util >/dev/null || it_fail "no softhsm2-util (scripts/deps.sh installs softhsm2)"
PY=/usr/bin/python3
MODULE=/usr/lib/softhsm/libsofthsm2.so
[ -e "$MODULE" ] || it_fail "no $MODULE"
# PINs nothing else in a log can contain by chance (not hex, not decimal).
PIN=Kq738291Zx
SOPIN=Sv551177Wy
BADPIN=Kq000000Zx

PKI=$T/pki
it_pki "$PKI"
# A private SoftHSM2 whose tokens live in $TOKENS; coapd inherits
# SOFTHSM2_CONF (it_coapd_start, it_coapd_run).
TOKENS=$T/tokens
mkdir -m 700 "$TOKENS"
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' "$TOKENS" \
  >"$T/softhsm2.conf"
export SOFTHSM2_CONF=$T/softhsm2.conf
softhsm2-util --init-token --free --label est-ca --pin "$PIN" --so-pin "$SOPIN" >"$T/hsm-init.out" 2>&1 ||
  it_fail "softhsm2-util --init-token: $(cat "$T/hsm-init.out")"
openssl pkcs8 -topk8 -nocrypt -in "$PKI/ca.key" -out "$T/ca.p8" 2>"$T/p8.out" || it_fail "openssl pkcs8: $(cat "$T/p8.out")"
softhsm2-util --import "$T/ca.p8" --token est-ca --label ca --id 01 --pin "$PIN" >"$T/hsm-import.out" 2>&1 ||
  it_fail "softhsm2-util --import: $(cat "$T/hsm-import.out")"
p11tool --login --set-pin "$PIN" --list-privkeys "pkcs11:token=est-ca" 2>/dev/null |
  grep -q "object=ca;type=private" || it_fail "the CA key is not on the token"
# The key lives on the token only.
rm -f "$PKI/ca.key" "$T/ca.p8"
URI="pkcs11:token=est-ca;object=ca;type=private"
printf '%s\n' "$PIN" >"$T/ca.pin"
chmod 600 "$T/ca.pin"

# no_pin_in_logs: neither PIN is in any coapd or est-enroll log so far.
no_pin_in_logs() {
  local f
  for f in "$T"/*.log "$T"/*.enroll; do
    [ -f "$f" ] || continue
    ! grep -aqF -e "$PIN" -e "$BADPIN" "$f" || it_fail "a PIN is in $f: $(grep -aF -e "$PIN" -e "$BADPIN" "$f" | head -3)"
  done
}
# pin_value_hidden LOG: every pin-value= in LOG is pin-value=(hidden).
pin_value_hidden() {
  ! sed 's/pin-value=(hidden)//g' "$1" | grep -aq 'pin-value=' ||
    it_fail "$1 shows a pin-value: $(sed 's/pin-value=(hidden)//g' "$1" | grep -a 'pin-value=' | head -3)"
}
# ossl_verify PEM: the first certificate in PEM chains to ca.crt (openssl).
ossl_verify() {
  openssl verify -CAfile "$PKI/ca.crt" "$1" >"$T/ossl-verify.out" 2>&1 ||
    it_fail "openssl verify $1: $(cat "$T/ossl-verify.out")"
  grep -q ": OK$" "$T/ossl-verify.out" || it_fail "openssl verify $1: $(cat "$T/ossl-verify.out")"
}
# enroll LOG ARGS...: est-enroll (bounded, libcoap's PDU dumps in LOG,
# $T/NAME.enroll: not among the *.log that it_fail shows)
# against $PORT with the test PKI as trust. Sets ENROLL_RC.
enroll() {
  local log=$1
  shift
  timeout -k 5 120 "$EST_ENROLL" --server "coaps://127.0.0.1:$PORT" --trust "$PKI/ca.crt" \
    --root /est --timeout 30 -vvv "$@" >"$log" 2>&1
  ENROLL_RC=$?
}
enroll_ok() { # LOG ARGS...
  enroll "$@"
  [ "$ENROLL_RC" = 0 ] || it_fail "est-enroll ${*:2}: exit $ENROLL_RC: $(grep -av '^libcoap:' "$1" | tail -5)"
  # docs/decisions.md §20: signed on the token's thread, so a separate CON.
  grep -aqE '^libcoap: v:1 t:CON c:2\.04 ' "$1" || it_fail "est-enroll ${*:2}: the 2.04 is not a separate CON"
}
# separate_con: the last it_coap's 2.04 came as a CON of its own.
separate_con() {
  grep -Eq '^v:1 t:CON c:2\.04 ' "$T/coap-$IT_COAP_N.all" ||
    it_fail "$1: the 2.04 did not come as a separate CON response: $(grep -E '^v:1 ' "$T/coap-$IT_COAP_N.all")"
}
# unavailable: the last it_coap got 5.03, Max-Age 5, "CA key unavailable".
unavailable() {
  it_expect_code 5.03
  it_expect_opt 'Max-Age:5'
  it_expect_diag
  grep -q "^5.03 CA key unavailable, retry later" "$IT_STDERR" || it_fail "$1: 5.03 diag: $(cat "$IT_STDERR")"
}
new_lines() { tail -n +"$(($1 + 1))" "$T/coapd.log"; }
# crl_ok N: CRL N was published (bounded wait), and openssl verifies its
# signature with ca.crt; its text in $T/crl.txt.
crl_ok() {
  local i
  for ((i = 0; i < 100; i++)); do
    grep -q "CRL $1 published to $CRL" "$T/coapd.log" && break
    sleep 0.1
  done
  grep -q "CRL $1 published to $CRL" "$T/coapd.log" || it_fail "CRL $1 not published: $(grep -i crl "$T/coapd.log" | tail -5)"
  openssl crl -inform DER -in "$CRL" -CAfile "$PKI/ca.crt" -noout -text >"$T/crl.txt" 2>&1 ||
    it_fail "openssl crl: $(cat "$T/crl.txt")"
  grep -q "verify OK" "$T/crl.txt" || it_fail "openssl did not verify CRL $1: $(cat "$T/crl.txt")"
}

# ---- 1. the PIN from ca_key_pin_file --------------------------------------
CRL=$T/ca.crl
est_start "ca_key $URI" "ca_key_pin_file $T/ca.pin" "keygen on" "crl_file $CRL"
PIN_CONF=$T/pinfile.conf
cp "$CONF" "$PIN_CONF"
it_coapd_run check -t -c "$PIN_CONF"
[ "$IT_RC" = 0 ] || it_fail "coapd -t with the CA key on the token: exit $IT_RC: $(tail -3 "$IT_LOG")"
est_req gnutls idevid get /est/crts
it_expect_code 2.05
est_p7_to_pem "$IT_PAYLOAD_FILE" "$T/crts.pem"
cmp -s <(certtool -i --infile "$T/crts.pem" --outder 2>/dev/null) \
  <(certtool -i --infile "$PKI/ca.crt" --outder 2>/dev/null) || it_fail "crts is not ca.crt"

# sen: est-enroll, then coap-client-gnutls with the whole exchange (-v 7):
# POST, empty ACK, CON 2.04, ACK.
enroll_ok "$T/e1.enroll" --cert "$PKI/idevid.crt" --key "$PKI/idevid.key" \
  enroll --subject CN=hsm-e1 --san-dns e1.example --key-file "$T/e1.key" --out "$T/e1.crt"
ossl_verify "$T/e1.crt"
[ "$(est_cert_pubkey "$T/e1.crt")" = "$(est_key_pubkey "$T/e1.key")" ] || it_fail "e1: not the CSR's key"
certtool -i --infile "$T/e1.crt" 2>/dev/null | grep -q "Signature Algorithm: ECDSA-SHA256" ||
  it_fail "e1: not signed ECDSA-SHA256 (the token key is P-256)"
est_csr "$T/g1.key" "$T/g1.csr" hsm-g1 'dns_name = "g1.example"'
est_req gnutls idevid post /est/sen -t 286 -f "$T/g1.csr" -v 7 -B 30
it_expect_code 2.04
it_expect_opt 'Content-Format:281'
est_expect_separate "sen"
est_p7_to_pem "$IT_PAYLOAD_FILE" "$T/g1.crt"
ossl_verify "$T/g1.crt"
# coap-client-openssl, 64-byte blocks, Accept 287: the bare certificate.
est_csr "$T/o1.key" "$T/o1.csr" hsm-o1
est_req openssl idevid post /est/sen -t 286 -A 287 -b 64 -f "$T/o1.csr" -B 30
it_expect_code 2.04
it_expect_opt 'Content-Format:287'
separate_con sen
est_der_to_pem "$IT_PAYLOAD_FILE" "$T/o1.crt"
ossl_verify "$T/o1.crt"
[ "$(est_cert_pubkey "$T/o1.crt")" = "$(est_key_pubkey "$T/o1.key")" ] || it_fail "o1: not the CSR's key"

# sren: est-enroll re-keys the LDevID from sen; coap-client-openssl renews
# g1 with its key.
enroll_ok "$T/e1r.enroll" --cert "$T/e1.crt" --key "$T/e1.key" \
  reenroll --key-file "$T/e1r.key" --out "$T/e1r.crt"
ossl_verify "$T/e1r.crt"
[ "$(est_cert_pubkey "$T/e1r.crt")" = "$(est_key_pubkey "$T/e1r.key")" ] || it_fail "e1r: not the new key"
certtool -i --infile "$T/e1r.crt" 2>/dev/null | grep -q "Subject: CN=hsm-e1$" || it_fail "e1r: subject"
est_req openssl "$T/g1" post /est/sren -t 286 -f "$T/g1.csr" -B 30
it_expect_code 2.04
separate_con sren
est_p7_to_pem "$IT_PAYLOAD_FILE" "$T/g1r.crt"
ossl_verify "$T/g1r.crt"

# skg / skc: the key made by the plugin, the certificate signed on the token.
enroll_ok "$T/s1.enroll" --cert "$PKI/idevid.crt" --key "$PKI/idevid.key" \
  serverkeygen --subject CN=hsm-s1 --key-out "$T/s1.key" --out "$T/s1.crt"
ossl_verify "$T/s1.crt"
[ "$(est_cert_pubkey "$T/s1.crt")" = "$(est_key_pubkey "$T/s1.key")" ] || it_fail "skg: key and certificate differ"
enroll_ok "$T/s2.enroll" --cert "$PKI/idevid.crt" --key "$PKI/idevid.key" \
  serverkeygen --subject CN=hsm-s2 --key-out "$T/s2.key" --out "$T/s2.crt" --single-cert
ossl_verify "$T/s2.crt"
[ "$(est_cert_pubkey "$T/s2.crt")" = "$(est_key_pubkey "$T/s2.key")" ] || it_fail "skc: key and certificate differ"
d=$T/kg
mkdir -p "$d"
est_csr "$d/csr.key" "$d/csr.der" hsm-kg
est_req gnutls idevid post /est/skc -t 286 -A 62 -f "$d/csr.der" -B 30
it_expect_code 2.04
separate_con skc
$PY "$(dirname "$0")/mpsplit.py" "$IT_PAYLOAD_FILE" "$d" 287 || it_fail "skc multipart"
est_der_to_pem "$d/cert.der" "$d/cert.pem"
ossl_verify "$d/cert.pem"
certtool -k --inder --infile "$d/key.der" --outfile "$d/key.pem" 2>/dev/null || it_fail "skc: no PKCS#8 key"
[ "$(est_cert_pubkey "$d/cert.pem")" = "$(est_key_pubkey "$d/key.pem")" ] || it_fail "skc (gnutls): key and certificate differ"

# The CRL is signed on the token too: at start, and after a revocation.
crl_ok 1
serial=$(sqlite3 -cmd ".timeout 5000" "$T/est.db" "select serial from certificates where subject = 'CN=hsm-o1'")
[ -n "$serial" ] || it_fail "no serial for CN=hsm-o1 in the database"
"$ESTCTL" --db "$T/est.db" --actor tester revoke "$serial" --reason keyCompromise >"$T/revoke.out" 2>&1 ||
  it_fail "estctl revoke: $(cat "$T/revoke.out")"
crl_ok 2
grep -A5 "Serial Number: $(echo "$serial" | tr a-f A-F)" "$T/crl.txt" | grep -q "Key Compromise" ||
  it_fail "CRL 2 does not list $serial as keyCompromise: $(cat "$T/crl.txt")"
openssl crl -inform DER -in "$CRL" -out "$T/crl.pem"
if openssl verify -crl_check -CAfile "$PKI/ca.crt" -CRLfile "$T/crl.pem" "$T/o1.crt" >"$T/v-revoked.txt" 2>&1; then
  it_fail "openssl verify -crl_check accepts the revoked o1"
fi
grep -q "certificate revoked" "$T/v-revoked.txt" || it_fail "openssl does not call o1 revoked: $(cat "$T/v-revoked.txt")"

# ---- 2. the token goes away while coapd runs, and comes back --------------
log0=$(wc -l <"$T/coapd.log")
mv "$TOKENS" "$TOKENS.away"
est_csr "$T/u1.key" "$T/u1.csr" hsm-u1
est_req gnutls idevid post /est/sen -t 286 -f "$T/u1.csr" -B 30
unavailable "sen, token away"
new_lines "$log0" | grep -Eq " error .*the CA key's token did not sign" ||
  it_fail "no error 'the CA key's token did not sign' in the log: $(new_lines "$log0" | tail -5)"
# It stays away: the next ones are 5.03 too (openssl sren, skg); est-enroll
# takes it as pending (exit 3) and keeps its new key for the next run.
# (A new CSR: a repeated one is answered from the store, unsigned.)
est_csr "$T/g1b.key" "$T/g1b.csr" hsm-g1 'dns_name = "g1.example"'
est_req openssl "$T/g1" post /est/sren -t 286 -f "$T/g1b.csr" -B 30
unavailable "sren, token away"
est_req openssl idevid post /est/skg -t 286 -f "$T/u1.csr" -B 30
unavailable "skg, token away"
enroll "$T/u2.enroll" --cert "$PKI/idevid.crt" --key "$PKI/idevid.key" \
  enroll --subject CN=hsm-u2 --key-file "$T/u2.key" --out "$T/u2.crt" --max-wait 0
[ "$ENROLL_RC" = 3 ] || it_fail "est-enroll, token away: exit $ENROLL_RC, expected 3 (pending): $(grep -av '^libcoap:' "$T/u2.enroll" | tail -5)"
[ ! -e "$T/u2.crt" ] || it_fail "est-enroll wrote a certificate while the token was away"
# What needs no signature is still served.
est_req gnutls idevid get /est/crts
it_expect_code 2.05
kill -0 "${IT_PIDS[coapd]}" 2>/dev/null || it_fail "coapd died while the token was away"
mv "$TOKENS.away" "$TOKENS"
est_req gnutls idevid post /est/sen -t 286 -f "$T/u1.csr" -B 30
it_expect_code 2.04
separate_con "sen, token back"
est_p7_to_pem "$IT_PAYLOAD_FILE" "$T/u1.crt"
ossl_verify "$T/u1.crt"
enroll_ok "$T/u2b.enroll" --cert "$PKI/idevid.crt" --key "$PKI/idevid.key" \
  enroll --subject CN=hsm-u2 --key-file "$T/u2.key" --out "$T/u2.crt" --max-wait 0
ossl_verify "$T/u2.crt"
[ "$(est_cert_pubkey "$T/u2.crt")" = "$(est_key_pubkey "$T/u2.key")" ] || it_fail "u2: not the key kept while pending"
# A second outage, for sren: the recovery is not once only.
mv "$TOKENS" "$TOKENS.away"
enroll "$T/u3.enroll" --cert "$T/e1r.crt" --key "$T/e1r.key" \
  reenroll --key-file "$T/e1r.key" --out "$T/e1rr.crt" --max-wait 0
[ "$ENROLL_RC" = 3 ] || it_fail "est-enroll reenroll, token away again: exit $ENROLL_RC, expected 3"
grep -aqE '^libcoap: v:1 t:(CON|ACK) c:5\.03 .*Max-Age:5' "$T/u3.enroll" ||
  it_fail "est-enroll reenroll, token away again: no 5.03 with Max-Age 5 on the wire"
mv "$TOKENS.away" "$TOKENS"
enroll_ok "$T/u3b.enroll" --cert "$T/e1r.crt" --key "$T/e1r.key" \
  reenroll --key-file "$T/e1r.key" --out "$T/e1rr.crt" --max-wait 0
ossl_verify "$T/e1rr.crt"
[ "$(new_lines "$log0" | grep -c "the CA key's token did not sign")" -ge 2 ] ||
  it_fail "the second outage was not logged"

# SIGHUP reads the configuration again; the token key still signs after it.
log0=$(wc -l <"$T/coapd.log")
kill -HUP "${IT_PIDS[coapd]}"
for ((i = 0; i < 100; i++)); do
  new_lines "$log0" | grep -q "reloaded:" && break
  sleep 0.1
done
new_lines "$log0" | grep -q "reloaded:" || it_fail "no reload after SIGHUP: $(new_lines "$log0" | tail -5)"
est_csr "$T/h1.key" "$T/h1.csr" hsm-h1
est_req openssl idevid post /est/sen -t 286 -f "$T/h1.csr" -B 30
it_expect_code 2.04
separate_con "sen after SIGHUP"
est_p7_to_pem "$IT_PAYLOAD_FILE" "$T/h1.crt"
ossl_verify "$T/h1.crt"
est_stop
# Every certificate is recorded as issued: e1 g1 o1 e1r g1r s1 s2 kg u1 u2 e1rr h1.
n=$("$ESTCTL" --db "$T/est.db" certs --json | $PY -c 'import json,sys; print(len(json.load(sys.stdin)))') ||
  it_fail "estctl certs"
[ "$n" = 12 ] || it_fail "estctl certs lists $n certificates, expected 12: $("$ESTCTL" --db "$T/est.db" certs)"
no_pin_in_logs
cp "$T/coapd.log" "$T/coapd-pinfile.log"

# ---- 3. the PIN in the URI (pin-value), and pkcs11_module -----------------
# Debug logging, so that GnuTLS and libcoap say all they would.
EST_LOG_LEVEL=debug est_start "ca_key $URI?pin-value=$PIN" "pkcs11_module $MODULE" \
  "db_path $T/pv.db"
est_csr "$T/p1.key" "$T/p1.csr" hsm-p1
est_req openssl idevid post /est/sen -t 286 -f "$T/p1.csr" -B 30
it_expect_code 2.04
separate_con "sen, pin-value"
est_p7_to_pem "$IT_PAYLOAD_FILE" "$T/p1.crt"
ossl_verify "$T/p1.crt"
# With pkcs11_module given, the token comes back too (the module is added
# again after PKCS#11 is shut down).
log0=$(wc -l <"$T/coapd.log")
mv "$TOKENS" "$TOKENS.away"
est_csr "$T/p1b.key" "$T/p1b.csr" hsm-p1b
est_req gnutls idevid post /est/sen -t 286 -f "$T/p1b.csr" -B 30
unavailable "sen, pin-value, token away"
mv "$TOKENS.away" "$TOKENS"
enroll_ok "$T/p2.enroll" --cert "$PKI/idevid.crt" --key "$PKI/idevid.key" \
  enroll --subject CN=hsm-p2 --key-file "$T/p2.key" --out "$T/p2.crt" --max-wait 0
ossl_verify "$T/p2.crt"
new_lines "$log0" | grep -Eq " error .*the CA key's token did not sign" || it_fail "pin-value: the outage was not logged"
est_stop
pin_value_hidden "$T/coapd.log"
no_pin_in_logs
cp "$T/coapd.log" "$T/coapd-pinvalue.log"

# ---- 4. configurations coapd refuses at start ------------------------------
# bad_start NAME WANT-RE: coapd -t and coapd on $T/NAME.conf both exit 1,
# the log names FILE:LINE and matches WANT-RE, and holds no PIN.
bad_start() {
  local name=$1 want=$2
  it_coapd_run "$name" -t -c "$T/$name.conf"
  [ "$IT_RC" = 1 ] || it_fail "$name: coapd -t exit $IT_RC, expected 1: $(tail -3 "$IT_LOG")"
  grep -Eq "$T/$name.conf:[0-9]+: .*$want" "$IT_LOG" || it_fail "$name: no FILE:LINE '$want': $(tail -3 "$IT_LOG")"
  grep -q "configuration OK" "$IT_LOG" && it_fail "$name: coapd -t said configuration OK"
  it_coapd_run "$name-run" -c "$T/$name.conf"
  [ "$IT_RC" = 1 ] || it_fail "$name: coapd exit $IT_RC, expected 1: $(tail -3 "$IT_LOG")"
  grep -Eq "$want" "$IT_LOG" || it_fail "$name: coapd's log does not say '$want': $(tail -3 "$IT_LOG")"
  grep -q "$IT_READY_TEXT" "$IT_LOG" && it_fail "$name: coapd got ready"
  no_pin_in_logs
}
printf '%s\n' "$BADPIN" >"$T/bad.pin"
chmod 600 "$T/bad.pin"
sed "s|^plugin_opt_ca_key_pin_file .*|plugin_opt_ca_key_pin_file $T/bad.pin|" "$PIN_CONF" >"$T/wrong-pin.conf"
bad_start wrong-pin "ca_key pkcs11:token=est-ca;object=ca;type=private: the token refused the PIN"
sed '/^plugin_opt_ca_key_pin_file /d' "$PIN_CONF" >"$T/no-pin.conf"
bad_start no-pin "ca_key pkcs11:token=est-ca;object=ca;type=private: the token needs a PIN"
sed 's|token=est-ca;|token=no-such-token;|' "$PIN_CONF" >"$T/no-token.conf"
bad_start no-token "ca_key pkcs11:token=no-such-token;object=ca;type=private: no such private key on any token"
sed 's|object=ca;|object=no-such-key;|' "$PIN_CONF" >"$T/no-object.conf"
# A token without that key: refused, naming the URI.
bad_start no-object "ca_key pkcs11:token=est-ca;object=no-such-key;type=private: no such private key on any token"
# The PIN file is a secret like a key file: not for others to read.
cp "$T/ca.pin" "$T/open.pin"
chmod 644 "$T/open.pin"
sed "s|^plugin_opt_ca_key_pin_file .*|plugin_opt_ca_key_pin_file $T/open.pin|" "$PIN_CONF" >"$T/open-pin.conf"
bad_start open-pin "ca_key_pin_file: .*open.pin"
# The token folder missing at start.
cp "$PIN_CONF" "$T/token-away.conf"
mv "$TOKENS" "$TOKENS.away"
bad_start token-away "ca_key pkcs11:token=est-ca;object=ca;type=private: "
mv "$TOKENS.away" "$TOKENS"
# A PIN file for a key file; a pkcs11_module that is no module.
sed "s|^plugin_opt_ca_key .*|plugin_opt_ca_key $PKI/client.key|" "$PIN_CONF" >"$T/pin-for-file.conf"
bad_start pin-for-file "ca_key_pin_file needs a pkcs11: ca_key"
(cat "$PIN_CONF" && echo "plugin_opt_pkcs11_module $T/no-such-module.so") >"$T/bad-module.conf"
bad_start bad-module "pkcs11_module '$T/no-such-module.so'"
# A wrong pin-value: refused, and neither the URI's value nor the PIN shows.
sed -e "s|^plugin_opt_ca_key .*|plugin_opt_ca_key $URI?pin-value=$BADPIN|" -e '/^plugin_opt_ca_key_pin_file /d' \
  "$PIN_CONF" >"$T/wrong-pin-value.conf"
bad_start wrong-pin-value "ca_key pkcs11:token=est-ca;object=ca;type=private\?pin-value=\(hidden\): the token refused the PIN"
pin_value_hidden "$T/wrong-pin-value.log"

# After all that the token still takes the right PIN.
it_coapd_run check-after -t -c "$PIN_CONF"
[ "$IT_RC" = 0 ] || it_fail "coapd -t after the refused starts: exit $IT_RC: $(tail -3 "$IT_LOG")"
no_pin_in_logs

# ---- 5. coapd's own DTLS key on the token too (docs/decisions.md §20) -----
openssl pkcs8 -topk8 -nocrypt -in "$PKI/server.key" -out "$T/srv.p8" 2>"$T/p8.out" ||
  it_fail "openssl pkcs8: $(cat "$T/p8.out")"
softhsm2-util --import "$T/srv.p8" --token est-ca --label dtls --id 02 --pin "$PIN" \
  >"$T/hsm-import2.out" 2>&1 || it_fail "softhsm2-util --import: $(cat "$T/hsm-import2.out")"
rm -f "$T/srv.p8"
DURI="pkcs11:token=est-ca;object=dtls;type=private"
PORT=$(it_free_port)
HP=$(it_free_tcp_port)
# The HTTPS front end's key is the same token key (https_key, §20).
sed -e "s|^dtls_key .*|dtls_key $DURI\ndtls_key_pin_file $T/ca.pin|" \
  -e "s|^listen 127.0.0.1 .*|listen 127.0.0.1 $PORT|" -e "s|^listen ::1 .*|listen ::1 $PORT|" \
  "$PIN_CONF" >"$T/dtls-token.conf"
printf '%s\n' "plugin_opt_https_listen 127.0.0.1 $HP" "plugin_opt_https_cert $PKI/server.crt" \
  "plugin_opt_https_key $DURI" "plugin_opt_https_key_pin_file $T/ca.pin" >>"$T/dtls-token.conf"
mv "$PKI/server.key" "$PKI/server.key.away"
it_coapd_run dtls-check -t -c "$T/dtls-token.conf"
[ "$IT_RC" = 0 ] || it_fail "coapd -t with dtls_key on the token: exit $IT_RC: $(tail -3 "$IT_LOG")"
# The wrong PIN, and a token key that is not dtls_cert's: FILE:LINE.
sed "s|^dtls_key_pin_file .*|dtls_key_pin_file $T/bad.pin|" "$T/dtls-token.conf" >"$T/dtls-badpin.conf"
it_coapd_run dtls-badpin -t -c "$T/dtls-badpin.conf"
[ "$IT_RC" = 1 ] || it_fail "dtls_key with a wrong PIN: exit $IT_RC"
grep -q "dtls-badpin.conf:[0-9]*: dtls_key: the token key does not sign (PIN refused" "$IT_LOG" ||
  it_fail "dtls_key wrong PIN: $(tail -3 "$IT_LOG")"
sed "s|object=dtls|object=ca|" "$T/dtls-token.conf" >"$T/dtls-other.conf"
it_coapd_run dtls-other -t -c "$T/dtls-other.conf"
[ "$IT_RC" = 1 ] || it_fail "dtls_key not matching dtls_cert: exit $IT_RC"
grep -q "dtls_key does not match dtls_cert" "$IT_LOG" || it_fail "dtls_key mismatch: $(tail -3 "$IT_LOG")"
# Served: handshakes sign on the token (with the warning that says so),
# and the CA key signs there too; a reload keeps it working.
it_coapd_start "$T/dtls-token.conf" dtls
it_expect_log dtls "dtls_key on a token: libcoap 4.3.1 logs in and signs on the loop thread"
est_req gnutls idevid get /est/crts
it_expect_code 2.05
est_req openssl idevid get /est/crts
it_expect_code 2.05
"$EST_ENROLL" --server "coaps://127.0.0.1:$PORT" --trust "$PKI/ca.crt" --server-name localhost \
  --cert "$PKI/idevid.crt" --key "$PKI/idevid.key" enroll --subject CN=dtls-token \
  --key-file "$T/dt.key" --out "$T/dt.crt" --max-wait 0 >"$T/dt.enroll" 2>&1 ||
  it_fail "est-enroll with dtls_key on the token: $(tail -3 "$T/dt.enroll")"
openssl verify -CAfile "$PKI/ca.crt" "$T/dt.crt" >/dev/null 2>&1 || it_fail "dt.crt does not verify"
# HTTPS: TLS 1.2 and 1.3 handshakes signed on the token, and a simpleenroll
# whose certificate the token-held CA key signs.
it_expect_log dtls "https_key on a token: GnuTLS signs every TLS handshake"
for v in "--tlsv1.3" "--tls-max 1.2"; do
  # shellcheck disable=SC2086 # two words for --tls-max
  code=$(curl -s --max-time 10 $v --cacert "$PKI/ca.crt" -o "$T/cacerts.b64" -w '%{http_code}' \
    "https://127.0.0.1:$HP/.well-known/est/cacerts")
  [ "$code" = 200 ] || it_fail "HTTPS cacerts with the token key ($v): $code"
done
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/h.key" \
  -subj /CN=https-token -outform DER -out "$T/h.csr" 2>/dev/null || it_fail "openssl req"
base64 "$T/h.csr" >"$T/h.b64"
code=$(curl -s --max-time 10 --cacert "$PKI/ca.crt" --cert "$PKI/idevid.crt" --key "$PKI/idevid.key" \
  -H 'Content-Type: application/pkcs10' --data-binary @"$T/h.b64" -o "$T/h.p7.b64" -w '%{http_code}' \
  "https://127.0.0.1:$HP/.well-known/est/simpleenroll")
[ "$code" = 200 ] || it_fail "HTTPS simpleenroll with the token keys: $code $(cat "$T/h.p7.b64")"
base64 -d "$T/h.p7.b64" | openssl pkcs7 -inform DER -print_certs -out "$T/h.crt" 2>/dev/null ||
  it_fail "HTTPS simpleenroll answer is not PKCS#7"
openssl verify -CAfile "$PKI/ca.crt" "$T/h.crt" >/dev/null 2>&1 || it_fail "h.crt does not verify"
kill -HUP "${IT_PIDS[dtls]}"
for _ in $(seq 50); do grep -q "dtls-token.conf reloaded" "$T/dtls.log" && break; sleep 0.1; done
grep -q "dtls-token.conf reloaded" "$T/dtls.log" || it_fail "no reload: $(tail -3 "$T/dtls.log")"
est_req gnutls idevid get /est/crts
it_expect_code 2.05
it_coapd_stop dtls
mv "$PKI/server.key.away" "$PKI/server.key"
no_pin_in_logs
it_pass
