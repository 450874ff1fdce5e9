/* host/admit.c: the admission decisions without a network (the flood
 * itself runs in it.host_flood). Sessions are fake handles. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "host/admit.h"

static const uint8_t KEY[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

#define S(i) ((void *)(uintptr_t)(0x1000u + (i)))

static admit_peer peer(uint8_t last, uint16_t port) {
  admit_peer p;
  memset(&p, 0, sizeof p);
  p.ip[10] = p.ip[11] = 0xff;
  p.ip[12] = 127;
  p.ip[15] = last;
  p.port = port;
  p.lport = 5684;
  p.v4 = true;
  return p;
}

/* A ClientHello record as flood_hello.py sends it: header, handshake
 * header, version and a random made from @p r. */
static size_t hello(uint8_t *d, uint8_t r, uint8_t rec_seq) {
  memset(d, 0, 80);
  d[0] = 22;
  d[1] = 0xfe;
  d[2] = 0xff;
  d[10] = rec_seq;
  d[12] = 67;
  d[13] = 1; /* client_hello */
  d[16] = 55;
  d[24] = 55;
  d[25] = 0xfe;
  d[26] = 0xfd;
  for (int i = 0; i < 32; i++)
    d[27 + i] = (uint8_t)(r + i);
  return 80;
}

/* Parking as the default config has it: 16 per max_total slot. */
#define PARK_FACTOR 16u

static admit *mk(unsigned max_total, unsigned per_addr, unsigned pressure, uint32_t timeout_ms) {
  admit_limits lim = {max_total, per_addr, pressure, timeout_ms, PARK_FACTOR * max_total};
  admit *a = NULL;
  assert_int_equal(admit_new(&lim, KEY, &a), EST_OK);
  assert_non_null(a);
  return a;
}

static void test_new_invalid(void **state) {
  (void)state;
  admit *a = (admit *)1;
  admit_limits zero = {0, 1, 0, 1000, 0}, nope = {10, 0, 0, 1000, 0};
  admit_limits big = {ADMIT_MAX_TRACKED + 1, 1, 0, 1, 0}, park = {10, 1, 0, 1, ADMIT_PARK_MAX + 1};
  assert_int_equal(admit_new(&zero, KEY, &a), EST_ERR_INVALID);
  assert_null(a);
  assert_int_equal(admit_new(&nope, KEY, &a), EST_ERR_INVALID);
  assert_int_equal(admit_new(&big, KEY, &a), EST_ERR_INVALID);
  assert_int_equal(admit_new(&park, KEY, &a), EST_ERR_INVALID);
  assert_int_equal(admit_new(NULL, KEY, &a), EST_ERR_INVALID);
  admit_free(NULL);
}

static void test_is_hello(void **state) {
  (void)state;
  uint8_t d[80];
  size_t n = hello(d, 1, 0);
  assert_true(admit_is_hello(d, n));
  assert_true(admit_is_hello(d, 14));
  assert_false(admit_is_hello(d, 13)); /* libcoap reads byte 13 */
  assert_false(admit_is_hello(NULL, 80));
  d[13] = 2; /* server_hello */
  assert_false(admit_is_hello(d, n));
  d[13] = 1;
  d[0] = 23; /* application data */
  assert_false(admit_is_hello(d, n));
}

/* Under pressure only a retransmission passes: the same ClientHello from
 * the same peer one slice or more later, with its record number moved on. */
