/* Unit tests for the option-table parser (common/opts.c) and the plugin
 * descriptor's option member (include/coapd/plugin.h, ABI 1.1).
 *
 * Covered: every type stored at its offset, INT range edges and syntax,
 * ENUM and BOOL words, LIST counts and caps, repeated keys (with and
 * without line numbers), unknown keys with and without a did-you-mean hint,
 * bad values (echo capped, control characters hidden), a check callback,
 * defaults, required options, check-only runs, tables from a newer
 * publisher (larger entries), the table checker, and the help text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coapd/plugin.h"
#include "common/opts.h"

typedef struct vals {
  const char *name;
  const char *file;
  bool flag;
  long long count;
  long long neg;
  int mode;
  const char *items;
  const char *must;
} vals;

/* Refuses values that start with 'x'; says nothing for 'y'. */
static int no_x(const char *v, char *why, size_t why_len) {
  if (v[0] == 'x') {
    snprintf(why, why_len, "must not start with x");
    return -1;
  }
  return v[0] == 'y' ? -1 : 0;
}

static const char *const modes[] = {"off", "verify", "require", NULL};

static const coapd_opt entries[] = {
    {.name = "name", COAPD_OPT_STRING_IN(vals, name), .max_len = 8,
     .check = no_x, .def = "anon", .doc = "a short name"},
    {.name = "file", COAPD_OPT_PATH_IN(vals, file), .doc = "a file"},
    {.name = "flag", COAPD_OPT_BOOL_IN(vals, flag), .def = "on",
     .doc = "a switch"},
    {.name = "count", COAPD_OPT_INT_IN(vals, count), .min = 1, .max = 100,
     .def = "10", .doc = "how many"},
    {.name = "neg", COAPD_OPT_INT_IN(vals, neg), .min = LLONG_MIN,
     .max = LLONG_MAX, .doc = "any integer"},
    {.name = "mode", COAPD_OPT_ENUM_IN(vals, mode), .words = modes,
     .def = "verify", .doc = "how strict"},
    {.name = "items", COAPD_OPT_LIST_IN(vals, items), .min = 0, .max = 3,
     .item_max = 5, .max_len = 40, .doc = "up to three items"},
    {.name = "must", COAPD_OPT_STRING_IN(vals, must),
     .flags = COAPD_OPT_REQUIRED, .doc = "required"},
};

static const coapd_opt_table table = COAPD_OPT_TABLE("test", entries);

/* ---------------------------------------------------------------- helpers */

static void begin(est_opts *o, vals *v) {
  memset(v, 0, sizeof *v);
  assert_int_equal(est_opts_begin(o, &table, v, "plugin_opt_"), EST_OK);
}

/* key=value must fail with exactly @p want. */
static void expect_bad(const char *key, const char *value, const char *want) {
  est_opts o;
  vals v;
  begin(&o, &v);
  assert_int_equal(est_opts_set(&o, key, value, "t.conf", 4), EST_ERR_CONFIG);
  if (strcmp(est_opts_error(&o), want) != 0)
    fail_msg("%s=%s:\n got '%s'\nwant '%s'", key, value, est_opts_error(&o),
             want);
}

static void expect_ok(const char *key, const char *value, vals *v) {
  est_opts o;
  begin(&o, v);
  if (est_opts_set(&o, key, value, "t.conf", 4) != EST_OK)
    fail_msg("%s=%s: %s", key, value, est_opts_error(&o));
}

/* ---------------------------------------------------------------- types */

