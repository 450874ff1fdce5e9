/**
 * @file p7asn.h
 * @brief The encapsulated content type of a certs-only message. RFC 5652
 * §5.2 says a SignedData with no signers carries id-data with no content;
 * GnuTLS 3.7 writes pkcs7-digestedData there, which strict readers (and
 * strongSwan's pki) complain about. This sets id-data (docs/decisions.md
 * §18). DER work is libtasn1's, with asn/cms-certs.asn.
 */
#ifndef EST_P7ASN_H
#define EST_P7ASN_H

#include <stddef.h>
#include <stdint.h>

#include "common/est_err.h"

/**
 * @p der (a ContentInfo of SignedData with no signers) again, with
 * eContentType id-data and no eContent; *out is malloc()ed. The rest is
 * copied as it is. EST_ERR_MALFORMED when it is not such a message.
 */
est_err p7asn_certs_only(const uint8_t *der, size_t len, uint8_t **out,
                         size_t *out_len) EST_MUST_CHECK;

#endif /* EST_P7ASN_H */
