/* EST over HTTPS, RFC 7030 (https.h, docs/decisions.md §16): the HTTP
 * edge of the enrollment path. It translates HTTP to and from policy.c and
 * enroll.c and decides nothing itself. */
#include "https.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <microhttpd.h>

#include "est_plugin.h"
#include "metrics.h"
#include "policy.h"
#include "proto/http.h"
#include "proto/multipart.h"
#include "status.h"
#include "common/token.h"

#define CT_TEXT "text/plain; charset=utf-8"
#define CT_P7 "application/pkcs7-mime; smime-type=certs-only"
#define CT_ATTRS "application/csrattrs"
#define CT_PKCS8 "application/pkcs8"
/* base64 has no '-', so this cannot occur inside a part (RFC 2046 §5.1.1). */
#define SKG_BOUNDARY "est-coaps-serverkeygen-boundary"
#define PEM_MAX (1024u * 1024u)
/* docs/decisions.md §17: how an RA names the device it vouches for. */
#define HDR_DEVICE "EST-Device-Chain"
#define BINDING_MAX 64
#define CHAIN_MAX 16
/* Runs of MHD_run per wake-up while GnuTLS still holds decrypted bytes. */
#define RUN_AGAIN_MAX 8
/* Timeouts are looked at at least this often (https_tick). */
#define TICK_MAX_MS 1000u

struct https_srv {
  est_plugin *p;
  https_config cfg;
  struct MHD_Daemon *d[HTTPS_LISTEN_MAX];
  int fd[HTTPS_LISTEN_MAX]; /* their epoll fds, watched by the host loop */
  size_t nd;
  char *cert_pem, *key_pem, *trust_pem; /* held while the daemons run */
  /* https_key on a token (docs/decisions.md §20): GnuTLS asks for the
   * certificate and key per handshake (token_cert). */
  gnutls_pcert_st pcert[8];
  unsigned npcert;
  gnutls_privkey_t key;
  char *pin;
  int kick; /* eventfd: run again on the next loop pass (run_daemon) */
};

typedef struct hjob hjob;

/* One HTTP request from its headers to its answer (MHD's con_cls). */
typedef struct hreq {
  https_srv *h;
  struct MHD_Daemon *d;
  struct MHD_Connection *c;
  const char *op;
  est_fn fn;
  uint64_t t0_us;
  char peer[INET6_ADDRSTRLEN + 8];
  /* Who asked, from the TLS session. */
  pki_client_class cls;
  pki_client_status status;
  uint8_t fp[32];
  char client[256];
  char serial[PKI_SERIAL_HEX_MAX];
  /* An RA asking for a device (docs/decisions.md §17): the RA's subject,
   * and the device chain of its EST-Device-Chain header. */
  bool ra;
  char ra_name[256];
  uint8_t *dev[CHAIN_MAX];
  size_t dev_len[CHAIN_MAX], ndev;
  /* The body as it arrives. */
  uint8_t *body;
  size_t len, cap;
  bool queued;    /* an answer is queued: ignore whatever comes */
  bool started;   /* the enrollment ran (or is running) */
  bool done;      /* a keygen job is back: res holds its answer */
  hjob *job;      /* on the worker, or NULL */
  enroll_result res;
} hreq;

struct hjob {
  worker_job wj; /* first: the worker hands this pointer back */
  hreq *q;
  enroll_job *job;
};

/* ---- small helpers ------------------------------------------------------ */

static unsigned open_connections(struct MHD_Daemon *d) {
  const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
  return di ? di->num_connections : 0;
}

/* MHD_run until nothing is due. Runs again while GnuTLS holds decrypted
 * bytes (timeout 0), and after a connection went: at the connection cap
 * libmicrohttpd takes the listening socket out of its epoll set and only
 * puts it back in its next run. Past RUN_AGAIN_MAX runs the rest waits for
 * the next loop pass (the kick eventfd), so other clients get their turn. */
static void run_daemon(https_srv *h, struct MHD_Daemon *d) {
  MHD_UNSIGNED_LONG_LONG t = 0;
  for (int i = 0; i < RUN_AGAIN_MAX; i++) {
    unsigned before = open_connections(d);
    (void)MHD_run(d);
    bool due = MHD_get_timeout(d, &t) == MHD_YES && t == 0;
    if (!due && open_connections(d) >= before)
      return;
  }
  uint64_t one = 1;
  if (write(h->kick, &one, sizeof one) < 0) {
    /* EAGAIN: a kick is pending already. */
  }
}

static void run_all(https_srv *h) {
  for (size_t i = 0; i < h->nd; i++)
    run_daemon(h, h->d[i]);
}

static void on_ready(void *arg) { run_all(arg); }

static void on_kick(void *arg) {
  https_srv *h = arg;
  uint64_t n;
  if (read(h->kick, &n, sizeof n) < 0) {
    /* EAGAIN: nothing to take; run anyway. */
  }
  run_all(h);
}

__attribute__((format(printf, 2, 0))) static void mhd_log(void *cls, const char *fmt,
                                                          va_list ap) {
  https_srv *h = cls;
  char msg[512];
  vsnprintf(msg, sizeof msg, fmt, ap);
  size_t n = strlen(msg);
  while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
    msg[--n] = '\0';
  h->p->api->log(h->p->api->host, COAPD_LOG_INFO, "https: %s", msg);
}

