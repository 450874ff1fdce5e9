#!/usr/bin/env bash
# EST over HTTPS (RFC 7030) under slow, hostile and oversized clients.
# libmicrohttpd runs inside coapd's single event loop (plugin/est/https.c),
# so one client that stalls, floods or sends too much must never hold that
# loop or the listener: the CoAP side and every other HTTPS client share it.
# Covered, with the limits set small:
#   - cacerts without a client certificate, simpleenroll with the IDevID;
#     TLS 1.2 and 1.3 served, TLS 1.1 refused in the handshake;
#   - max_body: a Content-Length over it gets 413 with a text reason (and a
#     log line), a chunked body growing over it gets the connection closed,
#     a chunked body under it is served; the server serves the next request;
#   - https_max_header_bytes: half of it is served, 3x it plus 8 KiB gets a
#     4xx (not 200), and the next request is served;
#   - https_timeout: TCP connections that never send a ClientHello, and TLS
#     connections that send half the headers (slowloris), are closed within
#     about the timeout, and while they are open a normal request is served
#     at once (the loop is not blocked);
#   - https_max_connections_per_ip: with that many idle connections the next
#     one is refused at once, and after the idle ones time out all is well;
#   - 50 parallel requests each get 200 or a clean refusal (none hangs), and
#     coapd still serves HTTPS and CoAP afterwards;
#   - PoP linking (RFC 7030 §3.5, pop_linking require): no challengePassword
#     is 403, base64(tls-unique) of the very TLS 1.2 connection the CSR is
#     posted on is 200, another connection's tls-unique is 403;
#   - https_max_connections: while the listener is full a new client is not
#     served, and once the idle connections time out new clients are served.
# Loopback only; every client is bounded (curl --max-time, socket timeouts).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/est_lib.sh"
it_init est_https_limits
# A holder still running when a check fails is ours to stop.
HOLD_PID=
trap '[ -z "$HOLD_PID" ] || kill "$HOLD_PID" 2>/dev/null; it_cleanup' EXIT

PY=/usr/bin/python3 # the Debian python3 (ssl with tls-unique)
CLIENT="$IT_LIB_DIR/est_https_limits_client.py"
[ -x "$PY" ] || it_fail "no $PY"
[ -f "$CLIENT" ] || it_fail "no $CLIENT"
for tool in curl openssl certtool base64; do
  command -v "$tool" >/dev/null || it_fail "no $tool"
done

TMO=3       # https_timeout, seconds
PER_IP=4    # https_max_connections_per_ip
HDR=2048    # https_max_header_bytes
MAXB=1024   # max_body
LIVE=2      # seconds a normal request may take while others misbehave

# ---- helpers ----------------------------------------------------------------

# hreq PATH [curl args...]: one HTTPS request to $URL/PATH, body in H_BODY.
# Sets H_CODE ("000": no HTTP answer), H_TIME (s), H_CT, H_RC (curl's exit).
H_N=0
hreq() {
  local path=$1 w
  shift
  H_N=$((H_N + 1))
  H_BODY=$T/http-$H_N.body
  H_ERR=$T/http-$H_N.err
  w=$(curl -sS --max-time "${H_MAXTIME:-10}" --cacert "$PKI/ca.crt" -o "$H_BODY" \
    -w '%{http_code} %{time_total} %{content_type}' "$@" "$URL/$path" 2>"$H_ERR" </dev/null)
  H_RC=$?
  read -r H_CODE H_TIME H_CT <<<"$w"
  : "${H_CODE:=000}"
}

h_expect() {
  [ "$H_CODE" = "$1" ] ||
    it_fail "$2: expected HTTP $1, got $H_CODE (curl exit $H_RC: $(head -c 300 "$H_ERR"))" \
      "$(head -c 300 "$H_BODY" 2>/dev/null)"
}

# h_within SECONDS WHAT: the last request took at most SECONDS.
h_within() {
  awk -v t="$H_TIME" -v m="$1" 'BEGIN { exit !(t + 0 <= m + 0) }' ||
    it_fail "$2: took $H_TIME s (more than $1 s)"
}