static void test_types_store(void **state) {
  (void)state;
  est_opts o;
  vals v;
  begin(&o, &v);
  assert_int_equal(est_opts_set(&o, "name", "bob", "t.conf", 1), EST_OK);
  assert_int_equal(est_opts_set(&o, "file", "a/b c.pem", "t.conf", 2), EST_OK);
  assert_int_equal(est_opts_set(&o, "flag", "off", "t.conf", 3), EST_OK);
  assert_int_equal(est_opts_set(&o, "count", "100", "t.conf", 4), EST_OK);
  assert_int_equal(est_opts_set(&o, "neg", "-42", "t.conf", 5), EST_OK);
  assert_int_equal(est_opts_set(&o, "mode", "require", "t.conf", 6), EST_OK);
  assert_int_equal(est_opts_set(&o, "items", " a , b,,c ", "t.conf", 7),
                   EST_OK);
  assert_int_equal(est_opts_set(&o, "must", "m", "t.conf", 8), EST_OK);
  assert_int_equal(est_opts_end(&o, "t.conf", 9), EST_OK);
  assert_string_equal(v.name, "bob");
  assert_string_equal(v.file, "a/b c.pem");
  assert_false(v.flag);
  assert_int_equal(v.count, 100);
  assert_int_equal(v.neg, -42);
  assert_int_equal(v.mode, 2);
  assert_string_equal(v.items, " a , b,,c ");
  assert_string_equal(v.must, "m");
  assert_string_equal(est_opts_error(&o), "");
  assert_true(est_opts_given(&o, "mode"));
  assert_false(est_opts_given(&o, "nope"));
  /* STRING/PATH values are borrowed, not copied. */
  const char *text = "abc";
  expect_ok("file", text, &v);
  assert_ptr_equal(v.file, text);
}

static void test_int(void **state) {
  (void)state;
  vals v;
  const char *good[][2] = {{"1", "1"}, {"100", "100"}, {"007", "7"},
                           {"050", "50"}};
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
    expect_ok("count", good[i][0], &v);
    assert_int_equal(v.count, strtoll(good[i][1], NULL, 10));
  }
  const char *bad[] = {"0",   "101", "-1",  "+5", " 5",  "5 ", "0x10",
                       "1e2", "",    "-",   "--1", "5.0", "１", "99999999999999999999"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char want[256];
    snprintf(want, sizeof want,
             "t.conf:4: bad value '%s' for plugin_opt_count "
             "(integer from 1 to 100)",
             bad[i]);
    expect_bad("count", bad[i], want);
  }
  /* The whole long long range, and one past either end. */
  expect_ok("neg", "-9223372036854775808", &v);
  assert_true(v.neg == LLONG_MIN);
  expect_ok("neg", "9223372036854775807", &v);
  assert_true(v.neg == LLONG_MAX);
  expect_ok("neg", "-0", &v);
  assert_true(v.neg == 0);
  expect_bad("neg", "9223372036854775808",
             "t.conf:4: bad value '9223372036854775808' for plugin_opt_neg "
             "(integer from -9223372036854775808 to 9223372036854775807)");
  expect_bad("neg", "-9223372036854775809",
             "t.conf:4: bad value '-9223372036854775809' for plugin_opt_neg "
             "(integer from -9223372036854775808 to 9223372036854775807)");
  expect_bad("neg", "18446744073709551616",
             "t.conf:4: bad value '18446744073709551616' for plugin_opt_neg "
             "(integer from -9223372036854775808 to 9223372036854775807)");
}

static void test_enum_bool(void **state) {
  (void)state;
  vals v;
  for (int i = 0; i < 3; i++) {
    expect_ok("mode", modes[i], &v);
    assert_int_equal(v.mode, i);
  }
  const char *bad[] = {"Off", "VERIFY", "", "verify ", "requir", "on"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char want[256];
    snprintf(want, sizeof want,
             "t.conf:4: bad value '%s' for plugin_opt_mode "
             "(off|verify|require)",
             bad[i]);
    expect_bad("mode", bad[i], want);
  }
  expect_ok("flag", "on", &v);
  assert_true(v.flag);
  expect_ok("flag", "off", &v);
  assert_false(v.flag);
  const char *nb[] = {"yes", "no", "ON", "1", "true", "", "on "};
  for (size_t i = 0; i < sizeof nb / sizeof nb[0]; i++) {
    char want[256];
    snprintf(want, sizeof want,
             "t.conf:4: bad value '%s' for plugin_opt_flag (on|off)", nb[i]);
    expect_bad("flag", nb[i], want);
  }
}

