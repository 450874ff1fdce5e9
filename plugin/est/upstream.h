/**
 * @file upstream.h
 * @brief A registrar's client of its upstream EST server (RFC 9148 §5,
 * RFC 7030 over HTTPS; docs/decisions.md §19). libcurl's multi interface
 * runs on coapd's loop: its sockets and its timer are in one epoll set of
 * our own, which the host watches (watch_fd), so no call here blocks the
 * loop, except upstream_fetch_now(), which is for start-up only.
 *
 * The registrar authenticates with its RA certificate (upstream_cert, with
 * id-kp-cmcRA) and names the device by its certificate chain in the
 * EST-Device-Chain header (docs/decisions.md §17). Answers are translated
 * back here: base64 bodies (RFC 8951), PKCS#7 to the one certificate,
 * multipart/mixed to key and certificate, HTTP status to est_err
 * (status.h), 202 + Retry-After to "pending" with a Max-Age.
 *
 * Loop thread only.
 */
#ifndef EST_UPSTREAM_H
#define EST_UPSTREAM_H

#include <stddef.h>
#include <stdint.h>

#include <coapd/plugin.h>

#include "common/est_err.h"
#include "enroll.h"

typedef struct upstream upstream;

/** Longest upstream URL. */
#define UPSTREAM_URL_MAX 512u
/** Largest answer body read from the upstream. */
#define UPSTREAM_BODY_MAX (256u * 1024u)
/** Max-Age when the upstream is down, slow or answers 5xx without a
 * Retry-After (REG-15: 5.03, never 5.00 or 5.02). */
#define UPSTREAM_RETRY 10u

typedef struct upstream_config {
  const char *url;       /**< https://HOST[:PORT]/PATH, without trailing '/' */
  const char *ca_file;   /**< PEM trust anchors of the upstream's TLS certificate */
  const char *cert_file; /**< the registrar's RA certificate, PEM, or NULL */
  const char *key_file;  /**< its key, or NULL */
  unsigned timeout_s;    /**< one exchange, connect included */
} upstream_config;

/** Check @p url: https, a host, no query, fragment or user info, at most
 * UPSTREAM_URL_MAX. 0, or -1 with the reason in @p why. */
int upstream_url_check(const char *url, char *why, size_t why_len);

/** Set up (no connection yet). @p cfg's strings are copied. */
est_err upstream_open(const upstream_config *cfg, const coapd_host_api *api, upstream **out,
                      char *diag, size_t diag_len) EST_MUST_CHECK;

/** Stop: every transfer still running is dropped and its callback is not
 * called. NULL is a no-op. */
void upstream_close(upstream *u);

/**
 * GET @p op ("cacerts" or "csrattrs") now and wait for it (start-up only,
 * at most timeout_s): EST_OK with the DER body in *der (malloc);
 * EST_ERR_NOT_FOUND when the upstream has none (204, 404);
 * EST_ERR_UNAVAILABLE for anything else, with the reason in @p why.
 */
est_err upstream_fetch_now(upstream *u, const char *op, uint8_t **der, size_t *len, char *why,
                           size_t why_len) EST_MUST_CHECK;

/** What upstream_fetch() hands back: as upstream_fetch_now(); @p der is
 * the callee's to free. */
typedef void (*upstream_fetch_cb)(void *arg, est_err rc, uint8_t *der, size_t len,
                                  const char *why);

/** The same GET on the loop; @p cb runs later, never from inside this call. */
est_err upstream_fetch(upstream *u, const char *op, upstream_fetch_cb cb,
                       void *arg) EST_MUST_CHECK;

/**
 * Forward @p job (borrowed until @p done runs) upstream: simpleenroll,
 * simplereenroll or serverkeygen. When the answer is in, the job has it
 * (enroll_job_upstream_issued / _refused) and @p done(@p arg) runs, never
 * from inside this call. EST_ERR_UNAVAILABLE when the transfer cannot start.
 */
est_err upstream_enroll(upstream *u, enroll_job *job, void (*done)(void *arg),
                        void *arg) EST_MUST_CHECK;

struct est_metrics;
/** Where finished requests are counted (metrics.h); NULL: nowhere. */
void upstream_set_metrics(upstream *u, struct est_metrics *m);

/** Transfers running now (metrics, tests). */
size_t upstream_in_flight(const upstream *u);

#endif /* EST_UPSTREAM_H */
