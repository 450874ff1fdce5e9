/* est_coaps.so: options, CA set-up and the RFC 9148 resources. */
#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <gnutls/pkcs11.h>

#include "async.h"
#include "common/keyfile.h"
#include "common/token.h"
#include "common/opts.h"
#include "est_plugin.h"
#include "store/store.h"
#include "crlpub.h"
#include "idevid.h"
#include "handlers.h"
#include "https.h"
#include "registrar.h"
#include "upstream.h"
#include "metrics.h"
#include "proto/der.h"

#define CSR_ATTRS_MAX 65536u
#define MAX_BODY_LIMIT (1024u * 1024u)
/* How the options are written in coapd.conf, for messages. */
#define OPT_PREFIX "plugin_opt_"

/* Every option as the table (est_options) stores it; apply_options() then
 * moves the values into the plugin state. */
typedef struct opt_ctx {
  est_plugin *p;
  const char *root;
  const char *ca_cert;
  const char *ca_key;
  const char *ca_key_pin_file, *pkcs11_module, *https_key_pin_file; /* §20 */
  const char *idevid_trust;
  const char *idevid_crl;
  const char *crl_file, *crl_url, *db_group;
  long long crl_validity;
  const char *csr_attrs;
  const char *labels;
  const char *db_path;
  long long cert_days, max_body, retry_after, pending_ttl, max_pending,
      db_busy_timeout, dedup_entries, dedup_max_bytes, block1_transfers, max_pending_total;
  int pop_linking, keygen_type, idevid_policy, ldevid_policy, db_synchronous;
  bool keygen, idevid_allow_expired;
  /* Issuance policy (docs/decisions.md §13). */
  const char *san_types, *san_dns_patterns, *subject_attrs, *cert_eku, *csr_key_types;
  long long max_sans, max_subject_bytes, max_cert_bytes, csr_rsa_min_bits;
  int subject_match;
  bool san_wildcards;
  /* EST over HTTPS (docs/decisions.md §16); https_listen is read line by
   * line (https_options). */
  const char *https_listen, *https_cert, *https_key;
  long long https_max_connections, https_max_per_ip, https_timeout, https_max_header_bytes;
  int https_anonymous, ra_policy;
  const char *ra_trust;
  /* Registrar (RFC 9148 §5, docs/decisions.md §19). */
  const char *upstream, *upstream_ca, *upstream_cert, *upstream_key, *upstream_cache;
  long long upstream_timeout, upstream_refresh;
  names_config names; /* filled by apply_options, copied by enroll_open */
  pki_profile profile; /* set on the CA by load_files */
} opt_ctx;

/* RFC 5280 §4.2.1.13: a URI a verifier can fetch the CRL from. */
static int check_url(const char *v, char *why, size_t why_len) {
  if (strncmp(v, "http://", 7) != 0 && strncmp(v, "https://", 8) != 0 &&
      strncmp(v, "ldap://", 7) != 0) {
    snprintf(why, why_len, "must start with http://, https:// or ldap://");
    return -1;
  }
  for (const char *c = v; *c; c++)
    if ((unsigned char)*c <= ' ' || (unsigned char)*c >= 0x7f) {
      snprintf(why, why_len, "blanks and non-ASCII must be percent-encoded");
      return -1;
    }
  return 0;
}

/* A root is an absolute path without a trailing slash, like "/est". */
static int check_root(const char *v, char *why, size_t why_len) {
  size_t n = strlen(v);
  if (n < 2 || n >= EST_ROOT_MAX || v[0] != '/' || v[n - 1] == '/' ||
      strstr(v, "//") || strcmp(v, "/.well-known/est") == 0) {
    snprintf(why, why_len,
             "must look like /est, at most %d characters, not "
             "/.well-known/est", EST_ROOT_MAX - 1);
    return -1;
  }
  for (const char *c = v; *c; c++)
    if (!isalnum((unsigned char)*c) && !strchr("/._-~", *c)) {
      snprintf(why, why_len, "a character not allowed in a path");
      return -1;
    }
  return 0;
}

/* Each label: not empty, path-safe, not an EST function name, once. The
 * table has already capped their number. Labels are taken exactly as
 * written between the commas: a blank is not a path character, so "a, b"
 * is refused here although a LIST would trim it. */
static int check_labels(const char *v, char *why, size_t why_len) {
  char seen[EST_MAX_LABELS][EST_LABEL_MAX];
  size_t count = 0;
  for (const char *s = *v ? v : NULL; s; count++) {
    const char *e = strchr(s, ',');
    size_t n = e ? (size_t)(e - s) : strlen(s);
    if (count == EST_MAX_LABELS) {
      snprintf(why, why_len, "at most %d labels", EST_MAX_LABELS);
      return -1;
    }
    if (n == 0 || n > PROTO_LABEL_MAX) {
      snprintf(why, why_len, "each label needs 1 to %u characters",
               PROTO_LABEL_MAX);
      return -1;
    }
    char *l = seen[count];
    memcpy(l, s, n);
    l[n] = '\0';
    est_err lrc = proto_label_check(l);
    if (lrc == EST_ERR_EXISTS) {
      /* RFC 7030 §3.2.2: a label must not equal an operation name. */
      snprintf(why, why_len, "'%s' is an EST function name", l);
      return -1;
    }
    if (lrc != EST_OK) {
      snprintf(why, why_len, "'%s' has a character not allowed in a path", l);
      return -1;
    }
    for (size_t j = 0; j < count; j++)
      if (strcmp(seen[j], l) == 0) {
        snprintf(why, why_len, "'%s' given twice", l);
        return -1;
      }
    s = e ? e + 1 : NULL;
  }
  return 0;
}

/* Word lists; apply_options() maps each word to its enum with the owning
 * module's own parser, so a word cannot mean different things here. */
static const char *const pop_words[] = {"off", "verify", "require", NULL};
static const char *const keygen_words[] = {"ec-p256", "rsa-2048", "rsa-3072",
                                           NULL};
static const char *const policy_words[] = {"auto", "manual", NULL};
/* store/README.md: FULL survives power loss, NORMAL only a crash. */
static const char *const sync_words[] = {"full", "normal", NULL};
static const char *const match_words[] = {"none", "idevid-cn", "idevid-serial", NULL};
/* docs/decisions.md §16: no client certificate, then an operator decides. */
static const char *const anon_words[] = {"off", "manual", NULL};

static int check_https_listen(const char *v, char *why, size_t why_len) {
  return https_addr_parse(v, NULL, why, why_len);
}

/* The issuance policy's lists, checked by their owners (names.c, pki.c). */
static int check_names(names_field f, const char *v, char *why, size_t why_len) {
  return names_config_set(NULL, f, v, why, why_len) == EST_OK ? 0 : -1;
}
static int check_san_types(const char *v, char *why, size_t why_len) {
  return check_names(NAMES_FIELD_SAN_TYPES, v, why, why_len);
}
static int check_dns_patterns(const char *v, char *why, size_t why_len) {
  return check_names(NAMES_FIELD_DNS_PATTERNS, v, why, why_len);
}
static int check_subject_attrs(const char *v, char *why, size_t why_len) {
  return check_names(NAMES_FIELD_SUBJECT_ATTRS, v, why, why_len);
}
static int check_key_types(const char *v, char *why, size_t why_len) {
  return check_names(NAMES_FIELD_KEY_TYPES, v, why, why_len);
}
static int check_eku(const char *v, char *why, size_t why_len) {
  unsigned eku;
  if (pki_eku_parse(v, &eku) == EST_OK)
    return 0;
  snprintf(why, why_len, "clientAuth and/or serverAuth");
  return -1;
}

static int check_upstream(const char *v, char *why, size_t why_len) {
  return upstream_url_check(v, why, why_len);
}

/* Every option est_coaps.so takes: coapd checks the plugin_opt_ lines
 * against this before est_init, and parse_options() reads them with it. */
