/* testplug: a tiny coapd plugin for the host's integration tests.
 *
 * GET /whoami answers text/plain, one `key=value` per line:
 *   plugin=NAME chain=N leaf_sha256=HEX tls_unique_len=N tls_exporter_len=N
 *   greeting=VALUE session_requests=N ticks=N wakeups=N
 * With ?pad=N the body grows by N bytes and goes out block-wise (Block2)
 * with Max-Age 5. It exercises every host API member: options (greeting;
 * fail_init makes init fail), peer_chain, channel_binding, session_data (a
 * per-session request counter), tick, and watch_fd (an eventfd written from
 * tick). Built twice: TESTPLUG_BAD_ABI gives a descriptor with a wrong ABI. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

#include "coapd/plugin.h"

#ifdef TESTPLUG_BAD_ABI
#define TP_ABI (COAPD_PLUGIN_ABI_VERSION + 1u)
#else
#define TP_ABI COAPD_PLUGIN_ABI_VERSION
#endif

typedef struct tp_state {
  const coapd_host_api *api;
  coap_resource_t *res;
  const char *greeting;
  int efd;
  unsigned long ticks, wakeups;
} tp_state;

typedef struct tp_sess {
  unsigned long requests;
} tp_sess;

static void hex(char *out, const uint8_t *in, size_t n) {
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = digits[in[i] >> 4];
    out[2 * i + 1] = digits[in[i] & 15];
  }
  out[2 * n] = '\0';
}

static void release_free(coap_session_t *s, void *p) {
  (void)s;
  free(p);
}

static void hnd_whoami(coap_resource_t *r, coap_session_t *s,
                       const coap_pdu_t *req, const coap_string_t *q,
                       coap_pdu_t *resp) {
  tp_state *st = coap_resource_get_userdata(r);
  const coapd_host_api *api = st->api;
  const coapd_blob *chain = NULL;
  size_t n = 0;
  char sha[65] = "-";
  uint8_t cb[64], digest[32];
  size_t ulen = sizeof cb, elen = sizeof cb;

  if (api->peer_chain(api->host, s, &chain, &n) == 0 && n > 0 &&
      gnutls_hash_fast(GNUTLS_DIG_SHA256, chain[0].data, chain[0].len,
                       digest) == 0)
    hex(sha, digest, sizeof digest);
  if (api->channel_binding(api->host, s, COAPD_CB_TLS_UNIQUE, cb, &ulen) != 0)
    ulen = 0;
  if (api->channel_binding(api->host, s, COAPD_CB_TLS_EXPORTER, cb, &elen) != 0)
    elen = 0;

  tp_sess *ss = api->session_data(api->host, s);
  if (!ss) {
    ss = calloc(1, sizeof *ss);
    if (!ss || api->session_data_set(api->host, s, ss, free) != 0) {
      coap_pdu_set_code(resp, COAP_RESPONSE_CODE_INTERNAL_ERROR);
      return;
    }
  }
  ss->requests++;

  char body[512];
  int len = snprintf(body, sizeof body,
                     "plugin=testplug\nchain=%zu\nleaf_sha256=%s\n"
                     "tls_unique_len=%zu\ntls_exporter_len=%zu\n"
                     "greeting=%s\nsession_requests=%lu\nticks=%lu\n"
                     "wakeups=%lu\n",
                     n, sha, ulen, elen, st->greeting ? st->greeting : "-",
                     ss->requests, st->ticks, st->wakeups);

  /* ?pad=N (N <= 8000): append N bytes and send with Block2 and Max-Age 5,
   * so the tests see a multi-block response. */
  size_t pad = 0;
  if (q && q->length > 4 && q->length < 10 && memcmp(q->s, "pad=", 4) == 0) {
    char num[8];
    memcpy(num, q->s + 4, q->length - 4);
    num[q->length - 4] = '\0';
    pad = strtoul(num, NULL, 10);
    if (pad > 8000)
      pad = 8000;
  }
  coap_pdu_set_code(resp, COAP_RESPONSE_CODE_CONTENT);
  if (pad) {
    size_t total = (size_t)len + pad + 1;
    uint8_t *big = malloc(total);
    if (!big) {
      coap_pdu_set_code(resp, COAP_RESPONSE_CODE_INTERNAL_ERROR);
      return;
    }
    memcpy(big, body, (size_t)len);
    memset(big + len, 'x', pad);
    big[total - 1] = '\n';
    /* On failure libcoap itself calls the release function. */
    coap_add_data_large_response(r, s, req, resp, q, COAP_MEDIATYPE_TEXT_PLAIN,
                                 5, 0, total, big, release_free, big);
    return;
  }
  uint8_t ct[4];
  coap_add_option(
      resp, COAP_OPTION_CONTENT_FORMAT,
      coap_encode_var_safe(ct, sizeof ct, COAP_MEDIATYPE_TEXT_PLAIN), ct);
  coap_add_data(resp, (size_t)len, (const uint8_t *)body);
}

