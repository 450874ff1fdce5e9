/* Unit tests for pki.c. Every CA, key and CSR is made here with GnuTLS in a
 * temporary directory, so the tests need no committed fixtures. */
#define _GNU_SOURCE /* memmem, mkdtemp */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <gnutls/pkcs7.h>
#include <gnutls/x509.h>

#include <libtasn1.h>

#include "plugin/est/p7asn.h"
#include "plugin/est/pki.h"

extern const asn1_static_node pkix_crl_asn_tab[];

#define DAY 86400LL

/* ---- fixture builders ---------------------------------------------------- */

typedef struct fx {
  char dir[64];
  /* EC P-256 issuing CA under an EC root; the CA file holds both. */
  gnutls_x509_privkey_t root_key, ec_key;
  gnutls_x509_crt_t root, ec_ca;
  char ec_pem[128], ec_keyf[128], root_pem[128], root_keyf[128];
  pki_ca *ec;
  /* RSA-2048 self-signed CA. */
  gnutls_x509_privkey_t rsa_key;
  gnutls_x509_crt_t rsa_ca;
  char rsa_pem[128], rsa_keyf[128];
  pki_ca *rsa;
  /* Manufacturer CA, an IDevID it issued, and the trust bundle. */
  gnutls_x509_privkey_t mfr_key, idev_key;
  gnutls_x509_crt_t mfr, idev;
  char mfr_pem[128];
  /* Client keys. */
  gnutls_x509_privkey_t cli_ec, cli_ec2, cli_rsa;
} fx;

static gnutls_x509_privkey_t key_new(gnutls_pk_algorithm_t alg,
                                     unsigned bits) {
  gnutls_x509_privkey_t k;
  assert_int_equal(gnutls_x509_privkey_init(&k), 0);
  assert_int_equal(gnutls_x509_privkey_generate(k, alg, bits, 0), 0);
  return k;
}

static gnutls_x509_privkey_t ec_key_new(gnutls_ecc_curve_t curve) {
  return key_new(GNUTLS_PK_ECDSA, GNUTLS_CURVE_TO_BITS(curve));
}

static gnutls_x509_crt_t crt_import(const uint8_t *der, size_t len) {
  gnutls_x509_crt_t c;
  gnutls_datum_t d = {(unsigned char *)(uintptr_t)der, (unsigned)len};
  assert_int_equal(gnutls_x509_crt_init(&c), 0);
  assert_int_equal(gnutls_x509_crt_import(c, &d, GNUTLS_X509_FMT_DER), 0);
  return c;
}

/* pki_issued as out-parameters, so each test reads as before. The dates
 * and serial pki returns must be the ones in the certificate. */
static est_err take_issued(est_err rc, pki_issued *is, uint8_t **cert, size_t *len,
                           uint8_t *serial) {
  *cert = is->der;
  *len = is->der_len;
  if (rc != EST_OK) {
    assert_null(is->der);
    return rc;
  }
  gnutls_x509_crt_t c = crt_import(is->der, is->der_len);
  uint8_t sn[32];
  size_t sn_len = sizeof sn;
  assert_int_equal(gnutls_x509_crt_get_serial(c, sn, &sn_len), 0);
  assert_int_equal(sn_len, PKI_SERIAL_LEN);
  assert_memory_equal(sn, is->serial, PKI_SERIAL_LEN);
  assert_int_equal((long long)gnutls_x509_crt_get_activation_time(c), is->not_before);
  assert_int_equal((long long)gnutls_x509_crt_get_expiration_time(c), is->not_after);
  gnutls_x509_crt_deinit(c);
  if (serial)
    memcpy(serial, is->serial, PKI_SERIAL_LEN);
  return rc;
}

static est_err issue_cert(pki_ca *ca, const pki_csr *csr, uint8_t **cert, size_t *len,
                          uint8_t *serial) {
  pki_issued is;
  est_err rc = pki_issue(ca, csr, &is);
  return take_issued(rc, &is, cert, len, serial);
}

static est_err keygen_issue(pki_ca *ca, const pki_csr *csr, pki_key_type type,
                            uint8_t **p8, size_t *p8_len, uint8_t **cert, size_t *len,
                            uint8_t *serial) {
  pki_issued is = {0};
  est_err rc = pki_keygen_issue(ca, csr, type, p8, p8_len, &is);
  return take_issued(rc, &is, cert, len, serial);
}

/* EdDSA signs with its own hash; GnuTLS wants SHA-512 named for Ed25519. */
static gnutls_digest_algorithm_t dig_for(gnutls_x509_privkey_t k) {
  return gnutls_x509_privkey_get_pk_algorithm(k) == GNUTLS_PK_EDDSA_ED25519
             ? GNUTLS_DIG_SHA512
             : GNUTLS_DIG_SHA256;
}

/* bc: -1 none, 0 CA:FALSE, 1 CA:TRUE; ku 0 = no keyUsage. */
static gnutls_x509_crt_t cert_new(gnutls_x509_privkey_t key, const char *dn,
                                  int bc, unsigned ku, long long nb,
                                  long long na, gnutls_x509_crt_t issuer,
                                  gnutls_x509_privkey_t issuer_key) {
  gnutls_x509_crt_t c;
  const char *e = NULL;
  uint8_t sn[8], id[64];
  size_t id_len = sizeof id;
  assert_int_equal(gnutls_x509_crt_init(&c), 0);
  assert_int_equal(gnutls_x509_crt_set_dn(c, dn, &e), 0);
  assert_int_equal(gnutls_x509_crt_set_key(c, key), 0);
  assert_int_equal(gnutls_x509_crt_set_version(c, 3), 0);
  assert_int_equal(gnutls_rnd(GNUTLS_RND_NONCE, sn, sizeof sn), 0);
  sn[0] = (uint8_t)((sn[0] & 0x7f) | 1);
  assert_int_equal(gnutls_x509_crt_set_serial(c, sn, sizeof sn), 0);
  assert_int_equal(gnutls_x509_crt_set_activation_time(c, (time_t)nb), 0);
  assert_int_equal(gnutls_x509_crt_set_expiration_time(c, (time_t)na), 0);
  if (bc >= 0)
    assert_int_equal(gnutls_x509_crt_set_basic_constraints(c, bc, -1), 0);
  if (ku)
    assert_int_equal(gnutls_x509_crt_set_key_usage(c, ku), 0);
  assert_int_equal(
      gnutls_x509_crt_get_key_id(c, GNUTLS_KEYID_USE_SHA1, id, &id_len), 0);
  assert_int_equal(gnutls_x509_crt_set_subject_key_id(c, id, id_len), 0);
  gnutls_x509_privkey_t sk = issuer_key ? issuer_key : key;
  assert_int_equal(
      gnutls_x509_crt_sign2(c, issuer ? issuer : c, sk, dig_for(sk), 0), 0);
  /* Round-trip through DER: a cert built in memory lacks the cached raw
   * names GnuTLS's verifier matches issuers with. */
  gnutls_datum_t d;
  assert_int_equal(gnutls_x509_crt_export2(c, GNUTLS_X509_FMT_DER, &d), 0);
  gnutls_x509_crt_deinit(c);
  c = crt_import(d.data, d.size);
  gnutls_free(d.data);
  return c;
}

static gnutls_x509_crt_t ca_new(gnutls_x509_privkey_t key, const char *dn,
                                gnutls_x509_crt_t issuer,
                                gnutls_x509_privkey_t issuer_key) {
  long long now = (long long)time(NULL);
  return cert_new(key, dn, 1, GNUTLS_KEY_KEY_CERT_SIGN | GNUTLS_KEY_CRL_SIGN,
                  now - DAY, now + 3650 * DAY, issuer, issuer_key);
}

static void file_write(const char *path, const void *data, size_t len) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(data, 1, len, f), len);
  assert_int_equal(fclose(f), 0);
}

static void pem_write(const char *path, gnutls_x509_crt_t *crts, size_t n) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  for (size_t i = 0; i < n; i++) {
    gnutls_datum_t d;
    assert_int_equal(gnutls_x509_crt_export2(crts[i], GNUTLS_X509_FMT_PEM, &d),
                     0);
    assert_int_equal(fwrite(d.data, 1, d.size, f), d.size);
    gnutls_free(d.data);
  }
  assert_int_equal(fclose(f), 0);
}

static void key_write(const char *path, gnutls_x509_privkey_t k) {
  gnutls_datum_t d;
  assert_int_equal(gnutls_x509_privkey_export2(k, GNUTLS_X509_FMT_PEM, &d), 0);
  file_write(path, d.data, d.size);
  gnutls_free(d.data);
}

static gnutls_datum_t crt_der(gnutls_x509_crt_t c) {
  gnutls_datum_t d;
  assert_int_equal(gnutls_x509_crt_export2(c, GNUTLS_X509_FMT_DER, &d), 0);
  return d;
}

typedef struct csr_opts {
  const char *dn;          /* NULL: empty subject */
  const char *dns[3];      /* dNSName SANs in order */
  const char *ip;          /* 4 raw bytes, or NULL */
  bool ip_first;           /* put the IP SAN before the DNS ones */
  const char *challenge;
  const void *raw_challenge; /* DER DirectoryString, instead of challenge */
  size_t raw_challenge_len;
  int bc;                  /* -1 none */
  unsigned ku;             /* 0 none */
} csr_opts;

/* A DER CSR (gnutls_free it). */
static gnutls_datum_t csr_new(gnutls_x509_privkey_t key, const csr_opts *o) {
  gnutls_x509_crq_t q;
  gnutls_datum_t d;
  const char *e = NULL;
  assert_int_equal(gnutls_x509_crq_init(&q), 0);
  if (o->dn)
    assert_int_equal(gnutls_x509_crq_set_dn(q, o->dn, &e), 0);
  assert_int_equal(gnutls_x509_crq_set_version(q, 1), 0);
  assert_int_equal(gnutls_x509_crq_set_key(q, key), 0);
  if (o->ip && o->ip_first)
    assert_int_equal(gnutls_x509_crq_set_subject_alt_name(
                         q, GNUTLS_SAN_IPADDRESS, o->ip, 4, GNUTLS_FSAN_APPEND),
                     0);
  for (int i = 0; i < 3 && o->dns[i]; i++)
    assert_int_equal(gnutls_x509_crq_set_subject_alt_name(
                         q, GNUTLS_SAN_DNSNAME, o->dns[i],
                         (unsigned)strlen(o->dns[i]), GNUTLS_FSAN_APPEND),
                     0);
  if (o->ip && !o->ip_first)
    assert_int_equal(gnutls_x509_crq_set_subject_alt_name(
                         q, GNUTLS_SAN_IPADDRESS, o->ip, 4, GNUTLS_FSAN_APPEND),
                     0);
  if (o->challenge)
    assert_int_equal(gnutls_x509_crq_set_challenge_password(q, o->challenge),
                     0);
  if (o->raw_challenge)
    assert_int_equal(gnutls_x509_crq_set_attribute_by_oid(
                         q, "1.2.840.113549.1.9.7",
                         (void *)(uintptr_t)o->raw_challenge,
                         o->raw_challenge_len),
                     0);
  if (o->bc >= 0)
    assert_int_equal(gnutls_x509_crq_set_basic_constraints(q, o->bc, -1), 0);
  if (o->ku)
    assert_int_equal(gnutls_x509_crq_set_key_usage(q, o->ku), 0);
  assert_int_equal(gnutls_x509_crq_sign2(q, key, dig_for(key), 0), 0);
  assert_int_equal(gnutls_x509_crq_export2(q, GNUTLS_X509_FMT_DER, &d), 0);
  gnutls_x509_crq_deinit(q);
  return d;
}

static const csr_opts DEV42 = {
    .dn = "CN=dev42,O=Example",
    .dns = {"dev42.example", "alt.example", NULL},
    .ip = "\x0a\x00\x00\x2a",
    .bc = -1,
};

static pki_csr *csr_parse_ok(const gnutls_datum_t *d) {
  pki_csr *c = NULL;
  char diag[128] = "";
  assert_int_equal(pki_csr_parse(d->data, d->size, &c, diag, sizeof diag),
                   EST_OK);
  assert_non_null(c);
  return c;
}

static pki_csr *csr_make(gnutls_x509_privkey_t key, const csr_opts *o) {
  gnutls_datum_t d = csr_new(key, o);
  pki_csr *c = csr_parse_ok(&d);
  gnutls_free(d.data);
  return c;
}

static void path_join(char *out, size_t n, const fx *f, const char *name) {
  int r = snprintf(out, n, "%s/%s", f->dir, name);
  assert_true(r > 0 && (size_t)r < n);
}

static int group_setup(void **state) {
  fx *f = calloc(1, sizeof *f);
  assert_non_null(f);
  strcpy(f->dir, "/tmp/test_pki.XXXXXX");
  assert_non_null(mkdtemp(f->dir));

  f->root_key = ec_key_new(GNUTLS_ECC_CURVE_SECP256R1);
  f->root = ca_new(f->root_key, "CN=Test Root CA,O=Example", NULL, NULL);
  f->ec_key = ec_key_new(GNUTLS_ECC_CURVE_SECP256R1);
  f->ec_ca = ca_new(f->ec_key, "CN=Test Issuing CA,O=Example", f->root,
                    f->root_key);
  path_join(f->ec_pem, sizeof f->ec_pem, f, "ec_ca.pem");
  path_join(f->ec_keyf, sizeof f->ec_keyf, f, "ec_ca.key");
  path_join(f->root_pem, sizeof f->root_pem, f, "root.pem");
  path_join(f->root_keyf, sizeof f->root_keyf, f, "root.key");
  gnutls_x509_crt_t bag[2] = {f->ec_ca, f->root};
  pem_write(f->ec_pem, bag, 2);
  pem_write(f->root_pem, &f->root, 1);
  key_write(f->ec_keyf, f->ec_key);
  key_write(f->root_keyf, f->root_key);

  f->rsa_key = key_new(GNUTLS_PK_RSA, 2048);
  f->rsa_ca = ca_new(f->rsa_key, "CN=Test RSA CA,O=Example", NULL, NULL);
  path_join(f->rsa_pem, sizeof f->rsa_pem, f, "rsa_ca.pem");
  path_join(f->rsa_keyf, sizeof f->rsa_keyf, f, "rsa_ca.key");
  pem_write(f->rsa_pem, &f->rsa_ca, 1);
  key_write(f->rsa_keyf, f->rsa_key);

  f->mfr_key = ec_key_new(GNUTLS_ECC_CURVE_SECP256R1);
  f->mfr = ca_new(f->mfr_key, "CN=Manufacturer CA,O=Acme", NULL, NULL);
  f->idev_key = ec_key_new(GNUTLS_ECC_CURVE_SECP256R1);
  long long now = (long long)time(NULL);
  f->idev = cert_new(f->idev_key, "CN=acme-0001,serialNumber=0001", -1, 0,
                     now - DAY, now + 20 * 365 * DAY, f->mfr, f->mfr_key);
  path_join(f->mfr_pem, sizeof f->mfr_pem, f, "mfr.pem");
  pem_write(f->mfr_pem, &f->mfr, 1);

  f->cli_ec = ec_key_new(GNUTLS_ECC_CURVE_SECP256R1);
  f->cli_ec2 = ec_key_new(GNUTLS_ECC_CURVE_SECP256R1);
  f->cli_rsa = key_new(GNUTLS_PK_RSA, 2048);

  char diag[256] = "";
  assert_int_equal(
      pki_ca_load(f->ec_pem, f->ec_keyf, 365, &f->ec, diag, sizeof diag),
      EST_OK);
  assert_int_equal(
      pki_ca_load(f->rsa_pem, f->rsa_keyf, 365, &f->rsa, diag, sizeof diag),
      EST_OK);
  *state = f;
  return 0;
}

