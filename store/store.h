/**
 * @file store.h
 * @brief Persistent state of est-coaps: enrollment requests awaiting an
 * operator, issued certificates, pre-authorisations and the audit trail
 * (docs/decisions.md §7). The whole public interface of the store module.
 *
 * One database is shared by three processes: coapd's EST plugin (writes on the CoAP loop, so it opens with a short busy timeout),
 * the estctl operator CLI, and the Mosquitto broker plugin (polls
 * store_data_version() and reads store_audit_since()). It is an SQLite
 * file in WAL mode, or a PostgreSQL database named by a libpq URI, which
 * several coapd nodes may share (docs/decisions.md §21).
 *
 * Request life cycle (the only transitions the store allows):
 * @verbatim
 *   (none) --create--> pending --decide(approve)--> approved --issue--> issued
 *                         |   \--decide(reject)---> rejected
 *                         +---------+-- TTL passed --> expired
 *                         approved -+
 *   (none) --issue_direct--> issued        (auto policy, one transaction)
 * @endverbatim
 *
 * Threading: a handle belongs to one thread at a time. Open one handle per
 * thread; never use one handle from two threads at once (the connection is
 * opened with SQLITE_OPEN_NOMUTEX). coapd's plugin uses its handle from the
 * CoAP loop thread only. Handles in different threads or processes may be
 * used concurrently; writers are serialised (SQLite's write lock, or one
 * PostgreSQL advisory lock), and a writer that cannot get the lock within
 * the busy timeout gets EST_ERR_BUSY.
 *
 * Errors: every function that can fail returns an est_err. After a failure
 * store_errmsg() gives a one-line English detail (the database's message for
 * database errors). Mapping: SQLITE_BUSY/LOCKED -> EST_ERR_BUSY,
 * SQLITE_FULL/IOERR/CANTOPEN -> EST_ERR_IO, SQLITE_NOMEM -> EST_ERR_NOMEM,
 * any other SQLite failure -> EST_ERR_STORE.
 *
 * Writes: each write is one short BEGIN IMMEDIATE transaction that also
 * writes its audit row, so an action and its audit row commit or vanish
 * together. A write never retries on its own: after the busy timeout it
 * returns EST_ERR_BUSY and nothing has been written.
 *
 * Times are unix seconds (int64_t). Optional times (expires, not_before,
 * not_after, revoked_at) use 0 for "none"; the database stores NULL.
 *
 * Ownership: result structs own their strings and blobs; release them with
 * the matching *_clear() function, which accepts NULL and zeroed structs.
 * Input structs are borrowed for the duration of the call only.
 */
#ifndef EST_STORE_H
#define EST_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/est_err.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Caps on input sizes (EST_ERR_TOO_LARGE above them). */
#define STORE_MAX_TEXT 1024u        /**< subject, client, reason, actor, note... */
#define STORE_MAX_CSR (16u * 1024u) /**< DER CSR */
#define STORE_MAX_DER (16u * 1024u) /**< DER certificate */
#define STORE_MAX_SERIAL 64u        /**< hex digits of a serial number */
#define STORE_SHA256_LEN 32u        /**< SPKI hash and client fingerprint */

/** The actor name the store itself uses (expiry). */
#define STORE_ACTOR_SYSTEM "system"

/** Version of struct store_options; set by store_options_init(). */
#define STORE_OPTIONS_VERSION 1

/** An open database. Opaque. */
typedef struct store store;

/** Request states; names in the database are the lowercase suffixes. */
typedef enum store_req_state {
  STORE_REQ_ANY = -1,   /**< filter value only: every state */
  STORE_REQ_PENDING = 0,/**< waiting for an operator */
  STORE_REQ_APPROVED,   /**< approved; the next retry gets a certificate */
  STORE_REQ_REJECTED,   /**< rejected; reason holds the operator's words */
  STORE_REQ_ISSUED,     /**< certificate issued; cert_id set */
  STORE_REQ_EXPIRED,    /**< TTL passed while pending or approved */
  STORE_REQ__MAX        /**< sentinel */
} store_req_state;

