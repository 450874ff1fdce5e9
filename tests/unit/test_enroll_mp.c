/* est-enroll keygen answers (CF 62, RFC 8710; RFC 9148 §4.8, SKG-3): two
 * parts in either order, 284 + 281 for skg and 284 + 287 for skc, decoded
 * strictly by mp_decode_pair(); hostile bodies are refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proto/multipart.h"
#include "tools/enroll/ops.h"
#include "proto/resource.h"

static const uint8_t key_der[] = {0x30, 0x03, 0x02, 0x01, 0x00};
static const uint8_t cert_der[] = {0x30, 0x02, 0x05, 0x00};

static uint8_t *encode(uint16_t cf0, const uint8_t *d0, size_t l0, uint16_t cf1,
                       const uint8_t *d1, size_t l1, size_t *len) {
  mp_part parts[2] = {{cf0, d0, l0}, {cf1, d1, l1}};
  uint8_t *out = NULL;
  assert_int_equal(mp_encode(parts, 2, &out, len), EST_OK);
  return out;
}

static void either_order(void **state) {
  (void)state;
  mp_part k, c;
  size_t len;
  char diag[160];
  /* skg: key first. */
  uint8_t *b = encode(CF_PKCS8, key_der, sizeof key_der, CF_PKCS7_CERTS_ONLY, cert_der,
                      sizeof cert_der, &len);
  assert_int_equal(ec_keygen_split(b, len, false, &k, &c, diag, sizeof diag), EST_OK);
  assert_int_equal(k.cf, CF_PKCS8);
  assert_int_equal(k.len, sizeof key_der);
  assert_memory_equal(k.data, key_der, sizeof key_der);
  assert_int_equal(c.cf, CF_PKCS7_CERTS_ONLY);
  assert_memory_equal(c.data, cert_der, sizeof cert_der);
  /* ... but that is not an skc answer. */
  assert_int_equal(ec_keygen_split(b, len, true, &k, &c, diag, sizeof diag), EST_ERR_MALFORMED);
  free(b);
  /* skc: certificate first (SKG-3: look at the CFs, not positions). */
  b = encode(CF_PKIX_CERT, cert_der, sizeof cert_der, CF_PKCS8, key_der, sizeof key_der, &len);
  assert_int_equal(ec_keygen_split(b, len, true, &k, &c, diag, sizeof diag), EST_OK);
  assert_int_equal(k.cf, CF_PKCS8);
  assert_int_equal(c.cf, CF_PKIX_CERT);
  assert_true(k.data > c.data);
  assert_int_equal(ec_keygen_split(b, len, false, &k, &c, diag, sizeof diag), EST_ERR_MALFORMED);
  free(b);
}

