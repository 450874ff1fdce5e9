/* Filling in CoAP responses (reply.h). */
#include "reply.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "body.h"
#include "metrics.h"
#include "status.h"

static void add_uint_option(coap_pdu_t *pdu, coap_option_num_t num, unsigned v) {
  uint8_t buf[4];
  coap_add_option(pdu, num, coap_encode_var_safe(buf, sizeof buf, v), buf);
}

/* RFC 7959 §2.3: the final response to a Block1 transfer echoes the
 * request's Block1 with M clear. */
static void echo_block1(est_req *r) {
  coap_opt_iterator_t it;
  coap_opt_t *o = coap_check_option(r->pdu, COAP_OPTION_BLOCK1, &it);
  if (!o || coap_check_option(r->resp, COAP_OPTION_BLOCK1, &it))
    return;
  body_block blk;
  if (body_block_decode(coap_opt_value(o), coap_opt_length(o), &blk) != EST_OK)
    return;
  add_uint_option(r->resp, COAP_OPTION_BLOCK1, (blk.num << 4) | blk.szx);
}

/* A log value in double quotes, with \\ and \" escaped, cut to fit. */
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

void reply_error(est_req *r, est_err err) {
  unsigned code = status_coap(err);
  const char *msg = r->diag[0] ? r->diag : est_strerror(err);
  if (r->record) {
    reply_rec_clear(&r->rec);
    r->rec.kind = REPLY_ERROR;
    r->rec.err = err;
    r->rec.max_age = r->max_age;
    snprintf(r->rec.diag, sizeof r->rec.diag, "%s", r->diag);
  }
  echo_block1(r);
  coap_pdu_set_code(r->resp, STATUS_COAP_PDU(code));
  if (err == EST_ERR_TOO_LARGE)
    /* RFC 7959 §4: 4.13 carries Size1 = the largest body we take. */
    add_uint_option(r->resp, COAP_OPTION_SIZE1, (unsigned)r->p->max_body);
  if (code == 503 && r->max_age)
    /* RFC 9148 §4.7: come back after Max-Age seconds. */
    add_uint_option(r->resp, COAP_OPTION_MAXAGE, r->max_age);
  /* RC-6: a short UTF-8 diagnostic, no Content-Format (RFC 7252 §5.5.2). */
  coap_add_data(r->resp, strlen(msg), (const uint8_t *)msg);
  /* A refusal (4.xx) is an operator's business: notice, with where it
   * came from, as one key=value line (docs/operations.md "Logs"), and so
   * is a 5.03 for trouble (busy store, full queue); only "waiting for an
   * operator" is the normal "come back" (info). */
  char from[INET6_ADDRSTRLEN + 16] = "?";
  const coap_address_t *peer = coap_session_get_addr_remote(r->session);
  if (peer)
    coap_print_addr(peer, (unsigned char *)from, sizeof from);
  int level = code >= 500 && code != 503 ? COAPD_LOG_WARNING
              : err != EST_ERR_PENDING     ? COAPD_LOG_NOTICE
                                           : COAPD_LOG_INFO;
  char client[300], reason[2 * EST_DIAG_MAX];
  kv_quote(r->sess && r->sess->classified ? r->sess->peer : "", client, sizeof client);
  kv_quote(msg, reason, sizeof reason);
  r->p->api->log(r->p->api->host, level,
                 "request fn=%s code=%u.%02u peer=%s client=%s reason=%s max_age=%u",
                 proto_fn_info(r->route->fn)->name, code / 100, code % 100, from, client,
                 reason, code == 503 ? r->max_age : 0);
}

/* RFC 7959 §2.4: the Block2 block the request asks for (the first one,
 * sized to fit, when it asks for none). libcoap's own Block2 layer
 * forgets a body 8 s after its last block and copies the Block1 echo onto
 * every later block (docs/libcoap-4.3.1.md §7, row 17), so the answer to
 * a POST is served here, from the copy kept for repeats (dedup.h). The
 * ETag is a hash of the body, the same when the answer is sent again. */