static void test_retransmission(void **state) {
  (void)state;
  admit *a = mk(100, 10, 0, 3000); /* pressure 0: always */
  admit_peer p = peer(1, 40000), q = peer(1, 40001);
  admit_victim v;
  uint8_t d[80];
  uint64_t t = 100000;
  assert_true(admit_under_pressure(a));
  size_t n = hello(d, 7, 0);
  assert_int_equal(admit_hello(a, &p, d, n, t, &v), ADMIT_DROP_FIRST);
  /* A copy at once is not a retransmission. */
  assert_int_equal(admit_hello(a, &p, d, n, t + 10, &v), ADMIT_DROP_FIRST);
  /* The same ClientHello from another port is another client. */
  hello(d, 7, 1);
  assert_int_equal(admit_hello(a, &q, d, n, t + 1000, &v), ADMIT_DROP_FIRST);
  /* Another random from the same port is another ClientHello. */
  hello(d, 8, 1);
  assert_int_equal(admit_hello(a, &p, d, n, t + 1000, &v), ADMIT_DROP_FIRST);
  /* The retransmission 1 s later (RFC 6347 4.2.4.1) passes. */
  hello(d, 7, 1);
  assert_int_equal(admit_hello(a, &p, d, n, t + 1000, &v), ADMIT_PASS);
  assert_null(v.session);
  /* Past the memory (ADMIT_SLICES slices) it is a first sighting again. */
  hello(d, 9, 0);
  assert_int_equal(admit_hello(a, &p, d, n, t, &v), ADMIT_DROP_FIRST);
  hello(d, 9, 1);
  assert_int_equal(admit_hello(a, &p, d, n, t + (ADMIT_SLICES + 1) * ADMIT_SLICE_MS, &v),
                   ADMIT_DROP_FIRST);
  const admit_stats *s = admit_get_stats(a);
  assert_int_equal(s->passed, 1);
  assert_int_equal(s->drop_first, 6);
  admit_free(a);
}

/* Below the pressure threshold nothing is asked of a ClientHello. */
static void test_no_pressure(void **state) {
  (void)state;
  admit *a = mk(100, 10, 2, 3000);
  admit_victim v;
  uint8_t d[80];
  size_t n = hello(d, 1, 0);
  admit_peer p1 = peer(1, 1), p2 = peer(1, 2), p3 = peer(1, 3);
  assert_false(admit_under_pressure(a));
  assert_int_equal(admit_hello(a, &p1, d, n, 1000, &v), ADMIT_PASS);
  admit_track(a, S(1), &p1, 1000);
  assert_int_equal(admit_hello(a, &p2, d, n, 1000, &v), ADMIT_PASS);
  admit_track(a, S(2), &p2, 1000);
  assert_true(admit_under_pressure(a));
  assert_int_equal(admit_hello(a, &p3, d, n, 1000, &v), ADMIT_DROP_FIRST);
  /* One finishes its handshake: the pressure is off again. */
  admit_mark(a, S(1), ADMIT_DONE);
  assert_false(admit_under_pressure(a));
  assert_int_equal(admit_hello(a, &p3, d, n, 1000, &v), ADMIT_PASS);
  admit_free(a);
}

/* Pass the retransmitted ClientHello of peer @p p at @p t. */
static admit_verdict retrans(admit *a, const admit_peer *p, uint8_t r, uint64_t t,
                             admit_victim *v) {
  uint8_t d[80];
  size_t n = hello(d, r, 0);
  (void)admit_hello(a, p, d, n, t, v);
  hello(d, r, 1);
  return admit_hello(a, p, d, n, t + 1000, v);
}

/* One address at its cap: its own idlest evictable handshake goes, the
 * other addresses keep theirs. */
static void test_per_addr_evict(void **state) {
  (void)state;
  admit *a = mk(100, 3, 0, 3000);
  admit_victim v;
  admit_peer b = peer(2, 9000);
  admit_track(a, S(100), &b, 10);
  admit_mark(a, S(100), ADMIT_HANDSHAKE);
  for (unsigned i = 0; i < 3; i++) {
    admit_peer p = peer(1, (uint16_t)(1000 + i));
    admit_track(a, S(i), &p, 1000 + i);
    admit_mark(a, S(i), ADMIT_HANDSHAKE);
  }
  admit_peer p0 = peer(1, 1000);
  assert_true(admit_seen(a, &p0, 5000)); /* S(0) is alive: S(1) is idlest */
  assert_int_equal(admit_addr_count(a, &p0), 3);
  admit_peer n1 = peer(1, 2000);
  assert_int_equal(retrans(a, &n1, 1, 6000, &v), ADMIT_PASS);
  assert_ptr_equal(v.session, S(1));
  assert_int_equal(v.peer.port, 1001);
  assert_int_equal(admit_count(a), 3);
  assert_int_equal(admit_addr_count(a, &p0), 2);
  assert_int_equal(admit_addr_count(a, &b), 1);
  assert_int_equal(admit_get_stats(a)->evicted, 1);
  admit_free(a);
}

