/**
 * @file der.h
 * @brief The outer DER checks server and client share: just enough to
 * find TLV boundaries (one-byte tags, definite lengths of at most four
 * bytes). GnuTLS does the real parsing; this gives the exact outer length
 * (no trailing bytes) and the raw pieces of a structure, such as the
 * subject and SubjectPublicKeyInfo of a CSR.
 *
 * Pure functions on borrowed buffers: no allocation, no library state.
 */
#ifndef PROTO_DER_H
#define PROTO_DER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** One TLV inside a buffer; offsets are from the buffer's start. */
typedef struct der_tlv {
  uint8_t tag;
  size_t off; /**< of the tag byte */
  size_t hdr; /**< tag + length bytes */
  size_t len; /**< content length */
} der_tlv;

/**
 * Read the TLV at @p off in @p p, which must end by @p end. false when it
 * does not fit, has a multi-byte tag, an indefinite length or a length of
 * more than four bytes.
 */
bool der_next(const uint8_t *p, size_t end, size_t off, der_tlv *t);

/** The offset just past @p t. */
size_t der_end(const der_tlv *t);

/**
 * True if @p der is exactly one definite-length DER SEQUENCE: the outer
 * check for blobs GnuTLS has no parser for, such as CsrAttrs (RFC 7030
 * §4.5.2).
 */
bool der_one_sequence(const uint8_t *der, size_t len);

#endif /* PROTO_DER_H */
