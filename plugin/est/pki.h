/**
 * @file pki.h
 * @brief The embedded CA on GnuTLS: CSR checks, issuance, PKCS#7/PKCS#8,
 * server-side key generation and client classification.
 *
 * This is the only module that touches the CA private key. Every output
 * buffer is malloc()ed and owned by the caller; buffers that hold private
 * key material must be released with pki_secret_free(), which wipes them.
 * Functions that can fail take an optional @p diag buffer that receives a
 * one-line reason fit for a CoAP diagnostic payload or a log line.
 */
#ifndef EST_PKI_H
#define EST_PKI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/est_err.h"

/** Caps on inputs, so no parser sees an unbounded buffer. */
#define PKI_CSR_MAX 16384u       /**< a DER CSR */
#define PKI_PEM_FILE_MAX 1048576u /**< a PEM file (CA cert, key, bundle) */
#define PKI_CHALLENGE_MAX 255u   /**< challengePassword (RFC 7030 §3.5) */

typedef struct pki_ca pki_ca;
typedef struct pki_trust pki_trust;
typedef struct pki_csr pki_csr;

/** Server-side key types (option keygen_type). */
typedef enum pki_key_type {
  PKI_KEY_EC_P256 = 0,
  PKI_KEY_RSA_2048 = 1,
  PKI_KEY_RSA_3072 = 2,
  PKI_KEY__MAX
} pki_key_type;

/** Parse "ec-p256", "rsa-2048", "rsa-3072". */
est_err pki_key_type_parse(const char *s, pki_key_type *out) EST_MUST_CHECK;

/**
 * Load the CA: @p cert_path is PEM, the issuing CA first, optionally
 * followed by the rest of its chain (all of them are served by crts);
 * @p key_path is the PEM private key (EC P-256/P-384 or RSA) of the first
 * cert. Fails with EST_ERR_KEY_MISMATCH if the key is not the cert's,
 * EST_ERR_CONFIG if the first cert is not a CA (basicConstraints CA:TRUE,
 * keyCertSign) or has expired, EST_ERR_IO if a file is unreadable.
 * @p cert_days (1..36500) is the validity of issued certificates; it is cut
 * to the CA's own notAfter.
 */
est_err pki_ca_load(const char *cert_path, const char *key_path,
                    unsigned cert_days, pki_ca **out, char *diag,
                    size_t diag_len) EST_MUST_CHECK;
/**
 * A CA known only by its certificates: a registrar's (RFC 9148 §5,
 * docs/decisions.md §19). @p p7 is DER PKCS#7 certs-only, the upstream's
 * cacerts answer. The CA classifies clients (its CA certificates are the
 * bag), tells what it issued, and answers crts with these very bytes; it
 * signs nothing (pki_issue, pki_keygen_issue, pki_crl_sign:
 * EST_ERR_CONFIG). EST_ERR_MALFORMED when @p p7 is not PKCS#7 with 1..16
 * certificates of which one at least is a CA.
 */
est_err pki_ca_from_p7(const uint8_t *p7, size_t len, pki_ca **out, char *diag,
                       size_t diag_len) EST_MUST_CHECK;
/** False for a CA from pki_ca_from_p7(). */
bool pki_ca_can_sign(const pki_ca *ca);

/**
 * pki_ca_load() where @p key_path may also be an RFC 7512 PKCS#11 URI
 * ("pkcs11:token=...;object=...;type=private", docs/decisions.md §20):
 * the key stays on the token and every signature goes through it. @p pin
 * (may be NULL: the URI's pin-value or pin-source, or none) is kept to log
 * in again after the token failed. At start the token must sign once:
 * a missing token or key, a wrong or locked PIN is EST_ERR_CONFIG with a
 * reason that names the URI (pin-value hidden) and never the PIN. Later,
 * a signature the token fails is EST_ERR_UNAVAILABLE, and the next one
 * opens the token again first (with @p module, pkcs11_module or NULL,
 * added again).
 */
