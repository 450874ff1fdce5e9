/* Identity/PoP linking: the CSR challengePassword against the DTLS channel
 * binding (RFC 7030 §3.5, RFC 9148 §3, docs/decisions.md §9). */
#include "pop.h"

#include <gnutls/gnutls.h>
#include <stdbool.h>
#include <string.h>

/* tls-unique is 12 bytes, tls-exporter 32 (RFC 9266); anything far larger
 * is a caller bug, and base64 of it would not fit the 255-byte
 * challengePassword anyway (RFC 7030 §3.5). */
#define POP_BIND_MAX 64u

est_err pop_mode_parse(const char *s, pop_mode *out) {
  static const char *const names[POP__MAX] = {
      [POP_OFF] = "off", [POP_VERIFY] = "verify", [POP_REQUIRE] = "require"};

  if (!s || !out)
    return EST_ERR_INVALID;
  for (int m = 0; m < POP__MAX; m++) {
    if (strcmp(s, names[m]) == 0) {
      *out = (pop_mode)m;
      return EST_OK;
    }
  }
  return EST_ERR_INVALID;
}

/* Equal-length compare whose time does not depend on where the bytes
 * differ; the length is public (it follows from the binding's size). */
static bool ct_equal(const uint8_t *a, const uint8_t *b, size_t n) {
  volatile uint8_t diff = 0;
  for (size_t i = 0; i < n; i++)
    diff |= a[i] ^ b[i];
  return diff == 0;
}

/* Does @p challenge equal base64(@p bind) (RFC 4648 §4, padded, as RFC 7030
 * §3.5 says)? *err gets EST_ERR_NOMEM if GnuTLS cannot encode. */
static bool matches_b64(const char *challenge, size_t clen, const uint8_t *bind,
                        size_t blen, est_err *err) {
  gnutls_datum_t in, enc = {NULL, 0};
  bool eq = false;

  if (!bind || blen == 0)
    return false;
  if (blen > POP_BIND_MAX) {
    *err = EST_ERR_INVALID;
    return false;
  }
  /* GnuTLS takes a non-const datum but only reads it. */
  in.data = (unsigned char *)(uintptr_t)bind;
  in.size = (unsigned)blen;
  if (gnutls_base64_encode2(&in, &enc) < 0) {
    *err = EST_ERR_NOMEM;
    return false;
  }
  /* Exact match only: no trimming, so only padding-exact standard
   * base64 of the whole binding is accepted. */
  if (enc.size == clen)
    eq = ct_equal(enc.data, (const uint8_t *)challenge, clen);
  gnutls_free(enc.data);
  return eq;
}

est_err pop_check(pop_mode mode, const char *challenge,
                  const uint8_t *tls_unique, size_t unique_len,
                  const uint8_t *exporter, size_t exporter_len) {
  est_err err = EST_OK;
  size_t clen;
  bool ok;

  /* Checked first so the switch needs no default and -Wswitch stays. */
  if ((unsigned)mode >= POP__MAX)
    return EST_ERR_INVALID;
  switch (mode) {
  case POP_OFF:
    return EST_OK;
  case POP_VERIFY:
    /* RFC 7030 §3.5: absent means no binding was supplied. */
    if (!challenge)
      return EST_OK;
    break;
  case POP_REQUIRE:
    if (!challenge)
      return EST_ERR_POP_LINKING;
    break;
  case POP__MAX:
    return EST_ERR_INVALID;
  }

  /* Both candidates are always computed and compared: tls-unique for
   * DTLS 1.2, tls-exporter (RFC 9266) for DTLS 1.3 (RFC 9148 §3). */
  clen = strlen(challenge);
  ok = matches_b64(challenge, clen, tls_unique, unique_len, &err);
  ok |= matches_b64(challenge, clen, exporter, exporter_len, &err);
  if (err != EST_OK)
    return err;
  return ok ? EST_OK : EST_ERR_POP_LINKING;
}
