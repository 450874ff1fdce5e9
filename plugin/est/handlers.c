/* The request path shared by every EST resource: thin glue between
 * libcoap and the protocol, PKI, policy and approval modules. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "est_plugin.h"
#include "policy.h"
#include "status.h"

#define BINDING_MAX 64
#define CHAIN_MAX 16

static void session_free(void *data) {
  est_session *s = data;
  if (!s)
    return;
  body_asm_reset(&s->body);
  free(s);
}

static int opt_uint(const coap_pdu_t *pdu, coap_option_num_t num, int absent) {
  coap_opt_iterator_t it;
  coap_opt_t *o = coap_check_option(pdu, num, &it);
  if (!o)
    return absent;
  return (int)coap_decode_var_bytes(coap_opt_value(o), coap_opt_length(o));
}

/* Classify the peer once per DTLS session (decisions.md §5). */
static est_err client_class(est_req *r) {
  const coapd_host_api *api = r->p->api;
  est_session *s = api->session_data(api->host, r->session);
  if (!s) {
    s = calloc(1, sizeof *s);
    if (!s)
      return EST_ERR_NOMEM;
    body_asm_init(&s->body, r->p->max_body);
    if (api->session_data_set(api->host, r->session, s, session_free) != 0)
      return EST_ERR_NOMEM;
  }
  r->sess = s;
  if (s->classified)
    return EST_OK;

  const coapd_blob *chain;
  size_t count = 0;
  /* AUTH-2/AUTH-3: a client certificate is required for every function. */
  if (api->peer_chain(api->host, r->session, &chain, &count) != 0 || count == 0)
    return EST_ERR_UNAUTHENTICATED;
  const uint8_t *der[CHAIN_MAX];
  size_t len[CHAIN_MAX];
  if (count > CHAIN_MAX)
    count = CHAIN_MAX;
  for (size_t i = 0; i < count; i++) {
    der[i] = chain[i].data;
    len[i] = chain[i].len;
  }
  unsigned flags = r->p->idevid_allow_expired ? PKI_CLASSIFY_IDEVID_EXPIRED_OK : 0;
  est_err rc = pki_client_classify(r->p->ca, r->p->idevid, der, len, count,
                                   (long long)time(NULL), flags, &s->cls, &s->status);
  if (rc == EST_OK)
    rc = pki_sha256(der[0], len[0], s->fp);
  if (rc != EST_OK)
    return rc;
  char *subject = pki_cert_subject(der[0], len[0]);
  snprintf(s->peer, sizeof s->peer, "%s", subject ? subject : "?");
  free(subject);
  s->classified = true;
  /* AUTH-5 (RFC 9148 §3): accepting an expired IDevID is a choice worth a
   * line per session, so an operator can see who relies on it. */
  if (s->cls == PKI_CLIENT_IDEVID && s->status == PKI_STATUS_IDEVID_EXPIRED)
    api->log(api->host, COAPD_LOG_NOTICE,
             "client '%s' authenticated with an expired IDevID, accepted "
             "(idevid_allow_expired on)", s->peer);
  return EST_OK;
}

void est_echo_block1(est_req *r) {
  /* RFC 7959 §2.3: the final response echoes Block1 with M clear. */
  coap_opt_iterator_t it;
  coap_opt_t *o = coap_check_option(r->pdu, COAP_OPTION_BLOCK1, &it);
  if (!o || coap_check_option(r->resp, COAP_OPTION_BLOCK1, &it))
    return;
  body_block blk;
  if (body_block_decode(coap_opt_value(o), coap_opt_length(o), &blk) != EST_OK)
    return;
  uint8_t buf[4];
  unsigned v = (blk.num << 4) | blk.szx;
  coap_add_option(r->resp, COAP_OPTION_BLOCK1, coap_encode_var_safe(buf, sizeof buf, v), buf);
}