static const coapd_opt est_option_entries[] = {
  {.name = "ca_cert", COAPD_OPT_PATH_IN(opt_ctx, ca_cert), .max_len = PATH_MAX - 1,
   .doc = "the issuing CA certificate, PEM, optionally followed by its chain (required "
          "unless upstream is set)"},
  {.name = "ca_key", COAPD_OPT_PATH_IN(opt_ctx, ca_key), .max_len = PATH_MAX - 1,
   .doc = "the CA private key, PEM (EC P-256/P-384 or RSA; required unless upstream is set), "
          "or an RFC 7512 pkcs11: URI of a key on a token"},
  {.name = "ca_key_pin_file", COAPD_OPT_PATH_IN(opt_ctx, ca_key_pin_file),
   .max_len = PATH_MAX - 1,
   .doc = "a file holding the token PIN for a pkcs11: ca_key (not readable by others)"},
  {.name = "pkcs11_module", COAPD_OPT_PATH_IN(opt_ctx, pkcs11_module), .max_len = PATH_MAX - 1,
   .doc = "a PKCS#11 module to load that is not registered with p11-kit"},
  {.name = "cert_days", COAPD_OPT_INT_IN(opt_ctx, cert_days), .min = 1, .max = 36500,
   .def = "365", .doc = "validity of issued certificates in days (cut to the CA's own)"},
  {.name = "idevid_trust", COAPD_OPT_PATH_IN(opt_ctx, idevid_trust),
   .max_len = PATH_MAX - 1,
   .doc = "PEM bundle of manufacturer CAs whose certificates (IDevIDs) may enroll"},
  /* docs/decisions.md §14: reread when a file changes. */
  {.name = "idevid_crl", COAPD_OPT_LIST_IN(opt_ctx, idevid_crl), .min = 0,
   .max = IDEVID_CRL_MAX, .item_max = PATH_MAX - 1,
   .doc = "manufacturer CRLs (PEM or DER, comma-separated files): an IDevID they list gets "
          "4.03"},
  {.name = "root", COAPD_OPT_STRING_IN(opt_ctx, root), .max_len = EST_ROOT_MAX - 1,
   .check = check_root, .def = "/est",
   .doc = "the short root; every function is also under /.well-known/est"},
  {.name = "labels", COAPD_OPT_LIST_IN(opt_ctx, labels), .min = 0,
   .max = EST_MAX_LABELS, .item_max = PROTO_LABEL_MAX, .check = check_labels,
   .doc = "CA labels, served as /<root>/<label>/<fn> (RFC 7030 section 3.2.2)"},
  {.name = "pop_linking", COAPD_OPT_ENUM_IN(opt_ctx, pop_linking), .words = pop_words,
   .def = "verify",
   .doc = "challengePassword as tls-unique/tls-exporter: ignore, check if present, require"},
  {.name = "csr_attrs", COAPD_OPT_PATH_IN(opt_ctx, csr_attrs), .max_len = PATH_MAX - 1,
   .doc = "a DER CsrAttrs served by att; without it att answers 4.04"},
  {.name = "keygen", COAPD_OPT_BOOL_IN(opt_ctx, keygen), .def = "off",
   .doc = "server-side key generation (skg, skc)"},
  {.name = "keygen_type", COAPD_OPT_ENUM_IN(opt_ctx, keygen_type),
   .words = keygen_words, .def = "ec-p256",
   .doc = "the key type server-side key generation makes"},
  /* A CSR needs a few hundred bytes; post-quantum ones a few KiB. */
  {.name = "max_body", COAPD_OPT_INT_IN(opt_ctx, max_body), .min = 1024,
   .max = MAX_BODY_LIMIT, .def = "65536",
   .doc = "largest request body in bytes; larger gets 4.13 with Size1"},
  /* docs/decisions.md §14. */
  {.name = "crl_file", COAPD_OPT_PATH_IN(opt_ctx, crl_file), .max_len = PATH_MAX - 1,
   .doc = "where this CA's CRL is written (DER, replaced atomically); needs db_path"},
  {.name = "crl_validity", COAPD_OPT_INT_IN(opt_ctx, crl_validity), .min = 10,
   .max = 31536000, .def = "604800",
   .doc = "seconds from a CRL's thisUpdate to its nextUpdate; it is signed again halfway"},
  {.name = "crl_url", COAPD_OPT_STRING_IN(opt_ctx, crl_url), .max_len = PKI_URL_MAX - 1,
   .check = check_url,
   .doc = "URL put in every certificate issued as its CRL Distribution Point"},
  {.name = "db_group", COAPD_OPT_STRING_IN(opt_ctx, db_group), .max_len = 255,
   .doc = "a new database is 0640 in this group (e.g. a broker's), else 0600"},
  {.name = "db_path", COAPD_OPT_PATH_IN(opt_ctx, db_path), .max_len = PATH_MAX - 1,
   .doc = "SQLite database of requests, certificates and the audit trail (created if missing)"},
  {.name = "idevid_policy", COAPD_OPT_ENUM_IN(opt_ctx, idevid_policy),
   .words = policy_words, .def = "manual",
   .doc = "IDevID enrollments: issue at once, or wait for an operator"},
  /* AUTH-5 (RFC 9148 §3, docs/decisions.md §5): an expired IDevID may enroll. */
  {.name = "idevid_allow_expired", COAPD_OPT_BOOL_IN(opt_ctx, idevid_allow_expired),
   .def = "off",
   .doc = "an IDevID past its notAfter may still enroll (RFC 9148 section 3, AUTH-5)"},
  {.name = "ldevid_policy", COAPD_OPT_ENUM_IN(opt_ctx, ldevid_policy),
   .words = policy_words, .def = "auto",
   .doc = "the same for clients holding a certificate from this CA"},
  /* Max-Age is a uint of at most 4 bytes (RFC 7252 §5.10.5); a day is plenty. */
  {.name = "retry_after", COAPD_OPT_INT_IN(opt_ctx, retry_after), .min = 1,
   .max = 86400, .def = "60",
   .doc = "seconds: Max-Age of the 5.03 a waiting request gets (RFC 9148 section 4.7)"},
  {.name = "pending_ttl", COAPD_OPT_INT_IN(opt_ctx, pending_ttl), .min = 60,
   .max = 31536000, .def = "604800",
   .doc = "seconds a request may stay undecided, or approved but not collected"},
  {.name = "max_pending_per_client", COAPD_OPT_INT_IN(opt_ctx, max_pending),
   .min = 1, .max = 1000, .def = "5",
   .doc = "live requests one client certificate may have waiting"},
  {.name = "max_pending_total", COAPD_OPT_INT_IN(opt_ctx, max_pending_total), .min = 1,
   .max = 10000000, .def = "10000",
   .doc = "requests waiting for an operator in all; past it a new one gets 5.03 retry later"},
  /* Short: a locked database must not stall the CoAP loop for long. */
  {.name = "db_busy_timeout", COAPD_OPT_INT_IN(opt_ctx, db_busy_timeout),
   .min = 1, .max = 5000, .def = "50",
   .doc = "milliseconds a database write may wait for a lock before the device retries"},
  {.name = "db_synchronous", COAPD_OPT_ENUM_IN(opt_ctx, db_synchronous),
   .words = sync_words, .def = "full",
   .doc = "full: every write survives power loss; normal: only a crash of coapd"},
  /* RFC 7252 §4.5, docs/decisions.md §12. */
  {.name = "dedup_entries", COAPD_OPT_INT_IN(opt_ctx, dedup_entries), .min = 0,
   .max = DEDUP_SESSION_MAX, .def = "8",
   .doc = "answers kept per DTLS session for repeated requests (0: off, repeats run again)"},
  {.name = "dedup_max_bytes", COAPD_OPT_INT_IN(opt_ctx, dedup_max_bytes), .min = 0,
   .max = 67108864, .def = "1048576",
   .doc = "bytes of kept answers over all sessions; past it a repeat gets 5.03 retry later"},
  /* RFC 7959 §2.3, RFC 9175 §3: transfers told apart by Request-Tag. */
  {.name = "block1_transfers", COAPD_OPT_INT_IN(opt_ctx, block1_transfers), .min = 1,
   .max = BODY_XFERS_MAX, .def = "4",
   .doc = "Block1 uploads one DTLS session may have open at once (the one idle longest "
          "makes room)"},
  /* Issuance policy: docs/decisions.md §13, RFC 5280 §4.2.1.6/§4.2.1.12. */
  {.name = "san_types", COAPD_OPT_LIST_IN(opt_ctx, san_types), .min = 0, .max = 5,
   .item_max = 16, .check = check_san_types, .def = "dns,ip",
   .doc = "subjectAltName types a CSR may ask for: dns, ip, uri, email, othername"},
  {.name = "san_wildcards", COAPD_OPT_BOOL_IN(opt_ctx, san_wildcards), .def = "off",
   .doc = "a DNS name may be a wildcard (*.example.com, leftmost label only)"},
  {.name = "san_dns_patterns", COAPD_OPT_LIST_IN(opt_ctx, san_dns_patterns), .min = 0,
   .max = NAMES_PATTERNS_MAX, .item_max = NAMES_DNS_MAX, .check = check_dns_patterns,
   .doc = "DNS names must match one: exact, or *.suffix with * standing for exactly one "
          "label; none given: any DNS name"},
  {.name = "max_sans", COAPD_OPT_INT_IN(opt_ctx, max_sans), .min = 0,
   .max = NAMES_SANS_LIMIT, .def = "8",
   .doc = "most subjectAltName entries a CSR may ask for (more: 4.00)"},
  {.name = "max_subject_bytes", COAPD_OPT_INT_IN(opt_ctx, max_subject_bytes),
   .min = NAMES_SUBJECT_MIN, .max = NAMES_SUBJECT_LIMIT, .def = "512",
   .doc = "largest CSR subject, DER and as text (more: 4.00)"},
  {.name = "max_cert_bytes", COAPD_OPT_INT_IN(opt_ctx, max_cert_bytes), .min = 1024,
   .max = PKI_CERT_MAX, .def = "4096",
   .doc = "largest certificate the CA writes (more: 4.00, nothing issued)"},
  {.name = "subject_attrs", COAPD_OPT_LIST_IN(opt_ctx, subject_attrs), .min = 0, .max = 17,
   .item_max = 16, .check = check_subject_attrs, .def = "CN,serialNumber,O,OU,C,ST,L",
   .doc = "subject attributes a CSR may carry"},
  {.name = "subject_match", COAPD_OPT_ENUM_IN(opt_ctx, subject_match), .words = match_words,
   .def = "none",
   .doc = "the CSR's CN or serialNumber must be the client certificate's CN or serialNumber"},
  {.name = "cert_eku", COAPD_OPT_LIST_IN(opt_ctx, cert_eku), .min = 1, .max = 2,
   .item_max = 16, .check = check_eku, .def = "clientAuth",
   .doc = "extended key usage of issued certificates: clientAuth, serverAuth"},
  {.name = "csr_key_types", COAPD_OPT_LIST_IN(opt_ctx, csr_key_types), .min = 1, .max = 5,
   .item_max = 16, .check = check_key_types, .def = "ec-p256,ec-p384,rsa",
   .doc = "CSR key types: ec-p256, ec-p384, ec-p521, ed25519, rsa"},
  {.name = "csr_rsa_min_bits", COAPD_OPT_INT_IN(opt_ctx, csr_rsa_min_bits), .min = 2048,
   .max = 8192, .def = "2048", .doc = "smallest RSA key a CSR may have"},
  /* EST over HTTPS, RFC 7030 (docs/decisions.md §16). */
  {.name = "https_listen", COAPD_OPT_STRING_IN(opt_ctx, https_listen),
   .max_len = HTTPS_ADDR_MAX + 6, .flags = COAPD_OPT_REPEATABLE, .check = check_https_listen,
   .doc = "ADDR PORT: serve EST over HTTPS (RFC 7030) there too, same CA, policy and queue"},
  {.name = "https_cert", COAPD_OPT_PATH_IN(opt_ctx, https_cert), .max_len = PATH_MAX - 1,
   .doc = "the HTTPS server certificate, PEM, optionally followed by its chain"},
  {.name = "https_key", COAPD_OPT_PATH_IN(opt_ctx, https_key), .max_len = PATH_MAX - 1,
   .doc = "its private key, PEM (not readable by others), or a pkcs11: URI of a key on a "
          "token"},
  {.name = "https_key_pin_file", COAPD_OPT_PATH_IN(opt_ctx, https_key_pin_file),
   .max_len = PATH_MAX - 1,
   .doc = "a file holding the token PIN for a pkcs11: https_key (not readable by others)"},
  {.name = "https_anonymous", COAPD_OPT_ENUM_IN(opt_ctx, https_anonymous),
   .words = anon_words, .def = "off",
   .doc = "simpleenroll without a client certificate: refused, or queued for an operator"},
  {.name = "https_max_connections", COAPD_OPT_INT_IN(opt_ctx, https_max_connections),
   .min = 1, .max = 100000, .def = "128", .doc = "HTTPS connections open at once, per listener"},
  {.name = "https_max_connections_per_ip", COAPD_OPT_INT_IN(opt_ctx, https_max_per_ip),
   .min = 1, .max = 100000, .def = "16", .doc = "HTTPS connections from one client address"},
  {.name = "https_timeout", COAPD_OPT_INT_IN(opt_ctx, https_timeout), .min = 1, .max = 3600,
   .def = "10",
   .doc = "seconds an HTTPS connection may be idle (handshake, headers, body) before it is "
          "closed"},
  /* RFC 7030 §3.7, docs/decisions.md §17. */
  {.name = "ra_trust", COAPD_OPT_PATH_IN(opt_ctx, ra_trust), .max_len = PATH_MAX - 1,
   .doc = "PEM CAs whose certificates with id-kp-cmcRA may request over HTTPS for devices"},
  {.name = "ra_policy", COAPD_OPT_ENUM_IN(opt_ctx, ra_policy), .words = policy_words,
   .def = "manual",
   .doc = "an RA's request that names no device certificate: issue at once, or wait"},
  {.name = "https_max_header_bytes", COAPD_OPT_INT_IN(opt_ctx, https_max_header_bytes),
   .min = 2048, .max = 65536, .def = "8192",
   .doc = "the request line and headers must fit in this (larger: refused by the server)"},
  /* Registrar mode, RFC 9148 §5 (docs/decisions.md §19). */
  {.name = "upstream", COAPD_OPT_STRING_IN(opt_ctx, upstream), .max_len = UPSTREAM_URL_MAX,
   .check = check_upstream,
   .doc = "https://HOST[:PORT]/.well-known/est[/LABEL]: be a registrar in front of this EST "
          "server, which issues (no ca_cert/ca_key here)"},
  {.name = "upstream_ca", COAPD_OPT_PATH_IN(opt_ctx, upstream_ca), .max_len = PATH_MAX - 1,
   .doc = "PEM trust anchors for the upstream server's TLS certificate (required with "
          "upstream)"},
  {.name = "upstream_cert", COAPD_OPT_PATH_IN(opt_ctx, upstream_cert), .max_len = PATH_MAX - 1,
   .doc = "the registrar's RA client certificate for the upstream, PEM (with id-kp-cmcRA)"},
  {.name = "upstream_key", COAPD_OPT_PATH_IN(opt_ctx, upstream_key), .max_len = PATH_MAX - 1,
   .doc = "its private key, PEM (not readable by others)"},
  {.name = "upstream_timeout", COAPD_OPT_INT_IN(opt_ctx, upstream_timeout), .min = 1,
   .max = 600, .def = "20",
   .doc = "seconds one upstream exchange may take; then the device gets 5.03 + Max-Age"},
  {.name = "upstream_refresh", COAPD_OPT_INT_IN(opt_ctx, upstream_refresh), .min = 60,
   .max = 604800, .def = "3600",
   .doc = "seconds between fetches of the upstream's cacerts and csrattrs (and at SIGHUP)"},
  {.name = "upstream_cache", COAPD_OPT_PATH_IN(opt_ctx, upstream_cache),
   .max_len = PATH_MAX - 1,
   .doc = "where the last cacerts are kept, served when the upstream is down at start "
          "(default: db_path with .cacerts appended)"},
};

