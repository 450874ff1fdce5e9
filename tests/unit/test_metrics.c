/* host/metrics.c: the registry and its Prometheus text rendering (format
 * 0.0.4): HELP/TYPE lines, escaping, number formats, histograms, the
 * series cap, refused descriptors, collect hooks, health checks, and what
 * a plugin's fini leaves behind (docs/metrics.md). No network. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "host/metrics.h"

static int warnings;
static char last_warning[512];

static void on_warn(const char *line) {
  warnings++;
  snprintf(last_warning, sizeof last_warning, "%s", line);
}

static coapd_metrics *reg(void) {
  coapd_metrics *r = NULL;
  warnings = 0;
  last_warning[0] = '\0';
  assert_int_equal(coapd_metrics_new(on_warn, &r), EST_OK);
  assert_non_null(r);
  return r;
}

static char *render(coapd_metrics *r) {
  char *out = NULL;
  size_t len = 0;
  assert_int_equal(coapd_metrics_render(r, &out, &len), EST_OK);
  assert_int_equal(strlen(out), len);
  return out;
}

static void assert_has(const char *text, const char *line) {
  if (!strstr(text, line))
    fail_msg("missing '%s' in:\n%s", line, text);
}

static void test_counter_gauge(void **state) {
  (void)state;
  coapd_metrics *r = reg();
  static const char *const labels[] = {"function", "code"};
  coapd_metric_desc d = {"est_requests_total", "EST requests.", COAPD_METRIC_COUNTER, 2, labels,
                         0, NULL};
  coapd_metric *c = NULL, *g = NULL;
  assert_int_equal(coapd_metrics_register(r, (void *)1, &d, &c, NULL, 0), EST_OK);
  coapd_metric_desc gd = {"est_pending_requests", "Waiting.", COAPD_METRIC_GAUGE, 0, NULL, 0,
                          NULL};
  assert_int_equal(coapd_metrics_register(r, (void *)1, &gd, &g, NULL, 0), EST_OK);
  const char *const v1[] = {"sen", "2.04"}, *const v2[] = {"sen", "5.03"};
  coapd_metric_add(c, v1, 1);
  coapd_metric_add(c, v1, 2);
  coapd_metric_add(c, v2, 1);
  coapd_metric_add(c, v2, -1);    /* a counter never goes down */
  coapd_metric_add(c, v2, 1.0 / 0.0); /* nor to infinity */
  coapd_metric_set(c, v2, 100);   /* a counter is not set */
  coapd_metric_set(g, NULL, 7);
  coapd_metric_add(g, NULL, -2.5);
  char *t = render(r);
  assert_has(t, "# HELP est_requests_total EST requests.\n# TYPE est_requests_total counter\n");
  assert_has(t, "\nest_requests_total{function=\"sen\",code=\"2.04\"} 3\n");
  assert_has(t, "\nest_requests_total{function=\"sen\",code=\"5.03\"} 1\n");
  assert_has(t, "# TYPE est_pending_requests gauge\nest_pending_requests 4.5\n");
  /* The registry's own counter, first, at 0. */
  assert_has(t, "# TYPE coapd_metric_series_dropped_total counter\n"
                "coapd_metric_series_dropped_total 0\n");
  free(t);
  coapd_metrics_free(r);
}

static void test_escaping(void **state) {
  (void)state;
  coapd_metrics *r = reg();
  static const char *const labels[] = {"who"};
  coapd_metric_desc d = {"x_total", "a \\ backslash, a \"quote\" stays", COAPD_METRIC_COUNTER, 1,
                         labels, 0, NULL};
  coapd_metric *m = NULL;
  assert_int_equal(coapd_metrics_register(r, (void *)1, &d, &m, NULL, 0), EST_OK);
  const char *const v[] = {"a\"b\\c\nd \xc3\xa9"};
  coapd_metric_add(m, v, 1);
  char *t = render(r);
  /* HELP escapes backslash (and newline); a label value also the quote. */
  assert_has(t, "# HELP x_total a \\\\ backslash, a \"quote\" stays\n");
  assert_has(t, "x_total{who=\"a\\\"b\\\\c\\nd \xc3\xa9\"} 1\n");
  free(t);
  /* A value that is not UTF-8, or too long, is dropped and counted once. */
  const char *const bad[] = {"\xff\xfe"};
  coapd_metric_add(m, bad, 1);
  char longv[COAPD_METRIC_VALUE_MAX + 2];
  memset(longv, 'a', sizeof longv - 1);
  longv[sizeof longv - 1] = '\0';
  const char *const lv[] = {longv};
  coapd_metric_add(m, lv, 1);
  const char *const surrogate[] = {"\xed\xa0\x80"};
  coapd_metric_add(m, surrogate, 1);
  coapd_metric_add(m, NULL, 1);
  t = render(r);
  assert_has(t, "coapd_metric_series_dropped_total 4\n");
  assert_null(strstr(t, "\xff"));
  assert_int_equal(warnings, 1);
  assert_non_null(strstr(last_warning, "x_total"));
  free(t);
  coapd_metrics_free(r);
}

