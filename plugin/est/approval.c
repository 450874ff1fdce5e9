/* The enrollment decision over the store (decisions.md §7). */
#include "approval.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"

/* A store that cannot be written right now: ask the device to come back
 * soon rather than fail it (RFC 9148 §4.7). */
#define BUSY_MAX_AGE 5u

struct approval {
  approval_config cfg;
  store *s;
  long long last_expire;
};

est_err approval_policy_parse(const char *s, approval_policy *out) {
  if (strcmp(s, "auto") == 0)
    *out = APPROVAL_AUTO;
  else if (strcmp(s, "manual") == 0)
    *out = APPROVAL_MANUAL;
  else
    return EST_ERR_INVALID;
  return EST_OK;
}

est_err approval_open(const approval_config *cfg, approval **out, char *diag,
                      size_t diag_len) {
  est_err rc = EST_OK;
  approval *a = calloc(1, sizeof *a);
  if (!a)
    return EST_ERR_NOMEM;
  a->cfg = *cfg;
  a->cfg.db_path = NULL; /* borrowed; only needed here */
  if (cfg->db_path) {
    store_options o;
    store_options_init(&o);
    o.create = true;
    o.busy_timeout_ms = cfg->busy_timeout_ms;
    o.synchronous_normal = cfg->sync_normal;
    rc = store_open(cfg->db_path, &o, &a->s, diag, diag_len);
  }
  if (rc != EST_OK) {
    approval_close(a);
    return rc;
  }
  *out = a;
  return EST_OK;
}

void approval_close(approval *a) {
  if (!a)
    return;
  store_close(a->s);
  free(a);
}

void approval_ticket_clear(approval_ticket *t) {
  if (!t)
    return;
  free(t->cert);
  free(t->client);
  free(t->subject);
  free(t->csr);
  memset(t, 0, sizeof *t);
}

static store_fn fn_to_store(est_fn fn) {
  switch (fn) {
  case EST_FN_SEN:
    return STORE_FN_SEN;
  case EST_FN_SREN:
    return STORE_FN_SREN;
  case EST_FN_SKG:
    return STORE_FN_SKG;
  case EST_FN_SKC:
    return STORE_FN_SKC;
  case EST_FN_CRTS:
  case EST_FN_ATT:
  case EST_FN__MAX:
    break;
  }
  return STORE_FN__MAX;
}

static store_client_class cls_to_store(pki_client_class c) {
  switch (c) {
  case PKI_CLIENT_IDEVID:
    return STORE_CLIENT_IDEVID;
  case PKI_CLIENT_LDEVID:
    return STORE_CLIENT_LDEVID;
  case PKI_CLIENT_UNKNOWN:
    break;
  }
  return STORE_CLIENT_UNKNOWN;
}

static void wait_for(approval_ticket *t, unsigned max_age, const char *why) {
  t->verdict = APPROVAL_WAIT;
  t->max_age = max_age;
  snprintf(t->diag, sizeof t->diag, "%s", why);
}

static void wait_pending(approval_ticket *t, unsigned max_age, long long id) {
  t->verdict = APPROVAL_WAIT;
  t->max_age = max_age;
  t->request_id = id;
  snprintf(t->diag, sizeof t->diag, "request %lld is waiting for an operator", id);
}

/* The device hears "retry later"; the log gets the store's detail. */
static void store_trouble(approval *a, approval_ticket *t, est_err rc) {
  wait_for(t, BUSY_MAX_AGE, "enrollment database unavailable, retry later");
  snprintf(t->detail, sizeof t->detail, "store: %s (%s)", est_strerror(rc),
           a->s ? store_errmsg(a->s) : "");
}

static bool keep_input(approval_ticket *t, const approval_input *in) {
  t->fn = in->fn;
  t->cls = in->cls;
  memcpy(t->spki_sha256, in->spki_sha256, 32);
  memcpy(t->client_fp, in->client_fp, 32);
  t->client = strdup(in->client ? in->client : "");
  t->subject = strdup(in->subject ? in->subject : "");
  t->csr = malloc(in->csr_len ? in->csr_len : 1);
  if (!t->client || !t->subject || !t->csr)
    return false;
  memcpy(t->csr, in->csr, in->csr_len);
  t->csr_len = in->csr_len;
  return true;
}

static void fill_new(const approval_ticket *t, const approval_config *cfg,
                     store_request_new *n) {
  memset(n, 0, sizeof *n);
  n->function = fn_to_store(t->fn);
  memcpy(n->spki_sha256, t->spki_sha256, 32);
  memcpy(n->client_fp, t->client_fp, 32);
  n->client = t->client;
  n->client_class = cls_to_store(t->cls);
  n->subject = t->subject;
  n->csr = t->csr;
  n->csr_len = t->csr_len;
  n->ttl = cfg->pending_ttl;
  n->initial_state = STORE_REQ_PENDING;
}

static bool preauthorised(approval *a, const approval_ticket *t, est_err *rc) {
  char fp[65];
  bool hit = false;
  for (int i = 0; i < 32; i++)
    snprintf(fp + 2 * i, 3, "%02x", t->client_fp[i]);
  /* An idevid entry names the device's manufacturer certificate. */
  *rc = store_preauth_match(a->s, t->subject,
                            t->cls == PKI_CLIENT_IDEVID ? fp : NULL, &hit);
  return *rc == EST_OK && hit;
}

