/* est-enroll certificate handling: PKCS#7 certs-only (CF 281) and DER
 * (CF 287) answers, PEM output, and the rule that a certificate is kept
 * only if it carries our key and chains to the trust anchors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "tools/enroll/certs.h"
#include "tools/enroll/csr.h"
#include "tools/enroll/files.h"
#include "plugin/est/pki.h"

typedef struct fixture {
  gnutls_x509_privkey_t ca_key, other_ca_key, leaf_key, other_key;
  gnutls_x509_crt_t ca, other_ca;
  uint8_t *leaf_der, *p7;
  size_t leaf_len, p7_len;
} fixture;

static gnutls_x509_crt_t make(gnutls_x509_privkey_t key, const char *dn, bool ca,
                              gnutls_x509_crt_t issuer, gnutls_x509_privkey_t issuer_key,
                              long days) {
  gnutls_x509_crt_t crt;
  static uint8_t serial = 1;
  uint8_t sn[2] = {0x01, serial++};
  time_t now = time(NULL);
  assert_int_equal(gnutls_x509_crt_init(&crt), 0);
  assert_int_equal(gnutls_x509_crt_set_version(crt, 3), 0);
  assert_int_equal(gnutls_x509_crt_set_serial(crt, sn, sizeof sn), 0);
  assert_int_equal(gnutls_x509_crt_set_activation_time(crt, now - 3600), 0);
  assert_int_equal(gnutls_x509_crt_set_expiration_time(crt, now + days * 86400), 0);
  assert_int_equal(gnutls_x509_crt_set_dn(crt, dn, NULL), 0);
  assert_int_equal(gnutls_x509_crt_set_key(crt, key), 0);
  assert_int_equal(gnutls_x509_crt_set_basic_constraints(crt, ca, -1), 0);
  assert_int_equal(gnutls_x509_crt_set_key_usage(
                       crt, ca ? GNUTLS_KEY_KEY_CERT_SIGN : GNUTLS_KEY_DIGITAL_SIGNATURE),
                   0);
  assert_int_equal(gnutls_x509_crt_sign2(crt, issuer ? issuer : crt,
                                         issuer_key ? issuer_key : key, GNUTLS_DIG_SHA256, 0),
                   0);
  return crt;
}

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  if (!f || ec_key_generate(EC_KEY_EC_P256, &f->ca_key) != EST_OK ||
      ec_key_generate(EC_KEY_EC_P256, &f->other_ca_key) != EST_OK ||
      ec_key_generate(EC_KEY_EC_P256, &f->leaf_key) != EST_OK ||
      ec_key_generate(EC_KEY_EC_P256, &f->other_key) != EST_OK)
    return -1;
  f->ca = make(f->ca_key, "CN=Test CA", true, NULL, NULL, 3650);
  f->other_ca = make(f->other_ca_key, "CN=Other CA", true, NULL, NULL, 3650);
  gnutls_x509_crt_t leaf = make(f->leaf_key, "CN=dev-1", false, f->ca, f->ca_key, 30);
  if (ec_cert_der(leaf, &f->leaf_der, &f->leaf_len) != EST_OK)
    return -1;
  gnutls_x509_crt_deinit(leaf);
  /* The server's own PKCS#7 wrapper makes the 281 body. */
  if (pki_p7_certs_only(f->leaf_der, f->leaf_len, &f->p7, &f->p7_len) != EST_OK)
    return -1;
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  gnutls_x509_privkey_deinit(f->ca_key);
  gnutls_x509_privkey_deinit(f->other_ca_key);
  gnutls_x509_privkey_deinit(f->leaf_key);
  gnutls_x509_privkey_deinit(f->other_key);
  gnutls_x509_crt_deinit(f->ca);
  gnutls_x509_crt_deinit(f->other_ca);
  free(f->leaf_der);
  free(f->p7);
  free(f);
  return 0;
}

static void add_anchor(ec_certs *a, gnutls_x509_crt_t crt) {
  uint8_t *der;
  size_t len;
  assert_int_equal(ec_cert_der(crt, &der, &len), EST_OK);
  assert_int_equal(ec_certs_add_der(a, der, len), EST_OK);
  free(der);
}

static void parse_answers(void **state) {
  fixture *f = *state;
  ec_certs c = {NULL, 0};
  assert_int_equal(ec_certs_add_p7(&c, f->p7, f->p7_len), EST_OK);
  assert_int_equal(c.count, 1);
  assert_int_equal(ec_certs_add_der(&c, f->leaf_der, f->leaf_len), EST_OK);
  assert_int_equal(c.count, 2);
  assert_true(ec_cert_matches_key(c.crt[0], f->leaf_key));
  assert_false(ec_cert_matches_key(c.crt[0], f->other_key));
  ec_certs_clear(&c);
  assert_int_equal(c.count, 0);
  ec_certs_clear(&c); /* twice is fine */

  /* Garbage, truncation, a certificate where PKCS#7 is expected. */
  static const uint8_t junk[] = {0x30, 0x80, 0x00, 0x00};
  assert_int_equal(ec_certs_add_p7(&c, junk, sizeof junk), EST_ERR_MALFORMED);
  assert_int_equal(ec_certs_add_p7(&c, f->p7, f->p7_len - 1), EST_ERR_MALFORMED);
  assert_int_equal(ec_certs_add_p7(&c, f->leaf_der, f->leaf_len), EST_ERR_MALFORMED);
  assert_int_equal(ec_certs_add_der(&c, f->p7, f->p7_len), EST_ERR_MALFORMED);
  assert_int_equal(ec_certs_add_der(&c, f->leaf_der, 10), EST_ERR_MALFORMED);
  assert_int_equal(ec_certs_add_der(&c, NULL, 0), EST_ERR_INVALID);
  assert_int_equal(c.count, 0);
}