static est_err send_owned(est_req *r, unsigned code, const uint8_t *data, size_t len) {
  coap_opt_iterator_t it;
  coap_opt_t *o = coap_check_option(r->pdu, COAP_OPTION_BLOCK2, &it);
  body_block blk = {0, false, 0};
  if (o && (body_block_decode(coap_opt_value(o), coap_opt_length(o), &blk) != EST_OK ||
            blk.szx > 6)) {
    snprintf(r->diag, sizeof r->diag, "Block2 option is not valid over UDP");
    return EST_ERR_BAD_REQUEST;
  }
  if (blk.num && ((uint64_t)blk.num << (blk.szx + 4)) >= len) {
    snprintf(r->diag, sizeof r->diag, "Block2 block %u is past the end of the %zu-byte answer",
             (unsigned)blk.num, len);
    return EST_ERR_BAD_REQUEST;
  }
  if (r->record) {
    reply_rec_clear(&r->rec);
    r->rec.body = malloc(len ? len : 1);
    if (!r->rec.body)
      return EST_ERR_NOMEM;
    memcpy(r->rec.body, data, len);
    r->rec.len = len;
    r->rec.kind = REPLY_OWNED;
    r->rec.code = code;
    r->rec.cf = r->cf_out;
  }
  echo_block1(r);
  /* It sets 2.05, or 4.00/5.00 when the block cannot be made. */
  coap_add_data_blocked_response(r->pdu, r->resp, (uint16_t)r->cf_out, -1, len, data);
  if (coap_pdu_get_code(r->resp) != COAP_RESPONSE_CODE(205))
    return EST_ERR_INTERNAL;
  coap_pdu_set_code(r->resp, STATUS_COAP_PDU(code));
  return EST_OK;
}

est_err reply_owned(est_req *r, unsigned code, const uint8_t *data, size_t len) {
  return send_owned(r, code, data, len);
}

est_err reply_borrowed(est_req *r, const uint8_t *data, size_t len) {
  /* CA data changes only on reload: each Block2 block is cut from it on
   * request with the same hash ETag and Size2, however late the request
   * comes (after a reload the ETag differs, so the client starts over). libcoap's own Block2 state ends 8 s after the
   * last block and a block asked for later went out without ETag and
   * Size2, which its own client then refuses (docs/decisions.md §11). */
  return send_owned(r, 205, data, len);
}

void reply_continue(est_req *r, uint32_t num, unsigned szx) {
  /* RFC 7959 §2.3: acknowledge with 2.31 and echo Block1, M set. */
  coap_opt_iterator_t it;
  if (r->record) {
    reply_rec_clear(&r->rec);
    r->rec.kind = REPLY_CONTINUE;
    r->rec.num = num;
    r->rec.szx = szx;
  }
  coap_pdu_set_code(r->resp, COAP_RESPONSE_CODE(231));
  if (!coap_check_option(r->resp, COAP_OPTION_BLOCK1, &it))
    add_uint_option(r->resp, COAP_OPTION_BLOCK1, (num << 4) | 0x08 | szx);
}

void reply_result(est_req *r, const enroll_result *res) {
  est_err rc = res->rc;
  est_metrics_enrolled(r->p->metrics, r->route->fn, r->t0_us);
  if (rc == EST_OK) {
    rc = reply_owned(r, 204, res->body, res->body_len);
    if (rc == EST_OK)
      return;
  } else {
    snprintf(r->diag, sizeof r->diag, "%s", res->diag);
    r->max_age = res->max_age;
  }
  reply_error(r, rc);
}

est_err reply_block(est_req *r, const reply_rec *rec) {
  r->record = false;
  r->cf_out = rec->cf;
  return send_owned(r, rec->code, rec->body, rec->len);
}

void reply_replay(est_req *r, const reply_rec *rec) {
  est_err rc = EST_OK;
  r->record = false;
  /* RFC 7252 §5.2.2: the request was acknowledged empty and answered
   * separately; a repeat hears the empty ACK again. */
  if (rec->separate)
    return;
  switch (rec->kind) {
  case REPLY_ERROR:
    snprintf(r->diag, sizeof r->diag, "%s", rec->diag);
    r->max_age = rec->max_age;
    reply_error(r, rec->err);
    break;
  case REPLY_OWNED:
    r->cf_out = rec->cf;
    rc = send_owned(r, rec->code, rec->body, rec->len);
    break;
  case REPLY_CONTINUE:
    reply_continue(r, rec->num, rec->szx);
    break;
  case REPLY_SEPARATE:
  case REPLY_NONE:
    /* The code stays unset: libcoap sends an empty ACK again, and the
     * separate response is libcoap's to retransmit. */
    break;
  }
  if (rc != EST_OK)
    reply_error(r, rc);
}
