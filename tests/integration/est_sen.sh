#!/usr/bin/env bash
# /sen (RFC 9148 §4.2, docs/decisions.md §3-§4): enrollment with an IDevID, with
# 64- and 1024-byte Block1, Accept 281/287, and every error code.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/est_lib.sh"
it_init est_sen

est_start max_body\ 4096
est_req gnutls idevid get /est/crts
est_p7_to_pem "$IT_PAYLOAD_FILE" "$T/ca-from-crts.pem"

# Each client, each Block1 size: 2.04, CF 281, a cert that chains to the
# crts answer (checked by certtool), with the CSR's subject, SAN and key.
n=0
for client in gnutls openssl; do
  for bs in 64 1024; do
    n=$((n + 1))
    est_csr "$T/dev$n.key" "$T/dev$n.csr" "dev-$n" 'dns_name = "dev-'$n'.example"' \
      'ip_address = "192.0.2.'$n'"'
    est_req $client idevid post /est/sen -b $bs -t 286 -A 281 -f "$T/dev$n.csr"
    it_expect_code 2.04
    echo "$IT_OPTS" | grep -q 'Content-Format:281' || it_fail "sen CF not 281: $IT_OPTS"
    est_p7_to_pem "$IT_PAYLOAD_FILE" "$T/dev$n.crt"
    [ "$(grep -c 'BEGIN CERTIFICATE' "$T/dev$n.crt")" = 1 ] || it_fail "sen PKCS#7 holds not exactly 1 cert"
    est_verify "$T/dev$n.crt" "$T/ca-from-crts.pem"
    info=$(certtool -i --infile "$T/dev$n.crt" 2>/dev/null)
    echo "$info" | grep -q "Subject: CN=dev-$n\$" || it_fail "subject wrong: $(echo "$info" | grep Subject:)"
    echo "$info" | grep -q "DNSname: dev-$n.example" || it_fail "SAN DNS not copied"
    echo "$info" | grep -q "IPAddress: 192.0.2.$n" || it_fail "SAN IP not copied"
    echo "$info" | grep -q "Certificate Authority (CA): FALSE" || it_fail "not CA:FALSE"
    echo "$info" | grep -q "TLS WWW Client" || it_fail "no clientAuth EKU"
    echo "$info" | grep -q "Subject Key Identifier" || it_fail "no SKI"
    echo "$info" | grep -q "Authority Key Identifier" || it_fail "no AKI"
    [ "$(est_cert_pubkey "$T/dev$n.crt")" = "$(est_key_pubkey "$T/dev$n.key")" ] ||
      it_fail "issued key differs from the CSR key"
  done
done
# No Accept means 281 (ACC-2); Accept 287 gives the bare certificate.
est_csr "$T/a.key" "$T/a.csr" dev-accept
est_req gnutls idevid post /est/sen -t 286 -f "$T/a.csr"
it_expect_code 2.04
echo "$IT_OPTS" | grep -q 'Content-Format:281' || it_fail "no Accept: CF not 281"
est_req openssl idevid post /est/sen -t 286 -A 287 -f "$T/a.csr"
it_expect_code 2.04
echo "$IT_OPTS" | grep -q 'Content-Format:287' || it_fail "Accept 287: CF not 287"
est_der_to_pem "$IT_PAYLOAD_FILE" "$T/a.crt"
est_verify "$T/a.crt" "$T/ca-from-crts.pem"
# A CSR over 1024 bytes goes in two 1024-byte blocks.
sans=()
for i in $(seq 1 8); do sans+=("dns_name = \"host-$i.a-rather-long-domain-name-for-a-csr-over-one-kib.with-a-second-rather-long-label-as-well.example\""); done
est_csr "$T/big.key" "$T/big.csr" dev-big "${sans[@]}"
[ "$(stat -c %s "$T/big.csr")" -gt 1024 ] || it_fail "big CSR is not over 1024 bytes"
est_req gnutls idevid post /est/sen -b 1024 -t 286 -f "$T/big.csr"
it_expect_code 2.04
EST_HOST='[::1]' est_req openssl idevid post /est/.well-known/est/sen -t 286 -f "$T/a.csr"
it_expect_code 4.04
EST_HOST='[::1]' est_req openssl idevid post /.well-known/est/sen -t 286 -f "$T/a.csr"
it_expect_code 2.04

# Errors (docs/decisions.md §4), each with a diagnostic payload.
est_req gnutls idevid post /est/sen -t 0 -f "$T/a.csr"
it_expect_code 4.15; it_expect_diag
est_req gnutls idevid post /est/sen -f "$T/a.csr"
it_expect_code 4.15; it_expect_diag
est_req gnutls idevid post /est/sen -t 286 -A 62 -f "$T/a.csr"
it_expect_code 4.06; it_expect_diag
est_req gnutls idevid get /est/sen
it_expect_code 4.05; it_expect_diag
head -c 300 /dev/urandom >"$T/junk"
est_req gnutls idevid post /est/sen -t 286 -f "$T/junk"
it_expect_code 4.00; it_expect_diag
head -c 100 "$T/a.csr" >"$T/trunc.csr"
est_req gnutls idevid post /est/sen -t 286 -f "$T/trunc.csr"
it_expect_code 4.00; it_expect_diag
# Flip one byte of the signature (the last byte of the CSR).
/usr/bin/python3 -c "import sys;d=bytearray(open(sys.argv[1],'rb').read());d[-1]^=0x55;open(sys.argv[2],'wb').write(d)" \
  "$T/a.csr" "$T/badsig.csr"
