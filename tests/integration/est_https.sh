#!/usr/bin/env bash
# EST over HTTPS (RFC 7030, docs/decisions.md §16), driven by curl and checked
# with OpenSSL, neither of them ours:
#  - cacerts (§4.1): 200 certs-only PKCS#7 holding ca.crt, base64 on one line,
#    to any client or none (§4.1.1), HEAD, labels (§3.2.2), IPv6;
#  - csrattrs (§4.5): the configured DER, 404 when none is configured (§4.5.2);
#  - simpleenroll (§4.2.1): IDevID 200, a cert that verifies and holds the CSR
#    key; base64 with LF, CRLF, spaces, no breaks, any Content-Transfer-Encoding
#    (RFC 8951 §3), chunked, Expect: 100-continue, TLS 1.2 and 1.3, IPv6, three
#    requests on one kept-alive connection; 415 without application/pkcs10,
#    400 on empty, non-base64 and non-CSR bodies, 405 + Allow on GET, 404 on
#    unknown op or label, 403 for a rogue certificate or none (with the log
#    line), 413 over max_body; every refusal text/plain, no Retry-After;
#  - PoP linking (§3.5): a wrong challengePassword 403, this TLS 1.2 session's
#    tls-unique (Python's ssl module, which exposes it) 200;
#  - simplereenroll (§4.2.2): LDevID with the same subject 200, else 403; a
#    client cert from a forged CA of our CA's name 403; a revoked LDevID 403;
#  - serverkeygen (§4.4.2): multipart/mixed, PKCS#8 key then PKCS#7 cert; the
#    key parses, the cert verifies and carries that key; 404 with keygen off;
#  - manual approval (§4.2.3): 202 + Retry-After and the same request N on a
#    resend; approve gives 200 and the same bytes again; reject gives 403 with
#    the reason; https_anonymous manual always waits for an operator, under
#    the auto policy too, and a pre-authorised subject does not help it;
#  - one queue for both transports: begun over CoAP, finished over HTTPS and
#    the other way, one request each;
#  - est_https_requests_total counts exactly the answers this test got.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/est_lib.sh"
it_init est_https
[ -x "${ESTCTL:-}" ] || it_fail "ESTCTL is not set"
[ -f "${EST_TEST_DATA:-}/csrattrs.der" ] || it_fail "EST_TEST_DATA/csrattrs.der is missing"
command -v curl >/dev/null || it_fail "no curl"
command -v openssl >/dev/null || it_fail "no openssl"
DB=$T/est.db
ctl() { "$ESTCTL" --db "$DB" --actor tester "$@"; }
PY=/usr/bin/python3
CT_P7='application/pkcs7-mime; smime-type=certs-only'
WK=/.well-known/est

# ---- helpers ------------------------------------------------------------------
HN=0
# Expected est_https_requests_total, "op code" -> count, kept by h().
declare -A EXPECT=()
# The operations the running server serves (route() in https.c): any other
# path is counted as function "-".
OPS="cacerts simpleenroll simplereenroll"

