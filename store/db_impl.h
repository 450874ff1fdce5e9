/* Internal to store/db*.c: the connection and statement structures of
 * both drivers (docs/decisions.md §21). */
#ifndef EST_STORE_DB_IMPL_H
#define EST_STORE_DB_IMPL_H

#include "db.h"

#include <libpq-fe.h>

/* Parameters and columns a statement may have (the store's widest uses 16). */
#define DB_PG_MAX_PARAMS 16
#define DB_ERR_LEN 512

typedef struct db_pg {
  PGconn *conn;
  char *conninfo_uri;        /* the URI as given, for reconnecting */
  char options[160];         /* session settings sent at every connect */
  int busy_ms;
  bool listening;            /* LISTEN est_audit was issued on this session */
  bool read_only;
  const char *sync_off;      /* " -c synchronous_commit=off" or "" */
  uint64_t notifies;         /* NOTIFY est_audit received so far */
  int64_t changes;
} db_pg;

struct db {
  db_dialect dialect;
  sqlite3 *lite;
  sqlite3_stmt *lite_tx[3]; /* BEGIN IMMEDIATE, COMMIT, ROLLBACK */
  db_pg pg;
  bool in_tx;
  int errcode;               /* PG: the last failure as a SQLite code */
  char err[DB_ERR_LEN];
};

typedef struct db_pg_stmt {
  char *sql;                 /* with $N placeholders */
  int nparams;
  const char *values[DB_PG_MAX_PARAMS];
  int lengths[DB_PG_MAX_PARAMS];
  int formats[DB_PG_MAX_PARAMS];
  Oid types[DB_PG_MAX_PARAMS];
  char ints[DB_PG_MAX_PARAMS][24];
  PGresult *res;
  int row;                   /* current row; -1 before the first step */
  bool done;
} db_pg_stmt;

struct db_stmt {
  db *d;
  sqlite3_stmt *lite;
  db_pg_stmt pg;
};

/* db_pg.c */
est_err db_pg_open(db *d, const char *uri, const db_open_opts *o, int64_t *schema);
void db_pg_close(db *d);
void db_pg_set_busy(db *d, int ms);
int db_pg_exec(db *d, const char *sql);
int db_pg_begin(db *d);
int db_pg_commit(db *d);
void db_pg_rollback(db *d);
int db_pg_schema_get(db *d, int64_t *v);
int db_pg_schema_set(db *d, int v);
int db_pg_data_version(db *d, uint64_t *v);
int db_pg_prepare(db *d, const char *sql, db_stmt *st);
void db_pg_finalize(db_stmt *st);
void db_pg_reset(db_stmt *st);
int db_pg_bind(db_stmt *st, int i, const void *p, size_t n, Oid type, int format);
int db_pg_step(db_stmt *st);
const char *db_pg_value(db_stmt *st, int i, size_t *len, Oid *type);

#endif /* EST_STORE_DB_IMPL_H */
