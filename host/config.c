/* coapd config parser: mosquitto.conf-style `key value` lines. No libcoap
 * here, so the unit tests and the fuzzer can use it without a network. */
#include "config.h"
#include "common/opts.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* How much of an offending value an error message echoes. */
#define ECHO_MAX 80

#define OPT_PREFIX "plugin_opt_"

typedef enum key_kind {
  KIND_LISTEN,
  KIND_FILE,
  KIND_PLUGIN,
  KIND_LOG_LEVEL,
  KIND_NUMBER,
  KIND_BOOL,
  KIND_WORD,        /* an enum kept as the word's index in a coapd_num_key */
  KIND_PLUGIN_LEVEL /* log_level of the plugin line before it */
} key_kind;

/* Numbers and words are parsed by common/opts, as plugin options are, so a
 * bad value reads the same in coapd.conf whoever parses it. */
static const char *const level_names[] = {"error", "warning", "notice",
                                          "info",  "debug",   NULL};
/* In the order of COAPD_LOG_DEST_*. */
static const char *const log_dests[] = {"stderr", "syslog", NULL};
/* mosquitto.conf's boolean words; a yes/no key is an enum of these. */
static const char *const yes_no[] = {"yes", "no", NULL};

typedef struct key_def {
  key_kind kind;
  size_t off; /* offset of the coapd_file/num/bool_key in the config */
  /* The name always; type, range and words for the scalar kinds. */
  coapd_opt spec;
} key_def;

