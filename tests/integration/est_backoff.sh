#!/usr/bin/env bash
# est-enroll retransmits a CON with the RFC 7252 §4.8 back-off and takes a
# repeated answer for the answer it already has (RFC 7252 §4.5, §5.3.2).
# The CoAP is inside DTLS, so lossrelay.py works on the clear record
# header (RFC 6347 §4.1) and logs every datagram; est-enroll -vvv logs
# libcoap's retransmissions and every PDU it receives.
#
# a) Blocks of 64 bytes. The first crts answer (Block2 0) is held back
#    5 s: est-enroll sends that GET again after ACK_TIMEOUT..ACK_TIMEOUT*
#    ACK_RANDOM_FACTOR = 2..3 s, takes the server's second answer and
#    fetches the other blocks. Then the first K (EST_BACKOFF_K, default 3)
#    copies of the first POST sen block (the first datagrams up of 100
#    bytes or more) are dropped: the copies reach the relay T, 2T, 4T
#    apart, T in [2 s, 3 s]. The held crts answer arrives in the middle of
#    that exchange, after newer answers, and must not be taken for one.
# b) Every server->client datagram is sent twice (GnuTLS's replay window,
#    RFC 6347 §4.1.2.6, is the first to see them): one answer per request.
# Each run enrolls, exactly one certificate and one request per subject.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/est_lib.sh"
it_init est_backoff
[ -x "${EST_ENROLL:-}" ] || it_fail "EST_ENROLL is not set"
K=${EST_BACKOFF_K:-3}
DB=$T/est.db
sql() { sqlite3 -cmd ".timeout 5000" "$DB" "$1"; }

est_start
# relay NAME ARGS...: a relay to coapd logging to $T/NAME.dgrams; sets RELAY.
relay() {
  local name=$1 i
  shift
  /usr/bin/python3 "$(dirname "$0")/lossrelay.py" --target "$PORT" --port-file "$T/$name.port" \
    --log "$T/$name.dgrams" --stats "$T/$name.json" "$@" &
  IT_PIDS[$name]=$!
  for ((i = 0; i < 50; i++)); do
    [ -s "$T/$name.port" ] && break
    sleep 0.1
  done
  RELAY=$(cat "$T/$name.port") || it_fail "relay $name did not start"
}
relay_stop() {
  kill -TERM "${IT_PIDS[$1]}" 2>/dev/null
  wait "${IT_PIDS[$1]}" 2>/dev/null
  unset "IT_PIDS[$1]"
}
# enroll NAME [ARGS]: est-enroll ARGS enroll CN=NAME through the relay;
# stderr in NAME.log.
enroll() {
  local name=$1
  shift
  timeout -k 5 50 "$EST_ENROLL" --server "coaps://127.0.0.1:$RELAY" --cert "$PKI/idevid.crt" \
    --key "$PKI/idevid.key" --trust "$PKI/ca.crt" --root /est --timeout 40 -vvv "$@" \
    enroll --subject "CN=$name" --key-file "$T/$name.key" --out "$T/$name.crt" 2>"$T/$name.log" ||
    it_fail "$name: est-enroll exit status $?: $(grep -a '^est-enroll:' "$T/$name.log" | tail -2)"
  grep -q "BEGIN CERTIFICATE" "$T/$name.crt" || it_fail "$name: no certificate written"
  local n
  n=$(sql "SELECT count(*) FROM certificates WHERE subject = 'CN=$name'")
  [ "$n" = 1 ] || it_fail "$name: $n certificates issued, expected 1"
  n=$(sql "SELECT count(*) FROM requests WHERE subject = 'CN=$name'")
  [ "$n" = 1 ] || it_fail "$name: $n requests recorded, expected 1"
}
# answers LOG CODE: how many responses with CODE est-enroll's libcoap received.
answers() { grep -acE "^libcoap: v:1 t:(ACK|CON|NON) c:$2 " "$1" || true; }

