/**
 * @file https.h
 * @brief EST over HTTPS (RFC 7030) beside EST-coaps: the HTTP edge of the
 * same enrollment path (request -> policy -> enroll -> reply), so one CA,
 * one policy and one approval queue serve both (docs/decisions.md §16).
 *
 * libmicrohttpd (built with GnuTLS) runs without threads of its own: its
 * epoll fds are watched by coapd's loop (watch_fd) and its timeouts are
 * run from the plugin tick, so nothing here blocks the CoAP loop. Key
 * generation goes to the plugin's worker with the connection suspended.
 * Loop thread only.
 */
#ifndef EST_HTTPS_H
#define EST_HTTPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/est_err.h"

/** https_listen lines one plugin takes. */
#define HTTPS_LISTEN_MAX 8
/** Longest ADDR of an https_listen line. */
#define HTTPS_ADDR_MAX 64

struct est_plugin;
typedef struct https_srv https_srv;

typedef struct https_addr {
  char addr[HTTPS_ADDR_MAX]; /**< numeric IPv4 or IPv6 address */
  unsigned port;
  unsigned line;             /**< coapd.conf line, for messages */
} https_addr;

typedef struct https_config {
  const char *cert_file;     /**< server certificate (PEM, chain after it) */
  const char *key_file;      /**< its key (PEM), or a pkcs11: URI of a key
                                  on a token (docs/decisions.md §20) */
  const char *key_pin;       /**< that token's PIN, or NULL */
  /** PEM files whose CAs the TLS CertificateRequest names (our CA,
   *  idevid_trust, ra_trust): what a client may authenticate with. */
  const char *trust_files[3];
  size_t ntrust;
  https_addr listen[HTTPS_LISTEN_MAX];
  size_t nlisten;
  unsigned max_conn;         /**< connections at once, over all listeners */
  unsigned max_per_ip;       /**< from one client address */
  unsigned timeout_s;        /**< idle seconds before a connection is closed */
  unsigned header_bytes;     /**< request line and headers must fit */
  bool anonymous;            /**< simpleenroll without a client certificate
                                  waits for an operator */
} https_config;

/** Check "ADDR PORT" (one https_listen line) and parse it into @p out. */
int https_addr_parse(const char *v, https_addr *out, char *why, size_t why_len);

/**
 * Start a TLS listener on every cfg->listen and watch it from the host
 * loop. @p p is borrowed (its CA, trust, store and worker are used per
 * request). On failure @p diag says why.
 */
est_err https_start(struct est_plugin *p, const https_config *cfg, https_srv **out,
                    char *diag, size_t diag_len) EST_MUST_CHECK;

/** Run what libmicrohttpd has due (timeouts); returns the milliseconds
 * until it wants to run again. */
uint32_t https_tick(https_srv *h);

/** Close every connection and stop. Call after the worker has stopped
 * (every keygen job of ours was handed back). NULL is a no-op. */
void https_stop(https_srv *h);

#endif /* EST_HTTPS_H */