static const key_def keys[] = {
    {KIND_LISTEN,
     0,
     {.name = "listen",
      .type = COAPD_OPT_STRING,
      .flags = COAPD_OPT_REQUIRED,
      .doc = "ADDR PORT: a coaps (DTLS) endpoint; ADDR is an IPv4 or IPv6 "
             "literal (:: is dual-stack: IPv4 too); repeatable"}},
    /* The same ADDR PORT checks as listen (key_listen picks by offset). */
    {KIND_LISTEN,
     offsetof(coapd_config, metrics_listen),
     {.name = "metrics_listen",
      .type = COAPD_OPT_STRING,
      .doc = "ADDR PORT: plain HTTP GET /metrics (Prometheus) and /healthz, "
             "no TLS: bind loopback or a management network; up to 4"}},
    {KIND_FILE,
     offsetof(coapd_config, dtls_cert),
     {.name = "dtls_cert",
      .type = COAPD_OPT_PATH,
      .flags = COAPD_OPT_REQUIRED,
      .doc = "the server certificate, PEM"}},
    {KIND_FILE,
     offsetof(coapd_config, dtls_key),
     {.name = "dtls_key",
      .type = COAPD_OPT_PATH,
      .flags = COAPD_OPT_REQUIRED,
      .doc = "its private key, PEM; must match dtls_cert and must not be "
             "readable by other users (0600; 0640 is taken with a warning); "
             "or an RFC 7512 pkcs11: URI of a key on a token"}},
    {KIND_FILE,
     offsetof(coapd_config, dtls_key_pin_file),
     {.name = "dtls_key_pin_file",
      .type = COAPD_OPT_PATH,
      .doc = "the PIN of a pkcs11: dtls_key, on one line; not readable by "
             "other users"}},
    {KIND_FILE,
     offsetof(coapd_config, dtls_ca),
     {.name = "dtls_ca",
      .type = COAPD_OPT_PATH,
      .flags = COAPD_OPT_REQUIRED,
      .doc = "PEM bundle of the trust anchors client certificates must chain "
             "to (the EST CA and any manufacturer CAs)"}},
    {KIND_FILE,
     offsetof(coapd_config, plugin_dir),
     {.name = "plugin_dir",
      .type = COAPD_OPT_PATH,
      .doc = "where a bare plugin name is looked up; default: $COAPD_PLUGIN_PATH, "
             "else the install's lib/est-coaps found from the coapd binary, "
             "else the build-time folder"}},
    {KIND_PLUGIN,
     0,
     {.name = "plugin",
      .type = COAPD_OPT_PATH,
      .doc = "a plugin .so (a bare name is looked up in plugin_dir); its "
             "plugin_opt_KEY VALUE lines follow it; repeatable"}},
    {KIND_LOG_LEVEL,
     0,
     {.name = "log_level",
      .type = COAPD_OPT_ENUM,
      .words = level_names,
      .doc = "the least severe messages that are logged"}},
    {KIND_WORD,
     offsetof(coapd_config, log_dest),
     {.name = "log_dest",
      .type = COAPD_OPT_ENUM,
      .words = log_dests,
      .def = "stderr",
      .doc = "stderr (one line per message; under systemd with journald "
             "priority prefixes) or syslog (facility daemon)"}},
    {KIND_PLUGIN_LEVEL,
     0,
     {.name = "plugin_log_level",
      .type = COAPD_OPT_ENUM,
      .words = level_names,
      .doc = "after a plugin line: that plugin's own log_level (its lines "
             "only; libcoap and coapd keep log_level)"}},
    {KIND_NUMBER,
     offsetof(coapd_config, session_timeout),
     {.name = "session_timeout",
      .doc = "idle DTLS sessions are closed after this many seconds",
      .type = COAPD_OPT_INT,
      .min = 1,
      .max = 86400}},
    {KIND_NUMBER,
     offsetof(coapd_config, max_idle_sessions),
     {.name = "max_idle_sessions",
      .doc = "cap on idle DTLS sessions",
      .type = COAPD_OPT_INT,
      .min = 1,
      .max = 1000000}},
    {KIND_NUMBER,
     offsetof(coapd_config, max_handshake_sessions),
     {.name = "max_handshake_sessions",
      .doc = "cap on sessions still in the DTLS handshake",
      .type = COAPD_OPT_INT,
      .min = 1,
      .max = 100000}},
    {KIND_NUMBER,
     offsetof(coapd_config, dtls_verify_depth),
     {.name = "dtls_verify_depth",
      .type = COAPD_OPT_INT,
      .min = 1,
      .max = 16,
      .doc = "longest client certificate chain accepted"}},
    {KIND_BOOL,
     offsetof(coapd_config, dtls_allow_expired),
     {.name = "dtls_allow_expired",
      .type = COAPD_OPT_ENUM,
      .words = yes_no,
      .doc = "yes: a client chain that verifies passes the handshake even when "
             "expired or not yet valid, and each plugin checks validity itself "
             "(est_coaps.so: idevid_allow_expired)"}},
    {KIND_BOOL,
     offsetof(coapd_config, dtls_reboot_probe),
     {.name = "dtls_reboot_probe",
      .type = COAPD_OPT_ENUM,
      .words = yes_no,
      .doc = "yes: a new ClientHello from the address and port of a live "
             "session pings that session and drops it if it does not answer "
             "within 6 s, so a rebooted device gets back in (RFC 6347)"}},
    {KIND_BOOL,
     offsetof(coapd_config, dtls_admission),
     {.name = "dtls_admission",
      .type = COAPD_OPT_ENUM,
      .words = yes_no,
      .doc = "admission control under a ClientHello flood "
             "(docs/admission.md); no leaves only libcoap's own caps"}},
    {KIND_NUMBER,
     offsetof(coapd_config, max_handshakes_per_addr),
     {.name = "max_handshakes_per_addr", .type = COAPD_OPT_INT, .min = 1, .max = 100000,
      .doc = "half-open handshakes one source address may hold; a new one "
             "past it evicts the one whose peer was silent longest"}},
    {KIND_NUMBER,
     offsetof(coapd_config, handshake_pressure),
     {.name = "handshake_pressure", .type = COAPD_OPT_INT, .min = 0, .max = 100000,
      .doc = "from this many half-open handshakes on, a new peer's ClientHello "
             "must be a retransmission (0: always); below both caps, left at "
             "its default half the smaller one"}},
    {KIND_NUMBER,
     offsetof(coapd_config, handshake_timeout),
     {.name = "handshake_timeout", .type = COAPD_OPT_INT, .min = 1, .max = 30,
      .doc = "under pressure, a half-open handshake whose peer has been silent "
             "this many seconds is dropped"}},
    {KIND_NUMBER,
     offsetof(coapd_config, max_parked_handshakes),
     {.name = "max_parked_handshakes", .type = COAPD_OPT_INT, .min = 0, .max = 65536,
      .doc = "sessions that never returned the DTLS cookie, kept without "
             "their DTLS state for 31 s; 0: none are parked"}},
};

#define NKEYS (sizeof keys / sizeof keys[0])

typedef struct parser {
  coapd_config *cfg;
  const char *path;
  unsigned line;
  char *err;
  size_t errlen;
} parser;

const char *coapd_log_level_name(int level) {
  if (level < 3 || level > 7)
    return "?";
  return level_names[level - 3];
}

