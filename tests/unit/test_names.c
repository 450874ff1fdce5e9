/* Unit tests for names.c, the issuance policy (docs/decisions.md §13), and
 * the pki.c profile it comes with (cert_eku, max_cert_bytes). Every key,
 * CSR and certificate is made here with GnuTLS. */
#define _GNU_SOURCE /* mkdtemp */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "plugin/est/names.h"
#include "plugin/est/pki.h"

#define DAY 86400LL
#define DIAG 160 /* EST_DIAG_MAX: what a device gets */
#define SANS_MAX 16

/* ---- builders ------------------------------------------------------------- */

typedef struct fx {
  gnutls_x509_privkey_t ec;      /* P-256, the usual device key */
  gnutls_x509_privkey_t rsa2048;
  char dir[64], ca_pem[128], ca_key[128];
  pki_ca *ca;
} fx;

static gnutls_x509_privkey_t key_new(gnutls_pk_algorithm_t alg, unsigned bits) {
  gnutls_x509_privkey_t k;
  assert_int_equal(gnutls_x509_privkey_init(&k), 0);
  assert_int_equal(gnutls_x509_privkey_generate(k, alg, bits, 0), 0);
  return k;
}

typedef struct san {
  unsigned type;     /* GNUTLS_SAN_*, 0 ends the list */
  const char *v;     /* value; for IP the raw bytes */
  unsigned len;      /* 0: strlen(v) */
  const char *oid;   /* otherName type-id */
} san;

typedef struct spec {
  const char *dn;               /* NULL: "CN=dev-5" */
  san sans[SANS_MAX];
  unsigned dns_count;           /* plus this many generated DNS names */
  gnutls_x509_privkey_t key;    /* NULL: the P-256 key */
  gnutls_digest_algorithm_t dig; /* 0: SHA-256 */
  const char *ext_oid;          /* an extra extension, value DER NULL */
  bool ext_critical;
} spec;

static void write_file(const char *path, const gnutls_datum_t *d) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(d->data, 1, d->size, f), d->size);
  assert_int_equal(fclose(f), 0);
}

/* The DER of a CSR as @p s says. */
static gnutls_datum_t csr_der(const fx *f, const spec *s) {
  gnutls_x509_crq_t q;
  gnutls_datum_t d;
  const char *err = NULL;
  gnutls_x509_privkey_t key = s->key ? s->key : f->ec;
  assert_int_equal(gnutls_x509_crq_init(&q), 0);
  assert_int_equal(gnutls_x509_crq_set_dn(q, s->dn ? s->dn : "CN=dev-5", &err), 0);
  assert_int_equal(gnutls_x509_crq_set_key(q, key), 0);
  for (size_t i = 0; i < SANS_MAX && s->sans[i].type; i++) {
    const san *n = &s->sans[i];
    unsigned len = n->len ? n->len : (unsigned)strlen(n->v);
    if (n->type == GNUTLS_SAN_OTHERNAME)
      assert_int_equal(gnutls_x509_crq_set_subject_alt_othername(q, n->oid, n->v, len,
                                                                 GNUTLS_FSAN_APPEND), 0);
    else
      assert_int_equal(gnutls_x509_crq_set_subject_alt_name(q, n->type, n->v, len,
                                                            GNUTLS_FSAN_APPEND), 0);
  }
  for (unsigned i = 0; i < s->dns_count; i++) {
    char name[64];
    snprintf(name, sizeof name, "host-%u.example", i);
    assert_int_equal(gnutls_x509_crq_set_subject_alt_name(q, GNUTLS_SAN_DNSNAME, name,
                                                          (unsigned)strlen(name),
                                                          GNUTLS_FSAN_APPEND), 0);
  }
  if (s->ext_oid) {
    static const uint8_t der_null[] = {0x05, 0x00};
    assert_int_equal(gnutls_x509_crq_set_extension_by_oid(q, s->ext_oid, der_null,
                                                          sizeof der_null, s->ext_critical),
                     0);
  }
  assert_int_equal(gnutls_x509_crq_sign2(q, key, s->dig ? s->dig : GNUTLS_DIG_SHA256, 0), 0);
  assert_int_equal(gnutls_x509_crq_export2(q, GNUTLS_X509_FMT_DER, &d), 0);
  gnutls_x509_crq_deinit(q);
  return d;
}

static pki_csr *csr_make(const fx *f, const spec *s) {
  gnutls_datum_t d = csr_der(f, s);
  pki_csr *c = NULL;
  char diag[DIAG] = "";
  assert_int_equal(pki_csr_parse(d.data, d.size, &c, diag, sizeof diag), EST_OK);
  gnutls_free(d.data);
  return c;
}

