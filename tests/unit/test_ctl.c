/* The operator command layer (control/ctl.h) against a real temporary
 * database: every command's success and error paths, strict types,
 * may_write refusals, correlationData, envelope parsing and caps, the JSON
 * shapes, and the events for each audit action. Every error response is
 * checked to carry no "data". */
#define _POSIX_C_SOURCE 200809L

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "control/ctl.h"
#include "store/store.h"
#include "test_db.h"

/* 2026-11-27T18:00:00Z */
#define T0 1795802400
#define T0_ISO "2026-11-27T18:00:00Z"
#define TTL 3600

static int64_t fake_now = T0;
static int64_t fake_clock(void *ctx) {
  (void)ctx;
  return fake_now;
}

typedef struct fx {
  char dir[TEST_DB_DIR_MAX];
  char path[TEST_DB_PATH_MAX];
  store *s;
  ctl_ctx ctx;
} fx;

static int setup(void **state) {
  fx *f = calloc(1, sizeof *f);
  if (f == NULL)
    return -1;
  fake_now = T0;
  if (test_db_open("test_ctl", f->dir, f->path, fake_clock, &f->s) != 0)
    return -1;
  f->ctx.s = f->s;
  f->ctx.actor = "alice";
  f->ctx.may_write = true;
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fx *f = *state;
  store_close(f->s);
  test_db_remove(f->dir, f->path);
  free(f);
  return 0;
}

/* ------------------------------------------------------------ seeding */

static uint8_t csr[300];

static store_request_new req_new(int k, int64_t ttl) {
  store_request_new r;
  memset(&r, 0, sizeof r);
  r.function = STORE_FN_SEN;
  memset(r.spki_sha256, 0x10 + k, sizeof r.spki_sha256);
  memset(r.client_fp, 0x80 + k, sizeof r.client_fp);
  r.client = "CN=idevid-0001,O=Maker";
  r.client_class = STORE_CLIENT_IDEVID;
  r.subject = "CN=dev-0001";
  memset(csr, 0x30, sizeof csr);
  r.csr = csr;
  r.csr_len = sizeof csr;
  r.ttl = ttl;
  r.initial_state = STORE_REQ_PENDING;
  return r;
}

static int64_t seed_pending(fx *f, int k) {
  store_request_new r = req_new(k, TTL);
  int64_t id = 0;
  assert_int_equal(store_request_create(f->s, &r, "coapd", &id), EST_OK);
  return id;
}

static uint8_t der[200];

static int64_t seed_issued(fx *f, int k, const char *serial) {
  store_request_new r = req_new(k, 0);
  store_cert_new c;
  int64_t rid = 0;
  memset(&c, 0, sizeof c);
  memset(der, 0x30, sizeof der);
  c.serial = serial;
  c.subject = "CN=dev-0001";
  c.client = "CN=idevid-0001,O=Maker";
  c.not_before = T0;
  c.not_after = T0 + 86400;
  c.der = der;
  c.der_len = sizeof der;
  assert_int_equal(store_issue_direct(f->s, &r, &c, "coapd", &rid, NULL),
                   EST_OK);
  return rid;
}

static int64_t audit_count(fx *f) {
  int64_t id = 0;
  assert_int_equal(store_audit_max_id(f->s, &id), EST_OK);
  return id;
}

/* ------------------------------------------------------------ running */

/* Run the command in JSON text @p text; *err gets ctl_run's est_err. */
static cJSON *run_text(fx *f, const char *text, est_err *err) {
  cJSON *cmd = cJSON_Parse(text);
  assert_non_null(cmd);
  cJSON *r = ctl_run(&f->ctx, cmd, err);
  cJSON_Delete(cmd);
  assert_non_null(r);
  return r;
}

/* The response must succeed: "data" is an object, no "error". Returns data
 * (owned by @p r). */
static cJSON *expect_ok(cJSON *r, const char *command) {
  const cJSON *cmd = cJSON_GetObjectItemCaseSensitive(r, "command");
  const cJSON *e = cJSON_GetObjectItemCaseSensitive(r, "error");
  if (e != NULL)
    fail_msg("unexpected error: %s", cJSON_IsString(e) ? e->valuestring : "?");
  assert_true(cJSON_IsString(cmd));
  assert_string_equal(cmd->valuestring, command);
  cJSON *d = cJSON_GetObjectItemCaseSensitive(r, "data");
  assert_true(cJSON_IsObject(d));
  return d;
}

/* The response must fail with an error text containing @p needle, and must
 * not carry "data". */
static void expect_error(const cJSON *r, const char *needle) {
  const cJSON *e = cJSON_GetObjectItemCaseSensitive(r, "error");
  assert_null(cJSON_GetObjectItemCaseSensitive(r, "data"));
  assert_true(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(r, "command")));
  if (!cJSON_IsString(e))
    fail_msg("expected error '%s', got success", needle);
  if (strstr(e->valuestring, needle) == NULL)
    fail_msg("error '%s' does not contain '%s'", e->valuestring, needle);
}

/* Run, expect an error with @p needle and est_err @p code. */
static void check_error(fx *f, const char *text, est_err code,
                        const char *needle) {
  est_err err = EST_OK;
  cJSON *r = run_text(f, text, &err);
  expect_error(r, needle);
  if (err != code)
    fail_msg("%s: est_err %s, expected %s", text, est_err_name(err),
             est_err_name(code));
  cJSON_Delete(r);
}

/* The object's members must be exactly the comma-separated @p keys. */
static void assert_keys(const cJSON *o, const char *keys) {
  char buf[512], *save = NULL;
  int want = 0, have = 0;
  const cJSON *it;
  assert_true(cJSON_IsObject(o));
  snprintf(buf, sizeof buf, "%s", keys);
  for (char *k = strtok_r(buf, ",", &save); k != NULL;
       k = strtok_r(NULL, ",", &save)) {
    if (cJSON_GetObjectItemCaseSensitive(o, k) == NULL)
      fail_msg("member '%s' missing", k);
    want++;
  }
  cJSON_ArrayForEach(it, o) have++;
  if (have != want) {
    char *t = cJSON_PrintUnformatted(o);
    fail_msg("%d members, expected %d (%s): %s", have, want, keys, t);
  }
}

static const char *str(const cJSON *o, const char *name) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
  if (!cJSON_IsString(v))
    fail_msg("member '%s' is not a string", name);
  return v->valuestring;
}

static double num(const cJSON *o, const char *name) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
  if (!cJSON_IsNumber(v))
    fail_msg("member '%s' is not a number", name);
  return v->valuedouble;
}

static bool is_null(const cJSON *o, const char *name) {
  return cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(o, name));
}

#define REQUEST_KEYS                                                           \
  "id,state,function,subject,client,clientClass,created,updated,expires,"     \
  "reason,certSerial,clientSerial,clientFingerprint,ra,sans,keyType,keyBits,"     \
  "keyCurve"
#define CERT_KEYS                                                              \
  "serial,subject,client,notBefore,notAfter,requestId,revoked,revokedAt,"     \
  "revokeReason,created"
#define PREAUTH_KEYS "id,kind,value,note,created,actor,idevid"
#define AUDIT_KEYS "id,time,actor,action,requestId,serial,detail"

/* ------------------------------------------------------------ tests */

static void test_time_iso(void **state) {
  char buf[32];
  (void)state;
  ctl_time_iso(0, buf, sizeof buf);
  assert_string_equal(buf, "1970-01-01T00:00:00Z");
  ctl_time_iso(T0, buf, sizeof buf);
  assert_string_equal(buf, T0_ISO);
  ctl_time_iso(-1, buf, sizeof buf);
  assert_string_equal(buf, "1969-12-31T23:59:59Z");
  ctl_time_iso(INT64_MAX, buf, sizeof buf);
  assert_string_equal(buf, "9999-12-31T23:59:59Z");
  ctl_time_iso(INT64_MIN, buf, sizeof buf);
  assert_string_equal(buf, "0000-01-01T00:00:00Z");
  ctl_time_iso(T0, buf, 21);
  assert_string_equal(buf, T0_ISO);
  ctl_time_iso(T0, buf, 5); /* truncated, still terminated */
  assert_string_equal(buf, "2026");
  ctl_time_iso(T0, NULL, 0);
}

static void test_views(void **state) {
  (void)state;
  assert_null(ctl_request_json(NULL));
  assert_null(ctl_cert_json(NULL));
  assert_null(ctl_preauth_json(NULL));
  assert_null(ctl_audit_json(NULL));
  assert_null(ctl_event(NULL, NULL));

  store_request r;
  memset(&r, 0, sizeof r);
  r.id = 3;
  r.state = STORE_REQ_REJECTED;
  r.function = STORE_FN_SKG;
  r.subject = (char *)"CN=a";
  r.client = (char *)"CN=b";
  r.client_class = STORE_CLIENT_UNKNOWN;
  r.reason = (char *)"no";
  r.created = T0;
  r.updated = T0 + 1;
  r.expires = 0;
  cJSON *o = ctl_request_json(&r);
  assert_keys(o, REQUEST_KEYS);
  assert_int_equal((int)num(o, "id"), 3);
  assert_string_equal(str(o, "state"), "rejected");
  assert_string_equal(str(o, "function"), "skg");
  assert_true(is_null(o, "clientClass"));
  assert_true(is_null(o, "expires"));
  assert_true(is_null(o, "certSerial"));
  assert_string_equal(str(o, "reason"), "no");
  assert_string_equal(str(o, "created"), T0_ISO);
  assert_string_equal(str(o, "updated"), "2026-11-27T18:00:01Z");
  cJSON_Delete(o);
}