static const coapd_opt_table est_options =
    COAPD_OPT_TABLE("est-coaps", est_option_entries);

/* Move the parsed values into the plugin. The words were checked against
 * the table, so a module parser refusing one is a bug. */
static est_err apply_options(opt_ctx *o) {
  est_plugin *p = o->p;
  const char *item;
  size_t len;
  est_opts_list it;

  memcpy(p->root, o->root, strlen(o->root) + 1); /* check_root: fits */
  p->cert_days = (unsigned)o->cert_days;
  p->keygen = o->keygen;
  p->max_body = (size_t)o->max_body;
  p->dedup_entries = (size_t)o->dedup_entries;
  p->block1_transfers = (size_t)o->block1_transfers;
  p->dedup_budget.max = (size_t)o->dedup_max_bytes;
  p->idevid_allow_expired = o->idevid_allow_expired;
  p->ecfg.retry_after = (unsigned)o->retry_after;
  p->ecfg.pending_ttl = (unsigned)o->pending_ttl;
  p->ecfg.max_pending = (unsigned)o->max_pending;
  p->ecfg.max_pending_total = (unsigned)o->max_pending_total;
  p->ecfg.busy_timeout_ms = (int)o->db_busy_timeout;
  p->ecfg.sync_normal = strcmp(sync_words[o->db_synchronous], "normal") == 0;
  p->ecfg.forward = o->upstream != NULL; /* docs/decisions.md §19 */
  if (pop_mode_parse(pop_words[o->pop_linking], &p->ecfg.pop) != EST_OK ||
      pki_key_type_parse(keygen_words[o->keygen_type], &p->ecfg.keygen_type) != EST_OK ||
      enroll_policy_parse(policy_words[o->idevid_policy], &p->ecfg.idevid) != EST_OK ||
      enroll_policy_parse(policy_words[o->ldevid_policy], &p->ecfg.ldevid) != EST_OK ||
      enroll_policy_parse(policy_words[o->ra_policy], &p->ecfg.ra) != EST_OK)
    return EST_ERR_INTERNAL;
  /* The issuance policy (docs/decisions.md §13); the checks passed. */
  names_config_init(&o->names);
  o->names.allow_wildcard = o->san_wildcards;
  o->names.max_sans = (unsigned)o->max_sans;
  o->names.max_subject_bytes = (unsigned)o->max_subject_bytes;
  o->names.rsa_min_bits = (unsigned)o->csr_rsa_min_bits;
  o->profile.max_cert_bytes = (size_t)o->max_cert_bytes;
  /* check_url and the length cap passed. */
  snprintf(o->profile.crl_url, sizeof o->profile.crl_url, "%s", o->crl_url ? o->crl_url : "");
  if (names_config_set(&o->names, NAMES_FIELD_SAN_TYPES, o->san_types, NULL, 0) != EST_OK ||
      (o->san_dns_patterns && names_config_set(&o->names, NAMES_FIELD_DNS_PATTERNS,
                                               o->san_dns_patterns, NULL, 0) != EST_OK) ||
      names_config_set(&o->names, NAMES_FIELD_SUBJECT_ATTRS, o->subject_attrs, NULL, 0) !=
          EST_OK ||
      names_config_set(&o->names, NAMES_FIELD_SUBJECT_MATCH, match_words[o->subject_match],
                       NULL, 0) != EST_OK ||
      names_config_set(&o->names, NAMES_FIELD_KEY_TYPES, o->csr_key_types, NULL, 0) !=
          EST_OK ||
      pki_eku_parse(o->cert_eku, &o->profile.eku) != EST_OK)
    return EST_ERR_INTERNAL;
  p->ecfg.names = &o->names;
  /* check_labels refused empty, long, blank, bad and repeated ones. */
  est_opts_list_begin(&it, o->labels);
  while (est_opts_list_next(&it, &item, &len)) {
    if (len == 0 || len > PROTO_LABEL_MAX || p->label_count == EST_MAX_LABELS)
      return EST_ERR_INTERNAL;
    memcpy(p->labels[p->label_count], item, len);
    p->labels[p->label_count][len] = '\0';
    p->label_count++;
  }
  return EST_OK;
}

/* Plugin file options are relative to the config file's folder. */
static est_err resolve_path(const est_plugin *p, const char *v, char *out,
                            size_t out_len) {
  const char *cfg = p->api->config_path;
  const char *slash = cfg ? strrchr(cfg, '/') : NULL;
  int n;
  if (v[0] == '/' || !slash)
    n = snprintf(out, out_len, "%s", v);
  else
    n = snprintf(out, out_len, "%.*s/%s", (int)(slash - cfg), cfg, v);
  return (n < 0 || (size_t)n >= out_len) ? EST_ERR_TOO_LARGE : EST_OK;
}

