/* Who may do what (docs/decisions.md §5-§6). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "plugin/est/policy.h"

static est_err decide_st(est_fn fn, pki_client_class cls, pki_client_status st,
                         char *diag) {
  policy_input in = {fn, cls, st, false};
  diag[0] = '\0';
  return policy_decide(&in, diag, 128);
}

static est_err decide(est_fn fn, pki_client_class cls, char *diag) {
  return decide_st(fn, cls, PKI_STATUS_VALID, diag);
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

/* A refusal for dates says so (AUTH-5, docs/decisions.md §5). */
static void test_refusal_diagnostics(void **state) {
  (void)state;
  char diag[128];
  const struct {
    pki_client_status st;
    const char *want;
  } cases[] = {
    {PKI_STATUS_UNTRUSTED, "not from this CA"},
    {PKI_STATUS_VALID, "not from this CA"},
    {PKI_STATUS_LDEVID_EXPIRED, "client certificate has expired"},
    {PKI_STATUS_IDEVID_EXPIRED, "IDevID) has expired"},
    {PKI_STATUS_NOT_YET_VALID, "not yet valid"},
    {PKI_STATUS_REVOKED, "revoked (by its manufacturer's CRL)"},
    {PKI_STATUS__MAX, "not from this CA"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    for (est_fn fn = EST_FN_CRTS; fn < EST_FN__MAX; fn++) {
      assert_int_equal(decide_st(fn, PKI_CLIENT_UNKNOWN, cases[i].st, diag),
                       EST_ERR_FORBIDDEN);
      assert_non_null(strstr(diag, cases[i].want));
    }
  /* An accepted expired IDevID is an IDevID: sen yes, sren no. */
  assert_int_equal(decide_st(EST_FN_SEN, PKI_CLIENT_IDEVID,
                             PKI_STATUS_IDEVID_EXPIRED, diag), EST_OK);
  assert_int_equal(decide_st(EST_FN_SREN, PKI_CLIENT_IDEVID,
                             PKI_STATUS_IDEVID_EXPIRED, diag), EST_ERR_FORBIDDEN);
}

/* A revoked certificate of ours gets nothing, whatever the function. */
static void test_revoked(void **state) {
  (void)state;
  char diag[128];
  for (est_fn fn = EST_FN_CRTS; fn < EST_FN__MAX; fn++) {
    policy_input in = {fn, PKI_CLIENT_LDEVID, PKI_STATUS_VALID, true};
    assert_int_equal(policy_decide(&in, diag, sizeof diag), EST_ERR_FORBIDDEN);
    assert_string_equal(diag, "client certificate revoked");
    in.revoked = false;
    assert_int_equal(policy_decide(&in, diag, sizeof diag), EST_OK);
  }
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
    cmocka_unit_test(test_refusal_diagnostics),
    cmocka_unit_test(test_revoked),
    cmocka_unit_test(test_bad_function),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
