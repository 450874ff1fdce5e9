/* Protocol mapping: Content-Format checks, Accept negotiation
 * (docs/decisions.md §3) and CA labels (RFC 7030 §3.2.2). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "proto/resource.h"

static void test_fn_table(void **state) {
  (void)state;
  /* RFC 9148 §8.2 registry values and §4.1 ct lists. */
  static const char *names[] = {"crts", "sen", "sren", "att", "skg", "skc"};
  static const char *rts[] = {"\"ace.est.crts\"", "\"ace.est.sen\"", "\"ace.est.sren\"",
                              "\"ace.est.att\"", "\"ace.est.skg\"", "\"ace.est.skc\""};
  static const char *cts[] = {"\"281 287\"", "\"281 287\"", "\"281 287\"", "285", "62", "62"};
  static const bool post[] = {false, true, true, false, true, true};
  for (int fn = 0; fn < EST_FN__MAX; fn++) {
    const est_fn_info *i = proto_fn_info((est_fn)fn);
    assert_non_null(i);
    assert_string_equal(i->name, names[fn]);
    assert_string_equal(i->rt, rts[fn]);
    assert_string_equal(i->ct, cts[fn]);
    assert_int_equal(i->post, post[fn]);
  }
  assert_null(proto_fn_info(EST_FN__MAX));
  assert_null(proto_fn_info((est_fn)-1));
}

static void test_content_format(void **state) {
  (void)state;
  for (est_fn fn = EST_FN_CRTS; fn < EST_FN__MAX; fn++) {
    bool post = proto_fn_info(fn)->post;
    assert_int_equal(proto_check_cf(fn, CF_PKCS10), post ? EST_OK : EST_ERR_CONTENT_FORMAT);
    assert_int_equal(proto_check_cf(fn, -1), post ? EST_ERR_CONTENT_FORMAT : EST_OK);
    assert_int_equal(proto_check_cf(fn, 0), EST_ERR_CONTENT_FORMAT);
    assert_int_equal(proto_check_cf(fn, CF_PKCS7_CERTS_ONLY), EST_ERR_CONTENT_FORMAT);
  }
  assert_int_equal(proto_check_cf(EST_FN__MAX, CF_PKCS10), EST_ERR_INVALID);
}

static void expect_cf(est_fn fn, int accept, size_t ca, est_err want, unsigned cf) {
  unsigned out = 0;
  assert_int_equal(proto_negotiate(fn, accept, ca, &out), want);
  if (want == EST_OK)
    assert_int_equal(out, cf);
}

static void test_negotiate(void **state) {
  (void)state;
  /* ACC-2: no Accept -> 281. */
  expect_cf(EST_FN_CRTS, -1, 2, EST_OK, 281);
  expect_cf(EST_FN_SEN, -1, 2, EST_OK, 281);
  expect_cf(EST_FN_SREN, -1, 2, EST_OK, 281);
  expect_cf(EST_FN_SEN, 281, 2, EST_OK, 281);
  expect_cf(EST_FN_SEN, 287, 2, EST_OK, 287);
  expect_cf(EST_FN_SREN, 287, 5, EST_OK, 287);
  /* ACC-6: 287 on crts only for a single-certificate bag. */
  expect_cf(EST_FN_CRTS, 287, 1, EST_OK, 287);
  expect_cf(EST_FN_CRTS, 287, 2, EST_ERR_NOT_ACCEPTABLE, 0);
  expect_cf(EST_FN_CRTS, 285, 1, EST_ERR_NOT_ACCEPTABLE, 0);
  expect_cf(EST_FN_CRTS, 0, 1, EST_ERR_NOT_ACCEPTABLE, 0);
  expect_cf(EST_FN_SEN, 62, 1, EST_ERR_NOT_ACCEPTABLE, 0);
  expect_cf(EST_FN_ATT, -1, 1, EST_OK, 285);
  expect_cf(EST_FN_ATT, 285, 1, EST_OK, 285);
  expect_cf(EST_FN_ATT, 287, 1, EST_ERR_NOT_ACCEPTABLE, 0);
  /* ACC-5: keygen answers only multipart-core. */
  expect_cf(EST_FN_SKG, -1, 1, EST_OK, 62);
  expect_cf(EST_FN_SKG, 62, 1, EST_OK, 62);
  expect_cf(EST_FN_SKC, 62, 1, EST_OK, 62);
  expect_cf(EST_FN_SKG, 281, 1, EST_ERR_NOT_ACCEPTABLE, 0);
  expect_cf(EST_FN_SKC, 287, 1, EST_ERR_NOT_ACCEPTABLE, 0);
  expect_cf(EST_FN__MAX, -1, 1, EST_ERR_INVALID, 0);
}

static void test_label_check(void **state) {
  (void)state;
  char max[PROTO_LABEL_MAX + 2];
  memset(max, 'a', PROTO_LABEL_MAX);
  max[PROTO_LABEL_MAX] = '\0';
  assert_int_equal(proto_label_check("arbitraryLabel1"), EST_OK);
  assert_int_equal(proto_label_check("a.b_c~d-e"), EST_OK);
  assert_int_equal(proto_label_check(max), EST_OK);
  max[PROTO_LABEL_MAX] = 'a';
  max[PROTO_LABEL_MAX + 1] = '\0';
  assert_int_equal(proto_label_check(max), EST_ERR_INVALID);
  assert_int_equal(proto_label_check(""), EST_ERR_INVALID);
  assert_int_equal(proto_label_check("a/b"), EST_ERR_INVALID);
  assert_int_equal(proto_label_check("a b"), EST_ERR_INVALID);
  assert_int_equal(proto_label_check(NULL), EST_ERR_INVALID);
  /* RFC 7030 §3.2.2: not an operation name. */
  assert_int_equal(proto_label_check("sen"), EST_ERR_EXISTS);
  assert_int_equal(proto_label_check("skc"), EST_ERR_EXISTS);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_fn_table),
    cmocka_unit_test(test_content_format),
    cmocka_unit_test(test_negotiate),
    cmocka_unit_test(test_label_check),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
