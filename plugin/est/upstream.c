/* The registrar's HTTPS EST client on coapd's loop (upstream.h,
 * docs/decisions.md §19). libcurl does HTTP and TLS; this file only sets
 * up transfers, drives curl's multi interface from the loop and
 * translates answers. */
#include "upstream.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <gnutls/gnutls.h>

#include "metrics.h"
#include "pki.h"
#include "proto/http.h"
#include "status.h"

/* The header through which the registrar names the device
 * (docs/decisions.md §17). */
#define HDR_DEVICE "EST-Device-Chain"
#define MAX_PARTS 4u
#define EVENTS_MAX 16
/* Longest Retry-After we pass on as Max-Age (a day). */
#define RETRY_AFTER_MAX 86400u

typedef enum xfer_kind { XFER_FETCH, XFER_ENROLL } xfer_kind;

typedef struct xfer {
  upstream *u;
  struct xfer *prev, *next;
  CURL *easy;
  struct curl_slist *hdrs;
  xfer_kind kind;
  est_fn fn;
  char op[16];
  /* The answer. May hold a private key (serverkeygen): wiped at free. */
  uint8_t *body;
  size_t len, cap;
  bool too_big;
  unsigned retry_after; /* 0: none */
  char err[CURL_ERROR_SIZE];
  /* Who waits. */
  enroll_job *job;
  void (*done)(void *arg);
  upstream_fetch_cb fetched;
  void *arg;
} xfer;

struct upstream {
  const coapd_host_api *api;
  char url[UPSTREAM_URL_MAX + 1];
  char *ca_file, *cert_file, *key_file;
  unsigned timeout_s;
  CURLM *multi;
  int ep;      /* curl's sockets and the timer; the host watches it */
  int tfd;     /* curl's timer */
  bool watched;
  bool curl_ready;
  xfer *xfers; /* every transfer running */
  est_metrics *metrics; /* borrowed, or NULL */
  size_t n;
};

/* ---- small helpers ------------------------------------------------------ */

static void lg(const upstream *u, coapd_log_level lv, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void lg(const upstream *u, coapd_log_level lv, const char *fmt, ...) {
  char msg[768];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  u->api->log(u->api->host, lv, "upstream: %s", msg);
}

int upstream_url_check(const char *url, char *why, size_t why_len) {
  const char *why_not = NULL;
  if (!url || strlen(url) > UPSTREAM_URL_MAX)
    why_not = "at most 512 characters";
  else if (strncasecmp(url, "https://", 8) != 0)
    why_not = "must start with https:// (RFC 7030 §3.3: EST runs over TLS)";
  else if (url[8] == '\0' || url[8] == '/')
    why_not = "names no host";
  else if (strpbrk(url, "?#@ \t") != NULL)
    why_not = "must not have a query, a fragment, user info or blanks";
  else if (url[strlen(url) - 1] == '/')
    why_not = "must not end in '/' (the operation is appended)";
  if (why_not && why && why_len)
    snprintf(why, why_len, "%s", why_not);
  return why_not ? -1 : 0;
}

/* Base64 (RFC 4648 §4, no line breaks) of @p n bytes; malloc. */
static char *b64(const uint8_t *d, size_t n) {
  gnutls_datum_t in = {(unsigned char *)(uintptr_t)d, (unsigned)n}, out = {NULL, 0};
  if (n > UPSTREAM_BODY_MAX || gnutls_base64_encode2(&in, &out) < 0)
    return NULL;
  char *s = malloc(out.size + 1);
  if (s) {
    memcpy(s, out.data, out.size);
    s[out.size] = '\0';
  }
  gnutls_free(out.data);
  return s;
}

/* RFC 8951 §3: the body is base64, line breaks and all, whatever
 * Content-Transfer-Encoding says. *der is malloc()ed; @p secret wipes the
 * intermediate copy. */
static est_err unb64(const char *s, size_t n, bool secret, uint8_t **der, size_t *len) {
  gnutls_datum_t in = {(unsigned char *)(uintptr_t)s, (unsigned)n}, out = {NULL, 0};
  *der = NULL;
  *len = 0;
  if (n == 0 || n > UPSTREAM_BODY_MAX || gnutls_base64_decode2(&in, &out) < 0 ||
      out.size == 0) {
    gnutls_free(out.data);
    return EST_ERR_MALFORMED;
  }
  *der = malloc(out.size);
  if (*der) {
    memcpy(*der, out.data, out.size);
    *len = out.size;
  }
  if (secret)
    explicit_bzero(out.data, out.size);
  gnutls_free(out.data);
  return *der ? EST_OK : EST_ERR_NOMEM;
}

/* The first line of a text/plain refusal, printable ASCII only, for the
 * device's diagnostic and the log. */
static void reason_of(const xfer *x, char *out, size_t cap) {
  size_t k = 0;
  for (size_t i = 0; x->body && i < x->len && k + 1 < cap; i++) {
    char c = (char)x->body[i];
    if (c == '\r' || c == '\n')
      break;
    out[k++] = c >= 0x20 && c < 0x7f ? c : '?';
  }
  out[k] = '\0';
}

/* ---- transfers ---------------------------------------------------------- */

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg) {
  xfer *x = arg;
  size_t n = size * nmemb;
  if (n > UPSTREAM_BODY_MAX - x->len) {
    x->too_big = true;
    return 0; /* curl stops with CURLE_WRITE_ERROR */
  }
  if (x->len + n > x->cap) {
    size_t cap = x->cap ? x->cap : 4096;
    while (cap < x->len + n)
      cap *= 2;
    if (cap > UPSTREAM_BODY_MAX)
      cap = UPSTREAM_BODY_MAX;
    uint8_t *b = malloc(cap);
    if (!b)
      return 0;
    /* Not realloc: the old block may hold key material and is wiped. */
    if (x->len)
      memcpy(b, x->body, x->len);
    pki_secret_free(x->body, x->cap);
    x->body = b;
    x->cap = cap;
  }
  memcpy(x->body + x->len, data, n);
  x->len += n;
  return n;
}

