#!/usr/bin/env bash
# Registrar mode (RFC 9148 §5): a coapd with plugin_opt_upstream serves
# EST-coaps to devices and relays sen/sren/skg/skc/crts/att to an RFC 7030
# EST server over HTTPS (another coapd with https_listen and ra_trust),
# as an RA with id-kp-cmcRA naming each device by its chain
# (docs/decisions.md §17, §19). The devices get the upstream CA's certificates as
# separate responses; the upstream's rows say "via RA" and name the
# device; the registrar records what it relayed. Its own policy comes
# first: what it refuses never reaches the upstream. An upstream that
# waits for an operator (202 + Retry-After) is 5.03 + that Max-Age; one
# that is down or too slow is 5.03 + Max-Age, never 5.00/5.02, and crts is
# still served, after a restart too, from upstream_cache. A slow upstream
# (tcpdelay.py, 3 s per chunk) still gives the certificate, and the
# registrar answers others meanwhile. A registrar without an RA
# certificate is refused by the upstream. SIGHUP fetches cacerts and
# csrattrs again; a CA key, a missing upstream_ca or half an RA pair is a
# configuration error.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/est_lib.sh"
it_init est_registrar
[ -x "${ESTCTL:-}" ] || it_fail "ESTCTL is not set"
[ -x "${EST_ENROLL:-}" ] || it_fail "EST_ENROLL is not set"
PY=/usr/bin/python3
DATA=${EST_TEST_DATA:-$IT_DATA_DIR}

PKI=$T/pki
it_pki "$PKI"
# The RA CA and the registrar's RA certificate (cmcRA + clientAuth), as in
# est_https_ra.sh.
RA=$T/ra
mkdir -p "$RA"
gen() { certtool --generate-privkey --key-type=ecdsa --curve=secp256r1 --outfile "$1" 2>/dev/null; }
gen "$RA/ca.key"
printf 'cn = "est-coaps Test RA CA"\nca\ncert_signing_key\nexpiration_days = 365\n' >"$RA/ca.tmpl"
certtool --generate-self-signed --load-privkey "$RA/ca.key" --template "$RA/ca.tmpl" \
  --outfile "$RA/ca.crt" 2>/dev/null || it_fail "RA CA"
gen "$RA/ra.key"
printf 'cn = "registrar-1"\ntls_www_client\nsigning_key\nexpiration_days = 30\nkey_purpose_oid = 1.3.6.1.5.5.7.3.28\n' \
  >"$RA/ra.tmpl"
certtool --generate-certificate --load-privkey "$RA/ra.key" --load-ca-certificate "$RA/ca.crt" \
  --load-ca-privkey "$RA/ca.key" --template "$RA/ra.tmpl" --outfile "$RA/ra.crt" 2>/dev/null ||
  it_fail "RA certificate"
