/* Keys and PKCS#10 CSRs (RFC 2986) on GnuTLS, with the identity/PoP
 * linking value in challengePassword (RFC 7030 §3.5, RFC 9148 §3). */
#include "csr.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gnutls/abstract.h>

#include "files.h"

#define OID_SAN "2.5.29.17"

static void diag_set(char *diag, size_t diag_len, const char *msg) {
  if (diag && diag_len)
    snprintf(diag, diag_len, "%s", msg);
}

est_err ec_key_type_parse(const char *s, ec_key_type *out) {
  static const char *const names[EC_KEY__MAX] = {"ec-p256", "ec-p384",
                                                 "rsa-2048", "rsa-3072"};
  if (!s || !out)
    return EST_ERR_INVALID;
  for (int i = 0; i < EC_KEY__MAX; i++)
    if (strcmp(s, names[i]) == 0) {
      *out = (ec_key_type)i;
      return EST_OK;
    }
  return EST_ERR_INVALID;
}

est_err ec_key_generate(ec_key_type type, gnutls_x509_privkey_t *out) {
  gnutls_x509_privkey_t key = NULL;
  gnutls_pk_algorithm_t pk = GNUTLS_PK_UNKNOWN;
  unsigned bits = 0;

  if (!out)
    return EST_ERR_INVALID;
  *out = NULL;
  switch (type) {
  case EC_KEY_EC_P256:
    pk = GNUTLS_PK_ECDSA;
    bits = GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1);
    break;
  case EC_KEY_EC_P384:
    pk = GNUTLS_PK_ECDSA;
    bits = GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP384R1);
    break;
  case EC_KEY_RSA_2048:
    pk = GNUTLS_PK_RSA;
    bits = 2048;
    break;
  case EC_KEY_RSA_3072:
    pk = GNUTLS_PK_RSA;
    bits = 3072;
    break;
  case EC_KEY__MAX:
    return EST_ERR_INVALID;
  }
  if (bits == 0)
    return EST_ERR_INVALID;
  if (gnutls_x509_privkey_init(&key) < 0)
    return EST_ERR_NOMEM;
  if (gnutls_x509_privkey_generate2(key, pk, bits, 0, NULL, 0) < 0) {
    gnutls_x509_privkey_deinit(key);
    return EST_ERR_INTERNAL;
  }
  *out = key;
  return EST_OK;
}

est_err ec_key_load(const char *path, gnutls_x509_privkey_t *out, char *diag,
                    size_t diag_len) {
  uint8_t *buf = NULL;
  size_t len = 0;
  gnutls_x509_privkey_t key = NULL;

  if (!out)
    return EST_ERR_INVALID;
  *out = NULL;
  est_err rc = ec_file_read(path, EC_KEY_FILE_MAX, &buf, &len, diag, diag_len);
  if (rc != EST_OK)
    return rc;
  if (gnutls_x509_privkey_init(&key) < 0) {
    rc = EST_ERR_NOMEM;
    goto out;
  }
  gnutls_datum_t d = {buf, (unsigned)len};
  /* Unencrypted only: a device key file is protected by its mode. */
  if (gnutls_x509_privkey_import2(key, &d, GNUTLS_X509_FMT_PEM, NULL,
                                  GNUTLS_PKCS_PLAIN) < 0) {
    if (diag && diag_len)
      snprintf(diag, diag_len, "'%s': not an unencrypted PEM private key", path);
    rc = EST_ERR_MALFORMED;
    goto out;
  }
  *out = key;
  key = NULL;
out:
  if (key)
    gnutls_x509_privkey_deinit(key);
  ec_file_free(buf, len);
  return rc;
}

