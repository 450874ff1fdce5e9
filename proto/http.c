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

/* ---- multipart/mixed (RFC 2046 §5.1) -------------------------------------- */

/* Our cap on one part header line and on the Content-Type value; RFC 5322
 * §2.1.1 already limits lines to 998 characters. */
#define HEADER_LINE_MAX 1024u

static bool is_blank(char c) {
  return c == ' ' || c == '\t';
}

static bool is_alnum(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* tchar (RFC 9110 §5.6.2). */
static bool is_tchar(unsigned char c) {
  return is_alnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* qdtext (RFC 9110 §5.6.4): HTAB, SP, VCHAR but '"' and '\', obs-text. */
static bool is_qdtext(unsigned char c) {
  return c == '\t' || c == ' ' || c == 0x21 || (c >= 0x23 && c <= 0x5b) ||
         (c >= 0x5d && c <= 0x7e) || c >= 0x80;
}

/* What may follow '\' in a quoted-pair: HTAB, SP, VCHAR, obs-text. */
static bool is_qpair(unsigned char c) {
  return c == '\t' || (c >= 0x20 && c != 0x7f);
}

/* boundary := 0*69<bchars> bcharsnospace (RFC 2046 §5.1.1). */
static bool boundary_ok(const char *b, size_t n) {
  if (n == 0 || n > PROTO_HTTP_BOUNDARY_MAX || b[n - 1] == ' ')
    return false;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)b[i];
    if (!is_alnum(c) && !(c && strchr("'()+_,-./:=? ", c)))
      return false;
  }
  return true;
}

est_err proto_http_boundary(const char *content_type, char *out, size_t out_len) {
  if (!out || out_len < PROTO_HTTP_BOUNDARY_MAX + 1)
    return EST_ERR_INVALID;
  est_err rc = EST_ERR_MALFORMED;
  size_t blen = 0;
  bool found = false;
  const char *s;
  out[0] = '\0';
  if (!content_type || strnlen(content_type, HEADER_LINE_MAX + 1) > HEADER_LINE_MAX ||
      !proto_http_type_is(content_type, "multipart/mixed"))
    goto out;
  s = skip_blanks(skip_blanks(content_type) + strlen("multipart/mixed"));
  /* parameters = *( OWS ";" OWS [ parameter ] ) (RFC 9110 §5.6.6); blanks
   * around '=' too, which the MIME grammar (RFC 2045 §5.1) let through. */
  while (*s == ';') {
    s = skip_blanks(s + 1);
    if (*s == ';' || !*s)
      continue; /* an empty parameter */
    const char *name = s;
    while (is_tchar((unsigned char)*s))
      s++;
    size_t nlen = (size_t)(s - name), vlen = 0;
    s = skip_blanks(s);
    if (nlen == 0 || *s != '=')
      goto out;
    s = skip_blanks(s + 1);
    bool mine = nlen == 8 && strncasecmp(name, "boundary", 8) == 0;
    if (mine && found)
      goto out; /* two boundaries: no telling which one the sender used */
    if (*s == '"') {
      for (s++; *s != '"'; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '\\' && is_qpair((unsigned char)s[1]))
          c = (unsigned char)*++s;
        else if (!is_qdtext(c))
          goto out; /* unterminated, a control character, a lone '\' */
        if (mine && vlen < PROTO_HTTP_BOUNDARY_MAX)
          out[vlen] = (char)c;
        vlen++;
      }
      s++;
    } else {
      const char *v = s;
      while (is_tchar((unsigned char)*s)) {
        if (mine && vlen < PROTO_HTTP_BOUNDARY_MAX)
          out[vlen] = *s;
        vlen++;
        s++;
      }
      if (s == v)
        goto out; /* neither token nor quoted-string */
    }
    if (mine) {
      if (vlen > PROTO_HTTP_BOUNDARY_MAX)
        goto out;
      out[vlen] = '\0';
      blen = vlen;
      found = true;
    }
    s = skip_blanks(s);
  }
  if (*s || !found || !boundary_ok(out, blen))
    goto out;
  rc = EST_OK;
out:
  if (rc != EST_OK)
    out[0] = '\0';
  return rc;
}

/* Whether a delimiter line of boundary @p b (length @p blen) starts at @p p
 * of @p s: "--" b ["--"] transport-padding, then CRLF, a bare LF, or for
 * the close delimiter the end of the body (RFC 2046 §5.1.1: the epilogue
 * and its CRLF are optional). *next is where the line ends, after its LF. */
