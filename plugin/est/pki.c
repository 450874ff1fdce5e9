/* The embedded CA on GnuTLS: CSR checks, issuance, PKCS#7/PKCS#8,
 * server-side key generation and client classification (see pki.h).
 *
 * Threads: after pki_ca_load() the CA object is only read, except for the
 * GnuTLS objects used to sign (the issuing certificate and its key) and the
 * trust lists. GnuTLS documents objects as safe to share only if one thread
 * at a time uses them, and even getters on a gnutls_x509_crt_t may touch
 * its ASN.1 tree (libtasn1 re-sorts SET OF nodes when it encodes a DN).
 * So the signing step runs under ca->sign_lock and each trust list
 * verification under the trust list's own lock. The precomputed DER buffers
 * (crts answers) are immutable and need no lock.
 */
#include "pki.h"
#include "p7asn.h"

#include "crlasn.h"
#include "common/token.h"

#include "common/opts.h"
#include "proto/der.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <gnutls/pkcs11.h>
#include <gnutls/pkcs7.h>
#include <gnutls/x509-ext.h>
#include <gnutls/x509.h>

#define OID_SAN "2.5.29.17"
#define OID_CHALLENGE "1.2.840.113549.1.9.7" /* PKCS#9 challengePassword */
/* Issued certificates start this far in the past, for client clock skew. */
#define SKEW_SECONDS 60
/* Longest peer chain pki_client_classify() looks at (GnuTLS's own default
 * maximum verification depth is 16 too). */
#define CHAIN_MAX 16
/* RSA subject keys: below 2048 is weak, above 8192 only makes verification
 * a cheap way to burn our CPU. */
#define RSA_BITS_MIN 2048u
#define RSA_BITS_MAX 8192u
#define SERIAL_LEN 16
#define KEY_ID_MAX 64

struct pki_trust {
  gnutls_x509_trust_list_t tl;
  /* On the heap so that a const pki_trust can still be locked. */
  pthread_mutex_t *lock;
};

struct pki_ca {
  /* The plugin holds one reference, every job in flight one more: a CA
   * replaced by a reload lives until its last job is done (pki_ca_ref). */
  atomic_uint refs;
  gnutls_x509_crt_t crt;  /* issuing CA; used only under sign_lock */
  gnutls_privkey_t key;   /* its key; used only under sign_lock */
  pthread_mutex_t sign_lock;
  /* A key on a token (RFC 7512 URI, docs/decisions.md §20): the key
   * never leaves it; after a failed signature the token is opened again
   * before the next one (under sign_lock). */
  char *key_uri;
  char *pin;              /* wiped at free; NULL: the URI's own or none */
  char *module;           /* pkcs11_module, added again after a reset */
  bool token_down;
  bool lock_ready;
  gnutls_digest_algorithm_t dig;
  long long not_after;
  unsigned cert_days;
  pki_profile profile;    /* EKU and size cap (pki_ca_set_profile) */
  uint8_t aki[KEY_ID_MAX]; /* the CA's subject key identifier */
  size_t aki_len;
  pki_trust *bag;         /* own copies of all CA bag certs, for classify */
  size_t count;
  uint8_t *p7;            /* CA bag as DER PKCS#7 certs-only */
  size_t p7_len;
  uint8_t *der;           /* first certificate, DER */
  size_t der_len;
};

struct pki_csr {
  gnutls_x509_crq_t crq;
  uint8_t *der;           /* the request as received */
  size_t der_len;
  size_t subj_off, subj_len; /* subject Name TLV inside der */
  size_t spki_off, spki_len; /* SubjectPublicKeyInfo TLV inside der */
};

/* ---- small helpers ----------------------------------------------------- */

