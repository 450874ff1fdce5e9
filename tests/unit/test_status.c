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

/* An upstream EST server's HTTP status, as a registrar hears it
 * (docs/decisions.md §19, RFC 9148 §5). */
static void test_from_http(void **state) {
  (void)state;
  assert_int_equal(status_from_http(200), EST_OK);
  assert_int_equal(status_from_http(202), EST_ERR_PENDING);
  assert_int_equal(status_from_http(400), EST_ERR_BAD_REQUEST);
  assert_int_equal(status_from_http(401), EST_ERR_UNAUTHENTICATED);
  assert_int_equal(status_from_http(403), EST_ERR_FORBIDDEN);
  assert_int_equal(status_from_http(404), EST_ERR_NOT_FOUND);
  /* The upstream does not serve that operation to us. */
  assert_int_equal(status_from_http(405), EST_ERR_FORBIDDEN);
  assert_int_equal(status_from_http(413), EST_ERR_TOO_LARGE);
  assert_int_equal(status_from_http(415), EST_ERR_CONTENT_FORMAT);
  /* Other 4xx: the registrar's fault or unknown. */
  assert_int_equal(status_from_http(409), EST_ERR_BAD_REQUEST);
  assert_int_equal(status_from_http(422), EST_ERR_BAD_REQUEST);
  assert_int_equal(status_from_http(499), EST_ERR_BAD_REQUEST);
  /* Timeouts and rate limits: come back later. */
  assert_int_equal(status_from_http(408), EST_ERR_UNAVAILABLE);
  assert_int_equal(status_from_http(429), EST_ERR_UNAVAILABLE);
  /* Every 5xx is the upstream's trouble. */
  static const unsigned five[] = {500, 501, 502, 503, 504, 599};
  for (size_t i = 0; i < sizeof five / sizeof five[0]; i++)
    assert_int_equal(status_from_http(five[i]), EST_ERR_UNAVAILABLE);
  /* And anything that is neither a 200, a 202 nor a 4xx. */
  static const unsigned odd[] = {0, 1, 100, 201, 204, 301, 302, 399, 600, 999, 65535};
  for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++)
    assert_int_equal(status_from_http(odd[i]), EST_ERR_UNAVAILABLE);
  /* The device hears 5.03 for any 5xx, never 5.00 or 5.02 (REG-15). */
  for (unsigned h = 500; h < 600; h++)
    assert_int_equal(status_coap(status_from_http(h)), 503);
  /* Only 200 is a success, and only 202 is "waiting". */
  for (unsigned h = 0; h < 1000; h++) {
    est_err e = status_from_http(h);
    assert_true((e == EST_OK) == (h == 200));
    assert_true((e == EST_ERR_PENDING) == (h == 202));
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_error_codes),
    cmocka_unit_test(test_http_codes),
    cmocka_unit_test(test_from_http),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
