/* The est-coaps store: SQLite persistence of requests, certificates,
 * pre-authorisations and the audit trail (docs/decisions.md §7). See store.h. */
#define _POSIX_C_SOURCE 200809L

#include "store.h"
#include "store_schema.h"
#include "db.h"

#include <errno.h>
#include <unistd.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define STORE_ERRMSG_LEN 512

/* Column lists shared by the statements that read whole rows; the read_*
 * functions below depend on this order. */
#define REQ_COLS                                                               \
  "r.id, r.state, r.function, r.spki_sha256, r.client_fp, r.client, "        \
  "r.client_class, r.subject, r.csr, r.reason, r.created, r.updated, "        \
  "r.expires, r.cert_id, r.client_serial, r.ra"
enum { RC_ID, RC_STATE, RC_FUNCTION, RC_SPKI, RC_FP, RC_CLIENT, RC_CLASS,
       RC_SUBJECT, RC_CSR, RC_REASON, RC_CREATED, RC_UPDATED, RC_EXPIRES,
       RC_CERT_ID, RC_CLIENT_SERIAL, RC_RA, RC__N };
/* The lookup adds the issued certificate's revocation and end of validity. */
enum { RC_REVOKED_AT = RC__N, RC_NOT_AFTER };

#define CERT_COLS                                                              \
  "id, serial, request_id, subject, client, not_before, not_after, der, "     \
  "revoked_at, revoke_reason, created"
#define PREAUTH_COLS "id, kind, value, note, created, actor, idevid"
#define AUDIT_COLS                                                             \
  "a.id, a.time, a.actor, a.action, a.request_id, a.cert_serial, a.detail, "  \
  "r.function, r.subject, r.client, c.crl_number, r.client_serial, r.client_fp"

/* Every statement, prepared once at open (SQLITE_PREPARE_PERSISTENT). */
enum stmt_id {
  ST_AUDIT_INSERT,
  ST_REQ_LOOKUP,
  ST_REQ_GET,
  ST_REQ_STATE,
  ST_REQ_INSERT,
  ST_REQ_DECIDE,
  ST_REQ_EXPIRE_ONE,
  ST_REQ_SET_ISSUED,
  ST_REQ_LIST_ALL,
  ST_REQ_LIST_STATE,
  ST_EXPIRE_AUDIT,
  ST_EXPIRE_UPDATE,
  ST_CERT_INSERT,
  ST_CERT_GET_ID,
  ST_CERT_GET_SERIAL,
  ST_CERT_LIST,
  ST_CERT_REVOKE,
  ST_CERT_REVOKED,
  ST_CRL_NEXT,
  ST_CRL_SET_CERT,
  ST_CRL_ENTRIES,
  ST_CRL_META,
  ST_PREAUTH_INSERT,
  ST_PREAUTH_DELETE,
  ST_PREAUTH_LIST,
  ST_PREAUTH_MATCH,
  ST_AUDIT_SINCE,
  ST_AUDIT_LIST_ALL,
  ST_AUDIT_LIST_REQ,
  ST_AUDIT_MAX,
  ST_REQ_COUNT_LIVE,
  ST_REQ_COUNT_PENDING,
  ST_META_GET,
  ST_META_SET,
  ST__MAX
};

static const char *const stmt_sql[ST__MAX] = {
  [ST_AUDIT_INSERT] =
    "INSERT INTO audit (time, actor, action, request_id, cert_serial, detail)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
  /* The newest row for the retry key (docs/decisions.md §7). */
  [ST_REQ_LOOKUP] =
    "SELECT " REQ_COLS ", c.revoked_at, c.not_after FROM requests r"
    " LEFT JOIN certificates c ON c.id = r.cert_id"
    " WHERE r.spki_sha256 = ?1 AND r.client_fp = ?2 AND r.function = ?3"
    " ORDER BY r.id DESC LIMIT 1",
  [ST_REQ_GET] = "SELECT " REQ_COLS " FROM requests r WHERE r.id = ?1",
  [ST_REQ_STATE] =
    "SELECT r.state, r.created, r.expires, c.serial FROM requests r"
    " LEFT JOIN certificates c ON c.id = r.cert_id WHERE r.id = ?1",
  [ST_REQ_INSERT] =
    "INSERT INTO requests (state, function, spki_sha256, client_fp, client,"
    " client_class, subject, csr, created, updated, expires, client_serial, ra)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, ?10, ?11, ?12) RETURNING id",
  [ST_REQ_DECIDE] =
    "UPDATE requests SET state = ?2, reason = ?3, updated = ?4, expires = ?5"
    " WHERE id = ?1 AND state = 'pending'",
  [ST_REQ_EXPIRE_ONE] =
    "UPDATE requests SET state = 'expired', updated = ?2"
    " WHERE id = ?1 AND state IN ('pending', 'approved')"
    " AND expires IS NOT NULL AND expires <= ?2",
  [ST_REQ_SET_ISSUED] =
    "UPDATE requests SET state = 'issued', cert_id = ?2, updated = ?3"
    " WHERE id = ?1 AND state = 'approved'",
  [ST_REQ_LIST_ALL] = "SELECT " REQ_COLS " FROM requests r ORDER BY r.id",
  [ST_REQ_LIST_STATE] =
    "SELECT " REQ_COLS " FROM requests r WHERE r.state = ?1 ORDER BY r.id",
  [ST_EXPIRE_AUDIT] =
    "INSERT INTO audit (time, actor, action, request_id, detail)"
    " SELECT ?1, '" STORE_ACTOR_SYSTEM "', 'expired', id, 'ttl' FROM requests"
    " WHERE state IN ('pending', 'approved') AND expires IS NOT NULL"
    " AND expires <= ?1 ORDER BY id",
  [ST_EXPIRE_UPDATE] =
    "UPDATE requests SET state = 'expired', updated = ?1"
    " WHERE state IN ('pending', 'approved') AND expires IS NOT NULL"
    " AND expires <= ?1",
  [ST_CERT_INSERT] =
    "INSERT INTO certificates (serial, request_id, subject, client,"
    " not_before, not_after, der, created)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) RETURNING id",
  [ST_CERT_GET_ID] = "SELECT " CERT_COLS " FROM certificates WHERE id = ?1",
  [ST_CERT_GET_SERIAL] =
    "SELECT " CERT_COLS " FROM certificates WHERE serial = ?1",
  [ST_CERT_LIST] = "SELECT " CERT_COLS " FROM certificates ORDER BY id",
  [ST_CERT_REVOKE] =
    "UPDATE certificates SET revoked_at = ?2, revoke_reason = ?3"
    " WHERE serial = ?1 AND revoked_at IS NULL"
    " RETURNING request_id",
  [ST_CERT_REVOKED] =
    "SELECT revoked_at, revoke_reason FROM certificates"
    " WHERE serial = ?1 AND revoked_at IS NOT NULL",
  /* One more CRL number (docs/decisions.md §14). */
  [ST_CRL_NEXT] =
    "INSERT INTO meta (key, value) VALUES ('crl.number', '1')"
    " ON CONFLICT (key) DO UPDATE SET value = CAST(CAST(meta.value AS BIGINT) + 1 AS TEXT)"
    " RETURNING CAST(meta.value AS BIGINT)",
  [ST_CRL_SET_CERT] = "UPDATE certificates SET crl_number = ?2 WHERE serial = ?1",
  [ST_CRL_ENTRIES] =
    "SELECT serial, revoked_at, revoke_reason FROM certificates"
    " WHERE revoked_at IS NOT NULL ORDER BY revoked_at, id",
  [ST_CRL_META] =
    "SELECT (SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'crl.number'),"
    " (SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'crl.published')",
  [ST_PREAUTH_INSERT] =
    "INSERT INTO preauth (kind, value, note, created, actor, idevid)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id",
  [ST_PREAUTH_DELETE] = "DELETE FROM preauth WHERE kind = ?1 AND value = ?2",
  [ST_PREAUTH_LIST] = "SELECT " PREAUTH_COLS " FROM preauth ORDER BY id",
  [ST_PREAUTH_MATCH] =
    /* A bound subject entry needs the IDevID as well (schema 3). */
    "SELECT 1 FROM preauth WHERE (kind = 'subject' AND value = ?1"
    " AND (idevid IS NULL OR idevid = ?2))"
    " OR (kind = 'idevid' AND value = ?2) LIMIT 1",
  [ST_AUDIT_SINCE] =
    "SELECT " AUDIT_COLS " FROM audit a"
    " LEFT JOIN requests r ON r.id = a.request_id"
    " LEFT JOIN certificates c ON c.serial = a.cert_serial"
    " WHERE a.id > ?1 ORDER BY a.id LIMIT ?2",
  [ST_AUDIT_LIST_ALL] =
    "SELECT " AUDIT_COLS " FROM audit a"
    " LEFT JOIN requests r ON r.id = a.request_id"
    " LEFT JOIN certificates c ON c.serial = a.cert_serial"
    " ORDER BY a.id DESC LIMIT ?1",
  [ST_AUDIT_LIST_REQ] =
    "SELECT " AUDIT_COLS " FROM audit a"
    " LEFT JOIN requests r ON r.id = a.request_id"
    " LEFT JOIN certificates c ON c.serial = a.cert_serial"
    " WHERE a.request_id = ?1 ORDER BY a.id DESC LIMIT ?2",
  [ST_AUDIT_MAX] = "SELECT coalesce(max(id), 0) FROM audit",
  [ST_REQ_COUNT_LIVE] =
      "SELECT count(*) FROM requests WHERE client_fp = ?1 AND state IN "
      "('pending', 'approved') AND (expires IS NULL OR expires > ?2)",
  [ST_REQ_COUNT_PENDING] =
      "SELECT count(*) FROM requests WHERE state = 'pending'"
      " AND (expires IS NULL OR expires > ?1)",
  [ST_META_GET] = "SELECT value FROM meta WHERE key = ?1",
  [ST_META_SET] =
    "INSERT INTO meta (key, value) VALUES (?1, ?2)"
    " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
};

struct store {
  db *db;
  db_stmt *st[ST__MAX];
  bool read_only;
  bool in_callback;
  int64_t (*clock)(void *);
  void *clock_ctx;
  char err[STORE_ERRMSG_LEN];
};

/* ------------------------------------------------------------ names */

static const char *const state_names[STORE_REQ__MAX] = {
  [STORE_REQ_PENDING] = "pending",   [STORE_REQ_APPROVED] = "approved",
  [STORE_REQ_REJECTED] = "rejected", [STORE_REQ_ISSUED] = "issued",
  [STORE_REQ_EXPIRED] = "expired",
};
static const char *const fn_names[STORE_FN__MAX] = {
  [STORE_FN_SEN] = "sen", [STORE_FN_SREN] = "sren",
  [STORE_FN_SKG] = "skg", [STORE_FN_SKC] = "skc",
};
static const char *const class_names[STORE_CLIENT__MAX] = {
  [STORE_CLIENT_UNKNOWN] = NULL, [STORE_CLIENT_IDEVID] = "idevid",
  [STORE_CLIENT_LDEVID] = "ldevid",
};
static const char *const kind_names[STORE_PREAUTH__MAX] = {
  [STORE_PREAUTH_SUBJECT] = "subject", [STORE_PREAUTH_IDEVID] = "idevid",
};
static const char *const action_names[STORE_AUDIT__MAX] = {
  [STORE_AUDIT_PENDING] = "pending",
  [STORE_AUDIT_APPROVED] = "approved",
  [STORE_AUDIT_REJECTED] = "rejected",
  [STORE_AUDIT_ISSUED] = "issued",
  [STORE_AUDIT_EXPIRED] = "expired",
  [STORE_AUDIT_REVOKED] = "revoked",
  [STORE_AUDIT_PREAUTH_ADD] = "preauth_add",
  [STORE_AUDIT_PREAUTH_REMOVE] = "preauth_remove",
  [STORE_AUDIT_REISSUED] = "reissued",
  [STORE_AUDIT_PRUNED] = "pruned",
};

