/* Unit tests for the coapd config parser (host/config.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "host/config.h"

#define BASE                                                                   \
  "listen 127.0.0.1 5684\n"                                                    \
  "dtls_cert /c.pem\n"                                                         \
  "dtls_key /k.pem\n"                                                          \
  "dtls_ca /ca.pem\n"

static est_err parse(const char *text, coapd_config **cfg, char *err,
                     size_t errlen) {
  return coapd_config_parse_buf(text, strlen(text), "t.conf", cfg, err, errlen);
}

/* Parse must fail with exactly @p want as the message. */
static void expect_err(const char *text, est_err want_rc, const char *want) {
  char err[512];
  coapd_config *cfg = (coapd_config *)(uintptr_t)1;
  est_err rc = parse(text, &cfg, err, sizeof err);
  if (rc != want_rc || strcmp(err, want) != 0)
    print_error("input:\n%s\ngot rc %d '%s'\nwant rc %d '%s'\n", text, rc, err,
                want_rc, want);
  assert_int_equal(rc, want_rc);
  assert_string_equal(err, want);
  assert_null(cfg);
}

static void test_full(void **state) {
  (void)state;
  const char *text = "# coapd.conf\n"
                     "\n"
                     "   # indented comment\n"
                     "listen 127.0.0.1 5684\r\n"
                     "listen\t::1\t61617  \n"
                     "listen 0.0.0.0 1\n"
                     "dtls_cert certs/server.crt\n"
                     "dtls_key   /etc/coapd/server key.pem   \n"
                     "dtls_ca ../trust.pem\n"
                     "log_level debug\n"
                     "session_timeout 60\n"
                     "max_idle_sessions 7\n"
                     "max_handshake_sessions 100000\n"
                     "dtls_verify_depth 2\n"
                     "plugin est_coaps.so\n"
                     "plugin_opt_db_path  /var/lib/est/db.sqlite  \n"
                     "plugin_opt_greeting hello   world\n"
                     "plugin_opt_db_path /second\n"
                     "plugin ./plugins/other.so\n"
                     "plugin /abs/third.so\n"
                     "plugin_opt_a.b-c_D x\n";
  char err[256];
  coapd_config *cfg = NULL;
  assert_int_equal(coapd_config_parse_buf(text, strlen(text),
                                          "/etc/coapd/coapd.conf", &cfg, err,
                                          sizeof err),
                   EST_OK);
  assert_string_equal(err, "");
  assert_string_equal(cfg->path, "/etc/coapd/coapd.conf");
  assert_int_equal(cfg->nlisten, 3);
  assert_string_equal(cfg->listen[0].addr, "127.0.0.1");
  assert_int_equal(cfg->listen[0].family, AF_INET);
  assert_int_equal(cfg->listen[0].port, 5684);
  assert_int_equal(cfg->listen[0].line, 4);
  assert_string_equal(cfg->listen[1].addr, "::1");
  assert_int_equal(cfg->listen[1].family, AF_INET6);
  assert_int_equal(cfg->listen[1].port, 61617);
  assert_int_equal(cfg->listen[2].port, 1);
  assert_string_equal(cfg->dtls_cert.path, "/etc/coapd/certs/server.crt");
  assert_int_equal(cfg->dtls_cert.line, 7);
  assert_string_equal(cfg->dtls_key.path, "/etc/coapd/server key.pem");
  assert_string_equal(cfg->dtls_ca.path, "/etc/coapd/../trust.pem");
  assert_int_equal(cfg->log_level, 7);
  assert_int_equal(cfg->log_level_line, 10);
  assert_int_equal(cfg->session_timeout.value, 60);
  assert_int_equal(cfg->session_timeout.line, 11);
  assert_int_equal(cfg->max_idle_sessions.value, 7);
  assert_int_equal(cfg->max_handshake_sessions.value, 100000);
  assert_int_equal(cfg->dtls_verify_depth.value, 2);

  assert_int_equal(cfg->nplugins, 3);
  const coapd_plugin_conf *p = &cfg->plugins[0];
  assert_string_equal(p->path, "est_coaps.so");
  assert_true(p->bare);
  assert_int_equal(p->line, 15);
  assert_int_equal(p->nopts, 3);
  assert_string_equal(p->opts[0].key, "db_path");
  assert_string_equal(p->opts[0].value, "/var/lib/est/db.sqlite");
  assert_int_equal(p->opts[0].line, 16);
  assert_string_equal(p->opts[1].key, "greeting");
  assert_string_equal(p->opts[1].value, "hello   world");
  assert_string_equal(p->opts[2].value, "/second");
  assert_false(cfg->plugins[1].bare);
  assert_string_equal(cfg->plugins[1].path, "/etc/coapd/./plugins/other.so");
  assert_int_equal(cfg->plugins[1].nopts, 0);
  assert_string_equal(cfg->plugins[2].path, "/abs/third.so");
  assert_int_equal(cfg->plugins[2].nopts, 1);
  assert_string_equal(cfg->plugins[2].opts[0].key, "a.b-c_D");

  char file[256];
  assert_int_equal(coapd_config_plugin_file(&cfg->plugins[0], "/usr/lib/x",
                                            file, sizeof file),
                   EST_OK);
  assert_string_equal(file, "/usr/lib/x/est_coaps.so");
  assert_int_equal(coapd_config_plugin_file(&cfg->plugins[2], "/usr/lib/x",
                                            file, sizeof file),
                   EST_OK);
  assert_string_equal(file, "/abs/third.so");
  assert_int_equal(
      coapd_config_plugin_file(&cfg->plugins[0], "/usr/lib/x", file, 10),
      EST_ERR_TOO_LARGE);
  coapd_config_free(cfg);
}

