/* The operator command layer (ctl.h): one implementation of every operator
 * command, used by both estctl and the Mosquitto broker plugin. The envelope
 * and reply follow Mosquitto's dynamic-security control topic format
 * (docs/mosquitto-2.0.11.md §0, "$CONTROL/<plugin>/v1"):
 *   {"commands":[{"command":..., ..., "correlationData":...}]}
 *   {"responses":[{"command":..., "data"|"error":..., "correlationData":...}]}
 * Every input is typed strictly and capped; nothing here writes SQL, all
 * state goes through store.h. */
#define _POSIX_C_SOURCE 200809L

#include "ctl.h"

#include "common/crlreason.h"

#include <arpa/inet.h>
#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Newest audit rows listAudit returns when no limit is given, and the most
 * it returns at all (one reply must stay a reasonable MQTT payload). */
#define CTL_AUDIT_DEFAULT 100u
#define CTL_AUDIT_MAX 10000u
/* Largest integer a JSON number carries exactly (2^53 - 1). */
#define CTL_ID_MAX 9007199254740991.0
/* Longest command name echoed inside an error text. */
#define CTL_NAME_ECHO 64
/* Most SANs one request object lists, and the longest value of one. */
#define CTL_SANS_MAX 64u
#define CTL_SAN_LEN 1024u
/* olderThan/newerThan: at most 100 years, in seconds. */
#define CTL_AGE_MAX 3155760000LL
/* Error texts: room for a value at STORE_MAX_TEXT plus the words. */
#define CTL_ERR_LEN (STORE_MAX_TEXT + 256u)

typedef struct errbuf {
  char msg[CTL_ERR_LEN];
} errbuf;

static est_err seterr(errbuf *e, est_err rc, const char *fmt, ...)
  __attribute__((format(printf, 3, 4)));

static est_err seterr(errbuf *e, est_err rc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(e->msg, sizeof e->msg, fmt, ap);
  va_end(ap);
  return rc;
}

/* A store failure that has no better wording at the call site: the est_err
 * text plus the store's one-line detail. */
static est_err store_err(const ctl_ctx *c, errbuf *e, est_err rc,
                         const char *what) {
  const char *detail = store_errmsg(c->s);
  switch (rc) {
  case EST_ERR_BUSY:
    return seterr(e, rc, "database is busy, try again");
  case EST_ERR_NOMEM:
    return seterr(e, rc, "out of memory");
  default:
    break;
  }
  if (detail != NULL && detail[0] != '\0')
    return seterr(e, rc, "%s: %s (%s)", what, est_strerror(rc), detail);
  return seterr(e, rc, "%s: %s", what, est_strerror(rc));
}

/* ------------------------------------------------------------ times */

void ctl_time_iso(long long t, char *buf, size_t len) {
  /* Four-digit years only: 0000-01-01 .. 9999-12-31T23:59:59Z. */
  const long long lo = -62167219200LL, hi = 253402300799LL;
  struct tm tm;
  time_t tt;
  if (buf == NULL || len == 0)
    return;
  if (t < lo)
    t = lo;
  if (t > hi)
    t = hi;
  tt = (time_t)t;
  if (gmtime_r(&tt, &tm) == NULL) {
    snprintf(buf, len, "1970-01-01T00:00:00Z");
    return;
  }
  snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900,
           tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* ------------------------------------------------------------ JSON views */

/* All adders return false when out of memory; callers check once at the end
 * of an object with `ok &= ...`. */
static bool add_time(cJSON *o, const char *name, int64_t t) {
  char buf[32];
  ctl_time_iso((long long)t, buf, sizeof buf);
  return cJSON_AddStringToObject(o, name, buf) != NULL;
}

static bool add_opt_time(cJSON *o, const char *name, int64_t t) {
  if (t == 0)
    return cJSON_AddNullToObject(o, name) != NULL;
  return add_time(o, name, t);
}

static bool add_opt_str(cJSON *o, const char *name, const char *v) {
  if (v == NULL)
    return cJSON_AddNullToObject(o, name) != NULL;
  return cJSON_AddStringToObject(o, name, v) != NULL;
}

static bool add_int(cJSON *o, const char *name, int64_t v) {
  return cJSON_AddNumberToObject(o, name, (double)v) != NULL;
}

static bool add_opt_int(cJSON *o, const char *name, int64_t v) {
  if (v == 0)
    return cJSON_AddNullToObject(o, name) != NULL;
  return add_int(o, name, v);
}

static cJSON *finish(cJSON *o, bool ok) {
  if (!ok) {
    cJSON_Delete(o);
    return NULL;
  }
  return o;
}

static bool utf8_valid(const unsigned char *p);

static void hex_lower(const uint8_t *in, size_t n, char *out) {
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = digits[in[i] >> 4];
    out[2 * i + 1] = digits[in[i] & 0x0f];
  }
  out[2 * n] = '\0';
}

/* One SAN as {type, value}: RFC 5280 §4.2.1.6 names; text that is not
 * printable UTF-8 (or other kinds) as "#" and hex. */
static cJSON *san_json(unsigned type, const unsigned char *v, size_t len) {
  char text[2 * CTL_SAN_LEN + 2];
  const char *name;
  bool as_text = true;
  switch (type) {
  case GNUTLS_SAN_DNSNAME:
    name = "dns";
    break;
  case GNUTLS_SAN_RFC822NAME:
    name = "email";
    break;
  case GNUTLS_SAN_URI:
    name = "uri";
    break;
  case GNUTLS_SAN_IPADDRESS:
    name = "ip";
    as_text = false;
    if ((len == 4 && inet_ntop(AF_INET, v, text, sizeof text) != NULL) ||
        (len == 16 && inet_ntop(AF_INET6, v, text, sizeof text) != NULL))
      goto done;
    break;
  case GNUTLS_SAN_DN:
    name = "dirName";
    as_text = false;
    {
      gnutls_datum_t in = {(unsigned char *)(uintptr_t)v, (unsigned)len}, str = {NULL, 0};
      bool ok = gnutls_x509_rdn_get2(&in, &str, 0) >= 0 && str.data != NULL &&
                str.size < sizeof text;
      if (ok) {
        memcpy(text, str.data, str.size);
        text[str.size] = '\0';
      }
      gnutls_free(str.data);
      if (ok)
        goto done;
    }
    break;
  case GNUTLS_SAN_REGISTERED_ID:
    name = "registeredID";
    break;
  default:
    name = "otherName";
    as_text = false;
    break;
  }
  if (as_text && len < sizeof text && memchr(v, '\0', len) == NULL) {
    memcpy(text, v, len);
    text[len] = '\0';
    bool printable = utf8_valid((const unsigned char *)text);
    for (size_t i = 0; printable && i < len; i++)
      printable = (unsigned char)text[i] >= 0x20 && text[i] != 0x7f;
    if (printable)
      goto done;
  }
  if (len > CTL_SAN_LEN)
    len = CTL_SAN_LEN;
  text[0] = '#';
  hex_lower(v, len, text + 1);
done:;
  cJSON *o = cJSON_CreateObject();
  bool ok = o != NULL && cJSON_AddStringToObject(o, "type", name) != NULL &&
            cJSON_AddStringToObject(o, "value", text) != NULL;
  return finish(o, ok);
}