/** EST functions that may need approval (names "sen", "sren", "skg", "skc"). */
typedef enum store_fn {
  STORE_FN_SEN = 0,
  STORE_FN_SREN,
  STORE_FN_SKG,
  STORE_FN_SKC,
  STORE_FN__MAX /**< sentinel */
} store_fn;

/** How the client authenticated (docs/decisions.md §5). */
typedef enum store_client_class {
  STORE_CLIENT_UNKNOWN = 0, /**< not recorded (NULL in the database) */
  STORE_CLIENT_IDEVID,      /**< manufacturer certificate ("idevid") */
  STORE_CLIENT_LDEVID,      /**< certificate from our CA ("ldevid") */
  STORE_CLIENT__MAX         /**< sentinel */
} store_client_class;

/** Pre-authorisation kinds ("subject", "idevid"). */
typedef enum store_preauth_kind {
  STORE_PREAUTH_SUBJECT = 0, /**< exact CSR subject DN string */
  STORE_PREAUTH_IDEVID,      /**< SHA-256 fingerprint (64 hex) of an IDevID */
  STORE_PREAUTH__MAX         /**< sentinel */
} store_preauth_kind;

/** Audit actions (the "action" column). */
typedef enum store_audit_action {
  STORE_AUDIT_PENDING = 0, /**< request created pending */
  STORE_AUDIT_APPROVED,    /**< operator approved (or created approved) */
  STORE_AUDIT_REJECTED,    /**< operator rejected */
  STORE_AUDIT_ISSUED,      /**< certificate issued and recorded */
  STORE_AUDIT_EXPIRED,     /**< request expired (actor "system") */
  STORE_AUDIT_REVOKED,     /**< certificate revoked */
  STORE_AUDIT_PREAUTH_ADD, /**< pre-authorisation added */
  STORE_AUDIT_PREAUTH_REMOVE, /**< pre-authorisation removed */
  STORE_AUDIT_REISSUED,    /**< same certificate sent again to a retry */
  STORE_AUDIT_PRUNED,      /**< old rows removed (detail: what and how many) */
  STORE_AUDIT__MAX         /**< sentinel; also "unknown" when reading */
} store_audit_action;

/** Options for store_open(). Initialise with store_options_init(). */
typedef struct store_options {
  uint8_t version;          /**< STORE_OPTIONS_VERSION */
  /** How long a write waits for another writer's lock, in ms. coapd: 20-100;
   *  estctl: ~5000. store_open() itself waits at least 5000 ms while it
   *  applies migrations, because nothing is being served yet. */
  int busy_timeout_ms;
  bool read_only;           /**< open read-only; every write fails EST_ERR_INVALID */
  bool create;              /**< create the file if missing (else "no database at PATH") */
  /** false (default): PRAGMA synchronous=FULL, every commit is fsync'd and
   *  survives power loss. true: synchronous=NORMAL, commits survive a process
   *  crash (kill -9) but the last ones may be lost on power loss. See
   *  store/README.md for the measured cost. */
  bool synchronous_normal;
  /** Clock for created/updated/audit times; NULL means time(NULL).
   *  Tests set it. store_request_lookup() and store_expire() take @c now
   *  explicitly and do not use it. */
  int64_t (*clock)(void *clock_ctx);
  void *clock_ctx;          /**< passed to @c clock */
  /** A database file this open creates is mode 0600 whatever the umask, or
   *  0640 owned by group @c group_gid when @c use_group is set (a broker
   *  plugin that runs as another user in that group). SQLite gives its
   *  -wal and -shm files the same mode (docs/decisions.md §14). */
  bool use_group;
  unsigned group_gid;
} store_options;

/** A request row. Owns its strings and blob; free with store_request_clear(). */
typedef struct store_request {
  int64_t id;                              /**< 0 in a cleared struct */
  store_req_state state;
  store_fn function;
  uint8_t spki_sha256[STORE_SHA256_LEN];   /**< SHA-256 of the CSR's SPKI */
  uint8_t client_fp[STORE_SHA256_LEN];     /**< SHA-256 of the client cert */
  char *client;                            /**< client cert subject */
  store_client_class client_class;
  char *subject;                           /**< CSR subject */
  uint8_t *csr;                            /**< DER CSR, as last received */
  size_t csr_len;
  char *reason;                            /**< operator's words, or NULL */
  int64_t created;
  int64_t updated;
  int64_t expires;                         /**< 0: never */
  int64_t cert_id;                         /**< 0: none */
  /** Serial of the client certificate, lowercase hex; NULL when unknown
   *  (rows written before schema 3). */
  char *client_serial;
  /** Subject of the RA certificate the request came through (RFC 7030
   *  §3.7); NULL when the device asked itself (schema 4). */
  char *ra;
} store_request;