est_err ec_key_import_pkcs8(const uint8_t *der, size_t len,
                            gnutls_x509_privkey_t *out) {
  gnutls_x509_privkey_t key = NULL;
  if (!der || !len || len > EC_KEY_FILE_MAX || !out)
    return EST_ERR_INVALID;
  *out = NULL;
  if (gnutls_x509_privkey_init(&key) < 0)
    return EST_ERR_NOMEM;
  gnutls_datum_t d = {(unsigned char *)(uintptr_t)der, (unsigned)len};
  /* CF 284 is an unencrypted PrivateKeyInfo (RFC 9148 §4.8, SKG-4). */
  if (gnutls_x509_privkey_import_pkcs8(key, &d, GNUTLS_X509_FMT_DER, NULL,
                                       GNUTLS_PKCS_PLAIN) < 0) {
    gnutls_x509_privkey_deinit(key);
    return EST_ERR_MALFORMED;
  }
  *out = key;
  return EST_OK;
}

est_err ec_key_write(gnutls_x509_privkey_t key, const char *path, char *diag,
                     size_t diag_len) {
  gnutls_datum_t pem = {NULL, 0};
  if (!key || !path)
    return EST_ERR_INVALID;
  if (gnutls_x509_privkey_export2_pkcs8(key, GNUTLS_X509_FMT_PEM, NULL,
                                        GNUTLS_PKCS_PLAIN, &pem) < 0)
    return EST_ERR_INTERNAL;
  est_err rc = ec_file_write_atomic(path, pem.data, pem.size, 0600, diag, diag_len);
  gnutls_memset(pem.data, 0, pem.size);
  gnutls_free(pem.data);
  return rc;
}

static bool dns_name_ok(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > 253)
    return false;
  for (size_t i = 0; i < n; i++)
    if (s[i] <= 0x20 || s[i] >= 0x7f)
      return false;
  return true;
}

/* Textual IPv4/IPv6 to the 4/16 bytes of an iPAddress SAN. */
static bool ip_parse(const char *s, uint8_t out[16], size_t *len) {
  if (inet_pton(AF_INET, s, out) == 1) {
    *len = 4;
    return true;
  }
  if (inet_pton(AF_INET6, s, out) == 1) {
    *len = 16;
    return true;
  }
  return false;
}

/* Subject and SANs given on the command line. */
static est_err set_names(gnutls_x509_crq_t crq, const ec_csr_params *p,
                         char *diag, size_t diag_len) {
  const char *err = NULL;
  if (!p->subject || !p->subject[0]) {
    diag_set(diag, diag_len, "--subject is empty");
    return EST_ERR_INVALID;
  }
  int rc = gnutls_x509_crq_set_dn(crq, p->subject, &err);
  if (rc < 0) {
    if (diag && diag_len)
      snprintf(diag, diag_len, "--subject '%s' is not an RFC 4514 DN%s%s%s",
               p->subject, err ? " (near '" : "", err ? err : "", err ? "')" : "");
    return EST_ERR_INVALID;
  }
  for (size_t i = 0; i < p->san_dns_count; i++) {
    const char *d = p->san_dns[i];
    if (!d || !dns_name_ok(d)) {
      if (diag && diag_len)
        snprintf(diag, diag_len, "--san-dns '%s' is not a DNS name", d ? d : "");
      return EST_ERR_INVALID;
    }
    if (gnutls_x509_crq_set_subject_alt_name(crq, GNUTLS_SAN_DNSNAME, d,
                                             (unsigned)strlen(d),
                                             GNUTLS_FSAN_APPEND) < 0)
      return EST_ERR_INTERNAL;
  }
  for (size_t i = 0; i < p->san_ip_count; i++) {
    uint8_t ip[16];
    size_t n = 0;
    const char *s = p->san_ip[i];
    if (!s || !ip_parse(s, ip, &n)) {
      if (diag && diag_len)
        snprintf(diag, diag_len, "--san-ip '%s' is not an IPv4 or IPv6 address",
                 s ? s : "");
      return EST_ERR_INVALID;
    }
    if (gnutls_x509_crq_set_subject_alt_name(crq, GNUTLS_SAN_IPADDRESS, ip,
                                             (unsigned)n, GNUTLS_FSAN_APPEND) < 0)
      return EST_ERR_INTERNAL;
  }
  return EST_OK;
}

