/* App-side Block1 reassembly with a size cap (RFC 7959 §2.3,
 * docs/decisions.md §11). Pure: no libcoap. */
#include "body.h"

#include <stdlib.h>
#include <string.h>

/* RFC 7959 §2.2: NUM has at most 20 bits in a 3-byte option value. */
#define BLOCK_NUM_MAX 0xFFFFFu
/* First allocation when no Size1 is known; doubled from there. */
#define BODY_INITIAL_CAP 256u

void body_asm_init(body_asm *a, size_t max) {
  if (!a)
    return;
  memset(a, 0, sizeof *a);
  a->max = max;
}

void body_asm_reset(body_asm *a) {
  if (!a)
    return;
  free(a->buf);
  a->buf = NULL;
  a->len = 0;
  a->cap = 0;
  a->active = false;
}

/* Make room for @p need bytes (need <= max), doubling from the current
 * capacity and clamping at max. */
static est_err ensure_cap(body_asm *a, size_t need) {
  size_t cap = a->cap ? a->cap : BODY_INITIAL_CAP;
  uint8_t *p;

  if (need <= a->cap)
    return EST_OK;
  /* Callers check the cap first; this keeps the loop finite regardless. */
  if (need > a->max)
    return EST_ERR_TOO_LARGE;
  while (cap < need)
    cap = cap > a->max / 2 ? a->max : cap * 2;
  if (cap > a->max)
    cap = a->max;
  p = realloc(a->buf, cap);
  if (!p)
    return EST_ERR_NOMEM;
  a->buf = p;
  a->cap = cap;
  return EST_OK;
}

est_err body_asm_add(body_asm *a, const body_block *blk, const uint8_t *data,
                     size_t len, size_t size1, bool *complete) {
  est_err rc;
  size_t bsize;
  uint64_t offset;

  if (complete)
    *complete = false;
  if (!a)
    return EST_ERR_INVALID;
  if (!blk || !complete || (!data && len)) {
    rc = EST_ERR_INVALID;
    goto fail;
  }
  /* SZX 7 is BERT, reserved for CoAP over TCP (RFC 8323 §6); 4.00 here. */
  if (blk->szx > 6 || blk->num > BLOCK_NUM_MAX) {
    rc = EST_ERR_BAD_REQUEST;
    goto fail;
  }
  bsize = (size_t)1 << (blk->szx + 4);
  /* Fits easily: num < 2^20, shift <= 10. */
  offset = (uint64_t)blk->num << (blk->szx + 4);

  if (blk->num == 0) {
    /* A new body, also a restart after 5.03 (RFC 9148 §4.7, Figure 4). */
    body_asm_reset(a);
    a->active = true;
  } else if (!a->active) {
    rc = EST_ERR_INCOMPLETE;
    goto fail;
  }
  /* RFC 7959 §2.5: 4.13 when Size1 announces more than we take. */
  if (size1 > a->max) {
    rc = EST_ERR_TOO_LARGE;
    goto fail;
  }
  /* RFC 7959 §2.3: the blocks must be contiguous; the offset check also
   * admits a size change that keeps num*size on the bytes held (§2.3,
   * the server may ask for a smaller block in its 2.31). */
  if (offset != a->len) {
    rc = EST_ERR_INCOMPLETE;
    goto fail;
  }
  /* RFC 7959 §2.2: every block but the last is exactly the block size,
   * and no block is larger. */
  if ((blk->more && len != bsize) || len > bsize) {
    rc = EST_ERR_BAD_REQUEST;
    goto fail;
  }
  if (len > a->max - a->len) {
    rc = EST_ERR_TOO_LARGE;
    goto fail;
  }
  /* A Size1 within the cap sizes the buffer once. */
  if (blk->num == 0 && size1 > len) {
    rc = ensure_cap(a, size1);
    if (rc != EST_OK)
      goto fail;
  }
  if (len) {
    rc = ensure_cap(a, a->len + len);
    if (rc != EST_OK)
      goto fail;
    memcpy(a->buf + a->len, data, len);
    a->len += len;
  }
  if (!blk->more) {
    a->active = false;
    *complete = true;
  }
  return EST_OK;

fail:
  body_asm_reset(a);
  return rc;
}

uint8_t *body_asm_take(body_asm *a, size_t *len) {
  uint8_t *buf = NULL;

  if (len)
    *len = 0;
  if (!a)
    return NULL;
  /* A transfer still in progress is not handed out. */
  if (a->active)
    return NULL;
  if (a->len && len) {
    buf = a->buf;
    *len = a->len;
    a->buf = NULL;
  }
  body_asm_reset(a);
  return buf;
}

est_err body_block_decode(const uint8_t *val, size_t len, body_block *out) {
  uint32_t v = 0;

  if (!out || (!val && len))
    return EST_ERR_INVALID;
  if (len > 3)
    return EST_ERR_BAD_REQUEST;
  /* RFC 7959 §2.2: NUM | M (bit 3) | SZX (bits 0-2); empty value is 0. */
  for (size_t i = 0; i < len; i++)
    v = (v << 8) | val[i];
  out->num = v >> 4;
  out->more = (v >> 3) & 1u;
  out->szx = v & 7u;
  return EST_OK;
}