est_err pki_ca_open(const char *cert_path, const char *key_path, const char *pin,
                    const char *module, unsigned cert_days, pki_ca **out, char *diag,
                    size_t diag_len) EST_MUST_CHECK;
/** Whether @p key names a token key (a pkcs11: URI), not a file. */
bool pki_key_is_uri(const char *key);
/** @p uri for a log line: any pin-value shown as "(hidden)". */
void pki_uri_for_log(const char *uri, char *out, size_t cap);
/** True when the CA key is on a token: signing may be slow, so it runs
 * off the loop (enroll.h). */
bool pki_ca_on_token(const pki_ca *ca);

/** One more reference to @p ca (any thread); returns it. A job that signs
 * off the loop holds one, so a reload can replace the CA under it. */
pki_ca *pki_ca_ref(pki_ca *ca);
/** Drop a reference (any thread); the last one frees the CA. */
void pki_ca_free(pki_ca *ca);

/** Number of certificates in the CA bag (crts). */
size_t pki_ca_cert_count(const pki_ca *ca);
/** The CA bag as DER PKCS#7 certs-only (CF 281); borrowed, lives with ca. */
void pki_ca_certs_p7(const pki_ca *ca, const uint8_t **der, size_t *len);
/** The first (issuing) CA certificate as DER (CF 287); borrowed. */
void pki_ca_cert_der(const pki_ca *ca, const uint8_t **der, size_t *len);

/** Load a PEM bundle of trust anchors (e.g. idevid_trust). */
est_err pki_trust_load(const char *path, pki_trust **out, char *diag,
                       size_t diag_len) EST_MUST_CHECK;
void pki_trust_free(pki_trust *trust);

/**
 * Add the CRLs of @p path (PEM, one or more, or one DER CRL; RFC 5280 §5)
 * to @p t: certificates they list no longer verify, and
 * pki_client_classify() says PKI_STATUS_REVOKED. Each CRL must be signed
 * by a CA of @p t, or nothing is added and EST_ERR_CONFIG says which file.
 * *entries (may be NULL) is the number of revoked serials listed.
 */
est_err pki_trust_add_crl_file(pki_trust *t, const char *path, unsigned *entries, char *diag,
                               size_t diag_len) EST_MUST_CHECK;

/** How a DTLS client authenticated (docs/decisions.md §5). */
typedef enum pki_client_class {
  PKI_CLIENT_UNKNOWN = 0, /**< not accepted: see pki_client_status */
  PKI_CLIENT_LDEVID = 1,  /**< issued by our CA */
  PKI_CLIENT_IDEVID = 2,  /**< chains to a manufacturer trust anchor */
  PKI_CLIENT_ANONYMOUS = 3 /**< no certificate at all (HTTPS EST only,
                                docs/decisions.md §16); never from classify */
} pki_client_class;

/**
 * Why pki_client_classify() gave the class it gave. Trust is decided
 * first, with time ignored; then the validity periods of the certificates
 * the peer sent are checked at `now`.
 */
typedef enum pki_client_status {
  PKI_STATUS_VALID = 0,          /**< verifies and every certificate is in time */
  PKI_STATUS_UNTRUSTED = 1,      /**< chains to neither our CA nor a mfr CA */
  PKI_STATUS_LDEVID_EXPIRED = 2, /**< issued by our CA, a certificate is past
                                      notAfter: never accepted */
  PKI_STATUS_IDEVID_EXPIRED = 3, /**< chains to a mfr CA, a certificate is past
                                      notAfter: IDEVID only with
                                      PKI_CLASSIFY_IDEVID_EXPIRED_OK */
  PKI_STATUS_NOT_YET_VALID = 4,  /**< verifies, but a certificate is before
                                      notBefore (or has a date GnuTLS cannot
                                      read): never accepted */
  PKI_STATUS_REVOKED = 5,        /**< chains to a mfr CA, but a CRL of
                                      idevid_crl lists a certificate of it */
  PKI_STATUS__MAX
} pki_client_status;

