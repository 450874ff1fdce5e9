/* est-enroll keys and CSRs (RFC 2986, RFC 7030 §3.5/§4.2.2, RFC 9148 §3).
 * The CSRs are checked with the server's own parser (pki.h), so both
 * sides agree on challengePassword and on the re-enrollment subject/SAN. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "tools/enroll/csr.h"
#include "tools/enroll/files.h"
#include "plugin/est/pki.h"

static gnutls_x509_privkey_t p256;

static int setup(void **state) {
  (void)state;
  return ec_key_generate(EC_KEY_EC_P256, &p256) == EST_OK ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  gnutls_x509_privkey_deinit(p256);
  return 0;
}

/* A self-signed certificate for @p key with the subject set AVA by AVA
 * from raw DER values (so string types are under our control). */
static void make_cert(gnutls_x509_privkey_t key, const char *dn_str,
                      const char *const *raw_oids, const char *const *raw_vals,
                      size_t nraw, bool with_san, uint8_t **der, size_t *len) {
  gnutls_x509_crt_t crt;
  gnutls_datum_t out = {NULL, 0};
  uint8_t serial[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  time_t now = time(NULL);
  assert_int_equal(gnutls_x509_crt_init(&crt), 0);
  assert_int_equal(gnutls_x509_crt_set_version(crt, 3), 0);
  assert_int_equal(gnutls_x509_crt_set_serial(crt, serial, sizeof serial), 0);
  assert_int_equal(gnutls_x509_crt_set_activation_time(crt, now - 60), 0);
  assert_int_equal(gnutls_x509_crt_set_expiration_time(crt, now + 86400), 0);
  if (dn_str)
    assert_int_equal(gnutls_x509_crt_set_dn(crt, dn_str, NULL), 0);
  for (size_t i = 0; i < nraw; i++)
    assert_int_equal(gnutls_x509_crt_set_dn_by_oid(crt, raw_oids[i], 1, raw_vals[i] + 1,
                                                   (unsigned)raw_vals[i][0]),
                     0);
  if (with_san) {
    static const uint8_t ip[4] = {192, 0, 2, 9};
    assert_int_equal(gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_DNSNAME,
                                                          "dev.example", 11,
                                                          GNUTLS_FSAN_APPEND),
                     0);
    assert_int_equal(gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_IPADDRESS, ip, 4,
                                                          GNUTLS_FSAN_APPEND),
                     0);
  }
  assert_int_equal(gnutls_x509_crt_set_key(crt, key), 0);
  assert_int_equal(gnutls_x509_crt_sign2(crt, crt, key, GNUTLS_DIG_SHA256, 0), 0);
  assert_int_equal(gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_DER, &out), 0);
  *der = malloc(out.size);
  assert_non_null(*der);
  memcpy(*der, out.data, out.size);
  *len = out.size;
  gnutls_free(out.data);
  gnutls_x509_crt_deinit(crt);
}

static void key_types(void **state) {
  (void)state;
  ec_key_type t;
  assert_int_equal(ec_key_type_parse("ec-p256", &t), EST_OK);
  assert_int_equal(t, EC_KEY_EC_P256);
  assert_int_equal(ec_key_type_parse("ec-p384", &t), EST_OK);
  assert_int_equal(t, EC_KEY_EC_P384);
  assert_int_equal(ec_key_type_parse("rsa-3072", &t), EST_OK);
  assert_int_equal(t, EC_KEY_RSA_3072);
  assert_int_equal(ec_key_type_parse("ed25519", &t), EST_ERR_INVALID);
  assert_int_equal(ec_key_type_parse("", &t), EST_ERR_INVALID);
  assert_int_equal(ec_key_type_parse(NULL, &t), EST_ERR_INVALID);
  gnutls_x509_privkey_t k = NULL;
  assert_int_equal(ec_key_generate(EC_KEY__MAX, &k), EST_ERR_INVALID);
  assert_null(k);
}