/* Index of @p name in @p names, or -1. */
static int name_index(const char *const *names, int n, const char *name) {
  if (name == NULL)
    return -1;
  for (int i = 0; i < n; i++)
    if (names[i] != NULL && strcmp(names[i], name) == 0)
      return i;
  return -1;
}

const char *store_state_name(store_req_state st) {
  if (st < 0 || st >= STORE_REQ__MAX)
    return "?";
  return state_names[st];
}

est_err store_state_parse(const char *name, store_req_state *out) {
  int i = name_index(state_names, STORE_REQ__MAX, name);
  if (i < 0 || out == NULL)
    return EST_ERR_INVALID;
  *out = (store_req_state)i;
  return EST_OK;
}

const char *store_fn_name(store_fn fn) {
  if (fn < 0 || fn >= STORE_FN__MAX)
    return "?";
  return fn_names[fn];
}

const char *store_client_class_name(store_client_class c) {
  if (c < 0 || c >= STORE_CLIENT__MAX)
    return NULL;
  return class_names[c];
}

const char *store_preauth_kind_name(store_preauth_kind k) {
  if (k < 0 || k >= STORE_PREAUTH__MAX)
    return "?";
  return kind_names[k];
}

est_err store_preauth_kind_parse(const char *name, store_preauth_kind *out) {
  int i = name_index(kind_names, STORE_PREAUTH__MAX, name);
  if (i < 0 || out == NULL)
    return EST_ERR_INVALID;
  *out = (store_preauth_kind)i;
  return EST_OK;
}

const char *store_audit_action_name(store_audit_action a) {
  if (a < 0 || a >= STORE_AUDIT__MAX)
    return "?";
  return action_names[a];
}

int store_schema_version(void) { return store_migrations_count; }

bool store_path_is_uri(const char *path) { return db_is_pg_uri(path); }

/* ------------------------------------------------------------ errors */

static est_err fail(store *s, est_err rc, const char *fmt, ...)
  __attribute__((format(printf, 3, 4)));

static est_err fail(store *s, est_err rc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(s->err, sizeof s->err, fmt, ap);
  va_end(ap);
  return rc;
}

/* Record a SQLite failure @p rc during @p what. Prefer the connection's own
 * message; fall back to the generic text if the connection holds another
 * code (an injected fault, or an error from a reset statement). */
static est_err db_fail(store *s, int rc, const char *what) {
  const char *msg = db_errcode(s->db) == rc ? db_errmsg(s->db) : sqlite3_errstr(rc);
  est_err e = db_map_code(rc);
  if (e == EST_OK)
    e = EST_ERR_STORE; /* an unexpected ROW/DONE */
  return fail(s, e, "%s: %s", what, msg);
}

const char *store_errmsg(const store *s) {
  return s == NULL ? "no store" : s->err;
}

/* Checks at the top of every entry point. */
static est_err enter(store *s) {
  if (s == NULL)
    return EST_ERR_INVALID;
  if (s->in_callback)
    return fail(s, EST_ERR_STATE, "store called from its own list callback");
  s->err[0] = '\0';
  return EST_OK;
}

static est_err enter_write(store *s) {
  est_err rc = enter(s);
  if (rc != EST_OK)
    return rc;
  if (s->read_only)
    return fail(s, EST_ERR_INVALID, "store is open read-only");
  return EST_OK;
}

static int64_t clock_now(const store *s) {
  return s->clock != NULL ? s->clock(s->clock_ctx) : (int64_t)time(NULL);
}

/* ------------------------------------------------------------ input checks */

static est_err check_text(store *s, const char *v, bool required,
                          const char *what) {
  if (v == NULL || v[0] == '\0') {
    if (required)
      return fail(s, EST_ERR_INVALID, "%s is required", what);
    return EST_OK;
  }
  if (strnlen(v, STORE_MAX_TEXT + 1) > STORE_MAX_TEXT)
    return fail(s, EST_ERR_TOO_LARGE, "%s is longer than %u bytes", what,
                STORE_MAX_TEXT);
  return EST_OK;
}

static est_err check_blob(store *s, const uint8_t *p, size_t len, size_t cap,
                          const char *what) {
  if (p == NULL || len == 0)
    return fail(s, EST_ERR_INVALID, "%s is required", what);
  if (len > cap)
    return fail(s, EST_ERR_TOO_LARGE, "%s is %zu bytes, over the %zu cap", what,
                len, cap);
  return EST_OK;
}

/* Copy hex @p in to @p out in lowercase; 1..@p max digits. */
static bool hex_lower(const char *in, char *out, size_t max, size_t exact) {
  size_t n = 0;
  if (in == NULL)
    return false;
  for (; in[n] != '\0'; n++) {
    char c = in[n];
    if (n >= max)
      return false;
    if (c >= 'A' && c <= 'F')
      c = (char)(c - 'A' + 'a');
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
      return false;
    out[n] = c;
  }
  out[n] = '\0';
  return n > 0 && (exact == 0 || n == exact);
}

static est_err check_request_new(store *s, const store_request_new *in) {
  est_err rc;
  if (in == NULL)
    return fail(s, EST_ERR_INVALID, "no request");
  if (in->function < 0 || in->function >= STORE_FN__MAX)
    return fail(s, EST_ERR_INVALID, "bad EST function %d", (int)in->function);
  if (in->client_class < 0 || in->client_class >= STORE_CLIENT__MAX)
    return fail(s, EST_ERR_INVALID, "bad client class %d",
                (int)in->client_class);
  if ((rc = check_text(s, in->client, true, "client")) != EST_OK ||
      (rc = check_text(s, in->subject, true, "subject")) != EST_OK ||
      (rc = check_blob(s, in->csr, in->csr_len, STORE_MAX_CSR, "CSR")) != EST_OK)
    return rc;
  if (in->client_serial != NULL && in->client_serial[0] != '\0') {
    char hex[STORE_MAX_SERIAL + 1];
    if (strnlen(in->client_serial, STORE_MAX_SERIAL + 1) > STORE_MAX_SERIAL)
      return fail(s, EST_ERR_TOO_LARGE, "client serial is longer than %u hex digits",
                  STORE_MAX_SERIAL);
    if (!hex_lower(in->client_serial, hex, STORE_MAX_SERIAL, 0))
      return fail(s, EST_ERR_INVALID, "client serial must be hex digits");
  }
  if (in->ra && in->ra[0] && (rc = check_text(s, in->ra, true, "RA")) != EST_OK)
    return rc;
  return EST_OK;
}

/* The audit detail of a request an RA made: "via RA <subject>" (plus
 * @p base), so the trail names both the RA and the device (the row's
 * client). NULL when there is no RA and no base. */
static const char *ra_detail(const store_request_new *in, const char *base, char *buf,
                             size_t cap) {
  if (!in->ra || !in->ra[0])
    return base;
  snprintf(buf, cap, "%s%svia RA %s", base ? base : "", base ? ", " : "", in->ra);
  return buf;
}

/* Validates @p in and writes its normalised serial to @p serial. */
static est_err check_cert_new(store *s, const store_cert_new *in,
                              char serial[STORE_MAX_SERIAL + 1]) {
  est_err rc;
  if (in == NULL)
    return fail(s, EST_ERR_INVALID, "no certificate");
  if (in->serial != NULL &&
      strnlen(in->serial, STORE_MAX_SERIAL + 1) > STORE_MAX_SERIAL)
    return fail(s, EST_ERR_TOO_LARGE, "serial is longer than %u hex digits",
                STORE_MAX_SERIAL);
  if (!hex_lower(in->serial, serial, STORE_MAX_SERIAL, 0))
    return fail(s, EST_ERR_INVALID, "serial must be 1-%u hex digits",
                STORE_MAX_SERIAL);
  if ((rc = check_text(s, in->subject, true, "certificate subject")) != EST_OK ||
      (rc = check_text(s, in->client, false, "certificate client")) != EST_OK ||
      (rc = check_blob(s, in->der, in->der_len, STORE_MAX_DER,
                       "certificate")) != EST_OK)
    return rc;
  return EST_OK;
}

/* ------------------------------------------------------------ statements */

/* A statement ready for binding: reset and unbound. */
static db_stmt *stmt(store *s, enum stmt_id id) {
  db_stmt *st = s->st[id];
  db_reset(st);
  return st;
}

/* Binding: remember the first failure so a run of binds is checked once. */
#define BIND(brc, call)                                                        \
  do {                                                                         \
    if ((brc) == SQLITE_OK)                                                    \
      (brc) = (call);                                                          \
  } while (0)

static int bind_text(db_stmt *st, int i, const char *v) {
  return v != NULL ? db_bind_text(st, i, v)
                   : db_bind_null(st, i);
}

static int bind_opt_int(db_stmt *st, int i, int64_t v) {
  return v != 0 ? db_bind_int64(st, i, v) : db_bind_null(st, i);
}

/* Step a statement that returns no rows; reset it. *raw gets SQLite's code. */
static est_err exec_done(store *s, db_stmt *st, const char *what,
                         int *raw) {
  int rc = db_step(st);
  est_err e = EST_OK;
  if (raw != NULL)
    *raw = rc;
  if (rc != SQLITE_DONE)
    e = db_fail(s, rc, what);
  db_reset(st);
  return e;
}

/* Step an INSERT ... RETURNING id; reset it. *id gets the new row's id. */
static est_err exec_returning(store *s, db_stmt *st, const char *what, int *raw,
                              int64_t *id) {
  int rc = db_step(st);
  est_err e = EST_OK;
  if (raw != NULL)
    *raw = rc;
  if (rc == SQLITE_ROW)
    *id = db_column_int64(st, 0);
  else
    e = db_fail(s, rc == SQLITE_DONE ? SQLITE_ERROR : rc, what);
  db_reset(st);
  return e;
}

static est_err tx_begin(store *s) {
  int rc = db_begin(s->db);
  return rc == SQLITE_OK ? EST_OK : db_fail(s, rc, "begin");
}

static void tx_rollback(store *s) { db_rollback(s->db); }

static est_err tx_commit(store *s) {
  int rc = db_commit(s->db);
  if (rc == SQLITE_OK)
    return EST_OK;
  est_err e = db_fail(s, rc, "commit");
  tx_rollback(s);
  return e;
}

/* Finish a write transaction: commit on success, else roll back. */
static est_err tx_end(store *s, est_err rc) {
  if (rc == EST_OK)
    return tx_commit(s);
  tx_rollback(s);
  return rc;
}

