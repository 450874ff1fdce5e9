/* mosquitto_est.so's callbacks (plugin/mosquitto/mosquitto_est.c) against a
 * stubbed broker: the mosquitto_* functions the plugin calls are defined
 * here, so the plugin source links without the broker. A real temporary
 * database stands in for coapd's; a second handle plays coapd/estctl.
 *
 * Covered: version and option parsing (defaults, every error), control
 * messages from an operator, a non-operator and an anonymous client,
 * malformed/oversized/wrongly typed payloads (error reply, return code
 * SUCCESS), a busy database, ACL decisions, TICK rate limiting, events
 * published once with the cursor persisted, restarts without duplicates,
 * backlog batching and publish failures. mosquitto_malloc() allocations
 * are tagged, so a payload from plain malloc() or a leak fails the test. */
#define _POSIX_C_SOURCE 200809L

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
#include <mosquitto.h>
#include <mqtt_protocol.h>

#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "common/opts.h"
#include "control/ctl.h"
#include "store/store.h"
#include "test_db.h"

/* The plugin's entry points (exported from the .so; declared here). */
int mosquitto_plugin_version(int supported_version_count,
                             const int *supported_versions);
int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata,
                          struct mosquitto_opt *options, int option_count);
int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *options,
                             int option_count);
/* Its option table, exported for coapd --help-plugin. */
extern const coapd_opt_table coapd_options_entry;

/* ================================================================ stubs */

/* The broker's opaque types, defined for the test only. */
struct mosquitto {
  const char *id;
  const char *username;
};
struct mqtt5__property {
  int identifier;
  void *value;
  uint16_t len;
  struct mqtt5__property *next;
};
struct mosquitto_plugin_id_t {
  int dummy;
};

#define MAX_CB 16
#define MAX_PUB 512
#define ALLOC_MAGIC 0x6d6f7371u /* "mosq" */

typedef struct cb_reg {
  int event;
  MOSQ_FUNC_generic_callback cb;
  char event_data[64];
  void *userdata;
} cb_reg;

typedef struct pub {
  char *client_id; /* NULL: broadcast */
  char *topic;
  char *payload;   /* NUL-terminated copy */
  int qos;
  bool retain;
  char *corr;      /* correlation data property, or NULL */
  bool json_type;  /* content-type application/json */
} pub;

/* Mutable test state lives here (tests only; the plugin has none). */
static struct {
  cb_reg cbs[MAX_CB];
  size_t n_cbs;
  int fail_register_event; /* register fails for this event (0: none) */
  pub pubs[MAX_PUB];
  size_t n_pubs;
  int fail_publish;        /* the next N publishes fail */
  long allocs;             /* outstanding mosquitto_malloc blocks */
  char log[16384];         /* everything logged, one line each */
  bool fake_clock;
  struct timespec now;     /* CLOCK_MONOTONIC when fake_clock */
} W;

void *mosquitto_malloc(size_t size) {
  /* A header tags the block so mosquitto_free() and publish can tell it
   * from plain malloc() memory (the broker's accounting, ref §1.6). */
  uint32_t *p = malloc(size + 16);
  if (p == NULL)
    return NULL;
  p[0] = ALLOC_MAGIC;
  W.allocs++;
  return (char *)p + 16;
}

static bool mosq_tagged(const void *mem) {
  return ((const uint32_t *)(const void *)((const char *)mem - 16))[0] ==
         ALLOC_MAGIC;
}

void mosquitto_free(void *mem) {
  if (mem == NULL)
    return;
  assert_true(mosq_tagged(mem));
  W.allocs--;
  free((char *)mem - 16);
}

