/* Block1 reassembly with a size cap (RFC 7959 §2.2, §2.3, §2.5). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "plugin/est/body.h"

#define BODY_MAX 4096u

static uint8_t pattern[8192];

static int setup(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof pattern; i++)
    pattern[i] = (uint8_t)(i * 31 + 7);
  return 0;
}

static est_err add(body_asm *a, uint32_t num, bool more, unsigned szx,
                   size_t off, size_t len, size_t size1, bool *complete) {
  body_block b = {num, more, szx};
  return body_asm_add(a, &b, pattern + off, len, size1, complete);
}

/* Send @p total bytes in blocks of 2^(szx+4) and check the result. */
static void send_all(unsigned szx, size_t total, size_t size1) {
  body_asm a;
  size_t bs = (size_t)1 << (szx + 4);
  bool complete = true;
  uint32_t num = 0;
  size_t off = 0;

  body_asm_init(&a, BODY_MAX);
  do {
    size_t n = total - off < bs ? total - off : bs;
    bool more = off + n < total;
    assert_int_equal(add(&a, num, more, szx, off, n, size1, &complete), EST_OK);
    assert_int_equal(complete, !more);
    assert_true(a.len <= a.max && a.cap <= a.max);
    off += n;
    num++;
  } while (off < total);
  assert_false(a.active);
  size_t len = 0;
  uint8_t *body = body_asm_take(&a, &len);
  assert_int_equal(len, total);
  assert_non_null(body);
  assert_memory_equal(body, pattern, total);
  free(body);
  assert_null(a.buf);
  assert_int_equal(a.len, 0);
  body_asm_reset(&a);
}

static void test_in_order(void **state) {
  (void)state;
  /* 64 (B.1), 256 (B.2), 1024; last block short, full, and one byte */
  send_all(2, 639, 0);
  send_all(2, 640, 0);
  send_all(4, 399, 0);
  send_all(4, 1025, 0);
  send_all(6, 1024, 0);
  send_all(6, 4000, 0);
  send_all(0, 16, 0);
  send_all(4, BODY_MAX, 0);
  send_all(4, 399, 399);
  send_all(6, BODY_MAX, BODY_MAX);
}

static void test_single_and_empty(void **state) {
  (void)state;
  body_asm a;
  bool complete = false;
  size_t len = 7;

  body_asm_init(&a, BODY_MAX);
  assert_int_equal(add(&a, 0, false, 6, 0, 0, 0, &complete), EST_OK);
  assert_true(complete);
  assert_null(body_asm_take(&a, &len));
  assert_int_equal(len, 0);
  /* Size1 larger than what comes preallocates, the body is what came */
  assert_int_equal(add(&a, 0, false, 6, 0, 10, 100, &complete), EST_OK);
  uint8_t *b = body_asm_take(&a, &len);
  assert_int_equal(len, 10);
  free(b);
  body_asm_reset(&a);
}

static void test_restart_at_zero(void **state) {
  (void)state;
  body_asm a;
  bool complete;

  body_asm_init(&a, BODY_MAX);
  assert_int_equal(add(&a, 0, true, 4, 0, 256, 0, &complete), EST_OK);
  assert_int_equal(add(&a, 1, true, 4, 256, 256, 0, &complete), EST_OK);
  /* RFC 9148 §4.7 Figure 4: after 5.03 the client starts again at 0 */
  assert_int_equal(add(&a, 0, true, 4, 1000, 256, 0, &complete), EST_OK);
  assert_int_equal(a.len, 256);
  assert_int_equal(add(&a, 1, false, 4, 1256, 10, 0, &complete), EST_OK);
  assert_true(complete);
  size_t len;
  uint8_t *b = body_asm_take(&a, &len);
  assert_int_equal(len, 266);
  assert_memory_equal(b, pattern + 1000, 266);
  free(b);
}

