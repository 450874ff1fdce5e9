/* coapd: a small CoAP-over-DTLS server that loads plugins.
 *
 * Exit status: 0 clean stop (SIGTERM/SIGINT), config OK with -t, or help
 * printed; 1 configuration or startup error, or --help-plugin of something
 * that is not a plugin; 2 usage error; 3 runtime failure. */
#include "coapd.h"
#include "metrics.h"

#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gnutls/gnutls.h>

#ifndef COAPD_PLUGIN_RELDIR
#define COAPD_PLUGIN_RELDIR "../lib/est-coaps"
#endif
#ifndef COAPD_PLUGIN_DIR
#define COAPD_PLUGIN_DIR "/usr/local/lib/est-coaps"
#endif
#ifndef EST_VERSION
#define EST_VERSION "0"
#endif

#define ERR_MAX 1536

enum { EXIT_CONFIG = 1, EXIT_USAGE = 2, EXIT_RUNTIME = 3 };

static const char *plugin_dir(const struct coapd_config *cfg);

static void usage(FILE *f) {
  fprintf(f,
          "usage: coapd -c FILE [-t]\n"
          "       coapd --help-plugin PLUGIN | --help-config\n"
          "       coapd -h | -V | --version\n"
          "  -c FILE  configuration file (mosquitto.conf style)\n"
          "  -t       check the configuration (load plugins, run their init)"
          " and exit;\n"
          "           nothing is written: no database, no CRL, no socket bound\n"
          "  --help-plugin PLUGIN\n"
          "           print the options PLUGIN (a .so) takes and exit\n"
          "  --help-config\n"
          "           print the keys of the configuration file and exit\n"
          "  -h       this help\n"
          "  -V, --version  print the version\n"
          "Plugins named without a '/' are looked up in %s\n"
          "(the environment variable COAPD_PLUGIN_PATH, then the config's\n"
          "plugin_dir, come first).\n",
          plugin_dir(NULL));
}

static void version(void) {
  coap_tls_version_t *tv = coap_get_tls_library_version();
  printf("coapd %s (%s, GnuTLS %s%s)\n", EST_VERSION, coap_package_version(),
         gnutls_check_version(NULL),
         tv && tv->type == COAP_TLS_LIBRARY_GNUTLS ? ""
                                                   : ", libcoap not on GnuTLS");
}

enum { OPT_HELP_PLUGIN = 256, OPT_HELP_CONFIG };

static const struct option long_opts[] = {
    {"help-plugin", required_argument, NULL, OPT_HELP_PLUGIN},
    {"help-config", no_argument, NULL, OPT_HELP_CONFIG},
    {"version", no_argument, NULL, 'V'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0}};

/* Where a bare plugin name is looked up: COAPD_PLUGIN_PATH, then the
 * config's plugin_dir, then the install's plugin folder found from where
 * this binary is (so an installed tree can be moved, issue 12), then the
 * folder fixed at build time. */
static const char *plugin_dir(const coapd_config *cfg) {
  static char rel[PATH_MAX];
  const char *d = getenv("COAPD_PLUGIN_PATH");
  if (d && *d)
    return d;
  if (cfg && cfg->plugin_dir.path)
    return cfg->plugin_dir.path;
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) {
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    struct stat st;
    if (slash) {
      *slash = '\0';
      int r = snprintf(rel, sizeof rel, "%s/%s", exe, COAPD_PLUGIN_RELDIR);
      if (r > 0 && (size_t)r < sizeof rel && stat(rel, &st) == 0 && S_ISDIR(st.st_mode))
        return rel;
    }
  }
  return COAPD_PLUGIN_DIR;
}

/* --help-plugin: no config, no libcoap context, nothing but the table. */
static int help_plugin(const char *path) {
  char err[ERR_MAX] = "";
  if (coapd_plugin_help(path, plugin_dir(NULL), stdout, err, sizeof err) ==
      EST_OK)
    return 0;
  fprintf(stderr, "coapd: %s\n", err);
  return EXIT_CONFIG;
}