# h_served WHAT: cacerts works now (the server is fine after WHAT).
h_served() {
  hreq cacerts
  h_expect 200 "cacerts after $1"
  h_within "$LIVE" "cacerts after $1"
}

# hold_start NAME N MODE: N idle connections in the background (see
# est_https_limits_client.py), open when this returns.
hold_start() {
  HOLD_OUT=$T/hold-$1.out
  rm -f "$T/hold-$1.ready"
  "$PY" "$CLIENT" hold "$HP" "$2" "$3" "$T/hold-$1.ready" $((TMO + 8)) "$PKI/ca.crt" \
    >"$HOLD_OUT" 2>"$T/hold-$1.err" &
  HOLD_PID=$!
  local i
  for ((i = 0; i < 100; i++)); do
    [ -f "$T/hold-$1.ready" ] && return 0
    kill -0 "$HOLD_PID" 2>/dev/null || break
    sleep 0.1
  done
  it_fail "hold $1: connections not open: $(cat "$T/hold-$1.err")"
}

# hold_check NAME N: wait for the holder; all N connections were closed by
# the server within TMO-0.5 .. TMO+2 s of their last byte, with no 2xx.
hold_check() {
  wait "$HOLD_PID" || it_fail "hold $1: the client failed: $(cat "$T/hold-$1.err")"
  HOLD_PID=
  [ "$(grep -c '^closed ' "$HOLD_OUT")" = "$2" ] ||
    it_fail "hold $1: not all $2 connections were closed by the server within $((TMO + 8)) s:" \
      "$(tr '\n' ' ' <"$HOLD_OUT")"
  local t first
  while read -r _ t first; do
    awk -v t="$t" -v lo="$TMO" 'BEGIN { exit !(t >= lo - 0.5 && t <= lo + 2) }' ||
      it_fail "hold $1: a connection was closed after $t s, want $TMO..$((TMO + 2)) s:" \
        "$(tr '\n' ' ' <"$HOLD_OUT")"
    case "$first" in HTTP/1.?_2*) it_fail "hold $1: half a request got $first" ;; esac
  done <"$HOLD_OUT"
}

p7_check() { # p7_check BODY WHAT: a base64 PKCS#7 certs-only; PEM in $T/p7.pem
  base64 -d "$1" >"$T/p7.der" 2>/dev/null || it_fail "$2: body is not base64: $(head -c 200 "$1")"
  est_p7_to_pem "$T/p7.der" "$T/p7.pem"
}

# ---- server A: small limits -------------------------------------------------
HP=$(it_free_tcp_port)
est_start "https_listen 127.0.0.1 $HP" "https_cert $T/pki/server.crt" \
  "https_key $T/pki/server.key" "https_timeout $TMO" \
  "https_max_connections_per_ip $PER_IP" "max_body $MAXB" "https_max_header_bytes $HDR"
URL="https://127.0.0.1:$HP/.well-known/est"
idev=(--cert "$PKI/idevid.crt" --key "$PKI/idevid.key")
p10=(-H 'Content-Type: application/pkcs10')

# The basics: cacerts without a client certificate is the CA certificate.
hreq cacerts
h_expect 200 "cacerts without a client certificate"
case "$H_CT" in application/pkcs7-mime*) ;; *) it_fail "cacerts Content-Type '$H_CT'" ;; esac
p7_check "$H_BODY" cacerts
cmp -s <(certtool -i --infile "$T/p7.pem" --outder 2>/dev/null) \
  <(certtool -i --infile "$PKI/ca.crt" --outder 2>/dev/null) || it_fail "cacerts is not ca.crt"