/** Input to store_request_create() and store_issue_direct(). */
typedef struct store_request_new {
  store_fn function;
  uint8_t spki_sha256[STORE_SHA256_LEN];
  uint8_t client_fp[STORE_SHA256_LEN];
  const char *client;                /**< required, <= STORE_MAX_TEXT */
  store_client_class client_class;
  const char *subject;               /**< required, <= STORE_MAX_TEXT */
  const uint8_t *csr;                /**< required, 1..STORE_MAX_CSR bytes */
  size_t csr_len;
  /** Seconds the request stays live while pending or approved; 0: forever.
   *  expires = created + ttl. A decision restarts it (store_request_decide()).
   *  Ignored by store_issue_direct(). */
  int64_t ttl;
  /** STORE_REQ_PENDING (manual policy) or STORE_REQ_APPROVED (pre-authorised:
   *  issue on this very request). Ignored by store_issue_direct(). */
  store_req_state initial_state;
  /** Serial of the client certificate (hex, 1..STORE_MAX_SERIAL digits,
   *  stored lowercase), or NULL / "" when unknown. */
  const char *client_serial;
  /** The RA's certificate subject when an RA asked on the device's behalf
   *  (<= STORE_MAX_TEXT), or NULL / "". Its audit row says "via RA ...". */
  const char *ra;
} store_request_new;

/** A certificate row. Free with store_cert_clear(). */
typedef struct store_cert {
  int64_t id;
  char *serial;          /**< lowercase hex */
  int64_t request_id;    /**< 0: none */
  char *subject;
  char *client;          /**< or NULL */
  int64_t not_before;    /**< 0: not recorded */
  int64_t not_after;     /**< 0: not recorded */
  uint8_t *der;
  size_t der_len;
  int64_t revoked_at;    /**< 0: not revoked */
  char *revoke_reason;   /**< or NULL */
  int64_t created;
} store_cert;

/** Input describing a freshly issued certificate. */
typedef struct store_cert_new {
  const char *serial;    /**< hex, 1..64 digits; stored lowercase */
  const char *subject;   /**< required */
  const char *client;    /**< or NULL */
  int64_t not_before;    /**< 0: not recorded */
  int64_t not_after;     /**< 0: not recorded */
  const uint8_t *der;    /**< required, 1..STORE_MAX_DER bytes */
  size_t der_len;
} store_cert_new;

/** A pre-authorisation row. Free with store_preauth_clear(). */
typedef struct store_preauth {
  int64_t id;
  store_preauth_kind kind;
  char *value;
  char *note;            /**< or NULL */
  int64_t created;
  char *actor;
  /** Subject entries only: the IDevID fingerprint (64 lowercase hex) the
   *  client must present as well, or NULL (any client). */
  char *idevid;
} store_preauth;

/** An audit row, with request fields joined for event publication. */
typedef struct store_audit_row {
  int64_t id;
  int64_t time;
  char *actor;
  store_audit_action action;  /**< STORE_AUDIT__MAX if the name is unknown */
  char *action_name;          /**< the action column as stored */
  int64_t request_id;         /**< 0: none */
  char *cert_serial;          /**< or NULL */
  char *detail;               /**< or NULL */
  /* Joined from requests when request_id is set; else NULL / FN__MAX. */
  store_fn function;          /**< STORE_FN__MAX when no request */
  char *subject;
  char *client;
  /* Joined from certificates when cert_serial is set and revoked. */
  int64_t crl_number;         /**< first CRL that lists it, 0: none */
  /* Joined from requests: the client certificate's serial (or NULL) and
   * fingerprint (has_client_fp false when there is no request). */
  char *client_serial;
  uint8_t client_fp[STORE_SHA256_LEN];
  bool has_client_fp;
} store_audit_row;

