/**
 * @file worker.h
 * @brief A worker thread for slow CA work (server-side key generation),
 * so the CoAP loop never blocks on it (docs/decisions.md §8).
 *
 * The loop submits jobs; the worker runs each job's run() and queues it as
 * done; an eventfd wakes the loop (through the host's watch_fd), which
 * takes the finished jobs with worker_take(). Ownership of a job passes to
 * the worker on submit and back to the loop on take.
 */
#ifndef EST_WORKER_H
#define EST_WORKER_H

#include <stdbool.h>
#include <stddef.h>

#include "common/est_err.h"

typedef struct worker worker;

typedef struct worker_job {
  struct worker_job *next;          /* queue link, owned by the worker */
  void (*run)(struct worker_job *j); /* runs on the worker thread */
  /* NULL for the keygen jobs of async.c; else what the loop calls once the
   * job is back (ran true) or dropped unrun at stop (ran false). */
  void (*finish)(struct worker_job *j, bool ran);
} worker_job;

/** Most jobs in the worker at once (queued, running, or finished and not
 * yet taken); more get EST_ERR_UNAVAILABLE. */
#define WORKER_QUEUE_MAX 256u

/** Start the thread. *fd is the eventfd to watch for finished jobs. */
est_err worker_start(worker **out, int *fd) EST_MUST_CHECK;

/** Queue @p j. EST_ERR_UNAVAILABLE when the queue is full (answer 5.03). */
est_err worker_submit(worker *w, worker_job *j) EST_MUST_CHECK;

/** Take one finished job, or NULL (also for @p w NULL). Call until NULL
 * after the fd fires. */
worker_job *worker_take(worker *w);

/**
 * Stop the thread after the job it is running, and hand back every job
 * not taken yet (queued or finished) through @p drop so the caller can
 * free them; @p drop is required. @p w is freed: do not use it again.
 * NULL is a no-op.
 */
void worker_stop(worker *w, void (*drop)(worker_job *j));

#endif /* EST_WORKER_H */
