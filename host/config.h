/**
 * @file config.h
 * @brief coapd configuration file: parsing and file checks.
 *
 * The format is mosquitto.conf style: one `key value` per line, `#` starts
 * a comment line, blank lines are ignored. This module has no libcoap or
 * GnuTLS dependency so the unit tests and the fuzzer can drive it. Every
 * error message starts with `FILE:LINE: ` (or `FILE: ` for problems that
 * belong to no single line, such as a missing required key).
 */
#ifndef COAPD_CONFIG_H
#define COAPD_CONFIG_H

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#include "common/est_err.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Input caps: every one of these is enforced by the parser. */
#define COAPD_CONFIG_MAX_BYTES (256u * 1024u) /**< whole file */
#define COAPD_CONFIG_MAX_LINE 4096u           /**< one line, without EOL */
#define COAPD_CONFIG_MAX_LISTEN 16u           /**< `listen` lines */
#define COAPD_CONFIG_MAX_METRICS_LISTEN 4u    /**< `metrics_listen` lines */
#define COAPD_CONFIG_MAX_PLUGINS 16u          /**< `plugin` lines */
#define COAPD_CONFIG_MAX_OPTIONS 64u          /**< `plugin_opt_*` per plugin */
#define COAPD_CONFIG_MAX_OPT_KEY 64u          /**< KEY in plugin_opt_KEY */
#define COAPD_CONFIG_MAX_PATH 1024u           /**< a resolved file path */

/** Defaults of the housekeeping keys (see docs/performance.md, scaling traps). */
#define COAPD_DEFAULT_SESSION_TIMEOUT 300u
#define COAPD_DEFAULT_MAX_IDLE_SESSIONS 1000u
#define COAPD_DEFAULT_MAX_HANDSHAKE_SESSIONS 100u
#define COAPD_DEFAULT_DTLS_VERIFY_DEPTH 4u
/** Defaults of the admission keys (docs/admission.md). */
#define COAPD_DEFAULT_MAX_HANDSHAKES_PER_ADDR 32u
#define COAPD_DEFAULT_HANDSHAKE_PRESSURE 16u
#define COAPD_DEFAULT_HANDSHAKE_TIMEOUT 3u
#define COAPD_DEFAULT_MAX_PARKED_HANDSHAKES 1600u
#define COAPD_DEFAULT_LOG_LEVEL 5 /* notice, syslog numbering */
/** `log_dest` values, in the order of its words. */
#define COAPD_LOG_DEST_STDERR 0u
#define COAPD_LOG_DEST_SYSLOG 1u

/** One `listen ADDR PORT` line. */
typedef struct coapd_listen {
  char addr[64]; /**< the literal as written (validated IPv4/IPv6) */
  int family;    /**< AF_INET or AF_INET6 */
  uint16_t port; /**< 1..65535 */
  unsigned line; /**< line number in the config file */
} coapd_listen;

/** One `plugin_opt_KEY VALUE` line. */
typedef struct coapd_option {
  char *key;   /**< KEY without the `plugin_opt_` prefix */
  char *value; /**< rest of the line, trimmed */
  unsigned line;
} coapd_option;

/** One `plugin PATH` line and the options that follow it. */
typedef struct coapd_plugin_conf {
  /**
   * The path to dlopen(): a relative path with a '/' has been joined to the
   * config file's directory; a bare name (no '/') is kept as written and is
   * looked up in the plugin directory (coapd_config_plugin_file()).
   */
  char *path;
  int bare; /**< 1 if @ref path is a bare name */
  unsigned line;
  coapd_option *opts;
  size_t nopts;
  int log_level;           /**< `plugin_log_level`, 0: the global log_level */
  unsigned log_level_line; /**< the line that set it, 0: none */
} coapd_plugin_conf;

/** A file-valued key: resolved path and the line that set it (0 = unset). */
typedef struct coapd_file_key {
  char *path;
  unsigned line;
} coapd_file_key;

/** What coapd_dtls_apply() derives for a dtls_key on a PKCS#11 token
 * (docs/decisions.md §20): filled there, freed (the PIN wiped) with the
 * configuration, which libcoap borrows them from. */
typedef struct coapd_dtls_token {
  char *pin;          /**< from dtls_key_pin_file, or NULL */
  int cert_fd;        /**< a memfd with dtls_cert's first certificate, DER */
  char cert_path[32]; /**< "/proc/self/fd/N": libcoap reads it as DER */
} coapd_dtls_token;

/** A numeric key: value and the line that set it (0 = default). */
typedef struct coapd_num_key {
  unsigned value;
  unsigned line;
} coapd_num_key;

/** A yes/no key: value and the line that set it (0 = default). */
typedef struct coapd_bool_key {
  int value; /**< 1 yes, 0 no */
  unsigned line;
} coapd_bool_key;

