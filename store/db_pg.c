/* The PostgreSQL driver under the store (docs/decisions.md §21), through
 * libpq. Every call waits on the server's socket with a deadline, so a
 * store call blocks its thread (coapd's CoAP loop) for a bounded time even
 * when the server or the network hangs; a connection that fails is dropped
 * and made again on a later call, while the caller answers 5.03. */
#define _POSIX_C_SOURCE 200809L

#include "db_impl.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The store's write lock: pg_advisory_xact_lock key "ESTC". */
#define PG_WRITE_LOCK "1163089987"
/* Beyond the lock wait, how long a statement or a connect may take. */
#define PG_ROUND_TRIP_MS 1000
/* store_open() waits this long to connect, lock and migrate. */
#define PG_OPEN_MS 5000
#define PG_APPLICATION "est-coaps"

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int pg_fail(db *d, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int pg_fail(db *d, int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(d->err, sizeof d->err, fmt, ap);
  va_end(ap);
  /* libpq messages end in a newline; the store's are one line. */
  size_t n = strlen(d->err);
  while (n > 0 && (d->err[n - 1] == '\n' || d->err[n - 1] == ' '))
    d->err[--n] = '\0';
  d->errcode = code;
  return code;
}

/* A SQLSTATE as the SQLite code store.c understands. */
static int map_sqlstate(const char *st) {
  if (st == NULL)
    return SQLITE_ERROR;
  if (strcmp(st, "23505") == 0)
    return SQLITE_CONSTRAINT_UNIQUE;
  if (strncmp(st, "23", 2) == 0)
    return SQLITE_CONSTRAINT;
  /* lock_not_available, serialization_failure, deadlock, query_canceled:
   * another writer held us up; the caller tries again later. */
  if (strcmp(st, "55P03") == 0 || strcmp(st, "40001") == 0 || strcmp(st, "40P01") == 0 ||
      strcmp(st, "57014") == 0 || strncmp(st, "57P", 3) == 0 || strncmp(st, "08", 2) == 0)
    return SQLITE_BUSY;
  if (strcmp(st, "53200") == 0)
    return SQLITE_NOMEM;
  if (strncmp(st, "53", 2) == 0)
    return SQLITE_FULL;
  if (strncmp(st, "58", 2) == 0)
    return SQLITE_IOERR;
  if (strcmp(st, "25006") == 0)
    return SQLITE_READONLY;
  return SQLITE_ERROR;
}

/* Where we are connected, for messages: never the password. */
static void describe(db *d, char *buf, size_t cap) {
  PGconn *c = d->pg.conn;
  const char *host = c ? PQhost(c) : NULL, *port = c ? PQport(c) : NULL;
  snprintf(buf, cap, "database %s on %s%s%s", c && PQdb(c) ? PQdb(c) : "?",
           host && host[0] ? host : "localhost", port && port[0] ? ":" : "", port ? port : "");
}

static void drop_conn(db *d) {
  if (d->pg.conn != NULL)
    PQfinish(d->pg.conn);
  d->pg.conn = NULL;
  d->pg.listening = false;
  /* Events may have been missed while we were away: make the broker read
   * its feed again (db_data_version()). */
  d->pg.notifies++;
}

/* Wait until the socket is ready for @p events or @p deadline passes. */
static bool wait_sock(PGconn *c, short events, int64_t deadline) {
  for (;;) {
    int64_t left = deadline - now_ms();
    if (left <= 0)
      return false;
    struct pollfd p = {.fd = PQsocket(c), .events = events};
    int n = poll(&p, 1, (int)left);
    if (n > 0)
      return true;
    if (n < 0 && errno != EINTR)
      return false;
  }
}

/* Connect without blocking past @p deadline. */
static int pg_connect(db *d, int64_t deadline) {
  const char *keys[] = {"application_name", "dbname", "options", NULL};
  const char *vals[] = {PG_APPLICATION, d->pg.conninfo_uri, d->pg.options, NULL};
  PGconn *c = PQconnectStartParams(keys, vals, 1);
  if (c == NULL)
    return pg_fail(d, SQLITE_NOMEM, "out of memory connecting to PostgreSQL");
  d->pg.conn = c;
  if (PQstatus(c) == CONNECTION_BAD)
    goto bad;
  for (PostgresPollingStatusType ps = PGRES_POLLING_WRITING;;) {
    if (ps == PGRES_POLLING_OK)
      break;
    if (ps == PGRES_POLLING_FAILED)
      goto bad;
    if (!wait_sock(c, ps == PGRES_POLLING_READING ? POLLIN : POLLOUT, deadline)) {
      char where[256];
      describe(d, where, sizeof where);
      drop_conn(d);
      return pg_fail(d, SQLITE_BUSY, "PostgreSQL (%s) did not answer in time", where);
    }
    ps = PQconnectPoll(c);
  }
  if (PQsetnonblocking(c, 1) != 0)
    goto bad;
  d->pg.listening = false;
  return SQLITE_OK;
bad:;
  char msg[DB_ERR_LEN];
  snprintf(msg, sizeof msg, "%s", PQerrorMessage(c));
  drop_conn(d);
  return pg_fail(d, SQLITE_BUSY, "cannot connect to PostgreSQL: %s", msg);
}

/* A connection to run on: the one we have, or a new one if it was lost and
 * no transaction was open on it (that one is gone with the connection). */
static int ensure_conn(db *d) {
  if (d->pg.conn != NULL && PQstatus(d->pg.conn) == CONNECTION_OK)
    return SQLITE_OK;
  if (d->in_tx)
    return pg_fail(d, SQLITE_BUSY, "PostgreSQL connection lost in a transaction");
  if (d->pg.conn != NULL)
    drop_conn(d);
  return pg_connect(d, now_ms() + d->pg.busy_ms + PG_ROUND_TRIP_MS);
}

/* Run one statement (or a script, with no parameters) and wait for its
 * result within the deadline. NULL on failure, with d->err set. */
static PGresult *pg_run(db *d, const char *sql, int n, const Oid *types,
                        const char *const *vals, const int *lens, const int *fmts) {
  int rc = ensure_conn(d);
  if (rc != SQLITE_OK)
    return NULL;
  PGconn *c = d->pg.conn;
  int ok = n < 0 ? PQsendQuery(c, sql)
                 : PQsendQueryParams(c, sql, n, types, vals, lens, fmts, 1);
  if (!ok) {
    pg_fail(d, SQLITE_BUSY, "PostgreSQL: %s", PQerrorMessage(c));
    drop_conn(d);
    return NULL;
  }
  int64_t deadline = now_ms() + d->pg.busy_ms + PG_ROUND_TRIP_MS;
  while (PQflush(c) == 1)
    if (!wait_sock(c, POLLOUT, deadline))
      goto timeout;
  PGresult *res = NULL, *r;
  for (;;) {
    while (PQisBusy(c)) {
      if (!wait_sock(c, POLLIN, deadline))
        goto timeout;
      if (!PQconsumeInput(c)) {
        PQclear(res);
        pg_fail(d, SQLITE_BUSY, "PostgreSQL connection lost: %s", PQerrorMessage(c));
        drop_conn(d);
        return NULL;
      }
    }
    if ((r = PQgetResult(c)) == NULL)
      break;
    /* A script: keep the first failure, else the last result. */
    if (res == NULL || PQresultStatus(res) == PGRES_COMMAND_OK ||
        PQresultStatus(res) == PGRES_TUPLES_OK) {
      PQclear(res);
      res = r;
    } else {
      PQclear(r);
    }
  }
  if (res == NULL) {
    pg_fail(d, SQLITE_ERROR, "PostgreSQL gave no result");
    return NULL;
  }
  ExecStatusType es = PQresultStatus(res);
  if (es != PGRES_COMMAND_OK && es != PGRES_TUPLES_OK) {
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    pg_fail(d, map_sqlstate(state), "%s", PQresultErrorMessage(res));
    PQclear(res);
    if (PQstatus(c) != CONNECTION_OK)
      drop_conn(d);
    return NULL;
  }
  const char *cmd = PQcmdStatus(res);
  if (strncmp(cmd, "INSERT", 6) == 0 || strncmp(cmd, "UPDATE", 6) == 0 ||
      strncmp(cmd, "DELETE", 6) == 0)
    d->pg.changes = strtoll(PQcmdTuples(res), NULL, 10);
  return res;
timeout:;
  /* The server or the network hangs: give up on this connection. */
  char where[256];
  describe(d, where, sizeof where);
  PGcancel *cancel = PQgetCancel(c);
  if (cancel != NULL) {
    char buf[64];
    (void)PQcancel(cancel, buf, sizeof buf);
    PQfreeCancel(cancel);
  }
  drop_conn(d);
  pg_fail(d, SQLITE_BUSY, "PostgreSQL (%s) did not answer within %d ms", where,
          d->pg.busy_ms + PG_ROUND_TRIP_MS);
  return NULL;
}

static int pg_simple(db *d, const char *sql) {
  PGresult *r = pg_run(d, sql, -1, NULL, NULL, NULL, NULL);
  if (r == NULL)
    return d->errcode;
  PQclear(r);
  return SQLITE_OK;
}

static void set_options(db *d) {
  snprintf(d->pg.options, sizeof d->pg.options,
           "-c lock_timeout=%d -c idle_in_transaction_session_timeout=%d%s%s",
           d->pg.busy_ms, d->pg.busy_ms + 10 * PG_ROUND_TRIP_MS,
           d->pg.read_only ? " -c default_transaction_read_only=on" : "", d->pg.sync_off);
}

est_err db_pg_open(db *d, const char *uri, const db_open_opts *o, int64_t *schema) {
  char where[256];
  int64_t deadline = now_ms() + PG_OPEN_MS;
  d->pg.conninfo_uri = strdup(uri);
  if (d->pg.conninfo_uri == NULL)
    return EST_ERR_NOMEM;
  d->pg.read_only = o->read_only;
  /* NORMAL: a commit does not wait for the WAL flush; a server crash may
   * lose the last moments, never consistency (store/README.md). */
  d->pg.sync_off = o->sync_normal ? " -c synchronous_commit=off" : "";
  d->pg.busy_ms = o->busy_timeout_ms > PG_OPEN_MS ? o->busy_timeout_ms : PG_OPEN_MS;
  set_options(d);
  if (pg_connect(d, deadline) != SQLITE_OK)
    return EST_ERR_IO;
  describe(d, where, sizeof where);
  PGresult *r = pg_run(d,
                       "SELECT (SELECT count(*) FROM pg_catalog.pg_tables"
                       " WHERE schemaname = current_schema()),"
                       " to_regclass('est_schema') IS NOT NULL",
                       -1, NULL, NULL, NULL, NULL);
  if (r == NULL)
    return EST_ERR_STORE;
  bool ours = PQntuples(r) == 1 && PQgetvalue(r, 0, 1)[0] == 't';
  int64_t tables = PQntuples(r) == 1 ? strtoll(PQgetvalue(r, 0, 0), NULL, 10) : 0;
  PQclear(r);
  if (!ours && tables > 0) {
    pg_fail(d, SQLITE_ERROR, "%s holds tables but no est-coaps schema", where);
    return EST_ERR_SCHEMA;
  }
  if (!ours && (!o->create || o->read_only)) {
    pg_fail(d, SQLITE_ERROR, "no est-coaps schema in %s (coapd creates it)", where);
    return EST_ERR_NOT_FOUND;
  }
  if (ours && db_pg_schema_get(d, schema) != SQLITE_OK)
    return d->errcode == SQLITE_ERROR ? EST_ERR_SCHEMA : EST_ERR_STORE;
  return EST_OK;
}

void db_pg_close(db *d) {
  if (d->pg.conn != NULL)
    PQfinish(d->pg.conn);
  d->pg.conn = NULL;
  free(d->pg.conninfo_uri);
}

void db_pg_set_busy(db *d, int ms) {
  char sql[64];
  d->pg.busy_ms = ms;
  set_options(d);
  snprintf(sql, sizeof sql, "SET lock_timeout = %d", ms);
  if (d->pg.conn != NULL && PQstatus(d->pg.conn) == CONNECTION_OK)
    (void)pg_simple(d, sql);
}

int db_pg_exec(db *d, const char *sql) { return pg_simple(d, sql); }

/* One writer at a time, like SQLite's BEGIN IMMEDIATE: every check a
 * write makes (is the request still pending? is there a live row for this
 * key?) then holds until it commits, on every node sharing the database
 * (docs/decisions.md §21). The lock wait is bounded by lock_timeout. */
int db_pg_begin(db *d) {
  int rc = pg_simple(d, "BEGIN");
  if (rc != SQLITE_OK)
    return rc;
  d->in_tx = true;
  rc = pg_simple(d, "SELECT pg_advisory_xact_lock(" PG_WRITE_LOCK ")");
  if (rc != SQLITE_OK) {
    db_pg_rollback(d);
    d->errcode = rc;
  }
  return rc;
}

int db_pg_commit(db *d) { return pg_simple(d, "COMMIT"); }

void db_pg_rollback(db *d) {
  if (d->pg.conn != NULL && PQstatus(d->pg.conn) == CONNECTION_OK &&
      PQtransactionStatus(d->pg.conn) != PQTRANS_IDLE) {
    char keep[DB_ERR_LEN];
    int code = d->errcode;
    snprintf(keep, sizeof keep, "%s", d->err);
    (void)pg_simple(d, "ROLLBACK");
    snprintf(d->err, sizeof d->err, "%s", keep);
    d->errcode = code;
  }
  d->in_tx = false;
}

int db_pg_schema_get(db *d, int64_t *v) {
  PGresult *r = pg_run(d, "SELECT to_regclass('est_schema') IS NOT NULL", -1, NULL, NULL,
                       NULL, NULL);
  if (r == NULL)
    return d->errcode;
  bool exists = PQntuples(r) == 1 && PQgetvalue(r, 0, 0)[0] == 't';
  PQclear(r);
  *v = 0;
  if (!exists)
    return SQLITE_OK;
  r = pg_run(d, "SELECT version, application FROM est_schema", -1, NULL, NULL, NULL, NULL);
  if (r == NULL)
    return d->errcode;
  int rc = SQLITE_OK;
  if (PQntuples(r) != 1 || strcmp(PQgetvalue(r, 0, 1), PG_APPLICATION) != 0)
    rc = pg_fail(d, SQLITE_ERROR, "est_schema does not belong to est-coaps");
  else
    *v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
  PQclear(r);
  return rc;
}

int db_pg_schema_set(db *d, int v) {
  char sql[256];
  snprintf(sql, sizeof sql,
           "CREATE TABLE IF NOT EXISTS est_schema (version integer NOT NULL,"
           " application text NOT NULL); DELETE FROM est_schema;"
           " INSERT INTO est_schema VALUES (%d, '" PG_APPLICATION "')",
           v);
  return pg_simple(d, sql);
}

/* LISTEN once per connection; every NOTIFY the audit trigger sends after
 * a commit moves the count (schemas/pg/001_init.sql). Reading them costs
 * no query: libpq has them from the socket. */
int db_pg_data_version(db *d, uint64_t *v) {
  if (!d->pg.listening) {
    int rc = pg_simple(d, "LISTEN est_audit");
    if (rc != SQLITE_OK)
      return rc;
    d->pg.listening = true;
  }
  if (!PQconsumeInput(d->pg.conn)) {
    pg_fail(d, SQLITE_BUSY, "PostgreSQL connection lost: %s", PQerrorMessage(d->pg.conn));
    drop_conn(d);
    return SQLITE_BUSY;
  }
  /* Our own commits do not count, as with SQLite's data_version. */
  int self = PQbackendPID(d->pg.conn);
  PGnotify *n;
  while ((n = PQnotifies(d->pg.conn)) != NULL) {
    if (n->be_pid != self)
      d->pg.notifies++;
    PQfreemem(n);
  }
  *v = d->pg.notifies;
  return SQLITE_OK;
}

/* ------------------------------------------------------------ statements */

/* ?N (SQLite) becomes $N (PostgreSQL); text in quotes is left alone. */
int db_pg_prepare(db *d, const char *sql, db_stmt *st) {
  size_t n = strlen(sql);
  char *out = malloc(n + 1);
  bool quoted = false;
  int maxp = 0;
  if (out == NULL)
    return SQLITE_NOMEM;
  for (size_t i = 0; i <= n; i++) {
    char ch = sql[i];
    if (ch == '\'')
      quoted = !quoted;
    if (ch == '?' && !quoted) {
      int p = atoi(sql + i + 1);
      if (p <= 0 || p > DB_PG_MAX_PARAMS) {
        free(out);
        return pg_fail(d, SQLITE_ERROR, "statement parameter out of range: %s", sql);
      }
      if (p > maxp)
        maxp = p;
      ch = '$';
    }
    out[i] = ch;
  }
  st->pg.sql = out;
  st->pg.nparams = maxp;
  st->pg.row = -1;
  return SQLITE_OK;
}

void db_pg_reset(db_stmt *st) {
  PQclear(st->pg.res);
  st->pg.res = NULL;
  st->pg.row = -1;
  st->pg.done = false;
  for (int i = 0; i < DB_PG_MAX_PARAMS; i++) {
    st->pg.values[i] = NULL;
    st->pg.lengths[i] = 0;
    st->pg.formats[i] = 0;
    st->pg.types[i] = 0;
  }
}

void db_pg_finalize(db_stmt *st) {
  db_pg_reset(st);
  free(st->pg.sql);
}

int db_pg_bind(db_stmt *st, int i, const void *p, size_t n, Oid type, int format) {
  if (i < 1 || i > st->pg.nparams)
    return SQLITE_RANGE;
  if (n > INT32_MAX)
    return SQLITE_TOOBIG;
  int k = i - 1;
  if (format < 0) { /* a number printed by the caller: copy it */
    snprintf(st->pg.ints[k], sizeof st->pg.ints[k], "%.*s", (int)n, (const char *)p);
    p = st->pg.ints[k];
    format = 0;
  }
  st->pg.values[k] = p;
  st->pg.lengths[k] = (int)n;
  st->pg.formats[k] = format;
  st->pg.types[k] = type;
  return SQLITE_OK;
}

int db_pg_step(db_stmt *st) {
  db *d = st->d;
  if (st->pg.done)
    return SQLITE_DONE;
  if (st->pg.res == NULL) {
    st->pg.res = pg_run(d, st->pg.sql, st->pg.nparams, st->pg.types,
                        st->pg.values, st->pg.lengths, st->pg.formats);
    if (st->pg.res == NULL)
      return d->errcode;
  }
  st->pg.row++;
  if (st->pg.row < PQntuples(st->pg.res))
    return SQLITE_ROW;
  st->pg.done = true;
  return SQLITE_DONE;
}

/* Results come in binary: integers big-endian, text and bytea as is. */
const char *db_pg_value(db_stmt *st, int i, size_t *len, Oid *type) {
  PGresult *r = st->pg.res;
  *len = 0;
  *type = 0;
  if (r == NULL || st->pg.row < 0 || st->pg.row >= PQntuples(r) || i < 0 || i >= PQnfields(r) ||
      PQgetisnull(r, st->pg.row, i))
    return NULL;
  *len = (size_t)PQgetlength(r, st->pg.row, i);
  *type = PQftype(r, i);
  return PQgetvalue(r, st->pg.row, i);
}
