/* Identity/PoP linking (RFC 7030 §3.5, RFC 9148 §3, docs/decisions.md §9). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "plugin/est/pop.h"

/* Channel bindings and their base64 (RFC 4648 §4), computed with Python's
 * base64.b64encode. The tls-unique value has '+' and '/' in its base64. */
static const uint8_t uniq[12] = {0xfb, 0xff, 0x3e, 0x00, 0x01, 0x02,
                                 0x03, 0x04, 0x05, 0x06, 0x07, 0x08};
#define UNIQ_B64 "+/8+AAECAwQFBgcI"
static const uint8_t expo[32] = {
    0xc8, 0xed, 0x12, 0x37, 0x5c, 0x81, 0xa6, 0xcb, 0xf0, 0x15, 0x3a,
    0x5f, 0x84, 0xa9, 0xce, 0xf3, 0x18, 0x3d, 0x62, 0x87, 0xac, 0xd1,
    0xf6, 0x1b, 0x40, 0x65, 0x8a, 0xaf, 0xd4, 0xf9, 0x1e, 0x43};
#define EXPO_B64 "yO0SN1yBpsvwFTpfhKnO8xg9Yoes0fYbQGWKr9T5HkM="

enum chal { C_ABSENT, C_UNIQUE, C_EXPORTER, C_MISMATCH, C_WRONG_LEN, C_EMPTY, C__N };

static const char *chal_str(enum chal c) {
  switch (c) {
  case C_ABSENT:
    return NULL;
  case C_UNIQUE:
    return UNIQ_B64;
  case C_EXPORTER:
    return EXPO_B64;
  case C_MISMATCH:
    return "+/8+AAECAwQFBgcJ"; /* last char differs */
  case C_WRONG_LEN:
    return "+/8+AAECAwQFBgc"; /* one char short */
  case C_EMPTY:
    return "";
  case C__N:
    break;
  }
  return NULL;
}

static void test_mode_matrix(void **state) {
  (void)state;
  for (int m = POP_OFF; m < POP__MAX; m++) {
    for (int c = 0; c < C__N; c++) {
      est_err want;
      if (m == POP_OFF)
        want = EST_OK;
      else if (c == C_ABSENT)
        want = m == POP_VERIFY ? EST_OK : EST_ERR_POP_LINKING;
      else if (c == C_UNIQUE || c == C_EXPORTER)
        want = EST_OK;
      else
        want = EST_ERR_POP_LINKING;
      est_err got = pop_check((pop_mode)m, chal_str((enum chal)c), uniq,
                              sizeof uniq, expo, sizeof expo);
      if (got != want)
        fail_msg("mode %d challenge %d: got %d, want %d", m, c, got, want);
    }
  }
}

/* Each binding counts only when the session has it. */
static void test_binding_presence(void **state) {
  (void)state;
  for (int m = POP_VERIFY; m < POP__MAX; m++) {
    pop_mode mode = (pop_mode)m;
    /* DTLS 1.2: only tls-unique */
    assert_int_equal(pop_check(mode, UNIQ_B64, uniq, sizeof uniq, NULL, 0),
                     EST_OK);
    assert_int_equal(pop_check(mode, EXPO_B64, uniq, sizeof uniq, NULL, 0),
                     EST_ERR_POP_LINKING);
    /* DTLS 1.3: only tls-exporter */
    assert_int_equal(pop_check(mode, EXPO_B64, NULL, 0, expo, sizeof expo),
                     EST_OK);
    assert_int_equal(pop_check(mode, UNIQ_B64, NULL, 0, expo, sizeof expo),
                     EST_ERR_POP_LINKING);
    /* a pointer with length 0 is absent too */
    assert_int_equal(pop_check(mode, "", uniq, 0, expo, 0),
                     EST_ERR_POP_LINKING);
    /* no binding at all: a present challenge cannot match */
    assert_int_equal(pop_check(mode, UNIQ_B64, NULL, 0, NULL, 0),
                     EST_ERR_POP_LINKING);
  }
  assert_int_equal(pop_check(POP_VERIFY, NULL, NULL, 0, NULL, 0), EST_OK);
  assert_int_equal(pop_check(POP_REQUIRE, NULL, NULL, 0, NULL, 0),
                   EST_ERR_POP_LINKING);
  assert_int_equal(pop_check(POP_OFF, "junk", NULL, 0, NULL, 0), EST_OK);
}

