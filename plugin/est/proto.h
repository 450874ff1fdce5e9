/**
 * @file proto.h
 * @brief EST-coaps protocol mapping: functions, Content-Formats, Accept,
 * and the one place where an est_err becomes a CoAP response code.
 */
#ifndef EST_PROTO_H
#define EST_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "est_err.h"

/** Content-Formats (RFC 9148 §8.1, RFC 8710). */
enum {
  CF_LINK_FORMAT = 40,
  CF_MULTIPART_CORE = 62,
  CF_PKCS7_SERVER_KEYGEN = 280,
  CF_PKCS7_CERTS_ONLY = 281,
  CF_PKCS8 = 284,
  CF_CSRATTRS = 285,
  CF_PKCS10 = 286,
  CF_PKIX_CERT = 287
};

/** The EST-coaps functions (RFC 9148 Table 1). */
typedef enum est_fn {
  EST_FN_CRTS = 0,
  EST_FN_SEN,
  EST_FN_SREN,
  EST_FN_ATT,
  EST_FN_SKG,
  EST_FN_SKC,
  EST_FN__MAX
} est_fn;

typedef struct est_fn_info {
  const char *name;   /**< path segment: "crts" */
  const char *rt;     /**< discovery rt: "ace.est.crts" (RFC 9148 §8.2) */
  const char *ct;     /**< discovery ct attr value: "\"281 287\"" */
  bool post;          /**< POST with a CSR body (else GET, no body) */
} est_fn_info;

/** Static description of @p fn; NULL if out of range. */
const est_fn_info *proto_fn_info(est_fn fn);

/**
 * Check the request Content-Format (-1 = option absent) for @p fn
 * (RFC 9148 §4.3, RES-4): POST functions need 286; GET functions take
 * no Content-Format. EST_OK or EST_ERR_CONTENT_FORMAT.
 */
est_err proto_check_cf(est_fn fn, int cf) EST_MUST_CHECK;

/**
 * Pick the response Content-Format from Accept (-1 = absent), per
 * decisions.md §3: none -> 281 (285 for att, 62 for skg/skc); 287 on
 * crts only when @p ca_count == 1. EST_OK with *out, or
 * EST_ERR_NOT_ACCEPTABLE.
 */
est_err proto_negotiate(est_fn fn, int accept, size_t ca_count,
                        unsigned *out) EST_MUST_CHECK;

/**
 * The CoAP response code for an error, as the class*100+detail number
 * (e.g. 403 for 4.03); 500 for anything unexpected, 0 for EST_OK (success
 * codes depend on the method). The only mapping of internal errors to CoAP
 * codes (decisions.md §4).
 */
unsigned proto_err_code(est_err err);

/** Convert class*100+detail to libcoap's COAP_RESPONSE_CODE() value. */
#define PROTO_COAP_CODE(n) ((((n) / 100) << 5) | ((n) % 100))

#endif /* EST_PROTO_H */
