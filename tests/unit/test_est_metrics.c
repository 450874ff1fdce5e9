/* plugin/est/metrics.c against host/metrics.c's registry: with a host of
 * ABI 1.3 the plugin's metrics appear and count; with a 1.2 host (no
 * metrics members) est_metrics_open() gives NULL and every hook is a
 * no-op, so the plugin runs on (docs/metrics.md). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "host/metrics.h"
#include "plugin/est/est_plugin.h"
#include "plugin/est/metrics.h"

/* A fake host: coapd_host is opaque to the plugin, so the registry itself
 * stands in for it. */
static int fake_register(coapd_host *h, const coapd_metric_desc *d, coapd_metric **out) {
  return coapd_metrics_register((coapd_metrics *)h, (void *)1, d, out, NULL, 0) == EST_OK ? 0 : -1;
}
static int fake_collect(coapd_host *h, coapd_collect_cb cb, void *arg) {
  return coapd_metrics_collect_add((coapd_metrics *)h, (void *)1, cb, arg) == EST_OK ? 0 : -1;
}
static int fake_health(coapd_host *h, coapd_health_cb cb, void *arg) {
  return coapd_metrics_health_add((coapd_metrics *)h, (void *)1, "est-coaps", cb, arg) == EST_OK
             ? 0
             : -1;
}
__attribute__((format(printf, 3, 4))) static void fake_log(coapd_host *h, coapd_log_level l,
                                                           const char *fmt, ...) {
  (void)h;
  (void)l;
  (void)fmt;
}

static void test_new_host(void **state) {
  (void)state;
  coapd_metrics *r = NULL;
  assert_int_equal(coapd_metrics_new(NULL, &r), EST_OK);
  coapd_host_api api;
  memset(&api, 0, sizeof api);
  api.size = sizeof api;
  api.host = (coapd_host *)r;
  api.log = fake_log;
  api.metric_register = fake_register;
  api.metric_add = coapd_metric_add;
  api.metric_set = coapd_metric_set;
  api.metric_observe = coapd_metric_observe;
  api.collect_register = fake_collect;
  api.health_register = fake_health;
  est_plugin *p = calloc(1, sizeof *p);
  assert_non_null(p);
  p->api = &api; /* no store, no CA: healthy, no notAfter */
  est_metrics *m = est_metrics_open(p);
  assert_non_null(m);
  est_metrics_issued(m, EST_FN_SEN);
  est_metrics_issued(m, EST_FN_SKG);
  est_metrics_enrolled(m, EST_FN_SEN, est_metrics_now_us());
  est_metrics_store_error(m);
  est_metrics_queue_full(m);
  est_metrics_queue_full(m);
  char *t = NULL;
  size_t len = 0;
  assert_int_equal(coapd_metrics_render(r, &t, &len), EST_OK);
  assert_non_null(strstr(t, "\nest_certificates_issued_total{function=\"sen\"} 1\n"));
  assert_non_null(strstr(t, "\nest_certificates_issued_total{function=\"skg\"} 1\n"));
  assert_non_null(strstr(t, "\nest_enroll_duration_seconds_count{function=\"sen\"} 1\n"));
  assert_non_null(strstr(t, "\nest_store_errors_total 1\n"));
  assert_non_null(strstr(t, "\nest_queue_full_total 2\n"));
  assert_non_null(strstr(t, "\nest_store_ok 1\n"));
  assert_non_null(strstr(t, "# TYPE est_enroll_duration_seconds histogram\n"));
  free(t);
  char why[64];
  assert_int_equal(coapd_metrics_healthy(r, why, sizeof why), 1);
  est_metrics_close(m);
  coapd_metrics_drop_owner(r, (void *)1);
  coapd_metrics_free(r);
  free(p);
}

static void test_old_host(void **state) {
  (void)state;
  coapd_host_api api;
  memset(&api, 0xa5, sizeof api); /* members past size are garbage */
  api.size = (uint32_t)(offsetof(coapd_host_api, check_only) + sizeof api.check_only);
  est_plugin *p = calloc(1, sizeof *p);
  assert_non_null(p);
  p->api = &api;
  est_metrics *m = est_metrics_open(p);
  assert_null(m);
  /* Every hook takes the NULL. */
  est_metrics_issued(m, EST_FN_SEN);
  est_metrics_enrolled(m, EST_FN_SEN, 1);
  est_metrics_store_error(m);
  est_metrics_queue_full(m);
  est_metrics_close(m);
  free(p);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_new_host),
                                     cmocka_unit_test(test_old_host)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
