/* est_coaps.so: options, CA set-up and the RFC 9148 resources. */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "async.h"
#include "est_plugin.h"
#include "handlers.h"
#include "proto/der.h"

#define CSR_ATTRS_MAX 65536u
#define MAX_BODY_LIMIT (1024u * 1024u)

typedef struct opt_ctx {
  est_plugin *p;
  const char *ca_cert;
  const char *ca_key;
  const char *idevid_trust;
  const char *csr_attrs;
  const char *labels;
  const char *db_path;
  char err[256];
} opt_ctx;

typedef est_err (*opt_fn)(opt_ctx *o, const char *value);

static est_err parse_uint(const char *s, unsigned long min, unsigned long max,
                          unsigned long *out) {
  char *end = NULL;
  if (!s || !isdigit((unsigned char)s[0]))
    return EST_ERR_INVALID;
  errno = 0;
  unsigned long v = strtoul(s, &end, 10);
  if (errno || *end || v < min || v > max)
    return EST_ERR_INVALID;
  *out = v;
  return EST_OK;
}

static est_err opt_root(opt_ctx *o, const char *v) {
  size_t n = strlen(v);
  /* A root is an absolute path without a trailing slash, like "/est". */
  if (n < 2 || n >= EST_ROOT_MAX || v[0] != '/' || v[n - 1] == '/' ||
      strstr(v, "//") || strcmp(v, "/.well-known/est") == 0) {
    snprintf(o->err, sizeof o->err,
             "root must look like /est (at most %d characters, not "
             "/.well-known/est)", EST_ROOT_MAX - 1);
    return EST_ERR_CONFIG;
  }
  for (const char *c = v; *c; c++)
    if (!isalnum((unsigned char)*c) && !strchr("/._-~", *c)) {
      snprintf(o->err, sizeof o->err, "root has a character not allowed in a path");
      return EST_ERR_CONFIG;
    }
  memcpy(o->p->root, v, n + 1);
  return EST_OK;
}

static est_err opt_ca_cert(opt_ctx *o, const char *v) { o->ca_cert = v; return EST_OK; }
static est_err opt_ca_key(opt_ctx *o, const char *v) { o->ca_key = v; return EST_OK; }
static est_err opt_idevid(opt_ctx *o, const char *v) { o->idevid_trust = v; return EST_OK; }
static est_err opt_csr_attrs(opt_ctx *o, const char *v) { o->csr_attrs = v; return EST_OK; }
static est_err opt_labels(opt_ctx *o, const char *v) { o->labels = v; return EST_OK; }

static est_err opt_cert_days(opt_ctx *o, const char *v) {
  unsigned long d;
  if (parse_uint(v, 1, 36500, &d) != EST_OK) {
    snprintf(o->err, sizeof o->err, "cert_days must be a number of days from 1 to 36500");
    return EST_ERR_CONFIG;
  }
  o->p->cert_days = (unsigned)d;
  return EST_OK;
}

static est_err opt_pop(opt_ctx *o, const char *v) {
  if (pop_mode_parse(v, &o->p->ecfg.pop) != EST_OK) {
    snprintf(o->err, sizeof o->err, "pop_linking must be off, verify or require");
    return EST_ERR_CONFIG;
  }
  return EST_OK;
}

static est_err opt_keygen(opt_ctx *o, const char *v) {
  if (strcmp(v, "on") == 0)
    o->p->keygen = true;
  else if (strcmp(v, "off") == 0)
    o->p->keygen = false;
  else {
    snprintf(o->err, sizeof o->err, "keygen must be on or off");
    return EST_ERR_CONFIG;
  }
  return EST_OK;
}