static void on_wakeup(void *arg) {
  tp_state *st = arg;
  uint64_t v;
  if (read(st->efd, &v, sizeof v) == (ssize_t)sizeof v)
    st->wakeups++;
}

static int tp_init(const coapd_host_api *api, void **state) {
  tp_state *st;
  if (!COAPD_HOST_HAS(api, unwatch_fd))
    return -1;
  for (size_t i = 0; i < api->option_count(api->host); i++) {
    const char *k, *v;
    unsigned line;
    if (api->option_at(api->host, i, &k, &v, &line) != 0)
      return -1;
    if (strcmp(k, "greeting") != 0 && strcmp(k, "fail_init") != 0) {
      api->log(api->host, COAPD_LOG_ERR, "%s:%u: unknown option '%s'",
               api->config_path, line, k);
      return -1;
    }
  }
  if (api->option(api->host, "fail_init")) {
    api->log(api->host, COAPD_LOG_ERR, "fail_init set, refusing to start");
    return -1;
  }
  st = calloc(1, sizeof *st);
  if (!st)
    return -1;
  st->api = api;
  st->greeting = api->option(api->host, "greeting");
  st->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (st->efd < 0 || api->watch_fd(api->host, st->efd, on_wakeup, st) != 0)
    goto fail;
  st->res = coap_resource_init(coap_make_str_const("whoami"), 0);
  if (!st->res)
    goto fail;
  coap_register_request_handler(st->res, COAP_REQUEST_GET, hnd_whoami);
  coap_resource_set_userdata(st->res, st);
  coap_add_resource(api->ctx, st->res);
  api->log(api->host, COAPD_LOG_NOTICE, "testplug ready (config line %u)",
           api->config_line);
  *state = st;
  return 0;
fail:
  if (st->efd >= 0) {
    api->unwatch_fd(api->host, st->efd);
    close(st->efd);
  }
  free(st);
  return -1;
}

static void tp_fini(void *state) {
  tp_state *st = state;
  st->api->unwatch_fd(st->api->host, st->efd);
  close(st->efd);
  st->api->log(st->api->host, COAPD_LOG_NOTICE, "testplug fini, %lu ticks",
               st->ticks);
  free(st);
}

/* Every tick pokes the eventfd, so the watch_fd path runs too. */
static uint32_t tp_tick(void *state, uint64_t now_ms) {
  tp_state *st = state;
  uint64_t one = 1;
  (void)now_ms;
  st->ticks++;
  if (write(st->efd, &one, sizeof one) < 0 && errno != EAGAIN)
    st->api->log(st->api->host, COAPD_LOG_WARNING, "eventfd write: %s",
                 strerror(errno));
  return 200;
}

COAPD_PLUGIN_EXPORT const coapd_plugin coapd_plugin_entry = {
    .abi_version = TP_ABI,
    .size = sizeof(coapd_plugin),
    .name = "testplug",
    .version = "1.0",
    .init = tp_init,
    .fini = tp_fini,
    .tick = tp_tick,
};