/** A parsed configuration. Free with coapd_config_free(). */
typedef struct coapd_config {
  char *path; /**< config file path as given; used in every message */
  coapd_listen listen[COAPD_CONFIG_MAX_LISTEN];
  size_t nlisten;
  /** `metrics_listen ADDR PORT`: plain-HTTP /metrics and /healthz
   * (docs/metrics.md); none by default. */
  coapd_listen metrics_listen[COAPD_CONFIG_MAX_METRICS_LISTEN];
  size_t nmetrics_listen;
  coapd_file_key dtls_cert;
  coapd_file_key dtls_key;
  coapd_file_key dtls_ca;
  /** A `pkcs11:` dtls_key's PIN file, and what apply derives (NULL for a
   * key file). */
  coapd_file_key dtls_key_pin_file;
  coapd_dtls_token *dtls_token;
  coapd_file_key plugin_dir; /**< where bare plugin names are looked up */
  coapd_plugin_conf *plugins;
  size_t nplugins;
  int log_level; /**< 3 error .. 7 debug (syslog numbering) */
  unsigned log_level_line;
  /** `log_dest`: COAPD_LOG_DEST_STDERR (default) or COAPD_LOG_DEST_SYSLOG. */
  coapd_num_key log_dest;
  coapd_num_key session_timeout;        /**< seconds, 1..86400 */
  coapd_num_key max_idle_sessions;      /**< 1..1000000 */
  coapd_num_key max_handshake_sessions; /**< 1..100000 */
  coapd_num_key dtls_verify_depth;      /**< 1..16 */
  /**
   * `dtls_allow_expired yes`: the handshake accepts client certificates
   * outside their validity period (libcoap allow_expired_certs); the chain
   * must still verify to a dtls_ca anchor, and plugins decide about expiry
   * (RFC 9148 §3, AUTH-5). Default no.
   */
  coapd_bool_key dtls_allow_expired;
  /**
   * `dtls_reboot_probe yes` (default): a session that a new ClientHello
   * from its own address hits is probed and dropped if it does not answer,
   * so a rebooted device can come back (host/reboot.h, RFC 6347 §4.2.8).
   * `no` for a libcoap that does this itself.
   */
  coapd_bool_key dtls_reboot_probe;
  /**
   * Admission control under a ClientHello flood (host/admit.h,
   * docs/admission.md). `dtls_admission no` leaves only libcoap's own caps.
   */
  coapd_bool_key dtls_admission;
  coapd_num_key max_handshakes_per_addr; /**< 1..100000, half-open per address */
  coapd_num_key handshake_pressure;      /**< 0..100000 half-open; 0 = always */
  coapd_num_key handshake_timeout;       /**< seconds, 1..30, under pressure */
  coapd_num_key max_parked_handshakes;   /**< 0..65536 silent HELLO sessions held */
} coapd_config;

/**
 * Parse @p len bytes of config text. @p path names the file in messages
 * and gives the directory relative paths resolve against. Touches no file.
 * On success returns EST_OK and sets *out. On failure returns EST_ERR_CONFIG
 * (or EST_ERR_TOO_LARGE, EST_ERR_NOMEM), leaves *out NULL and writes
 * `PATH:LINE: problem` into @p err.
 */
est_err coapd_config_parse_buf(const char *text, size_t len, const char *path,
                               coapd_config **out, char *err,
                               size_t errlen) EST_MUST_CHECK;

/**
 * Read @p path (a regular file of at most COAPD_CONFIG_MAX_BYTES) and parse
 * it with coapd_config_parse_buf(). I/O problems give EST_ERR_IO and
 * `PATH: reason`.
 */
est_err coapd_config_parse_file(const char *path, coapd_config **out, char *err,
                                size_t errlen) EST_MUST_CHECK;

/** Free a config; NULL is a no-op. */
void coapd_config_free(coapd_config *cfg);

/**
 * The file to dlopen() for @p pc: `PLUGIN_DIR/NAME` for a bare name (the
 * name is used exactly as written, e.g. `est_coaps.so`), else pc->path.
 * Returns EST_OK, or EST_ERR_TOO_LARGE if it does not fit @p buf.
 */
est_err coapd_config_plugin_file(const coapd_plugin_conf *pc,
                                 const char *plugin_dir, char *buf,
                                 size_t buflen) EST_MUST_CHECK;

/**
 * Check that every file the config names can be opened for reading and is a
 * regular file: dtls_cert, dtls_key, dtls_ca and each plugin (bare names
 * under @p plugin_dir). On failure returns EST_ERR_CONFIG with
 * `PATH:LINE: KEY 'FILE': reason` in @p err.
 */
est_err coapd_config_check_files(const coapd_config *cfg,
                                 const char *plugin_dir, char *err,
                                 size_t errlen) EST_MUST_CHECK;

/** printf into the error buffer @p err of @p errlen bytes (NULL/0: no-op);
 *  every host error message is written through this. */
void coapd_errf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/**
 * Print every key coapd.conf takes, with its type, default and one line
 * of help, in the layout of `coapd --help-plugin` (est_opts_help()); this
 * is `coapd --help-config`. EST_ERR_IO if writing fails.
 */
est_err coapd_config_help(FILE *out) EST_MUST_CHECK;

/** "error", "warning", "notice", "info" or "debug" for 3..7, else "?". */
const char *coapd_log_level_name(int level);

#ifdef __cplusplus
}
#endif

#endif /* COAPD_CONFIG_H */
