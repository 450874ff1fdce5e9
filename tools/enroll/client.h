/**
 * @file client.h
 * @brief The CoAP-over-DTLS side of est-enroll on libcoap 4.3.1 (GnuTLS):
 * one client context, at most one DTLS session at a time, one request at a
 * time (NSTART = 1, RFC 9148 §6), Block1/Block2 by libcoap.
 */
#ifndef EC_CLIENT_H
#define EC_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/est_err.h"

/** Cap on any response body (a certificate bag, a keygen answer). */
#define EC_BODY_MAX 65536u
/** Longest server diagnostic payload we keep for messages. */
#define EC_DIAG_BODY_MAX 256u

typedef struct ec_client ec_client;

/** How to talk to the server. Strings are borrowed for the client's life. */
typedef struct ec_client_conf {
  const char *cert_file;   /**< our certificate (PEM, chain allowed) */
  const char *key_file;    /**< its private key (PEM) */
  const char *trust_file;  /**< server trust anchors (PEM) */
  const char *server_name; /**< name the server certificate must carry;
                                NULL: the host we connect to */
  unsigned block_size;     /**< 16..1024, power of two; 0: libcoap's */
  unsigned timeout_s;      /**< per handshake and per exchange */
  int verbose;             /**< 0 quiet .. 3 libcoap debug */
} ec_client_conf;

/** One response. body is malloc()ed (plus a NUL not counted in len). */
typedef struct ec_response {
  unsigned code;     /**< class * 100 + detail, e.g. 204 */
  int cf;            /**< Content-Format, -1 when absent */
  bool has_max_age;
  uint32_t max_age;
  uint8_t *body;
  size_t len;
} ec_response;

/** Free the body, wiping it first when @p secret. */
void ec_response_clear(ec_response *r, bool secret);

/**
 * Set up libcoap and read the three PEM files into memory (the key is
 * wiped when the client is freed). EST_ERR_IO with diag if one cannot be
 * read; EST_ERR_CONFIG if --key does not belong to --cert or --trust holds
 * no certificate.
 */
est_err ec_client_new(const ec_client_conf *conf, ec_client **out, char *diag,
                      size_t diag_len) EST_MUST_CHECK;
/** Close any session and free; NULL is a no-op. */
void ec_client_free(ec_client *c);

/** Release libcoap's global state; once, at process exit. */
void ec_client_cleanup(void);

/**
 * Open a DTLS session to @p host (name or literal) port @p port and drive
 * the handshake to the end, then check that the server certificate names
 * the host (RFC 6125; RFC 7030 §3.6). Any previous session is closed
 * first. EST_ERR_TLS (diag says why) on any failure.
 */
est_err ec_client_connect(ec_client *c, const char *host, uint16_t port,
                          char *diag, size_t diag_len) EST_MUST_CHECK;

/**
 * Add PEM certificates to the server trust anchors of every later
 * session: the Explicit TA database from crts (RFC 7030 §4.1.3; RFC 9148
 * §9.1 wants it used for new DTLS connections). --trust stays in.
 */
est_err ec_client_add_trust(ec_client *c, const uint8_t *pem,
                            size_t len) EST_MUST_CHECK;

/** true when a session to exactly @p host and @p port is open. */
bool ec_client_is_connected_to(const ec_client *c, const char *host, uint16_t port);

/** Close the session (sends close_notify). */
void ec_client_close(ec_client *c);

/**
 * base64 of this session's tls-unique channel binding (RFC 5929; RFC 7030
 * §3.5, RFC 9148 §3), NUL-terminated into @p out. The handshake is over,
 * because ec_client_connect() waits for it.
 */
est_err ec_client_tls_unique(ec_client *c, char *out, size_t out_len) EST_MUST_CHECK;

/** "DTLS1.2 ECDHE-ECDSA-AES-128-CCM-8" style text for -v. */
const char *ec_client_session_info(ec_client *c, char *buf, size_t len);

/**
 * One confirmable request (DLY-1) on the open session and its response,
 * waiting at most timeout_s. @p path is "/a/b" (percent-encoded),
 * @p query "k=v" or NULL, @p cf / @p accept -1 for none. A body goes out
 * with Block1 if needed; Block2, empty-ACK separate responses (RFC 9148
 * §4.7) and CON responses are handled by libcoap. EST_ERR_TLS when no
 * response came (timeout, RST, DTLS failure); EST_ERR_TOO_LARGE over
 * EC_BODY_MAX; EST_OK with any response code.
 */
est_err ec_client_request(ec_client *c, bool post, const char *path,
                          const char *query, int cf, int accept,
                          const uint8_t *body, size_t body_len,
                          ec_response *resp, char *diag,
                          size_t diag_len) EST_MUST_CHECK;

#endif /* EC_CLIENT_H */