/* A self-signed certificate for @p dn: the client's IDevID. */
static gnutls_datum_t cert_der(gnutls_x509_privkey_t k, const char *dn, bool ca) {
  gnutls_x509_crt_t c;
  gnutls_datum_t d;
  const char *err = NULL;
  uint8_t sn[8] = {1, 2, 3, 4, 5, 6, 7, 8}, id[64];
  size_t id_len = sizeof id;
  long long now = (long long)time(NULL);
  assert_int_equal(gnutls_x509_crt_init(&c), 0);
  assert_int_equal(gnutls_x509_crt_set_dn(c, dn, &err), 0);
  assert_int_equal(gnutls_x509_crt_set_key(c, k), 0);
  assert_int_equal(gnutls_x509_crt_set_version(c, 3), 0);
  assert_int_equal(gnutls_x509_crt_set_serial(c, sn, sizeof sn), 0);
  assert_int_equal(gnutls_x509_crt_set_activation_time(c, (time_t)(now - DAY)), 0);
  assert_int_equal(gnutls_x509_crt_set_expiration_time(c, (time_t)(now + 3650 * DAY)), 0);
  if (ca) {
    assert_int_equal(gnutls_x509_crt_set_basic_constraints(c, 1, -1), 0);
    assert_int_equal(gnutls_x509_crt_set_key_usage(c, GNUTLS_KEY_KEY_CERT_SIGN), 0);
    assert_int_equal(gnutls_x509_crt_get_key_id(c, GNUTLS_KEYID_USE_SHA1, id, &id_len), 0);
    assert_int_equal(gnutls_x509_crt_set_subject_key_id(c, id, id_len), 0);
  }
  assert_int_equal(gnutls_x509_crt_sign2(c, c, k, GNUTLS_DIG_SHA256, 0), 0);
  assert_int_equal(gnutls_x509_crt_export2(c, ca ? GNUTLS_X509_FMT_PEM : GNUTLS_X509_FMT_DER,
                                           &d), 0);
  gnutls_x509_crt_deinit(c);
  return d;
}

static int setup(void **state) {
  fx *f = calloc(1, sizeof *f);
  assert_non_null(f);
  f->ec = key_new(GNUTLS_PK_ECDSA, GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1));
  f->rsa2048 = key_new(GNUTLS_PK_RSA, 2048);
  snprintf(f->dir, sizeof f->dir, "/tmp/test_names.XXXXXX");
  assert_non_null(mkdtemp(f->dir));
  snprintf(f->ca_pem, sizeof f->ca_pem, "%s/ca.pem", f->dir);
  snprintf(f->ca_key, sizeof f->ca_key, "%s/ca.key", f->dir);
  gnutls_x509_privkey_t k =
      key_new(GNUTLS_PK_ECDSA, GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1));
  gnutls_datum_t d = cert_der(k, "CN=names test CA", true);
  write_file(f->ca_pem, &d);
  gnutls_free(d.data);
  assert_int_equal(gnutls_x509_privkey_export2(k, GNUTLS_X509_FMT_PEM, &d), 0);
  write_file(f->ca_key, &d);
  gnutls_free(d.data);
  gnutls_x509_privkey_deinit(k);
  char diag[256];
  assert_int_equal(pki_ca_load(f->ca_pem, f->ca_key, 30, &f->ca, diag, sizeof diag), EST_OK);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fx *f = *state;
  pki_ca_free(f->ca);
  gnutls_x509_privkey_deinit(f->ec);
  gnutls_x509_privkey_deinit(f->rsa2048);
  unlink(f->ca_pem);
  unlink(f->ca_key);
  rmdir(f->dir);
  free(f);
  return 0;
}

/* names_check() on the CSR of @p s: the code, and for a refusal a
 * diagnostic holding @p want (NULL: only non-empty). */
static void expect(const fx *f, const names_config *cfg, const spec *s, const names_request *rq,
                   est_err code, const char *want) {
  names_request plain = {.check_key = true};
  pki_csr *c = csr_make(f, s);
  char diag[DIAG];
  memset(diag, 'x', sizeof diag);
  est_err rc = names_check(cfg, c, rq ? rq : &plain, diag, sizeof diag);
  pki_csr_free(c);
  if (rc != code)
    fail_msg("want %s, got %s (%s)", est_strerror(code), est_strerror(rc), diag);
  if (code == EST_OK) {
    assert_string_equal(diag, "");
    return;
  }
  assert_true(strlen(diag) > 0 && strlen(diag) < sizeof diag);
  if (want && !strstr(diag, want))
    fail_msg("diagnostic '%s' lacks '%s'", diag, want);
}

static names_config defaults(void) {
  names_config c;
  names_config_init(&c);
  return c;
}

static void set(names_config *c, names_field fld, const char *v) {
  char why[128] = "";
  assert_int_equal(names_config_set(c, fld, v, why, sizeof why), EST_OK);
}

/* ---- subjectAltName types ------------------------------------------------- */

static const uint8_t ip4[4] = {192, 0, 2, 7};
#define DNS(x) {GNUTLS_SAN_DNSNAME, (x), 0, NULL}
#define IP4 {GNUTLS_SAN_IPADDRESS, (const char *)ip4, 4, NULL}
#define URI(x) {GNUTLS_SAN_URI, (x), 0, NULL}
#define EMAIL(x) {GNUTLS_SAN_RFC822NAME, (x), 0, NULL}
/* otherName: hardwareModuleName-ish type-id with a DER UTF8String value. */
#define OTHER {GNUTLS_SAN_OTHERNAME, "\x0c\x03" "abc", 5, "1.3.6.1.5.5.7.8.4"}

