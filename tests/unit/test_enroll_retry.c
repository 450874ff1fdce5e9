/* est-enroll retry decisions (RFC 9148 §4.7, RFC 7252 §5.10.5) and
 * Max-Age decoding: a pure function, so every case runs without a network. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "tools/enroll/ops.h"
#include "tools/enroll/retry.h"

static void success_codes(void **state) {
  (void)state;
  ec_retry r = ec_retry_decide(204, false, 0, 0, 300);
  assert_int_equal(r.action, EC_RETRY_DONE);
  r = ec_retry_decide(205, true, 5, 1000, 0);
  assert_int_equal(r.action, EC_RETRY_DONE);
  /* RFC 9148 pins 2.04/2.05; draft-04's 2.01 is not success here. */
  r = ec_retry_decide(201, false, 0, 0, 300);
  assert_int_equal(r.action, EC_RETRY_FAILED);
}

static void rejected_codes(void **state) {
  (void)state;
  assert_int_equal(ec_retry_decide(403, false, 0, 0, 300).action, EC_RETRY_REJECTED);
  assert_int_equal(ec_retry_decide(401, true, 60, 0, 300).action, EC_RETRY_REJECTED);
  /* Max-Age on a 4.03 changes nothing. */
  assert_int_equal(ec_retry_decide(403, true, 1, 0, 300).action, EC_RETRY_REJECTED);
}

static void other_errors_are_final(void **state) {
  (void)state;
  static const unsigned codes[] = {400, 402, 404, 405, 406, 408, 412, 413, 415,
                                   500, 501, 502, 504, 505, 0, 231, 999};
  for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
    ec_retry r = ec_retry_decide(codes[i], true, 10, 0, 3600);
    assert_int_equal(r.action, EC_RETRY_FAILED);
    assert_int_equal(r.wait_s, 0);
  }
}

static void wait_uses_max_age(void **state) {
  (void)state;
  ec_retry r = ec_retry_decide(503, true, 7, 0, 300);
  assert_int_equal(r.action, EC_RETRY_WAIT);
  assert_int_equal(r.wait_s, 7);
  r = ec_retry_decide(503, true, 120, 100, 300);
  assert_int_equal(r.action, EC_RETRY_WAIT);
  assert_int_equal(r.wait_s, 120);
}

static void wait_default_60(void **state) {
  (void)state;
  /* RFC 7252 §5.10.5: no Max-Age means 60 s. */
  ec_retry r = ec_retry_decide(503, false, 0, 0, 300);
  assert_int_equal(r.action, EC_RETRY_WAIT);
  assert_int_equal(r.wait_s, EC_RETRY_DEFAULT_MAX_AGE);
  assert_int_equal(EC_RETRY_DEFAULT_MAX_AGE, 60);
  /* ... and the value of an absent option is ignored. */
  r = ec_retry_decide(503, false, 5, 0, 300);
  assert_int_equal(r.wait_s, 60);
}

static void max_age_zero_not_busy(void **state) {
  (void)state;
  ec_retry r = ec_retry_decide(503, true, 0, 0, 300);
  assert_int_equal(r.action, EC_RETRY_WAIT);
  assert_int_equal(r.wait_s, EC_RETRY_MIN_WAIT);
}

static void pending_when_wait_exceeds_limit(void **state) {
  (void)state;
  /* max-wait 0: the first 5.03 ends the run (exit 3). */
  assert_int_equal(ec_retry_decide(503, true, 5, 0, 0).action, EC_RETRY_PENDING);
  assert_int_equal(ec_retry_decide(503, false, 0, 0, 59).action, EC_RETRY_PENDING);
  /* Exactly fitting is still a wait; one second more is not. */
  assert_int_equal(ec_retry_decide(503, true, 10, 290, 300).action, EC_RETRY_WAIT);
  assert_int_equal(ec_retry_decide(503, true, 11, 290, 300).action, EC_RETRY_PENDING);
  /* Already past the limit. */
  assert_int_equal(ec_retry_decide(503, true, 1, 400, 300).action, EC_RETRY_PENDING);
}