/* RFC 9110 §10.2.3: delay-seconds or an HTTP-date. */
static size_t on_header(char *data, size_t size, size_t nmemb, void *arg) {
  xfer *x = arg;
  size_t n = size * nmemb;
  static const char name[] = "retry-after:";
  if (n > sizeof name && n < 256 && strncasecmp(data, name, sizeof name - 1) == 0) {
    char v[256];
    memcpy(v, data + sizeof name - 1, n - (sizeof name - 1));
    v[n - (sizeof name - 1)] = '\0';
    char *p = v + strspn(v, " \t"), *end = NULL;
    unsigned long secs = strtoul(p, &end, 10);
    if (end != p && *p >= '0' && *p <= '9') {
      x->retry_after = secs > RETRY_AFTER_MAX ? RETRY_AFTER_MAX : (unsigned)secs;
    } else {
      p[strcspn(p, "\r\n")] = '\0';
      time_t at = curl_getdate(p, NULL), now = time(NULL);
      if (at != (time_t)-1)
        x->retry_after = at <= now ? 1u
                         : at - now > RETRY_AFTER_MAX ? RETRY_AFTER_MAX
                                                      : (unsigned)(at - now);
    }
  }
  return n;
}

static void xfer_free(xfer *x) {
  if (!x)
    return;
  if (x->easy) {
    if (x->u && x->u->multi)
      curl_multi_remove_handle(x->u->multi, x->easy);
    curl_easy_cleanup(x->easy);
  }
  curl_slist_free_all(x->hdrs);
  pki_secret_free(x->body, x->cap);
  free(x);
}

static void unlink_xfer(xfer *x) {
  upstream *u = x->u;
  if (x->prev)
    x->prev->next = x->next;
  else if (u->xfers == x)
    u->xfers = x->next;
  if (x->next)
    x->next->prev = x->prev;
  x->prev = x->next = NULL;
  u->n--;
}