static void test_string_path(void **state) {
  (void)state;
  vals v;
  expect_ok("name", "12345678", &v); /* max_len 8 */
  expect_bad("name", "123456789",
             "t.conf:4: bad value '123456789' for plugin_opt_name "
             "(longer than 8 bytes)");
  expect_bad("name", "", "t.conf:4: bad value '' for plugin_opt_name (empty)");
  expect_bad("file", "", "t.conf:4: bad value '' for plugin_opt_file (empty)");
  /* The entry's check, with its reason, or a generic one. */
  expect_bad("name", "xavier",
             "t.conf:4: bad value 'xavier' for plugin_opt_name "
             "(must not start with x)");
  expect_bad("name", "yves",
             "t.conf:4: bad value 'yves' for plugin_opt_name (refused)");
  /* Without max_len the cap is EST_OPTS_VALUE_MAX. */
  char *big = malloc(EST_OPTS_VALUE_MAX + 2);
  assert_non_null(big);
  memset(big, 'p', EST_OPTS_VALUE_MAX);
  big[EST_OPTS_VALUE_MAX] = '\0';
  expect_ok("file", big, &v);
  big[EST_OPTS_VALUE_MAX] = 'p';
  big[EST_OPTS_VALUE_MAX + 1] = '\0';
  est_opts o;
  begin(&o, &v);
  assert_int_equal(est_opts_set(&o, "file", big, "t.conf", 4), EST_ERR_CONFIG);
  /* Only the first 80 bytes of the value are echoed. */
  char want[256];
  snprintf(want, sizeof want,
           "t.conf:4: bad value '%.80s' for plugin_opt_file (longer than "
           "16384 bytes)",
           big);
  assert_string_equal(est_opts_error(&o), want);
  free(big);
  /* Control characters in an echo become '?'. */
  expect_bad("count", "1\n2\t\x7f",
             "t.conf:4: bad value '1?2?" "?' for plugin_opt_count "
             "(integer from 1 to 100)");
}

static void test_list(void **state) {
  (void)state;
  vals v;
  expect_ok("items", "", &v); /* min 0: an empty list is fine */
  expect_ok("items", " , ,", &v);
  expect_ok("items", "a,bb,ccccc", &v);
  expect_ok("items", "\ta ,\tb\t, c", &v);
  expect_bad("items", "a,b,c,d",
             "t.conf:4: bad value 'a,b,c,d' for plugin_opt_items "
             "(more than 3 items)");
  expect_bad("items", "a,cccccc",
             "t.conf:4: bad value 'a,cccccc' for plugin_opt_items "
             "(an item longer than 5 bytes)");
  /* Blanks around an item do not count towards its length. */
  expect_ok("items", "  ccccc  ", &v);
  /* max_len caps the whole text, empty items and all. */
  char longlist[64], want[160];
  snprintf(longlist, sizeof longlist, "aaaaa,bbbbb,ccccc%24s", "");
  memset(longlist + 17, ',', 24); /* 41 bytes */
  snprintf(want, sizeof want,
           "t.conf:4: bad value '%s' for plugin_opt_items (longer than 40 "
           "bytes)",
           longlist);
  expect_bad("items", longlist, want);
  longlist[40] = '\0';
  expect_ok("items", longlist, &v);

  /* A list with a minimum. */
  static const coapd_opt one[] = {
      {.name = "who", .type = COAPD_OPT_LIST, .offset = 0, .min = 1, .max = 2}};
  static const coapd_opt_table t1 = COAPD_OPT_TABLE("one", one);
  est_opts o;
  assert_int_equal(est_opts_begin(&o, &t1, NULL, ""), EST_OK);
  assert_int_equal(est_opts_set(&o, "who", ",", "f", 1), EST_ERR_CONFIG);
  assert_string_equal(est_opts_error(&o),
                      "f:1: bad value ',' for who (fewer than 1 items)");

  /* The walker itself: trimmed items, empty ones reported as such. */
  est_opts_list it;
  const char *item;
  size_t len;
  const char *items[] = {"a", "", "b c", ""};
  size_t n = 0;
  est_opts_list_begin(&it, " a ,, b c ,");
  while (est_opts_list_next(&it, &item, &len)) {
    assert_true(n < 4);
    assert_int_equal(len, strlen(items[n]));
    assert_memory_equal(item, items[n], len);
    n++;
  }
  assert_int_equal(n, 4);
  est_opts_list_begin(&it, "");
  assert_false(est_opts_list_next(&it, &item, &len));
  est_opts_list_begin(&it, NULL);
  assert_false(est_opts_list_next(&it, &item, &len));
}

