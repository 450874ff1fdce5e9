/* Admission decisions (admit.h): a table of half-open handshakes with a
 * peer index, and a sliced Bloom filter of recent ClientHellos. Pure: no
 * libcoap, no clock, no sockets. */
#include "admit.h"

#include <stdlib.h>
#include <string.h>

typedef struct entry {
  void *session;
  admit_peer peer;
  uint64_t last_ms;   /* last datagram from the peer */
  uint64_t parked_ms; /* when it was parked */
  admit_stage stage;
  bool expiring; /* unparked: libcoap frees it at its next look (§7 #20) */
} entry;

#define EMPTY UINT32_MAX

struct admit {
  admit_limits lim;
  uint8_t key[16];
  entry *e; /* dense: 0..n-1 */
  size_t n, cap;
  size_t nparked, park_max;
  uint32_t *slot; /* open addressing on the peer, index into e */
  size_t nslots;  /* power of two, >= 2 * cap */
  uint8_t *bloom; /* ADMIT_SLICES slices of ADMIT_BLOOM_BITS bits */
  uint64_t epoch[ADMIT_SLICES];
  admit_stats st;
};

/* SipHash-2-4 (Aumasson, Bernstein): keyed, so neither the Bloom bits
 * nor the peer slots can be aimed at. */
#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                   \
  do {                                                                                             \
    v0 += v1;                                                                                      \
    v1 = ROTL(v1, 13);                                                                             \
    v1 ^= v0;                                                                                      \
    v0 = ROTL(v0, 32);                                                                             \
    v2 += v3;                                                                                      \
    v3 = ROTL(v3, 16);                                                                             \
    v3 ^= v2;                                                                                      \
    v0 += v3;                                                                                      \
    v3 = ROTL(v3, 21);                                                                             \
    v3 ^= v0;                                                                                      \
    v2 += v1;                                                                                      \
    v1 = ROTL(v1, 17);                                                                             \
    v1 ^= v2;                                                                                      \
    v2 = ROTL(v2, 32);                                                                             \
  } while (0)

static uint64_t le64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--)
    v = (v << 8) | p[i];
  return v;
}

static uint64_t siphash(const uint8_t key[16], const uint8_t *in, size_t len) {
  uint64_t k0 = le64(key), k1 = le64(key + 8);
  uint64_t v0 = 0x736f6d6570736575ULL ^ k0, v1 = 0x646f72616e646f6dULL ^ k1;
  uint64_t v2 = 0x6c7967656e657261ULL ^ k0, v3 = 0x7465646279746573ULL ^ k1;
  size_t full = len - len % 8;
  for (size_t i = 0; i < full; i += 8) {
    uint64_t m = le64(in + i);
    v3 ^= m;
    SIPROUND;
    SIPROUND;
    v0 ^= m;
  }
  uint64_t b = (uint64_t)len << 56;
  for (size_t i = 0; i < len % 8; i++)
    b |= (uint64_t)in[full + i] << (8 * i);
  v3 ^= b;
  SIPROUND;
  SIPROUND;
  v0 ^= b;
  v2 ^= 0xff;
  SIPROUND;
  SIPROUND;
  SIPROUND;
  SIPROUND;
  return v0 ^ v1 ^ v2 ^ v3;
}

static bool peer_eq(const admit_peer *x, const admit_peer *y) {
  return x->port == y->port && x->lport == y->lport && memcmp(x->ip, y->ip, 16) == 0;
}

static size_t peer_slot(const admit *a, const admit_peer *p) {
  uint8_t buf[20];
  memcpy(buf, p->ip, 16);
  buf[16] = (uint8_t)(p->port >> 8);
  buf[17] = (uint8_t)p->port;
  buf[18] = (uint8_t)(p->lport >> 8);
  buf[19] = (uint8_t)p->lport;
  return (size_t)siphash(a->key, buf, sizeof buf) & (a->nslots - 1);
}

