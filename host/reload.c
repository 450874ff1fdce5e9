/* SIGHUP: read coapd.conf again and hand the plugins their new options
 * (docs/operations.md "Reload"). All of the host part loads, or nothing
 * changes; keys that shape sockets or the plugin list wait for a restart. */
#include "coapd.h"

#include <stdlib.h>
#include <string.h>

#include <systemd/sd-daemon.h>

#define ERR_MAX 1536

/* A replaced configuration stays allocated until coapd exits: plugins may
 * hold option strings (borrowed "until fini", include/coapd/plugin.h) and
 * libcoap holds the DTLS file names of the setup it copied. A few KB per
 * reload. */
struct coapd_retired {
  coapd_retired *next;
  coapd_config *cfg;
};

void coapd_notify(const char *state) {
  /* A no-op unless systemd started us with Type=notify (NOTIFY_SOCKET). */
  (void)sd_notify(0, state);
}

void coapd_retired_free(coapd_app *app) {
  while (app->retired) {
    coapd_retired *r = app->retired;
    app->retired = r->next;
    coapd_config_free(r->cfg);
    free(r);
  }
}

static int listen_same(const coapd_listen *a, size_t na, const coapd_listen *b, size_t nb) {
  if (na != nb)
    return 0;
  for (size_t i = 0; i < na; i++)
    if (a[i].port != b[i].port || strcmp(a[i].addr, b[i].addr) != 0)
      return 0;
  return 1;
}

static int str_same(const char *a, const char *b) {
  return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* The plugin lines name the same files in the same order. */
static est_err plugins_same(const coapd_app *app, const coapd_config *n, char *err,
                            size_t errlen) {
  const coapd_config *o = app->cfg;
  if (n->nplugins != o->nplugins) {
    coapd_errf(err, errlen, "%s: %zu plugin line(s) instead of %zu: loading or unloading "
               "a plugin needs a restart", n->path, n->nplugins, o->nplugins);
    return EST_ERR_CONFIG;
  }
  for (size_t i = 0; i < n->nplugins; i++)
    if (strcmp(n->plugins[i].path, o->plugins[i].path) != 0) {
      coapd_errf(err, errlen, "%s:%u: plugin '%s' where '%s' was: changing plugins needs "
                 "a restart", n->path, n->plugins[i].line, n->plugins[i].path,
                 o->plugins[i].path);
      return EST_ERR_CONFIG;
    }
  return EST_OK;
}

static void needs_restart(const coapd_config *n, const char *key, unsigned line, int same) {
  if (!same)
    coapd_log(COAPD_LOG_WARNING,
              "%s:%u: reload: %s changed; it takes effect when coapd restarts", n->path,
              line, key);
}

/* Everything a reload cannot apply: say so once per key. */
static void warn_restart_keys(const coapd_config *o, const coapd_config *n) {
  needs_restart(n, "listen", n->nlisten ? n->listen[0].line : 0,
                listen_same(o->listen, o->nlisten, n->listen, n->nlisten));
  needs_restart(n, "metrics_listen", n->nmetrics_listen ? n->metrics_listen[0].line : 0,
                listen_same(o->metrics_listen, o->nmetrics_listen, n->metrics_listen,
                            n->nmetrics_listen));
  needs_restart(n, "plugin_dir", n->plugin_dir.line,
                str_same(o->plugin_dir.path, n->plugin_dir.path));
  needs_restart(n, "dtls_admission", n->dtls_admission.line,
                o->dtls_admission.value == n->dtls_admission.value);
  needs_restart(n, "max_handshakes_per_addr", n->max_handshakes_per_addr.line,
                o->max_handshakes_per_addr.value == n->max_handshakes_per_addr.value);
  needs_restart(n, "handshake_pressure", n->handshake_pressure.line,
                o->handshake_pressure.value == n->handshake_pressure.value);
  needs_restart(n, "handshake_timeout", n->handshake_timeout.line,
                o->handshake_timeout.value == n->handshake_timeout.value);
  needs_restart(n, "max_parked_handshakes", n->max_parked_handshakes.line,
                o->max_parked_handshakes.value == n->max_parked_handshakes.value);
}

/* Parse and check the new file; nothing is applied yet. */
static est_err load_new(coapd_app *app, coapd_config **out, char *err, size_t errlen) {
  coapd_config *n = NULL;
  est_err rc = coapd_config_parse_file(app->cfg->path, &n, err, errlen);
  if (rc == EST_OK)
    rc = coapd_config_check_files(n, app->plugin_dir, err, errlen);
  if (rc == EST_OK)
    rc = coapd_dtls_check(n, err, errlen);
  if (rc == EST_OK)
    rc = plugins_same(app, n, err, errlen);
  for (size_t i = 0; rc == EST_OK && i < app->nplugins; i++)
    rc = coapd_plugin_check_conf(&app->plugins[i], n, &n->plugins[i], err, errlen);
  if (rc != EST_OK) {
    coapd_config_free(n);
    n = NULL;
  }
  *out = n;
  return rc;
}

void coapd_reload(coapd_app *app) {
  char err[ERR_MAX] = "";
  coapd_config *n = NULL;
  coapd_retired *r = calloc(1, sizeof *r);
  coapd_notify("RELOADING=1");
  coapd_log(COAPD_LOG_NOTICE, "coapd: SIGHUP, reading %s again", app->cfg->path);
  est_err rc = r ? load_new(app, &n, err, sizeof err) : EST_ERR_NOMEM;
  if (rc == EST_OK)
    rc = coapd_dtls_apply(app, n, err, sizeof err);
  if (rc != EST_OK) {
    coapd_log(COAPD_LOG_ERR, "coapd: reload refused: %s; the running configuration stays",
              err[0] ? err : est_strerror(rc));
    /* coapd_dtls_apply fails before it changes anything. */
    coapd_config_free(n);
    free(r);
    goto out;
  }
  warn_restart_keys(app->cfg, n);
  r->cfg = app->cfg;
  r->next = app->retired;
  app->retired = r;
  app->cfg = n;
  coapd_log_dest(n->log_dest.value);
  coapd_log_setup(n->log_level);
  for (size_t i = 0; i < app->nplugins; i++)
    coapd_plugin_set_conf(&app->plugins[i], n, &n->plugins[i]);
  coapd_log(COAPD_LOG_NOTICE, "coapd: %s reloaded; new sessions use the new DTLS files",
            n->path);
  coapd_plugins_reload(app);
out:
  coapd_notify("READY=1");
}
