/* The keygen worker (plugin/est/worker.h, docs/decisions.md §8): jobs run on the
 * worker thread in FIFO order, each completion makes the eventfd readable,
 * the queue is capped at WORKER_QUEUE_MAX, and worker_stop() hands back
 * every job not taken.
 *
 * Three functions are wrapped (-Wl,--wrap, see worker.cmake):
 *   calloc, eventfd, pthread_create  fail on demand, for worker_start();
 *   pthread_join                     runs a hook first, so a test can let a
 *                                    blocked job finish only once
 *                                    worker_stop() has asked the thread to
 *                                    stop, which makes "queued jobs are not
 *                                    run after stop" deterministic. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cmocka.h>

#include "plugin/est/worker.h"

/* How long a test waits for the worker before it gives up. */
#define WAIT_MS 10000

/* ------------------------------------------------------------ wraps */

/* Wrap state: the only file-level state, since the wraps take no context. */
static struct {
  bool fail_calloc, fail_eventfd, fail_pthread_create;
  void (*join_hook)(void *arg);
  void *join_arg;
} W;

void *__real_calloc(size_t n, size_t size);
void *__wrap_calloc(size_t n, size_t size);
int __real_eventfd(unsigned int initval, int flags);
int __wrap_eventfd(unsigned int initval, int flags);
int __real_pthread_create(pthread_t *t, const pthread_attr_t *attr,
                          void *(*fn)(void *), void *arg);
int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *attr,
                          void *(*fn)(void *), void *arg);
int __real_pthread_join(pthread_t t, void **ret);
int __wrap_pthread_join(pthread_t t, void **ret);

void *__wrap_calloc(size_t n, size_t size) {
  if (W.fail_calloc) {
    errno = ENOMEM;
    return NULL;
  }
  return __real_calloc(n, size);
}

int __wrap_eventfd(unsigned int initval, int flags) {
  if (W.fail_eventfd) {
    errno = EMFILE;
    return -1;
  }
  return __real_eventfd(initval, flags);
}

int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *attr,
                          void *(*fn)(void *), void *arg) {
  if (W.fail_pthread_create)
    return EAGAIN;
  return __real_pthread_create(t, attr, fn, arg);
}

int __wrap_pthread_join(pthread_t t, void **ret) {
  if (W.join_hook)
    W.join_hook(W.join_arg);
  return __real_pthread_join(t, ret);
}

static int reset_wraps(void **state) {
  (void)state;
  memset(&W, 0, sizeof W);
  return 0;
}

/* ------------------------------------------------------------ jobs */

/* What every job of one test shares. seq is written by the worker thread
 * only; the test reads it after taking a job, which the worker's mutex
 * orders after the write. */
typedef struct ctx {
  unsigned seq;     /* next run order number */
  unsigned dropped; /* jobs handed to drop() */
} ctx;

typedef struct tjob {
  worker_job wj; /* first: the worker hands this pointer back */
  ctx *c;
  unsigned id;
  unsigned runs;     /* times run() was called */
  unsigned run_seq;  /* when it ran, among this test's jobs */
  pthread_t ran_on;
  uint64_t in, out;  /* the "result" the job computes */
  sem_t *started;    /* posted when run() starts, if set */
  sem_t *release;    /* run() waits for it, if set */
} tjob;

static uint64_t work(uint64_t x) {
  /* Something the caller can check came from this job's input. */
  for (int i = 0; i < 1000; i++)
    x = x * 6364136223846793005u + 1442695040888963407u;
  return x;
}

static void job_run(worker_job *wj) {
  tjob *j = (tjob *)wj;
  j->ran_on = pthread_self();
  j->run_seq = j->c->seq++;
  j->runs++;
  if (j->started)
    sem_post(j->started);
  if (j->release)
    while (sem_wait(j->release) != 0 && errno == EINTR)
      ;
  j->out = work(j->in);
}

static tjob *job_new(ctx *c, unsigned id) {
  tjob *j = calloc(1, sizeof *j);
  assert_non_null(j);
  j->wj.run = job_run;
  j->c = c;
  j->id = id;
  j->in = 1000u + id;
  return j;
}

static void job_drop(worker_job *wj) {
  tjob *j = (tjob *)wj;
  j->c->dropped++;
  free(j);
}

/* A drop() that must not be called. */
static void drop_never(worker_job *wj) {
  (void)wj;
  fail_msg("drop() called with nothing to hand back");
}

/* ------------------------------------------------------------ helpers */