static void test_san_types_default(void **state) {
  fx *f = *state;
  names_config c = defaults();
  expect(f, &c, &(spec){.sans = {DNS("dev-5.example"), IP4}}, NULL, EST_OK, NULL);
  expect(f, &c, &(spec){.sans = {URI("urn:dev:5")}}, NULL, EST_ERR_FORBIDDEN, "type URI");
  expect(f, &c, &(spec){.sans = {EMAIL("a@example.com")}}, NULL, EST_ERR_FORBIDDEN,
         "type email");
  expect(f, &c, &(spec){.sans = {OTHER}}, NULL, EST_ERR_FORBIDDEN, "type otherName");
  /* One refused entry among allowed ones refuses the request. */
  expect(f, &c, &(spec){.sans = {DNS("dev-5.example"), URI("https://x.example/")}}, NULL,
         EST_ERR_FORBIDDEN, "san_types");
  /* No SAN at all is fine. */
  expect(f, &c, &(spec){0}, NULL, EST_OK, NULL);
}

static void test_san_types_widened(void **state) {
  fx *f = *state;
  names_config c = defaults();
  set(&c, NAMES_FIELD_SAN_TYPES, "uri, email ,othername");
  expect(f, &c, &(spec){.sans = {URI("urn:dev:5")}}, NULL, EST_OK, NULL);
  expect(f, &c, &(spec){.sans = {EMAIL("a@example.com")}}, NULL, EST_OK, NULL);
  expect(f, &c, &(spec){.sans = {OTHER}}, NULL, EST_OK, NULL);
  expect(f, &c, &(spec){.sans = {DNS("dev-5.example")}}, NULL, EST_ERR_FORBIDDEN, "type DNS");
  expect(f, &c, &(spec){.sans = {IP4}}, NULL, EST_ERR_FORBIDDEN, "type IP");
  /* Allowed types still need their syntax. */
  expect(f, &c, &(spec){.sans = {EMAIL("no-at-sign")}}, NULL, EST_ERR_BAD_CSR,
         "does not look like");
  expect(f, &c, &(spec){.sans = {URI("no scheme")}}, NULL, EST_ERR_BAD_CSR, "URI");
  set(&c, NAMES_FIELD_SAN_TYPES, "");
  expect(f, &c, &(spec){.sans = {DNS("dev-5.example")}}, NULL, EST_ERR_FORBIDDEN, "type DNS");
  expect(f, &c, &(spec){0}, NULL, EST_OK, NULL);
}

/* ---- DNS names: syntax, wildcards, patterns ------------------------------- */

static void test_dns_syntax(void **state) {
  fx *f = *state;
  names_config c = defaults();
  expect(f, &c, &(spec){.sans = {DNS("A-1.Example.COM")}}, NULL, EST_OK, NULL);
  expect(f, &c, &(spec){.sans = {DNS("under_score.example")}}, NULL, EST_ERR_BAD_CSR,
         "not a valid DNS name");
  expect(f, &c, &(spec){.sans = {DNS("-dash.example")}}, NULL, EST_ERR_BAD_CSR, NULL);
  expect(f, &c, &(spec){.sans = {DNS("double..dot")}}, NULL, EST_ERR_BAD_CSR, NULL);
  expect(f, &c, &(spec){.sans = {DNS("trailing.dot.")}}, NULL, EST_ERR_BAD_CSR, NULL);
  char label64[80];
  memset(label64, 'a', 64);
  strcpy(label64 + 64, ".example");
  expect(f, &c, &(spec){.sans = {DNS(label64)}}, NULL, EST_ERR_BAD_CSR, NULL);
}

static void test_wildcards(void **state) {
  fx *f = *state;
  names_config c = defaults();
  expect(f, &c, &(spec){.sans = {DNS("*.example.com")}}, NULL, EST_ERR_FORBIDDEN,
         "wildcards are not allowed");
  c.allow_wildcard = true;
  expect(f, &c, &(spec){.sans = {DNS("*.example.com")}}, NULL, EST_OK, NULL);
  /* Over a bare TLD, or not the whole leftmost label: never. */
  expect(f, &c, &(spec){.sans = {DNS("*.com")}}, NULL, EST_ERR_FORBIDDEN, "two labels");
  expect(f, &c, &(spec){.sans = {DNS("a*.example.com")}}, NULL, EST_ERR_FORBIDDEN, NULL);
  expect(f, &c, &(spec){.sans = {DNS("a.*.example.com")}}, NULL, EST_ERR_FORBIDDEN, NULL);
}

static void test_patterns(void **state) {
  fx *f = *state;
  names_config c = defaults();
  set(&c, NAMES_FIELD_DNS_PATTERNS, "*.devices.example.com,gw.example.com");
  assert_int_equal(c.pattern_count, 2);
  expect(f, &c, &(spec){.sans = {DNS("a.devices.example.com")}}, NULL, EST_OK, NULL);
  expect(f, &c, &(spec){.sans = {DNS("Dev-5.DEVICES.example.com")}}, NULL, EST_OK, NULL);
  expect(f, &c, &(spec){.sans = {DNS("gw.example.com")}}, NULL, EST_OK, NULL);
  expect(f, &c, &(spec){.sans = {DNS("a.b.devices.example.com")}}, NULL, EST_ERR_FORBIDDEN,
         "matches no san_dns_patterns");
  expect(f, &c, &(spec){.sans = {DNS("devices.example.com")}}, NULL, EST_ERR_FORBIDDEN,
         "'devices.example.com'");
  expect(f, &c, &(spec){.sans = {DNS("bank.example")}}, NULL, EST_ERR_FORBIDDEN, NULL);
  expect(f, &c, &(spec){.sans = {DNS("xdevices.example.com")}}, NULL, EST_ERR_FORBIDDEN, NULL);
  /* An IP is no DNS name: patterns do not apply to it. */
  expect(f, &c, &(spec){.sans = {IP4}}, NULL, EST_OK, NULL);
  /* A wildcard SAN under a pattern still needs san_wildcards. */
  expect(f, &c, &(spec){.sans = {DNS("*.devices.example.com")}}, NULL, EST_ERR_FORBIDDEN,
         "wildcards");
}