static est_err audit_insert(store *s, int64_t time_, const char *actor,
                            store_audit_action action, int64_t request_id,
                            const char *serial, const char *detail) {
  db_stmt *st = stmt(s, ST_AUDIT_INSERT);
  int brc = SQLITE_OK;
  BIND(brc, db_bind_int64(st, 1, time_));
  BIND(brc, db_bind_text(st, 2, actor));
  BIND(brc, db_bind_text(st, 3, action_names[action]));
  BIND(brc, bind_opt_int(st, 4, request_id));
  BIND(brc, bind_text(st, 5, serial));
  BIND(brc, bind_text(st, 6, detail));
  if (brc != SQLITE_OK)
    return db_fail(s, brc, "audit bind");
  return exec_done(s, st, "audit insert", NULL);
}

/* ------------------------------------------------------------ row reading */

static int64_t col_opt_int(db_stmt *st, int i) {
  return db_column_null(st, i) ? 0
                                                    : db_column_int64(st, i);
}

/* A malloc'd copy of a TEXT column, NULL for SQL NULL. *oom on failure. */
static char *col_strdup(db_stmt *st, int i, bool *oom) {
  const char *t = db_column_text(st, i);
  if (t == NULL)
    return NULL;
  size_t n = (size_t)db_column_bytes(st, i);
  char *p = malloc(n + 1);
  if (p == NULL) {
    *oom = true;
    return NULL;
  }
  memcpy(p, t, n);
  p[n] = '\0';
  return p;
}

static uint8_t *col_blobdup(db_stmt *st, int i, size_t *len, bool *oom) {
  const void *b = db_column_blob(st, i);
  size_t n = (size_t)db_column_bytes(st, i);
  *len = 0;
  if (b == NULL || n == 0)
    return NULL;
  uint8_t *p = malloc(n);
  if (p == NULL) {
    *oom = true;
    return NULL;
  }
  memcpy(p, b, n);
  *len = n;
  return p;
}

static bool col_hash(db_stmt *st, int i, uint8_t out[STORE_SHA256_LEN]) {
  const void *b = db_column_blob(st, i);
  if (b == NULL || db_column_bytes(st, i) != (int)STORE_SHA256_LEN)
    return false;
  memcpy(out, b, STORE_SHA256_LEN);
  return true;
}

static int col_name(db_stmt *st, int i, const char *const *names, int n) {
  return name_index(names, n, db_column_text(st, i));
}

void store_request_clear(store_request *r) {
  if (r == NULL)
    return;
  free(r->client);
  free(r->subject);
  free(r->csr);
  free(r->reason);
  free(r->client_serial);
  free(r->ra);
  memset(r, 0, sizeof *r);
}

void store_cert_clear(store_cert *c) {
  if (c == NULL)
    return;
  free(c->serial);
  free(c->subject);
  free(c->client);
  free(c->der);
  free(c->revoke_reason);
  memset(c, 0, sizeof *c);
}

void store_preauth_clear(store_preauth *p) {
  if (p == NULL)
    return;
  free(p->value);
  free(p->note);
  free(p->actor);
  free(p->idevid);
  memset(p, 0, sizeof *p);
}

void store_audit_row_clear(store_audit_row *a) {
  if (a == NULL)
    return;
  free(a->actor);
  free(a->action_name);
  free(a->cert_serial);
  free(a->detail);
  free(a->subject);
  free(a->client);
  free(a->client_serial);
  memset(a, 0, sizeof *a);
}

/* Read a row of REQ_COLS into @p r (cleared on failure). */
static est_err read_request(store *s, db_stmt *st, store_request *r) {
  bool oom = false;
  int state = col_name(st, RC_STATE, state_names, STORE_REQ__MAX);
  int fn = col_name(st, RC_FUNCTION, fn_names, STORE_FN__MAX);
  int cls = db_column_null(st, RC_CLASS)
              ? STORE_CLIENT_UNKNOWN
              : col_name(st, RC_CLASS, class_names, STORE_CLIENT__MAX);

  memset(r, 0, sizeof *r);
  r->id = db_column_int64(st, RC_ID);
  if (state < 0 || fn < 0 || cls < 0 || !col_hash(st, RC_SPKI, r->spki_sha256) ||
      !col_hash(st, RC_FP, r->client_fp))
    return fail(s, EST_ERR_STORE, "request %" PRId64 " holds invalid values",
                r->id);
  r->state = (store_req_state)state;
  r->function = (store_fn)fn;
  r->client_class = (store_client_class)cls;
  r->client = col_strdup(st, RC_CLIENT, &oom);
  r->subject = col_strdup(st, RC_SUBJECT, &oom);
  r->csr = col_blobdup(st, RC_CSR, &r->csr_len, &oom);
  r->reason = col_strdup(st, RC_REASON, &oom);
  r->created = db_column_int64(st, RC_CREATED);
  r->updated = db_column_int64(st, RC_UPDATED);
  r->expires = col_opt_int(st, RC_EXPIRES);
  r->cert_id = col_opt_int(st, RC_CERT_ID);
  r->client_serial = col_strdup(st, RC_CLIENT_SERIAL, &oom);
  r->ra = col_strdup(st, RC_RA, &oom);
  if (oom) {
    store_request_clear(r);
    return fail(s, EST_ERR_NOMEM, "out of memory reading a request");
  }
  return EST_OK;
}

static est_err read_cert(store *s, db_stmt *st, store_cert *c) {
  bool oom = false;
  memset(c, 0, sizeof *c);
  c->id = db_column_int64(st, 0);
  c->serial = col_strdup(st, 1, &oom);
  c->request_id = col_opt_int(st, 2);
  c->subject = col_strdup(st, 3, &oom);
  c->client = col_strdup(st, 4, &oom);
  c->not_before = col_opt_int(st, 5);
  c->not_after = col_opt_int(st, 6);
  c->der = col_blobdup(st, 7, &c->der_len, &oom);
  c->revoked_at = col_opt_int(st, 8);
  c->revoke_reason = col_strdup(st, 9, &oom);
  c->created = db_column_int64(st, 10);
  if (oom) {
    store_cert_clear(c);
    return fail(s, EST_ERR_NOMEM, "out of memory reading a certificate");
  }
  return EST_OK;
}

static est_err read_preauth(store *s, db_stmt *st, store_preauth *p) {
  bool oom = false;
  int kind = col_name(st, 1, kind_names, STORE_PREAUTH__MAX);
  memset(p, 0, sizeof *p);
  p->id = db_column_int64(st, 0);
  if (kind < 0)
    return fail(s, EST_ERR_STORE, "preauth %" PRId64 " has an unknown kind",
                p->id);
  p->kind = (store_preauth_kind)kind;
  p->value = col_strdup(st, 2, &oom);
  p->note = col_strdup(st, 3, &oom);
  p->created = db_column_int64(st, 4);
  p->actor = col_strdup(st, 5, &oom);
  p->idevid = col_strdup(st, 6, &oom);
  if (oom) {
    store_preauth_clear(p);
    return fail(s, EST_ERR_NOMEM, "out of memory reading a preauth");
  }
  return EST_OK;
}

static est_err read_audit(store *s, db_stmt *st, store_audit_row *a) {
  bool oom = false;
  int action = col_name(st, 3, action_names, STORE_AUDIT__MAX);
  int fn = col_name(st, 7, fn_names, STORE_FN__MAX);
  memset(a, 0, sizeof *a);
  a->id = db_column_int64(st, 0);
  a->time = db_column_int64(st, 1);
  a->actor = col_strdup(st, 2, &oom);
  a->action = action < 0 ? STORE_AUDIT__MAX : (store_audit_action)action;
  a->action_name = col_strdup(st, 3, &oom);
  a->request_id = col_opt_int(st, 4);
  a->cert_serial = col_strdup(st, 5, &oom);
  a->detail = col_strdup(st, 6, &oom);
  a->function = fn < 0 ? STORE_FN__MAX : (store_fn)fn;
  a->subject = col_strdup(st, 8, &oom);
  a->client = col_strdup(st, 9, &oom);
  a->crl_number = col_opt_int(st, 10);
  a->client_serial = col_strdup(st, 11, &oom);
  a->has_client_fp = col_hash(st, 12, a->client_fp);
  if (oom) {
    store_audit_row_clear(a);
    return fail(s, EST_ERR_NOMEM, "out of memory reading an audit row");
  }
  return EST_OK;
}

/* ------------------------------------------------------------ open/close */

static void set_diag(char *diag, size_t diag_len, const char *msg) {
  if (diag != NULL && diag_len > 0)
    snprintf(diag, diag_len, "%s", msg);
}

void store_options_init(store_options *opt) {
  if (opt == NULL)
    return;
  memset(opt, 0, sizeof *opt);
  opt->version = STORE_OPTIONS_VERSION;
  opt->busy_timeout_ms = 5000;
}

/* Bring the schema up to the program's, in one transaction. Another
 * process may have migrated since db_open() read the version: read it
 * again under the write lock. Each dialect has its own scripts of the
 * same numbers (schemas/ and schemas/pg/). */
static est_err migrate(store *s) {
  const store_migration *m =
    db_get_dialect(s->db) == DB_PG ? store_migrations_pg : store_migrations;
  int64_t uv = 0;
  int src;
  est_err rc = tx_begin(s);
  if (rc != EST_OK)
    return rc;
  if ((src = db_schema_get(s->db, &uv)) != SQLITE_OK) {
    rc = db_fail(s, src, "schema version");
    goto out;
  }
  if (uv > store_migrations_count) {
    rc = fail(s, EST_ERR_SCHEMA,
              "database schema version %" PRId64 " is newer than this program (%d)", uv,
              store_migrations_count);
    goto out;
  }
  for (int i = (int)uv; i < store_migrations_count; i++) {
    char what[128];
    snprintf(what, sizeof what, "schema %s", m[i].name);
    if ((src = db_exec(s->db, m[i].sql)) != SQLITE_OK) {
      rc = db_fail(s, src, what);
      goto out;
    }
  }
  if (uv < store_migrations_count && (src = db_schema_set(s->db, store_migrations_count)) != SQLITE_OK)
    rc = db_fail(s, src, "set schema version");
out:
  return tx_end(s, rc);
}

static est_err open_db(store *s, const char *path, const store_options *o) {
  db_open_opts dopt = {
    .create = o->create,
    .read_only = o->read_only,
    .sync_normal = o->synchronous_normal,
    .use_group = o->use_group,
    .group_gid = o->group_gid,
    .busy_timeout_ms = o->busy_timeout_ms,
  };
  int64_t uv = 0;
  est_err rc = db_open(path, &dopt, &s->db, &uv, s->err, sizeof s->err);
  if (rc != EST_OK)
    return rc;
  if (uv > store_migrations_count)
    return fail(s, EST_ERR_SCHEMA,
                "database schema version %" PRId64 " is newer than this program (%d)", uv,
                store_migrations_count);
  if (o->read_only && uv < store_migrations_count)
    return fail(s, EST_ERR_SCHEMA,
                "database schema version %" PRId64
                " is older than this program (%d); open it read-write once to upgrade",
                uv, store_migrations_count);
  if (!o->read_only && uv < store_migrations_count && (rc = migrate(s)) != EST_OK)
    return rc;
  /* Statements can only be prepared once the tables exist. */
  for (int i = 0; i < ST__MAX; i++) {
    int src = db_prepare(s->db, stmt_sql[i], &s->st[i]);
    if (src != SQLITE_OK)
      return db_fail(s, src, "prepare");
  }
  db_set_busy_timeout(s->db, o->busy_timeout_ms);
  return EST_OK;
}