/* The broker's logger, faked; declared with its format so clang checks it. */
void mosquitto_log_printf(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void mosquitto_log_printf(int level, const char *fmt, ...) {
  char line[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  size_t used = strlen(W.log);
  snprintf(W.log + used, sizeof W.log - used, "%d %s\n", level, line);
  if (getenv("TEST_VERBOSE") != NULL)
    fprintf(stderr, "log %d: %s\n", level, line);
}

int mosquitto_callback_register(mosquitto_plugin_id_t *identifier, int event,
                                MOSQ_FUNC_generic_callback cb_func,
                                const void *event_data, void *userdata) {
  assert_non_null(identifier);
  if (event == W.fail_register_event)
    return MOSQ_ERR_NOMEM;
  for (size_t i = 0; i < W.n_cbs; i++)
    if (W.cbs[i].event == event && W.cbs[i].cb == cb_func)
      return MOSQ_ERR_ALREADY_EXISTS;
  assert_true(W.n_cbs < MAX_CB);
  cb_reg *r = &W.cbs[W.n_cbs++];
  r->event = event;
  r->cb = cb_func;
  r->userdata = userdata;
  r->event_data[0] = '\0';
  if (event == MOSQ_EVT_CONTROL) {
    assert_non_null(event_data);
    snprintf(r->event_data, sizeof r->event_data, "%s",
             (const char *)event_data);
  }
  return MOSQ_ERR_SUCCESS;
}

int mosquitto_callback_unregister(mosquitto_plugin_id_t *identifier, int event,
                                  MOSQ_FUNC_generic_callback cb_func,
                                  const void *event_data) {
  (void)identifier;
  (void)event_data;
  for (size_t i = 0; i < W.n_cbs; i++) {
    if (W.cbs[i].event == event && W.cbs[i].cb == cb_func) {
      W.cbs[i] = W.cbs[--W.n_cbs];
      return MOSQ_ERR_SUCCESS;
    }
  }
  return MOSQ_ERR_NOT_FOUND;
}

const char *mosquitto_client_id(const struct mosquitto *client) {
  return client != NULL ? client->id : NULL;
}

const char *mosquitto_client_username(const struct mosquitto *client) {
  return client != NULL ? client->username : NULL;
}

const mosquitto_property *
mosquitto_property_read_binary(const mosquitto_property *proplist,
                               int identifier, void **value, uint16_t *len,
                               bool skip_first) {
  (void)skip_first;
  for (const mosquitto_property *p = proplist; p != NULL; p = p->next) {
    if (p->identifier != identifier)
      continue;
    /* Like the broker: a plain calloc() copy (ref §1.7). */
    *value = calloc(1, (size_t)p->len + 1u);
    assert_non_null(*value);
    memcpy(*value, p->value, p->len);
    *len = p->len;
    return p;
  }
  return NULL;
}

static int prop_add(mosquitto_property **list, int id, const void *v,
                    uint16_t len) {
  mosquitto_property *p = calloc(1, sizeof *p);
  if (p == NULL || (p->value = malloc((size_t)len + 1u)) == NULL) {
    free(p);
    return MOSQ_ERR_NOMEM;
  }
  memcpy(p->value, v, len);
  ((char *)p->value)[len] = '\0';
  p->identifier = id;
  p->len = len;
  p->next = *list;
  *list = p;
  return MOSQ_ERR_SUCCESS;
}

int mosquitto_property_add_binary(mosquitto_property **proplist,
                                  int identifier, const void *value,
                                  uint16_t len) {
  return prop_add(proplist, identifier, value, len);
}

int mosquitto_property_add_string(mosquitto_property **proplist,
                                  int identifier, const char *value) {
  return prop_add(proplist, identifier, value, (uint16_t)strlen(value));
}

void mosquitto_property_free_all(mosquitto_property **properties) {
  mosquitto_property *p = *properties, *next;
  for (; p != NULL; p = next) {
    next = p->next;
    free(p->value);
    free(p);
  }
  *properties = NULL;
}

int mosquitto_broker_publish(const char *clientid, const char *topic,
                             int payloadlen, void *payload, int qos,
                             bool retain, mosquitto_property *properties) {
  assert_non_null(topic);
  assert_true(payloadlen >= 0);
  assert_non_null(payload);
  /* The broker frees payloads with its accounting: must be ours. */
  assert_true(mosq_tagged(payload));
  if (W.fail_publish > 0) {
    W.fail_publish--;
    return MOSQ_ERR_NOMEM; /* the caller keeps payload and properties */
  }
  assert_true(W.n_pubs < MAX_PUB);
  pub *p = &W.pubs[W.n_pubs++];
  p->client_id = clientid != NULL ? strdup(clientid) : NULL;
  p->topic = strdup(topic);
  p->payload = calloc(1, (size_t)payloadlen + 1u);
  assert_non_null(p->payload);
  memcpy(p->payload, payload, (size_t)payloadlen);
  p->qos = qos;
  p->retain = retain;
  p->corr = NULL;
  p->json_type = false;
  for (mosquitto_property *q = properties; q != NULL; q = q->next) {
    if (q->identifier == MQTT_PROP_CORRELATION_DATA)
      p->corr = strdup(q->value);
    if (q->identifier == MQTT_PROP_CONTENT_TYPE &&
        strcmp(q->value, "application/json") == 0)
      p->json_type = true;
  }
  /* On success the broker owns both. */
  mosquitto_free(payload);
  mosquitto_property_free_all(&properties);
  return MOSQ_ERR_SUCCESS;
}

/* CLOCK_MONOTONIC under test control (linked with --wrap=clock_gettime). */
int __real_clock_gettime(clockid_t clk, struct timespec *ts);
int __wrap_clock_gettime(clockid_t clk, struct timespec *ts);
int __wrap_clock_gettime(clockid_t clk, struct timespec *ts) {
  if (clk == CLOCK_MONOTONIC && W.fake_clock) {
    *ts = W.now;
    return 0;
  }
  return __real_clock_gettime(clk, ts);
}

static void clock_advance_ms(long ms) {
  W.now.tv_sec += ms / 1000;
  W.now.tv_nsec += (ms % 1000) * 1000000L;
  if (W.now.tv_nsec >= 1000000000L) {
    W.now.tv_sec++;
    W.now.tv_nsec -= 1000000000L;
  }
}

static void pubs_clear(void) {
  for (size_t i = 0; i < W.n_pubs; i++) {
    free(W.pubs[i].client_id);
    free(W.pubs[i].topic);
    free(W.pubs[i].payload);
    free(W.pubs[i].corr);
  }
  W.n_pubs = 0;
}

static cb_reg *find_cb(int event) {
  for (size_t i = 0; i < W.n_cbs; i++)
    if (W.cbs[i].event == event)
      return &W.cbs[i];
  return NULL;
}

/* ================================================================ fixture */

typedef struct fx {
  char dir[TEST_DB_DIR_MAX];
  char path[TEST_DB_PATH_MAX];
  store *s; /* coapd/estctl: another connection */
  struct mosquitto_plugin_id_t pid;
  void *ud; /* the plugin's userdata while loaded */
  int seed; /* distinct retry keys */
} fx;

static int setup(void **state) {
  fx *f = calloc(1, sizeof *f);
  if (f == NULL)
    return -1;
  memset(&W, 0, sizeof W);
  W.fake_clock = true;
  W.now.tv_sec = 1000;
  if (test_db_open("test_mosquitto", f->dir, f->path, NULL, &f->s) != 0)
    return -1;
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fx *f = *state;
  size_t n_cbs;
  long allocs;
  if (f->ud != NULL)
    mosquitto_plugin_cleanup(f->ud, NULL, 0);
  pubs_clear();
  n_cbs = W.n_cbs;
  allocs = W.allocs;
  store_close(f->s);
  test_db_remove(f->dir, f->path);
  free(f);
  /* Every callback unregistered and every mosquitto_malloc block freed. */
  assert_int_equal(n_cbs, 0);
  assert_int_equal(allocs, 0);
  return 0;
}

/* Load the plugin with db_path = the fixture's database and the given
 * extra options ("key", "value" pairs, NULL-terminated). */
static int load(fx *f, ...) {
  struct mosquitto_opt opts[8];
  int n = 0;
  va_list ap;
  opts[n].key = (char *)"db_path";
  opts[n++].value = f->path;
  va_start(ap, f);
  for (;;) {
    char *k = va_arg(ap, char *);
    if (k == NULL)
      break;
    opts[n].key = k;
    opts[n++].value = va_arg(ap, char *);
  }
  va_end(ap);
  return mosquitto_plugin_init(&f->pid, &f->ud, opts, n);
}

static void load_ok(fx *f) {
  assert_int_equal(load(f, "operators", "alice, carol", NULL),
                   MOSQ_ERR_SUCCESS);
  assert_non_null(f->ud);
  assert_non_null(find_cb(MOSQ_EVT_CONTROL));
  assert_string_equal(find_cb(MOSQ_EVT_CONTROL)->event_data,
                      "$CONTROL/est-coaps/v1");
  assert_non_null(find_cb(MOSQ_EVT_ACL_CHECK));
  assert_non_null(find_cb(MOSQ_EVT_TICK));
}

static void unload(fx *f) {
  assert_int_equal(mosquitto_plugin_cleanup(f->ud, NULL, 0), MOSQ_ERR_SUCCESS);
  f->ud = NULL;
  assert_int_equal(W.n_cbs, 0);
}

/* ------------------------------------------------------------ seeding */

static uint8_t csr[200];

static int64_t seed_pending(fx *f) {
  store_request_new r;
  int64_t id = 0;
  f->seed++;
  memset(&r, 0, sizeof r);
  r.function = STORE_FN_SEN;
  memset(r.spki_sha256, f->seed, sizeof r.spki_sha256);
  memset(r.client_fp, 0x80 ^ f->seed, sizeof r.client_fp);
  r.client = "CN=idevid-0001,O=Maker";
  r.client_class = STORE_CLIENT_IDEVID;
  r.subject = "CN=dev-0001";
  memset(csr, 0x30, sizeof csr);
  r.csr = csr;
  r.csr_len = sizeof csr;
  r.initial_state = STORE_REQ_PENDING;
  assert_int_equal(store_request_create(f->s, &r, "coapd", &id), EST_OK);
  return id;
}

static store_req_state state_of(fx *f, int64_t id) {
  store_request r = {0};
  assert_int_equal(store_request_get(f->s, id, &r), EST_OK);
  store_req_state st = r.state;
  store_request_clear(&r);
  return st;
}

static int64_t audit_max(fx *f) {
  int64_t id = -1;
  assert_int_equal(store_audit_max_id(f->s, &id), EST_OK);
  return id;
}

static int64_t saved_cursor(fx *f) {
  char *v = NULL;
  assert_int_equal(store_meta_get(f->s, "broker.cursor", &v), EST_OK);
  int64_t c = strtoll(v, NULL, 10);
  free(v);
  return c;
}

/* ------------------------------------------------------------ driving */

static int control(fx *f, const char *user, const char *cid, const void *msg,
                   size_t len, const mosquitto_property *props) {
  struct mosquitto client = {.id = cid, .username = user};
  struct mosquitto_evt_control ed;
  cb_reg *r = find_cb(MOSQ_EVT_CONTROL);
  assert_non_null(r);
  memset(&ed, 0, sizeof ed);
  ed.client = &client;
  ed.topic = "$CONTROL/est-coaps/v1";
  ed.payload = msg;
  ed.payloadlen = (uint32_t)len;
  ed.properties = props;
  ed.qos = 1;
  return r->cb(MOSQ_EVT_CONTROL, &ed, r->userdata);
}

static int control_text(fx *f, const char *user, const char *text) {
  return control(f, user, "client-1", text, strlen(text), NULL);
}

static int acl(fx *f, const char *user, int access, const char *topic) {
  struct mosquitto client = {.id = "c", .username = user};
  struct mosquitto_evt_acl_check ed;
  cb_reg *r = find_cb(MOSQ_EVT_ACL_CHECK);
  assert_non_null(r);
  memset(&ed, 0, sizeof ed);
  ed.client = &client;
  ed.topic = topic;
  ed.access = access;
  return r->cb(MOSQ_EVT_ACL_CHECK, &ed, r->userdata);
}

static void tick(void) {
  struct mosquitto_evt_tick ed;
  cb_reg *r = find_cb(MOSQ_EVT_TICK);
  assert_non_null(r);
  memset(&ed, 0, sizeof ed); /* 2.0.11 passes all-zero times (ref §0.4) */
  assert_int_equal(r->cb(MOSQ_EVT_TICK, &ed, r->userdata), MOSQ_ERR_SUCCESS);
}

/* The single reply published so far: directed to @p cid on the response
 * topic. Returns the parsed reply; clears the publish list. */
static cJSON *take_reply(const char *cid) {
  size_t n = 0, at = 0;
  for (size_t i = 0; i < W.n_pubs; i++)
    if (strcmp(W.pubs[i].topic, "$CONTROL/est-coaps/v1/response") == 0) {
      n++;
      at = i;
    }
  assert_int_equal(n, 1);
  pub *p = &W.pubs[at];
  assert_non_null(p->client_id);
  assert_string_equal(p->client_id, cid);
  assert_false(p->retain);
  assert_true(p->json_type);
  cJSON *j = cJSON_Parse(p->payload);
  assert_non_null(j);
  assert_true(cJSON_IsArray(cJSON_GetObjectItem(j, "responses")));
  return j;
}

static cJSON *response(cJSON *reply, int i) {
  cJSON *r = cJSON_GetArrayItem(cJSON_GetObjectItem(reply, "responses"), i);
  assert_non_null(r);
  return r;
}

static const char *error_of(cJSON *r) {
  cJSON *e = cJSON_GetObjectItem(r, "error");
  assert_true(cJSON_IsString(e));
  assert_null(cJSON_GetObjectItem(r, "data"));
  return e->valuestring;
}

static size_t count_events(const char *kind) {
  char topic[64];
  size_t n = 0;
  snprintf(topic, sizeof topic, "est-coaps/v1/events/%s", kind);
  for (size_t i = 0; i < W.n_pubs; i++)
    if (strcmp(W.pubs[i].topic, topic) == 0)
      n++;
  return n;
}

static size_t count_all_events(void) {
  size_t n = 0;
  for (size_t i = 0; i < W.n_pubs; i++)
    if (strncmp(W.pubs[i].topic, "est-coaps/v1/events/", 20) == 0) {
      assert_null(W.pubs[i].client_id); /* broadcast */
      assert_int_equal(W.pubs[i].qos, 1);
      assert_false(W.pubs[i].retain);
      n++;
    }
  return n;
}

/* ================================================================ tests */

static void test_version(void **state) {
  const int v5432[] = {5, 4, 3, 2}, v43[] = {4, 3};
  (void)state;
  assert_int_equal(mosquitto_plugin_version(4, v5432), 5);
  assert_int_equal(mosquitto_plugin_version(2, v43), -1);
  assert_int_equal(mosquitto_plugin_version(0, NULL), -1);
}

static void expect_init_fails(fx *f, struct mosquitto_opt *o, int n,
                              const char *log_text) {
  void *ud = (void *)&ud;
  W.log[0] = '\0';
  assert_int_not_equal(mosquitto_plugin_init(&f->pid, &ud, o, n),
                       MOSQ_ERR_SUCCESS);
  assert_null(ud);
  assert_int_equal(W.n_cbs, 0);
  if (strstr(W.log, log_text) == NULL)
    fail_msg("log lacks '%s': %s", log_text, W.log);
}

static void test_options_errors(void **state) {
  fx *f = *state;
  char missing[160], longname[1100];
  char many[64 * 4 + 16] = "";
  snprintf(missing, sizeof missing, "%s/nothere.db", f->dir);
  memset(longname, 'x', sizeof longname - 1);
  longname[sizeof longname - 1] = '\0';
  for (int i = 0; i < 65; i++) {
    char one[8];
    snprintf(one, sizeof one, "u%d,", i);
    strcat(many, one);
  }
#define OPT(k, v) {(char *)(k), (char *)(v)}
  struct mosquitto_opt none[] = {OPT("operators", "alice")};
  /* Mosquitto gives no line numbers: messages name "mosquitto.conf". */
  expect_init_fails(f, none, 1,
                    "mosquitto.conf: missing required option "
                    "'plugin_opt_db_path'");
  expect_init_fails(f, NULL, 0, "missing required option 'plugin_opt_db_path'");
  struct mosquitto_opt unknown[] = {OPT("db_path", f->path),
                                    OPT("operator", "alice")};
  expect_init_fails(f, unknown, 2,
                    "mosquitto.conf: unknown option 'plugin_opt_operator'; "
                    "did you mean 'plugin_opt_operators'?");
  char *bad_polls[] = {"abc", "9", "60001", "100x", "", "-100",
                             "99999999999999999999"};
  for (size_t i = 0; i < sizeof bad_polls / sizeof *bad_polls; i++) {
    struct mosquitto_opt o[] = {OPT("db_path", f->path),
                                OPT("poll_ms", bad_polls[i])};
    char want[160];
    snprintf(want, sizeof want,
             "mosquitto.conf: bad value '%s' for plugin_opt_poll_ms "
             "(integer from 10 to 60000)", bad_polls[i]);
    expect_init_fails(f, o, 2, want);
  }
  struct mosquitto_opt twice[] = {OPT("db_path", f->path),
                                  OPT("db_path", f->path)};
  expect_init_fails(f, twice, 2, "mosquitto.conf: duplicate 'plugin_opt_db_path'");
  struct mosquitto_opt empty[] = {OPT("db_path", "")};
  expect_init_fails(f, empty, 1, "bad value '' for plugin_opt_db_path (empty)");
  struct mosquitto_opt nullv[] = {OPT("db_path", NULL)};
  expect_init_fails(f, nullv, 1, "mosquitto.conf: option without a key or value");
  struct mosquitto_opt toomany[] = {OPT("db_path", f->path),
                                    OPT("operators", many)};
  expect_init_fails(f, toomany, 2, "for plugin_opt_operators (more than 64 items)");
  struct mosquitto_opt toolong[] = {OPT("db_path", f->path),
                                    OPT("operators", longname)};
  expect_init_fails(f, toolong, 2,
                    "for plugin_opt_operators (an item longer than 1024 bytes)");
  /* Whole-value caps: the operator list and the path. */
  char *huge = malloc(20000);
  assert_non_null(huge);
  for (size_t i = 0; i < 19999; i++)
    huge[i] = i % 8 == 7 ? ',' : 'a';
  huge[19999] = '\0';
  struct mosquitto_opt hugeops[] = {OPT("db_path", f->path),
                                    OPT("operators", huge)};
  expect_init_fails(f, hugeops, 2,
                    "for plugin_opt_operators (longer than 16384 bytes)");
  memset(huge, 'p', 5000);
  huge[0] = '/';
  huge[5000] = '\0';
  struct mosquitto_opt hugepath[] = {OPT("db_path", huge)};
  expect_init_fails(f, hugepath, 1,
                    "for plugin_opt_db_path (longer than 4095 bytes)");
  free(huge);
  /* A missing database is an error and is not created (a typo in the
   * path must not start an empty, silent feed). */
  struct mosquitto_opt nodb[] = {OPT("db_path", missing)};
  expect_init_fails(f, nodb, 1, "cannot open database");
  assert_int_not_equal(access(missing, F_OK), 0);
  /* Registration failure unwinds what was registered. */
  W.fail_register_event = MOSQ_EVT_TICK;
  struct mosquitto_opt ok[] = {OPT("db_path", f->path)};
  expect_init_fails(f, ok, 1, "cannot register");
  W.fail_register_event = 0;
  assert_int_equal(mosquitto_plugin_init(&f->pid, NULL, ok, 1),
                   MOSQ_ERR_INVAL);
#undef OPT
}

static void test_options_ok(void **state) {
  fx *f = *state;
  /* Blanks and empty entries are dropped; the default poll is 500 ms. */
  assert_int_equal(load(f, "operators", " alice ,, bob\t,", NULL),
                   MOSQ_ERR_SUCCESS);
  assert_non_null(strstr(W.log, "2 operator(s), poll every 500 ms"));
  assert_int_equal(acl(f, "alice", MOSQ_ACL_SUBSCRIBE, "est-coaps/v1/events/#"),
                   MOSQ_ERR_SUCCESS);
  assert_int_equal(acl(f, "bob", MOSQ_ACL_SUBSCRIBE, "est-coaps/v1/events/#"),
                   MOSQ_ERR_SUCCESS);
  assert_int_equal(acl(f, " alice ", MOSQ_ACL_SUBSCRIBE,
                       "est-coaps/v1/events/#"),
                   MOSQ_ERR_ACL_DENIED);
  assert_int_equal(acl(f, "Alice", MOSQ_ACL_SUBSCRIBE, "est-coaps/v1/events/#"),
                   MOSQ_ERR_ACL_DENIED);
  unload(f);

  /* No operators at all: allowed, with a warning; nobody may command. */
  W.log[0] = '\0';
  assert_int_equal(load(f, "poll_ms", "10", NULL), MOSQ_ERR_SUCCESS);
  assert_non_null(strstr(W.log, "names nobody"));
  assert_non_null(strstr(W.log, "poll every 10 ms"));
  assert_int_equal(control_text(f, "alice", "{\"commands\":[]}"),
                   MOSQ_ERR_SUCCESS);
  cJSON *j = take_reply("client-1");
  assert_non_null(strstr(error_of(response(j, 0)), "not authorised"));
  cJSON_Delete(j);
  pubs_clear();
  unload(f);
  assert_int_equal(load(f, "operators", "", "poll_ms", "60000", NULL),
                   MOSQ_ERR_SUCCESS);
  unload(f);

  /* The exported table is what init parses with, and well formed. */
  char why[256];
  assert_int_equal(est_opts_table_check(&coapd_options_entry, why, sizeof why),
                   EST_OK);
  assert_string_equal(coapd_options_entry.name, "mosquitto_est");
  assert_int_equal(coapd_options_entry.count, 3);
  assert_string_equal(est_opts_entry(&coapd_options_entry, 2)->name, "poll_ms");
  assert_string_equal(est_opts_entry(&coapd_options_entry, 2)->def, "500");
}

static void test_control_operator(void **state) {
  fx *f = *state;
  char text[256];
  int64_t id = seed_pending(f);
  load_ok(f);
  tick(); /* the start-up catch-up is done: only the command can trigger */
  assert_int_equal(count_all_events(), 0);
  snprintf(text, sizeof text,
           "{\"commands\":[{\"command\":\"approveRequest\",\"id\":%" PRId64
           ",\"correlationData\":\"c-7\"},{\"command\":\"listRequests\","
           "\"state\":\"approved\"}]}",
           id);
  /* An MQTT v5 correlation-data property is copied to the reply. */
  struct mqtt5__property corr = {.identifier = MQTT_PROP_CORRELATION_DATA,
                                 .value = (void *)"xyz", .len = 3};
  assert_int_equal(control(f, "alice", "cid-a", text, strlen(text), &corr),
                   MOSQ_ERR_SUCCESS);
  cJSON *j = take_reply("cid-a");
  for (size_t i = 0; i < W.n_pubs; i++)
    if (W.pubs[i].client_id != NULL) {
      assert_non_null(W.pubs[i].corr);
      assert_string_equal(W.pubs[i].corr, "xyz");
      assert_int_equal(W.pubs[i].qos, 1);
    }
  cJSON *r0 = response(j, 0);
  assert_string_equal(cJSON_GetObjectItem(r0, "command")->valuestring,
                      "approveRequest");
  assert_string_equal(cJSON_GetObjectItem(r0, "correlationData")->valuestring,
                      "c-7");
  cJSON *req = cJSON_GetObjectItem(cJSON_GetObjectItem(r0, "data"), "request");
  assert_string_equal(cJSON_GetObjectItem(req, "state")->valuestring,
                      "approved");
  cJSON *list = cJSON_GetObjectItem(
    cJSON_GetObjectItem(response(j, 1), "data"), "requests");
  assert_int_equal(cJSON_GetArraySize(list), 1);
  cJSON_Delete(j);
  assert_int_equal(state_of(f, id), STORE_REQ_APPROVED);

  /* The plugin's own write is announced at once (data_version does not
   * move for it), with the MQTT username as actor, and the cursor saved. */
  assert_int_equal(count_events("approved"), 1);
  for (size_t i = 0; i < W.n_pubs; i++)
    if (strcmp(W.pubs[i].topic, "est-coaps/v1/events/approved") == 0) {
      cJSON *ev = cJSON_Parse(W.pubs[i].payload);
      assert_string_equal(cJSON_GetObjectItem(ev, "actor")->valuestring,
                          "alice");
      assert_int_equal(cJSON_GetObjectItem(ev, "id")->valuedouble, (double)id);
      cJSON_Delete(ev);
    }
  assert_int_equal(saved_cursor(f), audit_max(f));
  pubs_clear();
  /* Ticks after that publish nothing again. */
  for (int i = 0; i < 5; i++) {
    clock_advance_ms(600);
    tick();
  }
  assert_int_equal(count_all_events(), 0);

  /* A replay (QoS 2 retransmission, ref §1.5) changes nothing more. */
  assert_int_equal(control(f, "alice", "cid-a", text, strlen(text), NULL),
                   MOSQ_ERR_SUCCESS);
  j = take_reply("cid-a");
  assert_non_null(strstr(error_of(response(j, 0)), "not pending"));
  cJSON_Delete(j);
  assert_int_equal(count_all_events(), 0);
}

static void test_control_refused(void **state) {
  fx *f = *state;
  char text[200];
  int64_t id = seed_pending(f);
  int64_t before = audit_max(f);
  load_ok(f);
  snprintf(text, sizeof text,
           "{\"commands\":[{\"command\":\"approveRequest\",\"id\":%" PRId64
           "},{\"command\":\"listRequests\"}]}",
           id);
  const char *users[] = {"bob", NULL, "", "alice "};
  for (size_t i = 0; i < sizeof users / sizeof *users; i++) {
    assert_int_equal(control_text(f, users[i], text), MOSQ_ERR_SUCCESS);
    cJSON *j = take_reply("client-1");
    /* One refusal; reads are refused too (device identities). */
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "responses")),
                     1);
    assert_non_null(strstr(error_of(response(j, 0)), "not authorised"));
    cJSON_Delete(j);
    assert_int_equal(count_all_events(), 0);
    pubs_clear();
  }
  assert_non_null(strstr(W.log, "from 'bob'"));
  assert_non_null(strstr(W.log, "from anonymous"));
  assert_int_equal(state_of(f, id), STORE_REQ_PENDING);
  assert_int_equal(audit_max(f), before);
}