static void diag_set(char *diag, size_t diag_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void diag_set(char *diag, size_t diag_len, const char *fmt, ...) {
  if (!diag || diag_len == 0)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(diag, diag_len, fmt, ap);
  va_end(ap);
}

static void diag_clear(char *diag, size_t diag_len) {
  if (diag && diag_len)
    diag[0] = '\0';
}

/* GnuTLS error to ours: allocation failures keep their meaning. */
static est_err gerr(int rc, est_err other) {
  return rc == GNUTLS_E_MEMORY_ERROR ? EST_ERR_NOMEM : other;
}

/* Import one DER certificate into a new object; *crt is NULL on failure. */
static est_err crt_from_der(const uint8_t *der, size_t len, gnutls_x509_crt_t *crt) {
  *crt = NULL;
  if (!der || len == 0 || len > UINT32_MAX)
    return EST_ERR_INVALID;
  int rc = gnutls_x509_crt_init(crt);
  if (rc < 0) {
    *crt = NULL;
    return gerr(rc, EST_ERR_PKI);
  }
  gnutls_datum_t d = {(unsigned char *)(uintptr_t)der, (unsigned)len};
  rc = gnutls_x509_crt_import(*crt, &d, GNUTLS_X509_FMT_DER);
  if (rc < 0) {
    gnutls_x509_crt_deinit(*crt);
    *crt = NULL;
    return gerr(rc, EST_ERR_MALFORMED);
  }
  return EST_OK;
}

/* gnutls_free() a datum after wiping it (it may hold key material). */
static void datum_wipe_free(gnutls_datum_t *d) {
  if (d->data) {
    gnutls_memset(d->data, 0, d->size);
    gnutls_free(d->data);
  }
  d->data = NULL;
  d->size = 0;
}

static void datum_free(gnutls_datum_t *d) {
  gnutls_free(d->data);
  d->data = NULL;
  d->size = 0;
}

/* Copy a GnuTLS datum into a malloc()ed buffer, so callers never get a
 * gnutls_free()-able pointer. */
static est_err datum_dup(const gnutls_datum_t *d, uint8_t **out,
                         size_t *out_len) {
  uint8_t *p = malloc(d->size ? d->size : 1);
  if (!p)
    return EST_ERR_NOMEM;
  if (d->size)
    memcpy(p, d->data, d->size);
  *out = p;
  *out_len = d->size;
  return EST_OK;
}

void pki_secret_free(uint8_t *buf, size_t len) {
  if (!buf)
    return;
  gnutls_memset(buf, 0, len);
  free(buf);
}

/* Read a whole file of at most @p cap bytes into one malloc()ed buffer.
 * No realloc and no stdio buffer, so a key file leaves exactly one copy,
 * which the caller wipes with pki_secret_free(). */
static est_err file_read(const char *path, const char *what, size_t cap,
                         uint8_t **out, size_t *out_len, char *diag,
                         size_t diag_len) {
  est_err err = EST_OK;
  uint8_t *buf = NULL;
  size_t n = 0;
  FILE *f = fopen(path, "rbe");
  if (!f) {
    diag_set(diag, diag_len, "cannot open %s '%s'", what, path);
    err = EST_ERR_IO;
    goto out;
  }
  setvbuf(f, NULL, _IONBF, 0);
  buf = malloc(cap + 1);
  if (!buf) {
    err = EST_ERR_NOMEM;
    goto out;
  }
  for (;;) {
    size_t r = fread(buf + n, 1, cap + 1 - n, f);
    n += r;
    if (r == 0 || n > cap)
      break;
  }
  if (ferror(f)) {
    diag_set(diag, diag_len, "cannot read %s '%s'", what, path);
    err = EST_ERR_IO;
    goto out;
  }
  if (n > cap) {
    diag_set(diag, diag_len, "%s '%s' is over %zu bytes", what, path, cap);
    err = EST_ERR_TOO_LARGE;
    goto out;
  }
  if (n == 0) {
    diag_set(diag, diag_len, "%s '%s' is empty", what, path);
    err = EST_ERR_CONFIG;
    goto out;
  }
  *out = buf;
  *out_len = n;
  buf = NULL;
out:
  pki_secret_free(buf, n);
  if (f)
    fclose(f);
  return err;
}

/* CertificationRequest ::= SEQUENCE { certificationRequestInfo SEQUENCE {
 *   version INTEGER, subject Name, subjectPKInfo SEQUENCE, ... }, ... }
 * (RFC 2986 §4). The outer SEQUENCE must span the input exactly. */
static bool csr_walk(pki_csr *c) {
  der_tlv outer, info, ver, subj, spki;
  const uint8_t *p = c->der;
  if (!der_next(p, c->der_len, 0, &outer) || outer.tag != 0x30 ||
      der_end(&outer) != c->der_len)
    return false;
  if (!der_next(p, der_end(&outer), outer.off + outer.hdr, &info) ||
      info.tag != 0x30)
    return false;
  size_t info_end = der_end(&info);
  if (!der_next(p, info_end, info.off + info.hdr, &ver) || ver.tag != 0x02)
    return false;
  if (!der_next(p, info_end, der_end(&ver), &subj) || subj.tag != 0x30)
    return false;
  if (!der_next(p, info_end, der_end(&subj), &spki) || spki.tag != 0x30)
    return false;
  c->subj_off = subj.off;
  c->subj_len = subj.hdr + subj.len;
  c->spki_off = spki.off;
  c->spki_len = spki.hdr + spki.len;
  return true;
}

/* ---- key types ------------------------------------------------------------ */

est_err pki_key_type_parse(const char *s, pki_key_type *out) {
  static const char *const names[PKI_KEY__MAX] = {
      [PKI_KEY_EC_P256] = "ec-p256",
      [PKI_KEY_RSA_2048] = "rsa-2048",
      [PKI_KEY_RSA_3072] = "rsa-3072",
  };
  if (!s || !out)
    return EST_ERR_INVALID;
  for (int i = 0; i < PKI_KEY__MAX; i++) {
    if (strcmp(s, names[i]) == 0) {
      *out = (pki_key_type)i;
      return EST_OK;
    }
  }
  return EST_ERR_INVALID;
}

/* ---- trust lists -------------------------------------------------------- */

void pki_trust_free(pki_trust *trust) {
  if (!trust)
    return;
  if (trust->tl)
    gnutls_x509_trust_list_deinit(trust->tl, 1);
  if (trust->lock) {
    pthread_mutex_destroy(trust->lock);
    free(trust->lock);
  }
  free(trust);
}

/* A trust list of every certificate in a PEM buffer. GnuTLS parses its own
 * copies, so the list owns them and shares nothing with the caller. */
static est_err trust_from_pem(const uint8_t *pem, size_t pem_len,
                              const char *path, pki_trust **out, char *diag,
                              size_t diag_len) {
  est_err err = EST_OK;
  pki_trust *t = calloc(1, sizeof *t);
  if (!t) {
    err = EST_ERR_NOMEM;
    goto out;
  }
  t->lock = malloc(sizeof *t->lock);
  if (!t->lock) {
    err = EST_ERR_NOMEM;
    goto out;
  }
  if (pthread_mutex_init(t->lock, NULL) != 0) {
    free(t->lock);
    t->lock = NULL;
    err = EST_ERR_INTERNAL;
    goto out;
  }
  int rc = gnutls_x509_trust_list_init(&t->tl, 0);
  if (rc < 0) {
    t->tl = NULL;
    err = gerr(rc, EST_ERR_TLS);
    goto out;
  }
  gnutls_datum_t d = {(unsigned char *)(uintptr_t)pem, (unsigned)pem_len};
  rc = gnutls_x509_trust_list_add_trust_mem(t->tl, &d, NULL,
                                            GNUTLS_X509_FMT_PEM, 0, 0);
  if (rc <= 0) {
    diag_set(diag, diag_len, "no PEM certificate in '%s'", path);
    err = rc < 0 ? gerr(rc, EST_ERR_CONFIG) : EST_ERR_CONFIG;
    goto out;
  }
  *out = t;
  t = NULL;
out:
  pki_trust_free(t);
  return err;
}

est_err pki_trust_load(const char *path, pki_trust **out, char *diag,
                       size_t diag_len) {
  diag_clear(diag, diag_len);
  est_err err;
  uint8_t *pem = NULL;
  size_t pem_len = 0;
  if (!path || !out)
    return EST_ERR_INVALID;
  *out = NULL;
  err = file_read(path, "trust bundle", PKI_PEM_FILE_MAX, &pem, &pem_len,
                  diag, diag_len);
  if (err != EST_OK)
    goto out;
  err = trust_from_pem(pem, pem_len, path, out, diag, diag_len);
out:
  free(pem);
  return err;
}

/* ---- the CA --------------------------------------------------------------- */

pki_ca *pki_ca_ref(pki_ca *ca) {
  if (ca)
    atomic_fetch_add(&ca->refs, 1u);
  return ca;
}

void pki_ca_free(pki_ca *ca) {
  if (!ca || atomic_fetch_sub(&ca->refs, 1u) != 1u)
    return;
  if (ca->key)
    gnutls_privkey_deinit(ca->key);
  if (ca->crt)
    gnutls_x509_crt_deinit(ca->crt);
  if (ca->lock_ready)
    pthread_mutex_destroy(&ca->sign_lock);
  pki_trust_free(ca->bag);
  free(ca->key_uri);
  free(ca->module);
  est_pin_free(ca->pin);
  free(ca->p7);
  free(ca->der);
  free(ca);
}

size_t pki_ca_cert_count(const pki_ca *ca) { return ca ? ca->count : 0; }

void pki_ca_certs_p7(const pki_ca *ca, const uint8_t **der, size_t *len) {
  *der = ca ? ca->p7 : NULL;
  *len = ca ? ca->p7_len : 0;
}

void pki_ca_cert_der(const pki_ca *ca, const uint8_t **der, size_t *len) {
  *der = ca ? ca->der : NULL;
  *len = ca ? ca->der_len : 0;
}

/* DER PKCS#7 certs-only (RFC 5272/8551 degenerate SignedData) of a list. */
static est_err p7_of(gnutls_x509_crt_t *crts, size_t n, uint8_t **out,
                     size_t *out_len) {
  est_err err = EST_OK;
  gnutls_pkcs7_t p7 = NULL;
  gnutls_datum_t d = {NULL, 0};
  int rc = gnutls_pkcs7_init(&p7);
  if (rc < 0) {
    p7 = NULL;
    err = gerr(rc, EST_ERR_PKI);
    goto out;
  }
  for (size_t i = 0; i < n; i++) {
    rc = gnutls_pkcs7_set_crt(p7, crts[i]);
    if (rc < 0) {
      err = gerr(rc, EST_ERR_PKI);
      goto out;
    }
  }
  rc = gnutls_pkcs7_export2(p7, GNUTLS_X509_FMT_DER, &d);
  if (rc < 0) {
    err = gerr(rc, EST_ERR_PKI);
    goto out;
  }
  /* RFC 5652 §5.2: id-data, not GnuTLS's digestedData (p7asn.h). */
  err = p7asn_certs_only(d.data, d.size, out, out_len);
out:
  datum_free(&d);
  if (p7)
    gnutls_pkcs7_deinit(p7);
  return err;
}

/* RFC 5280 §4.2.1.9/§4.2.1.3: the issuing cert must be a CA allowed to sign
 * certificates, and it must not have expired. */
static est_err ca_check_cert(gnutls_x509_crt_t crt, char *diag,
                             size_t diag_len) {
  unsigned critical = 0, ku = 0;
  int rc = gnutls_x509_crt_get_basic_constraints(crt, &critical, NULL, NULL);
  if (rc <= 0) {
    diag_set(diag, diag_len, "CA certificate lacks basicConstraints CA:TRUE");
    return EST_ERR_CONFIG;
  }
  rc = gnutls_x509_crt_get_key_usage(crt, &ku, &critical);
  if (rc >= 0 && !(ku & GNUTLS_KEY_KEY_CERT_SIGN)) {
    diag_set(diag, diag_len, "CA certificate keyUsage lacks keyCertSign");
    return EST_ERR_CONFIG;
  }
  if (rc < 0 && rc != GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE) {
    diag_set(diag, diag_len, "CA certificate keyUsage does not parse");
    return EST_ERR_CONFIG;
  }
  time_t exp = gnutls_x509_crt_get_expiration_time(crt);
  if (exp == (time_t)-1 || exp <= time(NULL)) {
    diag_set(diag, diag_len, "CA certificate has expired");
    return EST_ERR_CONFIG;
  }
  return EST_OK;
}

/* The key must be one we sign with (EC P-256/P-384, RSA); pick the digest
 * that matches its strength. */
static est_err ca_key_digest(gnutls_privkey_t key,
                             gnutls_digest_algorithm_t *dig, char *diag,
                             size_t diag_len) {
  unsigned bits = 0;
  int pk = gnutls_privkey_get_pk_algorithm(key, &bits);
  if (pk == GNUTLS_PK_RSA && bits >= 2048) {
    *dig = GNUTLS_DIG_SHA256;
    return EST_OK;
  }
  if (pk == GNUTLS_PK_ECDSA) {
    gnutls_ecc_curve_t curve = GNUTLS_ECC_CURVE_INVALID;
    int rc = gnutls_privkey_export_ecc_raw2(key, &curve, NULL, NULL, NULL, 0);
    if (rc >= 0 && curve == GNUTLS_ECC_CURVE_SECP256R1) {
      *dig = GNUTLS_DIG_SHA256;
      return EST_OK;
    }
    if (rc >= 0 && curve == GNUTLS_ECC_CURVE_SECP384R1) {
      *dig = GNUTLS_DIG_SHA384;
      return EST_OK;
    }
  }
  diag_set(diag, diag_len,
           "CA key type not supported (need EC P-256/P-384 or RSA >= 2048)");
  return EST_ERR_CONFIG;
}

/* Compare the public key of @p key with the certificate's. */
/* ---- a CA key on a token (PKCS#11, RFC 7512; docs/decisions.md §20) ---- */

bool pki_key_is_uri(const char *key) { return key && strncmp(key, "pkcs11:", 7) == 0; }

void pki_uri_for_log(const char *uri, char *out, size_t cap) {
  /* RFC 7512 §2.3: pin-value may sit in the query; it never reaches a log. */
  size_t k = 0;
  const char *s = uri ? uri : "";
  while (*s && k + 1 < cap) {
    if ((s == uri || s[-1] == ':' || s[-1] == ';' || s[-1] == '?' || s[-1] == '&') &&
        strncmp(s, "pin-value=", 10) == 0) {
      const char *end = s + strcspn(s, ";&");
      int n = snprintf(out + k, cap - k, "pin-value=(hidden)");
      k += n > 0 && (size_t)n < cap - k ? (size_t)n : cap - k - 1;
      s = end;
      continue;
    }
    out[k++] = *s++;
  }
  out[k] = '\0';
}

/* What a token error means to the operator; never the PIN. */
static void token_why(int rc, const pki_ca *ca, char *diag, size_t diag_len) {
  char uri[PKI_URL_MAX];
  pki_uri_for_log(ca->key_uri, uri, sizeof uri);
  /* A PIN was given: from the file, or in the URI itself (RFC 7512 §2.3). */
  bool given = ca->pin || strstr(ca->key_uri, "pin-value=") || strstr(ca->key_uri, "pin-source=");
  const char *why = rc == GNUTLS_E_PKCS11_PIN_ERROR
                        ? (given ? "the token refused the PIN"
                                 : "the token needs a PIN (ca_key_pin_file, or pin-value in the URI)")
                    : rc == GNUTLS_E_PKCS11_PIN_LOCKED ? "the token's PIN is locked"
                    : rc == GNUTLS_E_PKCS11_PIN_EXPIRED ? "the token's PIN has expired"
                    : rc == GNUTLS_E_PKCS11_REQUESTED_OBJECT_NOT_AVAILBLE ||
                              rc == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE ||
                              rc == GNUTLS_E_PKCS11_SLOT_ERROR || rc == GNUTLS_E_PKCS11_TOKEN_ERROR
                        ? "no such private key on any token (is the token there?)"
                        : gnutls_strerror(rc);
  diag_set(diag, diag_len, "ca_key %s: %s", uri, why);
}

static est_err token_key(pki_ca *ca, gnutls_privkey_t *out, char *diag, size_t diag_len) {
  gnutls_privkey_t k = NULL;
  int rc = gnutls_privkey_init(&k);
  if (rc < 0)
    return gerr(rc, EST_ERR_PKI);
  /* Once only (common/token.h); ca->pin lives as long as the CA. */
  gnutls_privkey_set_pin_function(k, est_token_pin_once, ca->pin);
  rc = gnutls_privkey_import_url(k, ca->key_uri, 0);
  if (rc < 0) {
    token_why(rc, ca, diag, diag_len);
    gnutls_privkey_deinit(k);
    return EST_ERR_CONFIG;
  }
  *out = k;
  return EST_OK;
}

/* One signature with the token key, checked with the certificate. */
static est_err token_try_sign(pki_ca *ca, gnutls_x509_crt_t crt, char *diag, size_t diag_len) {
  static const uint8_t probe[] = "est-coaps token check";
  gnutls_datum_t data = {(unsigned char *)(uintptr_t)probe, sizeof probe}, sig = {NULL, 0};
  gnutls_pubkey_t pub = NULL;
  est_err err = EST_OK;
  int rc = gnutls_privkey_sign_data(ca->key, ca->dig, 0, &data, &sig);
  if (rc < 0) {
    token_why(rc, ca, diag, diag_len);
    return EST_ERR_CONFIG;
  }
  gnutls_sign_algorithm_t algo =
      gnutls_pk_to_sign(gnutls_privkey_get_pk_algorithm(ca->key, NULL), ca->dig);
  if (gnutls_pubkey_init(&pub) < 0 || gnutls_pubkey_import_x509(pub, crt, 0) < 0 ||
      gnutls_pubkey_verify_data2(pub, algo, 0, &data, &sig) < 0) {
    diag_set(diag, diag_len, "ca_key: the token's signature does not verify with ca_cert");
    err = EST_ERR_KEY_MISMATCH;
  }
  if (pub)
    gnutls_pubkey_deinit(pub);
  gnutls_free(sig.data);
  return err;
}

/* Under sign_lock: a token that failed is opened again. SoftHSM and
 * others need the module finalized and initialized once more, and
 * gnutls_pkcs11_reinit() does that only in a forked child; so the PKCS#11
 * layer is shut down (our key object first) and comes back on the next
 * use, with pkcs11_module added again. */
static est_err token_ready(pki_ca *ca) {
  if (!ca->key_uri || !ca->token_down)
    return EST_OK;
  gnutls_privkey_t k = NULL;
  char diag[PKI_URL_MAX + 64];
  gnutls_privkey_deinit(ca->key);
  ca->key = NULL;
  gnutls_pkcs11_deinit();
  if ((ca->module && gnutls_pkcs11_add_provider(ca->module, NULL) < 0) ||
      token_key(ca, &k, diag, sizeof diag) != EST_OK) {
    /* Keep a key object so the CA still reads as one that signs. */
    if (gnutls_privkey_init(&ca->key) < 0)
      ca->key = NULL;
    return EST_ERR_UNAVAILABLE;
  }
  ca->key = k;
  ca->token_down = false;
  return EST_OK;
}

/* Under sign_lock: a signature failed with @p rc. A token's failure is
 * "retry later" (the token may come back); a file key's is a CA error. */
static est_err token_failed(pki_ca *ca, int rc) {
  if (!ca->key_uri)
    return gerr(rc, EST_ERR_PKI);
  ca->token_down = true;
  return EST_ERR_UNAVAILABLE;
}

bool pki_ca_on_token(const pki_ca *ca) { return ca && ca->key_uri; }

static est_err ca_key_matches(gnutls_x509_crt_t crt, gnutls_privkey_t key,
                              char *diag, size_t diag_len) {
  est_err err = EST_OK;
  gnutls_pubkey_t pub = NULL;
  uint8_t a[KEY_ID_MAX], b[KEY_ID_MAX];
  size_t a_len = sizeof a, b_len = sizeof b;
  int rc = gnutls_pubkey_init(&pub);
  if (rc < 0) {
    pub = NULL;
    err = gerr(rc, EST_ERR_PKI);
    goto out;
  }
  rc = gnutls_pubkey_import_privkey(pub, key, 0, 0);
  if (rc < 0) {
    err = gerr(rc, EST_ERR_PKI);
    goto out;
  }
  rc = gnutls_pubkey_get_key_id(pub, GNUTLS_KEYID_USE_SHA256, a, &a_len);
  if (rc >= 0)
    rc = gnutls_x509_crt_get_key_id(crt, GNUTLS_KEYID_USE_SHA256, b, &b_len);
  if (rc < 0) {
    err = gerr(rc, EST_ERR_PKI);
    goto out;
  }
  if (a_len != b_len || memcmp(a, b, a_len) != 0) {
    diag_set(diag, diag_len, "CA key does not match the CA certificate");
    err = EST_ERR_KEY_MISMATCH;
  }
out:
  if (pub)
    gnutls_pubkey_deinit(pub);
  return err;
}

est_err pki_ca_load(const char *cert_path, const char *key_path,
                    unsigned cert_days, pki_ca **out, char *diag,
                    size_t diag_len) {
  return pki_ca_open(cert_path, key_path, NULL, NULL, cert_days, out, diag, diag_len);
}

est_err pki_ca_open(const char *cert_path, const char *key_path, const char *pin,
                    const char *module, unsigned cert_days, pki_ca **out, char *diag,
                    size_t diag_len) {
  diag_clear(diag, diag_len);
  est_err err = EST_OK;
  pki_ca *ca = NULL;
  uint8_t *pem = NULL, *key_pem = NULL;
  size_t pem_len = 0, key_len = 0;
  gnutls_x509_crt_t *crts = NULL;
  unsigned ncrt = 0;
  gnutls_datum_t d = {NULL, 0};
  int rc;

  if (!cert_path || !key_path || !out) {
    err = EST_ERR_INVALID;
    goto out;
  }
  *out = NULL;
  if (cert_days < 1 || cert_days > 36500) {
    diag_set(diag, diag_len, "cert_days must be 1..36500");
    err = EST_ERR_CONFIG;
    goto out;
  }
  ca = calloc(1, sizeof *ca);
  if (!ca) {
    err = EST_ERR_NOMEM;
    goto out;
  }
  atomic_init(&ca->refs, 1u);
  ca->cert_days = cert_days;
  ca->profile.eku = PKI_EKU_CLIENT_AUTH;
  ca->profile.max_cert_bytes = PKI_CERT_MAX;
  if (pthread_mutex_init(&ca->sign_lock, NULL) != 0) {
    err = EST_ERR_INTERNAL;
    goto out;
  }
  ca->lock_ready = true;

  err = file_read(cert_path, "CA certificate file", PKI_PEM_FILE_MAX, &pem,
                  &pem_len, diag, diag_len);
  if (err != EST_OK)
    goto out;
  d.data = pem;
  d.size = (unsigned)pem_len;
  rc = gnutls_x509_crt_list_import2(&crts, &ncrt, &d, GNUTLS_X509_FMT_PEM, 0);
  d.data = NULL;
  if (rc < 0) {
    crts = NULL;
    ncrt = 0;
  }
  if (ncrt == 0) {
    diag_set(diag, diag_len, "no valid PEM certificate in '%s'", cert_path);
    err = gerr(rc, EST_ERR_CONFIG);
    goto out;
  }
  err = ca_check_cert(crts[0], diag, diag_len);
  if (err != EST_OK)
    goto out;

  if (pki_key_is_uri(key_path)) {
    ca->key_uri = strdup(key_path);
    ca->pin = pin ? strdup(pin) : NULL;
    ca->module = module ? strdup(module) : NULL;
    if (!ca->key_uri || (pin && !ca->pin) || (module && !ca->module)) {
      err = EST_ERR_NOMEM;
      goto out;
    }
    err = token_key(ca, &ca->key, diag, diag_len);
    if (err != EST_OK)
      goto out;
  } else {
    err = file_read(key_path, "CA key file", PKI_PEM_FILE_MAX, &key_pem,
                    &key_len, diag, diag_len);
    if (err != EST_OK)
      goto out;
    rc = gnutls_privkey_init(&ca->key);
    if (rc < 0) {
      ca->key = NULL;
      err = gerr(rc, EST_ERR_PKI);
      goto out;
    }
    d.data = key_pem;
    d.size = (unsigned)key_len;
    rc = gnutls_privkey_import_x509_raw(ca->key, &d, GNUTLS_X509_FMT_PEM, NULL,
                                        0);
    d.data = NULL;
    if (rc < 0) {
      diag_set(diag, diag_len,
               "no usable PEM private key in '%s' (encrypted keys are not "
               "supported)",
               key_path);
      err = gerr(rc, EST_ERR_CONFIG);
      goto out;
    }
  }
  err = ca_key_digest(ca->key, &ca->dig, diag, diag_len);
  if (err != EST_OK)
    goto out;
  err = ca_key_matches(crts[0], ca->key, diag, diag_len);
  if (err != EST_OK)
    goto out;
  /* A token key must sign now: a wrong PIN or a locked token is an error
   * at start, not at the first enrollment. */
  if (ca->key_uri && (err = token_try_sign(ca, crts[0], diag, diag_len)) != EST_OK)
    goto out;

  /* Precompute what crts serves (RFC 9148 §4.1), once. */
  err = p7_of(crts, ncrt, &ca->p7, &ca->p7_len);
  if (err != EST_OK)
    goto out;
  rc = gnutls_x509_crt_export2(crts[0], GNUTLS_X509_FMT_DER, &d);
  if (rc < 0) {
    err = gerr(rc, EST_ERR_PKI);
    goto out;
  }
  err = datum_dup(&d, &ca->der, &ca->der_len);
  datum_free(&d);
  if (err != EST_OK)
    goto out;

  /* AKI of issued certs = the CA's SKI; compute one if it has none. */
  ca->aki_len = sizeof ca->aki;
  unsigned crit = 0;
  rc = gnutls_x509_crt_get_subject_key_id(crts[0], ca->aki, &ca->aki_len,
                                          &crit);
  if (rc < 0) {
    ca->aki_len = sizeof ca->aki;
    rc = gnutls_x509_crt_get_key_id(crts[0], GNUTLS_KEYID_USE_SHA1, ca->aki,
                                    &ca->aki_len);
  }
  if (rc < 0) {
    err = gerr(rc, EST_ERR_PKI);
    goto out;
  }
  ca->not_after = (long long)gnutls_x509_crt_get_expiration_time(crts[0]);

  err = trust_from_pem(pem, pem_len, cert_path, &ca->bag, diag, diag_len);
  if (err != EST_OK)
    goto out;

  ca->count = ncrt;
  ca->crt = crts[0];
  crts[0] = NULL;
  *out = ca;
  ca = NULL;
out:
  for (unsigned i = 0; i < ncrt; i++)
    if (crts[i])
      gnutls_x509_crt_deinit(crts[i]);
  gnutls_free(crts);
  pki_secret_free(key_pem, key_len);
  free(pem);
  pki_ca_free(ca);
  return err;
}

est_err pki_eku_parse(const char *list, unsigned *out) {
  est_opts_list it;
  const char *item;
  size_t len;
  unsigned eku = 0;
  if (!list || !out)
    return EST_ERR_INVALID;
  est_opts_list_begin(&it, list);
  while (est_opts_list_next(&it, &item, &len)) {
    if (len == 0)
      continue;
    if (len == 10 && memcmp(item, "clientAuth", 10) == 0)
      eku |= PKI_EKU_CLIENT_AUTH;
    else if (len == 10 && memcmp(item, "serverAuth", 10) == 0)
      eku |= PKI_EKU_SERVER_AUTH;
    else
      return EST_ERR_INVALID;
  }
  if (eku == 0)
    return EST_ERR_INVALID;
  *out = eku;
  return EST_OK;
}

est_err pki_ca_set_profile(pki_ca *ca, const pki_profile *p) {
  const unsigned known = PKI_EKU_CLIENT_AUTH | PKI_EKU_SERVER_AUTH;
  if (!ca || !p || p->eku == 0 || (p->eku & ~known) || p->max_cert_bytes == 0 ||
      p->max_cert_bytes > PKI_CERT_MAX || !memchr(p->crl_url, '\0', sizeof p->crl_url))
    return EST_ERR_INVALID;
  ca->profile = *p;
  return EST_OK;
}

/* A CRL file is PEM (one or more) or one DER CRL (RFC 5280 §5). */
#define CRL_FILE_MAX (8u * 1024u * 1024u)
#define CRLS_PER_FILE_MAX 64u

est_err pki_trust_add_crl_file(pki_trust *t, const char *path, unsigned *entries, char *diag,
                               size_t diag_len) {
  est_err err = EST_OK;
  uint8_t *data = NULL;
  size_t len = 0;
  gnutls_x509_crl_t *crls = NULL;
  unsigned n = 0;
  diag_clear(diag, diag_len);
  if (entries)
    *entries = 0;
  if (!t || !path)
    return EST_ERR_INVALID;
  err = file_read(path, "CRL", CRL_FILE_MAX, &data, &len, diag, diag_len);
  if (err != EST_OK)
    goto out;
  gnutls_datum_t d = {data, (unsigned)len};
  /* PEM first (it may hold several); what is not PEM must be one DER. */
  int rc = gnutls_x509_crl_list_import2(&crls, &n, &d, GNUTLS_X509_FMT_PEM, 0);
  if (rc < 0 || n == 0) {
    gnutls_free(crls);
    crls = NULL;
    n = 0;
    rc = gnutls_x509_crl_list_import2(&crls, &n, &d, GNUTLS_X509_FMT_DER, 0);
  }
  if (rc < 0 || n == 0) {
    diag_set(diag, diag_len, "'%s' holds no PEM or DER CRL (%s)", path,
             rc < 0 ? gnutls_strerror(rc) : "empty");
    err = EST_ERR_CONFIG;
    goto out;
  }
  if (n > CRLS_PER_FILE_MAX) {
    diag_set(diag, diag_len, "'%s' holds %u CRLs, at most %u", path, n, CRLS_PER_FILE_MAX);
    err = EST_ERR_TOO_LARGE;
    goto out;
  }
  for (unsigned i = 0; i < n; i++) {
    int c = gnutls_x509_crl_get_crt_count(crls[i]);
    if (c > 0 && entries)
      *entries += (unsigned)c;
  }
  /* Only a CRL signed by one of the manufacturer CAs counts; one that is
   * not is refused, never ignored (an unverified list could revoke
   * anyone). One at a time: the trust list owns each CRL it took, and
   * leaves the one it refused to us. The caller drops the whole list on
   * failure. */
  for (unsigned i = 0; i < n; i++) {
    pthread_mutex_lock(t->lock);
    /* A CRL past its nextUpdate still lists what it lists: its dates
     * are no reason to forget a revocation. */
    rc = gnutls_x509_trust_list_add_crls(t->tl, &crls[i], 1, GNUTLS_TL_VERIFY_CRL,
                                         GNUTLS_VERIFY_DISABLE_TIME_CHECKS);
    pthread_mutex_unlock(t->lock);
    if (rc != 1) {
      diag_set(diag, diag_len,
               "CRL %u of '%s' is not signed by a CA in idevid_trust (put its issuer there)",
               i + 1, path);
      err = EST_ERR_CONFIG;
      goto out;
    }
    crls[i] = NULL;
  }
out:
  for (unsigned i = 0; i < n; i++)
    if (crls[i])
      gnutls_x509_crl_deinit(crls[i]);
  gnutls_free(crls);
  free(data);
  return err;
}

/* ---- classification ------------------------------------------------------- */

/* Does the chain verify against @p t for TLS client authentication?
 * GnuTLS checks validity periods against the current time only, so its
 * time checks are off here and pki_client_classify() checks the peer's
 * certificates against its own @p now instead. */
static est_err trust_verifies(const pki_trust *t, gnutls_x509_crt_t *chain,
                              unsigned n, bool *ok, bool *revoked) {
  gnutls_typed_vdata_st purpose = {GNUTLS_DT_KEY_PURPOSE_OID,
                                   (unsigned char *)GNUTLS_KP_TLS_WWW_CLIENT,
                                   0};
  unsigned status = 0;
  pthread_mutex_lock(t->lock);
  int rc = gnutls_x509_trust_list_verify_crt2(
      t->tl, chain, n, &purpose, 1,
      GNUTLS_VERIFY_DISABLE_TIME_CHECKS |
          GNUTLS_VERIFY_DISABLE_TRUSTED_TIME_CHECKS,
      &status, NULL);
  pthread_mutex_unlock(t->lock);
  if (rc < 0)
    return gerr(rc, EST_ERR_TLS);
  *ok = status == 0;
  /* Revoked by a CRL of the list, and nothing else wrong (RFC 5280 §6.3). */
  if (revoked)
    *revoked = status == (GNUTLS_CERT_INVALID | GNUTLS_CERT_REVOKED);
  return EST_OK;
}

est_err pki_client_classify(const pki_ca *ca, const pki_trust *idevid,
                            const uint8_t *const *der, const size_t *len,
                            size_t count, long long now, unsigned flags,
                            pki_client_class *out, pki_client_status *status) {
  est_err err = EST_OK;
  gnutls_x509_crt_t chain[CHAIN_MAX] = {NULL};
  size_t n = 0;
  bool expired = false, early = false, ok = false;
  pki_client_class cls = PKI_CLIENT_UNKNOWN;
  pki_client_status st = PKI_STATUS_UNTRUSTED;

  if (out)
    *out = PKI_CLIENT_UNKNOWN;
  if (status)
    *status = PKI_STATUS_UNTRUSTED;
  if (!ca || !der || !len || !out || count == 0) {
    err = EST_ERR_INVALID;
    goto out;
  }
  if (count > CHAIN_MAX) {
    err = EST_ERR_TOO_LARGE;
    goto out;
  }
  for (n = 0; n < count; n++) {
    err = crt_from_der(der[n], len[n], &chain[n]);
    if (err == EST_ERR_INVALID)
      err = EST_ERR_MALFORMED;
    if (err != EST_OK)
      goto out;
    /* Every certificate the peer sent must be valid at @p now; the trust
     * anchors are configuration (our CA was checked at load). */
    long long nb = (long long)gnutls_x509_crt_get_activation_time(chain[n]);
    long long na = (long long)gnutls_x509_crt_get_expiration_time(chain[n]);
    /* -1 is GnuTLS's "cannot read it": never accepted, so not "expired". */
    if (nb == -1 || na == -1 || now < nb)
      early = true;
    else if (now > na)
      expired = true;
  }
  /* Trust first, time second: an untrusted chain is untrusted whatever
   * its dates, and the class names the diagnostic of a dated one. */
  bool revoked = false;
  err = trust_verifies(ca->bag, chain, (unsigned)n, &ok, NULL);
  if (err != EST_OK)
    goto out;
  if (ok) {
    cls = PKI_CLIENT_LDEVID;
  } else if (idevid) {
    err = trust_verifies(idevid, chain, (unsigned)n, &ok, &revoked);
    if (err != EST_OK)
      goto out;
    if (ok)
      cls = PKI_CLIENT_IDEVID;
  }
  if (revoked) {
    /* On a manufacturer CRL (idevid_crl): trusted once, not any more. */
    st = PKI_STATUS_REVOKED;
    if (status)
      *status = st;
    goto out;
  }
  if (cls == PKI_CLIENT_UNKNOWN)
    goto out;
  /* A certificate not yet valid is an error somewhere (a clock, an issuer);
   * AUTH-5 allows only the expired IDevID (docs/decisions.md §5). Our own
   * certificates are renewed with sren before they expire, so an expired
   * LDevID is never taken. */
  if (early) {
    st = PKI_STATUS_NOT_YET_VALID;
    cls = PKI_CLIENT_UNKNOWN;
  } else if (expired && cls == PKI_CLIENT_LDEVID) {
    st = PKI_STATUS_LDEVID_EXPIRED;
    cls = PKI_CLIENT_UNKNOWN;
  } else if (expired) {
    st = PKI_STATUS_IDEVID_EXPIRED;
    if (!(flags & PKI_CLASSIFY_IDEVID_EXPIRED_OK))
      cls = PKI_CLIENT_UNKNOWN;
  } else {
    st = PKI_STATUS_VALID;
  }
  *out = cls;
  if (status)
    *status = st;
out:
  for (size_t i = 0; i < CHAIN_MAX; i++)
    if (chain[i])
      gnutls_x509_crt_deinit(chain[i]);
  return err;
}

static bool has_key_purpose(gnutls_x509_crt_t crt, const char *want) {
  for (unsigned i = 0; i < 64; i++) {
    char oid[128];
    size_t n = sizeof oid;
    int rc = gnutls_x509_crt_get_key_purpose_oid(crt, i, oid, &n, NULL);
    if (rc == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE || rc < 0)
      return false;
    if (strcmp(oid, want) == 0)
      return true;
  }
  return false;
}

est_err pki_ra_check(const pki_trust *ra, const uint8_t *const *der, const size_t *len,
                     size_t count, long long now, bool *is_ra) {
  est_err err = EST_OK;
  gnutls_x509_crt_t chain[CHAIN_MAX] = {NULL};
  size_t n = 0;
  bool in_time = true, ok = false;
  if (is_ra)
    *is_ra = false;
  if (!ra || !der || !len || !is_ra || count == 0)
    return EST_ERR_INVALID;
  if (count > CHAIN_MAX)
    return EST_ERR_TOO_LARGE;
  for (n = 0; n < count; n++) {
    err = crt_from_der(der[n], len[n], &chain[n]);
    if (err == EST_ERR_INVALID)
      err = EST_ERR_MALFORMED;
    if (err != EST_OK)
      goto out;
    long long nb = (long long)gnutls_x509_crt_get_activation_time(chain[n]);
    long long na = (long long)gnutls_x509_crt_get_expiration_time(chain[n]);
    if (nb == -1 || na == -1 || now < nb || now > na)
      in_time = false;
  }
  /* The leaf must say it is an RA: a certificate without any EKU passes
   * GnuTLS's purpose check, but does not make its holder an RA. */
  if (!has_key_purpose(chain[0], PKI_KP_CMC_RA))
    goto out;
  gnutls_typed_vdata_st purpose = {GNUTLS_DT_KEY_PURPOSE_OID,
                                   (unsigned char *)PKI_KP_CMC_RA, 0};
  unsigned status = 0;
  pthread_mutex_lock(ra->lock);
  int rc = gnutls_x509_trust_list_verify_crt2(
      ra->tl, chain, (unsigned)n, &purpose, 1,
      GNUTLS_VERIFY_DISABLE_TIME_CHECKS | GNUTLS_VERIFY_DISABLE_TRUSTED_TIME_CHECKS, &status,
      NULL);
  pthread_mutex_unlock(ra->lock);
  if (rc < 0) {
    err = gerr(rc, EST_ERR_TLS);
    goto out;
  }
  ok = status == 0 && in_time;
  *is_ra = ok;
out:
  for (size_t i = 0; i < CHAIN_MAX; i++)
    if (chain[i])
      gnutls_x509_crt_deinit(chain[i]);
  return err;
}

/* ---- CSRs ----------------------------------------------------------------- */

/* An empty Name is the bare SEQUENCE header 30 00. */
static bool csr_subject_empty(const pki_csr *csr) { return csr->subj_len <= 2; }

void pki_csr_free(pki_csr *csr) {
  if (!csr)
    return;
  if (csr->crq)
    gnutls_x509_crq_deinit(csr->crq);
  free(csr->der);
  free(csr);
}

/* Subject key types we issue for: RSA 2048..8192, EC P-256/384/521,
 * Ed25519. Anything else is refused at parse time. */
static bool csr_key_supported(gnutls_x509_crq_t crq) {
  bool ok = false;
  gnutls_pubkey_t pub = NULL;
  unsigned bits = 0;
  if (gnutls_pubkey_init(&pub) < 0) {
    pub = NULL;
    goto out;
  }
  if (gnutls_pubkey_import_x509_crq(pub, crq, 0) < 0)
    goto out;
  int pk = gnutls_pubkey_get_pk_algorithm(pub, &bits);
  switch (pk) {
  case GNUTLS_PK_RSA:
    ok = bits >= RSA_BITS_MIN && bits <= RSA_BITS_MAX;
    break;
  case GNUTLS_PK_ECDSA: {
    gnutls_ecc_curve_t curve = GNUTLS_ECC_CURVE_INVALID;
    if (gnutls_pubkey_export_ecc_raw2(pub, &curve, NULL, NULL, 0) < 0)
      break;
    ok = curve == GNUTLS_ECC_CURVE_SECP256R1 ||
         curve == GNUTLS_ECC_CURVE_SECP384R1 ||
         curve == GNUTLS_ECC_CURVE_SECP521R1;
    break;
  }
  case GNUTLS_PK_EDDSA_ED25519:
    ok = true;
    break;
  default:
    break;
  }
out:
  if (pub)
    gnutls_pubkey_deinit(pub);
  return ok;
}

est_err pki_csr_parse(const uint8_t *der, size_t len, pki_csr **out,
                      char *diag, size_t diag_len) {
  diag_clear(diag, diag_len);
  est_err err = EST_OK;
  pki_csr *c = NULL;
  if (!out || (!der && len)) {
    err = EST_ERR_INVALID;
    goto out;
  }
  *out = NULL;
  if (len > PKI_CSR_MAX) {
    diag_set(diag, diag_len, "CSR over %u bytes", PKI_CSR_MAX);
    err = EST_ERR_TOO_LARGE;
    goto out;
  }
  if (len == 0) {
    diag_set(diag, diag_len, "empty CSR");
    err = EST_ERR_BAD_CSR;
    goto out;
  }
  c = calloc(1, sizeof *c);
  if (!c || !(c->der = malloc(len))) {
    err = EST_ERR_NOMEM;
    goto out;
  }
  memcpy(c->der, der, len);
  c->der_len = len;
  /* RFC 9148 §4.2: the payload is exactly one DER CSR; also rejects
   * trailing bytes, which GnuTLS might otherwise ignore. */
  if (!csr_walk(c)) {
    diag_set(diag, diag_len, "CSR is not one DER PKCS#10 structure");
    err = EST_ERR_BAD_CSR;
    goto out;
  }
  int rc = gnutls_x509_crq_init(&c->crq);
  if (rc < 0) {
    c->crq = NULL;
    err = gerr(rc, EST_ERR_PKI);
    goto out;
  }
  gnutls_datum_t d = {c->der, (unsigned)len};
  rc = gnutls_x509_crq_import(c->crq, &d, GNUTLS_X509_FMT_DER);
  if (rc < 0) {
    diag_set(diag, diag_len, "CSR is not valid DER PKCS#10");
    err = gerr(rc, EST_ERR_BAD_CSR);
    goto out;
  }
  if (!csr_key_supported(c->crq)) {
    diag_set(diag, diag_len,
             "CSR key type not supported (RSA 2048-8192, EC P-256/384/521, "
             "Ed25519)");
    err = EST_ERR_BAD_CSR;
    goto out;
  }
  *out = c;
  c = NULL;
out:
  pki_csr_free(c);
  return err;
}

est_err pki_csr_verify(const pki_csr *csr) {
  if (!csr)
    return EST_ERR_INVALID;
  /* gnutls_x509_crq_verify() still takes SHA-1 (and would take MD5); hold
   * the request to what GnuTLS accepts in certificates. */
  int alg = gnutls_x509_crq_get_signature_algorithm(csr->crq);
  if (alg <= 0 || !gnutls_sign_is_secure2((gnutls_sign_algorithm_t)alg,
                                          GNUTLS_SIGN_FLAG_SECURE_FOR_CERTS))
    return EST_ERR_CSR_SIGNATURE;
  return gnutls_x509_crq_verify(csr->crq, 0) < 0 ? EST_ERR_CSR_SIGNATURE
                                                 : EST_OK;
}

/* challengePassword ::= DirectoryString (RFC 2985 §5.4.1). GnuTLS's own
 * getter returns it RFC 4514-escaped ("+" becomes "\+"), which would break
 * the base64 binding value of RFC 7030 §3.5, so decode the DER here:
 * one-byte strings as they are, BMP/Universal strings if all ASCII. NUL is
 * refused, since the caller compares C strings. */
static est_err dirstring_decode(const uint8_t *p, size_t len, char *out,
                                size_t cap, size_t *out_len) {
  der_tlv t;
  size_t unit;
  if (!der_next(p, len, 0, &t) || der_end(&t) != len)
    return EST_ERR_MALFORMED;
  switch (t.tag) {
  case 0x0c: /* UTF8String */
  case 0x13: /* PrintableString */
  case 0x14: /* TeletexString */
  case 0x16: /* IA5String (not a DirectoryString, but seen in the wild) */
    unit = 1;
    break;
  case 0x1e: /* BMPString */
    unit = 2;
    break;
  case 0x1c: /* UniversalString */
    unit = 4;
    break;
  default:
    return EST_ERR_MALFORMED;
  }
  if (t.len % unit)
    return EST_ERR_MALFORMED;
  size_t n = t.len / unit;
  if (n > PKI_CHALLENGE_MAX || n + 1 > cap)
    return EST_ERR_TOO_LARGE;
  const uint8_t *v = p + t.hdr;
  for (size_t i = 0; i < n; i++) {
    uint32_t ch = 0;
    for (size_t k = 0; k < unit; k++)
      ch = (ch << 8) | v[i * unit + k];
    if (ch == 0 || (unit > 1 && ch > 0x7f))
      return EST_ERR_MALFORMED;
    out[i] = (char)ch;
  }
  out[n] = '\0';
  *out_len = n;
  return EST_OK;
}

est_err pki_csr_challenge(const pki_csr *csr, char *buf, size_t buf_len) {
  /* Room for 255 four-byte characters plus the header. */
  uint8_t raw[4 * PKI_CHALLENGE_MAX + 8];
  size_t raw_len = sizeof raw, n = 0;
  est_err err = EST_OK;
  if (!csr || !buf || buf_len == 0)
    return EST_ERR_INVALID;
  buf[0] = '\0';
  int rc = gnutls_x509_crq_get_attribute_by_oid(csr->crq, OID_CHALLENGE, 0,
                                                raw, &raw_len);
  if (rc == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE) {
    err = EST_ERR_NOT_FOUND;
    goto out;
  }
  if (rc == GNUTLS_E_SHORT_MEMORY_BUFFER) {
    err = EST_ERR_TOO_LARGE; /* over RFC 7030 §3.5's 255 bytes */
    goto out;
  }
  if (rc < 0) {
    err = gerr(rc, EST_ERR_MALFORMED);
    goto out;
  }
  err = dirstring_decode(raw, raw_len, buf, buf_len, &n);
  if (err != EST_OK)
    buf[0] = '\0';
out:
  gnutls_memset(raw, 0, sizeof raw);
  return err;
}

est_err pki_csr_check_profile(const pki_csr *csr, char *diag,
                              size_t diag_len) {
  diag_clear(diag, diag_len);
  unsigned critical = 0, ku = 0, ca = 0;
  if (!csr)
    return EST_ERR_INVALID;
  int rc = gnutls_x509_crq_get_basic_constraints(csr->crq, &critical, &ca,
                                                 NULL);
  if (rc < 0 && rc != GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE) {
    diag_set(diag, diag_len, "basicConstraints in the CSR does not parse");
    return gerr(rc, EST_ERR_BAD_CSR);
  }
  if (rc >= 0 && ca) {
    diag_set(diag, diag_len, "CSR asks for a CA certificate (CA:TRUE)");
    return EST_ERR_CA_REQUEST;
  }
  rc = gnutls_x509_crq_get_key_usage(csr->crq, &ku, &critical);
  if (rc < 0 && rc != GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE) {
    diag_set(diag, diag_len, "keyUsage in the CSR does not parse");
    return gerr(rc, EST_ERR_BAD_CSR);
  }
  if (rc >= 0 && (ku & (GNUTLS_KEY_KEY_CERT_SIGN | GNUTLS_KEY_CRL_SIGN))) {
    diag_set(diag, diag_len,
             "CSR asks for a CA certificate (keyCertSign/cRLSign)");
    return EST_ERR_CA_REQUEST;
  }
  return EST_OK;
}

/* One subjectAltName entry, pointing into a gnutls_subject_alt_names_t. */
typedef struct san_item {
  unsigned type;
  gnutls_datum_t oid; /* otherName type-id, else empty */
  gnutls_datum_t val;
} san_item;

static int datum_cmp(const gnutls_datum_t *a, const gnutls_datum_t *b) {
  if (a->size != b->size)
    return a->size < b->size ? -1 : 1;
  return a->size ? memcmp(a->data, b->data, a->size) : 0;
}

static int san_cmp(const void *pa, const void *pb) {
  const san_item *a = pa, *b = pb;
  if (a->type != b->type)
    return a->type < b->type ? -1 : 1;
  int c = datum_cmp(&a->oid, &b->oid);
  return c ? c : datum_cmp(&a->val, &b->val);
}

/* Parse a SAN extension value (NULL/empty: no extension) into a sorted
 * array of entries that point into *sans. */
static est_err san_items(const gnutls_datum_t *ext,
                         gnutls_subject_alt_names_t *sans, san_item **items,
                         size_t *count) {
  est_err err = EST_OK;
  size_t n = 0;
  *sans = NULL;
  *items = NULL;
  *count = 0;
  if (!ext || !ext->data)
    goto out;
  int rc = gnutls_subject_alt_names_init(sans);
  if (rc < 0) {
    *sans = NULL;
    err = gerr(rc, EST_ERR_PKI);
    goto out;
  }
  rc = gnutls_x509_ext_import_subject_alt_names(ext, *sans, 0);
  if (rc < 0) {
    err = gerr(rc, EST_ERR_MALFORMED);
    goto out;
  }
  for (;; n++) {
    unsigned type;
    gnutls_datum_t v, o;
    rc = gnutls_subject_alt_names_get(*sans, (unsigned)n, &type, &v, &o);
    if (rc == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
      break;
    if (rc < 0) {
      err = gerr(rc, EST_ERR_MALFORMED);
      goto out;
    }
  }
  if (n == 0)
    goto out;
  *items = calloc(n, sizeof **items);
  if (!*items) {
    err = EST_ERR_NOMEM;
    goto out;
  }
  for (size_t i = 0; i < n; i++) {
    san_item *it = &(*items)[i];
    rc = gnutls_subject_alt_names_get(*sans, (unsigned)i, &it->type, &it->val,
                                      &it->oid);
    if (rc < 0) {
      err = gerr(rc, EST_ERR_MALFORMED);
      goto out;
    }
    if (it->type != GNUTLS_SAN_OTHERNAME) {
      it->oid.data = NULL;
      it->oid.size = 0;
    }
  }
  qsort(*items, n, sizeof **items, san_cmp);
  *count = n;
out:
  if (err != EST_OK) {
    free(*items);
    *items = NULL;
  }
  return err;
}

/* Subject and SAN of the authenticating certificate vs. the CSR. */
static est_err csr_match(const pki_csr *csr, gnutls_x509_crt_t crt,
                         char *diag, size_t diag_len) {
  est_err err = EST_OK;
  gnutls_datum_t cdn = {NULL, 0}, csan = {NULL, 0}, rsan = {NULL, 0};
  gnutls_datum_t s1 = {NULL, 0}, s2 = {NULL, 0};
  gnutls_subject_alt_names_t cs = NULL, rs = NULL;
  san_item *ci = NULL, *ri = NULL;
  size_t cn = 0, rn = 0;
  unsigned crit = 0;

  /* RFC 7030 §4.2.2 "identical": the raw DER names first; if the encodings
   * differ (e.g. PrintableString vs UTF8String), the RFC 4514 forms. */
  int rc = gnutls_x509_crt_get_raw_dn(crt, &cdn);
  if (rc < 0) {
    diag_set(diag, diag_len, "certificate subject does not parse");
    err = gerr(rc, EST_ERR_MALFORMED);
    goto out;
  }
  if (cdn.size != csr->subj_len ||
      memcmp(cdn.data, csr->der + csr->subj_off, cdn.size) != 0) {
    if (gnutls_x509_crt_get_dn3(crt, &s1, 0) < 0 ||
        gnutls_x509_crq_get_dn3(csr->crq, &s2, 0) < 0 ||
        datum_cmp(&s1, &s2) != 0) {
      diag_set(diag, diag_len,
               "subject differs from the authenticating certificate");
      err = EST_ERR_SUBJECT_MISMATCH;
      goto out;
    }
  }

  rc = gnutls_x509_crt_get_extension_by_oid2(crt, OID_SAN, 0, &csan, &crit);
  if (rc < 0 && rc != GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE) {
    err = gerr(rc, EST_ERR_MALFORMED);
    goto out;
  }
  rc = gnutls_x509_crq_get_extension_by_oid2(csr->crq, OID_SAN, 0, &rsan,
                                             &crit);
  if (rc < 0 && rc != GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE) {
    err = gerr(rc, EST_ERR_MALFORMED);
    goto out;
  }
  err = san_items(&csan, &cs, &ci, &cn);
  if (err != EST_OK) {
    diag_set(diag, diag_len, "certificate subjectAltName does not parse");
    goto out;
  }
  err = san_items(&rsan, &rs, &ri, &rn);
  if (err != EST_OK) {
    diag_set(diag, diag_len, "CSR subjectAltName does not parse");
    goto out;
  }
  bool same = cn == rn;
  for (size_t i = 0; same && i < cn; i++)
    same = san_cmp(&ci[i], &ri[i]) == 0;
  if (!same) {
    diag_set(diag, diag_len,
             "subjectAltName differs from the authenticating certificate");
    err = EST_ERR_SUBJECT_MISMATCH;
  }
out:
  free(ci);
  free(ri);
  if (cs)
    gnutls_subject_alt_names_deinit(cs);
  if (rs)
    gnutls_subject_alt_names_deinit(rs);
  datum_free(&cdn);
  datum_free(&csan);
  datum_free(&rsan);
  datum_free(&s1);
  datum_free(&s2);
  return err;
}

est_err pki_csr_match_cert(const pki_csr *csr, const uint8_t *cert_der,
                           size_t cert_len, char *diag, size_t diag_len) {
  diag_clear(diag, diag_len);
  est_err err = EST_OK;
  gnutls_x509_crt_t crt = NULL;
  if (!csr) {
    err = EST_ERR_INVALID;
    goto out;
  }
  err = crt_from_der(cert_der, cert_len, &crt);
  if (err == EST_ERR_MALFORMED)
    diag_set(diag, diag_len, "authenticating certificate does not parse");
  if (err == EST_OK)
    err = csr_match(csr, crt, diag, diag_len);
out:
  if (crt)
    gnutls_x509_crt_deinit(crt);
  return err;
}

est_err pki_csr_spki_sha256(const pki_csr *csr, uint8_t out[32]) {
  if (!csr || !out)
    return EST_ERR_INVALID;
  /* The SPKI exactly as the client encoded it, so a retry of the same CSR
   * always hashes the same (docs/decisions.md §7). */
  int rc = gnutls_hash_fast(GNUTLS_DIG_SHA256, csr->der + csr->spki_off,
                            csr->spki_len, out);
  return rc < 0 ? gerr(rc, EST_ERR_PKI) : EST_OK;
}

const uint8_t *pki_csr_der(const pki_csr *csr, size_t *len) {
  *len = csr ? csr->der_len : 0;
  return csr ? csr->der : NULL;
}

const uint8_t *pki_csr_subject_der(const pki_csr *csr, size_t *len) {
  *len = csr ? csr->subj_len : 0;
  return csr ? csr->der + csr->subj_off : NULL;
}

char *pki_csr_subject(const pki_csr *csr) {
  gnutls_datum_t s = {NULL, 0};
  char *str = NULL;
  if (!csr)
    goto out;
  /* GnuTLS has no string for an empty Name; logs get "". */
  if (!csr_subject_empty(csr) && gnutls_x509_crq_get_dn3(csr->crq, &s, 0) < 0)
    goto out;
  str = malloc((size_t)s.size + 1);
  if (!str)
    goto out;
  if (s.size)
    memcpy(str, s.data, s.size);
  str[s.size] = '\0';
out:
  datum_free(&s);
  return str;
}

/* ---- issuance ------------------------------------------------------------- */

/* Build and sign an end-entity certificate from @p crq, whose signature
 * gnutls_x509_crt_set_crq() checks once more. */
static est_err issue_from_crq(pki_ca *ca, gnutls_x509_crq_t crq,
                              bool empty_subject, pki_issued *res) {
  est_err err = EST_OK;
  gnutls_x509_crt_t crt = NULL;
  gnutls_datum_t san = {NULL, 0}, out = {NULL, 0};
  gnutls_subject_alt_names_t sans = NULL;
  uint8_t sn[SERIAL_LEN], ski[KEY_ID_MAX];
  size_t ski_len = sizeof ski;
  unsigned crit = 0, bits = 0;
  int rc;

  long long now = (long long)time(NULL);
  if (now >= ca->not_after) {
    err = EST_ERR_PKI; /* the CA expired after it was loaded */
    goto out;
  }
  long long not_after = now + (long long)ca->cert_days * 86400;
  if (not_after > ca->not_after)
    not_after = ca->not_after;

  rc = gnutls_x509_crt_init(&crt);
  if (rc < 0) {
    crt = NULL;
    err = gerr(rc, EST_ERR_PKI);
    goto out;
  }
  rc = gnutls_x509_crt_set_crq(crt, crq);
  if (rc < 0) {
    err = rc == GNUTLS_E_MEMORY_ERROR ? EST_ERR_NOMEM : EST_ERR_CSR_SIGNATURE;
    goto out;
  }

  /* Only the SAN is taken from the extensionRequest (SEC-14: our policy,
   * not the client's, decides the rest). It must parse. */
  rc = gnutls_x509_crq_get_extension_by_oid2(crq, OID_SAN, 0, &san, &crit);
  if (rc < 0 && rc != GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE) {
    err = gerr(rc, EST_ERR_BAD_CSR);
    goto out;
  }
  bool has_san = rc >= 0;
  if (has_san) {
    rc = gnutls_subject_alt_names_init(&sans);
    if (rc < 0) {
      sans = NULL;
      err = gerr(rc, EST_ERR_PKI);
      goto out;
    }
    rc = gnutls_x509_ext_import_subject_alt_names(&san, sans, 0);
    if (rc < 0) {
      err = gerr(rc, EST_ERR_BAD_CSR);
      goto out;
    }
    /* RFC 5280 §4.2.1.6: an empty SAN is not one; leave it out. */
    unsigned type;
    gnutls_datum_t v, o;
    has_san = gnutls_subject_alt_names_get(sans, 0, &type, &v, &o) >= 0;
  }
  /* RFC 5280 §4.1.2.6: no subject needs a (critical) SAN instead. */
  if (empty_subject && !has_san) {
    err = EST_ERR_BAD_CSR;
    goto out;
  }
  if (has_san) {
    rc = gnutls_x509_crt_set_extension_by_oid(crt, OID_SAN, san.data, san.size,
                                              empty_subject ? 1 : crit);
    if (rc < 0) {
      err = gerr(rc, EST_ERR_PKI);
      goto out;
    }
  }

  /* RFC 5280 §4.1.2.2: positive, at most 20 octets; 16 random bytes with
   * the top byte in 0x01..0x7f keep it at exactly 16. */
  rc = gnutls_rnd(GNUTLS_RND_NONCE, sn, sizeof sn);
  if (rc < 0) {
    err = EST_ERR_PKI;
    goto out;
  }
  sn[0] &= 0x7f;
  if (sn[0] == 0)
    sn[0] = 1;

  unsigned ku = GNUTLS_KEY_DIGITAL_SIGNATURE;
  if (gnutls_x509_crq_get_pk_algorithm(crq, &bits) == GNUTLS_PK_RSA)
    ku |= GNUTLS_KEY_KEY_ENCIPHERMENT;

  if ((rc = gnutls_x509_crt_set_version(crt, 3)) < 0 ||
      (rc = gnutls_x509_crt_set_serial(crt, sn, sizeof sn)) < 0 ||
      (rc = gnutls_x509_crt_set_activation_time(
           crt, (time_t)(now - SKEW_SECONDS))) < 0 ||
      (rc = gnutls_x509_crt_set_expiration_time(crt, (time_t)not_after)) < 0 ||
      (rc = gnutls_x509_crt_set_basic_constraints(crt, 0, -1)) < 0 ||
      (rc = gnutls_x509_crt_set_key_usage(crt, ku)) < 0 ||
      (rc = gnutls_x509_crt_get_key_id(crt, GNUTLS_KEYID_USE_SHA1, ski,
                                       &ski_len)) < 0 ||
      (rc = gnutls_x509_crt_set_subject_key_id(crt, ski, ski_len)) < 0 ||
      (rc = gnutls_x509_crt_set_authority_key_id(crt, ca->aki,
                                                 ca->aki_len)) < 0) {
    err = gerr(rc, EST_ERR_PKI);
    goto out;
  }
  /* RFC 5280 §4.2.1.12: the purposes come from the operator's profile
   * (cert_eku), never from the CSR (docs/decisions.md §13). */
  if ((ca->profile.eku & PKI_EKU_CLIENT_AUTH) &&
      (rc = gnutls_x509_crt_set_key_purpose_oid(crt, GNUTLS_KP_TLS_WWW_CLIENT, 0)) < 0) {
    err = gerr(rc, EST_ERR_PKI);
    goto out;
  }
  if ((ca->profile.eku & PKI_EKU_SERVER_AUTH) &&
      (rc = gnutls_x509_crt_set_key_purpose_oid(crt, GNUTLS_KP_TLS_WWW_SERVER, 0)) < 0) {
    err = gerr(rc, EST_ERR_PKI);
    goto out;
  }
  /* RFC 5280 §4.2.1.13: where a verifier fetches the CRL (crl_url). */
  if (ca->profile.crl_url[0] &&
      (rc = gnutls_x509_crt_set_crl_dist_points(crt, GNUTLS_SAN_URI, ca->profile.crl_url,
                                                0)) < 0) {
    err = gerr(rc, EST_ERR_PKI);
    goto out;
  }

  /* The issuing cert and key are shared with other threads: see top. */
  pthread_mutex_lock(&ca->sign_lock);
  err = token_ready(ca);
  rc = err == EST_OK ? gnutls_x509_crt_privkey_sign(crt, ca->crt, ca->key, ca->dig, 0) : 0;
  if (rc < 0)
    err = token_failed(ca, rc);
  pthread_mutex_unlock(&ca->sign_lock);
  if (err != EST_OK)
    goto out;
  rc = gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_DER, &out);
  if (rc < 0) {
    err = gerr(rc, EST_ERR_PKI);
    goto out;
  }
  /* The last size cap (docs/decisions.md §13); names.c caps what the CSR
   * asks for before this, so only a widened policy gets here. */
  if (out.size > ca->profile.max_cert_bytes) {
    err = EST_ERR_BAD_CSR;
    goto out;
  }
  err = datum_dup(&out, &res->der, &res->der_len);
  if (err == EST_OK) {
    memcpy(res->serial, sn, sizeof sn);
    res->not_before = now - SKEW_SECONDS;
    res->not_after = not_after;
  }
out:
  if (sans)
    gnutls_subject_alt_names_deinit(sans);
  datum_free(&san);
  datum_free(&out);
  if (crt)
    gnutls_x509_crt_deinit(crt);
  return err;
}

void pki_issued_clear(pki_issued *c) {
  if (!c)
    return;
  free(c->der);
  memset(c, 0, sizeof *c);
}

est_err pki_issue(pki_ca *ca, const pki_csr *csr, pki_issued *out) {
  if (!out)
    return EST_ERR_INVALID;
  memset(out, 0, sizeof *out);
  if (!ca || !csr)
    return EST_ERR_INVALID;
  if (!ca->key) /* pki_ca_from_p7: a registrar signs nothing */
    return EST_ERR_CONFIG;
  return issue_from_crq(ca, csr->crq, csr_subject_empty(csr), out);
}

est_err pki_keygen_issue(pki_ca *ca, const pki_csr *csr, pki_key_type type,
                         uint8_t **pkcs8, size_t *pkcs8_len,
                         pki_issued *res) {
  est_err err = EST_OK;
  gnutls_privkey_t key = NULL;
  gnutls_pubkey_t pub = NULL;
  gnutls_x509_privkey_t xkey = NULL;
  gnutls_x509_crq_t crq = NULL;
  gnutls_datum_t p8 = {NULL, 0};
  uint8_t *key_out = NULL;
  size_t key_out_len = 0;
  pki_issued issued = {0};
  gnutls_pk_algorithm_t alg;
  unsigned bits;
  int rc;

  if (!ca || !csr || !pkcs8 || !pkcs8_len || !res) {
    err = EST_ERR_INVALID;
    goto out;
  }
  *pkcs8 = NULL;
  *pkcs8_len = 0;
  memset(res, 0, sizeof *res);
  if (!ca->key) { /* pki_ca_from_p7: a registrar signs nothing */
    err = EST_ERR_CONFIG;
    goto out;
  }
  switch (type) {
  case PKI_KEY_EC_P256:
    alg = GNUTLS_PK_ECDSA;
    bits = GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1);
    break;
  case PKI_KEY_RSA_2048:
    alg = GNUTLS_PK_RSA;
    bits = 2048;
    break;
  case PKI_KEY_RSA_3072:
    alg = GNUTLS_PK_RSA;
    bits = 3072;
    break;
  case PKI_KEY__MAX:
  default:
    err = EST_ERR_INVALID;
    goto out;
  }

  if ((rc = gnutls_privkey_init(&key)) < 0) {
    key = NULL;
    err = gerr(rc, EST_ERR_PKI);
    goto out;
  }
  if ((rc = gnutls_privkey_generate2(key, alg, bits, 0, NULL, 0)) < 0) {
    err = gerr(rc, EST_ERR_PKI);
    goto out;
  }
  if ((rc = gnutls_pubkey_init(&pub)) < 0) {
    pub = NULL;
    err = gerr(rc, EST_ERR_PKI);
    goto out;
  }
  if ((rc = gnutls_pubkey_import_privkey(pub, key, 0, 0)) < 0) {
    err = gerr(rc, EST_ERR_PKI);
    goto out;
  }

  /* SKG-2 (RFC 9148 §4.8): the CSR's key and signature are ignored. A copy
   * of the request with the new key, signed by it, keeps the subject and
   * attributes exactly and lets the normal issuance path run. */
  if ((rc = gnutls_x509_crq_init(&crq)) < 0) {
    crq = NULL;
    err = gerr(rc, EST_ERR_PKI);
    goto out;
  }
  gnutls_datum_t d = {csr->der, (unsigned)csr->der_len};
  if ((rc = gnutls_x509_crq_import(crq, &d, GNUTLS_X509_FMT_DER)) < 0 ||
      (rc = gnutls_x509_crq_set_pubkey(crq, pub)) < 0 ||
      (rc = gnutls_x509_crq_privkey_sign(crq, key, GNUTLS_DIG_SHA256, 0)) <
          0) {
    err = gerr(rc, EST_ERR_PKI);
    goto out;
  }
  err = issue_from_crq(ca, crq, csr_subject_empty(csr), &issued);
  if (err != EST_OK)
    goto out;

  /* RFC 9148 §4.8 / RFC 5958: unencrypted PKCS#8 PrivateKeyInfo (CF 284). */
  if ((rc = gnutls_privkey_export_x509(key, &xkey)) < 0) {
    xkey = NULL;
    err = gerr(rc, EST_ERR_PKI);
    goto out;
  }
  if ((rc = gnutls_x509_privkey_export2_pkcs8(xkey, GNUTLS_X509_FMT_DER, NULL,
                                              GNUTLS_PKCS_PLAIN, &p8)) < 0) {
    err = gerr(rc, EST_ERR_PKI);
    goto out;
  }
  err = datum_dup(&p8, &key_out, &key_out_len);
  if (err != EST_OK)
    goto out;

  *pkcs8 = key_out;
  *pkcs8_len = key_out_len;
  *res = issued;
  memset(&issued, 0, sizeof issued);
  key_out = NULL;
out:
  datum_wipe_free(&p8);
  pki_secret_free(key_out, key_out_len);
  pki_issued_clear(&issued);
  if (xkey)
    gnutls_x509_privkey_deinit(xkey);
  if (crq)
    gnutls_x509_crq_deinit(crq);
  if (pub)
    gnutls_pubkey_deinit(pub);
  if (key)
    gnutls_privkey_deinit(key);
  return err;
}

