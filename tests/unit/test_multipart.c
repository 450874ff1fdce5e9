/* multipart-core (CF 62, RFC 8710; RFC 9148 §4.8): encode/decode. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proto/multipart.h"

/* Vectors produced once with python3-cbor2 5.4.6 (cbor2.dumps), which
 * writes preferred serialization. */

/* [284, h'3003020101', 281, h'3000'] */
static const uint8_t v_skg[] = {
    0x84, 0x19, 0x01, 0x1c, 0x45, 0x30, 0x03, 0x02, 0x01, 0x01, 0x19, 0x01,
    0x19, 0x42, 0x30, 0x00};
/* [287, h'308101ff', 284, h'0402aabb'] (cert first: either order, SKG-3) */
static const uint8_t v_rev[] = {
    0x84, 0x19, 0x01, 0x1f, 0x44, 0x30, 0x81, 0x01, 0xff, 0x19, 0x01, 0x1c,
    0x44, 0x04, 0x02, 0xaa, 0xbb};
/* [62, h'', 0, h'78'] */
static const uint8_t v_empty[] = {0x84, 0x18, 0x3e, 0x40, 0x00, 0x41, 0x78};
/* [65535, bytes(range(24)), 23, bytes(range(25))] */
static const uint8_t v_edges[] = {
    0x84, 0x19, 0xff, 0xff, 0x58, 0x18, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05,
    0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11,
    0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x17, 0x58, 0x19, 0x00, 0x01, 0x02,
    0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e,
    0x0f, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18};
/* [24, h'01', 255, h'02'] */
static const uint8_t v_cf24[] = {0x84, 0x18, 0x18, 0x41, 0x01,
                                 0x18, 0xff, 0x41, 0x02};

/* Hostile, also from cbor2 unless marked "hand". */
/* [284, h'01', 281] */
static const uint8_t h_three[] = {0x83, 0x19, 0x01, 0x1c, 0x41,
                                  0x01, 0x19, 0x01, 0x19};
/* hand: array(3) followed by a fourth item outside it */
static const uint8_t h_three_plus[] = {0x83, 0x19, 0x01, 0x1c, 0x41, 0x01,
                                       0x19, 0x01, 0x19, 0x41, 0x02};
/* hand: array(5) holding only four items */
static const uint8_t h_five_short[] = {0x85, 0x19, 0x01, 0x1c, 0x41, 0x01,
                                       0x19, 0x01, 0x19, 0x41, 0x02};
/* hand: array(0) followed by the four items */
static const uint8_t h_zero_plus[] = {0x80, 0x19, 0x01, 0x1c, 0x41, 0x01,
                                      0x19, 0x01, 0x19, 0x41, 0x02};
/* [284, h'01', 281, h'02', 0] */
static const uint8_t h_five[] = {0x85, 0x19, 0x01, 0x1c, 0x41, 0x01,
                                 0x19, 0x01, 0x19, 0x41, 0x02, 0x00};
/* [24(284), h'01', 281, h'02'] */
static const uint8_t h_tag[] = {0x84, 0xd8, 0x18, 0x19, 0x01, 0x1c, 0x41,
                                0x01, 0x19, 0x01, 0x19, 0x41, 0x02};
/* 55799([284, h'01', 281, h'02']) (self-described CBOR) */
static const uint8_t h_tagarr[] = {0xd9, 0xd9, 0xf7, 0x84, 0x19, 0x01, 0x1c,
                                   0x41, 0x01, 0x19, 0x01, 0x19, 0x41, 0x02};
/* [284, "ab", 281, h'02'] */
static const uint8_t h_text[] = {0x84, 0x19, 0x01, 0x1c, 0x62, 0x61,
                                 0x62, 0x19, 0x01, 0x19, 0x41, 0x02};
/* [-1, h'01', 281, h'02'] */
static const uint8_t h_neg[] = {0x84, 0x20, 0x41, 0x01, 0x19,
                                0x01, 0x19, 0x41, 0x02};
/* [65536, h'01', 281, h'02'] */
static const uint8_t h_big[] = {0x84, 0x1a, 0x00, 0x01, 0x00, 0x00, 0x41,
                                0x01, 0x19, 0x01, 0x19, 0x41, 0x02};
/* [284, [h'01'], 281, h'02'] */
static const uint8_t h_nested[] = {0x84, 0x19, 0x01, 0x1c, 0x81, 0x41,
                                   0x01, 0x19, 0x01, 0x19, 0x41, 0x02};
