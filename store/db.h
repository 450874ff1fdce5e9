/**
 * @file db.h
 * @brief Internal to store/: the SQL connection under the store, SQLite or
 * PostgreSQL (docs/decisions.md §21). store.c holds every query and every
 * rule; this layer only runs statements.
 *
 * The interface is shaped after SQLite's, which store.c was written
 * against: statements with numbered parameters (?1, ?2, ...), step until
 * SQLITE_DONE, and SQLite's result codes (SQLITE_OK, SQLITE_ROW,
 * SQLITE_DONE, SQLITE_BUSY, SQLITE_CONSTRAINT_UNIQUE, SQLITE_IOERR, ...).
 * The PostgreSQL driver maps its SQLSTATEs onto those codes, so store.c
 * decides once what each failure means.
 *
 * Bound text and blobs are borrowed: they must stay valid until the
 * statement is stepped to its end or reset.
 */
#ifndef EST_STORE_DB_H
#define EST_STORE_DB_H

#include <sqlite3.h> /* the result codes */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/est_err.h"

typedef struct db db;
typedef struct db_stmt db_stmt;

typedef enum db_dialect { DB_SQLITE = 0, DB_PG } db_dialect;

/** How to open; the store's options, translated. */
typedef struct db_open_opts {
  bool create;           /**< create (SQLite: the file; PG: the schema) */
  bool read_only;
  bool sync_normal;      /**< SQLite synchronous=NORMAL; PG synchronous_commit=off */
  bool use_group;        /**< SQLite: a new file is 0640 for group_gid */
  unsigned group_gid;
  int busy_timeout_ms;   /**< lock wait once open */
} db_open_opts;

/** A driver result code as the project's error. */
est_err db_map_code(int rc);

/** Is @p path a PostgreSQL connection URI (postgresql:// or postgres://)? */
bool db_is_pg_uri(const char *path);

/**
 * Connect to @p path (a file, or a PostgreSQL URI) and check that what is
 * there is ours. *schema gets the schema version found (0: none yet, only
 * with create). On failure *out is NULL and @p err says why.
 */
est_err db_open(const char *path, const db_open_opts *o, db **out, int64_t *schema,
                char *err, size_t err_len);
void db_close(db *d);
db_dialect db_get_dialect(const db *d);
/** The SQLite connection (store_backup()), NULL on PostgreSQL. */
sqlite3 *db_sqlite(db *d);

/** The last failure's message and code on this connection. */
const char *db_errmsg(db *d);
int db_errcode(db *d);

/** Run a script of several statements (migrations). */
int db_exec(db *d, const char *sql);

/** Write transactions: SQLite BEGIN IMMEDIATE, PostgreSQL BEGIN plus the
 * store's write lock (docs/decisions.md §21), both bounded by the busy
 * timeout. */
int db_begin(db *d);
int db_commit(db *d);
void db_rollback(db *d);
bool db_in_tx(db *d);
/** Lock waits from now on (store_open() waits longer while migrating). */
void db_set_busy_timeout(db *d, int ms);

/** The schema version recorded in the database, and setting it (inside
 * the migration's transaction). */
int db_schema_get(db *d, int64_t *v);
int db_schema_set(db *d, int v);

/** A number that changes when the audit trail may have grown from another
 * connection: SQLite's data_version, PostgreSQL's NOTIFY count. */
int db_data_version(db *d, uint64_t *v);

/** Rows the last finished INSERT/UPDATE/DELETE changed. */
int64_t db_changes(db *d);

int db_prepare(db *d, const char *sql, db_stmt **out);
void db_finalize(db_stmt *st);
/** Back to the start, with every parameter unbound. */
void db_reset(db_stmt *st);

int db_bind_int64(db_stmt *st, int i, int64_t v);
int db_bind_text(db_stmt *st, int i, const char *v);   /**< NULL binds NULL */
int db_bind_blob(db_stmt *st, int i, const void *p, size_t n);
int db_bind_null(db_stmt *st, int i);

/** SQLITE_ROW, SQLITE_DONE or a failure code. */
int db_step(db_stmt *st);

bool db_column_null(db_stmt *st, int i);
int64_t db_column_int64(db_stmt *st, int i);
/** NUL-terminated; NULL for SQL NULL. Valid until the next step or reset. */
const char *db_column_text(db_stmt *st, int i);
const void *db_column_blob(db_stmt *st, int i);
size_t db_column_bytes(db_stmt *st, int i);

#endif /* EST_STORE_DB_H */
