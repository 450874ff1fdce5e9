/* The CRL publisher (crlpub.h). */
#include "crlpub.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <gnutls/gnutls.h>

#include "common/crlreason.h"

/* A CRL this long is a sign of a mistake, and its PEM must fit the store. */
#define CRL_ENTRIES_MAX 200000u

struct crlpub {
  char path[PATH_MAX];
  unsigned validity;
  pki_ca *ca;
  store *s;
  worker *wk;
  const coapd_host_api *api;
  bool busy;              /* a job is on the worker */
  bool published;         /* one went out since start */
  long long this_update;  /* of the last one */
  long long retry_at;     /* after a failure */
};

typedef struct crl_job {
  worker_job wj; /* first: the worker hands this pointer back */
  crlpub *c;
  pki_ca *ca;    /* a reference: a reload may replace c->ca meanwhile */
  pki_crl_entry *e;
  size_t n, cap;
  int64_t number;
  long long this_update, next_update;
  est_err rc;            /* of run() */
  char diag[PATH_MAX + 128];
  char *pem;             /* for the store */
} crl_job;

static void job_free(crl_job *j) {
  if (!j)
    return;
  pki_ca_free(j->ca);
  free(j->e);
  free(j->pem);
  free(j);
}

static int hexval(char ch) {
  if (ch >= '0' && ch <= '9')
    return ch - '0';
  if (ch >= 'a' && ch <= 'f')
    return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F')
    return ch - 'A' + 10;
  return -1;
}

/* store_crl_snapshot's callback: one entry, serial as INTEGER content. */
static int on_entry(const char *serial, int64_t revoked_at, const char *reason, void *ctx) {
  crl_job *j = ctx;
  size_t len = strlen(serial);
  if (j->n == j->cap) {
    if (j->cap >= CRL_ENTRIES_MAX)
      return EST_ERR_TOO_LARGE;
    size_t cap = j->cap ? 2 * j->cap : 64;
    pki_crl_entry *e = realloc(j->e, cap * sizeof *e);
    if (!e)
      return EST_ERR_NOMEM;
    j->e = e;
    j->cap = cap;
  }
  pki_crl_entry *x = &j->e[j->n];
  uint8_t raw[PKI_SERIAL_MAX];
  size_t nb = (len + 1) / 2, off = 0;
  memset(x, 0, sizeof *x);
  if (len == 0 || nb > sizeof raw)
    return EST_ERR_MALFORMED;
  memset(raw, 0, nb);
  /* An odd number of digits puts the first in the low nibble. */
  for (size_t i = 0; i < len; i++) {
    int v = hexval(serial[i]);
    if (v < 0)
      return EST_ERR_MALFORMED;
    size_t pos = (i + len % 2) / 2;
    raw[pos] = (uint8_t)(raw[pos] << 4 | v);
  }
  /* INTEGER content octets (X.690 §8.3): minimal, and positive, so a
   * high first bit gets a 00 octet in front. */
  while (nb - off > 1 && raw[off] == 0 && raw[off + 1] < 0x80)
    off++;
  size_t at = raw[off] >= 0x80 ? 1 : 0;
  memcpy(x->serial + at, raw + off, nb - off);
  x->serial_len = nb - off + at;
  x->revoked_at = revoked_at;
  /* A reason recorded before names were checked reads as unspecified. */
  if (!reason || !est_crl_reason_parse(reason, &x->reason))
    x->reason = 0;
  j->n++;
  return 0;
}

/* Write @p len bytes to @p path so a reader sees the old file or the
 * whole new one, also after a crash (write, fsync, rename, fsync dir). */
static est_err write_atomic(const char *path, const uint8_t *data, size_t len, char *diag,
                            size_t diag_len) {
  char tmp[PATH_MAX + 8], dir[PATH_MAX];
  est_err rc = EST_OK;
  int fd = -1;
  if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
    return EST_ERR_TOO_LARGE;
  /* A CRL is public: world-readable on purpose. */
  fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    snprintf(diag, diag_len, "cannot create '%s': %s", tmp, strerror(errno));
    return EST_ERR_IO;
  }
  for (size_t off = 0; off < len;) {
    ssize_t w = write(fd, data + off, len - off);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0) {
      snprintf(diag, diag_len, "cannot write '%s': %s", tmp, strerror(errno));
      rc = EST_ERR_IO;
      goto out;
    }
    off += (size_t)w;
  }
  if (fsync(fd) != 0) {
    snprintf(diag, diag_len, "cannot sync '%s': %s", tmp, strerror(errno));
    rc = EST_ERR_IO;
    goto out;
  }
  close(fd);
  fd = -1;
  if (rename(tmp, path) != 0) {
    snprintf(diag, diag_len, "cannot rename '%s' to '%s': %s", tmp, path, strerror(errno));
    rc = EST_ERR_IO;
    goto out;
  }
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  if (slash)
    *(slash == dir ? slash + 1 : slash) = '\0';
  int dfd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    (void)fsync(dfd);
    close(dfd);
  }
out:
  if (fd >= 0)
    close(fd);
  if (rc != EST_OK)
    (void)unlink(tmp);
  return rc;
}

