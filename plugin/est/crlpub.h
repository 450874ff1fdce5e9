/**
 * @file crlpub.h
 * @brief Publishing this CA's CRL (RFC 5280 §5) to crl_file: signed at
 * start, again within 2 s of every revocation (whichever process made it),
 * and again halfway through its validity, so a verifier never holds one
 * past nextUpdate (docs/decisions.md §14). Signing and writing run on the
 * worker thread; the loop only reads the store and records the result.
 */
#ifndef EST_CRLPUB_H
#define EST_CRLPUB_H

#include <stdbool.h>

#include <coapd/plugin.h>

#include "common/est_err.h"
#include "pki.h"
#include "store/store.h"
#include "worker.h"

/** How often the store is asked whether something was revoked. */
#define CRLPUB_POLL_S 2u
/** After a failed publication, the next try. */
#define CRLPUB_RETRY_S 30u

typedef struct crlpub crlpub;

typedef struct crlpub_config {
  const char *path;    /**< crl_file: DER, replaced atomically */
  unsigned validity_s; /**< crl_validity: nextUpdate - thisUpdate */
} crlpub_config;

/** @p ca, @p s, @p wk and @p api are borrowed and outlive the publisher;
 * its jobs come back through the worker's finish hook. */
est_err crlpub_new(const crlpub_config *cfg, pki_ca *ca, store *s, worker *wk,
                   const coapd_host_api *api, crlpub **out) EST_MUST_CHECK;

/** Free it; the worker must be stopped first (its job, if any, dropped). */
void crlpub_free(crlpub *c);

/** A reload replaced the CA (borrowed, like crlpub_new's): the next tick
 * signs the CRL again with it. */
void crlpub_set_ca(crlpub *c, pki_ca *ca);

/** From the plugin tick: publish when due. Returns the seconds until it
 * wants to be asked again. */
unsigned crlpub_tick(crlpub *c, long long now);

#endif /* EST_CRLPUB_H */
