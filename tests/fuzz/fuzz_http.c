/* The RFC 7030 request path, media type and header-list parsers
 * (proto/http.h) on arbitrary strings, with the properties the HTTPS edge
 * relies on: a route's operation maps back to the same path, a label
 * points inside the path, items point inside the value and carry no
 * blanks or commas at their ends.
 *
 * And the multipart/mixed reader of serverkeygen answers: the first line
 * of the input is a Content-Type value for proto_http_boundary(), the
 * rest a body (not NUL-terminated) for proto_http_multipart(), split at
 * that boundary or, when the line has none, at "b". A boundary found is
 * 1..70 bchars and reads back quoted; parts point inside the body, in
 * order; the count is exact (one slot fewer is TOO_LARGE); and the parts
 * written out again in the plainest form split into the same parts. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proto/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Room for a real serverkeygen answer: a base64 key and certificate. */
#define FUZZ_INPUT_MAX (16u * 1024u)
#define FUZZ_PARTS 8u

static bool inside(const char *p, size_t n, const char *buf, size_t len) {
  return n == 0 || (p >= buf && n <= len && p <= buf + len - n);
}

/* The parts @p p[@p n] as "--b" CRLF ["Content-Type:" type CRLF] CRLF body
 * CRLF ... "--b--" CRLF, into a new buffer of *len bytes. */
static char *rebuild(const proto_http_part *p, size_t n, const char *b, size_t *len) {
  size_t blen = strlen(b), cap = blen + 8;
  for (size_t i = 0; i < n; i++)
    cap += blen + 4 + 15 + p[i].type_len + 2 + p[i].body_len + 2;
  char *out = malloc(cap), *w = out;
  if (!out)
    return NULL;
  for (size_t i = 0; i < n; i++) {
    w += sprintf(w, "--%s\r\n", b);
    if (p[i].type_len) { /* memcpy: a type may hold a NUL */
      memcpy(w, "Content-Type:", 13);
      memcpy(w + 13, p[i].type, p[i].type_len);
      memcpy(w + 13 + p[i].type_len, "\r\n", 2);
      w += 13 + p[i].type_len + 2;
    }
    memcpy(w, "\r\n", 2);
    w += 2;
    memcpy(w, p[i].body, p[i].body_len);
    w += p[i].body_len;
    memcpy(w, "\r\n", 2);
    w += 2;
  }
  w += sprintf(w, "--%s--\r\n", b);
  *len = (size_t)(w - out);
  return out;
}