/** pki_client_classify() flag: AUTH-5, accept an expired IDevID. */
#define PKI_CLASSIFY_IDEVID_EXPIRED_OK 0x1u

/**
 * Classify a peer chain (DER, leaf first, as the DTLS stack gave it).
 * LDEVID if it verifies against the CA bag, else IDEVID if it verifies
 * against @p idevid (may be NULL), else UNKNOWN. Every certificate the
 * peer sent must be within its validity period at @p now (seconds since
 * the epoch); the one exception is an IDevID chain with a certificate past
 * its notAfter (and none before its notBefore) when @p flags has
 * PKI_CLASSIFY_IDEVID_EXPIRED_OK (RFC 9148 §3, AUTH-5). A chain refused
 * for time gets UNKNOWN. *status (may be NULL) says why. Returns EST_OK
 * with *out set, or EST_ERR_MALFORMED if a certificate does not parse.
 */
est_err pki_client_classify(const pki_ca *ca, const pki_trust *idevid,
                            const uint8_t *const *der, const size_t *len,
                            size_t count, long long now, unsigned flags,
                            pki_client_class *out,
                            pki_client_status *status) EST_MUST_CHECK;

/** id-kp-cmcRA (RFC 6402 §2.10): the EKU of a registration authority. */
#define PKI_KP_CMC_RA "1.3.6.1.5.5.7.3.28"

/**
 * Is the peer chain (DER, leaf first) a registration authority's (RFC 7030
 * §3.7, docs/decisions.md §17)? *is_ra is true when it verifies against
 * @p ra (ra_trust; CRLs added to it count), every certificate in it is
 * within its validity period at @p now, and the leaf carries id-kp-cmcRA
 * in its extended key usage. EST_ERR_MALFORMED if a certificate does not
 * parse.
 */
est_err pki_ra_check(const pki_trust *ra, const uint8_t *const *der, const size_t *len,
                     size_t count, long long now, bool *is_ra) EST_MUST_CHECK;

/**
 * Parse a DER PKCS#10 CSR (at most PKI_CSR_MAX bytes): EST_ERR_TOO_LARGE,
 * EST_ERR_BAD_CSR (not DER PKCS#10, trailing bytes, unsupported key).
 */
est_err pki_csr_parse(const uint8_t *der, size_t len, pki_csr **out,
                      char *diag, size_t diag_len) EST_MUST_CHECK;
void pki_csr_free(pki_csr *csr);

/** Check the CSR self-signature: EST_OK or EST_ERR_CSR_SIGNATURE. */
est_err pki_csr_verify(const pki_csr *csr) EST_MUST_CHECK;

/**
 * The challengePassword attribute. EST_OK and a NUL-terminated copy in
 * @p buf; EST_ERR_NOT_FOUND if absent; EST_ERR_TOO_LARGE if it does not fit
 * (buffer of PKI_CHALLENGE_MAX + 1 always fits a valid one);
 * EST_ERR_MALFORMED if it is no string a C string can carry (not a
 * DirectoryString, embedded NUL, non-ASCII BMP/UniversalString).
 */
est_err pki_csr_challenge(const pki_csr *csr, char *buf, size_t buf_len);

/**
 * Refuse CSRs that ask for a CA certificate: extensionRequest with
 * basicConstraints CA:TRUE, or keyUsage keyCertSign/cRLSign.
 * EST_OK or EST_ERR_CA_REQUEST.
 */
est_err pki_csr_check_profile(const pki_csr *csr, char *diag,
                              size_t diag_len) EST_MUST_CHECK;

/**
 * AUTH-7 / docs/decisions.md §6: the CSR subject and subjectAltName set must
 * equal those of @p cert_der (the authenticating certificate).
 * EST_OK, EST_ERR_SUBJECT_MISMATCH (diag says which), EST_ERR_MALFORMED.
 */
