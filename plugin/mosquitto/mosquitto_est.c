/* mosquitto_est.so: the MQTT front end of the est-coaps operator commands
 * (issue "MQTT-bridged control"), a Mosquitto 2.0 plugin, API v5.
 *
 *  - Commands on $CONTROL/est-coaps/v1 in the dynamic-security format run
 *    through ctl_run_envelope() (control/ctl.h), the one implementation that
 *    estctl runs too. Replies go to the sender on .../v1/response.
 *  - Audit rows written by any process (coapd, estctl, this plugin) become
 *    events on est-coaps/v1/events/<kind>, built by ctl_event().
 *  - The ACL callback guards these topics and defers everything else.
 *
 * Broker facts are cited from docs/mosquitto-2.0.11.md as "ref §N". All state
 * lives in the userdata the broker hands back to every callback; there are
 * no file-level mutable globals (ref §2.3: one image may be init'ed twice). */
#define _POSIX_C_SOURCE 200809L

/* mosquitto_broker.h first: it defines mosquitto_plugin_id_t (ref §1.1). */
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
#include <mosquitto.h>
#include <mqtt_protocol.h>

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "coapd/options.h"
#include "common/opts.h"
#include "control/ctl.h"
#include "store/store.h"

/* mosq_plugin_EXPORT is empty on Linux and the header redefines it, so the
 * entry points are exported by hand under -fvisibility=hidden (ref §1.1). */
#define MEST_EXPORT __attribute__((visibility("default")))

#define MEST_TOPIC_CONTROL "$CONTROL/est-coaps/v1"
#define MEST_TOPIC_RESPONSE "$CONTROL/est-coaps/v1/response"
#define MEST_TOPIC_CTL_TREE "$CONTROL/est-coaps"
#define MEST_TOPIC_EVENTS "est-coaps/v1/events"
#define MEST_CURSOR_KEY "broker.cursor"

/* Writes on the broker's only thread wait at most this long for another
 * writer's lock; then the command gets "database is busy, try again"
 * (ref §0.10: a 2 s timeout stalled every client for 1.8 s). */
#define MEST_BUSY_MS 20
#define MEST_POLL_MIN_MS 10L
#define MEST_POLL_MAX_MS 60000L
/* Audit rows published per poll; a full batch makes the next tick poll
 * again at once, so a backlog drains without one long stall. */
#define MEST_BATCH 100u
#define MEST_OPERATORS_MAX 64u
#define MEST_PATH_MAX 4096u
#define MEST_OPERATORS_TEXT_MAX (16u * 1024u)
/* Warn once if no TICK came this long after init (ref §0.4: never with
 * per_listener_settings true). */
#define MEST_TICK_WARN_S 10

#define LOG(level, ...) mosquitto_log_printf((level), "est-coaps: " __VA_ARGS__)

/* The refusal a client that is not an operator gets, whatever it sent. It
 * is a valid reply envelope (schemas/control/reply.json). */
static const char refusal_reply[] =
  "{\"responses\":[{\"command\":\"\",\"error\":"
  "\"not authorised: only operators may run est-coaps commands\"}]}";

typedef struct mest {
  mosquitto_plugin_id_t *pid;
  store *s;
  char *db_path;
  char *ops_buf;                       /* operator names, NUL-separated */
  const char *ops[MEST_OPERATORS_MAX]; /* point into ops_buf */
  size_t n_ops;
  long poll_ms;

  struct timespec next_poll; /* CLOCK_MONOTONIC; zero: poll on the next tick */
  struct timespec started;
  bool ticked, tick_warned;
  uint64_t data_version;     /* store_data_version() at the last scan */
  int64_t cursor;            /* last audit id handled (published or skipped) */
  int64_t cursor_saved;      /* last value written to broker.cursor */
  bool rescan;               /* read the feed even if data_version is unchanged */
  bool behind;               /* the last batch was full: poll on the next tick */
  bool poll_failing;         /* log a failing poll once, not every tick */
  bool registered_control, registered_acl, registered_tick;
} mest;

