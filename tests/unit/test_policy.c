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
  policy_input in = {.fn = fn, .cls = cls, .status = st};
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
    policy_input in = {.fn = fn, .cls = PKI_CLIENT_LDEVID, .revoked = true};
    assert_int_equal(policy_decide(&in, diag, sizeof diag), EST_ERR_FORBIDDEN);
    assert_string_equal(diag, "client certificate revoked");
    in.revoked = false;
    assert_int_equal(policy_decide(&in, diag, sizeof diag), EST_OK);
  }
}

/* HTTPS EST (docs/decisions.md §16): cacerts and csrattrs are open to
 * anyone (RFC 7030 §4.1.1, §4.5.1); without a certificate only
 * simpleenroll, and only when https_anonymous lets an operator decide. */
static void test_https(void **state) {
  (void)state;
  char diag[128];
  for (est_fn fn = EST_FN_CRTS; fn < EST_FN__MAX; fn++) {
    bool open = fn == EST_FN_CRTS || fn == EST_FN_ATT;
    for (int anon = 0; anon < 2; anon++) {
      policy_input in = {.fn = fn, .cls = PKI_CLIENT_ANONYMOUS, .https = true,
                         .anonymous_enroll = anon};
      diag[0] = '\0';
      est_err want = open || (anon && fn == EST_FN_SEN) ? EST_OK : EST_ERR_UNAUTHENTICATED;
      assert_int_equal(policy_decide(&in, diag, sizeof diag), want);
      if (want != EST_OK)
        assert_non_null(strstr(diag, "client certificate is required"));
      /* An untrusted or revoked certificate may still read the CA. */
      in.cls = PKI_CLIENT_UNKNOWN;
      assert_int_equal(policy_decide(&in, diag, sizeof diag),
                       open ? EST_OK : EST_ERR_FORBIDDEN);
      in.cls = PKI_CLIENT_LDEVID;
      in.revoked = true;
      assert_int_equal(policy_decide(&in, diag, sizeof diag),
                       open ? EST_OK : EST_ERR_FORBIDDEN);
    }
  }
  /* Over CoAP, nothing changes: an anonymous class never gets in. */
  policy_input in = {.fn = EST_FN_CRTS, .cls = PKI_CLIENT_ANONYMOUS};
  assert_int_equal(policy_decide(&in, diag, sizeof diag), EST_ERR_UNAUTHENTICATED);
  /* sren needs our certificate over HTTPS too. */
  in = (policy_input){.fn = EST_FN_SREN, .cls = PKI_CLIENT_IDEVID, .https = true};
  assert_int_equal(policy_decide(&in, diag, sizeof diag), EST_ERR_FORBIDDEN);
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
    cmocka_unit_test(test_https),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
