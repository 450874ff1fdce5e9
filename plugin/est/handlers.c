/* The request path shared by every EST resource (handlers.h): CoAP in,
 * policy, enroll, CoAP out. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "handlers.h"

#include "async.h"
#include "est_plugin.h"
#include "metrics.h"
#include "policy.h"
#include "reply.h"
#include "upstream.h"

#define BINDING_MAX 64
#define CHAIN_MAX 16

static void session_free(void *data) {
  est_session *s = data;
  if (!s)
    return;
  body_table_clear(&s->xfers);
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
    body_table_init(&s->xfers, r->p->max_body, r->p->block1_transfers);
    dedup_init(&s->seen, &r->p->dedup_budget, r->p->dedup_entries);
    if (api->session_data_set(api->host, r->session, s, session_free) != 0)
      return EST_ERR_NOMEM;
  }
  r->sess = s;
  /* A reloaded idevid_crl counts for open sessions too (docs/decisions.md
   * §14). */
  if (s->classified && s->idevid_gen == r->p->idevid_gen)
    return EST_OK;
  s->classified = false;

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
  s->serial[0] = '\0';
  if (rc == EST_OK && s->cls == PKI_CLIENT_LDEVID)
    rc = pki_cert_serial_hex(der[0], len[0], s->serial, sizeof s->serial);
  if (rc != EST_OK)
    return rc;
  char *subject = pki_cert_subject(der[0], len[0]);
  snprintf(s->peer, sizeof s->peer, "%s", subject ? subject : "?");
  free(subject);
  s->idevid_gen = r->p->idevid_gen;
  s->classified = true;
  /* AUTH-5 (RFC 9148 §3): accepting an expired IDevID is a choice worth a
   * line per session, so an operator can see who relies on it. */
  if (s->cls == PKI_CLIENT_IDEVID && s->status == PKI_STATUS_IDEVID_EXPIRED)
    api->log(api->host, COAPD_LOG_NOTICE,
             "client '%s' authenticated with an expired IDevID, accepted "
             "(idevid_allow_expired on)", s->peer);
  return EST_OK;
}

/* Asked on every request, not once per session: a revocation made with
 * estctl while the device is connected counts at its next request
 * (docs/decisions.md §14). Without an answer from the store the device
 * is told to come back, never served. */
