/**
 * @file bench_op.h
 * @brief One timed EST-coaps operation of est-bench (sen, crts or skg),
 * done with est-enroll's client library (est_client) and checked as
 * est-enroll checks it: the code, the Content-Format and a certificate
 * that parses, carries our key and chains to the EST CA.
 */
#ifndef BENCH_OP_H
#define BENCH_OP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "tools/enroll/certs.h"
#include "tools/enroll/client.h"

/** What is measured. */
typedef enum bench_scn {
  BENCH_SCN_SEN = 0, /**< POST /sen, a CSR with PoP (RFC 9148 §4.2) */
  BENCH_SCN_CRTS,    /**< GET /crts (RFC 9148 §4.1) */
  BENCH_SCN_SKG,     /**< POST /skg, the server makes the key (§4.8) */
  BENCH_SCN__MAX
} bench_scn;

/** How one operation ended. Values are array indices: append only. */
typedef enum bench_status {
  BENCH_OK = 0,
  BENCH_NOT_RUN,   /**< the time limit came first */
  BENCH_CONNECT,   /**< the DTLS handshake failed */
  BENCH_CSR,       /**< the CSR could not be built (local) */
  BENCH_TRANSPORT, /**< no response: timeout, RST, session closed */
  BENCH_CODE,      /**< a response, but not 2.04 / 2.05 */
  BENCH_FORMAT,    /**< the wrong Content-Format */
  BENCH_CERT,      /**< the certificate or key does not parse or check */
  BENCH_STATUS__MAX
} bench_status;

/** A short name for tables ("transport"); never NULL. */
const char *bench_status_name(bench_status s);

/** "sen", "crts", "skg"; never NULL. */
const char *bench_scn_name(bench_scn s);

/** Parse a scenario name; false if unknown. */
bool bench_scn_parse(const char *s, bench_scn *out);

/** One operation's result, written by a worker into shared memory. */
typedef struct bench_rec {
  uint8_t status;    /**< bench_status */
  uint16_t code;     /**< CoAP code as class * 100 + detail, 0: none */
  uint32_t hs_us;    /**< DTLS handshake, 0 when the session was reused */
  uint32_t req_us;   /**< request sent .. whole response received */
  uint32_t total_us; /**< start .. response received (handshake, CSR, request) */
} bench_rec;

/** What every operation of a run shares. Borrowed for the run. */
typedef struct bench_target {
  bench_scn scn;
  const char *host;
  uint16_t port;
  const char *root; /**< "/est" */
  bool reuse;       /**< keep the DTLS session between operations */
  const char *tag;  /**< makes CSR subjects unique: "CN=bench-<tag>-<idx>" */
  const gnutls_x509_privkey_t *keys; /**< one pre-generated key per op (sen, skg) */
  const ec_certs *anchors;           /**< the EST CA, for checking issued certs */
} bench_target;

/**
 * Do operation @p idx on @p c: open a DTLS session unless one is open and
 * reuse is on, build the CSR with this session's tls-unique (sen, skg),
 * send, check the answer, and close the session unless reuse is on. The
 * check happens after the clock stops. @p diag gets a one-line reason for
 * anything but BENCH_OK.
 */
bench_status bench_op_run(ec_client *c, const bench_target *t, size_t idx, bench_rec *rec,
                          char *diag, size_t diag_len);

#endif /* BENCH_OP_H */
