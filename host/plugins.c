/* Plugin loading (dlopen + descriptor checks), the coapd_host_api functions
 * and per-session plugin data. */
#include "coapd.h"
#include "metrics.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gnutls/gnutls.h>

#include "common/opts.h"

#define PLUGIN_NAME_MAX 64
/* How plugin options are written in coapd.conf, for messages and help. */
#define OPT_PREFIX "plugin_opt_"

/* Host data attached to a session with coap_session_set_app_data: one
 * slot per plugin. Also kept in a list, because coap_free_context() frees
 * sessions without a SERVER_SESSION_DEL event (docs/libcoap-4.3.1.md §5). */
typedef struct sess_slot {
  void *data;
  void (*free_fn)(void *data);
} sess_slot;

struct coapd_sess {
  coapd_sess *prev, *next;
  coap_session_t *session;
  size_t nslots;
  sess_slot slot[];
};

/* ---- session data ---------------------------------------------------- */

static void sess_free(coapd_app *app, coapd_sess *s) {
  /* Unlink first: a free_fn must not find a half-freed entry. */
  if (s->prev)
    s->prev->next = s->next;
  else
    app->sessions = s->next;
  if (s->next)
    s->next->prev = s->prev;
  coap_session_set_app_data(s->session, NULL);
  for (size_t i = 0; i < s->nslots; i++) {
    if (s->slot[i].free_fn && s->slot[i].data)
      s->slot[i].free_fn(s->slot[i].data);
  }
  free(s);
}

void coapd_session_release(coapd_app *app, coap_session_t *session) {
  coapd_sess *s = coap_session_get_app_data(session);
  if (s)
    sess_free(app, s);
}

void coapd_sessions_release_all(coapd_app *app) {
  while (app->sessions)
    sess_free(app, app->sessions);
}

static void *api_session_data(coapd_host *host, coap_session_t *session) {
  if (!host || !session)
    return NULL;
  coapd_sess *s = coap_session_get_app_data(session);
  return s && host->index < s->nslots ? s->slot[host->index].data : NULL;
}

static int api_session_data_set(coapd_host *host, coap_session_t *session,
                                void *data, void (*free_fn)(void *data)) {
  if (!host || !session) {
    if (free_fn && data)
      free_fn(data);
    return -1;
  }
  coapd_app *app = host->app;
  coapd_sess *s = coap_session_get_app_data(session);
  if (!s) {
    size_t n = app->cfg->nplugins;
    s = calloc(1, sizeof *s + n * sizeof s->slot[0]);
    if (!s) {
      /* The data is consumed either way (plugin.h). */
      if (free_fn && data)
        free_fn(data);
      return -1;
    }
    s->session = session;
    s->nslots = n;
    s->next = app->sessions;
    if (s->next)
      s->next->prev = s;
    app->sessions = s;
    coap_session_set_app_data(session, s);
  }
  sess_slot old = s->slot[host->index];
  s->slot[host->index].data = data;
  s->slot[host->index].free_fn = free_fn;
  if (old.free_fn && old.data && old.data != data)
    old.free_fn(old.data);
  return 0;
}

/* ---- identity -------------------------------------------------------- */

static gnutls_session_t tls_of(coap_session_t *session) {
  coap_tls_library_t lib = COAP_TLS_LIBRARY_NOTLS;
  void *tls = session ? coap_session_get_tls(session, &lib) : NULL;
  /* The pointer is backend-specific (docs/libcoap-4.3.1.md §5). */
  return tls && lib == COAP_TLS_LIBRARY_GNUTLS ? (gnutls_session_t)tls : NULL;
}

static int api_peer_chain(coapd_host *host, coap_session_t *session,
                          const coapd_blob **certs, size_t *count) {
  if (count)
    *count = 0;
  if (certs)
    *certs = NULL;
  gnutls_session_t gs = tls_of(session);
  if (!host || !certs || !count || !gs)
    return -1;
  unsigned n = 0;
  const gnutls_datum_t *peers = gnutls_certificate_get_peers(gs, &n);
  if (!peers || n == 0)
    return -1;
  if (n > COAPD_CHAIN_MAX)
    n = COAPD_CHAIN_MAX;
  for (unsigned i = 0; i < n; i++) {
    host->chain[i].data = peers[i].data;
    host->chain[i].len = peers[i].size;
  }
  *certs = host->chain;
  *count = n;
  return 0;
}