static bool fd_readable(int fd, int timeout_ms) {
  struct pollfd p = {.fd = fd, .events = POLLIN};
  int n;
  while ((n = poll(&p, 1, timeout_ms)) < 0 && errno == EINTR)
    ;
  assert_true(n >= 0);
  return n == 1 && (p.revents & POLLIN);
}

/* Take the next finished job the way the plugin does: wait for the fd,
 * then worker_take(). Fails the test after WAIT_MS. */
static tjob *take_next(worker *w, int fd) {
  for (;;) {
    worker_job *wj = worker_take(w);
    if (wj)
      return (tjob *)wj;
    if (!fd_readable(fd, WAIT_MS))
      fail_msg("no job finished within %d ms", WAIT_MS);
  }
}

static void wait_sem(sem_t *s) {
  struct timespec ts;
  assert_int_equal(clock_gettime(CLOCK_REALTIME, &ts), 0);
  ts.tv_sec += WAIT_MS / 1000;
  int rc;
  while ((rc = sem_timedwait(s, &ts)) != 0 && errno == EINTR)
    ;
  if (rc != 0)
    fail_msg("the worker did not start the job within %d ms", WAIT_MS);
}

static unsigned open_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  assert_non_null(d);
  unsigned n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    n += e->d_name[0] != '.';
  closedir(d);
  return n;
}

/* ------------------------------------------------------------ tests */