/* The slot holding @p p, or the empty slot where it would go. */
static size_t find_slot(const admit *a, const admit_peer *p) {
  size_t s = peer_slot(a, p);
  while (a->slot[s] != EMPTY && !peer_eq(&a->e[a->slot[s]].peer, p))
    s = (s + 1) & (a->nslots - 1);
  return s;
}

/* Linear probing deletion by backward shift (Knuth 6.4, algorithm R). */
static void slot_delete(admit *a, size_t s) {
  size_t mask = a->nslots - 1, j = s;
  a->slot[s] = EMPTY;
  for (;;) {
    j = (j + 1) & mask;
    if (a->slot[j] == EMPTY)
      return;
    size_t home = peer_slot(a, &a->e[a->slot[j]].peer);
    /* Move j back to s unless its home lies cyclically in (s, j]. */
    bool stays = s <= j ? (s < home && home <= j) : (s < home || home <= j);
    if (!stays) {
      a->slot[s] = a->slot[j];
      a->slot[j] = EMPTY;
      s = j;
    }
  }
}

static void remove_at(admit *a, size_t i) {
  if (a->e[i].stage == ADMIT_PARKED)
    a->nparked--;
  slot_delete(a, find_slot(a, &a->e[i].peer));
  size_t last = a->n - 1;
  if (i != last) {
    a->e[i] = a->e[last];
    a->slot[find_slot(a, &a->e[i].peer)] = (uint32_t)i;
  }
  a->n--;
}

est_err admit_new(const admit_limits *lim, const uint8_t key[16], admit **out) {
  est_err rc = EST_ERR_NOMEM;
  admit *a = NULL;
  *out = NULL;
  if (!lim || !key || lim->max_total == 0 || lim->max_total > ADMIT_MAX_TRACKED ||
      lim->per_addr == 0 || lim->park_max > ADMIT_PARK_MAX) {
    rc = EST_ERR_INVALID;
    goto out;
  }
  a = calloc(1, sizeof *a);
  if (!a)
    goto out;
  a->lim = *lim;
  memcpy(a->key, key, 16);
  /* libcoap lets one more in than its cap (coap_session.c: num_hs > max),
   * and sessions it keeps referenced are not counted there. */
  a->park_max = lim->park_max;
  a->cap = (size_t)lim->max_total + 16u + a->park_max;
  for (a->nslots = 64; a->nslots < 2 * a->cap; a->nslots *= 2)
    ;
  a->e = calloc(a->cap, sizeof *a->e);
  a->slot = malloc(a->nslots * sizeof *a->slot);
  a->bloom = calloc(ADMIT_SLICES, ADMIT_BLOOM_BITS / 8u);
  if (!a->e || !a->slot || !a->bloom)
    goto out;
  memset(a->slot, 0xff, a->nslots * sizeof *a->slot);
  for (size_t i = 0; i < ADMIT_SLICES; i++)
    a->epoch[i] = UINT64_MAX;
  *out = a;
  a = NULL;
  rc = EST_OK;
out:
  admit_free(a);
  return rc;
}

void admit_free(admit *a) {
  if (!a)
    return;
  free(a->e);
  free(a->slot);
  free(a->bloom);
  free(a);
}

bool admit_is_hello(const uint8_t *d, size_t n) {
  /* The same test as coap_endpoint_get_session: content type 22 at 0,
   * handshake type 1 at 13, 14 bytes at least. */
  return d && n >= 14 && d[0] == 22 && d[13] == 1;
}

/* Half-open handshakes libcoap counts: all but the parked ones. */
static size_t active(const admit *a) { return a->n - a->nparked; }

bool admit_under_pressure(const admit *a) {
  return active(a) >= a->lim.pressure;
}

