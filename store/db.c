/* The SQL connection under the store: dispatch, and the SQLite driver
 * (docs/decisions.md §7, §21). db_pg.c is the PostgreSQL driver. */
#define _POSIX_C_SOURCE 200809L

#include "db_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* PRAGMA application_id: "ESTC". Marks the file as ours so that a wrong
 * path to some other SQLite database is refused instead of extended. */
#define STORE_APPLICATION_ID 0x45535443
/* Blocking at open is harmless (nothing is served yet): wait this long for
 * another process's lock while switching to WAL and migrating. */
#define STORE_OPEN_BUSY_MS 5000

est_err db_map_code(int rc) {
  switch (rc & 0xff) {
  case SQLITE_OK:
  case SQLITE_ROW:
  case SQLITE_DONE:
    return EST_OK;
  case SQLITE_BUSY:
  case SQLITE_LOCKED:
    return EST_ERR_BUSY;
  case SQLITE_NOMEM:
    return EST_ERR_NOMEM;
  case SQLITE_FULL:
  case SQLITE_IOERR:
  case SQLITE_CANTOPEN:
    return EST_ERR_IO;
  case SQLITE_TOOBIG:
    return EST_ERR_TOO_LARGE;
  default:
    return EST_ERR_STORE;
  }
}

static est_err open_fail(db *d, est_err rc, const char *fmt, ...)
  __attribute__((format(printf, 3, 4)));
static est_err open_fail(db *d, est_err rc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(d->err, sizeof d->err, fmt, ap);
  va_end(ap);
  return rc;
}

bool db_is_pg_uri(const char *path) {
  return path != NULL && (strncmp(path, "postgresql://", 13) == 0 ||
                          strncmp(path, "postgres://", 11) == 0);
}

/* ------------------------------------------------------------ SQLite open */

static est_err lite_query_int(db *d, const char *sql, int64_t *v) {
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(d->lite, sql, -1, &st, NULL);
  if (rc == SQLITE_OK) {
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
      *v = sqlite3_column_int64(st, 0);
      rc = SQLITE_OK;
    }
  }
  est_err e = EST_OK;
  if (rc != SQLITE_OK) {
    e = db_map_code(rc);
    open_fail(d, e == EST_OK ? EST_ERR_STORE : e, "%s: %s", sql,
              sqlite3_errcode(d->lite) == rc ? sqlite3_errmsg(d->lite) : sqlite3_errstr(rc));
  }
  sqlite3_finalize(st);
  return e;
}

static est_err lite_exec(db *d, const char *sql, const char *what) {
  char *msg = NULL;
  int rc = sqlite3_exec(d->lite, sql, NULL, NULL, &msg);
  est_err e = EST_OK;
  if (rc != SQLITE_OK) {
    e = db_map_code(rc);
    open_fail(d, e == EST_OK ? EST_ERR_STORE : e, "%s: %s", what,
              msg != NULL ? msg : sqlite3_errstr(rc));
  }
  sqlite3_free(msg);
  return e;
}

/* Refuse files that are not ours or (without create) never initialised.
 * *uv gets the schema version; store.c judges it against the program's. */
static est_err lite_check_header(db *d, const char *path, bool create, bool read_only,
                                 int64_t *uv) {
  int64_t aid = 0, tables = 0;
  est_err rc;
  if ((rc = lite_query_int(d, "PRAGMA user_version", uv)) != EST_OK ||
      (rc = lite_query_int(d, "PRAGMA application_id", &aid)) != EST_OK ||
      (rc = lite_query_int(d, "SELECT count(*) FROM sqlite_schema", &tables)) != EST_OK)
    return rc;
  if (aid != 0 && aid != STORE_APPLICATION_ID)
    return open_fail(d, EST_ERR_SCHEMA,
                     "%s is not an est-coaps database (application_id 0x%08" PRIx64 ")",
                     path, (uint64_t)aid);
  if (*uv == 0 && tables > 0)
    return open_fail(d, EST_ERR_SCHEMA, "%s holds tables but no est-coaps schema", path);
  if (*uv == 0 && (!create || read_only))
    return open_fail(d, EST_ERR_NOT_FOUND,
                     "no database at %s (the file exists but is not initialised)", path);
  return EST_OK;
}

/* It holds every CSR, client identity and the audit trail: create it
 * private, whatever the umask; SQLite gives -wal and -shm its mode. An
 * empty file is a valid new database. */
