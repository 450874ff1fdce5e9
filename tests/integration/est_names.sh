#!/usr/bin/env bash
# Issuance policy (docs/decisions.md §13) end to end: under idevid_policy auto
# the defaults refuse URI/email/otherName SANs, wildcards, too many SANs,
# subject attributes off the list, unknown critical extensions, SHA-1, P-521
# and a huge subject, each with its code and diagnostic and nothing issued
# or recorded; widened options issue what they allow (SANs, EKU), and the
# fleet setting (subject_match idevid-serial, san_dns_patterns) binds the
# name to the IDevID's serialNumber (the test IDevID has serialNumber 0001).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/est_lib.sh"
it_init est_names

# db_count DB TABLE: rows in TABLE.
db_count() { sqlite3 "$1" "SELECT count(*) FROM $2"; }

# refuse CSR CODE TEXT: a sen with CSR gets CODE with TEXT in its diagnostic.
refuse() {
  est_req gnutls idevid post /est/sen -t 286 -f "$1"
  it_expect_code "$2"; it_expect_diag
  grep -qF -- "$3" "$IT_STDERR" || it_fail "$(basename "$1"): diag lacks '$3': $(cat "$IT_STDERR")"
}

# issue CSR OUT: a sen with CSR gets 2.04 and a bare certificate, as PEM in OUT.
issue() {
  est_req gnutls idevid post /est/sen -t 286 -A 287 -f "$1"
  it_expect_code 2.04
  est_der_to_pem "$IT_PAYLOAD_FILE" "$2"
  certtool -i --infile "$2" 2>/dev/null >"$2.txt"
}

# ---- the defaults ------------------------------------------------------------
est_start
DB=$T/est.db
est_csr "$T/ok.key" "$T/ok.csr" dev-ok 'dns_name = "dev-ok.example"' 'ip_address = "192.0.2.9"'
issue "$T/ok.csr" "$T/ok.crt"
grep -q "DNSname: dev-ok.example" "$T/ok.crt.txt" || it_fail "DNS SAN not issued"
grep -q "IPAddress: 192.0.2.9" "$T/ok.crt.txt" || it_fail "IP SAN not issued"
grep -q "TLS WWW Client" "$T/ok.crt.txt" || it_fail "no clientAuth EKU"
grep -q "TLS WWW Server" "$T/ok.crt.txt" && it_fail "serverAuth EKU without cert_eku"
[ "$(db_count "$DB" certificates)" = 1 ] || it_fail "the allowed request was not recorded"

# Each CSR has its own key: the store takes one key's request again as a
# retry (docs/decisions.md §7).
est_csr "$T/uri.key" "$T/uri.csr" dev-uri 'uri = "https://bank.example/"'
refuse "$T/uri.csr" 4.03 "subjectAltName type URI is not allowed (san_types)"
est_csr "$T/email.key" "$T/email.csr" dev-email 'email = "ceo@example.com"'
refuse "$T/email.csr" 4.03 "subjectAltName type email is not allowed"
est_csr "$T/other.key" "$T/other.csr" dev-other 'xmpp_name = "dev@example.com"'
refuse "$T/other.csr" 4.03 "subjectAltName type otherName is not allowed"
est_csr "$T/wild.key" "$T/wild.csr" dev-wild 'dns_name = "*.example.com"'
refuse "$T/wild.csr" 4.03 "'*.example.com': wildcards are not allowed (san_wildcards)"
sans=()
for i in $(seq 1 9); do sans+=("dns_name = \"host-$i.example\""); done
est_csr "$T/many.key" "$T/many.csr" dev-many "${sans[@]}"
refuse "$T/many.csr" 4.00 "CSR asks for 9 subjectAltNames, over max_sans 8"
est_csr "$T/dc.key" "$T/dc.csr" dev-dc 'dc = "example"'
refuse "$T/dc.csr" 4.03 "subject attribute DC is not allowed (subject_attrs)"
est_csr "$T/crit.key" "$T/crit.csr" dev-crit 'add_critical_extension = "1.3.6.1.4.1.99999.1 0500"'
refuse "$T/crit.csr" 4.00 "critical extension 1.3.6.1.4.1.99999.1"
printf 'cn = "dev-sha1"\n' >"$T/sha1.tmpl"
certtool --generate-privkey --key-type=ecdsa --curve=secp256r1 --outfile "$T/sha1.key" 2>/dev/null
certtool --generate-request --load-privkey "$T/sha1.key" --template "$T/sha1.tmpl" --hash SHA1 \
  --outder --outfile "$T/sha1.csr" 2>/dev/null || it_fail "certtool: SHA-1 CSR"
refuse "$T/sha1.csr" 4.00 "CSR is signed with ECDSA-SHA1; SHA-256 or stronger is required"
certtool --generate-privkey --key-type=ecdsa --curve=secp521r1 --outfile "$T/p521.key" 2>/dev/null
est_csr "$T/p521.key" "$T/p521.csr" dev-p521
refuse "$T/p521.csr" 4.00 "CSR key type SECP521R1 is not allowed (csr_key_types)"
# A 14 KB subject: 4.00 from the size cap, not the store's 5.03.
{
  echo 'cn = "dev-huge"'
  echo "organization = \"$(head -c 14000 /dev/zero | tr '\0' x)\""
} >"$T/huge.tmpl"
certtool --generate-request --load-privkey "$T/ok.key" --template "$T/huge.tmpl" --outder \
  --outfile "$T/huge.csr" 2>/dev/null || it_fail "certtool: huge CSR"
