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

/** Block1 transfers one session may have open at once (dedup.h has the
 * same bound on answers kept). */
#define BODY_XFERS_MAX 4
#define BODY_TOKEN_MAX 8

/** What names one Block1 transfer inside a session. */
typedef struct body_key {
  const void *owner;              /**< the resource it is for */
  bool tagged;                    /**< a Request-Tag option was present */
  uint8_t tag[BODY_TAG_MAX];
  size_t tag_len;
  uint8_t token[BODY_TOKEN_MAX];  /**< the latest block's token */
  size_t token_len;
} body_key;

typedef struct body_xfer {
  bool used;
  body_key key;
  long long at; /**< when its latest block came */
  body_asm a;
} body_xfer;

/** The open Block1 transfers of one session (RFC 7959 §2.3, RFC 9175 §3). */
typedef struct body_table {
  size_t max; /**< slots in use at most, 1..BODY_XFERS_MAX */
  body_xfer x[BODY_XFERS_MAX];
} body_table;

/** Start empty with a cap of @p max bytes. */
void body_asm_init(body_asm *a, size_t max);

/**
 * Add one block. @p size1 is the Size1 option (0 if absent).
 * - num 0 starts a new body (drops any old one);
 * - szx 7 -> EST_ERR_BAD_REQUEST;
 * - a block with M set that repeats bytes held (same place, same bytes)
 *   changes nothing: EST_OK, not complete (answer it with 2.31 again);
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

/** The same transfer: the same resource and Request-Tag (or both none);
 * the token is not compared. */
bool body_key_same(const body_key *a, const body_key *b);

/** Empty, with @p xfers transfers of at most @p max_body bytes each. */
void body_table_init(body_table *t, size_t max_body, size_t xfers);

/**
 * The transfer @p k names: with a Request-Tag the one with that tag, else
 * the one with that token, else the only untagged one to that resource.
 * None: NULL, or with @p start (a block 0) a free slot, the one idle
 * longest making room. The token and @p now are kept.
 */
body_asm *body_table_get(body_table *t, const body_key *k, bool start, long long now);

/** The transfer is over (complete or failed): free its slot. */
void body_table_drop(body_table *t, body_asm *a);

/** Free every transfer (the session is going away). */
void body_table_clear(body_table *t);

#endif /* EST_BODY_H */