static void test_gap_and_duplicate(void **state) {
  (void)state;
  body_asm a;
  bool complete = true;

  body_asm_init(&a, BODY_MAX);
  /* gap: 0 then 2 */
  assert_int_equal(add(&a, 0, true, 4, 0, 256, 0, &complete), EST_OK);
  assert_int_equal(add(&a, 2, true, 4, 512, 256, 0, &complete),
                   EST_ERR_INCOMPLETE);
  assert_false(complete);
  assert_false(a.active);
  assert_null(a.buf);
  /* after the reset, a middle block has nothing to continue */
  assert_int_equal(add(&a, 1, true, 4, 256, 256, 0, &complete),
                   EST_ERR_INCOMPLETE);
  /* a block sent again (its 2.31 was lost): same answer, nothing changes */
  assert_int_equal(add(&a, 0, true, 4, 0, 256, 0, &complete), EST_OK);
  assert_int_equal(add(&a, 1, true, 4, 256, 256, 0, &complete), EST_OK);
  assert_int_equal(add(&a, 1, true, 4, 256, 256, 0, &complete), EST_OK);
  assert_false(complete);
  assert_int_equal(a.len, 512);
  assert_int_equal(add(&a, 0, true, 4, 0, 256, 0, &complete), EST_OK);
  assert_int_equal(a.len, 512);
  assert_true(a.active);
  /* other bytes at a held place: a broken sequence */
  assert_int_equal(add(&a, 1, true, 4, 1000, 256, 0, &complete),
                   EST_ERR_INCOMPLETE);
  assert_int_equal(a.len, 0);
  /* other bytes in block 0: a new body */
  assert_int_equal(add(&a, 0, true, 4, 0, 256, 0, &complete), EST_OK);
  assert_int_equal(add(&a, 1, true, 4, 256, 256, 0, &complete), EST_OK);
  assert_int_equal(add(&a, 0, true, 4, 2000, 256, 0, &complete), EST_OK);
  assert_int_equal(a.len, 256);
  assert_memory_equal(a.buf, pattern + 2000, 256);
  body_asm_reset(&a);
  /* earlier block */
  assert_int_equal(add(&a, 0, true, 4, 0, 256, 0, &complete), EST_OK);
  assert_int_equal(add(&a, 1, true, 4, 256, 256, 0, &complete), EST_OK);
  assert_int_equal(add(&a, 2, true, 4, 512, 256, 0, &complete), EST_OK);
  assert_int_equal(add(&a, 1, false, 4, 256, 10, 0, &complete),
                   EST_ERR_INCOMPLETE);
  /* no transfer at all: a final block with num > 0 */
  assert_int_equal(add(&a, 3, false, 4, 0, 10, 0, &complete),
                   EST_ERR_INCOMPLETE);
  /* a block after completion, without a new num 0 */
  assert_int_equal(add(&a, 0, false, 4, 0, 10, 0, &complete), EST_OK);
  assert_int_equal(add(&a, 1, false, 4, 0, 10, 0, &complete),
                   EST_ERR_INCOMPLETE);
  body_asm_reset(&a);
}

static body_key key(const void *owner, const char *tag, const char *token) {
  body_key k;
  memset(&k, 0, sizeof k);
  k.owner = owner;
  if (tag) {
    k.tagged = true;
    k.tag_len = strlen(tag);
    memcpy(k.tag, tag, k.tag_len);
  }
  k.token_len = strlen(token);
  memcpy(k.token, token, k.token_len);
  return k;
}

