/**
 * @file enroll.h
 * @brief The one owner of an enrollment (docs/architecture.md): check the
 * CSR, decide over the approval queue (docs/decisions.md §7), issue through
 * pki, record through store, and produce the answer. Handlers translate
 * CoAP to and from this module; async.c only carries slow jobs to the
 * worker thread and back.
 *
 * Loop thread only (the store handle belongs to it), except
 * enroll_job_run(), which may run on any thread.
 */
#ifndef EST_ENROLL_H
#define EST_ENROLL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <coapd/plugin.h>

#include "common/est_err.h"
#include "names.h"
#include "pki.h"
#include "pop.h"
#include "proto/resource.h"
#include "store/store.h"

/** Max-Age of every "retry later" for transient trouble (busy store, full
 * queue, out of memory): RFC 9148 §4.7, docs/decisions.md §7. */
#define ENROLL_RETRY_SOON 5u

/** Room for the diagnostic payload of an answer (RFC 9148 §5, RC-6). */
#define EST_DIAG_MAX 160

typedef struct enroll enroll;
typedef struct enroll_job enroll_job;

/** Who decides for a class of client. */
typedef enum enroll_policy {
  ENROLL_AUTO = 0,   /**< issue at once (and record it) */
  ENROLL_MANUAL = 1  /**< an operator approves first */
} enroll_policy;

typedef struct enroll_config {
  const char *db_path;          /**< NULL: no store, everything auto */
  enroll_policy idevid;         /**< idevid_policy */
  enroll_policy ldevid;         /**< ldevid_policy */
  enroll_policy ra;             /**< ra_policy: an RA asking with no device
                                     certificate (docs/decisions.md §17) */
  unsigned retry_after;         /**< Max-Age while an operator decides */
  unsigned pending_ttl;         /**< seconds a request stays pending/approved */
  unsigned max_pending;         /**< live requests per client certificate */
  unsigned max_pending_total;   /**< pending requests in all (0: no cap) */
  int busy_timeout_ms;          /**< how long a store write may wait */
  bool sync_normal;             /**< synchronous=NORMAL instead of FULL */
  bool db_use_group;            /**< a new database is 0640 in group db_gid */
  unsigned db_gid;              /**< (else 0600) */
  pop_mode pop;                 /**< pop_linking (docs/decisions.md §9) */
  pki_key_type keygen_type;     /**< key type of skg/skc */
  const names_config *names;    /**< issuance policy (names.h), copied by
                                     enroll_open; NULL: names_config_init() */
  bool forward;                 /**< a registrar (RFC 9148 §5): the CA is
                                     upstream and every job goes there
                                     (upstream.h, docs/decisions.md §19) */
} enroll_config;

/** Parse "auto" / "manual". */
est_err enroll_policy_parse(const char *s, enroll_policy *out) EST_MUST_CHECK;

/**
 * Open the store (creating it) when cfg->db_path is set. @p ca and @p api
 * are borrowed and must outlive the handle; @p api is used for logging.
 */
est_err enroll_open(const enroll_config *cfg, pki_ca *ca, const coapd_host_api *api,
                    enroll **out, char *diag, size_t diag_len) EST_MUST_CHECK;
void enroll_close(enroll *e);

/**
 * SIGHUP: take the policy part of @p cfg (policies, Max-Age, caps,
 * pop_linking, keygen type, names; copied) and @p ca (borrowed, as in
 * enroll_open). The store and its settings stay as opened. Jobs already
 * made keep the CA they started with (pki_ca_ref).
 */
void enroll_reconfigure(enroll *e, const enroll_config *cfg, pki_ca *ca);

/** A registrar's upstream CA changed (registrar.h): new jobs use @p ca
 * (borrowed, as in enroll_open); jobs made keep theirs. */
void enroll_set_ca(enroll *e, pki_ca *ca);

/** One POST to sen, sren, skg or skc as the handler saw it; borrowed. */
typedef struct enroll_request {
  est_fn fn;
  pki_client_class cls;
  const uint8_t *client_fp;          /**< 32 bytes: SHA-256 of the client cert */
  const char *client;                /**< its subject, for logs and the store */
  const uint8_t *client_cert;        /**< DER, for the sren match (AUTH-7) */
  size_t client_cert_len;
  /** The whole peer chain, leaf first (client_cert is chain[0]); a
   *  registrar vouches for the device with it upstream. */
  const uint8_t *const *chain;
  const size_t *chain_len;
  size_t chain_n;
  const uint8_t *tls_unique;         /**< channel bindings, NULL if none */
  size_t tls_unique_len;
  const uint8_t *exporter;
  size_t exporter_len;
  const uint8_t *csr;                /**< DER CSR as received */
  size_t csr_len;
  bool bare_cert;                    /**< sen/sren: answer 287, not 281 */
  /** The subject of the RA certificate when a registration authority asks
   *  on the device's behalf (RFC 7030 §3.7, docs/decisions.md §17), else
   *  NULL. The client_* fields are then the device's as the RA vouched for
   *  them (or absent: the device is its CSR key, under ra_policy); PoP
   *  linking was the RA's to check against the device's own session. */
  const char *ra;
  long long now;                     /**< unix seconds */
} enroll_request;