static void test_list_requests(void **state) {
  fx *f = *state;
  est_err err;
  cJSON *r = run_text(f, "{\"command\":\"listRequests\"}", &err);
  cJSON *d = expect_ok(r, "listRequests");
  assert_int_equal(err, EST_OK);
  assert_keys(d, "requests");
  assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(d, "requests")), 0);
  cJSON_Delete(r);

  int64_t p1 = seed_pending(f, 1);
  int64_t is = seed_issued(f, 2, "0A1B2C");
  int64_t p2 = seed_pending(f, 3);
  assert_int_equal(store_request_decide(f->s, p2, false, "bad", "bob"), EST_OK);

  r = run_text(f, "{\"command\":\"listRequests\"}", &err);
  d = expect_ok(r, "listRequests");
  cJSON *list = cJSON_GetObjectItem(d, "requests");
  assert_int_equal(cJSON_GetArraySize(list), 3);
  cJSON *a = cJSON_GetArrayItem(list, 0), *b = cJSON_GetArrayItem(list, 1),
        *c = cJSON_GetArrayItem(list, 2);
  assert_keys(a, REQUEST_KEYS);
  assert_keys(b, REQUEST_KEYS);
  assert_keys(c, REQUEST_KEYS);
  assert_int_equal((int64_t)num(a, "id"), p1);
  assert_string_equal(str(a, "state"), "pending");
  assert_string_equal(str(a, "function"), "sen");
  assert_string_equal(str(a, "subject"), "CN=dev-0001");
  assert_string_equal(str(a, "client"), "CN=idevid-0001,O=Maker");
  assert_string_equal(str(a, "clientClass"), "idevid");
  assert_string_equal(str(a, "created"), T0_ISO);
  assert_string_equal(str(a, "expires"), "2026-11-27T19:00:00Z");
  assert_true(is_null(a, "reason"));
  assert_true(is_null(a, "certSerial"));
  assert_int_equal((int64_t)num(b, "id"), is);
  assert_string_equal(str(b, "state"), "issued");
  assert_string_equal(str(b, "certSerial"), "0a1b2c");
  assert_true(is_null(b, "expires"));
  assert_string_equal(str(c, "state"), "rejected");
  assert_string_equal(str(c, "reason"), "bad");
  cJSON_Delete(r);

  r = run_text(f, "{\"command\":\"listRequests\",\"state\":\"issued\"}", &err);
  d = expect_ok(r, "listRequests");
  list = cJSON_GetObjectItem(d, "requests");
  assert_int_equal(cJSON_GetArraySize(list), 1);
  assert_string_equal(str(cJSON_GetArrayItem(list, 0), "certSerial"), "0a1b2c");
  cJSON_Delete(r);

  r = run_text(f, "{\"command\":\"listRequests\",\"state\":\"expired\"}", &err);
  d = expect_ok(r, "listRequests");
  assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(d, "requests")), 0);
  cJSON_Delete(r);

  check_error(f, "{\"command\":\"listRequests\",\"state\":\"done\"}",
              EST_ERR_INVALID, "state must be one of");
  check_error(f, "{\"command\":\"listRequests\",\"state\":1}", EST_ERR_INVALID,
              "state must be a string");
  check_error(f, "{\"command\":\"listRequests\",\"state\":null}",
              EST_ERR_INVALID, "state must be a string");
  check_error(f, "{\"command\":\"listRequests\",\"state\":\"PENDING\"}",
              EST_ERR_INVALID, "state must be one of");
}

static void test_get_request(void **state) {
  fx *f = *state;
  est_err err;
  int64_t id = seed_pending(f, 1);
  char text[128];
  fake_now = T0 + 60;
  assert_int_equal(store_request_decide(f->s, id, true, NULL, "bob"), EST_OK);

  snprintf(text, sizeof text, "{\"command\":\"getRequest\",\"id\":%" PRId64 "}",
           id);
  cJSON *r = run_text(f, text, &err);
  cJSON *d = expect_ok(r, "getRequest");
  assert_keys(d, "request,audit");
  cJSON *q = cJSON_GetObjectItem(d, "request");
  assert_keys(q, REQUEST_KEYS);
  assert_string_equal(str(q, "state"), "approved");
  assert_string_equal(str(q, "updated"), "2026-11-27T18:01:00Z");
  /* The decision restarted the TTL. */
  assert_string_equal(str(q, "expires"), "2026-11-27T19:01:00Z");
  cJSON *trail = cJSON_GetObjectItem(d, "audit");
  assert_int_equal(cJSON_GetArraySize(trail), 2);
  cJSON *a0 = cJSON_GetArrayItem(trail, 0), *a1 = cJSON_GetArrayItem(trail, 1);
  assert_keys(a0, AUDIT_KEYS);
  /* Oldest first. */
  assert_string_equal(str(a0, "action"), "pending");
  assert_string_equal(str(a0, "actor"), "coapd");
  assert_int_equal((int64_t)num(a0, "requestId"), id);
  assert_true(is_null(a0, "serial"));
  assert_string_equal(str(a1, "action"), "approved");
  assert_string_equal(str(a1, "actor"), "bob");
  assert_string_equal(str(a1, "time"), "2026-11-27T18:01:00Z");
  cJSON_Delete(r);

  /* An issued one carries its serial, and its audit row the serial too. */
  int64_t is = seed_issued(f, 2, "FF01");
  snprintf(text, sizeof text, "{\"command\":\"getRequest\",\"id\":%" PRId64 "}",
           is);
  r = run_text(f, text, &err);
  d = expect_ok(r, "getRequest");
  assert_string_equal(str(cJSON_GetObjectItem(d, "request"), "certSerial"),
                      "ff01");
  trail = cJSON_GetObjectItem(d, "audit");
  assert_int_equal(cJSON_GetArraySize(trail), 1);
  assert_string_equal(str(cJSON_GetArrayItem(trail, 0), "serial"), "ff01");
  assert_string_equal(str(cJSON_GetArrayItem(trail, 0), "detail"), "direct");
  cJSON_Delete(r);

  check_error(f, "{\"command\":\"getRequest\",\"id\":42}", EST_ERR_NOT_FOUND,
              "id 42: no such request");
  check_error(f, "{\"command\":\"getRequest\"}", EST_ERR_INVALID,
              "id is required");
  static const char *const bad_ids[] = {
    "1.5", "\"7\"", "-1", "0", "1e300", "true", "null", "[1]", "{}",
    "9007199254740992", "-0",
  };
  for (size_t i = 0; i < sizeof bad_ids / sizeof bad_ids[0]; i++) {
    snprintf(text, sizeof text, "{\"command\":\"getRequest\",\"id\":%s}",
             bad_ids[i]);
    check_error(f, text, EST_ERR_INVALID, "id must be a positive integer");
  }
  /* 1e0 is the integer 1, written differently. */
  r = run_text(f, "{\"command\":\"getRequest\",\"id\":1e0}", &err);
  expect_ok(r, "getRequest");
  cJSON_Delete(r);
}