/* DER of one AttributeValue: tag, definite length, content. */
static est_err ava_der(const gnutls_x509_ava_st *ava, uint8_t **out, size_t *len) {
  size_t n = ava->value.size, hdr = n < 0x80 ? 2 : n < 0x100 ? 3 : 4;
  if (n > 0xffff || ava->value_tag > 30)
    return EST_ERR_MALFORMED;
  uint8_t *b = malloc(hdr + n);
  if (!b)
    return EST_ERR_NOMEM;
  b[0] = (uint8_t)ava->value_tag; /* universal, primitive string types */
  if (hdr == 2) {
    b[1] = (uint8_t)n;
  } else if (hdr == 3) {
    b[1] = 0x81;
    b[2] = (uint8_t)n;
  } else {
    b[1] = 0x82;
    b[2] = (uint8_t)(n >> 8);
    b[3] = (uint8_t)n;
  }
  if (n)
    memcpy(b + hdr, ava->value.data, n);
  *out = b;
  *len = hdr + n;
  return EST_OK;
}

/* RFC 7030 §4.2.2: the re-enrollment CSR carries the subject and SAN of
 * the current certificate. The subject is copied AVA by AVA with the
 * original string types, so the server's byte comparison succeeds. */
static est_err copy_names(gnutls_x509_crq_t crq, const ec_csr_params *p,
                          char *diag, size_t diag_len) {
  est_err rc = EST_OK;
  gnutls_x509_crt_t crt = NULL;
  gnutls_datum_t san = {NULL, 0};
  gnutls_x509_dn_t dn;
  gnutls_x509_ava_st ava;
  unsigned critical = 0;
  bool multi = false;
  int r;

  if (gnutls_x509_crt_init(&crt) < 0)
    return EST_ERR_NOMEM;
  gnutls_datum_t d = {(unsigned char *)(uintptr_t)p->from_cert,
                      (unsigned)p->from_cert_len};
  if (gnutls_x509_crt_import(crt, &d, GNUTLS_X509_FMT_DER) < 0 ||
      gnutls_x509_crt_get_subject(crt, &dn) < 0) {
    diag_set(diag, diag_len, "the current certificate does not parse");
    rc = EST_ERR_MALFORMED;
    goto out;
  }
  for (int i = 0; !multi; i++) {
    r = gnutls_x509_dn_get_rdn_ava(dn, i, 0, &ava);
    if (r == GNUTLS_E_ASN1_ELEMENT_NOT_FOUND)
      break;
    if (r < 0) {
      rc = EST_ERR_MALFORMED;
      goto out;
    }
    multi = gnutls_x509_dn_get_rdn_ava(dn, i, 1, &ava) == 0;
  }
  if (multi) {
    /* GnuTLS can only write single-valued RDNs into a CSR. */
    diag_set(diag, diag_len,
             "the current certificate's subject has a multi-valued RDN, which "
             "cannot be copied into a CSR");
    rc = EST_ERR_MALFORMED;
    goto out;
  }
  for (int i = 0;; i++) {
    char oid[128];
    uint8_t *val = NULL;
    size_t vlen = 0;
    r = gnutls_x509_dn_get_rdn_ava(dn, i, 0, &ava);
    if (r == GNUTLS_E_ASN1_ELEMENT_NOT_FOUND)
      break;
    if (r < 0 || ava.oid.size == 0 || ava.oid.size >= sizeof oid) {
      rc = EST_ERR_MALFORMED;
      goto out;
    }
    memcpy(oid, ava.oid.data, ava.oid.size);
    oid[ava.oid.size] = '\0';
    rc = ava_der(&ava, &val, &vlen);
    if (rc != EST_OK)
      goto out;
    r = gnutls_x509_crq_set_dn_by_oid(crq, oid, 1, val, (unsigned)vlen);
    free(val);
    if (r < 0) {
      rc = EST_ERR_MALFORMED;
      goto out;
    }
  }
  r = gnutls_x509_crt_get_extension_by_oid2(crt, OID_SAN, 0, &san, &critical);
  if (r >= 0) {
    if (gnutls_x509_crq_set_extension_by_oid(crq, OID_SAN, san.data, san.size,
                                             critical) < 0) {
      rc = EST_ERR_INTERNAL;
      goto out;
    }
  } else if (r != GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE) {
    rc = EST_ERR_MALFORMED;
    goto out;
  }
out:
  gnutls_free(san.data);
  if (crt)
    gnutls_x509_crt_deinit(crt);
  return rc;
}

