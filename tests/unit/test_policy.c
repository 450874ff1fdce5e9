/* Who may do what (decisions.md §5-§6). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "policy.h"

static est_err decide(est_fn fn, pki_client_class cls, char *diag) {
  policy_input in = {fn, cls};
  diag[0] = '\0';
  return policy_decide(&in, diag, 128);
}

static void test_unknown_client_gets_nothing(void **state) {
  (void)state;
  char diag[128];
  for (est_fn fn = EST_FN_CRTS; fn < EST_FN__MAX; fn++) {
    assert_int_equal(decide(fn, PKI_CLIENT_UNKNOWN, diag), EST_ERR_FORBIDDEN);
    assert_true(strlen(diag) > 0);
  }
}

static void test_ldevid_may_do_everything(void **state) {
  (void)state;
  char diag[128];
  for (est_fn fn = EST_FN_CRTS; fn < EST_FN__MAX; fn++)
    assert_int_equal(decide(fn, PKI_CLIENT_LDEVID, diag), EST_OK);
}

static void test_idevid_may_not_reenroll(void **state) {
  (void)state;
  char diag[128];
  assert_int_equal(decide(EST_FN_SEN, PKI_CLIENT_IDEVID, diag), EST_OK);
  assert_int_equal(decide(EST_FN_CRTS, PKI_CLIENT_IDEVID, diag), EST_OK);
  assert_int_equal(decide(EST_FN_ATT, PKI_CLIENT_IDEVID, diag), EST_OK);
  assert_int_equal(decide(EST_FN_SKG, PKI_CLIENT_IDEVID, diag), EST_OK);
  assert_int_equal(decide(EST_FN_SKC, PKI_CLIENT_IDEVID, diag), EST_OK);
  assert_int_equal(decide(EST_FN_SREN, PKI_CLIENT_IDEVID, diag), EST_ERR_FORBIDDEN);
  assert_non_null(strstr(diag, "re-enrollment"));
}

static void test_bad_function(void **state) {
  (void)state;
  char diag[128];
  assert_int_equal(decide(EST_FN__MAX, PKI_CLIENT_LDEVID, diag), EST_ERR_FORBIDDEN);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_unknown_client_gets_nothing),
    cmocka_unit_test(test_ldevid_may_do_everything),
    cmocka_unit_test(test_idevid_may_not_reenroll),
    cmocka_unit_test(test_bad_function),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