/* {284: h'01', 281: h'02'} */
static const uint8_t h_map[] = {0xa2, 0x19, 0x01, 0x1c, 0x41, 0x01,
                                0x19, 0x01, 0x19, 0x41, 0x02};
/* [284, h'01', 281, null] (RFC 8710 allows null; EST-coaps never) */
static const uint8_t h_null[] = {0x84, 0x19, 0x01, 0x1c, 0x41,
                                 0x01, 0x19, 0x01, 0x19, 0xf6};
/* [284.0, h'01', 281, h'02'] */
static const uint8_t h_float[] = {0x84, 0xfb, 0x40, 0x71, 0xc0, 0x00,
                                  0x00, 0x00, 0x00, 0x00, 0x41, 0x01,
                                  0x19, 0x01, 0x19, 0x41, 0x02};
/* [true, h'01', 281, h'02'] */
static const uint8_t h_bool[] = {0x84, 0xf5, 0x41, 0x01, 0x19,
                                 0x01, 0x19, 0x41, 0x02};
/* hand: indefinite array [_ 284, h'01', 281, h'02'] */
static const uint8_t h_indef_arr[] = {0x9f, 0x19, 0x01, 0x1c, 0x41, 0x01,
                                      0x19, 0x01, 0x19, 0x41, 0x02, 0xff};
/* hand: [284, (_ h'01'), 281, h'02'] */
static const uint8_t h_indef_bstr[] = {0x84, 0x19, 0x01, 0x1c, 0x5f,
                                       0x41, 0x01, 0xff, 0x19, 0x01,
                                       0x19, 0x41, 0x02};
/* hand: byte string of 2^32 bytes */
static const uint8_t h_len32[] = {0x84, 0x19, 0x01, 0x1c, 0x5b, 0x00, 0x00,
                                  0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x01};
/* hand: byte string of 2^64-1 bytes */
static const uint8_t h_len64[] = {0x84, 0x19, 0x01, 0x1c, 0x5b, 0xff, 0xff,
                                  0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
/* hand: second byte string claims 0xffffffff bytes */
static const uint8_t h_len_u32[] = {0x84, 0x19, 0x01, 0x1c, 0x41, 0x01, 0x19,
                                    0x01, 0x19, 0x5a, 0xff, 0xff, 0xff, 0xff,
                                    0x02};
/* hand: array head claims 2^64-1 items */
static const uint8_t h_arr64[] = {0x9b, 0xff, 0xff, 0xff, 0xff, 0xff,
                                  0xff, 0xff, 0xff, 0x19, 0x01, 0x1c};
/* hand: cf as uint64 2^64-1 */
static const uint8_t h_cf64[] = {0x84, 0x1b, 0xff, 0xff, 0xff, 0xff, 0xff,
                                 0xff, 0xff, 0xff, 0x41, 0x01, 0x19, 0x01,
                                 0x19, 0x41, 0x02};
/* hand: reserved additional info 28 in a byte string head */
static const uint8_t h_reserved[] = {0x84, 0x19, 0x01, 0x1c, 0x5c, 0x01,
                                     0x19, 0x01, 0x19, 0x41, 0x02};
/* hand: two bytes strings where a cf belongs */
static const uint8_t h_swapped[] = {0x84, 0x41, 0x01, 0x19, 0x01, 0x1c,
                                    0x41, 0x02, 0x19, 0x01, 0x19};
/* hand: [62, h'01', 281, h'02'] with non-preferred heads (19 003E,
 * 1A 00000119, 59 0001): well-formed, accepted */
static const uint8_t v_long_heads[] = {0x84, 0x19, 0x00, 0x3e, 0x41, 0x01,
                                       0x1a, 0x00, 0x00, 0x01, 0x19, 0x59,
                                       0x00, 0x01, 0x02};

#define DEC_FAILS(v, want)                                                     \
  do {                                                                         \
    mp_part p_[2] = {{7, NULL, 9}, {7, NULL, 9}};                              \
    assert_int_equal(mp_decode_pair((v), sizeof(v), p_), (want));              \
    /* out[] stays untouched on failure */                                     \
    assert_int_equal(p_[0].cf, 7);                                             \
    assert_int_equal(p_[1].len, 9);                                            \
  } while (0)

static void check_part(const mp_part *p, uint16_t cf, const uint8_t *data,
                       size_t len) {
  assert_int_equal(p->cf, cf);
  assert_int_equal(p->len, len);
  if (len)
    assert_memory_equal(p->data, data, len);
}

static void test_encode_roundtrip(void **state) {
  (void)state;
  static const uint8_t key[] = {0x30, 0x81, 0x87, 0x02, 0x01, 0x00};
  static const uint8_t cert[] = {0x30, 0x82, 0x01, 0xcf};
  const uint16_t cfs[][2] = {{284, 281}, {284, 287}, {287, 284},
                             {0, 65535}, {23, 24},   {255, 256}};

  for (size_t i = 0; i < sizeof cfs / sizeof cfs[0]; i++) {
    mp_part in[2] = {{cfs[i][0], key, sizeof key}, {cfs[i][1], cert, sizeof cert}};
    mp_part out[2];
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(mp_encode(in, 2, &buf, &len), EST_OK);
    assert_non_null(buf);
    assert_int_equal(mp_decode_pair(buf, len, out), EST_OK);
    check_part(&out[0], in[0].cf, key, sizeof key);
    check_part(&out[1], in[1].cf, cert, sizeof cert);
    /* parts point into the input buffer */
    assert_true(out[0].data > buf && out[1].data + out[1].len == buf + len);
    free(buf);
  }
}

static void test_encode_matches_cbor2(void **state) {
  (void)state;
  static const uint8_t key[] = {0x30, 0x03, 0x02, 0x01, 0x01};
  static const uint8_t cert[] = {0x30, 0x00};
  static const uint8_t x[] = {0x78};
  uint8_t r24[25];
  struct {
    mp_part p[2];
    const uint8_t *want;
    size_t want_len;
  } cases[] = {
      {{{284, key, sizeof key}, {281, cert, sizeof cert}}, v_skg, sizeof v_skg},
      {{{62, NULL, 0}, {0, x, 1}}, v_empty, sizeof v_empty},
      {{{65535, r24, 24}, {23, r24, 25}}, v_edges, sizeof v_edges},
  };
  for (size_t i = 0; i < sizeof r24; i++)
    r24[i] = (uint8_t)i;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(mp_encode(cases[i].p, 2, &buf, &len), EST_OK);
    assert_int_equal(len, cases[i].want_len);
    assert_memory_equal(buf, cases[i].want, len);
    free(buf);
  }
}