static void csr_with_names_and_pop(void **state) {
  (void)state;
  static const char *const dns[] = {"dev-1.example", "alt.example"};
  static const char *const ips[] = {"192.0.2.1", "2001:db8::7"};
  /* base64 of a 12-byte tls-unique: 16 characters (RFC 7030 §3.5). */
  static const char challenge[] = "q83vEjRWeJCrze8S";
  ec_csr_params p = {.subject = "CN=dev-1,O=Example Inc",
                     .san_dns = dns, .san_dns_count = 2,
                     .san_ip = ips, .san_ip_count = 2,
                     .challenge = challenge};
  uint8_t *der = NULL;
  size_t len = 0;
  char diag[200] = "", chal[PKI_CHALLENGE_MAX + 1];
  pki_csr *csr = NULL;

  assert_int_equal(ec_csr_params_check(&p, diag, sizeof diag), EST_OK);
  assert_int_equal(ec_csr_build(p256, &p, &der, &len, diag, sizeof diag), EST_OK);
  assert_true(len > 100 && len <= EC_CSR_MAX);
  assert_int_equal(der[0], 0x30);
  /* The server's parser accepts it, the signature verifies, the
   * challengePassword reads back byte for byte. */
  assert_int_equal(pki_csr_parse(der, len, &csr, diag, sizeof diag), EST_OK);
  assert_int_equal(pki_csr_verify(csr), EST_OK);
  assert_int_equal(pki_csr_challenge(csr, chal, sizeof chal), EST_OK);
  assert_string_equal(chal, challenge);
  assert_int_equal(pki_csr_check_profile(csr, diag, sizeof diag), EST_OK);
  char *subj = pki_csr_subject(csr);
  assert_non_null(subj);
  /* RFC 4514 order: the last RDN first, as given. */
  assert_string_equal(subj, "CN=dev-1,O=Example Inc");
  free(subj);
  pki_csr_free(csr);

  /* SANs in order, with the binary IP addresses. */
  gnutls_x509_crq_t crq;
  gnutls_datum_t d = {der, (unsigned)len};
  char buf[64];
  size_t n;
  unsigned type, crit;
  assert_int_equal(gnutls_x509_crq_init(&crq), 0);
  assert_int_equal(gnutls_x509_crq_import(crq, &d, GNUTLS_X509_FMT_DER), 0);
  n = sizeof buf;
  assert_int_equal(gnutls_x509_crq_get_subject_alt_name(crq, 0, buf, &n, &type, &crit),
                   GNUTLS_SAN_DNSNAME);
  assert_memory_equal(buf, "dev-1.example", 13);
  n = sizeof buf;
  assert_int_equal(gnutls_x509_crq_get_subject_alt_name(crq, 2, buf, &n, &type, &crit),
                   GNUTLS_SAN_IPADDRESS);
  assert_int_equal(n, 4);
  assert_memory_equal(buf, "\xc0\x00\x02\x01", 4);
  n = sizeof buf;
  assert_int_equal(gnutls_x509_crq_get_subject_alt_name(crq, 3, buf, &n, &type, &crit),
                   GNUTLS_SAN_IPADDRESS);
  assert_int_equal(n, 16);
  assert_int_equal(gnutls_x509_crq_get_signature_algorithm(crq), GNUTLS_SIGN_ECDSA_SHA256);
  gnutls_x509_crq_deinit(crq);
  free(der);
}

static void csr_without_pop(void **state) {
  (void)state;
  ec_csr_params p = {.subject = "CN=no-pop"};
  uint8_t *der = NULL;
  size_t len = 0;
  char chal[PKI_CHALLENGE_MAX + 1];
  pki_csr *csr = NULL;
  assert_int_equal(ec_csr_build(p256, &p, &der, &len, NULL, 0), EST_OK);
  assert_int_equal(pki_csr_parse(der, len, &csr, NULL, 0), EST_OK);
  assert_int_equal(pki_csr_verify(csr), EST_OK);
  assert_int_equal(pki_csr_challenge(csr, chal, sizeof chal), EST_ERR_NOT_FOUND);
  pki_csr_free(csr);
  free(der);
  /* A challengePassword longer than RFC 7030's 255 bytes is refused. */
  char longc[300];
  memset(longc, 'A', sizeof longc - 1);
  longc[sizeof longc - 1] = '\0';
  p.challenge = longc;
  assert_int_equal(ec_csr_build(p256, &p, &der, &len, NULL, 0), EST_ERR_INVALID);
  assert_null(der);
}

static void csr_other_key_types(void **state) {
  (void)state;
  static const struct {
    ec_key_type t;
    gnutls_sign_algorithm_t sig;
  } cases[] = {{EC_KEY_EC_P384, GNUTLS_SIGN_ECDSA_SHA384},
               {EC_KEY_RSA_2048, GNUTLS_SIGN_RSA_SHA256}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    gnutls_x509_privkey_t k;
    ec_csr_params p = {.subject = "CN=k", .challenge = "AAAAAAAAAAAAAAAA"};
    uint8_t *der = NULL;
    size_t len = 0;
    pki_csr *csr = NULL;
    gnutls_x509_crq_t crq;
    assert_int_equal(ec_key_generate(cases[i].t, &k), EST_OK);
    assert_int_equal(ec_csr_build(k, &p, &der, &len, NULL, 0), EST_OK);
    assert_int_equal(pki_csr_parse(der, len, &csr, NULL, 0), EST_OK);
    assert_int_equal(pki_csr_verify(csr), EST_OK);
    pki_csr_free(csr);
    gnutls_datum_t d = {der, (unsigned)len};
    assert_int_equal(gnutls_x509_crq_init(&crq), 0);
    assert_int_equal(gnutls_x509_crq_import(crq, &d, GNUTLS_X509_FMT_DER), 0);
    assert_int_equal(gnutls_x509_crq_get_signature_algorithm(crq), cases[i].sig);
    gnutls_x509_crq_deinit(crq);
    gnutls_x509_privkey_deinit(k);
    free(der);
  }
}

