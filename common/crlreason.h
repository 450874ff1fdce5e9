/**
 * @file crlreason.h
 * @brief The revocation reasons of RFC 5280 §5.3.1, by name: what
 * `estctl revoke --reason` takes and what the CRL's reasonCode carries
 * (docs/decisions.md §14). Used by the control layer and by the CA.
 */
#ifndef EST_COMMON_CRLREASON_H
#define EST_COMMON_CRLREASON_H

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

/** The accepted names, comma-separated, for error messages. */
#define EST_CRL_REASON_NAMES                                                     \
  "unspecified, keyCompromise, cACompromise, affiliationChanged, superseded, "  \
  "cessationOfOperation, certificateHold, privilegeWithdrawn, aACompromise"

/**
 * The CRLReason value of @p name (exact RFC 5280 spelling, case-insensitive).
 * false for anything else, including removeFromCRL, which belongs in delta
 * CRLs only and never in a revocation.
 */
bool est_crl_reason_parse(const char *name, unsigned *code);

/** The RFC 5280 spelling of @p code, or NULL if it is not one of ours. */
const char *est_crl_reason_name(unsigned code);

#ifdef __cplusplus
}
#endif

#endif /* EST_COMMON_CRLREASON_H */
