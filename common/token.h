/**
 * @file token.h
 * @brief Keys on a PKCS#11 token (RFC 7512 URIs, docs/decisions.md §20), as
 * the host (dtls_key) and the plugin (ca_key, https_key) use them: the PIN
 * file, the PIN callback that answers once, and the start-up check that a
 * token key signs and is the certificate's. GnuTLS does the PKCS#11.
 */
#ifndef EST_COMMON_TOKEN_H
#define EST_COMMON_TOKEN_H

#include <stddef.h>

#include <gnutls/abstract.h>

#include "common/est_err.h"

/** Longest PIN a *_pin_file may hold. */
#define EST_PIN_MAX 256u

/**
 * Read a PIN file: the mode rules of a key file (keyfile.h), one line, at
 * most EST_PIN_MAX bytes, not empty. EST_OK with *pin (free with
 * est_pin_free()); else the reason in @p why (never the PIN).
 */
est_err est_pin_file_read(const char *path, char **pin, char *why,
                          size_t why_len) EST_MUST_CHECK;

/** Wipe and free a PIN. NULL is a no-op. */
void est_pin_free(char *pin);

/**
 * A gnutls_pin_callback_t: @p userdata is the PIN (NUL-terminated) or NULL.
 * It answers the first ask only: a refused PIN tried again counts towards
 * locking the token.
 */
int est_token_pin_once(void *userdata, int attempt, const char *token_url,
                       const char *token_label, unsigned flags, char *pin, size_t pin_max);

/**
 * Open the key at @p uri with @p pin (kept by the caller for the key's
 * life: GnuTLS may log in again), sign once (a login happens here), and
 * check it is @p cert_pub's key. EST_OK with *out; EST_ERR_CONFIG with the
 * reason in @p why ("PIN refused or missing: ..." for a PIN error; never
 * the PIN), EST_ERR_KEY_MISMATCH.
 */
est_err est_token_key_open(const char *uri, const char *pin, gnutls_pubkey_t cert_pub,
                           gnutls_privkey_t *out, char *why, size_t why_len) EST_MUST_CHECK;

#endif /* EST_COMMON_TOKEN_H */
