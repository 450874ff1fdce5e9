/**
 * @file reboot.h
 * @brief Let a device that rebooted come back from the same address and
 * port (RFC 6347 §4.2.8). libcoap 4.3.1 with GnuTLS feeds its new
 * ClientHello (epoch 0) to the old session, which discards it ("invalid
 * epoch 0"), and every discarded ClientHello keeps the old session alive
 * (docs/libcoap-4.3.1.md §7, row 16). coapd sees that log line, asks the
 * old session for a sign of life (a CoAP ping, RFC 7252 §4.3), and drops
 * it when none comes: a rebooted device cannot answer under the old keys,
 * a live one does, so a spoofed ClientHello cannot end a live session.
 * Off with `dtls_reboot_probe no` (for a libcoap that handles §4.2.8).
 */
#ifndef COAPD_REBOOT_H
#define COAPD_REBOOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <coap3/coap.h>

/** How long a probed session has to answer, in ms: long enough for one
 * retransmission of the ping (ACK_TIMEOUT 2-3 s, RFC 7252 §4.8). A
 * libcoap 4.3.1 client ignores a ping in its first 250 ms (its RST rate
 * limit starts at tick 0, net.c), so the first one may get no answer. */
#define REBOOT_PROBE_MS 6000u
/** Sessions probed at once, and sightings queued between loop turns. */
#define REBOOT_PROBES_MAX 64u

/**
 * If @p line is libcoap's "Discarded message ... with invalid epoch 0"
 * warning, copy the remote address text ("127.0.0.1:5683", "[::1]:5683")
 * into @p remote and its interface index into *ifindex and return true.
 * Pure: no libcoap state.
 */
bool reboot_parse_line(const char *line, char *remote, size_t remote_len, int *ifindex);

/** Parse "a.b.c.d:port" or "[v6]:port" into @p out. */
bool reboot_parse_addr(const char *text, coap_address_t *out);

/** Switch the workaround on (coapd.conf dtls_reboot_probe). */
void reboot_enable(bool on);

/** From the log handler: a ClientHello hit an established session. */
void reboot_note_line(const char *line);

/** After each coap_io_process(): probe new sightings, drop the sessions
 * whose probe went unanswered. @p now_ms is monotonic. */
void reboot_run(coap_context_t *ctx, uint64_t now_ms);

/** Milliseconds until the nearest probe deadline, or -1 if none: the loop
 * wakes then, so a dead session goes on time. */
int reboot_next_ms(uint64_t now_ms);

/** A session answered (an RST to our ping, or any NACK of it by RST). */
void reboot_answered(coap_session_t *session, coap_mid_t mid);

/** The session is gone: forget any probe of it. */
void reboot_forget(coap_session_t *session);

#endif /* COAPD_REBOOT_H */
