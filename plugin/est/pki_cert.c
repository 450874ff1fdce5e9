/* Read-only looks at certificates (subjects, validity, fingerprints) for
 * logs and the store; part of the PKI module (pki.h). */
#include <stdlib.h>
#include <string.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "pki.h"

/* The DER of one certificate is small; anything larger is not ours. */
#define CERT_DER_MAX 65536u

static est_err import(const uint8_t *der, size_t len, gnutls_x509_crt_t *crt) {
  if (!der || len == 0 || len > CERT_DER_MAX)
    return EST_ERR_INVALID;
  if (gnutls_x509_crt_init(crt) < 0)
    return EST_ERR_NOMEM;
  gnutls_datum_t d = {(unsigned char *)(uintptr_t)der, (unsigned)len};
  if (gnutls_x509_crt_import(*crt, &d, GNUTLS_X509_FMT_DER) < 0) {
    gnutls_x509_crt_deinit(*crt);
    return EST_ERR_MALFORMED;
  }
  return EST_OK;
}

char *pki_cert_subject(const uint8_t *der, size_t len) {
  gnutls_x509_crt_t crt;
  gnutls_datum_t dn = {NULL, 0};
  char *out = NULL;
  if (import(der, len, &crt) != EST_OK)
    return NULL;
  if (gnutls_x509_crt_get_dn3(crt, &dn, 0) >= 0 && dn.data) {
    out = malloc(dn.size + 1);
    if (out) {
      memcpy(out, dn.data, dn.size);
      out[dn.size] = '\0';
    }
  }
  gnutls_free(dn.data);
  gnutls_x509_crt_deinit(crt);
  return out;
}

est_err pki_cert_validity(const uint8_t *der, size_t len, long long *not_before,
                          long long *not_after) {
  gnutls_x509_crt_t crt;
  est_err rc = import(der, len, &crt);
  if (rc != EST_OK)
    return rc;
  time_t nb = gnutls_x509_crt_get_activation_time(crt);
  time_t na = gnutls_x509_crt_get_expiration_time(crt);
  gnutls_x509_crt_deinit(crt);
  if (nb == (time_t)-1 || na == (time_t)-1)
    return EST_ERR_MALFORMED;
  *not_before = (long long)nb;
  *not_after = (long long)na;
  return EST_OK;
}

est_err pki_sha256(const uint8_t *data, size_t len, uint8_t out[32]) {
  return gnutls_hash_fast(GNUTLS_DIG_SHA256, data, len, out) < 0 ? EST_ERR_TLS : EST_OK;
}
