/**
 * @file ops.h
 * @brief The est-enroll commands: discovery (RFC 9148 §4.1), cacerts,
 * csrattrs, enroll/reenroll (§4.2) and server-side keygen (§4.8), with the
 * delayed-response loop of §4.7 and the output-file rules.
 */
#ifndef EC_OPS_H
#define EC_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "client.h"
#include "csr.h"
#include "common/est_err.h"
#include "proto/links.h"
#include "proto/multipart.h"

/** Default for --max-wait, in seconds. */
#define EC_DEFAULT_MAX_WAIT 300u

typedef enum ec_cmd {
  EC_CMD_DISCOVER = 0,
  EC_CMD_CACERTS,
  EC_CMD_CSRATTRS,
  EC_CMD_ENROLL,
  EC_CMD_REENROLL,
  EC_CMD_SERVERKEYGEN,
  EC_CMD__MAX
} ec_cmd;

/** Everything a run needs; main.c fills it from the command line. */
typedef struct ec_run {
  ec_cmd cmd;
  ec_uri server;               /**< --server, with an authority */
  const char *root;            /**< --root, NULL: discover */
  const char *label;           /**< --label or NULL */
  ec_client_conf conf;         /**< --cert, --key, --trust, ... */
  const char *out;             /**< --out */
  bool der;                    /**< --der */
  const char *subject;         /**< --subject */
  const char *const *san_dns;  /**< --san-dns ... */
  size_t san_dns_count;
  const char *const *san_ip;   /**< --san-ip ... */
  size_t san_ip_count;
  const char *key_file;        /**< --key-file (enroll, reenroll) */
  ec_key_type key_type;        /**< --key-type */
  const char *key_out;         /**< --key-out (serverkeygen) */
  bool single_cert;            /**< --single-cert: skc instead of skg */
  bool no_pop;                 /**< --no-pop */
  uint64_t max_wait_s;         /**< --max-wait */
  long renew_within_days;      /**< --renew-within, -1 when not given */
  int verbose;                 /**< -v count */
} ec_run;

/**
 * Run one command. On failure @p diag says what went wrong, in one line
 * (including the server's diagnostic payload when there was one).
 */
est_err ec_run_command(const ec_run *r, char *diag, size_t diag_len) EST_MUST_CHECK;

/**
 * The process exit status for a result: 0 success, 1 local error, 2
 * usage, 3 still pending, 4 rejected (4.01/4.03), 5 other protocol error,
 * 6 DTLS or transport failure. The one place this mapping lives.
 */
int ec_exit_code(est_err err);

/** The est_err for a CoAP error response code (class * 100 + detail). */
est_err ec_code_err(unsigned code);

/**
 * Split a keygen answer (CF 62, RFC 9148 §4.8, SKG-3): exactly one
 * unencrypted PKCS#8 key part (284) and one certificate part, 281 for skg
 * or 287 for skc (@p single_cert), in either order, both non-empty. The
 * parts point into @p body. EST_ERR_MALFORMED (diag says why) or
 * EST_ERR_TOO_LARGE.
 */
est_err ec_keygen_split(const uint8_t *body, size_t len, bool single_cert,
                        mp_part *key, mp_part *cert, char *diag,
                        size_t diag_len) EST_MUST_CHECK;

#endif /* EC_OPS_H */