/* What the stored CSR asks for (RFC 2986): its SANs and its key. The
 * members are null when the CSR does not parse. */
static bool add_csr_info(cJSON *o, const uint8_t *der, size_t len) {
  gnutls_x509_crq_t crq = NULL;
  cJSON *sans = NULL;
  const char *type = NULL;
  char curve[32] = "";
  unsigned bits = 0;
  bool ok = true, parsed = false;
  if (der != NULL && len > 0 && len <= STORE_MAX_CSR &&
      gnutls_x509_crq_init(&crq) >= 0) {
    gnutls_datum_t d = {(unsigned char *)(uintptr_t)der, (unsigned)len};
    parsed = gnutls_x509_crq_import(crq, &d, GNUTLS_X509_FMT_DER) >= 0;
  }
  if (parsed && (sans = cJSON_CreateArray()) == NULL)
    ok = false;
  for (unsigned i = 0; parsed && ok && i < CTL_SANS_MAX; i++) {
    unsigned char buf[CTL_SAN_LEN];
    size_t n = sizeof buf;
    unsigned san_type = 0, critical = 0;
    int r = gnutls_x509_crq_get_subject_alt_name(crq, i, buf, &n, &san_type, &critical);
    if (r == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
      break;
    if (r == GNUTLS_E_SHORT_MEMORY_BUFFER)
      continue; /* over the cap: not shown */
    if (r < 0)
      break;
    cJSON *one = san_json((unsigned)r, buf, n);
    if (one == NULL || !cJSON_AddItemToArray(sans, one)) {
      cJSON_Delete(one);
      ok = false;
    }
  }
  if (parsed) {
    int pk = gnutls_x509_crq_get_pk_algorithm(crq, &bits);
    switch (pk) {
    case GNUTLS_PK_RSA:
      type = "rsa";
      break;
    case GNUTLS_PK_RSA_PSS:
      type = "rsa-pss";
      break;
    case GNUTLS_PK_DSA:
      type = "dsa";
      break;
    case GNUTLS_PK_ECDSA: {
      gnutls_ecc_curve_t c = GNUTLS_ECC_CURVE_INVALID;
      gnutls_datum_t x = {NULL, 0}, y = {NULL, 0};
      gnutls_pubkey_t pub = NULL;
      type = "ec";
      if (gnutls_pubkey_init(&pub) >= 0 && gnutls_pubkey_import_x509_crq(pub, crq, 0) >= 0 &&
          gnutls_pubkey_export_ecc_raw(pub, &c, &x, &y) >= 0) {
        const char *cn = gnutls_ecc_curve_get_name(c);
        for (size_t i = 0; cn != NULL && cn[i] != '\0' && i + 1 < sizeof curve; i++) {
          curve[i] = (char)(cn[i] >= 'A' && cn[i] <= 'Z' ? cn[i] - 'A' + 'a' : cn[i]);
          curve[i + 1] = '\0';
        }
      }
      gnutls_free(x.data);
      gnutls_free(y.data);
      gnutls_pubkey_deinit(pub);
      break;
    }
    case GNUTLS_PK_EDDSA_ED25519:
      type = "ed25519";
      break;
    case GNUTLS_PK_EDDSA_ED448:
      type = "ed448";
      break;
    default:
      type = pk < 0 ? NULL : "other";
      break;
    }
  }
  gnutls_x509_crq_deinit(crq);
  if (sans != NULL) {
    if (ok && !cJSON_AddItemToObject(o, "sans", sans))
      ok = false;
    if (!ok)
      cJSON_Delete(sans);
  } else {
    ok &= cJSON_AddNullToObject(o, "sans") != NULL;
  }
  ok &= add_opt_str(o, "keyType", type);
  ok &= add_opt_int(o, "keyBits", type != NULL ? (int64_t)bits : 0);
  ok &= add_opt_str(o, "keyCurve", curve[0] != '\0' ? curve : NULL);
  return ok;
}

/* The request object; certSerial is the serial of the certificate issued
 * for it (the row only holds cert_id), or NULL. */
static cJSON *request_json(const store_request *r, const char *cert_serial) {
  cJSON *o = cJSON_CreateObject();
  bool ok = o != NULL;
  if (!ok || r == NULL)
    return finish(o, ok && r != NULL);
  ok &= add_int(o, "id", r->id);
  ok &= cJSON_AddStringToObject(o, "state", store_state_name(r->state)) != NULL;
  ok &= cJSON_AddStringToObject(o, "function", store_fn_name(r->function)) !=
        NULL;
  ok &= add_opt_str(o, "subject", r->subject);
  ok &= add_opt_str(o, "client", r->client);
  ok &= add_opt_str(o, "clientClass",
                    store_client_class_name(r->client_class));
  ok &= add_time(o, "created", r->created);
  ok &= add_time(o, "updated", r->updated);
  ok &= add_opt_time(o, "expires", r->expires);
  ok &= add_opt_str(o, "reason", r->reason);
  ok &= add_opt_str(o, "certSerial", cert_serial);
  /* What the approver decides on (docs/decisions.md §15). */
  char fp[2 * STORE_SHA256_LEN + 1];
  hex_lower(r->client_fp, STORE_SHA256_LEN, fp);
  ok &= add_opt_str(o, "clientSerial", r->client_serial);
  ok &= cJSON_AddStringToObject(o, "clientFingerprint", fp) != NULL;
  ok &= add_opt_str(o, "ra", r->ra); /* docs/decisions.md §17 */
  ok &= add_csr_info(o, r->csr, r->csr_len);
  return finish(o, ok);
}

cJSON *ctl_request_json(const store_request *r) {
  return request_json(r, NULL);
}

cJSON *ctl_cert_json(const store_cert *c) {
  cJSON *o = cJSON_CreateObject();
  bool ok = o != NULL;
  if (!ok || c == NULL)
    return finish(o, ok && c != NULL);
  ok &= add_opt_str(o, "serial", c->serial);
  ok &= add_opt_str(o, "subject", c->subject);
  ok &= add_opt_str(o, "client", c->client);
  ok &= add_opt_time(o, "notBefore", c->not_before);
  ok &= add_opt_time(o, "notAfter", c->not_after);
  ok &= add_opt_int(o, "requestId", c->request_id);
  ok &= cJSON_AddBoolToObject(o, "revoked", c->revoked_at != 0) != NULL;
  ok &= add_opt_time(o, "revokedAt", c->revoked_at);
  ok &= add_opt_str(o, "revokeReason", c->revoke_reason);
  ok &= add_time(o, "created", c->created);
  return finish(o, ok);
}

cJSON *ctl_preauth_json(const store_preauth *p) {
  cJSON *o = cJSON_CreateObject();
  bool ok = o != NULL;
  if (!ok || p == NULL)
    return finish(o, ok && p != NULL);
  ok &= add_int(o, "id", p->id);
  ok &= cJSON_AddStringToObject(o, "kind", store_preauth_kind_name(p->kind)) !=
        NULL;
  ok &= add_opt_str(o, "value", p->value);
  ok &= add_opt_str(o, "note", p->note);
  ok &= add_time(o, "created", p->created);
  ok &= add_opt_str(o, "actor", p->actor);
  ok &= add_opt_str(o, "idevid", p->idevid);
  return finish(o, ok);
}

cJSON *ctl_audit_json(const store_audit_row *a) {
  cJSON *o = cJSON_CreateObject();
  bool ok = o != NULL;
  if (!ok || a == NULL)
    return finish(o, ok && a != NULL);
  ok &= add_int(o, "id", a->id);
  ok &= add_time(o, "time", a->time);
  ok &= add_opt_str(o, "actor", a->actor);
  ok &= add_opt_str(o, "action",
                    a->action_name != NULL
                      ? a->action_name
                      : store_audit_action_name(a->action));
  ok &= add_opt_int(o, "requestId", a->request_id);
  ok &= add_opt_str(o, "serial", a->cert_serial);
  ok &= add_opt_str(o, "detail", a->detail);
  return finish(o, ok);
}

/* ------------------------------------------------------------ events */

cJSON *ctl_event(const store_audit_row *row, const char **kind) {
  const char *k = NULL;
  bool has_reason = false;
  if (kind != NULL)
    *kind = NULL;
  if (row == NULL)
    return NULL;
  switch (row->action) {
  case STORE_AUDIT_PENDING:
    k = "pending";
    break;
  case STORE_AUDIT_APPROVED:
    k = "approved";
    has_reason = true;
    break;
  case STORE_AUDIT_REJECTED:
    k = "rejected";
    has_reason = true;
    break;
  case STORE_AUDIT_ISSUED:
    k = "issued";
    break;
  case STORE_AUDIT_EXPIRED:
    k = "expired";
    break;
  case STORE_AUDIT_REVOKED:
    k = "revoked";
    has_reason = true;
    break;
  /* Bookkeeping, not request life-cycle events. */
  case STORE_AUDIT_PREAUTH_ADD:
  case STORE_AUDIT_PREAUTH_REMOVE:
  case STORE_AUDIT_REISSUED:
  case STORE_AUDIT_PRUNED:
  case STORE_AUDIT__MAX:
    break;
  }
  if (k == NULL)
    return NULL;

  cJSON *o = cJSON_CreateObject();
  bool ok = o != NULL;
  if (!ok)
    return NULL;
  ok &= add_int(o, "id", row->request_id);
  ok &= add_opt_str(o, "function", row->function < STORE_FN__MAX
                                     ? store_fn_name(row->function)
                                     : NULL);
  ok &= add_opt_str(o, "subject", row->subject);
  ok &= add_opt_str(o, "client", row->client);
  ok &= add_time(o, "time", row->time);
  ok &= add_int(o, "auditId", row->id);
  ok &= add_opt_str(o, "actor", row->actor);
  if (row->cert_serial != NULL)
    ok &= cJSON_AddStringToObject(o, "serial", row->cert_serial) != NULL;
  if (has_reason && row->detail != NULL)
    ok &= cJSON_AddStringToObject(o, "reason", row->detail) != NULL;
  /* Who asks, for the approver (docs/decisions.md §15). */
  if (row->action == STORE_AUDIT_PENDING && row->has_client_fp) {
    char fp[2 * STORE_SHA256_LEN + 1];
    hex_lower(row->client_fp, STORE_SHA256_LEN, fp);
    ok &= add_opt_str(o, "clientSerial", row->client_serial);
    ok &= cJSON_AddStringToObject(o, "clientFingerprint", fp) != NULL;
  }
  /* The first CRL that lists a revoked certificate (docs/decisions.md §14). */
  if (row->action == STORE_AUDIT_REVOKED && row->crl_number > 0)
    ok &= add_int(o, "crlNumber", row->crl_number);
  o = finish(o, ok);
  if (o != NULL && kind != NULL)
    *kind = k;
  return o;
}

/* ------------------------------------------------------------ arguments */

/* A required or optional positive integer field (JSON number, integral,
 * 1 .. 2^53-1). Strings like "7" are refused: the types are strict. */
static est_err arg_id(const cJSON *cmd, const char *name, bool required,
                      int64_t *out, errbuf *e) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(cmd, name);
  *out = 0;
  if (v == NULL)
    return required ? seterr(e, EST_ERR_INVALID, "%s is required", name)
                    : EST_OK;
  if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) ||
      v->valuedouble < 1.0 || v->valuedouble > CTL_ID_MAX ||
      floor(v->valuedouble) != v->valuedouble)
    return seterr(e, EST_ERR_INVALID, "%s must be a positive integer", name);
  *out = (int64_t)v->valuedouble;
  return EST_OK;
}

