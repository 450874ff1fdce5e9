/**
 * @file csr.h
 * @brief Keys and PKCS#10 CSRs for est-enroll (RFC 9148 §4.2, RFC 7030
 * §4.2.1), with identity/PoP linking in challengePassword (RFC 7030 §3.5).
 */
#ifndef EC_CSR_H
#define EC_CSR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "common/est_err.h"

#define EC_CSR_MAX 16384u       /**< largest CSR we build */
#define EC_KEY_FILE_MAX 65536u  /**< largest key file we read */
#define EC_CHALLENGE_MAX 255u   /**< challengePassword (RFC 7030 §3.5) */

/** Key types for --key-type. */
typedef enum ec_key_type {
  EC_KEY_EC_P256 = 0, /**< the default (RFC 9148 §3: secp256r1) */
  EC_KEY_EC_P384,
  EC_KEY_RSA_2048,
  EC_KEY_RSA_3072,
  EC_KEY__MAX
} ec_key_type;

/** Parse "ec-p256", "ec-p384", "rsa-2048", "rsa-3072". */
est_err ec_key_type_parse(const char *s, ec_key_type *out) EST_MUST_CHECK;

/** Generate a new key. */
est_err ec_key_generate(ec_key_type type,
                        gnutls_x509_privkey_t *out) EST_MUST_CHECK;

/**
 * Load an unencrypted PEM private key (PKCS#8, SEC1 or PKCS#1) of at most
 * EC_KEY_FILE_MAX bytes. EST_ERR_IO if unreadable, EST_ERR_MALFORMED if it
 * is not a key. The file buffer is wiped.
 */
est_err ec_key_load(const char *path, gnutls_x509_privkey_t *out, char *diag,
                    size_t diag_len) EST_MUST_CHECK;

/** Import an unencrypted DER PKCS#8 PrivateKeyInfo (CF 284). */
est_err ec_key_import_pkcs8(const uint8_t *der, size_t len,
                            gnutls_x509_privkey_t *out) EST_MUST_CHECK;

/** Write @p key as unencrypted PEM PKCS#8, mode 0600, atomically. */
est_err ec_key_write(gnutls_x509_privkey_t key, const char *path, char *diag,
                     size_t diag_len) EST_MUST_CHECK;

/** What goes into a CSR. */
typedef struct ec_csr_params {
  const char *subject;           /**< RFC 4514 DN; NULL with from_cert */
  const char *const *san_dns;    /**< dNSName SANs */
  size_t san_dns_count;
  const char *const *san_ip;     /**< iPAddress SANs, textual */
  size_t san_ip_count;
  const uint8_t *from_cert;      /**< DER cert: copy its subject and SAN */
  size_t from_cert_len;          /**< (re-enrollment, RFC 7030 §4.2.2) */
  const char *challenge;         /**< challengePassword, NULL for none */
} ec_csr_params;

/**
 * Check the user-given parts of @p p (DN syntax, IP addresses) before any
 * network traffic. EST_ERR_INVALID with a diag naming the problem.
 */
est_err ec_csr_params_check(const ec_csr_params *p, char *diag,
                            size_t diag_len) EST_MUST_CHECK;

/**
 * Build and sign a DER PKCS#10 CSR for @p key (SHA-256, SHA-384 for P-384).
 * *der is malloc()ed. EST_ERR_INVALID for bad parameters (diag says which),
 * EST_ERR_MALFORMED if from_cert does not parse, EST_ERR_INTERNAL if
 * GnuTLS fails.
 */
est_err ec_csr_build(gnutls_x509_privkey_t key, const ec_csr_params *p,
                     uint8_t **der, size_t *der_len, char *diag,
                     size_t diag_len) EST_MUST_CHECK;

#endif /* EC_CSR_H */
