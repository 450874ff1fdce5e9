/**
 * @file est_err.h
 * @brief The one project error enum, shared by every component.
 *
 * 0 is success and errors are negative. Values are append-only: never
 * renumber or reuse one, because logs, JSON replies and tests carry them.
 * CoAP codes are derived from these in exactly one place (status_coap(), plugin/est/status.h).
 */
#ifndef EST_ERR_H
#define EST_ERR_H

#ifdef __cplusplus
extern "C" {
#endif

/** Mark functions whose result must be checked (verify, authorize, store). */
#define EST_MUST_CHECK __attribute__((warn_unused_result))

typedef enum est_err {
  EST_OK = 0,
  EST_ERR_NOMEM = -1,            /**< allocation failed */
  EST_ERR_INVALID = -2,          /**< bad argument or value */
  EST_ERR_TOO_LARGE = -3,        /**< input over its size cap */
  EST_ERR_IO = -4,               /**< file or socket I/O failed */
  EST_ERR_CONFIG = -5,           /**< configuration is wrong */
  EST_ERR_BAD_CSR = -6,          /**< CSR is not valid DER PKCS#10 */
  EST_ERR_CSR_SIGNATURE = -7,    /**< CSR signature does not verify */
  EST_ERR_CONTENT_FORMAT = -8,   /**< request Content-Format not allowed */
  EST_ERR_NOT_ACCEPTABLE = -9,   /**< Accept value cannot be produced */
  EST_ERR_METHOD = -10,          /**< method not allowed on resource */
  EST_ERR_UNAUTHENTICATED = -11, /**< no client certificate */
  EST_ERR_FORBIDDEN = -12,       /**< client not authorised */
  EST_ERR_POP_LINKING = -13,     /**< identity/POP linking required */
  EST_ERR_SUBJECT_MISMATCH = -14,/**< sren subject/SAN differ from cert */
  EST_ERR_CA_REQUEST = -15,      /**< CSR asks for a CA certificate */
  EST_ERR_NOT_FOUND = -16,       /**< nothing there for this client */
  EST_ERR_INCOMPLETE = -17,      /**< block-wise sequence broken */
  EST_ERR_BAD_REQUEST = -18,     /**< malformed request or option */
  EST_ERR_PKI = -19,             /**< CA operation failed */
  EST_ERR_PENDING = -20,         /**< waiting for a decision; retry later */
  EST_ERR_UNAVAILABLE = -21,     /**< temporarily unable to serve */
  EST_ERR_INTERNAL = -22,        /**< a bug or an impossible state */
  EST_ERR_MALFORMED = -23,       /**< encoded data (CBOR, ASN.1) malformed */
  EST_ERR_TLS = -24,             /**< DTLS or GnuTLS failure */
  EST_ERR_ABI = -25,             /**< plugin ABI mismatch */
  EST_ERR_KEY_MISMATCH = -26,    /**< private key does not match cert */
  EST_ERR_ADDR_IN_USE = -27,     /**< listen address already in use */
  EST_ERR_REJECTED = -28,        /**< an operator rejected the request */
  EST_ERR_EXISTS = -29,          /**< object already exists */
  EST_ERR_STATE = -30,           /**< object is in the wrong state */
  EST_ERR_BUSY = -31,            /**< database locked or busy */
  EST_ERR_STORE = -32,           /**< database error */
  EST_ERR_SCHEMA = -33,          /**< database schema newer than code */
  EST_ERR__LAST = -34            /**< sentinel: one below the last code */
} est_err;

/** A short English description; never NULL, also for unknown values. */
const char *est_strerror(est_err err);

/** The enum name without prefix ("TOO_LARGE"), for JSON and logs. */
const char *est_err_name(est_err err);

#ifdef __cplusplus
}
#endif

#endif /* EST_ERR_H */
