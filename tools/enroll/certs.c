/* PKCS#7 certs-only / X.509 handling and issued-certificate checks. */
#include "certs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <gnutls/pkcs7.h>

#include "files.h"

void ec_certs_clear(ec_certs *c) {
  if (!c)
    return;
  for (size_t i = 0; i < c->count; i++)
    gnutls_x509_crt_deinit(c->crt[i]);
  free(c->crt);
  c->crt = NULL;
  c->count = 0;
}

/* Take ownership of @p crt (deinit on failure). */
static est_err push(ec_certs *c, gnutls_x509_crt_t crt) {
  if (c->count >= EC_CERTS_MAX) {
    gnutls_x509_crt_deinit(crt);
    return EST_ERR_TOO_LARGE;
  }
  gnutls_x509_crt_t *n = realloc(c->crt, (c->count + 1) * sizeof *n);
  if (!n) {
    gnutls_x509_crt_deinit(crt);
    return EST_ERR_NOMEM;
  }
  c->crt = n;
  c->crt[c->count++] = crt;
  return EST_OK;
}

est_err ec_certs_add_der(ec_certs *c, const uint8_t *der, size_t len) {
  gnutls_x509_crt_t crt;
  if (!c || !der || !len || len > UINT32_MAX)
    return EST_ERR_INVALID;
  if (gnutls_x509_crt_init(&crt) < 0)
    return EST_ERR_NOMEM;
  gnutls_datum_t d = {(unsigned char *)(uintptr_t)der, (unsigned)len};
  if (gnutls_x509_crt_import(crt, &d, GNUTLS_X509_FMT_DER) < 0) {
    gnutls_x509_crt_deinit(crt);
    return EST_ERR_MALFORMED;
  }
  return push(c, crt);
}

est_err ec_certs_add_p7(ec_certs *c, const uint8_t *der, size_t len) {
  est_err rc = EST_ERR_MALFORMED;
  gnutls_pkcs7_t p7 = NULL;
  if (!c || !der || !len || len > UINT32_MAX)
    return EST_ERR_INVALID;
  if (gnutls_pkcs7_init(&p7) < 0)
    return EST_ERR_NOMEM;
  gnutls_datum_t d = {(unsigned char *)(uintptr_t)der, (unsigned)len};
  if (gnutls_pkcs7_import(p7, &d, GNUTLS_X509_FMT_DER) < 0)
    goto out;
  int n = gnutls_pkcs7_get_crt_count(p7);
  if (n <= 0)
    goto out;
  for (int i = 0; i < n; i++) {
    gnutls_datum_t raw = {NULL, 0};
    if (gnutls_pkcs7_get_crt_raw2(p7, (unsigned)i, &raw) < 0)
      goto out;
    rc = ec_certs_add_der(c, raw.data, raw.size);
    gnutls_free(raw.data);
    if (rc != EST_OK)
      goto out;
  }
  rc = EST_OK;
out:
  gnutls_pkcs7_deinit(p7);
  return rc;
}

est_err ec_certs_add_pem_file(ec_certs *c, const char *path, char *diag,
                              size_t diag_len) {
  uint8_t *buf = NULL;
  size_t len = 0;
  gnutls_x509_crt_t *list = NULL;
  unsigned n = 0;
  if (!c || !path)
    return EST_ERR_INVALID;
  est_err rc = ec_file_read(path, EC_FILE_MAX, &buf, &len, diag, diag_len);
  if (rc != EST_OK)
    return rc;
  gnutls_datum_t d = {buf, (unsigned)len};
  if (gnutls_x509_crt_list_import2(&list, &n, &d, GNUTLS_X509_FMT_PEM, 0) < 0 ||
      n == 0) {
    if (diag && diag_len)
      snprintf(diag, diag_len, "'%s': no PEM certificate", path);
    rc = EST_ERR_MALFORMED;
    goto out;
  }
  for (unsigned i = 0; i < n; i++) {
    gnutls_x509_crt_t crt = list[i];
    list[i] = NULL;
    if (rc == EST_OK)
      rc = push(c, crt);
    else
      gnutls_x509_crt_deinit(crt);
  }
  if (rc == EST_ERR_TOO_LARGE && diag && diag_len)
    snprintf(diag, diag_len, "'%s': more than %u certificates", path, EC_CERTS_MAX);
out:
  gnutls_free(list);
  free(buf);
  return rc;
}

static est_err append(uint8_t **buf, size_t *len, const gnutls_datum_t *d) {
  uint8_t *n = realloc(*buf, *len + d->size + 1);
  if (!n)
    return EST_ERR_NOMEM;
  memcpy(n + *len, d->data, d->size);
  *len += d->size;
  *buf = n;
  return EST_OK;
}

