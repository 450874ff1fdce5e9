/* The error enum (common/est_err.h). Its values are a wire contract: they
 * travel in logs and in the control protocol's JSON replies (estctl,
 * $CONTROL/est-coaps/v1), so every value is pinned here, with its name, and
 * every value has a non-empty message of its own. */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/est_err.h"

#define UNKNOWN_NAME "UNKNOWN"
#define UNKNOWN_MSG "unknown error"

/* One row per value, in order: the enum constant, the number it must keep
 * and the name est_err_name() gives it (the identifier without EST_ERR_). */
struct pin {
  est_err code;
  int wire;
  const char *name;
};

#define PIN(sym, wire) {EST_ERR_##sym, wire, #sym}

static const struct pin pins[] = {
    {EST_OK, 0, "OK"},
    PIN(NOMEM, -1),
    PIN(INVALID, -2),
    PIN(TOO_LARGE, -3),
    PIN(IO, -4),
    PIN(CONFIG, -5),
    PIN(BAD_CSR, -6),
    PIN(CSR_SIGNATURE, -7),
    PIN(CONTENT_FORMAT, -8),
    PIN(NOT_ACCEPTABLE, -9),
    PIN(METHOD, -10),
    PIN(UNAUTHENTICATED, -11),
    PIN(FORBIDDEN, -12),
    PIN(POP_LINKING, -13),
    PIN(SUBJECT_MISMATCH, -14),
    PIN(CA_REQUEST, -15),
    PIN(NOT_FOUND, -16),
    PIN(INCOMPLETE, -17),
    PIN(BAD_REQUEST, -18),
    PIN(PKI, -19),
    PIN(PENDING, -20),
    PIN(UNAVAILABLE, -21),
    PIN(INTERNAL, -22),
    PIN(MALFORMED, -23),
    PIN(TLS, -24),
    PIN(ABI, -25),
    PIN(KEY_MISMATCH, -26),
    PIN(ADDR_IN_USE, -27),
    PIN(REJECTED, -28),
    PIN(EXISTS, -29),
    PIN(STATE, -30),
    PIN(BUSY, -31),
    PIN(STORE, -32),
    PIN(SCHEMA, -33),
};

#define NPINS (sizeof pins / sizeof pins[0])

/* EST_ERR__LAST sits one below the last code, so the values are
 * 0 .. EST_ERR__LAST + 1. A value appended to est_err.h moves the sentinel
 * and stops the build here until it gets its row above. */
_Static_assert(NPINS == (size_t)-(int)EST_ERR__LAST,
               "every est_err value needs a row in pins[]");

/* Each row: the constant still has its number and its name. */
static void test_values_pinned(void **state) {
  (void)state;
  for (size_t i = 0; i < NPINS; i++) {
    const struct pin *p = &pins[i];
    /* Rows are dense and in order, so row i is the value -i. */
    assert_int_equal(p->wire, -(int)i);
    if ((int)p->code != p->wire)
      fail_msg("EST_ERR_%s is %d, pinned at %d", p->name, (int)p->code,
               p->wire);
    assert_string_equal(est_err_name(p->code), p->name);
  }
}

/* The whole range by the sentinel, independent of the table: every value
 * has a real name and message, none empty, none shared with another. */
static void test_range_named(void **state) {
  (void)state;
  for (int a = 0; a > EST_ERR__LAST; a--) {
    const char *name = est_err_name((est_err)a);
    const char *msg = est_strerror((est_err)a);
    assert_non_null(name);
    assert_non_null(msg);
    assert_true(name[0] != '\0');
    assert_true(msg[0] != '\0');
    assert_string_not_equal(name, UNKNOWN_NAME);
    assert_string_not_equal(msg, UNKNOWN_MSG);
    /* The table covers the value: row -a is this code. */
    assert_int_equal((int)pins[-a].code, a);
    for (int b = a - 1; b > EST_ERR__LAST; b--) {
      if (strcmp(name, est_err_name((est_err)b)) == 0)
        fail_msg("values %d and %d share the name '%s'", a, b, name);
      if (strcmp(msg, est_strerror((est_err)b)) == 0)
        fail_msg("values %d and %d share the message '%s'", a, b, msg);
    }
  }
}

/* Anything outside the range, the sentinel included, gets the defined
 * "unknown" strings, never NULL. */
static void test_out_of_range(void **state) {
  (void)state;
  const int outside[] = {
      EST_ERR__LAST, EST_ERR__LAST - 1, -1000, 1, 2, 1000, INT_MAX, INT_MIN,
  };
  for (size_t i = 0; i < sizeof outside / sizeof outside[0]; i++) {
    est_err e = (est_err)outside[i];
    assert_non_null(est_err_name(e));
    assert_non_null(est_strerror(e));
    assert_string_equal(est_err_name(e), UNKNOWN_NAME);
    assert_string_equal(est_strerror(e), UNKNOWN_MSG);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_values_pinned),
      cmocka_unit_test(test_range_named),
      cmocka_unit_test(test_out_of_range),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