static void test_numbers(void **state) {
  (void)state;
  coapd_metrics *r = reg();
  coapd_metric_desc d = {"g", "h", COAPD_METRIC_GAUGE, 0, NULL, 0, NULL};
  coapd_metric *m = NULL;
  assert_int_equal(coapd_metrics_register(r, (void *)1, &d, &m, NULL, 0), EST_OK);
  coapd_metric_set(m, NULL, 0.1);
  char *t = render(r);
  assert_has(t, "\ng 0.1\n");
  free(t);
  coapd_metric_set(m, NULL, 2111674857);
  t = render(r);
  assert_has(t, "\ng 2111674857\n");
  free(t);
  coapd_metric_set(m, NULL, 1.0 / 0.0);
  t = render(r);
  assert_has(t, "\ng +Inf\n");
  free(t);
  coapd_metric_set(m, NULL, 1.0 / 3.0);
  t = render(r);
  assert_has(t, "\ng 0.33333333333333331\n"); /* 17 digits: reads back exactly */
  free(t);
  coapd_metrics_free(r);
}

static void test_histogram(void **state) {
  (void)state;
  coapd_metrics *r = reg();
  static const char *const labels[] = {"function"};
  static const double b[] = {.001, .01, .1, 1};
  coapd_metric_desc d = {"est_enroll_duration_seconds", "Time.", COAPD_METRIC_HISTOGRAM, 1,
                         labels, 4, b};
  coapd_metric *m = NULL;
  assert_int_equal(coapd_metrics_register(r, (void *)1, &d, &m, NULL, 0), EST_OK);
  const char *const v[] = {"sen"};
  coapd_metric_observe(m, v, 0.0005);
  coapd_metric_observe(m, v, 0.01); /* on the bound: le is inclusive */
  coapd_metric_observe(m, v, 0.5);
  coapd_metric_observe(m, v, 30);
  coapd_metric_add(m, v, 1); /* not a histogram operation */
  char *t = render(r);
  assert_has(t, "# TYPE est_enroll_duration_seconds histogram\n"
                "est_enroll_duration_seconds_bucket{function=\"sen\",le=\"0.001\"} 1\n"
                "est_enroll_duration_seconds_bucket{function=\"sen\",le=\"0.01\"} 2\n"
                "est_enroll_duration_seconds_bucket{function=\"sen\",le=\"0.1\"} 2\n"
                "est_enroll_duration_seconds_bucket{function=\"sen\",le=\"1\"} 3\n"
                "est_enroll_duration_seconds_bucket{function=\"sen\",le=\"+Inf\"} 4\n"
                "est_enroll_duration_seconds_sum{function=\"sen\"} 30.5105\n"
                "est_enroll_duration_seconds_count{function=\"sen\"} 4\n");
  free(t);
  coapd_metrics_free(r);
}

static void test_series_cap(void **state) {
  (void)state;
  coapd_metrics *r = reg();
  static const char *const labels[] = {"n"};
  coapd_metric_desc d = {"many_total", "h", COAPD_METRIC_COUNTER, 1, labels, 0, NULL};
  coapd_metric *m = NULL;
  assert_int_equal(coapd_metrics_register(r, (void *)1, &d, &m, NULL, 0), EST_OK);
  char buf[16];
  const char *const v[] = {buf};
  for (unsigned i = 0; i < COAPD_METRIC_SERIES_MAX + 10; i++) {
    snprintf(buf, sizeof buf, "%u", i);
    coapd_metric_add(m, v, 1);
  }
  /* An existing series still counts past the cap. */
  snprintf(buf, sizeof buf, "0");
  coapd_metric_add(m, v, 1);
  char *t = render(r);
  assert_has(t, "\nmany_total{n=\"0\"} 2\n");
  assert_has(t, "\nmany_total{n=\"255\"} 1\n");
  assert_null(strstr(t, "many_total{n=\"256\"}"));
  assert_has(t, "coapd_metric_series_dropped_total 10\n");
  assert_int_equal(warnings, 1); /* said once */
  size_t lines = 0;
  for (const char *p = t; (p = strstr(p, "\nmany_total{")) != NULL; p++)
    lines++;
  assert_int_equal(lines, COAPD_METRIC_SERIES_MAX);
  free(t);
  coapd_metrics_free(r);
}

