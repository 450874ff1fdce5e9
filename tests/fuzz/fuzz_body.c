/* Block1 reassembly (RFC 7959 §2.3) driven by arbitrary block sequences.
 *
 * Input: records of
 *   [1 byte: option length L (low 2 bits; 3 = 3 bytes; bit 2 set = 4 bytes,
 *    i.e. an over-long option)] [L option bytes]
 *   [1 byte: flags; bit 0 = Size1 present] [Size1: 2 bytes BE, if present]
 *   [2 bytes BE: payload length] [payload]
 * A record cut short by the end of input uses what is left. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "plugin/est/body.h"

#define FUZZ_MAX 4096u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t take(const uint8_t **p, size_t *left, size_t want) {
  size_t n = want < *left ? want : *left;
  *p += n;
  *left -= n;
  return n;
}

static void check(const body_asm *a) {
  if (a->len > a->max || a->cap > a->max || a->len > a->cap ||
      (a->cap && !a->buf) || (!a->cap && a->buf) || a->max != FUZZ_MAX)
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const uint8_t *p = data;
  size_t left = size;
  body_asm a;
  /* Shadow copy of what the reassembler should hold, from the rules. */
  static uint8_t shadow[FUZZ_MAX];
  size_t shadow_len = 0;
  int shadow_active = 0;

  body_asm_init(&a, FUZZ_MAX);
  while (left > 0) {
    size_t olen = (p[0] & 4) ? 4 : (p[0] & 3);
    take(&p, &left, 1);
    const uint8_t *opt = p;
    olen = take(&p, &left, olen);

    size_t size1 = 0;
    if (left) {
      uint8_t flags = p[0];
      take(&p, &left, 1);
      if ((flags & 1) && left >= 2) {
        size1 = (size_t)p[0] << 8 | p[1];
        take(&p, &left, 2);
      }
    }
    size_t plen = 0;
    if (left >= 2) {
      plen = (size_t)p[0] << 8 | p[1];
      take(&p, &left, 2);
    }
    const uint8_t *payload = p;
    plen = take(&p, &left, plen);

    body_block blk;
    est_err rc = body_block_decode(opt, olen, &blk);
    if (olen > 3) {
      if (rc != EST_ERR_BAD_REQUEST)
        abort();
      continue;
    }
    if (rc != EST_OK || blk.num > 0xFFFFF || blk.szx > 7)
      abort();

    bool complete = true;
    rc = body_asm_add(&a, &blk, payload, plen, size1, &complete);
    check(&a);

    /* Model of the rules in body.h. */
    size_t bs = (size_t)1 << ((blk.szx > 6 ? 6 : blk.szx) + 4);
    est_err want = EST_OK;
    size_t base = blk.num == 0 ? 0 : shadow_len;
    uint64_t off = (uint64_t)blk.num << ((blk.szx > 6 ? 6 : blk.szx) + 4);
    bool repeat = blk.szx != 7 && shadow_active && blk.more && plen == bs &&
                  off + plen <= shadow_len && memcmp(shadow + off, payload, plen) == 0;
    if (blk.szx == 7)
      want = EST_ERR_BAD_REQUEST;
    else if (repeat)
      want = EST_OK;
    else if (blk.num != 0 && !shadow_active)
      want = EST_ERR_INCOMPLETE;
    else if (size1 > FUZZ_MAX)
      want = EST_ERR_TOO_LARGE;
    else if (((uint64_t)blk.num << (blk.szx + 4)) != base)
      want = EST_ERR_INCOMPLETE;
    else if ((blk.more && plen != bs) || plen > bs)
      want = EST_ERR_BAD_REQUEST;
    else if (plen > FUZZ_MAX - base)
      want = EST_ERR_TOO_LARGE;
    if (rc != want)
      abort();

    if (rc != EST_OK) {
      if (a.len != 0 || a.buf || a.active || complete)
        abort();
      shadow_len = 0;
      shadow_active = 0;
      continue;
    }
    if (repeat) {
      /* A block sent again changes nothing (body.h). */
      if (complete || !a.active || a.len != shadow_len)
        abort();
      continue;
    }
    if (blk.num == 0)
      shadow_len = 0;
    if (plen)
      memcpy(shadow + shadow_len, payload, plen);
    shadow_len += plen;
    shadow_active = blk.more;
    if (a.len != shadow_len || complete != !blk.more ||
        a.active != blk.more || (a.len && memcmp(a.buf, shadow, a.len) != 0))
      abort();
    if (complete) {
      size_t len = 0;
      uint8_t *body = body_asm_take(&a, &len);
      if (len != shadow_len || (len && !body) || (!len && body) ||
          (len && memcmp(body, shadow, len) != 0))
        abort();
      free(body);
      check(&a);
      if (a.len || a.buf)
        abort();
      shadow_len = 0;
    }
  }
  body_asm_reset(&a);
  return 0;
}