static void wrong_parts(void **state) {
  (void)state;
  mp_part k, c;
  size_t len;
  char diag[160];
  struct {
    uint16_t cf0, cf1;
    bool single;
    const char *want;
  } cases[] = {
    /* RFC 9148 Table 3 CMS-encrypted key: not supported here. */
    {CF_PKCS7_SERVER_KEYGEN, CF_PKCS7_CERTS_ONLY, false, "CMS-encrypted"},
    {CF_PKIX_CERT, CF_PKCS7_SERVER_KEYGEN, true, "CMS-encrypted"},
    /* Two keys, two certificates, unrelated formats. */
    {CF_PKCS8, CF_PKCS8, false, "want parts"},
    {CF_PKCS7_CERTS_ONLY, CF_PKCS7_CERTS_ONLY, false, "want parts"},
    {CF_PKCS8, 0, false, "want parts"},
    {CF_CSRATTRS, CF_PKCS7_CERTS_ONLY, false, "want parts"},
    {CF_PKCS8, CF_PKIX_CERT, false, "want parts"},
    {CF_PKCS8, CF_PKCS7_CERTS_ONLY, true, "want parts"},
    {CF_MULTIPART_CORE, CF_PKCS8, false, "want parts"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    uint8_t *b = encode(cases[i].cf0, key_der, sizeof key_der, cases[i].cf1, cert_der,
                        sizeof cert_der, &len);
    diag[0] = '\0';
    assert_int_equal(ec_keygen_split(b, len, cases[i].single, &k, &c, diag, sizeof diag),
                     EST_ERR_MALFORMED);
    assert_non_null(strstr(diag, cases[i].want));
    free(b);
  }
  /* An empty key or certificate part (RFC 9148 §4.1: a key MUST come). */
  uint8_t *b = encode(CF_PKCS8, key_der, 0, CF_PKCS7_CERTS_ONLY, cert_der, sizeof cert_der,
                      &len);
  assert_int_equal(ec_keygen_split(b, len, false, &k, &c, diag, sizeof diag), EST_ERR_MALFORMED);
  assert_non_null(strstr(diag, "empty"));
  free(b);
  b = encode(CF_PKCS8, key_der, sizeof key_der, CF_PKIX_CERT, cert_der, 0, &len);
  assert_int_equal(ec_keygen_split(b, len, true, &k, &c, diag, sizeof diag), EST_ERR_MALFORMED);
  free(b);
}

/* Hand-made hostile CBOR (RFC 8949), none of it an EST keygen answer. */
static void hostile_cbor(void **state) {
  (void)state;
  static const struct {
    const char *name;
    uint8_t b[24];
    size_t n;
  } v[] = {
    {"empty", {0}, 0},
    {"not an array", {0x19, 0x01, 0x1c}, 3},
    {"array(3)", {0x83, 0x19, 0x01, 0x1c, 0x41, 0x01, 0x19, 0x01, 0x19}, 9},
    {"array(5)", {0x85, 0x19, 0x01, 0x1c, 0x41, 0x01, 0x19, 0x01, 0x19, 0x41, 0x02, 0x00}, 12},
    {"array(2)", {0x82, 0x19, 0x01, 0x1c, 0x41, 0x01}, 6},
    {"indefinite array", {0x9f, 0x19, 0x01, 0x1c, 0x41, 0x01, 0x19, 0x01, 0x19, 0x41, 0x02, 0xff}, 12},
    {"indefinite bstr", {0x84, 0x19, 0x01, 0x1c, 0x5f, 0x41, 0x01, 0xff, 0x19, 0x01, 0x19, 0x41, 0x02}, 13},
    {"text part", {0x84, 0x19, 0x01, 0x1c, 0x62, 0x61, 0x62, 0x19, 0x01, 0x19, 0x41, 0x02}, 12},
    {"negative cf", {0x84, 0x20, 0x41, 0x01, 0x19, 0x01, 0x19, 0x41, 0x02}, 9},
    {"cf over 65535", {0x84, 0x1a, 0x00, 0x01, 0x00, 0x00, 0x41, 0x01, 0x19, 0x01, 0x19, 0x41, 0x02}, 13},
    {"tagged cf", {0x84, 0xd8, 0x18, 0x19, 0x01, 0x1c, 0x41, 0x01, 0x19, 0x01, 0x19, 0x41, 0x02}, 13},
    {"null part", {0x84, 0x19, 0x01, 0x1c, 0xf6, 0x19, 0x01, 0x19, 0x41, 0x02}, 10},
    {"nested array", {0x84, 0x19, 0x01, 0x1c, 0x81, 0x41, 0x01, 0x19, 0x01, 0x19, 0x41, 0x02}, 12},
    {"truncated", {0x84, 0x19, 0x01, 0x1c, 0x41, 0x01, 0x19, 0x01, 0x19, 0x45, 0x02}, 11},
    {"huge length", {0x84, 0x19, 0x01, 0x1c, 0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xf0, 0x01}, 14},
    {"trailing byte", {0x84, 0x19, 0x01, 0x1c, 0x41, 0x01, 0x19, 0x01, 0x19, 0x41, 0x02, 0x00}, 12},
    {"cf as bstr", {0x84, 0x42, 0x01, 0x1c, 0x41, 0x01, 0x19, 0x01, 0x19, 0x41, 0x02}, 11},
  };
  mp_part k, c;
  char diag[160];
  for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
    est_err rc = ec_keygen_split(v[i].b, v[i].n, false, &k, &c, diag, sizeof diag);
    if (rc != EST_ERR_MALFORMED)
      fail_msg("%s: got %d", v[i].name, rc);
  }
  /* Over the body cap: too large, before any parsing. */
  size_t big = MP_BODY_MAX + 1;
  uint8_t *b = calloc(1, big);
  assert_non_null(b);
  assert_int_equal(ec_keygen_split(b, big, false, &k, &c, diag, sizeof diag), EST_ERR_TOO_LARGE);
  free(b);
  assert_int_equal(ec_keygen_split(NULL, 0, false, NULL, &c, NULL, 0), EST_ERR_INVALID);
}

/* Every one-byte truncation and every single-bit flip of a valid body:
 * never a crash, and never parts outside the buffer. */
static void mutations(void **state) {
  (void)state;
  size_t len;
  uint8_t *b = encode(CF_PKCS8, key_der, sizeof key_der, CF_PKCS7_CERTS_ONLY, cert_der,
                      sizeof cert_der, &len);
  mp_part k, c;
  for (size_t n = 0; n < len; n++) {
    uint8_t *t = malloc(n ? n : 1);
    memcpy(t, b, n);
    assert_int_not_equal(ec_keygen_split(t, n, false, &k, &c, NULL, 0), EST_OK);
    free(t);
  }
  for (size_t i = 0; i < len; i++)
    for (int bit = 0; bit < 8; bit++) {
      uint8_t *t = malloc(len);
      memcpy(t, b, len);
      t[i] ^= (uint8_t)(1u << bit);
      if (ec_keygen_split(t, len, false, &k, &c, NULL, 0) == EST_OK) {
        assert_true(k.data >= t && k.data + k.len <= t + len);
        assert_true(c.data >= t && c.data + c.len <= t + len);
        assert_int_equal(k.cf, CF_PKCS8);
        assert_int_equal(c.cf, CF_PKCS7_CERTS_ONLY);
      }
      free(t);
    }
  free(b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(either_order),
    cmocka_unit_test(wrong_parts),
    cmocka_unit_test(hostile_cbor),
    cmocka_unit_test(mutations),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
