/**
 * @file ctl.h
 * @brief The operator command layer: one implementation of every operator
 * command, used by both the estctl CLI and the Mosquitto broker plugin. Only
 * the front ends differ (docs/decisions.md §7, docs/architecture.md §2).
 *
 * The wire format is Mosquitto's dynamic-security one, carried on
 * `$CONTROL/est-coaps/v1`:
 * @verbatim
 *   {"commands":[{"command":"approveRequest","id":7,"correlationData":"x"}]}
 *   -> {"responses":[{"command":"approveRequest","data":{...},"correlationData":"x"}]}
 *   -> {"responses":[{"command":"approveRequest","error":"...","correlationData":"x"}]}
 * @endverbatim
 * Commands: listRequests {state?, subject?, san?, client?, olderThan?,
 * newerThan?}, getRequest {id}, approveRequest {id,
 * reason?}, rejectRequest {id, reason}, addPreauth {kind, value, idevid?, note?},
 * removePreauth {kind, value}, listPreauth {}, listCertificates {},
 * revokeCertificate {serial, reason}, listAudit {requestId?, limit?}.
 * JSON Schemas for all of them live in schemas/.
 */
#ifndef EST_CTL_H
#define EST_CTL_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#include "common/est_err.h"
#include "store/store.h"

/** Cap on one control message (envelope) in bytes. */
#define CTL_MSG_MAX 65536u
/** Most commands in one envelope. */
#define CTL_CMDS_MAX 100u

/** Who runs the commands, against which store. Borrowed for the call. */
typedef struct ctl_ctx {
  store *s;
  const char *actor;   /**< recorded in the audit trail */
  bool may_write;      /**< false: state-changing commands get an error */
  /** Unix seconds the age filters of listRequests count from; 0: the
   *  system clock. Tests set it. */
  int64_t now;
} ctl_ctx;

/**
 * Run one command object. Always returns a response object (NULL only when
 * out of memory): {"command":..., "data":{...}} or {"command":...,
 * "error":"..."}, with correlationData copied when it is a string. Bad
 * input (not an object, unknown command, wrong types, missing fields)
 * gives an error response, never a crash. *err (may be NULL) gets the
 * est_err behind an error response, EST_OK on success.
 */
cJSON *ctl_run(const ctl_ctx *c, const cJSON *cmd, est_err *err);

/**
 * Parse and run a whole envelope {"commands":[...]} of @p len bytes
 * (at most CTL_MSG_MAX). Returns the malloc'd, NUL-terminated reply text
 * {"responses":[...]} (free with cJSON_free), or NULL when out of memory.
 * Malformed JSON or a missing commands array gives a single error response
 * with command "" (still a valid reply).
 */
char *ctl_run_envelope(const ctl_ctx *c, const char *json, size_t len);

/**
 * The event for an audit row, or NULL when the action is not an event.
 * Events are published on `est-coaps/v1/events/<kind>`; *kind is one of
 * pending, approved, rejected, issued, expired, revoked. The object has at
 * least id (request id, or 0), function, subject, client, time (ISO 8601
 * UTC), plus auditId, actor and serial/reason where known; a pending event
 * also clientSerial and clientFingerprint.
 */
cJSON *ctl_event(const store_audit_row *row, const char **kind);

/** JSON views of store rows (the objects estctl --json prints). A
 *  store_request holds only cert_id, so ctl_request_json() sets certSerial
 *  to null; the commands fill it in from the certificate. The request
 *  object also shows what the stored CSR asks for (sans, keyType, keyBits,
 *  keyCurve; null when the CSR does not parse) and the client certificate's
 *  clientSerial and clientFingerprint. */
cJSON *ctl_request_json(const store_request *r);
cJSON *ctl_cert_json(const store_cert *c);
cJSON *ctl_preauth_json(const store_preauth *p);
cJSON *ctl_audit_json(const store_audit_row *a);

/** Longest canonical DN ctl_dn_canonical() writes (the store's text cap). */
#define CTL_DN_MAX STORE_MAX_TEXT

/**
 * Parse @p dn as an RFC 4514 string (attribute type names in any case,
 * blanks around ',' and '=' allowed) and write GnuTLS's RFC 4514 rendering
 * of it to @p out: the form pki_csr_subject() gives a CSR's subject, so
 * two spellings of one DN compare equal byte for byte
 * (docs/decisions.md §15). EST_ERR_INVALID with a reason in @p diag when
 * it does not parse; EST_ERR_TOO_LARGE when over @p out_len - 1 bytes.
 */
est_err ctl_dn_canonical(const char *dn, char *out, size_t out_len, char *diag,
                         size_t diag_len) EST_MUST_CHECK;

/** Format unix seconds as "YYYY-MM-DDTHH:MM:SSZ" into @p buf (>= 21 bytes). */
void ctl_time_iso(long long t, char *buf, size_t len);

#endif /* EST_CTL_H */