static void test_control_malformed(void **state) {
  fx *f = *state;
  load_ok(f);
  struct {
    const char *text;
    const char *error;
  } cases[] = {
    {"not json", "not valid JSON"},
    {"[1,2]", "must be a JSON object"},
    {"{\"commands\":{}}", "must be an array"},
    {"{}", "commands is missing"},
    {"{\"commands\":[{\"command\":\"dropTables\"}]}", "unknown command"},
    {"{\"commands\":[{\"command\":\"getRequest\",\"id\":\"1\"}]}", "id"},
    {"{\"commands\":[{\"command\":7}]}", "must be a string"},
    {"{\"commands\":[{\"command\":\"rejectRequest\",\"id\":1}]}", "reason"},
    {"{\"commands\":[]} trailing", "not valid JSON"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    assert_int_equal(control_text(f, "alice", cases[i].text),
                     MOSQ_ERR_SUCCESS);
    cJSON *j = take_reply("client-1");
    const char *e = error_of(response(j, 0));
    if (strstr(e, cases[i].error) == NULL)
      fail_msg("'%s' gave '%s'", cases[i].text, e);
    cJSON_Delete(j);
    pubs_clear();
  }
  /* Empty, NUL-containing and oversized payloads. */
  assert_int_equal(control(f, "alice", "client-1", NULL, 0, NULL),
                   MOSQ_ERR_SUCCESS);
  cJSON *j = take_reply("client-1");
  error_of(response(j, 0));
  cJSON_Delete(j);
  pubs_clear();
  assert_int_equal(control(f, "alice", "client-1", "{\"c\0", 4, NULL),
                   MOSQ_ERR_SUCCESS);
  j = take_reply("client-1");
  assert_non_null(strstr(error_of(response(j, 0)), "NUL"));
  cJSON_Delete(j);
  pubs_clear();
  size_t big = CTL_MSG_MAX + 1;
  char *buf = malloc(big);
  assert_non_null(buf);
  memset(buf, ' ', big);
  memcpy(buf, "{\"commands\":[]}", 15);
  assert_int_equal(control(f, "alice", "client-1", buf, big, NULL),
                   MOSQ_ERR_SUCCESS);
  free(buf);
  j = take_reply("client-1");
  assert_non_null(strstr(error_of(response(j, 0)), "too large"));
  cJSON_Delete(j);
  pubs_clear();
  /* A client without an id gets no reply, and nothing breaks. */
  assert_int_equal(control(f, "alice", NULL, "{}", 2, NULL), MOSQ_ERR_SUCCESS);
  assert_int_equal(W.n_pubs, 0);
  /* A reply the broker refuses is freed, not leaked (teardown checks). */
  W.fail_publish = 1;
  assert_int_equal(control_text(f, "alice", "{}"), MOSQ_ERR_SUCCESS);
  assert_int_equal(W.n_pubs, 0);
  assert_non_null(strstr(W.log, "could not queue the reply"));
}

/* A writer holding the lock: the command fails within the short busy
 * timeout with "database is busy, try again"; reads still work. */
static void test_control_busy(void **state) {
  fx *f = *state;
  char text[160];
  sqlite3 *db = NULL;
  struct timespec t0, t1;
  int64_t id = seed_pending(f);
  load_ok(f);
  W.fake_clock = false;
  assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
  assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL),
                   SQLITE_OK);
  snprintf(text, sizeof text,
           "{\"commands\":[{\"command\":\"approveRequest\",\"id\":%" PRId64
           "},{\"command\":\"getRequest\",\"id\":%" PRId64 "}]}",
           id, id);
  clock_gettime(CLOCK_MONOTONIC, &t0);
  assert_int_equal(control_text(f, "alice", text), MOSQ_ERR_SUCCESS);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
  assert_true(ms < 500);
  cJSON *j = take_reply("client-1");
  assert_string_equal(error_of(response(j, 0)), "database is busy, try again");
  assert_non_null(cJSON_GetObjectItem(response(j, 1), "data"));
  cJSON_Delete(j);
  pubs_clear();
  assert_int_equal(sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(db);
  assert_int_equal(control_text(f, "alice", text), MOSQ_ERR_SUCCESS);
  j = take_reply("client-1");
  assert_non_null(cJSON_GetObjectItem(response(j, 0), "data"));
  cJSON_Delete(j);
  assert_int_equal(count_events("approved"), 1);
}