/* docs/decisions.md §20: a pkcs11: dtls_key is a URI, kept as written,
 * never resolved against the config folder; its PIN file is a path. */
static void test_token_key(void **state) {
  (void)state;
  const char *text = "listen 127.0.0.1 5684\n"
                     "dtls_cert c.pem\n"
                     "dtls_key pkcs11:token=t;object=k;type=private\n"
                     "dtls_key_pin_file pin.txt\n"
                     "dtls_ca ca.pem\n";
  char err[256];
  coapd_config *cfg = NULL;
  assert_int_equal(coapd_config_parse_buf(text, strlen(text), "/etc/coapd/coapd.conf", &cfg,
                                          err, sizeof err),
                   EST_OK);
  assert_string_equal(cfg->dtls_key.path, "pkcs11:token=t;object=k;type=private");
  assert_non_null(cfg->dtls_token);
  assert_int_equal(cfg->dtls_token->cert_fd, -1);
  assert_null(cfg->dtls_token->pin);
  assert_string_equal(cfg->dtls_key_pin_file.path, "/etc/coapd/pin.txt");
  assert_string_equal(cfg->dtls_cert.path, "/etc/coapd/c.pem");
  coapd_config_free(cfg);
  /* A file key has no token state. */
  const char *file = "listen 127.0.0.1 5684\ndtls_cert c.pem\ndtls_key k.pem\ndtls_ca ca.pem\n";
  assert_int_equal(coapd_config_parse_buf(file, strlen(file), "/etc/coapd/coapd.conf", &cfg, err,
                                          sizeof err),
                   EST_OK);
  assert_null(cfg->dtls_token);
  assert_string_equal(cfg->dtls_key.path, "/etc/coapd/k.pem");
  coapd_config_free(cfg);
}

static void test_defaults(void **state) {
  (void)state;
  char err[256];
  coapd_config *cfg = NULL;
  /* No trailing newline on the last line. */
  const char *text = "listen ::1 5684\ndtls_cert c\ndtls_key k\ndtls_ca a";
  assert_int_equal(coapd_config_parse_buf(text, strlen(text), "coapd.conf",
                                          &cfg, err, sizeof err),
                   EST_OK);
  assert_int_equal(cfg->log_level, COAPD_DEFAULT_LOG_LEVEL);
  assert_int_equal(cfg->log_level_line, 0);
  assert_int_equal(cfg->session_timeout.value, 300);
  assert_int_equal(cfg->session_timeout.line, 0);
  assert_int_equal(cfg->max_idle_sessions.value, 1000);
  assert_int_equal(cfg->max_handshake_sessions.value, 100);
  assert_int_equal(cfg->dtls_verify_depth.value, 4);
  assert_int_equal(cfg->nplugins, 0);
  assert_null(cfg->plugins);
  /* No directory in the config path: relative paths stay relative. */
  assert_string_equal(cfg->dtls_cert.path, "c");
  assert_string_equal(cfg->dtls_ca.path, "a");
  coapd_config_free(cfg);

  /* A config in the root directory. */
  assert_int_equal(coapd_config_parse_buf(text, strlen(text), "/coapd.conf",
                                          &cfg, err, sizeof err),
                   EST_OK);
  assert_string_equal(cfg->dtls_key.path, "/k");
  coapd_config_free(cfg);
}

static void test_log_levels(void **state) {
  (void)state;
  const char *names[] = {"error", "warning", "notice", "info", "debug"};
  for (int i = 0; i < 5; i++) {
    char text[256], err[256];
    coapd_config *cfg = NULL;
    snprintf(text, sizeof text, BASE "log_level %s\n", names[i]);
    assert_int_equal(parse(text, &cfg, err, sizeof err), EST_OK);
    assert_int_equal(cfg->log_level, i + 3);
    assert_string_equal(coapd_log_level_name(i + 3), names[i]);
    coapd_config_free(cfg);
  }
  assert_string_equal(coapd_log_level_name(2), "?");
  assert_string_equal(coapd_log_level_name(8), "?");
  expect_err(BASE "log_level verbose\n", EST_ERR_CONFIG,
             "t.conf:5: bad value 'verbose' for log_level "
             "(error|warning|notice|info|debug)");
  expect_err(BASE "log_level Debug\n", EST_ERR_CONFIG,
             "t.conf:5: bad value 'Debug' for log_level "
             "(error|warning|notice|info|debug)");
  expect_err(BASE "log_level info\nlog_level info\n", EST_ERR_CONFIG,
             "t.conf:6: duplicate 'log_level' (first set on line 5)");
}

