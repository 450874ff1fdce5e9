/* The operator command layer (control/ctl.h): ctl_run_envelope() on
 * arbitrary input, as the broker plugin runs it on a $CONTROL message,
 * against a real temporary database created once and seeded with pending,
 * issued and pre-authorised rows. may_write is true, so the write commands
 * run too and the state drifts from input to input, as in a broker.
 *
 * Checked on every input: the reply is valid JSON {"responses":[...]}, with
 * at most CTL_CMDS_MAX responses, each with a string "command" and exactly
 * one of "data" (an object) and "error" (a string). */
#define _POSIX_C_SOURCE 200809L

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "control/ctl.h"
#include "store/store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* One database for the whole run; removed at exit. */
static struct {
  char dir[64];
  char path[128];
  store *s;
  ctl_ctx ctx;
} fz;

static void fz_cleanup(void) {
  static const char *const suffix[] = {"", "-wal", "-shm", "-journal"};
  char p[160];
  store_close(fz.s);
  fz.s = NULL;
  for (size_t i = 0; i < sizeof suffix / sizeof suffix[0]; i++) {
    snprintf(p, sizeof p, "%s%s", fz.path, suffix[i]);
    unlink(p);
  }
  rmdir(fz.dir);
}

static void fz_seed(void) {
  static uint8_t blob[128];
  memset(blob, 0x30, sizeof blob);
  for (int k = 0; k < 6; k++) {
    store_request_new r;
    memset(&r, 0, sizeof r);
    r.function = (store_fn)(k % STORE_FN__MAX);
    memset(r.spki_sha256, 0x10 + k, sizeof r.spki_sha256);
    memset(r.client_fp, 0x80 + k, sizeof r.client_fp);
    r.client = "CN=idevid-0001,O=Maker";
    r.client_class = (store_client_class)(k % STORE_CLIENT__MAX);
    r.subject = "CN=dev-0001";
    r.csr = blob;
    r.csr_len = sizeof blob;
    r.ttl = k == 5 ? 0 : 3600;
    r.initial_state = STORE_REQ_PENDING;
    if (k < 4) {
      if (store_request_create(fz.s, &r, "coapd", NULL) != EST_OK)
        abort();
    } else {
      store_cert_new c;
      char serial[8];
      memset(&c, 0, sizeof c);
      snprintf(serial, sizeof serial, "0a1b%02x", k);
      c.serial = serial;
      c.subject = r.subject;
      c.der = blob;
      c.der_len = sizeof blob;
      if (store_issue_direct(fz.s, &r, &c, "coapd", NULL, NULL) != EST_OK)
        abort();
    }
  }
  if (store_preauth_add(fz.s, STORE_PREAUTH_SUBJECT, "CN=pre", "seed", "alice",
                        NULL) != EST_OK)
    abort();
}

static void fz_init(void) {
  store_options o;
  char diag[256];
  snprintf(fz.dir, sizeof fz.dir, "%s/fuzz_ctl.XXXXXX",
           getenv("TMPDIR") != NULL && strlen(getenv("TMPDIR")) < 32
             ? getenv("TMPDIR")
             : "/tmp");
  if (mkdtemp(fz.dir) == NULL) {
    perror("fuzz_ctl: mkdtemp");
    abort();
  }
  snprintf(fz.path, sizeof fz.path, "%s/est.db", fz.dir);
  store_options_init(&o);
  o.create = true;
  o.busy_timeout_ms = 0;
  /* Speed: no fsync per write; durability is not under test here. */
  o.synchronous_normal = true;
  if (store_open(fz.path, &o, &fz.s, diag, sizeof diag) != EST_OK) {
    fprintf(stderr, "fuzz_ctl: %s\n", diag);
    abort();
  }
  atexit(fz_cleanup);
  fz_seed();
  fz.ctx.s = fz.s;
  fz.ctx.actor = "fuzz";
  fz.ctx.may_write = true;
}

static void check_reply(const char *reply) {
  cJSON *root = cJSON_Parse(reply);
  const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "responses"), *r;
  if (root == NULL || !cJSON_IsArray(arr) ||
      cJSON_GetArraySize(arr) > (int)CTL_CMDS_MAX)
    abort();
  cJSON_ArrayForEach(r, arr) {
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(r, "data");
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(r, "error");
    if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(r, "command")))
      abort();
    if ((d == NULL) == (e == NULL))
      abort();
    if (d != NULL && !cJSON_IsObject(d))
      abort();
    if (e != NULL && (!cJSON_IsString(e) || e->valuestring[0] == '\0'))
      abort();
  }
  cJSON_Delete(root);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (fz.s == NULL)
    fz_init();
  char *reply = ctl_run_envelope(&fz.ctx, (const char *)data, size);
  if (reply == NULL)
    abort(); /* only when out of memory */
  check_reply(reply);
  cJSON_free(reply);
  return 0;
}
