/* The error enum: every code has a distinct name and message. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/est_err.h"

static void test_every_code_named(void **state) {
  (void)state;
  for (int a = 0; a > EST_ERR__LAST; a--) {
    assert_string_not_equal(est_err_name((est_err)a), "UNKNOWN");
    assert_string_not_equal(est_strerror((est_err)a), "unknown error");
    for (int b = a - 1; b > EST_ERR__LAST; b--) {
      assert_string_not_equal(est_err_name((est_err)a), est_err_name((est_err)b));
      assert_string_not_equal(est_strerror((est_err)a), est_strerror((est_err)b));
    }
  }
}

static void test_unknown_values(void **state) {
  (void)state;
  assert_string_equal(est_err_name(EST_ERR__LAST), "UNKNOWN");
  assert_string_equal(est_err_name((est_err)1), "UNKNOWN");
  assert_string_equal(est_strerror((est_err)-1000), "unknown error");
  assert_string_equal(est_err_name(EST_OK), "OK");
  assert_string_equal(est_err_name(EST_ERR_TOO_LARGE), "TOO_LARGE");
}

/* Values are a wire contract (logs, JSON): they never move. */
static void test_values_stable(void **state) {
  (void)state;
  assert_int_equal(EST_ERR_NOMEM, -1);
  assert_int_equal(EST_ERR_BAD_CSR, -6);
  assert_int_equal(EST_ERR_POP_LINKING, -13);
  assert_int_equal(EST_ERR_PENDING, -20);
  assert_int_equal(EST_ERR_SCHEMA, -33);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_every_code_named),
    cmocka_unit_test(test_unknown_values),
    cmocka_unit_test(test_values_stable),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
