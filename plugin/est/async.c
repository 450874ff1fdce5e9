/* Slow enrollment jobs on the worker thread, answered with a separate
 * response (async.h). Threading only. */
#include "async.h"

#include <stdlib.h>
#include <string.h>

#include "reply.h"
#include "upstream.h"

struct est_job {
  worker_job wj; /* first: the worker hands this pointer back */
  est_plugin *p;
  est_job *prev, *next; /* the plugin's list of unanswered jobs */
  coap_async_t *async;  /* owned by libcoap, valid until answered */
  bool ready;           /* res holds the answer */
  unsigned cf_out;
  uint64_t t0_us;       /* the request's arrival (metrics.h) */
  enroll_job *job;      /* until finished on the loop */
  enroll_result res;
};

static void job_free(est_job *j) {
  if (!j)
    return;
  enroll_job_free(j->job);
  enroll_result_clear(&j->res);
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

/* Worker thread: only the job itself (and the CA inside it) is touched. */
static void job_run(worker_job *wj) {
  enroll_job_run(((est_job *)wj)->job);
}

/* Loop thread: the upstream answered (upstream.h); the job holds it. */
static void upstream_done(void *arg) {
  est_job *j = arg;
  enroll_job_finish(j->p->en, j->job, &j->res);
  j->job = NULL;
  j->ready = true;
  coap_async_trigger(j->async);
}

bool est_async_start(est_req *r, enroll_job *job, enroll_result *res) {
  est_job *j = calloc(1, sizeof *j);
  if (!j) {
    enroll_job_free(job);
    enroll_retry_later(res, "server out of memory, retry later");
    return false;
  }
  j->wj.run = job_run;
  j->p = r->p;
  j->cf_out = r->cf_out;
  j->t0_us = r->t0_us;
  /* 0 = wait for coap_async_trigger(); the copy keeps the token. */
  j->async = coap_register_async(r->session, r->pdu, 0);
  if (!j->async) {
    free(j);
    enroll_job_free(job);
    enroll_retry_later(res, "server busy, retry later");
    return false;
  }
  /* Everything the worker reads is in place before it can see the job. */
  j->job = job;
  coap_async_set_app_data(j->async, j);
  j->next = r->p->jobs;
  if (j->next)
    j->next->prev = j;
  r->p->jobs = j;
  /* A registrar's job goes upstream (docs/decisions.md §19), keygen
   * included; the CA's own goes to the worker. */
  worker *w = enroll_job_keygen(job) || !r->p->signer ? r->p->wk : r->p->signer;
  bool sent = r->p->up ? upstream_enroll(r->p->up, job, upstream_done, j) == EST_OK
                       : w && worker_submit(w, &j->wj) == EST_OK;
  if (!sent) {
    unlink_job(j);
    coap_free_async(r->session, j->async);
    job_free(j);
    enroll_retry_later(res, r->p->up ? "upstream CA unavailable, retry later"
                          : w == r->p->signer ? "too many signatures queued, retry later"
                                              : "too many key generations queued, retry later");
    return false;
  }
  /* The response code stays unset: libcoap sends an empty ACK. */
  return true;
}

void est_async_ready(void *plugin) {
  est_plugin *p = plugin;
  worker_job *wj;
  /* Both workers' eventfds lead here: take from each. */
  while ((wj = worker_take(p->wk)) != NULL || (wj = worker_take(p->signer)) != NULL) {
    if (wj->finish) {
      wj->finish(wj, true); /* not a keygen job (crlpub.c) */
      continue;
    }
    est_job *j = (est_job *)wj;
    /* Record and encode on the loop, which owns the store. */
    enroll_job_finish(p->en, j->job, &j->res);
    j->job = NULL;
    j->ready = true;
    coap_async_trigger(j->async);
  }
}

bool est_async_finish(est_req *r) {
  coap_async_t *a = coap_find_async(r->session, coap_pdu_get_token(r->pdu));
  if (!a)
    return false;
  est_job *j = coap_async_get_app_data(a);
  if (!j || !j->ready) {
    /* A retransmission of a request still in the works: libcoap repeats
     * the empty ACK itself (docs/libcoap-4.3.1.md §4a). Leave the code
     * unset. */
    return true;
  }
  unlink_job(j);
  coap_async_set_app_data(a, NULL);
  r->cf_out = j->cf_out;
  r->t0_us = j->t0_us; /* the duration runs from the first arrival */
  /* Kept in place of the empty ACK recorded for this exchange: later
   * Block2 requests are served from it, repeats still hear the empty ACK
   * (dedup.h). */
  r->record = true;
  r->separate = true;
  /* Always set a code: libcoap 4.3.1 sends CON 0.00 if it stays unset
   * (PR #2141). */
  reply_result(r, &j->res);
  job_free(j);
  return true;
}

static void drop_job(worker_job *wj) {
  if (wj->finish) {
    wj->finish(wj, false);
    return;
  }
  est_job *j = (est_job *)wj;
  j->ready = true; /* now only on the plugin list */
}

void est_async_drop_all(est_plugin *p) {
  /* Stop the worker first so no job is running; then free every job not
   * answered. Their asyncs are freed by coap_free_context, which does not
   * free app data (docs/libcoap-4.3.1.md §4a). */
  worker_stop(p->wk, drop_job);
  p->wk = NULL;
  worker_stop(p->signer, drop_job);
  p->signer = NULL;
  /* No upstream callback runs after this (upstream.h). */
  upstream_close(p->up);
  p->up = NULL;
  while (p->jobs) {
    est_job *j = p->jobs;
    unlink_job(j);
    job_free(j);
  }
}