est_err pki_p7_certs_only(const uint8_t *cert, size_t cert_len, uint8_t **p7,
                          size_t *p7_len) {
  est_err err = EST_OK;
  gnutls_x509_crt_t crt = NULL;
  if (!p7 || !p7_len) {
    err = EST_ERR_INVALID;
    goto out;
  }
  *p7 = NULL;
  *p7_len = 0;
  err = crt_from_der(cert, cert_len, &crt);
  if (err == EST_OK)
    err = p7_of(&crt, 1, p7, p7_len);
out:
  if (crt)
    gnutls_x509_crt_deinit(crt);
  return err;
}

/* ---- read-only looks at certificates, for logs and the store ---- */

char *pki_cert_subject(const uint8_t *der, size_t len) {
  gnutls_x509_crt_t crt;
  gnutls_datum_t dn = {NULL, 0};
  char *out = NULL;
  if (crt_from_der(der, len, &crt) != EST_OK)
    return NULL;
  /* The same RFC 4514 rendering as pki_csr_subject(), so pre-authorised
   * subjects compare byte for byte. */
  if (gnutls_x509_crt_get_dn3(crt, &dn, 0) >= 0 && dn.data) {
    out = malloc(dn.size + 1);
    if (out) {
      memcpy(out, dn.data, dn.size);
      out[dn.size] = '\0';
    }
  }
  gnutls_free(dn.data);
  gnutls_x509_crt_deinit(crt);
  return out;
}