chmod 600 "$RA"/*.key
# The registrar's DTLS trust: the upstream CA (LDevIDs), the manufacturer
# CA (IDevIDs) and the rogue CA, whose clients get through the handshake
# but are of neither class.
cat "$PKI/ca.crt" "$PKI/mfr-ca.crt" "$PKI/rogue-ca.crt" >"$T/reg-trust.pem"

# ---- the upstream: an RFC 7030 server taking RAs (name coapd) ------------
HP=$(it_free_tcp_port)
MP=$(it_free_tcp_port)
for ((i = 0; i < 20 && MP == HP; i++)); do MP=$(it_free_tcp_port); done
UPDB=$T/est.db
UPLOG=$T/coapd.log
EST_HOST_EXTRA="metrics_listen 127.0.0.1 $MP" est_start "https_listen 127.0.0.1 $HP" \
  "https_cert $PKI/server.crt" "https_key $PKI/server.key" "ra_trust $RA/ca.crt" \
  "keygen on" "csr_attrs $DATA/csrattrs.der" "retry_after 9"
UP_CONF=$CONF
UP=https://127.0.0.1:$HP/.well-known/est
up() { "$ESTCTL" --db "$UPDB" --actor tester "$@"; }
# up_rows: how many requests the upstream has recorded.
up_rows() { up list --json | $PY -c 'import json,sys; print(len(json.load(sys.stdin)))'; }
# up_https: every HTTPS answer the upstream gave (est_https_requests_total).
up_https() {
  curl -sS -m 5 "http://127.0.0.1:$MP/metrics" |
    awk '/^est_https_requests_total\{/ { s += $NF } END { printf "%d\n", s }'
}

# ---- registrars -----------------------------------------------------------
# reg_start NAME URL [OPT VALUE...]: write $T/NAME.conf for a registrar with
# upstream URL on a free port and start it as server NAME (log
# $T/NAME.log). Defaults: upstream_ca the upstream's CA, upstream_cert/key
# the RA certificate, idevid_trust the manufacturer CA, idevid_policy and
# ldevid_policy auto, keygen on, db_path $T/NAME.db; an option given
# replaces its default, and "OPT -" leaves it out. No ca_cert/ca_key: the
# registrar has no CA key. Sets PORT (for est_req) and REG_PORT[NAME].
declare -gA REG_PORT=()
reg_start() {
  local name=$1 url=$2
  shift 2
  local conf=$T/$name.conf port given="" o d
  port=$(it_free_port)
  for o in "$@"; do given="$given ${o%% *} "; done
  {
    echo "listen 127.0.0.1 $port"
    echo "listen ::1 $port"
    echo "dtls_cert $PKI/server.crt"
    echo "dtls_key $PKI/server.key"
    echo "dtls_ca $T/reg-trust.pem"
    echo "log_level ${EST_LOG_LEVEL:-info}"
    echo "plugin $EST_PLUGIN"
    echo "plugin_opt_upstream $url"
    for d in "upstream_ca $PKI/ca.crt" "upstream_cert $RA/ra.crt" "upstream_key $RA/ra.key" \
      "idevid_trust $PKI/mfr-ca.crt" "idevid_policy auto" "ldevid_policy auto" "keygen on" \
      "db_path $T/$name.db"; do
      case "$given" in *" ${d%% *} "*) ;; *) echo "plugin_opt_$d" ;; esac
    done
    for o in "$@"; do
      [ "${o#* }" = - ] || echo "plugin_opt_$o"
    done
  } >"$conf"
  it_coapd_start "$conf" "$name"
  REG_PORT[$name]=$port
  PORT=$port
}
REGDB=$T/registrar.db
reg() { "$ESTCTL" --db "$REGDB" --actor tester "$@"; }

# enroll LOG PORT ARGS...: est-enroll (bounded) against 127.0.0.1:PORT with
# the test PKI as trust; ARGS are the rest (--cert/--key, the command).
# Sets ENROLL_RC.
enroll() {
  local log=$1 port=$2
  shift 2
  timeout -k 5 170 "$EST_ENROLL" --server "coaps://127.0.0.1:$port" --trust "$PKI/ca.crt" \
    --root /est "$@" >"$log" 2>&1
  ENROLL_RC=$?
}
enroll_ok() { # LOG PORT ARGS...
  enroll "$@"
  [ "$ENROLL_RC" = 0 ] || it_fail "est-enroll ${*:3}: exit $ENROLL_RC: $(grep -av '^libcoap:' "$1" | tail -5)"
}
# issued_by_upstream PEM KEY CN: the certificate chains to the upstream CA,
# carries the key of KEY and the subject CN.
issued_by_upstream() {
  est_verify "$1" "$PKI/ca.crt"
  [ "$(est_cert_pubkey "$1")" = "$(est_key_pubkey "$2")" ] || it_fail "$1 does not carry the key of $2"
  certtool -i --infile "$1" 2>/dev/null | grep -q "Subject: CN=$3\$" ||
    it_fail "$1: subject is not CN=$3: $(certtool -i --infile "$1" 2>/dev/null | grep Subject:)"
  certtool -i --infile "$1" 2>/dev/null | grep -q "Issuer: CN=est-coaps Test CA,O=est-coaps" ||
    it_fail "$1: not issued by the upstream CA: $(certtool -i --infile "$1" 2>/dev/null | grep Issuer:)"
}
# up_row SUBJECT FUNCTION STATE CLASS: the upstream has exactly one request
# for SUBJECT, of FUNCTION, in STATE, made via RA CN=registrar-1 for a
# device of CLASS whose certificate's SHA-256 is $DEV_FP; prints its id.
up_row() {
  up list --json | $PY -c '
import json, sys
subj, fn, state, cls, fp = sys.argv[1:6]
r = [x for x in json.load(sys.stdin) if x["subject"] == subj]
assert len(r) == 1, r
x = r[0]
assert x["function"] == fn and x["state"] == state, x
assert x["ra"] == "CN=registrar-1", x
assert x["clientClass"] == cls and x["clientFingerprint"] == fp, (x, fp)
print(x["id"])' "$@" "$DEV_FP"
}
# reg_issued SUBJECT: the registrar's own database has an issued request
# for SUBJECT.
reg_issued() {
  reg list --json | $PY -c '
import json, sys
r = [x for x in json.load(sys.stdin) if x["subject"] == sys.argv[1]]
assert any(x["state"] == "issued" for x in r), r' "$1" ||
    it_fail "the registrar recorded no issued request for $1: $(reg list)"
}
# via_ra ID NAME: the upstream's request ID (estctl show) says "via RA
# CN=registrar-1" and names the device NAME.
via_ra() {
  up show "$1" >"$T/show-$1.txt" || it_fail "estctl show $1 on the upstream"
  grep -q "via RA  *CN=registrar-1" "$T/show-$1.txt" || it_fail "upstream show $1: no via RA: $(cat "$T/show-$1.txt")"
  grep -q "$2" "$T/show-$1.txt" || it_fail "upstream show $1 does not name $2: $(cat "$T/show-$1.txt")"
}
# new_lines NAME N: the lines of $T/NAME.log after the first N.
new_lines() { tail -n +"$(($2 + 1))" "$T/$1.log"; }
fp_of() { openssl x509 -in "$1" -outform DER | sha256sum | cut -d' ' -f1; }
IDEV_FP=$(fp_of "$PKI/idevid.crt")

reg_start registrar "$UP" "san_dns_patterns *.devices.example"
REG=$PORT

# 1. crts: the upstream's cacerts, CF 281, the upstream CA certificate. A
# registrar that has not fetched them yet may say 5.03 for a moment.
for ((i = 0; i < 10; i++)); do
  est_req gnutls idevid get /est/crts
  [ "$IT_CODE" = 5.03 ] || break
  sleep 1
done
it_expect_code 2.05
it_expect_opt 'Content-Format:281'
[ "$(head -c1 "$IT_PAYLOAD_FILE" | od -An -tx1 | tr -d ' ')" = 30 ] || it_fail "crts is not bare DER"
est_p7_to_pem "$IT_PAYLOAD_FILE" "$T/crts.pem"
cmp -s <(certtool -i --infile "$T/crts.pem" --outder 2>/dev/null) \
  <(certtool -i --infile "$PKI/ca.crt" --outder 2>/dev/null) || it_fail "crts is not the upstream CA certificate"
cp "$IT_PAYLOAD_FILE" "$T/crts-1.p7"
# One CA certificate: Accept 287 is that certificate alone.
est_req openssl idevid get /est/crts -A 287
it_expect_code 2.05
it_expect_opt 'Content-Format:287'
cmp -s "$IT_PAYLOAD_FILE" <(certtool -i --infile "$PKI/ca.crt" --outder 2>/dev/null) ||
  it_fail "crts 287 is not the upstream CA certificate"
# An LDevID of the upstream CA is a client of the registrar too.
est_req openssl client get /.well-known/est/crts
it_expect_code 2.05
cmp -s "$IT_PAYLOAD_FILE" "$T/crts-1.p7" || it_fail "crts for an LDevID differs"
# The default upstream_cache is db_path + ".cacerts".
for ((i = 0; i < 50; i++)); do
  [ -s "$REGDB.cacerts" ] && break
  sleep 0.1
done
[ -s "$REGDB.cacerts" ] || it_fail "no upstream cache $REGDB.cacerts"

# 2. att: the upstream's csrattrs, CF 285, the same bytes.
est_req openssl idevid get /est/att
it_expect_code 2.05
it_expect_opt 'Content-Format:285'
cmp -s "$IT_PAYLOAD_FILE" "$DATA/csrattrs.der" || it_fail "att is not the upstream's csrattrs"

# 3. sen with est-enroll and the IDevID: a certificate from the upstream
# CA; the upstream's row is the device's, via the RA; the registrar's db
# has it too.
DEV_FP=$IDEV_FP
enroll_ok "$T/e1.log" "$REG" --cert "$PKI/idevid.crt" --key "$PKI/idevid.key" --timeout 40 -v \
  enroll --subject CN=reg-e1 --san-dns e1.devices.example --key-file "$T/e1.key" --out "$T/e1.crt"
issued_by_upstream "$T/e1.crt" "$T/e1.key" reg-e1
certtool -i --infile "$T/e1.crt" 2>/dev/null | grep -q "DNSname: e1.devices.example" || it_fail "e1: SAN not copied"
id=$(up_row CN=reg-e1 sen issued idevid) || it_fail "upstream row for reg-e1: $(up list --json)"
via_ra "$id" idevid-0001
up audit | grep -q "via RA CN=registrar-1" || it_fail "upstream audit: $(up audit)"
reg_issued CN=reg-e1

# 4. sen with coap-client-gnutls: an empty ACK, then the 2.04 as a separate
# CON (-v 7 shows the whole exchange); CF 281 by default.
est_csr "$T/g1.key" "$T/g1.csr" reg-g1 'dns_name = "g1.devices.example"'
est_req gnutls idevid post /est/sen -t 286 -f "$T/g1.csr" -v 7 -B 30
it_expect_code 2.04
it_expect_opt 'Content-Format:281'
est_expect_separate "sen"
est_p7_to_pem "$IT_PAYLOAD_FILE" "$T/g1.crt"
[ "$(grep -c 'BEGIN CERTIFICATE' "$T/g1.crt")" = 1 ] || it_fail "sen PKCS#7 holds not exactly 1 cert"
issued_by_upstream "$T/g1.crt" "$T/g1.key" reg-g1
id=$(up_row CN=reg-g1 sen issued idevid) || it_fail "upstream row for reg-g1: $(up list --json)"
# coap-client-openssl, 64-byte blocks both ways, Accept 287: the bare
# certificate.
est_csr "$T/o1.key" "$T/o1.csr" reg-o1
est_req openssl idevid post /est/sen -t 286 -A 287 -b 64 -f "$T/o1.csr" -B 30
it_expect_code 2.04
it_expect_opt 'Content-Format:287'
est_der_to_pem "$IT_PAYLOAD_FILE" "$T/o1.crt"
issued_by_upstream "$T/o1.crt" "$T/o1.key" reg-o1
reg_issued CN=reg-o1

# 5. sren with est-enroll and the LDevID from 3, with a new key: the
# upstream renews it (its row: sren, the LDevID, via the RA).
DEV_FP=$(fp_of "$T/e1.crt")
enroll_ok "$T/e1r.log" "$REG" --cert "$T/e1.crt" --key "$T/e1.key" --timeout 40 -v \
  reenroll --key-file "$T/e1r.key" --out "$T/e1r.crt"
issued_by_upstream "$T/e1r.crt" "$T/e1r.key" reg-e1
[ "$(est_cert_pubkey "$T/e1r.crt")" != "$(est_cert_pubkey "$T/e1.crt")" ] || it_fail "sren: not rekeyed"
up list --json | $PY -c '
import json, sys
r = [x for x in json.load(sys.stdin) if x["subject"] == "CN=reg-e1" and x["function"] == "sren"]
assert len(r) == 1 and r[0]["state"] == "issued", r
assert r[0]["ra"] == "CN=registrar-1" and r[0]["clientClass"] == "ldevid", r[0]
assert r[0]["clientFingerprint"] == sys.argv[1], (r[0], sys.argv[1])' "$DEV_FP" ||
  it_fail "upstream sren row: $(up list --json)"
DEV_FP=$IDEV_FP

# 6. skg (coap-client-openssl) and skc (coap-client-gnutls): multipart-core
# 284 + 281 / 284 + 287 as a separate response, a key made upstream that
# matches a certificate of the upstream CA; est-enroll serverkeygen
# --single-cert too.
keygen() { # client fn cert-cf
  local client=$1 fn=$2 cf=$3 d=$T/kg-$1-$2
  mkdir -p "$d"
  est_csr "$d/csr.key" "$d/csr.der" "reg-kg-$client-$fn"
  est_req "$client" idevid post "/est/$fn" -t 286 -A 62 -f "$d/csr.der" -B 30
  it_expect_code 2.04
  grep -Eq '^v:1 t:CON c:2\.04 ' "$T/coap-$IT_COAP_N.all" || it_fail "$fn: the 2.04 is not a separate CON"
  it_expect_opt 'Content-Format:62'
  $PY "$(dirname "$0")/mpsplit.py" "$IT_PAYLOAD_FILE" "$d" "$cf" || it_fail "$fn multipart"
  if [ "$cf" = 281 ]; then est_p7_to_pem "$d/cert.der" "$d/cert.pem"; else est_der_to_pem "$d/cert.der" "$d/cert.pem"; fi
  certtool -k --inder --infile "$d/key.der" --outfile "$d/key.pem" 2>/dev/null || it_fail "$fn: no PKCS#8 key"
  issued_by_upstream "$d/cert.pem" "$d/key.pem" "reg-kg-$client-$fn"
  [ "$(est_cert_pubkey "$d/cert.pem")" != "$(est_key_pubkey "$d/csr.key")" ] || it_fail "$fn: the CSR key was certified"
  up_row "CN=reg-kg-$client-$fn" skg issued idevid >/dev/null ||
    it_fail "upstream row for reg-kg-$client-$fn: $(up list --json)"
}
keygen openssl skg 281
keygen gnutls skc 287
enroll_ok "$T/s1.log" "$REG" --cert "$PKI/idevid.crt" --key "$PKI/idevid.key" --timeout 40 -v \
  serverkeygen --subject CN=reg-s1 --key-out "$T/s1.key" --out "$T/s1.crt" --single-cert
issued_by_upstream "$T/s1.crt" "$T/s1.key" reg-s1

# 7. What the registrar refuses itself never reaches the upstream: no new
# row, no HTTPS answer counted, no refusal logged there.
rows0=$(up_rows)
https0=$(up_https)
log0=$(wc -l <"$UPLOG")
# A client of neither class (the rogue CA is only in dtls_ca): 4.03.
est_csr "$T/r1.key" "$T/r1.csr" reg-rogue
for fn in sen skg; do
  est_req gnutls rogue post "/est/$fn" -t 286 -f "$T/r1.csr"
  it_expect_code 4.03; it_expect_diag
done
# A DNS name outside san_dns_patterns; a CA certificate: 4.03.
est_csr "$T/n1.key" "$T/n1.csr" reg-name 'dns_name = "evil.example"'
est_req openssl idevid post /est/sen -t 286 -f "$T/n1.csr"
it_expect_code 4.03; it_expect_diag
est_csr "$T/n2.key" "$T/n2.csr" reg-ca ca cert_signing_key
est_req gnutls idevid post /est/sen -t 286 -f "$T/n2.csr"
it_expect_code 4.03; it_expect_diag
# A challengePassword that is not this session's tls-unique (pop_linking
# verify): 4.03. An IDevID may not re-enroll: 4.03. No CSR: 4.00.
est_csr "$T/p1.key" "$T/p1.csr" reg-pop 'challenge_password = "AAAAAAAAAAAAAAAA"'
est_req gnutls idevid post /est/sen -t 286 -f "$T/p1.csr"
it_expect_code 4.03
grep -q "identity/POP linking required" "$IT_STDERR" || it_fail "PoP diag: $(cat "$IT_STDERR")"
est_req openssl idevid post /est/sren -t 286 -f "$T/g1.csr"
it_expect_code 4.03; it_expect_diag
head -c 300 /dev/urandom >"$T/junk"
est_req gnutls idevid post /est/sen -t 286 -f "$T/junk"
it_expect_code 4.00; it_expect_diag
sleep 1
[ "$(up_rows)" = "$rows0" ] || it_fail "a locally refused request reached the upstream: $(up list)"
[ "$(up_https)" = "$https0" ] || it_fail "the upstream answered $(($(up_https) - https0)) HTTPS requests for locally refused ones"
! new_lines coapd "$log0" | grep -q "https request" ||
  it_fail "the upstream logged a refusal: $(new_lines coapd "$log0" | grep "https request")"
up list --json | grep -Eq 'reg-(rogue|name|ca|pop)' && it_fail "a refused subject is on the upstream"

# 8. A registrar without upstream_cert/upstream_key: the upstream sees no
# client certificate (https_anonymous off) and refuses; the device gets no
# 2.xx and the upstream records nothing. cacerts needs no client
# certificate (RFC 7030 §4.1.1), so crts still works.
reg_start anonreg "$UP" "upstream_cert -" "upstream_key -"
rows0=$(up_rows)
est_csr "$T/a1.key" "$T/a1.csr" reg-anon
est_req gnutls idevid post /est/sen -t 286 -f "$T/a1.csr" -B 30
it_expect_no_2xx
case "$IT_CODE" in 4.03 | 4.01) ;; *) it_fail "no RA certificate: expected 4.03 or 4.01, got '${IT_CODE:-no response}'" ;; esac
grep -q "upstream CA: " "$IT_STDERR" || it_fail "no RA certificate: diag does not quote the upstream: $(cat "$IT_STDERR")"
enroll "$T/a2.log" "$PORT" --cert "$PKI/idevid.crt" --key "$PKI/idevid.key" --timeout 40 -v \
  enroll --subject CN=reg-anon-2 --key-file "$T/a2.key" --out "$T/a2.crt" --max-wait 0
[ "$ENROLL_RC" = 4 ] || it_fail "est-enroll through a registrar without RA certificate: exit $ENROLL_RC, expected 4"
[ ! -e "$T/a2.crt" ] || it_fail "est-enroll wrote a certificate"
[ "$(up_rows)" = "$rows0" ] || it_fail "the upstream recorded a request from a registrar without RA certificate: $(up list)"
for ((i = 0; i < 10; i++)); do
  est_req openssl idevid get /est/crts
  [ "$IT_CODE" = 5.03 ] || break
  sleep 1
done
it_expect_code 2.05
cmp -s "$IT_PAYLOAD_FILE" "$T/crts-1.p7" || it_fail "anonreg: crts differs"
it_coapd_stop anonreg

# 8b. The registrar's own queue comes first: under its idevid_policy
# manual a request waits there (5.03 + its retry_after) and the upstream
# sees nothing; once the registrar's operator approves, it goes upstream.
reg_start manreg "$UP" "idevid_policy manual" "retry_after 7"
rows0=$(up_rows)
est_csr "$T/q1.key" "$T/q1.csr" reg-queue
est_req gnutls idevid post /est/sen -t 286 -f "$T/q1.csr" -B 30
it_expect_code 5.03
it_expect_opt 'Max-Age:7'
[ "$(up_rows)" = "$rows0" ] || it_fail "a request waiting at the registrar reached the upstream: $(up list)"
qid=$("$ESTCTL" --db "$T/manreg.db" list --state pending --json | $PY -c '
import json, sys
r = [x for x in json.load(sys.stdin) if x["subject"] == "CN=reg-queue"]
assert len(r) == 1, r
print(r[0]["id"])') || it_fail "no pending row at the registrar: $("$ESTCTL" --db "$T/manreg.db" list)"
"$ESTCTL" --db "$T/manreg.db" --actor tester approve "$qid" >/dev/null || it_fail "estctl approve on the registrar"
est_req openssl idevid post /est/sen -t 286 -f "$T/q1.csr" -B 30
it_expect_code 2.04
est_p7_to_pem "$IT_PAYLOAD_FILE" "$T/q1.crt"
issued_by_upstream "$T/q1.crt" "$T/q1.key" reg-queue
up_row CN=reg-queue sen issued idevid >/dev/null || it_fail "upstream row for reg-queue: $(up list --json)"
it_coapd_stop manreg

# 9. A slow upstream: every chunk 3 s late each way (one HTTP exchange on
# a kept connection: 6 s; with a new TLS handshake 12 s or more). The
# device still gets its certificate as a separate response. The relay is
# fast while the registrar starts, which fetches cacerts before it is ready.
slow_delay() { echo "$1" >"$T/slow.delay.tmp" && mv "$T/slow.delay.tmp" "$T/slow.delay"; }
slow_delay 0
/usr/bin/python3 "$(dirname "$0")/tcpdelay.py" --target "$HP" --port-file "$T/slow.port" \
  --delay 0 --delay-file "$T/slow.delay" --stats "$T/slow.json" --lifetime 400 &
IT_PIDS[slow]=$!
for ((i = 0; i < 50; i++)); do
  [ -s "$T/slow.port" ] && break
  sleep 0.1
done
SLOW=$(cat "$T/slow.port") || it_fail "tcpdelay.py did not start"
reg_start slowreg "https://127.0.0.1:$SLOW/.well-known/est" "upstream_timeout 60" \
  "upstream_cache $T/slow.cacerts"
# upstream_cache given: the cacerts are kept there, not beside db_path.
[ -s "$T/slow.cacerts" ] && [ ! -e "$T/slowreg.db.cacerts" ] ||
  it_fail "upstream_cache: $(ls "$T"/*cacerts*)"
cmp -s <(certtool --p7-info --inder --infile "$T/slow.cacerts" 2>/dev/null | sed -n '/BEGIN CERT/,/END CERT/p') \
  "$T/crts.pem" || it_fail "upstream_cache does not hold the upstream's cacerts"
slow_delay 3
t0=$(date +%s%N)
enroll "$T/slow1.log" "$PORT" --cert "$PKI/idevid.crt" --key "$PKI/idevid.key" --timeout 90 -vvv \
  enroll --subject CN=reg-slow --key-file "$T/slow1.key" --out "$T/slow1.crt" &
IT_PIDS[slowenroll]=$!
# Meanwhile the registrar answers others at once: the relay does not block
# its loop.
sleep 2
t1=$(date +%s%N)
est_req openssl idevid get /est/crts
dt=$((($(date +%s%N) - t1) / 1000000))
it_expect_code 2.05
[ "${IT_VALGRIND:-0}" = 1 ] || ((dt < 3000)) || it_fail "crts took $dt ms while an enrollment waited for the slow upstream"
wait "${IT_PIDS[slowenroll]}"
ENROLL_RC=$?
unset 'IT_PIDS[slowenroll]'
took=$((($(date +%s%N) - t0) / 1000000))
[ "$ENROLL_RC" = 0 ] || it_fail "slow upstream: est-enroll exit $ENROLL_RC: $(grep -av '^libcoap:' "$T/slow1.log" | tail -5)"
issued_by_upstream "$T/slow1.crt" "$T/slow1.key" reg-slow
((took >= 5900)) || it_fail "slow upstream: done in $took ms, so not through the 3 s relay"
grep -aqE '^libcoap: v:1 t:CON c:2\.04 ' "$T/slow1.log" || it_fail "slow upstream: the 2.04 is not a separate CON"
up_row CN=reg-slow sen issued idevid >/dev/null || it_fail "upstream row for reg-slow: $(up list --json)"
echo "slow upstream: enrolled in $took ms"
it_coapd_stop slowreg
cp "$T/slowreg.log" "$T/slowreg.log.1"

# 10. upstream_timeout: the same relay and a 5 s limit: 5.03 + Max-Age,
# and the registrar says why in its log.
sed -i 's/^plugin_opt_upstream_timeout 60$/plugin_opt_upstream_timeout 5/' "$T/slowreg.conf"
grep -q '^plugin_opt_upstream_timeout 5$' "$T/slowreg.conf" || it_fail "sed slowreg.conf"
slow_delay 0
it_coapd_start "$T/slowreg.conf" slowreg
slow_delay 3
PORT=${REG_PORT[slowreg]}
log0=$(wc -l <"$T/slowreg.log")
est_csr "$T/t1.key" "$T/t1.csr" reg-timeout
t0=$(date +%s%N)
est_req gnutls idevid post /est/sen -t 286 -f "$T/t1.csr" -B 40
took=$((($(date +%s%N) - t0) / 1000000))
it_expect_code 5.03
echo "$IT_OPTS" | grep -Eq 'Max-Age:[1-9][0-9]*' || it_fail "upstream timeout: 5.03 without Max-Age: [$IT_OPTS]"
((took >= 4500 && took < 30000)) || [ "${IT_VALGRIND:-0}" = 1 ] || it_fail "upstream timeout: the 5.03 came after $took ms, not about 5 s"
new_lines slowreg "$log0" | grep -qi 'upstream' || it_fail "upstream timeout: nothing in the registrar's log"
it_coapd_stop slowreg
kill -TERM "${IT_PIDS[slow]}" 2>/dev/null
wait "${IT_PIDS[slow]}" 2>/dev/null
unset 'IT_PIDS[slow]'
$PY -c 'import json,sys; s=json.load(open(sys.argv[1])); assert s["connections"] >= 2 and s["up"]["bytes"] > 0, s' \
  "$T/slow.json" || it_fail "tcpdelay.py stats: $(cat "$T/slow.json" 2>/dev/null)"

# 11. The upstream is down: 5.03 + Max-Age (never 5.00/5.02) and a log
# line; est-enroll takes it as "pending"; crts is still served, and after a
# restart of the registrar from upstream_cache.
it_coapd_stop coapd
cp "$UPLOG" "$UPLOG.1"
PORT=$REG
log0=$(wc -l <"$T/registrar.log")
est_csr "$T/d1.key" "$T/d1.csr" reg-down
est_req gnutls idevid post /est/sen -t 286 -f "$T/d1.csr" -B 30
it_expect_code 5.03
echo "$IT_OPTS" | grep -Eq 'Max-Age:[1-9][0-9]*' || it_fail "upstream down: 5.03 without Max-Age: [$IT_OPTS]"
new_lines registrar "$log0" | grep -qi 'upstream' || it_fail "upstream down: nothing in the registrar's log"
# The other relayed functions alike: skg (openssl), sren (the LDevID).
est_req openssl idevid post /est/skg -t 286 -f "$T/d1.csr" -B 30
it_expect_code 5.03
echo "$IT_OPTS" | grep -Eq 'Max-Age:[1-9][0-9]*' || it_fail "upstream down, skg: 5.03 without Max-Age: [$IT_OPTS]"
est_csr "$T/e1r.key" "$T/e1d.csr" reg-e1 'dns_name = "e1.devices.example"'
est_req gnutls "$T/e1r" post /est/sren -t 286 -f "$T/e1d.csr" -B 30
it_expect_code 5.03
echo "$IT_OPTS" | grep -Eq 'Max-Age:[1-9][0-9]*' || it_fail "upstream down, sren: 5.03 without Max-Age: [$IT_OPTS]"
# What the registrar issued before is answered from its own store: the
# resend of reg-g1 (step 4) gets its certificate again.
est_req gnutls idevid post /est/sen -t 286 -f "$T/g1.csr" -B 30
it_expect_code 2.04
est_p7_to_pem "$IT_PAYLOAD_FILE" "$T/g1-again.crt"
cmp -s "$T/g1-again.crt" "$T/g1.crt" || it_fail "upstream down: the resend of reg-g1 got another certificate"
enroll "$T/d2.log" "$REG" --cert "$PKI/idevid.crt" --key "$PKI/idevid.key" --timeout 40 -v \
  enroll --subject CN=reg-down-2 --key-file "$T/d2.key" --out "$T/d2.crt" --max-wait 0
[ "$ENROLL_RC" = 3 ] || it_fail "est-enroll with the upstream down: exit $ENROLL_RC, expected 3 (pending)"
est_req openssl idevid get /est/crts
it_expect_code 2.05
cmp -s "$IT_PAYLOAD_FILE" "$T/crts-1.p7" || it_fail "upstream down: crts differs"
it_coapd_stop registrar
cp "$T/registrar.log" "$T/registrar.log.1"
it_coapd_start "$T/registrar.conf" registrar
est_req gnutls idevid get /est/crts
it_expect_code 2.05
cmp -s "$IT_PAYLOAD_FILE" "$T/crts-1.p7" || it_fail "restarted with the upstream down: crts is not the cached one"

# 12. The upstream comes back with idevid_policy manual: its 202 +
# Retry-After 9 is the device's 5.03 + Max-Age 9 (the registrar may need a
# moment to try the upstream again); after approval upstream the device's
# resend gets the certificate.
sed -i 's/^plugin_opt_idevid_policy auto$/plugin_opt_idevid_policy manual/' "$UP_CONF"
grep -q '^plugin_opt_idevid_policy manual$' "$UP_CONF" || it_fail "sed $UP_CONF"
it_coapd_start "$UP_CONF" coapd
est_csr "$T/m1.key" "$T/m1.csr" reg-m1
pending=""
for ((i = 0; i < 15; i++)); do
  est_req openssl idevid post /est/sen -t 286 -f "$T/m1.csr" -B 30
  it_expect_code 5.03
  pending=$(up_row CN=reg-m1 sen pending idevid 2>/dev/null) && break
  sleep 2
done
[ -n "$pending" ] || it_fail "the upstream never got reg-m1: $(up list --json)"
it_expect_opt 'Max-Age:9'
via_ra "$pending" idevid-0001
est_req gnutls idevid post /est/sen -t 286 -f "$T/m1.csr" -B 30
it_expect_code 5.03
it_expect_opt 'Max-Age:9'
up_row CN=reg-m1 sen pending idevid >/dev/null || it_fail "a resend while pending made another row: $(up list --json)"
up approve "$pending" >"$T/approve.out" || it_fail "estctl approve on the upstream: $(cat "$T/approve.out")"
est_req gnutls idevid post /est/sen -t 286 -f "$T/m1.csr" -B 30
it_expect_code 2.04
est_p7_to_pem "$IT_PAYLOAD_FILE" "$T/m1.crt"
issued_by_upstream "$T/m1.crt" "$T/m1.key" reg-m1
up_row CN=reg-m1 sen issued idevid >/dev/null || it_fail "upstream row for reg-m1: $(up list --json)"
up show "$pending" | grep -q "approved" || it_fail "upstream show: $(up show "$pending")"
reg_issued CN=reg-m1
# The registrar started while the upstream was down, so it has no
# csrattrs; SIGHUP fetches cacerts and csrattrs again, and att is the
# upstream's.
log0=$(wc -l <"$T/registrar.log")
kill -HUP "${IT_PIDS[registrar]}"
for ((i = 0; i < 100; i++)); do
  new_lines registrar "$log0" | grep -q "reloaded:" && break
  sleep 0.1
done
new_lines registrar "$log0" | grep -q "reloaded:" || it_fail "the registrar did not reload"
for ((i = 0; i < 10; i++)); do
  est_req openssl idevid get /est/att
  [ "$IT_CODE" = 2.05 ] && break
  sleep 1
done
it_expect_code 2.05
cmp -s "$IT_PAYLOAD_FILE" "$DATA/csrattrs.der" || it_fail "att after SIGHUP is not the upstream's csrattrs"
est_req gnutls idevid get /est/crts
it_expect_code 2.05
cmp -s "$IT_PAYLOAD_FILE" "$T/crts-1.p7" || it_fail "crts after SIGHUP differs"

it_coapd_stop registrar
it_coapd_stop coapd
[ "$(sqlite3 "$REGDB" 'PRAGMA integrity_check')" = ok ] || it_fail "registrar db integrity_check"

# 13. Configurations coapd -t refuses, with FILE:LINE: a registrar with a
# CA key of its own, one without upstream_ca, upstream_cert without
# upstream_key.
bad_conf() { # name sed-expression want-regex
  sed -e "$2" "$T/registrar.conf" >"$T/$1.conf"
  it_coapd_run "$1" -t -c "$T/$1.conf"
  [ "$IT_RC" != 0 ] || it_fail "$1: coapd -t accepted it"
  grep -Eq "$T/$1.conf:[0-9]+: .*$3" "$IT_LOG" || it_fail "$1: no FILE:LINE message: $(tail -3 "$IT_LOG")"
}
bad_conf with-ca "\$a plugin_opt_ca_cert $PKI/ca.crt\nplugin_opt_ca_key $PKI/ca.key" 'ca_cert'
bad_conf no-upstream-ca '/^plugin_opt_upstream_ca /d' 'upstream_ca'
bad_conf cert-no-key '/^plugin_opt_upstream_key /d' 'upstream_(cert|key)'
it_pass
