/* plugin/est/enroll.c: the enrollment decision through every state, with a
 * fake host API (it only logs), real CAs and a throwaway database. An
 * operator's second store handle approves and rejects, as estctl does. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <sqlite3.h>

#include "plugin/est/enroll.h"
#include "proto/multipart.h"
#include "store/store.h"
#include "test_db.h"

#define DAY 86400LL
#define LOG_LINES 64

/* ---- the fake host: a log that tests can search ------------------------- */

typedef struct fake_host {
  char lines[LOG_LINES][600];
  size_t n;
} fake_host;

static void fake_log(coapd_host *host, coapd_log_level level, const char *fmt, ...) {
  fake_host *h = (fake_host *)host;
  va_list ap;
  (void)level;
  va_start(ap, fmt);
  vsnprintf(h->lines[h->n % LOG_LINES], sizeof h->lines[0], fmt, ap);
  va_end(ap);
  h->n++;
}

static size_t log_count(const fake_host *h, const char *needle) {
  size_t c = 0;
  for (size_t i = 0; i < h->n && i < LOG_LINES; i++)
    if (strstr(h->lines[i], needle))
      c++;
  return c;
}

/* ---- fixture ------------------------------------------------------------ */

typedef struct fx {
  char dir[TEST_DB_DIR_MAX];
  char db[TEST_DB_PATH_MAX];
  char ca_a_cert[160], ca_a_key[160], ca_b_cert[160], ca_b_key[160];
  pki_ca *ca_a, *ca_b;
  gnutls_x509_privkey_t dev_key, other_key;
  fake_host host;
  coapd_host_api api;
  enroll_config cfg;
  enroll *e;
  store *op; /* the operator's handle */
  uint8_t fp[32];
  uint8_t *dev_cert; /* an LDevID "CN=dev1" from CA A, for sren */
  size_t dev_cert_len;
} fx;

static gnutls_x509_privkey_t ec_key(void) {
  gnutls_x509_privkey_t k;
  assert_int_equal(gnutls_x509_privkey_init(&k), 0);
  assert_int_equal(gnutls_x509_privkey_generate(
                       k, GNUTLS_PK_ECDSA, GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0),
                   0);
  return k;
}

static void write_pem(const char *path, const gnutls_datum_t *d) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(d->data, 1, d->size, f), d->size);
  assert_int_equal(fclose(f), 0);
}

/* A self-signed CA in PEM files; loaded as a pki_ca. */
static pki_ca *make_ca(const char *dn, const char *cert_path, const char *key_path) {
  gnutls_x509_privkey_t k = ec_key();
  gnutls_x509_crt_t c;
  const char *err = NULL;
  uint8_t sn[8] = {1, 2, 3, 4, 5, 6, 7, (uint8_t)dn[3]}, id[64];
  size_t id_len = sizeof id;
  long long now = (long long)time(NULL);
  assert_int_equal(gnutls_x509_crt_init(&c), 0);
  assert_int_equal(gnutls_x509_crt_set_dn(c, dn, &err), 0);
  assert_int_equal(gnutls_x509_crt_set_key(c, k), 0);
  assert_int_equal(gnutls_x509_crt_set_version(c, 3), 0);
  assert_int_equal(gnutls_x509_crt_set_serial(c, sn, sizeof sn), 0);
  assert_int_equal(gnutls_x509_crt_set_activation_time(c, (time_t)(now - DAY)), 0);
  assert_int_equal(gnutls_x509_crt_set_expiration_time(c, (time_t)(now + 3650 * DAY)), 0);
  assert_int_equal(gnutls_x509_crt_set_basic_constraints(c, 1, -1), 0);
  assert_int_equal(gnutls_x509_crt_set_key_usage(c, GNUTLS_KEY_KEY_CERT_SIGN), 0);
  assert_int_equal(gnutls_x509_crt_get_key_id(c, GNUTLS_KEYID_USE_SHA1, id, &id_len), 0);
  assert_int_equal(gnutls_x509_crt_set_subject_key_id(c, id, id_len), 0);
  assert_int_equal(gnutls_x509_crt_sign2(c, c, k, GNUTLS_DIG_SHA256, 0), 0);
  gnutls_datum_t d;
  assert_int_equal(gnutls_x509_crt_export2(c, GNUTLS_X509_FMT_PEM, &d), 0);
  write_pem(cert_path, &d);
  gnutls_free(d.data);
  assert_int_equal(gnutls_x509_privkey_export2(k, GNUTLS_X509_FMT_PEM, &d), 0);
  write_pem(key_path, &d);
  gnutls_free(d.data);
  gnutls_x509_crt_deinit(c);
  gnutls_x509_privkey_deinit(k);
  pki_ca *ca = NULL;
  char diag[256];
  assert_int_equal(pki_ca_load(cert_path, key_path, 365, &ca, diag, sizeof diag), EST_OK);
  return ca;
}

/* A DER CSR (free it) for @p dn, with a challengePassword if given. */
static gnutls_datum_t csr(gnutls_x509_privkey_t key, const char *dn, const char *challenge) {
  gnutls_x509_crq_t q;
  gnutls_datum_t d;
  const char *err = NULL;
  assert_int_equal(gnutls_x509_crq_init(&q), 0);
  assert_int_equal(gnutls_x509_crq_set_dn(q, dn, &err), 0);
  assert_int_equal(gnutls_x509_crq_set_version(q, 1), 0);
  assert_int_equal(gnutls_x509_crq_set_key(q, key), 0);
  if (challenge)
    assert_int_equal(gnutls_x509_crq_set_challenge_password(q, challenge), 0);
  assert_int_equal(gnutls_x509_crq_sign2(q, key, GNUTLS_DIG_SHA256, 0), 0);
  assert_int_equal(gnutls_x509_crq_export2(q, GNUTLS_X509_FMT_DER, &d), 0);
  gnutls_x509_crq_deinit(q);
  return d;
}

static void reopen(fx *f, pki_ca *ca) {
  char diag[256] = "";
  enroll_close(f->e);
  f->e = NULL;
  assert_int_equal(enroll_open(&f->cfg, ca, &f->api, &f->e, diag, sizeof diag), EST_OK);
}