static void check_issued(void **state) {
  fixture *f = *state;
  ec_certs issued = {NULL, 0}, anchors = {NULL, 0}, wrong = {NULL, 0}, none = {NULL, 0};
  size_t leaf = 99;
  char diag[256] = "";
  assert_int_equal(ec_certs_add_p7(&issued, f->p7, f->p7_len), EST_OK);
  add_anchor(&anchors, f->other_ca);
  add_anchor(&anchors, f->ca);
  add_anchor(&wrong, f->other_ca);

  assert_int_equal(ec_certs_check_issued(&issued, &anchors, f->leaf_key, &leaf, diag,
                                         sizeof diag),
                   EST_OK);
  assert_int_equal(leaf, 0);
  /* Someone else's key: never written. */
  assert_int_equal(ec_certs_check_issued(&issued, &anchors, f->other_key, &leaf, diag,
                                         sizeof diag),
                   EST_ERR_KEY_MISMATCH);
  assert_non_null(strstr(diag, "public key"));
  /* Does not chain to the anchors. */
  assert_int_equal(ec_certs_check_issued(&issued, &wrong, f->leaf_key, &leaf, diag,
                                         sizeof diag),
                   EST_ERR_PKI);
  assert_non_null(strstr(diag, "does not verify"));
  assert_int_equal(ec_certs_check_issued(&issued, &none, f->leaf_key, &leaf, diag,
                                         sizeof diag),
                   EST_ERR_PKI);
  /* The leaf is found wherever it is in the answer (chain first). */
  ec_certs mixed = {NULL, 0};
  add_anchor(&mixed, f->ca);
  assert_int_equal(ec_certs_add_der(&mixed, f->leaf_der, f->leaf_len), EST_OK);
  assert_int_equal(ec_certs_check_issued(&mixed, &anchors, f->leaf_key, &leaf, diag,
                                         sizeof diag),
                   EST_OK);
  assert_int_equal(leaf, 1);

  /* PEM output puts the leaf first. */
  uint8_t *pem = NULL;
  size_t pem_len = 0;
  assert_int_equal(ec_certs_pem(&mixed, 1, &pem, &pem_len), EST_OK);
  ec_certs back = {NULL, 0};
  char dir[] = "/tmp/test_enroll_certs.XXXXXX", path[128];
  assert_non_null(mkdtemp(dir));
  snprintf(path, sizeof path, "%s/chain.pem", dir);
  assert_int_equal(ec_file_write_atomic(path, pem, pem_len, 0644, NULL, 0), EST_OK);
  assert_int_equal(ec_certs_add_pem_file(&back, path, diag, sizeof diag), EST_OK);
  assert_int_equal(back.count, 2);
  assert_true(ec_cert_matches_key(back.crt[0], f->leaf_key));
  assert_true(ec_cert_matches_key(back.crt[1], f->ca_key));
  assert_int_equal(ec_certs_pem(&mixed, 2, &pem, &pem_len), EST_ERR_INVALID);
  free(pem);
  /* A file without certificates. */
  assert_int_equal(ec_file_write_atomic(path, "nothing\n", 8, 0644, NULL, 0), EST_OK);
  assert_int_equal(ec_certs_add_pem_file(&back, path, diag, sizeof diag), EST_ERR_MALFORMED);
  unlink(path);
  rmdir(dir);

  ec_certs_clear(&back);
  ec_certs_clear(&mixed);
  ec_certs_clear(&issued);
  ec_certs_clear(&anchors);
  ec_certs_clear(&wrong);
}

static void lifetime(void **state) {
  fixture *f = *state;
  ec_certs c = {NULL, 0};
  long long left = 0;
  long long now = (long long)time(NULL);
  assert_int_equal(ec_certs_add_der(&c, f->leaf_der, f->leaf_len), EST_OK);
  assert_int_equal(ec_cert_seconds_left(c.crt[0], now, &left), EST_OK);
  assert_true(left > 29 * 86400 && left <= 30 * 86400);
  assert_int_equal(ec_cert_seconds_left(c.crt[0], now + 31 * 86400, &left), EST_OK);
  assert_true(left < 0);
  assert_int_equal(ec_cert_seconds_left(NULL, now, &left), EST_ERR_INVALID);
  ec_certs_clear(&c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(parse_answers),
    cmocka_unit_test(check_issued),
    cmocka_unit_test(lifetime),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