est_err ec_csr_params_check(const ec_csr_params *p, char *diag,
                            size_t diag_len) {
  gnutls_x509_crq_t crq = NULL;
  if (!p)
    return EST_ERR_INVALID;
  if (p->from_cert)
    return EST_OK;
  if (gnutls_x509_crq_init(&crq) < 0)
    return EST_ERR_NOMEM;
  est_err rc = set_names(crq, p, diag, diag_len);
  gnutls_x509_crq_deinit(crq);
  return rc;
}

est_err ec_csr_build(gnutls_x509_privkey_t key, const ec_csr_params *p,
                     uint8_t **der, size_t *der_len, char *diag,
                     size_t diag_len) {
  est_err rc = EST_ERR_INTERNAL;
  gnutls_x509_crq_t crq = NULL;
  gnutls_privkey_t pk = NULL;
  gnutls_datum_t out = {NULL, 0};
  gnutls_digest_algorithm_t dig = GNUTLS_DIG_SHA256;

  if (!key || !p || !der || !der_len)
    return EST_ERR_INVALID;
  *der = NULL;
  *der_len = 0;
  if (p->challenge && strlen(p->challenge) > EC_CHALLENGE_MAX)
    return EST_ERR_INVALID;
  if (gnutls_x509_crq_init(&crq) < 0) {
    crq = NULL;
    rc = EST_ERR_NOMEM;
    goto out;
  }
  if (gnutls_x509_crq_set_version(crq, 1) < 0)
    goto out;
  rc = p->from_cert ? copy_names(crq, p, diag, diag_len)
                    : set_names(crq, p, diag, diag_len);
  if (rc != EST_OK)
    goto out;
  rc = EST_ERR_INTERNAL;
  /* RFC 7030 §3.5: base64 of the channel binding, in the signed part. */
  if (p->challenge && gnutls_x509_crq_set_challenge_password(crq, p->challenge) < 0)
    goto out;
  if (gnutls_x509_crq_set_key(crq, key) < 0)
    goto out;
  if (gnutls_privkey_init(&pk) < 0) {
    pk = NULL;
    goto out;
  }
  if (gnutls_privkey_import_x509(pk, key, 0) < 0)
    goto out;
  /* A digest as strong as the curve (RFC 5480 §4). */
  unsigned bits = 0;
  if (gnutls_x509_privkey_get_pk_algorithm2(key, &bits) == GNUTLS_PK_ECDSA)
    dig = bits > 384 ? GNUTLS_DIG_SHA512 : bits > 256 ? GNUTLS_DIG_SHA384 : GNUTLS_DIG_SHA256;
  if (gnutls_x509_crq_privkey_sign(crq, pk, dig, 0) < 0)
    goto out;
  if (gnutls_x509_crq_export2(crq, GNUTLS_X509_FMT_DER, &out) < 0)
    goto out;
  if (out.size > EC_CSR_MAX) {
    diag_set(diag, diag_len, "the CSR is too large");
    rc = EST_ERR_TOO_LARGE;
    goto out;
  }
  *der = malloc(out.size);
  if (!*der) {
    rc = EST_ERR_NOMEM;
    goto out;
  }
  memcpy(*der, out.data, out.size);
  *der_len = out.size;
  rc = EST_OK;
out:
  gnutls_free(out.data);
  if (pk)
    gnutls_privkey_deinit(pk);
  if (crq)
    gnutls_x509_crq_deinit(crq);
  return rc;
}