# h ID METHOD PATH [curl args...]: one HTTPS request as ID (idevid, client,
# rogue, none, or a path prefix P for P.crt/P.key). Sets HCODE, HHDR (the
# headers file), HBODY (the body file). HHOST=[::1] for IPv6.
h() {
  local id=$1 method=$2 path=$3
  shift 3
  local creds=() m=(-X "$method") op=- o
  case "$id" in
    none) ;;
    idevid | client | rogue) creds=(--cert "$PKI/$id.crt" --key "$PKI/$id.key") ;;
    *) creds=(--cert "$id.crt" --key "$id.key") ;;
  esac
  [ "$method" = HEAD ] && m=(-I)
  HN=$((HN + 1))
  HHDR=$T/h-$HN.hdr
  HBODY=$T/h-$HN.body
  curl -sS --max-time 10 --cacert "$PKI/ca.crt" "${creds[@]}" "${m[@]}" \
    -D "$HHDR" -o "$HBODY" -w '%{http_code}' "$@" \
    "https://${HHOST:-127.0.0.1}:$HP$path" >"$T/h-$HN.code" 2>"$T/h-$HN.err" ||
    it_fail "curl $method $path as $id failed: $(cat "$T/h-$HN.err")"
  HCODE=$(cat "$T/h-$HN.code")
  [ -f "$HBODY" ] || : >"$HBODY"
  for o in $OPS; do
    case "$path" in "$WK/$o" | "$WK/fleet-a/$o") op=$o ;; esac
  done
  EXPECT["$op $HCODE"]=$((${EXPECT["$op $HCODE"]:-0} + 1))
}
# hdr NAME: the value of response header NAME (the last one), without CR.
hdr() { grep -i "^$1:" "$HHDR" | tail -n 1 | sed 's/^[^:]*:[ ]*//' | tr -d '\r'; }
# expect CODE [CONTENT-TYPE]: the last answer had status CODE (and exactly
# that Content-Type). A 4xx/5xx must carry a text/plain reason.
expect() {
  [ "$HCODE" = "$1" ] || it_fail "request $HN: expected $1, got $HCODE: $(head -c 300 "$HBODY")"
  if [ $# -ge 2 ]; then
    [ "$(hdr Content-Type)" = "$2" ] || it_fail "request $HN: Content-Type '$(hdr Content-Type)', want '$2'"
  fi
  case "$1" in
    4?? | 5??)
      case "$(hdr Content-Type)" in text/plain*) ;; *) it_fail "request $HN: $1 is not text/plain: $(hdr Content-Type)" ;; esac
      [ -n "$(tr -d ' \r\n' <"$HBODY")" ] || it_fail "request $HN: $1 without a reason"
      # Retry-After only where the client should come back (§4.2.3).
      [ "$1" = 503 ] || [ -z "$(hdr Retry-After)" ] || it_fail "request $HN: $1 with Retry-After"
      ;;
  esac
  return 0
}
# expect_body RE: the body matches the grep -E regex RE.
expect_body() { grep -Eq -- "$1" "$HBODY" || it_fail "request $HN: body does not match '$1': $(head -c 300 "$HBODY")"; }
# one_line_b64 OUT: the body is base64 on a single line (no CR, no LF);
# its decoding goes to OUT.
one_line_b64() {
  [ -s "$HBODY" ] || it_fail "request $HN: empty body"
  LC_ALL=C grep -q '[^A-Za-z0-9+/=]' "$HBODY" && it_fail "request $HN: body is not base64 on one line: $(od -c "$HBODY" | head -5)"
  [ "$(wc -l <"$HBODY")" = 0 ] || it_fail "request $HN: body has line breaks"
  base64 -d "$HBODY" >"$1" 2>/dev/null || it_fail "request $HN: body does not decode as base64"
}
# p7_certs DER OUT: the certificates of a certs-only PKCS#7 (no signers) as PEM.
p7_certs() {
  openssl pkcs7 -inform DER -in "$1" -print -noout >"$T/p7.txt" 2>&1 || it_fail "$1 is not PKCS#7: $(head -3 "$T/p7.txt")"
  grep -q 'type: pkcs7-signedData' "$T/p7.txt" || it_fail "$1 is not signedData"
  [ "$(sed -n '/^ *signer_info:/{n;p;}' "$T/p7.txt" | tr -d ' ')" = '<EMPTY>' ] || it_fail "$1 has signers: not certs-only"
  openssl pkcs7 -inform DER -in "$1" -print_certs -out "$2" 2>/dev/null || it_fail "cannot read the certificates in $1"
  grep -q 'BEGIN CERTIFICATE' "$2" || it_fail "no certificate in $1"
}
ncerts() { grep -c 'BEGIN CERTIFICATE' "$1"; }
der() { openssl x509 -in "$1" -outform DER; }
# csr KEY OUT SUBJECT: a DER PKCS#10 CSR, EC P-256 KEY made if missing.
csr() {
  [ -f "$1" ] || openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null ||
    it_fail "openssl genpkey $1"
  openssl req -new -key "$1" -subj "$3" -outform DER -out "$2" 2>/dev/null || it_fail "openssl req $2"
}
b64() { base64 -w "${2:-64}" "$1"; }
# enrolled KEY SUBJECT: the answer is 200 with one certificate that chains
# to ca.crt, carries KEY's public key and SUBJECT (RFC 2253; a bare value
# means CN=value); it goes to $T/got.crt.
enrolled() {
  expect 200 "$CT_P7"
  one_line_b64 "$T/got.p7"
  p7_certs "$T/got.p7" "$T/got.crt"
  [ "$(ncerts "$T/got.crt")" = 1 ] || it_fail "request $HN: $(ncerts "$T/got.crt") certificates, want 1"
  openssl verify -CAfile "$PKI/ca.crt" "$T/got.crt" >"$T/verify.out" 2>&1 ||
    it_fail "request $HN: the certificate does not verify: $(cat "$T/verify.out")"
  [ "$(openssl x509 -in "$T/got.crt" -noout -pubkey)" = "$(openssl pkey -in "$1" -pubout)" ] ||
    it_fail "request $HN: the certificate does not carry the CSR's key"
  local want=$2
  case "$want" in *=*) ;; *) want="CN=$want" ;; esac
  [ "$(openssl x509 -in "$T/got.crt" -noout -subject -nameopt RFC2253)" = "subject=$want" ] ||
    it_fail "request $HN: $(openssl x509 -in "$T/got.crt" -noout -subject -nameopt RFC2253), want $want"
}
# waiting: a 202 with Retry-After 7 and "request N is waiting for an
# operator"; sets RID to N.
waiting() {
  expect 202
  [ "$(hdr Retry-After)" = 7 ] || it_fail "request $HN: 202 with Retry-After '$(hdr Retry-After)', want 7"
  expect_body '^request [0-9]+ is waiting for an operator'
  RID=$(sed -nE 's/^request ([0-9]+) is waiting.*/\1/p' "$HBODY" | head -n 1)
}
nreq() { ctl list --json | $PY -c 'import json,sys; print(len(json.load(sys.stdin)))'; }
state_of() { ctl show "$1" --json | $PY -c 'import json,sys; print(json.load(sys.stdin)["state"])'; }

# ---- server 1: auto policy, keygen, csr_attrs, a label, metrics ---------------
HP=$(it_free_tcp_port)
MP=$(it_free_tcp_port)
[ "$HP" != "$MP" ] || MP=$(it_free_tcp_port)
HTTPS_OPTS=("https_listen 127.0.0.1 $HP" "https_listen ::1 $HP"
  "https_cert $T/pki/server.crt" "https_key $T/pki/server.key")
OPS="cacerts simpleenroll simplereenroll serverkeygen csrattrs"
EST_HOST_EXTRA="metrics_listen 127.0.0.1 $MP" est_start "${HTTPS_OPTS[@]}" "keygen on" \
  "labels fleet-a" "csr_attrs $EST_TEST_DATA/csrattrs.der"
