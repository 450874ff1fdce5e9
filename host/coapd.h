/**
 * @file coapd.h
 * @brief coapd host internals shared by main.c, log.c, dtls.c, loop.c and
 * plugins.c. Not installed; plugins see only include/coapd/plugin.h.
 */
#ifndef COAPD_HOST_COAPD_H
#define COAPD_HOST_COAPD_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <coap3/coap.h>

#include "coapd/plugin.h"
#include "config.h"
#include "tick.h"
#include "common/est_err.h"

/** The fixed log line tests wait for: all endpoints open, plugins ready. */
#define COAPD_READY_TEXT "coapd: ready"

/** Most certificates peer_chain() reports (longer chains are cut). */
#define COAPD_CHAIN_MAX 10u
/** Most fds all plugins together may watch. */
#define COAPD_WATCH_MAX 64u

typedef struct coapd_app coapd_app;
typedef struct coapd_loop coapd_loop;
typedef struct coapd_sess coapd_sess;
typedef struct coapd_retired coapd_retired;

/** One loaded plugin; its address is the coapd_host handle plugins get. */
struct coapd_host {
  coapd_app *app;
  const coapd_plugin_conf *conf;
  const coapd_plugin *desc;
  void *dl;
  void *state;
  int initialised;
  size_t index; /**< slot in every session's data array */
  char file[COAPD_CONFIG_MAX_PATH + 256];
  coapd_host_api api;
  coapd_blob chain[COAPD_CHAIN_MAX]; /**< peer_chain() result, per call */
};

/** Process state; one per coapd run, owned by main(). */
struct coapd_app {
  coapd_config *cfg;
  const char *plugin_dir;
  coap_context_t *ctx;
  coapd_loop *loop;
  coapd_host *plugins;  /**< cfg->nplugins entries */
  size_t nplugins;      /**< how many were loaded (<= cfg->nplugins) */
  coapd_sess *sessions; /**< every session with host data attached */
  /** When each plugin's tick is next due (tick.h); slot i is plugins[i]. */
  uint64_t tick_due[COAPD_CONFIG_MAX_PLUGINS];
  int check_only;       /**< coapd -t: plugins write nothing */
  struct coapd_mon *mon; /**< metrics and /healthz (metrics.h) */
  coapd_retired *retired; /**< configs a reload replaced (reload.c) */
};

/* log.c */
/** Log one line to stderr: `TIMESTAMP LEVEL [PREFIX] message`. Filtered
 * against libcoap's log level, the single process-wide level. */
