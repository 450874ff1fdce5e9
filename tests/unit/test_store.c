/* The store (docs/decisions.md §7): every operation and state transition, the
 * retry key, expiry, audit rows, caps, schema checks, and faults: a full
 * disk (real, via PRAGMA max_page_count), a locked database, and a crash in
 * the middle of a transaction (a forked child killed between statements).
 *
 * Fault injection wraps two SQLite functions (-Wl,--wrap, see store.cmake):
 * sqlite3_open_v2 records the connection the store opened, so the test can
 * set pragmas on it; sqlite3_step can fail on its Nth call or kill the
 * process before a statement whose SQL contains a given string. */
#define _POSIX_C_SOURCE 200809L

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "store/store.h"
#include "test_db.h"

/* ------------------------------------------------------------ wraps */

int __real_sqlite3_open_v2(const char *file, sqlite3 **db, int flags,
                           const char *vfs);
int __wrap_sqlite3_open_v2(const char *file, sqlite3 **db, int flags,
                           const char *vfs);
int __real_sqlite3_step(sqlite3_stmt *st);
int __wrap_sqlite3_step(sqlite3_stmt *st);

static sqlite3 *last_db;         /* the connection opened last */
static int step_calls;           /* sqlite3_step calls since arm_fault() */
static int step_fail_at;         /* fail the Nth call (0: never) */
static int step_fail_code;       /* with this code */
static const char *kill_before;  /* SIGKILL before a statement like this */

int __wrap_sqlite3_open_v2(const char *file, sqlite3 **db, int flags,
                           const char *vfs) {
  int rc = __real_sqlite3_open_v2(file, db, flags, vfs);
  last_db = *db;
  return rc;
}

int __wrap_sqlite3_step(sqlite3_stmt *st) {
  step_calls++;
  if (kill_before != NULL && strstr(sqlite3_sql(st), kill_before) != NULL)
    raise(SIGKILL);
  if (step_fail_at != 0 && step_calls == step_fail_at)
    return step_fail_code;
  return __real_sqlite3_step(st);
}

static void arm_fault(int at, int code) {
  step_calls = 0;
  step_fail_at = at;
  step_fail_code = code;
}

static void disarm(void) {
  step_fail_at = 0;
  kill_before = NULL;
}

/* ------------------------------------------------------------ fixture */

#define T0 1700000000
static int64_t fake_now = T0;
static int64_t fake_clock(void *ctx) {
  (void)ctx;
  return fake_now;
}

typedef struct fx {
  char dir[TEST_DB_DIR_MAX];
  char path[TEST_DB_PATH_MAX];
  store *s;
  sqlite3 *db; /* the store's own connection */
} fx;

static store_options test_options(void) { return test_db_options(fake_clock); }

static void remove_db(const char *path) { test_db_remove_files(path); }

static int setup(void **state) {
  fx *f = calloc(1, sizeof *f);
  if (f == NULL)
    return -1;
  fake_now = T0;
  disarm();
  if (test_db_open("test_store", f->dir, f->path, fake_clock, &f->s) != 0)
    return -1;
  f->db = last_db;
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fx *f = *state;
  disarm();
  store_close(f->s);
  test_db_remove(f->dir, f->path);
  free(f);
  return 0;
}

static void reopen(fx *f) {
  char diag[256];
  store_options o = test_options();
  store_close(f->s);
  f->s = NULL;
  assert_int_equal(store_open(f->path, &o, &f->s, diag, sizeof diag), EST_OK);
  f->db = last_db;
}

/* On PostgreSQL (docs/decisions.md §21) the checks below run through libpq;
 * the SQL is the same but for SQLite's group_concat. */
static PGresult *pg_query(const char *path, const char *sql) {
  char q[1024];
  const char *gc = strstr(sql, "group_concat(");
  if (gc != NULL)
    snprintf(q, sizeof q, "%.*sstring_agg(%s", (int)(gc - sql), sql, gc + 13);
  else
    snprintf(q, sizeof q, "%s", sql);
  PGconn *c = PQconnectdb(path);
  assert_int_equal(PQstatus(c), CONNECTION_OK);
  PGresult *r = PQexec(c, q);
  if (PQresultStatus(r) != PGRES_TUPLES_OK && PQresultStatus(r) != PGRES_COMMAND_OK)
    fail_msg("%s: %s", q, PQresultErrorMessage(r));
  PQfinish(c);
  return r;
}

/* One integer from a fresh connection (sees only committed data). */
static int64_t query(const char *path, const char *sql) {
  if (store_path_is_uri(path)) {
    PGresult *r = pg_query(path, sql);
    int64_t v = PQntuples(r) > 0 && !PQgetisnull(r, 0, 0) ? strtoll(PQgetvalue(r, 0, 0), NULL, 10) : -1;
    PQclear(r);
    return v;
  }
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  int64_t v = -1;
  assert_int_equal(__real_sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL),
                   SQLITE_OK);
  assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
  if (__real_sqlite3_step(st) == SQLITE_ROW)
    v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return v;
}

static char *query_text(const char *path, const char *sql) {
  if (store_path_is_uri(path)) {
    PGresult *r = pg_query(path, sql);
    char *v = PQntuples(r) > 0 && !PQgetisnull(r, 0, 0) ? strdup(PQgetvalue(r, 0, 0)) : NULL;
    PQclear(r);
    return v;
  }
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  char *v = NULL;
  assert_int_equal(__real_sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL),
                   SQLITE_OK);
  assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
  if (__real_sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
    v = strdup((const char *)sqlite3_column_text(st, 0));
  sqlite3_finalize(st);
  sqlite3_close(db);
  return v;
}

static void raw_exec(const char *path, const char *sql) {
  if (store_path_is_uri(path)) {
    PQclear(pg_query(path, sql));
    return;
  }
  sqlite3 *db = NULL;
  assert_int_equal(__real_sqlite3_open_v2(path, &db,
                                          SQLITE_OPEN_READWRITE |
                                            SQLITE_OPEN_CREATE,
                                          NULL),
                   SQLITE_OK);
  assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(db);
}

#define N_REQ(f) query((f)->path, "SELECT count(*) FROM requests")
#define N_CERT(f) query((f)->path, "SELECT count(*) FROM certificates")
#define N_AUDIT(f) query((f)->path, "SELECT count(*) FROM audit")

static uint8_t csr_buf[STORE_MAX_CSR + 1];
static uint8_t der_buf[STORE_MAX_DER + 1];

/* A request for key number @p k. */
static store_request_new req(int k, store_fn fn) {
  store_request_new r;
  memset(&r, 0, sizeof r);
  r.function = fn;
  memset(r.spki_sha256, 0x10 + k, sizeof r.spki_sha256);
  memset(r.client_fp, 0x80 + k, sizeof r.client_fp);
  r.client = "CN=idevid-1,O=Maker";
  r.client_class = STORE_CLIENT_IDEVID;
  r.subject = "CN=dev1";
  memset(csr_buf, 0x30, sizeof csr_buf);
  r.csr = csr_buf;
  r.csr_len = 400;
  r.ttl = 100;
  r.initial_state = STORE_REQ_PENDING;
  return r;
}

static store_cert_new cert(const char *serial) {
  store_cert_new c;
  memset(&c, 0, sizeof c);
  c.serial = serial;
  c.subject = "CN=dev1";
  c.client = "CN=idevid-1,O=Maker";
  c.not_before = T0;
  c.not_after = T0 + 365 * 86400;
  for (size_t i = 0; i < sizeof der_buf; i++)
    der_buf[i] = (uint8_t)(i * 7);
  c.der = der_buf;
  c.der_len = 700;
  return c;
}

static int64_t create(fx *f, int k, store_fn fn) {
  store_request_new r = req(k, fn);
  int64_t id = 0;
  assert_int_equal(store_request_create(f->s, &r, "coapd", &id), EST_OK);
  assert_true(id > 0);
  return id;
}

static est_err lookup(fx *f, int k, store_fn fn, store_request *out) {
  store_request_new r = req(k, fn);
  return store_request_lookup(f->s, r.spki_sha256, r.client_fp, fn, fake_now,
                              out);
}

static store_req_state state_of(fx *f, int64_t id) {
  store_request r;
  assert_int_equal(store_request_get(f->s, id, &r), EST_OK);
  store_req_state st = r.state;
  store_request_clear(&r);
  return st;
}

static void integrity_ok(const char *path) {
  if (store_path_is_uri(path))
    return; /* PostgreSQL checks every constraint at each statement */
  char *v = query_text(path, "PRAGMA integrity_check");
  assert_non_null(v);
  assert_string_equal(v, "ok");
  free(v);
  assert_int_equal(query(path, "SELECT count(*) FROM pragma_foreign_key_check"),
                   0);
}

/* ------------------------------------------------------------ open */

static void test_open_creates_schema(void **state) {
  fx *f = *state;
  assert_int_equal(store_schema_version(), 4);
  assert_int_equal(query(f->path, "PRAGMA user_version"), store_schema_version());
  assert_int_equal(query(f->path, "PRAGMA application_id"), 0x45535443);
  char *mode = query_text(f->path, "PRAGMA journal_mode");
  assert_string_equal(mode, "wal");
  free(mode);
  /* STRICT tables, as the house style asks. */
  assert_int_equal(query(f->path, "SELECT count(*) FROM pragma_table_list"
                                  " WHERE schema = 'main' AND strict = 1"),
                   5);
  assert_int_equal(sqlite3_db_readonly(f->db, "main"), 0);
  /* A second open migrates nothing and works. */
  reopen(f);
  assert_int_equal(query(f->path, "PRAGMA user_version"), store_schema_version());
}

static void test_open_synchronous(void **state) {
  fx *f = *state;
  sqlite3_stmt *st;
  /* FULL (2) by default ... */
  assert_int_equal(sqlite3_prepare_v2(f->db, "PRAGMA synchronous", -1, &st, NULL),
                   SQLITE_OK);
  assert_int_equal(__real_sqlite3_step(st), SQLITE_ROW);
  assert_int_equal(sqlite3_column_int(st, 0), 2);
  sqlite3_finalize(st);
  /* ... NORMAL (1) on request. */
  store *s2 = NULL;
  store_options o = test_options();
  o.synchronous_normal = true;
  assert_int_equal(store_open(f->path, &o, &s2, NULL, 0), EST_OK);
  assert_int_equal(sqlite3_prepare_v2(last_db, "PRAGMA synchronous", -1, &st,
                                      NULL),
                   SQLITE_OK);
  assert_int_equal(__real_sqlite3_step(st), SQLITE_ROW);
  assert_int_equal(sqlite3_column_int(st, 0), 1);
  sqlite3_finalize(st);
  store_close(s2);
}

static void test_open_missing_without_create(void **state) {
  fx *f = *state;
  char path[160], diag[256];
  struct stat sb;
  store *s = (store *)&sb; /* must be set to NULL */
  store_options o = test_options();
  o.create = false;
  snprintf(path, sizeof path, "%s/nope.db", f->dir);
  assert_int_equal(store_open(path, &o, &s, diag, sizeof diag),
                   EST_ERR_NOT_FOUND);
  assert_null(s);
  char want[200];
  snprintf(want, sizeof want, "no database at %s", path);
  assert_string_equal(diag, want);
  assert_int_equal(stat(path, &sb), -1);
  assert_int_equal(errno, ENOENT);

  /* Read-only never creates either. */
  o.read_only = true;
  o.create = true;
  assert_int_equal(store_open(path, &o, &s, diag, sizeof diag),
                   EST_ERR_NOT_FOUND);
  assert_int_equal(stat(path, &sb), -1);

  /* An empty file is not a database either, without create. */
  FILE *fp = fopen(path, "w");
  assert_non_null(fp);
  fclose(fp);
  o.read_only = false;
  o.create = false;
  assert_int_equal(store_open(path, &o, &s, diag, sizeof diag),
                   EST_ERR_NOT_FOUND);
  assert_non_null(strstr(diag, "no database at"));
  /* With create it is initialised. */
  o.create = true;
  assert_int_equal(store_open(path, &o, &s, diag, sizeof diag), EST_OK);
  store_close(s);
  /* And the existing database opens without create. */
  o.create = false;
  assert_int_equal(store_open(path, &o, &s, diag, sizeof diag), EST_OK);
  store_close(s);
  remove_db(path);
}

static void test_open_bad_arguments(void **state) {
  fx *f = *state;
  store *s = NULL;
  char diag[128];
  store_options o = test_options();
  assert_int_equal(store_open(NULL, &o, &s, diag, sizeof diag), EST_ERR_INVALID);
  assert_int_equal(store_open(f->path, &o, NULL, diag, sizeof diag),
                   EST_ERR_INVALID);
  o.version = 99;
  assert_int_equal(store_open(f->path, &o, &s, diag, sizeof diag),
                   EST_ERR_INVALID);
  o = test_options();
  o.busy_timeout_ms = -1;
  assert_int_equal(store_open(f->path, &o, &s, diag, sizeof diag),
                   EST_ERR_INVALID);
  /* NULL options: defaults (no create, but the file exists). */
  assert_int_equal(store_open(f->path, NULL, &s, NULL, 0), EST_OK);
  store_close(s);
  store_close(NULL);
  assert_string_equal(store_errmsg(NULL), "no store");
}

