/* The scrape endpoint on `metrics_listen` (plain HTTP, libmicrohttpd with
 * no threads of its own: its epoll fd is watched by the host loop, its
 * timeouts come from MHD_get_timeout), the host's own metrics and the
 * ABI 1.3 host API members (metrics.h, docs/metrics.md). */
#include "coapd.h"
#include "metrics.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <microhttpd.h>

/* An operator's scraper or probe needs few connections; a slow or idle one
 * is dropped after the timeout, and no client can hold them all. */
#define HTTP_CONN_MAX 16u
#define HTTP_PER_IP_MAX 8u
#define HTTP_TIMEOUT_S 10u
/* Per connection: the request line and headers must fit. */
#define HTTP_MEMORY_MAX ((size_t)32 * 1024)

/* Sessions followed from their ClientHello through the handshake; past
 * this many at a time (a flood, docs/admission.md) new ones are not
 * counted. */
#define HS_TRACK_MAX 1024u

#define CT_METRICS "text/plain; version=0.0.4; charset=utf-8"
#define CT_TEXT "text/plain; charset=utf-8"

struct coapd_mon {
  coapd_app *app;
  coapd_metrics *reg;
  struct MHD_Daemon *d[COAPD_CONFIG_MAX_METRICS_LISTEN];
  int fd[COAPD_CONFIG_MAX_METRICS_LISTEN]; /* MHD's epoll fds, watched */
  size_t nd;
  coapd_metric *handshakes, *sessions, *up, *started;
  /* libcoap 4.3.1 never sends COAP_EVENT_DTLS_CONNECTED for a server
   * session (docs/libcoap-4.3.1.md §7 #7): each session is followed here
   * until it is established (ok), or deleted before that (failed, if it
   * got past the cookie exchange; uncounted if not). */
  coap_session_t *hs[HS_TRACK_MAX];
  size_t nhs;
};

static void hs_count(coapd_mon *mon, size_t i, int ok) {
  static const char *const okv[] = {"ok"}, *const failedv[] = {"failed"};
  coapd_metric_add(mon->handshakes, ok ? okv : failedv, 1);
  mon->hs[i] = mon->hs[--mon->nhs];
}

/* Count the followed handshakes that are established by now. */
static void hs_poll(coapd_mon *mon) {
  for (size_t i = mon->nhs; i-- > 0;)
    if (coap_session_get_state(mon->hs[i]) == COAP_SESSION_STATE_ESTABLISHED)
      hs_count(mon, i, 1);
}

static void warn_line(const char *line) { coapd_log(COAPD_LOG_WARNING, "%s", line); }

__attribute__((format(printf, 2, 0))) static void mhd_log(void *cls, const char *fmt,
                                                          va_list ap) {
  (void)cls;
  coapd_vlog(COAPD_LOG_WARNING, "[metrics]", fmt, ap);
}

/* ---- HTTP ---------------------------------------------------------------- */

static enum MHD_Result answer(struct MHD_Connection *c, unsigned status, const char *type,
                              void *body, size_t len, enum MHD_ResponseMemoryMode mode,
                              int allow) {
  struct MHD_Response *r = MHD_create_response_from_buffer(len, body, mode);
  if (!r) {
    if (mode == MHD_RESPMEM_MUST_FREE)
      free(body);
    return MHD_NO;
  }
  enum MHD_Result ok = MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
  if (ok == MHD_YES)
    ok = MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
  if (ok == MHD_YES && allow)
    ok = MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
  if (ok == MHD_YES)
    ok = MHD_queue_response(c, status, r);
  MHD_destroy_response(r);
  return ok;
}

static enum MHD_Result text(struct MHD_Connection *c, unsigned status, const char *msg,
                            int allow) {
  return answer(c, status, CT_TEXT, (void *)(uintptr_t)msg, strlen(msg), MHD_RESPMEM_PERSISTENT,
                allow);
}

/* A request body is never wanted: refuse it before reading it. */
static int has_body(struct MHD_Connection *c) {
  const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
  const char *te =
      MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
  return te || (cl && strcmp(cl, "0") != 0);
}

