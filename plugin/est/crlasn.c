/* Reason codes on CRL entries, with libtasn1 (crlasn.h). */
#include "crlasn.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libtasn1.h>

extern const asn1_static_node pkix_crl_asn_tab[];

#define OID_REASON_CODE "2.5.29.21" /* RFC 5280 §5.3.1 */
#define OID_TEXT_MAX 128
#define SERIAL_MAX 21 /* 20 octets and a sign octet (RFC 5280 §4.1.2.2) */
#define NAME_MAX_LEN 96

static bool code_allowed(unsigned c) {
  /* 7 is unused; removeFromCRL (8) is for delta CRLs only (RFC 5280
   * §5.3.1), and this CA publishes full CRLs. */
  return c >= 1 && c <= 10 && c != 7 && c != 8;
}

static const crlasn_reason *reason_of(const crlasn_reason *r, size_t n, const uint8_t *sn,
                                      size_t len) {
  for (size_t i = 0; i < n; i++)
    if (r[i].serial_len == len && memcmp(r[i].serial, sn, len) == 0)
      return &r[i];
  return NULL;
}

/* DER of @p name inside @p node into a malloc()ed buffer. */
static est_err encode(asn1_node node, const char *name, uint8_t **out, size_t *out_len) {
  char err[ASN1_MAX_ERROR_DESCRIPTION_SIZE];
  int len = 0;
  *out = NULL;
  if (asn1_der_coding(node, name, NULL, &len, err) != ASN1_MEM_ERROR || len <= 0)
    return EST_ERR_PKI;
  uint8_t *buf = malloc((size_t)len);
  if (!buf)
    return EST_ERR_NOMEM;
  if (asn1_der_coding(node, name, buf, &len, err) != ASN1_SUCCESS) {
    free(buf);
    return EST_ERR_PKI;
  }
  *out = buf;
  *out_len = (size_t)len;
  return EST_OK;
}

/* Append a copy of entry @p i, with its reason from @p r if it has one. */
static est_err copy_entry(asn1_node list, unsigned i, const crlasn_reason *r, size_t n) {
  char src[NAME_MAX_LEN], name[2 * NAME_MAX_LEN], choice[32], when[32];
  uint8_t sn[SERIAL_MAX];
  int len = sizeof sn, clen = sizeof choice, wlen = sizeof when;
  const char *dst = "tbsCertList.revokedCertificates.?LAST";
  snprintf(src, sizeof src, "tbsCertList.revokedCertificates.?%u", i);
  snprintf(name, sizeof name, "%s.userCertificate", src);
  if (asn1_read_value(list, name, sn, &len) != ASN1_SUCCESS)
    return EST_ERR_MALFORMED;
  /* Time ::= CHOICE: the alternative's name, then its value. */
  snprintf(name, sizeof name, "%s.revocationDate", src);
  if (asn1_read_value(list, name, choice, &clen) != ASN1_SUCCESS)
    return EST_ERR_MALFORMED;
  snprintf(name, sizeof name, "%s.revocationDate.%s", src, choice);
  if (asn1_read_value(list, name, when, &wlen) != ASN1_SUCCESS)
    return EST_ERR_MALFORMED;
  if (asn1_write_value(list, "tbsCertList.revokedCertificates", "NEW", 1) != ASN1_SUCCESS)
    return EST_ERR_PKI;
  int ok = ASN1_SUCCESS;
#define PUT(field, val, vlen)                                                  \
  do {                                                                         \
    snprintf(name, sizeof name, "%s.%s", dst, field);                          \
    if (ok == ASN1_SUCCESS)                                                    \
      ok = asn1_write_value(list, name, val, vlen);                            \
  } while (0)
  PUT("userCertificate", sn, len);
  PUT("revocationDate", choice, 1);
  char field[48];
  snprintf(field, sizeof field, "revocationDate.%s", choice);
  PUT(field, when, wlen);
  const crlasn_reason *want = reason_of(r, n, sn, (size_t)len);
  if (want) {
    /* CRLReason ::= ENUMERATED: tag 10, one octet of value. */
    const uint8_t enc[3] = {0x0a, 0x01, (uint8_t)want->code};
    PUT("crlEntryExtensions", "NEW", 1);
    PUT("crlEntryExtensions.?LAST.extnID", OID_REASON_CODE, 1);
    /* Not critical: DER leaves the DEFAULT (FALSE) out. */
    PUT("crlEntryExtensions.?LAST.critical", "FALSE", 1);
    PUT("crlEntryExtensions.?LAST.extnValue", enc, (int)sizeof enc);
  } else {
    PUT("crlEntryExtensions", NULL, 0); /* absent */
  }
#undef PUT
  return ok == ASN1_SUCCESS ? EST_OK : EST_ERR_PKI;
}

