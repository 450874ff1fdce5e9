/**
 * @file metrics.h
 * @brief coapd's metrics and health: the registry plugins fill through the
 * host API (ABI 1.3, include/coapd/plugin.h), its Prometheus text
 * rendering (format 0.0.4), and the plain-HTTP scrape endpoint on
 * `metrics_listen` (GET /metrics, GET /healthz; docs/metrics.md).
 *
 * metrics.c is the registry and the rendering: plain C, no libcoap, no
 * libmicrohttpd, so the unit tests drive it. metrics_http.c is the rest:
 * libmicrohttpd without threads, its epoll fd watched by the host loop,
 * the host's own metrics and the host API members. Loop thread only.
 */
#ifndef COAPD_HOST_METRICS_H
#define COAPD_HOST_METRICS_H

#include <stddef.h>

#include "coapd/plugin.h"
#include "common/est_err.h"

/** Most metrics, collect hooks and health checks one registry holds. */
#define COAPD_METRICS_MAX 128u
#define COAPD_METRICS_HOOKS_MAX 32u
/** Largest /metrics body; past it the scrape gets 500 (a bug, not load). */
#define COAPD_METRICS_BODY_MAX (4u * 1024u * 1024u)

typedef struct coapd_metrics coapd_metrics;
typedef struct coapd_app coapd_app;
/** The host side: registry, HTTP daemons, the host's metrics. */
typedef struct coapd_mon coapd_mon;

/* ---- the registry (metrics.c) ------------------------------------------ */

/** An empty registry. @p warn (may be NULL) gets the one-line warnings,
 * such as the first series dropped by the cap. */
est_err coapd_metrics_new(void (*warn)(const char *line), coapd_metrics **out) EST_MUST_CHECK;
void coapd_metrics_free(coapd_metrics *r);
/** metric_register for @p owner (a plugin's coapd_host, or NULL for the
 * host; only the host may use the reserved prefixes). EST_ERR_INVALID
 * with the reason in @p why, EST_ERR_EXISTS, EST_ERR_TOO_LARGE. */
est_err coapd_metrics_register(coapd_metrics *r, const void *owner, const coapd_metric_desc *d,
                               coapd_metric **out, char *why, size_t whylen) EST_MUST_CHECK;
void coapd_metric_add(coapd_metric *m, const char *const *label_values, double v);
void coapd_metric_set(coapd_metric *m, const char *const *label_values, double v);
void coapd_metric_observe(coapd_metric *m, const char *const *label_values, double v);
est_err coapd_metrics_collect_add(coapd_metrics *r, const void *owner, coapd_collect_cb cb,
                                  void *arg) EST_MUST_CHECK;
est_err coapd_metrics_health_add(coapd_metrics *r, const void *owner, const char *name,
                                 coapd_health_cb cb, void *arg) EST_MUST_CHECK;
/** After @p owner's fini: forget its metrics, hooks and checks. */
void coapd_metrics_drop_owner(coapd_metrics *r, const void *owner);
/** Run the collect hooks, then render every metric into *out (malloc,
 * NUL-terminated, *len bytes without the NUL). */
est_err coapd_metrics_render(coapd_metrics *r, char **out, size_t *len) EST_MUST_CHECK;
/** 1 when every health check passes; else 0 and `NAME: reason` in @p why. */
int coapd_metrics_healthy(coapd_metrics *r, char *why, size_t whylen);

/* ---- the host side (metrics_http.c) ------------------------------------ */

/** Before the plugins load: the registry and the host's metrics. */
est_err coapd_metrics_setup(coapd_app *app, char *err, size_t errlen) EST_MUST_CHECK;
/** Fill the ABI 1.3 members of a plugin's host API (plugins.c). */
void coapd_metrics_api(coapd_host_api *a);
/** After the plugins are ready (never under -t): bind every
 * `metrics_listen` and watch it from the loop. */
est_err coapd_metrics_start(coapd_app *app, char *err, size_t errlen) EST_MUST_CHECK;
/** Milliseconds until the HTTP side has a timeout to run, or -1. */
int coapd_metrics_next_ms(coapd_app *app);
/** Run HTTP timeouts that are due (after each loop wake-up). */
void coapd_metrics_due(coapd_app *app);
/** A libcoap session or DTLS event of @p session (dtls.c). */
void coapd_metrics_event(coapd_app *app, struct coap_session_t *session, int event);
/** After a plugin's fini (or failed init): drop what it registered. */
void coapd_metrics_forget(coapd_app *app, const void *owner);
/** Close the HTTP side: before the plugins' fini. */
void coapd_metrics_stop(coapd_app *app);
/** Free the registry: after the plugins' fini. */
void coapd_metrics_fini(coapd_app *app);

#endif /* COAPD_HOST_METRICS_H */
