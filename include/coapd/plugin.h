/**
 * @file plugin.h
 * @brief coapd plugin ABI: what a plugin exports and what the host gives it.
 *
 * A plugin is a shared object that exports one const descriptor named
 * @ref COAPD_PLUGIN_SYMBOL of type ::coapd_plugin. The host checks
 * `abi_version` and `size` before it calls anything, and refuses a plugin
 * whose ABI major version differs or whose descriptor is smaller than the
 * first ABI 1 descriptor (@ref COAPD_PLUGIN_SIZE_1_0). The descriptor is
 * append-only too: a member added later is read only if the plugin's
 * `size` covers it (COAPD_PLUGIN_HAS()), so older plugins keep loading.
 *
 * The host passes ::coapd_host_api to init(). That struct is only ever
 * appended to; it carries its own `size`, so a plugin built against a newer
 * header must check `size` before it touches a member added later
 * (use COAPD_HOST_HAS()).
 *
 * Threading: libcoap 4.3.1 is single-threaded. Every callback here runs on
 * the host's I/O loop thread, and every coapd_host_api function must be
 * called from that thread, except where a member says otherwise.
 */
#ifndef COAPD_PLUGIN_H
#define COAPD_PLUGIN_H

#include <stddef.h>
#include <stdint.h>
#include <coap3/coap.h>

#include "options.h"