est_err pki_cert_serial_hex(const uint8_t *der, size_t len, char *out, size_t out_len) {
  static const char digits[] = "0123456789abcdef";
  gnutls_x509_crt_t crt;
  uint8_t sn[PKI_SERIAL_MAX + 1]; /* and a sign octet */
  size_t n = sizeof sn, i = 0;
  est_err rc = crt_from_der(der, len, &crt);
  if (rc != EST_OK)
    return rc;
  if (gnutls_x509_crt_get_serial(crt, sn, &n) < 0 || n == 0) {
    rc = EST_ERR_MALFORMED;
    goto out;
  }
  /* DER INTEGER: a leading 0x00 only keeps a serial positive. */
  while (i + 1 < n && sn[i] == 0)
    i++;
  if (out_len < 2 * (n - i) + 1) {
    rc = EST_ERR_TOO_LARGE;
    goto out;
  }
  for (size_t k = i; k < n; k++) {
    out[2 * (k - i)] = digits[sn[k] >> 4];
    out[2 * (k - i) + 1] = digits[sn[k] & 0x0f];
  }
  out[2 * (n - i)] = '\0';
out:
  gnutls_x509_crt_deinit(crt);
  return rc;
}

/* crlasn's signer: the TBSCertList again, with the CA key, under the
 * algorithm GnuTLS chose for the CRL. */