static uint8_t *slice(admit *a, uint64_t ep) {
  size_t k = (size_t)(ep % ADMIT_SLICES);
  if (a->epoch[k] != ep) {
    memset(a->bloom + k * (ADMIT_BLOOM_BITS / 8u), 0, ADMIT_BLOOM_BITS / 8u);
    a->epoch[k] = ep;
  }
  return a->bloom + k * (ADMIT_BLOOM_BITS / 8u);
}

static bool bit_get(const uint8_t *b, uint32_t i) { return (b[i >> 3] >> (i & 7)) & 1u; }
static void bit_set(uint8_t *b, uint32_t i) { b[i >> 3] |= (uint8_t)(1u << (i & 7)); }

/* Seen in an earlier slice (at least one slice ago: an immediate repeat
 * is a copy, not a retransmission), then noted in the current one. */
static bool retransmission(admit *a, const admit_peer *p, const uint8_t *d, size_t n,
                           uint64_t now_ms) {
  uint8_t buf[20 + ADMIT_FP_LEN];
  size_t len = n > ADMIT_FP_FROM ? n - ADMIT_FP_FROM : 0;
  if (len > ADMIT_FP_LEN)
    len = ADMIT_FP_LEN;
  memcpy(buf, p->ip, 16);
  buf[16] = (uint8_t)(p->port >> 8);
  buf[17] = (uint8_t)p->port;
  buf[18] = (uint8_t)(p->lport >> 8);
  buf[19] = (uint8_t)p->lport;
  if (len)
    memcpy(buf + 20, d + ADMIT_FP_FROM, len);
  /* Two keyed hashes give the ADMIT_BLOOM_K indexes (Kirsch and
   * Mitzenmacher: h1 + i * h2). */
  uint64_t h1 = siphash(a->key, buf, 20 + len);
  uint64_t h2 = siphash(a->key, (const uint8_t *)&h1, sizeof h1) | 1u;
  uint32_t idx[ADMIT_BLOOM_K];
  for (unsigned i = 0; i < ADMIT_BLOOM_K; i++)
    idx[i] = (uint32_t)((h1 + i * h2) & (ADMIT_BLOOM_BITS - 1u));
  uint64_t ep = now_ms / ADMIT_SLICE_MS;
  bool found = false;
  for (uint64_t k = 1; k < ADMIT_SLICES && k <= ep && !found; k++) {
    size_t s = (size_t)((ep - k) % ADMIT_SLICES);
    if (a->epoch[s] != ep - k)
      continue;
    const uint8_t *b = a->bloom + s * (ADMIT_BLOOM_BITS / 8u);
    found = true;
    for (unsigned i = 0; i < ADMIT_BLOOM_K && found; i++)
      found = bit_get(b, idx[i]);
  }
  uint8_t *cur = slice(a, ep);
  for (unsigned i = 0; i < ADMIT_BLOOM_K; i++)
    bit_set(cur, idx[i]);
  return found;
}

/* The evictable entry (of @p ip's address if not NULL) whose peer has
 * been silent longest, or SIZE_MAX: one past the cookie, an unparked one
 * that libcoap frees anyway, or a HELLO silent for ADMIT_HELLO_EVICT_MS
 * while there is room to park it. */
static size_t idlest(const admit *a, const uint8_t *ip, uint64_t now_ms) {
  size_t best = SIZE_MAX;
  bool can_park = a->nparked < a->park_max;
  for (size_t i = 0; i < a->n; i++) {
    const entry *x = &a->e[i];
    bool can = x->stage == ADMIT_HANDSHAKE ||
               (x->stage == ADMIT_HELLO &&
                (x->expiring || (can_park && now_ms - x->last_ms >= ADMIT_HELLO_EVICT_MS)));
    if (!can || (ip && memcmp(x->peer.ip, ip, 16) != 0))
      continue;
    if (best == SIZE_MAX || x->last_ms < a->e[best].last_ms)
      best = i;
  }
  return best;
}

