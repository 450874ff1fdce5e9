/**
 * @file async.h
 * @brief Slow enrollment jobs (server-side keygen, and every job of a
 * registrar) off the CoAP loop with a separate response (RFC 9148 §4.7,
 * RFC 7252 §5.2.2, docs/decisions.md §8, §19): the request gets an empty
 * ACK, the job runs on the worker thread or at the upstream CA
 * (upstream.h), and the answer goes out as a CON response when it is done. Threading
 * only: what the job does and answers is enroll.h's business.
 */
#ifndef EST_ASYNC_H
#define EST_ASYNC_H

#include <stdbool.h>

#include "est_plugin.h"

/**
 * Hand @p job to the worker, or to the upstream when there is one. Returns true when it is on its way (the
 * response stays empty: libcoap sends an empty ACK); false when it could
 * not be queued: then @p job is freed and @p res holds a 5.03 to send.
 */
bool est_async_start(est_req *r, enroll_job *job, enroll_result *res);

/**
 * Called first for every POST: if @p r is the saved request libcoap
 * re-delivers once the job is done (docs/libcoap-4.3.1.md §4a), or a
 * retransmission of one still running, answer it and return true.
 */
bool est_async_finish(est_req *r);

/** The worker's eventfd is readable: finish every completed job. */
void est_async_ready(void *plugin);

/** Stop the worker and the upstream client, and free every unanswered
 * job (plugin fini). */
void est_async_drop_all(est_plugin *p);

#endif /* EST_ASYNC_H */
