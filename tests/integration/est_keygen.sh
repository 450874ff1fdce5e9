#!/usr/bin/env bash
# /skg and /skc (RFC 9148 §4.8, docs/decisions.md §10): multipart-core with an
# unencrypted PKCS#8 key (284) and the certificate as 281 (skg) or 287
# (skc); the key matches the certificate and is not the CSR's key.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/est_lib.sh"
it_init est_keygen

check_keygen() { # client fn cert-cf keytype-grep [coap-client args]
  local client=$1 fn=$2 cf=$3 ktype=$4 d=$T/$1-$2
  shift 4
  mkdir -p "$d"
  est_csr "$d/csr.key" "$d/csr.der" "kg-$client-$fn" 'dns_name = "kg.example"'
  est_req $client idevid post /est/$fn -t 286 -A 62 -f "$d/csr.der" "$@"
  it_expect_code 2.04
  # docs/decisions.md §8: the answer comes as a separate CON response.
  grep -Eq '^v:1 t:CON c:2\.04 ' "$T/coap-$IT_COAP_N.all" ||
    it_fail "$fn: the 2.04 did not come as a separate CON response"
  echo "$IT_OPTS" | grep -q 'Content-Format:62' || it_fail "$fn CF not 62: $IT_OPTS"
  /usr/bin/python3 "$(dirname "$0")/mpsplit.py" "$IT_PAYLOAD_FILE" "$d" $cf || it_fail "$fn multipart"
  if [ "$cf" = 281 ]; then
    est_p7_to_pem "$d/cert.der" "$d/cert.pem"
  else
    est_der_to_pem "$d/cert.der" "$d/cert.pem"
  fi
  est_verify "$d/cert.pem" "$T/ca.pem"
  certtool -k --inder --infile "$d/key.der" --outfile "$d/key.pem" 2>/dev/null ||
    it_fail "$fn: key part is not a PKCS#8 key certtool can read"
  certtool -k --infile "$d/key.pem" 2>/dev/null | grep -q "$ktype" || it_fail "$fn: key is not $ktype"
  [ "$(est_cert_pubkey "$d/cert.pem")" = "$(est_key_pubkey "$d/key.pem")" ] ||
    it_fail "$fn: key does not match the certificate"
  [ "$(est_cert_pubkey "$d/cert.pem")" != "$(est_key_pubkey "$d/csr.key")" ] ||
    it_fail "$fn: certificate carries the CSR key (SKG-2)"
  certtool -i --infile "$d/cert.pem" 2>/dev/null | grep -q "Subject: CN=kg-$client-$fn" ||
    it_fail "$fn: subject not taken from the CSR"
}

est_start keygen\ on
est_req gnutls idevid get /est/crts
est_p7_to_pem "$IT_PAYLOAD_FILE" "$T/ca.pem"
for client in gnutls openssl; do
  check_keygen $client skg 281 "SECP256R1"
  check_keygen $client skc 287 "SECP256R1"
done
# The full trace (-v 7): the request is answered with an empty ACK, then
# the 2.04 comes as a CON with a new message ID, which the client ACKs
# (RFC 9148 §4.7 Figure 3, RFC 7252 §5.2.2).
est_csr "$T/trace.key" "$T/trace.csr" kg-trace
est_req gnutls idevid post /est/skg -t 286 -f "$T/trace.csr" -v 7
it_expect_code 2.04
est_expect_separate "skg"

# No Accept is fine; Accept other than 62 is 4.06 (ACC-5).
est_csr "$T/k.key" "$T/k.csr" kg-noaccept
est_req gnutls idevid post /est/skg -t 286 -f "$T/k.csr"
it_expect_code 2.04
est_req gnutls idevid post /est/skg -t 286 -A 281 -f "$T/k.csr"
it_expect_code 4.06; it_expect_diag
est_req gnutls idevid post /est/skc -t 286 -A 287 -f "$T/k.csr"
it_expect_code 4.06; it_expect_diag
# A CSR with a broken signature is still fine for keygen (SKG-2).
/usr/bin/python3 -c "import sys;d=bytearray(open(sys.argv[1],'rb').read());d[-1]^=0x55;open(sys.argv[2],'wb').write(d)" \
  "$T/k.csr" "$T/k-badsig.csr"
est_req openssl idevid post /.well-known/est/skc -t 286 -f "$T/k-badsig.csr"
it_expect_code 2.04
est_stop

# RSA keys, and the RSA key type is what is generated. The answer (about
# 1.9 KB) needs Block2 after the separate response; coap-client 4.3.1 only
# follows that when its request was block-wise too, hence -b 64.
est_start keygen\ on keygen_type\ rsa-2048
est_req gnutls idevid get /est/crts
est_p7_to_pem "$IT_PAYLOAD_FILE" "$T/ca.pem"
check_keygen openssl skc 287 "RSA" -b 64
check_keygen gnutls skg 281 "RSA" -b 256
est_stop

# keygen off: not served (SEC-13).
est_start
est_req gnutls idevid post /est/skg -t 286 -f "$T/k.csr"
it_expect_code 4.04
est_stop
it_pass