static int group_teardown(void **state) {
  fx *f = *state;
  char cmd[128];
  pki_ca_free(f->ec);
  pki_ca_free(f->rsa);
  gnutls_x509_crt_t crts[] = {f->root, f->ec_ca, f->rsa_ca, f->mfr, f->idev};
  for (size_t i = 0; i < sizeof crts / sizeof crts[0]; i++)
    gnutls_x509_crt_deinit(crts[i]);
  gnutls_x509_privkey_t keys[] = {f->root_key, f->ec_key,  f->rsa_key,
                                  f->mfr_key,  f->idev_key, f->cli_ec,
                                  f->cli_ec2,  f->cli_rsa};
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
    gnutls_x509_privkey_deinit(keys[i]);
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
  assert_int_equal(system(cmd), 0);
  free(f);
  return 0;
}

/* Issue for @p o with @p key from @p ca; returns the cert (deinit it). */
static gnutls_x509_crt_t issue(pki_ca *ca, gnutls_x509_privkey_t key,
                               const csr_opts *o, uint8_t **der,
                               size_t *der_len) {
  pki_csr *c = csr_make(key, o);
  uint8_t *cert = NULL, serial[16];
  size_t cert_len = 0;
  assert_int_equal(pki_csr_verify(c), EST_OK);
  assert_int_equal(issue_cert(ca, c, &cert, &cert_len, serial), EST_OK);
  pki_csr_free(c);
  gnutls_x509_crt_t crt = crt_import(cert, cert_len);
  if (der) {
    *der = cert;
    *der_len = cert_len;
  } else {
    free(cert);
  }
  return crt;
}

/* ---- key types ------------------------------------------------------------ */

static void test_key_type_parse(void **state) {
  (void)state;
  pki_key_type t = PKI_KEY__MAX;
  assert_int_equal(pki_key_type_parse("ec-p256", &t), EST_OK);
  assert_int_equal(t, PKI_KEY_EC_P256);
  assert_int_equal(pki_key_type_parse("rsa-2048", &t), EST_OK);
  assert_int_equal(t, PKI_KEY_RSA_2048);
  assert_int_equal(pki_key_type_parse("rsa-3072", &t), EST_OK);
  assert_int_equal(t, PKI_KEY_RSA_3072);
  assert_int_equal(pki_key_type_parse("rsa-1024", &t), EST_ERR_INVALID);
  assert_int_equal(pki_key_type_parse("EC-P256", &t), EST_ERR_INVALID);
  assert_int_equal(pki_key_type_parse("", &t), EST_ERR_INVALID);
  assert_int_equal(pki_key_type_parse(NULL, &t), EST_ERR_INVALID);
  pki_secret_free(NULL, 0);
  pki_ca_free(NULL);
  pki_trust_free(NULL);
  pki_csr_free(NULL);
}

/* ---- CA load ------------------------------------------------------------- */

static void expect_load(const char *cert, const char *key, unsigned days,
                        est_err want) {
  pki_ca *ca = (pki_ca *)(uintptr_t)1;
  char diag[256] = "";
  assert_int_equal(pki_ca_load(cert, key, days, &ca, diag, sizeof diag), want);
  assert_null(ca);
  assert_true(strlen(diag) > 0);
}

static void test_ca_load_errors(void **state) {
  fx *f = *state;
  char p[160], k[160];
  long long now = (long long)time(NULL);

  path_join(p, sizeof p, f, "missing.pem");
  expect_load(p, f->ec_keyf, 365, EST_ERR_IO);
  expect_load(f->ec_pem, p, 365, EST_ERR_IO);
  expect_load(f->ec_pem, f->ec_keyf, 0, EST_ERR_CONFIG);
  expect_load(f->ec_pem, f->ec_keyf, 36501, EST_ERR_CONFIG);

  /* The root's key with the issuing CA's cert. */
  expect_load(f->ec_pem, f->root_keyf, 365, EST_ERR_KEY_MISMATCH);
  /* An RSA key with an EC cert. */
  expect_load(f->ec_pem, f->rsa_keyf, 365, EST_ERR_KEY_MISMATCH);

  /* Garbage and empty files. */
  path_join(p, sizeof p, f, "garbage.pem");
  file_write(p, "-----BEGIN CERTIFICATE-----\nnot base64!\n"
                "-----END CERTIFICATE-----\n", 66);
  expect_load(p, f->ec_keyf, 365, EST_ERR_CONFIG);
  expect_load(f->ec_pem, p, 365, EST_ERR_CONFIG);
  path_join(p, sizeof p, f, "empty.pem");
  file_write(p, "", 0);
  expect_load(p, f->ec_keyf, 365, EST_ERR_CONFIG);

  /* Over the size cap, and exactly at it (then it is only garbage). */
  path_join(p, sizeof p, f, "big.pem");
  char *big = malloc(PKI_PEM_FILE_MAX + 1);
  assert_non_null(big);
  memset(big, 'A', PKI_PEM_FILE_MAX + 1);
  file_write(p, big, PKI_PEM_FILE_MAX + 1);
  expect_load(p, f->ec_keyf, 365, EST_ERR_TOO_LARGE);
  expect_load(f->ec_pem, p, 365, EST_ERR_TOO_LARGE);
  file_write(p, big, PKI_PEM_FILE_MAX);
  expect_load(p, f->ec_keyf, 365, EST_ERR_CONFIG);
  free(big);

  /* A leaf (CA:FALSE), a CA without keyCertSign, one without
   * basicConstraints, and an expired CA. */
  gnutls_x509_privkey_t key = ec_key_new(GNUTLS_ECC_CURVE_SECP256R1);
  path_join(k, sizeof k, f, "other.key");
  key_write(k, key);
  path_join(p, sizeof p, f, "other.pem");
  struct {
    int bc;
    unsigned ku;
    long long nb, na;
  } bad[] = {
      {0, GNUTLS_KEY_DIGITAL_SIGNATURE, now - DAY, now + DAY},
      {1, GNUTLS_KEY_DIGITAL_SIGNATURE | GNUTLS_KEY_CRL_SIGN, now - DAY,
       now + DAY},
      {-1, GNUTLS_KEY_KEY_CERT_SIGN, now - DAY, now + DAY},
      {1, GNUTLS_KEY_KEY_CERT_SIGN, now - 10 * DAY, now - DAY},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    gnutls_x509_crt_t c =
        cert_new(key, "CN=Not a CA", bad[i].bc, bad[i].ku, bad[i].nb,
                 bad[i].na, NULL, NULL);
    pem_write(p, &c, 1);
    expect_load(p, k, 365, EST_ERR_CONFIG);
    gnutls_x509_crt_deinit(c);
  }
  /* A CA without keyUsage is fine. */
  gnutls_x509_crt_t c =
      cert_new(key, "CN=CA without KU", 1, 0, now - DAY, now + DAY, NULL, NULL);
  pem_write(p, &c, 1);
  pki_ca *ca = NULL;
  char diag[256];
  assert_int_equal(pki_ca_load(p, k, 30, &ca, diag, sizeof diag), EST_OK);
  pki_ca_free(ca);
  gnutls_x509_crt_deinit(c);

  /* Encrypted PKCS#8 keys are not supported. */
  gnutls_datum_t enc;
  assert_int_equal(gnutls_x509_privkey_export2_pkcs8(
                       f->ec_key, GNUTLS_X509_FMT_PEM, "secret",
                       GNUTLS_PKCS_PBES2_AES_256, &enc),
                   0);
  file_write(k, enc.data, enc.size);
  gnutls_free(enc.data);
  expect_load(f->ec_pem, k, 365, EST_ERR_CONFIG);

  /* Ed25519 CA keys are not supported. */
  gnutls_x509_privkey_t ed = key_new(GNUTLS_PK_EDDSA_ED25519, 0);
  key_write(k, ed);
  c = ca_new(ed, "CN=Ed CA", NULL, NULL);
  pem_write(p, &c, 1);
  expect_load(p, k, 365, EST_ERR_CONFIG);
  gnutls_x509_crt_deinit(c);
  gnutls_x509_privkey_deinit(ed);
  gnutls_x509_privkey_deinit(key);
}

static void test_ca_crts(void **state) {
  fx *f = *state;
  const uint8_t *p7 = NULL, *der = NULL;
  size_t p7_len = 0, der_len = 0;
  assert_int_equal(pki_ca_cert_count(f->ec), 2);
  assert_int_equal(pki_ca_cert_count(f->rsa), 1);

  pki_ca_certs_p7(f->ec, &p7, &p7_len);
  assert_non_null(p7);
  gnutls_pkcs7_t pk;
  gnutls_datum_t d = {(unsigned char *)(uintptr_t)p7, (unsigned)p7_len};
  assert_int_equal(gnutls_pkcs7_init(&pk), 0);
  assert_int_equal(gnutls_pkcs7_import(pk, &d, GNUTLS_X509_FMT_DER), 0);
  assert_int_equal(gnutls_pkcs7_get_crt_count(pk), 2);
  assert_int_equal(gnutls_pkcs7_get_signature_count(pk), 0);
  /* RFC 5652 §5.2: no signers, so the encapsulated type is id-data with
   * no content (docs/decisions.md §18): SEQUENCE { OID 1.2.840.113549.1.7.1 }. */
  static const uint8_t id_data[] = {0x30, 0x0b, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86,
                                    0xf7, 0x0d, 0x01, 0x07, 0x01};
  assert_true(p7_len > 28 + sizeof id_data);
  assert_memory_equal(p7 + 28, id_data, sizeof id_data);
  uint8_t *again = NULL;
  size_t again_len = 0;
  assert_int_equal(p7asn_certs_only(p7, p7_len, &again, &again_len), EST_OK);
  assert_int_equal(again_len, p7_len); /* a fixed point */
  assert_memory_equal(again, p7, p7_len);
  free(again);
  assert_int_equal(p7asn_certs_only(p7, 10, &again, &again_len), EST_ERR_MALFORMED);
  assert_int_equal(p7asn_certs_only(id_data, sizeof id_data, &again, &again_len),
                   EST_ERR_MALFORMED);
  /* CertificateSet is a SET OF: DER sorts it, so look for each cert. */
  gnutls_x509_crt_t want[2] = {f->ec_ca, f->root};
  for (unsigned i = 0; i < 2; i++) {
    gnutls_datum_t exp = crt_der(want[i]);
    bool found = false;
    for (unsigned j = 0; j < 2; j++) {
      gnutls_datum_t got;
      assert_int_equal(gnutls_pkcs7_get_crt_raw2(pk, j, &got), 0);
      found |= got.size == exp.size &&
               memcmp(got.data, exp.data, exp.size) == 0;
      gnutls_free(got.data);
    }
    assert_true(found);
    gnutls_free(exp.data);
  }
  gnutls_pkcs7_deinit(pk);

  pki_ca_cert_der(f->ec, &der, &der_len);
  gnutls_datum_t exp = crt_der(f->ec_ca);
  assert_int_equal(der_len, exp.size);
  assert_memory_equal(der, exp.data, exp.size);
  gnutls_free(exp.data);
}

/* ---- CSR parsing ---------------------------------------------------------- */

static void expect_parse(const uint8_t *der, size_t len, est_err want) {
  pki_csr *c = NULL;
  char diag[128] = "";
  assert_int_equal(pki_csr_parse(der, len, &c, diag, sizeof diag), want);
  assert_null(c);
  assert_true(strlen(diag) > 0);
}

static void test_csr_parse_errors(void **state) {
  fx *f = *state;
  gnutls_datum_t d = csr_new(f->cli_ec, &DEV42);
  uint8_t *buf = calloc(1, PKI_CSR_MAX + 2);
  assert_non_null(buf);
  memcpy(buf, d.data, d.size);

  expect_parse(buf, 0, EST_ERR_BAD_CSR);
  for (size_t cut = 1; cut < d.size; cut += (cut < 16 ? 1 : 37))
    expect_parse(buf, d.size - cut, EST_ERR_BAD_CSR);
  buf[d.size] = 0x00; /* one trailing byte */
  expect_parse(buf, d.size + 1, EST_ERR_BAD_CSR);
  expect_parse(buf, PKI_CSR_MAX + 1, EST_ERR_TOO_LARGE);

  /* Random bytes, also behind a plausible SEQUENCE header. */
  srand(42);
  for (int i = 0; i < 200; i++) {
    size_t n = 1 + (size_t)rand() % 600;
    for (size_t j = 0; j < n; j++)
      buf[j] = (uint8_t)rand();
    if (i % 2) {
      buf[0] = 0x30;
      buf[1] = 0x82;
      buf[2] = (uint8_t)((n - 4) >> 8);
      buf[3] = (uint8_t)(n - 4);
    }
    pki_csr *c = NULL;
    est_err e = pki_csr_parse(buf, n, &c, NULL, 0);
    assert_int_equal(e, EST_ERR_BAD_CSR);
    assert_null(c);
  }

  /* PEM is not DER. */
  pki_csr *c = NULL;
  const char *pem = "-----BEGIN CERTIFICATE REQUEST-----\n";
  assert_int_equal(
      pki_csr_parse((const uint8_t *)pem, strlen(pem), &c, NULL, 0),
      EST_ERR_BAD_CSR);
  assert_int_equal(pki_csr_parse(NULL, 10, &c, NULL, 0), EST_ERR_INVALID);

  /* Weak and unsupported keys. */
  gnutls_x509_privkey_t weak = key_new(GNUTLS_PK_RSA, 1024);
  gnutls_datum_t w = csr_new(weak, &DEV42);
  expect_parse(w.data, w.size, EST_ERR_BAD_CSR);
  gnutls_free(w.data);
  gnutls_x509_privkey_deinit(weak);

  /* The exact parsed size is fine, and diag may be NULL. */
  assert_int_equal(pki_csr_parse(d.data, d.size, &c, NULL, 0), EST_OK);
  pki_csr_free(c);
  gnutls_free(d.data);
  free(buf);
}

