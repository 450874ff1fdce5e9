#!/usr/bin/env bash
# Enforced revocation (docs/decisions.md §14). A certificate revoked with
# estctl gets 4.03 "client certificate revoked" on every function, on the
# very next request; an IDevID listed on a manufacturer CRL (idevid_crl)
# gets 4.03 too, also when the CRL changes while coapd runs; a CRL not
# signed by a manufacturer CA in idevid_trust stops coapd at start.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/est_lib.sh"
it_init est_revoke
[ -x "${ESTCTL:-}" ] || it_fail "ESTCTL is not set"
DB=$T/est.db
sql() { sqlite3 -cmd ".timeout 5000" "$DB" "$1"; }

# crl OUT [CERT...]: a CRL of the manufacturer CA listing CERTs (none: empty).
crl() {
  local out=$1 n=$((++CRL_NUM))
  shift
  printf 'crl_next_update = 30\ncrl_number = %d\n' "$n" >"$T/crl.tmpl"
  local certs=()
  [ $# = 0 ] || { cat "$@" >"$T/revoke.pem"; certs=(--load-certificate "$T/revoke.pem"); }
  certtool --generate-crl --load-ca-privkey "$PKI/mfr-ca.key" --load-ca-certificate \
    "$PKI/mfr-ca.crt" "${certs[@]}" --template "$T/crl.tmpl" --outfile "$out.tmp" \
    >/dev/null 2>&1 || it_fail "certtool could not make the CRL $out"
  mv "$out.tmp" "$out" # in one step, as an operator's tooling should
}
CRL_NUM=0

PKI=$T/pki
it_pki "$PKI"
crl "$T/mfr.crl"
est_start keygen\ on "idevid_crl $T/mfr.crl" "retry_after 2"
grep -q "idevid_crl: 1 CRL file(s), 0 revoked serial(s)" "$T/coapd.log" ||
  it_fail "no idevid_crl load line: $(grep idevid_crl "$T/coapd.log")"

# SIGHUP reads the trust and the CRLs again, changed or not.
kill -HUP "${IT_PIDS[coapd]}"
for ((i = 0; i < 50; i++)); do
  grep -q "\[est-coaps\] reloaded: .*idevid_trust on" "$T/coapd.log" && break
  sleep 0.1
done
grep -q "coapd: SIGHUP, reading .* again" "$T/coapd.log" &&
  grep -q "\[est-coaps\] reloaded: .*idevid_trust on" "$T/coapd.log" &&
  [ "$(grep -c "idevid_crl: 1 CRL file(s), 0 revoked serial(s)" "$T/coapd.log")" = 2 ] ||
  it_fail "SIGHUP did not reload: $(tail -3 "$T/coapd.log")"
kill -0 "${IT_PIDS[coapd]}" || it_fail "coapd died of SIGHUP"

# An LDevID from this CA, then revoked: refused on every function.
est_csr "$T/dev.key" "$T/dev.csr" dev-r 'dns_name = "dev-r.example"'
est_req gnutls idevid post /est/sen -t 286 -f "$T/dev.csr"
it_expect_code 2.04
est_p7_to_pem "$IT_PAYLOAD_FILE" "$T/dev.crt"
est_req gnutls "$T/dev" get /est/crts
it_expect_code 2.05
serial=$(sql "select serial from certificates where subject = 'CN=dev-r'")
[ -n "$serial" ] || it_fail "no certificate recorded for CN=dev-r"
"$ESTCTL" --db "$DB" --actor alice revoke "$serial" --reason keyCompromise >"$T/revoke.out" 2>&1 ||
  it_fail "estctl revoke: $(cat "$T/revoke.out")"
echo "revoked $serial: $(cat "$T/revoke.out")"
est_csr "$T/dev.key" "$T/dev2.csr" dev-r 'dns_name = "dev-r.example"'
for client in gnutls openssl; do
  for req in "get /est/crts" "post /est/sen -t 286 -f $T/dev2.csr" \
    "post /est/sren -t 286 -f $T/dev2.csr" "post /est/skg -t 286 -f $T/dev2.csr"; do
    # shellcheck disable=SC2086
    est_req $client "$T/dev" $req
    it_expect_code 4.03
    grep -q "client certificate revoked" "$IT_STDERR" ||
      it_fail "$client $req: diag is not 'client certificate revoked': $(cat "$IT_STDERR")"
  done
done
count=$(sql "select count(*) from certificates where subject = 'CN=dev-r'")
[ "$count" = 1 ] || it_fail "a revoked client got a certificate: $count for CN=dev-r"
# Every refusal: notice, function, client, reason and where it came from.
grep -Eq "notice \[est-coaps\] request fn=sen code=4.03 peer=(127\.0\.0\.1|\[::1\]):[0-9]+ client=\"CN=dev-r\" reason=\"client certificate revoked\" max_age=0$" \
  "$T/coapd.log" || it_fail "no notice line for the refusal: $(grep 'dev-r' "$T/coapd.log" | tail -2)"
# The IDevID itself is not revoked and still enrolls.
est_csr "$T/other.key" "$T/other.csr" dev-s
est_req gnutls idevid post /est/sen -t 286 -f "$T/other.csr"
it_expect_code 2.04

# The manufacturer revokes the IDevID: the CRL file changes, coapd reads it
# within its poll (2 s), and the IDevID gets 4.03 from then on.
crl "$T/mfr.crl" "$PKI/idevid.crt"
for ((i = 0; i < 50; i++)); do
  grep -q "reloaded: 1 CRL file(s), 1 revoked serial(s)" "$T/coapd.log" && break
  sleep 0.2
done
grep -q "reloaded: 1 CRL file(s), 1 revoked serial(s)" "$T/coapd.log" ||
  it_fail "the changed CRL was not reloaded: $(grep -i crl "$T/coapd.log")"
est_req gnutls idevid post /est/sen -t 286 -f "$T/other.csr"
it_expect_code 4.03
grep -q "revoked (by its manufacturer's CRL)" "$IT_STDERR" ||
  it_fail "IDevID on the CRL: diag: $(cat "$IT_STDERR")"
est_req openssl idevid get /est/crts
it_expect_code 4.03

# A broken CRL file while running: the previous CRL stays in force.
echo "not a CRL" >"$T/mfr.crl.tmp" && mv "$T/mfr.crl.tmp" "$T/mfr.crl"
for ((i = 0; i < 50; i++)); do
  grep -q "does not load" "$T/coapd.log" && break
  sleep 0.2
done
grep -q "does not load .*the previous one stays in use" "$T/coapd.log" ||
  it_fail "a broken CRL was not reported"
est_req gnutls idevid get /est/crts
it_expect_code 4.03
est_stop

# Started with the revoking CRL: refused from the first request.
crl "$T/mfr.crl" "$PKI/idevid.crt"
est_start "idevid_crl $T/mfr.crl"
est_req gnutls idevid get /est/crts
it_expect_code 4.03
est_stop

# A CRL signed by another CA (ours, not a manufacturer's): coapd refuses to
# start and names the file.
printf 'crl_next_update = 30\ncrl_number = 9\n' >"$T/crl.tmpl"
certtool --generate-crl --load-ca-privkey "$PKI/ca.key" --load-ca-certificate "$PKI/ca.crt" \
  --template "$T/crl.tmpl" --outfile "$T/wrong.crl" >/dev/null 2>&1 || it_fail "certtool"
sed -i "s#^plugin_opt_idevid_crl .*#plugin_opt_idevid_crl $T/wrong.crl#" "$CONF"
timeout -k 5 20 "$COAPD" -c "$CONF" >"$T/wrong.log" 2>&1
rc=$?
[ "$rc" = 1 ] || it_fail "coapd with a foreign CRL: exit $rc, want 1: $(cat "$T/wrong.log")"
grep -q "wrong.crl' is not signed by a CA in idevid_trust" "$T/wrong.log" ||
  it_fail "no clear error for the foreign CRL: $(cat "$T/wrong.log")"
it_pass