grep -q "HTTPS EST (RFC 7030) on 127.0.0.1:$HP" "$T/coapd.log" || it_fail "no HTTPS listener on 127.0.0.1:$HP in the log"
grep -q "HTTPS EST (RFC 7030) on \[::1\]:$HP" "$T/coapd.log" || it_fail "no HTTPS listener on [::1]:$HP in the log"

# cacerts (RFC 7030 §4.1): the CA certificate, to anyone (§4.1.1).
der "$PKI/ca.crt" >"$T/ca.der"
for id in idevid client rogue none; do
  for path in $WK/cacerts $WK/fleet-a/cacerts; do
    h $id GET "$path"
    expect 200 "$CT_P7"
    one_line_b64 "$T/cacerts.p7"
    p7_certs "$T/cacerts.p7" "$T/cacerts.pem"
    [ "$(ncerts "$T/cacerts.pem")" = 1 ] || it_fail "cacerts holds $(ncerts "$T/cacerts.pem") certificates"
    cmp -s <(der "$T/cacerts.pem") "$T/ca.der" || it_fail "$path as $id: cacerts is not ca.crt"
  done
done
cp "$HBODY" "$T/cacerts.b64"
# For older clients (§4.1.3); RFC 8951 tells them to ignore it.
[ "$(hdr Content-Transfer-Encoding)" = base64 ] || it_fail "cacerts: Content-Transfer-Encoding '$(hdr Content-Transfer-Encoding)'"
HHOST='[::1]' h none GET $WK/cacerts
expect 200 "$CT_P7"
cmp -s "$HBODY" "$T/cacerts.b64" || it_fail "cacerts over IPv6 differs"
h none HEAD $WK/cacerts
expect 200 "$CT_P7"
# curl -I writes the headers as its output: anything more would be a body.
cmp -s "$HBODY" "$HHDR" || it_fail "HEAD cacerts has a body: $(od -c "$HBODY" | tail -4)"
h idevid POST $WK/cacerts -H 'Content-Type: application/pkcs10' --data-binary x
expect 405
case "$(hdr Allow)" in *GET*) ;; *) it_fail "405 on POST cacerts: Allow '$(hdr Allow)'" ;; esac

# csrattrs (§4.5): the configured DER, base64, without a client certificate.
for path in $WK/csrattrs $WK/fleet-a/csrattrs; do
  h none GET "$path"
  expect 200 application/csrattrs
  one_line_b64 "$T/attrs.der"
  cmp -s "$T/attrs.der" "$EST_TEST_DATA/csrattrs.der" || it_fail "$path: not the csr_attrs file"
done

# simpleenroll (§4.2.1) with the IDevID; the body in every shape RFC 8951 §3
# allows, Content-Transfer-Encoding whatever it says.
csr "$T/d1.key" "$T/d1.der" /CN=dev-1
b64 "$T/d1.der" >"$T/d1.lf"
b64 "$T/d1.der" 0 >"$T/d1.one"
sed 's/$/\r/' "$T/d1.lf" >"$T/d1.crlf"
b64 "$T/d1.der" 0 | sed -E 's/(.{10})/\1 /g; s/^/  /; s/$/ \r\n/' >"$T/d1.sp"
PK10=(-H 'Content-Type: application/pkcs10')
for f in lf one crlf sp; do
  h idevid POST $WK/simpleenroll "${PK10[@]}" --data-binary "@$T/d1.$f"
  enrolled "$T/d1.key" dev-1
done
for cte in base64 7bit binary quoted-printable; do
  h idevid POST $WK/simpleenroll "${PK10[@]}" -H "Content-Transfer-Encoding: $cte" --data-binary "@$T/d1.lf"
  enrolled "$T/d1.key" dev-1
done
h idevid POST $WK/fleet-a/simpleenroll -H 'Content-Type: application/pkcs10; charset=binary' --data-binary "@$T/d1.crlf"
enrolled "$T/d1.key" dev-1
cp "$T/got.crt" "$T/d1.crt"
# Media types are case-insensitive (RFC 9110 §8.3.1); a chunked body and
# Expect: 100-continue are plain HTTP/1.1 (RFC 9112 §7.1, RFC 9110 §10.1.1).
h idevid POST $WK/simpleenroll -H 'Content-Type: Application/PKCS10' --data-binary "@$T/d1.lf"
enrolled "$T/d1.key" dev-1
h idevid POST $WK/simpleenroll "${PK10[@]}" -H 'Transfer-Encoding: chunked' --data-binary "@$T/d1.crlf"
enrolled "$T/d1.key" dev-1
h idevid POST $WK/simpleenroll "${PK10[@]}" -H 'Expect: 100-continue' --data-binary "@$T/d1.lf"
enrolled "$T/d1.key" dev-1
# Three requests on one kept-alive connection: cacerts, simpleenroll and
# serverkeygen (which runs on the worker) each get their own answer.
curl -sS --max-time 20 --cacert "$PKI/ca.crt" --cert "$PKI/idevid.crt" --key "$PKI/idevid.key" \
  -o "$T/ka1" -w '%{http_code} %{num_connects}\n' "https://127.0.0.1:$HP$WK/cacerts" --next \
  --cacert "$PKI/ca.crt" --cert "$PKI/idevid.crt" --key "$PKI/idevid.key" "${PK10[@]}" \
  --data-binary "@$T/d1.lf" -o "$T/ka2" -w '%{http_code} %{num_connects}\n' "https://127.0.0.1:$HP$WK/simpleenroll" --next \
  --cacert "$PKI/ca.crt" --cert "$PKI/idevid.crt" --key "$PKI/idevid.key" "${PK10[@]}" \
  --data-binary "@$T/d1.lf" -o "$T/ka3" -w '%{http_code} %{num_connects}\n' "https://127.0.0.1:$HP$WK/serverkeygen" \
  >"$T/ka.codes" 2>"$T/ka.err" || it_fail "keep-alive curl: $(cat "$T/ka.err")"
