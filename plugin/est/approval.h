/**
 * @file approval.h
 * @brief The enrollment decision (decisions.md §7, RFC 9148 §4.7): issue
 * now, answer 5.03 + Max-Age until an operator decides, send an issued
 * certificate again, or refuse with the operator's reason. Persistence goes
 * through store/; without a database every allowed request is issued at
 * once and nothing is recorded.
 *
 * Runs on the CoAP loop thread only (the store handle belongs to it).
 */
#ifndef EST_APPROVAL_H
#define EST_APPROVAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/est_err.h"
#include "pki.h"
#include "proto/resource.h"

typedef struct approval approval;

/** Who decides for a class of client. */
typedef enum approval_policy {
  APPROVAL_AUTO = 0,   /**< issue at once (and record it) */
  APPROVAL_MANUAL = 1  /**< an operator approves first */
} approval_policy;

typedef struct approval_config {
  const char *db_path;          /**< NULL: no store, everything auto */
  approval_policy idevid;       /**< idevid_policy */
  approval_policy ldevid;       /**< ldevid_policy */
  unsigned retry_after;         /**< Max-Age of a 5.03, seconds */
  unsigned pending_ttl;         /**< seconds a request stays pending/approved */
  unsigned max_pending;         /**< live requests per client certificate */
  int busy_timeout_ms;          /**< how long a store write may wait */
  bool sync_normal;             /**< synchronous=NORMAL instead of FULL */
} approval_config;

/** Parse "auto" / "manual". */
est_err approval_policy_parse(const char *s, approval_policy *out) EST_MUST_CHECK;

/** Open the store (creating it) when cfg->db_path is set. */
est_err approval_open(const approval_config *cfg, approval **out, char *diag,
                      size_t diag_len) EST_MUST_CHECK;
void approval_close(approval *a);

/** Everything the decision looks at; borrowed for the call. */
typedef struct approval_input {
  est_fn fn;
  pki_client_class cls;
  const uint8_t *spki_sha256;     /**< 32 bytes: SHA-256 of the CSR SPKI */
  const uint8_t *client_fp;       /**< 32 bytes: SHA-256 of the client cert */
  const char *client;             /**< client certificate subject */
  const char *subject;            /**< CSR subject (RFC 4514) */
  const uint8_t *csr;             /**< DER CSR as received */
  size_t csr_len;
  long long now;                  /**< unix seconds */
} approval_input;

/** What to do with the request. */
typedef enum approval_verdict {
  APPROVAL_ISSUE = 0,   /**< issue, then approval_record() */
  APPROVAL_RESEND,      /**< send ticket.cert again (already issued) */
  APPROVAL_WAIT,        /**< 5.03 + Max-Age ticket.max_age, diag says why */
  APPROVAL_DENIED       /**< 4.03, diag carries the operator's reason */
} approval_verdict;

/** The decision and what the later steps need. Clear with approval_ticket_clear(). */
typedef struct approval_ticket {
  approval_verdict verdict;
  int64_t request_id;     /**< approved request to mark issued, or 0 */
  bool record_direct;     /**< auto/pre-authorised: record with a new row */
  unsigned max_age;       /**< for APPROVAL_WAIT */
  uint8_t *cert;          /**< DER, for APPROVAL_RESEND (malloc) */
  size_t cert_len;
  char diag[160];         /**< diagnostic payload for the device */
  char detail[200];       /**< extra detail for the log only, or "" */
  /* Copies of the input the record step needs, so the ticket can travel
   * to a worker thread and back. */
  est_fn fn;
  pki_client_class cls;
  uint8_t spki_sha256[32];
  uint8_t client_fp[32];
  char *client;
  char *subject;
  uint8_t *csr;
  size_t csr_len;
} approval_ticket;

/**
 * Decide. Always fills @p t (clear it afterwards). Store trouble (busy,
 * disk) becomes APPROVAL_WAIT with a short Max-Age: a transient failure is
 * "try again", never 5.00 (prior-art.md).
 */
void approval_decide(approval *a, const approval_input *in, approval_ticket *t);

/**
 * Record an issued certificate for an APPROVAL_ISSUE ticket: marks the
 * approved request issued, or writes a new issued row for auto issuance.
 * EST_OK also when there is no store. On failure the certificate must not
 * be sent (it would be unrecorded); the caller answers 5.03.
 */
est_err approval_record(approval *a, const approval_ticket *t,
                        const uint8_t *cert, size_t cert_len,
                        const uint8_t serial[16]) EST_MUST_CHECK;

/** Expire overdue requests; call now and then from the loop. */
void approval_tick(approval *a, long long now);

void approval_ticket_clear(approval_ticket *t);

#endif /* EST_APPROVAL_H */