/* Nothing to evict (all waiting for their cookie for less than
 * ADMIT_HELLO_EVICT_MS): refused. Silent longer, the idlest is parked. */
static void test_per_addr_full(void **state) {
  (void)state;
  admit *a = mk(100, 2, 0, 3000);
  admit_victim v;
  for (unsigned i = 0; i < 2; i++) {
    admit_peer p = peer(1, (uint16_t)(1000 + i));
    admit_track(a, S(i), &p, 6500 + i);
  }
  admit_peer n1 = peer(1, 2000), other = peer(3, 2000);
  assert_int_equal(retrans(a, &n1, 1, 6000, &v), ADMIT_DROP_FULL);
  assert_null(v.session);
  /* Another address still gets in. */
  assert_int_equal(retrans(a, &other, 1, 6000, &v), ADMIT_PASS);
  assert_null(v.session);
  /* A second later the idlest HELLO is parked to make room. */
  assert_int_equal(retrans(a, &n1, 2, 6500 + ADMIT_HELLO_EVICT_MS - 1000, &v), ADMIT_PASS);
  assert_ptr_equal(v.session, S(0));
  assert_int_equal(v.stage, ADMIT_HELLO);
  assert_false(v.expiring);
  admit_peer p0 = peer(1, 1000);
  assert_true(admit_parked(a, &p0));
  assert_int_equal(admit_parked_count(a), 1);
  assert_int_equal(admit_active_count(a), 1);
  assert_int_equal(admit_get_stats(a)->drop_full, 1);
  assert_int_equal(admit_get_stats(a)->parked, 1);
  admit_free(a);
}

/* All slots taken: the idlest evictable handshake of any address goes. */
static void test_global_evict(void **state) {
  (void)state;
  admit *a = mk(4, 3, 0, 3000);
  admit_victim v;
  for (unsigned i = 0; i < 4; i++) {
    admit_peer p = peer((uint8_t)(10 + i), 7000);
    /* S(3) is a fresh HELLO, S(2) the idlest past the cookie. */
    admit_track(a, S(i), &p, i == 3 ? 6900 : 100 * (5 - i));
    admit_mark(a, S(i), i == 3 ? ADMIT_HELLO : ADMIT_HANDSHAKE);
  }
  admit_peer n1 = peer(50, 1);
  assert_int_equal(retrans(a, &n1, 1, 6000, &v), ADMIT_PASS);
  assert_ptr_equal(v.session, S(2));
  assert_int_equal(v.stage, ADMIT_HANDSHAKE);
  assert_int_equal(admit_count(a), 3);
  admit_free(a);
}

/* handshake_timeout: only under pressure, only silent evictable ones. */
static void test_expire(void **state) {
  (void)state;
  admit *a = mk(100, 10, 3, 3000);
  admit_victim v[8];
  admit_peer p[3] = {peer(1, 1), peer(1, 2), peer(1, 3)};
  admit_track(a, S(0), &p[0], 1000);
  admit_track(a, S(1), &p[1], 1000);
  admit_mark(a, S(0), ADMIT_HANDSHAKE);
  admit_mark(a, S(1), ADMIT_HANDSHAKE);
  assert_int_equal(admit_expire(a, 100000, v, 8), 0); /* no pressure */
  admit_track(a, S(2), &p[2], 1000);                 /* a HELLO */
  assert_true(admit_seen(a, &p[1], 3500));
  assert_int_equal(admit_expire(a, 3999, v, 8), 0);
  assert_int_equal(admit_expire(a, 4000, v, 8), 1);
  assert_ptr_equal(v[0].session, S(0));
  assert_int_equal(v[0].peer.port, 1);
  assert_int_equal(admit_count(a), 2);
  assert_int_equal(admit_get_stats(a)->expired, 1);
  assert_int_equal(admit_expire(a, 100000, v, 8), 0); /* pressure gone */
  admit_free(a);
}

