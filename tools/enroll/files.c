/* Capped reads and atomic writes (temporary file, fsync, rename). */
#define _GNU_SOURCE
#include "files.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gnutls/gnutls.h>

/* "'PATH': why" into diag. */
static void diag_set(char *diag, size_t diag_len, const char *path, const char *what,
                     int err) {
  if (diag && diag_len)
    snprintf(diag, diag_len, "'%s': %s%s%s", path, what ? what : "", what ? ": " : "",
             strerror(err));
}

est_err ec_file_read(const char *path, size_t cap, uint8_t **out, size_t *len,
                     char *diag, size_t diag_len) {
  est_err rc = EST_ERR_IO;
  uint8_t *buf = NULL;
  size_t n = 0;
  int fd = -1;

  if (!path || !out || !len)
    return EST_ERR_INVALID;
  *out = NULL;
  *len = 0;
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    diag_set(diag, diag_len, path, NULL, errno);
    goto out;
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    diag_set(diag, diag_len, path, NULL, errno);
    goto out;
  }
  if (!S_ISREG(st.st_mode)) {
    if (diag && diag_len)
      snprintf(diag, diag_len, "'%s': not a regular file", path);
    goto out;
  }
  /* Read one byte past the cap to tell "exactly cap" from "larger". */
  buf = malloc(cap + 2);
  if (!buf) {
    rc = EST_ERR_NOMEM;
    goto out;
  }
  while (n <= cap) {
    ssize_t r = read(fd, buf + n, cap + 1 - n);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0) {
      diag_set(diag, diag_len, path, NULL, errno);
      goto out;
    }
    if (r == 0)
      break;
    n += (size_t)r;
  }
  if (n > cap) {
    if (diag && diag_len)
      snprintf(diag, diag_len, "'%s': larger than %zu bytes", path, cap);
    goto out;
  }
  buf[n] = '\0';
  *out = buf;
  *len = n;
  buf = NULL;
  rc = EST_OK;
out:
  if (buf)
    ec_file_free(buf, n);
  if (fd >= 0)
    close(fd);
  return rc;
}

static int write_all(int fd, const uint8_t *p, size_t len) {
  while (len) {
    ssize_t w = write(fd, p, len);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return -1;
    p += w;
    len -= (size_t)w;
  }
  return 0;
}

est_err ec_file_write_atomic(const char *path, const void *data, size_t len,
                             mode_t mode, char *diag, size_t diag_len) {
  est_err rc = EST_ERR_IO;
  char dir[PATH_MAX], tmp[PATH_MAX];
  int fd = -1, dfd = -1;
  bool have_tmp = false;

  if (!path || !path[0] || (!data && len))
    return EST_ERR_INVALID;
  const char *slash = strrchr(path, '/');
  const char *base = slash ? slash + 1 : path;
  int n;
  if (slash == path)
    n = snprintf(dir, sizeof dir, "/");
  else if (slash)
    n = snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
  else
    n = snprintf(dir, sizeof dir, ".");
  if (n < 0 || (size_t)n >= sizeof dir || !base[0]) {
    diag_set(diag, diag_len, path, NULL, EINVAL);
    return EST_ERR_INVALID;
  }
  /* Same folder as the target, so rename() is atomic (same file system). */
  n = snprintf(tmp, sizeof tmp, "%s/.%s.tmp-XXXXXX", dir, base);
  if (n < 0 || (size_t)n >= sizeof tmp) {
    diag_set(diag, diag_len, path, NULL, ENAMETOOLONG);
    return EST_ERR_INVALID;
  }
  fd = mkostemp(tmp, O_CLOEXEC);
  if (fd < 0) {
    diag_set(diag, diag_len, path, "cannot create a temporary file", errno);
    goto out;
  }
  have_tmp = true;
  /* mkostemp makes 0600; set the final mode before any byte is written. */
  if (fchmod(fd, mode) != 0 || write_all(fd, data, len) != 0 || fsync(fd) != 0) {
    diag_set(diag, diag_len, path, NULL, errno ? errno : EIO);
    goto out;
  }
  if (close(fd) != 0) {
    fd = -1;
    diag_set(diag, diag_len, path, NULL, errno);
    goto out;
  }
  fd = -1;
  if (rename(tmp, path) != 0) {
    diag_set(diag, diag_len, path, NULL, errno);
    goto out;
  }
  have_tmp = false;
  /* Make the rename itself durable. */
  dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0)
    (void)fsync(dfd);
  rc = EST_OK;
out:
  if (fd >= 0)
    close(fd);
  if (dfd >= 0)
    close(dfd);
  if (have_tmp)
    unlink(tmp);
  return rc;
}

bool ec_file_exists(const char *path) {
  struct stat st;
  return path && lstat(path, &st) == 0;
}

void ec_file_free(void *buf, size_t len) {
  if (!buf)
    return;
  gnutls_memset(buf, 0, len);
  free(buf);
}
