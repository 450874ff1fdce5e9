/* plugin/est/dedup.c: the answers kept for repeated CONs (RFC 7252 §4.5). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "plugin/est/dedup.h"

static const uint8_t TOK_A[] = {1, 2, 3, 4};
static const uint8_t TOK_B[] = {9, 9};

static reply_rec owned(size_t len, uint8_t fill) {
  reply_rec r;
  memset(&r, 0, sizeof r);
  r.kind = REPLY_OWNED;
  r.code = 204;
  r.cf = 281;
  r.body = malloc(len);
  assert_non_null(r.body);
  memset(r.body, fill, len);
  r.len = len;
  return r;
}

static void test_find_and_lifetime(void **state) {
  (void)state;
  dedup_budget b = {0, 4096};
  dedup d;
  dedup_init(&d, &b, 8);
  assert_null(dedup_find(&d, 7, TOK_A, sizeof TOK_A, 100));
  reply_rec r = owned(100, 0xaa);
  dedup_put(&d, 7, TOK_A, sizeof TOK_A, 100, &r);
  assert_null(r.body); /* consumed */
  assert_int_equal(b.used, 100);
  const reply_rec *f = dedup_find(&d, 7, TOK_A, sizeof TOK_A, 100 + DEDUP_LIFETIME_S - 1);
  assert_non_null(f);
  assert_int_equal(f->kind, REPLY_OWNED);
  assert_int_equal(f->len, 100);
  assert_int_equal(f->body[99], 0xaa);
  /* Same MID, other token: another message. Other MID: another one. */
  assert_null(dedup_find(&d, 7, TOK_B, sizeof TOK_B, 101));
  assert_null(dedup_find(&d, 8, TOK_A, sizeof TOK_A, 101));
  /* Past EXCHANGE_LIFETIME it is gone, and its bytes with it. */
  assert_null(dedup_find(&d, 7, TOK_A, sizeof TOK_A, 100 + DEDUP_LIFETIME_S));
  assert_int_equal(b.used, 0);
  dedup_clear(&d);
}

static void test_ring_and_replace(void **state) {
  (void)state;
  dedup_budget b = {0, 1 << 20};
  dedup d;
  dedup_init(&d, &b, 3);
  for (uint16_t mid = 1; mid <= 4; mid++) {
    reply_rec r = {.kind = REPLY_CONTINUE, .num = mid, .szx = 2};
    dedup_put(&d, mid, TOK_A, sizeof TOK_A, 10, &r);
  }
  /* Three kept: the first went. */
  assert_null(dedup_find(&d, 1, TOK_A, sizeof TOK_A, 10));
  for (uint16_t mid = 2; mid <= 4; mid++)
    assert_int_equal(dedup_find(&d, mid, TOK_A, sizeof TOK_A, 10)->num, mid);
  /* The same exchange recorded again replaces its entry. */
  reply_rec r = owned(10, 1);
  dedup_put(&d, 4, TOK_A, sizeof TOK_A, 11, &r);
  assert_int_equal(dedup_find(&d, 4, TOK_A, sizeof TOK_A, 11)->kind, REPLY_OWNED);
  assert_int_equal(dedup_find(&d, 3, TOK_A, sizeof TOK_A, 11)->num, 3);
  assert_int_equal(b.used, 10);
  dedup_clear(&d);
  assert_int_equal(b.used, 0);
}

static void test_budget(void **state) {
  (void)state;
  dedup_budget b = {0, 250};
  dedup d1, d2;
  dedup_init(&d1, &b, 8);
  dedup_init(&d2, &b, 8);
  reply_rec r = owned(200, 1);
  dedup_put(&d1, 1, TOK_A, sizeof TOK_A, 5, &r);
  assert_int_equal(b.used, 200);
  /* Another session cannot take d1's bytes: its answer is remembered as
   * "retry later", so a repeat never runs again. */
  r = owned(100, 2);
  dedup_put(&d2, 1, TOK_A, sizeof TOK_A, 5, &r);
  const reply_rec *f = dedup_find(&d2, 1, TOK_A, sizeof TOK_A, 5);
  assert_non_null(f);
  assert_int_equal(f->kind, REPLY_ERROR);
  assert_int_equal(f->err, EST_ERR_UNAVAILABLE);
  assert_int_equal(f->max_age, ENROLL_RETRY_SOON);
  assert_null(f->body);
  assert_int_equal(b.used, 200);
  /* Within one session the oldest answer makes room. */
  r = owned(150, 3);
  dedup_put(&d1, 2, TOK_A, sizeof TOK_A, 6, &r);
  assert_null(dedup_find(&d1, 1, TOK_A, sizeof TOK_A, 6));
  assert_int_equal(dedup_find(&d1, 2, TOK_A, sizeof TOK_A, 6)->len, 150);
  assert_int_equal(b.used, 150);
  dedup_clear(&d1);
  dedup_clear(&d2);
  assert_int_equal(b.used, 0);
}