[ "$(tr '\n' ' ' <"$T/ka.codes")" = "200 1 200 0 200 0 " ] || it_fail "keep-alive: codes and connects $(tr '\n' ' ' <"$T/ka.codes")"
EXPECT["cacerts 200"]=$((${EXPECT["cacerts 200"]:-0} + 1))
EXPECT["simpleenroll 200"]=$((${EXPECT["simpleenroll 200"]:-0} + 1))
EXPECT["serverkeygen 200"]=$((${EXPECT["serverkeygen 200"]:-0} + 1))
cmp -s "$T/ka1" "$T/cacerts.b64" || it_fail "keep-alive: cacerts differs"
base64 -d "$T/ka2" >"$T/ka2.p7" 2>/dev/null || it_fail "keep-alive: simpleenroll body is not base64"
p7_certs "$T/ka2.p7" "$T/ka2.pem"
[ "$(openssl x509 -in "$T/ka2.pem" -noout -pubkey)" = "$(openssl pkey -in "$T/d1.key" -pubout)" ] ||
  it_fail "keep-alive: simpleenroll answered another key"
head -n 1 "$T/ka3" | grep -q '^--.' || it_fail "keep-alive: serverkeygen is not multipart: $(head -c 100 "$T/ka3")"
# The wrong media type, no body, not base64, not a CSR.
h idevid POST $WK/simpleenroll -H 'Content-Type: text/plain' --data-binary "@$T/d1.lf"
expect 415
h idevid POST $WK/simpleenroll --data-binary "@$T/d1.lf" # curl's x-www-form-urlencoded
expect 415
h idevid POST $WK/simpleenroll "${PK10[@]}" --data-binary ''
expect 400
printf '%s\n' '*** this is not base64 ***' >"$T/junk"
h idevid POST $WK/simpleenroll "${PK10[@]}" --data-binary "@$T/junk"
expect 400
printf 'hello, this is no CSR' | base64 >"$T/notcsr"
h idevid POST $WK/simpleenroll "${PK10[@]}" --data-binary "@$T/notcsr"
expect 400
# Methods and paths.
for op in simpleenroll simplereenroll serverkeygen; do
  h idevid GET "$WK/$op"
  expect 405
  [ "$(hdr Allow)" = POST ] || it_fail "405 on GET $op: Allow '$(hdr Allow)', want POST"
done
for path in $WK/fullcmc $WK/nosuchop $WK/other-label/cacerts $WK/other-label/simpleenroll /est/cacerts /; do
  h idevid GET "$path"
  expect 404
done
h idevid POST $WK/other-label/simpleenroll "${PK10[@]}" --data-binary "@$T/d1.lf"
expect 404

# Who may enroll: a rogue certificate and none are refused, and logged.
h rogue POST $WK/simpleenroll "${PK10[@]}" --data-binary "@$T/d1.lf"
expect 403
grep -Eq 'https request op=simpleenroll status=403 peer=127\.0\.0\.1:[0-9]+ client="[^"]*rogue-0001[^"]*" reason="[^"]+" retry_after=0' "$T/coapd.log" ||
  it_fail "no log line for the rogue 403: $(grep 'https request' "$T/coapd.log" | tail -3)"
h none POST $WK/simpleenroll "${PK10[@]}" --data-binary "@$T/d1.lf"
expect 403
expect_body '^a client certificate is required'
grep -Eq 'https request op=simpleenroll status=403 peer=127\.0\.0\.1:[0-9]+ client="\(no client certificate\)" reason="a client certificate is required[^"]*" retry_after=0$' "$T/coapd.log" ||
  it_fail "no log line for the anonymous 403: $(grep 'https request' "$T/coapd.log" | tail -3)"
h none POST $WK/simplereenroll "${PK10[@]}" --data-binary "@$T/d1.lf"
expect 403