static bool delimiter_at(const char *s, size_t len, size_t p, const char *b, size_t blen,
                         size_t *next, bool *close) {
  if ((p > 0 && s[p - 1] != '\n') || len - p < 2 + blen || s[p] != '-' || s[p + 1] != '-' ||
      memcmp(s + p + 2, b, blen) != 0)
    return false;
  size_t q = p + 2 + blen;
  *close = len - q >= 2 && s[q] == '-' && s[q + 1] == '-';
  if (*close)
    q += 2;
  while (q < len && is_blank(s[q]))
    q++;
  if (q == len && *close)
    *next = q;
  else if (q < len && s[q] == '\n')
    *next = q + 1;
  else if (len - q >= 2 && s[q] == '\r' && s[q + 1] == '\n')
    *next = q + 2;
  else
    return false; /* "--" b followed by something else: content */
  return true;
}

/* The first delimiter line at a line start from @p p on: where it starts,
 * or @p len when there is none. */
static size_t find_delimiter(const char *s, size_t len, size_t p, const char *b, size_t blen,
                             size_t *next, bool *close) {
  while (p < len) {
    if (delimiter_at(s, len, p, b, blen, next, close))
      return p;
    const char *nl = memchr(s + p, '\n', len - p);
    if (!nl)
      break;
    p = (size_t)(nl - s) + 1;
  }
  return len;
}

/* The part in s[from, to), @p to being where the next delimiter line
 * starts: headers up to the first empty line, then the body, less the
 * CRLF (or LF) before the delimiter, which RFC 2046 §5.1.1 gives to the
 * delimiter. */
static est_err part_at(const char *s, size_t from, size_t to, proto_http_part *part) {
  size_t p = from;
  bool typed = false;
  *part = (proto_http_part){NULL, 0, NULL, 0};
  for (;;) {
    const char *nl = memchr(s + p, '\n', to - p);
    if (!nl)
      return EST_ERR_MALFORMED; /* the headers never end */
    const char *line = s + p;
    size_t n = (size_t)(nl - line);
    if (n && line[n - 1] == '\r')
      n--;
    p = (size_t)(nl - s) + 1;
    if (n > HEADER_LINE_MAX)
      return EST_ERR_MALFORMED;
    if (n == 0)
      break; /* the empty line: the body follows */
    if (is_blank(line[0]))
      continue; /* obs-fold (RFC 5322 §3.2.2): not unfolded, skipped */
    const char *colon = memchr(line, ':', n);
    size_t nlen = colon ? (size_t)(colon - line) : 0;
    while (nlen && is_blank(line[nlen - 1]))
      nlen--;
    if (nlen == 0)
      return EST_ERR_MALFORMED; /* not a header field */
    if (nlen != 12 || strncasecmp(line, "Content-Type", 12) != 0)
      continue; /* RFC 8951: Content-Transfer-Encoding does not matter */
    if (typed)
      return EST_ERR_MALFORMED; /* two types: no telling which is meant */
    typed = true;
    const char *v = colon + 1, *e = line + n;
    while (v < e && is_blank(*v))
      v++;
    while (e > v && is_blank(e[-1]))
      e--;
    part->type = v;
    part->type_len = (size_t)(e - v);
  }
  size_t end = to; /* s[to - 1] is the LF of the delimiter's CRLF */
  if (end > from && s[end - 1] == '\n')
    end--;
  if (end > from && s[end - 1] == '\r')
    end--;
  part->body = s + p;
  /* p > end: the empty line was the delimiter's CRLF, the body is empty */
  part->body_len = p < end ? end - p : 0;
  return EST_OK;
}

est_err proto_http_multipart(const char *body, size_t len, const char *boundary,
                             proto_http_part *parts, size_t max, size_t *n) {
  if (!n)
    return EST_ERR_INVALID;
  *n = 0;
  size_t blen = boundary ? strnlen(boundary, PROTO_HTTP_BOUNDARY_MAX + 1) : 0;
  if ((!body && len) || (!parts && max) || !boundary || !boundary_ok(boundary, blen))
    return EST_ERR_INVALID;
  est_err rc = EST_ERR_MALFORMED;
  size_t count = 0, next = 0;
  bool close = false;
  /* The preamble ends at the first delimiter, which may not be the close
   * one: RFC 2046 §5.1.1 wants at least one body part. */
  if (find_delimiter(body, len, 0, boundary, blen, &next, &close) == len || close)
    goto out;
  for (;;) {
    size_t from = next, to = find_delimiter(body, len, from, boundary, blen, &next, &close);
    if (to == len) {
      rc = EST_ERR_MALFORMED; /* no close delimiter: truncated */
      goto out;
    }
    if (count == max) {
      rc = EST_ERR_TOO_LARGE;
      goto out;
    }
    rc = part_at(body, from, to, &parts[count]);
    if (rc != EST_OK)
      goto out;
    count++;
    if (close)
      break; /* the epilogue is ignored */
  }
  rc = EST_OK;
out:
  *n = rc == EST_OK ? count : 0;
  return rc;
}