static void test_off_and_limits(void **state) {
  (void)state;
  dedup_budget b = {0, 1000};
  dedup d;
  int route;
  dedup_init(&d, &b, 0); /* dedup_entries 0: no repeats answered, */
  reply_rec r = owned(10, 1);
  r.route = &route;
  dedup_put(&d, 1, TOK_A, sizeof TOK_A, 1, &r);
  assert_null(r.body);
  assert_null(dedup_find(&d, 1, TOK_A, sizeof TOK_A, 1));
  /* but the latest body is kept for its Block2 blocks */
  assert_non_null(dedup_find_body(&d, &(body_key){.owner = &route}, 1));
  assert_int_equal(b.used, 10);
  reply_rec cont = {.kind = REPLY_CONTINUE, .route = &route};
  dedup_put(&d, 2, TOK_A, sizeof TOK_A, 1, &cont);
  assert_non_null(dedup_find_body(&d, &(body_key){.owner = &route}, 1));
  r = owned(20, 2);
  r.route = &route;
  dedup_put(&d, 3, TOK_A, sizeof TOK_A, 1, &r);
  assert_int_equal(dedup_find_body(&d, &(body_key){.owner = &route}, 1)->len, 20);
  assert_int_equal(b.used, 20);
  dedup_clear(&d);
  assert_int_equal(b.used, 0);
  dedup_init(&d, &b, 99); /* capped */
  assert_int_equal(d.cap, DEDUP_SESSION_MAX);
  uint8_t long_tok[DEDUP_TOKEN_MAX + 1] = {0};
  r = owned(10, 1);
  dedup_put(&d, 1, long_tok, sizeof long_tok, 1, &r);
  assert_null(dedup_find(&d, 1, long_tok, sizeof long_tok, 1));
  reply_rec none = {0};
  dedup_put(&d, 2, TOK_A, sizeof TOK_A, 1, &none);
  assert_null(dedup_find(&d, 2, TOK_A, sizeof TOK_A, 1));
  /* An empty token is a token too. */
  reply_rec sep = {.kind = REPLY_SEPARATE};
  dedup_put(&d, 3, NULL, 0, 1, &sep);
  assert_int_equal(dedup_find(&d, 3, NULL, 0, 1)->kind, REPLY_SEPARATE);
  assert_int_equal(b.used, 0);
  dedup_clear(&d);
  reply_rec_clear(NULL);
}

/* Block2 follow-ups find the newest body to their resource; the final
 * Block1 block sent again finds the answer to that block of that transfer. */
static void test_body_and_final(void **state) {
  (void)state;
  dedup_budget b = {0, 1000};
  dedup d;
  int sen, skg;
  dedup_init(&d, &b, 8);
  assert_null(dedup_find_body(&d, &(body_key){.owner = &sen}, 1));
  reply_rec r = owned(10, 1);
  r.route = &sen;
  r.b1_end = 3; /* answered block 2, the last one */
  r.b1.owner = &sen;
  r.b1.tagged = true;
  r.b1.tag_len = 2;
  memcpy(r.b1.tag, "T1", 2);
  dedup_put(&d, 1, TOK_A, sizeof TOK_A, 5, &r);
  r = owned(30, 2);
  r.route = &sen;
  dedup_put(&d, 2, TOK_B, sizeof TOK_B, 5, &r); /* same second, newer */
  r = owned(40, 3);
  r.route = &skg;
  dedup_put(&d, 3, TOK_B, sizeof TOK_B, 6, &r);
  reply_rec e = {.kind = REPLY_ERROR, .err = EST_ERR_BAD_CSR, .route = &sen};
  dedup_put(&d, 4, TOK_B, sizeof TOK_B, 7, &e);
  assert_int_equal(dedup_find_body(&d, &(body_key){.owner = &sen}, 7)->len, 30);
  assert_int_equal(dedup_find_body(&d, &(body_key){.owner = &skg}, 7)->len, 40);
  /* The request's Request-Tag picks the older answer to that transfer,
   * then its token. */
  body_key want = {.owner = &sen, .tagged = true, .tag_len = 2};
  memcpy(want.tag, "T1", 2);
  assert_int_equal(dedup_find_body(&d, &want, 7)->len, 10);
  body_key by_tok = {.owner = &sen, .token_len = sizeof TOK_A};
  memcpy(by_tok.token, TOK_A, sizeof TOK_A);
  assert_int_equal(dedup_find_body(&d, &by_tok, 7)->len, 10);
  want.tag[0] = 'X';
  assert_int_equal(dedup_find_body(&d, &want, 7)->len, 30);

  body_key k = {.owner = &sen, .tagged = true, .tag_len = 2};
  memcpy(k.tag, "T1", 2);
  const reply_rec *f = dedup_find_final(&d, &k, 2, 7);
  assert_non_null(f);
  assert_int_equal(f->len, 10);
  assert_null(dedup_find_final(&d, &k, 1, 7));
  assert_null(dedup_find_final(&d, &k, 3, 7));
  k.tag[1] = '2';
  assert_null(dedup_find_final(&d, &k, 2, 7));
  /* Over budget: the bytes go, what the answer answered stays. */
  dedup_budget tiny = {0, 5};
  dedup t;
  dedup_init(&t, &tiny, 8);
  r = owned(10, 4);
  r.route = &sen;
  r.separate = true;
  r.b1_end = 1;
  r.b1.owner = &sen;
  dedup_put(&t, 9, TOK_A, sizeof TOK_A, 1, &r);
  f = dedup_find(&t, 9, TOK_A, sizeof TOK_A, 1);
  assert_non_null(f);
  assert_int_equal(f->kind, REPLY_ERROR);
  assert_true(f->separate);
  assert_ptr_equal(f->route, &sen);
  assert_int_equal(f->b1_end, 1);
  assert_null(dedup_find_body(&t, &(body_key){.owner = &sen}, 1));
  dedup_clear(&t);
  /* Expired entries are found by neither. */
  assert_null(dedup_find_body(&d, &(body_key){.owner = &sen}, 5 + DEDUP_LIFETIME_S + 2));
  assert_null(dedup_find_final(&d, &k, 2, 5 + DEDUP_LIFETIME_S + 2));
  assert_int_equal(b.used, 0);
  dedup_clear(&d);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_find_and_lifetime),
    cmocka_unit_test(test_ring_and_replace),
    cmocka_unit_test(test_budget),
    cmocka_unit_test(test_off_and_limits),
    cmocka_unit_test(test_body_and_final),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