void coapd_errf(char *err, size_t errlen, const char *fmt, ...) {
  if (!err || errlen == 0)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

/* Write "PATH:LINE: message" and return EST_ERR_CONFIG. */
__attribute__((format(printf, 2, 3))) static est_err
fail(parser *p, const char *fmt, ...) {
  if (p->err && p->errlen) {
    int n = snprintf(p->err, p->errlen, "%s:%u: ", p->path, p->line);
    if (n >= 0 && (size_t)n < p->errlen) {
      va_list ap;
      va_start(ap, fmt);
      vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
      va_end(ap);
    }
  }
  return EST_ERR_CONFIG;
}

static int is_blank(char c) { return c == ' ' || c == '\t'; }

static char *dup_n(const char *s, size_t n) {
  char *d = malloc(n + 1);
  if (d) {
    memcpy(d, s, n);
    d[n] = '\0';
  }
  return d;
}

/* Join a relative path to the config file's directory, so a config works
 * the same whatever the daemon's working directory is. */
static est_err resolve_path(parser *p, const char *name, const char *val,
                            size_t n, char **out) {
  const char *slash = strrchr(p->path, '/');
  size_t dirlen = 0;
  if (val[0] != '/' && slash)
    dirlen = (size_t)(slash - p->path) + 1; /* keep the '/' */
  if (dirlen + n + 1 > COAPD_CONFIG_MAX_PATH)
    return fail(p, "%s path longer than %u bytes", name,
                COAPD_CONFIG_MAX_PATH - 1);
  char *s = malloc(dirlen + n + 1);
  if (!s)
    return EST_ERR_NOMEM;
  memcpy(s, p->path, dirlen);
  memcpy(s + dirlen, val, n);
  s[dirlen + n] = '\0';
  *out = s;
  return EST_OK;
}

static est_err key_listen(parser *p, const key_def *k, const char *val, size_t n) {
  coapd_config *cfg = p->cfg;
  /* listen, or metrics_listen (docs/metrics.md): one parser for both. */
  int metrics = k->off == offsetof(coapd_config, metrics_listen);
  const char *name = k->spec.name;
  coapd_listen *arr = metrics ? cfg->metrics_listen : cfg->listen;
  size_t *count = metrics ? &cfg->nmetrics_listen : &cfg->nlisten;
  unsigned max = metrics ? COAPD_CONFIG_MAX_METRICS_LISTEN : COAPD_CONFIG_MAX_LISTEN;
  size_t alen = 0;
  while (alen < n && !is_blank(val[alen]))
    alen++;
  size_t ps = alen;
  while (ps < n && is_blank(val[ps]))
    ps++;
  size_t plen = 0;
  while (ps + plen < n && !is_blank(val[ps + plen]))
    plen++;
  if (ps + plen != n || plen == 0)
    return fail(p, "%s needs ADDR PORT, got '%.*s'", name,
                (int)(n < ECHO_MAX ? n : ECHO_MAX), val);
  if (*count >= max)
    return fail(p, "more than %u %s lines", max, name);

  coapd_listen *l = &arr[*count];
  unsigned char bin[16];
  if (alen >= sizeof l->addr)
    return fail(p, "bad address '%.*s' (IPv4 or IPv6 literal)",
                (int)(alen < ECHO_MAX ? alen : ECHO_MAX), val);
  memcpy(l->addr, val, alen);
  l->addr[alen] = '\0';
  if (inet_pton(AF_INET, l->addr, bin) == 1)
    l->family = AF_INET;
  else if (inet_pton(AF_INET6, l->addr, bin) == 1)
    l->family = AF_INET6;
  else
    return fail(p, "bad address '%s' (IPv4 or IPv6 literal)", l->addr);

  /* The port is parsed like every other number (common/opts.h). */
  const coapd_opt port_spec = {.name = metrics ? "metrics_listen PORT" : "listen PORT",
                               .type = COAPD_OPT_INT, .min = 1, .max = 65535};
  char pbuf[COAPD_CONFIG_MAX_LINE + 1], problem[EST_OPTS_ERR_MAX];
  est_optval pv;
  memcpy(pbuf, val + ps, plen); /* plen < n <= COAPD_CONFIG_MAX_LINE */
  pbuf[plen] = '\0';
  if (est_opts_value(&port_spec, NULL, pbuf, &pv, problem, sizeof problem) !=
      EST_OK)
    return fail(p, "%s", problem);
  unsigned port = (unsigned)pv.num;
  l->port = (uint16_t)port;
  l->line = p->line;

  for (size_t i = 0; i < *count; i++) {
    const coapd_listen *o = &arr[i];
    unsigned char obin[16];
    if (o->family != l->family || o->port != l->port ||
        inet_pton(o->family, o->addr, obin) != 1)
      continue;
    if (memcmp(obin, bin, l->family == AF_INET ? 4 : 16) == 0)
      return fail(p, "duplicate %s %s %u (first on line %u)", name, l->addr, port,
                  o->line);
  }
  (*count)++;
  return EST_OK;
}

static est_err key_file(parser *p, const key_def *k, const char *val,
                        size_t n) {
  coapd_file_key *f = (coapd_file_key *)((char *)p->cfg + k->off);
  if (f->line)
    return fail(p, "duplicate '%s' (first set on line %u)", k->spec.name,
                f->line);
  /* A token key is a URI, not a file (docs/decisions.md §20). */
  if (k->off == offsetof(coapd_config, dtls_key) && n > 7 &&
      strncmp(val, "pkcs11:", 7) == 0) {
    if (n + 1 > COAPD_CONFIG_MAX_PATH)
      return fail(p, "dtls_key URI longer than %u bytes", COAPD_CONFIG_MAX_PATH - 1);
    f->path = dup_n(val, n);
    p->cfg->dtls_token = calloc(1, sizeof *p->cfg->dtls_token);
    if (!f->path || !p->cfg->dtls_token)
      return EST_ERR_NOMEM;
    p->cfg->dtls_token->cert_fd = -1;
    f->line = p->line;
    return EST_OK;
  }
  est_err rc = resolve_path(p, k->spec.name, val, n, &f->path);
  if (rc == EST_OK)
    f->line = p->line;
  return rc;
}

static est_err key_plugin(parser *p, const char *val, size_t n) {
  coapd_config *cfg = p->cfg;
  if (cfg->nplugins >= COAPD_CONFIG_MAX_PLUGINS)
    return fail(p, "more than %u plugin lines", COAPD_CONFIG_MAX_PLUGINS);
  if (!cfg->plugins) {
    cfg->plugins = calloc(COAPD_CONFIG_MAX_PLUGINS, sizeof *cfg->plugins);
    if (!cfg->plugins)
      return EST_ERR_NOMEM;
  }
  coapd_plugin_conf *pc = &cfg->plugins[cfg->nplugins];
  est_err rc;
  if (memchr(val, '/', n)) {
    rc = resolve_path(p, "plugin", val, n, &pc->path);
  } else {
    /* A bare name is looked up in the plugin directory later. */
    if (n + 1 > COAPD_CONFIG_MAX_PATH)
      return fail(p, "plugin path longer than %u bytes",
                  COAPD_CONFIG_MAX_PATH - 1);
    pc->path = dup_n(val, n);
    pc->bare = 1;
    rc = pc->path ? EST_OK : EST_ERR_NOMEM;
  }
  if (rc != EST_OK)
    return rc;
  pc->line = p->line;
  cfg->nplugins++;
  return EST_OK;
}

static est_err key_plugin_opt(parser *p, const char *key, size_t klen,
                              const char *val, size_t n) {
  coapd_config *cfg = p->cfg;
  const char *ok = key + strlen(OPT_PREFIX);
  size_t oklen = klen - strlen(OPT_PREFIX);
  if (oklen == 0)
    return fail(p, "'" OPT_PREFIX "' needs a KEY (" OPT_PREFIX "KEY VALUE)");
  if (oklen > COAPD_CONFIG_MAX_OPT_KEY)
    return fail(p, "option key longer than %u bytes", COAPD_CONFIG_MAX_OPT_KEY);
  for (size_t i = 0; i < oklen; i++) {
    char c = ok[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.'))
      return fail(p, "bad option key '%.*s' (letters, digits, '_-.')",
                  (int)oklen, ok);
  }
  if (cfg->nplugins == 0)
    return fail(p, "'%.*s' without a preceding 'plugin' line", (int)klen, key);
  coapd_plugin_conf *pc = &cfg->plugins[cfg->nplugins - 1];
  if (pc->nopts >= COAPD_CONFIG_MAX_OPTIONS)
    return fail(p, "more than %u options for the plugin on line %u",
                COAPD_CONFIG_MAX_OPTIONS, pc->line);
  if (!pc->opts) {
    pc->opts = calloc(COAPD_CONFIG_MAX_OPTIONS, sizeof *pc->opts);
    if (!pc->opts)
      return EST_ERR_NOMEM;
  }
  coapd_option *o = &pc->opts[pc->nopts];
  o->key = dup_n(ok, oklen);
  o->value = dup_n(val, n);
  if (!o->key || !o->value) {
    free(o->key);
    free(o->value);
    o->key = o->value = NULL;
    return EST_ERR_NOMEM;
  }
  o->line = p->line;
  pc->nopts++;
  return EST_OK;
}

/* log_level, the numbers and yes/no: once each, value parsed by
 * est_opts_value() (common/opts.h). */
static est_err key_scalar(parser *p, const key_def *k, const char *val,
                          size_t n) {
  coapd_config *cfg = p->cfg;
  unsigned *line;
  char buf[COAPD_CONFIG_MAX_LINE + 1], problem[EST_OPTS_ERR_MAX];
  est_optval v;
  switch (k->kind) {
  case KIND_LOG_LEVEL:
    line = &cfg->log_level_line;
    break;
  case KIND_NUMBER:
    line = &((coapd_num_key *)((char *)cfg + k->off))->line;
    break;
  case KIND_BOOL:
    line = &((coapd_bool_key *)((char *)cfg + k->off))->line;
    break;
  case KIND_WORD:
    line = &((coapd_num_key *)((char *)cfg + k->off))->line;
    break;
  case KIND_PLUGIN_LEVEL:
    if (cfg->nplugins == 0)
      return fail(p, "'%s' must follow the plugin line it is for", k->spec.name);
    line = &cfg->plugins[cfg->nplugins - 1].log_level_line;
    break;
  default:
    return EST_ERR_INTERNAL;
  }
  if (*line)
    return fail(p, "duplicate '%s' (first set on line %u)", k->spec.name,
                *line);
  /* The value is a slice of a line, and lines fit the buffer. */
  if (n > COAPD_CONFIG_MAX_LINE)
    return EST_ERR_INTERNAL;
  memcpy(buf, val, n);
  buf[n] = '\0';
  if (est_opts_value(&k->spec, NULL, buf, &v, problem, sizeof problem) !=
      EST_OK)
    return fail(p, "%s", problem);
  if (k->kind == KIND_LOG_LEVEL)
    cfg->log_level = v.word + 3; /* syslog numbering, error = 3 */
  else if (k->kind == KIND_PLUGIN_LEVEL)
    cfg->plugins[cfg->nplugins - 1].log_level = v.word + 3;
  else if (k->kind == KIND_WORD)
    ((coapd_num_key *)((char *)cfg + k->off))->value = (unsigned)v.word;
  else if (k->kind == KIND_NUMBER)
    ((coapd_num_key *)((char *)cfg + k->off))->value = (unsigned)v.num;
  else
    ((coapd_bool_key *)((char *)cfg + k->off))->value = v.word == 0; /* yes */
  *line = p->line;
  return EST_OK;
}

/* The same did-you-mean as for plugin options (common/opts.h). */
static est_err unknown_key(parser *p, const char *key, size_t klen) {
  const char *names[NKEYS];
  char k[EST_OPTS_NAME_MAX + 1];
  int ek = (int)(klen < ECHO_MAX ? klen : ECHO_MAX);
  const char *near = NULL;
  for (size_t i = 0; i < NKEYS; i++)
    names[i] = keys[i].spec.name;
  if (klen <= EST_OPTS_NAME_MAX) {
    memcpy(k, key, klen);
    k[klen] = '\0';
    near = est_opts_suggest(k, names, NKEYS);
  }
  if (near)
    return fail(p, "unknown key '%.*s'; did you mean '%s'?", ek, key, near);
  return fail(p, "unknown key '%.*s'", ek, key);
}

/* One non-comment line: split KEY and VALUE, dispatch. */
static est_err parse_line(parser *p, const char *s, size_t n) {
  size_t klen = 0;
  while (klen < n && !is_blank(s[klen]))
    klen++;
  const char *val = s + klen;
  size_t vlen = n - klen;
  while (vlen && is_blank(*val)) {
    val++;
    vlen--;
  }
  while (vlen && is_blank(val[vlen - 1]))
    vlen--;
  int ek = (int)(klen < ECHO_MAX ? klen : ECHO_MAX);

  const key_def *k = NULL;
  for (size_t i = 0; i < NKEYS; i++) {
    if (strlen(keys[i].spec.name) == klen &&
        memcmp(keys[i].spec.name, s, klen) == 0) {
      k = &keys[i];
      break;
    }
  }
  int is_opt = !k && klen >= strlen(OPT_PREFIX) &&
               memcmp(s, OPT_PREFIX, strlen(OPT_PREFIX)) == 0;
  if (!k && !is_opt)
    return unknown_key(p, s, klen);
  if (vlen == 0)
    return fail(p, "missing value for '%.*s'", ek, s);
  if (is_opt)
    return key_plugin_opt(p, s, klen, val, vlen);
  switch (k->kind) {
  case KIND_LISTEN:
    return key_listen(p, k, val, vlen);
  case KIND_FILE:
    return key_file(p, k, val, vlen);
  case KIND_PLUGIN:
    return key_plugin(p, val, vlen);
  case KIND_LOG_LEVEL:
  case KIND_NUMBER:
  case KIND_BOOL:
  case KIND_WORD:
  case KIND_PLUGIN_LEVEL:
    return key_scalar(p, k, val, vlen);
  }
  return EST_ERR_INTERNAL;
}

static void set_defaults(coapd_config *cfg) {
  cfg->log_level = COAPD_DEFAULT_LOG_LEVEL;
  cfg->session_timeout.value = COAPD_DEFAULT_SESSION_TIMEOUT;
  cfg->max_idle_sessions.value = COAPD_DEFAULT_MAX_IDLE_SESSIONS;
  cfg->max_handshake_sessions.value = COAPD_DEFAULT_MAX_HANDSHAKE_SESSIONS;
  cfg->dtls_verify_depth.value = COAPD_DEFAULT_DTLS_VERIFY_DEPTH;
  cfg->dtls_reboot_probe.value = 1;
  cfg->dtls_admission.value = 1;
  cfg->max_handshakes_per_addr.value = COAPD_DEFAULT_MAX_HANDSHAKES_PER_ADDR;
  cfg->handshake_pressure.value = COAPD_DEFAULT_HANDSHAKE_PRESSURE;
  cfg->handshake_timeout.value = COAPD_DEFAULT_HANDSHAKE_TIMEOUT;
  cfg->max_parked_handshakes.value = COAPD_DEFAULT_MAX_PARKED_HANDSHAKES;
}

/* The pressure threshold bounds the ClientHellos that pass before the
 * retransmission check starts, whose sessions nothing can free for 30 s
 * (docs/admission.md); below both caps, one address and all of them
 * always keep room for a handshake that can be evicted. */
static est_err check_admission(parser *p) {
  coapd_config *cfg = p->cfg;
  coapd_num_key *pr = &cfg->handshake_pressure;
  const coapd_num_key *caps[] = {&cfg->max_handshakes_per_addr, &cfg->max_handshake_sessions};
  const char *names[] = {"max_handshakes_per_addr", "max_handshake_sessions"};
  if (!cfg->dtls_admission.value)
    return EST_OK;
  for (size_t i = 0; i < 2; i++) {
    if (pr->value < caps[i]->value)
      continue;
    if (!pr->line) {
      /* Default pressure over a small cap: half the cap (0: always). */
      pr->value = caps[i]->value / 2u;
      continue;
    }
    unsigned line = pr->line > caps[i]->line ? pr->line : caps[i]->line;
    coapd_errf(p->err, p->errlen,
               "%s:%u: handshake_pressure %u must be below %s %u (docs/admission.md)", p->path,
               line, pr->value, names[i], caps[i]->value);
    return EST_ERR_CONFIG;
  }
  return EST_OK;
}

static est_err check_required(parser *p) {
  const coapd_config *cfg = p->cfg;
  const char *missing = NULL;
  if (cfg->nlisten == 0)
    missing = "listen";
  else if (!cfg->dtls_cert.line)
    missing = "dtls_cert";
  else if (!cfg->dtls_key.line)
    missing = "dtls_key";
  else if (!cfg->dtls_ca.line)
    missing = "dtls_ca";
  if (!missing)
    return EST_OK;
  coapd_errf(p->err, p->errlen, "%s: missing required key '%s'", p->path, missing);
  return EST_ERR_CONFIG;
}

est_err coapd_config_parse_buf(const char *text, size_t len, const char *path,
                               coapd_config **out, char *err, size_t errlen) {
  est_err rc = EST_OK;
  parser p = {.path = path ? path : "(config)", .err = err, .errlen = errlen};
  if (err && errlen)
    err[0] = '\0';
  if (out)
    *out = NULL;
  if (!out || (!text && len))
    return EST_ERR_INVALID;
  if (len > COAPD_CONFIG_MAX_BYTES) {
    coapd_errf(err, errlen, "%s: larger than %u bytes", p.path,
            COAPD_CONFIG_MAX_BYTES);
    return EST_ERR_TOO_LARGE;
  }
  p.cfg = calloc(1, sizeof *p.cfg);
  if (!p.cfg || !(p.cfg->path = dup_n(p.path, strlen(p.path)))) {
    rc = EST_ERR_NOMEM;
    goto out;
  }
  set_defaults(p.cfg);

  size_t pos = 0;
  while (pos < len) {
    p.line++;
    const char *s = text + pos;
    const char *nl = memchr(s, '\n', len - pos);
    size_t n = nl ? (size_t)(nl - s) : len - pos;
    pos += n + (nl ? 1 : 0);
    if (n && s[n - 1] == '\r') /* CRLF files */
      n--;
    if (n > COAPD_CONFIG_MAX_LINE) {
      rc = fail(&p, "line longer than %u bytes", COAPD_CONFIG_MAX_LINE);
      goto out;
    }
    for (size_t i = 0; i < n; i++) {
      unsigned char c = (unsigned char)s[i];
      if ((c < 0x20 && c != '\t') || c == 0x7f) {
        rc = fail(&p, "control character 0x%02x in line", c);
        goto out;
      }
    }
    while (n && is_blank(*s)) {
      s++;
      n--;
    }
    if (n == 0 || s[0] == '#')
      continue;
    if ((rc = parse_line(&p, s, n)) != EST_OK)
      goto out;
  }
  rc = check_required(&p);
  if (rc == EST_OK)
    rc = check_admission(&p);

out:
  if (rc == EST_ERR_NOMEM)
    coapd_errf(err, errlen, "%s: out of memory", p.path);
  if (rc != EST_OK) {
    coapd_config_free(p.cfg);
    return rc;
  }
  *out = p.cfg;
  return EST_OK;
}

est_err coapd_config_parse_file(const char *path, coapd_config **out, char *err,
                                size_t errlen) {
  est_err rc = EST_ERR_IO;
  char *buf = NULL;
  size_t len = 0;
  if (out)
    *out = NULL;
  if (!path || !out)
    return EST_ERR_INVALID;
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0) {
    coapd_errf(err, errlen, "%s: %s", path, strerror(errno));
    goto out;
  }
  if (!S_ISREG(st.st_mode)) {
    coapd_errf(err, errlen, "%s: not a regular file", path);
    goto out;
  }
  /* Read at most one byte past the cap, whatever st_size says. */
  buf = malloc(COAPD_CONFIG_MAX_BYTES + 1);
  if (!buf) {
    rc = EST_ERR_NOMEM;
    coapd_errf(err, errlen, "%s: out of memory", path);
    goto out;
  }
  while (len <= COAPD_CONFIG_MAX_BYTES) {
    ssize_t r = read(fd, buf + len, COAPD_CONFIG_MAX_BYTES + 1 - len);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0) {
      coapd_errf(err, errlen, "%s: %s", path, strerror(errno));
      goto out;
    }
    if (r == 0)
      break;
    len += (size_t)r;
  }
  rc = coapd_config_parse_buf(buf, len, path, out, err, errlen);
out:
  if (fd >= 0)
    close(fd);
  free(buf);
  return rc;
}