/* The value must be exactly padded standard base64: no trimming, no
 * base64url, no unpadded form, no non-canonical trailing bits. */
static void test_exact_match_only(void **state) {
  (void)state;
  static const char *const bad[] = {
      "-_8-AAECAwQFBgcI",                             /* base64url */
      "+/8+AAECAwQFBgcI\n",                           /* trailing newline */
      " +/8+AAECAwQFBgcI",                            /* leading space */
      "+/8+AAECAwQFBgcI ",                            /* trailing space */
      "+/8+AAECAwQFBgcI=",                            /* extra padding */
      "+/8+aaecawqfbgci",                             /* case */
      "yO0SN1yBpsvwFTpfhKnO8xg9Yoes0fYbQGWKr9T5HkM",  /* unpadded */
      "yO0SN1yBpsvwFTpfhKnO8xg9Yoes0fYbQGWKr9T5HkN=", /* non-canonical bits */
      "yO0SN1yBpsvwFTpfhKnO8xg9Yoes0fYbQGWKr9T5HkM==",
      "yO0SN1yBpsvwFTpfhKnO\n8xg9Yoes0fYbQGWKr9T5HkM=",
      ("+/8+AAECAwQFBgcI" EXPO_B64),                  /* both glued */
      "xO0SN1yBpsvwFTpfhKnO8xg9Yoes0fYbQGWKr9T5HkM=", /* first char */
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    assert_int_equal(
        pop_check(POP_VERIFY, bad[i], uniq, sizeof uniq, expo, sizeof expo),
        EST_ERR_POP_LINKING);
    assert_int_equal(
        pop_check(POP_REQUIRE, bad[i], uniq, sizeof uniq, expo, sizeof expo),
        EST_ERR_POP_LINKING);
  }
}

static void test_bad_args(void **state) {
  (void)state;
  uint8_t big[65] = {0};

  assert_int_equal(pop_check(POP__MAX, UNIQ_B64, uniq, sizeof uniq, NULL, 0),
                   EST_ERR_INVALID);
  assert_int_equal(pop_check((pop_mode)-1, NULL, NULL, 0, NULL, 0),
                   EST_ERR_INVALID);
  assert_int_equal(pop_check((pop_mode)99, NULL, NULL, 0, NULL, 0),
                   EST_ERR_INVALID);
  /* a binding far beyond any real one is a caller bug */
  assert_int_equal(pop_check(POP_VERIFY, "x", big, sizeof big, NULL, 0),
                   EST_ERR_INVALID);
}

static void test_mode_parse(void **state) {
  (void)state;
  pop_mode m = POP__MAX;

  assert_int_equal(pop_mode_parse("off", &m), EST_OK);
  assert_int_equal(m, POP_OFF);
  assert_int_equal(pop_mode_parse("verify", &m), EST_OK);
  assert_int_equal(m, POP_VERIFY);
  assert_int_equal(pop_mode_parse("require", &m), EST_OK);
  assert_int_equal(m, POP_REQUIRE);

  static const char *const bad[] = {"",        "Off",       "VERIFY",
                                    "verify ", " require",  "requir",
                                    "required", "on",       "1",
                                    "off\n",   "off-"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    m = POP_REQUIRE;
    assert_int_equal(pop_mode_parse(bad[i], &m), EST_ERR_INVALID);
    assert_int_equal(m, POP_REQUIRE);
  }
  assert_int_equal(pop_mode_parse(NULL, &m), EST_ERR_INVALID);
  assert_int_equal(pop_mode_parse("off", NULL), EST_ERR_INVALID);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_mode_matrix),
      cmocka_unit_test(test_binding_presence),
      cmocka_unit_test(test_exact_match_only),
      cmocka_unit_test(test_bad_args),
      cmocka_unit_test(test_mode_parse),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