/* ------------------------------------------------------------ helpers */

/* True if @p topic is @p base or below it ("a/b" is under "a"). */
static bool topic_under(const char *topic, const char *base) {
  size_t n = strlen(base);
  return strncmp(topic, base, n) == 0 && (topic[n] == '\0' || topic[n] == '/');
}

static bool is_operator(const mest *m, const char *user) {
  if (user == NULL)
    return false;
  for (size_t i = 0; i < m->n_ops; i++)
    if (strcmp(m->ops[i], user) == 0)
      return true;
  return false;
}

static bool ts_before(const struct timespec *a, const struct timespec *b) {
  return a->tv_sec < b->tv_sec ||
         (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

static struct timespec ts_add_ms(struct timespec t, long ms) {
  t.tv_sec += ms / 1000;
  t.tv_nsec += (ms % 1000) * 1000000L;
  if (t.tv_nsec >= 1000000000L) {
    t.tv_sec++;
    t.tv_nsec -= 1000000000L;
  }
  return t;
}

/* Hand a copy of @p text to the broker. The copy comes from
 * mosquitto_malloc(): the broker frees payloads with its own accounting,
 * and a plain malloc() or mosquitto_broker_publish_copy() underflows its
 * heap counter, which with memory_limit refuses every client (ref §1.6).
 * @p props is consumed whatever happens (the broker owns it on success). */
static est_err publish_text(const char *client_id, const char *topic,
                            const char *text, int qos,
                            mosquitto_property *props) {
  size_t len = strlen(text);
  void *payload = NULL;
  est_err rc = EST_OK;

  if (len > (size_t)INT_MAX) {
    rc = EST_ERR_TOO_LARGE;
    goto out;
  }
  if ((payload = mosquitto_malloc(len > 0 ? len : 1)) == NULL) {
    rc = EST_ERR_NOMEM;
    goto out;
  }
  memcpy(payload, text, len);
  if (mosquitto_broker_publish(client_id, topic, (int)len, payload, qos, false,
                               props) == MOSQ_ERR_SUCCESS) {
    payload = NULL;
    props = NULL;
  } else {
    rc = EST_ERR_UNAVAILABLE;
  }
out:
  /* On failure the caller still owns both (ref §1.6). */
  mosquitto_free(payload);
  mosquitto_property_free_all(&props);
  return rc;
}

/* ------------------------------------------------------------ options */

/* Mosquitto hands a plugin its plugin_opt_ lines as bare key/value pairs,
 * with neither the file name nor line numbers (ref §1.2), so messages name
 * the place as MEST_CONF_NAME and the option as it is written there,
 * plugin_opt_NAME: "mosquitto.conf: duplicate 'plugin_opt_db_path'". */
#define MEST_CONF_NAME "mosquitto.conf"
#define MEST_OPT_PREFIX "plugin_opt_"

/* The options as the table stores them (common/opts.h). */
typedef struct mest_opts {
  const char *db_path;
  const char *operators;
  long long poll_ms;
} mest_opts;

/* Every option of this plugin; anything else is refused, with a hint for a
 * near miss, so that a typo (plugin_opt_operator) does not silently leave
 * the defaults in place. Keys are at least 3 bytes (ref §0.3). */
static const coapd_opt mest_option_entries[] = {
  {.name = "db_path", COAPD_OPT_PATH_IN(mest_opts, db_path),
   .flags = COAPD_OPT_REQUIRED, .max_len = MEST_PATH_MAX - 1,
   .doc = "coapd's database (its plugin_opt_db_path); must exist and be "
          "writable by the broker's user"},
  /* A name becomes the audit actor, capped by the store. */
  {.name = "operators", COAPD_OPT_LIST_IN(mest_opts, operators), .min = 0,
   .max = MEST_OPERATORS_MAX, .max_len = MEST_OPERATORS_TEXT_MAX,
   .item_max = STORE_MAX_TEXT,
   .doc = "MQTT usernames that may run commands and receive events; "
          "none: every command is refused"},
  {.name = "poll_ms", COAPD_OPT_INT_IN(mest_opts, poll_ms),
   .min = MEST_POLL_MIN_MS, .max = MEST_POLL_MAX_MS, .def = "500",
   .doc = "how often to look for changes made by coapd and estctl, in ms"},
};

/* Exported so that `coapd --help-plugin mosquitto_est.so` can print it; the
 * table is const, so the plugin still has no mutable globals. */
COAPD_OPTIONS_EXPORT const coapd_opt_table coapd_options_entry =
    COAPD_OPT_TABLE("mosquitto_est", mest_option_entries);

/* Copy the operator names into m->ops_buf and point m->ops at them. The
 * table has checked their count and lengths; empty items are skipped. */
static est_err take_operators(mest *m, const char *value) {
  size_t len = value ? strnlen(value, MEST_OPERATORS_TEXT_MAX + 1) : 0;
  const char *item;
  size_t n;
  est_opts_list it;
  if (len > MEST_OPERATORS_TEXT_MAX)
    return EST_ERR_INTERNAL;
  if ((m->ops_buf = malloc(len + 1)) == NULL)
    return EST_ERR_NOMEM;
  memcpy(m->ops_buf, value ? value : "", len);
  m->ops_buf[len] = '\0';
  est_opts_list_begin(&it, m->ops_buf);
  while (est_opts_list_next(&it, &item, &n)) {
    if (n == 0)
      continue;
    if (m->n_ops == MEST_OPERATORS_MAX)
      return EST_ERR_INTERNAL;
    /* The walk is already past this item, so cutting it here is safe. */
    m->ops_buf[(size_t)(item - m->ops_buf) + n] = '\0';
    m->ops[m->n_ops++] = item;
  }
  return EST_OK;
}

static est_err parse_options(mest *m, const struct mosquitto_opt *opts,
                             int n) {
  est_opts st;
  mest_opts v = {NULL, NULL, 0};
  est_err rc = est_opts_begin(&st, &coapd_options_entry, &v, MEST_OPT_PREFIX);
  if (n > 0 && opts == NULL)
    return EST_ERR_INVALID;
  for (int i = 0; i < n && rc == EST_OK; i++)
    rc = est_opts_set(&st, opts[i].key, opts[i].value, MEST_CONF_NAME, 0);
  if (rc == EST_OK)
    rc = est_opts_end(&st, MEST_CONF_NAME, 0);
  if (rc != EST_OK) {
    LOG(MOSQ_LOG_ERR, "%s", est_opts_error(&st));
    return EST_ERR_CONFIG;
  }
  m->poll_ms = (long)v.poll_ms;
  size_t len = strnlen(v.db_path, MEST_PATH_MAX);
  if ((m->db_path = malloc(len + 1)) == NULL)
    return EST_ERR_NOMEM;
  memcpy(m->db_path, v.db_path, len);
  m->db_path[len] = '\0';
  if ((rc = take_operators(m, v.operators)) != EST_OK)
    return rc;
  if (m->n_ops == 0)
    LOG(MOSQ_LOG_WARNING, "plugin_opt_operators names nobody: every command "
        "is refused and nobody may subscribe to events");
  return EST_OK;
}

/* ------------------------------------------------------------ cursor */

/* The last audit id already published survives restarts in the meta table,
 * so old rows are never announced twice and rows written while the broker
 * was down are announced once after it comes back. */
static est_err cursor_load(mest *m) {
  char *text = NULL, *end = NULL;
  int64_t max_id = 0;
  est_err rc;

  if ((rc = store_audit_max_id(m->s, &max_id)) != EST_OK)
    goto out;
  rc = store_meta_get(m->s, MEST_CURSOR_KEY, &text);
  if (rc == EST_ERR_NOT_FOUND) {
    /* First start: announce only what happens from now on. */
    m->cursor = max_id;
    m->cursor_saved = -1;
    rc = EST_OK;
    goto out;
  }
  if (rc != EST_OK)
    goto out;
  errno = 0;
  long long v = strtoll(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || v < 0) {
    LOG(MOSQ_LOG_WARNING, "meta %s is not an audit id ('%.32s'); starting "
        "after audit id %" PRId64, MEST_CURSOR_KEY, text, max_id);
    m->cursor = max_id;
    m->cursor_saved = -1;
  } else if (v > max_id) {
    /* The database was replaced by an older copy or a new file. */
    LOG(MOSQ_LOG_WARNING, "meta %s = %lld is past the newest audit id %"
        PRId64 " (database replaced?); starting after %" PRId64,
        MEST_CURSOR_KEY, v, max_id, max_id);
    m->cursor = max_id;
    m->cursor_saved = -1;
  } else {
    m->cursor = v;
    m->cursor_saved = v;
  }
out:
  free(text);
  return rc;
}

/* Persist the cursor if it moved. A busy database is retried on a later
 * poll; until then a restart could announce the unsaved rows again. */
static est_err cursor_save(mest *m) {
  char buf[32];
  est_err rc;
  if (m->cursor == m->cursor_saved)
    return EST_OK;
  snprintf(buf, sizeof buf, "%" PRId64, m->cursor);
  rc = store_meta_set(m->s, MEST_CURSOR_KEY, buf);
  if (rc == EST_OK)
    m->cursor_saved = m->cursor;
  return rc;
}

/* ------------------------------------------------------------ events */

typedef struct feed {
  mest *m;
  size_t rows;
  size_t published;
  bool failed;
} feed;

/* One audit row: publish its event (if it is one) and move the cursor past
 * it. A row whose event cannot be handed over stops the batch without
 * moving the cursor, so the next poll tries it again. */
static int on_audit_row(void *ctx, const store_audit_row *row) {
  feed *f = ctx;
  const char *kind = NULL;
  char topic[64];
  char *text = NULL;
  cJSON *ev = ctl_event(row, &kind);

  f->rows++;
  if (ev == NULL || kind == NULL) {
    /* preauth_add, preauth_remove, reissued: not events (schemas/README). */
    cJSON_Delete(ev);
    f->m->cursor = row->id;
    return 0;
  }
  snprintf(topic, sizeof topic, "%s/%s", MEST_TOPIC_EVENTS, kind);
  text = cJSON_PrintUnformatted(ev);
  cJSON_Delete(ev);
  if (text == NULL || publish_text(NULL, topic, text, 1, NULL) != EST_OK) {
    cJSON_free(text);
    f->failed = true;
    return 1;
  }
  cJSON_free(text);
  f->m->cursor = row->id;
  f->published++;
  return 0;
}

/* Publish the audit rows after the cursor. PRAGMA data_version changes
 * only for commits by other connections, so own commands set m->rescan
 * (store.h). */
static void events_poll(mest *m) {
  uint64_t dv = 0;
  feed f = {.m = m};
  est_err rc;

  /* data_version first: a commit between the two reads is then seen
   * again on the next poll, never lost. */
  m->behind = false;
  if ((rc = store_data_version(m->s, &dv)) != EST_OK)
    goto fail;
  if (dv != m->data_version || m->rescan) {
    m->data_version = dv;
    m->rescan = false;
    rc = store_audit_since(m->s, m->cursor, MEST_BATCH, on_audit_row, &f);
    /* A failure is retried after the poll period (a busy database must
     * not cost the broker 20 ms on every tick); a backlog at once. */
    if (rc != EST_OK || f.failed)
      m->rescan = true;
    else if (f.rows == MEST_BATCH)
      m->rescan = m->behind = true;
    if (rc != EST_OK)
      goto fail;
    if (f.failed) {
      rc = EST_ERR_UNAVAILABLE;
      goto fail;
    }
    if (f.published > 0)
      LOG(MOSQ_LOG_DEBUG, "published %zu event(s), cursor at audit id %"
          PRId64, f.published, m->cursor);
  }
  if ((rc = cursor_save(m)) != EST_OK)
    goto fail;
  if (m->poll_failing)
    LOG(MOSQ_LOG_NOTICE, "event feed works again");
  m->poll_failing = false;
  return;
fail:
  if (!m->poll_failing)
    LOG(MOSQ_LOG_WARNING, "event feed: %s (%s); retrying every poll",
        est_strerror(rc), store_errmsg(m->s));
  m->poll_failing = true;
}

/* ------------------------------------------------------------ callbacks */

/* Read the v5 correlation data of a request into the reply properties, and
 * say it is JSON. Property values are plain calloc() copies: free(), not
 * mosquitto_free() (ref §1.7). */
static mosquitto_property *reply_props(const mosquitto_property *req) {
  mosquitto_property *props = NULL;
  void *corr = NULL;
  uint16_t corr_len = 0;
  if (req != NULL &&
      mosquitto_property_read_binary(req, MQTT_PROP_CORRELATION_DATA, &corr,
                                     &corr_len, false) != NULL &&
      corr != NULL)
    (void)mosquitto_property_add_binary(&props, MQTT_PROP_CORRELATION_DATA,
                                        corr, corr_len);
  free(corr);
  (void)mosquitto_property_add_string(&props, MQTT_PROP_CONTENT_TYPE,
                                      "application/json");
  return props;
}

/* $CONTROL/est-coaps/v1. Always returns SUCCESS: any other code makes the
 * broker disconnect the publisher (ref §1.5). */
static int on_control(int event, void *event_data, void *userdata) {
  const struct mosquitto_evt_control *ed = event_data;
  mest *m = userdata;
  const char *user = mosquitto_client_username(ed->client);
  const char *cid = mosquitto_client_id(ed->client);
  char *reply = NULL;
  const char *text;
  bool op = is_operator(m, user);

  (void)event;
  if (!m->ticked && !m->tick_warned) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (now.tv_sec - m->started.tv_sec > MEST_TICK_WARN_S) {
      LOG(MOSQ_LOG_WARNING, "no TICK from the broker: events are not "
          "published (per_listener_settings must be false)");
      m->tick_warned = true;
    }
  }
  if (op) {
    ctl_ctx c = {.s = m->s, .actor = user, .may_write = true};
    reply = ctl_run_envelope(&c, ed->payload, ed->payloadlen);
    text = reply;
    /* Own commits do not move data_version: read the feed right away. */
    m->rescan = true;
  } else {
    /* Requests and certificates carry device identities, so reading is
     * for operators too; nothing is parsed or run for anyone else. */
    LOG(MOSQ_LOG_INFO, "refused a control message from %s%.64s%s (client "
        "%.64s): not an operator", user ? "'" : "", user ? user : "anonymous",
        user ? "'" : "", cid ? cid : "?");
    text = refusal_reply;
  }
  if (text == NULL) {
    LOG(MOSQ_LOG_ERR, "out of memory answering client %.64s", cid ? cid : "?");
  } else if (cid != NULL) {
    /* Directed to the sender: no subscription or READ check is needed and
     * nobody else sees it (ref §1.6), as dynamic-security does. */
    if (publish_text(cid, MEST_TOPIC_RESPONSE, text, 1,
                     reply_props(ed->properties)) != EST_OK)
      LOG(MOSQ_LOG_ERR, "could not queue the reply to client %.64s", cid);
  }
  cJSON_free(reply);
  if (op)
    events_poll(m);
  return MOSQ_ERR_SUCCESS;
}

/* Plugin ACL callbacks run before acl_file and the first non-DEFER answer
 * wins; if all defer, access is denied (ref §0.6, §2.4). */
static int on_acl(int event, void *event_data, void *userdata) {
  const struct mosquitto_evt_acl_check *ed = event_data;
  const mest *m = userdata;
  const char *t = ed->topic;

  (void)event;
  if (t == NULL)
    return MOSQ_ERR_PLUGIN_DEFER;
  if (topic_under(t, MEST_TOPIC_EVENTS)) {
    switch (ed->access) {
    case MOSQ_ACL_READ:
    case MOSQ_ACL_SUBSCRIBE:
      return is_operator(m, mosquitto_client_username(ed->client))
               ? MOSQ_ERR_SUCCESS
               : MOSQ_ERR_ACL_DENIED;
    case MOSQ_ACL_UNSUBSCRIBE:
      return MOSQ_ERR_SUCCESS;
    default:
      /* Only the plugin publishes events (its publishes skip this check). */
      return MOSQ_ERR_ACL_DENIED;
    }
  }
  if (strcmp(t, MEST_TOPIC_CONTROL) == 0) {
    /* Anyone may send; on_control decides per sender, so a non-operator
     * gets an error reply rather than a silent drop. */
    if (ed->access == MOSQ_ACL_WRITE || ed->access == MOSQ_ACL_UNSUBSCRIBE)
      return MOSQ_ERR_SUCCESS;
    return MOSQ_ERR_ACL_DENIED;
  }
  if (strcmp(t, MEST_TOPIC_RESPONSE) == 0) {
    /* Replies are directed to their requester, so a subscriber only ever
     * gets its own; nobody may forge one. */
    return ed->access == MOSQ_ACL_WRITE ? MOSQ_ERR_ACL_DENIED
                                        : MOSQ_ERR_SUCCESS;
  }
  if (topic_under(t, MEST_TOPIC_CTL_TREE))
    return ed->access == MOSQ_ACL_UNSUBSCRIBE ? MOSQ_ERR_SUCCESS
                                              : MOSQ_ERR_ACL_DENIED;
  return MOSQ_ERR_PLUGIN_DEFER;
}

/* ~10 Hz when idle, more under load, time fields all 0 in 2.0.11: rate
 * limit by CLOCK_MONOTONIC (ref §0.4). */
static int on_tick(int event, void *event_data, void *userdata) {
  mest *m = userdata;
  struct timespec now;

  (void)event;
  (void)event_data;
  m->ticked = true;
  if (clock_gettime(CLOCK_MONOTONIC, &now) != 0)
    return MOSQ_ERR_SUCCESS;
  if (ts_before(&now, &m->next_poll))
    return MOSQ_ERR_SUCCESS;
  m->next_poll = ts_add_ms(now, m->poll_ms);
  events_poll(m);
  if (m->behind)
    m->next_poll = now; /* a full batch: go on at the next tick */
  return MOSQ_ERR_SUCCESS;
}

/* ------------------------------------------------------------ entry points */

static void mest_free(mest *m) {
  if (m == NULL)
    return;
  if (m->registered_control)
    mosquitto_callback_unregister(m->pid, MOSQ_EVT_CONTROL, on_control,
                                  MEST_TOPIC_CONTROL);
  if (m->registered_acl)
    mosquitto_callback_unregister(m->pid, MOSQ_EVT_ACL_CHECK, on_acl, NULL);
  if (m->registered_tick)
    mosquitto_callback_unregister(m->pid, MOSQ_EVT_TICK, on_tick, NULL);
  store_close(m->s);
  free(m->db_path);
  free(m->ops_buf);
  free(m);
}

MEST_EXPORT int mosquitto_plugin_version(int supported_version_count,
                                         const int *supported_versions);
MEST_EXPORT int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier,
                                      void **userdata,
                                      struct mosquitto_opt *options,
                                      int option_count);