static void test_approve(void **state) {
  fx *f = *state;
  est_err err;
  char text[256];
  int64_t id = seed_pending(f, 1), before;

  snprintf(text, sizeof text,
           "{\"command\":\"approveRequest\",\"id\":%" PRId64
           ",\"reason\":\"known device\",\"extra\":[1,2]}",
           id);
  before = audit_count(f);
  fake_now = T0 + 5;
  cJSON *r = run_text(f, text, &err);
  cJSON *d = expect_ok(r, "approveRequest");
  assert_int_equal(err, EST_OK);
  assert_keys(d, "request");
  cJSON *q = cJSON_GetObjectItem(d, "request");
  assert_keys(q, REQUEST_KEYS);
  assert_int_equal((int64_t)num(q, "id"), id);
  assert_string_equal(str(q, "state"), "approved");
  assert_string_equal(str(q, "reason"), "known device");
  assert_string_equal(str(q, "updated"), "2026-11-27T18:00:05Z");
  cJSON_Delete(r);
  assert_int_equal(audit_count(f), before + 1);

  /* The audit row has our actor. */
  r = run_text(f, "{\"command\":\"listAudit\",\"limit\":1}", &err);
  d = expect_ok(r, "listAudit");
  cJSON *a = cJSON_GetArrayItem(cJSON_GetObjectItem(d, "audit"), 0);
  assert_string_equal(str(a, "actor"), "alice");
  assert_string_equal(str(a, "action"), "approved");
  assert_string_equal(str(a, "detail"), "known device");
  cJSON_Delete(r);

  snprintf(text, sizeof text,
           "{\"command\":\"approveRequest\",\"id\":%" PRId64 "}", id);
  char want[64];
  snprintf(want, sizeof want, "request %" PRId64 " is approved, not pending",
           id);
  check_error(f, text, EST_ERR_STATE, want);
  check_error(f, "{\"command\":\"approveRequest\",\"id\":999}",
              EST_ERR_NOT_FOUND, "id 999: no such request");
  check_error(f, "{\"command\":\"approveRequest\",\"id\":\"1\"}",
              EST_ERR_INVALID, "id must be a positive integer");
  check_error(f, "{\"command\":\"approveRequest\"}", EST_ERR_INVALID,
              "id is required");

  /* Reason optional but typed; an empty one means none. */
  int64_t id2 = seed_pending(f, 2);
  snprintf(text, sizeof text,
           "{\"command\":\"approveRequest\",\"id\":%" PRId64 ",\"reason\":5}",
           id2);
  check_error(f, text, EST_ERR_INVALID, "reason must be a string");
  char *big = malloc(STORE_MAX_TEXT + 100);
  assert_non_null(big);
  memset(big, 'x', STORE_MAX_TEXT + 1);
  big[STORE_MAX_TEXT + 1] = '\0';
  cJSON *cmd = cJSON_CreateObject();
  cJSON_AddStringToObject(cmd, "command", "approveRequest");
  cJSON_AddNumberToObject(cmd, "id", (double)id2);
  cJSON_AddStringToObject(cmd, "reason", big);
  r = ctl_run(&f->ctx, cmd, &err);
  expect_error(r, "reason is longer than 1024 bytes");
  assert_int_equal(err, EST_ERR_TOO_LARGE);
  cJSON_Delete(r);
  /* Exactly at the cap is fine. */
  big[STORE_MAX_TEXT] = '\0';
  cJSON_ReplaceItemInObject(cmd, "reason", cJSON_CreateString(big));
  r = ctl_run(&f->ctx, cmd, &err);
  expect_ok(r, "approveRequest");
  cJSON_Delete(r);
  cJSON_Delete(cmd);
  free(big);

  /* Strings must be well-formed UTF-8. */
  static const char *const bad_utf8[] = {
    "\xff", "a\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe2\x82",
    "\xc3",
  };
  for (size_t i = 0; i < sizeof bad_utf8 / sizeof bad_utf8[0]; i++) {
    snprintf(text, sizeof text,
             "{\"command\":\"approveRequest\",\"id\":%" PRId64
             ",\"reason\":\"%s\"}",
             id2, bad_utf8[i]);
    check_error(f, text, EST_ERR_INVALID, "reason is not valid UTF-8");
  }
  int64_t id5 = seed_pending(f, 5);
  snprintf(text, sizeof text,
           "{\"command\":\"approveRequest\",\"id\":%" PRId64
           ",\"reason\":\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \\u00e9\"}",
           id5);
  r = run_text(f, text, &err);
  d = expect_ok(r, "approveRequest");
  assert_string_equal(str(cJSON_GetObjectItem(d, "request"), "reason"),
                      "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xc3\xa9");
  cJSON_Delete(r);

  int64_t id3 = seed_pending(f, 3);
  snprintf(text, sizeof text,
           "{\"command\":\"approveRequest\",\"id\":%" PRId64 ",\"reason\":\"\"}",
           id3);
  r = run_text(f, text, &err);
  d = expect_ok(r, "approveRequest");
  assert_true(is_null(cJSON_GetObjectItem(d, "request"), "reason"));
  cJSON_Delete(r);

  /* Too late: the TTL passed while pending. */
  int64_t id4 = seed_pending(f, 4);
  fake_now += TTL + 1;
  snprintf(text, sizeof text,
           "{\"command\":\"approveRequest\",\"id\":%" PRId64 "}", id4);
  snprintf(want, sizeof want, "request %" PRId64 " has expired", id4);
  check_error(f, text, EST_ERR_STATE, want);
}

static void test_reject(void **state) {
  fx *f = *state;
  est_err err;
  char text[256];
  int64_t id = seed_pending(f, 1);

  snprintf(text, sizeof text,
           "{\"command\":\"rejectRequest\",\"id\":%" PRId64 "}", id);
  check_error(f, text, EST_ERR_INVALID, "reason is required");
  snprintf(text, sizeof text,
           "{\"command\":\"rejectRequest\",\"id\":%" PRId64 ",\"reason\":\"\"}",
           id);
  check_error(f, text, EST_ERR_INVALID, "reason must not be empty");
  snprintf(text, sizeof text,
           "{\"command\":\"rejectRequest\",\"id\":%" PRId64
           ",\"reason\":[\"x\"]}",
           id);
  check_error(f, text, EST_ERR_INVALID, "reason must be a string");

  snprintf(text, sizeof text,
           "{\"command\":\"rejectRequest\",\"id\":%" PRId64
           ",\"reason\":\"unknown device\"}",
           id);
  cJSON *r = run_text(f, text, &err);
  cJSON *q = cJSON_GetObjectItem(expect_ok(r, "rejectRequest"), "request");
  assert_string_equal(str(q, "state"), "rejected");
  assert_string_equal(str(q, "reason"), "unknown device");
  cJSON_Delete(r);

  char want[64];
  snprintf(want, sizeof want, "request %" PRId64 " is rejected, not pending",
           id);
  check_error(f, text, EST_ERR_STATE, want);
  check_error(f,
              "{\"command\":\"rejectRequest\",\"id\":7,\"reason\":\"x\"}",
              EST_ERR_NOT_FOUND, "id 7: no such request");
}

static const char fp_upper[] =
  "00112233445566778899AABBCCDDEEFF00112233445566778899AABBCCDDEEFF";
static const char fp_lower[] =
  "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

static void test_preauth(void **state) {
  fx *f = *state;
  est_err err;
  char text[512];

  cJSON *r = run_text(f, "{\"command\":\"listPreauth\"}", &err);
  cJSON *d = expect_ok(r, "listPreauth");
  assert_keys(d, "preauth");
  assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(d, "preauth")), 0);
  cJSON_Delete(r);

  r = run_text(f,
               "{\"command\":\"addPreauth\",\"kind\":\"subject\",\"value\":"
               "\"CN=dev-0002,O=Acme\",\"note\":\"ticket 12\"}",
               &err);
  d = expect_ok(r, "addPreauth");
  assert_keys(d, "preauth");
  cJSON *p = cJSON_GetObjectItem(d, "preauth");
  assert_keys(p, PREAUTH_KEYS);
  assert_string_equal(str(p, "kind"), "subject");
  assert_string_equal(str(p, "value"), "CN=dev-0002,O=Acme");
  assert_string_equal(str(p, "note"), "ticket 12");
  assert_string_equal(str(p, "actor"), "alice");
  assert_string_equal(str(p, "created"), T0_ISO);
  cJSON_Delete(r);

  snprintf(text, sizeof text,
           "{\"command\":\"addPreauth\",\"kind\":\"idevid\",\"value\":\"%s\"}",
           fp_upper);
  r = run_text(f, text, &err);
  p = cJSON_GetObjectItem(expect_ok(r, "addPreauth"), "preauth");
  assert_string_equal(str(p, "value"), fp_lower);
  assert_true(is_null(p, "note"));
  cJSON_Delete(r);
  check_error(f, text, EST_ERR_EXISTS, "is already pre-authorised");
  check_error(f,
              "{\"command\":\"addPreauth\",\"kind\":\"subject\",\"value\":"
              "\"CN=dev-0002,O=Acme\"}",
              EST_ERR_EXISTS, "subject 'CN=dev-0002,O=Acme' is already");

  r = run_text(f, "{\"command\":\"listPreauth\"}", &err);
  cJSON *list = cJSON_GetObjectItem(expect_ok(r, "listPreauth"), "preauth");
  assert_int_equal(cJSON_GetArraySize(list), 2);
  assert_keys(cJSON_GetArrayItem(list, 0), PREAUTH_KEYS);
  assert_keys(cJSON_GetArrayItem(list, 1), PREAUTH_KEYS);
  cJSON_Delete(r);

  /* Type and value errors. */
  check_error(f, "{\"command\":\"addPreauth\",\"value\":\"CN=x\"}",
              EST_ERR_INVALID, "kind is required");
  check_error(f, "{\"command\":\"addPreauth\",\"kind\":\"serial\",\"value\":\"x\"}",
              EST_ERR_INVALID, "kind must be");
  check_error(f, "{\"command\":\"addPreauth\",\"kind\":1,\"value\":\"x\"}",
              EST_ERR_INVALID, "kind must be a string");
  check_error(f, "{\"command\":\"addPreauth\",\"kind\":\"subject\"}",
              EST_ERR_INVALID, "value is required");
  check_error(f, "{\"command\":\"addPreauth\",\"kind\":\"subject\",\"value\":\"\"}",
              EST_ERR_INVALID, "value must not be empty");
  check_error(f,
              "{\"command\":\"addPreauth\",\"kind\":\"idevid\",\"value\":\"abc\"}",
              EST_ERR_INVALID, "64 hex digits");
  check_error(f,
              "{\"command\":\"addPreauth\",\"kind\":\"subject\",\"value\":\"CN=y\","
              "\"note\":false}",
              EST_ERR_INVALID, "note must be a string");

  /* Remove: by the same spelling or another case for idevid. */
  snprintf(text, sizeof text,
           "{\"command\":\"removePreauth\",\"kind\":\"idevid\",\"value\":\"%s\"}",
           fp_lower);
  r = run_text(f, text, &err);
  d = expect_ok(r, "removePreauth");
  assert_keys(d, "");
  cJSON_Delete(r);
  check_error(f, text, EST_ERR_NOT_FOUND, "is not pre-authorised");
  check_error(f,
              "{\"command\":\"removePreauth\",\"kind\":\"subject\",\"value\":"
              "\"CN=nobody\"}",
              EST_ERR_NOT_FOUND, "subject 'CN=nobody' is not pre-authorised");
  check_error(f, "{\"command\":\"removePreauth\",\"kind\":\"subject\"}",
              EST_ERR_INVALID, "value is required");

  /* Audit rows for add and remove, by alice. */
  r = run_text(f, "{\"command\":\"listAudit\"}", &err);
  list = cJSON_GetObjectItem(expect_ok(r, "listAudit"), "audit");
  assert_int_equal(cJSON_GetArraySize(list), 3);
  assert_string_equal(str(cJSON_GetArrayItem(list, 0), "action"),
                      "preauth_remove");
  assert_string_equal(str(cJSON_GetArrayItem(list, 0), "actor"), "alice");
  assert_string_equal(str(cJSON_GetArrayItem(list, 2), "action"), "preauth_add");
  cJSON_Delete(r);
}

