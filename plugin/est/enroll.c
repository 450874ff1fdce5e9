/* The enrollment path: check, decide, issue, record, answer
 * (docs/architecture.md, docs/decisions.md §7). */
#include "enroll.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "metrics.h"
#include "proto/multipart.h"
#include "store/store.h"

/* The store's actor name for what the server itself does. */
#define ACTOR "coapd"
#define LOG_MAX 512

struct enroll {
  enroll_config cfg;
  names_config names; /* docs/decisions.md §13 */
  pki_ca *ca;
  const coapd_host_api *api;
  store *s;
  long long next_expire; /* when enroll_tick sweeps next */
  est_metrics *metrics;  /* borrowed, or NULL (metrics.h) */
};

/* Everything issuing and recording need, so the job can travel to a
 * worker thread and back without touching the request. */
struct enroll_job {
  pki_ca *ca;
  est_fn fn;
  bool bare_cert;
  pki_key_type key_type;
  pki_csr *csr;
  int64_t request_id;   /* approved request to mark issued, or 0 */
  bool record_direct;   /* auto/pre-authorised: a new issued row */
  pki_client_class cls;
  uint8_t spki_sha256[32];
  uint8_t client_fp[32];
  char *client;
  char *client_serial;  /* client certificate serial (hex), or NULL */
  char *ra;             /* the RA's subject, or NULL (enroll_request.ra) */
  char *subject;
  uint8_t *csr_der;
  size_t csr_len;
  bool forward;         /* a registrar's: upstream.h issues */
  uint8_t *chain[ENROLL_CHAIN_MAX]; /* the device's chain, for the upstream */
  size_t chain_len[ENROLL_CHAIN_MAX];
  size_t chain_n;
  /* Output of enroll_job_run() or of the upstream. */
  est_err rc;
  unsigned max_age;     /* the upstream's refusal: Max-Age and reason */
  char diag[EST_DIAG_MAX];
  bool refused;
  pki_issued issued;
  uint8_t *key;         /* PKCS#8, skg/skc only */
  size_t key_len;
};

/* ---- small helpers ---------------------------------------------------- */