static est_err client_revoked(est_req *r, bool *revoked) {
  char why[64];
  *revoked = false;
  if (r->sess->cls != PKI_CLIENT_LDEVID || !r->sess->serial[0])
    return EST_OK;
  if (enroll_client_revoked(r->p->en, r->sess->serial, revoked, why, sizeof why) != EST_OK) {
    snprintf(r->diag, sizeof r->diag, "cannot check the client certificate now, retry later");
    r->max_age = ENROLL_RETRY_SOON;
    return EST_ERR_UNAVAILABLE;
  }
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
    if (!r->p->csr_attrs && r->p->up_attrs) /* a registrar's, from upstream */
      return reply_borrowed(r, r->p->up_attrs, r->p->up_attrs_len);
    if (!r->p->csr_attrs && r->p->up && !r->p->up_attrs_known) {
      /* Not "none": we do not know yet (docs/decisions.md §19). */
      snprintf(r->diag, sizeof r->diag, "upstream CA unreachable, retry later");
      r->max_age = UPSTREAM_RETRY;
      return EST_ERR_UNAVAILABLE;
    }
    if (!r->p->csr_attrs) {
      snprintf(r->diag, sizeof r->diag, "%s", r->p->up ? "the upstream CA has no CSR attributes"
                                                       : "no CSR attributes are configured");
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

/* The transfer a Block1 request belongs to (RFC 9175 §3: Request-Tag
 * names the body; clients such as libcoap's change the token every block). */
static est_err block1_key(est_req *r, body_key *k) {
  coap_opt_iterator_t it;
  coap_opt_t *tag = coap_check_option(r->pdu, COAP_OPTION_RTAG, &it);
  memset(k, 0, sizeof *k);
  k->owner = r->resource;
  if (tag) {
    if (coap_opt_length(tag) > BODY_TAG_MAX)
      return EST_ERR_BAD_REQUEST;
    k->tagged = true;
    k->tag_len = coap_opt_length(tag);
    if (k->tag_len)
      memcpy(k->tag, coap_opt_value(tag), k->tag_len);
  }
  if (r->tok.length <= BODY_TOKEN_MAX) {
    k->token_len = r->tok.length;
    if (k->token_len)
      memcpy(k->token, r->tok.s, k->token_len);
  }
  return EST_OK;
}

/* Block1 reassembly in the plugin (docs/decisions.md §11), several
 * transfers per session (body.h). Returns EST_OK with *body set when the
 * whole body is here, EST_OK with *body NULL and *pending true when the
 * request is answered already (a 2.31 Continue, or the final block sent
 * again after its answer). */
static est_err collect_body(est_req *r, uint8_t **body, size_t *len, bool *pending) {
  coap_opt_iterator_t it;
  coap_opt_t *o = coap_check_option(r->pdu, COAP_OPTION_BLOCK1, &it);
  size_t dlen = 0;
  const uint8_t *data = NULL;
  body_asm *a = NULL;
  body_block blk;
  body_key key;
  bool complete = false;
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

  rc = body_block_decode(coap_opt_value(o), coap_opt_length(o), &blk);
  if (rc == EST_OK && blk.szx > 6) {
    /* RFC 8323 §6: SZX 7 (BERT) is for CoAP over TCP only. */
    snprintf(r->diag, sizeof r->diag, "Block1 SZX 7 (BERT) is not valid over UDP");
    rc = EST_ERR_BAD_REQUEST;
  }
  if (rc == EST_OK)
    rc = block1_key(r, &key);
  if (rc != EST_OK)
    goto out;
  a = body_table_get(&r->sess->xfers, &key, blk.num == 0, r->now);
  if (!a) {
    const reply_rec *fin =
        blk.more ? NULL : dedup_find_final(&r->sess->seen, &key, blk.num, r->now);
    if (fin) {
      /* RFC 7959 §2.5: the last block again, as a new message (the
       * final answer was lost): the same answer, nothing runs twice. */
      r->p->api->log(r->p->api->host, COAPD_LOG_INFO,
                     "%s, client '%s', last block %u sent again: answered again",
                     proto_fn_info(r->route->fn)->name, r->sess->peer, (unsigned)blk.num);
      reply_replay(r, fin);
      *pending = true;
      goto out;
    }
    snprintf(r->diag, sizeof r->diag,
             "block %u belongs to no transfer in progress; start again at block 0",
             (unsigned)blk.num);
    rc = EST_ERR_INCOMPLETE;
    goto out;
  }
  size_t held = a->len;
  size_t size1 = (size_t)opt_uint(r->pdu, COAP_OPTION_SIZE1, 0);
  rc = body_asm_add(a, &blk, data, dlen, size1, &complete);
  if (rc == EST_ERR_INCOMPLETE)
    snprintf(r->diag, sizeof r->diag,
             "block %u (%u bytes each) does not follow the %zu bytes held; start again "
             "at block 0", (unsigned)blk.num, 1u << (blk.szx + 4), held);
  if (rc != EST_OK)
    goto out;
  if (!complete) {
    reply_continue(r, blk.num, blk.szx);
    *pending = true;
    a = NULL; /* the transfer goes on */
    goto out;
  }
  *body = body_asm_take(a, len);
  if (!*body)
    rc = EST_ERR_BAD_CSR;
out:
  if (a)
    body_table_drop(&r->sess->xfers, a);
  return rc;
}

/* RFC 7959 §2.4: a later block of a POST's answer is a POST with Block2
 * NUM > 0 and no body. It is served from the answer kept (dedup.h), never
 * by running the request again. True when @p r was such a request; *rc
 * is its refusal, if any. */
static bool block2_followup(est_req *r, const est_fn_info *info, est_err *rc) {
  coap_opt_iterator_t it;
  coap_opt_t *o = coap_check_option(r->pdu, COAP_OPTION_BLOCK2, &it);
  body_block blk;
  *rc = EST_OK;
  if (!info->post || !o ||
      body_block_decode(coap_opt_value(o), coap_opt_length(o), &blk) != EST_OK ||
      blk.num == 0)
    return false;
  body_key key;
  if (block1_key(r, &key) != EST_OK) {
    snprintf(r->diag, sizeof r->diag, "Request-Tag longer than %u bytes", BODY_TAG_MAX);
    *rc = EST_ERR_BAD_REQUEST;
    return true;
  }
  const reply_rec *rec = dedup_find_body(&r->sess->seen, &key, r->now);
  if (!rec) {
    snprintf(r->diag, sizeof r->diag,
             "the answer block %u belongs to is no longer held; send the request again",
             (unsigned)blk.num);
    r->max_age = ENROLL_RETRY_SOON;
    *rc = EST_ERR_UNAVAILABLE;
    return true;
  }
  *rc = reply_block(r, rec);
  return true;
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
  /* A registrar names the device upstream by its chain (upstream.h). */
  const uint8_t *certs[ENROLL_CHAIN_MAX];
  size_t lens[ENROLL_CHAIN_MAX], n = 0;
  for (; n < count && n < ENROLL_CHAIN_MAX; n++) {
    certs[n] = chain[n].data;
    lens[n] = chain[n].len;
  }
  enroll_request in = {
    .fn = r->route->fn, .cls = r->sess->cls, .client_fp = r->sess->fp,
    .client = r->sess->peer,
    .client_cert = count ? chain[0].data : NULL, .client_cert_len = count ? chain[0].len : 0,
    .chain = certs, .chain_len = lens, .chain_n = n,
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
  if (!info->post)
    return false;
  const reply_rec *seen = coap_pdu_get_type(r->pdu) == COAP_MESSAGE_CON
                              ? dedup_find(&r->sess->seen, r->mid, r->tok.s, r->tok.length, r->now)
                              : NULL;
  if (!seen) {
    /* Also a NON's answer: its later Block2 blocks are served from it. */
    r->record = true;
    return false;
  }
  r->p->api->log(r->p->api->host, COAPD_LOG_INFO,
                 "%s, client '%s', repeat of message 0x%04x answered again", info->name,
                 r->sess->peer, (unsigned)r->mid);
  reply_replay(r, seen);
  return true;
}

/* What the answer about to be kept answered: the resource (for Block2
 * follow-ups), and the final block of a Block1 transfer (for that block
 * sent again). */
static void note_exchange(est_req *r) {
  coap_opt_iterator_t it;
  coap_opt_t *o = coap_check_option(r->pdu, COAP_OPTION_BLOCK1, &it);
  body_block blk;
  r->rec.route = r->resource;
  r->rec.separate = r->separate;
  if (block1_key(r, &r->rec.b1) == EST_OK && o &&
      body_block_decode(coap_opt_value(o), coap_opt_length(o), &blk) == EST_OK && !blk.more)
    r->rec.b1_end = blk.num + 1;
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
  r->t0_us = est_metrics_now_us();
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
  if (block2_followup(&r, info, &rc) || (info->post && est_async_finish(&r)) ||
      repeat_answered(&r, info))
    goto out;
  policy_input pin = {.fn = r.route->fn, .cls = r.sess->cls, .status = r.sess->status};
  rc = client_revoked(&r, &pin.revoked);
  if (rc == EST_OK)
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
  if (rc != EST_OK)
    reply_error(&r, rc);
  est_metrics_answer(r.p->metrics, &r); /* every answer passes here */
  if (r.record) {
    note_exchange(&r);
    dedup_put(&r.sess->seen, r.mid, r.tok.s, r.tok.length, r.now, &r.rec);
  }
  reply_rec_clear(&r.rec);
  free(body);
}