static void test_open_schema_newer_refused(void **state) {
  fx *f = *state;
  char diag[256];
  store *s = NULL;
  store_close(f->s);
  f->s = NULL;
  raw_exec(f->path, "PRAGMA user_version = 7");
  store_options o = test_options();
  assert_int_equal(store_open(f->path, &o, &s, diag, sizeof diag),
                   EST_ERR_SCHEMA);
  assert_null(s);
  assert_string_equal(diag,
                      "database schema version 7 is newer than this program (4)");
  o.read_only = true;
  assert_int_equal(store_open(f->path, &o, &s, diag, sizeof diag),
                   EST_ERR_SCHEMA);
  /* Nothing was changed by the refusal. */
  assert_int_equal(query(f->path, "PRAGMA user_version"), 7);
}

static void test_open_foreign_database_refused(void **state) {
  fx *f = *state;
  char path[160], diag[256];
  store *s = NULL;
  store_options o = test_options();
  snprintf(path, sizeof path, "%s/other.db", f->dir);
  raw_exec(path, "CREATE TABLE t (x INTEGER)");
  assert_int_equal(store_open(path, &o, &s, diag, sizeof diag), EST_ERR_SCHEMA);
  assert_non_null(strstr(diag, "no est-coaps schema"));
  remove_db(path);
  raw_exec(path, "PRAGMA application_id = 1234");
  assert_int_equal(store_open(path, &o, &s, diag, sizeof diag), EST_ERR_SCHEMA);
  assert_non_null(strstr(diag, "not an est-coaps database"));
  remove_db(path);
}

static void test_open_read_only(void **state) {
  fx *f = *state;
  store *ro = NULL;
  char diag[256];
  int64_t id = create(f, 1, STORE_FN_SEN);
  store_options o = test_options();
  o.read_only = true;
  o.create = false;
  assert_int_equal(store_open(f->path, &o, &ro, diag, sizeof diag), EST_OK);

  /* Reads work. */
  store_request r;
  assert_int_equal(store_request_get(ro, id, &r), EST_OK);
  assert_int_equal(r.state, STORE_REQ_PENDING);
  store_request_clear(&r);

  /* Every write is refused up front. */
  store_request_new n = req(2, STORE_FN_SEN);
  int64_t x;
  assert_int_equal(store_request_create(ro, &n, "estctl", &x), EST_ERR_INVALID);
  assert_string_equal(store_errmsg(ro), "store is open read-only");
  assert_int_equal(store_request_decide(ro, id, true, NULL, "op"),
                   EST_ERR_INVALID);
  assert_int_equal(store_expire(ro, T0 + 1000, NULL), EST_ERR_INVALID);
  assert_int_equal(store_meta_set(ro, "k", "v"), EST_ERR_INVALID);
  assert_int_equal(store_preauth_add(ro, STORE_PREAUTH_SUBJECT, "CN=x", NULL,
                                     "op", NULL),
                   EST_ERR_INVALID);

  /* An overdue row looks expired but stays untouched on disk. */
  n = req(1, STORE_FN_SEN);
  assert_int_equal(store_request_lookup(ro, n.spki_sha256, n.client_fp,
                                        STORE_FN_SEN, T0 + 100, &r),
                   EST_ERR_NOT_FOUND);
  assert_int_equal(r.id, id);
  assert_int_equal(r.state, STORE_REQ_EXPIRED);
  store_request_clear(&r);
  assert_int_equal(state_of(f, id), STORE_REQ_PENDING);
  assert_int_equal(N_AUDIT(f), 1);
  store_close(ro);

  /* Read-only also works with no writer around (estctl list while coapd is
   * down: the last close removed -wal and -shm). */
  store_close(f->s);
  f->s = NULL;
  assert_int_equal(store_open(f->path, &o, &ro, diag, sizeof diag), EST_OK);
  assert_int_equal(store_request_get(ro, id, &r), EST_OK);
  assert_int_equal(r.state, STORE_REQ_PENDING);
  store_request_clear(&r);
  uint64_t v;
  assert_int_equal(store_data_version(ro, &v), EST_OK);
  store_close(ro);
}

/* ------------------------------------------------------------ flow */

static void test_manual_flow(void **state) {
  fx *f = *state;
  store_request r;
  int64_t id, cid = 0;

  /* First request: nothing there, create pending. */
  assert_int_equal(lookup(f, 1, STORE_FN_SEN, &r), EST_ERR_NOT_FOUND);
  assert_int_equal(r.id, 0);
  store_request_clear(&r);
  id = create(f, 1, STORE_FN_SEN);

  /* Retry while pending. */
  fake_now += 10;
  assert_int_equal(lookup(f, 1, STORE_FN_SEN, &r), EST_OK);
  assert_int_equal(r.id, id);
  assert_int_equal(r.state, STORE_REQ_PENDING);
  assert_int_equal(r.function, STORE_FN_SEN);
  assert_string_equal(r.subject, "CN=dev1");
  assert_string_equal(r.client, "CN=idevid-1,O=Maker");
  assert_int_equal(r.client_class, STORE_CLIENT_IDEVID);
  assert_int_equal(r.csr_len, 400);
  assert_int_equal(r.created, T0);
  assert_int_equal(r.expires, T0 + 100);
  assert_null(r.reason);
  assert_int_equal(r.cert_id, 0);
  store_request_clear(&r);

  /* Operator approves; the TTL restarts at the decision. */
  fake_now = T0 + 50;
  assert_int_equal(store_request_decide(f->s, id, true, NULL, "alice"), EST_OK);
  assert_int_equal(lookup(f, 1, STORE_FN_SEN, &r), EST_OK);
  assert_int_equal(r.state, STORE_REQ_APPROVED);
  assert_int_equal(r.expires, T0 + 150);
  assert_int_equal(r.updated, T0 + 50);
  store_request_clear(&r);

  /* Next retry: issue. */
  store_cert_new c = cert("0A1B2C");
  assert_int_equal(store_request_issue(f->s, id, &c, "coapd", &cid), EST_OK);
  assert_true(cid > 0);

  /* Later retries get the same bytes. */
  fake_now = T0 + 10000;
  assert_int_equal(lookup(f, 1, STORE_FN_SEN, &r), EST_OK);
  assert_int_equal(r.state, STORE_REQ_ISSUED);
  assert_int_equal(r.cert_id, cid);
  store_cert sc;
  assert_int_equal(store_cert_get(f->s, r.cert_id, &sc), EST_OK);
  assert_string_equal(sc.serial, "0a1b2c");
  assert_int_equal(sc.request_id, id);
  assert_int_equal(sc.der_len, 700);
  assert_memory_equal(sc.der, der_buf, 700);
  assert_int_equal(sc.not_after, T0 + 365 * 86400);
  assert_int_equal(sc.revoked_at, 0);
  store_cert_clear(&sc);
  store_request_clear(&r);
  assert_int_equal(store_request_resent(f->s, id, "coapd"), EST_OK);

  /* pending, approved, issued, reissued. */
  assert_int_equal(N_AUDIT(f), 4);
  assert_int_equal(query(f->path, "SELECT count(*) FROM audit WHERE"
                                  " action = 'issued' AND cert_serial = '0a1b2c'"
                                  " AND request_id = 1 AND actor = 'coapd'"),
                   1);
  integrity_ok(f->path);
}

static void test_retry_key(void **state) {
  fx *f = *state;
  store_request r;
  int64_t id = create(f, 1, STORE_FN_SEN);
  store_request_new n = req(1, STORE_FN_SEN);
  uint8_t other[32];
  memset(other, 0xee, sizeof other);

  /* Each part of the key matters. */
  assert_int_equal(store_request_lookup(f->s, other, n.client_fp, STORE_FN_SEN,
                                        fake_now, &r),
                   EST_ERR_NOT_FOUND);
  store_request_clear(&r);
  assert_int_equal(store_request_lookup(f->s, n.spki_sha256, other, STORE_FN_SEN,
                                        fake_now, &r),
                   EST_ERR_NOT_FOUND);
  store_request_clear(&r);
  assert_int_equal(lookup(f, 1, STORE_FN_SREN, &r), EST_ERR_NOT_FOUND);
  store_request_clear(&r);
  /* ... and the same key finds it, whatever the CSR bytes are now. */
  assert_int_equal(lookup(f, 1, STORE_FN_SEN, &r), EST_OK);
  assert_int_equal(r.id, id);
  store_request_clear(&r);

  /* A live key cannot get a second request. */
  int64_t dup = 0;
  assert_int_equal(store_request_create(f->s, &n, "coapd", &dup), EST_ERR_EXISTS);
  assert_int_equal(dup, id);
  /* Another function with the same key can. */
  int64_t id2 = create(f, 1, STORE_FN_SKG);
  assert_true(id2 != id);
  assert_int_equal(N_REQ(f), 2);
  assert_int_equal(N_AUDIT(f), 2);

  /* Bad arguments. */
  assert_int_equal(store_request_lookup(f->s, NULL, n.client_fp, STORE_FN_SEN,
                                        fake_now, &r),
                   EST_ERR_INVALID);
  assert_int_equal(store_request_lookup(f->s, n.spki_sha256, n.client_fp,
                                        STORE_FN__MAX, fake_now, &r),
                   EST_ERR_INVALID);
  assert_int_equal(store_request_lookup(NULL, n.spki_sha256, n.client_fp,
                                        STORE_FN_SEN, fake_now, &r),
                   EST_ERR_INVALID);
}

static void test_decide_transitions(void **state) {
  fx *f = *state;
  int64_t a = create(f, 1, STORE_FN_SEN);
  int64_t b = create(f, 2, STORE_FN_SEN);

  assert_int_equal(store_request_decide(f->s, 999, true, NULL, "op"),
                   EST_ERR_NOT_FOUND);
  assert_string_equal(store_errmsg(f->s), "request 999 not found");
  assert_int_equal(store_request_decide(f->s, a, true, "looks fine", "op"),
                   EST_OK);
  /* Only from pending. */
  assert_int_equal(store_request_decide(f->s, a, true, NULL, "op"),
                   EST_ERR_STATE);
  assert_string_equal(store_errmsg(f->s), "request 1 is approved, not pending");
  assert_int_equal(store_request_decide(f->s, a, false, "no", "op"),
                   EST_ERR_STATE);
  assert_int_equal(store_request_decide(f->s, b, false, "unknown device", "op"),
                   EST_OK);
  assert_int_equal(store_request_decide(f->s, b, true, NULL, "op"),
                   EST_ERR_STATE);
  assert_int_equal(state_of(f, a), STORE_REQ_APPROVED);
  assert_int_equal(state_of(f, b), STORE_REQ_REJECTED);

  /* Issue only from approved. */
  store_cert_new c = cert("01");
  int64_t cid;
  assert_int_equal(store_request_issue(f->s, b, &c, "coapd", &cid),
                   EST_ERR_STATE);
  assert_int_equal(store_request_issue(f->s, 999, &c, "coapd", &cid),
                   EST_ERR_NOT_FOUND);
  assert_int_equal(store_request_issue(f->s, a, &c, "coapd", &cid), EST_OK);
  store_cert_new c2 = cert("02");
  assert_int_equal(store_request_issue(f->s, a, &c2, "coapd", &cid),
                   EST_ERR_STATE);
  assert_int_equal(store_request_decide(f->s, a, true, NULL, "op"),
                   EST_ERR_STATE);
  /* Pending cannot be issued either. */
  int64_t p = create(f, 3, STORE_FN_SEN);
  assert_int_equal(store_request_issue(f->s, p, &c2, "coapd", &cid),
                   EST_ERR_STATE);
  /* The refused calls wrote nothing: 3 creates + 2 decisions + 1 issue. */
  assert_int_equal(N_AUDIT(f), 6);
  assert_int_equal(N_CERT(f), 1);

  /* Audit detail carries the reason. */
  char *d = query_text(f->path, "SELECT detail FROM audit WHERE action = 'rejected'");
  assert_string_equal(d, "unknown device");
  free(d);
  d = query_text(f->path, "SELECT actor FROM audit WHERE action = 'approved'");
  assert_string_equal(d, "op");
  free(d);
}

static void test_rejected_retry(void **state) {
  fx *f = *state;
  store_request r;
  int64_t id = create(f, 1, STORE_FN_SEN);
  fake_now = T0 + 60;
  assert_int_equal(store_request_decide(f->s, id, false, "not ours", "op"),
                   EST_OK);
  /* Retries keep getting the rejection and its reason for one TTL after the
   * decision... */
  fake_now = T0 + 159;
  assert_int_equal(lookup(f, 1, STORE_FN_SEN, &r), EST_OK);
  assert_int_equal(r.state, STORE_REQ_REJECTED);
  assert_string_equal(r.reason, "not ours");
  assert_int_equal(r.expires, T0 + 160);
  store_request_clear(&r);
  int64_t x = 0;
  store_request_new n = req(1, STORE_FN_SEN);
  assert_int_equal(store_request_create(f->s, &n, "coapd", &x), EST_ERR_EXISTS);
  /* ... then the key is free again and the row stays rejected. */
  fake_now = T0 + 160;
  assert_int_equal(lookup(f, 1, STORE_FN_SEN, &r), EST_ERR_NOT_FOUND);
  assert_int_equal(r.id, id);
  assert_int_equal(r.state, STORE_REQ_REJECTED);
  store_request_clear(&r);
  int64_t id2 = create(f, 1, STORE_FN_SEN);
  assert_true(id2 > id);
  assert_int_equal(state_of(f, id), STORE_REQ_REJECTED);
  assert_int_equal(lookup(f, 1, STORE_FN_SEN, &r), EST_OK);
  assert_int_equal(r.id, id2);
  assert_int_equal(r.state, STORE_REQ_PENDING);
  store_request_clear(&r);
}