/* The peer index stays right through any mix of inserts and removals
 * (backward-shift deletion), checked against a plain array. */
static void test_table_model(void **state) {
  (void)state;
  enum { N = 300 };
  admit *a = mk(N, N, 0, 1000);
  bool in[N];
  memset(in, 0, sizeof in);
  srand(7);
  for (int step = 0; step < 4000; step++) {
    unsigned i = (unsigned)rand() % N;
    admit_peer p = peer((uint8_t)(i % 7), (uint16_t)(i * 13 + 1));
    if (in[i]) {
      if (rand() % 2)
        admit_mark(a, S(i), ADMIT_DONE);
      else
        admit_mark_at(a, (size_t)rand() % admit_count(a), ADMIT_DONE);
    } else {
      admit_track(a, S(i), &p, (uint64_t)step);
    }
    /* Rebuild the model from the table itself, then check every peer. */
    memset(in, 0, sizeof in);
    for (size_t k = 0; k < admit_count(a); k++)
      in[(uintptr_t)admit_session_at(a, k) - 0x1000u] = true;
    for (unsigned k = 0; k < N; k++) {
      admit_peer q = peer((uint8_t)(k % 7), (uint16_t)(k * 13 + 1));
      assert_int_equal(admit_seen(a, &q, (uint64_t)step), in[k]);
    }
  }
  assert_int_equal(admit_get_stats(a)->untracked, 0);
  admit_free(a);
}

/* A second session for a tracked peer replaces the first; a full table
 * counts what it could not track. */
static void test_track_edges(void **state) {
  (void)state;
  admit *a = mk(1, 1, 0, 1000);
  admit_peer p = peer(1, 1);
  admit_track(a, S(1), &p, 5);
  admit_track(a, S(2), &p, 6);
  assert_int_equal(admit_count(a), 1);
  assert_ptr_equal(admit_session_at(a, 0), S(2));
  assert_null(admit_session_at(a, 1));
  assert_null(admit_peer_at(a, 1));
  for (unsigned i = 0; i < 40; i++) {
    admit_peer q = peer(2, (uint16_t)(100 + i));
    admit_track(a, S(10 + i), &q, 7);
  }
  /* max_total + 16, and PARK_FACTOR parked per slot */
  assert_int_equal(admit_count(a), 17 + PARK_FACTOR);
  assert_int_equal(admit_get_stats(a)->untracked, 8);
  admit_mark(a, S(999), ADMIT_DONE); /* unknown: ignored */
  assert_int_equal(admit_count(a), 17 + PARK_FACTOR);
  admit_free(a);
}

/* A HELLO session gone silent is parked: out of every count, its peer's
 * datagrams held back; it comes back only with room, and is let go (still
 * counted, but evictable) after ADMIT_PARKED_MS. */