/* Worker thread: sign, encode, write. Touches only the job and the CA. */
static void job_run(worker_job *wj) {
  crl_job *j = (crl_job *)wj;
  uint8_t *der = NULL;
  size_t len = 0;
  gnutls_datum_t pem = {NULL, 0};
  j->rc = pki_crl_sign(j->ca, j->e, j->n, (uint64_t)j->number, j->this_update,
                       j->next_update, &der, &len);
  if (j->rc != EST_OK) {
    snprintf(j->diag, sizeof j->diag, "signing: %s", est_strerror(j->rc));
    goto out;
  }
  gnutls_datum_t d = {der, (unsigned)len};
  if (gnutls_pem_base64_encode2("X509 CRL", &d, &pem) < 0) {
    j->rc = EST_ERR_NOMEM;
    snprintf(j->diag, sizeof j->diag, "PEM encoding failed");
    goto out;
  }
  j->pem = malloc(pem.size + 1);
  if (!j->pem) {
    j->rc = EST_ERR_NOMEM;
    goto out;
  }
  memcpy(j->pem, pem.data, pem.size);
  j->pem[pem.size] = '\0';
  j->rc = write_atomic(j->c->path, der, len, j->diag, sizeof j->diag);
out:
  gnutls_free(pem.data);
  free(der);
}

/* Loop thread: record it, or plan the next try. */
static void job_finish(worker_job *wj, bool ran) {
  crl_job *j = (crl_job *)wj;
  crlpub *c = j->c;
  c->busy = false;
  if (!ran) {
    job_free(j);
    return;
  }
  est_err rc = j->rc;
  if (rc == EST_OK)
    rc = store_crl_published(c->s, j->number, j->pem);
  if (rc != EST_OK) {
    c->api->log(c->api->host, COAPD_LOG_WARNING, "CRL %lld not published: %s%s%s",
                (long long)j->number, j->diag[0] ? j->diag : est_strerror(rc),
                j->rc == EST_OK ? "; store: " : "", j->rc == EST_OK ? store_errmsg(c->s) : "");
    c->retry_at = j->this_update + CRLPUB_RETRY_S;
  } else {
    /* Signed by a CA a reload has since replaced: sign again now. */
    c->published = j->ca == c->ca;
    c->this_update = j->this_update;
    c->retry_at = 0;
    c->api->log(c->api->host, COAPD_LOG_NOTICE,
                "CRL %lld published to %s: %zu revoked, next update in %u s",
                (long long)j->number, c->path, j->n, c->validity);
  }
  job_free(j);
}

est_err crlpub_new(const crlpub_config *cfg, pki_ca *ca, store *s, worker *wk,
                   const coapd_host_api *api, crlpub **out) {
  *out = NULL;
  if (!cfg || !cfg->path || !ca || !s || !wk || !api || cfg->validity_s < 2 * CRLPUB_POLL_S)
    return EST_ERR_INVALID;
  crlpub *c = calloc(1, sizeof *c);
  if (!c)
    return EST_ERR_NOMEM;
  if (snprintf(c->path, sizeof c->path, "%s", cfg->path) >= (int)sizeof c->path) {
    free(c);
    return EST_ERR_TOO_LARGE;
  }
  c->validity = cfg->validity_s;
  c->ca = ca;
  c->s = s;
  c->wk = wk;
  c->api = api;
  *out = c;
  return EST_OK;
}

void crlpub_free(crlpub *c) { free(c); }

void crlpub_set_ca(crlpub *c, pki_ca *ca) {
  if (!c || !ca)
    return;
  c->ca = ca;
  /* The file must be signed by the CA in use: sign again at the next tick. */
  c->published = false;
  c->retry_at = 0;
}

unsigned crlpub_tick(crlpub *c, long long now) {
  int64_t number = 0, published = 0;
  if (!c || c->busy)
    return CRLPUB_POLL_S;
  if (c->retry_at && now < c->retry_at)
    return (unsigned)(c->retry_at - now);
  if (store_crl_numbers(c->s, &number, &published) != EST_OK)
    return CRLPUB_POLL_S;
  /* At start (the file may be missing or another CA's), after a
   * revocation, and halfway to nextUpdate. */
  long long resign = c->this_update + c->validity / 2;
  if (c->published && number <= published && now < resign) {
    long long wait = resign - now;
    return wait < CRLPUB_POLL_S ? (unsigned)wait : CRLPUB_POLL_S;
  }
  crl_job *j = calloc(1, sizeof *j);
  if (!j)
    return CRLPUB_POLL_S;
  j->wj.run = job_run;
  j->wj.finish = job_finish;
  j->c = c;
  j->ca = pki_ca_ref(c->ca);
  j->this_update = now;
  j->next_update = now + c->validity;
  est_err rc = store_crl_snapshot(c->s, false, &j->number, on_entry, j);
  if (rc == EST_OK)
    rc = worker_submit(c->wk, &j->wj);
  if (rc != EST_OK) {
    c->api->log(c->api->host, COAPD_LOG_WARNING, "CRL not made: %s (%s)", est_strerror(rc),
                store_errmsg(c->s));
    job_free(j);
    c->retry_at = now + CRLPUB_RETRY_S;
    return CRLPUB_RETRY_S;
  }
  c->busy = true;
  return CRLPUB_POLL_S;
}