est_err pki_csr_match_cert(const pki_csr *csr, const uint8_t *cert_der,
                           size_t cert_len, char *diag,
                           size_t diag_len) EST_MUST_CHECK;

/** SHA-256 of the CSR's DER SubjectPublicKeyInfo (retry matching). */
est_err pki_csr_spki_sha256(const pki_csr *csr, uint8_t out[32]);

/** The CSR subject as an RFC 4514 string, for logs (malloc, may be NULL). */
char *pki_csr_subject(const pki_csr *csr);

/** The CSR exactly as received (DER), borrowed: lives with @p csr. For the
 * issuance policy (names.c), which reads it with its own GnuTLS object. */
const uint8_t *pki_csr_der(const pki_csr *csr, size_t *len);
/** The CSR subject Name TLV inside pki_csr_der(), borrowed. */
const uint8_t *pki_csr_subject_der(const pki_csr *csr, size_t *len);

/** Longest serial RFC 5280 §4.1.2.2 allows, in octets. */
#define PKI_SERIAL_MAX 20
/** Room for the hex of any serial, with the NUL. */
#define PKI_SERIAL_HEX_MAX (2 * PKI_SERIAL_MAX + 1)

/** PKI_SERIAL_LEN bytes: every serial this CA writes (RFC 5280 §4.1.2.2). */
#define PKI_SERIAL_LEN 16

/** A certificate just issued, with the facts the record step needs, so
 * nobody parses it again. Release with pki_issued_clear(). */
typedef struct pki_issued {
  uint8_t *der;               /**< DER certificate (malloc) */
  size_t der_len;
  uint8_t serial[PKI_SERIAL_LEN];
  long long not_before;       /**< unix seconds, as written */
  long long not_after;
} pki_issued;

void pki_issued_clear(pki_issued *c);

/** Extended key usages an issued certificate carries (RFC 5280 §4.2.1.12). */
#define PKI_EKU_CLIENT_AUTH 0x1u /**< id-kp-clientAuth */
#define PKI_EKU_SERVER_AUTH 0x2u /**< id-kp-serverAuth */
/** Largest certificate the CA writes at all (the store's cap). */
#define PKI_CERT_MAX 16384u

/** What the CA writes into every certificate (docs/decisions.md §13). */
/** Longest crl_url (RFC 5280 §4.2.1.13 distributionPoint URI). */
#define PKI_URL_MAX 512

typedef struct pki_profile {
  unsigned eku;          /**< PKI_EKU_*, at least one */
  size_t max_cert_bytes; /**< a bigger certificate is not issued (EST_ERR_BAD_CSR) */
  char crl_url[PKI_URL_MAX]; /**< "": no CRL Distribution Point */
} pki_profile;

/** Parse cert_eku: "clientAuth", "serverAuth" or both, comma-separated. */
est_err pki_eku_parse(const char *list, unsigned *out) EST_MUST_CHECK;

/**
 * Set the profile; before any issuance (the CA is shared read-only once
 * requests arrive). A CA from pki_ca_load() starts with EKU clientAuth and
 * max_cert_bytes PKI_CERT_MAX. EST_ERR_INVALID for an empty EKU set or a
 * size of 0 or over PKI_CERT_MAX.
 */
est_err pki_ca_set_profile(pki_ca *ca, const pki_profile *p) EST_MUST_CHECK;

/**
 * Issue an end-entity certificate for @p csr (signature already verified
 * by the caller): subject from the CSR, SANs copied from its
 * extensionRequest, random positive 16-byte serial, basicConstraints
 * CA:FALSE, keyUsage, the profile's EKU, SKI/AKI, validity
 * now..now+cert_days. EST_ERR_BAD_CSR if the certificate would be over the
 * profile's max_cert_bytes. @p out is cleared first and filled on EST_OK.
 */