static void test_park(void **state) {
  (void)state;
  admit *a = mk(10, 5, 0, 3000);
  admit_victim v[4];
  void *sess;
  admit_peer p0 = peer(1, 1), p1 = peer(1, 2);
  admit_track(a, S(0), &p0, 1000);
  admit_track(a, S(1), &p1, 1000);
  admit_mark(a, S(1), ADMIT_HANDSHAKE);
  assert_int_equal(admit_park(a, 1000 + ADMIT_PARK_MS - 1, v, 4), 0);
  assert_int_equal(admit_park(a, 1000 + ADMIT_PARK_MS, v, 4), 1);
  assert_ptr_equal(v[0].session, S(0));
  assert_int_equal(admit_stage_at(a, 0), ADMIT_PARKED);
  assert_int_equal(admit_active_count(a), 1);
  assert_int_equal(admit_parked_count(a), 1);
  assert_int_equal(admit_addr_count(a, &p0), 1);
  assert_true(admit_parked(a, &p0));
  assert_false(admit_parked(a, &p1));
  assert_false(admit_seen(a, &p0, 5000)); /* parked: not alive */
  /* Its peer is back and there is room: unparked, the caller releases it. */
  assert_int_equal(admit_wake(a, &p0, 5000, &sess, v), ADMIT_PASS);
  assert_ptr_equal(sess, S(0));
  assert_null(v[0].session);
  assert_false(admit_parked(a, &p0));
  assert_int_equal(admit_active_count(a), 2);
  /* Parked again, and let go after ADMIT_PARKED_MS. */
  assert_int_equal(admit_park(a, 5000 + ADMIT_PARK_MS, v, 4), 1);
  uint64_t t = 5000 + ADMIT_PARK_MS;
  assert_int_equal(admit_unpark_due(a, t + ADMIT_PARKED_MS - 1, v, 4), 0);
  assert_int_equal(admit_unpark_due(a, t + ADMIT_PARKED_MS, v, 4), 1);
  assert_ptr_equal(v[0].session, S(0));
  assert_int_equal(admit_parked_count(a), 0);
  assert_int_equal(admit_active_count(a), 2);
  /* Let go, it is counted but evictable, and never parked again. */
  assert_int_equal(admit_park(a, t + 2 * ADMIT_PARKED_MS, v, 4), 0);
  assert_true(admit_seen(a, &p1, t + ADMIT_PARKED_MS));
  for (unsigned i = 0; i < 3; i++) {
    admit_peer q = peer(1, (uint16_t)(10 + i));
    admit_track(a, S(10 + i), &q, t + ADMIT_PARKED_MS);
  }
  admit_peer n1 = peer(1, 99);
  assert_int_equal(retrans(a, &n1, 1, t + ADMIT_PARKED_MS, &v[0]), ADMIT_PASS);
  assert_ptr_equal(v[0].session, S(0));
  assert_int_equal(admit_get_stats(a)->parked, 2);
  assert_int_equal(admit_get_stats(a)->woken, 1);
  admit_free(a);
}

/* No room for a parked peer: it stays parked; and parking stops at its cap. */
static void test_park_limits(void **state) {
  (void)state;
  admit *a = mk(1, 1, 0, 3000);
  admit_victim v[64];
  void *sess = S(77);
  admit_peer p0 = peer(1, 1), p1 = peer(1, 2);
  admit_track(a, S(0), &p0, 0);
  assert_int_equal(admit_park(a, ADMIT_PARK_MS, v, 64), 1);
  admit_track(a, S(1), &p1, ADMIT_PARK_MS); /* a HELLO of the same address */
  assert_int_equal(admit_wake(a, &p0, ADMIT_PARK_MS + 1, &sess, v), ADMIT_DROP_FULL);
  assert_null(sess);
  assert_true(admit_parked(a, &p0));
  /* Not parked at all: nothing to do. */
  admit_peer nobody = peer(9, 9);
  assert_int_equal(admit_wake(a, &nobody, 1, &sess, v), ADMIT_PASS);
  assert_null(sess);
  /* At most PARK_FACTOR * max_total parked. */
  for (unsigned i = 0; i < 2 * PARK_FACTOR; i++) {
    admit_peer q = peer(2, (uint16_t)(100 + i));
    admit_track(a, S(100 + i), &q, 10000);
  }
  assert_int_equal(admit_park(a, 10000 + ADMIT_PARK_MS, v, 64), PARK_FACTOR - 1);
  assert_int_equal(admit_parked_count(a), PARK_FACTOR);
  admit_free(a);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_new_invalid),    cmocka_unit_test(test_is_hello),
    cmocka_unit_test(test_retransmission), cmocka_unit_test(test_no_pressure),
    cmocka_unit_test(test_per_addr_evict), cmocka_unit_test(test_per_addr_full),
    cmocka_unit_test(test_global_evict),   cmocka_unit_test(test_expire),
    cmocka_unit_test(test_table_model),    cmocka_unit_test(test_track_edges),
    cmocka_unit_test(test_park),           cmocka_unit_test(test_park_limits),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
