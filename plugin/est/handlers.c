/* The request path shared by every EST resource (handlers.h): CoAP in,
 * policy, enroll, CoAP out. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "handlers.h"

#include "async.h"
#include "est_plugin.h"
#include "policy.h"
#include "reply.h"

#define BINDING_MAX 64
#define CHAIN_MAX 16

static void session_free(void *data) {
  est_session *s = data;
  if (!s)
    return;
  body_asm_reset(&s->body);
  dedup_clear(&s->seen);
  free(s);
}

static long long mono_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec;
}

static int opt_uint(const coap_pdu_t *pdu, coap_option_num_t num, int absent) {
  coap_opt_iterator_t it;
  coap_opt_t *o = coap_check_option(pdu, num, &it);
  if (!o)
    return absent;
  return (int)coap_decode_var_bytes(coap_opt_value(o), coap_opt_length(o));
}

/* Classify the peer once per DTLS session (docs/decisions.md §5). */
static est_err client_class(est_req *r) {
  const coapd_host_api *api = r->p->api;
  est_session *s = api->session_data(api->host, r->session);
  if (!s) {
    s = calloc(1, sizeof *s);
    if (!s)
      return EST_ERR_NOMEM;
    body_asm_init(&s->body, r->p->max_body);
    dedup_init(&s->seen, &r->p->dedup_budget, r->p->dedup_entries);
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

static est_err serve_get(est_req *r) {
  const uint8_t *d;
  size_t n;
  switch (r->route->fn) {
  case EST_FN_CRTS:
    if (r->cf_out == CF_PKIX_CERT)
      pki_ca_cert_der(r->p->ca, &d, &n);
    else
      pki_ca_certs_p7(r->p->ca, &d, &n);
    return reply_borrowed(r, d, n);
  case EST_FN_ATT:
    /* RC-2: no attributes for this client is 4.04, not an empty 2.05. */
    if (!r->p->csr_attrs) {
      snprintf(r->diag, sizeof r->diag, "no CSR attributes are configured");
      return EST_ERR_NOT_FOUND;
    }
    return reply_borrowed(r, r->p->csr_attrs, r->p->csr_attrs_len);
  case EST_FN_SEN:
  case EST_FN_SREN:
  case EST_FN_SKG:
  case EST_FN_SKC:
  case EST_FN__MAX:
    break;
  }
  return EST_ERR_INTERNAL;
}

/* Block1 reassembly in the plugin (docs/decisions.md §11). Returns EST_OK with
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
   * for another resource or another Request-Tag (RFC 9175 §3: it names
   * the body; clients such as libcoap's change the token every block)
   * starts over. */
  coap_opt_iterator_t tit;
  coap_opt_t *tag = coap_check_option(r->pdu, COAP_OPTION_RTAG, &tit);
  size_t tlen = tag ? coap_opt_length(tag) : 0;
  if (tlen > BODY_TAG_MAX)
    return EST_ERR_BAD_REQUEST;
  if (r->sess->body_owner != r->resource || r->sess->body_tag_len != tlen ||
      (tlen && memcmp(r->sess->body_tag, coap_opt_value(tag), tlen) != 0)) {
    body_asm_reset(&r->sess->body);
    r->sess->body_owner = r->resource;
    r->sess->body_tag_len = tlen;
    if (tlen)
      memcpy(r->sess->body_tag, coap_opt_value(tag), tlen);
  }
  bool complete = false;
  size_t size1 = (size_t)opt_uint(r->pdu, COAP_OPTION_SIZE1, 0);
  rc = body_asm_add(&r->sess->body, &blk, data, dlen, size1, &complete);
  if (rc != EST_OK)
    return rc;
  if (!complete) {
    reply_continue(r, blk.num, blk.szx);
    *pending = true;
    return EST_OK;
  }
  *body = body_asm_take(&r->sess->body, len);
  r->sess->body_owner = NULL;
  if (!*body)
    return EST_ERR_BAD_CSR;
  return EST_OK;
}

/* sen, sren, skg, skc (RFC 9148 §4.2, §4.7, §4.8): the DTLS facts and the
 * body go to enroll; its answer comes back now or from the worker. */
static void serve_post(est_req *r, const uint8_t *body, size_t len) {
  const coapd_host_api *api = r->p->api;
  const coapd_blob *chain = NULL;
  size_t count = 0;
  uint8_t uniq[BINDING_MAX], exp[BINDING_MAX];
  size_t ulen = sizeof uniq, elen = sizeof exp;
  if (api->peer_chain(api->host, r->session, &chain, &count) != 0)
    count = 0;
  if (api->channel_binding(api->host, r->session, COAPD_CB_TLS_UNIQUE, uniq, &ulen) != 0)
    ulen = 0;
  if (api->channel_binding(api->host, r->session, COAPD_CB_TLS_EXPORTER, exp, &elen) != 0)
    elen = 0;
  enroll_request in = {
    .fn = r->route->fn, .cls = r->sess->cls, .client_fp = r->sess->fp,
    .client = r->sess->peer,
    .client_cert = count ? chain[0].data : NULL, .client_cert_len = count ? chain[0].len : 0,
    .tls_unique = ulen ? uniq : NULL, .tls_unique_len = ulen,
    .exporter = elen ? exp : NULL, .exporter_len = elen,
    .csr = body, .csr_len = len, .bare_cert = r->cf_out == CF_PKIX_CERT,
    .now = (long long)time(NULL)};
  enroll_result res;
  enroll_job *job = enroll_decide(r->p->en, &in, &res);
  explicit_bzero(uniq, sizeof uniq);
  explicit_bzero(exp, sizeof exp);
  if (job && enroll_job_slow(job)) {
    if (est_async_start(r, job, &res)) {
      r->rec.kind = REPLY_SEPARATE;
      return;
    }
  } else if (job) {
    enroll_job_run(job);
    enroll_job_finish(r->p->en, job, &res);
  }
  reply_result(r, &res);
  enroll_result_clear(&res);
}

/* RFC 7252 §4.5: a repeated CON (our ACK was lost) gets the first answer
 * again and nothing runs twice (docs/decisions.md §12). True when @p r was
 * such a repeat and is answered; otherwise its answer will be recorded. */
static bool repeat_answered(est_req *r, const est_fn_info *info) {
  if (!info->post || coap_pdu_get_type(r->pdu) != COAP_MESSAGE_CON)
    return false;
  const reply_rec *seen = dedup_find(&r->sess->seen, r->mid, r->tok.s, r->tok.length, r->now);
  if (!seen) {
    r->record = true;
    return false;
  }
  r->p->api->log(r->p->api->host, COAPD_LOG_INFO,
                 "%s, client '%s', repeat of message 0x%04x answered again", info->name,
                 r->sess->peer, (unsigned)r->mid);
  reply_replay(r, seen);
  return true;
}

static void req_init(est_req *r, coap_resource_t *resource, coap_session_t *session,
                     const coap_pdu_t *request, const coap_string_t *query,
                     coap_pdu_t *response) {
  memset(r, 0, sizeof *r);
  r->route = coap_resource_get_userdata(resource);
  r->p = r->route->p;
  r->resource = resource;
  r->session = session;
  r->pdu = request;
  r->resp = response;
  r->query = query;
  r->tok = coap_pdu_get_token(request);
  r->mid = (uint16_t)coap_pdu_get_mid(request);
  r->now = mono_s();
  /* RFC 7252 §4.3: a NON answer is a new message with its own Message ID;
   * libcoap 4.3.1 reuses the request's (docs/libcoap-4.3.1.md §7, row 15). */
  if (coap_pdu_get_type(request) == COAP_MESSAGE_NON)
    coap_pdu_set_mid(response, coap_new_message_id(session));
}

void est_handle_request(coap_resource_t *resource, coap_session_t *session,
                        const coap_pdu_t *request, const coap_string_t *query,
                        coap_pdu_t *response) {
  est_req r;
  req_init(&r, resource, session, request, query, response);
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
   * is ready (docs/libcoap-4.3.1.md §4a). */
  if ((info->post && est_async_finish(&r)) || repeat_answered(&r, info))
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
  if (rc == EST_OK && !pending)
    serve_post(&r, body, body_len);
out:
  if (rc != EST_OK) {
    if (r.sess) {
      body_asm_reset(&r.sess->body);
      r.sess->body_owner = NULL;
    }
    reply_error(&r, rc);
  }
  if (r.record)
    dedup_put(&r.sess->seen, r.mid, r.tok.s, r.tok.length, r.now, &r.rec);
  reply_rec_clear(&r.rec);
  free(body);
}
