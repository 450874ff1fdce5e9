/**
 * @file pop.h
 * @brief Identity/PoP linking (RFC 9148 §3, RFC 7030 §3.5, docs/decisions.md §9).
 */
#ifndef EST_POP_H
#define EST_POP_H

#include <stddef.h>
#include <stdint.h>

#include "common/est_err.h"

typedef enum pop_mode { POP_OFF = 0, POP_VERIFY, POP_REQUIRE, POP__MAX } pop_mode;

/** Parse "off", "verify", "require". */
est_err pop_mode_parse(const char *s, pop_mode *out) EST_MUST_CHECK;

/**
 * Check a CSR's challengePassword (@p challenge, NULL if absent) against
 * the session's channel bindings: it must equal base64(tls-unique) or
 * base64(tls-exporter) (either binding may be absent: NULL/0).
 * OFF: always EST_OK. VERIFY: absent is EST_OK, present must match.
 * REQUIRE: must be present and match. Mismatch: EST_ERR_POP_LINKING.
 * The comparison runs in constant time.
 */
est_err pop_check(pop_mode mode, const char *challenge,
                  const uint8_t *tls_unique, size_t unique_len,
                  const uint8_t *exporter, size_t exporter_len) EST_MUST_CHECK;

#endif /* EST_POP_H */
