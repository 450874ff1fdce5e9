/* Private key file modes (keyfile.h). */
#include "keyfile.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

est_err est_keyfile_check(const char *path, bool *group_readable, char *diag,
                          size_t diag_len) {
  struct stat st;
  if (group_readable)
    *group_readable = false;
  if (!path)
    return EST_ERR_INVALID;
  /* The file itself, not a link to it: what open() will read. */
  if (stat(path, &st) != 0) {
    snprintf(diag, diag_len, "cannot examine '%s': %s", path, strerror(errno));
    return EST_ERR_IO;
  }
  unsigned mode = (unsigned)st.st_mode & 07777u;
  if (mode & (S_IROTH | S_IWOTH | S_IWGRP)) {
    snprintf(diag, diag_len,
             "private key '%s' has mode %04o: other users can %s it; "
             "run chmod 600 '%s' (or 640 for a group that must read it)",
             path, mode, mode & (S_IROTH | S_IWOTH) ? "read or change" : "change", path);
    return EST_ERR_CONFIG;
  }
  if (group_readable)
    *group_readable = (mode & S_IRGRP) != 0;
  return EST_OK;
}
