/* Server-side key generation with a separate response (RFC 9148 §4.7,
 * RFC 7252 §5.2.2, decisions.md §8): the request gets an empty ACK, the
 * key and certificate are made on the worker thread, and the answer goes
 * out as a CON 2.04 when they are ready. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "est_plugin.h"
#include "proto/multipart.h"

struct est_job {
  worker_job wj; /* first: the worker hands this pointer back */
  est_plugin *p;
  est_job *prev, *next; /* the plugin's list of unanswered jobs */
  coap_async_t *async;  /* owned by libcoap, valid until answered */
  bool ready;
  /* Input: the parsed CSR and the approval ticket travel with the job. */
  pki_csr *csr;
  pki_key_type type;
  est_fn fn;
  unsigned cf_out;
  approval_ticket ticket;
  /* Output. */
  est_err rc;
  char diag[EST_DIAG_MAX];
  unsigned max_age;
  uint8_t *key, *cert, *body;
  size_t key_len, cert_len, body_len;
  uint8_t serial[16];
};

static void job_free(est_job *j) {
  if (!j)
    return;
  pki_csr_free(j->csr);
  approval_ticket_clear(&j->ticket);
  pki_secret_free(j->key, j->key_len);
  pki_secret_free(j->body, j->body_len);
  free(j->cert);
  free(j);
}

static void unlink_job(est_job *j) {
  if (j->prev)
    j->prev->next = j->next;
  else if (j->p->jobs == j)
    j->p->jobs = j->next;
  if (j->next)
    j->next->prev = j->prev;
  j->prev = j->next = NULL;
}

/* Worker thread: only the CA and the job's own data are touched here. */
static void job_run(worker_job *wj) {
  est_job *j = (est_job *)wj;
  j->rc = pki_keygen_issue(j->p->ca, j->csr, j->type, &j->key, &j->key_len, &j->cert,
                           &j->cert_len, j->serial);
  if (j->rc != EST_OK)
    snprintf(j->diag, sizeof j->diag, "the CA could not generate the key or certificate");
}

est_err est_async_start(est_req *r, pki_csr *csr, approval_ticket *t) {
  est_job *j = calloc(1, sizeof *j);
  if (!j)
    return EST_ERR_NOMEM;
  j->wj.run = job_run;
  j->p = r->p;
  j->type = r->p->keygen_type;
  j->fn = r->route->fn;
  j->cf_out = r->cf_out;
  /* 0 = wait for coap_async_trigger(); the copy keeps the token. */
  j->async = coap_register_async(r->session, r->pdu, 0);
  if (!j->async) {
    free(j);
    snprintf(r->diag, sizeof r->diag, "server busy, retry later");
    r->max_age = 5;
    return EST_ERR_UNAVAILABLE;
  }
  /* Everything the worker reads is in place before it can see the job. */
  j->csr = csr;
  j->ticket = *t;
  memset(t, 0, sizeof *t);
  coap_async_set_app_data(j->async, j);
  j->next = r->p->jobs;
  if (j->next)
    j->next->prev = j;
  r->p->jobs = j;
  est_err rc = worker_submit(r->p->wk, &j->wj);
  if (rc != EST_OK) {
    /* Hand the CSR and ticket back: the caller still owns them. */
    unlink_job(j);
    *t = j->ticket;
    coap_free_async(r->session, j->async);
    free(j);
    snprintf(r->diag, sizeof r->diag, "too many key generations queued, retry later");
    r->max_age = 5;
    return EST_ERR_UNAVAILABLE;
  }
  /* The response code stays unset: libcoap sends an empty ACK. */
  return EST_OK;
}

/* Loop thread, after the worker: record, encode, trigger the answer. */
static void job_complete(est_job *j) {
  est_plugin *p = j->p;
  if (j->rc == EST_OK &&
      approval_record(p->appr, &j->ticket, j->cert, j->cert_len, j->serial) != EST_OK) {
    j->rc = EST_ERR_UNAVAILABLE;
    j->max_age = 5;
    snprintf(j->diag, sizeof j->diag, "enrollment database unavailable, retry later");
  }
  uint8_t *p7 = NULL;
  size_t p7_len = 0;
  bool single = j->fn == EST_FN_SKC;
  if (j->rc == EST_OK && !single)
    j->rc = pki_p7_certs_only(j->cert, j->cert_len, &p7, &p7_len);
  if (j->rc == EST_OK) {
    /* SKG-3/SKG-5: [284, PKCS#8, 281|287, certificate]. */
    mp_part parts[2] = {
      {CF_PKCS8, j->key, j->key_len},
      {(uint16_t)(single ? CF_PKIX_CERT : CF_PKCS7_CERTS_ONLY), single ? j->cert : p7,
       single ? j->cert_len : p7_len}};
    j->rc = mp_encode(parts, 2, &j->body, &j->body_len);
  }
  free(p7);
  /* The key now lives only in the encoded body. */
  pki_secret_free(j->key, j->key_len);
  j->key = NULL;
  j->key_len = 0;
  j->ready = true;
  coap_async_trigger(j->async);
}

void est_async_ready(void *plugin) {
  est_plugin *p = plugin;
  worker_job *wj;
  while ((wj = worker_take(p->wk)) != NULL)
    job_complete((est_job *)wj);
}

bool est_async_finish(est_req *r) {
  coap_async_t *a = coap_find_async(r->session, coap_pdu_get_token(r->pdu));
  if (!a)
    return false;
  est_job *j = coap_async_get_app_data(a);
  if (!j || !j->ready) {
    /* A retransmission of a request still in the works: libcoap repeats
     * the empty ACK itself (libcoap-4.3.1.md §4a). Leave the code unset. */
    return true;
  }
  unlink_job(j);
  coap_async_set_app_data(a, NULL);
  r->cf_out = j->cf_out;
  if (j->rc == EST_OK) {
    est_err rc = est_send_owned(r, 204, j->body, j->body_len);
    if (rc == EST_OK) {
      char hex[33];
      for (int i = 0; i < 16; i++)
        snprintf(hex + 2 * i, 3, "%02x", j->serial[i]);
      r->p->api->log(r->p->api->host, COAPD_LOG_NOTICE,
                     "%s, client '%s', issued serial %s subject '%s' with a server-generated key",
                     proto_fn_info(j->fn)->name, r->sess->peer, hex, j->ticket.subject);
    } else {
      j->rc = rc;
    }
  }
  if (j->rc != EST_OK) {
    /* libcoap 4.3.1 sends CON 0.00 if the code stays unset (PR #2141). */
    snprintf(r->diag, sizeof r->diag, "%s", j->diag);
    r->max_age = j->max_age;
    est_echo_block1(r);
    est_send_error(r, j->rc);
  }
  job_free(j);
  return true;
}

static void drop_job(worker_job *wj) {
  est_job *j = (est_job *)wj;
  j->ready = true; /* now only on the plugin list */
}

void est_async_drop_all(est_plugin *p) {
  /* Stop the worker first so no job is running; then free every job not
   * answered. Their asyncs are freed by coap_free_context, which does not
   * free app data (libcoap-4.3.1.md §4a). */
  worker_stop(p->wk, drop_job);
  p->wk = NULL;
  while (p->jobs) {
    est_job *j = p->jobs;
    unlink_job(j);
    job_free(j);
  }
}