static int api_channel_binding(coapd_host *host, coap_session_t *session,
                               coapd_cb_type type, uint8_t *buf, size_t *len) {
  gnutls_session_t gs = tls_of(session);
  gnutls_channel_binding_t t;
  if (!host || !gs || !buf || !len)
    return -1;
  switch (type) {
  case COAPD_CB_TLS_UNIQUE:
    t = GNUTLS_CB_TLS_UNIQUE;
    break;
  case COAPD_CB_TLS_EXPORTER:
    t = GNUTLS_CB_TLS_EXPORTER;
    break;
  default:
    return -1;
  }
  gnutls_datum_t cb = {NULL, 0};
  if (gnutls_session_channel_binding(gs, t, &cb) < 0)
    return -1;
  int rc = -1;
  if (cb.size <= *len) {
    memcpy(buf, cb.data, cb.size);
    *len = cb.size;
    rc = 0;
  }
  gnutls_free(cb.data);
  return rc;
}

/* ---- options, logging, fds ------------------------------------------- */

__attribute__((format(printf, 3, 4))) static void
api_log(coapd_host *host, coapd_log_level level, const char *fmt, ...) {
  char prefix[PLUGIN_NAME_MAX + 3];
  const char *name =
      host && host->desc && host->desc->name ? host->desc->name : "plugin";
  /* plugin_log_level, else log_level (config.h). */
  int max = host && host->conf->log_level ? host->conf->log_level
            : host                         ? host->app->cfg->log_level
                                           : COAPD_DEFAULT_LOG_LEVEL;
  if ((int)level > max)
    return;
  snprintf(prefix, sizeof prefix, "[%s]", name);
  va_list ap;
  va_start(ap, fmt);
  coapd_vlog_always((int)level, prefix, fmt, ap);
  va_end(ap);
}

static size_t api_option_count(coapd_host *host) {
  return host ? host->conf->nopts : 0;
}

static int api_option_at(coapd_host *host, size_t i, const char **key,
                         const char **value, unsigned *line) {
  if (!host || i >= host->conf->nopts)
    return -1;
  const coapd_option *o = &host->conf->opts[i];
  if (key)
    *key = o->key;
  if (value)
    *value = o->value;
  if (line)
    *line = o->line;
  return 0;
}

static const char *api_option(coapd_host *host, const char *key) {
  const char *v = NULL;
  if (!host || !key)
    return NULL;
  for (size_t i = 0; i < host->conf->nopts; i++) /* last one wins */
    if (strcmp(host->conf->opts[i].key, key) == 0)
      v = host->conf->opts[i].value;
  return v;
}

static int api_watch_fd(coapd_host *host, int fd, coapd_fd_cb cb, void *arg) {
  if (!host || !host->app->loop)
    return -1;
  return coapd_loop_watch(host->app->loop, host, fd, cb, arg);
}

static int api_unwatch_fd(coapd_host *host, int fd) {
  if (!host || !host->app->loop)
    return -1;
  return coapd_loop_unwatch(host->app->loop, host, fd);
}

static void build_api(coapd_host *h) {
  coapd_host_api *a = &h->api;
  memset(a, 0, sizeof *a);
  a->size = sizeof *a;
  a->abi_version = COAPD_PLUGIN_ABI_VERSION;
  a->host = h;
  a->ctx = h->app->ctx;
  a->log = api_log;
  a->option_count = api_option_count;
  a->option_at = api_option_at;
  a->option = api_option;
  a->config_path = h->app->cfg->path;
  a->config_line = h->conf->line;
  a->peer_chain = api_peer_chain;
  a->channel_binding = api_channel_binding;
  a->session_data = api_session_data;
  a->session_data_set = api_session_data_set;
  a->watch_fd = api_watch_fd;
  a->unwatch_fd = api_unwatch_fd;
  a->check_only = h->app->check_only;
  coapd_metrics_api(a); /* ABI 1.3 */
}

/* ---- load / unload --------------------------------------------------- */

static int name_ok(const char *name) {
  size_t n = name ? strnlen(name, PLUGIN_NAME_MAX + 1) : 0;
  if (n == 0 || n > PLUGIN_NAME_MAX)
    return 0;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)name[i] <= 0x20 || (unsigned char)name[i] >= 0x7f)
      return 0;
  return 1;
}

