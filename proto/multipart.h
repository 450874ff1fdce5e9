/**
 * @file multipart.h
 * @brief application/multipart-core (CF 62, RFC 8710) for skg/skc.
 *
 * The body is a CBOR array of alternating Content-Format (uint) and
 * representation (bstr). EST-coaps uses exactly two parts (RFC 9148 §4.8).
 * Encoding uses libcbor; decoding is strict and never allocates.
 */
#ifndef EST_MULTIPART_H
#define EST_MULTIPART_H

#include <stddef.h>
#include <stdint.h>

#include "common/est_err.h"

/** Cap on a multipart body we decode. */
#define MP_BODY_MAX 65536u

typedef struct mp_part {
  uint16_t cf;         /**< Content-Format of the part */
  const uint8_t *data; /**< DER of the part */
  size_t len;
} mp_part;

/**
 * Encode @p n parts as one CBOR array of 2n items. *out is malloc()ed;
 * since it may hold a private key, free it with pki_secret_free() or wipe
 * it. EST_ERR_INVALID for n == 0.
 */
est_err mp_encode(const mp_part *parts, size_t n, uint8_t **out,
                  size_t *out_len) EST_MUST_CHECK;

/**
 * Decode an EST-coaps keygen body: a definite-length array of exactly 4
 * items [uint cf, bstr, uint cf, bstr], nothing trailing, cf <= 65535,
 * definite-length byte strings only. out[] point into @p buf, in wire
 * order. EST_ERR_MALFORMED on anything else; EST_ERR_TOO_LARGE over
 * MP_BODY_MAX.
 */
est_err mp_decode_pair(const uint8_t *buf, size_t len,
                       mp_part out[2]) EST_MUST_CHECK;

#endif /* EST_MULTIPART_H */
