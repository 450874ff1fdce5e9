/* EST-coaps resources and Content-Formats (RFC 9148 §4.1-§4.5,
 * docs/decisions.md §2-§3). */
#include "resource.h"

#include <ctype.h>
#include <string.h>

/* RFC 9148 §4.1 and §8.2: rt values and the ct values a client may ask
 * for; multi-valued ct is a quoted space-separated list (RFC 6690). */
static const est_fn_info fn_table[EST_FN__MAX] = {
  [EST_FN_CRTS] = {"crts", "\"ace.est.crts\"", "\"281 287\"", false},
  [EST_FN_SEN] = {"sen", "\"ace.est.sen\"", "\"281 287\"", true},
  [EST_FN_SREN] = {"sren", "\"ace.est.sren\"", "\"281 287\"", true},
  [EST_FN_ATT] = {"att", "\"ace.est.att\"", "285", false},
  [EST_FN_SKG] = {"skg", "\"ace.est.skg\"", "62", true},
  [EST_FN_SKC] = {"skc", "\"ace.est.skc\"", "62", true},
};

const est_fn_info *proto_fn_info(est_fn fn) {
  if ((int)fn < 0 || fn >= EST_FN__MAX)
    return NULL;
  return &fn_table[fn];
}

est_err proto_check_cf(est_fn fn, int cf) {
  const est_fn_info *info = proto_fn_info(fn);
  if (!info)
    return EST_ERR_INVALID;
  /* RES-4: the (path, Content-Format) pair must be one EST allows; the
   * POST functions all carry a PKCS#10 CSR (RES-5). */
  if (info->post)
    return cf == CF_PKCS10 ? EST_OK : EST_ERR_CONTENT_FORMAT;
  return cf < 0 ? EST_OK : EST_ERR_CONTENT_FORMAT;
}

est_err proto_negotiate(est_fn fn, int accept, size_t ca_count,
                        unsigned *out) {
  est_err rc = EST_ERR_NOT_ACCEPTABLE;
  switch (fn) {
  case EST_FN_CRTS:
    /* ACC-6 / docs/decisions.md §3: 287 carries one certificate, so only a
     * single-certificate CA bag can be sent that way. */
    if (accept < 0 || accept == CF_PKCS7_CERTS_ONLY) {
      *out = CF_PKCS7_CERTS_ONLY;
      rc = EST_OK;
    } else if (accept == CF_PKIX_CERT && ca_count == 1) {
      *out = CF_PKIX_CERT;
      rc = EST_OK;
    }
    break;
  case EST_FN_SEN:
  case EST_FN_SREN:
    /* ACC-2: no Accept means 281; RES-6: 287 is optional and we do it. */
    if (accept < 0 || accept == CF_PKCS7_CERTS_ONLY) {
      *out = CF_PKCS7_CERTS_ONLY;
      rc = EST_OK;
    } else if (accept == CF_PKIX_CERT) {
      *out = CF_PKIX_CERT;
      rc = EST_OK;
    }
    break;
  case EST_FN_ATT:
    if (accept < 0 || accept == CF_CSRATTRS) {
      *out = CF_CSRATTRS;
      rc = EST_OK;
    }
    break;
  case EST_FN_SKG:
  case EST_FN_SKC:
    /* ACC-5: keygen answers are always multipart-core. */
    if (accept < 0 || accept == CF_MULTIPART_CORE) {
      *out = CF_MULTIPART_CORE;
      rc = EST_OK;
    }
    break;
  case EST_FN__MAX:
    rc = EST_ERR_INVALID;
    break;
  }
  return rc;
}

est_err proto_label_check(const char *label) {
  size_t n = label ? strlen(label) : 0;
  if (n == 0 || n > PROTO_LABEL_MAX)
    return EST_ERR_INVALID;
  /* An unreserved path segment (RFC 3986 §2.3). */
  for (size_t i = 0; i < n; i++)
    if (!isalnum((unsigned char)label[i]) && !strchr("._~-", label[i]))
      return EST_ERR_INVALID;
  /* RFC 7030 §3.2.2: a label must not equal an operation name. */
  for (int fn = 0; fn < EST_FN__MAX; fn++)
    if (strcmp(label, fn_table[fn].name) == 0)
      return EST_ERR_EXISTS;
  return EST_OK;
}