static void no_overflow(void **state) {
  (void)state;
  ec_retry r = ec_retry_decide(503, true, UINT32_MAX, UINT64_MAX - 1, UINT64_MAX);
  assert_int_equal(r.action, EC_RETRY_PENDING);
  r = ec_retry_decide(503, true, UINT32_MAX, 0, UINT64_MAX);
  assert_int_equal(r.action, EC_RETRY_WAIT);
  assert_int_equal(r.wait_s, UINT32_MAX);
  r = ec_retry_decide(503, true, UINT32_MAX, 0, (uint64_t)UINT32_MAX - 1);
  assert_int_equal(r.action, EC_RETRY_PENDING);
}

static void max_age_parse(void **state) {
  (void)state;
  uint32_t v = 99;
  static const uint8_t one[] = {0x3c}, two[] = {0x01, 0x2c}, four[] = {0xff, 0xff, 0xff, 0xff},
                       lead0[] = {0x00, 0x00, 0x00, 0x05}, five[] = {0, 0, 0, 0, 1};
  /* A zero-length uint is 0 (RFC 7252 §3.2). */
  assert_true(ec_retry_parse_max_age(NULL, 0, &v));
  assert_int_equal(v, 0);
  assert_true(ec_retry_parse_max_age(one, 1, &v));
  assert_int_equal(v, 60);
  assert_true(ec_retry_parse_max_age(two, 2, &v));
  assert_int_equal(v, 300);
  assert_true(ec_retry_parse_max_age(four, 4, &v));
  assert_int_equal(v, UINT32_MAX);
  assert_true(ec_retry_parse_max_age(lead0, 4, &v));
  assert_int_equal(v, 5);
  /* Longer than 4 bytes: bad length, the option counts as absent. */
  v = 7;
  assert_false(ec_retry_parse_max_age(five, 5, &v));
  assert_int_equal(v, 7);
  assert_false(ec_retry_parse_max_age(one, 1, NULL));
  assert_false(ec_retry_parse_max_age(NULL, 2, &v));
}

static void action_names(void **state) {
  (void)state;
  assert_string_equal(ec_retry_action_name(EC_RETRY_WAIT), "wait");
  assert_string_equal(ec_retry_action_name(EC_RETRY_PENDING), "pending");
  assert_string_equal(ec_retry_action_name(EC_RETRY__MAX), "?");
}

/* The exit codes of the CLI, derived from the same decisions. */
static void exit_codes(void **state) {
  (void)state;
  assert_int_equal(ec_exit_code(EST_OK), 0);
  assert_int_equal(ec_exit_code(EST_ERR_INVALID), 2);
  assert_int_equal(ec_exit_code(EST_ERR_PENDING), 3);
  assert_int_equal(ec_exit_code(ec_code_err(403)), 4);
  assert_int_equal(ec_exit_code(ec_code_err(401)), 4);
  assert_int_equal(ec_exit_code(ec_code_err(400)), 5);
  assert_int_equal(ec_exit_code(ec_code_err(404)), 5);
  assert_int_equal(ec_exit_code(ec_code_err(500)), 5);
  assert_int_equal(ec_exit_code(ec_code_err(413)), 5);
  assert_int_equal(ec_exit_code(EST_ERR_KEY_MISMATCH), 5);
  assert_int_equal(ec_exit_code(EST_ERR_PKI), 5);
  assert_int_equal(ec_exit_code(EST_ERR_MALFORMED), 5);
  assert_int_equal(ec_exit_code(EST_ERR_TLS), 6);
  assert_int_equal(ec_exit_code(EST_ERR_IO), 1);
  assert_int_equal(ec_exit_code(EST_ERR_NOMEM), 1);
  /* Every code maps to one of the documented statuses. */
  for (int e = 0; e > EST_ERR__LAST - 1; e--) {
    int x = ec_exit_code((est_err)e);
    assert_true(x >= 0 && x <= 6);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(success_codes),
    cmocka_unit_test(rejected_codes),
    cmocka_unit_test(other_errors_are_final),
    cmocka_unit_test(wait_uses_max_age),
    cmocka_unit_test(wait_default_60),
    cmocka_unit_test(max_age_zero_not_busy),
    cmocka_unit_test(pending_when_wait_exceeds_limit),
    cmocka_unit_test(no_overflow),
    cmocka_unit_test(max_age_parse),
    cmocka_unit_test(action_names),
    cmocka_unit_test(exit_codes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
