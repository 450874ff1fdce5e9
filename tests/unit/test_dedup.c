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
  dedup_init(&d, &b, 0); /* dedup_entries 0 */
  reply_rec r = owned(10, 1);
  dedup_put(&d, 1, TOK_A, sizeof TOK_A, 1, &r);
  assert_null(r.body);
  assert_null(dedup_find(&d, 1, TOK_A, sizeof TOK_A, 1));
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

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_find_and_lifetime),
    cmocka_unit_test(test_ring_and_replace),
    cmocka_unit_test(test_budget),
    cmocka_unit_test(test_off_and_limits),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
