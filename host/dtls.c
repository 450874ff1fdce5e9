/* DTLS setup: key/cert checks with GnuTLS, the libcoap context with PKI
 * (docs/libcoap-4.3.1.md §2 order), and the coaps endpoints. */
#define _GNU_SOURCE /* memfd_create */
#include "addr.h"
#include "common/keyfile.h"
#include "common/token.h"
#include "coapd.h"
#include "metrics.h"
#include "reboot.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <gnutls/pkcs11.h>
#include <gnutls/x509.h>
#include <sys/mman.h>

#define KEYID_MAX 64

/* ---- a dtls_key on a PKCS#11 token (docs/decisions.md §20) ---------------- */

/* dtls_key_pin_file (common/token.h). *pin malloc()ed. */
static est_err read_pin(const coapd_config *cfg, char **pin, char *err, size_t errlen) {
  char why[PATH_MAX + 160];
  *pin = NULL;
  if (!cfg->dtls_key_pin_file.path)
    return EST_OK;
  est_err rc = est_pin_file_read(cfg->dtls_key_pin_file.path, pin, why, sizeof why);
  if (rc != EST_OK)
    coapd_errf(err, errlen, "%s:%u: dtls_key_pin_file: %s", cfg->path,
               cfg->dtls_key_pin_file.line, why);
  return rc;
}

/* The token key matches crt and signs now: a missing token, a wrong or
 * locked PIN is an error at start, named by line, never with the PIN. */
static est_err check_token_key(const coapd_config *cfg, gnutls_x509_crt_t crt, char *err,
                               size_t errlen) {
  gnutls_privkey_t k = NULL;
  gnutls_pubkey_t pub = NULL;
  char *pin = NULL, why[256];
  est_err rc = read_pin(cfg, &pin, err, errlen);
  if (rc != EST_OK)
    return rc;
  rc = EST_ERR_CONFIG;
  if (gnutls_pubkey_init(&pub) < 0 || gnutls_pubkey_import_x509(pub, crt, 0) < 0) {
    coapd_errf(err, errlen, "%s:%u: dtls_cert: no public key", cfg->path, cfg->dtls_cert.line);
    goto out;
  }
  rc = est_token_key_open(cfg->dtls_key.path, pin, pub, &k, why, sizeof why);
  if (rc == EST_ERR_KEY_MISMATCH)
    coapd_errf(err, errlen, "%s:%u: dtls_key does not match dtls_cert (line %u)", cfg->path,
               cfg->dtls_key.line, cfg->dtls_cert.line);
  else if (rc != EST_OK)
    coapd_errf(err, errlen, "%s:%u: dtls_key: %s", cfg->path, cfg->dtls_key.line, why);
out:
  if (pub)
    gnutls_pubkey_deinit(pub);
  if (k)
    gnutls_privkey_deinit(k);
  est_pin_free(pin);
  return rc;
}

/* Import every PEM certificate of @p f; the caller frees the list. */
static est_err load_certs(const coapd_config *cfg, const char *key,
                          const coapd_file_key *f, gnutls_x509_crt_t **crts,
                          unsigned *n, char *err, size_t errlen) {
  gnutls_datum_t d = {NULL, 0};
  int r = gnutls_load_file(f->path, &d);
  if (r < 0) {
    coapd_errf(err, errlen, "%s:%u: %s '%s': %s", cfg->path, f->line, key, f->path,
            gnutls_strerror(r));
    return EST_ERR_CONFIG;
  }
  r = gnutls_x509_crt_list_import2(crts, n, &d, GNUTLS_X509_FMT_PEM, 0);
  gnutls_free(d.data);
  if (r < 0 || *n == 0) {
    coapd_errf(err, errlen, "%s:%u: %s '%s': no PEM certificate (%s)", cfg->path,
            f->line, key, f->path, r < 0 ? gnutls_strerror(r) : "empty file");
    if (r >= 0)
      gnutls_free(*crts);
    *crts = NULL;
    *n = 0;
    return EST_ERR_CONFIG;
  }
  return EST_OK;
}

static void free_certs(gnutls_x509_crt_t *crts, unsigned n) {
  for (unsigned i = 0; i < n; i++)
    gnutls_x509_crt_deinit(crts[i]);
  gnutls_free(crts);
}