est_err pki_issue(pki_ca *ca, const pki_csr *csr, pki_issued *out) EST_MUST_CHECK;

/**
 * Server-side keygen (RFC 9148 §4.8): generate a key of @p type, ignore the
 * CSR's public key and signature (SKG-2), issue a certificate for the new
 * key with the CSR's subject and SANs. *pkcs8 is the unencrypted DER
 * PKCS#8 PrivateKeyInfo (release with pki_secret_free).
 */
est_err pki_keygen_issue(pki_ca *ca, const pki_csr *csr, pki_key_type type,
                         uint8_t **pkcs8, size_t *pkcs8_len,
                         pki_issued *out) EST_MUST_CHECK;

/** True if @p der is a certificate that chains to this CA now (a stored
 * certificate from a CA the operator has since replaced does not). */
bool pki_ca_issued(const pki_ca *ca, const uint8_t *der, size_t len, long long now);

/** One revoked certificate, for pki_crl_sign(). */
typedef struct pki_crl_entry {
  uint8_t serial[PKI_SERIAL_MAX + 1]; /**< content octets of its INTEGER */
  size_t serial_len;
  long long revoked_at;                /**< unix seconds */
  unsigned reason;                     /**< CRLReason; 0: unspecified */
} pki_crl_entry;

/**
 * A v2 CRL of this CA (RFC 5280 §5) listing @p e, with cRLNumber @p number
 * (> 0), the CA's key identifier as authorityKeyIdentifier, and a
 * reasonCode on every entry whose reason is not unspecified. *der is
 * malloc()ed.
 */
est_err pki_crl_sign(pki_ca *ca, const pki_crl_entry *e, size_t n, uint64_t number,
                     long long this_update, long long next_update, uint8_t **der,
                     size_t *der_len) EST_MUST_CHECK;

/** Wrap one DER certificate as DER PKCS#7 certs-only (CF 281). */
est_err pki_p7_certs_only(const uint8_t *cert, size_t cert_len, uint8_t **p7,
                          size_t *p7_len) EST_MUST_CHECK;


/** The one end-entity certificate (not a CA) of a DER PKCS#7 certs-only
 * (an upstream's simpleenroll answer), copied into *cert (malloc).
 * EST_ERR_MALFORMED when there is none or more than one. */
est_err pki_p7_end_entity(const uint8_t *p7, size_t len, uint8_t **cert,
                          size_t *cert_len) EST_MUST_CHECK;

/** @p out from a certificate another CA issued: the DER copied, the dates
 * read; the serial bytes stay zero (use pki_cert_serial_hex). */
est_err pki_issued_from_der(const uint8_t *der, size_t len, pki_issued *out) EST_MUST_CHECK;

/** Whether certificate @p der carries the public key of @p csr. */
bool pki_cert_key_is_csr(const uint8_t *der, size_t len, const pki_csr *csr);

/** Whether certificate @p der carries the public key of the DER PKCS#8
 * private key @p pkcs8. */
bool pki_cert_key_is(const uint8_t *der, size_t len, const uint8_t *pkcs8, size_t pkcs8_len);

/** A certificate's serial as lowercase hex, as the store keeps it:
 * EST_OK, EST_ERR_MALFORMED, EST_ERR_TOO_LARGE (out too short). */
est_err pki_cert_serial_hex(const uint8_t *der, size_t len, char *out,
                            size_t out_len) EST_MUST_CHECK;

/** A certificate's subject as an RFC 4514 string (malloc), or NULL. */
char *pki_cert_subject(const uint8_t *der, size_t len);

/** SHA-256 of @p len bytes (certificate fingerprints). */
est_err pki_sha256(const uint8_t *data, size_t len, uint8_t out[32]) EST_MUST_CHECK;

/** Wipe and free a buffer that held secret material. NULL is a no-op. */
void pki_secret_free(uint8_t *buf, size_t len);

#endif /* EST_PKI_H */