static void test_rejection_without_ttl_holds(void **state) {
  fx *f = *state;
  store_request r;
  store_request_new n = req(1, STORE_FN_SEN);
  int64_t id;
  n.ttl = 0;
  assert_int_equal(store_request_create(f->s, &n, "coapd", &id), EST_OK);
  assert_int_equal(store_request_decide(f->s, id, false, NULL, "op"), EST_OK);
  fake_now = T0 + 100 * 86400;
  assert_int_equal(lookup(f, 1, STORE_FN_SEN, &r), EST_OK);
  assert_int_equal(r.state, STORE_REQ_REJECTED);
  assert_null(r.reason);
  assert_int_equal(r.expires, 0);
  store_request_clear(&r);
}

static void test_lookup_expires(void **state) {
  fx *f = *state;
  store_request r;
  int64_t id = create(f, 1, STORE_FN_SEN);

  fake_now = T0 + 99; /* live while now < expires */
  assert_int_equal(lookup(f, 1, STORE_FN_SEN, &r), EST_OK);
  store_request_clear(&r);
  fake_now = T0 + 100;
  assert_int_equal(lookup(f, 1, STORE_FN_SEN, &r), EST_ERR_NOT_FOUND);
  assert_int_equal(r.id, id);
  assert_int_equal(r.state, STORE_REQ_EXPIRED);
  store_request_clear(&r);
  /* Reads do not write: the row is still pending on disk, no audit. */
  assert_int_equal(state_of(f, id), STORE_REQ_PENDING);
  assert_int_equal(N_AUDIT(f), 1);
  /* The sweep records it, once, with its audit row. */
  size_t swept = 0;
  assert_int_equal(store_expire(f->s, fake_now, &swept), EST_OK);
  assert_int_equal(swept, 1);
  assert_int_equal(state_of(f, id), STORE_REQ_EXPIRED);
  assert_int_equal(query(f->path, "SELECT count(*) FROM audit WHERE"
                                  " action = 'expired' AND actor = 'system'"
                                  " AND request_id = 1 AND time = 1700000100"),
                   1);
  assert_int_equal(lookup(f, 1, STORE_FN_SEN, &r), EST_ERR_NOT_FOUND);
  store_request_clear(&r);
  assert_int_equal(N_AUDIT(f), 2);
  assert_int_equal(store_request_decide(f->s, id, true, NULL, "op"),
                   EST_ERR_STATE);

  /* Approved rows expire too. */
  int64_t a = create(f, 2, STORE_FN_SEN);
  assert_int_equal(store_request_decide(f->s, a, true, NULL, "op"), EST_OK);
  fake_now += 100;
  assert_int_equal(lookup(f, 2, STORE_FN_SEN, &r), EST_ERR_NOT_FOUND);
  assert_int_equal(r.state, STORE_REQ_EXPIRED);
  store_request_clear(&r);
  assert_int_equal(state_of(f, a), STORE_REQ_APPROVED);
  assert_int_equal(store_expire(f->s, fake_now, &swept), EST_OK);
  assert_int_equal(state_of(f, a), STORE_REQ_EXPIRED);
  store_cert_new c = cert("aa");
  int64_t cid;
  assert_int_equal(store_request_issue(f->s, a, &c, "coapd", &cid),
                   EST_ERR_STATE);
}

static void test_create_expires_overdue_row(void **state) {
  fx *f = *state;
  int64_t id = create(f, 1, STORE_FN_SEN);
  fake_now = T0 + 500;
  /* No lookup in between: create sees the overdue row and expires it. */
  int64_t id2 = create(f, 1, STORE_FN_SEN);
  assert_int_equal(state_of(f, id), STORE_REQ_EXPIRED);
  assert_int_equal(state_of(f, id2), STORE_REQ_PENDING);
  char *s = query_text(f->path, "SELECT group_concat(action, ',') FROM"
                                " (SELECT action FROM audit ORDER BY id) AS t");
  assert_string_equal(s, "pending,expired,pending");
  free(s);
}

static void test_decide_overdue(void **state) {
  fx *f = *state;
  int64_t id = create(f, 1, STORE_FN_SEN);
  fake_now = T0 + 100;
  assert_int_equal(store_request_decide(f->s, id, true, NULL, "op"),
                   EST_ERR_STATE);
  assert_string_equal(store_errmsg(f->s), "request 1 has expired");
  /* The expiry itself was recorded. */
  assert_int_equal(state_of(f, id), STORE_REQ_EXPIRED);
  assert_int_equal(N_AUDIT(f), 2);
}

static void test_expire_sweep(void **state) {
  fx *f = *state;
  size_t n = 99;
  int64_t a = create(f, 1, STORE_FN_SEN); /* expires T0+100 */
  int64_t b = create(f, 2, STORE_FN_SEN); /* approved below */
  int64_t c = create(f, 3, STORE_FN_SEN); /* rejected below */
  store_request_new nr = req(4, STORE_FN_SEN);
  nr.ttl = 0; /* never */
  int64_t d;
  assert_int_equal(store_request_create(f->s, &nr, "coapd", &d), EST_OK);
  fake_now = T0 + 10;
  assert_int_equal(store_request_decide(f->s, b, true, NULL, "op"), EST_OK);
  assert_int_equal(store_request_decide(f->s, c, false, NULL, "op"), EST_OK);
  fake_now = T0 + 50;
  int64_t e = create(f, 5, STORE_FN_SEN); /* expires T0+150 */

  assert_int_equal(store_expire(f->s, T0 + 99, &n), EST_OK);
  assert_int_equal(n, 0);
  assert_int_equal(store_expire(f->s, T0 + 110, &n), EST_OK);
  assert_int_equal(n, 2); /* a and b (b: 10 + 100) */
  assert_int_equal(state_of(f, a), STORE_REQ_EXPIRED);
  assert_int_equal(state_of(f, b), STORE_REQ_EXPIRED);
  assert_int_equal(state_of(f, c), STORE_REQ_REJECTED);
  assert_int_equal(state_of(f, d), STORE_REQ_PENDING);
  assert_int_equal(state_of(f, e), STORE_REQ_PENDING);
  assert_int_equal(query(f->path, "SELECT count(*) FROM audit WHERE action ="
                                  " 'expired' AND actor = 'system'"),
                   2);
  assert_int_equal(store_expire(f->s, T0 + 1000000, NULL), EST_OK);
  assert_int_equal(state_of(f, e), STORE_REQ_EXPIRED);
  assert_int_equal(state_of(f, d), STORE_REQ_PENDING);
  assert_int_equal(query(f->path, "SELECT count(*) FROM audit WHERE action ="
                                  " 'expired'"),
                   3);
}

/* The per-client cap of the manual policy counts live requests only. */
static void test_count_live(void **state) {
  fx *f = *state;
  size_t n = 99;
  uint8_t fp[STORE_SHA256_LEN];
  int64_t ids[3];
  for (int k = 0; k < 3; k++) {
    store_request_new r = req(k, STORE_FN_SEN);
    memset(r.client_fp, 0xAA, sizeof r.client_fp); /* one client, three keys */
    assert_int_equal(store_request_create(f->s, &r, "coapd", &ids[k]), EST_OK);
    memcpy(fp, r.client_fp, sizeof fp);
  }
  assert_int_equal(store_request_count_live(f->s, fp, fake_now, &n), EST_OK);
  assert_int_equal(n, 3);
  assert_int_equal(store_request_decide(f->s, ids[0], true, NULL, "op"), EST_OK);
  assert_int_equal(store_request_decide(f->s, ids[1], false, "no", "op"), EST_OK);
  assert_int_equal(store_request_count_live(f->s, fp, fake_now, &n), EST_OK);
  assert_int_equal(n, 2); /* pending + approved; rejected does not count */
  assert_int_equal(store_request_count_live(f->s, fp, T0 + 1000, &n), EST_OK);
  assert_int_equal(n, 0); /* all past their TTL */
  uint8_t other[STORE_SHA256_LEN];
  memset(other, 0xBB, sizeof other);
  assert_int_equal(store_request_count_live(f->s, other, fake_now, &n), EST_OK);
  assert_int_equal(n, 0);
  assert_int_equal(store_request_count_live(f->s, NULL, fake_now, &n), EST_ERR_INVALID);
}

static void test_issue_direct(void **state) {
  fx *f = *state;
  store_request_new n = req(1, STORE_FN_SREN);
  store_cert_new c = cert("FF00");
  int64_t rid = 0, cid = 0;
  store_request r;
  n.client_class = STORE_CLIENT_LDEVID;
  assert_int_equal(store_issue_direct(f->s, &n, &c, "coapd", &rid, &cid),
                   EST_OK);
  assert_int_equal(store_request_get(f->s, rid, &r), EST_OK);
  assert_int_equal(r.state, STORE_REQ_ISSUED);
  assert_int_equal(r.cert_id, cid);
  assert_int_equal(r.client_class, STORE_CLIENT_LDEVID);
  assert_int_equal(r.expires, 0);
  store_request_clear(&r);
  store_cert sc;
  assert_int_equal(store_cert_get_serial(f->s, "ff00", &sc), EST_OK);
  assert_int_equal(sc.request_id, rid);
  store_cert_clear(&sc);
  /* One audit row. */
  assert_int_equal(N_AUDIT(f), 1);
  char *s = query_text(f->path, "SELECT action || ' ' || detail FROM audit");
  assert_string_equal(s, "issued direct");
  free(s);
  /* A retry is answered with the same certificate. */
  assert_int_equal(lookup(f, 1, STORE_FN_SREN, &r), EST_OK);
  assert_int_equal(r.state, STORE_REQ_ISSUED);
  assert_int_equal(r.cert_id, cid);
  store_request_clear(&r);
  /* NULL outputs are fine; a duplicate serial writes nothing. */
  n = req(2, STORE_FN_SEN);
  assert_int_equal(store_issue_direct(f->s, &n, &c, "coapd", NULL, NULL),
                   EST_ERR_EXISTS);
  assert_int_equal(N_REQ(f), 1);
  assert_int_equal(N_CERT(f), 1);
  assert_int_equal(N_AUDIT(f), 1);
  c = cert("ff01");
  assert_int_equal(store_issue_direct(f->s, &n, &c, "coapd", NULL, NULL),
                   EST_OK);
  assert_int_equal(N_REQ(f), 2);
}

static void test_issue_duplicate_serial(void **state) {
  fx *f = *state;
  store_cert_new c = cert("abc");
  int64_t cid;
  int64_t a = create(f, 1, STORE_FN_SEN);
  int64_t b = create(f, 2, STORE_FN_SEN);
  assert_int_equal(store_request_decide(f->s, a, true, NULL, "op"), EST_OK);
  assert_int_equal(store_request_decide(f->s, b, true, NULL, "op"), EST_OK);
  assert_int_equal(store_request_issue(f->s, a, &c, "coapd", &cid), EST_OK);
  int64_t audits = N_AUDIT(f);
  c.serial = "ABC";
  assert_int_equal(store_request_issue(f->s, b, &c, "coapd", &cid),
                   EST_ERR_EXISTS);
  /* Nothing half-written: b is still approved, no extra rows. */
  assert_int_equal(state_of(f, b), STORE_REQ_APPROVED);
  assert_int_equal(N_CERT(f), 1);
  assert_int_equal(N_AUDIT(f), audits);
}

static void test_revoke(void **state) {
  fx *f = *state;
  store_request_new n = req(1, STORE_FN_SEN);
  store_cert_new c = cert("beef");
  store_request r;
  int64_t rid;
  assert_int_equal(store_issue_direct(f->s, &n, &c, "coapd", &rid, NULL), EST_OK);
  assert_int_equal(store_cert_revoke(f->s, "dead", "x", "op"), EST_ERR_NOT_FOUND);
  assert_int_equal(store_cert_revoke(f->s, "xyz", "x", "op"), EST_ERR_INVALID);
  fake_now = T0 + 5;
  assert_int_equal(store_cert_revoke(f->s, "BEEF", "key compromise", "op"),
                   EST_OK);
  assert_int_equal(store_cert_revoke(f->s, "beef", "again", "op"),
                   EST_ERR_STATE);
  assert_string_equal(store_errmsg(f->s), "certificate beef is already revoked");
  store_cert sc;
  assert_int_equal(store_cert_get_serial(f->s, "beef", &sc), EST_OK);
  assert_int_equal(sc.revoked_at, T0 + 5);
  assert_string_equal(sc.revoke_reason, "key compromise");
  store_cert_clear(&sc);
  assert_int_equal(query(f->path, "SELECT request_id FROM audit WHERE"
                                  " action = 'revoked' AND cert_serial = 'beef'"),
                   rid);
  /* A revoked certificate is not sent again: the key may ask anew. */
  assert_int_equal(lookup(f, 1, STORE_FN_SEN, &r), EST_ERR_NOT_FOUND);
  assert_int_equal(r.id, rid);
  assert_int_equal(r.state, STORE_REQ_ISSUED);
  store_request_clear(&r);
  create(f, 1, STORE_FN_SEN);
  /* Neither is an expired one. */
  n = req(2, STORE_FN_SEN);
  c = cert("c0ffee");
  c.not_after = T0 + 10;
  assert_int_equal(store_issue_direct(f->s, &n, &c, "coapd", NULL, NULL), EST_OK);
  assert_int_equal(lookup(f, 2, STORE_FN_SEN, &r), EST_OK);
  store_request_clear(&r);
  fake_now = T0 + 10;
  assert_int_equal(lookup(f, 2, STORE_FN_SEN, &r), EST_ERR_NOT_FOUND);
  store_request_clear(&r);
}