/* libcoap 4.3.1 hands GnuTLS a pull-timeout callback that select()s the
 * session's sock.fd, and a server session's is 0. If descriptor 0 is
 * readable (/dev/null under systemd or in a background job, or the
 * endpoint socket when 0 was closed) GnuTLS takes it for a datagram that
 * has arrived and never retransmits a handshake flight: one lost datagram
 * stalls the handshake (docs/libcoap-4.3.1.md §7 #18). An unbound AF_UNIX
 * datagram socket is never readable, and writable like a client's socket. */
est_err coapd_dtls_quiet_fd0(char *err, size_t errlen) {
  est_err rc = EST_OK;
  int s = socket(AF_UNIX, SOCK_DGRAM, 0);
  if (s < 0) {
    snprintf(err, errlen, "cannot open a socket for descriptor 0: %s",
             strerror(errno));
    rc = EST_ERR_IO;
    goto out;
  }
  if (s != 0 && dup2(s, 0) < 0) {
    snprintf(err, errlen, "cannot replace descriptor 0: %s", strerror(errno));
    rc = EST_ERR_IO;
  }
  if (s != 0)
    close(s);
out:
  return rc;
}

est_err coapd_dtls_check(const coapd_config *cfg, char *err, size_t errlen) {
  est_err rc = EST_ERR_CONFIG;
  gnutls_x509_crt_t *crts = NULL, *cas = NULL;
  unsigned ncrts = 0, ncas = 0;
  gnutls_x509_privkey_t key = NULL;
  gnutls_datum_t kd = {NULL, 0};
  unsigned char id_crt[KEYID_MAX], id_key[KEYID_MAX];
  size_t lc = sizeof id_crt, lk = sizeof id_key;
  int r;

  if (load_certs(cfg, "dtls_cert", &cfg->dtls_cert, &crts, &ncrts, err,
                 errlen) != EST_OK ||
      load_certs(cfg, "dtls_ca", &cfg->dtls_ca, &cas, &ncas, err, errlen) !=
          EST_OK)
    goto out;

  if (cfg->dtls_key_pin_file.path && !cfg->dtls_token) {
    coapd_errf(err, errlen, "%s:%u: dtls_key_pin_file needs a pkcs11: dtls_key", cfg->path,
               cfg->dtls_key_pin_file.line);
    goto out;
  }
  if (cfg->dtls_token) {
    rc = check_token_key(cfg, crts[0], err, errlen);
    goto out;
  }
  /* docs/decisions.md §14: a key others can read is refused, not used. */
  bool group_readable = false;
  char why[PATH_MAX + 160];
  rc = est_keyfile_check(cfg->dtls_key.path, &group_readable, why, sizeof why);
  if (rc != EST_OK) {
    coapd_errf(err, errlen, "%s:%u: dtls_key: %s", cfg->path, cfg->dtls_key.line, why);
    goto out;
  }
  if (group_readable)
    coapd_log(COAPD_LOG_WARNING, "%s:%u: dtls_key '%s' is readable by its group; "
              "chmod 600 it unless that group must read it", cfg->path, cfg->dtls_key.line,
              cfg->dtls_key.path);
  rc = EST_ERR_CONFIG;
  r = gnutls_load_file(cfg->dtls_key.path, &kd);
  if (r >= 0)
    r = gnutls_x509_privkey_init(&key);
  if (r >= 0)
    r = gnutls_x509_privkey_import2(key, &kd, GNUTLS_X509_FMT_PEM, NULL, 0);
  if (r < 0) {
    coapd_errf(err, errlen,
            "%s:%u: dtls_key '%s': not an unencrypted PEM private key (%s)",
            cfg->path, cfg->dtls_key.line, cfg->dtls_key.path,
            gnutls_strerror(r));
    goto out;
  }
  /* Same SPKI hash = same public key: a mismatch would otherwise show up
   * only as failing handshakes. */
  if (gnutls_x509_crt_get_key_id(crts[0], GNUTLS_KEYID_USE_SHA256, id_crt,
                                 &lc) < 0 ||
      gnutls_x509_privkey_get_key_id(key, GNUTLS_KEYID_USE_SHA256, id_key,
                                     &lk) < 0 ||
      lc != lk || memcmp(id_crt, id_key, lc) != 0) {
    coapd_errf(err, errlen, "%s:%u: dtls_key does not match dtls_cert (line %u)",
            cfg->path, cfg->dtls_key.line, cfg->dtls_cert.line);
    rc = EST_ERR_KEY_MISMATCH;
    goto out;
  }
  rc = EST_OK;
out:
  if (kd.data) {
    gnutls_memset(kd.data, 0, kd.size);
    gnutls_free(kd.data);
  }
  if (key)
    gnutls_x509_privkey_deinit(key);
  free_certs(crts, ncrts);
  free_certs(cas, ncas);
  return rc;
}