static void test_csr_key_types(void **state) {
  fx *f = *state;
  gnutls_x509_privkey_t keys[] = {
      ec_key_new(GNUTLS_ECC_CURVE_SECP384R1),
      ec_key_new(GNUTLS_ECC_CURVE_SECP521R1),
      key_new(GNUTLS_PK_EDDSA_ED25519, 0),
  };
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
    pki_csr *c = csr_make(keys[i], &DEV42);
    assert_int_equal(pki_csr_verify(c), EST_OK);
    uint8_t *cert = NULL, serial[16];
    size_t len = 0;
    assert_int_equal(issue_cert(f->ec, c, &cert, &len, serial), EST_OK);
    gnutls_x509_crt_t crt = crt_import(cert, len);
    unsigned ku = 0, crit = 0;
    assert_true(gnutls_x509_crt_get_key_usage(crt, &ku, &crit) >= 0);
    assert_int_equal(ku, GNUTLS_KEY_DIGITAL_SIGNATURE);
    gnutls_x509_crt_deinit(crt);
    free(cert);
    pki_csr_free(c);
    gnutls_x509_privkey_deinit(keys[i]);
  }
}

static void test_csr_signature(void **state) {
  fx *f = *state;
  gnutls_x509_privkey_t keys[] = {f->cli_ec, f->cli_rsa};
  for (size_t i = 0; i < 2; i++) {
    gnutls_datum_t d = csr_new(keys[i], &DEV42);
    pki_csr *c = csr_parse_ok(&d);
    assert_int_equal(pki_csr_verify(c), EST_OK);
    pki_csr_free(c);

    /* A flipped bit in the signature value. */
    d.data[d.size - 1] ^= 0x01;
    c = csr_parse_ok(&d);
    assert_int_equal(pki_csr_verify(c), EST_ERR_CSR_SIGNATURE);
    /* pki_issue's own check (gnutls_x509_crt_set_crq) refuses it too. */
    uint8_t *cert = NULL;
    size_t len = 0;
    assert_int_equal(issue_cert(f->ec, c, &cert, &len, NULL),
                     EST_ERR_CSR_SIGNATURE);
    assert_null(cert);
    pki_csr_free(c);
    d.data[d.size - 1] ^= 0x01;

    /* A changed byte in the subject: the signature no longer covers it. */
    uint8_t *p = memmem(d.data, d.size, "dev42", 5);
    assert_non_null(p);
    p[4] = '3';
    c = csr_parse_ok(&d);
    assert_int_equal(pki_csr_verify(c), EST_ERR_CSR_SIGNATURE);
    pki_csr_free(c);
    gnutls_free(d.data);
  }
}

/* SHA-1 signatures are refused although gnutls_x509_crq_verify() takes
 * them. */
static void test_csr_weak_hash(void **state) {
  fx *f = *state;
  gnutls_x509_privkey_t keys[] = {f->cli_ec, f->cli_rsa};
  for (size_t i = 0; i < 2; i++) {
    gnutls_x509_crq_t q;
    gnutls_datum_t d;
    const char *e = NULL;
    assert_int_equal(gnutls_x509_crq_init(&q), 0);
    assert_int_equal(gnutls_x509_crq_set_dn(q, "CN=sha1", &e), 0);
    assert_int_equal(gnutls_x509_crq_set_key(q, keys[i]), 0);
    assert_int_equal(
        gnutls_x509_crq_sign2(q, keys[i], GNUTLS_DIG_SHA1, 0), 0);
    assert_int_equal(gnutls_x509_crq_export2(q, GNUTLS_X509_FMT_DER, &d), 0);
    gnutls_x509_crq_deinit(q);
    pki_csr *c = csr_parse_ok(&d);
    assert_int_equal(pki_csr_verify(c), EST_ERR_CSR_SIGNATURE);
    pki_csr_free(c);
    gnutls_free(d.data);
  }
}

static void test_csr_challenge(void **state) {
  fx *f = *state;
  char buf[PKI_CHALLENGE_MAX + 1];
  csr_opts o = DEV42;

  pki_csr *c = csr_make(f->cli_ec, &o);
  assert_int_equal(pki_csr_challenge(c, buf, sizeof buf), EST_ERR_NOT_FOUND);
  pki_csr_free(c);

  o.challenge = "q2VqgFo+c6/bZ6D+3dI5Bg==";
  c = csr_make(f->cli_ec, &o);
  assert_int_equal(pki_csr_challenge(c, buf, sizeof buf), EST_OK);
  assert_string_equal(buf, o.challenge);
  char small[8];
  assert_int_equal(pki_csr_challenge(c, small, sizeof small),
                   EST_ERR_TOO_LARGE);
  assert_int_equal(pki_csr_challenge(c, buf, strlen(o.challenge)),
                   EST_ERR_TOO_LARGE);
  assert_int_equal(pki_csr_challenge(c, buf, strlen(o.challenge) + 1),
                   EST_OK);
  pki_csr_free(c);

  /* 255 bytes fit PKI_CHALLENGE_MAX + 1; 256 are over the RFC limit. */
  char pw[300];
  memset(pw, 'x', 255);
  pw[255] = '\0';
  o.challenge = pw;
  c = csr_make(f->cli_ec, &o);
  assert_int_equal(pki_csr_challenge(c, buf, sizeof buf), EST_OK);
  assert_int_equal(strlen(buf), 255);
  pki_csr_free(c);
  pw[255] = 'x';
  pw[256] = '\0';
  c = csr_make(f->cli_ec, &o);
  char bigbuf[400];
  assert_int_equal(pki_csr_challenge(c, bigbuf, sizeof bigbuf),
                   EST_ERR_TOO_LARGE);
  pki_csr_free(c);
}

/* GnuTLS's getter would escape "+" as "\+"; the raw DirectoryString is
 * decoded instead, whatever string type the client chose. */
static void test_csr_challenge_encodings(void **state) {
  fx *f = *state;
  static const struct {
    const char *der;
    size_t len;
    est_err want;
    const char *value;
  } cases[] = {
      {"\x0c\x04q+/=", 6, EST_OK, "q+/="},              /* UTF8String */
      {"\x13\x04q+/=", 6, EST_OK, "q+/="},              /* PrintableString */
      {"\x16\x02" "ab", 4, EST_OK, "ab"},                  /* IA5String */
      {"\x1e\x04\x00" "a\x00" "+", 6, EST_OK, "a+"},          /* BMPString */
      {"\x1c\x04\x00\x00\x00z", 6, EST_OK, "z"},         /* UniversalString */
      {"\x0c\x03" "a\x00" "b", 5, EST_ERR_MALFORMED, NULL},    /* embedded NUL */
      {"\x1e\x02\x00\xe9", 4, EST_ERR_MALFORMED, NULL},  /* non-ASCII BMP */
      {"\x1e\x03\x00" "ab", 5, EST_ERR_MALFORMED, NULL},     /* odd BMP length */
      {"\x04\x02" "ab", 4, EST_ERR_MALFORMED, NULL},         /* OCTET STRING */
      {"\x0c\x00", 2, EST_OK, ""},                        /* empty */
  };
  char buf[PKI_CHALLENGE_MAX + 1];
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    csr_opts o = DEV42;
    o.raw_challenge = cases[i].der;
    o.raw_challenge_len = cases[i].len;
    pki_csr *c = csr_make(f->cli_ec, &o);
    assert_int_equal(pki_csr_challenge(c, buf, sizeof buf), cases[i].want);
    if (cases[i].value)
      assert_string_equal(buf, cases[i].value);
    else
      assert_string_equal(buf, "");
    pki_csr_free(c);
  }
}

static void test_csr_profile(void **state) {
  fx *f = *state;
  char diag[128];
  csr_opts o = DEV42;
  struct {
    int bc;
    unsigned ku;
    est_err want;
  } cases[] = {
      {-1, 0, EST_OK},
      {0, GNUTLS_KEY_DIGITAL_SIGNATURE, EST_OK},
      {1, 0, EST_ERR_CA_REQUEST},
      {-1, GNUTLS_KEY_KEY_CERT_SIGN, EST_ERR_CA_REQUEST},
      {-1, GNUTLS_KEY_CRL_SIGN | GNUTLS_KEY_DIGITAL_SIGNATURE,
       EST_ERR_CA_REQUEST},
      {0, GNUTLS_KEY_KEY_CERT_SIGN, EST_ERR_CA_REQUEST},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    o.bc = cases[i].bc;
    o.ku = cases[i].ku;
    pki_csr *c = csr_make(f->cli_ec, &o);
    diag[0] = '\0';
    assert_int_equal(pki_csr_check_profile(c, diag, sizeof diag),
                     cases[i].want);
    if (cases[i].want != EST_OK)
      assert_non_null(strstr(diag, "CA certificate"));
    pki_csr_free(c);
  }
}

static void test_csr_subject_and_spki(void **state) {
  fx *f = *state;
  pki_csr *c = csr_make(f->cli_ec, &DEV42);
  char *s = pki_csr_subject(c);
  assert_non_null(s);
  assert_string_equal(s, "CN=dev42,O=Example");
  free(s);

  uint8_t got[32], want[32];
  gnutls_pubkey_t pub;
  gnutls_datum_t spki;
  assert_int_equal(pki_csr_spki_sha256(c, got), EST_OK);
  assert_int_equal(gnutls_pubkey_init(&pub), 0);
  gnutls_privkey_t pk;
  assert_int_equal(gnutls_privkey_init(&pk), 0);
  assert_int_equal(gnutls_privkey_import_x509(pk, f->cli_ec, 0), 0);
  assert_int_equal(gnutls_pubkey_import_privkey(pub, pk, 0, 0), 0);
  gnutls_privkey_deinit(pk);
  assert_int_equal(gnutls_pubkey_export2(pub, GNUTLS_X509_FMT_DER, &spki), 0);
  assert_int_equal(
      gnutls_hash_fast(GNUTLS_DIG_SHA256, spki.data, spki.size, want), 0);
  assert_memory_equal(got, want, 32);
  gnutls_free(spki.data);
  gnutls_pubkey_deinit(pub);
  pki_csr_free(c);

  /* Same key, other CSR: same hash; other key: different hash. */
  csr_opts o = DEV42;
  o.challenge = "abc";
  c = csr_make(f->cli_ec, &o);
  assert_int_equal(pki_csr_spki_sha256(c, got), EST_OK);
  assert_memory_equal(got, want, 32);
  pki_csr_free(c);
  c = csr_make(f->cli_ec2, &o);
  assert_int_equal(pki_csr_spki_sha256(c, got), EST_OK);
  assert_memory_not_equal(got, want, 32);
  pki_csr_free(c);
}

/* ---- re-enrollment matching (AUTH-7) ------------------------------------- */

static void expect_match(const fx *f, const csr_opts *o, const uint8_t *cert,
                         size_t len, est_err want, const char *diag_has) {
  char diag[128] = "";
  pki_csr *c = csr_make(f->cli_ec2, o);
  assert_int_equal(pki_csr_match_cert(c, cert, len, diag, sizeof diag), want);
  if (diag_has)
    assert_non_null(strstr(diag, diag_has));
  pki_csr_free(c);
}

static void test_csr_match_cert(void **state) {
  fx *f = *state;
  uint8_t *cert = NULL;
  size_t len = 0;
  gnutls_x509_crt_t crt = issue(f->ec, f->cli_ec, &DEV42, &cert, &len);
  gnutls_x509_crt_deinit(crt);

  csr_opts o = DEV42;
  expect_match(f, &o, cert, len, EST_OK, NULL);
  o.ip_first = true; /* SAN order does not matter */
  expect_match(f, &o, cert, len, EST_OK, NULL);
  o.dns[0] = DEV42.dns[1];
  o.dns[1] = DEV42.dns[0];
  expect_match(f, &o, cert, len, EST_OK, NULL);

  o = DEV42;
  o.dn = "CN=dev43,O=Example";
  expect_match(f, &o, cert, len, EST_ERR_SUBJECT_MISMATCH, "subject differs");
  o.dn = "CN=dev42";
  expect_match(f, &o, cert, len, EST_ERR_SUBJECT_MISMATCH, "subject differs");

  o = DEV42;
  o.dns[1] = "other.example";
  expect_match(f, &o, cert, len, EST_ERR_SUBJECT_MISMATCH,
               "subjectAltName differs");
  o = DEV42;
  o.dns[1] = NULL; /* one SAN fewer */
  expect_match(f, &o, cert, len, EST_ERR_SUBJECT_MISMATCH,
               "subjectAltName differs");
  o = DEV42;
  o.dns[2] = "dev42.example"; /* a duplicate: multisets differ */
  expect_match(f, &o, cert, len, EST_ERR_SUBJECT_MISMATCH,
               "subjectAltName differs");
  o = DEV42;
  o.ip = NULL;
  o.dns[0] = NULL;
  expect_match(f, &o, cert, len, EST_ERR_SUBJECT_MISMATCH,
               "subjectAltName differs");
  o = DEV42;
  o.ip = "\x0a\x00\x00\x2b";
  expect_match(f, &o, cert, len, EST_ERR_SUBJECT_MISMATCH,
               "subjectAltName differs");

  /* No SAN on either side. */
  uint8_t *cert2 = NULL;
  size_t len2 = 0;
  o = DEV42;
  o.ip = NULL;
  o.dns[0] = NULL;
  crt = issue(f->ec, f->cli_ec, &o, &cert2, &len2);
  gnutls_x509_crt_deinit(crt);
  expect_match(f, &o, cert2, len2, EST_OK, NULL);
  expect_match(f, &DEV42, cert2, len2, EST_ERR_SUBJECT_MISMATCH,
               "subjectAltName differs");

  /* The same names in other string types (UTF8String here, PrintableString
   * in the certificate) still match; other values do not. */
  static const struct {
    const char *o, *cn;
    size_t o_len, cn_len;
    est_err want;
  } enc[] = {
      {"\x0c\x07" "Example", "\x0c\x05" "dev42", 9, 7, EST_OK},
      {"\x0c\x07" "Example", "\x0c\x05" "Dev42", 9, 7,
       EST_ERR_SUBJECT_MISMATCH},
  };
  for (size_t i = 0; i < sizeof enc / sizeof enc[0]; i++) {
    gnutls_x509_crq_t q;
    gnutls_datum_t d;
    assert_int_equal(gnutls_x509_crq_init(&q), 0);
    assert_int_equal(gnutls_x509_crq_set_dn_by_oid(q, GNUTLS_OID_X520_ORGANIZATION_NAME,
                                                   1, enc[i].o, enc[i].o_len),
                     0);
    assert_int_equal(gnutls_x509_crq_set_dn_by_oid(q, GNUTLS_OID_X520_COMMON_NAME,
                                                   1, enc[i].cn, enc[i].cn_len),
                     0);
    assert_int_equal(gnutls_x509_crq_set_key(q, f->cli_ec), 0);
    assert_int_equal(gnutls_x509_crq_set_subject_alt_name(
                         q, GNUTLS_SAN_DNSNAME, "dev42.example", 13,
                         GNUTLS_FSAN_APPEND),
                     0);
    assert_int_equal(gnutls_x509_crq_set_subject_alt_name(
                         q, GNUTLS_SAN_DNSNAME, "alt.example", 11,
                         GNUTLS_FSAN_APPEND),
                     0);
    assert_int_equal(gnutls_x509_crq_set_subject_alt_name(
                         q, GNUTLS_SAN_IPADDRESS, DEV42.ip, 4,
                         GNUTLS_FSAN_APPEND),
                     0);
    assert_int_equal(gnutls_x509_crq_sign2(q, f->cli_ec, GNUTLS_DIG_SHA256, 0),
                     0);
    assert_int_equal(gnutls_x509_crq_export2(q, GNUTLS_X509_FMT_DER, &d), 0);
    gnutls_x509_crq_deinit(q);
    /* The raw encodings really differ. */
    assert_null(memmem(d.data, d.size, "\x13\x07" "Example", 9));
    assert_non_null(memmem(cert, len, "\x13\x07" "Example", 9));
    pki_csr *c = csr_parse_ok(&d);
    char diag[128] = "";
    assert_int_equal(pki_csr_match_cert(c, cert, len, diag, sizeof diag),
                     enc[i].want);
    pki_csr_free(c);
    gnutls_free(d.data);
  }

  /* A certificate that does not parse. */
  expect_match(f, &DEV42, cert, len - 1, EST_ERR_MALFORMED, NULL);
  free(cert);
  free(cert2);
}