static enum MHD_Result serve_metrics(coapd_mon *mon, struct MHD_Connection *c) {
  char *body = NULL;
  size_t len = 0;
  hs_poll(mon);
  est_err rc = coapd_metrics_render(mon->reg, &body, &len);
  if (rc != EST_OK) {
    coapd_log(COAPD_LOG_ERR, "metrics: rendering failed: %s", est_strerror(rc));
    return text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "rendering failed\n", 0);
  }
  return answer(c, MHD_HTTP_OK, CT_METRICS, body, len, MHD_RESPMEM_MUST_FREE, 0);
}

/* 200 "ok" while the loop runs (it is the loop that answers) and every
 * plugin's check passes; 503 with the first reason otherwise. */
static enum MHD_Result serve_health(coapd_mon *mon, struct MHD_Connection *c) {
  char why[300], line[320];
  if (coapd_metrics_healthy(mon->reg, why, sizeof why))
    return text(c, MHD_HTTP_OK, "ok\n", 0);
  int n = snprintf(line, sizeof line, "%s\n", why);
  size_t len = n < 0 ? 0 : (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
  return answer(c, MHD_HTTP_SERVICE_UNAVAILABLE, CT_TEXT, line, len, MHD_RESPMEM_MUST_COPY, 0);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
  coapd_mon *mon = cls;
  (void)version;
  (void)upload_data;
  (void)con_cls;
  /* Answered at the first call, with the headers: a body is not read. */
  if (*upload_data_size)
    return MHD_NO;
  int metrics = strcmp(url, "/metrics") == 0, health = strcmp(url, "/healthz") == 0;
  if (!metrics && !health)
    return text(c, MHD_HTTP_NOT_FOUND, "not found: GET /metrics or /healthz\n", 0);
  if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
    return text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed: GET or HEAD\n", 1);
  if (has_body(c))
    return text(c, MHD_HTTP_CONTENT_TOO_LARGE, "no request body, please\n", 0);
  return metrics ? serve_metrics(mon, c) : serve_health(mon, c);
}

static void on_ready(void *arg) { (void)MHD_run(arg); }

static est_err start_one(coapd_mon *mon, const coapd_listen *l, char *err, size_t errlen) {
  const coapd_config *cfg = mon->app->cfg;
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  if (l->family == AF_INET6) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(l->port);
    (void)inet_pton(AF_INET6, l->addr, &a->sin6_addr);
  } else {
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    a->sin_family = AF_INET;
    a->sin_port = htons(l->port);
    (void)inet_pton(AF_INET, l->addr, &a->sin_addr);
  }
  unsigned flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG | (l->family == AF_INET6 ? MHD_USE_IPv6 : 0);
  errno = 0;
  struct MHD_Daemon *d = MHD_start_daemon(
      flags, l->port, NULL, NULL, on_request, mon, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
      MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss, MHD_OPTION_CONNECTION_LIMIT, HTTP_CONN_MAX,
      MHD_OPTION_PER_IP_CONNECTION_LIMIT, HTTP_PER_IP_MAX, MHD_OPTION_CONNECTION_TIMEOUT,
      HTTP_TIMEOUT_S, MHD_OPTION_CONNECTION_MEMORY_LIMIT, HTTP_MEMORY_MAX, MHD_OPTION_END);
  if (!d) {
    coapd_errf(err, errlen, "%s:%u: metrics_listen %s %u: cannot listen (%s)", cfg->path,
               l->line, l->addr, (unsigned)l->port, errno ? strerror(errno) : "libmicrohttpd");
    return EST_ERR_ADDR_IN_USE;
  }
  const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_EPOLL_FD);
  int fd = di ? di->epoll_fd : -1;
  if (fd < 0 || coapd_loop_watch(mon->app->loop, NULL, fd, on_ready, d) != 0) {
    MHD_stop_daemon(d);
    coapd_errf(err, errlen, "%s:%u: metrics_listen: libmicrohttpd has no epoll fd to watch",
               cfg->path, l->line);
    return EST_ERR_INTERNAL;
  }
  mon->d[mon->nd] = d;
  mon->fd[mon->nd] = fd;
  mon->nd++;
  coapd_log(COAPD_LOG_NOTICE, "metrics: http://%s%s%s:%u/metrics and /healthz (plain HTTP)",
            l->family == AF_INET6 ? "[" : "", l->addr, l->family == AF_INET6 ? "]" : "",
            (unsigned)l->port);
  return EST_OK;
}

