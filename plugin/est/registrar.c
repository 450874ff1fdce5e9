/* Registrar mode: the upstream CA's certificates and attributes, kept
 * fresh on the loop (registrar.h, docs/decisions.md §19). */
#include "registrar.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/keyfile.h"
#include "upstream.h"

/* A failed refresh is tried again this soon (the last answer stays). */
#define RETRY_S 60u
#define CACHE_MAX 65536u

void registrar_signature(const registrar_config *c, char *out, size_t cap) {
  snprintf(out, cap, "%s|%s|%s|%s|%s|%u|%u|%d", c->url, c->ca_file,
           c->cert_file ? c->cert_file : "", c->key_file ? c->key_file : "",
           c->cache_file ? c->cache_file : "", c->timeout_s, c->refresh_s, c->want_attrs);
}

/* The cache: written whole under another name, then renamed, so a crash
 * leaves the old file or the new one, never half of one. */
static void cache_write(est_plugin *p, const uint8_t *der, size_t len) {
  char tmp[PATH_MAX + 8];
  if (!p->up_cache[0] || p->check_only)
    return;
  if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", p->up_cache) >= sizeof tmp)
    return;
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  bool ok = fd >= 0 && write(fd, der, len) == (ssize_t)len && fsync(fd) == 0;
  if (fd >= 0 && close(fd) != 0)
    ok = false;
  if (ok && rename(tmp, p->up_cache) == 0)
    return;
  p->api->log(p->api->host, COAPD_LOG_WARNING, "upstream_cache '%s': %s", p->up_cache,
              strerror(errno));
  unlink(tmp);
}

static est_err cache_read(const char *path, uint8_t **der, size_t *len) {
  struct stat st;
  *der = NULL;
  *len = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return EST_ERR_IO;
  est_err rc = EST_ERR_IO;
  if (fstat(fd, &st) != 0 || st.st_size <= 0 || (uint64_t)st.st_size > CACHE_MAX)
    goto out;
  *der = malloc((size_t)st.st_size);
  if (!*der) {
    rc = EST_ERR_NOMEM;
    goto out;
  }
  if (read(fd, *der, (size_t)st.st_size) != (ssize_t)st.st_size) {
    free(*der);
    *der = NULL;
    goto out;
  }
  *len = (size_t)st.st_size;
  rc = EST_OK;
out:
  close(fd);
  return rc;
}

est_err registrar_start(est_plugin *p, const registrar_config *c) {
  const coapd_host_api *api = p->api;
  char diag[PATH_MAX + 256] = "", why[512] = "";
  uint8_t *der = NULL;
  size_t len = 0;
  est_err rc;
  if (c->key_file) {
    bool group = false;
    rc = est_keyfile_check(c->key_file, &group, diag, sizeof diag);
    if (rc != EST_OK) {
      api->log(api->host, COAPD_LOG_ERR, "%s:%u: upstream_key: %s", api->config_path,
               c->line, diag);
      return rc;
    }
  }
  upstream_config uc = {.url = c->url, .ca_file = c->ca_file, .cert_file = c->cert_file,
                        .key_file = c->key_file, .timeout_s = c->timeout_s};
  rc = upstream_open(&uc, api, &p->up, diag, sizeof diag);
  if (rc != EST_OK) {
    api->log(api->host, COAPD_LOG_ERR, "%s:%u: %s", api->config_path, c->line,
             diag[0] ? diag : est_strerror(rc));
    return rc;
  }
  snprintf(p->up_cache, sizeof p->up_cache, "%s", c->cache_file ? c->cache_file : "");
  p->up_refresh = c->refresh_s;
  p->up_want_attrs = c->want_attrs;
  rc = upstream_fetch_now(p->up, "cacerts", &der, &len, why, sizeof why);
  bool fresh = rc == EST_OK; /* the upstream answered: ask it for csrattrs too */
  if (rc == EST_OK) {
    rc = pki_ca_from_p7(der, len, &p->ca, diag, sizeof diag);
    if (rc == EST_OK)
      cache_write(p, der, len);
    else
      snprintf(why, sizeof why, "cacerts: %s", diag);
  }
  free(der);
  der = NULL;
  if (rc != EST_OK) {
    /* Devices still get crts, and enroll once the upstream is back. */
    est_err cr = p->up_cache[0] ? cache_read(p->up_cache, &der, &len) : EST_ERR_IO;
    if (cr == EST_OK && pki_ca_from_p7(der, len, &p->ca, diag, sizeof diag) == EST_OK) {
      api->log(api->host, COAPD_LOG_WARNING,
               "upstream %s: cacerts not fetched (%s); serving the cached copy from '%s'",
               c->url, why, p->up_cache);
      rc = EST_OK;
    } else {
      api->log(api->host, COAPD_LOG_ERR,
               "%s:%u: upstream %s: cacerts not fetched (%s), and no usable cache%s%s%s",
               api->config_path, c->line, c->url, why, p->up_cache[0] ? " at '" : "",
               p->up_cache, p->up_cache[0] ? "'" : " (upstream_cache or db_path)");
    }
    free(der);
    der = NULL;
    if (rc != EST_OK)
      return EST_ERR_UNAVAILABLE;
  }
  /* Not when cacerts already failed: the start waits at most one timeout. */
  bool got_all = fresh;
  if (c->want_attrs && fresh) {
    est_err ar = upstream_fetch_now(p->up, "csrattrs", &der, &len, why, sizeof why);
    if (ar == EST_OK) {
      p->up_attrs = der;
      p->up_attrs_len = len;
    } else if (ar != EST_ERR_NOT_FOUND) {
      got_all = false;
      api->log(api->host, COAPD_LOG_WARNING,
               "upstream %s: csrattrs not fetched (%s); att answers 5.03 until a refresh "
               "gets them", c->url, why);
    }
  } else if (c->want_attrs) {
    api->log(api->host, COAPD_LOG_WARNING,
             "upstream %s: csrattrs not fetched either; att answers 5.03 until a refresh "
             "gets them (next try in %u s)", c->url, RETRY_S);
  }
  p->up_attrs_known = !c->want_attrs || got_all;
  /* What is missing is asked for again soon, not after a whole refresh. */
  p->up_next = (long long)time(NULL) + (got_all ? c->refresh_s : RETRY_S);
  return EST_OK;
}

