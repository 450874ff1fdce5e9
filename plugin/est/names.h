/**
 * @file names.h
 * @brief Issuance policy (docs/decisions.md §13): which names, extensions
 * and keys a CSR may ask for before the CA signs it. The one owner of that
 * decision; enroll.c calls names_check() from check_csr for sen, sren, skg
 * and skc, and nothing else decides about a CSR's names.
 *
 * The config is filled from plugin options: numbers and switches directly,
 * words and lists through names_config_set(), which is also what the option
 * table's checks run, so coapd refuses a bad value before the plugin starts.
 */
#ifndef EST_NAMES_H
#define EST_NAMES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/est_err.h"
#include "pki.h"

/** subjectAltName types (names_config.san_types), RFC 5280 §4.2.1.6. */
#define NAMES_SAN_DNS 0x01u
#define NAMES_SAN_IP 0x02u
#define NAMES_SAN_URI 0x04u
#define NAMES_SAN_EMAIL 0x08u
#define NAMES_SAN_OTHERNAME 0x10u

/** CSR key types (names_config.key_types). */
#define NAMES_KEY_EC_P256 0x01u
#define NAMES_KEY_EC_P384 0x02u
#define NAMES_KEY_EC_P521 0x04u
#define NAMES_KEY_ED25519 0x08u
#define NAMES_KEY_RSA 0x10u /**< of at least rsa_min_bits */

/** Caps: option ranges and the sizes names_check() reads at most. */
#define NAMES_PATTERNS_MAX 16u    /**< dns_patterns entries */
#define NAMES_DNS_MAX 253u        /**< a DNS name (RFC 1035 §2.3.4) */
#define NAMES_SAN_VALUE_MAX 255u  /**< any other subjectAltName value */
#define NAMES_SANS_LIMIT 64u      /**< most max_sans may be */
#define NAMES_SUBJECT_LIMIT 1024u /**< most max_subject_bytes may be (the store's cap) */
#define NAMES_SUBJECT_MIN 64u
#define NAMES_ATTR_VALUE_MAX 255u /**< a subject attribute value we compare */

/** subject_match: whose name a device may ask for. */
typedef enum names_match {
  NAMES_MATCH_NONE = 0,      /**< any allowed name */
  NAMES_MATCH_IDEVID_CN = 1, /**< CN as the client certificate's CN */
  NAMES_MATCH_IDEVID_SERIAL = 2 /**< CN/serialNumber as its serialNumber */
} names_match;

/** Which list names_config_set() parses. */
typedef enum names_field {
  NAMES_FIELD_SAN_TYPES = 0, /**< "dns,ip,uri,email,othername" */
  NAMES_FIELD_DNS_PATTERNS,  /**< "*.devices.example.com,gw.example.com" */
  NAMES_FIELD_SUBJECT_ATTRS, /**< "CN,serialNumber,O,OU,C,ST,L,..." */
  NAMES_FIELD_SUBJECT_MATCH, /**< "none" | "idevid-cn" | "idevid-serial" */
  NAMES_FIELD_KEY_TYPES,     /**< "ec-p256,ec-p384,ec-p521,ed25519,rsa" */
  NAMES_FIELD__MAX
} names_field;

typedef struct names_config {
  unsigned san_types;       /**< NAMES_SAN_* allowed */
  bool allow_wildcard;      /**< "*" as the leftmost DNS label */
  char dns_patterns[NAMES_PATTERNS_MAX][NAMES_DNS_MAX + 1];
  size_t pattern_count;     /**< 0: any DNS name */
  unsigned max_sans;        /**< entries in the subjectAltName */
  unsigned max_subject_bytes; /**< DER and RFC 4514 form of the subject */
  uint32_t subject_attrs;   /**< bit i: attribute i of the table in names.c */
  names_match match;
  unsigned key_types;       /**< NAMES_KEY_* allowed */
  unsigned rsa_min_bits;
} names_config;

/** The defaults (docs/decisions.md §13): DNS and IP, no wildcard, any DNS
 * name, 8 SANs, 512-byte subject of CN, serialNumber, O, OU, C, ST, L,
 * subject_match none, EC P-256/P-384 and RSA >= 2048. */
void names_config_init(names_config *cfg);

/**
 * Set @p field from an option value (a LIST, or a word for SUBJECT_MATCH).
 * EST_OK, or EST_ERR_INVALID with the reason in @p why (cfg unchanged).
 * @p cfg may be NULL to check only.
 */
est_err names_config_set(names_config *cfg, names_field field, const char *value,
                         char *why, size_t why_len) EST_MUST_CHECK;

/** What names_check() needs to know about the request. */
typedef struct names_request {
  bool check_key;             /**< false for skg/skc: the CSR key and
                                   signature are ignored (SKG-2) */
  const uint8_t *client_cert; /**< DER of the authenticating certificate */
  size_t client_cert_len;
} names_request;

/**
 * The decision. EST_OK, or a refusal with a one-line reason in @p diag:
 * EST_ERR_BAD_CSR (4.00: over a size cap, weak key or hash, unknown
 * critical extension, a name that does not parse), EST_ERR_FORBIDDEN
 * (4.03: a name type, wildcard, pattern or attribute the policy refuses),
 * EST_ERR_SUBJECT_MISMATCH (4.03: subject_match), EST_ERR_NOMEM.
 */
est_err names_check(const names_config *cfg, const pki_csr *csr, const names_request *rq,
                    char *diag, size_t diag_len) EST_MUST_CHECK;

#endif /* EST_NAMES_H */