static void test_pattern_option_syntax(void **state) {
  (void)state;
  char why[128];
  names_config c = defaults();
  const char *bad[] = {"*.com", "a.*.example.com", "*", "under_score.example", "*x.example.com",
                       "-a.example"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    why[0] = '\0';
    assert_int_equal(names_config_set(&c, NAMES_FIELD_DNS_PATTERNS, bad[i], why, sizeof why),
                     EST_ERR_INVALID);
    assert_true(strlen(why) > 0);
    assert_int_equal(c.pattern_count, 0); /* unchanged */
  }
  char many[17 * 16] = "";
  for (int i = 0; i < 17; i++)
    sprintf(many + strlen(many), "%sh%d.example", i ? "," : "", i);
  assert_int_equal(names_config_set(&c, NAMES_FIELD_DNS_PATTERNS, many, why, sizeof why),
                   EST_ERR_INVALID);
  /* NULL config: check only. */
  assert_int_equal(names_config_set(NULL, NAMES_FIELD_DNS_PATTERNS, "*.d.example", why,
                                    sizeof why), EST_OK);
}

static void test_word_options(void **state) {
  (void)state;
  char why[128];
  names_config c = defaults();
  assert_int_equal(names_config_set(&c, NAMES_FIELD_SAN_TYPES, "dns,x400", why, sizeof why),
                   EST_ERR_INVALID);
  assert_non_null(strstr(why, "x400"));
  assert_int_equal(c.san_types, NAMES_SAN_DNS | NAMES_SAN_IP);
  assert_int_equal(names_config_set(&c, NAMES_FIELD_SUBJECT_ATTRS, "CN,nickname", why,
                                    sizeof why), EST_ERR_INVALID);
  assert_int_equal(names_config_set(&c, NAMES_FIELD_KEY_TYPES, "", why, sizeof why),
                   EST_ERR_INVALID);
  assert_int_equal(names_config_set(&c, NAMES_FIELD_KEY_TYPES, "dsa", why, sizeof why),
                   EST_ERR_INVALID);
  assert_int_equal(names_config_set(&c, NAMES_FIELD_SUBJECT_MATCH, "idevid", why, sizeof why),
                   EST_ERR_INVALID);
  assert_int_equal(names_config_set(&c, NAMES_FIELD__MAX, "x", why, sizeof why),
                   EST_ERR_INVALID);
  set(&c, NAMES_FIELD_SUBJECT_MATCH, "idevid-serial");
  assert_int_equal(c.match, NAMES_MATCH_IDEVID_SERIAL);
  set(&c, NAMES_FIELD_KEY_TYPES, "EC-P521,rsa");
  assert_int_equal(c.key_types, NAMES_KEY_EC_P521 | NAMES_KEY_RSA);
}

/* ---- counts and sizes ----------------------------------------------------- */

static void test_san_count(void **state) {
  fx *f = *state;
  names_config c = defaults();
  expect(f, &c, &(spec){.dns_count = 8}, NULL, EST_OK, NULL);
  expect(f, &c, &(spec){.dns_count = 9}, NULL, EST_ERR_BAD_CSR, "9 subjectAltNames, over max_sans 8");
  c.max_sans = 0;
  expect(f, &c, &(spec){.dns_count = 1}, NULL, EST_ERR_BAD_CSR, "max_sans 0");
  c.max_sans = 20;
  expect(f, &c, &(spec){.dns_count = 20}, NULL, EST_OK, NULL);
}

static void test_subject_size(void **state) {
  fx *f = *state;
  names_config c = defaults();
  char dn[700];
  strcpy(dn, "CN=dev-5,O=");
  memset(dn + strlen(dn), 'x', 600);
  dn[11 + 600] = '\0';
  expect(f, &c, &(spec){.dn = dn}, NULL, EST_ERR_BAD_CSR, "bytes, over max_subject_bytes 512");
  c.max_subject_bytes = NAMES_SUBJECT_LIMIT;
  expect(f, &c, &(spec){.dn = dn}, NULL, EST_OK, NULL);
  /* Escapes make the text longer than the DER: both are capped. */
  char esc[700];
  strcpy(esc, "CN=dev-5,O=");
  for (int i = 0; i < 200; i++)
    strcat(esc, "\\,");
  c.max_subject_bytes = 300;
  expect(f, &c, &(spec){.dn = esc}, NULL, EST_ERR_BAD_CSR, "as text");
  /* Many short attributes make the DER longer than the text. */
  char many[400] = "CN=d";
  for (int i = 0; i < 40; i++)
    strcat(many, ",OU=a");
  expect(f, &c, &(spec){.dn = many}, NULL, EST_ERR_BAD_CSR, "bytes, over max_subject_bytes 300");
  c.max_subject_bytes = 600;
  expect(f, &c, &(spec){.dn = many}, NULL, EST_OK, NULL);
}