/**
 * Iteration callbacks. The row is borrowed and valid during the call only.
 * Return 0 to continue, > 0 to stop (the list function returns EST_OK), or
 * a negative est_err to stop and have the list function return it.
 * A callback must not call into the same store handle (EST_ERR_STATE).
 */
typedef int (*store_request_cb)(void *ctx, const store_request *row);
typedef int (*store_cert_cb)(void *ctx, const store_cert *row);
typedef int (*store_preauth_cb)(void *ctx, const store_preauth *row);
typedef int (*store_audit_cb)(void *ctx, const store_audit_row *row);

/* ---------------------------------------------------------------- open */

/** Fill @p opt with defaults: version set, busy 5000 ms, read-write, no
 *  create, synchronous FULL, system clock. */
void store_options_init(store_options *opt);

/**
 * Whether @p path names a PostgreSQL database (a libpq URI starting
 * postgresql:// or postgres://) rather than an SQLite file
 * (docs/decisions.md §21).
 */
bool store_path_is_uri(const char *path);

/**
 * Open (and with @c create, create) the database at @p path, switch it to
 * WAL, and apply pending schema migrations in one transaction.
 *
 * @p path is an SQLite file, or a PostgreSQL connection URI
 * (store_path_is_uri()). On PostgreSQL the database must exist; @c create
 * creates the schema in it; "no database" means no est-coaps schema there;
 * the transactions, checks and results are the same (docs/decisions.md
 * §21). Messages never include the URI's password.
 *
 * @param opt  options, or NULL for the store_options_init() defaults.
 * @param out  receives the handle; set to NULL on failure.
 * @param diag receives a one-line reason on failure (may be NULL).
 * @return EST_OK;
 *   EST_ERR_NOT_FOUND "no database at PATH" (missing, or an empty file,
 *   without @c create);
 *   EST_ERR_SCHEMA if the schema is newer than this program, if a read-only
 *   open finds an older one, or if the file belongs to another application;
 *   EST_ERR_IO if the file cannot be opened, or is not writable for a
 *   read-write open (SQLite would silently fall back to read-only);
 *   EST_ERR_BUSY, EST_ERR_STORE, EST_ERR_NOMEM, EST_ERR_INVALID.
 */
est_err store_open(const char *path, const store_options *opt, store **out,
                   char *diag, size_t diag_len) EST_MUST_CHECK;

/** Close the handle. NULL is a no-op. */
void store_close(store *s);

/** Detail of the last failure on @p s ("" if none). Valid until the next call. */
const char *store_errmsg(const store *s);

/** Schema version this program writes (the highest migration). */
int store_schema_version(void);

/** PRAGMA data_version: changes when *another* connection commits. */
est_err store_data_version(store *s, uint64_t *v) EST_MUST_CHECK;

/* ------------------------------------------------------------ requests */

/**
 * Find the newest request for the retry key (spki, client_fp, function) and
 * tell the caller what to do (docs/decisions.md §7).
 *
 * @p out is always cleared on entry; call store_request_clear() afterwards
 * whatever the result.
 * @return
 *   - EST_OK with @p out set, state one of:
 *     pending (answer 5.03), approved (issue, then store_request_issue()),
 *     issued (send the certificate cert_id again), rejected (4.03 + reason).
 *   - EST_ERR_NOT_FOUND: no live request; create one. If a stale row exists
 *     it is in @p out (id != 0) for logging: a pending/approved row whose
 *     expires <= @p now is reported with state expired (it is written as
 *     expired by store_expire() or by store_request_create() for the same
 *     key); a rejected row whose hold has passed (expires <= now) stays
 *     rejected; an issued row whose certificate is revoked or past
 *     not_after is reported as stale too.
 * Reads only: nothing is written, also not on a read-write handle.
 */
est_err store_request_lookup(store *s, const uint8_t spki_sha256[32],
                             const uint8_t client_fp[32], store_fn function,
                             int64_t now, store_request *out) EST_MUST_CHECK;