/* Check the descriptor before calling anything in it (plugin.h). */
static est_err check_desc(coapd_app *app, coapd_host *h, char *err,
                          size_t errlen) {
  const coapd_config *cfg = app->cfg;
  const coapd_plugin *d = h->desc;
  const char *where = cfg->path;
  unsigned line = h->conf->line;
  if (d->abi_version != COAPD_PLUGIN_ABI_VERSION) {
    coapd_errf(err, errlen, "%s:%u: plugin '%s': ABI version %u, coapd needs %u",
            where, line, h->file, (unsigned)d->abi_version,
            COAPD_PLUGIN_ABI_VERSION);
    return EST_ERR_ABI;
  }
  /* Append-only (plugin.h): a descriptor from ABI 1.0 is still fine; the
   * members after it are read only where COAPD_PLUGIN_HAS() says so. */
  if (d->size < COAPD_PLUGIN_SIZE_1_0) {
    coapd_errf(err, errlen,
            "%s:%u: plugin '%s': descriptor size %u, coapd needs at least %zu",
            where, line, h->file, (unsigned)d->size,
            (size_t)COAPD_PLUGIN_SIZE_1_0);
    return EST_ERR_ABI;
  }
  if (!name_ok(d->name)) {
    coapd_errf(err, errlen,
            "%s:%u: plugin '%s': missing or bad name (1-%d printable bytes)",
            where, line, h->file, PLUGIN_NAME_MAX);
    return EST_ERR_ABI;
  }
  if (!d->init || !d->fini) {
    coapd_errf(err, errlen, "%s:%u: plugin '%s': descriptor lacks init or fini",
            where, line, h->file);
    return EST_ERR_ABI;
  }
  for (size_t i = 0; i < app->nplugins; i++) {
    if (app->plugins[i].initialised &&
        strcmp(app->plugins[i].desc->name, d->name) == 0) {
      coapd_errf(err, errlen,
              "%s:%u: plugin '%s': name '%s' already used by the plugin on "
              "line %u",
              where, line, h->file, d->name, app->plugins[i].conf->line);
      return EST_ERR_EXISTS;
    }
  }
  return EST_OK;
}

/* The option table of @p d, or NULL: none, or a descriptor from before
 * ABI 1.1 that has no such member. */
static const coapd_opt_table *desc_options(const coapd_plugin *d) {
  return COAPD_PLUGIN_HAS(d, options) ? d->options : NULL;
}

/* With a table, refuse bad plugin_opt_ lines before init() sees them, with
 * the same parser and text the plugin itself uses (common/opts.h). A plugin
 * without one checks its own options, as under ABI 1.0. */
est_err coapd_plugin_check_conf(const coapd_host *h, const coapd_config *cfg,
                                const coapd_plugin_conf *pc, char *err, size_t errlen) {
  const coapd_opt_table *t = desc_options(h->desc);
  est_opts o;
  if (!t)
    return EST_OK;
  if (est_opts_begin(&o, t, NULL, OPT_PREFIX) != EST_OK) {
    coapd_errf(err, errlen, "%s:%u: plugin '%s': bad option table: %s",
               cfg->path, pc->line, h->desc->name, est_opts_error(&o));
    return EST_ERR_ABI;
  }
  est_err rc = EST_OK;
  for (size_t i = 0; i < pc->nopts && rc == EST_OK; i++) {
    const coapd_option *opt = &pc->opts[i];
    rc = est_opts_set(&o, opt->key, opt->value, cfg->path, opt->line);
  }
  if (rc == EST_OK)
    rc = est_opts_end(&o, cfg->path, pc->line);
  if (rc != EST_OK)
    coapd_errf(err, errlen, "%s", est_opts_error(&o));
  return rc == EST_OK ? EST_OK : EST_ERR_CONFIG;
}

void coapd_plugin_set_conf(coapd_host *h, const coapd_config *cfg,
                           const coapd_plugin_conf *pc) {
  h->conf = pc;
  h->api.config_path = cfg->path;
  h->api.config_line = pc->line;
}