static est_err crl_resign(void *ctx, const char *sig_oid, const uint8_t *tbs, size_t len,
                          uint8_t **sig, size_t *sig_len) {
  pki_ca *ca = ctx;
  gnutls_datum_t data = {(unsigned char *)(uintptr_t)tbs, (unsigned)len}, out = {NULL, 0};
  gnutls_sign_algorithm_t algo = gnutls_oid_to_sign(sig_oid);
  if (algo == GNUTLS_SIGN_UNKNOWN)
    return EST_ERR_PKI;
  /* The caller holds sign_lock. */
  int rc = gnutls_privkey_sign_data2(ca->key, algo, 0, &data, &out);
  if (rc < 0)
    return gerr(rc, EST_ERR_PKI);
  *sig = malloc(out.size ? out.size : 1);
  if (!*sig) {
    gnutls_free(out.data);
    return EST_ERR_NOMEM;
  }
  memcpy(*sig, out.data, out.size);
  *sig_len = out.size;
  gnutls_free(out.data);
  return EST_OK;
}

est_err pki_crl_sign(pki_ca *ca, const pki_crl_entry *e, size_t n, uint64_t number,
                     long long this_update, long long next_update, uint8_t **der,
                     size_t *der_len) {
  est_err err = EST_OK;
  gnutls_x509_crl_t crl = NULL;
  gnutls_datum_t d = {NULL, 0};
  crlasn_reason *reasons = NULL;
  size_t nreasons = 0;
  uint8_t num[8];
  size_t nlen = 0;
  int rc;

  *der = NULL;
  *der_len = 0;
  if (!ca || (n && !e) || number == 0 || next_update <= this_update)
    return EST_ERR_INVALID;
  if (!ca->key) /* pki_ca_from_p7: a registrar signs nothing */
    return EST_ERR_CONFIG;
  if (n) {
    reasons = calloc(n, sizeof *reasons);
    if (!reasons)
      return EST_ERR_NOMEM;
  }
  if ((rc = gnutls_x509_crl_init(&crl)) < 0) {
    crl = NULL;
    err = gerr(rc, EST_ERR_PKI);
    goto out;
  }
  /* RFC 5280 §5.1.2.1: v2, for the extensions. */
  if ((rc = gnutls_x509_crl_set_version(crl, 2)) < 0 ||
      (rc = gnutls_x509_crl_set_this_update(crl, (time_t)this_update)) < 0 ||
      (rc = gnutls_x509_crl_set_next_update(crl, (time_t)next_update)) < 0) {
    err = gerr(rc, EST_ERR_PKI);
    goto out;
  }
  for (size_t i = 0; i < n; i++) {
    if (e[i].serial_len == 0 || e[i].serial_len > sizeof e[i].serial) {
      err = EST_ERR_INVALID;
      goto out;
    }
    rc = gnutls_x509_crl_set_crt_serial(crl, e[i].serial, e[i].serial_len,
                                        (time_t)e[i].revoked_at);
    if (rc < 0) {
      err = gerr(rc, EST_ERR_PKI);
      goto out;
    }
    /* RFC 5280 §5.3.1: "unspecified" is said by leaving the code out. */
    if (e[i].reason != 0)
      reasons[nreasons++] = (crlasn_reason){e[i].serial, e[i].serial_len, e[i].reason};
  }
  /* RFC 5280 §5.2.3: cRLNumber, a positive INTEGER, big-endian. */
  for (int sh = 56; sh >= 0; sh -= 8)
    if (nlen || (uint8_t)(number >> sh) || sh == 0)
      num[nlen++] = (uint8_t)(number >> sh);
  if ((rc = gnutls_x509_crl_set_number(crl, num, nlen)) < 0 ||
      (ca->aki_len && (rc = gnutls_x509_crl_set_authority_key_id(crl, ca->aki, ca->aki_len)) < 0)) {
    err = gerr(rc, EST_ERR_PKI);
    goto out;
  }
  pthread_mutex_lock(&ca->sign_lock);
  err = token_ready(ca);
  if (err != EST_OK) {
    pthread_mutex_unlock(&ca->sign_lock);
    goto out;
  }
  rc = gnutls_x509_crl_privkey_sign(crl, ca->crt, ca->key, ca->dig, 0);
  if (rc < 0 && token_failed(ca, rc) == EST_ERR_UNAVAILABLE) {
    pthread_mutex_unlock(&ca->sign_lock);
    err = EST_ERR_UNAVAILABLE;
    goto out;
  }
  if (rc >= 0)
    rc = gnutls_x509_crl_export2(crl, GNUTLS_X509_FMT_DER, &d);
  if (rc >= 0 && nreasons)
    err = crlasn_add_reasons(d.data, d.size, reasons, nreasons, crl_resign, ca, der, der_len);
  pthread_mutex_unlock(&ca->sign_lock);
  if (rc < 0) {
    err = gerr(rc, EST_ERR_PKI);
    goto out;
  }
  if (err == EST_OK && !nreasons) {
    *der = malloc(d.size);
    if (!*der) {
      err = EST_ERR_NOMEM;
      goto out;
    }
    memcpy(*der, d.data, d.size);
    *der_len = d.size;
  }
out:
  gnutls_free(d.data);
  free(reasons);
  if (crl)
    gnutls_x509_crl_deinit(crl);
  return err;
}