MEST_EXPORT int mosquitto_plugin_cleanup(void *userdata,
                                         struct mosquitto_opt *options,
                                         int option_count);

MEST_EXPORT int mosquitto_plugin_version(int supported_version_count,
                                         const int *supported_versions) {
  for (int i = 0; i < supported_version_count; i++)
    if (supported_versions[i] == 5)
      return 5;
  return -1;
}

/* A non-zero return stops the broker with that exit code (ref §1.2), which
 * is what a wrong configuration or an unusable database should do. */
MEST_EXPORT int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier,
                                      void **userdata,
                                      struct mosquitto_opt *options,
                                      int option_count) {
  mest *m = NULL;
  store_options so;
  char diag[256] = "";
  int ret = MOSQ_ERR_UNKNOWN;
  est_err rc;

  if (userdata == NULL)
    return MOSQ_ERR_INVAL;
  *userdata = NULL;
  if ((m = calloc(1, sizeof *m)) == NULL)
    return MOSQ_ERR_NOMEM;
  m->pid = identifier;
  if ((rc = parse_options(m, options, option_count)) != EST_OK) {
    ret = rc == EST_ERR_NOMEM ? MOSQ_ERR_NOMEM : MOSQ_ERR_INVAL;
    goto fail;
  }

  store_options_init(&so);
  so.busy_timeout_ms = MEST_BUSY_MS; /* store_open() waits longer itself */
  so.create = false;                 /* coapd creates it; a typo must not */
  if ((rc = store_open(m->db_path, &so, &m->s, diag, sizeof diag)) != EST_OK) {
    /* The broker drops privileges before plugins load (ref §0.12). */
    LOG(MOSQ_LOG_ERR, "cannot open database %s: %s%s", m->db_path, diag,
        rc == EST_ERR_IO ? " (mosquitto drops privileges before it loads "
                           "plugins: see deploy/README.md)"
                         : "");
    goto fail;
  }
  if ((rc = store_data_version(m->s, &m->data_version)) != EST_OK ||
      (rc = cursor_load(m)) != EST_OK) {
    LOG(MOSQ_LOG_ERR, "cannot read database %s: %s (%s)", m->db_path,
        est_strerror(rc), store_errmsg(m->s));
    goto fail;
  }
  /* Rows written while the broker was down are published on the first
   * tick; a cursor that cannot be saved yet is retried there. */
  m->rescan = true;
  (void)cursor_save(m);
  clock_gettime(CLOCK_MONOTONIC, &m->started);

  if (mosquitto_callback_register(identifier, MOSQ_EVT_CONTROL, on_control,
                                  MEST_TOPIC_CONTROL, m) != MOSQ_ERR_SUCCESS)
    goto reg_fail;
  m->registered_control = true;
  if (mosquitto_callback_register(identifier, MOSQ_EVT_ACL_CHECK, on_acl, NULL,
                                  m) != MOSQ_ERR_SUCCESS)
    goto reg_fail;
  m->registered_acl = true;
  if (mosquitto_callback_register(identifier, MOSQ_EVT_TICK, on_tick, NULL,
                                  m) != MOSQ_ERR_SUCCESS)
    goto reg_fail;
  m->registered_tick = true;

  LOG(MOSQ_LOG_NOTICE, "ready: database %s, %zu operator(s), poll every %ld "
      "ms, events after audit id %" PRId64, m->db_path, m->n_ops, m->poll_ms,
      m->cursor);
  *userdata = m;
  return MOSQ_ERR_SUCCESS;

reg_fail:
  LOG(MOSQ_LOG_ERR, "cannot register broker callbacks");
fail:
  mest_free(m);
  return ret;
}

MEST_EXPORT int mosquitto_plugin_cleanup(void *userdata,
                                         struct mosquitto_opt *options,
                                         int option_count) {
  mest *m = userdata;
  (void)options;
  (void)option_count;
  if (m == NULL)
    return MOSQ_ERR_SUCCESS;
  if (m->s != NULL && cursor_save(m) != EST_OK)
    LOG(MOSQ_LOG_WARNING, "could not save the event cursor (%s): events "
        "after audit id %" PRId64 " may be published again",
        store_errmsg(m->s), m->cursor_saved);
  mest_free(m);
  return MOSQ_ERR_SUCCESS;
}