/* AUTH-5 (RFC 9148 §3, decisions.md §5): an expired IDevID may enroll. */
static est_err opt_idevid_allow_expired(opt_ctx *o, const char *v) {
  if (strcmp(v, "on") == 0)
    o->p->idevid_allow_expired = true;
  else if (strcmp(v, "off") == 0)
    o->p->idevid_allow_expired = false;
  else {
    snprintf(o->err, sizeof o->err, "idevid_allow_expired must be on or off");
    return EST_ERR_CONFIG;
  }
  return EST_OK;
}

static est_err opt_keygen_type(opt_ctx *o, const char *v) {
  if (pki_key_type_parse(v, &o->p->ecfg.keygen_type) != EST_OK) {
    snprintf(o->err, sizeof o->err, "keygen_type must be ec-p256, rsa-2048 or rsa-3072");
    return EST_ERR_CONFIG;
  }
  return EST_OK;
}

static est_err opt_max_body(opt_ctx *o, const char *v) {
  unsigned long n;
  /* A CSR needs a few hundred bytes; post-quantum ones a few KiB. */
  if (parse_uint(v, 1024, MAX_BODY_LIMIT, &n) != EST_OK) {
    snprintf(o->err, sizeof o->err, "max_body must be a byte count from 1024 to %u",
             MAX_BODY_LIMIT);
    return EST_ERR_CONFIG;
  }
  o->p->max_body = n;
  return EST_OK;
}

static est_err opt_db_path(opt_ctx *o, const char *v) { o->db_path = v; return EST_OK; }

static est_err opt_policy(opt_ctx *o, const char *v, enroll_policy *out, const char *name) {
  if (enroll_policy_parse(v, out) != EST_OK) {
    snprintf(o->err, sizeof o->err, "%s must be auto or manual", name);
    return EST_ERR_CONFIG;
  }
  return EST_OK;
}

static est_err opt_idevid_policy(opt_ctx *o, const char *v) {
  return opt_policy(o, v, &o->p->ecfg.idevid, "idevid_policy");
}

static est_err opt_ldevid_policy(opt_ctx *o, const char *v) {
  return opt_policy(o, v, &o->p->ecfg.ldevid, "ldevid_policy");
}

static est_err opt_seconds(opt_ctx *o, const char *v, unsigned long min, unsigned long max,
                           unsigned *out, const char *what) {
  unsigned long n;
  if (parse_uint(v, min, max, &n) != EST_OK) {
    snprintf(o->err, sizeof o->err, "%s must be a number from %lu to %lu", what, min, max);
    return EST_ERR_CONFIG;
  }
  *out = (unsigned)n;
  return EST_OK;
}

/* Max-Age is a uint of at most 4 bytes (RFC 7252 §5.10.5); a day is plenty. */
static est_err opt_retry_after(opt_ctx *o, const char *v) {
  return opt_seconds(o, v, 1, 86400, &o->p->ecfg.retry_after, "retry_after (seconds)");
}

static est_err opt_pending_ttl(opt_ctx *o, const char *v) {
  return opt_seconds(o, v, 60, 31536000, &o->p->ecfg.pending_ttl, "pending_ttl (seconds)");
}

static est_err opt_max_pending(opt_ctx *o, const char *v) {
  return opt_seconds(o, v, 1, 1000, &o->p->ecfg.max_pending, "max_pending_per_client");
}

static est_err opt_db_busy(opt_ctx *o, const char *v) {
  unsigned ms = 0;
  est_err rc = opt_seconds(o, v, 1, 5000, &ms, "db_busy_timeout (milliseconds)");
  if (rc == EST_OK)
    o->p->ecfg.busy_timeout_ms = (int)ms;
  return rc;
}

/* store/README.md: FULL survives power loss, NORMAL only a crash. */
static est_err opt_db_sync(opt_ctx *o, const char *v) {
  if (strcmp(v, "full") == 0)
    o->p->ecfg.sync_normal = false;
  else if (strcmp(v, "normal") == 0)
    o->p->ecfg.sync_normal = true;
  else {
    snprintf(o->err, sizeof o->err, "db_synchronous must be full or normal");
    return EST_ERR_CONFIG;
  }
  return EST_OK;
}