/* A log value in double quotes, \\ and \" escaped (as reply.c writes them). */
static void kv_quote(const char *in, char *out, size_t cap) {
  size_t n = 0;
  out[n++] = '"';
  for (; *in && n + 4 < cap; in++) {
    if (*in == '"' || *in == '\\')
      out[n++] = '\\';
    out[n++] = *in;
  }
  out[n++] = '"';
  out[n] = '\0';
}

/* A text file whole, NUL-terminated, at most PEM_MAX bytes. */
static est_err slurp(const char *path, char **out, size_t *len, char *diag, size_t diag_len) {
  gnutls_datum_t d = {NULL, 0};
  *out = NULL;
  if (gnutls_load_file(path, &d) < 0) {
    snprintf(diag, diag_len, "cannot read '%s'", path);
    return EST_ERR_IO;
  }
  est_err rc = EST_OK;
  if (d.size > PEM_MAX) {
    snprintf(diag, diag_len, "'%s' is larger than %u bytes", path, PEM_MAX);
    rc = EST_ERR_TOO_LARGE;
  } else if ((*out = malloc(d.size + 1)) == NULL) {
    rc = EST_ERR_NOMEM;
  } else {
    memcpy(*out, d.data, d.size);
    (*out)[d.size] = '\0';
    if (len)
      *len = d.size;
  }
  explicit_bzero(d.data, d.size); /* it may be a key */
  gnutls_free(d.data);
  return rc;
}

static void secret_free(char *s) {
  if (!s)
    return;
  explicit_bzero(s, strlen(s));
  free(s);
}

/* MHD's free hook for answers that may hold a private key: they are text,
 * so strlen() covers them. */
static void wipe_free(void *buf) { secret_free(buf); }

/* base64 without line breaks (pki --est 5.9.8 cannot read them), as a
 * NUL-terminated string. */
static char *b64(const uint8_t *der, size_t len) {
  gnutls_datum_t in = {(unsigned char *)(uintptr_t)der, (unsigned)len}, out = {NULL, 0};
  if (len > UINT32_MAX / 2 || gnutls_base64_encode2(&in, &out) < 0)
    return NULL;
  char *s = malloc(out.size + 1);
  if (s) {
    memcpy(s, out.data, out.size);
    s[out.size] = '\0';
  }
  explicit_bzero(out.data, out.size);
  gnutls_free(out.data);
  return s;
}

/* ---- answers ------------------------------------------------------------ */

static void log_answer(const hreq *q, unsigned status, const char *reason, unsigned retry) {
  const coapd_host_api *api = q->h->p->api;
  char client[300], why[2 * EST_DIAG_MAX];
  if (status < 300 && status != 202)
    return;
  char ra[300] = "";
  kv_quote(q->client, client, sizeof client);
  kv_quote(reason, why, sizeof why);
  if (q->ra) {
    char v[290];
    kv_quote(q->ra_name, v, sizeof v);
    snprintf(ra, sizeof ra, " ra=%s", v);
  }
  api->log(api->host, status == 202 ? COAPD_LOG_INFO : COAPD_LOG_NOTICE,
           "https request op=%s status=%u peer=%s client=%s reason=%s retry_after=%u%s",
           q->op ? q->op : "-", status, q->peer, client, why, retry, ra);
}

/* Queue @p body (freed by MHD with @p free_fn; NULL: a static string). */
static enum MHD_Result answer(hreq *q, unsigned status, const char *type, char *body,
                              size_t len, void (*free_fn)(void *), unsigned retry,
                              const char *allow) {
  struct MHD_Response *r =
      free_fn ? MHD_create_response_from_buffer_with_free_callback(len, body, free_fn)
              : MHD_create_response_from_buffer(len, body, MHD_RESPMEM_PERSISTENT);
  if (!r) {
    if (free_fn)
      free_fn(body);
    return MHD_NO;
  }
  enum MHD_Result ok = MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
  if (ok == MHD_YES)
    ok = MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
  /* RFC 7030 §4.1.3 and others; RFC 8951 tells clients to ignore it. */
  if (ok == MHD_YES && strcmp(type, CT_TEXT) != 0 && len)
    ok = MHD_add_response_header(r, "Content-Transfer-Encoding", "base64");
  if (ok == MHD_YES && retry) {
    char s[16];
    snprintf(s, sizeof s, "%u", retry);
    ok = MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, s);
  }
  if (ok == MHD_YES && allow)
    ok = MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
  if (ok == MHD_YES)
    ok = MHD_queue_response(q->c, status, r);
  MHD_destroy_response(r);
  if (ok == MHD_YES) {
    q->queued = true;
    est_metrics_https(q->h->p->metrics, q->op ? q->op : "-", status);
  }
  return ok;
}

/* A refusal: the status for @p err (status.c), the reason as plain text,
 * Retry-After with 202 and 503 (RFC 7030 §4.2.3). */
static enum MHD_Result refuse(hreq *q, est_err err, const char *diag, unsigned retry,
                              const char *allow) {
  unsigned status = status_http(err);
  const char *why = diag && diag[0] ? diag : est_strerror(err);
  if (status != 202 && status != 503)
    retry = 0;
  else if (!retry)
    retry = ENROLL_RETRY_SOON; /* RFC 7030 §4.2.3: 202 needs one */
  log_answer(q, status, why, retry);
  size_t n = strlen(why);
  char *text = malloc(n + 2);
  if (!text)
    return MHD_NO;
  memcpy(text, why, n);
  text[n] = '\n';
  text[n + 1] = '\0';
  return answer(q, status, CT_TEXT, text, n + 1, free, retry, allow);
}