static void test_start_stop_idle(void **state) {
  (void)state;
  unsigned fds = open_fds();
  worker *w = NULL;
  int fd = -1;
  assert_int_equal(worker_start(&w, &fd), EST_OK);
  assert_non_null(w);
  assert_true(fd >= 0);
  /* The loop polls the fd; reading it must never block the loop. */
  int fl = fcntl(fd, F_GETFL);
  assert_true(fl >= 0 && (fl & O_NONBLOCK));
  assert_true((fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);
  assert_false(fd_readable(fd, 0));
  assert_null(worker_take(w));
  worker_stop(w, drop_never);
  /* The eventfd went with it. */
  assert_int_equal(open_fds(), fds);
}

/* Jobs run on the worker thread, one at a time in submit order, and come
 * back complete and in the same order. */
static void test_jobs_run_off_thread_in_order(void **state) {
  (void)state;
  enum { N = 32 };
  ctx c = {0};
  worker *w = NULL;
  int fd = -1;
  assert_int_equal(worker_start(&w, &fd), EST_OK);

  tjob *jobs[N];
  for (unsigned i = 0; i < N; i++) {
    jobs[i] = job_new(&c, i);
    assert_int_equal(worker_submit(w, &jobs[i]->wj), EST_OK);
  }
  pthread_t worker_thread = 0;
  for (unsigned i = 0; i < N; i++) {
    tjob *j = take_next(w, fd);
    assert_ptr_equal(j, jobs[i]);
    assert_int_equal(j->runs, 1);
    assert_int_equal(j->run_seq, i);
    assert_true(j->out == work(1000u + i));
    assert_false(pthread_equal(j->ran_on, pthread_self()));
    if (i == 0)
      worker_thread = j->ran_on;
    assert_true(pthread_equal(j->ran_on, worker_thread));
    free(j);
  }
  /* All taken: nothing left, and the fd is drained by the empty take. */
  assert_null(worker_take(w));
  assert_false(fd_readable(fd, 0));
  worker_stop(w, drop_never);
}

/* The fd fires when a job finishes, not when it is submitted or while it
 * runs; several completions may share one wake-up. */
static void test_completion_signalled(void **state) {
  (void)state;
  ctx c = {0};
  sem_t started, release;
  assert_int_equal(sem_init(&started, 0, 0), 0);
  assert_int_equal(sem_init(&release, 0, 0), 0);
  worker *w = NULL;
  int fd = -1;
  assert_int_equal(worker_start(&w, &fd), EST_OK);

  tjob *slow = job_new(&c, 0);
  slow->started = &started;
  slow->release = &release;
  tjob *next = job_new(&c, 1);
  assert_int_equal(worker_submit(w, &slow->wj), EST_OK);
  assert_int_equal(worker_submit(w, &next->wj), EST_OK);
  wait_sem(&started);
  /* Running, not finished: no wake-up and nothing to take. */
  assert_false(fd_readable(fd, 50));
  assert_null(worker_take(w));
  assert_false(fd_readable(fd, 0));

  sem_post(&release);
  assert_true(fd_readable(fd, WAIT_MS));
  assert_ptr_equal(take_next(w, fd), slow);
  assert_ptr_equal(take_next(w, fd), next);
  assert_int_equal(slow->runs, 1);
  assert_int_equal(next->runs, 1);
  assert_null(worker_take(w));
  assert_false(fd_readable(fd, 0));

  worker_stop(w, drop_never);
  free(slow);
  free(next);
  sem_destroy(&started);
  sem_destroy(&release);
}

/* WORKER_QUEUE_MAX jobs may be held at once (queued, running or finished
 * and not yet taken); one more is refused with EST_ERR_UNAVAILABLE (the
 * plugin answers 5.03) and left untouched, and taking a job makes room. */
static void test_queue_full_refused(void **state) {
  (void)state;
  ctx c = {0};
  sem_t started, release, last_started;
  assert_int_equal(sem_init(&started, 0, 0), 0);
  assert_int_equal(sem_init(&release, 0, 0), 0);
  assert_int_equal(sem_init(&last_started, 0, 0), 0);
  worker *w = NULL;
  int fd = -1;
  assert_int_equal(worker_start(&w, &fd), EST_OK);

  /* The first job holds the thread so nothing can drain meanwhile. */
  tjob *slow = job_new(&c, 0);
  slow->started = &started;
  slow->release = &release;
  assert_int_equal(worker_submit(w, &slow->wj), EST_OK);
  wait_sem(&started);
  for (unsigned i = 1; i < WORKER_QUEUE_MAX; i++) {
    tjob *q = job_new(&c, i);
    if (i == WORKER_QUEUE_MAX - 1)
      q->started = &last_started;
    if (worker_submit(w, &q->wj) != EST_OK)
      fail_msg("job %u of %u refused", i + 1, WORKER_QUEUE_MAX);
  }
  tjob *extra = job_new(&c, WORKER_QUEUE_MAX);
  extra->wj.next = (worker_job *)extra; /* must stay as it is */
  assert_int_equal(worker_submit(w, &extra->wj), EST_ERR_UNAVAILABLE);
  assert_ptr_equal(extra->wj.next, &extra->wj);

  /* Finished but not taken still counts: the worker holds them. Once the
   * last job has started, every other one sits in the done list. */
  sem_post(&release);
  wait_sem(&last_started);
  assert_int_equal(worker_submit(w, &extra->wj), EST_ERR_UNAVAILABLE);

  /* One taken: one slot free again, and only one. */
  tjob *j = take_next(w, fd);
  assert_ptr_equal(j, slow);
  free(j);
  extra->wj.next = NULL;
  assert_int_equal(worker_submit(w, &extra->wj), EST_OK);
  tjob *more = job_new(&c, WORKER_QUEUE_MAX + 1);
  assert_int_equal(worker_submit(w, &more->wj), EST_ERR_UNAVAILABLE);
  free(more);

  for (unsigned i = 1; i < WORKER_QUEUE_MAX; i++) {
    j = take_next(w, fd);
    assert_int_equal(j->id, i);
    assert_int_equal(j->runs, 1);
    free(j);
  }
  assert_ptr_equal(take_next(w, fd), extra);
  assert_int_equal(extra->runs, 1);
  assert_int_equal(extra->run_seq, WORKER_QUEUE_MAX);
  free(extra);
  assert_null(worker_take(w));
  worker_stop(w, drop_never);
  sem_destroy(&started);
  sem_destroy(&release);
  sem_destroy(&last_started);
}

/* worker_stop() lets the running job finish, runs nothing queued, and
 * hands back every job not taken, finished or not, exactly once; the
 * test frees them in drop(), so ASan/LSan see any job left behind. */
struct stop_gate {
  sem_t *release;
  unsigned joins;
};

static void release_on_join(void *arg) {
  struct stop_gate *g = arg;
  g->joins++;
  sem_post(g->release);
}

static void test_stop_hands_back_unfinished(void **state) {
  (void)state;
  enum { DONE = 3, QUEUED = 20 };
  ctx c = {0};
  sem_t started, release;
  assert_int_equal(sem_init(&started, 0, 0), 0);
  assert_int_equal(sem_init(&release, 0, 0), 0);
  worker *w = NULL;
  int fd = -1;
  assert_int_equal(worker_start(&w, &fd), EST_OK);

  /* DONE quick jobs, then one that blocks, then QUEUED behind it. When the
   * blocker has started, the quick ones sit finished in the done list. */
  unsigned submitted = 0;
  for (unsigned i = 0; i < DONE; i++, submitted++)
    assert_int_equal(worker_submit(w, &job_new(&c, submitted)->wj), EST_OK);
  tjob *slow = job_new(&c, submitted++);
  slow->started = &started;
  slow->release = &release;
  assert_int_equal(worker_submit(w, &slow->wj), EST_OK);
  for (unsigned i = 0; i < QUEUED; i++, submitted++)
    assert_int_equal(worker_submit(w, &job_new(&c, submitted)->wj), EST_OK);
  wait_sem(&started);

  /* stop() sets the flag, then joins; the join hook lets the blocker
   * finish only then, so the thread must stop rather than go on. */
  struct stop_gate g = {.release = &release};
  W.join_hook = release_on_join;
  W.join_arg = &g;
  worker_stop(w, job_drop);
  W.join_hook = NULL;

  assert_int_equal(g.joins, 1);
  assert_int_equal(c.dropped, submitted);
  /* The quick jobs and the blocker ran; none of the queued ones did. */
  assert_int_equal(c.seq, DONE + 1);
  sem_destroy(&started);
  sem_destroy(&release);
}

/* A job already taken belongs to the loop again: stop() hands back the
 * others (queued, running or finished, whichever they are by then) and
 * never the taken one. */
static void test_stop_skips_taken(void **state) {
  (void)state;
  enum { N = 8 };
  ctx c = {0};
  worker *w = NULL;
  int fd = -1;
  assert_int_equal(worker_start(&w, &fd), EST_OK);
  for (unsigned i = 0; i < N; i++)
    assert_int_equal(worker_submit(w, &job_new(&c, i)->wj), EST_OK);
  tjob *first = take_next(w, fd);
  assert_int_equal(first->id, 0);
  free(first);
  worker_stop(w, job_drop);
  assert_int_equal(c.dropped, N - 1);
}

/* Each way worker_start() can fail: the error says which, and nothing is
 * left behind (no fd; ASan/LSan check the memory). */
static void test_start_failures(void **state) {
  (void)state;
  unsigned fds = open_fds();
  worker *w = NULL;
  int fd = -1;

  W.fail_calloc = true;
  assert_int_equal(worker_start(&w, &fd), EST_ERR_NOMEM);
  W.fail_calloc = false;
  assert_null(w);
  assert_int_equal(fd, -1);

  W.fail_eventfd = true;
  assert_int_equal(worker_start(&w, &fd), EST_ERR_IO);
  W.fail_eventfd = false;
  assert_null(w);
  assert_int_equal(fd, -1);

  W.fail_pthread_create = true;
  assert_int_equal(worker_start(&w, &fd), EST_ERR_NOMEM);
  W.fail_pthread_create = false;
  assert_null(w);
  assert_int_equal(fd, -1);
  assert_int_equal(open_fds(), fds);

  /* And after the faults it works again. */
  assert_int_equal(worker_start(&w, &fd), EST_OK);
  worker_stop(w, drop_never);
  assert_int_equal(open_fds(), fds);
}

/* worker_stop(NULL) is a no-op, as every destructor here. */
static void test_stop_null(void **state) {
  (void)state;
  worker_stop(NULL, drop_never);
  worker_stop(NULL, NULL);
}

/* The worker restarts cleanly: start/stop cycles leak nothing. */
static void test_start_stop_cycles(void **state) {
  (void)state;
  unsigned fds = open_fds();
  for (unsigned i = 0; i < 20; i++) {
    ctx c = {0};
    worker *w = NULL;
    int fd = -1;
    assert_int_equal(worker_start(&w, &fd), EST_OK);
    assert_int_equal(worker_submit(w, &job_new(&c, i)->wj), EST_OK);
    worker_stop(w, job_drop);
    assert_int_equal(c.dropped, 1);
  }
  assert_int_equal(open_fds(), fds);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup(test_start_stop_idle, reset_wraps),
      cmocka_unit_test_setup(test_jobs_run_off_thread_in_order, reset_wraps),
      cmocka_unit_test_setup(test_completion_signalled, reset_wraps),
      cmocka_unit_test_setup(test_queue_full_refused, reset_wraps),
      cmocka_unit_test_setup(test_stop_hands_back_unfinished, reset_wraps),
      cmocka_unit_test_setup(test_stop_skips_taken, reset_wraps),
      cmocka_unit_test_setup(test_start_failures, reset_wraps),
      cmocka_unit_test_setup(test_stop_null, reset_wraps),
      cmocka_unit_test_setup(test_start_stop_cycles, reset_wraps),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
