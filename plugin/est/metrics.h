/**
 * @file metrics.h
 * @brief est_coaps.so's metrics and health check, through the host API
 * of ABI 1.3 (include/coapd/plugin.h, docs/metrics.md). With an older host
 * est_metrics_open() gives NULL and every call below does nothing, so the
 * hooks in handlers.c, reply.c and enroll.c need no test. Loop thread only.
 */
#ifndef EST_METRICS_H
#define EST_METRICS_H

#include <stdint.h>

#include "proto/resource.h"

typedef struct est_metrics est_metrics;
struct est_plugin;
struct est_req;

/** After init has set everything up: register the metrics, the collect
 * hook (queue depth, CA notAfter) and the store health check. NULL when
 * the host has no metrics API or registering failed (logged): the plugin
 * runs on without metrics. */
est_metrics *est_metrics_open(struct est_plugin *p);
/** In fini, before the store and the CA go. NULL is a no-op. */
void est_metrics_close(est_metrics *m);

/** CLOCK_MONOTONIC in microseconds: a request's arrival time. */
uint64_t est_metrics_now_us(void);
/** est_requests_total: @p r has its answer (handlers.c, once per call). */
void est_metrics_answer(est_metrics *m, const struct est_req *r);
/** est_https_requests_total: an HTTPS EST request got status @p status;
 * @p op is its RFC 7030 operation name (https.c, once per request). */
void est_metrics_https(est_metrics *m, const char *op, unsigned status);
/** est_upstream_requests_total: a registrar's request to its upstream
 * ended with HTTP @p status, 0 when there was no answer (upstream.c). */
void est_metrics_upstream(est_metrics *m, const char *op, unsigned status);
/** est_enroll_duration_seconds: the final answer of an enrollment,
 * @p t0_us its arrival (reply.c). */
void est_metrics_enrolled(est_metrics *m, est_fn fn, uint64_t t0_us);
/** est_certificates_issued_total (enroll.c). */
void est_metrics_issued(est_metrics *m, est_fn fn);
/** est_store_errors_total: the store failed a request (enroll.c). */
void est_metrics_store_error(est_metrics *m);
/** est_queue_full_total: refused by max_pending_total (enroll.c). */
void est_metrics_queue_full(est_metrics *m);

#endif /* EST_METRICS_H */