est_err store_open(const char *path, const store_options *opt, store **out,
                   char *diag, size_t diag_len) {
  store_options o;
  store *s;
  est_err rc;

  set_diag(diag, diag_len, "");
  if (out != NULL)
    *out = NULL;
  if (path == NULL || path[0] == '\0' || out == NULL) {
    set_diag(diag, diag_len, "store_open: no path or no out pointer");
    return EST_ERR_INVALID;
  }
  if (opt != NULL) {
    if (opt->version != STORE_OPTIONS_VERSION) {
      set_diag(diag, diag_len, "store_open: unknown options version "
                               "(call store_options_init())");
      return EST_ERR_INVALID;
    }
    o = *opt;
  } else {
    store_options_init(&o);
  }
  if (o.busy_timeout_ms < 0) {
    set_diag(diag, diag_len, "store_open: negative busy timeout");
    return EST_ERR_INVALID;
  }
  s = calloc(1, sizeof *s);
  if (s == NULL) {
    set_diag(diag, diag_len, "store_open: out of memory");
    return EST_ERR_NOMEM;
  }
  s->read_only = o.read_only;
  s->clock = o.clock;
  s->clock_ctx = o.clock_ctx;
  rc = open_db(s, path, &o);
  if (rc != EST_OK) {
    set_diag(diag, diag_len, s->err);
    store_close(s);
    return rc;
  }
  *out = s;
  return EST_OK;
}

void store_close(store *s) {
  if (s == NULL)
    return;
  for (int i = 0; i < ST__MAX; i++)
    db_finalize(s->st[i]);
  db_close(s->db);
  free(s);
}

est_err store_data_version(store *s, uint64_t *v) {
  est_err rc = enter(s);
  if (rc != EST_OK)
    return rc;
  if (v == NULL)
    return fail(s, EST_ERR_INVALID, "no output");
  int src = db_data_version(s->db, v);
  return src == SQLITE_OK ? EST_OK : db_fail(s, src, "data_version");
}

/* ------------------------------------------------------------ requests */

/* What a request row found by its retry key means now. */
typedef enum liveness {
  LIVE,    /* act on it: pending, approved, rejected (held), issued (valid) */
  OVERDUE, /* pending/approved past expires: to be marked expired */
  STALE,   /* expired, rejection lapsed, or certificate revoked/expired */
} liveness;

/* Classify the current row of ST_REQ_LOOKUP at @p now. A row is live while
 * now < expires; at expires it is over. */
static liveness classify(db_stmt *st, int64_t now) {
  const char *state = db_column_text(st, RC_STATE);
  int64_t expires = col_opt_int(st, RC_EXPIRES);
  bool past = expires != 0 && expires <= now;

  if (state == NULL)
    return STALE;
  if (strcmp(state, "pending") == 0 || strcmp(state, "approved") == 0)
    return past ? OVERDUE : LIVE;
  if (strcmp(state, "rejected") == 0)
    return past ? STALE : LIVE;
  if (strcmp(state, "issued") == 0) {
    int64_t not_after = col_opt_int(st, RC_NOT_AFTER);
    if (!db_column_null(st, RC_REVOKED_AT) ||
        (not_after != 0 && not_after <= now))
      return STALE;
    return LIVE;
  }
  return STALE;
}

static int lookup_bind(db_stmt *st, const uint8_t *spki,
                       const uint8_t *fp, store_fn function) {
  int brc = SQLITE_OK;
  BIND(brc, db_bind_blob(st, 1, spki, STORE_SHA256_LEN));
  BIND(brc, db_bind_blob(st, 2, fp, STORE_SHA256_LEN));
  BIND(brc, db_bind_text(st, 3, fn_names[function]));
  return brc;
}

/* Inside a write transaction: mark request @p id expired if it still is
 * pending/approved and overdue at @p now, with its audit row. */
static est_err expire_locked(store *s, int64_t id, int64_t now, bool *changed) {
  db_stmt *st = stmt(s, ST_REQ_EXPIRE_ONE);
  int brc = SQLITE_OK;
  est_err rc;
  *changed = false;
  BIND(brc, db_bind_int64(st, 1, id));
  BIND(brc, db_bind_int64(st, 2, now));
  if (brc != SQLITE_OK)
    return db_fail(s, brc, "expire bind");
  if ((rc = exec_done(s, st, "expire request", NULL)) != EST_OK)
    return rc;
  if (db_changes(s->db) == 0)
    return EST_OK;
  *changed = true;
  return audit_insert(s, now, STORE_ACTOR_SYSTEM, STORE_AUDIT_EXPIRED, id, NULL,
                      "ttl");
}

est_err store_request_lookup(store *s, const uint8_t spki_sha256[32],
                             const uint8_t client_fp[32], store_fn function,
                             int64_t now, store_request *out) {
  est_err rc = enter(s);
  if (out != NULL)
    memset(out, 0, sizeof *out);
  if (rc != EST_OK)
    return rc;
  if (spki_sha256 == NULL || client_fp == NULL || out == NULL)
    return fail(s, EST_ERR_INVALID, "lookup: missing argument");
  if (function < 0 || function >= STORE_FN__MAX)
    return fail(s, EST_ERR_INVALID, "bad EST function %d", (int)function);

  db_stmt *st = stmt(s, ST_REQ_LOOKUP);
  int src = lookup_bind(st, spki_sha256, client_fp, function);
  if (src != SQLITE_OK)
    return db_fail(s, src, "lookup bind");
  src = db_step(st);
  if (src == SQLITE_DONE) {
    db_reset(st);
    return fail(s, EST_ERR_NOT_FOUND, "no request for this key");
  }
  if (src != SQLITE_ROW) {
    rc = db_fail(s, src, "lookup");
    db_reset(st);
    return rc;
  }
  liveness lv = classify(st, now);
  rc = read_request(s, st, out);
  /* Reset now: a stepped statement keeps a read snapshot open. */
  db_reset(st);
  if (rc != EST_OK)
    return rc;
  if (lv == LIVE)
    return EST_OK;
  if (lv == STALE)
    return fail(s, EST_ERR_NOT_FOUND, "request %" PRId64 " is %s%s", out->id,
                store_state_name(out->state),
                out->state == STORE_REQ_EXPIRED ? "" : " and no longer holds");
  /* Overdue: report it expired. Reads do not write; store_expire() and
   * store_request_create() record the expiry with its audit row. */
  out->state = STORE_REQ_EXPIRED;
  return fail(s, EST_ERR_NOT_FOUND, "request %" PRId64 " has expired", out->id);
}

/* Inside a write transaction: insert a request row; *id gets its id. */
static est_err insert_request(store *s, const store_request_new *in,
                              const char *state, int64_t now, int64_t expires,
                              int64_t *id) {
  db_stmt *st = stmt(s, ST_REQ_INSERT);
  char serial[STORE_MAX_SERIAL + 1];
  int brc = SQLITE_OK;
  /* check_request_new() has vetted it; lowercase as the column wants. */
  bool has_serial = hex_lower(in->client_serial, serial, STORE_MAX_SERIAL, 0);
  BIND(brc, db_bind_text(st, 1, state));
  BIND(brc, db_bind_text(st, 2, fn_names[in->function]));
  BIND(brc, db_bind_blob(st, 3, in->spki_sha256, STORE_SHA256_LEN));
  BIND(brc, db_bind_blob(st, 4, in->client_fp, STORE_SHA256_LEN));
  BIND(brc, db_bind_text(st, 5, in->client));
  BIND(brc, bind_text(st, 6, class_names[in->client_class]));
  BIND(brc, db_bind_text(st, 7, in->subject));
  BIND(brc, db_bind_blob(st, 8, in->csr, in->csr_len));
  BIND(brc, db_bind_int64(st, 9, now));
  BIND(brc, bind_opt_int(st, 10, expires));
  BIND(brc, bind_text(st, 11, has_serial ? serial : NULL));
  BIND(brc, bind_text(st, 12, in->ra && in->ra[0] ? in->ra : NULL));
  if (brc != SQLITE_OK)
    return db_fail(s, brc, "request bind");
  return exec_returning(s, st, "insert request", NULL, id);
}

est_err store_request_create(store *s, const store_request_new *in,
                             const char *actor, int64_t *id) {
  est_err rc = enter_write(s);
  int64_t now, new_id = 0;
  if (rc != EST_OK)
    return rc;
  if ((rc = check_request_new(s, in)) != EST_OK ||
      (rc = check_text(s, actor, true, "actor")) != EST_OK)
    return rc;
  if (in->initial_state != STORE_REQ_PENDING &&
      in->initial_state != STORE_REQ_APPROVED)
    return fail(s, EST_ERR_INVALID, "a new request is pending or approved");
  if (in->ttl < 0)
    return fail(s, EST_ERR_INVALID, "negative TTL");
  now = clock_now(s);

  if ((rc = tx_begin(s)) != EST_OK)
    return rc;
  /* Under the write lock: is there already a live request for this key? */
  db_stmt *st = stmt(s, ST_REQ_LOOKUP);
  int src = lookup_bind(st, in->spki_sha256, in->client_fp, in->function);
  if (src == SQLITE_OK)
    src = db_step(st);
  if (src == SQLITE_ROW) {
    liveness lv = classify(st, now);
    int64_t old = db_column_int64(st, RC_ID);
    db_reset(st);
    if (lv == LIVE) {
      if (id != NULL)
        *id = old;
      rc = fail(s, EST_ERR_EXISTS,
                "request %" PRId64 " for this key is still live", old);
      goto out;
    }
    if (lv == OVERDUE) {
      bool changed;
      if ((rc = expire_locked(s, old, now, &changed)) != EST_OK)
        goto out;
    }
  } else if (src != SQLITE_DONE) {
    rc = db_fail(s, src, "lookup");
    db_reset(st);
    goto out;
  }
  db_reset(st);

  if ((rc = insert_request(s, in, state_names[in->initial_state], now,
                           in->ttl > 0 ? now + in->ttl : 0, &new_id)) != EST_OK)
    goto out;
  char detail[STORE_MAX_TEXT + 32];
  rc = audit_insert(s, now, actor,
                    in->initial_state == STORE_REQ_PENDING ? STORE_AUDIT_PENDING
                                                           : STORE_AUDIT_APPROVED,
                    new_id, NULL, ra_detail(in, NULL, detail, sizeof detail));
out:
  rc = tx_end(s, rc);
  if (rc == EST_OK && id != NULL)
    *id = new_id;
  return rc;
}