/* ---- issuance ------------------------------------------------------------- */

static void check_issued(const fx *f, gnutls_x509_crt_t crt,
                         gnutls_x509_crt_t ca_crt, const csr_opts *o,
                         const uint8_t serial[16], bool rsa_subject,
                         long long ca_not_after, unsigned days) {
  (void)f;
  unsigned status = 99, crit = 0, ku = 0, ca = 1;
  long long now = (long long)time(NULL);

  assert_int_equal(gnutls_x509_crt_get_version(crt), 3);
  assert_int_equal(
      gnutls_x509_crt_list_verify(&crt, 1, &ca_crt, 1, NULL, 0, 0, &status),
      0);
  assert_int_equal(status, 0);

  /* Subject, in the same RFC 4514 form as the request's. */
  if (o->dn) {
    gnutls_datum_t got, want;
    gnutls_x509_crq_t q;
    const char *e = NULL;
    assert_int_equal(gnutls_x509_crt_get_dn3(crt, &got, 0), 0);
    assert_int_equal(gnutls_x509_crq_init(&q), 0);
    assert_int_equal(gnutls_x509_crq_set_dn(q, o->dn, &e), 0);
    assert_int_equal(gnutls_x509_crq_get_dn3(q, &want, 0), 0);
    assert_string_equal((const char *)got.data, (const char *)want.data);
    gnutls_free(got.data);
    gnutls_free(want.data);
    gnutls_x509_crq_deinit(q);
  }

  /* SANs, in order. */
  unsigned idx = 0;
  if (o->ip && o->ip_first) {
    char v[64];
    size_t vl = sizeof v;
    assert_int_equal(
        gnutls_x509_crt_get_subject_alt_name(crt, idx++, v, &vl, &crit),
        GNUTLS_SAN_IPADDRESS);
    assert_memory_equal(v, o->ip, 4);
  }
  for (int i = 0; i < 3 && o->dns[i]; i++) {
    char v[64];
    size_t vl = sizeof v;
    assert_int_equal(
        gnutls_x509_crt_get_subject_alt_name(crt, idx++, v, &vl, &crit),
        GNUTLS_SAN_DNSNAME);
    assert_int_equal(vl, strlen(o->dns[i]));
    assert_memory_equal(v, o->dns[i], vl);
  }
  if (o->ip && !o->ip_first) {
    char v[64];
    size_t vl = sizeof v;
    assert_int_equal(
        gnutls_x509_crt_get_subject_alt_name(crt, idx++, v, &vl, &crit),
        GNUTLS_SAN_IPADDRESS);
    assert_memory_equal(v, o->ip, 4);
  }
  {
    char v[64];
    size_t vl = sizeof v;
    assert_int_equal(
        gnutls_x509_crt_get_subject_alt_name(crt, idx, v, &vl, &crit),
        GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE);
  }

  /* Serial: 16 bytes, positive, as returned. */
  uint8_t sn[32];
  size_t sn_len = sizeof sn;
  assert_int_equal(gnutls_x509_crt_get_serial(crt, sn, &sn_len), 0);
  assert_int_equal(sn_len, 16);
  assert_true(sn[0] >= 0x01 && sn[0] <= 0x7f);
  assert_memory_equal(sn, serial, 16);

  /* CA:FALSE critical; keyUsage critical; EKU clientAuth. */
  assert_int_equal(
      gnutls_x509_crt_get_basic_constraints(crt, &crit, &ca, NULL), 0);
  assert_int_equal(ca, 0);
  assert_int_equal(crit, 1);
  assert_true(gnutls_x509_crt_get_key_usage(crt, &ku, &crit) >= 0);
  assert_int_equal(crit, 1);
  assert_int_equal(ku, rsa_subject ? (GNUTLS_KEY_DIGITAL_SIGNATURE |
                                      GNUTLS_KEY_KEY_ENCIPHERMENT)
                                   : GNUTLS_KEY_DIGITAL_SIGNATURE);
  char oid[64];
  size_t oid_len = sizeof oid;
  assert_int_equal(
      gnutls_x509_crt_get_key_purpose_oid(crt, 0, oid, &oid_len, &crit), 0);
  assert_string_equal(oid, GNUTLS_KP_TLS_WWW_CLIENT);
  oid_len = sizeof oid;
  assert_int_equal(
      gnutls_x509_crt_get_key_purpose_oid(crt, 1, oid, &oid_len, &crit),
      GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE);

  /* SKI = SHA-1 key id of the subject key; AKI = the CA's SKI. */
  uint8_t ski[64], kid[64], aki[64], caski[64];
  size_t ski_len = sizeof ski, kid_len = sizeof kid, aki_len = sizeof aki,
         caski_len = sizeof caski;
  assert_int_equal(
      gnutls_x509_crt_get_subject_key_id(crt, ski, &ski_len, &crit), 0);
  assert_int_equal(
      gnutls_x509_crt_get_key_id(crt, GNUTLS_KEYID_USE_SHA1, kid, &kid_len),
      0);
  assert_int_equal(ski_len, kid_len);
  assert_memory_equal(ski, kid, kid_len);
  assert_int_equal(
      gnutls_x509_crt_get_authority_key_id(crt, aki, &aki_len, &crit), 0);
  assert_int_equal(
      gnutls_x509_crt_get_subject_key_id(ca_crt, caski, &caski_len, &crit), 0);
  assert_int_equal(aki_len, caski_len);
  assert_memory_equal(aki, caski, aki_len);

  /* No other extensions than those five (+ SAN). */
  char eoid[64];
  size_t eoid_len;
  unsigned n_ext = 0;
  for (;; n_ext++) {
    eoid_len = sizeof eoid;
    if (gnutls_x509_crt_get_extension_info(crt, n_ext, eoid, &eoid_len,
                                           &crit) < 0)
      break;
  }
  assert_int_equal(n_ext, 5u + (o->ip || o->dns[0] ? 1u : 0u));

  /* Validity: now - skew .. min(now + days, CA notAfter). */
  long long nb = (long long)gnutls_x509_crt_get_activation_time(crt);
  long long na = (long long)gnutls_x509_crt_get_expiration_time(crt);
  assert_true(nb <= now - 60 + 5 && nb >= now - 60 - 5);
  long long want_na = now + (long long)days * DAY;
  if (want_na > ca_not_after)
    want_na = ca_not_after;
  assert_true(na <= ca_not_after);
  assert_true(na >= want_na - 5 && na <= want_na + 5);

  /* The issuer is the CA's subject. */
  gnutls_datum_t i1, i2;
  assert_int_equal(gnutls_x509_crt_get_raw_issuer_dn(crt, &i1), 0);
  assert_int_equal(gnutls_x509_crt_get_raw_dn(ca_crt, &i2), 0);
  assert_int_equal(i1.size, i2.size);
  assert_memory_equal(i1.data, i2.data, i1.size);
  gnutls_free(i1.data);
  gnutls_free(i2.data);
}

static void test_issue_ec(void **state) {
  fx *f = *state;
  gnutls_x509_privkey_t keys[] = {f->cli_ec, f->cli_rsa};
  for (size_t i = 0; i < 2; i++) {
    pki_csr *c = csr_make(keys[i], &DEV42);
    uint8_t *cert = NULL, serial[16], serial2[16];
    size_t len = 0;
    assert_int_equal(pki_csr_verify(c), EST_OK);
    assert_int_equal(issue_cert(f->ec, c, &cert, &len, serial), EST_OK);
    gnutls_x509_crt_t crt = crt_import(cert, len);
    check_issued(f, crt, f->ec_ca, &DEV42, serial, i == 1,
                 (long long)gnutls_x509_crt_get_expiration_time(f->ec_ca),
                 365);
    assert_int_equal(gnutls_x509_crt_get_signature_algorithm(crt),
                     GNUTLS_SIGN_ECDSA_SHA256);
    /* Its own subject and SAN match the CSR (AUTH-7 round trip). */
    assert_int_equal(pki_csr_match_cert(c, cert, len, NULL, 0), EST_OK);
    /* Serial NULL is fine; serials differ. */
    uint8_t *cert2 = NULL;
    size_t len2 = 0;
    assert_int_equal(issue_cert(f->ec, c, &cert2, &len2, serial2), EST_OK);
    assert_memory_not_equal(serial, serial2, 16);
    free(cert2);
    assert_int_equal(issue_cert(f->ec, c, &cert2, &len2, NULL), EST_OK);
    free(cert2);
    gnutls_x509_crt_deinit(crt);
    free(cert);
    pki_csr_free(c);
  }
}

static void test_issue_rsa_ca(void **state) {
  fx *f = *state;
  pki_csr *c = csr_make(f->cli_ec, &DEV42);
  uint8_t *cert = NULL, serial[16];
  size_t len = 0;
  assert_int_equal(issue_cert(f->rsa, c, &cert, &len, serial), EST_OK);
  gnutls_x509_crt_t crt = crt_import(cert, len);
  check_issued(f, crt, f->rsa_ca, &DEV42, serial, false,
               (long long)gnutls_x509_crt_get_expiration_time(f->rsa_ca), 365);
  assert_int_equal(gnutls_x509_crt_get_signature_algorithm(crt),
                   GNUTLS_SIGN_RSA_SHA256);
  gnutls_x509_crt_deinit(crt);
  free(cert);
  pki_csr_free(c);
}

static void test_issue_p384_ca_and_cap(void **state) {
  fx *f = *state;
  long long now = (long long)time(NULL);
  char p[160], k[160], diag[256];
  gnutls_x509_privkey_t key = ec_key_new(GNUTLS_ECC_CURVE_SECP384R1);
  /* A CA that ends in 10 days: issued certs are cut to it. */
  gnutls_x509_crt_t ca_crt =
      cert_new(key, "CN=P-384 CA", 1, GNUTLS_KEY_KEY_CERT_SIGN, now - DAY,
               now + 10 * DAY, NULL, NULL);
  path_join(p, sizeof p, f, "p384.pem");
  path_join(k, sizeof k, f, "p384.key");
  pem_write(p, &ca_crt, 1);
  key_write(k, key);
  pki_ca *ca = NULL;
  assert_int_equal(pki_ca_load(p, k, 36500, &ca, diag, sizeof diag), EST_OK);
  assert_int_equal(pki_ca_cert_count(ca), 1);

  pki_csr *c = csr_make(f->cli_rsa, &DEV42);
  uint8_t *cert = NULL, serial[16];
  size_t len = 0;
  assert_int_equal(issue_cert(ca, c, &cert, &len, serial), EST_OK);
  gnutls_x509_crt_t crt = crt_import(cert, len);
  check_issued(f, crt, ca_crt, &DEV42, serial, true, now + 10 * DAY,
               36500);
  assert_int_equal(gnutls_x509_crt_get_expiration_time(crt),
                   gnutls_x509_crt_get_expiration_time(ca_crt));
  assert_int_equal(gnutls_x509_crt_get_signature_algorithm(crt),
                   GNUTLS_SIGN_ECDSA_SHA384);
  gnutls_x509_crt_deinit(crt);
  free(cert);
  pki_csr_free(c);
  pki_ca_free(ca);
  gnutls_x509_crt_deinit(ca_crt);
  gnutls_x509_privkey_deinit(key);
}

static void test_issue_extensions_filtered(void **state) {
  fx *f = *state;
  /* Requested basicConstraints/keyUsage are not copied, even if a caller
   * skipped pki_csr_check_profile(). */
  csr_opts o = DEV42;
  o.bc = 1;
  o.ku = GNUTLS_KEY_KEY_CERT_SIGN | GNUTLS_KEY_CRL_SIGN;
  o.challenge = "pw";
  pki_csr *c = csr_make(f->cli_ec, &o);
  uint8_t *cert = NULL, serial[16];
  size_t len = 0;
  assert_int_equal(issue_cert(f->ec, c, &cert, &len, serial), EST_OK);
  gnutls_x509_crt_t crt = crt_import(cert, len);
  check_issued(f, crt, f->ec_ca, &o, serial, false,
               (long long)gnutls_x509_crt_get_expiration_time(f->ec_ca), 365);
  gnutls_x509_crt_deinit(crt);
  free(cert);
  pki_csr_free(c);
}

static void test_issue_empty_subject(void **state) {
  fx *f = *state;
  csr_opts o = DEV42;
  o.dn = NULL;
  pki_csr *c = csr_make(f->cli_ec, &o);
  uint8_t *cert = NULL, serial[16];
  size_t len = 0;
  assert_int_equal(issue_cert(f->ec, c, &cert, &len, serial), EST_OK);
  gnutls_x509_crt_t crt = crt_import(cert, len);
  char v[64];
  size_t vl = sizeof v;
  unsigned crit = 0;
  assert_int_equal(gnutls_x509_crt_get_subject_alt_name(crt, 0, v, &vl, NULL),
                   GNUTLS_SAN_DNSNAME);
  gnutls_datum_t ext;
  assert_int_equal(
      gnutls_x509_crt_get_extension_by_oid2(crt, "2.5.29.17", 0, &ext, &crit),
      0);
  gnutls_free(ext.data);
  assert_int_equal(crit, 1); /* RFC 5280 §4.2.1.6 */
  gnutls_x509_crt_deinit(crt);
  free(cert);
  char *s = pki_csr_subject(c);
  assert_non_null(s);
  assert_string_equal(s, "");
  free(s);
  pki_csr_free(c);

  /* Neither subject nor SAN: nothing to certify. */
  o.ip = NULL;
  o.dns[0] = NULL;
  c = csr_make(f->cli_ec, &o);
  cert = NULL;
  assert_int_equal(issue_cert(f->ec, c, &cert, &len, serial), EST_ERR_BAD_CSR);
  assert_null(cert);
  pki_csr_free(c);
}

/* A CSR with a raw SAN extension value and the DEV42 subject (or none). */
static pki_csr *csr_raw_san(gnutls_x509_privkey_t key, const char *dn,
                            const void *san, size_t san_len) {
  gnutls_x509_crq_t q;
  gnutls_datum_t d;
  const char *e = NULL;
  assert_int_equal(gnutls_x509_crq_init(&q), 0);
  if (dn)
    assert_int_equal(gnutls_x509_crq_set_dn(q, dn, &e), 0);
  assert_int_equal(gnutls_x509_crq_set_key(q, key), 0);
  assert_int_equal(gnutls_x509_crq_set_extension_by_oid(
                       q, "2.5.29.17", san, san_len, 0),
                   0);
  assert_int_equal(gnutls_x509_crq_sign2(q, key, GNUTLS_DIG_SHA256, 0), 0);
  assert_int_equal(gnutls_x509_crq_export2(q, GNUTLS_X509_FMT_DER, &d), 0);
  gnutls_x509_crq_deinit(q);
  pki_csr *c = csr_parse_ok(&d);
  gnutls_free(d.data);
  return c;
}