static int setup(void **state) {
  fx *f = calloc(1, sizeof *f);
  assert_non_null(f);
  snprintf(f->dir, sizeof f->dir, "/tmp/test_enroll_core.XXXXXX");
  assert_non_null(mkdtemp(f->dir));
  snprintf(f->db, sizeof f->db, "%s/est.db", f->dir);
  snprintf(f->ca_a_cert, sizeof f->ca_a_cert, "%s/a.pem", f->dir);
  snprintf(f->ca_a_key, sizeof f->ca_a_key, "%s/a.key", f->dir);
  snprintf(f->ca_b_cert, sizeof f->ca_b_cert, "%s/b.pem", f->dir);
  snprintf(f->ca_b_key, sizeof f->ca_b_key, "%s/b.key", f->dir);
  f->ca_a = make_ca("CN=CA A", f->ca_a_cert, f->ca_a_key);
  f->ca_b = make_ca("CN=CA B", f->ca_b_cert, f->ca_b_key);
  f->dev_key = ec_key();
  f->other_key = ec_key();
  f->api.abi_version = COAPD_PLUGIN_ABI_VERSION;
  f->api.host = (coapd_host *)&f->host;
  f->api.log = fake_log;
  memset(f->fp, 0xa5, sizeof f->fp);
  f->cfg = (enroll_config){
    .db_path = f->db, .idevid = ENROLL_MANUAL, .ldevid = ENROLL_AUTO, .retry_after = 60,
    .pending_ttl = 7 * 86400, .max_pending = 2, .busy_timeout_ms = 50,
    .pop = POP_VERIFY, .keygen_type = PKI_KEY_EC_P256};
  reopen(f, f->ca_a);
  store_options o = test_db_options(NULL);
  char diag[256];
  assert_int_equal(store_open(f->db, &o, &f->op, diag, sizeof diag), EST_OK);
  /* The device's own LDevID, issued by CA A, for sren. */
  gnutls_datum_t d = csr(f->dev_key, "CN=dev1", NULL);
  pki_csr *c = NULL;
  assert_int_equal(pki_csr_parse(d.data, d.size, &c, diag, sizeof diag), EST_OK);
  pki_issued is;
  assert_int_equal(pki_issue(f->ca_a, c, &is), EST_OK);
  f->dev_cert = is.der;
  f->dev_cert_len = is.der_len;
  pki_csr_free(c);
  gnutls_free(d.data);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fx *f = *state;
  enroll_close(f->e);
  store_close(f->op);
  pki_ca_free(f->ca_a);
  pki_ca_free(f->ca_b);
  gnutls_x509_privkey_deinit(f->dev_key);
  gnutls_x509_privkey_deinit(f->other_key);
  free(f->dev_cert);
  test_db_remove_files(f->db);
  unlink(f->ca_a_cert);
  unlink(f->ca_a_key);
  unlink(f->ca_b_cert);
  unlink(f->ca_b_key);
  rmdir(f->dir);
  free(f);
  return 0;
}

/* ---- driving one request ------------------------------------------------ */

typedef struct req {
  est_fn fn;
  pki_client_class cls;
  const char *dn;
  gnutls_x509_privkey_t key;
  const char *challenge;
  bool bare;
  long long now;
  bool anon;      /* no client certificate (HTTPS, docs/decisions.md §16) */
  const char *ra; /* an RA asks (docs/decisions.md §17) */
} req;

/* Decide, and run and finish the job if there is one, as handlers.c and
 * async.c do. *slow says whether the job wanted the worker. */
static enroll_result run(fx *f, const req *q, bool *slow) {
  gnutls_datum_t d = csr(q->key ? q->key : f->dev_key, q->dn ? q->dn : "CN=dev1", q->challenge);
  enroll_request in = {
    .fn = q->fn, .cls = q->cls ? q->cls : PKI_CLIENT_LDEVID, .client_fp = f->fp,
    .client = "CN=dev1", .client_cert = f->dev_cert, .client_cert_len = f->dev_cert_len,
    .csr = d.data, .csr_len = d.size, .bare_cert = q->bare,
    .now = q->now ? q->now : (long long)time(NULL), .ra = q->ra};
  if (q->anon) {
    in.cls = PKI_CLIENT_ANONYMOUS;
    in.client_fp = NULL;
    in.client = "(no client certificate)";
    in.client_cert = NULL;
    in.client_cert_len = 0;
  }
  enroll_result res;
  enroll_job *j = enroll_decide(f->e, &in, &res);
  gnutls_free(d.data);
  if (slow)
    *slow = j && enroll_job_slow(j);
  if (j) {
    assert_int_equal(res.rc, EST_OK);
    enroll_job_run(j);
    enroll_job_finish(f->e, j, &res);
  }
  return res;
}

/* The certificate in a 281 body (PKCS#7 certs-only) or a 287 one. */
static gnutls_x509_crt_t body_cert(const enroll_result *r, bool bare) {
  gnutls_x509_crt_t c;
  gnutls_datum_t d = {r->body, (unsigned)r->body_len};
  assert_int_equal(gnutls_x509_crt_init(&c), 0);
  if (bare) {
    assert_int_equal(gnutls_x509_crt_import(c, &d, GNUTLS_X509_FMT_DER), 0);
    return c;
  }
  gnutls_pkcs7_t p7;
  gnutls_datum_t one;
  assert_int_equal(gnutls_pkcs7_init(&p7), 0);
  assert_int_equal(gnutls_pkcs7_import(p7, &d, GNUTLS_X509_FMT_DER), 0);
  assert_int_equal(gnutls_pkcs7_get_crt_count(p7), 1);
  assert_int_equal(gnutls_pkcs7_get_crt_raw2(p7, 0, &one), 0);
  assert_int_equal(gnutls_x509_crt_import(c, &one, GNUTLS_X509_FMT_DER), 0);
  gnutls_free(one.data);
  gnutls_pkcs7_deinit(p7);
  return c;
}

static bool issued_by(const pki_ca *ca, gnutls_x509_crt_t c) {
  gnutls_datum_t d;
  assert_int_equal(gnutls_x509_crt_export2(c, GNUTLS_X509_FMT_DER, &d), 0);
  bool ok = pki_ca_issued(ca, d.data, d.size, (long long)time(NULL));
  gnutls_free(d.data);
  return ok;
}