/* Inside a write transaction: state, created, expires (and serial) of @p id. */
static est_err request_state(store *s, int64_t id, store_req_state *state,
                             int64_t *created, int64_t *expires, char *serial,
                             size_t serial_len) {
  db_stmt *st = stmt(s, ST_REQ_STATE);
  int src = db_bind_int64(st, 1, id);
  est_err rc = EST_OK;
  if (src == SQLITE_OK)
    src = db_step(st);
  if (src == SQLITE_ROW) {
    int i = col_name(st, 0, state_names, STORE_REQ__MAX);
    if (i < 0)
      rc = fail(s, EST_ERR_STORE, "request %" PRId64 " has an unknown state",
                id);
    *state = (store_req_state)(i < 0 ? 0 : i);
    *created = db_column_int64(st, 1);
    *expires = col_opt_int(st, 2);
    if (serial != NULL) {
      const char *t = db_column_text(st, 3);
      snprintf(serial, serial_len, "%s", t != NULL ? t : "");
    }
  } else if (src == SQLITE_DONE) {
    rc = fail(s, EST_ERR_NOT_FOUND, "request %" PRId64 " not found", id);
  } else {
    rc = db_fail(s, src, "request state");
  }
  db_reset(st);
  return rc;
}

est_err store_request_decide(store *s, int64_t id, bool approve,
                             const char *reason, const char *actor) {
  est_err rc = enter_write(s);
  store_req_state state = STORE_REQ_PENDING;
  int64_t created = 0, expires = 0, now;
  if (rc != EST_OK)
    return rc;
  if ((rc = check_text(s, reason, false, "reason")) != EST_OK ||
      (rc = check_text(s, actor, true, "actor")) != EST_OK)
    return rc;
  now = clock_now(s);

  if ((rc = tx_begin(s)) != EST_OK)
    return rc;
  if ((rc = request_state(s, id, &state, &created, &expires, NULL, 0)) != EST_OK)
    goto out;
  if (state != STORE_REQ_PENDING) {
    rc = fail(s, EST_ERR_STATE, "request %" PRId64 " is %s, not pending", id,
              store_state_name(state));
    goto out;
  }
  if (expires != 0 && expires <= now) {
    /* Too late: record the expiry (a real change, so commit it) and refuse
     * the decision. */
    bool changed;
    if ((rc = expire_locked(s, id, now, &changed)) != EST_OK)
      goto out;
    if ((rc = tx_commit(s)) != EST_OK)
      return rc;
    return fail(s, EST_ERR_STATE, "request %" PRId64 " has expired", id);
  }
  /* The decision restarts the TTL (store.h). */
  int64_t new_expires = expires != 0 ? now + (expires - created) : 0;
  db_stmt *st = stmt(s, ST_REQ_DECIDE);
  int brc = SQLITE_OK;
  BIND(brc, db_bind_int64(st, 1, id));
  BIND(brc, db_bind_text(st, 2, approve ? "approved" : "rejected"));
  BIND(brc, bind_text(st, 3, reason != NULL && reason[0] ? reason : NULL));
  BIND(brc, db_bind_int64(st, 4, now));
  BIND(brc, bind_opt_int(st, 5, new_expires));
  if (brc != SQLITE_OK) {
    rc = db_fail(s, brc, "decide bind");
    goto out;
  }
  if ((rc = exec_done(s, st, "decide", NULL)) != EST_OK)
    goto out;
  rc = audit_insert(s, now, actor,
                    approve ? STORE_AUDIT_APPROVED : STORE_AUDIT_REJECTED, id,
                    NULL, reason != NULL && reason[0] ? reason : NULL);
out:
  return tx_end(s, rc);
}

/* Inside a write transaction: insert the certificate for @p request_id. */
static est_err insert_cert(store *s, const store_cert_new *c,
                           const char *serial, int64_t request_id, int64_t now,
                           int64_t *cert_id) {
  db_stmt *st = stmt(s, ST_CERT_INSERT);
  int brc = SQLITE_OK, raw = SQLITE_OK;
  est_err rc;
  BIND(brc, db_bind_text(st, 1, serial));
  BIND(brc, bind_opt_int(st, 2, request_id));
  BIND(brc, db_bind_text(st, 3, c->subject));
  BIND(brc, bind_text(st, 4, c->client != NULL && c->client[0] ? c->client
                                                               : NULL));
  BIND(brc, bind_opt_int(st, 5, c->not_before));
  BIND(brc, bind_opt_int(st, 6, c->not_after));
  BIND(brc, db_bind_blob(st, 7, c->der, c->der_len));
  BIND(brc, db_bind_int64(st, 8, now));
  if (brc != SQLITE_OK)
    return db_fail(s, brc, "certificate bind");
  rc = exec_returning(s, st, "insert certificate", &raw, cert_id);
  if (raw == SQLITE_CONSTRAINT_UNIQUE)
    return fail(s, EST_ERR_EXISTS, "certificate serial %s already recorded",
                serial);
  return rc;
}

static est_err set_issued(store *s, int64_t request_id, int64_t cert_id,
                          int64_t now) {
  db_stmt *st = stmt(s, ST_REQ_SET_ISSUED);
  int brc = SQLITE_OK;
  est_err rc;
  BIND(brc, db_bind_int64(st, 1, request_id));
  BIND(brc, db_bind_int64(st, 2, cert_id));
  BIND(brc, db_bind_int64(st, 3, now));
  if (brc != SQLITE_OK)
    return db_fail(s, brc, "issued bind");
  if ((rc = exec_done(s, st, "mark issued", NULL)) != EST_OK)
    return rc;
  if (db_changes(s->db) != 1)
    return fail(s, EST_ERR_STATE, "request %" PRId64 " is not approved",
                request_id);
  return EST_OK;
}

est_err store_request_issue(store *s, int64_t request_id,
                            const store_cert_new *cert, const char *actor,
                            int64_t *cert_id) {
  char serial[STORE_MAX_SERIAL + 1];
  store_req_state state = STORE_REQ_PENDING;
  int64_t created = 0, expires = 0, cid = 0, now;
  est_err rc = enter_write(s);
  if (rc != EST_OK)
    return rc;
  if ((rc = check_cert_new(s, cert, serial)) != EST_OK ||
      (rc = check_text(s, actor, true, "actor")) != EST_OK)
    return rc;
  now = clock_now(s);

  if ((rc = tx_begin(s)) != EST_OK)
    return rc;
  if ((rc = request_state(s, request_id, &state, &created, &expires, NULL,
                          0)) != EST_OK)
    goto out;
  if (state != STORE_REQ_APPROVED) {
    rc = fail(s, EST_ERR_STATE, "request %" PRId64 " is %s, not approved",
              request_id, store_state_name(state));
    goto out;
  }
  if ((rc = insert_cert(s, cert, serial, request_id, now, &cid)) != EST_OK ||
      (rc = set_issued(s, request_id, cid, now)) != EST_OK)
    goto out;
  rc = audit_insert(s, now, actor, STORE_AUDIT_ISSUED, request_id, serial, NULL);
out:
  rc = tx_end(s, rc);
  if (rc == EST_OK && cert_id != NULL)
    *cert_id = cid;
  return rc;
}

est_err store_issue_direct(store *s, const store_request_new *req,
                           const store_cert_new *cert, const char *actor,
                           int64_t *request_id, int64_t *cert_id) {
  char serial[STORE_MAX_SERIAL + 1];
  int64_t rid = 0, cid = 0, now;
  est_err rc = enter_write(s);
  if (rc != EST_OK)
    return rc;
  if ((rc = check_request_new(s, req)) != EST_OK ||
      (rc = check_cert_new(s, cert, serial)) != EST_OK ||
      (rc = check_text(s, actor, true, "actor")) != EST_OK)
    return rc;
  now = clock_now(s);

  /* The request row goes in approved and is then marked issued, so the
   * path is the same as a manual approval, minus the wait. */
  if ((rc = tx_begin(s)) != EST_OK)
    return rc;
  if ((rc = insert_request(s, req, "approved", now, 0, &rid)) != EST_OK ||
      (rc = insert_cert(s, cert, serial, rid, now, &cid)) != EST_OK ||
      (rc = set_issued(s, rid, cid, now)) != EST_OK)
    goto out;
  char detail[STORE_MAX_TEXT + 32];
  rc = audit_insert(s, now, actor, STORE_AUDIT_ISSUED, rid, serial,
                    ra_detail(req, "direct", detail, sizeof detail));
out:
  rc = tx_end(s, rc);
  if (rc == EST_OK) {
    if (request_id != NULL)
      *request_id = rid;
    if (cert_id != NULL)
      *cert_id = cid;
  }
  return rc;
}

est_err store_request_resent(store *s, int64_t request_id, const char *actor) {
  char serial[STORE_MAX_SERIAL + 1];
  store_req_state state = STORE_REQ_PENDING;
  int64_t created = 0, expires = 0;
  est_err rc = enter_write(s);
  if (rc != EST_OK)
    return rc;
  if ((rc = check_text(s, actor, true, "actor")) != EST_OK)
    return rc;
  if ((rc = tx_begin(s)) != EST_OK)
    return rc;
  if ((rc = request_state(s, request_id, &state, &created, &expires, serial,
                          sizeof serial)) != EST_OK)
    goto out;
  if (state != STORE_REQ_ISSUED) {
    rc = fail(s, EST_ERR_STATE, "request %" PRId64 " is %s, not issued",
              request_id, store_state_name(state));
    goto out;
  }
  rc = audit_insert(s, clock_now(s), actor, STORE_AUDIT_REISSUED, request_id,
                    serial, NULL);
out:
  return tx_end(s, rc);
}

est_err store_request_get(store *s, int64_t id, store_request *out) {
  est_err rc = enter(s);
  if (out != NULL)
    memset(out, 0, sizeof *out);
  if (rc != EST_OK)
    return rc;
  if (out == NULL)
    return fail(s, EST_ERR_INVALID, "no output");
  db_stmt *st = stmt(s, ST_REQ_GET);
  int src = db_bind_int64(st, 1, id);
  if (src == SQLITE_OK)
    src = db_step(st);
  if (src == SQLITE_ROW)
    rc = read_request(s, st, out);
  else if (src == SQLITE_DONE)
    rc = fail(s, EST_ERR_NOT_FOUND, "request %" PRId64 " not found", id);
  else
    rc = db_fail(s, src, "get request");
  db_reset(st);
  return rc;
}

/* Hand each row to the callback; the row is freed after the call. */
static est_err cb_result(store *s, int r, bool *stop) {
  *stop = r != 0;
  if (r < 0)
    return fail(s, (est_err)r, "stopped by the callback");
  return EST_OK;
}

/* Reads the current row of @p st, calls the caller's callback with it and
 * frees it. Returns the callback's verdict; sets *rc if the row is bad. */
typedef int (*row_visit)(store *s, db_stmt *st, void *v, est_err *rc);

/* The loop shared by every list function. */
static est_err iterate(store *s, db_stmt *st, const char *what,
                       row_visit visit, void *v) {
  est_err rc = EST_OK;
  int src = SQLITE_OK;
  while (rc == EST_OK) {
    int step = db_step(st);
    if (step == SQLITE_DONE)
      break;
    if (step != SQLITE_ROW) {
      src = step;
      break;
    }
    bool stop;
    s->in_callback = true;
    int r = visit(s, st, v, &rc);
    s->in_callback = false;
    if (rc != EST_OK)
      break;
    rc = cb_result(s, r, &stop);
    if (stop)
      break;
  }
  if (rc == EST_OK && src != SQLITE_OK)
    rc = db_fail(s, src, what);
  db_reset(st);
  return rc;
}