/* One easy handle with everything every request shares. */
static xfer *xfer_new(upstream *u, const char *op) {
  char url[UPSTREAM_URL_MAX + 32];
  xfer *x = calloc(1, sizeof *x);
  if (!x)
    return NULL;
  x->u = u;
  snprintf(x->op, sizeof x->op, "%s", op);
  snprintf(url, sizeof url, "%s/%s", u->url, op);
  x->easy = curl_easy_init();
  if (!x->easy)
    goto fail;
  CURL *e = x->easy;
  bool ok = curl_easy_setopt(e, CURLOPT_URL, url) == CURLE_OK &&
            curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "https") == CURLE_OK &&
            curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) == CURLE_OK &&
            curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L) == CURLE_OK &&
            curl_easy_setopt(e, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2) ==
                CURLE_OK &&
            curl_easy_setopt(e, CURLOPT_CAINFO, u->ca_file) == CURLE_OK &&
            curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L) == CURLE_OK &&
            curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L) == CURLE_OK &&
            curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)u->timeout_s * 1000L) == CURLE_OK &&
            curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                             (long)(u->timeout_s < 10 ? u->timeout_s : 10) * 1000L) ==
                CURLE_OK &&
            curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body) == CURLE_OK &&
            curl_easy_setopt(e, CURLOPT_WRITEDATA, x) == CURLE_OK &&
            curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header) == CURLE_OK &&
            curl_easy_setopt(e, CURLOPT_HEADERDATA, x) == CURLE_OK &&
            curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->err) == CURLE_OK &&
            curl_easy_setopt(e, CURLOPT_PRIVATE, x) == CURLE_OK &&
            /* Under the upstream's own idle close (our https_timeout: 10 s),
             * so a connection kept for reuse is not a half-closed one. */
            curl_easy_setopt(e, CURLOPT_MAXAGE_CONN, 5L) == CURLE_OK;
  /* REG-2: the upstream knows the registrar by its RA certificate. */
  if (ok && u->cert_file)
    ok = curl_easy_setopt(e, CURLOPT_SSLCERT, u->cert_file) == CURLE_OK &&
         curl_easy_setopt(e, CURLOPT_SSLCERTTYPE, "PEM") == CURLE_OK &&
         curl_easy_setopt(e, CURLOPT_SSLKEY, u->key_file) == CURLE_OK &&
         curl_easy_setopt(e, CURLOPT_SSLKEYTYPE, "PEM") == CURLE_OK;
  if (ok)
    return x;
fail:
  xfer_free(x);
  return NULL;
}

static bool add_header(struct curl_slist **l, const char *h) {
  struct curl_slist *n = curl_slist_append(*l, h);
  if (n)
    *l = n;
  return n != NULL;
}

/* The POST of a forwarded job: the CSR as base64 (RFC 8951), the device's
 * chain in EST-Device-Chain (docs/decisions.md §17). */
static est_err set_post(xfer *x, const enroll_forward *f) {
  est_err rc = EST_OK;
  char *body = b64(f->csr, f->csr_len), *hdr = NULL;
  size_t cap = sizeof HDR_DEVICE ": " + 1, at = 0;
  if (!body)
    return EST_ERR_NOMEM;
  char *certs[ENROLL_CHAIN_MAX] = {0};
  for (size_t i = 0; i < f->chain_n; i++) {
    if (!(certs[i] = b64(f->chain[i], f->chain_len[i]))) {
      rc = EST_ERR_NOMEM;
      goto out;
    }
    cap += strlen(certs[i]) + 2;
  }
  if (f->chain_n) {
    if (!(hdr = malloc(cap))) {
      rc = EST_ERR_NOMEM;
      goto out;
    }
    at = (size_t)snprintf(hdr, cap, HDR_DEVICE ": ");
    for (size_t i = 0; i < f->chain_n; i++)
      at += (size_t)snprintf(hdr + at, cap - at, "%s%s", i ? ", " : "", certs[i]);
  }
  /* RFC 7030 §4.2.1 asks for Content-Transfer-Encoding; RFC 8951 lets
   * readers ignore it. */
  if (!add_header(&x->hdrs, "Content-Type: application/pkcs10") ||
      !add_header(&x->hdrs, "Content-Transfer-Encoding: base64") ||
      (hdr && !add_header(&x->hdrs, hdr)))
    rc = EST_ERR_NOMEM;
  if (rc == EST_OK &&
      (curl_easy_setopt(x->easy, CURLOPT_HTTPHEADER, x->hdrs) != CURLE_OK ||
       curl_easy_setopt(x->easy, CURLOPT_POSTFIELDSIZE, (long)strlen(body)) != CURLE_OK ||
       curl_easy_setopt(x->easy, CURLOPT_COPYPOSTFIELDS, body) != CURLE_OK))
    rc = EST_ERR_NOMEM;
out:
  for (size_t i = 0; i < f->chain_n; i++)
    free(certs[i]);
  free(hdr);
  free(body);
  return rc;
}

/* ---- answers ------------------------------------------------------------ */