# simplereenroll (§4.2.2): the LDevID just issued, same subject, new key or
# same key; another subject is 403; an IDevID or rogue may not.
openssl pkey -in "$T/d1.key" -out "$T/dev1.key" 2>/dev/null
cp "$T/d1.crt" "$T/dev1.crt"
h "$T/dev1" POST $WK/simplereenroll "${PK10[@]}" --data-binary "@$T/d1.lf"
enrolled "$T/d1.key" dev-1
csr "$T/d1b.key" "$T/d1b.der" /CN=dev-1
b64 "$T/d1b.der" | sed 's/$/\r/' >"$T/d1b.crlf"
h "$T/dev1" POST $WK/fleet-a/simplereenroll "${PK10[@]}" --data-binary "@$T/d1b.crlf"
enrolled "$T/d1b.key" dev-1
csr "$T/d1.key" "$T/other.der" /CN=dev-2
b64 "$T/other.der" >"$T/other.lf"
h "$T/dev1" POST $WK/simplereenroll "${PK10[@]}" --data-binary "@$T/other.lf"
expect 403
# The demo LDevID from our CA.
lsubj=$(openssl x509 -in "$PKI/client.crt" -noout -subject -nameopt RFC2253 | sed 's/^subject=//')
[ "$lsubj" = CN=ldevid-0001,O=est-coaps ] || it_fail "client.crt subject is '$lsubj'"
csr "$T/l1.key" "$T/l1.der" /O=est-coaps/CN=ldevid-0001
b64 "$T/l1.der" >"$T/l1.lf"
h client POST $WK/simplereenroll "${PK10[@]}" --data-binary "@$T/l1.lf"
enrolled "$T/l1.key" "$lsubj"
h client POST $WK/simplereenroll "${PK10[@]}" --data-binary "@$T/other.lf"
expect 403
h idevid POST $WK/simplereenroll "${PK10[@]}" --data-binary "@$T/d1.lf"
expect 403
h rogue POST $WK/simplereenroll "${PK10[@]}" --data-binary "@$T/l1.lf"
expect 403
# A CA of our own CA's name but another key: the signature decides, not the
# issuer name (the handshake verifies nothing, decisions §16).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/fca.key" \
  -out "$T/fca.crt" -subj "$(openssl x509 -in "$PKI/ca.crt" -noout -subject -nameopt compat | sed 's/^subject=//')" \
  -days 30 -addext basicConstraints=critical,CA:true -addext keyUsage=keyCertSign 2>/dev/null || it_fail "forged CA"
[ "$(openssl x509 -in "$T/fca.crt" -noout -subject)" = "$(openssl x509 -in "$PKI/ca.crt" -noout -subject)" ] ||
  it_fail "the forged CA has another name"
openssl req -new -key "$T/l1.key" -subj /O=est-coaps/CN=ldevid-0001 -out "$T/forged.csr" 2>/dev/null
printf 'extendedKeyUsage=clientAuth\n' >"$T/forged.ext"
openssl x509 -req -in "$T/forged.csr" -CA "$T/fca.crt" -CAkey "$T/fca.key" -CAcreateserial -days 10 \
  -extfile "$T/forged.ext" -out "$T/forged.crt" 2>/dev/null || it_fail "forged LDevID"
cp "$T/l1.key" "$T/forged.key"
for op in simplereenroll simpleenroll; do
  h "$T/forged" POST $WK/$op "${PK10[@]}" --data-binary "@$T/l1.lf"
  expect 403
done
# A revoked LDevID (estctl revoke) is refused on its next request
# (decisions §14), cacerts still served.
h "$T/dev1" POST $WK/simplereenroll "${PK10[@]}" --data-binary "@$T/d1.lf"
enrolled "$T/d1.key" dev-1
ctl revoke "$(openssl x509 -in "$T/dev1.crt" -noout -serial | sed 's/^serial=//')" --reason keyCompromise \
  >"$T/revoke.out" 2>&1 || it_fail "estctl revoke: $(cat "$T/revoke.out")"
for op in simplereenroll simpleenroll; do
  h "$T/dev1" POST $WK/$op "${PK10[@]}" --data-binary "@$T/d1.lf"
  expect 403
  expect_body revoked
done
h "$T/dev1" GET $WK/cacerts
expect 200 "$CT_P7"

# serverkeygen (§4.4.2): multipart/mixed, the PKCS#8 key, then the
# certificate as certs-only PKCS#7; the key is the certificate's.
csr "$T/k1.key" "$T/k1.der" /CN=kg-1
b64 "$T/k1.der" >"$T/k1.lf"
for path in $WK/serverkeygen $WK/fleet-a/serverkeygen; do
  h idevid POST "$path" "${PK10[@]}" --data-binary "@$T/k1.lf"
  expect 200
  ct=$(hdr Content-Type)
  case "$ct" in "multipart/mixed; boundary="?*) ;; *) it_fail "serverkeygen Content-Type '$ct'" ;; esac
  rm -rf "$T/skg" && mkdir "$T/skg"
  $PY - "$ct" "$HBODY" "$T/skg" <<'EOF' || it_fail "serverkeygen multipart (body $HBODY)"
import base64, binascii, email, sys
ct, body, out = sys.argv[1], open(sys.argv[2], "rb").read(), sys.argv[3]
# compat32 (the default) keeps header values as the server wrote them.
msg = email.message_from_bytes(b"Content-Type: " + ct.encode() + b"\r\n\r\n" + body)
if not msg.is_multipart() or msg.defects:
    sys.exit(f"not a clean multipart: {msg.defects}")
parts = msg.get_payload()
types = [str(p["Content-Type"]).strip() for p in parts]
if len(parts) != 2 or types[0] != "application/pkcs8" or \
        types[1] != "application/pkcs7-mime; smime-type=certs-only":
    sys.exit(f"parts {types}")
for p, name in zip(parts, ("key.der", "cert.p7")):
    raw = p.get_payload(decode=False).strip()
    try:
        data = base64.b64decode(raw, validate=False)
    except binascii.Error as e:
        sys.exit(f"{name}: not base64: {e}")
    if not data or data[0] != 0x30:
        sys.exit(f"{name}: not DER")
    open(f"{out}/{name}", "wb").write(data)