static void test_table(void **state) {
  (void)state;
  body_table t;
  int r1, r2;
  bool complete;
  body_table_init(&t, BODY_MAX, 2);

  /* No transfer: a middle block finds none and makes none. */
  body_key k = key(&r1, "A", "t1");
  assert_null(body_table_get(&t, &k, false, 10));
  /* Two tagged transfers to one resource interleave (RFC 9175 §3). */
  body_asm *a = body_table_get(&t, &k, true, 10);
  assert_non_null(a);
  body_key kb = key(&r1, "B", "t2");
  body_asm *b = body_table_get(&t, &kb, true, 11);
  assert_non_null(b);
  assert_ptr_not_equal(a, b);
  assert_int_equal(add(a, 0, true, 2, 0, 64, 0, &complete), EST_OK);
  assert_int_equal(add(b, 0, true, 2, 500, 64, 0, &complete), EST_OK);
  /* the token changes every block; the tag names the body */
  k = key(&r1, "A", "t3");
  assert_ptr_equal(body_table_get(&t, &k, false, 12), a);
  assert_int_equal(add(a, 1, false, 2, 64, 5, 0, &complete), EST_OK);
  assert_true(complete);
  size_t len;
  uint8_t *body = body_asm_take(a, &len);
  assert_int_equal(len, 69);
  assert_memory_equal(body, pattern, 69);
  free(body);
  body_table_drop(&t, a);
  kb = key(&r1, "B", "t9");
  assert_ptr_equal(body_table_get(&t, &kb, false, 13), b);
  assert_int_equal(b->len, 64);

  /* Full (2 slots): a third transfer takes the one idle longest. */
  body_key kc = key(&r2, NULL, "c1");
  body_asm *c = body_table_get(&t, &kc, true, 14);
  assert_non_null(c);
  body_key kd = key(&r2, "D", "d1");
  body_asm *d = body_table_get(&t, &kd, true, 15);
  assert_non_null(d);
  assert_ptr_equal(d, b); /* B was idle since 13, C is newer */
  assert_int_equal(d->len, 0);
  kb = key(&r1, "B", "t9");
  assert_null(body_table_get(&t, &kb, false, 16));

  /* Untagged: by token, or the only untagged one to that resource. */
  kc = key(&r2, NULL, "c2");
  assert_ptr_equal(body_table_get(&t, &kc, false, 17), c);
  body_key ko = key(&r1, NULL, "c2");
  assert_null(body_table_get(&t, &ko, false, 17));
  /* Request-Tag vs none, and the tag's bytes, are different transfers. */
  body_key ke = key(&r2, "", "c2");
  assert_null(body_table_get(&t, &ke, false, 18));
  assert_true(body_key_same(&kc, &kc));
  assert_false(body_key_same(&kc, &ke));
  /* Bad keys are refused, not truncated. */
  body_key bad = key(&r1, "A", "t");
  bad.tag_len = BODY_TAG_MAX + 1;
  assert_null(body_table_get(&t, &bad, true, 19));
  body_table_clear(&t);
  for (size_t i = 0; i < BODY_XFERS_MAX; i++)
    assert_false(t.x[i].used);
  /* 0 transfers asked: clamped to at least none, nothing is handed out */
  body_table_init(&t, BODY_MAX, 0);
  assert_null(body_table_get(&t, &k, true, 1));
  body_table_clear(&t);
}

static void test_bad_sizes(void **state) {
  (void)state;
  body_asm a;
  bool complete;

  body_asm_init(&a, BODY_MAX);
  /* non-final short block */
  assert_int_equal(add(&a, 0, true, 4, 0, 255, 0, &complete),
                   EST_ERR_BAD_REQUEST);
  assert_int_equal(add(&a, 0, true, 4, 0, 256, 0, &complete), EST_OK);
  assert_int_equal(add(&a, 1, true, 4, 256, 100, 0, &complete),
                   EST_ERR_BAD_REQUEST);
  assert_null(a.buf);
  /* non-final long block, final block longer than the size */
  assert_int_equal(add(&a, 0, true, 4, 0, 257, 0, &complete),
                   EST_ERR_BAD_REQUEST);
  assert_int_equal(add(&a, 0, false, 4, 0, 257, 0, &complete),
                   EST_ERR_BAD_REQUEST);
  /* szx 7 (BERT) is not for UDP, also mid-transfer */
  assert_int_equal(add(&a, 0, true, 7, 0, 2048, 0, &complete),
                   EST_ERR_BAD_REQUEST);
  assert_int_equal(add(&a, 0, true, 4, 0, 256, 0, &complete), EST_OK);
  assert_int_equal(add(&a, 1, false, 7, 256, 10, 0, &complete),
                   EST_ERR_BAD_REQUEST);
  assert_false(a.active);
  /* szx > 7 and num over 20 bits cannot come from the option */
  assert_int_equal(add(&a, 0, false, 8, 0, 1, 0, &complete),
                   EST_ERR_BAD_REQUEST);
  assert_int_equal(add(&a, 0x100000, false, 0, 0, 1, 0, &complete),
                   EST_ERR_BAD_REQUEST);
}