/* Well-formed UTF-8 (RFC 3629): no overlong forms, surrogates or code
 * points above U+10FFFF. cJSON passes raw bytes through, and what is stored
 * comes back out in every JSON reply and event. */
static bool utf8_valid(const unsigned char *p) {
  while (*p != 0) {
    unsigned c = *p++;
    unsigned need, min, cp;
    if (c < 0x80)
      continue;
    if (c >= 0xc2 && c <= 0xdf) {
      need = 1;
      min = 0x80;
      cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
      need = 2;
      min = 0x800;
      cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      need = 3;
      min = 0x10000;
      cp = c & 0x07;
    } else {
      return false;
    }
    for (; need > 0; need--, p++) {
      if ((*p & 0xc0) != 0x80)
        return false;
      cp = (cp << 6) | (*p & 0x3fu);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
      return false;
  }
  return true;
}

/* A string field of at most @p cap bytes. Required ones must not be empty;
 * an empty optional one reads as absent (*out = NULL). */
static est_err arg_str(const cJSON *cmd, const char *name, bool required,
                       size_t cap, const char **out, errbuf *e) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(cmd, name);
  *out = NULL;
  if (v == NULL)
    return required ? seterr(e, EST_ERR_INVALID, "%s is required", name)
                    : EST_OK;
  if (!cJSON_IsString(v) || v->valuestring == NULL)
    return seterr(e, EST_ERR_INVALID, "%s must be a string", name);
  size_t n = strnlen(v->valuestring, cap + 1);
  if (n > cap)
    return seterr(e, EST_ERR_TOO_LARGE, "%s is longer than %zu bytes", name,
                  cap);
  if (n == 0)
    return required ? seterr(e, EST_ERR_INVALID, "%s must not be empty", name)
                    : EST_OK;
  if (!utf8_valid((const unsigned char *)v->valuestring))
    return seterr(e, EST_ERR_INVALID, "%s is not valid UTF-8", name);
  *out = v->valuestring;
  return EST_OK;
}

static est_err arg_kind(const cJSON *cmd, store_preauth_kind *kind,
                        errbuf *e) {
  const char *k;
  est_err rc = arg_str(cmd, "kind", true, 16, &k, e);
  if (rc != EST_OK)
    return rc;
  if (store_preauth_kind_parse(k, kind) != EST_OK)
    return seterr(e, EST_ERR_INVALID, "kind must be \"subject\" or \"idevid\"");
  return EST_OK;
}

/* The value of a pre-authorisation: a subject DN as it is, or an IDevID
 * fingerprint of 64 hex digits (checked here so the error says so). */
static est_err arg_preauth_value(const cJSON *cmd, store_preauth_kind kind,
                                 const char **value, errbuf *e) {
  est_err rc = arg_str(cmd, "value", true, STORE_MAX_TEXT, value, e);
  if (rc != EST_OK)
    return rc;
  if (kind == STORE_PREAUTH_IDEVID) {
    size_t n = strlen(*value);
    if (n != 2 * STORE_SHA256_LEN ||
        strspn(*value, "0123456789abcdefABCDEF") != n)
      return seterr(e, EST_ERR_INVALID,
                    "value must be an IDevID SHA-256 fingerprint (64 hex "
                    "digits)");
  }
  return EST_OK;
}