static est_err lite_create_file(db *d, const char *path, const db_open_opts *o) {
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0)
    return errno == EEXIST ? EST_OK
                           : open_fail(d, EST_ERR_IO, "cannot create %s: %s", path,
                                       strerror(errno));
  mode_t mode = o->use_group ? 0640 : 0600;
  bool ok = (!o->use_group || fchown(fd, (uid_t)-1, (gid_t)o->group_gid) == 0) &&
            fchmod(fd, mode) == 0;
  int err = errno;
  close(fd);
  if (ok)
    return EST_OK;
  (void)unlink(path);
  return open_fail(d, EST_ERR_IO, "cannot set owner and mode of new %s: %s", path,
                   strerror(err));
}

static est_err lite_open(db *d, const char *path, const db_open_opts *o, int64_t *uv) {
  int flags = SQLITE_OPEN_NOMUTEX;
  est_err rc;
  int src;

  if (!o->create || o->read_only) {
    struct stat sb;
    if (stat(path, &sb) != 0)
      return errno == ENOENT ? open_fail(d, EST_ERR_NOT_FOUND, "no database at %s", path)
                             : open_fail(d, EST_ERR_IO, "cannot access %s: %s", path,
                                         strerror(errno));
  }
  if (o->read_only)
    flags |= SQLITE_OPEN_READONLY;
  else
    flags |= SQLITE_OPEN_READWRITE | (o->create ? SQLITE_OPEN_CREATE : 0);
  if (o->create && !o->read_only && (rc = lite_create_file(d, path, o)) != EST_OK)
    return rc;

  src = sqlite3_open_v2(path, &d->lite, flags, NULL);
  if (src != SQLITE_OK) {
    est_err e = db_map_code(src);
    return open_fail(d, e == EST_OK ? EST_ERR_STORE : e, "cannot open %s: %s", path,
                     d->lite != NULL ? sqlite3_errmsg(d->lite) : sqlite3_errstr(src));
  }
  sqlite3_extended_result_codes(d->lite, 1);
  /* SQLite silently opens a file it may not write read-only; a writer that
   * only finds out at its first write would fail much later. */
  if (!o->read_only && sqlite3_db_readonly(d->lite, "main") == 1)
    return open_fail(d, EST_ERR_IO,
                     "database %s is not writable by this process (check owner and "
                     "mode of the file and its directory)",
                     path);
  sqlite3_busy_timeout(d->lite, o->busy_timeout_ms > STORE_OPEN_BUSY_MS ? o->busy_timeout_ms
                                                                        : STORE_OPEN_BUSY_MS);
  sqlite3_db_config(d->lite, SQLITE_DBCONFIG_DEFENSIVE, 1, (int *)NULL);
  sqlite3_db_config(d->lite, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, (int *)NULL);

  if ((rc = lite_check_header(d, path, o->create, o->read_only, uv)) != EST_OK)
    return rc;
  if ((rc = lite_exec(d, "PRAGMA foreign_keys = ON", "foreign keys")) != EST_OK)
    return rc;
  if (o->read_only)
    return lite_exec(d, "PRAGMA query_only = ON", "query_only");
  /* WAL: readers (estctl, the broker) never block the writer, and a commit
   * appends to one file. It is a property of the file, set once. */
  sqlite3_stmt *st = NULL;
  src = sqlite3_prepare_v2(d->lite, "PRAGMA journal_mode = WAL", -1, &st, NULL);
  if (src == SQLITE_OK)
    src = sqlite3_step(st);
  if (src == SQLITE_ROW) {
    const char *mode = (const char *)sqlite3_column_text(st, 0);
    if (mode == NULL || strcmp(mode, "wal") != 0) {
      rc = open_fail(d, EST_ERR_STORE, "%s: cannot switch to WAL (mode %s)", path,
                     mode != NULL ? mode : "?");
      sqlite3_finalize(st);
      return rc;
    }
    src = SQLITE_OK;
  }
  if (src != SQLITE_OK) {
    est_err e = db_map_code(src);
    rc = open_fail(d, e == EST_OK ? EST_ERR_STORE : e, "journal_mode WAL: %s",
                   sqlite3_errmsg(d->lite));
  }
  sqlite3_finalize(st);
  if (rc != EST_OK)
    return rc;
  /* FULL: the WAL is fsync'd at every commit, so a pending request, a
   * decision or an issued certificate survives power loss, not just a
   * crash. NORMAL is an option (store/README.md has the cost). */
  return lite_exec(d, o->sync_normal ? "PRAGMA synchronous = NORMAL" : "PRAGMA synchronous = FULL",
                   "synchronous");
}

/* ------------------------------------------------------------ dispatch */

