#!/usr/bin/env bash
# Admission control under a DTLS ClientHello flood (docs/admission.md).
# For 20 s flood_hello.py sends plain ClientHellos from many ports, starts
# handshakes that answer every HelloVerifyRequest and then stall, and
# senders that retransmit their ClientHello but never answer, from
# 127.0.0.2 and from 127.0.0.1, the legitimate client's own address.
# Meanwhile three coap-client-gnutls loops each GET /whoami over a new DTLS
# session, one after the other, with their usual 10 s wait (-B 10). Pass:
# at least 95 % answered, and coapd's peak RSS (VmHWM) at most RSS_BOUND_KB
# over its RSS when ready. Then the same flood, shorter, against a coapd
# with `dtls_admission no`: fewer than half must be answered there, or the
# flood is too weak to show anything and the test fails.
. "$(dirname "$0")/lib.sh"
it_init host_flood

FLOOD=$IT_LIB_DIR/flood_hello.py
PLAIN_RATE=${FLOOD_PLAIN_RATE:-4000} # per source address and second
STALL_RATE=${FLOOD_STALL_RATE:-40}
REPLAY_RATE=${FLOOD_REPLAY_RATE:-10}
# The documented bound (docs/admission.md): 24 MiB over the ready RSS;
# under ASan 4 times that, its quarantine of freed memory cut from 256 MiB
# to 16 MiB so that the peak still says something about coapd.
RSS_BOUND_KB=$((24 * 1024))
if ldd "$COAPD" 2>/dev/null | grep -q libasan; then
  RSS_BOUND_KB=$((RSS_BOUND_KB * 4))
  export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=16"
fi

PKI=$T/pki
it_pki "$PKI"

# conf NAME PORT [EXTRA LINE...]
conf() {
  local name=$1 port=$2
  shift 2
  printf '%s\n' "listen 127.0.0.1 $port" "dtls_cert $PKI/server.crt" \
    "dtls_key $PKI/server.key" "dtls_ca $PKI/trust.pem" "log_level notice" \
    "plugin $TESTPLUG" "$@" >"$T/$name.conf"
}

kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }

# One legitimate client: GETs until $1 (epoch seconds), one DTLS session
# each; writes "answered total" to $2.
legit() {
  local until=$1 out=$2 n=0 ok=0 f
  while [ "$(date +%s)" -lt "$until" ] && [ $n -lt 100 ]; do
    n=$((n + 1))
    f=$out.$n
    timeout -k 2 15 coap-client-gnutls -B 10 -c "$PKI/client.crt" -j "$PKI/client.key" \
      -C "$PKI/ca.crt" -o "$f" "coaps://127.0.0.1:$PORT/whoami" >/dev/null 2>&1 </dev/null
    grep -q '^plugin=testplug$' "$f" 2>/dev/null && ok=$((ok + 1))
  done
  echo "$ok $n" >"$out"
}

# run NAME SECONDS: flood NAME's coapd for SECONDS while three clients GET;
# sets ANSWERED TOTAL PCT HWM_KB BASE_KB FLOODFIG.
run() {
  local name=$1 secs=$2 pids=() i a n
  it_coapd_start "$T/$name.conf" "$name"
  BASE_KB=$(kb "$IT_PID" VmRSS)
  timeout -k 2 $((secs + 10)) python3 "$FLOOD" --port "$PORT" --src 127.0.0.1,127.0.0.2 \
    --duration "$secs" --plain-rate "$PLAIN_RATE" --stall-rate "$STALL_RATE" \
    --replay-rate "$REPLAY_RATE" \
    >"$T/$name.flood" 2>"$T/$name.flood.err" &
  local flood=$!
  sleep 1 # let the flood fill the handshake slots first
  local until=$(($(date +%s) + secs - 2))
  for i in 1 2 3; do
    legit "$until" "$T/$name.legit$i" &
    pids+=($!)
  done
  wait "${pids[@]}"
  wait "$flood" || it_fail "flood_hello.py failed: $(cat "$T/$name.flood.err")"
  HWM_KB=$(kb "$IT_PID" VmHWM)
  FLOODFIG=$(cat "$T/$name.flood")
  it_coapd_stop "$name"
  ANSWERED=0
  TOTAL=0
  for i in 1 2 3; do
    read -r a n <"$T/$name.legit$i"
    ANSWERED=$((ANSWERED + a))
    TOTAL=$((TOTAL + n))
  done
  [ "$TOTAL" -gt 0 ] || it_fail "$name: no request was made"
  PCT=$((100 * ANSWERED / TOTAL))
}

fig() { echo "$FLOODFIG" | python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }

PORT=$(it_free_port)
conf on "$PORT"
run on 20
totals=$(grep -E "admission totals:" "$T/on.log" | tail -n 1)
evicted=$(echo "$totals" | sed -nE 's/.* ([0-9]+) half-open handshakes evicted.*/\1/p')
timed_out=$(echo "$totals" | sed -nE 's/.* ([0-9]+) timed out.*/\1/p')
parked=$(echo "$totals" | sed -nE 's/.* ([0-9]+) silent ones parked.*/\1/p')
echo "admission on: $ANSWERED of $TOTAL requests answered ($PCT %)"
echo "admission on: flood $(fig plain_rate) plain ClientHellos/s from $(fig plain_ports) ports," \
  "$(fig stall_rate) stalling handshakes/s ($(fig stall_silent) reached the server's flight)," \
  "$(fig replay_rate) retransmitting senders/s"
echo "admission on: coapd RSS $BASE_KB kB when ready, peak (VmHWM) $HWM_KB kB," \
  "bound +$RSS_BOUND_KB kB"
echo "admission on: $evicted half-open handshakes evicted, $timed_out timed out, $parked parked"
echo "admission on: $totals"
[ $((100 * ANSWERED)) -ge $((95 * TOTAL)) ] ||
  it_fail "with admission control only $ANSWERED of $TOTAL requests were answered"
[ "$(fig plain_rate)" -ge $((PLAIN_RATE * 2 * 8 / 10)) ] ||
  it_fail "the flood reached only $(fig plain_rate) ClientHellos/s"
[ "$(fig stall_silent)" -gt 0 ] || it_fail "no stalling handshake reached the server's flight"
[ $((HWM_KB - BASE_KB)) -le "$RSS_BOUND_KB" ] ||
  it_fail "coapd's peak RSS grew by $((HWM_KB - BASE_KB)) kB (bound $RSS_BOUND_KB kB)"
[ -n "$totals" ] || it_fail "no admission totals line in on.log"
[ "${evicted:-0}" -gt 0 ] || it_fail "no half-open handshake was evicted"
[ "${parked:-0}" -gt 0 ] || it_fail "no silent HELLO session was parked"

# The control: the same flood without admission control locks clients out.
PORT=$(it_free_port)
conf off "$PORT" "dtls_admission no"
run off 10
echo "admission off: $ANSWERED of $TOTAL requests answered ($PCT %)," \
  "peak RSS $HWM_KB kB (ready $BASE_KB kB), flood $(fig plain_rate) plain/s," \
  "$(fig stall_rate) stalling/s"
it_expect_log off "dtls_admission no"
[ $((100 * ANSWERED)) -lt $((50 * TOTAL)) ] ||
  it_fail "without admission control $ANSWERED of $TOTAL were answered: the flood shows nothing"

it_pass