static est_err arg_serial(const cJSON *cmd, const char **serial, errbuf *e) {
  est_err rc = arg_str(cmd, "serial", true, STORE_MAX_SERIAL, serial, e);
  if (rc == EST_ERR_TOO_LARGE)
    return seterr(e, rc, "serial is longer than %u hex digits",
                  STORE_MAX_SERIAL);
  if (rc != EST_OK)
    return rc;
  if (strspn(*serial, "0123456789abcdefABCDEF") != strlen(*serial))
    return seterr(e, EST_ERR_INVALID, "serial must be hex digits");
  return EST_OK;
}

/* A non-negative integer number of seconds, at most CTL_AGE_MAX; *set
 * tells whether it was given. */
static est_err arg_secs(const cJSON *cmd, const char *name, int64_t *out, bool *set,
                        errbuf *e) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(cmd, name);
  *out = 0;
  *set = false;
  if (v == NULL)
    return EST_OK;
  if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < 0.0 ||
      v->valuedouble > (double)CTL_AGE_MAX || floor(v->valuedouble) != v->valuedouble)
    return seterr(e, EST_ERR_INVALID,
                  "%s must be a whole number of seconds (0 to %lld)", name,
                  (long long)CTL_AGE_MAX);
  *out = (int64_t)v->valuedouble;
  *set = true;
  return EST_OK;
}

est_err ctl_dn_canonical(const char *dn, char *out, size_t out_len, char *diag,
                         size_t diag_len) {
  gnutls_x509_dn_t parsed = NULL;
  gnutls_datum_t str = {NULL, 0};
  const char *where = NULL;
  est_err rc = EST_OK;
  char dummy[1];
  if (diag == NULL || diag_len == 0) {
    diag = dummy;
    diag_len = sizeof dummy;
  }
  diag[0] = '\0';
  if (out == NULL || out_len == 0 || dn == NULL)
    return EST_ERR_INVALID;
  out[0] = '\0';
  if (dn[0] == '\0' || strnlen(dn, CTL_DN_MAX + 1) > CTL_DN_MAX) {
    snprintf(diag, diag_len, dn[0] == '\0' ? "it is empty" : "it is longer than %u bytes",
             CTL_DN_MAX);
    return dn[0] == '\0' ? EST_ERR_INVALID : EST_ERR_TOO_LARGE;
  }
  if (gnutls_x509_dn_init(&parsed) < 0)
    return EST_ERR_NOMEM;
  /* RFC 4514 §3: GnuTLS takes type names in any case and drops blanks
   * around the separators; its rendering is the one of §2. */
  int r = gnutls_x509_dn_set_str(parsed, dn, &where);
  if (r >= 0)
    r = gnutls_x509_dn_get_str2(parsed, &str, 0);
  if (r < 0 || str.data == NULL || str.size == 0) {
    snprintf(diag, diag_len,
             "it is not an RFC 4514 distinguished name such as \"CN=dev-1,O=Acme\" "
             "(GnuTLS: %s)",
             r < 0 ? gnutls_strerror(r) : "empty");
    rc = r == GNUTLS_E_MEMORY_ERROR ? EST_ERR_NOMEM : EST_ERR_INVALID;
    goto out;
  }
  if (str.size >= out_len) {
    snprintf(diag, diag_len, "its canonical form is longer than %zu bytes", out_len - 1);
    rc = EST_ERR_TOO_LARGE;
    goto out;
  }
  memcpy(out, str.data, str.size);
  out[str.size] = '\0';
out:
  gnutls_free(str.data);
  gnutls_x509_dn_deinit(parsed);
  return rc;
}

/* ------------------------------------------------------------ reads */

/* Serial of certificate @p cert_id into @p buf ("" if none). */
static est_err cert_serial(const ctl_ctx *c, int64_t cert_id, char *buf,
                           size_t len) {
  store_cert cert = {0};
  buf[0] = '\0';
  if (cert_id == 0)
    return EST_OK;
  est_err rc = store_cert_get(c->s, cert_id, &cert);
  if (rc == EST_OK)
    snprintf(buf, len, "%s", cert.serial != NULL ? cert.serial : "");
  store_cert_clear(&cert);
  /* A dangling cert_id is the store's business; show no serial. */
  return rc == EST_ERR_NOT_FOUND ? EST_OK : rc;
}

/* Fetch request @p id as JSON (with its certificate serial) into *out. */
static est_err request_fetch(const ctl_ctx *c, int64_t id, cJSON **out,
                             errbuf *e) {
  store_request r = {0};
  char serial[STORE_MAX_SERIAL + 1];
  *out = NULL;
  est_err rc = store_request_get(c->s, id, &r);
  if (rc == EST_ERR_NOT_FOUND) {
    rc = seterr(e, rc, "id %" PRId64 ": no such request", id);
    goto out;
  }
  if (rc != EST_OK) {
    rc = store_err(c, e, rc, "read request");
    goto out;
  }
  if ((rc = cert_serial(c, r.cert_id, serial, sizeof serial)) != EST_OK) {
    rc = store_err(c, e, rc, "read certificate");
    goto out;
  }
  *out = request_json(&r, serial[0] != '\0' ? serial : NULL);
  if (*out == NULL)
    rc = seterr(e, EST_ERR_NOMEM, "out of memory");
out:
  store_request_clear(&r);
  return rc;
}

/* The filters of listRequests; NULL / unset: not applied. */
typedef struct req_filter {
  const char *subject, *san, *client;
  bool older_set, newer_set;
  int64_t older, newer, now;
} req_filter;

/* ASCII case-insensitive substring. */
static bool contains_ci(const char *hay, const char *needle) {
  size_t n = strlen(needle);
  if (hay == NULL)
    return false;
  for (; *hay != '\0'; hay++) {
    size_t i = 0;
    for (; i < n && hay[i] != '\0'; i++) {
      char a = hay[i], b = needle[i];
      if (a >= 'A' && a <= 'Z')
        a = (char)(a - 'A' + 'a');
      if (b >= 'A' && b <= 'Z')
        b = (char)(b - 'A' + 'a');
      if (a != b)
        break;
    }
    if (i == n)
      return true;
  }
  return n == 0;
}

/* Is @p text (colons allowed, any case) a prefix of the hex @p fp? */
static bool fp_prefix(const char *fp, const char *text) {
  size_t k = 0;
  for (const char *p = text; *p != '\0'; p++) {
    char c = *p;
    if (c == ':')
      continue;
    if (c >= 'A' && c <= 'F')
      c = (char)(c - 'A' + 'a');
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')) || fp[k] != c)
      return false;
    k++;
  }
  return k > 0;
}