/* ---- subject attributes and subject_match -------------------------------- */

static void test_subject_attrs(void **state) {
  fx *f = *state;
  names_config c = defaults();
  expect(f, &c, &(spec){.dn = "CN=dev-5,serialNumber=5,O=Maker,OU=Line,C=DE,ST=BY,L=Town"},
         NULL, EST_OK, NULL);
  expect(f, &c, &(spec){.dn = "CN=dev-5,title=boss"}, NULL, EST_ERR_FORBIDDEN,
         "subject attribute title is not allowed");
  expect(f, &c, &(spec){.dn = "CN=dev-5,DC=example"}, NULL, EST_ERR_FORBIDDEN, "DC");
  expect(f, &c, &(spec){.dn = "CN=dev-5,2.5.4.72=#0c0178"}, NULL, EST_ERR_FORBIDDEN,
         "2.5.4.72");
  set(&c, NAMES_FIELD_SUBJECT_ATTRS, "CN,title");
  expect(f, &c, &(spec){.dn = "CN=dev-5,title=boss"}, NULL, EST_OK, NULL);
  expect(f, &c, &(spec){.dn = "CN=dev-5,O=Other Corp"}, NULL, EST_ERR_FORBIDDEN, "O is not");
}

static void test_subject_match_serial(void **state) {
  fx *f = *state;
  names_config c = defaults();
  set(&c, NAMES_FIELD_SUBJECT_MATCH, "idevid-serial");
  gnutls_datum_t idev = cert_der(f->rsa2048, "CN=idevid-0005,serialNumber=0005,O=Maker", false);
  names_request rq = {.check_key = true, .client_cert = idev.data, .client_cert_len = idev.size};
  expect(f, &c, &(spec){.dn = "CN=0005"}, &rq, EST_OK, NULL);
  expect(f, &c, &(spec){.dn = "serialNumber=0005,CN=0005,O=Maker"}, &rq, EST_OK, NULL);
  expect(f, &c, &(spec){.dn = "serialNumber=0005"}, &rq, EST_OK, NULL);
  expect(f, &c, &(spec){.dn = "CN=0001"}, &rq, EST_ERR_SUBJECT_MISMATCH,
         "subject CN '0001' is not the client certificate's serialNumber '0005'");
  expect(f, &c, &(spec){.dn = "CN=0005,serialNumber=0001"}, &rq, EST_ERR_SUBJECT_MISMATCH,
         "serialNumber '0001'");
  expect(f, &c, &(spec){.dn = "O=Other Corp,CN=device-001"}, &rq, EST_ERR_SUBJECT_MISMATCH,
         NULL);
  expect(f, &c, &(spec){.dn = "O=Maker"}, &rq, EST_ERR_SUBJECT_MISMATCH, "must carry");
  /* A client certificate without a serialNumber matches nothing. */
  gnutls_datum_t noser = cert_der(f->rsa2048, "CN=idevid-0005", false);
  names_request rq2 = {.check_key = true, .client_cert = noser.data,
                       .client_cert_len = noser.size};
  expect(f, &c, &(spec){.dn = "CN=idevid-0005"}, &rq2, EST_ERR_SUBJECT_MISMATCH,
         "no serialNumber");
  /* No client certificate at all. */
  expect(f, &c, &(spec){.dn = "CN=0005"}, NULL, EST_ERR_UNAUTHENTICATED, "client certificate");
  /* none: anything allowed goes. */
  set(&c, NAMES_FIELD_SUBJECT_MATCH, "none");
  expect(f, &c, &(spec){.dn = "CN=0001"}, &rq, EST_OK, NULL);
  gnutls_free(idev.data);
  gnutls_free(noser.data);
}

static void test_subject_match_cn(void **state) {
  fx *f = *state;
  names_config c = defaults();
  set(&c, NAMES_FIELD_SUBJECT_MATCH, "idevid-cn");
  gnutls_datum_t idev = cert_der(f->rsa2048, "CN=idevid-0005,serialNumber=0005", false);
  names_request rq = {.check_key = true, .client_cert = idev.data, .client_cert_len = idev.size};
  expect(f, &c, &(spec){.dn = "CN=idevid-0005,O=Maker"}, &rq, EST_OK, NULL);
  expect(f, &c, &(spec){.dn = "CN=idevid-0005,serialNumber=0005"}, &rq, EST_OK, NULL);
  expect(f, &c, &(spec){.dn = "CN=idevid-0001"}, &rq, EST_ERR_SUBJECT_MISMATCH,
         "subject CN 'idevid-0001' is not the client certificate's CN 'idevid-0005'");
  expect(f, &c, &(spec){.dn = "CN=idevid-0005,serialNumber=0001"}, &rq,
         EST_ERR_SUBJECT_MISMATCH, "serialNumber");
  expect(f, &c, &(spec){.dn = "O=Maker"}, &rq, EST_ERR_SUBJECT_MISMATCH, "must carry");
  gnutls_datum_t nos = cert_der(f->rsa2048, "CN=idevid-0005", false);
  names_request rq2 = {.check_key = true, .client_cert = nos.data, .client_cert_len = nos.size};
  expect(f, &c, &(spec){.dn = "CN=idevid-0005,serialNumber=0005"}, &rq2,
         EST_ERR_SUBJECT_MISMATCH, "has none");
  gnutls_free(idev.data);
  gnutls_free(nos.data);
}

