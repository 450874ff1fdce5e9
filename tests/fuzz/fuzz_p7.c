/* Fuzz the PKCS#7 readers of a registrar's upstream answers
 * (docs/decisions.md §18, §19): the cacerts that become a CA that signs
 * nothing, the one end-entity certificate of an enroll answer, and the
 * certs-only rewrite. Whatever comes in, nothing crashes or leaks, and
 * what is accepted reads back the same. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "plugin/est/p7asn.h"
#include "plugin/est/pki.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char diag[256];
  pki_ca *ca = NULL;
  if (pki_ca_from_p7(data, size, &ca, diag, sizeof diag) == EST_OK) {
    const uint8_t *p7;
    size_t n;
    pki_ca_certs_p7(ca, &p7, &n);
    /* crts answers with the upstream's own bytes. */
    if (n != size || memcmp(p7, data, size) != 0 || pki_ca_can_sign(ca) ||
        pki_ca_cert_count(ca) == 0)
      abort();
    pki_ca_free(ca);
  }
  uint8_t *cert = NULL;
  size_t cert_len = 0;
  if (pki_p7_end_entity(data, size, &cert, &cert_len) == EST_OK) {
    pki_issued is;
    /* A certificate GnuTLS parsed once parses again. */
    if (cert_len == 0 || pki_issued_from_der(cert, cert_len, &is) != EST_OK)
      abort();
    pki_issued_clear(&is);
    free(cert);
  }
  uint8_t *out = NULL;
  size_t out_len = 0;
  if (p7asn_certs_only(data, size, &out, &out_len) == EST_OK) {
    uint8_t *again = NULL;
    size_t again_len = 0;
    /* The rewrite is stable: a second pass gives the same bytes. */
    if (p7asn_certs_only(out, out_len, &again, &again_len) != EST_OK ||
        again_len != out_len || memcmp(again, out, out_len) != 0)
      abort();
    free(again);
    free(out);
  }
  return 0;
}