static bool request_matches(const req_filter *f, const store_request *r, const cJSON *o) {
  if (f->subject != NULL && !contains_ci(r->subject, f->subject))
    return false;
  if (f->client != NULL) {
    const cJSON *fp = cJSON_GetObjectItemCaseSensitive(o, "clientFingerprint");
    if (!contains_ci(r->client, f->client) &&
        !(cJSON_IsString(fp) && fp_prefix(fp->valuestring, f->client)))
      return false;
  }
  if (f->san != NULL) {
    const cJSON *sans = cJSON_GetObjectItemCaseSensitive(o, "sans"), *it;
    bool hit = false;
    cJSON_ArrayForEach(it, sans) {
      const cJSON *v = cJSON_GetObjectItemCaseSensitive(it, "value");
      if (cJSON_IsString(v) && contains_ci(v->valuestring, f->san)) {
        hit = true;
        break;
      }
    }
    if (!hit)
      return false;
  }
  if (f->older_set && r->created > f->now - f->older)
    return false;
  if (f->newer_set && r->created <= f->now - f->newer)
    return false;
  return true;
}

/* List callbacks: append one JSON object per row. */
typedef struct req_list {
  cJSON *arr;
  int64_t *cert_ids; /* cert_id of row i, for the serials afterwards */
  size_t n, cap;
  const req_filter *filter; /* or NULL */
} req_list;

static int on_request(void *ctx, const store_request *row) {
  req_list *l = ctx;
  if (l->n == l->cap) {
    size_t cap = l->cap != 0 ? 2 * l->cap : 64;
    int64_t *p = realloc(l->cert_ids, cap * sizeof *p);
    if (p == NULL)
      return EST_ERR_NOMEM;
    l->cert_ids = p;
    l->cap = cap;
  }
  cJSON *o = request_json(row, NULL);
  if (o != NULL && l->filter != NULL && !request_matches(l->filter, row, o)) {
    cJSON_Delete(o);
    return 0;
  }
  if (o == NULL || !cJSON_AddItemToArray(l->arr, o)) {
    cJSON_Delete(o);
    return EST_ERR_NOMEM;
  }
  l->cert_ids[l->n++] = row->cert_id;
  return 0;
}

static int on_cert(void *ctx, const store_cert *row) {
  cJSON *o = ctl_cert_json(row);
  if (o == NULL || !cJSON_AddItemToArray(ctx, o)) {
    cJSON_Delete(o);
    return EST_ERR_NOMEM;
  }
  return 0;
}

static int on_preauth(void *ctx, const store_preauth *row) {
  cJSON *o = ctl_preauth_json(row);
  if (o == NULL || !cJSON_AddItemToArray(ctx, o)) {
    cJSON_Delete(o);
    return EST_ERR_NOMEM;
  }
  return 0;
}

static int on_audit(void *ctx, const store_audit_row *row) {
  cJSON *o = ctl_audit_json(row);
  if (o == NULL || !cJSON_AddItemToArray(ctx, o)) {
    cJSON_Delete(o);
    return EST_ERR_NOMEM;
  }
  return 0;
}

/* store_audit_list() gives newest first; a request's trail reads oldest
 * first, so prepend. */
static int on_audit_prepend(void *ctx, const store_audit_row *row) {
  cJSON *o = ctl_audit_json(row);
  if (o == NULL || !cJSON_InsertItemInArray(ctx, 0, o)) {
    cJSON_Delete(o);
    return EST_ERR_NOMEM;
  }
  return 0;
}

/* A fresh array added to @p data under @p name. */
static cJSON *data_array(cJSON *data, const char *name) {
  return cJSON_AddArrayToObject(data, name);
}

/* Add @p item to @p data under @p name; it is freed if that fails. */
static est_err data_add(cJSON *data, const char *name, cJSON *item,
                        errbuf *e) {
  if (item == NULL || !cJSON_AddItemToObject(data, name, item)) {
    cJSON_Delete(item);
    return seterr(e, EST_ERR_NOMEM, "out of memory");
  }
  return EST_OK;
}

/* ------------------------------------------------------------ commands */

typedef est_err (*cmd_fn)(const ctl_ctx *c, const cJSON *cmd, cJSON *data,
                          errbuf *e);

static est_err cmd_list_requests(const ctl_ctx *c, const cJSON *cmd,
                                 cJSON *data, errbuf *e) {
  store_req_state state = STORE_REQ_ANY;
  const char *name;
  req_list l = {0};
  req_filter f = {0};
  est_err rc = arg_str(cmd, "state", false, 16, &name, e);
  if (rc != EST_OK ||
      (rc = arg_str(cmd, "subject", false, STORE_MAX_TEXT, &f.subject, e)) != EST_OK ||
      (rc = arg_str(cmd, "san", false, STORE_MAX_TEXT, &f.san, e)) != EST_OK ||
      (rc = arg_str(cmd, "client", false, STORE_MAX_TEXT, &f.client, e)) != EST_OK ||
      (rc = arg_secs(cmd, "olderThan", &f.older, &f.older_set, e)) != EST_OK ||
      (rc = arg_secs(cmd, "newerThan", &f.newer, &f.newer_set, e)) != EST_OK)
    return rc;
  f.now = c->now != 0 ? c->now : (int64_t)time(NULL);
  l.filter = &f;
  if (name != NULL && store_state_parse(name, &state) != EST_OK)
    return seterr(e, EST_ERR_INVALID,
                  "state must be one of pending, approved, rejected, issued, "
                  "expired");
  if ((l.arr = data_array(data, "requests")) == NULL)
    return seterr(e, EST_ERR_NOMEM, "out of memory");
  if ((rc = store_request_list(c->s, state, on_request, &l)) != EST_OK) {
    rc = store_err(c, e, rc, "list requests");
    goto out;
  }
  /* Serials afterwards: a list callback may not call into the store. */
  size_t i = 0;
  for (cJSON *o = l.arr->child; o != NULL && i < l.n; o = o->next, i++) {
    char serial[STORE_MAX_SERIAL + 1];
    if (l.cert_ids[i] == 0)
      continue;
    if ((rc = cert_serial(c, l.cert_ids[i], serial, sizeof serial)) != EST_OK) {
      rc = store_err(c, e, rc, "read certificate");
      goto out;
    }
    if (serial[0] != '\0' &&
        !cJSON_ReplaceItemInObjectCaseSensitive(
          o, "certSerial", cJSON_CreateString(serial))) {
      rc = seterr(e, EST_ERR_NOMEM, "out of memory");
      goto out;
    }
  }
out:
  free(l.cert_ids);
  return rc;
}

static est_err cmd_get_request(const ctl_ctx *c, const cJSON *cmd, cJSON *data,
                               errbuf *e) {
  int64_t id;
  cJSON *req, *trail;
  est_err rc = arg_id(cmd, "id", true, &id, e);
  if (rc != EST_OK)
    return rc;
  if ((rc = request_fetch(c, id, &req, e)) != EST_OK)
    return rc;
  if ((rc = data_add(data, "request", req, e)) != EST_OK)
    return rc;
  if ((trail = data_array(data, "audit")) == NULL)
    return seterr(e, EST_ERR_NOMEM, "out of memory");
  rc = store_audit_list(c->s, id, CTL_AUDIT_MAX, on_audit_prepend, trail);
  if (rc != EST_OK)
    return store_err(c, e, rc, "read audit");
  return EST_OK;
}