# simpleenroll with the IDevID: a certificate for the CSR's key, from our CA.
est_csr "$T/dev1.key" "$T/dev1.csr" dev-0001
base64 -w0 "$T/dev1.csr" >"$T/dev1.b64"
hreq simpleenroll "${idev[@]}" "${p10[@]}" --data-binary "@$T/dev1.b64"
h_expect 200 "simpleenroll with the IDevID"
p7_check "$H_BODY" simpleenroll
est_verify "$T/p7.pem" "$PKI/ca.crt"
[ "$(est_cert_pubkey "$T/p7.pem")" = "$(est_key_pubkey "$T/dev1.key")" ] ||
  it_fail "simpleenroll: the certificate is not for the CSR's key"

# TLS 1.2 and 1.3 are served, and are what was used.
hreq cacerts -v --tlsv1.2 --tls-max 1.2
h_expect 200 "cacerts over TLS 1.2"
grep -q 'SSL connection using TLSv1.2' "$H_ERR" || it_fail "not TLS 1.2: $(grep SSL "$H_ERR")"
hreq cacerts -v --tlsv1.3
h_expect 200 "cacerts over TLS 1.3"
grep -q 'SSL connection using TLSv1.3' "$H_ERR" || it_fail "not TLS 1.3: $(grep SSL "$H_ERR")"
# TLS 1.1 is not: the server answers a 1.1 ClientHello with no ServerHello.
# The same s_client line with -tls1_2 connects, so it is the server refusing.
for v in tls1_2 tls1_1; do
  timeout 10 openssl s_client -"$v" -cipher 'DEFAULT:@SECLEVEL=0' -msg -CAfile "$PKI/ca.crt" \
    -connect "127.0.0.1:$HP" </dev/null >"$T/s_client-$v.out" 2>&1
  rc=$?
  grep -q 'ClientHello' "$T/s_client-$v.out" || it_fail "s_client -$v sent no ClientHello"
  if [ "$v" = tls1_2 ]; then
    [ $rc = 0 ] && grep -q 'ServerHello' "$T/s_client-$v.out" ||
      it_fail "s_client -tls1_2 did not connect (exit $rc): $(tail -5 "$T/s_client-$v.out")"
  else
    [ $rc != 0 ] && ! grep -q 'ServerHello' "$T/s_client-$v.out" ||
      it_fail "TLS 1.1 was accepted (s_client exit $rc): $(grep -E 'Protocol|Cipher' "$T/s_client-$v.out")"
  fi
done
hreq cacerts -v --tlsv1.1 --tls-max 1.1 --ciphers 'DEFAULT@SECLEVEL=0'
grep -q 'TLSv1.1 (OUT), TLS handshake, Client hello' "$H_ERR" || it_fail "curl sent no TLS 1.1 hello"
[ "$H_CODE" = 000 ] && ! grep -q 'Server hello' "$H_ERR" ||
  it_fail "curl --tls-max 1.1 connected: HTTP $H_CODE, $(grep -E 'SSL|TLS' "$H_ERR")"
h_served "a TLS 1.1 attempt"

# ---- body limits ------------------------------------------------------------
# Content-Length over max_body: 413 with a reason, before the body is read.
head -c 3000 /dev/urandom | base64 -w0 >"$T/big.b64"
hreq simpleenroll "${idev[@]}" "${p10[@]}" --data-binary "@$T/big.b64"
h_expect 413 "a $(wc -c <"$T/big.b64")-byte body with Content-Length"
case "$H_CT" in text/plain*) ;; *) it_fail "413 Content-Type '$H_CT'" ;; esac
grep -q "over $MAXB bytes" "$H_BODY" || it_fail "413 reason: '$(cat "$H_BODY")'"
it_expect_log coapd "https request op=simpleenroll status=413 .*reason=\"request body over $MAXB bytes\""
h_served "a 413"
# Chunked (no Content-Length) is read as it comes: under max_body it is
# served, growing over it the connection is closed (no answer at all).
est_csr "$T/dev2.key" "$T/dev2.csr" dev-0002
base64 -w0 "$T/dev2.csr" >"$T/dev2.b64"
hreq simpleenroll "${idev[@]}" "${p10[@]}" -H 'Transfer-Encoding: chunked' --data-binary "@$T/dev2.b64"
h_expect 200 "a chunked CSR under max_body"
p7_check "$H_BODY" "chunked simpleenroll"
hreq simpleenroll "${idev[@]}" "${p10[@]}" -H 'Transfer-Encoding: chunked' --data-binary "@$T/big.b64"
[ "$H_CODE" = 000 ] && [ "$H_RC" != 28 ] ||
  it_fail "a chunked body over max_body: want the connection closed, got HTTP $H_CODE, curl exit $H_RC"