static void test_issue_odd_san(void **state) {
  fx *f = *state;
  uint8_t *cert = NULL, serial[16];
  size_t len = 0;

  /* An empty SAN is left out. */
  pki_csr *c = csr_raw_san(f->cli_ec, DEV42.dn, "\x30\x00", 2);
  assert_int_equal(issue_cert(f->ec, c, &cert, &len, serial), EST_OK);
  gnutls_x509_crt_t crt = crt_import(cert, len);
  gnutls_datum_t ext;
  unsigned crit;
  assert_int_equal(
      gnutls_x509_crt_get_extension_by_oid2(crt, "2.5.29.17", 0, &ext, &crit),
      GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE);
  gnutls_x509_crt_deinit(crt);
  free(cert);
  cert = NULL;
  pki_csr_free(c);
  /* ... so with no subject there is nothing to certify. */
  c = csr_raw_san(f->cli_ec, NULL, "\x30\x00", 2);
  assert_int_equal(issue_cert(f->ec, c, &cert, &len, serial), EST_ERR_BAD_CSR);
  assert_null(cert);
  pki_csr_free(c);

  /* A SAN that does not parse is refused, and never matches. */
  c = csr_raw_san(f->cli_ec, DEV42.dn, "\x30\x04\x82\x05" "ab", 6);
  assert_int_equal(issue_cert(f->ec, c, &cert, &len, serial), EST_ERR_BAD_CSR);
  assert_null(cert);
  uint8_t *good = NULL;
  size_t good_len = 0;
  crt = issue(f->ec, f->cli_ec, &DEV42, &good, &good_len);
  gnutls_x509_crt_deinit(crt);
  char diag[128] = "";
  assert_int_equal(pki_csr_match_cert(c, good, good_len, diag, sizeof diag),
                   EST_ERR_MALFORMED);
  assert_non_null(strstr(diag, "subjectAltName"));
  free(good);
  pki_csr_free(c);
}

/* An independent verifier: certtool, as a separate process. */
static void test_issue_certtool_verifies(void **state) {
  fx *f = *state;
  /* scripts/deps.sh installs gnutls-bin; its absence is a failure. */
  assert_int_equal(system("command -v certtool >/dev/null 2>&1"), 0);
  char chain[160], cmd[600];
  path_join(chain, sizeof chain, f, "chain.pem");
  struct {
    pki_ca *ca;
    gnutls_x509_crt_t extra; /* intermediate in the chain file, or NULL */
    const char *anchor;
  } cases[] = {
      {f->ec, f->ec_ca, f->root_pem},
      {f->rsa, NULL, f->rsa_pem},
  };
  for (size_t i = 0; i < 2; i++) {
    gnutls_x509_crt_t crt = issue(cases[i].ca, f->cli_rsa, &DEV42, NULL, NULL);
    gnutls_x509_crt_t list[2] = {crt, cases[i].extra};
    pem_write(chain, list, cases[i].extra ? 2 : 1);
    snprintf(cmd, sizeof cmd,
             "certtool --verify --verify-purpose=1.3.6.1.5.5.7.3.2 "
             "--load-ca-certificate '%s' --infile '%s' >/dev/null 2>&1",
             cases[i].anchor, chain);
    assert_int_equal(system(cmd), 0);
    gnutls_x509_crt_deinit(crt);
  }
  /* And it does notice a wrong anchor. */
  snprintf(cmd, sizeof cmd,
           "certtool --verify --load-ca-certificate '%s' --infile '%s' "
           ">/dev/null 2>&1",
           f->mfr_pem, chain);
  assert_int_not_equal(system(cmd), 0);
}

/* ---- server-side keygen --------------------------------------------------- */

static void check_keygen(fx *f, pki_ca *ca, gnutls_x509_crt_t ca_crt,
                         pki_key_type type,
                         gnutls_pk_algorithm_t want_pk, unsigned want_bits,
                         bool corrupt_csr) {
  gnutls_datum_t d = csr_new(f->cli_ec, &DEV42);
  if (corrupt_csr)
    d.data[d.size - 1] ^= 0x01;
  pki_csr *c = csr_parse_ok(&d);
  gnutls_free(d.data);
  uint8_t *p8 = NULL, *cert = NULL, serial[16];
  size_t p8_len = 0, cert_len = 0;
  assert_int_equal(keygen_issue(ca, c, type, &p8, &p8_len, &cert,
                                    &cert_len, serial),
                   EST_OK);
  gnutls_x509_crt_t crt = crt_import(cert, cert_len);
  check_issued(f, crt, ca_crt, &DEV42, serial,
               want_pk == GNUTLS_PK_RSA,
               (long long)gnutls_x509_crt_get_expiration_time(ca_crt), 365);

  /* The PKCS#8 is unencrypted and holds the key of the certificate. */
  gnutls_x509_privkey_t k;
  gnutls_datum_t kd = {p8, (unsigned)p8_len};
  unsigned bits = 0;
  assert_int_equal(gnutls_x509_privkey_init(&k), 0);
  assert_int_equal(gnutls_x509_privkey_import_pkcs8(k, &kd, GNUTLS_X509_FMT_DER,
                                                    NULL, GNUTLS_PKCS_PLAIN),
                   0);
  assert_int_equal(gnutls_x509_privkey_get_pk_algorithm2(k, &bits), want_pk);
  assert_int_equal(bits, want_bits);
  uint8_t a[64], b[64], s[64];
  size_t a_len = sizeof a, b_len = sizeof b, s_len = sizeof s;
  assert_int_equal(
      gnutls_x509_privkey_get_key_id(k, GNUTLS_KEYID_USE_SHA256, a, &a_len), 0);
  assert_int_equal(
      gnutls_x509_crt_get_key_id(crt, GNUTLS_KEYID_USE_SHA256, b, &b_len), 0);
  assert_int_equal(a_len, b_len);
  assert_memory_equal(a, b, a_len);
  assert_int_equal(gnutls_x509_privkey_get_key_id(
                       f->cli_ec, GNUTLS_KEYID_USE_SHA256, s, &s_len),
                   0);
  assert_memory_not_equal(a, s, a_len);
  /* The key really signs for that certificate. */
  assert_int_equal(gnutls_x509_privkey_verify_params(k), 0);
  gnutls_x509_privkey_deinit(k);

  gnutls_x509_crt_deinit(crt);
  free(cert);
  pki_secret_free(p8, p8_len);
  pki_csr_free(c);
}

static void test_keygen(void **state) {
  fx *f = *state;
  check_keygen(f, f->ec, f->ec_ca, PKI_KEY_EC_P256, GNUTLS_PK_ECDSA,
               256, false);
  /* SKG-2: the CSR's signature is ignored. */
  check_keygen(f, f->ec, f->ec_ca, PKI_KEY_EC_P256, GNUTLS_PK_ECDSA,
               256, true);
  check_keygen(f, f->rsa, f->rsa_ca, PKI_KEY_RSA_2048,
               GNUTLS_PK_RSA, 2048, false);
  check_keygen(f, f->ec, f->ec_ca, PKI_KEY_RSA_3072, GNUTLS_PK_RSA,
               3072, false);

  pki_csr *c = csr_make(f->cli_ec, &DEV42);
  uint8_t *p8 = NULL, *cert = NULL;
  size_t p8_len = 0, cert_len = 0;
  assert_int_equal(keygen_issue(f->ec, c, PKI_KEY__MAX, &p8, &p8_len, &cert,
                                    &cert_len, NULL),
                   EST_ERR_INVALID);
  assert_null(p8);
  assert_null(cert);
  pki_csr_free(c);
}

/* ---- PKCS#7 ------------------------------------------------------------- */

static void test_p7_certs_only(void **state) {
  fx *f = *state;
  uint8_t *cert = NULL, *p7 = NULL;
  size_t len = 0, p7_len = 0;
  gnutls_x509_crt_t crt = issue(f->ec, f->cli_ec, &DEV42, &cert, &len);
  gnutls_x509_crt_deinit(crt);
  assert_int_equal(pki_p7_certs_only(cert, len, &p7, &p7_len), EST_OK);
  gnutls_pkcs7_t pk;
  gnutls_datum_t d = {p7, (unsigned)p7_len}, got;
  assert_int_equal(gnutls_pkcs7_init(&pk), 0);
  assert_int_equal(gnutls_pkcs7_import(pk, &d, GNUTLS_X509_FMT_DER), 0);
  assert_int_equal(gnutls_pkcs7_get_crt_count(pk), 1);
  assert_int_equal(gnutls_pkcs7_get_crt_raw2(pk, 0, &got), 0);
  assert_int_equal(got.size, len);
  assert_memory_equal(got.data, cert, len);
  gnutls_free(got.data);
  gnutls_pkcs7_deinit(pk);
  free(p7);
  p7 = NULL;
  assert_int_equal(pki_p7_certs_only(cert, len / 2, &p7, &p7_len),
                   EST_ERR_MALFORMED);
  assert_null(p7);
  assert_int_equal(pki_p7_certs_only(NULL, 0, &p7, &p7_len), EST_ERR_INVALID);
  free(cert);
}

/* ---- a CA known by its certificates (registrar, docs/decisions.md §19) ---- */

/* A DER PKCS#7 certs-only of @p crts made by GnuTLS, not by pki.c (free it
 * with gnutls_free). */
static gnutls_datum_t p7_gnutls(gnutls_x509_crt_t *crts, size_t n) {
  gnutls_pkcs7_t pk;
  gnutls_datum_t d;
  assert_int_equal(gnutls_pkcs7_init(&pk), 0);
  for (size_t i = 0; i < n; i++)
    assert_int_equal(gnutls_pkcs7_set_crt(pk, crts[i]), 0);
  assert_int_equal(gnutls_pkcs7_export2(pk, GNUTLS_X509_FMT_DER, &d), 0);
  gnutls_pkcs7_deinit(pk);
  return d;
}

static pki_ca *ca_from_p7_ok(const uint8_t *p7, size_t len) {
  pki_ca *ca = NULL;
  char diag[256] = "x";
  assert_int_equal(pki_ca_from_p7(p7, len, &ca, diag, sizeof diag), EST_OK);
  assert_non_null(ca);
  assert_string_equal(diag, "");
  return ca;
}

static void expect_from_p7(const uint8_t *p7, size_t len, est_err want) {
  pki_ca *ca = (pki_ca *)(uintptr_t)1;
  char diag[256] = "";
  assert_int_equal(pki_ca_from_p7(p7, len, &ca, diag, sizeof diag), want);
  assert_null(ca);
  assert_true(strlen(diag) > 0);
}

/* The real CA's cacerts make a CA that classifies and tells what it
 * issued exactly as the real one, answers crts with the very bytes, and
 * signs nothing. */
static void test_ca_from_p7(void **state) {
  fx *f = *state;
  long long now = (long long)time(NULL);
  const uint8_t *p7 = NULL, *got = NULL;
  size_t p7_len = 0, got_len = 0;
  pki_ca_certs_p7(f->ec, &p7, &p7_len);
  pki_ca *reg = ca_from_p7_ok(p7, p7_len);
  pki_ca_certs_p7(reg, &got, &got_len);
  assert_int_equal(got_len, p7_len);
  assert_memory_equal(got, p7, p7_len);
  assert_ptr_not_equal(got, p7); /* a copy: the upstream's answer is freed */
  assert_int_equal(pki_ca_cert_count(reg), 2);
  assert_false(pki_ca_can_sign(reg));
  assert_true(pki_ca_can_sign(f->ec));
  assert_true(pki_ca_can_sign(f->rsa));
  assert_false(pki_ca_can_sign(NULL));
  /* The issuing CA is the one under the root, whatever order DER gave
   * the SET OF (est_ca_not_after_seconds, crts with 287). */
  const uint8_t *want = NULL, *issuing = NULL;
  size_t want_len = 0, issuing_len = 0;
  pki_ca_cert_der(f->ec, &want, &want_len);
  pki_ca_cert_der(reg, &issuing, &issuing_len);
  assert_int_equal(issuing_len, want_len);
  assert_memory_equal(issuing, want, want_len);

  /* An LDevID of the real CA is one of this CA's; others are not. */
  uint8_t *ld_der = NULL, *rsa_der = NULL;
  size_t ld_len = 0, rsa_len = 0;
  gnutls_x509_crt_t ld = issue(f->ec, f->cli_ec, &DEV42, &ld_der, &ld_len);
  gnutls_x509_crt_t other = issue(f->rsa, f->cli_ec, &DEV42, &rsa_der, &rsa_len);
  gnutls_x509_crt_t chains[][3] = {{ld, NULL, NULL}, {ld, f->ec_ca, NULL},
                                   {ld, f->ec_ca, f->root}};
  for (size_t n = 1; n <= 3; n++) {
    gnutls_datum_t d[3];
    const uint8_t *der[3];
    size_t len[3];
    for (size_t i = 0; i < n; i++) {
      d[i] = crt_der(chains[n - 1][i]);
      der[i] = d[i].data;
      len[i] = d[i].size;
    }
    pki_client_class cls = (pki_client_class)99;
    pki_client_status st = (pki_client_status)99;
    assert_int_equal(pki_client_classify(reg, NULL, der, len, n, now, 0, &cls, &st), EST_OK);
    assert_int_equal(cls, PKI_CLIENT_LDEVID);
    assert_int_equal(st, PKI_STATUS_VALID);
    for (size_t i = 0; i < n; i++)
      gnutls_free(d[i].data);
  }
  gnutls_datum_t idev = crt_der(f->idev);
  const uint8_t *one[1] = {idev.data};
  size_t one_len[1] = {idev.size};
  pki_client_class cls = (pki_client_class)99;
  assert_int_equal(pki_client_classify(reg, NULL, one, one_len, 1, now, 0, &cls, NULL),
                   EST_OK);
  assert_int_equal(cls, PKI_CLIENT_UNKNOWN);
  gnutls_free(idev.data);
  assert_true(pki_ca_issued(reg, ld_der, ld_len, now));
  assert_true(pki_ca_issued(f->ec, ld_der, ld_len, now));
  assert_false(pki_ca_issued(reg, rsa_der, rsa_len, now));
  assert_false(pki_ca_issued(reg, ld_der, ld_len / 2, now));

  /* It signs nothing: no certificate, key or CRL comes out. */
  pki_csr *c = csr_make(f->cli_ec, &DEV42);
  pki_issued is;
  memset(&is, 0xa5, sizeof is);
  assert_int_equal(pki_issue(reg, c, &is), EST_ERR_CONFIG);
  assert_null(is.der);
  assert_int_equal(is.der_len, 0);
  uint8_t *p8 = (uint8_t *)(uintptr_t)1, *cert = NULL;
  size_t p8_len = 1, cert_len = 0;
  assert_int_equal(keygen_issue(reg, c, PKI_KEY_EC_P256, &p8, &p8_len, &cert, &cert_len,
                                NULL),
                   EST_ERR_CONFIG);
  assert_null(p8);
  assert_int_equal(p8_len, 0);
  assert_null(cert);
  pki_crl_entry e = {{0x01}, 1, now, 0};
  uint8_t *crl = NULL;
  size_t crl_len = 0;
  assert_int_equal(pki_crl_sign(reg, &e, 1, 1, now, now + DAY, &crl, &crl_len),
                   EST_ERR_CONFIG);
  assert_null(crl);
  pki_csr_free(c);

  /* Shared like any CA (a job holds a reference). */
  assert_ptr_equal(pki_ca_ref(reg), reg);
  pki_ca_free(reg);
  assert_true(pki_ca_issued(reg, ld_der, ld_len, now));
  pki_ca_free(reg);

  /* One self-signed CA alone, and a PKCS#7 GnuTLS wrote rather than pki.c. */
  pki_ca_certs_p7(f->rsa, &p7, &p7_len);
  reg = ca_from_p7_ok(p7, p7_len);
  assert_int_equal(pki_ca_cert_count(reg), 1);
  assert_true(pki_ca_issued(reg, rsa_der, rsa_len, now));
  assert_false(pki_ca_issued(reg, ld_der, ld_len, now));
  pki_ca_free(reg);
  /* The chain with the end-entity certificate in it: only the CAs are the
   * bag, so the leaf does not make its own key a CA. */
  gnutls_x509_crt_t mixed[3] = {ld, f->ec_ca, f->root};
  gnutls_datum_t gd = p7_gnutls(mixed, 3);
  reg = ca_from_p7_ok(gd.data, gd.size);
  assert_int_equal(pki_ca_cert_count(reg), 2);
  assert_true(pki_ca_issued(reg, ld_der, ld_len, now));
  assert_false(pki_ca_issued(reg, rsa_der, rsa_len, now));
  pki_ca_free(reg);
  gnutls_free(gd.data);

  gnutls_x509_crt_deinit(ld);
  gnutls_x509_crt_deinit(other);
  free(ld_der);
  free(rsa_der);
}