static void test_acl(void **state) {
  fx *f = *state;
  load_ok(f);
  const int R = MOSQ_ACL_READ, W_ = MOSQ_ACL_WRITE, S = MOSQ_ACL_SUBSCRIBE,
            U = MOSQ_ACL_UNSUBSCRIBE;
  const int OK = MOSQ_ERR_SUCCESS, NO = MOSQ_ERR_ACL_DENIED,
            DEFER = MOSQ_ERR_PLUGIN_DEFER;
  struct {
    const char *user;
    int access;
    const char *topic;
    int want;
  } cases[] = {
    /* Events: operators read and subscribe; nobody publishes. */
    {"alice", S, "est-coaps/v1/events/#", OK},
    {"alice", S, "est-coaps/v1/events/+", OK},
    {"carol", R, "est-coaps/v1/events/pending", OK},
    {"alice", W_, "est-coaps/v1/events/pending", NO},
    {"bob", S, "est-coaps/v1/events/#", NO},
    {"bob", S, "est-coaps/v1/events/issued", NO},
    {"bob", S, "est-coaps/v1/events", NO},
    {"bob", R, "est-coaps/v1/events/pending", NO},
    {NULL, R, "est-coaps/v1/events/pending", NO},
    {NULL, S, "est-coaps/v1/events/#", NO},
    {"bob", U, "est-coaps/v1/events/#", OK},
    /* Broad filters: acl_file decides the subscription, READ guards each
     * event delivery (above). */
    {"bob", S, "#", DEFER},
    {"bob", S, "est-coaps/#", DEFER},
    {"bob", S, "est-coaps/v1/eventsx", DEFER},
    {"bob", S, "+/v1/events/#", DEFER},
    /* Control topic: anyone may send (and gets a reply); nobody reads. */
    {"bob", W_, "$CONTROL/est-coaps/v1", OK},
    {NULL, W_, "$CONTROL/est-coaps/v1", OK},
    {"alice", S, "$CONTROL/est-coaps/v1", NO},
    {"alice", R, "$CONTROL/est-coaps/v1", NO},
    /* Replies are directed: subscribing is harmless; forging is not. */
    {"bob", S, "$CONTROL/est-coaps/v1/response", OK},
    {"alice", R, "$CONTROL/est-coaps/v1/response", OK},
    {"alice", W_, "$CONTROL/est-coaps/v1/response", NO},
    {"alice", S, "$CONTROL/est-coaps/#", NO},
    {"alice", W_, "$CONTROL/est-coaps/v2", NO},
    {"alice", W_, "$CONTROL/est-coaps", NO},
    /* Everything else belongs to acl_file. */
    {"bob", W_, "users/bob/x", DEFER},
    {"alice", S, "$SYS/#", DEFER},
    {"alice", W_, "$CONTROL/dynamic-security/v1", DEFER},
    {"alice", W_, "$CONTROL/est-coapsx/v1", DEFER},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    int got = acl(f, cases[i].user, cases[i].access, cases[i].topic);
    if (got != cases[i].want)
      fail_msg("case %zu: %s access %d on '%s': got %d, want %d", i,
               cases[i].user ? cases[i].user : "(anon)", cases[i].access,
               cases[i].topic, got, cases[i].want);
  }
  assert_int_equal(acl(f, "alice", S, NULL), DEFER);
}

