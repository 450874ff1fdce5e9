/* A throwaway store database for the unit tests that need one (store,
 * control layer, broker plugin): a fresh folder under /tmp, opened with
 * create, a short busy timeout and the test's clock. */
#ifndef EST_TEST_DB_H
#define EST_TEST_DB_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "store/store.h"

#define TEST_DB_DIR_MAX 64
#define TEST_DB_PATH_MAX 128

/* The options every test database is opened with; @p clock may be NULL. */
static inline store_options test_db_options(int64_t (*clock)(void *ctx)) {
  store_options o;
  store_options_init(&o);
  o.busy_timeout_ms = 100;
  o.create = true;
  o.clock = clock;
  return o;
}

/* Make /tmp/NAME.XXXXXX, open DIR/est.db in it. 0, or -1 with a message. */
static inline int test_db_open(const char *name, char dir[TEST_DB_DIR_MAX],
                               char path[TEST_DB_PATH_MAX],
                               int64_t (*clock)(void *ctx), store **out) {
  char diag[256];
  snprintf(dir, TEST_DB_DIR_MAX, "/tmp/%s.XXXXXX", name);
  if (mkdtemp(dir) == NULL)
    return -1;
  snprintf(path, TEST_DB_PATH_MAX, "%s/est.db", dir);
  store_options o = test_db_options(clock);
  if (store_open(path, &o, out, diag, sizeof diag) != EST_OK) {
    fprintf(stderr, "test database: %s\n", diag);
    return -1;
  }
  return 0;
}

/* Remove the database with its WAL, shared-memory and journal files. */
static inline void test_db_remove_files(const char *path) {
  static const char *const suffix[] = {"", "-wal", "-shm", "-journal"};
  char p[512];
  for (size_t i = 0; i < sizeof suffix / sizeof suffix[0]; i++) {
    snprintf(p, sizeof p, "%s%s", path, suffix[i]);
    unlink(p);
  }
}

/* Remove the files and the folder. */
static inline void test_db_remove(const char *dir, const char *path) {
  test_db_remove_files(path);
  rmdir(dir);
}

#endif /* EST_TEST_DB_H */
