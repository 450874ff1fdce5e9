/* One est-bench operation on top of est_client: the same calls est-enroll
 * makes (tools/enroll/ops.c), minus discovery and the §4.7 retry loop,
 * with a clock around the parts the server sees. */
#define _GNU_SOURCE
#include "bench_op.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tools/enroll/csr.h"
#include "proto/multipart.h"
#include "tools/enroll/ops.h"
#include "proto/resource.h"

#define PATH_LEN 256
#define SUBJECT_LEN 128
#define CHALLENGE_LEN 128
#define DIAG_TEXT_MAX 120 /* of a server diagnostic, in a reason */

const char *bench_status_name(bench_status s) {
  switch (s) {
  case BENCH_OK:
    return "ok";
  case BENCH_NOT_RUN:
    return "not-run";
  case BENCH_CONNECT:
    return "connect";
  case BENCH_CSR:
    return "csr";
  case BENCH_TRANSPORT:
    return "transport";
  case BENCH_CODE:
    return "code";
  case BENCH_FORMAT:
    return "format";
  case BENCH_CERT:
    return "cert";
  case BENCH_STATUS__MAX:
    break;
  }
  return "?";
}

const char *bench_scn_name(bench_scn s) {
  switch (s) {
  case BENCH_SCN_SEN:
    return "sen";
  case BENCH_SCN_CRTS:
    return "crts";
  case BENCH_SCN_SKG:
    return "skg";
  case BENCH_SCN__MAX:
    break;
  }
  return "?";
}