/**
 * Create a request in state pending (or approved, for pre-authorised
 * clients) and audit it ("pending" or "approved").
 * An overdue live row for the same key is marked expired first, in the same
 * transaction.
 * @param id receives the new id, or the existing one with EST_ERR_EXISTS.
 * @return EST_ERR_EXISTS if store_request_lookup() would return EST_OK for
 *   this key (a live request already exists); EST_ERR_INVALID,
 *   EST_ERR_TOO_LARGE, EST_ERR_BUSY, ...
 */
est_err store_request_create(store *s, const store_request_new *in,
                             const char *actor, int64_t *id) EST_MUST_CHECK;

/**
 * Approve or reject a pending request. The decision restarts the TTL:
 * expires becomes decision time + (expires - created) when it was set.
 * For an approval that is how long the device has to come back; for a
 * rejection it is how long retries keep getting 4.03 before a new request
 * may be created. @p reason (may be NULL) is stored on the request and in
 * the audit detail.
 * @return EST_ERR_NOT_FOUND for an unknown id; EST_ERR_STATE if the request
 *   is not pending.
 */
est_err store_request_decide(store *s, int64_t id, bool approve,
                             const char *reason, const char *actor) EST_MUST_CHECK;

/**
 * Record the certificate issued for an approved request and mark the
 * request issued, with audit "issued", in one transaction. Does not look at
 * the clock: store_request_lookup() is the gate for expiry.
 * @return EST_ERR_NOT_FOUND, EST_ERR_STATE (not approved), EST_ERR_EXISTS
 *   (serial already recorded), ...
 */
est_err store_request_issue(store *s, int64_t request_id,
                            const store_cert_new *cert, const char *actor,
                            int64_t *cert_id) EST_MUST_CHECK;

/**
 * Auto policy: record a request row (state issued, holding the CSR) and its
 * certificate in ONE transaction, audit "issued". Every certificate thus
 * has a request row. Any live row for the same key is left alone.
 * @p request_id and @p cert_id may be NULL.
 */
est_err store_issue_direct(store *s, const store_request_new *req,
                           const store_cert_new *cert, const char *actor,
                           int64_t *request_id, int64_t *cert_id) EST_MUST_CHECK;

/**
 * Audit-only: the certificate of issued request @p request_id was sent again
 * to a retry (action "reissued"). Optional; costs one durable commit.
 */
est_err store_request_resent(store *s, int64_t request_id,
                             const char *actor) EST_MUST_CHECK;

/**
 * How many live (pending or approved, not past expires at @p now) requests
 * the client certificate @p client_fp has: the per-client cap of the
 * manual policy. Reads only.
 */
est_err store_request_count_live(store *s, const uint8_t client_fp[32],
                                 int64_t now, size_t *count) EST_MUST_CHECK;

/** How many requests wait for an operator (pending, not past expires at
 * @p now), all clients together: the cap max_pending_total. Reads only. */
est_err store_request_count_pending(store *s, int64_t now, size_t *count) EST_MUST_CHECK;

/** Fetch one request. EST_ERR_NOT_FOUND for an unknown id. */
est_err store_request_get(store *s, int64_t id, store_request *out) EST_MUST_CHECK;

/** Call @p cb for each request in @p state (STORE_REQ_ANY: all), by id. */
est_err store_request_list(store *s, store_req_state state, store_request_cb cb,
                           void *ctx) EST_MUST_CHECK;

/**
 * Mark every pending/approved request with expires <= @p now expired, one
 * audit row each, in one transaction. @p count (may be NULL) gets how many.
 */
est_err store_expire(store *s, int64_t now, size_t *count) EST_MUST_CHECK;

/** Free what @p r owns and zero it. NULL is a no-op. */
void store_request_clear(store_request *r);

/* -------------------------------------------------------- certificates */

/** Fetch a certificate by id. */
est_err store_cert_get(store *s, int64_t id, store_cert *out) EST_MUST_CHECK;

/** Fetch a certificate by serial (hex, any case). */
est_err store_cert_get_serial(store *s, const char *serial,
                              store_cert *out) EST_MUST_CHECK;

/**
 * Whether the certificate with @p serial (hex, any case) is revoked: EST_OK
 * with *revoked_at its time (0: not revoked, or not ours) and its reason in
 * @p reason (may be NULL). One indexed read, for every request of a client
 * holding one of our certificates (docs/decisions.md §14).
 */
