/* Keys on a PKCS#11 token: what host and plugin share (token.h). */
#include "common/token.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gnutls/pkcs11.h>

#include "common/keyfile.h"

est_err est_pin_file_read(const char *path, char **pin, char *why, size_t why_len) {
  char buf[EST_PIN_MAX + 2];
  bool group = false;
  *pin = NULL;
  est_err rc = est_keyfile_check(path, &group, why, why_len);
  if (rc != EST_OK)
    return rc;
  FILE *f = fopen(path, "re");
  size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
  int e = errno;
  if (f)
    fclose(f);
  buf[n] = '\0';
  buf[strcspn(buf, "\r\n")] = '\0';
  if (!f || n > EST_PIN_MAX || !buf[0]) {
    snprintf(why, why_len, "'%s': %s", path,
             !f ? strerror(e) : n > EST_PIN_MAX ? "longer than 256 bytes" : "empty");
    rc = EST_ERR_CONFIG;
  } else if (!(*pin = strdup(buf))) {
    rc = EST_ERR_NOMEM;
  }
  explicit_bzero(buf, sizeof buf);
  return rc;
}

void est_pin_free(char *pin) {
  if (!pin)
    return;
  explicit_bzero(pin, strlen(pin));
  free(pin);
}

int est_token_pin_once(void *userdata, int attempt, const char *token_url,
                       const char *token_label, unsigned flags, char *pin, size_t pin_max) {
  const char *given = userdata;
  (void)token_url;
  (void)token_label;
  if (!given || attempt > 0 || (flags & GNUTLS_PIN_WRONG) || strlen(given) >= pin_max)
    return -1;
  memcpy(pin, given, strlen(given) + 1);
  return 0;
}

est_err est_token_key_open(const char *uri, const char *pin, gnutls_pubkey_t cert_pub,
                           gnutls_privkey_t *out, char *why, size_t why_len) {
  static const unsigned char probe[] = "est-coaps token check";
  gnutls_datum_t data = {(unsigned char *)(uintptr_t)probe, sizeof probe}, sig = {NULL, 0};
  gnutls_pubkey_t pub = NULL;
  gnutls_privkey_t key = NULL;
  unsigned char a[64], b[64];
  size_t la = sizeof a, lb = sizeof b;
  est_err rc = EST_OK;
  *out = NULL;
  int r = gnutls_privkey_init(&key);
  if (r < 0)
    return EST_ERR_NOMEM;
  /* Casting away const: GnuTLS only reads its userdata back to us. */
  gnutls_privkey_set_pin_function(key, est_token_pin_once, (void *)(uintptr_t)pin);
  r = gnutls_privkey_import_url(key, uri, 0);
  if (r >= 0)
    r = gnutls_privkey_sign_data(key, GNUTLS_DIG_SHA256, 0, &data, &sig);
  if (r < 0) {
    snprintf(why, why_len, "the token key does not sign (%s%s)",
             r == GNUTLS_E_PKCS11_PIN_ERROR ? "PIN refused or missing: " : "",
             gnutls_strerror(r));
    gnutls_privkey_deinit(key);
    return EST_ERR_CONFIG;
  }
  if (gnutls_pubkey_init(&pub) < 0 || gnutls_pubkey_import_privkey(pub, key, 0, 0) < 0 ||
      gnutls_pubkey_get_key_id(pub, GNUTLS_KEYID_USE_SHA256, a, &la) < 0 ||
      gnutls_pubkey_get_key_id(cert_pub, GNUTLS_KEYID_USE_SHA256, b, &lb) < 0 || la != lb ||
      memcmp(a, b, la) != 0) {
    snprintf(why, why_len, "the token key is not the certificate's");
    rc = EST_ERR_KEY_MISMATCH;
  }
  gnutls_free(sig.data);
  if (pub)
    gnutls_pubkey_deinit(pub);
  if (rc == EST_OK)
    *out = key;
  else
    gnutls_privkey_deinit(key);
  return rc;
}