# a) Back-off.
relay a --hold-app-down 5000 --drop-app-up "$K" --drop-app-up-min-len 100
enroll bo-a --block-size 64
relay_stop a
# Application datagrams up: GET crts (Block2 0) twice first; the big ones
# are POST sen blocks, the first K+1 of them copies of Block1 0.
app_up() { awk -v min="$1" '$2 == "up" && $4 == "type=23" && substr($3, 5) + 0 >= min' "$T/a.dgrams"; }
mapfile -t up < <(app_up 0)
mapfile -t big < <(app_up 100)
((${#up[@]} >= 2 && ${#big[@]} >= K + 1)) ||
  it_fail "a: ${#up[@]} application datagrams up, ${#big[@]} of 100 bytes or more"
f() { awk -v n="$2" '{ print $n }' <<<"$1"; }
[ "$(f "${up[0]}" 3)" = "$(f "${up[1]}" 3)" ] || it_fail "a: not GET crts twice first: ${up[*]:0:2}"
for ((i = 1; i <= K; i++)); do
  [ "$(f "${big[$i]}" 3)" = "$(f "${big[0]}" 3)" ] || it_fail "a: big datagram $i up is not the first sen block again: ${big[$i]}"
done
# First timeouts: 2..3 s (generous: 1.8..3.6 s); each next gap doubles
# (1.6x..2.5x the one before).
check_first() {
  awk -v g="$1" 'BEGIN { exit !(g >= 1.8 && g <= 3.6) }' ||
    it_fail "a: first retransmission after $1 s, not in ACK_TIMEOUT..ACK_TIMEOUT*1.5 (2..3 s)"
}
crts_gap=$(awk -v a="$(f "${up[0]}" 1)" -v b="$(f "${up[1]}" 1)" 'BEGIN { printf "%.3f", b - a }')
check_first "$crts_gap"
gaps="" prev=""
for ((i = 1; i <= K; i++)); do
  g=$(awk -v a="$(f "${big[$((i - 1))]}" 1)" -v b="$(f "${big[$i]}" 1)" 'BEGIN { printf "%.3f", b - a }')
  gaps="$gaps $g"
  if [ -z "$prev" ]; then
    check_first "$g"
  else
    awk -v g="$g" -v p="$prev" 'BEGIN { exit !(g >= 1.6 * p && g <= 2.5 * p) }' ||
      it_fail "a: sen retransmission gaps$gaps s: $g s does not double $prev s"
  fi
  prev=$g
done
# The same CON each time: libcoap's retransmissions #1..#K of one MID.
mid_of() { grep -aoE "^libcoap: v:1 t:CON c:$1 i:[0-9a-f]+ " "$T/bo-a.log" | head -1 | sed -E 's/.* i:([0-9a-f]+) /\1/'; }
sen_mid=$(mid_of POST)
crts_mid=$(mid_of GET)
[ -n "$sen_mid" ] && [ -n "$crts_mid" ] || it_fail "a: no GET or POST in the est-enroll log"
# libcoap logs the MID as %x, the PDU dump as %04x.
n=$(grep -acE "mid=0x0*$(sed -E 's/^0+(.)/\1/' <<<"$sen_mid"): retransmission #" "$T/bo-a.log" || true)
[ "$n" = "$K" ] || it_fail "a: $n retransmissions of the sen CON (mid 0x$sen_mid) logged, expected $K"
# The held crts answer came while sen was waiting, after newer answers; it
# reached est-enroll (so twice in its log) and changed nothing.
held=$(awk '$2 == "down" && $NF == "delivered-held" { print $1; exit }' "$T/a.dgrams")
[ -n "$held" ] || it_fail "a: the relay delivered no held answer"
awk -v h="$held" -v a="$(f "${big[0]}" 1)" -v b="$(f "${big[$K]}" 1)" 'BEGIN { exit !(h > a && h < b) }' ||
  it_fail "a: the held crts answer came at $held s, not during the sen retransmissions"
n=$(grep -acE "^libcoap: v:1 t:ACK c:2\.05 i:$crts_mid " "$T/bo-a.log" || true)
[ "$n" = 2 ] || it_fail "a: est-enroll received the first crts answer $n times, expected 2"
echo "a) crts retransmitted after $crts_gap s; sen copies$gaps s apart;" \
  "the held crts answer came at $held s, during sen"

# b) Every datagram down twice.
relay b --dup-down 1.0
enroll bo-b
relay_stop b
d=$(python3 -c 'import json,sys; s=json.load(open(sys.argv[1]))["down"]; print(s["in"], s["duplicated"])' "$T/b.json")
read -r din ddup <<<"$d"
((din > 0 && ddup == din)) || it_fail "b: $ddup of $din datagrams down duplicated"
for c in 2.05 2.04; do
  n=$(answers "$T/bo-b.log" $c)
  [ "$n" = 1 ] || it_fail "b: est-enroll took $n $c answers, expected 1"
done
echo "b) $din datagrams down, each sent twice; one crts and one sen answer"
est_stop
it_pass