static enum MHD_Result ok_der(hreq *q, const char *type, const uint8_t *der, size_t len) {
  char *s = b64(der, len);
  if (!s)
    return refuse(q, EST_ERR_NOMEM, "server out of memory, retry later", ENROLL_RETRY_SOON,
                  NULL);
  return answer(q, 200, type, s, strlen(s), free, 0, NULL);
}

/* RFC 7030 §4.4.2: multipart/mixed, the PKCS#8 key first, then the
 * certificate as PKCS#7 certs-only; both base64. From enroll's
 * multipart-core answer (RFC 9148 §4.8: 284 key, 281 certificate). */
static enum MHD_Result ok_keygen(hreq *q, const enroll_result *res) {
  mp_part part[2];
  const mp_part *key = NULL, *cert = NULL;
  char *k = NULL, *c = NULL, *body = NULL;
  enum MHD_Result rc;
  if (mp_decode_pair(res->body, res->body_len, part) == EST_OK)
    for (int i = 0; i < 2; i++) {
      if (part[i].cf == CF_PKCS8)
        key = &part[i];
      else if (part[i].cf == CF_PKCS7_CERTS_ONLY)
        cert = &part[i];
    }
  if (!key || !cert) {
    rc = refuse(q, EST_ERR_INTERNAL, "server-side key generation gave no key and certificate",
                0, NULL);
    goto out;
  }
  k = b64(key->data, key->len);
  c = b64(cert->data, cert->len);
  size_t cap = (k ? strlen(k) : 0) + (c ? strlen(c) : 0) + 512;
  body = k && c ? malloc(cap) : NULL;
  if (!body) {
    rc = refuse(q, EST_ERR_NOMEM, "server out of memory, retry later", ENROLL_RETRY_SOON, NULL);
    goto out;
  }
  int n = snprintf(body, cap,
                   "--" SKG_BOUNDARY "\r\n"
                   "Content-Type: " CT_PKCS8 "\r\n"
                   "Content-Transfer-Encoding: base64\r\n\r\n%s\r\n"
                   "--" SKG_BOUNDARY "\r\n"
                   "Content-Type: " CT_P7 "\r\n"
                   "Content-Transfer-Encoding: base64\r\n\r\n%s\r\n"
                   "--" SKG_BOUNDARY "--\r\n",
                   k, c);
  if (n < 0 || (size_t)n >= cap) {
    secret_free(body);
    body = NULL;
    rc = refuse(q, EST_ERR_INTERNAL, "answer too large", 0, NULL);
    goto out;
  }
  rc = answer(q, 200, "multipart/mixed; boundary=" SKG_BOUNDARY, body, (size_t)n, wipe_free, 0,
              NULL);
  body = NULL; /* MHD's now, or freed by answer() */
out:
  secret_free(k);
  free(c);
  secret_free(body);
  return rc;
}

/* The answer of an enrollment (enroll.h). */
static enum MHD_Result send_result(hreq *q, const enroll_result *res) {
  est_metrics_enrolled(q->h->p->metrics, q->fn, q->t0_us);
  if (res->rc != EST_OK)
    return refuse(q, res->rc, res->diag, res->max_age, NULL);
  if (q->fn == EST_FN_SKG)
    return ok_keygen(q, res);
  return ok_der(q, CT_P7, res->body, res->body_len);
}

/* ---- who is asking -------------------------------------------------------- */

static gnutls_session_t tls_of(struct MHD_Connection *c) {
  const union MHD_ConnectionInfo *ci =
      MHD_get_connection_info(c, MHD_CONNECTION_INFO_GNUTLS_SESSION);
  return ci ? (gnutls_session_t)ci->tls_session : NULL;
}

static void peer_name(struct MHD_Connection *c, char *out, size_t cap) {
  const union MHD_ConnectionInfo *ci =
      MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
  char host[INET6_ADDRSTRLEN] = "?", port[8] = "?";
  if (ci && ci->client_addr) {
    socklen_t sl = ci->client_addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                          : sizeof(struct sockaddr_in);
    (void)getnameinfo(ci->client_addr, sl, host, sizeof host, port, sizeof port,
                      NI_NUMERICHOST | NI_NUMERICSERV);
  }
  snprintf(out, cap, strchr(host, ':') ? "[%s]:%s" : "%s:%s", host, port);
}

/* The TLS client's chain as the handshake received it; 0 when none. */
static size_t peer_chain(struct MHD_Connection *c, const uint8_t **der, size_t *len) {
  gnutls_session_t s = tls_of(c);
  unsigned n = 0;
  const gnutls_datum_t *certs = s ? gnutls_certificate_get_peers(s, &n) : NULL;
  if (!certs)
    return 0;
  if (n > CHAIN_MAX)
    n = CHAIN_MAX;
  for (unsigned i = 0; i < n; i++) {
    der[i] = certs[i].data;
    len[i] = certs[i].size;
  }
  return n;
}

/* The same classes as over DTLS (docs/decisions.md §5), of a chain that
 * nothing has verified yet: classify verifies it against our CA and
 * idevid_trust. */