static const struct {
  const char *key;
  opt_fn fn;
} opt_table[] = {
  {"root", opt_root},           {"ca_cert", opt_ca_cert},
  {"ca_key", opt_ca_key},       {"cert_days", opt_cert_days},
  {"idevid_trust", opt_idevid}, {"pop_linking", opt_pop},
  {"csr_attrs", opt_csr_attrs}, {"keygen", opt_keygen},
  {"keygen_type", opt_keygen_type}, {"max_body", opt_max_body},
  {"labels", opt_labels},
  {"db_path", opt_db_path},     {"idevid_policy", opt_idevid_policy},
  {"ldevid_policy", opt_ldevid_policy}, {"retry_after", opt_retry_after},
  {"pending_ttl", opt_pending_ttl}, {"max_pending_per_client", opt_max_pending},
  {"db_busy_timeout", opt_db_busy}, {"db_synchronous", opt_db_sync},
  {"idevid_allow_expired", opt_idevid_allow_expired},
};

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

static est_err parse_labels(opt_ctx *o) {
  est_plugin *p = o->p;
  const char *s = o->labels;
  while (s && *s) {
    const char *e = strchr(s, ',');
    size_t n = e ? (size_t)(e - s) : strlen(s);
    if (p->label_count == EST_MAX_LABELS) {
      snprintf(o->err, sizeof o->err, "labels: at most %d", EST_MAX_LABELS);
      return EST_ERR_CONFIG;
    }
    if (n == 0 || n > PROTO_LABEL_MAX) {
      snprintf(o->err, sizeof o->err, "labels: each label needs 1 to %u characters",
               PROTO_LABEL_MAX);
      return EST_ERR_CONFIG;
    }
    char *l = p->labels[p->label_count];
    memcpy(l, s, n);
    l[n] = '\0';
    est_err lrc = proto_label_check(l);
    if (lrc == EST_ERR_EXISTS) {
      /* RFC 7030 §3.2.2: a label must not equal an operation name. */
      snprintf(o->err, sizeof o->err, "labels: '%s' is an EST function name", l);
      return EST_ERR_CONFIG;
    }
    if (lrc != EST_OK) {
      snprintf(o->err, sizeof o->err, "labels: '%s' has a character not allowed in a path", l);
      return EST_ERR_CONFIG;
    }
    for (size_t j = 0; j < p->label_count; j++)
      if (strcmp(p->labels[j], l) == 0) {
        snprintf(o->err, sizeof o->err, "labels: '%s' given twice", l);
        return EST_ERR_CONFIG;
      }
    p->label_count++;
    s = e ? e + 1 : NULL;
  }
  return EST_OK;
}

static est_err parse_options(opt_ctx *o) {
  const coapd_host_api *api = o->p->api;
  size_t n = api->option_count(api->host);
  for (size_t i = 0; i < n; i++) {
    const char *key, *value;
    unsigned line;
    if (api->option_at(api->host, i, &key, &value, &line) != 0)
      return EST_ERR_INTERNAL;
    size_t k = 0;
    while (k < sizeof opt_table / sizeof opt_table[0] && strcmp(opt_table[k].key, key) != 0)
      k++;
    if (k == sizeof opt_table / sizeof opt_table[0]) {
      api->log(api->host, COAPD_LOG_ERR, "%s:%u: unknown est-coaps option 'plugin_opt_%s'",
               api->config_path, line, key);
      return EST_ERR_CONFIG;
    }
    if (opt_table[k].fn(o, value) != EST_OK) {
      api->log(api->host, COAPD_LOG_ERR, "%s:%u: %s", api->config_path, line, o->err);
      return EST_ERR_CONFIG;
    }
  }
  return EST_OK;
}

