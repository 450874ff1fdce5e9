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

  /* A block sent again as a new message (our 2.31 was lost, RFC 7959
   * §2.3) that matches bytes already held gets the same 2.31 and changes
   * nothing; different bytes at that place are a new body (num 0) or a
   * broken sequence. */
  if (a->active && blk->more && len == bsize && offset + len <= a->len &&
      memcmp(a->buf + offset, data, len) == 0)
    return EST_OK;
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

bool body_key_same(const body_key *a, const body_key *b) {
  return a->owner == b->owner && a->tagged == b->tagged && a->tag_len == b->tag_len &&
         (a->tag_len == 0 || memcmp(a->tag, b->tag, a->tag_len) == 0);
}

static bool token_equal(const body_key *a, const body_key *b) {
  return a->token_len == b->token_len &&
         (a->token_len == 0 || memcmp(a->token, b->token, a->token_len) == 0);
}

void body_table_init(body_table *t, size_t max_body, size_t xfers) {
  if (!t)
    return;
  memset(t, 0, sizeof *t);
  t->max = xfers > BODY_XFERS_MAX ? BODY_XFERS_MAX : xfers;
  for (size_t i = 0; i < BODY_XFERS_MAX; i++)
    body_asm_init(&t->x[i].a, max_body);
}

/* The transfer @p k names: with a Request-Tag, that tag (RFC 9175 §3.3);
 * without one, the same token, or else the only untagged transfer to the
 * same resource (RFC 7959 lets a client change the token every block). */
static body_xfer *find(body_table *t, const body_key *k) {
  body_xfer *only = NULL;
  size_t untagged = 0;
  for (size_t i = 0; i < t->max; i++) {
    body_xfer *x = &t->x[i];
    if (!x->used || !body_key_same(&x->key, k))
      continue;
    if (k->tagged || token_equal(&x->key, k))
      return x;
    only = x;
    untagged++;
  }
  return untagged == 1 ? only : NULL;
}

body_asm *body_table_get(body_table *t, const body_key *k, bool start, long long now) {
  if (!t || !k || k->tag_len > BODY_TAG_MAX || k->token_len > BODY_TOKEN_MAX || t->max == 0)
    return NULL;
  body_xfer *x = find(t, k);
  if (!x && start) {
    /* A free slot, or the transfer that has waited longest: a device
     * has one exchange at a time (RFC 9148 §6), so an old partial body
     * is the one least likely to go on. */
    for (size_t i = 0; i < t->max; i++) {
      body_xfer *c = &t->x[i];
      if (!x || (x->used && (!c->used || c->at < x->at)))
        x = c;
    }
    body_asm_reset(&x->a);
    x->used = true;
  }
  if (!x)
    return NULL;
  x->key = *k;
  x->at = now;
  return &x->a;
}

void body_table_drop(body_table *t, body_asm *a) {
  if (!t || !a)
    return;
  for (size_t i = 0; i < BODY_XFERS_MAX; i++) {
    if (&t->x[i].a == a) {
      body_asm_reset(a);
      t->x[i].used = false;
      memset(&t->x[i].key, 0, sizeof t->x[i].key);
    }
  }
}

void body_table_clear(body_table *t) {
  if (!t)
    return;
  for (size_t i = 0; i < BODY_XFERS_MAX; i++)
    body_table_drop(t, &t->x[i].a);
}