bool pki_ca_issued(const pki_ca *ca, const uint8_t *der, size_t len, long long now) {
  const uint8_t *chain[1] = {der};
  size_t lens[1] = {len};
  pki_client_class cls = PKI_CLIENT_UNKNOWN;
  return pki_client_classify(ca, NULL, chain, lens, 1, now, 0, &cls, NULL) == EST_OK &&
         cls == PKI_CLIENT_LDEVID;
}

est_err pki_sha256(const uint8_t *data, size_t len, uint8_t out[32]) {
  return gnutls_hash_fast(GNUTLS_DIG_SHA256, data, len, out) < 0 ? EST_ERR_TLS : EST_OK;
}

/* ---- a CA known by its certificates (registrar, docs/decisions.md §19) ---- */

/* The certificates of a DER PKCS#7 (at most PKI_P7_MAX bytes, PKI_P7_CERTS_MAX certificates). */
#define PKI_P7_MAX 65536u
#define PKI_P7_CERTS_MAX 16u

static est_err p7_certs(const uint8_t *p7, size_t len, gnutls_x509_crt_t *crts, unsigned *n) {
  est_err err = EST_OK;
  gnutls_pkcs7_t pk = NULL;
  *n = 0;
  if (!p7 || len == 0 || len > PKI_P7_MAX)
    return EST_ERR_MALFORMED;
  if (gnutls_pkcs7_init(&pk) < 0)
    return EST_ERR_NOMEM;
  gnutls_datum_t d = {(unsigned char *)(uintptr_t)p7, (unsigned)len};
  int count;
  if (gnutls_pkcs7_import(pk, &d, GNUTLS_X509_FMT_DER) < 0 ||
      (count = gnutls_pkcs7_get_crt_count(pk)) <= 0 || count > (int)PKI_P7_CERTS_MAX) {
    err = EST_ERR_MALFORMED;
    goto out;
  }
  for (int i = 0; i < count; i++) {
    gnutls_datum_t c = {NULL, 0};
    if (gnutls_pkcs7_get_crt_raw2(pk, (unsigned)i, &c) < 0) {
      err = EST_ERR_MALFORMED;
      goto out;
    }
    err = crt_from_der(c.data, c.size, &crts[*n]);
    gnutls_free(c.data);
    if (err != EST_OK)
      goto out;
    (*n)++;
  }
out:
  if (err != EST_OK) {
    for (unsigned i = 0; i < *n; i++)
      gnutls_x509_crt_deinit(crts[i]);
    *n = 0;
  }
  gnutls_pkcs7_deinit(pk);
  return err;
}

