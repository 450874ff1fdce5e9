#!/usr/bin/env bash
# metrics_listen (docs/metrics.md): GET /metrics in the Prometheus text
# format 0.0.4, parsed strictly by prometheus_client; the counters of one
# enrollment through the approval queue; /healthz 200, then 503 when the
# database file is moved away, 200 again when it is back; 404, 405, a
# request body refused; an HTTP client that sends nothing neither stops
# the CoAP side nor keeps its connection past the timeout; -t binds
# nothing; bad metrics_listen lines are refused with FILE:LINE.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/est_lib.sh"
it_init est_metrics
[ -x "${ESTCTL:-}" ] || it_fail "ESTCTL is not set"
PY=/usr/bin/python3
$PY -c 'import prometheus_client' 2>/dev/null || it_fail "python3-prometheus-client is missing"
DB=$T/est.db
ctl() { "$ESTCTL" --db "$DB" --actor tester "$@"; }

# A free TCP port on 127.0.0.1 for the HTTP side.
MPORT=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])') ||
  it_fail "no free TCP port"
URL=http://127.0.0.1:$MPORT

# scrape: GET /metrics into $T/metrics.txt; the Content-Type must be 0.0.4's.
scrape() {
  curl -sS -m 5 -o "$T/metrics.txt" -D "$T/metrics.hdr" -w '%{http_code}' "$URL/metrics" >"$T/metrics.code" ||
    it_fail "curl /metrics failed"
  [ "$(cat "$T/metrics.code")" = 200 ] || it_fail "/metrics answered $(cat "$T/metrics.code")"
  grep -qi '^content-type: text/plain; version=0.0.4; charset=utf-8' "$T/metrics.hdr" ||
    it_fail "/metrics Content-Type: $(grep -i content-type "$T/metrics.hdr")"
}

# check EXPR...: each Python expression must hold over v(NAME, **labels)
# (the sample's value, None if absent) after a strict parse of the scrape.
check() {
  $PY - "$T/metrics.txt" "$@" <<'EOF' || it_fail "metrics check failed (scrape in $T/metrics.txt)"
import sys
from prometheus_client.parser import text_string_to_metric_families
text = open(sys.argv[1], encoding="utf-8").read()
samples = {}
families = {}
try:
    for fam in text_string_to_metric_families(text):
        families[fam.name] = fam
        for s in fam.samples:
            key = (s.name, frozenset(s.labels.items()))
            if key in samples:
                raise ValueError("duplicate sample %r" % (key,))
            samples[key] = s.value
except Exception as e:
    print("strict parse failed:", e, file=sys.stderr)
    sys.exit(1)
# Every family has its HELP and TYPE lines.
for name, fam in families.items():
    if not fam.documentation or fam.type == "unknown":
        print("no HELP/TYPE for", name, file=sys.stderr)
        sys.exit(1)
def v(name, **labels):
    return samples.get((name, frozenset(labels.items())))
for expr in sys.argv[2:]:
    if not eval(expr):
        print("does not hold:", expr, file=sys.stderr)
        for (n, l), val in sorted(samples.items(), key=lambda x: x[0][0]):
            if n.split("_")[0] == expr.split('"')[1].split("_")[0]:
                print("  ", n, dict(l), val, file=sys.stderr)
        sys.exit(1)
EOF
}

# http METHOD PATH [curl args]: sets CODE (and $T/http.body, $T/http.hdr).
http() {
  local m=$1 p=$2
  shift 2
  CODE=$(curl -sS -m 5 -X "$m" -o "$T/http.body" -D "$T/http.hdr" -w '%{http_code}' "$@" "$URL$p") ||
    it_fail "curl $m $p failed"
}