void est_send_error(est_req *r, est_err err) {
  unsigned code = status_coap(err);
  const char *msg = r->diag[0] ? r->diag : est_strerror(err);
  uint8_t buf[4];
  coap_pdu_set_code(r->resp, STATUS_COAP_PDU(code));
  if (err == EST_ERR_TOO_LARGE)
    /* RFC 7959 §4: 4.13 carries Size1 = the largest body we take. */
    coap_add_option(r->resp, COAP_OPTION_SIZE1,
                    coap_encode_var_safe(buf, sizeof buf, (unsigned)r->p->max_body), buf);
  if (code == 503 && r->max_age)
    /* RFC 9148 §4.7: come back after Max-Age seconds. */
    coap_add_option(r->resp, COAP_OPTION_MAXAGE,
                    coap_encode_var_safe(buf, sizeof buf, r->max_age), buf);
  /* RC-6: a short UTF-8 diagnostic, no Content-Format (RFC 7252 §5.5.2). */
  coap_add_data(r->resp, strlen(msg), (const uint8_t *)msg);
  r->p->api->log(r->p->api->host, code >= 500 && code != 503 ? COAPD_LOG_WARNING : COAPD_LOG_INFO,
                 "%s, client '%s', %u.%02u (%s)", proto_fn_info(r->route->fn)->name,
                 r->sess && r->sess->classified ? r->sess->peer : "?", code / 100,
                 code % 100, msg);
}

/* Payload ownership passes to libcoap: it may keep the buffer for later
 * Block2 requests and calls this when done (libcoap-4.3.1.md §3). */
typedef struct owned_body {
  size_t len;
  uint8_t data[];
} owned_body;

static void release_owned(coap_session_t *session, void *app_ptr) {
  (void)session;
  owned_body *b = app_ptr;
  if (b) {
    /* The body may hold a private key (skg/skc). */
    explicit_bzero(b->data, b->len);
    free(b);
  }
}

est_err est_send_owned(est_req *r, unsigned code, const uint8_t *data, size_t len) {
  owned_body *b = malloc(sizeof *b + len);
  if (!b)
    return EST_ERR_NOMEM;
  b->len = len;
  memcpy(b->data, data, len);
  coap_pdu_set_code(r->resp, STATUS_COAP_PDU(code));
  est_echo_block1(r);
  /* On failure libcoap has already called release_owned. */
  if (!coap_add_data_large_response(r->resource, r->session, r->pdu, r->resp, r->query,
                                    (uint16_t)r->cf_out, -1, 0, len, b->data,
                                    release_owned, b))
    return EST_ERR_INTERNAL;
  return EST_OK;
}

static est_err send_borrowed(est_req *r, const uint8_t *data, size_t len) {
  coap_pdu_set_code(r->resp, COAP_RESPONSE_CODE(205));
  /* CA data lives until fini, which runs before libcoap frees any
   * pending transfer, so no release function is needed. */
  if (!coap_add_data_large_response(r->resource, r->session, r->pdu, r->resp, r->query,
                                    (uint16_t)r->cf_out, -1, 0, len, data, NULL, NULL))
    return EST_ERR_INTERNAL;
  return EST_OK;
}

static est_err serve_get(est_req *r) {
  const uint8_t *d;
  size_t n;
  switch (r->route->fn) {
  case EST_FN_CRTS:
    if (r->cf_out == CF_PKIX_CERT)
      pki_ca_cert_der(r->p->ca, &d, &n);
    else
      pki_ca_certs_p7(r->p->ca, &d, &n);
    return send_borrowed(r, d, n);
  case EST_FN_ATT:
    /* RC-2: no attributes for this client is 4.04, not an empty 2.05. */
    if (!r->p->csr_attrs) {
      snprintf(r->diag, sizeof r->diag, "no CSR attributes are configured");
      return EST_ERR_NOT_FOUND;
    }
    return send_borrowed(r, r->p->csr_attrs, r->p->csr_attrs_len);
  case EST_FN_SEN:
  case EST_FN_SREN:
  case EST_FN_SKG:
  case EST_FN_SKC:
  case EST_FN__MAX:
    break;
  }
  return EST_ERR_INTERNAL;
}

/* Block1 reassembly in the plugin (decisions.md §11). Returns EST_OK with
 * *body set when the whole body is here, EST_OK with *body NULL and
 * *pending true when a 2.31 Continue went out. */
