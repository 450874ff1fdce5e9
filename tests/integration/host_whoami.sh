#!/usr/bin/env bash
# coapd serving testplug's GET /whoami over coaps: both coap-client builds,
# IPv4 and IPv6, an LDevID (our CA) and an IDevID (second CA in the trust
# bundle); no cert and a rogue cert get nothing; session data, Block2,
# tick/watch_fd; SIGTERM stops it promptly with status 0 and no leaks.
. "$(dirname "$0")/lib.sh"
it_init host_whoami

PKI=$T/pki
it_pki "$PKI"
PORT=$(it_free_port)
printf '%s\n' "listen 127.0.0.1 $PORT" "listen ::1 $PORT" \
  "dtls_cert $PKI/server.crt" "dtls_key $PKI/server.key" \
  "dtls_ca $PKI/trust.pem" "log_level info" "session_timeout 60" \
  "max_idle_sessions 50" "max_handshake_sessions 20" "dtls_verify_depth 3" \
  "plugin $TESTPLUG" "plugin_opt_greeting hello coaps" >"$T/coapd.conf"
it_coapd_start "$T/coapd.conf"
it_expect_log coapd "coapd: ready \(2 endpoints, 1 plugin\)"

# sha256 of a PEM certificate's DER.
leaf_sha() { certtool -i --infile "$1" --outder 2>/dev/null | sha256sum | cut -d' ' -f1; }

for id in client idevid; do
  sha=$(leaf_sha "$PKI/$id.crt")
  for client in gnutls openssl; do
    for host in 127.0.0.1 '[::1]'; do
      it_coap "$client" -c "$PKI/$id.crt" -j "$PKI/$id.key" -C "$PKI/ca.crt" \
        "coaps://$host:$PORT/whoami"
      it_expect_code 2.05
      it_expect_opt "Content-Format:0"
      it_expect_payload "^plugin=testplug$"
      it_expect_payload "^chain=[12]$"
      it_expect_payload "^leaf_sha256=$sha$"
      it_expect_payload "^tls_unique_len=12$"
      it_expect_payload "^tls_exporter_len=32$"
      it_expect_payload "^greeting=hello coaps$"
      it_expect_payload "^session_requests=1$"
    done
  done
done

# The plugin's tick ran and its eventfd woke the loop (watch_fd).
it_expect_payload "^ticks=[1-9][0-9]*$"
it_expect_payload "^wakeups=[1-9][0-9]*$"

# Session data: three requests in one DTLS session count 1, 2, 3 (-G
# repeats on the same session and appends every body to -o).
it_coap gnutls -G 3 -c "$PKI/client.crt" -j "$PKI/client.key" -C "$PKI/ca.crt" \
  "coaps://127.0.0.1:$PORT/whoami"
it_expect_code 2.05
it_expect_payload "^session_requests=3$"

# Block2: a 3000-byte body in 64-byte blocks; the last block's options.
it_coap openssl -b 64 -c "$PKI/client.crt" -j "$PKI/client.key" -C "$PKI/ca.crt" \
  "coaps://[::1]:$PORT/whoami?pad=3000"
it_expect_code 2.05
# The plugin set Max-Age 5; libcoap lowers it on later blocks as the kept
# response ages (RFC 7252 §5.6.1), by a second or so on a slow (ASan) run.
case "$IT_OPTS" in
  *"Max-Age:5"* | *"Max-Age:4"* | *"Max-Age:3"*) ;;
  *) it_fail "no Max-Age 3..5 on the last block: [$IT_OPTS]" ;;
esac
it_expect_opt "/_/64"
[ "$(tail -n 1 "$IT_PAYLOAD_FILE" | tr -cd x | wc -c)" = 3000 ] ||
  it_fail "Block2 body incomplete: $(wc -c <"$IT_PAYLOAD_FILE") bytes"

# An unknown path is the host's business: 4.04 with a diagnostic.
it_coap gnutls -c "$PKI/client.crt" -j "$PKI/client.key" -C "$PKI/ca.crt" \
  "coaps://127.0.0.1:$PORT/nothing"
it_expect_code 4.04
grep -q "^4.04 no such resource" "$IT_STDERR" || it_fail "4.04 without its diagnostic: $(cat "$IT_STDERR")"

# No client certificate, or one from a CA not in dtls_ca: no response.
for client in gnutls openssl; do
  it_coap "$client" -B 3 -c "$PKI/rogue.crt" -j "$PKI/rogue.key" -C "$PKI/ca.crt" \
    "coaps://127.0.0.1:$PORT/whoami"
  it_expect_code none
  it_coap "$client" -B 3 -C "$PKI/ca.crt" "coaps://[::1]:$PORT/whoami"
  it_expect_code none
done
it_expect_log coapd "Client Certificate requested and required, but not provided"

# A session that is still open at shutdown: its data must be freed by the
# shutdown path (coap_free_context sends no SESSION_DEL). Kill the client
# hard after its first answer so it sends no close_notify.
coap-client-gnutls -B 30 -G 30 -c "$PKI/client.crt" -j "$PKI/client.key" \
  -C "$PKI/ca.crt" -o "$T/held.out" "coaps://127.0.0.1:$PORT/whoami" \
  >/dev/null 2>&1 &
held=$!
for _ in $(seq 100); do
  grep -q "session_requests=1" "$T/held.out" 2>/dev/null && break
  sleep 0.1
done
kill -KILL "$held" 2>/dev/null
wait "$held" 2>/dev/null
grep -q "session_requests=1" "$T/held.out" || it_fail "held session got no answer"

start=$(date +%s%N)
it_coapd_stop
ms=$((($(date +%s%N) - start) / 1000000))
[ "$ms" -lt 3000 ] || it_fail "SIGTERM took $ms ms"
it_expect_log coapd "\[testplug\] testplug fini"
it_expect_log coapd "coapd: stopped"

# With only our CA as dtls_ca, the IDevID is refused and the LDevID not.
PORT2=$(it_free_port)
sed -e "s|trust.pem|ca.crt|" -e "s| $PORT\$| $PORT2|" "$T/coapd.conf" >"$T/ca-only.conf"
it_coapd_start "$T/ca-only.conf" ca-only
# A background job's stdin is /dev/null, always readable; coapd must have put
# its own socket on descriptor 0 or GnuTLS never retransmits a server
# handshake flight (docs/libcoap-4.3.1.md §7 #18).
fd0=$(readlink "/proc/$IT_PID/fd/0") || it_fail "cannot read coapd's descriptor 0"
case $fd0 in
  socket:*) ;;
  *) it_fail "coapd's descriptor 0 is $fd0, not its own socket" ;;
esac
it_coap gnutls -B 3 -c "$PKI/idevid.crt" -j "$PKI/idevid.key" -C "$PKI/ca.crt" \
  "coaps://127.0.0.1:$PORT2/whoami"
it_expect_code none
it_coap openssl -c "$PKI/client.crt" -j "$PKI/client.key" -C "$PKI/ca.crt" \
  "coaps://127.0.0.1:$PORT2/whoami"
it_expect_code 2.05
it_coapd_stop ca-only

it_pass
