/* Test helper for tests/integration/estctl.sh: fills an est-coaps database
 * through the store API the way coapd's EST plugin will (which does not
 * create pending requests yet). Creates the database if needed.
 *
 *   seed_store DB pending N [TTL]   N pending requests (new keys each time),
 *                                   subjects CN=dev-NNNN; prints the ids
 *   seed_store DB issued SERIAL     an auto-issued request + certificate;
 *                                   prints the request id
 *   seed_store DB issue ID SERIAL   issue approved request ID (the device
 *                                   came back)
 *   seed_store DB expire SECONDS    run expiry as if SECONDS had passed;
 *                                   prints how many expired
 *
 * Exit 0 on success, 1 with the store's message otherwise. */
#define _POSIX_C_SOURCE 200809L

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "store/store.h"

static uint8_t der[256];

/* A fresh retry key each run: the key only has to be unique. */
static void fill_key(store_request_new *r, int64_t n) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  uint64_t seed = (uint64_t)ts.tv_sec * 1000000007u + (uint64_t)ts.tv_nsec +
                  (uint64_t)getpid() * 2654435761u + (uint64_t)n * 7919u;
  for (size_t i = 0; i < sizeof r->spki_sha256; i++) {
    seed = seed * 6364136223846793005u + 1442695040888963407u;
    r->spki_sha256[i] = (uint8_t)(seed >> 56);
    r->client_fp[i] = (uint8_t)(seed >> 48);
  }
}

static store_request_new request(int64_t n, const char *subject, int64_t ttl) {
  store_request_new r;
  memset(&r, 0, sizeof r);
  r.function = STORE_FN_SEN;
  fill_key(&r, n);
  r.client = "CN=idevid-0001,serialNumber=0001,O=Test Manufacturer";
  r.client_class = STORE_CLIENT_IDEVID;
  r.subject = subject;
  memset(der, 0x30, sizeof der);
  r.csr = der;
  r.csr_len = sizeof der;
  r.ttl = ttl;
  r.initial_state = STORE_REQ_PENDING;
  return r;
}

static store_cert_new certificate(const char *serial, const char *subject) {
  store_cert_new c;
  memset(&c, 0, sizeof c);
  c.serial = serial;
  c.subject = subject;
  c.client = "CN=idevid-0001,serialNumber=0001,O=Test Manufacturer";
  c.not_before = (int64_t)time(NULL);
  c.not_after = c.not_before + 365 * 86400;
  c.der = der;
  c.der_len = sizeof der;
  return c;
}

static int usage(void) {
  fputs("usage: seed_store DB pending N [TTL] | issued SERIAL | issue ID SERIAL"
        " | expire SECONDS\n",
        stderr);
  return 2;
}

int main(int argc, char **argv) {
  store_options o;
  store *s = NULL;
  char diag[512], subject[64];
  est_err rc = EST_OK;
  if (argc < 4)
    return usage();
  store_options_init(&o);
  o.create = true;
  if ((rc = store_open(argv[1], &o, &s, diag, sizeof diag)) != EST_OK) {
    fprintf(stderr, "seed_store: %s\n", diag);
    return 1;
  }
  const char *cmd = argv[2];
  if (strcmp(cmd, "pending") == 0) {
    long n = strtol(argv[3], NULL, 10);
    int64_t ttl = argc > 4 ? strtoll(argv[4], NULL, 10) : 86400;
    for (long i = 0; i < n && rc == EST_OK; i++) {
      int64_t id = 0;
      snprintf(subject, sizeof subject, "CN=dev-%04ld", i + 1);
      store_request_new r = request(i, subject, ttl);
      if ((rc = store_request_create(s, &r, "coapd", &id)) == EST_OK)
        printf("%" PRId64 "\n", id);
    }
  } else if (strcmp(cmd, "issued") == 0) {
    int64_t rid = 0;
    snprintf(subject, sizeof subject, "CN=auto-%.32s", argv[3]);
    store_request_new r = request(0, subject, 0);
    store_cert_new c = certificate(argv[3], subject);
    if ((rc = store_issue_direct(s, &r, &c, "coapd", &rid, NULL)) == EST_OK)
      printf("%" PRId64 "\n", rid);
  } else if (strcmp(cmd, "issue") == 0 && argc > 4) {
    store_request q = {0};
    if ((rc = store_request_get(s, strtoll(argv[3], NULL, 10), &q)) == EST_OK) {
      store_cert_new c = certificate(argv[4], q.subject);
      rc = store_request_issue(s, q.id, &c, "coapd", NULL);
    }
    store_request_clear(&q);
  } else if (strcmp(cmd, "expire") == 0) {
    size_t n = 0;
    int64_t ahead = strtoll(argv[3], NULL, 10);
    if ((rc = store_expire(s, (int64_t)time(NULL) + ahead, &n)) == EST_OK)
      printf("%zu\n", n);
  } else {
    store_close(s);
    return usage();
  }
  if (rc != EST_OK)
    fprintf(stderr, "seed_store: %s: %s\n", est_strerror(rc), store_errmsg(s));
  store_close(s);
  return rc == EST_OK ? 0 : 1;
}