void coapd_config_free(coapd_config *cfg) {
  if (!cfg)
    return;
  for (size_t i = 0; i < cfg->nplugins; i++) {
    coapd_plugin_conf *pc = &cfg->plugins[i];
    for (size_t j = 0; j < pc->nopts; j++) {
      free(pc->opts[j].key);
      free(pc->opts[j].value);
    }
    free(pc->opts);
    free(pc->path);
  }
  free(cfg->plugins);
  free(cfg->dtls_cert.path);
  free(cfg->dtls_key.path);
  free(cfg->dtls_ca.path);
  free(cfg->dtls_key_pin_file.path);
  if (cfg->dtls_token) {
    if (cfg->dtls_token->pin) {
      explicit_bzero(cfg->dtls_token->pin, strlen(cfg->dtls_token->pin));
      free(cfg->dtls_token->pin);
    }
    if (cfg->dtls_token->cert_fd >= 0)
      close(cfg->dtls_token->cert_fd);
    free(cfg->dtls_token);
  }
  free(cfg->plugin_dir.path);
  free(cfg->path);
  free(cfg);
}

est_err coapd_config_plugin_file(const coapd_plugin_conf *pc,
                                 const char *plugin_dir, char *buf,
                                 size_t buflen) {
  int n;
  if (!pc || !buf || buflen == 0)
    return EST_ERR_INVALID;
  if (pc->bare)
    n = snprintf(buf, buflen, "%s/%s", plugin_dir ? plugin_dir : ".", pc->path);
  else
    n = snprintf(buf, buflen, "%s", pc->path);
  return (n < 0 || (size_t)n >= buflen) ? EST_ERR_TOO_LARGE : EST_OK;
}

