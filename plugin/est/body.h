/**
 * @file body.h
 * @brief App-side Block1 reassembly with a size cap (docs/decisions.md §11).
 *
 * libcoap 4.3.1 runs without COAP_BLOCK_SINGLE_BODY here, so the handler
 * sees each Block1 block (RFC 7959 §2.3). This module is pure (no libcoap):
 * the caller decodes the option and passes the numbers in.
 */
#ifndef EST_BODY_H
#define EST_BODY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/est_err.h"

/** Request-Tag is 0..8 bytes (RFC 9175 §3.2). */
#define BODY_TAG_MAX 8

typedef struct body_asm {
  uint8_t *buf;   /**< reassembled bytes so far (malloc) */
  size_t len;     /**< bytes so far */
  size_t cap;     /**< allocated */
  size_t max;     /**< size cap for the whole body */
  bool active;    /**< a transfer is in progress */
} body_asm;

/** One Block1 option, decoded (RFC 7959 §2.2). */
typedef struct body_block {
  uint32_t num;  /**< block number */
  bool more;     /**< M bit */
  unsigned szx;  /**< size exponent, 0..6 valid over UDP (7 = BERT) */
} body_block;

/** Start empty with a cap of @p max bytes. */
void body_asm_init(body_asm *a, size_t max);

/**
 * Add one block. @p size1 is the Size1 option (0 if absent).
 * - num 0 starts a new body (drops any old one);
 * - szx 7 -> EST_ERR_BAD_REQUEST;
 * - offset num*2^(szx+4) must equal the bytes held -> else EST_ERR_INCOMPLETE;
 * - a block with M set must be exactly the block size -> EST_ERR_BAD_REQUEST;
 * - size1 > max or the total over max -> EST_ERR_TOO_LARGE (at block 0
 *   when Size1 says so, before any allocation grows past max).
 * On error the body is reset. On EST_OK, *complete tells whether this was
 * the last block; then take the body with body_asm_take().
 */
est_err body_asm_add(body_asm *a, const body_block *blk, const uint8_t *data,
                     size_t len, size_t size1, bool *complete) EST_MUST_CHECK;

/**
 * Hand the complete body to the caller (malloc, caller frees) and reset.
 * Returns NULL with *len 0 for an empty body.
 */
uint8_t *body_asm_take(body_asm *a, size_t *len);

/** Drop any partial body; the cap stays. */
void body_asm_reset(body_asm *a);

/** Decode a Block option value (RFC 7959 §2.2): EST_ERR_BAD_REQUEST if
 *  the value is longer than 3 bytes. */
est_err body_block_decode(const uint8_t *val, size_t len,
                          body_block *out) EST_MUST_CHECK;

#endif /* EST_BODY_H */
