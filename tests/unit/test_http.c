/* RFC 7030 wire details (proto/http.h, docs/decisions.md §16, §17). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "proto/http.h"

static void test_ops(void **state) {
  (void)state;
  assert_string_equal(proto_http_op(EST_FN_CRTS), "cacerts");
  assert_string_equal(proto_http_op(EST_FN_SEN), "simpleenroll");
  assert_string_equal(proto_http_op(EST_FN_SREN), "simplereenroll");
  assert_string_equal(proto_http_op(EST_FN_ATT), "csrattrs");
  assert_string_equal(proto_http_op(EST_FN_SKG), "serverkeygen");
  assert_null(proto_http_op(EST_FN_SKC)); /* no RFC 7030 operation */
  assert_null(proto_http_op(EST_FN__MAX));
}

static void test_route(void **state) {
  (void)state;
  est_fn fn;
  const char *l;
  size_t n;
  for (int i = 0; i < EST_FN__MAX; i++) {
    const char *op = proto_http_op((est_fn)i);
    if (!op)
      continue;
    char path[128];
    snprintf(path, sizeof path, "/.well-known/est/%s", op);
    assert_int_equal(proto_http_route(path, &fn, &l, &n), EST_OK);
    assert_int_equal(fn, i);
    assert_null(l);
    assert_int_equal(n, 0);
    snprintf(path, sizeof path, "/.well-known/est/arbitraryLabel1/%s", op);
    assert_int_equal(proto_http_route(path, &fn, &l, &n), EST_OK);
    assert_int_equal(fn, i);
    assert_int_equal(n, strlen("arbitraryLabel1"));
    assert_memory_equal(l, "arbitraryLabel1", n);
  }
  const char *bad[] = {
      "/.well-known/est/",        "/.well-known/est/fullcmc", "/est/cacerts",
      "/.well-known/est//cacerts", "/.well-known/est/a/b/cacerts",
      "/.well-known/est/cacerts/", "/.well-known/est/CACERTS", "/.well-known/estcacerts",
      "/.well-known/est/simpleenroll?x", "", "/.well-known/est/skc",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    assert_int_equal(proto_http_route(bad[i], &fn, &l, &n), EST_ERR_NOT_FOUND);
  char label[PROTO_LABEL_MAX + 2];
  memset(label, 'a', sizeof label - 1);
  label[sizeof label - 1] = '\0';
  char path[256];
  snprintf(path, sizeof path, "/.well-known/est/%s/cacerts", label);
  assert_int_equal(proto_http_route(path, &fn, &l, &n), EST_ERR_NOT_FOUND);
  label[PROTO_LABEL_MAX] = '\0';
  snprintf(path, sizeof path, "/.well-known/est/%s/cacerts", label);
  assert_int_equal(proto_http_route(path, &fn, &l, &n), EST_OK);
  assert_int_equal(proto_http_route(NULL, &fn, &l, &n), EST_ERR_NOT_FOUND);
}

static void test_type(void **state) {
  (void)state;
  assert_true(proto_http_type_is("application/pkcs10", "application/pkcs10"));
  assert_true(proto_http_type_is(" Application/PKCS10 ", "application/pkcs10"));
  assert_true(proto_http_type_is("application/pkcs10; charset=x", "application/pkcs10"));
  assert_true(proto_http_type_is("application/pkcs10;x", "application/pkcs10"));
  assert_false(proto_http_type_is("application/pkcs10x", "application/pkcs10"));
  assert_false(proto_http_type_is("application/pkcs7-mime", "application/pkcs10"));
  assert_false(proto_http_type_is("", "application/pkcs10"));
  assert_false(proto_http_type_is(NULL, "application/pkcs10"));
}

static void test_items(void **state) {
  (void)state;
  const char *v = " MIIB,, MIIC ,\t,MIID\t", *it;
  size_t n;
  const char *want[] = {"MIIB", "MIIC", "MIID"};
  for (int i = 0; i < 3; i++) {
    assert_true(proto_http_next_item(&v, &it, &n));
    assert_int_equal(n, strlen(want[i]));
    assert_memory_equal(it, want[i], n);
  }
  assert_false(proto_http_next_item(&v, &it, &n));
  v = " , ,\t";
  assert_false(proto_http_next_item(&v, &it, &n));
  v = "";
  assert_false(proto_http_next_item(&v, &it, &n));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_ops),
      cmocka_unit_test(test_route),
      cmocka_unit_test(test_type),
      cmocka_unit_test(test_items),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