static est_err read_file(const char *path, size_t cap, uint8_t **out,
                         size_t *out_len, char *err, size_t err_len) {
  est_err rc = EST_ERR_IO;
  uint8_t *buf = NULL;
  FILE *f = fopen(path, "rb");
  if (!f) {
    snprintf(err, err_len, "'%s': %s", path, strerror(errno));
    goto out;
  }
  buf = malloc(cap + 1);
  if (!buf) {
    rc = EST_ERR_NOMEM;
    goto out;
  }
  size_t n = fread(buf, 1, cap + 1, f);
  if (ferror(f)) {
    snprintf(err, err_len, "'%s': read error", path);
    goto out;
  }
  if (n > cap) {
    snprintf(err, err_len, "'%s': larger than %zu bytes", path, cap);
    rc = EST_ERR_TOO_LARGE;
    goto out;
  }
  *out = buf;
  *out_len = n;
  buf = NULL;
  rc = EST_OK;
out:
  free(buf);
  if (f)
    fclose(f);
  return rc;
}

/* Read every plugin_opt_ line through the table (common/opts.h): unknown,
 * repeated and bad ones are refused as coapd refuses them, then defaults
 * fill the rest. */
static est_err parse_options(opt_ctx *o) {
  const coapd_host_api *api = o->p->api;
  est_opts st;
  est_err rc = est_opts_begin(&st, &est_options, o, OPT_PREFIX);
  size_t n = api->option_count(api->host);
  for (size_t i = 0; i < n && rc == EST_OK; i++) {
    const char *key, *value;
    unsigned line;
    if (api->option_at(api->host, i, &key, &value, &line) != 0)
      return EST_ERR_INTERNAL;
    rc = est_opts_set(&st, key, value, api->config_path, line);
  }
  if (rc == EST_OK)
    rc = est_opts_end(&st, api->config_path, api->config_line);
  if (rc != EST_OK) {
    api->log(api->host, COAPD_LOG_ERR, "%s", est_opts_error(&st));
    return EST_ERR_CONFIG;
  }
  rc = apply_options(o);
  if (rc != EST_OK)
    api->log(api->host, COAPD_LOG_ERR, "applying the options: %s", est_strerror(rc));
  return rc;
}

/* For coapd -t: the database at @p path can be opened, or made. */
static est_err db_check(const char *path, char *diag, size_t diag_len) {
  est_err rc = EST_OK;
  if (access(path, F_OK) == 0) {
    store_options so;
    store *s = NULL;
    store_options_init(&so);
    so.read_only = true;
    rc = store_open(path, &so, &s, diag, diag_len);
    /* An older schema is migrated at the real start. */
    if (rc == EST_ERR_SCHEMA && strstr(diag, "newer") == NULL)
      rc = EST_OK;
    store_close(s);
    return rc;
  }
  char dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  if (slash)
    *(slash == dir ? slash + 1 : slash) = '\0';
  if (access(slash ? dir : ".", W_OK | X_OK) != 0) {
    snprintf(diag, diag_len, "cannot create '%s': folder not writable (%s)", path,
             strerror(errno));
    rc = EST_ERR_IO;
  }
  return rc;
}

/* The files idevid_load() reads, resolved once, so a reload reads the
 * same ones. */
static est_err idevid_sources(est_plugin *p, const opt_ctx *o) {
  char item[PATH_MAX];
  const char *v;
  size_t len;
  est_opts_list it;
  if (resolve_path(p, o->idevid_trust, p->idsrc.trust, sizeof p->idsrc.trust) != EST_OK)
    return EST_ERR_TOO_LARGE;
  est_opts_list_begin(&it, o->idevid_crl);
  while (est_opts_list_next(&it, &v, &len)) {
    if (len == 0)
      continue;
    /* The option table caps both (IDEVID_CRL_MAX items, PATH_MAX - 1). */
    if (len >= sizeof item || p->idsrc.ncrl == IDEVID_CRL_MAX)
      return EST_ERR_TOO_LARGE;
    memcpy(item, v, len);
    item[len] = '\0';
    if (resolve_path(p, item, p->idsrc.crl[p->idsrc.ncrl], PATH_MAX) != EST_OK)
      return EST_ERR_TOO_LARGE;
    p->idsrc.ncrl++;
  }
  return EST_OK;
}

/* The line of the last plugin_opt_KEY, else the plugin line: every file
 * problem is told as FILE:LINE (issue 12, docs/operations.md). */
static unsigned opt_line(const est_plugin *p, const char *key) {
  const coapd_host_api *api = p->api;
  unsigned line = api->config_line, l;
  const char *k;
  size_t n = api->option_count(api->host);
  for (size_t i = 0; i < n; i++)
    if (api->option_at(api->host, i, &k, NULL, &l) == 0 && strcmp(k, key) == 0)
      line = l;
  return line;
}

/* Options that need one another; checked at start and on reload. */
static est_err check_registrar(const opt_ctx *o);
static est_err read_pin(const opt_ctx *o, const char *file, const char *key, char **pin);

static est_err check_combos(const opt_ctx *o) {
  const est_plugin *p = o->p;
  const coapd_host_api *api = p->api;
  /* First: without a CA (or an upstream) nothing else matters. */
  if (check_registrar(o) != EST_OK)
    return EST_ERR_CONFIG;
  if (o->idevid_crl && !o->idevid_trust) {
    api->log(api->host, COAPD_LOG_ERR,
             "%s:%u: idevid_crl needs idevid_trust (the CAs that sign those CRLs)",
             api->config_path, opt_line(p, "idevid_crl"));
    return EST_ERR_CONFIG;
  }
  /* Manual approval needs somewhere to keep the pending requests. */
  if (!o->db_path && (p->ecfg.idevid == ENROLL_MANUAL || p->ecfg.ldevid == ENROLL_MANUAL)) {
    api->log(api->host, COAPD_LOG_ERR,
             "%s:%u: manual approval needs plugin_opt_db_path (or set idevid_policy and "
             "ldevid_policy to auto)", api->config_path, api->config_line);
    return EST_ERR_CONFIG;
  }
  if (o->crl_file && !o->db_path) {
    api->log(api->host, COAPD_LOG_ERR,
             "%s:%u: crl_file needs plugin_opt_db_path (the revocations are kept there)",
             api->config_path, opt_line(p, "crl_file"));
    return EST_ERR_CONFIG;
  }
  if (o->https_listen && (!o->https_cert || !o->https_key)) {
    api->log(api->host, COAPD_LOG_ERR,
             "%s:%u: https_listen needs plugin_opt_https_cert and plugin_opt_https_key",
             api->config_path, opt_line(p, "https_listen"));
    return EST_ERR_CONFIG;
  }
  if (o->ra_trust && !o->https_listen)
    api->log(api->host, COAPD_LOG_WARNING,
             "%s:%u: ra_trust without https_listen: RAs ask over HTTPS only",
             api->config_path, opt_line(p, "ra_trust"));
  if (o->ra_trust && o->ra_policy && !o->db_path) {
    api->log(api->host, COAPD_LOG_ERR,
             "%s:%u: ra_policy manual needs plugin_opt_db_path (or set ra_policy auto)",
             api->config_path, opt_line(p, "ra_policy"));
    return EST_ERR_CONFIG;
  }
  if (o->https_anonymous && !o->db_path) {
    api->log(api->host, COAPD_LOG_ERR,
             "%s:%u: https_anonymous manual needs plugin_opt_db_path (an operator approves "
             "those requests)", api->config_path, opt_line(p, "https_anonymous"));
    return EST_ERR_CONFIG;
  }
  return EST_OK;
}

/* Registrar mode (docs/decisions.md §19) or a CA of our own: never both,
 * never neither. */
static est_err check_registrar(const opt_ctx *o) {
  const est_plugin *p = o->p;
  const coapd_host_api *api = p->api;
  const char *bad = NULL, *key = NULL;
  if (!o->upstream) {
    if (!o->ca_cert || !o->ca_key)
      bad = "ca_cert and ca_key are required (or upstream, to be a registrar)",
      key = o->ca_cert ? "ca_cert" : o->ca_key ? "ca_key" : NULL;
    else if (o->upstream_ca || o->upstream_cert || o->upstream_key || o->upstream_cache)
      bad = "upstream_* without upstream", key = o->upstream_ca     ? "upstream_ca"
                                                 : o->upstream_cert ? "upstream_cert"
                                                 : o->upstream_key  ? "upstream_key"
                                                                    : "upstream_cache";
  } else if (o->ca_cert || o->ca_key) {
    bad = "a registrar (upstream) has no CA of its own: drop ca_cert and ca_key";
    key = o->ca_cert ? "ca_cert" : "ca_key";
  } else if (!o->upstream_ca) {
    bad = "upstream needs upstream_ca (the trust anchors of the upstream server)";
    key = "upstream";
  } else if (!o->upstream_cert != !o->upstream_key) {
    bad = "upstream_cert and upstream_key go together";
    key = o->upstream_cert ? "upstream_cert" : "upstream_key";
  } else if (o->crl_file) {
    bad = "crl_file with upstream: the upstream CA signs its own CRLs";
    key = "crl_file";
  } else if (o->https_listen) {
    bad = "https_listen with upstream is not supported: the registrar serves EST-coaps";
    key = "https_listen";
  }
  if (!bad)
    return EST_OK;
  api->log(api->host, COAPD_LOG_ERR, "%s:%u: %s", api->config_path,
           key ? opt_line(p, key) : api->config_line, bad);
  return EST_ERR_CONFIG;
}