/* Changes by another connection are published on the first tick after the
 * poll period (CLOCK_MONOTONIC), exactly once, and the cursor is saved. */
static void test_tick_polls(void **state) {
  fx *f = *state;
  seed_pending(f); /* before the first start: never announced */
  assert_int_equal(load(f, "operators", "alice", "poll_ms", "200", NULL),
                   MOSQ_ERR_SUCCESS);
  assert_int_equal(saved_cursor(f), audit_max(f));
  tick();
  assert_int_equal(count_all_events(), 0);

  int64_t id = seed_pending(f);
  clock_advance_ms(100);
  tick(); /* inside the period: nothing read yet */
  assert_int_equal(count_all_events(), 0);
  clock_advance_ms(99);
  tick();
  assert_int_equal(count_all_events(), 0);
  clock_advance_ms(1);
  tick();
  assert_int_equal(count_events("pending"), 1);
  cJSON *ev = cJSON_Parse(W.pubs[0].payload);
  assert_non_null(ev);
  assert_int_equal(cJSON_GetObjectItem(ev, "id")->valuedouble, (double)id);
  assert_string_equal(cJSON_GetObjectItem(ev, "function")->valuestring, "sen");
  assert_string_equal(cJSON_GetObjectItem(ev, "subject")->valuestring,
                      "CN=dev-0001");
  assert_non_null(cJSON_GetObjectItem(ev, "client"));
  assert_non_null(cJSON_GetObjectItem(ev, "time"));
  cJSON_Delete(ev);
  assert_int_equal(saved_cursor(f), audit_max(f));
  pubs_clear();

  for (int i = 0; i < 10; i++) {
    clock_advance_ms(250);
    tick();
  }
  assert_int_equal(count_all_events(), 0);

  /* estctl decides: approved and rejected, in audit order; pre-auth rows
   * move the cursor but are not events. */
  int64_t id2 = seed_pending(f);
  assert_int_equal(store_request_decide(f->s, id, true, NULL, "estctl-op"),
                   EST_OK);
  assert_int_equal(store_request_decide(f->s, id2, false, "no", "estctl-op"),
                   EST_OK);
  assert_int_equal(store_preauth_add(f->s, STORE_PREAUTH_SUBJECT, "CN=x", NULL,
                                     "estctl-op", NULL),
                   EST_OK);
  clock_advance_ms(200);
  tick();
  assert_int_equal(count_all_events(), 3);
  assert_string_equal(W.pubs[0].topic, "est-coaps/v1/events/pending");
  assert_string_equal(W.pubs[1].topic, "est-coaps/v1/events/approved");
  assert_string_equal(W.pubs[2].topic, "est-coaps/v1/events/rejected");
  assert_int_equal(saved_cursor(f), audit_max(f));
}