est_err coapd_metrics_start(coapd_app *app, char *err, size_t errlen) {
  coapd_mon *mon = app->mon;
  if (!mon || !app->loop)
    return EST_ERR_INVALID;
  for (size_t i = 0; i < app->cfg->nmetrics_listen; i++) {
    est_err rc = start_one(mon, &app->cfg->metrics_listen[i], err, errlen);
    if (rc != EST_OK)
      return rc;
  }
  return EST_OK;
}

int coapd_metrics_next_ms(coapd_app *app) {
  int best = -1;
  coapd_mon *mon = app ? app->mon : NULL;
  for (size_t i = 0; mon && i < mon->nd; i++) {
    MHD_UNSIGNED_LONG_LONG t = 0;
    if (MHD_get_timeout(mon->d[i], &t) != MHD_YES)
      continue;
    int ms = t > (MHD_UNSIGNED_LONG_LONG)INT_MAX ? INT_MAX : (int)t;
    if (best < 0 || ms < best)
      best = ms;
  }
  return best;
}

void coapd_metrics_due(coapd_app *app) {
  coapd_mon *mon = app ? app->mon : NULL;
  if (mon)
    hs_poll(mon);
  for (size_t i = 0; mon && i < mon->nd; i++) {
    MHD_UNSIGNED_LONG_LONG t = 0;
    if (MHD_get_timeout(mon->d[i], &t) == MHD_YES && t == 0)
      (void)MHD_run(mon->d[i]);
  }
}

void coapd_metrics_stop(coapd_app *app) {
  coapd_mon *mon = app ? app->mon : NULL;
  for (size_t i = 0; mon && i < mon->nd; i++) {
    if (app->loop)
      (void)coapd_loop_unwatch(app->loop, NULL, mon->fd[i]);
    MHD_stop_daemon(mon->d[i]);
  }
  if (mon)
    mon->nd = 0;
}

/* ---- the host's metrics -------------------------------------------------- */

void coapd_metrics_event(coapd_app *app, coap_session_t *session, int event) {
  coapd_mon *mon = app ? app->mon : NULL;
  size_t i = 0;
  if (!mon || !session)
    return;
  while (i < mon->nhs && mon->hs[i] != session)
    i++;
  switch (event) {
  case COAP_EVENT_SERVER_SESSION_NEW:
    coapd_metric_add(mon->sessions, NULL, 1);
    /* It starts as a HELLO session and turns SERVER with the cookie. */
    if (i == mon->nhs && mon->nhs < HS_TRACK_MAX &&
        coap_session_get_state(session) != COAP_SESSION_STATE_ESTABLISHED)
      mon->hs[mon->nhs++] = session;
    break;
  case COAP_EVENT_DTLS_CLOSED:
  case COAP_EVENT_DTLS_ERROR:
    /* An alert: the state still says whether the handshake had finished
     * (perhaps since the last poll); by SESSION_DEL it is gone. */
    if (i < mon->nhs && coap_session_get_type(session) == COAP_SESSION_TYPE_SERVER)
      hs_count(mon, i, coap_session_get_state(session) == COAP_SESSION_STATE_ESTABLISHED);
    break;
  case COAP_EVENT_SERVER_SESSION_DEL:
    coapd_metric_add(mon->sessions, NULL, -1);
    if (i >= mon->nhs)
      break;
    if (coap_session_get_type(session) == COAP_SESSION_TYPE_SERVER)
      hs_count(mon, i, 0); /* dropped or timed out in the handshake */
    else /* a ClientHello that never returned the cookie: no handshake */
      mon->hs[i] = mon->hs[--mon->nhs];
    break;
  default:
    break;
  }
}