/* The https_* options into @p cfg (paths resolved into @p paths), every
 * https_listen line in order, and the certificate and key checked the way
 * GnuTLS will load them, so a bad pair stops coapd with FILE:LINE
 * (docs/decisions.md §16). Without https_listen cfg->nlisten is 0. */
typedef struct https_paths {
  char cert[PATH_MAX], key[PATH_MAX], ca[PATH_MAX];
  char *pin; /* https_key_pin_file's; https_paths_clear() wipes it */
} https_paths;

static void https_paths_clear(https_paths *hp) {
  est_pin_free(hp->pin);
  hp->pin = NULL;
}

static est_err https_options(const opt_ctx *o, https_config *cfg, https_paths *paths) {
  const est_plugin *p = o->p;
  const coapd_host_api *api = p->api;
  char diag[PATH_MAX + 160] = "";
  memset(cfg, 0, sizeof *cfg);
  paths->pin = NULL;
  if (!o->https_listen) {
    if (o->https_cert || o->https_key)
      api->log(api->host, COAPD_LOG_WARNING,
               "%s:%u: https_cert/https_key without https_listen: HTTPS EST is off",
               api->config_path, opt_line(p, o->https_cert ? "https_cert" : "https_key"));
    return EST_OK;
  }
  size_t n = api->option_count(api->host);
  for (size_t i = 0; i < n; i++) {
    const char *k, *v;
    unsigned line;
    char why[128];
    if (api->option_at(api->host, i, &k, &v, &line) != 0 || strcmp(k, "https_listen") != 0)
      continue;
    if (cfg->nlisten == HTTPS_LISTEN_MAX) {
      api->log(api->host, COAPD_LOG_ERR, "%s:%u: more than %d https_listen lines",
               api->config_path, line, HTTPS_LISTEN_MAX);
      return EST_ERR_CONFIG;
    }
    if (https_addr_parse(v, &cfg->listen[cfg->nlisten], why, sizeof why) != 0) {
      api->log(api->host, COAPD_LOG_ERR, "%s:%u: https_listen: %s", api->config_path, line,
               why);
      return EST_ERR_CONFIG;
    }
    cfg->listen[cfg->nlisten++].line = line;
  }
  bool token = pki_key_is_uri(o->https_key);
  if (resolve_path(p, o->https_cert, paths->cert, sizeof paths->cert) != EST_OK ||
      (token ? (size_t)snprintf(paths->key, sizeof paths->key, "%s", o->https_key) >=
                   sizeof paths->key
             : resolve_path(p, o->https_key, paths->key, sizeof paths->key) != EST_OK) ||
      resolve_path(p, o->ca_cert, paths->ca, sizeof paths->ca) != EST_OK)
    return EST_ERR_TOO_LARGE;
  if (o->https_key_pin_file && !token) {
    api->log(api->host, COAPD_LOG_ERR, "%s:%u: https_key_pin_file needs a pkcs11: https_key",
             api->config_path, opt_line(p, "https_key_pin_file"));
    return EST_ERR_CONFIG;
  }
  if (token) {
    /* https_start() opens the token and checks the pair (docs/decisions.md §20). */
    est_err prc = read_pin(o, o->https_key_pin_file, "https_key_pin_file", &paths->pin);
    if (prc != EST_OK)
      return prc;
    cfg->key_pin = paths->pin;
    goto fill;
  }
  bool group_readable = false;
  est_err rc = est_keyfile_check(paths->key, &group_readable, diag, sizeof diag);
  if (rc != EST_OK) {
    api->log(api->host, COAPD_LOG_ERR, "%s:%u: https_key: %s", api->config_path,
             opt_line(p, "https_key"), diag);
    return rc;
  }
  gnutls_certificate_credentials_t cred = NULL;
  int g = gnutls_certificate_allocate_credentials(&cred);
  if (g >= 0)
    g = gnutls_certificate_set_x509_key_file(cred, paths->cert, paths->key, GNUTLS_X509_FMT_PEM);
  gnutls_certificate_free_credentials(cred);
  if (g < 0) {
    api->log(api->host, COAPD_LOG_ERR, "%s:%u: https_cert/https_key ('%s', '%s'): %s",
             api->config_path, opt_line(p, "https_cert"), paths->cert, paths->key,
             gnutls_strerror(g));
    return EST_ERR_CONFIG;
  }
fill:
  cfg->cert_file = paths->cert;
  cfg->key_file = paths->key;
  cfg->trust_files[cfg->ntrust++] = paths->ca;
  if (p->idsrc.trust[0])
    cfg->trust_files[cfg->ntrust++] = p->idsrc.trust;
  if (p->ra_trust_path[0])
    cfg->trust_files[cfg->ntrust++] = p->ra_trust_path;
  cfg->max_conn = (unsigned)o->https_max_connections;
  cfg->max_per_ip = (unsigned)o->https_max_per_ip;
  cfg->timeout_s = (unsigned)o->https_timeout;
  cfg->header_bytes = (unsigned)o->https_max_header_bytes;
  cfg->anonymous = o->https_anonymous != 0;
  return EST_OK;
}

/* What https_options() gave, as one string: a reload compares it. */
static void https_signature(const https_config *c, char *out, size_t cap) {
  size_t off = 0;
  int n = snprintf(out, cap, "%s|%s|%u|%u|%u|%u|%d", c->cert_file ? c->cert_file : "",
                   c->key_file ? c->key_file : "", c->max_conn, c->max_per_ip, c->timeout_s,
                   c->header_bytes, c->anonymous);
  off = n > 0 && (size_t)n < cap ? (size_t)n : cap - 1;
  for (size_t i = 0; i < c->nlisten && off < cap - 1; i++) {
    n = snprintf(out + off, cap - off, "|%s %u", c->listen[i].addr, c->listen[i].port);
    off = n > 0 && (size_t)n < cap - off ? off + (size_t)n : cap - 1;
  }
}

/* The upstream_* options, paths resolved into @p rp. */
typedef struct reg_paths {
  char ca[PATH_MAX], cert[PATH_MAX], key[PATH_MAX], cache[PATH_MAX];
} reg_paths;

static est_err registrar_options(const opt_ctx *o, registrar_config *rc, reg_paths *rp) {
  const est_plugin *p = o->p;
  memset(rp, 0, sizeof *rp);
  if (resolve_path(p, o->upstream_ca, rp->ca, sizeof rp->ca) != EST_OK ||
      (o->upstream_cert &&
       resolve_path(p, o->upstream_cert, rp->cert, sizeof rp->cert) != EST_OK) ||
      (o->upstream_key && resolve_path(p, o->upstream_key, rp->key, sizeof rp->key) != EST_OK))
    return EST_ERR_TOO_LARGE;
  if (o->upstream_cache) {
    if (resolve_path(p, o->upstream_cache, rp->cache, sizeof rp->cache) != EST_OK)
      return EST_ERR_TOO_LARGE;
  } else if (o->db_path) {
    char db[PATH_MAX];
    if (resolve_path(p, o->db_path, db, sizeof db) != EST_OK ||
        (size_t)snprintf(rp->cache, sizeof rp->cache, "%s.cacerts", db) >= sizeof rp->cache)
      return EST_ERR_TOO_LARGE;
  }
  *rc = (registrar_config){
    .url = o->upstream, .ca_file = rp->ca, .cert_file = rp->cert[0] ? rp->cert : NULL,
    .key_file = rp->key[0] ? rp->key : NULL, .cache_file = rp->cache[0] ? rp->cache : NULL,
    .timeout_s = (unsigned)o->upstream_timeout, .refresh_s = (unsigned)o->upstream_refresh,
    .want_attrs = o->csr_attrs == NULL, .line = opt_line(p, "upstream")};
  return EST_OK;
}

/* A registrar's CA: the upstream's cacerts, now or from the cache. */
static est_err start_registrar(opt_ctx *o) {
  registrar_config rc;
  reg_paths rp;
  est_err e = registrar_options(o, &rc, &rp);
  if (e != EST_OK)
    return e;
  registrar_signature(&rc, o->p->up_conf, sizeof o->p->up_conf);
  return registrar_start(o->p, &rc);
}

/* ca_cert and ca_key (required options), with the issuance profile. */
/* A *_pin_file (@p file, option @p key; common/token.h); *pin is freed
 * by the caller with est_pin_free(). */
static est_err read_pin(const opt_ctx *o, const char *file, const char *key, char **pin) {
  const est_plugin *p = o->p;
  const coapd_host_api *api = p->api;
  char path[PATH_MAX], why[PATH_MAX + 128] = "";
  *pin = NULL;
  if (!file)
    return EST_OK;
  if (resolve_path(p, file, path, sizeof path) != EST_OK)
    return EST_ERR_TOO_LARGE;
  est_err rc = est_pin_file_read(path, pin, why, sizeof why);
  if (rc != EST_OK)
    api->log(api->host, COAPD_LOG_ERR, "%s:%u: %s: %s", api->config_path, opt_line(p, key),
             key, why[0] ? why : est_strerror(rc));
  return rc;
}