static bool type_is(xfer *x, const char *type) {
  char *ct = NULL;
  return curl_easy_getinfo(x->easy, CURLINFO_CONTENT_TYPE, &ct) == CURLE_OK &&
         proto_http_type_is(ct, type);
}

/* RFC 7030 §4.4.2: a PKCS#8 part and a PKCS#7 part, each base64. */
static est_err split_keygen(xfer *x, uint8_t **key, size_t *key_len, uint8_t **p7,
                            size_t *p7_len, const char **why) {
  char *ct = NULL, boundary[PROTO_HTTP_BOUNDARY_MAX + 1];
  proto_http_part parts[MAX_PARTS];
  size_t n = 0;
  *key = *p7 = NULL;
  *why = "serverkeygen answer is not multipart/mixed with a key and a certificate part";
  if (curl_easy_getinfo(x->easy, CURLINFO_CONTENT_TYPE, &ct) != CURLE_OK || !ct ||
      proto_http_boundary(ct, boundary, sizeof boundary) != EST_OK ||
      proto_http_multipart((const char *)x->body, x->len, boundary, parts, MAX_PARTS, &n) !=
          EST_OK)
    return EST_ERR_MALFORMED;
  for (size_t i = 0; i < n; i++) {
    char t[128];
    size_t tl = parts[i].type_len < sizeof t - 1 ? parts[i].type_len : sizeof t - 1;
    memcpy(t, parts[i].type, tl);
    t[tl] = '\0';
    if (proto_http_type_is(t, "application/pkcs8") && !*key) {
      if (unb64(parts[i].body, parts[i].body_len, true, key, key_len) != EST_OK)
        break;
    } else if (proto_http_type_is(t, "application/pkcs7-mime") && !*p7) {
      /* smime-type=server-generated-key is an encrypted key (RFC 7030
       * §4.4.2), which we do not relay (docs/decisions.md §19). */
      if (strstr(t, "server-generated-key")) {
        *why = "the upstream sent an encrypted key, which is not relayed";
        break;
      }
      if (unb64(parts[i].body, parts[i].body_len, false, p7, p7_len) != EST_OK)
        break;
    }
  }
  if (*key && *p7)
    return EST_OK;
  pki_secret_free(*key, *key ? *key_len : 0);
  free(*p7);
  *key = *p7 = NULL;
  return EST_ERR_MALFORMED;
}

/* A 200 for simpleenroll/simplereenroll/serverkeygen, into the job. */
static void take_issued(upstream *u, xfer *x) {
  uint8_t *p7 = NULL, *key = NULL, *cert = NULL;
  size_t p7_len = 0, key_len = 0, cert_len = 0;
  const char *why = "the upstream's certificate answer is not a base64 PKCS#7";
  est_err rc;
  if (x->fn == EST_FN_SKG || x->fn == EST_FN_SKC)
    rc = split_keygen(x, &key, &key_len, &p7, &p7_len, &why);
  else
    rc = type_is(x, "application/pkcs7-mime")
             ? unb64((const char *)x->body, x->len, false, &p7, &p7_len)
             : EST_ERR_MALFORMED;
  if (rc == EST_OK && (rc = pki_p7_end_entity(p7, p7_len, &cert, &cert_len)) != EST_OK)
    why = "the upstream's PKCS#7 does not hold exactly one end-entity certificate";
  free(p7);
  if (rc != EST_OK) {
    pki_secret_free(key, key_len);
    lg(u, COAPD_LOG_ERR, "%s: %s", x->op, why);
    enroll_job_upstream_refused(x->job, EST_ERR_UNAVAILABLE, UPSTREAM_RETRY,
                                "upstream CA answer unusable, retry later");
    return;
  }
  enroll_job_upstream_issued(x->job, cert, cert_len, key, key_len);
}