/* One visitor per row type. */
#define ROW_VISITOR(name, type, cbtype, reader, clear)                        \
  typedef struct name##_v {                                                   \
    cbtype cb;                                                                \
    void *ctx;                                                                \
  } name##_v;                                                                 \
  static int name(store *s, db_stmt *st, void *v, est_err *rc) {         \
    name##_v *nv = v;                                                         \
    type row;                                                                 \
    if ((*rc = reader(s, st, &row)) != EST_OK)                                \
      return 0;                                                               \
    int r = nv->cb(nv->ctx, &row);                                            \
    clear(&row);                                                              \
    return r;                                                                 \
  }

ROW_VISITOR(visit_request, store_request, store_request_cb, read_request,
            store_request_clear)
ROW_VISITOR(visit_cert, store_cert, store_cert_cb, read_cert, store_cert_clear)
ROW_VISITOR(visit_preauth, store_preauth, store_preauth_cb, read_preauth,
            store_preauth_clear)
ROW_VISITOR(visit_audit, store_audit_row, store_audit_cb, read_audit,
            store_audit_row_clear)

est_err store_request_list(store *s, store_req_state state, store_request_cb cb,
                           void *ctx) {
  est_err rc = enter(s);
  if (rc != EST_OK)
    return rc;
  if (cb == NULL || state < STORE_REQ_ANY || state >= STORE_REQ__MAX)
    return fail(s, EST_ERR_INVALID, "list: bad state filter or no callback");
  db_stmt *st =
    stmt(s, state == STORE_REQ_ANY ? ST_REQ_LIST_ALL : ST_REQ_LIST_STATE);
  int src = SQLITE_OK;
  if (state != STORE_REQ_ANY)
    src = db_bind_text(st, 1, state_names[state]);
  if (src != SQLITE_OK)
    return db_fail(s, src, "list requests bind");
  visit_request_v v = {cb, ctx};
  return iterate(s, st, "list requests", visit_request, &v);
}

est_err store_expire(store *s, int64_t now, size_t *count) {
  est_err rc = enter_write(s);
  int brc = SQLITE_OK;
  int n = 0;
  if (count != NULL)
    *count = 0;
  if (rc != EST_OK)
    return rc;
  if ((rc = tx_begin(s)) != EST_OK)
    return rc;
  /* Audit rows first: they select the very rows the update then changes. */
  db_stmt *st = stmt(s, ST_EXPIRE_AUDIT);
  BIND(brc, db_bind_int64(st, 1, now));
  if (brc != SQLITE_OK) {
    rc = db_fail(s, brc, "expire bind");
    goto out;
  }
  if ((rc = exec_done(s, st, "expire audit", NULL)) != EST_OK)
    goto out;
  st = stmt(s, ST_EXPIRE_UPDATE);
  BIND(brc, db_bind_int64(st, 1, now));
  if (brc != SQLITE_OK) {
    rc = db_fail(s, brc, "expire bind");
    goto out;
  }
  if ((rc = exec_done(s, st, "expire", NULL)) != EST_OK)
    goto out;
  n = db_changes(s->db);
out:
  rc = tx_end(s, rc);
  if (rc == EST_OK && count != NULL)
    *count = (size_t)n;
  return rc;
}

/* ------------------------------------------------------------ certificates */

static est_err cert_fetch(store *s, db_stmt *st, const char *what,
                          store_cert *out) {
  est_err rc = EST_OK;
  int src = db_step(st);
  if (src == SQLITE_ROW)
    rc = read_cert(s, st, out);
  else if (src == SQLITE_DONE)
    rc = fail(s, EST_ERR_NOT_FOUND, "certificate %s not found", what);
  else
    rc = db_fail(s, src, "get certificate");
  db_reset(st);
  return rc;
}

est_err store_cert_get(store *s, int64_t id, store_cert *out) {
  est_err rc = enter(s);
  char what[32];
  if (out != NULL)
    memset(out, 0, sizeof *out);
  if (rc != EST_OK)
    return rc;
  if (out == NULL)
    return fail(s, EST_ERR_INVALID, "no output");
  db_stmt *st = stmt(s, ST_CERT_GET_ID);
  int src = db_bind_int64(st, 1, id);
  if (src != SQLITE_OK)
    return db_fail(s, src, "certificate bind");
  snprintf(what, sizeof what, "id %" PRId64, id);
  return cert_fetch(s, st, what, out);
}

est_err store_cert_get_serial(store *s, const char *serial, store_cert *out) {
  char hex[STORE_MAX_SERIAL + 1];
  est_err rc = enter(s);
  if (out != NULL)
    memset(out, 0, sizeof *out);
  if (rc != EST_OK)
    return rc;
  if (out == NULL)
    return fail(s, EST_ERR_INVALID, "no output");
  if (!hex_lower(serial, hex, STORE_MAX_SERIAL, 0))
    return fail(s, EST_ERR_INVALID, "serial must be 1-%u hex digits",
                STORE_MAX_SERIAL);
  db_stmt *st = stmt(s, ST_CERT_GET_SERIAL);
  int src = db_bind_text(st, 1, hex);
  if (src != SQLITE_OK)
    return db_fail(s, src, "certificate bind");
  return cert_fetch(s, st, hex, out);
}

est_err store_cert_revoked(store *s, const char *serial, int64_t *revoked_at, char *reason,
                           size_t reason_len) {
  char hex[STORE_MAX_SERIAL + 1];
  est_err rc = enter(s);
  if (revoked_at != NULL)
    *revoked_at = 0;
  if (reason != NULL && reason_len > 0)
    reason[0] = '\0';
  if (rc != EST_OK)
    return rc;
  if (revoked_at == NULL)
    return fail(s, EST_ERR_INVALID, "no output");
  if (!hex_lower(serial, hex, STORE_MAX_SERIAL, 0))
    return fail(s, EST_ERR_INVALID, "serial must be 1-%u hex digits",
                STORE_MAX_SERIAL);
  db_stmt *st = stmt(s, ST_CERT_REVOKED);
  int src = db_bind_text(st, 1, hex);
  if (src != SQLITE_OK)
    return db_fail(s, src, "revocation bind");
  src = db_step(st);
  if (src == SQLITE_ROW) {
    *revoked_at = db_column_int64(st, 0);
    const char *t = db_column_text(st, 1);
    if (reason != NULL && reason_len > 0)
      snprintf(reason, reason_len, "%s", t != NULL ? (const char *)t : "");
    src = SQLITE_DONE;
  }
  db_reset(st);
  if (src != SQLITE_DONE)
    return db_fail(s, src, "revocation lookup");
  return EST_OK;
}

est_err store_cert_list(store *s, store_cert_cb cb, void *ctx) {
  est_err rc = enter(s);
  if (rc != EST_OK)
    return rc;
  if (cb == NULL)
    return fail(s, EST_ERR_INVALID, "no callback");
  db_stmt *st = stmt(s, ST_CERT_LIST);
  visit_cert_v v = {cb, ctx};
  return iterate(s, st, "list certificates", visit_cert, &v);
}

static est_err crl_next(store *s, int64_t *number);

est_err store_cert_revoke(store *s, const char *serial, const char *reason,
                          const char *actor) {
  char hex[STORE_MAX_SERIAL + 1];
  int64_t now, request_id = 0;
  int brc = SQLITE_OK;
  est_err rc = enter_write(s);
  if (rc != EST_OK)
    return rc;
  if (!hex_lower(serial, hex, STORE_MAX_SERIAL, 0))
    return fail(s, EST_ERR_INVALID, "serial must be 1-%u hex digits",
                STORE_MAX_SERIAL);
  if ((rc = check_text(s, reason, false, "reason")) != EST_OK ||
      (rc = check_text(s, actor, true, "actor")) != EST_OK)
    return rc;
  if (reason != NULL && reason[0] == '\0')
    reason = NULL;
  now = clock_now(s);

  if ((rc = tx_begin(s)) != EST_OK)
    return rc;
  db_stmt *st = stmt(s, ST_CERT_REVOKE);
  BIND(brc, db_bind_text(st, 1, hex));
  BIND(brc, db_bind_int64(st, 2, now));
  BIND(brc, bind_text(st, 3, reason));
  if (brc != SQLITE_OK) {
    rc = db_fail(s, brc, "revoke bind");
    goto out;
  }
  /* RETURNING gives a row only if the certificate was not yet revoked. */
  bool revoked = false;
  int src = db_step(st);
  if (src == SQLITE_ROW) {
    revoked = true;
    request_id = col_opt_int(st, 0);
    src = db_step(st); /* run the statement to completion */
  }
  if (src != SQLITE_DONE) {
    rc = db_fail(s, src, "revoke");
    db_reset(st);
    goto out;
  }
  db_reset(st);
  if (!revoked) {
    /* Tell "unknown" from "already revoked". */
    store_cert c = {0};
    st = stmt(s, ST_CERT_GET_SERIAL);
    if ((src = db_bind_text(st, 1, hex)) != SQLITE_OK) {
      rc = db_fail(s, src, "certificate bind");
      goto out;
    }
    rc = cert_fetch(s, st, hex, &c);
    if (rc == EST_OK)
      rc = fail(s, EST_ERR_STATE, "certificate %s is already revoked", hex);
    store_cert_clear(&c);
    goto out;
  }
  int64_t number = 0;
  rc = crl_next(s, &number);
  if (rc == EST_OK) {
    st = stmt(s, ST_CRL_SET_CERT);
    BIND(brc, db_bind_text(st, 1, hex));
    BIND(brc, db_bind_int64(st, 2, number));
    src = brc == SQLITE_OK ? db_step(st) : brc;
    db_reset(st);
    if (src != SQLITE_DONE)
      rc = db_fail(s, src, "revoke: CRL number");
  }
  if (rc == EST_OK)
    rc = audit_insert(s, now, actor, STORE_AUDIT_REVOKED, request_id, hex, reason);
out:
  return tx_end(s, rc);
}

/* ---------------------------------------------------------------- prune */

/* Run @p sql (bound to ?1 = before) and give the count of its first column
 * or, for a DELETE, the rows it changed. */
static est_err prune_step(store *s, const char *sql, int64_t before, bool count_only,
                          size_t *n) {
  db_stmt *st = NULL;
  int src = db_prepare(s->db, sql, &st);
  if (src == SQLITE_OK)
    src = db_bind_int64(st, 1, before);
  if (src == SQLITE_OK)
    src = db_step(st);
  if (count_only && src == SQLITE_ROW) {
    *n = (size_t)db_column_int64(st, 0);
    src = SQLITE_DONE;
  } else if (!count_only && src == SQLITE_DONE) {
    *n = (size_t)db_changes(s->db);
  }
  db_finalize(st);
  return src == SQLITE_DONE ? EST_OK : db_fail(s, src, "prune");
}

