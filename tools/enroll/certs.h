/**
 * @file certs.h
 * @brief Certificates est-enroll receives and trusts: PKCS#7 certs-only
 * (CF 281), bare DER (CF 287), PEM bundles; the check that an issued
 * certificate chains to the trust anchors and carries our key.
 */
#ifndef EC_CERTS_H
#define EC_CERTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "common/est_err.h"

#define EC_CERTS_MAX 512u /**< certificates in one list */

/** A growable list of certificates it owns. Zero-initialise before use. */
typedef struct ec_certs {
  gnutls_x509_crt_t *crt;
  size_t count;
} ec_certs;

/** Free every certificate; the list is empty and reusable after. */
void ec_certs_clear(ec_certs *c);

/**
 * Append the certificates of a DER PKCS#7 SignedData certs-only
 * (RFC 9148 §4.1, CF 281). EST_ERR_MALFORMED if it does not parse or holds
 * no certificate; EST_ERR_TOO_LARGE past EC_CERTS_MAX.
 */
est_err ec_certs_add_p7(ec_certs *c, const uint8_t *der,
                        size_t len) EST_MUST_CHECK;

/** Append one DER certificate (CF 287). EST_ERR_MALFORMED on garbage. */
est_err ec_certs_add_der(ec_certs *c, const uint8_t *der,
                         size_t len) EST_MUST_CHECK;

/** Append the certificates of a PEM file (at least one). */
est_err ec_certs_add_pem_file(ec_certs *c, const char *path, char *diag,
                              size_t diag_len) EST_MUST_CHECK;

/**
 * The list as concatenated PEM, the certificate at @p first first and the
 * others after it in order. *out is malloc()ed.
 */
est_err ec_certs_pem(const ec_certs *c, size_t first, uint8_t **out,
                     size_t *len) EST_MUST_CHECK;

/** One certificate as DER; *out is malloc()ed. */
est_err ec_cert_der(gnutls_x509_crt_t crt, uint8_t **out,
                    size_t *len) EST_MUST_CHECK;

/** true when @p crt carries the public key of @p key. */
bool ec_cert_matches_key(gnutls_x509_crt_t crt, gnutls_x509_privkey_t key);

/**
 * Check certificates the server issued: one of @p issued must carry the
 * public key of @p key (that one is the leaf, *leaf its index), and the
 * leaf, with the rest of @p issued as intermediates, must chain to one of
 * @p anchors at the current time. EST_ERR_KEY_MISMATCH, EST_ERR_PKI (does
 * not chain; diag has GnuTLS's reason), EST_OK.
 */
est_err ec_certs_check_issued(const ec_certs *issued, const ec_certs *anchors,
                              gnutls_x509_privkey_t key, size_t *leaf,
                              char *diag, size_t diag_len) EST_MUST_CHECK;

/** Seconds from @p now until @p crt expires (negative once expired). */
est_err ec_cert_seconds_left(gnutls_x509_crt_t crt, long long now,
                             long long *left) EST_MUST_CHECK;

#endif /* EC_CERTS_H */