static void multipart(const uint8_t *data, size_t size) {
  const uint8_t *nl = memchr(data, '\n', size);
  size_t ctlen = nl ? (size_t)(nl - data) : size, blen = nl ? size - ctlen - 1 : 0;
  char *ct = malloc(ctlen + 1), *body = malloc(blen ? blen : 1), *again = NULL;
  char b[PROTO_HTTP_BOUNDARY_MAX + 1], q[PROTO_HTTP_BOUNDARY_MAX + 40];
  if (!ct || !body)
    goto out;
  memcpy(ct, data, ctlen);
  ct[ctlen] = '\0';
  if (blen)
    memcpy(body, nl + 1, blen); /* an exact-size copy, for ASan */

  est_err rc = proto_http_boundary(ct, b, sizeof b);
  if (rc == EST_OK) {
    size_t n = strlen(b);
    if (n == 0 || n > PROTO_HTTP_BOUNDARY_MAX || b[n - 1] == ' ' ||
        strspn(b, "0123456789abcdefghijklmnopqrstuvwxyz"
                  "ABCDEFGHIJKLMNOPQRSTUVWXYZ'()+_,-./:=? ") != n || /* bchars */
        !proto_http_type_is(ct, "multipart/mixed"))
      abort();
    char b2[PROTO_HTTP_BOUNDARY_MAX + 1];
    snprintf(q, sizeof q, "multipart/mixed; boundary=\"%s\"", b);
    if (proto_http_boundary(q, b2, sizeof b2) != EST_OK || strcmp(b, b2) != 0)
      abort();
  } else if (rc != EST_ERR_MALFORMED || b[0] != '\0') {
    abort();
  } else {
    strcpy(b, "b");
  }

  proto_http_part p[FUZZ_PARTS], p2[FUZZ_PARTS];
  size_t n = 99, n2 = 99;
  rc = proto_http_multipart(body, blen, b, p, FUZZ_PARTS, &n);
  if (rc != EST_OK) {
    if ((rc != EST_ERR_MALFORMED && rc != EST_ERR_TOO_LARGE) || n != 0)
      abort();
    goto out;
  }
  if (n == 0 || n > FUZZ_PARTS)
    abort();
  const char *prev = body;
  for (size_t i = 0; i < n; i++) {
    if (!inside(p[i].type, p[i].type_len, body, blen) ||
        !inside(p[i].body, p[i].body_len, body, blen) || (p[i].body_len && p[i].body < prev))
      abort();
    if (p[i].type_len &&
        (p[i].type < prev || p[i].type + p[i].type_len > p[i].body ||
         memchr(p[i].type, '\n', p[i].type_len) || p[i].type[0] == ' ' || p[i].type[0] == '\t' ||
         p[i].type[p[i].type_len - 1] == ' ' || p[i].type[p[i].type_len - 1] == '\t'))
      abort();
    if (p[i].body_len)
      prev = p[i].body + p[i].body_len;
  }
  if (proto_http_multipart(body, blen, b, p2, n, &n2) != EST_OK || n2 != n ||
      proto_http_multipart(body, blen, b, p2, n - 1, &n2) != EST_ERR_TOO_LARGE || n2 != 0)
    abort();

  size_t alen;
  again = rebuild(p, n, b, &alen);
  if (!again)
    goto out;
  if (proto_http_multipart(again, alen, b, p2, FUZZ_PARTS, &n2) != EST_OK || n2 != n)
    abort();
  for (size_t i = 0; i < n; i++)
    if (p2[i].type_len != p[i].type_len || p2[i].body_len != p[i].body_len ||
        (p[i].type_len && memcmp(p2[i].type, p[i].type, p[i].type_len) != 0) ||
        (p[i].body_len && memcmp(p2[i].body, p[i].body, p[i].body_len) != 0))
      abort();
out:
  free(again);
  free(body);
  free(ct);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > FUZZ_INPUT_MAX)
    return 0;
  multipart(data, size);
  char *s = malloc(size + 1);
  if (!s)
    return 0;
  memcpy(s, data, size);
  s[size] = '\0';
  size_t len = strlen(s);

  est_fn fn;
  const char *label;
  size_t llen;
  if (proto_http_route(s, &fn, &label, &llen) == EST_OK) {
    const char *op = proto_http_op(fn);
    char back[PROTO_HTTP_PATH_MAX + 2];
    if (!op || (llen && (label < s || label + llen > s + len)))
      abort();
    int n = llen ? snprintf(back, sizeof back, PROTO_HTTP_PREFIX "%.*s/%s", (int)llen, label, op)
                 : snprintf(back, sizeof back, PROTO_HTTP_PREFIX "%s", op);
    if (n < 0 || strcmp(back, s) != 0)
      abort();
  }

  /* A type matches itself with any parameters after it. */
  if (proto_http_type_is(s, "application/pkcs10") &&
      strncasecmp(s + strspn(s, " \t"), "application/pkcs10", 18) != 0)
    abort();

  const char *cur = s, *item;
  size_t n, items = 0;
  while (proto_http_next_item(&cur, &item, &n)) {
    if (n == 0 || item < s || item + n > s + len || cur < item + n || cur > s + len)
      abort();
    if (item[0] == ',' || item[0] == ' ' || item[0] == '\t' || item[n - 1] == ' ' ||
        item[n - 1] == '\t' || memchr(item, ',', n))
      abort();
    if (++items > len)
      abort(); /* it must end */
  }
  free(s);
  return 0;
}