est_err store_prune(store *s, int64_t before, bool dry_run, const char *actor,
                    size_t *requests, size_t *audit) {
  static const char *const req_where =
      " FROM requests WHERE state IN ('rejected', 'expired') AND updated < ?1";
  static const char *const audit_where = " FROM audit WHERE time < ?1";
  char sql[256], detail[128];
  size_t nr = 0, na = 0;
  est_err rc = dry_run ? enter(s) : enter_write(s);
  if (requests)
    *requests = 0;
  if (audit)
    *audit = 0;
  if (rc != EST_OK)
    return rc;
  if (before <= 0)
    return fail(s, EST_ERR_INVALID, "prune needs a time");
  if (!dry_run && (rc = check_text(s, actor, true, "actor")) != EST_OK)
    return rc;
  /* A dry run only counts: no write lock, so it works on a read-only
   * handle while coapd runs. */
  if (!dry_run && (rc = tx_begin(s)) != EST_OK)
    return rc;
  /* Audit rows of a request that goes are older still (a request's last
   * change is its newest row), so counting both with the same bound is
   * exact. */
  snprintf(sql, sizeof sql, "%s%s", dry_run ? "SELECT count(*)" : "DELETE", req_where);
  rc = prune_step(s, sql, before, dry_run, &nr);
  if (rc == EST_OK) {
    snprintf(sql, sizeof sql, "%s%s", dry_run ? "SELECT count(*)" : "DELETE", audit_where);
    rc = prune_step(s, sql, before, dry_run, &na);
  }
  if (rc == EST_OK && !dry_run) {
    snprintf(detail, sizeof detail, "before %lld: %zu requests, %zu audit rows",
             (long long)before, nr, na);
    rc = audit_insert(s, clock_now(s), actor, STORE_AUDIT_PRUNED, 0, NULL, detail);
  }
  if (!dry_run)
    rc = tx_end(s, rc);
  if (rc == EST_OK) {
    if (requests)
      *requests = nr;
    if (audit)
      *audit = na;
  }
  return rc;
}

/* --------------------------------------------------------------- backup */

/* A busy source is retried this many times, 20 ms apart. */
#define BACKUP_RETRIES_MAX 200