void coapd_log(int level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void coapd_vlog(int level, const char *prefix, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
/** Log even if the level is filtered (the ready line). */
void coapd_log_always(int level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/** Route libcoap's own log lines through coapd_log and set the level. */
void coapd_log_setup(int level);
/** Log unfiltered (the caller filtered, e.g. by plugin_log_level). */
void coapd_vlog_always(int level, const char *prefix, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
/** `log_dest`: COAPD_LOG_DEST_STDERR or _SYSLOG (config.h). */
void coapd_log_dest(unsigned log_dest);

/* dtls.c */
/** Put a datagram socket nothing can reach on descriptor 0, before
 * anything else opens a file (docs/libcoap-4.3.1.md §7 #18). */
est_err coapd_dtls_quiet_fd0(char *err, size_t errlen) EST_MUST_CHECK;
/** Load dtls_cert/dtls_key/dtls_ca with GnuTLS and check that the key
 * matches the certificate. Writes `PATH:LINE: problem` into @p err. */
est_err coapd_dtls_check(const coapd_config *cfg, char *err,
                         size_t errlen) EST_MUST_CHECK;
/** coap_new_context, block mode, PKI, housekeeping limits, event handler. */
est_err coapd_dtls_context(coapd_app *app, char *err,
                           size_t errlen) EST_MUST_CHECK;
/** Probe-bind and open every `listen` endpoint. */
est_err coapd_dtls_endpoints(coapd_app *app, char *err,
                             size_t errlen) EST_MUST_CHECK;

/* admit_io.c: admission control under a ClientHello flood (admit.h) */
/** After the endpoints are open: take their sockets from libcoap's epoll
 * set (nothing to do under `dtls_admission no`). */
est_err coapd_admit_setup(coapd_app *app, char *err, size_t errlen) EST_MUST_CHECK;
/** The endpoint sockets the loop is to watch (none when off). */
size_t coapd_admit_fds(int *fds, size_t max);
/** Before coap_io_process(): drop refused datagrams; 1 if one waits for
 * libcoap (its socket is lent to libcoap for that call). */
int coapd_admit_filter(uint64_t now_ms);
/** After coap_io_process(): take the socket back, poll, time out. */
void coapd_admit_after(uint64_t now_ms);
/** Milliseconds until the next poll is due, or -1. */
int coapd_admit_next_ms(uint64_t now_ms);
/** SERVER_SESSION_NEW (@p created 1) and SERVER_SESSION_DEL (0). */
void coapd_admit_session(coap_session_t *session, int created);
/** Before coap_free_context(): totals line, sockets back to libcoap. */
void coapd_admit_shutdown(void);

/** The PKI setup and session limits of @p cfg on app->ctx; a reload calls
 * it again. @p cfg must outlive the context (libcoap borrows its paths). */
est_err coapd_dtls_apply(coapd_app *app, const coapd_config *cfg, char *err,
                         size_t errlen) EST_MUST_CHECK;

/* reload.c */
/** SIGHUP: read the config again; on any problem keep the running one and
 * log `FILE:LINE: problem`; then each plugin's reload hook. */
void coapd_reload(coapd_app *app);
/** Free the configs reloads replaced (at exit, after the plugins). */
void coapd_retired_free(coapd_app *app);
/** sd_notify(3) @p state ("READY=1", ...); a no-op outside systemd. */
void coapd_notify(const char *state);

/* loop.c */
est_err coapd_loop_new(coapd_app *app, coapd_loop **out) EST_MUST_CHECK;
/** Run until SIGTERM/SIGINT. Returns EST_OK on a clean stop. */
est_err coapd_loop_run(coapd_loop *loop) EST_MUST_CHECK;
void coapd_loop_free(coapd_loop *loop);
int coapd_loop_watch(coapd_loop *loop, coapd_host *owner, int fd,
                     coapd_fd_cb cb, void *arg);
int coapd_loop_unwatch(coapd_loop *loop, coapd_host *owner, int fd);
/** Drop every watch @p owner still holds (after its fini). */
void coapd_loop_unwatch_all(coapd_loop *loop, coapd_host *owner);

/* plugins.c */
/** Load and init every configured plugin, in file order. On failure the
 * ones already loaded (and the one that failed, if dlopen worked) stay in
 * app->plugins for coapd_plugins_fini()/coapd_plugins_unload(). */
est_err coapd_plugins_load(coapd_app *app, char *err,
                           size_t errlen) EST_MUST_CHECK;
/** Tick each plugin whose deadline has come (tick.h); return the earliest
 * deadline of all (COAPD_TICK_NEVER if no plugin ticks). */
uint64_t coapd_plugins_tick(coapd_app *app, uint64_t now_ms);
/** SIGHUP: each plugin's reload hook (ABI 1.2), in load order. */
void coapd_plugins_reload(coapd_app *app);
/** Check @p pc's plugin_opt_ lines against @p h's option table (if it has
 * one): `FILE:LINE: problem` in @p err. */
est_err coapd_plugin_check_conf(const coapd_host *h, const coapd_config *cfg,
                                const coapd_plugin_conf *pc, char *err,
                                size_t errlen) EST_MUST_CHECK;
/** After a reload: @p h's options are @p pc's lines from now on. */
void coapd_plugin_set_conf(coapd_host *h, const coapd_config *cfg,
                           const coapd_plugin_conf *pc);
/** `coapd --help-plugin PATH`: dlopen @p path (a bare name under
 * @p plugin_dir) and print its option table to @p out. EST_ERR_ABI if it is
 * not a plugin, EST_ERR_CONFIG if it cannot be opened, with the reason in
 * @p err. */
est_err coapd_plugin_help(const char *path, const char *plugin_dir, FILE *out,
                          char *err, size_t errlen) EST_MUST_CHECK;
/** Free all session data, then fini in reverse order. No dlclose. */
void coapd_plugins_fini(coapd_app *app);
/** dlclose every plugin; after coap_free_context(). */
void coapd_plugins_unload(coapd_app *app);
/** SERVER_SESSION_DEL: free the host data attached to @p session. */
void coapd_session_release(coapd_app *app, coap_session_t *session);
/** Free host data of every session still alive (shutdown). */
void coapd_sessions_release_all(coapd_app *app);

/** CLOCK_MONOTONIC in milliseconds. */
uint64_t coapd_now_ms(void);

#endif /* COAPD_HOST_COAPD_H */