[ "$(stat -c %s "$T/huge.csr")" -gt 14000 ] || it_fail "huge CSR is not over 14000 bytes"
est_req gnutls idevid post /est/sen -t 286 -b 1024 -f "$T/huge.csr"
it_expect_code 4.00; it_expect_diag
grep -q "over max_subject_bytes 512" "$IT_STDERR" || it_fail "huge subject diag: $(cat "$IT_STDERR")"
echo "$IT_OPTS" | grep -q "Max-Age" && it_fail "a size refusal carries Max-Age: $IT_OPTS"
# Nothing refused was issued or even queued.
[ "$(db_count "$DB" certificates)" = 1 ] || it_fail "a refused request was issued"
[ "$(db_count "$DB" requests)" = 1 ] || it_fail "a refused request reached the store"
# The log line of each answer carries the same diagnostic.
grep -q 'request fn=sen code=4.03 peer=[^ ]* client="[^"]*" reason="subjectAltName type URI is not allowed' "$T/coapd.log" ||
  it_fail "the log does not carry the refusal: $(grep 'request fn=sen' "$T/coapd.log" | tail -3)"
# SKG-2: server keygen ignores the CSR's key and signature, so SHA-1 is fine
# there, but its names are still checked.
est_stop
est_start keygen\ on db_path\ "$T/kg.db"
est_req gnutls idevid post /est/skc -t 286 -A 62 -f "$T/sha1.csr"
it_expect_code 2.04
est_req gnutls idevid post /est/skc -t 286 -A 62 -f "$T/uri.csr"
it_expect_code 4.03; it_expect_diag
[ "$(db_count "$T/kg.db" certificates)" = 1 ] || it_fail "skc: not exactly one issued"
est_stop

# ---- widened ------------------------------------------------------------------
est_start db_path\ "$T/wide.db" san_types\ dns,ip,uri,email san_wildcards\ on \
  cert_eku\ clientAuth,serverAuth max_sans\ 9 subject_attrs\ CN,DC csr_key_types\ ec-p256,ec-p521
issue "$T/uri.csr" "$T/uri.crt"
grep -q "URI: https://bank.example/" "$T/uri.crt.txt" || it_fail "URI SAN not issued"
issue "$T/email.csr" "$T/email.crt"
grep -q "RFC822Name: ceo@example.com" "$T/email.crt.txt" || it_fail "email SAN not issued"
issue "$T/wild.csr" "$T/wild.crt"
grep -q 'DNSname: \*.example.com' "$T/wild.crt.txt" || it_fail "wildcard SAN not issued"
grep -q "TLS WWW Server" "$T/wild.crt.txt" || it_fail "no serverAuth EKU with cert_eku"
grep -q "TLS WWW Client" "$T/wild.crt.txt" || it_fail "no clientAuth EKU with cert_eku"
issue "$T/many.csr" "$T/many.crt"
issue "$T/dc.csr" "$T/dc.crt"
issue "$T/p521.csr" "$T/p521.crt"
# Still refused: otherName is not listed, and the unknown critical extension.
refuse "$T/other.csr" 4.03 "type otherName"
refuse "$T/crit.csr" 4.00 "critical extension"
[ "$(db_count "$T/wide.db" certificates)" = 6 ] || it_fail "widened: not 6 issued"
est_stop

# ---- a fleet ------------------------------------------------------------------
est_start db_path\ "$T/fleet.db" subject_match\ idevid-serial san_types\ dns \
  san_dns_patterns\ '*.devices.example.com'
est_csr "$T/f-ok.key" "$T/f-ok.csr" 0001 'dns_name = "0001.devices.example.com"'
issue "$T/f-ok.csr" "$T/f-ok.crt"
grep -q "Subject: CN=0001$" "$T/f-ok.crt.txt" || it_fail "fleet: subject"
grep -q "DNSname: 0001.devices.example.com" "$T/f-ok.crt.txt" || it_fail "fleet: SAN"
est_csr "$T/f-other.key" "$T/f-other.csr" 0005 'dns_name = "0005.devices.example.com"'
refuse "$T/f-other.csr" 4.03 "subject CN '0005' is not the client certificate's serialNumber '0001'"
est_csr "$T/f-deep.key" "$T/f-deep.csr" 0001 'dns_name = "a.b.devices.example.com"'
refuse "$T/f-deep.csr" 4.03 "'a.b.devices.example.com' matches no san_dns_patterns"
est_csr "$T/f-apex.key" "$T/f-apex.csr" 0001 'dns_name = "devices.example.com"'
refuse "$T/f-apex.csr" 4.03 "matches no san_dns_patterns"
est_csr "$T/f-bank.key" "$T/f-bank.csr" 0001 'dns_name = "bank.example"'
refuse "$T/f-bank.csr" 4.03 "'bank.example' matches no san_dns_patterns"
refuse "$T/ok.csr" 4.03 "subject CN 'dev-ok'"
[ "$(db_count "$T/fleet.db" certificates)" = 1 ] || it_fail "fleet: not exactly one issued"
est_stop

# A bad pattern stops coapd with the file and line, before the plugin runs.
sed -i 's/^plugin_opt_san_dns_patterns .*/plugin_opt_san_dns_patterns *.com/' "$CONF"
it_coapd_run badpattern -t -c "$CONF"
[ "$IT_RC" != 0 ] || it_fail "coapd accepted san_dns_patterns *.com"
grep -q "$CONF:[0-9]*: bad value '\*.com' for plugin_opt_san_dns_patterns" "$IT_LOG" ||
  it_fail "no file:line message: $(cat "$IT_LOG")"
it_pass