static void test_bad_desc(void **state) {
  (void)state;
  coapd_metrics *r = reg();
  char why[256];
  coapd_metric *m = NULL;
  static const char *const le[] = {"le"}, *const dup[] = {"a", "a"}, *const under[] = {"__x"};
  static const char *const four[] = {"a", "b", "c", "d"};
  static const double down[] = {1, 0.5}, one[] = {1};
  const coapd_metric_desc bad[] = {
      {"9lives", "h", COAPD_METRIC_GAUGE, 0, NULL, 0, NULL},
      {"a-b", "h", COAPD_METRIC_GAUGE, 0, NULL, 0, NULL},
      {"coapd_mine", "h", COAPD_METRIC_GAUGE, 0, NULL, 0, NULL}, /* reserved for the host */
      {"process_x", "h", COAPD_METRIC_GAUGE, 0, NULL, 0, NULL},
      {"ok", "two\nlines", COAPD_METRIC_GAUGE, 0, NULL, 0, NULL},
      {"ok", NULL, COAPD_METRIC_GAUGE, 0, NULL, 0, NULL},
      {"ok", "h", (coapd_metric_type)7, 0, NULL, 0, NULL},
      {"ok", "h", COAPD_METRIC_HISTOGRAM, 1, le, 1, one},
      {"ok", "h", COAPD_METRIC_GAUGE, 2, dup, 0, NULL},
      {"ok", "h", COAPD_METRIC_GAUGE, 1, under, 0, NULL},
      {"ok", "h", COAPD_METRIC_GAUGE, 4, four, 0, NULL},
      {"ok", "h", COAPD_METRIC_HISTOGRAM, 0, NULL, 2, down},
      {"ok", "h", COAPD_METRIC_HISTOGRAM, 0, NULL, 0, NULL},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    why[0] = '\0';
    assert_int_equal(coapd_metrics_register(r, (void *)1, &bad[i], &m, why, sizeof why),
                     EST_ERR_INVALID);
    assert_null(m);
    assert_true(why[0] != '\0');
  }
  /* The host may use its own prefix; a name is taken once. */
  coapd_metric_desc host = {"coapd_mine", "h", COAPD_METRIC_GAUGE, 0, NULL, 0, NULL};
  assert_int_equal(coapd_metrics_register(r, NULL, &host, &m, why, sizeof why), EST_OK);
  assert_int_equal(coapd_metrics_register(r, (void *)1, &host, &m, why, sizeof why),
                   EST_ERR_INVALID);
  coapd_metric_desc x = {"x", "h", COAPD_METRIC_GAUGE, 0, NULL, 0, NULL};
  assert_int_equal(coapd_metrics_register(r, (void *)1, &x, &m, why, sizeof why), EST_OK);
  assert_int_equal(coapd_metrics_register(r, (void *)2, &x, &m, why, sizeof why), EST_ERR_EXISTS);
  /* NULL handles are a no-op (a plugin whose register failed). */
  coapd_metric_add(NULL, NULL, 1);
  coapd_metric_set(NULL, NULL, 1);
  coapd_metric_observe(NULL, NULL, 1);
  coapd_metrics_free(r);
}

static int collected;
static void collect(void *arg) {
  collected++;
  coapd_metric_set(arg, NULL, 42);
}

static int healthy_flag = 1;
static int check(void *arg, char *why, size_t len) {
  (void)arg;
  if (!healthy_flag)
    snprintf(why, len, "store: disk I/O error\nsecond line");
  return healthy_flag;
}

static void test_hooks_and_owner(void **state) {
  (void)state;
  coapd_metrics *r = reg();
  void *plugin = (void *)0x10;
  coapd_metric_desc d = {"est_pending_requests", "h", COAPD_METRIC_GAUGE, 0, NULL, 0, NULL};
  coapd_metric *m = NULL;
  char why[128];
  assert_int_equal(coapd_metrics_register(r, plugin, &d, &m, NULL, 0), EST_OK);
  assert_int_equal(coapd_metrics_collect_add(r, plugin, collect, m), EST_OK);
  assert_int_equal(coapd_metrics_health_add(r, plugin, "est-coaps", check, NULL), EST_OK);
  collected = 0;
  char *t = render(r);
  assert_int_equal(collected, 1);
  assert_has(t, "\nest_pending_requests 42\n");
  free(t);
  healthy_flag = 1;
  assert_int_equal(coapd_metrics_healthy(r, why, sizeof why), 1);
  healthy_flag = 0;
  assert_int_equal(coapd_metrics_healthy(r, why, sizeof why), 0);
  assert_string_equal(why, "est-coaps: store: disk I/O error"); /* one line */
  /* After the plugin's fini nothing of it is called or shown. */
  coapd_metrics_drop_owner(r, plugin);
  collected = 0;
  t = render(r);
  assert_int_equal(collected, 0);
  assert_null(strstr(t, "est_pending_requests"));
  free(t);
  assert_int_equal(coapd_metrics_healthy(r, why, sizeof why), 1);
  /* Its name is free again for the next init. */
  assert_int_equal(coapd_metrics_register(r, plugin, &d, &m, NULL, 0), EST_OK);
  coapd_metrics_free(r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_counter_gauge), cmocka_unit_test(test_escaping),
      cmocka_unit_test(test_numbers),       cmocka_unit_test(test_histogram),
      cmocka_unit_test(test_series_cap),    cmocka_unit_test(test_bad_desc),
      cmocka_unit_test(test_hooks_and_owner),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