unsigned admit_addr_count(const admit *a, const admit_peer *p) {
  unsigned c = 0;
  for (size_t i = 0; i < a->n; i++)
    if (a->e[i].stage != ADMIT_PARKED && memcmp(a->e[i].peer.ip, p->ip, 16) == 0)
      c++;
  return c;
}

/* Room for one more half-open handshake of @p p's address: under both
 * caps, or by evicting one (into @p evict). Does not count @p p itself. */
static admit_verdict room(admit *a, const admit_peer *p, uint64_t now_ms,
                          admit_victim *evict) {
  size_t victim = SIZE_MAX;
  if (admit_addr_count(a, p) >= a->lim.per_addr) {
    victim = idlest(a, p->ip, now_ms);
  } else if (active(a) >= a->lim.max_total) {
    victim = idlest(a, NULL, now_ms);
  } else {
    a->st.passed++;
    return ADMIT_PASS;
  }
  if (victim == SIZE_MAX) {
    a->st.drop_full++;
    return ADMIT_DROP_FULL;
  }
  entry *x = &a->e[victim];
  evict->session = x->session;
  evict->peer = x->peer;
  evict->stage = x->stage;
  evict->expiring = x->expiring;
  if (x->stage == ADMIT_HELLO && !x->expiring) {
    /* Evicted by parking: the caller parks it (admit_park). */
    admit_mark_at(a, victim, ADMIT_PARKED);
    x->parked_ms = now_ms;
    a->st.parked++;
  } else {
    remove_at(a, victim);
  }
  a->st.evicted++;
  a->st.passed++;
  return ADMIT_PASS;
}

admit_verdict admit_hello(admit *a, const admit_peer *p, const uint8_t *d, size_t n,
                          uint64_t now_ms, admit_victim *evict) {
  memset(evict, 0, sizeof *evict);
  /* Always noted, so a retransmission counts even when the pressure
   * began after the first copy. */
  bool again = retransmission(a, p, d, n, now_ms);
  if (admit_under_pressure(a) && !again) {
    a->st.drop_first++;
    return ADMIT_DROP_FIRST;
  }
  return room(a, p, now_ms, evict);
}

void admit_track(admit *a, void *session, const admit_peer *p, uint64_t now_ms) {
  size_t s = find_slot(a, p);
  if (a->slot[s] != EMPTY) {
    /* A new session for a peer still in the table: the old one is gone. */
    entry *x = &a->e[a->slot[s]];
    if (x->stage == ADMIT_PARKED)
      a->nparked--;
    x->session = session;
    x->peer.ifindex = p->ifindex;
    x->last_ms = now_ms;
    x->stage = ADMIT_HELLO;
    x->expiring = false;
    return;
  }
  if (a->n >= a->cap) {
    a->st.untracked++;
    return;
  }
  a->e[a->n] = (entry){.session = session, .peer = *p, .last_ms = now_ms, .stage = ADMIT_HELLO};
  a->slot[s] = (uint32_t)a->n;
  a->n++;
}

void admit_mark(admit *a, void *session, admit_stage stage) {
  for (size_t i = 0; i < a->n; i++) {
    if (a->e[i].session == session) {
      admit_mark_at(a, i, stage);
      return;
    }
  }
}

void admit_mark_at(admit *a, size_t i, admit_stage stage) {
  if (i >= a->n)
    return;
  entry *x = &a->e[i];
  if (stage == ADMIT_DONE) {
    remove_at(a, i);
    return;
  }
  a->nparked -= x->stage == ADMIT_PARKED;
  a->nparked += stage == ADMIT_PARKED;
  x->stage = stage;
}

bool admit_seen(admit *a, const admit_peer *p, uint64_t now_ms) {
  if (a->n == 0)
    return false;
  size_t s = find_slot(a, p);
  if (a->slot[s] == EMPTY || a->e[a->slot[s]].stage == ADMIT_PARKED)
    return false;
  a->e[a->slot[s]].last_ms = now_ms;
  return true;
}

