#!/usr/bin/env bash
# /crts (RFC 9148 §4.1-§4.5, docs/decisions.md §2-§4): 281 by default, 287 only
# for a single-certificate CA bag, 4.06/4.05/4.04 otherwise; served under
# /.well-known/est, the short root and labels; Block2 from 64 bytes up.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/est_lib.sh"
it_init est_crts

est_start labels\ fleet-a
cadir=$PKI
for client in gnutls openssl; do
  for path in /est/crts /.well-known/est/crts /est/fleet-a/crts /.well-known/est/fleet-a/crts; do
    est_req $client idevid get "$path"
    it_expect_code 2.05
    echo "$IT_OPTS" | grep -q 'Content-Format:281' || it_fail "$path: CF not 281: $IT_OPTS"
    [ "$(head -c1 "$IT_PAYLOAD_FILE" | od -An -tx1 | tr -d ' ')" = 30 ] ||
      it_fail "$path: payload is not bare DER"
    est_p7_to_pem "$IT_PAYLOAD_FILE" "$T/crts.pem"
    cmp -s <(certtool -i --infile "$T/crts.pem" --outder 2>/dev/null) \
      <(certtool -i --infile "$cadir/ca.crt" --outder 2>/dev/null) ||
      it_fail "$path: crts is not the CA certificate"
  done
  est_req $client client get /est/crts -A 281
  it_expect_code 2.05
  # One CA certificate: 287 is possible and is the bare certificate.
  est_req $client idevid get /est/crts -A 287
  it_expect_code 2.05
  echo "$IT_OPTS" | grep -q 'Content-Format:287' || it_fail "CF not 287: $IT_OPTS"
  cmp -s "$IT_PAYLOAD_FILE" <(certtool -i --infile "$cadir/ca.crt" --outder 2>/dev/null) ||
    it_fail "287 payload is not the CA certificate DER"
  est_req $client idevid get /est/crts -A 285
  it_expect_code 4.06
  it_expect_diag
  est_req $client idevid post /est/crts
  it_expect_code 4.05
  it_expect_diag
  est_req $client idevid get /est/crts -t 286
  it_expect_code 4.15
  est_req $client idevid get /est/foo
  it_expect_code 4.04
  it_expect_diag
  est_req $client idevid get /est/other-label/crts
  it_expect_code 4.04
done
# Block2 with 64-byte blocks (RFC 9148 App. B.1) gives the same bytes.
est_req gnutls idevid get /est/crts
cp "$IT_PAYLOAD_FILE" "$T/crts-whole"
est_req gnutls idevid get /est/crts -b 64
it_expect_code 2.05
cmp -s "$IT_PAYLOAD_FILE" "$T/crts-whole" || it_fail "Block2 64 gave other bytes"
# IPv6.
EST_HOST='[::1]' est_req openssl idevid get /est/crts
it_expect_code 2.05
# A rogue client or none at all gets no answer: the handshake fails (AUTH-3).
est_req gnutls rogue get /est/crts
[ -z "$IT_CODE" ] || it_fail "rogue client got $IT_CODE"
est_req gnutls none get /est/crts
[ -z "$IT_CODE" ] || it_fail "client without a certificate got $IT_CODE"
est_stop

# A two-certificate CA bag (CA + an extra chain cert): 287 is refused.
cat "$PKI/ca.crt" "$PKI/mfr-ca.crt" >"$T/bag.pem"
est_start ca_cert\ "$T/bag.pem"
est_req gnutls idevid get /est/crts -A 287
it_expect_code 4.06
est_req gnutls idevid get /est/crts
it_expect_code 2.05
est_p7_to_pem "$IT_PAYLOAD_FILE" "$T/bag-out.pem"
[ "$(grep -c 'BEGIN CERTIFICATE' "$T/bag-out.pem")" = 2 ] || it_fail "crts should hold 2 certificates"
# RFC 7252 §4.3: a NON request gets a NON answer with its own Message ID,
# from the EST plugin and from the host's 4.04 alike.
for path in /est/crts /nothing-here; do
  est_req gnutls idevid get "$path" -N
  req_mid=$(grep -aoE '^v:1 t:NON c:GET i:[0-9a-f]+' "$T/coap-$IT_COAP_N.all" | head -n 1 | sed 's/.*i://')
  resp=$(grep -aoE '^v:1 t:NON c:[2-5]\.[0-9][0-9] i:[0-9a-f]+' "$T/coap-$IT_COAP_N.all" | head -n 1)
  [ -n "$req_mid" ] && [ -n "$resp" ] || it_fail "$path: no NON exchange: $(cat "$T/coap-$IT_COAP_N.all")"
  [ "${resp##*i:}" != "$req_mid" ] || it_fail "$path: the NON answer reuses Message ID $req_mid"
done
est_stop
it_pass