EOF
  openssl pkey -inform DER -in "$T/skg/key.der" -out "$T/skg/key.pem" 2>"$T/skg/err" ||
    it_fail "serverkeygen: the key does not parse: $(cat "$T/skg/err")"
  openssl asn1parse -inform DER -in "$T/skg/key.der" >"$T/skg/asn1" 2>&1 || it_fail "key asn1parse"
  # PKCS#8 PrivateKeyInfo: SEQUENCE { INTEGER 0, AlgorithmIdentifier, OCTET STRING }.
  sed -n 2p "$T/skg/asn1" | grep -q 'INTEGER *:00' || it_fail "serverkeygen key is not PKCS#8: $(head -3 "$T/skg/asn1")"
  p7_certs "$T/skg/cert.p7" "$T/skg/cert.pem"
  [ "$(ncerts "$T/skg/cert.pem")" = 1 ] || it_fail "serverkeygen: $(ncerts "$T/skg/cert.pem") certificates"
  openssl verify -CAfile "$PKI/ca.crt" "$T/skg/cert.pem" >"$T/verify.out" 2>&1 ||
    it_fail "serverkeygen cert does not verify: $(cat "$T/verify.out")"
  [ "$(openssl x509 -in "$T/skg/cert.pem" -noout -pubkey)" = "$(openssl pkey -in "$T/skg/key.pem" -pubout)" ] ||
    it_fail "serverkeygen: the certificate does not carry the key sent with it"
  [ "$(openssl pkey -in "$T/skg/key.pem" -pubout)" != "$(openssl pkey -in "$T/k1.key" -pubout)" ] ||
    it_fail "serverkeygen returned the CSR's own key"
  openssl x509 -in "$T/skg/cert.pem" -noout -subject -nameopt RFC2253 | grep -qx 'subject=CN=kg-1' ||
    it_fail "serverkeygen subject: $(openssl x509 -in "$T/skg/cert.pem" -noout -subject)"
done
h rogue POST $WK/serverkeygen "${PK10[@]}" --data-binary "@$T/k1.lf"
expect 403
h idevid POST $WK/serverkeygen -H 'Content-Type: application/octet-stream' --data-binary "@$T/k1.lf"
expect 415

# est_https_requests_total counts every answer above, by operation and status.
curl -sS --max-time 5 -o "$T/metrics.txt" "http://127.0.0.1:$MP/metrics" || it_fail "curl /metrics"
for k in "${!EXPECT[@]}"; do echo "$k ${EXPECT[$k]}"; done >"$T/expect.txt"
$PY - "$T/metrics.txt" "$T/expect.txt" <<'EOF' || it_fail "est_https_requests_total (scrape $T/metrics.txt, expected $T/expect.txt)"
import re, sys
got = {}
for line in open(sys.argv[1]):
    m = re.match(r'est_https_requests_total\{function="([^"]*)",code="([0-9]+)"\} ([0-9.e+]+)$', line.strip())
    if m:
        got[(m[1], m[2])] = float(m[3])
want = {}
for line in open(sys.argv[2]):
    op, code, n = line.split()
    want[(op, code)] = float(n)
if ("simpleenroll", "200") not in want or want[("simpleenroll", "200")] < 9:
    sys.exit("the test made too few simpleenrolls")
if got != want:
    for k in sorted(set(got) | set(want)):
        if got.get(k) != want.get(k):
            print(f"{k}: metrics {got.get(k)}, test {want.get(k)}", file=sys.stderr)
    sys.exit(1)
EOF
est_stop

# ---- server 2: manual approval, anonymous manual, keygen off, no csrattrs ------
rm -f "$T"/est.db*
EXPECT=()
OPS="cacerts simpleenroll simplereenroll"
est_start "${HTTPS_OPTS[@]}" "idevid_policy manual" "retry_after 7" "keygen off" \
  "https_anonymous manual" "max_body 1024"
grep -q "HTTPS EST (RFC 7030) on 127.0.0.1:$HP, simpleenroll without a client certificate waits for an operator" "$T/coapd.log" ||
  it_fail "no anonymous notice in the log"
h none GET $WK/csrattrs
expect 404
h idevid POST $WK/serverkeygen "${PK10[@]}" --data-binary "@$T/k1.lf"
expect 404
# max_body: a Content-Length over it is 413 before the body is read.
head -c 2000 /dev/zero | tr '\0' 'A' >"$T/big"
h idevid POST $WK/simpleenroll "${PK10[@]}" --data-binary "@$T/big"
expect 413

# Wait, resend, approve, collect, collect again (§4.2.3).
csr "$T/m1.key" "$T/m1.der" /CN=man-1
b64 "$T/m1.der" >"$T/m1.lf"
h idevid POST $WK/simpleenroll "${PK10[@]}" --data-binary "@$T/m1.lf"
waiting
id1=$RID
grep -Eq "https request op=simpleenroll status=202 .*client=\"[^\"]*idevid-0001[^\"]*\" reason=\"request $id1 is waiting for an operator[^\"]*\" retry_after=7" "$T/coapd.log" ||
  it_fail "no log line for the 202"
b64 "$T/m1.der" 0 >"$T/m1.one"
h idevid POST $WK/simpleenroll "${PK10[@]}" --data-binary "@$T/m1.one"
waiting
[ "$RID" = "$id1" ] || it_fail "the resend is request $RID, not $id1"
[ "$(nreq)" = 1 ] || it_fail "a resend made a second request: $(ctl list)"
[ "$(state_of "$id1")" = pending ] || it_fail "request $id1 is not pending"
ctl approve "$id1" >"$T/approve.out" || it_fail "estctl approve: $(cat "$T/approve.out")"
h idevid POST $WK/simpleenroll "${PK10[@]}" --data-binary "@$T/m1.lf"
enrolled "$T/m1.key" man-1
cp "$HBODY" "$T/m1-first.b64"
h idevid POST $WK/simpleenroll "${PK10[@]}" --data-binary "@$T/m1.lf"
enrolled "$T/m1.key" man-1
cmp -s "$HBODY" "$T/m1-first.b64" || it_fail "the repeated resend got other bytes"
[ "$(state_of "$id1")" = issued ] || it_fail "request $id1 is not issued"
[ "$(nreq)" = 1 ] || it_fail "collecting made another request"