static est_err collect_body(est_req *r, uint8_t **body, size_t *len, bool *pending) {
  coap_opt_iterator_t it;
  coap_opt_t *o = coap_check_option(r->pdu, COAP_OPTION_BLOCK1, &it);
  size_t dlen = 0;
  const uint8_t *data = NULL;
  est_err rc;

  *body = NULL;
  *len = 0;
  *pending = false;
  coap_get_data(r->pdu, &dlen, &data);
  if (!o) {
    if (dlen > r->p->max_body)
      return EST_ERR_TOO_LARGE;
    if (dlen == 0)
      return EST_ERR_BAD_CSR;
    *body = malloc(dlen);
    if (!*body)
      return EST_ERR_NOMEM;
    memcpy(*body, data, dlen);
    *len = dlen;
    return EST_OK;
  }

  body_block blk;
  rc = body_block_decode(coap_opt_value(o), coap_opt_length(o), &blk);
  if (rc != EST_OK)
    return rc;
  /* One transfer per session at a time (NSTART = 1, RFC 9148 §6); a block
   * for another resource starts over. */
  if (r->sess->body_owner != r->resource) {
    body_asm_reset(&r->sess->body);
    r->sess->body_owner = r->resource;
  }
  bool complete = false;
  size_t size1 = (size_t)opt_uint(r->pdu, COAP_OPTION_SIZE1, 0);
  rc = body_asm_add(&r->sess->body, &blk, data, dlen, size1, &complete);
  if (rc != EST_OK)
    return rc;
  if (!complete) {
    /* RFC 7959 §2.3: acknowledge with 2.31 and echo Block1, M set. */
    uint8_t buf[4];
    unsigned v = (blk.num << 4) | 0x08 | blk.szx;
    coap_pdu_set_code(r->resp, COAP_RESPONSE_CODE(231));
    if (!coap_check_option(r->resp, COAP_OPTION_BLOCK1, &it))
      coap_add_option(r->resp, COAP_OPTION_BLOCK1, coap_encode_var_safe(buf, sizeof buf, v), buf);
    *pending = true;
    return EST_OK;
  }
  *body = body_asm_take(&r->sess->body, len);
  r->sess->body_owner = NULL;
  if (!*body)
    return EST_ERR_BAD_CSR;
  return EST_OK;
}

/* RFC 9148 §3 / RFC 7030 §3.5 PoP linking (decisions.md §9). */
static est_err check_pop(est_req *r, const pki_csr *csr) {
  if (r->p->pop == POP_OFF)
    return EST_OK;
  char chal[PKI_CHALLENGE_MAX + 1];
  est_err rc = pki_csr_challenge(csr, chal, sizeof chal);
  if (rc != EST_OK && rc != EST_ERR_NOT_FOUND)
    return EST_ERR_BAD_CSR;
  const coapd_host_api *api = r->p->api;
  uint8_t uniq[BINDING_MAX], exp[BINDING_MAX];
  size_t ulen = sizeof uniq, elen = sizeof exp;
  if (api->channel_binding(api->host, r->session, COAPD_CB_TLS_UNIQUE, uniq, &ulen) != 0)
    ulen = 0;
  if (api->channel_binding(api->host, r->session, COAPD_CB_TLS_EXPORTER, exp, &elen) != 0)
    elen = 0;
  rc = pop_check(r->p->pop, rc == EST_OK ? chal : NULL, ulen ? uniq : NULL, ulen,
                 elen ? exp : NULL, elen);
  explicit_bzero(uniq, sizeof uniq);
  explicit_bzero(exp, sizeof exp);
  if (rc == EST_ERR_POP_LINKING)
    snprintf(r->diag, sizeof r->diag, "identity/POP linking required");
  return rc;
}

/* Every check a CSR must pass before anyone decides on it. */
static est_err check_csr(est_req *r, const pki_csr *csr) {
  est_fn fn = r->route->fn;
  est_err rc;
  /* SKG-2: for server keygen the CSR key and signature are ignored. */
  if (fn != EST_FN_SKG && fn != EST_FN_SKC) {
    rc = pki_csr_verify(csr);
    if (rc != EST_OK) {
      snprintf(r->diag, sizeof r->diag, "CSR signature does not verify");
      return rc;
    }
  }
  rc = pki_csr_check_profile(csr, r->diag, sizeof r->diag);
  if (rc == EST_OK)
    rc = check_pop(r, csr);
  if (rc == EST_OK && fn == EST_FN_SREN) {
    const coapd_blob *chain;
    size_t count = 0;
    const coapd_host_api *api = r->p->api;
    if (api->peer_chain(api->host, r->session, &chain, &count) != 0 || count == 0)
      return EST_ERR_UNAUTHENTICATED;
    /* AUTH-7, decisions.md §6. */
    rc = pki_csr_match_cert(csr, chain[0].data, chain[0].len, r->diag, sizeof r->diag);
  }
  return rc;
}