static void test_certs_revoke(void **state) {
  fx *f = *state;
  est_err err;
  cJSON *r = run_text(f, "{\"command\":\"listCertificates\"}", &err);
  cJSON *d = expect_ok(r, "listCertificates");
  assert_keys(d, "certificates");
  assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(d, "certificates")),
                   0);
  cJSON_Delete(r);

  int64_t rid = seed_issued(f, 1, "01AB");
  r = run_text(f, "{\"command\":\"listCertificates\"}", &err);
  cJSON *list =
    cJSON_GetObjectItem(expect_ok(r, "listCertificates"), "certificates");
  assert_int_equal(cJSON_GetArraySize(list), 1);
  cJSON *c = cJSON_GetArrayItem(list, 0);
  assert_keys(c, CERT_KEYS);
  assert_string_equal(str(c, "serial"), "01ab");
  assert_string_equal(str(c, "subject"), "CN=dev-0001");
  assert_string_equal(str(c, "client"), "CN=idevid-0001,O=Maker");
  assert_string_equal(str(c, "notBefore"), T0_ISO);
  assert_string_equal(str(c, "notAfter"), "2026-11-28T18:00:00Z");
  assert_int_equal((int64_t)num(c, "requestId"), rid);
  assert_true(cJSON_IsFalse(cJSON_GetObjectItem(c, "revoked")));
  assert_true(is_null(c, "revokedAt"));
  assert_true(is_null(c, "revokeReason"));
  cJSON_Delete(r);

  check_error(f, "{\"command\":\"revokeCertificate\",\"serial\":\"01ab\"}",
              EST_ERR_INVALID, "reason is required");
  check_error(f, "{\"command\":\"revokeCertificate\",\"reason\":\"x\"}",
              EST_ERR_INVALID, "serial is required");
  check_error(f,
              "{\"command\":\"revokeCertificate\",\"serial\":\"xyz\",\"reason\":"
              "\"x\"}",
              EST_ERR_INVALID, "serial must be hex digits");
  check_error(f,
              "{\"command\":\"revokeCertificate\",\"serial\":427,\"reason\":\"x\"}",
              EST_ERR_INVALID, "serial must be a string");
  check_error(f,
              "{\"command\":\"revokeCertificate\",\"serial\":\"0123456789abcdef0123"
              "456789abcdef0123456789abcdef0123456789abcdef0\",\"reason\":\"x\"}",
              EST_ERR_TOO_LARGE, "serial is longer than 64 hex digits");
  check_error(f,
              "{\"command\":\"revokeCertificate\",\"serial\":\"beef\",\"reason\":"
              "\"superseded\"}",
              EST_ERR_NOT_FOUND, "serial beef: no such certificate");
  /* RFC 5280 §5.3.1 names only; removeFromCRL is for delta CRLs. */
  check_error(f,
              "{\"command\":\"revokeCertificate\",\"serial\":\"01ab\",\"reason\":"
              "\"key compromise\"}",
              EST_ERR_INVALID, "'key compromise' is not an RFC 5280 revocation reason");
  check_error(f,
              "{\"command\":\"revokeCertificate\",\"serial\":\"01ab\",\"reason\":"
              "\"removeFromCRL\"}",
              EST_ERR_INVALID, "use one of: unspecified, keyCompromise");

  fake_now = T0 + 600;
  r = run_text(f,
               "{\"command\":\"revokeCertificate\",\"serial\":\"01AB\",\"reason\":"
               "\"KEYCOMPROMISE\"}",
               &err);
  d = expect_ok(r, "revokeCertificate");
  assert_keys(d, "certificate");
  c = cJSON_GetObjectItem(d, "certificate");
  assert_keys(c, CERT_KEYS);
  assert_true(cJSON_IsTrue(cJSON_GetObjectItem(c, "revoked")));
  assert_string_equal(str(c, "revokedAt"), "2026-11-27T18:10:00Z");
  /* Any case in, the RFC spelling kept. */
  assert_string_equal(str(c, "revokeReason"), "keyCompromise");
  cJSON_Delete(r);

  check_error(f,
              "{\"command\":\"revokeCertificate\",\"serial\":\"01ab\",\"reason\":"
              "\"superseded\"}",
              EST_ERR_STATE, "certificate 01ab is already revoked");
  /* Revoked, but coapd has not published a CRL yet. */
  check_error(f, "{\"command\":\"getCrl\"}", EST_ERR_NOT_FOUND,
              "no CRL has been published yet");
}

static void test_list_audit(void **state) {
  fx *f = *state;
  est_err err;
  char text[128];
  int64_t first = 0;
  for (int i = 0; i < 105; i++) {
    int64_t id = seed_pending(f, i);
    if (i == 0)
      first = id;
  }
  assert_int_equal(store_request_decide(f->s, first, false, "no", "bob"), EST_OK);

  cJSON *r = run_text(f, "{\"command\":\"listAudit\"}", &err);
  cJSON *d = expect_ok(r, "listAudit");
  assert_keys(d, "audit");
  cJSON *list = cJSON_GetObjectItem(d, "audit");
  assert_int_equal(cJSON_GetArraySize(list), 100); /* the default */
  cJSON *a = cJSON_GetArrayItem(list, 0);
  assert_keys(a, AUDIT_KEYS);
  assert_string_equal(str(a, "action"), "rejected"); /* newest first */
  assert_string_equal(str(a, "detail"), "no");
  assert_int_equal((int64_t)num(a, "id"), 106);
  cJSON_Delete(r);

  r = run_text(f, "{\"command\":\"listAudit\",\"limit\":1000}", &err);
  assert_int_equal(
    cJSON_GetArraySize(cJSON_GetObjectItem(expect_ok(r, "listAudit"), "audit")),
    106);
  cJSON_Delete(r);
  r = run_text(f, "{\"command\":\"listAudit\",\"limit\":3}", &err);
  assert_int_equal(
    cJSON_GetArraySize(cJSON_GetObjectItem(expect_ok(r, "listAudit"), "audit")),
    3);
  cJSON_Delete(r);

  snprintf(text, sizeof text,
           "{\"command\":\"listAudit\",\"requestId\":%" PRId64 "}", first);
  r = run_text(f, text, &err);
  list = cJSON_GetObjectItem(expect_ok(r, "listAudit"), "audit");
  assert_int_equal(cJSON_GetArraySize(list), 2);
  assert_string_equal(str(cJSON_GetArrayItem(list, 1), "action"), "pending");
  cJSON_Delete(r);

  check_error(f, "{\"command\":\"listAudit\",\"requestId\":5000}",
              EST_ERR_NOT_FOUND, "id 5000: no such request");
  check_error(f, "{\"command\":\"listAudit\",\"requestId\":\"1\"}",
              EST_ERR_INVALID, "requestId must be a positive integer");
  check_error(f, "{\"command\":\"listAudit\",\"limit\":0}", EST_ERR_INVALID,
              "limit must be a positive integer");
  check_error(f, "{\"command\":\"listAudit\",\"limit\":2.5}", EST_ERR_INVALID,
              "limit must be a positive integer");
  check_error(f, "{\"command\":\"listAudit\",\"limit\":10001}",
              EST_ERR_TOO_LARGE, "limit is over 10000");
}

/* Read-only callers may read but not write, and learn nothing else. */
static void test_may_write_false(void **state) {
  fx *f = *state;
  est_err err;
  int64_t id = seed_pending(f, 1);
  seed_issued(f, 2, "aa");
  int64_t before = audit_count(f);
  char text[256];
  f->ctx.may_write = false;

  char approve[96], reject[96];
  snprintf(approve, sizeof approve, "\"id\":%" PRId64, id);
  snprintf(reject, sizeof reject, "\"id\":%" PRId64 ",\"reason\":\"x\"", id);
  const char *const writes[][2] = {
    {"approveRequest", approve},
    {"rejectRequest", reject},
    {"addPreauth", "\"kind\":\"subject\",\"value\":\"CN=x\""},
    {"removePreauth", "\"kind\":\"subject\",\"value\":\"CN=x\""},
    {"revokeCertificate", "\"serial\":\"aa\",\"reason\":\"x\""},
    /* Refused before the arguments are looked at. */
    {"approveRequest", "\"id\":\"junk\""},
  };
  for (size_t i = 0; i < sizeof writes / sizeof writes[0]; i++) {
    char want[64];
    snprintf(text, sizeof text, "{\"command\":\"%s\",%s}", writes[i][0],
             writes[i][1]);
    snprintf(want, sizeof want, "not authorised to run %s", writes[i][0]);
    check_error(f, text, EST_ERR_FORBIDDEN, want);
  }
  assert_int_equal(audit_count(f), before);

  static const char *const reads[] = {
    "{\"command\":\"listRequests\"}", "{\"command\":\"getRequest\",\"id\":1}",
    "{\"command\":\"listPreauth\"}", "{\"command\":\"listCertificates\"}",
    "{\"command\":\"listAudit\"}",
  };
  for (size_t i = 0; i < sizeof reads / sizeof reads[0]; i++) {
    cJSON *r = run_text(f, reads[i], &err);
    assert_null(cJSON_GetObjectItem(r, "error"));
    assert_int_equal(err, EST_OK);
    cJSON_Delete(r);
  }

  /* A writer without an actor is refused too. */
  f->ctx.may_write = true;
  f->ctx.actor = "";
  snprintf(text, sizeof text,
           "{\"command\":\"approveRequest\",\"id\":%" PRId64 "}", id);
  check_error(f, text, EST_ERR_INVALID, "no actor");
  f->ctx.actor = NULL;
  check_error(f, text, EST_ERR_INVALID, "no actor");
  assert_int_equal(audit_count(f), before);
}