/* A restart announces neither old rows again nor skips the ones written
 * while the broker was down. */
static void test_restart(void **state) {
  fx *f = *state;
  load_ok(f);
  seed_pending(f);
  clock_advance_ms(500);
  tick();
  assert_int_equal(count_events("pending"), 1);
  pubs_clear();
  unload(f);

  load_ok(f); /* restart, nothing new */
  tick();
  clock_advance_ms(1000);
  tick();
  assert_int_equal(count_all_events(), 0);
  unload(f);

  /* While down: coapd creates two, estctl approves one. */
  int64_t a = seed_pending(f);
  seed_pending(f);
  assert_int_equal(store_request_decide(f->s, a, true, NULL, "estctl-op"),
                   EST_OK);
  load_ok(f);
  tick(); /* the very first tick catches up */
  assert_int_equal(count_events("pending"), 2);
  assert_int_equal(count_events("approved"), 1);
  assert_int_equal(count_all_events(), 3);
  pubs_clear();
  clock_advance_ms(1000);
  tick();
  assert_int_equal(count_all_events(), 0);
  unload(f);

  load_ok(f); /* and again: nothing repeated */
  for (int i = 0; i < 3; i++) {
    tick();
    clock_advance_ms(600);
  }
  assert_int_equal(count_all_events(), 0);
  assert_int_equal(saved_cursor(f), audit_max(f));
}