/* RFC 9148 App. A.3: 84 19011C 588A <138> 190119 5901D3 <467>, 617 bytes. */
static void test_rfc_a3_header(void **state) {
  (void)state;
  uint8_t key[138], cert[467];
  mp_part in[2] = {{284, key, sizeof key}, {281, cert, sizeof cert}};
  mp_part out[2];
  uint8_t *buf = NULL;
  size_t len = 0;

  memset(key, 0xa5, sizeof key);
  memset(cert, 0x5a, sizeof cert);
  assert_int_equal(mp_encode(in, 2, &buf, &len), EST_OK);
  assert_int_equal(len, 617);
  assert_memory_equal(buf, ((const uint8_t[]){0x84, 0x19, 0x01, 0x1c, 0x58, 0x8a}), 6);
  assert_memory_equal(buf + 6, key, sizeof key);
  assert_memory_equal(buf + 144, ((const uint8_t[]){0x19, 0x01, 0x19, 0x59, 0x01, 0xd3}), 6);
  assert_memory_equal(buf + 150, cert, sizeof cert);
  assert_int_equal(mp_decode_pair(buf, len, out), EST_OK);
  check_part(&out[0], 284, key, sizeof key);
  check_part(&out[1], 281, cert, sizeof cert);

  /* every strict prefix is truncated CBOR */
  for (size_t cut = 0; cut < len; cut++) {
    mp_part p[2];
    assert_int_equal(mp_decode_pair(buf, cut, p), EST_ERR_MALFORMED);
  }
  free(buf);
}

static void test_cf_smallest_width(void **state) {
  (void)state;
  static const uint8_t d[] = {1};
  mp_part in[1] = {{62, d, 1}};
  uint8_t *buf = NULL;
  size_t len = 0;

  /* CF 62 is 18 3E, not 19 00 3E */
  assert_int_equal(mp_encode(in, 1, &buf, &len), EST_OK);
  assert_int_equal(len, 5);
  assert_memory_equal(buf, ((const uint8_t[]){0x82, 0x18, 0x3e, 0x41, 0x01}), 5);
  free(buf);
  in[0].cf = 5;
  assert_int_equal(mp_encode(in, 1, &buf, &len), EST_OK);
  assert_memory_equal(buf, ((const uint8_t[]){0x82, 0x05, 0x41, 0x01}), 4);
  free(buf);
}