static void test_command_object(void **state) {
  fx *f = *state;
  est_err err;

  /* correlationData is echoed when it is a string, on success and error. */
  cJSON *r = run_text(
    f, "{\"command\":\"listPreauth\",\"correlationData\":\"abc-1\"}", &err);
  expect_ok(r, "listPreauth");
  assert_string_equal(str(r, "correlationData"), "abc-1");
  assert_keys(r, "command,data,correlationData");
  cJSON_Delete(r);
  r = run_text(f,
               "{\"command\":\"getRequest\",\"id\":9,\"correlationData\":\"q\"}",
               &err);
  expect_error(r, "no such request");
  assert_string_equal(str(r, "correlationData"), "q");
  assert_keys(r, "command,error,correlationData");
  cJSON_Delete(r);
  r = run_text(f, "{\"command\":\"listPreauth\",\"correlationData\":5}", &err);
  expect_ok(r, "listPreauth");
  assert_keys(r, "command,data");
  cJSON_Delete(r);
  r = run_text(f, "{\"command\":\"nope\",\"correlationData\":\"z\"}", &err);
  expect_error(r, "unknown command 'nope'");
  assert_int_equal(err, EST_ERR_INVALID);
  assert_string_equal(str(r, "command"), "nope");
  assert_string_equal(str(r, "correlationData"), "z");
  cJSON_Delete(r);

  /* Unknown commands are named, cut and cleaned in the error. */
  char text[512];
  snprintf(text, sizeof text, "{\"command\":\"%s\\u0001\"}",
           "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
  r = run_text(f, text, &err);
  expect_error(r, "unknown command 'aaaaaaaaaa");
  assert_non_null(strstr(str(r, "error"), "...'"));
  cJSON_Delete(r);
  r = run_text(f, "{\"command\":\"x\\u0007y\"}", &err);
  expect_error(r, "unknown command 'x?y'");
  cJSON_Delete(r);
  /* Case matters. */
  check_error(f, "{\"command\":\"ListRequests\"}", EST_ERR_INVALID,
              "unknown command 'ListRequests'");

  check_error(f, "{\"id\":1}", EST_ERR_INVALID, "command is missing");
  check_error(f, "{\"command\":7}", EST_ERR_INVALID, "command must be a string");
  check_error(f, "{\"command\":null}", EST_ERR_INVALID,
              "command must be a string");
  r = run_text(f, "[1]", &err);
  expect_error(r, "command must be a JSON object");
  assert_string_equal(str(r, "command"), "");
  cJSON_Delete(r);
  r = ctl_run(&f->ctx, NULL, &err);
  expect_error(r, "command must be a JSON object");
  assert_int_equal(err, EST_ERR_INVALID);
  cJSON_Delete(r);

  /* No store. */
  ctl_ctx none = {0};
  cJSON *cmd = cJSON_Parse("{\"command\":\"listAudit\"}");
  r = ctl_run(&none, cmd, NULL);
  expect_error(r, "no database");
  cJSON_Delete(r);
  r = ctl_run(NULL, cmd, &err);
  expect_error(r, "no database");
  cJSON_Delete(r);
  cJSON_Delete(cmd);
}

/* Run an envelope of @p len bytes; returns the parsed reply and checks its
 * shape: {"responses":[...]} and no error response with "data". */
static cJSON *envelope(fx *f, const char *text, size_t len) {
  char *out = ctl_run_envelope(&f->ctx, text, len);
  assert_non_null(out);
  cJSON *reply = cJSON_Parse(out);
  cJSON_free(out);
  assert_non_null(reply);
  assert_keys(reply, "responses");
  const cJSON *arr = cJSON_GetObjectItem(reply, "responses"), *it;
  assert_true(cJSON_IsArray(arr));
  cJSON_ArrayForEach(it, arr) {
    assert_true(cJSON_IsString(cJSON_GetObjectItem(it, "command")));
    bool has_err = cJSON_GetObjectItem(it, "error") != NULL;
    bool has_data = cJSON_GetObjectItem(it, "data") != NULL;
    assert_true(has_err != has_data);
  }
  return reply;
}

static void expect_envelope_error(fx *f, const char *text, size_t len,
                                  const char *needle) {
  cJSON *reply = envelope(f, text, len);
  const cJSON *arr = cJSON_GetObjectItem(reply, "responses");
  assert_int_equal(cJSON_GetArraySize(arr), 1);
  const cJSON *r = cJSON_GetArrayItem(arr, 0);
  assert_keys(r, "command,error");
  assert_string_equal(str(r, "command"), "");
  expect_error(r, needle);
  cJSON_Delete(reply);
}

#define ENV(f, s, needle) expect_envelope_error(f, s, strlen(s), needle)

static void test_envelope(void **state) {
  fx *f = *state;
  int64_t id = seed_pending(f, 1);
  char text[512];

  snprintf(text, sizeof text,
           "{\"commands\":[{\"command\":\"listRequests\",\"correlationData\":"
           "\"1\"},{\"command\":\"approveRequest\",\"id\":%" PRId64
           ",\"correlationData\":\"2\"},{\"command\":\"approveRequest\",\"id\":%"
           PRId64 ",\"correlationData\":\"3\"},{\"command\":\"bogus\"},7]}",
           id, id);
  cJSON *reply = envelope(f, text, strlen(text));
  const cJSON *arr = cJSON_GetObjectItem(reply, "responses");
  assert_int_equal(cJSON_GetArraySize(arr), 5);
  const cJSON *r0 = cJSON_GetArrayItem(arr, 0), *r1 = cJSON_GetArrayItem(arr, 1),
              *r2 = cJSON_GetArrayItem(arr, 2), *r3 = cJSON_GetArrayItem(arr, 3),
              *r4 = cJSON_GetArrayItem(arr, 4);
  assert_string_equal(str(r0, "correlationData"), "1");
  assert_non_null(cJSON_GetObjectItem(r0, "data"));
  assert_string_equal(str(r1, "correlationData"), "2");
  assert_string_equal(
    str(cJSON_GetObjectItem(cJSON_GetObjectItem(r1, "data"), "request"),
        "state"),
    "approved");
  /* In order: the second approval sees the first. */
  assert_string_equal(str(r2, "correlationData"), "3");
  expect_error(r2, "is approved, not pending");
  expect_error(r3, "unknown command 'bogus'");
  expect_error(r4, "command must be a JSON object");
  cJSON_Delete(reply);

  /* Empty list: empty reply list. */
  reply = envelope(f, "{\"commands\":[]}", 15);
  assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(reply, "responses")),
                   0);
  cJSON_Delete(reply);

  ENV(f, "", "not valid JSON");
  ENV(f, "{", "not valid JSON");
  ENV(f, "{\"commands\":[]} x", "not valid JSON");
  ENV(f, "{\"commands\":[],}", "not valid JSON");
  ENV(f, "[]", "must be a JSON object");
  ENV(f, "\"commands\"", "must be a JSON object");
  ENV(f, "{}", "commands is missing");
  ENV(f, "{\"Commands\":[]}", "commands is missing");
  ENV(f, "{\"commands\":{}}", "commands must be an array");
  ENV(f, "{\"commands\":\"listRequests\"}", "commands must be an array");
  expect_envelope_error(f, "{\"commands\":[]}\0", 16, "NUL byte");
  expect_envelope_error(f, NULL, 0, "no message");

  /* The length counts, not a terminator: trailing bytes past len are not
   * read. */
  reply = envelope(f, "{\"commands\":[]}GARBAGE", 15);
  assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(reply, "responses")),
                   0);
  cJSON_Delete(reply);

  /* Too many commands. */
  size_t cap = 64 + 40 * (CTL_CMDS_MAX + 1);
  char *many = malloc(cap);
  assert_non_null(many);
  for (unsigned n = CTL_CMDS_MAX; n <= CTL_CMDS_MAX + 1; n++) {
    size_t o = (size_t)snprintf(many, cap, "{\"commands\":[");
    for (unsigned i = 0; i < n; i++)
      o += (size_t)snprintf(many + o, cap - o, "%s{\"command\":\"listPreauth\"}",
                            i ? "," : "");
    o += (size_t)snprintf(many + o, cap - o, "]}");
    if (n == CTL_CMDS_MAX) {
      reply = envelope(f, many, o);
      assert_int_equal(
        cJSON_GetArraySize(cJSON_GetObjectItem(reply, "responses")),
        (int)CTL_CMDS_MAX);
      cJSON_Delete(reply);
    } else {
      expect_envelope_error(f, many, o, "too many commands (101, at most 100)");
    }
  }
  free(many);

  /* Too large: CTL_MSG_MAX is fine, one more byte is not. */
  char *big = malloc(CTL_MSG_MAX + 2);
  assert_non_null(big);
  memset(big, ' ', CTL_MSG_MAX + 1);
  memcpy(big, "{\"commands\":[]}", 15);
  reply = envelope(f, big, CTL_MSG_MAX);
  assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(reply, "responses")),
                   0);
  cJSON_Delete(reply);
  expect_envelope_error(f, big, CTL_MSG_MAX + 1, "message too large");
  free(big);

  /* Deep nesting is refused by the parser, not the stack. */
  char *deep = malloc(8200);
  assert_non_null(deep);
  size_t o = (size_t)snprintf(deep, 8200, "{\"commands\":[{\"command\":\"x\",\"y\":");
  for (int i = 0; i < 3000; i++)
    deep[o++] = '[';
  expect_envelope_error(f, deep, o, "not valid JSON");
  free(deep);
}