static void test_keys_errors(void **state) {
  (void)state;
  expect_err(BASE "listne 127.0.0.1 5684\n", EST_ERR_CONFIG,
             "t.conf:5: unknown key 'listne'; did you mean 'listen'?");
  expect_err("\n\n# c\nfoo\n", EST_ERR_CONFIG, "t.conf:4: unknown key 'foo'");
  expect_err("LISTEN 127.0.0.1 1\n", EST_ERR_CONFIG,
             "t.conf:1: unknown key 'LISTEN'; did you mean 'listen'?");
  expect_err(BASE "dtls_cert\n", EST_ERR_CONFIG,
             "t.conf:5: missing value for 'dtls_cert'");
  expect_err(BASE "plugin   \t \n", EST_ERR_CONFIG,
             "t.conf:5: missing value for 'plugin'");
  expect_err(BASE "dtls_cert /x.pem\n", EST_ERR_CONFIG,
             "t.conf:5: duplicate 'dtls_cert' (first set on line 2)");
  expect_err(BASE "dtls_key /x.pem\n", EST_ERR_CONFIG,
             "t.conf:5: duplicate 'dtls_key' (first set on line 3)");
  expect_err(BASE "dtls_ca /x.pem\n", EST_ERR_CONFIG,
             "t.conf:5: duplicate 'dtls_ca' (first set on line 4)");
  expect_err(BASE "session_timeout 5\nsession_timeout 5\n", EST_ERR_CONFIG,
             "t.conf:6: duplicate 'session_timeout' (first set on line 5)");
  /* An unknown key is reported even without a value. */
  expect_err(BASE "bogus\n", EST_ERR_CONFIG, "t.conf:5: unknown key 'bogus'");
}