static est_err classify_chain(hreq *q, const uint8_t *const *der, const size_t *len, size_t n) {
  est_plugin *p = q->h->p;
  unsigned flags = p->idevid_allow_expired ? PKI_CLASSIFY_IDEVID_EXPIRED_OK : 0;
  est_err rc = pki_client_classify(p->ca, p->idevid, der, len, n, (long long)time(NULL), flags,
                                   &q->cls, &q->status);
  if (rc == EST_OK)
    rc = pki_sha256(der[0], len[0], q->fp);
  if (rc == EST_OK && q->cls == PKI_CLIENT_LDEVID)
    rc = pki_cert_serial_hex(der[0], len[0], q->serial, sizeof q->serial);
  if (rc != EST_OK)
    return rc;
  char *subject = pki_cert_subject(der[0], len[0]);
  snprintf(q->client, sizeof q->client, "%s", subject ? subject : "?");
  free(subject);
  return EST_OK;
}

/* EST-Device-Chain: the device's certificates, leaf first, each base64
 * DER, separated by commas (docs/decisions.md §17). */
static est_err device_chain(hreq *q, const char *v) {
  const char *item;
  size_t n;
  while (proto_http_next_item(&v, &item, &n)) {
    gnutls_datum_t in = {(unsigned char *)(uintptr_t)item, (unsigned)n}, out = {NULL, 0};
    if (q->ndev == CHAIN_MAX || gnutls_base64_decode2(&in, &out) < 0 || out.size == 0) {
      gnutls_free(out.data);
      return EST_ERR_BAD_REQUEST;
    }
    q->dev[q->ndev] = malloc(out.size);
    if (!q->dev[q->ndev]) {
      gnutls_free(out.data);
      return EST_ERR_NOMEM;
    }
    memcpy(q->dev[q->ndev], out.data, out.size);
    q->dev_len[q->ndev++] = out.size;
    gnutls_free(out.data);
  }
  return q->ndev ? EST_OK : EST_ERR_BAD_REQUEST;
}

/* Who asks: the TLS client's chain, or no chain (anonymous); an RA
 * (ra_trust, id-kp-cmcRA) asks for the device its EST-Device-Chain names,
 * or for one its CSR alone names (RFC 7030 §3.7). */
static est_err classify(hreq *q, char *diag, size_t diag_len) {
  est_plugin *p = q->h->p;
  const uint8_t *der[CHAIN_MAX];
  size_t len[CHAIN_MAX];
  size_t n = peer_chain(q->c, der, len);
  const char *hdr = MHD_lookup_connection_value(q->c, MHD_HEADER_KIND, HDR_DEVICE);
  q->serial[0] = '\0';
  if (n && p->ra_trust) {
    est_err rc = pki_ra_check(p->ra_trust, der, len, n, (long long)time(NULL), &q->ra);
    if (rc != EST_OK)
      return rc;
  }
  if (q->ra) {
    char *subject = pki_cert_subject(der[0], len[0]);
    snprintf(q->ra_name, sizeof q->ra_name, "%s", subject ? subject : "?");
    free(subject);
    if (!hdr) {
      q->cls = PKI_CLIENT_ANONYMOUS;
      q->status = PKI_STATUS_VALID;
      snprintf(q->client, sizeof q->client, "(a device the RA names by its CSR)");
      return EST_OK;
    }
    est_err rc = device_chain(q, hdr);
    if (rc != EST_OK) {
      snprintf(diag, diag_len, HDR_DEVICE " is not a list of base64 DER certificates");
      return rc;
    }
    const uint8_t *d[CHAIN_MAX];
    for (size_t i = 0; i < q->ndev; i++)
      d[i] = q->dev[i];
    rc = classify_chain(q, d, q->dev_len, q->ndev);
    if (rc != EST_OK)
      snprintf(diag, diag_len, "cannot read the device certificate of " HDR_DEVICE);
    return rc;
  }
  if (hdr) {
    snprintf(diag, diag_len,
             HDR_DEVICE " is only taken from an RA (a certificate with id-kp-cmcRA from "
             "ra_trust)");
    return EST_ERR_FORBIDDEN;
  }
  if (n == 0) {
    q->cls = PKI_CLIENT_ANONYMOUS;
    q->status = PKI_STATUS_VALID;
    snprintf(q->client, sizeof q->client, "(no client certificate)");
    return EST_OK;
  }
  est_err rc = classify_chain(q, der, len, n);
  if (rc != EST_OK)
    snprintf(diag, diag_len, "cannot read the client certificate");
  return rc;
}

/* ---- the request ------------------------------------------------------------ */

/* PROTO_HTTP_PREFIX "[<label>/]<op>" (RFC 7030 §3.2.2), for a label we
 * serve and an operation that is on. */
static bool route(const est_plugin *p, const char *url, hreq *q) {
  const char *label;
  size_t n;
  est_fn fn;
  if (proto_http_route(url, &fn, &label, &n) != EST_OK || !est_fn_enabled(p, fn))
    return false;
  bool known = n == 0;
  for (size_t i = 0; i < p->label_count && !known; i++)
    known = strlen(p->labels[i]) == n && strncmp(p->labels[i], label, n) == 0;
  if (!known)
    return false;
  q->op = proto_http_op(fn);
  q->fn = fn;
  return true;
}

/* Everything that can be refused before the body is read: the path, the
 * method, the size, the media type, and the client (policy.c). */
