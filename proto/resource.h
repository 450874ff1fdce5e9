/**
 * @file resource.h
 * @brief The EST-coaps resources (RFC 9148 Table 1), their Content-Formats
 * and Accept negotiation, shared by server and client. Pure tables and
 * functions: no libcoap, no server state.
 */
#ifndef PROTO_RESOURCE_H
#define PROTO_RESOURCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/est_err.h"

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
 * docs/decisions.md §3: none -> 281 (285 for att, 62 for skg/skc); 287 on
 * crts only when @p ca_count == 1. EST_OK with *out, or
 * EST_ERR_NOT_ACCEPTABLE.
 */
est_err proto_negotiate(est_fn fn, int accept, size_t ca_count,
                        unsigned *out) EST_MUST_CHECK;

/** Longest CA label (RFC 7030 §3.2.2), in bytes. */
#define PROTO_LABEL_MAX 63u

/**
 * Check a CA label for use as the path segment ROOT/LABEL/FN: 1 to
 * PROTO_LABEL_MAX unreserved characters (A-Z a-z 0-9 . _ ~ -). EST_OK,
 * EST_ERR_INVALID for a bad length or character, EST_ERR_EXISTS when it
 * equals a function name (RFC 7030 §3.2.2).
 */
est_err proto_label_check(const char *label) EST_MUST_CHECK;

#endif /* PROTO_RESOURCE_H */