/* What is not a cacerts answer: malformed, nothing allocated (the
 * sanitizer trees see any leak). */
static void test_ca_from_p7_errors(void **state) {
  fx *f = *state;
  const uint8_t *p7 = NULL;
  size_t p7_len = 0;
  pki_ca_certs_p7(f->ec, &p7, &p7_len);

  /* Only an end-entity certificate: no CA to be. */
  uint8_t *ld_der = NULL, *ee = NULL;
  size_t ld_len = 0, ee_len = 0;
  gnutls_x509_crt_t ld = issue(f->ec, f->cli_ec, &DEV42, &ld_der, &ld_len);
  assert_int_equal(pki_p7_certs_only(ld_der, ld_len, &ee, &ee_len), EST_OK);
  expect_from_p7(ee, ee_len, EST_ERR_MALFORMED);
  free(ee);
  /* The certificate itself, not wrapped. */
  expect_from_p7(ld_der, ld_len, EST_ERR_MALFORMED);

  /* Garbage, empty, truncated anywhere, and over the cap. */
  static const uint8_t junk[] = "not a PKCS#7 at all";
  expect_from_p7(junk, sizeof junk, EST_ERR_MALFORMED);
  static const uint8_t seq[] = {0x30, 0x03, 0x02, 0x01, 0x00};
  expect_from_p7(seq, sizeof seq, EST_ERR_MALFORMED);
  expect_from_p7(p7, 0, EST_ERR_MALFORMED);
  expect_from_p7(NULL, 0, EST_ERR_MALFORMED);
  expect_from_p7(NULL, 100, EST_ERR_MALFORMED);
  const size_t cuts[] = {1, 2, 10, 28, p7_len / 2, p7_len - 1};
  for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++)
    expect_from_p7(p7, cuts[i], EST_ERR_MALFORMED);
  uint8_t *big = calloc(1, 65537);
  assert_non_null(big);
  memcpy(big, p7, p7_len);
  expect_from_p7(big, 65537, EST_ERR_MALFORMED);
  free(big);
  /* More certificates than a cacerts answer has (16). */
  gnutls_x509_crt_t many[17];
  for (size_t i = 0; i < 17; i++)
    many[i] = f->root;
  gnutls_datum_t d = p7_gnutls(many, 17);
  expect_from_p7(d.data, d.size, EST_ERR_MALFORMED);
  gnutls_free(d.data);
  d = p7_gnutls(many, 16);
  pki_ca *ca = ca_from_p7_ok(d.data, d.size);
  pki_ca_free(ca);
  gnutls_free(d.data);

  /* No out: invalid; no diag buffer is fine. */
  assert_int_equal(pki_ca_from_p7(p7, p7_len, NULL, NULL, 0), EST_ERR_INVALID);
  assert_int_equal(pki_ca_from_p7(junk, sizeof junk, &ca, NULL, 0), EST_ERR_MALFORMED);
  assert_null(ca);
  gnutls_x509_crt_deinit(ld);
  free(ld_der);
}

static void expect_end_entity(const uint8_t *p7, size_t len, est_err want) {
  uint8_t *cert = (uint8_t *)(uintptr_t)1;
  size_t cert_len = 1;
  assert_int_equal(pki_p7_end_entity(p7, len, &cert, &cert_len), want);
  assert_null(cert);
  assert_int_equal(cert_len, 0);
}

/* The one certificate of an upstream's simpleenroll answer. */
static void test_p7_end_entity(void **state) {
  fx *f = *state;
  uint8_t *ld_der = NULL, *p7 = NULL, *cert = NULL;
  size_t ld_len = 0, p7_len = 0, cert_len = 0;
  gnutls_x509_crt_t ld = issue(f->ec, f->cli_ec, &DEV42, &ld_der, &ld_len);
  assert_int_equal(pki_p7_certs_only(ld_der, ld_len, &p7, &p7_len), EST_OK);
  assert_int_equal(pki_p7_end_entity(p7, p7_len, &cert, &cert_len), EST_OK);
  assert_int_equal(cert_len, ld_len);
  assert_memory_equal(cert, ld_der, ld_len);
  free(cert);
  free(p7);

  /* With its chain (RFC 7030 §4.2.3), in any order. */
  gnutls_x509_crt_t with_chain[3] = {f->root, ld, f->ec_ca};
  gnutls_datum_t d = p7_gnutls(with_chain, 3);
  assert_int_equal(pki_p7_end_entity(d.data, d.size, &cert, &cert_len), EST_OK);
  assert_int_equal(cert_len, ld_len);
  assert_memory_equal(cert, ld_der, ld_len);
  free(cert);
  gnutls_free(d.data);

  /* The CA's own cacerts: no end entity. */
  const uint8_t *ca_p7 = NULL;
  size_t ca_p7_len = 0;
  pki_ca_certs_p7(f->ec, &ca_p7, &ca_p7_len);
  expect_end_entity(ca_p7, ca_p7_len, EST_ERR_MALFORMED);
  pki_ca_certs_p7(f->rsa, &ca_p7, &ca_p7_len);
  expect_end_entity(ca_p7, ca_p7_len, EST_ERR_MALFORMED);

  /* Two end-entity certificates: which one was issued is not known. */
  gnutls_x509_crt_t other = issue(f->ec, f->cli_ec2, &DEV42, NULL, NULL);
  gnutls_x509_crt_t two[3] = {ld, other, f->ec_ca};
  d = p7_gnutls(two, 2);
  expect_end_entity(d.data, d.size, EST_ERR_MALFORMED);
  gnutls_free(d.data);
  d = p7_gnutls(two, 3);
  expect_end_entity(d.data, d.size, EST_ERR_MALFORMED);
  gnutls_free(d.data);
  /* An IDevID without basicConstraints counts as an end entity too. */
  gnutls_x509_crt_t idev_ld[2] = {f->idev, ld};
  d = p7_gnutls(idev_ld, 2);
  expect_end_entity(d.data, d.size, EST_ERR_MALFORMED);
  gnutls_free(d.data);

  /* Not PKCS#7. */
  static const uint8_t junk[] = {0x30, 0x03, 0x02, 0x01, 0x00};
  expect_end_entity(junk, sizeof junk, EST_ERR_MALFORMED);
  expect_end_entity(ld_der, ld_len, EST_ERR_MALFORMED);
  expect_end_entity(NULL, 0, EST_ERR_MALFORMED);
  gnutls_x509_crt_deinit(ld);
  gnutls_x509_crt_deinit(other);
  free(ld_der);
}

static void expect_issued_from(const uint8_t *der, size_t len, est_err want) {
  pki_issued is;
  memset(&is, 0xa5, sizeof is);
  assert_int_equal(pki_issued_from_der(der, len, &is), want);
  assert_null(is.der);
  assert_int_equal(is.der_len, 0);
  pki_issued_clear(&is);
}

/* A certificate another CA issued, as the store records it. */
static void test_issued_from_der(void **state) {
  fx *f = *state;
  pki_csr *c = csr_make(f->cli_ec, &DEV42);
  pki_issued want, got;
  assert_int_equal(pki_issue(f->ec, c, &want), EST_OK);
  memset(&got, 0xa5, sizeof got);
  assert_int_equal(pki_issued_from_der(want.der, want.der_len, &got), EST_OK);
  assert_non_null(got.der);
  assert_ptr_not_equal(got.der, want.der);
  assert_int_equal(got.der_len, want.der_len);
  assert_memory_equal(got.der, want.der, want.der_len);
  assert_int_equal(got.not_before, want.not_before);
  assert_int_equal(got.not_after, want.not_after);
  const uint8_t zero[PKI_SERIAL_LEN] = {0};
  assert_memory_equal(got.serial, zero, PKI_SERIAL_LEN);
  char hex_want[PKI_SERIAL_HEX_MAX], hex_got[PKI_SERIAL_HEX_MAX];
  assert_int_equal(pki_cert_serial_hex(got.der, got.der_len, hex_got, sizeof hex_got), EST_OK);
  for (size_t i = 0; i < PKI_SERIAL_LEN; i++)
    snprintf(hex_want + 2 * i, 3, "%02x", want.serial[i]);
  assert_string_equal(hex_got, hex_want);
  pki_issued_clear(&got);

  /* Someone else's CA: the IDevID's dates. */
  gnutls_datum_t idev = crt_der(f->idev);
  assert_int_equal(pki_issued_from_der(idev.data, idev.size, &got), EST_OK);
  assert_int_equal(got.not_before, (long long)gnutls_x509_crt_get_activation_time(f->idev));
  assert_int_equal(got.not_after, (long long)gnutls_x509_crt_get_expiration_time(f->idev));
  pki_issued_clear(&got);
  gnutls_free(idev.data);

  static const uint8_t junk[] = {0x30, 0x03, 0x02, 0x01, 0x00};
  expect_issued_from(junk, sizeof junk, EST_ERR_MALFORMED);
  expect_issued_from(want.der, want.der_len / 2, EST_ERR_MALFORMED);
  expect_issued_from(want.der, want.der_len - 1, EST_ERR_MALFORMED);
  expect_issued_from(want.der, 0, EST_ERR_MALFORMED);
  expect_issued_from(NULL, 0, EST_ERR_MALFORMED);
  expect_issued_from(want.der, PKI_CERT_MAX + 1, EST_ERR_MALFORMED);
  /* A PKCS#7 is not a certificate. */
  const uint8_t *p7 = NULL;
  size_t p7_len = 0;
  pki_ca_certs_p7(f->ec, &p7, &p7_len);
  expect_issued_from(p7, p7_len, EST_ERR_MALFORMED);
  pki_issued_clear(&want);
  pki_csr_free(c);
}

/* Whether the upstream's certificate is for what was asked: the CSR's
 * key, or the key it generated. */
/* docs/decisions.md §20: which keys are URIs, and a URI as logged. */
static void test_key_uri(void **state) {
  (void)state;
  char out[128];
  assert_true(pki_key_is_uri("pkcs11:token=a;object=b;type=private"));
  assert_false(pki_key_is_uri("ca.key"));
  assert_false(pki_key_is_uri("/etc/pkcs11:x"));
  assert_false(pki_key_is_uri(NULL));
  pki_uri_for_log("pkcs11:token=a;object=b;type=private", out, sizeof out);
  assert_string_equal(out, "pkcs11:token=a;object=b;type=private");
  pki_uri_for_log("pkcs11:token=a;object=b?pin-value=738291", out, sizeof out);
  assert_string_equal(out, "pkcs11:token=a;object=b?pin-value=(hidden)");
  pki_uri_for_log("pkcs11:token=a?module-name=x&pin-value=738291&x=y", out, sizeof out);
  assert_string_equal(out, "pkcs11:token=a?module-name=x&pin-value=(hidden)&x=y");
  pki_uri_for_log("pkcs11:pin-value=738291;token=a", out, sizeof out);
  assert_null(strstr(out, "738291"));
  /* Cut short, never a part of the PIN. */
  pki_uri_for_log("pkcs11:token=a?pin-value=738291", out, 24);
  assert_null(strstr(out, "7382"));
  assert_true(strlen(out) < 24);
  pki_uri_for_log(NULL, out, sizeof out);
  assert_string_equal(out, "");
}