# Reject: 403 with the operator's reason.
csr "$T/m2.key" "$T/m2.der" /CN=man-2
b64 "$T/m2.der" >"$T/m2.lf"
h idevid POST $WK/simpleenroll "${PK10[@]}" --data-binary "@$T/m2.lf"
waiting
ctl reject "$RID" --reason "unknown device 42" >/dev/null || it_fail "estctl reject"
h idevid POST $WK/simpleenroll "${PK10[@]}" --data-binary "@$T/m2.lf"
expect 403
expect_body 'unknown device 42'
[ "$(state_of "$RID")" = rejected ] || it_fail "request $RID is not rejected"

# One queue for both transports (decisions §16): asked over CoAP, pending,
# approved, collected over HTTPS; one request.
csr "$T/x1.key" "$T/x1.der" /CN=xt-1
est_req gnutls idevid post /est/sen -t 286 -f "$T/x1.der"
it_expect_code 5.03
n0=$(nreq)
xid=$(ctl list --state pending --json | $PY -c 'import json,sys; r=[x for x in json.load(sys.stdin) if x["subject"]=="CN=xt-1"]; print(r[0]["id"] if len(r)==1 else "")')
[ -n "$xid" ] || it_fail "no single pending request for CN=xt-1: $(ctl list)"
b64 "$T/x1.der" >"$T/x1.lf"
h idevid POST $WK/simpleenroll "${PK10[@]}" --data-binary "@$T/x1.lf"
waiting
[ "$RID" = "$xid" ] || it_fail "over HTTPS the CoAP request $xid is request $RID"
ctl approve "$xid" >/dev/null || it_fail "estctl approve $xid"
h idevid POST $WK/simpleenroll "${PK10[@]}" --data-binary "@$T/x1.lf"
enrolled "$T/x1.key" xt-1
[ "$(nreq)" = "$n0" ] || it_fail "CoAP then HTTPS made $(nreq) requests, want $n0: $(ctl list)"
[ "$(state_of "$xid")" = issued ] || it_fail "request $xid is not issued"
cp "$T/got.crt" "$T/x1-https.crt"
est_req gnutls idevid post /est/sen -t 286 -f "$T/x1.der"
it_expect_code 2.04
est_p7_to_pem "$IT_PAYLOAD_FILE" "$T/x1-coap.crt"
cmp -s <(der "$T/x1-coap.crt") <(der "$T/x1-https.crt") || it_fail "CoAP and HTTPS gave other certificates for one request"

# And the other way: asked over HTTPS, collected over CoAP.
csr "$T/x2.key" "$T/x2.der" /CN=xt-2
b64 "$T/x2.der" | sed 's/$/\r/' >"$T/x2.crlf"
h idevid POST $WK/simpleenroll "${PK10[@]}" --data-binary "@$T/x2.crlf"
waiting
x2=$RID
n0=$(nreq)
est_req openssl idevid post /est/sen -t 286 -f "$T/x2.der"
it_expect_code 5.03
[ "$(nreq)" = "$n0" ] || it_fail "the CoAP resend made a new request"
ctl approve "$x2" >/dev/null || it_fail "estctl approve $x2"
est_req gnutls idevid post /est/sen -t 286 -f "$T/x2.der"
it_expect_code 2.04
est_p7_to_pem "$IT_PAYLOAD_FILE" "$T/x2-coap.crt"
openssl verify -CAfile "$PKI/ca.crt" "$T/x2-coap.crt" >/dev/null 2>&1 || it_fail "x2 over CoAP does not verify"
[ "$(openssl x509 -in "$T/x2-coap.crt" -noout -pubkey)" = "$(openssl pkey -in "$T/x2.key" -pubout)" ] ||
  it_fail "x2 over CoAP: not the CSR's key"
[ "$(nreq)" = "$n0" ] || it_fail "HTTPS then CoAP made $(nreq) requests, want $n0"
[ "$(state_of "$x2")" = issued ] || it_fail "request $x2 is not issued"

# https_anonymous manual: no certificate waits for an operator; the CSR key
# is the identity of the resend.
csr "$T/a1.key" "$T/a1.der" /CN=anon-1
b64 "$T/a1.der" >"$T/a1.lf"
h none POST $WK/simpleenroll "${PK10[@]}" --data-binary "@$T/a1.lf"
waiting
a1=$RID
h none POST $WK/simpleenroll "${PK10[@]}" --data-binary "@$T/a1.lf"
waiting
[ "$RID" = "$a1" ] || it_fail "the anonymous resend is request $RID, not $a1"
h none POST $WK/simplereenroll "${PK10[@]}" --data-binary "@$T/a1.lf"
expect 403
ctl approve "$a1" >/dev/null || it_fail "estctl approve $a1"
h none POST $WK/simpleenroll "${PK10[@]}" --data-binary "@$T/a1.lf"
enrolled "$T/a1.key" anon-1
# A pre-authorised subject is issued at once to an IDevID, never to a client
# without a certificate: anyone can ask for any subject (decisions §16).
ctl preauth add --subject "CN=pre-1" >/dev/null || it_fail "estctl preauth add"
csr "$T/pa.key" "$T/pa.der" /CN=pre-1
b64 "$T/pa.der" >"$T/pa.lf"
h none POST $WK/simpleenroll "${PK10[@]}" --data-binary "@$T/pa.lf"
waiting
csr "$T/pb.key" "$T/pb.der" /CN=pre-1
b64 "$T/pb.der" >"$T/pb.lf"
h idevid POST $WK/simpleenroll "${PK10[@]}" --data-binary "@$T/pb.lf"
enrolled "$T/pb.key" pre-1
est_stop