typedef struct crl_seen {
  int n;
  char serial[4][16];
  char reason[4][32];
} crl_seen;

static int on_crl(const char *serial, int64_t revoked_at, const char *reason, void *ctx) {
  crl_seen *c = ctx;
  (void)revoked_at;
  if (c->n == 4)
    return -1;
  snprintf(c->serial[c->n], sizeof c->serial[0], "%s", serial);
  snprintf(c->reason[c->n], sizeof c->reason[0], "%s", reason ? reason : "-");
  c->n++;
  return 0;
}

/* Each revocation takes a CRL number; a CRL takes the number revocations
 * handed out, or a new one; numbers only grow (docs/decisions.md §14). */
static void test_crl_numbers(void **state) {
  fx *f = *state;
  int64_t number = -1, published = -1, at = -1;
  char why[32];
  store_request_new n = req(1, STORE_FN_SEN);
  store_cert_new c = cert("aa01");
  assert_int_equal(store_issue_direct(f->s, &n, &c, "coapd", NULL, NULL), EST_OK);
  n = req(2, STORE_FN_SEN);
  c = cert("aa02");
  assert_int_equal(store_issue_direct(f->s, &n, &c, "coapd", NULL, NULL), EST_OK);
  assert_int_equal(store_crl_numbers(f->s, &number, &published), EST_OK);
  assert_int_equal(number, 0);
  assert_int_equal(published, 0);
  assert_int_equal(store_cert_revoked(f->s, "AA01", &at, why, sizeof why), EST_OK);
  assert_int_equal(at, 0);

  fake_now = T0 + 3;
  assert_int_equal(store_cert_revoke(f->s, "aa01", "keyCompromise", "op"), EST_OK);
  assert_int_equal(store_cert_revoked(f->s, "AA01", &at, why, sizeof why), EST_OK);
  assert_int_equal(at, T0 + 3);
  assert_string_equal(why, "keyCompromise");
  assert_int_equal(store_cert_revoked(f->s, "aa02", &at, NULL, 0), EST_OK);
  assert_int_equal(at, 0);
  assert_int_equal(store_cert_revoked(f->s, "dead", &at, NULL, 0), EST_OK);
  assert_int_equal(at, 0);
  assert_int_equal(store_cert_revoked(f->s, "zz", &at, NULL, 0), EST_ERR_INVALID);
  assert_int_equal(store_crl_numbers(f->s, &number, &published), EST_OK);
  assert_int_equal(number, 1);
  assert_int_equal(query(f->path, "SELECT crl_number FROM certificates WHERE serial = 'aa01'"), 1);

  /* The CRL after that revocation carries its number, and lists it. */
  crl_seen seen = {0};
  assert_int_equal(store_crl_snapshot(f->s, false, &number, on_crl, &seen), EST_OK);
  assert_int_equal(number, 1);
  assert_int_equal(seen.n, 1);
  assert_string_equal(seen.serial[0], "aa01");
  assert_string_equal(seen.reason[0], "keyCompromise");
  assert_int_equal(store_crl_published(f->s, number, "-----BEGIN X509 CRL-----\n"), EST_OK);
  assert_int_equal(store_crl_numbers(f->s, &number, &published), EST_OK);
  assert_int_equal(published, 1);
  /* Nothing new: the next CRL (a re-signing) needs a new number. */
  memset(&seen, 0, sizeof seen);
  assert_int_equal(store_crl_snapshot(f->s, false, &number, on_crl, &seen), EST_OK);
  assert_int_equal(number, 2);
  assert_int_equal(store_crl_published(f->s, number, "x"), EST_OK);
  /* Two revocations before the next CRL: it takes the higher number. */
  assert_int_equal(store_cert_revoke(f->s, "aa02", NULL, "op"), EST_OK);
  assert_int_equal(query(f->path, "SELECT crl_number FROM certificates WHERE serial = 'aa02'"), 3);
  memset(&seen, 0, sizeof seen);
  assert_int_equal(store_crl_snapshot(f->s, false, &number, on_crl, &seen), EST_OK);
  assert_int_equal(number, 3);
  assert_int_equal(seen.n, 2);
  assert_string_equal(seen.reason[1], "-");
  /* bump: a new number even so. */
  assert_int_equal(store_crl_snapshot(f->s, true, &number, on_crl, &seen), EST_OK);
  assert_int_equal(number, 4);
  /* The audit row of a revocation carries the number of its CRL. */
  assert_int_equal(query(f->path, "SELECT count(*) FROM meta WHERE key = 'crl.pem'"), 1);
  assert_int_equal(store_crl_published(f->s, 0, "x"), EST_ERR_INVALID);
  assert_int_equal(store_crl_published(f->s, 5, ""), EST_ERR_INVALID);
  /* A callback error stops the walk and is returned. */
  seen.n = 4;
  assert_int_equal(store_crl_snapshot(f->s, false, &number, on_crl, &seen), -1);
}

static void test_resent(void **state) {
  fx *f = *state;
  int64_t id = create(f, 1, STORE_FN_SEN);
  assert_int_equal(store_request_resent(f->s, id, "coapd"), EST_ERR_STATE);
  assert_int_equal(store_request_resent(f->s, 999, "coapd"), EST_ERR_NOT_FOUND);
  assert_int_equal(N_AUDIT(f), 1);
}

/* ------------------------------------------------------------ lists */

typedef struct collect {
  int n;
  int stop_after;   /* return 1 after this many (0: never) */
  int fail_after;   /* return an error after this many (0: never) */
  int64_t ids[32];
  store *s;         /* try re-entering */
  est_err reentry;
} collect;

static int collect_step(collect *c, int64_t id) {
  if (c->n < 32)
    c->ids[c->n] = id;
  c->n++;
  if (c->s != NULL) {
    int64_t m;
    c->reentry = store_audit_max_id(c->s, &m);
  }
  if (c->stop_after && c->n >= c->stop_after)
    return 1;
  if (c->fail_after && c->n >= c->fail_after)
    return EST_ERR_NOMEM;
  return 0;
}

static int on_request(void *ctx, const store_request *r) {
  return collect_step(ctx, r->id);
}
static int on_cert(void *ctx, const store_cert *c) {
  return collect_step(ctx, c->id);
}
static int on_preauth(void *ctx, const store_preauth *p) {
  return collect_step(ctx, p->id);
}
static int on_audit(void *ctx, const store_audit_row *a) {
  return collect_step(ctx, a->id);
}

static void test_request_list(void **state) {
  fx *f = *state;
  collect c = {0};
  int64_t a = create(f, 1, STORE_FN_SEN);
  int64_t b = create(f, 2, STORE_FN_SEN);
  int64_t d = create(f, 3, STORE_FN_SEN);
  assert_int_equal(store_request_decide(f->s, b, true, NULL, "op"), EST_OK);

  assert_int_equal(store_request_list(f->s, STORE_REQ_ANY, on_request, &c), EST_OK);
  assert_int_equal(c.n, 3);
  assert_int_equal(c.ids[0], a);
  assert_int_equal(c.ids[2], d);
  memset(&c, 0, sizeof c);
  assert_int_equal(store_request_list(f->s, STORE_REQ_PENDING, on_request, &c),
                   EST_OK);
  assert_int_equal(c.n, 2);
  assert_int_equal(c.ids[1], d);
  memset(&c, 0, sizeof c);
  assert_int_equal(store_request_list(f->s, STORE_REQ_ISSUED, on_request, &c),
                   EST_OK);
  assert_int_equal(c.n, 0);
  /* Stop early, fail, re-enter. */
  memset(&c, 0, sizeof c);
  c.stop_after = 1;
  assert_int_equal(store_request_list(f->s, STORE_REQ_ANY, on_request, &c), EST_OK);
  assert_int_equal(c.n, 1);
  memset(&c, 0, sizeof c);
  c.fail_after = 2;
  assert_int_equal(store_request_list(f->s, STORE_REQ_ANY, on_request, &c),
                   EST_ERR_NOMEM);
  assert_int_equal(c.n, 2);
  memset(&c, 0, sizeof c);
  c.s = f->s;
  assert_int_equal(store_request_list(f->s, STORE_REQ_ANY, on_request, &c), EST_OK);
  assert_int_equal(c.reentry, EST_ERR_STATE);
  /* The handle works normally afterwards. */
  int64_t m;
  assert_int_equal(store_audit_max_id(f->s, &m), EST_OK);
  assert_int_equal(m, 4);
  assert_int_equal(store_request_list(f->s, STORE_REQ__MAX, on_request, &c),
                   EST_ERR_INVALID);
  assert_int_equal(store_request_list(f->s, STORE_REQ_ANY, NULL, &c),
                   EST_ERR_INVALID);
  store_request r;
  assert_int_equal(store_request_get(f->s, 999, &r), EST_ERR_NOT_FOUND);
}

static void test_cert_list_and_get(void **state) {
  fx *f = *state;
  collect c = {0};
  store_cert sc;
  for (int i = 0; i < 3; i++) {
    char serial[8];
    snprintf(serial, sizeof serial, "%02x", i + 1);
    store_request_new n = req(i, STORE_FN_SEN);
    store_cert_new cn = cert(serial);
    assert_int_equal(store_issue_direct(f->s, &n, &cn, "coapd", NULL, NULL),
                     EST_OK);
  }
  assert_int_equal(store_cert_list(f->s, on_cert, &c), EST_OK);
  assert_int_equal(c.n, 3);
  assert_int_equal(store_cert_get(f->s, 2, &sc), EST_OK);
  assert_string_equal(sc.serial, "02");
  assert_string_equal(sc.client, "CN=idevid-1,O=Maker");
  store_cert_clear(&sc);
  assert_int_equal(store_cert_get(f->s, 99, &sc), EST_ERR_NOT_FOUND);
  assert_int_equal(store_cert_get_serial(f->s, "99", &sc), EST_ERR_NOT_FOUND);
  assert_int_equal(store_cert_get_serial(f->s, "zz", &sc), EST_ERR_INVALID);
  assert_int_equal(store_cert_get_serial(f->s, NULL, &sc), EST_ERR_INVALID);
  store_cert_clear(&sc);
  store_cert_clear(NULL);
}

static void test_preauth(void **state) {
  fx *f = *state;
  const char *fp = "00112233445566778899AABBCCDDEEFF00112233445566778899aabbccddeeff";
  bool hit = true;
  int64_t id = 0;
  collect c = {0};

  assert_int_equal(store_preauth_match(f->s, "CN=dev1", fp, &hit), EST_OK);
  assert_false(hit);
  assert_int_equal(store_preauth_add(f->s, STORE_PREAUTH_SUBJECT, "CN=dev1",
                                     "batch 7", "alice", &id),
                   EST_OK);
  assert_true(id > 0);
  assert_int_equal(store_preauth_add(f->s, STORE_PREAUTH_SUBJECT, "CN=dev1",
                                     NULL, "bob", NULL),
                   EST_ERR_EXISTS);
  assert_int_equal(store_preauth_add(f->s, STORE_PREAUTH_IDEVID, fp, NULL,
                                     "alice", NULL),
                   EST_OK);
  /* Stored lowercase, so the same fingerprint in another case is a dup. */
  char lower[65];
  for (int i = 0; i < 64; i++)
    lower[i] = (char)((fp[i] >= 'A' && fp[i] <= 'F') ? fp[i] + 32 : fp[i]);
  lower[64] = '\0';
  assert_int_equal(store_preauth_add(f->s, STORE_PREAUTH_IDEVID, lower, NULL,
                                     "alice", NULL),
                   EST_ERR_EXISTS);
  assert_int_equal(store_preauth_add(f->s, STORE_PREAUTH_IDEVID, "abcd", NULL,
                                     "alice", NULL),
                   EST_ERR_INVALID);
  assert_int_equal(store_preauth_add(f->s, STORE_PREAUTH__MAX, "x", NULL,
                                     "alice", NULL),
                   EST_ERR_INVALID);

  assert_int_equal(store_preauth_match(f->s, "CN=dev1", NULL, &hit), EST_OK);
  assert_true(hit);
  assert_int_equal(store_preauth_match(f->s, "CN=dev2", NULL, &hit), EST_OK);
  assert_false(hit);
  assert_int_equal(store_preauth_match(f->s, "CN=dev2", lower, &hit), EST_OK);
  assert_true(hit);
  assert_int_equal(store_preauth_match(f->s, NULL, NULL, &hit), EST_OK);
  assert_false(hit);
  assert_int_equal(store_preauth_match(f->s, NULL, "xyz", &hit), EST_ERR_INVALID);
  /* A subject entry does not match a fingerprint string or vice versa. */
  assert_int_equal(store_preauth_match(f->s, lower, NULL, &hit), EST_OK);
  assert_false(hit);

  assert_int_equal(store_preauth_list(f->s, on_preauth, &c), EST_OK);
  assert_int_equal(c.n, 2);

  assert_int_equal(store_preauth_remove(f->s, STORE_PREAUTH_SUBJECT, "CN=dev1",
                                        "bob"),
                   EST_OK);
  assert_int_equal(store_preauth_remove(f->s, STORE_PREAUTH_SUBJECT, "CN=dev1",
                                        "bob"),
                   EST_ERR_NOT_FOUND);
  assert_int_equal(store_preauth_match(f->s, "CN=dev1", NULL, &hit), EST_OK);
  assert_false(hit);
  char *s = query_text(f->path, "SELECT group_concat(action || ':' || actor ||"
                                " ':' || detail, '|') FROM"
                                " (SELECT * FROM audit ORDER BY id) AS t");
  assert_non_null(s);
  char want[400];
  snprintf(want, sizeof want,
           "preauth_add:alice:subject CN=dev1|preauth_add:alice:idevid %s|"
           "preauth_remove:bob:subject CN=dev1",
           lower);
  assert_string_equal(s, want);
  free(s);
  store_preauth_clear(NULL);
}