static void bad_params(void **state) {
  (void)state;
  static const char *const bad_dns[] = {"has space.example"};
  static const char *const empty_dns[] = {""};
  static const char *const bad_ip[] = {"300.1.2.3"};
  static const char *const host_ip[] = {"example.com"};
  char diag[200];
  uint8_t *der = NULL;
  size_t len = 0;
  struct {
    ec_csr_params p;
    const char *want;
  } cases[] = {
    {{.subject = ""}, "--subject"},
    {{.subject = NULL}, "--subject"},
    {{.subject = "no equals sign"}, "--subject"},
    {{.subject = "CN=x", .san_dns = bad_dns, .san_dns_count = 1}, "--san-dns"},
    {{.subject = "CN=x", .san_dns = empty_dns, .san_dns_count = 1}, "--san-dns"},
    {{.subject = "CN=x", .san_ip = bad_ip, .san_ip_count = 1}, "--san-ip"},
    {{.subject = "CN=x", .san_ip = host_ip, .san_ip_count = 1}, "--san-ip"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    diag[0] = '\0';
    assert_int_equal(ec_csr_params_check(&cases[i].p, diag, sizeof diag), EST_ERR_INVALID);
    assert_non_null(strstr(diag, cases[i].want));
    assert_int_equal(ec_csr_build(p256, &cases[i].p, &der, &len, diag, sizeof diag),
                     EST_ERR_INVALID);
    assert_null(der);
  }
  ec_csr_params p = {.subject = "CN=x"};
  assert_int_equal(ec_csr_build(NULL, &p, &der, &len, NULL, 0), EST_ERR_INVALID);
  /* A from_cert that is not a certificate. */
  static const uint8_t junk[] = {0x30, 0x03, 0x02, 0x01, 0x00};
  ec_csr_params q = {.from_cert = junk, .from_cert_len = sizeof junk};
  assert_int_equal(ec_csr_build(p256, &q, &der, &len, diag, sizeof diag), EST_ERR_MALFORMED);
}

/* RFC 7030 §4.2.2 / docs/decisions.md §6: a re-enrollment CSR built from the
 * current certificate passes the server's subject/SAN comparison. */
static void reenroll_copies_names(void **state) {
  (void)state;
  /* PrintableString CN and serialNumber, UTF8String O: types are kept. */
  static const char *const oids[] = {"2.5.4.10", "2.5.4.5", "2.5.4.3"};
  static const char *const vals[] = {"\x09\x0c\x07" "Example", "\x06\x13\x04" "0001",
                                     "\x07\x13\x05" "dev-9"};
  uint8_t *cert = NULL, *der = NULL;
  size_t cert_len = 0, len = 0;
  char diag[200] = "";
  pki_csr *csr = NULL;

  make_cert(p256, NULL, oids, vals, 3, true, &cert, &cert_len);
  ec_csr_params p = {.from_cert = cert, .from_cert_len = cert_len, .challenge = "x"};
  assert_int_equal(ec_csr_build(p256, &p, &der, &len, diag, sizeof diag), EST_OK);
  assert_int_equal(pki_csr_parse(der, len, &csr, NULL, 0), EST_OK);
  assert_int_equal(pki_csr_verify(csr), EST_OK);
  assert_int_equal(pki_csr_match_cert(csr, cert, cert_len, diag, sizeof diag), EST_OK);
  pki_csr_free(csr);
  /* The CN is still a PrintableString (tag 0x13). */
  gnutls_x509_crq_t crq;
  gnutls_datum_t d = {der, (unsigned)len};
  uint8_t raw[64];
  size_t rl = sizeof raw;
  assert_int_equal(gnutls_x509_crq_init(&crq), 0);
  assert_int_equal(gnutls_x509_crq_import(crq, &d, GNUTLS_X509_FMT_DER), 0);
  assert_int_equal(gnutls_x509_crq_get_dn_by_oid(crq, "2.5.4.3", 0, 1, raw, &rl), 0);
  assert_int_equal(raw[0], 0x13);
  gnutls_x509_crq_deinit(crq);
  free(der);
  der = NULL;

  /* A CSR with another subject does not match (the control case). */
  ec_csr_params other = {.subject = "CN=dev-9,O=Other"};
  assert_int_equal(ec_csr_build(p256, &other, &der, &len, NULL, 0), EST_OK);
  assert_int_equal(pki_csr_parse(der, len, &csr, NULL, 0), EST_OK);
  assert_int_equal(pki_csr_match_cert(csr, cert, cert_len, diag, sizeof diag),
                   EST_ERR_SUBJECT_MISMATCH);
  pki_csr_free(csr);
  free(der);
  free(cert);

  /* A certificate without SAN: the CSR has none either. */
  make_cert(p256, "CN=a,O=Plain", NULL, NULL, 0, false, &cert, &cert_len);
  ec_csr_params m = {.from_cert = cert, .from_cert_len = cert_len};
  assert_int_equal(ec_csr_build(p256, &m, &der, &len, NULL, 0), EST_OK);
  assert_int_equal(pki_csr_parse(der, len, &csr, NULL, 0), EST_OK);
  assert_int_equal(pki_csr_match_cert(csr, cert, cert_len, diag, sizeof diag), EST_OK);
  pki_csr_free(csr);
  gnutls_datum_t d2 = {der, (unsigned)len};
  assert_int_equal(gnutls_x509_crq_init(&crq), 0);
  assert_int_equal(gnutls_x509_crq_import(crq, &d2, GNUTLS_X509_FMT_DER), 0);
  rl = sizeof raw;
  unsigned crit = 0;
  assert_int_equal(gnutls_x509_crq_get_extension_by_oid(crq, "2.5.29.17", 0, raw, &rl, &crit),
                   GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE);
  gnutls_x509_crq_deinit(crq);
  free(der);
  free(cert);
}

static void key_files(void **state) {
  (void)state;
  char dir[] = "/tmp/test_enroll_csr.XXXXXX", path[128], bad[128];
  gnutls_x509_privkey_t k = NULL;
  uint8_t id1[64], id2[64];
  size_t l1 = sizeof id1, l2 = sizeof id2;
  struct stat st;
  char diag[200];

  assert_non_null(mkdtemp(dir));
  snprintf(path, sizeof path, "%s/dev.key", dir);
  snprintf(bad, sizeof bad, "%s/not-a-key", dir);
  assert_int_equal(ec_key_write(p256, path, diag, sizeof diag), EST_OK);
  assert_int_equal(stat(path, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0600);
  assert_int_equal(ec_key_load(path, &k, diag, sizeof diag), EST_OK);
  assert_int_equal(gnutls_x509_privkey_get_key_id(p256, GNUTLS_KEYID_USE_SHA256, id1, &l1), 0);
  assert_int_equal(gnutls_x509_privkey_get_key_id(k, GNUTLS_KEYID_USE_SHA256, id2, &l2), 0);
  assert_memory_equal(id1, id2, l1);
  gnutls_x509_privkey_deinit(k);

  /* PKCS#8 DER in (CF 284), the same key out. */
  gnutls_datum_t p8 = {NULL, 0};
  assert_int_equal(gnutls_x509_privkey_export2_pkcs8(p256, GNUTLS_X509_FMT_DER, NULL,
                                                     GNUTLS_PKCS_PLAIN, &p8),
                   0);
  assert_int_equal(ec_key_import_pkcs8(p8.data, p8.size, &k), EST_OK);
  l2 = sizeof id2;
  assert_int_equal(gnutls_x509_privkey_get_key_id(k, GNUTLS_KEYID_USE_SHA256, id2, &l2), 0);
  assert_memory_equal(id1, id2, l1);
  gnutls_x509_privkey_deinit(k);
  p8.data[p8.size / 2] ^= 0xff;
  p8.data[1] ^= 0x7f;
  assert_int_equal(ec_key_import_pkcs8(p8.data, p8.size, &k), EST_ERR_MALFORMED);
  assert_int_equal(ec_key_import_pkcs8(p8.data, 0, &k), EST_ERR_INVALID);
  gnutls_free(p8.data);

  /* Not a key; no such file. */
  assert_int_equal(ec_file_write_atomic(bad, "hello\n", 6, 0644, NULL, 0), EST_OK);
  assert_int_equal(ec_key_load(bad, &k, diag, sizeof diag), EST_ERR_MALFORMED);
  assert_non_null(strstr(diag, "not an unencrypted PEM private key"));
  unlink(bad);
  assert_int_equal(ec_key_load(bad, &k, diag, sizeof diag), EST_ERR_IO);
  unlink(path);
  rmdir(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(key_types),
    cmocka_unit_test(csr_with_names_and_pop),
    cmocka_unit_test(csr_without_pop),
    cmocka_unit_test(csr_other_key_types),
    cmocka_unit_test(bad_params),
    cmocka_unit_test(reenroll_copies_names),
    cmocka_unit_test(key_files),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