est_err store_cert_revoked(store *s, const char *serial, int64_t *revoked_at, char *reason,
                           size_t reason_len) EST_MUST_CHECK;

/* ---------------------------------------------------------------- prune */

/**
 * Remove what is no longer needed from before @p before (unix seconds):
 * requests decided long ago (rejected or expired, last changed before it)
 * and audit rows older than it. Certificates, issued requests (a retry is
 * answered from them, docs/decisions.md §7) and pre-authorisations stay.
 * One transaction, which itself leaves an audit row "pruned" with the
 * counts. With @p dry_run nothing changes; the counts say what would go.
 */
est_err store_prune(store *s, int64_t before, bool dry_run, const char *actor,
                    size_t *requests, size_t *audit) EST_MUST_CHECK;

/* --------------------------------------------------------------- backup */

/**
 * A consistent copy of the whole database at @p path while others keep
 * writing (SQLite's online backup, all pages in one read transaction,
 * which in WAL mode does not stop writers). The copy is written to
 * PATH.tmp with mode 0600, fsynced and renamed to @p path, so a crash
 * leaves no file or the whole copy; an existing @p path is refused with
 * EST_ERR_EXISTS. *pages (may be NULL) is the page count.
 */
est_err store_backup(store *s, const char *path, int *pages) EST_MUST_CHECK;

/* ----------------------------------------------------------------- CRLs */

/** The largest CRL kept in the store (PEM bytes). */
#define STORE_MAX_CRL (16u * 1024u * 1024u)

/** One revoked certificate, for a CRL; borrowed during the call. Return
 * 0 to go on, a negative est_err to stop with it. */
typedef int (*store_crl_cb)(const char *serial, int64_t revoked_at, const char *reason,
                            void *ctx);

/**
 * The highest CRL number handed out (each revocation takes one, so it
 * names the first CRL that will list it) and the number of the CRL last
 * published; 0 when none. docs/decisions.md §14.
 */
est_err store_crl_numbers(store *s, int64_t *number, int64_t *published) EST_MUST_CHECK;

/**
 * In one transaction: the number for a new CRL and every revoked
 * certificate (oldest first) to @p cb. The number is the one revocations
 * handed out since the last CRL, or a fresh one when there were none or
 * @p bump is set, so every CRL has a number greater than the one before
 * (RFC 5280 §5.2.3).
 */
est_err store_crl_snapshot(store *s, bool bump, int64_t *number, store_crl_cb cb,
                           void *ctx) EST_MUST_CHECK;

/** Record the CRL just published: its number and PEM (what `estctl crl`
 * hands out). */
est_err store_crl_published(store *s, int64_t number, const char *pem) EST_MUST_CHECK;

/** Call @p cb for each certificate, by id. */
est_err store_cert_list(store *s, store_cert_cb cb, void *ctx) EST_MUST_CHECK;

/**
 * Revoke a certificate (audit "revoked", detail = reason). A later retry of
 * its request is no longer answered with it (store_request_lookup()).
 * @return EST_ERR_NOT_FOUND, EST_ERR_STATE if already revoked, ...
 */
est_err store_cert_revoke(store *s, const char *serial, const char *reason,
                          const char *actor) EST_MUST_CHECK;

/** Free what @p c owns and zero it. NULL is a no-op. */
void store_cert_clear(store_cert *c);

/* ---------------------------------------------------- pre-authorisation */

/**
 * Add a pre-authorisation (audit "preauth_add"). It stays until removed.
 * For STORE_PREAUTH_IDEVID the value must be 64 hex digits (stored
 * lowercase); for STORE_PREAUTH_SUBJECT it is matched byte for byte, so
 * callers store a canonical RFC 4514 rendering (ctl_dn_canonical(),
 * docs/decisions.md §15).
 * @p note may be NULL; @p id may be NULL. EST_ERR_EXISTS on a duplicate.
 */
est_err store_preauth_add(store *s, store_preauth_kind kind, const char *value,
                          const char *note, const char *actor,
                          int64_t *id) EST_MUST_CHECK;