static bool crt_is_ca(gnutls_x509_crt_t c) {
  unsigned crit = 0;
  return gnutls_x509_crt_get_basic_constraints(c, &crit, NULL, NULL) > 0;
}

est_err pki_ca_from_p7(const uint8_t *p7, size_t len, pki_ca **out, char *diag,
                       size_t diag_len) {
  diag_clear(diag, diag_len);
  est_err err = EST_OK;
  gnutls_x509_crt_t crts[PKI_P7_CERTS_MAX];
  unsigned n = 0;
  pki_ca *ca = NULL;
  gnutls_datum_t d = {NULL, 0};
  if (!out)
    return EST_ERR_INVALID;
  *out = NULL;
  err = p7_certs(p7, len, crts, &n);
  if (err != EST_OK) {
    diag_set(diag, diag_len, "not a DER PKCS#7 with 1..%u certificates", PKI_P7_CERTS_MAX);
    goto out;
  }
  /* The issuing CA: one that issued no other CA of the set. DER sorts a
   * SET OF by encoding, so the root often comes first. */
  unsigned first = n;
  for (unsigned i = 0; i < n && first == n; i++) {
    bool issued_ca = false;
    for (unsigned k = 0; k < n && crt_is_ca(crts[i]) && !issued_ca; k++)
      issued_ca = k != i && crt_is_ca(crts[k]) &&
                  gnutls_x509_crt_check_issuer(crts[k], crts[i]) == 1 &&
                  gnutls_x509_crt_check_issuer(crts[k], crts[k]) != 1;
    if (crt_is_ca(crts[i]) && !issued_ca)
      first = i;
  }
  if (first == n) {
    diag_set(diag, diag_len, "no CA certificate (basicConstraints CA:TRUE) among the %u", n);
    err = EST_ERR_MALFORMED;
    goto out;
  }
  ca = calloc(1, sizeof *ca);
  if (!ca) {
    err = EST_ERR_NOMEM;
    goto out;
  }
  atomic_init(&ca->refs, 1u);
  ca->profile.eku = PKI_EKU_CLIENT_AUTH;
  ca->profile.max_cert_bytes = PKI_CERT_MAX;
  ca->p7 = malloc(len);
  if (!ca->p7) {
    err = EST_ERR_NOMEM;
    goto out;
  }
  /* crts answers with the upstream's own bytes. */
  memcpy(ca->p7, p7, len);
  ca->p7_len = len;
  if (gnutls_x509_crt_export2(crts[first], GNUTLS_X509_FMT_DER, &d) < 0 ||
      (err = datum_dup(&d, &ca->der, &ca->der_len)) != EST_OK) {
    err = err != EST_OK ? err : EST_ERR_PKI;
    goto out;
  }
  ca->not_after = (long long)gnutls_x509_crt_get_expiration_time(crts[first]);
  /* The bag: every certificate (a client whose chain ends in one of them
   * is an LDevID of this CA). */
  ca->bag = calloc(1, sizeof *ca->bag);
  if (!ca->bag || !(ca->bag->lock = malloc(sizeof *ca->bag->lock))) {
    err = EST_ERR_NOMEM;
    goto out;
  }
  if (pthread_mutex_init(ca->bag->lock, NULL) != 0) {
    free(ca->bag->lock);
    ca->bag->lock = NULL;
    err = EST_ERR_INTERNAL;
    goto out;
  }
  if (gnutls_x509_trust_list_init(&ca->bag->tl, 0) < 0) {
    ca->bag->tl = NULL;
    err = EST_ERR_TLS;
    goto out;
  }
  unsigned nb = 0;
  for (unsigned i = 0; i < n; i++) {
    if (!crt_is_ca(crts[i]))
      continue;
    /* The list owns what it took (freed by pki_trust_free). */
    if (gnutls_x509_trust_list_add_cas(ca->bag->tl, &crts[i], 1, 0) != 1) {
      err = EST_ERR_TLS;
      goto out;
    }
    crts[i] = NULL;
    nb++;
  }
  ca->count = nb;
  *out = ca;
  ca = NULL;
out:
  datum_free(&d);
  for (unsigned i = 0; i < n; i++)
    if (crts[i])
      gnutls_x509_crt_deinit(crts[i]);
  pki_ca_free(ca);
  return err;
}