# ---- server 3: auto policy and https_anonymous manual ---------------------------
# The IDevID is issued at once; a client without a certificate still waits.
est_start "${HTTPS_OPTS[@]}" "https_anonymous manual" "retry_after 7"
csr "$T/a2.key" "$T/a2.der" /CN=anon-2
b64 "$T/a2.der" >"$T/a2.lf"
h none POST $WK/simpleenroll "${PK10[@]}" --data-binary "@$T/a2.lf"
waiting
[ "$(state_of "$RID")" = pending ] || it_fail "anonymous request $RID is not pending"
csr "$T/a3.key" "$T/a3.der" /CN=auto-3
b64 "$T/a3.der" >"$T/a3.lf"
h idevid POST $WK/simpleenroll "${PK10[@]}" --data-binary "@$T/a3.lf"
enrolled "$T/a3.key" auto-3
HHOST='[::1]' h idevid POST $WK/simpleenroll "${PK10[@]}" --data-binary "@$T/a3.lf"
enrolled "$T/a3.key" auto-3
# TLS 1.2 works too (RFC 7030 §3.3.1).
h idevid POST $WK/simpleenroll "${PK10[@]}" --tlsv1.2 --tls-max 1.2 --data-binary "@$T/a3.lf"
enrolled "$T/a3.key" auto-3

# PoP linking (RFC 7030 §3.5, pop_linking verify, the default): a
# challengePassword that is not this session's tls-unique is refused; the
# right one, put in the CSR inside a TLS 1.2 session (Python's ssl module,
# which exposes tls-unique), is accepted.
popcsr() { # KEY OUT CN CHALLENGE
  printf '[req]\nprompt=no\ndistinguished_name=dn\nattributes=at\n[dn]\nCN=%s\n[at]\nchallengePassword=%s\n' \
    "$3" "$4" >"$2.cnf"
  [ -f "$1" ] || openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
  openssl req -new -key "$1" -config "$2.cnf" -outform DER -out "$2" 2>/dev/null || it_fail "openssl req $2"
  openssl req -inform DER -in "$2" -noout -text | grep -q "challengePassword *:$4" || it_fail "$2 has no challengePassword"
}
popcsr "$T/p1.key" "$T/p1.der" pop-1 AAAAAAAAAAAAAAAA
b64 "$T/p1.der" >"$T/p1.lf"
for v in 1.2 1.3; do
  h idevid POST $WK/simpleenroll "${PK10[@]}" --tlsv$v --tls-max $v --data-binary "@$T/p1.lf"
  expect 403
  expect_body 'identity/POP linking required'
done
$PY - "$HP" "$PKI" "$T/p2" <<'EOF2' >"$T/pop.out" 2>&1 || it_fail "PoP-linked enrollment: $(cat "$T/pop.out")"
import base64, socket, ssl, subprocess, sys
port, pki, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.load_verify_locations(f"{pki}/ca.crt")
ctx.load_cert_chain(f"{pki}/idevid.crt", f"{pki}/idevid.key")
ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                     server_hostname="127.0.0.1") as s:
    cb = base64.b64encode(s.get_channel_binding("tls-unique")).decode()
    open(f"{out}.cnf", "w").write("[req]\nprompt=no\ndistinguished_name=dn\nattributes=at\n"
                                  f"[dn]\nCN=pop-2\n[at]\nchallengePassword={cb}\n")
    subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-out", f"{out}.key"], check=True)
    subprocess.run(["openssl", "req", "-new", "-key", f"{out}.key", "-config", f"{out}.cnf",
                    "-outform", "DER", "-out", f"{out}.der"], check=True)
    body = base64.encodebytes(open(f"{out}.der", "rb").read())
    s.sendall(b"POST /.well-known/est/simpleenroll HTTP/1.1\r\nHost: 127.0.0.1\r\n"
              b"Content-Type: application/pkcs10\r\nConnection: close\r\n"
              b"Content-Length: %d\r\n\r\n" % len(body) + body)
    resp = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        resp += b
head, _, data = resp.partition(b"\r\n\r\n")
status = head.split(b"\r\n")[0]
if not status.startswith(b"HTTP/1.1 200 "):
    sys.exit(f"{status!r}: {data[:300]!r}")
open(f"{out}.p7", "wb").write(base64.b64decode(data, validate=True))
EOF2
p7_certs "$T/p2.p7" "$T/p2.crt"
openssl verify -CAfile "$PKI/ca.crt" "$T/p2.crt" >/dev/null 2>&1 || it_fail "the PoP-linked certificate does not verify"
[ "$(openssl x509 -in "$T/p2.crt" -noout -pubkey)" = "$(openssl pkey -in "$T/p2.key" -pubout)" ] ||
  it_fail "the PoP-linked certificate does not carry the CSR key"
est_stop
it_pass
