#!/usr/bin/env bash
# /att (RFC 9148 §4.5 RC-2) and PoP linking policy (docs/decisions.md §9).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/est_lib.sh"
it_init est_att_pop

# att: the configured CsrAttrs bytes as 285; 4.04 without; 4.06 for others.
est_start csr_attrs\ "$EST_TEST_DATA/csrattrs-rfc7030.der" pop_linking\ require
for client in gnutls openssl; do
  est_req $client idevid get /est/att
  it_expect_code 2.05
  echo "$IT_OPTS" | grep -q 'Content-Format:285' || it_fail "att CF not 285: $IT_OPTS"
  cmp -s "$IT_PAYLOAD_FILE" "$EST_TEST_DATA/csrattrs-rfc7030.der" || it_fail "att bytes differ"
  est_req $client client get /.well-known/est/att -A 285
  it_expect_code 2.05
  est_req $client idevid get /est/att -A 281
  it_expect_code 4.06; it_expect_diag
  est_req $client idevid post /est/att
  it_expect_code 4.05; it_expect_diag
done
# require: a CSR without a challengePassword, or with a wrong one, is 4.03
# saying that identity/POP linking is required (RFC 7030 §3.5).
est_csr "$T/p.key" "$T/nopop.csr" pop-dev
est_csr "$T/p.key" "$T/wrongpop.csr" pop-dev 'challenge_password = "AAAAAAAAAAAAAAAA"'
for csr in nopop wrongpop; do
  est_req gnutls idevid post /est/sen -t 286 -f "$T/$csr.csr"
  it_expect_code 4.03
  grep -q "identity/POP linking required" "$IT_STDERR" || it_fail "$csr: diag $(cat "$IT_STDERR")"
done
est_stop

est_start
# verify (default): absent is fine, a wrong binding is not.
est_req gnutls idevid get /est/att
it_expect_code 4.04; it_expect_diag
est_req gnutls idevid post /est/sen -t 286 -f "$T/nopop.csr"
it_expect_code 2.04
est_req openssl idevid post /est/sen -t 286 -f "$T/wrongpop.csr"
it_expect_code 4.03
grep -q "identity/POP linking required" "$IT_STDERR" || it_fail "verify: diag $(cat "$IT_STDERR")"
est_stop

# off: the challengePassword is not looked at.
est_start pop_linking\ off
est_req gnutls idevid post /est/sen -t 286 -f "$T/wrongpop.csr"
it_expect_code 2.04
est_stop
it_pass