/* ---------------------------------------------------------------- keys */

static void test_repeated(void **state) {
  (void)state;
  est_opts o;
  vals v;
  begin(&o, &v);
  assert_int_equal(est_opts_set(&o, "count", "5", "t.conf", 7), EST_OK);
  assert_int_equal(est_opts_set(&o, "count", "5", "t.conf", 9), EST_ERR_CONFIG);
  assert_string_equal(est_opts_error(&o),
                      "t.conf:9: duplicate 'plugin_opt_count' (first set on "
                      "line 7)");
  /* Without line numbers (Mosquitto): "FILE: " and no first line. */
  begin(&o, &v);
  assert_int_equal(est_opts_set(&o, "mode", "off", "mosquitto.conf", 0),
                   EST_OK);
  assert_int_equal(est_opts_set(&o, "mode", "on", "mosquitto.conf", 0),
                   EST_ERR_CONFIG);
  assert_string_equal(est_opts_error(&o),
                      "mosquitto.conf: duplicate 'plugin_opt_mode'");
  /* A bad first value does not count as set. */
  begin(&o, &v);
  assert_int_equal(est_opts_set(&o, "count", "0", "t.conf", 1),
                   EST_ERR_CONFIG);
  assert_int_equal(est_opts_set(&o, "count", "3", "t.conf", 2), EST_OK);
  assert_int_equal(v.count, 3);
}