static void test_too_large(void **state) {
  (void)state;
  body_asm a;
  bool complete;

  body_asm_init(&a, BODY_MAX);
  /* Size1 over max at block 0: refused before any allocation */
  assert_int_equal(add(&a, 0, true, 6, 0, 1024, BODY_MAX + 1, &complete),
                   EST_ERR_TOO_LARGE);
  assert_null(a.buf);
  assert_int_equal(a.cap, 0);
  assert_int_equal(a.len, 0);
  assert_false(a.active);
  assert_int_equal(add(&a, 0, true, 6, 0, 1024, SIZE_MAX, &complete),
                   EST_ERR_TOO_LARGE);
  assert_null(a.buf);
  /* Size1 exactly max preallocates max, never more */
  assert_int_equal(add(&a, 0, true, 6, 0, 1024, BODY_MAX, &complete), EST_OK);
  assert_int_equal(a.cap, BODY_MAX);
  /* Size1 on a later block */
  assert_int_equal(add(&a, 1, true, 6, 1024, 1024, BODY_MAX + 1, &complete),
                   EST_ERR_TOO_LARGE);
  assert_null(a.buf);

  /* no Size1: total over max */
  for (uint32_t n = 0; n < 4; n++)
    assert_int_equal(add(&a, n, true, 6, n * 1024, 1024, 0, &complete), EST_OK);
  assert_int_equal(a.len, BODY_MAX);
  assert_true(a.cap <= BODY_MAX);
  assert_int_equal(add(&a, 4, false, 6, 0, 1, 0, &complete), EST_ERR_TOO_LARGE);
  assert_null(a.buf);

  /* a cap that is not a power of two: capacity stops at max */
  body_asm_init(&a, 1000);
  for (uint32_t n = 0; n < 15; n++)
    assert_int_equal(add(&a, n, true, 2, n * 64, 64, 0, &complete), EST_OK);
  assert_int_equal(add(&a, 15, false, 2, 960, 40, 0, &complete), EST_OK);
  assert_true(complete);
  assert_int_equal(a.cap, 1000);
  body_asm_reset(&a);
  body_asm_init(&a, 1000);
  assert_int_equal(add(&a, 0, false, 6, 0, 1001 - 1, 0, &complete), EST_OK);
  body_asm_reset(&a);
  assert_int_equal(add(&a, 0, true, 6, 0, 1024, 0, &complete),
                   EST_ERR_TOO_LARGE);
  assert_null(a.buf);
  /* max 0 takes only an empty body */
  body_asm_init(&a, 0);
  assert_int_equal(add(&a, 0, false, 0, 0, 1, 0, &complete), EST_ERR_TOO_LARGE);
  assert_int_equal(add(&a, 0, false, 0, 0, 0, 0, &complete), EST_OK);
  assert_true(complete);
  body_asm_reset(&a);
}

/* RFC 7959 §2.3: the server may ask for a smaller size in its 2.31; the
 * client then continues with num scaled so num*size stays on the offset. */
static void test_size_change(void **state) {
  (void)state;
  body_asm a;
  bool complete;
  size_t len;

  body_asm_init(&a, BODY_MAX);
  assert_int_equal(add(&a, 0, true, 6, 0, 1024, 0, &complete), EST_OK);
  /* 1024 bytes held: 256-byte blocks go on at num 4 */
  assert_int_equal(add(&a, 4, true, 4, 1024, 256, 0, &complete), EST_OK);
  assert_int_equal(add(&a, 5, true, 4, 1280, 256, 0, &complete), EST_OK);
  /* 1536 held: 64-byte blocks go on at num 24 */
  assert_int_equal(add(&a, 24, false, 2, 1536, 20, 0, &complete), EST_OK);
  assert_true(complete);
  uint8_t *b = body_asm_take(&a, &len);
  assert_int_equal(len, 1556);
  assert_memory_equal(b, pattern, 1556);
  free(b);

  /* keeping num while shrinking the size breaks the offset */
  assert_int_equal(add(&a, 0, true, 6, 0, 1024, 0, &complete), EST_OK);
  assert_int_equal(add(&a, 1, true, 4, 1000, 256, 0, &complete),
                   EST_ERR_INCOMPLETE);
  /* num 0 with a smaller size and other bytes restarts; with the same
   * bytes it repeats what is held (the client starts over, same body) */
  assert_int_equal(add(&a, 0, true, 6, 0, 1024, 0, &complete), EST_OK);
  assert_int_equal(add(&a, 0, true, 4, 0, 256, 0, &complete), EST_OK);
  assert_int_equal(a.len, 1024);
  assert_int_equal(add(&a, 0, true, 4, 1000, 256, 0, &complete), EST_OK);
  assert_int_equal(a.len, 256);
  body_asm_reset(&a);
}