static est_err load_ca(opt_ctx *o) {
  est_plugin *p = o->p;
  const coapd_host_api *api = p->api;
  char a[PATH_MAX], b[PATH_MAX], diag[PATH_MAX + 128] = "";
  bool token = pki_key_is_uri(o->ca_key);
  if (resolve_path(p, o->ca_cert, a, sizeof a) != EST_OK ||
      (token ? (size_t)snprintf(b, sizeof b, "%s", o->ca_key) >= sizeof b
             : resolve_path(p, o->ca_key, b, sizeof b) != EST_OK))
    return EST_ERR_TOO_LARGE;
  /* docs/decisions.md §14: the CA key must be ours alone. */
  bool group_readable = false;
  est_err rc = token ? EST_OK : est_keyfile_check(b, &group_readable, diag, sizeof diag);
  if (rc != EST_OK) {
    api->log(api->host, COAPD_LOG_ERR, "%s:%u: ca_key: %s", api->config_path,
             opt_line(p, "ca_key"), diag);
    return rc;
  }
  if (group_readable)
    api->log(api->host, COAPD_LOG_WARNING,
             "%s:%u: ca_key '%s' is readable by its group; chmod 600 it unless that group "
             "must read it", api->config_path, opt_line(p, "ca_key"), b);
  if (o->ca_key_pin_file && !token) {
    api->log(api->host, COAPD_LOG_ERR, "%s:%u: ca_key_pin_file needs a pkcs11: ca_key",
             api->config_path, opt_line(p, "ca_key_pin_file"));
    return EST_ERR_CONFIG;
  }
  char *pin = NULL;
  rc = read_pin(o, o->ca_key_pin_file, "ca_key_pin_file", &pin);
  if (rc != EST_OK)
    return rc;
  rc = pki_ca_open(a, b, pin, p->pkcs11_module[0] ? p->pkcs11_module : NULL, p->cert_days,
                   &p->ca, diag, sizeof diag);
  est_pin_free(pin);
  if (rc != EST_OK) {
    api->log(api->host, COAPD_LOG_ERR, "%s:%u: ca_cert/ca_key: %s", api->config_path,
             opt_line(p, "ca_cert"), diag[0] ? diag : est_strerror(rc));
    return rc;
  }
  /* cert_eku, max_cert_bytes (docs/decisions.md §13); before any issuance. */
  return pki_ca_set_profile(p->ca, &o->profile);
}

/* idevid_trust and its CRLs, when given. */
static est_err load_trust(opt_ctx *o) {
  est_plugin *p = o->p;
  const coapd_host_api *api = p->api;
  char diag[PATH_MAX + 128] = "";
  if (!o->idevid_trust)
    return EST_OK;
  est_err rc = idevid_sources(p, o);
  if (rc != EST_OK)
    return rc;
  unsigned revoked = 0;
  rc = idevid_load(&p->idsrc, &p->idevid, &revoked, diag, sizeof diag);
  if (rc != EST_OK) {
    api->log(api->host, COAPD_LOG_ERR, "%s:%u: idevid_trust/idevid_crl: %s", api->config_path,
             opt_line(p, "idevid_trust"), diag[0] ? diag : est_strerror(rc));
    return rc;
  }
  if (p->idsrc.ncrl)
    api->log(api->host, COAPD_LOG_INFO, "idevid_crl: %zu CRL file(s), %u revoked serial(s)",
             p->idsrc.ncrl, revoked);
  return EST_OK;
}

/* ra_trust, when given: the CAs whose RA certificates (id-kp-cmcRA) may
 * ask for devices over HTTPS (docs/decisions.md §17). */
static est_err load_ra_trust(opt_ctx *o) {
  est_plugin *p = o->p;
  const coapd_host_api *api = p->api;
  char diag[PATH_MAX + 128] = "";
  if (!o->ra_trust)
    return EST_OK;
  est_err rc = resolve_path(p, o->ra_trust, p->ra_trust_path, sizeof p->ra_trust_path);
  if (rc == EST_OK)
    rc = pki_trust_load(p->ra_trust_path, &p->ra_trust, diag, sizeof diag);
  if (rc != EST_OK)
    api->log(api->host, COAPD_LOG_ERR, "%s:%u: ra_trust: %s", api->config_path,
             opt_line(p, "ra_trust"), diag[0] ? diag : est_strerror(rc));
  return rc;
}

/* csr_attrs, when given: one DER CsrAttrs served by att. */
static est_err load_csr_attrs(opt_ctx *o) {
  est_plugin *p = o->p;
  const coapd_host_api *api = p->api;
  char a[PATH_MAX], diag[PATH_MAX + 128] = "";
  if (!o->csr_attrs)
    return EST_OK;
  if (resolve_path(p, o->csr_attrs, a, sizeof a) != EST_OK)
    return EST_ERR_TOO_LARGE;
  est_err rc = read_file(a, CSR_ATTRS_MAX, &p->csr_attrs, &p->csr_attrs_len, diag, sizeof diag);
  if (rc == EST_OK && !der_one_sequence(p->csr_attrs, p->csr_attrs_len)) {
    snprintf(diag, sizeof diag, "'%s' is not one DER SEQUENCE (CsrAttrs)", a);
    rc = EST_ERR_CONFIG;
  }
  if (rc != EST_OK)
    api->log(api->host, COAPD_LOG_ERR, "%s:%u: csr_attrs: %s", api->config_path,
             opt_line(p, "csr_attrs"), diag);
  return rc;
}

/* db_path and db_group: the store, opened once at start. */
static est_err open_store(opt_ctx *o) {
  est_plugin *p = o->p;
  const coapd_host_api *api = p->api;
  char b[PATH_MAX], diag[PATH_MAX + 128] = "";
  est_err rc = EST_OK;
  if (o->db_path && resolve_path(p, o->db_path, b, sizeof b) != EST_OK)
    return EST_ERR_TOO_LARGE;
  if (o->db_group) {
    struct group gr, *res = NULL;
    char buf[4096];
    if (getgrnam_r(o->db_group, &gr, buf, sizeof buf, &res) != 0 || !res) {
      api->log(api->host, COAPD_LOG_ERR, "%s:%u: db_group: no group '%s'", api->config_path,
               opt_line(p, "db_group"), o->db_group);
      return EST_ERR_CONFIG;
    }
    p->ecfg.db_use_group = true;
    p->ecfg.db_gid = (unsigned)gr.gr_gid;
  }
  p->ecfg.db_path = o->db_path ? b : NULL;
  /* coapd -t writes nothing: a database that exists is opened read-only
   * to check it, a missing one only needs a folder coapd may write. */
  if (p->check_only && o->db_path) {
    rc = db_check(b, diag, sizeof diag);
    p->ecfg.db_path = NULL;
  }
  rc = rc != EST_OK ? rc : enroll_open(&p->ecfg, p->ca, p->api, &p->en, diag, sizeof diag);
  p->ecfg.db_path = NULL;
  p->ecfg.names = NULL; /* &o->names, copied by enroll_open */
  if (rc != EST_OK) {
    api->log(api->host, COAPD_LOG_ERR, "%s:%u: db_path: %s", api->config_path,
             opt_line(p, "db_path"), diag[0] ? diag : est_strerror(rc));
    return rc;
  }
  if (o->db_path)
    snprintf(p->db_file, sizeof p->db_file, "%s", b);
  return EST_OK;
}

/* Everything init reads, in order. */
static est_err load_files(opt_ctx *o) {
  est_err rc = check_combos(o);
  if (rc == EST_OK)
    rc = o->upstream ? start_registrar(o) : load_ca(o);
  if (rc == EST_OK)
    rc = load_trust(o);
  if (rc == EST_OK)
    rc = load_ra_trust(o);
  if (rc == EST_OK)
    rc = open_store(o);
  if (rc == EST_OK)
    rc = load_csr_attrs(o);
  return rc;
}

bool est_fn_enabled(const est_plugin *p, est_fn fn) {
  /* SEC-13: server keygen is off unless configured. Discovery must not
   * list what is not served (DISC-4, docs/decisions.md §2), so disabled
   * functions get no resource at all and answer 4.04. */
  if (fn == EST_FN_SKG || fn == EST_FN_SKC)
    return p->keygen;
  if (fn == EST_FN_ATT) /* a registrar asks its upstream (registrar.h) */
    return p->csr_attrs != NULL || p->up != NULL;
  return true;
}

static est_err add_resource(est_plugin *p, const char *root, const char *label,
                            est_fn fn, bool discoverable) {
  const est_fn_info *info = proto_fn_info(fn);
  char path[EST_ROOT_MAX + EST_LABEL_MAX + 16];
  /* libcoap paths have no leading slash. */
  int n = label ? snprintf(path, sizeof path, "%s/%s/%s", root + 1, label, info->name)
                : snprintf(path, sizeof path, "%s/%s", root + 1, info->name);
  if (n < 0 || (size_t)n >= sizeof path || p->route_count == EST_MAX_ROUTES)
    return EST_ERR_INTERNAL;
  est_route *rt = &p->routes[p->route_count++];
  rt->p = p;
  rt->fn = fn;
  rt->label = label;

  coap_str_const_t *uri = coap_new_str_const((const uint8_t *)path, (size_t)n);
  if (!uri)
    return EST_ERR_NOMEM;
  coap_resource_t *r = coap_resource_init(uri, COAP_RESOURCE_FLAGS_RELEASE_URI);
  if (!r) {
    coap_delete_str_const(uri);
    return EST_ERR_NOMEM;
  }
  /* Every method reaches the handler so that a wrong one gets 4.05 with a
   * diagnostic payload (docs/decisions.md §4), not libcoap's bare 4.05. */
  static const coap_request_t methods[] = {
    COAP_REQUEST_GET, COAP_REQUEST_POST, COAP_REQUEST_PUT, COAP_REQUEST_DELETE,
    COAP_REQUEST_FETCH, COAP_REQUEST_PATCH, COAP_REQUEST_IPATCH};
  for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
    coap_register_request_handler(r, methods[i], est_handle_request);
  coap_resource_set_userdata(r, rt);
  if (discoverable) {
    /* RFC 9148 §4.1 (DISC-3): rt and ct attributes. libcoap lists them
     * last-added first, so ct goes in first to print rt first. */
    coap_add_attr(r, coap_make_str_const("ct"), coap_make_str_const(info->ct), 0);
    coap_add_attr(r, coap_make_str_const("rt"), coap_make_str_const(info->rt), 0);
  }
  coap_add_resource(p->api->ctx, r);
  return EST_OK;
}