est_req gnutls idevid post /est/sen -t 286 -f "$T/badsig.csr"
it_expect_code 4.00; it_expect_diag
grep -q "4.00 CSR signature" "$IT_STDERR" || it_fail "bad signature diag: $(cat "$IT_STDERR")"
# A request for a CA certificate is refused.
est_csr "$T/ca-req.key" "$T/ca-req.csr" sneaky-ca ca cert_signing_key
est_req gnutls idevid post /est/sen -t 286 -f "$T/ca-req.csr"
it_expect_code 4.03; it_expect_diag
# A Block1 sequence that does not start at 0 is 4.08; SZX 7 (BERT) over
# UDP is 4.00 (RFC 7959 §2.2, §2.9.2).
head -c 16 /dev/urandom >"$T/b16"
est_req gnutls idevid post /est/sen -t 286 -O 27,0x18 -f "$T/b16"
it_expect_code 4.08; it_expect_diag
head -c 32 /dev/urandom >"$T/b32"
est_req openssl idevid post /est/sen -t 286 -O 27,0x17 -f "$T/b32"
it_expect_code 4.00; it_expect_diag
# Over max_body: 4.13 with Size1, at block 0 whether or not Block1 is used.
head -c 6000 /dev/urandom >"$T/huge"
est_req gnutls idevid post /est/sen -t 286 -b 64 -f "$T/huge"
it_expect_code 4.13; it_expect_diag
echo "$IT_OPTS" | grep -q 'Size1:4096' || it_fail "4.13 without Size1:4096: $IT_OPTS"
est_req openssl idevid post /est/sen -t 286 -b 1024 -f "$T/huge"
it_expect_code 4.13
est_stop

# An RSA-2048 CA issues as well (the EST CA need not be the DTLS CA).
certtool --generate-privkey --key-type=rsa --bits=2048 --outfile "$T/rsa-ca.key" 2>/dev/null
printf 'cn = "est-coaps RSA CA"\nca\ncert_signing_key\nexpiration_days = 3650\n' >"$T/rsa-ca.tmpl"
certtool --generate-self-signed --load-privkey "$T/rsa-ca.key" --template "$T/rsa-ca.tmpl" \
  --outfile "$T/rsa-ca.crt" 2>/dev/null || it_fail "certtool: RSA CA"
est_start ca_cert\ "$T/rsa-ca.crt" ca_key\ "$T/rsa-ca.key" db_path\ "$T/rsa.db" db_synchronous\ normal
est_csr "$T/r.key" "$T/r.csr" dev-rsa-ca
est_req gnutls idevid post /est/sen -t 286 -A 287 -f "$T/r.csr"
it_expect_code 2.04
est_der_to_pem "$IT_PAYLOAD_FILE" "$T/rsa-issued.crt"
est_verify "$T/rsa-issued.crt" "$T/rsa-ca.crt"
certtool -i --infile "$T/rsa-issued.crt" 2>/dev/null | grep -q "Signature Algorithm: RSA-SHA256" ||
  it_fail "not signed RSA-SHA256"
[ "$(sqlite3 "$T/rsa.db" 'SELECT count(*) FROM certificates')" = 1 ] || it_fail "not recorded"
est_stop

# The CA was replaced: a retry of a request issued by the old CA gets a
# certificate from the new one (not the stored, now foreign, bytes), and a
# further retry gets that new certificate again.
est_start ca_cert\ "$T/rsa-ca.crt" ca_key\ "$T/rsa-ca.key"
est_req gnutls idevid post /est/sen -t 286 -A 287 -f "$T/a.csr"
it_expect_code 2.04
cp "$IT_PAYLOAD_FILE" "$T/a-rsa.der"
est_der_to_pem "$T/a-rsa.der" "$T/a-rsa.crt"
est_verify "$T/a-rsa.crt" "$T/rsa-ca.crt"
est_req openssl idevid post /est/sen -t 286 -A 287 -f "$T/a.csr"
it_expect_code 2.04
cmp -s "$IT_PAYLOAD_FILE" "$T/a-rsa.der" || it_fail "the retry after re-issuing got other bytes"
est_stop

# A bad plugin option value stops coapd with the file and line.
echo "plugin_opt_db_synchronous sometimes" >>"$CONF"
it_coapd_run badsync -t -c "$CONF"
[ "$IT_RC" != 0 ] || it_fail "coapd accepted db_synchronous sometimes"
grep -q "$CONF:[0-9]*: bad value 'sometimes' for plugin_opt_db_synchronous (full|normal)" "$IT_LOG" ||
  it_fail "no file:line message: $(cat "$IT_LOG")"
it_pass