/* What an enroll transfer ended with, into its job (REG-6, REG-15). */
static void finish_enroll(upstream *u, xfer *x, CURLcode cc, long status, const char *client) {
  char reason[EST_DIAG_MAX - 16], diag[EST_DIAG_MAX];
  if (cc != CURLE_OK || status == 0) {
    /* Down, slow, TLS refused: the device comes back later. */
    lg(u, COAPD_LOG_WARNING, "%s for '%s': %s", x->op, client,
       x->too_big ? "answer over 256 KiB" : x->err[0] ? x->err : curl_easy_strerror(cc));
    enroll_job_upstream_refused(x->job, EST_ERR_UNAVAILABLE, UPSTREAM_RETRY,
                                "upstream CA unreachable, retry later");
    return;
  }
  est_err rc = status_from_http((unsigned)status);
  if (rc == EST_OK) {
    take_issued(u, x);
    return;
  }
  reason_of(x, reason, sizeof reason);
  unsigned max_age = x->retry_after;
  if (rc == EST_ERR_PENDING) {
    /* RFC 7030 §4.2.3 → RFC 9148 §4.7: 202 + Retry-After is 5.03 + Max-Age. */
    if (max_age == 0)
      max_age = UPSTREAM_RETRY;
    snprintf(diag, sizeof diag, "waiting for the upstream CA's operator");
    lg(u, COAPD_LOG_INFO, "%s for '%s': 202, retry after %u s", x->op, client, max_age);
  } else if (rc == EST_ERR_UNAVAILABLE) {
    if (max_age == 0)
      max_age = UPSTREAM_RETRY;
    snprintf(diag, sizeof diag, "upstream CA unavailable, retry later");
    lg(u, COAPD_LOG_WARNING, "%s for '%s': HTTP %ld (%s)", x->op, client, status,
       reason[0] ? reason : "no reason given");
  } else {
    max_age = 0;
    snprintf(diag, sizeof diag, "upstream CA: %s", reason[0] ? reason : "refused");
    lg(u, status == 401 || status == 403 ? COAPD_LOG_WARNING : COAPD_LOG_NOTICE,
       "%s for '%s': HTTP %ld (%s)", x->op, client, status,
       reason[0] ? reason : "no reason given");
  }
  enroll_job_upstream_refused(x->job, rc, max_age, diag);
}

/* A GET of cacerts or csrattrs: EST_OK and the DER, or why not. */
static est_err finish_fetch(xfer *x, CURLcode cc, long status, uint8_t **der, size_t *len,
                            char *why, size_t why_len) {
  *der = NULL;
  *len = 0;
  if (cc != CURLE_OK || status == 0) {
    snprintf(why, why_len, "%s", x->too_big ? "answer over 256 KiB"
                                 : x->err[0] ? x->err : curl_easy_strerror(cc));
    return EST_ERR_UNAVAILABLE;
  }
  if (status == 204 || status == 404) {
    snprintf(why, why_len, "HTTP %ld: none", status);
    return EST_ERR_NOT_FOUND;
  }
  if (status != 200) {
    char reason[128];
    reason_of(x, reason, sizeof reason);
    snprintf(why, why_len, "HTTP %ld (%s)", status, reason[0] ? reason : "no reason given");
    return EST_ERR_UNAVAILABLE;
  }
  const char *want = strcmp(x->op, "cacerts") == 0 ? "application/pkcs7-mime"
                                                   : "application/csrattrs";
  if (!type_is(x, want)) {
    snprintf(why, why_len, "answer is not %s", want);
    return EST_ERR_UNAVAILABLE;
  }
  if (unb64((const char *)x->body, x->len, false, der, len) != EST_OK) {
    snprintf(why, why_len, "answer is not base64");
    return EST_ERR_UNAVAILABLE;
  }
  return EST_OK;
}

/* ---- curl on the loop --------------------------------------------------- */

/* Every transfer curl says is done: answer whoever waits. */
static void reap(upstream *u) {
  CURLMsg *m;
  int left;
  while ((m = curl_multi_info_read(u->multi, &left)) != NULL) {
    if (m->msg != CURLMSG_DONE)
      continue;
    xfer *x = NULL;
    long status = 0;
    CURLcode cc = m->data.result;
    curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
    if (!x)
      continue;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
    unlink_xfer(x);
    est_metrics_upstream(u->metrics, x->op, cc == CURLE_OK ? (unsigned)status : 0u);
    if (x->kind == XFER_ENROLL) {
      enroll_forward f;
      enroll_job_forward(x->job, &f);
      finish_enroll(u, x, cc, status, f.client ? f.client : "?");
      void (*done)(void *) = x->done;
      void *arg = x->arg;
      xfer_free(x);
      done(arg);
    } else {
      uint8_t *der = NULL;
      size_t len = 0;
      char why[CURL_ERROR_SIZE + 64] = "";
      est_err rc = finish_fetch(x, cc, status, &der, &len, why, sizeof why);
      upstream_fetch_cb cb = x->fetched;
      void *arg = x->arg;
      xfer_free(x);
      cb(arg, rc, der, len, why);
    }
  }
}