/* Send a certificate as the client asked: PKCS#7 (281) or bare (287). */
static est_err send_cert(est_req *r, const uint8_t *cert, size_t len) {
  if (r->cf_out == CF_PKIX_CERT)
    return est_send_owned(r, 204, cert, len);
  uint8_t *p7 = NULL;
  size_t p7_len = 0;
  est_err rc = pki_p7_certs_only(cert, len, &p7, &p7_len);
  if (rc == EST_OK)
    rc = est_send_owned(r, 204, p7, p7_len);
  free(p7);
  return rc;
}

static void log_issued(est_req *r, const char *what, const uint8_t serial[16],
                       const char *subject) {
  char hex[33];
  for (int i = 0; i < 16; i++)
    snprintf(hex + 2 * i, 3, "%02x", serial[i]);
  r->p->api->log(r->p->api->host, COAPD_LOG_NOTICE, "%s, client '%s', %s serial %s subject '%s'",
                 proto_fn_info(r->route->fn)->name, r->sess->peer, what, hex,
                 subject ? subject : "?");
}

/* Does a stored certificate still chain to the CA we serve? Not after the
 * operator replaced ca_cert/ca_key. */
static bool from_this_ca(const est_plugin *p, const uint8_t *cert, size_t len) {
  const uint8_t *der[1] = {cert};
  size_t l[1] = {len};
  pki_client_class cls = PKI_CLIENT_UNKNOWN;
  return pki_client_classify(p->ca, NULL, der, l, 1, (long long)time(NULL), 0, &cls,
                             NULL) == EST_OK &&
         cls == PKI_CLIENT_LDEVID;
}

/* sen and sren, once approved: issue, record, answer (RFC 9148 §4.2). */
static est_err issue_now(est_req *r, pki_csr *csr, approval_ticket *t) {
  uint8_t *cert = NULL;
  size_t cert_len = 0;
  uint8_t serial[16];
  est_err rc = pki_issue(r->p->ca, csr, &cert, &cert_len, serial);
  if (rc != EST_OK) {
    snprintf(r->diag, sizeof r->diag, "the CA could not issue the certificate");
    goto out;
  }
  /* An unrecorded certificate is never handed out: the store is the
   * operator's record of what exists. */
  rc = approval_record(r->p->appr, t, cert, cert_len, serial);
  if (rc != EST_OK) {
    snprintf(r->diag, sizeof r->diag, "enrollment database unavailable, retry later");
    r->max_age = 5;
    rc = EST_ERR_UNAVAILABLE;
    goto out;
  }
  rc = send_cert(r, cert, cert_len);
  if (rc == EST_OK)
    log_issued(r, "issued", serial, t->subject);
out:
  free(cert);
  return rc;
}

