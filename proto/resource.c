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
  /* What each function answers without Accept, and the one other format
   * it can answer in (0: none). */
  static const struct {
    unsigned dflt, alt;
  } formats[EST_FN__MAX] = {
      /* ACC-6 / docs/decisions.md §3: 287 only for a one-certificate bag. */
      [EST_FN_CRTS] = {CF_PKCS7_CERTS_ONLY, CF_PKIX_CERT},
      /* ACC-2: no Accept means 281; RES-6: 287 is optional and we do it. */
      [EST_FN_SEN] = {CF_PKCS7_CERTS_ONLY, CF_PKIX_CERT},
      [EST_FN_SREN] = {CF_PKCS7_CERTS_ONLY, CF_PKIX_CERT},
      [EST_FN_ATT] = {CF_CSRATTRS, 0},
      /* ACC-5: keygen answers are always multipart-core. */
      [EST_FN_SKG] = {CF_MULTIPART_CORE, 0},
      [EST_FN_SKC] = {CF_MULTIPART_CORE, 0},
  };
  if ((unsigned)fn >= EST_FN__MAX)
    return EST_ERR_INVALID;
  if (accept < 0 || (unsigned)accept == formats[fn].dflt) {
    *out = formats[fn].dflt;
    return EST_OK;
  }
  if (formats[fn].alt && (unsigned)accept == formats[fn].alt &&
      (fn != EST_FN_CRTS || ca_count == 1)) {
    *out = formats[fn].alt;
    return EST_OK;
  }
  return EST_ERR_NOT_ACCEPTABLE;
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