static void test_cert_key_is(void **state) {
  fx *f = *state;
  static const uint8_t junk[] = {0x30, 0x03, 0x02, 0x01, 0x00};
  pki_csr *mine = csr_make(f->cli_ec, &DEV42);
  pki_csr *theirs = csr_make(f->cli_ec2, &DEV42);
  pki_csr *rsa = csr_make(f->cli_rsa, &DEV42);
  uint8_t *cert = NULL, *rsa_cert = NULL;
  size_t cert_len = 0, rsa_len = 0;
  assert_int_equal(issue_cert(f->ec, mine, &cert, &cert_len, NULL), EST_OK);
  assert_int_equal(issue_cert(f->rsa, rsa, &rsa_cert, &rsa_len, NULL), EST_OK);
  assert_true(pki_cert_key_is_csr(cert, cert_len, mine));
  assert_false(pki_cert_key_is_csr(cert, cert_len, theirs));
  assert_false(pki_cert_key_is_csr(cert, cert_len, rsa));
  assert_true(pki_cert_key_is_csr(rsa_cert, rsa_len, rsa));
  assert_false(pki_cert_key_is_csr(rsa_cert, rsa_len, mine));
  assert_false(pki_cert_key_is_csr(cert, cert_len, NULL));
  assert_false(pki_cert_key_is_csr(junk, sizeof junk, mine));
  assert_false(pki_cert_key_is_csr(cert, cert_len / 2, mine));
  assert_false(pki_cert_key_is_csr(NULL, 0, mine));

  /* Server keygen: the PKCS#8 and its certificate. */
  uint8_t *p8 = NULL, *kcert = NULL;
  size_t p8_len = 0, kcert_len = 0;
  assert_int_equal(keygen_issue(f->ec, mine, PKI_KEY_EC_P256, &p8, &p8_len, &kcert,
                                &kcert_len, NULL),
                   EST_OK);
  assert_true(pki_cert_key_is(kcert, kcert_len, p8, p8_len));
  /* Not the CSR's key: keygen ignores it (SKG-2). */
  assert_false(pki_cert_key_is_csr(kcert, kcert_len, mine));
  /* Another key, with that certificate or another. */
  gnutls_datum_t other;
  assert_int_equal(gnutls_x509_privkey_export2_pkcs8(f->cli_ec2, GNUTLS_X509_FMT_DER, NULL,
                                                     GNUTLS_PKCS_PLAIN, &other),
                   0);
  assert_false(pki_cert_key_is(kcert, kcert_len, other.data, other.size));
  assert_false(pki_cert_key_is(cert, cert_len, p8, p8_len));
  /* A key the device made itself, exported as PKCS#8: its cert matches. */
  gnutls_datum_t own;
  assert_int_equal(gnutls_x509_privkey_export2_pkcs8(f->cli_ec, GNUTLS_X509_FMT_DER, NULL,
                                                     GNUTLS_PKCS_PLAIN, &own),
                   0);
  assert_true(pki_cert_key_is(cert, cert_len, own.data, own.size));
  assert_false(pki_cert_key_is(rsa_cert, rsa_len, own.data, own.size));
  gnutls_datum_t rsa_p8;
  assert_int_equal(gnutls_x509_privkey_export2_pkcs8(f->cli_rsa, GNUTLS_X509_FMT_DER, NULL,
                                                     GNUTLS_PKCS_PLAIN, &rsa_p8),
                   0);
  assert_true(pki_cert_key_is(rsa_cert, rsa_len, rsa_p8.data, rsa_p8.size));
  assert_false(pki_cert_key_is(cert, cert_len, rsa_p8.data, rsa_p8.size));
  /* An encrypted PKCS#8 is not a key we can read. */
  gnutls_datum_t enc;
  assert_int_equal(gnutls_x509_privkey_export2_pkcs8(f->cli_ec, GNUTLS_X509_FMT_DER, "secret",
                                                     GNUTLS_PKCS_PBES2_AES_256, &enc),
                   0);
  assert_false(pki_cert_key_is(cert, cert_len, enc.data, enc.size));
  /* Garbage on either side. */
  assert_false(pki_cert_key_is(kcert, kcert_len, junk, sizeof junk));
  assert_false(pki_cert_key_is(kcert, kcert_len, p8, p8_len - 1));
  assert_false(pki_cert_key_is(kcert, kcert_len, NULL, 0));
  assert_false(pki_cert_key_is(kcert, kcert_len, p8, 0));
  assert_false(pki_cert_key_is(junk, sizeof junk, p8, p8_len));
  assert_false(pki_cert_key_is(kcert, kcert_len / 2, p8, p8_len));
  assert_false(pki_cert_key_is(NULL, 0, p8, p8_len));
  gnutls_free(enc.data);
  gnutls_free(rsa_p8.data);
  gnutls_free(own.data);
  gnutls_free(other.data);
  pki_secret_free(p8, p8_len);
  free(kcert);
  free(cert);
  free(rsa_cert);
  pki_csr_free(mine);
  pki_csr_free(theirs);
  pki_csr_free(rsa);
}

/* ---- classification ------------------------------------------------------ */

static pki_client_class classify_ex(const fx *f, const pki_trust *idevid,
                                    gnutls_x509_crt_t *chain, size_t n,
                                    long long now, unsigned flags,
                                    pki_client_status *st) {
  gnutls_datum_t d[4];
  const uint8_t *der[4];
  size_t len[4];
  for (size_t i = 0; i < n; i++) {
    d[i] = crt_der(chain[i]);
    der[i] = d[i].data;
    len[i] = d[i].size;
  }
  pki_client_class cls = (pki_client_class)99;
  if (st)
    *st = (pki_client_status)99;
  assert_int_equal(
      pki_client_classify(f->ec, idevid, der, len, n, now, flags, &cls, st),
      EST_OK);
  for (size_t i = 0; i < n; i++)
    gnutls_free(d[i].data);
  return cls;
}

static pki_client_class classify(const fx *f, const pki_trust *idevid,
                                 gnutls_x509_crt_t *chain, size_t n,
                                 long long now) {
  return classify_ex(f, idevid, chain, n, now, 0, NULL);
}

/* Class and status in one go, for the table-like date tests. */
static void expect_class(const fx *f, const pki_trust *idevid,
                         gnutls_x509_crt_t *chain, size_t n, long long now,
                         unsigned flags, pki_client_class want_cls,
                         pki_client_status want_st) {
  pki_client_status st;
  assert_int_equal(classify_ex(f, idevid, chain, n, now, flags, &st), want_cls);
  assert_int_equal(st, want_st);
}

