/* est-enroll file handling: capped reads, and atomic writes that never
 * leave a half-written file or a temporary behind. */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "tools/enroll/files.h"

static char dir[] = "/tmp/test_enroll_files.XXXXXX";

static int setup(void **state) {
  (void)state;
  return mkdtemp(dir) ? 0 : -1;
}

static int entries(void) {
  int n = 0;
  DIR *d = opendir(dir);
  struct dirent *e;
  while (d && (e = readdir(d)) != NULL)
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
      n++;
  if (d)
    closedir(d);
  return n;
}

static int teardown(void **state) {
  (void)state;
  DIR *d = opendir(dir);
  struct dirent *e;
  char p[sizeof dir + 300];
  while (d && (e = readdir(d)) != NULL) {
    snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
      unlink(p);
  }
  if (d)
    closedir(d);
  rmdir(dir);
  return 0;
}

static void write_and_read(void **state) {
  (void)state;
  char p[256], diag[256];
  uint8_t *buf = NULL;
  size_t len = 0;
  struct stat st;
  snprintf(p, sizeof p, "%s/a.pem", dir);
  assert_false(ec_file_exists(p));
  assert_int_equal(ec_file_write_atomic(p, "abc", 3, 0644, diag, sizeof diag), EST_OK);
  assert_true(ec_file_exists(p));
  assert_int_equal(stat(p, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0644);
  assert_int_equal(ec_file_read(p, 16, &buf, &len, diag, sizeof diag), EST_OK);
  assert_int_equal(len, 3);
  assert_memory_equal(buf, "abc", 4); /* NUL-terminated */
  ec_file_free(buf, len);
  /* Replace, with a key's mode; an empty file is fine. */
  assert_int_equal(ec_file_write_atomic(p, "", 0, 0600, diag, sizeof diag), EST_OK);
  assert_int_equal(stat(p, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0600);
  assert_int_equal(st.st_size, 0);
  assert_int_equal(entries(), 1);
  /* A relative name works too (written in the current folder). */
  char cwd[256];
  assert_non_null(getcwd(cwd, sizeof cwd));
  assert_int_equal(chdir(dir), 0);
  assert_int_equal(ec_file_write_atomic("rel.txt", "x", 1, 0644, NULL, 0), EST_OK);
  assert_int_equal(chdir(cwd), 0);
  assert_int_equal(entries(), 2);
}

static void read_caps(void **state) {
  (void)state;
  char p[256], diag[256];
  uint8_t *buf = NULL;
  size_t len = 0;
  snprintf(p, sizeof p, "%s/big", dir);
  assert_int_equal(ec_file_write_atomic(p, "0123456789", 10, 0644, NULL, 0), EST_OK);
  assert_int_equal(ec_file_read(p, 10, &buf, &len, diag, sizeof diag), EST_OK);
  ec_file_free(buf, len);
  assert_int_equal(ec_file_read(p, 9, &buf, &len, diag, sizeof diag), EST_ERR_IO);
  assert_null(buf);
  assert_non_null(strstr(diag, "larger than 9 bytes"));
  snprintf(p, sizeof p, "%s/missing", dir);
  assert_int_equal(ec_file_read(p, 10, &buf, &len, diag, sizeof diag), EST_ERR_IO);
  assert_non_null(strstr(diag, "No such file"));
  /* A folder is not a file. */
  assert_int_equal(ec_file_read(dir, 10, &buf, &len, diag, sizeof diag), EST_ERR_IO);
}

static void failed_write_leaves_nothing(void **state) {
  (void)state;
  char p[256], diag[256];
  int before = entries();
  /* No such folder: nothing written anywhere. */
  snprintf(p, sizeof p, "%s/no/such/dir/x.pem", dir);
  assert_int_equal(ec_file_write_atomic(p, "x", 1, 0644, diag, sizeof diag), EST_ERR_IO);
  assert_non_null(strstr(diag, "temporary"));
  /* The target is a folder: rename fails, the temporary is removed, the
   * folder is untouched. */
  snprintf(p, sizeof p, "%s/sub", dir);
  assert_int_equal(mkdir(p, 0755), 0);
  char inner[300];
  snprintf(inner, sizeof inner, "%s/keep", p);
  assert_int_equal(ec_file_write_atomic(inner, "k", 1, 0644, NULL, 0), EST_OK);
  assert_int_equal(ec_file_write_atomic(p, "x", 1, 0644, diag, sizeof diag), EST_ERR_IO);
  assert_int_equal(entries(), before + 1);
  assert_true(ec_file_exists(inner));
  unlink(inner);
  rmdir(p);
  assert_int_equal(entries(), before);
  /* Bad arguments. */
  assert_int_equal(ec_file_write_atomic("", "x", 1, 0644, NULL, 0), EST_ERR_INVALID);
  assert_int_equal(ec_file_write_atomic("/tmp/", "x", 1, 0644, NULL, 0), EST_ERR_INVALID);
  assert_int_equal(ec_file_write_atomic("/tmp/x", NULL, 1, 0644, NULL, 0), EST_ERR_INVALID);
  ec_file_free(NULL, 5);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(write_and_read),
    cmocka_unit_test(read_caps),
    cmocka_unit_test(failed_write_leaves_nothing),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