static est_err decide(const ctl_ctx *c, const cJSON *cmd, cJSON *data,
                      errbuf *e, bool approve) {
  int64_t id;
  const char *reason;
  cJSON *req;
  est_err rc = arg_id(cmd, "id", true, &id, e);
  if (rc != EST_OK ||
      (rc = arg_str(cmd, "reason", !approve, STORE_MAX_TEXT, &reason, e)) !=
        EST_OK)
    return rc;
  rc = store_request_decide(c->s, id, approve, reason, c->actor);
  switch (rc) {
  case EST_OK:
    break;
  case EST_ERR_NOT_FOUND:
    return seterr(e, rc, "id %" PRId64 ": no such request", id);
  case EST_ERR_STATE:
    /* "request 7 is approved, not pending" / "request 7 has expired" */
    if (store_errmsg(c->s)[0] != '\0')
      return seterr(e, rc, "%s", store_errmsg(c->s));
    return seterr(e, rc, "request %" PRId64 " is not pending", id);
  default:
    return store_err(c, e, rc, approve ? "approve" : "reject");
  }
  if ((rc = request_fetch(c, id, &req, e)) != EST_OK) {
    char detail[CTL_ERR_LEN];
    snprintf(detail, sizeof detail, "%s", e->msg);
    return seterr(e, rc, "request %" PRId64 " %s, but reading it back failed: %s",
                  id, approve ? "approved" : "rejected", detail);
  }
  return data_add(data, "request", req, e);
}

static est_err cmd_approve(const ctl_ctx *c, const cJSON *cmd, cJSON *data,
                           errbuf *e) {
  return decide(c, cmd, data, e, true);
}

static est_err cmd_reject(const ctl_ctx *c, const cJSON *cmd, cJSON *data,
                          errbuf *e) {
  return decide(c, cmd, data, e, false);
}

/* "subject 'CN=x'" or "idevid 0a1b..." for messages. */
static void preauth_label(char *buf, size_t len, store_preauth_kind kind,
                          const char *value) {
  if (kind == STORE_PREAUTH_SUBJECT)
    snprintf(buf, len, "subject '%s'", value);
  else
    snprintf(buf, len, "idevid %s", value);
}

typedef struct preauth_find {
  int64_t id;
  cJSON *found;
} preauth_find;

static int on_preauth_find(void *ctx, const store_preauth *row) {
  preauth_find *f = ctx;
  if (row->id != f->id)
    return 0;
  f->found = ctl_preauth_json(row);
  return f->found != NULL ? 1 : EST_ERR_NOMEM;
}

/* A subject value in canonical form (RFC 4514, docs/decisions.md §15)
 * into @p buf; *value then points to it. */
static est_err canonical_value(const char **value, char *buf, size_t len, errbuf *e) {
  char diag[512];
  est_err rc = ctl_dn_canonical(*value, buf, len, diag, sizeof diag);
  if (rc == EST_ERR_NOMEM)
    return seterr(e, rc, "out of memory");
  if (rc != EST_OK)
    return seterr(e, rc, "subject '%.256s': %s", *value, diag);
  *value = buf;
  return EST_OK;
}

static est_err cmd_add_preauth(const ctl_ctx *c, const cJSON *cmd, cJSON *data,
                               errbuf *e) {
  store_preauth_kind kind;
  const char *value, *note, *idevid;
  char label[STORE_MAX_TEXT + 128], dn[CTL_DN_MAX + 1];
  preauth_find f = {0};
  est_err rc = arg_kind(cmd, &kind, e);
  if (rc != EST_OK || (rc = arg_preauth_value(cmd, kind, &value, e)) != EST_OK ||
      (rc = arg_str(cmd, "idevid", false, 2 * STORE_SHA256_LEN, &idevid, e)) != EST_OK ||
      (rc = arg_str(cmd, "note", false, STORE_MAX_TEXT, &note, e)) != EST_OK)
    return rc;
  if (idevid != NULL && (kind != STORE_PREAUTH_SUBJECT ||
                         strspn(idevid, "0123456789abcdefABCDEF") != 2 * STORE_SHA256_LEN))
    return seterr(e, EST_ERR_INVALID,
                  kind != STORE_PREAUTH_SUBJECT
                    ? "idevid binds a subject pre-authorisation; kind must be \"subject\""
                    : "idevid must be an IDevID SHA-256 fingerprint (64 hex digits)");
  if (kind == STORE_PREAUTH_SUBJECT &&
      (rc = canonical_value(&value, dn, sizeof dn, e)) != EST_OK)
    return rc;
  preauth_label(label, sizeof label, kind, value);
  if (idevid != NULL) {
    size_t n = strlen(label);
    snprintf(label + n, sizeof label - n, " bound to idevid %s", idevid);
    rc = store_preauth_add_bound(c->s, value, idevid, note, c->actor, &f.id);
  } else {
    rc = store_preauth_add(c->s, kind, value, note, c->actor, &f.id);
  }
  if (rc == EST_ERR_EXISTS)
    return seterr(e, rc, "%s is already pre-authorised", label);
  if (rc != EST_OK)
    return store_err(c, e, rc, "add pre-authorisation");
  /* The store has no get-by-id for these; the table is small. */
  rc = store_preauth_list(c->s, on_preauth_find, &f);
  if (rc == EST_OK && f.found == NULL)
    rc = EST_ERR_NOT_FOUND; /* removed again in between */
  if (rc != EST_OK) {
    cJSON_Delete(f.found);
    return seterr(e, rc,
                  "%s pre-authorised (id %" PRId64
                  "), but reading it back failed: %s",
                  label, f.id, est_strerror(rc));
  }
  return data_add(data, "preauth", f.found, e);
}

static est_err cmd_remove_preauth(const ctl_ctx *c, const cJSON *cmd,
                                  cJSON *data, errbuf *e) {
  store_preauth_kind kind;
  const char *value, *given;
  char label[STORE_MAX_TEXT + 32], dn[CTL_DN_MAX + 1];
  est_err rc = arg_kind(cmd, &kind, e);
  if (rc != EST_OK || (rc = arg_preauth_value(cmd, kind, &value, e)) != EST_OK)
    return rc;
  given = value;
  /* Entries are stored canonical; one from before schema 3 (or one that
   * does not parse) is found as it was written. */
  if (kind == STORE_PREAUTH_SUBJECT &&
      ctl_dn_canonical(value, dn, sizeof dn, NULL, 0) == EST_OK)
    value = dn;
  preauth_label(label, sizeof label, kind, value);
  rc = store_preauth_remove(c->s, kind, value, c->actor);
  if (rc == EST_ERR_NOT_FOUND && value != given)
    rc = store_preauth_remove(c->s, kind, given, c->actor);
  if (rc == EST_ERR_NOT_FOUND)
    return seterr(e, rc, "%s is not pre-authorised", label);
  if (rc != EST_OK)
    return store_err(c, e, rc, "remove pre-authorisation");
  (void)data; /* data stays {} */
  return EST_OK;
}

static est_err cmd_list_preauth(const ctl_ctx *c, const cJSON *cmd,
                                cJSON *data, errbuf *e) {
  cJSON *arr = data_array(data, "preauth");
  if (arr == NULL)
    return seterr(e, EST_ERR_NOMEM, "out of memory");
  est_err rc = store_preauth_list(c->s, on_preauth, arr);
  return rc == EST_OK ? EST_OK : store_err(c, e, rc, "list pre-authorisations");
}