static void test_numbers(void **state) {
  (void)state;
  struct {
    const char *line, *want;
  } cases[] = {
      {"session_timeout abc",
       "t.conf:5: bad value 'abc' for session_timeout "
       "(integer from 1 to 86400)"},
      {"session_timeout 0",
       "t.conf:5: bad value '0' for session_timeout "
       "(integer from 1 to 86400)"},
      {"session_timeout 86401",
       "t.conf:5: bad value '86401' for session_timeout "
       "(integer from 1 to 86400)"},
      {"session_timeout -1",
       "t.conf:5: bad value '-1' for session_timeout "
       "(integer from 1 to 86400)"},
      {"session_timeout +5",
       "t.conf:5: bad value '+5' for session_timeout "
       "(integer from 1 to 86400)"},
      {"session_timeout 0x10",
       "t.conf:5: bad value '0x10' for session_timeout "
       "(integer from 1 to 86400)"},
      {"session_timeout 5 s",
       "t.conf:5: bad value '5 s' for session_timeout "
       "(integer from 1 to 86400)"},
      {"session_timeout 99999999999",
       "t.conf:5: bad value '99999999999' for session_timeout "
       "(integer from 1 to 86400)"},
      {"session_timeout 4294967296",
       "t.conf:5: bad value '4294967296' for session_timeout "
       "(integer from 1 to 86400)"},
      {"max_idle_sessions 1000001",
       "t.conf:5: bad value '1000001' for max_idle_sessions "
       "(integer from 1 to 1000000)"},
      {"max_handshake_sessions 0",
       "t.conf:5: bad value '0' for max_handshake_sessions "
       "(integer from 1 to 100000)"},
      {"dtls_verify_depth 17",
       "t.conf:5: bad value '17' for dtls_verify_depth "
       "(integer from 1 to 16)"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char text[256];
    snprintf(text, sizeof text, BASE "%s\n", cases[i].line);
    expect_err(text, EST_ERR_CONFIG, cases[i].want);
  }
  char err[256];
  coapd_config *cfg = NULL;
  assert_int_equal(parse(BASE "session_timeout 086400\n"
                              "max_idle_sessions 1000000\n"
                              "dtls_verify_depth 16\n",
                         &cfg, err, sizeof err),
                   EST_OK);
  assert_int_equal(cfg->session_timeout.value, 86400);
  assert_int_equal(cfg->max_idle_sessions.value, 1000000);
  assert_int_equal(cfg->dtls_verify_depth.value, 16);
  coapd_config_free(cfg);
}

/* dtls_allow_expired yes|no (AUTH-5): exact words, default no, once. */
static void test_bool(void **state) {
  (void)state;
  char err[256];
  coapd_config *cfg = NULL;
  assert_int_equal(parse(BASE, &cfg, err, sizeof err), EST_OK);
  assert_int_equal(cfg->dtls_allow_expired.value, 0);
  assert_int_equal(cfg->dtls_allow_expired.line, 0);
  coapd_config_free(cfg);
  assert_int_equal(parse(BASE "dtls_allow_expired   yes  \n", &cfg, err,
                         sizeof err),
                   EST_OK);
  assert_int_equal(cfg->dtls_allow_expired.value, 1);
  assert_int_equal(cfg->dtls_allow_expired.line, 5);
  coapd_config_free(cfg);
  assert_int_equal(parse(BASE "# off\ndtls_allow_expired no\n", &cfg, err,
                         sizeof err),
                   EST_OK);
  assert_int_equal(cfg->dtls_allow_expired.value, 0);
  assert_int_equal(cfg->dtls_allow_expired.line, 6);
  coapd_config_free(cfg);

  const char *bad[] = {"Yes", "YES", "true", "1", "on", "y", "yes no", "nope"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char text[256], want[256];
    snprintf(text, sizeof text, BASE "dtls_allow_expired %s\n", bad[i]);
    snprintf(want, sizeof want,
             "t.conf:5: bad value '%s' for dtls_allow_expired (yes|no)", bad[i]);
    expect_err(text, EST_ERR_CONFIG, want);
  }
  expect_err(BASE "dtls_allow_expired\n", EST_ERR_CONFIG,
             "t.conf:5: missing value for 'dtls_allow_expired'");
  expect_err(BASE "dtls_allow_expired no\n\ndtls_allow_expired yes\n",
             EST_ERR_CONFIG,
             "t.conf:7: duplicate 'dtls_allow_expired' (first set on line 5)");
  expect_err(BASE "dtls_allow_expiry yes\n", EST_ERR_CONFIG,
             "t.conf:5: unknown key 'dtls_allow_expiry'; did you mean "
             "'dtls_allow_expired'?");
}

static void test_listen(void **state) {
  (void)state;
  const char *tail = "dtls_cert c\ndtls_key k\ndtls_ca a\n";
  struct {
    const char *line, *want;
  } cases[] = {
      {"listen 127.0.0.1", "t.conf:1: listen needs ADDR PORT, got '127.0.0.1'"},
      {"listen 127.0.0.1 5684 udp",
       "t.conf:1: listen needs ADDR PORT, got '127.0.0.1 5684 udp'"},
      {"listen localhost 5684",
       "t.conf:1: bad address 'localhost' (IPv4 or IPv6 literal)"},
      {"listen [::1] 5684",
       "t.conf:1: bad address '[::1]' (IPv4 or IPv6 literal)"},
      {"listen 127.0.0.256 5684",
       "t.conf:1: bad address '127.0.0.256' (IPv4 or IPv6 literal)"},
      {"listen fe80::1%eth0 5684",
       "t.conf:1: bad address 'fe80::1%eth0' (IPv4 or IPv6 literal)"},
      {"listen "
       "0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:1 1",
       "t.conf:1: bad address "
       "'0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:1' "
       "(IPv4 or IPv6 literal)"},
      {"listen 127.0.0.1 0", "t.conf:1: bad value '0' for listen PORT "
       "(integer from 1 to 65535)"},
      {"listen 127.0.0.1 65536", "t.conf:1: bad value '65536' for listen PORT "
       "(integer from 1 to 65535)"},
      {"listen 127.0.0.1 coaps", "t.conf:1: bad value 'coaps' for listen PORT "
       "(integer from 1 to 65535)"},
      {"listen 127.0.0.1 -1", "t.conf:1: bad value '-1' for listen PORT "
       "(integer from 1 to 65535)"},
      {"listen ::1 5684\nlisten 0:0::1 5684",
       "t.conf:2: duplicate listen 0:0::1 5684 (first on line 1)"},
      {"listen 127.0.0.1 5684\nlisten 127.0.0.1 5684",
       "t.conf:2: duplicate listen 127.0.0.1 5684 (first on line 1)"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char text[512];
    snprintf(text, sizeof text, "%s\n%s", cases[i].line, tail);
    expect_err(text, EST_ERR_CONFIG, cases[i].want);
  }

  /* Same address on other ports, or other families, is fine. */
  char err[256];
  coapd_config *cfg = NULL;
  assert_int_equal(parse("listen 127.0.0.1 1\nlisten 127.0.0.1 2\n"
                         "listen ::ffff:127.0.0.1 1\nlisten :: 1\n"
                         "listen 2001:db8::1 65535\n"
                         "dtls_cert c\ndtls_key k\ndtls_ca a\n",
                         &cfg, err, sizeof err),
                   EST_OK);
  assert_int_equal(cfg->nlisten, 5);
  assert_int_equal(cfg->listen[4].port, 65535);
  coapd_config_free(cfg);

  /* Cap on listen lines. */
  char text[2048] = "";
  for (unsigned i = 0; i <= COAPD_CONFIG_MAX_LISTEN; i++) {
    char l[64];
    snprintf(l, sizeof l, "listen 127.0.0.1 %u\n", 1000 + i);
    strcat(text, l);
  }
  char want[128];
  snprintf(want, sizeof want, "t.conf:%u: more than %u listen lines",
           COAPD_CONFIG_MAX_LISTEN + 1, COAPD_CONFIG_MAX_LISTEN);
  expect_err(text, EST_ERR_CONFIG, want);
}

static void test_plugins(void **state) {
  (void)state;
  expect_err(BASE "plugin_opt_db /x\nplugin p.so\n", EST_ERR_CONFIG,
             "t.conf:5: 'plugin_opt_db' without a preceding 'plugin' line");
  expect_err(BASE "plugin p.so\nplugin_opt_ x\n", EST_ERR_CONFIG,
             "t.conf:6: 'plugin_opt_' needs a KEY (plugin_opt_KEY VALUE)");
  expect_err(BASE "plugin p.so\nplugin_opt_db\n", EST_ERR_CONFIG,
             "t.conf:6: missing value for 'plugin_opt_db'");
  expect_err(BASE "plugin p.so\nplugin_opt_d$b x\n", EST_ERR_CONFIG,
             "t.conf:6: bad option key 'd$b' (letters, digits, '_-.')");
  char text[8192], want[256];
  char key[COAPD_CONFIG_MAX_OPT_KEY + 2];
  memset(key, 'k', sizeof key - 1);
  key[sizeof key - 1] = '\0';
  snprintf(text, sizeof text, BASE "plugin p.so\nplugin_opt_%s x\n", key);
  snprintf(want, sizeof want, "t.conf:6: option key longer than %u bytes",
           COAPD_CONFIG_MAX_OPT_KEY);
  expect_err(text, EST_ERR_CONFIG, want);

  /* A key of exactly the maximum length is fine. */
  char err[256];
  coapd_config *cfg = NULL;
  key[COAPD_CONFIG_MAX_OPT_KEY] = '\0';
  snprintf(text, sizeof text, BASE "plugin p.so\nplugin_opt_%s x\n", key);
  assert_int_equal(parse(text, &cfg, err, sizeof err), EST_OK);
  assert_string_equal(cfg->plugins[0].opts[0].key, key);
  coapd_config_free(cfg);

  /* Cap on options per plugin. */
  size_t n = (size_t)snprintf(text, sizeof text, BASE "plugin p.so\n");
  for (unsigned i = 0; i <= COAPD_CONFIG_MAX_OPTIONS; i++)
    n += (size_t)snprintf(text + n, sizeof text - n, "plugin_opt_o%u v\n", i);
  snprintf(want, sizeof want,
           "t.conf:%u: more than %u options for the plugin on line 5",
           6 + COAPD_CONFIG_MAX_OPTIONS, COAPD_CONFIG_MAX_OPTIONS);
  expect_err(text, EST_ERR_CONFIG, want);

  /* Cap on plugins. */
  n = (size_t)snprintf(text, sizeof text, BASE);
  for (unsigned i = 0; i <= COAPD_CONFIG_MAX_PLUGINS; i++)
    n += (size_t)snprintf(text + n, sizeof text - n, "plugin p%u.so\n", i);
  snprintf(want, sizeof want, "t.conf:%u: more than %u plugin lines",
           5 + COAPD_CONFIG_MAX_PLUGINS, COAPD_CONFIG_MAX_PLUGINS);
  expect_err(text, EST_ERR_CONFIG, want);

  /* Options belong to the plugin line before them. */
  assert_int_equal(parse(BASE "plugin a.so\nplugin_opt_x 1\nplugin b.so\n"
                              "plugin_opt_x 2\nplugin_opt_y 3\n",
                         &cfg, err, sizeof err),
                   EST_OK);
  assert_int_equal(cfg->plugins[0].nopts, 1);
  assert_string_equal(cfg->plugins[0].opts[0].value, "1");
  assert_int_equal(cfg->plugins[1].nopts, 2);
  assert_string_equal(cfg->plugins[1].opts[1].key, "y");
  assert_int_equal(cfg->plugins[1].opts[1].line, 9);
  coapd_config_free(cfg);
}

static void test_required(void **state) {
  (void)state;
  expect_err("", EST_ERR_CONFIG, "t.conf: missing required key 'listen'");
  expect_err("# nothing\n\n", EST_ERR_CONFIG,
             "t.conf: missing required key 'listen'");
  expect_err("listen ::1 1\n", EST_ERR_CONFIG,
             "t.conf: missing required key 'dtls_cert'");
  expect_err("listen ::1 1\ndtls_cert c\n", EST_ERR_CONFIG,
             "t.conf: missing required key 'dtls_key'");
  expect_err("listen ::1 1\ndtls_cert c\ndtls_key k\n", EST_ERR_CONFIG,
             "t.conf: missing required key 'dtls_ca'");
}

static void test_caps(void **state) {
  (void)state;
  char err[256], want[128];
  coapd_config *cfg = NULL;
  /* A line of exactly the maximum is accepted (as a long comment). */
  size_t max = COAPD_CONFIG_MAX_LINE;
  char *text = malloc(max + 256);
  assert_non_null(text);
  size_t n = (size_t)sprintf(text, BASE);
  text[n] = '#';
  memset(text + n + 1, 'a', max - 1);
  text[n + max] = '\n';
  assert_int_equal(coapd_config_parse_buf(text, n + max + 1, "t.conf", &cfg,
                                          err, sizeof err),
                   EST_OK);
  coapd_config_free(cfg);
  /* One byte more is refused; CR of a CRLF does not count. */
  text[n + max] = 'a';
  text[n + max + 1] = '\n';
  snprintf(want, sizeof want, "t.conf:5: line longer than %u bytes",
           COAPD_CONFIG_MAX_LINE);
  assert_int_equal(coapd_config_parse_buf(text, n + max + 2, "t.conf", &cfg,
                                          err, sizeof err),
                   EST_ERR_CONFIG);
  assert_string_equal(err, want);
  assert_null(cfg);
  text[n + max] = '\r';
  assert_int_equal(coapd_config_parse_buf(text, n + max + 2, "t.conf", &cfg,
                                          err, sizeof err),
                   EST_OK);
  coapd_config_free(cfg);
  free(text);

  /* Whole-buffer cap. */
  size_t big = COAPD_CONFIG_MAX_BYTES + 1;
  text = malloc(big);
  assert_non_null(text);
  memset(text, '\n', big);
  snprintf(want, sizeof want, "t.conf: larger than %u bytes",
           COAPD_CONFIG_MAX_BYTES);
  assert_int_equal(
      coapd_config_parse_buf(text, big, "t.conf", &cfg, err, sizeof err),
      EST_ERR_TOO_LARGE);
  assert_string_equal(err, want);
  assert_null(cfg);
  free(text);

  /* Path cap. */
  text = malloc(COAPD_CONFIG_MAX_PATH + 256);
  assert_non_null(text);
  n = (size_t)sprintf(text, "listen ::1 1\ndtls_cert /");
  memset(text + n, 'p', COAPD_CONFIG_MAX_PATH);
  n += COAPD_CONFIG_MAX_PATH;
  text[n] = '\0';
  snprintf(want, sizeof want, "t.conf:2: dtls_cert path longer than %u bytes",
           COAPD_CONFIG_MAX_PATH - 1);
  expect_err(text, EST_ERR_CONFIG, want);
  n = (size_t)sprintf(text, "listen ::1 1\nplugin ");
  memset(text + n, 'p', COAPD_CONFIG_MAX_PATH);
  text[n + COAPD_CONFIG_MAX_PATH] = '\0';
  snprintf(want, sizeof want, "t.conf:2: plugin path longer than %u bytes",
           COAPD_CONFIG_MAX_PATH - 1);
  expect_err(text, EST_ERR_CONFIG, want);
  free(text);
}

static void test_bytes(void **state) {
  (void)state;
  char err[256];
  coapd_config *cfg = NULL;
  static const char nul[] = "listen ::1 1\ndtls_cert c\0x\n";
  assert_int_equal(coapd_config_parse_buf(nul, sizeof nul - 1, "t.conf", &cfg,
                                          err, sizeof err),
                   EST_ERR_CONFIG);
  assert_string_equal(err, "t.conf:2: control character 0x00 in line");
  assert_null(cfg);
  expect_err(BASE "# \x01 in a comment too\n", EST_ERR_CONFIG,
             "t.conf:5: control character 0x01 in line");
  expect_err(BASE "plugin a\x7f\n", EST_ERR_CONFIG,
             "t.conf:5: control character 0x7f in line");
  /* A lone CR inside a line is a control character too. */
  expect_err(BASE "plugin a\rb\n", EST_ERR_CONFIG,
             "t.conf:5: control character 0x0d in line");
  /* UTF-8 in values is passed through. */
  assert_int_equal(parse(BASE
                         "plugin p.so\nplugin_opt_name gr\xc3\xbc\xc3\x9f\n",
                         &cfg, err, sizeof err),
                   EST_OK);
  assert_string_equal(cfg->plugins[0].opts[0].value, "gr\xc3\xbc\xc3\x9f");
  coapd_config_free(cfg);
  /* A long unknown key is echoed only in part. */
  char text[512];
  char key[201];
  memset(key, 'z', 200);
  key[200] = '\0';
  snprintf(text, sizeof text, "%s v\n", key);
  char want[256];
  snprintf(want, sizeof want, "t.conf:1: unknown key '%.80s'", key);
  expect_err(text, EST_ERR_CONFIG, want);
}

static void test_api_edges(void **state) {
  (void)state;
  coapd_config *cfg = NULL;
  char small[12];
  /* Messages are truncated safely; err may be NULL. */
  assert_int_equal(parse("foo bar\n", &cfg, small, sizeof small),
                   EST_ERR_CONFIG);
  assert_int_equal(strlen(small), sizeof small - 1);
  assert_int_equal(parse("foo bar\n", &cfg, NULL, 0), EST_ERR_CONFIG);
  assert_int_equal(coapd_config_parse_buf(NULL, 1, "t", &cfg, NULL, 0),
                   EST_ERR_INVALID);
  assert_int_equal(coapd_config_parse_buf("x", 1, "t", NULL, NULL, 0),
                   EST_ERR_INVALID);
  /* A NULL path still gives a named message. */
  char err[128];
  assert_int_equal(
      coapd_config_parse_buf("x y", 3, NULL, &cfg, err, sizeof err),
      EST_ERR_CONFIG);
  assert_string_equal(err, "(config):1: unknown key 'x'");
  coapd_config_free(NULL);
}

/* Write @p text to a new temp file; return its malloc'ed path. */
static char *temp_file(const char *text) {
  char *path = strdup("/tmp/test_config.XXXXXX");
  assert_non_null(path);
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  size_t n = strlen(text);
  assert_int_equal(write(fd, text, n), (ssize_t)n);
  close(fd);
  return path;
}

static void test_files(void **state) {
  (void)state;
  char err[1024], want[1024], text[1024];
  coapd_config *cfg = NULL;

  assert_int_equal(
      coapd_config_parse_file("/nonexistent/coapd.conf", &cfg, err, sizeof err),
      EST_ERR_IO);
  assert_string_equal(err,
                      "/nonexistent/coapd.conf: No such file or directory");
  assert_null(cfg);
  assert_int_equal(coapd_config_parse_file("/tmp", &cfg, err, sizeof err),
                   EST_ERR_IO);
  assert_string_equal(err, "/tmp: not a regular file");

  char *pem = temp_file("not really PEM, but readable\n");
  snprintf(text, sizeof text,
           "listen 127.0.0.1 1\ndtls_cert %s\ndtls_key %s\ndtls_ca %s\n"
           "plugin %s\n",
           pem, pem, pem, pem);
  char *conf = temp_file(text);
  assert_int_equal(coapd_config_parse_file(conf, &cfg, err, sizeof err),
                   EST_OK);
  assert_string_equal(cfg->path, conf);
  assert_int_equal(coapd_config_check_files(cfg, "/nowhere", err, sizeof err),
                   EST_OK);
  coapd_config_free(cfg);
  unlink(conf);
  free(conf);

  /* Each file key: missing, and a directory. */
  const char *keys[] = {"dtls_cert", "dtls_key", "dtls_ca"};
  for (int k = 0; k < 3; k++) {
    for (int dir = 0; dir < 2; dir++) {
      const char *bad = dir ? "/tmp" : "/nonexistent/x.pem";
      snprintf(text, sizeof text, "listen 127.0.0.1 1\n%s %s\n%s %s\n%s %s\n",
               keys[0], k == 0 ? bad : pem, keys[1], k == 1 ? bad : pem,
               keys[2], k == 2 ? bad : pem);
      assert_int_equal(parse(text, &cfg, err, sizeof err), EST_OK);
      assert_int_equal(coapd_config_check_files(cfg, NULL, err, sizeof err),
                       EST_ERR_CONFIG);
      snprintf(want, sizeof want, "t.conf:%d: %s '%s': %s", k + 2, keys[k], bad,
               dir ? "Is a directory" : "No such file or directory");
      assert_string_equal(err, want);
      coapd_config_free(cfg);
    }
  }

  /* Plugins: a bare name is looked up in the plugin dir. */
  snprintf(text, sizeof text,
           "listen 127.0.0.1 1\ndtls_cert %s\ndtls_key %s\ndtls_ca %s\n"
           "plugin %s\nplugin nothere.so\n",
           pem, pem, pem, pem);
  assert_int_equal(parse(text, &cfg, err, sizeof err), EST_OK);
  assert_int_equal(coapd_config_check_files(cfg, "/plugdir", err, sizeof err),
                   EST_ERR_CONFIG);
  assert_string_equal(err, "t.conf:6: plugin '/plugdir/nothere.so': No such "
                           "file or directory");
  coapd_config_free(cfg);

  /* A config file over the cap. */
  char *big = malloc(COAPD_CONFIG_MAX_BYTES + 2);
  assert_non_null(big);
  memset(big, '#', COAPD_CONFIG_MAX_BYTES + 1);
  big[COAPD_CONFIG_MAX_BYTES + 1] = '\0';
  conf = temp_file(big);
  free(big);
  assert_int_equal(coapd_config_parse_file(conf, &cfg, err, sizeof err),
                   EST_ERR_TOO_LARGE);
  snprintf(want, sizeof want, "%s: larger than %u bytes", conf,
           COAPD_CONFIG_MAX_BYTES);
  assert_string_equal(err, want);
  unlink(conf);
  free(conf);
  unlink(pem);
  free(pem);
}

/* The admission keys (docs/admission.md): defaults, ranges, and the
 * pressure threshold below both caps. */
/* log_dest (docs/operations.md "Logs") and a plugin's own log level. */
static void test_log_dest(void **state) {
  (void)state;
  char err[256];
  coapd_config *cfg = NULL;
  assert_int_equal(parse(BASE, &cfg, err, sizeof err), EST_OK);
  assert_int_equal(cfg->log_dest.value, COAPD_LOG_DEST_STDERR);
  coapd_config_free(cfg);
  const char *text = BASE "log_dest syslog\nplugin a.so\nplugin b.so\n"
                          "plugin_log_level debug\n";
  assert_int_equal(parse(text, &cfg, err, sizeof err), EST_OK);
  assert_int_equal(cfg->log_dest.value, COAPD_LOG_DEST_SYSLOG);
  assert_int_equal(cfg->log_dest.line, 5);
  assert_int_equal(cfg->plugins[0].log_level, 0);
  assert_int_equal(cfg->plugins[1].log_level, 7);
  assert_int_equal(cfg->plugins[1].log_level_line, 8);
  coapd_config_free(cfg);
  expect_err(BASE "log_dest journal\n", EST_ERR_CONFIG,
             "t.conf:5: bad value 'journal' for log_dest (stderr|syslog)");
  expect_err(BASE "log_dest syslog\nlog_dest stderr\n", EST_ERR_CONFIG,
             "t.conf:6: duplicate 'log_dest' (first set on line 5)");
  expect_err(BASE "plugin_log_level info\nplugin a.so\n", EST_ERR_CONFIG,
             "t.conf:5: 'plugin_log_level' must follow the plugin line it is for");
  expect_err(BASE "plugin a.so\nplugin_log_level info\nplugin_log_level debug\n",
             EST_ERR_CONFIG, "t.conf:7: duplicate 'plugin_log_level' (first set on line 6)");
  expect_err(BASE "plugin a.so\nplugin_log_level loud\n", EST_ERR_CONFIG,
             "t.conf:6: bad value 'loud' for plugin_log_level (error|warning|"
             "notice|info|debug)");
}

static void test_admission(void **state) {
  (void)state;
  char err[256];
  coapd_config *cfg = NULL;
  assert_int_equal(parse(BASE, &cfg, err, sizeof err), EST_OK);
  assert_int_equal(cfg->dtls_admission.value, 1);
  assert_int_equal(cfg->max_handshakes_per_addr.value, COAPD_DEFAULT_MAX_HANDSHAKES_PER_ADDR);
  assert_int_equal(cfg->handshake_pressure.value, COAPD_DEFAULT_HANDSHAKE_PRESSURE);
  assert_int_equal(cfg->handshake_timeout.value, COAPD_DEFAULT_HANDSHAKE_TIMEOUT);
  assert_int_equal(cfg->max_parked_handshakes.value, COAPD_DEFAULT_MAX_PARKED_HANDSHAKES);
  coapd_config_free(cfg);
  assert_int_equal(parse(BASE "dtls_admission no\nmax_handshakes_per_addr 4\n"
                              "handshake_pressure 0\nhandshake_timeout 30\n"
                              "max_parked_handshakes 0\n",
                         &cfg, err, sizeof err),
                   EST_OK);
  assert_int_equal(cfg->dtls_admission.value, 0);
  assert_int_equal(cfg->dtls_admission.line, 5);
  assert_int_equal(cfg->max_handshakes_per_addr.value, 4);
  assert_int_equal(cfg->handshake_pressure.value, 0);
  assert_int_equal(cfg->handshake_timeout.value, 30);
  assert_int_equal(cfg->max_parked_handshakes.value, 0);
  coapd_config_free(cfg);
  /* A default pressure over a small cap becomes half of it. */
  assert_int_equal(parse(BASE "max_handshake_sessions 10\n", &cfg, err, sizeof err), EST_OK);
  assert_int_equal(cfg->handshake_pressure.value, 5);
  coapd_config_free(cfg);
  assert_int_equal(parse(BASE "max_handshakes_per_addr 1\n", &cfg, err, sizeof err), EST_OK);
  assert_int_equal(cfg->handshake_pressure.value, 0);
  coapd_config_free(cfg);
  struct {
    const char *lines, *want;
  } cases[] = {
      {"dtls_admission off\n", "t.conf:5: bad value 'off' for dtls_admission (yes|no)"},
      {"max_handshakes_per_addr 0\n",
       "t.conf:5: bad value '0' for max_handshakes_per_addr (integer from 1 to 100000)"},
      {"handshake_pressure -1\n",
       "t.conf:5: bad value '-1' for handshake_pressure (integer from 0 to 100000)"},
      {"handshake_timeout 0\n",
       "t.conf:5: bad value '0' for handshake_timeout (integer from 1 to 30)"},
      {"handshake_timeout 31\n",
       "t.conf:5: bad value '31' for handshake_timeout (integer from 1 to 30)"},
      {"max_parked_handshakes 65537\n",
       "t.conf:5: bad value '65537' for max_parked_handshakes (integer from 0 to 65536)"},
      {"handshake_pressure 32\n",
       "t.conf:5: handshake_pressure 32 must be below max_handshakes_per_addr 32 "
       "(docs/admission.md)"},
      {"handshake_pressure 8\n# x\nmax_handshakes_per_addr 8\n",
       "t.conf:7: handshake_pressure 8 must be below max_handshakes_per_addr 8 "
       "(docs/admission.md)"},
      {"max_handshake_sessions 10\nhandshake_pressure 12\n",
       "t.conf:6: handshake_pressure 12 must be below max_handshake_sessions 10 "
       "(docs/admission.md)"},
      {"max_handshakes_per_addr 50\nhandshake_pressure 20\nmax_handshake_sessions 20\n",
       "t.conf:7: handshake_pressure 20 must be below max_handshake_sessions 20 "
       "(docs/admission.md)"},
      {"handshake_timeout 3\nhandshake_timeout 3\n",
       "t.conf:6: duplicate 'handshake_timeout' (first set on line 5)"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char text[512];
    snprintf(text, sizeof text, BASE "%s", cases[i].lines);
    expect_err(text, EST_ERR_CONFIG, cases[i].want);
  }
  /* With admission off the threshold is not checked. */
  assert_int_equal(parse(BASE "dtls_admission no\nhandshake_pressure 500\n", &cfg, err,
                         sizeof err),
                   EST_OK);
  coapd_config_free(cfg);
}

/* --help-config: every key, its type and the parser's own defaults. */
static void test_help_config(void **state) {
  (void)state;
  char buf[16384];
  FILE *f = tmpfile();
  assert_non_null(f);
  assert_int_equal(coapd_config_help(f), EST_OK);
  rewind(f);
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  assert_non_null(strstr(buf, "NAME "));
  assert_non_null(strstr(buf, "\nlisten "));
  assert_non_null(strstr(buf, "(required)"));
  assert_non_null(strstr(buf, "\ndtls_ca "));
  assert_non_null(strstr(buf, "int(1..86400)"));
  assert_non_null(strstr(buf, " 300 "));
  assert_non_null(strstr(buf, " notice "));
  assert_non_null(strstr(buf, "\nmax_parked_handshakes "));
  assert_int_equal(coapd_config_help(NULL), EST_ERR_INVALID);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_full),       cmocka_unit_test(test_token_key),
      cmocka_unit_test(test_defaults),
      cmocka_unit_test(test_log_levels), cmocka_unit_test(test_keys_errors),
      cmocka_unit_test(test_numbers),    cmocka_unit_test(test_bool),
      cmocka_unit_test(test_listen),
      cmocka_unit_test(test_plugins),    cmocka_unit_test(test_required),
      cmocka_unit_test(test_caps),       cmocka_unit_test(test_bytes),
      cmocka_unit_test(test_api_edges),  cmocka_unit_test(test_files),
      cmocka_unit_test(test_admission),  cmocka_unit_test(test_log_dest),
      cmocka_unit_test(test_help_config),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