est_err crlasn_add_reasons(const uint8_t *crl, size_t crl_len, const crlasn_reason *r,
                           size_t n, crlasn_sign_fn sign, void *ctx, uint8_t **out,
                           size_t *out_len) {
  est_err rc = EST_OK;
  asn1_node defs = NULL, list = NULL;
  char err[ASN1_MAX_ERROR_DESCRIPTION_SIZE];
  uint8_t *tbs = NULL, *sig = NULL;
  size_t tbs_len = 0, sig_len = 0;
  *out = NULL;
  *out_len = 0;
  if (!crl || crl_len == 0 || crl_len > (size_t)INT32_MAX || (n && !r) || !sign)
    return EST_ERR_INVALID;
  for (size_t i = 0; i < n; i++)
    if (!code_allowed(r[i].code) || r[i].serial_len == 0 || r[i].serial_len > SERIAL_MAX)
      return EST_ERR_INVALID;
  if (asn1_array2tree(pkix_crl_asn_tab, &defs, err) != ASN1_SUCCESS ||
      asn1_create_element(defs, "PKIX-CRL.CertificateList", &list) != ASN1_SUCCESS) {
    rc = EST_ERR_INTERNAL;
    goto out;
  }
  if (asn1_der_decoding(&list, crl, (int)crl_len, err) != ASN1_SUCCESS) {
    rc = EST_ERR_MALFORMED;
    goto out;
  }
  /* libtasn1 drops absent OPTIONAL parts when it decodes, so an entry
   * cannot grow extensions in place: each entry is appended anew, with
   * its serial, date and reason, and the originals are removed. */
  unsigned count = 0;
  for (unsigned i = 1;; i++) {
    char name[NAME_MAX_LEN];
    uint8_t sn[SERIAL_MAX];
    int len = sizeof sn;
    snprintf(name, sizeof name, "tbsCertList.revokedCertificates.?%u.userCertificate", i);
    if (asn1_read_value(list, name, sn, &len) == ASN1_ELEMENT_NOT_FOUND)
      break;
    count = i;
  }
  for (unsigned i = 1; i <= count; i++) {
    rc = copy_entry(list, i, r, n);
    if (rc != EST_OK)
      goto out;
  }
  for (unsigned i = 1; i <= count; i++) {
    char name[NAME_MAX_LEN];
    snprintf(name, sizeof name, "tbsCertList.revokedCertificates.?%u", i);
    if (asn1_delete_element(list, name) != ASN1_SUCCESS) {
      rc = EST_ERR_PKI;
      goto out;
    }
  }
  char oid[OID_TEXT_MAX];
  int olen = sizeof oid;
  if (asn1_read_value(list, "signatureAlgorithm.algorithm", oid, &olen) != ASN1_SUCCESS) {
    rc = EST_ERR_MALFORMED;
    goto out;
  }
  rc = encode(list, "tbsCertList", &tbs, &tbs_len);
  if (rc == EST_OK)
    rc = sign(ctx, oid, tbs, tbs_len, &sig, &sig_len);
  if (rc != EST_OK)
    goto out;
  if (sig_len > (size_t)INT32_MAX / 8 ||
      asn1_write_value(list, "signature", sig, (int)(sig_len * 8)) != ASN1_SUCCESS) {
    rc = EST_ERR_PKI;
    goto out;
  }
  rc = encode(list, "", out, out_len);
out:
  free(tbs);
  free(sig);
  if (list)
    asn1_delete_structure(&list);
  if (defs)
    asn1_delete_structure(&defs);
  return rc;
}
