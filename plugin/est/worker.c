/* One worker thread with a FIFO in and a FIFO out (docs/decisions.md §8). */
#include "worker.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

typedef struct fifo {
  worker_job *head, *tail;
} fifo;

struct worker {
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  fifo todo, done;
  size_t count; /* queued + running + done, not yet taken */
  bool stop;
  int efd;
};

static void push(fifo *f, worker_job *j) {
  j->next = NULL;
  if (f->tail)
    f->tail->next = j;
  else
    f->head = j;
  f->tail = j;
}

static worker_job *pop(fifo *f) {
  worker_job *j = f->head;
  if (j) {
    f->head = j->next;
    if (!f->head)
      f->tail = NULL;
    j->next = NULL;
  }
  return j;
}

static void *thread_main(void *arg) {
  worker *w = arg;
  pthread_mutex_lock(&w->mu);
  for (;;) {
    while (!w->stop && !w->todo.head)
      pthread_cond_wait(&w->cv, &w->mu);
    if (w->stop)
      break;
    worker_job *j = pop(&w->todo);
    pthread_mutex_unlock(&w->mu);
    j->run(j);
    pthread_mutex_lock(&w->mu);
    push(&w->done, j);
    /* An eventfd write only fails if the counter would overflow. */
    uint64_t one = 1;
    ssize_t n = write(w->efd, &one, sizeof one);
    (void)n;
  }
  pthread_mutex_unlock(&w->mu);
  return NULL;
}

est_err worker_start(worker **out, int *fd) {
  worker *w = calloc(1, sizeof *w);
  if (!w)
    return EST_ERR_NOMEM;
  w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (w->efd < 0) {
    free(w);
    return EST_ERR_IO;
  }
  pthread_mutex_init(&w->mu, NULL);
  pthread_cond_init(&w->cv, NULL);
  if (pthread_create(&w->thread, NULL, thread_main, w) != 0) {
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    close(w->efd);
    free(w);
    return EST_ERR_NOMEM;
  }
  *out = w;
  *fd = w->efd;
  return EST_OK;
}

est_err worker_submit(worker *w, worker_job *j) {
  est_err rc = EST_OK;
  pthread_mutex_lock(&w->mu);
  if (w->count >= WORKER_QUEUE_MAX) {
    rc = EST_ERR_UNAVAILABLE;
  } else {
    push(&w->todo, j);
    w->count++;
    pthread_cond_signal(&w->cv);
  }
  pthread_mutex_unlock(&w->mu);
  return rc;
}

worker_job *worker_take(worker *w) {
  uint64_t v;
  if (!w)
    return NULL;
  pthread_mutex_lock(&w->mu);
  worker_job *j = pop(&w->done);
  if (j)
    w->count--;
  else
    while (read(w->efd, &v, sizeof v) > 0) /* drain the wake-ups */
      ;
  pthread_mutex_unlock(&w->mu);
  return j;
}

void worker_stop(worker *w, void (*drop)(worker_job *j)) {
  if (!w)
    return;
  pthread_mutex_lock(&w->mu);
  w->stop = true;
  pthread_cond_signal(&w->cv);
  pthread_mutex_unlock(&w->mu);
  pthread_join(w->thread, NULL);
  worker_job *j;
  while ((j = pop(&w->todo)) != NULL)
    drop(j);
  while ((j = pop(&w->done)) != NULL)
    drop(j);
  pthread_cond_destroy(&w->cv);
  pthread_mutex_destroy(&w->mu);
  close(w->efd);
  free(w);
}