void approval_decide(approval *a, const approval_input *in, approval_ticket *t) {
  store_request r;
  est_err rc;
  memset(t, 0, sizeof *t);
  memset(&r, 0, sizeof r);
  if (!keep_input(t, in)) {
    wait_for(t, BUSY_MAX_AGE, "server out of memory, retry later");
    return;
  }
  approval_policy policy = in->cls == PKI_CLIENT_LDEVID ? a->cfg.ldevid : a->cfg.idevid;
  if (!a->s) {
    t->verdict = APPROVAL_ISSUE;
    return;
  }

  rc = store_request_lookup(a->s, in->spki_sha256, in->client_fp, fn_to_store(in->fn),
                            in->now, &r);
  if (rc == EST_OK) {
    switch (r.state) {
    case STORE_REQ_PENDING:
      wait_pending(t, a->cfg.retry_after, r.id);
      break;
    case STORE_REQ_APPROVED:
      t->verdict = APPROVAL_ISSUE;
      t->request_id = r.id;
      break;
    case STORE_REQ_ISSUED:
      if (in->fn == EST_FN_SKG || in->fn == EST_FN_SKC) {
        /* The key was never stored (decisions.md §7): a device that lost
         * the answer gets a fresh key and certificate. */
        t->verdict = APPROVAL_ISSUE;
        t->record_direct = true;
        break;
      }
      {
        store_cert c;
        memset(&c, 0, sizeof c);
        rc = store_cert_get(a->s, r.cert_id, &c);
        if (rc != EST_OK) {
          store_trouble(a, t, rc);
        } else {
          /* decisions.md §7: a retry after issuance gets the same bytes. */
          t->verdict = APPROVAL_RESEND;
          t->cert = c.der;
          t->cert_len = c.der_len;
          t->request_id = r.id;
          c.der = NULL;
        }
        store_cert_clear(&c);
      }
      break;
    case STORE_REQ_REJECTED:
      t->verdict = APPROVAL_DENIED;
      snprintf(t->diag, sizeof t->diag, "rejected by an operator: %s",
               r.reason && r.reason[0] ? r.reason : "no reason given");
      break;
    case STORE_REQ_EXPIRED:
    case STORE_REQ_ANY:
    case STORE_REQ__MAX:
      store_trouble(a, t, EST_ERR_INTERNAL);
      break;
    }
    goto out;
  }
  if (rc != EST_ERR_NOT_FOUND) {
    store_trouble(a, t, rc);
    goto out;
  }

  /* A new request. */
  if (policy == APPROVAL_AUTO || preauthorised(a, t, &rc)) {
    t->verdict = APPROVAL_ISSUE;
    t->record_direct = true;
    goto out;
  }
  if (rc != EST_OK) {
    store_trouble(a, t, rc);
    goto out;
  }
  size_t live = 0;
  rc = store_request_count_live(a->s, in->client_fp, in->now, &live);
  if (rc != EST_OK) {
    store_trouble(a, t, rc);
    goto out;
  }
  if (live >= a->cfg.max_pending) {
    wait_for(t, a->cfg.retry_after,
             "too many requests from this client are waiting for an operator");
    goto out;
  }
  store_request_new n;
  int64_t id = 0;
  fill_new(t, &a->cfg, &n);
  rc = store_request_create(a->s, &n, "coapd", &id);
  if (rc == EST_OK || rc == EST_ERR_EXISTS)
    wait_pending(t, a->cfg.retry_after, (long long)id);
  else
    store_trouble(a, t, rc);
out:
  store_request_clear(&r);
}

est_err approval_record(approval *a, const approval_ticket *t, const uint8_t *cert,
                        size_t cert_len, const uint8_t serial[16]) {
  if (!a->s)
    return EST_OK;
  char hex[33];
  for (int i = 0; i < 16; i++)
    snprintf(hex + 2 * i, 3, "%02x", serial[i]);
  long long nb = 0, na = 0;
  /* We just made this certificate; if it does not parse, record no dates. */
  if (pki_cert_validity(cert, cert_len, &nb, &na) != EST_OK)
    nb = na = 0;
  store_cert_new c = {
    .serial = hex,
    .subject = t->subject,
    .client = t->client,
    .not_before = nb,
    .not_after = na,
    .der = cert,
    .der_len = cert_len,
  };
  if (!t->record_direct)
    return store_request_issue(a->s, t->request_id, &c, "coapd", NULL);
  store_request_new n;
  fill_new(t, &a->cfg, &n);
  return store_issue_direct(a->s, &n, &c, "coapd", NULL, NULL);
}

void approval_tick(approval *a, long long now) {
  /* Lookups expire rows lazily; this sweep makes the expiry visible to
   * operators (and to the broker's event feed) without a retry. */
  if (!a || !a->s || now - a->last_expire < 60)
    return;
  a->last_expire = now;
  size_t n = 0;
  /* Busy: the next sweep will do it. */
  if (store_expire(a->s, now, &n) != EST_OK)
    a->last_expire = now - 50;
}
