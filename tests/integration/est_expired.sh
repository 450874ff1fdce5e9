#!/usr/bin/env bash
# Expired client certificates (RFC 9148 §3 "MAY accept an expired IDevID",
# AUTH-5/SEC-6, conformance item 14, docs/decisions.md §5). What each
# configuration must do:
#   coapd default             expired or not-yet-valid: the handshake fails
#   dtls_allow_expired yes    the plugin answers 4.03 with a diagnostic
#   + idevid_allow_expired on an expired IDevID enrolls (sen 2.04); an
#                             expired LDevID and a not-yet-valid IDevID
#                             still get 4.03
# and valid clients work throughout. Both coap-client-gnutls and
# coap-client-openssl present an expired client certificate as it is
# (checked on Debian 12: neither looks at their own certificate's dates),
# so both are held to the same results.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/est_lib.sh"
it_init est_expired

PKI=$T/pki
it_pki "$PKI"

# mk_cert NAME ISSUER CN NOT_BEFORE NOT_AFTER [template lines...]: an EC
# P-256 client certificate $PKI/NAME.{crt,key} with the given validity
# (certtool template dates, UTC), signed by $PKI/ISSUER.
mk_cert() {
  local name=$1 issuer=$2 cn=$3 nb=$4 na=$5 l
  shift 5
  certtool --generate-privkey --key-type=ecdsa --curve=secp256r1 \
    --outfile "$PKI/$name.key" 2>/dev/null || it_fail "certtool: no key for $name"
  {
    echo "cn = \"$cn\""
    echo 'organization = "est-coaps"'
    echo "activation_date = \"$nb\""
    echo "expiration_date = \"$na\""
    echo "signing_key"
    echo "tls_www_client"
    for l in "$@"; do echo "$l"; done
  } >"$T/$name.tmpl"
  certtool --generate-certificate --load-privkey "$PKI/$name.key" \
    --load-ca-certificate "$PKI/$issuer.crt" --load-ca-privkey "$PKI/$issuer.key" \
    --template "$T/$name.tmpl" --outfile "$PKI/$name.crt" >"$T/$name.certtool" 2>&1 ||
    it_fail "certtool could not make $name: $(tail -3 "$T/$name.certtool")"
}

# The IDevID expired years ago (802.1AR devices outlive their certificates).
mk_cert idev-old mfr-ca idevid-old "2015-01-01 00:00:00" "2020-01-01 00:00:00" \
  'dn_oid = "2.5.4.5 0002"'
mk_cert ldev-old ca ldevid-old "2015-01-01 00:00:00" "2020-01-01 00:00:00"
# Not yet valid, but inside the CA's own validity (mkpki: 3650 days).
mk_cert idev-new mfr-ca idevid-new "$(date -u -d '+2 days' '+%Y-%m-%d %H:%M:%S')" \
  "$(date -u -d '+30 days' '+%Y-%m-%d %H:%M:%S')" 'dn_oid = "2.5.4.5 0003"'
# The test certificates really are what their names say (certtool's word).
for c in idev-old:mfr-ca:expired ldev-old:ca:expired idev-new:mfr-ca:"not yet valid"; do
  IFS=: read -r name issuer what <<<"$c"
  certtool --verify --load-ca-certificate "$PKI/$issuer.crt" --infile "$PKI/$name.crt" \
    >"$T/verify-$name.out" 2>&1 && it_fail "certtool verifies $name"
  grep -q "uses $what certificate" "$T/verify-$name.out" ||
    it_fail "$name is not $what: $(grep -m1 Output "$T/verify-$name.out")"
done

# expect_refused DIAG_RE: 4.03 whose diagnostic matches DIAG_RE.
expect_refused() {
  it_expect_code 4.03
  it_expect_diag
  grep -Eq "^4\.03 .*$1" "$IT_STDERR" ||
    it_fail "4.03 diagnostic does not match '$1': $(cat "$IT_STDERR")"
}

# valid_clients_work CLIENT TAG: the test PKI's valid IDevID enrolls and its
# LDevID re-enrolls, whatever the expiry settings.
valid_clients_work() {
  est_csr "$T/ok-$2.key" "$T/ok-$2.csr" "ok-$2"
  est_req "$1" idevid post /est/sen -t 286 -f "$T/ok-$2.csr"
  it_expect_code 2.04
  est_csr "$PKI/client.key" "$T/ld-$2.csr" ldevid-0001 'organization = "est-coaps"'
  est_req "$1" client post /est/sren -t 286 -f "$T/ld-$2.csr"
  it_expect_code 2.04
}

# 1. Default host: every date problem is a handshake failure (no response);
#    libcoap logs why.
EST_HOST_EXTRA="" est_start
for client in gnutls openssl; do
  for id in idev-old ldev-old idev-new; do
    est_req $client "$PKI/$id" get /est/crts -B 5
    it_expect_code none
  done
  valid_clients_work $client "default-$client"