static void test_args_and_take(void **state) {
  (void)state;
  body_asm a;
  body_block b = {0, false, 0};
  bool complete;
  size_t len = 5;

  body_asm_init(&a, BODY_MAX);
  assert_int_equal(body_asm_add(NULL, &b, pattern, 1, 0, &complete),
                   EST_ERR_INVALID);
  assert_int_equal(body_asm_add(&a, NULL, pattern, 1, 0, &complete),
                   EST_ERR_INVALID);
  assert_int_equal(body_asm_add(&a, &b, pattern, 1, 0, NULL), EST_ERR_INVALID);
  assert_int_equal(body_asm_add(&a, &b, NULL, 1, 0, &complete),
                   EST_ERR_INVALID);
  /* take during a transfer hands nothing out and keeps the transfer */
  assert_int_equal(add(&a, 0, true, 0, 0, 16, 0, &complete), EST_OK);
  assert_null(body_asm_take(&a, &len));
  assert_int_equal(len, 0);
  assert_int_equal(add(&a, 1, false, 0, 16, 1, 0, &complete), EST_OK);
  uint8_t *p = body_asm_take(&a, &len);
  assert_int_equal(len, 17);
  free(p);
  /* NULL is a no-op everywhere */
  body_asm_init(NULL, 1);
  body_asm_reset(NULL);
  assert_null(body_asm_take(NULL, &len));
  body_asm_reset(&a);
  body_asm_reset(&a);
  assert_int_equal(a.max, BODY_MAX);
}

static void test_block_decode(void **state) {
  (void)state;
  body_block b;

  /* empty value: num 0, M 0, szx 0 */
  b.num = 9, b.more = true, b.szx = 5;
  assert_int_equal(body_block_decode(NULL, 0, &b), EST_OK);
  assert_int_equal(b.num, 0);
  assert_false(b.more);
  assert_int_equal(b.szx, 0);
  /* App. B.1: 0x0A = (0, M, 64), 0x1A = (1, M, 64), 0x92 = (9, -, 64) */
  assert_int_equal(body_block_decode((const uint8_t[]){0x0a}, 1, &b), EST_OK);
  assert_int_equal(b.num, 0);
  assert_true(b.more);
  assert_int_equal(b.szx, 2);
  assert_int_equal(body_block_decode((const uint8_t[]){0x1a}, 1, &b), EST_OK);
  assert_int_equal(b.num, 1);
  assert_int_equal(body_block_decode((const uint8_t[]){0x92}, 1, &b), EST_OK);
  assert_int_equal(b.num, 9);
  assert_false(b.more);
  assert_int_equal(b.szx, 2);
  /* draft-04 B.1 last block 0x272: num 39, szx 2 */
  assert_int_equal(body_block_decode((const uint8_t[]){0x02, 0x72}, 2, &b),
                   EST_OK);
  assert_int_equal(b.num, 39);
  assert_false(b.more);
  assert_int_equal(b.szx, 2);
  /* 2 bytes with M and szx 7 */
  assert_int_equal(body_block_decode((const uint8_t[]){0xff, 0xff}, 2, &b),
                   EST_OK);
  assert_int_equal(b.num, 0xfff);
  assert_true(b.more);
  assert_int_equal(b.szx, 7);
  /* 3 bytes: largest num */
  assert_int_equal(
      body_block_decode((const uint8_t[]){0xff, 0xff, 0xf6}, 3, &b), EST_OK);
  assert_int_equal(b.num, 0xfffff);
  assert_false(b.more);
  assert_int_equal(b.szx, 6);
  assert_int_equal(
      body_block_decode((const uint8_t[]){0x00, 0x01, 0x0c}, 3, &b), EST_OK);
  assert_int_equal(b.num, 16);
  assert_true(b.more);
  assert_int_equal(b.szx, 4);
  /* over 3 bytes */
  assert_int_equal(
      body_block_decode((const uint8_t[]){0, 0, 0, 0}, 4, &b),
      EST_ERR_BAD_REQUEST);
  assert_int_equal(body_block_decode(pattern, 100, &b), EST_ERR_BAD_REQUEST);
  assert_int_equal(body_block_decode(NULL, 1, &b), EST_ERR_INVALID);
  assert_int_equal(body_block_decode(pattern, 1, NULL), EST_ERR_INVALID);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_in_order),
      cmocka_unit_test(test_single_and_empty),
      cmocka_unit_test(test_restart_at_zero),
      cmocka_unit_test(test_gap_and_duplicate),
      cmocka_unit_test(test_table),
      cmocka_unit_test(test_bad_sizes),
      cmocka_unit_test(test_too_large),
      cmocka_unit_test(test_size_change),
      cmocka_unit_test(test_args_and_take),
      cmocka_unit_test(test_block_decode),
  };
  return cmocka_run_group_tests(tests, setup, NULL);
}