static void test_preauth_then_approved_request(void **state) {
  fx *f = *state;
  store_request_new n = req(1, STORE_FN_SEN);
  int64_t id, cid;
  n.initial_state = STORE_REQ_APPROVED;
  assert_int_equal(store_request_create(f->s, &n, "coapd", &id), EST_OK);
  assert_int_equal(state_of(f, id), STORE_REQ_APPROVED);
  store_cert_new c = cert("1234");
  assert_int_equal(store_request_issue(f->s, id, &c, "coapd", &cid), EST_OK);
  char *s = query_text(f->path, "SELECT group_concat(action, ',') FROM"
                                " (SELECT action FROM audit ORDER BY id) AS t");
  assert_string_equal(s, "approved,issued");
  free(s);
  n = req(2, STORE_FN_SEN);
  n.initial_state = STORE_REQ_ISSUED;
  assert_int_equal(store_request_create(f->s, &n, "coapd", &id), EST_ERR_INVALID);
  n.initial_state = STORE_REQ_PENDING;
  n.ttl = -1;
  assert_int_equal(store_request_create(f->s, &n, "coapd", &id), EST_ERR_INVALID);
}

static void test_audit_feed(void **state) {
  fx *f = *state;
  collect c = {0};
  int64_t max = -1;
  assert_int_equal(store_audit_max_id(f->s, &max), EST_OK);
  assert_int_equal(max, 0);
  int64_t a = create(f, 1, STORE_FN_SKG);
  assert_int_equal(store_request_decide(f->s, a, true, NULL, "op"), EST_OK);
  assert_int_equal(store_preauth_add(f->s, STORE_PREAUTH_SUBJECT, "CN=z", NULL,
                                     "op", NULL),
                   EST_OK);
  int64_t b = create(f, 2, STORE_FN_SEN);
  assert_int_equal(store_audit_max_id(f->s, &max), EST_OK);
  assert_int_equal(max, 4);

  /* Since a cursor, in order, limited. */
  assert_int_equal(store_audit_since(f->s, 1, 2, on_audit, &c), EST_OK);
  assert_int_equal(c.n, 2);
  assert_int_equal(c.ids[0], 2);
  assert_int_equal(c.ids[1], 3);
  memset(&c, 0, sizeof c);
  assert_int_equal(store_audit_since(f->s, 4, 0, on_audit, &c), EST_OK);
  assert_int_equal(c.n, 0);
  memset(&c, 0, sizeof c);
  assert_int_equal(store_audit_since(f->s, 0, 0, on_audit, &c), EST_OK);
  assert_int_equal(c.n, 4);
  /* Newest first, for one request. */
  memset(&c, 0, sizeof c);
  assert_int_equal(store_audit_list(f->s, a, 0, on_audit, &c), EST_OK);
  assert_int_equal(c.n, 2);
  assert_int_equal(c.ids[0], 2);
  assert_int_equal(c.ids[1], 1);
  memset(&c, 0, sizeof c);
  assert_int_equal(store_audit_list(f->s, 0, 3, on_audit, &c), EST_OK);
  assert_int_equal(c.n, 3);
  assert_int_equal(c.ids[0], 4);
  assert_int_equal(store_audit_list(f->s, -1, 3, on_audit, &c), EST_ERR_INVALID);
  (void)b;
}

typedef struct rows {
  int n;
  store_audit_row r[8];
} rows;

static int keep_audit(void *ctx, const store_audit_row *a) {
  rows *rs = ctx;
  store_audit_row *d = &rs->r[rs->n++];
  *d = *a;
  d->actor = strdup(a->actor);
  d->action_name = strdup(a->action_name);
  d->cert_serial = a->cert_serial ? strdup(a->cert_serial) : NULL;
  d->detail = a->detail ? strdup(a->detail) : NULL;
  d->subject = a->subject ? strdup(a->subject) : NULL;
  d->client = a->client ? strdup(a->client) : NULL;
  return 0;
}

static void test_audit_joined_fields(void **state) {
  fx *f = *state;
  rows rs = {0};
  int64_t a = create(f, 1, STORE_FN_SKC);
  store_cert_new c = cert("77");
  int64_t cid;
  assert_int_equal(store_request_decide(f->s, a, true, NULL, "op"), EST_OK);
  fake_now = T0 + 3;
  assert_int_equal(store_request_issue(f->s, a, &c, "coapd", &cid), EST_OK);
  assert_int_equal(store_preauth_add(f->s, STORE_PREAUTH_SUBJECT, "CN=q", NULL,
                                     "op", NULL),
                   EST_OK);
  raw_exec(f->path, "INSERT INTO audit (time, actor, action) VALUES (1, 'x', 'future')");
  assert_int_equal(store_audit_since(f->s, 0, 0, keep_audit, &rs), EST_OK);
  assert_int_equal(rs.n, 5);
  assert_int_equal(rs.r[2].action, STORE_AUDIT_ISSUED);
  assert_int_equal(rs.r[2].time, T0 + 3);
  assert_int_equal(rs.r[2].request_id, a);
  assert_string_equal(rs.r[2].cert_serial, "77");
  assert_int_equal(rs.r[2].function, STORE_FN_SKC);
  assert_string_equal(rs.r[2].subject, "CN=dev1");
  assert_string_equal(rs.r[2].client, "CN=idevid-1,O=Maker");
  assert_string_equal(rs.r[2].actor, "coapd");
  assert_int_equal(rs.r[3].action, STORE_AUDIT_PREAUTH_ADD);
  assert_int_equal(rs.r[3].request_id, 0);
  assert_int_equal(rs.r[3].function, STORE_FN__MAX);
  assert_null(rs.r[3].subject);
  /* An action this version does not know is passed on by name. */
  assert_int_equal(rs.r[4].action, STORE_AUDIT__MAX);
  assert_string_equal(rs.r[4].action_name, "future");
  for (int i = 0; i < rs.n; i++)
    store_audit_row_clear(&rs.r[i]);
  store_audit_row_clear(NULL);
}

static void test_meta(void **state) {
  fx *f = *state;
  char *v = (char *)"sentinel";
  assert_int_equal(store_meta_get(f->s, "broker.cursor", &v), EST_ERR_NOT_FOUND);
  assert_null(v);
  assert_int_equal(store_meta_set(f->s, "broker.cursor", "41"), EST_OK);
  assert_int_equal(store_meta_set(f->s, "broker.cursor", "42"), EST_OK);
  assert_int_equal(store_meta_get(f->s, "broker.cursor", &v), EST_OK);
  assert_string_equal(v, "42");
  free(v);
  assert_int_equal(store_meta_set(f->s, "", "x"), EST_ERR_INVALID);
  assert_int_equal(store_meta_set(f->s, "k", NULL), EST_ERR_INVALID);
  assert_int_equal(store_meta_set(f->s, "k", ""), EST_OK);
  /* Bookkeeping is not audited. */
  assert_int_equal(N_AUDIT(f), 0);
}

