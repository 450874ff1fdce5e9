/* The request path shared by every EST resource: thin glue between
 * libcoap and the protocol, PKI and policy modules. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "est_plugin.h"
#include "multipart.h"
#include "policy.h"

#define DIAG_MAX 160
#define BINDING_MAX 64

/* One request as it moves through the steps below. */
typedef struct est_req {
  est_plugin *p;
  const est_route *route;
  coap_resource_t *resource;
  coap_session_t *session;
  const coap_pdu_t *pdu;
  coap_pdu_t *resp;
  est_session *sess;
  unsigned cf_out;
  char diag[DIAG_MAX];
} est_req;

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
  const uint8_t *der[16];
  size_t len[16];
  if (count > 16)
    count = 16;
  for (size_t i = 0; i < count; i++) {
    der[i] = chain[i].data;
    len[i] = chain[i].len;
  }
  est_err rc = pki_client_classify(r->p->ca, r->p->idevid, der, len, count,
                                   (long long)time(NULL), &s->cls);
  if (rc != EST_OK)
    return rc;
  s->classified = true;
  return EST_OK;
}

static void send_error(est_req *r, est_err err) {
  unsigned code = proto_err_code(err);
  const char *msg = r->diag[0] ? r->diag : est_strerror(err);
  coap_pdu_set_code(r->resp, PROTO_COAP_CODE(code));
  if (err == EST_ERR_TOO_LARGE) {
    /* RFC 7959 §4: 4.13 carries Size1 = the largest body we take. */
    uint8_t buf[4];
    coap_add_option(r->resp, COAP_OPTION_SIZE1,
                    coap_encode_var_safe(buf, sizeof buf, (unsigned)r->p->max_body), buf);
  }
  /* RC-6: a short UTF-8 diagnostic, no Content-Format (RFC 7252 §5.5.2). */
  coap_add_data(r->resp, strlen(msg), (const uint8_t *)msg);
  r->p->api->log(r->p->api->host, code >= 500 ? COAPD_LOG_WARNING : COAPD_LOG_INFO,
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

static est_err send_owned(est_req *r, unsigned code, const uint8_t *data, size_t len,
                          const coap_string_t *query) {
  owned_body *b = malloc(sizeof *b + len);
  if (!b)
    return EST_ERR_NOMEM;
  b->len = len;
  memcpy(b->data, data, len);
  coap_pdu_set_code(r->resp, PROTO_COAP_CODE(code));
  /* On failure libcoap has already called release_owned. */
  if (!coap_add_data_large_response(r->resource, r->session, r->pdu, r->resp, query,
                                    (uint16_t)r->cf_out, -1, 0, len, b->data,
                                    release_owned, b))
    return EST_ERR_INTERNAL;
  return EST_OK;
}

static est_err send_borrowed(est_req *r, unsigned code, const uint8_t *data, size_t len,
                             const coap_string_t *query) {
  coap_pdu_set_code(r->resp, PROTO_COAP_CODE(code));
  /* CA data lives until fini, which runs before libcoap frees any
   * pending transfer, so no release function is needed. */
  if (!coap_add_data_large_response(r->resource, r->session, r->pdu, r->resp, query,
                                    (uint16_t)r->cf_out, -1, 0, len, data, NULL, NULL))
    return EST_ERR_INTERNAL;
  return EST_OK;
}

static est_err serve_get(est_req *r, const coap_string_t *query) {
  const uint8_t *d;
  size_t n;
  switch (r->route->fn) {
  case EST_FN_CRTS:
    if (r->cf_out == CF_PKIX_CERT)
      pki_ca_cert_der(r->p->ca, &d, &n);
    else
      pki_ca_certs_p7(r->p->ca, &d, &n);
    return send_borrowed(r, 205, d, n, query);
  case EST_FN_ATT:
    /* RC-2: no attributes for this client is 4.04, not an empty 2.05. */
    if (!r->p->csr_attrs) {
      snprintf(r->diag, sizeof r->diag, "no CSR attributes are configured");
      return EST_ERR_NOT_FOUND;
    }
    return send_borrowed(r, 205, r->p->csr_attrs, r->p->csr_attrs_len, query);
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

  uint8_t buf[4];
  if (!complete) {
    /* RFC 7959 §2.3: acknowledge with 2.31 and echo Block1, M set. */
    unsigned v = (blk.num << 4) | 0x08 | blk.szx;
    coap_pdu_set_code(r->resp, COAP_RESPONSE_CODE(231));
    if (!coap_check_option(r->resp, COAP_OPTION_BLOCK1, &it))
      coap_add_option(r->resp, COAP_OPTION_BLOCK1, coap_encode_var_safe(buf, sizeof buf, v), buf);
    *pending = true;
    return EST_OK;
  }
  /* The final response echoes Block1 with M clear (RFC 7959 §2.3). */
  if (!coap_check_option(r->resp, COAP_OPTION_BLOCK1, &it)) {
    unsigned v = (blk.num << 4) | blk.szx;
    coap_add_option(r->resp, COAP_OPTION_BLOCK1, coap_encode_var_safe(buf, sizeof buf, v), buf);
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

/* sen, sren, skg, skc: RFC 9148 §4.2, §4.8. */
static est_err serve_post(est_req *r, const uint8_t *body, size_t len,
                          const coap_string_t *query) {
  est_fn fn = r->route->fn;
  bool keygen = fn == EST_FN_SKG || fn == EST_FN_SKC;
  pki_csr *csr = NULL;
  uint8_t *cert = NULL, *key = NULL, *p7 = NULL, *mp = NULL;
  size_t cert_len = 0, key_len = 0, p7_len = 0, mp_len = 0;
  uint8_t serial[16];
  char *subject = NULL;
  est_err rc;

  rc = pki_csr_parse(body, len, &csr, r->diag, sizeof r->diag);
  if (rc != EST_OK)
    goto out;
  /* SKG-2: for server keygen the CSR key and signature are ignored. */
  if (!keygen) {
    rc = pki_csr_verify(csr);
    if (rc != EST_OK) {
      snprintf(r->diag, sizeof r->diag, "CSR signature does not verify");
      goto out;
    }
  }
  rc = pki_csr_check_profile(csr, r->diag, sizeof r->diag);
  if (rc != EST_OK)
    goto out;
  rc = check_pop(r, csr);
  if (rc != EST_OK)
    goto out;
  if (fn == EST_FN_SREN) {
    const coapd_blob *chain;
    size_t count = 0;
    const coapd_host_api *api = r->p->api;
    if (api->peer_chain(api->host, r->session, &chain, &count) != 0 || count == 0) {
      rc = EST_ERR_UNAUTHENTICATED;
      goto out;
    }
    /* AUTH-7, decisions.md §6. */
    rc = pki_csr_match_cert(csr, chain[0].data, chain[0].len, r->diag, sizeof r->diag);
    if (rc != EST_OK)
      goto out;
  }

  if (keygen)
    rc = pki_keygen_issue(r->p->ca, csr, r->p->keygen_type, &key, &key_len, &cert,
                          &cert_len, serial);
  else
    rc = pki_issue(r->p->ca, csr, &cert, &cert_len, serial);
  if (rc != EST_OK) {
    snprintf(r->diag, sizeof r->diag, "the CA could not issue the certificate");
    goto out;
  }

  /* Certificate part: 281 for sen/sren (default) and skg, 287 on request
   * or for skc (RFC 9148 §4.3, SKG-5). */
  bool single = keygen ? fn == EST_FN_SKC : r->cf_out == CF_PKIX_CERT;
  if (!single) {
    rc = pki_p7_certs_only(cert, cert_len, &p7, &p7_len);
    if (rc != EST_OK)
      goto out;
  }
  const uint8_t *cpart = single ? cert : p7;
  size_t cpart_len = single ? cert_len : p7_len;
  if (keygen) {
    /* SKG-3: [284, PKCS#8, 281|287, cert] as multipart-core. */
    mp_part parts[2] = {
      {CF_PKCS8, key, key_len},
      {(uint16_t)(single ? CF_PKIX_CERT : CF_PKCS7_CERTS_ONLY), cpart, cpart_len}};
    rc = mp_encode(parts, 2, &mp, &mp_len);
    if (rc != EST_OK)
      goto out;
    rc = send_owned(r, 204, mp, mp_len, query);
  } else {
    rc = send_owned(r, 204, cpart, cpart_len, query);
  }
  if (rc == EST_OK) {
    subject = pki_csr_subject(csr);
    char hex[33];
    for (int i = 0; i < 16; i++)
      snprintf(hex + 2 * i, 3, "%02x", serial[i]);
    r->p->api->log(r->p->api->host, COAPD_LOG_NOTICE,
                   "%s, client '%s', issued serial %s subject '%s'%s",
                   proto_fn_info(fn)->name, r->sess->peer, hex, subject ? subject : "?",
                   keygen ? " with a server-generated key" : "");
  }
out:
  free(subject);
  pki_secret_free(key, key_len);
  pki_secret_free(mp, mp_len);
  free(cert);
  free(p7);
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
  const est_fn_info *info = proto_fn_info(r.route->fn);
  uint8_t *body = NULL;
  size_t body_len = 0;
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
  policy_input pin = {r.route->fn, r.sess->cls};
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
    rc = serve_get(&r, query);
    goto out;
  }
  bool pending = false;
  rc = collect_body(&r, &body, &body_len, &pending);
  if (rc != EST_OK || pending)
    goto out;
  rc = serve_post(&r, body, body_len, query);
out:
  if (rc != EST_OK) {
    if (r.sess) {
      body_asm_reset(&r.sess->body);
      r.sess->body_owner = NULL;
    }
    send_error(&r, rc);
  }
  free(body);
}