static void test_encode_args(void **state) {
  (void)state;
  static const uint8_t d[] = {1, 2, 3};
  mp_part in[3] = {{284, d, 3}, {281, d, 3}, {62, d, 3}};
  uint8_t *buf = (uint8_t *)1;
  size_t len = 99;

  assert_int_equal(mp_encode(in, 0, &buf, &len), EST_ERR_INVALID);
  assert_null(buf);
  assert_int_equal(len, 0);
  assert_int_equal(mp_encode(NULL, 2, &buf, &len), EST_ERR_INVALID);
  assert_int_equal(mp_encode(in, 2, NULL, &len), EST_ERR_INVALID);
  assert_int_equal(mp_encode(in, 2, &buf, NULL), EST_ERR_INVALID);
  in[1].data = NULL;
  assert_int_equal(mp_encode(in, 2, &buf, &len), EST_ERR_INVALID);
  in[1].data = d;
  /* three parts: array(6), which decode_pair refuses */
  assert_int_equal(mp_encode(in, 3, &buf, &len), EST_OK);
  assert_int_equal(buf[0], 0x86);
  mp_part out[2];
  assert_int_equal(mp_decode_pair(buf, len, out), EST_ERR_MALFORMED);
  free(buf);
}

static void test_decode_cbor2_vectors(void **state) {
  (void)state;
  mp_part p[2];
  static const uint8_t r25[25] = {0,  1,  2,  3,  4,  5,  6,  7,  8,
                                  9,  10, 11, 12, 13, 14, 15, 16, 17,
                                  18, 19, 20, 21, 22, 23, 24};

  assert_int_equal(mp_decode_pair(v_skg, sizeof v_skg, p), EST_OK);
  check_part(&p[0], 284, (const uint8_t[]){0x30, 0x03, 0x02, 0x01, 0x01}, 5);
  check_part(&p[1], 281, (const uint8_t[]){0x30, 0x00}, 2);
  assert_ptr_equal(p[0].data, v_skg + 5);

  assert_int_equal(mp_decode_pair(v_rev, sizeof v_rev, p), EST_OK);
  check_part(&p[0], 287, (const uint8_t[]){0x30, 0x81, 0x01, 0xff}, 4);
  check_part(&p[1], 284, (const uint8_t[]){0x04, 0x02, 0xaa, 0xbb}, 4);

  assert_int_equal(mp_decode_pair(v_empty, sizeof v_empty, p), EST_OK);
  check_part(&p[0], 62, NULL, 0);
  check_part(&p[1], 0, (const uint8_t[]){0x78}, 1);

  assert_int_equal(mp_decode_pair(v_edges, sizeof v_edges, p), EST_OK);
  check_part(&p[0], 65535, r25, 24);
  check_part(&p[1], 23, r25, 25);

  assert_int_equal(mp_decode_pair(v_cf24, sizeof v_cf24, p), EST_OK);
  check_part(&p[0], 24, (const uint8_t[]){1}, 1);
  check_part(&p[1], 255, (const uint8_t[]){2}, 1);

  /* non-preferred heads are well-formed CBOR (RFC 8949 §3) */
  assert_int_equal(mp_decode_pair(v_long_heads, sizeof v_long_heads, p), EST_OK);
  check_part(&p[0], 62, (const uint8_t[]){1}, 1);
  check_part(&p[1], 281, (const uint8_t[]){2}, 1);
}

static void test_decode_hostile(void **state) {
  (void)state;
  DEC_FAILS(h_three, EST_ERR_MALFORMED);
  DEC_FAILS(h_five, EST_ERR_MALFORMED);
  DEC_FAILS(h_three_plus, EST_ERR_MALFORMED);
  DEC_FAILS(h_five_short, EST_ERR_MALFORMED);
  DEC_FAILS(h_zero_plus, EST_ERR_MALFORMED);
  DEC_FAILS(h_tag, EST_ERR_MALFORMED);
  DEC_FAILS(h_tagarr, EST_ERR_MALFORMED);
  DEC_FAILS(h_text, EST_ERR_MALFORMED);
  DEC_FAILS(h_neg, EST_ERR_MALFORMED);
  DEC_FAILS(h_big, EST_ERR_MALFORMED);
  DEC_FAILS(h_nested, EST_ERR_MALFORMED);
  DEC_FAILS(h_map, EST_ERR_MALFORMED);
  DEC_FAILS(h_null, EST_ERR_MALFORMED);
  DEC_FAILS(h_float, EST_ERR_MALFORMED);
  DEC_FAILS(h_bool, EST_ERR_MALFORMED);
  DEC_FAILS(h_indef_arr, EST_ERR_MALFORMED);
  DEC_FAILS(h_indef_bstr, EST_ERR_MALFORMED);
  DEC_FAILS(h_len32, EST_ERR_MALFORMED);
  DEC_FAILS(h_len64, EST_ERR_MALFORMED);
  DEC_FAILS(h_len_u32, EST_ERR_MALFORMED);
  DEC_FAILS(h_arr64, EST_ERR_MALFORMED);
  DEC_FAILS(h_cf64, EST_ERR_MALFORMED);
  DEC_FAILS(h_reserved, EST_ERR_MALFORMED);
  DEC_FAILS(h_swapped, EST_ERR_MALFORMED);
}