static est_err cmd_list_certs(const ctl_ctx *c, const cJSON *cmd, cJSON *data,
                              errbuf *e) {
  cJSON *arr = data_array(data, "certificates");
  if (arr == NULL)
    return seterr(e, EST_ERR_NOMEM, "out of memory");
  est_err rc = store_cert_list(c->s, on_cert, arr);
  return rc == EST_OK ? EST_OK : store_err(c, e, rc, "list certificates");
}

static est_err cmd_revoke(const ctl_ctx *c, const cJSON *cmd, cJSON *data,
                          errbuf *e) {
  const char *serial, *reason;
  store_cert cert = {0};
  cJSON *o;
  est_err rc = arg_serial(cmd, &serial, e);
  if (rc != EST_OK ||
      (rc = arg_str(cmd, "reason", true, STORE_MAX_TEXT, &reason, e)) != EST_OK)
    return rc;
  /* RFC 5280 §5.3.1: the reason goes into the CRL as a reasonCode, so
   * only its names are taken (docs/decisions.md §14). */
  unsigned code = 0;
  if (!est_crl_reason_parse(reason, &code))
    return seterr(e, EST_ERR_INVALID,
                  "reason '%.64s' is not an RFC 5280 revocation reason; use one of: "
                  EST_CRL_REASON_NAMES, reason);
  reason = est_crl_reason_name(code); /* kept in its RFC spelling */
  rc = store_cert_revoke(c->s, serial, reason, c->actor);
  switch (rc) {
  case EST_OK:
    break;
  case EST_ERR_NOT_FOUND:
    return seterr(e, rc, "serial %s: no such certificate", serial);
  case EST_ERR_STATE:
    if (store_errmsg(c->s)[0] != '\0')
      return seterr(e, rc, "%s", store_errmsg(c->s));
    return seterr(e, rc, "certificate %s is already revoked", serial);
  default:
    return store_err(c, e, rc, "revoke");
  }
  rc = store_cert_get_serial(c->s, serial, &cert);
  o = rc == EST_OK ? ctl_cert_json(&cert) : NULL;
  store_cert_clear(&cert);
  if (rc == EST_OK && o == NULL)
    rc = EST_ERR_NOMEM;
  if (rc != EST_OK)
    return seterr(e, rc,
                  "certificate %s revoked, but reading it back failed: %s",
                  serial, est_strerror(rc));
  return data_add(data, "certificate", o, e);
}

/* The CRL coapd published last (docs/decisions.md §14). */
static est_err cmd_get_crl(const ctl_ctx *c, const cJSON *cmd, cJSON *data, errbuf *e) {
  int64_t number = 0, published = 0;
  char *pem = NULL;
  (void)cmd;
  est_err rc = store_crl_numbers(c->s, &number, &published);
  if (rc != EST_OK)
    return store_err(c, e, rc, "CRL numbers");
  if (published > 0)
    rc = store_meta_get(c->s, "crl.pem", &pem);
  if (published <= 0 || rc == EST_ERR_NOT_FOUND) {
    free(pem);
    return seterr(e, EST_ERR_NOT_FOUND,
                  "no CRL has been published yet (coapd publishes one when "
                  "plugin_opt_crl_file is set)");
  }
  if (rc != EST_OK)
    return store_err(c, e, rc, "read the CRL");
  bool ok = add_int(data, "number", published) && add_int(data, "latestNumber", number) &&
            cJSON_AddStringToObject(data, "pem", pem) != NULL;
  free(pem);
  return ok ? EST_OK : seterr(e, EST_ERR_NOMEM, "out of memory");
}

static est_err cmd_list_audit(const ctl_ctx *c, const cJSON *cmd, cJSON *data,
                              errbuf *e) {
  int64_t request_id, limit;
  est_err rc = arg_id(cmd, "requestId", false, &request_id, e);
  if (rc != EST_OK || (rc = arg_id(cmd, "limit", false, &limit, e)) != EST_OK)
    return rc;
  if (limit > (int64_t)CTL_AUDIT_MAX)
    return seterr(e, EST_ERR_TOO_LARGE, "limit is over %u", CTL_AUDIT_MAX);
  if (limit == 0)
    limit = CTL_AUDIT_DEFAULT;
  if (request_id != 0) {
    store_request r = {0};
    rc = store_request_get(c->s, request_id, &r);
    store_request_clear(&r);
    if (rc == EST_ERR_NOT_FOUND)
      return seterr(e, rc, "id %" PRId64 ": no such request", request_id);
    if (rc != EST_OK)
      return store_err(c, e, rc, "read request");
  }
  cJSON *arr = data_array(data, "audit");
  if (arr == NULL)
    return seterr(e, EST_ERR_NOMEM, "out of memory");
  rc = store_audit_list(c->s, request_id, (size_t)limit, on_audit, arr);
  return rc == EST_OK ? EST_OK : store_err(c, e, rc, "list audit");
}

/* The command table, in ctl.h order. */
typedef enum ctl_cmd_id {
  CTL_CMD_LIST_REQUESTS = 0,
  CTL_CMD_GET_REQUEST,
  CTL_CMD_APPROVE_REQUEST,
  CTL_CMD_REJECT_REQUEST,
  CTL_CMD_ADD_PREAUTH,
  CTL_CMD_REMOVE_PREAUTH,
  CTL_CMD_LIST_PREAUTH,
  CTL_CMD_LIST_CERTIFICATES,
  CTL_CMD_REVOKE_CERTIFICATE,
  CTL_CMD_LIST_AUDIT,
  CTL_CMD_GET_CRL,
  CTL_CMD__MAX /**< sentinel */
} ctl_cmd_id;

static const struct {
  const char *name;
  bool writes;
  cmd_fn run;
} ctl_cmds[CTL_CMD__MAX] = {
  [CTL_CMD_LIST_REQUESTS] = {"listRequests", false, cmd_list_requests},
  [CTL_CMD_GET_REQUEST] = {"getRequest", false, cmd_get_request},
  [CTL_CMD_APPROVE_REQUEST] = {"approveRequest", true, cmd_approve},
  [CTL_CMD_REJECT_REQUEST] = {"rejectRequest", true, cmd_reject},
  [CTL_CMD_ADD_PREAUTH] = {"addPreauth", true, cmd_add_preauth},
  [CTL_CMD_REMOVE_PREAUTH] = {"removePreauth", true, cmd_remove_preauth},
  [CTL_CMD_LIST_PREAUTH] = {"listPreauth", false, cmd_list_preauth},
  [CTL_CMD_LIST_CERTIFICATES] = {"listCertificates", false, cmd_list_certs},
  [CTL_CMD_REVOKE_CERTIFICATE] = {"revokeCertificate", true, cmd_revoke},
  [CTL_CMD_LIST_AUDIT] = {"listAudit", false, cmd_list_audit},
  [CTL_CMD_GET_CRL] = {"getCrl", false, cmd_get_crl},
};

static ctl_cmd_id cmd_lookup(const char *name) {
  for (int i = 0; i < CTL_CMD__MAX; i++)
    if (name != NULL && strcmp(ctl_cmds[i].name, name) == 0)
      return (ctl_cmd_id)i;
  return CTL_CMD__MAX;
}

/* ------------------------------------------------------------ running */

/* {"command": name} plus correlationData copied from @p cmd when it is a
 * string. */