/* Events: one per life-cycle audit action, none for bookkeeping. */
typedef struct ev_seen {
  int count[STORE_AUDIT__MAX + 1];
  int events;
} ev_seen;

static int on_row(void *ctx, const store_audit_row *row) {
  ev_seen *seen = ctx;
  const char *kind = "unset";
  cJSON *ev = ctl_event(row, &kind);
  seen->count[row->action]++;
  switch (row->action) {
  case STORE_AUDIT_PREAUTH_ADD:
  case STORE_AUDIT_PREAUTH_REMOVE:
  case STORE_AUDIT_REISSUED:
  case STORE_AUDIT_PRUNED:
  case STORE_AUDIT__MAX:
    assert_null(ev);
    assert_null(kind);
    return 0;
  case STORE_AUDIT_PENDING:
  case STORE_AUDIT_APPROVED:
  case STORE_AUDIT_REJECTED:
  case STORE_AUDIT_ISSUED:
  case STORE_AUDIT_EXPIRED:
  case STORE_AUDIT_REVOKED:
    break;
  }
  assert_non_null(ev);
  assert_non_null(kind);
  seen->events++;
  assert_string_equal(kind, store_audit_action_name(row->action));
  assert_int_equal((int64_t)num(ev, "id"), row->request_id);
  assert_int_equal((int64_t)num(ev, "auditId"), row->id);
  assert_string_equal(str(ev, "actor"), row->actor);
  char t[32];
  ctl_time_iso(row->time, t, sizeof t);
  assert_string_equal(str(ev, "time"), t);
  assert_string_equal(str(ev, "function"), "sen");
  assert_string_equal(str(ev, "subject"), "CN=dev-0001");
  assert_string_equal(str(ev, "client"), "CN=idevid-0001,O=Maker");
  switch (row->action) {
  case STORE_AUDIT_PENDING:
    /* Who asks (docs/decisions.md §15): the seeded rows have no serial. */
    assert_keys(ev, "id,function,subject,client,time,auditId,actor,clientSerial,"
                    "clientFingerprint");
    assert_string_equal(str(ev, "actor"), "coapd");
    assert_true(is_null(ev, "clientSerial"));
    assert_int_equal(strlen(str(ev, "clientFingerprint")), 64);
    break;
  case STORE_AUDIT_APPROVED:
    assert_keys(ev, "id,function,subject,client,time,auditId,actor");
    break;
  case STORE_AUDIT_REJECTED:
    assert_keys(ev, "id,function,subject,client,time,auditId,actor,reason");
    assert_string_equal(str(ev, "reason"), "nope");
    break;
  case STORE_AUDIT_ISSUED:
    assert_keys(ev, "id,function,subject,client,time,auditId,actor,serial");
    break;
  case STORE_AUDIT_EXPIRED:
    assert_keys(ev, "id,function,subject,client,time,auditId,actor");
    assert_string_equal(str(ev, "actor"), STORE_ACTOR_SYSTEM);
    break;
  case STORE_AUDIT_REVOKED:
    assert_keys(ev,
                "id,function,subject,client,time,auditId,actor,serial,reason,crlNumber");
    assert_string_equal(str(ev, "serial"), "c0de");
    assert_string_equal(str(ev, "reason"), "cessationOfOperation");
    /* The first revocation: the first CRL that will list it. */
    assert_int_equal(cJSON_GetObjectItem(ev, "crlNumber")->valuedouble, 1);
    break;
  default:
    break;
  }
  cJSON_Delete(ev);
  return 0;
}

static void test_events(void **state) {
  fx *f = *state;
  est_err err;
  char text[256];
  /* pending -> approved -> issued (by the plugin) -> reissued */
  int64_t a = seed_pending(f, 1);
  snprintf(text, sizeof text,
           "{\"command\":\"approveRequest\",\"id\":%" PRId64 "}", a);
  cJSON *r = run_text(f, text, &err);
  expect_ok(r, "approveRequest");
  cJSON_Delete(r);
  store_cert_new c;
  memset(&c, 0, sizeof c);
  memset(der, 0x30, sizeof der);
  c.serial = "C0DE";
  c.subject = "CN=dev-0001";
  c.der = der;
  c.der_len = sizeof der;
  assert_int_equal(store_request_issue(f->s, a, &c, "coapd", NULL), EST_OK);
  assert_int_equal(store_request_resent(f->s, a, "coapd"), EST_OK);
  /* pending -> rejected */
  int64_t b = seed_pending(f, 2);
  snprintf(text, sizeof text,
           "{\"command\":\"rejectRequest\",\"id\":%" PRId64
           ",\"reason\":\"nope\"}",
           b);
  r = run_text(f, text, &err);
  expect_ok(r, "rejectRequest");
  cJSON_Delete(r);
  /* pending -> expired */
  (void)seed_pending(f, 3);
  fake_now += TTL + 1;
  size_t n = 0;
  assert_int_equal(store_expire(f->s, fake_now, &n), EST_OK);
  assert_int_equal(n, 1);
  /* revoked; preauth add/remove */
  r = run_text(f,
               "{\"command\":\"revokeCertificate\",\"serial\":\"c0de\","
               "\"reason\":\"cessationOfOperation\"}",
               &err);
  expect_ok(r, "revokeCertificate");
  cJSON_Delete(r);
  r = run_text(f,
               "{\"command\":\"addPreauth\",\"kind\":\"subject\",\"value\":\"CN=p\"}",
               &err);
  expect_ok(r, "addPreauth");
  cJSON_Delete(r);
  r = run_text(f,
               "{\"command\":\"removePreauth\",\"kind\":\"subject\",\"value\":"
               "\"CN=p\"}",
               &err);
  expect_ok(r, "removePreauth");
  cJSON_Delete(r);

  ev_seen seen;
  memset(&seen, 0, sizeof seen);
  assert_int_equal(store_audit_since(f->s, 0, 0, on_row, &seen), EST_OK);
  assert_int_equal(seen.count[STORE_AUDIT_PENDING], 3);
  assert_int_equal(seen.count[STORE_AUDIT_APPROVED], 1);
  assert_int_equal(seen.count[STORE_AUDIT_REJECTED], 1);
  assert_int_equal(seen.count[STORE_AUDIT_ISSUED], 1);
  assert_int_equal(seen.count[STORE_AUDIT_REISSUED], 1);
  assert_int_equal(seen.count[STORE_AUDIT_EXPIRED], 1);
  assert_int_equal(seen.count[STORE_AUDIT_REVOKED], 1);
  assert_int_equal(seen.count[STORE_AUDIT_PREAUTH_ADD], 1);
  assert_int_equal(seen.count[STORE_AUDIT_PREAUTH_REMOVE], 1);
  assert_int_equal(seen.events, 8);

  /* A row with no request (a certificate recorded from elsewhere) and an
   * action this version does not know. */
  store_audit_row row;
  memset(&row, 0, sizeof row);
  row.id = 99;
  row.time = T0;
  row.actor = (char *)"bob";
  row.action = STORE_AUDIT_REVOKED;
  row.cert_serial = (char *)"01";
  row.function = STORE_FN__MAX;
  const char *kind = NULL;
  cJSON *ev = ctl_event(&row, &kind);
  assert_non_null(ev);
  assert_string_equal(kind, "revoked");
  assert_keys(ev, "id,function,subject,client,time,auditId,actor,serial");
  assert_int_equal((int)num(ev, "id"), 0);
  assert_true(is_null(ev, "function"));
  assert_true(is_null(ev, "subject"));
  cJSON_Delete(ev);
  row.action = STORE_AUDIT__MAX;
  row.action_name = (char *)"future";
  assert_null(ctl_event(&row, &kind));
  assert_null(kind);
  assert_null(ctl_event(&row, NULL));
  cJSON *aj = ctl_audit_json(&row);
  assert_string_equal(str(aj, "action"), "future");
  cJSON_Delete(aj);
}

/* A second connection holds the write lock: writes answer "busy", reads
 * still work (WAL). */