static void test_data_version(void **state) {
  fx *f = *state;
  uint64_t v1, v2, v3;
  assert_int_equal(store_data_version(f->s, &v1), EST_OK);
  create(f, 1, STORE_FN_SEN); /* our own commit: no change */
  assert_int_equal(store_data_version(f->s, &v2), EST_OK);
  assert_true(v1 == v2);
  /* Another handle's commit moves it (on PostgreSQL through NOTIFY). */
  store *other = NULL;
  char diag[256];
  store_options o = test_options();
  assert_int_equal(store_open(f->path, &o, &other, diag, sizeof diag), EST_OK);
  store_request_new n = req(2, STORE_FN_SEN);
  int64_t id;
  assert_int_equal(store_request_create(other, &n, "estctl", &id), EST_OK);
  store_close(other);
  /* A NOTIFY reaches the listener moments after the commit: wait (2 s at
   * most). SQLite sees the change at once. */
  for (int i = 0; i < 200; i++) {
    assert_int_equal(store_data_version(f->s, &v3), EST_OK);
    if (v3 != v2)
      break;
    struct timespec ts = {0, 10 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  assert_true(v3 != v2);
  assert_int_equal(store_data_version(f->s, NULL), EST_ERR_INVALID);
}

/* ------------------------------------------------------------ caps */

static void test_caps(void **state) {
  fx *f = *state;
  static char big[STORE_MAX_TEXT + 2];
  int64_t id;
  memset(big, 'a', sizeof big - 1);
  big[STORE_MAX_TEXT + 1] = '\0'; /* 1025 bytes */

  store_request_new n = req(1, STORE_FN_SEN);
  n.subject = big;
  assert_int_equal(store_request_create(f->s, &n, "coapd", &id),
                   EST_ERR_TOO_LARGE);
  n = req(1, STORE_FN_SEN);
  n.client = big;
  assert_int_equal(store_request_create(f->s, &n, "coapd", &id),
                   EST_ERR_TOO_LARGE);
  n = req(1, STORE_FN_SEN);
  assert_int_equal(store_request_create(f->s, &n, big, &id), EST_ERR_TOO_LARGE);
  n.csr_len = STORE_MAX_CSR + 1;
  assert_int_equal(store_request_create(f->s, &n, "coapd", &id),
                   EST_ERR_TOO_LARGE);
  n.csr_len = 0;
  assert_int_equal(store_request_create(f->s, &n, "coapd", &id),
                   EST_ERR_INVALID);
  n = req(1, STORE_FN_SEN);
  n.subject = NULL;
  assert_int_equal(store_request_create(f->s, &n, "coapd", &id),
                   EST_ERR_INVALID);
  n = req(1, STORE_FN_SEN);
  assert_int_equal(store_request_create(f->s, &n, NULL, &id), EST_ERR_INVALID);
  assert_int_equal(store_request_create(f->s, &n, "", &id), EST_ERR_INVALID);
  n.function = STORE_FN__MAX;
  assert_int_equal(store_request_create(f->s, &n, "coapd", &id), EST_ERR_INVALID);
  n = req(1, STORE_FN_SEN);
  n.client_class = STORE_CLIENT__MAX;
  assert_int_equal(store_request_create(f->s, &n, "coapd", &id), EST_ERR_INVALID);
  assert_int_equal(N_REQ(f), 0);

  /* Exactly at the caps is fine. */
  big[STORE_MAX_TEXT] = '\0';
  n = req(1, STORE_FN_SEN);
  n.subject = big;
  n.client = big;
  n.csr_len = STORE_MAX_CSR;
  n.client_class = STORE_CLIENT_UNKNOWN;
  assert_int_equal(store_request_create(f->s, &n, big, &id), EST_OK);
  store_request r;
  assert_int_equal(store_request_get(f->s, id, &r), EST_OK);
  assert_int_equal(strlen(r.subject), STORE_MAX_TEXT);
  assert_int_equal(r.csr_len, STORE_MAX_CSR);
  assert_int_equal(r.client_class, STORE_CLIENT_UNKNOWN);
  store_request_clear(&r);
  big[STORE_MAX_TEXT] = 'a';

  /* Reason. */
  assert_int_equal(store_request_decide(f->s, id, false, big, "op"),
                   EST_ERR_TOO_LARGE);
  assert_int_equal(state_of(f, id), STORE_REQ_PENDING);
  assert_int_equal(store_request_decide(f->s, id, true, NULL, "op"), EST_OK);

  /* Certificate. */
  int64_t cid;
  store_cert_new c = cert("01");
  c.der_len = STORE_MAX_DER + 1;
  assert_int_equal(store_request_issue(f->s, id, &c, "coapd", &cid),
                   EST_ERR_TOO_LARGE);
  c = cert("01");
  c.subject = big;
  assert_int_equal(store_request_issue(f->s, id, &c, "coapd", &cid),
                   EST_ERR_TOO_LARGE);
  c = cert("01");
  c.client = big;
  assert_int_equal(store_request_issue(f->s, id, &c, "coapd", &cid),
                   EST_ERR_TOO_LARGE);
  char serial[STORE_MAX_SERIAL + 2];
  memset(serial, 'f', sizeof serial - 1);
  serial[STORE_MAX_SERIAL + 1] = '\0';
  c = cert(serial);
  assert_int_equal(store_request_issue(f->s, id, &c, "coapd", &cid),
                   EST_ERR_TOO_LARGE);
  c = cert("12:34");
  assert_int_equal(store_request_issue(f->s, id, &c, "coapd", &cid),
                   EST_ERR_INVALID);
  c = cert("");
  assert_int_equal(store_request_issue(f->s, id, &c, "coapd", &cid),
                   EST_ERR_INVALID);
  c = cert(NULL);
  assert_int_equal(store_request_issue(f->s, id, &c, "coapd", &cid),
                   EST_ERR_INVALID);
  c = cert("01");
  c.der = NULL;
  assert_int_equal(store_request_issue(f->s, id, &c, "coapd", &cid),
                   EST_ERR_INVALID);
  serial[STORE_MAX_SERIAL] = '\0';
  c = cert(serial);
  c.der_len = STORE_MAX_DER;
  assert_int_equal(store_request_issue(f->s, id, &c, "coapd", &cid), EST_OK);

  /* Others. */
  assert_int_equal(store_cert_revoke(f->s, serial, big, "op"), EST_ERR_TOO_LARGE);
  assert_int_equal(store_preauth_add(f->s, STORE_PREAUTH_SUBJECT, big, NULL,
                                     "op", NULL),
                   EST_ERR_TOO_LARGE);
  assert_int_equal(store_preauth_add(f->s, STORE_PREAUTH_SUBJECT, "CN=a", big,
                                     "op", NULL),
                   EST_ERR_TOO_LARGE);
  assert_int_equal(store_meta_set(f->s, "k", big), EST_ERR_TOO_LARGE);
  assert_int_equal(store_preauth_match(f->s, big, NULL, &(bool){false}),
                   EST_ERR_TOO_LARGE);
}

static void test_names(void **state) {
  (void)state;
  store_req_state st;
  store_preauth_kind k;
  for (int i = 0; i < STORE_REQ__MAX; i++) {
    assert_int_equal(store_state_parse(store_state_name((store_req_state)i), &st),
                     EST_OK);
    assert_int_equal(st, i);
  }
  for (int i = 0; i < STORE_FN__MAX; i++)
    assert_string_not_equal(store_fn_name((store_fn)i), "?");
  for (int i = 0; i < STORE_PREAUTH__MAX; i++) {
    assert_int_equal(store_preauth_kind_parse(
                       store_preauth_kind_name((store_preauth_kind)i), &k),
                     EST_OK);
    assert_int_equal(k, i);
  }
  for (int i = 0; i < STORE_AUDIT__MAX; i++)
    assert_string_not_equal(store_audit_action_name((store_audit_action)i), "?");
  assert_string_equal(store_state_name(STORE_REQ_ISSUED), "issued");
  assert_string_equal(store_state_name(STORE_REQ__MAX), "?");
  assert_string_equal(store_state_name(STORE_REQ_ANY), "?");
  assert_string_equal(store_fn_name(STORE_FN_SREN), "sren");
  assert_string_equal(store_fn_name(STORE_FN__MAX), "?");
  assert_string_equal(store_audit_action_name(STORE_AUDIT_PREAUTH_REMOVE),
                      "preauth_remove");
  assert_string_equal(store_audit_action_name(STORE_AUDIT__MAX), "?");
  assert_string_equal(store_client_class_name(STORE_CLIENT_LDEVID), "ldevid");
  assert_null(store_client_class_name(STORE_CLIENT_UNKNOWN));
  assert_string_equal(store_preauth_kind_name(STORE_PREAUTH__MAX), "?");
  assert_int_equal(store_state_parse("Pending", &st), EST_ERR_INVALID);
  assert_int_equal(store_state_parse(NULL, &st), EST_ERR_INVALID);
  assert_int_equal(store_preauth_kind_parse("ldevid", &k), EST_ERR_INVALID);
  store_request_clear(NULL);
  store_request r = {0};
  store_request_clear(&r);
}

/* ------------------------------------------------------------ faults */

/* Disk full, for real: cap the file at its current size. */
static void test_disk_full(void **state) {
  fx *f = *state;
  int64_t pages = query(f->path, "PRAGMA page_count");
  char sql[64];
  int64_t first = create(f, 100, STORE_FN_SEN);
  snprintf(sql, sizeof sql, "PRAGMA max_page_count = %" PRId64, pages + 8);
  assert_int_equal(sqlite3_exec(f->db, sql, NULL, NULL, NULL), SQLITE_OK);

  est_err rc = EST_OK;
  int made = 0;
  for (int k = 0; k < 64 && rc == EST_OK; k++) {
    store_request_new n = req(k, STORE_FN_SEN);
    int64_t id;
    n.csr_len = STORE_MAX_CSR; /* grow fast */
    rc = store_request_create(f->s, &n, "coapd", &id);
    if (rc == EST_OK)
      made++;
  }
  assert_int_equal(rc, EST_ERR_IO);
  assert_non_null(strstr(store_errmsg(f->s), "full"));
  /* Every request that was created has its audit row; the failed one left
   * neither. */
  assert_int_equal(N_REQ(f), made + 1);
  assert_int_equal(N_AUDIT(f), made + 1);
  /* Other writes fail cleanly too; the handle stays usable for reads. */
  store_cert_new c = cert("0f");
  store_request_new n = req(90, STORE_FN_SEN);
  n.csr_len = STORE_MAX_CSR;
  c.der_len = STORE_MAX_DER;
  assert_int_equal(store_issue_direct(f->s, &n, &c, "coapd", NULL, NULL),
                   EST_ERR_IO);
  assert_int_equal(N_CERT(f), 0);
  assert_int_equal(state_of(f, first), STORE_REQ_PENDING);
  integrity_ok(f->path);
  /* Space again: it works. */
  assert_int_equal(sqlite3_exec(f->db, "PRAGMA max_page_count = 1000000", NULL,
                                NULL, NULL),
                   SQLITE_OK);
  assert_int_equal(store_issue_direct(f->s, &n, &c, "coapd", NULL, NULL), EST_OK);
  assert_int_equal(N_CERT(f), 1);
}

/* Fail each sqlite3_step of an operation in turn: the operation reports
 * the error and the database is exactly as before. */
typedef est_err (*op_fn)(fx *f);

static est_err op_create(fx *f) {
  store_request_new n = req(7, STORE_FN_SEN);
  int64_t id;
  return store_request_create(f->s, &n, "coapd", &id);
}
static est_err op_decide(fx *f) {
  return store_request_decide(f->s, 1, false, "because", "op");
}
static est_err op_issue(fx *f) {
  store_cert_new c = cert("99");
  int64_t cid;
  return store_request_issue(f->s, 2, &c, "coapd", &cid);
}
static est_err op_direct(fx *f) {
  store_request_new n = req(8, STORE_FN_SEN);
  store_cert_new c = cert("98");
  return store_issue_direct(f->s, &n, &c, "coapd", NULL, NULL);
}
static est_err op_revoke(fx *f) {
  return store_cert_revoke(f->s, "10", "r", "op");
}
static est_err op_expire(fx *f) {
  return store_expire(f->s, T0 + 10000, NULL);
}
/* A new request for a key whose old one is overdue: the expiry and the
 * insert are one transaction. */
static est_err op_create_overdue(fx *f) {
  store_request_new n = req(3, STORE_FN_SEN);
  int64_t id, saved = fake_now;
  fake_now = T0 + 10000;
  est_err rc = store_request_create(f->s, &n, "coapd", &id);
  fake_now = saved;
  return rc;
}
static est_err op_preauth(fx *f) {
  return store_preauth_add(f->s, STORE_PREAUTH_SUBJECT, "CN=p", NULL, "op",
                           NULL);
}
static est_err op_meta(fx *f) { return store_meta_set(f->s, "k", "v"); }

static char *snapshot(fx *f) {
  return query_text(
    f->path,
    "SELECT (SELECT group_concat(id || state || coalesce(cert_id, '-') ||"
    " coalesce(expires, '-'), ',') FROM requests) || '|' ||"
    " (SELECT count(*) FROM certificates) || '|' ||"
    " (SELECT coalesce(group_concat(revoked_at), '-') FROM certificates) || '|'"
    " || (SELECT count(*) FROM audit) || '|' || (SELECT count(*) FROM preauth)"
    " || '|' || (SELECT count(*) FROM meta)");
}

static void fault_sweep(fx *f, op_fn op, int code, est_err want) {
  char *before = snapshot(f);
  int n;
  for (n = 1; n < 100; n++) {
    arm_fault(n, code);
    est_err rc = op(f);
    int calls = step_calls;
    disarm();
    if (calls < n) { /* the fault was never reached: op completed */
      assert_int_equal(rc, EST_OK);
      break;
    }
    assert_int_equal(rc, want);
    char *after = snapshot(f);
    assert_string_equal(after, before);
    free(after);
  }
  assert_true(n > 2 && n < 100);
  char *after = snapshot(f);
  assert_string_not_equal(after, before); /* the real run changed something */
  free(after);
  free(before);
  integrity_ok(f->path);
}

static void fault_fixture(fx *f) {
  store_request_new n;
  int64_t id;
  create(f, 1, STORE_FN_SEN);                  /* 1: pending */
  int64_t b = create(f, 2, STORE_FN_SEN);      /* 2: approved */
  assert_int_equal(store_request_decide(f->s, b, true, NULL, "op"), EST_OK);
  create(f, 3, STORE_FN_SEN);                  /* 3: pending, expires */
  n = req(4, STORE_FN_SEN);
  store_cert_new c = cert("10");
  assert_int_equal(store_issue_direct(f->s, &n, &c, "coapd", &id, NULL), EST_OK);
}

static void test_fault_every_step(void **state) {
  fx *f = *state;
  struct {
    op_fn op;
    const char *name;
  } ops[] = {
    {op_create, "create"}, {op_decide, "decide"}, {op_issue, "issue"},
    {op_direct, "direct"}, {op_revoke, "revoke"}, {op_expire, "expire"},
    {op_create_overdue, "create over overdue"}, {op_preauth, "preauth"},
    {op_meta, "meta"},
  };
  for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
    /* A fresh database per operation, so each starts from the fixture. */
    store_close(f->s);
    f->s = NULL;
    remove_db(f->path);
    reopen(f);
    fault_fixture(f);
    fault_sweep(f, ops[i].op, SQLITE_IOERR_WRITE, EST_ERR_IO);
  }
  /* Busy and out-of-memory map to their codes. */
  store_close(f->s);
  f->s = NULL;
  remove_db(f->path);
  reopen(f);
  fault_fixture(f);
  fault_sweep(f, op_create, SQLITE_BUSY, EST_ERR_BUSY);
  fault_sweep(f, op_preauth, SQLITE_NOMEM, EST_ERR_NOMEM);
  fault_sweep(f, op_meta, SQLITE_CORRUPT, EST_ERR_STORE);
}

static double mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void test_locked_database(void **state) {
  fx *f = *state;
  sqlite3 *other = NULL;
  store_request r;
  int64_t id = create(f, 1, STORE_FN_SEN);
  int64_t audits = N_AUDIT(f);

  assert_int_equal(__real_sqlite3_open_v2(f->path, &other,
                                          SQLITE_OPEN_READWRITE, NULL),
                   SQLITE_OK);
  assert_int_equal(sqlite3_exec(other, "BEGIN EXCLUSIVE;"
                                       " INSERT INTO meta VALUES ('lock', '1')",
                                NULL, NULL, NULL),
                   SQLITE_OK);

  /* A write gives up after the busy timeout (100 ms), not forever. */
  double t = mono_ms();
  store_request_new n = req(2, STORE_FN_SEN);
  int64_t x;
  assert_int_equal(store_request_create(f->s, &n, "coapd", &x), EST_ERR_BUSY);
  double waited = mono_ms() - t;
  assert_true(waited >= 50.0);
  assert_true(waited < 2000.0);
  assert_non_null(strstr(store_errmsg(f->s), "locked"));
  assert_int_equal(store_request_decide(f->s, id, true, NULL, "op"),
                   EST_ERR_BUSY);
  assert_int_equal(store_meta_set(f->s, "k", "v"), EST_ERR_BUSY);
  assert_int_equal(store_expire(f->s, T0 + 1000, NULL), EST_ERR_BUSY);

  /* Reads still work in WAL mode, an overdue row too: lookups only read. */
  assert_int_equal(lookup(f, 1, STORE_FN_SEN, &r), EST_OK);
  store_request_clear(&r);
  fake_now = T0 + 100;
  assert_int_equal(lookup(f, 1, STORE_FN_SEN, &r), EST_ERR_NOT_FOUND);
  assert_int_equal(r.state, STORE_REQ_EXPIRED);
  store_request_clear(&r);

  /* Release: nothing was half-written, and the writes now succeed. */
  assert_int_equal(sqlite3_exec(other, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(other);
  assert_int_equal(N_REQ(f), 1);
  assert_int_equal(N_AUDIT(f), audits);
  assert_int_equal(state_of(f, id), STORE_REQ_PENDING);
  fake_now = T0;
  assert_int_equal(store_request_create(f->s, &n, "coapd", &x), EST_OK);
  assert_int_equal(store_request_decide(f->s, id, true, NULL, "op"), EST_OK);
}

/* Run @p fn in a child that is killed before the statement containing
 * @p kill_sql; return after checking it died by SIGKILL. */
typedef void (*child_fn)(const char *path);

static void run_killed_child(const char *path, const char *kill_sql,
                             child_fn fn) {
  fflush(NULL);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    fn(path);
    (void)kill_sql;
    _exit(3); /* not reached if the kill happened */
  }
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFSIGNALED(status));
  assert_int_equal(WTERMSIG(status), SIGKILL);
}

static const char *child_kill_sql;

static store *child_open(const char *path) {
  store *s = NULL;
  store_options o = test_options();
  if (store_open(path, &o, &s, NULL, 0) != EST_OK)
    _exit(4);
  return s;
}

static void child_create(const char *path) {
  store *s = child_open(path);
  store_request_new n = req(5, STORE_FN_SEN);
  int64_t id;
  kill_before = child_kill_sql;
  est_err rc = store_request_create(s, &n, "coapd", &id);
  _exit(rc == EST_OK ? 5 : 7);
}

static void child_issue(const char *path) {
  store *s = child_open(path);
  store_cert_new c = cert("5555");
  int64_t cid;
  kill_before = child_kill_sql;
  est_err rc = store_request_issue(s, 2, &c, "coapd", &cid);
  _exit(rc == EST_OK ? 5 : 7);
}

static void child_two_creates(const char *path) {
  store *s = child_open(path);
  store_request_new n = req(6, STORE_FN_SEN);
  int64_t id;
  if (store_request_create(s, &n, "coapd", &id) != EST_OK)
    _exit(6);
  /* Committed; now die as the next write begins. */
  kill_before = "BEGIN";
  n = req(7, STORE_FN_SEN);
  est_err rc = store_request_create(s, &n, "coapd", &id);
  _exit(rc == EST_OK ? 5 : 7);
}

static void test_crash_mid_transaction(void **state) {
  fx *f = *state;
  fault_fixture(f);
  char *before = snapshot(f);
  store_close(f->s); /* no connection across fork */
  f->s = NULL;

  /* create: after the request insert, before its audit row; and just
   * before COMMIT. */
  const char *create_points[] = {"INSERT INTO audit", "COMMIT"};
  for (size_t i = 0; i < 2; i++) {
    child_kill_sql = create_points[i];
    run_killed_child(f->path, child_kill_sql, child_create);
    char *after = snapshot(f);
    assert_string_equal(after, before);
    free(after);
    integrity_ok(f->path);
  }
  /* issue: after the certificate insert, before the request update; after
   * the update, before the audit row. */
  const char *issue_points[] = {"UPDATE requests SET state = 'issued'",
                                "INSERT INTO audit", "COMMIT"};
  for (size_t i = 0; i < 3; i++) {
    child_kill_sql = issue_points[i];
    run_killed_child(f->path, child_kill_sql, child_issue);
    char *after = snapshot(f);
    assert_string_equal(after, before);
    free(after);
    integrity_ok(f->path);
  }
  /* A committed request survives the crash that follows it. */
  run_killed_child(f->path, "BEGIN", child_two_creates);
  integrity_ok(f->path);
  assert_int_equal(query(f->path, "SELECT count(*) FROM requests r JOIN audit a"
                                  " ON a.request_id = r.id WHERE r.state ="
                                  " 'pending' AND a.action = 'pending'"),
                   3);

  /* And the database opens and works normally afterwards. */
  reopen(f);
  store_request r;
  assert_int_equal(lookup(f, 6, STORE_FN_SEN, &r), EST_OK);
  store_request_clear(&r);
  assert_int_equal(lookup(f, 5, STORE_FN_SEN, &r), EST_ERR_NOT_FOUND);
  store_request_clear(&r);
  store_cert_new c = cert("5555");
  int64_t cid;
  assert_int_equal(store_request_issue(f->s, 2, &c, "coapd", &cid), EST_OK);
  free(before);
}

/* ------------------------------------------------------------ schema 3 */

/* The client certificate's serial travels with the request (schema 3):
 * stored lowercase, NULL when not given, refused when not hex or too long. */
static void test_client_serial(void **state) {
  fx *f = *state;
  store_request r;
  int64_t id = 0, id2 = 0;
  store_request_new n = req(1, STORE_FN_SEN);
  n.client_serial = "0A1B2c3D";
  assert_int_equal(store_request_create(f->s, &n, "coapd", &id), EST_OK);
  assert_int_equal(store_request_get(f->s, id, &r), EST_OK);
  assert_non_null(r.client_serial);
  assert_string_equal(r.client_serial, "0a1b2c3d");
  store_request_clear(&r);
  assert_null(r.client_serial);
  n = req(2, STORE_FN_SEN);
  n.client_serial = "";
  assert_int_equal(store_request_create(f->s, &n, "coapd", &id2), EST_OK);
  assert_int_equal(store_request_get(f->s, id2, &r), EST_OK);
  assert_null(r.client_serial);
  store_request_clear(&r);
  int64_t before = N_REQ(f);
  n = req(3, STORE_FN_SEN);
  n.client_serial = "xyz";
  assert_int_equal(store_request_create(f->s, &n, "coapd", NULL), EST_ERR_INVALID);
  char big[STORE_MAX_SERIAL + 2];
  memset(big, 'a', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  n.client_serial = big;
  assert_int_equal(store_request_create(f->s, &n, "coapd", NULL), EST_ERR_TOO_LARGE);
  big[STORE_MAX_SERIAL] = '\0';
  n.client_serial = big;
  assert_int_equal(store_issue_direct(f->s, &n, &(store_cert_new){.serial = "77",
                   .subject = "CN=dev1", .der = der_buf, .der_len = 10}, "coapd", &id, NULL),
                   EST_OK);
  assert_int_equal(store_request_get(f->s, id, &r), EST_OK);
  assert_int_equal(strlen(r.client_serial), STORE_MAX_SERIAL);
  store_request_clear(&r);
  assert_int_equal(N_REQ(f), before + 1);
  assert_int_equal(query(f->path, "SELECT count(*) FROM requests WHERE client_serial = '0a1b2c3d'"), 1);
}

/* Schema 4: the RA a request came through is kept with it, and its audit
 * row names it beside the device (docs/decisions.md §17). */
static void test_ra(void **state) {
  fx *f = *state;
  store_request r;
  int64_t id = 0, id2 = 0;
  store_request_new n = req(1, STORE_FN_SEN);
  n.ra = "CN=registrar-1,O=acme";
  assert_int_equal(store_request_create(f->s, &n, "coapd", &id), EST_OK);
  assert_int_equal(store_request_get(f->s, id, &r), EST_OK);
  assert_non_null(r.ra);
  assert_string_equal(r.ra, "CN=registrar-1,O=acme");
  store_request_clear(&r);
  assert_null(r.ra);
  char *d = query_text(f->path, "SELECT detail FROM audit WHERE action = 'pending'");
  assert_non_null(d);
  assert_string_equal(d, "via RA CN=registrar-1,O=acme");
  free(d);
  n = req(2, STORE_FN_SEN);
  n.ra = "CN=registrar-1,O=acme";
  assert_int_equal(store_issue_direct(f->s, &n, &(store_cert_new){.serial = "78",
                   .subject = "CN=dev1", .der = der_buf, .der_len = 10}, "coapd", &id2, NULL),
                   EST_OK);
  d = query_text(f->path, "SELECT detail FROM audit WHERE action = 'issued'");
  assert_non_null(d);
  assert_string_equal(d, "direct, via RA CN=registrar-1,O=acme");
  free(d);
  /* No RA: NULL, and the audit rows are as before. */
  n = req(3, STORE_FN_SEN);
  n.ra = "";
  assert_int_equal(store_request_create(f->s, &n, "coapd", &id), EST_OK);
  assert_int_equal(store_request_get(f->s, id, &r), EST_OK);
  assert_null(r.ra);
  store_request_clear(&r);
  assert_int_equal(query(f->path, "SELECT count(*) FROM audit WHERE detail IS NULL"), 1);
  char big[STORE_MAX_TEXT + 2];
  memset(big, 'a', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  n = req(4, STORE_FN_SEN);
  n.ra = big;
  assert_int_equal(store_request_create(f->s, &n, "coapd", NULL), EST_ERR_TOO_LARGE);
}

/* Keeps a copy of the bound fingerprint of the first bound entry. */
static int on_first_preauth(void *ctx, const store_preauth *p) {
  store_preauth *out = ctx;
  if (p->idevid == NULL)
    return 0;
  out->idevid = strdup(p->idevid);
  return out->idevid != NULL ? 1 : EST_ERR_NOMEM;
}

/* A subject pre-authorisation bound to one IDevID needs both to match. */
static void test_preauth_bound(void **state) {
  fx *f = *state;
  const char *fp = "00112233445566778899AABBCCDDEEFF00112233445566778899aabbccddeeff";
  const char *lower = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
  const char *other = "ff112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
  bool hit = true;
  int64_t id = 0;
  assert_int_equal(store_preauth_add_bound(f->s, "CN=dev1,O=acme", fp, "n", "op", &id), EST_OK);
  assert_true(id > 0);
  assert_int_equal(store_preauth_match(f->s, "CN=dev1,O=acme", NULL, &hit), EST_OK);
  assert_false(hit); /* an LDevID client, or no IDevID: no */
  assert_int_equal(store_preauth_match(f->s, "CN=dev1,O=acme", other, &hit), EST_OK);
  assert_false(hit);
  assert_int_equal(store_preauth_match(f->s, "CN=dev2", lower, &hit), EST_OK);
  assert_false(hit); /* the fingerprint alone is not an idevid entry */
  assert_int_equal(store_preauth_match(f->s, "CN=dev1,O=acme", lower, &hit), EST_OK);
  assert_true(hit);
  /* One entry per subject, bound or not. */
  assert_int_equal(store_preauth_add(f->s, STORE_PREAUTH_SUBJECT, "CN=dev1,O=acme", NULL,
                                     "op", NULL), EST_ERR_EXISTS);
  assert_int_equal(store_preauth_add_bound(f->s, "CN=x", "abc", NULL, "op", NULL),
                   EST_ERR_INVALID);
  /* An unbound subject entry still matches any client. */
  assert_int_equal(store_preauth_add_bound(f->s, "CN=free", NULL, NULL, "op", NULL), EST_OK);
  assert_int_equal(store_preauth_match(f->s, "CN=free", NULL, &hit), EST_OK);
  assert_true(hit);
  assert_int_equal(store_preauth_match(f->s, "CN=free", other, &hit), EST_OK);
  assert_true(hit);
  store_preauth p = {0};
  assert_int_equal(store_preauth_list(f->s, on_first_preauth, &p), EST_OK);
  assert_non_null(p.idevid);
  assert_string_equal(p.idevid, lower);
  store_preauth_clear(&p);
  assert_int_equal(query(f->path, "SELECT count(*) FROM audit WHERE action = 'preauth_add'"
                                  " AND detail = 'subject CN=dev1,O=acme idevid "
                                  "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff'"),
                   1);
  /* Removing by the subject removes the bound entry. */
  assert_int_equal(store_preauth_remove(f->s, STORE_PREAUTH_SUBJECT, "CN=dev1,O=acme", "op"),
                   EST_OK);
  assert_int_equal(store_preauth_match(f->s, "CN=dev1,O=acme", lower, &hit), EST_OK);
  assert_false(hit);
}

/* A database of schema 2 is upgraded in place; its rows keep working with
 * NULL in the new columns. */
static void test_schema2_upgrade(void **state) {
  fx *f = *state;
  char diag[256];
  bool hit = false;
  int64_t id = create(f, 1, STORE_FN_SEN);
  assert_int_equal(store_preauth_add(f->s, STORE_PREAUTH_SUBJECT, "CN=old", NULL, "op", NULL),
                   EST_OK);
  store_close(f->s);
  f->s = NULL;
  /* Back to what 001 + 002 made. */
  raw_exec(f->path, "ALTER TABLE requests DROP COLUMN ra;"
                    " ALTER TABLE requests DROP COLUMN client_serial;"
                    " ALTER TABLE preauth DROP COLUMN idevid; PRAGMA user_version = 2");
  assert_int_equal(query(f->path, "PRAGMA user_version"), 2);
  store_options o = test_options();
  assert_int_equal(store_open(f->path, &o, &f->s, diag, sizeof diag), EST_OK);
  assert_int_equal(query(f->path, "PRAGMA user_version"), 4);
  store_request r;
  assert_int_equal(store_request_get(f->s, id, &r), EST_OK);
  assert_null(r.client_serial);
  assert_int_equal(r.state, STORE_REQ_PENDING);
  store_request_clear(&r);
  assert_int_equal(store_preauth_match(f->s, "CN=old", NULL, &hit), EST_OK);
  assert_true(hit);
  assert_int_equal(store_request_decide(f->s, id, true, NULL, "op"), EST_OK);
  integrity_ok(f->path);
}


/* ------------------------------------------------------------ PostgreSQL */

/* These run only against PostgreSQL (docs/decisions.md §21): what SQLite's
 * file checks and lock tests above show for SQLite. */

static PGconn *pg_conn(const char *path) {
  PGconn *c = PQconnectdb(path);
  assert_int_equal(PQstatus(c), CONNECTION_OK);
  return c;
}

static void pg_ok(PGconn *c, const char *sql) {
  PGresult *r = PQexec(c, sql);
  if (PQresultStatus(r) != PGRES_TUPLES_OK && PQresultStatus(r) != PGRES_COMMAND_OK)
    fail_msg("%s: %s", sql, PQresultErrorMessage(r));
  PQclear(r);
}

static void test_pg_open_creates_schema(void **state) {
  fx *f = *state;
  assert_int_equal(query(f->path, "SELECT version FROM est_schema"), store_schema_version());
  char *app = query_text(f->path, "SELECT application FROM est_schema");
  assert_non_null(app);
  assert_string_equal(app, "est-coaps");
  free(app);
  /* A second open migrates nothing and adds no row. */
  reopen(f);
  assert_int_equal(query(f->path, "SELECT count(*) FROM est_schema"), 1);
  assert_int_equal(query(f->path, "SELECT version FROM est_schema"), store_schema_version());
  /* The audit trigger is there (it drives store_data_version()). */
  assert_int_equal(query(f->path, "SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal"
                                  " AND tgrelid = 'audit'::regclass"),
                   1);
}

static void test_pg_schema_newer_refused(void **state) {
  fx *f = *state;
  char diag[256];
  store *s = NULL;
  store_close(f->s);
  f->s = NULL;
  raw_exec(f->path, "UPDATE est_schema SET version = 7");
  store_options o = test_options();
  assert_int_equal(store_open(f->path, &o, &s, diag, sizeof diag), EST_ERR_SCHEMA);
  assert_null(s);
  assert_string_equal(diag, "database schema version 7 is newer than this program (4)");
  o.read_only = true;
  assert_int_equal(store_open(f->path, &o, &s, diag, sizeof diag), EST_ERR_SCHEMA);
  assert_int_equal(query(f->path, "SELECT version FROM est_schema"), 7);
}

static void test_pg_foreign_and_missing(void **state) {
  (void)state;
  char path[TEST_DB_PATH_MAX], diag[256];
  store *s = NULL;
  store_options o = test_options();
  assert_int_equal(test_db_pg_create("foreign", path), 0);
  /* An empty database gets a schema only from a writer that may create
   * it (coapd); estctl pointed at a wrong name is told so. */
  o.create = false;
  assert_int_equal(store_open(path, &o, &s, diag, sizeof diag), EST_ERR_NOT_FOUND);
  assert_null(s);
  assert_non_null(strstr(diag, "no est-coaps schema in database foreign_"));
  o.create = true;
  o.read_only = true;
  assert_int_equal(store_open(path, &o, &s, diag, sizeof diag), EST_ERR_NOT_FOUND);
  assert_int_equal(query(path, "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()"),
                   0);
  /* Somebody else's tables are left alone. */
  raw_exec(path, "CREATE TABLE t (x INTEGER)");
  o.read_only = false;
  assert_int_equal(store_open(path, &o, &s, diag, sizeof diag), EST_ERR_SCHEMA);
  assert_non_null(strstr(diag, "holds tables but no est-coaps schema"));
  assert_int_equal(query(path, "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()"),
                   1);
  test_db_remove_files(path);
  /* No server at all: a clear error, not a hang. */
  assert_int_equal(store_open("postgresql://est@127.0.0.1:1/est", &o, &s, diag, sizeof diag),
                   EST_ERR_IO);
  assert_null(s);
  assert_non_null(strstr(diag, "cannot connect to PostgreSQL"));
}

/* Another node holds the write lock: a write waits busy_timeout, then is
 * EST_ERR_BUSY with nothing written; reads go on. A node killed while it
 * holds the lock frees it (the server ends its transaction). */
static void test_pg_write_lock(void **state) {
  fx *f = *state;
  int64_t id = create(f, 1, STORE_FN_SEN);
  PGconn *c = pg_conn(f->path);
  pg_ok(c, "BEGIN");
  pg_ok(c, "SELECT pg_advisory_xact_lock(1163089987)");
  int64_t audit = N_AUDIT(f);
  assert_int_equal(store_request_decide(f->s, id, true, NULL, "op"), EST_ERR_BUSY);
  assert_non_null(strstr(store_errmsg(f->s), "lock"));
  assert_int_equal(state_of(f, id), STORE_REQ_PENDING);
  assert_int_equal(N_AUDIT(f), audit);
  pg_ok(c, "ROLLBACK");
  assert_int_equal(store_request_decide(f->s, id, true, NULL, "op"), EST_OK);
  PQfinish(c);

  fflush(NULL);
  int pipefd[2];
  assert_int_equal(pipe(pipefd), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    PGconn *k = PQconnectdb(f->path);
    PGresult *r = PQexec(k, "BEGIN; SELECT pg_advisory_xact_lock(1163089987);"
                            " INSERT INTO meta VALUES ('half', 'written')");
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
      _exit(2);
    (void)!write(pipefd[1], "x", 1);
    for (;;)
      pause();
  }
  close(pipefd[1]);
  char b;
  assert_int_equal(read(pipefd[0], &b, 1), 1);
  close(pipefd[0]);
  kill(pid, SIGKILL);
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  /* The server notices the dead client within moments; the store's own
   * writes then go on (bounded retries, as a device retries after 5.03). */
  est_err rc = EST_ERR_BUSY;
  for (int i = 0; i < 50 && rc == EST_ERR_BUSY; i++)
    rc = store_meta_set(f->s, "after", "kill");
  assert_int_equal(rc, EST_OK);
  assert_int_equal(query(f->path, "SELECT count(*) FROM meta WHERE key = 'half'"), 0);
}

/* The server ends our connection (restart, failover, admin): that call is
 * EST_ERR_BUSY, the next one connects again, and the data version moves
 * because notices may have been missed. */
static void test_pg_reconnect(void **state) {
  fx *f = *state;
  int64_t id = create(f, 1, STORE_FN_SEN);
  uint64_t v1, v2;
  assert_int_equal(store_data_version(f->s, &v1), EST_OK);
  raw_exec(f->path, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name = 'est-coaps' AND datname = current_database()");
  assert_int_equal(store_request_decide(f->s, id, true, NULL, "op"), EST_ERR_BUSY);
  assert_int_equal(state_of(f, id), STORE_REQ_PENDING);
  assert_int_equal(store_request_decide(f->s, id, true, NULL, "op"), EST_OK);
  assert_int_equal(store_data_version(f->s, &v2), EST_OK);
  assert_true(v2 != v1);
}

static void test_pg_backup_refused(void **state) {
  fx *f = *state;
  char path[TEST_DB_PATH_MAX + 16];
  int pages = -1;
  snprintf(path, sizeof path, "%s/copy.db", f->dir);
  assert_int_equal(store_backup(f->s, path, &pages), EST_ERR_INVALID);
  assert_non_null(strstr(store_errmsg(f->s), "pg_dump"));
  struct stat sb;
  assert_int_equal(stat(path, &sb), -1);
}

/* Nodes race to record the certificate of one approved request: exactly
 * one wins, the others are told it is no longer approved. */
#define RACERS 6
static void test_pg_issue_race(void **state) {
  fx *f = *state;
  int64_t id = create(f, 1, STORE_FN_SEN);
  assert_int_equal(store_request_decide(f->s, id, true, NULL, "op"), EST_OK);
  store_close(f->s); /* no connection across fork */
  f->s = NULL;
  fflush(NULL);
  pid_t pids[RACERS];
  for (int i = 0; i < RACERS; i++) {
    pids[i] = fork();
    assert_true(pids[i] >= 0);
    if (pids[i] == 0) {
      store *s = child_open(f->path);
      char serial[16];
      snprintf(serial, sizeof serial, "aa%02d", i);
      store_cert_new c = cert(serial);
      int64_t cid;
      est_err rc = EST_ERR_BUSY;
      for (int t = 0; t < 100 && rc == EST_ERR_BUSY; t++)
        rc = store_request_issue(s, id, &c, "coapd", &cid);
      store_close(s);
      _exit(rc == EST_OK ? 10 : rc == EST_ERR_STATE ? 11 : 12);
    }
  }
  int won = 0, lost = 0;
  for (int i = 0; i < RACERS; i++) {
    int status = 0;
    assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) == 10)
      won++;
    else if (WEXITSTATUS(status) == 11)
      lost++;
  }
  assert_int_equal(won, 1);
  assert_int_equal(lost, RACERS - 1);
  assert_int_equal(N_CERT(f), 1);
  assert_int_equal(query(f->path, "SELECT count(*) FROM audit WHERE action = 'issued'"), 1);
  reopen(f);
  assert_int_equal(state_of(f, id), STORE_REQ_ISSUED);
}

int main(void) {
  /* Both backends run these. */
  const struct CMUnitTest common[] = {
    cmocka_unit_test_setup_teardown(test_open_bad_arguments, setup, teardown),
    cmocka_unit_test_setup_teardown(test_open_read_only, setup, teardown),
    cmocka_unit_test_setup_teardown(test_manual_flow, setup, teardown),
    cmocka_unit_test_setup_teardown(test_retry_key, setup, teardown),
    cmocka_unit_test_setup_teardown(test_decide_transitions, setup, teardown),
    cmocka_unit_test_setup_teardown(test_rejected_retry, setup, teardown),
    cmocka_unit_test_setup_teardown(test_rejection_without_ttl_holds, setup, teardown),
    cmocka_unit_test_setup_teardown(test_lookup_expires, setup, teardown),
    cmocka_unit_test_setup_teardown(test_create_expires_overdue_row, setup, teardown),
    cmocka_unit_test_setup_teardown(test_decide_overdue, setup, teardown),
    cmocka_unit_test_setup_teardown(test_expire_sweep, setup, teardown),
    cmocka_unit_test_setup_teardown(test_count_live, setup, teardown),
    cmocka_unit_test_setup_teardown(test_issue_direct, setup, teardown),
    cmocka_unit_test_setup_teardown(test_issue_duplicate_serial, setup, teardown),
    cmocka_unit_test_setup_teardown(test_revoke, setup, teardown),
    cmocka_unit_test_setup_teardown(test_crl_numbers, setup, teardown),
    cmocka_unit_test_setup_teardown(test_resent, setup, teardown),
    cmocka_unit_test_setup_teardown(test_request_list, setup, teardown),
    cmocka_unit_test_setup_teardown(test_cert_list_and_get, setup, teardown),
    cmocka_unit_test_setup_teardown(test_preauth, setup, teardown),
    cmocka_unit_test_setup_teardown(test_preauth_then_approved_request, setup, teardown),
    cmocka_unit_test_setup_teardown(test_audit_feed, setup, teardown),
    cmocka_unit_test_setup_teardown(test_audit_joined_fields, setup, teardown),
    cmocka_unit_test_setup_teardown(test_meta, setup, teardown),
    cmocka_unit_test_setup_teardown(test_data_version, setup, teardown),
    cmocka_unit_test_setup_teardown(test_caps, setup, teardown),
    cmocka_unit_test(test_names),
    cmocka_unit_test_setup_teardown(test_client_serial, setup, teardown),
    cmocka_unit_test_setup_teardown(test_ra, setup, teardown),
    cmocka_unit_test_setup_teardown(test_preauth_bound, setup, teardown),
  };
  /* What only an SQLite file has: its header, pragmas, the fault hooks
   * on sqlite3_step and file locks. */
  const struct CMUnitTest sqlite_only[] = {
    cmocka_unit_test_setup_teardown(test_open_creates_schema, setup, teardown),
    cmocka_unit_test_setup_teardown(test_open_synchronous, setup, teardown),
    cmocka_unit_test_setup_teardown(test_open_missing_without_create, setup, teardown),
    cmocka_unit_test_setup_teardown(test_open_schema_newer_refused, setup, teardown),
    cmocka_unit_test_setup_teardown(test_open_foreign_database_refused, setup, teardown),
    cmocka_unit_test_setup_teardown(test_disk_full, setup, teardown),
    cmocka_unit_test_setup_teardown(test_fault_every_step, setup, teardown),
    cmocka_unit_test_setup_teardown(test_locked_database, setup, teardown),
    cmocka_unit_test_setup_teardown(test_crash_mid_transaction, setup, teardown),
    cmocka_unit_test_setup_teardown(test_schema2_upgrade, setup, teardown),
  };
  const struct CMUnitTest pg_only[] = {
    cmocka_unit_test_setup_teardown(test_pg_open_creates_schema, setup, teardown),
    cmocka_unit_test_setup_teardown(test_pg_schema_newer_refused, setup, teardown),
    cmocka_unit_test_setup_teardown(test_pg_write_lock, setup, teardown),
    cmocka_unit_test_setup_teardown(test_pg_reconnect, setup, teardown),
    cmocka_unit_test_setup_teardown(test_pg_backup_refused, setup, teardown),
    cmocka_unit_test_setup_teardown(test_pg_issue_race, setup, teardown),
    cmocka_unit_test(test_pg_foreign_and_missing),
  };
  int failed = cmocka_run_group_tests_name("common", common, NULL, NULL);
  if (test_db_is_pg())
    failed += cmocka_run_group_tests_name("postgresql", pg_only, NULL, NULL);
  else
    failed += cmocka_run_group_tests_name("sqlite", sqlite_only, NULL, NULL);
  return failed;
}
