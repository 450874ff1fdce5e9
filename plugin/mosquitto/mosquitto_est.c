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
 * Broker facts are cited from mosquitto-2.0.11.md as "ref §N". All state
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
#define MEST_POLL_DEFAULT_MS 500L
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

/* Split "alice, bob,,carol" into m->ops; blanks around names are dropped,
 * empty entries skipped. */
static est_err parse_operators(mest *m, const char *value) {
  size_t len = strnlen(value, MEST_OPERATORS_TEXT_MAX + 1);
  if (len > MEST_OPERATORS_TEXT_MAX) {
    LOG(MOSQ_LOG_ERR, "plugin_opt_operators: longer than %u bytes",
        MEST_OPERATORS_TEXT_MAX);
    return EST_ERR_CONFIG;
  }
  if ((m->ops_buf = malloc(len + 1)) == NULL)
    return EST_ERR_NOMEM;
  memcpy(m->ops_buf, value, len + 1);
  char *p = m->ops_buf;
  while (*p != '\0') {
    char *start = p, *end;
    while (*p != '\0' && *p != ',')
      p++;
    end = p;
    if (*p == ',')
      *p++ = '\0';
    while (start < end && (*start == ' ' || *start == '\t'))
      start++;
    while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
      end--;
    *end = '\0';
    if (start == end)
      continue;
    /* The name becomes the audit actor, capped by the store. */
    if ((size_t)(end - start) > STORE_MAX_TEXT) {
      LOG(MOSQ_LOG_ERR, "plugin_opt_operators: a name is longer than %u bytes",
          STORE_MAX_TEXT);
      return EST_ERR_CONFIG;
    }
    if (m->n_ops == MEST_OPERATORS_MAX) {
      LOG(MOSQ_LOG_ERR, "plugin_opt_operators: more than %u names",
          MEST_OPERATORS_MAX);
      return EST_ERR_CONFIG;
    }
    m->ops[m->n_ops++] = start;
  }
  return EST_OK;
}

static est_err parse_poll_ms(mest *m, const char *value) {
  char *end = NULL;
  long v;
  errno = 0;
  v = strtol(value, &end, 10);
  if (errno != 0 || end == value || *end != '\0' || v < MEST_POLL_MIN_MS ||
      v > MEST_POLL_MAX_MS) {
    LOG(MOSQ_LOG_ERR, "plugin_opt_poll_ms: '%.32s' is not a number of "
        "milliseconds from %ld to %ld", value, MEST_POLL_MIN_MS,
        MEST_POLL_MAX_MS);
    return EST_ERR_CONFIG;
  }
  m->poll_ms = v;
  return EST_OK;
}

/* Every option of this plugin; anything else is refused so that a typo
 * (plugin_opt_operator) does not silently leave the defaults in place. */
typedef enum opt_id { OPT_DB_PATH = 0, OPT_OPERATORS, OPT_POLL_MS, OPT__MAX } opt_id;
static const char *const opt_names[OPT__MAX] = {"db_path", "operators",
                                                "poll_ms"};

static est_err parse_db_path(mest *m, const char *value) {
  size_t len = strnlen(value, MEST_PATH_MAX);
  if (len == 0 || len == MEST_PATH_MAX) {
    LOG(MOSQ_LOG_ERR, "plugin_opt_db_path: empty or too long");
    return EST_ERR_CONFIG;
  }
  if ((m->db_path = malloc(len + 1)) == NULL)
    return EST_ERR_NOMEM;
  memcpy(m->db_path, value, len + 1);
  return EST_OK;
}

static est_err parse_options(mest *m, const struct mosquitto_opt *opts,
                             int n) {
  bool seen[OPT__MAX] = {false};
  est_err rc = EST_OK;
  m->poll_ms = MEST_POLL_DEFAULT_MS;
  for (int i = 0; i < n && rc == EST_OK; i++) {
    const char *k = opts[i].key, *v = opts[i].value;
    opt_id id = OPT__MAX;
    if (k == NULL || v == NULL) {
      LOG(MOSQ_LOG_ERR, "an option without a key or value");
      return EST_ERR_CONFIG;
    }
    for (int j = 0; j < OPT__MAX; j++)
      if (strcmp(k, opt_names[j]) == 0)
        id = (opt_id)j;
    if (id == OPT__MAX) {
      LOG(MOSQ_LOG_ERR, "unknown option plugin_opt_%.64s (known: db_path, "
          "operators, poll_ms)", k);
      return EST_ERR_CONFIG;
    }
    if (seen[id]) {
      LOG(MOSQ_LOG_ERR, "plugin_opt_%s is given twice", k);
      return EST_ERR_CONFIG;
    }
    seen[id] = true;
    switch (id) {
    case OPT_DB_PATH:
      rc = parse_db_path(m, v);
      break;
    case OPT_OPERATORS:
      rc = parse_operators(m, v);
      break;
    case OPT_POLL_MS:
      rc = parse_poll_ms(m, v);
      break;
    case OPT__MAX:
      break;
    }
  }
  if (rc != EST_OK)
    return rc;
  if (!seen[OPT_DB_PATH]) {
    LOG(MOSQ_LOG_ERR, "plugin_opt_db_path is required (the database coapd "
        "writes)");
    return EST_ERR_CONFIG;
  }
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
