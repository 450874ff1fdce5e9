/* store_bench: what the store's writes cost on this machine, for
 * synchronous=FULL (the default) and synchronous=NORMAL. Not a test; the
 * figures go into store/README.md.
 *
 *   store_bench [DIR [N]]     DIR: where to put the scratch databases
 *                             (default /var/tmp; use the real data disk),
 *                             N: enrollments per mode (default 300)
 *
 * Prints mean, median and p90 wall time in microseconds per operation.
 * "approve" is estctl's write, not part of the CoAP loop's cost. */
#define _POSIX_C_SOURCE 200809L

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "store.h"

enum op { OP_CREATE, OP_DECIDE, OP_ISSUE, OP_LOOKUP, OP_DIRECT, OP_AUDIT,
          OP_MANUAL, OP__MAX };
static const char *const op_names[OP__MAX] = {
  "create pending (write)", "approve (write)", "issue (write)",
  "lookup (read)", "issue_direct (write)", "audit_since 10 (read)",
  "coapd manual enrollment: 2 writes+3 lookups",
};

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static void fill(uint8_t *p, size_t n, uint32_t seed) {
  for (size_t i = 0; i < n; i++) {
    seed = seed * 1103515245u + 12345u;
    p[i] = (uint8_t)(seed >> 16);
  }
}

static int audit_cb(void *ctx, const store_audit_row *row) {
  (void)row;
  (*(int *)ctx)++;
  return 0;
}

static void die(const char *what, est_err rc, const store *s) {
  fprintf(stderr, "store_bench: %s: %s (%s)\n", what, est_strerror(rc),
          store_errmsg(s));
  exit(1);
}

static void run(const char *dir, int n, bool normal) {
  char path[4096];
  char diag[256];
  store_options o;
  store *s = NULL;
  double *t[OP__MAX];
  uint8_t csr[424], der[720];
  est_err rc;

  snprintf(path, sizeof path, "%s/store_bench_%ld.db", dir, (long)getpid());
  unlink(path);
  store_options_init(&o);
  o.create = true;
  o.synchronous_normal = normal;
  if ((rc = store_open(path, &o, &s, diag, sizeof diag)) != EST_OK) {
    fprintf(stderr, "store_bench: %s\n", diag);
    exit(1);
  }
  for (int k = 0; k < OP__MAX; k++)
    t[k] = calloc((size_t)n, sizeof(double));

  for (int i = 0; i < n; i++) {
    store_request_new rq = {0};
    store_cert_new cn = {0};
    store_request out;
    char serial[32];
    int64_t id = 0, cid = 0;
    double a, b, manual = 0;

    rq.function = STORE_FN_SEN;
    fill(rq.spki_sha256, sizeof rq.spki_sha256, (uint32_t)i);
    fill(rq.client_fp, sizeof rq.client_fp, (uint32_t)i + 7u);
    rq.client = "CN=idevid-0001,O=Manufacturer";
    rq.client_class = STORE_CLIENT_IDEVID;
    rq.subject = "CN=device-0001,O=Example";
    fill(csr, sizeof csr, (uint32_t)i * 3u);
    rq.csr = csr;
    rq.csr_len = sizeof csr;
    rq.ttl = 3600;
    rq.initial_state = STORE_REQ_PENDING;
    fill(der, sizeof der, (uint32_t)i * 5u);
    snprintf(serial, sizeof serial, "%016x%08x", (unsigned)i, 0xabcdu);
    cn.serial = serial;
    cn.subject = rq.subject;
    cn.der = der;
    cn.der_len = sizeof der;

    /* First request: lookup misses, create pending. */
    a = now_us();
    rc = store_request_lookup(s, rq.spki_sha256, rq.client_fp, rq.function,
                              (int64_t)time(NULL), &out);
    b = now_us();
    store_request_clear(&out);
    if (rc != EST_ERR_NOT_FOUND)
      die("lookup", rc, s);
    manual += b - a;
    a = now_us();
    if ((rc = store_request_create(s, &rq, "coapd", &id)) != EST_OK)
      die("create", rc, s);
    b = now_us();
    t[OP_CREATE][i] = b - a;
    manual += b - a;

    a = now_us();
    if ((rc = store_request_decide(s, id, true, NULL, "operator")) != EST_OK)
      die("decide", rc, s);
    b = now_us();
    t[OP_DECIDE][i] = b - a; /* estctl's cost, not the CoAP loop's */

    /* Retry after approval: lookup finds it approved, issue. */
    a = now_us();
    rc = store_request_lookup(s, rq.spki_sha256, rq.client_fp, rq.function,
                              (int64_t)time(NULL), &out);
    b = now_us();
    store_request_clear(&out);
    if (rc != EST_OK)
      die("lookup approved", rc, s);
    t[OP_LOOKUP][i] = b - a;
    manual += b - a;
    a = now_us();
    if ((rc = store_request_issue(s, id, &cn, "coapd", &cid)) != EST_OK)
      die("issue", rc, s);
    b = now_us();
    t[OP_ISSUE][i] = b - a;
    manual += b - a;
    /* A later retry: lookup finds it issued. */
    a = now_us();
    rc = store_request_lookup(s, rq.spki_sha256, rq.client_fp, rq.function,
                              (int64_t)time(NULL), &out);
    b = now_us();
    store_request_clear(&out);
    if (rc != EST_OK)
      die("lookup issued", rc, s);
    manual += b - a;
    t[OP_MANUAL][i] = manual;

    /* Auto policy: one write. */
    rq.function = STORE_FN_SREN;
    snprintf(serial, sizeof serial, "%016x%08x", (unsigned)i, 0xdcbau);
    a = now_us();
    if ((rc = store_issue_direct(s, &rq, &cn, "coapd", NULL, NULL)) != EST_OK)
      die("issue_direct", rc, s);
    b = now_us();
    t[OP_DIRECT][i] = b - a;

    int rows = 0;
    int64_t max = 0;
    if ((rc = store_audit_max_id(s, &max)) != EST_OK)
      die("audit max", rc, s);
    a = now_us();
    if ((rc = store_audit_since(s, max > 10 ? max - 10 : 0, 10, audit_cb,
                                &rows)) != EST_OK)
      die("audit since", rc, s);
    b = now_us();
    t[OP_AUDIT][i] = b - a;
  }

  printf("synchronous=%s, %d enrollments, %s\n", normal ? "NORMAL" : "FULL", n,
         path);
  printf("  %-44s %9s %9s %9s\n", "operation", "mean us", "median us",
         "p90 us");
  for (int k = 0; k < OP__MAX; k++) {
    double sum = 0;
    for (int i = 0; i < n; i++)
      sum += t[k][i];
    qsort(t[k], (size_t)n, sizeof(double), cmp_double);
    printf("  %-44s %9.1f %9.1f %9.1f\n", op_names[k], sum / n, t[k][n / 2],
           t[k][(n * 9) / 10]);
    free(t[k]);
  }
  store_close(s);
  unlink(path);
  char side[4200];
  snprintf(side, sizeof side, "%s-wal", path);
  unlink(side);
  snprintf(side, sizeof side, "%s-shm", path);
  unlink(side);
}

int main(int argc, char **argv) {
  const char *dir = argc > 1 ? argv[1] : "/var/tmp";
  int n = argc > 2 ? atoi(argv[2]) : 300;
  if (n < 10) {
    fprintf(stderr, "usage: store_bench [DIR [N>=10]]\n");
    return 2;
  }
  printf("store_bench: SQLite WAL, %s\n", dir);
  run(dir, n, false);
  run(dir, n, true);
  return 0;
}
