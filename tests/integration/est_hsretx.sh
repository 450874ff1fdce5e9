#!/usr/bin/env bash
# coapd resends a lost handshake flight on its own timer (RFC 6347 §4.2.4).
# The relay drops the first datagram of coapd's ServerHello flight and then
# every client datagram for 2.5 s, so nothing but coapd's retransmission
# timer can bring that flight again; the client still gets its answer.
# (libcoap 4.3.1 with GnuTLS waited forever when descriptor 0 was readable:
# docs/libcoap-4.3.1.md §7 #18, host/dtls.c:coapd_dtls_quiet_fd0.)
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/est_lib.sh"
it_init est_hsretx
EST_PLUGIN=${EST_PLUGIN:?EST_PLUGIN is not set}
est_start </dev/null
/usr/bin/python3 "$(dirname "$0")/lossrelay.py" --target "$PORT" --port-file "$T/relay.port" \
  --drop-hs-down 2 --mute-up-ms 2500 --log "$T/relay.log" --stats "$T/relay.json" &
IT_PIDS[relay]=$!
for ((i = 0; i < 50; i++)); do
  [ -s "$T/relay.port" ] && break
  sleep 0.1
done
RELAY=$(cat "$T/relay.port") || it_fail "the relay did not start"
PORT_SAVED=$PORT
PORT=$RELAY
est_req gnutls idevid get /est/crts -B 20
PORT=$PORT_SAVED
it_expect_code 2.05
kill -TERM "${IT_PIDS[relay]}" 2>/dev/null
wait "${IT_PIDS[relay]}" 2>/dev/null
unset 'IT_PIDS[relay]'
cat "$T/relay.log"
t_drop=$(awk '/ down .* dropped-hs$/ { print $1; exit }' "$T/relay.log")
[ -n "$t_drop" ] || it_fail "the relay dropped no server handshake datagram"
# A server handshake datagram while the client was muted: coapd's timer.
# The rest of the first flight follows the lost datagram at once; a
# datagram half a second on or later is a retransmission.
retx=$(awk -v t="$t_drop" '$1 > t + 0.5 && $1 < t + 2.5 && / down / && /type=22/ && / sent/ { n++ }
  END { print n + 0 }' "$T/relay.log")
muted=$(grep -c ' muted$' "$T/relay.log" || true)
echo "server handshake datagrams resent while the client was muted: $retx (client datagrams muted: $muted)"
((retx > 0)) || it_fail "coapd did not resend its flight within 2.5 s of losing it"
est_stop
it_pass