/* ---- extensions ------------------------------------------------------------ */

static void test_critical_extensions(void **state) {
  fx *f = *state;
  names_config c = defaults();
  expect(f, &c, &(spec){.ext_oid = "1.3.6.1.4.1.99999.1", .ext_critical = true}, NULL,
         EST_ERR_BAD_CSR, "critical extension 1.3.6.1.4.1.99999.1");
  /* Not critical: the CA may ignore it (RFC 5280 §4.2), and does. */
  expect(f, &c, &(spec){.ext_oid = "1.3.6.1.4.1.99999.1"}, NULL, EST_OK, NULL);
  /* A critical extension we understand is fine. */
  gnutls_x509_crq_t q;
  const char *err = NULL;
  gnutls_datum_t d;
  assert_int_equal(gnutls_x509_crq_init(&q), 0);
  assert_int_equal(gnutls_x509_crq_set_dn(q, "CN=dev-5", &err), 0);
  assert_int_equal(gnutls_x509_crq_set_key(q, f->ec), 0);
  assert_int_equal(gnutls_x509_crq_set_basic_constraints(q, 0, -1), 0);
  assert_int_equal(gnutls_x509_crq_set_key_usage(q, GNUTLS_KEY_DIGITAL_SIGNATURE), 0);
  assert_int_equal(gnutls_x509_crq_sign2(q, f->ec, GNUTLS_DIG_SHA256, 0), 0);
  assert_int_equal(gnutls_x509_crq_export2(q, GNUTLS_X509_FMT_DER, &d), 0);
  gnutls_x509_crq_deinit(q);
  pki_csr *csr = NULL;
  assert_int_equal(pki_csr_parse(d.data, d.size, &csr, NULL, 0), EST_OK);
  names_request rq = {.check_key = true};
  char diag[DIAG];
  assert_int_equal(names_check(&c, csr, &rq, diag, sizeof diag), EST_OK);
  pki_csr_free(csr);
  gnutls_free(d.data);
}

/* ---- keys and hashes -------------------------------------------------------- */

static void test_keys(void **state) {
  fx *f = *state;
  names_config c = defaults();
  expect(f, &c, &(spec){.key = f->rsa2048}, NULL, EST_OK, NULL);
  gnutls_x509_privkey_t p384 =
      key_new(GNUTLS_PK_ECDSA, GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP384R1));
  gnutls_x509_privkey_t p521 =
      key_new(GNUTLS_PK_ECDSA, GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP521R1));
  gnutls_x509_privkey_t ed = key_new(GNUTLS_PK_EDDSA_ED25519, 0);
  expect(f, &c, &(spec){.key = p384, .dig = GNUTLS_DIG_SHA384}, NULL, EST_OK, NULL);
  expect(f, &c, &(spec){.key = p521, .dig = GNUTLS_DIG_SHA512}, NULL, EST_ERR_BAD_CSR,
         "SECP521R1 is not allowed (csr_key_types)");
  expect(f, &c, &(spec){.key = ed, .dig = GNUTLS_DIG_SHA512}, NULL, EST_ERR_BAD_CSR,
         "Ed25519");
  set(&c, NAMES_FIELD_KEY_TYPES, "ec-p521,ed25519");
  expect(f, &c, &(spec){.key = p521, .dig = GNUTLS_DIG_SHA512}, NULL, EST_OK, NULL);
  expect(f, &c, &(spec){.key = ed, .dig = GNUTLS_DIG_SHA512}, NULL, EST_OK, NULL);
  expect(f, &c, &(spec){0}, NULL, EST_ERR_BAD_CSR, "SECP256R1");
  expect(f, &c, &(spec){.key = f->rsa2048}, NULL, EST_ERR_BAD_CSR, "RSA");
  /* RSA under the minimum the operator set. */
  c = defaults();
  c.rsa_min_bits = 3072;
  expect(f, &c, &(spec){.key = f->rsa2048}, NULL, EST_ERR_BAD_CSR,
         "RSA-2048; RSA needs at least 3072 bits");
  /* skg/skc: the CSR key is ignored (SKG-2), so not checked. */
  names_request kg = {.check_key = false};
  expect(f, &c, &(spec){.key = f->rsa2048}, &kg, EST_OK, NULL);
  gnutls_x509_privkey_deinit(p384);
  gnutls_x509_privkey_deinit(p521);
  gnutls_x509_privkey_deinit(ed);
}

/* Below the floor no policy reaches: pki_csr_parse refuses RSA-1024 and
 * P-192 itself, so no CSR with such a key is ever issued for. */
static void test_weak_keys_never_parse(void **state) {
  (void)state;
  fx *f = *state;
  gnutls_x509_privkey_t weak = key_new(GNUTLS_PK_RSA, 1024);
  gnutls_datum_t d = csr_der(f, &(spec){.key = weak});
  pki_csr *c = NULL;
  char diag[DIAG] = "";
  assert_int_equal(pki_csr_parse(d.data, d.size, &c, diag, sizeof diag), EST_ERR_BAD_CSR);
  assert_null(c);
  assert_non_null(strstr(diag, "key type not supported"));
  gnutls_free(d.data);
  gnutls_x509_privkey_deinit(weak);
  weak = key_new(GNUTLS_PK_ECDSA, GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP192R1));
  d = csr_der(f, &(spec){.key = weak});
  assert_int_equal(pki_csr_parse(d.data, d.size, &c, diag, sizeof diag), EST_ERR_BAD_CSR);
  assert_null(c);
  gnutls_free(d.data);
  gnutls_x509_privkey_deinit(weak);
}

