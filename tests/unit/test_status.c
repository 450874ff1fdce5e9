/* The one error-to-CoAP-code table (docs/decisions.md §4). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "plugin/est/status.h"

static void test_error_codes(void **state) {
  (void)state;
  /* docs/decisions.md §4. */
  assert_int_equal(status_coap(EST_OK), 0);
  assert_int_equal(status_coap(EST_ERR_BAD_CSR), 400);
  assert_int_equal(status_coap(EST_ERR_CSR_SIGNATURE), 400);
  assert_int_equal(status_coap(EST_ERR_BAD_REQUEST), 400);
  assert_int_equal(status_coap(EST_ERR_UNAUTHENTICATED), 401);
  assert_int_equal(status_coap(EST_ERR_FORBIDDEN), 403);
  assert_int_equal(status_coap(EST_ERR_POP_LINKING), 403);
  assert_int_equal(status_coap(EST_ERR_SUBJECT_MISMATCH), 403);
  assert_int_equal(status_coap(EST_ERR_CA_REQUEST), 403);
  assert_int_equal(status_coap(EST_ERR_REJECTED), 403);
  assert_int_equal(status_coap(EST_ERR_NOT_FOUND), 404);
  assert_int_equal(status_coap(EST_ERR_METHOD), 405);
  assert_int_equal(status_coap(EST_ERR_NOT_ACCEPTABLE), 406);
  assert_int_equal(status_coap(EST_ERR_INCOMPLETE), 408);
  assert_int_equal(status_coap(EST_ERR_TOO_LARGE), 413);
  assert_int_equal(status_coap(EST_ERR_CONTENT_FORMAT), 415);
  assert_int_equal(status_coap(EST_ERR_PENDING), 503);
  assert_int_equal(status_coap(EST_ERR_BUSY), 503);
  assert_int_equal(status_coap(EST_ERR_NOMEM), 500);
  assert_int_equal(status_coap(EST_ERR_PKI), 500);
  assert_int_equal(status_coap((est_err)-999), 500);
  /* Never a success code for an error, never 2.01 (RC-1). */
  for (int e = -1; e > EST_ERR__LAST; e--)
    assert_true(status_coap((est_err)e) >= 400);
  assert_int_equal(STATUS_COAP_PDU(403), (4 << 5) | 3);
  assert_int_equal(STATUS_COAP_PDU(205), (2 << 5) | 5);
}

/* HTTPS EST (docs/decisions.md §16, RFC 7030 §4.2.3). */
static void test_http_codes(void **state) {
  (void)state;
  assert_int_equal(status_http(EST_OK), 0);
  assert_int_equal(status_http(EST_ERR_PENDING), 202);
  assert_int_equal(status_http(EST_ERR_BUSY), 503);
  assert_int_equal(status_http(EST_ERR_UNAVAILABLE), 503);
  /* RFC 9110 §15.5.2: no 401 without an HTTP auth scheme to offer. */
  assert_int_equal(status_http(EST_ERR_UNAUTHENTICATED), 403);
  assert_int_equal(status_http(EST_ERR_INCOMPLETE), 400);
  assert_int_equal(status_http(EST_ERR_BAD_REQUEST), 400);
  assert_int_equal(status_http(EST_ERR_FORBIDDEN), 403);
  assert_int_equal(status_http(EST_ERR_REJECTED), 403);
  assert_int_equal(status_http(EST_ERR_NOT_FOUND), 404);
  assert_int_equal(status_http(EST_ERR_METHOD), 405);
  assert_int_equal(status_http(EST_ERR_TOO_LARGE), 413);
  assert_int_equal(status_http(EST_ERR_CONTENT_FORMAT), 415);
  assert_int_equal(status_http(EST_ERR_INTERNAL), 500);
  /* Only "waiting for an operator" is a 2xx. */
  for (int e = -1; e > EST_ERR__LAST; e--)
    assert_true(status_http((est_err)e) >= 400 || (est_err)e == EST_ERR_PENDING);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_error_codes),
    cmocka_unit_test(test_http_codes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
