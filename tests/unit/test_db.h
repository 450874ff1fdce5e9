/* A throwaway store database for the unit tests that need one (store,
 * control layer, broker plugin): a fresh folder under /tmp, opened with
 * create, a short busy timeout and the test's clock.
 *
 * Both backends (docs/decisions.md §21): with EST_TEST_PG_URI_FILE set
 * (ctest sets it for the *.pg tests; scripts/pg.sh writes the file), each
 * open creates a fresh database on that PostgreSQL server instead of an
 * SQLite file, and test_db_remove() drops it. A missing or unreadable file
 * is a failure, never a skip. */
#ifndef EST_TEST_DB_H
#define EST_TEST_DB_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/store.h"

#define TEST_DB_DIR_MAX 64
#define TEST_DB_PATH_MAX 192

/* The options every test database is opened with; @p clock may be NULL. */
static inline store_options test_db_options(int64_t (*clock)(void *ctx)) {
  store_options o;
  store_options_init(&o);
  o.busy_timeout_ms = 100;
  o.create = true;
  o.clock = clock;
  return o;
}

/* Is this run against PostgreSQL? */
static inline bool test_db_is_pg(void) { return getenv("EST_TEST_PG_URI_FILE") != NULL; }

/* The server's base URI (no database) from EST_TEST_PG_URI_FILE. */
static inline int test_db_pg_base(char *out, size_t cap) {
  const char *file = getenv("EST_TEST_PG_URI_FILE");
  FILE *fp = file ? fopen(file, "r") : NULL;
  if (fp == NULL) {
    fprintf(stderr, "test database: cannot read EST_TEST_PG_URI_FILE %s\n", file ? file : "");
    return -1;
  }
  bool ok = fgets(out, (int)cap, fp) != NULL;
  fclose(fp);
  if (!ok)
    return -1;
  out[strcspn(out, "\r\n")] = '\0';
  return 0;
}

/* Run @p sql on the server's "postgres" database: 0 or -1 with a message. */
static inline int test_db_pg_admin(const char *sql) {
  char base[128], uri[160];
  if (test_db_pg_base(base, sizeof base) != 0)
    return -1;
  snprintf(uri, sizeof uri, "%s/postgres", base);
  PGconn *c = PQconnectdb(uri);
  int rc = -1;
  if (PQstatus(c) == CONNECTION_OK) {
    PGresult *r = PQexec(c, sql);
    rc = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK ? 0 : -1;
    if (rc != 0)
      fprintf(stderr, "test database: %s: %s", sql, PQresultErrorMessage(r));
    PQclear(r);
  } else {
    fprintf(stderr, "test database: %s", PQerrorMessage(c));
  }
  PQfinish(c);
  return rc;
}

/* A new empty database on the test server; @p path gets its URI. */
static inline int test_db_pg_create(const char *name, char path[TEST_DB_PATH_MAX]) {
  static unsigned serial;
  char base[128], db[64], sql[128];
  if (test_db_pg_base(base, sizeof base) != 0)
    return -1;
  snprintf(db, sizeof db, "%.24s_%ld_%u", name, (long)getpid(), ++serial);
  snprintf(sql, sizeof sql, "CREATE DATABASE %s", db);
  if (test_db_pg_admin(sql) != 0)
    return -1;
  snprintf(path, TEST_DB_PATH_MAX, "%s/%s", base, db);
  return 0;
}

/* Make /tmp/NAME.XXXXXX and open DIR/est.db in it (or, on PostgreSQL, a
 * fresh database). 0, or -1 with a message. */
static inline int test_db_open(const char *name, char dir[TEST_DB_DIR_MAX],
                               char path[TEST_DB_PATH_MAX],
                               int64_t (*clock)(void *ctx), store **out) {
  char diag[256];
  snprintf(dir, TEST_DB_DIR_MAX, "/tmp/%s.XXXXXX", name);
  if (mkdtemp(dir) == NULL)
    return -1;
  if (test_db_is_pg()) {
    if (test_db_pg_create(name, path) != 0)
      return -1;
  } else {
    snprintf(path, TEST_DB_PATH_MAX, "%s/est.db", dir);
  }
  store_options o = test_db_options(clock);
  if (store_open(path, &o, out, diag, sizeof diag) != EST_OK) {
    fprintf(stderr, "test database: %s\n", diag);
    return -1;
  }
  return 0;
}

/* Remove the database with its WAL, shared-memory and journal files, or
 * drop the PostgreSQL database. */
static inline void test_db_remove_files(const char *path) {
  static const char *const suffix[] = {"", "-wal", "-shm", "-journal"};
  char p[512];
  if (store_path_is_uri(path)) {
    const char *db = strrchr(path, '/');
    snprintf(p, sizeof p, "DROP DATABASE IF EXISTS %s WITH (FORCE)", db ? db + 1 : "");
    (void)test_db_pg_admin(p);
    return;
  }
  for (size_t i = 0; i < sizeof suffix / sizeof suffix[0]; i++) {
    snprintf(p, sizeof p, "%s%s", path, suffix[i]);
    unlink(p);
  }
}

/* Remove the files (or the database) and the folder. */
static inline void test_db_remove(const char *dir, const char *path) {
  test_db_remove_files(path);
  rmdir(dir);
}

#endif /* EST_TEST_DB_H */