/* Open for reading and require a regular file: as root, access(R_OK) says
 * yes to everything, so only an actual open() tells the truth. */
static est_err check_file(const coapd_config *cfg, const char *key,
                          const char *path, unsigned line, char *err,
                          size_t errlen) {
  est_err rc = EST_OK;
  struct stat st;
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0 || fstat(fd, &st) != 0) {
    coapd_errf(err, errlen, "%s:%u: %s '%s': %s", cfg->path, line, key, path,
            strerror(errno));
    rc = EST_ERR_CONFIG;
  } else if (!S_ISREG(st.st_mode)) {
    coapd_errf(err, errlen, "%s:%u: %s '%s': %s", cfg->path, line, key, path,
            S_ISDIR(st.st_mode) ? strerror(EISDIR) : "not a regular file");
    rc = EST_ERR_CONFIG;
  }
  if (fd >= 0)
    close(fd);
  return rc;
}

est_err coapd_config_check_files(const coapd_config *cfg,
                                 const char *plugin_dir, char *err,
                                 size_t errlen) {
  est_err rc;
  if (!cfg)
    return EST_ERR_INVALID;
  const struct {
    const char *key;
    const coapd_file_key *f;
  } files[] = {{"dtls_cert", &cfg->dtls_cert},
               {"dtls_key", &cfg->dtls_key},
               {"dtls_ca", &cfg->dtls_ca},
               {"dtls_key_pin_file", &cfg->dtls_key_pin_file}};
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
    if (!files[i].f->path || (files[i].f == &cfg->dtls_key && cfg->dtls_token))
      continue;
    rc = check_file(cfg, files[i].key, files[i].f->path, files[i].f->line, err,
                    errlen);
    if (rc != EST_OK)
      return rc;
  }
  for (size_t i = 0; i < cfg->nplugins; i++) {
    char file[COAPD_CONFIG_MAX_PATH + 256];
    const coapd_plugin_conf *pc = &cfg->plugins[i];
    if (coapd_config_plugin_file(pc, plugin_dir, file, sizeof file) != EST_OK) {
      coapd_errf(err, errlen, "%s:%u: plugin '%s': path too long", cfg->path,
              pc->line, pc->path);
      return EST_ERR_CONFIG;
    }
    rc = check_file(cfg, "plugin", file, pc->line, err, errlen);
    if (rc != EST_OK)
      return rc;
  }
  return EST_OK;
}