est_err db_open(const char *path, const db_open_opts *o, db **out, int64_t *schema,
                char *err, size_t err_len) {
  est_err rc;
  db *d = calloc(1, sizeof *d);
  *out = NULL;
  *schema = 0;
  if (d == NULL) {
    snprintf(err, err_len, "out of memory");
    return EST_ERR_NOMEM;
  }
  d->dialect = db_is_pg_uri(path) ? DB_PG : DB_SQLITE;
  rc = d->dialect == DB_PG ? db_pg_open(d, path, o, schema) : lite_open(d, path, o, schema);
  if (rc != EST_OK) {
    snprintf(err, err_len, "%s", d->err);
    db_close(d);
    return rc;
  }
  *out = d;
  return EST_OK;
}

void db_close(db *d) {
  if (d == NULL)
    return;
  if (d->dialect == DB_PG)
    db_pg_close(d);
  else {
    for (int i = 0; i < 3; i++)
      sqlite3_finalize(d->lite_tx[i]);
    sqlite3_close_v2(d->lite);
  }
  free(d);
}

db_dialect db_get_dialect(const db *d) { return d->dialect; }
sqlite3 *db_sqlite(db *d) { return d->dialect == DB_SQLITE ? d->lite : NULL; }

const char *db_errmsg(db *d) {
  return d->dialect == DB_PG ? d->err : sqlite3_errmsg(d->lite);
}

int db_errcode(db *d) {
  return d->dialect == DB_PG ? d->errcode : sqlite3_extended_errcode(d->lite);
}

int db_exec(db *d, const char *sql) {
  return d->dialect == DB_PG ? db_pg_exec(d, sql) : sqlite3_exec(d->lite, sql, NULL, NULL, NULL);
}

/* SQLite's transaction statements, prepared once and stepped like every
 * other statement. */
