/**
 * @file admit.h
 * @brief Admission control for DTLS handshakes under a ClientHello flood
 * (docs/admission.md).
 *
 * libcoap 4.3.1 creates a session and a GnuTLS server state for every
 * ClientHello from a new address:port before any cookie is checked, and it
 * cannot be told to free one that never returns the cookie: it lives 30 s
 * and holds one of the max_handshake_sessions slots (docs/libcoap-4.3.1.md
 * §7 #19, #20). So coapd looks at each datagram before libcoap reads it
 * (host/admit_io.c) and decides with the pure logic here:
 *  - under pressure a ClientHello from a new address:port goes on only
 *    when it is a retransmission (RFC 6347 §4.2.4): a flood of one-shot
 *    ClientHellos never reaches libcoap;
 *  - one source address holds at most per_addr half-open handshakes, and
 *    all together at most max_total; a new one evicts the half-open
 *    handshake whose peer has been silent longest instead of being refused;
 *  - under pressure a half-open handshake whose peer is silent for
 *    timeout_ms is dropped;
 *  - a session that never returned GnuTLS's cookie (HELLO) is parked after
 *    ADMIT_PARK_MS of silence: coapd frees its GnuTLS state and holds a
 *    reference, which takes it out of libcoap's count (coap_session.c,
 *    coap_endpoint_get_session counts only unreferenced sessions); it is
 *    let go after ADMIT_PARKED_MS, when libcoap's 30 s timeout frees it.
 * Nothing here calls libcoap: sessions are opaque handles, so the unit
 * tests drive it without a network (tests/unit/test_admit.c).
 */
#ifndef COAPD_ADMIT_H
#define COAPD_ADMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/est_err.h"

/** Retransmission memory: ADMIT_SLICES Bloom filters of ADMIT_SLICE_MS
 * each, so a ClientHello is remembered for 3.5 to 4 s, past the first two
 * retransmissions (1 s, then 2 s later; RFC 6347 §4.2.4.1). */
#define ADMIT_SLICE_MS 500u
#define ADMIT_SLICES 8u
/** Bits per slice and bits per ClientHello: 2^21 (256 KiB) and 4 keep
 * false positives under 1 in 400 000 at 25 000 ClientHellos a second;
 * each false positive gives the flood a session nothing can free for 30 s
 * (docs/admission.md). */
#define ADMIT_BLOOM_BITS (1u << 21)
#define ADMIT_BLOOM_K 4u
/** Bytes of a ClientHello that a retransmission repeats: the handshake
 * header and client_version + random (the record header's sequence
 * number changes, RFC 6347 §4.1). */
#define ADMIT_FP_FROM 13u
#define ADMIT_FP_LEN 46u
/** Most half-open handshakes tracked (the config caps max_total lower). */
#define ADMIT_MAX_TRACKED 100000u
/** Silence after which a HELLO session is parked: a client retransmits an
 * unanswered ClientHello after 1 s and 2 s more (RFC 6347 §4.2.4.1). */
#define ADMIT_PARK_MS 3000u
/** A HELLO session silent this long may be parked at once to make room
 * for a new handshake: a client answers a HelloVerifyRequest within a
 * round trip, so it is the idlest HELLO that goes, and only under a cap.
 * A client whose answer comes later must start its handshake again
 * (docs/libcoap-4.3.1.md §7 #21). */
#define ADMIT_HELLO_EVICT_MS 1000u
/** How long it stays parked: libcoap's partial-session timeout is 30 s
 * (COAP_PARTIAL_SESSION_TIMEOUT_TICKS), so when let go it is freed at
 * libcoap's next look. */
#define ADMIT_PARKED_MS 31000u
/** Most parked sessions (max_parked_handshakes); past its limit, HELLO
 * sessions stay counted. */
#define ADMIT_PARK_MAX 65536u

/** A peer: IPv4 as ::ffff:a.b.c.d, so a dual-stack socket's view and a
 * plain IPv4 socket's view of one address compare equal. */
typedef struct admit_peer {
  uint8_t ip[16];
  uint16_t port;
  uint16_t lport; /**< our endpoint's port: libcoap keys sessions on it too */
  /* Carried for coap_session_get_by_peer, not compared: */
  int ifindex; /**< interface the datagrams come in on */
  bool v4;     /**< libcoap sees it as AF_INET (an IPv4 socket) */
} admit_peer;

typedef struct admit_limits {
  unsigned max_total;  /**< libcoap's max_handshake_sessions */
  unsigned per_addr;   /**< max_handshakes_per_addr */
  unsigned pressure;   /**< handshake_pressure; 0 = always */
  uint32_t timeout_ms; /**< handshake_timeout, under pressure */
  unsigned park_max;   /**< max_parked_handshakes, at most ADMIT_PARK_MAX */
} admit_limits;

/** How far a tracked handshake has come (libcoap's type and state). */
typedef enum admit_stage {
  ADMIT_HELLO,     /**< ClientHello seen, GnuTLS's cookie not yet back */
  ADMIT_HANDSHAKE, /**< cookie back, handshake under way: can be evicted */
  ADMIT_PARKED,    /**< HELLO gone silent: referenced, not counted */
  ADMIT_DONE       /**< established or gone: no longer tracked */
} admit_stage;

