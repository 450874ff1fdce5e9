/**
 * @file policy.h
 * @brief Who may do what (docs/decisions.md §5-§6): the single decision point
 * between "the request is well-formed" and "issue a certificate".
 */
#ifndef EST_POLICY_H
#define EST_POLICY_H

#include <stddef.h>

#include "common/est_err.h"
#include "pki.h"
#include "proto/resource.h"

/** What the decision is based on. */
typedef struct policy_input {
  est_fn fn;                /**< the EST function asked for */
  pki_client_class cls;     /**< how the DTLS client authenticated */
  pki_client_status status; /**< why, for the diagnostic of a refusal */
  bool revoked;             /**< our certificate of the client is revoked */
  bool https;               /**< over HTTPS EST (RFC 7030), not EST-coaps */
  bool anonymous_enroll;    /**< https_anonymous manual: simpleenroll with
                                 no certificate, for an operator to decide */
  bool via_ra;              /**< an RA (ra_trust) asks for the device; cls
                                 is the device's, ANONYMOUS when the RA
                                 named no device certificate */
} policy_input;

/**
 * Decide. EST_OK: serve now (issue at once for the enrollment functions).
 * EST_ERR_FORBIDDEN: refused; EST_ERR_UNAUTHENTICATED: no client
 * certificate where one is needed. @p diag says why, fit for a CoAP
 * diagnostic or an HTTP reason.
 */
est_err policy_decide(const policy_input *in, char *diag,
                      size_t diag_len) EST_MUST_CHECK;

#endif /* EST_POLICY_H */