static void on_ready(void *arg) {
  upstream *u = arg;
  struct epoll_event ev[EVENTS_MAX];
  int running = 0;
  int n = epoll_wait(u->ep, ev, EVENTS_MAX, 0);
  for (int i = 0; i < n; i++) {
    if (ev[i].data.fd == u->tfd) {
      uint64_t ticks;
      if (read(u->tfd, &ticks, sizeof ticks) < 0 && errno != EAGAIN)
        lg(u, COAPD_LOG_WARNING, "timer: %s", strerror(errno));
      curl_multi_socket_action(u->multi, CURL_SOCKET_TIMEOUT, 0, &running);
      continue;
    }
    int flags = (ev[i].events & EPOLLIN ? CURL_CSELECT_IN : 0) |
                (ev[i].events & EPOLLOUT ? CURL_CSELECT_OUT : 0) |
                (ev[i].events & (EPOLLERR | EPOLLHUP) ? CURL_CSELECT_ERR : 0);
    curl_multi_socket_action(u->multi, ev[i].data.fd, flags, &running);
  }
  reap(u);
}

/* CURLMOPT_SOCKETFUNCTION: mirror what curl wants into our epoll set. */
static int on_socket(CURL *e, curl_socket_t s, int what, void *arg, void *sockp) {
  upstream *u = arg;
  (void)e;
  (void)sockp;
  if (what == CURL_POLL_REMOVE) {
    epoll_ctl(u->ep, EPOLL_CTL_DEL, s, NULL);
    return 0;
  }
  struct epoll_event ev = {.events = (what & CURL_POLL_IN ? EPOLLIN : 0u) |
                                     (what & CURL_POLL_OUT ? EPOLLOUT : 0u),
                           .data.fd = s};
  if (epoll_ctl(u->ep, EPOLL_CTL_MOD, s, &ev) != 0 && errno == ENOENT &&
      epoll_ctl(u->ep, EPOLL_CTL_ADD, s, &ev) != 0) {
    lg(u, COAPD_LOG_WARNING, "epoll: %s", strerror(errno));
    return -1;
  }
  return 0;
}

/* CURLMOPT_TIMERFUNCTION: curl's one timer is our timerfd. Acting on it
 * here is not allowed, so 0 ms becomes "as soon as the loop looks". */
static int on_timer(CURLM *m, long ms, void *arg) {
  upstream *u = arg;
  (void)m;
  struct itimerspec it = {{0, 0}, {0, 0}};
  if (ms >= 0) {
    it.it_value.tv_sec = ms / 1000;
    it.it_value.tv_nsec = ms % 1000 ? (ms % 1000) * 1000000L : (ms ? 0 : 1);
  }
  return timerfd_settime(u->tfd, 0, &it, NULL) == 0 ? 0 : -1;
}

static est_err start(upstream *u, xfer *x) {
  if (curl_multi_add_handle(u->multi, x->easy) != CURLM_OK)
    return EST_ERR_UNAVAILABLE;
  x->next = u->xfers;
  if (x->next)
    x->next->prev = x;
  u->xfers = x;
  u->n++;
  return EST_OK;
}

/* ---- the interface ------------------------------------------------------ */