enum { LITE_BEGIN, LITE_COMMIT, LITE_ROLLBACK };
static int lite_tx(db *d, int which) {
  static const char *const sql[] = {"BEGIN IMMEDIATE", "COMMIT", "ROLLBACK"};
  int rc = SQLITE_OK;
  if (d->lite_tx[which] == NULL)
    rc = sqlite3_prepare_v3(d->lite, sql[which], -1, SQLITE_PREPARE_PERSISTENT,
                            &d->lite_tx[which], NULL);
  if (rc == SQLITE_OK)
    rc = sqlite3_step(d->lite_tx[which]);
  if (d->lite_tx[which] != NULL)
    sqlite3_reset(d->lite_tx[which]);
  return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

int db_begin(db *d) {
  int rc = d->dialect == DB_PG ? db_pg_begin(d) : lite_tx(d, LITE_BEGIN);
  d->in_tx = rc == SQLITE_OK;
  return rc;
}

int db_commit(db *d) {
  int rc = d->dialect == DB_PG ? db_pg_commit(d) : lite_tx(d, LITE_COMMIT);
  if (rc == SQLITE_OK)
    d->in_tx = false;
  return rc;
}

/* SQLite may already have rolled back (after SQLITE_FULL, for instance);
 * then there is nothing to do. */
void db_rollback(db *d) {
  if (d->dialect == DB_PG)
    db_pg_rollback(d);
  else if (!sqlite3_get_autocommit(d->lite))
    (void)lite_tx(d, LITE_ROLLBACK);
  d->in_tx = false;
}

bool db_in_tx(db *d) { return d->in_tx; }

void db_set_busy_timeout(db *d, int ms) {
  if (d->dialect == DB_PG)
    db_pg_set_busy(d, ms);
  else
    sqlite3_busy_timeout(d->lite, ms);
}

int db_schema_get(db *d, int64_t *v) {
  if (d->dialect == DB_PG)
    return db_pg_schema_get(d, v);
  est_err e = lite_query_int(d, "PRAGMA user_version", v);
  return e == EST_OK ? SQLITE_OK : sqlite3_extended_errcode(d->lite);
}

int db_schema_set(db *d, int v) {
  if (d->dialect == DB_PG)
    return db_pg_schema_set(d, v);
  char sql[96];
  snprintf(sql, sizeof sql, "PRAGMA user_version = %d; PRAGMA application_id = %d", v,
           STORE_APPLICATION_ID);
  return sqlite3_exec(d->lite, sql, NULL, NULL, NULL);
}

int db_data_version(db *d, uint64_t *v) {
  if (d->dialect == DB_PG)
    return db_pg_data_version(d, v);
  int64_t n = 0;
  if (lite_query_int(d, "PRAGMA data_version", &n) != EST_OK)
    return sqlite3_extended_errcode(d->lite);
  *v = (uint64_t)n;
  return SQLITE_OK;
}

int64_t db_changes(db *d) {
  return d->dialect == DB_PG ? d->pg.changes : sqlite3_changes64(d->lite);
}

int db_prepare(db *d, const char *sql, db_stmt **out) {
  db_stmt *st = calloc(1, sizeof *st);
  int rc;
  *out = NULL;
  if (st == NULL)
    return SQLITE_NOMEM;
  st->d = d;
  rc = d->dialect == DB_PG ? db_pg_prepare(d, sql, st)
                           : sqlite3_prepare_v3(d->lite, sql, -1, SQLITE_PREPARE_PERSISTENT,
                                                &st->lite, NULL);
  if (rc != SQLITE_OK) {
    db_finalize(st);
    return rc;
  }
  *out = st;
  return SQLITE_OK;
}

void db_finalize(db_stmt *st) {
  if (st == NULL)
    return;
  if (st->d->dialect == DB_PG)
    db_pg_finalize(st);
  else
    sqlite3_finalize(st->lite);
  free(st);
}

void db_reset(db_stmt *st) {
  if (st->d->dialect == DB_PG) {
    db_pg_reset(st);
    return;
  }
  sqlite3_reset(st->lite);
  sqlite3_clear_bindings(st->lite);
}

/* PostgreSQL type OIDs (catalog/pg_type_d.h, stable since 7.x). */
#define OID_BYTEA 17
#define OID_INT8 20
#define OID_TEXT 25

int db_bind_int64(db_stmt *st, int i, int64_t v) {
  if (st->d->dialect == DB_SQLITE)
    return sqlite3_bind_int64(st->lite, i, v);
  char buf[24];
  int n = snprintf(buf, sizeof buf, "%" PRId64, v);
  return db_pg_bind(st, i, buf, (size_t)n, OID_INT8, -1);
}

int db_bind_text(db_stmt *st, int i, const char *v) {
  if (v == NULL)
    return db_bind_null(st, i);
  if (st->d->dialect == DB_SQLITE)
    return sqlite3_bind_text(st->lite, i, v, -1, SQLITE_STATIC);
  return db_pg_bind(st, i, v, strlen(v), OID_TEXT, 0);
}

int db_bind_blob(db_stmt *st, int i, const void *p, size_t n) {
  if (st->d->dialect == DB_SQLITE)
    return n > INT32_MAX ? SQLITE_TOOBIG : sqlite3_bind_blob(st->lite, i, p, (int)n, SQLITE_STATIC);
  return db_pg_bind(st, i, p, n, OID_BYTEA, 1);
}

int db_bind_null(db_stmt *st, int i) {
  if (st->d->dialect == DB_SQLITE)
    return sqlite3_bind_null(st->lite, i);
  return db_pg_bind(st, i, NULL, 0, 0, 0);
}

int db_step(db_stmt *st) {
  return st->d->dialect == DB_PG ? db_pg_step(st) : sqlite3_step(st->lite);
}

bool db_column_null(db_stmt *st, int i) {
  if (st->d->dialect == DB_SQLITE)
    return sqlite3_column_type(st->lite, i) == SQLITE_NULL;
  size_t n;
  Oid t;
  return db_pg_value(st, i, &n, &t) == NULL;
}

int64_t db_column_int64(db_stmt *st, int i) {
  if (st->d->dialect == DB_SQLITE)
    return sqlite3_column_int64(st->lite, i);
  size_t n;
  Oid t;
  const unsigned char *v = (const unsigned char *)db_pg_value(st, i, &n, &t);
  if (v == NULL)
    return 0;
  if (t == OID_TEXT)
    return strtoll((const char *)v, NULL, 10);
  /* Binary results: a big-endian two's complement int2, int4 or int8. */
  if (n != 2 && n != 4 && n != 8)
    return 0;
  uint64_t u = (v[0] & 0x80) ? UINT64_MAX : 0;
  for (size_t k = 0; k < n; k++)
    u = (u << 8) | v[k];
  return (int64_t)u;
}

const char *db_column_text(db_stmt *st, int i) {
  if (st->d->dialect == DB_SQLITE)
    return (const char *)sqlite3_column_text(st->lite, i);
  size_t n;
  Oid t;
  return db_pg_value(st, i, &n, &t);
}

const void *db_column_blob(db_stmt *st, int i) {
  if (st->d->dialect == DB_SQLITE)
    return sqlite3_column_blob(st->lite, i);
  size_t n;
  Oid t;
  return db_pg_value(st, i, &n, &t);
}

size_t db_column_bytes(db_stmt *st, int i) {
  if (st->d->dialect == DB_SQLITE)
    return (size_t)sqlite3_column_bytes(st->lite, i);
  size_t n = 0;
  Oid t;
  (void)db_pg_value(st, i, &n, &t);
  return n;
}