bool bench_scn_parse(const char *s, bench_scn *out) {
  for (int i = 0; i < BENCH_SCN__MAX; i++) {
    if (s && strcmp(s, bench_scn_name((bench_scn)i)) == 0) {
      *out = (bench_scn)i;
      return true;
    }
  }
  return false;
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint32_t us_between(uint64_t a, uint64_t b) {
  uint64_t us = b > a ? (b - a) / 1000u : 0;
  return us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

/* A PKCS#10 CSR for keys[idx] carrying this session's tls-unique in
 * challengePassword (RFC 7030 §3.5, RFC 9148 §3), as est-enroll builds it. */
static bench_status build_csr(ec_client *c, const bench_target *t, size_t idx,
                              uint8_t **der, size_t *len, char *diag, size_t diag_len) {
  char subject[SUBJECT_LEN], chal[CHALLENGE_LEN];
  ec_csr_params p;
  memset(&p, 0, sizeof p);
  snprintf(subject, sizeof subject, "CN=bench-%s-%zu", t->tag, idx);
  if (ec_client_tls_unique(c, chal, sizeof chal) != EST_OK) {
    snprintf(diag, diag_len, "cannot read tls-unique");
    return BENCH_CSR;
  }
  p.subject = subject;
  p.challenge = chal;
  if (ec_csr_build(t->keys[idx], &p, der, len, diag, diag_len) != EST_OK)
    return BENCH_CSR;
  return BENCH_OK;
}

/* sen: PKCS#7 certs-only (281) holding a certificate for our key that
 * chains to the EST CA. */
static bench_status check_sen(const bench_target *t, size_t idx, const ec_response *r,
                              char *diag, size_t diag_len) {
  ec_certs issued = {NULL, 0};
  size_t leaf = 0;
  bench_status st = BENCH_CERT;
  if (r->cf != CF_PKCS7_CERTS_ONLY) {
    snprintf(diag, diag_len, "sen: Content-Format %d, want 281", r->cf);
    return BENCH_FORMAT;
  }
  if (ec_certs_add_p7(&issued, r->body, r->len) != EST_OK) {
    snprintf(diag, diag_len, "sen: the PKCS#7 does not parse");
    goto out;
  }
  if (ec_certs_check_issued(&issued, t->anchors, t->keys[idx], &leaf, diag, diag_len) !=
      EST_OK)
    goto out;
  st = BENCH_OK;
out:
  ec_certs_clear(&issued);
  return st;
}

static bench_status check_crts(const ec_response *r, char *diag, size_t diag_len) {
  ec_certs bag = {NULL, 0};
  bench_status st = BENCH_OK;
  if (r->cf != CF_PKCS7_CERTS_ONLY) {
    snprintf(diag, diag_len, "crts: Content-Format %d, want 281", r->cf);
    return BENCH_FORMAT;
  }
  if (ec_certs_add_p7(&bag, r->body, r->len) != EST_OK || bag.count == 0) {
    snprintf(diag, diag_len, "crts: the PKCS#7 does not parse");
    st = BENCH_CERT;
  }
  ec_certs_clear(&bag);
  return st;
}

/* skg: multipart-core (62) with an unencrypted PKCS#8 key and a PKCS#7
 * whose certificate carries that key and chains to the EST CA (§4.8). */
static bench_status check_skg(const bench_target *t, const ec_response *r, char *diag,
                              size_t diag_len) {
  ec_certs issued = {NULL, 0};
  gnutls_x509_privkey_t key = NULL;
  mp_part kp, cp;
  size_t leaf = 0;
  bench_status st = BENCH_CERT;
  if (r->cf != CF_MULTIPART_CORE) {
    snprintf(diag, diag_len, "skg: Content-Format %d, want 62", r->cf);
    return BENCH_FORMAT;
  }
  if (ec_keygen_split(r->body, r->len, false, &kp, &cp, diag, diag_len) != EST_OK)
    goto out;
  if (ec_key_import_pkcs8(kp.data, kp.len, &key) != EST_OK) {
    snprintf(diag, diag_len, "skg: the key part is not PKCS#8");
    goto out;
  }
  if (ec_certs_add_p7(&issued, cp.data, cp.len) != EST_OK) {
    snprintf(diag, diag_len, "skg: the PKCS#7 part does not parse");
    goto out;
  }
  if (ec_certs_check_issued(&issued, t->anchors, key, &leaf, diag, diag_len) != EST_OK)
    goto out;
  st = BENCH_OK;
out:
  ec_certs_clear(&issued);
  if (key)
    gnutls_x509_privkey_deinit(key);
  return st;
}

bench_status bench_op_run(ec_client *c, const bench_target *t, size_t idx, bench_rec *rec,
                          char *diag, size_t diag_len) {
  static const char *const fn_path[BENCH_SCN__MAX] = {"sen", "crts", "skg"};
  char path[PATH_LEN];
  uint8_t *body = NULL;
  size_t body_len = 0;
  ec_response resp;
  bench_status st = BENCH_OK;
  bool post = t->scn != BENCH_SCN_CRTS;
  int accept = t->scn == BENCH_SCN_SKG ? CF_MULTIPART_CORE : CF_PKCS7_CERTS_ONLY;
  unsigned want = post ? 204u : 205u;

  memset(&resp, 0, sizeof resp);
  resp.cf = -1;
  memset(rec, 0, sizeof *rec);
  diag[0] = '\0';
  snprintf(path, sizeof path, "%s/%s", t->root, fn_path[t->scn]);

  uint64_t t0 = now_ns();
  bool fresh = !t->reuse || !ec_client_is_connected_to(c, t->host, t->port);
  if (fresh && ec_client_connect(c, t->host, t->port, diag, diag_len) != EST_OK) {
    st = BENCH_CONNECT;
    goto out;
  }
  uint64_t t1 = now_ns();
  /* Only a session opened here has a handshake time. */
  rec->hs_us = fresh ? us_between(t0, t1) : 0;
  if (post) {
    st = build_csr(c, t, idx, &body, &body_len, diag, diag_len);
    if (st != BENCH_OK)
      goto out;
  }
  uint64_t t2 = now_ns();
  if (ec_client_request(c, post, path, NULL, post ? CF_PKCS10 : -1, accept, body, body_len,
                        &resp, diag, diag_len) != EST_OK) {
    st = BENCH_TRANSPORT;
    goto out;
  }
  uint64_t t3 = now_ns();
  rec->req_us = us_between(t2, t3);
  rec->total_us = us_between(t0, t3);
  rec->code = (uint16_t)resp.code;
  if (resp.code != want) {
    /* The server's diagnostic payload says why (RFC 7252 §5.5.2). */
    char text[DIAG_TEXT_MAX + 1];
    size_t n = 0;
    for (size_t i = 0; resp.cf < 0 && resp.body && i < resp.len && n < DIAG_TEXT_MAX; i++)
      text[n++] = resp.body[i] >= 0x20 && resp.body[i] < 0x7f ? (char)resp.body[i] : '?';
    text[n] = '\0';
    snprintf(diag, diag_len, "%s: %u.%02u %s", fn_path[t->scn], resp.code / 100,
             resp.code % 100, text);
    st = BENCH_CODE;
    goto out;
  }
  switch (t->scn) {
  case BENCH_SCN_SEN:
    st = check_sen(t, idx, &resp, diag, diag_len);
    break;
  case BENCH_SCN_CRTS:
    st = check_crts(&resp, diag, diag_len);
    break;
  case BENCH_SCN_SKG:
    st = check_skg(t, &resp, diag, diag_len);
    break;
  case BENCH_SCN__MAX:
    st = BENCH_CODE;
    break;
  }
out:
  rec->status = (uint8_t)st;
  if (!t->reuse || st == BENCH_CONNECT || st == BENCH_TRANSPORT)
    ec_client_close(c);
  /* The skg body holds a private key. */
  ec_response_clear(&resp, t->scn == BENCH_SCN_SKG);
  free(body);
  return st;
}