static void test_weak_hash(void **state) {
  fx *f = *state;
  names_config c = defaults();
  expect(f, &c, &(spec){.dig = GNUTLS_DIG_SHA1}, NULL, EST_ERR_BAD_CSR,
         "signed with ECDSA-SHA1; SHA-256 or stronger is required");
  expect(f, &c, &(spec){.key = f->rsa2048, .dig = GNUTLS_DIG_SHA1}, NULL, EST_ERR_BAD_CSR,
         "RSA-SHA1");
  expect(f, &c, &(spec){.dig = GNUTLS_DIG_SHA512}, NULL, EST_OK, NULL);
  /* skg/skc: the signature is ignored too. */
  names_request kg = {.check_key = false};
  expect(f, &c, &(spec){.dig = GNUTLS_DIG_SHA1}, &kg, EST_OK, NULL);
}

/* ---- the CA profile: EKU and certificate size -------------------------- */

static gnutls_x509_crt_t issue(fx *f, const spec *s, est_err want) {
  pki_csr *c = csr_make(f, s);
  pki_issued is;
  assert_int_equal(pki_issue(f->ca, c, &is), want);
  pki_csr_free(c);
  if (want != EST_OK) {
    assert_null(is.der);
    return NULL;
  }
  gnutls_x509_crt_t crt;
  gnutls_datum_t d = {is.der, (unsigned)is.der_len};
  assert_int_equal(gnutls_x509_crt_init(&crt), 0);
  assert_int_equal(gnutls_x509_crt_import(crt, &d, GNUTLS_X509_FMT_DER), 0);
  pki_issued_clear(&is);
  return crt;
}

/* The purposes of @p crt, as a bit set. */
static unsigned eku_of(gnutls_x509_crt_t crt) {
  unsigned bits = 0;
  for (unsigned i = 0;; i++) {
    char oid[128];
    size_t n = sizeof oid;
    int rc = gnutls_x509_crt_get_key_purpose_oid(crt, i, oid, &n, NULL);
    if (rc < 0)
      break;
    if (strcmp(oid, GNUTLS_KP_TLS_WWW_CLIENT) == 0)
      bits |= PKI_EKU_CLIENT_AUTH;
    else if (strcmp(oid, GNUTLS_KP_TLS_WWW_SERVER) == 0)
      bits |= PKI_EKU_SERVER_AUTH;
    else
      bits |= 0x100;
  }
  return bits;
}

static void test_profile_eku(void **state) {
  fx *f = *state;
  unsigned eku = 0;
  assert_int_equal(pki_eku_parse("clientAuth", &eku), EST_OK);
  assert_int_equal(eku, PKI_EKU_CLIENT_AUTH);
  assert_int_equal(pki_eku_parse(" serverAuth , clientAuth", &eku), EST_OK);
  assert_int_equal(eku, PKI_EKU_CLIENT_AUTH | PKI_EKU_SERVER_AUTH);
  assert_int_equal(pki_eku_parse("codeSigning", &eku), EST_ERR_INVALID);
  assert_int_equal(pki_eku_parse("", &eku), EST_ERR_INVALID);

  /* The default: clientAuth only, whatever the CSR asked for. */
  gnutls_x509_crt_t crt = issue(f, &(spec){0}, EST_OK);
  assert_int_equal(eku_of(crt), PKI_EKU_CLIENT_AUTH);
  gnutls_x509_crt_deinit(crt);
  pki_profile p = {PKI_EKU_CLIENT_AUTH | PKI_EKU_SERVER_AUTH, 4096, ""};
  assert_int_equal(pki_ca_set_profile(f->ca, &p), EST_OK);
  crt = issue(f, &(spec){0}, EST_OK);
  assert_int_equal(eku_of(crt), PKI_EKU_CLIENT_AUTH | PKI_EKU_SERVER_AUTH);
  gnutls_x509_crt_deinit(crt);
  p.eku = PKI_EKU_SERVER_AUTH;
  assert_int_equal(pki_ca_set_profile(f->ca, &p), EST_OK);
  crt = issue(f, &(spec){0}, EST_OK);
  assert_int_equal(eku_of(crt), PKI_EKU_SERVER_AUTH);
  gnutls_x509_crt_deinit(crt);
  /* Bad profiles are refused and change nothing. */
  pki_profile bad[] = {{0, 4096, ""}, {0x4, 4096, ""}, {PKI_EKU_CLIENT_AUTH, 0, ""},
                       {PKI_EKU_CLIENT_AUTH, PKI_CERT_MAX + 1, ""}};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    assert_int_equal(pki_ca_set_profile(f->ca, &bad[i]), EST_ERR_INVALID);
  crt = issue(f, &(spec){0}, EST_OK);
  assert_int_equal(eku_of(crt), PKI_EKU_SERVER_AUTH);
  gnutls_x509_crt_deinit(crt);
  p.eku = PKI_EKU_CLIENT_AUTH;
  assert_int_equal(pki_ca_set_profile(f->ca, &p), EST_OK);
}

