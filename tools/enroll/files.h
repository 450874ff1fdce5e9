/**
 * @file files.h
 * @brief Capped reads and crash-safe writes for est-enroll.
 *
 * A write goes to a temporary file in the target's folder, is fsync()ed
 * and then renamed over the target, so a failed or interrupted run never
 * leaves a half-written certificate or key behind.
 */
#ifndef EC_FILES_H
#define EC_FILES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/est_err.h"

/** Cap on any PEM file we read (certificates, keys, trust bundles). */
#define EC_FILE_MAX 1048576u

/**
 * Read @p path whole into a malloc()ed buffer with one extra NUL byte (not
 * counted in *len). EST_ERR_IO if unreadable or larger than @p cap (diag
 * says which). Free with ec_file_free(buf, len) when it may hold a secret.
 */
est_err ec_file_read(const char *path, size_t cap, uint8_t **out, size_t *len,
                     char *diag, size_t diag_len) EST_MUST_CHECK;

/**
 * Write @p len bytes to @p path atomically with permissions @p mode
 * (0600 for keys): temporary file in the same folder, fsync, rename, fsync
 * of the folder. On failure the target is untouched and no temporary file
 * is left. EST_ERR_IO with diag.
 */
est_err ec_file_write_atomic(const char *path, const void *data, size_t len,
                             mode_t mode, char *diag,
                             size_t diag_len) EST_MUST_CHECK;

/** true when @p path exists (any type; a dangling link counts). */
bool ec_file_exists(const char *path);

/** Wipe @p len bytes and free; NULL is a no-op. */
void ec_file_free(void *buf, size_t len);

#endif /* EC_FILES_H */