#ifdef __cplusplus
extern "C" {
#endif

/** ABI version: bump on any incompatible change to this header. */
#define COAPD_PLUGIN_ABI_VERSION 1u

/**
 * Revision of ABI 1 this header describes. Informational: neither side
 * checks it, members added in a revision are found by `size`.
 *  - 1.0: the first release.
 *  - 1.1: coapd_plugin.options (include/coapd/options.h).
 *  - 1.2: coapd_plugin.reload (SIGHUP), coapd_host_api.check_only (-t).
 *  - 1.3: coapd_host_api metric_register, metric_add, metric_set,
 *         metric_observe, collect_register, health_register (metrics and
 *         /healthz, docs/metrics.md).
 */
#define COAPD_PLUGIN_ABI_MINOR 3u

/** Name of the descriptor symbol the host looks up with dlsym(). */
#define COAPD_PLUGIN_SYMBOL "coapd_plugin_entry"

/** Mark the descriptor visible in a plugin built with hidden visibility. */
#define COAPD_PLUGIN_EXPORT __attribute__((visibility("default")))

/** Log levels, most severe first (syslog order). */
typedef enum coapd_log_level {
  COAPD_LOG_ERR = 3,
  COAPD_LOG_WARNING = 4,
  COAPD_LOG_NOTICE = 5,
  COAPD_LOG_INFO = 6,
  COAPD_LOG_DEBUG = 7
} coapd_log_level;

/** Channel binding types a plugin may ask for (RFC 5929, RFC 9266). */
typedef enum coapd_cb_type {
  COAPD_CB_TLS_UNIQUE = 0,  /**< DTLS 1.2 first Finished (RFC 5929). */
  COAPD_CB_TLS_EXPORTER = 1 /**< 32-byte "EXPORTER-Channel-Binding" (RFC 9266). */
} coapd_cb_type;

/** A borrowed byte string. */
typedef struct coapd_blob {
  const uint8_t *data;
  size_t len;
} coapd_blob;

/** Opaque per-plugin host handle; pass it back to every host function. */
typedef struct coapd_host coapd_host;

/** Callback for a file descriptor watched by the host loop. */
typedef void (*coapd_fd_cb)(void *arg);

/* ---- metrics (ABI 1.3, docs/metrics.md) ---- */

/** Kinds of metric, as in the Prometheus text format 0.0.4. */
typedef enum coapd_metric_type {
  COAPD_METRIC_COUNTER = 0,  /**< only goes up: metric_add(v >= 0) */
  COAPD_METRIC_GAUGE = 1,    /**< metric_set, or metric_add(any v) */
  COAPD_METRIC_HISTOGRAM = 2 /**< metric_observe into fixed buckets */
} coapd_metric_type;

/** Most label names one metric has. */
#define COAPD_METRIC_LABELS_MAX 3u
/** Most bucket bounds of a histogram (+Inf is added, not counted). */
#define COAPD_METRIC_BUCKETS_MAX 32u
/** Most distinct label-value sets (series) one metric keeps; uses past
 * this are dropped and counted in coapd_metric_series_dropped_total. */
#define COAPD_METRIC_SERIES_MAX 256u
/** Longest metric name, label name and label value, in bytes. */
#define COAPD_METRIC_NAME_MAX 64u
#define COAPD_METRIC_VALUE_MAX 128u
/** Longest help text, in bytes. */
#define COAPD_METRIC_HELP_MAX 256u

/**
 * What metric_register() is to create. The host copies everything, so the
 * strings and arrays may be temporaries. `name` matches
 * [a-zA-Z_:][a-zA-Z0-9_:]* and must not start with `coapd_` or `process_`
 * (the host's own); label names match [a-zA-Z_][a-zA-Z0-9_]*, do not start
 * with `__`, and a histogram's are not `le`.
 */
typedef struct coapd_metric_desc {
  const char *name;
  const char *help;            /**< one line, UTF-8 */
  coapd_metric_type type;
  size_t nlabels;              /**< 0..COAPD_METRIC_LABELS_MAX */
  const char *const *labels;   /**< nlabels label names */
  size_t nbuckets;             /**< histogram: 1..COAPD_METRIC_BUCKETS_MAX */
  const double *buckets;       /**< finite upper bounds, strictly increasing */
} coapd_metric_desc;

/** A registered metric, owned by the host; valid until the plugin's fini()
 * returns. */
typedef struct coapd_metric coapd_metric;

/** Called before each /metrics answer, so gauges computed on demand (a
 * queue depth) are fresh: set them with metric_set. Loop thread. */
typedef void (*coapd_collect_cb)(void *arg);

/** A plugin's health check for /healthz: return 1 when healthy; else 0
 * with a short one-line reason in @p why. Loop thread, must be quick. */
typedef int (*coapd_health_cb)(void *arg, char *why, size_t len);

/**
 * What the host gives a plugin. Borrowed: valid from init() until fini()
 * returns. Append-only: new members go at the end, and `size` grows.
 */
typedef struct coapd_host_api {
  /** sizeof(coapd_host_api) as the host was built. */
  uint32_t size;
  /** COAPD_PLUGIN_ABI_VERSION of the host. */
  uint32_t abi_version;
  /** The handle to pass back to every function below. */
  coapd_host *host;
  /**
   * The host's libcoap context. The plugin may add resources to it. It must
   * not replace the context-wide single-slot handlers (event, response,
   * nack, ping) nor set session app data: those belong to the host.
   */
  coap_context_t *ctx;

  /** Log one line (no trailing newline needed) through the host's logger. */
  void (*log)(coapd_host *host, coapd_log_level level, const char *fmt, ...)
      __attribute__((format(printf, 3, 4)));

  /**
   * The number of `plugin_opt_KEY VALUE` lines given for this plugin, and
   * the i-th of them in file order. Keys come without the `plugin_opt_`
   * prefix. Returns 0 and sets *key, *value (borrowed, valid until fini),
   * or -1 if @p i is out of range. A plugin should refuse unknown keys.
   * With an option table (coapd_plugin.options) the host has checked these
   * lines against it before init().
   */
  size_t (*option_count)(coapd_host *host);
  int (*option_at)(coapd_host *host, size_t i, const char **key,
                   const char **value, unsigned *line);

  /** The value of option @p key (last one wins), or NULL if unset. */
  const char *(*option)(coapd_host *host, const char *key);

  /** The host's config file path and this plugin's `plugin` line number. */
  const char *config_path;
  unsigned config_line;

  /**
   * The DER certificate chain the peer of @p session presented, leaf
   * first. Sets *certs to a borrowed array of *count blobs, valid until the
   * request handler returns. Returns 0, or -1 if the session has no
   * authenticated certificate (then *count is 0). The chain verified to a
   * `dtls_ca` anchor in the handshake; with the host's `dtls_allow_expired
   * yes` its certificates may be expired or not yet valid, and checking
   * their dates is the plugin's job.
   */
  int (*peer_chain)(coapd_host *host, coap_session_t *session,
                    const coapd_blob **certs, size_t *count);

  /**
   * Copy the channel binding of @p session's DTLS connection into @p buf
   * (capacity *len); on return *len is the length. Returns 0, or -1 if the
   * session has no DTLS state, the type is unsupported or @p buf is small.
   */
  int (*channel_binding)(coapd_host *host, coap_session_t *session,
                         coapd_cb_type type, uint8_t *buf, size_t *len);

  /**
   * This plugin's private data for @p session, or NULL. Each plugin has its
   * own slot. session_data_set() replaces the slot (freeing any old value
   * with its free_fn); the host calls @p free_fn when the session goes away
   * or at shutdown. Returns 0, or -1 on allocation failure (then @p free_fn
   * has been called on @p data, as the data is consumed either way).
   */
  void *(*session_data)(coapd_host *host, coap_session_t *session);
  int (*session_data_set)(coapd_host *host, coap_session_t *session,
                          void *data, void (*free_fn)(void *data));

  /**
   * Ask the loop to call @p cb(@p arg) when @p fd becomes readable, for
   * example an eventfd a worker thread writes to. The plugin keeps the fd
   * open until it calls unwatch_fd(). Returns 0 or -1.
   */
  int (*watch_fd)(coapd_host *host, int fd, coapd_fd_cb cb, void *arg);
  int (*unwatch_fd)(coapd_host *host, int fd);

  /* ---- ABI 1.2 ---- */

  /**
   * Nonzero under `coapd -t`: init() should read and check everything and
   * write nothing (create no database, publish nothing, start no thread);
   * fini() follows at once. Read it only if COAPD_HOST_HAS(api, check_only).
   */
  int check_only;

  /* ---- ABI 1.3 (docs/metrics.md) ---- */

  /**
   * Metrics the host serves on `metrics_listen` (GET /metrics, Prometheus
   * text format 0.0.4). All of these run on the loop thread only, and are
   * cheap (no I/O); without a `metrics_listen` line they still work and
   * nobody reads the numbers. Read them only if COAPD_HOST_HAS(api,
   * health_register); an older host has none, and the plugin then runs
   * without metrics.
   *
   * metric_register() creates a metric from @p d and sets *out. Returns 0,
   * or -1 when @p d is bad, its name is taken, or the host holds too many
   * metrics (the reason is logged). A metric without labels shows 0 at
   * once; a labelled series appears on first use. The plugin's metrics go
   * away after its fini().
   */
  int (*metric_register)(coapd_host *host, const coapd_metric_desc *d,
                         coapd_metric **out);
  /**
   * Add @p v to (counter: v >= 0, finite; gauge: any finite v), set
   * (gauge), or observe @p v into (histogram) the series @p label_values
   * names: one value per label name, in order (NULL when there are none).
   * A NULL metric, the wrong type or a bad value does nothing; a value
   * over COAPD_METRIC_VALUE_MAX bytes or not UTF-8, or a new series past
   * COAPD_METRIC_SERIES_MAX, is dropped and counted (logged once).
   */
  void (*metric_add)(coapd_metric *m, const char *const *label_values,
                     double v);
  void (*metric_set)(coapd_metric *m, const char *const *label_values,
                     double v);
  void (*metric_observe)(coapd_metric *m, const char *const *label_values,
                         double v);
  /** Have @p cb(@p arg) called before each /metrics answer, until fini().
   * Returns 0, or -1 (too many). */
  int (*collect_register)(coapd_host *host, coapd_collect_cb cb, void *arg);
  /** Add @p check(@p arg) to /healthz: 200 only while every check says
   * healthy, else 503 with the first reason. Until fini(). Returns 0 or
   * -1 (too many). */
  int (*health_register)(coapd_host *host, coapd_health_cb check,
                         void *arg);
} coapd_host_api;

/** True if @p api was built with member @p member (append-only check). */
#define COAPD_HOST_HAS(api, member)                                          \
  ((api)->size >= offsetof(coapd_host_api, member) + sizeof((api)->member))

/** The descriptor a plugin exports as COAPD_PLUGIN_SYMBOL. */
typedef struct coapd_plugin {
  /** COAPD_PLUGIN_ABI_VERSION the plugin was built with. */
  uint32_t abi_version;
  /** sizeof(coapd_plugin) as the plugin was built. */
  uint32_t size;
  /** Short unique name, e.g. "est-coaps". Two plugins may not share one. */
  const char *name;
  /** Plugin version string, e.g. "0.1.0". */
  const char *version;
  /**
   * Set up: read options, add resources. On success return 0 and set
   * *state (handed back to tick and fini). On failure log why through
   * api->log and return non-zero; fini is then not called.
   */
  int (*init)(const coapd_host_api *api, void **state);
  /** Tear down; called before the host frees the context. */
  void (*fini)(void *state);
  /**
   * Optional periodic work on the loop thread (may be NULL). @p now_ms is
   * CLOCK_MONOTONIC in milliseconds. Return the delay in ms until the
   * plugin next wants a tick; the host may call it earlier.
   */
  uint32_t (*tick)(void *state, uint64_t now_ms);

  /* ---- ABI 1.1 ---- */

  /**
   * The plugin's option table, or NULL. With a table, the host checks every
   * `plugin_opt_KEY VALUE` line of this plugin against it before init():
   * an unknown key (with a did-you-mean hint), a repeated key, a bad value
   * or a missing required option stops coapd with `FILE:LINE: problem`,
   * and init() is not called. The plugin should still parse its options
   * with the same table (est-coaps' plugins use common/opts.h), so an older
   * host that skips the check refuses the same lines with the same text.
   * `coapd --help-plugin PATH` prints the table. The table is borrowed for
   * as long as the plugin is loaded, and its check functions may be called
   * before init(). Read it only if COAPD_PLUGIN_HAS(d, options).
   */
  const coapd_opt_table *options;

  /* ---- ABI 1.2 ---- */

  /**
   * coapd got SIGHUP and read its config file again: read the options (the
   * host API now returns the new `plugin_opt_` lines, already checked
   * against the option table; the old strings stay valid until fini) and
   * the files they name, on the loop thread, between requests. May be
   * NULL. All or nothing: anything that does not load must leave the old
   * state in force, logged as `FILE:LINE: problem`. Not called when the
   * host refused the new file. Read it only if COAPD_PLUGIN_HAS(d, reload).
   */
  void (*reload)(void *state);
} coapd_plugin;

/** True if descriptor @p d was built with member @p member. */
#define COAPD_PLUGIN_HAS(d, member)                                          \
  ((d)->size >= offsetof(coapd_plugin, member) + sizeof((d)->member))

/** Size of the ABI 1.0 descriptor (up to `tick`): the least a host takes. */
#define COAPD_PLUGIN_SIZE_1_0                                                \
  (offsetof(coapd_plugin, tick) + sizeof(((const coapd_plugin *)0)->tick))

#ifdef __cplusplus
}
#endif

#endif /* COAPD_PLUGIN_H */