est_err upstream_open(const upstream_config *cfg, const coapd_host_api *api, upstream **out,
                      char *diag, size_t diag_len) {
  est_err rc = EST_OK;
  char why[128];
  if (!cfg || !api || !out || !cfg->ca_file || !cfg->timeout_s ||
      (!cfg->cert_file) != (!cfg->key_file))
    return EST_ERR_INVALID;
  if (upstream_url_check(cfg->url, why, sizeof why) != 0) {
    snprintf(diag, diag_len, "upstream '%s': %s", cfg->url ? cfg->url : "", why);
    return EST_ERR_CONFIG;
  }
  upstream *u = calloc(1, sizeof *u);
  if (!u)
    return EST_ERR_NOMEM;
  u->api = api;
  u->ep = u->tfd = -1;
  snprintf(u->url, sizeof u->url, "%s", cfg->url);
  u->timeout_s = cfg->timeout_s;
  u->ca_file = strdup(cfg->ca_file);
  u->cert_file = cfg->cert_file ? strdup(cfg->cert_file) : NULL;
  u->key_file = cfg->key_file ? strdup(cfg->key_file) : NULL;
  if (!u->ca_file || (cfg->cert_file && (!u->cert_file || !u->key_file))) {
    rc = EST_ERR_NOMEM;
    goto out;
  }
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    snprintf(diag, diag_len, "libcurl does not start");
    rc = EST_ERR_INTERNAL;
    goto out;
  }
  u->curl_ready = true;
  u->ep = epoll_create1(EPOLL_CLOEXEC);
  u->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = u->tfd};
  if (u->ep < 0 || u->tfd < 0 || epoll_ctl(u->ep, EPOLL_CTL_ADD, u->tfd, &ev) != 0) {
    snprintf(diag, diag_len, "upstream: epoll/timerfd: %s", strerror(errno));
    rc = EST_ERR_IO;
    goto out;
  }
  u->multi = curl_multi_init();
  if (!u->multi || curl_multi_setopt(u->multi, CURLMOPT_SOCKETFUNCTION, on_socket) != CURLM_OK ||
      curl_multi_setopt(u->multi, CURLMOPT_SOCKETDATA, u) != CURLM_OK ||
      curl_multi_setopt(u->multi, CURLMOPT_TIMERFUNCTION, on_timer) != CURLM_OK ||
      curl_multi_setopt(u->multi, CURLMOPT_TIMERDATA, u) != CURLM_OK) {
    rc = EST_ERR_NOMEM;
    goto out;
  }
  if (api->watch_fd(api->host, u->ep, on_ready, u) != 0) {
    snprintf(diag, diag_len, "upstream: the host does not watch our fd");
    rc = EST_ERR_INTERNAL;
    goto out;
  }
  u->watched = true;
  *out = u;
  u = NULL;
out:
  upstream_close(u);
  return rc;
}

void upstream_close(upstream *u) {
  if (!u)
    return;
  while (u->xfers) {
    xfer *x = u->xfers;
    unlink_xfer(x);
    xfer_free(x);
  }
  if (u->watched)
    u->api->unwatch_fd(u->api->host, u->ep);
  if (u->multi)
    curl_multi_cleanup(u->multi);
  if (u->tfd >= 0)
    close(u->tfd);
  if (u->ep >= 0)
    close(u->ep);
  if (u->curl_ready)
    curl_global_cleanup();
  free(u->ca_file);
  free(u->cert_file);
  free(u->key_file);
  free(u);
}

est_err upstream_fetch_now(upstream *u, const char *op, uint8_t **der, size_t *len, char *why,
                           size_t why_len) {
  *der = NULL;
  *len = 0;
  xfer *x = xfer_new(u, op);
  if (!x)
    return EST_ERR_NOMEM;
  x->kind = XFER_FETCH;
  /* Start-up only: the loop is not running yet. */
  CURLcode cc = curl_easy_perform(x->easy);
  long status = 0;
  curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
  est_err rc = finish_fetch(x, cc, status, der, len, why, why_len);
  xfer_free(x);
  return rc;
}

est_err upstream_fetch(upstream *u, const char *op, upstream_fetch_cb cb, void *arg) {
  xfer *x = xfer_new(u, op);
  if (!x)
    return EST_ERR_NOMEM;
  x->kind = XFER_FETCH;
  x->fetched = cb;
  x->arg = arg;
  est_err rc = start(u, x);
  if (rc != EST_OK)
    xfer_free(x);
  return rc;
}

est_err upstream_enroll(upstream *u, enroll_job *job, void (*done)(void *arg), void *arg) {
  enroll_forward f;
  enroll_job_forward(job, &f);
  const char *op = proto_http_op(f.fn == EST_FN_SKC ? EST_FN_SKG : f.fn);
  if (!op || f.fn == EST_FN_CRTS || f.fn == EST_FN_ATT)
    return EST_ERR_INVALID;
  xfer *x = xfer_new(u, op);
  if (!x)
    return EST_ERR_UNAVAILABLE;
  x->kind = XFER_ENROLL;
  x->fn = f.fn;
  x->job = job;
  x->done = done;
  x->arg = arg;
  est_err rc = set_post(x, &f);
  if (rc == EST_OK)
    rc = start(u, x);
  if (rc != EST_OK) {
    xfer_free(x);
    return EST_ERR_UNAVAILABLE;
  }
  return EST_OK;
}

size_t upstream_in_flight(const upstream *u) { return u ? u->n : 0; }

void upstream_set_metrics(upstream *u, est_metrics *m) {
  if (u)
    u->metrics = m;
}