static void test_decode_truncated_and_trailing(void **state) {
  (void)state;
  const struct {
    const uint8_t *v;
    size_t len;
  } ok[] = {{v_skg, sizeof v_skg},     {v_rev, sizeof v_rev},
            {v_empty, sizeof v_empty}, {v_edges, sizeof v_edges},
            {v_cf24, sizeof v_cf24},   {v_long_heads, sizeof v_long_heads}};
  mp_part p[2];

  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    /* exact-size heap copies, so ASan sees any read past the end */
    for (size_t cut = 0; cut < ok[i].len; cut++) {
      uint8_t *b = malloc(cut ? cut : 1);
      assert_non_null(b);
      memcpy(b, ok[i].v, cut);
      assert_int_equal(mp_decode_pair(b, cut, p), EST_ERR_MALFORMED);
      free(b);
    }
    uint8_t *t = malloc(ok[i].len + 1);
    assert_non_null(t);
    memcpy(t, ok[i].v, ok[i].len);
    t[ok[i].len] = 0x00;
    assert_int_equal(mp_decode_pair(t, ok[i].len + 1, p), EST_ERR_MALFORMED);
    t[ok[i].len] = 0xff; /* a stray break */
    assert_int_equal(mp_decode_pair(t, ok[i].len + 1, p), EST_ERR_MALFORMED);
    free(t);
  }
  /* two bodies back to back */
  uint8_t two[2 * sizeof v_skg];
  memcpy(two, v_skg, sizeof v_skg);
  memcpy(two + sizeof v_skg, v_skg, sizeof v_skg);
  assert_int_equal(mp_decode_pair(two, sizeof two, p), EST_ERR_MALFORMED);
  assert_int_equal(mp_decode_pair(NULL, 0, p), EST_ERR_MALFORMED);
  assert_int_equal(mp_decode_pair(NULL, 4, p), EST_ERR_INVALID);
  assert_int_equal(mp_decode_pair(v_skg, sizeof v_skg, NULL), EST_ERR_INVALID);
}

/* Bodies of exactly MP_BODY_MAX decode; one byte more is TOO_LARGE. */
static void test_decode_cap(void **state) {
  (void)state;
  size_t n = MP_BODY_MAX + 1;
  uint8_t *b = calloc(1, n);
  mp_part p[2];
  /* 84 19011C 59 LLLL <L> 190119 41 02 = 12 + L bytes */
  size_t l1 = MP_BODY_MAX - 12;

  assert_non_null(b);
  b[0] = 0x84;
  b[1] = 0x19, b[2] = 0x01, b[3] = 0x1c;
  b[4] = 0x59, b[5] = (uint8_t)(l1 >> 8), b[6] = (uint8_t)l1;
  b[7 + l1] = 0x19, b[8 + l1] = 0x01, b[9 + l1] = 0x19;
  b[10 + l1] = 0x41, b[11 + l1] = 0x02;
  assert_int_equal(mp_decode_pair(b, MP_BODY_MAX, p), EST_OK);
  assert_int_equal(p[0].len, l1);
  assert_int_equal(mp_decode_pair(b, n, p), EST_ERR_TOO_LARGE);
  free(b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_encode_roundtrip),
      cmocka_unit_test(test_encode_matches_cbor2),
      cmocka_unit_test(test_rfc_a3_header),
      cmocka_unit_test(test_cf_smallest_width),
      cmocka_unit_test(test_encode_args),
      cmocka_unit_test(test_decode_cbor2_vectors),
      cmocka_unit_test(test_decode_hostile),
      cmocka_unit_test(test_decode_truncated_and_trailing),
      cmocka_unit_test(test_decode_cap),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