static cJSON *response_new(const char *name, const cJSON *cmd) {
  cJSON *r = cJSON_CreateObject();
  if (r == NULL || cJSON_AddStringToObject(r, "command", name) == NULL) {
    cJSON_Delete(r);
    return NULL;
  }
  const cJSON *cd = cmd != NULL && cJSON_IsObject(cmd)
                      ? cJSON_GetObjectItemCaseSensitive(cmd, "correlationData")
                      : NULL;
  if (cJSON_IsString(cd) && cd->valuestring != NULL &&
      cJSON_AddStringToObject(r, "correlationData", cd->valuestring) == NULL) {
    cJSON_Delete(r);
    return NULL;
  }
  return r;
}

static cJSON *response_error(cJSON *r, const char *msg) {
  if (r != NULL && cJSON_AddStringToObject(r, "error", msg) == NULL) {
    cJSON_Delete(r);
    return NULL;
  }
  return r;
}

/* Printable copy of an unknown command name for the error text. */
static void name_echo(char *buf, size_t len, const char *name) {
  size_t i = 0;
  for (; name[i] != '\0' && i < CTL_NAME_ECHO && i + 4 < len; i++) {
    unsigned char ch = (unsigned char)name[i];
    buf[i] = (ch < 0x20 || ch == 0x7f) ? '?' : (char)ch;
  }
  if (name[i] != '\0' && i + 4 < len) {
    memcpy(buf + i, "...", 3);
    i += 3;
  }
  buf[i] = '\0';
}

/* Finish an error response: *err gets @p rc, or NOMEM if even that failed. */
static cJSON *run_error(cJSON *r, const char *msg, est_err rc, est_err *err) {
  r = response_error(r, msg);
  if (err != NULL)
    *err = r != NULL ? rc : EST_ERR_NOMEM;
  return r;
}

cJSON *ctl_run(const ctl_ctx *c, const cJSON *cmd, est_err *err) {
  errbuf e;
  est_err rc;
  cJSON *resp, *data;
  ctl_cmd_id id;

  e.msg[0] = '\0';
  if (err != NULL)
    *err = EST_ERR_NOMEM;
  if (!cJSON_IsObject(cmd))
    return run_error(response_new("", NULL), "command must be a JSON object",
                     EST_ERR_INVALID, err);
  const cJSON *cv = cJSON_GetObjectItemCaseSensitive(cmd, "command");
  if (cv == NULL)
    return run_error(response_new("", cmd), "command is missing",
                     EST_ERR_INVALID, err);
  if (!cJSON_IsString(cv) || cv->valuestring == NULL)
    return run_error(response_new("", cmd), "command must be a string",
                     EST_ERR_INVALID, err);
  if ((resp = response_new(cv->valuestring, cmd)) == NULL)
    return NULL;
  id = cmd_lookup(cv->valuestring);
  if (id == CTL_CMD__MAX) {
    char echo[CTL_NAME_ECHO + 8];
    name_echo(echo, sizeof echo, cv->valuestring);
    seterr(&e, EST_ERR_INVALID, "unknown command '%s'", echo);
    return run_error(resp, e.msg, EST_ERR_INVALID, err);
  }
  if (c == NULL || c->s == NULL)
    return run_error(resp, "no database", EST_ERR_INVALID, err);
  /* Authorisation before argument checks: a caller who may not write
   * learns nothing about the arguments. */
  if (ctl_cmds[id].writes) {
    if (!c->may_write) {
      seterr(&e, EST_ERR_FORBIDDEN, "not authorised to run %s",
             ctl_cmds[id].name);
      return run_error(resp, e.msg, EST_ERR_FORBIDDEN, err);
    }
    if (c->actor == NULL || c->actor[0] == '\0')
      return run_error(resp, "no actor for the audit trail", EST_ERR_INVALID,
                       err);
  }

  if ((data = cJSON_CreateObject()) == NULL) {
    cJSON_Delete(resp);
    return NULL;
  }
  rc = ctl_cmds[id].run(c, cmd, data, &e);
  if (rc != EST_OK) {
    cJSON_Delete(data);
    if (e.msg[0] == '\0')
      seterr(&e, rc, "%s: %s", ctl_cmds[id].name, est_strerror(rc));
    return run_error(resp, e.msg, rc, err);
  }
  if (!cJSON_AddItemToObject(resp, "data", data)) {
    cJSON_Delete(data);
    cJSON_Delete(resp);
    return NULL;
  }
  if (err != NULL)
    *err = EST_OK;
  return resp;
}

/* {"responses":[{"command":"","error":msg}]} for a broken envelope. */
static char *envelope_error(const char *msg) {
  cJSON *root = cJSON_CreateObject();
  cJSON *arr = root != NULL ? cJSON_AddArrayToObject(root, "responses") : NULL;
  cJSON *r = response_error(response_new("", NULL), msg);
  char *out = NULL;
  if (arr != NULL && r != NULL && cJSON_AddItemToArray(arr, r)) {
    r = NULL;
    out = cJSON_PrintUnformatted(root);
  }
  cJSON_Delete(r);
  cJSON_Delete(root);
  return out;
}

char *ctl_run_envelope(const ctl_ctx *c, const char *json, size_t len) {
  char msg[128];
  cJSON *root = NULL, *reply = NULL, *out_arr;
  const cJSON *cmds, *cmd;
  char *buf = NULL, *out = NULL;
  int n;

  if (json == NULL)
    return envelope_error("no message");
  if (len > CTL_MSG_MAX) {
    snprintf(msg, sizeof msg, "message too large (%zu bytes, at most %u)", len,
             CTL_MSG_MAX);
    return envelope_error(msg);
  }
  if (memchr(json, '\0', len) != NULL)
    return envelope_error("message contains a NUL byte");
  /* cJSON wants the text NUL-terminated to refuse trailing garbage. */
  if ((buf = malloc(len + 1)) == NULL)
    return NULL;
  memcpy(buf, json, len);
  buf[len] = '\0';
  root = cJSON_ParseWithOpts(buf, NULL, true);
  free(buf);
  if (root == NULL)
    return envelope_error("message is not valid JSON");
  if (!cJSON_IsObject(root)) {
    out = envelope_error("message must be a JSON object");
    goto out;
  }
  cmds = cJSON_GetObjectItemCaseSensitive(root, "commands");
  if (cmds == NULL) {
    out = envelope_error("commands is missing");
    goto out;
  }
  if (!cJSON_IsArray(cmds)) {
    out = envelope_error("commands must be an array");
    goto out;
  }
  n = cJSON_GetArraySize(cmds);
  if (n < 0 || (unsigned)n > CTL_CMDS_MAX) {
    snprintf(msg, sizeof msg, "too many commands (%d, at most %u)", n,
             CTL_CMDS_MAX);
    out = envelope_error(msg);
    goto out;
  }
  if ((reply = cJSON_CreateObject()) == NULL ||
      (out_arr = cJSON_AddArrayToObject(reply, "responses")) == NULL)
    goto out;
  cJSON_ArrayForEach(cmd, cmds) {
    cJSON *r = ctl_run(c, cmd, NULL);
    if (r == NULL || !cJSON_AddItemToArray(out_arr, r)) {
      cJSON_Delete(r);
      goto out;
    }
  }
  out = cJSON_PrintUnformatted(reply);
out:
  cJSON_Delete(reply);
  cJSON_Delete(root);
  return out;
}