static const char *event_name(coap_event_t ev) {
  switch (ev) {
  case COAP_EVENT_SERVER_SESSION_NEW:
    return "session new";
  case COAP_EVENT_SERVER_SESSION_DEL:
    return "session closed";
  case COAP_EVENT_DTLS_CLOSED:
    return "dtls closed";
  case COAP_EVENT_DTLS_CONNECTED:
    return "dtls connected";
  case COAP_EVENT_DTLS_ERROR:
    return "dtls error";
  default:
    return NULL;
  }
}

/* The host owns the context's single event-handler slot (plugin.h). */
static int on_event(coap_session_t *session, const coap_event_t event) {
  coap_context_t *ctx = coap_session_get_context(session);
  coapd_app *app = ctx ? coap_get_app_data(ctx) : NULL;
  const char *name = event_name(event);
  if (name && coap_get_log_level() >= COAPD_LOG_INFO) {
    char addr[INET6_ADDRSTRLEN + 16];
    memset(addr, 0, sizeof addr);
    coap_print_addr(coap_session_get_addr_remote(session),
                    (unsigned char *)addr, sizeof addr - 1);
    coapd_log(COAPD_LOG_INFO, "%s, peer %s", name, addr);
  }
  coapd_metrics_event(app, session, (int)event); /* handshakes, sessions */
  if (event == COAP_EVENT_SERVER_SESSION_NEW)
    coapd_admit_session(session, 1);
  if (event == COAP_EVENT_SERVER_SESSION_DEL) {
    coapd_admit_session(session, 0);
    reboot_forget(session);
    if (app)
      coapd_session_release(app, session);
  }
  return 0;
}

/* The host owns the nack slot too. An RST to our ping is a reboot probe's
 * answer (reboot.h). */
static void on_nack(coap_session_t *session, const coap_pdu_t *sent,
                    const coap_nack_reason_t reason, const coap_mid_t mid) {
  (void)sent;
  if (reason == COAP_NACK_RST)
    reboot_answered(session, mid);
}

/* Any path no plugin serves: 4.04 as libcoap would answer, plus the short
 * diagnostic payload a client can show (RFC 7252 §5.5.2). */
static void hnd_unknown(coap_resource_t *resource, coap_session_t *session,
                        const coap_pdu_t *request, const coap_string_t *query,
                        coap_pdu_t *response) {
  static const char msg[] = "no such resource";
  (void)resource;
  (void)query;
  /* RFC 7252 §4.3: a NON answer is a new message; libcoap 4.3.1 reuses the
   * request's Message ID (docs/libcoap-4.3.1.md §7, row 15). */
  if (coap_pdu_get_type(request) == COAP_MESSAGE_NON)
    coap_pdu_set_mid(response, coap_new_message_id(session));
  coap_pdu_set_code(response, COAP_RESPONSE_CODE_NOT_FOUND);
  coap_add_data(response, sizeof msg - 1, (const uint8_t *)msg);
}

static est_err add_unknown_resource(coap_context_t *ctx) {
  static const coap_request_t methods[] = {
    COAP_REQUEST_GET,   COAP_REQUEST_POST,  COAP_REQUEST_DELETE,
    COAP_REQUEST_FETCH, COAP_REQUEST_PATCH, COAP_REQUEST_IPATCH};
  coap_resource_t *r = coap_resource_unknown_init2(hnd_unknown, 0);
  if (!r)
    return EST_ERR_NOMEM;
  for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
    coap_register_request_handler(r, methods[i], hnd_unknown);
  coap_add_resource(ctx, r);
  return EST_OK;
}

/* What libcoap borrows for a token key, kept with @p cfg: the PIN, and
 * dtls_cert's first certificate as DER in a memfd. */