static est_err load_files(opt_ctx *o) {
  est_plugin *p = o->p;
  const coapd_host_api *api = p->api;
  char a[PATH_MAX], b[PATH_MAX], diag[PATH_MAX + 128] = "";
  est_err rc;

  if (!o->ca_cert || !o->ca_key) {
    api->log(api->host, COAPD_LOG_ERR, "%s:%u: est-coaps needs plugin_opt_ca_cert and plugin_opt_ca_key",
             api->config_path, api->config_line);
    return EST_ERR_CONFIG;
  }
  if (resolve_path(p, o->ca_cert, a, sizeof a) != EST_OK ||
      resolve_path(p, o->ca_key, b, sizeof b) != EST_OK)
    return EST_ERR_TOO_LARGE;
  rc = pki_ca_load(a, b, p->cert_days, &p->ca, diag, sizeof diag);
  if (rc != EST_OK) {
    api->log(api->host, COAPD_LOG_ERR, "%s: ca_cert/ca_key: %s", api->config_path,
             diag[0] ? diag : est_strerror(rc));
    return rc;
  }
  if (o->idevid_trust) {
    if (resolve_path(p, o->idevid_trust, a, sizeof a) != EST_OK)
      return EST_ERR_TOO_LARGE;
    rc = pki_trust_load(a, &p->idevid, diag, sizeof diag);
    if (rc != EST_OK) {
      api->log(api->host, COAPD_LOG_ERR, "%s: idevid_trust: %s", api->config_path,
               diag[0] ? diag : est_strerror(rc));
      return rc;
    }
  }
  /* Manual approval needs somewhere to keep the pending requests. */
  if (!o->db_path && (p->ecfg.idevid == ENROLL_MANUAL || p->ecfg.ldevid == ENROLL_MANUAL)) {
    api->log(api->host, COAPD_LOG_ERR,
             "%s:%u: manual approval needs plugin_opt_db_path (or set idevid_policy and "
             "ldevid_policy to auto)", api->config_path, api->config_line);
    return EST_ERR_CONFIG;
  }
  if (o->db_path && resolve_path(p, o->db_path, b, sizeof b) != EST_OK)
    return EST_ERR_TOO_LARGE;
  p->ecfg.db_path = o->db_path ? b : NULL;
  rc = enroll_open(&p->ecfg, p->ca, p->api, &p->en, diag, sizeof diag);
  p->ecfg.db_path = NULL;
  if (rc != EST_OK) {
    api->log(api->host, COAPD_LOG_ERR, "%s: db_path: %s", api->config_path,
             diag[0] ? diag : est_strerror(rc));
    return rc;
  }
  if (o->csr_attrs) {
    if (resolve_path(p, o->csr_attrs, a, sizeof a) != EST_OK)
      return EST_ERR_TOO_LARGE;
    rc = read_file(a, CSR_ATTRS_MAX, &p->csr_attrs, &p->csr_attrs_len, diag, sizeof diag);
    if (rc == EST_OK && !der_one_sequence(p->csr_attrs, p->csr_attrs_len)) {
      snprintf(diag, sizeof diag, "'%s' is not one DER SEQUENCE (CsrAttrs)", a);
      rc = EST_ERR_CONFIG;
    }
    if (rc != EST_OK) {
      api->log(api->host, COAPD_LOG_ERR, "%s: csr_attrs: %s", api->config_path, diag);
      return rc;
    }
  }
  return EST_OK;
}

static bool fn_enabled(const est_plugin *p, est_fn fn) {
  /* SEC-13: server keygen is off unless configured. Discovery must not
   * list what is not served (DISC-4, decisions.md §2), so disabled
   * functions get no resource at all and answer 4.04. */
  if (fn == EST_FN_SKG || fn == EST_FN_SKC)
    return p->keygen;
  if (fn == EST_FN_ATT)
    return p->csr_attrs != NULL;
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
   * diagnostic payload (decisions.md §4), not libcoap's bare 4.05. */
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
      if (!fn_enabled(p, (est_fn)fn))
        continue;
      /* DISC-5: /.well-known/est is required; decisions.md §2: discovery
       * lists the short root. */
      rc = add_resource(p, "/.well-known/est", label, (est_fn)fn, false);
      if (rc == EST_OK)
        rc = add_resource(p, p->root, label, (est_fn)fn, true);
    }
  }
  return rc;
}

