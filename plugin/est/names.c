/* Issuance policy: names, extensions and keys a CSR may ask for
 * (names.h, docs/decisions.md §13). */
#include "names.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509-ext.h>
#include <gnutls/x509.h>

#include "common/opts.h"
#include "store/store.h"

/* A subject names.c lets through must fit the store, or the device would
 * get a 5.03 for what is its own fault (docs/decisions.md §13). */
_Static_assert(NAMES_SUBJECT_LIMIT <= STORE_MAX_TEXT, "subject cap over the store's");
_Static_assert(PKI_CERT_MAX <= STORE_MAX_DER, "certificate cap over the store's");

#define OID_SAN "2.5.29.17"
#define OID_CN "2.5.4.3"
#define OID_SERIAL "2.5.4.5"
/* Extensions in a CSR: more than this is no device's request. */
#define EXT_MAX 32u
#define OID_MAX 128u
/* A name as the diagnostic shows it: two of them and the words around
 * fit EST_DIAG_MAX (160). */
#define SHOW_MAX 40u
/* The client certificate subject_match reads (DTLS brought it). */
#define CLIENT_CERT_MAX 65536u

/* Subject attributes by name (RFC 4514 §3 names where it has them). The
 * first seven are the default allow-list. */
static const struct {
  const char *name;
  const char *oid;
} attrs[] = {
  {"CN", "2.5.4.3"},
  {"serialNumber", "2.5.4.5"},
  {"O", "2.5.4.10"},
  {"OU", "2.5.4.11"},
  {"C", "2.5.4.6"},
  {"ST", "2.5.4.8"},
  {"L", "2.5.4.7"},
  {"DC", "0.9.2342.19200300.100.1.25"},
  {"UID", "0.9.2342.19200300.100.1.1"},
  {"title", "2.5.4.12"},
  {"street", "2.5.4.9"},
  {"postalCode", "2.5.4.17"},
  {"givenName", "2.5.4.42"},
  {"surname", "2.5.4.4"},
  {"pseudonym", "2.5.4.65"},
  {"dnQualifier", "2.5.4.46"},
  {"emailAddress", "1.2.840.113549.1.9.1"},
};
#define ATTR_COUNT (sizeof attrs / sizeof attrs[0])
#define ATTRS_DEFAULT 0x7fu
_Static_assert(ATTR_COUNT <= 32, "subject_attrs is a 32-bit set");

static const struct {
  const char *word;
  unsigned bit;
} san_words[] = {
  {"dns", NAMES_SAN_DNS},     {"ip", NAMES_SAN_IP},
  {"uri", NAMES_SAN_URI},     {"email", NAMES_SAN_EMAIL},
  {"othername", NAMES_SAN_OTHERNAME},
}, key_words[] = {
  {"ec-p256", NAMES_KEY_EC_P256}, {"ec-p384", NAMES_KEY_EC_P384},
  {"ec-p521", NAMES_KEY_EC_P521}, {"ed25519", NAMES_KEY_ED25519},
  {"rsa", NAMES_KEY_RSA},
};

/* Extensions a CSR may mark critical: each has an owner that reads it or
 * replaces it (RFC 5280 §4.2: a critical extension nobody understands is
 * refused, docs/decisions.md §13). */
static const char *const known_exts[] = {
  "2.5.29.17", /* subjectAltName: names_check */
  "2.5.29.19", /* basicConstraints: pki_csr_check_profile */
  "2.5.29.15", /* keyUsage: pki_csr_check_profile, then the CA's own */
  "2.5.29.37", /* extKeyUsage: replaced by cert_eku */
  "2.5.29.14", /* subjectKeyIdentifier: replaced by the CA's */
};

