/* RFC 7030 wire details (http.h). */
#include "proto/http.h"

#include <string.h>
#include <strings.h>

/* RFC 7030 §3.2.2, Figure 5. */
static const char *const ops[EST_FN__MAX] = {
    [EST_FN_CRTS] = "cacerts",      [EST_FN_SEN] = "simpleenroll",
    [EST_FN_SREN] = "simplereenroll", [EST_FN_ATT] = "csrattrs",
    [EST_FN_SKG] = "serverkeygen",  [EST_FN_SKC] = NULL,
};

const char *proto_http_op(est_fn fn) {
  return (unsigned)fn < EST_FN__MAX ? ops[fn] : NULL;
}

est_err proto_http_route(const char *path, est_fn *fn, const char **label,
                         size_t *label_len) {
  const size_t plen = strlen(PROTO_HTTP_PREFIX);
  if (!path || !fn || !label || !label_len ||
      strnlen(path, PROTO_HTTP_PATH_MAX + 1) > PROTO_HTTP_PATH_MAX ||
      strncmp(path, PROTO_HTTP_PREFIX, plen) != 0)
    return EST_ERR_NOT_FOUND;
  const char *rest = path + plen, *op = rest, *slash = strchr(rest, '/');
  *label = NULL;
  *label_len = 0;
  if (slash) {
    size_t n = (size_t)(slash - rest);
    if (n == 0 || n > PROTO_LABEL_MAX || strchr(slash + 1, '/'))
      return EST_ERR_NOT_FOUND;
    *label = rest;
    *label_len = n;
    op = slash + 1;
  }
  for (int i = 0; i < EST_FN__MAX; i++)
    if (ops[i] && strcmp(op, ops[i]) == 0) {
      *fn = (est_fn)i;
      return EST_OK;
    }
  *label = NULL;
  *label_len = 0;
  return EST_ERR_NOT_FOUND;
}

static const char *skip_blanks(const char *s) {
  while (*s == ' ' || *s == '\t')
    s++;
  return s;
}

bool proto_http_type_is(const char *value, const char *type) {
  if (!value || !type)
    return false;
  value = skip_blanks(value);
  size_t n = strlen(type);
  if (strncasecmp(value, type, n) != 0)
    return false;
  value = skip_blanks(value + n);
  return *value == '\0' || *value == ';';
}

bool proto_http_next_item(const char **cursor, const char **item, size_t *len) {
  const char *s = *cursor;
  for (;;) {
    s = skip_blanks(s);
    while (*s == ',')
      s = skip_blanks(s + 1);
    if (!*s) {
      *cursor = s;
      return false;
    }
    const char *end = strchr(s, ',');
    size_t n = end ? (size_t)(end - s) : strlen(s);
    const char *next = s + n;
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
      n--;
    *cursor = next;
    if (n) {
      *item = s;
      *len = n;
      return true;
    }
    s = next;
  }
}