# ---- config checks first: no socket is needed for them ------------------
PKI=$T/pki
it_pki "$PKI"
base() {
  echo "listen 127.0.0.1 $(it_free_port)"
  echo "dtls_cert $PKI/server.crt"
  echo "dtls_key $PKI/server.key"
  echo "dtls_ca $PKI/trust.pem"
}
{ base; echo "metrics_listen 127.0.0.1"; } >"$T/bad1.conf"
it_coapd_run bad1 -t -c "$T/bad1.conf"
[ "$IT_RC" = 1 ] && grep -q "bad1.conf:5: metrics_listen needs ADDR PORT" "$IT_LOG" ||
  it_fail "metrics_listen without a port: rc $IT_RC, $(tail -2 "$IT_LOG")"
{ base; echo "metrics_listen localhost 9100"; } >"$T/bad2.conf"
it_coapd_run bad2 -t -c "$T/bad2.conf"
[ "$IT_RC" = 1 ] && grep -q "bad2.conf:5: bad address 'localhost'" "$IT_LOG" ||
  it_fail "metrics_listen with a name: rc $IT_RC, $(tail -2 "$IT_LOG")"
{ base; for p in 1 2 3 4 5; do echo "metrics_listen 127.0.0.1 910$p"; done; } >"$T/bad3.conf"
it_coapd_run bad3 -t -c "$T/bad3.conf"
[ "$IT_RC" = 1 ] && grep -q "bad3.conf:9: more than 4 metrics_listen lines" "$IT_LOG" ||
  it_fail "five metrics_listen lines: rc $IT_RC, $(tail -2 "$IT_LOG")"

# ---- a running coapd ------------------------------------------------------
EST_HOST_EXTRA="metrics_listen 127.0.0.1 $MPORT" est_start idevid_policy\ manual retry_after\ 7
it_expect_log coapd "metrics: http://127.0.0.1:$MPORT/metrics"

# -t with the same config binds nothing, so it passes next to the running one.
it_coapd_run check -t -c "$CONF"
[ "$IT_RC" = 0 ] || it_fail "coapd -t next to a running coapd: rc $IT_RC, $(tail -3 "$IT_LOG")"
# Without -t a second coapd cannot have the port: it stops with FILE:LINE.
{ base; echo "metrics_listen 127.0.0.1 $MPORT"; } >"$T/taken.conf"
it_coapd_run taken -c "$T/taken.conf"
[ "$IT_RC" = 1 ] && grep -q "taken.conf:5: metrics_listen 127.0.0.1 $MPORT: cannot listen (Address already in use)" "$IT_LOG" ||
  it_fail "a metrics port in use: rc $IT_RC, $(tail -2 "$IT_LOG")"

scrape
check 'v("coapd_up") == 1' 'v("process_start_time_seconds") > 1.7e9' \
  'v("est_certificates_issued_total", function="sen") is None' 'v("est_pending_requests") == 0' \
  'v("est_store_ok") == 1' 'v("coapd_dtls_handshakes_total", result="failed") == 0'

# One enrollment through the approval queue: 5.03 (pending), approve, 2.04.
est_req gnutls idevid get /est/crts
it_expect_code 2.05
est_csr "$T/d1.key" "$T/d1.csr" dev-1
est_req gnutls idevid post /est/sen -t 286 -f "$T/d1.csr"
it_expect_code 5.03
scrape
check 'v("est_pending_requests") == 1' 'v("est_requests_total", function="sen", code="5.03") == 1' \
  'v("est_certificates_issued_total", function="sen") is None' \
  'v("est_enroll_duration_seconds_count", function="sen") == 1'