static est_err load_one(coapd_app *app, coapd_host *h, char *err,
                        size_t errlen) {
  const coapd_config *cfg = app->cfg;
  est_err rc;
  if (coapd_config_plugin_file(h->conf, app->plugin_dir, h->file,
                               sizeof h->file) != EST_OK) {
    coapd_errf(err, errlen, "%s:%u: plugin '%s': path too long", cfg->path,
            h->conf->line, h->conf->path);
    return EST_ERR_CONFIG;
  }
  /* RTLD_LOCAL keeps plugins apart; never RTLD_DEEPBIND, which would give
   * the plugin its own libcoap instance (docs/libcoap-4.3.1.md §5). */
  h->dl = dlopen(h->file, RTLD_NOW | RTLD_LOCAL);
  if (!h->dl) {
    const char *e = dlerror();
    coapd_errf(err, errlen, "%s:%u: plugin '%s': %s", cfg->path, h->conf->line,
            h->file, e ? e : "dlopen failed");
    return EST_ERR_CONFIG;
  }
  dlerror();
  h->desc = dlsym(h->dl, COAPD_PLUGIN_SYMBOL);
  if (!h->desc) {
    coapd_errf(err, errlen, "%s:%u: plugin '%s': no symbol '%s'", cfg->path,
            h->conf->line, h->file, COAPD_PLUGIN_SYMBOL);
    rc = EST_ERR_ABI;
    goto fail;
  }
  if ((rc = check_desc(app, h, err, errlen)) != EST_OK ||
      (rc = coapd_plugin_check_conf(h, cfg, h->conf, err, errlen)) != EST_OK)
    goto fail;
  build_api(h);
  if (h->desc->init(&h->api, &h->state) != 0) {
    coapd_errf(err, errlen, "%s:%u: plugin '%s' (%s): init failed", cfg->path,
            h->conf->line, h->desc->name, h->file);
    rc = EST_ERR_CONFIG;
    goto fail;
  }
  h->initialised = 1;
  /* The first tick comes at once; it sets the plugin's own schedule. */
  if (h->desc->tick)
    app->tick_due[h->index] = coapd_now_ms();
  coapd_log(COAPD_LOG_INFO, "plugin '%s' %s loaded from %s", h->desc->name,
            h->desc->version ? h->desc->version : "?", h->file);
  return EST_OK;
fail:
  /* The failed plugin may have registered fds or resources before failing;
   * drop the fds now and keep the .so mapped until after
   * coap_free_context() (coapd_plugins_unload), since the context may
   * still point at its handlers. */
  if (app->loop)
    coapd_loop_unwatch_all(app->loop, h);
  coapd_metrics_forget(app, h); /* its metrics, collect and health hooks */
  return rc;
}

est_err coapd_plugins_load(coapd_app *app, char *err, size_t errlen) {
  size_t n = app->cfg->nplugins;
  for (size_t i = 0; i < COAPD_CONFIG_MAX_PLUGINS; i++)
    app->tick_due[i] = COAPD_TICK_NEVER;
  if (n == 0)
    return EST_OK;
  app->plugins = calloc(n, sizeof *app->plugins);
  if (!app->plugins) {
    coapd_errf(err, errlen, "out of memory");
    return EST_ERR_NOMEM;
  }
  for (size_t i = 0; i < n; i++) {
    coapd_host *h = &app->plugins[i];
    h->app = app;
    h->conf = &app->cfg->plugins[i];
    h->index = i;
    est_err rc = load_one(app, h, err, errlen);
    if (h->dl)
      app->nplugins++; /* unload dlcloses it, loaded or not */
    if (rc != EST_OK)
      return rc;
  }
  return EST_OK;
}

static uint32_t tick_one(void *ctx, size_t i, uint64_t now_ms) {
  coapd_host *h = &((coapd_app *)ctx)->plugins[i];
  /* Only initialised plugins with a tick get a deadline (load_one). */
  return h->desc->tick(h->state, now_ms);
}

uint64_t coapd_plugins_tick(coapd_app *app, uint64_t now_ms) {
  return coapd_tick_run(app->tick_due, app->nplugins, now_ms, tick_one, app);
}

void coapd_plugins_reload(coapd_app *app) {
  for (size_t i = 0; i < app->nplugins; i++) {
    coapd_host *h = &app->plugins[i];
    if (h->initialised && COAPD_PLUGIN_HAS(h->desc, reload) && h->desc->reload)
      h->desc->reload(h->state);
  }
}

void coapd_plugins_fini(coapd_app *app) {
  /* Session data first: its free_fns may use plugin state. */
  coapd_sessions_release_all(app);
  for (size_t i = app->nplugins; i-- > 0;) {
    coapd_host *h = &app->plugins[i];
    if (!h->initialised)
      continue;
    h->desc->fini(h->state);
    h->initialised = 0;
    app->tick_due[i] = COAPD_TICK_NEVER;
    h->state = NULL;
    if (app->loop)
      coapd_loop_unwatch_all(app->loop, h);
    coapd_metrics_forget(app, h);
  }
}