static void say(char *diag, size_t diag_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void say(char *diag, size_t diag_len, const char *fmt, ...) {
  if (!diag || diag_len == 0)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(diag, diag_len, fmt, ap);
  va_end(ap);
}

/* Bytes from the device, fit for a diagnostic: printable ASCII, cut. */
static const char *show(const uint8_t *p, size_t n, char out[SHOW_MAX + 4]) {
  size_t k = 0;
  for (; k < n && k < SHOW_MAX; k++)
    out[k] = p[k] >= 0x20 && p[k] < 0x7f ? (char)p[k] : '?';
  if (n > SHOW_MAX) {
    memcpy(out + k, "...", 3);
    k += 3;
  }
  out[k] = '\0';
  return out;
}

/* ---- configuration ------------------------------------------------------ */

void names_config_init(names_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->san_types = NAMES_SAN_DNS | NAMES_SAN_IP;
  cfg->max_sans = 8;
  cfg->max_subject_bytes = 512;
  cfg->subject_attrs = ATTRS_DEFAULT;
  cfg->match = NAMES_MATCH_NONE;
  cfg->key_types = NAMES_KEY_EC_P256 | NAMES_KEY_EC_P384 | NAMES_KEY_RSA;
  cfg->rsa_min_bits = 2048;
}

/* RFC 1035 §2.3.1 preferred syntax as RFC 5280 §4.2.1.6 asks for it: LDH
 * labels of 1..63, not starting or ending with '-', at most 253 in all, no
 * trailing dot. A leftmost "*" label only if @p star. Returns the number of
 * labels, 0 if the name is not one; *has_star says whether "*" was used. */
static size_t dns_labels(const uint8_t *s, size_t n, bool star, bool *has_star) {
  size_t labels = 0, start = 0;
  *has_star = false;
  if (n == 0 || n > NAMES_DNS_MAX)
    return 0;
  for (size_t i = 0; i <= n; i++) {
    if (i < n && s[i] != '.')
      continue;
    size_t len = i - start;
    const uint8_t *l = s + start;
    if (len == 0 || len > 63)
      return 0;
    if (len == 1 && l[0] == '*') {
      if (!star || labels != 0)
        return 0;
      *has_star = true;
    } else {
      if (l[0] == '-' || l[len - 1] == '-')
        return 0;
      for (size_t k = 0; k < len; k++) {
        uint8_t c = l[k];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-'))
          return 0;
      }
    }
    labels++;
    start = i + 1;
  }
  return labels;
}

/* Find @p item (of @p len bytes) among @p n words, ignoring case. */
static int word_index(const char *item, size_t len, const char *const *words, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (strlen(words[i]) == len && strncasecmp(words[i], item, len) == 0)
      return (int)i;
  return -1;
}

static est_err set_bits(const char *value, names_field field, unsigned *out, char *why,
                        size_t why_len) {
  est_opts_list it;
  const char *item;
  size_t len;
  unsigned bits = 0;
  const char *words[ATTR_COUNT];
  size_t n = 0;
  if (field == NAMES_FIELD_SUBJECT_ATTRS)
    for (; n < ATTR_COUNT; n++)
      words[n] = attrs[n].name;
  else if (field == NAMES_FIELD_SAN_TYPES)
    for (; n < sizeof san_words / sizeof san_words[0]; n++)
      words[n] = san_words[n].word;
  else
    for (; n < sizeof key_words / sizeof key_words[0]; n++)
      words[n] = key_words[n].word;
  est_opts_list_begin(&it, value);
  while (est_opts_list_next(&it, &item, &len)) {
    if (len == 0)
      continue;
    int i = word_index(item, len, words, n);
    if (i < 0) {
      say(why, why_len, "'%.*s' is not one of the known words", (int)(len > 32 ? 32 : len),
          item);
      return EST_ERR_INVALID;
    }
    bits |= field == NAMES_FIELD_SUBJECT_ATTRS ? 1u << i
            : field == NAMES_FIELD_SAN_TYPES   ? san_words[i].bit
                                               : key_words[i].bit;
  }
  if (field == NAMES_FIELD_KEY_TYPES && bits == 0) {
    say(why, why_len, "at least one key type");
    return EST_ERR_INVALID;
  }
  *out = bits;
  return EST_OK;
}

static est_err set_patterns(names_config *cfg, const char *value, char *why, size_t why_len) {
  est_opts_list it;
  const char *item;
  size_t len, count = 0;
  char tmp[NAMES_PATTERNS_MAX][NAMES_DNS_MAX + 1];
  est_opts_list_begin(&it, value);
  while (est_opts_list_next(&it, &item, &len)) {
    bool star = false;
    if (len == 0)
      continue;
    if (count == NAMES_PATTERNS_MAX) {
      say(why, why_len, "at most %u patterns", NAMES_PATTERNS_MAX);
      return EST_ERR_INVALID;
    }
    /* "*" only as the leftmost label, and not over a bare TLD. */
    size_t labels = dns_labels((const uint8_t *)item, len, true, &star);
    if (labels == 0 || (star && labels < 3)) {
      say(why, why_len, "'%.*s' is not a DNS name, optionally starting with '*.' over at "
          "least two labels", (int)(len > 64 ? 64 : len), item);
      return EST_ERR_INVALID;
    }
    memcpy(tmp[count], item, len);
    tmp[count][len] = '\0';
    count++;
  }
  if (cfg) {
    memcpy(cfg->dns_patterns, tmp, sizeof tmp);
    cfg->pattern_count = count;
  }
  return EST_OK;
}

est_err names_config_set(names_config *cfg, names_field field, const char *value, char *why,
                         size_t why_len) {
  unsigned bits = 0;
  est_err rc = EST_OK;
  if (!value)
    return EST_ERR_INVALID;
  switch (field) {
  case NAMES_FIELD_SAN_TYPES:
  case NAMES_FIELD_SUBJECT_ATTRS:
  case NAMES_FIELD_KEY_TYPES:
    rc = set_bits(value, field, &bits, why, why_len);
    if (rc == EST_OK && cfg) {
      if (field == NAMES_FIELD_SAN_TYPES)
        cfg->san_types = bits;
      else if (field == NAMES_FIELD_SUBJECT_ATTRS)
        cfg->subject_attrs = bits;
      else
        cfg->key_types = bits;
    }
    return rc;
  case NAMES_FIELD_DNS_PATTERNS:
    return set_patterns(cfg, value, why, why_len);
  case NAMES_FIELD_SUBJECT_MATCH: {
    names_match m;
    if (strcmp(value, "none") == 0)
      m = NAMES_MATCH_NONE;
    else if (strcmp(value, "idevid-cn") == 0)
      m = NAMES_MATCH_IDEVID_CN;
    else if (strcmp(value, "idevid-serial") == 0)
      m = NAMES_MATCH_IDEVID_SERIAL;
    else {
      say(why, why_len, "none, idevid-cn or idevid-serial");
      return EST_ERR_INVALID;
    }
    if (cfg)
      cfg->match = m;
    return EST_OK;
  }
  case NAMES_FIELD__MAX:
    break;
  }
  return EST_ERR_INVALID;
}

/* ---- the checks ------------------------------------------------------- */

/* The key and the self-signature's hash (skipped for skg/skc, SKG-2). */
static est_err check_key(const names_config *cfg, gnutls_x509_crq_t crq, char *diag,
                         size_t diag_len) {
  est_err err = EST_OK;
  gnutls_pubkey_t pub = NULL;
  unsigned bits = 0, kind = 0;
  const char *what = "this key type";
  if (gnutls_pubkey_init(&pub) < 0) {
    pub = NULL;
    err = EST_ERR_NOMEM;
    goto out;
  }
  if (gnutls_pubkey_import_x509_crq(pub, crq, 0) < 0) {
    say(diag, diag_len, "CSR public key does not parse");
    err = EST_ERR_BAD_CSR;
    goto out;
  }
  int pk = gnutls_pubkey_get_pk_algorithm(pub, &bits);
  if (pk == GNUTLS_PK_RSA) {
    kind = NAMES_KEY_RSA;
    what = "RSA";
    if (bits < cfg->rsa_min_bits) {
      say(diag, diag_len, "CSR key is RSA-%u; RSA needs at least %u bits (csr_rsa_min_bits)",
          bits, cfg->rsa_min_bits);
      err = EST_ERR_BAD_CSR;
      goto out;
    }
  } else if (pk == GNUTLS_PK_ECDSA) {
    gnutls_ecc_curve_t curve = GNUTLS_ECC_CURVE_INVALID;
    if (gnutls_pubkey_export_ecc_raw2(pub, &curve, NULL, NULL, 0) >= 0) {
      kind = curve == GNUTLS_ECC_CURVE_SECP256R1   ? NAMES_KEY_EC_P256
             : curve == GNUTLS_ECC_CURVE_SECP384R1 ? NAMES_KEY_EC_P384
             : curve == GNUTLS_ECC_CURVE_SECP521R1 ? NAMES_KEY_EC_P521
                                                   : 0;
      what = gnutls_ecc_curve_get_name(curve) ? gnutls_ecc_curve_get_name(curve) : "EC";
    }
  } else if (pk == GNUTLS_PK_EDDSA_ED25519) {
    kind = NAMES_KEY_ED25519;
    what = "Ed25519";
  }
  if (!(kind & cfg->key_types)) {
    say(diag, diag_len, "CSR key type %s is not allowed (csr_key_types)", what);
    err = EST_ERR_BAD_CSR;
    goto out;
  }
  /* No SHA-1 or MD5 (RFC 9148 §4.2 keeps RFC 7030's CSR; the hash is ours
   * to require, docs/decisions.md §13); EdDSA hashes by itself. */
  int sig = gnutls_x509_crq_get_signature_algorithm(crq);
  if (sig != GNUTLS_SIGN_EDDSA_ED25519) {
    gnutls_digest_algorithm_t h =
        sig > 0 ? gnutls_sign_get_hash_algorithm((gnutls_sign_algorithm_t)sig)
                : GNUTLS_DIG_UNKNOWN;
    if (h != GNUTLS_DIG_SHA256 && h != GNUTLS_DIG_SHA384 && h != GNUTLS_DIG_SHA512 &&
        h != GNUTLS_DIG_SHA3_256 && h != GNUTLS_DIG_SHA3_384 && h != GNUTLS_DIG_SHA3_512) {
      const char *name = sig > 0 ? gnutls_sign_get_name((gnutls_sign_algorithm_t)sig) : NULL;
      say(diag, diag_len, "CSR is signed with %s; SHA-256 or stronger is required",
          name ? name : "an unknown algorithm");
      err = EST_ERR_BAD_CSR;
    }
  }
out:
  if (pub)
    gnutls_pubkey_deinit(pub);
  return err;
}

/* RFC 5280 §4.2: one instance of each extension; a critical one we do not
 * understand is refused, never dropped. */
static est_err check_extensions(gnutls_x509_crq_t crq, char *diag, size_t diag_len) {
  char seen[EXT_MAX][OID_MAX];
  for (unsigned i = 0;; i++) {
    char oid[OID_MAX];
    size_t oid_len = sizeof oid;
    unsigned crit = 0;
    int rc = gnutls_x509_crq_get_extension_info(crq, i, oid, &oid_len, &crit);
    if (rc == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
      return EST_OK;
    if (rc < 0 || oid_len >= sizeof oid || memchr(oid, '\0', oid_len + 1) == NULL) {
      say(diag, diag_len, "extensionRequest in the CSR does not parse");
      return rc == GNUTLS_E_MEMORY_ERROR ? EST_ERR_NOMEM : EST_ERR_BAD_CSR;
    }
    if (i == EXT_MAX) {
      say(diag, diag_len, "CSR asks for more than %u extensions", EXT_MAX);
      return EST_ERR_BAD_CSR;
    }
    for (unsigned k = 0; k < i; k++)
      if (strcmp(seen[k], oid) == 0) {
        say(diag, diag_len, "CSR asks for extension %s twice", oid);
        return EST_ERR_BAD_CSR;
      }
    snprintf(seen[i], sizeof seen[i], "%s", oid);
    bool known = false;
    for (size_t k = 0; k < sizeof known_exts / sizeof known_exts[0]; k++)
      known = known || strcmp(known_exts[k], oid) == 0;
    if (crit && !known) {
      say(diag, diag_len, "CSR asks for critical extension %s, which this CA does not "
          "support", oid);
      return EST_ERR_BAD_CSR;
    }
  }
}

/* An imported Name: the subject of the CSR or of the client certificate. */
static est_err dn_import(const uint8_t *der, size_t len, gnutls_x509_dn_t *dn) {
  if (gnutls_x509_dn_init(dn) < 0) {
    *dn = NULL;
    return EST_ERR_NOMEM;
  }
  gnutls_datum_t d = {(unsigned char *)(uintptr_t)der, (unsigned)len};
  return gnutls_x509_dn_import(*dn, &d) < 0 ? EST_ERR_BAD_CSR : EST_OK;
}

/* Walk every attribute of @p dn: @p fn returns EST_OK to go on. */
typedef est_err (*ava_fn)(const gnutls_x509_ava_st *ava, void *ctx);
static est_err dn_walk(gnutls_x509_dn_t dn, ava_fn fn, void *ctx) {
  for (int r = 0;; r++) {
    for (int a = 0;; a++) {
      gnutls_x509_ava_st ava;
      int rc = gnutls_x509_dn_get_rdn_ava(dn, r, a, &ava);
      if (rc == GNUTLS_E_ASN1_ELEMENT_NOT_FOUND || rc == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE) {
        if (a == 0)
          return EST_OK; /* no RDN r: done */
        break;
      }
      if (rc < 0)
        return EST_ERR_BAD_CSR;
      est_err err = fn(&ava, ctx);
      if (err != EST_OK)
        return err;
    }
  }
}

static bool ava_is(const gnutls_x509_ava_st *ava, const char *oid) {
  size_t n = strlen(oid);
  /* GnuTLS gives the OID as text, with or without its NUL. */
  return (ava->oid.size == n || (ava->oid.size == n + 1 && ava->oid.data[n] == '\0')) &&
         memcmp(ava->oid.data, oid, n) == 0;
}

typedef struct attr_ctx {
  const names_config *cfg;
  char *diag;
  size_t diag_len;
} attr_ctx;

static est_err attr_allowed(const gnutls_x509_ava_st *ava, void *vctx) {
  attr_ctx *c = vctx;
  char buf[SHOW_MAX + 4];
  for (size_t i = 0; i < ATTR_COUNT; i++) {
    if (!ava_is(ava, attrs[i].oid))
      continue;
    if (c->cfg->subject_attrs & (1u << i))
      return EST_OK;
    say(c->diag, c->diag_len, "subject attribute %s is not allowed (subject_attrs)",
        attrs[i].name);
    return EST_ERR_FORBIDDEN;
  }
  say(c->diag, c->diag_len, "subject attribute %s is not allowed (subject_attrs)",
      show(ava->oid.data, ava->oid.size && !ava->oid.data[ava->oid.size - 1]
                              ? ava->oid.size - 1 : ava->oid.size, buf));
  return EST_ERR_FORBIDDEN;
}

/* The CN and serialNumber of a Name, for subject_match. */
typedef struct who {
  gnutls_datum_t cn_v[2], serial_v[2]; /* the first two of each */
  size_t cns, serials;
} who;

static est_err collect(const gnutls_x509_ava_st *ava, void *vctx) {
  who *w = vctx;
  if (ava_is(ava, OID_CN)) {
    if (w->cns < 2)
      w->cn_v[w->cns] = ava->value;
    w->cns++;
  } else if (ava_is(ava, OID_SERIAL)) {
    if (w->serials < 2)
      w->serial_v[w->serials] = ava->value;
    w->serials++;
  }
  return EST_OK;
}

typedef struct match_ctx {
  const gnutls_datum_t *want_cn;     /* every CN must be this, or NULL: any */
  const gnutls_datum_t *want_serial; /* every serialNumber must be this */
  bool serial_refused;               /* no serialNumber at all */
  bool either;                       /* idevid-serial: CN too must be want_serial */
  size_t hits;
  char *diag;
  size_t diag_len;
} match_ctx;

static bool same(const gnutls_datum_t *a, const gnutls_datum_t *b) {
  return a->size == b->size && (a->size == 0 || memcmp(a->data, b->data, a->size) == 0);
}

static est_err match_one(const gnutls_x509_ava_st *ava, void *vctx) {
  match_ctx *m = vctx;
  char a[SHOW_MAX + 4], b[SHOW_MAX + 4];
  bool is_cn = ava_is(ava, OID_CN), is_serial = ava_is(ava, OID_SERIAL);
  if (!is_cn && !is_serial)
    return EST_OK;
  const gnutls_datum_t *want = m->either ? m->want_serial : is_cn ? m->want_cn : m->want_serial;
  if (is_serial && !m->either && m->serial_refused) {
    say(m->diag, m->diag_len, "subject serialNumber is not allowed: the client certificate "
        "has none (subject_match)");
    return EST_ERR_SUBJECT_MISMATCH;
  }
  if (!want)
    return EST_OK;
  if (!same(&ava->value, want)) {
    say(m->diag, m->diag_len, "subject %s '%s' is not the client certificate's %s '%s' "
        "(subject_match)", is_cn ? "CN" : "serialNumber",
        show(ava->value.data, ava->value.size, a), m->either || !is_cn ? "serialNumber" : "CN",
        show(want->data, want->size, b));
    return EST_ERR_SUBJECT_MISMATCH;
  }
  if (m->either || is_cn)
    m->hits++;
  return EST_OK;
}

/* subject_match: the device may only ask for its own name. Compared byte
 * for byte on the attribute values, whatever their string type. */
static est_err check_match(const names_config *cfg, gnutls_x509_dn_t csr_dn,
                           const names_request *rq, char *diag, size_t diag_len) {
  est_err err = EST_OK;
  gnutls_x509_crt_t crt = NULL;
  gnutls_datum_t raw = {NULL, 0};
  gnutls_x509_dn_t cdn = NULL;
  who w;
  memset(&w, 0, sizeof w);
  if (!rq->client_cert || rq->client_cert_len == 0 || rq->client_cert_len > CLIENT_CERT_MAX) {
    say(diag, diag_len, "subject_match needs the client certificate");
    err = EST_ERR_UNAUTHENTICATED;
    goto out;
  }
  if (gnutls_x509_crt_init(&crt) < 0) {
    crt = NULL;
    err = EST_ERR_NOMEM;
    goto out;
  }
  gnutls_datum_t d = {(unsigned char *)(uintptr_t)rq->client_cert,
                      (unsigned)rq->client_cert_len};
  if (gnutls_x509_crt_import(crt, &d, GNUTLS_X509_FMT_DER) < 0 ||
      gnutls_x509_crt_get_raw_dn(crt, &raw) < 0 ||
      (err = dn_import(raw.data, raw.size, &cdn)) != EST_OK ||
      (err = dn_walk(cdn, collect, &w)) != EST_OK) {
    say(diag, diag_len, "the client certificate's subject does not parse");
    err = err == EST_ERR_NOMEM ? err : EST_ERR_MALFORMED;
    goto out;
  }
  match_ctx m = {.diag = diag, .diag_len = diag_len};
  const char *need = "CN";
  if (cfg->match == NAMES_MATCH_IDEVID_SERIAL) {
    need = "serialNumber";
    if (w.serials != 1) {
      say(diag, diag_len, "subject_match idevid-serial: the client certificate has %s "
          "serialNumber", w.serials ? "more than one" : "no");
      err = EST_ERR_SUBJECT_MISMATCH;
      goto out;
    }
    m.want_serial = &w.serial_v[0];
    m.either = true;
  } else {
    if (w.cns != 1) {
      say(diag, diag_len, "subject_match idevid-cn: the client certificate has %s CN",
          w.cns ? "more than one" : "no");
      err = EST_ERR_SUBJECT_MISMATCH;
      goto out;
    }
    m.want_cn = &w.cn_v[0];
    if (w.serials == 1)
      m.want_serial = &w.serial_v[0];
    else
      m.serial_refused = true;
  }
  err = dn_walk(csr_dn, match_one, &m);
  if (err == EST_OK && m.hits == 0) {
    say(diag, diag_len, "subject must carry the client certificate's %s (subject_match)", need);
    err = EST_ERR_SUBJECT_MISMATCH;
  }
out:
  if (cdn)
    gnutls_x509_dn_deinit(cdn);
  gnutls_free(raw.data);
  if (crt)
    gnutls_x509_crt_deinit(crt);
  return err;
}

static est_err check_subject(const names_config *cfg, const pki_csr *csr,
                             const names_request *rq, char *diag, size_t diag_len) {
  est_err err = EST_OK;
  gnutls_x509_dn_t dn = NULL;
  gnutls_datum_t str = {NULL, 0};
  size_t len = 0;
  const uint8_t *der = pki_csr_subject_der(csr, &len);
  /* A 4.00 here, not the store's 5.03 later (docs/decisions.md §13). */
  if (len > cfg->max_subject_bytes) {
    say(diag, diag_len, "subject is %zu bytes, over max_subject_bytes %u", len,
        cfg->max_subject_bytes);
    err = EST_ERR_BAD_CSR;
    goto out;
  }
  err = dn_import(der, len, &dn);
  if (err != EST_OK) {
    say(diag, diag_len, "CSR subject does not parse");
    goto out;
  }
  if (len > 2) { /* an empty Name has no RFC 4514 form */
    int rc = gnutls_x509_dn_get_str2(dn, &str, 0);
    if (rc < 0) {
      say(diag, diag_len, "CSR subject does not parse");
      err = rc == GNUTLS_E_MEMORY_ERROR ? EST_ERR_NOMEM : EST_ERR_BAD_CSR;
      goto out;
    }
    /* What logs and the store see, with escapes, must fit too. */
    if (str.size > cfg->max_subject_bytes) {
      say(diag, diag_len, "subject is %u characters as text, over max_subject_bytes %u",
          str.size, cfg->max_subject_bytes);
      err = EST_ERR_BAD_CSR;
      goto out;
    }
  }
  attr_ctx a = {cfg, diag, diag_len};
  err = dn_walk(dn, attr_allowed, &a);
  if (err == EST_ERR_BAD_CSR)
    say(diag, diag_len, "CSR subject does not parse");
  if (err == EST_OK && cfg->match != NAMES_MATCH_NONE)
    err = check_match(cfg, dn, rq, diag, diag_len);
out:
  gnutls_free(str.data);
  if (dn)
    gnutls_x509_dn_deinit(dn);
  return err;
}

static bool pattern_match(const names_config *cfg, const uint8_t *name, size_t n) {
  for (size_t i = 0; i < cfg->pattern_count; i++) {
    const char *p = cfg->dns_patterns[i];
    size_t pl = strlen(p);
    if (pl >= 2 && p[0] == '*' && p[1] == '.') {
      /* "*" is exactly one label: the name is LABEL.SUFFIX. */
      const uint8_t *dot = memchr(name, '.', n);
      if (!dot)
        continue;
      size_t rest = n - (size_t)(dot + 1 - name);
      if (rest == pl - 2 && strncasecmp((const char *)dot + 1, p + 2, rest) == 0)
        return true;
    } else if (pl == n && strncasecmp((const char *)name, p, n) == 0) {
      return true;
    }
  }
  return false;
}

static est_err check_dns(const names_config *cfg, const gnutls_datum_t *v, char *diag,
                         size_t diag_len) {
  char buf[SHOW_MAX + 4];
  bool star = false;
  size_t labels = dns_labels(v->data, v->size, true, &star);
  if (labels == 0) {
    /* A "*" anywhere but whole and leftmost is no wildcard we know. */
    say(diag, diag_len, "subjectAltName DNS '%s' is not a valid DNS name",
        show(v->data, v->size, buf));
    return memchr(v->data, '*', v->size) ? EST_ERR_FORBIDDEN : EST_ERR_BAD_CSR;
  }
  if (star && !cfg->allow_wildcard) {
    say(diag, diag_len, "subjectAltName DNS '%s': wildcards are not allowed (san_wildcards)",
        show(v->data, v->size, buf));
    return EST_ERR_FORBIDDEN;
  }
  if (star && labels < 3) {
    say(diag, diag_len, "subjectAltName DNS '%s': a wildcard needs two labels under it",
        show(v->data, v->size, buf));
    return EST_ERR_FORBIDDEN;
  }
  if (cfg->pattern_count && !pattern_match(cfg, v->data, v->size)) {
    say(diag, diag_len, "subjectAltName DNS '%s' matches no san_dns_patterns",
        show(v->data, v->size, buf));
    return EST_ERR_FORBIDDEN;
  }
  return EST_OK;
}

/* Printable ASCII only, as IA5String values with a C-string life ahead. */
static bool ia5_printable(const gnutls_datum_t *v) {
  for (unsigned i = 0; i < v->size; i++)
    if (v->data[i] < 0x21 || v->data[i] > 0x7e)
      return false;
  return v->size > 0;
}

static est_err check_san(const names_config *cfg, unsigned type, const gnutls_datum_t *v,
                         char *diag, size_t diag_len) {
  char buf[SHOW_MAX + 4];
  unsigned bit = 0;
  const char *name = "?", *opt = "san_types";
  switch (type) {
  case GNUTLS_SAN_DNSNAME:
    bit = NAMES_SAN_DNS, name = "DNS";
    break;
  case GNUTLS_SAN_IPADDRESS:
    bit = NAMES_SAN_IP, name = "IP";
    break;
  case GNUTLS_SAN_URI:
    bit = NAMES_SAN_URI, name = "URI";
    break;
  case GNUTLS_SAN_RFC822NAME:
    bit = NAMES_SAN_EMAIL, name = "email";
    break;
  case GNUTLS_SAN_OTHERNAME:
  case GNUTLS_SAN_OTHERNAME_XMPP:
  case GNUTLS_SAN_OTHERNAME_KRB5PRINCIPAL:
  case GNUTLS_SAN_OTHERNAME_MSUSERPRINCIPAL:
  case GNUTLS_SAN_OTHERNAME_SRV:
    bit = NAMES_SAN_OTHERNAME, name = "otherName";
    break;
  case GNUTLS_SAN_DN:
    name = "directoryName", opt = "any option";
    break;
  case GNUTLS_SAN_REGISTERED_ID:
    name = "registeredID", opt = "any option";
    break;
  default:
    break;
  }
  if (!(bit & cfg->san_types)) {
    say(diag, diag_len, "subjectAltName type %s is not allowed (%s)", name, opt);
    return EST_ERR_FORBIDDEN;
  }
  if (type == GNUTLS_SAN_DNSNAME)
    return check_dns(cfg, v, diag, diag_len);
  if (type == GNUTLS_SAN_IPADDRESS) {
    if (v->size != 4 && v->size != 16) {
      say(diag, diag_len, "subjectAltName IP of %u bytes is no address", v->size);
      return EST_ERR_BAD_CSR;
    }
    return EST_OK;
  }
  if (v->size > NAMES_SAN_VALUE_MAX) {
    say(diag, diag_len, "subjectAltName %s is over %u bytes", name, NAMES_SAN_VALUE_MAX);
    return EST_ERR_BAD_CSR;
  }
  if ((type == GNUTLS_SAN_URI && (!ia5_printable(v) || !memchr(v->data, ':', v->size))) ||
      (type == GNUTLS_SAN_RFC822NAME && (!ia5_printable(v) || !memchr(v->data, '@', v->size)))) {
    say(diag, diag_len, "subjectAltName %s '%s' does not look like one", name,
        show(v->data, v->size, buf));
    return EST_ERR_BAD_CSR;
  }
  return EST_OK;
}

/* RFC 5280 §4.2.1.6: every name the CSR asks for, against the policy. */
static est_err check_sans(const names_config *cfg, gnutls_x509_crq_t crq, char *diag,
                          size_t diag_len) {
  est_err err = EST_OK;
  gnutls_datum_t ext = {NULL, 0};
  gnutls_subject_alt_names_t sans = NULL;
  unsigned crit = 0, n = 0;
  int rc = gnutls_x509_crq_get_extension_by_oid2(crq, OID_SAN, 0, &ext, &crit);
  if (rc == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
    goto out;
  if (rc < 0) {
    say(diag, diag_len, "subjectAltName in the CSR does not parse");
    err = rc == GNUTLS_E_MEMORY_ERROR ? EST_ERR_NOMEM : EST_ERR_BAD_CSR;
    goto out;
  }
  if (gnutls_subject_alt_names_init(&sans) < 0) {
    sans = NULL;
    err = EST_ERR_NOMEM;
    goto out;
  }
  if (gnutls_x509_ext_import_subject_alt_names(&ext, sans, 0) < 0) {
    say(diag, diag_len, "subjectAltName in the CSR does not parse");
    err = EST_ERR_BAD_CSR;
    goto out;
  }
  for (;; n++) {
    unsigned type;
    gnutls_datum_t v, o;
    if (gnutls_subject_alt_names_get(sans, n, &type, &v, &o) < 0)
      break;
  }
  if (n > cfg->max_sans) {
    say(diag, diag_len, "CSR asks for %u subjectAltNames, over max_sans %u", n, cfg->max_sans);
    err = EST_ERR_BAD_CSR;
    goto out;
  }
  for (unsigned i = 0; i < n && err == EST_OK; i++) {
    unsigned type;
    gnutls_datum_t v, o;
    if (gnutls_subject_alt_names_get(sans, i, &type, &v, &o) < 0) {
      say(diag, diag_len, "subjectAltName in the CSR does not parse");
      err = EST_ERR_BAD_CSR;
      break;
    }
    err = check_san(cfg, type, &v, diag, diag_len);
  }
out:
  if (sans)
    gnutls_subject_alt_names_deinit(sans);
  gnutls_free(ext.data);
  return err;
}

est_err names_check(const names_config *cfg, const pki_csr *csr, const names_request *rq,
                    char *diag, size_t diag_len) {
  est_err err = EST_OK;
  gnutls_x509_crq_t crq = NULL;
  size_t len = 0;
  const uint8_t *der = pki_csr_der(csr, &len);
  if (diag && diag_len)
    diag[0] = '\0';
  if (!cfg || !csr || !rq || !der || len > PKI_CSR_MAX) {
    err = EST_ERR_INVALID;
    goto out;
  }
  if (gnutls_x509_crq_init(&crq) < 0) {
    crq = NULL;
    err = EST_ERR_NOMEM;
    goto out;
  }
  gnutls_datum_t d = {(unsigned char *)(uintptr_t)der, (unsigned)len};
  if (gnutls_x509_crq_import(crq, &d, GNUTLS_X509_FMT_DER) < 0) {
    say(diag, diag_len, "CSR is not valid DER PKCS#10");
    err = EST_ERR_BAD_CSR;
    goto out;
  }
  /* The order of docs/decisions.md §13: key and hash, extensions, the
   * subject (size, attributes, subject_match), then the names asked for. */
  if (rq->check_key)
    err = check_key(cfg, crq, diag, diag_len);
  if (err == EST_OK)
    err = check_extensions(crq, diag, diag_len);
  if (err == EST_OK)
    err = check_subject(cfg, csr, rq, diag, diag_len);
  if (err == EST_OK)
    err = check_sans(cfg, crq, diag, diag_len);
out:
  if (crq)
    gnutls_x509_crq_deinit(crq);
  return err;
}