static est_err token_setup(const coapd_config *cfg, char *err, size_t errlen) {
  coapd_dtls_token *t = cfg->dtls_token;
  gnutls_x509_crt_t *crts = NULL;
  unsigned n = 0;
  gnutls_datum_t der = {NULL, 0};
  if (t->cert_fd >= 0)
    return EST_OK; /* applied before: the same configuration */
  est_err rc = read_pin(cfg, &t->pin, err, errlen);
  if (rc == EST_OK)
    rc = load_certs(cfg, "dtls_cert", &cfg->dtls_cert, &crts, &n, err, errlen);
  if (rc != EST_OK)
    return rc;
  int fd = -1;
  if (gnutls_x509_crt_export2(crts[0], GNUTLS_X509_FMT_DER, &der) < 0 ||
      (fd = memfd_create("coapd-dtls-cert", MFD_CLOEXEC)) < 0 ||
      write(fd, der.data, der.size) != (ssize_t)der.size) {
    coapd_errf(err, errlen, "%s:%u: dtls_cert: cannot hand it to libcoap as DER (%s)",
               cfg->path, cfg->dtls_cert.line, strerror(errno));
    if (fd >= 0)
      close(fd);
    rc = EST_ERR_IO;
  } else {
    t->cert_fd = fd;
    snprintf(t->cert_path, sizeof t->cert_path, "/proc/self/fd/%d", fd);
  }
  gnutls_free(der.data);
  free_certs(crts, n);
  return rc;
}

/* The PKI setup and the session limits from @p cfg. libcoap 4.3.1 copies
 * the setup (its file names are borrowed: @p cfg must stay alive) and
 * reads the files for every new session, so a reload takes effect for new
 * handshakes and open sessions keep theirs. */
est_err coapd_dtls_apply(coapd_app *app, const coapd_config *cfg, char *err,
                         size_t errlen) {
  coap_dtls_pki_t pki;
  memset(&pki, 0, sizeof pki);
  pki.version = COAP_DTLS_PKI_SETUP_VERSION;
  /* RFC 9148 §3: every client authenticates with a certificate. */
  pki.verify_peer_cert = 1;
  pki.check_common_ca = 1; /* GnuTLS: only sends the CA names */
  pki.cert_chain_validation = 1;
  pki.cert_chain_verify_depth = (uint8_t)cfg->dtls_verify_depth.value;
  pki.allow_no_crl = 1;
  pki.allow_expired_crl = 1;
  /* AUTH-5 (RFC 9148 §3, docs/decisions.md §5): a server MAY accept an expired
   * IDevID, but only the plugin can tell an IDevID from an LDevID. With
   * this set, libcoap 4.3.1 (GnuTLS) clears only GNUTLS_CERT_EXPIRED and
   * GNUTLS_CERT_NOT_ACTIVATED from the verify status: the chain must still
   * verify to a dtls_ca anchor. Plugins then check validity themselves. */
  if (cfg->dtls_allow_expired.value) {
    pki.allow_expired_certs = 1;
    coapd_log(COAPD_LOG_NOTICE,
              "%s:%u: dtls_allow_expired yes: client certificates outside "
              "their validity period pass the DTLS handshake; plugins "
              "decide about expiry",
              cfg->path, cfg->dtls_allow_expired.line);
  }
  /* No validate_cn_call_back: in 4.3.1 it breaks handshakes with client
   * certs over 2048 B DER; plugins read the chain with peer_chain(). */
  if (cfg->dtls_token) {
    est_err rc = token_setup(cfg, err, errlen);
    if (rc != EST_OK)
      return rc;
    /* libcoap 4.3.1 reads a PKCS#11 setup's certificate and CA as DER
     * (src/coap_gnutls.c, setup_pki_credentials): the certificate from a
     * memfd, the PEM trust anchors as root CAs (docs/decisions.md §20). */
    pki.pki_key.key_type = COAP_PKI_KEY_PKCS11;
    pki.pki_key.key.pkcs11.public_cert = cfg->dtls_token->cert_path;
    pki.pki_key.key.pkcs11.private_key = cfg->dtls_key.path;
    pki.pki_key.key.pkcs11.ca = NULL;
    pki.pki_key.key.pkcs11.user_pin = cfg->dtls_token->pin;
    if (coap_context_set_pki_root_cas(app->ctx, cfg->dtls_ca.path, NULL) != 1) {
      coapd_errf(err, errlen, "%s:%u: dtls_ca rejected by libcoap", cfg->path,
                 cfg->dtls_ca.line);
      return EST_ERR_TLS;
    }
    coapd_log(COAPD_LOG_WARNING,
              "%s:%u: dtls_key on a token: libcoap 4.3.1 logs in and signs on the loop "
              "thread for every DTLS handshake, and sends dtls_cert's first certificate "
              "only (docs/decisions.md section 20)", cfg->path, cfg->dtls_key.line);
  } else {
    pki.pki_key.key_type = COAP_PKI_KEY_PEM;
    pki.pki_key.key.pem.public_cert = cfg->dtls_cert.path;
    pki.pki_key.key.pem.private_key = cfg->dtls_key.path;
    pki.pki_key.key.pem.ca_file = cfg->dtls_ca.path;
  }
  if (coap_context_set_pki(app->ctx, &pki) != 1) {
    coapd_errf(err, errlen,
            "%s:%u: dtls_cert/dtls_key/dtls_ca rejected by libcoap", cfg->path,
            cfg->dtls_cert.line);
    return EST_ERR_TLS;
  }
  coap_context_set_session_timeout(app->ctx, cfg->session_timeout.value);
  coap_context_set_max_idle_sessions(app->ctx, cfg->max_idle_sessions.value);
  coap_context_set_max_handshake_sessions(app->ctx,
                                          cfg->max_handshake_sessions.value);
  reboot_enable(cfg->dtls_reboot_probe.value != 0);
  return EST_OK;
}