/* A backlog drains in batches of 100, one batch per tick. */
static void test_backlog(void **state) {
  fx *f = *state;
  load_ok(f);
  unload(f);
  for (int i = 0; i < 150; i++)
    seed_pending(f);
  load_ok(f);
  tick();
  assert_int_equal(count_all_events(), 100);
  tick(); /* no wait for the poll period while behind */
  assert_int_equal(count_all_events(), 150);
  tick();
  assert_int_equal(count_all_events(), 150);
  assert_int_equal(saved_cursor(f), audit_max(f));
}

/* A refused publish keeps the cursor, so the event comes on a later poll;
 * nothing leaks. */
static void test_publish_failure(void **state) {
  fx *f = *state;
  load_ok(f);
  tick();
  seed_pending(f);
  seed_pending(f);
  W.fail_publish = 2; /* the first row, then again on the retry */
  clock_advance_ms(500);
  tick();
  assert_int_equal(count_all_events(), 0);
  assert_non_null(strstr(W.log, "event feed"));
  tick(); /* retried after the poll period, not on every tick */
  assert_int_equal(W.fail_publish, 1);
  clock_advance_ms(500);
  tick(); /* still refused */
  assert_int_equal(count_all_events(), 0);
  clock_advance_ms(500);
  tick();
  assert_int_equal(count_events("pending"), 2);
  assert_non_null(strstr(W.log, "works again"));
  clock_advance_ms(1000);
  tick();
  assert_int_equal(count_all_events(), 2);
  assert_int_equal(saved_cursor(f), audit_max(f));
}