static enum MHD_Result begin(hreq *q, const char *url, const char *method) {
  est_plugin *p = q->h->p;
  char diag[EST_DIAG_MAX] = "";
  if (!route(p, url, q)) {
    snprintf(diag, sizeof diag, "not found: the EST operations are under " PROTO_HTTP_PREFIX);
    return refuse(q, EST_ERR_NOT_FOUND, diag, 0, NULL);
  }
  const est_fn_info *info = proto_fn_info(q->fn);
  const char *want = info->post ? MHD_HTTP_METHOD_POST : MHD_HTTP_METHOD_GET;
  if (strcmp(method, want) != 0 &&
      !(strcmp(method, MHD_HTTP_METHOD_HEAD) == 0 && !info->post)) {
    snprintf(diag, sizeof diag, "%s takes %s only", q->op, want);
    return refuse(q, EST_ERR_METHOD, diag, 0, info->post ? "POST" : "GET, HEAD");
  }
  const char *cl =
      MHD_lookup_connection_value(q->c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
  if (cl && strtoull(cl, NULL, 10) > p->max_body) {
    snprintf(diag, sizeof diag, "request body over %zu bytes", p->max_body);
    return refuse(q, EST_ERR_TOO_LARGE, diag, 0, NULL);
  }
  const char *ct =
      MHD_lookup_connection_value(q->c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
  if (info->post && !proto_http_type_is(ct, "application/pkcs10")) {
    snprintf(diag, sizeof diag, "%s needs Content-Type application/pkcs10", q->op);
    return refuse(q, EST_ERR_CONTENT_FORMAT, diag, 0, NULL);
  }
  est_err rc = classify(q, diag, sizeof diag);
  if (rc != EST_OK)
    return refuse(q, rc == EST_ERR_MALFORMED ? EST_ERR_BAD_REQUEST : rc, diag, 0, NULL);
  policy_input pin = {.fn = q->fn, .cls = q->cls, .status = q->status, .https = true,
                      .anonymous_enroll = q->h->cfg.anonymous, .via_ra = q->ra};
  /* Asked on every request (docs/decisions.md §14), as over CoAP. */
  if (q->cls == PKI_CLIENT_LDEVID && q->serial[0] &&
      enroll_client_revoked(p->en, q->serial, &pin.revoked, diag, sizeof diag) != EST_OK)
    return refuse(q, EST_ERR_UNAVAILABLE, "cannot check the client certificate now, retry later",
                  ENROLL_RETRY_SOON, NULL);
  rc = policy_decide(&pin, diag, sizeof diag);
  if (rc != EST_OK)
    return refuse(q, rc, diag, 0, NULL);
  return MHD_YES;
}

static enum MHD_Result serve_get(hreq *q) {
  est_plugin *p = q->h->p;
  const uint8_t *d;
  size_t n;
  if (q->fn == EST_FN_ATT) {
    if (!p->csr_attrs) /* est_fn_enabled let it through: reloaded since */
      return refuse(q, EST_ERR_NOT_FOUND, "no CSR attributes are configured", 0, NULL);
    return ok_der(q, CT_ATTRS, p->csr_attrs, p->csr_attrs_len);
  }
  pki_ca_certs_p7(p->ca, &d, &n);
  return ok_der(q, CT_P7, d, n);
}

static void job_run(worker_job *wj) { enroll_job_run(((hjob *)wj)->job); }

/* Loop thread: the worker handed the job back (ran), or it is stopping. */
static void job_finish(worker_job *wj, bool ran) {
  hjob *j = (hjob *)wj;
  hreq *q = j->q;
  if (ran) {
    enroll_job_finish(q->h->p->en, j->job, &q->res);
  } else {
    enroll_job_free(j->job);
    enroll_retry_later(&q->res, "server stopping, retry later");
  }
  free(j);
  q->job = NULL;
  q->done = true;
  MHD_resume_connection(q->c);
  run_daemon(q->h, q->d);
}

/* RFC 8951 §3: the body is base64, whatever Content-Transfer-Encoding
 * says, and may hold line breaks and other whitespace. */
static est_err unbase64(const hreq *q, uint8_t **der, size_t *len) {
  gnutls_datum_t in = {q->body, (unsigned)q->len}, out = {NULL, 0};
  *der = NULL;
  if (q->len == 0)
    return EST_ERR_BAD_CSR;
  if (gnutls_base64_decode2(&in, &out) < 0 || out.size == 0) {
    gnutls_free(out.data);
    return EST_ERR_BAD_REQUEST;
  }
  *der = malloc(out.size);
  if (*der) {
    memcpy(*der, out.data, out.size);
    *len = out.size;
  }
  gnutls_free(out.data);
  return *der ? EST_OK : EST_ERR_NOMEM;
}

/* simpleenroll, simplereenroll, serverkeygen (RFC 7030 §4.2, §4.4): the
 * TLS facts and the CSR go to enroll, as handlers.c:serve_post does for
 * CoAP. The answer is queued now, or when the worker is done. */
static enum MHD_Result serve_post(hreq *q) {
  est_plugin *p = q->h->p;
  uint8_t *csr = NULL, uniq[BINDING_MAX], exp[BINDING_MAX];
  size_t csr_len = 0, ulen = 0, elen = 0;
  const uint8_t *der[CHAIN_MAX];
  size_t dlen[CHAIN_MAX];
  enum MHD_Result mr;
  est_err rc = unbase64(q, &csr, &csr_len);
  if (rc != EST_OK)
    return refuse(q, rc,
                  rc == EST_ERR_BAD_CSR ? "no CSR in the body"
                                        : "the body is not base64 (RFC 8951)",
                  0, NULL);
  size_t n = peer_chain(q->c, der, dlen);
  if (q->ra) { /* the device's certificate, not the RA's */
    n = q->ndev;
    for (size_t i = 0; i < n; i++) {
      der[i] = q->dev[i];
      dlen[i] = q->dev_len[i];
    }
  }
  gnutls_session_t s = tls_of(q->c);
  gnutls_datum_t cb;
  /* RFC 7030 §3.5: tls-unique (TLS 1.2); TLS 1.3 has only the exporter. */
  if (s && gnutls_session_channel_binding(s, GNUTLS_CB_TLS_UNIQUE, &cb) == 0) {
    if (cb.size <= sizeof uniq) {
      memcpy(uniq, cb.data, cb.size);
      ulen = cb.size;
    }
    gnutls_free(cb.data);
  }
  if (s && gnutls_session_channel_binding(s, GNUTLS_CB_TLS_EXPORTER, &cb) == 0) {
    if (cb.size <= sizeof exp) {
      memcpy(exp, cb.data, cb.size);
      elen = cb.size;
    }
    gnutls_free(cb.data);
  }
  enroll_request in = {
      .fn = q->fn, .cls = q->cls,
      .client_fp = q->cls == PKI_CLIENT_ANONYMOUS ? NULL : q->fp, .client = q->client,
      .client_cert = n ? der[0] : NULL, .client_cert_len = n ? dlen[0] : 0,
      .tls_unique = ulen ? uniq : NULL, .tls_unique_len = ulen,
      .exporter = elen ? exp : NULL, .exporter_len = elen,
      .csr = csr, .csr_len = csr_len, .bare_cert = false, .now = (long long)time(NULL),
      .ra = q->ra ? q->ra_name : NULL};
  enroll_result res;
  enroll_job *job = enroll_decide(p->en, &in, &res);
  explicit_bzero(uniq, sizeof uniq);
  explicit_bzero(exp, sizeof exp);
  free(csr);
  if (job && enroll_job_slow(job)) {
    hjob *j = calloc(1, sizeof *j);
    if (j) {
      j->wj.run = job_run;
      j->wj.finish = job_finish;
      j->q = q;
      j->job = job;
      worker *w = enroll_job_keygen(job) || !p->signer ? p->wk : p->signer;
      if (w && worker_submit(w, &j->wj) == EST_OK) {
        q->job = j;
        MHD_suspend_connection(q->c);
        return MHD_YES;
      }
      free(j);
    }
    enroll_job_free(job);
    enroll_retry_later(&res, "too many key generations queued, retry later");
  } else if (job) {
    enroll_job_run(job);
    enroll_job_finish(p->en, job, &res);
  }
  mr = send_result(q, &res);
  enroll_result_clear(&res);
  return mr;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload, size_t *upload_size, void **con_cls) {
  https_srv *h = cls;
  hreq *q = *con_cls;
  (void)version;
  if (!q) {
    q = calloc(1, sizeof *q);
    if (!q)
      return MHD_NO;
    q->h = h;
    q->c = c;
    q->t0_us = est_metrics_now_us();
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_DAEMON);
    q->d = ci ? ci->daemon : h->d[0];
    peer_name(c, q->peer, sizeof q->peer);
    *con_cls = q;
    return begin(q, url, method);
  }
  if (q->queued) {
    *upload_size = 0; /* refused already: the rest is not read */
    return MHD_YES;
  }
  if (*upload_size) {
    size_t n = *upload_size;
    if (n > h->p->max_body - q->len) {
      /* No Content-Length (chunked) and over the cap: MHD cannot answer
       * in the middle of a body, so the connection is closed. */
      log_answer(q, 413, "request body over max_body without Content-Length; closed", 0);
      return MHD_NO;
    }
    if (q->len + n > q->cap) {
      size_t cap = q->cap ? q->cap : 2048;
      while (cap < q->len + n)
        cap *= 2;
      if (cap > h->p->max_body)
        cap = h->p->max_body;
      uint8_t *b = realloc(q->body, cap);
      if (!b)
        return MHD_NO;
      q->body = b;
      q->cap = cap;
    }
    memcpy(q->body + q->len, upload, n);
    q->len += n;
    *upload_size = 0;
    return MHD_YES;
  }
  if (q->done) /* the worker is back (job_finish) */
    return send_result(q, &q->res);
  if (q->started)
    return MHD_YES;
  q->started = true;
  if (!proto_fn_info(q->fn)->post)
    return serve_get(q);
  return serve_post(q);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
  hreq *q = *con_cls;
  (void)cls;
  (void)c;
  (void)toe;
  if (!q)
    return;
  /* A suspended connection is resumed before MHD lets it go, so no job
   * still points here (job_finish). */
  enroll_result_clear(&q->res);
  for (size_t i = 0; i < q->ndev; i++)
    free(q->dev[i]);
  free(q->body);
  free(q);
  *con_cls = NULL;
}

/* ---- set-up ------------------------------------------------------------------ */

int https_addr_parse(const char *v, https_addr *out, char *why, size_t why_len) {
  char addr[HTTPS_ADDR_MAX];
  unsigned long port;
  char *end;
  const char *sp = strchr(v, ' ');
  if (!sp || (size_t)(sp - v) >= sizeof addr || sp == v) {
    snprintf(why, why_len, "want ADDR PORT (a numeric address, a port 1-65535)");
    return -1;
  }
  memcpy(addr, v, (size_t)(sp - v));
  addr[sp - v] = '\0';
  while (*sp == ' ')
    sp++;
  port = strtoul(sp, &end, 10);
  if (*sp < '0' || *sp > '9' || *end != '\0' || port == 0 || port > 65535) {
    snprintf(why, why_len, "bad port '%s' (1-65535)", sp);
    return -1;
  }
  unsigned char buf[sizeof(struct in6_addr)];
  if (inet_pton(AF_INET, addr, buf) != 1 && inet_pton(AF_INET6, addr, buf) != 1) {
    snprintf(why, why_len, "'%s' is not a numeric IPv4 or IPv6 address", addr);
    return -1;
  }
  if (out) {
    memcpy(out->addr, addr, strlen(addr) + 1);
    out->port = (unsigned)port;
  }
  return 0;
}

/* ---- https_key on a PKCS#11 token (docs/decisions.md §20) ---------------- */

/* MHD_OPTION_NOTIFY_CONNECTION: the connection knows its server, so the
 * certificate callback, which has no closure, can find it. */
static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe) {
  (void)c;
  if (toe == MHD_CONNECTION_NOTIFY_STARTED)
    *socket_context = cls;
}