static int64_t sql_int(const fx *f, const char *sql) {
  sqlite3 *db;
  sqlite3_stmt *st;
  int64_t v = -1;
  assert_int_equal(sqlite3_open_v2(f->db, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
  if (sqlite3_step(st) == SQLITE_ROW)
    v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return v;
}

static int64_t pending_id(const enroll_result *r) {
  long long id = 0;
  assert_int_equal(sscanf(r->diag, "request %lld is waiting", &id), 1);
  return (int64_t)id;
}

/* ---- the states --------------------------------------------------------- */

/* New, auto policy: issued at once, recorded with pki's own dates. */
static void test_new_auto(void **state) {
  fx *f = *state;
  for (int bare = 0; bare <= 1; bare++) {
    req q = {.fn = EST_FN_SEN, .dn = bare ? "CN=dev1" : "CN=dev2", .bare = bare,
             .key = bare ? f->dev_key : f->other_key};
    bool slow = true;
    enroll_result r = run(f, &q, &slow);
    assert_false(slow);
    assert_int_equal(r.rc, EST_OK);
    gnutls_x509_crt_t c = body_cert(&r, bare);
    assert_true(issued_by(f->ca_a, c));
    uint8_t sn[32];
    size_t sn_len = sizeof sn;
    char hex[65], sql[200];
    assert_int_equal(gnutls_x509_crt_get_serial(c, sn, &sn_len), 0);
    for (size_t i = 0; i < sn_len; i++)
      snprintf(hex + 2 * i, 3, "%02x", sn[i]);
    snprintf(sql, sizeof sql, "SELECT not_after FROM certificates WHERE serial = '%s'", hex);
    assert_int_equal(sql_int(f, sql), (int64_t)gnutls_x509_crt_get_expiration_time(c));
    snprintf(sql, sizeof sql, "SELECT not_before FROM certificates WHERE serial = '%s'", hex);
    assert_int_equal(sql_int(f, sql), (int64_t)gnutls_x509_crt_get_activation_time(c));
    gnutls_x509_crt_deinit(c);
    enroll_result_clear(&r);
  }
  assert_int_equal(sql_int(f, "SELECT count(*) FROM requests WHERE state = 'issued'"), 2);
  assert_int_equal(log_count(&f->host, "issued serial"), 2);
}

/* New, manual: pending with the operator's Max-Age; a retry finds the
 * same request; approval issues; a retry then gets the same bytes. */
static void test_manual_lifecycle(void **state) {
  fx *f = *state;
  req q = {.fn = EST_FN_SEN, .cls = PKI_CLIENT_IDEVID};
  enroll_result r = run(f, &q, NULL);
  assert_int_equal(r.rc, EST_ERR_PENDING);
  assert_int_equal(r.max_age, 60);
  assert_null(r.body);
  int64_t id = pending_id(&r);
  enroll_result_clear(&r);

  r = run(f, &q, NULL); /* pending */
  assert_int_equal(r.rc, EST_ERR_PENDING);
  assert_int_equal(pending_id(&r), id);
  enroll_result_clear(&r);
  assert_int_equal(sql_int(f, "SELECT count(*) FROM requests"), 1);

  assert_int_equal(store_request_decide(f->op, id, true, NULL, "op"), EST_OK);
  r = run(f, &q, NULL); /* approved */
  assert_int_equal(r.rc, EST_OK);
  uint8_t *first = malloc(r.body_len);
  size_t first_len = r.body_len;
  memcpy(first, r.body, r.body_len);
  enroll_result_clear(&r);
  store_request row;
  assert_int_equal(store_request_get(f->op, id, &row), EST_OK);
  assert_int_equal(row.state, STORE_REQ_ISSUED);
  assert_true(row.cert_id > 0);
  store_request_clear(&row);

  r = run(f, &q, NULL); /* issued: resend, no new certificate */
  assert_int_equal(r.rc, EST_OK);
  assert_int_equal(r.body_len, first_len);
  assert_memory_equal(r.body, first, first_len);
  enroll_result_clear(&r);
  free(first);
  assert_int_equal(sql_int(f, "SELECT count(*) FROM certificates"), 1);
  assert_int_equal(sql_int(f, "SELECT count(*) FROM audit WHERE action = 'reissued'"), 1);
  assert_int_equal(log_count(&f->host, "sent again"), 1);
}

static void test_rejected(void **state) {
  fx *f = *state;
  req q = {.fn = EST_FN_SEN, .cls = PKI_CLIENT_IDEVID};
  enroll_result r = run(f, &q, NULL);
  int64_t id = pending_id(&r);
  enroll_result_clear(&r);
  assert_int_equal(store_request_decide(f->op, id, false, "unknown device", "op"), EST_OK);
  r = run(f, &q, NULL);
  assert_int_equal(r.rc, EST_ERR_REJECTED);
  assert_non_null(strstr(r.diag, "unknown device"));
  assert_null(r.body);
  enroll_result_clear(&r);
}

/* An overdue request is reported, not written, by the lookup; the new
 * request for the key records the expiry in the same transaction. */
static void test_expired(void **state) {
  fx *f = *state;
  f->cfg.pending_ttl = 1;
  reopen(f, f->ca_a);
  req q = {.fn = EST_FN_SEN, .cls = PKI_CLIENT_IDEVID};
  enroll_result r = run(f, &q, NULL);
  int64_t old = pending_id(&r);
  enroll_result_clear(&r);
  sleep(2);
  r = run(f, &q, NULL);
  assert_int_equal(r.rc, EST_ERR_PENDING);
  int64_t fresh = pending_id(&r);
  enroll_result_clear(&r);
  assert_int_not_equal(fresh, old);
  store_request row;
  assert_int_equal(store_request_get(f->op, old, &row), EST_OK);
  assert_int_equal(row.state, STORE_REQ_EXPIRED);
  store_request_clear(&row);
  assert_int_equal(log_count(&f->host, "has expired"), 1);

  /* The tick sweeps the rest; it asks to run again within a minute. */
  sleep(2);
  assert_int_equal(store_request_get(f->op, fresh, &row), EST_OK);
  assert_int_equal(row.state, STORE_REQ_PENDING);
  store_request_clear(&row);
  unsigned again = enroll_tick(f->e, (long long)time(NULL));
  assert_true(again > 0 && again <= 60);
  assert_int_equal(store_request_get(f->op, fresh, &row), EST_OK);
  assert_int_equal(row.state, STORE_REQ_EXPIRED);
  store_request_clear(&row);
  assert_true(enroll_tick(f->e, (long long)time(NULL)) <= again);
}

/* The operator replaced the CA: the retry of an issued request gets a
 * certificate from the current CA, recorded as a new row. */
static void test_ca_changed(void **state) {
  fx *f = *state;
  req q = {.fn = EST_FN_SEN, .bare = true};
  enroll_result r = run(f, &q, NULL);
  assert_int_equal(r.rc, EST_OK);
  enroll_result_clear(&r);
  reopen(f, f->ca_b);
  r = run(f, &q, NULL);
  assert_int_equal(r.rc, EST_OK);
  gnutls_x509_crt_t c = body_cert(&r, true);
  assert_true(issued_by(f->ca_b, c));
  assert_false(issued_by(f->ca_a, c));
  gnutls_x509_crt_deinit(c);
  enroll_result_clear(&r);
  assert_int_equal(sql_int(f, "SELECT count(*) FROM certificates"), 2);
  assert_int_equal(log_count(&f->host, "issued by another CA"), 1);
  /* And the next retry is a plain resend of the new one. */
  r = run(f, &q, NULL);
  assert_int_equal(r.rc, EST_OK);
  enroll_result_clear(&r);
  assert_int_equal(sql_int(f, "SELECT count(*) FROM certificates"), 2);
}

/* Another process holds the write lock: 5.03 "retry soon", nothing half
 * written, no certificate handed out; after the lock, the retry works. */
static void test_store_busy(void **state) {
  fx *f = *state;
  sqlite3 *other;
  assert_int_equal(sqlite3_open(f->db, &other), SQLITE_OK);
  assert_int_equal(sqlite3_exec(other, "BEGIN EXCLUSIVE", NULL, NULL, NULL), SQLITE_OK);
  req auto_q = {.fn = EST_FN_SEN};
  req manual_q = {.fn = EST_FN_SEN, .cls = PKI_CLIENT_IDEVID, .key = f->other_key};
  for (int i = 0; i < 2; i++) {
    enroll_result r = run(f, i ? &manual_q : &auto_q, NULL);
    assert_int_equal(r.rc, EST_ERR_UNAVAILABLE);
    assert_int_equal(r.max_age, ENROLL_RETRY_SOON);
    assert_null(r.body);
    assert_non_null(strstr(r.diag, "retry later"));
    enroll_result_clear(&r);
  }
  assert_int_equal(log_count(&f->host, "not sent"), 1);
  assert_int_equal(sqlite3_exec(other, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(other);
  assert_int_equal(sql_int(f, "SELECT count(*) FROM requests"), 0);
  enroll_result r = run(f, &auto_q, NULL);
  assert_int_equal(r.rc, EST_OK);
  enroll_result_clear(&r);
}

/* The store fails outright (its table is gone): still 5.03, never a
 * certificate that is not recorded. */
static void test_store_failing(void **state) {
  fx *f = *state;
  sqlite3 *other;
  assert_int_equal(sqlite3_open(f->db, &other), SQLITE_OK);
  assert_int_equal(sqlite3_exec(other, "ALTER TABLE certificates RENAME TO gone", NULL, NULL,
                                NULL),
                   SQLITE_OK);
  req q = {.fn = EST_FN_SEN};
  enroll_result r = run(f, &q, NULL);
  assert_int_equal(r.rc, EST_ERR_UNAVAILABLE);
  assert_int_equal(r.max_age, ENROLL_RETRY_SOON);
  assert_null(r.body);
  enroll_result_clear(&r);
  assert_int_equal(sqlite3_exec(other, "ALTER TABLE gone RENAME TO certificates", NULL, NULL,
                                NULL),
                   SQLITE_OK);
  sqlite3_close(other);
  assert_int_equal(sql_int(f, "SELECT count(*) FROM requests"), 0);
  r = run(f, &q, NULL);
  assert_int_equal(r.rc, EST_OK);
  enroll_result_clear(&r);
}

/* Server keygen: a slow job, a two-part answer; a retry after issuance
 * gets a fresh key (none was stored). */
static void test_keygen(void **state) {
  fx *f = *state;
  for (int skc = 0; skc <= 1; skc++) {
    req q = {.fn = skc ? EST_FN_SKC : EST_FN_SKG};
    uint8_t first_key[512];
    size_t first_len = 0;
    for (int round = 0; round < 2; round++) {
      bool slow = false;
      enroll_result r = run(f, &q, &slow);
      assert_true(slow);
      assert_int_equal(r.rc, EST_OK);
      mp_part parts[2];
      assert_int_equal(mp_decode_pair(r.body, r.body_len, parts), EST_OK);
      assert_int_equal(parts[0].cf, CF_PKCS8);
      assert_int_equal(parts[1].cf, skc ? CF_PKIX_CERT : CF_PKCS7_CERTS_ONLY);
      assert_true(parts[0].len < sizeof first_key);
      if (round == 0) {
        memcpy(first_key, parts[0].data, parts[0].len);
        first_len = parts[0].len;
      } else {
        assert_false(first_len == parts[0].len &&
                     memcmp(first_key, parts[0].data, first_len) == 0);
      }
      enroll_result_clear(&r);
    }
  }
  assert_int_equal(log_count(&f->host, "with a server-generated key"), 4);
}

/* What the CSR must pass before any decision; nothing reaches the store. */
static void test_csr_checks(void **state) {
  fx *f = *state;
  uint8_t junk[] = {0x30, 0x03, 0x02, 0x01, 0x00};
  enroll_request in = {.fn = EST_FN_SEN, .cls = PKI_CLIENT_LDEVID, .client_fp = f->fp,
                       .client = "CN=dev1", .csr = junk, .csr_len = sizeof junk,
                       .now = (long long)time(NULL)};
  enroll_result r;
  assert_null(enroll_decide(f->e, &in, &r));
  assert_int_equal(r.rc, EST_ERR_BAD_CSR);
  enroll_result_clear(&r);

  /* A challengePassword that is not the channel binding. */
  req q = {.fn = EST_FN_SEN, .challenge = "not-the-binding"};
  r = run(f, &q, NULL);
  assert_int_equal(r.rc, EST_ERR_POP_LINKING);
  enroll_result_clear(&r);

  /* pop_linking require: no challenge at all is refused. */
  f->cfg.pop = POP_REQUIRE;
  reopen(f, f->ca_a);
  req plain = {.fn = EST_FN_SEN};
  r = run(f, &plain, NULL);
  assert_int_equal(r.rc, EST_ERR_POP_LINKING);
  assert_string_equal(r.diag, "identity/POP linking required");
  enroll_result_clear(&r);
  f->cfg.pop = POP_VERIFY;
  reopen(f, f->ca_a);

  /* sren must keep the subject of the certificate it renews (AUTH-7). */
  req sren = {.fn = EST_FN_SREN, .dn = "CN=someone-else"};
  r = run(f, &sren, NULL);
  assert_int_equal(r.rc, EST_ERR_SUBJECT_MISMATCH);
  enroll_result_clear(&r);
  req sren_ok = {.fn = EST_FN_SREN};
  r = run(f, &sren_ok, NULL);
  assert_int_equal(r.rc, EST_OK);
  enroll_result_clear(&r);
  assert_int_equal(sql_int(f, "SELECT count(*) FROM requests"), 1);
}

/* The per-client cap on requests waiting for an operator. */
static void test_max_pending(void **state) {
  fx *f = *state;
  const char *names[] = {"CN=a", "CN=b", "CN=c"};
  for (int i = 0; i < 3; i++) {
    gnutls_x509_privkey_t k = ec_key();
    req q = {.fn = EST_FN_SEN, .cls = PKI_CLIENT_IDEVID, .dn = names[i], .key = k};
    enroll_result r = run(f, &q, NULL);
    assert_int_equal(r.rc, i < 2 ? EST_ERR_PENDING : EST_ERR_BUSY);
    assert_int_equal(r.max_age, 60);
    if (i < 2)
      assert_non_null(strstr(r.diag, "is waiting for an operator"));
    else
      assert_non_null(strstr(r.diag, "too many requests"));
    enroll_result_clear(&r);
    gnutls_x509_privkey_deinit(k);
  }
  assert_int_equal(sql_int(f, "SELECT count(*) FROM requests"), 2);
}

/* No client certificate (docs/decisions.md §16): always an operator's
 * call, even under auto and with the subject pre-authorised; the key is
 * the client, so the row's fingerprint is the key's and a resend matches. */
static void test_anonymous(void **state) {
  fx *f = *state;
  f->cfg.idevid = ENROLL_AUTO;
  f->cfg.ldevid = ENROLL_AUTO;
  reopen(f, f->ca_a);
  assert_int_equal(store_preauth_add(f->op, STORE_PREAUTH_SUBJECT, "CN=dev1", NULL, "op", NULL),
                   EST_OK);
  req q = {.fn = EST_FN_SEN, .anon = true};
  enroll_result r = run(f, &q, NULL);
  assert_int_equal(r.rc, EST_ERR_PENDING);
  int64_t id = pending_id(&r);
  enroll_result_clear(&r);
  assert_int_equal(sql_int(f, "SELECT count(*) FROM requests WHERE client_fp = spki_sha256"), 1);
  r = run(f, &q, NULL);
  assert_int_equal(r.rc, EST_ERR_PENDING);
  assert_int_equal(pending_id(&r), id);
  enroll_result_clear(&r);
  assert_int_equal(store_request_decide(f->op, id, true, NULL, "op"), EST_OK);
  r = run(f, &q, NULL);
  assert_int_equal(r.rc, EST_OK);
  enroll_result_clear(&r);
  /* Another key is another client. */
  gnutls_x509_privkey_t k = ec_key();
  q.key = k;
  r = run(f, &q, NULL);
  assert_int_equal(r.rc, EST_ERR_PENDING);
  assert_int_not_equal(pending_id(&r), id);
  enroll_result_clear(&r);
  gnutls_x509_privkey_deinit(k);
}

/* An RA naming no device (docs/decisions.md §17): ra_policy decides, PoP
 * was the RA's to check, and the row names the RA. */
static void test_ra_no_device(void **state) {
  fx *f = *state;
  f->cfg.ra = ENROLL_AUTO;
  reopen(f, f->ca_a);
  req q = {.fn = EST_FN_SEN, .anon = true, .ra = "CN=registrar-1",
           .challenge = "not this session's"};
  enroll_result r = run(f, &q, NULL);
  assert_int_equal(r.rc, EST_OK);
  enroll_result_clear(&r);
  assert_int_equal(sql_int(f, "SELECT count(*) FROM requests WHERE ra = 'CN=registrar-1' AND"
                              " state = 'issued'"), 1);
  /* The same CSR from the device itself: its PoP is checked. */
  q.ra = NULL;
  q.anon = false;
  r = run(f, &q, NULL);
  assert_int_equal(r.rc, EST_ERR_POP_LINKING);
  enroll_result_clear(&r);
  f->cfg.ra = ENROLL_MANUAL;
  reopen(f, f->ca_a);
  gnutls_x509_privkey_t k = ec_key();
  q = (req){.fn = EST_FN_SEN, .anon = true, .ra = "CN=registrar-1", .key = k};
  r = run(f, &q, NULL);
  assert_int_equal(r.rc, EST_ERR_PENDING);
  enroll_result_clear(&r);
  gnutls_x509_privkey_deinit(k);
}

/* Manual policy, but the operator pre-authorised the subject. */
static void test_preauthorised(void **state) {
  fx *f = *state;
  assert_int_equal(store_preauth_add(f->op, STORE_PREAUTH_SUBJECT, "CN=dev1", NULL, "op", NULL),
                   EST_OK);
  req q = {.fn = EST_FN_SEN, .cls = PKI_CLIENT_IDEVID};
  enroll_result r = run(f, &q, NULL);
  assert_int_equal(r.rc, EST_OK);
  enroll_result_clear(&r);
  assert_int_equal(sql_int(f, "SELECT count(*) FROM requests WHERE state = 'issued'"), 1);
}

/* Without a database: everything allowed is issued, nothing recorded. */
static void test_no_store(void **state) {
  fx *f = *state;
  f->cfg.db_path = NULL;
  reopen(f, f->ca_a);
  req q = {.fn = EST_FN_SEN, .cls = PKI_CLIENT_IDEVID};
  enroll_result r = run(f, &q, NULL);
  assert_int_equal(r.rc, EST_OK);
  enroll_result_clear(&r);
  assert_int_equal(enroll_tick(f->e, (long long)time(NULL)), 60);
  assert_int_equal(sql_int(f, "SELECT count(*) FROM requests"), 0);
}

/* A job dropped unanswered (plugin shutdown) frees everything; a failed
 * issuance is a refusal from the CA, not from the store. */
static void test_job_drop_and_ca_failure(void **state) {
  fx *f = *state;
  gnutls_datum_t d = csr(f->dev_key, "CN=dev1", NULL);
  enroll_request in = {.fn = EST_FN_SKG, .cls = PKI_CLIENT_LDEVID, .client_fp = f->fp,
                       .client = "CN=dev1", .csr = d.data, .csr_len = d.size,
                       .now = (long long)time(NULL)};
  enroll_result r;
  enroll_job *j = enroll_decide(f->e, &in, &r);
  assert_non_null(j);
  enroll_job_free(j);
  enroll_job_free(NULL);

  /* A key type the CA cannot make: the worker's error comes back. */
  f->cfg.keygen_type = PKI_KEY__MAX;
  reopen(f, f->ca_a);
  j = enroll_decide(f->e, &in, &r);
  assert_non_null(j);
  enroll_job_run(j);
  enroll_job_finish(f->e, j, &r);
  assert_int_equal(r.rc, EST_ERR_INVALID);
  assert_non_null(strstr(r.diag, "could not generate"));
  assert_null(r.body);
  enroll_result_clear(&r);
  gnutls_free(d.data);
  assert_int_equal(sql_int(f, "SELECT count(*) FROM certificates"), 0);
}

static void test_policy_parse_and_retry(void **state) {
  (void)state;
  enroll_policy p = ENROLL_MANUAL;
  assert_int_equal(enroll_policy_parse("auto", &p), EST_OK);
  assert_int_equal(p, ENROLL_AUTO);
  assert_int_equal(enroll_policy_parse("manual", &p), EST_OK);
  assert_int_equal(p, ENROLL_MANUAL);
  assert_int_equal(enroll_policy_parse("Auto", &p), EST_ERR_INVALID);
  assert_int_equal(enroll_policy_parse("", &p), EST_ERR_INVALID);
  enroll_result r = {0};
  enroll_retry_later(&r, "server busy, retry later");
  assert_int_equal(r.rc, EST_ERR_UNAVAILABLE);
  assert_int_equal(r.max_age, ENROLL_RETRY_SOON);
  assert_string_equal(r.diag, "server busy, retry later");
  enroll_result_clear(&r);
  assert_int_equal(r.rc, EST_OK);
  enroll_result_clear(NULL);
}

static void test_open_errors(void **state) {
  fx *f = *state;
  enroll *e = NULL;
  char diag[256] = "";
  enroll_config c = f->cfg;
  assert_int_equal(enroll_open(NULL, f->ca_a, &f->api, &e, diag, sizeof diag), EST_ERR_INVALID);
  assert_int_equal(enroll_open(&c, NULL, &f->api, &e, diag, sizeof diag), EST_ERR_INVALID);
  c.db_path = "/nonexistent-dir/est.db";
  assert_int_not_equal(enroll_open(&c, f->ca_a, &f->api, &e, diag, sizeof diag), EST_OK);
  assert_null(e);
  assert_true(diag[0] != '\0');
}

/* ---- a registrar (enroll_config.forward, docs/decisions.md §19) ---------- */

/* One request as a registrar's handler makes it, with the device's chain
 * (its LDevID and CA A); *d keeps the CSR (gnutls_free it). */
typedef struct fwd_req {
  gnutls_datum_t d;
  const uint8_t *chain[ENROLL_CHAIN_MAX + 1];
  size_t chain_len[ENROLL_CHAIN_MAX + 1];
  enroll_request in;
} fwd_req;

static void fwd_req_init(fx *f, fwd_req *r, est_fn fn, pki_client_class cls,
                         gnutls_x509_privkey_t key) {
  memset(r, 0, sizeof *r);
  r->d = csr(key ? key : f->dev_key, "CN=dev1", NULL);
  r->chain[0] = f->dev_cert;
  r->chain_len[0] = f->dev_cert_len;
  pki_ca_cert_der(f->ca_a, &r->chain[1], &r->chain_len[1]);
  r->in = (enroll_request){
    .fn = fn, .cls = cls, .client_fp = f->fp, .client = "CN=dev1",
    .client_cert = f->dev_cert, .client_cert_len = f->dev_cert_len,
    .chain = r->chain, .chain_len = r->chain_len, .chain_n = 2,
    .csr = r->d.data, .csr_len = r->d.size, .now = (long long)time(NULL)};
}

/* What the upstream would answer: @p ca issues for @p d's CSR (malloc). */
static uint8_t *upstream_cert(pki_ca *ca, const gnutls_datum_t *d, size_t *len,
                              pki_issued *is) {
  pki_csr *c = NULL;
  char diag[256];
  assert_int_equal(pki_csr_parse(d->data, d->size, &c, diag, sizeof diag), EST_OK);
  assert_int_equal(pki_issue(ca, c, is), EST_OK);
  pki_csr_free(c);
  *len = is->der_len;
  return is->der;
}

static uint8_t *dup_bytes(const uint8_t *p, size_t n) {
  uint8_t *q = malloc(n ? n : 1);
  assert_non_null(q);
  memcpy(q, p, n);
  return q;
}

/* The job for @p r: slow (it goes upstream), and not refused. */
static enroll_job *fwd_decide(fx *f, const fwd_req *r) {
  enroll_result res;
  enroll_job *j = enroll_decide(f->e, &r->in, &res);
  assert_non_null(j);
  assert_int_equal(res.rc, EST_OK);
  assert_null(res.body);
  assert_true(enroll_job_slow(j));
  return j;
}

static void expect_nothing_recorded(const fx *f) {
  assert_int_equal(sql_int(f, "SELECT count(*) FROM requests"), 0);
  assert_int_equal(sql_int(f, "SELECT count(*) FROM certificates"), 0);
}

/* sen through the upstream: the job says what to send, the answer is
 * checked and recorded, and the retry is a resend from the store. */
static void test_forward_sen(void **state) {
  fx *f = *state;
  f->cfg.forward = true;
  reopen(f, f->ca_a);
  fwd_req r;
  fwd_req_init(f, &r, EST_FN_SEN, PKI_CLIENT_LDEVID, NULL);
  enroll_job *j = fwd_decide(f, &r);

  enroll_forward fw;
  memset(&fw, 0xa5, sizeof fw);
  enroll_job_forward(j, &fw);
  assert_int_equal(fw.fn, EST_FN_SEN);
  assert_int_equal(fw.csr_len, r.d.size);
  assert_memory_equal(fw.csr, r.d.data, r.d.size);
  assert_ptr_not_equal(fw.csr, r.d.data); /* the job's own copy */
  assert_int_equal(fw.chain_n, 2);
  for (size_t i = 0; i < 2; i++) {
    assert_int_equal(fw.chain_len[i], r.chain_len[i]);
    assert_memory_equal(fw.chain[i], r.chain[i], r.chain_len[i]);
    assert_ptr_not_equal(fw.chain[i], r.chain[i]);
  }
  for (size_t i = 2; i < ENROLL_CHAIN_MAX; i++)
    assert_null(fw.chain[i]);
  assert_string_equal(fw.client, "CN=dev1");

  pki_issued is;
  size_t cert_len = 0;
  uint8_t *cert = upstream_cert(f->ca_a, &r.d, &cert_len, &is);
  uint8_t *want = dup_bytes(cert, cert_len);
  enroll_job_upstream_issued(j, cert, cert_len, NULL, 0); /* takes cert */
  enroll_result res;
  enroll_job_finish(f->e, j, &res);
  assert_int_equal(res.rc, EST_OK);
  assert_non_null(res.body);
  gnutls_x509_crt_t c = body_cert(&res, false);
  gnutls_datum_t got;
  assert_int_equal(gnutls_x509_crt_export2(c, GNUTLS_X509_FMT_DER, &got), 0);
  assert_int_equal(got.size, cert_len);
  assert_memory_equal(got.data, want, cert_len);
  gnutls_free(got.data);
  gnutls_x509_crt_deinit(c);
  uint8_t *first = dup_bytes(res.body, res.body_len);
  size_t first_len = res.body_len;
  enroll_result_clear(&res);

  /* Recorded as issued, with the certificate's own serial and dates. */
  char serial[PKI_SERIAL_HEX_MAX];
  assert_int_equal(pki_cert_serial_hex(want, cert_len, serial, sizeof serial), EST_OK);
  store_cert row;
  assert_int_equal(store_cert_get_serial(f->op, serial, &row), EST_OK);
  assert_int_equal(row.der_len, cert_len);
  assert_memory_equal(row.der, want, cert_len);
  assert_int_equal(row.not_before, is.not_before);
  assert_int_equal(row.not_after, is.not_after);
  assert_string_equal(row.subject, "CN=dev1");
  assert_true(row.request_id > 0);
  store_request rq;
  assert_int_equal(store_request_get(f->op, row.request_id, &rq), EST_OK);
  assert_int_equal(rq.state, STORE_REQ_ISSUED);
  assert_int_equal(rq.cert_id, row.id);
  store_request_clear(&rq);
  store_cert_clear(&row);
  assert_int_equal(sql_int(f, "SELECT count(*) FROM requests WHERE state = 'issued'"), 1);
  assert_int_equal(log_count(&f->host, "by the upstream CA"), 1);

  /* The device asks again: answered from the store, nothing upstream. */
  r.in.now = (long long)time(NULL);
  assert_null(enroll_decide(f->e, &r.in, &res));
  assert_int_equal(res.rc, EST_OK);
  assert_int_equal(res.body_len, first_len);
  assert_memory_equal(res.body, first, first_len);
  enroll_result_clear(&res);
  assert_int_equal(sql_int(f, "SELECT count(*) FROM certificates"), 1);
  assert_int_equal(log_count(&f->host, "sent again"), 1);
  free(first);
  free(want);
  gnutls_free(r.d.data);
}

/* The chain handed upstream: none, and at most ENROLL_CHAIN_MAX; none at
 * all when the CA is ours (not forward). */
static void test_forward_chain(void **state) {
  fx *f = *state;
  f->cfg.forward = true;
  reopen(f, f->ca_a);
  fwd_req r;
  fwd_req_init(f, &r, EST_FN_SREN, PKI_CLIENT_LDEVID, NULL);
  r.in.chain_n = 0;
  enroll_job *j = fwd_decide(f, &r);
  enroll_forward fw;
  enroll_job_forward(j, &fw);
  assert_int_equal(fw.fn, EST_FN_SREN);
  assert_int_equal(fw.chain_n, 0);
  enroll_job_free(j);

  for (size_t i = 0; i <= ENROLL_CHAIN_MAX; i++) {
    r.chain[i] = f->dev_cert;
    r.chain_len[i] = f->dev_cert_len;
  }
  r.in.chain_n = ENROLL_CHAIN_MAX + 1;
  j = fwd_decide(f, &r);
  enroll_job_forward(j, &fw);
  assert_int_equal(fw.chain_n, ENROLL_CHAIN_MAX);
  for (size_t i = 0; i < ENROLL_CHAIN_MAX; i++) {
    assert_int_equal(fw.chain_len[i], f->dev_cert_len);
    assert_memory_equal(fw.chain[i], f->dev_cert, f->dev_cert_len);
  }
  enroll_job_free(j); /* dropped unanswered: frees the copies */

  f->cfg.forward = false;
  reopen(f, f->ca_a);
  enroll_result res;
  j = enroll_decide(f->e, &r.in, &res);
  assert_non_null(j);
  assert_false(enroll_job_slow(j));
  enroll_job_forward(j, &fw);
  assert_int_equal(fw.chain_n, 0);
  enroll_job_free(j);
  gnutls_free(r.d.data);
  expect_nothing_recorded(f);
}

/* What the upstream sent is not what was asked: retry soon, nothing
 * recorded, nothing handed out, and the log says why. */
static void test_forward_wrong_cert(void **state) {
  fx *f = *state;
  f->cfg.forward = true;
  reopen(f, f->ca_a);
  fwd_req r, other;
  fwd_req_init(f, &r, EST_FN_SEN, PKI_CLIENT_LDEVID, NULL);
  fwd_req_init(f, &other, EST_FN_SEN, PKI_CLIENT_LDEVID, f->other_key);
  static const uint8_t junk[] = {0x30, 0x03, 0x02, 0x01, 0x00};
  struct {
    pki_ca *ca;
    const gnutls_datum_t *for_csr; /* NULL: junk */
    const char *why;
  } bad[] = {
    {f->ca_a, &other.d, "not for the CSR's key"},
    {f->ca_b, &r.d, "does not chain"},
    {NULL, NULL, "does not parse"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    enroll_job *j = fwd_decide(f, &r);
    pki_issued is;
    size_t len = sizeof junk;
    uint8_t *cert = bad[i].for_csr ? upstream_cert(bad[i].ca, bad[i].for_csr, &len, &is)
                                   : dup_bytes(junk, sizeof junk);
    enroll_job_upstream_issued(j, cert, len, NULL, 0);
    enroll_result res;
    enroll_job_finish(f->e, j, &res);
    assert_int_equal(res.rc, EST_ERR_UNAVAILABLE);
    assert_int_equal(res.max_age, ENROLL_RETRY_SOON);
    assert_null(res.body);
    assert_non_null(strstr(res.diag, bad[i].why));
    enroll_result_clear(&res);
    expect_nothing_recorded(f);
  }
  assert_int_equal(log_count(&f->host, "issued serial"), 0);

  /* Nothing was left behind: the right answer then goes through. */
  enroll_job *j = fwd_decide(f, &r);
  pki_issued is;
  size_t len = 0;
  uint8_t *cert = upstream_cert(f->ca_a, &r.d, &len, &is);
  enroll_job_upstream_issued(j, cert, len, NULL, 0);
  enroll_result res;
  enroll_job_finish(f->e, j, &res);
  assert_int_equal(res.rc, EST_OK);
  enroll_result_clear(&res);
  assert_int_equal(sql_int(f, "SELECT count(*) FROM certificates"), 1);
  gnutls_free(r.d.data);
  gnutls_free(other.d.data);
}

/* The upstream did not issue: its answer, as it gave it. */
static void test_forward_refused(void **state) {
  fx *f = *state;
  f->cfg.forward = true;
  reopen(f, f->ca_a);
  fwd_req r;
  fwd_req_init(f, &r, EST_FN_SEN, PKI_CLIENT_LDEVID, NULL);
  struct {
    est_err rc;
    unsigned max_age;
    const char *diag;
    est_err want;
    const char *want_diag;
  } cases[] = {
    {EST_ERR_PENDING, 7, "waiting", EST_ERR_PENDING, "waiting"},
    {EST_ERR_FORBIDDEN, 0, "upstream CA: not you", EST_ERR_FORBIDDEN, "upstream CA: not you"},
    {EST_ERR_UNAVAILABLE, 60, NULL, EST_ERR_UNAVAILABLE, ""},
    {EST_ERR_BAD_REQUEST, 0, "upstream CA: bad", EST_ERR_BAD_REQUEST, "upstream CA: bad"},
    /* Never a success without a certificate. */
    {EST_OK, 0, "nothing", EST_ERR_INTERNAL, "nothing"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    enroll_job *j = fwd_decide(f, &r);
    enroll_job_upstream_refused(j, cases[i].rc, cases[i].max_age, cases[i].diag);
    enroll_result res;
    enroll_job_finish(f->e, j, &res);
    assert_int_equal(res.rc, cases[i].want);
    assert_int_equal(res.max_age, cases[i].max_age);
    assert_string_equal(res.diag, cases[i].want_diag);
    assert_null(res.body);
    enroll_result_clear(&res);
    expect_nothing_recorded(f);
  }
  /* A diagnostic longer than the answer's is cut, not overrun. */
  char longd[EST_DIAG_MAX * 2];
  memset(longd, 'x', sizeof longd - 1);
  longd[sizeof longd - 1] = '\0';
  enroll_job *j = fwd_decide(f, &r);
  enroll_job_upstream_refused(j, EST_ERR_FORBIDDEN, 0, longd);
  enroll_result res;
  enroll_job_finish(f->e, j, &res);
  assert_int_equal(res.rc, EST_ERR_FORBIDDEN);
  assert_true(strlen(res.diag) < EST_DIAG_MAX);
  enroll_result_clear(&res);
  expect_nothing_recorded(f);
  gnutls_free(r.d.data);
}

/* A manual policy still waits for the registrar's operator first; the
 * approved request goes upstream and becomes issued. */
static void test_forward_manual(void **state) {
  fx *f = *state;
  f->cfg.forward = true;
  reopen(f, f->ca_a);
  fwd_req r;
  fwd_req_init(f, &r, EST_FN_SEN, PKI_CLIENT_IDEVID, NULL);
  enroll_result res;
  assert_null(enroll_decide(f->e, &r.in, &res));
  assert_int_equal(res.rc, EST_ERR_PENDING);
  int64_t id = pending_id(&res);
  enroll_result_clear(&res);
  assert_int_equal(store_request_decide(f->op, id, true, NULL, "op"), EST_OK);
  enroll_job *j = fwd_decide(f, &r);
  pki_issued is;
  size_t len = 0;
  uint8_t *cert = upstream_cert(f->ca_a, &r.d, &len, &is);
  enroll_job_upstream_issued(j, cert, len, NULL, 0);
  enroll_job_finish(f->e, j, &res);
  assert_int_equal(res.rc, EST_OK);
  enroll_result_clear(&res);
  store_request row;
  assert_int_equal(store_request_get(f->op, id, &row), EST_OK);
  assert_int_equal(row.state, STORE_REQ_ISSUED);
  assert_true(row.cert_id > 0);
  store_request_clear(&row);
  assert_int_equal(sql_int(f, "SELECT count(*) FROM requests"), 1);
  gnutls_free(r.d.data);
}

/* The realistic registrar: its CA is the upstream's cacerts, which signs
 * nothing; a job keeps the CA it started with across enroll_set_ca. */
static void test_forward_registrar_ca(void **state) {
  fx *f = *state;
  const uint8_t *p7 = NULL;
  size_t p7_len = 0;
  pki_ca *reg_a = NULL, *reg_b = NULL;
  char diag[256];
  pki_ca_certs_p7(f->ca_a, &p7, &p7_len);
  assert_int_equal(pki_ca_from_p7(p7, p7_len, &reg_a, diag, sizeof diag), EST_OK);
  pki_ca_certs_p7(f->ca_b, &p7, &p7_len);
  assert_int_equal(pki_ca_from_p7(p7, p7_len, &reg_b, diag, sizeof diag), EST_OK);
  f->cfg.forward = true;
  reopen(f, reg_a);
  fwd_req r;
  fwd_req_init(f, &r, EST_FN_SEN, PKI_CLIENT_LDEVID, NULL);

  enroll_job *j = fwd_decide(f, &r);
  /* Run by mistake, the job cannot sign (docs/decisions.md §19). */
  enroll_job_run(j);
  enroll_result res;
  enroll_job_finish(f->e, j, &res);
  assert_int_equal(res.rc, EST_ERR_CONFIG);
  assert_null(res.body);
  enroll_result_clear(&res);
  expect_nothing_recorded(f);

  j = fwd_decide(f, &r);
  enroll_set_ca(f->e, reg_b); /* refreshed while the job is upstream */
  enroll_set_ca(f->e, NULL);  /* ignored */
  enroll_set_ca(NULL, reg_b);
  pki_issued is;
  size_t len = 0;
  uint8_t *cert = upstream_cert(f->ca_a, &r.d, &len, &is);
  uint8_t *want = dup_bytes(cert, len);
  enroll_job_upstream_issued(j, cert, len, NULL, 0);
  enroll_job_finish(f->e, j, &res);
  assert_int_equal(res.rc, EST_OK);
  enroll_result_clear(&res);
  assert_int_equal(sql_int(f, "SELECT count(*) FROM certificates"), 1);

  /* Under the new CA the stored certificate is another CA's: the retry
   * goes upstream again, and an answer from the old CA is refused. */
  j = fwd_decide(f, &r);
  assert_int_equal(log_count(&f->host, "issued by another CA"), 1);
  enroll_job_upstream_issued(j, dup_bytes(want, len), len, NULL, 0);
  enroll_job_finish(f->e, j, &res);
  assert_int_equal(res.rc, EST_ERR_UNAVAILABLE);
  assert_non_null(strstr(res.diag, "does not chain"));
  enroll_result_clear(&res);
  j = fwd_decide(f, &r);
  cert = upstream_cert(f->ca_b, &r.d, &len, &is);
  enroll_job_upstream_issued(j, cert, len, NULL, 0);
  enroll_job_finish(f->e, j, &res);
  assert_int_equal(res.rc, EST_OK);
  enroll_result_clear(&res);
  assert_int_equal(sql_int(f, "SELECT count(*) FROM certificates"), 2);
  free(want);
  gnutls_free(r.d.data);
  reopen(f, f->ca_a); /* before the CAs it borrows go */
  pki_ca_free(reg_a);
  pki_ca_free(reg_b);
}

/* skg and skc through the upstream: its key and certificate, checked
 * against each other, in the device's multipart answer. */
static void test_forward_keygen(void **state) {
  fx *f = *state;
  f->cfg.forward = true;
  reopen(f, f->ca_a);
  for (int skc = 0; skc <= 1; skc++) {
    fwd_req r;
    fwd_req_init(f, &r, skc ? EST_FN_SKC : EST_FN_SKG, PKI_CLIENT_LDEVID, NULL);
    enroll_job *j = fwd_decide(f, &r);
    enroll_forward fw;
    enroll_job_forward(j, &fw);
    assert_int_equal(fw.fn, skc ? EST_FN_SKC : EST_FN_SKG);
    assert_int_equal(fw.chain_n, 2);

    pki_csr *c = NULL;
    char diag[256];
    assert_int_equal(pki_csr_parse(r.d.data, r.d.size, &c, diag, sizeof diag), EST_OK);
    uint8_t *p8 = NULL;
    size_t p8_len = 0;
    pki_issued is;
    assert_int_equal(pki_keygen_issue(f->ca_a, c, PKI_KEY_EC_P256, &p8, &p8_len, &is), EST_OK);
    uint8_t *want_key = dup_bytes(p8, p8_len), *want_cert = dup_bytes(is.der, is.der_len);
    size_t cert_len = is.der_len;
    enroll_job_upstream_issued(j, is.der, is.der_len, p8, p8_len);
    enroll_result res;
    enroll_job_finish(f->e, j, &res);
    assert_int_equal(res.rc, EST_OK);
    mp_part parts[2];
    assert_int_equal(mp_decode_pair(res.body, res.body_len, parts), EST_OK);
    assert_int_equal(parts[0].cf, CF_PKCS8);
    assert_int_equal(parts[0].len, p8_len);
    assert_memory_equal(parts[0].data, want_key, p8_len);
    assert_int_equal(parts[1].cf, skc ? CF_PKIX_CERT : CF_PKCS7_CERTS_ONLY);
    enroll_result one = {.body = (uint8_t *)(uintptr_t)parts[1].data, .body_len = parts[1].len};
    gnutls_x509_crt_t crt = body_cert(&one, skc);
    gnutls_datum_t got;
    assert_int_equal(gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_DER, &got), 0);
    assert_int_equal(got.size, cert_len);
    assert_memory_equal(got.data, want_cert, cert_len);
    gnutls_free(got.data);
    gnutls_x509_crt_deinit(crt);
    enroll_result_clear(&res);

    /* A key that is not the certificate's: refused, the key wiped. */
    j = fwd_decide(f, &r);
    gnutls_datum_t k;
    assert_int_equal(gnutls_x509_privkey_export2_pkcs8(f->other_key, GNUTLS_X509_FMT_DER, NULL,
                                                       GNUTLS_PKCS_PLAIN, &k),
                     0);
    enroll_job_upstream_issued(j, dup_bytes(want_cert, cert_len), cert_len,
                               dup_bytes(k.data, k.size), k.size);
    gnutls_free(k.data);
    enroll_job_finish(f->e, j, &res);
    assert_int_equal(res.rc, EST_ERR_UNAVAILABLE);
    assert_int_equal(res.max_age, ENROLL_RETRY_SOON);
    assert_non_null(strstr(res.diag, "not for the key it sent"));
    assert_null(res.body);
    enroll_result_clear(&res);
    /* No key at all. */
    j = fwd_decide(f, &r);
    enroll_job_upstream_issued(j, dup_bytes(want_cert, cert_len), cert_len, NULL, 0);
    enroll_job_finish(f->e, j, &res);
    assert_int_equal(res.rc, EST_ERR_UNAVAILABLE);
    enroll_result_clear(&res);

    pki_csr_free(c);
    free(want_key);
    free(want_cert);
    gnutls_free(r.d.data);
  }
  assert_int_equal(sql_int(f, "SELECT count(*) FROM certificates"), 2);
  assert_int_equal(log_count(&f->host, "by the upstream CA"), 2);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void) {
  const struct CMUnitTest tests[] = {
    T(test_new_auto),        T(test_manual_lifecycle), T(test_rejected),
    T(test_expired),         T(test_ca_changed),       T(test_store_busy),
    T(test_store_failing),   T(test_keygen),           T(test_csr_checks),
    T(test_max_pending),     T(test_preauthorised),    T(test_no_store),
    T(test_job_drop_and_ca_failure), T(test_policy_parse_and_retry), T(test_open_errors),
    T(test_anonymous),       T(test_ra_no_device),
    T(test_forward_sen),     T(test_forward_chain),    T(test_forward_wrong_cert),
    T(test_forward_refused), T(test_forward_manual),   T(test_forward_registrar_ca),
    T(test_forward_keygen),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
