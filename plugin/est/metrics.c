/* est_coaps.so's metrics and health check (metrics.h, docs/metrics.md).
 * Everything hangs off the plugin state; nothing here is global. */
#include "metrics.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <gnutls/x509.h>

#include "est_plugin.h"
#include "store/store.h"

struct est_metrics {
  const coapd_host_api *api;
  est_plugin *p;
  coapd_metric *upstream_requests;
  coapd_metric *requests, *https_requests, *issued, *pending, *duration, *store_errors, *queue_full,
      *ca_not_after, *store_ok;
  /* The database file as opened, to see it renamed or replaced. */
  bool have_file;
  dev_t dev;
  ino_t ino;
};

/* RFC 9148 enrollments take milliseconds inline, seconds with keygen. */
static const double duration_buckets[] = {.001, .0025, .005, .01, .025, .05, .1,
                                          .25,  .5,    1,    2.5, 5,   10};

uint64_t est_metrics_now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* "The store answers": a trivial query (the pending count, which the
 * gauge wants anyway) succeeds, and db_path still names the file coapd has
 * open. A renamed or replaced file still answers through the open handle,
 * but estctl and the broker no longer see what coapd writes. Without a
 * db_path there is nothing to check. Sets *pending. */
static int store_healthy(est_metrics *m, char *why, size_t len, size_t *pending) {
  store *s = enroll_store(m->p->en);
  struct stat st;
  *pending = 0;
  if (!s)
    return 1;
  est_err rc = store_request_count_pending(s, (int64_t)time(NULL), pending);
  if (rc != EST_OK) {
    snprintf(why, len, "store: %s (%s)", est_strerror(rc), store_errmsg(s));
    return 0;
  }
  if (!m->have_file)
    return 1;
  if (stat(m->p->db_file, &st) != 0) {
    snprintf(why, len, "store: database %s: %s", m->p->db_file, strerror(errno));
    return 0;
  }
  if (st.st_dev != m->dev || st.st_ino != m->ino) {
    snprintf(why, len, "store: database %s was replaced since coapd opened it", m->p->db_file);
    return 0;
  }
  return 1;
}

static int health(void *arg, char *why, size_t len) {
  size_t pending;
  return store_healthy(arg, why, len, &pending);
}

/* The issuing CA certificate's notAfter, Unix seconds; NAN if unreadable. */
static double ca_not_after(const pki_ca *ca) {
  const uint8_t *der = NULL;
  size_t len = 0;
  gnutls_x509_crt_t crt;
  double v = NAN;
  if (!ca)
    return v;
  pki_ca_cert_der(ca, &der, &len);
  if (!der || !len || len > PKI_CERT_MAX || gnutls_x509_crt_init(&crt) < 0)
    return v;
  gnutls_datum_t d = {(unsigned char *)(uintptr_t)der, (unsigned)len};
  if (gnutls_x509_crt_import(crt, &d, GNUTLS_X509_FMT_DER) >= 0) {
    time_t t = gnutls_x509_crt_get_expiration_time(crt);
    if (t != (time_t)-1)
      v = (double)t;
  }
  gnutls_x509_crt_deinit(crt);
  return v;
}

/* Before each scrape: the gauges read from the store and the CA. */
static void collect(void *arg) {
  est_metrics *m = arg;
  char why[256];
  size_t pending = 0;
  int ok = store_healthy(m, why, sizeof why, &pending);
  m->api->metric_set(m->store_ok, NULL, ok);
  if (ok)
    m->api->metric_set(m->pending, NULL, (double)pending);
  double na = ca_not_after(m->p->ca);
  if (!isnan(na))
    m->api->metric_set(m->ca_not_after, NULL, na);
}