static void say(const enroll *e, coapd_log_level level, est_fn fn, const char *client,
                const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void say(const enroll *e, coapd_log_level level, est_fn fn, const char *client,
                const char *fmt, ...) {
  char msg[LOG_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  e->api->log(e->api->host, level, "%s, client '%s', %s", proto_fn_info(fn)->name,
              client ? client : "?", msg);
}

/* The one hex formatter: serials for the store and logs, fingerprints for
 * pre-authorisation lookups. @p out holds 2 * n + 1 bytes. */
static void to_hex(const uint8_t *in, size_t n, char *out) {
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = digits[in[i] >> 4];
    out[2 * i + 1] = digits[in[i] & 0x0f];
  }
  out[2 * n] = '\0';
}

static void refuse(enroll_result *res, est_err rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void refuse(enroll_result *res, est_err rc, const char *fmt, ...) {
  res->rc = rc;
  if (fmt) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(res->diag, sizeof res->diag, fmt, ap);
    va_end(ap);
  }
}

void enroll_retry_later(enroll_result *res, const char *why) {
  refuse(res, EST_ERR_UNAVAILABLE, "%s", why);
  res->max_age = ENROLL_RETRY_SOON;
}

/* The store failed: the device hears "retry later", never 5.00
 * (docs/prior-art.md); the log gets the store's own words. */
static void store_trouble(const enroll *e, const enroll_request *in, enroll_result *res,
                          est_err rc) {
  say(e, COAPD_LOG_WARNING, in->fn, in->client, "store: %s (%s)", est_strerror(rc),
      store_errmsg(e->s));
  est_metrics_store_error(e->metrics);
  enroll_retry_later(res, "enrollment database unavailable, retry later");
}

void enroll_result_clear(enroll_result *res) {
  if (!res)
    return;
  pki_secret_free(res->body, res->body_len);
  memset(res, 0, sizeof *res);
}

est_err enroll_policy_parse(const char *s, enroll_policy *out) {
  if (strcmp(s, "auto") == 0)
    *out = ENROLL_AUTO;
  else if (strcmp(s, "manual") == 0)
    *out = ENROLL_MANUAL;
  else
    return EST_ERR_INVALID;
  return EST_OK;
}

/* ---- lifetime ----------------------------------------------------------- */

est_err enroll_open(const enroll_config *cfg, pki_ca *ca, const coapd_host_api *api,
                    enroll **out, char *diag, size_t diag_len) {
  est_err rc = EST_OK;
  if (!cfg || !ca || !api || !out)
    return EST_ERR_INVALID;
  enroll *e = calloc(1, sizeof *e);
  if (!e)
    return EST_ERR_NOMEM;
  e->cfg = *cfg;
  e->cfg.db_path = NULL; /* borrowed; only needed here */
  if (cfg->names)
    e->names = *cfg->names;
  else
    names_config_init(&e->names);
  e->cfg.names = NULL; /* borrowed; copied */
  e->ca = ca;
  e->api = api;
  if (cfg->db_path) {
    store_options o;
    store_options_init(&o);
    o.create = true;
    o.busy_timeout_ms = cfg->busy_timeout_ms;
    o.use_group = cfg->db_use_group;
    o.group_gid = cfg->db_gid;
    o.synchronous_normal = cfg->sync_normal;
    rc = store_open(cfg->db_path, &o, &e->s, diag, diag_len);
  }
  if (rc != EST_OK) {
    enroll_close(e);
    return rc;
  }
  *out = e;
  return EST_OK;
}

void enroll_reconfigure(enroll *e, const enroll_config *cfg, pki_ca *ca) {
  if (!e || !cfg || !ca)
    return;
  enroll_config keep = e->cfg; /* the store was opened with these */
  e->cfg = *cfg;
  e->cfg.db_path = NULL;
  e->cfg.busy_timeout_ms = keep.busy_timeout_ms;
  e->cfg.sync_normal = keep.sync_normal;
  e->cfg.db_use_group = keep.db_use_group;
  e->cfg.db_gid = keep.db_gid;
  if (cfg->names)
    e->names = *cfg->names;
  else
    names_config_init(&e->names);
  e->cfg.names = NULL;
  e->ca = ca;
}

void enroll_set_ca(enroll *e, pki_ca *ca) {
  if (e && ca)
    e->ca = ca;
}

void enroll_close(enroll *e) {
  if (!e)
    return;
  store_close(e->s);
  free(e);
}

unsigned enroll_tick(enroll *e, long long now) {
  /* Lookups only read; this sweep (and the create of a new request for
   * the same key) is where overdue requests become "expired", with their
   * audit row, visible to operators and the broker's event feed. */
  if (!e || !e->s)
    return 60;
  if (now < e->next_expire)
    return (unsigned)(e->next_expire - now);
  size_t n = 0;
  /* Busy: try again soon rather than in a minute. */
  e->next_expire = now + (store_expire(e->s, now, &n) == EST_OK ? 60 : 10);
  return (unsigned)(e->next_expire - now);
}

/* ---- jobs --------------------------------------------------------------- */

void enroll_job_free(enroll_job *j) {
  if (!j)
    return;
  pki_ca_free(j->ca);
  pki_csr_free(j->csr);
  free(j->client);
  free(j->ra);
  free(j->client_serial);
  free(j->subject);
  free(j->csr_der);
  for (size_t i = 0; i < j->chain_n; i++)
    free(j->chain[i]);
  pki_issued_clear(&j->issued);
  pki_secret_free(j->key, j->key_len);
  free(j);
}

static bool keygen_fn(est_fn fn) { return fn == EST_FN_SKG || fn == EST_FN_SKC; }

bool enroll_job_slow(const enroll_job *j) {
  /* A token may take its time to sign (docs/decisions.md §20). */
  return j->forward || keygen_fn(j->fn) || pki_ca_on_token(j->ca);
}

bool enroll_job_keygen(const enroll_job *j) { return keygen_fn(j->fn); }

/* Takes @p csr; copies what the record step needs from @p in. */
static enroll_job *job_new(const enroll *e, const enroll_request *in, pki_csr *csr,
                           const uint8_t spki[32]) {
  enroll_job *j = calloc(1, sizeof *j);
  if (!j)
    goto fail;
  j->ca = pki_ca_ref(e->ca);
  j->fn = in->fn;
  j->bare_cert = in->bare_cert;
  j->key_type = e->cfg.keygen_type;
  j->csr = csr;
  j->cls = in->cls;
  memcpy(j->spki_sha256, spki, 32);
  /* With no certificate the key is the client (docs/decisions.md §16): only
   * its holder can sign a CSR for it, so a resend still matches. */
  memcpy(j->client_fp, in->client_fp ? in->client_fp : spki, 32);
  j->client = strdup(in->client ? in->client : "");
  /* Shown to the approver (docs/decisions.md §15); none if unreadable. */
  char serial[STORE_MAX_SERIAL + 1];
  if (in->client_cert && in->client_cert_len &&
      pki_cert_serial_hex(in->client_cert, in->client_cert_len, serial, sizeof serial) == EST_OK)
    j->client_serial = strdup(serial);
  j->subject = pki_csr_subject(csr);
  if (!j->subject)
    j->subject = strdup("");
  if (in->ra && !(j->ra = strdup(in->ra)))
    j->subject = (free(j->subject), NULL); /* fails below */
  j->csr_der = malloc(in->csr_len ? in->csr_len : 1);
  if (!j->client || !j->subject || !j->csr_der) {
    enroll_job_free(j);
    return NULL;
  }
  memcpy(j->csr_der, in->csr, in->csr_len);
  j->csr_len = in->csr_len;
  j->forward = e->cfg.forward;
  for (size_t i = 0; j->forward && i < in->chain_n && i < ENROLL_CHAIN_MAX; i++) {
    if (!(j->chain[i] = malloc(in->chain_len[i] ? in->chain_len[i] : 1))) {
      enroll_job_free(j);
      return NULL;
    }
    memcpy(j->chain[i], in->chain[i], in->chain_len[i]);
    j->chain_len[i] = in->chain_len[i];
    j->chain_n = i + 1;
  }
  return j;
fail:
  pki_csr_free(csr);
  return NULL;
}

void enroll_job_run(enroll_job *j) {
  if (keygen_fn(j->fn))
    j->rc = pki_keygen_issue(j->ca, j->csr, j->key_type, &j->key, &j->key_len, &j->issued);
  else
    j->rc = pki_issue(j->ca, j->csr, &j->issued);
}

void enroll_job_forward(const enroll_job *j, enroll_forward *out) {
  memset(out, 0, sizeof *out);
  out->fn = j->fn;
  out->csr = j->csr_der;
  out->csr_len = j->csr_len;
  for (size_t i = 0; i < j->chain_n; i++) {
    out->chain[i] = j->chain[i];
    out->chain_len[i] = j->chain_len[i];
  }
  out->chain_n = j->chain_n;
  out->client = j->client;
}

void enroll_job_upstream_refused(enroll_job *j, est_err rc, unsigned max_age, const char *diag) {
  j->rc = rc == EST_OK ? EST_ERR_INTERNAL : rc;
  j->max_age = max_age;
  j->refused = true;
  snprintf(j->diag, sizeof j->diag, "%s", diag ? diag : "");
}

void enroll_job_upstream_issued(enroll_job *j, uint8_t *cert, size_t cert_len, uint8_t *key,
                                size_t key_len) {
  const char *bad = NULL;
  pki_issued_clear(&j->issued);
  if (pki_issued_from_der(cert, cert_len, &j->issued) != EST_OK)
    bad = "the upstream's certificate does not parse";
  /* Not ours to hand out unless it is what was asked, from the CA the
   * devices are told of (crts). */
  else if (!pki_ca_issued(j->ca, cert, cert_len, (long long)time(NULL)))
    bad = "the upstream's certificate does not chain to its cacerts now";
  else if (keygen_fn(j->fn) ? !pki_cert_key_is(cert, cert_len, key, key_len)
                            : !pki_cert_key_is_csr(cert, cert_len, j->csr))
    bad = keygen_fn(j->fn) ? "the upstream's certificate is not for the key it sent"
                           : "the upstream's certificate is not for the CSR's key";
  free(cert);
  if (bad) {
    pki_secret_free(key, key_len);
    pki_issued_clear(&j->issued);
    enroll_job_upstream_refused(j, EST_ERR_UNAVAILABLE, ENROLL_RETRY_SOON, bad);
    return;
  }
  j->key = key;
  j->key_len = key_len;
  j->rc = EST_OK;
}

/* ---- store mapping -------------------------------------------------------- */

/* The functions that enroll, as the store names them; others are
 * STORE_FN__MAX (the store refuses it). */
static store_fn fn_to_store(est_fn fn) {
  static const store_fn map[EST_FN__MAX] = {
      [EST_FN_CRTS] = STORE_FN__MAX, [EST_FN_SEN] = STORE_FN_SEN,
      [EST_FN_SREN] = STORE_FN_SREN, [EST_FN_ATT] = STORE_FN__MAX,
      [EST_FN_SKG] = STORE_FN_SKG,   [EST_FN_SKC] = STORE_FN_SKC};
  return (unsigned)fn < EST_FN__MAX ? map[fn] : STORE_FN__MAX;
}

static store_client_class cls_to_store(pki_client_class c) {
  return c == PKI_CLIENT_IDEVID   ? STORE_CLIENT_IDEVID
         : c == PKI_CLIENT_LDEVID ? STORE_CLIENT_LDEVID
                                  : STORE_CLIENT_UNKNOWN;
}

static void fill_new(const enroll *e, const enroll_job *j, store_request_new *n) {
  memset(n, 0, sizeof *n);
  n->function = fn_to_store(j->fn);
  memcpy(n->spki_sha256, j->spki_sha256, 32);
  memcpy(n->client_fp, j->client_fp, 32);
  n->client = j->client;
  n->client_class = cls_to_store(j->cls);
  n->subject = j->subject;
  n->csr = j->csr_der;
  n->csr_len = j->csr_len;
  n->ttl = e->cfg.pending_ttl;
  n->initial_state = STORE_REQ_PENDING;
  n->client_serial = j->client_serial;
  n->ra = j->ra;
}

/* ---- answers -------------------------------------------------------------- */

/* A certificate as the client asked: PKCS#7 certs-only (281) or bare (287). */
static est_err encode_cert(const uint8_t *cert, size_t len, bool bare, uint8_t **out,
                           size_t *out_len) {
  if (!bare)
    return pki_p7_certs_only(cert, len, out, out_len);
  *out = malloc(len ? len : 1);
  if (!*out)
    return EST_ERR_NOMEM;
  memcpy(*out, cert, len);
  *out_len = len;
  return EST_OK;
}

/* SKG-3/SKG-5: [284 PKCS#8, 281 PKCS#7 | 287 certificate]. */
static est_err encode_keygen(const enroll_job *j, uint8_t **out, size_t *out_len) {
  bool single = j->fn == EST_FN_SKC;
  uint8_t *p7 = NULL;
  size_t p7_len = 0;
  est_err rc = EST_OK;
  if (!single)
    rc = pki_p7_certs_only(j->issued.der, j->issued.der_len, &p7, &p7_len);
  if (rc == EST_OK) {
    mp_part parts[2] = {
      {CF_PKCS8, j->key, j->key_len},
      {(uint16_t)(single ? CF_PKIX_CERT : CF_PKCS7_CERTS_ONLY),
       single ? j->issued.der : p7, single ? j->issued.der_len : p7_len}};
    rc = mp_encode(parts, 2, out, out_len);
  }
  free(p7);
  return rc;
}

/* Record the certificate: the approved request becomes issued, or a new
 * issued row is written for auto issuance. EST_OK without a store. */
static est_err record(enroll *e, const enroll_job *j, const char *serial) {
  if (!e->s)
    return EST_OK;
  store_cert_new c = {
    .serial = serial,
    .subject = j->subject,
    .client = j->client,
    .not_before = j->issued.not_before,
    .not_after = j->issued.not_after,
    .der = j->issued.der,
    .der_len = j->issued.der_len,
  };
  if (!j->record_direct)
    return store_request_issue(e->s, j->request_id, &c, ACTOR, NULL);
  store_request_new n;
  fill_new(e, j, &n);
  return store_issue_direct(e->s, &n, &c, ACTOR, NULL, NULL);
}

void enroll_job_finish(enroll *e, enroll_job *j, enroll_result *res) {
  char serial[PKI_SERIAL_HEX_MAX];
  est_err rc = j->rc;
  memset(res, 0, sizeof *res);
  if (j->refused) {
    refuse(res, rc, "%s", j->diag);
    res->max_age = j->max_age;
    goto out;
  }
  if (rc == EST_ERR_UNAVAILABLE) {
    /* The CA key's token failed (docs/decisions.md §20): the device comes
     * back, and the next signature opens the token again. */
    say(e, COAPD_LOG_ERR, j->fn, j->client,
        "the CA key's token did not sign; answering 5.03 until it is back");
    enroll_retry_later(res, "CA key unavailable, retry later");
    goto out;
  }
  if (rc != EST_OK) {
    if (rc == EST_ERR_BAD_CSR) /* pki_issue: over max_cert_bytes (docs/decisions.md §13) */
      refuse(res, rc, "the certificate this CSR asks for is over max_cert_bytes or "
             "has no usable name");
    else
      refuse(res, rc, "the CA could not %s the certificate",
             keygen_fn(j->fn) ? "generate the key or" : "issue");
    goto out;
  }
  if (!j->forward)
    to_hex(j->issued.serial, sizeof j->issued.serial, serial);
  else if (pki_cert_serial_hex(j->issued.der, j->issued.der_len, serial, sizeof serial) !=
           EST_OK) {
    enroll_retry_later(res, "the upstream's certificate has no usable serial");
    goto out;
  }
  /* An unrecorded certificate is never handed out: the store is the
   * operator's record of what exists. */
  rc = record(e, j, serial);
  if (rc != EST_OK) {
    say(e, COAPD_LOG_WARNING, j->fn, j->client, "store: %s (%s), serial %s not sent",
        est_strerror(rc), store_errmsg(e->s), serial);
    est_metrics_store_error(e->metrics);
    enroll_retry_later(res, "enrollment database unavailable, retry later");
    goto out;
  }
  rc = keygen_fn(j->fn) ? encode_keygen(j, &res->body, &res->body_len)
                          : encode_cert(j->issued.der, j->issued.der_len, j->bare_cert,
                                        &res->body, &res->body_len);
  if (rc != EST_OK) {
    refuse(res, rc, "could not encode the answer");
    goto out;
  }
  est_metrics_issued(e->metrics, j->fn);
  say(e, COAPD_LOG_NOTICE, j->fn, j->client, "issued serial %s subject '%s'%s%s", serial,
      j->subject, keygen_fn(j->fn) ? " with a server-generated key" : "",
      j->forward ? " by the upstream CA" : "");
out:
  enroll_job_free(j);
}

/* ---- checks --------------------------------------------------------------- */

/* RFC 9148 §3 / RFC 7030 §3.5 PoP linking (docs/decisions.md §9). */
static est_err check_pop(const enroll *e, const enroll_request *in, const pki_csr *csr,
                         enroll_result *res) {
  /* Through an RA the challengePassword is bound to the device's session
   * with the RA, which checked it (RFC 9148 §5); this TLS session is the
   * RA's own (docs/decisions.md §17). */
  if (e->cfg.pop == POP_OFF || in->ra)
    return EST_OK;
  char chal[PKI_CHALLENGE_MAX + 1];
  est_err rc = pki_csr_challenge(csr, chal, sizeof chal);
  if (rc != EST_OK && rc != EST_ERR_NOT_FOUND)
    return EST_ERR_BAD_CSR;
  rc = pop_check(e->cfg.pop, rc == EST_OK ? chal : NULL, in->tls_unique, in->tls_unique_len,
                 in->exporter, in->exporter_len);
  explicit_bzero(chal, sizeof chal);
  if (rc == EST_ERR_POP_LINKING)
    refuse(res, rc, "identity/POP linking required");
  return rc;
}

/* Every check a CSR must pass before anyone decides on it. */
static est_err check_csr(const enroll *e, const enroll_request *in, const pki_csr *csr,
                         enroll_result *res) {
  est_err rc;
  bool keygen = in->fn == EST_FN_SKG || in->fn == EST_FN_SKC;
  /* Issuance policy first: names, extensions, key (docs/decisions.md §13).
   * Its diagnostic (e.g. "signed with RSA-SHA1") says more than a failed
   * verification would. SKG-2: no key checks for server keygen. */
  names_request nr = {.check_key = !keygen, .client_cert = in->client_cert,
                      .client_cert_len = in->client_cert_len};
  rc = names_check(&e->names, csr, &nr, res->diag, sizeof res->diag);
  if (rc != EST_OK)
    return rc;
  /* SKG-2: for server keygen the CSR key and signature are ignored. */
  if (!keygen) {
    rc = pki_csr_verify(csr);
    if (rc != EST_OK) {
      refuse(res, rc, "CSR signature does not verify");
      return rc;
    }
  }
  rc = pki_csr_check_profile(csr, res->diag, sizeof res->diag);
  if (rc == EST_OK)
    rc = check_pop(e, in, csr, res);
  if (rc == EST_OK && in->fn == EST_FN_SREN) {
    /* AUTH-7, docs/decisions.md §6. */
    if (!in->client_cert || in->client_cert_len == 0)
      return EST_ERR_UNAUTHENTICATED;
    rc = pki_csr_match_cert(csr, in->client_cert, in->client_cert_len, res->diag,
                            sizeof res->diag);
  }
  return rc;
}

/* ---- the decision ------------------------------------------------------- */

static bool preauthorised(const enroll *e, const enroll_job *j, est_err *rc) {
  char fp[65];
  bool hit = false;
  to_hex(j->client_fp, sizeof j->client_fp, fp);
  /* An idevid entry names the device's manufacturer certificate. */
  *rc = store_preauth_match(e->s, j->subject, j->cls == PKI_CLIENT_IDEVID ? fp : NULL, &hit);
  return *rc == EST_OK && hit;
}

static void wait_pending(const enroll *e, enroll_result *res, long long id) {
  refuse(res, EST_ERR_PENDING, "request %lld is waiting for an operator", id);
  res->max_age = e->cfg.retry_after;
}

/* The retry of a request already issued (docs/decisions.md §7). Returns
 * true when @p res holds the answer; false to issue again. */
static bool resend(enroll *e, const enroll_request *in, const store_request *r,
                   enroll_result *res) {
  store_cert c;
  memset(&c, 0, sizeof c);
  est_err rc = store_cert_get(e->s, r->cert_id, &c);
  bool done = true;
  if (rc != EST_OK) {
    store_trouble(e, in, res, rc);
  } else if (!pki_ca_issued(e->ca, c.der, c.der_len, in->now)) {
    /* Issued by a CA we no longer serve: the approval stands, so the
     * device gets a certificate from the current CA, in a new row. */
    say(e, COAPD_LOG_NOTICE, in->fn, in->client,
        "request %lld was issued by another CA, issuing anew", (long long)r->id);
    done = false;
  } else if ((rc = encode_cert(c.der, c.der_len, in->bare_cert, &res->body,
                               &res->body_len)) != EST_OK) {
    refuse(res, rc, "could not encode the answer");
  } else {
    say(e, COAPD_LOG_NOTICE, in->fn, in->client,
        "request %lld issued before, certificate serial %s sent again", (long long)r->id,
        c.serial ? c.serial : "?");
    /* Audit only: the same bytes, no state change. A busy store does not
     * withhold a certificate that is already recorded. */
    if (store_request_resent(e->s, r->id, ACTOR) != EST_OK)
      say(e, COAPD_LOG_INFO, in->fn, in->client, "resend not audited: %s",
          store_errmsg(e->s));
  }
  store_cert_clear(&c);
  return done;
}

/* A request with no live row: issue now, or queue it for an operator. */
static bool decide_new(enroll *e, const enroll_request *in, enroll_job *j,
                       enroll_result *res) {
  /* A client with no certificate always waits for an operator, and a
   * pre-authorised subject does not help it: anyone can ask for any
   * subject (docs/decisions.md §16). */
  bool anon = in->cls == PKI_CLIENT_ANONYMOUS && !in->ra;
  enroll_policy policy = in->cls == PKI_CLIENT_ANONYMOUS ? (in->ra ? e->cfg.ra : ENROLL_MANUAL)
                         : in->cls == PKI_CLIENT_LDEVID  ? e->cfg.ldevid
                                                         : e->cfg.idevid;
  est_err rc = EST_OK;
  if (policy == ENROLL_AUTO || (!anon && preauthorised(e, j, &rc))) {
    j->record_direct = true;
    return true;
  }
  if (rc != EST_OK) {
    store_trouble(e, in, res, rc);
    return false;
  }
  size_t live = 0;
  rc = store_request_count_live(e->s, j->client_fp, in->now, &live);
  if (rc != EST_OK) {
    store_trouble(e, in, res, rc);
    return false;
  }
  if (live >= e->cfg.max_pending) {
    /* Not "waiting" (HTTP 202): nothing was queued (docs/decisions.md §16). */
    refuse(res, EST_ERR_BUSY, "too many requests from this client are waiting for an operator");
    res->max_age = e->cfg.retry_after;
    return false;
  }
  /* A bound on the whole queue, so a fleet (or a flood of IDevIDs) cannot
   * grow it without end; the device comes back after Max-Age. */
  size_t waiting = 0;
  rc = store_request_count_pending(e->s, in->now, &waiting);
  if (rc != EST_OK) {
    store_trouble(e, in, res, rc);
    return false;
  }
  if (e->cfg.max_pending_total && waiting >= e->cfg.max_pending_total) {
    refuse(res, EST_ERR_BUSY, "the approval queue is full (%zu requests waiting), retry later",
           waiting);
    res->max_age = e->cfg.retry_after;
    est_metrics_queue_full(e->metrics);
    e->api->log(e->api->host, COAPD_LOG_WARNING,
                "approval queue full: %zu pending requests (max_pending_total); client '%s' "
                "told to come back in %u s", waiting, in->client, e->cfg.retry_after);
    return false;
  }
  store_request_new n;
  int64_t id = 0;
  fill_new(e, j, &n);
  /* An overdue row for the same key is marked expired in the same
   * transaction (store.h). */
  rc = store_request_create(e->s, &n, ACTOR, &id);
  if (rc == EST_OK || rc == EST_ERR_EXISTS)
    wait_pending(e, res, (long long)id);
  else
    store_trouble(e, in, res, rc);
  return false;
}

/* Over the queue: true to issue with @p j (request_id/record_direct set),
 * false when @p res holds the answer. */
static bool decide_queue(enroll *e, const enroll_request *in, enroll_job *j,
                         enroll_result *res) {
  store_request r;
  bool issue = false;
  est_err rc = store_request_lookup(e->s, j->spki_sha256, j->client_fp, fn_to_store(in->fn),
                                    in->now, &r);
  if (rc == EST_ERR_NOT_FOUND) {
    if (r.id != 0 && r.state == STORE_REQ_EXPIRED)
      say(e, COAPD_LOG_INFO, in->fn, in->client, "request %lld has expired",
          (long long)r.id);
    issue = decide_new(e, in, j, res);
    goto out;
  }
  if (rc != EST_OK) {
    store_trouble(e, in, res, rc);
    goto out;
  }
  switch (r.state) {
  case STORE_REQ_PENDING:
    wait_pending(e, res, (long long)r.id);
    break;
  case STORE_REQ_APPROVED:
    j->request_id = r.id;
    issue = true;
    break;
  case STORE_REQ_ISSUED:
    /* The key was never stored (docs/decisions.md §7): a device that lost
     * a keygen answer gets a fresh key and certificate. */
    issue = keygen_fn(j->fn) || !resend(e, in, &r, res);
    j->record_direct = issue;
    break;
  case STORE_REQ_REJECTED:
    refuse(res, EST_ERR_REJECTED, "rejected by an operator: %s",
           r.reason && r.reason[0] ? r.reason : "no reason given");
    break;
  case STORE_REQ_EXPIRED:
  case STORE_REQ_ANY:
  case STORE_REQ__MAX:
    store_trouble(e, in, res, EST_ERR_INTERNAL);
    break;
  }
out:
  store_request_clear(&r);
  return issue;
}

enroll_job *enroll_decide(enroll *e, const enroll_request *in, enroll_result *res) {
  pki_csr *csr = NULL;
  enroll_job *j = NULL;
  uint8_t spki[32];
  memset(res, 0, sizeof *res);
  est_err rc = pki_csr_parse(in->csr, in->csr_len, &csr, res->diag, sizeof res->diag);
  if (rc == EST_OK)
    rc = check_csr(e, in, csr, res);
  if (rc == EST_OK)
    rc = pki_csr_spki_sha256(csr, spki);
  if (rc != EST_OK) {
    res->rc = rc;
    pki_csr_free(csr);
    return NULL;
  }
  j = job_new(e, in, csr, spki);
  if (!j) {
    enroll_retry_later(res, "server out of memory, retry later");
    return NULL;
  }
  /* Without a store every allowed request is issued and nothing recorded. */
  if (!e->s) {
    j->record_direct = true;
    return j;
  }
  if (decide_queue(e, in, j, res))
    return j;
  enroll_job_free(j);
  return NULL;
}

est_err enroll_client_revoked(enroll *e, const char *serial_hex, bool *revoked, char *why,
                              size_t why_len) {
  int64_t at = 0;
  *revoked = false;
  if (why && why_len)
    why[0] = '\0';
  if (!e->s)
    return EST_OK;
  est_err rc = store_cert_revoked(e->s, serial_hex, &at, why, why_len);
  if (rc != EST_OK) {
    e->api->log(e->api->host, COAPD_LOG_WARNING, "revocation check of %s: %s", serial_hex,
                store_errmsg(e->s));
    return rc;
  }
  *revoked = at != 0;
  return EST_OK;
}

store *enroll_store(enroll *e) { return e ? e->s : NULL; }

void enroll_set_metrics(enroll *e, est_metrics *m) {
  if (e)
    e->metrics = m;
}