static void test_profile_cert_size(void **state) {
  fx *f = *state;
  /* 8 long names: about 1.5 KB of certificate. */
  spec big = {.sans = {DNS("a-long-label-of-forty-characters-or-so-1.and-another-long-label.example"),
                       DNS("a-long-label-of-forty-characters-or-so-2.and-another-long-label.example"),
                       DNS("a-long-label-of-forty-characters-or-so-3.and-another-long-label.example"),
                       DNS("a-long-label-of-forty-characters-or-so-4.and-another-long-label.example"),
                       DNS("a-long-label-of-forty-characters-or-so-5.and-another-long-label.example"),
                       DNS("a-long-label-of-forty-characters-or-so-6.and-another-long-label.example"),
                       DNS("a-long-label-of-forty-characters-or-so-7.and-another-long-label.example"),
                       DNS("a-long-label-of-forty-characters-or-so-8.and-another-long-label.example")}};
  pki_csr *c = csr_make(f, &big);
  pki_issued is;
  assert_int_equal(pki_issue(f->ca, c, &is), EST_OK);
  size_t size = is.der_len;
  pki_issued_clear(&is);
  assert_true(size > 900);
  /* The cap is on the certificate as written (its ECDSA signature varies
   * by a few bytes from one issuance to the next). */
  pki_profile p = {PKI_EKU_CLIENT_AUTH, size - 16, ""};
  assert_int_equal(pki_ca_set_profile(f->ca, &p), EST_OK);
  assert_int_equal(pki_issue(f->ca, c, &is), EST_ERR_BAD_CSR);
  assert_null(is.der);
  p.max_cert_bytes = size + 16;
  assert_int_equal(pki_ca_set_profile(f->ca, &p), EST_OK);
  assert_int_equal(pki_issue(f->ca, c, &is), EST_OK);
  assert_true(is.der_len > size - 16 && is.der_len <= size + 16);
  pki_issued_clear(&is);
  pki_csr_free(c);
  p.max_cert_bytes = 700;
  assert_int_equal(pki_ca_set_profile(f->ca, &p), EST_OK);
  gnutls_x509_crt_t crt = issue(f, &(spec){0}, EST_OK); /* a small one still goes */
  gnutls_x509_crt_deinit(crt);
  p.max_cert_bytes = 4096;
  assert_int_equal(pki_ca_set_profile(f->ca, &p), EST_OK);
}

/* ---- everything in one request -------------------------------------------- */

/* The findings of issue 10 under the defaults, each refused. */
static void test_findings(void **state) {
  fx *f = *state;
  names_config c = defaults();
  expect(f, &c, &(spec){.sans = {DNS("*.example.com")}}, NULL, EST_ERR_FORBIDDEN, NULL);
  expect(f, &c, &(spec){.sans = {URI("https://bank.example/")}}, NULL, EST_ERR_FORBIDDEN, NULL);
  expect(f, &c, &(spec){.sans = {EMAIL("ceo@example.com")}}, NULL, EST_ERR_FORBIDDEN, NULL);
  expect(f, &c, &(spec){.dns_count = 600}, NULL, EST_ERR_BAD_CSR, "600 subjectAltNames");
  /* With the fleet setting, another device's name and bank.example too. */
  set(&c, NAMES_FIELD_SUBJECT_MATCH, "idevid-serial");
  set(&c, NAMES_FIELD_DNS_PATTERNS, "*.devices.example.com");
  gnutls_datum_t idev = cert_der(f->rsa2048, "CN=idevid-0005,serialNumber=device-005", false);
  names_request rq = {.check_key = true, .client_cert = idev.data, .client_cert_len = idev.size};
  expect(f, &c, &(spec){.dn = "O=Other Corp,CN=device-001"}, &rq, EST_ERR_SUBJECT_MISMATCH,
         "'device-001'");
  expect(f, &c, &(spec){.dn = "CN=device-001"}, &rq, EST_ERR_SUBJECT_MISMATCH, NULL);
  expect(f, &c, &(spec){.dn = "CN=device-005", .sans = {DNS("bank.example")}}, &rq,
         EST_ERR_FORBIDDEN, NULL);
  expect(f, &c, &(spec){.dn = "CN=device-005", .sans = {DNS("device-005.devices.example.com"),
                                                        IP4}},
         &rq, EST_OK, NULL);
  gnutls_free(idev.data);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_san_types_default),
    cmocka_unit_test(test_san_types_widened),
    cmocka_unit_test(test_dns_syntax),
    cmocka_unit_test(test_wildcards),
    cmocka_unit_test(test_patterns),
    cmocka_unit_test(test_pattern_option_syntax),
    cmocka_unit_test(test_word_options),
    cmocka_unit_test(test_san_count),
    cmocka_unit_test(test_subject_size),
    cmocka_unit_test(test_subject_attrs),
    cmocka_unit_test(test_subject_match_serial),
    cmocka_unit_test(test_subject_match_cn),
    cmocka_unit_test(test_critical_extensions),
    cmocka_unit_test(test_keys),
    cmocka_unit_test(test_weak_keys_never_parse),
    cmocka_unit_test(test_weak_hash),
    cmocka_unit_test(test_profile_eku),
    cmocka_unit_test(test_profile_cert_size),
    cmocka_unit_test(test_findings),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