static void test_busy(void **state) {
  fx *f = *state;
  est_err err;
  char text[128];
  sqlite3 *db = NULL;
  int64_t id = seed_pending(f, 1);
  assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
  assert_int_equal(sqlite3_exec(db, "BEGIN EXCLUSIVE", NULL, NULL, NULL),
                   SQLITE_OK);
  snprintf(text, sizeof text,
           "{\"command\":\"approveRequest\",\"id\":%" PRId64 "}", id);
  check_error(f, text, EST_ERR_BUSY, "database is busy, try again");
  check_error(f, "{\"command\":\"addPreauth\",\"kind\":\"subject\",\"value\":\"CN=a\"}",
              EST_ERR_BUSY, "database is busy, try again");
  cJSON *r = run_text(f, "{\"command\":\"listRequests\"}", &err);
  expect_ok(r, "listRequests");
  cJSON_Delete(r);
  assert_int_equal(sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(db);
  r = run_text(f, text, &err);
  expect_ok(r, "approveRequest");
  cJSON_Delete(r);
}

/* A read-only handle (estctl's list/show) refuses writes cleanly even if
 * the caller claims it may write. */
static void test_read_only_store(void **state) {
  fx *f = *state;
  store_options o;
  store *ro = NULL;
  char diag[256];
  int64_t id = seed_pending(f, 1);
  store_options_init(&o);
  o.read_only = true;
  assert_int_equal(store_open(f->path, &o, &ro, diag, sizeof diag), EST_OK);
  ctl_ctx c = {.s = ro, .actor = "alice", .may_write = true};
  char text[128];
  est_err err;
  snprintf(text, sizeof text,
           "{\"command\":\"approveRequest\",\"id\":%" PRId64 "}", id);
  cJSON *cmd = cJSON_Parse(text);
  cJSON *r = ctl_run(&c, cmd, &err);
  expect_error(r, "read-only");
  assert_int_equal(err, EST_ERR_INVALID);
  cJSON_Delete(r);
  cJSON_Delete(cmd);
  store_close(ro);
}

/* ------------------------------------------------------------ what the approver sees */

/* A DER CSR for @p dn (RFC 4514) with DNS name @p dns and IP 10.0.0.44
 * when @p dns is set; an EC P-256 key, or Ed25519 with @p ed. */
static size_t make_csr(const char *dn, const char *dns, bool ed, uint8_t *out, size_t cap) {
  gnutls_x509_privkey_t key;
  gnutls_x509_crq_t crq;
  static const uint8_t ip[4] = {10, 0, 0, 44};
  size_t len = cap;
  assert_int_equal(gnutls_x509_privkey_init(&key), 0);
  assert_int_equal(gnutls_x509_privkey_generate(key, ed ? GNUTLS_PK_EDDSA_ED25519 : GNUTLS_PK_ECDSA,
                                                ed ? 256 : GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0),
                   0);
  assert_int_equal(gnutls_x509_crq_init(&crq), 0);
  assert_int_equal(gnutls_x509_crq_set_dn(crq, dn, NULL), 0);
  if (dns != NULL) {
    assert_int_equal(gnutls_x509_crq_set_subject_alt_name(crq, GNUTLS_SAN_DNSNAME, dns,
                                                          (unsigned)strlen(dns), GNUTLS_FSAN_APPEND),
                     0);
    assert_int_equal(gnutls_x509_crq_set_subject_alt_name(crq, GNUTLS_SAN_IPADDRESS, ip, 4,
                                                          GNUTLS_FSAN_APPEND),
                     0);
  }
  assert_int_equal(gnutls_x509_crq_set_key(crq, key), 0);
  assert_int_equal(gnutls_x509_crq_sign2(crq, key, ed ? GNUTLS_DIG_UNKNOWN : GNUTLS_DIG_SHA256, 0), 0);
  assert_int_equal(gnutls_x509_crq_export(crq, GNUTLS_X509_FMT_DER, out, &len), 0);
  gnutls_x509_crq_deinit(crq);
  gnutls_x509_privkey_deinit(key);
  return len;
}

/* The CSR's subject as enrollment renders it (pki.c:pki_csr_subject). */
static void csr_subject(const uint8_t *csr_der, size_t len, char *out, size_t cap) {
  gnutls_x509_crq_t crq;
  gnutls_datum_t d = {(unsigned char *)(uintptr_t)csr_der, (unsigned)len}, s = {NULL, 0};
  assert_int_equal(gnutls_x509_crq_init(&crq), 0);
  assert_int_equal(gnutls_x509_crq_import(crq, &d, GNUTLS_X509_FMT_DER), 0);
  assert_int_equal(gnutls_x509_crq_get_dn3(crq, &s, 0), 0);
  assert_true(s.size < cap);
  memcpy(out, s.data, s.size);
  out[s.size] = '\0';
  gnutls_free(s.data);
  gnutls_x509_crq_deinit(crq);
}

static uint8_t csr_a[2048], csr_b[2048];

/* Request k with a real CSR, a client serial and a creation time. */
static int64_t seed_real(fx *f, int k, const char *subject, const uint8_t *csr_der, size_t len,
                         const char *serial, const char *client, int64_t created) {
  store_request_new r = req_new(k, 0);
  int64_t id = 0;
  r.subject = subject;
  r.csr = csr_der;
  r.csr_len = len;
  r.client_serial = serial;
  if (client != NULL)
    r.client = client;
  fake_now = created;
  assert_int_equal(store_request_create(f->s, &r, "coapd", &id), EST_OK);
  fake_now = T0;
  return id;
}

/* The clientSerial of the first pending event, or "null". */
static int on_pending_event(void *ctx, const store_audit_row *row) {
  char *out = ctx;
  const char *kind;
  cJSON *ev = ctl_event(row, &kind);
  if (ev != NULL && row->action == STORE_AUDIT_PENDING && out[0] == '\0') {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(ev, "clientSerial");
    snprintf(out, 64, "%s", cJSON_IsString(v) ? v->valuestring : "null");
  }
  cJSON_Delete(ev);
  return 0;
}

static void test_request_csr_fields(void **state) {
  fx *f = *state;
  char text[128];
  size_t la = make_csr("CN=device-44,O=acme", "dev-44.example", false, csr_a, sizeof csr_a);
  size_t lb = make_csr("CN=device-45", NULL, true, csr_b, sizeof csr_b);
  int64_t a = seed_real(f, 1, "CN=device-44,O=acme", csr_a, la, "0A1B2C", NULL, T0);
  int64_t b = seed_real(f, 2, "CN=device-45", csr_b, lb, NULL, NULL, T0);
  int64_t old = seed_pending(f, 3); /* filler CSR, no serial: a row of schema 2 */
  snprintf(text, sizeof text, "{\"command\":\"getRequest\",\"id\":%" PRId64 "}", a);
  cJSON *r = run_text(f, text, NULL);
  cJSON *req = cJSON_GetObjectItemCaseSensitive(expect_ok(r, "getRequest"), "request");
  assert_keys(req, REQUEST_KEYS);
  assert_string_equal(str(req, "clientSerial"), "0a1b2c");
  assert_string_equal(str(req, "clientFingerprint"),
                      "8181818181818181818181818181818181818181818181818181818181818181");
  assert_string_equal(str(req, "keyType"), "ec");
  assert_true(num(req, "keyBits") == 256);
  assert_string_equal(str(req, "keyCurve"), "secp256r1");
  const cJSON *sans = cJSON_GetObjectItemCaseSensitive(req, "sans");
  assert_int_equal(cJSON_GetArraySize(sans), 2);
  assert_string_equal(str(cJSON_GetArrayItem(sans, 0), "type"), "dns");
  assert_string_equal(str(cJSON_GetArrayItem(sans, 0), "value"), "dev-44.example");
  assert_string_equal(str(cJSON_GetArrayItem(sans, 1), "type"), "ip");
  assert_string_equal(str(cJSON_GetArrayItem(sans, 1), "value"), "10.0.0.44");
  cJSON_Delete(r);

  snprintf(text, sizeof text, "{\"command\":\"getRequest\",\"id\":%" PRId64 "}", b);
  r = run_text(f, text, NULL);
  req = cJSON_GetObjectItemCaseSensitive(expect_ok(r, "getRequest"), "request");
  assert_string_equal(str(req, "keyType"), "ed25519");
  assert_true(is_null(req, "keyCurve"));
  assert_true(is_null(req, "clientSerial"));
  assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(req, "sans")), 0);
  assert_true(cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(req, "sans")));
  cJSON_Delete(r);

  snprintf(text, sizeof text, "{\"command\":\"getRequest\",\"id\":%" PRId64 "}", old);
  r = run_text(f, text, NULL);
  req = cJSON_GetObjectItemCaseSensitive(expect_ok(r, "getRequest"), "request");
  assert_keys(req, REQUEST_KEYS);
  assert_true(is_null(req, "sans"));
  assert_true(is_null(req, "keyType"));
  assert_true(is_null(req, "keyBits"));
  assert_true(is_null(req, "keyCurve"));
  assert_true(is_null(req, "clientSerial"));
  cJSON_Delete(r);
  /* The pending event names the client certificate too. */
  char serial[64] = "";
  assert_int_equal(store_audit_since(f->s, 0, 0, on_pending_event, serial), EST_OK);
  assert_string_equal(serial, "0a1b2c");
}

/* The ids listRequests gives for the members in @p args, as "1,3". */
static void list_ids(fx *f, const char *args, char *out, size_t cap) {
  char text[512];
  size_t n = 0;
  const cJSON *it;
  snprintf(text, sizeof text, "{\"command\":\"listRequests\"%s%s}", args[0] ? "," : "", args);
  cJSON *r = run_text(f, text, NULL);
  const cJSON *arr = cJSON_GetObjectItemCaseSensitive(expect_ok(r, "listRequests"), "requests");
  out[0] = '\0';
  cJSON_ArrayForEach(it, arr) {
    n += (size_t)snprintf(out + n, cap - n, "%s%.0f", n ? "," : "",
                          cJSON_GetObjectItemCaseSensitive(it, "id")->valuedouble);
    assert_true(n < cap);
  }
  cJSON_Delete(r);
}

