/* id-data in a certs-only SignedData (p7asn.h, RFC 5652 §5.2). */
#include "p7asn.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <libtasn1.h>

extern const asn1_static_node cms_certs_asn_tab[];

#define OID_SIGNED_DATA "1.2.840.113549.1.7.2"
#define OID_DATA "1.2.840.113549.1.7.1"

est_err p7asn_certs_only(const uint8_t *der, size_t len, uint8_t **out, size_t *out_len) {
  est_err rc = EST_OK;
  asn1_node defs = NULL, ci = NULL;
  char err[ASN1_MAX_ERROR_DESCRIPTION_SIZE];
  char oid[64];
  int n;
  uint8_t *buf = NULL;
  if (!der || len == 0 || len > (size_t)INT32_MAX || !out || !out_len)
    return EST_ERR_INVALID;
  *out = NULL;
  *out_len = 0;
  if (asn1_array2tree(cms_certs_asn_tab, &defs, err) != ASN1_SUCCESS ||
      asn1_create_element(defs, "CMS-CERTS.ContentInfo", &ci) != ASN1_SUCCESS) {
    rc = EST_ERR_INTERNAL;
    goto out;
  }
  if (asn1_der_decoding(&ci, der, (int)len, err) != ASN1_SUCCESS) {
    rc = EST_ERR_MALFORMED;
    goto out;
  }
  n = sizeof oid;
  if (asn1_read_value(ci, "contentType", oid, &n) != ASN1_SUCCESS ||
      strcmp(oid, OID_SIGNED_DATA) != 0) {
    rc = EST_ERR_MALFORMED;
    goto out;
  }
  /* Only for no signers: with one, the type is what was signed. */
  n = 0;
  if (asn1_number_of_elements(ci, "content.signerInfos", &n) != ASN1_SUCCESS)
    n = 0;
  if (n != 0) {
    rc = EST_ERR_MALFORMED;
    goto out;
  }
  if (asn1_write_value(ci, "content.encapContentInfo.eContentType", OID_DATA, 1) !=
      ASN1_SUCCESS) {
    rc = EST_ERR_INTERNAL;
    goto out;
  }
  /* Absent already when decoding dropped it (ASN1_ELEMENT_NOT_FOUND). */
  int w = asn1_write_value(ci, "content.encapContentInfo.eContent", NULL, 0);
  if (w != ASN1_SUCCESS && w != ASN1_ELEMENT_NOT_FOUND) {
    rc = EST_ERR_INTERNAL;
    goto out;
  }
  n = 0;
  if (asn1_der_coding(ci, "", NULL, &n, err) != ASN1_MEM_ERROR || n <= 0) {
    rc = EST_ERR_INTERNAL;
    goto out;
  }
  buf = malloc((size_t)n);
  if (!buf) {
    rc = EST_ERR_NOMEM;
    goto out;
  }
  if (asn1_der_coding(ci, "", buf, &n, err) != ASN1_SUCCESS) {
    rc = EST_ERR_INTERNAL;
    goto out;
  }
  *out = buf;
  *out_len = (size_t)n;
  buf = NULL;
out:
  free(buf);
  asn1_delete_structure(&ci);
  asn1_delete_structure(&defs);
  return rc;
}