/**
 * Add a subject pre-authorisation bound to one IDevID: it matches only a
 * request whose CSR subject equals @p subject AND whose client is an IDevID
 * with SHA-256 fingerprint @p idevid_fp_hex (64 hex, any case). NULL
 * @p idevid_fp_hex is store_preauth_add() of a plain subject entry.
 */
est_err store_preauth_add_bound(store *s, const char *subject,
                                const char *idevid_fp_hex, const char *note,
                                const char *actor, int64_t *id) EST_MUST_CHECK;

/** Remove one (audit "preauth_remove"). EST_ERR_NOT_FOUND if absent. */
est_err store_preauth_remove(store *s, store_preauth_kind kind,
                             const char *value, const char *actor) EST_MUST_CHECK;

/** Call @p cb for each pre-authorisation, by id. */
est_err store_preauth_list(store *s, store_preauth_cb cb, void *ctx) EST_MUST_CHECK;

/**
 * Is the client pre-authorised? @p hit is true if a "subject" entry equals
 * @p subject (and, if it is bound, its idevid equals @p idevid_fp_hex) or
 * an "idevid" entry equals @p idevid_fp_hex (any case).
 * Either argument may be NULL (not checked).
 */
est_err store_preauth_match(store *s, const char *subject,
                            const char *idevid_fp_hex, bool *hit) EST_MUST_CHECK;

/** Free what @p p owns and zero it. NULL is a no-op. */
void store_preauth_clear(store_preauth *p);

/* ---------------------------------------------------------------- audit */

/**
 * Event feed: rows with id > @p after_id in ascending order, at most @p max
 * (0: no limit), with the request's function, subject and client joined.
 * The broker plugin keeps the last id it published as its cursor, e.g. in
 * store_meta_set(s, "broker.cursor", ...).
 */
est_err store_audit_since(store *s, int64_t after_id, size_t max,
                          store_audit_cb cb, void *ctx) EST_MUST_CHECK;

/**
 * Operator view: the newest @p max rows (0: all), newest first, for one
 * request (@p request_id > 0) or for all (0).
 */
est_err store_audit_list(store *s, int64_t request_id, size_t max,
                         store_audit_cb cb, void *ctx) EST_MUST_CHECK;

/** Highest audit id (0 if the table is empty). */
est_err store_audit_max_id(store *s, int64_t *id) EST_MUST_CHECK;

/** Free what @p a owns and zero it. NULL is a no-op. */
void store_audit_row_clear(store_audit_row *a);

/* ----------------------------------------------------------------- meta */

/**
 * Read a key of the meta table into a malloc'd string the caller frees.
 * EST_ERR_NOT_FOUND if absent (*value = NULL).
 */
est_err store_meta_get(store *s, const char *key, char **value) EST_MUST_CHECK;

/**
 * Set (insert or replace) a meta key. Bookkeeping, not an operator action:
 * no audit row (the broker's cursor would otherwise feed its own events).
 */
est_err store_meta_set(store *s, const char *key, const char *value) EST_MUST_CHECK;

/* ---------------------------------------------------------------- names */

/** "pending", "approved", ...; "?" for an out-of-range value. */
const char *store_state_name(store_req_state st);
/** Parse a state name; EST_ERR_INVALID if unknown. */
est_err store_state_parse(const char *name, store_req_state *out) EST_MUST_CHECK;
/** "sen", "sren", "skg", "skc"; "?" otherwise. */
const char *store_fn_name(store_fn fn);
/** "idevid", "ldevid", or NULL for STORE_CLIENT_UNKNOWN / out of range. */
const char *store_client_class_name(store_client_class c);
/** "subject", "idevid"; "?" otherwise. */
const char *store_preauth_kind_name(store_preauth_kind k);
/** Parse a pre-authorisation kind; EST_ERR_INVALID if unknown. */
est_err store_preauth_kind_parse(const char *name,
                                 store_preauth_kind *out) EST_MUST_CHECK;
/** "pending", ..., "reissued"; "?" otherwise. */
const char *store_audit_action_name(store_audit_action a);

#ifdef __cplusplus
}
#endif

#endif /* EST_STORE_H */
