/**
 * @file registrar.h
 * @brief Registrar mode (RFC 9148 §5, docs/decisions.md §19): the CA is an
 * upstream EST server over HTTPS. This module opens the upstream client
 * (upstream.h), learns the upstream CA from its cacerts (at start, else
 * from the cache file of the last good answer; then every refresh_s and at
 * SIGHUP, on the loop), and its csrattrs. Enrollments themselves go
 * upstream through async.c.
 */
#ifndef EST_REGISTRAR_H
#define EST_REGISTRAR_H

#include <stddef.h>
#include <stdint.h>

#include "est_plugin.h"

typedef struct registrar_config {
  const char *url;        /**< upstream */
  const char *ca_file;    /**< upstream_ca */
  const char *cert_file;  /**< upstream_cert, or NULL */
  const char *key_file;   /**< upstream_key, or NULL */
  const char *cache_file; /**< upstream_cache, or NULL: none */
  unsigned timeout_s;     /**< upstream_timeout */
  unsigned refresh_s;     /**< upstream_refresh */
  bool want_attrs;        /**< no local csr_attrs: serve the upstream's */
  unsigned line;          /**< the upstream line, for messages */
} registrar_config;

/** @p c as one string: a reload compares it. */
void registrar_signature(const registrar_config *c, char *out, size_t cap);

/**
 * Start: p->up, p->ca (a CA that signs nothing, pki_ca_from_p7) and
 * p->up_attrs. The first cacerts comes from the upstream now (at most
 * timeout_s; the loop is not running yet), else from the cache; neither
 * is an error that names the upstream and why.
 */
est_err registrar_start(est_plugin *p, const registrar_config *c) EST_MUST_CHECK;

/** Plugin tick: a refresh when one is due. Milliseconds to the next. */
uint32_t registrar_tick(est_plugin *p, long long now);

/** SIGHUP: refresh at the next tick. */
void registrar_refresh_now(est_plugin *p);

#endif /* EST_REGISTRAR_H */
