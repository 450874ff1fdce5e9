/**
 * @file crlasn.h
 * @brief Reason codes on the entries of a CRL (RFC 5280 §5.3.1). GnuTLS
 * makes and signs CRLs but cannot put an extension on an entry, so the CA
 * has GnuTLS make the CRL and this module adds a reasonCode to each entry
 * that has one, then has the TBSCertList signed again
 * (docs/decisions.md §14). DER work is libtasn1's, with the definitions in
 * asn/pkix-crl.asn. No key here: the caller signs.
 */
#ifndef EST_CRLASN_H
#define EST_CRLASN_H

#include <stddef.h>
#include <stdint.h>

#include "common/est_err.h"

/** One entry's reason: its serial (the INTEGER's content octets, as
 * GnuTLS returns them) and the CRLReason value. */
typedef struct crlasn_reason {
  const uint8_t *serial;
  size_t serial_len;
  unsigned code; /**< 1..10, not 7 or 8; 0 (unspecified) is left out */
} crlasn_reason;

/** Sign @p len bytes of @p tbs with the algorithm whose OID is @p sig_oid
 * (dotted); *sig is malloc()ed. Returns EST_OK or an error. */
typedef est_err (*crlasn_sign_fn)(void *ctx, const char *sig_oid, const uint8_t *tbs,
                                  size_t len, uint8_t **sig, size_t *sig_len);

/**
 * Give the entries of the DER CRL @p crl the reason codes of @p r (matched
 * by serial; entries without one keep none) and sign the result again with
 * @p sign. *out is the new DER CRL (malloc). EST_ERR_MALFORMED if @p crl
 * does not decode, EST_ERR_INVALID for a code that is not allowed.
 */
est_err crlasn_add_reasons(const uint8_t *crl, size_t crl_len, const crlasn_reason *r,
                           size_t n, crlasn_sign_fn sign, void *ctx, uint8_t **out,
                           size_t *out_len) EST_MUST_CHECK;

#endif /* EST_CRLASN_H */