est_err coapd_dtls_context(coapd_app *app, char *err, size_t errlen) {
  const coapd_config *cfg = app->cfg;
  if (!coap_dtls_is_supported()) {
    coapd_errf(err, errlen, "libcoap was built without DTLS support");
    return EST_ERR_TLS;
  }
  app->ctx = coap_new_context(NULL);
  if (!app->ctx) {
    coapd_errf(err, errlen, "coap_new_context failed");
    return EST_ERR_NOMEM;
  }
  coap_set_app_data(app->ctx, app);
  /* Without COAP_BLOCK_SINGLE_BODY: plugins reassemble Block1 themselves
   * (docs/decisions.md §11, docs/libcoap-4.3.1.md §7 #1/#2). */
  coap_context_set_block_mode(app->ctx, COAP_BLOCK_USE_LIBCOAP);

  est_err rc = coapd_dtls_apply(app, cfg, err, errlen);
  if (rc != EST_OK)
    return rc;
  coap_register_event_handler(app->ctx, on_event);
  coap_register_nack_handler(app->ctx, on_nack);
  if (add_unknown_resource(app->ctx) != EST_OK) {
    coapd_errf(err, errlen, "out of memory");
    return EST_ERR_NOMEM;
  }
  return EST_OK;
}

/* The config parser checked the literal (host/config.c). */
static void fill_addr(const coapd_listen *l, coap_address_t *a) {
  (void)coapd_addr_set(a, l->addr, l->port);
}

/* libcoap sets SO_REUSEADDR on its UDP sockets, so a second server would
 * silently share the port (docs/libcoap-4.3.1.md §7 #8). A plain bind without
 * it fails with EADDRINUSE while anyone holds the port. */
static int probe(const coap_address_t *a) {
  int fd = socket(a->addr.sa.sa_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return errno;
  int off = 0, e = 0;
  /* libcoap binds IPv6 dual-stack; probe the same way. */
  if (a->addr.sa.sa_family == AF_INET6)
    (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
  if (bind(fd, &a->addr.sa, a->size) != 0)
    e = errno;
  close(fd);
  return e;
}

est_err coapd_dtls_endpoints(coapd_app *app, char *err, size_t errlen) {
  const coapd_config *cfg = app->cfg;
  for (size_t i = 0; i < cfg->nlisten; i++) {
    const coapd_listen *l = &cfg->listen[i];
    coap_address_t a;
    fill_addr(l, &a);
    /* Probe right before each endpoint, so two listen lines that overlap
     * (0.0.0.0 and 127.0.0.1, same port) are caught too. */
    int e = probe(&a);
    if (e) {
      coapd_errf(err, errlen, "%s:%u: listen %s %u: %s", cfg->path, l->line,
              l->addr, l->port,
              e == EADDRINUSE ? "address already in use" : strerror(e));
      return e == EADDRINUSE ? EST_ERR_ADDR_IN_USE : EST_ERR_IO;
    }
    if (!coap_new_endpoint(app->ctx, &a, COAP_PROTO_DTLS)) {
      coapd_errf(err, errlen, "%s:%u: listen %s %u: cannot open DTLS endpoint",
              cfg->path, l->line, l->addr, l->port);
      return EST_ERR_IO;
    }
    coapd_log(COAPD_LOG_INFO, "listening on coaps://%s%s%s:%u",
              l->family == AF_INET6 ? "[" : "", l->addr,
              l->family == AF_INET6 ? "]" : "", l->port);
  }
  return EST_OK;
}