/* gnutls_certificate_retrieve_function2, through MHD_OPTION_HTTPS_CERT_CALLBACK
 * (libmicrohttpd sets the session's pointer to the connection). */
static int token_cert(gnutls_session_t s, const gnutls_datum_t *req_ca_rdn, int nreqs,
                      const gnutls_pk_algorithm_t *pk_algos, int pk_algos_length,
                      gnutls_pcert_st **pcert, unsigned int *pcert_length,
                      gnutls_privkey_t *privkey) {
  (void)req_ca_rdn;
  (void)nreqs;
  (void)pk_algos;
  (void)pk_algos_length;
  struct MHD_Connection *c = gnutls_session_get_ptr(s);
  const union MHD_ConnectionInfo *ci =
      c ? MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT) : NULL;
  https_srv *h = ci ? ci->socket_context : NULL;
  if (!h || !h->key)
    return -1;
  *pcert = h->pcert;
  *pcert_length = h->npcert;
  *privkey = h->key;
  return 0;
}

/* The token key and the certificate chain, checked: the key is the first
 * certificate's and signs now. */
static est_err token_load(https_srv *h, char *diag, size_t diag_len) {
  gnutls_datum_t pem = {(unsigned char *)h->cert_pem, (unsigned)strlen(h->cert_pem)};
  char uri[512], why[256];
  pki_uri_for_log(h->cfg.key_file, uri, sizeof uri);
  h->npcert = sizeof h->pcert / sizeof h->pcert[0];
  if (gnutls_pcert_list_import_x509_raw(h->pcert, &h->npcert, &pem, GNUTLS_X509_FMT_PEM, 0) <
      0) {
    h->npcert = 0;
    snprintf(diag, diag_len, "https_cert '%s': not a PEM certificate chain of 1..8",
             h->cfg.cert_file);
    return EST_ERR_CONFIG;
  }
  est_err rc = est_token_key_open(h->cfg.key_file, h->pin, h->pcert[0].pubkey, &h->key, why,
                                  sizeof why);
  if (rc != EST_OK)
    snprintf(diag, diag_len, "https_key %s: %s (https_cert '%s')", uri, why, h->cfg.cert_file);
  return rc;
}