est_err ec_certs_pem(const ec_certs *c, size_t first, uint8_t **out, size_t *len) {
  est_err rc = EST_OK;
  uint8_t *buf = NULL;
  size_t n = 0;
  if (!c || !out || !len || first >= c->count)
    return EST_ERR_INVALID;
  for (size_t k = 0; k < c->count && rc == EST_OK; k++) {
    size_t i = k == 0 ? first : (k <= first ? k - 1 : k);
    gnutls_datum_t d = {NULL, 0};
    if (gnutls_x509_crt_export2(c->crt[i], GNUTLS_X509_FMT_PEM, &d) < 0)
      rc = EST_ERR_INTERNAL;
    else
      rc = append(&buf, &n, &d);
    gnutls_free(d.data);
  }
  if (rc != EST_OK) {
    free(buf);
    return rc;
  }
  *out = buf;
  *len = n;
  return EST_OK;
}

est_err ec_cert_der(gnutls_x509_crt_t crt, uint8_t **out, size_t *len) {
  gnutls_datum_t d = {NULL, 0};
  if (!crt || !out || !len)
    return EST_ERR_INVALID;
  if (gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_DER, &d) < 0)
    return EST_ERR_INTERNAL;
  *out = malloc(d.size ? d.size : 1);
  if (!*out) {
    gnutls_free(d.data);
    return EST_ERR_NOMEM;
  }
  memcpy(*out, d.data, d.size);
  *len = d.size;
  gnutls_free(d.data);
  return EST_OK;
}

bool ec_cert_matches_key(gnutls_x509_crt_t crt, gnutls_x509_privkey_t key) {
  /* Key identifiers are hashes of the SubjectPublicKeyInfo. */
  uint8_t a[64], b[64];
  size_t al = sizeof a, bl = sizeof b;
  if (!crt || !key)
    return false;
  if (gnutls_x509_crt_get_key_id(crt, GNUTLS_KEYID_USE_SHA256, a, &al) < 0 ||
      gnutls_x509_privkey_get_key_id(key, GNUTLS_KEYID_USE_SHA256, b, &bl) < 0)
    return false;
  return al == bl && memcmp(a, b, al) == 0;
}

est_err ec_certs_check_issued(const ec_certs *issued, const ec_certs *anchors,
                              gnutls_x509_privkey_t key, size_t *leaf,
                              char *diag, size_t diag_len) {
  est_err rc = EST_ERR_PKI;
  gnutls_x509_trust_list_t tl = NULL;
  gnutls_x509_crt_t *chain = NULL;
  gnutls_datum_t why = {NULL, 0};
  size_t li = 0;
  unsigned status = 0;

  if (!issued || !anchors || !key || !leaf || issued->count == 0)
    return EST_ERR_INVALID;
  while (li < issued->count && !ec_cert_matches_key(issued->crt[li], key))
    li++;
  if (li == issued->count) {
    if (diag && diag_len)
      snprintf(diag, diag_len, "the issued certificate does not carry our public key");
    return EST_ERR_KEY_MISMATCH;
  }
  if (anchors->count == 0) {
    if (diag && diag_len)
      snprintf(diag, diag_len, "no trust anchors to check the issued certificate");
    return EST_ERR_PKI;
  }
  if (gnutls_x509_trust_list_init(&tl, 0) < 0)
    return EST_ERR_NOMEM;
  /* add_trust_mem copies, so the anchors stay ours. */
  for (size_t i = 0; i < anchors->count; i++) {
    gnutls_datum_t d = {NULL, 0};
    int r = gnutls_x509_crt_export2(anchors->crt[i], GNUTLS_X509_FMT_DER, &d);
    if (r >= 0)
      r = gnutls_x509_trust_list_add_trust_mem(tl, &d, NULL, GNUTLS_X509_FMT_DER, 0, 0);
    gnutls_free(d.data);
    if (r < 0) {
      rc = EST_ERR_INTERNAL;
      goto out;
    }
  }
  chain = calloc(issued->count, sizeof *chain);
  if (!chain) {
    rc = EST_ERR_NOMEM;
    goto out;
  }
  chain[0] = issued->crt[li];
  for (size_t i = 0, k = 1; i < issued->count; i++)
    if (i != li)
      chain[k++] = issued->crt[i];
  if (gnutls_x509_trust_list_verify_crt2(tl, chain, (unsigned)issued->count, NULL, 0,
                                         0, &status, NULL) < 0) {
    rc = EST_ERR_INTERNAL;
    goto out;
  }
  if (status != 0) {
    if (diag && diag_len) {
      if (gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509,
                                                       &why, 0) >= 0)
        snprintf(diag, diag_len, "the issued certificate does not verify: %s",
                 (const char *)why.data);
      else
        snprintf(diag, diag_len, "the issued certificate does not verify");
    }
    rc = EST_ERR_PKI;
    goto out;
  }
  *leaf = li;
  rc = EST_OK;
out:
  gnutls_free(why.data);
  free(chain);
  if (tl)
    gnutls_x509_trust_list_deinit(tl, 1);
  return rc;
}

est_err ec_cert_seconds_left(gnutls_x509_crt_t crt, long long now, long long *left) {
  if (!crt || !left)
    return EST_ERR_INVALID;
  time_t t = gnutls_x509_crt_get_expiration_time(crt);
  if (t == (time_t)-1)
    return EST_ERR_MALFORMED;
  *left = (long long)t - now;
  return EST_OK;
}