static void refresh_done(est_plugin *p, bool ok) {
  p->up_fetching = false;
  p->up_next = (long long)time(NULL) + (ok ? p->up_refresh : RETRY_S);
}

static void on_attrs(void *arg, est_err rc, uint8_t *der, size_t len, const char *why) {
  est_plugin *p = arg;
  if (rc == EST_OK || rc == EST_ERR_NOT_FOUND) {
    free(p->up_attrs);
    p->up_attrs = der;
    p->up_attrs_len = der ? len : 0;
    p->up_attrs_known = true;
  } else {
    free(der);
    p->api->log(p->api->host, COAPD_LOG_WARNING,
                "upstream: csrattrs refresh failed (%s); the last ones stay", why);
  }
  refresh_done(p, rc == EST_OK || rc == EST_ERR_NOT_FOUND);
}

static void on_cacerts(void *arg, est_err rc, uint8_t *der, size_t len, const char *why) {
  est_plugin *p = arg;
  char diag[256] = "";
  pki_ca *ca = NULL;
  if (rc == EST_OK && (rc = pki_ca_from_p7(der, len, &ca, diag, sizeof diag)) != EST_OK)
    why = diag;
  if (rc != EST_OK) {
    p->api->log(p->api->host, COAPD_LOG_WARNING,
                "upstream: cacerts refresh failed (%s); the last ones stay, next try in %u s",
                why, RETRY_S);
    free(der);
    refresh_done(p, false);
    return;
  }
  const uint8_t *now;
  size_t now_len;
  pki_ca_certs_p7(p->ca, &now, &now_len);
  if (now_len == len && memcmp(now, der, len) == 0) {
    pki_ca_free(ca);
  } else {
    /* Jobs in flight keep the CA they started with (pki_ca_ref). */
    pki_ca *old = p->ca;
    p->ca = ca;
    enroll_set_ca(p->en, ca);
    pki_ca_free(old);
    p->idevid_gen++; /* sessions are classified again */
    cache_write(p, der, len);
    p->api->log(p->api->host, COAPD_LOG_NOTICE,
                "upstream: cacerts changed, %zu CA cert(s) now; open sessions are "
                "classified again", pki_ca_cert_count(ca));
  }
  free(der);
  if (p->up_want_attrs && upstream_fetch(p->up, "csrattrs", on_attrs, p) == EST_OK)
    return;
  refresh_done(p, true);
}

uint32_t registrar_tick(est_plugin *p, long long now) {
  if (!p->up_fetching && now >= p->up_next) {
    if (upstream_fetch(p->up, "cacerts", on_cacerts, p) == EST_OK)
      p->up_fetching = true;
    else
      p->up_next = now + RETRY_S;
  }
  if (p->up_fetching)
    return 1000;
  long long d = p->up_next - now;
  return d <= 0 ? 1000u : d > 3600 ? 3600u * 1000u : (uint32_t)d * 1000u;
}

void registrar_refresh_now(est_plugin *p) {
  if (!p->up_fetching)
    p->up_next = 0;
}