static void test_unknown(void **state) {
  (void)state;
  const char *cases[][2] = {
      {"cuont", "'plugin_opt_cuont'; did you mean 'plugin_opt_count'?"},
      {"counts", "'plugin_opt_counts'; did you mean 'plugin_opt_count'?"},
      {"COUNT", "'plugin_opt_COUNT'; did you mean 'plugin_opt_count'?"},
      {"moed", "'plugin_opt_moed'; did you mean 'plugin_opt_mode'?"},
      {"iterms", "'plugin_opt_iterms'; did you mean 'plugin_opt_items'?"},
      {"colour", "'plugin_opt_colour'"},
      {"x", "'plugin_opt_x'"},
      {"", "'plugin_opt_'"},
      {"plugin_opt_count", "'plugin_opt_plugin_opt_count'"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char want[256];
    snprintf(want, sizeof want, "t.conf:4: unknown option %s", cases[i][1]);
    expect_bad(cases[i][0], "1", want);
  }
  /* A long key: no hint, echoed in part; control characters hidden. */
  char key[201];
  memset(key, 'k', 200);
  key[200] = '\0';
  char want[256];
  snprintf(want, sizeof want, "t.conf:4: unknown option 'plugin_opt_%.80s'",
           key);
  expect_bad(key, "1", want);
  expect_bad("co\nunt", "1",
             "t.conf:4: unknown option 'plugin_opt_co?unt'; did you mean "
             "'plugin_opt_count'?");
  /* NULL key or value. */
  est_opts o;
  vals v;
  begin(&o, &v);
  assert_int_equal(est_opts_set(&o, NULL, "1", "t.conf", 3), EST_ERR_CONFIG);
  assert_string_equal(est_opts_error(&o),
                      "t.conf:3: option without a key or value");
  assert_int_equal(est_opts_set(&o, "count", NULL, NULL, 0), EST_ERR_CONFIG);
  assert_string_equal(est_opts_error(&o),
                      "(config): option without a key or value");
  assert_int_equal(est_opts_set(NULL, "count", "1", "t", 1), EST_ERR_INVALID);
}

static void test_suggest(void **state) {
  (void)state;
  const char *names[] = {"listen", "dtls_cert", "dtls_key", "log_level",
                         "max_idle_sessions"};
  assert_string_equal(est_opts_suggest("listne", names, 5), "listen");
  assert_string_equal(est_opts_suggest("LISTEN", names, 5), "listen");
  assert_string_equal(est_opts_suggest("dtls_crt", names, 5), "dtls_cert");
  assert_string_equal(est_opts_suggest("dtls_kye", names, 5), "dtls_key");
  assert_string_equal(est_opts_suggest("loglevel", names, 5), "log_level");
  assert_string_equal(est_opts_suggest("max_idel_sesions", names, 5),
                      "max_idle_sessions");
  /* Too far, too short to guess, or nothing to compare with. */
  assert_null(est_opts_suggest("bogus", names, 5));
  assert_null(est_opts_suggest("lis", names, 5));
  assert_null(est_opts_suggest("ab", (const char *[]){"xy"}, 1));
  assert_null(est_opts_suggest("", names, 5));
  assert_null(est_opts_suggest(NULL, names, 5));
  assert_null(est_opts_suggest("listne", NULL, 0));
  /* The closest wins; on a tie, the first. */
  assert_string_equal(est_opts_suggest("dtls_ke", names, 5), "dtls_key");
  assert_string_equal(
      est_opts_suggest("abcd", (const char *[]){"abce", "abcf"}, 2), "abce");
}

/* ---------------------------------------------------------------- runs */

static void test_defaults_required(void **state) {
  (void)state;
  est_opts o;
  vals v;
  /* A required option missing: reported at the line given to end(). */
  begin(&o, &v);
  assert_int_equal(est_opts_end(&o, "t.conf", 12), EST_ERR_CONFIG);
  assert_string_equal(est_opts_error(&o),
                      "t.conf:12: missing required option 'plugin_opt_must'");
  begin(&o, &v);
  assert_int_equal(est_opts_end(&o, "mosquitto.conf", 0), EST_ERR_CONFIG);
  assert_string_equal(
      est_opts_error(&o),
      "mosquitto.conf: missing required option 'plugin_opt_must'");

  /* Defaults fill what was not given; what was given stays. */
  begin(&o, &v);
  v.file = "caller's";
  v.neg = 77;
  assert_int_equal(est_opts_set(&o, "count", "3", "t.conf", 1), EST_OK);
  assert_int_equal(est_opts_set(&o, "must", "m", "t.conf", 2), EST_OK);
  assert_int_equal(est_opts_end(&o, "t.conf", 1), EST_OK);
  assert_string_equal(v.name, "anon");
  assert_true(v.flag);
  assert_int_equal(v.count, 3);
  assert_int_equal(v.mode, 1);
  /* No default: left as the caller set it. */
  assert_string_equal(v.file, "caller's");
  assert_int_equal(v.neg, 77);
  assert_null(v.items);
  assert_false(est_opts_given(&o, "name"));
  assert_true(est_opts_given(&o, "count"));
}

static void test_check_only(void **state) {
  (void)state;
  est_opts o;
  assert_int_equal(est_opts_begin(&o, &table, NULL, NULL), EST_OK);
  assert_int_equal(est_opts_set(&o, "count", "5", "c", 1), EST_OK);
  assert_int_equal(est_opts_set(&o, "must", "m", "c", 2), EST_OK);
  assert_int_equal(est_opts_end(&o, "c", 1), EST_OK);
  /* Without a prefix, names are shown bare. */
  assert_int_equal(est_opts_set(&o, "count", "6", "c", 3), EST_ERR_CONFIG);
  assert_string_equal(est_opts_error(&o),
                      "c:3: duplicate 'count' (first set on line 1)");
  /* Misuse. */
  assert_int_equal(est_opts_begin(NULL, &table, NULL, NULL), EST_ERR_INVALID);
  assert_int_equal(est_opts_end(NULL, "c", 1), EST_ERR_INVALID);
  assert_string_equal(est_opts_error(NULL), "");
  assert_false(est_opts_given(NULL, "count"));
}

/* What a publisher built against a newer options.h would hand over: the
 * same first members and more after them. */
typedef struct newer_opt {
  coapd_opt o;
  const char *added_later;
  long long more;
} newer_opt;

static void test_newer_entries(void **state) {
  (void)state;
  static const newer_opt newer[] = {
      {{.name = "alpha", COAPD_OPT_INT_IN(vals, count), .min = 0, .max = 9,
        .def = "4"},
       "x", 1},
      {{.name = "beta", COAPD_OPT_BOOL_IN(vals, flag), .def = "on"}, "y", 2},
  };
  const coapd_opt_table t = {sizeof(coapd_opt_table), sizeof(newer_opt),
                             "newer", &newer[0].o, 2};
  est_opts o;
  vals v;
  memset(&v, 0, sizeof v);
  assert_int_equal(est_opts_begin(&o, &t, &v, ""), EST_OK);
  assert_string_equal(est_opts_entry(&t, 1)->name, "beta");
  assert_null(est_opts_entry(&t, 2));
  assert_int_equal(est_opts_set(&o, "beta", "off", "n", 1), EST_OK);
  assert_int_equal(est_opts_end(&o, "n", 1), EST_OK);
  assert_int_equal(v.count, 4);
  assert_false(v.flag);
}

/* ---------------------------------------------------------------- tables */

static void expect_table_bad(const coapd_opt_table *t, const char *want) {
  char err[256];
  est_opts o;
  assert_int_equal(est_opts_table_check(t, err, sizeof err), EST_ERR_INVALID);
  if (strcmp(err, want) != 0)
    fail_msg("got '%s', want '%s'", err, want);
  assert_int_equal(est_opts_begin(&o, t, NULL, ""), EST_ERR_INVALID);
  assert_string_equal(est_opts_error(&o), want);
  assert_int_equal(est_opts_set(&o, "a", "b", "f", 1), EST_ERR_INVALID);
}

static void test_table_check(void **state) {
  (void)state;
  char err[256];
  assert_int_equal(est_opts_table_check(&table, err, sizeof err), EST_OK);
  assert_string_equal(err, "");
  expect_table_bad(NULL, "no option table");

  coapd_opt e[2];
  coapd_opt_table t = {sizeof t, sizeof e[0], "t", e, 1};
  const char *const dup_words[] = {"a", "a", NULL};
  const char *const bar_words[] = {"a|b", NULL};
  const char *const no_words[] = {NULL};
  struct {
    coapd_opt e;
    const char *want;
  } cases[] = {
      {{.name = NULL, .type = COAPD_OPT_STRING},
       "option 0: bad name (1-64 of A-Z a-z 0-9 _ - .)"},
      {{.name = "", .type = COAPD_OPT_STRING},
       "option 0: bad name (1-64 of A-Z a-z 0-9 _ - .)"},
      {{.name = "a b", .type = COAPD_OPT_STRING},
       "option 0: bad name (1-64 of A-Z a-z 0-9 _ - .)"},
      {{.name = "a", .type = 0}, "option 'a': type 0 unknown"},
      {{.name = "a", .type = COAPD_OPT_TYPE__MAX}, "option 'a': type 7 unknown"},
      {{.name = "a", .type = COAPD_OPT_INT, .min = 2, .max = 1},
       "option 'a': min above max"},
      {{.name = "a", .type = COAPD_OPT_LIST, .min = -1, .max = 1},
       "option 'a': negative item count"},
      {{.name = "a", .type = COAPD_OPT_ENUM}, "option 'a': needs 1-32 words"},
      {{.name = "a", .type = COAPD_OPT_ENUM, .words = no_words},
       "option 'a': needs 1-32 words"},
      {{.name = "a", .type = COAPD_OPT_ENUM, .words = dup_words},
       "option 'a': word 'a' twice"},
      {{.name = "a", .type = COAPD_OPT_ENUM, .words = bar_words},
       "option 'a': bad word 0"},
      {{.name = "a", .type = COAPD_OPT_STRING, .flags = COAPD_OPT_REQUIRED,
        .def = "x"},
       "option 'a': required but has a default"},
      {{.name = "a", .type = COAPD_OPT_INT, .min = 1, .max = 5, .def = "6"},
       "option 'a': default: bad value '6' for a (integer from 1 to 5)"},
      {{.name = "a", .type = COAPD_OPT_STRING, .def = "x", .check = no_x},
       "option 'a': default: bad value 'x' for a (must not start with x)"},
      {{.name = "a", .type = COAPD_OPT_STRING, .doc = "two\nlines"},
       "option 'a': doc longer than 240 bytes or not one line"},
      {{.name = "a", .type = COAPD_OPT_STRING,
        .max_len = EST_OPTS_VALUE_MAX + 1},
       "option 'a': max_len over 16384"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    e[0] = cases[i].e;
    expect_table_bad(&t, cases[i].want);
  }
  /* Two entries with one name. */
  e[0] = (coapd_opt){.name = "a", .type = COAPD_OPT_STRING};
  e[1] = (coapd_opt){.name = "a", .type = COAPD_OPT_PATH};
  t.count = 2;
  expect_table_bad(&t, "option 'a' listed twice");
  /* The table's own fields. */
  t.count = EST_OPTS_MAX + 1;
  expect_table_bad(&t, "more than 64 options");
  t.count = 1;
  t.entries = NULL;
  expect_table_bad(&t, "option table without entries");
  t.entries = e;
  char want[128];
  t.entry_size = (uint32_t)sizeof(coapd_opt) - 1;
  snprintf(want, sizeof want, "option entry size %zu, need %zu to 4096",
           sizeof(coapd_opt) - 1, sizeof(coapd_opt));
  expect_table_bad(&t, want);
  t.entry_size = 5000;
  snprintf(want, sizeof want, "option entry size 5000, need %zu to 4096",
           sizeof(coapd_opt));
  expect_table_bad(&t, want);
  t.entry_size = sizeof(coapd_opt);
  t.size = 8;
  snprintf(want, sizeof want, "option table size 8, need at least %zu",
           sizeof(coapd_opt_table));
  expect_table_bad(&t, want);
  t.size = sizeof t;
  t.name = "bad\tname";
  expect_table_bad(&t,
                   "option table name longer than 64 bytes or not one line");
  /* An empty table is fine: every key is unknown. */
  coapd_opt_table empty = {sizeof empty, sizeof(coapd_opt), NULL, NULL, 0};
  est_opts o;
  assert_int_equal(est_opts_begin(&o, &empty, NULL, ""), EST_OK);
  assert_int_equal(est_opts_set(&o, "a", "b", "f", 1), EST_ERR_CONFIG);
  assert_string_equal(est_opts_error(&o), "f:1: unknown option 'a'");
}

static void test_value_direct(void **state) {
  (void)state;
  /* coapd's own keys go through est_opts_value with their own entries. */
  static const char *const yn[] = {"yes", "no", NULL};
  const coapd_opt e = {.name = "dtls_allow_expired", .type = COAPD_OPT_ENUM,
                       .words = yn};
  est_optval v;
  char problem[128];
  assert_int_equal(est_opts_value(&e, NULL, "no", &v, problem, sizeof problem),
                   EST_OK);
  assert_int_equal(v.word, 1);
  assert_int_equal(est_opts_value(&e, NULL, "on", &v, problem, sizeof problem),
                   EST_ERR_CONFIG);
  assert_string_equal(problem,
                      "bad value 'on' for dtls_allow_expired (yes|no)");
  /* A short buffer is cut safely; no buffer at all is fine. */
  assert_int_equal(est_opts_value(&e, NULL, "on", &v, problem, 10),
                   EST_ERR_CONFIG);
  assert_int_equal(strlen(problem), 9);
  assert_int_equal(est_opts_value(&e, NULL, "on", &v, NULL, 0),
                   EST_ERR_CONFIG);
  assert_int_equal(est_opts_value(NULL, NULL, "on", &v, NULL, 0),
                   EST_ERR_INVALID);
  assert_int_equal(est_opts_value(&e, NULL, NULL, &v, NULL, 0),
                   EST_ERR_INVALID);
}

/* ---------------------------------------------------------------- help */

static void test_help(void **state) {
  (void)state;
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  assert_non_null(f);
  assert_int_equal(est_opts_help(&table, "plugin_opt_", f), EST_OK);
  fclose(f);
  assert_non_null(strstr(text, "plugin_opt_name   string "));
  assert_non_null(strstr(text, " int(1..100) "));
  assert_non_null(strstr(text, "plugin_opt_mode "));
  assert_non_null(strstr(text, " off|verify|require "));
  assert_non_null(strstr(text, " list(0..3) "));
  assert_non_null(strstr(text, " (required) "));
  /* One header and one line per entry, every one "NAME TYPE DEFAULT ...". */
  size_t lines = 0;
  for (char *p = text; *p; p++)
    lines += *p == '\n';
  assert_int_equal(lines, 1 + table.count);
  assert_int_equal(strncmp(text, "NAME ", 5), 0);

  /* A small table, exactly. */
  static const coapd_opt two[] = {
      {.name = "db_path", .type = COAPD_OPT_PATH, .flags = COAPD_OPT_REQUIRED,
       .doc = "the database"},
      {.name = "poll_ms", .type = COAPD_OPT_INT, .min = 10, .max = 60000,
       .def = "500", .doc = "how often"},
  };
  static const coapd_opt_table t2 = COAPD_OPT_TABLE("two", two);
  free(text);
  text = NULL;
  f = open_memstream(&text, &len);
  assert_non_null(f);
  assert_int_equal(est_opts_help(&t2, "plugin_opt_", f), EST_OK);
  fclose(f);
  assert_string_equal(text,
                      "NAME                TYPE            DEFAULT     "
                      "DESCRIPTION\n"
                      "plugin_opt_db_path  path            (required)  "
                      "the database\n"
                      "plugin_opt_poll_ms  int(10..60000)  500         "
                      "how often\n");
  free(text);
  assert_int_equal(est_opts_help(NULL, "", stdout), EST_ERR_INVALID);
  assert_int_equal(est_opts_help(&t2, "", NULL), EST_ERR_INVALID);
}

/* ---------------------------------------------------------------- ABI */

/* A plugin built before ABI 1.1 has a descriptor that ends after tick: the
 * host must not read `options` from it. */
static void test_descriptor_size(void **state) {
  (void)state;
  coapd_plugin d;
  memset(&d, 0, sizeof d);
  d.abi_version = COAPD_PLUGIN_ABI_VERSION;
  d.size = sizeof d;
  d.options = &table;
  assert_true(COAPD_PLUGIN_HAS(&d, options));
  assert_true(COAPD_PLUGIN_HAS(&d, tick));
  d.size = (uint32_t)COAPD_PLUGIN_SIZE_1_0;
  assert_false(COAPD_PLUGIN_HAS(&d, options));
  assert_true(COAPD_PLUGIN_HAS(&d, tick));
  /* The 1.0 descriptor is exactly the members up to tick. */
  assert_int_equal(COAPD_PLUGIN_SIZE_1_0, offsetof(coapd_plugin, options));
  assert_int_equal(COAPD_PLUGIN_ABI_VERSION, 1);
  assert_int_equal(COAPD_PLUGIN_ABI_MINOR, 3);
  /* 1.3 appended the metrics members to the host API: a 1.2 host's API
   * (up to check_only) has none, so est_coaps.so runs without metrics. */
  coapd_host_api api;
  memset(&api, 0, sizeof api);
  api.size = (uint32_t)(offsetof(coapd_host_api, check_only) + sizeof api.check_only);
  assert_true(COAPD_HOST_HAS(&api, check_only));
  assert_false(COAPD_HOST_HAS(&api, metric_register));
  assert_false(COAPD_HOST_HAS(&api, health_register));
  api.size = sizeof api;
  assert_true(COAPD_HOST_HAS(&api, health_register));
  /* 1.2 appended reload: a 1.1 descriptor (up to options) has none. */
  d.size = (uint32_t)(offsetof(coapd_plugin, options) + sizeof d.options);
  assert_true(COAPD_PLUGIN_HAS(&d, options));
  assert_false(COAPD_PLUGIN_HAS(&d, reload));
  d.size = sizeof d;
  assert_true(COAPD_PLUGIN_HAS(&d, reload));
  /* The first revision of the table structs is the whole of them. */
  assert_int_equal(COAPD_OPT_TABLE_SIZE_1_1, sizeof(coapd_opt_table));
  assert_int_equal(COAPD_OPT_SIZE_1_1, sizeof(coapd_opt));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_types_store),
      cmocka_unit_test(test_int),
      cmocka_unit_test(test_enum_bool),
      cmocka_unit_test(test_string_path),
      cmocka_unit_test(test_list),
      cmocka_unit_test(test_repeated),
      cmocka_unit_test(test_unknown),
      cmocka_unit_test(test_suggest),
      cmocka_unit_test(test_defaults_required),
      cmocka_unit_test(test_check_only),
      cmocka_unit_test(test_newer_entries),
      cmocka_unit_test(test_table_check),
      cmocka_unit_test(test_value_direct),
      cmocka_unit_test(test_help),
      cmocka_unit_test(test_descriptor_size),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