est_err coapd_metrics_setup(coapd_app *app, char *err, size_t errlen) {
  static const char *const result[] = {"result"};
  const struct {
    coapd_metric_desc d;
    size_t off;
  } host[] = {
      {{"coapd_up", "1 while coapd runs its loop.", COAPD_METRIC_GAUGE, 0, NULL, 0, NULL},
       offsetof(coapd_mon, up)},
      {{"process_start_time_seconds", "When coapd started, in seconds since the Unix epoch.",
        COAPD_METRIC_GAUGE, 0, NULL, 0, NULL},
       offsetof(coapd_mon, started)},
      {{"coapd_dtls_handshakes_total", "DTLS handshakes finished, by result (ok or failed).",
        COAPD_METRIC_COUNTER, 1, result, 0, NULL},
       offsetof(coapd_mon, handshakes)},
      {{"coapd_dtls_sessions",
        "Server sessions libcoap holds now, handshakes in progress included.",
        COAPD_METRIC_GAUGE, 0, NULL, 0, NULL},
       offsetof(coapd_mon, sessions)},
  };
  char why[256];
  est_err rc = EST_ERR_NOMEM;
  coapd_mon *mon = calloc(1, sizeof *mon);
  if (!mon || (rc = coapd_metrics_new(warn_line, &mon->reg)) != EST_OK) {
    coapd_errf(err, errlen, "metrics: %s", est_strerror(rc));
    free(mon);
    return rc;
  }
  mon->app = app;
  for (size_t i = 0; i < sizeof host / sizeof host[0]; i++) {
    coapd_metric **slot = (coapd_metric **)(void *)((char *)mon + host[i].off);
    rc = coapd_metrics_register(mon->reg, NULL, &host[i].d, slot, why, sizeof why);
    if (rc != EST_OK) {
      coapd_errf(err, errlen, "metrics: %s", why);
      coapd_metrics_free(mon->reg);
      free(mon);
      return rc;
    }
  }
  static const char *const ok[] = {"ok"}, *const failed[] = {"failed"};
  /* Both results show from the start, as 0. */
  coapd_metric_add(mon->handshakes, ok, 0);
  coapd_metric_add(mon->handshakes, failed, 0);
  coapd_metric_set(mon->up, NULL, 1);
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  coapd_metric_set(mon->started, NULL, (double)ts.tv_sec + (double)ts.tv_nsec / 1e9);
  app->mon = mon;
  return EST_OK;
}

void coapd_metrics_forget(coapd_app *app, const void *owner) {
  if (app && app->mon)
    coapd_metrics_drop_owner(app->mon->reg, owner);
}

void coapd_metrics_fini(coapd_app *app) {
  if (!app || !app->mon)
    return;
  coapd_metrics_stop(app);
  coapd_metrics_free(app->mon->reg);
  free(app->mon);
  app->mon = NULL;
}

/* ---- the host API, ABI 1.3 ----------------------------------------------- */

static const char *plugin_name(const coapd_host *h) {
  return h && h->desc && h->desc->name ? h->desc->name : "plugin";
}

static int api_metric_register(coapd_host *h, const coapd_metric_desc *d, coapd_metric **out) {
  char why[256] = "";
  if (out)
    *out = NULL;
  if (!h || !h->app->mon)
    return -1;
  est_err rc = coapd_metrics_register(h->app->mon->reg, h, d, out, why, sizeof why);
  if (rc != EST_OK) {
    coapd_log(COAPD_LOG_WARNING, "[%s] metric_register: %s", plugin_name(h),
              why[0] ? why : est_strerror(rc));
    return -1;
  }
  return 0;
}

static int api_collect_register(coapd_host *h, coapd_collect_cb cb, void *arg) {
  if (!h || !h->app->mon)
    return -1;
  return coapd_metrics_collect_add(h->app->mon->reg, h, cb, arg) == EST_OK ? 0 : -1;
}

static int api_health_register(coapd_host *h, coapd_health_cb check, void *arg) {
  if (!h || !h->app->mon)
    return -1;
  return coapd_metrics_health_add(h->app->mon->reg, h, plugin_name(h), check, arg) == EST_OK
             ? 0
             : -1;
}

void coapd_metrics_api(coapd_host_api *a) {
  a->metric_register = api_metric_register;
  a->metric_add = coapd_metric_add;
  a->metric_set = coapd_metric_set;
  a->metric_observe = coapd_metric_observe;
  a->collect_register = api_collect_register;
  a->health_register = api_health_register;
}