static est_err add_resources(est_plugin *p) {
  est_err rc = EST_OK;
  /* Unlabelled first, so a client that takes the first discovered link
   * gets the default CA. */
  for (size_t l = 0; l <= p->label_count && rc == EST_OK; l++) {
    const char *label = l == 0 ? NULL : p->labels[l - 1];
    for (int fn = 0; fn < EST_FN__MAX && rc == EST_OK; fn++) {
      if (!est_fn_enabled(p, (est_fn)fn))
        continue;
      /* DISC-5: /.well-known/est is required; docs/decisions.md §2: discovery
       * lists the short root. */
      rc = add_resource(p, "/.well-known/est", label, (est_fn)fn, false);
      if (rc == EST_OK)
        rc = add_resource(p, p->root, label, (est_fn)fn, true);
    }
  }
  return rc;
}

/* pkcs11_module: a module p11-kit does not know, for pkcs11: URIs. Once,
 * at start (GnuTLS keeps it for the process). */
static est_err add_pkcs11_module(opt_ctx *o) {
  est_plugin *p = o->p;
  const coapd_host_api *api = p->api;
  if (!o->pkcs11_module)
    return EST_OK;
  if (resolve_path(p, o->pkcs11_module, p->pkcs11_module, sizeof p->pkcs11_module) != EST_OK)
    return EST_ERR_TOO_LARGE;
  int rc = gnutls_pkcs11_add_provider(p->pkcs11_module, NULL);
  if (rc < 0) {
    api->log(api->host, COAPD_LOG_ERR, "%s:%u: pkcs11_module '%s': %s", api->config_path,
             opt_line(p, "pkcs11_module"), p->pkcs11_module, gnutls_strerror(rc));
    return EST_ERR_CONFIG;
  }
  return EST_OK;
}

static void est_fini(void *state) {
  est_plugin *p = state;
  if (!p)
    return;
  if (p->wk)
    p->api->unwatch_fd(p->api->host, p->wk_fd);
  if (p->signer)
    p->api->unwatch_fd(p->api->host, p->signer_fd);
  if (p->wk || p->up || p->signer)
    est_async_drop_all(p);
  /* After the worker: a CRL job it dropped has let go of the publisher,
   * and every HTTPS keygen job has resumed its connection. */
  https_stop(p->https);
  crlpub_free(p->crl);
  est_metrics_close(p->metrics); /* the host drops its hooks after fini */
  enroll_close(p->en);
  pki_ca_free(p->ca);
  pki_trust_free(p->idevid);
  pki_trust_free(p->ra_trust);
  free(p->csr_attrs);
  free(p->up_attrs);
  free(p);
}

static int est_init(const coapd_host_api *api, void **state) {
  est_err rc;
  opt_ctx o;
  est_plugin *p = calloc(1, sizeof *p);
  if (!p) {
    api->log(api->host, COAPD_LOG_ERR, "out of memory");
    return -1;
  }
  /* Members up to watch_fd exist since ABI 1; refuse an older host. */
  if (!COAPD_HOST_HAS(api, unwatch_fd)) {
    api->log(api->host, COAPD_LOG_ERR, "host API too old");
    free(p);
    return -1;
  }
  p->api = api;
  p->wk_fd = -1;
  p->signer_fd = -1;
  p->check_only = COAPD_HOST_HAS(api, check_only) && api->check_only;
  /* Defaults come from the option table (est_options). */
  memset(&o, 0, sizeof o);
  o.p = p;

  rc = parse_options(&o);
  if (rc == EST_OK)
    rc = add_pkcs11_module(&o);
  if (rc == EST_OK)
    rc = load_files(&o);
  /* A token may be slow: its signatures run on a thread of their own
   * (docs/decisions.md §20). */
  if (rc == EST_OK && !p->check_only && pki_ca_on_token(p->ca)) {
    rc = worker_start(&p->signer, &p->signer_fd);
    if (rc == EST_OK &&
        api->watch_fd(api->host, p->signer_fd, est_async_ready, p) != 0) {
      worker_stop(p->signer, NULL);
      p->signer = NULL;
      rc = EST_ERR_INTERNAL;
    }
    if (rc != EST_OK)
      api->log(api->host, COAPD_LOG_ERR, "starting the signer: %s", est_strerror(rc));
  }
  /* Keygen and CRL signing run off the loop (docs/decisions.md §8, §14);
   * coapd -t starts neither. */
  if (rc == EST_OK && !p->check_only && ((p->keygen && !p->up) || o.crl_file)) {
    rc = worker_start(&p->wk, &p->wk_fd);
    if (rc == EST_OK && api->watch_fd(api->host, p->wk_fd, est_async_ready, p) != 0)
      rc = EST_ERR_INTERNAL;
    if (rc != EST_OK)
      api->log(api->host, COAPD_LOG_ERR, "starting the worker: %s", est_strerror(rc));
  }
  if (rc == EST_OK && o.crl_file && !p->check_only) {
    char *path = p->crl_path;
    p->crl_validity = (unsigned)o.crl_validity;
    crlpub_config cc = {path, p->crl_validity};
    rc = resolve_path(p, o.crl_file, path, sizeof p->crl_path);
    if (rc == EST_OK)
      rc = crlpub_new(&cc, p->ca, enroll_store(p->en), p->wk, api, &p->crl);
    if (rc != EST_OK)
      api->log(api->host, COAPD_LOG_ERR, "crl_file: %s", est_strerror(rc));
  }
  if (rc == EST_OK) {
    rc = add_resources(p);
    if (rc != EST_OK)
      api->log(api->host, COAPD_LOG_ERR, "adding resources: %s", est_strerror(rc));
  }
  https_config hc;
  https_paths hp = {.pin = NULL};
  if (rc == EST_OK)
    rc = https_options(&o, &hc, &hp);
  if (rc == EST_OK) {
    https_signature(&hc, p->https_conf, sizeof p->https_conf);
    char diag[PATH_MAX + 160] = "";
    if (hc.nlisten && !p->check_only) {
      rc = https_start(p, &hc, &p->https, diag, sizeof diag);
      if (rc != EST_OK)
        api->log(api->host, COAPD_LOG_ERR, "%s", diag[0] ? diag : est_strerror(rc));
    }
  }
  https_paths_clear(&hp); /* https_start keeps its own copy of the PIN */
  if (rc != EST_OK) {
    est_fini(p);
    return -1;
  }
  p->metrics = est_metrics_open(p); /* NULL before host ABI 1.3 */
  upstream_set_metrics(p->up, p->metrics);
  api->log(api->host, COAPD_LOG_NOTICE,
           "serving %s and /.well-known/est (%zu label(s)), %zu CA cert(s), "
           "pop_linking %s, keygen %s, att %s, idevid_policy %s, ldevid_policy %s%s",
           p->root, p->label_count, pki_ca_cert_count(p->ca),
           p->ecfg.pop == POP_OFF ? "off" : p->ecfg.pop == POP_VERIFY ? "verify" : "require",
           p->keygen ? "on" : "off", p->csr_attrs || p->up_attrs ? "on" : "off",
           p->ecfg.idevid == ENROLL_AUTO ? "auto" : "manual",
           p->ecfg.ldevid == ENROLL_AUTO ? "auto" : "manual",
           o.db_path ? "" : ", no db_path: issued certificates are not recorded");
  if (p->up)
    api->log(api->host, COAPD_LOG_NOTICE,
             "registrar (RFC 9148 section 5): %s issues, %s a client certificate", o.upstream,
             o.upstream_cert ? "with" : "WITHOUT");
  /* The plugin cannot see the host config: say what else it needs. */
  if (p->idevid_allow_expired)
    api->log(api->host, COAPD_LOG_WARNING,
             "idevid_allow_expired on (RFC 9148 section 3): expired IDevIDs may enroll%s; "
             "coapd needs dtls_allow_expired yes too, or their DTLS handshake fails%s",
             p->ecfg.idevid == ENROLL_AUTO ? " without an operator (idevid_policy auto)" : "",
             p->idevid ? "" : "; without idevid_trust there are no IDevIDs at all");
  *state = p;
  return 0;
}

/* A changed idevid_trust or idevid_crl file is read again; the new trust
 * takes over only when all of it loads (docs/decisions.md §14). */
static void idevid_refresh(est_plugin *p, bool force) {
  char diag[PATH_MAX + 128] = "";
  pki_trust *t = NULL;
  unsigned revoked = 0;
  if (!p->idevid || (!force && !idevid_changed(&p->idsrc)))
    return;
  est_err rc = idevid_load(&p->idsrc, &t, &revoked, diag, sizeof diag);
  if (rc != EST_OK) {
    p->api->log(p->api->host, COAPD_LOG_WARNING,
                "idevid_trust/idevid_crl changed but does not load (%s); the previous "
                "one stays in use", diag[0] ? diag : est_strerror(rc));
    /* Not again until the files change once more. */
    idevid_mark_seen(&p->idsrc);
    return;
  }
  pki_trust_free(p->idevid);
  p->idevid = t;
  p->idevid_gen++;
  p->api->log(p->api->host, COAPD_LOG_NOTICE,
              "idevid_trust/idevid_crl reloaded: %zu CRL file(s), %u revoked serial(s); "
              "open sessions are checked again", p->idsrc.ncrl, revoked);
}