static void est_fini(void *state) {
  est_plugin *p = state;
  if (!p)
    return;
  if (p->wk) {
    p->api->unwatch_fd(p->api->host, p->wk_fd);
    est_async_drop_all(p);
  }
  enroll_close(p->en);
  pki_ca_free(p->ca);
  pki_trust_free(p->idevid);
  free(p->csr_attrs);
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
  p->cert_days = 365;
  p->ecfg.pop = POP_VERIFY;
  p->keygen = false;
  p->ecfg.keygen_type = PKI_KEY_EC_P256;
  p->max_body = 65536;
  p->wk_fd = -1;
  p->ecfg.idevid = ENROLL_MANUAL;
  p->ecfg.ldevid = ENROLL_AUTO;
  p->ecfg.retry_after = 60;
  p->ecfg.pending_ttl = 7 * 86400;
  p->ecfg.max_pending = 5;
  /* Short: a locked database must not stall the CoAP loop for long. */
  p->ecfg.busy_timeout_ms = 50;
  strcpy(p->root, "/est");
  memset(&o, 0, sizeof o);
  o.p = p;

  rc = parse_options(&o);
  if (rc == EST_OK && parse_labels(&o) != EST_OK) {
    api->log(api->host, COAPD_LOG_ERR, "%s:%u: %s", api->config_path, api->config_line, o.err);
    rc = EST_ERR_CONFIG;
  }
  if (rc == EST_OK)
    rc = load_files(&o);
  if (rc == EST_OK && p->keygen) {
    rc = worker_start(&p->wk, &p->wk_fd);
    if (rc == EST_OK && api->watch_fd(api->host, p->wk_fd, est_async_ready, p) != 0)
      rc = EST_ERR_INTERNAL;
    if (rc != EST_OK)
      api->log(api->host, COAPD_LOG_ERR, "starting the keygen worker: %s", est_strerror(rc));
  }
  if (rc == EST_OK) {
    rc = add_resources(p);
    if (rc != EST_OK)
      api->log(api->host, COAPD_LOG_ERR, "adding resources: %s", est_strerror(rc));
  }
  if (rc != EST_OK) {
    est_fini(p);
    return -1;
  }
  api->log(api->host, COAPD_LOG_NOTICE,
           "serving %s and /.well-known/est (%zu label(s)), %zu CA cert(s), "
           "pop_linking %s, keygen %s, att %s, idevid_policy %s, ldevid_policy %s%s",
           p->root, p->label_count, pki_ca_cert_count(p->ca),
           p->ecfg.pop == POP_OFF ? "off" : p->ecfg.pop == POP_VERIFY ? "verify" : "require",
           p->keygen ? "on" : "off", p->csr_attrs ? "on" : "off",
           p->ecfg.idevid == ENROLL_AUTO ? "auto" : "manual",
           p->ecfg.ldevid == ENROLL_AUTO ? "auto" : "manual",
           o.db_path ? "" : ", no db_path: issued certificates are not recorded");
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

static uint32_t est_tick(void *state, uint64_t now_ms) {
  est_plugin *p = state;
  (void)now_ms;
  return enroll_tick(p->en, (long long)time(NULL)) * 1000u;
}

COAPD_PLUGIN_EXPORT const coapd_plugin coapd_plugin_entry = {
  .abi_version = COAPD_PLUGIN_ABI_VERSION,
  .size = sizeof(coapd_plugin),
  .name = "est-coaps",
  .version = EST_VERSION,
  .init = est_init,
  .fini = est_fini,
  .tick = est_tick,
};