/* The entry of @p p, or SIZE_MAX. */
static size_t entry_of(const admit *a, const admit_peer *p) {
  if (a->n == 0)
    return SIZE_MAX;
  size_t s = find_slot(a, p);
  return a->slot[s] == EMPTY ? SIZE_MAX : a->slot[s];
}

bool admit_parked(const admit *a, const admit_peer *p) {
  size_t i = entry_of(a, p);
  return i != SIZE_MAX && a->e[i].stage == ADMIT_PARKED;
}

admit_verdict admit_wake(admit *a, const admit_peer *p, uint64_t now_ms, void **session,
                         admit_victim *evict) {
  memset(evict, 0, sizeof *evict);
  *session = NULL;
  size_t i = entry_of(a, p);
  if (i == SIZE_MAX || a->e[i].stage != ADMIT_PARKED)
    return ADMIT_PASS;
  admit_verdict v = room(a, p, now_ms, evict);
  if (v != ADMIT_PASS)
    return v;
  /* room() may have moved entries: find it again. */
  i = entry_of(a, p);
  entry *x = &a->e[i];
  admit_mark_at(a, i, ADMIT_HELLO);
  x->last_ms = now_ms;
  x->expiring = false;
  *session = x->session;
  a->st.woken++;
  return ADMIT_PASS;
}

size_t admit_park(admit *a, uint64_t now_ms, admit_victim *out, size_t max) {
  size_t k = 0;
  for (size_t i = 0; i < a->n && k < max && a->nparked < a->park_max; i++) {
    entry *x = &a->e[i];
    if (x->stage != ADMIT_HELLO || x->expiring || now_ms - x->last_ms < ADMIT_PARK_MS)
      continue;
    admit_mark_at(a, i, ADMIT_PARKED);
    x->parked_ms = now_ms;
    out[k++] = (admit_victim){.session = x->session, .peer = x->peer, .stage = ADMIT_HELLO};
    a->st.parked++;
  }
  return k;
}

size_t admit_unpark_due(admit *a, uint64_t now_ms, admit_victim *out, size_t max) {
  size_t k = 0;
  for (size_t i = 0; i < a->n && k < max; i++) {
    entry *x = &a->e[i];
    if (x->stage != ADMIT_PARKED || now_ms - x->parked_ms < ADMIT_PARKED_MS)
      continue;
    admit_mark_at(a, i, ADMIT_HELLO);
    x->expiring = true;
    out[k++] = (admit_victim){.session = x->session, .peer = x->peer, .stage = ADMIT_PARKED};
  }
  return k;
}

admit_stage admit_stage_at(const admit *a, size_t i) {
  return i < a->n ? a->e[i].stage : ADMIT_DONE;
}

size_t admit_parked_count(const admit *a) { return a->nparked; }

size_t admit_expire(admit *a, uint64_t now_ms, admit_victim *out, size_t max) {
  size_t k = 0;
  if (!admit_under_pressure(a))
    return 0;
  for (size_t i = a->n; i-- > 0 && k < max;) {
    entry *x = &a->e[i];
    if (x->stage != ADMIT_HANDSHAKE || now_ms - x->last_ms < a->lim.timeout_ms)
      continue;
    out[k++] = (admit_victim){.session = x->session, .peer = x->peer, .stage = ADMIT_HANDSHAKE};
    remove_at(a, i);
    a->st.expired++;
  }
  return k;
}

size_t admit_count(const admit *a) { return a->n; }

size_t admit_active_count(const admit *a) { return active(a); }

void *admit_session_at(const admit *a, size_t i) { return i < a->n ? a->e[i].session : NULL; }

const admit_peer *admit_peer_at(const admit *a, size_t i) { return i < a->n ? &a->e[i].peer : NULL; }

const admit_stats *admit_get_stats(const admit *a) { return &a->st; }