void coapd_plugins_unload(coapd_app *app) {
  for (size_t i = app->nplugins; i-- > 0;) {
    coapd_host *h = &app->plugins[i];
    if (h->dl)
      dlclose(h->dl);
    h->dl = NULL;
  }
  free(app->plugins);
  app->plugins = NULL;
  app->nplugins = 0;
}

/* ---- --help-plugin ---------------------------------------------------- */

est_err coapd_plugin_help(const char *path, const char *plugin_dir, FILE *out,
                          char *err, size_t errlen) {
  est_err rc = EST_ERR_ABI;
  char file[COAPD_CONFIG_MAX_PATH + 256], why[EST_OPTS_ERR_MAX];
  const coapd_opt_table *t = NULL;
  const char *what = NULL, *version = NULL;
  void *dl = NULL;
  /* Found the way a `plugin` line finds it: a bare name (no '/') in the
   * plugin dir (coapd_config_plugin_file). */
  int n = !path || !*path ? -1
          : strchr(path, '/')
              ? snprintf(file, sizeof file, "%s", path)
              : snprintf(file, sizeof file, "%s/%s",
                         plugin_dir ? plugin_dir : ".", path);
  if (n < 0 || (size_t)n >= sizeof file) {
    coapd_errf(err, errlen, "--help-plugin: empty or too long path");
    return EST_ERR_INVALID;
  }
  /* RTLD_LAZY: a library of another host (mosquitto_est.so) names that
   * host's functions, which are absent here and never called. */
  dl = dlopen(file, RTLD_LAZY | RTLD_LOCAL);
  if (!dl) {
    const char *e = dlerror();
    coapd_errf(err, errlen, "cannot open a plugin: %s",
               e ? e : "dlopen failed");
    return EST_ERR_CONFIG;
  }
  const coapd_plugin *d = dlsym(dl, COAPD_PLUGIN_SYMBOL);
  if (d) {
    if (d->abi_version != COAPD_PLUGIN_ABI_VERSION ||
        d->size < COAPD_PLUGIN_SIZE_1_0 || !name_ok(d->name)) {
      coapd_errf(err, errlen,
                 "%s: not a coapd plugin of ABI %u (ABI %u, descriptor size "
                 "%u, or a bad name)",
                 file, COAPD_PLUGIN_ABI_VERSION, (unsigned)d->abi_version,
                 (unsigned)d->size);
      goto out;
    }
    what = d->name;
    version = d->version;
    t = desc_options(d);
  } else {
    /* Not a coapd plugin, but it may publish its options (options.h). */
    t = dlsym(dl, COAPD_OPTIONS_SYMBOL);
    if (!t) {
      coapd_errf(err, errlen,
                 "%s: not a plugin: no symbol '%s' or '%s'", file,
                 COAPD_PLUGIN_SYMBOL, COAPD_OPTIONS_SYMBOL);
      goto out;
    }
  }
  if (t && est_opts_table_check(t, why, sizeof why) != EST_OK) {
    coapd_errf(err, errlen, "%s: bad option table: %s", file, why);
    goto out;
  }
  if (d) {
    fprintf(out, "coapd plugin %s %s (%s)\n", what, version ? version : "?",
            file);
    if (!t) {
      fprintf(out, "It publishes no option table (coapd plugin ABI 1.1); "
                   "it checks its " OPT_PREFIX " lines itself.\n");
      rc = fflush(out) == 0 ? EST_OK : EST_ERR_IO;
      goto out;
    }
    fprintf(out, "Options: one '" OPT_PREFIX "NAME VALUE' line each, after "
                 "its 'plugin' line in coapd.conf.\n\n");
  } else {
    fprintf(out, "%s (%s), not a coapd plugin\n", t->name ? t->name : "?",
            file);
    fprintf(out, "Options: one '" OPT_PREFIX "NAME VALUE' line each, after "
                 "its plugin line in its host's configuration.\n\n");
  }
  rc = est_opts_help(t, OPT_PREFIX, out);
  if (rc != EST_OK)
    coapd_errf(err, errlen, "writing the help: %s", est_strerror(rc));
out:
  dlclose(dl);
  return rc;
}