bool pki_ca_can_sign(const pki_ca *ca) { return ca && ca->key; }

est_err pki_p7_end_entity(const uint8_t *p7, size_t len, uint8_t **cert, size_t *cert_len) {
  gnutls_x509_crt_t crts[PKI_P7_CERTS_MAX];
  unsigned n = 0, ee = 0, at = 0;
  gnutls_datum_t d = {NULL, 0};
  *cert = NULL;
  *cert_len = 0;
  est_err err = p7_certs(p7, len, crts, &n);
  if (err != EST_OK)
    return err;
  for (unsigned i = 0; i < n; i++)
    if (!crt_is_ca(crts[i])) {
      ee++;
      at = i;
    }
  /* RFC 7030 §4.2.3: the one certificate issued; the rest may be its chain. */
  if (ee != 1)
    err = EST_ERR_MALFORMED;
  else if (gnutls_x509_crt_export2(crts[at], GNUTLS_X509_FMT_DER, &d) < 0)
    err = EST_ERR_MALFORMED;
  else
    err = datum_dup(&d, cert, cert_len);
  datum_free(&d);
  for (unsigned i = 0; i < n; i++)
    gnutls_x509_crt_deinit(crts[i]);
  return err;
}

est_err pki_issued_from_der(const uint8_t *der, size_t len, pki_issued *out) {
  gnutls_x509_crt_t crt = NULL;
  memset(out, 0, sizeof *out);
  if (!der || len == 0 || len > PKI_CERT_MAX)
    return EST_ERR_MALFORMED;
  est_err err = crt_from_der(der, len, &crt);
  if (err != EST_OK)
    return err;
  time_t nb = gnutls_x509_crt_get_activation_time(crt);
  time_t na = gnutls_x509_crt_get_expiration_time(crt);
  gnutls_x509_crt_deinit(crt);
  if (nb == (time_t)-1 || na == (time_t)-1)
    return EST_ERR_MALFORMED;
  out->der = malloc(len);
  if (!out->der)
    return EST_ERR_NOMEM;
  memcpy(out->der, der, len);
  out->der_len = len;
  out->not_before = (long long)nb;
  out->not_after = (long long)na;
  return EST_OK;
}

/* The DER SubjectPublicKeyInfo of @p pub (malloc). */
static est_err spki_of(gnutls_pubkey_t pub, gnutls_datum_t *out) {
  return gnutls_pubkey_export2(pub, GNUTLS_X509_FMT_DER, out) < 0 ? EST_ERR_PKI : EST_OK;
}

static est_err cert_spki(const uint8_t *der, size_t len, gnutls_datum_t *out) {
  gnutls_x509_crt_t crt = NULL;
  gnutls_pubkey_t pub = NULL;
  est_err err = crt_from_der(der, len, &crt);
  if (err != EST_OK)
    return err;
  if (gnutls_pubkey_init(&pub) < 0 || gnutls_pubkey_import_x509(pub, crt, 0) < 0)
    err = EST_ERR_MALFORMED;
  else
    err = spki_of(pub, out);
  if (pub)
    gnutls_pubkey_deinit(pub);
  gnutls_x509_crt_deinit(crt);
  return err;
}

bool pki_cert_key_is_csr(const uint8_t *der, size_t len, const pki_csr *csr) {
  gnutls_datum_t a = {NULL, 0};
  bool same = csr && cert_spki(der, len, &a) == EST_OK && a.size == csr->spki_len &&
              memcmp(a.data, csr->der + csr->spki_off, a.size) == 0;
  datum_free(&a);
  return same;
}

bool pki_cert_key_is(const uint8_t *der, size_t len, const uint8_t *pkcs8, size_t pkcs8_len) {
  gnutls_datum_t a = {NULL, 0}, b = {NULL, 0};
  gnutls_x509_privkey_t xk = NULL;
  gnutls_privkey_t k = NULL;
  gnutls_pubkey_t pub = NULL;
  bool same = false;
  gnutls_datum_t in = {(unsigned char *)(uintptr_t)pkcs8, (unsigned)pkcs8_len};
  if (!pkcs8 || pkcs8_len == 0 || pkcs8_len > PKI_CSR_MAX || cert_spki(der, len, &a) != EST_OK)
    goto out;
  if (gnutls_x509_privkey_init(&xk) < 0) {
    xk = NULL;
    goto out;
  }
  if (gnutls_x509_privkey_import_pkcs8(xk, &in, GNUTLS_X509_FMT_DER, NULL,
                                       GNUTLS_PKCS_PLAIN) < 0)
    goto out;
  if (gnutls_privkey_init(&k) < 0) {
    k = NULL;
    goto out;
  }
  if (gnutls_privkey_import_x509(k, xk, GNUTLS_PRIVKEY_IMPORT_AUTO_RELEASE) < 0)
    goto out;
  xk = NULL; /* k owns it */
  if (gnutls_pubkey_init(&pub) < 0) {
    pub = NULL;
    goto out;
  }
  if (gnutls_pubkey_import_privkey(pub, k, 0, 0) < 0 || spki_of(pub, &b) != EST_OK)
    goto out;
  same = a.size == b.size && memcmp(a.data, b.data, a.size) == 0;
out:
  datum_free(&a);
  datum_free(&b);
  if (pub)
    gnutls_pubkey_deinit(pub);
  if (k)
    gnutls_privkey_deinit(k);
  if (xk)
    gnutls_x509_privkey_deinit(xk);
  return same;
}