it_expect_log coapd 'https request op=simpleenroll status=413 .*without Content-Length; closed'
h_served "a chunked body over max_body"

# ---- header limit -------------------------------------------------------------
pad() { head -c "$1" /dev/zero | tr '\0' a; }
hreq cacerts -H "X-Pad: $(pad $((HDR / 2)))"
h_expect 200 "a $((HDR / 2))-byte header"
h_within "$LIVE" "a $((HDR / 2))-byte header"
hreq cacerts -H "X-Pad: $(pad $((3 * HDR + 8192)))"
case "$H_CODE" in
  4??) ;;
  *) it_fail "a $((3 * HDR + 8192))-byte header: want a 4xx, got $H_CODE (curl exit $H_RC)" ;;
esac
h_served "an oversized header"

# ---- https_timeout, and the loop stays free ----------------------------------
# Connections that never say a word (not even a ClientHello).
hold_start tcp $((PER_IP - 1)) tcp
hreq cacerts
h_expect 200 "cacerts while $((PER_IP - 1)) silent TCP connections are open"
h_within "$LIVE" "cacerts while silent TCP connections are open"
hold_check tcp $((PER_IP - 1))
# Slowloris: TLS done, half the headers, then silence.
hold_start slow $((PER_IP - 1)) slowloris
grep -q refused "$HOLD_OUT" && it_fail "slowloris: a handshake failed"
hreq cacerts
h_expect 200 "cacerts while $((PER_IP - 1)) slowloris connections are open"
h_within "$LIVE" "cacerts while slowloris connections are open"
hold_check slow $((PER_IP - 1))
h_served "slowloris connections"

# ---- https_max_connections_per_ip ----------------------------------------------
hold_start perip "$PER_IP" tcp
sleep 0.5 # let the loop accept all of them
hreq cacerts
[ "$H_CODE" = 000 ] ||
  it_fail "with $PER_IP idle connections from 127.0.0.1 one more got HTTP $H_CODE (want refused)"
[ "$H_RC" != 28 ] || it_fail "over https_max_connections_per_ip a client was held, not refused"
h_within "$LIVE" "the refusal over https_max_connections_per_ip"
hold_check perip "$PER_IP"
h_served "the per-address limit (idle connections timed out)"

# ---- a flood ---------------------------------------------------------------------
mkdir -p "$T/flood"
flood_pids=()
for i in $(seq 50); do
  (
    curl -sS --max-time 10 --cacert "$PKI/ca.crt" -o /dev/null -w '%{http_code}' \
      "$URL/cacerts" >"$T/flood/$i.code" 2>"$T/flood/$i.err" </dev/null
    echo $? >"$T/flood/$i.rc"
  ) &
  flood_pids+=($!)
done
wait "${flood_pids[@]}"
ok=0
for i in $(seq 50); do
  rc=$(cat "$T/flood/$i.rc") code=$(cat "$T/flood/$i.code")
  case "$rc:$code" in
    0:200) ok=$((ok + 1)) ;;
    7:000 | 35:000 | 52:000 | 56:000) ;; # refused or closed: clean
    *) it_fail "flood request $i: HTTP $code, curl exit $rc: $(cat "$T/flood/$i.err")" ;;
  esac