static void test_list_filters(void **state) {
  fx *f = *state;
  char ids[64];
  size_t la = make_csr("CN=device-44,O=acme", "dev-44.example", false, csr_a, sizeof csr_a);
  size_t lb = make_csr("CN=device-45", NULL, false, csr_b, sizeof csr_b);
  /* 1: three hours old; 2: ten minutes old; 3: now, another client. */
  seed_real(f, 1, "CN=device-44,O=acme", csr_a, la, "01", NULL, T0 - 3 * 3600);
  seed_real(f, 2, "CN=device-45", csr_b, lb, NULL, NULL, T0 - 600);
  seed_real(f, 3, "CN=other", csr_b, lb, NULL, "CN=idevid-0002,O=Other", T0);
  f->ctx.now = T0;
  list_ids(f, "", ids, sizeof ids);
  assert_string_equal(ids, "1,2,3");
  list_ids(f, "\"subject\":\"DEVICE-4\"", ids, sizeof ids);
  assert_string_equal(ids, "1,2");
  list_ids(f, "\"san\":\"dev-44\"", ids, sizeof ids);
  assert_string_equal(ids, "1");
  list_ids(f, "\"san\":\"10.0.0.44\"", ids, sizeof ids);
  assert_string_equal(ids, "1");
  list_ids(f, "\"san\":\"nowhere\"", ids, sizeof ids);
  assert_string_equal(ids, "");
  list_ids(f, "\"client\":\"idevid-0002\"", ids, sizeof ids);
  assert_string_equal(ids, "3");
  /* A fingerprint prefix, any case, colons allowed: 0x81 is key 1. */
  list_ids(f, "\"client\":\"81:81:8\"", ids, sizeof ids);
  assert_string_equal(ids, "1");
  list_ids(f, "\"client\":\"8282\"", ids, sizeof ids);
  assert_string_equal(ids, "2");
  list_ids(f, "\"olderThan\":7200", ids, sizeof ids);
  assert_string_equal(ids, "1");
  list_ids(f, "\"newerThan\":3600", ids, sizeof ids);
  assert_string_equal(ids, "2,3");
  list_ids(f, "\"olderThan\":600", ids, sizeof ids);
  assert_string_equal(ids, "1,2");
  list_ids(f, "\"olderThan\":60,\"newerThan\":7200,\"subject\":\"device\"", ids, sizeof ids);
  assert_string_equal(ids, "2");
  list_ids(f, "\"state\":\"pending\",\"olderThan\":0", ids, sizeof ids);
  assert_string_equal(ids, "1,2,3");
  check_error(f, "{\"command\":\"listRequests\",\"olderThan\":\"2h\"}", EST_ERR_INVALID,
              "olderThan must be a whole number of seconds");
  check_error(f, "{\"command\":\"listRequests\",\"newerThan\":-1}", EST_ERR_INVALID,
              "newerThan must be a whole number of seconds");
  check_error(f, "{\"command\":\"listRequests\",\"newerThan\":1.5}", EST_ERR_INVALID,
              "newerThan must be");
  check_error(f, "{\"command\":\"listRequests\",\"san\":7}", EST_ERR_INVALID,
              "san must be a string");
}

/* Pre-authorisation by subject compares canonical DNs (RFC 4514). */
static void test_preauth_canonical(void **state) {
  fx *f = *state;
  char dn[CTL_DN_MAX + 1], diag[256], subject[256];
  bool hit = false;
  assert_int_equal(ctl_dn_canonical("cn=device-44, o=acme", dn, sizeof dn, diag, sizeof diag),
                   EST_OK);
  assert_string_equal(dn, "CN=device-44,O=acme");
  assert_int_equal(ctl_dn_canonical("CN=a\\,b , O = x", dn, sizeof dn, NULL, 0), EST_OK);
  assert_string_equal(dn, "CN=a\\,b,O=x");
  assert_int_equal(ctl_dn_canonical("garbage", dn, sizeof dn, diag, sizeof diag),
                   EST_ERR_INVALID);
  assert_non_null(strstr(diag, "RFC 4514"));
  assert_int_equal(ctl_dn_canonical("", dn, sizeof dn, diag, sizeof diag), EST_ERR_INVALID);
  assert_int_equal(ctl_dn_canonical("CN=x+OU=y", dn, sizeof dn, diag, sizeof diag),
                   EST_ERR_INVALID);
  assert_int_equal(ctl_dn_canonical("CN=device-44,O=acme", dn, 8, diag, sizeof diag),
                   EST_ERR_TOO_LARGE);

  /* The operator writes a blank after the comma; the CSR has none. */
  cJSON *r = run_text(f, "{\"command\":\"addPreauth\",\"kind\":\"subject\","
                         "\"value\":\"CN=device-44, O=acme\"}", NULL);
  const cJSON *p = cJSON_GetObjectItemCaseSensitive(expect_ok(r, "addPreauth"), "preauth");
  assert_keys(p, PREAUTH_KEYS);
  assert_string_equal(str(p, "value"), "CN=device-44,O=acme");
  assert_true(is_null(p, "idevid"));
  cJSON_Delete(r);
  size_t la = make_csr("CN=device-44,O=acme", NULL, false, csr_a, sizeof csr_a);
  csr_subject(csr_a, la, subject, sizeof subject);
  assert_string_equal(subject, "CN=device-44,O=acme");
  assert_int_equal(store_preauth_match(f->s, subject, NULL, &hit), EST_OK);
  assert_true(hit);
  check_error(f, "{\"command\":\"addPreauth\",\"kind\":\"subject\",\"value\":\"cn=device-44,o=acme\"}",
              EST_ERR_EXISTS, "subject 'CN=device-44,O=acme' is already pre-authorised");
  int64_t before = audit_count(f);
  check_error(f, "{\"command\":\"addPreauth\",\"kind\":\"subject\",\"value\":\"not a DN\"}",
              EST_ERR_INVALID, "subject 'not a DN': it is not an RFC 4514 distinguished name");
  assert_int_equal(audit_count(f), before);
  r = run_text(f, "{\"command\":\"removePreauth\",\"kind\":\"subject\","
                  "\"value\":\"CN = device-44 ,O=acme\"}", NULL);
  expect_ok(r, "removePreauth");
  cJSON_Delete(r);
  assert_int_equal(store_preauth_match(f->s, subject, NULL, &hit), EST_OK);
  assert_false(hit);
  /* An entry from before schema 3, stored as written, is removed as written. */
  assert_int_equal(store_preauth_add(f->s, STORE_PREAUTH_SUBJECT, "CN=old, O=x", NULL, "op", NULL),
                   EST_OK);
  r = run_text(f, "{\"command\":\"removePreauth\",\"kind\":\"subject\",\"value\":\"CN=old, O=x\"}",
               NULL);
  expect_ok(r, "removePreauth");
  cJSON_Delete(r);

  /* Bound to one IDevID: both must match. */
  const char *fp = "ABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABAB";
  char lower[65];
  for (int i = 0; i < 64; i++)
    lower[i] = (char)(fp[i] - 'A' + 'a');
  lower[64] = '\0';
  char text[300];
  snprintf(text, sizeof text,
           "{\"command\":\"addPreauth\",\"kind\":\"subject\",\"value\":\"cn=dev-9\",\"idevid\":\"%s\"}",
           fp);
  r = run_text(f, text, NULL);
  p = cJSON_GetObjectItemCaseSensitive(expect_ok(r, "addPreauth"), "preauth");
  assert_string_equal(str(p, "value"), "CN=dev-9");
  assert_string_equal(str(p, "idevid"), lower);
  cJSON_Delete(r);
  assert_int_equal(store_preauth_match(f->s, "CN=dev-9", NULL, &hit), EST_OK);
  assert_false(hit);
  assert_int_equal(store_preauth_match(f->s, "CN=dev-9", lower, &hit), EST_OK);
  assert_true(hit);
  check_error(f, "{\"command\":\"addPreauth\",\"kind\":\"subject\",\"value\":\"CN=z\",\"idevid\":\"abc\"}",
              EST_ERR_INVALID, "idevid must be an IDevID SHA-256 fingerprint");
  snprintf(text, sizeof text,
           "{\"command\":\"addPreauth\",\"kind\":\"idevid\",\"value\":\"%s\",\"idevid\":\"%s\"}",
           lower, lower);
  check_error(f, text, EST_ERR_INVALID, "kind must be \"subject\"");
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_time_iso),
    cmocka_unit_test(test_views),
    cmocka_unit_test_setup_teardown(test_list_requests, setup, teardown),
    cmocka_unit_test_setup_teardown(test_get_request, setup, teardown),
    cmocka_unit_test_setup_teardown(test_approve, setup, teardown),
    cmocka_unit_test_setup_teardown(test_reject, setup, teardown),
    cmocka_unit_test_setup_teardown(test_preauth, setup, teardown),
    cmocka_unit_test_setup_teardown(test_certs_revoke, setup, teardown),
    cmocka_unit_test_setup_teardown(test_list_audit, setup, teardown),
    cmocka_unit_test_setup_teardown(test_may_write_false, setup, teardown),
    cmocka_unit_test_setup_teardown(test_command_object, setup, teardown),
    cmocka_unit_test_setup_teardown(test_envelope, setup, teardown),
    cmocka_unit_test_setup_teardown(test_events, setup, teardown),
    cmocka_unit_test_setup_teardown(test_busy, setup, teardown),
    cmocka_unit_test_setup_teardown(test_read_only_store, setup, teardown),
    cmocka_unit_test_setup_teardown(test_request_csr_fields, setup, teardown),
    cmocka_unit_test_setup_teardown(test_list_filters, setup, teardown),
    cmocka_unit_test_setup_teardown(test_preauth_canonical, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