static uint32_t est_tick(void *state, uint64_t now_ms) {
  est_plugin *p = state;
  (void)now_ms;
  idevid_refresh(p, false);
  long long now = (long long)time(NULL);
  uint32_t next = enroll_tick(p->en, now) * 1000u;
  if (p->crl) {
    uint32_t c = crlpub_tick(p->crl, now) * 1000u;
    if (c < next)
      next = c;
  }
  /* Files are polled: a changed CRL counts within this long. */
  if (p->idevid && next > EST_IDEVID_POLL_MS)
    next = EST_IDEVID_POLL_MS;
  if (p->up) {
    uint32_t r = registrar_tick(p, now);
    if (r < next)
      next = r;
  }
  /* HTTPS connection timeouts (https.h). */
  uint32_t h = https_tick(p->https);
  return h < next ? h : next;
}

/* One option a reload cannot apply: say so, keep the running value. */
static void needs_restart(const est_plugin *p, const char *key, bool changed) {
  if (changed)
    p->api->log(p->api->host, COAPD_LOG_WARNING,
                "%s:%u: reload: %s changed; it takes effect when coapd restarts",
                p->api->config_path, opt_line(p, key), key);
}

static bool path_changed(const est_plugin *q, const char *opt, const char *now) {
  char want[PATH_MAX] = "";
  if (opt && resolve_path(q, opt, want, sizeof want) != EST_OK)
    return true;
  return strcmp(want, now) != 0;
}

static bool labels_changed(const est_plugin *p, const est_plugin *q) {
  if (p->label_count != q->label_count)
    return true;
  for (size_t i = 0; i < p->label_count; i++)
    if (strcmp(p->labels[i], q->labels[i]) != 0)
      return true;
  return false;
}

/* SIGHUP (ABI 1.2, docs/operations.md "Reload"): read the options and every
 * file they name again. All of it loads, or nothing changes: the CA
 * certificate and key, idevid_trust and its CRLs, csr_attrs, the policies
 * and limits then take over for new requests and new sessions (open
 * sessions are classified again). What shapes the resources or the store
 * (root, labels, keygen, att on or off, db_*, crl_file) waits for a
 * restart, with a warning. Jobs in flight keep the CA they started with. */
static void est_reload(void *state) {
  est_plugin *p = state;
  const coapd_host_api *api = p->api;
  opt_ctx o;
  est_plugin *q = calloc(1, sizeof *q);
  est_err rc = EST_ERR_NOMEM;
  if (!q)
    goto out;
  q->api = api;
  memset(&o, 0, sizeof o);
  o.p = q;
  rc = parse_options(&o);
  /* Added once, at start (add_pkcs11_module); the CA keeps its path. */
  memcpy(q->pkcs11_module, p->pkcs11_module, sizeof q->pkcs11_module);
  if (rc == EST_OK)
    rc = check_combos(&o);
  if (rc == EST_OK && !p->en && (q->ecfg.idevid == ENROLL_MANUAL ||
                                 q->ecfg.ldevid == ENROLL_MANUAL) ) {
    rc = EST_ERR_CONFIG; /* a store cannot appear without a restart */
    api->log(api->host, COAPD_LOG_ERR, "%s:%u: reload: manual approval needs the "
             "database, which is opened at start", api->config_path, api->config_line);
  }
  /* A registrar's CA is the upstream's: fetched again below. */
  if (rc == EST_OK && o.upstream)
    q->ca = pki_ca_ref(p->ca);
  else if (rc == EST_OK)
    rc = load_ca(&o);
  if (rc == EST_OK)
    rc = load_trust(&o);
  if (rc == EST_OK)
    rc = load_ra_trust(&o);
  if (rc == EST_OK)
    rc = load_csr_attrs(&o);
  if (rc == EST_OK && pki_ca_on_token(q->ca) && !p->signer) {
    api->log(api->host, COAPD_LOG_ERR, "%s:%u: reload: ca_key moved to a token; that needs a "
             "restart (its signer thread starts with coapd)", api->config_path,
             opt_line(q, "ca_key"));
    rc = EST_ERR_CONFIG;
  }
  if (rc == EST_OK && (o.upstream != NULL) != (p->up != NULL)) {
    api->log(api->host, COAPD_LOG_ERR, "%s:%u: reload: upstream added or removed; that "
             "needs a restart", api->config_path, opt_line(q, "upstream"));
    rc = EST_ERR_CONFIG;
  }
  https_config hc;
  https_paths hp = {.pin = NULL};
  char hsig[sizeof p->https_conf];
  if (rc == EST_OK)
    rc = https_options(&o, &hc, &hp);
  https_paths_clear(&hp); /* only the signature is compared here */
  if (rc != EST_OK)
    goto out;
  https_signature(&hc, hsig, sizeof hsig);

  needs_restart(p, "root", strcmp(p->root, q->root) != 0);
  /* libmicrohttpd loads its certificate once, at start. */
  needs_restart(p, "https_*", strcmp(p->https_conf, hsig) != 0);
  needs_restart(p, "labels", labels_changed(p, q));
  needs_restart(p, "keygen", p->keygen != q->keygen);
  needs_restart(p, "csr_attrs", (p->csr_attrs != NULL) != (q->csr_attrs != NULL));
  needs_restart(p, "db_path", path_changed(q, o.db_path, p->db_file));
  needs_restart(p, "crl_file", path_changed(q, o.crl_file, p->crl_path));
  needs_restart(p, "crl_validity", p->crl && p->crl_validity != (unsigned)o.crl_validity);
  needs_restart(p, "db_synchronous", p->ecfg.sync_normal != q->ecfg.sync_normal);
  needs_restart(p, "db_busy_timeout", p->ecfg.busy_timeout_ms != q->ecfg.busy_timeout_ms);
  needs_restart(p, "pkcs11_module", path_changed(q, o.pkcs11_module, p->pkcs11_module));
  if (p->up) {
    char usig[sizeof p->up_conf] = "";
    registrar_config urc;
    reg_paths urp;
    if (registrar_options(&o, &urc, &urp) == EST_OK)
      registrar_signature(&urc, usig, sizeof usig);
    needs_restart(p, "upstream_*", strcmp(p->up_conf, usig) != 0);
  }

  /* Commit: swap, so q frees what was in use (a CA only after its jobs). */
  pki_ca *ca = p->ca;
  p->ca = q->ca;
  q->ca = ca;
  q->ecfg.names = &o.names;
  enroll_reconfigure(p->en, &q->ecfg, p->ca);
  q->ecfg.names = NULL;
  crlpub_set_ca(p->crl, p->ca);
  pki_trust *t = p->idevid;
  p->idevid = q->idevid;
  q->idevid = t;
  p->idsrc = q->idsrc;
  if (p->idevid)
    idevid_mark_seen(&p->idsrc);
  t = p->ra_trust;
  p->ra_trust = q->ra_trust;
  q->ra_trust = t;
  memcpy(p->ra_trust_path, q->ra_trust_path, sizeof p->ra_trust_path);
  if ((p->csr_attrs != NULL) == (q->csr_attrs != NULL)) {
    uint8_t *c = p->csr_attrs;
    size_t n = p->csr_attrs_len;
    p->csr_attrs = q->csr_attrs;
    p->csr_attrs_len = q->csr_attrs_len;
    q->csr_attrs = c;
    q->csr_attrs_len = n;
  }
  p->cert_days = q->cert_days;
  p->idevid_allow_expired = q->idevid_allow_expired;
  p->max_body = q->max_body;
  p->dedup_entries = q->dedup_entries;
  p->block1_transfers = q->block1_transfers;
  p->dedup_budget.max = q->dedup_budget.max;
  /* A registrar asks its upstream again now (RFC 9148 §5). */
  if (p->up)
    registrar_refresh_now(p);
  /* The CA or the trust may differ: sessions are classified again. */
  p->idevid_gen++;
  api->log(api->host, COAPD_LOG_NOTICE,
           "reloaded: %zu CA cert(s), idevid_trust %s, pop_linking %s, idevid_policy %s, "
           "ldevid_policy %s; open sessions are classified again",
           pki_ca_cert_count(p->ca), p->idevid ? "on" : "off",
           p->ecfg.pop == POP_OFF ? "off" : p->ecfg.pop == POP_VERIFY ? "verify" : "require",
           q->ecfg.idevid == ENROLL_AUTO ? "auto" : "manual",
           q->ecfg.ldevid == ENROLL_AUTO ? "auto" : "manual");
  /* The store's settings stay as opened (needs_restart above). */
  q->ecfg.sync_normal = p->ecfg.sync_normal;
  q->ecfg.busy_timeout_ms = p->ecfg.busy_timeout_ms;
  q->ecfg.db_use_group = p->ecfg.db_use_group;
  q->ecfg.db_gid = p->ecfg.db_gid;
  p->ecfg = q->ecfg;
out:
  if (rc != EST_OK)
    api->log(api->host, COAPD_LOG_ERR,
             "reload refused (%s): the running configuration stays", est_strerror(rc));
  if (q) {
    pki_ca_free(q->ca);
    pki_trust_free(q->idevid);
    pki_trust_free(q->ra_trust);
    free(q->csr_attrs);
    free(q);
  }
}

COAPD_PLUGIN_EXPORT const coapd_plugin coapd_plugin_entry = {
  .abi_version = COAPD_PLUGIN_ABI_VERSION,
  .size = sizeof(coapd_plugin),
  .name = "est-coaps",
  .version = EST_VERSION,
  .init = est_init,
  .fini = est_fini,
  .tick = est_tick,
  .options = &est_options,
  .reload = est_reload,
};