id=$(ctl list --state pending --json | $PY -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
ctl approve "$id" >/dev/null || it_fail "estctl approve"
est_req gnutls idevid post /est/sen -t 286 -f "$T/d1.csr"
it_expect_code 2.04

# The CA's notAfter as Unix seconds, from openssl.
na=$(date -u -d "$(openssl x509 -noout -enddate -in "$PKI/ca.crt" | cut -d= -f2)" +%s) ||
  it_fail "openssl could not read the CA's notAfter"
scrape
check 'v("est_certificates_issued_total", function="sen") == 1' \
  'v("est_requests_total", function="sen", code="2.04") == 1' \
  'v("est_requests_total", function="sen", code="5.03") == 1' \
  'v("est_requests_total", function="crts", code="2.05") >= 1' \
  'v("est_enroll_duration_seconds_count", function="sen") == 2' \
  'v("est_enroll_duration_seconds_bucket", function="sen", le="+Inf") == 2' \
  'v("est_enroll_duration_seconds_bucket", function="sen", le="10") == 2' \
  '0 < v("est_enroll_duration_seconds_sum", function="sen") < 10' \
  'v("est_pending_requests") == 0' 'v("est_store_errors_total") == 0' \
  'v("est_queue_full_total") == 0' \
  'v("coapd_dtls_handshakes_total", result="ok") >= 3' \
  'v("coapd_dtls_handshakes_total", result="failed") == 0' 'v("coapd_dtls_sessions") >= 0' \
  "v(\"est_ca_not_after_seconds\") == $na"
cp "$T/metrics.txt" "$T/metrics-after-enroll.txt"
# A client whose certificate chains to no dtls_ca anchor: a failed handshake.
est_req gnutls rogue get /est/crts
it_expect_no_2xx
scrape
check 'v("coapd_dtls_handshakes_total", result="failed") == 1'

# ---- /healthz, and the HTTP refusals ----------------------------------------
http GET /healthz
[ "$CODE" = 200 ] && [ "$(cat "$T/http.body")" = ok ] || it_fail "/healthz: $CODE $(cat "$T/http.body")"
http GET /nope
[ "$CODE" = 404 ] || it_fail "GET /nope: $CODE"
http POST /metrics
[ "$CODE" = 405 ] || it_fail "POST /metrics: $CODE"
grep -qi '^allow: GET, HEAD' "$T/http.hdr" || it_fail "405 without Allow: $(cat "$T/http.hdr")"
http DELETE /healthz
[ "$CODE" = 405 ] || it_fail "DELETE /healthz: $CODE"
http GET /metrics --data-binary 'x=1'
[ "$CODE" = 413 ] || it_fail "GET /metrics with a body: $CODE"
http HEAD /healthz -I
[ "$CODE" = 200 ] || it_fail "HEAD /healthz: $CODE"

# ---- the store fails: the database file is moved away, then back ------------
mv "$DB" "$DB.away"
http GET /healthz
[ "$CODE" = 503 ] || it_fail "/healthz with the database gone: $CODE $(cat "$T/http.body")"
grep -q "^est-coaps: store: database .*est.db: No such file or directory$" "$T/http.body" ||
  it_fail "503 reason: $(cat "$T/http.body")"
[ "$(wc -l <"$T/http.body")" = 1 ] || it_fail "503 reason is not one line"
scrape
check 'v("est_store_ok") == 0'
# A new file in its place (what estctl would create) is not the one open.
: >"$DB"
http GET /healthz
[ "$CODE" = 503 ] && grep -q "replaced" "$T/http.body" || it_fail "/healthz with another file: $CODE $(cat "$T/http.body")"
mv "$DB.away" "$DB"
http GET /healthz
[ "$CODE" = 200 ] || it_fail "/healthz with the database back: $CODE $(cat "$T/http.body")"

# ---- a silent HTTP client does not stop the CoAP side -------------------------
# It connects and sends nothing; meanwhile CoAP and another scrape are
# answered, and the server closes the silent connection after its timeout
# (10 s, host/metrics_http.c), which only the loop's timer can do.
$PY - "$MPORT" >"$T/silent.out" 2>&1 <<'EOF' &
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.settimeout(30)
t = time.monotonic()
try:
    data = s.recv(1)
except socket.timeout:
    print("still open after 30 s"); sys.exit(1)
print("closed after %.1f s" % (time.monotonic() - t))
sys.exit(0 if data == b"" else 2)
EOF
silent=$!
sleep 0.5
kill -0 "$silent" 2>/dev/null || it_fail "the silent client ended early: $(cat "$T/silent.out")"
est_req gnutls idevid get /est/crts
it_expect_code 2.05
scrape
check 'v("est_requests_total", function="crts", code="2.05") >= 2'
wait "$silent" || it_fail "the silent connection was not closed by the server: $(cat "$T/silent.out")"
grep -Eq "closed after ([89]|1[0-4])\." "$T/silent.out" || it_fail "silent connection: $(cat "$T/silent.out")"

est_stop
echo "---- /metrics after one enrollment"
grep -E '^(coapd_|est_|process_)' "$T/metrics-after-enroll.txt" | grep -v '_bucket' | head -40
it_pass
