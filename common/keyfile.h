/**
 * @file keyfile.h
 * @brief Refuse a private key file other users can read (docs/decisions.md
 * §14): coapd does not start with a world-readable ca_key or dtls_key,
 * and says when one is group-readable. Used by the host and by the plugin.
 */
#ifndef EST_COMMON_KEYFILE_H
#define EST_COMMON_KEYFILE_H

#include <stdbool.h>
#include <stddef.h>

#include "common/est_err.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * EST_OK, with *group_readable set when the group may read it (a warning,
 * not a refusal: a service group may need it). EST_ERR_CONFIG when others
 * may read or write it or the group may write it, with the mode and the
 * chmod that fixes it in @p diag; EST_ERR_IO when it cannot be examined.
 */
est_err est_keyfile_check(const char *path, bool *group_readable, char *diag,
                          size_t diag_len) EST_MUST_CHECK;

#ifdef __cplusplus
}
#endif

#endif /* EST_COMMON_KEYFILE_H */
