#!/usr/bin/env bash
# /sren (RFC 9148 §4.2, AUTH-7, docs/decisions.md §5-§6): a device enrolls with
# its IDevID, then re-enrolls with the certificate it got; the subject and
# SAN must match; an IDevID may not re-enroll.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/est_lib.sh"
it_init est_sren

est_start
est_req gnutls idevid get /est/crts
est_p7_to_pem "$IT_PAYLOAD_FILE" "$T/ca.pem"

est_csr "$T/dev.key" "$T/dev.csr" dev-7 'dns_name = "dev-7.example"'
est_req gnutls idevid post /est/sen -t 286 -f "$T/dev.csr"
it_expect_code 2.04
est_p7_to_pem "$IT_PAYLOAD_FILE" "$T/dev.crt"

for client in gnutls openssl; do
  # Renew with the same key (RFC 7030 §4.2.2).
  est_req $client "$T/dev" post /est/sren -t 286 -f "$T/dev.csr"
  it_expect_code 2.04
  est_p7_to_pem "$IT_PAYLOAD_FILE" "$T/renewed-$client.crt"
  est_verify "$T/renewed-$client.crt" "$T/ca.pem"
  # Rekey: a new key, same subject and SAN.
  est_csr "$T/rekey-$client.key" "$T/rekey-$client.csr" dev-7 'dns_name = "dev-7.example"'
  est_req $client "$T/dev" post /est/sren -t 286 -A 287 -f "$T/rekey-$client.csr"
  it_expect_code 2.04
  est_der_to_pem "$IT_PAYLOAD_FILE" "$T/rekeyed.crt"
  [ "$(est_cert_pubkey "$T/rekeyed.crt")" = "$(est_key_pubkey "$T/rekey-$client.key")" ] ||
    it_fail "rekeyed cert does not carry the new key"
  # Another subject or SAN: 4.03 with a diagnostic (docs/decisions.md §6).
  est_csr "$T/dev.key" "$T/other-cn.csr" dev-8 'dns_name = "dev-7.example"'
  est_req $client "$T/dev" post /est/sren -t 286 -f "$T/other-cn.csr"
  it_expect_code 4.03; it_expect_diag
  grep -qi "subject" "$IT_STDERR" || it_fail "diag does not name the subject: $(cat "$IT_STDERR")"
  est_csr "$T/dev.key" "$T/other-san.csr" dev-7 'dns_name = "evil.example"'
  est_req $client "$T/dev" post /est/sren -t 286 -f "$T/other-san.csr"
  it_expect_code 4.03; it_expect_diag
  # An IDevID cannot re-enroll.
  est_req $client idevid post /est/sren -t 286 -f "$T/dev.csr"
  it_expect_code 4.03; it_expect_diag
done
# The LDevID from the test PKI renews itself too, with its own subject.
est_csr "$PKI/client.key" "$T/ld.csr" ldevid-0001 'organization = "est-coaps"'
est_req gnutls client post /.well-known/est/sren -t 286 -f "$T/ld.csr"
it_expect_code 2.04
# And an LDevID may also enroll (docs/decisions.md §5).
est_csr "$T/x.key" "$T/x.csr" dev-x
est_req openssl "$T/dev" post /est/sen -t 286 -f "$T/x.csr"
it_expect_code 2.04
est_stop
it_pass