est_metrics *est_metrics_open(est_plugin *p) {
  const coapd_host_api *api = p->api;
  static const char *const fn_code[] = {"function", "code"}, *const fn[] = {"function"},
                           *const op_status[] = {"operation", "status"};
  if (!COAPD_HOST_HAS(api, health_register))
    return NULL; /* a host before ABI 1.3: no metrics */
  est_metrics *m = calloc(1, sizeof *m);
  if (!m)
    return NULL;
  m->api = api;
  m->p = p;
  const struct {
    coapd_metric_desc d;
    coapd_metric **slot;
  } defs[] = {
      {{"est_requests_total", "EST requests answered, by function and CoAP response code.",
        COAPD_METRIC_COUNTER, 2, fn_code, 0, NULL},
       &m->requests},
      {{"est_https_requests_total",
        "HTTPS EST requests answered, by RFC 7030 operation and HTTP status code.",
        COAPD_METRIC_COUNTER, 2, fn_code, 0, NULL},
       &m->https_requests},
      {{"est_upstream_requests_total",
        "A registrar's requests to its upstream EST server, by RFC 7030 operation and HTTP "
        "status (\"none\": no answer: down, timeout, TLS).",
        COAPD_METRIC_COUNTER, 2, op_status, 0, NULL},
       &m->upstream_requests},
      {{"est_certificates_issued_total", "Certificates issued and recorded, by function.",
        COAPD_METRIC_COUNTER, 1, fn, 0, NULL},
       &m->issued},
      {{"est_pending_requests", "Requests waiting for an operator (the approval queue).",
        COAPD_METRIC_GAUGE, 0, NULL, 0, NULL},
       &m->pending},
      {{"est_enroll_duration_seconds",
        "Time from an enrollment request's arrival to its final answer (sen, sren, skg, skc).",
        COAPD_METRIC_HISTOGRAM, 1, fn, sizeof duration_buckets / sizeof duration_buckets[0],
        duration_buckets},
       &m->duration},
      {{"est_store_errors_total", "Requests the enrollment database failed (answered 5.03).",
        COAPD_METRIC_COUNTER, 0, NULL, 0, NULL},
       &m->store_errors},
      {{"est_queue_full_total", "Requests refused because the approval queue was full "
                                "(max_pending_total).",
        COAPD_METRIC_COUNTER, 0, NULL, 0, NULL},
       &m->queue_full},
      {{"est_ca_not_after_seconds", "The issuing CA certificate's notAfter, Unix seconds.",
        COAPD_METRIC_GAUGE, 0, NULL, 0, NULL},
       &m->ca_not_after},
      {{"est_store_ok", "1 while the enrollment database answers (as /healthz checks it).",
        COAPD_METRIC_GAUGE, 0, NULL, 0, NULL},
       &m->store_ok},
  };
  struct stat st;
  if (p->db_file[0] && enroll_store(p->en) && stat(p->db_file, &st) == 0) {
    m->have_file = true;
    m->dev = st.st_dev;
    m->ino = st.st_ino;
  }
  /* A metric that failed stays NULL, and the host's calls take NULL as a
   * no-op; so m lives on (hooks may point at it) until fini. */
  bool ok = true;
  for (size_t i = 0; i < sizeof defs / sizeof defs[0]; i++)
    ok &= api->metric_register(api->host, &defs[i].d, defs[i].slot) == 0;
  ok &= api->collect_register(api->host, collect, m) == 0;
  ok &= api->health_register(api->host, health, m) == 0;
  enroll_set_metrics(p->en, m);
  if (!ok) /* the host logged why */
    api->log(api->host, COAPD_LOG_WARNING, "some metrics or the health check are off");
  return m;
}

void est_metrics_close(est_metrics *m) { free(m); }

void est_metrics_answer(est_metrics *m, const est_req *r) {
  char code[16];
  if (!m || !r->resp)
    return;
  coap_pdu_code_t c = coap_pdu_get_code(r->resp);
  if (c == 0)
    return; /* an empty ACK: the answer comes separately, counted then */
  snprintf(code, sizeof code, "%u.%02u", ((unsigned)c >> 5) & 7u, (unsigned)c & 0x1fu);
  const char *const v[] = {proto_fn_info(r->route->fn)->name, code};
  m->api->metric_add(m->requests, v, 1);
}

void est_metrics_https(est_metrics *m, const char *op, unsigned status) {
  char code[8];
  if (!m)
    return;
  snprintf(code, sizeof code, "%u", status);
  const char *const v[] = {op, code};
  m->api->metric_add(m->https_requests, v, 1);
}

void est_metrics_upstream(est_metrics *m, const char *op, unsigned status) {
  char code[16];
  if (!m)
    return;
  if (status)
    snprintf(code, sizeof code, "%u", status);
  else
    snprintf(code, sizeof code, "none");
  const char *const v[] = {op, code};
  m->api->metric_add(m->upstream_requests, v, 1);
}

void est_metrics_enrolled(est_metrics *m, est_fn fn, uint64_t t0_us) {
  if (!m || !t0_us)
    return;
  const char *const v[] = {proto_fn_info(fn)->name};
  m->api->metric_observe(m->duration, v, (double)(est_metrics_now_us() - t0_us) / 1e6);
}

void est_metrics_issued(est_metrics *m, est_fn fn) {
  if (!m)
    return;
  const char *const v[] = {proto_fn_info(fn)->name};
  m->api->metric_add(m->issued, v, 1);
}

void est_metrics_store_error(est_metrics *m) {
  if (m)
    m->api->metric_add(m->store_errors, NULL, 1);
}

void est_metrics_queue_full(est_metrics *m) {
  if (m)
    m->api->metric_add(m->queue_full, NULL, 1);
}