done
[ "$ok" -ge 1 ] || it_fail "flood: no request got 200"
kill -0 "${IT_PIDS[coapd]}" 2>/dev/null || it_fail "coapd died in the flood"
h_served "a flood of 50 parallel requests ($ok got 200)"
est_req gnutls idevid get /est/crts
it_expect_code 2.05
est_stop

# ---- PoP linking over TLS (RFC 7030 §3.5) ----------------------------------------
HP=$(it_free_tcp_port)
est_start "https_listen 127.0.0.1 $HP" "https_cert $T/pki/server.crt" \
  "https_key $T/pki/server.key" "pop_linking require"
URL="https://127.0.0.1:$HP/.well-known/est"
est_csr "$T/dev3.key" "$T/dev3.csr" dev-0003
base64 -w0 "$T/dev3.csr" >"$T/dev3.b64"
for v in 1.2 1.3; do
  hreq simpleenroll "${idev[@]}" "${p10[@]}" --tlsv$v --tls-max $v --data-binary "@$T/dev3.b64"
  h_expect 403 "TLS $v, a CSR without challengePassword under pop_linking require"
  grep -Eqi 'pop|identity' "$H_BODY" || it_fail "403 reason: '$(cat "$H_BODY")'"
done
it_expect_log coapd 'https request op=simpleenroll status=403 .*reason="identity/POP linking required"'
certtool --generate-privkey --key-type=ecdsa --curve=secp256r1 --outfile "$T/pop.key" 2>/dev/null ||
  it_fail "certtool could not make a key"
for mode in same other; do
  timeout 60 "$PY" "$CLIENT" pop "$HP" "$PKI/ca.crt" "$PKI/idevid.crt" "$PKI/idevid.key" \
    "$T/pop.key" "$mode" "$T" >"$T/pop-$mode.out" 2>"$T/pop-$mode.err" ||
    it_fail "pop $mode: $(cat "$T/pop-$mode.err" "$T/pop-$mode.out")"
  status=$(head -n 1 "$T/pop-$mode.out")
  tail -n +2 "$T/pop-$mode.out" >"$T/pop-$mode.body"
  if [ "$mode" = same ]; then
    [ "$status" = "status 200" ] ||
      it_fail "challengePassword = this connection's tls-unique: $status $(cat "$T/pop-$mode.body")"
    p7_check "$T/pop-$mode.body" "PoP simpleenroll"
    est_verify "$T/p7.pem" "$PKI/ca.crt"
    [ "$(est_cert_pubkey "$T/p7.pem")" = "$(est_key_pubkey "$T/pop.key")" ] ||
      it_fail "PoP: the certificate is not for the CSR's key"
    certtool -i --infile "$T/p7.pem" 2>/dev/null | grep -q 'Subject: CN=pop-dev' ||
      it_fail "PoP: the certificate is not for CN=pop-dev"
  else
    [ "$status" = "status 403" ] ||
      it_fail "challengePassword = another connection's tls-unique: $status $(cat "$T/pop-$mode.body")"
    grep -Eqi 'pop|identity' "$T/pop-$mode.body" || it_fail "403 reason: '$(cat "$T/pop-$mode.body")'"
  fi
done
est_stop

# ---- https_max_connections (the whole listener) ------------------------------------
# Last: while it is full a new client is not served; once the idle
# connections time out new clients must be served again.
HP=$(it_free_tcp_port)
est_start "https_listen 127.0.0.1 $HP" "https_cert $T/pki/server.crt" \
  "https_key $T/pki/server.key" "https_timeout $TMO" "https_max_connections 2" \
  "https_max_connections_per_ip 100"
URL="https://127.0.0.1:$HP/.well-known/est"
h_served "start"
hold_start full 2 tcp
sleep 0.5
H_MAXTIME=1.5 hreq cacerts
[ "$H_CODE" != 200 ] || it_fail "a third connection was served with https_max_connections 2 full"
hold_check full 2
hreq cacerts
h_expect 200 "cacerts after the full listener's idle connections timed out"
h_within "$LIVE" "cacerts after the full listener's idle connections timed out"
est_stop
it_pass
