/* The RFC 7030 request path, media type and header-list parsers
 * (proto/http.h) on arbitrary strings, with the properties the HTTPS edge
 * relies on: a route's operation maps back to the same path, a label
 * points inside the path, items point inside the value and carry no
 * blanks or commas at their ends. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proto/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 4 * PROTO_HTTP_PATH_MAX)
    return 0;
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