static void test_classify(void **state) {
  fx *f = *state;
  long long now = (long long)time(NULL);
  char diag[256] = "";
  pki_trust *idev = NULL;
  assert_int_equal(pki_trust_load(f->mfr_pem, &idev, diag, sizeof diag),
                   EST_OK);

  gnutls_x509_crt_t ld = issue(f->ec, f->cli_ec, &DEV42, NULL, NULL);
  gnutls_x509_crt_t chain[3] = {ld, f->ec_ca, f->root};
  assert_int_equal(classify(f, idev, chain, 1, now), PKI_CLIENT_LDEVID);
  assert_int_equal(classify(f, idev, chain, 2, now), PKI_CLIENT_LDEVID);
  assert_int_equal(classify(f, idev, chain, 3, now), PKI_CLIENT_LDEVID);
  assert_int_equal(classify(f, NULL, chain, 1, now), PKI_CLIENT_LDEVID);
  /* Expired or not yet valid at @now. */
  assert_int_equal(classify(f, idev, chain, 1, now + 400 * DAY),
                   PKI_CLIENT_UNKNOWN);
  assert_int_equal(classify(f, idev, chain, 1, now - 400 * DAY),
                   PKI_CLIENT_UNKNOWN);

  assert_int_equal(classify(f, idev, &f->idev, 1, now), PKI_CLIENT_IDEVID);
  assert_int_equal(classify(f, NULL, &f->idev, 1, now), PKI_CLIENT_UNKNOWN);
  gnutls_x509_crt_t ichain[2] = {f->idev, f->mfr};
  assert_int_equal(classify(f, idev, ichain, 2, now), PKI_CLIENT_IDEVID);

  /* An RSA CA leaf is neither ours (the EC CA) nor a manufacturer's. */
  gnutls_x509_crt_t other = issue(f->rsa, f->cli_ec, &DEV42, NULL, NULL);
  assert_int_equal(classify(f, idev, &other, 1, now), PKI_CLIENT_UNKNOWN);
  /* A self-signed leaf with our CA's name is not ours. */
  gnutls_x509_crt_t fake =
      cert_new(f->cli_ec, "CN=dev42,O=Example", 0, GNUTLS_KEY_DIGITAL_SIGNATURE,
               now - DAY, now + DAY, NULL, NULL);
  assert_int_equal(classify(f, idev, &fake, 1, now), PKI_CLIENT_UNKNOWN);

  /* A leaf without clientAuth among its EKUs. */
  gnutls_x509_crt_t srv;
  {
    const char *e = NULL;
    uint8_t sn[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    assert_int_equal(gnutls_x509_crt_init(&srv), 0);
    assert_int_equal(gnutls_x509_crt_set_dn(srv, "CN=server", &e), 0);
    assert_int_equal(gnutls_x509_crt_set_key(srv, f->cli_ec2), 0);
    assert_int_equal(gnutls_x509_crt_set_version(srv, 3), 0);
    assert_int_equal(gnutls_x509_crt_set_serial(srv, sn, sizeof sn), 0);
    assert_int_equal(gnutls_x509_crt_set_activation_time(srv, now - DAY), 0);
    assert_int_equal(gnutls_x509_crt_set_expiration_time(srv, now + DAY), 0);
    assert_int_equal(gnutls_x509_crt_set_key_purpose_oid(
                         srv, GNUTLS_KP_TLS_WWW_SERVER, 0),
                     0);
    assert_int_equal(gnutls_x509_crt_sign2(srv, f->mfr, f->mfr_key,
                                           GNUTLS_DIG_SHA256, 0),
                     0);
  }
  assert_int_equal(classify(f, idev, &srv, 1, now), PKI_CLIENT_UNKNOWN);

  /* Garbage → MALFORMED; bad arguments. */
  const uint8_t junk[] = {0x30, 0x03, 0x02, 0x01, 0x00};
  const uint8_t *der[1] = {junk};
  size_t len[1] = {sizeof junk};
  pki_client_class cls;
  pki_client_status st;
  assert_int_equal(
      pki_client_classify(f->ec, idev, der, len, 1, now, 0, &cls, &st),
      EST_ERR_MALFORMED);
  assert_int_equal(cls, PKI_CLIENT_UNKNOWN);
  assert_int_equal(st, PKI_STATUS_UNTRUSTED);
  assert_int_equal(
      pki_client_classify(f->ec, idev, der, len, 0, now, 0, &cls, &st),
      EST_ERR_INVALID);
  assert_int_equal(
      pki_client_classify(f->ec, idev, der, len, 1, now, 0, NULL, &st),
      EST_ERR_INVALID);

  gnutls_x509_crt_deinit(srv);
  gnutls_x509_crt_deinit(fake);
  gnutls_x509_crt_deinit(other);
  gnutls_x509_crt_deinit(ld);
  pki_trust_free(idev);
}

/* AUTH-5 (RFC 9148 §3, docs/decisions.md §5): only an expired IDevID may be
 * accepted, and only with the flag; trust is decided before time. */
static void test_classify_dates(void **state) {
  fx *f = *state;
  const unsigned ok = PKI_CLASSIFY_IDEVID_EXPIRED_OK;
  long long now = (long long)time(NULL);
  char diag[256] = "";
  pki_trust *idev = NULL;
  assert_int_equal(pki_trust_load(f->mfr_pem, &idev, diag, sizeof diag),
                   EST_OK);
  const unsigned ku = GNUTLS_KEY_DIGITAL_SIGNATURE;
  const unsigned ca_ku = GNUTLS_KEY_KEY_CERT_SIGN | GNUTLS_KEY_CRL_SIGN;

  /* In time: VALID, with or without the flag. */
  expect_class(f, idev, &f->idev, 1, now, 0, PKI_CLIENT_IDEVID,
               PKI_STATUS_VALID);
  expect_class(f, idev, &f->idev, 1, now, ok, PKI_CLIENT_IDEVID,
               PKI_STATUS_VALID);

  /* An expired IDevID: refused by default, an IDevID with the flag. */
  gnutls_x509_crt_t old_idev =
      cert_new(f->idev_key, "CN=acme-0002,serialNumber=0002", -1, 0,
               now - 3000 * DAY, now - DAY, f->mfr, f->mfr_key);
  expect_class(f, idev, &old_idev, 1, now, 0, PKI_CLIENT_UNKNOWN,
               PKI_STATUS_IDEVID_EXPIRED);
  expect_class(f, idev, &old_idev, 1, now, ok, PKI_CLIENT_IDEVID,
               PKI_STATUS_IDEVID_EXPIRED);
  /* Without manufacturer anchors it is nobody's. */
  expect_class(f, NULL, &old_idev, 1, now, ok, PKI_CLIENT_UNKNOWN,
               PKI_STATUS_UNTRUSTED);

  /* An expired LDevID is never taken, flag or not. */
  gnutls_x509_crt_t ld = issue(f->ec, f->cli_ec, &DEV42, NULL, NULL);
  gnutls_x509_crt_t old_ld = cert_new(f->cli_ec, "CN=dev42,O=Example", 0, ku,
                                      now - 800 * DAY, now - DAY, f->ec_ca,
                                      f->ec_key);
  expect_class(f, idev, &old_ld, 1, now, 0, PKI_CLIENT_UNKNOWN,
               PKI_STATUS_LDEVID_EXPIRED);
  expect_class(f, idev, &old_ld, 1, now, ok, PKI_CLIENT_UNKNOWN,
               PKI_STATUS_LDEVID_EXPIRED);
  expect_class(f, idev, &ld, 1, now + 400 * DAY, ok, PKI_CLIENT_UNKNOWN,
               PKI_STATUS_LDEVID_EXPIRED);

  /* Not yet valid: never, for either class. */
  gnutls_x509_crt_t new_idev =
      cert_new(f->idev_key, "CN=acme-0003,serialNumber=0003", -1, 0,
               now + DAY, now + 3000 * DAY, f->mfr, f->mfr_key);
  expect_class(f, idev, &new_idev, 1, now, 0, PKI_CLIENT_UNKNOWN,
               PKI_STATUS_NOT_YET_VALID);
  expect_class(f, idev, &new_idev, 1, now, ok, PKI_CLIENT_UNKNOWN,
               PKI_STATUS_NOT_YET_VALID);
  expect_class(f, idev, &ld, 1, now - 400 * DAY, ok, PKI_CLIENT_UNKNOWN,
               PKI_STATUS_NOT_YET_VALID);

  /* An expired intermediate the peer sends counts like an expired leaf. */
  gnutls_x509_privkey_t sub_key = ec_key_new(GNUTLS_ECC_CURVE_SECP256R1);
  gnutls_x509_crt_t sub =
      cert_new(sub_key, "CN=Manufacturer Sub CA,O=Acme", 1, ca_ku,
               now - 3000 * DAY, now - DAY, f->mfr, f->mfr_key);
  gnutls_x509_crt_t sub_leaf =
      cert_new(f->cli_ec2, "CN=acme-0004,serialNumber=0004", -1, 0,
               now - 2000 * DAY, now + 3000 * DAY, sub, sub_key);
  gnutls_x509_crt_t ichain[2] = {sub_leaf, sub};
  expect_class(f, idev, ichain, 2, now, 0, PKI_CLIENT_UNKNOWN,
               PKI_STATUS_IDEVID_EXPIRED);
  expect_class(f, idev, ichain, 2, now, ok, PKI_CLIENT_IDEVID,
               PKI_STATUS_IDEVID_EXPIRED);
  /* Our issuing CA's name and key, but an expired copy of it. */
  gnutls_x509_crt_t old_ca =
      cert_new(f->ec_key, "CN=Test Issuing CA,O=Example", 1, ca_ku,
               now - 3000 * DAY, now - DAY, f->root, f->root_key);
  gnutls_x509_crt_t lchain[2] = {ld, old_ca};
  expect_class(f, idev, lchain, 2, now, ok, PKI_CLIENT_UNKNOWN,
               PKI_STATUS_LDEVID_EXPIRED);
  /* Expired and not yet valid at once: not yet valid wins (never taken). */
  gnutls_x509_crt_t mixed[2] = {new_idev, f->mfr};
  gnutls_x509_crt_t old_mfr =
      cert_new(f->mfr_key, "CN=Manufacturer CA,O=Acme", 1, ca_ku,
               now - 3000 * DAY, now - DAY, NULL, NULL);
  mixed[1] = old_mfr;
  expect_class(f, idev, mixed, 2, now, ok, PKI_CLIENT_UNKNOWN,
               PKI_STATUS_NOT_YET_VALID);

  /* Untrusted stays untrusted whatever its dates. */
  gnutls_x509_crt_t other = cert_new(f->cli_ec, "CN=rogue", 0, ku,
                                     now - 800 * DAY, now - DAY, f->rsa_ca,
                                     f->rsa_key);
  expect_class(f, idev, &other, 1, now, ok, PKI_CLIENT_UNKNOWN,
               PKI_STATUS_UNTRUSTED);

  /* status may be NULL. */
  assert_int_equal(classify_ex(f, idev, &old_idev, 1, now, ok, NULL),
                   PKI_CLIENT_IDEVID);

  gnutls_x509_crt_t all[] = {old_idev, ld,  old_ld,  new_idev, sub,
                             sub_leaf, old_ca, old_mfr, other};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
    gnutls_x509_crt_deinit(all[i]);
  gnutls_x509_privkey_deinit(sub_key);
  pki_trust_free(idev);
}

static void test_trust_load_errors(void **state) {
  fx *f = *state;
  char p[160], diag[256];
  pki_trust *t = NULL;
  path_join(p, sizeof p, f, "nope.pem");
  assert_int_equal(pki_trust_load(p, &t, diag, sizeof diag), EST_ERR_IO);
  assert_null(t);
  path_join(p, sizeof p, f, "junk.pem");
  file_write(p, "hello\n", 6);
  assert_int_equal(pki_trust_load(p, &t, diag, sizeof diag), EST_ERR_CONFIG);
  assert_null(t);
  assert_true(strlen(diag) > 0);
  /* A bundle of several anchors. */
  assert_int_equal(pki_trust_load(f->ec_pem, &t, diag, sizeof diag), EST_OK);
  pki_trust_free(t);
}

/* ---- threads ------------------------------------------------------------- */

typedef struct thr_arg {
  fx *f;
  pki_csr *csr;
  int failures;
} thr_arg;

static void *issuer_thread(void *p) {
  thr_arg *a = p;
  for (int i = 0; i < 20; i++) {
    /* No cmocka asserts off the main thread: count failures instead. */
    pki_issued is;
    if (pki_issue(a->f->ec, a->csr, &is) != EST_OK) {
      a->failures++;
      continue;
    }
    if (!pki_ca_issued(a->f->ec, is.der, is.der_len, (long long)time(NULL)))
      a->failures++;
    pki_issued_clear(&is);
  }
  return NULL;
}

static void test_threads(void **state) {
  fx *f = *state;
  pki_csr *c = csr_make(f->cli_ec, &DEV42);
  pthread_t t[4];
  thr_arg a[4];
  for (int i = 0; i < 4; i++) {
    a[i] = (thr_arg){f, c, 0};
    assert_int_equal(pthread_create(&t[i], NULL, issuer_thread, &a[i]), 0);
  }
  for (int i = 0; i < 4; i++) {
    assert_int_equal(pthread_join(t[i], NULL), 0);
    assert_int_equal(a[i].failures, 0);
  }
  pki_csr_free(c);
}

/* ---- CRLs (docs/decisions.md §14) ---------------------------------------- */

/* The extnValue of entry @p i's only entry extension, or "" when it has
 * none: read back with libtasn1, independent of how it was written. */
static void crl_entry_ext(const gnutls_datum_t *crl, unsigned i, char *hex, size_t hexlen) {
  asn1_node defs = NULL, list = NULL;
  char err[ASN1_MAX_ERROR_DESCRIPTION_SIZE], name[128];
  uint8_t v[16];
  int len = sizeof v;
  assert_int_equal(asn1_array2tree(pkix_crl_asn_tab, &defs, err), ASN1_SUCCESS);
  assert_int_equal(asn1_create_element(defs, "PKIX-CRL.CertificateList", &list), ASN1_SUCCESS);
  assert_int_equal(asn1_der_decoding(&list, crl->data, (int)crl->size, err), ASN1_SUCCESS);
  snprintf(name, sizeof name,
           "tbsCertList.revokedCertificates.?%u.crlEntryExtensions.?1.extnValue", i);
  hex[0] = '\0';
  if (asn1_read_value(list, name, v, &len) == ASN1_SUCCESS)
    for (int k = 0; k < len && (size_t)(2 * k + 3) <= hexlen; k++)
      snprintf(hex + 2 * k, 3, "%02x", v[k]);
  snprintf(name, sizeof name, "tbsCertList.revokedCertificates.?%u.crlEntryExtensions.?1.extnID",
           i);
  char oid[64];
  len = sizeof oid;
  if (hex[0]) {
    assert_int_equal(asn1_read_value(list, name, oid, &len), ASN1_SUCCESS);
    assert_string_equal(oid, "2.5.29.21");
  }
  asn1_delete_structure(&list);
  asn1_delete_structure(&defs);
}

static void crl_check(pki_ca *ca, gnutls_x509_crt_t ca_crt) {
  long long now = (long long)time(NULL);
  pki_crl_entry e[3] = {
      {{0x11, 0x22}, 2, now - 100, 1},         /* keyCompromise */
      {{0x7f, 0x01, 0x02}, 3, now - 50, 0},    /* unspecified: no code */
      {{0x01}, 1, now - 10, 5},                /* cessationOfOperation */
  };
  uint8_t *der = NULL;
  size_t len = 0;
  assert_int_equal(pki_crl_sign(ca, e, 3, 300, now, now + 7 * DAY, &der, &len), EST_OK);
  gnutls_x509_crl_t crl;
  gnutls_datum_t d = {der, (unsigned)len};
  assert_int_equal(gnutls_x509_crl_init(&crl), 0);
  assert_int_equal(gnutls_x509_crl_import(crl, &d, GNUTLS_X509_FMT_DER), 0);
  unsigned vret = 99;
  assert_int_equal(gnutls_x509_crl_verify(crl, &ca_crt, 1, 0, &vret), 0);
  assert_int_equal(vret, 0); /* the signature over the new TBSCertList holds */
  assert_int_equal(gnutls_x509_crl_get_version(crl), 2);
  assert_int_equal(gnutls_x509_crl_get_crt_count(crl), 3);
  uint8_t num[8];
  size_t nlen = sizeof num;
  assert_int_equal(gnutls_x509_crl_get_number(crl, num, &nlen, NULL), 0);
  assert_int_equal(nlen, 2);
  assert_int_equal(num[0] * 256 + num[1], 300);
  uint8_t aki[64], ski[64];
  size_t alen = sizeof aki, slen = sizeof ski;
  assert_true(gnutls_x509_crl_get_authority_key_id(crl, aki, &alen, NULL) >= 0);
  assert_true(gnutls_x509_crt_get_subject_key_id(ca_crt, ski, &slen, NULL) >= 0);
  assert_int_equal(alen, slen);
  assert_memory_equal(aki, ski, alen);
  assert_int_equal((long long)gnutls_x509_crl_get_next_update(crl), now + 7 * DAY);
  for (unsigned i = 0; i < 3; i++) {
    uint8_t sn[32];
    size_t snl = sizeof sn;
    time_t t = 0;
    assert_int_equal(gnutls_x509_crl_get_crt_serial(crl, i, sn, &snl, &t), 0);
    assert_int_equal(snl, e[i].serial_len);
    assert_memory_equal(sn, e[i].serial, snl);
    assert_int_equal((long long)t, e[i].revoked_at);
  }
  char hex[16];
  crl_entry_ext(&d, 1, hex, sizeof hex);
  assert_string_equal(hex, "0a0101");
  crl_entry_ext(&d, 2, hex, sizeof hex);
  assert_string_equal(hex, "");
  crl_entry_ext(&d, 3, hex, sizeof hex);
  assert_string_equal(hex, "0a0105");
  gnutls_x509_crl_deinit(crl);
  free(der);

  /* No reasons at all, no entries: GnuTLS's CRL as it is, still valid. */
  assert_int_equal(pki_crl_sign(ca, NULL, 0, 1, now, now + DAY, &der, &len), EST_OK);
  d = (gnutls_datum_t){der, (unsigned)len};
  assert_int_equal(gnutls_x509_crl_init(&crl), 0);
  assert_int_equal(gnutls_x509_crl_import(crl, &d, GNUTLS_X509_FMT_DER), 0);
  assert_int_equal(gnutls_x509_crl_verify(crl, &ca_crt, 1, 0, &vret), 0);
  assert_int_equal(vret, 0);
  assert_int_equal(gnutls_x509_crl_get_crt_count(crl), 0);
  gnutls_x509_crl_deinit(crl);
  free(der);

  /* Refused: no number, dates backwards, a code this CA never writes. */
  assert_int_equal(pki_crl_sign(ca, e, 3, 0, now, now + DAY, &der, &len), EST_ERR_INVALID);
  assert_int_equal(pki_crl_sign(ca, e, 3, 2, now, now, &der, &len), EST_ERR_INVALID);
  pki_crl_entry bad = {{0x05}, 1, now, 8}; /* removeFromCRL: delta CRLs only */
  assert_int_equal(pki_crl_sign(ca, &bad, 1, 2, now, now + DAY, &der, &len), EST_ERR_INVALID);
  bad.reason = 7;
  assert_int_equal(pki_crl_sign(ca, &bad, 1, 2, now, now + DAY, &der, &len), EST_ERR_INVALID);
  assert_null(der);
}

static void test_crl_sign(void **state) {
  fx *f = *state;
  crl_check(f->ec, f->ec_ca);
  crl_check(f->rsa, f->rsa_ca);
}

/* A manufacturer CRL listing the IDevID: classified as revoked; a CRL
 * signed by anyone else is refused, not ignored. */
static void test_trust_crl(void **state) {
  fx *f = *state;
  char path[160], diag[256];
  long long now = (long long)time(NULL);
  pki_trust *t = NULL;
  const uint8_t *chain[1];
  size_t lens[1];
  gnutls_datum_t idev;
  assert_int_equal(gnutls_x509_crt_export2(f->idev, GNUTLS_X509_FMT_DER, &idev), 0);
  chain[0] = idev.data;
  lens[0] = idev.size;

  for (int signer = 0; signer < 2; signer++) {
    gnutls_x509_crl_t crl;
    gnutls_datum_t out;
    assert_int_equal(gnutls_x509_crl_init(&crl), 0);
    assert_int_equal(gnutls_x509_crl_set_version(crl, 2), 0);
    assert_int_equal(gnutls_x509_crl_set_this_update(crl, (time_t)now), 0);
    assert_int_equal(gnutls_x509_crl_set_next_update(crl, (time_t)(now + DAY)), 0);
    assert_int_equal(gnutls_x509_crl_set_crt(crl, f->idev, (time_t)now), 0);
    /* 0: the manufacturer; 1: the RSA CA, which is not in the bundle. */
    assert_int_equal(gnutls_x509_crl_sign2(crl, signer ? f->rsa_ca : f->mfr,
                                           signer ? f->rsa_key : f->mfr_key,
                                           GNUTLS_DIG_SHA256, 0), 0);
    assert_int_equal(gnutls_x509_crl_export2(crl, signer ? GNUTLS_X509_FMT_DER
                                                         : GNUTLS_X509_FMT_PEM, &out), 0);
    gnutls_x509_crl_deinit(crl);
    path_join(path, sizeof path, f, signer ? "other.crl" : "mfr.crl");
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(out.data, 1, out.size, fp), out.size);
    fclose(fp);
    gnutls_free(out.data);

    assert_int_equal(pki_trust_load(f->mfr_pem, &t, diag, sizeof diag), EST_OK);
    unsigned n = 9;
    est_err rc = pki_trust_add_crl_file(t, path, &n, diag, sizeof diag);
    if (signer == 0) {
      assert_int_equal(rc, EST_OK);
      assert_int_equal(n, 1);
      pki_client_class cls = PKI_CLIENT_IDEVID;
      pki_client_status st = PKI_STATUS_VALID;
      assert_int_equal(pki_client_classify(f->ec, t, chain, lens, 1, now, 0, &cls, &st),
                       EST_OK);
      assert_int_equal(cls, PKI_CLIENT_UNKNOWN);
      assert_int_equal(st, PKI_STATUS_REVOKED);
    } else {
      assert_int_equal(rc, EST_ERR_CONFIG);
      assert_non_null(strstr(diag, "not signed by a CA in idevid_trust"));
    }
    pki_trust_free(t);
    t = NULL;
  }
  /* Without the CRL the same IDevID is an IDevID. */
  assert_int_equal(pki_trust_load(f->mfr_pem, &t, diag, sizeof diag), EST_OK);
  pki_client_class cls = PKI_CLIENT_UNKNOWN;
  assert_int_equal(pki_client_classify(f->ec, t, chain, lens, 1, now, 0, &cls, NULL), EST_OK);
  assert_int_equal(cls, PKI_CLIENT_IDEVID);
  /* Not a CRL at all. */
  path_join(path, sizeof path, f, "junk.crl");
  FILE *fp = fopen(path, "w");
  assert_non_null(fp);
  fputs("not a CRL\n", fp);
  fclose(fp);
  assert_int_equal(pki_trust_add_crl_file(t, path, NULL, diag, sizeof diag), EST_ERR_CONFIG);
  assert_non_null(strstr(diag, "no PEM or DER CRL"));
  pki_trust_free(t);
  gnutls_free(idev.data);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_key_type_parse),
      cmocka_unit_test(test_key_uri),
      cmocka_unit_test(test_ca_load_errors),
      cmocka_unit_test(test_ca_crts),
      cmocka_unit_test(test_csr_parse_errors),
      cmocka_unit_test(test_csr_key_types),
      cmocka_unit_test(test_csr_signature),
      cmocka_unit_test(test_csr_weak_hash),
      cmocka_unit_test(test_csr_challenge),
      cmocka_unit_test(test_csr_challenge_encodings),
      cmocka_unit_test(test_csr_profile),
      cmocka_unit_test(test_csr_subject_and_spki),
      cmocka_unit_test(test_csr_match_cert),
      cmocka_unit_test(test_issue_ec),
      cmocka_unit_test(test_issue_rsa_ca),
      cmocka_unit_test(test_issue_p384_ca_and_cap),
      cmocka_unit_test(test_issue_extensions_filtered),
      cmocka_unit_test(test_issue_empty_subject),
      cmocka_unit_test(test_issue_odd_san),
      cmocka_unit_test(test_issue_certtool_verifies),
      cmocka_unit_test(test_keygen),
      cmocka_unit_test(test_p7_certs_only),
      cmocka_unit_test(test_ca_from_p7),
      cmocka_unit_test(test_ca_from_p7_errors),
      cmocka_unit_test(test_p7_end_entity),
      cmocka_unit_test(test_issued_from_der),
      cmocka_unit_test(test_cert_key_is),
      cmocka_unit_test(test_classify),
      cmocka_unit_test(test_classify_dates),
      cmocka_unit_test(test_trust_load_errors),
      cmocka_unit_test(test_threads),
      cmocka_unit_test(test_crl_sign),
      cmocka_unit_test(test_trust_crl),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