static est_err listen_one(https_srv *h, const https_addr *a, char *diag, size_t diag_len) {
  const coapd_host_api *api = h->p->api;
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  bool v6 = strchr(a->addr, ':') != NULL;
  if (v6) {
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons((uint16_t)a->port);
    (void)inet_pton(AF_INET6, a->addr, &s6->sin6_addr);
  } else {
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    s4->sin_family = AF_INET;
    s4->sin_port = htons((uint16_t)a->port);
    (void)inet_pton(AF_INET, a->addr, &s4->sin_addr);
  }
  const https_config *cfg = &h->cfg;
  /* TLS 1.2 and 1.3 only (issue "EST over HTTPS"; RFC 7030 §3.3.1 wants
   * at least 1.1). */
  static const char prio[] = "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2";
  unsigned flags = MHD_USE_TLS | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG |
                   (v6 ? MHD_USE_IPv6 : 0);
/* Every listener's options but the certificate and key. */
#define COMMON_OPTIONS                                                                     \
  flags, (uint16_t)a->port, NULL, NULL, on_request, h, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, h, \
      MHD_OPTION_NOTIFY_COMPLETED, on_completed, h, MHD_OPTION_SOCK_ADDR,                    \
      (struct sockaddr *)&ss, MHD_OPTION_HTTPS_MEM_TRUST, h->trust_pem,                      \
      MHD_OPTION_HTTPS_PRIORITIES, prio, MHD_OPTION_CONNECTION_LIMIT, cfg->max_conn,        \
      MHD_OPTION_PER_IP_CONNECTION_LIMIT, cfg->max_per_ip, MHD_OPTION_CONNECTION_TIMEOUT,     \
      cfg->timeout_s, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)cfg->header_bytes + 8192u
  struct MHD_Daemon *d =
      h->key ? MHD_start_daemon(COMMON_OPTIONS, MHD_OPTION_NOTIFY_CONNECTION, on_connection, h,
                                MHD_OPTION_HTTPS_CERT_CALLBACK, token_cert, MHD_OPTION_END)
             : MHD_start_daemon(COMMON_OPTIONS, MHD_OPTION_HTTPS_MEM_CERT, h->cert_pem,
                                MHD_OPTION_HTTPS_MEM_KEY, h->key_pem, MHD_OPTION_END);
