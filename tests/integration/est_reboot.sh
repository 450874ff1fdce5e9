#!/usr/bin/env bash
# A device that reboots comes back from the same address and port without
# having sent close_notify (RFC 6347 §4.2.8, host/reboot.h): its new
# ClientHello makes coapd probe the old session, which cannot answer, and
# drop it; the device is served within one probe plus one ClientHello
# retransmission. A spoofed ClientHello from a live client's address
# cannot end that live session: the client answers the probe.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/est_lib.sh"
it_init est_reboot
get_crts() { # local-port repeats log
  timeout -k 5 60 coap-client-gnutls -p "$1" -G "$2" -B 20 -v 6 -c "$PKI/idevid.crt" \
    -j "$PKI/idevid.key" -C "$PKI/ca.crt" -m get "coaps://127.0.0.1:$PORT/est/crts" >"$3" 2>&1
}
answers() { grep -ac '^v:1 t:ACK c:2\.05 ' "$1" || true; }

est_start
# 1: reboot. The device holds a session (one GET a second), then dies.
LP=$(it_free_port)
get_crts "$LP" 10 "$T/first.log" &
pid=$!
for ((i = 0; i < 50; i++)); do
  (($(answers "$T/first.log") >= 2)) && break
  sleep 0.1
done
(($(answers "$T/first.log") >= 2)) || it_fail "the first client got no answers: $(tail -5 "$T/first.log")"
kill -KILL "$pid"
wait "$pid" 2>/dev/null
start=$(date +%s%N)
get_crts "$LP" 1 "$T/second.log"
elapsed=$((($(date +%s%N) - start) / 1000000))
[ "$(answers "$T/second.log")" = 1 ] || it_fail "the rebooted device was not served: $(tail -5 "$T/second.log")"
grep -q "did not answer after a new ClientHello" "$T/coapd.log" || it_fail "no drop logged"
# One probe (6 s) plus ClientHello retransmissions (1, 2, 4 s): within 20 s.
((elapsed < 20000)) || it_fail "the rebooted device waited $elapsed ms"
echo "rebooted device served after $elapsed ms"

# 2: a spoofed ClientHello from a live client's address.
LP=$(it_free_port)
get_crts "$LP" 6 "$T/live.log" &
pid=$!
for ((i = 0; i < 50; i++)); do
  (($(answers "$T/live.log") >= 1)) && break
  sleep 0.1
done
/usr/bin/python3 "$(dirname "$0")/spoof_hello.py" "$LP" "$PORT" || it_fail "could not send the spoofed ClientHello"
wait "$pid" 2>/dev/null
[ "$(answers "$T/live.log")" = 6 ] || it_fail "the live client lost answers: $(answers "$T/live.log") of 6"
grep -q "answered: it is live" "$T/coapd.log" || it_fail "the live session was not probed: $(grep -E 'probing|answer' "$T/coapd.log")"
(($(grep -c "did not answer after a new ClientHello" "$T/coapd.log") == 1)) ||
  it_fail "the live session was dropped"
est_stop

# 3: dtls_reboot_probe no turns the workaround off (for a libcoap that
# handles it): nothing is probed.
EST_HOST_EXTRA="dtls_reboot_probe no" est_start
LP=$(it_free_port)
get_crts "$LP" 3 "$T/off.log" &
pid=$!
sleep 1.5
/usr/bin/python3 "$(dirname "$0")/spoof_hello.py" "$LP" "$PORT"
wait "$pid" 2>/dev/null
grep -q "probing it" "$T/coapd.log" && it_fail "probed with dtls_reboot_probe no"
est_stop
it_pass