done
it_expect_log coapd "invalid usage date: 'idevid-old'"
it_expect_log coapd "invalid usage date: 'ldevid-old'"
grep -q "dtls_allow_expired" "$T/coapd.log" && it_fail "notice without dtls_allow_expired"
est_stop

# 2. Only the plugin option: it warns at start that the host must also allow
#    expired certificates; the handshake still fails.
EST_HOST_EXTRA="" est_start "idevid_allow_expired on"
it_expect_log coapd "idevid_allow_expired on .*: .*needs dtls_allow_expired yes too"
est_req gnutls "$PKI/idev-old" get /est/crts -B 5
it_expect_code none
est_stop

# 3. Host lets expired chains through, plugin default: the plugin refuses
#    with a clear diagnostic, for every function.
EST_HOST_EXTRA="dtls_allow_expired yes" est_start
it_expect_log coapd "dtls_allow_expired yes: client certificates outside their validity"
for client in gnutls openssl; do
  est_csr "$T/a-$client.key" "$T/a-$client.csr" "old-a-$client"
  est_req $client "$PKI/idev-old" get /est/crts
  expect_refused "\(IDevID\) has expired"
  est_req $client "$PKI/idev-old" post /est/sen -t 286 -f "$T/a-$client.csr"
  expect_refused "\(IDevID\) has expired"
  est_req $client "$PKI/ldev-old" post /est/sen -t 286 -f "$T/a-$client.csr"
  expect_refused "client certificate has expired"
  est_req $client "$PKI/idev-new" post /est/sen -t 286 -f "$T/a-$client.csr"
  expect_refused "not yet valid"
  # Trust is still required: an unknown CA fails the handshake as before.
  est_req $client rogue get /est/crts -B 5
  it_expect_code none
  valid_clients_work $client "host-yes-$client"
done
est_stop

# 4. Both on: the expired IDevID enrolls (idevid_policy auto, set by
#    est_start) and gets a certificate of our CA; it is still an IDevID, so
#    no sren. An expired LDevID and a not-yet-valid IDevID stay refused.
EST_HOST_EXTRA="dtls_allow_expired yes" est_start "idevid_allow_expired on"
it_expect_log coapd "idevid_allow_expired on .*: expired IDevIDs may enroll without an operator"
est_req gnutls idevid get /est/crts
it_expect_code 2.05
est_p7_to_pem "$IT_PAYLOAD_FILE" "$T/ca.pem"
for client in gnutls openssl; do
  est_csr "$T/b-$client.key" "$T/b-$client.csr" "old-b-$client" "dns_name = \"old-b-$client.example\""
  est_req $client "$PKI/idev-old" post /est/sen -t 286 -f "$T/b-$client.csr"
  it_expect_code 2.04
  est_p7_to_pem "$IT_PAYLOAD_FILE" "$T/b-$client.crt"
  est_verify "$T/b-$client.crt" "$T/ca.pem"
  certtool -i --infile "$T/b-$client.crt" 2>/dev/null | grep -q "CN=old-b-$client" ||
    it_fail "issued certificate does not carry CN=old-b-$client"
  est_req $client "$PKI/idev-old" post /est/sren -t 286 -f "$T/b-$client.csr"
  expect_refused "re-enrollment needs a certificate issued by this CA"
  est_req $client "$PKI/ldev-old" post /est/sen -t 286 -f "$T/b-$client.csr"
  expect_refused "client certificate has expired"
  est_req $client "$PKI/ldev-old" post /est/sren -t 286 -f "$T/b-$client.csr"
  expect_refused "client certificate has expired"
  est_req $client "$PKI/idev-new" post /est/sen -t 286 -f "$T/b-$client.csr"
  expect_refused "not yet valid"
  valid_clients_work $client "both-on-$client"
done
it_expect_log coapd "client '[^']*CN=idevid-old[^']*' authenticated with an expired IDevID, accepted"
est_stop

# 5. Wrong words are config errors with FILE:LINE, for the host and plugin.
sed 's/^plugin_opt_idevid_allow_expired on$/plugin_opt_idevid_allow_expired yes/' \
  "$CONF" >"$T/bad-plugin.conf"
it_coapd_run bad-plugin -t -c "$T/bad-plugin.conf"
[ "$IT_RC" = 1 ] || it_fail "coapd -t accepted idevid_allow_expired yes (rc $IT_RC)"
it_expect_log bad-plugin "bad-plugin\.conf:[0-9]+: bad value 'yes' for plugin_opt_idevid_allow_expired \(on\|off\)"
sed 's/^dtls_allow_expired yes$/dtls_allow_expired on/' "$CONF" >"$T/bad-host.conf"
it_coapd_run bad-host -t -c "$T/bad-host.conf"
[ "$IT_RC" = 1 ] || it_fail "coapd -t accepted dtls_allow_expired on (rc $IT_RC)"
it_expect_log bad-host "bad-host\.conf:[0-9]+: bad value 'on' for dtls_allow_expired \(yes\|no\)"
it_pass