#undef COMMON_OPTIONS
  if (!d) {
    snprintf(diag, diag_len,
             "%s:%u: https_listen %s %u: cannot listen (address in use, or the certificate "
             "and key do not load)",
             api->config_path, a->line, a->addr, a->port);
    return EST_ERR_ADDR_IN_USE;
  }
  const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_EPOLL_FD);
  int fd = di ? di->epoll_fd : -1;
  if (fd < 0 || api->watch_fd(api->host, fd, on_ready, h) != 0) {
    MHD_stop_daemon(d);
    snprintf(diag, diag_len, "https_listen %s %u: no epoll fd to watch", a->addr, a->port);
    return EST_ERR_INTERNAL;
  }
  h->d[h->nd] = d;
  h->fd[h->nd] = fd;
  h->nd++;
  api->log(api->host, COAPD_LOG_NOTICE, "HTTPS EST (RFC 7030) on %s%s%s:%u%s", v6 ? "[" : "",
           a->addr, v6 ? "]" : "", a->port,
           cfg->anonymous ? ", simpleenroll without a client certificate waits for an operator"
                          : "");
  return EST_OK;
}

/* The CA names a client may present a certificate from: every trust file
 * in one PEM text. */
static est_err load_trust_pem(https_srv *h, char *diag, size_t diag_len) {
  size_t total = 0;
  char *parts[3] = {NULL, NULL, NULL};
  size_t lens[3] = {0, 0, 0};
  est_err rc = EST_OK;
  for (size_t i = 0; i < h->cfg.ntrust && rc == EST_OK; i++) {
    rc = slurp(h->cfg.trust_files[i], &parts[i], &lens[i], diag, diag_len);
    total += lens[i] + 1;
  }
  if (rc == EST_OK && (h->trust_pem = malloc(total + 1)) == NULL)
    rc = EST_ERR_NOMEM;
  if (rc == EST_OK) {
    size_t off = 0;
    for (size_t i = 0; i < h->cfg.ntrust; i++) {
      memcpy(h->trust_pem + off, parts[i], lens[i]);
      off += lens[i];
      h->trust_pem[off++] = '\n';
    }
    h->trust_pem[off] = '\0';
  }
  for (size_t i = 0; i < 3; i++)
    free(parts[i]);
  return rc;
}

est_err https_start(est_plugin *p, const https_config *cfg, https_srv **out, char *diag,
                    size_t diag_len) {
  est_err rc = EST_ERR_NOMEM;
  *out = NULL;
  https_srv *h = calloc(1, sizeof *h);
  if (!h)
    goto fail;
  h->p = p;
  h->cfg = *cfg;
  if (h->cfg.ntrust > 3)
    h->cfg.ntrust = 3;
  h->kick = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (h->kick < 0 || p->api->watch_fd(p->api->host, h->kick, on_kick, h) != 0) {
    if (h->kick >= 0)
      close(h->kick);
    h->kick = -1;
    snprintf(diag, diag_len, "https: no eventfd to watch");
    rc = EST_ERR_INTERNAL;
    goto fail;
  }
  rc = slurp(cfg->cert_file, &h->cert_pem, NULL, diag, diag_len);
  if (rc == EST_OK && pki_key_is_uri(cfg->key_file)) {
    h->pin = cfg->key_pin ? strdup(cfg->key_pin) : NULL;
    rc = cfg->key_pin && !h->pin ? EST_ERR_NOMEM : token_load(h, diag, diag_len);
    if (rc == EST_OK)
      p->api->log(p->api->host, COAPD_LOG_WARNING,
                  "https_key on a token: GnuTLS signs every TLS handshake with it on the "
                  "loop thread (docs/decisions.md section 20)");
  } else if (rc == EST_OK) {
    rc = slurp(cfg->key_file, &h->key_pem, NULL, diag, diag_len);
  }
  if (rc == EST_OK)
    rc = load_trust_pem(h, diag, diag_len);
  for (size_t i = 0; i < cfg->nlisten && rc == EST_OK; i++)
    rc = listen_one(h, &cfg->listen[i], diag, diag_len);
  if (rc != EST_OK)
    goto fail;
  *out = h;
  return EST_OK;
fail:
  https_stop(h);
  return rc;
}

uint32_t https_tick(https_srv *h) {
  uint32_t next = TICK_MAX_MS;
  if (!h)
    return UINT32_MAX;
  for (size_t i = 0; i < h->nd; i++) {
    MHD_UNSIGNED_LONG_LONG t = 0;
    if (MHD_get_timeout(h->d[i], &t) != MHD_YES)
      continue;
    if (t == 0) {
      run_daemon(h, h->d[i]);
      if (MHD_get_timeout(h->d[i], &t) != MHD_YES)
        continue;
    }
    if (t < next)
      next = t == 0 ? 1 : (uint32_t)t;
  }
  return next;
}

void https_stop(https_srv *h) {
  if (!h)
    return;
  for (size_t i = 0; i < h->nd; i++) {
    (void)h->p->api->unwatch_fd(h->p->api->host, h->fd[i]);
    MHD_stop_daemon(h->d[i]);
  }
  if (h->kick >= 0) {
    (void)h->p->api->unwatch_fd(h->p->api->host, h->kick);
    close(h->kick);
  }
  free(h->cert_pem);
  secret_free(h->key_pem);
  free(h->trust_pem);
  for (unsigned i = 0; i < h->npcert; i++)
    gnutls_pcert_deinit(&h->pcert[i]);
  if (h->key)
    gnutls_privkey_deinit(h->key);
  est_pin_free(h->pin);
  free(h);
}
