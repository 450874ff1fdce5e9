/* CoAP over DTLS for est-enroll: libcoap 4.3.1 client API with GnuTLS PKI
 * (docs/libcoap-4.3.1.md §2-§4), one session and one request at a time. */
#define _GNU_SOURCE
#include "client.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <syslog.h>
#include <time.h>

#include <coap3/coap.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "files.h"
#include "retry.h"

#define TOKEN_MAX 8
/* A handshake session that closed after this long died of loss, not of a
 * refusal, and is tried again with a new one if this much time is left. */
#define EC_HS_RETRY_AFTER_MS 2000u
#define EC_HS_RETRY_LEFT_MS 2000u

/* Handshake timeouts allowed per session: GnuTLS's first timer is 1 s and
 * only grows (RFC 6347 §4.2.4.1), so --timeout seconds of them never run
 * out before --timeout itself does. */
static uint16_t hs_retransmit_budget(unsigned timeout_s) {
  if (timeout_s < COAP_DEFAULT_MAX_RETRANSMIT)
    return COAP_DEFAULT_MAX_RETRANSMIT;
  return timeout_s > UINT16_MAX ? UINT16_MAX : (uint16_t)timeout_s;
}

struct ec_client {
  ec_client_conf conf;
  coap_context_t *ctx;
  coap_session_t *session;
  char host[256];
  uint16_t port;
  char sni[256];
  coap_dtls_pki_t pki;
  /* PEM in memory, NUL-terminated; lengths include the NUL. */
  uint8_t *cert_pem, *key_pem, *trust_pem;
  size_t cert_len, key_len, trust_len;
  uint8_t *conn_trust; /* the copy the open session was set up with */
  /* Handshake, set by the event handler. */
  bool connected;
  bool closed;
  /* The request in flight, set by the response/NACK/event handlers. */
  bool waiting;
  bool done;
  est_err fail;
  char fail_why[96];
  uint8_t token[TOKEN_MAX];
  size_t token_len;
  ec_response *resp;
  uint8_t *part;       /* per-block reassembly if libcoap falls back */
  size_t part_len;
};

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void diag_set(char *diag, size_t diag_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void diag_set(char *diag, size_t diag_len, const char *fmt, ...) {
  va_list ap;
  if (!diag || !diag_len)
    return;
  va_start(ap, fmt);
  vsnprintf(diag, diag_len, fmt, ap);
  va_end(ap);
}

void ec_response_clear(ec_response *r, bool secret) {
  if (!r)
    return;
  if (r->body && secret)
    gnutls_memset(r->body, 0, r->len);
  free(r->body);
  memset(r, 0, sizeof *r);
  r->cf = -1;
}

static void log_handler(coap_log_t level, const char *message) {
  (void)level;
  fprintf(stderr, "libcoap: %s", message);
}

static void fail_request(ec_client *c, est_err err, const char *why) {
  if (!c->waiting || c->done || c->fail != EST_OK)
    return;
  c->fail = err;
  snprintf(c->fail_why, sizeof c->fail_why, "%s", why);
}

static int on_event(coap_session_t *s, const coap_event_t ev) {
  ec_client *c = coap_get_app_data(coap_session_get_context(s));
  if (!c || s != c->session)
    return 0;
  switch (ev) {
  case COAP_EVENT_DTLS_CONNECTED:
    c->connected = true;
    break;
  case COAP_EVENT_DTLS_CLOSED:
  case COAP_EVENT_DTLS_ERROR:
  case COAP_EVENT_SESSION_CLOSED:
  case COAP_EVENT_SESSION_FAILED:
    c->closed = true;
    fail_request(c, EST_ERR_TLS, "the DTLS session was closed");
    break;
  case COAP_EVENT_PARTIAL_BLOCK:
  case COAP_EVENT_XMIT_BLOCK_FAIL:
    fail_request(c, EST_ERR_TLS, "the block-wise transfer failed");
    break;
  default:
    break;
  }
  return 0;
}

static void on_nack(coap_session_t *s, const coap_pdu_t *sent,
                    const coap_nack_reason_t reason, const coap_mid_t mid) {
  (void)sent;
  (void)mid;
  ec_client *c = coap_get_app_data(coap_session_get_context(s));
  if (!c || s != c->session)
    return;
  switch (reason) {
  case COAP_NACK_TOO_MANY_RETRIES:
    fail_request(c, EST_ERR_TLS, "no answer after the CoAP retransmissions");
    break;
  case COAP_NACK_RST:
    fail_request(c, EST_ERR_TLS, "the server reset the exchange (RST)");
    break;
  case COAP_NACK_TLS_FAILED:
    fail_request(c, EST_ERR_TLS, "DTLS failed");
    break;
  case COAP_NACK_NOT_DELIVERABLE:
  case COAP_NACK_ICMP_ISSUE:
  default:
    fail_request(c, EST_ERR_TLS, "the request could not be delivered");
    break;
  }
}

static int opt_uint(const coap_pdu_t *pdu, coap_option_num_t num, uint32_t *out) {
  coap_opt_iterator_t it;
  coap_opt_t *o = coap_check_option(pdu, num, &it);
  if (!o)
    return 0;
  return ec_retry_parse_max_age(coap_opt_value(o), coap_opt_length(o), out) ? 1 : -1;
}

/* Take the body out of @p rcvd: whole (SINGLE_BODY, or no blocks) or, if
 * libcoap fell back to per-block delivery, block by block in order.
 * Returns true when the body is complete. */
static bool take_body(ec_client *c, const coap_pdu_t *rcvd) {
  size_t len = 0, offset = 0, total = 0;
  const uint8_t *data = NULL;
  coap_opt_iterator_t it;
  uint32_t size2 = 0;

  if (!coap_get_data_large(rcvd, &len, &data, &offset, &total)) {
    len = 0;
    data = NULL;
  }
  /* A cap on every body; Size2 tells early (RFC 7959 §4). */
  if (opt_uint(rcvd, COAP_OPTION_SIZE2, &size2) > 0 && size2 > EC_BODY_MAX) {
    fail_request(c, EST_ERR_TOO_LARGE, "the response body is over the size limit");
    return false;
  }
  coap_opt_t *b2 = coap_check_option(rcvd, COAP_OPTION_BLOCK2, &it);
  if (!b2) {
    if (len > EC_BODY_MAX || total > EC_BODY_MAX) {
      fail_request(c, EST_ERR_TOO_LARGE, "the response body is over the size limit");
      return false;
    }
    c->resp->body = malloc(len + 1);
    if (!c->resp->body) {
      fail_request(c, EST_ERR_NOMEM, "out of memory");
      return false;
    }
    if (len)
      memcpy(c->resp->body, data, len);
    c->resp->body[len] = '\0';
    c->resp->len = len;
    return true;
  }
  unsigned szx = COAP_OPT_BLOCK_SZX(b2);
  size_t off = (size_t)coap_opt_block_num(b2) << (szx + 4);
  /* RFC 7252 §4.5: a block already held, with the same bytes, is the same
   * answer again (a duplicate datagram, or the answer to a retransmitted
   * request): nothing new, keep waiting for the next one. */
  if (szx <= 6 && off < c->part_len && len <= c->part_len - off &&
      (len == 0 || memcmp(c->part + off, data, len) == 0))
    return false;
  if (szx > 6 || off != c->part_len) {
    fail_request(c, EST_ERR_MALFORMED, "Block2 out of order");
    return false;
  }
  if (len > EC_BODY_MAX - c->part_len) {
    fail_request(c, EST_ERR_TOO_LARGE, "the response body is over the size limit");
    return false;
  }
  uint8_t *n = realloc(c->part, c->part_len + len + 1);
  if (!n) {
    fail_request(c, EST_ERR_NOMEM, "out of memory");
    return false;
  }
  c->part = n;
  if (len)
    memcpy(c->part + c->part_len, data, len);
  c->part_len += len;
  c->part[c->part_len] = '\0';
  if (COAP_OPT_BLOCK_MORE(b2))
    return false;
  c->resp->body = c->part;
  c->resp->len = c->part_len;
  c->part = NULL;
  c->part_len = 0;
  return true;
}

static coap_response_t on_response(coap_session_t *s, const coap_pdu_t *sent,
                                   const coap_pdu_t *rcvd, const coap_mid_t mid) {
  (void)sent;
  (void)mid;
  ec_client *c = coap_get_app_data(coap_session_get_context(s));
  coap_pdu_type_t type = coap_pdu_get_type(rcvd);
  coap_bin_const_t tok = coap_pdu_get_token(rcvd);

  if (!c || s != c->session || !c->waiting || c->done ||
      tok.length != c->token_len ||
      (tok.length && memcmp(tok.s, c->token, tok.length) != 0)) {
    /* Not ours: a CON/NON gets a RST (RFC 7252 §5.3.2). */
    return (type == COAP_MESSAGE_CON || type == COAP_MESSAGE_NON)
               ? COAP_RESPONSE_FAIL
               : COAP_RESPONSE_OK;
  }
  if (type == COAP_MESSAGE_RST) {
    fail_request(c, EST_ERR_TLS, "the server reset the exchange (RST)");
    return COAP_RESPONSE_OK;
  }
  coap_pdu_code_t code = coap_pdu_get_code(rcvd);
  if (code == COAP_EMPTY_CODE)
    return COAP_RESPONSE_OK; /* an empty ACK: the answer comes later (§4.7) */
  if (c->fail != EST_OK)
    return COAP_RESPONSE_OK;

  c->resp->code = (unsigned)COAP_RESPONSE_CLASS(code) * 100u + (code & 0x1f);
  uint32_t v = 0;
  c->resp->cf = opt_uint(rcvd, COAP_OPTION_CONTENT_FORMAT, &v) > 0 && v <= 0xffff
                    ? (int)v
                    : -1;
  int ma = opt_uint(rcvd, COAP_OPTION_MAXAGE, &v);
  c->resp->has_max_age = ma > 0;
  c->resp->max_age = ma > 0 ? v : 0;
  if (take_body(c, rcvd))
    c->done = true;
  return COAP_RESPONSE_OK;
}

/* A PEM file into memory, NUL included in the length (libcoap then uses
 * it without a copy, libcoap-4.3.1 coap_gnutls.c setup_pki_credentials). */
static est_err read_pem(const char *path, size_t cap, uint8_t **out, size_t *len,
                        char *diag, size_t diag_len) {
  est_err rc = ec_file_read(path, cap, out, len, diag, diag_len);
  if (rc == EST_OK)
    (*len)++;
  return rc;
}

/* Catch local mistakes before any traffic: --key must belong to the first
 * certificate of --cert, and --trust must hold a certificate. */
static est_err check_identity(const ec_client *c, char *diag, size_t diag_len) {
  gnutls_x509_crt_t *list = NULL, *anchors = NULL;
  unsigned n = 0, na = 0;
  gnutls_x509_privkey_t key = NULL;
  uint8_t a[64], b[64];
  size_t al = sizeof a, bl = sizeof b;
  est_err rc = EST_ERR_CONFIG;
  gnutls_datum_t cd = {c->cert_pem, (unsigned)c->cert_len};
  gnutls_datum_t kd = {c->key_pem, (unsigned)c->key_len};
  gnutls_datum_t td = {c->trust_pem, (unsigned)c->trust_len};

  if (gnutls_x509_crt_list_import2(&list, &n, &cd, GNUTLS_X509_FMT_PEM, 0) < 0 || n == 0) {
    diag_set(diag, diag_len, "--cert '%s': no PEM certificate", c->conf.cert_file);
    goto out;
  }
  if (gnutls_x509_privkey_init(&key) < 0 ||
      gnutls_x509_privkey_import2(key, &kd, GNUTLS_X509_FMT_PEM, NULL, GNUTLS_PKCS_PLAIN) < 0) {
    diag_set(diag, diag_len, "--key '%s': not an unencrypted PEM private key",
             c->conf.key_file);
    goto out;
  }
  if (gnutls_x509_crt_get_key_id(list[0], GNUTLS_KEYID_USE_SHA256, a, &al) < 0 ||
      gnutls_x509_privkey_get_key_id(key, GNUTLS_KEYID_USE_SHA256, b, &bl) < 0 ||
      al != bl || memcmp(a, b, al) != 0) {
    diag_set(diag, diag_len, "--key '%s' does not belong to --cert '%s'", c->conf.key_file,
             c->conf.cert_file);
    goto out;
  }
  if (gnutls_x509_crt_list_import2(&anchors, &na, &td, GNUTLS_X509_FMT_PEM, 0) < 0 ||
      na == 0) {
    diag_set(diag, diag_len, "--trust '%s': no PEM certificate", c->conf.trust_file);
    goto out;
  }
  rc = EST_OK;
out:
  for (unsigned i = 0; i < n; i++)
    gnutls_x509_crt_deinit(list[i]);
  gnutls_free(list);
  for (unsigned i = 0; i < na; i++)
    gnutls_x509_crt_deinit(anchors[i]);
  gnutls_free(anchors);
  if (key)
    gnutls_x509_privkey_deinit(key);
  return rc;
}

est_err ec_client_new(const ec_client_conf *conf, ec_client **out, char *diag,
                      size_t diag_len) {
  est_err rc;
  if (!conf || !out || !conf->cert_file || !conf->key_file || !conf->trust_file)
    return EST_ERR_INVALID;
  *out = NULL;
  ec_client *c = calloc(1, sizeof *c);
  if (!c)
    return EST_ERR_NOMEM;
  c->conf = *conf;
  if (c->conf.timeout_s == 0)
    c->conf.timeout_s = 60;
  rc = read_pem(conf->cert_file, EC_FILE_MAX, &c->cert_pem, &c->cert_len, diag, diag_len);
  if (rc == EST_OK)
    rc = read_pem(conf->key_file, EC_FILE_MAX, &c->key_pem, &c->key_len, diag, diag_len);
  if (rc == EST_OK)
    rc = read_pem(conf->trust_file, EC_FILE_MAX, &c->trust_pem, &c->trust_len, diag,
                  diag_len);
  if (rc == EST_OK)
    rc = check_identity(c, diag, diag_len);
  if (rc != EST_OK) {
    ec_client_free(c);
    return rc;
  }

  coap_startup();
  static const coap_log_t levels[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
  int v = conf->verbose < 0 ? 0 : conf->verbose > 3 ? 3 : conf->verbose;
  /* -v: our progress and libcoap warnings; -vv info; -vvv debug, PDUs. */
  coap_log_t level = levels[v];
  coap_set_log_handler(log_handler);
  /* PDU dumps through the handler too: stdout is for command output. */
  coap_set_show_pdu_output(0);
  coap_set_log_level(level);
  coap_dtls_set_log_level(v >= 3 ? LOG_DEBUG : level);

  c->ctx = coap_new_context(NULL);
  if (!c->ctx) {
    ec_client_free(c);
    return EST_ERR_NOMEM;
  }
  coap_set_app_data(c->ctx, c);
  /* The whole body reaches the handler (docs/libcoap-4.3.1.md §3). */
  coap_context_set_block_mode(c->ctx, COAP_BLOCK_USE_LIBCOAP | COAP_BLOCK_SINGLE_BODY);
  coap_register_response_handler(c->ctx, on_response);
  coap_register_nack_handler(c->ctx, on_nack);
  coap_register_event_handler(c->ctx, on_event);
  *out = c;
  return EST_OK;
}

void ec_client_free(ec_client *c) {
  if (!c)
    return;
  ec_client_close(c);
  if (c->ctx)
    coap_free_context(c->ctx);
  free(c->part);
  free(c->cert_pem);
  ec_file_free(c->key_pem, c->key_len);
  free(c->trust_pem);
  free(c->conn_trust);
  free(c);
}

est_err ec_client_add_trust(ec_client *c, const uint8_t *pem, size_t len) {
  if (!c || !pem || !len || len > EC_FILE_MAX || c->trust_len + len + 2 > 2 * EC_FILE_MAX)
    return EST_ERR_INVALID;
  /* Drop the NUL, add a newline, the new PEM and a NUL again. */
  uint8_t *n = realloc(c->trust_pem, c->trust_len + len + 1);
  if (!n)
    return EST_ERR_NOMEM;
  size_t at = c->trust_len - 1;
  n[at++] = '\n';
  memcpy(n + at, pem, len);
  at += len;
  n[at++] = '\0';
  c->trust_pem = n;
  c->trust_len = at;
  return EST_OK;
}

void ec_client_cleanup(void) { coap_cleanup(); }

/* Release the session only: a handshake tried again keeps the set-up. */
static void drop_session(ec_client *c) {
  coap_session_t *s = c->session;
  c->session = NULL;
  c->connected = false;
  /* The last reference: libcoap sends close_notify and frees it. */
  coap_session_release(s);
  coap_io_process(c->ctx, COAP_IO_NO_WAIT);
}

void ec_client_close(ec_client *c) {
  if (!c || !c->session)
    return;
  c->host[0] = '\0';
  c->port = 0;
  drop_session(c);
  free(c->conn_trust);
  c->conn_trust = NULL;
}

bool ec_client_is_connected_to(const ec_client *c, const char *host, uint16_t port) {
  return c && c->session && c->connected && !c->closed && port == c->port && host &&
         strcmp(host, c->host) == 0;
}

static bool is_ip_literal(const char *s, uint8_t out[16], size_t *len) {
  if (inet_pton(AF_INET, s, out) == 1) {
    *len = 4;
    return true;
  }
  if (inet_pton(AF_INET6, s, out) == 1) {
    *len = 16;
    return true;
  }
  return false;
}

static gnutls_session_t tls_of(ec_client *c) {
  coap_tls_library_t lib = COAP_TLS_LIBRARY_NOTLS;
  if (!c->session)
    return NULL;
  void *t = coap_session_get_tls(c->session, &lib);
  return lib == COAP_TLS_LIBRARY_GNUTLS ? (gnutls_session_t)t : NULL;
}

/* RFC 7030 §3.6.1 / RFC 6125: the server certificate names the host we
 * meant (a DNS name or an IP address in the SAN). The chain itself was
 * checked by libcoap against trust_file during the handshake. */
static est_err check_server_name(ec_client *c, const char *name, char *diag,
                                 size_t diag_len) {
  gnutls_session_t gs = tls_of(c);
  unsigned n = 0;
  const gnutls_datum_t *peers = gs ? gnutls_certificate_get_peers(gs, &n) : NULL;
  gnutls_x509_crt_t crt = NULL;
  uint8_t ip[16];
  size_t iplen = 0;
  est_err rc = EST_ERR_TLS;

  if (!peers || n == 0) {
    diag_set(diag, diag_len, "the server sent no certificate");
    return EST_ERR_TLS;
  }
  if (gnutls_x509_crt_init(&crt) < 0)
    return EST_ERR_NOMEM;
  if (gnutls_x509_crt_import(crt, &peers[0], GNUTLS_X509_FMT_DER) >= 0) {
    unsigned ok = is_ip_literal(name, ip, &iplen)
                      ? gnutls_x509_crt_check_ip(crt, ip, (unsigned)iplen, 0)
                      : gnutls_x509_crt_check_hostname2(crt, name, 0);
    if (ok)
      rc = EST_OK;
  }
  if (rc != EST_OK)
    diag_set(diag, diag_len, "the server certificate is not for '%s'", name);
  gnutls_x509_crt_deinit(crt);
  return rc;
}

est_err ec_client_connect(ec_client *c, const char *host, uint16_t port,
                          char *diag, size_t diag_len) {
  struct addrinfo hints, *res = NULL, *ai;
  coap_address_t dst;
  char portstr[8];
  uint8_t ip[16];
  size_t iplen;
  est_err rc = EST_ERR_TLS;

  if (!c || !host || !host[0] || strlen(host) >= sizeof c->host || port == 0)
    return EST_ERR_INVALID;
  ec_client_close(c);
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_DGRAM;
  hints.ai_flags = AI_NUMERICSERV;
  snprintf(portstr, sizeof portstr, "%u", port);
  int gai = getaddrinfo(host, portstr, &hints, &res);
  if (gai != 0) {
    diag_set(diag, diag_len, "cannot resolve '%s': %s", host, gai_strerror(gai));
    return EST_ERR_TLS;
  }
  for (ai = res; ai; ai = ai->ai_next)
    if ((ai->ai_family == AF_INET || ai->ai_family == AF_INET6) &&
        ai->ai_addrlen <= sizeof dst.addr)
      break;
  if (!ai) {
    freeaddrinfo(res);
    diag_set(diag, diag_len, "no IPv4 or IPv6 address for '%s'", host);
    return EST_ERR_TLS;
  }
  coap_address_init(&dst);
  dst.size = ai->ai_addrlen;
  memcpy(&dst.addr.sa, ai->ai_addr, ai->ai_addrlen);
  freeaddrinfo(res);

  const char *name = c->conf.server_name ? c->conf.server_name : host;
  memset(&c->pki, 0, sizeof c->pki);
  c->pki.version = COAP_DTLS_PKI_SETUP_VERSION;
  /* AUTH-1: the server must chain to the trust anchors; no self-signed,
   * no expired certificates. check_common_ca would demand that the
   * server and an IDevID share a CA, which they never do. */
  c->pki.verify_peer_cert = 1;
  c->pki.check_common_ca = 0;
  c->pki.allow_self_signed = 0;
  c->pki.allow_expired_certs = 0;
  c->pki.cert_chain_validation = 1;
  c->pki.cert_chain_verify_depth = 4;
  c->pki.check_cert_revocation = 0;
  c->pki.allow_no_crl = 1;
  c->pki.allow_expired_crl = 1;
  /* SNI for DNS names only (RFC 6066 §3: no IP literals). */
  if (!is_ip_literal(name, ip, &iplen)) {
    snprintf(c->sni, sizeof c->sni, "%s", name);
    c->pki.client_sni = c->sni;
  }
  c->pki.pki_key.key_type = COAP_PKI_KEY_PEM_BUF;
  c->pki.pki_key.key.pem_buf.public_cert = c->cert_pem;
  c->pki.pki_key.key.pem_buf.public_cert_len = c->cert_len;
  c->pki.pki_key.key.pem_buf.private_key = c->key_pem;
  c->pki.pki_key.key.pem_buf.private_key_len = c->key_len;
  /* libcoap keeps the setup pointers: give it a copy that lives as long
   * as this session, so ec_client_add_trust() may grow the original. */
  free(c->conn_trust);
  c->conn_trust = malloc(c->trust_len);
  if (!c->conn_trust)
    return EST_ERR_NOMEM;
  memcpy(c->conn_trust, c->trust_pem, c->trust_len);
  c->pki.pki_key.key.pem_buf.ca_cert = c->conn_trust;
  c->pki.pki_key.key.pem_buf.ca_cert_len = c->trust_len;

  /* Drive the handshake to its end before anything else, so the channel
   * binding exists and the server is checked first (RFC 7030 §3.5). */
  uint64_t deadline = now_ms() + (uint64_t)c->conf.timeout_s * 1000u;
  for (unsigned attempt = 1;; attempt++) {
    uint64_t began = now_ms();
    c->connected = false;
    c->closed = false;
    c->session = coap_new_client_session_pki(c->ctx, NULL, &dst, COAP_PROTO_DTLS, &c->pki);
    if (!c->session) {
      diag_set(diag, diag_len,
               "cannot set up DTLS to '%s' (check --cert, --key and --trust)", host);
      goto out;
    }
    /* The first flight is out; libcoap reads max_retransmit at every
     * handshake timeout after this and gives up when its count of them,
     * over all flights, passes it. RFC 7252 §4.8's 4 is for CoAP
     * messages; a handshake retransmits by RFC 6347 §4.2.4, so --timeout
     * bounds it instead (tools/enroll/README.md "Lossy links"). */
    coap_session_set_max_retransmit(c->session, hs_retransmit_budget(c->conf.timeout_s));
    while (!c->connected && !c->closed) {
      if (coap_session_get_state(c->session) == COAP_SESSION_STATE_ESTABLISHED) {
        c->connected = true;
        break;
      }
      uint64_t now = now_ms();
      if (now >= deadline)
        break;
      uint64_t left = deadline - now;
      coap_io_process(c->ctx, (uint32_t)(left < 250 ? left : 250));
    }
    if (c->connected && !c->closed)
      break;
    /* A refusal (alert, untrusted certificate, ICMP) ends a session within
     * a round trip; one that dies after seconds of retransmissions lost
     * its flights, and a new session starts again at a 1 s timer. */
    uint64_t now = now_ms();
    if (!c->closed || now - began < EC_HS_RETRY_AFTER_MS ||
        now + EC_HS_RETRY_LEFT_MS > deadline)
      break;
    fprintf(stderr,
            "est-enroll: DTLS handshake with %s port %u: session %u closed after %llu s "
            "of retransmissions, trying a new session (%llu s left)\n",
            host, port, attempt, (unsigned long long)((now - began) / 1000u),
            (unsigned long long)((deadline - now) / 1000u));
    drop_session(c);
  }
  if (!c->connected || c->closed ||
      coap_session_get_state(c->session) != COAP_SESSION_STATE_ESTABLISHED) {
    diag_set(diag, diag_len, "DTLS handshake with %s port %u %s", host, port,
             c->closed ? "failed (no DTLS server there, its certificate is not trusted, "
                         "or ours was refused; -v tells more)"
                       : "timed out");
    goto out;
  }
  /* Back to MAX_RETRANSMIT 4 before the first CON (RFC 7252 §4.8):
   * libcoap reads it at each CON retransmission. */
  coap_session_set_max_retransmit(c->session, COAP_DEFAULT_MAX_RETRANSMIT);
  rc = check_server_name(c, name, diag, diag_len);
  if (rc != EST_OK)
    goto out;
  snprintf(c->host, sizeof c->host, "%s", host);
  c->port = port;
out:
  if (rc != EST_OK)
    ec_client_close(c);
  return rc;
}

est_err ec_client_tls_unique(ec_client *c, char *out, size_t out_len) {
  gnutls_session_t gs = c ? tls_of(c) : NULL;
  gnutls_datum_t cb = {NULL, 0}, b64 = {NULL, 0};
  est_err rc = EST_ERR_TLS;
  if (!gs || !out || !out_len)
    return EST_ERR_INVALID;
  if (gnutls_session_channel_binding(gs, GNUTLS_CB_TLS_UNIQUE, &cb) < 0)
    goto out;
  /* RFC 7030 §3.5: base64 (RFC 4648 §4) in challengePassword. */
  if (gnutls_base64_encode2(&cb, &b64) < 0)
    goto out;
  if (b64.size + 1 > out_len) {
    rc = EST_ERR_TOO_LARGE;
    goto out;
  }
  memcpy(out, b64.data, b64.size);
  out[b64.size] = '\0';
  rc = EST_OK;
out:
  if (cb.data) {
    gnutls_memset(cb.data, 0, cb.size);
    gnutls_free(cb.data);
  }
  gnutls_free(b64.data);
  return rc;
}

const char *ec_client_session_info(ec_client *c, char *buf, size_t len) {
  gnutls_session_t gs = c ? tls_of(c) : NULL;
  if (!buf || !len)
    return "";
  buf[0] = '\0';
  if (gs) {
    char *d = gnutls_session_get_desc(gs);
    snprintf(buf, len, "%s", d ? d : "");
    gnutls_free(d);
  }
  return buf;
}

/* Uri-Path or Uri-Query options from a string (RFC 7252 §6.4). */
static bool add_split(coap_optlist_t **opts, const char *s, bool query) {
  unsigned char buf[512];
  size_t buflen = sizeof buf;
  /* coap_split_path() wants the path without its leading '/'. */
  if (!query && s[0] == '/')
    s++;
  size_t n = strlen(s);
  if (n == 0)
    return true;
  int segs = query ? coap_split_query((const uint8_t *)s, n, buf, &buflen)
                   : coap_split_path((const uint8_t *)s, n, buf, &buflen);
  if (segs < 0)
    return false;
  unsigned char *p = buf;
  while (segs--) {
    coap_optlist_t *o = coap_new_optlist(query ? COAP_OPTION_URI_QUERY : COAP_OPTION_URI_PATH,
                                         coap_opt_length(p), coap_opt_value(p));
    if (!o || !coap_insert_optlist(opts, o))
      return false;
    p += coap_opt_size(p);
  }
  return true;
}

static bool add_uint(coap_optlist_t **opts, coap_option_num_t num, unsigned v) {
  uint8_t b[4];
  coap_optlist_t *o = coap_new_optlist(num, coap_encode_var_safe(b, sizeof b, v), b);
  return o && coap_insert_optlist(opts, o);
}

static void release_body(coap_session_t *s, void *app_ptr) {
  (void)s;
  free(app_ptr);
}

static unsigned szx_of(unsigned block_size) {
  unsigned szx = 0;
  while (szx < 6 && (16u << szx) < block_size)
    szx++;
  return szx;
}

est_err ec_client_request(ec_client *c, bool post, const char *path,
                          const char *query, int cf, int accept,
                          const uint8_t *body, size_t body_len,
                          ec_response *resp, char *diag, size_t diag_len) {
  coap_optlist_t *opts = NULL;
  coap_pdu_t *pdu = NULL;
  est_err rc = EST_ERR_TLS;

  if (!c || !path || !resp || (body_len && !body) || body_len > EC_BODY_MAX)
    return EST_ERR_INVALID;
  memset(resp, 0, sizeof *resp);
  resp->cf = -1;
  if (!c->session || !c->connected || c->closed) {
    diag_set(diag, diag_len, "no DTLS session");
    return EST_ERR_TLS;
  }
  pdu = coap_new_pdu(COAP_MESSAGE_CON,
                     post ? COAP_REQUEST_CODE_POST : COAP_REQUEST_CODE_GET, c->session);
  if (!pdu)
    return EST_ERR_NOMEM;
  coap_session_new_token(c->session, &c->token_len, c->token);
  if (!coap_add_token(pdu, c->token_len, c->token)) {
    rc = EST_ERR_INTERNAL;
    goto out;
  }
  bool ok = add_split(&opts, path, false) && (!query || add_split(&opts, query, true));
  if (ok && cf >= 0)
    ok = add_uint(&opts, COAP_OPTION_CONTENT_FORMAT, (unsigned)cf);
  if (ok && accept >= 0)
    ok = add_uint(&opts, COAP_OPTION_ACCEPT, (unsigned)accept);
  if (ok && c->conf.block_size) {
    unsigned szx = szx_of(c->conf.block_size);
    /* Block2 early negotiation (RFC 7959 §2.4); Block1 sets the size
     * libcoap uses for the upload (RFC 9148 App. B.2). */
    ok = add_uint(&opts, COAP_OPTION_BLOCK2, szx);
    if (ok && post && body_len)
      ok = add_uint(&opts, COAP_OPTION_BLOCK1,
                    (body_len > (16u << szx) ? 0x08u : 0u) | szx);
  }
  if (!ok || (opts && !coap_add_optlist_pdu(pdu, &opts))) {
    diag_set(diag, diag_len, "cannot build the request for '%s'", path);
    rc = EST_ERR_INVALID;
    goto out;
  }
  if (body_len) {
    /* libcoap keeps the body until the last Block1 is acknowledged. */
    uint8_t *copy = malloc(body_len);
    if (!copy) {
      rc = EST_ERR_NOMEM;
      goto out;
    }
    memcpy(copy, body, body_len);
    if (!coap_add_data_large_request(c->session, pdu, body_len, copy, release_body,
                                     copy)) {
      rc = EST_ERR_INTERNAL; /* libcoap has released copy */
      goto out;
    }
  }

  c->resp = resp;
  c->waiting = true;
  c->done = false;
  c->fail = EST_OK;
  c->fail_why[0] = '\0';
  free(c->part);
  c->part = NULL;
  c->part_len = 0;
  coap_pdu_t *sent = pdu;
  pdu = NULL; /* coap_send() takes it, also on failure */
  if (coap_send(c->session, sent) == COAP_INVALID_MID) {
    diag_set(diag, diag_len, "cannot send the request");
    goto done;
  }
  uint64_t deadline = now_ms() + (uint64_t)c->conf.timeout_s * 1000u;
  while (!c->done && c->fail == EST_OK) {
    uint64_t now = now_ms();
    if (now >= deadline) {
      diag_set(diag, diag_len, "no response within %u s", c->conf.timeout_s);
      goto done;
    }
    uint64_t left = deadline - now;
    coap_io_process(c->ctx, (uint32_t)(left < 250 ? left : 250));
  }
  if (c->fail != EST_OK) {
    rc = c->fail;
    diag_set(diag, diag_len, "%s", c->fail_why);
    goto done;
  }
  rc = EST_OK;
done:
  c->waiting = false;
  c->resp = NULL;
  free(c->part);
  c->part = NULL;
  c->part_len = 0;
  if (rc != EST_OK)
    ec_response_clear(resp, true);
out:
  coap_delete_optlist(opts);
  if (pdu)
    coap_delete_pdu(pdu);
  return rc;
}