/* --help-config: the keys table as --help-plugin prints a plugin's, with
 * the defaults taken from set_defaults(), so the man page generated from
 * it (docs/man/) cannot drift from the parser. */
est_err coapd_config_help(FILE *out) {
  coapd_opt spec[NKEYS];
  char defs[NKEYS][24];
  coapd_config d;
  if (!out)
    return EST_ERR_INVALID;
  memset(&d, 0, sizeof d);
  set_defaults(&d);
  for (size_t i = 0; i < NKEYS; i++) {
    const key_def *k = &keys[i];
    spec[i] = k->spec;
    switch (k->kind) {
    case KIND_LOG_LEVEL:
      spec[i].def = coapd_log_level_name(d.log_level);
      break;
    case KIND_NUMBER:
      snprintf(defs[i], sizeof defs[i], "%u",
               ((const coapd_num_key *)((const char *)&d + k->off))->value);
      spec[i].def = defs[i];
      break;
    case KIND_BOOL:
      spec[i].def =
          ((const coapd_bool_key *)((const char *)&d + k->off))->value ? "yes"
                                                                         : "no";
      break;
    default:
      break;
    }
    if (!spec[i].type) /* a key whose value only its own parser checks */
      spec[i].type = COAPD_OPT_STRING;
  }
  coapd_opt_table t = {sizeof t, sizeof spec[0], "coapd", spec, NKEYS};
  if (fprintf(out, "coapd configuration keys: one 'KEY VALUE' line each in "
                   "coapd.conf; '#' starts a comment.\n"
                   "Plugin options (" OPT_PREFIX "KEY): coapd --help-plugin "
                   "PLUGIN.\n\n") < 0)
    return EST_ERR_IO;
  return est_opts_help(&t, "", out);
}
