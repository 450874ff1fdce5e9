/* est-enroll commands on top of client.c: discovery, the EST functions of
 * RFC 9148 §4, the §4.7 retry loop, and writing results safely. */
#define _GNU_SOURCE
#include "ops.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <gnutls/gnutls.h>

#include "certs.h"
#include "files.h"
#include "proto/der.h"
#include "proto/resource.h"
#include "retry.h"

#define WELL_KNOWN_ROOT "/.well-known/est"
#define PATH_MAX_LEN 512
#define RECONNECT_DELAY_S 2u

/* State of one run. */
typedef struct op {
  const ec_run *r;
  ec_client *c;
  char *diag;
  size_t diag_len;
  bool discovered;
  ec_discovery disc;
  ec_certs anchors;                /* crts answer + --trust */
  gnutls_x509_privkey_t new_key;   /* generated, not yet on disk */
  const char *new_key_path;
} op;

static void say(const op *o, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void say(const op *o, int level, const char *fmt, ...) {
  va_list ap;
  if (o->r->verbose < level)
    return;
  fputs("est-enroll: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
}

static void set_diag(op *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_diag(op *o, const char *fmt, ...) {
  va_list ap;
  if (!o->diag || !o->diag_len)
    return;
  va_start(ap, fmt);
  vsnprintf(o->diag, o->diag_len, fmt, ap);
  va_end(ap);
}

/* The server's diagnostic payload (RFC 7252 §5.5.2) made safe to print. */
static void diag_text(const ec_response *resp, char *out, size_t out_len) {
  size_t n = 0;
  out[0] = '\0';
  if (!resp->body || resp->cf >= 0)
    return;
  for (size_t i = 0; i < resp->len && i < EC_DIAG_BODY_MAX && n + 1 < out_len; i++) {
    unsigned char ch = resp->body[i];
    out[n++] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
  }
  out[n] = '\0';
}

est_err ec_code_err(unsigned code) {
  switch (code) {
  case 400:
    return EST_ERR_BAD_REQUEST;
  case 401:
    return EST_ERR_UNAUTHENTICATED;
  case 403:
    return EST_ERR_FORBIDDEN;
  case 404:
    return EST_ERR_NOT_FOUND;
  case 405:
    return EST_ERR_METHOD;
  case 406:
    return EST_ERR_NOT_ACCEPTABLE;
  case 408:
    return EST_ERR_INCOMPLETE;
  case 413:
    return EST_ERR_TOO_LARGE;
  case 415:
    return EST_ERR_CONTENT_FORMAT;
  case 503:
    return EST_ERR_PENDING;
  default:
    return code >= 500 ? EST_ERR_UNAVAILABLE : EST_ERR_BAD_REQUEST;
  }
}

int ec_exit_code(est_err err) {
  switch (err) {
  case EST_OK:
    return 0;
  case EST_ERR_INVALID:
  case EST_ERR_CONFIG:
    return 2;
  case EST_ERR_PENDING:
    return 3;
  case EST_ERR_FORBIDDEN:
  case EST_ERR_UNAUTHENTICATED:
  case EST_ERR_POP_LINKING:
  case EST_ERR_SUBJECT_MISMATCH:
  case EST_ERR_CA_REQUEST:
  case EST_ERR_REJECTED:
    return 4;
  case EST_ERR_TOO_LARGE:
  case EST_ERR_BAD_CSR:
  case EST_ERR_CSR_SIGNATURE:
  case EST_ERR_CONTENT_FORMAT:
  case EST_ERR_NOT_ACCEPTABLE:
  case EST_ERR_METHOD:
  case EST_ERR_NOT_FOUND:
  case EST_ERR_INCOMPLETE:
  case EST_ERR_BAD_REQUEST:
  case EST_ERR_PKI:
  case EST_ERR_UNAVAILABLE:
  case EST_ERR_MALFORMED:
  case EST_ERR_KEY_MISMATCH:
    return 5;
  case EST_ERR_TLS:
    return 6;
  case EST_ERR_NOMEM:
  case EST_ERR_IO:
  case EST_ERR_INTERNAL:
  case EST_ERR_ABI:
  case EST_ERR_ADDR_IN_USE:
  case EST_ERR_EXISTS:
  case EST_ERR_STATE:
  case EST_ERR_BUSY:
  case EST_ERR_STORE:
  case EST_ERR_SCHEMA:
  case EST_ERR__LAST:
    return 1;
  }
  return 1;
}

/* A problem with one of our own files is a local error (exit 1), even
 * when the parser calls it malformed. */
static est_err local_err(est_err rc) {
  return rc == EST_OK || rc == EST_ERR_NOMEM ? rc : EST_ERR_IO;
}

static uint64_t mono_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec;
}

static void sleep_s(uint32_t s) {
  struct timespec ts = {(time_t)s, 0};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
    ;
}

static est_err ensure_connected(op *o, const char *host, uint16_t port) {
  char info[160];
  if (ec_client_is_connected_to(o->c, host, port))
    return EST_OK;
  est_err rc = ec_client_connect(o->c, host, port, o->diag, o->diag_len);
  if (rc == EST_OK)
    say(o, 1, "connected to %s port %u: %s", host, port,
        ec_client_session_info(o->c, info, sizeof info));
  return rc;
}

/* GET /.well-known/core?rt=ace.est* (RFC 9148 §4.1, DISC-1). */
static est_err get_links(op *o, ec_response *resp) {
  memset(resp, 0, sizeof *resp);
  resp->cf = -1;
  est_err rc = ensure_connected(o, o->r->server.host, o->r->server.port);
  if (rc != EST_OK)
    return rc;
  return ec_client_request(o->c, false, "/.well-known/core", "rt=ace.est*", -1, -1,
                           NULL, 0, resp, o->diag, o->diag_len);
}

/* Discovery once per run; on any non-transport failure every function
 * falls back to /.well-known/est (DISC-5). */
static est_err discover(op *o) {
  ec_response resp = {0};
  if (o->discovered)
    return EST_OK;
  est_err rc = get_links(o, &resp);
  if (rc != EST_OK)
    return rc;
  o->discovered = true;
  if (resp.code == 205 && (resp.cf < 0 || resp.cf == CF_LINK_FORMAT)) {
    rc = ec_discovery_parse((const char *)resp.body, resp.len, o->r->label, &o->disc);
    if (rc != EST_OK)
      say(o, 1, "discovery document is not valid link-format (%s); using what parsed",
          est_strerror(rc));
    say(o, 1, "discovery: %zu EST link(s)", o->disc.est_links);
  } else {
    say(o, 1, "discovery answered %u.%02u; using %s", resp.code / 100, resp.code % 100,
        WELL_KNOWN_ROOT);
  }
  ec_response_clear(&resp, false);
  return EST_OK;
}

/* Where function @p fn is served: discovered link, --root, or the
 * default root. */
static est_err target_of(op *o, est_fn fn, const char **host, uint16_t *port,
                         char *path, size_t path_len) {
  const ec_run *r = o->r;
  *host = r->server.host;
  *port = r->server.port;
  if (r->root)
    return ec_path_build(r->root, r->label, fn, path, path_len);
  est_err rc = discover(o);
  if (rc != EST_OK)
    return rc;
  if (o->disc.found[fn]) {
    const ec_uri *u = &o->disc.uri[fn];
    /* DISC-8: an absolute link names another host or port. */
    if (u->has_authority) {
      *host = u->host;
      *port = u->port;
    }
    if (strlen(u->path) >= path_len)
      return EST_ERR_TOO_LARGE;
    memcpy(path, u->path, strlen(u->path) + 1);
    return EST_OK;
  }
  return ec_path_build(WELL_KNOWN_ROOT, r->label, fn, path, path_len);
}

/* Write a key we generated, once (0600, atomic). */
static est_err persist_new_key(op *o) {
  if (!o->new_key || !o->new_key_path)
    return EST_OK;
  est_err rc = ec_key_write(o->new_key, o->new_key_path, o->diag, o->diag_len);
  if (rc == EST_OK) {
    say(o, 1, "wrote the new key to %s", o->new_key_path);
    o->new_key_path = NULL;
  }
  return rc;
}

/* What a POST carries: a CSR signed by key, built per attempt. */
typedef struct csr_src {
  gnutls_x509_privkey_t key;
  ec_csr_params params;
} csr_src;

static est_err build_csr(op *o, const csr_src *src, uint8_t **der, size_t *len) {
  char cb[128];
  ec_csr_params p = src->params;
  p.challenge = NULL;
  if (!o->r->no_pop) {
    /* RFC 7030 §3.5: this session's tls-unique, so the CSR is rebuilt
     * for every new DTLS session (docs/decisions.md §7). */
    est_err rc = ec_client_tls_unique(o->c, cb, sizeof cb);
    if (rc != EST_OK) {
      set_diag(o, "cannot read the tls-unique channel binding");
      return rc;
    }
    p.challenge = cb;
  }
  return ec_csr_build(src->key, &p, der, len, o->diag, o->diag_len);
}

/* One attempt: (re)connect, build the CSR on this session, send. */
static est_err attempt_once(op *o, const est_fn_info *info, const char *host,
                            uint16_t port, const char *path, int accept,
                            const csr_src *csr, bool retry, ec_response *resp) {
  uint8_t *body = NULL;
  size_t body_len = 0;
  est_err rc = ensure_connected(o, host, port);
  /* After a 5.03 the request is known to the server; a failed new
   * handshake gets two more chances before the wait is lost. */
  for (unsigned again = 0; rc == EST_ERR_TLS && retry && again < 2; again++) {
    say(o, 0, "%s, trying again in %u s", o->diag, RECONNECT_DELAY_S);
    sleep_s(RECONNECT_DELAY_S);
    rc = ensure_connected(o, host, port);
  }
  if (rc != EST_OK)
    goto out;
  if (csr) {
    rc = build_csr(o, csr, &body, &body_len);
    if (rc != EST_OK)
      goto out;
  }
  say(o, 1, "%s %s%s", info->post ? "POST" : "GET", path,
      csr && !o->r->no_pop ? " (CSR with tls-unique)" : "");
  rc = ec_client_request(o->c, info->post, path, NULL, info->post ? CF_PKCS10 : -1,
                         accept, body, body_len, resp, o->diag, o->diag_len);
  if (rc == EST_ERR_TLS) {
    size_t n = strlen(o->diag);
    if (n < o->diag_len)
      snprintf(o->diag + n, o->diag_len - n, " (%s %s)", info->name, path);
  }
out:
  free(body);
  return rc;
}

/* One EST function, with the RFC 9148 §4.7 loop: on 5.03 wait Max-Age
 * (60 s if absent), open a new DTLS session, rebuild the CSR with the same
 * key and send again, until a final answer or --max-wait. */
static est_err exchange(op *o, est_fn fn, int accept, const csr_src *csr,
                        ec_response *resp) {
  const est_fn_info *info = proto_fn_info(fn);
  char path[PATH_MAX_LEN], text[EC_DIAG_BODY_MAX + 1];
  const char *host;
  uint16_t port;
  uint64_t start = mono_s();
  bool final = false;

  memset(resp, 0, sizeof *resp);
  resp->cf = -1;
  est_err rc = target_of(o, fn, &host, &port, path, sizeof path);
  for (unsigned attempt = 1; rc == EST_OK && !final; attempt++) {
    rc = attempt_once(o, info, host, port, path, accept, csr, attempt > 1, resp);
    if (rc != EST_OK)
      break;
    ec_retry d = ec_retry_decide(resp->code, resp->has_max_age, resp->max_age,
                                 mono_s() - start, o->r->max_wait_s);
    diag_text(resp, text, sizeof text);
    say(o, 2, "%s: attempt %u: %u.%02u, %s", info->name, attempt, resp->code / 100,
        resp->code % 100, ec_retry_action_name(d.action));
    final = true;
    switch (d.action) {
    case EC_RETRY_DONE:
      say(o, 1, "%s: %u.%02u, %zu bytes, Content-Format %d", info->name,
          resp->code / 100, resp->code % 100, resp->len, resp->cf);
      break;
    case EC_RETRY_WAIT:
      /* DLY-5: the client informs; the request stays pending. */
      fprintf(stderr, "est-enroll: %s: pending (5.03%s%s), retrying in %u s (attempt %u)\n",
              info->name, text[0] ? " " : "", text, d.wait_s, attempt);
      ec_response_clear(resp, false);
      rc = persist_new_key(o);
      if (rc == EST_OK) {
        ec_client_close(o->c);
        sleep_s(d.wait_s);
        final = false;
      }
      break;
    case EC_RETRY_PENDING:
      rc = persist_new_key(o);
      if (rc == EST_OK) {
        set_diag(o, "%s: still pending (5.03%s%s, Max-Age %u) and --max-wait %llu s "
                 "would run out; run again later",
                 info->name, text[0] ? " " : "", text,
                 resp->has_max_age ? resp->max_age : EC_RETRY_DEFAULT_MAX_AGE,
                 (unsigned long long)o->r->max_wait_s);
        rc = EST_ERR_PENDING;
      }
      break;
    case EC_RETRY_REJECTED:
    case EC_RETRY_FAILED:
    case EC_RETRY__MAX:
      set_diag(o, "%s: the server answered %u.%02u%s%s", info->name, resp->code / 100,
               resp->code % 100, text[0] ? ": " : "", text);
      rc = d.action == EC_RETRY_REJECTED ? EST_ERR_FORBIDDEN : ec_code_err(resp->code);
      break;
    }
  }
  if (rc != EST_OK)
    ec_response_clear(resp, false);
  return rc;
}

/* Certificates from a crts/sen/sren answer: 281 or 287 (RFC 9148 §4.3). */
static est_err certs_from(op *o, const char *what, const ec_response *resp,
                          ec_certs *out) {
  est_err rc;
  if (resp->cf == CF_PKCS7_CERTS_ONLY)
    rc = ec_certs_add_p7(out, resp->body, resp->len);
  else if (resp->cf == CF_PKIX_CERT)
    rc = ec_certs_add_der(out, resp->body, resp->len);
  else {
    set_diag(o, "%s: unexpected Content-Format %d (want 281 or 287)", what, resp->cf);
    return EST_ERR_MALFORMED;
  }
  if (rc != EST_OK)
    set_diag(o, "%s: the %s does not parse", what,
             resp->cf == CF_PKIX_CERT ? "certificate" : "PKCS#7 certs-only");
  return rc;
}

/* crts, then the trust anchors for checking what we get issued:
 * the CA certificates plus --trust (RFC 7030 §4.1.3). */
static est_err fetch_cacerts(op *o, ec_response *resp, ec_certs *bag) {
  est_err rc = exchange(o, EST_FN_CRTS, CF_PKCS7_CERTS_ONLY, NULL, resp);
  if (rc != EST_OK)
    return rc;
  if (resp->code != 205) {
    set_diag(o, "crts: unexpected %u.%02u", resp->code / 100, resp->code % 100);
    return EST_ERR_MALFORMED;
  }
  return certs_from(o, "crts", resp, bag);
}

static est_err load_anchors(op *o) {
  ec_response resp = {0};
  ec_certs bag = {NULL, 0};
  est_err rc = fetch_cacerts(o, &resp, &bag);
  /* SEC-3: the CA certificates become trust anchors of later sessions. */
  if (rc == EST_OK) {
    uint8_t *pem = NULL;
    size_t len = 0;
    rc = ec_certs_pem(&bag, 0, &pem, &len);
    if (rc == EST_OK)
      rc = ec_client_add_trust(o->c, pem, len);
    free(pem);
  }
  if (rc == EST_OK)
    rc = local_err(ec_certs_add_pem_file(&bag, o->r->conf.trust_file, o->diag, o->diag_len));
  if (rc == EST_OK) {
    o->anchors = bag;
    bag.crt = NULL;
    bag.count = 0;
  }
  ec_certs_clear(&bag);
  ec_response_clear(&resp, false);
  return rc;
}

static est_err write_out(op *o, const char *path, const void *data, size_t len,
                         unsigned mode) {
  est_err rc = ec_file_write_atomic(path, data, len, (mode_t)mode, o->diag, o->diag_len);
  if (rc == EST_OK)
    say(o, 1, "wrote %s (%zu bytes)", path, len);
  return rc;
}

/* --out: the leaf and whatever else the server sent, PEM; or the leaf DER. */
static est_err write_cert(op *o, const ec_certs *issued, size_t leaf) {
  uint8_t *buf = NULL;
  size_t len = 0;
  est_err rc = o->r->der ? ec_cert_der(issued->crt[leaf], &buf, &len)
                         : ec_certs_pem(issued, leaf, &buf, &len);
  if (rc == EST_OK)
    rc = write_out(o, o->r->out, buf, len, 0644);
  free(buf);
  return rc;
}

static void report_cert(op *o, gnutls_x509_crt_t crt) {
  gnutls_datum_t dn = {NULL, 0};
  time_t t = gnutls_x509_crt_get_expiration_time(crt);
  char when[32] = "?";
  struct tm tm;
  if (t != (time_t)-1 && gmtime_r(&t, &tm))
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
  if (gnutls_x509_crt_get_dn3(crt, &dn, 0) < 0)
    dn.data = NULL;
  say(o, 1, "certificate for '%s', valid until %s", dn.data ? (char *)dn.data : "",
      when);
  gnutls_free(dn.data);
}

/* ---- commands ----------------------------------------------------------- */

typedef struct print_ctx {
  size_t count;
} print_ctx;

static bool print_link(const ec_link *l, void *arg) {
  print_ctx *p = arg;
  for (int fn = 0; fn < EST_FN__MAX; fn++) {
    const est_fn_info *info = proto_fn_info((est_fn)fn);
    if (!ec_link_is_fn(l, (est_fn)fn))
      continue;
    printf("%s\t%s\tct=", info->name, l->target);
    for (size_t i = 0; i < l->ct_count; i++)
      printf("%s%u", i ? "," : "", l->ct[i]);
    printf("\n");
    p->count++;
    break;
  }
  return true;
}

static est_err cmd_discover(op *o) {
  ec_response resp = {0};
  print_ctx pc = {0};
  est_err rc = get_links(o, &resp);
  if (rc != EST_OK)
    return rc;
  if (resp.code != 205) {
    char text[EC_DIAG_BODY_MAX + 1];
    diag_text(&resp, text, sizeof text);
    set_diag(o, "discovery: the server answered %u.%02u%s%s", resp.code / 100,
             resp.code % 100, text[0] ? ": " : "", text);
    rc = resp.code == 401 || resp.code == 403 ? EST_ERR_FORBIDDEN : ec_code_err(resp.code);
    goto out;
  }
  if (resp.cf >= 0 && resp.cf != CF_LINK_FORMAT) {
    set_diag(o, "discovery: Content-Format %d, not 40 (link-format)", resp.cf);
    rc = EST_ERR_MALFORMED;
    goto out;
  }
  rc = ec_links_parse((const char *)resp.body, resp.len, print_link, &pc);
  if (rc != EST_OK) {
    set_diag(o, "discovery: the link-format document is malformed");
    goto out;
  }
  if (pc.count == 0) {
    set_diag(o, "discovery: the server lists no EST resources");
    rc = EST_ERR_NOT_FOUND;
  }
out:
  ec_response_clear(&resp, false);
  return rc;
}

static est_err cmd_cacerts(op *o) {
  ec_response resp = {0};
  ec_certs bag = {NULL, 0};
  uint8_t *pem = NULL;
  size_t pem_len = 0;
  est_err rc = fetch_cacerts(o, &resp, &bag);
  if (rc != EST_OK)
    goto out;
  say(o, 1, "crts: %zu certificate(s)", bag.count);
  if (o->r->der) {
    /* The DER as received: PKCS#7 certs-only (281) or one cert (287). */
    rc = write_out(o, o->r->out, resp.body, resp.len, 0644);
  } else {
    rc = ec_certs_pem(&bag, 0, &pem, &pem_len);
    if (rc == EST_OK)
      rc = write_out(o, o->r->out, pem, pem_len, 0644);
  }
out:
  free(pem);
  ec_certs_clear(&bag);
  ec_response_clear(&resp, false);
  return rc;
}

static est_err cmd_csrattrs(op *o) {
  ec_response resp = {0};
  est_err rc = exchange(o, EST_FN_ATT, CF_CSRATTRS, NULL, &resp);
  if (rc != EST_OK)
    return rc;
  if (resp.code != 205 || resp.cf != CF_CSRATTRS ||
      !der_one_sequence(resp.body, resp.len)) {
    set_diag(o, "att: not a DER CsrAttrs with Content-Format 285 (got %d)", resp.cf);
    rc = EST_ERR_MALFORMED;
  } else {
    rc = write_out(o, o->r->out, resp.body, resp.len, 0644);
  }
  ec_response_clear(&resp, false);
  return rc;
}

/* --renew-within DAYS: nothing to do while the certificate lasts longer. */
static est_err renew_due(op *o, gnutls_x509_crt_t cur, bool *due) {
  long long left = 0;
  *due = true;
  if (o->r->renew_within_days < 0)
    return EST_OK;
  est_err rc = ec_cert_seconds_left(cur, (long long)time(NULL), &left);
  if (rc != EST_OK) {
    set_diag(o, "--cert: no expiry date");
    return local_err(rc);
  }
  long long within = (long long)o->r->renew_within_days * 86400;
  if (left > within) {
    *due = false;
    printf("est-enroll: the certificate has %lld day(s) left, more than %ld: "
           "not renewing\n", left / 86400, o->r->renew_within_days);
  }
  return EST_OK;
}

static est_err cmd_enroll(op *o, bool re) {
  const ec_run *r = o->r;
  ec_response resp = {0};
  ec_certs cur = {NULL, 0}, issued = {NULL, 0};
  csr_src src;
  uint8_t *cur_der = NULL;
  size_t cur_len = 0, leaf = 0;
  gnutls_x509_privkey_t key = NULL;
  est_err rc;

  memset(&resp, 0, sizeof resp);
  memset(&src, 0, sizeof src);
  if (re) {
    /* RFC 7030 §4.2.2: the subject and SAN of the current certificate. */
    rc = local_err(ec_certs_add_pem_file(&cur, r->conf.cert_file, o->diag, o->diag_len));
    if (rc != EST_OK)
      goto out;
    bool due = true;
    rc = renew_due(o, cur.crt[0], &due);
    if (rc != EST_OK || !due)
      goto out;
    rc = local_err(ec_cert_der(cur.crt[0], &cur_der, &cur_len));
    if (rc != EST_OK)
      goto out;
    src.params.from_cert = cur_der;
    src.params.from_cert_len = cur_len;
  } else {
    src.params.subject = r->subject;
    src.params.san_dns = r->san_dns;
    src.params.san_dns_count = r->san_dns_count;
    src.params.san_ip = r->san_ip;
    src.params.san_ip_count = r->san_ip_count;
  }
  /* The key in --key-file, or a new one (rekey) written once the server
   * has taken the request (5.03) or issued the certificate. */
  if (ec_file_exists(r->key_file)) {
    rc = local_err(ec_key_load(r->key_file, &key, o->diag, o->diag_len));
    if (rc != EST_OK)
      goto out;
    say(o, 1, "using the key in %s", r->key_file);
  } else {
    rc = ec_key_generate(r->key_type, &key);
    if (rc != EST_OK) {
      set_diag(o, "cannot generate a key");
      goto out;
    }
    o->new_key = key;
    o->new_key_path = r->key_file;
    say(o, 1, "generated a new key for %s", r->key_file);
  }
  src.key = key;

  rc = load_anchors(o);
  if (rc != EST_OK)
    goto out;
  rc = exchange(o, re ? EST_FN_SREN : EST_FN_SEN, CF_PKCS7_CERTS_ONLY, &src, &resp);
  if (rc != EST_OK)
    goto out;
  const char *name = re ? "sren" : "sen";
  if (resp.code != 204) {
    set_diag(o, "%s: unexpected %u.%02u", name, resp.code / 100, resp.code % 100);
    rc = EST_ERR_MALFORMED;
    goto out;
  }
  rc = certs_from(o, name, &resp, &issued);
  if (rc != EST_OK)
    goto out;
  /* Only a certificate for our key that chains to the anchors is kept. */
  rc = ec_certs_check_issued(&issued, &o->anchors, key, &leaf, o->diag, o->diag_len);
  if (rc != EST_OK)
    goto out;
  report_cert(o, issued.crt[leaf]);
  rc = persist_new_key(o);
  if (rc == EST_OK)
    rc = write_cert(o, &issued, leaf);
out:
  ec_response_clear(&resp, false);
  ec_certs_clear(&issued);
  ec_certs_clear(&cur);
  free(cur_der);
  if (key)
    gnutls_x509_privkey_deinit(key);
  o->new_key = NULL;
  return rc;
}

est_err ec_keygen_split(const uint8_t *body, size_t len, bool single_cert,
                        mp_part *key, mp_part *cert, char *diag, size_t diag_len) {
  mp_part p[2];
  if (!key || !cert)
    return EST_ERR_INVALID;
  est_err rc = mp_decode_pair(body, len, p);
  if (rc != EST_OK) {
    if (diag && diag_len)
      snprintf(diag, diag_len, "the multipart-core body is malformed (%s)",
               est_strerror(rc));
    return rc == EST_ERR_TOO_LARGE ? rc : EST_ERR_MALFORMED;
  }
  uint16_t want = single_cert ? CF_PKIX_CERT : CF_PKCS7_CERTS_ONLY;
  int ki = -1, ci = -1;
  for (int i = 0; i < 2; i++) {
    if (p[i].cf == CF_PKCS8 && ki < 0)
      ki = i;
    else if (p[i].cf == want && ci < 0)
      ci = i;
  }
  if (ki < 0 || ci < 0 || p[ki].len == 0 || p[ci].len == 0) {
    if (diag && diag_len) {
      if (p[0].cf == CF_PKCS7_SERVER_KEYGEN || p[1].cf == CF_PKCS7_SERVER_KEYGEN)
        snprintf(diag, diag_len, "the key part is CMS-encrypted (280), not supported");
      else
        snprintf(diag, diag_len, "want parts %u (PKCS#8) and %u, got %u and %u%s",
                 CF_PKCS8, want, p[0].cf, p[1].cf,
                 ki >= 0 && ci >= 0 ? " (one is empty)" : "");
    }
    return EST_ERR_MALFORMED;
  }
  *key = p[ki];
  *cert = p[ci];
  return EST_OK;
}

static est_err cmd_serverkeygen(op *o) {
  const ec_run *r = o->r;
  ec_response resp = {0};
  ec_certs issued = {NULL, 0};
  csr_src src;
  gnutls_x509_privkey_t id_key = NULL, key = NULL;
  mp_part kp, cp;
  size_t leaf = 0;
  bool single = r->single_cert;
  const char *name = single ? "skc" : "skg";
  est_err rc;

  memset(&resp, 0, sizeof resp);
  memset(&src, 0, sizeof src);
  /* SKG-2: the server ignores the CSR's key and signature. Signing with
   * our identity key keeps the CSR key stable across runs, which is what
   * a pending request is matched by (docs/decisions.md §7). */
  rc = local_err(ec_key_load(r->conf.key_file, &id_key, o->diag, o->diag_len));
  if (rc != EST_OK)
    goto out;
  src.key = id_key;
  src.params.subject = r->subject;
  src.params.san_dns = r->san_dns;
  src.params.san_dns_count = r->san_dns_count;
  src.params.san_ip = r->san_ip;
  src.params.san_ip_count = r->san_ip_count;

  rc = load_anchors(o);
  if (rc != EST_OK)
    goto out;
  rc = exchange(o, single ? EST_FN_SKC : EST_FN_SKG, CF_MULTIPART_CORE, &src, &resp);
  if (rc != EST_OK)
    goto out;
  if (resp.code != 204 || resp.cf != CF_MULTIPART_CORE) {
    set_diag(o, "%s: unexpected %u.%02u with Content-Format %d", name, resp.code / 100,
             resp.code % 100, resp.cf);
    rc = EST_ERR_MALFORMED;
    goto out;
  }
  rc = ec_keygen_split(resp.body, resp.len, single, &kp, &cp, o->diag, o->diag_len);
  if (rc != EST_OK) {
    char why[160];
    snprintf(why, sizeof why, "%s", o->diag ? o->diag : "");
    set_diag(o, "%s: %s", name, why);
    goto out;
  }
  rc = ec_key_import_pkcs8(kp.data, kp.len, &key);
  if (rc != EST_OK) {
    set_diag(o, "%s: the key part is not an unencrypted PKCS#8 key", name);
    goto out;
  }
  rc = single ? ec_certs_add_der(&issued, cp.data, cp.len)
              : ec_certs_add_p7(&issued, cp.data, cp.len);
  if (rc != EST_OK) {
    set_diag(o, "%s: the certificate part does not parse", name);
    goto out;
  }
  rc = ec_certs_check_issued(&issued, &o->anchors, key, &leaf, o->diag, o->diag_len);
  if (rc != EST_OK)
    goto out;
  report_cert(o, issued.crt[leaf]);
  rc = ec_key_write(key, r->key_out, o->diag, o->diag_len);
  if (rc == EST_OK) {
    say(o, 1, "wrote the key to %s", r->key_out);
    rc = write_cert(o, &issued, leaf);
  }
out:
  /* The body holds the private key. */
  ec_response_clear(&resp, true);
  ec_certs_clear(&issued);
  if (key)
    gnutls_x509_privkey_deinit(key);
  if (id_key)
    gnutls_x509_privkey_deinit(id_key);
  return rc;
}

est_err ec_run_command(const ec_run *r, char *diag, size_t diag_len) {
  op o;
  est_err rc;
  if (!r)
    return EST_ERR_INVALID;
  memset(&o, 0, sizeof o);
  o.r = r;
  o.diag = diag;
  o.diag_len = diag_len;
  if (diag && diag_len)
    diag[0] = '\0';
  if ((unsigned)r->cmd >= EC_CMD__MAX)
    return EST_ERR_INVALID;
  rc = ec_client_new(&r->conf, &o.c, diag, diag_len);
  if (rc != EST_OK) {
    if (diag && diag_len && !diag[0])
      set_diag(&o, "cannot set up libcoap");
    return rc == EST_ERR_NOMEM ? rc : EST_ERR_IO;
  }
  switch (r->cmd) {
  case EC_CMD_DISCOVER:
    rc = cmd_discover(&o);
    break;
  case EC_CMD_CACERTS:
    rc = cmd_cacerts(&o);
    break;
  case EC_CMD_CSRATTRS:
    rc = cmd_csrattrs(&o);
    break;
  case EC_CMD_ENROLL:
    rc = cmd_enroll(&o, false);
    break;
  case EC_CMD_REENROLL:
    rc = cmd_enroll(&o, true);
    break;
  case EC_CMD_SERVERKEYGEN:
    rc = cmd_serverkeygen(&o);
    break;
  case EC_CMD__MAX:
    rc = EST_ERR_INVALID;
    break;
  }
  ec_certs_clear(&o.anchors);
  ec_client_free(o.c);
  return rc;
}
