/* mp_decode_pair() on arbitrary bytes; whatever decodes must survive
 * re-encoding (RFC 8710 multipart-core, RFC 9148 §4.8). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/multipart.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int same_parts(const mp_part *a, const mp_part *b) {
  for (int i = 0; i < 2; i++) {
    if (a[i].cf != b[i].cf || a[i].len != b[i].len)
      return 0;
    if (a[i].len && memcmp(a[i].data, b[i].data, a[i].len) != 0)
      return 0;
  }
  return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  mp_part p[2], q[2];
  uint8_t *enc = NULL;
  size_t enc_len = 0;

  est_err rc = mp_decode_pair(data, size, p);
  if (rc != EST_OK) {
    if (rc != EST_ERR_MALFORMED && rc != EST_ERR_TOO_LARGE)
      abort();
    return 0;
  }
  /* parts lie inside the input */
  for (int i = 0; i < 2; i++) {
    if (p[i].len > size || (p[i].len && (p[i].data < data ||
                                         p[i].data + p[i].len > data + size)))
      abort();
  }
  if (mp_encode(p, 2, &enc, &enc_len) != EST_OK)
    abort();
  /* The decoder takes any head width (RFC 8949 §3); the encoder writes the
   * preferred one (§4.2.1). So the encoding is never longer than the input,
   * and byte-identical when the input was in preferred form, which is
   * exactly when the lengths agree. */
  if (enc_len > size)
    abort();
  if (enc_len == size && memcmp(enc, data, size) != 0)
    abort();
  /* Decoding the re-encoding gives the same parts, and encoding is then a
   * fixed point. */
  if (mp_decode_pair(enc, enc_len, q) != EST_OK || !same_parts(p, q))
    abort();
  uint8_t *enc2 = NULL;
  size_t enc2_len = 0;
  if (mp_encode(q, 2, &enc2, &enc2_len) != EST_OK || enc2_len != enc_len ||
      memcmp(enc, enc2, enc_len) != 0)
    abort();
  free(enc2);
  free(enc);
  return 0;
}