/* sen, sren, skg, skc: RFC 9148 §4.2, §4.7, §4.8. */
static est_err serve_post(est_req *r, const uint8_t *body, size_t len) {
  est_fn fn = r->route->fn;
  pki_csr *csr = NULL;
  char *subject = NULL;
  uint8_t spki[32];
  approval_ticket t;
  est_err rc;

  memset(&t, 0, sizeof t);
  rc = pki_csr_parse(body, len, &csr, r->diag, sizeof r->diag);
  if (rc == EST_OK)
    rc = check_csr(r, csr);
  if (rc == EST_OK)
    rc = pki_csr_spki_sha256(csr, spki);
  if (rc != EST_OK)
    goto out;
  subject = pki_csr_subject(csr);

  approval_input in = {
    .fn = fn, .cls = r->sess->cls, .spki_sha256 = spki, .client_fp = r->sess->fp,
    .client = r->sess->peer, .subject = subject ? subject : "",
    .csr = body, .csr_len = len, .now = (long long)time(NULL)};
  approval_decide(r->p->appr, &in, &t);
  if (t.detail[0])
    r->p->api->log(r->p->api->host, COAPD_LOG_WARNING, "%s, client '%s': %s",
                   proto_fn_info(fn)->name, r->sess->peer, t.detail);
  switch (t.verdict) {
  case APPROVAL_WAIT:
    /* RFC 9148 §4.7 (DLY-3): 5.03 with Max-Age until someone decides. */
    snprintf(r->diag, sizeof r->diag, "%s", t.diag);
    r->max_age = t.max_age;
    rc = EST_ERR_PENDING;
    break;
  case APPROVAL_DENIED:
    snprintf(r->diag, sizeof r->diag, "%s", t.diag);
    rc = EST_ERR_REJECTED;
    break;
  case APPROVAL_RESEND:
    if (!from_this_ca(r->p, t.cert, t.cert_len)) {
      /* Issued by a CA we no longer serve: the approval stands, so issue
       * a certificate from the current CA and record it as a new row. */
      r->p->api->log(r->p->api->host, COAPD_LOG_NOTICE,
                     "%s, client '%s', request %lld was issued by another CA, issuing anew",
                     proto_fn_info(fn)->name, r->sess->peer, (long long)t.request_id);
      t.verdict = APPROVAL_ISSUE;
      t.record_direct = true;
      rc = issue_now(r, csr, &t);
      break;
    }
    /* decisions.md §7: the same certificate bytes again. */
    rc = send_cert(r, t.cert, t.cert_len);
    if (rc == EST_OK)
      r->p->api->log(r->p->api->host, COAPD_LOG_NOTICE,
                     "%s, client '%s', request %lld issued before, certificate sent again",
                     proto_fn_info(fn)->name, r->sess->peer, (long long)t.request_id);
    break;
  case APPROVAL_ISSUE:
    if (fn == EST_FN_SKG || fn == EST_FN_SKC) {
      /* Key generation runs on the worker; the CSR and ticket go along. */
      rc = est_async_start(r, csr, &t);
      if (rc == EST_OK)
        csr = NULL;
    } else {
      rc = issue_now(r, csr, &t);
    }
    break;
  }
out:
  approval_ticket_clear(&t);
  free(subject);
  pki_csr_free(csr);
  return rc;
}

void est_handle_request(coap_resource_t *resource, coap_session_t *session,
                        const coap_pdu_t *request, const coap_string_t *query,
                        coap_pdu_t *response) {
  est_req r;
  memset(&r, 0, sizeof r);
  r.route = coap_resource_get_userdata(resource);
  r.p = r.route->p;
  r.resource = resource;
  r.session = session;
  r.pdu = request;
  r.resp = response;
  r.query = query;
  const est_fn_info *info = proto_fn_info(r.route->fn);
  uint8_t *body = NULL;
  size_t body_len = 0;
  bool pending = false;
  est_err rc;

  coap_pdu_code_t method = coap_pdu_get_code(request);
  if (method != (info->post ? COAP_REQUEST_CODE_POST : COAP_REQUEST_CODE_GET)) {
    snprintf(r.diag, sizeof r.diag, "%s takes %s only", info->name, info->post ? "POST" : "GET");
    rc = EST_ERR_METHOD;
    goto out;
  }
  rc = client_class(&r);
  if (rc != EST_OK)
    goto out;
  /* libcoap calls again with the saved request when a separate response
   * is ready (libcoap-4.3.1.md §4a). */
  if (info->post && est_async_finish(&r))
    goto out;
  policy_input pin = {r.route->fn, r.sess->cls, r.sess->status};
  rc = policy_decide(&pin, r.diag, sizeof r.diag);
  if (rc != EST_OK)
    goto out;
  rc = proto_check_cf(r.route->fn, opt_uint(request, COAP_OPTION_CONTENT_FORMAT, -1));
  if (rc != EST_OK) {
    snprintf(r.diag, sizeof r.diag, "%s needs %s", info->name,
             info->post ? "Content-Format 286 (application/pkcs10)" : "no Content-Format");
    goto out;
  }
  rc = proto_negotiate(r.route->fn, opt_uint(request, COAP_OPTION_ACCEPT, -1),
                       pki_ca_cert_count(r.p->ca), &r.cf_out);
  if (rc != EST_OK) {
    snprintf(r.diag, sizeof r.diag, "%s cannot answer in the Accept format", info->name);
    goto out;
  }
  if (!info->post) {
    rc = serve_get(&r);
    goto out;
  }
  rc = collect_body(&r, &body, &body_len, &pending);
  if (rc != EST_OK || pending)
    goto out;
  rc = serve_post(&r, body, body_len);
out:
  if (rc != EST_OK) {
    if (r.sess) {
      body_asm_reset(&r.sess->body);
      r.sess->body_owner = NULL;
    }
    est_echo_block1(&r);
    est_send_error(&r, rc);
  }
  free(body);
}