int main(int argc, char **argv) {
  const char *conf = NULL, *help_path = NULL;
  int check_only = 0, opt, status = EXIT_CONFIG;
  char err[ERR_MAX] = "";
  coapd_app app;
  memset(&app, 0, sizeof app);

  while ((opt = getopt_long(argc, argv, "c:thV", long_opts, NULL)) != -1) {
    switch (opt) {
    case OPT_HELP_PLUGIN:
      help_path = optarg;
      break;
    case 'c':
      conf = optarg;
      break;
    case 't':
      check_only = 1;
      break;
    case 'h':
      usage(stdout);
      return 0;
    case 'V':
      version();
      return 0;
    case OPT_HELP_CONFIG:
      return coapd_config_help(stdout) == EST_OK ? 0 : EXIT_RUNTIME;
    default:
      usage(stderr);
      return EXIT_USAGE;
    }
  }
  if (help_path && !conf && !check_only && optind == argc)
    return help_plugin(help_path);
  if (!conf || help_path || optind != argc) {
    usage(stderr);
    return EXIT_USAGE;
  }

  /* Block the stop signals before anything else: the loop reads them from
   * a signalfd, so one that comes during startup waits for the loop. */
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  sigprocmask(SIG_BLOCK, &set, NULL);
  signal(SIGPIPE, SIG_IGN);
  if (coapd_dtls_quiet_fd0(err, sizeof err) != EST_OK) {
    fprintf(stderr, "coapd: %s\n", err);
    return EXIT_RUNTIME;
  }

  coap_startup();
  /* Under systemd a config error already gets its journald priority. */
  coapd_log_dest(COAPD_LOG_DEST_STDERR);
  coapd_log_setup(COAPD_DEFAULT_LOG_LEVEL);

  if (coapd_config_parse_file(conf, &app.cfg, err, sizeof err) != EST_OK)
    goto out;
  app.plugin_dir = plugin_dir(app.cfg);
  coapd_log_dest(app.cfg->log_dest.value);
  coapd_log_setup(app.cfg->log_level);
  if (coapd_config_check_files(app.cfg, app.plugin_dir, err, sizeof err) !=
          EST_OK ||
      coapd_dtls_check(app.cfg, err, sizeof err) != EST_OK ||
      coapd_dtls_context(&app, err, sizeof err) != EST_OK)
    goto out;
  /* -t checks everything but binds nothing, so it also works next to a
   * running coapd with the same config. */
  if (!check_only && (coapd_dtls_endpoints(&app, err, sizeof err) != EST_OK ||
                      coapd_admit_setup(&app, err, sizeof err) != EST_OK))
    goto out;
  if (coapd_loop_new(&app, &app.loop) != EST_OK) {
    snprintf(err, sizeof err, "cannot set up the I/O loop");
    goto out;
  }
  app.check_only = check_only;
  /* The registry exists before the plugins register into it. */
  if (coapd_metrics_setup(&app, err, sizeof err) != EST_OK ||
      coapd_plugins_load(&app, err, sizeof err) != EST_OK)
    goto out;

  if (check_only) {
    coapd_log_always(COAPD_LOG_NOTICE, "coapd: %s: configuration OK", conf);
    status = 0;
    goto out;
  }
  /* Not under -t: like the endpoints, metrics_listen binds only here. */
  if (coapd_metrics_start(&app, err, sizeof err) != EST_OK)
    goto out;
  coapd_log_always(COAPD_LOG_NOTICE,
                   COAPD_READY_TEXT " (%zu endpoint%s, %zu plugin%s)",
                   app.cfg->nlisten, app.cfg->nlisten == 1 ? "" : "s",
                   app.nplugins, app.nplugins == 1 ? "" : "s");
  coapd_notify("READY=1");
  status = coapd_loop_run(app.loop) == EST_OK ? 0 : EXIT_RUNTIME;
  coapd_notify("STOPPING=1");

out:
  if (err[0])
    coapd_log_always(COAPD_LOG_ERR, "%s", err);
  /* Teardown order (docs/libcoap-4.3.1.md §5): session data and plugin fini,
   * coap_free_context, dlclose, coap_cleanup. */
  coapd_metrics_stop(&app); /* no scrape reaches a plugin past its fini */
  coapd_plugins_fini(&app);
  coapd_loop_free(app.loop);
  app.loop = NULL;
  coapd_admit_shutdown();
  if (app.ctx) {
    coapd_sessions_release_all(&app);
    coap_free_context(app.ctx);
  }
  coapd_metrics_fini(&app);
  coapd_plugins_unload(&app);
  coapd_config_free(app.cfg);
  coapd_retired_free(&app);
  if (status == 0 && !check_only)
    coapd_log(COAPD_LOG_NOTICE, "coapd: stopped");
  coap_cleanup();
  return status;
}