/** The answer. Clear with enroll_result_clear(). */
typedef struct enroll_result {
  est_err rc;              /**< EST_OK: body is the payload of a 2.04 */
  unsigned max_age;        /**< with a 5.03: come back after this many s */
  uint8_t *body;           /**< may hold a private key (skg/skc) */
  size_t body_len;
  char diag[EST_DIAG_MAX]; /**< for the device when rc != EST_OK */
} enroll_result;

/**
 * Decide on @p in. Returns NULL when the answer is known now (refusal,
 * 5.03, a stored certificate sent again): it is in @p res. Otherwise a job
 * that issues: run it (enroll_job_run), then finish it (enroll_job_finish).
 * @p res is always set: when a job is returned, res->rc is EST_OK.
 */
enroll_job *enroll_decide(enroll *e, const enroll_request *in, enroll_result *res);

/** True for key generation, for every job of a registrar, and for every
 * job of a CA whose key is on a token: run the job off the loop (a
 * worker, or the upstream). */
bool enroll_job_slow(const enroll_job *j);

/** True for skg/skc (the keygen worker); other slow jobs only sign. */
bool enroll_job_keygen(const enroll_job *j);

/** Most certificates of a device chain a registrar passes on. */
#define ENROLL_CHAIN_MAX 8u

/** What a registrar sends upstream for a job (upstream.h); borrowed from
 * the job, valid while it lives. */
typedef struct enroll_forward {
  est_fn fn;
  const uint8_t *csr;                       /**< DER, as the device sent it */
  size_t csr_len;
  const uint8_t *chain[ENROLL_CHAIN_MAX];   /**< the device's chain, leaf
                                                 first; chain_n 0: none */
  size_t chain_len[ENROLL_CHAIN_MAX];
  size_t chain_n;
  const char *client;                       /**< for logs */
} enroll_forward;

/** The job as the upstream needs it (enroll_config.forward). */
void enroll_job_forward(const enroll_job *j, enroll_forward *out);

/**
 * The upstream issued: @p cert (DER) and, for skg/skc, the PKCS#8 @p key
 * are taken (the key wiped when freed). The certificate must chain to the
 * CA the job started with and carry the CSR's key (or @p key's); else the
 * job fails as "retry later" and the reason goes to the log.
 */
void enroll_job_upstream_issued(enroll_job *j, uint8_t *cert, size_t cert_len, uint8_t *key,
                                size_t key_len);

/** The upstream did not issue: the answer is @p rc (EST_ERR_PENDING with
 * Max-Age while its operator decides), @p max_age and @p diag. */
void enroll_job_upstream_refused(enroll_job *j, est_err rc, unsigned max_age, const char *diag);

/** Issue (and for skg/skc generate the key). Any thread; touches only the
 * CA and the job. */
void enroll_job_run(enroll_job *j);

/** Loop thread, after enroll_job_run(): record the certificate and build
 * the answer; an unrecorded certificate is never handed out. Frees @p j. */
void enroll_job_finish(enroll *e, enroll_job *j, enroll_result *res);

/** Drop a job that will not be answered. NULL is a no-op. */
void enroll_job_free(enroll_job *j);

/** A transient refusal: 5.03 + Max-Age ENROLL_RETRY_SOON with @p why. */
void enroll_retry_later(enroll_result *res, const char *why);

/** Free the body (wiping it) and reset. */
void enroll_result_clear(enroll_result *res);

/** Housekeeping from the plugin tick: expire overdue requests. Returns the
 * seconds until it wants to run again. */
unsigned enroll_tick(enroll *e, long long now);

/**
 * Whether our certificate with serial @p serial_hex (a client's LDevID) is
 * revoked in the store: EST_OK with *revoked set (false without a store),
 * and the reason in @p why; a store failure is returned as is, and the
 * caller refuses for now (docs/decisions.md §14).
 */
est_err enroll_client_revoked(enroll *e, const char *serial_hex, bool *revoked, char *why,
                              size_t why_len) EST_MUST_CHECK;

/** The store (NULL without db_path), for the CRL publisher, which reads
 * the revocations it holds (crlpub.h). */
store *enroll_store(enroll *e);

struct est_metrics;
/** Where issuance, store errors and a full queue are counted (metrics.h);
 * NULL (the default): nowhere. Borrowed. */
void enroll_set_metrics(enroll *e, struct est_metrics *m);

#endif /* EST_ENROLL_H */