/** A tracked session the caller is to drop, and its peer (to check with
 * libcoap that the session is still the one it was). */
typedef struct admit_victim {
  void *session;
  admit_peer peer;
  /** ADMIT_HELLO: park it (as admit_park's), else drop it; an unparked
   * HELLO (libcoap frees it anyway) needs nothing. */
  admit_stage stage;
  bool expiring;
} admit_victim;

typedef enum admit_verdict {
  ADMIT_PASS,       /**< let libcoap read it */
  ADMIT_DROP_FIRST, /**< under pressure, not (yet) a retransmission */
  ADMIT_DROP_FULL   /**< no room and nothing that may be evicted */
} admit_verdict;

typedef struct admit_stats {
  uint64_t passed;     /**< ClientHellos from new peers let through */
  uint64_t drop_first; /**< ... dropped as first sightings */
  uint64_t drop_full;  /**< ... dropped for lack of room */
  uint64_t evicted;    /**< half-open handshakes evicted for a new one */
  uint64_t expired;    /**< ... dropped by handshake_timeout */
  uint64_t untracked;  /**< sessions the table had no room for */
  uint64_t parked;     /**< silent HELLO sessions parked */
  uint64_t woken;      /**< parked ones whose peer came back with room */
} admit_stats;

typedef struct admit admit;

/** @p key seeds the fingerprint hash (SipHash-2-4), so nobody can aim
 * ClientHellos at one Bloom bit. */
est_err admit_new(const admit_limits *lim, const uint8_t key[16],
                  admit **out) EST_MUST_CHECK;
void admit_free(admit *a);

/** What libcoap takes for a ClientHello: a handshake record whose
 * handshake type is client_hello (coap_session.c, coap_endpoint_get_session)
 * and at least the 14 bytes it reads. */
bool admit_is_hello(const uint8_t *d, size_t n);

/** True if the half-open count is at or over the pressure threshold. */
bool admit_under_pressure(const admit *a);

/**
 * A ClientHello @p d from @p p, which libcoap has no session for. On
 * ADMIT_PASS evict->session may name a session that is no longer tracked
 * and that the caller must drop before libcoap reads the datagram
 * (NULL: none). @p now_ms is monotonic.
 */
admit_verdict admit_hello(admit *a, const admit_peer *p, const uint8_t *d,
                          size_t n, uint64_t now_ms, admit_victim *evict);

/** libcoap made a session for @p p (COAP_EVENT_SERVER_SESSION_NEW). */
void admit_track(admit *a, void *session, const admit_peer *p, uint64_t now_ms);

/** The session moved on (DONE untracks it). Unknown sessions are ignored. */
void admit_mark(admit *a, void *session, admit_stage stage);
/** The same for entry @p i (polling backwards is safe: DONE moves the
 * last entry into @p i). */
void admit_mark_at(admit *a, size_t i, admit_stage stage);

/** A datagram from @p p: if it is a tracked peer, it is alive now. */
bool admit_seen(admit *a, const admit_peer *p, uint64_t now_ms);

/** Under pressure, untrack up to @p max evictable handshakes whose peer
 * has been silent for timeout_ms and return them in @p out to be dropped. */
size_t admit_expire(admit *a, uint64_t now_ms, admit_victim *out, size_t max);

/** Is @p p parked? Every datagram from it is then the caller's to decide:
 * libcoap would hand it to the parked session. */
bool admit_parked(const admit *a, const admit_peer *p);

/** A ClientHello from parked @p p: if there is room (as for a new one,
 * eviction included) it is unparked, *session is the session the caller
 * is to release, and ADMIT_PASS comes back; else ADMIT_DROP_FULL. */
admit_verdict admit_wake(admit *a, const admit_peer *p, uint64_t now_ms, void **session,
                         admit_victim *evict);

/** Park up to @p max HELLO sessions silent for ADMIT_PARK_MS (the caller
 * drops their DTLS state and references them). */
size_t admit_park(admit *a, uint64_t now_ms, admit_victim *out, size_t max);

/** Sessions parked for ADMIT_PARKED_MS, for the caller to release; they
 * stay tracked, counted and evictable until libcoap frees them. */
size_t admit_unpark_due(admit *a, uint64_t now_ms, admit_victim *out, size_t max);

/** Tracked sessions, for polling their state: index 0..admit_count()-1. */
size_t admit_count(const admit *a);
void *admit_session_at(const admit *a, size_t i);
const admit_peer *admit_peer_at(const admit *a, size_t i);
admit_stage admit_stage_at(const admit *a, size_t i);
/** Entries libcoap counts (not parked), and parked ones. */
size_t admit_active_count(const admit *a);
size_t admit_parked_count(const admit *a);
/** Half-open handshakes of @p p's address (any port). */
unsigned admit_addr_count(const admit *a, const admit_peer *p);

const admit_stats *admit_get_stats(const admit *a);

#endif /* COAPD_ADMIT_H */