est_err store_backup(store *s, const char *path, int *pages) {
  char tmp[4096];
  sqlite3 *dst = NULL;
  est_err rc = enter(s);
  int fd = -1;
  if (pages)
    *pages = 0;
  if (rc != EST_OK)
    return rc;
  if (path == NULL || path[0] == '\0')
    return fail(s, EST_ERR_INVALID, "no backup path");
  /* PostgreSQL has its own tools, which also see the other nodes' writes
   * (docs/decisions.md §21). */
  if (db_sqlite(s->db) == NULL)
    return fail(s, EST_ERR_INVALID,
                "backup copies an SQLite store; back up PostgreSQL with pg_dump or "
                "pg_basebackup");
  if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
    return fail(s, EST_ERR_TOO_LARGE, "backup path too long");
  if (access(path, F_OK) == 0)
    return fail(s, EST_ERR_EXISTS, "%s exists; give a new file", path);
  /* Private like the database itself (docs/decisions.md §14). */
  fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0)
    return fail(s, EST_ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
  if (fchmod(fd, 0600) != 0) {
    rc = fail(s, EST_ERR_IO, "cannot set the mode of %s: %s", tmp, strerror(errno));
    goto out;
  }
  int src = sqlite3_open_v2(tmp, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
  if (src != SQLITE_OK) {
    rc = fail(s, EST_ERR_IO, "cannot open %s: %s", tmp, dst ? sqlite3_errmsg(dst) : "");
    goto out;
  }
  sqlite3_backup *b = sqlite3_backup_init(dst, "main", db_sqlite(s->db), "main");
  if (b == NULL) {
    rc = fail(s, EST_ERR_STORE, "backup: %s", sqlite3_errmsg(dst));
    goto out;
  }
  int tries = 0;
  do {
    /* All pages in one step: one read transaction, one snapshot. In WAL
     * mode it does not hold up coapd's writes. */
    src = sqlite3_backup_step(b, -1);
    if (src == SQLITE_BUSY || src == SQLITE_LOCKED) {
      if (++tries > BACKUP_RETRIES_MAX)
        break;
      sqlite3_sleep(20);
    }
  } while (src == SQLITE_OK || src == SQLITE_BUSY || src == SQLITE_LOCKED);
  if (pages)
    *pages = sqlite3_backup_pagecount(b);
  sqlite3_backup_finish(b);
  if (src != SQLITE_DONE) {
    rc = fail(s, db_map_code(src) == EST_ERR_BUSY ? EST_ERR_BUSY : EST_ERR_STORE,
              "backup: %s", sqlite3_errstr(src));
    goto out;
  }
  /* The copy is in rollback-journal mode, one file: a backup to carry. */
  if (sqlite3_exec(dst, "PRAGMA journal_mode = DELETE", NULL, NULL, NULL) != SQLITE_OK) {
    rc = fail(s, EST_ERR_STORE, "backup: %s", sqlite3_errmsg(dst));
    goto out;
  }
  sqlite3_close(dst);
  dst = NULL;
  if (fsync(fd) != 0 || rename(tmp, path) != 0) {
    rc = fail(s, EST_ERR_IO, "cannot put the backup at %s: %s", path, strerror(errno));
    goto out;
  }
out:
  if (dst)
    sqlite3_close(dst);
  if (fd >= 0)
    close(fd);
  if (rc != EST_OK)
    (void)unlink(tmp);
  return rc;
}

/* ----------------------------------------------------------------- CRL */

/* Inside a write transaction: the next CRL number. */
static est_err crl_next(store *s, int64_t *number) {
  db_stmt *st = stmt(s, ST_CRL_NEXT);
  int src = db_step(st);
  if (src == SQLITE_ROW) {
    *number = db_column_int64(st, 0);
    src = db_step(st);
  }
  db_reset(st);
  return src == SQLITE_DONE ? EST_OK : db_fail(s, src, "CRL number");
}

est_err store_crl_numbers(store *s, int64_t *number, int64_t *published) {
  est_err rc = enter(s);
  *number = *published = 0;
  if (rc != EST_OK)
    return rc;
  db_stmt *st = stmt(s, ST_CRL_META);
  int src = db_step(st);
  if (src == SQLITE_ROW) {
    *number = db_column_int64(st, 0);
    *published = db_column_int64(st, 1);
    src = SQLITE_DONE;
  }
  db_reset(st);
  return src == SQLITE_DONE ? EST_OK : db_fail(s, src, "CRL numbers");
}

est_err store_crl_snapshot(store *s, bool bump, int64_t *number, store_crl_cb cb, void *ctx) {
  int64_t published = 0;
  est_err rc = enter_write(s);
  *number = 0;
  if (rc != EST_OK)
    return rc;
  if (cb == NULL)
    return fail(s, EST_ERR_INVALID, "no callback");
  /* One transaction: the number and the list it covers are one snapshot,
   * so a CRL never carries a number without the revocations it stands
   * for. */
  if ((rc = tx_begin(s)) != EST_OK)
    return rc;
  db_stmt *st = stmt(s, ST_CRL_META);
  int src = db_step(st);
  if (src == SQLITE_ROW) {
    *number = db_column_int64(st, 0);
    published = db_column_int64(st, 1);
    src = SQLITE_DONE;
  }
  db_reset(st);
  if (src != SQLITE_DONE) {
    rc = db_fail(s, src, "CRL numbers");
    goto out;
  }
  /* A new CRL needs a new number: the one revocations handed out, or
   * the next one when nothing was revoked since. */
  if (bump || *number <= published)
    rc = crl_next(s, number);
  if (rc != EST_OK)
    goto out;
  st = stmt(s, ST_CRL_ENTRIES);
  for (;;) {
    src = db_step(st);
    if (src != SQLITE_ROW)
      break;
    const char *serial = db_column_text(st, 0);
    const char *reason = db_column_text(st, 2);
    int cr = cb(serial ? serial : "", db_column_int64(st, 1), reason, ctx);
    if (cr != 0) {
      src = SQLITE_DONE;
      if (cr < 0)
        rc = (est_err)cr;
      break;
    }
  }
  db_reset(st);
  if (rc == EST_OK && src != SQLITE_DONE)
    rc = db_fail(s, src, "CRL entries");
out:
  return tx_end(s, rc);
}

est_err store_crl_published(store *s, int64_t number, const char *pem) {
  char num[24];
  int brc = SQLITE_OK;
  est_err rc = enter_write(s);
  if (rc != EST_OK)
    return rc;
  if (number <= 0 || pem == NULL || pem[0] == '\0')
    return fail(s, EST_ERR_INVALID, "a CRL needs a number and its PEM");
  if (strnlen(pem, STORE_MAX_CRL + 1) > STORE_MAX_CRL)
    return fail(s, EST_ERR_TOO_LARGE, "CRL larger than %u bytes", STORE_MAX_CRL);
  snprintf(num, sizeof num, "%lld", (long long)number);
  if ((rc = tx_begin(s)) != EST_OK)
    return rc;
  /* The PEM and the number it carries, together or not at all. */
  const char *kv[2][2] = {{"crl.pem", pem}, {"crl.published", num}};
  for (int i = 0; i < 2 && rc == EST_OK; i++) {
    db_stmt *st = stmt(s, ST_META_SET);
    BIND(brc, db_bind_text(st, 1, kv[i][0]));
    BIND(brc, db_bind_text(st, 2, kv[i][1]));
    rc = brc != SQLITE_OK ? db_fail(s, brc, "meta bind") : exec_done(s, st, "CRL meta", NULL);
  }
  return tx_end(s, rc);
}

/* ------------------------------------------------------------ preauth */

/* Validate and normalise a preauth value into @p buf (idevid: lowercase). */
static est_err preauth_value(store *s, store_preauth_kind kind,
                             const char *value, char *buf, size_t buf_len,
                             const char **norm) {
  est_err rc;
  if (kind < 0 || kind >= STORE_PREAUTH__MAX)
    return fail(s, EST_ERR_INVALID, "bad preauth kind %d", (int)kind);
  if (kind == STORE_PREAUTH_IDEVID) {
    if (buf_len < 2 * STORE_SHA256_LEN + 1 ||
        !hex_lower(value, buf, 2 * STORE_SHA256_LEN, 2 * STORE_SHA256_LEN))
      return fail(s, EST_ERR_INVALID,
                  "idevid fingerprint must be 64 hex digits (SHA-256)");
    *norm = buf;
    return EST_OK;
  }
  if ((rc = check_text(s, value, true, "preauth subject")) != EST_OK)
    return rc;
  *norm = value;
  return EST_OK;
}

static est_err preauth_insert(store *s, store_preauth_kind kind, const char *value,
                              const char *idevid, const char *note, const char *actor,
                              int64_t *id) {
  char fp[2 * STORE_SHA256_LEN + 1], bound[2 * STORE_SHA256_LEN + 1];
  char detail[STORE_MAX_TEXT + 128];
  const char *v = NULL;
  int brc = SQLITE_OK, raw = SQLITE_OK;
  int64_t now, new_id = 0;
  est_err rc = enter_write(s);
  if (rc != EST_OK)
    return rc;
  if ((rc = preauth_value(s, kind, value, fp, sizeof fp, &v)) != EST_OK ||
      (rc = check_text(s, note, false, "note")) != EST_OK ||
      (rc = check_text(s, actor, true, "actor")) != EST_OK)
    return rc;
  if (idevid != NULL && (kind != STORE_PREAUTH_SUBJECT ||
                         !hex_lower(idevid, bound, 2 * STORE_SHA256_LEN,
                                    2 * STORE_SHA256_LEN)))
    return fail(s, EST_ERR_INVALID,
                "a subject may be bound to an idevid fingerprint of 64 hex digits "
                "(SHA-256) only");
  now = clock_now(s);
  if (idevid != NULL)
    snprintf(detail, sizeof detail, "%s %s idevid %s", kind_names[kind], v, bound);
  else
    snprintf(detail, sizeof detail, "%s %s", kind_names[kind], v);

  if ((rc = tx_begin(s)) != EST_OK)
    return rc;
  db_stmt *st = stmt(s, ST_PREAUTH_INSERT);
  BIND(brc, db_bind_text(st, 1, kind_names[kind]));
  BIND(brc, db_bind_text(st, 2, v));
  BIND(brc, bind_text(st, 3, note != NULL && note[0] ? note : NULL));
  BIND(brc, db_bind_int64(st, 4, now));
  BIND(brc, db_bind_text(st, 5, actor));
  BIND(brc, bind_text(st, 6, idevid != NULL ? bound : NULL));
  if (brc != SQLITE_OK) {
    rc = db_fail(s, brc, "preauth bind");
    goto out;
  }
  rc = exec_returning(s, st, "add preauth", &raw, &new_id);
  if (raw == SQLITE_CONSTRAINT_UNIQUE)
    rc = fail(s, EST_ERR_EXISTS, "preauth %s already present", detail);
  if (rc != EST_OK)
    goto out;
  rc = audit_insert(s, now, actor, STORE_AUDIT_PREAUTH_ADD, 0, NULL, detail);
out:
  rc = tx_end(s, rc);
  if (rc == EST_OK && id != NULL)
    *id = new_id;
  return rc;
}

est_err store_preauth_add(store *s, store_preauth_kind kind, const char *value,
                          const char *note, const char *actor, int64_t *id) {
  return preauth_insert(s, kind, value, NULL, note, actor, id);
}

est_err store_preauth_add_bound(store *s, const char *subject, const char *idevid_fp_hex,
                                const char *note, const char *actor, int64_t *id) {
  return preauth_insert(s, STORE_PREAUTH_SUBJECT, subject, idevid_fp_hex, note, actor,
                        id);
}

est_err store_preauth_remove(store *s, store_preauth_kind kind,
                             const char *value, const char *actor) {
  char fp[2 * STORE_SHA256_LEN + 1], detail[STORE_MAX_TEXT + 32];
  const char *v = NULL;
  int brc = SQLITE_OK;
  est_err rc = enter_write(s);
  if (rc != EST_OK)
    return rc;
  if ((rc = preauth_value(s, kind, value, fp, sizeof fp, &v)) != EST_OK ||
      (rc = check_text(s, actor, true, "actor")) != EST_OK)
    return rc;
  snprintf(detail, sizeof detail, "%s %s", kind_names[kind], v);

  if ((rc = tx_begin(s)) != EST_OK)
    return rc;
  db_stmt *st = stmt(s, ST_PREAUTH_DELETE);
  BIND(brc, db_bind_text(st, 1, kind_names[kind]));
  BIND(brc, db_bind_text(st, 2, v));
  if (brc != SQLITE_OK) {
    rc = db_fail(s, brc, "preauth bind");
    goto out;
  }
  if ((rc = exec_done(s, st, "remove preauth", NULL)) != EST_OK)
    goto out;
  if (db_changes(s->db) == 0) {
    rc = fail(s, EST_ERR_NOT_FOUND, "preauth %s not found", detail);
    goto out;
  }
  rc = audit_insert(s, clock_now(s), actor, STORE_AUDIT_PREAUTH_REMOVE, 0, NULL,
                    detail);
out:
  return tx_end(s, rc);
}

est_err store_preauth_list(store *s, store_preauth_cb cb, void *ctx) {
  est_err rc = enter(s);
  if (rc != EST_OK)
    return rc;
  if (cb == NULL)
    return fail(s, EST_ERR_INVALID, "no callback");
  db_stmt *st = stmt(s, ST_PREAUTH_LIST);
  visit_preauth_v v = {cb, ctx};
  return iterate(s, st, "list preauth", visit_preauth, &v);
}

est_err store_preauth_match(store *s, const char *subject,
                            const char *idevid_fp_hex, bool *hit) {
  char fp[2 * STORE_SHA256_LEN + 1];
  int brc = SQLITE_OK;
  est_err rc = enter(s);
  if (hit != NULL)
    *hit = false;
  if (rc != EST_OK)
    return rc;
  if (hit == NULL)
    return fail(s, EST_ERR_INVALID, "no output");
  if (idevid_fp_hex != NULL &&
      !hex_lower(idevid_fp_hex, fp, 2 * STORE_SHA256_LEN, 2 * STORE_SHA256_LEN))
    return fail(s, EST_ERR_INVALID,
                "idevid fingerprint must be 64 hex digits (SHA-256)");
  if ((rc = check_text(s, subject, false, "subject")) != EST_OK)
    return rc;
  db_stmt *st = stmt(s, ST_PREAUTH_MATCH);
  BIND(brc, bind_text(st, 1, subject));
  BIND(brc, bind_text(st, 2, idevid_fp_hex != NULL ? fp : NULL));
  if (brc != SQLITE_OK)
    return db_fail(s, brc, "preauth bind");
  int src = db_step(st);
  if (src == SQLITE_ROW)
    *hit = true;
  else if (src != SQLITE_DONE)
    rc = db_fail(s, src, "match preauth");
  db_reset(st);
  return rc;
}

/* ------------------------------------------------------------ audit */

static est_err audit_iterate(store *s, db_stmt *st, store_audit_cb cb,
                             void *ctx) {
  visit_audit_v v = {cb, ctx};
  return iterate(s, st, "read audit", visit_audit, &v);
}

/* No limit is the largest one (PostgreSQL refuses SQLite's -1). */
static int64_t sql_limit(size_t max) {
  return max == 0 || max > (size_t)INT64_MAX ? INT64_MAX : (int64_t)max;
}

est_err store_audit_since(store *s, int64_t after_id, size_t max,
                          store_audit_cb cb, void *ctx) {
  int brc = SQLITE_OK;
  est_err rc = enter(s);
  if (rc != EST_OK)
    return rc;
  if (cb == NULL)
    return fail(s, EST_ERR_INVALID, "no callback");
  db_stmt *st = stmt(s, ST_AUDIT_SINCE);
  BIND(brc, db_bind_int64(st, 1, after_id));
  BIND(brc, db_bind_int64(st, 2, sql_limit(max)));
  if (brc != SQLITE_OK)
    return db_fail(s, brc, "audit bind");
  return audit_iterate(s, st, cb, ctx);
}

est_err store_audit_list(store *s, int64_t request_id, size_t max,
                         store_audit_cb cb, void *ctx) {
  int brc = SQLITE_OK;
  est_err rc = enter(s);
  if (rc != EST_OK)
    return rc;
  if (cb == NULL || request_id < 0)
    return fail(s, EST_ERR_INVALID, "audit list: bad request id or no callback");
  db_stmt *st;
  if (request_id > 0) {
    st = stmt(s, ST_AUDIT_LIST_REQ);
    BIND(brc, db_bind_int64(st, 1, request_id));
    BIND(brc, db_bind_int64(st, 2, sql_limit(max)));
  } else {
    st = stmt(s, ST_AUDIT_LIST_ALL);
    BIND(brc, db_bind_int64(st, 1, sql_limit(max)));
  }
  if (brc != SQLITE_OK)
    return db_fail(s, brc, "audit bind");
  return audit_iterate(s, st, cb, ctx);
}

est_err store_audit_max_id(store *s, int64_t *id) {
  est_err rc = enter(s);
  if (rc != EST_OK)
    return rc;
  if (id == NULL)
    return fail(s, EST_ERR_INVALID, "no output");
  db_stmt *st = stmt(s, ST_AUDIT_MAX);
  int src = db_step(st);
  if (src == SQLITE_ROW)
    *id = db_column_int64(st, 0);
  else
    rc = db_fail(s, src, "audit max id");
  db_reset(st);
  return rc;
}

est_err store_request_count_live(store *s, const uint8_t client_fp[32],
                                  int64_t now, size_t *count) {
  est_err rc = enter(s);
  if (rc != EST_OK)
    return rc;
  if (client_fp == NULL || count == NULL)
    return fail(s, EST_ERR_INVALID, "count: missing argument");
  db_stmt *st = stmt(s, ST_REQ_COUNT_LIVE);
  int src = db_bind_blob(st, 1, client_fp, STORE_SHA256_LEN);
  if (src == SQLITE_OK)
    src = db_bind_int64(st, 2, now);
  if (src == SQLITE_OK)
    src = db_step(st);
  if (src == SQLITE_ROW)
    *count = (size_t)db_column_int64(st, 0);
  else
    rc = db_fail(s, src, "count live requests");
  db_reset(st);
  return rc;
}

est_err store_request_count_pending(store *s, int64_t now, size_t *count) {
  est_err rc = enter(s);
  if (rc != EST_OK)
    return rc;
  if (count == NULL)
    return fail(s, EST_ERR_INVALID, "count: missing argument");
  db_stmt *st = stmt(s, ST_REQ_COUNT_PENDING);
  int src = db_bind_int64(st, 1, now);
  if (src == SQLITE_OK)
    src = db_step(st);
  if (src == SQLITE_ROW)
    *count = (size_t)db_column_int64(st, 0);
  else
    rc = db_fail(s, src, "count pending requests");
  db_reset(st);
  return rc;
}

/* ------------------------------------------------------------ meta */

est_err store_meta_get(store *s, const char *key, char **value) {
  bool oom = false;
  est_err rc = enter(s);
  if (value != NULL)
    *value = NULL;
  if (rc != EST_OK)
    return rc;
  if (value == NULL)
    return fail(s, EST_ERR_INVALID, "no output");
  if ((rc = check_text(s, key, true, "meta key")) != EST_OK)
    return rc;
  db_stmt *st = stmt(s, ST_META_GET);
  int src = db_bind_text(st, 1, key);
  if (src == SQLITE_OK)
    src = db_step(st);
  if (src == SQLITE_ROW) {
    *value = col_strdup(st, 0, &oom);
    if (oom)
      rc = fail(s, EST_ERR_NOMEM, "out of memory reading meta %s", key);
  } else if (src == SQLITE_DONE) {
    rc = fail(s, EST_ERR_NOT_FOUND, "meta key %s not set", key);
  } else {
    rc = db_fail(s, src, "meta get");
  }
  db_reset(st);
  return rc;
}

est_err store_meta_set(store *s, const char *key, const char *value) {
  int brc = SQLITE_OK;
  est_err rc = enter_write(s);
  if (rc != EST_OK)
    return rc;
  if ((rc = check_text(s, key, true, "meta key")) != EST_OK)
    return rc;
  if (value == NULL)
    return fail(s, EST_ERR_INVALID, "meta value is required");
  if ((rc = check_text(s, value, false, "meta value")) != EST_OK)
    return rc;
  if ((rc = tx_begin(s)) != EST_OK)
    return rc;
  db_stmt *st = stmt(s, ST_META_SET);
  BIND(brc, db_bind_text(st, 1, key));
  BIND(brc, db_bind_text(st, 2, value));
  rc = brc != SQLITE_OK ? db_fail(s, brc, "meta bind")
                        : exec_done(s, st, "meta set", NULL);
  return tx_end(s, rc);
}