/* A cursor that cannot be used: warn and start from the newest row. */
static void test_cursor_bad(void **state) {
  fx *f = *state;
  seed_pending(f);
  assert_int_equal(store_meta_set(f->s, "broker.cursor", "xyz"), EST_OK);
  load_ok(f);
  assert_non_null(strstr(W.log, "is not an audit id"));
  assert_int_equal(saved_cursor(f), audit_max(f));
  tick();
  assert_int_equal(count_all_events(), 0);
  unload(f);
  assert_int_equal(store_meta_set(f->s, "broker.cursor", "999"), EST_OK);
  load_ok(f);
  assert_non_null(strstr(W.log, "past the newest audit id"));
  assert_int_equal(saved_cursor(f), audit_max(f));
  tick();
  assert_int_equal(count_all_events(), 0);
  seed_pending(f);
  clock_advance_ms(500);
  tick();
  assert_int_equal(count_all_events(), 1);
}

/* The cursor write itself may meet a busy database: events still go out
 * once, and the save is retried. */
static void test_cursor_busy(void **state) {
  fx *f = *state;
  sqlite3 *db = NULL;
  load_ok(f);
  tick();
  seed_pending(f);
  int64_t before = saved_cursor(f);
  assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
  assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL),
                   SQLITE_OK);
  clock_advance_ms(500);
  tick();
  assert_int_equal(count_all_events(), 1);
  assert_int_equal(sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(db);
  assert_int_equal(saved_cursor(f), before); /* not saved yet */
  tick();                                    /* not before the period */
  assert_int_equal(saved_cursor(f), before);
  clock_advance_ms(500);
  tick();
  assert_int_equal(saved_cursor(f), audit_max(f));
  clock_advance_ms(500);
  tick();
  assert_int_equal(count_all_events(), 1);
}

static void test_cleanup_null(void **state) {
  (void)state;
  assert_int_equal(mosquitto_plugin_cleanup(NULL, NULL, 0), MOSQ_ERR_SUCCESS);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_version),
    cmocka_unit_test(test_cleanup_null),
    cmocka_unit_test_setup_teardown(test_options_errors, setup, teardown),
    cmocka_unit_test_setup_teardown(test_options_ok, setup, teardown),
    cmocka_unit_test_setup_teardown(test_control_operator, setup, teardown),
    cmocka_unit_test_setup_teardown(test_control_refused, setup, teardown),
    cmocka_unit_test_setup_teardown(test_control_malformed, setup, teardown),
    cmocka_unit_test_setup_teardown(test_control_busy, setup, teardown),
    cmocka_unit_test_setup_teardown(test_acl, setup, teardown),
    cmocka_unit_test_setup_teardown(test_tick_polls, setup, teardown),
    cmocka_unit_test_setup_teardown(test_restart, setup, teardown),
    cmocka_unit_test_setup_teardown(test_backlog, setup, teardown),
    cmocka_unit_test_setup_teardown(test_publish_failure, setup, teardown),
    cmocka_unit_test_setup_teardown(test_cursor_bad, setup, teardown),
    cmocka_unit_test_setup_teardown(test_cursor_busy, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
